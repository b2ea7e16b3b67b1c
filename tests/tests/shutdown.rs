//! SIGTERM during a write load: the daemon exits 0 in bounded time, and every write it
//! acknowledged as durable (FUA, or followed by a good SYNCHRONIZE CACHE) is in the backing
//! file afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esos_e2e::client::{Conn, LoginOptions};
use esos_e2e::daemon::{Daemon, STOP_TIMEOUT};
use esos_e2e::data;

/// Blocks per write.
const BLOCKS: u16 = 8;
const BLOCK: usize = 512;
/// Most writes one load thread issues (bounds the loop when SIGTERM never comes).
const MAX_WRITES: u32 = 50_000;
/// Longest the load runs.
const LOAD_TIME_MAX: Duration = Duration::from_secs(30);
/// Durable writes acknowledged before the SIGTERM is sent.
const ACKED_BEFORE_SIGTERM: usize = 40;

/// A write the daemon acknowledged as durable: (lba, seed of its data).
type Acked = Arc<Mutex<Vec<(u32, u64)>>>;

/// Writes distinct LBAs; `durable` load uses FUA on odd writes and WRITE + SYNCHRONIZE
/// CACHE on even ones, recording what was acknowledged. Ends at the first error (the
/// daemon going away).
fn load(
    d: &Daemon,
    first_lba: u32,
    seed: u64,
    acked: Option<Acked>,
) -> std::thread::JoinHandle<u32> {
    let addr = d.addr();
    let target = d.target.clone();
    std::thread::spawn(move || {
        let Ok(mut c) = Conn::login(addr, &LoginOptions::normal(&target)) else {
            return 0;
        };
        if c.clear_unit_attention(0).is_err() {
            return 0;
        }
        let start = Instant::now();
        let mut n = 0;
        while n < MAX_WRITES && start.elapsed() < LOAD_TIME_MAX {
            let lba = first_lba + n * u32::from(BLOCKS);
            let s = seed.wrapping_add(u64::from(n));
            let payload = data::pattern(s, usize::from(BLOCKS) * BLOCK);
            let durable = acked.is_some();
            let fua = durable && n % 2 == 1;
            match c.write10(0, lba, BLOCKS, &payload, fua) {
                Ok(r) if r.is_good() => {}
                _ => break,
            }
            let mut ok = fua;
            if durable && !fua {
                ok = matches!(c.synchronize_cache10(0), Ok(r) if r.is_good());
            }
            if ok && let Some(a) = &acked {
                a.lock().unwrap().push((lba, s));
            }
            n += 1;
        }
        n
    })
}

#[test]
fn sigterm_during_writes_keeps_acknowledged_data() {
    let mut d = Daemon::quick(&["{dir}/lun0.img:256M"]);
    let seed = data::seed("sigterm");
    let acked: Acked = Arc::default();
    let background = load(&d, 200_000, seed ^ 0xffff, None);
    let durable = load(&d, 0, seed, Some(acked.clone()));

    let wait_start = Instant::now();
    while acked.lock().unwrap().len() < ACKED_BEFORE_SIGTERM {
        assert!(
            wait_start.elapsed() < LOAD_TIME_MAX && !durable.is_finished(),
            "load did not get {ACKED_BEFORE_SIGTERM} durable writes acknowledged\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    let status = d.terminate(STOP_TIMEOUT);
    let took = sent.elapsed();
    let writes = durable.join().unwrap();
    let bg = background.join().unwrap();
    eprintln!(
        "esos-e2e: SIGTERM after {writes} durable + {bg} background writes; exit {status:?} in {took:?}"
    );
    assert!(
        status.is_some(),
        "esos did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
        d.log()
    );
    assert!(
        status.unwrap().success(),
        "esos exit status {status:?} after SIGTERM\n{}",
        d.log()
    );

    let file = std::fs::read(d.dir().join("lun0.img")).unwrap();
    let acked = acked.lock().unwrap();
    let mut lost = Vec::new();
    for &(lba, s) in acked.iter() {
        let at = lba as usize * BLOCK;
        let want = data::pattern(s, usize::from(BLOCKS) * BLOCK);
        if file.get(at..at + want.len()) != Some(&want[..]) {
            lost.push(lba);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged durable writes missing, LBAs {:?}\n{}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)],
        d.log()
    );
}
