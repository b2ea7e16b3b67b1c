//! What the reader and the writer of one connection share: the CmdSN window, the buffer
//! pool and budgets (see [`super::buffers`]), liveness and the session's LUN map.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use esos_common::sync::LockExt;
use esos_scsi::{IoBuf, LunMap};

use crate::pdu::SeqNums;

/// State the reader and writer share.
pub(super) struct ConnState {
    pub(super) exp_cmd_sn: AtomicU32,
    /// Non-immediate commands admitted and not yet answered.
    pub(super) in_flight: AtomicU32,
    pub(super) window: u32,
    /// PDUs received so far; the writer's NOP-In timer watches it for liveness.
    pub(super) rx_count: AtomicU64,
    pub(super) pool: Mutex<Vec<IoBuf>>,
    /// Buffer budget of this connection, in [`super::BUDGET_UNIT_BYTES`] units.
    pub(super) budget: tokio::sync::Semaphore,
    /// Buffer budget of the whole server.
    pub(super) global_budget: Arc<tokio::sync::Semaphore>,
    /// The session's current LUN map, for task management in the writer (the reader keeps
    /// its own copy for the hot path and updates this one when the configuration changes).
    pub(super) luns: Mutex<LunMap>,
}

impl ConnState {
    pub(super) fn current_luns(&self) -> LunMap {
        self.luns.locked().clone()
    }

    /// MaxCmdSN: the window shrinks by the commands in flight (RFC 7143 4.2.2.1).
    pub(super) fn seq(&self, stat_sn: u32) -> SeqNums {
        // in_flight is raised before exp_cmd_sn advances, so a racing read errs small.
        let used = self.in_flight.load(Ordering::Acquire);
        let exp = self.exp_cmd_sn.load(Ordering::Acquire);
        let free = self.window.saturating_sub(used);
        SeqNums {
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: exp.wrapping_add(free).wrapping_sub(1),
        }
    }

    /// A command answered (or ended unanswered): a `counted` one frees its window slot.
    pub(super) fn finished(&self, counted: bool) {
        if counted {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in super::super) fn state(local_units: usize, global_units: usize) -> ConnState {
        ConnState {
            exp_cmd_sn: AtomicU32::new(10),
            in_flight: AtomicU32::new(0),
            window: 4,
            rx_count: AtomicU64::new(0),
            pool: Mutex::new(Vec::new()),
            budget: tokio::sync::Semaphore::new(local_units),
            global_budget: Arc::new(tokio::sync::Semaphore::new(global_units)),
            luns: Mutex::new(LunMap::default()),
        }
    }

    #[test]
    fn window_shrinks_with_commands_in_flight() {
        let s = state(1, 1);
        assert_eq!(s.seq(1).max_cmd_sn, 13);
        s.in_flight.store(4, Ordering::Relaxed);
        // Closed window: MaxCmdSN = ExpCmdSN - 1 (RFC 7143 4.2.2.1).
        assert_eq!(s.seq(1).max_cmd_sn, 9);
        s.finished(true);
        assert_eq!(s.seq(1).max_cmd_sn, 10);
    }
}
