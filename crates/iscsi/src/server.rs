//! The iSCSI runtime: binding portals, the accept loop, and the handle management uses
//! to change a running server (targets, portals, sessions).
//!
//! Modules depend one way: `server` starts connections (`conn`), which register
//! their sessions in the session table (`session`); all of them read the state in
//! `shared` and the configuration types in `config`, re-exported here.
//! Each accepted TCP connection runs as two tasks (see `conn`): a reader that decodes PDUs
//! and admits commands in CmdSN order, and a writer that drives the admitted commands and
//! sends every response, batching what is ready into one socket write.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use esos_common::sync::{LockExt, RwLockExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::{
    InitiatorGroup, Limits, LiveConfig, PortalConfig, ServerConfig, TargetConfig,
};
use crate::session::Registry;
pub use crate::session::SessionSnapshot;
use crate::shared::{Counters, Shared};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "portal {addr}: its portal group cannot change while the daemon runs; remove the portal and add it again"
    )]
    PortalGroupChange { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Login outcomes since the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginCounts {
    /// Connections that reached full feature phase (discovery sessions included).
    pub succeeded: u64,
    /// Connections that ended during login.
    pub failed: u64,
}

/// Changes a running server: cheap to clone, usable from any task.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Replaces the targets and discovery CHAP. New logins see the change at once; each
    /// running session moves to its new LUN map at its next command (with REPORTED LUNS
    /// DATA HAS CHANGED when its LUNs differ); sessions the new configuration no longer
    /// admits (target gone or disabled, initiator no longer in an ACL) are closed.
    /// Returns how many sessions were closed.
    pub fn set_live(&self, live: LiveConfig) -> u32 {
        let live = Arc::new(live);
        *self.shared.live.write_locked() = live.clone();
        self.shared
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.shared.registry.close_where(|e| {
            let Some(target) = &e.snapshot.target else {
                return false;
            };
            let gone = live
                .session_map(target, &e.snapshot.initiator, &e.portal)
                .is_none();
            if gone {
                tracing::info!(
                    initiator = %e.snapshot.initiator,
                    target = %target,
                    "configuration no longer admits this session: closing it"
                );
            }
            gone
        })
    }

    /// Login outcomes since the server started.
    pub fn login_counts(&self) -> LoginCounts {
        let c = &self.shared.counters;
        LoginCounts {
            succeeded: c.logins.load(std::sync::atomic::Ordering::Relaxed),
            failed: c.login_failures.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Data-In bytes sent straight from the page cache since the server started
    /// ([`crate::params::TargetParams::zero_copy_reads`]).
    pub fn zero_copy_bytes(&self) -> u64 {
        self.shared
            .counters
            .zero_copy_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes `portals` the set of listening portals: new ones are bound first (nothing
    /// changes when one cannot be), removed ones stop accepting and their sessions are
    /// closed. Returns how many sessions were closed.
    pub async fn set_portals(&self, portals: Vec<PortalConfig>) -> Result<u32, ServerError> {
        // Matched by the address as configured, so a port-0 portal stays the same one.
        let current: Vec<(SocketAddr, PortalConfig)> = self
            .shared
            .portals
            .locked()
            .iter()
            .map(|(c, p, _)| (*c, p.clone()))
            .collect();
        for p in &portals {
            if let Some((_, c)) = current.iter().find(|(c, _)| *c == p.addr)
                && c.group_tag != p.group_tag
            {
                return Err(ServerError::PortalGroupChange { addr: p.addr });
            }
        }
        let mut bound = Vec::new();
        for p in portals
            .iter()
            .filter(|p| !current.iter().any(|(c, _)| *c == p.addr))
        {
            bound.push((p.addr, bind_portal(p).await?));
        }
        let removed: Vec<SocketAddr> = current
            .iter()
            .filter(|(c, _)| !portals.iter().any(|p| p.addr == *c))
            .map(|(_, p)| p.addr)
            .collect();
        let mut closed = 0;
        if !removed.is_empty() {
            self.shared.portals.locked().retain(|(_, p, stop)| {
                let keep = !removed.contains(&p.addr);
                if !keep {
                    tracing::info!(portal = %p.addr, "portal removed: no longer listening");
                    stop.cancel();
                }
                keep
            });
            closed = self
                .shared
                .registry
                .close_where(|e| removed.contains(&e.portal.addr));
        }
        for (configured, (listener, portal)) in bound {
            start_portal(&self.shared, configured, listener, portal);
        }
        Ok(closed)
    }

    /// The portals accepting connections (ports resolved).
    pub fn portals(&self) -> Vec<PortalConfig> {
        self.shared.portals()
    }

    /// The sessions in full feature phase.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        self.shared.registry.snapshots()
    }

    /// Closes session `id` (its connections drop; in-flight commands finish first).
    /// False when there is no such session.
    pub fn close_session(&self, id: u64) -> bool {
        self.shared.registry.close_where(|e| e.snapshot.id == id) > 0
    }
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    /// (configured address, listener, portal as bound)
    listeners: Vec<(SocketAddr, TcpListener, PortalConfig)>,
}

impl Server {
    /// Binds every portal; fails without side effects if any cannot be bound.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let mut listeners = Vec::with_capacity(config.portals.len());
        for p in &config.portals {
            let (l, bound) = bind_portal(p).await?;
            listeners.push((p.addr, l, bound));
        }
        let mut config = config;
        // Targets name their portals by the configured address; port 0 resolves here.
        config.portals = listeners.iter().map(|(_, _, p)| p.clone()).collect();
        let live = LiveConfig {
            targets: std::mem::take(&mut config.targets),
            discovery_chap: config.discovery_chap.take(),
        };
        let shutdown = CancellationToken::new();
        let registry = Arc::new(Registry::new(
            config.limits.max_sessions,
            config.limits.max_sessions_per_target,
            shutdown.clone(),
        ));
        let login_slots = Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_login_connections as usize,
        ));
        Ok(Server {
            shared: Arc::new(Shared {
                config,
                live: std::sync::RwLock::new(Arc::new(live)),
                generation: std::sync::atomic::AtomicU64::new(0),
                counters: Counters::default(),
                portals: Default::default(),
                registry,
                shutdown,
                tasks: TaskTracker::new(),
                buffer_budget: Arc::new(tokio::sync::Semaphore::new(
                    crate::conn::BUFFER_BUDGET_UNITS,
                )),
                login_slots,
            }),
            listeners,
        })
    }

    /// A handle to change the server while it runs.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// The bound addresses (ports resolved when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, _, p)| p.addr).collect()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight commands
    /// finish and closes every connection.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let shared = self.shared;
        for (configured, listener, portal) in self.listeners {
            start_portal(&shared, configured, listener, portal);
        }
        shutdown.await;
        tracing::info!("shutting down: draining sessions");
        shared.shutdown.cancel();
        shared.tasks.close();
        shared.tasks.wait().await;
        tracing::info!("all sessions closed");
    }
}

/// Refused connections between two log lines while the login limit is hit, so a flood
/// of connections cannot flood the log too.
const LOGIN_LIMIT_LOG_EVERY: u64 = 1000;

/// Binds one portal; a port of 0 is resolved in the returned config.
async fn bind_portal(p: &PortalConfig) -> Result<(TcpListener, PortalConfig), ServerError> {
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
    Ok((l, p))
}

/// Starts accepting on `listener`, bound for the portal configured as `configured`.
fn start_portal(
    shared: &Arc<Shared>,
    configured: SocketAddr,
    listener: TcpListener,
    portal: PortalConfig,
) {
    let stop = shared.shutdown.child_token();
    shared
        .portals
        .locked()
        .push((configured, portal.clone(), stop.clone()));
    shared
        .tasks
        .spawn(accept_loop(shared.clone(), listener, portal, stop));
}

/// Accepts connections on one portal until `stop` (a child of the server's shutdown
/// token) is cancelled.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    portal: PortalConfig,
    stop: CancellationToken,
) {
    tracing::info!(portal = %portal.addr, tpgt = portal.group_tag, "listening");
    let mut refused: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(slot) = shared.login_slots.clone().try_acquire_owned() else {
                    // Closed without a word: there is no login yet to answer.
                    if refused.is_multiple_of(LOGIN_LIMIT_LOG_EVERY) {
                        tracing::warn!(
                            %peer,
                            limit = shared.config.limits.max_login_connections,
                            refused_so_far = refused + 1,
                            "too many connections in login: closing new ones"
                        );
                    }
                    refused += 1;
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let s = shared.clone();
                let p = portal.clone();
                shared
                    .tasks
                    .spawn(crate::conn::serve(s, stream, peer, p, slot));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(portal = %portal.addr, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
