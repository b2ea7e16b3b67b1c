//! Running external programs (initiators, mkfs, losetup) with a hard timeout.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a finished command produced.
#[derive(Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with everything the command printed unless it exited 0.
    pub fn ok(self) -> Self {
        assert!(
            self.success(),
            "command failed: {}\n{}",
            self.command,
            self.describe()
        );
        self
    }

    /// Exit status plus both streams, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Why a command produced no [`Output`].
#[derive(Debug)]
pub enum CmdError {
    Spawn {
        command: String,
        error: std::io::Error,
    },
    /// Killed (SIGKILL, by PID) after the timeout; carries what it printed until then.
    Timeout {
        command: String,
        timeout: Duration,
        stdout: String,
        stderr: String,
    },
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmdError::Spawn { command, error } => write!(f, "cannot run {command}: {error}"),
            CmdError::Timeout {
                command,
                timeout,
                stdout,
                stderr,
            } => write!(
                f,
                "{command} did not finish within {timeout:?}; killed.\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            ),
        }
    }
}

impl std::error::Error for CmdError {}

/// Renders a command line for messages.
pub fn render(program: &OsStr, args: &[&OsStr]) -> String {
    let mut s = program.to_string_lossy().into_owned();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `program args` with stdin closed; kills it by PID after `timeout`.
pub fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<Output, CmdError> {
    let mut c = Command::new(program);
    c.args(args);
    run_command(c, timeout)
}

/// Like [`run`], and panics (with the output) unless the command exits 0 in time.
pub fn run_ok<S: AsRef<OsStr>>(program: &str, args: &[S], timeout: Duration) -> Output {
    match run(program, args, timeout) {
        Ok(o) => o.ok(),
        Err(e) => panic!("{e}"),
    }
}

/// Runs a prepared command with a timeout. Both pipes are drained on their own threads so a
/// chatty child cannot block on a full pipe.
pub fn run_command(mut command: Command, timeout: Duration) -> Result<Output, CmdError> {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let rendered = render(
        &program,
        &args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>(),
    );
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().map_err(|error| CmdError::Spawn {
        command: rendered.clone(),
        error,
    })?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    match wait_timeout(&mut child, timeout) {
        Some(status) => Ok(Output {
            command: rendered,
            status,
            stdout: join(out),
            stderr: join(err),
            elapsed: start.elapsed(),
        }),
        None => {
            kill_pid(child.id(), libc::SIGKILL);
            let _ = child.wait();
            Err(CmdError::Timeout {
                command: rendered,
                timeout,
                stdout: join(out),
                stderr: join(err),
            })
        }
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> Option<std::thread::JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

fn join(h: Option<std::thread::JoinHandle<String>>) -> String {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// Longest pause between two checks of a child's state in [`wait_timeout`].
const WAIT_STEP_MAX: Duration = Duration::from_millis(50);

/// Waits for `child` at most `timeout`; `None` when it is still running. The child is not
/// reaped before it exits, so its PID cannot be reused while we may still signal it.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut step = Duration::from_millis(1);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(step.min(deadline - now));
        step = (step * 2).min(WAIT_STEP_MAX);
    }
}

/// Sends `signal` to exactly one process, by PID (never by name).
pub fn kill_pid(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) only sends a signal; pid is a child of ours that has not been reaped
    // yet (callers hold its `Child`), so the PID cannot name another process.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Runs a closure on its own thread and gives up after `timeout` (the thread is left to
/// finish on its own; its sockets have their own timeouts).
pub fn with_timeout<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let o = run(
            "sh",
            &["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(o.stdout.trim(), "out");
        assert_eq!(o.stderr.trim(), "err");
        assert_eq!(o.status.code(), Some(3));
        assert!(!o.success());
    }

    #[test]
    fn kills_on_timeout() {
        let start = Instant::now();
        let e = run("sleep", &["30"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, CmdError::Timeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_an_error() {
        assert!(matches!(
            run(
                "/nonexistent/esos-e2e-none",
                &[] as &[&str],
                Duration::from_secs(1)
            ),
            Err(CmdError::Spawn { .. })
        ));
    }
}
