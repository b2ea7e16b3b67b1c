//! Drawing: a pure function of the [`App`] into a ratatui frame, laid out for 80×24 (tab
//! bar, body, status line, key hints) and growing with the terminal. Selected rows carry
//! a `>` marker as well as a colour, so they show in a plain-text screen capture too.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Cell, Clear, List, ListItem, ListState, Paragraph, Row, Table, TableState, Tabs, Wrap,
};

use super::app::{App, Level, Modal, Picker, TABS, Tab};
use super::form::{FieldKind, Form};
use super::model::{Alua, PortGroup, human_bytes};

const SELECTED: &str = "> ";

fn selected_style() -> Style {
    Style::default()
        .fg(Color::Black)
        .bg(Color::Cyan)
        .add_modifier(Modifier::BOLD)
}

fn header_style() -> Style {
    Style::default()
        .fg(Color::Yellow)
        .add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

/// Lines the status line may grow to, so a long refusal is read whole.
const MAX_STATUS_LINES: u16 = 3;

pub fn render(app: &App, f: &mut Frame) {
    let status_line = status_line(app);
    let width = usize::from(f.area().width.max(1));
    // Word wrapping may need a line more than the characters alone.
    let status_lines = match status_line.width().div_ceil(width) {
        0 | 1 => 1,
        n => (n + 1).min(usize::from(MAX_STATUS_LINES)),
    };
    let [tabs, body, status, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(status_lines as u16),
        Constraint::Length(1),
    ])
    .areas(f.area());
    render_tabs(app, f, tabs);
    match app.tab {
        Tab::Dashboard => dashboard(app, f, body),
        Tab::Devices => devices(app, f, body),
        Tab::Targets => targets(app, f, body),
        Tab::Hosts => hosts(app, f, body),
        Tab::PortGroups => port_groups(app, f, body),
        Tab::System => system(app, f, body),
    }
    f.render_widget(
        Paragraph::new(status_line).wrap(Wrap { trim: false }),
        status,
    );
    f.render_widget(Paragraph::new(hint_line(app)).style(dim()), hints);
    if let Some(m) = &app.modal {
        render_modal(m, f, body);
    }
}

fn render_tabs(app: &App, f: &mut Frame, area: Rect) {
    let titles = TABS
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, t.title()));
    let selected = TABS.iter().position(|t| *t == app.tab);
    f.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(selected_style())
            .divider("|"),
        area,
    );
}

fn status_line(app: &App) -> Line<'static> {
    if let Some(a) = &app.busy {
        Line::styled(
            format!("working: {}...", a.what()),
            Style::default().fg(Color::Yellow),
        )
    } else if let Some((level, text)) = &app.status {
        let color = match level {
            Level::Info => Color::Gray,
            Level::Ok => Color::Green,
            Level::Error => Color::Red,
        };
        let prefix = if *level == Level::Error {
            "error: "
        } else {
            ""
        };
        Line::styled(format!("{prefix}{text}"), Style::default().fg(color))
    } else if app.connected.is_none() {
        Line::styled(format!("connecting to {}", app.socket), dim())
    } else {
        Line::styled("press ? for help", dim())
    }
}

fn hint_line(app: &App) -> String {
    let tab = match (&app.modal, app.tab) {
        (Some(Modal::Form(_)), _) => "Tab/↑↓ field  ←→/space choose  Enter submit  Esc cancel",
        (Some(Modal::Confirm { .. }), _) => "y yes  n/Esc no",
        (Some(Modal::Pick(_)), _) => "↑↓ choose  Enter select  Esc cancel",
        (Some(_), _) => "Esc close",
        (None, Tab::Dashboard) => "↑↓ session  x log out",
        (None, Tab::Devices) => "a add  d remove  s resize  Enter info",
        (None, Tab::Targets) => "a/d add/rm  e on/off  m/u map/unmap  c/C CHAP  p/P portal",
        (None, Tab::Hosts) => "←→ target  a group  i/I initiator  m map  u unmap  d remove",
        (None, Tab::PortGroups) => "↑↓ group  s set state",
        (None, Tab::System) => "↑↓ scroll config",
    };
    if app.modal.is_some() {
        tab.to_owned()
    } else {
        format!("{tab}  ? help  q quit")
    }
}

fn block(title: &str) -> Block<'_> {
    Block::bordered().title(Span::styled(format!(" {title} "), header_style()))
}

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.iter().copied().map(Cell::from)).style(header_style())
}

/// A table with a selected row (marker and colour), scrolled to keep it visible.
fn selectable(f: &mut Frame, area: Rect, table: Table<'_>, selected: Option<usize>) {
    let table = table
        .row_highlight_style(selected_style())
        .highlight_symbol(SELECTED);
    let mut state = TableState::default().with_selected(selected);
    f.render_stateful_widget(table, area, &mut state);
}

fn empty(f: &mut Frame, area: Rect, b: Block<'_>, text: &str) {
    f.render_widget(
        Paragraph::new(text.to_owned())
            .style(dim())
            .wrap(Wrap { trim: true })
            .block(b),
        area,
    );
}

fn mb(bytes_per_s: f64) -> String {
    format!("{:.1}", bytes_per_s / 1e6)
}

fn dashboard(app: &App, f: &mut Frame, area: Rect) {
    let [top, mid, bottom] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Min(5),
        Constraint::Length(6),
    ])
    .areas(area);
    let s = &app.snapshot;

    let b = block("Targets");
    if s.targets.is_empty() {
        empty(
            f,
            top,
            b,
            "No target yet: add one on the Targets tab (3, then a).",
        );
    } else {
        let rows = s.targets.iter().map(|t| {
            Row::new([
                t.name.clone(),
                if t.enabled { "enabled" } else { "disabled" }.into(),
                t.sessions.to_string(),
                t.lun_count().to_string(),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Min(20),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(4),
            ],
        )
        .header(header(&["Target", "State", "Sessions", "LUNs"]))
        .block(b);
        f.render_widget(table, top);
    }

    let b = block("Devices: I/O per second (updated every second)");
    if s.devices.is_empty() {
        empty(
            f,
            mid,
            b,
            "No device yet: add one on the Devices tab (2, then a).",
        );
    } else {
        let rows = s.devices.iter().map(|d| {
            let r = app.rate_of(&d.name);
            let st = s.stats.iter().find(|x| x.name == d.name);
            let num = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            Row::new([
                d.name.clone(),
                num(r.map(|r| format!("{:.0}", r.iops))),
                num(r.map(|r| mb(r.read_bytes_per_s))),
                num(r.map(|r| mb(r.write_bytes_per_s))),
                num(st.map(|x| x.in_flight.to_string())),
                num(st.map(|x| x.errors.to_string())),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Min(16),
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(6),
            ],
        )
        .header(header(&[
            "Device",
            "IOPS",
            "Read MB/s",
            "Write MB/s",
            "In flight",
            "Errors",
        ]))
        .block(b);
        f.render_widget(table, mid);
    }

    let b = block("Sessions");
    if s.sessions.is_empty() {
        empty(f, bottom, b, "No initiator logged in.");
    } else {
        let rows = s.sessions.iter().map(|x| {
            Row::new([
                x.id.to_string(),
                x.initiator.clone(),
                x.target.clone().unwrap_or_else(|| "(discovery)".into()),
                x.peer.clone(),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(4),
                Constraint::Percentage(35),
                Constraint::Percentage(35),
                Constraint::Min(10),
            ],
        )
        .header(header(&["Id", "Initiator", "Target", "Peer"]))
        .block(b);
        selectable(f, bottom, table, Some(app.sel.session));
    }
}

fn devices(app: &App, f: &mut Frame, area: Rect) {
    let s = &app.snapshot;
    let b = block("Devices");
    if s.devices.is_empty() {
        empty(f, area, b, "No device yet. Press a to add one.");
        return;
    }
    let rows = s.devices.iter().map(|d| {
        let mut flags = Vec::new();
        if d.thin {
            flags.push("thin");
        }
        if d.read_only {
            flags.push("ro");
        }
        if !d.write_cache {
            flags.push("wt");
        }
        Row::new([
            d.name.clone(),
            d.kind.clone(),
            human_bytes(d.size_bytes),
            d.block_size.to_string(),
            flags.join(","),
            if d.exports.is_empty() {
                "-".into()
            } else {
                d.exports.join(" ")
            },
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(14),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(8),
            Constraint::Min(10),
        ],
    )
    .header(header(&[
        "Name",
        "Type",
        "Size",
        "BS",
        "Flags",
        "Exported as",
    ]))
    .block(b);
    selectable(f, area, table, Some(app.sel.device));
}

fn targets(app: &App, f: &mut Frame, area: Rect) {
    let s = &app.snapshot;
    let [list, detail] = Layout::vertical([Constraint::Min(4), Constraint::Length(9)]).areas(area);
    let b = block("Targets");
    if s.targets.is_empty() {
        empty(f, area, b, "No target yet. Press a to add one.");
        return;
    }
    let rows = s.targets.iter().map(|t| {
        Row::new([
            t.name.clone(),
            if t.enabled { "enabled" } else { "disabled" }.into(),
            t.sessions.to_string(),
            t.lun_count().to_string(),
            if t.chap { "yes" } else { "no" }.into(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(20),
            Constraint::Length(8),
            Constraint::Length(4),
            Constraint::Length(4),
            Constraint::Length(4),
        ],
    )
    .header(header(&["Name", "State", "Sess", "LUNs", "CHAP"]))
    .block(b);
    selectable(f, list, table, Some(app.sel.target));

    let Some(t) = app.selected_target() else {
        return;
    };
    let mut lines = vec![
        Line::from(format!("alias    {}", t.alias.as_deref().unwrap_or("-"))),
        Line::from(format!(
            "portals  {}",
            if t.portals.is_empty() {
                "every portal".into()
            } else {
                t.portals.join(" ")
            }
        )),
    ];
    let luns = |l: &[super::model::Lun]| {
        if l.is_empty() {
            "none".to_owned()
        } else {
            l.iter()
                .map(|x| format!("{}:{}", x.lun, x.device))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    lines.push(Line::from(match app.server_portals() {
        Ok([]) => "server   no portal (p adds one)".to_owned(),
        Ok(p) => format!(
            "server   {}",
            p.iter()
                .map(|(a, tag)| format!("{a} (tpg {tag})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(_) => "server   portals: reading the running config...".to_owned(),
    }));
    lines.push(Line::from(match &t.default_luns {
        Some(l) => format!("default  {}", luns(l)),
        None => "default  (initiators in no group are refused)".to_owned(),
    }));
    for g in &t.groups {
        lines.push(Line::from(format!(
            "group {}: {} initiator(s), LUNs {}",
            g.name,
            g.initiators.len(),
            luns(&g.luns)
        )));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block("Selected target")),
        detail,
    );
}

fn hosts(app: &App, f: &mut Frame, area: Rect) {
    let Some(t) = app.selected_target() else {
        empty(
            f,
            area,
            block("Hosts & groups"),
            "No target yet: add one on the Targets tab (3, then a).",
        );
        return;
    };
    let [head, list, detail] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(8),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("Target ", dim()),
            Span::styled(t.name.clone(), header_style()),
            Span::styled(
                format!(
                    "  ({} of {}, ←→)",
                    app.sel.target + 1,
                    app.snapshot.targets.len()
                ),
                dim(),
            ),
        ])),
        head,
    );
    let rows = app.host_rows();
    let table_rows = rows.iter().map(|r| {
        Row::new([
            r.group.unwrap_or("(default LUNs)").to_owned(),
            match r.group {
                None => "initiators in no group".to_owned(),
                Some(_) => r.initiators.join(", "),
            },
            r.luns
                .iter()
                .map(|l| format!("{}:{}", l.lun, l.device))
                .collect::<Vec<_>>()
                .join(" "),
        ])
    });
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(16),
            Constraint::Percentage(50),
            Constraint::Min(10),
        ],
    )
    .header(header(&["Group", "Initiators", "LUNs"]))
    .block(block("Hosts & groups"));
    selectable(f, list, table, Some(app.sel.host));

    let Some(r) = rows.get(app.sel.host) else {
        return;
    };
    let [ini, luns] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(detail);
    let items: Vec<ListItem> = match r.group {
        None => vec![ListItem::new(Span::styled(
            "any initiator not in a group",
            dim(),
        ))],
        Some(_) => r
            .initiators
            .iter()
            .map(|i| ListItem::new(i.clone()))
            .collect(),
    };
    f.render_widget(List::new(items).block(block("Initiators")), ini);
    let items: Vec<ListItem> = if r.luns.is_empty() {
        vec![ListItem::new(Span::styled("none (m maps one)", dim()))]
    } else {
        r.luns
            .iter()
            .map(|l| ListItem::new(format!("LUN {:<4} {}", l.lun, l.device)))
            .collect()
    };
    f.render_widget(List::new(items).block(block("LUNs")), luns);
}

fn port_groups(app: &App, f: &mut Frame, area: Rect) {
    let [main, note] = Layout::vertical([Constraint::Min(4), Constraint::Length(4)]).areas(area);
    let live = app.port_groups();
    let text = if live.is_empty() {
        "ALUA target port groups are set in the config file ([server.alua], see \
         docs/configuration.md); the daemon did not list live states, so this is the \
         configured table."
    } else {
        "s sets the selected group's state at once: every host is told (ASYMMETRIC ACCESS \
         STATE CHANGED) and it survives a restart. The groups and their portals are set \
         in [server.alua] of the config file."
    };
    f.render_widget(
        Paragraph::new(text).style(dim()).wrap(Wrap { trim: true }),
        note,
    );
    if !live.is_empty() {
        live_port_groups(app, live, f, main);
        return;
    }
    let b = block("ALUA target port groups (configured, read-only)");
    match &app.alua {
        None => empty(f, main, b, "Reading the running config..."),
        Some(Err(e)) => empty(f, main, b, e),
        Some(Ok(a)) => alua_table(a, f, main, b),
    }
}

/// The daemon's live port groups, one selectable row each, with the portals of their
/// portal groups from the config.
fn live_port_groups(app: &App, groups: &[PortGroup], f: &mut Frame, area: Rect) {
    let portals: &[(String, u32)] = app.server_portals().unwrap_or(&[]);
    let b = block("ALUA target port groups (live)");
    let [m, t] = Layout::vertical([Constraint::Length(1), Constraint::Min(2)]).areas(b.inner(area));
    f.render_widget(b, area);
    let mode = groups.first().map_or("", |g| g.mode.as_str());
    f.render_widget(Paragraph::new(format!("mode: {mode}")), m);
    let rows = groups.iter().map(|g| {
        let addrs = portals
            .iter()
            .filter(|(_, tag)| g.portal_groups.iter().any(|p| u32::from(*p) == *tag))
            .map(|(a, _)| a.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Row::new([
            g.id.to_string(),
            g.state.clone(),
            g.portal_groups
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
            addrs,
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(22),
            Constraint::Length(13),
            Constraint::Min(10),
        ],
    )
    .header(header(&["Group", "State", "Portal groups", "Portals"]));
    selectable(f, t, table, Some(app.sel.port_group));
}

fn alua_table(a: &Alua, f: &mut Frame, area: Rect, b: Block<'_>) {
    let portals_of = |tags: &[u64]| {
        a.portals
            .iter()
            .filter(|(_, g)| tags.contains(&u64::from(*g)))
            .map(|(addr, _)| addr.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (mode, rows): (String, Vec<Row>) = match &a.mode {
        Some(m) if !a.groups.is_empty() => (
            m.clone(),
            a.groups
                .iter()
                .map(|g| {
                    Row::new([
                        g.id.to_string(),
                        g.state.clone(),
                        g.portal_groups
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        portals_of(&g.portal_groups),
                    ])
                })
                .collect(),
        ),
        _ => {
            // Implicit ALUA: each portal group is its own active/optimized port group.
            let mut tags: Vec<u32> = a.portals.iter().map(|(_, g)| *g).collect();
            tags.sort_unstable();
            tags.dedup();
            (
                "implicit (no [server.alua])".into(),
                tags.iter()
                    .map(|t| {
                        Row::new([
                            t.to_string(),
                            "active-optimized".into(),
                            t.to_string(),
                            portals_of(&[u64::from(*t)]),
                        ])
                    })
                    .collect(),
            )
        }
    };
    let [m, t] = Layout::vertical([Constraint::Length(1), Constraint::Min(2)]).areas(b.inner(area));
    f.render_widget(b, area);
    f.render_widget(Paragraph::new(format!("mode: {mode}")), m);
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(6),
                Constraint::Length(22),
                Constraint::Length(13),
                Constraint::Min(10),
            ],
        )
        .header(header(&["Group", "State", "Portal groups", "Portals"])),
        t,
    );
}

/// Rows of the daemon log box on the System tab: a third of the tab, at least this many,
/// so 80x24 shows five events beside the config preview.
const MIN_DAEMON_LOG_ROWS: u16 = 7;

fn system(app: &App, f: &mut Frame, area: Rect) {
    let [info, config, daemon_log, log] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Min(3),
        Constraint::Length((area.height / 3).max(MIN_DAEMON_LOG_ROWS)),
        Constraint::Length(3),
    ])
    .areas(area);
    let state = match app.connected {
        None => "connecting".to_owned(),
        Some(true) => "connected".to_owned(),
        Some(false) => "unreachable".to_owned(),
    };
    let s = &app.snapshot;
    let sys = s.system.as_ref();
    let config_file = sys
        .and_then(|i| i.config_file.as_deref())
        .or(app.config_path.as_deref());
    let config_line = match (config_file, sys) {
        (Some(p), _) => p.to_owned(),
        (None, Some(_)) => "none: a command-line configuration, not changeable live".to_owned(),
        (None, None) => "every change is written to the daemon's config file at once".to_owned(),
    };
    let daemon = match sys {
        Some(i) => format!(
            "esos {}, pid {}, up {} (since {}), log {}",
            i.version,
            i.pid,
            crate::system::human_duration(i.uptime_s),
            i.started,
            i.log_level
        ),
        None => "not reported yet (a daemon older than GET /api/v1/system)".to_owned(),
    };
    let lines = vec![
        Line::from(format!("socket   {} ({state})", app.socket)),
        Line::from(format!("config   {config_line}")),
        Line::from(format!("daemon   {daemon}")),
        Line::from(format!(
            "objects  {} device(s), {} target(s), {} session(s)",
            s.devices.len(),
            s.targets.len(),
            s.sessions.len()
        )),
    ];
    f.render_widget(Paragraph::new(lines).block(block("System")), info);

    let text = s.config.as_deref().unwrap_or("");
    let total = text.lines().count();
    let title = format!(
        "Running config (esos config export), line {} of {total}",
        (app.sel.config_scroll + 1).min(total)
    );
    let scroll = u16::try_from(app.sel.config_scroll).unwrap_or(u16::MAX);
    f.render_widget(
        Paragraph::new(Text::raw(text))
            .scroll((scroll, 0))
            .block(block(&title)),
        config,
    );

    let events = s.daemon_log.as_deref().unwrap_or(&[]);
    let visible = usize::from(daemon_log.height.saturating_sub(2));
    let items: Vec<ListItem> = events
        .iter()
        .skip(events.len().saturating_sub(visible))
        .map(|e| {
            let colour = match e.level.as_str() {
                "error" => Color::Red,
                "warn" => Color::Yellow,
                "info" => Color::Reset,
                _ => Color::DarkGray,
            };
            ListItem::new(Line::from(vec![
                Span::styled(format!("{} ", e.clock()), dim()),
                Span::styled(
                    format!("{:<5} ", e.level.to_uppercase()),
                    Style::default().fg(colour),
                ),
                Span::raw(e.message.clone()),
            ]))
        })
        .collect();
    let title = match &s.daemon_log {
        Some(_) => "Daemon log (UTC, newest last; esos system log for more)",
        None => "Daemon log (not reported by this daemon)",
    };
    f.render_widget(List::new(items).block(block(title)), daemon_log);

    let visible = usize::from(log.height.saturating_sub(2));
    let items: Vec<ListItem> = app
        .log
        .iter()
        .skip(app.log.len().saturating_sub(visible))
        .map(|l| ListItem::new(l.clone()))
        .collect();
    f.render_widget(List::new(items).block(block("This TUI (UTC)")), log);
}

// --- modals ------------------------------------------------------------------------------

/// The keys, as the help screen lists them.
pub const HELP: &[(&str, &str)] = &[
    ("1-6 Tab S-Tab", "switch tab"),
    (
        "↑↓ j k PgUp PgDn",
        "select in a list (Home/End: first/last)",
    ),
    ("r", "refresh now (the screen also updates every second)"),
    ("? F1", "this help"),
    ("q Esc Ctrl-C", "quit (Esc closes a dialog first)"),
    ("Dashboard  x", "log out the selected session"),
    ("Devices    a d Enter", "add, remove, show details"),
    ("Devices    s", "resize (grow) the device live"),
    ("Targets    a d e", "add, remove, enable/disable"),
    (
        "Targets    m u",
        "map a device (next free LUN), unmap a LUN",
    ),
    ("Targets    c C", "set (user, secret, mutual) / clear CHAP"),
    ("Targets    p P", "add / remove a server portal"),
    ("Hosts      ←→", "choose the target"),
    (
        "Hosts      a i I d",
        "add group, add / remove initiator, rm group",
    ),
    ("Hosts      m u", "map a device to / unmap from the group"),
    ("Port groups s", "set the ALUA state of the selected group"),
    ("System     ↑↓", "scroll the running config"),
    ("Forms", "Tab ↑↓ field, ←→ space choose, Enter ok"),
    ("Dialogs", "y confirms; n or Esc cancels"),
];

fn popup(f: &mut Frame, within: Rect, width: u16, height: u16, title: &str) -> Rect {
    let w = width.min(within.width);
    let h = height.min(within.height);
    let area = Rect {
        x: within.x + (within.width - w) / 2,
        y: within.y + (within.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, area);
    let b = block(title).border_style(Style::default().fg(Color::Cyan));
    let inner = b.inner(area);
    f.render_widget(b, area);
    inner
}

fn render_modal(m: &Modal, f: &mut Frame, body: Rect) {
    match m {
        Modal::Help => {
            let inner = popup(f, body, 78, HELP.len() as u16 + 2, "Help: keys");
            let rows = HELP
                .iter()
                .map(|(k, v)| Row::new([Cell::from(*k).style(header_style()), Cell::from(*v)]));
            f.render_widget(
                Table::new(rows, [Constraint::Length(22), Constraint::Min(10)]),
                inner,
            );
        }
        Modal::Info { title, lines } => {
            let inner = popup(f, body, 76, lines.len() as u16 + 2, title);
            let text: Vec<Line> = lines.iter().map(|l| Line::from(l.clone())).collect();
            f.render_widget(Paragraph::new(text), inner);
        }
        Modal::Confirm { message, .. } => {
            let inner = popup(f, body, 64, 7, "Confirm");
            let text = vec![
                Line::from(message.clone()),
                Line::from(""),
                Line::styled("y: yes, do it    n / Esc: no", header_style()),
            ];
            f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), inner);
        }
        Modal::Pick(p) => picker(p, f, body),
        Modal::Form(form) => render_form(form, f, body),
    }
}

fn picker(p: &Picker, f: &mut Frame, body: Rect) {
    let height = (p.items.len() as u16).saturating_add(2).min(body.height);
    let inner = popup(f, body, 70, height, &p.title);
    let items: Vec<ListItem> = p
        .items
        .iter()
        .map(|(l, _)| ListItem::new(l.clone()))
        .collect();
    let mut state = ListState::default().with_selected(Some(p.selected));
    f.render_stateful_widget(
        List::new(items)
            .highlight_style(selected_style())
            .highlight_symbol(SELECTED),
        inner,
        &mut state,
    );
}

fn render_form(form: &Form, f: &mut Frame, body: Rect) {
    let inner = popup(f, body, 74, form.fields.len() as u16 + 4, &form.title);
    let label_width = 14;
    let value_width = usize::from(inner.width).saturating_sub(label_width + 3);
    let mut lines = Vec::new();
    for (i, field) in form.fields.iter().enumerate() {
        let focused = i == form.focus;
        let marker = if focused { SELECTED } else { "  " };
        let mut spans = vec![Span::raw(format!("{marker}{:<label_width$}", field.label))];
        let shown = match field.kind {
            FieldKind::Text | FieldKind::Secret => {
                // The end of a long value, where typing happens; a secret only as its length.
                let n = field.value.chars().count();
                let shown = n.min(value_width.saturating_sub(1));
                let tail: String = if field.kind == FieldKind::Secret {
                    "*".repeat(shown)
                } else {
                    field.value.chars().skip(n - shown).collect()
                };
                if focused { format!("{tail}_") } else { tail }
            }
            FieldKind::Choice(_) | FieldKind::Toggle => format!("< {} >", field.value),
        };
        let style = if focused {
            selected_style()
        } else {
            Style::default()
        };
        spans.push(Span::styled(shown, style));
        if field.value.is_empty() || !field.is_typed() {
            spans.push(Span::styled(format!("  {}", field.hint), dim()));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::from(""));
    lines.push(Line::styled(
        format!("Enter: {}    Esc: cancel    Tab: next field", form.submit),
        dim(),
    ));
    f.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::tui::model::{Device, Lun, PortGroup, Snapshot, Target};

    fn screen(app: &App) -> String {
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| render(app, f)).unwrap();
        let buf = t.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn key(app: &mut App, code: KeyCode) {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            devices: vec![Device {
                name: "scratch".into(),
                kind: "ram".into(),
                size_bytes: 64 << 20,
                block_size: 512,
                thin: true,
                write_cache: true,
                exports: vec!["iqn.2026-11.org.esos:lab/0".into()],
                ..Device::default()
            }],
            targets: vec![Target {
                name: "iqn.2026-11.org.esos:lab".into(),
                enabled: true,
                default_luns: Some(vec![Lun {
                    lun: 0,
                    device: "scratch".into(),
                }]),
                sessions: 2,
                ..Target::default()
            }],
            config: Some("[server]\n[[server.portal]]\naddress = \"127.0.0.1:3260\"\n".into()),
            ..Snapshot::default()
        }
    }

    fn app() -> App {
        let mut a = App::new("/var/lib/esos/esos.sock");
        a.on_poll(Ok(snapshot()), Instant::now());
        a
    }

    #[test]
    fn dashboard_fits_80x24() {
        let s = screen(&app());
        assert!(s.contains("1 Dashboard"), "{s}");
        assert!(s.contains("6 System"), "{s}");
        assert!(s.contains("iqn.2026-11.org.esos:lab"), "{s}");
        assert!(s.contains("enabled"), "{s}");
        assert!(s.contains("scratch"), "{s}");
        assert!(s.contains("No initiator logged in."), "{s}");
        assert!(s.contains("? help  q quit"), "{s}");
    }

    #[test]
    fn devices_tab_lists_and_marks_the_selection() {
        let mut a = app();
        key(&mut a, KeyCode::Char('2'));
        let s = screen(&a);
        let row = s.lines().find(|l| l.contains("scratch")).unwrap();
        assert!(row.contains("> scratch"), "{row}");
        assert!(row.contains("64M") && row.contains("thin"), "{row}");
        assert!(row.contains("iqn.2026-11.org.esos:lab/0"), "{row}");
    }

    #[test]
    fn help_lists_every_tab_key() {
        let mut a = app();
        key(&mut a, KeyCode::Char('?'));
        let s = screen(&a);
        assert!(s.contains("Help: keys"), "{s}");
        for k in [
            "Dashboard  x",
            "Devices    a d Enter",
            "Devices    s",
            "Targets    c C",
            "Targets    p P",
            "Hosts      a i I d",
            "Hosts      m u",
            "Port groups s",
            "System",
            "Dialogs",
        ] {
            assert!(s.contains(k), "{k} missing:\n{s}");
        }
    }

    #[test]
    fn form_and_confirmation_render() {
        let mut a = app();
        key(&mut a, KeyCode::Char('2'));
        key(&mut a, KeyCode::Char('a'));
        key(&mut a, KeyCode::Tab);
        for c in "db1".chars() {
            key(&mut a, KeyCode::Char(c));
        }
        let s = screen(&a);
        assert!(s.contains("Add device"), "{s}");
        assert!(s.contains("< file >"), "{s}");
        assert!(s.contains("> Name") && s.contains("db1_"), "{s}");
        key(&mut a, KeyCode::Esc);
        key(&mut a, KeyCode::Char('d'));
        let s = screen(&a);
        assert!(s.contains("Remove device scratch?"), "{s}");
        assert!(s.contains("y: yes"), "{s}");
    }

    #[test]
    fn errors_show_in_the_status_line() {
        let mut a = app();
        a.on_done(
            &crate::tui::action::Action::RemoveDevice("scratch".into()),
            Err("device \"scratch\": mapped in iqn.2026-11.org.esos:lab".into()),
        );
        let s = screen(&a);
        let status = s.lines().nth(22).unwrap();
        assert!(
            status.starts_with("error: device \"scratch\": mapped"),
            "{status}"
        );

        // A message longer than the screen is wide wraps instead of being cut.
        let long = format!("{}END", "word ".repeat(20));
        a.on_done(
            &crate::tui::action::Action::RemoveDevice("scratch".into()),
            Err(long),
        );
        let s = screen(&a);
        let lines: Vec<&str> = s.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("error: word"))
            .unwrap();
        assert!(lines[at + 1].contains("END"), "{s}");
        assert!(s.lines().nth(23).unwrap().contains("q quit"), "{s}");
    }

    #[test]
    fn every_tab_renders_in_80x24_and_smaller() {
        let mut a = app();
        for tab in ['1', '2', '3', '4', '5', '6'] {
            key(&mut a, KeyCode::Char(tab));
            let s = screen(&a);
            assert_eq!(s.lines().count(), 24);
            // A tiny terminal must not panic either.
            let mut t = Terminal::new(TestBackend::new(20, 5)).unwrap();
            t.draw(|f| render(&a, f)).unwrap();
            key(&mut a, KeyCode::Char('?'));
            t.draw(|f| render(&a, f)).unwrap();
            key(&mut a, KeyCode::Esc);
        }
    }

    #[test]
    fn port_groups_and_system_show_the_config() {
        let mut a = app();
        key(&mut a, KeyCode::Char('5'));
        let s = screen(&a);
        assert!(s.contains("implicit (no [server.alua])"), "{s}");
        assert!(s.contains("127.0.0.1:3260"), "{s}");
        key(&mut a, KeyCode::Char('6'));
        let s = screen(&a);
        assert!(s.contains("/var/lib/esos/esos.sock (connected)"), "{s}");
        assert!(s.contains("[[server.portal]]"), "{s}");
        assert!(s.contains("connected to /var/lib/esos/esos.sock"), "{s}");
    }

    #[test]
    fn system_shows_the_daemon_and_its_log() {
        use crate::tui::model::{LogEvent, SystemInfo};
        let mut a = app();
        key(&mut a, KeyCode::Char('6'));
        let s = screen(&a);
        assert!(s.contains("not reported yet"), "{s}");
        assert!(s.contains("Daemon log (not reported"), "{s}");
        let mut snap = snapshot();
        snap.system = Some(SystemInfo {
            version: "9.8.7".into(),
            pid: 4242,
            started: "2026-11-25T10:00:00Z".into(),
            uptime_s: 3725,
            config_file: Some("/etc/esos/esos.toml".into()),
            data_dir: "/var/lib/esos".into(),
            log_level: "info".into(),
        });
        snap.daemon_log = Some(
            (0..30)
                .map(|n| LogEvent {
                    time: format!("2026-11-25T10:00:{n:02}.000Z"),
                    level: if n == 29 { "warn" } else { "info" }.into(),
                    target: "esos".into(),
                    message: format!("event number {n}"),
                })
                .collect(),
        );
        a.on_poll(Ok(snap), Instant::now());
        let s = screen(&a);
        assert!(s.contains("esos 9.8.7, pid 4242, up 1h 2m"), "{s}");
        assert!(s.contains("config   /etc/esos/esos.toml"), "{s}");
        // The newest events that fit, newest last; the oldest are scrolled off.
        assert!(s.contains("10:00:29 WARN  event number 29"), "{s}");
        assert!(s.contains("event number 25"), "{s}");
        assert!(!s.contains("event number 3 "), "{s}");
        assert!(s.contains("[[server.portal]]"), "{s}");
        assert!(s.lines().nth(23).unwrap().trim_end().ends_with("q quit"));
        // Another tab's poll does not fetch them; the System tab keeps what it showed.
        key(&mut a, KeyCode::Char('1'));
        assert!(!a.wants_system());
        a.on_poll(Ok(snapshot()), Instant::now());
        key(&mut a, KeyCode::Char('6'));
        assert!(a.wants_system());
        assert!(screen(&a).contains("event number 29"));
    }

    #[test]
    fn key_hints_fit_80_columns_on_every_tab() {
        let mut a = app();
        for tab in ['1', '2', '3', '4', '5', '6'] {
            key(&mut a, KeyCode::Char(tab));
            let hint = hint_line(&a);
            assert!(hint.chars().count() <= 80, "{hint}");
            let s = screen(&a);
            assert!(
                s.lines().nth(23).unwrap().trim_end().ends_with("q quit"),
                "{s}"
            );
        }
        key(&mut a, KeyCode::Char('2'));
        assert!(hint_line(&a).contains("s resize"));
    }

    #[test]
    fn chap_secrets_are_masked() {
        let mut a = app();
        key(&mut a, KeyCode::Char('3'));
        key(&mut a, KeyCode::Char('c'));
        for c in "host1".chars() {
            key(&mut a, KeyCode::Char(c));
        }
        key(&mut a, KeyCode::Tab);
        for c in "topsecret123".chars() {
            key(&mut a, KeyCode::Char(c));
        }
        let s = screen(&a);
        assert!(s.contains("CHAP of iqn.2026-11.org.esos:lab"), "{s}");
        assert!(s.contains("host1"), "{s}");
        assert!(!s.contains("topsecret"), "{s}");
        assert!(s.contains("************_"), "{s}");
        assert!(s.contains("Mutual secret"), "{s}");
        assert!(s.contains("Enter: apply"), "{s}");
    }

    #[test]
    fn targets_tab_lists_the_server_portals() {
        let mut a = app();
        key(&mut a, KeyCode::Char('3'));
        let s = screen(&a);
        assert!(s.contains("server   127.0.0.1:3260 (tpg 1)"), "{s}");
        assert!(s.contains("c/C CHAP  p/P portal"), "{s}");
    }

    #[test]
    fn port_groups_show_live_states_and_the_selection() {
        let mut a = App::new("s");
        let mut snap = snapshot();
        snap.port_groups = Some(vec![
            PortGroup {
                id: 1,
                state: "active-optimized".into(),
                portal_groups: vec![1],
                mode: "explicit".into(),
            },
            PortGroup {
                id: 2,
                state: "standby".into(),
                portal_groups: vec![2],
                mode: "explicit".into(),
            },
        ]);
        a.on_poll(Ok(snap), Instant::now());
        key(&mut a, KeyCode::Char('5'));
        key(&mut a, KeyCode::Down);
        let s = screen(&a);
        assert!(s.contains("(live)") && s.contains("mode: explicit"), "{s}");
        let row = s.lines().find(|l| l.contains("standby")).unwrap();
        assert!(row.contains("> 2"), "{row}");
        let row = s.lines().find(|l| l.contains("active-optimized")).unwrap();
        assert!(row.contains("127.0.0.1:3260"), "{row}");
        assert!(s.contains("s set state"), "{s}");
        key(&mut a, KeyCode::Char('s'));
        let s = screen(&a);
        assert!(s.contains("State of port group 2"), "{s}");
        assert!(s.contains("< standby >"), "{s}");
    }

    #[test]
    fn hosts_tab_shows_the_default_map() {
        let mut a = app();
        key(&mut a, KeyCode::Char('4'));
        let s = screen(&a);
        assert!(s.contains("> (default LUNs)"), "{s}");
        assert!(s.contains("LUN 0    scratch"), "{s}");
    }
}
