//! Session life cycle against the real daemon: reinstatement by ISID (RFC 7143 6.3.5),
//! target-initiated NOP-In finding a dead initiator, and the session limit.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use esos_e2e::client::{ClientError, Conn, LoginOptions};
use esos_e2e::daemon::{Ctx, Daemon};

const TARGET: &str = "iqn.2026-11.org.esos.test:sessions";

fn config(ctx: &Ctx, limits: &str) -> String {
    format!(
        r#"{server}
[server.limits]
{limits}

[[device]]
name = "d0"
type = "ram"
size = "16M"

{target}"#,
        server = ctx.server_toml(),
        target = esos_e2e::daemon::default_target_toml(TARGET, "d0"),
    )
}

fn login(d: &Daemon, isid: Option<[u8; 6]>) -> Conn {
    let mut o = LoginOptions::normal(TARGET);
    o.isid = isid;
    let mut c = Conn::login(d.addr(), &o).unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    c.clear_unit_attention(0)
        .unwrap_or_else(|e| panic!("TEST UNIT READY: {e}\n{}", d.log()));
    c
}

#[test]
fn same_isid_reinstates_the_old_session() {
    let d = Daemon::with_config(TARGET, |ctx| config(ctx, ""));
    let isid = [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a];
    let mut old = login(&d, Some(isid));
    let mut other = login(&d, None);
    let mut new = login(&d, Some(isid));
    // The old connection was closed by the reinstating login.
    old.set_read_timeout(Duration::from_secs(5)).unwrap();
    let r = old.test_unit_ready(0);
    assert!(
        matches!(r, Err(ref e) if e.is_closed()),
        "old session still answers after reinstatement: {r:?}\n{}",
        d.log()
    );
    assert!(new.test_unit_ready(0).unwrap().is_good());
    // A session with another ISID is untouched.
    assert!(other.test_unit_ready(0).unwrap().is_good());
    new.logout().unwrap();
    other.logout().unwrap();
}

#[test]
fn silent_initiator_is_dropped_after_nop_in_timeout() {
    let d = Daemon::with_config(TARGET, |ctx| {
        config(ctx, "nop_in_interval_ms = 1000\nnop_in_timeout_ms = 1000")
    });
    let mut live = login(&d, None);
    let silent = login(&d, None);
    // Never read from `silent` again: its NOP-In pings go unanswered. Read the raw socket
    // only to see when the target closes it.
    let mut sock: TcpStream = silent.into_stream();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut pings_seen = 0usize;
    let mut closed = false;
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(10) {
        // Keep the well-behaved session busy meanwhile, so it never looks idle.
        assert!(live.test_unit_ready(0).unwrap().is_good(), "{}", d.log());
        match sock.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => pings_seen += n / 48,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "the target kept a silent connection open for 10 s\n{}",
        d.log()
    );
    assert!(pings_seen >= 1, "the target closed without pinging first");
    // The busy session outlived the silent one.
    assert!(live.test_unit_ready(0).unwrap().is_good(), "{}", d.log());
    live.logout().unwrap();
}

#[test]
fn session_limit_refuses_with_out_of_resources() {
    let d = Daemon::with_config(TARGET, |ctx| {
        config(ctx, "max_sessions = 2\nmax_sessions_per_target = 2")
    });
    let a = login(&d, None);
    let b = login(&d, None);
    match Conn::login(d.addr(), &LoginOptions::normal(TARGET)) {
        Err(ClientError::LoginRefused { class, detail, .. }) => {
            assert_eq!((class, detail), (0x03, 0x02), "expected Out of resources")
        }
        other => panic!(
            "third session not refused: {:?}\n{}",
            other.map(|_| ()),
            d.log()
        ),
    }
    a.logout().unwrap();
    // A slot is free again.
    let c = login(&d, None);
    c.logout().unwrap();
    b.logout().unwrap();
}
