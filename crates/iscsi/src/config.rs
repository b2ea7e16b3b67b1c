//! The server's configuration as the daemon hands it over: portals, targets with their
//! ACLs and LUN maps, negotiation defaults and limits. [`LiveConfig`] is the part that can
//! change while the server runs. Re-exported by [`crate::server`].

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
    /// A ping not answered within this time ends the connection. A socket write that makes
    /// no progress for this long (an initiator that stopped reading) ends it too.
    pub nop_in_timeout_ms: u64,
    /// Connections accepted but not yet in full feature phase. Beyond it new connections
    /// are closed at once, so half-open or slow logins cannot exhaust tasks and buffers
    /// before `login_timeout_ms` reaps them.
    pub max_login_connections: u32,
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
            max_login_connections: 128,
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

/// The part of the configuration that can change while the server runs
/// ([`crate::server::ServerHandle::set_live`]).
#[derive(Debug, Clone, Default)]
pub struct LiveConfig {
    pub targets: Vec<TargetConfig>,
    pub discovery_chap: Option<ChapCredentials>,
}

impl LiveConfig {
    /// Looks up a target by name; iSCSI names compare case-insensitively (RFC 3722).
    pub(crate) fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The LUN map `initiator` sees on `target`, or `None` when it may not log in.
    pub(crate) fn lun_map<'a>(target: &'a TargetConfig, initiator: &str) -> Option<&'a LunMap> {
        target
            .groups
            .iter()
            .find(|g| {
                g.initiators
                    .iter()
                    .any(|i| i.eq_ignore_ascii_case(initiator))
            })
            .map(|g| &g.luns)
            .or(target.default_luns.as_ref())
    }

    /// The map a session of `initiator` on `target` reached through `portal` has under
    /// this configuration; `None` when it would no longer be let in.
    pub(crate) fn session_map(
        &self,
        target: &str,
        initiator: &str,
        portal: &PortalConfig,
    ) -> Option<&LunMap> {
        let t = self.target(target)?;
        if !t.enabled || !target_on_portal(t, portal) {
            return None;
        }
        Self::lun_map(t, initiator)
    }
}

/// True when `target` is reachable through `portal`.
pub(crate) fn target_on_portal(target: &TargetConfig, portal: &PortalConfig) -> bool {
    target.portals.is_empty() || target.portals.contains(&portal.addr)
}
