//! The link to each peer: the node with the smaller name connects, the other accepts;
//! both send a link hello, decide from the two hellos what to do ([`crate::generation`]),
//! then read messages until the link dies (no frame for [`LINK_TIMEOUT`]), and start over.
//!
//! A secondary applies the primary's writes in arrival order per overlapping range (each
//! queued in the range lock as it is read, applied in its own task) and acknowledges each
//! once its local write completed; FUA writes and flushes are durable before the ack.

use std::sync::Arc;
use std::time::Duration;

use esos_block::{BlockDevice as _, BlockError, BlockErrorKind, SharedBuf};
use esos_common::sync::LockExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Semaphore, mpsc};

use crate::device::{Peer, PeerInfo, Replica};
use crate::frame::{self, FrameError};
use crate::generation::{Decision, Side, decide};
use crate::link::{Conn, LINK_TIMEOUT, MAX_IN_FLIGHT, Reply};
use crate::meta::{FLAG_CRASHED_PRIMARY, FLAG_UNCONFIRMED};
use crate::net::{self, HELLO_TIMEOUT, Incoming, Purpose};
use crate::status::{DataState, LinkState, Role};
use crate::wire::{AckStatus, HELLO_CRASHED_PRIMARY, HELLO_UNCONFIRMED, LinkHello, Msg, WRITE_FUA};

/// Longest pause between two connection attempts.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);
/// The slowest replication link a frame's payload is given time for.
const MIN_LINK_BYTES_PER_SEC: u64 = 4 << 20;
/// Pause after a link ended before the next attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("no frame for {LINK_TIMEOUT:?}")]
    Silent,
    #[error("closed by the peer")]
    Closed,
    #[error("{0}")]
    Protocol(String),
}

/// What a secondary does with a received write-like message.
enum Apply {
    Write { data: SharedBuf, fua: bool },
    Discard { len: u64 },
    Zeroes { len: u64 },
}

impl Apply {
    fn len(&self) -> u64 {
        match self {
            Apply::Write { data, .. } => data.len() as u64,
            Apply::Discard { len } | Apply::Zeroes { len } => *len,
        }
    }
}

fn side(h: &LinkHello) -> Side {
    Side {
        name: h.node.clone(),
        data: h.data,
        current: h.current,
        bitmap: h.bitmap,
        history: h.history,
        crashed_primary: h.flags & HELLO_CRASHED_PRIMARY != 0,
        unconfirmed: h.flags & HELLO_UNCONFIRMED != 0,
    }
}

/// Reads one message: its header within [`LINK_TIMEOUT`] (pings keep an idle link
/// talking), its payload within the same plus the time a slow link takes to carry it.
async fn read_msg(rd: &mut OwnedReadHalf) -> Result<Msg, SessionError> {
    let mut h = [0u8; frame::HEADER_LEN];
    match tokio::time::timeout(LINK_TIMEOUT, rd.read_exact(&mut h)).await {
        Err(_) => return Err(SessionError::Silent),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(SessionError::Closed);
        }
        Ok(r) => r.map_err(FrameError::from)?,
    };
    let hdr = frame::decode_header(&h)?;
    let carry = Duration::from_secs_f64(f64::from(hdr.len) / MIN_LINK_BYTES_PER_SEC as f64);
    let payload = match tokio::time::timeout(
        LINK_TIMEOUT + carry,
        frame::read_payload(rd, hdr.len as usize),
    )
    .await
    {
        Err(_) => return Err(SessionError::Silent),
        Ok(r) => r.map_err(FrameError::from)?,
    };
    frame::check(&h, &hdr, &payload)?;
    Ok(Msg::decode(hdr.kind, payload)?)
}

/// The hello fields the decision depends on are unchanged.
fn same_state(a: &LinkHello, b: &LinkHello) -> bool {
    (a.role, a.data, a.current, a.bitmap, a.history, a.flags)
        == (b.role, b.data, b.current, b.bitmap, b.history, b.flags)
}

fn failed(kind: BlockErrorKind, message: impl Into<String>) -> AckStatus {
    AckStatus::Failed {
        kind,
        message: message.into(),
    }
}

/// Stops the session's helper tasks when the session ends, however it ends.
struct SessionGuard(Arc<Conn>, Vec<tokio::task::JoinHandle<()>>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.close();
        for t in &self.1 {
            t.abort();
        }
    }
}

impl Replica {
    /// Hands connections the router accepted to the link of the peer that opened them.
    pub(crate) async fn accept_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Incoming>) {
        while let Some(inc) = rx.recv().await {
            let Some(p) = self.peers.iter().find(|p| p.name == inc.hello.from) else {
                tracing::info!(
                    "replicated device {}: connection from {}, not a peer",
                    self.cfg.device,
                    inc.hello.from
                );
                continue;
            };
            if p.i_connect || self.st.locked().down {
                continue;
            }
            // A link already waiting to be taken wins; the peer tries again.
            let _ = p.incoming_tx.try_send(inc.stream);
        }
    }

    /// Keeps the link to `peer` up while the device is not down.
    pub(crate) async fn link_loop(self: Arc<Self>, peer: Arc<Peer>) {
        let mut backoff = RECONNECT_PAUSE;
        loop {
            if self.st.locked().down {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
            let stream = if peer.i_connect {
                let hello = self
                    .router
                    .hello(peer.name.clone(), Purpose::Replica(self.cfg.device.clone()));
                match net::connect(peer.addr, &hello).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!("replicated device {}: {e}", self.cfg.device);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
                        continue;
                    }
                }
            } else {
                let mut rx = peer.incoming.lock().await;
                match tokio::time::timeout(RECONNECT_PAUSE * 5, rx.recv()).await {
                    Ok(Some(s)) => s,
                    Ok(None) => return,
                    Err(_) => continue,
                }
            };
            if self.st.locked().down {
                continue;
            }
            backoff = RECONNECT_PAUSE;
            if let Err(e) = self.session(&peer, stream).await {
                tracing::info!(
                    "replicated device {}: link to {}: {e}",
                    self.cfg.device,
                    peer.name
                );
            }
            self.link_ended(&peer);
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }

    /// This node's hello to `peer`.
    pub(crate) fn hello_for(&self, peer: &crate::arbiter::NodeName) -> LinkHello {
        let h = self.meta.header();
        LinkHello {
            node: self.cfg.me.clone(),
            size_bytes: self.size_bytes,
            block_size: self.local.block_size(),
            chunk_bytes: self.cfg.chunk_bytes,
            role: self.role(),
            data: h.data,
            current: h.current,
            bitmap: h.peer(peer).map_or(0, |p| p.bitmap_gen),
            history: h.history,
            flags: if h.flags & FLAG_CRASHED_PRIMARY != 0 {
                HELLO_CRASHED_PRIMARY
            } else {
                0
            } | if h.flags & FLAG_UNCONFIRMED != 0 {
                HELLO_UNCONFIRMED
            } else {
                0
            },
            out_of_sync_bytes: self.meta.out_of_sync_bytes(peer),
        }
    }

    async fn session(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        stream: TcpStream,
    ) -> Result<(), SessionError> {
        let (mut rd, wr) = stream.into_split();
        let (conn, tasks) = Conn::start(peer.name.clone(), wr);
        let _guard = SessionGuard(conn.clone(), tasks);
        let mine = self.hello_for(&peer.name);
        conn.send(Msg::Hello(mine.clone()));
        let theirs = match tokio::time::timeout(HELLO_TIMEOUT, frame::read_frame(&mut rd)).await {
            Err(_) => return Err(SessionError::Silent),
            Ok(Ok(None)) => return Err(SessionError::Closed),
            Ok(r) => r?.expect("checked above"),
        };
        let Msg::Hello(theirs) = Msg::decode(theirs.kind, theirs.payload)? else {
            return Err(SessionError::Protocol(
                "the first message is not a hello".into(),
            ));
        };
        self.check_hello(peer, &mine, &theirs)?;
        let decision = {
            // No write is half sent and no generation changes while the link changes state;
            // the hello must still say what this node is, or both sides negotiate again.
            let _gate = self.io_gate.write().await;
            let _g = self.gen_lock.lock().await;
            if !same_state(&mine, &self.hello_for(&peer.name)) {
                return Err(SessionError::Protocol(
                    "this node changed during the hello; negotiating again".into(),
                ));
            }
            let d = decide(&side(&mine), &side(&theirs));
            self.begin(peer, &conn, &theirs, d).await;
            d
        };
        tracing::info!(
            "replicated device {}: link to {} up: {decision:?}",
            self.cfg.device,
            peer.name
        );
        self.after_begin(peer, &conn, decision).await;
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        loop {
            let msg = read_msg(&mut rd).await?;
            if conn.is_closed() {
                return Ok(());
            }
            self.on_msg(peer, &conn, &slots, msg).await?;
        }
    }

    fn check_hello(
        &self,
        peer: &Peer,
        mine: &LinkHello,
        theirs: &LinkHello,
    ) -> Result<(), SessionError> {
        let differ = |what: &str, a: u64, b: u64| {
            let msg = format!("{what} differs: {a} here, {b} on {}", peer.name);
            peer.info.locked().report = Some(msg.clone());
            Err(SessionError::Protocol(msg))
        };
        if theirs.node != peer.name {
            return Err(SessionError::Protocol(format!(
                "hello from {} on the link to {}",
                theirs.node, peer.name
            )));
        }
        if theirs.size_bytes != mine.size_bytes {
            return differ("device size", mine.size_bytes, theirs.size_bytes);
        }
        if theirs.block_size != mine.block_size {
            return differ(
                "block size",
                mine.block_size.into(),
                theirs.block_size.into(),
            );
        }
        if theirs.chunk_bytes != mine.chunk_bytes {
            return differ(
                "bitmap chunk size",
                mine.chunk_bytes.into(),
                theirs.chunk_bytes.into(),
            );
        }
        Ok(())
    }

    /// Takes the link into the state the decision asks for (under the I/O gate).
    async fn begin(&self, peer: &Peer, conn: &Arc<Conn>, theirs: &LinkHello, d: Decision) {
        let my_role = self.role();
        let mut become_target = false;
        // Two secondaries never sync each other while a third node is primary: the
        // primary's writes would race the copy. They wait for the primary to sync both.
        let third_primary = {
            let st = self.st.locked();
            my_role == Role::Secondary
                && theirs.role == Role::Secondary
                && st.primary.as_ref().is_some_and(|p| *p != peer.name)
        };
        {
            let mut i = peer.info.locked();
            *i = PeerInfo::disconnected();
            i.conn = Some(conn.clone());
            i.role = Some(theirs.role);
            i.data = Some(theirs.data);
            i.decision = Some(d);
            i.peer_out_of_sync_bytes = theirs.out_of_sync_bytes;
            let primary_target = match d {
                Decision::SyncFromMe { .. } => theirs.role == Role::Primary,
                Decision::SyncFromPeer { .. } => my_role == Role::Primary,
                _ => false,
            };
            match d {
                Decision::SyncFromMe { .. } | Decision::SyncFromPeer { .. } if third_primary => {
                    i.link = LinkState::Connected;
                }
                _ if primary_target => {
                    i.link = LinkState::SplitBrain;
                    i.report = Some(format!(
                        "the primary would have to be a sync target ({d:?} from {}): demote \
                         it, then `esos replica resolve {} --keep local|peer`",
                        self.cfg.me, self.cfg.device
                    ));
                }
                Decision::InSync => {
                    i.link = LinkState::Connected;
                    i.replicating = true;
                }
                Decision::SyncFromMe { full } => {
                    i.link = LinkState::SyncSource;
                    i.replicating = true;
                    i.resync_after_bitmap = Some(full);
                }
                Decision::SyncFromPeer { .. } => {
                    i.link = LinkState::SyncTarget;
                    become_target = true;
                }
                Decision::SplitBrain {
                    mine,
                    theirs: t,
                    bitmaps_usable,
                } => {
                    i.link = LinkState::SplitBrain;
                    i.report = Some(format!(
                        "split brain with {}: this node went on at generation {mine:016x} \
                         ({} bytes written since they parted), {} at {t:016x} ({} bytes){}; \
                         keep one side: `esos replica resolve {} --keep local|peer`",
                        peer.name,
                        self.meta.out_of_sync_bytes(&peer.name),
                        peer.name,
                        theirs.out_of_sync_bytes,
                        if bitmaps_usable {
                            ""
                        } else {
                            "; the bitmaps do not cover it: a full sync follows"
                        },
                        self.cfg.device
                    ));
                }
                Decision::Unrelated => {
                    i.link = LinkState::Unrelated;
                    i.report = Some(format!(
                        "the data on {} is unrelated to this node's (no common generation); \
                         keep one side with a full sync: `esos replica resolve {} --keep \
                         local|peer`",
                        peer.name, self.cfg.device
                    ));
                }
                Decision::NoUsableSource => {
                    i.link = LinkState::Unrelated;
                    i.report = Some(format!(
                        "neither this node nor {} holds consistent data to sync from",
                        peer.name
                    ));
                }
                // Waits for the administrator's forced first promotion, after which the
                // primary renegotiates the link.
                Decision::BothFresh => i.link = LinkState::Connected,
            }
        }
        if theirs.role == Role::Primary {
            self.st.locked().primary = Some(peer.name.clone());
            self.publish();
        }
        if become_target {
            let _ = self.meta.update(|h| h.data = DataState::Inconsistent).await;
        }
    }

    /// What follows the decision outside the gate: a target sends its bitmap, a primary
    /// records a peer that came back in sync.
    async fn after_begin(self: &Arc<Self>, peer: &Arc<Peer>, conn: &Arc<Conn>, d: Decision) {
        let (link, replicating) = {
            let i = peer.info.locked();
            (i.link, i.replicating)
        };
        if replicating && self.role() == Role::Primary {
            let blob = self.st.locked().last_state.clone();
            if let Some(blob) = blob {
                conn.send(Msg::StateBlob { blob });
            }
        }
        match (d, link) {
            (Decision::SyncFromPeer { .. }, LinkState::SyncTarget) => {
                self.send_bitmap(peer, conn);
            }
            (Decision::InSync, _) => self.record_in_sync(peer).await,
            _ => {}
        }
    }

    /// Primary: adds a peer that is in step again to the record's up-to-date set.
    /// Also completes an exclusion the quorum did not record in time: the record then
    /// names this node's current generation, without the node excluded (unless it is this
    /// very peer, back in step).
    pub(crate) async fn record_in_sync(&self, peer: &Peer) {
        if self.role() != Role::Primary {
            return;
        }
        let _g = self.gen_lock.lock().await;
        let utd = {
            let st = self.st.locked();
            let pending = st.pending_exclusion.as_ref().map(|(p, _)| p.clone());
            if st.up_to_date.contains(&peer.name) && pending.is_none() {
                return;
            }
            let mut utd: Vec<_> = st
                .up_to_date
                .iter()
                .filter(|n| Some(*n) != pending.as_ref() && **n != peer.name)
                .cloned()
                .collect();
            utd.push(peer.name.clone());
            utd
        };
        let generation = self.meta.header().current;
        match self.arbiter.set_up_to_date(generation, utd).await {
            Ok(rec) => {
                {
                    let mut st = self.st.locked();
                    st.up_to_date = rec.up_to_date;
                    st.pending_exclusion = None;
                }
                if let Err(e) = self.meta.update(|h| h.flags &= !FLAG_UNCONFIRMED).await {
                    tracing::warn!("replicated device {}: {e}", self.cfg.device);
                }
            }
            Err(e) => tracing::warn!(
                "replicated device {}: cannot record {} as up to date: {e}",
                self.cfg.device,
                peer.name
            ),
        }
    }

    /// The link is gone: status reset; a primary records that it goes on without the peer.
    fn link_ended(&self, peer: &Arc<Peer>) {
        {
            let mut i = peer.info.locked();
            if let Some(c) = i.conn.take() {
                c.close();
            }
            let verify = i.verify_mismatched_chunks;
            let report = i.report.take();
            *i = PeerInfo::disconnected();
            i.verify_mismatched_chunks = verify;
            // A configuration mismatch stays reported until a link succeeds.
            i.report = report.filter(|r| r.contains("differs"));
        }
        {
            let mut st = self.st.locked();
            if st.primary.as_ref() == Some(&peer.name) {
                st.primary = None;
            }
        }
        self.publish();
        if self.role() == Role::Primary && self.st.locked().up_to_date.contains(&peer.name) {
            let (r, name) = (self.arc(), peer.name.clone());
            self.spawn(async move {
                // Retried until it succeeds, the peer is back or this node is not primary.
                let deadline = std::time::Instant::now() + Duration::from_secs(3600);
                if let Err(e) = r.exclude(&name, deadline, true).await {
                    tracing::warn!("replicated device {}: {e}", r.cfg.device);
                }
            });
        }
    }

    async fn on_msg(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        conn: &Arc<Conn>,
        slots: &Arc<Semaphore>,
        msg: Msg,
    ) -> Result<(), SessionError> {
        let unexpected = |what: &str| SessionError::Protocol(format!("unexpected {what}"));
        match msg {
            Msg::Ping => {
                conn.send(Msg::Pong);
            }
            Msg::Pong => {}
            Msg::Ack { seq, status } => {
                if !conn.complete(seq, Reply::Ack(status)) {
                    return Err(unexpected("acknowledgement"));
                }
            }
            Msg::VerifyDigest { seq, digest, .. } => {
                if !conn.complete(seq, Reply::Digest(digest)) {
                    return Err(unexpected("digest"));
                }
            }
            Msg::Write {
                seq,
                offset,
                flags,
                data,
            } => {
                let fua = flags & WRITE_FUA != 0;
                self.apply(
                    peer,
                    conn,
                    slots,
                    seq,
                    offset,
                    Apply::Write { data, fua },
                    false,
                )
                .await;
            }
            Msg::Discard { seq, offset, len } => {
                self.apply(
                    peer,
                    conn,
                    slots,
                    seq,
                    offset,
                    Apply::Discard { len },
                    false,
                )
                .await;
            }
            Msg::WriteZeroes { seq, offset, len } => {
                self.apply(peer, conn, slots, seq, offset, Apply::Zeroes { len }, false)
                    .await;
            }
            Msg::ResyncData { seq, offset, data } => {
                let w = Apply::Write { data, fua: false };
                self.apply(peer, conn, slots, seq, offset, w, true).await;
            }
            Msg::ResyncDiscard { seq, offset, len } => {
                self.apply(peer, conn, slots, seq, offset, Apply::Zeroes { len }, true)
                    .await;
            }
            Msg::Flush { seq } => {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return Ok(());
                };
                let (r, c) = (self.clone(), conn.clone());
                tokio::spawn(async move {
                    let status = r.local_status(r.local.flush().await).await;
                    c.send(Msg::Ack { seq, status });
                    drop(permit);
                });
            }
            Msg::VerifyRequest {
                seq,
                offset,
                len,
                digest,
            } => {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return Ok(());
                };
                self.answer_verify(conn, permit, seq, offset, len, digest);
            }
            Msg::ResyncDone { generation } => self.finish_target(peer, generation).await,
            Msg::ResyncRequest { sender_keeps } => {
                if let Err(e) = self.resolve_with(peer, !sender_keeps, false).await {
                    tracing::warn!(
                        "replicated device {}: {} asked to resolve: {e}",
                        self.cfg.device,
                        peer.name
                    );
                }
            }
            Msg::Bitmap {
                first_chunk,
                last,
                bits,
            } => self.on_bitmap(peer, conn, first_chunk, last, &bits)?,
            Msg::StateBlob { blob } => {
                let from_primary = peer.info.locked().role == Some(Role::Primary);
                let sub = self.st.locked().state_sub.clone().filter(|_| from_primary);
                if let Some(tx) = sub
                    && tx.try_send(blob).is_err()
                {
                    tracing::warn!(
                        "replicated device {}: side state dropped (subscriber behind or gone)",
                        self.cfg.device
                    );
                }
            }
            Msg::RoleChange {
                role,
                data,
                generation,
            } => self.on_role_change(peer, role, data, generation).await,
            Msg::Hello(_) => return Err(unexpected("hello")),
        }
        Ok(())
    }

    async fn on_role_change(&self, peer: &Peer, role: Role, data: DataState, generation: u64) {
        let in_sync = {
            let mut i = peer.info.locked();
            i.role = Some(role);
            i.data = Some(data);
            i.replicating && i.link == LinkState::Connected
        };
        {
            let mut st = self.st.locked();
            if role == Role::Primary {
                st.primary = Some(peer.name.clone());
            } else if st.primary.as_ref() == Some(&peer.name) {
                st.primary = None;
            }
        }
        self.publish();
        // The primary went on without a third node, or was forced past the record: this
        // secondary, in step with it, follows its generation and its data state.
        if role == Role::Primary && in_sync && self.role() == Role::Secondary && generation != 0 {
            let h = self.meta.header();
            let outdated = h.data == DataState::Outdated && data == DataState::UpToDate;
            if generation != h.current || outdated {
                let _ = self
                    .meta
                    .update(|h| {
                        h.adopt(generation);
                        if outdated {
                            h.data = DataState::UpToDate;
                        }
                    })
                    .await;
            }
        }
    }

    /// Queues a write-like message in arrival order and applies it in a task of its own.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        self: &Arc<Self>,
        peer: &Peer,
        conn: &Arc<Conn>,
        slots: &Arc<Semaphore>,
        seq: u64,
        offset: u64,
        op: Apply,
        resync: bool,
    ) {
        let len = op.len();
        let primary_here = self.role() == Role::Primary;
        let refuse = {
            let i = peer.info.locked();
            let link_ok = if resync {
                matches!(i.link, LinkState::SyncTarget | LinkState::Connected)
            } else {
                i.role == Some(Role::Primary)
                    && matches!(i.link, LinkState::SyncTarget | LinkState::Connected)
            };
            if primary_here || !link_ok {
                Some(failed(
                    BlockErrorKind::Unavailable,
                    format!(
                        "{} does not take writes from {} now",
                        self.cfg.me, peer.name
                    ),
                ))
            } else if offset
                .checked_add(len)
                .is_none_or(|e| e > self.capacity_bytes())
            {
                Some(failed(
                    BlockErrorKind::OutOfRange,
                    "past the end of the device",
                ))
            } else if offset % u64::from(self.local.block_size()) != 0
                || len % u64::from(self.local.block_size()) != 0
                || len == 0
            {
                Some(failed(BlockErrorKind::Misaligned, "not block-aligned"))
            } else {
                None
            }
        };
        if let Some(status) = refuse {
            conn.send(Msg::Ack { seq, status });
            return;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let ticket = self.ranges.enqueue(offset, len);
        let (r, c) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            ticket.wait().await;
            let res = match op {
                Apply::Write { data, fua } => r.local.write_shared(offset, data, fua).await.0,
                Apply::Discard { len } if r.local.discard_zeroes() => {
                    r.local.discard(offset, len).await
                }
                // Discarded blocks read back as zeros on the primary only when its device
                // says so; zeroing here keeps the copies equal either way.
                Apply::Discard { len } | Apply::Zeroes { len } => {
                    r.local.write_zeroes(offset, len).await
                }
            };
            drop(ticket);
            let status = r.local_status(res).await;
            c.send(Msg::Ack { seq, status });
            drop(permit);
        });
    }

    /// The answer to the primary for a local operation of this secondary; a failure also
    /// marks the local copy failed.
    async fn local_status(&self, res: Result<(), BlockError>) -> AckStatus {
        match res {
            Ok(()) => AckStatus::Ok,
            Err(e) => {
                self.secondary_failed(&e).await;
                failed(e.kind(), e.message())
            }
        }
    }

    /// Reads a chunk for a verify and answers with its digest, in order with the writes.
    fn answer_verify(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        permit: tokio::sync::OwnedSemaphorePermit,
        seq: u64,
        offset: u64,
        len: u32,
        theirs: u32,
    ) {
        let ticket = self.ranges.enqueue(offset, u64::from(len));
        let (r, c) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            ticket.wait().await;
            let bs = u64::from(r.local.block_size());
            let digest = if offset
                .checked_add(u64::from(len))
                .is_some_and(|e| e <= r.capacity_bytes())
                && offset % bs == 0
                && u64::from(len) % bs == 0
            {
                match r.local.read(offset, vec![0; len as usize]).await {
                    (Ok(()), buf) => crc32c::crc32c(&buf),
                    // A digest that cannot match: the chunk is resynced.
                    (Err(_), _) => !theirs,
                }
            } else {
                !theirs
            };
            c.send(Msg::VerifyDigest {
                seq,
                offset,
                len,
                digest,
            });
            drop(permit);
        });
    }

    /// The local device failed under a secondary: its data is Failed from now on.
    /// Only a medium error fails the data; a transient or refused request leaves it as it
    /// is (the primary excludes this node and resyncs it later).
    async fn secondary_failed(&self, e: &esos_block::BlockError) {
        if matches!(e.kind(), BlockErrorKind::Io | BlockErrorKind::NoSpace)
            && self.data() != DataState::Failed
        {
            tracing::error!(
                "replicated device {}: local device failed: {e}",
                self.cfg.device
            );
            let _ = self.meta.update(|h| h.data = DataState::Failed).await;
            self.announce();
        }
    }
}
