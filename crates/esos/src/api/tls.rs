//! The TCP API's TLS identity: PEM certificate chain and key → a rustls server config.
//!
//! Read once at start (and by `esos config check`), so a bad file stops the daemon with a
//! message naming the config key instead of failing every handshake later. The ring
//! provider is used; TLS 1.2 and 1.3 with rustls' safe defaults; HTTP/1.1 only (ALPN).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ApiTls;

/// Largest PEM file read: a long chain is a few tens of KiB.
pub const MAX_PEM_BYTES: u64 = 1 << 20;
/// Most certificates in the chain.
pub const MAX_CHAIN_CERTS: usize = 16;

/// Why the TLS identity cannot be loaded; each names the config key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: {}: cannot read: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {}: is {size} bytes; a PEM file is at most {MAX_PEM_BYTES}", path.display())]
    TooLarge {
        key: &'static str,
        path: PathBuf,
        size: u64,
    },
    #[error("{key}: {}: {reason}", path.display())]
    Pem {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The key does not fit the certificate, or rustls refused them.
    #[error("api.tls_key: {}: does not fit api.tls_certificate {}: {reason}", key.display(), certificate.display())]
    Identity {
        certificate: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Loads the certificate chain and key of `tls`. Warnings (a key others can read) go to
/// `warnings`.
pub fn server_config(
    tls: &ApiTls,
    warnings: &mut Vec<String>,
) -> Result<Arc<ServerConfig>, TlsError> {
    const CERT: &str = "api.tls_certificate";
    const KEY: &str = "api.tls_key";
    let pem = read(CERT, &tls.certificate)?;
    let chain = certificates(&pem).map_err(|reason| TlsError::Pem {
        key: CERT,
        path: tls.certificate.clone(),
        reason,
    })?;
    let pem = read(KEY, &tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        key: KEY,
        path: tls.key.clone(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY section (PKCS#8, RSA or EC) found".into()
            }
            e => format!("not a PEM private key: {e}"),
        },
    })?;
    if let Ok(m) = std::fs::metadata(&tls.key)
        && m.permissions().mode() & 0o077 != 0
    {
        warnings.push(format!(
            "api.tls_key: {} is readable by group or others (mode {:03o}); chmod 600 it",
            tls.key.display(),
            m.permissions().mode() & 0o777
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let identity = |reason: String| TlsError::Identity {
        certificate: tls.certificate.clone(),
        key: tls.key.clone(),
        reason,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| identity(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| identity(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let io = |source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            key,
            path: path.to_owned(),
            size,
        });
    }
    std::fs::read(path).map_err(io)
}

/// Every CERTIFICATE section, leaf first; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        let c = c.map_err(|e| format!("not a PEM certificate: {e}"))?;
        if chain.len() == MAX_CHAIN_CERTS {
            return Err(format!("holds more than {MAX_CHAIN_CERTS} certificates"));
        }
        chain.push(c);
    }
    if chain.is_empty() {
        return Err("no CERTIFICATE section found".into());
    }
    Ok(chain)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a fresh self-signed certificate and key for 127.0.0.1 into `dir` with
    /// openssl; `None` when openssl is not installed.
    pub fn self_signed(dir: &Path) -> Option<ApiTls> {
        let tls = ApiTls {
            certificate: dir.join("api.crt"),
            key: dir.join("api.key"),
        };
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=esos-test"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&tls.key)
            .arg("-out")
            .arg(&tls.certificate)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Some(tls)
    }

    #[test]
    fn a_self_signed_identity_loads() {
        let dir = tempfile::tempdir().unwrap();
        let Some(tls) = self_signed(dir.path()) else {
            eprintln!("SKIPPED: openssl not installed");
            return;
        };
        let mut w = Vec::new();
        let c = server_config(&tls, &mut w).unwrap();
        assert_eq!(c.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(w.is_empty(), "{w:?}");
        std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        server_config(&tls, &mut w).unwrap();
        assert!(w[0].starts_with("api.tls_key"), "{w:?}");
    }

    #[test]
    fn bad_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let Some(good) = self_signed(dir.path()) else {
            eprintln!("SKIPPED: openssl not installed");
            return;
        };
        let mut w = Vec::new();
        let err = |tls: &ApiTls| server_config(tls, &mut Vec::new()).unwrap_err().to_string();

        let missing = ApiTls {
            certificate: dir.path().join("nope.crt"),
            ..good.clone()
        };
        let e = err(&missing);
        assert!(
            e.starts_with("api.tls_certificate:") && e.contains("cannot read"),
            "{e}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello\n").unwrap();
        let e = err(&ApiTls {
            certificate: garbage.clone(),
            ..good.clone()
        });
        assert!(
            e.starts_with("api.tls_certificate:") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let e = err(&ApiTls {
            key: garbage.clone(),
            ..good.clone()
        });
        assert!(
            e.starts_with("api.tls_key:") && e.contains("no PRIVATE KEY"),
            "{e}"
        );

        // The certificate given as the key and the other way round.
        let e = err(&ApiTls {
            certificate: good.key.clone(),
            key: good.certificate.clone(),
        });
        assert!(e.starts_with("api.tls_certificate:"), "{e}");

        // A key of another certificate.
        let other = tempfile::tempdir().unwrap();
        let other = self_signed(other.path()).unwrap();
        let e = err(&ApiTls {
            key: other.key.clone(),
            ..good.clone()
        });
        assert!(
            e.starts_with("api.tls_key:") && e.contains("does not fit"),
            "{e}"
        );

        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; MAX_PEM_BYTES as usize + 1]).unwrap();
        let e = err(&ApiTls {
            certificate: big,
            ..good.clone()
        });
        assert!(e.contains("at most"), "{e}");
        assert!(server_config(&good, &mut w).is_ok());
    }
}
