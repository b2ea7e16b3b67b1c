//! From a validated [`Plan`] to running objects: devices → logical units → LUN maps →
//! targets → server config. Every check that can be done without side effects
//! ([`preflight`]) runs before the first device is opened.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::Arc;

use esos_block::{Backend, BlockError, Device};
use esos_iscsi::server::{InitiatorGroup, ServerConfig, TargetConfig};
use esos_scsi::{Identity, LogicalUnit, LuSettings, LunMap};

use crate::config::{LunPlan, Plan};

/// Largest transfer one command may move (VPD Block Limits MAXIMUM TRANSFER LENGTH),
/// in bytes; it bounds the buffer one command can make the target allocate.
pub const MAX_TRANSFER_BYTES: u32 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("device[{index}] {name:?}: {path}: {reason}")]
    Preflight {
        index: usize,
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("device[{index}] {name:?}: cannot open: {source}")]
    Open {
        index: usize,
        name: String,
        source: BlockError,
    },
    #[error("device[{index}] {name:?}: persistent reservations: {source}")]
    Reservations {
        index: usize,
        name: String,
        source: esos_scsi::pr::StateFileError,
    },
}

/// Read-only checks of every device path, so a typo in the last device does not leave
/// the first ones created or opened.
pub fn preflight(plan: &Plan) -> Result<(), GraphError> {
    for (index, d) in plan.devices.iter().enumerate() {
        let fail = |path: &PathBuf, reason: String| GraphError::Preflight {
            index,
            name: d.name.clone(),
            path: path.clone(),
            reason,
        };
        match &d.spec.backend {
            Backend::File { path, size_bytes } => match std::fs::metadata(path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => return Err(fail(path, "is not a regular file".into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if size_bytes.is_none() {
                        return Err(fail(
                            path,
                            "does not exist and no size is set to create it".into(),
                        ));
                    }
                    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                    if let Some(parent) = parent
                        && !parent.is_dir()
                    {
                        return Err(fail(
                            path,
                            format!("directory {} does not exist", parent.display()),
                        ));
                    }
                }
                Err(e) => return Err(fail(path, e.to_string())),
            },
            Backend::BlockDev { path } => match std::fs::metadata(path) {
                Ok(m) if m.file_type().is_block_device() => {}
                Ok(_) => return Err(fail(path, "is not a block device".into())),
                Err(e) => return Err(fail(path, e.to_string())),
            },
            Backend::Ram { .. } | Backend::Null { .. } => {}
        }
    }
    Ok(())
}

/// The settings the SCSI engine gets for device `index`.
pub fn lu_settings(plan: &Plan, index: usize, identity: Identity) -> LuSettings {
    let d = &plan.devices[index];
    LuSettings {
        identity,
        write_cache: d.write_cache,
        read_only: d.spec.read_only,
        max_transfer_blocks: MAX_TRANSFER_BYTES / d.spec.block_size,
        thin: d.thin,
        // Device names are file-name safe (config/names.rs).
        pr_state: Some(plan.data_dir.join("pr").join(format!("{}.pr", d.name))),
        kind: esos_scsi::LuKind::Disk,
        removable: false,
        lbppb_exponent: 0,
    }
}

/// Opens every device once and wraps it in its one [`LogicalUnit`]; `identities` is
/// index-aligned with `plan.devices`. On error the devices opened so far are dropped.
pub fn open_units(
    plan: &Plan,
    identities: Vec<Identity>,
) -> Result<Vec<Arc<LogicalUnit>>, GraphError> {
    assert_eq!(
        identities.len(),
        plan.devices.len(),
        "one identity per device"
    );
    let mut units = Vec::with_capacity(plan.devices.len());
    for (index, identity) in identities.into_iter().enumerate() {
        let d = &plan.devices[index];
        let device = Device::open(&d.spec).map_err(|source| GraphError::Open {
            index,
            name: d.name.clone(),
            source,
        })?;
        let settings = lu_settings(plan, index, identity);
        let unit =
            LogicalUnit::try_new(device, settings).map_err(|source| GraphError::Reservations {
                index,
                name: d.name.clone(),
                source,
            })?;
        units.push(unit);
    }
    Ok(units)
}

fn lun_map(luns: &LunPlan, units: &[Arc<LogicalUnit>]) -> LunMap {
    // The same Arc in every map that names the device: one LU, shared state (reservations,
    // unit attentions) across all paths to it.
    LunMap::new(
        luns.iter()
            .map(|&(lun, d)| (lun, Arc::clone(&units[d])))
            .collect(),
    )
}

/// The iSCSI server configuration for `plan` over already-opened units.
pub fn server_config(plan: &Plan, units: &[Arc<LogicalUnit>]) -> ServerConfig {
    let targets = plan
        .targets
        .iter()
        .map(|t| TargetConfig {
            name: t.name.clone(),
            alias: t.alias.clone(),
            enabled: t.enabled,
            portals: t.portals.clone(),
            groups: t
                .groups
                .iter()
                .map(|g| InitiatorGroup {
                    name: g.name.clone(),
                    initiators: g.initiators.clone(),
                    luns: lun_map(&g.luns, units),
                })
                .collect(),
            default_luns: t.default_luns.as_ref().map(|l| lun_map(l, units)),
            chap: t.chap.as_ref().map(|c| c.to_credentials()),
        })
        .collect();
    ServerConfig {
        portals: plan.portals.clone(),
        targets,
        discovery_chap: plan.discovery_chap.as_ref().map(|c| c.to_credentials()),
        params: plan.params.clone(),
        limits: plan.limits.clone(),
    }
}

/// How to reach the exported LUNs: an iscsi:// URL per enabled target and portal, and
/// the iscsiadm lines. `addrs` are the bound addresses (ports resolved).
pub fn connection_hints(plan: &Plan, addrs: &[std::net::SocketAddr]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for t in plan.targets.iter().filter(|t| t.enabled) {
        let first_lun = t
            .default_luns
            .iter()
            .chain(t.groups.iter().map(|g| &g.luns))
            .flat_map(|l| l.first())
            .map(|&(lun, _)| lun)
            .next()
            .unwrap_or(0);
        let reachable: Vec<_> = addrs
            .iter()
            .zip(&plan.portals)
            .filter(|(_, p)| t.portals.is_empty() || t.portals.contains(&p.addr))
            .map(|(a, _)| *a)
            .collect();
        let _ = writeln!(out, "target {}", t.name);
        for a in &reachable {
            let _ = writeln!(out, "  iscsi://{a}/{}/{first_lun}", t.name);
        }
        if let Some(a) = reachable.first() {
            let _ = writeln!(out, "  iscsiadm -m discovery -t st -p {a}");
            let _ = writeln!(out, "  iscsiadm -m node -T {} -p {a} --login", t.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Source};

    fn plan(text: &str, base: &std::path::Path) -> Plan {
        let raw = config::parse(text, "t.toml").unwrap();
        config::validate(
            &raw,
            &Source {
                label: "t.toml".into(),
                base_dir: base.into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn preflight_catches_missing_paths_before_anything_opens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("exists.img"), [0u8; 512]).unwrap();
        let ok = plan(
            r#"
            [[device]]
            name = "a"
            type = "file"
            path = "exists.img"
            [[device]]
            name = "b"
            type = "file"
            path = "new.img"
            size = "1M"
            [[device]]
            name = "n"
            type = "null"
            size = "1G"
            "#,
            dir.path(),
        );
        preflight(&ok).unwrap();
        assert!(
            !dir.path().join("new.img").exists(),
            "preflight must not create files"
        );

        let cases = [
            (
                r#"type = "file"
                path = "missing.img""#,
                "does not exist and no size",
            ),
            (
                r#"type = "file"
                path = "nodir/x.img"
                size = "1M""#,
                "does not exist",
            ),
            (
                r#"type = "file"
                path = ".""#,
                "not a regular file",
            ),
            (
                r#"type = "blockdev"
                path = "exists.img""#,
                "not a block device",
            ),
        ];
        for (body, needle) in cases {
            let p = plan(&format!("[[device]]\nname = \"d\"\n{body}\n"), dir.path());
            let e = preflight(&p).unwrap_err().to_string();
            assert!(e.contains("device[0] \"d\"") && e.contains(needle), "{e}");
        }
    }

    #[test]
    fn settings_follow_the_device() {
        let p = plan(
            r#"
            [[device]]
            name = "a"
            type = "ram"
            size = "16M"
            block_size = 4096
            cache = "write-through"
            read_only = true
            "#,
            std::path::Path::new("."),
        );
        let id = Identity {
            vendor: "ESOS".into(),
            product: "RAMDISK".into(),
            revision: "0.1".into(),
            serial: "S".into(),
            naa: [0x60; 16],
        };
        let s = lu_settings(&p, 0, id.clone());
        assert_eq!(s.identity, id);
        assert!(!s.write_cache);
        assert!(s.read_only);
        assert_eq!(s.max_transfer_blocks, MAX_TRANSFER_BYTES / 4096);
    }

    #[test]
    fn hints_name_url_and_iscsiadm() {
        let p = plan(
            r#"
            [server]
            portal = [{ address = "127.0.0.1:0" }, { address = "[::1]:3260", group = 2 }]
            [[device]]
            name = "n"
            type = "null"
            size = "1G"
            [[target]]
            name = "iqn.2026-11.org.esos:a"
            default_luns = [{ lun = 3, device = "n" }]
            [[target]]
            name = "iqn.2026-11.org.esos:b"
            portals = ["[::1]:3260"]
            default_luns = [{ lun = 0, device = "n" }]
            [[target]]
            name = "iqn.2026-11.org.esos:off"
            enabled = false
            "#,
            std::path::Path::new("."),
        );
        let bound = [
            "127.0.0.1:41000".parse().unwrap(),
            "[::1]:3260".parse().unwrap(),
        ];
        let h = connection_hints(&p, &bound);
        assert!(
            h.contains("iscsi://127.0.0.1:41000/iqn.2026-11.org.esos:a/3"),
            "{h}"
        );
        assert!(
            h.contains("iscsi://[::1]:3260/iqn.2026-11.org.esos:a/3"),
            "{h}"
        );
        assert!(
            h.contains("iscsiadm -m discovery -t st -p 127.0.0.1:41000"),
            "{h}"
        );
        assert!(
            h.contains("iscsiadm -m node -T iqn.2026-11.org.esos:a -p 127.0.0.1:41000 --login"),
            "{h}"
        );
        assert!(
            h.contains("iscsi://[::1]:3260/iqn.2026-11.org.esos:b/0"),
            "{h}"
        );
        assert!(!h.contains("127.0.0.1:41000/iqn.2026-11.org.esos:b"), "{h}");
        assert!(!h.contains(":off"), "{h}");
    }
}
