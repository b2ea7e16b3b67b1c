//! Small input forms: a few labelled fields, one focused; text fields take typed
//! characters, choice fields cycle with ←/→ or space. Enter submits, Esc cancels. A form
//! turns into an [`Action`] only when its required fields are filled; everything else is
//! validated by the daemon, whose message names the field.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};

use super::action::{Action, PORT_GROUP_STATES, Secret};

/// Longest value a field takes: an iSCSI name is at most 223 bytes (RFC 7143 6.1) and a
/// path rarely more than a few hundred; this bounds what a stuck key can type.
pub const MAX_FIELD_CHARS: usize = 1024;

/// Backends offered by the add-device form, in the order ←/→ cycles them.
pub const DEVICE_KINDS: [&str; 4] = ["file", "blockdev", "ram", "null"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// Typed like text, shown as `*` (CHAP secrets).
    Secret,
    /// One of fixed values; `value` is one of them.
    Choice(&'static [&'static str]),
    /// "yes" or "no".
    Toggle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    pub kind: FieldKind,
    /// Shown greyed beside an empty field.
    pub hint: &'static str,
}

impl Field {
    fn text(label: &'static str, hint: &'static str) -> Field {
        Field {
            label,
            value: String::new(),
            kind: FieldKind::Text,
            hint,
        }
    }

    fn secret(label: &'static str, hint: &'static str) -> Field {
        Field {
            kind: FieldKind::Secret,
            ..Field::text(label, hint)
        }
    }

    /// Takes typed characters (text and secrets).
    pub fn is_typed(&self) -> bool {
        matches!(self.kind, FieldKind::Text | FieldKind::Secret)
    }
}

/// What the form adds; carries the context the fields do not (the target, the group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Device,
    Target,
    Group { target: String },
    Initiator { target: String, group: String },
    Resize { device: String },
    PortGroupState { id: u16 },
    Portal,
    Chap { target: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub title: String,
    pub purpose: Purpose,
    pub fields: Vec<Field>,
    pub focus: usize,
    /// What Enter does, for the form's footer ("create", "apply").
    pub submit: &'static str,
}

/// What a key did to a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormOutcome {
    /// Still editing.
    Editing,
    Cancel,
    /// Submitted and complete.
    Submit(Action),
    /// Submitted but incomplete: the message names the field.
    Invalid(String),
}

impl Form {
    pub fn add_device() -> Form {
        Form {
            title: "Add device".into(),
            purpose: Purpose::Device,
            fields: vec![
                Field {
                    label: "Type",
                    value: DEVICE_KINDS[0].into(),
                    kind: FieldKind::Choice(&DEVICE_KINDS),
                    hint: "←/→",
                },
                Field::text("Name", "letters, digits . _ -"),
                Field::text("Path", "file or block device (file, blockdev)"),
                Field::text("Size", "e.g. 10G (file: created; ram, null)"),
                Field {
                    label: "Thin",
                    value: "no".into(),
                    kind: FieldKind::Toggle,
                    hint: "space",
                },
            ],
            focus: 0,
            submit: "create",
        }
    }

    pub fn add_target() -> Form {
        Form {
            title: "Add target".into(),
            purpose: Purpose::Target,
            fields: vec![
                Field::text("Name", "iqn.YYYY-MM.domain:name"),
                Field::text("Alias", "optional"),
            ],
            focus: 0,
            submit: "create",
        }
    }

    pub fn add_group(target: &str) -> Form {
        Form {
            title: format!("Add group to {target}"),
            purpose: Purpose::Group {
                target: target.into(),
            },
            fields: vec![
                Field::text("Name", "group name"),
                Field::text("Initiators", "IQNs, space or comma separated"),
            ],
            focus: 0,
            submit: "create",
        }
    }

    pub fn add_initiator(target: &str, group: &str) -> Form {
        Form {
            title: format!("Add initiator to {group}"),
            purpose: Purpose::Initiator {
                target: target.into(),
                group: group.into(),
            },
            fields: vec![Field::text("Initiators", "IQNs, space or comma separated")],
            focus: 0,
            submit: "create",
        }
    }

    pub fn resize(device: &str, current: &str) -> Form {
        Form {
            title: format!("Resize {device} (now {current})"),
            purpose: Purpose::Resize {
                device: device.into(),
            },
            fields: vec![Field::text("New size", "larger, e.g. 2G (grow only)")],
            focus: 0,
            submit: "apply",
        }
    }

    /// `current` starts selected when it is one the API accepts.
    pub fn port_group_state(id: u16, current: &str) -> Form {
        let value = PORT_GROUP_STATES
            .iter()
            .find(|s| **s == current)
            .unwrap_or(&PORT_GROUP_STATES[0]);
        Form {
            title: format!("State of port group {id}"),
            purpose: Purpose::PortGroupState { id },
            fields: vec![Field {
                label: "State",
                value: (*value).into(),
                kind: FieldKind::Choice(&PORT_GROUP_STATES),
                hint: "←/→",
            }],
            focus: 0,
            submit: "apply",
        }
    }

    pub fn add_portal() -> Form {
        Form {
            title: "Add portal (bound at once)".into(),
            purpose: Purpose::Portal,
            fields: vec![
                Field::text("Address", "IPv4:port or [IPv6]:port"),
                Field::text("Group", "portal group tag (default 1)"),
            ],
            focus: 0,
            submit: "create",
        }
    }

    pub fn chap(target: &str) -> Form {
        Form {
            title: format!("CHAP of {target}"),
            purpose: Purpose::Chap {
                target: target.into(),
            },
            fields: vec![
                Field::text("User", "the initiator's CHAP name"),
                Field::secret("Secret", "12-16 characters for Windows"),
                Field::text("Mutual user", "optional: target's name"),
                Field::secret("Mutual secret", "optional: target's secret"),
            ],
            focus: 0,
            submit: "apply",
        }
    }

    fn value(&self, label: &str) -> &str {
        self.fields
            .iter()
            .find(|f| f.label == label)
            // A secret is taken as typed: spaces may be part of it.
            .map_or("", |f| {
                if f.kind == FieldKind::Secret {
                    &f.value
                } else {
                    f.value.trim()
                }
            })
    }

    pub fn on_key(&mut self, key: KeyEvent) -> FormOutcome {
        let n = self.fields.len();
        let field = &mut self.fields[self.focus];
        match key.code {
            KeyCode::Esc => return FormOutcome::Cancel,
            KeyCode::Enter => {
                return match self.to_action() {
                    Ok(a) => FormOutcome::Submit(a),
                    Err(e) => FormOutcome::Invalid(e),
                };
            }
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % n,
            KeyCode::BackTab | KeyCode::Up => self.focus = (self.focus + n - 1) % n,
            KeyCode::Left | KeyCode::Right | KeyCode::Char(' ') if !field.is_typed() => {
                let forward = key.code != KeyCode::Left;
                cycle(field, forward);
            }
            KeyCode::Backspace if field.is_typed() => {
                field.value.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                field.value.clear();
            }
            KeyCode::Char(c)
                if field.is_typed()
                    && !key.modifiers.contains(KeyModifiers::CONTROL)
                    && !c.is_control()
                    && field.value.chars().count() < MAX_FIELD_CHARS =>
            {
                field.value.push(c);
            }
            _ => {}
        }
        FormOutcome::Editing
    }

    /// The action the filled form asks for, or which required field is missing.
    pub fn to_action(&self) -> Result<Action, String> {
        let required = |label: &str| {
            let v = self.value(label);
            if v.is_empty() {
                Err(format!("{}: required", label.to_lowercase()))
            } else {
                Ok(v.to_owned())
            }
        };
        let list = |label: &str| -> Result<Vec<String>, String> {
            let v: Vec<String> = self
                .value(label)
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if v.is_empty() {
                Err(format!("{}: at least one", label.to_lowercase()))
            } else {
                Ok(v)
            }
        };
        Ok(match &self.purpose {
            Purpose::Device => {
                let name = required("Name")?;
                let mut body = json!({ "name": name, "type": self.value("Type") });
                for (label, key) in [("Path", "path"), ("Size", "size")] {
                    let v = self.value(label);
                    if !v.is_empty() {
                        body[key] = Value::from(v);
                    }
                }
                if self.value("Thin") == "yes" {
                    body["thin"] = Value::Bool(true);
                }
                Action::AddDevice { name, body }
            }
            Purpose::Target => {
                let alias = Some(self.value("Alias").to_owned()).filter(|a| !a.is_empty());
                Action::AddTarget {
                    name: required("Name")?,
                    alias,
                }
            }
            Purpose::Group { target } => Action::AddGroup {
                target: target.clone(),
                name: required("Name")?,
                initiators: list("Initiators")?,
            },
            Purpose::Initiator { target, group } => Action::AddInitiators {
                target: target.clone(),
                group: group.clone(),
                initiators: list("Initiators")?,
            },
            Purpose::Resize { device } => Action::ResizeDevice {
                name: device.clone(),
                size: required("New size")?,
            },
            Purpose::PortGroupState { id } => Action::SetPortGroupState {
                id: *id,
                state: required("State")?,
            },
            Purpose::Portal => {
                let group = match self.value("Group") {
                    "" => None,
                    g => Some(g.parse::<u32>().map_err(|_| {
                        format!("group: {g:?} is not a portal group tag (a number)")
                    })?),
                };
                Action::AddPortal {
                    address: required("Address")?,
                    group,
                }
            }
            Purpose::Chap { target } => {
                let optional =
                    |label: &str| Some(self.value(label).to_owned()).filter(|v| !v.is_empty());
                Action::SetChap {
                    target: target.clone(),
                    user: required("User")?,
                    secret: Secret(required("Secret")?),
                    mutual_user: optional("Mutual user"),
                    mutual_secret: optional("Mutual secret").map(Secret),
                }
            }
        })
    }
}

fn cycle(field: &mut Field, forward: bool) {
    match field.kind {
        FieldKind::Toggle => {
            field.value = if field.value == "yes" { "no" } else { "yes" }.into();
        }
        FieldKind::Choice(options) => {
            let i = options.iter().position(|o| *o == field.value).unwrap_or(0);
            let n = options.len();
            let j = if forward {
                (i + 1) % n
            } else {
                (i + n - 1) % n
            };
            field.value = options[j].into();
        }
        FieldKind::Text | FieldKind::Secret => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(f: &mut Form, s: &str) {
        for c in s.chars() {
            assert_eq!(f.on_key(key(KeyCode::Char(c))), FormOutcome::Editing);
        }
    }

    #[test]
    fn add_device_form_builds_the_body() {
        let mut f = Form::add_device();
        f.on_key(key(KeyCode::Right));
        f.on_key(key(KeyCode::Right));
        assert_eq!(f.fields[0].value, "ram");
        f.on_key(key(KeyCode::Left));
        f.on_key(key(KeyCode::Right));
        f.on_key(key(KeyCode::Tab));
        typed(&mut f, "scratchx");
        f.on_key(key(KeyCode::Backspace));
        f.on_key(key(KeyCode::Tab));
        f.on_key(key(KeyCode::Tab));
        typed(&mut f, "64M");
        f.on_key(key(KeyCode::Down));
        f.on_key(key(KeyCode::Char(' ')));
        let FormOutcome::Submit(a) = f.on_key(key(KeyCode::Enter)) else {
            panic!("not submitted: {f:?}")
        };
        assert_eq!(
            a,
            Action::AddDevice {
                name: "scratch".into(),
                body: json!({ "name": "scratch", "type": "ram", "size": "64M", "thin": true }),
            }
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let mut f = Form::add_device();
        assert_eq!(
            f.on_key(key(KeyCode::Enter)),
            FormOutcome::Invalid("name: required".into())
        );
        let mut g = Form::add_group("t");
        typed(&mut g, "esx");
        g.on_key(key(KeyCode::Tab));
        typed(&mut g, " , ");
        assert_eq!(
            g.on_key(key(KeyCode::Enter)),
            FormOutcome::Invalid("initiators: at least one".into())
        );
        g.on_key(key(KeyCode::BackTab));
        g.on_key(key(KeyCode::Tab));
        typed(&mut g, "iqn.a:1,iqn.b:2");
        assert_eq!(
            g.on_key(key(KeyCode::Enter)),
            FormOutcome::Submit(Action::AddGroup {
                target: "t".into(),
                name: "esx".into(),
                initiators: vec!["iqn.a:1".into(), "iqn.b:2".into()],
            })
        );
        assert_eq!(g.on_key(key(KeyCode::Esc)), FormOutcome::Cancel);
    }

    #[test]
    fn chap_form_keeps_secrets_as_typed() {
        let mut f = Form::chap("t");
        assert_eq!(f.fields[1].kind, FieldKind::Secret);
        typed(&mut f, "u1");
        assert_eq!(
            f.on_key(key(KeyCode::Enter)),
            FormOutcome::Invalid("secret: required".into())
        );
        f.on_key(key(KeyCode::Tab));
        typed(&mut f, " pass word ");
        f.on_key(key(KeyCode::Tab));
        f.on_key(key(KeyCode::Tab));
        typed(&mut f, "ms");
        assert_eq!(
            f.on_key(key(KeyCode::Enter)),
            FormOutcome::Submit(Action::SetChap {
                target: "t".into(),
                user: "u1".into(),
                secret: Secret(" pass word ".into()),
                mutual_user: None,
                mutual_secret: Some(Secret("ms".into())),
            })
        );
    }

    #[test]
    fn port_group_form_offers_the_settable_states() {
        let mut f = Form::port_group_state(4, "transitioning");
        assert_eq!(f.fields[0].value, PORT_GROUP_STATES[0]);
        let mut seen = Vec::new();
        for _ in 0..PORT_GROUP_STATES.len() {
            f.on_key(key(KeyCode::Char(' ')));
            seen.push(f.fields[0].value.clone());
        }
        assert_eq!(seen.last().unwrap(), PORT_GROUP_STATES[0], "cycles round");
        f.on_key(key(KeyCode::Left));
        assert_eq!(
            f.on_key(key(KeyCode::Enter)),
            FormOutcome::Submit(Action::SetPortGroupState {
                id: 4,
                state: "unavailable".into()
            })
        );
        // Typing does not change a choice.
        f.on_key(key(KeyCode::Char('x')));
        assert_eq!(f.fields[0].value, "unavailable");
    }

    #[test]
    fn portal_form_checks_the_tag() {
        let mut f = Form::add_portal();
        typed(&mut f, "192.0.2.1:3260");
        assert!(matches!(
            f.on_key(key(KeyCode::Enter)),
            FormOutcome::Submit(Action::AddPortal { group: None, .. })
        ));
        f.on_key(key(KeyCode::Tab));
        typed(&mut f, "-1");
        assert!(
            matches!(f.on_key(key(KeyCode::Enter)), FormOutcome::Invalid(e) if e.starts_with("group:"))
        );
    }

    #[test]
    fn fields_are_bounded() {
        let mut f = Form::add_target();
        for _ in 0..MAX_FIELD_CHARS + 10 {
            f.on_key(key(KeyCode::Char('x')));
        }
        assert_eq!(f.fields[0].value.len(), MAX_FIELD_CHARS);
        f.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert!(f.fields[0].value.is_empty());
    }
}
