//! Configs that come from the command line rather than a file: the built-in default
//! (`esos` with no arguments) and quick export (`esos serve --lun ...`). Both are built as
//! a [`RawConfig`] and go through the same validation as a config file.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::cli::QuickArgs;
use crate::config::size::parse_size;
use crate::config::{
    self, CacheMode, ConfigError, DeviceType, Plan, RawConfig, RawDevice, RawLun, RawPortal,
    RawSize, RawTarget, Source,
};

pub const DEFAULT_TARGET: &str = "iqn.2026-11.org.esos:default";
pub const DEFAULT_PORTAL: &str = "127.0.0.1:3260";
pub const DEFAULT_DATA_DIR: &str = "esos-data";
pub const DEFAULT_LUN_FILE: &str = "lun0.img";
pub const DEFAULT_LUN_SIZE: u64 = 1 << 30;
pub const QUICK_TARGET: &str = "iqn.2026-11.org.esos:quick";
/// Most LUNs one quick export may list (a typo-guard; config files have no such limit
/// beyond LUN numbering).
pub const MAX_QUICK_LUNS: usize = 256;

/// What one `--lun` argument asks for, before looking at the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LunArg {
    /// A path whose kind (file or block device) is decided by stat.
    Path {
        path: PathBuf,
        size_bytes: Option<u64>,
    },
    File {
        path: PathBuf,
        size_bytes: Option<u64>,
    },
    BlockDev {
        path: PathBuf,
    },
    Ram {
        size_bytes: u64,
    },
    Null {
        size_bytes: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum QuickError {
    #[error("--lun {arg:?}: {reason}")]
    Lun { arg: String, reason: String },
    #[error("no --lun given; e.g. `esos serve --lun disk.img:10G` or `esos serve --config FILE`")]
    NoLuns,
    #[error("{0} --lun arguments; at most {MAX_QUICK_LUNS}")]
    TooManyLuns(usize),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Parses one `--lun` value. Pure: no file system access.
pub fn parse_lun_arg(arg: &str) -> Result<LunArg, QuickError> {
    let bad = |reason: String| QuickError::Lun {
        arg: arg.to_owned(),
        reason,
    };
    let size = |s: &str| parse_size(s).map_err(|e| bad(e.to_string()));
    let path_and_size = |s: &str| -> (PathBuf, Option<u64>) {
        // PATH:SIZE when the part after the last ':' is a size, else all of it is the path.
        match s.rsplit_once(':') {
            Some((p, z)) if !p.is_empty() => match parse_size(z) {
                Ok(n) => (PathBuf::from(p), Some(n)),
                Err(_) => (PathBuf::from(s), None),
            },
            _ => (PathBuf::from(s), None),
        }
    };
    if arg.is_empty() {
        return Err(bad("is empty".into()));
    }
    if let Some(s) = arg.strip_prefix("null:") {
        return Ok(LunArg::Null {
            size_bytes: size(s)?,
        });
    }
    if let Some(s) = arg.strip_prefix("ram:") {
        return Ok(LunArg::Ram {
            size_bytes: size(s)?,
        });
    }
    if let Some(p) = arg.strip_prefix("blockdev:") {
        if p.is_empty() {
            return Err(bad("needs a path after \"blockdev:\"".into()));
        }
        return Ok(LunArg::BlockDev {
            path: PathBuf::from(p),
        });
    }
    if let Some(s) = arg.strip_prefix("file:") {
        let (path, size_bytes) = path_and_size(s);
        if path.as_os_str().is_empty() {
            return Err(bad("needs a path after \"file:\"".into()));
        }
        return Ok(LunArg::File { path, size_bytes });
    }
    let (path, size_bytes) = path_and_size(arg);
    Ok(LunArg::Path { path, size_bytes })
}

/// Decides file vs block device by stat (the only I/O here) and refuses what cannot work.
pub fn resolve_lun_arg(arg: &str, lun: LunArg) -> Result<LunArg, QuickError> {
    let bad = |reason: String| QuickError::Lun {
        arg: arg.to_owned(),
        reason,
    };
    let LunArg::Path { path, size_bytes } = lun else {
        return Ok(lun);
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.file_type().is_block_device() => match size_bytes {
            Some(_) => Err(bad("is a block device: its size cannot be set".into())),
            None => Ok(LunArg::BlockDev { path }),
        },
        Ok(m) if m.is_file() => Ok(LunArg::File { path, size_bytes }),
        Ok(_) => Err(bad("is neither a regular file nor a block device".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match size_bytes {
            Some(_) => Ok(LunArg::File { path, size_bytes }),
            None => Err(bad(
                "does not exist; give a size (PATH:SIZE, e.g. disk.img:10G) to create it".into(),
            )),
        },
        Err(e) => Err(bad(e.to_string())),
    }
}

fn raw_device(
    name: String,
    lun: &LunArg,
    block_size: Option<u32>,
    write_through: bool,
    thin: bool,
) -> RawDevice {
    let (kind, path, size) = match lun {
        LunArg::Path { path, size_bytes } | LunArg::File { path, size_bytes } => {
            (DeviceType::File, Some(path), *size_bytes)
        }
        LunArg::BlockDev { path } => (DeviceType::Blockdev, Some(path), None),
        LunArg::Ram { size_bytes } => (DeviceType::Ram, None, Some(*size_bytes)),
        LunArg::Null { size_bytes } => (DeviceType::Null, None, Some(*size_bytes)),
    };
    RawDevice {
        name,
        kind,
        path: path.map(|p| p.to_string_lossy().into_owned()),
        size: size.map(RawSize::Bytes),
        block_size,
        physical_block_size: None,
        sanitize_rate: None,
        read_only: None,
        cache: write_through.then_some(CacheMode::WriteThrough),
        rotational: None,
        thin: thin.then_some(true),
        removable: None,
        vendor: None,
        product: None,
        revision: None,
        serial: None,
        naa: None,
        backing: None,
        resync_rate: None,
    }
}

/// Builds the raw config of a quick export from already-resolved LUNs.
pub fn quick_raw(args: &QuickArgs, luns: &[LunArg]) -> RawConfig {
    let mut raw = RawConfig::default();
    let portals = if args.portal.is_empty() {
        vec![DEFAULT_PORTAL.to_owned()]
    } else {
        args.portal.clone()
    };
    raw.server.portal = Some(
        portals
            .into_iter()
            .map(|address| RawPortal {
                address,
                group: None,
            })
            .collect(),
    );
    raw.server.data_dir = Some(
        args.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
            .to_string_lossy()
            .into_owned(),
    );
    raw.device = luns
        .iter()
        .enumerate()
        .map(|(i, l)| {
            raw_device(
                format!("lun{i}"),
                l,
                args.block_size,
                args.write_through,
                args.thin,
            )
        })
        .collect();
    raw.target = vec![RawTarget {
        name: args
            .target
            .clone()
            .unwrap_or_else(|| QUICK_TARGET.to_owned()),
        alias: None,
        enabled: None,
        portals: None,
        chap: match (&args.chap_user, &args.chap_secret) {
            (Some(user), Some(secret)) => Some(config::RawChap {
                user: user.clone(),
                secret: secret.clone(),
                mutual_user: None,
                mutual_secret: None,
            }),
            _ => None,
        },
        group: Vec::new(),
        default_luns: Some(
            raw.device
                .iter()
                .enumerate()
                .map(|(i, d)| RawLun {
                    lun: i as u64,
                    device: d.name.clone(),
                })
                .collect(),
        ),
    }];
    raw
}

/// `esos serve --lun ...`: parse, stat, validate.
pub fn quick_plan(args: &QuickArgs) -> Result<Plan, QuickError> {
    if args.lun.is_empty() {
        return Err(QuickError::NoLuns);
    }
    if args.lun.len() > MAX_QUICK_LUNS {
        return Err(QuickError::TooManyLuns(args.lun.len()));
    }
    let luns = args
        .lun
        .iter()
        .map(|a| parse_lun_arg(a).and_then(|l| resolve_lun_arg(a, l)))
        .collect::<Result<Vec<_>, _>>()?;
    let raw = quick_raw(args, &luns);
    let source = Source {
        label: "command line".into(),
        base_dir: PathBuf::from("."),
        node: None,
    };
    let mut plan = config::validate(&raw, &source)?;
    // Key quick-export identities by path, not by position, so reordering --lun does not
    // swap the disks' serials.
    for (dev, lun) in plan.devices.iter_mut().zip(&luns) {
        if let LunArg::File { path, .. } | LunArg::BlockDev { path } = lun {
            dev.identity_key = format!("path:{}", absolute(path).display());
        }
    }
    Ok(plan)
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The raw config of `esos` with no arguments, rooted at `base_dir`.
pub fn default_raw() -> RawConfig {
    let mut raw = RawConfig::default();
    raw.server.portal = Some(vec![RawPortal {
        address: DEFAULT_PORTAL.into(),
        group: None,
    }]);
    raw.server.data_dir = Some(DEFAULT_DATA_DIR.into());
    let lun0 = LunArg::File {
        path: Path::new(DEFAULT_DATA_DIR).join(DEFAULT_LUN_FILE),
        size_bytes: Some(DEFAULT_LUN_SIZE),
    };
    raw.device = vec![raw_device("lun0".into(), &lun0, None, false, false)];
    raw.target = vec![RawTarget {
        name: DEFAULT_TARGET.into(),
        alias: Some("esos default".into()),
        enabled: None,
        portals: None,
        chap: None,
        group: Vec::new(),
        default_luns: Some(vec![RawLun {
            lun: 0,
            device: "lun0".into(),
        }]),
    }];
    raw
}

/// `esos` with no arguments: a 1 GiB sparse file LUN under ./esos-data.
pub fn default_plan(base_dir: &Path) -> Result<Plan, ConfigError> {
    let source = Source {
        label: "built-in default".into(),
        base_dir: base_dir.to_path_buf(),
        node: None,
    };
    config::validate(&default_raw(), &source)
}

/// Name of the config file `esos` with no arguments writes into [`DEFAULT_DATA_DIR`] on its
/// first start and serves from then on, so changes made through the API persist.
pub const DEFAULT_CONFIG_FILE: &str = "esos.toml";

/// The text of that file: the same configuration as [`default_raw`], with paths relative to
/// the file's own directory.
pub fn default_text() -> String {
    format!(
        r#"# esos configuration, written by `esos` on its first start (docs/configuration.md).
# Edit it, or change it live with the esos CLI: the daemon keeps this file current.

[server]
data_dir = "."

[[server.portal]]
address = "{DEFAULT_PORTAL}"

[[device]]
name = "lun0"
type = "file"
path = "{DEFAULT_LUN_FILE}"
size = "1G"

[[target]]
name = "{DEFAULT_TARGET}"
alias = "esos default"
default_luns = [{{ lun = 0, device = "lun0" }}]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use esos_block::Backend;

    #[test]
    fn default_text_is_the_default_config() {
        let dir = Path::new("/srv/x/esos-data");
        let from_text = config::validate(
            &config::parse(&default_text(), "default").unwrap(),
            &Source {
                label: "default".into(),
                base_dir: dir.to_path_buf(),
                node: None,
            },
        )
        .unwrap();
        let builtin = default_plan(Path::new("/srv/x")).unwrap();
        assert_eq!(from_text.data_dir, builtin.data_dir);
        assert_eq!(from_text.devices, builtin.devices);
        assert_eq!(from_text.portals, builtin.portals);
        assert_eq!(from_text.targets.len(), 1);
        assert_eq!(from_text.targets[0].name, builtin.targets[0].name);
        assert_eq!(
            from_text.targets[0].default_luns,
            builtin.targets[0].default_luns
        );
    }

    #[test]
    fn lun_arg_forms() {
        let p = |s: &str| parse_lun_arg(s).unwrap();
        assert_eq!(
            p("null:1G"),
            LunArg::Null {
                size_bytes: 1 << 30
            }
        );
        assert_eq!(
            p("ram:512M"),
            LunArg::Ram {
                size_bytes: 512 << 20
            }
        );
        assert_eq!(
            p("/dev/sdb"),
            LunArg::Path {
                path: "/dev/sdb".into(),
                size_bytes: None
            }
        );
        assert_eq!(
            p("disk.img:10G"),
            LunArg::Path {
                path: "disk.img".into(),
                size_bytes: Some(10 << 30)
            }
        );
        assert_eq!(
            p("file:a.img"),
            LunArg::File {
                path: "a.img".into(),
                size_bytes: None
            }
        );
        assert_eq!(
            p("file:a.img:4K"),
            LunArg::File {
                path: "a.img".into(),
                size_bytes: Some(4096)
            }
        );
        assert_eq!(
            p("blockdev:/dev/loop0"),
            LunArg::BlockDev {
                path: "/dev/loop0".into()
            }
        );
        // A colon that does not introduce a size is part of the path.
        assert_eq!(
            p("/srv/a:b.img"),
            LunArg::Path {
                path: "/srv/a:b.img".into(),
                size_bytes: None
            }
        );
    }

    #[test]
    fn lun_arg_errors() {
        for (arg, needle) in [
            ("", "is empty"),
            ("null:", "empty size"),
            ("ram:lots", "is not a size"),
            ("blockdev:", "needs a path"),
            ("file:", "needs a path"),
        ] {
            let e = parse_lun_arg(arg).unwrap_err().to_string();
            assert!(e.contains(needle), "{arg:?}: {e}");
        }
    }

    #[test]
    fn resolve_by_stat() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("a.img");
        std::fs::write(&existing, vec![0u8; 4096]).unwrap();
        let missing = dir.path().join("b.img");
        let r = |l: LunArg| resolve_lun_arg("x", l);
        let ok = |l: LunArg| r(l).unwrap();
        assert_eq!(
            ok(LunArg::Path {
                path: existing.clone(),
                size_bytes: None
            }),
            LunArg::File {
                path: existing.clone(),
                size_bytes: None
            }
        );
        assert_eq!(
            ok(LunArg::Path {
                path: missing.clone(),
                size_bytes: Some(4096)
            }),
            LunArg::File {
                path: missing.clone(),
                size_bytes: Some(4096)
            }
        );
        let e = r(LunArg::Path {
            path: missing,
            size_bytes: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("does not exist") && e.contains("PATH:SIZE"),
            "{e}"
        );
        let e = r(LunArg::Path {
            path: dir.path().into(),
            size_bytes: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("neither"), "{e}");
        if Path::new("/dev/loop0").exists() {
            assert_eq!(
                ok(LunArg::Path {
                    path: "/dev/loop0".into(),
                    size_bytes: None
                }),
                LunArg::BlockDev {
                    path: "/dev/loop0".into()
                }
            );
        }
    }

    #[test]
    fn quick_export_plan() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("d.img");
        let args = QuickArgs {
            lun: vec![
                format!("{}:8M", img.display()),
                "null:1G".into(),
                "ram:64M".into(),
            ],
            portal: vec!["127.0.0.1:3261".into(), "[::1]:3261".into()],
            block_size: Some(4096),
            write_through: true,
            chap_user: Some("user".into()),
            chap_secret: Some("0123456789abcdef".into()),
            data_dir: Some(dir.path().join("state")),
            ..QuickArgs::default()
        };
        let plan = quick_plan(&args).unwrap();
        assert_eq!(plan.portals.len(), 2);
        assert_eq!(plan.portals[1].addr, "[::1]:3261".parse().unwrap());
        assert_eq!(plan.data_dir, dir.path().join("state"));
        assert_eq!(plan.devices.len(), 3);
        assert!(
            plan.devices
                .iter()
                .all(|d| d.spec.block_size == 4096 && !d.write_cache)
        );
        assert_eq!(
            plan.devices[0].spec.backend,
            Backend::File {
                path: img.clone(),
                size_bytes: Some(8 << 20)
            }
        );
        assert!(plan.devices[0].identity_key.starts_with("path:/"));
        assert_eq!(plan.devices[1].identity_key, "lun1");
        let t = &plan.targets[0];
        assert_eq!(t.name, QUICK_TARGET);
        assert_eq!(
            t.default_luns.as_deref(),
            Some(&[(0, 0), (1, 1), (2, 2)][..])
        );
        assert_eq!(t.chap.as_ref().unwrap().user, "user");
    }

    #[test]
    fn quick_export_refusals() {
        let base = QuickArgs {
            lun: vec!["null:1G".into()],
            ..QuickArgs::default()
        };
        let err = |a: QuickArgs| format!("{:#}", quick_plan(&a).unwrap_err());
        assert!(
            err(QuickArgs {
                lun: vec![],
                ..base.clone()
            })
            .contains("no --lun")
        );
        let e = err(QuickArgs {
            target: Some("iqn.bad".into()),
            ..base.clone()
        });
        assert!(e.contains("target[0].name"), "{e}");
        let e = err(QuickArgs {
            chap_user: Some("u".into()),
            chap_secret: Some("short".into()),
            ..base.clone()
        });
        assert!(
            e.contains("target[0].chap.secret") && e.contains("at least 12"),
            "{e}"
        );
        assert!(!e.contains("short"), "secret leaked: {e}");
        let e = err(QuickArgs {
            block_size: Some(1000),
            ..base.clone()
        });
        assert!(e.contains("device[0].block_size"), "{e}");
        let e = err(QuickArgs {
            portal: vec!["localhost:3260".into()],
            ..base.clone()
        });
        assert!(e.contains("server.portal[0].address"), "{e}");
        let e = err(QuickArgs {
            lun: vec!["null:1000".into()],
            ..base
        });
        assert!(e.contains("multiple of the block size"), "{e}");
    }

    #[test]
    fn default_plan_shape() {
        let plan = default_plan(Path::new("/srv")).unwrap();
        assert_eq!(plan.portals[0].addr, DEFAULT_PORTAL.parse().unwrap());
        assert_eq!(plan.data_dir, Path::new("/srv/esos-data"));
        assert_eq!(
            plan.devices[0].spec.backend,
            Backend::File {
                path: "/srv/esos-data/lun0.img".into(),
                size_bytes: Some(1 << 30)
            }
        );
        assert_eq!(plan.targets[0].name, DEFAULT_TARGET);
        assert_eq!(plan.targets[0].default_luns.as_deref(), Some(&[(0, 0)][..]));
        assert!(plan.targets[0].groups.is_empty());
    }
}
