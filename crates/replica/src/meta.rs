//! The metadata file of one replicated device on one node: generations, data state,
//! per-peer bitmaps and the activity log.
//!
//! ```text
//! 0        16 KiB     32 KiB
//! | slot 0 | slot 1   | bitmap of peer 0 (whole pages) | bitmap of peer 1 | ...
//! ```
//! A *slot* holds the header (generations, data state, flags, per-peer bitmap generations)
//! and the activity log, with a sequence number and a CRC32C. Each update writes the slot
//! the older record is in and fdatasyncs it, so a torn write leaves the other slot intact:
//! on open the valid slot with the higher sequence wins. Two slots in one preallocated file
//! rather than `esos_common::fs::replace` because the activity log changes often (each new
//! hot extent): one `pwrite` + `fdatasync` costs far less than a temp file, rename and
//! directory sync, and the bitmaps must live in a file of their own size anyway.
//!
//! Activity log: the extents ([`AL_EXTENT_BYTES`]) writes may be in flight in. An extent is
//! in the durable log before the first write into it is issued; an extent is dropped
//! from the log only after the bitmap pages covering it are durable. After a crash (no
//! clean flag) every logged extent is set in every peer's bitmap: whatever a write in
//! flight left on one copy and not the other is resynced.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use esos_common::be;
use esos_common::sync::LockExt as _;

use crate::arbiter::{MAX_DATA_NODES, MAX_NODE_NAME_LEN, NodeName};
use crate::bitmap::{Bitmap, PAGE_BYTES};
use crate::status::DataState;
use crate::wire::{HISTORY_LEN, data_code, data_from};

const MAGIC: u32 = 0x4553_524d; // "ESRM"
const VERSION: u32 = 1;
/// Bytes of one header slot.
pub const SLOT_BYTES: usize = 16 << 10;
/// Where the first bitmap starts.
const BITMAPS_AT: u64 = 2 * SLOT_BYTES as u64;
/// Bytes of one activity-log extent.
pub const AL_EXTENT_BYTES: u64 = 4 << 20;
/// Most extents in the activity log: what a crash may leave to resync (4 GiB).
pub const AL_MAX_EXTENTS: usize = 1024;
/// Most peers one metadata file keeps a bitmap for.
pub const MAX_PEERS: usize = MAX_DATA_NODES - 1;

/// Flag: the device was shut down cleanly (the activity log is empty and the bitmaps are
/// on disk).
pub const FLAG_CLEAN: u8 = 1 << 0;
/// Flag: this node is primary now.
pub const FLAG_PRIMARY: u8 = 1 << 1;
/// Flag: this node stopped while primary and has not resynced with a peer since.
pub const FLAG_CRASHED_PRIMARY: u8 = 1 << 2;

// Slot layout (big-endian).
const AT_SEQ: usize = 8;
const AT_SIZE: usize = 16;
const AT_CHUNK: usize = 24;
const AT_DATA: usize = 28;
const AT_FLAGS: usize = 29;
const AT_NPEERS: usize = 30;
const AT_CURRENT: usize = 32;
const AT_HISTORY: usize = 40;
const AT_PEERS: usize = AT_HISTORY + 8 * HISTORY_LEN;
const PEER_BYTES: usize = 64 + 8;
const AT_AL_COUNT: usize = AT_PEERS + MAX_PEERS * PEER_BYTES;
const AT_AL: usize = AT_AL_COUNT + 4;
const AT_CRC: usize = SLOT_BYTES - 4;
const _: () = assert!(AT_AL + 8 * AL_MAX_EXTENTS <= AT_CRC);
const _: () = assert!(MAX_NODE_NAME_LEN < 64);

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata {path}: {reason}")]
    Mismatch { path: PathBuf, reason: String },
}

/// A peer's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMeta {
    pub name: NodeName,
    /// The generation the peer's copy had when this node went on without it; 0 while the
    /// peer is in sync (or was never).
    pub bitmap_gen: u64,
}

/// The header: everything but the bitmaps and the activity log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub size_bytes: u64,
    pub chunk_bytes: u32,
    pub data: DataState,
    pub flags: u8,
    /// Generation of the data held now; 0 before the first promotion.
    pub current: u64,
    /// Earlier generations, newest first.
    pub history: [u64; HISTORY_LEN],
    pub peers: Vec<PeerMeta>,
}

impl Header {
    /// Starts a new generation: the current one goes into the history, and becomes the
    /// bitmap generation of every peer in `left_behind` not already behind.
    pub fn new_generation(&mut self, generation: u64, left_behind: &[NodeName]) {
        for p in &mut self.peers {
            if left_behind.contains(&p.name) && p.bitmap_gen == 0 {
                p.bitmap_gen = self.current;
            }
        }
        if self.current != 0 {
            self.history.rotate_right(1);
            self.history[0] = self.current;
        }
        self.current = generation;
    }

    /// Takes `generation` as the current one (a resync target at the end of its resync).
    pub fn adopt(&mut self, generation: u64) {
        if generation != self.current {
            self.new_generation(generation, &[]);
        }
    }

    pub fn peer(&self, name: &NodeName) -> Option<&PeerMeta> {
        self.peers.iter().find(|p| &p.name == name)
    }

    pub fn peer_mut(&mut self, name: &NodeName) -> Option<&mut PeerMeta> {
        self.peers.iter_mut().find(|p| &p.name == name)
    }
}

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The file did not exist.
    pub created: bool,
    /// The last run did not shut down cleanly: its activity log was merged into the bitmaps.
    pub crashed: bool,
}

#[derive(Debug)]
struct Inner {
    hdr: Header,
    seq: u64,
    bitmaps: Vec<Bitmap>,
    /// Extent number → writes in flight in it; every key is in the durable log.
    al: HashMap<u64, u32>,
    /// Extents in least-recently-entered order (eviction candidates first).
    al_order: Vec<u64>,
}

/// The metadata of one device, shared by its tasks. Reads and in-memory changes take a
/// short lock; durable writes are serialised by an async lock and run on blocking threads.
#[derive(Debug)]
pub struct Meta {
    path: PathBuf,
    file: Arc<File>,
    inner: Mutex<Inner>,
    io: tokio::sync::Mutex<()>,
    al_freed: tokio::sync::Notify,
}

/// Writes in flight in some extents: dropping it lets the extents leave the log.
#[derive(Debug)]
pub struct AlGuard<'a> {
    meta: &'a Meta,
    extents: std::ops::RangeInclusive<u64>,
}

impl Drop for AlGuard<'_> {
    fn drop(&mut self) {
        let mut i = self.meta.inner.locked();
        for e in self.extents.clone() {
            let n =
                i.al.get_mut(&e)
                    .expect("an entered extent stays in the log");
            *n -= 1;
        }
        drop(i);
        self.meta.al_freed.notify_waiters();
    }
}

fn encode_slot(i: &Inner) -> Vec<u8> {
    let mut s = vec![0u8; SLOT_BYTES];
    let h = &i.hdr;
    be::put_u32(&mut s, 0, MAGIC);
    be::put_u32(&mut s, 4, VERSION);
    be::put_u64(&mut s, AT_SEQ, i.seq);
    be::put_u64(&mut s, AT_SIZE, h.size_bytes);
    be::put_u32(&mut s, AT_CHUNK, h.chunk_bytes);
    s[AT_DATA] = data_code(h.data);
    s[AT_FLAGS] = h.flags;
    s[AT_NPEERS] = h.peers.len() as u8;
    be::put_u64(&mut s, AT_CURRENT, h.current);
    for (k, g) in h.history.iter().enumerate() {
        be::put_u64(&mut s, AT_HISTORY + 8 * k, *g);
    }
    for (k, p) in h.peers.iter().enumerate() {
        let at = AT_PEERS + k * PEER_BYTES;
        let name = p.name.as_str().as_bytes();
        s[at] = name.len() as u8;
        s[at + 1..at + 1 + name.len()].copy_from_slice(name);
        be::put_u64(&mut s, at + 64, p.bitmap_gen);
    }
    assert!(i.al.len() <= AL_MAX_EXTENTS, "activity log over its bound");
    be::put_u32(&mut s, AT_AL_COUNT, i.al.len() as u32);
    let mut extents: Vec<u64> = i.al.keys().copied().collect();
    extents.sort_unstable();
    for (k, e) in extents.iter().enumerate() {
        be::put_u64(&mut s, AT_AL + 8 * k, *e);
    }
    let crc = crc32c::crc32c(&s[..AT_CRC]);
    be::put_u32(&mut s, AT_CRC, crc);
    s
}

/// A valid slot: (sequence, header, logged extents).
fn decode_slot(s: &[u8]) -> Option<(u64, Header, Vec<u64>)> {
    if s.len() != SLOT_BYTES
        || be::u32_at(s, 0) != MAGIC
        || be::u32_at(s, 4) != VERSION
        || be::u32_at(s, AT_CRC) != crc32c::crc32c(&s[..AT_CRC])
    {
        return None;
    }
    let npeers = usize::from(s[AT_NPEERS]);
    let nal = be::u32_at(s, AT_AL_COUNT) as usize;
    if npeers > MAX_PEERS || nal > AL_MAX_EXTENTS {
        return None;
    }
    let mut peers = Vec::new();
    for k in 0..npeers {
        let at = AT_PEERS + k * PEER_BYTES;
        let n = usize::from(s[at]).min(MAX_NODE_NAME_LEN);
        let name = std::str::from_utf8(&s[at + 1..at + 1 + n]).ok()?;
        peers.push(PeerMeta {
            name: NodeName::new(name)?,
            bitmap_gen: be::u64_at(s, at + 64),
        });
    }
    let mut history = [0; HISTORY_LEN];
    for (k, g) in history.iter_mut().enumerate() {
        *g = be::u64_at(s, AT_HISTORY + 8 * k);
    }
    let hdr = Header {
        size_bytes: be::u64_at(s, AT_SIZE),
        chunk_bytes: be::u32_at(s, AT_CHUNK),
        data: data_from(s[AT_DATA])?,
        flags: s[AT_FLAGS],
        current: be::u64_at(s, AT_CURRENT),
        history,
        peers,
    };
    let al = (0..nal).map(|k| be::u64_at(s, AT_AL + 8 * k)).collect();
    Some((be::u64_at(s, AT_SEQ), hdr, al))
}

impl Meta {
    /// Opens (or creates) the metadata of a device of `size_bytes` replicated to `peers`.
    /// After a crash the activity log is merged into every bitmap before this returns.
    pub fn open(
        path: &Path,
        size_bytes: u64,
        chunk_bytes: u32,
        peers: &[NodeName],
    ) -> Result<(Meta, Opened), MetaError> {
        let io = |source| MetaError::Io {
            path: path.to_owned(),
            source,
        };
        let mismatch = |reason: String| MetaError::Mismatch {
            path: path.to_owned(),
            reason,
        };
        if peers.len() > MAX_PEERS {
            return Err(mismatch(format!(
                "{} peers; at most {MAX_PEERS}",
                peers.len()
            )));
        }
        if chunk_bytes < 4096 || !chunk_bytes.is_power_of_two() {
            return Err(mismatch(format!(
                "chunk size {chunk_bytes} is not a power of two of at least 4096"
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let chunks = size_bytes.div_ceil(u64::from(chunk_bytes));
        let bm_len = Bitmap::byte_len(chunks);
        let total = BITMAPS_AT + (MAX_PEERS * bm_len) as u64;
        let found = if file.metadata().map_err(io)?.len() >= BITMAPS_AT {
            let mut best: Option<(u64, Header, Vec<u64>)> = None;
            for k in 0..2u64 {
                let mut s = vec![0u8; SLOT_BYTES];
                file.read_exact_at(&mut s, k * SLOT_BYTES as u64)
                    .map_err(io)?;
                if let Some(d) = decode_slot(&s)
                    && best.as_ref().is_none_or(|b| d.0 > b.0)
                {
                    best = Some(d);
                }
            }
            best
        } else {
            None
        };
        let created = found.is_none();
        if created && file.metadata().map_err(io)?.len() > 0 {
            return Err(mismatch("no valid header slot".into()));
        }
        let (seq, mut hdr, al) = found.unwrap_or_else(|| {
            (
                0,
                Header {
                    size_bytes,
                    chunk_bytes,
                    data: DataState::Inconsistent,
                    flags: FLAG_CLEAN,
                    current: 0,
                    history: [0; HISTORY_LEN],
                    peers: vec![],
                },
                vec![],
            )
        });
        if hdr.size_bytes != size_bytes || hdr.chunk_bytes != chunk_bytes {
            return Err(mismatch(format!(
                "made for {} bytes in {}-byte chunks, the device is {size_bytes} bytes in \
                 {chunk_bytes}-byte chunks",
                hdr.size_bytes, hdr.chunk_bytes
            )));
        }
        file.set_len(total.max(file.metadata().map_err(io)?.len()))
            .map_err(io)?;
        // Bitmaps stay at their slot index; a peer renamed in the config starts over with
        // no bitmap generation, which the generation comparison turns into a full sync.
        let mut bitmaps = Vec::new();
        let old_peers = std::mem::take(&mut hdr.peers);
        for (k, name) in peers.iter().enumerate() {
            let mut b = Bitmap::new(size_bytes, chunk_bytes);
            match old_peers.get(k) {
                Some(p) if &p.name == name => {
                    let mut stored = vec![0u8; bm_len];
                    file.read_exact_at(&mut stored, BITMAPS_AT + (k * bm_len) as u64)
                        .map_err(io)?;
                    b.load(&stored);
                    hdr.peers.push(p.clone());
                }
                _ => {
                    b.mark_all_dirty();
                    hdr.peers.push(PeerMeta {
                        name: name.clone(),
                        bitmap_gen: 0,
                    });
                }
            }
            bitmaps.push(b);
        }
        let crashed = !created && hdr.flags & FLAG_CLEAN == 0;
        if crashed {
            for e in &al {
                for b in &mut bitmaps {
                    b.set_range(e * AL_EXTENT_BYTES, AL_EXTENT_BYTES);
                }
            }
            if hdr.flags & FLAG_PRIMARY != 0 {
                hdr.flags |= FLAG_CRASHED_PRIMARY;
            }
        }
        hdr.flags &= !(FLAG_CLEAN | FLAG_PRIMARY);
        let meta = Meta {
            path: path.to_owned(),
            file: Arc::new(file),
            inner: Mutex::new(Inner {
                hdr,
                seq,
                bitmaps,
                al: HashMap::new(),
                al_order: Vec::new(),
            }),
            io: tokio::sync::Mutex::new(()),
            al_freed: tokio::sync::Notify::new(),
        };
        // The merged bitmaps are durable before the (now empty) log that fed them.
        meta.write_bitmaps_blocking().map_err(io)?;
        meta.write_slot_blocking().map_err(io)?;
        Ok((meta, Opened { created, crashed }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of the header.
    pub fn header(&self) -> Header {
        self.inner.locked().hdr.clone()
    }

    /// The data state (without copying the header: read on every I/O).
    pub fn data(&self) -> DataState {
        self.inner.locked().hdr.data
    }

    fn peer_index(i: &Inner, peer: &NodeName) -> Option<usize> {
        i.hdr.peers.iter().position(|p| &p.name == peer)
    }

    /// Runs `f` on the bitmap towards `peer` (none when the peer is unknown).
    pub fn with_bitmap<R>(&self, peer: &NodeName, f: impl FnOnce(&mut Bitmap) -> R) -> Option<R> {
        let mut i = self.inner.locked();
        let k = Self::peer_index(&i, peer)?;
        Some(f(&mut i.bitmaps[k]))
    }

    /// Sets the chunks of `[offset, offset + len)` towards `peer`. Callers hold an
    /// [`AlGuard`] for the range, so the bits reach the disk before the extent leaves the
    /// log.
    pub fn set_dirty(&self, peer: &NodeName, offset: u64, len: u64) {
        self.with_bitmap(peer, |b| b.set_range(offset, len));
    }

    /// Sets every extent of the activity log towards `peer`: a peer lost without warning
    /// (its node may have crashed) may have lost writes it acknowledged from its volatile
    /// cache, and those are among the hot extents.
    pub fn set_active_dirty(&self, peer: &NodeName) {
        let mut i = self.inner.locked();
        let Some(k) = Self::peer_index(&i, peer) else {
            return;
        };
        let extents: Vec<u64> = i.al.keys().copied().collect();
        for e in extents {
            i.bitmaps[k].set_range(e * AL_EXTENT_BYTES, AL_EXTENT_BYTES);
        }
    }

    /// Bytes that may differ towards `peer`.
    pub fn out_of_sync_bytes(&self, peer: &NodeName) -> u64 {
        self.with_bitmap(peer, |b| b.count() * b.chunk_bytes())
            .unwrap_or(0)
    }

    /// Changes the header in memory and makes it durable.
    pub async fn update(&self, f: impl FnOnce(&mut Header)) -> Result<(), MetaError> {
        let _io = self.io.lock().await;
        f(&mut self.inner.locked().hdr);
        self.write_slot().await
    }

    /// Makes the changed bitmap pages durable.
    pub async fn persist_bitmaps(&self) -> Result<(), MetaError> {
        let _io = self.io.lock().await;
        self.write_bitmaps().await
    }

    /// Enters the extents of `[offset, offset + len)` into the activity log, durably, before
    /// a write into them is issued; waits while the log is full of extents with writes in
    /// flight.
    pub async fn al_enter(&self, offset: u64, len: u64) -> Result<AlGuard<'_>, MetaError> {
        assert!(len > 0, "an empty range enters no extent");
        let extents = offset / AL_EXTENT_BYTES..=(offset + len - 1) / AL_EXTENT_BYTES;
        assert!(
            extents.clone().count() <= AL_MAX_EXTENTS / 2,
            "a write larger than half the activity log"
        );
        loop {
            let freed = self.al_freed.notified();
            if self.try_fast_enter(&extents) {
                return Ok(AlGuard {
                    meta: self,
                    extents,
                });
            }
            let io = self.io.lock().await;
            if self.try_fast_enter(&extents) {
                return Ok(AlGuard {
                    meta: self,
                    extents,
                });
            }
            let evicted = {
                let mut i = self.inner.locked();
                let missing = extents.clone().filter(|e| !i.al.contains_key(e)).count();
                let need = (i.al.len() + missing).saturating_sub(AL_MAX_EXTENTS);
                let victims: Vec<u64> = i
                    .al_order
                    .iter()
                    .copied()
                    .filter(|e| i.al[e] == 0 && !extents.contains(e))
                    .take(need)
                    .collect();
                if victims.len() < need {
                    None
                } else {
                    for v in &victims {
                        i.al.remove(v);
                    }
                    i.al_order.retain(|e| !victims.contains(e));
                    for e in extents.clone() {
                        *i.al.entry(e).or_insert(0) += 1;
                        i.al_order.retain(|x| *x != e);
                        i.al_order.push(e);
                    }
                    Some(victims)
                }
            };
            let Some(victims) = evicted else {
                drop(io);
                freed.await;
                continue;
            };
            let guard = AlGuard {
                meta: self,
                extents,
            };
            // Evicted extents' bits first, then the log without them and with the new ones.
            if !victims.is_empty() {
                self.write_bitmaps().await?;
            }
            self.write_slot().await?;
            drop(io);
            return Ok(guard);
        }
    }

    fn try_fast_enter(&self, extents: &std::ops::RangeInclusive<u64>) -> bool {
        let mut i = self.inner.locked();
        if !extents.clone().all(|e| i.al.contains_key(&e)) {
            return false;
        }
        for e in extents.clone() {
            *i.al.get_mut(&e).expect("checked above") += 1;
        }
        true
    }

    /// Extents in the log now.
    pub fn al_len(&self) -> usize {
        self.inner.locked().al.len()
    }

    /// Clean stop: bitmaps durable, the log emptied, the clean flag set. Writes still in
    /// flight keep their extents logged (and the flag unset): their outcome is unknown.
    pub async fn close(&self) -> Result<(), MetaError> {
        let _io = self.io.lock().await;
        self.write_bitmaps().await?;
        {
            let mut i = self.inner.locked();
            i.al.retain(|_, n| *n > 0);
            let busy = i.al.clone();
            i.al_order.retain(|e| busy.contains_key(e));
            if i.al.is_empty() {
                i.hdr.flags |= FLAG_CLEAN;
            }
        }
        self.write_slot().await
    }

    async fn write_slot(&self) -> Result<(), MetaError> {
        let (at, bytes) = self.next_slot();
        let file = self.file.clone();
        self.blocking(move || {
            file.write_all_at(&bytes, at)?;
            file.sync_data()
        })
        .await
    }

    async fn write_bitmaps(&self) -> Result<(), MetaError> {
        let pages = self.dirty_pages();
        if pages.is_empty() {
            return Ok(());
        }
        let file = self.file.clone();
        self.blocking(move || {
            for (at, bytes) in pages {
                file.write_all_at(&bytes, at)?;
            }
            file.sync_data()
        })
        .await
    }

    fn next_slot(&self) -> (u64, Vec<u8>) {
        let mut i = self.inner.locked();
        i.seq += 1;
        ((i.seq % 2) * SLOT_BYTES as u64, encode_slot(&i))
    }

    fn dirty_pages(&self) -> Vec<(u64, Vec<u8>)> {
        let mut i = self.inner.locked();
        let chunks = i.hdr.size_bytes.div_ceil(u64::from(i.hdr.chunk_bytes));
        let bm_len = Bitmap::byte_len(chunks) as u64;
        let mut out = Vec::new();
        for (k, b) in i.bitmaps.iter_mut().enumerate() {
            for (p, bytes) in b.take_dirty_pages() {
                out.push((
                    BITMAPS_AT + k as u64 * bm_len + (p * PAGE_BYTES) as u64,
                    bytes,
                ));
            }
        }
        out
    }

    fn write_bitmaps_blocking(&self) -> std::io::Result<()> {
        for (at, bytes) in self.dirty_pages() {
            self.file.write_all_at(&bytes, at)?;
        }
        self.file.sync_data()
    }

    fn write_slot_blocking(&self) -> std::io::Result<()> {
        let (at, bytes) = self.next_slot();
        self.file.write_all_at(&bytes, at)?;
        self.file.sync_data()
    }

    async fn blocking(
        &self,
        f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), MetaError> {
        let r = tokio::task::spawn_blocking(f)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        r.map_err(|source| MetaError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    const SIZE: u64 = 64 << 20;

    #[tokio::test]
    async fn header_survives_reopen_and_a_torn_newest_slot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let (m, o) = Meta::open(&path, SIZE, 65536, &[n("b")]).unwrap();
        assert!(o.created && !o.crashed);
        m.update(|h| {
            h.new_generation(11, &[]);
            h.data = DataState::UpToDate;
        })
        .await
        .unwrap();
        m.update(|h| h.new_generation(22, &[n("b")])).await.unwrap();
        m.close().await.unwrap();
        drop(m);
        let (m, o) = Meta::open(&path, SIZE, 65536, &[n("b")]).unwrap();
        assert!(!o.created && !o.crashed);
        let h = m.header();
        assert_eq!(
            (h.current, h.history[0], h.data),
            (22, 11, DataState::UpToDate)
        );
        assert_eq!(h.peer(&n("b")).unwrap().bitmap_gen, 11);
        m.close().await.unwrap();
        let seq = m.inner.locked().seq;
        drop(m);
        // Tear the newest slot: the other one is taken.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xAB; 100], (seq % 2) * SLOT_BYTES as u64 + 200)
            .unwrap();
        let (m, _) = Meta::open(&path, SIZE, 65536, &[n("b")]).unwrap();
        assert_eq!(m.header().current, 22);
        assert!(Meta::open(&path, SIZE * 2, 65536, &[n("b")]).is_err());
    }

    #[tokio::test]
    async fn a_crash_sets_every_logged_extent_in_every_bitmap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let peers = [n("b"), n("c")];
        let (m, _) = Meta::open(&path, SIZE, 65536, &peers).unwrap();
        {
            let _g1 = m.al_enter(0, 4096).await.unwrap();
            let _g2 = m.al_enter(9 << 20, 8 << 20).await.unwrap();
            assert_eq!(m.al_len(), 4);
            m.set_dirty(&n("b"), 0, 4096);
        }
        m.update(|h| h.flags |= FLAG_PRIMARY).await.unwrap();
        drop(m); // no close: a crash
        let (m, o) = Meta::open(&path, SIZE, 65536, &peers).unwrap();
        assert!(o.crashed);
        assert_ne!(m.header().flags & FLAG_CRASHED_PRIMARY, 0);
        for p in &peers {
            // Extents 0, 2, 3, 4: 16 MiB in 64 KiB chunks.
            assert_eq!(m.out_of_sync_bytes(p), 16 << 20, "{p}");
        }
        m.close().await.unwrap();
        drop(m);
        let (m, o) = Meta::open(&path, SIZE, 65536, &peers).unwrap();
        assert!(!o.crashed);
        assert_eq!(m.out_of_sync_bytes(&n("c")), 16 << 20);
    }

    #[tokio::test]
    async fn a_full_log_evicts_idle_extents_after_saving_their_bits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let size = (AL_MAX_EXTENTS as u64 + 8) * AL_EXTENT_BYTES;
        let (m, _) = Meta::open(&path, size, 1 << 20, &[n("b")]).unwrap();
        for e in 0..AL_MAX_EXTENTS as u64 {
            let _g = m.al_enter(e * AL_EXTENT_BYTES, 4096).await.unwrap();
        }
        {
            let _g = m.al_enter(0, 4096).await.unwrap();
            m.set_dirty(&n("b"), 0, 4096);
        }
        let busy = m.al_enter(AL_EXTENT_BYTES, 4096).await.unwrap();
        // Extent 0 is the oldest idle one: its bit is saved, then it leaves the log.
        let g = m
            .al_enter(AL_MAX_EXTENTS as u64 * AL_EXTENT_BYTES, 4096)
            .await
            .unwrap();
        assert_eq!(m.al_len(), AL_MAX_EXTENTS);
        assert!(!m.inner.locked().al.contains_key(&0));
        std::mem::forget((busy, g));
        drop(m); // crash: the saved bit and every logged extent are dirty
        let (m, _) = Meta::open(&path, size, 1 << 20, &[n("b")]).unwrap();
        assert!(m.with_bitmap(&n("b"), |b| b.get(0) && !b.get(1)).unwrap());
        assert_eq!(
            m.out_of_sync_bytes(&n("b")),
            AL_MAX_EXTENTS as u64 * AL_EXTENT_BYTES + (1 << 20)
        );
    }
}
