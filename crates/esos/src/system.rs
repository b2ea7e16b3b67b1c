//! What the daemon says about itself: its version, process and start time
//! ([`SystemInfo`]), and a bounded in-memory ring of its most recent log events
//! ([`LogRing`], fed by [`RingLayer`]) so the API, the CLI and the TUI can show the log
//! without access to the journal.
//!
//! The ring layer sits on the same registry as the stderr formatter, behind the same
//! `EnvFilter`, so it never holds an event the log itself does not show. The daemon never
//! logs CHAP secrets or API tokens; the ring therefore cannot hold them either.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use esos_common::sync::LockExt;
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Events the ring keeps; older ones are dropped. At the daemon's usual rate (a few
/// events per login, change or failure) this covers hours, and bounds memory to about
/// `LOG_RING_CAPACITY * MAX_EVENT_BYTES`.
pub const LOG_RING_CAPACITY: usize = 500;

/// Longest message (with its fields) kept per event, in bytes; longer ones are cut at a
/// character boundary and end with `…`.
pub const MAX_EVENT_BYTES: usize = 1024;

/// One log event as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEvent {
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// error | warn | info | debug | trace
    pub level: String,
    /// The emitting module, e.g. `esos_iscsi::server`.
    pub target: String,
    /// The message, then its fields as `key=value`.
    pub message: String,
}

/// The daemon's own information (`GET /api/v1/system`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SystemInfo {
    /// The daemon's version (its crate version).
    pub version: String,
    /// The daemon's process ID.
    pub pid: u32,
    /// Start time, UTC, RFC 3339.
    pub started: String,
    /// Start time in seconds since the Unix epoch.
    pub started_unix: u64,
    /// Seconds since the start.
    pub uptime_s: u64,
    /// The config file live changes are written to; null for a command-line configuration.
    pub config_file: Option<String>,
    /// Where the daemon keeps its state (LU identities, the API socket).
    pub data_dir: String,
    /// The log filter in force (`--log-level`, `RUST_LOG` or `server.log_level`).
    pub log_level: String,
}

/// The newest [`LOG_RING_CAPACITY`] events, oldest first.
#[derive(Debug, Default)]
pub struct LogRing {
    events: Mutex<VecDeque<(Level, LogEvent)>>,
}

impl LogRing {
    pub fn new() -> LogRing {
        LogRing::default()
    }

    /// Adds an event, dropping the oldest when full.
    pub fn push(&self, level: Level, event: LogEvent) {
        // A poisoned lock only means a panic while pushing; the deque is still whole.
        let mut q = self.events.locked();
        if q.len() == LOG_RING_CAPACITY {
            q.pop_front();
        }
        q.push_back((level, event));
    }

    /// The newest `limit` events at `min_level` or more severe, oldest first (the order of
    /// a log file's tail).
    pub fn recent(&self, limit: usize, min_level: Level) -> Vec<LogEvent> {
        let q = self.events.locked();
        // tracing orders levels by verbosity: ERROR < WARN < ... < TRACE.
        let mut out: Vec<LogEvent> = q
            .iter()
            .rev()
            .filter(|(l, _)| *l <= min_level)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect();
        out.reverse();
        out
    }

    pub fn len(&self) -> usize {
        self.events.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `tracing` layer that copies every event it sees into a [`LogRing`].
#[derive(Debug, Clone)]
pub struct RingLayer {
    ring: Arc<LogRing>,
}

impl RingLayer {
    pub fn new(ring: Arc<LogRing>) -> RingLayer {
        RingLayer { ring }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *meta.level();
        self.ring.push(
            level,
            LogEvent {
                time: rfc3339_millis(SystemTime::now()),
                level: level_name(level).to_owned(),
                target: meta.target().to_owned(),
                message: fields.finish(),
            },
        );
    }
}

/// Collects the message and the other fields of one event, bounded by
/// [`MAX_EVENT_BYTES`] while it writes so a huge field costs no more than that.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Fields {
    fn add(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if self.message.len() + self.rest.len() > MAX_EVENT_BYTES {
            return;
        }
        if field.name() == "message" {
            let _ = self.message.write_fmt(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn finish(self) -> String {
        let mut s = self.message;
        s.push_str(&self.rest);
        truncate(s.trim_start().to_owned(), MAX_EVENT_BYTES)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, format_args!("{value:?}"));
    }
}

/// `s` cut to at most `max` bytes at a character boundary, marked with `…` when cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    const MARK: &str = "…";
    let mut end = max.saturating_sub(MARK.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(MARK);
    s
}

pub fn level_name(l: Level) -> &'static str {
    match l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The names [`parse_level`] accepts, for error messages.
pub const LEVEL_NAMES: &str = "error, warn, info, debug, trace";

/// A level name, any case; `None` for anything else.
pub fn parse_level(s: &str) -> Option<Level> {
    Some(match s.to_ascii_lowercase().as_str() {
        "error" => Level::ERROR,
        "warn" | "warning" => Level::WARN,
        "info" => Level::INFO,
        "debug" => Level::DEBUG,
        "trace" => Level::TRACE,
        _ => return None,
    })
}

/// `t` as RFC 3339 UTC with milliseconds, e.g. `2026-11-25T23:58:14.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let s = rfc3339(d.as_secs());
    format!("{}.{:03}Z", &s[..s.len() - 1], d.subsec_millis())
}

/// Unix seconds as RFC 3339 UTC, e.g. `2026-11-25T23:58:14Z`.
pub fn rfc3339(unix_s: u64) -> String {
    let days = unix_s / 86_400;
    let rem = unix_s % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (days ≥ 0): shift the year
/// to start in March so the leap day ends it, then split into 400-year eras.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = era * 400 + yoe + u64::from(m <= 2);
    (y, m, d)
}

// --- the daemon's process-wide state ------------------------------------------------------

/// Set once by [`install`] when the daemon sets up logging.
struct Daemon {
    ring: Arc<LogRing>,
    log_filter: String,
}

static DAEMON: OnceLock<Daemon> = OnceLock::new();
static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Records the daemon's start, its log filter and its ring; called once by `main` when
/// it installs the subscriber. Later calls change nothing.
pub fn install(ring: Arc<LogRing>, log_filter: String) {
    STARTED.get_or_init(SystemTime::now);
    let _ = DAEMON.set(Daemon { ring, log_filter });
}

/// The daemon's ring; `None` before [`install`] (e.g. in tests of other parts).
pub fn daemon_log(limit: usize, min_level: Level) -> Vec<LogEvent> {
    DAEMON
        .get()
        .map(|d| d.ring.recent(limit, min_level))
        .unwrap_or_default()
}

/// This process's [`SystemInfo`] for a daemon serving `config_file` from `data_dir`.
pub fn daemon_info(config_file: Option<&Path>, data_dir: &Path) -> SystemInfo {
    let started = *STARTED.get_or_init(SystemTime::now);
    let log_filter = DAEMON
        .get()
        .map_or_else(String::new, |d| d.log_filter.clone());
    info_at(
        started,
        SystemTime::now(),
        config_file,
        data_dir,
        log_filter,
    )
}

fn info_at(
    started: SystemTime,
    now: SystemTime,
    config_file: Option<&Path>,
    data_dir: &Path,
    log_level: String,
) -> SystemInfo {
    let started_unix = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    SystemInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        started: rfc3339(started_unix),
        started_unix,
        uptime_s: now.duration_since(started).unwrap_or_default().as_secs(),
        config_file: config_file.map(|p| p.display().to_string()),
        data_dir: data_dir.display().to_string(),
        log_level,
    }
}

/// `secs` as a short duration for people: `3d 4h`, `2h 5m`, `7m 3s`, `42s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    fn ev(n: usize) -> LogEvent {
        LogEvent {
            time: String::new(),
            level: "info".into(),
            target: "t".into(),
            message: format!("event {n}"),
        }
    }

    #[test]
    fn the_ring_is_bounded_and_keeps_the_newest() {
        let r = LogRing::new();
        for n in 0..LOG_RING_CAPACITY + 7 {
            r.push(Level::INFO, ev(n));
        }
        assert_eq!(r.len(), LOG_RING_CAPACITY);
        let all = r.recent(usize::MAX, Level::TRACE);
        assert_eq!(all.len(), LOG_RING_CAPACITY);
        assert_eq!(all[0].message, "event 7");
        assert_eq!(
            all.last().unwrap().message,
            format!("event {}", LOG_RING_CAPACITY + 6)
        );
        let last3: Vec<_> = r
            .recent(3, Level::INFO)
            .into_iter()
            .map(|e| e.message)
            .collect();
        let n = LOG_RING_CAPACITY + 6;
        assert_eq!(
            last3,
            [n - 2, n - 1, n].map(|i| format!("event {i}")).to_vec()
        );
    }

    #[test]
    fn recent_filters_by_level() {
        let r = LogRing::new();
        r.push(Level::ERROR, ev(0));
        r.push(Level::DEBUG, ev(1));
        r.push(Level::WARN, ev(2));
        r.push(Level::INFO, ev(3));
        let names = |l| -> Vec<String> { r.recent(10, l).into_iter().map(|e| e.message).collect() };
        assert_eq!(names(Level::ERROR), ["event 0"]);
        assert_eq!(names(Level::WARN), ["event 0", "event 2"]);
        assert_eq!(names(Level::INFO), ["event 0", "event 2", "event 3"]);
        assert_eq!(names(Level::TRACE).len(), 4);
        // The limit counts matching events only.
        assert_eq!(
            r.recent(1, Level::WARN)
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>(),
            ["event 2"]
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let s = truncate("é".repeat(MAX_EVENT_BYTES), MAX_EVENT_BYTES);
        assert!(s.len() <= MAX_EVENT_BYTES, "{}", s.len());
        assert!(s.ends_with('…'));
        assert_eq!(truncate("short".into(), MAX_EVENT_BYTES), "short");
    }

    #[test]
    fn the_layer_records_what_the_filter_lets_through() {
        let ring = Arc::new(LogRing::new());
        let filter = tracing_subscriber::EnvFilter::new("warn");
        let sub = tracing_subscriber::registry()
            .with(filter)
            .with(RingLayer::new(ring.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::info!("not kept");
            tracing::warn!(device = "d1", size = 42, "device slow");
            tracing::error!(error = %"boom", "flush failed");
            tracing::warn!(big = %"x".repeat(4 * MAX_EVENT_BYTES), "huge");
        });
        let all = ring.recent(usize::MAX, Level::TRACE);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[0].message, "device slow device=d1 size=42");
        assert_eq!(all[0].level, "warn");
        assert!(all[0].target.contains("system"), "{}", all[0].target);
        assert!(all[0].time.ends_with('Z') && all[0].time.len() == 24);
        assert_eq!(all[1].message, "flush failed error=boom");
        assert_eq!(all[1].level, "error");
        assert!(all[2].message.starts_with("huge big=xxx"));
        assert!(all[2].message.len() <= MAX_EVENT_BYTES);
        assert!(all[2].message.ends_with('…'));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339_millis(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn levels_parse_and_reject() {
        assert_eq!(parse_level("WARN"), Some(Level::WARN));
        assert_eq!(parse_level("trace"), Some(Level::TRACE));
        assert_eq!(parse_level("loud"), None);
        for l in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            assert_eq!(parse_level(level_name(l)), Some(l));
        }
    }

    #[test]
    fn info_reports_uptime_and_paths() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let now = start + Duration::from_secs(3725);
        let i = info_at(
            start,
            now,
            Some(Path::new("/etc/esos/esos.toml")),
            Path::new("/var/lib/esos"),
            "info".into(),
        );
        assert_eq!(i.uptime_s, 3725);
        assert_eq!(i.started, "2023-11-14T22:13:20Z");
        assert_eq!(i.started_unix, 1_700_000_000);
        assert_eq!(i.config_file.as_deref(), Some("/etc/esos/esos.toml"));
        assert_eq!(i.pid, std::process::id());
        assert_eq!(human_duration(i.uptime_s), "1h 2m");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(90_000), "1d 1h");
    }
}
