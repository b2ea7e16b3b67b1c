//! The Linux kernel iSCSI initiator end to end: runs `scripts/e2e-linux`, which boots
//! Debian's kernel in a qemu VM (TCG) inside a network namespace and drives discovery and
//! login with CHAP, LU identity, ext4 and xfs round trips with fsck, discard on a thin LUN,
//! logout/login, and esos restarts (SIGTERM and SIGKILL) under write load.
//!
//! Needs root (namespace, tap device) and qemu-system-x86 (installed by the script when
//! missing). Skipped, saying why, only when the script reports it cannot run here (exit 77:
//! not root, or the tools are missing and cannot be installed). The guest console and the
//! daemon log end up in `<target>/esos-e2e/linux/`.

use std::process::Command;
use std::time::Duration;

use esos_e2e::{cmd, paths};

/// Exit status of `scripts/e2e-linux` when the host cannot run the VM at all.
const EXIT_CANNOT_RUN: i32 = 77;

/// Outer bound on the script, VM build (first run: package downloads) included. The script
/// bounds the VM itself far tighter; this only catches a hung download or build.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(25 * 60);

/// Grace between SIGTERM and SIGKILL, so the script can delete its namespace and stop esos.
const SCRIPT_KILL_GRACE_S: u64 = 30;

#[test]
fn linux_kernel_initiator() {
    if !paths::is_root() {
        eprintln!("SKIPPED: the Linux initiator VM test needs root (network namespace, tap)");
        return;
    }
    let root = paths::workspace_root();
    let logs = paths::target_dir()
        .unwrap_or_else(|| root.join("target"))
        .join("esos-e2e")
        .join("linux");
    // `timeout` sends SIGTERM first: the script's trap then removes its namespace, stops
    // esos and qemu by PID. cmd's own SIGKILL is only the last resort.
    let mut c = Command::new("timeout");
    c.arg("-k")
        .arg(format!("{SCRIPT_KILL_GRACE_S}s"))
        .arg(format!("{}s", SCRIPT_TIMEOUT.as_secs()))
        .arg(root.join("scripts").join("e2e-linux"))
        .env(paths::ESOS_BIN_ENV, paths::esos_bin())
        .env("ESOS_E2E_LINUX_LOGS", &logs);
    let limit = SCRIPT_TIMEOUT + Duration::from_secs(2 * SCRIPT_KILL_GRACE_S);
    let out = match cmd::run_command(c, limit) {
        Ok(o) => o,
        Err(e) => panic!("scripts/e2e-linux: {e}"),
    };
    if out.status.code() == Some(EXIT_CANNOT_RUN) {
        let why = out
            .stderr
            .lines()
            .rev()
            .find(|l| l.contains("cannot run"))
            .unwrap_or("scripts/e2e-linux cannot run here");
        eprintln!("SKIPPED: {why}");
        return;
    }
    // The step lines and timings, also on success (visible with --nocapture).
    eprintln!("{}", out.stderr);
    assert!(
        out.success(),
        "scripts/e2e-linux failed after {:?} (logs in {}):\n{}",
        out.elapsed,
        logs.display(),
        out.describe()
    );
    for step in [
        "setup", "discover", "login", "identity", "ext4", "xfs", "discard", "relogin", "restart",
        "logout",
    ] {
        assert!(
            out.stderr.contains(&format!("e2e-linux: {step} OK")),
            "step {step} did not report OK:\n{}",
            out.stderr
        );
    }
}
