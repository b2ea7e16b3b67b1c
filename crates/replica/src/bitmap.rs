//! The dirty bitmap towards one peer: one bit per chunk, set where this node's copy may
//! differ from the peer's. Pure memory; [`crate::meta`] persists it page by page.

use std::collections::BTreeSet;

/// Bytes of one bitmap page, the unit written to the metadata file.
pub const PAGE_BYTES: usize = 4096;

/// One bit per chunk of a device, with the pages changed since they were last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    chunk_bytes: u64,
    chunks: u64,
    bytes: Vec<u8>,
    set: u64,
    dirty_pages: BTreeSet<usize>,
}

impl Bitmap {
    /// An empty bitmap for a device of `size_bytes` in chunks of `chunk_bytes`.
    pub fn new(size_bytes: u64, chunk_bytes: u32) -> Bitmap {
        assert!(chunk_bytes > 0, "chunk size 0");
        let chunk_bytes = u64::from(chunk_bytes);
        let chunks = size_bytes.div_ceil(chunk_bytes);
        Bitmap {
            chunk_bytes,
            chunks,
            bytes: vec![0; Self::byte_len(chunks)],
            set: 0,
            dirty_pages: BTreeSet::new(),
        }
    }

    /// Bytes of the stored form of a bitmap of `chunks` chunks (whole pages).
    pub fn byte_len(chunks: u64) -> usize {
        (chunks.div_ceil(8) as usize).div_ceil(PAGE_BYTES) * PAGE_BYTES
    }

    /// Replaces the bits with the stored form `bytes` (bits past the last chunk ignored).
    pub fn load(&mut self, bytes: &[u8]) {
        let n = self.bytes.len().min(bytes.len());
        self.bytes[..n].copy_from_slice(&bytes[..n]);
        let tail = self.chunks % 8;
        let last = (self.chunks / 8) as usize;
        if tail != 0 && last < self.bytes.len() {
            self.bytes[last] &= (1u8 << tail) - 1;
        }
        for b in &mut self.bytes[self.chunks.div_ceil(8) as usize..] {
            *b = 0;
        }
        self.set = self.bytes.iter().map(|b| u64::from(b.count_ones())).sum();
        self.dirty_pages.clear();
    }

    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// Chunks set.
    pub fn count(&self) -> u64 {
        self.set
    }

    pub fn get(&self, chunk: u64) -> bool {
        chunk < self.chunks && self.bytes[(chunk / 8) as usize] & (1 << (chunk % 8)) != 0
    }

    fn put(&mut self, chunk: u64, on: bool) {
        debug_assert!(chunk < self.chunks);
        let i = (chunk / 8) as usize;
        let m = 1u8 << (chunk % 8);
        if (self.bytes[i] & m != 0) != on {
            self.bytes[i] ^= m;
            if on {
                self.set += 1;
            } else {
                self.set -= 1;
            }
            self.dirty_pages.insert(i / PAGE_BYTES);
        }
    }

    /// The chunks that `[offset, offset + len)` touches.
    pub fn chunk_range(&self, offset: u64, len: u64) -> std::ops::Range<u64> {
        if len == 0 {
            return 0..0;
        }
        let first = offset / self.chunk_bytes;
        let end = offset.saturating_add(len).div_ceil(self.chunk_bytes);
        first.min(self.chunks)..end.min(self.chunks)
    }

    /// Sets every chunk that `[offset, offset + len)` touches.
    pub fn set_range(&mut self, offset: u64, len: u64) {
        for c in self.chunk_range(offset, len) {
            self.put(c, true);
        }
    }

    pub fn set_chunk(&mut self, chunk: u64) {
        if chunk < self.chunks {
            self.put(chunk, true);
        }
    }

    pub fn clear_chunk(&mut self, chunk: u64) {
        if chunk < self.chunks {
            self.put(chunk, false);
        }
    }

    pub fn set_all(&mut self) {
        for c in 0..self.chunks {
            self.put(c, true);
        }
    }

    pub fn clear_all(&mut self) {
        for c in 0..self.chunks {
            self.put(c, false);
        }
    }

    /// The first set chunk at or after `from`.
    pub fn next_set(&self, from: u64) -> Option<u64> {
        let mut c = from;
        while c < self.chunks {
            let i = (c / 8) as usize;
            if self.bytes[i] == 0 {
                c = (c / 8 + 1) * 8;
                continue;
            }
            if self.get(c) {
                return Some(c);
            }
            c += 1;
        }
        None
    }

    /// Sets every bit set in `bits` (the stored form of a piece starting at chunk
    /// `first_chunk`, a multiple of 8): the union with a peer's bitmap.
    pub fn merge(&mut self, first_chunk: u64, bits: &[u8]) {
        for (i, b) in bits.iter().enumerate() {
            for bit in 0..8 {
                if b & (1 << bit) != 0 {
                    self.set_chunk(first_chunk + i as u64 * 8 + bit);
                }
            }
        }
    }

    /// The stored bytes of chunks `[first_chunk, first_chunk + 8 * n)`, `first_chunk` a
    /// multiple of 8.
    pub fn piece(&self, first_chunk: u64, n: usize) -> &[u8] {
        let start = ((first_chunk / 8) as usize).min(self.bytes.len());
        let end = start
            .saturating_add(n)
            .min(self.chunks.div_ceil(8) as usize);
        &self.bytes[start..end.max(start)]
    }

    /// Takes the pages changed since the last call, as (page index, bytes).
    pub fn take_dirty_pages(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.dirty_pages)
            .into_iter()
            .map(|p| {
                let at = p * PAGE_BYTES;
                (p, self.bytes[at..at + PAGE_BYTES].to_vec())
            })
            .collect()
    }

    /// Marks every page changed (the whole bitmap is written next time).
    pub fn mark_all_dirty(&mut self) {
        self.dirty_pages = (0..self.bytes.len() / PAGE_BYTES).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_set_the_chunks_they_touch_and_counts_follow() {
        let mut b = Bitmap::new(1 << 20, 64 << 10);
        assert_eq!(b.chunks(), 16);
        b.set_range(65535, 2);
        assert_eq!(b.count(), 2);
        assert!(b.get(0) && b.get(1) && !b.get(2));
        b.set_range(0, 4096);
        assert_eq!(b.count(), 2);
        b.clear_chunk(0);
        assert_eq!((b.count(), b.next_set(0)), (1, Some(1)));
        b.set_range(15 << 16, 1 << 30);
        assert_eq!(b.next_set(2), Some(15));
        b.set_all();
        assert_eq!(b.count(), 16);
        b.clear_all();
        assert_eq!((b.count(), b.next_set(0)), (0, None));
    }

    #[test]
    fn stored_form_and_merge_round_trip() {
        let mut a = Bitmap::new(10 << 20, 4096);
        for c in [0, 9, 700, 2559] {
            a.set_chunk(c);
        }
        let pages = a.take_dirty_pages();
        assert!(!pages.is_empty() && a.take_dirty_pages().is_empty());
        let mut stored = vec![0; Bitmap::byte_len(a.chunks())];
        for (p, bytes) in pages {
            stored[p * PAGE_BYTES..][..PAGE_BYTES].copy_from_slice(&bytes);
        }
        let mut b = Bitmap::new(10 << 20, 4096);
        b.load(&stored);
        assert_eq!(b.count(), 4);
        let mut c = Bitmap::new(10 << 20, 4096);
        c.set_chunk(5);
        c.merge(0, a.piece(0, 100));
        c.merge(696, a.piece(696, 1000));
        assert_eq!(c.count(), 5);
        assert!(c.get(2559) && c.get(5));
    }

    #[test]
    fn load_ignores_bits_past_the_end() {
        let mut b = Bitmap::new(3 * 4096, 4096);
        b.load(&[0xff; PAGE_BYTES]);
        assert_eq!(b.count(), 3);
    }
}
