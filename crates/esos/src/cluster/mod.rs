//! High availability in the daemon: replicated devices, the ALUA table that follows the
//! primary, and how the management plane sees and drives them.
//!
//! The replication itself (`esos_replica`) decides roles through the quorum; this module
//! only reflects its decisions: each replicated unit gets its own port group table, one
//! target port group per cluster member ([`alua`]), kept in step with the replica's role
//! view; reservations the primary changes travel to the secondaries ([`reservations`]).
//! The API, CLI, TUI and metrics read [`ReplicaInfo`] and act through [`ReplicaControl`].

pub mod alua;
pub mod node;
mod replica;
pub mod reservations;
pub mod unit;

use std::collections::BTreeMap;
use std::sync::Arc;

use esos_block::BoxFuture;
use esos_replica::status::ReplicaStatus;
use serde::{Deserialize, Serialize};

/// Who this node thinks is primary, as a replica publishes it on every change.
pub use esos_replica::RoleView;

/// What an administrator (or the OCF agent) may ask of a replicated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Become primary; `force` also when the quorum record names no up-to-date node
    /// (the first promotion of a new device) or another primary.
    Promote {
        force: bool,
    },
    Demote,
    /// Undo [`Action::Down`].
    Up,
    /// Demote, drop the links, refuse I/O (maintenance, the OCF agent's stop).
    Down,
    /// Start an online verify against every connected peer.
    Verify,
    /// End a split brain: keep this node's data (`keep_local`) or the peer's.
    Resolve {
        keep_local: bool,
    },
}

impl Action {
    /// The verb in the API path and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote { .. } => "promote",
            Action::Demote => "demote",
            Action::Up => "up",
            Action::Down => "down",
            Action::Verify => "verify",
            Action::Resolve { .. } => "resolve",
        }
    }
}

/// Why an action on a replicated device was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaActionError {
    #[error("no replicated device {0:?}")]
    NotFound(String),
    /// The replica or the quorum refused: not up to date, no quorum, another primary...
    #[error("{device}: {action} refused: {reason}")]
    Refused {
        device: String,
        action: &'static str,
        reason: String,
    },
}

/// One running replicated device, as the daemon drives it. The real one wraps
/// `esos_replica::device::Replica`; API tests use an in-memory one.
pub trait ReplicaControl: Send + Sync + std::fmt::Debug {
    fn status(&self) -> ReplicaStatus;
    fn view(&self) -> RoleView;
    /// Does `action`; the error is the replica's reason, in a sentence.
    fn act(&self, action: Action) -> BoxFuture<'_, Result<(), String>>;
}

/// The replicated devices of a running daemon, by device name.
#[derive(Debug, Default, Clone)]
pub struct Replicas {
    by_device: BTreeMap<String, Arc<dyn ReplicaControl>>,
    /// Each replicated unit's own ALUA table, for the reports.
    tables: BTreeMap<String, Arc<esos_lu::access::PortGroups>>,
    /// (device, peer) → (bytes of finished resyncs, bytes done by the current one when
    /// last read): replicas report the current resync only; metrics want a running total.
    resynced: Arc<std::sync::Mutex<ResyncTotals>>,
}

/// (device, peer) → (bytes of finished resyncs, bytes of the current one when last read).
type ResyncTotals = BTreeMap<(String, String), (u64, u64)>;

impl Replicas {
    /// The replicas of `units`.
    pub fn of(units: &[(String, unit::ReplicatedUnit)]) -> Replicas {
        let mut r = Replicas::default();
        for (name, u) in units {
            r.insert(
                name.clone(),
                Arc::clone(&u.replica) as Arc<dyn ReplicaControl>,
            );
            r.tables
                .insert(name.clone(), Arc::clone(&u.unit.settings().alua));
        }
        r
    }

    /// Adds the replicas of `units` (started by a live change).
    pub fn extend(&mut self, units: &[(String, unit::ReplicatedUnit)]) {
        let more = Replicas::of(units);
        self.by_device.extend(more.by_device);
        self.tables.extend(more.tables);
    }

    /// The report of `device` from its replica and its ALUA table.
    fn info(&self, device: &str, r: &Arc<dyn ReplicaControl>) -> ReplicaInfo {
        let mut info = ReplicaInfo::new(&r.status(), r.view().down);
        if let Some(t) = self.tables.get(device) {
            info.port_groups = t
                .states()
                .into_iter()
                .map(|(id, state)| GroupState {
                    id,
                    state: state.as_str().into(),
                })
                .collect();
        }
        info
    }

    pub fn insert(&mut self, device: String, r: Arc<dyn ReplicaControl>) {
        self.by_device.insert(device, r);
    }

    pub fn remove(&mut self, device: &str) -> Option<Arc<dyn ReplicaControl>> {
        self.by_device.remove(device)
    }

    pub fn get(&self, device: &str) -> Option<&Arc<dyn ReplicaControl>> {
        self.by_device.get(device)
    }

    pub fn is_empty(&self) -> bool {
        self.by_device.is_empty()
    }

    /// Every replicated device's report, by device name.
    pub fn infos(&self) -> Vec<ReplicaInfo> {
        self.by_device
            .iter()
            .map(|(name, r)| self.info(name, r))
            .collect()
    }

    /// Bytes resynced to or from each peer since the daemon started, by (device, peer),
    /// from `infos` (a current [`Self::infos`]). A resync whose progress went back
    /// started anew: the old one's bytes join the total. Read at each scrape, so a
    /// resync that starts and ends between two scrapes is not seen.
    pub fn resync_totals(&self, infos: &[ReplicaInfo]) -> Vec<(String, String, u64)> {
        use esos_common::sync::LockExt as _;
        let mut seen = self.resynced.locked();
        let mut out = Vec::new();
        for r in infos {
            for p in &r.peers {
                let e = seen.entry((r.device.clone(), p.name.clone())).or_default();
                if p.sync_done_bytes < e.1 {
                    e.0 = e.0.saturating_add(e.1);
                }
                e.1 = p.sync_done_bytes;
                out.push((r.device.clone(), p.name.clone(), e.0.saturating_add(e.1)));
            }
        }
        out
    }

    /// Runs `action` on `device` and reports it afterwards.
    pub async fn act(
        &self,
        device: &str,
        action: Action,
    ) -> Result<ReplicaInfo, ReplicaActionError> {
        let r = self
            .get(device)
            .ok_or_else(|| ReplicaActionError::NotFound(device.to_owned()))?
            .clone();
        r.act(action)
            .await
            .map_err(|reason| ReplicaActionError::Refused {
                device: device.to_owned(),
                action: action.as_str(),
                reason,
            })?;
        tracing::info!(device, action = action.as_str(), "replica action done");
        Ok(self.info(device, &r))
    }
}

/// One replicated device as the API, the CLI (`esos replica status --json`), the TUI and
/// the OCF agent see it. State names are those of `esos_replica::status` (`as_str`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaInfo {
    pub device: String,
    /// This node's name.
    pub me: String,
    /// primary | secondary
    pub role: String,
    /// up-to-date | outdated | inconsistent | failed
    pub data: String,
    /// This node's current data generation, 16 hex digits.
    pub generation: String,
    /// A majority of voters answered the last exchange.
    pub quorate: bool,
    /// This node holds an unexpired primary lease (only ever true on the primary).
    pub lease_valid: bool,
    /// The primary as the cluster record names it; null when none is known.
    pub primary: Option<String>,
    /// Taken down by `esos replica down` (no links, no I/O).
    pub down: bool,
    pub peers: Vec<PeerInfo>,
    /// Set during a split brain or with unrelated data: what differs and what to do.
    pub report: Option<String>,
    /// The device's ALUA target port groups (one per member) as this node reports them.
    #[serde(default)]
    pub port_groups: Vec<GroupState>,
}

/// One target port group of a replicated device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupState {
    /// The member's first portal group tag.
    pub id: u16,
    /// active-optimized | standby | unavailable | transitioning
    pub state: String,
}

/// One peer of a replicated device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerInfo {
    pub name: String,
    /// connecting | connected | sync-source | sync-target | verifying | split-brain |
    /// unrelated
    pub link: String,
    /// The peer's role and data state as it last told us; null while not connected.
    pub role: Option<String>,
    pub data: Option<String>,
    /// Bytes that may differ between this node and the peer.
    pub out_of_sync_bytes: u64,
    /// Resync or verify progress: bytes done of the bytes to do, and the rate now.
    pub sync_done_bytes: u64,
    pub sync_total_bytes: u64,
    pub sync_rate_bytes_per_sec: u64,
    /// Chunks found different by the last online verify.
    pub verify_mismatched_chunks: u64,
    /// Replicated writes sent and not acknowledged yet.
    pub in_flight: u32,
}

/// `GET /replicas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaList {
    pub replicas: Vec<ReplicaInfo>,
}

impl ReplicaInfo {
    pub fn new(s: &ReplicaStatus, down: bool) -> ReplicaInfo {
        ReplicaInfo {
            device: s.device.clone(),
            me: s.me.to_string(),
            role: s.role.as_str().into(),
            data: s.data.as_str().into(),
            generation: format!("{:016x}", s.generation),
            quorate: s.quorate,
            lease_valid: s.lease_valid,
            primary: s.primary.as_ref().map(|p| p.to_string()),
            down,
            peers: s
                .peers
                .iter()
                .map(|p| PeerInfo {
                    name: p.name.to_string(),
                    link: p.link.as_str().into(),
                    role: p.role.map(|r| r.as_str().into()),
                    data: p.data.map(|d| d.as_str().into()),
                    out_of_sync_bytes: p.out_of_sync_bytes,
                    sync_done_bytes: p.sync_done_bytes,
                    sync_total_bytes: p.sync_total_bytes,
                    sync_rate_bytes_per_sec: p.sync_rate_bytes_per_sec,
                    verify_mismatched_chunks: p.verify_mismatched_chunks,
                    in_flight: p.in_flight,
                })
                .collect(),
            report: s.report.clone(),
            port_groups: Vec::new(),
        }
    }
}
