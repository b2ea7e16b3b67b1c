//! The iSCSI runtime: portals, the session registry and the accept loop.
//!
//! Each accepted TCP connection runs as two tasks (see [`crate::conn`]): a reader that
//! decodes PDUs and admits commands in CmdSN order, and a writer that drives the admitted
//! commands and sends every response, batching what is ready into one socket write.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use esos_scsi::LunMap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::login::{ChapCredentials, LoginPolicy, TargetCheck};
use crate::params::TargetParams;
use crate::session::Registry;

/// A listening address and the target portal group it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalConfig {
    pub addr: SocketAddr,
    /// Target portal group tag (1..=65535) reported at login and in SendTargets.
    pub group_tag: u16,
}

/// Initiators allowed into a target, and the LUNs they see (LUN masking).
#[derive(Debug, Clone)]
pub struct InitiatorGroup {
    pub name: String,
    /// iSCSI names of the initiators in this group (compared case-insensitively).
    pub initiators: Vec<String>,
    pub luns: LunMap,
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// iqn./eui./naa. name, validated by the config layer.
    pub name: String,
    pub alias: Option<String>,
    /// A disabled target refuses logins and is hidden from discovery.
    pub enabled: bool,
    /// Portals this target is reachable on; empty = every portal.
    pub portals: Vec<SocketAddr>,
    pub groups: Vec<InitiatorGroup>,
    /// LUNs for initiators in no group; `None` refuses them.
    pub default_luns: Option<LunMap>,
    /// CHAP the initiator must pass to log in to this target.
    pub chap: Option<ChapCredentials>,
}

/// Limits on everything a peer controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Sessions across all targets (discovery included).
    pub max_sessions: u32,
    /// Sessions per target.
    pub max_sessions_per_target: u32,
    /// A login that has not reached full feature phase within this time is dropped.
    pub login_timeout_ms: u64,
    /// Commands one session may have in flight (the CmdSN window, MaxCmdSN - ExpCmdSN + 1).
    pub max_cmds_per_session: u32,
    /// Idle time after which the target sends a NOP-In ping; 0 disables pings.
    pub nop_in_interval_ms: u64,
    /// A ping not answered within this time ends the connection.
    pub nop_in_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1024,
            max_sessions_per_target: 256,
            login_timeout_ms: 15_000,
            max_cmds_per_session: 128,
            nop_in_interval_ms: 15_000,
            nop_in_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub portals: Vec<PortalConfig>,
    pub targets: Vec<TargetConfig>,
    pub discovery_chap: Option<ChapCredentials>,
    pub params: TargetParams,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(TcpListener, PortalConfig)>,
}

/// State every connection task reads.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) registry: Registry,
    /// Cancelled when the server shuts down.
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Buffer budget shared by every connection (see `conn::ffp::MAX_BUFFERED_BYTES_TOTAL`).
    pub(crate) buffer_budget: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// Looks up a target by name; iSCSI names compare case-insensitively (RFC 3722).
    pub(crate) fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.config
            .targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The LUN map `initiator` sees on `target`, or `None` when it may not log in.
    pub(crate) fn lun_map<'a>(
        &self,
        target: &'a TargetConfig,
        initiator: &str,
    ) -> Option<&'a LunMap> {
        target
            .groups
            .iter()
            .find(|g| {
                g.initiators
                    .iter()
                    .any(|i| i.eq_ignore_ascii_case(initiator))
            })
            .map(|g| &g.luns)
            .or(target.default_luns.as_ref())
    }

    /// True when `target` is reachable through the portal bound at `local`.
    pub(crate) fn target_on_portal(&self, target: &TargetConfig, portal: &PortalConfig) -> bool {
        target.portals.is_empty() || target.portals.contains(&portal.addr)
    }
}

/// Answers a login's questions for a connection accepted on `portal`.
pub(crate) struct Policy<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) portal: &'a PortalConfig,
}

impl LoginPolicy for Policy<'_> {
    fn check_target(&self, target_name: &str, initiator_name: &str) -> TargetCheck {
        let Some(t) = self.shared.target(target_name) else {
            return TargetCheck::NotFound;
        };
        if !self.shared.target_on_portal(t, self.portal) {
            return TargetCheck::NotFound;
        }
        if !t.enabled {
            return TargetCheck::Disabled;
        }
        if self.shared.lun_map(t, initiator_name).is_none() {
            return TargetCheck::Forbidden;
        }
        TargetCheck::Allowed {
            alias: t.alias.clone(),
            chap: t.chap.clone(),
        }
    }

    fn discovery_chap(&self) -> Option<ChapCredentials> {
        self.shared.config.discovery_chap.clone()
    }
}

impl Server {
    /// Binds every portal; fails without side effects if any cannot be bound.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let mut listeners = Vec::with_capacity(config.portals.len());
        for p in &config.portals {
            let l = TcpListener::bind(p.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: p.addr,
                    source,
                })?;
            let mut p = p.clone();
            if p.addr.port() == 0 {
                p.addr = l.local_addr().map_err(|source| ServerError::Bind {
                    addr: p.addr,
                    source,
                })?;
            }
            listeners.push((l, p));
        }
        let mut config = config;
        // Targets name their portals by the configured address; port 0 resolves here.
        config.portals = listeners.iter().map(|(_, p)| p.clone()).collect();
        let registry = Registry::new(
            config.limits.max_sessions,
            config.limits.max_sessions_per_target,
        );
        Ok(Server {
            shared: Arc::new(Shared {
                config,
                registry,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                buffer_budget: Arc::new(tokio::sync::Semaphore::new(
                    crate::conn::BUFFER_BUDGET_UNITS,
                )),
            }),
            listeners,
        })
    }

    /// The bound addresses (ports resolved when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, p)| p.addr).collect()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight commands
    /// finish and closes every connection.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let shared = self.shared;
        for (listener, portal) in self.listeners {
            let shared2 = shared.clone();
            shared.tasks.spawn(accept_loop(shared2, listener, portal));
        }
        shutdown.await;
        tracing::info!("shutting down: draining sessions");
        shared.shutdown.cancel();
        shared.tasks.close();
        shared.tasks.wait().await;
        tracing::info!("all sessions closed");
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, portal: PortalConfig) {
    tracing::info!(portal = %portal.addr, tpgt = portal.group_tag, "listening");
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let s = shared.clone();
                let p = portal.clone();
                shared.tasks.spawn(crate::conn::serve(s, stream, peer, p));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(portal = %portal.addr, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
