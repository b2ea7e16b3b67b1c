//! `[server.alua]` → [`AluaPlan`]: target port groups over the portal groups.
//!
//! For iSCSI a target port is a (target, portal group) pair and esos numbers it with the
//! portal group tag, so a target port group is a set of portal group tags. Every tag used
//! by a `server.portal` must be in exactly one group, or some paths would have no state.

use std::collections::HashMap;

use esos_iscsi::server::PortalConfig;
use esos_scsi::alua::{AccessState, AluaMode, GroupSpec, MAX_PORT_GROUPS, MAX_PORTS_PER_GROUP};

use super::error::KeyError;
use super::limits::MAX_PORTAL_GROUP;
use super::plan::AluaPlan;
use super::schema::{RawAccessState, RawAlua, RawAluaMode};

/// Validates `raw` against the portals; errors name the key (`server.alua.group[1].id`).
pub fn validate(raw: Option<&RawAlua>, portals: &[PortalConfig]) -> (AluaPlan, Vec<KeyError>) {
    let mut errors = Vec::new();
    let mut err = |key: String, reason: String| errors.push(KeyError { key, reason });
    let mode = match raw.and_then(|a| a.mode) {
        None | Some(RawAluaMode::Implicit) => AluaMode::Implicit,
        Some(RawAluaMode::Explicit) => AluaMode::Explicit,
        Some(RawAluaMode::Both) => AluaMode::Both,
    };
    let mut tags: Vec<u16> = portals.iter().map(|p| p.group_tag).collect();
    tags.sort_unstable();
    tags.dedup();
    let list = raw.map_or(&[][..], |a| &a.group[..]);
    if list.is_empty() {
        // Default: one group per portal group, same number, active/optimized.
        let groups = tags
            .iter()
            .map(|&t| GroupSpec {
                id: t,
                state: AccessState::ActiveOptimized,
                ports: vec![t],
            })
            .collect();
        return (AluaPlan { mode, groups }, errors);
    }
    if list.len() > MAX_PORT_GROUPS {
        err(
            "server.alua.group".into(),
            format!("has {} groups; at most {MAX_PORT_GROUPS}", list.len()),
        );
    }
    let mut ids: HashMap<u32, usize> = HashMap::new();
    // Portal group tag → (group index, position) where it was first listed.
    let mut owner: HashMap<u32, usize> = HashMap::new();
    let mut groups = Vec::with_capacity(list.len());
    for (i, g) in list.iter().enumerate() {
        let key = format!("server.alua.group[{i}]");
        if !(1..=MAX_PORTAL_GROUP).contains(&g.id) {
            err(
                format!("{key}.id"),
                format!("{} is not in 1..={MAX_PORTAL_GROUP}", g.id),
            );
        } else if let Some(first) = ids.insert(g.id, i) {
            err(
                format!("{key}.id"),
                format!("{} is already the id of server.alua.group[{first}]", g.id),
            );
        }
        if g.portal_groups.is_empty() {
            err(
                format!("{key}.portal_groups"),
                "is empty; a target port group needs at least one portal group".into(),
            );
        } else if g.portal_groups.len() > MAX_PORTS_PER_GROUP {
            err(
                format!("{key}.portal_groups"),
                format!(
                    "has {} entries; at most {MAX_PORTS_PER_GROUP} (SPC-4 6.27)",
                    g.portal_groups.len()
                ),
            );
        }
        let mut ports = Vec::with_capacity(g.portal_groups.len());
        for (j, &t) in g.portal_groups.iter().enumerate() {
            let pkey = format!("{key}.portal_groups[{j}]");
            let known = u16::try_from(t).ok().filter(|t| tags.contains(t));
            match (known, owner.get(&t)) {
                (None, _) => err(pkey, format!("{t} is not the group of any server.portal")),
                (Some(_), Some(&first)) if first == i => {
                    err(pkey, format!("portal group {t} is listed twice"))
                }
                (Some(_), Some(&first)) => err(
                    pkey,
                    format!("portal group {t} is already in server.alua.group[{first}]"),
                ),
                (Some(t16), None) => {
                    owner.insert(t, i);
                    ports.push(t16);
                }
            }
        }
        groups.push(GroupSpec {
            id: g.id.min(MAX_PORTAL_GROUP) as u16,
            state: match g.state.unwrap_or(RawAccessState::ActiveOptimized) {
                RawAccessState::ActiveOptimized => AccessState::ActiveOptimized,
                RawAccessState::ActiveNonOptimized => AccessState::ActiveNonOptimized,
                RawAccessState::Standby => AccessState::Standby,
                RawAccessState::Unavailable => AccessState::Unavailable,
            },
            ports,
        });
    }
    for t in &tags {
        if !owner.contains_key(&u32::from(*t)) {
            let portal = portals
                .iter()
                .position(|p| p.group_tag == *t)
                .unwrap_or_default();
            err(
                "server.alua.group".into(),
                format!(
                    "portal group {t} (server.portal[{portal}]) is in no target port group; \
                     every portal group must be in exactly one"
                ),
            );
        }
    }
    (AluaPlan { mode, groups }, errors)
}

#[cfg(test)]
mod tests {
    use super::super::{Source, parse, validate as validate_config};
    use super::*;

    const PORTALS: &str = r#"
        [[server.portal]]
        address = "127.0.0.1:3260"
        group = 1
        [[server.portal]]
        address = "127.0.0.2:3260"
        group = 2
        [[server.portal]]
        address = "127.0.0.3:3260"
        group = 2
    "#;

    fn check(alua: &str) -> Result<AluaPlan, Vec<String>> {
        let text = format!("{PORTALS}\n{alua}");
        let raw = parse(&text, "esos.toml").map_err(|e| vec![e.to_string()])?;
        let src = Source {
            label: "esos.toml".into(),
            base_dir: "/etc/esos".into(),
            node: None,
        };
        validate_config(&raw, &src)
            .map(|p| p.alua)
            .map_err(|e| e.key_errors().iter().map(|k| k.to_string()).collect())
    }

    fn spec(id: u16, state: AccessState, ports: &[u16]) -> GroupSpec {
        GroupSpec {
            id,
            state,
            ports: ports.to_vec(),
        }
    }

    #[test]
    fn default_is_one_active_group_per_portal_group() {
        let p = check("").unwrap();
        assert_eq!(p.mode, AluaMode::Implicit);
        assert_eq!(
            p.groups,
            vec![
                spec(1, AccessState::ActiveOptimized, &[1]),
                spec(2, AccessState::ActiveOptimized, &[2]),
            ]
        );
    }

    #[test]
    fn groups_and_modes_as_written() {
        let p = check(
            r#"
            [server.alua]
            mode = "explicit"
            [[server.alua.group]]
            id = 7
            state = "standby"
            portal_groups = [2]
            [[server.alua.group]]
            id = 3
            portal_groups = [1]
            "#,
        )
        .unwrap();
        assert_eq!(p.mode, AluaMode::Explicit);
        assert_eq!(
            p.groups,
            vec![
                spec(7, AccessState::Standby, &[2]),
                spec(3, AccessState::ActiveOptimized, &[1]),
            ]
        );
        let p = check("[server.alua]\nmode = \"both\"").unwrap();
        assert_eq!((p.mode, p.groups.len()), (AluaMode::Both, 2));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "id = 0\nportal_groups = [1, 2]",
                "server.alua.group[0].id: 0 is not in 1..=65535",
            ),
            (
                "id = 1\nportal_groups = []",
                "server.alua.group[0].portal_groups: is empty",
            ),
            (
                "id = 1\nportal_groups = [1, 2, 5]",
                "server.alua.group[0].portal_groups[2]: 5 is not the group of any server.portal",
            ),
            (
                "id = 1\nportal_groups = [1, 2, 1]",
                "server.alua.group[0].portal_groups[2]: portal group 1 is listed twice",
            ),
            (
                "id = 1\nportal_groups = [1]",
                "server.alua.group: portal group 2 (server.portal[1]) is in no target port group",
            ),
        ];
        for (body, want) in cases {
            let errs = check(&format!("[[server.alua.group]]\n{body}")).unwrap_err();
            assert!(errs.iter().any(|e| e.starts_with(want)), "{errs:#?}");
        }
        let errs = check(
            "[[server.alua.group]]\nid = 1\nportal_groups = [1, 2]\n\
             [[server.alua.group]]\nid = 1\nportal_groups = [2]",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            vec![
                "server.alua.group[1].id: 1 is already the id of server.alua.group[0]",
                "server.alua.group[1].portal_groups[0]: portal group 2 is already in \
                 server.alua.group[0]",
            ]
        );
        // Unknown states, modes and keys are parse errors that name the key.
        for (bad, key) in [
            ("[server.alua]\nmode = \"sometimes\"", "server.alua.mode"),
            (
                "[[server.alua.group]]\nid = 1\nstate = \"transitioning\"\nportal_groups = [1, 2]",
                "server.alua.group[0].state",
            ),
            (
                "[[server.alua.group]]\nid = 1\nports = [1]\nportal_groups = [1, 2]",
                "server.alua.group[0]",
            ),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e[0].contains(key), "{e:?}");
        }
    }
}
