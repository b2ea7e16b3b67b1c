//! Resync, online verify and split-brain resolution over a live link.
//!
//! Resync: the target first sends its own bitmap (what it wrote that the source may lack:
//! a crashed primary's activity log, a split-brain side's writes), the source ORs it into
//! its bitmap towards the target, then walks the bitmap: each set chunk is read under the
//! range lock (application writes to it are ordered around the copy), sent as data (or as
//! a zeroing when the chunk is unmapped and reads as zeros), [`RESYNC_WINDOW`] chunks at a
//! time, and its bit cleared once the target acknowledged; the bitmap is saved every
//! [`PERSIST_EVERY_CHUNKS`] chunks, so a restart continues from the bits left. Application
//! writes go to the target throughout.
//! When no bit is left (checked with no write in flight), the source sends `ResyncDone`
//! with its generation, which the target takes; a primary records the target up to date.

use std::sync::Arc;
use std::time::{Duration, Instant};

use esos_block::{BlockDevice as _, SharedBuf};
use esos_common::sync::LockExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::device::{Peer, Replica, ReplicaError};
use crate::frame::FrameError;
use crate::generation::Decision;
use crate::io::acked;
use crate::link::{Conn, Reply};
use crate::peer::SessionError;
use crate::status::{DataState, LinkState, Role};
use crate::wire::{MAX_BITMAP_PIECE_BYTES, Msg};

/// Chunks a resync has in flight at once (latency would bound a one-by-one copy).
pub const RESYNC_WINDOW: usize = 16;
/// Chunks copied between two saves of the bitmap.
pub const PERSIST_EVERY_CHUNKS: u64 = 64;

/// Paces a byte stream at `rate` bytes per second (0: unlimited).
#[derive(Debug)]
struct Pacer {
    rate: u64,
    next: Instant,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            next: Instant::now(),
        }
    }

    async fn take(&mut self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let now = Instant::now();
        if self.next < now {
            self.next = now;
        }
        tokio::time::sleep_until(self.next.into()).await;
        self.next += Duration::from_secs_f64(bytes as f64 / self.rate as f64);
    }
}

impl Replica {
    /// Target: sends this node's bitmap towards `peer`, in pieces, the last one marked.
    pub(crate) fn send_bitmap(&self, peer: &Peer, conn: &Conn) {
        let chunks_per_piece = (MAX_BITMAP_PIECE_BYTES * 8) as u64;
        let chunks = self
            .meta
            .with_bitmap(&peer.name, |b| b.chunks())
            .unwrap_or(0);
        let mut first = 0;
        loop {
            let bits = self
                .meta
                .with_bitmap(&peer.name, |b| {
                    b.piece(first, MAX_BITMAP_PIECE_BYTES).to_vec()
                })
                .unwrap_or_default();
            let last = first + chunks_per_piece >= chunks;
            conn.send(Msg::Bitmap {
                first_chunk: first,
                last,
                bits,
            });
            if last {
                break;
            }
            first += chunks_per_piece;
        }
    }

    /// Source: merges a piece of the target's bitmap; after the last one, resyncs.
    pub(crate) fn on_bitmap(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        conn: &Arc<Conn>,
        first_chunk: u64,
        last: bool,
        bits: &[u8],
    ) -> Result<(), SessionError> {
        let chunks = self
            .meta
            .with_bitmap(&peer.name, |b| b.chunks())
            .unwrap_or(0);
        if first_chunk % 8 != 0 || first_chunk > chunks {
            return Err(SessionError::Frame(FrameError::Invalid {
                field: "bitmap.first_chunk",
                reason: format!("{first_chunk} (device has {chunks} chunks)"),
            }));
        }
        self.meta
            .with_bitmap(&peer.name, |b| b.merge(first_chunk, bits));
        if last {
            let full = peer.info.locked().resync_after_bitmap.take();
            if let Some(full) = full {
                let (r, p, c) = (self.clone(), peer.clone(), conn.clone());
                self.spawn(async move { r.run_resync(p, c, full).await });
            }
        }
        Ok(())
    }

    /// Source: copies every chunk set towards `peer`, then ends the resync.
    pub(crate) async fn run_resync(self: Arc<Self>, peer: Arc<Peer>, conn: Arc<Conn>, full: bool) {
        if full {
            self.meta.with_bitmap(&peer.name, |b| b.set_all());
        }
        let chunk = u64::from(self.cfg.chunk_bytes);
        let total = self.meta.out_of_sync_bytes(&peer.name);
        {
            let mut i = peer.info.locked();
            i.link = LinkState::SyncSource;
            i.replicating = true;
            i.sync_total_bytes = total;
            i.sync_done_bytes = 0;
        }
        tracing::info!(
            "replicated device {}: resync to {}: {total} bytes",
            self.cfg.device,
            peer.name
        );
        let started = Instant::now();
        let mut pacer = Pacer::new(self.cfg.resync_rate_bytes_per_sec);
        let mut done = 0u64;
        let mut unsaved = 0u64;
        loop {
            let mut window = FuturesUnordered::new();
            let mut next = 0;
            let mut failed = false;
            loop {
                while !failed && window.len() < RESYNC_WINDOW && !conn.is_closed() {
                    let Some(c) = self
                        .meta
                        .with_bitmap(&peer.name, |b| b.next_set(next))
                        .flatten()
                    else {
                        break;
                    };
                    next = c + 1;
                    let offset = c * chunk;
                    let len = chunk.min(self.size_bytes - offset);
                    pacer.take(len).await;
                    let (r, conn) = (&self, &conn);
                    window.push(async move { (c, len, r.copy_chunk(conn, offset, len).await) });
                }
                let Some((c, len, ok)) = window.next().await else {
                    break;
                };
                if !ok {
                    failed = true;
                    continue;
                }
                self.meta.with_bitmap(&peer.name, |b| b.clear_chunk(c));
                done += len;
                {
                    let mut i = peer.info.locked();
                    i.sync_done_bytes = done;
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    i.sync_rate_bytes_per_sec = (done as f64 / secs) as u64;
                }
                unsaved += 1;
                if unsaved >= PERSIST_EVERY_CHUNKS {
                    let _ = self.meta.persist_bitmaps().await;
                    unsaved = 0;
                }
            }
            if failed || conn.is_closed() {
                conn.close();
                let _ = self.meta.persist_bitmaps().await;
                return;
            }
            let _ = self.meta.persist_bitmaps().await;
            // With no write in flight, an empty bitmap means the target holds it all.
            let _gate = self.io_gate.write().await;
            if conn.is_closed() {
                return;
            }
            if self.meta.out_of_sync_bytes(&peer.name) > 0 {
                continue;
            }
            let _g = self.gen_lock.lock().await;
            let generation = self.meta.header().current;
            conn.send(Msg::ResyncDone { generation });
            let name = peer.name.clone();
            let _ = self
                .meta
                .update(|h| {
                    if let Some(p) = h.peer_mut(&name) {
                        p.bitmap_gen = 0;
                    }
                })
                .await;
            self.clear_crashed().await;
            {
                let mut i = peer.info.locked();
                i.link = LinkState::Connected;
                i.replicating = true;
                i.sync_rate_bytes_per_sec = 0;
                i.data = Some(self.data());
                i.report = None;
                i.decision = Some(Decision::InSync);
            }
            drop(_g);
            tracing::info!(
                "replicated device {}: resync to {} done ({done} bytes in {:?})",
                self.cfg.device,
                peer.name,
                started.elapsed()
            );
            self.record_in_sync(&peer).await;
            return;
        }
    }

    /// Sends one chunk to the resync target; true once it acknowledged.
    async fn copy_chunk(&self, conn: &Conn, offset: u64, len: u64) -> bool {
        let _range = self.ranges.lock(offset, len).await;
        let unmapped = self.local.discard_zeroes()
            && matches!(
                self.local.allocation(offset, len).await.as_deref(),
                Ok([e]) if !e.mapped && e.len >= len
            );
        let reply = if unmapped {
            conn.request(|seq| Msg::ResyncDiscard { seq, offset, len })
                .await
        } else {
            let (r, buf) = self.local.read(offset, vec![0; len as usize]).await;
            if let Err(e) = r {
                tracing::error!("replicated device {}: resync read: {e}", self.cfg.device);
                return false;
            }
            let data = SharedBuf::from_vec(buf);
            conn.request(|seq| Msg::ResyncData { seq, offset, data })
                .await
        };
        acked(&reply)
    }

    /// Target: the source sent everything; take its generation.
    pub(crate) async fn finish_target(&self, peer: &Peer, generation: u64) {
        let (ok, source_up) = {
            let i = peer.info.locked();
            (
                matches!(i.link, LinkState::SyncTarget | LinkState::Connected),
                i.data == Some(DataState::UpToDate),
            )
        };
        if !ok || generation == 0 {
            return;
        }
        let name = peer.name.clone();
        self.meta.with_bitmap(&name, |b| b.clear_all());
        let _ = self.meta.persist_bitmaps().await;
        let _ = self
            .meta
            .update(|h| {
                h.adopt(generation);
                h.data = if source_up {
                    DataState::UpToDate
                } else {
                    DataState::Outdated
                };
                h.flags &= !crate::meta::FLAG_CRASHED_PRIMARY;
                if let Some(p) = h.peer_mut(&name) {
                    p.bitmap_gen = 0;
                }
            })
            .await;
        {
            let mut i = peer.info.locked();
            i.link = LinkState::Connected;
            i.replicating = true;
            i.report = None;
            i.decision = Some(Decision::InSync);
        }
        tracing::info!(
            "replicated device {}: resync from {} done, generation {generation:016x}",
            self.cfg.device,
            peer.name
        );
        self.announce();
    }

    /// Compares every chunk with `peer` by CRC32C; a mismatch sets its bit. A primary then
    /// resyncs the mismatched chunks to the peer.
    pub(crate) async fn run_verify(self: Arc<Self>, peer: Arc<Peer>) {
        let Some(conn) = peer.conn() else { return };
        let chunk = u64::from(self.cfg.chunk_bytes);
        {
            let mut i = peer.info.locked();
            if i.link != LinkState::Connected {
                return;
            }
            i.link = LinkState::Verifying;
            i.sync_total_bytes = self.size_bytes;
            i.sync_done_bytes = 0;
            i.verify_mismatched_chunks = 0;
        }
        let started = Instant::now();
        let mut pacer = Pacer::new(self.cfg.resync_rate_bytes_per_sec);
        let mut mismatched = 0;
        let mut offset = 0;
        while offset < self.size_bytes && !conn.is_closed() {
            let len = chunk.min(self.size_bytes - offset);
            pacer.take(len).await;
            let range = self.ranges.lock(offset, len).await;
            let (r, buf) = self.local.read(offset, vec![0; len as usize]).await;
            let mine = crc32c::crc32c(&buf);
            let reply = match r {
                Ok(()) => {
                    conn.request(|seq| Msg::VerifyRequest {
                        seq,
                        offset,
                        len: len as u32,
                        digest: mine,
                    })
                    .await
                }
                Err(_) => Ok(Reply::Digest(!mine)),
            };
            drop(range);
            match reply {
                Ok(Reply::Digest(d)) if d == mine => {}
                Ok(Reply::Digest(_)) => {
                    mismatched += 1;
                    self.meta
                        .with_bitmap(&peer.name, |b| b.set_chunk(offset / chunk));
                }
                _ => break,
            }
            offset += len;
            let mut i = peer.info.locked();
            i.sync_done_bytes = offset;
            i.verify_mismatched_chunks = mismatched;
            let secs = started.elapsed().as_secs_f64().max(0.001);
            i.sync_rate_bytes_per_sec = (offset as f64 / secs) as u64;
        }
        let _ = self.meta.persist_bitmaps().await;
        {
            let mut i = peer.info.locked();
            if i.link == LinkState::Verifying {
                i.link = LinkState::Connected;
            }
            i.sync_rate_bytes_per_sec = 0;
        }
        tracing::info!(
            "replicated device {}: verify with {}: {mismatched} chunks differ",
            self.cfg.device,
            peer.name
        );
        if mismatched > 0 && self.role() == Role::Primary && !conn.is_closed() {
            self.run_resync(peer, conn, false).await;
        }
    }

    /// Ends a split brain with `peer`: this node keeps its data (`keep_local`) or becomes
    /// the sync target. `initiator`: the administrator asked here, so the peer is told.
    pub(crate) async fn resolve_with(
        &self,
        peer: &Peer,
        keep_local: bool,
        initiator: bool,
    ) -> Result<(), ReplicaError> {
        let (conn, decision, peer_role) = {
            let i = peer.info.locked();
            if !matches!(i.link, LinkState::SplitBrain | LinkState::Unrelated) {
                return Err(ReplicaError::Refused(format!(
                    "the link to {} is {}, not split brain",
                    peer.name, i.link
                )));
            }
            (i.conn.clone(), i.decision, i.role)
        };
        let conn =
            conn.ok_or_else(|| ReplicaError::Refused(format!("{} is not connected", peer.name)))?;
        if keep_local && peer_role == Some(Role::Primary) {
            return Err(ReplicaError::Refused(format!(
                "{} is primary: demote it before it becomes a sync target",
                peer.name
            )));
        }
        if !keep_local && self.role() == Role::Primary {
            return Err(ReplicaError::Refused(
                "this node is primary: demote it before it becomes a sync target".into(),
            ));
        }
        if !keep_local && self.data() == DataState::Failed {
            return Err(ReplicaError::Refused("the local device failed".into()));
        }
        if keep_local && !matches!(self.data(), DataState::UpToDate | DataState::Outdated) {
            return Err(ReplicaError::Refused(format!(
                "the local data is {}: it cannot be kept",
                self.data()
            )));
        }
        let full = !matches!(
            decision,
            Some(Decision::SplitBrain {
                bitmaps_usable: true,
                ..
            })
        );
        if keep_local {
            {
                let mut i = peer.info.locked();
                i.link = LinkState::SyncSource;
                i.replicating = true;
                i.resync_after_bitmap = Some(full);
                i.report = None;
            }
            if initiator {
                conn.send(Msg::ResyncRequest { sender_keeps: true });
            }
        } else {
            self.meta
                .update(|h| h.data = DataState::Inconsistent)
                .await?;
            {
                let mut i = peer.info.locked();
                i.link = LinkState::SyncTarget;
                i.replicating = false;
                i.report = None;
            }
            if initiator {
                conn.send(Msg::ResyncRequest {
                    sender_keeps: false,
                });
            }
            self.send_bitmap(peer, &conn);
            self.announce();
        }
        tracing::warn!(
            "replicated device {}: split brain with {} resolved: {} keeps its data",
            self.cfg.device,
            peer.name,
            if keep_local { &self.cfg.me } else { &peer.name }
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pacer_keeps_the_rate() {
        let mut p = Pacer::new(1 << 20);
        let t = Instant::now();
        for _ in 0..5 {
            p.take(64 << 10).await;
        }
        // 4 intervals of 62.5 ms at least.
        assert!(
            t.elapsed() >= Duration::from_millis(240),
            "{:?}",
            t.elapsed()
        );
        let mut free = Pacer::new(0);
        let t = Instant::now();
        free.take(1 << 40).await;
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}
