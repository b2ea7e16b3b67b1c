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
    replicas: Vec<crate::cluster::ReplicaInfo>,
    /// (device, peer, bytes resynced since start).
    resynced: Vec<(String, String, u64)>,
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
            replicas: Vec::new(),
            resynced: Vec::new(),
        }
        .with_replicas(&m.replica_set())
    }

    fn with_replicas(mut self, set: &crate::cluster::Replicas) -> Snapshot {
        self.replicas = set.infos();
        self.resynced = set.resync_totals(&self.replicas);
        self
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
        encode_replicas(&mut enc, &self.manager)
    }
}

/// `esos_replica_*`: one series per replicated device, and per peer.
fn encode_replicas(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), fmt::Error> {
    type Flag = fn(&crate::cluster::ReplicaInfo) -> bool;
    let per_device: [(&str, &str, Flag); 3] = [
        (
            "replica_role",
            "1 while this node is primary of the device, 0 while secondary",
            |r| r.role == "primary",
        ),
        (
            "replica_up_to_date",
            "1 while this node's copy holds every acknowledged write",
            |r| r.data == "up-to-date",
        ),
        (
            "replica_quorate",
            "1 while a majority of voters answers this node",
            |r| r.quorate,
        ),
    ];
    for (name, help, value) in per_device {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for r in &s.replicas {
            m.encode_family(&[("device", r.device.as_str())])?
                .encode_gauge(&i64::from(value(r)))?;
        }
    }
    let mut m = enc.encode_descriptor(
        "replica_out_of_sync",
        "Data that may differ between this node and the peer",
        Some(&Unit::Bytes),
        MetricType::Gauge,
    )?;
    for r in &s.replicas {
        for p in &r.peers {
            let labels: Labels = [("device", &r.device), ("peer", &p.name)];
            let v = i64::try_from(p.out_of_sync_bytes).unwrap_or(i64::MAX);
            m.encode_family(&labels)?.encode_gauge(&v)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "replica_link_connected",
        "1 while the replication link to the peer is up",
        None,
        MetricType::Gauge,
    )?;
    for r in &s.replicas {
        for p in &r.peers {
            let labels: Labels = [("device", &r.device), ("peer", &p.name)];
            m.encode_family(&labels)?
                .encode_gauge(&i64::from(p.link != "connecting"))?;
        }
    }
    let mut m = enc.encode_descriptor(
        "replica_resync",
        "Data copied by resyncs with the peer since the daemon started",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?;
    for (device, peer, total) in &s.resynced {
        let labels: Labels = [("device", device), ("peer", peer)];
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(total, None)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{PeerInfo, ReplicaInfo};

    fn render_snapshot(s: Snapshot) -> String {
        let mut registry = Registry::with_prefix("esos");
        registry.register_collector(Box::new(EsosCollector { manager: s }));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn replica_series_by_device_and_peer() {
        let peer = PeerInfo {
            name: "n2".into(),
            link: "sync-source".into(),
            role: Some("secondary".into()),
            data: Some("inconsistent".into()),
            out_of_sync_bytes: 65536,
            sync_done_bytes: 10,
            sync_total_bytes: 20,
            sync_rate_bytes_per_sec: 1,
            verify_mismatched_chunks: 0,
            in_flight: 0,
        };
        let r = ReplicaInfo {
            device: "db".into(),
            me: "n1".into(),
            role: "primary".into(),
            data: "up-to-date".into(),
            generation: "0000000000000001".into(),
            quorate: true,
            lease_valid: true,
            primary: Some("n1".into()),
            down: false,
            peers: vec![peer],
            report: None,
            port_groups: Vec::new(),
        };
        let s = Snapshot {
            units: Vec::new(),
            targets: Vec::new(),
            sessions: Vec::new(),
            logins: Default::default(),
            zero_copy_bytes: 0,
            replicas: vec![r],
            resynced: vec![("db".into(), "n2".into(), 30)],
        };
        let text = render_snapshot(s);
        for line in [
            "esos_replica_role{device=\"db\"} 1",
            "esos_replica_up_to_date{device=\"db\"} 1",
            "esos_replica_quorate{device=\"db\"} 1",
            "esos_replica_out_of_sync_bytes{device=\"db\",peer=\"n2\"} 65536",
            "esos_replica_link_connected{device=\"db\",peer=\"n2\"} 1",
            "esos_replica_resync_bytes_total{device=\"db\",peer=\"n2\"} 30",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn resync_totals_keep_finished_resyncs() {
        let set = crate::cluster::Replicas::default();
        let info = |done| ReplicaInfo {
            device: "db".into(),
            me: "n1".into(),
            role: "primary".into(),
            data: "up-to-date".into(),
            generation: String::new(),
            quorate: true,
            lease_valid: true,
            primary: None,
            down: false,
            peers: vec![PeerInfo {
                name: "n2".into(),
                link: "connected".into(),
                role: None,
                data: None,
                out_of_sync_bytes: 0,
                sync_done_bytes: done,
                sync_total_bytes: 0,
                sync_rate_bytes_per_sec: 0,
                verify_mismatched_chunks: 0,
                in_flight: 0,
            }],
            report: None,
            port_groups: Vec::new(),
        };
        let total = |done| set.resync_totals(&[info(done)])[0].2;
        assert_eq!(total(100), 100);
        assert_eq!(total(150), 150);
        assert_eq!(total(20), 170, "a new resync adds to the finished one");
    }
}
