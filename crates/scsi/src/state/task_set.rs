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

use esos_common::sync::LockExt as _;
use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

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

#[derive(Debug)]
struct Entry {
    seq: u64,
    order: Order,
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

impl TaskSet {
    pub fn new() -> Arc<TaskSet> {
        Arc::new(TaskSet::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the deque consistent (every mutation is a
        // single push/remove), so a poisoned lock is still usable.
        self.inner.locked()
    }

    /// Enters a task; must be called in command order.
    pub fn admit(self: &Arc<Self>, order: Order) -> Result<Ticket, Full> {
        let mut g = self.lock();
        if g.pending.len() >= MAX_TASKS_PER_LU {
            return Err(Full);
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        g.pending.push_back(Entry { seq, order });
        if order == Order::Ordered {
            g.ordered += 1;
        }
        Ok(Ticket {
            set: Arc::clone(self),
            seq,
            order,
        })
    }

    /// Number of tasks not yet ended.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().pending.len()
    }
}

impl Inner {
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
    /// Completes when the task may start.
    pub async fn ready(&self) {
        if self.set.lock().may_start(self.seq, self.order) {
            return;
        }
        self.set.lock().waiters += 1;
        let _waiting = Waiting(&self.set);
        loop {
            let mut notified = pin!(self.set.changed.notified());
            // Registered before the check, so a completion between check and await still wakes us.
            notified.as_mut().enable();
            if self.set.lock().may_start(self.seq, self.order) {
                break;
            }
            notified.await;
        }
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

    async fn started(t: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(20), t.ready())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn simple_commands_run_concurrently() {
        let ts = TaskSet::new();
        let a = ts.admit(Order::Simple).unwrap();
        let b = ts.admit(Order::Simple).unwrap();
        assert!(started(&b).await);
        assert!(started(&a).await);
    }

    #[tokio::test]
    async fn ordered_waits_for_earlier_and_blocks_later_simple() {
        let ts = TaskSet::new();
        let slow = ts.admit(Order::Simple).unwrap();
        let ord = ts.admit(Order::Ordered).unwrap();
        let later = ts.admit(Order::Simple).unwrap();
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
        let _slow = ts.admit(Order::Simple).unwrap();
        let _ord = ts.admit(Order::Ordered).unwrap();
        let hoq = ts.admit(Order::HeadOfQueue).unwrap();
        assert!(started(&hoq).await);
    }

    #[tokio::test]
    async fn waiting_ordered_wakes_on_completion() {
        let ts = TaskSet::new();
        let slow = ts.admit(Order::Simple).unwrap();
        let ord = ts.admit(Order::Ordered).unwrap();
        let waiter = tokio::spawn(async move {
            ord.ready().await;
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
        let ord = ts.admit(Order::Ordered).unwrap();
        let simple = ts.admit(Order::Simple).unwrap();
        assert!(!started(&simple).await);
        drop(ord); // as if the ORDERED command's future were dropped before it ran
        assert!(started(&simple).await);
    }

    #[tokio::test]
    async fn full_task_set_is_reported() {
        let ts = TaskSet::new();
        let tickets: Vec<_> = (0..MAX_TASKS_PER_LU)
            .map(|_| ts.admit(Order::Simple).unwrap())
            .collect();
        assert_eq!(ts.admit(Order::Simple).unwrap_err(), Full);
        drop(tickets);
        assert!(ts.admit(Order::Simple).is_ok());
    }
}
