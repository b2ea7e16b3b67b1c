//! Failover scenarios: a replicated pair (n1, n2) and a witness in network namespaces, a
//! checked history of FUA writes and reads from a client namespace, and one fault per test.
//!
//! Every scenario runs the workload of `esos_e2e::ha::workload` (four workers, 4096 blocks of
//! 4 KiB, a quarter shared) through whichever node serves, injects its fault, lets the
//! cluster recover, reads the final contents and checks the history
//! (`esos_e2e::ha::history`): no acknowledged write lost, no stale read, no torn or foreign
//! block. The longest pause between two successful operations is printed as the failover
//! time. Seeds are printed; `ESOS_E2E_SEED=N` replays one.
//!
//! Needs root (namespaces); without it every test prints `SKIPPED` and passes. A scenario
//! whose piece of esos is missing fails with the daemon's log: it is never skipped for that.
//! A scenario that exposes a known defect would carry `#[ignore = "the defect"]` until it is fixed;
//! run one with `cargo test -p esos-e2e --test ha -- --ignored --exact NAME --nocapture`.

use std::time::{Duration, Instant};

use esos_e2e::client::Conn;
use esos_e2e::data;
use esos_e2e::ha::cluster::{Cluster, ClusterSpec, DEVICE, TARGET};
use esos_e2e::ha::history::{self, Outcome, Report};
use esos_e2e::ha::netns::{Direction, Node};
use esos_e2e::ha::workload::{self, Workload, try_portal};

/// Operations that must succeed before a fault is injected, and again after it.
const WARMUP_OPS: u64 = 200;
/// Longest wait for the workload to make progress again after a fault (the failover).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a pair to elect its first primary and be in sync.
const FORM_TIMEOUT: Duration = Duration::from_secs(45);
/// When the first promotion of a fresh pair is forced if a plain one is still refused.
const FORCE_FIRST_PROMOTION_AFTER: Duration = Duration::from_secs(2);
/// How long a scenario that only needs some failover waits for the automatic one.
const AUTO_TAKEOVER_GRACE: Duration = Duration::from_secs(10);
/// Longest wait for a resync to finish.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the final read of every block may take (through whichever node serves).
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(60);

fn cluster(spec: ClusterSpec) -> Option<Cluster> {
    match Cluster::new(spec) {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// A running pair with the witness, n1 primary, n2 connected and up to date.
fn pair(spec: ClusterSpec) -> Option<Cluster> {
    let c = cluster(spec)?;
    c.start_witness();
    c.start(Node::N1);
    c.start(Node::N2);
    let start = Instant::now();
    // With auto_promote one node may already have promoted itself; otherwise ask n1. Two
    // fresh copies are both inconsistent and the quorum record names no up-to-date node, so
    // the first promotion of a new device is forced (docs/ha.md); the initial sync then
    // copies n1 to n2. A plain promotion is tried first, for a build that needs no force.
    loop {
        match c.primary() {
            Some(_) => break,
            None if start.elapsed() > FORM_TIMEOUT => {
                panic!("no primary after {FORM_TIMEOUT:?}\n{}", c.logs())
            }
            None => {
                let force = start.elapsed() > FORCE_FIRST_PROMOTION_AFTER;
                let mut args = vec!["replica", "promote", DEVICE];
                if force {
                    args.push("--force");
                }
                let o = c.esos(Node::N1, &args);
                if !o.success() {
                    eprintln!(
                        "esos-ha: promote n1 (force: {force}) refused for now: {}",
                        o.stderr.trim()
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
    let primary = c.primary().expect("primary");
    in_sync(&c, primary, FORM_TIMEOUT);
    Some(c)
}

/// Waits until `primary` sees its peer connected, up to date, nothing out of sync.
fn in_sync(c: &Cluster, primary: Node, timeout: Duration) -> serde_json::Value {
    c.wait_status(primary, timeout, |s| {
        s["role"] == "primary"
            && s["peers"].as_array().is_some_and(|p| {
                p.iter().all(|p| {
                    p["link"] == "connected"
                        && p["data"] == "up-to-date"
                        && p["out_of_sync_bytes"] == 0
                })
            })
    })
    .unwrap_or_else(|e| panic!("{primary:?} not in sync with its peer: {e}\n{}", c.logs()))
}

fn other(n: Node) -> Node {
    if n == Node::N1 { Node::N2 } else { Node::N1 }
}

/// Starts the checked workload and waits until it runs.
fn start_load(c: &Cluster, test: &str) -> Workload {
    let seed = data::seed(test);
    let w = Workload::start(c.workload_config(seed));
    assert!(
        w.wait_progress(WARMUP_OPS, RECOVERY_TIMEOUT),
        "{test}: the workload makes no progress before any fault\n{}",
        c.logs()
    );
    w
}

/// Waits until `node` has promoted itself; on failure says why a promotion is refused.
fn took_over(c: &Cluster, node: Node, test: &str) {
    if let Err(e) = c.wait_primary(node, RECOVERY_TIMEOUT) {
        let o = c.esos(node, &["replica", "promote", DEVICE]);
        panic!(
            "{test}: {node:?} did not take over: {e}\nesos replica promote on it now: {}\n{}",
            o.describe(),
            c.logs()
        );
    }
}

/// Makes `node` primary after the primary was lost: esos's own failover when it happens
/// within [`AUTO_TAKEOVER_GRACE`], else the forced promotion docs/ha.md prescribes while the
/// quorum record still names the lost primary. For scenarios that test what follows a
/// failover (leases, reservations); `primary_killed_under_load` and `primary_link_down`
/// require the automatic one.
fn fail_over_to(c: &Cluster, node: Node, test: &str) {
    if c.wait_primary(node, AUTO_TAKEOVER_GRACE).is_ok() {
        return;
    }
    eprintln!("esos-ha: {test}: no automatic takeover by {node:?}; forcing it (docs/ha.md)");
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let o = c.esos(node, &["replica", "promote", DEVICE, "--force"]);
        if o.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{test}: forced promotion of {node:?} refused\n{}\n{}",
            o.describe(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    c.wait_primary(node, RECOVERY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", c.logs()));
}

/// Waits until the workload made progress again after a fault.
fn recovered(c: &Cluster, w: &Workload, test: &str) {
    assert!(
        w.wait_progress(WARMUP_OPS, RECOVERY_TIMEOUT),
        "{test}: no service within {RECOVERY_TIMEOUT:?} after the fault\n{}",
        c.logs()
    );
}

/// Stops the workload, reads the final contents, checks the history; prints the figures.
fn finish(c: &Cluster, w: Workload, test: &str) -> (Vec<history::Op>, Report) {
    let cfg = w.cfg.clone();
    let ops = w.stop();
    let portals = cfg.portals.clone();
    let fin = c
        .rig
        .in_ns(Node::Client, move || {
            workload::read_final(&portals, TARGET, cfg.lun, cfg.blocks, FINAL_READ_TIMEOUT)
        })
        .expect("client namespace")
        .unwrap_or_else(|e| panic!("{test}: final read: {e}\n{}", c.logs()));
    let report = history::check(&ops, Some(&fin));
    eprintln!("esos-ha: {test}: {}", report.summary());
    eprintln!(
        "esos-ha: {test}: failover time (longest pause in acknowledgements) {:.3} s",
        report.stats.max_gap_ns as f64 / 1e9
    );
    if !report.is_valid() {
        eprintln!("{}", c.logs());
    }
    report.assert_valid(test);
    (ops, report)
}

/// Stops both nodes cleanly and compares their backing images block by block.
fn assert_replicas_identical(c: &Cluster, test: &str) {
    let primary = c.primary().expect("a primary before the clean stop");
    in_sync(c, primary, RESYNC_TIMEOUT);
    c.stop(other(primary));
    c.stop(primary);
    let diff =
        history::differing_blocks(&c.image(Node::N1), &c.image(Node::N2), c.spec.device_bytes)
            .expect("read images");
    assert!(
        diff.is_empty(),
        "{test}: replicas differ after resync in {} blocks of 4 KiB, first {:?}",
        diff.len(),
        &diff[..diff.len().min(16)]
    );
}

/// The time of the first successful operation served by `node` at or after `from_ns`.
fn first_ok_on(c: &Cluster, ops: &[history::Op], node: Node, from_ns: u64) -> Option<u64> {
    ops.iter()
        .filter(|o| o.outcome == Outcome::Ok && c.node_of_portal(o.portal) == node)
        .filter_map(|o| o.complete_ns)
        .filter(|&t| t >= from_ns)
        .min()
}

// ---- the checker against a single plain daemon -----------------------------------------

/// SIGKILLs of the plain node in one history.
const PLAIN_KILLS: u32 = 3;

#[test]
fn plain_node_killed_under_fua_load_loses_no_acknowledged_write() {
    let test = "ha-plain-kill";
    let Some(c) = cluster(ClusterSpec::single()) else {
        return;
    };
    c.start(Node::N1);
    let w = start_load(&c, test);
    for _ in 0..PLAIN_KILLS {
        c.kill(Node::N1);
        std::thread::sleep(Duration::from_millis(300));
        c.start(Node::N1);
        recovered(&c, &w, test);
        recovered(&c, &w, test);
    }
    let (ops, report) = finish(&c, w, test);
    assert!(
        report.stats.writes_ok > u64::from(PLAIN_KILLS) * WARMUP_OPS,
        "{}",
        report.summary()
    );
    // The kill cut connections with commands in flight.
    assert!(
        ops.iter().any(|o| o.outcome != Outcome::Ok),
        "the kill interrupted nothing"
    );
}

// ---- failover scenarios ------------------------------------------------------------------

#[test]
fn primary_killed_under_load() {
    let test = "ha-kill-primary";
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let w = start_load(&c, test);
    let fault = w.now_ns();
    c.kill(p);
    took_over(&c, other(p), test);
    recovered(&c, &w, test);
    c.start(p);
    // The old primary comes back as secondary and resyncs under load.
    in_sync(&c, other(p), RESYNC_TIMEOUT);
    let (ops, _) = finish(&c, w, test);
    let t = first_ok_on(&c, &ops, other(p), fault).expect("the new primary served");
    eprintln!(
        "esos-ha: {test}: first acknowledgement by the new primary {:.3} s after the kill",
        (t - fault) as f64 / 1e9
    );
    assert_replicas_identical(&c, test);
}

/// The failover docs/ha.md prescribes when the quorum record still names a crashed
/// primary: the administrator (or the Pacemaker agent after fencing) forces the up-to-date
/// survivor. Under the checked load: nothing acknowledged is lost, and the old primary comes
/// back as a secondary with an identical copy.
#[test]
fn primary_killed_then_survivor_forced() {
    let test = "ha-kill-force";
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let w = start_load(&c, test);
    let fault = w.now_ns();
    c.kill(p);
    let o = c.esos(other(p), &["replica", "promote", DEVICE, "--force"]);
    assert!(
        o.success(),
        "{test}: forced promotion of the up-to-date survivor\n{}\n{}",
        o.describe(),
        c.logs()
    );
    recovered(&c, &w, test);
    c.start(p);
    in_sync(&c, other(p), RESYNC_TIMEOUT);
    let (ops, _) = finish(&c, w, test);
    let t = first_ok_on(&c, &ops, other(p), fault).expect("the new primary served");
    eprintln!(
        "esos-ha: {test}: first acknowledgement by the new primary {:.3} s after the kill",
        (t - fault) as f64 / 1e9
    );
    assert_replicas_identical(&c, test);
}

#[test]
fn primary_link_down() {
    let test = "ha-link-down";
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let w = start_load(&c, test);
    c.rig.link(p, false).expect("link down");
    recovered(&c, &w, test);
    c.wait_primary(other(p), RECOVERY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    // The isolated old primary has lost its lease: it no longer calls itself primary.
    c.wait_status(p, RECOVERY_TIMEOUT, |s| {
        s["role"] != "primary" || s["lease_valid"] == false
    })
    .unwrap_or_else(|e| panic!("{test}: the isolated node still serves: {e}"));
    c.rig.link(p, true).expect("link up");
    in_sync(&c, other(p), RESYNC_TIMEOUT);
    finish(&c, w, test);
    assert_replicas_identical(&c, test);
}

#[test]
fn one_direction_dropped() {
    let test = "ha-one-way";
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let w = start_load(&c, test);
    // The primary no longer hears its peer (replication acknowledgements, heartbeats), but
    // its own packets still arrive.
    c.rig
        .drop_traffic(p, Direction::From, other(p))
        .expect("drop");
    recovered(&c, &w, test);
    std::thread::sleep(Duration::from_secs(5));
    recovered(&c, &w, test);
    c.rig.heal_traffic(p).expect("heal");
    let now = c.primary().expect("a primary after healing");
    in_sync(&c, now, RESYNC_TIMEOUT);
    finish(&c, w, test);
    assert_replicas_identical(&c, test);
}

#[test]
fn paused_primary_acknowledges_nothing_after_resuming() {
    let test = "ha-zombie";
    let spec = ClusterSpec::pair();
    let lease = Duration::from_millis(spec.lease_ms);
    let Some(c) = pair(spec) else {
        return;
    };
    let p = c.primary().expect("primary");
    let w = start_load(&c, test);
    c.pause(p, true);
    fail_over_to(&c, other(p), test);
    recovered(&c, &w, test);
    std::thread::sleep(3 * lease);
    let resumed = w.now_ns();
    c.pause(p, false);
    // Workers still connected to the zombie see its answers now.
    std::thread::sleep(Duration::from_secs(3));
    recovered(&c, &w, test);
    let (ops, _) = finish(&c, w, test);
    let zombie_acks: Vec<_> = ops
        .iter()
        .filter(|o| {
            o.outcome == Outcome::Ok
                && c.node_of_portal(o.portal) == p
                && o.complete_ns.is_some_and(|t| t >= resumed)
        })
        .collect();
    assert!(
        zombie_acks.is_empty(),
        "{test}: the resumed old primary acknowledged {} operations, first {:?}",
        zombie_acks.len(),
        zombie_acks.first()
    );
}

#[test]
fn slow_link_under_load() {
    let test = "ha-slow-link";
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let w = start_load(&c, test);
    c.rig.slow(p, "4mbit").expect("tbf");
    // Writes go on, slowly; nothing is lost or stale.
    assert!(
        w.wait_progress(20, RECOVERY_TIMEOUT),
        "{test}: no progress on a slow link\n{}",
        c.logs()
    );
    std::thread::sleep(Duration::from_secs(8));
    c.rig.unslow(p).expect("tbf off");
    recovered(&c, &w, test);
    finish(&c, w, test);
    assert_replicas_identical(&c, test);
}

#[test]
fn secondary_restart_resyncs_only_the_dirty_part() {
    let test = "ha-secondary-restart";
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let s = other(p);
    let w = start_load(&c, test);
    c.kill(s);
    assert!(
        w.wait_progress(WARMUP_OPS, RECOVERY_TIMEOUT),
        "{test}: the primary stopped serving when its secondary died\n{}",
        c.logs()
    );
    let degraded = c.replica_status(p).expect("status");
    let dirty = degraded["peers"][0]["out_of_sync_bytes"]
        .as_u64()
        .unwrap_or(0);
    eprintln!("esos-ha: {test}: out of sync while {s:?} is down: {dirty} bytes");
    assert!(
        dirty > 0,
        "{test}: writes without the peer left nothing out of sync: {degraded}"
    );
    c.start(s);
    let synced = in_sync(&c, p, RESYNC_TIMEOUT);
    let peer = &synced["peers"][0];
    let resynced = peer["sync_total_bytes"].as_u64().unwrap_or(u64::MAX);
    eprintln!(
        "esos-ha: {test}: resynced {resynced} bytes of a {} byte device",
        c.spec.device_bytes
    );
    assert!(
        resynced <= c.spec.device_bytes / 8,
        "{test}: resync copied {resynced} bytes, not only the dirty part: {synced}"
    );
    finish(&c, w, test);
    assert_replicas_identical(&c, test);
}

#[test]
fn double_failure_old_secondary_refuses_to_serve() {
    let test = "ha-double-failure";
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let s = other(p);
    let w = start_load(&c, test);
    c.kill(s);
    // Writes the secondary never sees.
    assert!(
        w.wait_progress(WARMUP_OPS, RECOVERY_TIMEOUT),
        "{test}: no writes after the secondary died\n{}",
        c.logs()
    );
    c.kill(p);
    c.start(s);
    // Alone with the witness, with outdated data: no automatic promotion...
    std::thread::sleep(Duration::from_millis(4 * c.spec.lease_ms));
    let st = c.replica_status(s).expect("status");
    assert_ne!(
        st["role"], "primary",
        "{test}: the outdated node promoted itself: {st}"
    );
    // ...and no promotion on request.
    let o = c.esos(s, &["replica", "promote", DEVICE]);
    assert!(
        !o.success(),
        "{test}: the outdated node accepted promotion\n{}",
        o.describe()
    );
    eprintln!("esos-ha: {test}: promote refused: {}", o.stderr.trim());
    let portal = c.portal(s);
    let serves = c
        .rig
        .in_ns(Node::Client, move || {
            try_portal(portal, TARGET, 0).is_some()
        })
        .expect("client namespace");
    assert!(
        !serves,
        "{test}: the outdated node answers TEST UNIT READY with GOOD"
    );
    // The old primary returns: it serves again, with every acknowledged write.
    c.start(p);
    c.wait_primary(p, RECOVERY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    recovered(&c, &w, test);
    finish(&c, w, test);
}

/// PERSISTENT RESERVE OUT with a basic 24-byte parameter list (SPC-4 6.16.3).
fn pr_out(conn: &mut Conn, action: u8, kind: u8, key: u64, sa_key: u64) -> Result<(), String> {
    let mut params = [0u8; 24];
    params[0..8].copy_from_slice(&key.to_be_bytes());
    params[8..16].copy_from_slice(&sa_key.to_be_bytes());
    let cdb = [0x5f, action, kind, 0, 0, 0, 0, 0, 24, 0];
    match conn.command(0, &cdb, &params, 0) {
        Ok(r) if r.is_good() => Ok(()),
        other => Err(format!("PR OUT {action:#x}: {other:?}")),
    }
}

/// What PERSISTENT RESERVE IN reports: registered keys, the reservation's key and type.
#[derive(Debug, PartialEq, Eq)]
struct PrState {
    keys: Vec<u64>,
    reservation: Option<(u64, u8)>,
}

/// READ KEYS and READ RESERVATION (SPC-4 6.15).
fn pr_state(conn: &mut Conn) -> Result<PrState, String> {
    let mut read = |action: u8| -> Result<Vec<u8>, String> {
        let cdb = [0x5e, action, 0, 0, 0, 0, 0, 0x01, 0x00, 0];
        match conn.command(0, &cdb, &[], 256) {
            Ok(r) if r.is_good() && r.data.len() >= 8 => Ok(r.data),
            other => Err(format!("PR IN {action:#x}: {other:?}")),
        }
    };
    let k = read(0)?;
    let n = u32::from_be_bytes(k[4..8].try_into().expect("4")) as usize;
    let keys = k[8..(8 + n).min(k.len())]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8")))
        .collect();
    let r = read(1)?;
    let n = u32::from_be_bytes(r[4..8].try_into().expect("4"));
    let res = (n >= 16 && r.len() >= 24).then(|| {
        (
            u64::from_be_bytes(r[8..16].try_into().expect("8")),
            r[21] & 0x0f,
        )
    });
    Ok(PrState {
        keys,
        reservation: res,
    })
}

#[test]
fn reservations_follow_the_failover() {
    let test = "ha-reservations";
    const KEY: u64 = 0x0e50_5ca1_ab1e_0001;
    const TYPE_WE: u8 = 1;
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let portal = c.portal(p);
    c.rig
        .in_ns(Node::Client, move || -> Result<(), String> {
            let mut conn =
                try_portal(portal, TARGET, 0).ok_or("no session on the primary".to_owned())?;
            pr_out(&mut conn.conn, 0x00, 0, 0, KEY)?; // REGISTER
            pr_out(&mut conn.conn, 0x01, TYPE_WE, KEY, 0)?; // RESERVE, Write Exclusive
            conn.logout();
            Ok(())
        })
        .expect("client namespace")
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", c.logs()));
    c.kill(p);
    fail_over_to(&c, other(p), test);
    let portal = c.portal(other(p));
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    let state = loop {
        let r = c
            .rig
            .in_ns(Node::Client, move || -> Result<_, String> {
                let mut conn = try_portal(portal, TARGET, 0)
                    .ok_or("no session on the new primary".to_owned())?;
                let st = pr_state(&mut conn.conn);
                conn.logout();
                st
            })
            .expect("client namespace");
        match r {
            Ok(st) => break st,
            Err(e) if Instant::now() > deadline => panic!("{test}: {e}\n{}", c.logs()),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    assert_eq!(
        state.keys,
        vec![KEY],
        "{test}: registrations on the new primary"
    );
    assert_eq!(
        state.reservation,
        Some((KEY, TYPE_WE)),
        "{test}: reservation on the new primary"
    );
}

/// Writes one self-describing 4 KiB block at `block` through `node`'s portal; true when acknowledged.
fn write_marker(c: &Cluster, node: Node, block: u64, writer: u32) -> bool {
    let portal = c.portal(node);
    c.rig
        .in_ns(Node::Client, move || {
            let Some(mut session) = try_portal(portal, TARGET, 0) else {
                return false;
            };
            let mut b = vec![0u8; history::BLOCK_BYTES];
            let id = history::WriteId { writer, op: 1 };
            history::encode_block(&mut b, id, block, 0);
            session.write(block, &b).is_ok_and(|r| r.is_good())
        })
        .unwrap_or(false)
}

/// What `node`'s backing image holds at `lba`.
fn image_block(c: &Cluster, node: Node, lba: u64) -> history::Content {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(c.image(node)).expect("open image");
    let mut b = vec![0u8; history::BLOCK_BYTES];
    f.seek(SeekFrom::Start(lba * history::BLOCK_BYTES as u64))
        .expect("seek");
    f.read_exact(&mut b).expect("read image");
    history::decode_block(&b, lba)
}

/// A split brain as docs/ha.md says it arises under a quorum: a double failure resolved by
/// hand. The secondary dies, the primary takes a write alone, the primary dies, the
/// administrator forces the old secondary up with the witness and it takes a write; the old
/// primary returns. Both copies hold a write the other never saw: the link must show split
/// brain with a report, neither side may discard anything, and only `resolve` ends it.
#[test]
fn split_brain_waits_for_the_administrator() {
    let test = "ha-split-brain";
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let p = c.primary().expect("primary");
    let s = other(p);
    const BLOCK_P: u64 = 100;
    const BLOCK_S: u64 = 200;
    c.kill(s);
    assert!(
        write_marker(&c, p, BLOCK_P, 1),
        "{test}: write on {p:?} alone\n{}",
        c.logs()
    );
    c.kill(p);
    c.start(s);
    // The quorum refuses to force an outdated node up while the dead primary's lease may
    // still run (at most a lease after the kill).
    let forced_by = Instant::now() + Duration::from_secs(10);
    let o = loop {
        let o = c.esos(s, &["replica", "promote", DEVICE, "--force"]);
        if o.success() || Instant::now() >= forced_by {
            break o;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        o.success(),
        "{test}: forced promotion of the outdated {s:?} with the witness\n{}\n{}",
        o.describe(),
        c.logs()
    );
    assert!(
        write_marker(&c, s, BLOCK_S, 2),
        "{test}: write on the forced {s:?}\n{}",
        c.logs()
    );
    c.start(p);
    let st = c
        .wait_status(s, RESYNC_TIMEOUT, |st| {
            st["peers"][0]["link"] == "split-brain" && !st["report"].is_null()
        })
        .unwrap_or_else(|e| panic!("{test}: no split brain reported: {e}\n{}", c.logs()));
    eprintln!("esos-ha: {test}: report: {}", st["report"]);
    // Nothing discarded while the administrator decides.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        matches!(image_block(&c, p, BLOCK_P), history::Content::Written(_)),
        "{test}: {p:?} lost its own write"
    );
    assert!(
        matches!(image_block(&c, s, BLOCK_S), history::Content::Written(_)),
        "{test}: {s:?} lost its own write"
    );
    assert_eq!(
        image_block(&c, s, BLOCK_P),
        history::Content::Initial,
        "{test}: {s:?} took {p:?}'s write without a resolve"
    );
    // Keep the forced side's data: discard the returning node's write.
    let o = c.esos(p, &["replica", "resolve", DEVICE, "--keep", "peer"]);
    assert!(o.success(), "{test}: resolve\n{}", o.describe());
    in_sync(&c, s, RESYNC_TIMEOUT);
    assert_replicas_identical(&c, test);
    assert_eq!(
        image_block(&c, p, BLOCK_P),
        history::Content::Initial,
        "{test}: the discarded write survived the resolve"
    );
    assert!(matches!(
        image_block(&c, p, BLOCK_S),
        history::Content::Written(_)
    ));
}

/// Operations the checked history recorded per node, for the soak's per-cycle line.
fn served_by(c: &Cluster, ops: &[history::Op]) -> String {
    c.data_nodes()
        .iter()
        .map(|&n| {
            let k = ops
                .iter()
                .filter(|o| o.outcome == Outcome::Ok && c.node_of_portal(o.portal) == n)
                .count();
            format!("{}={k}", n.name())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `scripts/failover-soak`: `ESOS_HA_SOAK_CYCLES` kill-primary / restart cycles (default
/// 100), each under its own workers; after every cycle the whole history so far (one epoch,
/// writers numbered apart) is checked against the final contents. Not part of the suite.
#[test]
#[ignore = "the failover soak: run by scripts/failover-soak"]
fn failover_soak() {
    let test = "ha-soak";
    let cycles: u32 = std::env::var("ESOS_HA_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let Some(c) = pair(ClusterSpec::pair()) else {
        return;
    };
    let seed = data::seed(test);
    let epoch = Instant::now();
    let mut all: Vec<history::Op> = Vec::new();
    let mut worst_ns = 0u64;
    let mut failed = 0u32;
    for cycle in 1..=cycles {
        let p = c.primary().expect("primary");
        let mut cfg = c.workload_config(seed ^ u64::from(cycle));
        cfg.writer_base = cycle * cfg.workers;
        let blocks = cfg.blocks;
        let w = Workload::start_at(cfg, epoch);
        assert!(
            w.wait_progress(WARMUP_OPS, RECOVERY_TIMEOUT),
            "{test}: cycle {cycle}: no progress before the kill\n{}",
            c.logs()
        );
        let fault = w.now_ns();
        c.kill(p);
        recovered(&c, &w, test);
        c.start(p);
        in_sync(&c, other(p), RESYNC_TIMEOUT);
        let ops = w.stop();
        let portals = c.portals();
        let fin = c
            .rig
            .in_ns(Node::Client, move || {
                workload::read_final(&portals, TARGET, 0, blocks, FINAL_READ_TIMEOUT)
            })
            .expect("client namespace")
            .unwrap_or_else(|e| panic!("{test}: cycle {cycle}: final read: {e}\n{}", c.logs()));
        let served = first_ok_on(&c, &ops, other(p), fault).map(|t| t - fault);
        let by_node = served_by(&c, &ops);
        let cycle_stats = history::check(&ops, None).stats;
        worst_ns = worst_ns.max(cycle_stats.max_gap_ns);
        all.extend(ops);
        let report = history::check(&all, Some(&fin));
        if !report.is_valid() {
            failed += 1;
        }
        println!(
            "failover-soak: cycle {cycle}/{cycles}: killed {p:?}, new primary served after {:.3} s, \
             longest pause {:.3} s, acknowledged by {by_node}; cumulative: {}",
            served.map_or(f64::NAN, |t| t as f64 / 1e9),
            cycle_stats.max_gap_ns as f64 / 1e9,
            report.summary()
        );
        if !report.is_valid() {
            println!("failover-soak: cycle {cycle}: {:#?}", report.violations);
            break;
        }
    }
    let report = history::check(&all, None);
    println!(
        "failover-soak: result: {}: {cycles} cycles, {failed} with violations; {} acknowledged \
         writes, {} reads; longest pause {:.3} s; {}",
        if failed == 0 { "PASS" } else { "FAIL" },
        report.stats.writes_ok,
        report.stats.reads_ok,
        worst_ns as f64 / 1e9,
        if failed == 0 {
            "0 lost writes, 0 stale reads"
        } else {
            "see above"
        }
    );
    assert_eq!(failed, 0, "{test}: violations");
}
