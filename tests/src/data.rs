//! Test data: reproducible pseudo-random contents and file digests.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::cmd;

/// SplitMix64: a tiny seeded generator, so a failing run can be reproduced from its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A buffer of `len` pseudo-random bytes from `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SplitMix64::new(seed).fill(&mut v);
    v
}

/// Writes `size_bytes` of pseudo-random data from `seed` to `path`.
pub fn write_random_file(path: &Path, size_bytes: u64, seed: u64) {
    const CHUNK: usize = 1 << 20;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create data file"));
    let mut rng = SplitMix64::new(seed);
    let mut buf = vec![0u8; CHUNK];
    let mut left = size_bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write data file");
        left -= n as u64;
    }
    f.flush().expect("flush data file");
}

/// Longest a sha256sum of a test image may take.
const SHA_TIMEOUT: Duration = Duration::from_secs(120);

/// SHA-256 of a file (coreutils `sha256sum`), as hex.
pub fn sha256(path: &Path) -> String {
    let o = cmd::run_ok("sha256sum", &[path.as_os_str()], SHA_TIMEOUT);
    o.stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A seed for this run: `$ESOS_E2E_SEED` when set (to reproduce a failure), else the clock.
/// Printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("ESOS_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("esos-e2e: {test}: seed {s} (set ESOS_E2E_SEED={s} to replay)");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        assert_eq!(pattern(7, 100), pattern(7, 100));
        assert_ne!(pattern(7, 100), pattern(8, 100));
        assert_eq!(pattern(7, 13).len(), 13);
    }

    #[test]
    fn file_and_digest() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        write_random_file(&a, 3 << 20, 1);
        write_random_file(&b, 3 << 20, 1);
        assert_eq!(std::fs::metadata(&a).unwrap().len(), 3 << 20);
        assert_eq!(sha256(&a), sha256(&b));
        assert_eq!(sha256(&a).len(), 64);
        write_random_file(&b, 3 << 20, 2);
        assert_ne!(sha256(&a), sha256(&b));
    }
}
