//! `[[target]]`: names, portals, initiator groups and LUN maps.

use std::collections::{HashMap, HashSet};

use esos_iscsi::server::PortalConfig;

use super::{Validator, parse_addr};
use crate::config::limits::{MAX_ALIAS_LEN, MAX_LUN};
use crate::config::names::{normalise_initiator, validate_iscsi_name, validate_object_name};
use crate::config::plan::{GroupPlan, LunPlan, TargetPlan};
use crate::config::schema::{RawLun, RawTarget};

impl Validator {
    pub(super) fn targets(
        &mut self,
        raw: &[RawTarget],
        devices: &HashMap<&str, usize>,
        portals: &[PortalConfig],
    ) -> Vec<TargetPlan> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            let key = format!("target[{i}]");
            if let Err(e) = validate_iscsi_name(&t.name) {
                self.err(format!("{key}.name"), format!("{:?} {e}", t.name));
            } else if let Some(first) = names.insert(t.name.to_ascii_lowercase(), i) {
                self.err(
                    format!("{key}.name"),
                    format!("{:?} is already the name of target[{first}]", t.name),
                );
            }
            if let Some(alias) = &t.alias {
                if alias.len() > MAX_ALIAS_LEN {
                    self.err(
                        format!("{key}.alias"),
                        format!("is {} bytes long; at most {MAX_ALIAS_LEN}", alias.len()),
                    );
                } else if alias.chars().any(|c| c.is_control()) {
                    self.err(format!("{key}.alias"), "contains a control character");
                }
            }
            let target_portals = self.target_portals(t, &key, portals);
            let chap = t
                .chap
                .as_ref()
                .and_then(|c| self.chap(c, &format!("{key}.chap")));
            let groups = self.groups(t, &key, devices);
            let default_luns = t
                .default_luns
                .as_ref()
                .map(|l| self.luns(l, &format!("{key}.default_luns"), devices));
            let enabled = t.enabled.unwrap_or(true);
            if enabled && t.group.is_empty() && t.default_luns.is_none() {
                self.err(
                    key.clone(),
                    "has no group and no default_luns, so every login would be refused; \
                     add a [[target.group]], default_luns, or set enabled = false",
                );
            }
            out.push(TargetPlan {
                name: t.name.clone(),
                alias: t.alias.clone(),
                enabled,
                portals: target_portals,
                chap,
                groups,
                default_luns,
            });
        }
        out
    }

    pub(super) fn target_portals(
        &mut self,
        t: &RawTarget,
        key: &str,
        portals: &[PortalConfig],
    ) -> Vec<std::net::SocketAddr> {
        let Some(list) = &t.portals else {
            return Vec::new();
        };
        if list.is_empty() {
            self.err(
                format!("{key}.portals"),
                "is empty; omit it to use every portal",
            );
        }
        let mut out = Vec::new();
        for (j, p) in list.iter().enumerate() {
            let pkey = format!("{key}.portals[{j}]");
            match parse_addr(p) {
                Err(reason) => self.err(pkey, reason),
                Ok(addr) if !portals.iter().any(|s| s.addr == addr) => self.err(
                    pkey,
                    format!("{addr} is not one of the server.portal addresses"),
                ),
                Ok(addr) if out.contains(&addr) => {
                    self.err(pkey, format!("{addr} is listed twice"))
                }
                Ok(addr) => out.push(addr),
            }
        }
        out
    }

    pub(super) fn groups(
        &mut self,
        t: &RawTarget,
        key: &str,
        devices: &HashMap<&str, usize>,
    ) -> Vec<GroupPlan> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        // An initiator in two groups would see an ambiguous LUN map.
        let mut members: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for (j, g) in t.group.iter().enumerate() {
            let gkey = format!("{key}.group[{j}]");
            if let Err(reason) = validate_object_name(&g.name) {
                self.err(format!("{gkey}.name"), format!("{:?} {reason}", g.name));
            } else if let Some(first) = names.insert(&g.name, j) {
                self.err(
                    format!("{gkey}.name"),
                    format!("{:?} is already the name of group[{first}]", g.name),
                );
            }
            if g.initiators.is_empty() {
                self.err(
                    format!("{gkey}.initiators"),
                    "is empty; a group needs at least one initiator",
                );
            }
            let mut initiators = Vec::new();
            for (k, name) in g.initiators.iter().enumerate() {
                let ikey = format!("{gkey}.initiators[{k}]");
                let norm = normalise_initiator(name);
                if let Err(e) = validate_iscsi_name(&norm) {
                    self.err(ikey, format!("{name:?} {e}"));
                } else if let Some(first) = members.insert(norm.clone(), j) {
                    let where_ = if first == j {
                        "this group".to_owned()
                    } else {
                        format!("group[{first}]")
                    };
                    self.err(ikey, format!("{name:?} is already in {where_}"));
                } else {
                    initiators.push(norm);
                }
            }
            let luns = self.luns(&g.luns, &format!("{gkey}.luns"), devices);
            out.push(GroupPlan {
                name: g.name.clone(),
                initiators,
                luns,
            });
        }
        out
    }

    pub(super) fn luns(
        &mut self,
        raw: &[RawLun],
        key: &str,
        devices: &HashMap<&str, usize>,
    ) -> LunPlan {
        let mut out: LunPlan = Vec::new();
        let mut seen: HashMap<u64, usize> = HashMap::new();
        let mut used: HashSet<usize> = HashSet::new();
        for (k, l) in raw.iter().enumerate() {
            let lkey = format!("{key}[{k}]");
            if l.lun > MAX_LUN {
                self.err(
                    format!("{lkey}.lun"),
                    format!("{} is not in 0..={MAX_LUN} (SAM-5 4.7.7)", l.lun),
                );
            } else if let Some(first) = seen.insert(l.lun, k) {
                self.err(
                    format!("{lkey}.lun"),
                    format!("LUN {} is already mapped by {key}[{first}]", l.lun),
                );
            }
            match devices.get(l.device.as_str()) {
                None => self.err(
                    format!("{lkey}.device"),
                    format!("no device is named {:?}", l.device),
                ),
                Some(&d) if !used.insert(d) => self.err(
                    format!("{lkey}.device"),
                    format!("device {:?} is mapped twice in this LUN map", l.device),
                ),
                Some(&d) => out.push((l.lun, d)),
            }
        }
        out.sort_unstable();
        out
    }
}
