//! Raw config → [`Plan`], refusing every invalid value with the key path and the reason.
//! Pure: no file is opened and nothing is started, so `esos config check` and the daemon
//! share exactly the same rules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use esos_iscsi::params::TargetParams;
use esos_iscsi::server::{Limits, PortalConfig};

use super::error::{ConfigError, KeyError, KeyErrors};
use super::plan::{Chap, Plan};
use super::schema::{RawConfig, RawSize};
use super::size::parse_size;

mod chap;
mod cluster;
mod device;
mod server;
mod target;
#[cfg(test)]
mod tests;

pub use cluster::MIN_MEMBERS;
pub use device::{describe_size, format_naa, parse_naa};

/// Where a raw config came from: its label in messages and the directory that relative
/// paths are resolved against.
#[derive(Debug, Clone)]
pub struct Source {
    pub label: String,
    pub base_dir: PathBuf,
    /// This node's cluster name when given outside the file (`esos --node`,
    /// `ESOS_NODE`); it overrides `cluster.node`.
    pub node: Option<String>,
}

impl Source {
    /// A config file; the node name comes from [`node_override`].
    pub fn file(path: &Path) -> Source {
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Source {
            label: path.display().to_string(),
            base_dir,
            node: node_override(),
        }
    }
}

/// Set once by `esos --node NAME` before any config is read.
static NODE_OVERRIDE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this node for every config read from now on (`esos --node NAME`); the first
/// call wins.
pub fn set_node_override(name: String) {
    let _ = NODE_OVERRIDE.set(name);
}

/// `--node NAME`, else `ESOS_NODE`, else `None` (then `cluster.node` names the node).
pub fn node_override() -> Option<String> {
    NODE_OVERRIDE
        .get()
        .cloned()
        .or_else(|| std::env::var("ESOS_NODE").ok().filter(|n| !n.is_empty()))
}

/// Validates `raw` into a plan, or lists every problem.
pub fn validate(raw: &RawConfig, source: &Source) -> Result<Plan, ConfigError> {
    let mut v = Validator {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let server = v.server(&raw.server, source);
    let (alua, alua_errors) = super::alua::validate(raw.server.alua.as_ref(), &server.portals);
    v.errors.extend(alua_errors);
    let devices = v.devices(&raw.device, source);
    let cluster = v.cluster(
        raw.cluster.as_ref(),
        source.node.as_deref(),
        &server.portals,
    );
    let replicated = v.replicated(raw, raw.cluster.is_some());
    let device_index: HashMap<&str, usize> = raw
        .device
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    let targets = v.targets(&raw.target, &device_index, &server.portals);
    let mut taken: Vec<(SocketAddr, String)> = server
        .portals
        .iter()
        .map(|p| (p.addr, "a server.portal".to_owned()))
        .collect();
    taken.extend(
        server
            .metrics
            .map(|m| (m, "server.metrics_address".to_owned())),
    );
    let api = super::api::validate(raw.api.as_ref(), &source.base_dir, &taken);
    v.errors.extend(api.errors);
    v.warnings.extend(api.warnings);
    v.secrets_not_shared(raw);
    if v.errors.is_empty() {
        let mut plan = Plan {
            source: source.label.clone(),
            data_dir: server.data_dir,
            log_level: server.log_level,
            metrics: server.metrics,
            api: api.plan,
            portals: server.portals,
            limits: server.limits,
            params: server.params,
            discovery_chap: server.discovery_chap,
            alua,
            devices,
            targets,
            cluster,
            warnings: v.warnings,
        };
        cluster::fold_backings(&mut plan, &replicated);
        let mapped = plan.mapped_devices();
        for (i, d) in plan.devices.iter().enumerate() {
            if mapped.binary_search(&i).is_err() {
                plan.warnings.push(format!(
                    "device[{i}] {:?} is not mapped by any target",
                    d.name
                ));
            }
        }
        Ok(plan)
    } else {
        Err(ConfigError::Invalid {
            file: source.label.clone(),
            errors: KeyErrors(v.errors),
        })
    }
}

struct ServerPlan {
    data_dir: PathBuf,
    log_level: Option<String>,
    metrics: Option<SocketAddr>,
    portals: Vec<PortalConfig>,
    limits: Limits,
    params: TargetParams,
    discovery_chap: Option<Chap>,
}

struct Validator {
    errors: Vec<KeyError>,
    warnings: Vec<String>,
}

impl Validator {
    fn err(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(KeyError {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{text:?} is not an IP address with a port, e.g. \"192.0.2.10:3260\" or \"[::1]:3260\""
        )
    })
}

fn size_value(raw: &RawSize) -> Result<u64, String> {
    match raw {
        RawSize::Bytes(n) => Ok(*n),
        RawSize::Text(t) => parse_size(t).map_err(|e| e.to_string()),
    }
}

fn range_msg(v: u64, r: &std::ops::RangeInclusive<u64>) -> String {
    format!("{v} is not in {}..={}", r.start(), r.end())
}
