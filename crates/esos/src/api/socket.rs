//! The API's unix socket: created mode 0600 without a window where it is more open, a stale
//! one replaced, a live one refused, and removed on shutdown only if it is still ours.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another daemon answers on the socket.
    #[error("{}: another esos daemon is serving its API there", path.display())]
    InUse { path: PathBuf },
    /// The path exists and is not a socket: never delete an unknown file.
    #[error("{}: exists and is not a socket; remove it or choose another path", path.display())]
    NotASocket { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A bound listener and the guard that removes its socket file.
pub struct Bound {
    pub listener: UnixListener,
    pub guard: SocketGuard,
}

/// Identifies the socket file we created, so shutdown never removes a successor's.
pub struct SocketGuard {
    path: PathBuf,
    dev_ino: Option<(u64, u64)>,
}

impl SocketGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still the one we bound.
    pub fn remove(self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && Some((m.dev(), m.ino())) == self.dev_ino
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove API socket");
        }
    }
}

/// Binds `path` as described in the module documentation.
pub async fn bind_socket(path: &Path) -> Result<Bound, ServeError> {
    let io = |source| ServeError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::InUse {
                    path: path.to_owned(),
                });
            }
            // Nobody listens: left behind by a daemon that died.
            tracing::info!(socket = %path.display(), "replacing stale API socket");
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }

    // Bind inside a fresh directory only we can enter, tighten the socket to 0600, then
    // rename it into place: at no moment can another user connect.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = tempdir_in(&parent).map_err(io)?;
    let tmp_sock = staging.join("sock");
    let bound = (|| {
        let listener = UnixListener::bind(&tmp_sock)?;
        std::fs::set_permissions(&tmp_sock, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp_sock, path)?;
        Ok::<_, std::io::Error>(listener)
    })();
    let _ = std::fs::remove_file(&tmp_sock);
    let _ = std::fs::remove_dir(&staging);
    let listener = bound.map_err(io)?;
    let dev_ino = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    Ok(Bound {
        listener,
        guard: SocketGuard {
            path: path.to_owned(),
            dev_ino,
        },
    })
}

/// Creates a mode-0700 directory in `parent` with a unique name.
fn tempdir_in(parent: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    /// Attempts before giving up on finding a free name.
    const MAX_ATTEMPTS: u32 = 16;
    let mut last = None;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for attempt in 0..MAX_ATTEMPTS {
        let dir = parent.join(format!(
            ".esos-api-{}-{nanos:08x}-{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}
