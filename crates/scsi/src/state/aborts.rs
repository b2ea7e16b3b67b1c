//! Recent aborts of one unit, for commands that only wait and can stop at once (a
//! SANITIZE without IMMED) and for commands a transport accepted but has not submitted
//! yet (a WRITE still receiving its data).

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

#[derive(Debug, Clone, Copy)]
struct AbortRecord {
    seq: u64,
    /// The nexus whose tasks are aborted; `None`: every nexus.
    nexus: Option<u64>,
    /// The task tag; `None`: every task of the nexus.
    tag: Option<u32>,
    /// Aborted by another nexus (PREEMPT AND ABORT): COMMANDS CLEARED BY ANOTHER INITIATOR.
    by_other: bool,
}

/// Aborts remembered per unit; a waiter that misses older ones was woken for them anyway.
const MAX_RECENT_ABORTS: usize = 64;

impl Aborts {
    pub(crate) fn record(&self, nexus: Option<u64>, tag: Option<u32>, by_other: bool) {
        let mut r = self.recent.locked();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        if r.len() == MAX_RECENT_ABORTS {
            r.pop_front();
        }
        r.push_back(AbortRecord {
            seq,
            nexus,
            tag,
            by_other,
        });
        drop(r);
        self.notify.notify_waiters();
    }

    /// The sequence number to pass to [`Self::wait`] for a task starting to wait now.
    pub(crate) fn mark(&self) -> u64 {
        self.seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// True when an abort recorded after `since` covers the task (`nexus`, `tag`); with
    /// `by_other`, only one by another nexus. Of more than [`MAX_RECENT_ABORTS`] since,
    /// the oldest are missed.
    pub(crate) fn hit(&self, since: u64, nexus: u64, tag: u32, by_other: bool) -> bool {
        let r = self.recent.locked();
        r.iter().any(|a| {
            a.seq > since
                && (a.by_other || !by_other)
                && a.nexus.is_none_or(|n| n == nexus)
                && a.tag.is_none_or(|t| t == tag)
        })
    }

    /// Completes once an abort recorded after `since` covers the task (`nexus`, `tag`).
    pub(crate) async fn wait(&self, since: u64, nexus: u64, tag: u32) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.hit(since, nexus, tag, false) {
                return;
            }
            notified.await;
        }
    }
}
