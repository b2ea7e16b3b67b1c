//! Declarative configuration: parse (TOML → [`RawConfig`]) → validate (→ [`Plan`]).
//! Both steps are pure; opening devices and binding portals happen later, in
//! [`crate::graph`], only once the whole config is known to be valid.

mod alua;
mod api;
mod error;
pub mod limits;
pub mod names;
mod plan;
mod schema;
pub mod size;
mod validate;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use api::{MAX_API_LISTENERS, MAX_API_TOKENS, SHA256_HEX_LEN, parse_sha256_hex, sha256_hex};
pub use error::{ConfigError, KeyError};
pub use limits::{DEFAULT_STATE_DIR, MAX_LUN};
pub use plan::{
    AluaPlan, ApiPlan, ApiRole, ApiTls, ApiToken, Chap, ClusterPlan, DevicePlan, GroupPlan,
    IdentityOverrides, LunPlan, MemberPlan, Plan, ReplicaPlan, TargetPlan,
};
pub use schema::{
    CacheMode, DeviceType, RawApi, RawApiRole, RawApiToken, RawChap, RawCluster, RawConfig,
    RawDevice, RawGroup, RawLun, RawMember, RawPortal, RawSize, RawTarget, RawWitness,
};
pub use validate::{
    MIN_MEMBERS, Source, describe_size, format_naa, node_override, parse_naa, set_node_override,
    validate,
};

/// Largest config file we read; a bigger one is a mistake (or not a config file).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Parses TOML text. Errors carry the line, the column and the key path.
pub fn parse(text: &str, label: &str) -> Result<RawConfig, ConfigError> {
    let fail = |key: String, err: toml::de::Error| {
        let (line, column) = match err.span() {
            Some(span) => line_col(text, span.start),
            None => (0, 0),
        };
        ConfigError::Parse {
            file: label.to_owned(),
            line,
            column,
            key: if key.is_empty() || key == "." {
                "(top level)".to_owned()
            } else {
                key
            },
            message: err.message().to_owned(),
        }
    };
    let de = toml::Deserializer::parse(text).map_err(|e| fail(String::new(), e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        fail(key, e.into_inner())
    })
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Plan, ConfigError> {
    let label = path.display().to_string();
    let read_err = |source| ConfigError::Read {
        file: label.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(read_err(std::io::Error::other(format!(
            "file is {} bytes; a config is at most {MAX_CONFIG_BYTES}",
            meta.len()
        ))));
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let raw = parse(&text, &label)?;
    let mut plan = validate(&raw, &Source::file(path))?;
    if let Some(w) = permission_warning(&meta) {
        plan.warnings.push(w);
    }
    Ok(plan)
}

/// The config holds CHAP secrets: say so when others can read it.
fn permission_warning(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "config file is readable by group or others (mode {:03o}) and may hold CHAP secrets; \
             chmod 600 it",
            mode & 0o777
        )
    })
}
