//! [`Reservations`]: the reservation state of one unit as its front-ends share it, with
//! the flag that keeps the per-command check at one atomic load while nothing is
//! registered or reserved.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use esos_common::sync::LockExt as _;

use super::{PrState, load};
use crate::events::Session;
use crate::state_file::StateFileError;

/// What the lock of [`Reservations`] guards.
#[derive(Debug, Default)]
pub struct Held {
    pub state: PrState,
    /// A front-end's own exclusive reservation by one session (SCSI-2 RESERVE): released
    /// with its session and by resets, never persisted.
    pub exclusive: Option<Session>,
}

impl Held {
    fn any(&self) -> bool {
        !self.state.regs.is_empty() || self.state.res.is_some() || self.exclusive.is_some()
    }
}

/// Persistent (and exclusive) reservations of one unit, shared by every front-end.
#[derive(Debug)]
pub struct Reservations {
    inner: Mutex<Held>,
    /// False while nothing is registered or reserved: the per-command check then costs
    /// one atomic load. Kept by [`HeldGuard`]'s drop, so no change can leave it stale.
    active: AtomicBool,
    /// APTPL state file; `None` disables persistence through power loss.
    file: Option<PathBuf>,
    /// Told of every change, under the lock so changes arrive in order.
    observer: OnceLock<Observer>,
}

/// A function told of the persistent state after each change (a replicated device's
/// primary sends it to its peers). It runs with the reservation lock held: it must not
/// block, and must not touch these reservations.
pub struct Observer(Box<dyn Fn(&PrState) + Send + Sync>);

impl Observer {
    pub fn new(f: impl Fn(&PrState) + Send + Sync + 'static) -> Observer {
        Observer(Box::new(f))
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Reservations {
    /// Loads the APTPL state from `file`, if any (SPC-4 5.9.4).
    pub fn new(file: Option<PathBuf>) -> Result<Reservations, StateFileError> {
        let state = match &file {
            Some(path) => load(path)?,
            None => PrState::default(),
        };
        let held = Held {
            state,
            exclusive: None,
        };
        Ok(Reservations {
            active: AtomicBool::new(held.any()),
            inner: Mutex::new(held),
            file,
            observer: OnceLock::new(),
        })
    }

    /// No state file: reservations last until the process ends.
    pub fn without_file() -> Reservations {
        Reservations {
            inner: Mutex::default(),
            active: AtomicBool::new(false),
            file: None,
            observer: OnceLock::new(),
        }
    }

    /// True when something is registered or reserved; otherwise no command can conflict
    /// and the lock need not be taken. One atomic load.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Every change replaces what it changes in one assignment, so a poisoned lock still
    /// guards a consistent state. The guard updates the fast-path flag when it is dropped.
    pub fn lock(&self) -> HeldGuard<'_> {
        HeldGuard {
            held: self.inner.locked(),
            active: &self.active,
            observer: self.observer.get(),
            changed: false,
        }
    }

    /// Installs the one observer of changes; false when one is already installed.
    pub fn observe(&self, observer: Observer) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// The APTPL state file, `None` when persistence is disabled.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// A copy of the persistent state, for reports and tests.
    pub fn snapshot(&self) -> PrState {
        self.lock().state.clone()
    }

    /// Releases the exclusive reservation of `session` (its session ended), if it held one.
    pub fn session_gone(&self, session: Session) {
        let mut g = self.lock();
        if g.exclusive == Some(session) {
            g.exclusive = None;
        }
    }

    /// A reset releases the exclusive reservation (SPC-2 5.5.1); persistent reservations
    /// survive resets (SPC-4 5.9.1).
    pub fn reset(&self) {
        self.lock().exclusive = None;
    }
}

/// The lock of [`Reservations`]. Dropping it sets the fast-path flag from what it guards:
/// a stale "nothing reserved" would let every command past the reservation check.
pub struct HeldGuard<'a> {
    held: MutexGuard<'a, Held>,
    active: &'a AtomicBool,
    observer: Option<&'a Observer>,
    /// Borrowed mutably: the observer hears of it when the guard drops.
    changed: bool,
}

impl Deref for HeldGuard<'_> {
    type Target = Held;
    fn deref(&self) -> &Held {
        &self.held
    }
}

impl DerefMut for HeldGuard<'_> {
    fn deref_mut(&mut self) -> &mut Held {
        self.changed = true;
        &mut self.held
    }
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        // Stored while the lock is still held, so flag changes follow state changes in order.
        self.active.store(self.held.any(), Ordering::Release);
        if self.changed
            && let Some(o) = self.observer
        {
            (o.0)(&self.held.state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::SubscriberId;

    #[test]
    fn flag_follows_registrations_and_exclusive_holds() {
        let r = Reservations::without_file();
        assert!(!r.active());
        let s = Session {
            subscriber: SubscriberId::new(),
            session: 1,
        };
        r.lock().exclusive = Some(s);
        assert!(r.active());
        r.session_gone(Session { session: 2, ..s });
        assert!(r.active(), "another session's end releases nothing");
        r.session_gone(s);
        assert!(!r.active());
    }

    #[test]
    fn observer_hears_each_change_once() {
        let r = Reservations::without_file();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        assert!(r.observe(Observer::new(move |s: &PrState| {
            s2.lock().unwrap().push(s.generation)
        })));
        assert!(!r.observe(Observer::new(|_| {})), "one observer");
        let _ = r.lock().state.generation; // a read is no change
        r.lock().state.generation = 7;
        assert_eq!(*seen.lock().unwrap(), vec![7]);
    }

    #[test]
    fn aptpl_state_is_restored_and_active() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pr.state");
        std::fs::write(
            &path,
            "esos-pr 1\naptpl 1\ngeneration 1\nreg 1 0000000000000001 1 iqn.a *\n",
        )
        .unwrap();
        let r = Reservations::new(Some(path.clone())).unwrap();
        assert!(r.active());
        assert_eq!(r.snapshot().regs.len(), 1);
        assert_eq!(r.file(), Some(path.as_path()));
    }
}
