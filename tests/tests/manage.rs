//! The management plane end to end: the `esos` CLI talks to a running daemon over its API
//! socket; changes reach logged-in sessions (REPORTED LUNS DATA HAS CHANGED, SPC-4 6.37),
//! are persisted to the config file with its comments, and survive a restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use esos_e2e::client::{Conn, LoginOptions};
use esos_e2e::daemon::{Ctx, Daemon};
use esos_e2e::paths;

const TARGET: &str = "iqn.2026-11.org.esos.test:manage";
const TARGET2: &str = "iqn.2026-11.org.esos.test:manage2";
/// Longest wait for the API socket to appear after the portal accepts connections.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

fn config(ctx: &Ctx) -> String {
    format!(
        r#"# Managed by the e2e test. This comment must survive every change.
[server]
data_dir = "{dir}/data"   # identities and the API socket

[[server.portal]]
address = "127.0.0.1:{port}"

# The first disk.
[[device]]
name = "d0"
type = "ram"
size = "8M"

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "d0" }}]   # everyone sees d0
"#,
        dir = ctx.dir.display(),
        port = ctx.port
    )
}

/// Output of one CLI run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn esos(socket: &Path, args: &[&str]) -> Run {
    let out = Command::new(paths::esos_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("ESOS_SOCKET")
        .output()
        .expect("run esos");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn ok(d: &Daemon, socket: &Path, args: &[&str]) -> String {
    let r = esos(socket, args);
    assert_eq!(
        r.code,
        0,
        "esos {args:?} failed:\n{}{}\n{}",
        r.stdout,
        r.stderr,
        d.log()
    );
    r.stdout
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

/// LUN numbers of REPORT LUNS (SPC-4 6.33), flat addressing.
fn report_luns(c: &mut Conn) -> Vec<u64> {
    let cdb = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    let r = c.command(0, &cdb, &[], 4096).expect("REPORT LUNS");
    assert!(r.is_good(), "REPORT LUNS: {:?}", r.sense_triple());
    let len = u32::from_be_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]) as usize;
    r.data[8..8 + len]
        .chunks(8)
        .map(|e| u64::from(u16::from_be_bytes([e[0] & 0x3f, e[1]])))
        .collect()
}

/// TEST UNIT READY until GOOD, returning the unit attentions seen on the way.
fn unit_attentions(c: &mut Conn, lun: u64) -> Vec<(u8, u8, u8)> {
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = c.test_unit_ready(lun).expect("TEST UNIT READY");
        if r.is_good() {
            return seen;
        }
        seen.extend(r.sense_triple());
    }
    panic!("TEST UNIT READY never GOOD; saw {seen:?}");
}

#[test]
fn cli_changes_are_live_persisted_and_survive_a_restart() {
    let d = Daemon::with_config(TARGET, config);
    let socket = socket_of(&d);
    let file = d.dir().join("esos.toml");
    let original = std::fs::read_to_string(&file).unwrap();

    let mut c = Conn::login(d.addr(), &LoginOptions::normal(TARGET))
        .unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    c.clear_unit_attention(0).unwrap();
    assert_eq!(report_luns(&mut c), [0]);

    // A device, mapped at LUN 1 of the target the session uses.
    ok(&d, &socket, &["device", "add", "ram", "d1", "--size", "4M"]);
    let out = ok(&d, &socket, &["lun", "map", TARGET, "d1", "--lun", "1"]);
    assert!(out.contains("lun 1"), "{out}");
    assert!(
        unit_attentions(&mut c, 0).contains(&(0x6, 0x3f, 0x0e)),
        "no REPORTED LUNS DATA HAS CHANGED\n{}",
        d.log()
    );
    assert_eq!(report_luns(&mut c), [0, 1]);

    // A second target with an initiator group and its own LUN map.
    ok(&d, &socket, &["device", "add", "ram", "d2", "--size", "4M"]);
    ok(&d, &socket, &["target", "add", TARGET2]);
    ok(
        &d,
        &socket,
        &[
            "group",
            "add",
            TARGET2,
            "hosts",
            "--initiator",
            "iqn.1993-08.org.debian:01:h1",
        ],
    );
    ok(
        &d,
        &socket,
        &["lun", "map", TARGET2, "d2", "--group", "hosts"],
    );
    ok(&d, &socket, &["target", "enable", TARGET2]);

    let listed = ok(&d, &socket, &["device", "list"]);
    assert!(listed.contains(&format!("{TARGET2}/hosts/0")), "{listed}");
    let json = ok(&d, &socket, &["--json", "target", "list"]);
    assert!(json.trim_start().starts_with('['), "{json}");
    let sessions = ok(&d, &socket, &["session", "list"]);
    assert!(sessions.contains(TARGET), "{sessions}");

    // Refusals: exit 1 with a message naming the object; nothing changes.
    let before = std::fs::read_to_string(&file).unwrap();
    let r = esos(&socket, &["lun", "map", TARGET, "ghost"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("\"ghost\""), "{}", r.stderr);
    let r = esos(&socket, &["device", "remove", "d1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("in use"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    // No daemon there: exit 3.
    let r = esos(&d.dir().join("none.sock"), &["device", "list"]);
    assert_eq!(r.code, 3, "{}", r.stderr);

    // The file on disk is the running config, comments intact.
    let on_disk = std::fs::read_to_string(&file).unwrap();
    assert_eq!(ok(&d, &socket, &["config", "export"]), on_disk);
    for comment in original
        .lines()
        .filter_map(|l| l.find('#').map(|i| &l[i..]))
    {
        assert!(on_disk.contains(comment), "lost {comment:?}:\n{on_disk}");
    }
    // Applying the running config again changes nothing.
    let again = ok(&d, &socket, &["config", "apply", file.to_str().unwrap()]);
    assert!(
        !again.contains("added") && !again.contains("removed"),
        "{again}"
    );

    // Unmap LUN 1 and remove d1: the session sees LUN 1 go.
    ok(&d, &socket, &["lun", "unmap", TARGET, "1"]);
    ok(&d, &socket, &["device", "remove", "d1"]);
    assert!(unit_attentions(&mut c, 0).contains(&(0x6, 0x3f, 0x0e)));
    assert_eq!(report_luns(&mut c), [0]);

    // Restart on the persisted file (on a new port): the same devices and targets.
    let devices = ok(&d, &socket, &["--json", "device", "list"]);
    let targets = ok(&d, &socket, &["--json", "target", "list"]);
    let persisted = std::fs::read_to_string(&file).unwrap();
    // Identities live in the data dir: carry it over, as a real restart keeps it.
    let identities = std::fs::read(d.dir().join("data").join("identity.toml")).unwrap();
    let old_port = d.port;
    drop(c);
    let (status, _) = d.stop();
    assert!(status.is_some_and(|s| s.success()));
    let d2 = Daemon::with_config(TARGET, |ctx| {
        std::fs::create_dir_all(ctx.dir.join("data")).unwrap();
        std::fs::write(ctx.dir.join("data").join("identity.toml"), &identities).unwrap();
        persisted
            .replace(&format!(":{old_port}\""), &format!(":{}\"", ctx.port))
            .replace(
                &format!("{}", old_dir_of(&persisted).display()),
                &ctx.dir.display().to_string(),
            )
    });
    let socket2 = socket_of(&d2);
    assert_eq!(ok(&d2, &socket2, &["--json", "device", "list"]), devices);
    let t2 = ok(&d2, &socket2, &["--json", "target", "list"]);
    assert_eq!(strip_sessions(&t2), strip_sessions(&targets));
}

/// The temp dir the first daemon's `data_dir` names.
fn old_dir_of(text: &str) -> PathBuf {
    let line = text
        .lines()
        .find(|l| l.starts_with("data_dir"))
        .expect("data_dir line");
    let start = line.find('"').unwrap() + 1;
    let end = start + line[start..].find('"').unwrap();
    Path::new(&line[start..end]).parent().unwrap().to_path_buf()
}

/// Target JSON without the session counts, which differ after a restart.
fn strip_sessions(json: &str) -> String {
    json.lines()
        .filter(|l| !l.trim_start().starts_with("\"sessions\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `esos config apply` of a file with 1,000 file LUNs on 100 targets to a daemon serving
/// none of them: everything is added live and a session sees its LUNs; applying the same
/// file again changes nothing. (How long it takes is measured by scripts/bench, not here.)
#[test]
fn applying_1000_luns_twice_changes_nothing_the_second_time() {
    const DEVICES: usize = 1000;
    const TARGETS: usize = 100;
    let d = Daemon::with_config(TARGET, |ctx| {
        format!(
            "[server]\ndata_dir = \"{dir}/data\"\n\n[[server.portal]]\naddress = \"127.0.0.1:{port}\"\n",
            dir = ctx.dir.display(),
            port = ctx.port
        )
    });
    let socket = socket_of(&d);
    let base = std::fs::read_to_string(d.dir().join("esos.toml")).unwrap();
    let disks = d.dir().join("disks");
    std::fs::create_dir(&disks).unwrap();
    let mut text = base.clone();
    for i in 0..DEVICES {
        let img = disks.join(format!("d{i}.img"));
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(64 << 20))
            .unwrap();
        text.push_str(&format!(
            "\n[[device]]\nname = \"d{i}\"\ntype = \"file\"\npath = \"{}\"\n",
            img.display()
        ));
    }
    let per_target = DEVICES / TARGETS;
    for t in 0..TARGETS {
        let maps: Vec<String> = (0..per_target)
            .map(|k| format!("{{ lun = {k}, device = \"d{}\" }}", t * per_target + k))
            .collect();
        text.push_str(&format!(
            "\n[[target]]\nname = \"iqn.2026-11.org.esos.test:scale{t}\"\ndefault_luns = [{}]\n",
            maps.join(", ")
        ));
    }
    let file = d.dir().join("scale.toml");
    std::fs::write(&file, &text).unwrap();
    let file_arg = file.to_str().unwrap();

    let started = Instant::now();
    let first = ok(&d, &socket, &["--json", "config", "apply", file_arg]);
    let first_took = started.elapsed();
    let answer: serde_json::Value = serde_json::from_str(&first).expect("apply answer JSON");
    let report = &answer["report"];
    let count = |r: &serde_json::Value, key: &str| r[key].as_array().map_or(0, Vec::len);
    assert_eq!(count(report, "devices_added"), DEVICES, "{first}");
    assert_eq!(count(report, "targets_added"), TARGETS, "{first}");

    let mut c = Conn::login(
        d.addr(),
        &LoginOptions::normal("iqn.2026-11.org.esos.test:scale99"),
    )
    .unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    c.clear_unit_attention(0).unwrap();
    assert_eq!(
        report_luns(&mut c),
        (0..per_target as u64).collect::<Vec<_>>()
    );

    let started = Instant::now();
    let second = ok(&d, &socket, &["--json", "config", "apply", file_arg]);
    let second_took = started.elapsed();
    let answer: serde_json::Value = serde_json::from_str(&second).expect("apply answer JSON");
    let report = &answer["report"];
    for key in [
        "devices_added",
        "devices_removed",
        "devices_changed",
        "targets_added",
        "targets_removed",
        "targets_changed",
    ] {
        assert_eq!(count(report, key), 0, "{key} in the second apply: {second}");
    }
    assert_eq!(report["portals_changed"], false, "{second}");
    assert_eq!(report["sessions_closed"], 0, "{second}");
    // The session was not disturbed by the second apply.
    assert_eq!(
        report_luns(&mut c),
        (0..per_target as u64).collect::<Vec<_>>()
    );
    eprintln!("1,000-LUN apply: first {first_took:?}, second {second_took:?} (CLI round trip)");
}
