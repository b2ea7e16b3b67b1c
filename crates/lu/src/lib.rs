//! The logical unit as every front-end sees it, whatever its protocol: a block device and
//! the state that must stay consistent across all initiators and protocols reaching it.
//!
//! A SCSI logical unit (esos-scsi), an NVMe namespace or an NBD export holds an
//! `Arc<Unit>` of the same device and keeps only its own protocol's semantics (CDBs,
//! mode pages, queues, sense codes). What lives here never speaks a wire format:
//!
//! - `range_lock.rs`: LBA range locks that make compare-and-write atomic against writes;
//! - `stats.rs`: I/O counters and latency histograms, one set per unit for all protocols;
//! - `access.rs`: port groups and their access states (SCSI ALUA, NVMe ANA);
//! - `identity.rs`: the device UUID and the SCSI/NVMe designators derived from it;
//! - `reservations.rs`: persistent reservations with neutral types, errors and initiators;
//! - `events.rs`: the fan-out of changes to every front-end's sessions;
//! - `state_file.rs`: bounded, crash-safe state files.

pub mod access;
pub mod events;
pub mod identity;
pub mod range_lock;
pub mod reservations;
pub mod state_file;
pub mod stats;

mod unit;

pub use unit::Unit;
