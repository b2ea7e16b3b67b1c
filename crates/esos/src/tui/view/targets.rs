//! The Targets tab and the Hosts tab (a target's initiator groups and LUN maps).

use super::*;

pub(super) fn targets(app: &App, f: &mut Frame, area: Rect) {
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
    let luns = |l: &[crate::tui::model::Lun]| {
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

pub(super) fn hosts(app: &App, f: &mut Frame, area: Rect) {
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
