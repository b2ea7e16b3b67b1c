//! Replicated devices over loopback with the in-memory quorum: two or three `Replica`s in
//! one process, each on its own temp-file device and cluster listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use esos_block::{
    Backend, BlockDevice, BlockError, BlockErrorKind, BufResult, Device, DeviceSpec, Extent, IoBuf,
    SharedBuf, SharedResult,
};

use crate::arbiter::NodeName;
use crate::device::{Replica, ReplicaConfig};
use crate::net::Router;
use crate::status::{DataState, LinkState, Role};
use crate::testing::MemQuorum;

const DEV: &str = "db";
const SIZE: u64 = 64 << 20;
const CHUNK: u32 = 64 << 10;
/// Every test ends within this.
const TEST_LIMIT: Duration = Duration::from_secs(60);

fn n(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

struct Node {
    name: NodeName,
    r: Arc<Replica>,
}

impl Node {
    /// A killed process: nothing saved, every task gone. (The node's cluster listener
    /// stays, so no other test can take its port before the restart.)
    fn kill(self) {
        self.r.abort();
    }

    async fn stop(self) {
        self.r.shutdown().await;
    }
}

struct Rig {
    dir: tempfile::TempDir,
    /// Unique per test: tests run in parallel and must never reach each other's nodes.
    cluster: String,
    routers: Vec<(Arc<Router>, tokio::task::JoinHandle<()>)>,
    q: Arc<MemQuorum>,
    addrs: Vec<(NodeName, SocketAddr)>,
    auto_promote: bool,
    io_timeout_ms: u64,
    /// Resync rate of nodes started from now on (0: unlimited).
    resync_rate: std::sync::atomic::AtomicU64,
    /// Wraps each node's local device (counting FUA and flushes).
    counters: std::sync::Mutex<Vec<(NodeName, Arc<Counting>)>>,
}

impl Rig {
    async fn new(names: &[&str]) -> (Rig, Vec<Node>) {
        Self::with(names, false, 2000).await
    }

    async fn with(names: &[&str], auto_promote: bool, io_timeout_ms: u64) -> (Rig, Vec<Node>) {
        let cluster = format!("test-{:016x}", rand::random::<u64>());
        let mut routers = vec![];
        for name in names {
            routers.push(
                Router::bind(&cluster, n(name), "127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap(),
            );
        }
        let rig = Rig {
            dir: tempfile::tempdir().unwrap(),
            cluster,
            q: MemQuorum::new(),
            addrs: routers
                .iter()
                .map(|(r, _)| (r.me().clone(), r.local_addr()))
                .collect(),
            auto_promote,
            io_timeout_ms,
            counters: Default::default(),
            resync_rate: AtomicU64::new(0),
            routers,
        };
        let mut nodes = vec![];
        for name in names {
            nodes.push(rig.restart(name).await);
        }
        (rig, nodes)
    }

    fn image(&self, me: &NodeName) -> PathBuf {
        self.dir.path().join(format!("{me}.img"))
    }

    /// Starts (or starts again) `me` on its listener, metadata and data.
    async fn restart(&self, me: &str) -> Node {
        let router = self
            .routers
            .iter()
            .find(|(r, _)| *r.me() == n(me))
            .unwrap()
            .0
            .clone();
        let me = router.me().clone();
        let spec = DeviceSpec {
            backend: Backend::File {
                path: self.image(&me),
                size_bytes: Some(SIZE),
            },
            block_size: 512,
            read_only: false,
            rotational: None,
        };
        let counting = Arc::new(Counting {
            lower: Device::open(&spec).unwrap(),
            fua_writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        });
        self.counters
            .lock()
            .unwrap()
            .push((me.clone(), counting.clone()));
        let cfg = ReplicaConfig {
            cluster: self.cluster.clone(),
            device: DEV.into(),
            me: me.clone(),
            peers: self
                .addrs
                .iter()
                .filter(|(p, _)| *p != me)
                .cloned()
                .collect(),
            meta_path: self.dir.path().join(format!("{me}.meta")),
            chunk_bytes: CHUNK,
            resync_rate_bytes_per_sec: self.resync_rate.load(Ordering::SeqCst),
            auto_promote: self.auto_promote,
            io_timeout_ms: self.io_timeout_ms,
        };
        let r = Replica::start(cfg, Device::Stacked(counting), self.q.arbiter(&me), router)
            .await
            .unwrap();
        Node { name: me, r }
    }

    fn counter(&self, me: &NodeName) -> Arc<Counting> {
        let c = self.counters.lock().unwrap();
        c.iter().rev().find(|(m, _)| m == me).unwrap().1.clone()
    }
}

/// A device that counts the FUA writes and flushes reaching it.
#[derive(Debug)]
struct Counting {
    lower: Device,
    fua_writes: AtomicU64,
    flushes: AtomicU64,
}

impl BlockDevice for Counting {
    fn block_size(&self) -> u32 {
        self.lower.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.lower.num_blocks()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn rotational(&self) -> bool {
        false
    }
    async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        self.lower.read(offset, buf).await
    }
    async fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BufResult {
        if fua {
            self.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.lower.write(offset, buf, fua).await
    }
    async fn write_shared(&self, offset: u64, buf: SharedBuf, fua: bool) -> SharedResult {
        if fua {
            self.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.lower.write_shared(offset, buf, fua).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.lower.flush().await
    }
    fn supports_discard(&self) -> bool {
        self.lower.supports_discard()
    }
    fn discard_zeroes(&self) -> bool {
        self.lower.discard_zeroes()
    }
    async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.lower.discard(offset, len).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.lower.write_zeroes(offset, len).await
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        self.lower.allocation(offset, len).await
    }
}

async fn until(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for (_, task) in &self.routers {
            task.abort();
        }
    }
}

fn in_sync(a: &Node, b: &Node) -> bool {
    let (sa, sb) = (a.r.status(), b.r.status());
    let link = |s: &crate::status::ReplicaStatus, p: &NodeName| {
        s.peers.iter().find(|x| x.name == *p).map(|x| x.link)
    };
    link(&sa, &b.name) == Some(LinkState::Connected)
        && link(&sb, &a.name) == Some(LinkState::Connected)
        && sa.data == DataState::UpToDate
        && sb.data == DataState::UpToDate
        && sa.generation == sb.generation
}

/// Both fresh, `nodes[0]` forced primary, every peer synced.
async fn first_primary(nodes: &[Node]) {
    until("links", Duration::from_secs(10), || {
        nodes[0]
            .r
            .status()
            .peers
            .iter()
            .all(|p| p.link == LinkState::Connected)
    })
    .await;
    assert!(
        nodes[0].r.promote(false).await.is_err(),
        "fresh: force needed"
    );
    nodes[0].r.promote(true).await.unwrap();
    for other in &nodes[1..] {
        until("first sync", Duration::from_secs(20), || {
            in_sync(&nodes[0], other)
        })
        .await;
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn images_equal(rig: &Rig, a: &NodeName, b: &NodeName) {
    let (x, y) = (
        std::fs::read(rig.image(a)).unwrap(),
        std::fs::read(rig.image(b)).unwrap(),
    );
    assert_eq!(x.len(), y.len());
    if let Some(i) = x.iter().zip(&y).position(|(p, q)| p != q) {
        panic!("{a} and {b} differ at byte {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_the_primary_land_on_the_secondary_which_refuses_io() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, nodes) = Rig::new(&["a", "b"]).await;
        first_primary(&nodes).await;
        let dev = Device::Stacked(nodes[0].r.clone());
        let fua_before = rig.counter(&n("b")).fua_writes.load(Ordering::SeqCst);
        let flush_before = rig.counter(&n("b")).flushes.load(Ordering::SeqCst);
        for k in 0..40u64 {
            let off = (k * 7919 % 2000) * 4096;
            let (r, _) = dev.write(off, pattern(k, 8192), k % 5 == 0).await;
            r.unwrap();
        }
        dev.flush().await.unwrap();
        dev.write_zeroes(1 << 20, 256 << 10).await.unwrap();
        let (r, back) = dev.read(0, vec![0; 4096]).await;
        r.unwrap();
        assert_eq!(back.len(), 4096);
        let c = rig.counter(&n("b"));
        assert_eq!(
            c.fua_writes.load(Ordering::SeqCst) - fua_before,
            8,
            "FUA reaches b"
        );
        assert!(
            c.flushes.load(Ordering::SeqCst) > flush_before,
            "flush reaches b"
        );
        // The secondary serves nothing.
        let (r, _) = nodes[1].r.read(0, vec![0; 512]).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Unavailable);
        let (r, _) = nodes[1].r.write(0, vec![1; 512], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Unavailable);
        assert_eq!(nodes[1].r.watch().borrow().primary, Some(n("a")));
        let s = nodes[0].r.status();
        assert_eq!((s.role, s.lease_valid), (Role::Primary, true));
        assert_eq!(rig.q.record().up_to_date.len(), 2);
        let names: Vec<_> = nodes.iter().map(|x| x.name.clone()).collect();
        for node in nodes {
            node.stop().await;
        }
        images_equal(&rig, &names[0], &names[1]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_concurrent_writes_end_identical() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, nodes) = Rig::new(&["a", "b"]).await;
        first_primary(&nodes).await;
        let r = nodes[0].r.clone();
        let mut tasks = vec![];
        for k in 0..64u64 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                // Ranges of 4..64 KiB over the same 128 KiB, all at once.
                let off = (k % 16) * 8192;
                let len = 4096 * (1 + (k as usize % 16));
                let (res, _) = r.write(off, pattern(k + 100, len), false).await;
                res.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let names: Vec<_> = nodes.iter().map(|x| x.name.clone()).collect();
        for node in nodes {
            node.stop().await;
        }
        images_equal(&rig, &names[0], &names[1]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_resyncs_only_the_chunks_written_without_it() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, mut nodes) = Rig::new(&["a", "b"]).await;
        first_primary(&nodes).await;
        let gen_before = nodes[0].r.status().generation;
        let b = nodes.pop().unwrap();
        let a = nodes.pop().unwrap();
        // Writes racing the kill, then writes without b.
        let writer = {
            let r = a.r.clone();
            tokio::spawn(async move {
                for k in 0..30u64 {
                    let (res, _) = r.write(k * 65536, pattern(k, 4096), false).await;
                    res.unwrap();
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        b.kill();
        writer.await.unwrap();
        for k in 0..4u64 {
            let (res, _) =
                a.r.write((100 + k) * 65536, pattern(k + 50, 65536), true)
                    .await;
            res.unwrap();
        }
        let s = a.r.status();
        assert_ne!(s.generation, gen_before, "a went on with a new generation");
        assert_eq!(rig.q.record().up_to_date, vec![n("a")]);
        // The extent hot when b was lost (b may have lost writes from its cache) and the
        // chunks written since.
        let dirty = s.peers[0].out_of_sync_bytes;
        assert_eq!(dirty, (4 << 20) + 4 * 65536);
        // b comes back and is resynced from a's bitmap only.
        let b = rig.restart("b").await;
        until("resync", Duration::from_secs(20), || in_sync(&a, &b)).await;
        let synced = a.r.status().peers[0].sync_done_bytes;
        assert!(synced > 0 && synced <= dirty, "{synced} of {dirty}");
        assert!(synced < SIZE / 10, "{synced} of {SIZE}");
        until("b recorded up to date", Duration::from_secs(5), || {
            rig.q.record().up_to_date.len() == 2
        })
        .await;
        let (res, _) = a.r.write(0, pattern(99, 4096), false).await;
        res.unwrap();
        a.stop().await;
        b.stop().await;
        images_equal(&rig, &n("a"), &n("b"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_or_no_quorum_refuses_acknowledgements() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, nodes) = Rig::with(&["a", "b"], false, 300).await;
        first_primary(&nodes).await;
        rig.q.expire(&n("a"));
        let t = Instant::now();
        let (r, _) = nodes[0].r.write(0, vec![1; 4096], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Unavailable);
        let (r, _) = nodes[0].r.read(0, vec![0; 4096]).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Unavailable);
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(!nodes[0].r.status().lease_valid);
        let names: Vec<_> = nodes.iter().map(|x| x.name.clone()).collect();
        for node in nodes {
            node.stop().await;
        }
        let _ = names;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_a_write_that_loses_its_peer_fails_after_the_timeout() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, mut nodes) = Rig::with(&["a", "b"], false, 400).await;
        first_primary(&nodes).await;
        let b = nodes.pop().unwrap();
        let a = nodes.pop().unwrap();
        rig.q.set_reachable(false);
        b.kill();
        let t = Instant::now();
        let (r, _) = a.r.write(0, vec![1; 4096], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Unavailable);
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        // The chunk is dirty towards b all the same.
        // (Its hot extent too when the write entered the log before the exclusion.)
        let dirty = a.r.status().peers[0].out_of_sync_bytes;
        assert!(dirty == u64::from(CHUNK) || dirty == 4 << 20, "{dirty}");
        rig.q.set_reachable(true);
        let (r, _) = a.r.write(0, vec![2; 4096], false).await;
        r.unwrap();
        a.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_takes_over_a_killed_primary_which_then_resyncs_from_it() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, mut nodes) = Rig::with(&["a", "b"], true, 2000).await;
        first_primary(&nodes).await;
        let b = nodes.pop().unwrap();
        let a = nodes.pop().unwrap();
        for k in 0..8u64 {
            let (res, _) = a.r.write(k * (2 << 20), pattern(k, 4096), false).await;
            res.unwrap();
        }
        a.kill();
        rig.q.expire(&n("a")); // its lease runs out
        until("b promotes itself", Duration::from_secs(10), || {
            b.r.status().role == Role::Primary
        })
        .await;
        let (res, _) = b.r.write(8192, pattern(7, 8192), false).await;
        res.unwrap();
        // a comes back: it crashed as primary; b went on without it.
        let a = rig.restart("a").await;
        until("a resyncs from b", Duration::from_secs(20), || {
            in_sync(&b, &a)
        })
        .await;
        assert_eq!(a.r.status().role, Role::Secondary);
        a.stop().await;
        b.stop().await;
        images_equal(&rig, &n("a"), &n("b"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_corrupted_chunk_and_the_primary_repairs_it() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, nodes) = Rig::new(&["a", "b"]).await;
        first_primary(&nodes).await;
        let (res, _) = nodes[0].r.write(3 * 65536, pattern(3, 65536), true).await;
        res.unwrap();
        // Behind replication's back.
        let c = rig.counter(&n("b"));
        let (res, _) = c.lower.write(3 * 65536 + 512, vec![0xEE; 512], true).await;
        res.unwrap();
        nodes[0].r.verify().await.unwrap();
        until("verify and repair", Duration::from_secs(20), || {
            let p = &nodes[0].r.status().peers[0];
            p.verify_mismatched_chunks == 1
                && p.link == LinkState::Connected
                && p.out_of_sync_bytes == 0
        })
        .await;
        let names: Vec<_> = nodes.iter().map(|x| x.name.clone()).collect();
        for node in nodes {
            node.stop().await;
        }
        images_equal(&rig, &names[0], &names[1]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_brain_is_reported_and_resolved_by_the_administrator() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, mut nodes) = Rig::new(&["a", "b"]).await;
        first_primary(&nodes).await;
        let b = nodes.pop().unwrap();
        let a = nodes.pop().unwrap();
        // b is cut off; a goes on; then a is cut off and b is forced primary and writes.
        b.kill();
        let (res, _) = a.r.write(0, pattern(1, 65536), false).await;
        res.unwrap();
        a.kill();
        let b = rig.restart("b").await;
        b.r.promote(true).await.unwrap();
        let (res, _) = b.r.write(5 * 65536, pattern(2, 65536), false).await;
        res.unwrap();
        b.r.demote().await.unwrap();
        let a = rig.restart("a").await;
        until("split brain seen", Duration::from_secs(10), || {
            b.r.status().peers[0].link == LinkState::SplitBrain
                && a.r.status().peers[0].link == LinkState::SplitBrain
        })
        .await;
        let report = a.r.status().report.unwrap();
        assert!(
            report.contains("split brain") && report.contains("resolve"),
            "{report}"
        );
        a.r.resolve_split_brain(true).await.unwrap();
        until("resolved", Duration::from_secs(20), || {
            let (sa, sb) = (a.r.status(), b.r.status());
            sa.peers[0].link == LinkState::Connected
                && sb.peers[0].link == LinkState::Connected
                && sa.generation == sb.generation
        })
        .await;
        // The record still names b's generation: taking a's data over needs force.
        assert!(a.r.promote(false).await.is_err());
        a.r.promote(true).await.unwrap();
        until("in sync again", Duration::from_secs(10), || in_sync(&a, &b)).await;
        a.stop().await;
        b.stop().await;
        images_equal(&rig, &n("a"), &n("b"));
        let img = std::fs::read(rig.image(&n("b"))).unwrap();
        assert_eq!(&img[..65536], &pattern(1, 65536)[..], "a's write kept");
        assert_ne!(
            &img[5 * 65536..6 * 65536],
            &pattern(2, 65536)[..],
            "b's undone"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_to_both_secondaries_with_the_side_state() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, nodes) = Rig::new(&["a", "b", "c"]).await;
        let mut subs: Vec<_> = nodes[1..].iter().map(|x| x.r.subscribe_state()).collect();
        first_primary(&nodes).await;
        let a = &nodes[0].r;
        a.send_state(b"reservations v1".to_vec());
        for k in 0..20u64 {
            let (res, _) = a.write(k * 300 * 1024, pattern(k, 12288), k % 3 == 0).await;
            res.unwrap();
        }
        a.send_state(b"reservations v2".to_vec());
        a.flush().await.unwrap();
        for s in &mut subs {
            assert_eq!(s.recv().await.unwrap(), b"reservations v1");
            assert_eq!(s.recv().await.unwrap(), b"reservations v2");
        }
        assert_eq!(rig.q.record().up_to_date.len(), 3);
        let names: Vec<_> = nodes.iter().map(|x| x.name.clone()).collect();
        for node in nodes {
            node.stop().await;
        }
        images_equal(&rig, &names[0], &names[1]);
        images_equal(&rig, &names[0], &names[2]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_demotes_and_refuses_io_and_up_reconnects() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, nodes) = Rig::new(&["a", "b"]).await;
        first_primary(&nodes).await;
        let mut watch = nodes[0].r.watch();
        nodes[0].r.set_down(true).await.unwrap();
        let v = watch.borrow_and_update().clone();
        assert_eq!((v.role, v.down), (Role::Secondary, true));
        assert_eq!(rig.q.record().primary, None);
        let (r, _) = nodes[0].r.read(0, vec![0; 512]).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Unavailable);
        until("links dropped", Duration::from_secs(5), || {
            nodes[1].r.status().peers[0].link == LinkState::Connecting
        })
        .await;
        assert!(
            nodes[0].r.promote(false).await.is_err(),
            "down refuses promotion"
        );
        nodes[0].r.set_down(false).await.unwrap();
        until("links back", Duration::from_secs(10), || {
            in_sync(&nodes[0], &nodes[1])
        })
        .await;
        // b takes over without force: it is up to date in the record.
        nodes[1].r.promote(false).await.unwrap();
        let (r, _) = nodes[1].r.write(0, vec![5; 4096], true).await;
        r.unwrap();
        assert_eq!(nodes[0].r.watch().borrow().primary, Some(n("b")));
        let names: Vec<_> = nodes.iter().map(|x| x.name.clone()).collect();
        for node in nodes {
            node.stop().await;
        }
        images_equal(&rig, &names[0], &names[1]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_resync_continues_from_the_bits_left() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (rig, mut nodes) = Rig::new(&["a", "b"]).await;
        first_primary(&nodes).await;
        let b = nodes.pop().unwrap();
        let a = nodes.pop().unwrap();
        b.kill();
        for k in 0..16u64 {
            let (res, _) = a.r.write(k << 20, pattern(k, 1 << 20), false).await;
            res.unwrap();
        }
        let dirty = a.r.status().peers[0].out_of_sync_bytes;
        assert!(dirty >= 16 << 20, "{dirty}");
        // a restarts with a slow resync, which b's second death cuts short.
        a.stop().await;
        rig.resync_rate.store(8 << 20, Ordering::SeqCst);
        let a = rig.restart("a").await;
        a.r.promote(false).await.unwrap();
        let b = rig.restart("b").await;
        until("resync under way", Duration::from_secs(10), || {
            a.r.status().peers[0].sync_done_bytes >= 6 << 20
        })
        .await;
        b.kill();
        until("link down", Duration::from_secs(5), || {
            a.r.status().peers[0].link == LinkState::Connecting
        })
        .await;
        let left = a.r.status().peers[0].out_of_sync_bytes;
        assert!(left < dirty, "{left} of {dirty} left");
        let b = rig.restart("b").await;
        until("resync done", Duration::from_secs(20), || in_sync(&a, &b)).await;
        let second = a.r.status().peers[0].sync_done_bytes;
        assert!(
            second <= left + (4 << 20),
            "{second} after {left} were left"
        );
        a.stop().await;
        b.stop().await;
        images_equal(&rig, &n("a"), &n("b"));
    })
    .await
    .unwrap();
}
