//! The router driven request by request against an in-memory [`Control`] that validates
//! every new text with the real config code, like the manager does.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::config;
use crate::manager::{GroupInfo, LunInfo};

const EXAMPLE: &str = include_str!("../../../../examples/esos.toml");
const LAB: &str = "iqn.2026-11.org.example:lab";

struct Fake {
    text: Mutex<String>,
    /// How long an apply takes after validating (a real one opens devices meanwhile).
    apply_ms: std::sync::atomic::AtomicU64,
    sessions: Mutex<Vec<SessionInfo>>,
    log: crate::system::LogRing,
    replicas: Mutex<crate::cluster::Replicas>,
}

impl Fake {
    fn new(text: &str) -> Arc<Fake> {
        Arc::new(Fake {
            text: Mutex::new(text.to_owned()),
            apply_ms: std::sync::atomic::AtomicU64::new(1),
            sessions: Mutex::new(vec![session(7)]),
            log: crate::system::LogRing::new(),
            replicas: Mutex::default(),
        })
    }
    fn plan(&self) -> config::Plan {
        plan_of(&self.text.lock().unwrap()).unwrap()
    }
}

fn plan_of(text: &str) -> Result<config::Plan, config::ConfigError> {
    let raw = config::parse(text, "api")?;
    config::validate(&raw, &config::Source::file(std::path::Path::new("x.toml")))
}

fn session(id: u64) -> SessionInfo {
    SessionInfo {
        id,
        tsih: 1,
        initiator: "iqn.1993-08.org.debian:01:h".into(),
        isid: "400001370000".into(),
        target: Some(LAB.into()),
        portal: "127.0.0.1:3260".into(),
        peer: "127.0.0.1:50000".into(),
        since_unix: 1,
        header_digest: false,
        data_digest: false,
        initiator_max_recv_data_segment_length: 262144,
        target_max_recv_data_segment_length: 262144,
        max_burst_length: 1 << 20,
        first_burst_length: 262144,
        immediate_data: true,
        initial_r2t: false,
        commands: 3,
    }
}

impl Control for Fake {
    fn export(&self) -> String {
        self.text.lock().unwrap().clone()
    }
    fn apply<'a>(&'a self, text: &'a str, dry_run: bool, _force: bool) -> ApplyFuture<'a> {
        Box::pin(async move {
            let new = plan_of(text)?;
            // Let other requests run between export and apply, as a real apply does while
            // it opens devices: a lost update would show.
            tokio::task::yield_now().await;
            let ms = self.apply_ms.load(std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            let old = plan_of(&self.export())?;
            let mut report = ApplyReport::default();
            for d in &new.devices {
                if !old.devices.iter().any(|o| o.name == d.name) {
                    report.devices_added.push(d.name.clone());
                }
            }
            if !dry_run {
                *self.text.lock().unwrap() = text.to_owned();
            }
            Ok(report)
        })
    }
    fn devices(&self) -> Vec<DeviceInfo> {
        self.plan()
            .devices
            .iter()
            .map(|d| DeviceInfo {
                name: d.name.clone(),
                kind: d.kind.as_str().into(),
                path: None,
                backing: None,
                size_bytes: 0,
                block_size: d.spec.block_size,
                read_only: false,
                thin: d.thin,
                write_cache: d.write_cache,
                serial: String::new(),
                naa: String::new(),
                exports: vec![],
            })
            .collect()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        self.plan()
            .targets
            .iter()
            .map(|t| TargetInfo {
                name: t.name.clone(),
                alias: None,
                enabled: t.enabled,
                portals: vec![],
                chap: t.chap.is_some(),
                groups: vec![],
                default_luns: None,
                sessions: 0,
            })
            .collect()
    }
    fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.lock().unwrap().clone()
    }
    fn close_session(&self, id: u64) -> bool {
        let mut s = self.sessions.lock().unwrap();
        let before = s.len();
        s.retain(|x| x.id != id);
        s.len() != before
    }
    fn stats(&self) -> Vec<crate::manager::DeviceStats> {
        Vec::new()
    }
    fn port_groups(&self) -> Vec<crate::manager::PortGroupInfo> {
        Vec::new()
    }
    fn set_port_group_state(
        &self,
        id: u16,
        _state: &str,
    ) -> Result<(), crate::manager::PortGroupError> {
        Err(crate::manager::PortGroupError::NotFound(id))
    }
    fn metrics(&self) -> String {
        "# EOF\n".into()
    }
    fn system(&self) -> crate::system::SystemInfo {
        crate::system::daemon_info(Some(std::path::Path::new("x.toml")), &self.plan().data_dir)
    }
    fn log(&self, limit: usize, min_level: tracing::Level) -> Vec<crate::system::LogEvent> {
        self.log.recent(limit, min_level)
    }
    fn replicas(&self) -> Vec<crate::cluster::ReplicaInfo> {
        self.replicas.lock().unwrap().infos()
    }
    fn replica_action<'a>(
        &'a self,
        device: &'a str,
        action: crate::cluster::Action,
    ) -> ReplicaFuture<'a> {
        let r = self.replicas.lock().unwrap().clone();
        Box::pin(async move { r.act(device, action).await })
    }
}

mod replicas;

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<String>,
) -> (StatusCode, Value, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

fn app(fake: &Arc<Fake>) -> axum::Router {
    router(fake.clone())
}

fn ram(name: &str) -> String {
    json!({"name": name, "type": "ram", "size": "1M"}).to_string()
}

#[tokio::test]
async fn add_list_and_remove_a_device() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let (st, body, _) = call(&app, Method::POST, "/api/v1/devices", Some(ram("d1"))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["report"]["devices_added"], json!(["d1"]));
    assert_eq!(body["dry_run"], json!(false));
    let (_, list, _) = call(&app, Method::GET, "/api/v1/devices", None).await;
    assert!(list.as_array().unwrap().iter().any(|d| d["name"] == "d1"));
    let (st, one, _) = call(&app, Method::GET, "/api/v1/devices/d1", None).await;
    assert_eq!((st, one["kind"].clone()), (StatusCode::OK, json!("ram")));
    let (_, _, text) = call(&app, Method::GET, "/api/v1/config", None).await;
    assert!(text.contains("name = \"d1\"") && text.contains("# --- Targets"));

    let (st, _, _) = call(&app, Method::DELETE, "/api/v1/devices/d1", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(fake.export(), EXAMPLE);
    let (st, body, _) = call(&app, Method::GET, "/api/v1/devices/d1", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], json!("no device \"d1\""));
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let (st, body, _) = call(
        &app,
        Method::POST,
        "/api/v1/devices?dry_run=true",
        Some(ram("d1")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["dry_run"], json!(true));
    assert_eq!(body["report"]["devices_added"], json!(["d1"]));
    assert_eq!(fake.export(), EXAMPLE);
}

#[tokio::test]
async fn refusals_have_the_right_status_and_name_the_field() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let luns = format!("/api/v1/targets/{LAB}/luns");
    let lun_x = format!("{luns}/x");
    let lun_5 = format!("{luns}/5");
    let cases: Vec<(Method, &str, Option<String>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/api/v1/devices",
            Some(ram("scratch")),
            StatusCode::CONFLICT,
            "device \"scratch\" already exists",
        ),
        (
            Method::POST,
            "/api/v1/devices",
            Some(json!({"name": "x"}).to_string()),
            StatusCode::BAD_REQUEST,
            "missing field `type`",
        ),
        (
            Method::POST,
            "/api/v1/devices",
            Some(json!({"name": "x", "type": "ram", "size": "1M", "colour": 1}).to_string()),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            Method::POST,
            "/api/v1/devices",
            Some(json!({"name": "x", "type": "ram", "size": "1M", "thin": "yes"}).to_string()),
            StatusCode::BAD_REQUEST,
            "thin: invalid type",
        ),
        (
            Method::POST,
            "/api/v1/devices",
            Some("{".into()),
            StatusCode::BAD_REQUEST,
            "body:",
        ),
        // The validator's verdict on a value: 400 with the key path.
        (
            Method::POST,
            "/api/v1/devices",
            Some(json!({"name": "x", "type": "ram", "size": "1.5G"}).to_string()),
            StatusCode::BAD_REQUEST,
            "device[3].size",
        ),
        (
            Method::DELETE,
            "/api/v1/devices/scratch",
            None,
            StatusCode::CONFLICT,
            "device \"scratch\" is in use",
        ),
        (
            Method::POST,
            &luns,
            Some(json!({"device": "ghost"}).to_string()),
            StatusCode::NOT_FOUND,
            "no device \"ghost\"",
        ),
        (
            Method::POST,
            &luns,
            Some(json!({"device": "vm-store", "lun": 0}).to_string()),
            StatusCode::CONFLICT,
            "lun 0 is already mapped to \"bench\"",
        ),
        (
            Method::DELETE,
            &lun_x,
            None,
            StatusCode::BAD_REQUEST,
            "lun: \"x\"",
        ),
        (
            Method::DELETE,
            &lun_5,
            None,
            StatusCode::NOT_FOUND,
            "lun 5 is not mapped",
        ),
        (
            Method::POST,
            "/api/v1/targets/iqn.2026-11.org.example:none/enable",
            None,
            StatusCode::NOT_FOUND,
            "no target",
        ),
        (
            Method::POST,
            "/api/v1/devices?dry_run=maybe",
            Some(ram("d")),
            StatusCode::BAD_REQUEST,
            "query:",
        ),
        (
            Method::POST,
            "/api/v1/devices?colour=red",
            Some(ram("d")),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            Method::PUT,
            "/api/v1/config",
            Some("[server\n".into()),
            StatusCode::BAD_REQUEST,
            "api:1",
        ),
        (
            Method::DELETE,
            "/api/v1/sessions/abc",
            None,
            StatusCode::BAD_REQUEST,
            "id:",
        ),
        (
            Method::DELETE,
            "/api/v1/sessions/99",
            None,
            StatusCode::NOT_FOUND,
            "no session 99",
        ),
        (Method::GET, "/nope", None, StatusCode::NOT_FOUND, "/api/v1"),
    ];
    for (method, uri, body, status, needle) in cases {
        let (st, json, text) = call(&app, method.clone(), uri, body).await;
        assert_eq!(st, status, "{method} {uri}: {text}");
        let msg = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{uri}: {text}"));
        assert!(
            msg.contains(needle),
            "{method} {uri}: {msg:?} lacks {needle:?}"
        );
    }
    // Nothing refused was half-applied.
    assert_eq!(fake.export(), EXAMPLE);
}

#[tokio::test]
async fn a_whole_lun_workflow() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let t = "iqn.2026-11.org.example:new";
    let steps: Vec<(Method, String, Option<String>, StatusCode)> = vec![
        (
            Method::POST,
            "/api/v1/devices".into(),
            Some(ram("d1")),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/api/v1/targets".into(),
            Some(json!({"name": t}).to_string()),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            format!("/api/v1/targets/{t}/groups"),
            Some(
                json!({"name": "hosts", "initiators": ["iqn.1993-08.org.debian:01:h"]}).to_string(),
            ),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            format!("/api/v1/targets/{t}/groups/hosts/luns"),
            Some(json!({"device": "d1"}).to_string()),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            format!("/api/v1/targets/{t}/groups/hosts/initiators"),
            Some(json!({"initiators": ["iqn.1993-08.org.debian:01:h2"]}).to_string()),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            format!("/api/v1/targets/{t}/chap"),
            Some(json!({"user": "u", "secret": "0123456789abcdef"}).to_string()),
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/targets/{t}/enable"),
            None,
            StatusCode::OK,
        ),
    ];
    for (m, uri, body, status) in steps {
        let (st, _, text) = call(&app, m.clone(), &uri, body).await;
        assert_eq!(st, status, "{m} {uri}: {text}");
    }
    let plan = fake.plan();
    let target = plan.targets.iter().find(|x| x.name == t).unwrap();
    assert!(target.enabled);
    assert!(target.chap.is_some());
    assert_eq!(target.groups[0].initiators.len(), 2);
    let (_, json, _) = call(&app, Method::GET, &format!("/api/v1/targets/{t}"), None).await;
    assert_eq!(json["chap"], json!(true));
    assert!(!fake.export().contains("0123456789abcdef") || json.to_string().find("0123").is_none());

    let undo: Vec<(Method, String, Option<String>)> = vec![
        (
            Method::DELETE,
            format!("/api/v1/targets/{t}/groups/hosts/luns/0"),
            None,
        ),
        // An enabled target may not lose its last group: the validator refuses it.
        (Method::POST, format!("/api/v1/targets/{t}/disable"), None),
        (
            Method::DELETE,
            format!("/api/v1/targets/{t}/groups/hosts"),
            None,
        ),
        (Method::DELETE, format!("/api/v1/targets/{t}"), None),
        (Method::DELETE, "/api/v1/devices/d1".into(), None),
    ];
    for (m, uri, body) in undo {
        let (st, _, text) = call(&app, m.clone(), &uri, body).await;
        assert_eq!(st, StatusCode::OK, "{m} {uri}: {text}");
    }
    assert_eq!(fake.export(), EXAMPLE);
}

#[tokio::test]
async fn concurrent_edits_are_not_lost() {
    /// Requests racing each other.
    const N: usize = 16;
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                call(
                    &app,
                    Method::POST,
                    "/api/v1/devices",
                    Some(ram(&format!("c{i}"))),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().0, StatusCode::CREATED);
    }
    let names: Vec<String> = fake.plan().devices.into_iter().map(|d| d.name).collect();
    for i in 0..N {
        assert!(names.contains(&format!("c{i}")), "c{i} lost: {names:?}");
    }
}

#[tokio::test]
async fn an_apply_goes_to_its_end_when_the_client_leaves() {
    let fake = Fake::new(EXAMPLE);
    fake.apply_ms
        .store(300, std::sync::atomic::Ordering::Relaxed);
    let app = app(&fake);
    // The client gives up while the apply is under way: its request future is dropped.
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        call(&app, Method::POST, "/api/v1/devices", Some(ram("left"))),
    )
    .await;
    assert!(cut.is_err(), "the request was to be cut short");
    // The next change waits for that apply and builds on it: nothing half done, nothing lost.
    fake.apply_ms.store(1, std::sync::atomic::Ordering::Relaxed);
    let (st, body, _) = call(&app, Method::POST, "/api/v1/devices", Some(ram("next"))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let names: Vec<String> = fake.plan().devices.into_iter().map(|d| d.name).collect();
    assert!(names.contains(&"left".to_owned()), "{names:?}");
    assert!(names.contains(&"next".to_owned()), "{names:?}");
}

#[tokio::test]
async fn config_put_and_sessions() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let new = EXAMPLE.replace("size = \"512M\"", "size = \"256M\"");
    let (st, _, _) = call(
        &app,
        Method::PUT,
        "/api/v1/config?dry_run=true",
        Some(new.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(fake.export(), EXAMPLE);
    let (st, _, _) = call(&app, Method::PUT, "/api/v1/config", Some(new.clone())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(fake.export(), new);

    let (_, list, _) = call(&app, Method::GET, "/api/v1/sessions", None).await;
    assert_eq!(list[0]["id"], json!(7));
    let (st, _, _) = call(&app, Method::DELETE, "/api/v1/sessions/7", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert!(fake.sessions().is_empty());
}

#[tokio::test]
async fn bodies_are_bounded() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let huge = "#".repeat(MAX_BODY_BYTES + 1);
    let (st, json, text) = call(&app, Method::PUT, "/api/v1/config", Some(huge)).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(json["error"].is_string());
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let (st, doc, _) = call(&app, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/devices",
        "/api/v1/devices/{name}",
        "/api/v1/targets/{name}/groups/{group}/luns/{lun}",
        "/api/v1/sessions/{id}",
        "/api/v1/config",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
}

/// The mirror schemas have exactly the fields the manager's types serialise.
#[test]
fn openapi_schemas_match_the_answers() {
    fn keys(v: Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }
    let device = DeviceInfo {
        name: String::new(),
        kind: String::new(),
        path: None,
        backing: None,
        size_bytes: 0,
        block_size: 512,
        read_only: false,
        thin: false,
        write_cache: false,
        serial: String::new(),
        naa: String::new(),
        exports: vec![],
    };
    let target = TargetInfo {
        name: String::new(),
        alias: None,
        enabled: true,
        portals: vec![],
        chap: false,
        groups: vec![],
        default_luns: None,
        sessions: 0,
    };
    let group = GroupInfo {
        name: String::new(),
        initiators: vec![],
        luns: vec![],
    };
    let lun = LunInfo {
        lun: 0,
        device: String::new(),
    };
    let cases = [
        ("DeviceInfo", serde_json::to_value(device).unwrap()),
        ("TargetInfo", serde_json::to_value(target).unwrap()),
        ("GroupInfo", serde_json::to_value(group).unwrap()),
        ("LunInfo", serde_json::to_value(lun).unwrap()),
        ("SessionInfo", serde_json::to_value(session(1)).unwrap()),
        (
            "ApplyReport",
            serde_json::to_value(ApplyReport::default()).unwrap(),
        ),
    ];
    for (name, value) in cases {
        assert_eq!(doc::schema_fields(name), keys(value), "{name}");
    }
}

#[tokio::test]
async fn socket_is_private_stale_replaced_live_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_NAME);
    // A stale socket: bound, then its listener dropped.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let fake = Fake::new(EXAMPLE);
    let server = tokio::spawn(serve_control(fake.clone(), path.clone(), async {
        let _ = stop_rx.await;
    }));
    // Wait for the socket to answer.
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(up);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let second = serve_control(fake, path.clone(), std::future::pending()).await;
    assert!(
        matches!(second, Err(ServeError::InUse { .. })),
        "{second:?}"
    );
    // Not a socket: never removed.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(
        bind_socket(&file).await,
        Err(ServeError::NotASocket { .. })
    ));

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!path.exists(), "socket removed on shutdown");
    // Nothing left behind by the staging directory.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

// --- the token layer of the TCP listeners --------------------------------------------

const ADMIN_TOKEN: &str = "admin-0123456789abcdef0123456789abcdef";
const READER_TOKEN: &str = "reader-0123456789abcdef0123456789abcdef";

fn tcp_app(fake: &Arc<Fake>) -> axum::Router {
    use crate::config::{ApiRole, ApiToken};
    let tokens = auth::Tokens::new(vec![
        ApiToken {
            name: "ops".into(),
            role: ApiRole::Admin,
            sha256: auth::token_digest(ADMIN_TOKEN),
        },
        ApiToken {
            name: "grafana".into(),
            role: ApiRole::ReadOnly,
            sha256: auth::token_digest(READER_TOKEN),
        },
    ]);
    tcp::tcp_router(fake.clone(), Arc::new(tokens))
}

/// Status, JSON body and `WWW-Authenticate` of one request with an optional token.
async fn call_as(
    app: &axum::Router,
    token: Option<&str>,
    method: Method,
    uri: &str,
    body: Option<String>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json, challenge)
}

#[tokio::test]
async fn tcp_requests_without_a_known_token_are_401() {
    let fake = Fake::new(EXAMPLE);
    let app = tcp_app(&fake);
    for token in [None, Some("wrong-0123456789abcdef0123456789abcdef")] {
        for (m, uri, body) in [
            (Method::GET, "/api/v1/devices", None),
            (Method::GET, "/api/v1/config", None),
            (Method::POST, "/api/v1/devices", Some(ram("d1"))),
            (Method::DELETE, "/api/v1/devices/scratch", None),
            (Method::GET, "/nowhere", None),
        ] {
            let (st, body, challenge) = call_as(&app, token, m.clone(), uri, body).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {uri} {token:?}");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("authentication required")
            );
            let challenge = challenge.expect("WWW-Authenticate");
            assert!(
                challenge.starts_with("Bearer realm=\"esos\""),
                "{challenge}"
            );
            assert_eq!(challenge.contains("invalid_token"), token.is_some());
        }
    }
    assert_eq!(
        fake.export(),
        EXAMPLE,
        "a refused request changed the config"
    );
}

#[tokio::test]
async fn read_only_tokens_read_but_never_change() {
    let fake = Fake::new(EXAMPLE);
    let app = tcp_app(&fake);
    let t = Some(READER_TOKEN);
    let (st, list, _) = call_as(&app, t, Method::GET, "/api/v1/devices", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "scratch")
    );
    for uri in ["/api/v1/system", "/api/v1/system/log?level=warn"] {
        let (st, _, _) = call_as(&app, t, Method::GET, uri, None).await;
        assert_eq!(st, StatusCode::OK, "{uri}");
    }
    let chap = json!({"user": "u", "secret": "0123456789abcdef"}).to_string();
    let cases = [
        (Method::POST, "/api/v1/devices".to_owned(), Some(ram("d1"))),
        (
            Method::POST,
            "/api/v1/devices?dry_run=true".to_owned(),
            Some(ram("d1")),
        ),
        (Method::DELETE, "/api/v1/devices/scratch".to_owned(), None),
        (
            Method::PUT,
            format!("/api/v1/targets/{LAB}/chap"),
            Some(chap),
        ),
        (
            Method::PUT,
            "/api/v1/config".to_owned(),
            Some(String::new()),
        ),
        (Method::DELETE, "/api/v1/sessions/7".to_owned(), None),
        (Method::PATCH, "/api/v1/devices".to_owned(), None),
    ];
    for (m, uri, body) in cases {
        let (st, body, challenge) = call_as(&app, t, m.clone(), &uri, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {uri}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("read-only"),
            "{body}"
        );
        assert!(challenge.unwrap().contains("insufficient_scope"));
    }
    assert_eq!(fake.export(), EXAMPLE);
    assert_eq!(
        fake.sessions().len(),
        1,
        "a read-only token closed a session"
    );
}

#[tokio::test]
async fn admin_tokens_change_and_the_document_is_public() {
    let fake = Fake::new(EXAMPLE);
    let app = tcp_app(&fake);
    let t = Some(ADMIN_TOKEN);
    let (st, body, _) = call_as(&app, t, Method::POST, "/api/v1/devices", Some(ram("d1"))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert!(fake.export().contains("name = \"d1\""));
    let (st, _, _) = call_as(&app, t, Method::DELETE, "/api/v1/devices/d1", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(fake.export(), EXAMPLE);
    // Past the token layer the router answers as on the socket.
    let (st, _, _) = call_as(&app, t, Method::GET, "/nowhere", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, doc, _) = call_as(&app, None, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        json!("bearer")
    );
    assert_eq!(
        doc["paths"]["/api/v1/openapi.json"]["get"]["security"],
        json!([{}])
    );
    let post = &doc["paths"]["/api/v1/devices"]["post"]["responses"];
    assert!(post["401"].is_object() && post["403"].is_object(), "{post}");
    let get = &doc["paths"]["/api/v1/devices"]["get"]["responses"];
    assert!(get["401"].is_object() && get["403"].is_null(), "{get}");
}

#[tokio::test]
async fn the_socket_router_needs_no_token() {
    let fake = Fake::new(EXAMPLE);
    let (st, _, _) = call_as(
        &app(&fake),
        None,
        Method::POST,
        "/api/v1/devices",
        Some(ram("d1")),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}

fn log_event(level: tracing::Level, n: usize) -> crate::system::LogEvent {
    crate::system::LogEvent {
        time: "2026-11-25T00:00:00.000Z".into(),
        level: crate::system::level_name(level).into(),
        target: "esos".into(),
        message: format!("event {n}"),
    }
}

#[tokio::test]
async fn system_reports_the_daemon() {
    let fake = Fake::new(EXAMPLE);
    let app = app(&fake);
    let (st, v, text) = call(&app, Method::GET, "/api/v1/system", None).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["pid"], std::process::id());
    assert_eq!(v["config_file"], "x.toml");
    assert!(v["started"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(v["uptime_s"].is_u64(), "{v}");
    assert!(v["data_dir"].is_string(), "{v}");
    // Every field is in the document's schema, and no other.
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(doc::schema_fields("SystemInfo"), keys);
}

#[tokio::test]
async fn system_log_filters_limits_and_refuses_bad_levels() {
    use tracing::Level;
    let fake = Fake::new(EXAMPLE);
    let levels = [Level::INFO, Level::WARN, Level::DEBUG, Level::ERROR];
    for n in 0..crate::system::LOG_RING_CAPACITY + 50 {
        fake.log.push(levels[n % 4], log_event(levels[n % 4], n));
    }
    let app = app(&fake);
    let get = |uri: &'static str| {
        let app = app.clone();
        async move { call(&app, Method::GET, uri, None).await }
    };
    let last = crate::system::LOG_RING_CAPACITY + 49;

    let (st, v, text) = get("/api/v1/system/log").await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let events = v.as_array().unwrap();
    assert_eq!(events.len(), handlers::DEFAULT_LOG_LIMIT);
    assert_eq!(events.last().unwrap()["message"], format!("event {last}"));
    let mut keys: Vec<String> = events[0].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(doc::schema_fields("LogEvent"), keys);

    let (_, v, _) = get("/api/v1/system/log?limit=3&level=WARN").await;
    let got: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["level"].as_str().unwrap(), e["message"].as_str().unwrap()))
        .collect();
    // Oldest first; only warn and error.
    assert_eq!(got.len(), 3, "{v}");
    assert!(
        got.iter().all(|(l, _)| *l == "warn" || *l == "error"),
        "{v}"
    );
    // Warn or error is every other event; the newest one is the last.
    assert_eq!(got[0].1, format!("event {}", last - 4), "{v}");
    assert_eq!(got[2].1, format!("event {last}"), "{v}");

    let (_, v, _) = get("/api/v1/system/log?limit=100000").await;
    assert_eq!(v.as_array().unwrap().len(), handlers::MAX_LOG_LIMIT);

    let (st, v, _) = get("/api/v1/system/log?level=loud").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("level:"), "{v}");
    let (st, v, _) = get("/api/v1/system/log?limit=-1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("limit"), "{v}");
    let (st, _, _) = get("/api/v1/system/log?colour=red").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}
