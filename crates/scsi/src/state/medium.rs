//! The removable-medium state of one logical unit, shared by removable disks and CD-ROMs:
//! loaded or ejected (START STOP UNIT with LOEJ), prevention of removal per I_T nexus
//! (PREVENT ALLOW MEDIUM REMOVAL) and the media events that GET EVENT STATUS NOTIFICATION
//! reports (MMC-6 6.7).
//!
//! No I/O here: the handlers decide when to flush, this only says what state the medium is in.
//! Per-nexus entries exist only for live nexuses ([`MediumState::nexus_gone`] drops them), so
//! their number is bounded by the transport's session limits.

use esos_common::sync::LockExt as _;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cdb::Cdb;
use crate::sense::{Asc, Sense, SenseKey};

/// A media-class event (MMC-6 table 151), as GET EVENT STATUS NOTIFICATION reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MediaEvent {
    NoChange = 0,
    NewMedia = 2,
    MediaRemoval = 3,
}

#[derive(Debug, Default)]
struct Inner {
    /// Nexuses that hold a prevention (SBC-3 5.13: removal stays prevented while any does).
    preventers: HashSet<u64>,
    /// Count of loads and ejects so far; each poller remembers the count it last saw.
    changes: u64,
    /// Per nexus: the value of `changes` its last GET EVENT STATUS NOTIFICATION reported.
    seen: HashMap<u64, u64>,
}

/// Whether the medium is there and who keeps it there.
#[derive(Debug)]
pub struct MediumState {
    removable: bool,
    /// The "no medium" code: TRAY OPEN for a CD-ROM (an ejected tray stays open until
    /// loaded, MMC-6 4.1.4), plain MEDIUM NOT PRESENT for a disk.
    absent_asc: Asc,
    /// Read on every media-access command without taking the lock.
    present: AtomicBool,
    inner: Mutex<Inner>,
}

/// What a LOEJ request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadEject {
    /// The medium was loaded (NOT READY TO READY CHANGE for the other nexuses).
    Loaded,
    Ejected,
    /// Already in the requested state, or the unit is not removable.
    Unchanged,
}

impl MediumState {
    pub fn new(removable: bool, tray: bool) -> MediumState {
        MediumState {
            removable,
            absent_asc: if tray {
                Asc::MEDIUM_NOT_PRESENT_TRAY_OPEN
            } else {
                Asc::MEDIUM_NOT_PRESENT
            },
            present: AtomicBool::new(true),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation leaves the state consistent; a poisoned lock is still usable.
        self.inner.locked()
    }

    pub fn removable(&self) -> bool {
        self.removable
    }

    pub fn present(&self) -> bool {
        self.present.load(Ordering::Acquire)
    }

    /// NOT READY, MEDIUM NOT PRESENT (SBC-3 4.x, MMC-6 4.1.4).
    pub fn absent_sense(&self) -> Sense {
        Sense::new(SenseKey::NotReady, self.absent_asc)
    }

    /// Fails `cdb` with NOT READY when it needs a medium and none is loaded.
    pub fn check(&self, cdb: &Cdb) -> Result<(), Sense> {
        if self.present() || !needs_medium(cdb) {
            Ok(())
        } else {
            Err(self.absent_sense())
        }
    }

    /// PREVENT ALLOW MEDIUM REMOVAL from `nexus`: `prevent` true adds the nexus's
    /// prevention, false removes it.
    pub fn prevent(&self, nexus: u64, prevent: bool) {
        let mut g = self.lock();
        if prevent {
            g.preventers.insert(nexus);
        } else {
            g.preventers.remove(&nexus);
        }
    }

    /// True while some nexus prevents removal (reported in MODE SENSE page 2Ah and
    /// MECHANISM STATUS).
    pub fn prevented(&self) -> bool {
        !self.lock().preventers.is_empty()
    }

    /// START STOP UNIT with LOEJ: load (`load` true) or eject. While any nexus prevents
    /// removal, both are refused with MEDIUM REMOVAL PREVENTED (SBC-3 5.25, MMC-6 6.39:
    /// the tray stays locked either way).
    pub fn load_eject(&self, load: bool) -> Result<LoadEject, Sense> {
        if !self.removable {
            return Ok(LoadEject::Unchanged);
        }
        let mut g = self.lock();
        if !g.preventers.is_empty() {
            return Err(Sense::illegal(Asc::MEDIUM_REMOVAL_PREVENTED));
        }
        if self.present() == load {
            return Ok(LoadEject::Unchanged);
        }
        self.present.store(load, Ordering::Release);
        g.changes += 1;
        Ok(if load {
            LoadEject::Loaded
        } else {
            LoadEject::Ejected
        })
    }

    /// The media event `nexus` has not seen yet, and marks it seen (GET EVENT STATUS
    /// NOTIFICATION, MMC-6 6.7: an event is reported once). Only the latest change is
    /// kept: a load after an eject reads as NEW MEDIA, which is what a poller needs.
    pub fn take_event(&self, nexus: u64) -> MediaEvent {
        let mut g = self.lock();
        let now = g.changes;
        let seen = g.seen.insert(nexus, now).unwrap_or(0);
        if seen == now {
            MediaEvent::NoChange
        } else if self.present() {
            MediaEvent::NewMedia
        } else {
            MediaEvent::MediaRemoval
        }
    }

    /// A hard reset (LOGICAL UNIT RESET, target reset) ends every prevention (SBC-3 5.13).
    pub fn reset(&self) {
        self.lock().preventers.clear();
    }

    /// I_T nexus loss ends that nexus's prevention (SBC-3 5.13).
    pub fn nexus_gone(&self, nexus: u64) {
        let mut g = self.lock();
        g.preventers.remove(&nexus);
        g.seen.remove(&nexus);
    }
}

/// True for the commands that touch the medium and so fail with NOT READY while it is
/// ejected; inquiry, sense, mode, reservation, report and medium-handling commands work
/// without one (SPC-4 5.x "not ready" does not apply to them).
pub fn needs_medium(cdb: &Cdb) -> bool {
    !matches!(
        cdb,
        Cdb::Inquiry { .. }
            | Cdb::RequestSense { .. }
            | Cdb::ReportLuns { .. }
            | Cdb::ModeSense { .. }
            | Cdb::ModeSelect { .. }
            | Cdb::StartStopUnit { .. }
            | Cdb::PreventAllow { .. }
            | Cdb::PersistentReserveIn { .. }
            | Cdb::PersistentReserveOut { .. }
            | Cdb::Reserve
            | Cdb::Release
            | Cdb::ReportOpcodes { .. }
            | Cdb::ReportTmfs { .. }
    ) && !matches!(cdb, Cdb::Mmc(m) if !m.needs_medium())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eject_refused_while_any_nexus_prevents() {
        let m = MediumState::new(true, false);
        m.prevent(1, true);
        m.prevent(2, true);
        let e = m.load_eject(false).unwrap_err();
        assert_eq!(
            (e.key, e.asc),
            (SenseKey::IllegalRequest, Asc::MEDIUM_REMOVAL_PREVENTED)
        );
        m.prevent(1, false);
        assert!(m.load_eject(false).is_err(), "nexus 2 still prevents");
        m.nexus_gone(2);
        assert_eq!(m.load_eject(false), Ok(LoadEject::Ejected));
        assert!(!m.present());
        assert_eq!(m.load_eject(false), Ok(LoadEject::Unchanged));
        // Loading is refused too while prevented.
        m.prevent(3, true);
        assert!(m.load_eject(true).is_err());
        m.reset();
        assert_eq!(m.load_eject(true), Ok(LoadEject::Loaded));
        assert!(m.present());
    }

    #[test]
    fn fixed_units_never_change_and_media_check() {
        let m = MediumState::new(false, false);
        assert_eq!(m.load_eject(false), Ok(LoadEject::Unchanged));
        assert!(m.present());
        let d = MediumState::new(true, true);
        d.load_eject(false).unwrap();
        assert_eq!(
            d.check(&Cdb::TestUnitReady).unwrap_err().asc,
            Asc::MEDIUM_NOT_PRESENT_TRAY_OPEN
        );
        assert!(d.check(&Cdb::PreventAllow { prevent: 1 }).is_ok());
        assert!(
            d.check(&Cdb::Inquiry {
                evpd: false,
                page: 0,
                alloc_len: 36
            })
            .is_ok()
        );
    }

    #[test]
    fn each_nexus_sees_a_media_event_once() {
        let m = MediumState::new(true, true);
        assert_eq!(m.take_event(1), MediaEvent::NoChange);
        m.load_eject(false).unwrap();
        assert_eq!(m.take_event(1), MediaEvent::MediaRemoval);
        assert_eq!(m.take_event(1), MediaEvent::NoChange);
        m.load_eject(true).unwrap();
        assert_eq!(m.take_event(1), MediaEvent::NewMedia);
        // Nexus 2 never polled: it sees the latest state change once.
        assert_eq!(m.take_event(2), MediaEvent::NewMedia);
        assert_eq!(m.take_event(2), MediaEvent::NoChange);
    }
}
