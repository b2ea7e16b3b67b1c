//! Starting the replicated device engine (`esos_replica::device`) for one device.

use std::sync::Arc;

use super::node::{ClusterError, ClusterNode};
use super::unit::ReplicaHandle;
use crate::config::Plan;

/// Starts the replica of device `index` over its backing device.
pub async fn start(
    node: &ClusterNode,
    plan: &Plan,
    index: usize,
) -> Result<Arc<dyn ReplicaHandle>, ClusterError> {
    let d = &plan.devices[index];
    let _ = (node.meta_path(&d.name), node.arbiter(&d.name));
    Err(ClusterError::Replica {
        device: d.name.clone(),
        reason: "this build has no replicated device engine yet".into(),
    })
}
