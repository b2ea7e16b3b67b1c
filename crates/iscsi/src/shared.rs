//! What every connection task reads: the configuration (static and live), the session
//! table, counters, budgets and the server's shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use esos_common::sync::{LockExt, RwLockExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{LiveConfig, PortalConfig, ServerConfig, target_on_portal};
use crate::login::{ChapCredentials, LoginPolicy, TargetCheck};
use crate::session::Registry;

/// Server-wide event counters, for monitoring.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) logins: AtomicU64,
    pub(crate) login_failures: AtomicU64,
    /// Data-In bytes sent straight from a file's pages (`zero_copy_reads`).
    pub(crate) zero_copy_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn logged_in(&self) {
        self.logins.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection that ended before full feature phase: refused, timed out, malformed or
    /// simply closed (discovery-less probes count too).
    pub(crate) fn login_failed(&self) {
        self.login_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// State every connection task reads.
pub(crate) struct Shared {
    /// Static part of the configuration; its `targets` and `discovery_chap` are moved to
    /// `live` at bind time and stay empty.
    pub(crate) config: ServerConfig,
    pub(crate) live: std::sync::RwLock<Arc<LiveConfig>>,
    /// Bumped by every [`crate::server::ServerHandle::set_live`]; sessions compare it per
    /// command.
    pub(crate) generation: AtomicU64,
    pub(crate) counters: Counters,
    /// Portals accepting connections: the address as configured (port 0 = any), the
    /// portal as bound, and the token that stops its accept loop.
    pub(crate) portals: std::sync::Mutex<Vec<(SocketAddr, PortalConfig, CancellationToken)>>,
    /// Every session, from login to its end.
    pub(crate) registry: Arc<Registry>,
    /// Cancelled when the server shuts down.
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Buffer budget shared by every connection (see `conn::ffp::MAX_BUFFERED_BYTES_TOTAL`).
    pub(crate) buffer_budget: Arc<tokio::sync::Semaphore>,
    /// One permit per connection still in the login phase (`Limits::max_login_connections`).
    pub(crate) login_slots: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// The portals accepting connections now.
    pub(crate) fn portals(&self) -> Vec<PortalConfig> {
        self.portals
            .locked()
            .iter()
            .map(|(_, p, _)| p.clone())
            .collect()
    }

    /// The current targets and discovery CHAP.
    pub(crate) fn live(&self) -> Arc<LiveConfig> {
        self.live.read_locked().clone()
    }
}

/// Answers a login's questions for a connection accepted on `portal`.
pub(crate) struct Policy<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) portal: &'a PortalConfig,
}

impl LoginPolicy for Policy<'_> {
    fn check_target(&self, target_name: &str, initiator_name: &str) -> TargetCheck {
        let live = self.shared.live();
        let Some(t) = live.target(target_name) else {
            return TargetCheck::NotFound;
        };
        if !target_on_portal(t, self.portal) {
            return TargetCheck::NotFound;
        }
        if !t.enabled {
            return TargetCheck::Disabled;
        }
        if LiveConfig::lun_map(t, initiator_name).is_none() {
            return TargetCheck::Forbidden;
        }
        TargetCheck::Allowed {
            alias: t.alias.clone(),
            chap: t.chap.clone(),
        }
    }

    fn discovery_chap(&self) -> Option<ChapCredentials> {
        self.shared.live().discovery_chap.clone()
    }
}
