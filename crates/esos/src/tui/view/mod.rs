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
use super::model::human_bytes;

mod dashboard;
mod devices;
mod modal;
mod port_groups;
mod system;
mod targets;
#[cfg(test)]
mod tests;

use dashboard::dashboard;
use devices::devices;
use modal::render_modal;
use port_groups::port_groups;
use system::system;
use targets::{hosts, targets};

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
