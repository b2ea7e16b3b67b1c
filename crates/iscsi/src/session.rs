//! The session table, the one owner of every session from login to its end: TSIH
//! allocation, session limits and reinstatement at login (RFC 7143 6.3.5), then what
//! management lists and closes while the session is in full feature phase. A session's
//! [`SessionGuard`] is its only cleanup: dropping it removes the session everywhere.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use esos_common::sync::LockExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::PortalConfig;

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

/// A logged-in session as management sees it.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// Unique for the life of the process (the session's I_T nexus id).
    pub id: u64,
    pub tsih: u16,
    pub initiator: String,
    pub isid: [u8; 6],
    /// `None` for discovery sessions.
    pub target: Option<String>,
    pub portal: SocketAddr,
    pub peer: SocketAddr,
    pub since: std::time::SystemTime,
    pub params: crate::params::SessionParams,
    /// SCSI commands received so far.
    pub commands: u64,
}

/// What a session in full feature phase shows management ([`SessionGuard::list`]).
pub(crate) struct SessionInfo {
    pub(crate) snapshot: SessionSnapshot,
    /// The portal it logged in through, as configured (live reconfiguration checks it).
    pub(crate) portal: PortalConfig,
    /// SCSI commands received, counted by the connection.
    pub(crate) commands: Arc<AtomicU64>,
}

struct Entry {
    key: SessionKey,
    cancel: CancellationToken,
    done: watch::Receiver<()>,
    /// Set once the session reaches full feature phase.
    info: Option<SessionInfo>,
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
    /// The server's shutdown: every session's cancellation token is a child of it.
    shutdown: CancellationToken,
}

/// Held by a running session; unregisters it on drop and tells waiters it has ended.
pub(crate) struct SessionGuard {
    registry: Arc<Registry>,
    pub tsih: u16,
    pub cancel: CancellationToken,
    _done: watch::Sender<()>,
}

impl SessionGuard {
    /// Lists the session for management; it stays listed until the guard drops.
    pub(crate) fn list(&self, info: SessionInfo) {
        if let Some(e) = self.registry.lock().by_tsih.get_mut(&self.tsih) {
            e.info = Some(info);
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.registry.lock().by_tsih.remove(&self.tsih);
    }
}

impl Registry {
    pub(crate) fn new(
        max_sessions: u32,
        max_per_target: u32,
        shutdown: CancellationToken,
    ) -> Registry {
        Registry {
            inner: Mutex::new(Inner {
                by_tsih: HashMap::new(),
                next_tsih: 1,
            }),
            max_sessions,
            max_per_target,
            next_nexus: AtomicU64::new(1),
            shutdown,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.inner.locked()
    }

    pub(crate) fn next_nexus_id(&self) -> u64 {
        self.next_nexus.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a new session, first ending any session with the same key (reinstatement).
    pub(crate) async fn register(
        self: &Arc<Self>,
        key: SessionKey,
    ) -> Result<SessionGuard, RegisterError> {
        let old: Vec<(CancellationToken, watch::Receiver<()>)> = self
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
        let mut inner = self.lock();
        if inner.by_tsih.len() >= self.max_sessions as usize {
            return Err(RegisterError::TooManySessions);
        }
        if key.target.is_some()
            && inner
                .by_tsih
                .values()
                .filter(|e| e.key.target == key.target)
                .count()
                >= self.max_per_target as usize
        {
            return Err(RegisterError::TooManySessionsForTarget);
        }
        // TSIH 0 is reserved for "new session"; skip values still in use.
        let mut tsih = inner.next_tsih;
        while tsih == 0 || inner.by_tsih.contains_key(&tsih) {
            tsih = tsih.wrapping_add(1);
        }
        inner.next_tsih = tsih.wrapping_add(1);
        let cancel = self.shutdown.child_token();
        let (tx, rx) = watch::channel(());
        inner.by_tsih.insert(
            tsih,
            Entry {
                key,
                cancel: cancel.clone(),
                done: rx,
                info: None,
            },
        );
        drop(inner);
        Ok(SessionGuard {
            registry: self.clone(),
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

    /// The sessions in full feature phase, by id.
    pub(crate) fn snapshots(&self) -> Vec<SessionSnapshot> {
        let mut out: Vec<SessionSnapshot> = self
            .lock()
            .by_tsih
            .values()
            .filter_map(|e| e.info.as_ref())
            .map(|i| SessionSnapshot {
                commands: i.commands.load(Ordering::Relaxed),
                ..i.snapshot.clone()
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// Cancels the listed sessions `close` picks; returns how many.
    pub(crate) fn close_where(&self, close: impl Fn(&SessionInfo) -> bool) -> u32 {
        let mut closed = 0;
        for e in self.lock().by_tsih.values() {
            if let Some(info) = &e.info
                && close(info)
            {
                e.cancel.cancel();
                closed += 1;
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, portal: PortalConfig) -> SessionInfo {
        SessionInfo {
            snapshot: SessionSnapshot {
                id,
                tsih: 0,
                initiator: "iqn.2024-01.org.example:host".into(),
                isid: [0; 6],
                target: Some("iqn.2024-01.org.esos:disk".into()),
                portal: portal.addr,
                peer: portal.addr,
                since: std::time::SystemTime::now(),
                params: crate::params::SessionParams::default(),
                commands: 0,
            },
            portal,
            commands: Arc::new(AtomicU64::new(id * 10)),
        }
    }

    /// One table from login to the end: a registered session is listed once it reaches
    /// full feature phase, closing it cancels it, and dropping its guard removes it from
    /// login limits and the list alike.
    #[tokio::test]
    async fn one_guard_ends_a_session_everywhere() {
        let shutdown = CancellationToken::new();
        let reg = Arc::new(Registry::new(2, 2, shutdown.clone()));
        let portal = PortalConfig {
            addr: "127.0.0.1:3260".parse().unwrap(),
            group_tag: 1,
        };
        let key = |n: u8| SessionKey::new("iqn.2024-01.org.example:host", [n; 6], Some("t"));
        let a = reg.register(key(1)).await.unwrap();
        let b = reg.register(key(2)).await.unwrap();
        assert_eq!(
            reg.register(key(3)).await.err(),
            Some(RegisterError::TooManySessions)
        );
        assert!(
            reg.snapshots().is_empty(),
            "listed only in full feature phase"
        );
        a.list(info(7, portal.clone()));
        b.list(info(5, portal.clone()));
        let listed = reg.snapshots();
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [5, 7]);
        assert_eq!(listed[1].commands, 70);
        assert_eq!(reg.close_where(|i| i.snapshot.id == 7), 1);
        assert!(a.cancel.is_cancelled() && !b.cancel.is_cancelled());
        let tsih = a.tsih;
        drop(a);
        assert!(!reg.exists(tsih));
        assert_eq!(reg.snapshots().len(), 1);
        reg.register(key(3)).await.unwrap();
        // Server shutdown reaches every session.
        shutdown.cancel();
        assert!(b.cancel.is_cancelled());
    }
}
