//! The iSCSI runtime: portals, the session registry and the accept loop.
//!
//! Each accepted TCP connection runs as two tasks (see [`crate::conn`]): a reader that
//! decodes PDUs and admits commands in CmdSN order, and a writer that drives the admitted
//! commands and sends every response, batching what is ready into one socket write.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use esos_common::sync::{LockExt, RwLockExt};
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
    /// A ping not answered within this time ends the connection. A socket write that makes
    /// no progress for this long (an initiator that stopped reading) ends it too.
    pub nop_in_timeout_ms: u64,
    /// Connections accepted but not yet in full feature phase. Beyond it new connections
    /// are closed at once, so half-open or slow logins cannot exhaust tasks and buffers
    /// before `login_timeout_ms` reaps them.
    pub max_login_connections: u32,
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
            max_login_connections: 128,
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

/// The part of the configuration that can change while the server runs
/// ([`ServerHandle::set_live`]).
#[derive(Debug, Clone, Default)]
pub struct LiveConfig {
    pub targets: Vec<TargetConfig>,
    pub discovery_chap: Option<ChapCredentials>,
}

impl LiveConfig {
    /// Looks up a target by name; iSCSI names compare case-insensitively (RFC 3722).
    pub(crate) fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The LUN map `initiator` sees on `target`, or `None` when it may not log in.
    pub(crate) fn lun_map<'a>(target: &'a TargetConfig, initiator: &str) -> Option<&'a LunMap> {
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

    /// The map a session of `initiator` on `target` reached through `portal` has under
    /// this configuration; `None` when it would no longer be let in.
    pub(crate) fn session_map(
        &self,
        target: &str,
        initiator: &str,
        portal: &PortalConfig,
    ) -> Option<&LunMap> {
        let t = self.target(target)?;
        if !t.enabled || !target_on_portal(t, portal) {
            return None;
        }
        Self::lun_map(t, initiator)
    }
}

/// True when `target` is reachable through `portal`.
pub(crate) fn target_on_portal(target: &TargetConfig, portal: &PortalConfig) -> bool {
    target.portals.is_empty() || target.portals.contains(&portal.addr)
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

/// Registered by each session for [`ServerHandle::sessions`] and live reconfiguration.
pub(crate) struct SessionEntry {
    pub(crate) snapshot: SessionSnapshot,
    pub(crate) portal: PortalConfig,
    pub(crate) commands: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) cancel: CancellationToken,
}

/// Server-wide event counters, for monitoring.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    logins: std::sync::atomic::AtomicU64,
    login_failures: std::sync::atomic::AtomicU64,
    /// Data-In bytes sent straight from a file's pages (`zero_copy_reads`).
    pub(crate) zero_copy_bytes: std::sync::atomic::AtomicU64,
}

impl Counters {
    pub(crate) fn logged_in(&self) {
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A connection that ended before full feature phase: refused, timed out, malformed or
    /// simply closed (discovery-less probes count too).
    pub(crate) fn login_failed(&self) {
        self.login_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
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
        let sessions = self.shared.sessions.locked();
        let mut closed = 0;
        for e in sessions.values() {
            let Some(target) = &e.snapshot.target else {
                continue;
            };
            if live
                .session_map(target, &e.snapshot.initiator, &e.portal)
                .is_none()
            {
                tracing::info!(
                    initiator = %e.snapshot.initiator,
                    target = %target,
                    "configuration no longer admits this session: closing it"
                );
                e.cancel.cancel();
                closed += 1;
            }
        }
        closed
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
            let sessions = self.shared.sessions.locked();
            for e in sessions.values() {
                if removed.contains(&e.portal.addr) {
                    e.cancel.cancel();
                    closed += 1;
                }
            }
        }
        for (configured, (listener, portal)) in bound {
            self.shared.start_portal(configured, listener, portal);
        }
        Ok(closed)
    }

    /// The portals accepting connections (ports resolved).
    pub fn portals(&self) -> Vec<PortalConfig> {
        self.shared.portals()
    }

    /// The sessions in full feature phase.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        let sessions = self.shared.sessions.locked();
        let mut out: Vec<_> = sessions
            .values()
            .map(|e| {
                let mut s = e.snapshot.clone();
                s.commands = e.commands.load(std::sync::atomic::Ordering::Relaxed);
                s
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// Closes session `id` (its connections drop; in-flight commands finish first).
    /// False when there is no such session.
    pub fn close_session(&self, id: u64) -> bool {
        let sessions = self.shared.sessions.locked();
        match sessions.get(&id) {
            Some(e) => {
                e.cancel.cancel();
                true
            }
            None => false,
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    /// (configured address, listener, portal as bound)
    listeners: Vec<(SocketAddr, TcpListener, PortalConfig)>,
}

/// State every connection task reads.
pub(crate) struct Shared {
    /// Static part of the configuration; its `targets` and `discovery_chap` are moved to
    /// `live` at bind time and stay empty.
    pub(crate) config: ServerConfig,
    live: std::sync::RwLock<Arc<LiveConfig>>,
    /// Bumped by every [`ServerHandle::set_live`]; sessions compare it per command.
    pub(crate) generation: std::sync::atomic::AtomicU64,
    /// Sessions in full feature phase, by session id.
    pub(crate) sessions: std::sync::Mutex<std::collections::HashMap<u64, SessionEntry>>,
    pub(crate) counters: Counters,
    /// Portals accepting connections: the address as configured (port 0 = any), the
    /// portal as bound, and the token that stops its accept loop.
    portals: std::sync::Mutex<Vec<(SocketAddr, PortalConfig, CancellationToken)>>,
    pub(crate) registry: Registry,
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

    /// Starts accepting on `listener`, bound for the portal configured as `configured`.
    fn start_portal(
        self: &Arc<Self>,
        configured: SocketAddr,
        listener: TcpListener,
        portal: PortalConfig,
    ) {
        let stop = self.shutdown.child_token();
        self.portals
            .locked()
            .push((configured, portal.clone(), stop.clone()));
        self.tasks
            .spawn(accept_loop(self.clone(), listener, portal, stop));
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
        let registry = Registry::new(
            config.limits.max_sessions,
            config.limits.max_sessions_per_target,
        );
        let login_slots = Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_login_connections as usize,
        ));
        Ok(Server {
            shared: Arc::new(Shared {
                config,
                live: std::sync::RwLock::new(Arc::new(live)),
                generation: std::sync::atomic::AtomicU64::new(0),
                sessions: Default::default(),
                counters: Counters::default(),
                portals: Default::default(),
                registry,
                shutdown: CancellationToken::new(),
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
            shared.start_portal(configured, listener, portal);
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
