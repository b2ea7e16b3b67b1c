//! Security rules across CHAP blocks and login limits.

use super::*;

fn check(text: &str) -> Result<Plan, ConfigError> {
    let raw = super::super::parse(text, "t.toml").expect("parses");
    validate(&raw, &Source::file(Path::new("/etc/esos/t.toml")))
}

const BASE: &str = r#"
[[device]]
name = "d0"
type = "ram"
size = "1M"
"#;

fn target(i: usize, chap: &str) -> String {
    format!(
        "[[target]]\nname = \"iqn.2026-11.org.esos:t{i}\"\ndefault_luns = [{{ lun = 0, device = \"d0\" }}]\nchap = {chap}\n"
    )
}

#[test]
fn mutual_secret_reused_as_another_blocks_initiator_secret_is_refused() {
    let a = target(
        0,
        r#"{ user = "u0", secret = "initiator-secret-0", mutual_user = "t0", mutual_secret = "shared-secret-000" }"#,
    );
    let b = target(1, r#"{ user = "u1", secret = "shared-secret-000" }"#);
    let e = check(&format!("{BASE}{a}{b}")).unwrap_err().to_string();
    assert!(e.contains("target[0].chap.mutual_secret"), "{e}");
    assert!(e.contains("target[1].chap.secret"), "{e}");
    assert!(!e.contains("shared-secret-000"), "secret leaked: {e}");
    // Distinct secrets pass.
    let b = target(1, r#"{ user = "u1", secret = "other-secret-0001" }"#);
    check(&format!("{BASE}{a}{b}")).unwrap();
}

#[test]
fn discovery_secret_reused_as_mutual_secret_is_refused() {
    let disc = r#"
[server.discovery_chap]
user = "d"
secret = "discovery-secret-1"
"#;
    let a = target(
        0,
        r#"{ user = "u0", secret = "initiator-secret-0", mutual_user = "t0", mutual_secret = "discovery-secret-1" }"#,
    );
    let e = check(&format!("{disc}{BASE}{a}")).unwrap_err().to_string();
    assert!(e.contains("server.discovery_chap.secret"), "{e}");
}

#[test]
fn login_connection_limit_is_bounded() {
    let ok = check(&format!(
        "[server.limits]\nmax_login_connections = 16\n{BASE}{}",
        target(0, "{ user = \"u\", secret = \"0123456789abc\" }")
    ))
    .unwrap();
    assert_eq!(ok.limits.max_login_connections, 16);
    let e = check(&format!(
        "[server.limits]\nmax_login_connections = 0\n{BASE}{}",
        target(0, "{ user = \"u\", secret = \"0123456789abc\" }")
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("server.limits.max_login_connections"), "{e}");
}
