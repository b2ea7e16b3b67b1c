//! The session registry: TSIH allocation, session limits and reinstatement (RFC 7143 6.3.5).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esos_common::sync::LockExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a reinstating login waits for the old session to finish its in-flight commands.
pub(crate) const REINSTATE_WAIT: Duration = Duration::from_secs(10);

/// Identifies a session for reinstatement: same initiator, same ISID, same target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey {
    pub initiator: String,
    pub isid: [u8; 6],
    /// Lower-cased target name; `None` for discovery sessions.
    pub target: Option<String>,
}

impl SessionKey {
    pub(crate) fn new(initiator: &str, isid: [u8; 6], target: Option<&str>) -> SessionKey {
        SessionKey {
            initiator: initiator.to_ascii_lowercase(),
            isid,
            target: target.map(|t| t.to_ascii_lowercase()),
        }
    }
}

struct Entry {
    key: SessionKey,
    cancel: CancellationToken,
    done: watch::Receiver<()>,
}

struct Inner {
    by_tsih: HashMap<u16, Entry>,
    next_tsih: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RegisterError {
    #[error("session limit reached")]
    TooManySessions,
    #[error("session limit of the target reached")]
    TooManySessionsForTarget,
    #[error("old session did not end in time")]
    ReinstateTimeout,
}

pub(crate) struct Registry {
    inner: Mutex<Inner>,
    max_sessions: u32,
    max_per_target: u32,
    next_nexus: AtomicU64,
}

/// Held by a running session; unregisters it on drop and tells waiters it has ended.
pub(crate) struct SessionGuard {
    registry: Arc<crate::server::Shared>,
    pub tsih: u16,
    pub cancel: CancellationToken,
    _done: watch::Sender<()>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut inner = self.registry.registry_lock();
        inner.by_tsih.remove(&self.tsih);
    }
}

impl Registry {
    pub(crate) fn new(max_sessions: u32, max_per_target: u32) -> Registry {
        Registry {
            inner: Mutex::new(Inner {
                by_tsih: HashMap::new(),
                next_tsih: 1,
            }),
            max_sessions,
            max_per_target,
            next_nexus: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.inner.locked()
    }

    pub(crate) fn next_nexus_id(&self) -> u64 {
        self.next_nexus.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a new session, first ending any session with the same key (reinstatement).
    pub(crate) async fn register(
        shared: &Arc<crate::server::Shared>,
        key: SessionKey,
    ) -> Result<SessionGuard, RegisterError> {
        let reg = &shared.registry;
        let old: Vec<(CancellationToken, watch::Receiver<()>)> = reg
            .lock()
            .by_tsih
            .values()
            .filter(|e| e.key == key)
            .map(|e| (e.cancel.clone(), e.done.clone()))
            .collect();
        for (cancel, mut done) in old {
            tracing::info!(initiator = %key.initiator, "reinstating session: closing the old one");
            cancel.cancel();
            // `changed` fails once the old session's guard (the sender) is dropped.
            let wait = async { while done.changed().await.is_ok() {} };
            if tokio::time::timeout(REINSTATE_WAIT, wait).await.is_err() {
                return Err(RegisterError::ReinstateTimeout);
            }
        }
        let mut inner = reg.lock();
        if inner.by_tsih.len() >= reg.max_sessions as usize {
            return Err(RegisterError::TooManySessions);
        }
        if key.target.is_some()
            && inner
                .by_tsih
                .values()
                .filter(|e| e.key.target == key.target)
                .count()
                >= reg.max_per_target as usize
        {
            return Err(RegisterError::TooManySessionsForTarget);
        }
        // TSIH 0 is reserved for "new session"; skip values still in use.
        let mut tsih = inner.next_tsih;
        while tsih == 0 || inner.by_tsih.contains_key(&tsih) {
            tsih = tsih.wrapping_add(1);
        }
        inner.next_tsih = tsih.wrapping_add(1);
        let cancel = shared.shutdown.child_token();
        let (tx, rx) = watch::channel(());
        inner.by_tsih.insert(
            tsih,
            Entry {
                key,
                cancel: cancel.clone(),
                done: rx,
            },
        );
        drop(inner);
        Ok(SessionGuard {
            registry: shared.clone(),
            tsih,
            cancel,
            _done: tx,
        })
    }

    /// Cancels every session logged in to `target` (TARGET COLD RESET).
    pub(crate) fn cancel_target(&self, target: &str) {
        let t = target.to_ascii_lowercase();
        for e in self.lock().by_tsih.values() {
            if e.key.target.as_deref() == Some(t.as_str()) {
                e.cancel.cancel();
            }
        }
    }

    /// True when a session with this TSIH exists.
    pub(crate) fn exists(&self, tsih: u16) -> bool {
        self.lock().by_tsih.contains_key(&tsih)
    }
}

// Registry is reached through Shared; this lets SessionGuard's Drop lock it.
impl crate::server::Shared {
    fn registry_lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.registry.lock()
    }
}
