//! Crash-safe replacement of a small file (config, device identities, reservation and
//! access-state files): write a temporary file beside it, fsync it, rename it over the
//! old one, fsync the directory. After a crash the path holds either the old or the new
//! content, never a torn mix, and once the call returns the new content is durable.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of a newly created file: these files may hold CHAP secrets or reservation keys.
const NEW_FILE_MODE: u32 = 0o600;

/// How [`replace`] treats the file it replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replace {
    /// Keep the old content as `<path>.prev` (a hard link, so `path` exists at every
    /// instant), for an admin to compare or restore by hand.
    pub keep_previous: bool,
}

/// Replaces `path` with `data` crash-safely and durably. A rewrite keeps the permission
/// bits of the file it replaces; a new file is private to the daemon's user. The
/// directory is created when missing.
pub fn replace(path: &Path, data: &[u8], how: Replace) -> io::Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    // Unique per process and call: two writers of the same path never share a temp file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(NEW_FILE_MODE);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed `mode`; the old file's bits win.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        if how.keep_previous && path.exists() {
            let prev = dir.join(format!("{}.prev", name.to_string_lossy()));
            match std::fs::remove_file(&prev) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::hard_link(path, &prev)?;
        }
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_keeps_the_previous_version_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state");
        replace(&p, b"one", Replace::default()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        replace(&p, b"two", Replace::default()).unwrap();
        assert!(!dir.path().join("sub/state.prev").exists());
        replace(
            &p,
            b"three",
            Replace {
                keep_previous: true,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        assert_eq!(
            std::fs::read(dir.path().join("sub/state.prev")).unwrap(),
            b"two"
        );
        // Nothing else is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_rewrite_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conf");
        std::fs::write(&p, b"x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&p, b"y", Replace::default()).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        replace(&p, b"old", Replace::default()).unwrap();
        // A directory where the `.prev` link must go makes the call fail after the temp
        // file was written.
        std::fs::create_dir(dir.path().join("f.prev")).unwrap();
        std::fs::write(dir.path().join("f.prev/x"), b"").unwrap();
        assert!(
            replace(
                &p,
                b"new",
                Replace {
                    keep_previous: true
                }
            )
            .is_err()
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp.")
            })
            .count();
        assert_eq!(temps, 0);
    }
}
