//! The TUI's state machine, free of I/O: keys in, [`Effect`]s out; poll results and change
//! outcomes in, state updated. `super::run` does the I/O and `super::view` draws.

use std::collections::VecDeque;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::Value;

use super::action::Action;
use super::form::{Form, FormOutcome};
use super::model::{self, Alua, PortGroup, Rate, Snapshot, Stats, Target};

mod keys;
mod pick;
#[cfg(test)]
mod tests;

/// Lines kept in the activity log of the System tab.
pub const MAX_LOG_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Dashboard,
    Devices,
    Targets,
    Hosts,
    PortGroups,
    System,
}

/// In the order of the tab bar and of the keys 1-6.
pub const TABS: [Tab; 6] = [
    Tab::Dashboard,
    Tab::Devices,
    Tab::Targets,
    Tab::Hosts,
    Tab::PortGroups,
    Tab::System,
];

impl Tab {
    pub fn title(self) -> &'static str {
        match self {
            Tab::Dashboard => "Dashboard",
            Tab::Devices => "Devices",
            Tab::Targets => "Targets",
            Tab::Hosts => "Hosts",
            Tab::PortGroups => "Port groups",
            Tab::System => "System",
        }
    }

    fn index(self) -> usize {
        TABS.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// A list to choose from; Enter runs the chosen item's action (after a confirmation when
/// `confirm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picker {
    pub title: String,
    pub items: Vec<(String, Action)>,
    pub selected: usize,
    pub confirm: bool,
}

/// What covers the tab: at most one at a time, and it takes every key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modal {
    Help,
    Form(Form),
    /// A destructive action waiting for `y`.
    Confirm {
        message: String,
        action: Action,
    },
    Pick(Picker),
    Info {
        title: String,
        lines: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Ok,
    Error,
}

/// What the I/O side must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    Quit,
    /// Poll now.
    Refresh,
    /// Send this change; report back with [`App::on_done`].
    Run(Action),
}

/// A row of the Hosts tab: the target's default LUN map, or one of its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow<'a> {
    /// `None`: the default map (initiators in no group).
    pub group: Option<&'a str>,
    pub initiators: &'a [String],
    pub luns: &'a [model::Lun],
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Selection {
    pub device: usize,
    pub target: usize,
    /// Row of the Hosts tab (0 = the default map).
    pub host: usize,
    pub session: usize,
    /// Row of the Port groups tab (in the daemon's live list).
    pub port_group: usize,
    /// First line of the config preview shown.
    pub config_scroll: usize,
}

pub struct App {
    pub tab: Tab,
    /// Where the daemon is, as shown on the System tab.
    pub socket: String,
    pub snapshot: Snapshot,
    /// `None` until the first poll answers.
    pub connected: Option<bool>,
    pub rates: Vec<(String, Rate)>,
    prev_stats: Option<(Vec<Stats>, Instant)>,
    pub alua: Option<Result<Alua, String>>,
    pub sel: Selection,
    pub modal: Option<Modal>,
    pub status: Option<(Level, String)>,
    /// The change in flight, if any: one at a time.
    pub busy: Option<Action>,
    /// Recent changes and connection events, newest last.
    pub log: VecDeque<String>,
    /// The config file the daemon last reported writing.
    pub config_path: Option<String>,
}

impl App {
    pub fn new(socket: impl Into<String>) -> App {
        App {
            tab: Tab::Dashboard,
            socket: socket.into(),
            snapshot: Snapshot::default(),
            connected: None,
            rates: Vec::new(),
            prev_stats: None,
            alua: None,
            sel: Selection::default(),
            modal: None,
            status: None,
            busy: None,
            log: VecDeque::new(),
            config_path: None,
        }
    }

    /// True when the visible tab shows the daemon's information and log, so the poll
    /// should fetch them (the log is read only while someone looks at it).
    pub fn wants_system(&self) -> bool {
        self.tab == Tab::System
    }

    /// True when the visible tab shows the config text (or the portals read from it), so
    /// the poll should fetch it.
    pub fn wants_config(&self) -> bool {
        matches!(self.tab, Tab::Targets | Tab::PortGroups | Tab::System)
            || self.snapshot.config.is_none()
    }

    /// The daemon's live port groups; empty when it did not list them.
    pub fn port_groups(&self) -> &[PortGroup] {
        self.snapshot.port_groups.as_deref().unwrap_or(&[])
    }

    /// `[[server.portal]]` addresses and portal group tags, from the running config.
    pub fn server_portals(&self) -> Result<&[(String, u32)], String> {
        match &self.alua {
            None => Err("the running config is not read yet; try again".into()),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(a)) => Ok(&a.portals),
        }
    }

    pub fn rate_of(&self, device: &str) -> Option<Rate> {
        self.rates
            .iter()
            .find(|(n, _)| n == device)
            .map(|(_, r)| *r)
    }

    pub fn selected_target(&self) -> Option<&Target> {
        self.snapshot.targets.get(self.sel.target)
    }

    /// The Hosts tab's rows for the selected target: its default map first, then its groups.
    pub fn host_rows(&self) -> Vec<HostRow<'_>> {
        let Some(t) = self.selected_target() else {
            return Vec::new();
        };
        let mut rows = vec![HostRow {
            group: None,
            initiators: &[],
            luns: t.default_luns.as_deref().unwrap_or(&[]),
        }];
        rows.extend(t.groups.iter().map(|g| HostRow {
            group: Some(g.name.as_str()),
            initiators: &g.initiators,
            luns: &g.luns,
        }));
        rows
    }

    fn log_line(&mut self, text: String) {
        if self.log.len() == MAX_LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(format!("{} {text}", clock()));
    }

    fn set_status(&mut self, level: Level, text: impl Into<String>) {
        self.status = Some((level, text.into()));
    }

    // --- inputs from the I/O side --------------------------------------------------------

    /// A poll answered (`Ok`) or failed (`Err`: why) at `at`.
    pub fn on_poll(&mut self, result: Result<Snapshot, String>, at: Instant) {
        match result {
            Ok(mut snap) => {
                if self.connected != Some(true) {
                    if self.connected == Some(false) {
                        self.set_status(Level::Ok, "connected to the daemon again");
                    }
                    self.log_line(format!("connected to {}", self.socket));
                }
                self.connected = Some(true);
                if let Some((prev, then)) = &self.prev_stats
                    && let Some(r) = model::rates(prev, &snap.stats, at.duration_since(*then))
                {
                    self.rates = r;
                }
                self.prev_stats = Some((snap.stats.clone(), at));
                match &snap.config {
                    Some(text) => self.alua = Some(model::parse_alua(text)),
                    None => snap.config = self.snapshot.config.take(),
                }
                // Not fetched on other tabs: keep what the System tab last showed.
                if snap.system.is_none() {
                    snap.system = self.snapshot.system.take();
                }
                if snap.daemon_log.is_none() {
                    snap.daemon_log = self.snapshot.daemon_log.take();
                }
                self.snapshot = snap;
                self.clamp();
            }
            Err(e) => {
                if self.connected != Some(false) {
                    self.log_line(format!("daemon unreachable: {e}"));
                    self.set_status(Level::Error, format!("daemon unreachable: {e}"));
                }
                self.connected = Some(false);
                self.rates.clear();
                self.prev_stats = None;
            }
        }
    }

    /// A change finished: `Ok` with the daemon's JSON answer, `Err` with its message.
    pub fn on_done(&mut self, action: &Action, result: Result<Value, String>) {
        self.busy = None;
        match result {
            Ok(answer) => {
                let mut msg = action.done_message(&answer);
                let closed = Action::sessions_closed(&answer);
                if closed > 0 {
                    msg.push_str(&format!("; {closed} session(s) logged out"));
                }
                if let Some(p) = answer["report"]["persisted_to"].as_str() {
                    self.config_path = Some(p.to_owned());
                }
                self.log_line(msg.clone());
                self.set_status(Level::Ok, msg);
            }
            Err(e) => {
                self.log_line(format!("refused: {e}"));
                self.set_status(Level::Error, e);
            }
        }
    }

    /// Keeps every selection inside its list after the lists changed.
    fn clamp(&mut self) {
        let fit = |i: &mut usize, n: usize| *i = (*i).min(n.saturating_sub(1));
        fit(&mut self.sel.device, self.snapshot.devices.len());
        fit(&mut self.sel.target, self.snapshot.targets.len());
        fit(&mut self.sel.session, self.snapshot.sessions.len());
        let groups = self.port_groups().len();
        fit(&mut self.sel.port_group, groups);
        let hosts = self.host_rows().len();
        fit(&mut self.sel.host, hosts);
    }
}

/// Wall-clock time of day (UTC) for the activity log.
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
