//! Per-logical-unit I/O statistics: counters and latency histograms that management
//! (Prometheus `/metrics`, the API, the TUI) reads while commands run. Every front-end
//! counts into the same [`LuStats`] of a unit, so the numbers cover all protocols. They
//! count the commands that entered a front-end's task set; those answered at admission
//! (unit attentions, malformed commands, queue full) are not I/O and are not counted.
//!
//! Plain relaxed atomics: a command adds to a handful of counters once, when it completes;
//! readers take a [`StatsSnapshot`] that may be a few commands out of step between fields,
//! which monitoring tolerates.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in microseconds (the last bucket, +Inf,
/// is implicit). From a RAM disk's tens of µs to a stalled spindle's hundreds of ms.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// The direction a command is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    Read,
    Write,
    /// Everything else (inquiries, flushes, unmaps, reservations...).
    Other,
}

#[derive(Debug, Default)]
struct Direction {
    commands: AtomicU64,
    bytes: AtomicU64,
    /// Sum of latencies, microseconds.
    latency_us: AtomicU64,
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
}

impl Direction {
    fn add(&self, bytes: u64, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.commands.fetch_add(1, Relaxed);
        if bytes > 0 {
            self.bytes.fetch_add(bytes, Relaxed);
        }
        self.latency_us.fetch_add(us, Relaxed);
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> DirectionSnapshot {
        DirectionSnapshot {
            commands: self.commands.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            latency_sum: Duration::from_micros(self.latency_us.load(Relaxed)),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
        }
    }
}

/// Counters of one logical unit, across every path and session.
#[derive(Debug, Default)]
pub struct LuStats {
    read: Direction,
    write: Direction,
    other: Direction,
    /// Commands that ended in CHECK CONDITION (any direction).
    errors: AtomicU64,
    /// Commands admitted and not yet completed.
    in_flight: AtomicU64,
}

impl LuStats {
    /// A command starts; it counts as in flight until the guard drops (also when the
    /// command is aborted and its future dropped).
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    /// One command finished: `bytes` moved, `latency` from admission to completion.
    pub fn finished(&self, kind: IoKind, bytes: u64, latency: Duration, error: bool) {
        match kind {
            IoKind::Read => self.read.add(bytes, latency),
            IoKind::Write => self.write.add(bytes, latency),
            IoKind::Other => self.other.add(0, latency),
        }
        if error {
            self.errors.fetch_add(1, Relaxed);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            read: self.read.snapshot(),
            write: self.write.snapshot(),
            other: self.other.snapshot(),
            errors: self.errors.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
        }
    }
}

/// See [`LuStats::start`].
pub struct InFlight<'a>(&'a LuStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// One direction's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectionSnapshot {
    pub commands: u64,
    pub bytes: u64,
    pub latency_sum: Duration,
    /// Per bucket of [`LATENCY_BUCKETS_US`] plus +Inf; not cumulative.
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
}

/// A logical unit's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub read: DirectionSnapshot,
    pub write: DirectionSnapshot,
    pub other: DirectionSnapshot,
    pub errors: u64,
    pub in_flight: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bytes_and_errors() {
        let s = LuStats::default();
        for (us, kind) in [
            (10, IoKind::Read),
            (25, IoKind::Read),
            (26, IoKind::Read),
            (2_000_000, IoKind::Write),
            (300, IoKind::Other),
        ] {
            let _g = s.start();
            s.finished(kind, 4096, Duration::from_micros(us), kind == IoKind::Other);
        }
        let running = s.start();
        let snap = s.snapshot();
        assert_eq!(snap.read.commands, 3);
        assert_eq!(snap.read.bytes, 3 * 4096);
        assert_eq!(snap.read.buckets[0], 2, "10 and 25 µs are both ≤ 25");
        assert_eq!(snap.read.buckets[1], 1);
        assert_eq!(snap.read.latency_sum, Duration::from_micros(61));
        assert_eq!(snap.write.buckets[LATENCY_BUCKETS_US.len()], 1, "+Inf");
        assert_eq!(snap.other.bytes, 0, "other commands move no counted bytes");
        assert_eq!(snap.errors, 1);
        assert_eq!(snap.in_flight, 1);
        drop(running);
        assert_eq!(s.snapshot().in_flight, 0);
    }
}
