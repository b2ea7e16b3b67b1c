//! Synchronous replication between esos nodes.
//!
//! A replicated device ([`device`]) is a stacked [`esos_block::BlockDevice`] over a local
//! device and the same device on one or two peer nodes. Who may acknowledge I/O is decided by
//! a majority of *voters* (the data nodes plus, optionally, a diskless witness) through the
//! [`Arbiter`]; the replicated device never decides it alone.
//!
//! # Terms
//! - **Node**: an esos daemon holding a copy of the data, named in the config
//!   (`cluster.node[].name`). **Witness**: a voter without data (`esos witness`).
//! - **Role**: *primary* (serves I/O, at most one per device at any instant, enforced by the
//!   lease) or *secondary* (applies the primary's writes, serves nothing).
//! - **Data state** of a node's copy: *UpToDate* (holds every acknowledged write),
//!   *Outdated* (consistent but behind: the primary went on without it), *Inconsistent*
//!   (partly written: a resync target before the resync ends, or a fresh device).
//! - **Generation**: a random 64-bit identifier of a line of writes. A primary that goes on
//!   without a peer starts a new generation and remembers the old one as the *bitmap
//!   generation* of that peer: the peer's copy equals the old generation plus the chunks set
//!   in the bitmap. Comparing generations on reconnect ([`generation`]) decides the sync
//!   direction, partial or full sync, split brain, or unrelated data.
//!
//! # Write path (protocol C)
//! A write is acknowledged only once it is on the local device **and** on every peer the
//! quorum record lists as up to date. A peer that fails or disconnects is first recorded as
//! outdated by a majority ([`Arbiter::set_up_to_date`]); only then may writes be acknowledged
//! without it, and their chunks are set in that peer's dirty bitmap. No majority: no
//! acknowledgement (I/O waits for a bounded time, then fails with
//! [`esos_block::BlockErrorKind::Unavailable`]). FUA and flushes are forwarded; overlapping
//! writes are serialised so every copy applies them in the same order.
//!
//! # Crash safety
//! The per-peer bitmap lives in the metadata file. Writes first enter the *activity log*:
//! the set of hot extents, made durable before a write to an extent not yet in it. After a
//! crash every extent in the log counts as dirty towards every peer, so a crashed primary
//! resyncs only what may differ.
//!
//! # Quorum and leases (no zombie primary)
//! The cluster record of each device (primary, generation, up-to-date nodes) is a register
//! kept by a majority of voters with CASPaxos ([`quorum`]). A primary holds a lease granted
//! by a majority and acknowledges nothing after it expires (monotonic clock, which keeps
//! running while a process is stopped); a new primary waits out every lease the majority
//! granted before it serves. A primary paused by SIGSTOP and resumed therefore finds its
//! lease expired, and every change it then proposes fails the record's precondition.

pub mod arbiter;
pub mod bitmap;
pub mod device;
pub mod frame;
pub mod generation;
mod io;
pub mod link;
pub mod meta;
pub mod net;
mod peer;
pub mod quorum;
pub mod rangelock;
mod resync;
pub mod status;
pub mod wire;
pub mod witness;

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod testing;

pub use arbiter::{Arbiter, NodeName, QuorumError, Record};
pub use device::{Replica, ReplicaConfig, ReplicaError, RoleView};
pub use status::{DataState, LinkState, PeerStatus, ReplicaStatus, Role};
