//! The load whose history [`super::history`] checks: K workers, each with its own iSCSI
//! session to whichever node serves the LU, writing self-describing blocks with FUA and
//! reading them back, recording every operation.
//!
//! Workers run as threads of the test process inside the client namespace
//! ([`super::netns::enter_ns`]). A worker that gets no answer (the connection died or timed
//! out) or a NOT READY (a standby or transitioning path, an unavailable replica) records the
//! outcome and logs in again on whichever portal answers TEST UNIT READY with GOOD, trying
//! every node's portal in turn. Half of each worker's operations go to an LBA range shared by
//! all workers, half to a range of its own. Bounded by an operation count and a deadline;
//! seeded, so a run can be replayed (`ESOS_E2E_SEED`).

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::history::{BLOCK_BYTES, Content, Op, OpKind, Outcome, WriteId, decode_block};
use super::netns::enter_ns;
use crate::client::{CHECK_CONDITION, Conn, LoginOptions, ScsiResult};
use crate::data::SplitMix64;

/// TCP connect timeout of a worker: a partitioned node must not hold a worker for long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Socket read timeout of a worker's session: past it the operation's outcome is unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two rounds over the portals while no node serves the LU.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Most TEST UNIT READYs that absorb unit attentions after a login.
const MAX_UA_ROUNDS: usize = 6;
/// Most workers of one workload.
pub const MAX_WORKERS: u32 = 32;

/// What the workload does.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// The client namespace the workers enter (`None`: stay in the test's namespace).
    pub netns: Option<String>,
    /// Every node's portal; workers use whichever serves the LU.
    pub portals: Vec<SocketAddr>,
    pub target: String,
    pub lun: u64,
    pub workers: u32,
    /// Blocks of `BLOCK_BYTES` the workload uses, from LBA 0.
    pub blocks: u64,
    /// The first `shared_blocks` are written by every worker; the rest are split between
    /// the workers.
    pub shared_blocks: u64,
    /// Largest write or read, in blocks.
    pub max_op_blocks: u32,
    /// Percentage of operations that are reads.
    pub read_percent: u64,
    pub seed: u64,
    /// Most operations per worker.
    pub max_ops_per_worker: u64,
    /// The workload stops by itself after this long.
    pub max_duration: Duration,
    /// Worker `w` writes as writer `writer_base + w`: workloads run one after the other on
    /// one LU (the soak's cycles) keep their writes apart.
    pub writer_base: u32,
}

impl WorkloadConfig {
    /// Four workers on 4096 blocks of 4 KiB, a quarter of them shared, 30 % reads.
    pub fn new(portals: Vec<SocketAddr>, target: &str, seed: u64) -> Self {
        WorkloadConfig {
            netns: None,
            portals,
            target: target.to_owned(),
            lun: 0,
            workers: 4,
            blocks: 4096,
            shared_blocks: 1024,
            max_op_blocks: 4,
            read_percent: 30,
            seed,
            max_ops_per_worker: 1_000_000,
            max_duration: Duration::from_secs(120),
            writer_base: 0,
        }
    }
}

/// Progress the test can watch while the workload runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Successful operations so far.
    pub ok_ops: AtomicU64,
    /// Nanoseconds (from the epoch) of the last successful operation.
    pub last_ok_ns: AtomicU64,
    /// Portal index of the last successful operation.
    pub last_portal: AtomicU64,
}

/// A running workload.
pub struct Workload {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Op>>>,
    pub progress: Arc<Progress>,
    pub epoch: Instant,
    pub cfg: WorkloadConfig,
}

impl Workload {
    /// Starts the workers; they run until [`Workload::stop`], their operation bound or the
    /// deadline.
    pub fn start(cfg: WorkloadConfig) -> Workload {
        Self::start_at(cfg, Instant::now())
    }

    /// Like [`Workload::start`] with times counted from `epoch`, so the histories of
    /// workloads run one after the other can be checked as one.
    pub fn start_at(cfg: WorkloadConfig, epoch: Instant) -> Workload {
        assert!(cfg.workers > 0 && cfg.workers <= MAX_WORKERS);
        assert!(cfg.shared_blocks < cfg.blocks && cfg.max_op_blocks >= 1);
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let workers = (0..cfg.workers)
            .map(|w| {
                let worker = Worker {
                    id: cfg.writer_base + w,
                    slot: w,
                    cfg: cfg.clone(),
                    rng: SplitMix64::new(cfg.seed ^ (u64::from(w) + 1).wrapping_mul(0x9e37)),
                    stop: stop.clone(),
                    progress: progress.clone(),
                    epoch,
                    conn: None,
                    portal: 0,
                    next_op: 1,
                    ops: Vec::new(),
                };
                std::thread::Builder::new()
                    .name(format!("ha-worker-{w}"))
                    .spawn(move || worker.run())
                    .expect("spawn worker")
            })
            .collect();
        Workload {
            stop,
            workers,
            progress,
            epoch,
            cfg,
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Waits at most `timeout` until `n` more operations succeeded than when called.
    pub fn wait_progress(&self, n: u64, timeout: Duration) -> bool {
        let start = self.progress.ok_ops.load(Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.progress.ok_ops.load(Ordering::Relaxed) >= start + n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the workers and returns the history, ordered by invocation.
    pub fn stop(self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        let mut ops: Vec<Op> = self
            .workers
            .into_iter()
            .flat_map(|h| h.join().expect("worker panicked"))
            .collect();
        ops.sort_by_key(|o| o.invoke_ns);
        ops
    }
}

struct Worker {
    /// Writer id of this worker's blocks.
    id: u32,
    /// Index among the workload's workers: which private range it uses.
    slot: u32,
    cfg: WorkloadConfig,
    rng: SplitMix64,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    epoch: Instant,
    conn: Option<Session>,
    portal: usize,
    next_op: u64,
    ops: Vec<Op>,
}

/// What one command's answer means for the worker.
enum Answer {
    Good(ScsiResult),
    /// A definite error; `reconnect` when this path does not serve the LU.
    Failed {
        reconnect: bool,
    },
    /// No answer.
    Lost,
}

fn classify(r: crate::client::Result<ScsiResult>) -> Answer {
    match r {
        Ok(r) if r.is_good() => Answer::Good(r),
        Ok(r) if r.status == CHECK_CONDITION => {
            // UNIT ATTENTION: the command was not run, the path is fine.
            let reconnect = !matches!(r.sense_triple(), Some((6, _, _)));
            Answer::Failed { reconnect }
        }
        // BUSY, TASK SET FULL, RESERVATION CONFLICT: try again later on the same path.
        Ok(_) => Answer::Failed { reconnect: false },
        Err(_) => Answer::Lost,
    }
}

impl Worker {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn run(mut self) -> Vec<Op> {
        if let Some(ns) = &self.cfg.netns
            && let Err(e) = enter_ns(ns)
        {
            panic!("worker {}: cannot enter namespace {ns}: {e}", self.id);
        }
        let deadline = Instant::now() + self.cfg.max_duration;
        let mut done = 0u64;
        while !self.stop.load(Ordering::Relaxed)
            && Instant::now() < deadline
            && done < self.cfg.max_ops_per_worker
        {
            if self.conn.is_none() && !self.connect(deadline) {
                std::thread::sleep(RECONNECT_PAUSE);
                continue;
            }
            self.one_op();
            done += 1;
        }
        if let Some(c) = self.conn.take() {
            c.logout();
        }
        self.ops
    }

    /// Logs in on the first portal (starting with the last good one) whose LU answers TEST
    /// UNIT READY with GOOD.
    fn connect(&mut self, deadline: Instant) -> bool {
        let n = self.cfg.portals.len();
        for k in 0..n {
            if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                return false;
            }
            let i = (self.portal + k) % n;
            if let Some(c) = try_portal(self.cfg.portals[i], &self.cfg.target, self.cfg.lun) {
                self.conn = Some(c);
                self.portal = i;
                return true;
            }
        }
        false
    }

    fn pick_range(&mut self) -> (u64, u32) {
        let blocks = 1 + (self.rng.next_u64() % u64::from(self.cfg.max_op_blocks)) as u32;
        let own = (self.cfg.blocks - self.cfg.shared_blocks) / u64::from(self.cfg.workers);
        let (start, len) = if self.rng.next_u64().is_multiple_of(2) || own < u64::from(blocks) {
            (0, self.cfg.shared_blocks)
        } else {
            (self.cfg.shared_blocks + own * u64::from(self.slot), own)
        };
        let len = len.max(u64::from(blocks));
        let lba = start + self.rng.next_u64() % (len - u64::from(blocks) + 1);
        (lba, blocks)
    }

    fn one_op(&mut self) {
        let (lba, blocks) = self.pick_range();
        let read = self.rng.next_u64() % 100 < self.cfg.read_percent;
        let conn = self.conn.as_mut().expect("connected");
        let (kind, invoke, answer);
        if read {
            invoke = self.epoch.elapsed().as_nanos() as u64;
            let r = conn.read(lba, blocks);
            answer = classify(r);
            let contents = match &answer {
                Answer::Good(r) if r.data.len() == blocks as usize * BLOCK_BYTES => r
                    .data
                    .chunks(BLOCK_BYTES)
                    .enumerate()
                    .map(|(i, b)| decode_block(b, lba + i as u64))
                    .collect(),
                // A short read is torn data as far as the checker is concerned.
                Answer::Good(_) => vec![Content::Torn; blocks as usize],
                _ => Vec::new(),
            };
            kind = OpKind::Read { lba, contents };
        } else {
            let id = WriteId {
                writer: self.id,
                op: self.next_op,
            };
            self.next_op += 1;
            let mut data = vec![0u8; blocks as usize * BLOCK_BYTES];
            for (i, b) in data.chunks_mut(BLOCK_BYTES).enumerate() {
                super::history::encode_block(b, id, lba + i as u64, self.cfg.seed);
            }
            invoke = self.epoch.elapsed().as_nanos() as u64;
            answer = classify(conn.write(lba, &data));
            kind = OpKind::Write { id, lba, blocks };
        }
        let now = self.now_ns();
        let served_by = self.portal;
        let n = self.cfg.portals.len();
        let (outcome, complete_ns) = match answer {
            Answer::Good(_) => {
                self.progress.ok_ops.fetch_add(1, Ordering::Relaxed);
                self.progress.last_ok_ns.fetch_max(now, Ordering::Relaxed);
                self.progress
                    .last_portal
                    .store(served_by as u64, Ordering::Relaxed);
                (Outcome::Ok, Some(now))
            }
            Answer::Failed { reconnect } => {
                if reconnect {
                    self.conn = None;
                    self.portal = (self.portal + 1) % n;
                }
                (Outcome::Failed, Some(now))
            }
            Answer::Lost => {
                self.conn = None;
                self.portal = (self.portal + 1) % n;
                (Outcome::Unknown, None)
            }
        };
        self.ops.push(Op {
            worker: self.id,
            kind,
            invoke_ns: invoke,
            complete_ns,
            outcome,
            portal: served_by,
        });
    }
}

/// A logged-in session whose LU serves, addressed in the workload's 4 KiB blocks whatever
/// the LU's logical block size.
pub struct Session {
    pub conn: Conn,
    pub lun: u64,
    /// LU logical blocks per workload block.
    per_block: u32,
}

impl Session {
    /// WRITE(10) with FUA of `data` (whole 4 KiB blocks) at workload block `block`.
    pub fn write(&mut self, block: u64, data: &[u8]) -> crate::client::Result<ScsiResult> {
        let (lba, n) = self.lbas(block, data.len())?;
        self.conn.write10(self.lun, lba, n, data, true)
    }

    /// READ(10) of `blocks` workload blocks from `block`.
    pub fn read(&mut self, block: u64, blocks: u32) -> crate::client::Result<ScsiResult> {
        let (lba, n) = self.lbas(block, blocks as usize * BLOCK_BYTES)?;
        let lu_block = (BLOCK_BYTES as u32) / self.per_block;
        self.conn.read10(self.lun, lba, n, lu_block)
    }

    fn lbas(&self, block: u64, bytes: usize) -> crate::client::Result<(u32, u16)> {
        let lba = u32::try_from(block * u64::from(self.per_block));
        let n = u16::try_from(bytes / BLOCK_BYTES * self.per_block as usize);
        match (lba, n) {
            (Ok(lba), Ok(n)) => Ok((lba, n)),
            _ => Err(crate::client::ClientError::Protocol(format!(
                "block {block} (+{bytes} bytes) does not fit a 10-byte CDB"
            ))),
        }
    }

    pub fn logout(self) {
        let _ = self.conn.logout();
    }
}

/// A session on `addr` whose LU answers TEST UNIT READY with GOOD, or `None`.
pub fn try_portal(addr: SocketAddr, target: &str, lun: u64) -> Option<Session> {
    TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
    let mut c = Conn::login(addr, &LoginOptions::normal(target)).ok()?;
    c.set_read_timeout(OP_TIMEOUT).ok()?;
    for _ in 0..MAX_UA_ROUNDS {
        let r = c.test_unit_ready(lun).ok()?;
        if r.is_good() {
            let (_, lu_block) = c.read_capacity10(lun).ok()?;
            if lu_block == 0
                || lu_block as usize > BLOCK_BYTES
                || !(BLOCK_BYTES as u32).is_multiple_of(lu_block)
            {
                return None;
            }
            return Some(Session {
                conn: c,
                lun,
                per_block: BLOCK_BYTES as u32 / lu_block,
            });
        }
        match r.sense_triple() {
            Some((6, _, _)) => continue,
            _ => return None,
        }
    }
    None
}

/// Reads blocks `0..blocks` through whichever portal serves the LU (retrying for at most
/// `timeout`), decoded: the final state the checker compares with the history.
pub fn read_final(
    portals: &[SocketAddr],
    target: &str,
    lun: u64,
    blocks: u64,
    timeout: Duration,
) -> Result<Vec<Content>, String> {
    /// Blocks per READ(10) of the final read.
    const CHUNK: u64 = 64;
    let deadline = Instant::now() + timeout;
    let mut last_err = String::from("no portal serves the LU");
    'retry: while Instant::now() < deadline {
        for &p in portals {
            let Some(mut c) = try_portal(p, target, lun) else {
                continue;
            };
            let mut out = Vec::with_capacity(blocks as usize);
            let mut lba = 0;
            while lba < blocks {
                let n = CHUNK.min(blocks - lba);
                match c.read(lba, n as u32) {
                    Ok(r) if r.is_good() && r.data.len() == n as usize * BLOCK_BYTES => {
                        out.extend(
                            r.data
                                .chunks(BLOCK_BYTES)
                                .enumerate()
                                .map(|(i, b)| decode_block(b, lba + i as u64)),
                        );
                    }
                    Ok(r) => {
                        last_err = format!(
                            "final read at {lba} on {p}: status {:#04x} sense {:?}, {} bytes",
                            r.status,
                            r.sense_triple(),
                            r.data.len()
                        );
                        std::thread::sleep(RECONNECT_PAUSE);
                        continue 'retry;
                    }
                    Err(e) => {
                        last_err = format!("final read at {lba} on {p}: {e}");
                        std::thread::sleep(RECONNECT_PAUSE);
                        continue 'retry;
                    }
                }
                lba += n;
            }
            c.logout();
            return Ok(out);
        }
        std::thread::sleep(RECONNECT_PAUSE);
    }
    Err(last_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(slot: u32, cfg: &WorkloadConfig) -> Worker {
        Worker {
            id: cfg.writer_base + slot,
            slot,
            cfg: cfg.clone(),
            rng: SplitMix64::new(u64::from(slot)),
            stop: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(Progress::default()),
            epoch: Instant::now(),
            conn: None,
            portal: 0,
            next_op: 1,
            ops: Vec::new(),
        }
    }

    #[test]
    fn ranges_stay_in_the_shared_part_or_the_workers_own() {
        let cfg = WorkloadConfig::new(Vec::new(), "t", 1);
        let own = (cfg.blocks - cfg.shared_blocks) / u64::from(cfg.workers);
        for slot in 0..cfg.workers {
            let mut w = worker(slot, &cfg);
            let mine = cfg.shared_blocks + own * u64::from(slot);
            let (mut shared, mut private) = (0, 0);
            for _ in 0..2000 {
                let (lba, n) = w.pick_range();
                let end = lba + u64::from(n);
                assert!((1..=cfg.max_op_blocks).contains(&n));
                if end <= cfg.shared_blocks {
                    shared += 1;
                } else {
                    assert!(
                        lba >= mine && end <= mine + own,
                        "{lba}+{n} outside {mine}+{own}"
                    );
                    private += 1;
                }
            }
            assert!(shared > 500 && private > 500, "{shared} / {private}");
        }
    }

    #[test]
    fn answers_are_classified_by_status_and_sense() {
        let sense = |key: u8, asc: u8, ascq: u8| {
            let mut s = vec![0u8; 18];
            s[0] = 0x70;
            s[2] = key;
            s[12] = asc;
            s[13] = ascq;
            s
        };
        let check = |s: Vec<u8>| ScsiResult {
            status: CHECK_CONDITION,
            sense: s,
            ..Default::default()
        };
        assert!(matches!(
            classify(Ok(ScsiResult::default())),
            Answer::Good(_)
        ));
        // Standby (04/0B) and transitioning (04/0A) paths: go to the other node.
        assert!(matches!(
            classify(Ok(check(sense(2, 4, 0x0b)))),
            Answer::Failed { reconnect: true }
        ));
        assert!(matches!(
            classify(Ok(check(sense(2, 4, 0x0a)))),
            Answer::Failed { reconnect: true }
        ));
        // A unit attention (e.g. asymmetric access state changed): stay.
        assert!(matches!(
            classify(Ok(check(sense(6, 0x2a, 6)))),
            Answer::Failed { reconnect: false }
        ));
        assert!(matches!(
            classify(Err(crate::client::ClientError::Closed)),
            Answer::Lost
        ));
    }
}
