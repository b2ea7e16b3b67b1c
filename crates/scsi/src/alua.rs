//! Asymmetric logical unit access (SPC-4 5.16): target port groups, their access states,
//! the commands each state lets through, REPORT / SET TARGET PORT GROUPS and the file that
//! keeps explicit state changes across restarts.
//!
//! One [`PortGroups`] table serves every logical unit of the server (SCST's "device
//! group"): a state change applies to all of them and posts ASYMMETRIC ACCESS STATE
//! CHANGED to every I_T nexus of every unit. The common case (every group active) costs
//! admission one relaxed atomic load.

use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::Nexus;
use crate::cdb::op;
use crate::engine::LogicalUnit;
use crate::pr::{MAX_STATE_FILE_LEN, StateFileError};
use crate::sense::{Asc, Sense, SenseKey};

/// Most target port groups one server may have; bounds the REPORT TARGET PORT GROUPS data.
pub const MAX_PORT_GROUPS: usize = 256;
/// Most relative target ports in one group: the TARGET PORT COUNT field is one byte
/// (SPC-4 6.27).
pub const MAX_PORTS_PER_GROUP: usize = 255;
/// Largest SET TARGET PORT GROUPS parameter list: the header and one descriptor per group.
pub const MAX_STPG_PARAM_LEN: u32 = 4 + 4 * MAX_PORT_GROUPS as u32;
/// IMPLICIT TRANSITION TIME reported in the extended RTPG header (seconds): esos changes
/// states at once, so this only bounds how long a management-driven transition may last.
pub const IMPLICIT_TRANSITION_TIME_S: u8 = 10;

/// LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION.
pub const NOT_ACCESSIBLE_TRANSITION: Asc = Asc(0x04, 0x0A);
/// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE.
pub const NOT_ACCESSIBLE_STANDBY: Asc = Asc(0x04, 0x0B);
/// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE.
pub const NOT_ACCESSIBLE_UNAVAILABLE: Asc = Asc(0x04, 0x0C);
/// ASYMMETRIC ACCESS STATE CHANGED (unit attention, SPC-4 5.16.2.7).
pub const ACCESS_STATE_CHANGED: Asc = Asc(0x2A, 0x06);

/// Primary target port asymmetric access states (SPC-4 5.16.2.4, table 35 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AccessState {
    ActiveOptimized = 0x0,
    ActiveNonOptimized = 0x1,
    Standby = 0x2,
    Unavailable = 0x3,
    /// Only set through [`PortGroups::set_state`] (never by STPG, SPC-4 6.39).
    Transitioning = 0xF,
}

impl AccessState {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<AccessState> {
        Some(match code {
            0x0 => AccessState::ActiveOptimized,
            0x1 => AccessState::ActiveNonOptimized,
            0x2 => AccessState::Standby,
            0x3 => AccessState::Unavailable,
            0xF => AccessState::Transitioning,
            _ => return None,
        })
    }

    /// Both active states process every command.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized
        )
    }

    /// The name used in the config file and the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessState::ActiveOptimized => "active-optimized",
            AccessState::ActiveNonOptimized => "active-non-optimized",
            AccessState::Standby => "standby",
            AccessState::Unavailable => "unavailable",
            AccessState::Transitioning => "transitioning",
        }
    }

    /// The sense code for commands a state does not allow (SPC-4 5.16.2.4.4-5.16.2.4.6).
    fn refusal(self) -> Option<Asc> {
        match self {
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => None,
            AccessState::Standby => Some(NOT_ACCESSIBLE_STANDBY),
            AccessState::Unavailable => Some(NOT_ACCESSIBLE_UNAVAILABLE),
            AccessState::Transitioning => Some(NOT_ACCESSIBLE_TRANSITION),
        }
    }
}

impl fmt::Display for AccessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccessState {
    type Err = ();
    fn from_str(s: &str) -> Result<AccessState, ()> {
        [
            AccessState::ActiveOptimized,
            AccessState::ActiveNonOptimized,
            AccessState::Standby,
            AccessState::Unavailable,
            AccessState::Transitioning,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or(())
    }
}

/// Who may change states: the TPGS field of standard INQUIRY (SPC-4 6.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AluaMode {
    /// Only the target changes states (TPGS 01b); SET TARGET PORT GROUPS is not supported.
    #[default]
    Implicit,
    /// Only SET TARGET PORT GROUPS changes states (TPGS 10b).
    Explicit,
    /// Both (TPGS 11b).
    Both,
}

impl AluaMode {
    /// The two-bit TPGS value.
    pub fn tpgs(self) -> u8 {
        match self {
            AluaMode::Implicit => 0b01,
            AluaMode::Explicit => 0b10,
            AluaMode::Both => 0b11,
        }
    }

    /// True when SET TARGET PORT GROUPS is supported.
    pub fn explicit(self) -> bool {
        self != AluaMode::Implicit
    }
}

/// One configured target port group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub id: u16,
    pub state: AccessState,
    /// Relative target port identifiers (for iSCSI: the portal group tags).
    pub ports: Vec<u16>,
}

/// A table that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AluaError {
    #[error("more than {MAX_PORT_GROUPS} target port groups")]
    TooManyGroups,
    #[error("target port group {0} is listed twice")]
    DuplicateGroup(u16),
    #[error("target port group {0} has no ports")]
    EmptyGroup(u16),
    #[error("target port group {0} has more than {MAX_PORTS_PER_GROUP} ports")]
    TooManyPorts(u16),
    #[error("relative target port {port} is listed twice in target port group {group}")]
    DuplicatePort { port: u16, group: u16 },
    #[error("relative target port {port} is in target port groups {first} and {second}")]
    PortInTwoGroups { port: u16, first: u16, second: u16 },
    #[error("no target port group {0}")]
    NoSuchGroup(u16),
    /// The state file could not be written; the state was left unchanged.
    #[error("state not saved, so not changed: {0}")]
    NotSaved(String),
}

/// STATUS CODE of a target port group descriptor (SPC-4 6.27, table 251).
mod status {
    pub const NONE: u8 = 0x00;
    pub const BY_STPG: u8 = 0x01;
    pub const IMPLICIT: u8 = 0x02;
}

#[derive(Debug)]
struct Group {
    id: u16,
    ports: Box<[u16]>,
    /// Configured state: the state file applies a saved state only over this one.
    configured: AccessState,
    state: AtomicU8,
    status: AtomicU8,
}

impl Group {
    fn state(&self) -> AccessState {
        AccessState::from_code(self.state.load(Ordering::Relaxed))
            .unwrap_or(AccessState::Unavailable)
    }
}

/// The server's target port groups and their current access states.
///
/// Membership is keyed by the nexus's relative target port, so transports need to know
/// nothing about ALUA. A port in no group (and every port, when no group is configured)
/// is its own active/optimized group numbered [`Nexus::port_group`].
#[derive(Debug, Default)]
pub struct PortGroups {
    mode: AluaMode,
    /// Ascending by id.
    groups: Box<[Group]>,
    /// (relative target port, index into `groups`), ascending by port.
    ports: Box<[(u16, usize)]>,
    /// Groups not in an active state; 0 lets admission skip the lookup.
    inaccessible: AtomicU32,
    /// Units whose nexuses hear of state changes.
    units: Mutex<Vec<Weak<LogicalUnit>>>,
    /// Where explicit changes are kept across restarts.
    state_file: Option<PathBuf>,
    /// Serialises changes, so the counter, the file and the states agree.
    change: Mutex<()>,
}

impl PortGroups {
    /// Builds the table. Every port must be in exactly one group.
    pub fn new(mode: AluaMode, specs: Vec<GroupSpec>) -> Result<PortGroups, AluaError> {
        if specs.len() > MAX_PORT_GROUPS {
            return Err(AluaError::TooManyGroups);
        }
        let mut groups: Vec<Group> = Vec::with_capacity(specs.len());
        for s in specs {
            if groups.iter().any(|g| g.id == s.id) {
                return Err(AluaError::DuplicateGroup(s.id));
            }
            if s.ports.is_empty() {
                return Err(AluaError::EmptyGroup(s.id));
            }
            if s.ports.len() > MAX_PORTS_PER_GROUP {
                return Err(AluaError::TooManyPorts(s.id));
            }
            let mut ports = s.ports.clone();
            ports.sort_unstable();
            for w in ports.windows(2) {
                if w[0] == w[1] {
                    return Err(AluaError::DuplicatePort {
                        port: w[0],
                        group: s.id,
                    });
                }
            }
            for &port in &ports {
                if let Some(g) = groups.iter().find(|g| g.ports.contains(&port)) {
                    return Err(AluaError::PortInTwoGroups {
                        port,
                        first: g.id,
                        second: s.id,
                    });
                }
            }
            groups.push(Group {
                id: s.id,
                ports: ports.into(),
                configured: s.state,
                state: AtomicU8::new(s.state.code()),
                status: AtomicU8::new(status::NONE),
            });
        }
        groups.sort_by_key(|g| g.id);
        let mut ports: Vec<(u16, usize)> = groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.ports.iter().map(move |&p| (p, i)))
            .collect();
        ports.sort_unstable();
        let inaccessible = groups.iter().filter(|g| !g.state().is_active()).count() as u32;
        Ok(PortGroups {
            mode,
            groups: groups.into(),
            ports: ports.into(),
            inaccessible: AtomicU32::new(inaccessible),
            units: Mutex::new(Vec::new()),
            state_file: None,
            change: Mutex::new(()),
        })
    }

    /// Keeps explicit changes in `path` and applies the states saved there: a saved state
    /// wins only while the group's configured state is still the one it was saved over,
    /// so editing the config always takes effect. Unknown groups in the file are ignored.
    pub fn with_state_file(mut self, path: PathBuf) -> Result<PortGroups, StateFileError> {
        for (id, configured, saved) in load(&path)? {
            if let Some(g) = self.find(id)
                && g.configured == configured
            {
                g.state.store(saved.code(), Ordering::Relaxed);
            }
        }
        let n = self
            .groups
            .iter()
            .filter(|g| !g.state().is_active())
            .count() as u32;
        self.inaccessible.store(n, Ordering::Relaxed);
        self.state_file = Some(path);
        Ok(self)
    }

    pub fn mode(&self) -> AluaMode {
        self.mode
    }

    /// Current state of group `id`.
    pub fn state(&self, id: u16) -> Option<AccessState> {
        self.find(id).map(Group::state)
    }

    /// Group ids with their current states, ascending.
    pub fn states(&self) -> Vec<(u16, AccessState)> {
        self.groups.iter().map(|g| (g.id, g.state())).collect()
    }

    /// Changes a state on the target's own initiative (management API, failover): an
    /// implicit transition, reported to every I_T nexus of every unit (SPC-4 5.16.2.7).
    /// Saved like explicit changes, so a restart does not bring back an older one.
    pub fn set_state(&self, id: u16, state: AccessState) -> Result<(), AluaError> {
        let g = self.find(id).ok_or(AluaError::NoSuchGroup(id))?;
        let _serial = self.lock();
        self.persist(&[(id, state)])
            .map_err(|e| AluaError::NotSaved(e.to_string()))?;
        if self.apply(g, state, status::IMPLICIT) {
            self.notify(None, 0);
        }
        Ok(())
    }

    fn find(&self, id: u16) -> Option<&Group> {
        let i = self.groups.binary_search_by_key(&id, |g| g.id).ok()?;
        Some(&self.groups[i])
    }

    fn group_of(&self, nexus: &Nexus) -> Option<&Group> {
        let i = self
            .ports
            .binary_search_by_key(&nexus.relative_port, |&(p, _)| p)
            .ok()?;
        Some(&self.groups[self.ports[i].1])
    }

    /// The target port group of the nexus's target port (VPD 0x83 designator type 5).
    pub fn group_id(&self, nexus: &Nexus) -> u16 {
        self.group_of(nexus).map_or(nexus.port_group, |g| g.id)
    }

    /// Writes the table as it will be after `wanted`, before it is applied (change lock
    /// held), so what an initiator was told is what a restart restores.
    fn persist(&self, wanted: &[(u16, AccessState)]) -> Result<(), StateFileError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let next: Vec<(u16, AccessState, AccessState)> = self
            .groups
            .iter()
            .map(|g| {
                let state = wanted
                    .iter()
                    .find(|(id, _)| *id == g.id)
                    .map_or(g.state(), |&(_, s)| s);
                (g.id, g.configured, state)
            })
            .collect();
        save(path, &next)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.change.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets one state with the change lock held; true when it changed.
    fn apply(&self, g: &Group, state: AccessState, why: u8) -> bool {
        let old = g.state();
        g.status.store(why, Ordering::Relaxed);
        if old == state {
            return false;
        }
        g.state.store(state.code(), Ordering::Relaxed);
        match (old.is_active(), state.is_active()) {
            (true, false) => {
                self.inaccessible.fetch_add(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.inaccessible.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        true
    }

    /// Posts ASYMMETRIC ACCESS STATE CHANGED to every nexus of every unit, except nexus
    /// `nexus` of unit `from` (the one that sent SET TARGET PORT GROUPS, SPC-4 5.16.2.7):
    /// the other units did not receive the command, so all their nexuses hear of it.
    fn notify(&self, from: Option<&LogicalUnit>, nexus: u64) {
        let units: Vec<Arc<LogicalUnit>> = {
            let g = self.units.lock().unwrap_or_else(|e| e.into_inner());
            g.iter().filter_map(Weak::upgrade).collect()
        };
        for lu in units {
            let sender = from.is_some_and(|f| std::ptr::eq(f, Arc::as_ptr(&lu)));
            lu.ua
                .post_others(sender.then_some(nexus), ACCESS_STATE_CHANGED);
        }
    }

    /// Called once per unit built over this table.
    pub(crate) fn register(&self, lu: &Arc<LogicalUnit>) {
        let mut g = self.units.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|w| w.strong_count() > 0);
        g.push(Arc::downgrade(lu));
    }

    /// Admission check (SPC-4 5.16.2.4.4-5.16.2.4.6): the sense for a command that the
    /// state of the nexus's port group does not allow, `None` to run it.
    #[inline]
    pub(crate) fn check(&self, nexus: &Nexus, cdb: &[u8]) -> Option<Sense> {
        if self.inaccessible.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let state = self.group_of(nexus)?.state();
        let asc = state.refusal()?;
        if allowed(state, cdb) {
            return None;
        }
        Some(Sense::new(SenseKey::NotReady, asc))
    }

    /// REPORT TARGET PORT GROUPS parameter data (SPC-4 6.27), in the length-only or the
    /// extended header format.
    pub(crate) fn report(&self, nexus: &Nexus, extended: bool, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[0; 4]);
        if extended {
            // FORMAT TYPE 001b, IMPLICIT TRANSITION TIME.
            out.extend_from_slice(&[0x10, IMPLICIT_TRANSITION_TIME_S, 0, 0]);
        }
        if self.group_of(nexus).is_none() {
            descriptor(
                out,
                nexus.port_group,
                AccessState::ActiveOptimized,
                status::NONE,
                &[nexus.relative_port],
            );
        }
        for g in self.groups.iter() {
            descriptor(
                out,
                g.id,
                g.state(),
                g.status.load(Ordering::Relaxed),
                &g.ports,
            );
        }
        let len = (out.len() - 4) as u32;
        out[0..4].copy_from_slice(&len.to_be_bytes());
    }

    /// SET TARGET PORT GROUPS (SPC-4 6.39) with parameter list `list`: validates every
    /// descriptor, then applies them all, saves them, and tells every other nexus.
    pub(crate) fn set_explicit(
        &self,
        list: &[u8],
        lu: Option<&LogicalUnit>,
        nexus: u64,
    ) -> Result<(), Sense> {
        let wanted = decode_stpg(list, |id| self.find(id).is_some())?;
        if wanted.is_empty() {
            return Ok(());
        }
        let _serial = self.lock();
        if let Err(e) = self.persist(&wanted) {
            tracing::error!(error = %e, "ALUA state not saved; SET TARGET PORT GROUPS refused");
            return Err(Sense::new(
                SenseKey::HardwareError,
                Asc::INTERNAL_TARGET_FAILURE,
            ));
        }
        let mut changed = false;
        for (id, state) in wanted {
            if let Some(g) = self.find(id) {
                changed |= self.apply(g, state, status::BY_STPG);
            }
        }
        if changed {
            self.notify(lu, nexus);
        }
        Ok(())
    }
}

/// One target port group descriptor (SPC-4 6.27, table 250).
fn descriptor(out: &mut Vec<u8>, id: u16, state: AccessState, status: u8, ports: &[u16]) {
    // T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP; no offline, no LBA dependent.
    const SUPPORTED: u8 = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;
    let [hi, lo] = id.to_be_bytes();
    let count = ports.len().min(MAX_PORTS_PER_GROUP) as u8;
    out.extend_from_slice(&[state.code(), SUPPORTED, hi, lo, 0, status, 0, count]);
    for p in &ports[..usize::from(count)] {
        let [hi, lo] = p.to_be_bytes();
        out.extend_from_slice(&[0, 0, hi, lo]);
    }
}

/// Decodes a SET TARGET PORT GROUPS parameter list into (group, state) pairs. Only the
/// four primary states can be asked for; groups must exist and appear once.
pub fn decode_stpg(
    list: &[u8],
    exists: impl Fn(u16) -> bool,
) -> Result<Vec<(u16, AccessState)>, Sense> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    if list.len() < 4 || !list.len().is_multiple_of(4) {
        // A truncated descriptor (SPC-4 6.39).
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    reserved_param(list, 0..4)?;
    let mut out: Vec<(u16, AccessState)> = Vec::with_capacity(list.len() / 4 - 1);
    for (i, d) in list[4..].chunks_exact(4).enumerate() {
        let at = 4 + 4 * i;
        if d[0] & 0xF0 != 0 {
            let bit = 7 - (d[0] & 0xF0).leading_zeros() as u8;
            return Err(Sense::invalid_param_field(at as u16, Some(bit)));
        }
        reserved_param(list, at + 1..at + 2)?;
        let state = match AccessState::from_code(d[0] & 0x0F) {
            Some(s) if s != AccessState::Transitioning => s,
            _ => return Err(Sense::invalid_param_field(at as u16, Some(3))),
        };
        let id = u16::from_be_bytes([d[2], d[3]]);
        if !exists(id) || out.iter().any(|(seen, _)| *seen == id) {
            return Err(Sense::invalid_param_field(at as u16 + 2, None));
        }
        out.push((id, state));
    }
    Ok(out)
}

fn reserved_param(list: &[u8], bytes: std::ops::Range<usize>) -> Result<(), Sense> {
    for at in bytes {
        if list[at] != 0 {
            let bit = 7 - list[at].leading_zeros() as u8;
            return Err(Sense::invalid_param_field(at as u16, Some(bit)));
        }
    }
    Ok(())
}

/// Commands a non-active state still processes (SPC-4 5.16.2.4.4 standby, 5.16.2.4.5
/// unavailable, 5.16.2.4.6 transitioning). TEST UNIT READY is not among them: path
/// checkers (dm-multipath's `tur`) read NOT READY 04/0B as "standby path".
fn allowed(state: AccessState, cdb: &[u8]) -> bool {
    const LOG_SELECT: u8 = 0x4C;
    const LOG_SENSE: u8 = 0x4D;
    const RECEIVE_DIAGNOSTIC: u8 = 0x1C;
    const SEND_DIAGNOSTIC: u8 = 0x1D;
    const WRITE_BUFFER: u8 = 0x3B;
    const READ_BUFFER: u8 = 0x3C;
    const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    let Some(&opcode) = cdb.first() else {
        return false;
    };
    let sa = cdb.get(1).map_or(0, |b| b & 0x1F);
    let always = match opcode {
        op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE => true,
        op::MAINTENANCE_IN => matches!(
            sa,
            op::SA_REPORT_TARGET_PORT_GROUPS
                | op::SA_REPORT_SUPPORTED_OPCODES
                | op::SA_REPORT_SUPPORTED_TMFS
        ),
        // Echo buffer modes only (0Ah).
        READ_BUFFER | WRITE_BUFFER => sa == 0x0A,
        _ => false,
    };
    let stpg = opcode == op::MAINTENANCE_OUT && sa == op::SA_SET_TARGET_PORT_GROUPS;
    match state {
        AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => true,
        AccessState::Standby => {
            always
                || stpg
                || matches!(
                    opcode,
                    op::MODE_SENSE_6
                        | op::MODE_SENSE_10
                        | op::MODE_SELECT_6
                        | op::MODE_SELECT_10
                        | LOG_SELECT
                        | LOG_SENSE
                        | RECEIVE_DIAGNOSTIC
                        | SEND_DIAGNOSTIC
                        | PERSISTENT_RESERVE_IN
                        | PERSISTENT_RESERVE_OUT
                )
        }
        AccessState::Unavailable => always || stpg,
        AccessState::Transitioning => always,
    }
}

const FILE_MAGIC: &str = "esos-alua 1";

/// State file text: one `group <id> <configured state> <current state>` line per group.
fn encode_state(groups: &[(u16, AccessState, AccessState)]) -> String {
    let mut out = format!("{FILE_MAGIC}\n");
    for (id, configured, state) in groups {
        let _ = writeln!(out, "group {id} {configured} {state}");
    }
    out
}

fn decode_state(
    text: &str,
    path: &str,
) -> Result<Vec<(u16, AccessState, AccessState)>, StateFileError> {
    let fail = |line: usize, reason: &str| StateFileError::Parse {
        path: path.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, l)) if l == FILE_MAGIC => {}
        _ => return Err(fail(1, "not an esos ALUA state file")),
    }
    let mut out = Vec::new();
    for (n, line) in lines {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        match f.as_slice() {
            [] => {}
            ["group", id, configured, state] => {
                if out.len() >= MAX_PORT_GROUPS {
                    return Err(fail(n, "too many groups"));
                }
                let id: u16 = id.parse().map_err(|_| fail(n, "bad group id"))?;
                let configured = configured
                    .parse()
                    .map_err(|()| fail(n, "bad configured state"))?;
                let state = state.parse().map_err(|()| fail(n, "bad state"))?;
                out.push((id, configured, state));
            }
            _ => return Err(fail(n, "unknown line")),
        }
    }
    Ok(out)
}

fn save(path: &Path, groups: &[(u16, AccessState, AccessState)]) -> Result<(), StateFileError> {
    crate::pr::write_file_atomically(path, encode_state(groups).as_bytes())
}

/// Loads the saved states; a missing file means none.
fn load(path: &Path) -> Result<Vec<(u16, AccessState, AccessState)>, StateFileError> {
    let name = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StateFileError::Io { path: name, source }),
    };
    if text.len() > MAX_STATE_FILE_LEN {
        return Err(StateFileError::TooLarge { path: name });
    }
    let text = String::from_utf8(text).map_err(|_| StateFileError::Parse {
        path: name.clone(),
        line: 0,
        reason: "not UTF-8".into(),
    })?;
    decode_state(&text, &name)
}

#[cfg(test)]
mod tests;
