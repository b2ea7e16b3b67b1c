//! The block I/O of a [`Replica`]: only the primary serves, and it acknowledges a write
//! once it is on the local device and on every peer the quorum record calls up to date
//! (protocol C).
//!
//! A write: admission (primary, not down, data up to date), the I/O gate (shared), the
//! range lock (overlapping writes in one order on every copy), the activity log, then the
//! local write and one message per replicated peer at once, sharing one payload. A peer
//! that did not acknowledge is first dropped from the record's up-to-date set with a new
//! generation ([`Replica::exclude`]), then the write's chunks are set in its bitmap; only
//! then, and only with a valid lease, is the write acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use esos_block::{
    BlockDevice, BlockError, BlockErrorKind, BufResult, Extent, IoBuf, SharedBuf, SharedResult,
    SplitBuf, SplitResult,
};
use esos_common::sync::LockExt as _;
use futures_util::future::join_all;

use crate::arbiter::NodeName;
use crate::device::{Peer, Replica, new_generation, unavailable};
use crate::link::{Conn, Reply};
use crate::meta::AL_EXTENT_BYTES;
use crate::status::{DataState, Role};
use crate::wire::{AckStatus, MAX_DATA_BYTES, Msg, WRITE_FUA};

/// Longest piece a discard or zeroing is cut into (each piece enters the activity log).
const MAX_RANGE_PIECE_BYTES: u64 = 64 * AL_EXTENT_BYTES;
/// Pause between two attempts to reach the quorum while I/O waits.
const QUORUM_RETRY: Duration = Duration::from_millis(50);

/// What a replicated write does on each copy.
#[derive(Debug, Clone)]
enum Op {
    Write { data: SharedBuf, fua: bool },
    Discard { len: u64 },
    Zeroes { len: u64 },
}

impl Op {
    fn len(&self) -> u64 {
        match self {
            Op::Write { data, .. } => data.len() as u64,
            Op::Discard { len } | Op::Zeroes { len } => *len,
        }
    }

    fn msg(&self, seq: u64, offset: u64) -> Msg {
        match self {
            Op::Write { data, fua } => Msg::Write {
                seq,
                offset,
                flags: if *fua { WRITE_FUA } else { 0 },
                data: data.clone(),
            },
            Op::Discard { len } => Msg::Discard {
                seq,
                offset,
                len: *len,
            },
            Op::Zeroes { len } => Msg::WriteZeroes {
                seq,
                offset,
                len: *len,
            },
        }
    }
}

/// Whether a peer's answer is a success.
pub(crate) fn acked(r: &Result<Reply, crate::link::LinkDown>) -> bool {
    matches!(r, Ok(Reply::Ack(AckStatus::Ok)))
}

impl Replica {
    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.cfg.io_timeout_ms)
    }

    /// May this node serve initiator I/O now?
    pub(crate) fn check_serving(&self) -> Result<(), BlockError> {
        let st = self.st.locked();
        if st.down {
            return Err(unavailable("the replicated device is down on this node"));
        }
        if st.role != Role::Primary || st.transitioning {
            return Err(unavailable("this node is not the primary of the device"));
        }
        drop(st);
        if self.data() != DataState::UpToDate {
            return Err(unavailable("the local copy is not up to date"));
        }
        Ok(())
    }

    /// Waits (bounded by `deadline`) for a valid lease: nothing is acknowledged without one.
    async fn await_lease(&self, deadline: Instant) -> Result<(), BlockError> {
        loop {
            if self.arbiter.lease_valid() {
                return Ok(());
            }
            if Instant::now() >= deadline || self.role() != Role::Primary {
                return Err(unavailable("this node holds no primary lease"));
            }
            tokio::time::sleep(QUORUM_RETRY).await;
        }
    }

    fn check_range(&self, op: &str, offset: u64, len: u64) -> Result<(), BlockError> {
        let bs = u64::from(self.local.block_size());
        if offset % bs != 0 || len % bs != 0 {
            return Err(BlockError::new(
                BlockErrorKind::Misaligned,
                format!("replicated {op} at {offset}+{len} is not {bs}-byte aligned"),
            ));
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.capacity_bytes())
        {
            return Err(BlockError::new(
                BlockErrorKind::OutOfRange,
                format!("replicated {op} at {offset}+{len} is past the end"),
            ));
        }
        Ok(())
    }

    /// Peers this primary replicates to now, with their connections.
    fn targets(&self) -> Vec<(Arc<Peer>, Arc<Conn>)> {
        self.peers
            .iter()
            .filter_map(|p| {
                let i = p.info.locked();
                match (&i.conn, i.replicating) {
                    (Some(c), true) => Some((p.clone(), c.clone())),
                    _ => None,
                }
            })
            .collect()
    }

    async fn replicated(&self, offset: u64, op: Op) -> Result<(), BlockError> {
        let deadline = self.deadline();
        let len = op.len();
        self.check_serving()?;
        let _gate = self.io_gate.read().await;
        self.check_serving()?;
        let _range = self.ranges.lock(offset, len).await;
        let _al = self
            .meta
            .al_enter(offset, len)
            .await
            .map_err(|e| BlockError::new(BlockErrorKind::Io, e.to_string()))?;
        let targets = self.targets();
        let local = async {
            match &op {
                Op::Write { data, fua } => {
                    self.local.write_shared(offset, data.clone(), *fua).await.0
                }
                Op::Discard { len } => self.local.discard(offset, *len).await,
                Op::Zeroes { len } => self.local.write_zeroes(offset, *len).await,
            }
        };
        let remote = join_all(
            targets
                .iter()
                .map(|(_, c)| c.request(|seq| op.msg(seq, offset))),
        );
        let (local, remote) = tokio::join!(local, remote);
        if let Err(e) = local {
            self.local_failed(&e);
            return Err(e);
        }
        let mut missed = Vec::new();
        for p in &self.peers {
            let ok = targets
                .iter()
                .zip(&remote)
                .any(|((t, _), r)| Arc::ptr_eq(t, p) && acked(r));
            if !ok {
                missed.push(p.clone());
            }
        }
        let mut res = Ok(());
        for p in &missed {
            if let Some(c) = p.conn()
                && targets.iter().any(|(t, _)| Arc::ptr_eq(t, p))
            {
                // It answered with a failure, or its link died: it is not in step.
                c.close();
            }
            if let Err(e) = self.exclude(&p.name, deadline, false).await {
                res = Err(e);
            }
            self.meta.set_dirty(&p.name, offset, len);
        }
        drop(_al);
        res?;
        self.await_lease(deadline).await
    }

    /// Drops `peer` from the record's up-to-date set, with a new generation, before any
    /// write is acknowledged without it. Retries until `deadline` while the quorum cannot
    /// be reached (releasing the generation lock between attempts); then the I/O fails
    /// `Unavailable`.
    /// `unless_back`: do nothing if the peer is connected and in step again (a background
    /// exclusion after a link loss; a write that missed a peer holds the I/O gate, so its
    /// peer cannot have come back meanwhile).
    pub(crate) async fn exclude(
        &self,
        peer: &NodeName,
        deadline: Instant,
        unless_back: bool,
    ) -> Result<(), BlockError> {
        let gave_up = |e: String| unavailable(format!("cannot record that {peer} is behind: {e}"));
        if !self.st.locked().up_to_date.contains(peer) {
            // Already behind (the usual case while a peer is away): no lock to take.
            return Ok(());
        }
        loop {
            let g = tokio::time::timeout_at(deadline.into(), self.gen_lock.lock())
                .await
                .map_err(|_| gave_up("timed out".into()))?;
            if unless_back
                && self.peers.iter().any(|p| {
                    let i = p.info.locked();
                    p.name == *peer && i.conn.is_some() && i.replicating
                })
            {
                return Ok(());
            }
            let (survivors, pending) = {
                let st = self.st.locked();
                if !st.up_to_date.contains(peer) {
                    return Ok(());
                }
                let survivors: Vec<NodeName> = st
                    .up_to_date
                    .iter()
                    .filter(|n| *n != peer)
                    .cloned()
                    .collect();
                let pending = st
                    .pending_exclusion
                    .as_ref()
                    .filter(|(p, _)| p == peer)
                    .map(|(_, g)| *g);
                (survivors, pending)
            };
            // The new generation is durable here first: a crash before the record changes
            // shows up as a split brain to resolve, never as a lost write.
            let generation = match pending {
                Some(g) => g,
                None => {
                    let g = new_generation();
                    self.meta.set_active_dirty(peer);
                    self.meta
                        .update(|h| h.new_generation(g, std::slice::from_ref(peer)))
                        .await
                        .map_err(|e| BlockError::new(BlockErrorKind::Io, e.to_string()))?;
                    self.st.locked().pending_exclusion = Some((peer.clone(), g));
                    g
                }
            };
            let res = tokio::time::timeout_at(
                deadline.into(),
                self.arbiter.set_up_to_date(generation, survivors),
            )
            .await;
            match res {
                Ok(Ok(rec)) => {
                    let mut st = self.st.locked();
                    st.up_to_date = rec.up_to_date;
                    st.pending_exclusion = None;
                    drop(st);
                    drop(g);
                    tracing::warn!(
                        "replicated device {}: going on without {peer} (generation {generation:016x})",
                        self.cfg.device
                    );
                    self.announce();
                    return Ok(());
                }
                Ok(Err(e)) if Instant::now() < deadline && self.role() == Role::Primary => {
                    drop(g);
                    tracing::debug!("replicated device {}: {e}", self.cfg.device);
                    tokio::time::sleep(QUORUM_RETRY).await;
                }
                Ok(Err(e)) => return Err(gave_up(e.to_string())),
                Err(_) => return Err(gave_up("timed out".into())),
            }
        }
    }

    async fn replicated_ranges(
        &self,
        offset: u64,
        len: u64,
        zeroes: bool,
    ) -> Result<(), BlockError> {
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let n = (end - at).min(MAX_RANGE_PIECE_BYTES);
            let op = if zeroes {
                Op::Zeroes { len: n }
            } else {
                Op::Discard { len: n }
            };
            self.replicated(at, op).await?;
            at += n;
        }
        Ok(())
    }

    async fn write_pieces(
        &self,
        offset: u64,
        buf: &SharedBuf,
        fua: bool,
    ) -> Result<(), BlockError> {
        self.check_range("write", offset, buf.len() as u64)?;
        let mut at = 0;
        while at < buf.len() {
            let n = (buf.len() - at).min(MAX_DATA_BYTES);
            let data = if at == 0 && n == buf.len() {
                buf.clone()
            } else {
                buf.slice(at..at + n)
            };
            self.replicated(offset + at as u64, Op::Write { data, fua })
                .await?;
            at += n;
        }
        Ok(())
    }
}

impl BlockDevice for Replica {
    fn block_size(&self) -> u32 {
        self.local.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.local.num_blocks()
    }
    fn read_only(&self) -> bool {
        self.local.read_only()
    }
    fn rotational(&self) -> bool {
        self.local.rotational()
    }
    fn resize(&self, _new_size: u64) -> Result<(), BlockError> {
        Err(BlockError::new(
            BlockErrorKind::Unsupported,
            "a replicated device cannot change size",
        ))
    }
    async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        let deadline = self.deadline();
        if let Err(e) = self
            .check_serving()
            .and_then(|()| self.check_range("read", offset, buf.len() as u64))
        {
            return (Err(e), buf);
        }
        let (r, buf) = self.local.read(offset, buf).await;
        if r.is_err() {
            return (r, buf);
        }
        (self.await_lease(deadline).await, buf)
    }
    async fn read_split(&self, offset: u64, buf: SplitBuf) -> SplitResult {
        let deadline = self.deadline();
        if let Err(e) = self
            .check_serving()
            .and_then(|()| self.check_range("read", offset, buf.len() as u64))
        {
            return (Err(e), buf);
        }
        let (r, buf) = self.local.read_split(offset, buf).await;
        if r.is_err() {
            return (r, buf);
        }
        (self.await_lease(deadline).await, buf)
    }
    async fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BufResult {
        let shared = SharedBuf::from_vec(buf);
        let (r, shared) = self.write_shared(offset, shared, fua).await;
        // A peer's sender may still hold its reference for a moment: copy then.
        let buf = shared
            .try_into_vec()
            .unwrap_or_else(|s| s.as_slice().to_vec());
        (r, buf)
    }
    async fn write_shared(&self, offset: u64, buf: SharedBuf, fua: bool) -> SharedResult {
        let r = self.write_pieces(offset, &buf, fua).await;
        (r, buf)
    }
    async fn flush(&self) -> Result<(), BlockError> {
        let deadline = self.deadline();
        self.check_serving()?;
        let _gate = self.io_gate.read().await;
        let targets = self.targets();
        let remote = join_all(
            targets
                .iter()
                .map(|(_, c)| c.request(|seq| Msg::Flush { seq })),
        );
        let (local, remote) = tokio::join!(self.local.flush(), remote);
        if let Err(e) = local {
            self.local_failed(&e);
            return Err(e);
        }
        for ((p, c), r) in targets.iter().zip(&remote) {
            if !acked(r) {
                // Its copy may not be durable: it leaves the up-to-date set.
                c.close();
                self.exclude(&p.name, deadline, false).await?;
            }
        }
        self.await_lease(deadline).await
    }
    fn supports_discard(&self) -> bool {
        self.local.supports_discard()
    }
    fn discard_zeroes(&self) -> bool {
        self.local.discard_zeroes()
    }
    async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check_range("discard", offset, len)?;
        self.replicated_ranges(offset, len, false).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check_range("write zeroes", offset, len)?;
        self.replicated_ranges(offset, len, true).await
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        self.check_serving()?;
        self.local.allocation(offset, len).await
    }
}
