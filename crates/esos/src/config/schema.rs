//! The TOML schema, exactly as written by the administrator. Nothing here is validated
//! beyond types: [`super::validate`] turns it into a [`super::Plan`] or precise errors.
//! Every struct denies unknown keys so a typo never silently falls back to a default.

use std::fmt;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub device: Vec<RawDevice>,
    #[serde(default)]
    pub target: Vec<RawTarget>,
    /// The management API on TCP; `None` = the unix socket only.
    pub api: Option<RawApi>,
    /// High availability: the nodes this one replicates with; `None` = a single node.
    pub cluster: Option<RawCluster>,
}

/// `[cluster]`: the same section on every node of a replication cluster, except `node`
/// (which `esos --node NAME` or `ESOS_NODE` may give instead).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: String,
    /// This node: one of the members.
    pub node: Option<String>,
    /// Promote a secondary on its own when the primary is lost (through the quorum);
    /// false when Pacemaker decides (default true).
    pub auto_promote: Option<bool>,
    /// Primary lease in milliseconds (default 1500).
    pub lease_ms: Option<u64>,
    /// How long I/O waits for the quorum or a peer before it fails (default 5000 ms).
    pub io_timeout_ms: Option<u64>,
    #[serde(default)]
    pub member: Vec<RawMember>,
    pub witness: Option<RawWitness>,
}

/// `[[cluster.member]]`: a node that holds data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMember {
    pub name: String,
    /// `IP:port` of its cluster listener (replication and quorum).
    pub address: String,
    /// Its iSCSI portal group tags: its ALUA target port group.
    pub portal_groups: Vec<u32>,
}

/// `[cluster.witness]`: a voter without data (`esos witness`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWitness {
    pub name: String,
    pub address: String,
}

/// `[api]`: the management API on TCP with TLS and bearer tokens, beside the unix socket
/// (which is always served and needs no token).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `IP:port` addresses; `None` = no TCP listener.
    pub listen: Option<Vec<String>>,
    /// PEM certificate chain, leaf first.
    pub tls_certificate: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<String>,
    #[serde(default)]
    pub token: Vec<RawApiToken>,
}

/// `[[api.token]]`: a bearer token known only by its SHA-256 digest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiToken {
    pub name: String,
    pub role: RawApiRole,
    /// Hex SHA-256 of the token (`esos api token-hash`).
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawApiRole {
    Admin,
    ReadOnly,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `None` = one portal on 0.0.0.0:3260.
    pub portal: Option<Vec<RawPortal>>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub iscsi: RawIscsi,
    pub discovery_chap: Option<RawChap>,
    pub data_dir: Option<String>,
    pub log_level: Option<String>,
    /// Address of the Prometheus `/metrics` listener (TCP); `None` = no listener (the API
    /// socket serves `/metrics` too).
    pub metrics_address: Option<String>,
    /// Asymmetric logical unit access; `None` = every portal group its own
    /// active/optimized target port group, implicit ALUA.
    pub alua: Option<RawAlua>,
}

/// `[server.alua]`: target port groups over the portal groups (SPC-4 5.16).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlua {
    pub mode: Option<RawAluaMode>,
    #[serde(default)]
    pub group: Vec<RawPortGroup>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawAluaMode {
    Implicit,
    Explicit,
    Both,
}

/// Access states an administrator may configure (transitioning is the target's own).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawAccessState {
    ActiveOptimized,
    ActiveNonOptimized,
    Standby,
    Unavailable,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortGroup {
    pub id: u32,
    pub state: Option<RawAccessState>,
    pub portal_groups: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortal {
    pub address: String,
    pub group: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_sessions: Option<u32>,
    pub max_sessions_per_target: Option<u32>,
    pub login_timeout_ms: Option<u64>,
    pub max_cmds_per_session: Option<u32>,
    pub nop_in_interval_ms: Option<u64>,
    pub nop_in_timeout_ms: Option<u64>,
    pub max_login_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIscsi {
    pub max_recv_data_segment_length: Option<RawSize>,
    pub max_burst_length: Option<RawSize>,
    pub first_burst_length: Option<RawSize>,
    pub max_outstanding_r2t: Option<u32>,
    pub immediate_data: Option<bool>,
    pub initial_r2t: Option<bool>,
    pub header_digest: Option<bool>,
    pub data_digest: Option<bool>,
    pub default_time2wait: Option<u32>,
    pub default_time2retain: Option<u32>,
    pub zero_copy_reads: Option<bool>,
}

/// A size given either as a TOML integer (bytes) or as a string with a unit.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    File,
    Blockdev,
    Ram,
    Null,
    /// A read-only CD/DVD-ROM exported from a disc image (ISO) file.
    Cdrom,
    /// A device replicated to the other cluster members over a local `backing` device.
    Replicated,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::File => "file",
            DeviceType::Blockdev => "blockdev",
            DeviceType::Ram => "ram",
            DeviceType::Null => "null",
            DeviceType::Cdrom => "cdrom",
            DeviceType::Replicated => "replicated",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum CacheMode {
    #[serde(rename = "write-back")]
    WriteBack,
    #[serde(rename = "write-through")]
    WriteThrough,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: DeviceType,
    pub path: Option<String>,
    pub size: Option<RawSize>,
    pub block_size: Option<u32>,
    /// Physical block size in bytes reported to initiators (LBPPB in READ CAPACITY(16)).
    pub physical_block_size: Option<u32>,
    /// Most bytes per second a SANITIZE writes (size per second; default unlimited).
    pub sanitize_rate: Option<RawSize>,
    pub read_only: Option<bool>,
    pub cache: Option<CacheMode>,
    pub rotational: Option<bool>,
    /// Thin provisioning: UNMAP / WRITE SAME release storage (default false).
    pub thin: Option<bool>,
    /// Removable medium (RMB): initiators may eject and load it (default false; a CD-ROM
    /// always is).
    pub removable: Option<bool>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub revision: Option<String>,
    pub serial: Option<String>,
    pub naa: Option<String>,
    /// `replicated` only: the local device holding this node's copy.
    pub backing: Option<String>,
    /// `replicated` only: most bytes per second a resync copies (default unlimited).
    pub resync_rate: Option<RawSize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: String,
    pub alias: Option<String>,
    pub enabled: Option<bool>,
    pub portals: Option<Vec<String>>,
    pub chap: Option<RawChap>,
    #[serde(default)]
    pub group: Vec<RawGroup>,
    pub default_luns: Option<Vec<RawLun>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: String,
    pub initiators: Vec<String>,
    #[serde(default)]
    pub luns: Vec<RawLun>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLun {
    pub lun: u64,
    pub device: String,
}

/// CHAP as written. Debug never prints the secrets.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChap {
    pub user: String,
    pub secret: String,
    pub mutual_user: Option<String>,
    pub mutual_secret: Option<String>,
}

impl fmt::Debug for RawChap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawChap")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .field("mutual_user", &self.mutual_user)
            .field(
                "mutual_secret",
                &self.mutual_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
