//! Hostile peers against the real daemon, on loopback, bounded in count and time: random and
//! mutated PDUs at every login stage and in full feature phase, logins sent one byte at a
//! time, oversized data segments, thousands of half-open connections, and sessions that
//! never read their Data-In. Throughout, a well-behaved session (its own target and
//! device) keeps writing and verifying data; at the end the daemon is alive, serves a new
//! login, and its memory stayed bounded. A failing run prints its seed
//! (`ESOS_E2E_SEED=<seed>` replays it).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use esos_e2e::client::pdu::{FINAL, IMMEDIATE, Pdu, op, padded_len, text_segment};
use esos_e2e::client::{Conn, LoginOptions};
use esos_e2e::daemon::{Ctx, Daemon};
use esos_e2e::data::{self, SplitMix64};
use esos_e2e::load::{Worker, WorkerSpec};
use esos_e2e::proc;

const TARGET: &str = "iqn.2026-11.org.esos.test:hostile";
const GOOD_TARGET: &str = "iqn.2026-11.org.esos.test:hostile-good";
const GOOD_INITIATOR: &str = "iqn.2026-11.org.esos:well-behaved";
const ATTACKER: &str = "iqn.2026-11.org.esos:attacker";

/// `server.limits.login_timeout_ms` of the test daemon.
const LOGIN_TIMEOUT: Duration = Duration::from_millis(2000);
/// `server.limits.max_login_connections` of the test daemon.
const MAX_LOGIN_CONNECTIONS: usize = 64;
/// `server.limits.nop_in_timeout_ms`: also how long a socket write may make no progress.
const STALL_TIMEOUT: Duration = Duration::from_millis(2000);

/// Mutated or random inputs per stage (2,000 in all).
const PRELOGIN_CASES: usize = 600;
const OPERATIONAL_CASES: usize = 400;
const FFP_CASES: usize = 1000;
/// Longest the target may take to close a connection whose peer sent garbage and then
/// FIN (it may wait for the rest of a PDU only until the FIN).
const CASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from one attacked connection before the test gives up on it.
const MAX_REACTION_BYTES: usize = 64 << 20;

/// Half-open connections of the flood test.
const FLOOD_CONNECTIONS: usize = 2000;
/// Sockets the daemon may hold besides the login slots: listener, the worker's session,
/// a margin for connections being closed.
const SOCKET_SLACK: usize = 16;

/// Sessions of the never-read test, and the 1 MiB READs each queues without reading.
const NO_READ_SESSIONS: usize = 4;
const NO_READ_COMMANDS: usize = 32;
const NO_READ_BLOCKS: u16 = 2048;

/// Resident memory the daemon may gain over a whole attack (beyond the data it was asked
/// to hold for the never-read sessions).
const RSS_SLACK_KIB: u64 = 64 * 1024;
/// The well-behaved session must keep at least this share of its undisturbed rate.
const MIN_THROUGHPUT_SHARE: f64 = 0.10;
/// Window over which the worker's rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(1);

fn config(ctx: &Ctx) -> String {
    format!(
        r#"
[server]
data_dir = "{dir}/data"

[[server.portal]]
address = "127.0.0.1:{port}"

[server.limits]
login_timeout_ms = {login}
max_login_connections = {slots}
nop_in_interval_ms = 1000
nop_in_timeout_ms = {stall}

[[device]]
name = "fuzz"
type = "ram"
size = "16M"

[[device]]
name = "good"
type = "ram"
size = "16M"

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "fuzz" }}]

[[target]]
name = "{GOOD_TARGET}"

[[target.group]]
name = "good"
initiators = ["{GOOD_INITIATOR}"]
luns = [{{ lun = 0, device = "good" }}]
"#,
        dir = ctx.dir.display(),
        port = ctx.port,
        login = LOGIN_TIMEOUT.as_millis(),
        slots = MAX_LOGIN_CONNECTIONS,
        stall = STALL_TIMEOUT.as_millis(),
    )
}

fn start() -> (Daemon, Worker) {
    let d = Daemon::with_config(TARGET, config);
    let w = Worker::start(WorkerSpec {
        addr: d.addr(),
        target: GOOD_TARGET.into(),
        initiator: GOOD_INITIATOR.into(),
        lun: 0,
        block_size: 512,
        first_lba: 0,
        chap: None,
        seed: 7,
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    (d, w)
}

/// The end of every test: the worker never failed, the daemon runs and logs in anew.
fn finish(mut d: Daemon, w: Worker, what: &str) {
    assert!(d.is_running(), "{what}: the daemon died\n{}", d.log());
    let ops = w
        .stop()
        .unwrap_or_else(|e| panic!("{what}: the well-behaved session failed: {e}\n{}", d.log()));
    let mut c = Conn::login(d.addr(), &LoginOptions::normal(TARGET))
        .unwrap_or_else(|e| panic!("{what}: no login after the attack: {e}\n{}", d.log()));
    c.clear_unit_attention(0).unwrap();
    c.logout().unwrap();
    eprintln!("esos-e2e: {what}: well-behaved session did {ops} verified write+read pairs");
}

// ---------------------------------------------------------------- raw PDUs

fn login_pdu(flags: u8, isid: [u8; 6], itt: u32, cmd_sn: u32, keys: &[(&str, &str)]) -> Pdu {
    let mut p = Pdu::new(op::LOGIN_REQUEST | IMMEDIATE, flags);
    p.bhs[8..14].copy_from_slice(&isid);
    p.set_u32(16, itt);
    p.set_u32(24, cmd_sn);
    p.data = text_segment(keys);
    p
}

/// Security stage, transit to operational negotiation (CSG 0, NSG 1).
fn first_login(isid: [u8; 6]) -> Pdu {
    login_pdu(
        FINAL | 1,
        isid,
        1,
        1,
        &[
            ("InitiatorName", ATTACKER),
            ("SessionType", "Normal"),
            ("TargetName", TARGET),
            ("AuthMethod", "None"),
        ],
    )
}

/// Operational stage, transit to full feature phase (CSG 1, NSG 3).
fn second_login(isid: [u8; 6]) -> Pdu {
    login_pdu(
        FINAL | (1 << 2) | 3,
        isid,
        1,
        1,
        &[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxRecvDataSegmentLength", "65536"),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("ErrorRecoveryLevel", "0"),
        ],
    )
}

/// Reads one PDU (no digests) from a raw stream.
fn read_pdu(s: &mut TcpStream) -> std::io::Result<Pdu> {
    let mut p = Pdu::new(0, 0);
    s.read_exact(&mut p.bhs)?;
    let mut rest = vec![0u8; usize::from(p.bhs[4]) * 4 + padded_len(p.data_len_field())];
    s.read_exact(&mut rest)?;
    p.data = rest.split_off(usize::from(p.bhs[4]) * 4);
    p.data.truncate(p.data_len_field());
    Ok(p)
}

/// How an attacked connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The target closed it (FIN or RST) after `bytes` bytes.
    Closed {
        bytes: usize,
    },
    TimedOut,
    TooMuch,
}

/// Half-closes our side and reads until the target closes, at most `timeout`.
fn until_closed(s: &mut TcpStream, timeout: Duration) -> End {
    let _ = s.shutdown(Shutdown::Write);
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return End::TimedOut;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return End::Closed { bytes },
            Ok(n) => {
                bytes += n;
                if bytes > MAX_REACTION_BYTES {
                    return End::TooMuch;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return End::TimedOut;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return End::Closed { bytes },
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Applies 1..=4 random mutations to a valid PDU on the wire.
fn mutate(rng: &mut SplitMix64, wire: &[u8]) -> Vec<u8> {
    let mut w = wire.to_vec();
    let n = 1 + rng.next_u64() % 4;
    for _ in 0..n {
        let r = rng.next_u64();
        let at = |len: usize| (r >> 8) as usize % len.max(1);
        match r % 7 {
            0 if !w.is_empty() => {
                let i = at(w.len());
                w[i] ^= 1 << ((r >> 40) % 8);
            }
            1 if !w.is_empty() => {
                let i = at(w.len());
                w[i] = (r >> 48) as u8;
            }
            // Data segment length: anything the 24-bit field holds.
            2 if w.len() >= 8 => w[5..8].copy_from_slice(&((r >> 16) as u32).to_be_bytes()[1..]),
            3 => w.truncate(at(w.len() + 1)),
            4 => w.extend(data::pattern(r, 1 + at(256))),
            5 if !w.is_empty() => w[0] = (r >> 32) as u8,
            6 if w.len() >= 5 => w[4] = (r >> 24) as u8, // TotalAHSLength
            _ => {}
        }
    }
    w
}

/// Valid full-feature-phase PDUs of every kind an initiator sends, for `c`'s session.
fn ffp_templates(c: &mut Conn) -> Vec<Pdu> {
    let mut v = vec![c.ping_pdu(b"ping")];
    v.push(c.scsi_header(0, &[0x28, 0, 0, 0, 0, 8, 0, 0, 4, 0], 0, 2048));
    let mut w = c.scsi_header(0, &[0x2a, 0, 0, 0, 0, 16, 0, 0, 2, 0], 1024, 0);
    w.data = data::pattern(1, 1024);
    v.push(w);
    let mut big = c.scsi_header(0, &[0x2a, 0, 0, 0, 0, 32, 0, 0x01, 0, 0], 131_072, 0);
    big.data = data::pattern(2, 4096);
    v.push(big);
    let mut t = Pdu::new(op::TEXT_REQUEST | IMMEDIATE, FINAL);
    t.set_u32(16, 0x77);
    t.set_u32(20, 0xffff_ffff);
    t.data = text_segment(&[("SendTargets", "All")]);
    v.push(t);
    let mut tmf = Pdu::new(0x02 | IMMEDIATE, FINAL | 1); // ABORT TASK
    tmf.set_u32(16, 0x78);
    tmf.set_u32(20, 2);
    v.push(tmf);
    let mut dout = Pdu::new(op::DATA_OUT, FINAL);
    dout.set_u32(16, 3);
    dout.set_u32(20, 1);
    dout.data = data::pattern(3, 512);
    v.push(dout);
    let mut logout = Pdu::new(op::LOGOUT_REQUEST | IMMEDIATE, FINAL);
    logout.set_u32(16, 0x79);
    v.push(logout);
    let mut snack = Pdu::new(0x10, FINAL);
    snack.set_u32(16, 0x7a);
    v.push(snack);
    v
}

fn check_case(d: &Daemon, seed: u64, stage: &str, case: usize, end: End) {
    assert!(
        matches!(end, End::Closed { .. }),
        "{stage} case {case} (seed {seed}): connection not closed by the target: {end:?}\n{}",
        d.log()
    );
}

#[test]
fn random_and_mutated_pdus_at_every_stage() {
    let seed = data::seed("hostile pdus");
    let (mut d, w) = start();
    let rss_start = proc::rss_kib(d.pid()).unwrap_or(0);
    let mut rng = SplitMix64::new(seed);
    let started = Instant::now();

    // Before any login: random bytes, and mutated first Login Requests.
    for case in 0..PRELOGIN_CASES {
        let wire = if case % 2 == 0 {
            let len = 1 + (rng.next_u64() % 600) as usize;
            data::pattern(rng.next_u64(), len)
        } else {
            mutate(
                &mut rng,
                &first_login([0x80, 0, 0, 0, 0, 1]).encode(false, false),
            )
        };
        let mut s = connect(d.addr());
        let _ = s.write_all(&wire);
        check_case(
            &d,
            seed,
            "pre-login",
            case,
            until_closed(&mut s, CASE_TIMEOUT),
        );
    }
    // Security stage done: mutated operational Login Requests.
    for case in 0..OPERATIONAL_CASES {
        let isid = [0x80, 0, 0, 0, 1, (case % 256) as u8];
        let mut s = connect(d.addr());
        s.write_all(&first_login(isid).encode(false, false))
            .unwrap();
        s.set_read_timeout(Some(CASE_TIMEOUT)).unwrap();
        let r =
            read_pdu(&mut s).unwrap_or_else(|e| panic!("first login response: {e}\n{}", d.log()));
        assert_eq!(r.bhs[36], 0, "first login refused: {:?}", r.data);
        let mut next = second_login(isid);
        next.set_u32(28, r.u32_at(24).wrapping_add(1));
        let wire = mutate(&mut rng, &next.encode(false, false));
        let _ = s.write_all(&wire);
        check_case(
            &d,
            seed,
            "operational",
            case,
            until_closed(&mut s, CASE_TIMEOUT),
        );
    }
    // Full feature phase: mutated PDUs of every kind, and random bytes.
    for case in 0..FFP_CASES {
        let mut c = Conn::login(d.addr(), &LoginOptions::normal(TARGET))
            .unwrap_or_else(|e| panic!("ffp case {case} (seed {seed}): login: {e}\n{}", d.log()));
        let templates = ffp_templates(&mut c);
        let wire = if case % 10 == 0 {
            data::pattern(rng.next_u64(), 1 + (rng.next_u64() % 600) as usize)
        } else {
            let t = &templates[(rng.next_u64() % templates.len() as u64) as usize];
            mutate(&mut rng, &t.encode(false, false))
        };
        let mut s = c.into_stream();
        let _ = s.write_all(&wire);
        check_case(
            &d,
            seed,
            "full feature",
            case,
            until_closed(&mut s, CASE_TIMEOUT),
        );
    }
    let cases = PRELOGIN_CASES + OPERATIONAL_CASES + FFP_CASES;
    let rss_end = proc::rss_kib(d.pid()).unwrap_or(0);
    eprintln!(
        "esos-e2e: {cases} hostile inputs in {:?}; daemon RSS {rss_start} -> {rss_end} KiB",
        started.elapsed()
    );
    assert!(
        rss_end <= rss_start + RSS_SLACK_KIB,
        "daemon RSS grew from {rss_start} to {rss_end} KiB over {cases} hostile connections"
    );
    assert!(d.is_running(), "daemon died (seed {seed})\n{}", d.log());
    finish(d, w, "mutated PDUs");
}

#[test]
fn data_segments_over_the_limits_close_the_connection() {
    let (d, w) = start();
    // Login: more than the target accepts before MaxRecvDataSegmentLength is negotiated.
    let mut p = first_login([0x80, 0, 0, 0, 2, 1]);
    p.data.resize(100 * 1024, b'x');
    let mut s = connect(d.addr());
    let _ = s.write_all(&p.encode(false, false));
    let end = until_closed(&mut s, CASE_TIMEOUT);
    assert!(
        matches!(end, End::Closed { .. }),
        "oversized login: {end:?}"
    );
    // Full feature phase: a Data-Out answering an R2T with more than MaxRecvDataSegmentLength.
    let mut c = Conn::login(d.addr(), &LoginOptions::normal(TARGET)).unwrap();
    let mrdsl = c.neg.target_max_recv_dsl as usize;
    let blocks = (2 * mrdsl / 512) as u16;
    let mut cdb = [0x2au8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    let cmd = c.scsi_header(0, &cdb, 2 * mrdsl as u32, 0);
    c.send(&cmd).unwrap();
    c.set_read_timeout(CASE_TIMEOUT).unwrap();
    let r2t = c.recv_response().unwrap();
    assert_eq!(
        r2t.opcode(),
        op::R2T,
        "expected an R2T for a write without immediate data"
    );
    let mut dout = Pdu::new(op::DATA_OUT, FINAL);
    dout.bhs[8..16].copy_from_slice(&cmd.bhs[8..16]);
    dout.set_u32(16, cmd.itt());
    dout.set_u32(20, r2t.u32_at(20));
    dout.data = vec![0xa5; mrdsl + 512];
    let mut s = c.into_stream();
    let _ = s.write_all(&dout.encode(false, false));
    let end = until_closed(&mut s, CASE_TIMEOUT);
    assert!(
        matches!(end, End::Closed { .. }),
        "oversized Data-Out: {end:?}"
    );
    finish(d, w, "oversized segments");
}

#[test]
fn logins_one_byte_at_a_time_hit_the_login_timeout() {
    /// Slow connections at once, and the pause between two of their bytes.
    const SLOW: usize = 8;
    const BYTE_PAUSE: Duration = Duration::from_millis(50);
    let (d, w) = start();
    let addr = d.addr();
    let threads: Vec<_> = (0..SLOW)
        .map(|i| {
            std::thread::spawn(move || {
                let wire = first_login([0x80, 0, 0, 0, 3, i as u8]).encode(false, false);
                let mut s = connect(addr);
                let t0 = Instant::now();
                for b in &wire {
                    // The write after the target's close fails (RST); a bounded loop.
                    if s.write_all(std::slice::from_ref(b)).is_err() {
                        return Some(t0.elapsed());
                    }
                    std::thread::sleep(BYTE_PAUSE);
                }
                match until_closed(&mut s, CASE_TIMEOUT) {
                    End::Closed { .. } => Some(t0.elapsed()),
                    _ => None,
                }
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let took = t.join().unwrap();
        let took = took.unwrap_or_else(|| panic!("slow login {i} was never closed\n{}", d.log()));
        eprintln!("esos-e2e: slow login {i} closed after {took:?}");
        assert!(
            took >= LOGIN_TIMEOUT.mul_f32(0.9) && took <= LOGIN_TIMEOUT + Duration::from_secs(3),
            "slow login {i} closed after {took:?}; login timeout is {LOGIN_TIMEOUT:?}"
        );
    }
    finish(d, w, "slow logins");
}

#[test]
fn thousands_of_half_open_connections_are_bounded() {
    let have = proc::raise_nofile(FLOOD_CONNECTIONS as u64 + 512);
    assert!(
        have as usize >= FLOOD_CONNECTIONS + 256,
        "RLIMIT_NOFILE {have} is too small for {FLOOD_CONNECTIONS} connections"
    );
    let (d, w) = start();
    let before = w.rate(RATE_WINDOW);
    let rss_start = proc::rss_kib(d.pid()).unwrap_or(0);
    let mut flood = Vec::with_capacity(FLOOD_CONNECTIONS);
    for i in 0..FLOOD_CONNECTIONS {
        let Ok(mut s) = TcpStream::connect_timeout(&d.addr(), Duration::from_secs(5)) else {
            continue;
        };
        // Every third sends half a header, the rest nothing at all.
        if i % 3 == 0 {
            let _ = s.write_all(&first_login([0x80, 0, 0, 0, 4, 0]).encode(false, false)[..20]);
        }
        flood.push(s);
    }
    let during = w.rate(RATE_WINDOW);
    let held = proc::open_sockets(d.pid());
    let rss_flood = proc::rss_kib(d.pid()).unwrap_or(0);
    eprintln!(
        "esos-e2e: {} half-open connections: daemon holds {held} sockets, RSS {rss_start} -> \
         {rss_flood} KiB; worker {before:.0} -> {during:.0} pairs/s",
        flood.len()
    );
    assert!(
        held <= MAX_LOGIN_CONNECTIONS + SOCKET_SLACK,
        "daemon holds {held} sockets with max_login_connections = {MAX_LOGIN_CONNECTIONS}"
    );
    assert!(
        rss_flood <= rss_start + RSS_SLACK_KIB,
        "RSS {rss_start} -> {rss_flood} KiB"
    );
    assert!(
        during >= before * MIN_THROUGHPUT_SHARE,
        "well-behaved session slowed from {before:.0} to {during:.0} pairs/s"
    );
    // Once the login timeout has reaped the held ones, a real login gets in again, although
    // the attacker still keeps every socket open.
    let deadline = Instant::now() + LOGIN_TIMEOUT + Duration::from_secs(5);
    loop {
        match Conn::login(d.addr(), &LoginOptions::normal(TARGET)) {
            Ok(c) => {
                c.logout().unwrap();
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "no login within {:?} of the flood: {e}\n{}",
                LOGIN_TIMEOUT + Duration::from_secs(5),
                d.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(flood);
    finish(d, w, "half-open flood");
}

#[test]
fn sessions_that_never_read_data_in_are_dropped_and_freed() {
    let (d, w) = start();
    let before = w.rate(RATE_WINDOW);
    let rss_start = proc::rss_kib(d.pid()).unwrap_or(0);
    let mut socks = Vec::new();
    for _ in 0..NO_READ_SESSIONS {
        let mut c = Conn::login(d.addr(), &LoginOptions::normal(TARGET)).unwrap();
        c.clear_unit_attention(0).unwrap();
        for i in 0..NO_READ_COMMANDS {
            let lba = (i as u32 % 16) * u32::from(NO_READ_BLOCKS);
            let mut cdb = [0x28u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            cdb[2..6].copy_from_slice(&lba.to_be_bytes());
            cdb[7..9].copy_from_slice(&NO_READ_BLOCKS.to_be_bytes());
            let p = c.scsi_header(0, &cdb, 0, u32::from(NO_READ_BLOCKS) * 512);
            c.send(&p).unwrap();
        }
        socks.push(c.into_stream());
    }
    let during = w.rate(RATE_WINDOW);
    let rss_peak = proc::rss_kib(d.pid()).unwrap_or(0);
    // Give the stall timeout time to fire, then see that the target closed each one.
    std::thread::sleep(STALL_TIMEOUT + Duration::from_secs(3));
    let rss_after = proc::rss_kib(d.pid()).unwrap_or(0);
    let asked = (NO_READ_SESSIONS * NO_READ_COMMANDS) as u64 * u64::from(NO_READ_BLOCKS) / 2;
    eprintln!(
        "esos-e2e: {NO_READ_SESSIONS} sessions x {NO_READ_COMMANDS} unread 1 MiB READs: RSS \
         {rss_start} -> {rss_peak} (peak sample) -> {rss_after} KiB after the stall timeout; \
         worker {before:.0} -> {during:.0} pairs/s"
    );
    for (i, s) in socks.iter_mut().enumerate() {
        match until_closed(s, CASE_TIMEOUT) {
            End::Closed { bytes } => assert!(
                bytes < (NO_READ_COMMANDS << 20),
                "session {i} got all its data ({bytes} bytes): it was never stalled"
            ),
            e => panic!(
                "session {i} that never read was not dropped: {e:?}\n{}",
                d.log()
            ),
        }
    }
    assert!(
        rss_peak <= rss_start + asked + RSS_SLACK_KIB,
        "RSS {rss_start} -> {rss_peak} KiB for {asked} KiB of unread data"
    );
    assert!(
        rss_after <= rss_start + RSS_SLACK_KIB,
        "RSS still {rss_after} KiB (from {rss_start}) after the stalled sessions were dropped"
    );
    assert!(
        during >= before * MIN_THROUGHPUT_SHARE,
        "well-behaved session slowed from {before:.0} to {during:.0} pairs/s"
    );
    finish(d, w, "never-read sessions");
}

/// Sessions held at once by the scale test, and how many of them run I/O.
const SCALE_SESSIONS: usize = 512;
const SCALE_IO_SESSIONS: usize = 16;
/// How long the sampled sessions run I/O with every session held.
const SCALE_IO_TIME: Duration = Duration::from_secs(3);
/// Resident memory the daemon may use per held session (tasks, socket buffers, pools).
const SCALE_RSS_PER_SESSION_KIB: u64 = 512;

#[test]
fn five_hundred_twelve_sessions_with_io_on_a_sample() {
    proc::raise_nofile(SCALE_SESSIONS as u64 + 512);
    let d = Daemon::with_config(TARGET, |ctx| {
        config(ctx).replace(
            "nop_in_interval_ms = 1000",
            &format!(
                "nop_in_interval_ms = 0\nmax_sessions = {n}\nmax_sessions_per_target = {n}",
                n = SCALE_SESSIONS + 8
            ),
        )
    });
    let rss_idle = proc::rss_kib(d.pid()).unwrap_or(0);
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(SCALE_SESSIONS);
    for i in 0..SCALE_SESSIONS - SCALE_IO_SESSIONS {
        let c = Conn::login(d.addr(), &LoginOptions::normal(TARGET))
            .unwrap_or_else(|e| panic!("session {i}: {e}\n{}", d.log()));
        held.push(c);
    }
    let workers: Vec<Worker> = (0..SCALE_IO_SESSIONS)
        .map(|i| {
            Worker::start(WorkerSpec {
                addr: d.addr(),
                target: TARGET.into(),
                initiator: format!("iqn.2026-11.org.esos:scale-{i}"),
                lun: 0,
                block_size: 512,
                first_lba: i as u32 * 2048,
                chap: None,
                seed: i as u64,
            })
            .unwrap_or_else(|e| panic!("worker {i}: {e}\n{}", d.log()))
        })
        .collect();
    let login_time = t0.elapsed();
    let rss_held = proc::rss_kib(d.pid()).unwrap_or(0);
    let before: u64 = workers.iter().map(Worker::ops).sum();
    std::thread::sleep(SCALE_IO_TIME);
    let ops: u64 = workers.iter().map(Worker::ops).sum::<u64>() - before;
    let rss_io = proc::rss_kib(d.pid()).unwrap_or(0);
    let sockets = proc::open_sockets(d.pid());
    eprintln!(
        "esos-e2e: {SCALE_SESSIONS} sessions ({SCALE_IO_SESSIONS} with I/O) logged in in \
         {login_time:?}; daemon holds {sockets} sockets; RSS idle {rss_idle} KiB, all held \
         {rss_held} KiB, with I/O {rss_io} KiB; {:.0} verified 4 KiB write+read pairs/s",
        ops as f64 / SCALE_IO_TIME.as_secs_f64()
    );
    assert!(sockets > SCALE_SESSIONS, "only {sockets} sockets held");
    assert!(
        ops > 0,
        "no I/O completed with {SCALE_SESSIONS} sessions held"
    );
    let bound = rss_idle + SCALE_SESSIONS as u64 * SCALE_RSS_PER_SESSION_KIB;
    assert!(
        rss_io <= bound,
        "RSS {rss_io} KiB with {SCALE_SESSIONS} sessions (bound {bound})"
    );
    for (i, w) in workers.into_iter().enumerate() {
        w.stop()
            .unwrap_or_else(|e| panic!("worker {i}: {e}\n{}", d.log()));
    }
    for c in held {
        c.logout().unwrap();
    }
}
