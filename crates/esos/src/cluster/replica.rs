//! [`esos_replica::Replica`] as the daemon drives it: started over the backing device with
//! this node's quorum, and seen through [`ReplicaControl`] and [`ReplicaHandle`].

use std::sync::Arc;

use esos_block::{BoxFuture, Device, DynBlockDevice};
use esos_replica::device::DEFAULT_CHUNK_BYTES;
use esos_replica::status::ReplicaStatus;
use esos_replica::{Replica, ReplicaConfig, RoleView};
use tokio::sync::{mpsc, watch};

use super::node::{ClusterError, ClusterNode};
use super::unit::ReplicaHandle;
use super::{Action, ReplicaControl};
use crate::config::Plan;

/// A running replica.
#[derive(Debug)]
pub struct Running(pub Arc<Replica>);

/// Opens the backing device of device `index` and starts its replica, as secondary,
/// connecting to the peers.
pub async fn start(
    node: &ClusterNode,
    plan: &Plan,
    index: usize,
) -> Result<Arc<dyn ReplicaHandle>, ClusterError> {
    let d = &plan.devices[index];
    let r = d.replica.as_ref().expect("a replicated device");
    let fail = |reason: String| ClusterError::Replica {
        device: d.name.clone(),
        reason,
    };
    let meta_path = node.meta_path(&d.name);
    if let Some(dir) = meta_path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    }
    let local = Device::open(&r.backing.spec)
        .map_err(|e| fail(format!("backing device {:?}: {e}", r.backing.name)))?;
    let c = &node.plan;
    let cfg = ReplicaConfig {
        cluster: c.name.clone(),
        device: d.name.clone(),
        me: c.me.clone(),
        peers: c.peers(),
        meta_path,
        chunk_bytes: DEFAULT_CHUNK_BYTES,
        resync_rate_bytes_per_sec: r.resync_rate,
        auto_promote: c.auto_promote,
        io_timeout_ms: c.io_timeout_ms,
    };
    let replica = Replica::start(cfg, local, node.arbiter(&d.name), Arc::clone(&node.router))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tracing::info!(device = %d.name, backing = %r.backing.name, "replica started");
    Ok(Arc::new(Running(replica)))
}

impl ReplicaControl for Running {
    fn status(&self) -> ReplicaStatus {
        self.0.status()
    }
    fn view(&self) -> RoleView {
        self.0.watch().borrow().clone()
    }
    fn act(&self, action: Action) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let r = &self.0;
            match action {
                Action::Promote { force } => r.promote(force).await,
                Action::Demote => r.demote().await,
                Action::Up => r.set_down(false).await,
                Action::Down => r.set_down(true).await,
                Action::Verify => r.verify().await,
                Action::Resolve { keep_local } => r.resolve_split_brain(keep_local).await,
            }
            .map_err(|e| e.to_string())
        })
    }
}

impl ReplicaHandle for Running {
    fn device(&self) -> Arc<dyn DynBlockDevice> {
        Arc::clone(&self.0) as Arc<dyn DynBlockDevice>
    }
    fn watch(&self) -> watch::Receiver<RoleView> {
        self.0.watch()
    }
    fn send_state(&self, blob: Vec<u8>) {
        self.0.send_state(blob)
    }
    fn subscribe_state(&self) -> mpsc::Receiver<Vec<u8>> {
        self.0.subscribe_state()
    }
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.shutdown())
    }
}
