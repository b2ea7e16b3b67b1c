//! Keys: global ones, then the open modal's, then the current tab's.

use super::*;

impl App {
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

    pub(super) fn move_selection(&mut self, by: isize) {
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
    pub(super) fn start(&mut self, action: Action) -> Effect {
        if self.busy.is_some() {
            self.set_status(Level::Error, "a change is in progress; wait for it");
            return Effect::None;
        }
        self.busy = Some(action.clone());
        Effect::Run(action)
    }

    /// Starts a change a form produced, asking first when it stops I/O.
    pub(super) fn submit(&mut self, action: Action) -> Effect {
        match action.confirmation() {
            Some(message) => {
                self.confirm(message, action);
                Effect::None
            }
            None => self.start(action),
        }
    }

    pub(super) fn confirm(&mut self, message: String, action: Action) {
        self.modal = Some(Modal::Confirm { message, action });
    }

    pub(super) fn modal_key(&mut self, modal: Modal, key: KeyEvent) -> Effect {
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

    pub(super) fn tab_key(&mut self, key: KeyEvent) -> Effect {
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
}
