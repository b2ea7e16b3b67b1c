//! The text UI end to end: `esos tui` runs in an 80×24 tmux pane against the real daemon;
//! keys go in with `send-keys`, the screen comes back with `capture-pane`, and every change
//! made on screen is checked again in the daemon's state through the CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use esos_e2e::daemon::{Ctx, Daemon};
use esos_e2e::{paths, tools};

const TARGET: &str = "iqn.2026-11.org.esos.test:tui";
/// Longest wait for text to appear on the TUI's screen (it polls the daemon every second).
const SCREEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the API socket after the portal accepts connections.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the TUI to exit after `q`.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the pane's shell writes the TUI's exit status, in the daemon's temp dir.
const EXIT_FILE: &str = "tui.exit";

fn config(ctx: &Ctx) -> String {
    format!(
        r#"[server]
data_dir = "{dir}/data"

[[server.portal]]
address = "127.0.0.1:{port}"

[[device]]
name = "d0"
type = "ram"
size = "8M"

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "d0" }}]
"#,
        dir = ctx.dir.display(),
        port = ctx.port
    )
}

fn socket_of(d: &Daemon) -> PathBuf {
    let socket = d.dir().join("data").join("esos.sock");
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < SOCKET_TIMEOUT,
            "no API socket at {}\n{}",
            socket.display(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    socket
}

/// `esos --socket S ARGS...`; its stdout, asserting success.
#[track_caller]
fn esos(d: &Daemon, socket: &Path, args: &[&str]) -> String {
    let out = Command::new(paths::esos_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("ESOS_SOCKET")
        .output()
        .expect("run esos");
    assert!(
        out.status.success(),
        "esos {args:?}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private tmux server (its own `-L` socket) running one 80×24 session. Dropping it
/// kills that server, whether the test passed or not.
struct Tmux {
    server: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached 80×24 session, without a
    /// status bar (the pane gets every row) and kept after the command exits (so a failing
    /// test can still show its last screen).
    fn start(dir: &Path, command: &str) -> Tmux {
        tools::require("tmux");
        static N: AtomicU32 = AtomicU32::new(0);
        let server = format!(
            "esos-tui-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let conf = dir.join("tmux.conf");
        std::fs::write(&conf, "set -g status off\nset -g remain-on-exit on\n")
            .expect("write tmux.conf");
        let t = Tmux { server };
        let out = t.run(&[
            "-f",
            &conf.to_string_lossy(),
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            "tui",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Key names as tmux knows them (`Enter`, `Tab`, `Right`) or single characters.
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
    }

    /// Text typed as is.
    fn type_text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", "tui", "-l", text])
                .status
                .success(),
            "send-keys -l {text:?}"
        );
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "tui"]).stdout).into_owned()
    }

    fn display(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "tui", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits (bounded) until `text` is on screen; returns the screen.
    #[track_caller]
    fn wait_for(&self, text: &str, d: &Daemon) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < SCREEN_TIMEOUT,
                "{text:?} not on screen within {SCREEN_TIMEOUT:?}:\n{s}\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Tmux {
    /// Waits (bounded) until one screen line holds every one of `parts`; returns it.
    #[track_caller]
    fn wait_for_row(&self, parts: &[&str], d: &Daemon) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if let Some(row) = s.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return row.to_owned();
            }
            assert!(
                start.elapsed() < SCREEN_TIMEOUT,
                "no line with {parts:?} within {SCREEN_TIMEOUT:?}:\n{s}\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn tui_adds_a_device_and_maps_it() {
    let d = Daemon::with_config(TARGET, config);
    let socket = socket_of(&d);
    let t = start_tui(&d, &socket);

    // The dashboard shows the daemon's target once the first poll answered.
    let s = t.wait_for(TARGET, &d);
    assert!(s.contains("1 Dashboard") && s.contains("6 System"), "{s}");
    assert!(s.contains("? help"), "{s}");

    // Devices tab: add a 16 MiB RAM device through the form.
    t.keys(&["2"]);
    t.wait_for("Exported as", &d);
    t.keys(&["a"]);
    t.wait_for("Add device", &d);
    t.keys(&["Right", "Right"]);
    t.wait_for("< ram >", &d);
    t.keys(&["Tab"]);
    t.type_text("tuidisk");
    t.keys(&["Tab", "Tab"]);
    t.type_text("16M");
    t.keys(&["Enter"]);
    t.wait_for("device tuidisk added", &d);
    let s = t.wait_for("tuidisk        ram", &d);
    assert!(s.contains("16M"), "{s}");
    let shown = esos(&d, &socket, &["--json", "device", "show", "tuidisk"]);
    assert!(shown.contains("\"size_bytes\": 16777216"), "{shown}");

    // Targets tab: map it; the picker offers only devices not yet mapped.
    t.keys(&["3"]);
    t.wait_for("Selected target", &d);
    t.keys(&["m"]);
    let s = t.wait_for("Map a device", &d);
    assert!(s.contains("> tuidisk"), "{s}");
    assert!(!s.contains("> d0"), "d0 is already mapped:\n{s}");
    t.keys(&["Enter"]);
    t.wait_for(&format!("tuidisk mapped at lun 1 of {TARGET}"), &d);
    t.wait_for("0:d0 1:tuidisk", &d);
    let shown = esos(&d, &socket, &["--json", "device", "show", "tuidisk"]);
    assert!(shown.contains(&format!("\"{TARGET}/1\"")), "{shown}");

    // Removal asks first: `n` keeps the device.
    t.keys(&["2", "Home", "d"]);
    t.wait_for("Remove device d0?", &d);
    t.keys(&["n"]);
    t.wait_for("cancelled", &d);
    // `y` sends it, and the daemon's refusal (d0 is mapped) reaches the status line.
    t.keys(&["d"]);
    t.wait_for("Remove device d0?", &d);
    t.keys(&["y"]);
    let s = t.wait_for("error: device \"d0\"", &d);
    assert!(s.contains("in use"), "{s}");
    let devices = esos(&d, &socket, &["--json", "device", "list"]);
    assert!(
        devices.contains("\"d0\"") && devices.contains("\"tuidisk\""),
        "{devices}"
    );

    quit_cleanly(&t, &d);
}

/// `q` quits with exit status 0 and gives the terminal back.
#[track_caller]
/// Quits with `q` and checks the TUI's exit status, which the pane's shell writes to
/// [`EXIT_FILE`] (tmux's own `pane_dead_status` is filled in only once its server reaps the
/// child, which on a busy machine can take longer than the process takes to exit).
fn quit_cleanly(t: &Tmux, d: &Daemon) {
    t.keys(&["q"]);
    let file = d.dir().join(EXIT_FILE);
    let start = Instant::now();
    loop {
        match std::fs::read_to_string(&file) {
            Ok(s) if s.ends_with('\n') => {
                assert_eq!(s.trim(), "0", "esos tui exit status\n{}", t.screen());
                return;
            }
            _ => {}
        }
        assert!(
            start.elapsed() < EXIT_TIMEOUT,
            "esos tui did not exit after q:\n{}",
            t.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `esos tui` against `d` in a fresh 80×24 pane.
fn start_tui(d: &Daemon, socket: &Path) -> Tmux {
    let command = format!(
        "'{}' tui --socket '{}'; echo $? > '{}'",
        paths::esos_bin().display(),
        socket.display(),
        d.dir().join(EXIT_FILE).display()
    );
    let t = Tmux::start(d.dir(), &command);
    assert_eq!(t.display("#{pane_width}x#{pane_height}"), "80x24");
    t
}

/// The e2e config plus a file device, which (unlike RAM) can grow live.
fn config_with_file(ctx: &Ctx) -> String {
    format!(
        r#"{}
[[device]]
name = "grow0"
type = "file"
path = "{dir}/grow0.img"
size = "8M"
"#,
        config(ctx),
        dir = ctx.dir.display()
    )
}

#[test]
fn tui_grows_a_device_and_sets_a_port_group_state() {
    let d = Daemon::with_config(TARGET, config_with_file);
    let socket = socket_of(&d);
    let t = start_tui(&d, &socket);
    t.wait_for(TARGET, &d);

    // Devices tab: select grow0 (the last device) and open the resize form.
    t.keys(&["2"]);
    t.wait_for("grow0", &d);
    t.keys(&["End", "s"]);
    t.wait_for("Resize grow0 (now 8M)", &d);
    // Shrinking is the daemon's to refuse; its message reaches the status line.
    t.type_text("4M");
    t.keys(&["Enter"]);
    let s = t.wait_for("error: ", &d);
    assert!(!s.contains("resized"), "{s}");
    let shown = esos(&d, &socket, &["--json", "device", "show", "grow0"]);
    assert!(shown.contains("\"size_bytes\": 8388608"), "{shown}");
    // Growing works live.
    t.keys(&["s"]);
    t.wait_for("Resize grow0", &d);
    t.type_text("16M");
    t.keys(&["Enter"]);
    t.wait_for("device grow0 resized to 16M", &d);
    let row = t.wait_for_row(&["> grow0", "16M"], &d);
    assert!(row.contains("file"), "{row}");
    let shown = esos(&d, &socket, &["--json", "device", "show", "grow0"]);
    assert!(shown.contains("\"size_bytes\": 16777216"), "{shown}");
    let image = d.dir().join("grow0.img");
    assert_eq!(std::fs::metadata(&image).expect("image").len(), 16 << 20);

    // Port groups tab: the daemon's one implicit group; standby asks first.
    t.keys(&["5"]);
    t.wait_for("(live)", &d);
    t.keys(&["s"]);
    t.wait_for("State of port group 1", &d);
    t.keys(&["Right", "Right"]);
    t.wait_for("< standby >", &d);
    t.keys(&["Enter"]);
    t.wait_for("Set port group 1 to standby?", &d);
    t.keys(&["y"]);
    t.wait_for("port group 1 is now standby", &d);
    t.wait_for_row(&["> 1 ", "standby"], &d);
    assert!(t.screen().contains("s set state"));
    let groups = esos(&d, &socket, &["--json", "port-group", "list"]);
    assert!(groups.contains("\"standby\""), "{groups}");

    quit_cleanly(&t, &d);
}
