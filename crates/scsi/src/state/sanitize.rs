//! Where one unit is in the sanitize state machine (SBC-4 4.11): checked by every
//! command at admission, advanced by the SANITIZE handler (`disk/sanitize.rs`).

use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};

use crate::sense::{Asc, Sense, SenseKey};

/// Where the unit is in the sanitize state machine (SBC-4 4.11).
pub(crate) const IDLE: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
/// Failed; EXIT FAILURE MODE may leave this state (the failed command had AUSE 1).
pub(crate) const FAILED_UNRESTRICTED: u8 = 2;
/// Failed; only a successful sanitize leaves this state (AUSE 0).
pub(crate) const FAILED_RESTRICTED: u8 = 3;

/// Per-unit sanitize state: checked by every command, so two atomics and no lock.
#[derive(Debug, Default)]
pub struct SanitizeState {
    phase: AtomicU8,
    /// Work done while RUNNING, in 1/65536 of the whole (SPC-4 PROGRESS INDICATION).
    progress: AtomicU16,
}

impl SanitizeState {
    /// Enters RUNNING unless an operation already runs.
    pub(crate) fn begin(&self) -> bool {
        let mut cur = self.phase.load(Ordering::Acquire);
        loop {
            if cur == RUNNING {
                return false;
            }
            match self
                .phase
                .compare_exchange(cur, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.progress.store(0, Ordering::Relaxed);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    pub(crate) fn finish(&self, ok: bool, ause: bool) {
        let phase = match (ok, ause) {
            (true, _) => IDLE,
            (false, true) => FAILED_UNRESTRICTED,
            (false, false) => FAILED_RESTRICTED,
        };
        self.phase.store(phase, Ordering::Release);
    }

    pub(crate) fn set_progress(&self, done: u64, total: u64) {
        let p = (u128::from(done) * 65536 / u128::from(total.max(1))).min(65535) as u16;
        self.progress.store(p, Ordering::Relaxed);
    }

    /// True while a sanitize operation runs.
    pub fn running(&self) -> bool {
        self.phase.load(Ordering::Acquire) == RUNNING
    }

    /// Leaves the failure mode of a sanitize that had AUSE 1 (EXIT FAILURE MODE): true
    /// when the unit is now idle, false while a sanitize runs or after one with AUSE 0.
    pub(crate) fn exit_failure_mode(&self) -> bool {
        matches!(
            self.phase.compare_exchange(
                FAILED_UNRESTRICTED,
                IDLE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ),
            Ok(_) | Err(IDLE)
        )
    }

    /// The sense every refused command gets now, `None` when nothing is refused.
    pub(crate) fn refusal(&self) -> Option<Sense> {
        match self.phase.load(Ordering::Acquire) {
            IDLE => None,
            RUNNING => Some(Sense::not_ready_progress(
                Asc::NOT_READY_SANITIZE_IN_PROGRESS,
                self.progress.load(Ordering::Relaxed),
            )),
            _ => Some(Sense::new(
                SenseKey::MediumError,
                Asc::SANITIZE_COMMAND_FAILED,
            )),
        }
    }
}
