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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use esos_block::BlockDevice as _;
    use esos_lu::access::AccessState;

    use super::*;
    use crate::cluster::{Action, Replicas};
    use crate::config::{self, Source};
    use crate::identity::IdentityStore;

    /// Loopback ports free a moment ago (the test binds them again at once).
    fn free_ports(n: usize) -> Vec<u16> {
        let socks: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        socks
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect()
    }

    fn node_plan(dir: &Path, me: &str, tag: u16, ports: &[u16]) -> Plan {
        let text = format!(
            r#"
            [server]
            portal = [{{ address = "127.0.0.1:0", group = {tag} }}]
            data_dir = "{me}"
            [cluster]
            name = "pair1"
            node = "{me}"
            auto_promote = false
            member = [
                {{ name = "n1", address = "127.0.0.1:{}", portal_groups = [1] }},
                {{ name = "n2", address = "127.0.0.1:{}", portal_groups = [2] }},
            ]
            witness = {{ name = "w", address = "127.0.0.1:{}" }}
            [[device]]
            name = "disk"
            type = "file"
            path = "{me}.img"
            size = "4M"
            [[device]]
            name = "db"
            type = "replicated"
            backing = "disk"
            "#,
            ports[0], ports[1], ports[2]
        );
        let raw = config::parse(&text, "t").unwrap();
        let src = Source {
            label: me.into(),
            base_dir: dir.into(),
            node: None,
        };
        config::validate(&raw, &src).unwrap()
    }

    async fn start(plan: &Plan) -> Opened {
        let mut store = IdentityStore::load(&plan.data_dir).unwrap();
        let ids = plan
            .devices
            .iter()
            .map(|d| store.resolve(d, &mut crate::identity::os_random))
            .collect();
        let alua = graph::port_groups(plan).unwrap();
        open_all(plan, ids, &alua).await.unwrap()
    }

    async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        for _ in 0..400 {
            if ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pair_with_a_witness_replicates_and_follows_the_primary() {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3);
        let (stop_w, stopped) = tokio::sync::oneshot::channel::<()>();
        let witness = tokio::spawn(esos_replica::witness::run_witness(
            "pair1",
            NodeName::new("w").unwrap(),
            format!("127.0.0.1:{}", ports[2]).parse().unwrap(),
            dir.path().join("w"),
            async {
                let _ = stopped.await;
            },
        ));
        let p1 = node_plan(dir.path(), "n1", 1, &ports);
        let p2 = node_plan(dir.path(), "n2", 2, &ports);
        let (n1, n2) = (start(&p1).await, start(&p2).await);
        let (r1, r2) = (Replicas::of(&n1.replicated), Replicas::of(&n2.replicated));
        // Same LU on both nodes.
        assert_eq!(
            n1.units[0].settings().identity,
            n2.units[0].settings().identity
        );

        // The first primary is named by the administrator.
        let forced = Action::Promote { force: true };
        let info = r1.act("db", forced).await.unwrap();
        assert_eq!(info.role, "primary");
        wait_for("n2 up to date under n1", || {
            let i = &r2.infos()[0];
            i.primary.as_deref() == Some("n1") && i.data == "up-to-date"
        })
        .await;

        // A write on the primary lands on the secondary's backing file.
        let block = vec![0x5a_u8; 4096];
        let (res, _) = n1.units[0].unit().device.write(8192, block, true).await;
        res.unwrap();
        let copy = std::fs::read(dir.path().join("n2.img")).unwrap();
        assert!(copy[8192..8192 + 4096].iter().all(|&b| b == 0x5a));

        // Both nodes tell initiators the same: n1's group serves, n2's waits.
        for units in [&n1.units, &n2.units] {
            let t = Arc::clone(&units[0].settings().alua);
            wait_for("the groups to follow n1", || {
                t.states() == vec![(1, AccessState::ActiveOptimized), (2, AccessState::Standby)]
            })
            .await;
        }
        // The secondary refuses I/O.
        let (res, _) = n2.units[0]
            .unit()
            .device
            .write(0, vec![0; 512], false)
            .await;
        assert!(res.is_err());

        // Reservations made on the primary reach the secondary.
        let text = "esos-pr 1\naptpl 1\ngeneration 1\nreg 1 00000000000000aa 1 iqn.h *\n";
        let state = esos_lu::reservations::decode_state(text, "t").unwrap();
        n1.units[0].unit().reservations.lock().state = state.clone();
        let res2 = Arc::clone(n2.units[0].unit());
        wait_for("the reservation on n2", || {
            res2.reservations.snapshot() == state
        })
        .await;

        // A switchover: n1 steps down, n2 takes over without force, the groups follow.
        r1.act("db", Action::Demote).await.unwrap();
        let info = r2
            .act("db", Action::Promote { force: false })
            .await
            .unwrap();
        assert_eq!((info.role.as_str(), info.me.as_str()), ("primary", "n2"));
        for units in [&n1.units, &n2.units] {
            let t = Arc::clone(&units[0].settings().alua);
            wait_for("the groups to follow n2", || {
                t.states() == vec![(1, AccessState::Standby), (2, AccessState::ActiveOptimized)]
            })
            .await;
        }
        let (res, _) = n2.units[0].unit().device.write(0, vec![7; 512], true).await;
        res.unwrap();
        assert_eq!(n2.units[0].unit().reservations.snapshot(), state);

        for (_, u) in n1.replicated.iter().chain(&n2.replicated) {
            u.shutdown().await;
        }
        for n in [n1.node, n2.node].into_iter().flatten() {
            n.stop();
        }
        let _ = stop_w.send(());
        witness.await.unwrap().unwrap();
    }
}
