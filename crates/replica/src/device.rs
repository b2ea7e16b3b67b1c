//! [`Replica`]: the replicated device, a [`esos_block::BlockDevice`] over a local device and
//! the same device on one or two peers.
//!
//! Where things are: this file holds the configuration, the shared state and the
//! management operations (promote, demote, down, verify, resolve, status); `io.rs` the
//! block I/O of the primary (write path, exclusion of a lost peer); `peer.rs` the link to
//! each peer (connect or accept, the hello and the generation decision, what a secondary
//! does with each message); `resync.rs` resync, verify and the bitmap exchange.
//!
//! Lock order, outermost first: `io_gate` (writes share it; link transitions take it
//! alone, so no write is half sent when a peer starts or stops being replicated to),
//! `gen_lock` (generation changes and role changes), then the short `std` mutexes, never
//! held across an `.await` and never two of `st` and a peer's `info` at once (each may be
//! followed by the metadata's memory, a link's pending map or the arbiter's state).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use esos_block::{BlockDevice as _, Device};
use esos_common::sync::LockExt as _;
use tokio::sync::{mpsc, watch};

use crate::arbiter::{Arbiter, NodeName, QuorumError};
use crate::generation::Decision;
use crate::link::Conn;
use crate::meta::{FLAG_CRASHED_PRIMARY, FLAG_PRIMARY, Meta, MetaError};
use crate::net::{Purpose, Router};
use crate::rangelock::RangeLock;
use crate::status::{DataState, LinkState, PeerStatus, ReplicaStatus, Role};
use crate::wire::Msg;

/// Default bitmap granularity.
pub const DEFAULT_CHUNK_BYTES: u32 = 64 << 10;
/// Side-state blobs a subscriber may leave unread before newer ones are dropped.
pub const STATE_QUEUE: usize = 64;
/// A node that just started leaves its links this long to find a primary before it may
/// promote itself.
const AUTO_PROMOTE_GRACE: Duration = Duration::from_secs(2);
/// Longest wait between two self-promotion attempts.
const AUTO_PROMOTE_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a secondary compares its generation with the quorum record.
const OUTDATE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often the monitor looks at the lease and the primary.
const MONITOR_INTERVAL: Duration = Duration::from_millis(100);

/// One replicated device on this node.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Cluster name, the same on every node.
    pub cluster: String,
    /// Replicated device name, the same on every node.
    pub device: String,
    pub me: NodeName,
    /// The other data nodes (1 or 2) and their cluster listeners.
    pub peers: Vec<(NodeName, SocketAddr)>,
    /// This node's metadata file for the device.
    pub meta_path: PathBuf,
    /// Bitmap granularity (a power of two, at least 4 KiB); default [`DEFAULT_CHUNK_BYTES`].
    pub chunk_bytes: u32,
    /// Resync bandwidth; 0 = unlimited.
    pub resync_rate_bytes_per_sec: u64,
    /// Promote itself when the primary is lost (esos's own failover through the quorum).
    pub auto_promote: bool,
    /// How long I/O waits for the quorum or a peer before it fails `Unavailable`.
    pub io_timeout_ms: u64,
}

/// Why a replicated device could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("local device: {0}")]
    Local(#[from] esos_block::BlockError),
    #[error("quorum: {0}")]
    Quorum(#[from] QuorumError),
    #[error("invalid replicated device configuration: {0}")]
    Config(String),
    /// Not possible in the present state; the message says why.
    #[error("{0}")]
    Refused(String),
}

/// Role changes as the daemon follows them (ALUA states, the API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleView {
    pub role: Role,
    /// The primary as known here (this node or a peer), if any.
    pub primary: Option<NodeName>,
    /// A promotion or demotion is running.
    pub transitioning: bool,
    /// Taken down by the administrator: no links, no I/O.
    pub down: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub role: Role,
    pub down: bool,
    pub transitioning: bool,
    pub primary: Option<NodeName>,
    /// The record's up-to-date nodes as this primary last set them.
    pub up_to_date: Vec<NodeName>,
    pub state_sub: Option<mpsc::Sender<Vec<u8>>>,
    pub started: Instant,
    pub shut: bool,
    /// A generation made (and durable) to go on without a peer, not yet in the record.
    pub pending_exclusion: Option<(NodeName, u64)>,
    /// The last side state sent, replayed to a peer that comes back in step.
    pub last_state: Option<Vec<u8>>,
}

/// What the link to one peer is doing, for status and for the write path.
#[derive(Debug)]
pub(crate) struct PeerInfo {
    pub link: LinkState,
    pub role: Option<Role>,
    pub data: Option<DataState>,
    /// Writes of this node go to the peer (in sync, or a sync target being filled).
    pub replicating: bool,
    pub decision: Option<Decision>,
    pub report: Option<String>,
    /// Once the peer's bitmap has arrived, resync to it (`Some(full)`).
    pub resync_after_bitmap: Option<bool>,
    pub conn: Option<Arc<Conn>>,
    pub sync_done_bytes: u64,
    pub sync_total_bytes: u64,
    pub sync_rate_bytes_per_sec: u64,
    pub verify_mismatched_chunks: u64,
    pub peer_out_of_sync_bytes: u64,
}

impl PeerInfo {
    pub(crate) fn disconnected() -> PeerInfo {
        PeerInfo {
            link: LinkState::Connecting,
            role: None,
            data: None,
            replicating: false,
            decision: None,
            report: None,
            resync_after_bitmap: None,
            conn: None,
            sync_done_bytes: 0,
            sync_total_bytes: 0,
            sync_rate_bytes_per_sec: 0,
            verify_mismatched_chunks: 0,
            peer_out_of_sync_bytes: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub name: NodeName,
    pub addr: SocketAddr,
    /// This node opens the connection (its name is the smaller).
    pub i_connect: bool,
    pub info: Mutex<PeerInfo>,
    /// Accepted connections for this peer (when it connects).
    pub incoming: tokio::sync::Mutex<mpsc::Receiver<tokio::net::TcpStream>>,
    pub incoming_tx: mpsc::Sender<tokio::net::TcpStream>,
}

impl Peer {
    pub(crate) fn conn(&self) -> Option<Arc<Conn>> {
        self.info.locked().conn.clone()
    }
}

/// The replicated device.
pub struct Replica {
    pub(crate) cfg: ReplicaConfig,
    pub(crate) local: Device,
    pub(crate) size_bytes: u64,
    pub(crate) arbiter: Arc<dyn Arbiter>,
    pub(crate) router: Arc<Router>,
    pub(crate) meta: Meta,
    pub(crate) st: Mutex<State>,
    pub(crate) role_tx: watch::Sender<RoleView>,
    pub(crate) peers: Vec<Arc<Peer>>,
    pub(crate) ranges: RangeLock,
    pub(crate) gen_lock: tokio::sync::Mutex<()>,
    pub(crate) io_gate: tokio::sync::RwLock<()>,
    pub(crate) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(crate) this: Weak<Replica>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("device", &self.cfg.device)
            .field("me", &self.cfg.me)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unavailable(why: impl Into<String>) -> esos_block::BlockError {
    esos_block::BlockError::new(esos_block::BlockErrorKind::Unavailable, why)
}

/// A random generation (never 0, which means "none").
pub(crate) fn new_generation() -> u64 {
    loop {
        let g: u64 = rand::random();
        if g != 0 {
            return g;
        }
    }
}

impl Replica {
    /// Opens the metadata, registers the device's links with `router` and starts as
    /// secondary, connecting to the peers.
    pub async fn start(
        cfg: ReplicaConfig,
        local: Device,
        arbiter: Arc<dyn Arbiter>,
        router: Arc<Router>,
    ) -> Result<Arc<Replica>, ReplicaError> {
        if cfg.peers.is_empty() || cfg.peers.len() > crate::meta::MAX_PEERS {
            return Err(ReplicaError::Config(format!(
                "{} peers; 1 to {} expected",
                cfg.peers.len(),
                crate::meta::MAX_PEERS
            )));
        }
        if *router.me() != cfg.me || router.cluster() != cfg.cluster {
            return Err(ReplicaError::Config(format!(
                "the cluster listener is {} of {:?}, the device is configured for {} of {:?}",
                router.me(),
                router.cluster(),
                cfg.me,
                cfg.cluster
            )));
        }
        if cfg.peers.iter().any(|(p, _)| *p == cfg.me) {
            return Err(ReplicaError::Config(format!("{} is its own peer", cfg.me)));
        }
        let size_bytes = local.num_blocks() * u64::from(local.block_size());
        let names: Vec<NodeName> = cfg.peers.iter().map(|(n, _)| n.clone()).collect();
        let (meta, opened) = {
            let (path, chunk) = (cfg.meta_path.clone(), cfg.chunk_bytes);
            tokio::task::spawn_blocking(move || Meta::open(&path, size_bytes, chunk, &names))
                .await
                .map_err(|e| ReplicaError::Config(format!("metadata open: {e}")))??
        };
        if opened.crashed {
            tracing::warn!(
                "replicated device {}: not shut down cleanly; its activity log is marked for resync",
                cfg.device
            );
        }
        let peers = cfg
            .peers
            .iter()
            .map(|(name, addr)| {
                let (tx, rx) = mpsc::channel(1);
                Arc::new(Peer {
                    name: name.clone(),
                    addr: *addr,
                    i_connect: cfg.me < *name,
                    info: Mutex::new(PeerInfo::disconnected()),
                    incoming: tokio::sync::Mutex::new(rx),
                    incoming_tx: tx,
                })
            })
            .collect();
        let (role_tx, _) = watch::channel(RoleView {
            role: Role::Secondary,
            primary: None,
            transitioning: false,
            down: false,
        });
        let accept = router.register(Purpose::Replica(cfg.device.clone()));
        let r = Arc::new_cyclic(|this| Replica {
            cfg,
            local,
            size_bytes,
            arbiter,
            router,
            meta,
            st: Mutex::new(State {
                role: Role::Secondary,
                down: false,
                transitioning: false,
                primary: None,
                up_to_date: vec![],
                state_sub: None,
                started: Instant::now(),
                shut: false,
                pending_exclusion: None,
                last_state: None,
            }),
            role_tx,
            peers,
            ranges: RangeLock::new(),
            gen_lock: tokio::sync::Mutex::new(()),
            io_gate: tokio::sync::RwLock::new(()),
            tasks: Mutex::new(vec![]),
            this: this.clone(),
        });
        let mut tasks = vec![tokio::spawn(r.clone().accept_loop(accept))];
        for p in &r.peers {
            tasks.push(tokio::spawn(r.clone().link_loop(p.clone())));
        }
        tasks.push(tokio::spawn(r.clone().monitor()));
        r.tasks.locked().extend(tasks);
        Ok(r)
    }

    pub(crate) fn arc(&self) -> Arc<Replica> {
        self.this.upgrade().expect("a running replica is held")
    }

    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let h = tokio::spawn(f);
        let mut t = self.tasks.locked();
        t.retain(|h| !h.is_finished());
        t.push(h);
    }

    /// Publishes the role view when it changed.
    pub(crate) fn publish(&self) {
        let v = {
            let st = self.st.locked();
            RoleView {
                role: st.role,
                primary: st.primary.clone(),
                transitioning: st.transitioning,
                down: st.down,
            }
        };
        self.role_tx.send_if_modified(|old| {
            let changed = *old != v;
            *old = v;
            changed
        });
    }

    pub(crate) fn role(&self) -> Role {
        self.st.locked().role
    }

    pub(crate) fn data(&self) -> DataState {
        self.meta.data()
    }

    /// Tells every connected peer this node's role, data state and generation.
    pub(crate) fn announce(&self) {
        let h = self.meta.header();
        let role = self.role();
        for p in &self.peers {
            if let Some(c) = p.conn() {
                c.send(Msg::RoleChange {
                    role,
                    data: h.data,
                    generation: h.current,
                });
            }
        }
    }

    pub fn status(&self) -> ReplicaStatus {
        let h = self.meta.header();
        // Copied out first: `st` is never held while a peer's `info` is taken.
        let (role, primary) = {
            let st = self.st.locked();
            (st.role, st.primary.clone())
        };
        let mut report = None;
        let peers = self
            .peers
            .iter()
            .map(|p| {
                let i = p.info.locked();
                if i.report.is_some() && report.is_none() {
                    report = i.report.clone();
                }
                PeerStatus {
                    name: p.name.clone(),
                    link: i.link,
                    role: i.role,
                    data: i.data,
                    out_of_sync_bytes: self.meta.out_of_sync_bytes(&p.name),
                    sync_done_bytes: i.sync_done_bytes,
                    sync_total_bytes: i.sync_total_bytes,
                    sync_rate_bytes_per_sec: i.sync_rate_bytes_per_sec,
                    verify_mismatched_chunks: i.verify_mismatched_chunks,
                    in_flight: i.conn.as_ref().map_or(0, |c| c.in_flight()),
                }
            })
            .collect();
        ReplicaStatus {
            device: self.cfg.device.clone(),
            me: self.cfg.me.clone(),
            role,
            data: h.data,
            generation: h.current,
            quorate: self.arbiter.quorate(),
            lease_valid: role == Role::Primary && self.arbiter.lease_valid(),
            primary,
            peers,
            report,
        }
    }

    pub fn watch(&self) -> watch::Receiver<RoleView> {
        self.role_tx.subscribe()
    }

    /// Makes this node primary. Without `force` its data must be up to date and the
    /// quorum must agree (same generation, no other primary); `force` is the
    /// administrator's word: the first promotion of a fresh pair, or taking over with data
    /// the record does not call up to date.
    pub async fn promote(&self, force: bool) -> Result<(), ReplicaError> {
        let _gate = self.io_gate.write().await;
        let _g = self.gen_lock.lock().await;
        {
            let st = self.st.locked();
            if st.down {
                return Err(ReplicaError::Refused(
                    "the device is down on this node".into(),
                ));
            }
            if st.role == Role::Primary {
                return Ok(());
            }
        }
        let h = self.meta.header();
        match h.data {
            DataState::UpToDate => {}
            DataState::Failed => {
                return Err(ReplicaError::Refused("the local device failed".into()));
            }
            DataState::Inconsistent if h.current != 0 || !force => {
                return Err(ReplicaError::Refused(
                    "the local data is inconsistent (a resync has not finished)".into(),
                ));
            }
            d if !force => {
                return Err(ReplicaError::Refused(format!(
                    "the local data is {d}; only a forced promotion may use it"
                )));
            }
            _ => {}
        }
        self.st.locked().transitioning = true;
        self.publish();
        let res = self.promote_locked(force, &h).await;
        {
            let mut st = self.st.locked();
            st.transitioning = false;
            if res.is_ok() {
                st.role = Role::Primary;
                st.primary = Some(self.cfg.me.clone());
            }
        }
        self.publish();
        if res.is_ok() {
            self.announce();
            // Links that were waiting (both fresh) negotiate again with the new generation.
            for p in &self.peers {
                let i = p.info.locked();
                if !i.replicating
                    && let Some(c) = &i.conn
                {
                    c.close();
                }
            }
        }
        res
    }

    async fn promote_locked(
        &self,
        force: bool,
        h: &crate::meta::Header,
    ) -> Result<(), ReplicaError> {
        let rec = self.arbiter.promote(h.current, force).await?;
        let in_sync: Vec<NodeName> = self
            .peers
            .iter()
            .filter(|p| {
                let i = p.info.locked();
                i.replicating && i.link == LinkState::Connected
            })
            .map(|p| p.name.clone())
            .collect();
        let left_behind: Vec<NodeName> = self
            .peers
            .iter()
            .map(|p| p.name.clone())
            .filter(|n| !in_sync.contains(n))
            .collect();
        let mut up_to_date = vec![self.cfg.me.clone()];
        up_to_date.extend(in_sync);
        // A new line of writes when the data is fresh or forced past the record, or when
        // a peer is not here to take every write from now on.
        let fresh = h.current == 0 || rec.generation != h.current;
        let generation = if fresh || !left_behind.is_empty() {
            let g = new_generation();
            self.meta
                .update(|m| {
                    m.new_generation(g, &left_behind);
                    m.data = DataState::UpToDate;
                    m.flags |= FLAG_PRIMARY;
                })
                .await?;
            g
        } else {
            self.meta.update(|m| m.flags |= FLAG_PRIMARY).await?;
            h.current
        };
        if generation != rec.generation || rec.up_to_date != up_to_date {
            let rec = match self
                .arbiter
                .set_up_to_date(generation, up_to_date.clone())
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.arbiter.demote().await;
                    let _ = self.meta.update(|m| m.flags &= !FLAG_PRIMARY).await;
                    return Err(e.into());
                }
            };
            self.st.locked().up_to_date = rec.up_to_date;
        } else {
            self.st.locked().up_to_date = rec.up_to_date;
        }
        Ok(())
    }

    /// Gives up the primary role: new I/O fails at once, I/O in flight finishes, then the
    /// quorum record drops this node as primary.
    pub async fn demote(&self) -> Result<(), ReplicaError> {
        {
            let mut st = self.st.locked();
            if st.role != Role::Primary {
                return Ok(());
            }
            st.role = Role::Secondary;
            st.transitioning = true;
        }
        self.publish();
        let res = {
            let _gate = self.io_gate.write().await;
            let _g = self.gen_lock.lock().await;
            let r = self.arbiter.demote().await;
            let m = self.meta.update(|m| m.flags &= !FLAG_PRIMARY).await;
            r.map(|_| ())
                .map_err(ReplicaError::from)
                .and(m.map_err(ReplicaError::from))
        };
        {
            let mut st = self.st.locked();
            st.transitioning = false;
            if st.primary.as_ref() == Some(&self.cfg.me) {
                st.primary = None;
            }
        }
        self.publish();
        self.announce();
        res
    }

    /// Down: demotes, drops every link and refuses I/O until brought up again.
    pub async fn set_down(&self, down: bool) -> Result<(), ReplicaError> {
        let demoted = if down { self.demote().await } else { Ok(()) };
        self.st.locked().down = down;
        if down {
            for p in &self.peers {
                if let Some(c) = p.conn() {
                    c.close();
                }
            }
        }
        self.publish();
        demoted
    }

    /// Starts an online verify with every peer in sync; mismatches set bits and count.
    pub async fn verify(&self) -> Result<(), ReplicaError> {
        let targets: Vec<_> = self
            .peers
            .iter()
            .filter(|p| {
                let i = p.info.locked();
                i.link == LinkState::Connected && i.replicating
            })
            .cloned()
            .collect();
        if targets.is_empty() {
            return Err(ReplicaError::Refused(
                "no peer is connected and in sync".into(),
            ));
        }
        for p in targets {
            let r = self.arc();
            self.spawn(async move { r.run_verify(p).await });
        }
        Ok(())
    }

    /// Ends a split brain (or unrelated data): `keep_local` keeps this node's data and
    /// makes the peer the target of a resync of both bitmaps (everything when they do not
    /// cover the difference); otherwise this node becomes the target.
    pub async fn resolve_split_brain(&self, keep_local: bool) -> Result<(), ReplicaError> {
        let p = self
            .peers
            .iter()
            .find(|p| {
                matches!(
                    p.info.locked().link,
                    LinkState::SplitBrain | LinkState::Unrelated
                )
            })
            .cloned()
            .ok_or_else(|| ReplicaError::Refused("no split brain is detected".into()))?;
        self.resolve_with(&p, keep_local, true).await
    }

    /// Clean stop: links dropped, bitmaps saved, the activity log emptied.
    pub async fn shutdown(&self) {
        {
            let mut st = self.st.locked();
            if st.shut {
                return;
            }
            st.shut = true;
            st.down = true;
        }
        self.router
            .unregister(&Purpose::Replica(self.cfg.device.clone()));
        if self.role() == Role::Primary {
            let _ = self.demote().await;
        }
        for p in &self.peers {
            if let Some(c) = p.conn() {
                c.close();
            }
        }
        let tasks = std::mem::take(&mut *self.tasks.locked());
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let _gate = self.io_gate.write().await;
        if let Err(e) = self.meta.close().await {
            tracing::error!("replicated device {}: {e}", self.cfg.device);
        }
        self.publish();
    }

    /// Primary: sends `blob` to every peer replicated to, in order with the writes. The
    /// last blob is sent again to a peer whose link comes back, so blobs that carry the
    /// whole side state keep every secondary current.
    pub fn send_state(&self, blob: Vec<u8>) {
        if self.role() != Role::Primary {
            return;
        }
        if blob.len() > crate::wire::MAX_STATE_BLOB_BYTES {
            tracing::error!(
                "replicated device {}: side state of {} bytes not sent",
                self.cfg.device,
                blob.len()
            );
            return;
        }
        for p in &self.peers {
            let i = p.info.locked();
            if i.replicating
                && let Some(c) = &i.conn
            {
                c.send(Msg::StateBlob { blob: blob.clone() });
            }
        }
        self.st.locked().last_state = Some(blob);
    }

    /// Secondary: the side state blobs the primary sends; a new subscription replaces the
    /// previous one.
    pub fn subscribe_state(&self) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(STATE_QUEUE);
        self.st.locked().state_sub = Some(tx);
        rx
    }

    /// Lease and failover watch: a primary whose lease ended and whom the record no
    /// longer names steps down; with `auto_promote`, an up-to-date secondary that sees no
    /// primary asks the quorum to promote it, backing off while refused.
    async fn monitor(self: Arc<Self>) {
        let mut backoff = MONITOR_INTERVAL;
        let mut next_try = Instant::now();
        let mut next_outdate_check = Instant::now();
        loop {
            tokio::time::sleep(MONITOR_INTERVAL).await;
            let (role, down, started) = {
                let st = self.st.locked();
                (st.role, st.down, st.started)
            };
            if down {
                continue;
            }
            if role == Role::Primary {
                if !self.arbiter.lease_valid()
                    && let Ok(rec) = self.arbiter.record().await
                    && rec.primary.as_ref() != Some(&self.cfg.me)
                {
                    tracing::warn!(
                        "replicated device {}: lease lost and {:?} is primary: stepping down",
                        self.cfg.device,
                        rec.primary
                    );
                    self.step_down().await;
                }
                continue;
            }
            if Instant::now() >= next_outdate_check {
                next_outdate_check = Instant::now() + OUTDATE_CHECK_INTERVAL;
                self.outdate_if_left_behind().await;
            }
            let peer_primary = self
                .peers
                .iter()
                .any(|p| p.info.locked().role == Some(Role::Primary));
            if !self.cfg.auto_promote
                || peer_primary
                || self.data() != DataState::UpToDate
                || started.elapsed() < AUTO_PROMOTE_GRACE
                || Instant::now() < next_try
            {
                if peer_primary {
                    backoff = MONITOR_INTERVAL;
                }
                continue;
            }
            match self.promote(false).await {
                Ok(()) => {
                    tracing::info!("replicated device {}: promoted itself", self.cfg.device);
                    backoff = MONITOR_INTERVAL;
                }
                Err(e) => {
                    tracing::debug!("replicated device {}: self-promotion: {e}", self.cfg.device);
                    backoff = (backoff * 2).min(AUTO_PROMOTE_MAX_BACKOFF);
                    next_try = Instant::now() + backoff;
                }
            }
        }
    }

    /// Secondary: marks the data Outdated once the record shows the primary went on
    /// without this node (so status and metrics do not call it up to date).
    async fn outdate_if_left_behind(&self) {
        if self.data() != DataState::UpToDate {
            return;
        }
        let Ok(rec) = self.arbiter.record().await else {
            return;
        };
        let _g = self.gen_lock.lock().await;
        let current = self.meta.header().current;
        if rec.epoch > 0
            && rec.generation != 0
            && rec.generation != current
            && !rec.is_up_to_date(&self.cfg.me)
            && self.role() == Role::Secondary
            && self.data() == DataState::UpToDate
        {
            tracing::warn!(
                "replicated device {}: the primary went on without this node: outdated",
                self.cfg.device
            );
            let _ = self.meta.update(|h| h.data = DataState::Outdated).await;
            self.announce();
        }
    }

    /// Becomes secondary without asking the quorum (it already names another primary).
    pub(crate) async fn step_down(&self) {
        {
            let mut st = self.st.locked();
            st.role = Role::Secondary;
            st.primary = None;
        }
        self.publish();
        let _gate = self.io_gate.write().await;
        let _ = self.meta.update(|m| m.flags &= !FLAG_PRIMARY).await;
        for p in &self.peers {
            if let Some(c) = p.conn() {
                c.close();
            }
        }
    }

    /// The local device failed under the primary: data Failed, demoted.
    pub(crate) fn local_failed(&self, e: &esos_block::BlockError) {
        tracing::error!(
            "replicated device {}: local device failed: {e}; demoting",
            self.cfg.device
        );
        let r = self.arc();
        self.spawn(async move {
            let _ = r.meta.update(|m| m.data = DataState::Failed).await;
            let _ = r.demote().await;
            r.announce();
        });
    }

    /// Clears the crashed-while-primary flag once a resync covered the activity log.
    pub(crate) async fn clear_crashed(&self) {
        if self.meta.header().flags & FLAG_CRASHED_PRIMARY != 0 {
            let _ = self.meta.update(|m| m.flags &= !FLAG_CRASHED_PRIMARY).await;
        }
    }

    pub(crate) fn capacity_bytes(&self) -> u64 {
        self.size_bytes
    }
}

#[cfg(test)]
impl Replica {
    /// Stops everything at once without saving (a killed process, for crash tests).
    pub(crate) fn abort(&self) {
        self.st.locked().down = true;
        self.router
            .unregister(&Purpose::Replica(self.cfg.device.clone()));
        for t in std::mem::take(&mut *self.tasks.locked()) {
            t.abort();
        }
        for p in &self.peers {
            if let Some(c) = p.conn() {
                c.close();
            }
        }
    }
}
