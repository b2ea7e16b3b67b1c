//! Byte-range lock that grants overlapping ranges strictly in the order they were asked
//! for: how every copy applies overlapping writes in the same order.
//!
//! [`RangeLock::enqueue`] takes a place in the queue at once (synchronously, so a reader
//! loop can queue writes in arrival order and apply them in parallel tasks); the returned
//! [`Ticket`] waits until no earlier overlapping entry is held or queued. Ranges that do not
//! overlap never wait for each other.

use std::sync::{Arc, Mutex};

use esos_common::sync::LockExt as _;
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    /// (id, start, end) in id order: queued and held entries alike.
    entries: Vec<(u64, u64, u64)>,
}

/// The lock; cheap to share.
#[derive(Debug, Default, Clone)]
pub struct RangeLock {
    inner: Arc<(Mutex<Queue>, Notify)>,
}

/// A place in the queue for `[start, end)`; dropping it (waited or not) leaves the queue.
#[derive(Debug)]
pub struct Ticket {
    lock: RangeLock,
    id: u64,
    start: u64,
    end: u64,
}

impl RangeLock {
    pub fn new() -> RangeLock {
        RangeLock::default()
    }

    /// Queues `[offset, offset + len)` behind every entry queued before it.
    pub fn enqueue(&self, offset: u64, len: u64) -> Ticket {
        let end = offset.saturating_add(len.max(1));
        let mut q = self.inner.0.locked();
        let id = q.next_id;
        q.next_id += 1;
        q.entries.push((id, offset, end));
        Ticket {
            lock: self.clone(),
            id,
            start: offset,
            end,
        }
    }

    /// Queues and waits: the range is held when this returns.
    pub async fn lock(&self, offset: u64, len: u64) -> Ticket {
        let t = self.enqueue(offset, len);
        t.wait().await;
        t
    }

    /// Entries queued or held.
    pub fn len(&self) -> usize {
        self.inner.0.locked().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ticket {
    fn blocked(&self) -> bool {
        let q = self.lock.inner.0.locked();
        q.entries
            .iter()
            .take_while(|(id, _, _)| *id < self.id)
            .any(|(_, s, e)| *s < self.end && self.start < *e)
    }

    /// Waits until every earlier overlapping entry left the queue.
    pub async fn wait(&self) {
        loop {
            let freed = self.lock.inner.1.notified();
            if !self.blocked() {
                return;
            }
            freed.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut q = self.lock.inner.0.locked();
        q.entries.retain(|(id, _, _)| *id != self.id);
        drop(q);
        self.lock.inner.1.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_ranges_go_in_queue_order_others_pass() {
        let l = RangeLock::new();
        let a = l.lock(0, 100).await;
        let b = l.enqueue(50, 100);
        let c = l.enqueue(200, 10);
        let d = l.enqueue(120, 10); // overlaps b only
        tokio::time::timeout(Duration::from_millis(100), c.wait())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), b.wait())
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), d.wait())
                .await
                .is_err(),
            "d waits for b, queued before it, though b waits itself"
        );
        drop(a);
        tokio::time::timeout(Duration::from_millis(100), b.wait())
            .await
            .unwrap();
        drop(b);
        tokio::time::timeout(Duration::from_millis(100), d.wait())
            .await
            .unwrap();
        drop((c, d));
        assert!(l.is_empty());
    }
}
