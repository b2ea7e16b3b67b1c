//! Buffers: the per-connection pool that makes a warmed-up command allocate nothing, and
//! the budgets (per connection, per server) that bound the data buffered for commands.

use esos_common::sync::LockExt;
use esos_scsi::IoBuf;

use super::state::ConnState;

/// Buffers kept for reuse per connection.
pub(super) const MAX_POOLED_BUFFERS: usize = 64;
/// Buffers larger than this go back to the allocator instead of the pool.
pub(super) const MAX_POOLED_CAPACITY: usize = 4 * 1024 * 1024;
/// Data buffered for one connection's commands (write data gathered, read data produced),
/// in bytes. A command that would exceed it gets TASK SET FULL and the initiator retries,
/// instead of the reader blocking (it must keep reading Data-Out for earlier commands).
pub(crate) const MAX_BUFFERED_BYTES_PER_CONN: usize = 128 * 1024 * 1024;
/// The same bound across all connections of the server.
pub(crate) const MAX_BUFFERED_BYTES_TOTAL: usize = 1024 * 1024 * 1024;
/// Granularity of the buffer budgets.
pub(crate) const BUDGET_UNIT_BYTES: usize = 4096;

impl ConnState {
    /// Reserves buffer budget for a transfer of `bytes`; `None` when either budget is spent.
    pub(super) fn reserve(&self, bytes: u32) -> Option<u32> {
        let units = (bytes as usize).div_ceil(BUDGET_UNIT_BYTES) as u32;
        if units == 0 {
            return Some(0);
        }
        let local = self.budget.try_acquire_many(units).ok()?;
        let global = self.global_budget.try_acquire_many(units).ok()?;
        local.forget();
        global.forget();
        Some(units)
    }

    pub(super) fn release(&self, units: u32) {
        if units > 0 {
            self.budget.add_permits(units as usize);
            self.global_budget.add_permits(units as usize);
        }
    }

    pub(super) fn take_buf(&self, len: usize) -> IoBuf {
        let mut b = self.pool.locked().pop().unwrap_or_default();
        if b.len() > len {
            b.truncate(len);
        } else {
            b.resize(len, 0);
        }
        b
    }

    /// A pooled buffer as it is, for a command without data-out (see `LunMap::submit`).
    pub(super) fn take_scratch(&self) -> IoBuf {
        self.pool.locked().pop().unwrap_or_default()
    }

    pub(super) fn put_buf(&self, b: IoBuf) {
        if b.capacity() == 0 || b.capacity() > MAX_POOLED_CAPACITY {
            return;
        }
        let mut pool = self.pool.locked();
        if pool.len() < MAX_POOLED_BUFFERS {
            pool.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::state;

    #[test]
    fn buffer_budget_refuses_then_recovers() {
        let s = state(4, 100);
        assert_eq!(s.reserve(0), Some(0));
        assert_eq!(s.reserve(1), Some(1));
        assert_eq!(s.reserve(3 * 4096), Some(3));
        assert_eq!(s.reserve(1), None, "local budget spent");
        s.release(3);
        assert_eq!(s.reserve(8192), Some(2));
        // The global budget bounds every connection together, and a refusal keeps nothing.
        let g = state(100, 2);
        assert_eq!(g.reserve(3 * 4096), None);
        assert_eq!(g.budget.available_permits(), 100);
        assert_eq!(g.reserve(2 * 4096), Some(2));
    }
}
