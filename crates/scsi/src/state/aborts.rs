//! Recent task-management aborts of one unit, for commands that only wait and can stop
//! at once (a SANITIZE without IMMED).

use esos_common::sync::LockExt as _;
use std::sync::Mutex;

/// Recent task-management aborts of one unit.
#[derive(Debug, Default)]
pub(crate) struct Aborts {
    notify: tokio::sync::Notify,
    /// Newest last, at most [`MAX_RECENT_ABORTS`].
    recent: Mutex<std::collections::VecDeque<AbortRecord>>,
    seq: std::sync::atomic::AtomicU64,
}

/// (sequence, nexus or every nexus, tag or every tag).
type AbortRecord = (u64, Option<u64>, Option<u32>);

/// Aborts remembered per unit; a waiter that misses older ones was woken for them anyway.
const MAX_RECENT_ABORTS: usize = 64;

impl Aborts {
    pub(crate) fn record(&self, nexus: Option<u64>, tag: Option<u32>) {
        let mut r = self.recent.locked();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        if r.len() == MAX_RECENT_ABORTS {
            r.pop_front();
        }
        r.push_back((seq, nexus, tag));
        drop(r);
        self.notify.notify_waiters();
    }

    /// The sequence number to pass to [`Self::wait`] for a task starting to wait now.
    pub(crate) fn mark(&self) -> u64 {
        self.seq.load(std::sync::atomic::Ordering::Acquire)
    }

    fn hit(&self, since: u64, nexus: u64, tag: u32) -> bool {
        let r = self.recent.locked();
        r.iter().any(|&(seq, n, t)| {
            seq > since && n.is_none_or(|n| n == nexus) && t.is_none_or(|t| t == tag)
        })
    }

    /// Completes once an abort recorded after `since` covers the task (`nexus`, `tag`).
    pub(crate) async fn wait(&self, since: u64, nexus: u64, tag: u32) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.hit(since, nexus, tag) {
                return;
            }
            notified.await;
        }
    }
}
