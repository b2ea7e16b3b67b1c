//! Per-unit LBA range lock that makes an atomic read-modify-write (SCSI COMPARE AND WRITE,
//! ORWRITE and WRITE ATOMIC, SBC-3 5.2, 5.13; NVMe fused compare and write later) atomic
//! against every other write to an overlapping range, from any initiator and any protocol.
//!
//! Ranges are in logical blocks of the unit's device (`lba`, `blocks`): every front-end
//! addresses the same device, so they share one block size.
//!
//! Plain writes must stay cheap, so they only touch the range lock while an atomic
//! command is registered. The hand-over is a Dekker-style pair of SeqCst counters: a plain
//! write announces itself in `fast_writers` and then reads `atomic_cmds`; an atomic command
//! announces itself in `atomic_cmds` and then reads `fast_writers`. Sequential consistency
//! guarantees at least one of them sees the other: either the write falls back to the range
//! lock, or the atomic command waits until every unlocked write has completed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use esos_common::sync::LockExt as _;
use tokio::sync::Notify;

/// Ranges held at once are bounded by the task set (one per running command), so the
/// list stays short and a linear scan is the right structure.
#[derive(Debug, Default)]
pub struct RangeLocks {
    /// Atomic commands registered (waiting or holding a range).
    atomic_cmds: AtomicUsize,
    /// Plain writes in flight that did not take a range.
    fast_writers: AtomicUsize,
    /// Held ranges: (token, first LBA, end LBA exclusive).
    held: Mutex<Vec<(u64, u64, u64)>>,
    next_token: AtomicU64,
    /// Woken when a range is released or the last unlocked write completes.
    changed: Notify,
}

/// Keeps a range (or the unlocked-write count) until dropped, including when the command's
/// future is dropped by an abort.
#[derive(Debug)]
pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    token: Option<u64>,
    atomic: bool,
    fast: bool,
}

impl RangeLocks {
    /// For a plain WRITE: free unless an atomic command is registered, then the range.
    pub async fn write(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        self.fast_writers.fetch_add(1, Ordering::SeqCst);
        if self.atomic_cmds.load(Ordering::SeqCst) == 0 {
            return RangeGuard {
                locks: self,
                token: None,
                atomic: false,
                fast: true,
            };
        }
        self.fast_done();
        let token = self.acquire(lba, blocks).await;
        RangeGuard {
            locks: self,
            token: Some(token),
            atomic: false,
            fast: false,
        }
    }

    /// For an atomic read-modify-write: waits for unlocked writes to drain, then for the range.
    pub async fn atomic(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        self.atomic_cmds.fetch_add(1, Ordering::SeqCst);
        // The guard exists before the first await so an abort still unregisters.
        let mut guard = RangeGuard {
            locks: self,
            token: None,
            atomic: true,
            fast: false,
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.fast_writers.load(Ordering::SeqCst) == 0 {
                break;
            }
            notified.await;
        }
        guard.token = Some(self.acquire(lba, blocks).await);
        guard
    }

    async fn acquire(&self, lba: u64, blocks: u64) -> u64 {
        let end = lba.saturating_add(blocks.max(1));
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut held = self.held.locked();
                if !held.iter().any(|&(_, s, e)| s < end && lba < e) {
                    let token = self.next_token.fetch_add(1, Ordering::Relaxed);
                    held.push((token, lba, end));
                    return token;
                }
            }
            notified.await;
        }
    }

    fn fast_done(&self) {
        if self.fast_writers.fetch_sub(1, Ordering::SeqCst) == 1
            && self.atomic_cmds.load(Ordering::SeqCst) > 0
        {
            self.changed.notify_waiters();
        }
    }

    #[cfg(test)]
    fn held_count(&self) -> usize {
        self.held.locked().len()
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let l = self.locks;
        if self.fast {
            l.fast_done();
        }
        if let Some(token) = self.token {
            l.held.locked().retain(|&(t, _, _)| t != token);
            l.changed.notify_waiters();
        }
        if self.atomic {
            l.atomic_cmds.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    async fn pending<F: std::future::Future>(f: F) -> bool {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn plain_writes_take_no_range_without_atomic_commands() {
        let l = RangeLocks::default();
        let a = l.write(0, 8).await;
        let b = l.write(0, 8).await;
        assert_eq!(l.held_count(), 0);
        drop((a, b));
        assert_eq!(l.fast_writers.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn atomic_waits_for_unlocked_writes_then_blocks_overlapping_writes() {
        let l = Arc::new(RangeLocks::default());
        let w = l.write(0, 8).await;
        let l2 = Arc::clone(&l);
        let caw = tokio::spawn(async move {
            let _g = l2.atomic(4, 1).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !caw.is_finished(),
            "atomic command ran under an unlocked write"
        );
        drop(w);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(l.held_count(), 1);
        // Overlapping write waits; a disjoint one does not.
        assert!(pending(l.write(0, 5)).await);
        let _d = l.write(5, 3).await;
        caw.await.unwrap();
        let _o = l.write(0, 5).await;
    }

    #[tokio::test]
    async fn dropped_atomic_future_releases_everything() {
        let l = RangeLocks::default();
        let g = l.atomic(0, 4).await;
        assert!(pending(l.atomic(2, 1)).await);
        drop(g);
        assert_eq!(l.held_count(), 0);
        assert_eq!(l.atomic_cmds.load(Ordering::SeqCst), 0);
        let _g = l.write(0, 4).await;
        assert_eq!(l.held_count(), 0);
    }
}
