//! Unit-attention queues of one logical unit, one per I_T nexus (SAM-5 5.14).
//!
//! A nexus seen for the first time gets POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
//! The fast path takes only a read lock and finds an empty queue.

use esos_common::sync::RwLockExt as _;
use std::collections::{HashMap, VecDeque};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::cdb::op;
use crate::sense::Asc;

/// Unit attentions kept per nexus; a further one displaces the oldest (they are all
/// "something changed, re-read state" hints, and the newest is the most relevant).
pub const MAX_UA_PER_NEXUS: usize = 8;

/// What admission decides about a command given the nexus's pending unit attentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UaVerdict {
    /// Run the command.
    Proceed,
    /// Terminate with CHECK CONDITION, UNIT ATTENTION and this code (now cleared).
    Report(Asc),
}

#[derive(Debug, Default)]
pub struct UnitAttentions {
    queues: RwLock<HashMap<u64, VecDeque<Asc>>>,
}

impl UnitAttentions {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<u64, VecDeque<Asc>>> {
        // Every mutation is a single insert/push/pop: a poisoned map is still consistent.
        self.queues.read_locked()
    }
    fn write(&self) -> RwLockWriteGuard<'_, HashMap<u64, VecDeque<Asc>>> {
        self.queues.write_locked()
    }

    /// SAM-5 5.14 / SPC-4 5.14: a pending unit attention terminates the command and is
    /// cleared, except INQUIRY and REPORT LUNS, which run (REPORT LUNS clears REPORTED LUNS
    /// DATA HAS CHANGED, SPC-4 6.33), and REQUEST SENSE, which uses [`Self::take`].
    pub fn admit(&self, nexus: u64, opcode: u8) -> UaVerdict {
        if self.read().get(&nexus).is_some_and(|q| q.is_empty()) {
            return UaVerdict::Proceed;
        }
        let mut g = self.write();
        let q = g
            .entry(nexus)
            .or_insert_with(|| VecDeque::from([Asc::POWER_ON_RESET]));
        match opcode {
            op::INQUIRY | op::REQUEST_SENSE => UaVerdict::Proceed,
            // MMC-6 4.1.6: a drive's polling commands neither report nor clear a unit
            // attention. Other device types reject these opcodes anyway.
            op::GET_CONFIGURATION | op::GET_EVENT_STATUS_NOTIFICATION => UaVerdict::Proceed,
            op::REPORT_LUNS => {
                q.retain(|a| *a != Asc::REPORTED_LUNS_DATA_CHANGED);
                UaVerdict::Proceed
            }
            _ => q.pop_front().map_or(UaVerdict::Proceed, UaVerdict::Report),
        }
    }

    /// Removes and returns the oldest unit attention (REQUEST SENSE, SPC-4 6.29).
    pub fn take(&self, nexus: u64) -> Option<Asc> {
        let mut g = self.write();
        g.entry(nexus)
            .or_insert_with(|| VecDeque::from([Asc::POWER_ON_RESET]))
            .pop_front()
    }

    /// Queues `asc` for every known nexus except `except`.
    pub fn post_others(&self, except: Option<u64>, asc: Asc) {
        let mut g = self.write();
        for (id, q) in g.iter_mut() {
            if Some(*id) != except {
                push(q, asc);
            }
        }
    }

    /// Queues `asc` for one nexus (reservation changes aimed at particular registrants).
    pub fn post(&self, nexus: u64, asc: Asc) {
        let mut g = self.write();
        let q = g
            .entry(nexus)
            .or_insert_with(|| VecDeque::from([Asc::POWER_ON_RESET]));
        push(q, asc);
    }

    /// A reset: earlier unit attentions are superseded by the reset's (SAM-5 6.3).
    pub fn reset(&self, asc: Asc) {
        let mut g = self.write();
        for q in g.values_mut() {
            q.clear();
            q.push_back(asc);
        }
    }

    /// The nexus is gone; a later nexus with the same id would be a new one.
    pub fn forget(&self, nexus: u64) {
        self.write().remove(&nexus);
    }

    /// True when no unit attention is queued for `nexus` (tests and diagnostics).
    #[cfg(test)]
    pub fn pending(&self, nexus: u64) -> Vec<Asc> {
        self.read()
            .get(&nexus)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }
}

fn push(q: &mut VecDeque<Asc>, asc: Asc) {
    if q.contains(&asc) {
        return;
    }
    if q.len() >= MAX_UA_PER_NEXUS {
        q.pop_front();
    }
    q.push_back(asc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_nexus_gets_power_on_once() {
        let ua = UnitAttentions::default();
        assert_eq!(ua.admit(1, op::INQUIRY), UaVerdict::Proceed);
        assert_eq!(
            ua.admit(1, op::TEST_UNIT_READY),
            UaVerdict::Report(Asc::POWER_ON_RESET)
        );
        assert_eq!(ua.admit(1, op::TEST_UNIT_READY), UaVerdict::Proceed);
        assert_eq!(
            ua.admit(2, op::READ_10),
            UaVerdict::Report(Asc::POWER_ON_RESET)
        );
    }

    #[test]
    fn others_get_mode_change_and_report_luns_clears_luns_changed() {
        let ua = UnitAttentions::default();
        for n in [1, 2] {
            ua.admit(n, op::TEST_UNIT_READY);
        }
        ua.post_others(Some(1), Asc::MODE_PARAMETERS_CHANGED);
        ua.post_others(None, Asc::REPORTED_LUNS_DATA_CHANGED);
        assert_eq!(ua.pending(1), vec![Asc::REPORTED_LUNS_DATA_CHANGED]);
        assert_eq!(ua.admit(1, op::REPORT_LUNS), UaVerdict::Proceed);
        assert!(ua.pending(1).is_empty());
        assert_eq!(ua.take(2), Some(Asc::MODE_PARAMETERS_CHANGED));
        assert_eq!(ua.take(2), Some(Asc::REPORTED_LUNS_DATA_CHANGED));
        assert_eq!(ua.take(2), None);
    }

    #[test]
    fn reset_replaces_queue_and_queue_is_bounded() {
        let ua = UnitAttentions::default();
        ua.admit(1, op::TEST_UNIT_READY);
        for i in 0..20u8 {
            ua.post_others(None, Asc(0x2A, i));
        }
        assert_eq!(ua.pending(1).len(), MAX_UA_PER_NEXUS);
        ua.reset(Asc::DEVICE_RESET_OCCURRED);
        assert_eq!(ua.pending(1), vec![Asc::DEVICE_RESET_OCCURRED]);
        ua.forget(1);
        assert_eq!(
            ua.admit(1, op::TEST_UNIT_READY),
            UaVerdict::Report(Asc::POWER_ON_RESET)
        );
    }
}
