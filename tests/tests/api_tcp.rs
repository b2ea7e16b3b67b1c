//! The management API on TCP end to end: the real daemon with `[api] listen` on port 0, a
//! self-signed certificate made by openssl, tokens made by `esos api token-hash`, and curl
//! as the HTTPS client. Checks the roles (401 without a known token, 403 for a read-only
//! token on a change, state unchanged by refusals), that an admin token changes state, and
//! that plain HTTP to the TLS port gets no answer.

use std::path::Path;
use std::time::{Duration, Instant};

use esos_e2e::cmd::{self, Output};
use esos_e2e::daemon::{Ctx, Daemon};
use esos_e2e::{paths, tools};

const TARGET: &str = "iqn.2026-11.org.esos.test:apitcp";
/// Longest one curl or openssl run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the TCP API's "listening" log line after the portal is up.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A generated token and its `[[api.token]]` entry.
struct Token {
    token: String,
    entry: String,
}

fn new_token(name: &str, role: &str) -> Token {
    let bin = paths::esos_bin();
    let out = cmd::run_ok(
        &bin.to_string_lossy(),
        &[
            "api",
            "token-hash",
            "--generate",
            "--name",
            name,
            "--role",
            role,
        ],
        TOOL_TIMEOUT,
    );
    let (first, entry) = out.stdout.split_once('\n').expect("two parts");
    let token = first
        .strip_prefix("token: ")
        .expect("token line")
        .to_owned();
    assert!(
        entry.contains("sha256 = \"") && !entry.contains(&token),
        "{entry}"
    );
    Token {
        token,
        entry: entry.to_owned(),
    }
}

fn self_signed(dir: &Path) {
    tools::require("openssl");
    cmd::run_ok(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=esos-e2e",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            &dir.join("api.key").to_string_lossy(),
            "-out",
            &dir.join("api.crt").to_string_lossy(),
        ],
        TOOL_TIMEOUT,
    );
}

fn config(ctx: &Ctx, admin: &Token, reader: &Token) -> String {
    self_signed(&ctx.dir);
    format!(
        r#"[server]
data_dir = "{dir}/data"

[[server.portal]]
address = "127.0.0.1:{port}"

[[device]]
name = "d0"
type = "ram"
size = "8M"

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "d0" }}]

[api]
listen = ["127.0.0.1:0"]
tls_certificate = "api.crt"
tls_key = "api.key"

{admin}
{reader}"#,
        dir = ctx.dir.display(),
        port = ctx.port,
        admin = admin.entry,
        reader = reader.entry,
    )
}

/// The port the daemon logged for its TCP API (configured as port 0).
fn api_port(d: &Daemon) -> u16 {
    let start = Instant::now();
    loop {
        let log = d.log();
        let port = log
            .lines()
            .filter(|l| l.contains("management API listening on TCP"))
            .find_map(|l| l.split("addr=127.0.0.1:").nth(1))
            .and_then(|p| p.trim().parse().ok());
        if let Some(p) = port {
            return p;
        }
        assert!(
            start.elapsed() < LISTEN_TIMEOUT,
            "no TCP API listening line\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTPS request with curl: (status, body). `token` goes in `Authorization: Bearer`.
fn https(
    d: &Daemon,
    port: u16,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    tools::require("curl");
    let body_file = d.dir().join("curl-body");
    let _ = std::fs::remove_file(&body_file);
    let url = format!("https://127.0.0.1:{port}/api/v1{path}");
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "20".into(),
        "--cacert".into(),
        d.dir().join("api.crt").to_string_lossy().into_owned(),
        "-X".into(),
        method.into(),
        "-o".into(),
        body_file.to_string_lossy().into_owned(),
        "-w".into(),
        "%{http_code}".into(),
    ];
    if let Some(t) = token {
        args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            b.into(),
        ]);
    }
    args.push(url);
    let out: Output = cmd::run_ok("curl", &args, TOOL_TIMEOUT);
    let status = out.stdout.trim().parse().unwrap_or_else(|_| {
        panic!("curl printed no status: {}", out.describe());
    });
    (
        status,
        std::fs::read_to_string(&body_file).unwrap_or_default(),
    )
}

#[test]
fn tcp_api_enforces_tls_tokens_and_roles() {
    let admin = new_token("ops", "admin");
    let reader = new_token("grafana", "read-only");
    let d = Daemon::with_config(TARGET, |ctx| config(ctx, &admin, &reader));
    let port = api_port(&d);
    let config_before = std::fs::read_to_string(d.dir().join("esos.toml")).unwrap();
    let dev = r#"{"name": "d1", "type": "null", "size": "1M"}"#;
    let chap = r#"{"user": "u", "secret": "0123456789abcdef"}"#;

    // No token, or one nobody configured: 401 on reads and changes alike.
    let wrong = "0000000000000000000000000000000000000000000000000000000000000000";
    for token in [None, Some(wrong)] {
        assert_eq!(https(&d, port, token, "GET", "/devices", None).0, 401);
        let (st, body) = https(&d, port, token, "POST", "/devices", Some(dev));
        assert_eq!(st, 401, "{body}");
        assert!(body.contains("authentication required"), "{body}");
    }

    // Read-only: reads work, every change is 403.
    let r = Some(reader.token.as_str());
    let (st, body) = https(&d, port, r, "GET", "/devices", None);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"d0\""), "{body}");
    assert_eq!(
        https(&d, port, r, "GET", &format!("/targets/{TARGET}"), None).0,
        200
    );
    for (method, path, body) in [
        ("POST", "/devices".to_owned(), Some(dev)),
        ("PUT", format!("/targets/{TARGET}/chap"), Some(chap)),
        ("DELETE", "/devices/d0".to_owned(), None),
        ("DELETE", format!("/targets/{TARGET}"), None),
    ] {
        let (st, answer) = https(&d, port, r, method, &path, body);
        assert_eq!(st, 403, "{method} {path}: {answer}");
        assert!(answer.contains("read-only"), "{answer}");
    }
    let (_, list) = https(&d, port, r, "GET", "/devices", None);
    assert!(
        !list.contains("\"d1\""),
        "a refused POST added a device: {list}"
    );
    let (_, t) = https(&d, port, r, "GET", &format!("/targets/{TARGET}"), None);
    assert!(t.contains("\"chap\":false"), "a refused PUT set CHAP: {t}");
    assert_eq!(
        std::fs::read_to_string(d.dir().join("esos.toml")).unwrap(),
        config_before,
        "a refused request changed the config file"
    );

    // The document is public, so clients can learn the API before they have a token.
    let (st, doc) = https(&d, port, None, "GET", "/openapi.json", None);
    assert_eq!(st, 200);
    assert!(
        doc.contains("securitySchemes"),
        "no bearer scheme documented"
    );

    // Admin: a device add works, is live and persisted.
    let a = Some(admin.token.as_str());
    let (st, body) = https(&d, port, a, "POST", "/devices", Some(dev));
    assert_eq!(st, 201, "{body}\n{}", d.log());
    let (_, list) = https(&d, port, r, "GET", "/devices", None);
    assert!(list.contains("\"d1\""), "{list}");
    let saved = std::fs::read_to_string(d.dir().join("esos.toml")).unwrap();
    assert!(
        saved.contains("name = \"d1\"") && saved.contains("[api]"),
        "{saved}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = cmd::run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/api/v1/devices"),
        ],
        TOOL_TIMEOUT,
    )
    .expect("run curl");
    assert!(
        !plain.success(),
        "plain HTTP was answered: {}",
        plain.describe()
    );
    assert_eq!(plain.stdout.trim(), "000", "{}", plain.describe());

    // Tokens never reach the log.
    let log = d.log();
    assert!(!log.contains(&admin.token) && !log.contains(&reader.token));
    assert!(
        log.contains("token=grafana"),
        "refusals name the token: {log}"
    );
}
