//! The Devices tab.

use super::*;

pub(super) fn devices(app: &App, f: &mut Frame, area: Rect) {
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
