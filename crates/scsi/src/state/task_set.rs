//! The task set of one logical unit: SIMPLE / ORDERED / HEAD OF QUEUE ordering (SAM-5 8.6).
//!
//! Commands are admitted synchronously in command order ([`TaskSet::admit`]) and receive a
//! [`Ticket`]; the ticket's [`Ticket::ready`] completes when the task attribute allows the
//! command to start. Dropping the ticket (command done, or its future cancelled) ends the
//! task and lets blocked commands re-check.
//!
//! Rules (SAM-5 8.6.2-8.6.4):
//! - HEAD OF QUEUE starts at once;
//! - ORDERED starts when every earlier command has ended;
//! - SIMPLE starts when no earlier ORDERED command is still in the task set.
//!
//! Aborts (SAM-5 5.6: task management, PREEMPT AND ABORT) mark tasks here, so that every
//! front-end's tasks are reachable from any nexus. A marked task that has not started
//! never starts ([`Ticket::ready`] fails); one that started runs on (I/O handed to the
//! device cannot be recalled) but loses its status ([`Ticket::settle`] fails), and
//! [`TaskSet::drained`] waits for it to end. A task whose status is settled (a READ
//! whose data is still being sent) is complete and no longer aborted.

use esos_common::sync::LockExt as _;
use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::Nexus;

/// Largest number of commands one logical unit keeps in its task set; beyond it the
/// engine answers TASK SET FULL (SAM-5 5.3.1). Transports bound their queue depth lower.
pub const MAX_TASKS_PER_LU: usize = 4096;

/// How a task waits for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Simple,
    Ordered,
    HeadOfQueue,
}

/// Where a task is in its life: an abort treats each phase differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for its turn: aborting it means it never runs.
    Queued,
    /// Past [`Ticket::ready`]: it may have handed I/O to the device.
    Started,
    /// Its status is decided ([`Ticket::settle`]): an abort no longer covers it.
    Settled,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    order: Order,
    nexus: Arc<Nexus>,
    /// The transport's task tag (unique per nexus among its live tasks).
    tag: u32,
    phase: Phase,
    aborted: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    /// Tasks not yet ended, ascending `seq` (admission order).
    pending: VecDeque<Entry>,
    /// Number of ORDERED entries in `pending`; SIMPLE commands skip the scan when 0.
    ordered: usize,
    /// Tickets currently waiting in [`Ticket::ready`]; completions notify only when > 0.
    waiters: usize,
}

#[derive(Debug, Default)]
pub struct TaskSet {
    inner: Mutex<Inner>,
    changed: Notify,
}

/// A task set full condition: the caller answers TASK SET FULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The task was aborted: it must end without a status of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aborted;

/// What one [`TaskSet::abort`] marked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Marked {
    /// Tasks that had started: [`TaskSet::drained`] waits for them.
    pub started: Vec<u64>,
    /// Nexuses with at least one task newly aborted, ascending, no duplicates.
    pub nexuses: Vec<u64>,
}

impl TaskSet {
    pub fn new() -> Arc<TaskSet> {
        Arc::new(TaskSet::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the deque consistent (every mutation is a
        // single push/remove), so a poisoned lock is still usable.
        self.inner.locked()
    }

    /// Enters a task of `nexus` tagged `tag`; must be called in command order.
    pub fn admit(
        self: &Arc<Self>,
        order: Order,
        nexus: &Arc<Nexus>,
        tag: u32,
    ) -> Result<Ticket, Full> {
        let mut g = self.lock();
        if g.pending.len() >= MAX_TASKS_PER_LU {
            return Err(Full);
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        g.pending.push_back(Entry {
            seq,
            order,
            nexus: Arc::clone(nexus),
            tag,
            phase: Phase::Queued,
            aborted: false,
        });
        if order == Order::Ordered {
            g.ordered += 1;
        }
        Ok(Ticket {
            set: Arc::clone(self),
            seq,
            order,
        })
    }

    /// Aborts every task `covers` (by nexus and tag) whose status is not settled yet.
    /// Queued tasks stop waiting at once and end without running.
    pub fn abort(&self, covers: impl Fn(&Nexus, u32) -> bool) -> Marked {
        let mut marked = Marked::default();
        let mut g = self.lock();
        for e in g.pending.iter_mut() {
            if e.phase == Phase::Settled || !covers(&e.nexus, e.tag) {
                continue;
            }
            if e.phase == Phase::Started {
                marked.started.push(e.seq);
            }
            if !e.aborted {
                e.aborted = true;
                marked.nexuses.push(e.nexus.id);
            }
        }
        drop(g);
        marked.nexuses.sort_unstable();
        marked.nexuses.dedup();
        // Aborted tasks waiting for their turn must see it now.
        self.changed.notify_waiters();
        marked
    }

    /// Completes when none of the tasks `seqs` (from [`Marked::started`]) is left in the
    /// task set, i.e. each one's I/O has finished or was never issued.
    pub async fn drained(&self, seqs: &[u64]) {
        let gone = |g: &Inner| {
            seqs.iter()
                .all(|s| g.pending.binary_search_by_key(s, |e| e.seq).is_err())
        };
        if gone(&self.lock()) {
            return;
        }
        self.lock().waiters += 1;
        let _waiting = Waiting(self);
        loop {
            let mut notified = pin!(self.changed.notified());
            notified.as_mut().enable();
            if gone(&self.lock()) {
                return;
            }
            notified.await;
        }
    }

    /// Number of tasks not yet ended.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().pending.len()
    }
}

impl Inner {
    fn entry(&mut self, seq: u64) -> &mut Entry {
        let i = self
            .pending
            .binary_search_by_key(&seq, |e| e.seq)
            .expect("a live ticket's task is in the task set");
        &mut self.pending[i]
    }

    /// Starts the task when its turn has come: `None` while it must wait.
    fn try_start(&mut self, seq: u64, order: Order) -> Option<Result<(), Aborted>> {
        let e = self.entry(seq);
        if e.aborted {
            return Some(Err(Aborted));
        }
        if !self.may_start(seq, order) {
            return None;
        }
        self.entry(seq).phase = Phase::Started;
        Some(Ok(()))
    }

    fn may_start(&self, seq: u64, order: Order) -> bool {
        match order {
            Order::HeadOfQueue => true,
            Order::Ordered => self.pending.front().is_none_or(|e| e.seq >= seq),
            Order::Simple => {
                self.ordered == 0
                    || !self
                        .pending
                        .iter()
                        .take_while(|e| e.seq < seq)
                        .any(|e| e.order == Order::Ordered)
            }
        }
    }
}

/// One admitted task; ends when dropped.
#[derive(Debug)]
pub struct Ticket {
    set: Arc<TaskSet>,
    seq: u64,
    order: Order,
}

impl Ticket {
    /// Completes when the task may start, and starts it; `Err` when it was aborted first
    /// (it must then end without touching the medium).
    pub async fn ready(&self) -> Result<(), Aborted> {
        if let Some(r) = self.set.lock().try_start(self.seq, self.order) {
            return r;
        }
        self.set.lock().waiters += 1;
        let _waiting = Waiting(&self.set);
        loop {
            let mut notified = pin!(self.set.changed.notified());
            // Registered before the check, so a completion between check and await still wakes us.
            notified.as_mut().enable();
            if let Some(r) = self.set.lock().try_start(self.seq, self.order) {
                return r;
            }
            notified.await;
        }
    }

    /// Decides the task's status: `Err` when it was aborted while it ran (it then ends
    /// without one); afterwards no abort covers it.
    pub fn settle(&self) -> Result<(), Aborted> {
        let mut g = self.set.lock();
        let e = g.entry(self.seq);
        if e.aborted {
            return Err(Aborted);
        }
        e.phase = Phase::Settled;
        Ok(())
    }
}

/// Counts a waiting ticket for as long as it waits, cancellation included.
struct Waiting<'a>(&'a TaskSet);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiters -= 1;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut g = self.set.lock();
        if let Ok(i) = g.pending.binary_search_by_key(&self.seq, |e| e.seq) {
            let e = g.pending.remove(i).expect("index from binary search");
            if e.order == Order::Ordered {
                g.ordered -= 1;
            }
        }
        let notify = g.waiters > 0;
        drop(g);
        if notify {
            self.set.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nexus(id: u64) -> Arc<Nexus> {
        Arc::new(Nexus {
            id,
            initiator_port: format!("iqn.i{id},i,0x000000000001"),
            target_port: "iqn.t,t,0x0001".into(),
            relative_port: 1,
            port_group: 0,
        })
    }

    async fn started(t: &Ticket) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_millis(20), t.ready()).await,
            Ok(Ok(()))
        )
    }

    #[tokio::test]
    async fn simple_commands_run_concurrently() {
        let ts = TaskSet::new();
        let a = ts.admit(Order::Simple, &nexus(1), 0).unwrap();
        let b = ts.admit(Order::Simple, &nexus(1), 0).unwrap();
        assert!(started(&b).await);
        assert!(started(&a).await);
    }

    #[tokio::test]
    async fn ordered_waits_for_earlier_and_blocks_later_simple() {
        let ts = TaskSet::new();
        let slow = ts.admit(Order::Simple, &nexus(1), 0).unwrap();
        let ord = ts.admit(Order::Ordered, &nexus(1), 0).unwrap();
        let later = ts.admit(Order::Simple, &nexus(1), 0).unwrap();
        assert!(
            !started(&ord).await,
            "ORDERED started before the earlier SIMPLE ended"
        );
        assert!(
            !started(&later).await,
            "SIMPLE started before the earlier ORDERED"
        );
        drop(slow);
        assert!(started(&ord).await);
        assert!(!started(&later).await);
        drop(ord);
        assert!(started(&later).await);
        assert_eq!(ts.len(), 1);
    }

    #[tokio::test]
    async fn head_of_queue_runs_at_once() {
        let ts = TaskSet::new();
        let _slow = ts.admit(Order::Simple, &nexus(1), 0).unwrap();
        let _ord = ts.admit(Order::Ordered, &nexus(1), 0).unwrap();
        let hoq = ts.admit(Order::HeadOfQueue, &nexus(1), 0).unwrap();
        assert!(started(&hoq).await);
    }

    #[tokio::test]
    async fn waiting_ordered_wakes_on_completion() {
        let ts = TaskSet::new();
        let slow = ts.admit(Order::Simple, &nexus(1), 0).unwrap();
        let ord = ts.admit(Order::Ordered, &nexus(1), 0).unwrap();
        let waiter = tokio::spawn(async move {
            ord.ready().await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        drop(slow);
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn cancelled_ticket_unblocks_others() {
        let ts = TaskSet::new();
        let ord = ts.admit(Order::Ordered, &nexus(1), 0).unwrap();
        let simple = ts.admit(Order::Simple, &nexus(1), 0).unwrap();
        assert!(!started(&simple).await);
        drop(ord); // as if the ORDERED command's future were dropped before it ran
        assert!(started(&simple).await);
    }

    #[tokio::test]
    async fn full_task_set_is_reported() {
        let ts = TaskSet::new();
        let tickets: Vec<_> = (0..MAX_TASKS_PER_LU)
            .map(|_| ts.admit(Order::Simple, &nexus(1), 0).unwrap())
            .collect();
        assert_eq!(ts.admit(Order::Simple, &nexus(1), 0).unwrap_err(), Full);
        drop(tickets);
        assert!(ts.admit(Order::Simple, &nexus(1), 0).is_ok());
    }

    #[tokio::test]
    async fn abort_ends_queued_tasks_of_the_nexus_and_waits_for_started_ones() {
        let ts = TaskSet::new();
        let (a, b) = (nexus(1), nexus(2));
        let running = ts.admit(Order::Simple, &a, 10).unwrap();
        assert!(started(&running).await);
        let settled = ts.admit(Order::Simple, &a, 11).unwrap();
        assert!(started(&settled).await);
        settled.settle().unwrap();
        let queued = ts.admit(Order::Ordered, &a, 12).unwrap();
        let other = ts.admit(Order::Simple, &b, 10).unwrap();
        let waiter = tokio::spawn(async move { queued.ready().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());

        let marked = ts.abort(|n, _| n.id == 1);
        assert_eq!(marked.nexuses, vec![1]);
        assert_eq!(marked.started.len(), 1, "only the running task is drained");
        let r = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert_eq!(
            r.unwrap().unwrap(),
            Err(Aborted),
            "queued task never starts"
        );
        assert_eq!(
            running.settle(),
            Err(Aborted),
            "running task loses its status"
        );
        // The settled READ and the other nexus's task are untouched.
        assert_eq!(ts.lock().pending.iter().filter(|e| e.aborted).count(), 1);

        let drain = {
            let ts = Arc::clone(&ts);
            let seqs = marked.started.clone();
            tokio::spawn(async move { ts.drained(&seqs).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !drain.is_finished(),
            "drained before the running task ended"
        );
        drop(running);
        tokio::time::timeout(Duration::from_secs(2), drain)
            .await
            .unwrap()
            .unwrap();
        assert!(started(&other).await);
        assert_eq!(other.settle(), Ok(()));
        drop(settled);
        // A second abort finds nothing new.
        assert_eq!(ts.abort(|n, _| n.id == 1), Marked::default());
    }

    #[tokio::test]
    async fn abort_by_tag_covers_one_task() {
        let ts = TaskSet::new();
        let a = nexus(1);
        let t1 = ts.admit(Order::Simple, &a, 1).unwrap();
        let t2 = ts.admit(Order::Simple, &a, 2).unwrap();
        let marked = ts.abort(|n, tag| n.id == 1 && tag == 2);
        assert_eq!(marked.nexuses, vec![1]);
        assert!(marked.started.is_empty());
        assert!(started(&t1).await);
        assert_eq!(t2.ready().await, Err(Aborted));
    }
}
