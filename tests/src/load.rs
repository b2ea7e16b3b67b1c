//! A well-behaved session doing verified I/O in the background while a test attacks the
//! daemon: it proves that other sessions keep working and measures their throughput.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{ChapLogin, Conn, LoginOptions};
use crate::data;

/// Blocks per write/read of the worker.
pub const WORKER_BLOCKS: u16 = 8;
/// Distinct LBA slots the worker cycles through.
pub const WORKER_SLOTS: u32 = 256;
/// Pause between two write+read pairs: the worker proves service continues without
/// taking the 2 shared cores away from the attack it watches.
const WORKER_PAUSE: Duration = Duration::from_millis(2);
/// Most unit attentions in a row the worker tolerates before calling it an error.
const MAX_UNIT_ATTENTIONS: u32 = 8;

/// What a worker is told to do.
#[derive(Clone)]
pub struct WorkerSpec {
    pub addr: SocketAddr,
    pub target: String,
    pub initiator: String,
    pub lun: u64,
    pub block_size: u32,
    /// First LBA of the worker's region (`WORKER_SLOTS * WORKER_BLOCKS` blocks).
    pub first_lba: u32,
    pub chap: Option<ChapLogin>,
    pub seed: u64,
}

/// A running worker; [`Worker::stop`] ends it and returns the first error, if any.
pub struct Worker {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<u64, String>>>,
}

impl Worker {
    /// Logs in (synchronously, so a login failure is reported at once) and starts writing
    /// and reading back pseudo-random blocks until stopped.
    pub fn start(spec: WorkerSpec) -> Result<Worker, String> {
        let mut o = LoginOptions::normal(&spec.target);
        o.initiator = spec.initiator.clone();
        o.chap = spec.chap.clone();
        let mut c = Conn::login(spec.addr, &o).map_err(|e| format!("worker login: {e}"))?;
        c.clear_unit_attention(spec.lun)
            .map_err(|e| format!("worker TUR: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), ops.clone());
        let handle = std::thread::spawn(move || run(c, spec, s, n));
        Ok(Worker {
            stop,
            ops,
            handle: Some(handle),
        })
    }

    /// Verified write+read pairs done so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Pairs per second over `window`, measured now.
    pub fn rate(&self, window: Duration) -> f64 {
        let a = self.ops();
        std::thread::sleep(window);
        (self.ops() - a) as f64 / window.as_secs_f64()
    }

    /// True while the worker thread runs (it ends at its first error).
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    pub fn stop(mut self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("worker panicked".into()),
            None => Err("worker already stopped".into()),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(
    mut c: Conn,
    spec: WorkerSpec,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> Result<u64, String> {
    let len = usize::from(WORKER_BLOCKS) * spec.block_size as usize;
    let mut i = 0u64;
    let mut ua_in_a_row = 0;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let lba = spec.first_lba + (i % u64::from(WORKER_SLOTS)) as u32 * u32::from(WORKER_BLOCKS);
        let payload = data::pattern(spec.seed.wrapping_add(i), len);
        let w = c
            .write10(spec.lun, lba, WORKER_BLOCKS, &payload, false)
            .map_err(|e| format!("write #{i} after {:?}: {e}", start.elapsed()))?;
        if is_unit_attention(&w) && ua_in_a_row < MAX_UNIT_ATTENTIONS {
            // A reset by another nexus is reported once (SAM-5 5.14); retry.
            ua_in_a_row += 1;
            continue;
        }
        if !w.is_good() {
            return Err(format!(
                "write #{i}: status {:#x} sense {:?}",
                w.status,
                w.sense_triple()
            ));
        }
        let r = c
            .read10(spec.lun, lba, WORKER_BLOCKS, spec.block_size)
            .map_err(|e| format!("read #{i}: {e}"))?;
        if is_unit_attention(&r) && ua_in_a_row < MAX_UNIT_ATTENTIONS {
            ua_in_a_row += 1;
            continue;
        }
        if !r.is_good() || r.data != payload {
            return Err(format!(
                "read-back #{i} at LBA {lba} differs (status {:#x}, {:?})",
                r.status,
                r.sense_triple()
            ));
        }
        ua_in_a_row = 0;
        i += 1;
        ops.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(WORKER_PAUSE);
    }
    let _ = c.logout();
    Ok(i)
}

fn is_unit_attention(r: &crate::client::ScsiResult) -> bool {
    r.status == crate::client::CHECK_CONDITION && r.sense_triple().is_some_and(|s| s.0 == 0x06)
}
