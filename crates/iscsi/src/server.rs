//! The iSCSI runtime: portals, sessions and connections. (Interface; implementation to come.)

use std::future::Future;
use std::net::SocketAddr;

use esos_scsi::LunMap;

use crate::login::ChapCredentials;
use crate::params::TargetParams;

/// A listening address and the target portal group it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalConfig {
    pub addr: SocketAddr,
    /// Target portal group tag (1..=65535) reported at login and in SendTargets.
    pub group_tag: u16,
}

/// Initiators allowed into a target, and the LUNs they see (LUN masking).
#[derive(Debug, Clone)]
pub struct InitiatorGroup {
    pub name: String,
    /// iSCSI names of the initiators in this group (compared case-insensitively).
    pub initiators: Vec<String>,
    pub luns: LunMap,
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// iqn./eui./naa. name, validated by the config layer.
    pub name: String,
    pub alias: Option<String>,
    /// A disabled target refuses logins and is hidden from discovery.
    pub enabled: bool,
    /// Portals this target is reachable on; empty = every portal.
    pub portals: Vec<SocketAddr>,
    pub groups: Vec<InitiatorGroup>,
    /// LUNs for initiators in no group; `None` refuses them.
    pub default_luns: Option<LunMap>,
    /// CHAP the initiator must pass to log in to this target.
    pub chap: Option<ChapCredentials>,
}

/// Limits on everything a peer controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Sessions across all targets (discovery included).
    pub max_sessions: u32,
    /// Sessions per target.
    pub max_sessions_per_target: u32,
    /// A login that has not reached full feature phase within this time is dropped.
    pub login_timeout_ms: u64,
    /// Commands one session may have in flight (the CmdSN window, MaxCmdSN - ExpCmdSN + 1).
    pub max_cmds_per_session: u32,
    /// Idle time after which the target sends a NOP-In ping; 0 disables pings.
    pub nop_in_interval_ms: u64,
    /// A ping not answered within this time ends the connection.
    pub nop_in_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1024,
            max_sessions_per_target: 256,
            login_timeout_ms: 15_000,
            max_cmds_per_session: 128,
            nop_in_interval_ms: 15_000,
            nop_in_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub portals: Vec<PortalConfig>,
    pub targets: Vec<TargetConfig>,
    pub discovery_chap: Option<ChapCredentials>,
    pub params: TargetParams,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A bound server, ready to run.
pub struct Server {
    _private: (),
}

impl Server {
    /// Binds every portal; fails without side effects if any cannot be bound.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let _ = config;
        unimplemented!()
    }

    /// The bound addresses (ports resolved when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        unimplemented!()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight commands
    /// finish and closes every connection.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let _ = shutdown;
        unimplemented!()
    }
}
