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
        t.elapsed() < Duration::from_millis(LEASE_MS / 2),
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
