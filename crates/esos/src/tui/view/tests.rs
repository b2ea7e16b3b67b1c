use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::tui::model::{Device, Lun, PortGroup, Snapshot, Target};

fn screen(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| render(app, f)).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn snapshot() -> Snapshot {
    Snapshot {
        devices: vec![Device {
            name: "scratch".into(),
            kind: "ram".into(),
            size_bytes: 64 << 20,
            block_size: 512,
            thin: true,
            write_cache: true,
            exports: vec!["iqn.2026-11.org.esos:lab/0".into()],
            ..Device::default()
        }],
        targets: vec![Target {
            name: "iqn.2026-11.org.esos:lab".into(),
            enabled: true,
            default_luns: Some(vec![Lun {
                lun: 0,
                device: "scratch".into(),
            }]),
            sessions: 2,
            ..Target::default()
        }],
        config: Some("[server]\n[[server.portal]]\naddress = \"127.0.0.1:3260\"\n".into()),
        ..Snapshot::default()
    }
}

fn app() -> App {
    let mut a = App::new("/var/lib/esos/esos.sock");
    a.on_poll(Ok(snapshot()), Instant::now());
    a
}

#[test]
fn dashboard_fits_80x24() {
    let s = screen(&app());
    assert!(s.contains("1 Dashboard"), "{s}");
    assert!(s.contains("6 System"), "{s}");
    assert!(s.contains("iqn.2026-11.org.esos:lab"), "{s}");
    assert!(s.contains("enabled"), "{s}");
    assert!(s.contains("scratch"), "{s}");
    assert!(s.contains("No initiator logged in."), "{s}");
    assert!(s.contains("? help  q quit"), "{s}");
}

#[test]
fn devices_tab_lists_and_marks_the_selection() {
    let mut a = app();
    key(&mut a, KeyCode::Char('2'));
    let s = screen(&a);
    let row = s.lines().find(|l| l.contains("scratch")).unwrap();
    assert!(row.contains("> scratch"), "{row}");
    assert!(row.contains("64M") && row.contains("thin"), "{row}");
    assert!(row.contains("iqn.2026-11.org.esos:lab/0"), "{row}");
}

#[test]
fn help_lists_every_tab_key() {
    let mut a = app();
    key(&mut a, KeyCode::Char('?'));
    let s = screen(&a);
    assert!(s.contains("Help: keys"), "{s}");
    for k in [
        "Dashboard  x",
        "Devices    a d Enter",
        "Devices    s",
        "Targets    c C",
        "Targets    p P",
        "Hosts      a i I d",
        "Hosts      m u",
        "Port groups s",
        "System",
        "Dialogs",
    ] {
        assert!(s.contains(k), "{k} missing:\n{s}");
    }
}

#[test]
fn form_and_confirmation_render() {
    let mut a = app();
    key(&mut a, KeyCode::Char('2'));
    key(&mut a, KeyCode::Char('a'));
    key(&mut a, KeyCode::Tab);
    for c in "db1".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    let s = screen(&a);
    assert!(s.contains("Add device"), "{s}");
    assert!(s.contains("< file >"), "{s}");
    assert!(s.contains("> Name") && s.contains("db1_"), "{s}");
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('d'));
    let s = screen(&a);
    assert!(s.contains("Remove device scratch?"), "{s}");
    assert!(s.contains("y: yes"), "{s}");
}

#[test]
fn errors_show_in_the_status_line() {
    let mut a = app();
    a.on_done(
        &crate::tui::action::Action::RemoveDevice("scratch".into()),
        Err("device \"scratch\": mapped in iqn.2026-11.org.esos:lab".into()),
    );
    let s = screen(&a);
    let status = s.lines().nth(22).unwrap();
    assert!(
        status.starts_with("error: device \"scratch\": mapped"),
        "{status}"
    );

    // A message longer than the screen is wide wraps instead of being cut.
    let long = format!("{}END", "word ".repeat(20));
    a.on_done(
        &crate::tui::action::Action::RemoveDevice("scratch".into()),
        Err(long),
    );
    let s = screen(&a);
    let lines: Vec<&str> = s.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("error: word"))
        .unwrap();
    assert!(lines[at + 1].contains("END"), "{s}");
    assert!(s.lines().nth(23).unwrap().contains("q quit"), "{s}");
}

#[test]
fn every_tab_renders_in_80x24_and_smaller() {
    let mut a = app();
    for tab in ['1', '2', '3', '4', '5', '6'] {
        key(&mut a, KeyCode::Char(tab));
        let s = screen(&a);
        assert_eq!(s.lines().count(), 24);
        // A tiny terminal must not panic either.
        let mut t = Terminal::new(TestBackend::new(20, 5)).unwrap();
        t.draw(|f| render(&a, f)).unwrap();
        key(&mut a, KeyCode::Char('?'));
        t.draw(|f| render(&a, f)).unwrap();
        key(&mut a, KeyCode::Esc);
    }
}

#[test]
fn port_groups_and_system_show_the_config() {
    let mut a = app();
    key(&mut a, KeyCode::Char('5'));
    let s = screen(&a);
    assert!(s.contains("implicit (no [server.alua])"), "{s}");
    assert!(s.contains("127.0.0.1:3260"), "{s}");
    key(&mut a, KeyCode::Char('6'));
    let s = screen(&a);
    assert!(s.contains("/var/lib/esos/esos.sock (connected)"), "{s}");
    assert!(s.contains("[[server.portal]]"), "{s}");
    assert!(s.contains("connected to /var/lib/esos/esos.sock"), "{s}");
}

#[test]
fn system_shows_the_daemon_and_its_log() {
    use crate::tui::model::{LogEvent, SystemInfo};
    let mut a = app();
    key(&mut a, KeyCode::Char('6'));
    let s = screen(&a);
    assert!(s.contains("not reported yet"), "{s}");
    assert!(s.contains("Daemon log (not reported"), "{s}");
    let mut snap = snapshot();
    snap.system = Some(SystemInfo {
        version: "9.8.7".into(),
        pid: 4242,
        started: "2026-11-25T10:00:00Z".into(),
        uptime_s: 3725,
        config_file: Some("/etc/esos/esos.toml".into()),
        data_dir: "/var/lib/esos".into(),
        log_level: "info".into(),
    });
    snap.daemon_log = Some(
        (0..30)
            .map(|n| LogEvent {
                time: format!("2026-11-25T10:00:{n:02}.000Z"),
                level: if n == 29 { "warn" } else { "info" }.into(),
                target: "esos".into(),
                message: format!("event number {n}"),
            })
            .collect(),
    );
    a.on_poll(Ok(snap), Instant::now());
    let s = screen(&a);
    assert!(s.contains("esos 9.8.7, pid 4242, up 1h 2m"), "{s}");
    assert!(s.contains("config   /etc/esos/esos.toml"), "{s}");
    // The newest events that fit, newest last; the oldest are scrolled off.
    assert!(s.contains("10:00:29 WARN  event number 29"), "{s}");
    assert!(s.contains("event number 25"), "{s}");
    assert!(!s.contains("event number 3 "), "{s}");
    assert!(s.contains("[[server.portal]]"), "{s}");
    assert!(s.lines().nth(23).unwrap().trim_end().ends_with("q quit"));
    // Another tab's poll does not fetch them; the System tab keeps what it showed.
    key(&mut a, KeyCode::Char('1'));
    assert!(!a.wants_system());
    a.on_poll(Ok(snapshot()), Instant::now());
    key(&mut a, KeyCode::Char('6'));
    assert!(a.wants_system());
    assert!(screen(&a).contains("event number 29"));
}

#[test]
fn key_hints_fit_80_columns_on_every_tab() {
    let mut a = app();
    for tab in ['1', '2', '3', '4', '5', '6'] {
        key(&mut a, KeyCode::Char(tab));
        let hint = hint_line(&a);
        assert!(hint.chars().count() <= 80, "{hint}");
        let s = screen(&a);
        assert!(
            s.lines().nth(23).unwrap().trim_end().ends_with("q quit"),
            "{s}"
        );
    }
    key(&mut a, KeyCode::Char('2'));
    assert!(hint_line(&a).contains("s resize"));
}

#[test]
fn chap_secrets_are_masked() {
    let mut a = app();
    key(&mut a, KeyCode::Char('3'));
    key(&mut a, KeyCode::Char('c'));
    for c in "host1".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    key(&mut a, KeyCode::Tab);
    for c in "topsecret123".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    let s = screen(&a);
    assert!(s.contains("CHAP of iqn.2026-11.org.esos:lab"), "{s}");
    assert!(s.contains("host1"), "{s}");
    assert!(!s.contains("topsecret"), "{s}");
    assert!(s.contains("************_"), "{s}");
    assert!(s.contains("Mutual secret"), "{s}");
    assert!(s.contains("Enter: apply"), "{s}");
}

#[test]
fn targets_tab_lists_the_server_portals() {
    let mut a = app();
    key(&mut a, KeyCode::Char('3'));
    let s = screen(&a);
    assert!(s.contains("server   127.0.0.1:3260 (tpg 1)"), "{s}");
    assert!(s.contains("c/C CHAP  p/P portal"), "{s}");
}

#[test]
fn port_groups_show_live_states_and_the_selection() {
    let mut a = App::new("s");
    let mut snap = snapshot();
    snap.port_groups = Some(vec![
        PortGroup {
            id: 1,
            state: "active-optimized".into(),
            portal_groups: vec![1],
            mode: "explicit".into(),
        },
        PortGroup {
            id: 2,
            state: "standby".into(),
            portal_groups: vec![2],
            mode: "explicit".into(),
        },
    ]);
    a.on_poll(Ok(snap), Instant::now());
    key(&mut a, KeyCode::Char('5'));
    key(&mut a, KeyCode::Down);
    let s = screen(&a);
    assert!(s.contains("(live)") && s.contains("mode: explicit"), "{s}");
    let row = s.lines().find(|l| l.contains("standby")).unwrap();
    assert!(row.contains("> 2"), "{row}");
    let row = s.lines().find(|l| l.contains("active-optimized")).unwrap();
    assert!(row.contains("127.0.0.1:3260"), "{row}");
    assert!(s.contains("s set state"), "{s}");
    key(&mut a, KeyCode::Char('s'));
    let s = screen(&a);
    assert!(s.contains("State of port group 2"), "{s}");
    assert!(s.contains("< standby >"), "{s}");
}

#[test]
fn hosts_tab_shows_the_default_map() {
    let mut a = app();
    key(&mut a, KeyCode::Char('4'));
    let s = screen(&a);
    assert!(s.contains("> (default LUNs)"), "{s}");
    assert!(s.contains("LUN 0    scratch"), "{s}");
}

#[test]
fn port_groups_tab_shows_replicated_devices() {
    use crate::tui::model::{Replica, ReplicaPeer};
    let mut snap = snapshot();
    snap.replicas = vec![Replica {
        device: "db".into(),
        role: "primary".into(),
        data: "up-to-date".into(),
        primary: Some("n1".into()),
        quorate: true,
        down: false,
        peers: vec![ReplicaPeer {
            name: "n2".into(),
            link: "sync-source".into(),
            out_of_sync_bytes: 3 << 20,
            sync_done_bytes: 1,
            sync_total_bytes: 4,
            sync_rate_bytes_per_sec: 1 << 20,
        }],
        report: None,
    }];
    let mut a = App::new("/var/lib/esos/esos.sock");
    a.on_poll(Ok(snap), Instant::now());
    key(&mut a, KeyCode::Char('5'));
    let s = screen(&a);
    assert!(s.contains("Replicated devices"), "{s}");
    let row = s.lines().find(|l| l.contains("db")).unwrap();
    for cell in ["primary", "up-to-date", "n2", "sync-source", "3M", "25%"] {
        assert!(row.contains(cell), "{cell} not in {row}\n{s}");
    }
}
