//! Modals drawn over the body: help, confirmation, pickers and forms.

use super::*;

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

pub(super) fn popup(f: &mut Frame, within: Rect, width: u16, height: u16, title: &str) -> Rect {
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

pub(super) fn render_modal(m: &Modal, f: &mut Frame, body: Rect) {
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

pub(super) fn picker(p: &Picker, f: &mut Frame, body: Rect) {
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

pub(super) fn render_form(form: &Form, f: &mut Frame, body: Rect) {
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
