//! The TUI's state machine, free of I/O: keys in, [`Effect`]s out; poll results and change
//! outcomes in, state updated. `super::run` does the I/O and `super::view` draws.

use std::collections::VecDeque;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::Value;

use super::action::Action;
use super::form::{Form, FormOutcome};
use super::model::{self, Alua, PortGroup, Rate, Snapshot, Stats, Target};

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

    // --- keys ------------------------------------------------------------------------------

    pub fn on_key(&mut self, key: KeyEvent) -> Effect {
        if key.kind == KeyEventKind::Release {
            return Effect::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Effect::Quit;
        }
        if let Some(modal) = self.modal.take() {
            return self.modal_key(modal, key);
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Effect::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.modal = Some(Modal::Help),
            KeyCode::Char('r') => return Effect::Refresh,
            KeyCode::Char(c @ '1'..='6') => {
                self.tab = TABS[usize::from(c as u8 - b'1')];
            }
            KeyCode::Tab => self.tab = TABS[(self.tab.index() + 1) % TABS.len()],
            KeyCode::BackTab => {
                self.tab = TABS[(self.tab.index() + TABS.len() - 1) % TABS.len()];
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home => self.move_selection(isize::MIN / 2),
            KeyCode::End => self.move_selection(isize::MAX / 2),
            _ => return self.tab_key(key),
        }
        Effect::None
    }

    fn move_selection(&mut self, by: isize) {
        let (i, n) = match self.tab {
            Tab::Dashboard => (&mut self.sel.session, self.snapshot.sessions.len()),
            Tab::Devices => (&mut self.sel.device, self.snapshot.devices.len()),
            Tab::Targets => (&mut self.sel.target, self.snapshot.targets.len()),
            Tab::Hosts => {
                let n = self.host_rows().len();
                (&mut self.sel.host, n)
            }
            Tab::System => {
                let n = self
                    .snapshot
                    .config
                    .as_deref()
                    .map_or(0, |c| c.lines().count());
                (&mut self.sel.config_scroll, n)
            }
            Tab::PortGroups => {
                let n = self.port_groups().len();
                (&mut self.sel.port_group, n)
            }
        };
        let max = n.saturating_sub(1) as isize;
        *i = (*i as isize).saturating_add(by).clamp(0, max) as usize;
    }

    /// Starts a change unless one is in flight.
    fn start(&mut self, action: Action) -> Effect {
        if self.busy.is_some() {
            self.set_status(Level::Error, "a change is in progress; wait for it");
            return Effect::None;
        }
        self.busy = Some(action.clone());
        Effect::Run(action)
    }

    /// Starts a change a form produced, asking first when it stops I/O.
    fn submit(&mut self, action: Action) -> Effect {
        match action.confirmation() {
            Some(message) => {
                self.confirm(message, action);
                Effect::None
            }
            None => self.start(action),
        }
    }

    fn confirm(&mut self, message: String, action: Action) {
        self.modal = Some(Modal::Confirm { message, action });
    }

    fn modal_key(&mut self, modal: Modal, key: KeyEvent) -> Effect {
        match modal {
            Modal::Help | Modal::Info { .. } => {
                // Any of these closes it; other keys leave it open.
                if !matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q' | '?')
                ) {
                    self.modal = Some(modal);
                }
                Effect::None
            }
            Modal::Confirm { message, action } => match key.code {
                KeyCode::Char('y' | 'Y') => self.start(action),
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.set_status(Level::Info, "cancelled");
                    Effect::None
                }
                _ => {
                    self.modal = Some(Modal::Confirm { message, action });
                    Effect::None
                }
            },
            Modal::Form(mut form) => match form.on_key(key) {
                FormOutcome::Editing => {
                    self.modal = Some(Modal::Form(form));
                    Effect::None
                }
                FormOutcome::Cancel => {
                    self.set_status(Level::Info, "cancelled");
                    Effect::None
                }
                FormOutcome::Invalid(e) => {
                    self.set_status(Level::Error, e);
                    self.modal = Some(Modal::Form(form));
                    Effect::None
                }
                FormOutcome::Submit(a) => self.submit(a),
            },
            Modal::Pick(mut p) => {
                let n = p.items.len();
                match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => {
                        self.set_status(Level::Info, "cancelled");
                        return Effect::None;
                    }
                    KeyCode::Up | KeyCode::Char('k') => p.selected = p.selected.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        p.selected = (p.selected + 1).min(n.saturating_sub(1));
                    }
                    KeyCode::Enter => {
                        let Some((label, action)) = p.items.get(p.selected).cloned() else {
                            return Effect::None;
                        };
                        if p.confirm {
                            self.confirm(format!("{}: {label}?", p.title), action);
                            return Effect::None;
                        }
                        return self.start(action);
                    }
                    _ => {}
                }
                self.modal = Some(Modal::Pick(p));
                Effect::None
            }
        }
    }

    fn tab_key(&mut self, key: KeyEvent) -> Effect {
        let KeyCode::Char(c) = key.code else {
            return match (self.tab, key.code) {
                (Tab::Devices, KeyCode::Enter) => {
                    self.device_info();
                    Effect::None
                }
                (Tab::Hosts, KeyCode::Left) => {
                    self.sel.target = self.sel.target.saturating_sub(1);
                    self.sel.host = 0;
                    Effect::None
                }
                (Tab::Hosts, KeyCode::Right) => {
                    let n = self.snapshot.targets.len();
                    self.sel.target = (self.sel.target + 1).min(n.saturating_sub(1));
                    self.sel.host = 0;
                    Effect::None
                }
                _ => Effect::None,
            };
        };
        match (self.tab, c) {
            (Tab::Dashboard, 'x') => {
                if let Some(s) = self.snapshot.sessions.get(self.sel.session) {
                    let msg = format!("Log out session {} of {}?", s.id, s.initiator);
                    self.confirm(msg, Action::CloseSession(s.id));
                }
            }
            (Tab::Devices, 'a') => self.modal = Some(Modal::Form(Form::add_device())),
            (Tab::Devices, 'd') => {
                if let Some(d) = self.snapshot.devices.get(self.sel.device) {
                    let msg = format!("Remove device {}?", d.name);
                    self.confirm(msg, Action::RemoveDevice(d.name.clone()));
                }
            }
            (Tab::Devices, 's') => {
                if let Some(d) = self.snapshot.devices.get(self.sel.device) {
                    let form = Form::resize(&d.name, &model::human_bytes(d.size_bytes));
                    self.modal = Some(Modal::Form(form));
                }
            }
            (Tab::PortGroups, 's') => match self.port_groups().get(self.sel.port_group) {
                Some(g) => {
                    self.modal = Some(Modal::Form(Form::port_group_state(g.id, &g.state)));
                }
                None => self.set_status(
                    Level::Error,
                    "the daemon lists no port group to set (GET /port-groups)",
                ),
            },
            (Tab::Targets, 'a') => self.modal = Some(Modal::Form(Form::add_target())),
            (Tab::Targets, 'c') => {
                if let Some(t) = self.selected_target() {
                    self.modal = Some(Modal::Form(Form::chap(&t.name)));
                }
            }
            (Tab::Targets, 'C') => {
                if let Some(t) = self.selected_target() {
                    if t.chap {
                        let msg = format!(
                            "Clear CHAP of {}? New logins will need no password.",
                            t.name
                        );
                        let action = Action::ClearChap(t.name.clone());
                        self.confirm(msg, action);
                    } else {
                        self.set_status(Level::Info, format!("{} has no CHAP to clear", t.name));
                    }
                }
            }
            (Tab::Targets, 'p') => self.modal = Some(Modal::Form(Form::add_portal())),
            (Tab::Targets, 'P') => self.pick_portal(),
            (Tab::Targets, 'd') => {
                if let Some(t) = self.selected_target() {
                    let mut msg = format!("Remove target {} with its groups and LUN maps?", t.name);
                    if t.sessions > 0 {
                        msg.push_str(&format!(" ({} session(s) logged in)", t.sessions));
                    }
                    let action = Action::RemoveTarget(t.name.clone());
                    self.confirm(msg, action);
                }
            }
            (Tab::Targets, 'e') => {
                if let Some(t) = self.selected_target() {
                    let action = Action::SetEnabled {
                        target: t.name.clone(),
                        enabled: !t.enabled,
                    };
                    if t.enabled && t.sessions > 0 {
                        let msg =
                            format!("Disable {} ({} session(s) logged in)?", t.name, t.sessions);
                        self.confirm(msg, action);
                    } else {
                        return self.start(action);
                    }
                }
            }
            (Tab::Targets, 'm') => self.pick_device(None),
            (Tab::Targets, 'u') => self.pick_unmap(None),
            (Tab::Hosts, 'a') => {
                if let Some(t) = self.selected_target() {
                    self.modal = Some(Modal::Form(Form::add_group(&t.name)));
                } else {
                    self.set_status(Level::Error, "no target: add one on the Targets tab");
                }
            }
            (Tab::Hosts, 'i' | 'I' | 'm' | 'u' | 'd') => self.host_key(c),
            _ => {}
        }
        Effect::None
    }

    /// The selected row of the Hosts tab as (target, group).
    fn host_selection(&self) -> Option<(String, Option<String>)> {
        let t = self.selected_target()?.name.clone();
        let rows = self.host_rows();
        let row = rows.get(self.sel.host)?;
        Some((t, row.group.map(str::to_owned)))
    }

    fn host_key(&mut self, c: char) {
        let Some((target, group)) = self.host_selection() else {
            self.set_status(Level::Error, "no target: add one on the Targets tab");
            return;
        };
        match (c, group) {
            ('m', g) => self.pick_device(Some(g)),
            ('u', g) => self.pick_unmap(Some(g)),
            ('i', Some(g)) => self.modal = Some(Modal::Form(Form::add_initiator(&target, &g))),
            ('I', Some(g)) => self.pick_initiator(target, g),
            ('d', Some(g)) => {
                let msg = format!("Remove group {g} of {target}? Its initiators lose their LUNs.");
                self.confirm(msg, Action::RemoveGroup { target, name: g });
            }
            (_, None) => self.set_status(
                Level::Error,
                "the default map has no initiators: select a group (↑/↓) or add one (a)",
            ),
            _ => {}
        }
    }

    /// Picker of one initiator of `group` to remove (after a confirmation).
    fn pick_initiator(&mut self, target: String, group: String) {
        let initiators = self
            .host_rows()
            .get(self.sel.host)
            .map(|r| r.initiators.to_vec())
            .unwrap_or_default();
        if initiators.is_empty() {
            self.set_status(Level::Error, format!("group {group} has no initiator"));
            return;
        }
        let items = initiators
            .into_iter()
            .map(|i| {
                let action = Action::RemoveInitiator {
                    target: target.clone(),
                    group: group.clone(),
                    initiator: i.clone(),
                };
                (i, action)
            })
            .collect();
        self.modal = Some(Modal::Pick(Picker {
            title: format!("Remove from {group} (its sessions lose the group's LUNs)"),
            items,
            selected: 0,
            confirm: true,
        }));
    }

    /// Picker of the server portals to remove (after a confirmation).
    fn pick_portal(&mut self) {
        let portals = match self.server_portals() {
            Ok(p) => p.to_vec(),
            Err(e) => {
                self.set_status(Level::Error, e);
                return;
            }
        };
        if portals.is_empty() {
            self.set_status(Level::Error, "no portal in the config: add one with p");
            return;
        }
        let items = portals
            .into_iter()
            .map(|(address, tag)| {
                let label = format!("{address} (portal group {tag})");
                (label, Action::RemovePortal(address))
            })
            .collect();
        self.modal = Some(Modal::Pick(Picker {
            title: "Remove portal (closes its sessions)".into(),
            items,
            selected: 0,
            confirm: true,
        }));
    }

    /// Picker of devices not yet in the chosen map. `group`: `None` from the Targets tab
    /// (the default map); `Some(g)` from the Hosts tab (`g` = `None` is the default map).
    fn pick_device(&mut self, group: Option<Option<String>>) {
        let Some(t) = self.selected_target() else {
            self.set_status(Level::Error, "no target: add one first (a)");
            return;
        };
        let group = group.flatten();
        let mapped = t.map(group.as_deref()).unwrap_or(&[]);
        let items: Vec<(String, Action)> = self
            .snapshot
            .devices
            .iter()
            .filter(|d| !mapped.iter().any(|l| l.device == d.name))
            .map(|d| {
                let label = format!(
                    "{:<20} {:<8} {:>7}",
                    d.name,
                    d.kind,
                    model::human_bytes(d.size_bytes)
                );
                let action = Action::MapLun {
                    target: t.name.clone(),
                    group: group.clone(),
                    device: d.name.clone(),
                };
                (label, action)
            })
            .collect();
        if items.is_empty() {
            self.set_status(
                Level::Error,
                "every device is already in this map: add one on the Devices tab",
            );
            return;
        }
        let to = match &group {
            Some(g) => format!("group {g}"),
            None => "default LUNs".to_owned(),
        };
        self.modal = Some(Modal::Pick(Picker {
            title: format!("Map a device ({to}, next free LUN)"),
            items,
            selected: 0,
            confirm: false,
        }));
    }

    /// Picker of the LUNs to unmap: every map of the target from the Targets tab, the
    /// selected map from the Hosts tab.
    fn pick_unmap(&mut self, only: Option<Option<String>>) {
        let Some(t) = self.selected_target() else {
            self.set_status(Level::Error, "no target: add one first (a)");
            return;
        };
        let mut maps: Vec<(Option<String>, &[model::Lun])> = Vec::new();
        if only.as_ref().is_none_or(|g| g.is_none()) {
            maps.push((None, t.default_luns.as_deref().unwrap_or(&[])));
        }
        for g in &t.groups {
            if only.as_ref().is_none_or(|o| o.as_deref() == Some(&g.name)) {
                maps.push((Some(g.name.clone()), &g.luns));
            }
        }
        let items: Vec<(String, Action)> = maps
            .into_iter()
            .flat_map(|(group, luns)| {
                luns.iter().map(move |l| {
                    let place = group.as_deref().unwrap_or("default");
                    (
                        format!("lun {:<5} {:<20} ({place})", l.lun, l.device),
                        Action::UnmapLun {
                            target: t.name.clone(),
                            group: group.clone(),
                            lun: l.lun,
                        },
                    )
                })
            })
            .collect();
        if items.is_empty() {
            self.set_status(Level::Error, "no LUN mapped here");
            return;
        }
        self.modal = Some(Modal::Pick(Picker {
            title: "Unmap".into(),
            items,
            selected: 0,
            confirm: true,
        }));
    }

    fn device_info(&mut self) {
        let Some(d) = self.snapshot.devices.get(self.sel.device) else {
            return;
        };
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut lines = vec![
            format!("type        {}", d.kind),
            format!("path        {}", d.path.as_deref().unwrap_or("-")),
            format!(
                "size        {} ({} bytes)",
                model::human_bytes(d.size_bytes),
                d.size_bytes
            ),
            format!("block size  {}", d.block_size),
            format!("thin        {}", yes(d.thin)),
            format!("read-only   {}", yes(d.read_only)),
            format!(
                "cache       {}",
                if d.write_cache {
                    "write-back"
                } else {
                    "write-through"
                }
            ),
            format!("serial      {}", d.serial),
            format!("NAA         {}", d.naa),
        ];
        if let Some(s) = self.snapshot.stats.iter().find(|s| s.name == d.name) {
            lines.push(format!(
                "I/O         {} reads, {} writes, {} errors",
                s.read_commands, s.write_commands, s.errors
            ));
        }
        if d.exports.is_empty() {
            lines.push("exported    nowhere (map it on the Targets tab)".into());
        }
        for (i, e) in d.exports.iter().enumerate() {
            let label = if i == 0 { "exported" } else { "" };
            lines.push(format!("{label:<12}{e}"));
        }
        self.modal = Some(Modal::Info {
            title: format!("Device {}", d.name),
            lines,
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::model::{Device, Group, Lun, Session};
    use serde_json::json;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ch(c: char) -> KeyEvent {
        key(KeyCode::Char(c))
    }

    fn dev(name: &str) -> Device {
        Device {
            name: name.into(),
            kind: "ram".into(),
            size_bytes: 8 << 20,
            block_size: 512,
            ..Device::default()
        }
    }

    pub(crate) fn sample() -> Snapshot {
        Snapshot {
            devices: vec![dev("d0"), dev("d1"), dev("d2")],
            targets: vec![Target {
                name: "iqn.2026-11.org.esos:t".into(),
                enabled: true,
                default_luns: Some(vec![Lun {
                    lun: 0,
                    device: "d0".into(),
                }]),
                groups: vec![Group {
                    name: "esx".into(),
                    initiators: vec!["iqn.1998-01.com.vmware:h1".into()],
                    luns: vec![Lun {
                        lun: 0,
                        device: "d1".into(),
                    }],
                }],
                sessions: 1,
                ..Target::default()
            }],
            sessions: vec![Session {
                id: 7,
                initiator: "iqn.1998-01.com.vmware:h1".into(),
                target: Some("iqn.2026-11.org.esos:t".into()),
                ..Session::default()
            }],
            stats: vec![],
            port_groups: Some(vec![
                PortGroup {
                    id: 1,
                    state: "active-optimized".into(),
                    portal_groups: vec![1],
                    mode: "both".into(),
                },
                PortGroup {
                    id: 2,
                    state: "active-non-optimized".into(),
                    portal_groups: vec![2],
                    mode: "both".into(),
                },
            ]),
            config: Some(
                "[server]\n[[server.portal]]\naddress = \"192.0.2.1:3260\"\n\
                 [[server.portal]]\naddress = \"[2001:db8::1]:3260\"\ngroup = 2\n"
                    .into(),
            ),
            ..Snapshot::default()
        }
    }

    fn app() -> App {
        let mut a = App::new("/run/esos.sock");
        a.on_poll(Ok(sample()), Instant::now());
        a
    }

    #[test]
    fn tabs_switch_by_number_and_tab_and_quit() {
        let mut a = app();
        assert_eq!(a.on_key(ch('3')), Effect::None);
        assert_eq!(a.tab, Tab::Targets);
        a.on_key(key(KeyCode::Tab));
        assert_eq!(a.tab, Tab::Hosts);
        a.on_key(key(KeyCode::BackTab));
        a.on_key(key(KeyCode::BackTab));
        a.on_key(key(KeyCode::BackTab));
        assert_eq!(a.tab, Tab::Dashboard);
        a.on_key(key(KeyCode::BackTab));
        assert_eq!(a.tab, Tab::System);
        assert_eq!(a.on_key(ch('r')), Effect::Refresh);
        assert_eq!(a.on_key(ch('q')), Effect::Quit);
        assert_eq!(a.on_key(key(KeyCode::Esc)), Effect::Quit);
    }

    #[test]
    fn help_takes_keys_until_closed() {
        let mut a = app();
        a.on_key(ch('?'));
        assert_eq!(a.modal, Some(Modal::Help));
        assert_eq!(a.on_key(ch('4')), Effect::None);
        assert_eq!(
            a.tab,
            Tab::Dashboard,
            "keys under the help screen do nothing"
        );
        assert_eq!(
            a.on_key(key(KeyCode::Esc)),
            Effect::None,
            "Esc closes, not quits"
        );
        assert!(a.modal.is_none());
    }

    #[test]
    fn removing_a_device_needs_confirmation() {
        let mut a = app();
        a.on_key(ch('2'));
        a.on_key(key(KeyCode::Down));
        assert_eq!(a.on_key(ch('d')), Effect::None);
        assert!(matches!(&a.modal, Some(Modal::Confirm { message, .. }) if message.contains("d1")));
        a.on_key(ch('x'));
        assert!(a.modal.is_some(), "other keys leave the question open");
        assert_eq!(a.on_key(ch('n')), Effect::None);
        assert!(a.modal.is_none() && a.busy.is_none());

        a.on_key(ch('d'));
        assert_eq!(
            a.on_key(ch('y')),
            Effect::Run(Action::RemoveDevice("d1".into()))
        );
        // One change at a time.
        a.on_key(ch('d'));
        assert_eq!(a.on_key(ch('y')), Effect::None);
        assert_eq!(a.status.as_ref().unwrap().0, Level::Error);
        a.on_done(
            &Action::RemoveDevice("d1".into()),
            Err("device \"d1\": in use".into()),
        );
        assert_eq!(
            a.status,
            Some((Level::Error, "device \"d1\": in use".into()))
        );
        assert!(a.busy.is_none());
        assert!(
            a.log
                .back()
                .unwrap()
                .ends_with("refused: device \"d1\": in use")
        );
    }

    #[test]
    fn add_device_then_map_it() {
        let mut a = app();
        a.on_key(ch('2'));
        a.on_key(ch('a'));
        a.on_key(key(KeyCode::Right));
        a.on_key(key(KeyCode::Right));
        a.on_key(key(KeyCode::Tab));
        for c in "d3".chars() {
            a.on_key(ch(c));
        }
        a.on_key(key(KeyCode::Tab));
        a.on_key(key(KeyCode::Tab));
        for c in "16M".chars() {
            a.on_key(ch(c));
        }
        let Effect::Run(add) = a.on_key(key(KeyCode::Enter)) else {
            panic!("no run: {:?}", a.status)
        };
        assert_eq!(
            add,
            Action::AddDevice {
                name: "d3".into(),
                body: json!({ "name": "d3", "type": "ram", "size": "16M" })
            }
        );
        a.on_done(&add, Ok(json!({ "dry_run": false, "report": {} })));
        assert_eq!(a.status, Some((Level::Ok, "device d3 added".into())));

        // Map: the picker offers only devices not yet in the default map.
        a.on_key(ch('3'));
        a.on_key(ch('m'));
        let Some(Modal::Pick(p)) = &a.modal else {
            panic!("no picker")
        };
        let names: Vec<_> = p
            .items
            .iter()
            .map(|(l, _)| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(names, ["d1", "d2"]);
        a.on_key(key(KeyCode::Down));
        a.on_key(key(KeyCode::Down));
        assert_eq!(
            a.on_key(key(KeyCode::Enter)),
            Effect::Run(Action::MapLun {
                target: "iqn.2026-11.org.esos:t".into(),
                group: None,
                device: "d2".into()
            })
        );
    }

    #[test]
    fn hosts_tab_acts_on_the_selected_group() {
        let mut a = app();
        a.on_key(ch('4'));
        assert_eq!(a.host_rows().len(), 2);
        a.on_key(ch('i'));
        assert!(a.modal.is_none(), "the default map has no initiators");
        assert_eq!(a.status.as_ref().unwrap().0, Level::Error);
        a.on_key(key(KeyCode::Down));
        a.on_key(ch('m'));
        let Some(Modal::Pick(p)) = &a.modal else {
            panic!("no picker")
        };
        assert_eq!(p.items.len(), 2, "d1 is already in group esx");
        assert!(matches!(&p.items[0].1, Action::MapLun { group: Some(g), .. } if g == "esx"));
        a.on_key(key(KeyCode::Esc));
        a.on_key(ch('u'));
        a.on_key(key(KeyCode::Enter));
        assert!(
            matches!(a.modal, Some(Modal::Confirm { .. })),
            "unmap asks first"
        );
        assert_eq!(
            a.on_key(ch('y')),
            Effect::Run(Action::UnmapLun {
                target: "iqn.2026-11.org.esos:t".into(),
                group: Some("esx".into()),
                lun: 0
            })
        );
        a.on_done(
            &Action::UnmapLun {
                target: "t".into(),
                group: None,
                lun: 0,
            },
            Ok(json!({})),
        );
        a.on_key(ch('d'));
        assert!(
            matches!(&a.modal, Some(Modal::Confirm { action: Action::RemoveGroup { name, .. }, .. }) if name == "esx")
        );
    }

    #[test]
    fn disabling_a_target_with_sessions_asks_first() {
        let mut a = app();
        a.on_key(ch('3'));
        assert_eq!(a.on_key(ch('e')), Effect::None);
        assert!(matches!(a.modal, Some(Modal::Confirm { .. })));
        assert_eq!(
            a.on_key(ch('y')),
            Effect::Run(Action::SetEnabled {
                target: "iqn.2026-11.org.esos:t".into(),
                enabled: false
            })
        );
    }

    #[test]
    fn polls_compute_rates_and_report_the_connection() {
        let mut a = App::new("s");
        let t0 = Instant::now();
        let mut s = sample();
        s.stats = vec![Stats {
            name: "d0".into(),
            read_commands: 100,
            ..Stats::default()
        }];
        a.on_poll(Ok(s.clone()), t0);
        assert!(a.rate_of("d0").is_none());
        s.stats[0].read_commands = 300;
        a.on_poll(Ok(s), t0 + std::time::Duration::from_secs(2));
        assert_eq!(a.rate_of("d0").unwrap().iops, 100.0);

        a.on_poll(Err("connection refused".into()), Instant::now());
        assert_eq!(a.connected, Some(false));
        assert!(a.rate_of("d0").is_none());
        assert!(a.status.as_ref().unwrap().1.contains("connection refused"));
        a.on_poll(Ok(Snapshot::default()), Instant::now());
        assert_eq!(a.status.as_ref().unwrap().0, Level::Ok);
        assert_eq!(a.sel.device, 0);
    }

    #[test]
    fn selections_stay_in_their_lists() {
        let mut a = app();
        a.on_key(ch('2'));
        a.on_key(key(KeyCode::End));
        assert_eq!(a.sel.device, 2);
        a.on_key(key(KeyCode::Down));
        assert_eq!(a.sel.device, 2);
        let mut s = sample();
        s.devices.truncate(1);
        a.on_poll(Ok(s), Instant::now());
        assert_eq!(a.sel.device, 0);
        a.on_key(key(KeyCode::Home));
        a.on_key(key(KeyCode::Up));
        assert_eq!(a.sel.device, 0);
    }

    #[test]
    fn a_poll_without_config_keeps_the_last_one() {
        let mut a = app();
        let mut s = sample();
        s.config = None;
        a.on_poll(Ok(s), Instant::now());
        assert_eq!(a.snapshot.config, sample().config);
        assert!(!a.wants_config());
        a.on_key(ch('6'));
        assert!(a.wants_config());
        a.on_key(ch('3'));
        assert!(a.wants_config(), "the Targets tab shows the portals");
    }

    #[test]
    fn resize_form_sends_the_new_size_and_shows_a_refusal() {
        let mut a = app();
        a.on_key(ch('2'));
        a.on_key(key(KeyCode::Down));
        a.on_key(ch('s'));
        let Some(Modal::Form(f)) = &a.modal else {
            panic!("no form")
        };
        assert_eq!(f.title, "Resize d1 (now 8M)");
        assert_eq!(
            a.on_key(key(KeyCode::Enter)),
            Effect::None,
            "a size is required"
        );
        assert_eq!(a.status, Some((Level::Error, "new size: required".into())));
        for c in "2G".chars() {
            a.on_key(ch(c));
        }
        let want = Action::ResizeDevice {
            name: "d1".into(),
            size: "2G".into(),
        };
        assert_eq!(a.on_key(key(KeyCode::Enter)), Effect::Run(want.clone()));
        assert!(a.modal.is_none());
        let refusal = "device \"d1\": a RAM device cannot be resized";
        a.on_done(&want, Err(refusal.into()));
        assert_eq!(a.status, Some((Level::Error, refusal.into())));
        a.on_done(&want, Ok(serde_json::Value::Null));
        assert_eq!(
            a.status,
            Some((Level::Ok, "device d1 resized to 2G".into()))
        );
    }

    #[test]
    fn port_group_state_asks_before_stopping_io() {
        let mut a = app();
        a.on_key(ch('5'));
        a.on_key(key(KeyCode::End));
        assert_eq!(a.sel.port_group, 1);
        a.on_key(ch('s'));
        let Some(Modal::Form(f)) = &a.modal else {
            panic!("no form")
        };
        assert_eq!(
            f.fields[0].value, "active-non-optimized",
            "starts at the current state"
        );
        // To active/optimized: no question.
        a.on_key(key(KeyCode::Left));
        assert_eq!(
            a.on_key(key(KeyCode::Enter)),
            Effect::Run(Action::SetPortGroupState {
                id: 2,
                state: "active-optimized".into()
            })
        );
        a.on_done(
            &Action::SetPortGroupState {
                id: 2,
                state: "active-optimized".into(),
            },
            Ok(serde_json::Value::Null),
        );
        // To standby: asks, and n keeps it.
        a.on_key(ch('s'));
        a.on_key(key(KeyCode::Right));
        assert_eq!(a.on_key(key(KeyCode::Enter)), Effect::None);
        let Some(Modal::Confirm { message, .. }) = &a.modal else {
            panic!("no confirmation: {:?}", a.modal)
        };
        assert!(
            message.contains("standby") && message.contains("I/O"),
            "{message}"
        );
        a.on_key(ch('n'));
        assert!(a.modal.is_none() && a.busy.is_none());
        // No poll came in between: the form starts at the listed active-non-optimized.
        a.on_key(ch('s'));
        for _ in 0..2 {
            a.on_key(key(KeyCode::Right));
        }
        a.on_key(key(KeyCode::Enter));
        assert_eq!(
            a.on_key(ch('y')),
            Effect::Run(Action::SetPortGroupState {
                id: 2,
                state: "unavailable".into()
            })
        );

        // A daemon that does not list port groups: nothing to set, said so.
        let mut b = app();
        let mut s = sample();
        s.port_groups = None;
        b.on_poll(Ok(s), Instant::now());
        b.on_key(ch('5'));
        b.on_key(ch('s'));
        assert!(b.modal.is_none());
        assert_eq!(b.status.as_ref().unwrap().0, Level::Error);
    }

    #[test]
    fn portals_are_added_and_removed_from_the_targets_tab() {
        let mut a = app();
        a.on_key(ch('3'));
        a.on_key(ch('p'));
        for c in "198.51.100.7:3260".chars() {
            a.on_key(ch(c));
        }
        a.on_key(key(KeyCode::Tab));
        a.on_key(ch('x'));
        assert_eq!(a.on_key(key(KeyCode::Enter)), Effect::None);
        assert!(a.status.as_ref().unwrap().1.starts_with("group: \"x\""));
        a.on_key(key(KeyCode::Backspace));
        a.on_key(ch('3'));
        assert_eq!(
            a.on_key(key(KeyCode::Enter)),
            Effect::Run(Action::AddPortal {
                address: "198.51.100.7:3260".into(),
                group: Some(3)
            })
        );
        a.on_done(
            &Action::AddPortal {
                address: "198.51.100.7:3260".into(),
                group: Some(3),
            },
            Ok(json!({})),
        );

        a.on_key(key(KeyCode::Char('P')));
        let Some(Modal::Pick(p)) = &a.modal else {
            panic!("no picker: {:?}", a.status)
        };
        assert_eq!(p.items.len(), 2);
        assert!(p.items[1].0.starts_with("[2001:db8::1]:3260"));
        a.on_key(key(KeyCode::Down));
        a.on_key(key(KeyCode::Enter));
        assert!(
            matches!(&a.modal, Some(Modal::Confirm { message, .. }) if message.contains("closes its sessions"))
        );
        assert_eq!(
            a.on_key(ch('y')),
            Effect::Run(Action::RemovePortal("[2001:db8::1]:3260".into()))
        );

        // Without the config text there is nothing to pick from.
        let mut b = App::new("s");
        let mut s = sample();
        s.config = None;
        b.on_poll(Ok(s), Instant::now());
        b.on_key(ch('3'));
        b.on_key(key(KeyCode::Char('P')));
        assert!(b.modal.is_none());
        assert_eq!(b.status.as_ref().unwrap().0, Level::Error);
    }

    #[test]
    fn chap_is_set_with_a_form_and_cleared_after_a_question() {
        let mut a = app();
        a.on_key(ch('3'));
        a.on_key(ch('c'));
        for c in "host1".chars() {
            a.on_key(ch(c));
        }
        a.on_key(key(KeyCode::Tab));
        for c in "s3cret s3cret".chars() {
            a.on_key(ch(c));
        }
        a.on_key(key(KeyCode::Tab));
        for c in "tgt".chars() {
            a.on_key(ch(c));
        }
        let Effect::Run(action) = a.on_key(key(KeyCode::Enter)) else {
            panic!("not sent: {:?}", a.status)
        };
        let t = "iqn.2026-11.org.esos:t";
        assert_eq!(
            action,
            Action::SetChap {
                target: t.into(),
                user: "host1".into(),
                secret: crate::tui::action::Secret("s3cret s3cret".into()),
                mutual_user: Some("tgt".into()),
                mutual_secret: None,
            }
        );
        // The daemon's validation message shows as it comes; the secret never does.
        let refusal = "mutual_user: mutual CHAP needs both mutual_user and mutual_secret";
        a.on_done(&action, Err(refusal.into()));
        assert_eq!(a.status, Some((Level::Error, refusal.into())));
        a.on_done(&action, Ok(json!({})));
        assert!(!a.status.as_ref().unwrap().1.contains("s3cret"));
        assert!(a.log.iter().all(|l| !l.contains("s3cret")));
        assert!(!format!("{action:?}").contains("s3cret"));

        // Clearing: only when there is CHAP, and after y.
        a.on_key(key(KeyCode::Char('C')));
        assert!(a.modal.is_none(), "no CHAP to clear");
        let mut s = sample();
        s.targets[0].chap = true;
        a.on_poll(Ok(s), Instant::now());
        a.on_key(key(KeyCode::Char('C')));
        assert!(matches!(a.modal, Some(Modal::Confirm { .. })));
        assert_eq!(a.on_key(ch('y')), Effect::Run(Action::ClearChap(t.into())));
    }

    #[test]
    fn hosts_tab_removes_one_initiator_after_a_question() {
        let mut a = app();
        a.on_key(ch('4'));
        a.on_key(key(KeyCode::Char('I')));
        assert!(a.modal.is_none(), "the default map has no initiators");
        a.on_key(key(KeyCode::Down));
        a.on_key(key(KeyCode::Char('I')));
        let Some(Modal::Pick(p)) = &a.modal else {
            panic!("no picker")
        };
        assert_eq!(p.items.len(), 1);
        a.on_key(key(KeyCode::Enter));
        assert!(
            matches!(&a.modal, Some(Modal::Confirm { message, .. }) if message.contains("iqn.1998-01.com.vmware:h1"))
        );
        assert_eq!(
            a.on_key(ch('y')),
            Effect::Run(Action::RemoveInitiator {
                target: "iqn.2026-11.org.esos:t".into(),
                group: "esx".into(),
                initiator: "iqn.1998-01.com.vmware:h1".into(),
            })
        );
    }

    #[test]
    fn log_is_bounded() {
        let mut a = app();
        for i in 0..MAX_LOG_LINES + 5 {
            a.on_done(&Action::CloseSession(i as u64), Ok(json!({})));
        }
        assert_eq!(a.log.len(), MAX_LOG_LINES);
        assert!(
            a.log
                .back()
                .unwrap()
                .ends_with(&format!("session {} logged out", MAX_LOG_LINES + 4))
        );
    }
}
