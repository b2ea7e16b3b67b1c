//! High-availability tests: a private network of esos nodes, fault injection, a checked
//! history of client operations across failovers.
//!
//! - [`netns`]: network namespaces n1, n2, w (witness), c (client) on a bridge; link down,
//!   one direction dropped, slow link; processes by PID.
//! - [`cluster`]: esos daemons (a plain node, or a replicated pair and a witness) configured
//!   and started in the rig; the `esos replica` CLI.
//! - [`workload`]: K workers writing self-describing blocks with FUA and reading them back
//!   through whichever node serves, recording every operation.
//! - [`history`]: the checker: no acknowledged write lost, no stale read, no torn or foreign
//!   data.

pub mod cluster;
pub mod history;
pub mod netns;
pub mod workload;
