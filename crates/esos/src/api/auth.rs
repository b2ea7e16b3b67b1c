//! Bearer tokens on the TCP API (RFC 6750): who may call what.
//!
//! A request carries `Authorization: Bearer <token>`; the token's SHA-256 digest is compared
//! in constant time with every configured digest, so neither the token nor which entry
//! matched shows in the timing. An admin token may do everything; a read-only token only
//! GET and HEAD. `GET /api/v1/openapi.json` is public: the document holds no state and
//! clients need it to learn the API. The unix socket does not go through this layer.
//! Tokens are never logged; the configured name is.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use esos_iscsi::login::chap::constant_time_eq;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::config::{ApiRole, ApiToken};

/// Longest token accepted in a header; longer ones are refused without hashing.
pub const MAX_TOKEN_BYTES: usize = 1024;
/// Shortest token `esos api token-hash` accepts: 128 bits of hex, beyond guessing.
pub const MIN_TOKEN_BYTES: usize = 32;
/// Random bytes in a generated token (256 bits).
pub const GENERATED_TOKEN_BYTES: usize = 32;
/// The path served without a token.
pub const PUBLIC_PATH: &str = "/api/v1/openapi.json";

/// Reason given when a well-formed token matches no configured digest.
const UNKNOWN_TOKEN: &str = "unknown token";

/// The peer of a TCP connection, put into each request's extensions for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// SHA-256 of a token, as `[[api.token]].sha256` stores it.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Characters of a bearer token (RFC 6750 2.1 `b64token`).
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=')
}

/// Checks a token an administrator wants to hash: long enough and usable in a header.
pub fn check_new_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_BYTES {
        return Err(format!(
            "the token is {} bytes; use at least {MIN_TOKEN_BYTES} (or --generate one)",
            token.len()
        ));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "the token is {} bytes; at most {MAX_TOKEN_BYTES}",
            token.len()
        ));
    }
    if let Some(c) = token.chars().find(|&c| !is_token_char(c)) {
        return Err(format!(
            "the token contains {c:?}; use letters, digits and - . _ ~ + / ="
        ));
    }
    Ok(())
}

/// A fresh random token: hex of [`GENERATED_TOKEN_BYTES`] bytes from the OS generator.
pub fn generate_token() -> String {
    let mut bytes = [0u8; GENERATED_TOKEN_BYTES];
    crate::identity::os_random(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The configured tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    entries: Vec<ApiToken>,
}

/// What the middleware decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No token needed.
    Public,
    /// Let it through: the token's name and role.
    Allowed { name: String, role: ApiRole },
    /// 401: no usable `Authorization` header, or a token nobody configured.
    Unauthenticated { reason: &'static str },
    /// 403: a read-only token on a method that may change state.
    Forbidden { name: String },
}

impl Tokens {
    pub fn new(entries: Vec<ApiToken>) -> Tokens {
        Tokens { entries }
    }

    /// The entry whose digest is the token's. Every entry is compared, whatever matches.
    pub fn identify(&self, token: &str) -> Option<&ApiToken> {
        let digest = token_digest(token);
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(&e.sha256, &digest) && found.is_none() {
                found = Some(e);
            }
        }
        found
    }

    /// Decides one request from its method, path and headers.
    pub fn decide(&self, method: &Method, path: &str, headers: &HeaderMap) -> Decision {
        if (method == Method::GET || method == Method::HEAD) && path == PUBLIC_PATH {
            return Decision::Public;
        }
        let token = match bearer(headers) {
            Ok(t) => t,
            Err(reason) => return Decision::Unauthenticated { reason },
        };
        let Some(entry) = self.identify(token) else {
            return Decision::Unauthenticated {
                reason: UNKNOWN_TOKEN,
            };
        };
        let reads_only = method == Method::GET || method == Method::HEAD;
        if entry.role == ApiRole::ReadOnly && !reads_only {
            return Decision::Forbidden {
                name: entry.name.clone(),
            };
        }
        Decision::Allowed {
            name: entry.name.clone(),
            role: entry.role,
        }
    }
}

/// The token of the single `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Result<&str, &'static str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or("no Authorization header")?;
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    if value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
        return Err("Authorization header too long");
    }
    let text = value
        .to_str()
        .map_err(|_| "Authorization header is not ASCII")?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or("Authorization is not \"Bearer <token>\"")?;
    // RFC 7235 2.1: the scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Authorization scheme is not Bearer");
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || !token.chars().all(is_token_char) {
        return Err("malformed bearer token");
    }
    Ok(token)
}

/// The middleware: applies [`Tokens::decide`] and logs the outcome (never the token).
pub async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<Peer>()
        .map_or_else(|| "-".to_owned(), |p| p.0.to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match tokens.decide(&method, &path, req.headers()) {
        Decision::Public => next.run(req).await,
        Decision::Allowed { name, role } => {
            if method == Method::GET || method == Method::HEAD {
                tracing::debug!(%peer, token = %name, %method, %path, "API read");
            } else {
                tracing::info!(%peer, token = %name, role = role.as_str(), %method, %path, "API change requested");
            }
            next.run(req).await
        }
        Decision::Unauthenticated { reason } => {
            tracing::info!(%peer, %method, %path, reason, "API request refused: not authenticated");
            let challenge = if reason == UNKNOWN_TOKEN {
                r#"Bearer realm="esos", error="invalid_token""#
            } else {
                r#"Bearer realm="esos""#
            };
            refuse(
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "authentication required: {reason}; send Authorization: Bearer <token>"
                    ),
                ),
                challenge,
            )
        }
        Decision::Forbidden { name } => {
            tracing::info!(%peer, token = %name, %method, %path, "API request refused: read-only token");
            refuse(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("token {name:?} is read-only: {method} is not allowed"),
                ),
                r#"Bearer realm="esos", error="insufficient_scope""#,
            )
        }
    }
}

/// An error answer with its `WWW-Authenticate` challenge (RFC 6750 3).
fn refuse(e: ApiError, challenge: &'static str) -> Response {
    let mut r = e.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "0123456789abcdef0123456789abcdef-admin";
    const READER: &str = "0123456789abcdef0123456789abcdef-reader";

    fn tokens() -> Tokens {
        Tokens::new(vec![
            ApiToken {
                name: "ops".into(),
                role: ApiRole::Admin,
                sha256: token_digest(ADMIN),
            },
            ApiToken {
                name: "grafana".into(),
                role: ApiRole::ReadOnly,
                sha256: token_digest(READER),
            },
        ])
    }

    fn headers(auth: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for a in auth {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn digest_is_sha256() {
        // FIPS 180-2 test vector "abc".
        assert_eq!(
            crate::config::sha256_hex(&token_digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_decide_methods() {
        let t = tokens();
        let admin = headers(&[&format!("Bearer {ADMIN}")]);
        let reader = headers(&[&format!("bearer {READER}")]);
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            assert_eq!(
                t.decide(&m, "/api/v1/devices", &admin),
                Decision::Allowed {
                    name: "ops".into(),
                    role: ApiRole::Admin
                }
            );
        }
        for m in [Method::GET, Method::HEAD] {
            assert!(matches!(
                t.decide(&m, "/api/v1/devices", &reader),
                Decision::Allowed {
                    role: ApiRole::ReadOnly,
                    ..
                }
            ));
        }
        for m in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            assert_eq!(
                t.decide(&m, "/api/v1/devices", &reader),
                Decision::Forbidden {
                    name: "grafana".into()
                }
            );
        }
    }

    #[test]
    fn missing_wrong_and_malformed_tokens_are_unauthenticated() {
        let t = tokens();
        let bad = [
            vec![],
            vec!["Bearer nope-nope-nope"],
            vec!["Basic b3BzOnNlY3JldA=="],
            vec!["Bearer"],
            vec!["Bearer "],
            vec!["Bearer a b"],
            vec![ADMIN],
        ];
        for h in bad {
            for m in [Method::GET, Method::POST] {
                assert!(
                    matches!(
                        t.decide(&m, "/api/v1/devices", &headers(&h)),
                        Decision::Unauthenticated { .. }
                    ),
                    "{h:?}"
                );
            }
        }
        // Two headers are ambiguous even when one is right.
        let two = headers(&[&format!("Bearer {ADMIN}"), "Bearer x"]);
        assert!(matches!(
            t.decide(&Method::GET, "/api/v1/devices", &two),
            Decision::Unauthenticated { .. }
        ));
        // An over-long header is refused before hashing.
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(
            t.decide(&Method::GET, "/", &headers(&[&long])),
            Decision::Unauthenticated {
                reason: "Authorization header too long"
            }
        );
    }

    #[test]
    fn only_the_document_is_public() {
        let t = tokens();
        let none = HeaderMap::new();
        assert_eq!(t.decide(&Method::GET, PUBLIC_PATH, &none), Decision::Public);
        assert_eq!(
            t.decide(&Method::HEAD, PUBLIC_PATH, &none),
            Decision::Public
        );
        for (m, p) in [
            (Method::POST, PUBLIC_PATH),
            (Method::GET, "/api/v1/openapi.json/"),
            (Method::GET, "/api/v1/config"),
            (Method::GET, "/nowhere"),
        ] {
            assert!(
                matches!(t.decide(&m, p, &none), Decision::Unauthenticated { .. }),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn no_configured_tokens_let_nobody_in() {
        let t = Tokens::new(vec![]);
        let h = headers(&[&format!("Bearer {ADMIN}")]);
        assert!(matches!(
            t.decide(&Method::GET, "/api/v1/devices", &h),
            Decision::Unauthenticated { .. }
        ));
    }

    #[test]
    fn new_tokens_are_checked() {
        assert!(check_new_token(&generate_token()).is_ok());
        assert_ne!(generate_token(), generate_token());
        assert_eq!(generate_token().len(), 2 * GENERATED_TOKEN_BYTES);
        assert!(check_new_token("short").is_err());
        assert!(check_new_token(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_err());
        assert!(check_new_token(&format!("{ADMIN} space")).is_err());
        assert!(check_new_token(ADMIN).is_ok());
    }
}
