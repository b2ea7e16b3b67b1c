//! [`Unit`]: one exported block device and the protocol-neutral state around it.

use esos_block::{BlockDevice as _, Device};

use crate::range_lock::RangeLocks;
use crate::stats::LuStats;

/// One block device as initiators of every protocol reach it. Front-ends hold an
/// `Arc<Unit>`; the fields are shared state that each front-end reads and updates through
/// its own command semantics.
#[derive(Debug)]
pub struct Unit {
    /// The storage behind the unit.
    pub device: Device,
    /// Serialises atomic read-modify-writes against overlapping writes.
    pub ranges: RangeLocks,
    /// I/O counters and latency histograms across every path and protocol.
    pub stats: LuStats,
}

impl Unit {
    pub fn new(device: Device) -> Unit {
        Unit {
            device,
            ranges: RangeLocks::default(),
            stats: LuStats::default(),
        }
    }

    /// Current capacity in bytes (blocks × block size).
    pub fn capacity_bytes(&self) -> u64 {
        self.device.num_blocks() * u64::from(self.device.block_size())
    }
}
