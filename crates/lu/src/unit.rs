//! [`Unit`]: one exported block device and the protocol-neutral state around it.

use std::sync::Arc;

use esos_block::{BlockDevice as _, Device};

use crate::access::PortGroups;
use crate::events::Events;
use crate::identity::Identity;
use crate::range_lock::RangeLocks;
use crate::reservations::Reservations;
use crate::stats::LuStats;

/// One block device as initiators of every protocol reach it. Front-ends hold an
/// `Arc<Unit>`; the fields are shared state that each front-end reads and updates through
/// its own command semantics.
#[derive(Debug)]
pub struct Unit {
    /// The storage behind the unit.
    pub device: Device,
    /// Who the unit is to initiators of every protocol; fixed for the unit's life.
    pub identity: Identity,
    /// Serialises atomic read-modify-writes against overlapping writes.
    pub ranges: RangeLocks,
    /// I/O counters and latency histograms across every path and protocol.
    pub stats: LuStats,
    /// The port-group table the unit is reached through (shared by the server's units).
    pub access: Arc<PortGroups>,
    /// Front-ends subscribed to changes of this unit.
    pub events: Events,
    /// Persistent reservations, checked by every front-end before it runs a command.
    pub reservations: Reservations,
}

impl Unit {
    /// A unit over `device` known as `identity`, reached through the port groups of
    /// `access`, with `reservations` restored from their state file. Register it with the
    /// table ([`PortGroups::register`]) once it is in an `Arc`.
    pub fn new(
        device: Device,
        identity: Identity,
        access: Arc<PortGroups>,
        reservations: Reservations,
    ) -> Unit {
        Unit {
            device,
            identity,
            ranges: RangeLocks::default(),
            stats: LuStats::default(),
            access,
            events: Events::default(),
            reservations,
        }
    }

    /// Current capacity in bytes (blocks × block size).
    pub fn capacity_bytes(&self) -> u64 {
        self.device.num_blocks() * u64::from(self.device.block_size())
    }
}
