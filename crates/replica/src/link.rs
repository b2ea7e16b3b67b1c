//! One live replication connection: the writer task that owns the sending half, the
//! requests waiting for their acknowledgement (matched by sequence number), and the pinger.
//! The reading half and what each message means live in `peer.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use esos_common::sync::LockExt as _;
use tokio::io::{AsyncWriteExt as _, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::arbiter::NodeName;
use crate::frame;
use crate::wire::{AckStatus, Msg};

/// How often an idle link sends a ping.
pub const PING_INTERVAL: Duration = Duration::from_millis(250);
/// A link that received no frame for this long is dead.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(1);
/// Requests (writes, resync chunks, verify digests) one link carries unacknowledged.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Buffer of the sending half: small messages leave together.
const SEND_BUFFER_BYTES: usize = 256 << 10;

/// What answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ack(AckStatus),
    Digest(u32),
}

/// The link ended before the answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("replication link lost")]
pub struct LinkDown;

/// The sending side of a live connection to one peer.
#[derive(Debug)]
pub struct Conn {
    pub peer: NodeName,
    out: mpsc::UnboundedSender<Msg>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_seq: AtomicU64,
    slots: Semaphore,
    closed: AtomicBool,
}

impl Conn {
    /// Starts the writer task over `wr`; it ends when the connection is closed.
    pub fn start(
        peer: NodeName,
        wr: OwnedWriteHalf,
    ) -> (std::sync::Arc<Conn>, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = std::sync::Arc::new(Conn {
            peer,
            out: tx,
            pending: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(1),
            slots: Semaphore::new(MAX_IN_FLIGHT),
            closed: AtomicBool::new(false),
        });
        let writer = tokio::spawn(writer(conn.clone(), rx, wr));
        let c = conn.clone();
        let pinger = tokio::spawn(async move {
            let mut t = tokio::time::interval(PING_INTERVAL);
            while !c.is_closed() {
                t.tick().await;
                c.send(Msg::Ping);
            }
        });
        (conn, vec![writer, pinger])
    }

    /// Queues `msg` (no answer expected). False when the link is closed.
    pub fn send(&self, msg: Msg) -> bool {
        !self.is_closed() && self.out.send(msg).is_ok()
    }

    /// Sends the message `make` builds with a fresh sequence number and waits for its answer.
    /// At most [`MAX_IN_FLIGHT`] requests are outstanding; more wait for a slot.
    pub async fn request(&self, make: impl FnOnce(u64) -> Msg) -> Result<Reply, LinkDown> {
        let _slot = self.slots.acquire().await.map_err(|_| LinkDown)?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.locked();
            if self.is_closed() {
                return Err(LinkDown);
            }
            p.insert(seq, tx);
        }
        if !self.send(make(seq)) {
            self.pending.locked().remove(&seq);
            return Err(LinkDown);
        }
        rx.await.map_err(|_| LinkDown)
    }

    /// Completes request `seq`; false when no such request waits (a peer answering what
    /// was never asked is out of step).
    pub fn complete(&self, seq: u64, reply: Reply) -> bool {
        match self.pending.locked().remove(&seq) {
            Some(tx) => {
                let _ = tx.send(reply);
                true
            }
            None => false,
        }
    }

    /// Ends the link: every waiting request fails with [`LinkDown`], new ones at once.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pending.locked().clear();
        self.slots.close();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> u32 {
        self.pending.locked().len() as u32
    }
}

async fn writer(
    conn: std::sync::Arc<Conn>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    wr: OwnedWriteHalf,
) {
    let mut w = BufWriter::with_capacity(SEND_BUFFER_BYTES, wr);
    while let Some(msg) = rx.recv().await {
        if conn.is_closed() {
            break;
        }
        let (fields, data) = msg.encode();
        let res = match &data {
            Some(d) => frame::write_frame(&mut w, msg.kind(), 0, &[&fields, d.as_slice()]).await,
            None => frame::write_frame(&mut w, msg.kind(), 0, &[&fields]).await,
        };
        drop((msg, data));
        let res = match res {
            Ok(()) if rx.is_empty() => w.flush().await.map_err(frame::FrameError::from),
            r => r,
        };
        if let Err(e) = res {
            tracing::info!("replication link to {}: send: {e}", conn.peer);
            break;
        }
    }
    conn.close();
    let _ = w.shutdown().await;
}
