//! The validated configuration: every value checked, every reference resolved to an index.
//! Building the running object graph from a [`Plan`] cannot fail for a config reason, only
//! for I/O (a device that cannot be opened, a port that cannot be bound).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use esos_block::DeviceSpec;
use esos_iscsi::login::ChapCredentials;
use esos_iscsi::params::TargetParams;
use esos_iscsi::server::{Limits, PortalConfig};

use esos_replica::NodeName;

use super::schema::DeviceType;

#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the config came from (a file name, "command line", "built-in default").
    pub source: String,
    /// Directory holding `identity.toml`.
    pub data_dir: PathBuf,
    /// Log filter from the config; the command line and `RUST_LOG` take precedence.
    pub log_level: Option<String>,
    /// Where Prometheus scrapes `/metrics` over TCP (`server.metrics_address`).
    pub metrics: Option<SocketAddr>,
    /// The management API on TCP (`[api]`); empty `listen` = the unix socket only.
    pub api: ApiPlan,
    pub portals: Vec<PortalConfig>,
    pub limits: Limits,
    pub params: TargetParams,
    pub discovery_chap: Option<Chap>,
    /// ALUA mode and target port groups; every portal group tag is in exactly one group.
    pub alua: AluaPlan,
    /// Every device a LUN may map. The backing device of a replicated device is not
    /// here: it lives in its replicated device's [`ReplicaPlan`].
    pub devices: Vec<DevicePlan>,
    pub targets: Vec<TargetPlan>,
    /// `[cluster]`: present when this node replicates devices with others.
    pub cluster: Option<ClusterPlan>,
    /// Accepted but suspicious settings, logged once logging is up.
    pub warnings: Vec<String>,
}

/// Validated `[cluster]`: this node is one of 2 or 3 members, member portal groups are
/// disjoint, and this node's `server.portal` groups are exactly its member's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    pub name: String,
    pub me: NodeName,
    pub auto_promote: bool,
    pub lease_ms: u64,
    pub io_timeout_ms: u64,
    /// In config order, this node among them.
    pub members: Vec<MemberPlan>,
    pub witness: Option<(NodeName, SocketAddr)>,
}

/// One data node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlan {
    pub name: NodeName,
    /// Its cluster listener.
    pub address: SocketAddr,
    /// Its iSCSI portal group tags, in config order; the first is its ALUA group id.
    pub portal_groups: Vec<u16>,
}

impl ClusterPlan {
    /// This node's member entry.
    pub fn my_member(&self) -> &MemberPlan {
        self.members
            .iter()
            .find(|m| m.name == self.me)
            .expect("validation keeps this node among the members")
    }

    /// The other data nodes with their cluster addresses.
    pub fn peers(&self) -> Vec<(NodeName, SocketAddr)> {
        self.members
            .iter()
            .filter(|m| m.name != self.me)
            .map(|m| (m.name.clone(), m.address))
            .collect()
    }

    /// Every voter: the members (this node included), then the witness.
    pub fn voters(&self) -> Vec<(NodeName, SocketAddr)> {
        self.members
            .iter()
            .map(|m| (m.name.clone(), m.address))
            .chain(self.witness.clone())
            .collect()
    }
}

/// What makes a device replicated: its local copy and how fast it resyncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaPlan {
    /// The cluster name: with the device name, it derives the LU identity.
    pub cluster: String,
    /// The local device holding this node's copy (a file or block device).
    pub backing: Box<DevicePlan>,
    /// Bytes per second; 0 = unlimited.
    pub resync_rate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    pub name: String,
    /// Key of this device's entry in `identity.toml` (the device name for config files).
    pub identity_key: String,
    pub kind: DeviceType,
    pub spec: DeviceSpec,
    /// Initial WCE (write-back cache).
    pub write_cache: bool,
    /// Thin provisioning exposed to initiators (LBPME, UNMAP).
    pub thin: bool,
    /// Removable medium (RMB 1): START STOP UNIT LOEJ and PREVENT ALLOW MEDIUM REMOVAL.
    pub removable: bool,
    /// log2(physical block size / logical block size), from `physical_block_size`.
    pub lbppb_exponent: u8,
    /// Bytes per second a SANITIZE may write; 0 = unlimited.
    pub sanitize_rate: u64,
    pub overrides: IdentityOverrides,
    /// Set for `type = "replicated"`; `spec` is then the backing device's spec.
    pub replica: Option<ReplicaPlan>,
}

/// Identity values given explicitly in the config; the rest come from the identity store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityOverrides {
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub revision: Option<String>,
    pub serial: Option<String>,
    pub naa: Option<[u8; 16]>,
}

/// Validated `[api]`. When `listen` is not empty, `tls` is set and `tokens` is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiPlan {
    pub listen: Vec<SocketAddr>,
    pub tls: Option<ApiTls>,
    pub tokens: Vec<ApiToken>,
}

/// PEM files of the API's TLS identity, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// One accepted bearer token: only its digest is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub role: ApiRole,
    pub sha256: [u8; 32],
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRole {
    /// Everything the unix socket allows.
    Admin,
    /// GET and HEAD only: reads never change state.
    ReadOnly,
}

impl ApiRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Admin => "admin",
            ApiRole::ReadOnly => "read-only",
        }
    }
}

/// Validated `[server.alua]`: the groups hold portal group tags as relative port ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AluaPlan {
    pub mode: esos_scsi::alua::AluaMode,
    pub groups: Vec<esos_scsi::alua::GroupSpec>,
}

/// LUN number → index into [`Plan::devices`].
pub type LunPlan = Vec<(u64, usize)>;

#[derive(Debug, Clone)]
pub struct TargetPlan {
    pub name: String,
    pub alias: Option<String>,
    pub enabled: bool,
    /// Empty = every portal.
    pub portals: Vec<SocketAddr>,
    pub chap: Option<Chap>,
    pub groups: Vec<GroupPlan>,
    pub default_luns: Option<LunPlan>,
}

#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub name: String,
    /// Normalised (lower-case) initiator names.
    pub initiators: Vec<String>,
    pub luns: LunPlan,
}

/// Validated CHAP credentials. Debug never shows the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Chap {
    pub user: String,
    pub secret: Vec<u8>,
    pub mutual: Option<(String, Vec<u8>)>,
}

impl fmt::Debug for Chap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chap")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .field("mutual_user", &self.mutual.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Chap {
    pub fn to_credentials(&self) -> ChapCredentials {
        ChapCredentials {
            user: self.user.clone(),
            secret: self.secret.clone(),
            mutual: self.mutual.clone(),
        }
    }
}

impl Plan {
    /// Indices of the devices some enabled or disabled target maps, ascending.
    pub fn mapped_devices(&self) -> Vec<usize> {
        let mut used: Vec<usize> = self
            .targets
            .iter()
            .flat_map(|t| {
                t.groups
                    .iter()
                    .map(|g| &g.luns)
                    .chain(t.default_luns.iter())
            })
            .flat_map(|luns| luns.iter().map(|&(_, d)| d))
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    }
}
