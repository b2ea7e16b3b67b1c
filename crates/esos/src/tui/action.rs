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
    /// `PUT /devices/{name}/size`: grow a device live; the daemon refuses shrinking and
    /// backends that cannot grow.
    ResizeDevice {
        name: String,
        size: String,
    },
    /// `PUT /port-groups/{id}`: an implicit ALUA transition made by the administrator.
    SetPortGroupState {
        id: u16,
        state: String,
    },
    AddPortal {
        address: String,
        /// Target portal group tag; `None`: the daemon's default (1).
        group: Option<u32>,
    },
    RemovePortal(String),
    SetChap {
        target: String,
        user: String,
        secret: Secret,
        /// Mutual CHAP (the target proves itself to the initiator). Sent as typed: the
        /// daemon says when only one of the two is given.
        mutual_user: Option<String>,
        mutual_secret: Option<Secret>,
    },
    ClearChap(String),
    RemoveInitiator {
        target: String,
        group: String,
        initiator: String,
    },
}

/// A CHAP secret: kept out of `Debug` output, status lines and the activity log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Port group states an administrator may set (`PUT /port-groups/{id}`); transitioning is
/// only ever reported, never set (SPC-4 5.16.2.4.6).
pub const PORT_GROUP_STATES: [&str; 4] = [
    "active-optimized",
    "active-non-optimized",
    "standby",
    "unavailable",
];

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
            Action::ResizeDevice { name, size } => r(
                Method::PUT,
                format!("/api/v1/devices/{}/size", segment(name)),
                Some(json!({ "size": size })),
            ),
            Action::SetPortGroupState { id, state } => r(
                Method::PUT,
                format!("/api/v1/port-groups/{id}"),
                Some(json!({ "state": state })),
            ),
            Action::AddPortal { address, group } => {
                let mut b = json!({ "address": address });
                if let Some(g) = group {
                    b["group"] = (*g).into();
                }
                r(Method::POST, "/api/v1/portals".into(), Some(b))
            }
            Action::RemovePortal(a) => r(
                Method::DELETE,
                format!("/api/v1/portals/{}", segment(a)),
                None,
            ),
            Action::SetChap {
                target,
                user,
                secret,
                mutual_user,
                mutual_secret,
            } => {
                let mut b = json!({ "user": user, "secret": secret.0 });
                if let Some(u) = mutual_user {
                    b["mutual_user"] = u.clone().into();
                }
                if let Some(s) = mutual_secret {
                    b["mutual_secret"] = s.0.clone().into();
                }
                r(
                    Method::PUT,
                    format!("{}/chap", target_path(target)),
                    Some(b),
                )
            }
            Action::ClearChap(t) => r(Method::DELETE, format!("{}/chap", target_path(t)), None),
            Action::RemoveInitiator {
                target,
                group,
                initiator,
            } => r(
                Method::DELETE,
                format!(
                    "{}/groups/{}/initiators",
                    target_path(target),
                    segment(group)
                ),
                Some(json!({ "initiators": [initiator] })),
            ),
        }
    }

    /// The question to ask before sending a change that a form produced, when it stops
    /// I/O: a port group made standby or unavailable no longer serves reads and writes
    /// on its paths (SPC-4 5.16.2.4.4, 5.16.2.4.5), so hosts must fail over.
    pub fn confirmation(&self) -> Option<String> {
        match self {
            Action::SetPortGroupState { id, state }
                if state == "standby" || state == "unavailable" =>
            {
                Some(format!(
                    "Set port group {id} to {state}? I/O on its paths stops; hosts must \
                     use another path."
                ))
            }
            _ => None,
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
            Action::ResizeDevice { name, size } => format!("resizing {name} to {size}"),
            Action::SetPortGroupState { id, state } => {
                format!("setting port group {id} to {state}")
            }
            Action::AddPortal { address, .. } => format!("adding portal {address}"),
            Action::RemovePortal(a) => format!("removing portal {a}"),
            Action::SetChap { target, .. } => format!("setting CHAP of {target}"),
            Action::ClearChap(t) => format!("clearing CHAP of {t}"),
            Action::RemoveInitiator {
                group, initiator, ..
            } => format!("removing {initiator} from {group}"),
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
            Action::ResizeDevice { name, size } => format!("device {name} resized to {size}"),
            Action::SetPortGroupState { id, state } => format!("port group {id} is now {state}"),
            Action::AddPortal { address, group } => match group {
                Some(g) => format!("portal {address} added (portal group {g})"),
                None => format!("portal {address} added"),
            },
            Action::RemovePortal(a) => format!("portal {a} removed"),
            Action::SetChap {
                target,
                user,
                mutual_user,
                ..
            } => {
                let how = if mutual_user.is_some() {
                    "mutual CHAP"
                } else {
                    "CHAP"
                };
                format!("{how} set on {target} (user {user}); new logins must authenticate")
            }
            Action::ClearChap(t) => format!("CHAP cleared on {t}"),
            Action::RemoveInitiator {
                group, initiator, ..
            } => format!("{initiator} removed from {group}"),
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
    fn new_requests_match_the_api() {
        let r = Action::ResizeDevice {
            name: "d 1".into(),
            size: "2G".into(),
        }
        .request();
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::PUT, "/api/v1/devices/d%201/size")
        );
        assert_eq!(r.body, Some(json!({ "size": "2G" })));

        let r = Action::SetPortGroupState {
            id: 3,
            state: "standby".into(),
        }
        .request();
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::PUT, "/api/v1/port-groups/3")
        );
        assert_eq!(r.body, Some(json!({ "state": "standby" })));

        let r = Action::AddPortal {
            address: "[2001:db8::1]:3260".into(),
            group: Some(2),
        }
        .request();
        assert_eq!(r.path, "/api/v1/portals");
        assert_eq!(
            r.body,
            Some(json!({ "address": "[2001:db8::1]:3260", "group": 2 }))
        );
        let r = Action::AddPortal {
            address: "192.0.2.1:3260".into(),
            group: None,
        }
        .request();
        assert_eq!(r.body, Some(json!({ "address": "192.0.2.1:3260" })));
        let r = Action::RemovePortal("[2001:db8::1]:3260".into()).request();
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::DELETE, "/api/v1/portals/%5B2001:db8::1%5D:3260")
        );

        let r = Action::SetChap {
            target: "t".into(),
            user: "u".into(),
            secret: Secret("s".into()),
            mutual_user: Some("mu".into()),
            mutual_secret: Some(Secret("ms".into())),
        }
        .request();
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::PUT, "/api/v1/targets/t/chap")
        );
        assert_eq!(
            r.body,
            Some(json!({ "user": "u", "secret": "s", "mutual_user": "mu", "mutual_secret": "ms" }))
        );
        let r = Action::ClearChap("t".into()).request();
        assert_eq!(
            (r.method, r.path.as_str(), r.body),
            (Method::DELETE, "/api/v1/targets/t/chap", None)
        );

        let r = Action::RemoveInitiator {
            target: "t".into(),
            group: "esx".into(),
            initiator: "iqn.a:1".into(),
        }
        .request();
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::DELETE, "/api/v1/targets/t/groups/esx/initiators")
        );
        assert_eq!(r.body, Some(json!({ "initiators": ["iqn.a:1"] })));
    }

    #[test]
    fn only_states_that_stop_io_ask_first() {
        let set = |state: &str| Action::SetPortGroupState {
            id: 1,
            state: state.into(),
        };
        assert!(set("active-optimized").confirmation().is_none());
        assert!(set("active-non-optimized").confirmation().is_none());
        assert!(set("standby").confirmation().is_some());
        assert!(
            set("unavailable")
                .confirmation()
                .unwrap()
                .contains("group 1")
        );
        assert!(Action::RemovePortal("a".into()).confirmation().is_none());
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
