//! The live object model: the running configuration, changed as a whole-file diff.
//!
//! Every change — `esos config apply`, an API call, a CLI verb — ends as a new config text
//! handed to [`Manager::apply`]: parsed and validated like a file at start-up, compared with
//! the running plan, applied to the running server (devices opened or closed, LUN maps and
//! targets swapped, sessions re-checked) and then written atomically to the config file.
//!
//! Order of an apply: the steps that can fail come first. Validation, preflight and
//! opening new devices change nothing visible (identities given to new devices are kept
//! when a later step fails, so a retry gets the same ones). Rebinding the portals is all or
//! nothing: every new portal is bound before any old one closes. Growing devices is the
//! last step that can fail; switching targets, LUN maps and sessions to the new
//! configuration cannot. A failed apply thus leaves the running configuration and the file
//! as they were, except after a failed grow: the portal change is undone but sessions on a
//! removed portal stay logged out, and devices grown before the failing one keep their new
//! size (a device never shrinks). A file that cannot be written at the end leaves the
//! change live but not persisted ([`ApplyError::Persist`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use esos_block::Backend;
use esos_common::sync::LockExt;
use esos_iscsi::server::{LiveConfig, ServerHandle};
use esos_lu::access::PortGroups;
use esos_scsi::LogicalUnit;
use serde::Serialize;

use crate::cluster::node::ClusterNode;
use crate::cluster::unit::ReplicatedUnit;
use crate::cluster::{Action, ReplicaActionError, ReplicaInfo, Replicas};
use crate::config::{self, DeviceType, LunPlan, Plan, Source};
use crate::graph;
use crate::identity::{self, IdentityStore};

/// Why a change was refused. The message names the offending field or object.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The new text does not parse or validate (line, column and key in the message).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A device of the new config cannot be opened or checked.
    #[error(transparent)]
    Device(#[from] crate::graph::GraphError),
    /// A change that cannot be made live (e.g. a portal address, the data directory).
    #[error("{field}: {reason}")]
    NotLive { field: String, reason: String },
    /// Removing or changing something still in use, without `force`.
    #[error("{object}: in use ({reason}); use force to do it anyway")]
    InUse { object: String, reason: String },
    /// The change was applied but the config file could not be written.
    #[error("applied, but {path} could not be written: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The identities of new devices could not be saved; nothing was changed.
    #[error("{0}; nothing was changed")]
    Identities(crate::identity::IdentityError),
    /// A replicated device could not start; nothing was changed.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::node::ClusterError),
    /// Opening the new devices stopped without a result (a bug); nothing was changed.
    #[error("opening the new devices failed: {0}; nothing was changed")]
    Open(String),
}

/// What an apply changed (empty lists: nothing to do; applying is idempotent).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ApplyReport {
    pub devices_added: Vec<String>,
    pub devices_removed: Vec<String>,
    pub devices_changed: Vec<String>,
    pub targets_added: Vec<String>,
    pub targets_removed: Vec<String>,
    pub targets_changed: Vec<String>,
    /// The set of listening portals changed.
    pub portals_changed: bool,
    /// Sessions logged out because the new config no longer allows them.
    pub sessions_closed: u32,
    /// Written config file, `None` when the daemon runs without one (changes are live only).
    pub persisted_to: Option<PathBuf>,
    pub warnings: Vec<String>,
}

/// The daemon's live state. Share it as `Arc<Manager>`; every method is safe to call from
/// any task; changes are serialised.
pub struct Manager {
    state: Mutex<State>,
    /// Held across a whole apply so two changes never interleave.
    apply_lock: tokio::sync::Mutex<()>,
    server: ServerHandle,
    /// The file changes are written to; `None` when the daemon runs a built-in or
    /// command-line configuration (changes are then live only).
    config_path: Option<PathBuf>,
    /// The ALUA table of every unit, for added units and state changes.
    alua: Arc<PortGroups>,
    /// The replicated devices (empty without `[cluster]`).
    replicas: Mutex<Replicas>,
    /// The same, as units to stop cleanly at exit.
    replicated: Mutex<Vec<(String, ReplicatedUnit)>>,
    /// This node in its cluster, for replicated devices added live.
    cluster: Option<Arc<ClusterNode>>,
}

struct State {
    plan: Plan,
    /// The configuration text `plan` came from.
    text: String,
    /// One unit per device, by device name.
    units: HashMap<String, Arc<LogicalUnit>>,
    identities: IdentityStore,
}

/// What a running daemon hands the manager at start.
pub struct Running {
    pub plan: Plan,
    pub text: String,
    pub config_path: Option<PathBuf>,
    /// Index-aligned with `plan.devices`.
    pub units: Vec<Arc<LogicalUnit>>,
    /// The ALUA table every unit shares, present and future (`graph::port_groups`).
    pub alua: Arc<PortGroups>,
    pub identities: IdentityStore,
    pub server: ServerHandle,
    /// The replicated devices started with the daemon, by name.
    pub replicated: Vec<(String, ReplicatedUnit)>,
    /// This node in its cluster (`None` without `[cluster]`).
    pub cluster: Option<Arc<ClusterNode>>,
}

/// A device opened by an apply, by name.
type Opened = (String, Arc<LogicalUnit>);

/// Opens the devices `added` (indices into `plan.devices`) with identities resolved in
/// `identities`, then saves the store: initiators must never see an identity that a restart
/// would not reproduce. Blocking; any failure leaves the live store untouched.
fn open_added(
    plan: &Plan,
    added: &[usize],
    mut identities: IdentityStore,
    alua: &Arc<PortGroups>,
) -> Result<(Vec<Opened>, IdentityStore), ApplyError> {
    let mut opened = Vec::with_capacity(added.len());
    for &i in added {
        let identity = identities.resolve(&plan.devices[i], &mut identity::os_random);
        let unit = graph::open_unit(plan, i, identity, alua)?;
        opened.push((plan.devices[i].name.clone(), unit));
    }
    identities.save().map_err(ApplyError::Identities)?;
    Ok((opened, identities))
}

impl Manager {
    pub fn new(r: Running) -> Manager {
        let units = r
            .plan
            .devices
            .iter()
            .zip(r.units)
            .map(|(d, u)| (d.name.clone(), u))
            .collect();
        Manager {
            state: Mutex::new(State {
                plan: r.plan,
                text: r.text,
                units,
                identities: r.identities,
            }),
            apply_lock: tokio::sync::Mutex::new(()),
            server: r.server,
            config_path: r.config_path,
            alua: r.alua,
            replicas: Mutex::new(Replicas::of(&r.replicated)),
            replicated: Mutex::new(r.replicated),
            cluster: r.cluster,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// The running config as TOML: the admin's file text, comments and layout intact.
    pub fn export(&self) -> String {
        self.state().text.clone()
    }

    /// The file changes are persisted to, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Validates `text` as a complete config and, unless `dry_run`, applies the difference
    /// to the running daemon and writes it to the config file (temp file, fsync, rename,
    /// directory fsync; the previous file kept as `<file>.prev`). `force` allows removing
    /// devices and targets that logged-in sessions use.
    pub async fn apply(
        &self,
        text: &str,
        dry_run: bool,
        force: bool,
    ) -> Result<ApplyReport, ApplyError> {
        let _serial = self.apply_lock.lock().await;
        if self.config_path.is_none() && self.state().text.is_empty() {
            return Err(ApplyError::NotLive {
                field: "(config)".into(),
                reason: "the daemon serves a command-line configuration; start it with \
                         --config FILE (or with no arguments) to change it live"
                    .into(),
            });
        }
        let source = match &self.config_path {
            Some(p) => Source::file(p),
            None => Source {
                label: "applied config".into(),
                base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                node: config::node_override(),
            },
        };
        if text.len() as u64 > config::MAX_CONFIG_BYTES {
            return Err(ApplyError::NotLive {
                field: "(config)".into(),
                reason: format!(
                    "text is {} bytes; at most {}",
                    text.len(),
                    config::MAX_CONFIG_BYTES
                ),
            });
        }
        let raw = config::parse(text, &source.label)?;
        let new = config::validate(&raw, &source)?;

        let (old, old_units) = {
            let st = self.state();
            (st.plan.clone(), st.units.clone())
        };
        static_unchanged(&old, &new)?;
        let mut report = diff(&old, &new)?;
        report.warnings = new.warnings.clone();
        self.check_in_use(&old, &new, &report, force)?;

        // Devices that are new: checked and opened before anything changes.
        let added: Vec<usize> = new
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| !old_units.contains_key(&d.name))
            .map(|(i, _)| i)
            .collect();
        let mut only_added = new.clone();
        only_added.devices = added.iter().map(|&i| new.devices[i].clone()).collect();
        graph::preflight(&only_added)?;
        if dry_run {
            return Ok(report);
        }
        // Opening can take long (a new file is created, a block device probed, reservation
        // state read) and saving identities syncs a file: both run on the blocking pool,
        // not under the state lock, so status reads and the I/O tasks on this worker go on
        // meanwhile. New identities are resolved on a copy of the store that replaces the
        // live one only once every device opened and the copy is saved; `apply_lock` keeps
        // any other apply from changing the store in between.
        let identities = self.state().identities.clone();
        let (plan, alua) = (new.clone(), Arc::clone(&self.alua));
        // Replicated devices start on the runtime (links, quorum), after the others opened.
        let (plain, replicated): (Vec<usize>, Vec<usize>) = added
            .iter()
            .partition(|&&i| new.devices[i].replica.is_none());
        let (opened, identities) =
            tokio::task::spawn_blocking(move || open_added(&plan, &plain, identities, &alua))
                .await
                .map_err(|e| ApplyError::Open(e.to_string()))??;
        self.state().identities = identities;
        let started = self.start_replicas(&new, &replicated).await?;
        let mut units: HashMap<String, Arc<LogicalUnit>> = new
            .devices
            .iter()
            .filter_map(|d| old_units.get(&d.name).map(|u| (d.name.clone(), u.clone())))
            .collect();
        units.extend(opened);
        units.extend(
            started
                .iter()
                .map(|(n, r)| (n.clone(), Arc::clone(&r.unit))),
        );
        let ordered: Vec<Arc<LogicalUnit>> =
            new.devices.iter().map(|d| units[&d.name].clone()).collect();
        let server_config = graph::server_config(&new, &ordered);
        // Portals before targets: new targets may name a new portal. Binding fails more
        // often than growing (an address in use or not on this host) and, unlike a grow,
        // can be undone, so it goes first.
        let portals_changed = old.portals != new.portals;
        if portals_changed {
            match self.server.set_portals(new.portals.clone()).await {
                Ok(n) => report.sessions_closed += n,
                Err(e) => {
                    stop_replicas(started).await;
                    return Err(ApplyError::NotLive {
                        field: "server.portal".into(),
                        reason: e.to_string(),
                    });
                }
            }
            report.portals_changed = true;
        }
        // Grown devices: the last step that can fail, and the capacity changes before the
        // new configuration shows it.
        if let Err(e) = grow_devices(&old, &new, &report.devices_changed, &units) {
            if portals_changed && let Err(undo) = self.server.set_portals(old.portals).await {
                tracing::error!(error = %undo, "restoring the portals after a failed grow");
            }
            stop_replicas(started).await;
            return Err(e);
        }
        self.keep_replicas(started);
        report.sessions_closed += self.server.set_live(LiveConfig {
            targets: server_config.targets,
            discovery_chap: server_config.discovery_chap,
        });

        // Removed devices: make what was written to them durable before they close.
        for name in &report.devices_removed {
            if let Some(u) = old_units.get(name)
                && let Err(e) = u.flush().await
            {
                tracing::error!(device = %name, error = %e, "flush of a removed device failed");
                report
                    .warnings
                    .push(format!("device {name:?}: flush on removal failed: {e}"));
            }
        }
        {
            let mut st = self.state();
            st.plan = new;
            st.text = text.to_owned();
            st.units = units;
        }
        match &self.config_path {
            Some(path) => {
                // Several fsyncs: off the async worker, like the opens above.
                let (file, data) = (path.clone(), text.to_owned());
                tokio::task::spawn_blocking(move || {
                    esos_common::fs::replace(
                        &file,
                        data.as_bytes(),
                        esos_common::fs::Replace {
                            keep_previous: true,
                        },
                    )
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
                .map_err(|source| ApplyError::Persist {
                    path: path.clone(),
                    source,
                })?;
                report.persisted_to = Some(path.clone());
            }
            None => report.warnings.push(
                "the daemon runs without a config file: the change is live only and a restart \
                 forgets it (start with --config FILE to keep changes)"
                    .into(),
            ),
        }
        tracing::info!(?report, "configuration applied");
        Ok(report)
    }

    /// Starts the replicated devices `added` (indices into `plan.devices`); on error the
    /// ones started are stopped again.
    async fn start_replicas(
        &self,
        plan: &Plan,
        added: &[usize],
    ) -> Result<Vec<(String, ReplicatedUnit)>, ApplyError> {
        let mut started = Vec::new();
        for &i in added {
            let d = &plan.devices[i];
            let res = match &self.cluster {
                Some(node) => {
                    // Derived from the names: nothing to store.
                    let id = self
                        .state()
                        .identities
                        .clone()
                        .resolve(d, &mut identity::os_random);
                    node.open_unit(plan, i, id).await.map_err(ApplyError::from)
                }
                None => Err(ApplyError::NotLive {
                    field: format!("device {:?}", d.name),
                    reason: "the daemon started without [cluster]; restart it".into(),
                }),
            };
            match res {
                Ok(u) => started.push((d.name.clone(), u)),
                Err(e) => {
                    stop_replicas(started).await;
                    return Err(e);
                }
            }
        }
        Ok(started)
    }

    /// Makes replicas started by an apply part of the daemon.
    fn keep_replicas(&self, started: Vec<(String, ReplicatedUnit)>) {
        self.replicas.locked().extend(&started);
        self.replicated.locked().extend(started);
    }

    /// Every replicated unit, taken for the clean stop.
    pub fn take_replicated(&self) -> Vec<(String, ReplicatedUnit)> {
        std::mem::take(&mut *self.replicated.locked())
    }

    /// Refuses to take away what logged-in sessions use, unless forced.
    fn check_in_use(
        &self,
        old: &Plan,
        new: &Plan,
        report: &ApplyReport,
        force: bool,
    ) -> Result<(), ApplyError> {
        if force {
            return Ok(());
        }
        let sessions = self.server.sessions();
        for s in &sessions {
            let Some(tname) = &s.target else { continue };
            let Some(t) = old
                .targets
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(tname))
            else {
                continue;
            };
            let still = new
                .targets
                .iter()
                .any(|n| n.name.eq_ignore_ascii_case(tname) && n.enabled);
            if !still {
                return Err(ApplyError::InUse {
                    object: format!("target {:?}", t.name),
                    reason: format!("session of {} is logged in", s.initiator),
                });
            }
            if let Some(luns) = luns_of(t, &s.initiator) {
                for &(lun, d) in luns {
                    let name = &old.devices[d].name;
                    if report.devices_removed.contains(name) {
                        return Err(ApplyError::InUse {
                            object: format!("device {name:?}"),
                            reason: format!(
                                "LUN {lun} of {} seen by logged-in session of {}",
                                t.name, s.initiator
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    pub fn devices(&self) -> Vec<DeviceInfo> {
        let st = self.state();
        st.plan
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let unit = st.units.get(&d.name);
                let id = unit.map(|u| u.settings().identity.clone());
                let path = match &d.spec.backend {
                    Backend::File { path, .. } | Backend::BlockDev { path } => {
                        Some(path.display().to_string())
                    }
                    _ => None,
                };
                DeviceInfo {
                    name: d.name.clone(),
                    kind: d.kind.as_str().into(),
                    path,
                    backing: d.replica.as_ref().map(|r| r.backing.name.clone()),
                    size_bytes: unit.map_or(0, |u| u.capacity_bytes()),
                    block_size: d.spec.block_size,
                    read_only: d.spec.read_only,
                    thin: d.thin,
                    write_cache: d.write_cache,
                    serial: id.as_ref().map(|i| i.serial.clone()).unwrap_or_default(),
                    naa: id.map(|i| hex(&i.naa)).unwrap_or_default(),
                    exports: exports_of(&st.plan, i),
                }
            })
            .collect()
    }

    pub fn targets(&self) -> Vec<TargetInfo> {
        let sessions = self.server.sessions();
        let st = self.state();
        let luns = |l: &LunPlan| {
            l.iter()
                .map(|&(lun, d)| LunInfo {
                    lun,
                    device: st.plan.devices[d].name.clone(),
                })
                .collect::<Vec<_>>()
        };
        st.plan
            .targets
            .iter()
            .map(|t| TargetInfo {
                name: t.name.clone(),
                alias: t.alias.clone(),
                enabled: t.enabled,
                portals: t.portals.iter().map(|p| p.to_string()).collect(),
                chap: t.chap.is_some(),
                groups: t
                    .groups
                    .iter()
                    .map(|g| GroupInfo {
                        name: g.name.clone(),
                        initiators: g.initiators.clone(),
                        luns: luns(&g.luns),
                    })
                    .collect(),
                default_luns: t.default_luns.as_ref().map(luns),
                sessions: sessions
                    .iter()
                    .filter(|s| {
                        s.target
                            .as_deref()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&t.name))
                    })
                    .count() as u32,
            })
            .collect()
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.server
            .sessions()
            .into_iter()
            .map(|s| SessionInfo {
                id: s.id,
                tsih: s.tsih,
                initiator: s.initiator,
                isid: hex(&s.isid),
                target: s.target,
                portal: s.portal.to_string(),
                peer: s.peer.to_string(),
                since_unix: s
                    .since
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                header_digest: s.params.header_digest,
                data_digest: s.params.data_digest,
                initiator_max_recv_data_segment_length: s
                    .params
                    .initiator_max_recv_data_segment_length,
                target_max_recv_data_segment_length: s.params.target_max_recv_data_segment_length,
                max_burst_length: s.params.max_burst_length,
                first_burst_length: s.params.first_burst_length,
                immediate_data: s.params.immediate_data,
                initial_r2t: s.params.initial_r2t,
                commands: s.commands,
            })
            .collect()
    }

    /// Every device's I/O counters.
    pub fn stats(&self) -> Vec<DeviceStats> {
        self.units()
            .into_iter()
            .map(|(name, lu)| {
                let s = lu.stats().snapshot();
                let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                DeviceStats {
                    name,
                    read_commands: s.read.commands,
                    write_commands: s.write.commands,
                    other_commands: s.other.commands,
                    read_bytes: s.read.bytes,
                    write_bytes: s.write.bytes,
                    errors: s.errors,
                    in_flight: s.in_flight,
                    read_latency_us: us(s.read.latency_sum),
                    write_latency_us: us(s.write.latency_sum),
                }
            })
            .collect()
    }

    /// ALUA target port groups with their current states.
    pub fn port_groups(&self) -> Vec<PortGroupInfo> {
        let plan = self.state().plan.clone();
        let table = &self.alua;
        let mode = match plan.alua.mode {
            esos_scsi::alua::AluaMode::Implicit => "implicit",
            esos_scsi::alua::AluaMode::Explicit => "explicit",
            esos_scsi::alua::AluaMode::Both => "both",
        };
        table
            .states()
            .into_iter()
            .map(|(id, state)| PortGroupInfo {
                id,
                state: state.as_str().into(),
                portal_groups: plan
                    .alua
                    .groups
                    .iter()
                    .find(|g| g.id == id)
                    .map(|g| g.ports.clone())
                    .unwrap_or_default(),
                mode: mode.into(),
            })
            .collect()
    }

    /// Changes a target port group's access state live (an implicit ALUA transition:
    /// every nexus of every unit gets ASYMMETRIC ACCESS STATE CHANGED). Saved in the data
    /// directory like SET TARGET PORT GROUPS, so it survives a restart.
    pub fn set_port_group_state(&self, id: u16, state: &str) -> Result<(), PortGroupError> {
        use esos_scsi::alua::AccessState;
        let state = match state {
            "active-optimized" => AccessState::ActiveOptimized,
            "active-non-optimized" => AccessState::ActiveNonOptimized,
            "standby" => AccessState::Standby,
            "unavailable" => AccessState::Unavailable,
            other => return Err(PortGroupError::BadState(other.into())),
        };
        self.alua.set_state(id, state).map_err(|e| match e {
            esos_scsi::alua::AluaError::NoSuchGroup(id) => PortGroupError::NotFound(id),
            other => PortGroupError::Failed(other.to_string()),
        })?;
        tracing::info!(
            group = id,
            state = state.as_str(),
            "ALUA port group state changed"
        );
        Ok(())
    }

    /// Login outcomes since start.
    pub fn login_counts(&self) -> esos_iscsi::server::LoginCounts {
        self.server.login_counts()
    }

    /// Data-In bytes sent straight from the page cache (`zero_copy_reads`).
    pub fn zero_copy_bytes(&self) -> u64 {
        self.server.zero_copy_bytes()
    }

    /// Logs out session `id` (from [`SessionInfo::id`]); false when no such session.
    pub fn close_session(&self, id: u64) -> bool {
        self.server.close_session(id)
    }

    /// Every device's unit, by name (for the flush at shutdown).
    pub fn units(&self) -> Vec<(String, Arc<LogicalUnit>)> {
        let st = self.state();
        st.plan
            .devices
            .iter()
            .filter_map(|d| st.units.get(&d.name).map(|u| (d.name.clone(), u.clone())))
            .collect()
    }

    /// Every replicated device's report.
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        self.replicas.locked().infos()
    }

    /// Runs `action` on replicated device `device`; its report afterwards.
    pub async fn replica_action(
        &self,
        device: &str,
        action: Action,
    ) -> Result<ReplicaInfo, ReplicaActionError> {
        let replicas = self.replicas.locked().clone();
        replicas.act(device, action).await
    }

    /// The replicated devices, for a clean shutdown.
    pub fn replica_set(&self) -> Replicas {
        self.replicas.locked().clone()
    }

    /// The daemon's data directory (identities, reservations, the API socket).
    pub fn data_dir(&self) -> PathBuf {
        self.state().plan.data_dir.clone()
    }
}

/// The LUNs `initiator` sees on target `t` (group first, then the default LUNs).
fn luns_of<'a>(t: &'a config::TargetPlan, initiator: &str) -> Option<&'a LunPlan> {
    t.groups
        .iter()
        .find(|g| {
            g.initiators
                .iter()
                .any(|i| i.eq_ignore_ascii_case(initiator))
        })
        .map(|g| &g.luns)
        .or(t.default_luns.as_ref())
}

/// "target/lun" and "target/group/lun" for every place device `index` is mapped.
fn exports_of(plan: &Plan, index: usize) -> Vec<String> {
    let mut out = Vec::new();
    for t in &plan.targets {
        for &(lun, _) in t.default_luns.iter().flatten().filter(|(_, d)| *d == index) {
            out.push(format!("{}/{lun}", t.name));
        }
        for g in &t.groups {
            for &(lun, _) in g.luns.iter().filter(|(_, d)| *d == index) {
                out.push(format!("{}/{}/{lun}", t.name, g.name));
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stops replicas an apply started before it failed.
async fn stop_replicas(started: Vec<(String, ReplicatedUnit)>) {
    for (name, u) in started {
        tracing::info!(device = %name, "stopping the replica of a refused change");
        u.shutdown().await;
    }
}

/// Settings the running server cannot change without a restart.
fn static_unchanged(old: &Plan, new: &Plan) -> Result<(), ApplyError> {
    let not_live = |field: &str, what: &str| ApplyError::NotLive {
        field: field.into(),
        reason: format!("{what} cannot change while the daemon runs; restart it to apply"),
    };
    if old.data_dir != new.data_dir {
        return Err(not_live("server.data_dir", "the data directory"));
    }
    if old.limits != new.limits {
        return Err(not_live("server.limits", "session limits"));
    }
    if old.alua != new.alua {
        // Every unit shares the table the daemon built at start (graph::port_groups).
        return Err(not_live(
            "server.alua",
            "ALUA target port groups (derived from the portal groups when [server.alua] is absent)",
        ));
    }
    if old.metrics != new.metrics {
        return Err(not_live("server.metrics_address", "the metrics listener"));
    }
    if old.api != new.api {
        return Err(not_live(
            "api",
            "the API's TCP listeners, TLS files and tokens",
        ));
    }
    if old.params != new.params {
        return Err(not_live("server.iscsi", "iSCSI negotiation defaults"));
    }
    if old.cluster != new.cluster {
        // The cluster listener, the quorum's voters and every replica's peers were set
        // up from it at start.
        return Err(not_live(
            "cluster",
            "the cluster (its name, this node, members, witness, lease and timeouts)",
        ));
    }
    Ok(())
}

/// Grows the devices of `changed` whose size grows from `old` to `new`; stops at the first
/// that cannot (those grown before it keep their size).
fn grow_devices(
    old: &Plan,
    new: &Plan,
    changed: &[String],
    units: &HashMap<String, Arc<LogicalUnit>>,
) -> Result<(), ApplyError> {
    for name in changed {
        let (Some(o), Some(d)) = (
            old.devices.iter().find(|d| &d.name == name),
            new.devices.iter().find(|d| &d.name == name),
        ) else {
            continue;
        };
        if let Some(size) = resized(o, d) {
            units[name].grow(size).map_err(|e| ApplyError::NotLive {
                field: format!("device {name:?}.size"),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(())
}

/// The new size when `new` differs from `old` only by a larger size (file and null
/// devices; a block device's size comes from the device and is re-read).
fn resized(old: &config::DevicePlan, new: &config::DevicePlan) -> Option<u64> {
    let size = match (&old.spec.backend, &new.spec.backend) {
        (
            Backend::File {
                path: a,
                size_bytes: Some(x),
            },
            Backend::File {
                path: b,
                size_bytes: Some(y),
            },
        ) if a == b && y > x => *y,
        (Backend::Null { size_bytes: x }, Backend::Null { size_bytes: y }) if y != x => *y,
        _ => return None,
    };
    let mut same = new.clone();
    same.spec.backend = old.spec.backend.clone();
    (same == *old).then_some(size)
}

/// Names of what `new` adds, removes and changes relative to `old`.
fn diff(old: &Plan, new: &Plan) -> Result<ApplyReport, ApplyError> {
    let mut r = ApplyReport::default();
    for d in &new.devices {
        match old.devices.iter().find(|o| o.name == d.name) {
            None => r.devices_added.push(d.name.clone()),
            Some(o) if o != d && d.kind == DeviceType::Replicated => {
                return Err(ApplyError::NotLive {
                    field: format!("device {:?}", d.name),
                    reason: "a replicated device (and its backing) cannot change while \
                             the daemon runs; restart it to apply"
                        .into(),
                });
            }
            Some(o) if o != d && resized(o, d).is_some() => r.devices_changed.push(d.name.clone()),
            Some(o) if o != d => {
                return Err(ApplyError::NotLive {
                    field: format!("device {:?}", d.name),
                    reason: "of an existing device only the size can change live (it grows); \
                             for other settings remove it and add it under a new name, or \
                             restart the daemon"
                        .into(),
                });
            }
            Some(_) => {}
        }
    }
    for o in &old.devices {
        if !new.devices.iter().any(|d| d.name == o.name) {
            if o.kind == DeviceType::Replicated {
                return Err(ApplyError::NotLive {
                    field: format!("device {:?}", o.name),
                    reason: "a replicated device stops with the daemon (its bitmap saved, \
                             its activity log emptied); remove it and restart"
                        .into(),
                });
            }
            r.devices_removed.push(o.name.clone());
        }
    }
    let device_name = |p: &Plan, l: &LunPlan| -> Vec<(u64, String)> {
        l.iter()
            .map(|&(n, d)| (n, p.devices[d].name.clone()))
            .collect()
    };
    let shape = |p: &Plan, t: &config::TargetPlan| {
        (
            t.alias.clone(),
            t.enabled,
            t.portals.clone(),
            t.chap.clone(),
            t.groups
                .iter()
                .map(|g| {
                    (
                        g.name.clone(),
                        g.initiators.clone(),
                        device_name(p, &g.luns),
                    )
                })
                .collect::<Vec<_>>(),
            t.default_luns.as_ref().map(|l| device_name(p, l)),
        )
    };
    for t in &new.targets {
        match old.targets.iter().find(|o| o.name == t.name) {
            None => r.targets_added.push(t.name.clone()),
            Some(o) if shape(old, o) != shape(new, t) => r.targets_changed.push(t.name.clone()),
            Some(_) => {}
        }
    }
    for o in &old.targets {
        if !new.targets.iter().any(|t| t.name == o.name) {
            r.targets_removed.push(o.name.clone());
        }
    }
    if old.discovery_chap != new.discovery_chap {
        r.targets_changed.push("(discovery)".into());
    }
    Ok(r)
}

mod info;
#[cfg(test)]
mod tests;

pub use info::{
    DeviceInfo, DeviceStats, GroupInfo, LunInfo, PortGroupError, PortGroupInfo, SessionInfo,
    TargetInfo,
};
