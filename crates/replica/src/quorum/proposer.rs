//! The proposer: CASPaxos rounds and lease renewals against every voter at once.
//!
//! A round sends its request to every voter in parallel (this node's own acceptor
//! in-process, the others over one kept connection each) and decides as soon as the
//! answers allow: a majority agreed, or too many refused or stayed silent for a majority
//! to be possible. Answers after that are left to arrive on their own; every request is
//! bounded by [`REQUEST_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::RngExt as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::acceptor::Voter;
use super::wire::{Ballot, Request, Response};
use crate::arbiter::{NodeName, QuorumError, Record};
use crate::frame;
use crate::net::{self, Hello, Purpose, Router};

/// Longest wait for one voter's answer (connecting included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// Rounds one change may take when other proposers keep overtaking it.
pub const MAX_ROUND_ATTEMPTS: u32 = 10;
/// Back-off after an overtaken round: a random wait up to this times the attempt number.
pub const BACKOFF_STEP: Duration = Duration::from_millis(40);

/// Why one voter did not answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Connect(#[from] net::ConnectError),
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error("no answer within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("closed the connection")]
    Closed,
    #[error("local voter: {0}")]
    Local(String),
}

/// A remote voter and the one connection kept to it (re-opened after any error).
#[derive(Debug)]
pub struct Remote {
    pub name: NodeName,
    addr: SocketAddr,
    hello: Hello,
    conn: tokio::sync::Mutex<Option<TcpStream>>,
}

impl Remote {
    async fn exchange(&self, req: &Request) -> Result<Response, CallError> {
        let mut guard = self.conn.lock().await;
        // Taken out while in use: a request cut short (timeout, error) drops the stream,
        // which can no longer be trusted to be in step.
        let mut s = match guard.take() {
            Some(s) => s,
            None => net::connect(self.addr, &self.hello).await?,
        };
        let (kind, payload) = req.encode();
        frame::write_frame(&mut s, kind, 0, &[&payload]).await?;
        let f = frame::read_frame(&mut s).await?.ok_or(CallError::Closed)?;
        let resp = Response::decode(f.kind, &f.payload)?;
        *guard = Some(s);
        Ok(resp)
    }
}

/// The answers of one phase of a round.
#[derive(Debug, Default)]
struct Tally {
    yes: usize,
    conflicts: usize,
    failed: Option<String>,
    other: usize,
}

impl Tally {
    fn no(&mut self, res: Result<Response, CallError>, p: &Proposer) {
        match res {
            Ok(Response::Conflict { highest }) => {
                p.saw(&highest);
                self.conflicts += 1;
            }
            Ok(Response::Failed(e)) => {
                self.failed = Some(e);
                self.other += 1;
            }
            Ok(other) => {
                tracing::warn!("voter answered out of turn: {other:?}");
                self.other += 1;
            }
            Err(_) => self.other += 1,
        }
    }

    fn answered(&self) -> usize {
        self.yes + self.conflicts
    }

    /// A majority agreed, or a majority answered but another proposer is ahead (retry at
    /// once). Otherwise the phase waits for every answer (each bounded by
    /// [`REQUEST_TIMEOUT`]) so that a failure counts every voter that answered.
    fn decided(&self, voters: usize, need: usize) -> bool {
        let out_of_reach = voters - self.conflicts - self.other < need;
        self.yes >= need || (out_of_reach && self.answered() >= need)
    }

    /// Without a majority: `None` to retry (a majority is there, another proposer is
    /// ahead), else the error.
    fn outcome(&self, p: &Proposer) -> Option<QuorumError> {
        if self.conflicts > 0 && self.answered() >= p.majority() {
            return None;
        }
        if let Some(e) = &self.failed {
            return Some(QuorumError::Storage(e.clone()));
        }
        Some(p.no_quorum(self.answered()))
    }
}

/// One voter as the proposer reaches it.
#[derive(Debug, Clone)]
pub enum Peer {
    Local { me: NodeName, voter: Arc<Voter> },
    Remote(Arc<Remote>),
}

impl Peer {
    pub fn remote(router: &Router, name: NodeName, addr: SocketAddr) -> Peer {
        Peer::Remote(Arc::new(Remote {
            hello: router.hello(name.clone(), Purpose::Vote),
            name,
            addr,
            conn: tokio::sync::Mutex::new(None),
        }))
    }

    pub fn name(&self) -> &NodeName {
        match self {
            Peer::Local { me, .. } => me,
            Peer::Remote(r) => &r.name,
        }
    }

    pub async fn call(&self, req: Request) -> Result<Response, CallError> {
        match self {
            Peer::Local { me, voter } => {
                let (me, voter) = (me.clone(), voter.clone());
                tokio::task::spawn_blocking(move || voter.handle(&me, req))
                    .await
                    .map_err(|e| CallError::Local(e.to_string()))
            }
            Peer::Remote(r) => tokio::time::timeout(REQUEST_TIMEOUT, r.exchange(&req))
                .await
                .unwrap_or(Err(CallError::Timeout)),
        }
    }
}

/// An answer and when it arrived.
type Answer = (Result<Response, CallError>, Instant);

/// How a lease renewal round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewOutcome {
    /// `Some(sent + lease × 0.9)` when a majority granted.
    pub valid_until: Option<Instant>,
    /// A majority of voters answered at all.
    pub quorate: bool,
    /// A majority's record names another primary (or none): renewing is pointless.
    pub deposed: bool,
    /// Some voter's record names another primary (or none): it missed a change (it was
    /// down during an accept) and denies renewals until a round brings it up to date.
    pub stale: bool,
}

/// Proposes changes of device records and renews this node's leases.
#[derive(Debug)]
pub struct Proposer {
    me: NodeName,
    peers: Vec<Peer>,
    lease_ms: u64,
    /// Highest ballot counter seen or used: the next ballot goes above it.
    counter: AtomicU64,
}

/// The record to build on: the one with the highest accepted ballot among the promises
/// (the default record when none accepted anything).
pub fn pick(promises: &[(Option<Ballot>, Record)]) -> Record {
    promises
        .iter()
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|p| p.1.clone())
        .unwrap_or_default()
}

impl Proposer {
    pub fn new(me: NodeName, peers: Vec<Peer>, lease_ms: u64, counter: u64) -> Proposer {
        assert!(peers.iter().any(|p| p.name() == &me));
        Proposer {
            me,
            peers,
            lease_ms,
            counter: AtomicU64::new(counter),
        }
    }

    pub fn voters(&self) -> usize {
        self.peers.len()
    }

    pub fn majority(&self) -> usize {
        self.peers.len() / 2 + 1
    }

    fn no_quorum(&self, reachable: usize) -> QuorumError {
        QuorumError::NoQuorum {
            reachable,
            voters: self.voters(),
            needed: self.majority(),
        }
    }

    fn next_ballot(&self) -> Ballot {
        // Counters from peers are bounded by the codec, so this never wraps.
        Ballot {
            counter: self.counter.fetch_add(1, Ordering::Relaxed) + 1,
            node: self.me.clone(),
        }
    }

    fn saw(&self, b: &Ballot) {
        self.counter.fetch_max(b.counter, Ordering::Relaxed);
    }

    /// Sends `req` to every voter; answers arrive on the receiver as they come.
    pub fn broadcast(&self, req: &Request) -> mpsc::Receiver<Answer> {
        let (tx, rx) = mpsc::channel(self.peers.len());
        for p in &self.peers {
            let (p, req, tx) = (p.clone(), req.clone(), tx.clone());
            tokio::spawn(async move {
                let res = p.call(req).await;
                if let Err(e) = &res {
                    tracing::debug!("voter {}: {e}", p.name());
                }
                let _ = tx.send((res, Instant::now())).await;
            });
        }
        rx
    }

    /// Runs CASPaxos rounds until `f`'s new record is committed for `device`: prepare, pick
    /// the newest accepted record, `f` (its `Err` ends with [`QuorumError::Refused`]; its
    /// second argument is the longest lease a promising voter still grants to another node,
    /// so zero means no node can hold a lease: a recorded primary with none is gone),
    /// wait out the leases of other nodes when the new record makes this node primary,
    /// accept. Returns the committed record, its ballot, and whether a majority answered.
    pub async fn change<F>(
        &self,
        device: &str,
        mut f: F,
    ) -> (Result<(Record, Ballot), QuorumError>, bool)
    where
        F: FnMut(&Record, Duration) -> Result<Record, String>,
    {
        let need = self.majority();
        let mut quorate = false;
        for attempt in 1..=MAX_ROUND_ATTEMPTS {
            if attempt > 1 {
                let max = BACKOFF_STEP * attempt;
                let wait = rand::rng().random_range(Duration::ZERO..=max);
                tokio::time::sleep(wait).await;
            }
            let ballot = self.next_ballot();
            let mut rx = self.broadcast(&Request::Prepare {
                device: device.to_owned(),
                ballot: ballot.clone(),
            });
            let (mut promises, mut waits) = (Vec::new(), Vec::new());
            let mut granted_left = Duration::ZERO;
            let mut t = Tally::default();
            while let Some((res, at)) = rx.recv().await {
                match res {
                    Ok(Response::Promise {
                        accepted,
                        record,
                        lease_left_ms,
                        uptime_ms,
                    }) => {
                        // A voter up for less than a lease may have forgotten a grant.
                        granted_left = granted_left.max(Duration::from_millis(lease_left_ms));
                        let left = lease_left_ms.max(self.lease_ms.saturating_sub(uptime_ms));
                        waits.push(at + Duration::from_millis(left));
                        promises.push((accepted, record));
                        t.yes += 1;
                    }
                    other => t.no(other, self),
                }
                if t.decided(self.voters(), need) {
                    break;
                }
            }
            quorate |= t.answered() >= need;
            if t.yes < need {
                match t.outcome(self) {
                    Some(e) => return (Err(e), quorate),
                    None => continue,
                }
            }
            let current = pick(&promises);
            let new = match f(&current, granted_left) {
                Ok(n) => n,
                Err(why) => {
                    // Commit the record unchanged rather than leave a promise behind: an
                    // open promise stops the primary's renewals at that voter.
                    self.accept(device, &ballot, &current).await;
                    return (Err(QuorumError::Refused(why)), true);
                }
            };
            let takes_over = new.primary.as_ref() == Some(&self.me)
                && current.primary.as_ref() != Some(&self.me);
            if takes_over {
                // Every voter of this majority refuses renewals from now on (it promised
                // a ballot above the old primary's); the longest grant among them ends
                // before this deadline.
                if let Some(until) = waits.iter().max() {
                    tokio::time::sleep_until((*until).into()).await;
                }
            }
            let t = self.accept(device, &ballot, &new).await;
            quorate |= t.answered() >= need;
            if t.yes >= need {
                return (Ok((new, ballot)), true);
            }
            match t.outcome(self) {
                Some(e) => return (Err(e), quorate),
                None => continue,
            }
        }
        (
            Err(QuorumError::Refused(format!(
                "overtaken by other proposals {MAX_ROUND_ATTEMPTS} times in a row"
            ))),
            quorate,
        )
    }

    /// The accept phase of a round, decided on the first majority either way.
    async fn accept(&self, device: &str, ballot: &Ballot, record: &Record) -> Tally {
        let mut rx = self.broadcast(&Request::Accept {
            device: device.to_owned(),
            ballot: ballot.clone(),
            record: record.clone(),
        });
        let mut t = Tally::default();
        while let Some((res, _)) = rx.recv().await {
            match res {
                Ok(Response::Accepted) => t.yes += 1,
                other => t.no(other, self),
            }
            if t.decided(self.voters(), self.majority()) {
                break;
            }
        }
        t
    }

    /// One renewal round of this node's lease on `device`, primary since `ballot`.
    pub async fn renew(&self, device: &str, ballot: &Ballot) -> RenewOutcome {
        let need = self.majority();
        let sent = Instant::now();
        let mut rx = self.broadcast(&Request::Renew {
            device: device.to_owned(),
            ballot: ballot.clone(),
            lease_ms: self.lease_ms,
        });
        let (mut granted, mut denied, mut deposed, mut silent) = (0, 0, 0, 0);
        while let Some((res, _)) = rx.recv().await {
            match res {
                Ok(Response::Granted) => granted += 1,
                Ok(Response::Denied { primary }) => {
                    denied += 1;
                    if primary.as_ref() != Some(&self.me) {
                        deposed += 1;
                    }
                }
                Ok(_) | Err(_) => silent += 1,
            }
            if granted >= need || self.voters() - denied - silent < need {
                break;
            }
        }
        RenewOutcome {
            valid_until: (granted >= need)
                .then(|| sent + Duration::from_millis(self.lease_ms * 9 / 10)),
            quorate: granted + denied >= need,
            deposed: deposed >= need,
            stale: deposed > 0,
        }
    }

    /// Best effort: tells every voter this node's lease on `device` is given back.
    pub async fn release(&self, device: &str) {
        let mut rx = self.broadcast(&Request::Release {
            device: device.to_owned(),
        });
        while rx.recv().await.is_some() {}
    }

    /// True when a majority answers a ping.
    pub async fn ping(&self) -> bool {
        let mut rx = self.broadcast(&Request::Ping);
        let (mut ok, mut gone) = (0, 0);
        while let Some((res, _)) = rx.recv().await {
            if matches!(res, Ok(Response::Pong)) {
                ok += 1;
            } else {
                gone += 1;
            }
            if ok >= self.majority() || self.voters() - gone < self.majority() {
                break;
            }
        }
        ok >= self.majority()
    }
}
