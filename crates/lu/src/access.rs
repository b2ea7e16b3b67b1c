//! Port groups and their access states: the table behind SCSI ALUA (SPC-4 5.16) that
//! NVMe ANA groups will serve too. A group is a set of relative target ports; its state
//! says whether a path through those ports may do I/O. Which commands a state lets
//! through, how the table is reported and which status a refusal carries belong to each
//! protocol (esos-scsi `alua.rs` for SCSI).
//!
//! One [`PortGroups`] table serves every unit of the server (SCST's "device group"): a
//! state change applies to all of them and is posted to every unit's event fan-out
//! ([`crate::events`]). The common case (every group active) costs admission one relaxed
//! atomic load ([`PortGroups::all_active`]).

use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use esos_common::sync::LockExt as _;

use crate::Unit;
use crate::events::{Audience, Event, Session};
use crate::state_file::{self, StateFileError};

/// Most port groups one server may have; bounds what a report of the table carries.
pub const MAX_PORT_GROUPS: usize = 256;
/// Most relative target ports in one group (SCSI's TARGET PORT COUNT is one byte).
pub const MAX_PORTS_PER_GROUP: usize = 255;

/// Access state of a port group. Protocols map these to their own codes (SPC-4 table 35;
/// NVMe ANA states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessState {
    ActiveOptimized,
    ActiveNonOptimized,
    Standby,
    Unavailable,
    /// Only set by the target ([`PortGroups::set_state`]), never asked for by an initiator.
    Transitioning,
}

const ALL_STATES: [AccessState; 5] = [
    AccessState::ActiveOptimized,
    AccessState::ActiveNonOptimized,
    AccessState::Standby,
    AccessState::Unavailable,
    AccessState::Transitioning,
];

impl AccessState {
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

    fn index(self) -> u8 {
        self as u8
    }

    fn from_index(i: u8) -> AccessState {
        ALL_STATES
            .get(usize::from(i))
            .copied()
            .unwrap_or(AccessState::Unavailable)
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
        ALL_STATES.into_iter().find(|a| a.as_str() == s).ok_or(())
    }
}

/// Who may change states (SCSI reports it as TPGS in standard INQUIRY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessMode {
    /// Only the target changes states.
    #[default]
    Implicit,
    /// Only initiators change states (SCSI SET TARGET PORT GROUPS).
    Explicit,
    /// Both.
    Both,
}

impl AccessMode {
    /// True when initiators may change states.
    pub fn explicit(self) -> bool {
        self != AccessMode::Implicit
    }
}

/// Why a group is in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ChangeCause {
    /// Configured so, not changed since start.
    None = 0,
    /// An initiator asked for it.
    Explicit = 1,
    /// The target changed it on its own (management, failover).
    Implicit = 2,
}

impl ChangeCause {
    fn from_u8(v: u8) -> ChangeCause {
        match v {
            1 => ChangeCause::Explicit,
            2 => ChangeCause::Implicit,
            _ => ChangeCause::None,
        }
    }
}

/// One configured port group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub id: u16,
    pub state: AccessState,
    /// Relative target port identifiers (for iSCSI: the portal group tags).
    pub ports: Vec<u16>,
}

/// A table that cannot be built or a change that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
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

#[derive(Debug)]
struct Group {
    id: u16,
    ports: Box<[u16]>,
    /// Configured state: the state file applies a saved state only over this one.
    configured: AccessState,
    state: AtomicU8,
    cause: AtomicU8,
}

impl Group {
    fn state(&self) -> AccessState {
        AccessState::from_index(self.state.load(Ordering::Relaxed))
    }

    fn view(&self) -> GroupView<'_> {
        GroupView {
            id: self.id,
            state: self.state(),
            cause: ChangeCause::from_u8(self.cause.load(Ordering::Relaxed)),
            ports: &self.ports,
        }
    }
}

/// A group as reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupView<'a> {
    pub id: u16,
    pub state: AccessState,
    pub cause: ChangeCause,
    /// Ascending.
    pub ports: &'a [u16],
}

/// The server's port groups and their current access states.
///
/// Membership is keyed by relative target port, so front-ends need to know nothing
/// about groups beyond the port a session came in on. A port in no group (and every
/// port, when no group is configured) is its own active/optimized group.
#[derive(Debug, Default)]
pub struct PortGroups {
    mode: AccessMode,
    /// Ascending by id.
    groups: Box<[Group]>,
    /// (relative target port, index into `groups`), ascending by port.
    ports: Box<[(u16, usize)]>,
    /// Groups not in an active state; 0 lets admission skip the lookup.
    inaccessible: AtomicU32,
    /// Units whose front-ends hear of state changes through their events.
    units: Mutex<Vec<Weak<Unit>>>,
    /// Where changes are kept across restarts.
    state_file: Option<PathBuf>,
    /// Serialises changes, so the counter, the file and the states agree.
    change: Mutex<()>,
}

impl PortGroups {
    /// Builds the table. Every port must be in exactly one group.
    pub fn new(mode: AccessMode, specs: Vec<GroupSpec>) -> Result<PortGroups, AccessError> {
        if specs.len() > MAX_PORT_GROUPS {
            return Err(AccessError::TooManyGroups);
        }
        let mut groups: Vec<Group> = Vec::with_capacity(specs.len());
        for s in specs {
            if groups.iter().any(|g| g.id == s.id) {
                return Err(AccessError::DuplicateGroup(s.id));
            }
            if s.ports.is_empty() {
                return Err(AccessError::EmptyGroup(s.id));
            }
            if s.ports.len() > MAX_PORTS_PER_GROUP {
                return Err(AccessError::TooManyPorts(s.id));
            }
            let mut ports = s.ports.clone();
            ports.sort_unstable();
            if let Some(w) = ports.windows(2).find(|w| w[0] == w[1]) {
                return Err(AccessError::DuplicatePort {
                    port: w[0],
                    group: s.id,
                });
            }
            for &port in &ports {
                if let Some(g) = groups.iter().find(|g| g.ports.contains(&port)) {
                    return Err(AccessError::PortInTwoGroups {
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
                state: AtomicU8::new(s.state.index()),
                cause: AtomicU8::new(ChangeCause::None as u8),
            });
        }
        groups.sort_by_key(|g| g.id);
        let mut ports: Vec<(u16, usize)> = groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.ports.iter().map(move |&p| (p, i)))
            .collect();
        ports.sort_unstable();
        let table = PortGroups {
            mode,
            groups: groups.into(),
            ports: ports.into(),
            ..Default::default()
        };
        table.recount();
        Ok(table)
    }

    /// Keeps changes in `path` and applies the states saved there: a saved state wins
    /// only while the group's configured state is still the one it was saved over, so
    /// editing the config always takes effect. Unknown groups in the file are ignored.
    pub fn with_state_file(mut self, path: PathBuf) -> Result<PortGroups, StateFileError> {
        for (id, configured, saved) in load(&path)? {
            if let Some(g) = self.find(id)
                && g.configured == configured
            {
                g.state.store(saved.index(), Ordering::Relaxed);
            }
        }
        self.recount();
        self.state_file = Some(path);
        Ok(self)
    }

    fn recount(&self) {
        let n = self
            .groups
            .iter()
            .filter(|g| !g.state().is_active())
            .count();
        assert!(n <= MAX_PORT_GROUPS);
        self.inaccessible.store(n as u32, Ordering::Relaxed);
    }

    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    /// True while every group is active: admission needs no lookup. One relaxed load.
    #[inline]
    pub fn all_active(&self) -> bool {
        self.inaccessible.load(Ordering::Relaxed) == 0
    }

    /// Current state of group `id`.
    pub fn state(&self, id: u16) -> Option<AccessState> {
        self.find(id).map(Group::state)
    }

    /// Group ids with their current states, ascending.
    pub fn states(&self) -> Vec<(u16, AccessState)> {
        self.groups.iter().map(|g| (g.id, g.state())).collect()
    }

    /// Every configured group, ascending by id.
    pub fn groups(&self) -> impl Iterator<Item = GroupView<'_>> {
        self.groups.iter().map(Group::view)
    }

    /// The group of relative target port `port`, `None` when it is in no group.
    pub fn group_of_port(&self, port: u16) -> Option<GroupView<'_>> {
        let i = self.ports.binary_search_by_key(&port, |&(p, _)| p).ok()?;
        Some(self.groups[self.ports[i].1].view())
    }

    /// True when group `id` exists.
    pub fn has_group(&self, id: u16) -> bool {
        self.find(id).is_some()
    }

    /// Changes a state on the target's own initiative (management API, failover): an
    /// implicit transition, posted to every session of every unit. Saved like explicit
    /// changes, so a restart does not bring back an older one.
    pub fn set_state(&self, id: u16, state: AccessState) -> Result<(), AccessError> {
        let g = self.find(id).ok_or(AccessError::NoSuchGroup(id))?;
        let _serial = self.lock();
        self.persist(&[(id, state)])
            .map_err(|e| AccessError::NotSaved(e.to_string()))?;
        if self.apply(g, state, ChangeCause::Implicit) {
            self.notify(Audience::All);
        }
        Ok(())
    }

    /// An initiator asked for these states (SCSI SET TARGET PORT GROUPS), already
    /// validated by its front-end: saves them, applies them all, and posts the change to
    /// every session but `from`, the one that asked.
    pub fn set_explicit(
        &self,
        wanted: &[(u16, AccessState)],
        from: Option<Session>,
    ) -> Result<(), AccessError> {
        if let Some(&(id, _)) = wanted.iter().find(|(id, _)| !self.has_group(*id)) {
            return Err(AccessError::NoSuchGroup(id));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let _serial = self.lock();
        self.persist(wanted)
            .map_err(|e| AccessError::NotSaved(e.to_string()))?;
        let mut changed = false;
        for &(id, state) in wanted {
            if let Some(g) = self.find(id) {
                changed |= self.apply(g, state, ChangeCause::Explicit);
            }
        }
        if changed {
            self.notify(from.map_or(Audience::All, Audience::AllBut));
        }
        Ok(())
    }

    /// Called once per unit built over this table, so its front-ends hear of changes.
    pub fn register(&self, unit: &Arc<Unit>) {
        let mut g = self.units.locked();
        g.retain(|w| w.strong_count() > 0);
        g.push(Arc::downgrade(unit));
    }

    fn find(&self, id: u16) -> Option<&Group> {
        let i = self.groups.binary_search_by_key(&id, |g| g.id).ok()?;
        Some(&self.groups[i])
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
        state_file::write(path, encode_state(&next).as_bytes())
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.change.locked()
    }

    /// Sets one state with the change lock held; true when it changed.
    fn apply(&self, g: &Group, state: AccessState, why: ChangeCause) -> bool {
        let old = g.state();
        g.cause.store(why as u8, Ordering::Relaxed);
        if old == state {
            return false;
        }
        g.state.store(state.index(), Ordering::Relaxed);
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

    /// Posts the change to every registered unit: the units that did not receive the
    /// asking command hear of it on every session.
    fn notify(&self, to: Audience<'_>) {
        let units: Vec<Arc<Unit>> = self
            .units
            .locked()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for unit in units {
            unit.events.post(Event::AccessStateChanged, to);
        }
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

/// Loads the saved states; a missing file means none.
fn load(path: &Path) -> Result<Vec<(u16, AccessState, AccessState)>, StateFileError> {
    match state_file::read(path)? {
        Some(text) => decode_state(&text, &path.display().to_string()),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests;
