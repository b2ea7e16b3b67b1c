//! A replicated device made a logical unit: the replica as a stacked device, the unit's
//! own ALUA table following the replica's role, and its reservations following the primary.

use std::sync::Arc;

use esos_block::{BoxFuture, Device, DynBlockDevice};
use esos_replica::status::Role;
use esos_scsi::{Identity, LogicalUnit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{ReplicaControl, RoleView, alua, reservations};
use crate::config::{ClusterPlan, Plan};
use crate::graph::{self, GraphError};

/// What the daemon needs of a running replicated device beyond [`ReplicaControl`]: the
/// device itself, its role changes, the side channel for reservations, and a clean stop.
/// `esos_replica::device::Replica` is the one the daemon runs.
pub trait ReplicaHandle: ReplicaControl {
    /// The replicated device itself, to stack under the unit.
    fn device(&self) -> Arc<dyn DynBlockDevice>;
    /// Role changes, the current one first.
    fn watch(&self) -> watch::Receiver<RoleView>;
    /// Primary: sends side state (reservations) to the secondaries, in order.
    fn send_state(&self, blob: Vec<u8>);
    /// Secondary: the side state the primary sends.
    fn subscribe_state(&self) -> mpsc::Receiver<Vec<u8>>;
    /// Clean stop: bitmap saved, activity log emptied.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// Longest a stopping primary waits for its demotion to reach the quorum.
pub const DEMOTE_AT_EXIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One replicated unit and the tasks that keep it in step with its replica.
#[derive(Debug)]
pub struct ReplicatedUnit {
    pub unit: Arc<LogicalUnit>,
    pub replica: Arc<dyn ReplicaHandle>,
    tasks: Vec<JoinHandle<()>>,
}

impl ReplicatedUnit {
    /// Stops following the replica, then stops the replica cleanly. A primary demotes
    /// first, so the quorum names no primary and an up-to-date peer may take over at once
    /// instead of finding the record still naming this node.
    pub async fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        if self.replica.view().role == Role::Primary {
            let demote = self.replica.act(super::Action::Demote);
            match tokio::time::timeout(DEMOTE_AT_EXIT_TIMEOUT, demote).await {
                Ok(Ok(())) => tracing::info!("primary demoted before stopping"),
                Ok(Err(e)) => tracing::warn!(error = %e, "demote before stopping refused"),
                Err(_) => tracing::warn!("demote before stopping timed out"),
            }
        }
        self.replica.shutdown().await;
    }
}

/// Builds the unit of device `index` of `plan` over `replica` (already started): its own
/// port group table (one group per member), a task that keeps the table on the replica's
/// role, and the reservations sent from the primary and applied on the secondaries. Call
/// on a tokio runtime.
pub fn build(
    plan: &Plan,
    cluster: &ClusterPlan,
    index: usize,
    identity: Identity,
    replica: Arc<dyn ReplicaHandle>,
) -> Result<ReplicatedUnit, GraphError> {
    let d = &plan.devices[index];
    assert!(d.replica.is_some(), "device[{index}] is not replicated");
    let table = alua::table(&cluster.members)?;
    // The states as they are now, before any initiator can see the unit.
    let views = replica.watch();
    alua::apply(
        &table,
        &alua::group_states(&cluster.members, &cluster.me, &views.borrow()),
    );
    let mut settings = graph::lu_settings(plan, index, identity);
    settings.alua = Arc::clone(&table);
    let device = Device::Stacked(replica.device());
    let unit =
        LogicalUnit::try_new(device, settings).map_err(|source| GraphError::Reservations {
            index,
            name: d.name.clone(),
            source,
        })?;
    let follow_roles = tokio::spawn(alua::follow(
        table,
        cluster.members.clone(),
        cluster.me.clone(),
        d.name.clone(),
        views,
    ));
    let (r1, r2) = (Arc::clone(&replica), Arc::clone(&replica));
    reservations::publish(
        &unit.unit().reservations,
        move || r1.view().role == Role::Primary,
        move |blob| r2.send_state(blob),
    );
    let (r1, r2) = (Arc::clone(&replica), Arc::clone(&replica));
    let resend = tokio::spawn(reservations::resend(
        Arc::clone(unit.unit()),
        move || r1.view().role == Role::Primary,
        move |blob| r2.send_state(blob),
    ));
    let follow_states = tokio::spawn(reservations::follow(
        Arc::clone(unit.unit()),
        d.name.clone(),
        replica.subscribe_state(),
    ));
    Ok(ReplicatedUnit {
        unit,
        replica,
        tasks: vec![follow_roles, follow_states, resend],
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use esos_block::{Backend, DeviceSpec, RamDevice};
    use esos_lu::access::AccessState;
    use esos_replica::NodeName;
    use esos_replica::status::{DataState, ReplicaStatus};

    use super::*;
    use crate::cluster::Action;
    use crate::config::{self, Source};

    /// A replica over a RAM device whose role the test sets, recording the side state.
    #[derive(Debug)]
    struct FakeReplica {
        ram: Arc<dyn DynBlockDevice>,
        views: watch::Sender<RoleView>,
        sent: Mutex<Vec<Vec<u8>>>,
        incoming: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    }

    impl ReplicaControl for FakeReplica {
        fn status(&self) -> ReplicaStatus {
            let v = self.views.borrow();
            ReplicaStatus {
                device: "db".into(),
                me: NodeName::new("n1").unwrap(),
                role: v.role,
                data: DataState::UpToDate,
                generation: 1,
                quorate: true,
                lease_valid: v.role == Role::Primary,
                primary: v.primary.clone(),
                peers: Vec::new(),
                report: None,
            }
        }
        fn view(&self) -> RoleView {
            self.views.borrow().clone()
        }
        fn act(&self, _: Action) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }

    impl ReplicaHandle for FakeReplica {
        fn device(&self) -> Arc<dyn DynBlockDevice> {
            Arc::clone(&self.ram)
        }
        fn watch(&self) -> watch::Receiver<RoleView> {
            self.views.subscribe()
        }
        fn send_state(&self, blob: Vec<u8>) {
            self.sent.lock().unwrap().push(blob);
        }
        fn subscribe_state(&self) -> mpsc::Receiver<Vec<u8>> {
            self.incoming
                .lock()
                .unwrap()
                .take()
                .expect("subscribed once")
        }
        fn shutdown(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    const PAIR: &str = r#"
        [server]
        portal = [{ address = "127.0.0.1:3260", group = 1 }]
        [cluster]
        name = "pair1"
        node = "n1"
        member = [
            { name = "n1", address = "127.0.0.1:7788", portal_groups = [1] },
            { name = "n2", address = "127.0.0.2:7788", portal_groups = [2] },
        ]
        witness = { name = "w", address = "127.0.0.3:7788" }
        [[device]]
        name = "db-disk"
        type = "file"
        path = "db.img"
        size = "1M"
        [[device]]
        name = "db"
        type = "replicated"
        backing = "db-disk"
    "#;

    fn ram() -> RamDevice {
        let spec = DeviceSpec {
            backend: Backend::Ram {
                size_bytes: 1 << 20,
            },
            block_size: 512,
            read_only: false,
            rotational: None,
        };
        RamDevice::new(1 << 20, &spec).unwrap()
    }

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        for _ in 0..200 {
            if ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn unit_follows_the_role_and_carries_reservations() {
        let dir = tempfile::tempdir().unwrap();
        let raw = config::parse(PAIR, "t").unwrap();
        let src = Source {
            label: "t".into(),
            base_dir: dir.path().into(),
            node: None,
        };
        let plan = config::validate(&raw, &src).unwrap();
        let cluster = plan.cluster.clone().unwrap();
        let (views, _) = watch::channel(RoleView {
            role: Role::Secondary,
            primary: Some(n("n2")),
            transitioning: false,
            down: false,
        });
        let (to_secondary, incoming) = mpsc::channel(4);
        let fake = Arc::new(FakeReplica {
            ram: Arc::new(ram()),
            views,
            sent: Mutex::default(),
            incoming: Mutex::new(Some(incoming)),
        });
        let mut store = crate::identity::IdentityStore::load(dir.path()).unwrap();
        let id = store.resolve(&plan.devices[0], &mut |_| panic!("derived"));
        let r = build(&plan, &cluster, 0, id, fake.clone()).unwrap();
        let table = Arc::clone(&r.unit.settings().alua);
        // A secondary: the primary's group serves, ours waits.
        assert_eq!(
            table.states(),
            vec![(1, AccessState::Standby), (2, AccessState::ActiveOptimized)]
        );
        assert_eq!(r.unit.capacity_bytes(), 1 << 20);
        // Reservations from the primary are applied here.
        let text = "esos-pr 1\naptpl 1\ngeneration 2\nreg 1 00000000000000aa 2 iqn.a *\n";
        to_secondary.send(text.as_bytes().to_vec()).await.unwrap();
        let unit = Arc::clone(r.unit.unit());
        wait_for("the applied reservations", || {
            unit.reservations.snapshot().regs.len() == 1
        })
        .await;
        assert!(
            fake.sent.lock().unwrap().is_empty(),
            "a secondary sends nothing"
        );
        // Promoted: our group serves and our changes go out.
        fake.views.send_replace(RoleView {
            role: Role::Primary,
            primary: Some(n("n1")),
            transitioning: false,
            down: false,
        });
        wait_for("the primary's states", || {
            table.state(1) == Some(AccessState::ActiveOptimized)
        })
        .await;
        assert_eq!(table.state(2), Some(AccessState::Standby));
        unit.reservations.lock().state.generation = 3;
        assert_eq!(fake.sent.lock().unwrap().len(), 1);
        let sent = String::from_utf8(fake.sent.lock().unwrap()[0].clone()).unwrap();
        assert!(sent.contains("generation 3"), "{sent}");
        // The report carries the unit's own groups.
        let units = vec![("db".to_owned(), r)];
        let info = &crate::cluster::Replicas::of(&units).infos()[0];
        assert_eq!(info.role, "primary");
        let groups: Vec<(u16, &str)> = info
            .port_groups
            .iter()
            .map(|g| (g.id, g.state.as_str()))
            .collect();
        assert_eq!(groups, [(1, "active-optimized"), (2, "standby")]);
        units[0].1.shutdown().await;
    }
}
