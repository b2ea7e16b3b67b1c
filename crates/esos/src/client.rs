//! A minimal HTTP/1.1 client for the management API on its unix socket: one request per
//! connection, bounded answers. The CLI verbs are built on it.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Largest answer accepted: a whole config (the daemon's own limit) with room for JSON.
pub const MAX_RESPONSE_BYTES: usize = 2 * crate::api::MAX_BODY_BYTES;

/// How long a request may take, connection included. Applies open devices (file creation
/// can be slow on a busy disk), so this is generous.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Where the daemon's socket is when nothing else says.
pub const SYSTEM_SOCKET: &str = "/var/lib/esos/esos.sock";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody answers on the socket.
    #[error("cannot reach the esos daemon at {}: {source}", path.display())]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Protocol { path: PathBuf, message: String },
    #[error("{}: no answer within {} s", path.display(), REQUEST_TIMEOUT.as_secs())]
    Timeout { path: PathBuf },
}

/// A status and a body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// The daemon's error message (`{"error": ...}`), or the raw body.
    pub fn error_message(&self) -> String {
        self.json()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {}: {}", self.status, self.text().trim()))
    }
}

/// A client for one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request; `path` starts with `/api/v1` and has its segments encoded
    /// ([`segment`]).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, ClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.request_inner(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout {
                path: self.socket.clone(),
            })?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, ClientError> {
        let proto = |message: String| ClientError::Protocol {
            path: self.socket.clone(),
            message,
        };
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Unreachable {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| proto(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "esos");
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header(hyper::header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| proto(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| proto(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| proto(format!("reading the answer: {e}")))?
            .to_bytes();
        driver.abort();
        Ok(Answer {
            status,
            body: bytes.to_vec(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.request(Method::GET, path, None).await
    }

    /// A request with a JSON body.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, ClientError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.request(method, path, Some(("application/json", bytes)))
            .await
    }
}

/// Percent-encodes one path segment (RFC 3986 3.3: unreserved, sub-delims, ':' and '@' pass).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b'@'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'=' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The socket to talk to: `explicit` (--socket / ESOS_SOCKET); else the data directory of
/// `config` (--config); else `./esos-data/esos.sock` when it exists (the built-in default's
/// data directory); else [`SYSTEM_SOCKET`].
pub fn resolve_socket(
    explicit: Option<&Path>,
    config: Option<&Path>,
) -> Result<PathBuf, crate::config::ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(file) = config {
        let plan = crate::config::load(file)?;
        return Ok(plan.data_dir.join(crate::api::SOCKET_NAME));
    }
    let local = Path::new("esos-data").join(crate::api::SOCKET_NAME);
    if local.exists() {
        return Ok(local);
    }
    Ok(PathBuf::from(SYSTEM_SOCKET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(
            segment("iqn.2026-11.org.esos:t1"),
            "iqn.2026-11.org.esos:t1"
        );
        assert_eq!(segment("[::1]:3260"), "%5B::1%5D:3260");
        assert_eq!(segment("a b/c?d#é"), "a%20b%2Fc%3Fd%23%C3%A9");
    }

    #[test]
    fn socket_resolution_order() {
        let explicit = Path::new("/x/y.sock");
        assert_eq!(resolve_socket(Some(explicit), None).unwrap(), explicit);
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[server]\ndata_dir = \"state\"\n[[device]]\nname = \"a\"\ntype = \"null\"\n\
             size = \"1M\"\n",
        )
        .unwrap();
        assert_eq!(
            resolve_socket(None, Some(&cfg)).unwrap(),
            dir.path().join("state").join(crate::api::SOCKET_NAME)
        );
        assert!(resolve_socket(None, Some(&dir.path().join("missing.toml"))).is_err());
    }

    #[tokio::test]
    async fn an_absent_daemon_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(dir.path().join("none.sock"));
        assert!(matches!(
            c.get("/api/v1/devices").await,
            Err(ClientError::Unreachable { .. })
        ));
    }
}
