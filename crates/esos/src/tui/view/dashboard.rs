//! The Dashboard tab: throughput, devices at a glance, sessions.

use super::*;

pub(super) fn dashboard(app: &App, f: &mut Frame, area: Rect) {
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
