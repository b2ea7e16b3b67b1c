//! Debian's tgt as a reference peer: the harness' own clients are validated against it, so
//! a failure against esos is not a client bug. Started and stopped by PID like esos.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::cmd::{self, kill_pid, wait_timeout};

use crate::net;

/// Longest a tgtadm call may take.
const TGTADM_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `tgtd` with one target and one file LUN (LUN 1; LUN 0 is tgt's controller).
pub struct Tgt {
    child: Option<Child>,
    pub port: u16,
    pub target: String,
    pub lun: u32,
    dir: TempDir,
}

impl Tgt {
    /// Starts tgtd on a free loopback port serving `size_bytes` of file LUN. `None` when tgt
    /// is not installed.
    pub fn start(size_bytes: u64) -> Option<Tgt> {
        if cmd::run("tgtd", &["--help"], Duration::from_secs(5)).is_err() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("esos-e2e-tgt-")
            .tempdir()
            .ok()?;
        let port = net::free_port();
        // tgtd's control port (the name of its management socket) must be below 32768.
        let control = (port % 30_000 + 1_024).to_string();
        let img = dir.path().join("lun1.img");
        std::fs::File::create(&img).ok()?.set_len(size_bytes).ok()?;
        let log = std::fs::File::create(dir.path().join("tgtd.log")).ok()?;
        let child = Command::new("tgtd")
            .args([
                "-f",
                "--iscsi",
                &format!("portal=127.0.0.1:{port}"),
                "--control-port",
                &control,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .spawn()
            .ok()?;
        let mut t = Tgt {
            child: Some(child),
            port,
            target: "iqn.2026-11.org.esos:tgt-peer".into(),
            lun: 1,
            dir,
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            net::wait_for_listener(addr, Duration::from_secs(10), || true),
            "tgtd did not listen"
        );
        let p = control;
        let tgtadm = |args: &[&str]| {
            let mut a = vec!["-C", &p, "--lld", "iscsi"];
            a.extend_from_slice(args);
            cmd::run_ok("tgtadm", &a, TGTADM_TIMEOUT);
        };
        let tn = t.target.clone();
        let img_s = img.to_string_lossy().into_owned();
        tgtadm(&["--op", "new", "--mode", "target", "--tid", "1", "-T", &tn]);
        tgtadm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            &img_s,
        ]);
        tgtadm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ]);
        // tgt offers no digests unless told to.
        for key in ["HeaderDigest", "DataDigest"] {
            tgtadm(&[
                "--op",
                "update",
                "--mode",
                "target",
                "--tid",
                "1",
                "-n",
                key,
                "-v",
                "CRC32C,None",
            ]);
        }
        t.lun = 1;
        Some(t)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn image(&self) -> std::path::PathBuf {
        self.dir.path().join("lun1.img")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tgt {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // tgtd ignores SIGTERM while it has targets; it holds nothing worth flushing
            // for a test, so it is killed outright (by PID).
            kill_pid(c.id(), libc::SIGKILL);
            let _ = wait_timeout(&mut c, Duration::from_secs(10));
        }
    }
}
