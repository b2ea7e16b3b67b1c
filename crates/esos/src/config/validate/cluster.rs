//! `[cluster]` and `type = "replicated"` devices: who the members are, which portal groups
//! are whose, and which local device holds each replicated device's copy.

use std::collections::HashMap;
use std::net::SocketAddr;

use esos_iscsi::server::PortalConfig;
use esos_replica::NodeName;
use esos_replica::arbiter::MAX_DATA_NODES;
use esos_replica::net::MAX_CLUSTER_NAME_LEN;

use super::{Validator, parse_addr, range_msg, size_value};
use crate::config::limits::{
    DEFAULT_IO_TIMEOUT_MS, DEFAULT_LEASE_MS, IO_TIMEOUT_MS, LEASE_MS, MAX_PORTAL_GROUP,
};
use crate::config::plan::{ClusterPlan, DevicePlan, MemberPlan, Plan, ReplicaPlan};
use crate::config::schema::{DeviceType, RawCluster, RawConfig};

/// Fewest data nodes of a cluster: replication needs a peer.
pub const MIN_MEMBERS: usize = 2;

/// A replicated device as validated on the raw config: indices into `raw.device`.
pub(super) struct Replicated {
    pub device: usize,
    pub backing: usize,
    pub resync_rate: u64,
}

impl Validator {
    /// Validates `[cluster]` against the portals; `node` overrides `cluster.node`
    /// (`esos --node`, `ESOS_NODE`).
    pub(super) fn cluster(
        &mut self,
        raw: Option<&RawCluster>,
        node: Option<&str>,
        portals: &[PortalConfig],
    ) -> Option<ClusterPlan> {
        let c = raw?;
        let before = self.errors.len();
        if NodeName::new(&c.name).is_none() || c.name.len() > MAX_CLUSTER_NAME_LEN {
            self.err(
                "cluster.name",
                format!(
                    "{:?} is not 1 to {MAX_CLUSTER_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-'",
                    c.name
                ),
            );
        }
        let lease_ms = c.lease_ms.unwrap_or(DEFAULT_LEASE_MS);
        if !LEASE_MS.contains(&lease_ms) {
            self.err("cluster.lease_ms", range_msg(lease_ms, &LEASE_MS));
        }
        let io_timeout_ms = c.io_timeout_ms.unwrap_or(DEFAULT_IO_TIMEOUT_MS);
        if !IO_TIMEOUT_MS.contains(&io_timeout_ms) {
            self.err(
                "cluster.io_timeout_ms",
                range_msg(io_timeout_ms, &IO_TIMEOUT_MS),
            );
        }
        let members = self.members(c);
        let witness = c.witness.as_ref().and_then(|w| {
            let name = self.node_name(&w.name, "cluster.witness.name");
            if let Some(n) = &name
                && let Some(i) = members.iter().position(|m| &m.name == n)
            {
                self.err(
                    "cluster.witness.name",
                    format!("{n} is already the name of cluster.member[{i}]"),
                );
            }
            let addr = self.cluster_addr(&w.address, "cluster.witness.address", &members);
            Some((name?, addr?))
        });
        let me = match (node, &c.node) {
            (Some(n), _) => Some((n, "--node / ESOS_NODE")),
            (None, Some(n)) => Some((n.as_str(), "cluster.node")),
            (None, None) => {
                self.err(
                    "cluster.node",
                    "is not set: name this node here, or start esos with --node NAME \
                     (or ESOS_NODE=NAME)",
                );
                None
            }
        };
        let me = me.and_then(|(n, key)| {
            let found = members.iter().find(|m| m.name.as_str() == n);
            if found.is_none() {
                let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                self.err(
                    "cluster.node",
                    format!("{n:?} (from {key}) is not a cluster.member: one of {names:?}"),
                );
            }
            found.cloned()
        });
        if let Some(me) = &me {
            self.my_portals(me, &members, portals);
        }
        if c.witness.is_none() && members.len() == MIN_MEMBERS {
            self.warnings.push(
                "cluster: two members and no [cluster.witness]: a majority is both nodes, so \
                 I/O stops whenever either is down; add a witness (esos witness)"
                    .into(),
            );
        }
        if self.errors.len() != before {
            return None;
        }
        Some(ClusterPlan {
            name: c.name.clone(),
            me: me?.name,
            auto_promote: c.auto_promote.unwrap_or(true),
            lease_ms,
            io_timeout_ms,
            members,
            witness,
        })
    }

    fn node_name(&mut self, name: &str, key: &str) -> Option<NodeName> {
        let n = NodeName::new(name);
        if n.is_none() {
            self.err(
                key,
                format!("{name:?} is not 1 to 63 characters of A-Z, a-z, 0-9, '.', '_', '-'"),
            );
        }
        n
    }

    fn cluster_addr(
        &mut self,
        text: &str,
        key: &str,
        members: &[MemberPlan],
    ) -> Option<SocketAddr> {
        match parse_addr(text) {
            Err(reason) => {
                self.err(key, reason);
                None
            }
            Ok(a) if members.iter().any(|m| m.address == a) => {
                let i = members.iter().position(|m| m.address == a).unwrap_or(0);
                self.err(
                    key,
                    format!("{a} is already the address of cluster.member[{i}]"),
                );
                None
            }
            Ok(a) => Some(a),
        }
    }

    fn members(&mut self, c: &RawCluster) -> Vec<MemberPlan> {
        let n = c.member.len();
        if !(MIN_MEMBERS..=MAX_DATA_NODES).contains(&n) {
            self.err(
                "cluster.member",
                format!("has {n} members; a cluster has {MIN_MEMBERS} or {MAX_DATA_NODES}"),
            );
        }
        let mut out: Vec<MemberPlan> = Vec::new();
        // Portal group tag → the member that lists it first.
        let mut owner: HashMap<u32, usize> = HashMap::new();
        for (i, m) in c.member.iter().enumerate().take(MAX_DATA_NODES) {
            let key = format!("cluster.member[{i}]");
            let name = self.node_name(&m.name, &format!("{key}.name"));
            if let Some(n) = &name
                && let Some(first) = out.iter().position(|o| &o.name == n)
            {
                self.err(
                    format!("{key}.name"),
                    format!("{n} is already the name of cluster.member[{first}]"),
                );
            }
            let address = self.cluster_addr(&m.address, &format!("{key}.address"), &out);
            if m.portal_groups.is_empty() {
                self.err(
                    format!("{key}.portal_groups"),
                    "is empty; a member needs the portal group tags of its portals",
                );
            }
            let mut groups = Vec::new();
            for (j, &t) in m.portal_groups.iter().enumerate() {
                let gkey = format!("{key}.portal_groups[{j}]");
                if !(1..=MAX_PORTAL_GROUP).contains(&t) {
                    self.err(gkey, format!("{t} is not in 1..={MAX_PORTAL_GROUP}"));
                } else if let Some(&first) = owner.get(&t) {
                    let whose = if first == i {
                        "is listed twice".to_owned()
                    } else {
                        format!("is already a portal group of cluster.member[{first}]")
                    };
                    self.err(gkey, format!("portal group {t} {whose}"));
                } else {
                    owner.insert(t, i);
                    groups.push(t as u16);
                }
            }
            if let (Some(name), Some(address)) = (name, address) {
                out.push(MemberPlan {
                    name,
                    address,
                    portal_groups: groups,
                });
            }
        }
        out
    }

    /// The portals this node listens on must be exactly its member's portal groups:
    /// another member's group here would tell initiators the wrong access state.
    fn my_portals(&mut self, me: &MemberPlan, members: &[MemberPlan], portals: &[PortalConfig]) {
        let i = members.iter().position(|m| m.name == me.name).unwrap_or(0);
        for (p, portal) in portals.iter().enumerate() {
            if !me.portal_groups.contains(&portal.group_tag) {
                self.err(
                    format!("server.portal[{p}].group"),
                    format!(
                        "{} is not a portal group of this node ({}: cluster.member[{i}].portal_groups = {:?})",
                        portal.group_tag, me.name, me.portal_groups
                    ),
                );
            }
        }
        for (j, t) in me.portal_groups.iter().enumerate() {
            if !portals.iter().any(|p| p.group_tag == *t) {
                self.err(
                    format!("cluster.member[{i}].portal_groups[{j}]"),
                    format!(
                        "portal group {t} of this node ({}) has no server.portal",
                        me.name
                    ),
                );
            }
        }
    }

    /// Checks every `replicated` device and its backing on the raw config.
    pub(super) fn replicated(&mut self, raw: &RawConfig, cluster: bool) -> Vec<Replicated> {
        let index: HashMap<&str, usize> = raw
            .device
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.as_str(), i))
            .collect();
        let mut backed_by: HashMap<usize, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, d) in raw.device.iter().enumerate() {
            let key = format!("device[{i}]");
            if d.kind != DeviceType::Replicated {
                for (name, set) in [
                    ("backing", d.backing.is_some()),
                    ("resync_rate", d.resync_rate.is_some()),
                ] {
                    if set {
                        self.err(format!("{key}.{name}"), "is only for type \"replicated\"");
                    }
                }
                continue;
            }
            if !cluster {
                self.err(
                    format!("{key}.type"),
                    "\"replicated\" needs a [cluster] section naming this node and its peers",
                );
            }
            let resync_rate = match &d.resync_rate {
                None => 0,
                Some(r) => size_value(r).unwrap_or_else(|e| {
                    self.err(format!("{key}.resync_rate"), e);
                    0
                }),
            };
            let Some(b) = &d.backing else {
                self.err(
                    format!("{key}.backing"),
                    "is required for type \"replicated\": the local file or blockdev device",
                );
                continue;
            };
            let Some(&bi) = index.get(b.as_str()) else {
                self.err(
                    format!("{key}.backing"),
                    format!("no device is named {b:?}"),
                );
                continue;
            };
            let bk = raw.device[bi].kind;
            if !matches!(bk, DeviceType::File | DeviceType::Blockdev) {
                self.err(
                    format!("{key}.backing"),
                    format!(
                        "device {b:?} is of type \"{}\"; a backing is \"file\" or \"blockdev\"",
                        bk.as_str()
                    ),
                );
                continue;
            }
            if let Some(first) = backed_by.insert(bi, i) {
                self.err(
                    format!("{key}.backing"),
                    format!("device {b:?} already backs device[{first}]"),
                );
                continue;
            }
            out.push(Replicated {
                device: i,
                backing: bi,
                resync_rate,
            });
        }
        self.backings_not_mapped(raw, &out);
        out
    }

    /// A backing device holds one node's copy under the replication: written directly,
    /// it would differ from its peers without anyone knowing.
    fn backings_not_mapped(&mut self, raw: &RawConfig, replicated: &[Replicated]) {
        let backing_of = |name: &str| {
            replicated
                .iter()
                .find(|r| raw.device[r.backing].name == name)
                .map(|r| &raw.device[r.device].name)
        };
        for (t, target) in raw.target.iter().enumerate() {
            let maps = target
                .default_luns
                .iter()
                .map(|l| (format!("target[{t}].default_luns"), l))
                .chain(
                    target
                        .group
                        .iter()
                        .enumerate()
                        .map(|(g, grp)| (format!("target[{t}].group[{g}].luns"), &grp.luns)),
                );
            for (key, luns) in maps {
                for (k, l) in luns.iter().enumerate() {
                    if let Some(r) = backing_of(&l.device) {
                        self.err(
                            format!("{key}[{k}].device"),
                            format!(
                                "device {:?} is the backing of replicated device {r:?}; map {r:?} instead",
                                l.device
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// Moves each backing device into its replicated device's plan and renumbers the LUN maps
/// over what remains. `devices` is index-aligned with the raw devices (no error occurred).
pub(super) fn fold_backings(plan: &mut Plan, replicated: &[Replicated]) {
    let Some(cluster) = plan.cluster.as_ref().map(|c| c.name.clone()) else {
        assert!(replicated.is_empty(), "validation requires [cluster]");
        return;
    };
    for r in replicated {
        let backing = plan.devices[r.backing].clone();
        let d = &mut plan.devices[r.device];
        d.spec = backing.spec.clone();
        d.replica = Some(ReplicaPlan {
            cluster: cluster.clone(),
            backing: Box::new(backing),
            resync_rate: r.resync_rate,
        });
    }
    let mut gone: Vec<usize> = replicated.iter().map(|r| r.backing).collect();
    gone.sort_unstable();
    let renumber = |i: usize| {
        debug_assert!(gone.binary_search(&i).is_err(), "a backing is never mapped");
        i - gone.partition_point(|&g| g < i)
    };
    for t in &mut plan.targets {
        let maps = t.groups.iter_mut().map(|g| &mut g.luns);
        for luns in maps.chain(t.default_luns.iter_mut()) {
            for (_, d) in luns.iter_mut() {
                *d = renumber(*d);
            }
        }
    }
    let mut i = 0;
    plan.devices.retain(|_: &DevicePlan| {
        let keep = gone.binary_search(&i).is_err();
        i += 1;
        keep
    });
}
