//! The ALUA table of a replicated unit: one target port group per cluster member (id = the
//! member's first portal group tag, ports = its portal groups), whose states follow the
//! replica's role view. Every node builds the same table, so an initiator asking through
//! any path hears the same story: the primary's group active/optimized, the others
//! standby, transitioning while this node is being promoted.
//!
//! The table is the unit's own (not the server's `[server.alua]` table) and keeps no state
//! file: after a restart the replica's role is the truth, not what was last reported.

use std::sync::Arc;

use esos_lu::access::{AccessError, AccessMode, AccessState, GroupSpec, PortGroups};
use esos_replica::NodeName;
use esos_replica::status::Role;
use tokio::sync::watch;

use super::RoleView;
use crate::config::MemberPlan;

/// The target port group of `member`.
pub fn group_id(member: &MemberPlan) -> u16 {
    // Validation refuses a member without portal groups.
    member.portal_groups[0]
}

/// The states of every member's group (in member order) for role view `v` on node `me`.
///
/// - down here: own group unavailable (it will not serve even after a switch), the
///   others standby (this node has dropped its links: it knows no primary);
/// - promoting here: own group transitioning, the others standby (the old primary is
///   losing its lease);
/// - primary here: own group active/optimized, the others standby;
/// - secondary: the primary's group active/optimized, the others standby;
/// - no primary known: every group standby, so hosts wait rather than write to a node
///   that would refuse.
pub fn group_states(
    members: &[MemberPlan],
    me: &NodeName,
    v: &RoleView,
) -> Vec<(u16, AccessState)> {
    let active: Option<&NodeName> = if v.down || v.transitioning {
        None
    } else if v.role == Role::Primary {
        Some(me)
    } else {
        v.primary.as_ref().filter(|p| *p != me)
    };
    members
        .iter()
        .map(|m| {
            let own = &m.name == me;
            let state = if own && v.down {
                AccessState::Unavailable
            } else if own && v.transitioning {
                AccessState::Transitioning
            } else if active == Some(&m.name) {
                AccessState::ActiveOptimized
            } else {
                AccessState::Standby
            };
            (group_id(m), state)
        })
        .collect()
}

/// A unit's table for `members`, every group standby until the first role view arrives.
pub fn table(members: &[MemberPlan]) -> Result<Arc<PortGroups>, AccessError> {
    let specs = members
        .iter()
        .map(|m| GroupSpec {
            id: group_id(m),
            state: AccessState::Standby,
            ports: m.portal_groups.clone(),
        })
        .collect();
    Ok(Arc::new(PortGroups::new(AccessMode::Implicit, specs)?))
}

/// Sets the states of `states` that differ, each an implicit change posted to every
/// session (ASYMMETRIC ACCESS STATE CHANGED). Groups leaving an active state go first, so
/// no instant shows two active groups.
pub fn apply(table: &PortGroups, states: &[(u16, AccessState)]) {
    let mut order: Vec<&(u16, AccessState)> = states
        .iter()
        .filter(|(id, s)| table.state(*id) != Some(*s))
        .collect();
    order.sort_by_key(|(_, s)| s.is_active());
    for &&(id, state) in &order {
        if let Err(e) = table.set_state(id, state) {
            tracing::error!(group = id, state = state.as_str(), error = %e, "replicated unit: ALUA state not changed");
        }
    }
}

/// Keeps `table` in step with `views` until the sender is gone (the replica shut down).
pub async fn follow(
    table: Arc<PortGroups>,
    members: Vec<MemberPlan>,
    me: NodeName,
    device: String,
    mut views: watch::Receiver<RoleView>,
) {
    loop {
        let v = views.borrow_and_update().clone();
        let states = group_states(&members, &me, &v);
        if states.iter().any(|(id, s)| table.state(*id) != Some(*s)) {
            tracing::info!(
                device = %device,
                role = v.role.as_str(),
                primary = v.primary.as_ref().map_or("-", |p| p.as_str()),
                transitioning = v.transitioning,
                down = v.down,
                "replicated unit: access states follow the role"
            );
        }
        apply(&table, &states);
        if views.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    fn members() -> Vec<MemberPlan> {
        [("n1", vec![1, 11]), ("n2", vec![2]), ("n3", vec![3])]
            .into_iter()
            .enumerate()
            .map(|(i, (name, groups))| MemberPlan {
                name: n(name),
                address: format!("10.0.0.{}:7788", i + 1).parse().unwrap(),
                portal_groups: groups,
            })
            .collect()
    }

    fn view(role: Role, primary: Option<&str>) -> RoleView {
        RoleView {
            role,
            primary: primary.map(n),
            transitioning: false,
            down: false,
        }
    }

    use AccessState::{
        ActiveOptimized as AO, Standby as SB, Transitioning as TR, Unavailable as UA,
    };

    #[test]
    fn states_follow_the_primary() {
        let m = members();
        let me = n("n2");
        let cases = [
            (view(Role::Primary, Some("n2")), [SB, AO, SB]),
            (view(Role::Secondary, Some("n1")), [AO, SB, SB]),
            (view(Role::Secondary, Some("n3")), [SB, SB, AO]),
            (view(Role::Secondary, None), [SB, SB, SB]),
            // A secondary that is told it is primary trusts its role: nothing serves here.
            (view(Role::Secondary, Some("n2")), [SB, SB, SB]),
            (
                RoleView {
                    transitioning: true,
                    ..view(Role::Secondary, Some("n1"))
                },
                [SB, TR, SB],
            ),
            (
                RoleView {
                    down: true,
                    ..view(Role::Secondary, Some("n1"))
                },
                [SB, UA, SB],
            ),
        ];
        for (v, want) in cases {
            let got = group_states(&m, &me, &v);
            assert_eq!(got, vec![(1, want[0]), (2, want[1]), (3, want[2])], "{v:?}");
        }
        // Primary here: the group id is the member's first portal group.
        let got = group_states(&m, &n("n1"), &view(Role::Primary, Some("n1")));
        assert_eq!(got[0], (1, AO));
    }

    #[test]
    fn table_has_one_group_per_member_and_changes_implicitly() {
        let m = members();
        let t = table(&m).unwrap();
        assert_eq!(t.states(), vec![(1, SB), (2, SB), (3, SB)]);
        assert_eq!(t.group_of_port(11).unwrap().id, 1);
        apply(
            &t,
            &group_states(&m, &n("n1"), &view(Role::Primary, Some("n1"))),
        );
        assert_eq!(t.states(), vec![(1, AO), (2, SB), (3, SB)]);
        let g = t.groups().next().unwrap();
        assert_eq!(g.cause, esos_lu::access::ChangeCause::Implicit);
        apply(
            &t,
            &group_states(&m, &n("n1"), &view(Role::Secondary, Some("n3"))),
        );
        assert_eq!(t.states(), vec![(1, SB), (2, SB), (3, AO)]);
    }

    #[tokio::test]
    async fn follower_tracks_the_watch() {
        let m = members();
        let t = table(&m).unwrap();
        let (tx, rx) = watch::channel(view(Role::Secondary, None));
        let task = tokio::spawn(follow(t.clone(), m, n("n2"), "db".into(), rx));
        tx.send(view(Role::Secondary, Some("n1"))).unwrap();
        for _ in 0..100 {
            if t.state(1) == Some(AO) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(t.states(), vec![(1, AO), (2, SB), (3, SB)]);
        drop(tx);
        task.await.unwrap();
    }
}
