//! Prometheus metrics: per-device I/O counters and latency histograms, sessions, logins.
//!
//! Read at scrape time from the live objects (the manager's units and the server's session
//! table), so a device added or removed live appears or disappears at the next scrape and
//! nothing is counted twice.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use esos_lu::stats::{DirectionSnapshot, LATENCY_BUCKETS_US};

use crate::manager::Manager;

/// The text exposition (OpenMetrics text format) of everything esos measures.
pub fn render(manager: &Manager) -> String {
    let mut registry = Registry::with_prefix("esos");
    registry.register_collector(Box::new(EsosCollector {
        manager: Snapshot::take(manager),
    }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `addr` (TCP) until the task is dropped.
pub async fn serve_tcp(addr: SocketAddr, manager: Arc<Manager>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving Prometheus metrics on /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = manager.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    render(&m),
                )
            }
        }),
    );
    axum::serve(listener, app).await
}

/// What a scrape reports, read from the manager once (the collector must own its data).
struct Snapshot {
    units: Vec<(String, esos_lu::stats::StatsSnapshot)>,
    targets: Vec<String>,
    sessions: Vec<Option<String>>,
    logins: esos_iscsi::server::LoginCounts,
    zero_copy_bytes: u64,
}

impl Snapshot {
    fn take(m: &Manager) -> Snapshot {
        Snapshot {
            units: m
                .units()
                .into_iter()
                .map(|(name, lu)| (name, lu.stats().snapshot()))
                .collect(),
            targets: m.targets().into_iter().map(|t| t.name).collect(),
            sessions: m.sessions().into_iter().map(|s| s.target).collect(),
            logins: m.login_counts(),
            zero_copy_bytes: m.zero_copy_bytes(),
        }
    }
}

struct EsosCollector {
    manager: Snapshot,
}

impl fmt::Debug for EsosCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EsosCollector")
    }
}

type Labels<'a> = [(&'static str, &'a str); 2];

impl Collector for EsosCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let units = &self.manager.units;
        let dirs = |s: &esos_lu::stats::StatsSnapshot| {
            [("read", s.read), ("write", s.write), ("other", s.other)]
        };

        let mut m = enc.encode_descriptor(
            "device_commands",
            "SCSI commands completed, by device and direction",
            None,
            MetricType::Counter,
        )?;
        for (name, s) in units {
            for (dir, d) in dirs(s) {
                let labels: Labels = [("device", name), ("direction", dir)];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&d.commands, None)?;
            }
        }

        let mut m = enc.encode_descriptor(
            "device_transferred",
            "Data read from or written to the device by initiators",
            Some(&Unit::Bytes),
            MetricType::Counter,
        )?;
        for (name, s) in units {
            for (dir, d) in dirs(s).into_iter().take(2) {
                let labels: Labels = [("device", name), ("direction", dir)];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&d.bytes, None)?;
            }
        }

        let mut m = enc.encode_descriptor(
            "device_latency",
            "Time from admission to completion of a command",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (name, s) in units {
            for (dir, d) in dirs(s) {
                let labels: Labels = [("device", name), ("direction", dir)];
                encode_histogram(m.encode_family(&labels)?, &d)?;
            }
        }

        let mut m = enc.encode_descriptor(
            "device_errors",
            "Commands that ended in CHECK CONDITION",
            None,
            MetricType::Counter,
        )?;
        for (name, s) in units {
            m.encode_family(&[("device", name.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&s.errors, None)?;
        }

        let mut m = enc.encode_descriptor(
            "device_queue_depth",
            "Commands admitted and not yet completed",
            None,
            MetricType::Gauge,
        )?;
        for (name, s) in units {
            let v = i64::try_from(s.in_flight).unwrap_or(i64::MAX);
            m.encode_family(&[("device", name.as_str())])?
                .encode_gauge(&v)?;
        }

        let mut per_target: std::collections::BTreeMap<String, i64> = self
            .manager
            .targets
            .iter()
            .map(|t| (t.clone(), 0))
            .collect();
        for t in &self.manager.sessions {
            let key = t.clone().unwrap_or_else(|| "(discovery)".into());
            *per_target.entry(key).or_default() += 1;
        }
        let mut m = enc.encode_descriptor(
            "sessions",
            "Sessions in full feature phase, by target",
            None,
            MetricType::Gauge,
        )?;
        for (target, n) in &per_target {
            m.encode_family(&[("target", target.as_str())])?
                .encode_gauge(n)?;
        }

        let logins = self.manager.logins;
        let mut m = enc.encode_descriptor(
            "logins",
            "Connections that reached full feature phase",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&logins.succeeded, None)?;
        let mut m = enc.encode_descriptor(
            "login_failures",
            "Connections that ended during login (refused, timed out, malformed or closed)",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&logins.failed, None)?;
        let mut m = enc.encode_descriptor(
            "zero_copy_read_bytes",
            "Data-In bytes sent straight from the page cache (server.iscsi.zero_copy_reads)",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&self.manager.zero_copy_bytes, None)?;
        Ok(())
    }
}

fn encode_histogram(
    mut m: prometheus_client::encoding::MetricEncoder<'_>,
    d: &DirectionSnapshot,
) -> Result<(), fmt::Error> {
    let mut buckets = [(0f64, 0u64); LATENCY_BUCKETS_US.len() + 1];
    for (i, b) in buckets.iter_mut().enumerate() {
        let upper = LATENCY_BUCKETS_US
            .get(i)
            .map_or(f64::MAX, |&us| us as f64 / 1e6);
        *b = (upper, d.buckets[i]);
    }
    m.encode_histogram::<NoLabelSet>(d.latency_sum.as_secs_f64(), d.commands, &buckets, None)
}
