//! This node in its cluster: the cluster listener (replication and quorum on one port),
//! the quorum's voter and proposer, and the start of every replicated unit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use esos_lu::access::PortGroups;
use esos_replica::net::Router;
use esos_replica::quorum::{Quorum, QuorumConfig, QuorumStartError};
use esos_replica::{Arbiter, NodeName};
use esos_scsi::{Identity, LogicalUnit};
use tokio::task::JoinHandle;

use super::unit::{self, ReplicatedUnit};
use crate::config::{ClusterPlan, Plan};
use crate::graph::{self, GraphError};

/// Directory under the data directory where this node's voter keeps its promises.
pub const QUORUM_DIR: &str = "quorum";
/// Directory under the data directory holding each replicated device's metadata
/// (generations, bitmaps, activity log): `<device>.meta`.
pub const REPLICA_DIR: &str = "replica";

/// Why the cluster side of the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster listener {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("quorum: {0}")]
    Quorum(#[from] QuorumStartError),
    #[error("replicated device {device:?}: {reason}")]
    Replica { device: String, reason: String },
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// The running cluster side of this node.
#[derive(Debug)]
pub struct ClusterNode {
    pub plan: ClusterPlan,
    pub router: Arc<Router>,
    accept: JoinHandle<()>,
    pub quorum: Arc<Quorum>,
    data_dir: PathBuf,
}

impl ClusterNode {
    /// Binds this member's cluster address and starts the quorum over every voter.
    pub async fn start(plan: &ClusterPlan, data_dir: &Path) -> Result<ClusterNode, ClusterError> {
        let addr = plan.my_member().address;
        let (router, accept) = Router::bind(&plan.name, plan.me.clone(), addr)
            .await
            .map_err(|source| ClusterError::Listen { addr, source })?;
        let cfg = QuorumConfig {
            cluster: plan.name.clone(),
            me: plan.me.clone(),
            voters: plan.voters(),
            state_dir: data_dir.join(QUORUM_DIR),
            lease_ms: plan.lease_ms,
        };
        let quorum = match Quorum::start(cfg, Arc::clone(&router)).await {
            Ok(q) => q,
            Err(e) => {
                accept.abort();
                return Err(e.into());
            }
        };
        tracing::info!(
            cluster = %plan.name,
            node = %plan.me,
            listen = %router.local_addr(),
            voters = plan.voters().len(),
            "cluster node started"
        );
        Ok(ClusterNode {
            plan: plan.clone(),
            router,
            accept,
            quorum,
            data_dir: data_dir.to_owned(),
        })
    }

    pub fn me(&self) -> &NodeName {
        &self.plan.me
    }

    /// The arbiter of `device` on this node.
    pub fn arbiter(&self, device: &str) -> Arc<dyn Arbiter> {
        self.quorum.arbiter(device)
    }

    /// Where device `name` keeps its replication metadata.
    pub fn meta_path(&self, name: &str) -> PathBuf {
        // Device names are file-name safe (config/names.rs).
        self.data_dir.join(REPLICA_DIR).join(format!("{name}.meta"))
    }

    /// Starts the replica of device `index` and builds its unit.
    pub async fn open_unit(
        &self,
        plan: &Plan,
        index: usize,
        identity: Identity,
    ) -> Result<ReplicatedUnit, ClusterError> {
        let replica = super::replica::start(self, plan, index).await?;
        Ok(unit::build(plan, &self.plan, index, identity, replica)?)
    }

    /// Stops the quorum and the listener (after every replica has shut down).
    pub fn stop(&self) {
        self.quorum.stop();
        self.accept.abort();
    }
}

/// Every unit of `plan`, index-aligned with `plan.devices`; with `[cluster]`, the
/// cluster node is started first and replicated devices start their replicas.
pub struct Opened {
    pub units: Vec<Arc<LogicalUnit>>,
    pub node: Option<Arc<ClusterNode>>,
    /// The replicated units, by device name, for the manager and the clean stop.
    pub replicated: Vec<(String, ReplicatedUnit)>,
}

/// Opens every device of `plan` (see [`Opened`]). Call on a tokio runtime; on error what
/// was opened is dropped.
pub async fn open_all(
    plan: &Plan,
    identities: Vec<Identity>,
    alua: &Arc<PortGroups>,
) -> Result<Opened, ClusterError> {
    assert_eq!(
        identities.len(),
        plan.devices.len(),
        "one identity per device"
    );
    let node = match &plan.cluster {
        Some(c) => Some(Arc::new(ClusterNode::start(c, &plan.data_dir).await?)),
        None => None,
    };
    let mut units = Vec::with_capacity(plan.devices.len());
    let mut replicated = Vec::new();
    for (index, identity) in identities.into_iter().enumerate() {
        let d = &plan.devices[index];
        match (&d.replica, &node) {
            (Some(_), Some(node)) => {
                let r = node.open_unit(plan, index, identity).await?;
                units.push(Arc::clone(&r.unit));
                replicated.push((d.name.clone(), r));
            }
            (Some(_), None) => unreachable!("validation requires [cluster]"),
            (None, _) => units.push(graph::open_unit(plan, index, identity, alua)?),
        }
    }
    Ok(Opened {
        units,
        node,
        replicated,
    })
}
