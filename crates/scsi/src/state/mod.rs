//! The per-unit state SCSI keeps beside the protocol-neutral unit: each type here is a
//! field of [`crate::LogicalUnit`] and depends on no handler. The handlers (`disk/`,
//! `mmc/`) read and change it; the engine (`engine.rs`) checks some of it at admission.
//!
//! `mode.rs` the changeable mode parameters, `medium.rs` loaded or ejected and who
//! prevents removal, `ua.rs` unit attentions per nexus, `task_set.rs` the task set and
//! its ordering, `pr.rs` the live nexuses of the persistent reservations, `sanitize.rs`
//! the sanitize state machine, `copy.rs` EXTENDED COPY results, `aborts.rs` recent
//! task-management aborts.

pub mod aborts;
pub mod copy;
pub mod medium;
pub mod mode;
pub mod pr;
pub mod sanitize;
pub mod task_set;
pub mod ua;
