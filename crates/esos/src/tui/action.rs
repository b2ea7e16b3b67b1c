//! The changes the TUI can ask for, each one API request: a pure mapping to method, path
//! and body (tested here), and the message shown when the daemon accepts it.

use hyper::Method;
use serde_json::{Value, json};

use crate::client::segment;

/// A change to make through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `POST /devices`; the body is built by the form (only the fields given).
    AddDevice {
        name: String,
        body: Value,
    },
    RemoveDevice(String),
    AddTarget {
        name: String,
        alias: Option<String>,
    },
    RemoveTarget(String),
    SetEnabled {
        target: String,
        enabled: bool,
    },
    /// Map `device` at the lowest free LUN of the target's default map or of `group`.
    MapLun {
        target: String,
        group: Option<String>,
        device: String,
    },
    UnmapLun {
        target: String,
        group: Option<String>,
        lun: u64,
    },
    AddGroup {
        target: String,
        name: String,
        initiators: Vec<String>,
    },
    RemoveGroup {
        target: String,
        name: String,
    },
    AddInitiators {
        target: String,
        group: String,
        initiators: Vec<String>,
    },
    CloseSession(u64),
}

/// One HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

fn target_path(t: &str) -> String {
    format!("/api/v1/targets/{}", segment(t))
}

fn lun_path(target: &str, group: Option<&str>) -> String {
    match group {
        None => format!("{}/luns", target_path(target)),
        Some(g) => format!("{}/groups/{}/luns", target_path(target), segment(g)),
    }
}

impl Action {
    pub fn request(&self) -> Request {
        let r = |method, path: String, body| Request { method, path, body };
        match self {
            Action::AddDevice { body, .. } => {
                r(Method::POST, "/api/v1/devices".into(), Some(body.clone()))
            }
            Action::RemoveDevice(n) => r(
                Method::DELETE,
                format!("/api/v1/devices/{}", segment(n)),
                None,
            ),
            Action::AddTarget { name, alias } => {
                let mut b = json!({ "name": name });
                if let Some(a) = alias {
                    b["alias"] = a.clone().into();
                }
                r(Method::POST, "/api/v1/targets".into(), Some(b))
            }
            Action::RemoveTarget(t) => r(Method::DELETE, target_path(t), None),
            Action::SetEnabled { target, enabled } => {
                let verb = if *enabled { "enable" } else { "disable" };
                r(
                    Method::POST,
                    format!("{}/{verb}", target_path(target)),
                    None,
                )
            }
            Action::MapLun {
                target,
                group,
                device,
            } => r(
                Method::POST,
                lun_path(target, group.as_deref()),
                Some(json!({ "device": device })),
            ),
            Action::UnmapLun { target, group, lun } => r(
                Method::DELETE,
                format!("{}/{lun}", lun_path(target, group.as_deref())),
                None,
            ),
            Action::AddGroup {
                target,
                name,
                initiators,
            } => r(
                Method::POST,
                format!("{}/groups", target_path(target)),
                Some(json!({ "name": name, "initiators": initiators })),
            ),
            Action::RemoveGroup { target, name } => r(
                Method::DELETE,
                format!("{}/groups/{}", target_path(target), segment(name)),
                None,
            ),
            Action::AddInitiators {
                target,
                group,
                initiators,
            } => r(
                Method::POST,
                format!(
                    "{}/groups/{}/initiators",
                    target_path(target),
                    segment(group)
                ),
                Some(json!({ "initiators": initiators })),
            ),
            Action::CloseSession(id) => r(Method::DELETE, format!("/api/v1/sessions/{id}"), None),
        }
    }

    /// What is being done, for the status line while it runs.
    pub fn what(&self) -> String {
        match self {
            Action::AddDevice { name, .. } => format!("adding device {name}"),
            Action::RemoveDevice(n) => format!("removing device {n}"),
            Action::AddTarget { name, .. } => format!("adding target {name}"),
            Action::RemoveTarget(t) => format!("removing target {t}"),
            Action::SetEnabled { target, enabled } => format!(
                "{} {target}",
                if *enabled { "enabling" } else { "disabling" }
            ),
            Action::MapLun { target, device, .. } => format!("mapping {device} in {target}"),
            Action::UnmapLun { target, lun, .. } => format!("unmapping lun {lun} of {target}"),
            Action::AddGroup { name, .. } => format!("adding group {name}"),
            Action::RemoveGroup { name, .. } => format!("removing group {name}"),
            Action::AddInitiators { group, .. } => format!("adding initiators to {group}"),
            Action::CloseSession(id) => format!("logging out session {id}"),
        }
    }

    /// What to say once the daemon accepted it; `answer` is its JSON (the LUN chosen).
    pub fn done_message(&self, answer: &Value) -> String {
        match self {
            Action::AddDevice { name, .. } => format!("device {name} added"),
            Action::RemoveDevice(n) => format!("device {n} removed"),
            Action::AddTarget { name, .. } => {
                format!("target {name} added (disabled: map a LUN with m, then enable with e)")
            }
            Action::RemoveTarget(t) => format!("target {t} removed"),
            Action::SetEnabled { target, enabled } => {
                format!(
                    "target {target} {}",
                    if *enabled { "enabled" } else { "disabled" }
                )
            }
            Action::MapLun {
                target,
                group,
                device,
            } => {
                let lun = answer["lun"]
                    .as_u64()
                    .map_or_else(|| "?".to_owned(), |n| n.to_string());
                match group {
                    Some(g) => format!("{device} mapped at lun {lun} of {target} group {g}"),
                    None => format!("{device} mapped at lun {lun} of {target}"),
                }
            }
            Action::UnmapLun { target, lun, .. } => format!("lun {lun} of {target} unmapped"),
            Action::AddGroup { target, name, .. } => format!("group {name} added to {target}"),
            Action::RemoveGroup { target, name } => format!("group {name} removed from {target}"),
            Action::AddInitiators {
                group, initiators, ..
            } => format!("{} initiator(s) added to {group}", initiators.len()),
            Action::CloseSession(id) => format!("session {id} logged out"),
        }
    }

    /// Sessions the daemon logged out as a consequence, from the apply report.
    pub fn sessions_closed(answer: &Value) -> u64 {
        answer["report"]["sessions_closed"].as_u64().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_names_and_bodies() {
        let t = "iqn.2026-11.org.esos:t 1";
        let r = Action::MapLun {
            target: t.into(),
            group: Some("esx/i".into()),
            device: "d1".into(),
        }
        .request();
        assert_eq!(r.method, Method::POST);
        assert_eq!(
            r.path,
            "/api/v1/targets/iqn.2026-11.org.esos:t%201/groups/esx%2Fi/luns"
        );
        assert_eq!(r.body, Some(json!({ "device": "d1" })));

        let r = Action::UnmapLun {
            target: "t".into(),
            group: None,
            lun: 7,
        }
        .request();
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::DELETE, "/api/v1/targets/t/luns/7")
        );

        let r = Action::SetEnabled {
            target: "t".into(),
            enabled: false,
        }
        .request();
        assert_eq!(r.path, "/api/v1/targets/t/disable");
        assert!(r.body.is_none());

        let r = Action::AddTarget {
            name: "t".into(),
            alias: None,
        }
        .request();
        assert_eq!(r.body, Some(json!({ "name": "t" })));
        assert_eq!(
            Action::CloseSession(42).request().path,
            "/api/v1/sessions/42"
        );
    }

    #[test]
    fn messages_use_the_answer() {
        let a = Action::MapLun {
            target: "t".into(),
            group: None,
            device: "d".into(),
        };
        assert_eq!(
            a.done_message(&json!({ "lun": 3 })),
            "d mapped at lun 3 of t"
        );
        assert_eq!(a.done_message(&Value::Null), "d mapped at lun ? of t");
        assert_eq!(
            Action::sessions_closed(&json!({ "report": { "sessions_closed": 2 } })),
            2
        );
    }
}
