//! From a validated [`Plan`] to running objects: devices → logical units → LUN maps →
//! targets → server config. Every check that can be done without side effects
//! ([`preflight`]) runs before the first device is opened.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::Arc;

use esos_block::{Backend, BlockError, Device, OPTICAL_BLOCK_SIZE};
use esos_iscsi::server::{InitiatorGroup, ServerConfig, TargetConfig};
use esos_lu::access::PortGroups;
use esos_scsi::{Identity, LogicalUnit, LuSettings, LunMap};

use crate::config::{DeviceType, LunPlan, Plan};

use crate::config::limits::ADVERTISED_MAX_TRANSFER_BYTES;

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
    #[error("server.alua: {0}")]
    Alua(#[from] esos_scsi::alua::AluaError),
    #[error("ALUA state: {0}")]
    AluaState(esos_scsi::pr::StateFileError),
}

/// File in the data directory that keeps states set by SET TARGET PORT GROUPS.
pub const ALUA_STATE_FILE: &str = "alua.state";

/// The ALUA table for `plan`, built from `[server.alua]` and the saved explicit states.
/// The daemon builds it once and every unit shares it, whether opened at start-up or
/// added later through the manager, which also changes states through it
/// ([`PortGroups::set_state`]); `[server.alua]` cannot change while the daemon runs.
pub fn port_groups(plan: &Plan) -> Result<Arc<PortGroups>, GraphError> {
    let table = PortGroups::new(plan.alua.mode, plan.alua.groups.clone())?
        .with_state_file(plan.data_dir.join(ALUA_STATE_FILE))
        .map_err(GraphError::AluaState)?;
    Ok(Arc::new(table))
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
                Ok(m) if m.is_file() => {
                    if d.kind == DeviceType::Cdrom && m.len() < u64::from(OPTICAL_BLOCK_SIZE) {
                        return Err(fail(
                            path,
                            format!(
                                "disc image is {} bytes, less than one {OPTICAL_BLOCK_SIZE}-byte block",
                                m.len()
                            ),
                        ));
                    }
                }
                Ok(_) => return Err(fail(path, "is not a regular file".into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if d.kind == DeviceType::Cdrom {
                        return Err(fail(path, "disc image does not exist".into()));
                    }
                    if d.spec.read_only {
                        return Err(fail(
                            path,
                            "does not exist (a read-only device is never created)".into(),
                        ));
                    }
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
        max_transfer_blocks: ADVERTISED_MAX_TRANSFER_BYTES / d.spec.block_size,
        thin: d.thin,
        // Device names are file-name safe (config/names.rs).
        pr_state: Some(plan.data_dir.join("pr").join(format!("{}.pr", d.name))),
        kind: match d.kind {
            DeviceType::Cdrom => esos_scsi::LuKind::Cdrom,
            _ => esos_scsi::LuKind::Disk,
        },
        removable: d.removable,
        lbppb_exponent: d.lbppb_exponent,
        sanitize_rate: d.sanitize_rate,
        // Replaced by the shared table in `open_unit`.
        alua: Default::default(),
    }
}

/// The spec of a disc image: its size rounded down to whole 2048-byte blocks. ISO 9660
/// images always are whole blocks; a trailing partial block (a truncated download, a
/// padded hybrid image) is left out with a warning rather than refused, since every
/// complete block still reads correctly.
fn disc_spec(
    index: usize,
    name: &str,
    spec: &esos_block::DeviceSpec,
) -> Result<esos_block::DeviceSpec, GraphError> {
    let Backend::File { path, .. } = &spec.backend else {
        return Ok(spec.clone());
    };
    let fail = |reason: String| GraphError::Preflight {
        index,
        name: name.to_owned(),
        path: path.clone(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    let block = u64::from(OPTICAL_BLOCK_SIZE);
    let size = len - len % block;
    if size == 0 {
        return Err(fail(format!(
            "disc image is {len} bytes, less than one {block}-byte block"
        )));
    }
    if size != len {
        tracing::warn!(
            device = name,
            path = %path.display(),
            "disc image is {len} bytes, not a multiple of {block}: the last {} bytes are not exported",
            len - size
        );
    }
    let mut spec = spec.clone();
    spec.backend = Backend::File {
        path: path.clone(),
        size_bytes: Some(size),
    };
    Ok(spec)
}

/// Opens every device once and wraps it in its one [`LogicalUnit`] over the daemon's
/// ALUA table `alua`; `identities` is index-aligned with `plan.devices`. On error the
/// devices opened so far are dropped.
pub fn open_units(
    plan: &Plan,
    identities: Vec<Identity>,
    alua: &Arc<PortGroups>,
) -> Result<Vec<Arc<LogicalUnit>>, GraphError> {
    assert_eq!(
        identities.len(),
        plan.devices.len(),
        "one identity per device"
    );
    identities
        .into_iter()
        .enumerate()
        .map(|(index, identity)| open_unit(plan, index, identity, alua))
        .collect()
}

/// Opens device `index` of `plan` and wraps it in its logical unit over `alua`.
pub fn open_unit(
    plan: &Plan,
    index: usize,
    identity: Identity,
    alua: &Arc<PortGroups>,
) -> Result<Arc<LogicalUnit>, GraphError> {
    let d = &plan.devices[index];
    let spec = match d.kind {
        DeviceType::Cdrom => disc_spec(index, &d.name, &d.spec)?,
        _ => d.spec.clone(),
    };
    let device = Device::open(&spec).map_err(|source| GraphError::Open {
        index,
        name: d.name.clone(),
        source,
    })?;
    let mut settings = lu_settings(plan, index, identity);
    settings.alua = Arc::clone(alua);
    LogicalUnit::try_new(device, settings).map_err(|source| GraphError::Reservations {
        index,
        name: d.name.clone(),
        source,
    })
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
                node: None,
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
            uuid: [0; 16],
            naa: [0x60; 16],
        };
        let s = lu_settings(&p, 0, id.clone());
        assert_eq!(s.identity, id);
        assert!(!s.write_cache);
        assert!(s.read_only);
        assert_eq!(s.max_transfer_blocks, ADVERTISED_MAX_TRANSFER_BYTES / 4096);
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

    #[test]
    fn cdrom_image_is_sized_in_whole_blocks_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
            [[device]]
            name = "cd"
            type = "cdrom"
            path = "disc.iso"
            "#;
        let p = plan(text, dir.path());
        let e = preflight(&p).unwrap_err().to_string();
        assert!(e.contains("disc image does not exist"), "{e}");
        std::fs::write(dir.path().join("disc.iso"), [0u8; 100]).unwrap();
        let e = preflight(&p).unwrap_err().to_string();
        assert!(e.contains("less than one 2048-byte block"), "{e}");
        // A trailing partial block is left out.
        std::fs::write(dir.path().join("disc.iso"), vec![7u8; 3 * 2048 + 100]).unwrap();
        preflight(&p).unwrap();
        let id = Identity {
            vendor: "ESOS".into(),
            product: "VCDROM".into(),
            revision: "0.1".into(),
            serial: "cd1".into(),
            uuid: [0; 16],
            naa: [0x60; 16],
        };
        let lu = open_unit(&p, 0, id, &port_groups(&p).unwrap()).unwrap();
        assert_eq!(lu.settings().kind, esos_scsi::LuKind::Cdrom);
        assert!(lu.settings().removable && lu.settings().read_only);
        let cap = capacity_of(&p, 0);
        assert_eq!(cap, 3 * 2048);
    }

    /// The exported size of device `index`, as `disc_spec` computes it.
    fn capacity_of(p: &Plan, index: usize) -> u64 {
        let d = &p.devices[index];
        match disc_spec(index, &d.name, &d.spec).unwrap().backend {
            Backend::File { size_bytes, .. } => size_bytes.unwrap(),
            _ => unreachable!(),
        }
    }
}
