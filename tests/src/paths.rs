//! Where the binaries under test live.

use std::path::{Path, PathBuf};

/// Environment variable that names the esos binary explicitly (scripts/check sets it to the
/// release build).
pub const ESOS_BIN_ENV: &str = "ESOS_BIN";

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The cargo target directory the running test binary was built into: test executables live
/// in `<target>/<profile>/deps/`, which works whatever CARGO_TARGET_DIR was at build time.
pub fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    let profile = deps.parent()?;
    Some(profile.parent()?.to_path_buf())
}

/// Locates the esos binary: `$ESOS_BIN`, else the newer of `<target>/release/esos` and
/// `<target>/debug/esos`. Panics with the command to run when there is none, since every
/// end-to-end test needs it.
pub fn esos_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(ESOS_BIN_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{ESOS_BIN_ENV}={} does not exist", p.display());
        return p;
    }
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    let dirs = [target_dir(), Some(workspace_root().join("target"))];
    for dir in dirs.into_iter().flatten() {
        for profile in ["release", "debug"] {
            let p = dir.join(profile).join("esos");
            if let Ok(m) = std::fs::metadata(&p) {
                candidates.push((m.modified().unwrap_or(std::time::UNIX_EPOCH), p));
            }
        }
    }
    candidates.sort();
    match candidates.pop() {
        Some((_, p)) => p,
        None => panic!(
            "no esos binary found: build it with `cargo build --release -p esos` \
             (same CARGO_TARGET_DIR as the tests) or set {ESOS_BIN_ENV}"
        ),
    }
}

/// True when the tests run as root (loop devices, mounts).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A temp dir on tmpfs (/dev/shm) named `prefix...`, or `None` (with a note on stderr)
/// where /dev/shm is not a tmpfs. Files there are served with zero-copy reads.
pub fn tmpfs_dir(prefix: &str) -> Option<tempfile::TempDir> {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%T", "/dev/shm"])
        .output()
        .ok()?;
    if String::from_utf8_lossy(&out.stdout).trim() != "tmpfs" {
        eprintln!("esos-e2e: /dev/shm is not a tmpfs here");
        return None;
    }
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/dev/shm")
        .ok()
}
