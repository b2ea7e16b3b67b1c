//! Starting and stopping the real esos daemon.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cmd::{kill_pid, wait_timeout};
use crate::{net, paths};

/// Longest wait for a started daemon to accept TCP on its portal.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait after SIGTERM before the harness uses SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Target name of a quick export (`esos serve --lun`) unless `--target` is given.
pub const QUICK_TARGET: &str = "iqn.2026-11.org.esos:quick";

/// What the daemon is started with; the config text is produced once the port and the
/// temp dir are known.
pub struct Ctx {
    pub port: u16,
    pub dir: PathBuf,
}

impl Ctx {
    /// The start of a test config: `[server]` with its data dir in the test dir, and one
    /// loopback portal on the test's port. Other `[server.*]` tables may follow it.
    pub fn server_toml(&self) -> String {
        format!(
            "[server]\ndata_dir = \"{}/data\"\n\n[[server.portal]]\naddress = \"127.0.0.1:{}\"\n",
            self.dir.display(),
            self.port
        )
    }
}

/// A `[[target]]` named `target` that shows `device` at LUN 0 to every initiator.
pub fn default_target_toml(target: &str, device: &str) -> String {
    format!(
        "[[target]]\nname = \"{target}\"\ndefault_luns = [{{ lun = 0, device = \"{device}\" }}]\n"
    )
}

/// A running esos daemon in its own temp dir. Dropping it stops it: SIGTERM by PID, a
/// bounded wait, then SIGKILL by PID. Its log is printed when the test is failing.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    /// The target a quick export serves (or the first target of a config).
    pub target: String,
    log_path: PathBuf,
    // Declared last so it is removed after the child has been stopped.
    dir: TempDir,
}

/// Builds the command line of a quick export.
#[derive(Default, Clone)]
pub struct Quick {
    luns: Vec<String>,
    target: Option<String>,
    chap: Option<(String, String)>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Quick {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `--lun` argument; `{dir}` is replaced by the daemon's temp dir.
    pub fn lun(mut self, spec: impl Into<String>) -> Self {
        self.luns.push(spec.into());
        self
    }

    pub fn target(mut self, iqn: impl Into<String>) -> Self {
        self.target = Some(iqn.into());
        self
    }

    pub fn chap(mut self, user: impl Into<String>, secret: impl Into<String>) -> Self {
        self.chap = Some((user.into(), secret.into()));
        self
    }

    /// Any other `esos serve` argument (e.g. `--write-through`).
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra.push(a.into());
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn start(self) -> Daemon {
        let target = self
            .target
            .clone()
            .unwrap_or_else(|| QUICK_TARGET.to_owned());
        let env = self.env.clone();
        Daemon::spawn(target, env, move |ctx| {
            let dir = ctx.dir.to_string_lossy().into_owned();
            let mut a = vec![
                "serve".to_owned(),
                "--portal".to_owned(),
                format!("127.0.0.1:{}", ctx.port),
                "--data-dir".to_owned(),
                format!("{dir}/data"),
            ];
            for l in &self.luns {
                a.push("--lun".into());
                a.push(l.replace("{dir}", &dir));
            }
            if let Some(t) = &self.target {
                a.extend(["--target".into(), t.clone()]);
            }
            if let Some((u, s)) = &self.chap {
                a.extend([
                    "--chap-user".into(),
                    u.clone(),
                    "--chap-secret".into(),
                    s.clone(),
                ]);
            }
            a.extend(self.extra.iter().cloned());
            a
        })
    }
}

impl Daemon {
    /// `esos serve --portal 127.0.0.1:PORT --data-dir DIR/data --lun SPEC...`
    pub fn quick(luns: &[&str]) -> Daemon {
        luns.iter().fold(Quick::new(), |q, l| q.lun(*l)).start()
    }

    /// `esos serve --config DIR/esos.toml`; `config` builds the TOML from the port and dir.
    /// `target` is the IQN that [`Daemon::url`] uses.
    pub fn with_config(target: &str, config: impl FnOnce(&Ctx) -> String) -> Daemon {
        Daemon::spawn(target.to_owned(), Vec::new(), move |ctx| {
            let path = ctx.dir.join("esos.toml");
            std::fs::write(&path, config(ctx)).expect("write esos.toml");
            vec![
                "serve".into(),
                "--config".into(),
                path.to_string_lossy().into_owned(),
            ]
        })
    }

    fn spawn(
        target: String,
        env: Vec<(String, String)>,
        args: impl FnOnce(&Ctx) -> Vec<String>,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("esos-e2e-")
            .tempdir()
            .expect("tempdir");
        let port = net::free_port();
        let ctx = Ctx {
            port,
            dir: dir.path().to_path_buf(),
        };
        let args = args(&ctx);
        let log_path = dir.path().join("esos.log");
        let log = File::create(&log_path).expect("create log");
        let log2 = log.try_clone().expect("dup log");
        let bin = paths::esos_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env(
                "RUST_LOG",
                std::env::var("ESOS_E2E_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut d = Daemon {
            child: Some(child),
            port,
            target,
            log_path,
            dir,
        };
        eprintln!(
            "esos-e2e: started {} {} (pid {})",
            bin.display(),
            args.join(" "),
            d.pid()
        );
        let addr = d.addr();
        let child = d.child.as_mut().expect("child");
        let up =
            net::wait_for_listener(addr, START_TIMEOUT, || matches!(child.try_wait(), Ok(None)));
        if !up {
            let status = child.try_wait().ok().flatten();
            panic!(
                "esos did not accept connections on {addr} within {START_TIMEOUT:?} (exit: {status:?})\n{}",
                d.log()
            );
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `127.0.0.1:PORT`
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `iscsi://127.0.0.1:PORT/TARGET/LUN`
    pub fn url(&self, lun: u32) -> String {
        format!("iscsi://127.0.0.1:{}/{}/{lun}", self.port, self.target)
    }

    /// The daemon's temp dir (config, data dir, log, backing files the test puts there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the daemon has logged so far.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        format!(
            "--- esos log ({}) ---\n{text}--- end of esos log ---",
            self.log_path.display()
        )
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits at most `timeout`; `None` when it did not exit in time (it is
    /// then killed when dropped).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        kill_pid(child.id(), libc::SIGTERM);
        wait_timeout(child, timeout)
    }

    /// Stops the daemon like Drop does and returns its exit status and the time it took
    /// after SIGTERM.
    pub fn stop(mut self) -> (Option<ExitStatus>, Duration) {
        let start = Instant::now();
        let s = self.terminate(STOP_TIMEOUT);
        (s, start.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = match child.try_wait() {
            Ok(Some(s)) => Some(s),
            _ => {
                kill_pid(child.id(), libc::SIGTERM);
                let s = wait_timeout(&mut child, STOP_TIMEOUT);
                if s.is_none() {
                    eprintln!(
                        "esos-e2e: esos (pid {}) ignored SIGTERM; SIGKILL",
                        child.id()
                    );
                    kill_pid(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                }
                s
            }
        };
        if std::thread::panicking() || std::env::var_os("ESOS_E2E_SHOW_LOG").is_some() {
            eprintln!("esos-e2e: esos exit status: {status:?}\n{}", self.log());
        }
    }
}
