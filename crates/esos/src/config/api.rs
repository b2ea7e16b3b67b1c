//! `[api]` → [`ApiPlan`]: the management API on TCP, TLS files and bearer tokens.
//!
//! Tokens are stored as SHA-256 digests, so a leaked config does not leak a credential.
//! A TCP listener needs TLS (tokens never cross the wire in clear) and at least one token
//! (an open TCP API would let anyone on the network manage the storage). The PEM files are
//! only named here: reading them is I/O, done by `api::tls` at start and by
//! `esos config check`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::error::KeyError;
use super::names::validate_object_name;
use super::plan::{ApiPlan, ApiRole, ApiTls, ApiToken};
use super::schema::{RawApi, RawApiRole};

/// Most TCP listen addresses: a few interfaces, not a port range.
pub const MAX_API_LISTENERS: usize = 16;
/// Most configured tokens; every request compares against each of them.
pub const MAX_API_TOKENS: usize = 256;
/// Length of a SHA-256 digest written in hex.
pub const SHA256_HEX_LEN: usize = 64;
/// SHA-256 of the empty string: a token that is no secret at all.
const EMPTY_SHA256_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The validated plan with the refused keys and the warnings.
pub struct Validated {
    pub plan: ApiPlan,
    pub errors: Vec<KeyError>,
    pub warnings: Vec<String>,
}

/// Validates `raw`. `base_dir` resolves relative PEM paths; `taken` lists addresses other
/// listeners use, each with the key that names it.
pub fn validate(
    raw: Option<&RawApi>,
    base_dir: &Path,
    taken: &[(SocketAddr, String)],
) -> Validated {
    let mut out = Validated {
        plan: ApiPlan::default(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let Some(raw) = raw else {
        return out;
    };
    let mut err = |key: String, reason: String| out.errors.push(KeyError { key, reason });

    let listen = listen(raw.listen.as_deref(), taken, &mut err);
    let certificate = pem_path(
        raw.tls_certificate.as_deref(),
        "api.tls_certificate",
        base_dir,
        &mut err,
    );
    let key = pem_path(raw.tls_key.as_deref(), "api.tls_key", base_dir, &mut err);
    let tokens = tokens(raw, &mut err);

    if raw.listen.is_some() {
        let why = "is required when api.listen is set: tokens must not cross the network in clear";
        if raw.tls_certificate.is_none() {
            err("api.tls_certificate".into(), why.into());
        }
        if raw.tls_key.is_none() {
            err("api.tls_key".into(), why.into());
        }
        if raw.token.is_empty() {
            err(
                "api.token".into(),
                "a TCP listener (api.listen) needs at least one [[api.token]]: \
                 without one nobody could use it"
                    .into(),
            );
        }
    } else if raw.tls_certificate.is_some() || raw.tls_key.is_some() || !raw.token.is_empty() {
        out.warnings.push(
            "api: TLS files and tokens have no effect without api.listen (the unix socket \
             needs neither)"
                .into(),
        );
    }
    out.plan = ApiPlan {
        listen,
        tls: certificate
            .zip(key)
            .map(|(certificate, key)| ApiTls { certificate, key }),
        tokens,
    };
    out
}

fn listen(
    raw: Option<&[String]>,
    taken: &[(SocketAddr, String)],
    err: &mut impl FnMut(String, String),
) -> Vec<SocketAddr> {
    let Some(list) = raw else {
        return Vec::new();
    };
    if list.is_empty() {
        err(
            "api.listen".into(),
            "is empty; omit it to serve the API on the unix socket only".into(),
        );
    }
    if list.len() > MAX_API_LISTENERS {
        err(
            "api.listen".into(),
            format!("has {} addresses; at most {MAX_API_LISTENERS}", list.len()),
        );
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    for (i, text) in list.iter().enumerate().take(MAX_API_LISTENERS) {
        let key = format!("api.listen[{i}]");
        match text.parse::<SocketAddr>() {
            Err(_) => err(
                key,
                format!(
                    "{text:?} is not an IP address with a port, e.g. \"192.0.2.10:8443\" or \
                     \"[::1]:8443\""
                ),
            ),
            Ok(a) if out.contains(&a) => err(key, format!("{a} is listed twice")),
            Ok(a) => {
                // Port 0 picks a free port at bind time, so it cannot collide.
                match taken.iter().find(|(t, _)| a.port() != 0 && *t == a) {
                    Some((_, other)) => err(key, format!("{a} is already {other}")),
                    None => out.push(a),
                }
            }
        }
    }
    out
}

fn pem_path(
    raw: Option<&str>,
    key: &str,
    base_dir: &Path,
    err: &mut impl FnMut(String, String),
) -> Option<PathBuf> {
    match raw {
        None => None,
        Some("") => {
            err(key.into(), "is empty".into());
            None
        }
        Some(p) => Some(base_dir.join(p)),
    }
}

fn tokens(raw: &RawApi, err: &mut impl FnMut(String, String)) -> Vec<ApiToken> {
    if raw.token.len() > MAX_API_TOKENS {
        err(
            "api.token".into(),
            format!("has {} tokens; at most {MAX_API_TOKENS}", raw.token.len()),
        );
    }
    let mut out: Vec<ApiToken> = Vec::new();
    // Index in `raw.token` of each accepted entry, for "already api.token[i]" messages.
    let mut first: Vec<usize> = Vec::new();
    for (i, t) in raw.token.iter().enumerate().take(MAX_API_TOKENS) {
        let key = format!("api.token[{i}]");
        let mut ok = true;
        if let Err(reason) = validate_object_name(&t.name) {
            err(format!("{key}.name"), reason);
            ok = false;
        } else if let Some(j) = out.iter().position(|o| o.name == t.name) {
            err(
                format!("{key}.name"),
                format!("{:?} is already api.token[{}]", t.name, first[j]),
            );
            ok = false;
        }
        let digest = match parse_sha256_hex(&t.sha256) {
            Ok(d) => Some(d),
            Err(reason) => {
                err(format!("{key}.sha256"), reason);
                None
            }
        };
        if let Some(d) = digest
            && let Some(j) = out.iter().position(|o| o.sha256 == d)
        {
            err(
                format!("{key}.sha256"),
                format!(
                    "is the same token as api.token[{}]; give each client its own",
                    first[j]
                ),
            );
            ok = false;
        }
        if let (true, Some(sha256)) = (ok, digest) {
            out.push(ApiToken {
                name: t.name.clone(),
                role: match t.role {
                    RawApiRole::Admin => ApiRole::Admin,
                    RawApiRole::ReadOnly => ApiRole::ReadOnly,
                },
                sha256,
            });
            first.push(i);
        }
    }
    out
}

/// Parses a hex SHA-256 digest (either case).
pub fn parse_sha256_hex(text: &str) -> Result<[u8; 32], String> {
    if text.len() != SHA256_HEX_LEN {
        return Err(format!(
            "is {} characters long; a SHA-256 digest is {SHA256_HEX_LEN} hex digits \
             (see `esos api token-hash`)",
            text.len()
        ));
    }
    if let Some(c) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("contains {c:?}; a SHA-256 digest is hex digits"));
    }
    if text.eq_ignore_ascii_case(EMPTY_SHA256_HEX) {
        return Err("is the digest of an empty token".into());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let hi = hex_value(pair[0]);
        let lo = hex_value(pair[1]);
        *o = (hi << 4) | lo;
    }
    Ok(out)
}

/// Lower-case hex of a digest, as `sha256 = "..."` takes it.
pub fn sha256_hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Value of one hex digit already checked by the caller.
fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, validate as validate_config};

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const DIGEST2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn check(api: &str) -> Result<crate::config::Plan, Vec<KeyError>> {
        let text = format!(
            "[server]\nmetrics_address = \"127.0.0.1:9100\"\n[[server.portal]]\n\
             address = \"127.0.0.1:3260\"\n{api}"
        );
        let raw = parse(&text, "t.toml").map_err(|e| {
            vec![KeyError {
                key: "parse".into(),
                reason: e.to_string(),
            }]
        })?;
        validate_config(
            &raw,
            &crate::config::Source::file(Path::new("/etc/esos/esos.toml")),
        )
        .map_err(|e| e.key_errors().to_vec())
    }

    fn keys(r: Result<crate::config::Plan, Vec<KeyError>>) -> Vec<String> {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.into_iter().map(|e| e.key).collect(),
        }
    }

    fn full(extra: &str) -> String {
        format!(
            "[api]\nlisten = [\"127.0.0.1:8443\", \"[::1]:0\"]\ntls_certificate = \"api.crt\"\n\
             tls_key = \"/keys/api.key\"\n{extra}\n[[api.token]]\nname = \"ops\"\nrole = \"admin\"\n\
             sha256 = \"{DIGEST}\"\n[[api.token]]\nname = \"grafana\"\nrole = \"read-only\"\n\
             sha256 = \"{}\"\n",
            DIGEST2.to_uppercase()
        )
    }

    #[test]
    fn a_full_api_table_is_planned() {
        let plan = check(&full("")).unwrap();
        let api = plan.api;
        assert_eq!(api.listen.len(), 2);
        assert_eq!(api.listen[0], "127.0.0.1:8443".parse().unwrap());
        let tls = api.tls.unwrap();
        assert_eq!(tls.certificate, Path::new("/etc/esos/api.crt"));
        assert_eq!(tls.key, Path::new("/keys/api.key"));
        assert_eq!(api.tokens.len(), 2);
        assert_eq!(api.tokens[0].role, ApiRole::Admin);
        assert_eq!(api.tokens[1].role, ApiRole::ReadOnly);
        assert_eq!(sha256_hex(&api.tokens[0].sha256), DIGEST);
        assert_eq!(sha256_hex(&api.tokens[1].sha256), DIGEST2);
    }

    #[test]
    fn no_api_table_means_no_tcp() {
        let plan = check("").unwrap();
        assert_eq!(plan.api, ApiPlan::default());
    }

    #[test]
    fn tcp_needs_tls_and_a_token() {
        let k = keys(check("[api]\nlisten = [\"127.0.0.1:8443\"]\n"));
        assert_eq!(k, ["api.tls_certificate", "api.tls_key", "api.token"]);
    }

    #[test]
    fn tls_and_tokens_without_listen_are_a_warning() {
        let plan = check(&format!(
            "[api]\n[[api.token]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"{DIGEST}\"\n"
        ))
        .unwrap();
        assert!(plan.api.listen.is_empty());
        assert!(
            plan.warnings.iter().any(|w| w.contains("api.listen")),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn bad_listen_addresses_are_named() {
        let t = full("").replace(
            "listen = [\"127.0.0.1:8443\", \"[::1]:0\"]",
            "listen = [\"localhost:8443\", \"127.0.0.1:3260\", \"127.0.0.1:9100\", \
             \"127.0.0.1:1\", \"127.0.0.1:1\"]",
        );
        assert_eq!(
            keys(check(&t)),
            [
                "api.listen[0]",
                "api.listen[1]",
                "api.listen[2]",
                "api.listen[4]"
            ]
        );
        let t = full("").replace("listen = [\"127.0.0.1:8443\", \"[::1]:0\"]", "listen = []");
        assert_eq!(keys(check(&t)), ["api.listen"]);
    }

    #[test]
    fn too_many_listeners_are_refused() {
        let list: Vec<String> = (1..=MAX_API_LISTENERS + 1)
            .map(|p| format!("\"127.0.0.1:{}\"", 10000 + p))
            .collect();
        let t = full("").replace(
            "listen = [\"127.0.0.1:8443\", \"[::1]:0\"]",
            &format!("listen = [{}]", list.join(", ")),
        );
        assert_eq!(keys(check(&t)), ["api.listen"]);
    }

    #[test]
    fn empty_pem_paths_are_refused() {
        let t = full("").replace("\"api.crt\"", "\"\"");
        assert_eq!(keys(check(&t)), ["api.tls_certificate"]);
    }

    #[test]
    fn digests_are_checked() {
        let short = full("").replace(DIGEST, "abc");
        let e = check(&short).unwrap_err();
        assert_eq!(e[0].key, "api.token[0].sha256");
        assert!(e[0].reason.contains("64 hex digits"), "{}", e[0].reason);

        let not_hex = full("").replace(DIGEST, &DIGEST.replace('9', "g"));
        assert_eq!(keys(check(&not_hex)), ["api.token[0].sha256"]);

        let empty = full("").replace(DIGEST, EMPTY_SHA256_HEX);
        assert_eq!(keys(check(&empty)), ["api.token[0].sha256"]);

        let same = full("").replace(&DIGEST2.to_uppercase(), DIGEST);
        let e = check(&same).unwrap_err();
        assert_eq!(e[0].key, "api.token[1].sha256");
        assert!(e[0].reason.contains("api.token[0]"), "{}", e[0].reason);
    }

    #[test]
    fn token_names_are_checked() {
        let dup = full("").replace("\"grafana\"", "\"ops\"");
        let e = check(&dup).unwrap_err();
        assert_eq!(e[0].key, "api.token[1].name");
        assert!(e[0].reason.contains("api.token[0]"), "{}", e[0].reason);
        let bad = full("").replace("\"grafana\"", "\"graf ana\"");
        assert_eq!(keys(check(&bad)), ["api.token[1].name"]);
    }

    #[test]
    fn unknown_roles_and_keys_are_parse_errors() {
        let e = check(&full("").replace("\"read-only\"", "\"root\"")).unwrap_err();
        assert!(e[0].reason.contains("api.token[1].role"), "{}", e[0].reason);
        let e = check(&full("tls = true")).unwrap_err();
        assert!(e[0].reason.contains("tls"), "{}", e[0].reason);
    }

    #[test]
    fn hex_round_trips() {
        let d = parse_sha256_hex(DIGEST).unwrap();
        assert_eq!(sha256_hex(&d), DIGEST);
        assert_eq!(parse_sha256_hex(&DIGEST.to_uppercase()).unwrap(), d);
    }
}
