//! The changeable mode parameters of one unit (SPC-4 7.5): what MODE SELECT sets, MODE
//! SENSE reports and the write path reads on every command. The pages themselves are
//! built and parsed by the handler (`disk/mode.rs`).

use std::sync::atomic::{AtomicBool, Ordering};

/// The changeable mode parameters' current values. Atomics: the write path reads WCE and
/// SWP on every command without a lock.
#[derive(Debug)]
pub struct ModeState {
    wce: AtomicBool,
    d_sense: AtomicBool,
    swp: AtomicBool,
    default_wce: bool,
}

/// A snapshot of the changeable parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeValues {
    pub wce: bool,
    pub d_sense: bool,
    pub swp: bool,
}

impl ModeState {
    pub fn new(default_wce: bool) -> ModeState {
        ModeState {
            wce: AtomicBool::new(default_wce),
            d_sense: AtomicBool::new(false),
            swp: AtomicBool::new(false),
            default_wce,
        }
    }

    pub fn wce(&self) -> bool {
        self.wce.load(Ordering::Relaxed)
    }
    pub fn d_sense(&self) -> bool {
        self.d_sense.load(Ordering::Relaxed)
    }
    pub fn swp(&self) -> bool {
        self.swp.load(Ordering::Relaxed)
    }

    pub fn current(&self) -> ModeValues {
        ModeValues {
            wce: self.wce(),
            d_sense: self.d_sense(),
            swp: self.swp(),
        }
    }

    pub fn defaults(&self) -> ModeValues {
        ModeValues {
            wce: self.default_wce,
            d_sense: false,
            swp: false,
        }
    }

    /// Sets the current values; true when anything changed.
    pub fn set(&self, v: ModeValues) -> bool {
        let old = self.current();
        self.wce.store(v.wce, Ordering::Relaxed);
        self.d_sense.store(v.d_sense, Ordering::Relaxed);
        self.swp.store(v.swp, Ordering::Relaxed);
        old != v
    }

    /// A hard reset restores the defaults (we have no saved values; SAM-5 6.3.2).
    pub fn reset(&self) {
        self.set(self.defaults());
    }
}
