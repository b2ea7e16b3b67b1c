//! Crash consistency: SIGKILL the daemon at a random moment of a pipelined write workload,
//! restart it on the same backing store, and check every write it acknowledged as durable.
//!
//! What SBC-3 promises, and so what is checked:
//! - a write is durable once GOOD status came back for it on a write-through LUN (WCE=0,
//!   SBC-3 6.4.7), for a WRITE with FUA=1 (SBC-3 5.40), or for any write whose GOOD status
//!   came back before a SYNCHRONIZE CACHE that then returned GOOD (SBC-3 5.22);
//! - after the crash each block of such a write holds that write's data or the data of a
//!   later write to the same block (later writes may or may not have landed);
//! - SBC-3 gives no atomicity across the blocks of one command, so blocks of an interrupted
//!   write may mix old and new. A single logical block must never be torn: esos writes whole
//!   blocks with one system call, so each block read back is checked to be exactly one
//!   version that was written (or never written).
//!
//! SIGKILL ends the process, not the machine: this shows that esos acknowledges nothing it
//! has not handed to the kernel with the durability asked for (no user-space write-back
//! buffer, no early status). Power loss is a kernel and device matter outside this test.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esos_e2e::client::pdu::op;
use esos_e2e::client::{Conn, LoginOptions};
use esos_e2e::cmd::kill_pid;
use esos_e2e::daemon::Daemon;
use esos_e2e::data::{self, SplitMix64};
use esos_e2e::loopdev::{self, LoopDev};

const TARGET: &str = "iqn.2026-11.org.esos.test:crash";
const BLOCK: usize = 512;
/// Blocks per write.
const WRITE_BLOCKS: u16 = 8;
/// Slots of `WRITE_BLOCKS` blocks the workload writes to (a 2 MiB region).
const SLOTS: u32 = 512;
/// Backing store size.
const STORE_BYTES: u64 = 16 << 20;
/// Writes kept in flight on the connection.
const QUEUE_DEPTH: usize = 8;
/// Kill iterations per backend (two backends: 100 in all).
const ITERATIONS: usize = 50;
/// The workload runs this long, at random, before the SIGKILL.
const KILL_AFTER_MS: std::ops::Range<u64> = 20..250;
/// Every this many writes the write-back workload issues a SYNCHRONIZE CACHE.
const SYNC_EVERY: u64 = 16;
/// Share of write-back writes sent with FUA (1 in N).
const FUA_ONE_IN: u64 = 4;
/// Longest the writer waits for one response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Marks a block written by this test.
const MAGIC: u64 = 0x6573_6f73_6372_7368; // "esoscrsh"

/// One pseudo-random block, self-describing: magic, write sequence number, LBA, then data
/// derived from both, so a torn or misplaced block is recognised.
fn block(seq: u64, lba: u32) -> Vec<u8> {
    let mut b = data::pattern(seq.wrapping_mul(0x1_0000_0001) ^ u64::from(lba), BLOCK);
    b[0..8].copy_from_slice(&MAGIC.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..20].copy_from_slice(&lba.to_le_bytes());
    b
}

/// What a block read back holds: `Ok(None)` never written, `Ok(Some(seq))` a whole block
/// of write `seq`, `Err` anything else (torn or foreign).
fn decode(b: &[u8], lba: u32) -> Result<Option<u64>, String> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let seq = u64::from_le_bytes(b[8..16].try_into().unwrap());
    if b[0..8] != MAGIC.to_le_bytes() || b != block(seq, lba) {
        return Err(format!(
            "LBA {lba}: torn or foreign block (claims write {seq})"
        ));
    }
    Ok(Some(seq))
}

/// The durability model of one LUN configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Write-through LUN: every GOOD write is durable.
    WriteThrough,
    /// Write-back LUN: FUA writes, and writes followed by a good SYNCHRONIZE CACHE.
    WriteBack,
}

/// Everything the test knows about the store across iterations.
#[derive(Default)]
struct Ledger {
    next_seq: u64,
    /// Slot of every write ever sent.
    issued: HashMap<u64, u32>,
    /// Highest durable write per slot.
    durable: HashMap<u32, u64>,
    /// Writes with GOOD status not yet made durable (write-back): seq -> slot.
    acked: HashMap<u64, u32>,
    durable_count: u64,
}

impl Ledger {
    fn make_durable(&mut self, seq: u64, slot: u32) {
        let d = self.durable.entry(slot).or_insert(seq);
        *d = (*d).max(seq);
        self.durable_count += 1;
    }
}

fn config(device: &str, mode: Mode) -> impl FnOnce(&esos_e2e::daemon::Ctx) -> String {
    let device = device.to_owned();
    move |ctx| {
        let (kind, size) = if device.starts_with("/dev/") {
            ("blockdev", String::new())
        } else {
            ("file", format!("size = {STORE_BYTES}"))
        };
        let cache = match mode {
            Mode::WriteThrough => "write-through",
            Mode::WriteBack => "write-back",
        };
        format!(
            r#"{server}
[[device]]
name = "d0"
type = "{kind}"
path = "{device}"
{size}
cache = "{cache}"

{target}"#,
            server = ctx.server_toml(),
            target = esos_e2e::daemon::default_target_toml(TARGET, "d0"),
        )
    }
}

fn login(d: &Daemon) -> Conn {
    let mut c = Conn::login(d.addr(), &LoginOptions::normal(TARGET))
        .unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    c.set_read_timeout(RESPONSE_TIMEOUT).unwrap();
    c.clear_unit_attention(0).unwrap();
    c
}

/// Reads the region back and checks it against the ledger; returns how many slots held a
/// durable write.
fn verify(d: &Daemon, ledger: &Ledger, seed: u64, iteration: usize) -> usize {
    let mut c = login(d);
    let blocks = SLOTS * u32::from(WRITE_BLOCKS);
    let mut region = Vec::with_capacity(blocks as usize * BLOCK);
    // 2 MiB in four reads.
    for part in 0..4u32 {
        let n = (blocks / 4) as u16;
        let r = c.read10(0, part * u32::from(n), n, BLOCK as u32).unwrap();
        assert!(r.is_good(), "READ after restart: {r:?}");
        region.extend_from_slice(&r.data);
    }
    let mut problems = Vec::new();
    for slot in 0..SLOTS {
        let floor = ledger.durable.get(&slot).copied();
        for i in 0..u32::from(WRITE_BLOCKS) {
            let lba = slot * u32::from(WRITE_BLOCKS) + i;
            let at = lba as usize * BLOCK;
            match decode(&region[at..at + BLOCK], lba) {
                Err(e) => problems.push(e),
                Ok(got) => {
                    if let Some(s) = got
                        && ledger.issued.get(&s) != Some(&slot)
                    {
                        problems.push(format!("LBA {lba}: write {s} was never sent there"));
                    }
                    if let Some(f) = floor
                        && got.is_none_or(|g| g < f)
                    {
                        problems.push(format!("LBA {lba}: durable write {f} lost (holds {got:?})"));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "iteration {iteration} (seed {seed}): {} problem(s), first: {:?}\n{}",
        problems.len(),
        &problems[..problems.len().min(10)],
        d.log()
    );
    c.logout().unwrap();
    ledger.durable.len()
}

/// Pipelined writes until the connection dies; records acknowledgements in `ledger`.
fn workload(mut c: Conn, mode: Mode, rng_seed: u64, ledger: Arc<Mutex<Ledger>>) -> u64 {
    let mut rng = SplitMix64::new(rng_seed);
    // itt -> (seq, slot, fua) for writes; itt -> snapshot of acked writes for a sync.
    let mut writes: HashMap<u32, (u64, u32, bool)> = HashMap::new();
    let mut syncs: HashMap<u32, Vec<(u64, u32)>> = HashMap::new();
    let mut busy_slots: HashMap<u32, u32> = HashMap::new();
    let mut sent = 0u64;
    loop {
        while writes.len() + syncs.len() < QUEUE_DEPTH {
            let sync_now = mode == Mode::WriteBack
                && sent > 0
                && sent.is_multiple_of(SYNC_EVERY)
                && syncs.is_empty();
            if sync_now {
                let snapshot: Vec<(u64, u32)> = {
                    let l = ledger.lock().unwrap();
                    l.acked.iter().map(|(&s, &slot)| (s, slot)).collect()
                };
                let p = c.scsi_header(0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, 0);
                if c.send(&p).is_err() {
                    return sent;
                }
                syncs.insert(p.itt(), snapshot);
            }
            let slot = (rng.next_u64() % u64::from(SLOTS)) as u32;
            if busy_slots.contains_key(&slot) {
                continue; // never two writes to one block in flight: their order is undefined
            }
            let fua = mode == Mode::WriteBack && rng.next_u64().is_multiple_of(FUA_ONE_IN);
            let seq = {
                let mut l = ledger.lock().unwrap();
                l.next_seq += 1;
                let s = l.next_seq;
                l.issued.insert(s, slot);
                s
            };
            let lba = slot * u32::from(WRITE_BLOCKS);
            let mut payload = Vec::with_capacity(usize::from(WRITE_BLOCKS) * BLOCK);
            for i in 0..u32::from(WRITE_BLOCKS) {
                payload.extend(block(seq, lba + i));
            }
            let mut cdb = [0x2au8, if fua { 0x08 } else { 0 }, 0, 0, 0, 0, 0, 0, 0, 0];
            cdb[2..6].copy_from_slice(&lba.to_be_bytes());
            cdb[7..9].copy_from_slice(&WRITE_BLOCKS.to_be_bytes());
            // 4 KiB goes whole as immediate data: no R2T, so commands can overlap freely.
            let mut p = c.scsi_header(0, &cdb, payload.len() as u32, 0);
            p.data = payload;
            if c.send(&p).is_err() {
                return sent;
            }
            writes.insert(p.itt(), (seq, slot, fua));
            busy_slots.insert(slot, p.itt());
            sent += 1;
        }
        let Ok(r) = c.recv_response() else {
            return sent;
        };
        if r.opcode() != op::SCSI_RESPONSE {
            return sent;
        }
        let good = r.bhs[2] == 0 && r.bhs[3] == 0;
        let itt = r.itt();
        let mut l = ledger.lock().unwrap();
        if let Some((seq, slot, fua)) = writes.remove(&itt) {
            busy_slots.remove(&slot);
            if good {
                if mode == Mode::WriteThrough || fua {
                    l.make_durable(seq, slot);
                } else {
                    l.acked.insert(seq, slot);
                }
            }
        } else if let Some(snapshot) = syncs.remove(&itt)
            && good
        {
            for (seq, slot) in snapshot {
                l.acked.remove(&seq);
                l.make_durable(seq, slot);
            }
        }
    }
}

/// Longest a killed daemon's exclusive open of a block device may outlive it.
const CLAIM_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `device` (a block device) can be opened O_EXCL again. The kernel drops a
/// killed process' exclusive claim only when its last file reference goes, and io_uring
/// releases its references asynchronously after the exit; a restart in that window gets
/// EBUSY. Files need no wait.
fn wait_exclusive(device: &Path, longest: &mut Duration) {
    use std::os::unix::fs::OpenOptionsExt;
    if !device.starts_with("/dev") {
        return;
    }
    let t0 = Instant::now();
    loop {
        let r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(device);
        match r {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                assert!(
                    t0.elapsed() < CLAIM_RELEASE_TIMEOUT,
                    "{} still busy {CLAIM_RELEASE_TIMEOUT:?} after the daemon was killed",
                    device.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open {}: {e}", device.display()),
        }
    }
    *longest = (*longest).max(t0.elapsed());
}

/// Runs `ITERATIONS` kill/restart/verify rounds on `device` (a file or a block device).
fn crash_rounds(device: &Path, what: &str) {
    let seed = data::seed(what);
    let mut rng = SplitMix64::new(seed);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let dev = device.to_string_lossy().into_owned();
    let started = Instant::now();
    let mut total_writes = 0;
    let mut max_claim_wait = Duration::ZERO;
    for it in 0..ITERATIONS {
        let mode = if it % 2 == 0 {
            Mode::WriteBack
        } else {
            Mode::WriteThrough
        };
        wait_exclusive(device, &mut max_claim_wait);
        let d = Daemon::with_config(TARGET, config(&dev, mode));
        // What the previous crash left must hold every durable write.
        verify(&d, &ledger.lock().unwrap(), seed, it);
        // Non-durable acknowledgements of earlier rounds promise nothing from here on.
        ledger.lock().unwrap().acked.clear();
        let c = login(&d);
        let l2 = ledger.clone();
        let wseed = rng.next_u64();
        let writer = std::thread::spawn(move || workload(c, mode, wseed, l2));
        let wait = KILL_AFTER_MS.start + rng.next_u64() % (KILL_AFTER_MS.end - KILL_AFTER_MS.start);
        std::thread::sleep(Duration::from_millis(wait));
        kill_pid(d.pid(), libc::SIGKILL);
        total_writes += writer.join().expect("writer thread");
        drop(d);
    }
    wait_exclusive(device, &mut max_claim_wait);
    let d = Daemon::with_config(TARGET, config(&dev, Mode::WriteBack));
    let slots = verify(&d, &ledger.lock().unwrap(), seed, ITERATIONS);
    let durable = ledger.lock().unwrap().durable_count;
    eprintln!(
        "esos-e2e: crash consistency ({what}): {ITERATIONS} SIGKILLs, {total_writes} writes sent, \
         {durable} acknowledged durable, {slots} slots checked, 0 lost, in {:?}; longest \
         wait for the killed daemon's exclusive claim to go: {max_claim_wait:?}",
        started.elapsed()
    );
    assert!(durable > 0, "no write was ever acknowledged as durable");
}

#[test]
fn sigkill_keeps_durable_writes_on_a_file() {
    let work = tempfile::Builder::new()
        .prefix("esos-e2e-crash-")
        .tempdir()
        .unwrap();
    crash_rounds(&work.path().join("store.img"), "file");
}

#[test]
fn sigkill_keeps_durable_writes_on_a_block_device() {
    if let Some(why) = loopdev::unavailable_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("esos-e2e-crash-")
        .tempdir()
        .unwrap();
    let image = work.path().join("loop.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(STORE_BYTES)
        .unwrap();
    // Dropped (losetup -d) also when a round panics.
    let dev = LoopDev::attach(&image);
    crash_rounds(&dev.device, "blockdev");
}

#[test]
fn block_check_tells_whole_torn_and_misplaced_blocks_apart() {
    assert_eq!(decode(&[0u8; BLOCK], 9), Ok(None));
    assert_eq!(decode(&block(5, 9), 9), Ok(Some(5)));
    // Misplaced: the right data for another LBA.
    assert!(decode(&block(5, 10), 9).is_err());
    // Torn: first half of write 6 over write 5.
    let mut torn = block(5, 9);
    torn[..BLOCK / 2].copy_from_slice(&block(6, 9)[..BLOCK / 2]);
    assert!(decode(&torn, 9).is_err());
    let mut flipped = block(5, 9);
    flipped[BLOCK - 1] ^= 1;
    assert!(decode(&flipped, 9).is_err());
}
