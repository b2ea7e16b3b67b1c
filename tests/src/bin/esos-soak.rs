//! `esos-soak`: the client side of `scripts/soak`, a long mixed load against a running esos.
//!
//! The script starts the daemon and watches its memory and descriptors; this program is the
//! load. Every worker is a thread with its own sessions (the harness' blocking raw client, one
//! command at a time per session), runs until the deadline and counts what it did:
//!
//! - `rand4k-*`: 4 KiB random writes (some FUA) and reads on a region of its own, every read
//!   verified against the last acknowledged write of that slot;
//! - `seq1m`: 1 MiB sequential write passes (R2T path, FUA every 8th, SYNCHRONIZE CACHE per
//!   pass) each followed by a verifying read pass;
//! - `null1m`: 1 MiB writes and reads on a null LU (reads must be zeros);
//! - `tmf`: ABORT TASK of a write waiting for its R2T and of a racing read, ABORT TASK SET,
//!   LOGICAL UNIT RESET on an LU another worker is using, COMPARE AND WRITE (match and
//!   miscompare), each followed by a check that the session and the data are intact;
//! - `misc`: SendTargets discovery and a persistent-reservation cycle seen from two nexuses.
//!
//! Every session reconnects every `--reconnect-secs` (± 50 %) in turn by Logout, by dropping
//! TCP with a command in flight, with FIN and with RST; logins after a drop reuse the ISID, so
//! the target reinstates the session (RFC 7143 6.3.5). An error is anything unexpected: a
//! failed login, a transport error, a status other than the one the step expects, a
//! verification mismatch. Errors are counted and printed (the first [`MAX_ERROR_LINES`]);
//! the worker then logs in again and goes on. The summary goes to stdout and, as
//! `key=value` lines, to `--out`. Exit status: 0 without errors, 1 with errors, 2 on usage.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use esos_e2e::client::pdu::{FINAL, IMMEDIATE, Pdu, op};
use esos_e2e::client::{CHECK_CONDITION, ChapLogin, Conn, LoginOptions, RESERVED_TAG, ScsiResult};
use esos_e2e::data::{SplitMix64, pattern};

/// Most error messages printed; every error is counted either way.
const MAX_ERROR_LINES: u64 = 100;
/// Most unit attentions in a row one command absorbs: a login or a LOGICAL UNIT RESET leaves
/// one per LU and nexus (SAM-5 5.14), so more than a few means something is wrong.
const MAX_UA_RETRIES: u32 = 8;
/// Pause after a failed login before the next attempt, so a refusing target is not hammered.
const RELOGIN_PAUSE: Duration = Duration::from_secs(1);
/// How long a slot whose write was cut off by a dropped connection is neither written nor
/// verified: the old session's write may still reach the medium after the new session
/// starts (the target finishes a reinstated session's tasks in its own time).
const QUARANTINE: Duration = Duration::from_secs(30);
/// Most PDUs read while waiting for one TMF response (R2Ts, Data-Ins, NOP-Ins before it).
const MAX_PDUS_PER_TMF: usize = 4096;
/// Interval of the progress line on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);
/// Bytes of one small I/O.
const SMALL_IO: usize = 4096;
/// Bytes of one large I/O.
const LARGE_IO: usize = 1 << 20;
/// Bytes of the READ that races its ABORT TASK: large enough that the LU is often still
/// copying it when the abort arrives, well under the target's 32 MiB transfer limit.
const RACE_READ: usize = 8 << 20;
/// 4 KiB slots of each random worker's region.
const RAND_SLOTS: u64 = 4096;
/// 1 MiB chunks of the sequential worker's region.
const SEQ_CHUNKS: u64 = 64;
/// 1 MiB chunks the null worker spreads its I/O over.
const NULL_CHUNKS: u64 = 1 << 16;
/// 4 KiB slots of the TMF worker's region (right after `rand4k-b`'s on the same LU).
const TMF_SLOTS: u64 = 64;
/// Random-worker operations between two SYNCHRONIZE CACHEs.
const SYNC_EVERY: u64 = 256;
/// Time between two discovery sessions of the misc worker.
const DISCOVERY_EVERY: Duration = Duration::from_secs(10);
/// Time between two persistent-reservation cycles of the misc worker.
const PR_EVERY: Duration = Duration::from_secs(15);
/// Time between two TMF steps (the TMF worker does verified I/O in between).
const TMF_EVERY: Duration = Duration::from_secs(2);
/// Longest a worker thread may outlive the deadline (one command's timeouts plus a logout).
const JOIN_GRACE: Duration = Duration::from_secs(60);

/// TMF opcodes and functions (RFC 7143 11.5, 11.6).
mod tmf {
    pub const REQUEST: u8 = 0x02;
    pub const RESPONSE: u8 = 0x22;
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    /// Response: function complete.
    pub const COMPLETE: u8 = 0;
    /// Response: task does not exist.
    pub const NO_TASK: u8 = 1;
}

/// SCSI status RESERVATION CONFLICT (SAM-5 5.3.1).
const RESERVATION_CONFLICT: u8 = 0x18;
/// Sense key MISCOMPARE (SPC-4 4.5.6).
const MISCOMPARE: u8 = 0x0e;

// ---------------------------------------------------------------------------------------
// Options

#[derive(Clone, Debug)]
struct Opts {
    portal: SocketAddr,
    /// Target with a file LU (0) and a null LU (1), no CHAP.
    target_a: String,
    /// Target with CHAP: a RAM LU (0) shared by `rand4k-b` and `tmf`, a RAM LU (1) for
    /// reservations.
    target_b: String,
    chap_user: String,
    chap_secret: String,
    seconds: u64,
    seed: u64,
    reconnect_secs: u64,
    /// Pause after each small I/O, so the load leaves the shared machine some air.
    pace_ms: u64,
    out: Option<PathBuf>,
}

const USAGE: &str = "usage: esos-soak --portal ADDR --target-a IQN --target-b IQN \
--chap-user USER --chap-secret SECRET [--seconds 1800] [--seed N] [--reconnect-secs 30] \
[--pace-ms 1] [--out FILE]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Opts, String> {
    let mut portal = None;
    let (mut target_a, mut target_b, mut chap_user, mut chap_secret) = (None, None, None, None);
    let mut o = Opts {
        portal: SocketAddr::from(([127, 0, 0, 1], 3260)),
        target_a: String::new(),
        target_b: String::new(),
        chap_user: String::new(),
        chap_secret: String::new(),
        seconds: 1800,
        seed: 0,
        reconnect_secs: 30,
        pace_ms: 1,
        out: None,
    };
    let mut seed = None;
    let mut it = args.into_iter();
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        let num = |s: String| {
            s.parse::<u64>()
                .map_err(|e| format!("{k}: {s:?} is not a number: {e}"))
        };
        match k.as_str() {
            "--portal" => {
                let s = v()?;
                portal = Some(
                    s.parse()
                        .map_err(|e| format!("--portal: {s:?} is not an address: {e}"))?,
                );
            }
            "--target-a" => target_a = Some(v()?),
            "--target-b" => target_b = Some(v()?),
            "--chap-user" => chap_user = Some(v()?),
            "--chap-secret" => chap_secret = Some(v()?),
            "--seconds" => o.seconds = num(v()?)?,
            "--seed" => seed = Some(num(v()?)?),
            "--reconnect-secs" => o.reconnect_secs = num(v()?)?.max(1),
            "--pace-ms" => o.pace_ms = num(v()?)?,
            "--out" => o.out = Some(PathBuf::from(v()?)),
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {k:?}")),
        }
    }
    o.portal = portal.ok_or("--portal is required")?;
    o.target_a = target_a.ok_or("--target-a is required")?;
    o.target_b = target_b.ok_or("--target-b is required")?;
    o.chap_user = chap_user.ok_or("--chap-user is required")?;
    o.chap_secret = chap_secret.ok_or("--chap-secret is required")?;
    o.seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// Counters

/// What the summary counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum K {
    Read4k,
    Write4k,
    Read1m,
    Write1m,
    FuaWrites,
    SyncCache,
    VerifiedMib,
    Logins,
    Logouts,
    DropsInflight,
    DropsFin,
    DropsRst,
    Discoveries,
    AbortTaskWaiting,
    AbortTaskRaceAborted,
    AbortTaskRaceCompleted,
    AbortTaskSet,
    LunResets,
    CompareAndWrite,
    Miscompares,
    PrCycles,
    ReservationConflicts,
    UnitAttentions,
    Errors,
}

impl K {
    const ALL: [K; 24] = [
        K::Read4k,
        K::Write4k,
        K::Read1m,
        K::Write1m,
        K::FuaWrites,
        K::SyncCache,
        K::VerifiedMib,
        K::Logins,
        K::Logouts,
        K::DropsInflight,
        K::DropsFin,
        K::DropsRst,
        K::Discoveries,
        K::AbortTaskWaiting,
        K::AbortTaskRaceAborted,
        K::AbortTaskRaceCompleted,
        K::AbortTaskSet,
        K::LunResets,
        K::CompareAndWrite,
        K::Miscompares,
        K::PrCycles,
        K::ReservationConflicts,
        K::UnitAttentions,
        K::Errors,
    ];

    /// Key in the summary (`key=value`).
    fn name(self) -> &'static str {
        match self {
            K::Read4k => "read_4k",
            K::Write4k => "write_4k",
            K::Read1m => "read_1m",
            K::Write1m => "write_1m",
            K::FuaWrites => "fua_writes",
            K::SyncCache => "synchronize_cache",
            K::VerifiedMib => "verified_mib",
            K::Logins => "logins",
            K::Logouts => "logouts",
            K::DropsInflight => "drops_with_command_in_flight",
            K::DropsFin => "drops_fin",
            K::DropsRst => "drops_rst",
            K::Discoveries => "discoveries",
            K::AbortTaskWaiting => "abort_task_waiting_write",
            K::AbortTaskRaceAborted => "abort_task_race_aborted",
            K::AbortTaskRaceCompleted => "abort_task_race_completed_first",
            K::AbortTaskSet => "abort_task_set",
            K::LunResets => "lun_resets",
            K::CompareAndWrite => "compare_and_write",
            K::Miscompares => "compare_and_write_miscompare",
            K::PrCycles => "reservation_cycles",
            K::ReservationConflicts => "reservation_conflicts_expected",
            K::UnitAttentions => "unit_attentions",
            K::Errors => "errors",
        }
    }
}

struct Ctx {
    opts: Opts,
    start: Instant,
    deadline: Instant,
    counts: [AtomicU64; K::ALL.len()],
    /// Bytes read back and verified (reported as [`K::VerifiedMib`]).
    verified_bytes: AtomicU64,
}

impl Ctx {
    fn add(&self, k: K, n: u64) {
        self.counts[k as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, k: K) -> u64 {
        if k == K::VerifiedMib {
            return self.verified_bytes.load(Ordering::Relaxed) >> 20;
        }
        self.counts[k as usize].load(Ordering::Relaxed)
    }

    /// Counts bytes read back and found equal to what was written.
    fn verified(&self, bytes: usize) {
        self.verified_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn error(&self, worker: &str, msg: impl std::fmt::Display) {
        let n = self.counts[K::Errors as usize].fetch_add(1, Ordering::Relaxed) + 1;
        if n <= MAX_ERROR_LINES {
            eprintln!("soak: [{:7.1}s] ERROR {worker}: {msg}", self.secs());
        } else if n == MAX_ERROR_LINES + 1 {
            eprintln!("soak: more errors; only counting them from now on");
        }
    }

    fn summary(&self) -> String {
        K::ALL
            .iter()
            .map(|k| format!("{}={}\n", k.name(), self.get(*k)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// CDBs (SBC-3, SPC-4)

fn rw10(opcode: u8, lba: u64, blocks: u32, fua: bool) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = opcode;
    c[1] = if fua { 0x08 } else { 0 };
    c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
    c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
    c
}

const READ10: u8 = 0x28;
const WRITE10: u8 = 0x2a;
const TEST_UNIT_READY: [u8; 6] = [0; 6];
const SYNCHRONIZE_CACHE10: [u8; 10] = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const READ_CAPACITY10: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// COMPARE AND WRITE (SBC-3 5.2): the data-out holds the compare then the write data.
fn compare_and_write(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

/// PERSISTENT RESERVE OUT with the basic 24-byte parameter list (SPC-4 6.16).
fn pr_out(action: u8, kind: u8, key: u64, sa_key: u64) -> ([u8; 10], [u8; 24]) {
    let mut p = [0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    ([0x5f, action, kind, 0, 0, 0, 0, 0, 24, 0], p)
}

/// PERSISTENT RESERVE IN (SPC-4 6.15), 256 bytes allocated.
fn pr_in(action: u8) -> [u8; 10] {
    [0x5e, action, 0, 0, 0, 0, 0, 0x01, 0x00, 0]
}

/// PR OUT service actions and the reservation type used (SPC-4 tables 168, 169).
mod pr {
    pub const RESERVE: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const REGISTER_AND_IGNORE: u8 = 6;
    pub const READ_KEYS: u8 = 0;
    pub const READ_RESERVATION: u8 = 1;
    pub const WRITE_EXCLUSIVE: u8 = 1;
}

fn is_unit_attention(r: &ScsiResult) -> bool {
    r.status == CHECK_CONDITION && r.sense_triple().is_some_and(|s| s.0 == 0x06)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Sets SO_LINGER to zero so that closing the socket sends RST instead of FIN.
fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `s` owns an open socket for the whole call; `l` is a valid `linger` that lives
    // across the call and its exact size is passed, so the kernel reads only that struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Sessions and reconnects

/// How a session ends before the next login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reconnect {
    Logout,
    /// A command is sent and the connection closed (FIN) without waiting for its status.
    DropInflight,
    DropFin,
    DropRst,
}

const RECONNECT_ORDER: [Reconnect; 4] = [
    Reconnect::Logout,
    Reconnect::DropInflight,
    Reconnect::DropFin,
    Reconnect::DropRst,
];

/// When the next reconnect is due: every `mean` ± 50 %, kinds in [`RECONNECT_ORDER`].
struct Reconnector {
    next: Instant,
    mean: Duration,
    n: usize,
    rng: SplitMix64,
}

impl Reconnector {
    fn new(mean: Duration, seed: u64) -> Self {
        let mut r = Reconnector {
            next: Instant::now(),
            mean,
            n: 0,
            rng: SplitMix64::new(seed),
        };
        r.next = Instant::now() + r.interval();
        r
    }

    fn interval(&mut self) -> Duration {
        let permille = 500 + self.rng.next_u64() % 1001;
        self.mean * permille as u32 / 1000
    }

    fn due(&mut self, now: Instant) -> Option<Reconnect> {
        if now < self.next {
            return None;
        }
        self.next = now + self.interval();
        let k = RECONNECT_ORDER[self.n % RECONNECT_ORDER.len()];
        self.n += 1;
        Some(k)
    }
}

/// One I_T nexus: an initiator name and a fixed ISID, logged in on demand.
struct Session {
    worker: String,
    opts: LoginOptions,
    lun: u64,
    /// Logical block size, once [`Session::capacity`] has read it.
    block_size: u32,
    conn: Option<Conn>,
}

impl Session {
    fn new(worker: &str, target: &str, index: u8, chap: Option<ChapLogin>, lun: u64) -> Self {
        let mut opts = LoginOptions::normal(target);
        opts.initiator = format!("iqn.2026-11.org.esos:soak-{worker}");
        // Random-format ISID (RFC 7143 11.12.5) with A = 1, distinct from the harness'
        // own (A = 0): the same ISID after a drop makes the target reinstate the session.
        let p = (std::process::id() as u16).to_be_bytes();
        opts.isid = Some([0x81, 0x50, p[0], p[1], 0, index]);
        opts.chap = chap;
        Session {
            worker: worker.to_owned(),
            opts,
            lun,
            block_size: 512,
            conn: None,
        }
    }

    /// The logged-in connection, logging in first when there is none. A failed login is an
    /// error; `None` then (after a pause).
    fn conn(&mut self, ctx: &Ctx) -> Option<&mut Conn> {
        if self.conn.is_none() {
            let lun = self.lun;
            let r = Conn::login(ctx.opts.portal, &self.opts).and_then(|mut c| {
                c.clear_unit_attention(lun)?;
                Ok(c)
            });
            match r {
                Ok(c) => {
                    ctx.add(K::Logins, 1);
                    self.conn = Some(c);
                }
                Err(e) => {
                    ctx.error(&self.worker, format!("login: {e}"));
                    std::thread::sleep(RELOGIN_PAUSE);
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    /// Runs one command; unit attentions are counted and the command is sent again. A
    /// transport error is an error and drops the connection; `None` then.
    fn cmd(
        &mut self,
        ctx: &Ctx,
        what: &str,
        cdb: &[u8],
        out: &[u8],
        read_len: usize,
    ) -> Option<ScsiResult> {
        for _ in 0..=MAX_UA_RETRIES {
            let lun = self.lun;
            let c = self.conn(ctx)?;
            match c.command(lun, cdb, out, read_len as u32) {
                Ok(r) if is_unit_attention(&r) => ctx.add(K::UnitAttentions, 1),
                Ok(r) => return Some(r),
                Err(e) => {
                    ctx.error(&self.worker, format!("{what}: {e}"));
                    self.conn = None;
                    return None;
                }
            }
        }
        ctx.error(
            &self.worker,
            format!("{what}: still UNIT ATTENTION after {MAX_UA_RETRIES} retries"),
        );
        None
    }

    /// A command that must end GOOD: its data-in, or `None` after counting the error.
    fn good(
        &mut self,
        ctx: &Ctx,
        what: &str,
        cdb: &[u8],
        out: &[u8],
        read_len: usize,
    ) -> Option<Vec<u8>> {
        let r = self.cmd(ctx, what, cdb, out, read_len)?;
        if r.is_good() {
            Some(r.data)
        } else {
            ctx.error(
                &self.worker,
                format!(
                    "{what}: status {:#04x}, sense {:?}",
                    r.status,
                    r.sense_triple()
                ),
            );
            None
        }
    }

    /// Logical block size and number of blocks (READ CAPACITY(10)).
    fn capacity(&mut self, ctx: &Ctx) -> Option<(u32, u64)> {
        let d = self.good(ctx, "READ CAPACITY(10)", &READ_CAPACITY10, &[], 8)?;
        if d.len() < 8 {
            ctx.error(&self.worker, "READ CAPACITY(10): short data");
            return None;
        }
        let last = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        let bs = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        if bs == 0 || !SMALL_IO.is_multiple_of(bs as usize) {
            ctx.error(&self.worker, format!("unexpected block size {bs}"));
            return None;
        }
        self.block_size = bs;
        Some((bs, u64::from(last) + 1))
    }

    fn logout(&mut self, ctx: &Ctx) {
        if let Some(c) = self.conn.take() {
            match c.logout() {
                Ok(()) => ctx.add(K::Logouts, 1),
                Err(e) => ctx.error(&self.worker, format!("logout: {e}")),
            }
        }
    }

    /// Closes TCP without a logout (FIN, or RST when `rst`).
    fn drop_conn(&mut self, ctx: &Ctx, rst: bool) {
        if let Some(c) = self.conn.take() {
            let s = c.into_stream();
            if rst {
                set_linger_zero(&s);
            }
            drop(s);
            ctx.add(if rst { K::DropsRst } else { K::DropsFin }, 1);
        }
    }

    /// Sends a command (with all its data immediate, when a write) and closes TCP without
    /// waiting for the status.
    fn drop_inflight(&mut self, ctx: &Ctx, cdb: &[u8], out: &[u8], read_len: usize) {
        let lun = self.lun;
        let Some(c) = self.conn(ctx) else { return };
        let mut p = c.scsi_header(lun, cdb, out.len() as u32, read_len as u32);
        p.data = out.to_vec();
        let sent = c.send(&p);
        self.conn.take();
        match sent {
            Ok(()) => ctx.add(K::DropsInflight, 1),
            Err(e) => ctx.error(&self.worker, format!("sending the command to cut off: {e}")),
        }
    }

    /// The reconnects that need no command of the worker's own.
    fn reconnect_plain(&mut self, ctx: &Ctx, kind: Reconnect) {
        match kind {
            Reconnect::Logout => self.logout(ctx),
            Reconnect::DropFin => self.drop_conn(ctx, false),
            Reconnect::DropRst => self.drop_conn(ctx, true),
            Reconnect::DropInflight => {
                // A read in flight: it cannot change the medium after the drop.
                let cdb = rw10(READ10, 0, 1, false);
                self.drop_inflight(ctx, &cdb, &[], self.block_size as usize);
            }
        }
    }
}

fn pace(ctx: &Ctx) {
    if ctx.opts.pace_ms > 0 {
        std::thread::sleep(Duration::from_millis(ctx.opts.pace_ms));
    }
}

// ---------------------------------------------------------------------------------------
// What a region should hold

/// The content a 4 KiB slot must read back as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not written by this run yet (the priming run may have written it).
    Unwritten,
    /// Holds `pattern(seed, 4096)`, acknowledged GOOD.
    Data(u64),
    /// A write to it failed or was cut off: either content is possible until rewritten.
    Unknown,
    /// Cut off with a dropped connection: not written or verified until then.
    Quarantined(Instant),
}

struct Model {
    slots: Vec<Slot>,
}

impl Model {
    fn new(n: u64) -> Self {
        Model {
            slots: vec![Slot::Unwritten; n as usize],
        }
    }

    /// May the slot be written now (a quarantine ends by itself)?
    fn writable(&mut self, i: usize, now: Instant) -> bool {
        match self.slots[i] {
            Slot::Quarantined(until) if now < until => false,
            Slot::Quarantined(_) => {
                self.slots[i] = Slot::Unknown;
                true
            }
            _ => true,
        }
    }

    /// The bytes a read of the slot must return, when known.
    fn expected(&self, i: usize) -> Option<Vec<u8>> {
        match self.slots[i] {
            Slot::Data(seed) => Some(pattern(seed, SMALL_IO)),
            Slot::Unwritten | Slot::Unknown | Slot::Quarantined(_) => None,
        }
    }

    fn set(&mut self, i: usize, s: Slot) {
        self.slots[i] = s;
    }
}

/// Where a worker's 4 KiB slots start on its LU, and the LU's block size.
#[derive(Clone, Copy, Debug)]
struct Region {
    first_lba: u64,
    bs: u32,
}

impl Region {
    /// Region of the slots from `first_slot` on an LU of `bs`-byte blocks.
    fn new(first_slot: u64, bs: u32) -> Self {
        let r = Region { first_lba: 0, bs };
        Region {
            first_lba: first_slot * u64::from(r.blocks()),
            bs,
        }
    }

    /// Blocks per slot.
    fn blocks(&self) -> u32 {
        (SMALL_IO / self.bs as usize) as u32
    }

    fn lba(&self, i: usize) -> u64 {
        self.first_lba + i as u64 * u64::from(self.blocks())
    }
}

/// Reads one slot and compares it with the model; counts the read and the verified bytes.
fn read_verify(
    s: &mut Session,
    ctx: &Ctx,
    m: &Model,
    reg: Region,
    i: usize,
    what: &str,
) -> Option<()> {
    let lba = reg.lba(i);
    let cdb = rw10(READ10, lba, reg.blocks(), false);
    let d = s.good(
        ctx,
        &format!("{what} READ(10) LBA {lba}"),
        &cdb,
        &[],
        SMALL_IO,
    )?;
    ctx.add(K::Read4k, 1);
    if let Some(want) = m.expected(i) {
        if let Some(at) = first_difference(&d, &want) {
            ctx.error(
                &s.worker,
                format!(
                    "{what}: LBA {lba} (slot {i}, {:?}) differs from the last acknowledged write at byte {at}",
                    m.slots[i]
                ),
            );
            return None;
        }
        ctx.verified(SMALL_IO);
    }
    Some(())
}

/// Writes one slot with fresh data and records it when acknowledged.
fn write_slot(
    s: &mut Session,
    ctx: &Ctx,
    m: &mut Model,
    reg: Region,
    i: usize,
    seed: u64,
    fua: bool,
) -> Option<()> {
    let lba = reg.lba(i);
    let data = pattern(seed, SMALL_IO);
    let cdb = rw10(WRITE10, lba, reg.blocks(), fua);
    if s.good(ctx, &format!("WRITE(10) LBA {lba}"), &cdb, &data, 0)
        .is_none()
    {
        m.set(i, Slot::Unknown);
        return None;
    }
    m.set(i, Slot::Data(seed));
    ctx.add(K::Write4k, 1);
    if fua {
        ctx.add(K::FuaWrites, 1);
    }
    Some(())
}

// ---------------------------------------------------------------------------------------
// Workers

/// A worker of random 4 KiB I/O on slots `first_slot..first_slot + RAND_SLOTS`.
fn rand4k(ctx: &Ctx, mut s: Session, first_slot: u64, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let mut rc = Reconnector::new(Duration::from_secs(ctx.opts.reconnect_secs), seed ^ 1);
    let Some((bs, _)) = s.capacity(ctx) else {
        return;
    };
    let reg = Region::new(first_slot, bs);
    let mut m = Model::new(RAND_SLOTS);
    let mut ops = 0u64;
    while ctx.running() {
        let now = Instant::now();
        if let Some(kind) = rc.due(now) {
            if kind == Reconnect::DropInflight {
                let i = (rng.next_u64() % RAND_SLOTS) as usize;
                if m.writable(i, now) {
                    let data = pattern(rng.next_u64(), SMALL_IO);
                    let cdb = rw10(WRITE10, reg.lba(i), reg.blocks(), false);
                    s.drop_inflight(ctx, &cdb, &data, 0);
                    m.set(i, Slot::Quarantined(now + QUARANTINE));
                }
            } else {
                s.reconnect_plain(ctx, kind);
            }
        }
        let i = (rng.next_u64() % RAND_SLOTS) as usize;
        let r = rng.next_u64();
        if r.is_multiple_of(2) {
            if m.writable(i, now) {
                let fua = r.is_multiple_of(16);
                write_slot(&mut s, ctx, &mut m, reg, i, rng.next_u64(), fua);
            }
        } else {
            read_verify(&mut s, ctx, &m, reg, i, "random read");
        }
        ops += 1;
        if ops.is_multiple_of(SYNC_EVERY)
            && s.good(ctx, "SYNCHRONIZE CACHE", &SYNCHRONIZE_CACHE10, &[], 0)
                .is_some()
        {
            ctx.add(K::SyncCache, 1);
        }
        pace(ctx);
    }
    s.logout(ctx);
}

/// Sequential 1 MiB write passes over `SEQ_CHUNKS` chunks from byte `first_byte`, each
/// followed by a verifying read pass.
fn seq1m(ctx: &Ctx, mut s: Session, first_byte: u64, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let mut rc = Reconnector::new(Duration::from_secs(ctx.opts.reconnect_secs), seed ^ 1);
    let Some((bs, _)) = s.capacity(ctx) else {
        return;
    };
    let blocks = (LARGE_IO / bs as usize) as u32;
    let lba = |c: u64| first_byte / u64::from(bs) + c * u64::from(blocks);
    let mut written: Vec<Option<u64>> = vec![None; SEQ_CHUNKS as usize];
    'passes: while ctx.running() {
        for c in 0..SEQ_CHUNKS {
            if !ctx.running() {
                break 'passes;
            }
            if let Some(kind) = rc.due(Instant::now()) {
                s.reconnect_plain(ctx, kind);
            }
            let seed = rng.next_u64();
            let fua = c % 8 == 7;
            let data = pattern(seed, LARGE_IO);
            let what = format!("sequential WRITE(10) LBA {}", lba(c));
            written[c as usize] = s
                .good(ctx, &what, &rw10(WRITE10, lba(c), blocks, fua), &data, 0)
                .map(|_| seed);
            if written[c as usize].is_some() {
                ctx.add(K::Write1m, 1);
                ctx.add(K::FuaWrites, u64::from(fua));
            }
        }
        if s.good(ctx, "SYNCHRONIZE CACHE", &SYNCHRONIZE_CACHE10, &[], 0)
            .is_some()
        {
            ctx.add(K::SyncCache, 1);
        }
        for c in 0..SEQ_CHUNKS {
            if !ctx.running() {
                break 'passes;
            }
            let what = format!("sequential READ(10) LBA {}", lba(c));
            let Some(d) = s.good(
                ctx,
                &what,
                &rw10(READ10, lba(c), blocks, false),
                &[],
                LARGE_IO,
            ) else {
                continue;
            };
            ctx.add(K::Read1m, 1);
            if let Some(seed) = written[c as usize] {
                if let Some(at) = first_difference(&d, &pattern(seed, LARGE_IO)) {
                    ctx.error(
                        &s.worker,
                        format!("{what}: differs from the write at byte {at}"),
                    );
                } else {
                    ctx.verified(LARGE_IO);
                }
            }
            pace(ctx);
        }
    }
    s.logout(ctx);
}

/// 1 MiB writes and reads on a null LU, whose reads return zeros.
fn null1m(ctx: &Ctx, mut s: Session, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let mut rc = Reconnector::new(Duration::from_secs(ctx.opts.reconnect_secs), seed ^ 1);
    let Some((bs, _)) = s.capacity(ctx) else {
        return;
    };
    let blocks = (LARGE_IO / bs as usize) as u32;
    let data = pattern(seed, LARGE_IO);
    let zeros = vec![0u8; LARGE_IO];
    while ctx.running() {
        if let Some(kind) = rc.due(Instant::now()) {
            s.reconnect_plain(ctx, kind);
        }
        let lba = (rng.next_u64() % NULL_CHUNKS) * u64::from(blocks);
        if s.good(
            ctx,
            "null WRITE(10)",
            &rw10(WRITE10, lba, blocks, false),
            &data,
            0,
        )
        .is_some()
        {
            ctx.add(K::Write1m, 1);
        }
        let lba = (rng.next_u64() % NULL_CHUNKS) * u64::from(blocks);
        if let Some(d) = s.good(
            ctx,
            "null READ(10)",
            &rw10(READ10, lba, blocks, false),
            &[],
            LARGE_IO,
        ) {
            ctx.add(K::Read1m, 1);
            if d != zeros {
                ctx.error(&s.worker, format!("null READ(10) LBA {lba}: not zeros"));
            } else {
                ctx.verified(LARGE_IO);
            }
        }
        pace(ctx);
    }
    s.logout(ctx);
}

/// A TMF request with a fresh ITT, the current CmdSN and ExpStatSN, immediate (RFC 7143
/// 11.5). `rtt` and `ref_cmd_sn` matter for ABORT TASK only.
fn tmf_pdu(c: &mut Conn, function: u8, lun: u64, rtt: u32, ref_cmd_sn: u32) -> Pdu {
    // A ping PDU carries exactly the sequence numbers an immediate request needs.
    let ping = c.ping_pdu(&[]);
    let mut p = Pdu::new(tmf::REQUEST | IMMEDIATE, FINAL | function);
    p.set_lun(lun);
    p.set_u32(16, ping.itt());
    p.set_u32(20, rtt);
    p.set_u32(24, ping.u32_at(24));
    p.set_u32(28, ping.u32_at(28));
    p.set_u32(32, ref_cmd_sn);
    p
}

/// Reads PDUs until the response to TMF `tmf_itt`. PDUs of the tasks in `tasks` may come
/// first (R2T, Data-In, status); anything else is an error. Returns the TMF response code
/// and how many of those tasks got a status.
fn await_tmf(c: &mut Conn, tmf_itt: u32, tasks: &[u32]) -> Result<(u8, usize), String> {
    let mut statuses = 0;
    for _ in 0..MAX_PDUS_PER_TMF {
        let p = c
            .recv_response()
            .map_err(|e| format!("waiting for the TMF response: {e}"))?;
        let ours = tasks.contains(&p.itt());
        match p.opcode() {
            tmf::RESPONSE if p.itt() == tmf_itt => return Ok((p.bhs[2], statuses)),
            op::R2T if ours => {}
            op::DATA_IN if ours => statuses += usize::from(p.flags() & 0x01 != 0),
            op::SCSI_RESPONSE if ours => statuses += 1,
            o => {
                return Err(format!(
                    "opcode {o:#04x} (itt {:#x}) while waiting for the TMF response",
                    p.itt()
                ));
            }
        }
    }
    Err(format!("no TMF response within {MAX_PDUS_PER_TMF} PDUs"))
}

/// The TMF worker: one step every [`TMF_EVERY`], verified random I/O in between.
fn tmf_worker(ctx: &Ctx, mut s: Session, mut race: Session, first_slot: u64, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let mut rc = Reconnector::new(Duration::from_secs(ctx.opts.reconnect_secs), seed ^ 1);
    let Some((bs, _)) = s.capacity(ctx) else {
        return;
    };
    if race.capacity(ctx).is_none() {
        return;
    }
    let reg = Region::new(first_slot, bs);
    let mut m = Model::new(TMF_SLOTS);
    let mut step = 0usize;
    let mut next = Instant::now();
    while ctx.running() {
        let now = Instant::now();
        if let Some(kind) = rc.due(now) {
            s.reconnect_plain(ctx, kind);
        }
        let i = (rng.next_u64() % TMF_SLOTS) as usize;
        if rng.next_u64().is_multiple_of(2) {
            write_slot(&mut s, ctx, &mut m, reg, i, rng.next_u64(), false);
        } else {
            read_verify(&mut s, ctx, &m, reg, i, "tmf read");
        }
        if now >= next {
            next = now + TMF_EVERY;
            let t = Tmf { ctx, reg };
            let i = (rng.next_u64() % TMF_SLOTS) as usize;
            let j = (i + 1 + (rng.next_u64() % (TMF_SLOTS - 1)) as usize) % TMF_SLOTS as usize;
            match step % 5 {
                0 => t.abort_waiting_write(&mut s, &m, i),
                1 => t.abort_racing_read(&mut race),
                2 => t.abort_task_set(&mut s, &m, i, j),
                3 => t.lun_reset(&mut s),
                _ => t.compare_and_write(&mut s, &mut m, i, rng.next_u64()),
            }
            step += 1;
        }
        pace(ctx);
    }
    s.logout(ctx);
    race.logout(ctx);
}

struct Tmf<'a> {
    ctx: &'a Ctx,
    reg: Region,
}

impl Tmf<'_> {
    fn blocks(&self) -> u32 {
        self.reg.blocks()
    }

    fn lba(&self, i: usize) -> u64 {
        self.reg.lba(i)
    }

    /// Clears any unit attention first, so the commands below are not answered with one.
    fn ready<'s>(&self, s: &'s mut Session) -> Option<&'s mut Conn> {
        s.good(self.ctx, "TEST UNIT READY", &TEST_UNIT_READY, &[], 0)?;
        s.conn(self.ctx)
    }

    /// Sends a WRITE of slot `i` without data: with InitialR2T=Yes and ImmediateData=No it
    /// waits for its Data-Out after an R2T. Returns (ITT, CmdSN).
    fn write_waiting(&self, c: &mut Conn, lun: u64, i: usize) -> Result<(u32, u32), String> {
        let cdb = rw10(WRITE10, self.lba(i), self.blocks(), false);
        let p = c.scsi_header(lun, &cdb, SMALL_IO as u32, 0);
        c.send(&p).map_err(|e| format!("sending WRITE: {e}"))?;
        Ok((p.itt(), p.u32_at(24)))
    }

    /// Ends a step: a ping must come back (no stray PDU of an aborted task before it).
    fn finish(&self, s: &mut Session, what: &str, r: Result<(), String>) -> Option<()> {
        let r = r.and_then(|()| {
            let c = s.conn.as_mut().ok_or("connection gone")?;
            c.ping(b"soak")
                .map(drop)
                .map_err(|e| format!("ping after it: {e}"))
        });
        match r {
            Ok(()) => Some(()),
            Err(e) => {
                self.ctx.error(&s.worker, format!("{what}: {e}"));
                s.conn = None;
                None
            }
        }
    }

    /// ABORT TASK of a WRITE that waits for its data: function complete, no status for the
    /// write, and the slot unchanged (SAM-5 7.2).
    fn abort_waiting_write(&self, s: &mut Session, m: &Model, i: usize) {
        let lun = s.lun;
        let Some(c) = self.ready(s) else { return };
        let r = (|| {
            let (itt, cmd_sn) = self.write_waiting(c, lun, i)?;
            let r2t = c
                .recv_response()
                .map_err(|e| format!("waiting for R2T: {e}"))?;
            if r2t.opcode() != op::R2T || r2t.itt() != itt {
                return Err(format!(
                    "expected R2T for the WRITE, got opcode {:#04x}",
                    r2t.opcode()
                ));
            }
            let t = tmf_pdu(c, tmf::ABORT_TASK, lun, itt, cmd_sn);
            c.send(&t).map_err(|e| format!("sending ABORT TASK: {e}"))?;
            match await_tmf(c, t.itt(), &[itt])? {
                (tmf::COMPLETE, 0) => Ok(()),
                (resp, st) => Err(format!(
                    "response {resp}, {st} statuses for the aborted WRITE"
                )),
            }
        })();
        if self.finish(s, "ABORT TASK of a waiting WRITE", r).is_some() {
            self.ctx.add(K::AbortTaskWaiting, 1);
            read_verify(s, self.ctx, m, self.reg, i, "after ABORT TASK");
        }
    }

    /// ABORT TASK sent right behind a READ on `s`, a session to the file LU (its reads go through
    /// io_uring and really are in flight for a moment, unlike a RAM LU's): either the READ was aborted (function complete,
    /// no status) or it finished first (its status, then function complete or task does not
    /// exist, RFC 7143 11.6.1).
    fn abort_racing_read(&self, s: &mut Session) {
        let (lun, bs) = (s.lun, s.block_size);
        let Some(c) = self.ready(s) else { return };
        let mut completed = false;
        let r = (|| {
            // From the start of the LU: a read changes nothing of another worker's data.
            let cdb = rw10(READ10, 0, (RACE_READ / bs as usize) as u32, false);
            let p = c.scsi_header(lun, &cdb, 0, RACE_READ as u32);
            let t = tmf_pdu(c, tmf::ABORT_TASK, lun, p.itt(), p.u32_at(24));
            let mut both = p.encode(c.digests().0, c.digests().1);
            both.extend(t.encode(c.digests().0, c.digests().1));
            c.send_bytes(&both)
                .map_err(|e| format!("sending READ + ABORT TASK: {e}"))?;
            match await_tmf(c, t.itt(), &[p.itt()])? {
                (tmf::COMPLETE, 0) => Ok(()),
                (tmf::COMPLETE | tmf::NO_TASK, 1) => {
                    completed = true;
                    Ok(())
                }
                (resp, st) => Err(format!("response {resp} with {st} statuses for the READ")),
            }
        })();
        if self.finish(s, "ABORT TASK of a racing READ", r).is_some() {
            let k = if completed {
                K::AbortTaskRaceCompleted
            } else {
                K::AbortTaskRaceAborted
            };
            self.ctx.add(k, 1);
        }
    }

    /// ABORT TASK SET with two WRITEs waiting for data: both end without status, the slots
    /// keep their data.
    fn abort_task_set(&self, s: &mut Session, m: &Model, i: usize, j: usize) {
        let lun = s.lun;
        let Some(c) = self.ready(s) else { return };
        let r = (|| {
            let (a, _) = self.write_waiting(c, lun, i)?;
            let (b, _) = self.write_waiting(c, lun, j)?;
            let t = tmf_pdu(c, tmf::ABORT_TASK_SET, lun, RESERVED_TAG, 0);
            c.send(&t)
                .map_err(|e| format!("sending ABORT TASK SET: {e}"))?;
            match await_tmf(c, t.itt(), &[a, b])? {
                (tmf::COMPLETE, 0) => Ok(()),
                (resp, st) => Err(format!(
                    "response {resp}, {st} statuses for the aborted WRITEs"
                )),
            }
        })();
        if self.finish(s, "ABORT TASK SET", r).is_some() {
            self.ctx.add(K::AbortTaskSet, 1);
            read_verify(s, self.ctx, m, self.reg, i, "after ABORT TASK SET");
            read_verify(s, self.ctx, m, self.reg, j, "after ABORT TASK SET");
        }
    }

    /// LOGICAL UNIT RESET while `rand4k-b` uses the same LU: function complete; both nexuses
    /// then see one unit attention (absorbed by [`Session::cmd`]).
    fn lun_reset(&self, s: &mut Session) {
        let lun = s.lun;
        let Some(c) = self.ready(s) else { return };
        let r = (|| {
            let t = tmf_pdu(c, tmf::LOGICAL_UNIT_RESET, lun, RESERVED_TAG, 0);
            c.send(&t)
                .map_err(|e| format!("sending LOGICAL UNIT RESET: {e}"))?;
            match await_tmf(c, t.itt(), &[])? {
                (tmf::COMPLETE, _) => Ok(()),
                (resp, _) => Err(format!("response {resp}")),
            }
        })();
        if self.finish(s, "LOGICAL UNIT RESET", r).is_some() {
            self.ctx.add(K::LunResets, 1);
        }
    }

    /// COMPARE AND WRITE of slot `i`: with the right compare data it writes (GOOD, then
    /// reads back); with wrong compare data it is MISCOMPARE and writes nothing (SBC-3 5.2).
    fn compare_and_write(&self, s: &mut Session, m: &mut Model, i: usize, seed: u64) {
        let Some(old) = m.expected(i) else { return };
        let blocks = self.blocks() as u8;
        let new = pattern(seed, SMALL_IO);
        let what = format!("COMPARE AND WRITE LBA {}", self.lba(i));
        let mut out = old.clone();
        out.extend_from_slice(&new);
        let Some(r) = s.cmd(
            self.ctx,
            &what,
            &compare_and_write(self.lba(i), blocks),
            &out,
            0,
        ) else {
            m.set(i, Slot::Unknown);
            return;
        };
        if !r.is_good() {
            self.ctx.error(
                &s.worker,
                format!(
                    "{what}: status {:#04x} sense {:?}",
                    r.status,
                    r.sense_triple()
                ),
            );
            m.set(i, Slot::Unknown);
            return;
        }
        m.set(i, Slot::Data(seed));
        self.ctx.add(K::CompareAndWrite, 1);
        // The compare half is now stale: the LU must refuse and keep the new data.
        let mut wrong = old;
        wrong.extend_from_slice(&pattern(seed ^ 0x5a5a, SMALL_IO));
        if let Some(r) = s.cmd(
            self.ctx,
            &what,
            &compare_and_write(self.lba(i), blocks),
            &wrong,
            0,
        ) {
            match r.sense_triple() {
                Some((MISCOMPARE, 0x1d, 0)) if r.status == CHECK_CONDITION => {
                    self.ctx.add(K::Miscompares, 1)
                }
                t => self.ctx.error(
                    &s.worker,
                    format!("{what} with stale compare data: status {:#04x} sense {t:?}, expected MISCOMPARE", r.status),
                ),
            }
        }
        read_verify(s, self.ctx, m, self.reg, i, "after COMPARE AND WRITE");
    }
}

/// Discovery every [`DISCOVERY_EVERY`] and a reservation cycle every [`PR_EVERY`].
fn misc(ctx: &Ctx, chap: ChapLogin, seed: u64) {
    let b = ctx.opts.target_b.clone();
    let mut holder = Session::new("pr-holder", &b, 10, Some(chap.clone()), 1);
    let mut other = Session::new("pr-other", &b, 11, Some(chap), 1);
    let mut rc = Reconnector::new(Duration::from_secs(ctx.opts.reconnect_secs), seed);
    let (mut next_disc, mut next_pr) = (Instant::now(), Instant::now() + PR_EVERY / 2);
    let key = 0x50a4_0000_0000_0000 | (seed & 0xffff_ffff);
    while ctx.running() {
        let now = Instant::now();
        if now >= next_disc {
            next_disc = now + DISCOVERY_EVERY;
            discovery(ctx);
        }
        if now >= next_pr {
            next_pr = now + PR_EVERY;
            if reservation_cycle(ctx, &mut holder, &mut other, key).is_some() {
                ctx.add(K::PrCycles, 1);
            }
        }
        if let Some(kind) = rc.due(now) {
            holder.reconnect_plain(ctx, kind);
            other.reconnect_plain(ctx, kind);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    holder.logout(ctx);
    other.logout(ctx);
}

/// A discovery session: SendTargets=All must list both targets.
fn discovery(ctx: &Ctx) {
    let opts = LoginOptions::discovery("iqn.2026-11.org.esos:soak-discovery");
    let r = Conn::login(ctx.opts.portal, &opts).and_then(|mut c| {
        let keys = c.send_targets()?;
        c.logout()?;
        Ok(keys)
    });
    match r {
        Ok(keys) => {
            let has = |t: &str| keys.iter().any(|(k, v)| k == "TargetName" && v == t);
            if has(&ctx.opts.target_a) && has(&ctx.opts.target_b) {
                ctx.add(K::Discoveries, 1);
            } else {
                ctx.error(
                    "discovery",
                    format!("SendTargets misses a target: {keys:?}"),
                );
            }
        }
        Err(e) => ctx.error("discovery", e),
    }
}

/// REGISTER, RESERVE (Write Exclusive), READ RESERVATION, the other nexus' WRITE gets
/// RESERVATION CONFLICT and its READ is allowed, RELEASE, the other nexus writes, unregister
/// and READ KEYS shows none (SPC-4 5.9).
fn reservation_cycle(ctx: &Ctx, h: &mut Session, o: &mut Session, key: u64) -> Option<()> {
    let blocks = 1;
    let data = pattern(key, 512);
    let (cdb, p) = pr_out(pr::REGISTER_AND_IGNORE, 0, 0, key);
    h.good(ctx, "PR OUT REGISTER AND IGNORE EXISTING KEY", &cdb, &p, 0)?;
    let (cdb, p) = pr_out(pr::RESERVE, pr::WRITE_EXCLUSIVE, key, 0);
    h.good(ctx, "PR OUT RESERVE", &cdb, &p, 0)?;
    let d = h.good(
        ctx,
        "PR IN READ RESERVATION",
        &pr_in(pr::READ_RESERVATION),
        &[],
        256,
    )?;
    if d.len() < 24 || d[8..16] != key.to_be_bytes() || d[21] & 0x0f != pr::WRITE_EXCLUSIVE {
        ctx.error(
            &h.worker,
            format!("READ RESERVATION does not show our reservation: {d:02x?}"),
        );
        return None;
    }
    let w = o.cmd(
        ctx,
        "WRITE(10) of a non-holder",
        &rw10(WRITE10, 0, blocks, false),
        &data,
        0,
    )?;
    if w.status == RESERVATION_CONFLICT {
        ctx.add(K::ReservationConflicts, 1);
    } else {
        ctx.error(&o.worker, format!("WRITE under another's Write Exclusive: status {:#04x}, expected RESERVATION CONFLICT", w.status));
    }
    o.good(
        ctx,
        "READ(10) of a non-holder",
        &rw10(READ10, 0, blocks, false),
        &[],
        512,
    )?;
    h.good(
        ctx,
        "WRITE(10) of the holder",
        &rw10(WRITE10, 0, blocks, false),
        &data,
        0,
    )?;
    let (cdb, p) = pr_out(pr::RELEASE, pr::WRITE_EXCLUSIVE, key, 0);
    h.good(ctx, "PR OUT RELEASE", &cdb, &p, 0)?;
    o.good(
        ctx,
        "WRITE(10) after RELEASE",
        &rw10(WRITE10, 0, blocks, false),
        &data,
        0,
    )?;
    let (cdb, p) = pr_out(pr::REGISTER_AND_IGNORE, 0, 0, 0);
    h.good(ctx, "PR OUT unregister", &cdb, &p, 0)?;
    let d = h.good(ctx, "PR IN READ KEYS", &pr_in(pr::READ_KEYS), &[], 256)?;
    if d.len() < 8 || d[4..8] != [0, 0, 0, 0] {
        ctx.error(
            &h.worker,
            format!("READ KEYS after unregistering: {d:02x?}"),
        );
        return None;
    }
    Some(())
}

// ---------------------------------------------------------------------------------------

fn main() {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("esos-soak: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        deadline: start + Duration::from_secs(opts.seconds),
        start,
        counts: std::array::from_fn(|_| AtomicU64::new(0)),
        verified_bytes: AtomicU64::new(0),
        opts,
    });
    let o = &ctx.opts;
    eprintln!(
        "esos-soak: {} s against {} ({}, {}), seed {}, reconnect every ~{} s",
        o.seconds, o.portal, o.target_a, o.target_b, o.seed, o.reconnect_secs
    );
    let chap = ChapLogin::new(&o.chap_user, &o.chap_secret);
    let (a, b, seed) = (o.target_a.clone(), o.target_b.clone(), o.seed);

    type Job = Box<dyn FnOnce(&Ctx) + Send>;
    let mut jobs: Vec<(&str, Job)> = Vec::new();
    {
        let a2 = a.clone();
        jobs.push((
            "rand4k-a1",
            Box::new(move |c| {
                rand4k(
                    c,
                    Session::new("rand4k-a1", &a2, 1, None, 0),
                    0,
                    seed ^ 0x11,
                )
            }),
        ));
    }
    {
        // The same load with header and data digests.
        let a2 = a.clone();
        jobs.push((
            "rand4k-a2",
            Box::new(move |c| {
                let mut s = Session::new("rand4k-a2", &a2, 2, None, 0);
                s.opts = s.opts.clone().digests();
                rand4k(c, s, RAND_SLOTS, seed ^ 0x22)
            }),
        ));
    }
    {
        let a2 = a.clone();
        let first = 2 * RAND_SLOTS * SMALL_IO as u64;
        jobs.push((
            "seq1m",
            Box::new(move |c| {
                seq1m(
                    c,
                    Session::new("seq1m", &a2, 3, None, 0),
                    first,
                    seed ^ 0x33,
                )
            }),
        ));
    }
    jobs.push((
        "null1m",
        Box::new({
            let a = a.clone();
            move |c| null1m(c, Session::new("null1m", &a, 4, None, 1), seed ^ 0x44)
        }),
    ));
    {
        let (b2, ch) = (b.clone(), chap.clone());
        jobs.push((
            "rand4k-b",
            Box::new(move |c| {
                rand4k(
                    c,
                    Session::new("rand4k-b", &b2, 5, Some(ch), 0),
                    0,
                    seed ^ 0x55,
                )
            }),
        ));
    }
    {
        let (ch, a3) = (chap.clone(), a.clone());
        jobs.push((
            "tmf",
            Box::new(move |c| {
                let mut s = Session::new("tmf", &b, 6, Some(ch), 0);
                // Writes wait for an R2T, so there is always a task to abort.
                s.opts.immediate_data = false;
                s.opts.initial_r2t = true;
                let race = Session::new("tmf-race", &a3, 7, None, 0);
                tmf_worker(c, s, race, RAND_SLOTS, seed ^ 0x66)
            }),
        ));
    }
    jobs.push(("misc", Box::new(move |c| misc(c, chap, seed ^ 0x77))));

    let mut handles = Vec::new();
    for (name, job) in jobs {
        let c = ctx.clone();
        let h = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || job(&c))
            .expect("spawn worker");
        handles.push((name, h));
    }
    let mut next_progress = start + PROGRESS_EVERY;
    while handles.iter().any(|(_, h)| !h.is_finished()) {
        if Instant::now() > ctx.deadline + JOIN_GRACE {
            for (name, h) in &handles {
                if !h.is_finished() {
                    ctx.error(
                        name,
                        "still running a minute after the deadline (hung command?)",
                    );
                }
            }
            break;
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            let line: Vec<String> = [
                K::Read4k,
                K::Write4k,
                K::Read1m,
                K::Write1m,
                K::Logins,
                K::LunResets,
                K::Errors,
            ]
            .iter()
            .map(|k| format!("{}={}", k.name(), ctx.get(*k)))
            .collect();
            eprintln!("soak: [{:7.1}s] {}", ctx.secs(), line.join(" "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, h) in handles {
        if h.is_finished() && h.join().is_err() {
            ctx.error(name, "worker panicked");
        }
    }
    let summary = format!(
        "seconds={:.0}\nseed={}\n{}",
        ctx.secs(),
        ctx.opts.seed,
        ctx.summary()
    );
    print!("{summary}");
    if let Some(path) = &ctx.opts.out {
        let written = std::fs::File::create(path).and_then(|mut f| f.write_all(summary.as_bytes()));
        if let Err(e) = written {
            eprintln!("esos-soak: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    std::process::exit(if ctx.get(K::Errors) == 0 { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_parse_and_are_required() {
        let o = parse_args(args(
            "--portal 127.0.0.1:3999 --target-a a --target-b b --chap-user u --chap-secret s \
             --seconds 60 --seed 7 --reconnect-secs 0",
        ))
        .unwrap();
        assert_eq!((o.portal.port(), o.seconds, o.seed), (3999, 60, 7));
        assert_eq!(
            o.reconnect_secs, 1,
            "a zero interval is raised to one second"
        );
        assert!(
            parse_args(args("--target-a a"))
                .unwrap_err()
                .contains("--portal")
        );
        assert!(
            parse_args(args("--portal x"))
                .unwrap_err()
                .contains("not an address")
        );
        assert!(
            parse_args(args("--seconds"))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse_args(args("--bogus 1"))
                .unwrap_err()
                .contains("unknown")
        );
    }

    #[test]
    fn model_tracks_acknowledged_writes_and_quarantines() {
        let mut m = Model::new(3);
        let now = Instant::now();
        assert_eq!(m.expected(0), None);
        m.set(1, Slot::Data(9));
        assert_eq!(m.expected(1), Some(pattern(9, SMALL_IO)));
        m.set(2, Slot::Quarantined(now + Duration::from_secs(5)));
        assert!(!m.writable(2, now));
        assert_eq!(m.expected(2), None);
        assert!(m.writable(2, now + Duration::from_secs(6)));
        assert_eq!(
            m.slots[2],
            Slot::Unknown,
            "an ended quarantine leaves the slot unknown"
        );
    }

    #[test]
    fn reconnects_cycle_through_every_kind_within_the_jitter() {
        let mean = Duration::from_secs(10);
        let mut r = Reconnector::new(mean, 3);
        let mut t = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..8 {
            let gap = r.next - t;
            assert!(gap <= mean * 3 / 2 + Duration::from_millis(50), "{gap:?}");
            assert_eq!(r.due(r.next - Duration::from_millis(1)), None);
            t = r.next;
            seen.push(r.due(t).unwrap());
            assert!(r.next - t >= mean / 2);
        }
        assert_eq!(seen[..4], RECONNECT_ORDER);
        assert_eq!(seen[4..], RECONNECT_ORDER);
    }

    #[test]
    fn cdbs_have_their_fields_where_sbc_puts_them() {
        assert_eq!(
            rw10(WRITE10, 0x0102_0304, 8, true),
            [0x2a, 0x08, 1, 2, 3, 4, 0, 0, 8, 0]
        );
        let c = compare_and_write(0x0a0b, 8);
        assert_eq!(
            (c[0], &c[2..10], c[13]),
            (0x89, &[0, 0, 0, 0, 0, 0, 0x0a, 0x0b][..], 8)
        );
        let (cdb, p) = pr_out(pr::RESERVE, pr::WRITE_EXCLUSIVE, 5, 6);
        assert_eq!((cdb[1], cdb[2], cdb[8]), (1, 1, 24));
        assert_eq!((p[7], p[15]), (5, 6));
    }

    #[test]
    fn first_difference_finds_the_byte_or_the_length() {
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(first_difference(b"abc", b"abc"), None);
    }
}
