//! The RAM backend: a zero-filled disk in memory, allocated lazily in chunks.
//!
//! A chunk is allocated on its first write that is not all zeros, so a 1 GiB RAM LUN costs
//! only its chunk table until it is written. Each chunk has its own lock, so I/O to different
//! chunks runs in parallel and a block is never seen half-written.

use std::path::Path;
use std::sync::RwLock;

use esos_common::sync::RwLockExt;

use crate::{
    BlockDevice, BlockError, BlockErrorKind, BufResult, DeviceSpec, Extent, IoBuf,
    MAX_ALLOCATION_EXTENTS, SharedBuf, SharedResult, SplitBuf, SplitResult, check_io, check_range,
};

/// Allocation unit. A multiple of every supported block size, so no block straddles chunks.
const CHUNK_BYTES: usize = 1 << 20;

/// Upper bound on a RAM device, whatever the machine: 16 TiB needs a 16 Mi-entry chunk table.
/// A RAM device must also fit in the machine's physical memory (checked at creation), since
/// overcommitting it would end in the OOM killer rather than an error the initiator sees.
pub const RAM_MAX_BYTES: u64 = 16 << 40;

type Chunk = RwLock<Option<Box<[u8]>>>;

#[derive(Debug)]
pub struct RamDevice {
    block_size: u32,
    size_bytes: u64,
    read_only: bool,
    rotational: bool,
    chunks: Box<[Chunk]>,
}

/// Total physical memory, or `None` when the OS will not say.
fn physical_memory_bytes() -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions; it returns -1 on failure.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages <= 0 || page_size <= 0 {
        return None;
    }
    (pages as u64).checked_mul(page_size as u64)
}

impl RamDevice {
    pub fn new(size_bytes: u64, spec: &DeviceSpec) -> Result<Self, BlockError> {
        crate::check_size(Path::new("ram"), size_bytes, spec.block_size)?;
        let limit = physical_memory_bytes().map_or(RAM_MAX_BYTES, |m| m.min(RAM_MAX_BYTES));
        if size_bytes > limit {
            return Err(BlockError::new(
                BlockErrorKind::InvalidConfig,
                format!(
                    "ram: size {size_bytes} exceeds the limit of {limit} bytes (physical memory)"
                ),
            ));
        }
        let n = size_bytes.div_ceil(CHUNK_BYTES as u64) as usize;
        let chunks = (0..n).map(|_| RwLock::new(None)).collect();
        Ok(RamDevice {
            block_size: spec.block_size,
            size_bytes,
            read_only: spec.read_only,
            rotational: spec.rotational.unwrap_or(false),
            chunks,
        })
    }

    /// Splits `[offset, offset + len)` into (chunk index, offset in chunk, offset in buffer, len).
    fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done == len {
                return None;
            }
            let pos = offset + done as u64;
            let idx = (pos / CHUNK_BYTES as u64) as usize;
            let within = (pos % CHUNK_BYTES as u64) as usize;
            let n = (CHUNK_BYTES - within).min(len - done);
            let piece = (idx, within, done, n);
            done += n;
            Some(piece)
        })
    }

    fn read_sync(&self, offset: u64, buf: &mut [u8]) {
        for (idx, within, at, n) in Self::pieces(offset, buf.len()) {
            let chunk = self.chunks[idx].read_locked();
            let dst = &mut buf[at..at + n];
            match chunk.as_deref() {
                Some(data) => dst.copy_from_slice(&data[within..within + n]),
                None => dst.fill(0),
            }
        }
    }

    fn write_sync(&self, offset: u64, buf: &[u8]) {
        for (idx, within, at, n) in Self::pieces(offset, buf.len()) {
            let src = &buf[at..at + n];
            let mut chunk = self.chunks[idx].write_locked();
            match chunk.as_deref_mut() {
                Some(data) => data[within..within + n].copy_from_slice(src),
                // Zeros into an unallocated chunk change nothing: stay thin.
                None if src.iter().all(|&b| b == 0) => {}
                None => {
                    // vec![0; n] comes from calloc, so untouched pages stay uncommitted.
                    let mut data = vec![0u8; CHUNK_BYTES].into_boxed_slice();
                    data[within..within + n].copy_from_slice(src);
                    *chunk = Some(data);
                }
            }
        }
    }

    /// Zeroes a range: whole chunks are freed, partly covered allocated chunks are cleared.
    fn zero_sync(&self, offset: u64, len: u64) {
        let mut done = 0u64;
        while done < len {
            let pos = offset + done;
            let idx = (pos / CHUNK_BYTES as u64) as usize;
            let within = (pos % CHUNK_BYTES as u64) as usize;
            let n = ((CHUNK_BYTES - within) as u64).min(len - done) as usize;
            let mut chunk = self.chunks[idx].write_locked();
            if n == CHUNK_BYTES {
                *chunk = None;
            } else if let Some(data) = chunk.as_deref_mut() {
                data[within..within + n].fill(0);
            }
            done += n as u64;
        }
    }

    fn check_writable(&self, op: &str, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::new(
                BlockErrorKind::ReadOnly,
                format!("ram: {op} on a read-only device"),
            ));
        }
        check_range(op, offset, len, self.block_size, self.size_bytes)
    }

    /// Bytes of memory holding data (allocated chunks), for tests and statistics.
    pub fn allocated_bytes(&self) -> u64 {
        let allocated = self
            .chunks
            .iter()
            .filter(|c| c.read_locked().is_some())
            .count();
        allocated as u64 * CHUNK_BYTES as u64
    }
}

impl BlockDevice for RamDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.size_bytes / u64::from(self.block_size)
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn rotational(&self) -> bool {
        self.rotational
    }
    fn resize(&self, _new_size: u64) -> Result<(), BlockError> {
        // Growing would mean reallocating the whole store under the lock; not worth it.
        Err(BlockError::new(
            BlockErrorKind::Unsupported,
            "a RAM device cannot change size",
        ))
    }
    async fn read(&self, offset: u64, mut buf: IoBuf) -> BufResult {
        if let Err(e) = check_io("read", offset, buf.len(), self.block_size, self.size_bytes) {
            return (Err(e), buf);
        }
        self.read_sync(offset, &mut buf);
        (Ok(()), buf)
    }
    async fn write(&self, offset: u64, buf: IoBuf, _fua: bool) -> BufResult {
        if self.read_only {
            return (
                Err(BlockError::new(
                    BlockErrorKind::ReadOnly,
                    "ram device is read-only",
                )),
                buf,
            );
        }
        if let Err(e) = check_io("write", offset, buf.len(), self.block_size, self.size_bytes) {
            return (Err(e), buf);
        }
        self.write_sync(offset, &buf);
        (Ok(()), buf)
    }
    async fn read_split(&self, offset: u64, mut buf: SplitBuf) -> SplitResult {
        if let Err(e) = check_io("read", offset, buf.len(), self.block_size, self.size_bytes) {
            return (Err(e), buf);
        }
        self.read_sync(offset, buf.as_mut_slice());
        (Ok(()), buf)
    }
    async fn write_shared(&self, offset: u64, buf: SharedBuf, _fua: bool) -> SharedResult {
        if let Err(e) = self.check_writable("write", offset, buf.len() as u64) {
            return (Err(e), buf);
        }
        self.write_sync(offset, buf.as_slice());
        (Ok(()), buf)
    }
    async fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }
    fn supports_discard(&self) -> bool {
        true
    }
    fn discard_zeroes(&self) -> bool {
        true
    }
    async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check_writable("discard", offset, len)?;
        self.zero_sync(offset, len);
        Ok(())
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check_writable("write zeroes", offset, len)?;
        self.zero_sync(offset, len);
        Ok(())
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        check_range("allocation", offset, len, self.block_size, self.size_bytes)?;
        let chunk = CHUNK_BYTES as u64;
        let end = offset + len;
        let mut runs = Vec::new();
        let mut pos = offset;
        while pos < end && runs.len() < 2 * MAX_ALLOCATION_EXTENTS {
            let idx = (pos / chunk) as usize;
            let next = ((pos / chunk + 1) * chunk).min(end);
            let mapped = self.chunks[idx].read_locked().is_some();
            runs.push((pos, next, mapped));
            pos = next;
        }
        Ok(crate::block_extents(runs, self.block_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    fn spec(bs: u32, read_only: bool) -> DeviceSpec {
        DeviceSpec {
            backend: Backend::Ram { size_bytes: 0 },
            block_size: bs,
            read_only,
            rotational: None,
        }
    }

    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
            .collect()
    }

    #[tokio::test]
    async fn round_trip_across_chunks() {
        let size = 4 * CHUNK_BYTES as u64;
        let d = RamDevice::new(size, &spec(512, false)).unwrap();
        assert_eq!(d.allocated_bytes(), 0);
        let offsets = [
            0u64,
            512,
            CHUNK_BYTES as u64 - 512,
            2 * CHUNK_BYTES as u64 - 4096,
            size - 512,
        ];
        for (i, &off) in offsets.iter().enumerate() {
            let len = (8192usize).min((size - off) as usize);
            let data = pattern(i as u64, len);
            let (r, _) = d.write(off, data.clone(), false).await;
            r.unwrap();
            let (r, back) = d.read(off, vec![0xee; len]).await;
            r.unwrap();
            assert_eq!(back, data, "offset {off}");
        }
        // Neighbours of a write stay zero.
        let (r, back) = d.read(3 * CHUNK_BYTES as u64, vec![0xee; 4096]).await;
        r.unwrap();
        assert!(back.iter().all(|&b| b == 0));
        assert!(d.allocated_bytes() <= size);
    }

    #[tokio::test]
    async fn lazy_allocation_and_zero_writes() {
        let d = RamDevice::new(1 << 30, &spec(4096, false)).unwrap();
        assert_eq!(d.allocated_bytes(), 0);
        let (r, _) = d.write(0, vec![0; 1 << 20], false).await;
        r.unwrap();
        assert_eq!(d.allocated_bytes(), 0);
        let (r, _) = d.write(4096, vec![1; 4096], true).await;
        r.unwrap();
        assert_eq!(d.allocated_bytes(), CHUNK_BYTES as u64);
    }

    #[tokio::test]
    async fn range_alignment_and_read_only() {
        let d = RamDevice::new(1 << 20, &spec(512, false)).unwrap();
        let (r, _) = d.read(1 << 20, vec![0; 512]).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::OutOfRange);
        let (r, _) = d.write((1 << 20) - 512, vec![0; 1024], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::OutOfRange);
        let (r, _) = d.write(100, vec![0; 512], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Misaligned);
        let ro = RamDevice::new(1 << 20, &spec(512, true)).unwrap();
        let (r, _) = ro.write(0, vec![1; 512], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::ReadOnly);
    }

    #[test]
    fn size_rules() {
        assert!(RamDevice::new(0, &spec(512, false)).is_err());
        assert!(RamDevice::new(4096 + 512, &spec(4096, false)).is_err());
        assert!(RamDevice::new(RAM_MAX_BYTES + 4096, &spec(4096, false)).is_err());
        // Not a multiple of the chunk size is fine.
        let d = RamDevice::new(CHUNK_BYTES as u64 + 512, &spec(512, false)).unwrap();
        assert_eq!(d.num_blocks(), (CHUNK_BYTES as u64 + 512) / 512);
    }

    #[tokio::test]
    async fn discard_frees_chunks_and_reads_zeros() {
        let size = 4 * CHUNK_BYTES as u64;
        let d = RamDevice::new(size, &spec(512, false)).unwrap();
        let (r, _) = d.write(0, vec![9; 3 * CHUNK_BYTES], false).await;
        r.unwrap();
        assert_eq!(d.allocated_bytes(), 3 * CHUNK_BYTES as u64);
        // One whole chunk and part of the next: the whole one is freed.
        let c = CHUNK_BYTES as u64;
        d.discard(c, c + 4096).await.unwrap();
        assert_eq!(d.allocated_bytes(), 2 * c);
        let (r, got) = d.read(c - 512, vec![0xee; CHUNK_BYTES + 8192]).await;
        r.unwrap();
        assert_eq!(got[..512], [9; 512]);
        assert!(got[512..512 + CHUNK_BYTES + 4096].iter().all(|&b| b == 0));
        assert!(got[512 + CHUNK_BYTES + 4096..].iter().all(|&b| b == 9));
        d.write_zeroes(0, 512).await.unwrap();
        let (r, got) = d.read(0, vec![0xee; 1024]).await;
        r.unwrap();
        assert_eq!(got[..512], [0; 512]);
        assert_eq!(got[512..], [9; 512]);
        let ext = d.allocation(0, size).await.unwrap();
        let want = [
            (0, c, true),
            (c, c, false),
            (2 * c, c, true),
            (3 * c, c, false),
        ];
        let got: Vec<_> = ext.iter().map(|e| (e.offset, e.len, e.mapped)).collect();
        assert_eq!(got, want);
        assert_eq!(
            d.discard(size, 512).await.unwrap_err().kind(),
            BlockErrorKind::OutOfRange
        );
        let ro = RamDevice::new(size, &spec(512, true)).unwrap();
        assert_eq!(
            ro.discard(0, 512).await.unwrap_err().kind(),
            BlockErrorKind::ReadOnly
        );
    }
}
