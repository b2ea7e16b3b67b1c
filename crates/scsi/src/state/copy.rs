//! EXTENDED COPY results of one unit, by nexus and list identifier (SPC-4 6.18), kept for
//! RECEIVE COPY RESULTS; the copy manager itself is `disk/xcopy.rs`.

use esos_common::sync::LockExt as _;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::sense::{Asc, Sense};
use crate::{SenseBytes, Status};

/// Copy records (running or finished) kept per nexus and unit for RECEIVE COPY RESULTS;
/// the oldest finished one makes room. It is also how many identified copies one nexus
/// may run at once (MAXIMUM CONCURRENT COPIES).
pub const MAX_COPY_RECORDS_PER_NEXUS: usize = 32;

/// INSUFFICIENT RESOURCES: every record slot of the nexus holds a running copy.
pub(crate) const INSUFFICIENT_RESOURCES: Asc = Asc(0x55, 0x03);

/// COPY MANAGER STATUS values (SPC-4 table 136).
pub(crate) const STATUS_IN_PROGRESS: u8 = 0x00;
pub(crate) const STATUS_DONE: u8 = 0x01;
pub(crate) const STATUS_FAILED: u8 = 0x02;

/// What RECEIVE COPY RESULTS reports about one copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) list_id: u8,
    /// COPY MANAGER STATUS.
    pub(crate) state: u8,
    pub(crate) segments: u16,
    pub(crate) bytes: u64,
    /// For FAILED SEGMENT DETAILS: the command's status and sense data.
    pub(crate) status: Status,
    pub(crate) sense: SenseBytes,
}

/// Per-unit copy records by nexus (SPC-4 6.18: list identifiers are per I_T nexus).
#[derive(Debug, Default)]
pub struct CopyResults {
    by_nexus: Mutex<HashMap<u64, VecDeque<Record>>>,
}

impl CopyResults {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<u64, VecDeque<Record>>> {
        // Every update is a single field store: a poisoned map is still consistent.
        self.by_nexus.locked()
    }

    /// Registers a running copy. The same list identifier may not run twice on one
    /// nexus (SPC-4 6.3.1: OPERATION IN PROGRESS); a finished one is replaced.
    pub(crate) fn begin(&self, nexus: u64, list_id: u8) -> Result<(), Sense> {
        let mut g = self.lock();
        let q = g.entry(nexus).or_default();
        if let Some(i) = q.iter().position(|r| r.list_id == list_id) {
            if q[i].state == STATUS_IN_PROGRESS {
                return Err(Sense::illegal(Asc::OPERATION_IN_PROGRESS));
            }
            q.remove(i);
        }
        if q.len() >= MAX_COPY_RECORDS_PER_NEXUS {
            match q.iter().position(|r| r.state != STATUS_IN_PROGRESS) {
                Some(i) => {
                    q.remove(i);
                }
                None => return Err(Sense::illegal(INSUFFICIENT_RESOURCES)),
            }
        }
        q.push_back(Record {
            list_id,
            state: STATUS_IN_PROGRESS,
            segments: 0,
            bytes: 0,
            status: Status::Good,
            sense: SenseBytes::EMPTY,
        });
        Ok(())
    }

    pub(crate) fn update(&self, nexus: u64, list_id: u8, f: impl FnOnce(&mut Record)) {
        let mut g = self.lock();
        if let Some(r) = g
            .get_mut(&nexus)
            .and_then(|q| q.iter_mut().find(|r| r.list_id == list_id))
        {
            f(r);
        }
    }

    pub(crate) fn get(&self, nexus: u64, list_id: u8) -> Option<Record> {
        let g = self.lock();
        g.get(&nexus)?
            .iter()
            .find(|r| r.list_id == list_id)
            .copied()
    }

    /// The nexus is gone: so are its list identifiers.
    pub fn nexus_gone(&self, nexus: u64) {
        self.lock().remove(&nexus);
    }
}
