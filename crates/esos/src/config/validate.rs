//! Raw config → [`Plan`], refusing every invalid value with the key path and the reason.
//! Pure: no file is opened and nothing is started, so `esos config check` and the daemon
//! share exactly the same rules.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use esos_block::{Backend, DeviceSpec, OPTICAL_BLOCK_SIZE, SUPPORTED_BLOCK_SIZES};

/// Largest `physical_block_size` accepted: 64 KiB, beyond any real medium's physical block,
/// so the LBPPB exponent (4 bits in READ CAPACITY(16)) always fits.
pub const MAX_PHYSICAL_BLOCK_SIZE: u32 = 64 << 10;
use esos_iscsi::login::chap::constant_time_eq;
use esos_iscsi::params::TargetParams;
use esos_iscsi::server::{Limits, PortalConfig};

use super::error::{ConfigError, KeyError, KeyErrors};
use super::names::{normalise_initiator, validate_iscsi_name, validate_object_name};
use super::plan::{Chap, DevicePlan, GroupPlan, IdentityOverrides, LunPlan, Plan, TargetPlan};
use super::schema::{
    CacheMode, DeviceType, RawChap, RawConfig, RawDevice, RawIscsi, RawLimits, RawLun, RawServer,
    RawSize, RawTarget,
};
use super::size::{HumanSize, parse_size};

/// LUNs are reported with the flat / peripheral addressing methods, whose 14-bit field
/// bounds the LUN number (SAM-5 4.7.7).
pub const MAX_LUN: u64 = 16383;

/// RFC 7143 recommends CHAP secrets of at least 12 bytes (96 bits): shorter ones fall to
/// an offline dictionary attack on one captured exchange.
pub const CHAP_SECRET_MIN_LEN: usize = 12;
/// Longest CHAP secret; matches what common initiators (open-iscsi, Windows) accept.
pub const CHAP_SECRET_MAX_LEN: usize = 255;
/// Longest CHAP user name we accept.
pub const CHAP_NAME_MAX_LEN: usize = 255;
/// Longest TargetAlias (RFC 7143 13.6 text value, kept to one short line).
pub const MAX_ALIAS_LEN: usize = 255;

/// TSIH is 16 bits and 0 is reserved, so no target can hold more sessions (RFC 7143 11.12.4).
pub const MAX_SESSIONS: u32 = 65535;
/// Largest CmdSN window one session may have; bounds the per-session command memory.
pub const MAX_CMDS_PER_SESSION: u32 = 4096;
/// Login timeout bounds (ms): long enough for a slow CHAP exchange, short enough that a
/// half-open login cannot hold a session slot for long.
pub const LOGIN_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=300_000;
/// NOP-In interval bounds when enabled (ms); 0 disables pings.
pub const NOP_IN_INTERVAL_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;
/// NOP-In answer timeout bounds (ms).
pub const NOP_IN_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;
/// Most connections that may be in the login phase at once; each holds a task and socket
/// buffers until it logs in or `login_timeout_ms` ends it.
pub const MAX_LOGIN_CONNECTIONS: u32 = 65535;

/// MaxRecvDataSegmentLength, MaxBurstLength and FirstBurstLength range (RFC 7143 13.12-13.14).
pub const DATA_LENGTH_RANGE: std::ops::RangeInclusive<u64> = 512..=16_777_215;
/// MaxOutstandingR2T range (RFC 7143 13.17).
pub const MAX_OUTSTANDING_R2T_RANGE: std::ops::RangeInclusive<u32> = 1..=65535;
/// DefaultTime2Wait / DefaultTime2Retain range in seconds (RFC 7143 13.15, 13.16).
pub const TIME2_RANGE: std::ops::RangeInclusive<u32> = 0..=3600;

/// Portal used when the config names none.
pub const DEFAULT_PORTAL: &str = "0.0.0.0:3260";
/// Largest portal group tag (RFC 7143 13.9: 16 bits; 0 is not used by esos).
pub const MAX_PORTAL_GROUP: u32 = 65535;
/// Name of the state directory next to the config file when `data_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "esos-state";

/// Slowest `sanitize_rate` accepted: below it a sanitize of a large device would take
/// months, which is a typo rather than a policy.
pub const MIN_SANITIZE_RATE: u64 = 1 << 20;

/// Where a raw config came from: its label in messages and the directory that relative
/// paths are resolved against.
#[derive(Debug, Clone)]
pub struct Source {
    pub label: String,
    pub base_dir: PathBuf,
}

impl Source {
    pub fn file(path: &Path) -> Source {
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Source {
            label: path.display().to_string(),
            base_dir,
        }
    }
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
            warnings: v.warnings,
        };
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

    fn server(&mut self, raw: &RawServer, source: &Source) -> ServerPlan {
        let portals = self.portals(raw);
        let limits = self.limits(&raw.limits);
        let params = self.iscsi(&raw.iscsi);
        let discovery_chap = raw
            .discovery_chap
            .as_ref()
            .and_then(|c| self.chap(c, "server.discovery_chap"));
        let data_dir = match &raw.data_dir {
            Some(d) if d.is_empty() => {
                self.err("server.data_dir", "is empty");
                PathBuf::new()
            }
            Some(d) => source.base_dir.join(d),
            None => source.base_dir.join(DEFAULT_STATE_DIR),
        };
        let log_level = raw.log_level.clone();
        if let Some(level) = &log_level
            && let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level)
        {
            self.err(
                "server.log_level",
                format!("{level:?} is not a log filter: {e}"),
            );
        }
        let metrics = raw.metrics_address.as_ref().and_then(|a| {
            a.parse::<SocketAddr>()
                .map_err(|e| {
                    self.err(
                        "server.metrics_address",
                        format!("{a:?} is not an address:port: {e}"),
                    )
                })
                .ok()
        });
        ServerPlan {
            data_dir,
            log_level,
            metrics,
            portals,
            limits,
            params,
            discovery_chap,
        }
    }

    fn portals(&mut self, raw: &RawServer) -> Vec<PortalConfig> {
        let Some(list) = &raw.portal else {
            let addr = DEFAULT_PORTAL
                .parse()
                .expect("constant portal address parses");
            return vec![PortalConfig { addr, group_tag: 1 }];
        };
        if list.is_empty() {
            self.err(
                "server.portal",
                "is empty; omit it to listen on 0.0.0.0:3260",
            );
        }
        let mut out: Vec<PortalConfig> = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let key = format!("server.portal[{i}]");
            let addr = parse_addr(&p.address);
            let group = p.group.unwrap_or(1);
            if !(1..=MAX_PORTAL_GROUP).contains(&group) {
                self.err(
                    format!("{key}.group"),
                    format!("{group} is not in 1..={MAX_PORTAL_GROUP}"),
                );
            }
            match addr {
                Err(reason) => self.err(format!("{key}.address"), reason),
                Ok(addr) if out.iter().any(|o| o.addr == addr) => {
                    self.err(format!("{key}.address"), format!("{addr} is listed twice"))
                }
                Ok(addr) => out.push(PortalConfig {
                    addr,
                    group_tag: group.min(MAX_PORTAL_GROUP) as u16,
                }),
            }
        }
        out
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        let d = Limits::default();
        let l = Limits {
            max_sessions: raw.max_sessions.unwrap_or(d.max_sessions),
            max_sessions_per_target: raw
                .max_sessions_per_target
                .unwrap_or(d.max_sessions_per_target),
            login_timeout_ms: raw.login_timeout_ms.unwrap_or(d.login_timeout_ms),
            max_cmds_per_session: raw.max_cmds_per_session.unwrap_or(d.max_cmds_per_session),
            nop_in_interval_ms: raw.nop_in_interval_ms.unwrap_or(d.nop_in_interval_ms),
            nop_in_timeout_ms: raw.nop_in_timeout_ms.unwrap_or(d.nop_in_timeout_ms),
            max_login_connections: raw.max_login_connections.unwrap_or(d.max_login_connections),
        };
        let k = "server.limits";
        let sessions_ok = (1..=MAX_SESSIONS).contains(&l.max_sessions);
        if !sessions_ok {
            self.err(
                format!("{k}.max_sessions"),
                format!("{} is not in 1..={MAX_SESSIONS}", l.max_sessions),
            );
        }
        // Compared only against a valid max_sessions, so one mistake gives one error.
        let bound = if sessions_ok {
            l.max_sessions
        } else {
            MAX_SESSIONS
        };
        if l.max_sessions_per_target == 0 || l.max_sessions_per_target > bound {
            self.err(
                format!("{k}.max_sessions_per_target"),
                format!(
                    "{} is not in 1..=max_sessions ({})",
                    l.max_sessions_per_target, l.max_sessions
                ),
            );
        }
        if !LOGIN_TIMEOUT_MS.contains(&l.login_timeout_ms) {
            self.err(
                format!("{k}.login_timeout_ms"),
                range_msg(l.login_timeout_ms, &LOGIN_TIMEOUT_MS),
            );
        }
        if !(1..=MAX_CMDS_PER_SESSION).contains(&l.max_cmds_per_session) {
            self.err(
                format!("{k}.max_cmds_per_session"),
                format!(
                    "{} is not in 1..={MAX_CMDS_PER_SESSION}",
                    l.max_cmds_per_session
                ),
            );
        }
        if l.nop_in_interval_ms != 0 && !NOP_IN_INTERVAL_MS.contains(&l.nop_in_interval_ms) {
            self.err(
                format!("{k}.nop_in_interval_ms"),
                format!(
                    "{} (0 disables pings)",
                    range_msg(l.nop_in_interval_ms, &NOP_IN_INTERVAL_MS)
                ),
            );
        }
        if !NOP_IN_TIMEOUT_MS.contains(&l.nop_in_timeout_ms) {
            self.err(
                format!("{k}.nop_in_timeout_ms"),
                range_msg(l.nop_in_timeout_ms, &NOP_IN_TIMEOUT_MS),
            );
        }
        if !(1..=MAX_LOGIN_CONNECTIONS).contains(&l.max_login_connections) {
            self.err(
                format!("{k}.max_login_connections"),
                format!(
                    "{} is not in 1..={MAX_LOGIN_CONNECTIONS}",
                    l.max_login_connections
                ),
            );
        }
        l
    }

    fn data_length(&mut self, raw: &Option<RawSize>, key: &str, default: u32) -> u32 {
        let Some(raw) = raw else { return default };
        let key = format!("server.iscsi.{key}");
        match size_value(raw) {
            Err(e) => {
                self.err(key, e);
                default
            }
            Ok(n) if !DATA_LENGTH_RANGE.contains(&n) => {
                self.err(
                    key,
                    format!(
                        "{} (RFC 7143 13.12-13.14)",
                        range_msg(n, &DATA_LENGTH_RANGE)
                    ),
                );
                default
            }
            Ok(n) => n as u32,
        }
    }

    fn iscsi(&mut self, raw: &RawIscsi) -> TargetParams {
        let d = TargetParams::default();
        let p = TargetParams {
            max_recv_data_segment_length: self.data_length(
                &raw.max_recv_data_segment_length,
                "max_recv_data_segment_length",
                d.max_recv_data_segment_length,
            ),
            max_burst_length: self.data_length(
                &raw.max_burst_length,
                "max_burst_length",
                d.max_burst_length,
            ),
            first_burst_length: self.data_length(
                &raw.first_burst_length,
                "first_burst_length",
                d.first_burst_length,
            ),
            max_outstanding_r2t: raw.max_outstanding_r2t.unwrap_or(d.max_outstanding_r2t),
            immediate_data: raw.immediate_data.unwrap_or(d.immediate_data),
            initial_r2t: raw.initial_r2t.unwrap_or(d.initial_r2t),
            header_digest_crc32c: raw.header_digest.unwrap_or(d.header_digest_crc32c),
            data_digest_crc32c: raw.data_digest.unwrap_or(d.data_digest_crc32c),
            default_time2wait: raw.default_time2wait.unwrap_or(d.default_time2wait),
            default_time2retain: raw.default_time2retain.unwrap_or(d.default_time2retain),
            zero_copy_reads: raw.zero_copy_reads.unwrap_or(d.zero_copy_reads),
        };
        let k = "server.iscsi";
        // RFC 7143 13.14: FirstBurstLength MUST NOT exceed MaxBurstLength.
        if p.first_burst_length > p.max_burst_length {
            self.err(
                format!("{k}.first_burst_length"),
                format!(
                    "{} exceeds max_burst_length {} (RFC 7143 13.14)",
                    p.first_burst_length, p.max_burst_length
                ),
            );
        }
        if !MAX_OUTSTANDING_R2T_RANGE.contains(&p.max_outstanding_r2t) {
            self.err(
                format!("{k}.max_outstanding_r2t"),
                format!(
                    "{} is not in 1..=65535 (RFC 7143 13.17)",
                    p.max_outstanding_r2t
                ),
            );
        }
        for (name, v) in [
            ("default_time2wait", p.default_time2wait),
            ("default_time2retain", p.default_time2retain),
        ] {
            if !TIME2_RANGE.contains(&v) {
                self.err(
                    format!("{k}.{name}"),
                    format!("{v} seconds is not in 0..=3600 (RFC 7143 13.15, 13.16)"),
                );
            }
        }
        p
    }

    fn chap(&mut self, raw: &RawChap, key: &str) -> Option<Chap> {
        let before = self.errors.len();
        self.chap_name(&raw.user, &format!("{key}.user"));
        self.chap_secret(&raw.secret, &format!("{key}.secret"));
        let mutual = match (&raw.mutual_user, &raw.mutual_secret) {
            (None, None) => None,
            (Some(_), None) => {
                self.err(
                    format!("{key}.mutual_secret"),
                    "is missing; mutual CHAP needs mutual_user and mutual_secret",
                );
                None
            }
            (None, Some(_)) => {
                self.err(
                    format!("{key}.mutual_user"),
                    "is missing; mutual CHAP needs mutual_user and mutual_secret",
                );
                None
            }
            (Some(u), Some(s)) => {
                self.chap_name(u, &format!("{key}.mutual_user"));
                self.chap_secret(s, &format!("{key}.mutual_secret"));
                // One secret for both directions lets an attacker who impersonates the
                // target learn the answer the initiator would accept (RFC 7143, CHAP).
                if s == &raw.secret {
                    self.err(format!("{key}.mutual_secret"), "must differ from secret");
                }
                Some((u.clone(), s.as_bytes().to_vec()))
            }
        };
        (self.errors.len() == before).then(|| Chap {
            user: raw.user.clone(),
            secret: raw.secret.as_bytes().to_vec(),
            mutual,
        })
    }

    /// RFC 7143 12.1.3: a secret that authenticates initiators must not authenticate the
    /// target anywhere, or a peer could have one side compute the other side's proof.
    /// `chap()` checks this within one block; this checks across all of them.
    fn secrets_not_shared(&mut self, raw: &RawConfig) {
        let blocks: Vec<(String, &RawChap)> =
            raw.server
                .discovery_chap
                .iter()
                .map(|c| ("server.discovery_chap".to_owned(), c))
                .chain(
                    raw.target.iter().enumerate().filter_map(|(i, t)| {
                        t.chap.as_ref().map(|c| (format!("target[{i}].chap"), c))
                    }),
                )
                .collect();
        for (key, c) in &blocks {
            let Some(mutual) = &c.mutual_secret else {
                continue;
            };
            let clash = blocks.iter().find(|(k, other)| {
                k != key && constant_time_eq(other.secret.as_bytes(), mutual.as_bytes())
            });
            if let Some((other_key, _)) = clash {
                self.err(
                    format!("{key}.mutual_secret"),
                    format!(
                        "must differ from {other_key}.secret: a secret that authenticates \
                         initiators must not authenticate the target (RFC 7143 12.1.3)"
                    ),
                );
            }
        }
    }

    fn chap_name(&mut self, name: &str, key: &str) {
        if name.is_empty() {
            self.err(key, "is empty");
        } else if name.len() > CHAP_NAME_MAX_LEN {
            self.err(
                key,
                format!("is {} bytes long; at most {CHAP_NAME_MAX_LEN}", name.len()),
            );
        } else if name.chars().any(|c| c.is_control()) {
            self.err(key, "contains a control character");
        }
    }

    /// Never echoes the secret, not even in an error.
    fn chap_secret(&mut self, secret: &str, key: &str) {
        let n = secret.len();
        if n < CHAP_SECRET_MIN_LEN {
            self.err(
                key,
                format!(
                    "is {n} bytes long; CHAP secrets must be at least {CHAP_SECRET_MIN_LEN} bytes \
                     (RFC 7143 recommends 96 bits or more against offline dictionary attacks)"
                ),
            );
        } else if n > CHAP_SECRET_MAX_LEN {
            self.err(
                key,
                format!("is {n} bytes long; at most {CHAP_SECRET_MAX_LEN}"),
            );
        }
    }

    fn devices(&mut self, raw: &[RawDevice], source: &Source) -> Vec<DevicePlan> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut paths: HashMap<PathBuf, usize> = HashMap::new();
        let mut serials: HashMap<&str, usize> = HashMap::new();
        let mut naas: HashMap<[u8; 16], usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, d) in raw.iter().enumerate() {
            let key = format!("device[{i}]");
            if let Err(reason) = validate_object_name(&d.name) {
                self.err(format!("{key}.name"), format!("{:?} {reason}", d.name));
            } else if let Some(first) = names.insert(&d.name, i) {
                self.err(
                    format!("{key}.name"),
                    format!("{:?} is already the name of device[{first}]", d.name),
                );
                names.insert(&d.name, first);
            }
            let Some(plan) = self.device(d, &key, source) else {
                continue;
            };
            if let Backend::File { path, .. } | Backend::BlockDev { path } = &plan.spec.backend
                && let Some(first) = paths.insert(path.clone(), i)
            {
                self.err(
                        format!("{key}.path"),
                        format!("{} is already used by device[{first}]; map one device in several places instead", path.display()),
                    );
            }
            if let Some(s) = &d.serial
                && let Some(first) = serials.insert(s, i)
            {
                self.err(
                    format!("{key}.serial"),
                    format!("{s:?} is already the serial of device[{first}]"),
                );
            }
            if let Some(n) = plan.overrides.naa
                && let Some(first) = naas.insert(n, i)
            {
                self.err(
                    format!("{key}.naa"),
                    format!("is already the NAA of device[{first}]"),
                );
            }
            out.push(plan);
        }
        out
    }

    fn device(&mut self, d: &RawDevice, key: &str, source: &Source) -> Option<DevicePlan> {
        let before = self.errors.len();
        let cdrom = d.kind == DeviceType::Cdrom;
        let block_size = d
            .block_size
            .unwrap_or(if cdrom { OPTICAL_BLOCK_SIZE } else { 512 });
        if !cdrom && !SUPPORTED_BLOCK_SIZES.contains(&block_size) {
            self.err(
                format!("{key}.block_size"),
                format!("{block_size} is not 512 or 4096"),
            );
        }
        let lbppb_exponent = self.physical_block_size(d, key, block_size);
        let sanitize_rate = match &d.sanitize_rate {
            None => 0,
            Some(raw) => {
                match size_value(raw) {
                    Ok(n) if n >= MIN_SANITIZE_RATE => n,
                    Ok(n) => {
                        self.err(
                        format!("{key}.sanitize_rate"),
                        format!("{n} bytes per second is below the minimum of {MIN_SANITIZE_RATE} (1M)"),
                    );
                        0
                    }
                    Err(e) => {
                        self.err(format!("{key}.sanitize_rate"), e);
                        0
                    }
                }
            }
        };
        let ty = d.kind.as_str();
        let size = match &d.size {
            None => None,
            Some(raw) => match size_value(raw) {
                Err(e) => {
                    self.err(format!("{key}.size"), e);
                    None
                }
                Ok(0) => {
                    self.err(format!("{key}.size"), "is zero");
                    None
                }
                Ok(n) if !n.is_multiple_of(u64::from(block_size)) => {
                    self.err(
                        format!("{key}.size"),
                        format!("{n} bytes is not a multiple of the block size {block_size}"),
                    );
                    None
                }
                Ok(n) => Some(n),
            },
        };
        let path = match (&d.path, d.kind) {
            (Some(p), DeviceType::File | DeviceType::Blockdev | DeviceType::Cdrom)
                if p.is_empty() =>
            {
                self.err(format!("{key}.path"), "is empty");
                None
            }
            (Some(p), DeviceType::File | DeviceType::Blockdev | DeviceType::Cdrom) => {
                Some(source.base_dir.join(p))
            }
            (None, DeviceType::File | DeviceType::Blockdev | DeviceType::Cdrom) => {
                self.err(
                    format!("{key}.path"),
                    format!("is required for type \"{ty}\""),
                );
                None
            }
            (Some(_), _) => {
                self.err(
                    format!("{key}.path"),
                    format!("is not allowed for type \"{ty}\""),
                );
                None
            }
            (None, _) => None,
        };
        match (d.kind, &d.size) {
            (DeviceType::Blockdev, Some(_)) => self.err(
                format!("{key}.size"),
                "is not allowed for type \"blockdev\"; the device's size is used",
            ),
            (DeviceType::Cdrom, Some(_)) => self.err(
                format!("{key}.size"),
                "is not allowed for type \"cdrom\"; the image's size is used",
            ),
            (DeviceType::Ram | DeviceType::Null, None) => self.err(
                format!("{key}.size"),
                format!("is required for type \"{ty}\""),
            ),
            _ => {}
        }
        if cdrom {
            self.cdrom(d, key, block_size);
        }
        let overrides = self.overrides(d, key);
        if self.errors.len() != before {
            return None;
        }
        let backend = match d.kind {
            DeviceType::File => Backend::File {
                path: path?,
                size_bytes: size,
            },
            DeviceType::Blockdev => Backend::BlockDev { path: path? },
            DeviceType::Ram => Backend::Ram { size_bytes: size? },
            DeviceType::Null => Backend::Null { size_bytes: size? },
            // Opened read-only, never created; `graph` sizes it from the file.
            DeviceType::Cdrom => Backend::File {
                path: path?,
                size_bytes: None,
            },
        };
        Some(DevicePlan {
            name: d.name.clone(),
            identity_key: d.name.clone(),
            kind: d.kind,
            spec: DeviceSpec {
                backend,
                block_size,
                read_only: cdrom || d.read_only.unwrap_or(false),
                rotational: d.rotational,
            },
            write_cache: d.cache.unwrap_or(CacheMode::WriteBack) == CacheMode::WriteBack,
            thin: d.thin.unwrap_or(false),
            removable: cdrom || d.removable.unwrap_or(false),
            lbppb_exponent,
            sanitize_rate,
            overrides,
        })
    }

    /// `physical_block_size`: a power of two from the logical block size up to
    /// [`MAX_PHYSICAL_BLOCK_SIZE`]; returns log2(physical / logical) (SBC-3 5.16.2 LBPPBE).
    fn physical_block_size(&mut self, d: &RawDevice, key: &str, block_size: u32) -> u8 {
        let Some(pbs) = d.physical_block_size else {
            return 0;
        };
        let reason = if !pbs.is_power_of_two() {
            format!("{pbs} is not a power of two")
        } else if pbs < block_size {
            format!("{pbs} is smaller than the block size {block_size}")
        } else if pbs > MAX_PHYSICAL_BLOCK_SIZE {
            format!("{pbs} is larger than {MAX_PHYSICAL_BLOCK_SIZE}")
        } else {
            return (pbs / block_size.max(1)).trailing_zeros() as u8;
        };
        self.err(format!("{key}.physical_block_size"), reason);
        0
    }

    /// A CD-ROM is a read-only, removable disc image with 2048-byte blocks (MMC-6 4.2.3):
    /// settings that say otherwise are refused rather than silently ignored.
    fn cdrom(&mut self, d: &RawDevice, key: &str, block_size: u32) {
        if block_size != OPTICAL_BLOCK_SIZE {
            self.err(
                format!("{key}.block_size"),
                format!("{block_size}: a \"cdrom\" has {OPTICAL_BLOCK_SIZE}-byte blocks"),
            );
        }
        for (name, refused) in [
            ("read_only", d.read_only == Some(false)),
            ("removable", d.removable == Some(false)),
            ("thin", d.thin == Some(true)),
            ("physical_block_size", d.physical_block_size.is_some()),
        ] {
            if refused {
                self.err(
                    format!("{key}.{name}"),
                    "cannot be set this way for type \"cdrom\" (a read-only, removable disc)",
                );
            }
        }
    }

    fn overrides(&mut self, d: &RawDevice, key: &str) -> IdentityOverrides {
        for (name, value, max) in [
            ("vendor", &d.vendor, 8),
            ("product", &d.product, 16),
            ("revision", &d.revision, 4),
            ("serial", &d.serial, 32),
        ] {
            if let Some(v) = value
                && let Err(reason) = check_t10_ascii(v, max)
            {
                self.err(
                    format!("{key}.{name}"),
                    format!("{v:?} {reason} (SPC-4 6.6.2, 7.8.15)"),
                );
            }
        }
        let naa = d.naa.as_ref().and_then(|text| match parse_naa(text) {
            Ok(n) => Some(n),
            Err(reason) => {
                self.err(format!("{key}.naa"), format!("{text:?} {reason}"));
                None
            }
        });
        IdentityOverrides {
            vendor: d.vendor.clone(),
            product: d.product.clone(),
            revision: d.revision.clone(),
            serial: d.serial.clone(),
            naa,
        }
    }

    fn targets(
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

    fn target_portals(
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

    fn groups(
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

    fn luns(&mut self, raw: &[RawLun], key: &str, devices: &HashMap<&str, usize>) -> LunPlan {
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

/// SPC-4 INQUIRY strings: printable ASCII, at most `max` bytes, no surrounding spaces
/// (the engine pads them).
fn check_t10_ascii(v: &str, max: usize) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".into());
    }
    if v.len() > max {
        return Err(format!("is {} bytes long; at most {max}", v.len()));
    }
    if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("must be printable ASCII".into());
    }
    if v.trim() != v {
        return Err("has leading or trailing spaces".into());
    }
    Ok(())
}

/// Parses an NAA IEEE Registered Extended designator: 32 hex digits, first digit 6
/// (SPC-4 7.8.6.6.5).
pub fn parse_naa(text: &str) -> Result<[u8; 16], String> {
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be 32 hex digits".into());
    }
    if !hex.starts_with('6') {
        return Err("must start with 6 (NAA IEEE Registered Extended, SPC-4 7.8.6.6.5)".into());
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Formats an NAA designator as 32 lower-case hex digits.
pub fn format_naa(naa: &[u8; 16]) -> String {
    naa.iter().map(|b| format!("{b:02x}")).collect()
}

/// Human form of a device's size for logs.
pub fn describe_size(spec: &DeviceSpec) -> String {
    match &spec.backend {
        Backend::File {
            size_bytes: Some(n),
            ..
        }
        | Backend::Ram { size_bytes: n }
        | Backend::Null { size_bytes: n } => HumanSize(*n).to_string(),
        _ => "device size".into(),
    }
}

#[cfg(test)]
mod security_tests {
    use super::*;

    fn check(text: &str) -> Result<Plan, ConfigError> {
        let raw = super::super::parse(text, "t.toml").expect("parses");
        validate(&raw, &Source::file(Path::new("/etc/esos/t.toml")))
    }

    const BASE: &str = r#"
[[device]]
name = "d0"
type = "ram"
size = "1M"
"#;

    fn target(i: usize, chap: &str) -> String {
        format!(
            "[[target]]\nname = \"iqn.2026-11.org.esos:t{i}\"\ndefault_luns = [{{ lun = 0, device = \"d0\" }}]\nchap = {chap}\n"
        )
    }

    #[test]
    fn mutual_secret_reused_as_another_blocks_initiator_secret_is_refused() {
        let a = target(
            0,
            r#"{ user = "u0", secret = "initiator-secret-0", mutual_user = "t0", mutual_secret = "shared-secret-000" }"#,
        );
        let b = target(1, r#"{ user = "u1", secret = "shared-secret-000" }"#);
        let e = check(&format!("{BASE}{a}{b}")).unwrap_err().to_string();
        assert!(e.contains("target[0].chap.mutual_secret"), "{e}");
        assert!(e.contains("target[1].chap.secret"), "{e}");
        assert!(!e.contains("shared-secret-000"), "secret leaked: {e}");
        // Distinct secrets pass.
        let b = target(1, r#"{ user = "u1", secret = "other-secret-0001" }"#);
        check(&format!("{BASE}{a}{b}")).unwrap();
    }

    #[test]
    fn discovery_secret_reused_as_mutual_secret_is_refused() {
        let disc = r#"
[server.discovery_chap]
user = "d"
secret = "discovery-secret-1"
"#;
        let a = target(
            0,
            r#"{ user = "u0", secret = "initiator-secret-0", mutual_user = "t0", mutual_secret = "discovery-secret-1" }"#,
        );
        let e = check(&format!("{disc}{BASE}{a}")).unwrap_err().to_string();
        assert!(e.contains("server.discovery_chap.secret"), "{e}");
    }

    #[test]
    fn login_connection_limit_is_bounded() {
        let ok = check(&format!(
            "[server.limits]\nmax_login_connections = 16\n{BASE}{}",
            target(0, "{ user = \"u\", secret = \"0123456789abc\" }")
        ))
        .unwrap();
        assert_eq!(ok.limits.max_login_connections, 16);
        let e = check(&format!(
            "[server.limits]\nmax_login_connections = 0\n{BASE}{}",
            target(0, "{ user = \"u\", secret = \"0123456789abc\" }")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("server.limits.max_login_connections"), "{e}");
    }
}
