//! The System tab: host facts, the config preview, the daemon's log and this TUI's log.

use super::*;

/// Rows of the daemon log box on the System tab: a third of the tab, at least this many,
/// so 80x24 shows five events beside the config preview.
pub(super) const MIN_DAEMON_LOG_ROWS: u16 = 7;

pub(super) fn system(app: &App, f: &mut Frame, area: Rect) {
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
