//! The quorum: a CASPaxos register per replicated device held by every voter (the data
//! nodes and an optional witness), and the primary's lease. [`Quorum`] is this node's
//! voter plus its proposer; [`Quorum::arbiter`] hands a replicated device its
//! [`Arbiter`].
//!
//! # Records
//! Every change of a device's [`Record`] is one CASPaxos change (Rystsov 2018): prepare a
//! ballot at a majority, take the record with the highest accepted ballot, apply the
//! change function (the [`Arbiter`] method's precondition, or a refusal), accept the new
//! record at a majority. A read is a change that keeps the record, so what it returns is
//! committed. Acceptor state is fsynced before a voter answers ([`acceptor`]).
//!
//! # Leases: why a paused primary cannot serve after another node was promoted
//! The primary sends a renewal every lease/4 to every voter. A voter grants it when its
//! accepted record names the sender primary and it has promised no ballot above what the
//! sender holds; it then remembers (sender, now + lease) in memory. The primary's lease is
//! valid until (the moment it *sent* the round) + lease × 0.9, once a majority granted;
//! the 10 % margin covers clock-rate differences between nodes. Only the monotonic clock
//! is used, which keeps running while a process is stopped.
//!
//! A promotion of node P proposes with a ballot b. Each voter of the majority M that
//! promised b reports how long its grant to another node still runs (a voter up for less
//! than a lease reports a whole lease: it may have forgotten a grant), and P waits for the
//! longest of those, counted from when each answer arrived, before it sends its accept.
//! Suppose the old primary O believes its lease valid at some instant after P's accept
//! committed. O's last successful round was granted by a majority G, which shares a voter
//! A with M. If A granted before it promised b, A reported at least the rest of that grant,
//! so P's wait ended after O's send time + lease > O's expiry. If A granted after it
//! promised b, then either O's own ballot is above b (O committed a round after b was
//! promised) or A accepted a ballot above b with O still primary; either ballot was
//! prepared at a majority that then refused b, so P's accept could not have committed. Either way O's lease ended before
//! P's record took effect. A resumed O therefore finds [`Arbiter::lease_valid`] false, its
//! renewals denied (the record names P), and every change it proposes refused by the
//! record's precondition.
//!
//! `lease_ms` must be the same on every data node (the `[cluster]` section): a restarted
//! voter's "whole lease" is the proposer's.
//!
//! # Quorate
//! True when the last exchange with the voters reached a majority: a change, a renewal
//! (every lease/4 on the primary), or, on a node not renewing, a ping every second.

pub mod acceptor;
pub mod proposer;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use esos_block::BoxFuture;
use esos_common::sync::LockExt as _;
use tokio::task::{JoinHandle, JoinSet};

use crate::arbiter::{Arbiter, MAX_DATA_NODES, MAX_VOTERS, NodeName, QuorumError, Record};
use crate::frame;
use crate::net::{Incoming, Purpose, Router};
use acceptor::{StoreError, Voter};
use proposer::{Peer, Proposer};
use wire::{Ballot, Request, Response};

/// Default primary lease (ms).
pub const DEFAULT_LEASE_MS: u64 = 1500;
/// Shortest lease accepted: renewals go out every lease/4 and each request may take
/// [`proposer::REQUEST_TIMEOUT`].
pub const MIN_LEASE_MS: u64 = 600;
/// How often a node that renews no lease checks that a majority answers.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Voter connections served at once; more are closed.
pub const MAX_VOTER_CONNECTIONS: usize = 64;
/// A voter connection silent this long is closed (the proposers ping every second).
pub const VOTER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Renewal rounds a promotion tries before it reports [`QuorumError::LeaseLost`].
pub const FIRST_LEASE_ATTEMPTS: u32 = 3;
/// Devices one node's quorum handles.
pub const MAX_DEVICES: usize = acceptor::MAX_DEVICES;

/// This node's part of the quorum, as the daemon configures it.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub cluster: String,
    pub me: NodeName,
    /// Every voter: the data nodes (this one included) and the witness.
    pub voters: Vec<(NodeName, SocketAddr)>,
    /// Where this node's acceptor keeps its state (fsynced).
    pub state_dir: PathBuf,
    /// The primary lease (ms); [`DEFAULT_LEASE_MS`] is a good value.
    pub lease_ms: u64,
}

/// Why the quorum could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuorumStartError {
    #[error("quorum configuration: {0}")]
    Config(String),
    #[error("voter state: {0}")]
    Store(#[from] StoreError),
}

/// Base of the monotonic nanosecond clock behind [`DeviceArbiter`]'s lease atomic.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn mono_ns(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH).as_nanos() as u64
}

/// This node's voter and proposer.
#[derive(Debug)]
pub struct Quorum {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    cfg: QuorumConfig,
    proposer: Proposer,
    devices: Mutex<HashMap<String, Arc<DeviceArbiter>>>,
}

fn validate(cfg: &QuorumConfig) -> Result<(), String> {
    let n = cfg.voters.len();
    if n == 0 || n > MAX_VOTERS {
        return Err(format!("{n} voters; 1 to {MAX_VOTERS}"));
    }
    if !cfg.voters.iter().any(|(v, _)| *v == cfg.me) {
        return Err(format!("this node {} is not among the voters", cfg.me));
    }
    for (i, (a, _)) in cfg.voters.iter().enumerate() {
        if cfg.voters[..i].iter().any(|(b, _)| a == b) {
            return Err(format!("voter {a} named twice"));
        }
    }
    if !(MIN_LEASE_MS..=wire::MAX_LEASE_MS).contains(&cfg.lease_ms) {
        return Err(format!(
            "lease of {} ms; {MIN_LEASE_MS} to {} ms",
            cfg.lease_ms,
            wire::MAX_LEASE_MS
        ));
    }
    Ok(())
}

impl Quorum {
    /// Loads this node's voter state, answers voters on `router` and starts the ping
    /// task. Call on a tokio runtime.
    pub async fn start(
        cfg: QuorumConfig,
        router: Arc<Router>,
    ) -> Result<Arc<Quorum>, QuorumStartError> {
        validate(&cfg).map_err(QuorumStartError::Config)?;
        LazyLock::force(&EPOCH);
        let dir = cfg.state_dir.clone();
        let voter = tokio::task::spawn_blocking(move || Voter::open(&dir))
            .await
            .map_err(|e| QuorumStartError::Config(e.to_string()))??;
        let voter = Arc::new(voter);
        let peers = cfg
            .voters
            .iter()
            .map(|(name, addr)| {
                if *name == cfg.me {
                    Peer::Local {
                        me: name.clone(),
                        voter: voter.clone(),
                    }
                } else {
                    Peer::remote(&router, name.clone(), *addr)
                }
            })
            .collect();
        let proposer = Proposer::new(cfg.me.clone(), peers, cfg.lease_ms, voter.highest_counter());
        let shared = Arc::new(Shared {
            cfg,
            proposer,
            devices: Mutex::new(HashMap::new()),
        });
        let serve = tokio::spawn(serve(router.register(Purpose::Vote), voter));
        let ping = tokio::spawn(ping_loop(shared.clone()));
        Ok(Arc::new(Quorum {
            shared,
            tasks: Mutex::new(vec![serve, ping]),
        }))
    }

    /// The arbiter of `device` on this node (one per device: asking again returns the
    /// same one). `device` must be a valid device name (`[A-Za-z0-9._-]`, at most 64
    /// bytes), as the daemon's configuration guarantees.
    pub fn arbiter(self: &Arc<Self>, device: &str) -> Arc<dyn Arbiter> {
        assert!(
            wire::valid_device_name(device),
            "{device:?} is not a device name"
        );
        let mut devices = self.shared.devices.locked();
        if let Some(a) = devices.get(device) {
            return a.clone();
        }
        assert!(
            devices.len() < MAX_DEVICES,
            "more than {MAX_DEVICES} devices"
        );
        let a = Arc::new_cyclic(|this| DeviceArbiter {
            this: this.clone(),
            shared: self.shared.clone(),
            device: device.to_owned(),
            lease_until_ns: AtomicU64::new(0),
            quorate: AtomicBool::new(false),
            primary_ballot: Mutex::new(None),
            renewer: Mutex::new(None),
            changes: tokio::sync::Mutex::new(()),
        });
        devices.insert(device.to_owned(), a.clone());
        a
    }

    /// Stops answering voters, pinging and renewing leases (leases then run out).
    pub fn stop(&self) {
        for t in self.tasks.locked().drain(..) {
            t.abort();
        }
        for a in self.shared.devices.locked().values() {
            a.stop_renewing();
        }
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        self.stop();
        // Each arbiter holds the shared state: break the cycle.
        self.shared.devices.locked().clear();
    }
}

/// Answers voter connections with this node's acceptor.
pub(crate) async fn serve(mut incoming: tokio::sync::mpsc::Receiver<Incoming>, voter: Arc<Voter>) {
    let mut conns = JoinSet::new();
    while let Some(inc) = incoming.recv().await {
        while conns.try_join_next().is_some() {}
        if conns.len() >= MAX_VOTER_CONNECTIONS {
            tracing::warn!(
                "voter: {} connections open; closing the one from {}",
                conns.len(),
                inc.hello.from
            );
            continue;
        }
        conns.spawn(serve_one(inc, voter.clone()));
    }
}

async fn serve_one(inc: Incoming, voter: Arc<Voter>) {
    let Incoming { hello, mut stream } = inc;
    let from = hello.from;
    loop {
        let f = match tokio::time::timeout(VOTER_IDLE_TIMEOUT, frame::read_frame(&mut stream)).await
        {
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => {
                tracing::info!("voter connection from {from}: {e}");
                return;
            }
        };
        let resp = match Request::decode(f.kind, &f.payload) {
            Err(e) => Response::Failed(e.to_string()),
            Ok(req) => match &req {
                // A node proposes only under its own name.
                Request::Prepare { ballot, .. } | Request::Accept { ballot, .. }
                    if ballot.node != from =>
                {
                    Response::Failed(format!("{from} may not propose as {}", ballot.node))
                }
                _ => {
                    let (v, from) = (voter.clone(), from.clone());
                    match tokio::task::spawn_blocking(move || v.handle(&from, req)).await {
                        Ok(r) => r,
                        Err(e) => Response::Failed(e.to_string()),
                    }
                }
            },
        };
        let (kind, payload) = resp.encode();
        if let Err(e) = frame::write_frame(&mut stream, kind, 0, &[&payload]).await {
            tracing::info!("voter connection from {from}: {e}");
            return;
        }
    }
}

async fn ping_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ok = shared.proposer.ping().await;
        let devices: Vec<_> = shared.devices.locked().values().cloned().collect();
        for a in devices {
            if !a.renewing() {
                a.quorate.store(ok, Ordering::Relaxed);
            }
        }
    }
}

/// The [`Arbiter`] of one device on this node.
#[derive(Debug)]
pub struct DeviceArbiter {
    /// The renewal task needs an owned handle.
    this: Weak<DeviceArbiter>,
    shared: Arc<Shared>,
    device: String,
    /// End of this node's primary lease, in [`mono_ns`] nanoseconds; 0 = none.
    lease_until_ns: AtomicU64,
    quorate: AtomicBool,
    /// The ballot of the last committed change that kept this node primary.
    primary_ballot: Mutex<Option<Ballot>>,
    renewer: Mutex<Option<JoinHandle<()>>>,
    /// This node's changes of the record, one at a time.
    changes: tokio::sync::Mutex<()>,
}

impl DeviceArbiter {
    fn me(&self) -> &NodeName {
        &self.shared.cfg.me
    }

    /// Time left on this node's lease (zero when it holds none).
    pub fn lease_left(&self) -> Duration {
        let until = self.lease_until_ns.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(mono_ns(Instant::now())))
    }

    /// How long renewals may fail before the primary completes a round itself.
    fn abandoned_after(&self) -> Duration {
        Duration::from_millis(self.shared.cfg.lease_ms) + 2 * proposer::REQUEST_TIMEOUT
    }

    fn renewing(&self) -> bool {
        self.renewer
            .locked()
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    fn stop_renewing(&self) {
        if let Some(h) = self.renewer.locked().take() {
            h.abort();
        }
    }

    /// Runs one change, records whether a majority answered and, when the committed
    /// record names this node primary, the ballot to renew the lease with.
    async fn change<F>(&self, f: F) -> Result<Record, QuorumError>
    where
        F: FnMut(&Record, Duration) -> Result<Record, String>,
    {
        let (res, quorate) = self.shared.proposer.change(&self.device, f).await;
        self.quorate.store(quorate, Ordering::Relaxed);
        let (rec, ballot) = res?;
        let mut pb = self.primary_ballot.locked();
        if rec.primary.as_ref() == Some(self.me()) {
            *pb = Some(ballot);
        } else {
            *pb = None;
        }
        Ok(rec)
    }

    /// One renewal round: whether the lease was extended, and whether a voter needs the
    /// record again.
    async fn renew_once(&self) -> (bool, bool) {
        let Some(ballot) = self.primary_ballot.locked().clone() else {
            return (false, false);
        };
        let out = self.shared.proposer.renew(&self.device, &ballot).await;
        self.quorate.store(out.quorate, Ordering::Relaxed);
        if let Some(until) = out.valid_until {
            // Only forward: an answer of an older round must not shorten a newer one.
            self.lease_until_ns
                .fetch_max(mono_ns(until), Ordering::AcqRel);
        }
        if out.deposed {
            self.lease_until_ns.store(0, Ordering::Release);
            *self.primary_ballot.locked() = None;
        }
        (out.valid_until.is_some(), out.stale && !out.deposed)
    }

    fn start_renewing(self: &Arc<Self>) {
        let me = self.clone();
        let period = Duration::from_millis(self.shared.cfg.lease_ms / 4);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut last_granted = Instant::now();
            let mut last_catch_up = None::<Instant>;
            let mut lost = false;
            loop {
                tick.tick().await;
                if me.primary_ballot.locked().is_none() {
                    tracing::warn!("{}: another node holds the record; lease ends", me.device);
                    return;
                }
                let (granted, stale) = me.renew_once().await;
                let lease = Duration::from_millis(me.shared.cfg.lease_ms);
                if stale && last_catch_up.is_none_or(|t| t.elapsed() >= lease) {
                    // A voter that missed a change denies renewals; a read round sends it
                    // the record, so it counts again when another voter fails.
                    last_catch_up = Some(Instant::now());
                    let _one = me.changes.lock().await;
                    let _ = me.change(|cur, _| Ok(cur.clone())).await;
                }
                if granted {
                    if lost {
                        tracing::info!("{}: lease renewed again", me.device);
                        lost = false;
                    }
                    last_granted = Instant::now();
                    continue;
                }
                if !lost && !me.lease_valid() {
                    tracing::warn!("{}: lease ended: not renewed by a majority", me.device);
                    lost = true;
                }
                // A promotion decides within a lease of its promises; denials for longer
                // come from a proposal abandoned between prepare and accept. Completing a
                // round (a read) closes it; if the record names another node now, the
                // renewals end with it.
                if last_granted.elapsed() >= me.abandoned_after() {
                    let _one = me.changes.lock().await;
                    let _ = me.change(|cur, _| Ok(cur.clone())).await;
                    last_granted = Instant::now();
                }
            }
        });
        if let Some(old) = self.renewer.locked().replace(task) {
            old.abort();
        }
    }

    async fn promote_inner(
        self: Arc<Self>,
        generation: u64,
        force: bool,
    ) -> Result<Record, QuorumError> {
        let _one = self.changes.lock().await;
        let me = self.me().clone();
        let rec = self
            .change(|cur, granted_left| {
                // A recorded primary that no voter of this majority grants a lease any more
                // has stopped renewing for a whole lease (dead, stopped or cut off): an up-to-date
                // node may take over without force. Any majority meets the one that granted a
                // live primary its lease, so a live primary is never replaced by accident.
                if let Some(p) = cur.primary.as_ref().filter(|p| **p != me)
                    && !force
                    && !granted_left.is_zero()
                {
                    return Err(format!(
                        "{p} is primary (its lease has {} ms left)",
                        granted_left.as_millis()
                    ));
                }
                if cur.epoch == 0 {
                    if !force {
                        return Err(
                            "the device has never had a primary: force the first promotion".into(),
                        );
                    }
                    return Ok(Record {
                        epoch: 1,
                        primary: Some(me.clone()),
                        generation,
                        up_to_date: vec![me.clone()],
                    });
                }
                if force && granted_left.is_zero() && !cur.is_up_to_date(&me) {
                    // Disaster recovery: the up-to-date copies are gone for good and the
                    // administrator accepts this node's older data. Never while any node
                    // holds a lease, so it cannot overrule a serving primary; the node's
                    // data becomes the only up-to-date copy.
                    return Ok(Record {
                        epoch: cur.epoch + 1,
                        primary: Some(me.clone()),
                        generation,
                        up_to_date: vec![me.clone()],
                    });
                }
                if !cur.is_up_to_date(&me) {
                    return Err(if force {
                        format!(
                            "{me} is not up to date, and a node still holds a lease ({} ms left)",
                            granted_left.as_millis()
                        )
                    } else {
                        format!("{me} is not up to date")
                    });
                }
                if cur.generation != generation {
                    return Err(format!(
                        "generation {generation:016x} is not the cluster's {:016x}",
                        cur.generation
                    ));
                }
                Ok(Record {
                    epoch: cur.epoch + 1,
                    primary: Some(me.clone()),
                    ..cur.clone()
                })
            })
            .await?;
        // The record names this node now; the first lease may take a few tries (a voter
        // answering the accept late). The renewals go on in the background either way,
        // and promoting again is harmless.
        let period = Duration::from_millis(self.shared.cfg.lease_ms / 4);
        for attempt in 0..FIRST_LEASE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(period).await;
            }
            if self.renew_once().await.0 {
                self.start_renewing();
                return Ok(rec);
            }
        }
        self.start_renewing();
        Err(QuorumError::LeaseLost)
    }
}

impl Arbiter for DeviceArbiter {
    fn me(&self) -> &NodeName {
        &self.shared.cfg.me
    }

    fn promote(&self, generation: u64, force: bool) -> BoxFuture<'_, Result<Record, QuorumError>> {
        // `self` lives in an Arc (only `Quorum::arbiter` makes one), so this upgrades.
        let Some(me) = self.this.upgrade() else {
            return Box::pin(async { Err(QuorumError::Refused("the quorum stopped".into())) });
        };
        Box::pin(me.promote_inner(generation, force))
    }

    fn set_up_to_date(
        &self,
        generation: u64,
        mut up_to_date: Vec<NodeName>,
    ) -> BoxFuture<'_, Result<Record, QuorumError>> {
        Box::pin(async move {
            let _one = self.changes.lock().await;
            up_to_date.sort();
            up_to_date.dedup();
            let me = self.me().clone();
            if !up_to_date.contains(&me) {
                return Err(QuorumError::Refused(format!(
                    "{me} must be among the up-to-date nodes it records"
                )));
            }
            if up_to_date.len() > MAX_DATA_NODES {
                return Err(QuorumError::Refused(format!(
                    "{} up-to-date nodes; at most {MAX_DATA_NODES}",
                    up_to_date.len()
                )));
            }
            self.change(|cur, _| {
                if cur.primary.as_ref() != Some(&me) {
                    return Err(match &cur.primary {
                        Some(p) => format!("{p} is primary, not {me}"),
                        None => format!("no primary; {me} must be promoted first"),
                    });
                }
                Ok(Record {
                    epoch: cur.epoch + 1,
                    primary: Some(me.clone()),
                    generation,
                    up_to_date: up_to_date.clone(),
                })
            })
            .await
        })
    }

    fn demote(&self) -> BoxFuture<'_, Result<Record, QuorumError>> {
        Box::pin(async move {
            let _one = self.changes.lock().await;
            // Stop serving first: the caller has stopped acknowledging; so do we.
            self.stop_renewing();
            self.lease_until_ns.store(0, Ordering::Release);
            let me = self.me().clone();
            let rec = self
                .change(|cur, _| {
                    if cur.primary.as_ref() != Some(&me) {
                        return Ok(cur.clone());
                    }
                    Ok(Record {
                        epoch: cur.epoch + 1,
                        primary: None,
                        ..cur.clone()
                    })
                })
                .await?;
            self.shared.proposer.release(&self.device).await;
            Ok(rec)
        })
    }

    fn record(&self) -> BoxFuture<'_, Result<Record, QuorumError>> {
        Box::pin(async move { self.change(|cur, _| Ok(cur.clone())).await })
    }

    fn lease_valid(&self) -> bool {
        let until = self.lease_until_ns.load(Ordering::Acquire);
        until != 0 && mono_ns(Instant::now()) < until
    }

    fn quorate(&self) -> bool {
        self.quorate.load(Ordering::Relaxed)
    }
}

impl Drop for DeviceArbiter {
    fn drop(&mut self) {
        self.stop_renewing();
    }
}

#[cfg(test)]
mod tests;
