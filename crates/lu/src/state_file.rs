//! Small text files that keep a unit's state across restarts (persistent reservations
//! with APTPL, access states changed at run time): bounded reads, crash-safe writes.

use std::path::Path;

use esos_common::fs::{Replace, replace};

/// Largest state file read back; a larger one is refused rather than parsed.
pub const MAX_STATE_FILE_LEN: usize = 256 * 1024;

/// Errors of a state file.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_STATE_FILE_LEN} bytes")]
    TooLarge { path: String },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Replaces `path` with `bytes` crash-safely: after a crash the file holds the old or the
/// new state, never a torn one. No `.prev` copy: the state is the daemon's, not the admin's.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), StateFileError> {
    replace(
        path,
        bytes,
        Replace {
            keep_previous: false,
        },
    )
    .map_err(|source| StateFileError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The file's text, `None` when it does not exist, at most [`MAX_STATE_FILE_LEN`] bytes.
pub fn read(path: &Path) -> Result<Option<String>, StateFileError> {
    let name = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateFileError::Io { path: name, source }),
    };
    if text.len() > MAX_STATE_FILE_LEN {
        return Err(StateFileError::TooLarge { path: name });
    }
    String::from_utf8(text)
        .map(Some)
        .map_err(|_| StateFileError::Parse {
            path: name,
            line: 0,
            reason: "not UTF-8".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_none_large_is_refused_written_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state");
        assert!(read(&path).unwrap().is_none());
        write(&path, b"hello\n").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some("hello\n"));
        assert!(!dir.path().join("sub/state.prev").exists());
        std::fs::write(&path, vec![b'x'; MAX_STATE_FILE_LEN + 1]).unwrap();
        assert!(matches!(read(&path), Err(StateFileError::TooLarge { .. })));
    }
}
