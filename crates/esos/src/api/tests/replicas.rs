//! `/replicas` against in-memory replicas: the JSON the OCF agent reads, the actions, and
//! the status codes of refusals.

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use esos_block::BoxFuture;
use esos_replica::NodeName;
use esos_replica::status::{DataState, LinkState, PeerStatus, ReplicaStatus, Role};
use serde_json::json;

use super::{EXAMPLE, Fake, app, call};
use crate::cluster::{Action, ReplicaControl, RoleView};

/// A replica that does what it is asked, unless its data is not up to date.
#[derive(Debug)]
struct FakeReplica {
    state: Mutex<(ReplicaStatus, RoleView)>,
}

fn n(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

impl FakeReplica {
    fn new(device: &str, data: DataState) -> Arc<FakeReplica> {
        let status = ReplicaStatus {
            device: device.into(),
            me: n("n1"),
            role: Role::Secondary,
            data,
            generation: 0xab,
            quorate: true,
            lease_valid: false,
            primary: Some(n("n2")),
            peers: vec![PeerStatus {
                name: n("n2"),
                link: LinkState::SyncTarget,
                role: Some(Role::Primary),
                data: Some(DataState::UpToDate),
                out_of_sync_bytes: 4096,
                sync_done_bytes: 1 << 20,
                sync_total_bytes: 2 << 20,
                sync_rate_bytes_per_sec: 1000,
                verify_mismatched_chunks: 0,
                in_flight: 2,
            }],
            report: None,
        };
        let view = RoleView {
            role: Role::Secondary,
            primary: Some(n("n2")),
            transitioning: false,
            down: false,
        };
        Arc::new(FakeReplica {
            state: Mutex::new((status, view)),
        })
    }
}

impl ReplicaControl for FakeReplica {
    fn status(&self) -> ReplicaStatus {
        self.state.lock().unwrap().0.clone()
    }
    fn view(&self) -> RoleView {
        self.state.lock().unwrap().1.clone()
    }
    fn act(&self, action: Action) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut g = self.state.lock().unwrap();
            let (s, v) = &mut *g;
            match action {
                Action::Promote { force } if s.data != DataState::UpToDate && !force => {
                    return Err(format!("this node's data is {}", s.data));
                }
                Action::Promote { .. } => {
                    s.role = Role::Primary;
                    s.primary = Some(s.me.clone());
                    s.lease_valid = true;
                }
                Action::Demote => {
                    s.role = Role::Secondary;
                    s.primary = None;
                }
                Action::Down => v.down = true,
                Action::Up => v.down = false,
                Action::Verify => {}
                Action::Resolve { keep_local } => {
                    s.report = Some(format!(
                        "kept {}",
                        if keep_local { "local" } else { "peer" }
                    ))
                }
            }
            v.role = s.role;
            Ok(())
        })
    }
}

fn with_replicas() -> (Arc<Fake>, axum::Router) {
    let fake = Fake::new(EXAMPLE);
    {
        let mut r = fake.replicas.lock().unwrap();
        r.insert("db".into(), FakeReplica::new("db", DataState::UpToDate));
        r.insert("old".into(), FakeReplica::new("old", DataState::Outdated));
    }
    let app = app(&fake);
    (fake, app)
}

#[tokio::test]
async fn status_lists_every_replica_with_the_contract_names() {
    let (_, app) = with_replicas();
    let (st, body, _) = call(&app, Method::GET, "/api/v1/replicas", None).await;
    assert_eq!(st, StatusCode::OK);
    let list = body["replicas"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let db = &list[0];
    assert_eq!(db["device"], "db");
    assert_eq!(db["me"], "n1");
    assert_eq!(db["role"], "secondary");
    assert_eq!(db["data"], "up-to-date");
    assert_eq!(db["generation"], "00000000000000ab");
    assert_eq!(db["primary"], "n2");
    assert_eq!(
        (db["quorate"].clone(), db["lease_valid"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(db["down"], false);
    assert_eq!(db["report"], json!(null));
    let p = &db["peers"][0];
    assert_eq!(p["name"], "n2");
    assert_eq!(p["link"], "sync-target");
    assert_eq!(
        (p["role"].clone(), p["data"].clone()),
        (json!("primary"), json!("up-to-date"))
    );
    for (k, v) in [
        ("out_of_sync_bytes", 4096),
        ("sync_done_bytes", 1 << 20),
        ("sync_total_bytes", 2 << 20),
        ("sync_rate_bytes_per_sec", 1000),
        ("verify_mismatched_chunks", 0),
        ("in_flight", 2),
    ] {
        assert_eq!(p[k], json!(v), "{k}");
    }
    let (st, one, _) = call(&app, Method::GET, "/api/v1/replicas/old", None).await;
    assert_eq!(
        (st, one["data"].clone()),
        (StatusCode::OK, json!("outdated"))
    );
    let (st, e, _) = call(&app, Method::GET, "/api/v1/replicas/nope", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("no replicated device \"nope\""),
        "{e}"
    );
}

#[tokio::test]
async fn actions_change_the_role_and_refusals_are_409_with_the_reason() {
    let (_, app) = with_replicas();
    let post = |uri: &'static str, body: Option<&str>| {
        let app = app.clone();
        let body = body.map(str::to_owned);
        async move { call(&app, Method::POST, uri, body).await }
    };
    let (st, body, _) = post("/api/v1/replicas/db/promote", None).await;
    assert_eq!(
        (st, body["role"].clone()),
        (StatusCode::OK, json!("primary")),
        "{body}"
    );
    assert_eq!(body["primary"], "n1");
    let (st, body, _) = post("/api/v1/replicas/db/demote", None).await;
    assert_eq!(
        (st, body["role"].clone()),
        (StatusCode::OK, json!("secondary"))
    );
    let (st, body, _) = post("/api/v1/replicas/db/down", None).await;
    assert_eq!((st, body["down"].clone()), (StatusCode::OK, json!(true)));
    let (st, body, _) = post("/api/v1/replicas/db/up", None).await;
    assert_eq!((st, body["down"].clone()), (StatusCode::OK, json!(false)));
    let (st, _, _) = post("/api/v1/replicas/db/verify", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body, _) = post("/api/v1/replicas/db/resolve", Some(r#"{"keep":"peer"}"#)).await;
    assert_eq!(
        (st, body["report"].clone()),
        (StatusCode::OK, json!("kept peer"))
    );

    // An outdated node is refused, with the reason; force goes through.
    let (st, e, _) = post("/api/v1/replicas/old/promote", Some(r#"{"force":false}"#)).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(
        e["error"],
        "old: promote refused: this node's data is outdated"
    );
    let (st, body, _) = post("/api/v1/replicas/old/promote", Some(r#"{"force":true}"#)).await;
    assert_eq!(
        (st, body["role"].clone()),
        (StatusCode::OK, json!("primary"))
    );

    // Bad bodies and verbs name what is wrong.
    for (uri, body, status, needle) in [
        (
            "/api/v1/replicas/db/resolve",
            Some(r#"{"keep":"both"}"#),
            StatusCode::BAD_REQUEST,
            "keep: \"both\"",
        ),
        (
            "/api/v1/replicas/db/resolve",
            None,
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            "/api/v1/replicas/db/promote",
            Some(r#"{"forse":true}"#),
            StatusCode::BAD_REQUEST,
            "forse",
        ),
        (
            "/api/v1/replicas/db/explode",
            None,
            StatusCode::NOT_FOUND,
            "no replica action \"explode\"",
        ),
        (
            "/api/v1/replicas/nope/demote",
            None,
            StatusCode::NOT_FOUND,
            "no replicated device \"nope\"",
        ),
    ] {
        let (st, e, text) = post(uri, body).await;
        assert_eq!(st, status, "{uri}: {text}");
        assert!(
            e["error"].as_str().unwrap().contains(needle),
            "{uri}: {text}"
        );
    }
}

#[tokio::test]
async fn without_a_cluster_the_list_is_empty_and_the_document_has_the_routes() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let (st, body, _) = call(&app, Method::GET, "/api/v1/replicas", None).await;
    assert_eq!((st, body), (StatusCode::OK, json!({"replicas": []})));
    let (_, doc, _) = call(&app, Method::GET, "/api/v1/openapi.json", None).await;
    for path in [
        "/api/v1/replicas",
        "/api/v1/replicas/{device}",
        "/api/v1/replicas/{device}/{action}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    assert!(doc["components"]["schemas"].get("ReplicaInfo").is_some());
}
