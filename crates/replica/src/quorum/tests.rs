//! The quorum as a whole: a simulated network for the CASPaxos safety property, and real
//! voters over loopback TCP for leases and failover.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::acceptor::Acceptor;
use super::proposer::pick;
use super::wire::{Ballot, Request, Response};
use super::*;

fn n(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

// ---- Safety under random interleavings and message loss --------------------------------

#[derive(Debug, Clone)]
enum Msg {
    Req {
        acceptor: usize,
        proposer: usize,
        req: Request,
    },
    Rep {
        acceptor: usize,
        proposer: usize,
        ballot: Ballot,
        resp: Response,
    },
}

#[derive(Debug)]
struct SimProposer {
    name: NodeName,
    counter: u64,
    ballot: Option<Ballot>,
    promises: Vec<(Option<Ballot>, Record)>,
    promised_by: Vec<usize>,
    /// The record proposed in this round and the one it was built on.
    value: Option<(Record, Record)>,
    acks: Vec<usize>,
    made: u64,
}

impl SimProposer {
    fn start(&mut self, net: &mut Vec<Msg>, me: usize) {
        self.counter += 1;
        let ballot = Ballot {
            counter: self.counter,
            node: self.name.clone(),
        };
        self.ballot = Some(ballot.clone());
        self.promises.clear();
        self.promised_by.clear();
        self.value = None;
        self.acks.clear();
        for a in 0..3 {
            net.push(Msg::Req {
                acceptor: a,
                proposer: me,
                req: Request::Prepare {
                    device: "d".into(),
                    ballot: ballot.clone(),
                },
            });
        }
    }

    /// Handles a reply; returns a committed record and the record it was built on.
    fn on_reply(
        &mut self,
        net: &mut Vec<Msg>,
        me: usize,
        (acceptor, ballot): (usize, Ballot),
        resp: Response,
    ) -> Option<(Record, Record)> {
        if self.ballot.as_ref() != Some(&ballot) {
            return None;
        }
        // A duplicated reply counts once.
        let seen = match &resp {
            Response::Promise { .. } => &mut self.promised_by,
            Response::Accepted => &mut self.acks,
            _ => &mut Vec::new(),
        };
        if seen.contains(&acceptor) {
            return None;
        }
        seen.push(acceptor);
        match resp {
            Response::Conflict { highest } => self.counter = self.counter.max(highest.counter),
            Response::Promise {
                accepted, record, ..
            } if self.value.is_none() => {
                self.promises.push((accepted, record));
                if self.promises.len() == 2 {
                    let cur = pick(&self.promises);
                    self.made += 1;
                    let new = Record {
                        epoch: cur.epoch + 1,
                        primary: Some(self.name.clone()),
                        generation: (me as u64) << 32 | self.made,
                        up_to_date: vec![self.name.clone()],
                    };
                    self.value = Some((new.clone(), cur));
                    for a in 0..3 {
                        net.push(Msg::Req {
                            acceptor: a,
                            proposer: me,
                            req: Request::Accept {
                                device: "d".into(),
                                ballot: ballot.clone(),
                                record: new.clone(),
                            },
                        });
                    }
                }
            }
            Response::Accepted if self.acks.len() == 2 => return self.value.clone(),
            _ => {}
        }
        None
    }
}

/// Runs one schedule; returns how many rounds committed.
fn simulate(steps: &[(u8, u16)]) -> Result<usize, TestCaseError> {
    let t = Instant::now();
    let mut acceptors: Vec<Acceptor> = (0..3).map(|_| Acceptor::new(HashMap::new(), t)).collect();
    let mut props: Vec<SimProposer> = ["p1", "p2"]
        .iter()
        .map(|s| SimProposer {
            name: n(s),
            counter: 0,
            ballot: None,
            promises: vec![],
            promised_by: vec![],
            value: None,
            acks: vec![],
            made: 0,
        })
        .collect();
    let mut net = Vec::new();
    let mut committed: HashMap<u64, Record> = HashMap::new();
    let mut commits = 0;
    for &(action, idx) in steps {
        let idx = usize::from(idx);
        match action {
            0 => {
                let p = idx % 2;
                props[p].start(&mut net, p)
            }
            1 if !net.is_empty() => {
                net.swap_remove(idx % net.len());
            }
            2 if !net.is_empty() => {
                let m = net[idx % net.len()].clone();
                net.push(m);
            }
            _ if !net.is_empty() => match net.swap_remove(idx % net.len()) {
                Msg::Req {
                    acceptor,
                    proposer,
                    req,
                } => {
                    let ballot = match &req {
                        Request::Prepare { ballot, .. } | Request::Accept { ballot, .. } => {
                            ballot.clone()
                        }
                        _ => unreachable!(),
                    };
                    let from = props[proposer].name.clone();
                    let resp = acceptors[acceptor].handle(&from, req, t).reply;
                    net.push(Msg::Rep {
                        acceptor,
                        proposer,
                        ballot,
                        resp,
                    });
                }
                Msg::Rep {
                    acceptor,
                    proposer,
                    ballot,
                    resp,
                } => {
                    let done =
                        props[proposer].on_reply(&mut net, proposer, (acceptor, ballot), resp);
                    if let Some((rec, base)) = done {
                        commits += 1;
                        if let Some(prev) = committed.get(&rec.epoch) {
                            prop_assert_eq!(prev, &rec, "two records for epoch {}", rec.epoch);
                        }
                        // It was built on the record committed for the epoch before.
                        if let Some(prev) = committed.get(&base.epoch) {
                            prop_assert_eq!(prev, &base, "built on a record never committed");
                        }
                        committed.insert(rec.epoch, rec);
                    }
                }
            },
            _ => {}
        }
    }
    Ok(commits)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Two proposers, three acceptors, messages delivered in any order, dropped or
    /// duplicated, rounds restarted at any time: one epoch never commits two records, and
    /// every committed record builds on the one committed for the epoch before.
    #[test]
    fn no_two_records_commit_for_one_epoch(
        steps in proptest::collection::vec((0u8..8, any::<u16>()), 1..300)
    ) {
        simulate(&steps)?;
    }
}

#[test]
fn the_simulation_commits_when_messages_flow() {
    // p1 starts, every message is delivered (always the first in flight), then p2.
    let mut steps = vec![(0, 0)];
    steps.extend(std::iter::repeat_n((3, 0), 40));
    steps.push((0, 1));
    steps.extend(std::iter::repeat_n((3, 0), 40));
    assert_eq!(simulate(&steps).unwrap(), 2);
}

// ---- Real voters over loopback TCP ------------------------------------------------------

const LEASE_MS: u64 = 1500;

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Node {
    quorum: Arc<Quorum>,
    accept: JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn node(
    name: &str,
    addr: SocketAddr,
    voters: &[(NodeName, SocketAddr)],
    dir: &std::path::Path,
) -> Node {
    let (router, accept) = Router::bind("pair", n(name), addr).await.unwrap();
    let quorum = Quorum::start(
        QuorumConfig {
            cluster: "pair".into(),
            me: n(name),
            voters: voters.to_vec(),
            state_dir: dir.join(name),
            lease_ms: LEASE_MS,
        },
        router,
    )
    .await
    .unwrap();
    Node { quorum, accept }
}

fn witness(addr: SocketAddr, dir: &std::path::Path) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let dir = dir.join("w");
    tokio::spawn(async move {
        crate::witness::run_witness("pair", n("w"), addr, dir, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    tx
}

fn inner(q: &Quorum, device: &str) -> Arc<DeviceArbiter> {
    q.shared.devices.locked().get(device).cloned().unwrap()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < end, "{what} never became true");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn refused(r: Result<Record, QuorumError>, why: &str) {
    match r {
        Err(QuorumError::Refused(m)) => assert!(m.contains(why), "{m:?} lacks {why:?}"),
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_waits_out_the_old_primary_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, aw) = (free_addr(), free_addr(), free_addr());
    let voters = vec![(n("n1"), a1), (n("n2"), a2), (n("w"), aw)];
    let stop_w = witness(aw, dir.path());
    let n1 = node("n1", a1, &voters, dir.path()).await;
    let n2 = node("n2", a2, &voters, dir.path()).await;
    let (d1, d2) = (n1.quorum.arbiter("db"), n2.quorum.arbiter("db"));

    // The first primary must be forced; then only it serves.
    refused(d2.promote(7, false).await, "force");
    let rec = d1.promote(7, true).await.unwrap();
    assert_eq!(rec.primary, Some(n("n1")));
    assert_eq!((rec.epoch, rec.generation), (1, 7));
    assert!(d1.lease_valid() && !d2.lease_valid());
    refused(d2.promote(7, false).await, "n1 is primary");
    refused(d2.promote(7, true).await, "not up to date");
    let rec = d1.set_up_to_date(7, vec![n("n2"), n("n1")]).await.unwrap();
    assert_eq!(rec.up_to_date, vec![n("n1"), n("n2")]);
    assert_eq!(d2.record().await.unwrap(), rec);
    refused(d2.set_up_to_date(7, vec![n("n2")]).await, "n1 is primary");

    // Without the witness the two data nodes are a majority: the lease keeps renewing.
    stop_w.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 500)).await;
    assert!(d1.lease_valid() && d1.quorate());
    eventually("n2 quorate", || d2.quorate()).await;
    assert_eq!(d2.record().await.unwrap().primary, Some(n("n1")));

    // The witness comes back with its state; let a lease pass so its restart does not
    // decide the wait measured below.
    let stop_w = witness(aw, dir.path());
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 200)).await;

    // n1 stops (a SIGSTOP: nothing runs, its lease clock keeps going).
    let i1 = inner(&n1.quorum, "db");
    n1.quorum.stop();
    let stopped = Instant::now();
    let left = i1.lease_left();
    assert!(left > Duration::ZERO, "n1 held a lease when it stopped");
    let rec = d2.promote(7, true).await.unwrap();
    let took = stopped.elapsed();
    eprintln!(
        "promotion after the primary stopped: {took:?} (its lease had {left:?} left, lease {LEASE_MS} ms)"
    );
    assert!(
        took >= left,
        "promoted after {took:?}, n1's lease had {left:?} left"
    );
    assert!(!d1.lease_valid(), "two leases at once");
    assert!(d2.lease_valid());
    assert_eq!(rec.primary, Some(n("n2")));
    assert!(took < Duration::from_millis(LEASE_MS * 2), "{took:?}");

    // n1 resumes: no lease, and the record refuses what it tries.
    refused(d1.set_up_to_date(8, vec![n("n1")]).await, "n2 is primary");
    assert!(!d1.lease_valid());
    // n2 goes on without n1.
    let rec = d2.set_up_to_date(8, vec![n("n2")]).await.unwrap();
    assert_eq!((rec.generation, rec.up_to_date.clone()), (8, vec![n("n2")]));
    // The outdated n1 may not be promoted, forced or not.
    refused(d1.promote(7, true).await, "not up to date");

    // Alone, n2 has no quorum: its lease ends and changes fail.
    stop_w.send(()).unwrap();
    drop(n1);
    match d2.record().await {
        Err(QuorumError::NoQuorum {
            reachable,
            voters,
            needed,
        }) => assert_eq!((reachable, voters, needed), (1, 3, 2)),
        other => panic!("{other:?}"),
    }
    eventually("n2 loses its quorum", || !d2.quorate()).await;
    eventually("n2's lease ends", || !d2.lease_valid()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demote_releases_the_lease_so_a_switchover_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, aw) = (free_addr(), free_addr(), free_addr());
    let voters = vec![(n("n1"), a1), (n("n2"), a2), (n("w"), aw)];
    let _w = witness(aw, dir.path());
    let n1 = node("n1", a1, &voters, dir.path()).await;
    let n2 = node("n2", a2, &voters, dir.path()).await;
    let (d1, d2) = (n1.quorum.arbiter("db"), n2.quorum.arbiter("db"));
    d1.promote(3, true).await.unwrap();
    d1.set_up_to_date(3, vec![n("n1"), n("n2")]).await.unwrap();
    // Let every voter's start be more than a lease ago.
    tokio::time::sleep(Duration::from_millis(LEASE_MS)).await;
    let rec = d1.demote().await.unwrap();
    assert_eq!(rec.primary, None);
    assert!(!d1.lease_valid());
    let t = Instant::now();
    let rec = d2.promote(3, false).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(LEASE_MS * 2 / 3),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(rec.primary, Some(n("n2")));
    // Demoting a node that is not primary changes nothing.
    assert_eq!(d1.demote().await.unwrap(), rec);
    assert!(d2.lease_valid());
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (router, accept) = Router::bind("pair", n("n1"), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = router.local_addr();
    let cfg = |voters: Vec<(NodeName, SocketAddr)>, lease_ms| QuorumConfig {
        cluster: "pair".into(),
        me: n("n1"),
        voters,
        state_dir: dir.path().to_owned(),
        lease_ms,
    };
    for c in [
        cfg(vec![(n("n2"), addr)], LEASE_MS),
        cfg(vec![(n("n1"), addr), (n("n1"), addr)], LEASE_MS),
        cfg(vec![(n("n1"), addr)], 10),
    ] {
        assert!(matches!(
            Quorum::start(c, router.clone()).await,
            Err(QuorumStartError::Config(_))
        ));
    }
    accept.abort();
}

#[tokio::test]
async fn the_entry_points_can_be_spawned() {
    fn send<T: Send>(_: &T) {}
    let (router, accept) = Router::bind("pair", n("n1"), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = router.local_addr();
    let dir = std::path::PathBuf::from("/nonexistent");
    // Built and dropped, never run: the daemon spawns them, so they must be Send.
    send(&crate::witness::run_witness(
        "pair",
        n("w"),
        addr,
        dir.clone(),
        async {},
    ));
    send(&Quorum::start(
        QuorumConfig {
            cluster: "pair".into(),
            me: n("n1"),
            voters: vec![(n("n1"), addr)],
            state_dir: dir,
            lease_ms: LEASE_MS,
        },
        router,
    ));
    accept.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_missed_the_promotion_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, aw) = (free_addr(), free_addr(), free_addr());
    let voters = vec![(n("n1"), a1), (n("n2"), a2), (n("w"), aw)];
    let n1 = node("n1", a1, &voters, dir.path()).await;
    let n2 = node("n2", a2, &voters, dir.path()).await;
    let d1 = n1.quorum.arbiter("db");
    // The witness is down while n1 becomes primary: its record stays empty.
    d1.promote(5, true).await.unwrap();
    let _w = witness(aw, dir.path());
    // Its denials make n1 send it the record; then n1 and the witness are a majority
    // without n2.
    tokio::time::sleep(Duration::from_millis(LEASE_MS)).await;
    n2.quorum.stop();
    drop(n2);
    let end = Instant::now() + Duration::from_millis(LEASE_MS * 2);
    while Instant::now() < end {
        assert!(d1.lease_valid(), "n1 lost its lease with the witness up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(d1.quorate());
    assert_eq!(d1.record().await.unwrap().primary, Some(n("n1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_abandoned_before_its_accept_blocks_renewals_for_a_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, aw) = (free_addr(), free_addr(), free_addr());
    let voters = vec![(n("n1"), a1), (n("n2"), a2), (n("w"), aw)];
    let _w = witness(aw, dir.path());
    let n1 = node("n1", a1, &voters, dir.path()).await;
    let n2 = node("n2", a2, &voters, dir.path()).await;
    let d1 = n1.quorum.arbiter("db");
    d1.promote(5, true).await.unwrap();
    // "n2" prepares a high ballot at n2 and the witness, then dies before its accept.
    for (to, addr) in [("n2", a2), ("w", aw)] {
        let hello = crate::net::Hello {
            cluster: "pair".into(),
            from: n("n2"),
            to: n(to),
            purpose: Purpose::Vote,
        };
        let mut s = crate::net::connect(addr, &hello).await.unwrap();
        let (kind, payload) = Request::Prepare {
            device: "db".into(),
            ballot: Ballot {
                counter: 1000,
                node: n("n2"),
            },
        }
        .encode();
        frame::write_frame(&mut s, kind, 0, &[&payload])
            .await
            .unwrap();
        let f = frame::read_frame(&mut s).await.unwrap().unwrap();
        assert!(matches!(
            Response::decode(f.kind, &f.payload).unwrap(),
            Response::Promise { .. }
        ));
    }
    n2.quorum.stop();
    // n1's renewals are refused, its lease ends; then n1 completes a round itself and
    // holds a lease again.
    eventually("n1's lease ends", || !d1.lease_valid()).await;
    eventually("n1 holds a lease again", || d1.lease_valid()).await;
    assert_eq!(d1.record().await.unwrap().primary, Some(n("n1")));
}

#[tokio::test]
async fn a_voter_answers_malformed_and_impersonating_requests_with_failures() {
    let dir = tempfile::tempdir().unwrap();
    let aw = free_addr();
    let _w = witness(aw, dir.path());
    let hello = crate::net::Hello {
        cluster: "pair".into(),
        from: n("n1"),
        to: n("w"),
        purpose: Purpose::Vote,
    };
    let mut s = loop {
        match crate::net::connect(aw, &hello).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut ask = async |kind: u16, payload: Vec<u8>| {
        frame::write_frame(&mut s, kind, 0, &[&payload])
            .await
            .unwrap();
        let f = frame::read_frame(&mut s).await.unwrap().unwrap();
        Response::decode(f.kind, &f.payload).unwrap()
    };
    // Garbage, an unknown kind, a ballot in another node's name: refused, connection kept.
    assert!(matches!(
        ask(wire::KIND_PREPARE, vec![0xff; 7]).await,
        Response::Failed(_)
    ));
    assert!(matches!(ask(0x02ee, vec![]).await, Response::Failed(_)));
    let (kind, payload) = Request::Prepare {
        device: "db".into(),
        ballot: Ballot {
            counter: 1,
            node: n("n2"),
        },
    }
    .encode();
    match ask(kind, payload).await {
        Response::Failed(m) => assert!(m.contains("may not propose as n2"), "{m}"),
        other => panic!("{other:?}"),
    }
    let (kind, payload) = Request::Ping.encode();
    assert_eq!(ask(kind, payload).await, Response::Pong);
}

// ---- Leases under random interleavings, with a virtual clock ---------------------------

const SIM_LEASE: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone)]
enum Phase {
    Preparing {
        promised_by: Vec<usize>,
        promises: Vec<(Option<Ballot>, Record)>,
        until: Instant,
    },
    Waiting {
        until: Instant,
        new: Record,
    },
    Accepting {
        acks: Vec<usize>,
        new: Record,
    },
}

#[derive(Debug)]
struct SimNode {
    name: NodeName,
    counter: u64,
    round: Option<(Ballot, Phase)>,
    primary_ballot: Option<Ballot>,
    /// The renewal round in flight: its id, when it was sent, who granted.
    renew: Option<(u64, Instant, Vec<usize>)>,
    renew_seq: u64,
    lease_until: Option<Instant>,
}

#[derive(Debug, Clone)]
enum LMsg {
    Req {
        acceptor: usize,
        node: usize,
        tag: u64,
        req: Request,
    },
    Rep {
        acceptor: usize,
        node: usize,
        tag: u64,
        ballot: Option<Ballot>,
        resp: Response,
    },
}

fn send_all(net: &mut Vec<LMsg>, node: usize, tag: u64, req: Request) {
    for acceptor in 0..3 {
        net.push(LMsg::Req {
            acceptor,
            node,
            tag,
            req: req.clone(),
        });
    }
}

impl SimNode {
    fn promote(&mut self, net: &mut Vec<LMsg>, me: usize, now: Instant) {
        self.counter += 1;
        let ballot = Ballot {
            counter: self.counter,
            node: self.name.clone(),
        };
        self.round = Some((
            ballot.clone(),
            Phase::Preparing {
                promised_by: vec![],
                promises: vec![],
                until: now,
            },
        ));
        send_all(
            net,
            me,
            0,
            Request::Prepare {
                device: "d".into(),
                ballot,
            },
        );
    }

    fn renew(&mut self, net: &mut Vec<LMsg>, me: usize, now: Instant) {
        let Some(ballot) = self.primary_ballot.clone() else {
            return;
        };
        self.renew_seq += 1;
        self.renew = Some((self.renew_seq, now, vec![]));
        send_all(
            net,
            me,
            self.renew_seq,
            Request::Renew {
                device: "d".into(),
                ballot,
                lease_ms: SIM_LEASE.as_millis() as u64,
            },
        );
    }

    fn send_accepts(&mut self, net: &mut Vec<LMsg>, me: usize) {
        let Some((ballot, Phase::Waiting { new, .. })) = self.round.clone() else {
            return;
        };
        self.round = Some((
            ballot.clone(),
            Phase::Accepting {
                acks: vec![],
                new: new.clone(),
            },
        ));
        send_all(
            net,
            me,
            0,
            Request::Accept {
                device: "d".into(),
                ballot,
                record: new,
            },
        );
    }

    fn on_reply(
        &mut self,
        net: &mut Vec<LMsg>,
        me: usize,
        (acceptor, tag, ballot): (usize, u64, Option<Ballot>),
        resp: Response,
        now: Instant,
    ) {
        if tag != 0 {
            // A renewal answer: the lease runs from when the round was sent.
            if let (Some((id, sent, grants)), Response::Granted) = (&mut self.renew, &resp)
                && *id == tag
                && !grants.contains(&acceptor)
            {
                grants.push(acceptor);
                if grants.len() == 2 {
                    let until = *sent + SIM_LEASE * 9 / 10;
                    self.lease_until = self.lease_until.max(Some(until));
                }
            }
            return;
        }
        let Some((cur_ballot, phase)) = &mut self.round else {
            return;
        };
        if Some(&*cur_ballot) != ballot.as_ref() {
            return;
        }
        match (phase, resp) {
            (_, Response::Conflict { highest }) => self.counter = self.counter.max(highest.counter),
            (
                Phase::Preparing {
                    promised_by,
                    promises,
                    until,
                },
                Response::Promise {
                    accepted,
                    record,
                    lease_left_ms,
                    uptime_ms,
                },
            ) if !promised_by.contains(&acceptor) => {
                promised_by.push(acceptor);
                promises.push((accepted, record));
                let lease_ms = SIM_LEASE.as_millis() as u64;
                let left = lease_left_ms.max(lease_ms.saturating_sub(uptime_ms));
                *until = (*until).max(now + Duration::from_millis(left));
                if promises.len() == 2 {
                    let cur = pick(promises);
                    let new = Record {
                        epoch: cur.epoch + 1,
                        primary: Some(self.name.clone()),
                        generation: 1,
                        up_to_date: vec![self.name.clone()],
                    };
                    let wait_until = if cur.primary.as_ref() == Some(&self.name) {
                        now
                    } else {
                        *until
                    };
                    let b = cur_ballot.clone();
                    self.round = Some((
                        b,
                        Phase::Waiting {
                            until: wait_until,
                            new,
                        },
                    ));
                    if wait_until <= now {
                        self.send_accepts(net, me);
                    }
                }
            }
            (Phase::Accepting { acks, new }, Response::Accepted) if !acks.contains(&acceptor) => {
                acks.push(acceptor);
                if acks.len() == 2 {
                    debug_assert_eq!(new.primary.as_ref(), Some(&self.name));
                    self.primary_ballot = Some(cur_ballot.clone());
                    self.round = None;
                }
            }
            _ => {}
        }
    }
}

/// Runs one schedule of promotions, renewals, deliveries, losses, clock steps and voter
/// restarts; fails if two nodes ever hold a valid lease at once.
fn simulate_leases(steps: &[(u8, u16)]) -> Result<usize, TestCaseError> {
    let t0 = Instant::now();
    let mut now = t0 + SIM_LEASE * 2;
    let mut acceptors: Vec<Acceptor> = (0..3).map(|_| Acceptor::new(HashMap::new(), t0)).collect();
    let mut nodes: Vec<SimNode> = ["n1", "n2"]
        .iter()
        .map(|s| SimNode {
            name: n(s),
            counter: 0,
            round: None,
            primary_ballot: None,
            renew: None,
            renew_seq: 0,
            lease_until: None,
        })
        .collect();
    let mut net: Vec<LMsg> = Vec::new();
    let mut handovers = 0;
    let mut holder = None;
    for &(action, arg) in steps {
        let arg = usize::from(arg);
        match action {
            0 => nodes[arg % 2].promote(&mut net, arg % 2, now),
            1 | 2 => nodes[arg % 2].renew(&mut net, arg % 2, now),
            3 | 7 => now += Duration::from_millis((arg % 600) as u64),
            4 | 8 => {
                let i = arg % 2;
                if matches!(&nodes[i].round, Some((_, Phase::Waiting { until, .. })) if *until <= now)
                {
                    nodes[i].send_accepts(&mut net, i);
                }
            }
            5 if arg % 4 == 0 => {
                // A voter restarts: its state file stays, its grants are forgotten.
                let k = arg / 4 % 3;
                let slots = ["d"]
                    .iter()
                    .filter_map(|d| acceptors[k].slot(d).map(|s| (d.to_string(), s.clone())))
                    .collect();
                acceptors[k] = Acceptor::new(slots, now);
            }
            6 if !net.is_empty() && arg % 4 == 0 => {
                net.swap_remove(arg % net.len());
            }
            _ if !net.is_empty() => match net.swap_remove(arg % net.len()) {
                LMsg::Req {
                    acceptor,
                    node,
                    tag,
                    req,
                } => {
                    let ballot = match &req {
                        Request::Prepare { ballot, .. } | Request::Accept { ballot, .. } => {
                            Some(ballot.clone())
                        }
                        _ => None,
                    };
                    let from = nodes[node].name.clone();
                    let resp = acceptors[acceptor].handle(&from, req, now).reply;
                    net.push(LMsg::Rep {
                        acceptor,
                        node,
                        tag,
                        ballot,
                        resp,
                    });
                }
                LMsg::Rep {
                    acceptor,
                    node,
                    tag,
                    ballot,
                    resp,
                } => nodes[node].on_reply(&mut net, node, (acceptor, tag, ballot), resp, now),
            },
            _ => {}
        }
        let valid: Vec<usize> = (0..2)
            .filter(|&i| nodes[i].lease_until.is_some_and(|u| u > now))
            .collect();
        prop_assert!(valid.len() <= 1, "two valid leases at once");
        if let Some(&i) = valid.first() {
            if holder.is_some_and(|h| h != i) {
                handovers += 1;
            }
            holder = Some(i);
        }
    }
    Ok(handovers)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// The zombie-primary property: whatever the order of messages, losses, clock steps
    /// and voter restarts, at no instant do two nodes hold a valid lease.
    #[test]
    fn never_two_valid_leases(
        steps in proptest::collection::vec((0u8..24, any::<u16>()), 1..600)
    ) {
        simulate_leases(&steps)?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_voter_slows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2) = (free_addr(), free_addr());
    // The witness' port accepts connections and never answers (a stopped process).
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let aw = hung.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            conns.push(s);
        }
    });
    let voters = vec![(n("n1"), a1), (n("n2"), a2), (n("w"), aw)];
    let n1 = node("n1", a1, &voters, dir.path()).await;
    let n2 = node("n2", a2, &voters, dir.path()).await;
    let (d1, d2) = (n1.quorum.arbiter("db"), n2.quorum.arbiter("db"));
    d1.promote(1, true).await.unwrap();
    d1.set_up_to_date(1, vec![n("n1"), n("n2")]).await.unwrap();
    let t = Instant::now();
    assert_eq!(d2.record().await.unwrap().primary, Some(n("n1")));
    assert!(t.elapsed() < proposer::REQUEST_TIMEOUT, "{:?}", t.elapsed());
    let end = Instant::now() + Duration::from_millis(LEASE_MS * 2);
    while Instant::now() < end {
        assert!(d1.lease_valid() && d1.quorate());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_is_replaced_without_force_once_its_lease_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, aw) = (free_addr(), free_addr(), free_addr());
    let voters = vec![(n("n1"), a1), (n("n2"), a2), (n("w"), aw)];
    let _stop_w = witness(aw, dir.path());
    let n1 = node("n1", a1, &voters, dir.path()).await;
    let n2 = node("n2", a2, &voters, dir.path()).await;
    let (d1, d2) = (n1.quorum.arbiter("db"), n2.quorum.arbiter("db"));
    d1.promote(7, true).await.unwrap();
    d1.set_up_to_date(7, vec![n("n1"), n("n2")]).await.unwrap();
    // Let the witness's start-up lease pass so only n1's grants count below.
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 200)).await;
    refused(d2.promote(7, false).await, "n1 is primary");
    assert!(
        d1.lease_valid(),
        "a refused promotion left the primary its lease"
    );

    // n1 dies: while its lease may run, the survivor is refused; after it, it takes over.
    n1.quorum.stop();
    let died = Instant::now();
    refused(d2.promote(7, false).await, "lease has");
    let end = died + Duration::from_millis(LEASE_MS * 3);
    let rec = loop {
        match d2.promote(7, false).await {
            Ok(rec) => break rec,
            Err(e) => {
                assert!(Instant::now() < end, "never took over: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    eprintln!(
        "unforced takeover {:?} after the primary died",
        died.elapsed()
    );
    assert_eq!(rec.primary, Some(n("n2")));
    assert!(d2.lease_valid() && !d1.lease_valid());
}
