//! The Port groups tab: ALUA states, live or as configured.

use super::*;
use crate::tui::model::{Alua, PortGroup, Replica};

pub(super) fn port_groups(app: &App, f: &mut Frame, area: Rect) {
    let replicas = &app.snapshot.replicas;
    let area = if replicas.is_empty() {
        area
    } else {
        let rows = replicas.iter().map(|r| r.peers.len().max(1)).sum::<usize>();
        let height = u16::try_from(rows + 3)
            .unwrap_or(u16::MAX)
            .min(area.height / 2);
        let [top, bottom] =
            Layout::vertical([Constraint::Min(4), Constraint::Length(height)]).areas(area);
        replicated(replicas, f, bottom);
        top
    };
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
pub(super) fn live_port_groups(app: &App, groups: &[PortGroup], f: &mut Frame, area: Rect) {
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

pub(super) fn alua_table(a: &Alua, f: &mut Frame, area: Rect, b: Block<'_>) {
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

/// Replicated devices: role (and the primary, seen from a secondary), data, each peer's link, what is out of sync and how far a
/// resync is. Their port groups follow the primary on their own (docs/ha.md).
pub(super) fn replicated(replicas: &[Replica], f: &mut Frame, area: Rect) {
    let b = block("Replicated devices (esos replica ...)");
    let mut rows = Vec::new();
    for r in replicas {
        let mut role = r.role.clone();
        if let Some(p) = r.primary.as_ref().filter(|_| r.role != "primary") {
            role.push_str(&format!(" ({p})"));
        }
        if r.down {
            role.push_str(" (down)");
        }
        if !r.quorate {
            role.push_str(" NO QUORUM");
        }
        if r.report.is_some() {
            role.push_str(" SPLIT");
        }
        let first = [r.device.clone(), role, r.data.clone()];
        if r.peers.is_empty() {
            rows.push(Row::new(first.clone().into_iter().chain([
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ])));
        }
        for (i, p) in r.peers.iter().enumerate() {
            let sync = match (p.sync_done_bytes.saturating_mul(100)).checked_div(p.sync_total_bytes)
            {
                Some(pct) => format!("{pct}% {}/s", human_bytes(p.sync_rate_bytes_per_sec)),
                None => "-".into(),
            };
            let lead = if i == 0 {
                first.clone()
            } else {
                Default::default()
            };
            rows.push(Row::new(lead.into_iter().chain([
                p.name.clone(),
                p.link.clone(),
                human_bytes(p.out_of_sync_bytes),
                sync,
            ])));
        }
    }
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(14),
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Min(8),
        ],
    )
    .header(header(&[
        "Device", "Role", "Data", "Peer", "Link", "Out sync", "Sync",
    ]))
    .block(b);
    f.render_widget(table, area);
}
