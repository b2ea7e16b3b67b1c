//! Pickers and the device details modal: lists the admin chooses from, built from the
//! last snapshot.

use super::*;

impl App {
    /// The selected row of the Hosts tab as (target, group).
    pub(super) fn host_selection(&self) -> Option<(String, Option<String>)> {
        let t = self.selected_target()?.name.clone();
        let rows = self.host_rows();
        let row = rows.get(self.sel.host)?;
        Some((t, row.group.map(str::to_owned)))
    }

    pub(super) fn host_key(&mut self, c: char) {
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
    pub(super) fn pick_initiator(&mut self, target: String, group: String) {
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
    pub(super) fn pick_portal(&mut self) {
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
    pub(super) fn pick_device(&mut self, group: Option<Option<String>>) {
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
    pub(super) fn pick_unmap(&mut self, only: Option<Option<String>>) {
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

    pub(super) fn device_info(&mut self) {
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
