//! Persistent reservations with APTPL survive `kill -9` of the daemon and a restart
//! (SPC-4 5.9.4: Activate Persist Through Power Loss), seen by a real initiator session.

use std::path::Path;
use std::time::Duration;

use esos_e2e::client::{Conn, LoginOptions};
use esos_e2e::daemon::{Ctx, Daemon};

const TARGET: &str = "iqn.2026-11.org.esos.test:reservations";
const KEY: u64 = 0x1122_3344_5566_7788;
/// Write Exclusive (SPC-4 table 169).
const TYPE_WE: u8 = 1;

fn config(ctx: &Ctx, state: &Path) -> String {
    format!(
        r#"
[server]
data_dir = "{state}/data"

[[server.portal]]
address = "127.0.0.1:{port}"

[[device]]
name = "d0"
type = "file"
path = "{state}/d0.img"
size = "16M"

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "d0" }}]
"#,
        state = state.display(),
        port = ctx.port
    )
}

fn login(d: &Daemon) -> Conn {
    let mut c = Conn::login(d.addr(), &LoginOptions::normal(TARGET))
        .unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    c.clear_unit_attention(0)
        .unwrap_or_else(|e| panic!("TEST UNIT READY: {e}\n{}", d.log()));
    c
}

/// PERSISTENT RESERVE OUT with a basic 24-byte parameter list (SPC-4 6.16.3).
fn pr_out(c: &mut Conn, d: &Daemon, action: u8, kind: u8, key: u64, sa_key: u64, aptpl: bool) {
    let mut params = [0u8; 24];
    params[0..8].copy_from_slice(&key.to_be_bytes());
    params[8..16].copy_from_slice(&sa_key.to_be_bytes());
    params[20] = u8::from(aptpl);
    let cdb = [0x5f, action, kind, 0, 0, 0, 0, 0, 24, 0];
    let r = c
        .command(0, &cdb, &params, 0)
        .unwrap_or_else(|e| panic!("PR OUT: {e}\n{}", d.log()));
    assert!(r.is_good(), "PR OUT {action:#x}: {r:?}\n{}", d.log());
}

/// PERSISTENT RESERVE IN (SPC-4 6.15) with service action `action`.
fn pr_in(c: &mut Conn, d: &Daemon, action: u8) -> Vec<u8> {
    let cdb = [0x5e, action, 0, 0, 0, 0, 0, 0x01, 0x00, 0];
    let r = c
        .command(0, &cdb, &[], 256)
        .unwrap_or_else(|e| panic!("PR IN: {e}\n{}", d.log()));
    assert!(r.is_good(), "PR IN {action:#x}: {r:?}\n{}", d.log());
    r.data
}

fn kill9(d: &mut Daemon) {
    let pid = libc::pid_t::try_from(d.pid()).expect("pid");
    // SAFETY: kill(2) on the daemon this test started, by its PID; no memory is involved.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}");
    for _ in 0..100 {
        if !d.is_running() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("esos {pid} still running after SIGKILL");
}

#[test]
fn aptpl_reservation_survives_kill_9_and_restart() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::with_config(TARGET, |ctx| config(ctx, state.path()));
    let mut c = login(&d);
    pr_out(&mut c, &d, 0x00, 0, 0, KEY, true); // REGISTER, APTPL
    pr_out(&mut c, &d, 0x01, TYPE_WE, KEY, 0, true); // RESERVE, Write Exclusive
    drop(c);
    kill9(&mut d);
    drop(d);

    let d = Daemon::with_config(TARGET, |ctx| config(ctx, state.path()));
    let mut c = login(&d);
    let keys = pr_in(&mut c, &d, 0x00); // READ KEYS
    let len = u32::from_be_bytes(keys[4..8].try_into().unwrap());
    assert_eq!(
        len, 8,
        "one registered key expected after restart: {keys:02x?}"
    );
    assert_eq!(u64::from_be_bytes(keys[8..16].try_into().unwrap()), KEY);
    let res = pr_in(&mut c, &d, 0x01); // READ RESERVATION
    let len = u32::from_be_bytes(res[4..8].try_into().unwrap());
    assert_eq!(len, 16, "a reservation expected after restart: {res:02x?}");
    assert_eq!(u64::from_be_bytes(res[8..16].try_into().unwrap()), KEY);
    assert_eq!(res[21] & 0x0f, TYPE_WE, "reservation type");
    c.logout().unwrap();
}

#[test]
fn registration_without_aptpl_is_gone_after_restart() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::with_config(TARGET, |ctx| config(ctx, state.path()));
    let mut c = login(&d);
    pr_out(&mut c, &d, 0x00, 0, 0, KEY, false);
    drop(c);
    kill9(&mut d);
    drop(d);
    let d = Daemon::with_config(TARGET, |ctx| config(ctx, state.path()));
    let mut c = login(&d);
    let keys = pr_in(&mut c, &d, 0x00);
    assert_eq!(
        &keys[4..8],
        &[0, 0, 0, 0],
        "keys survived without APTPL: {keys:02x?}"
    );
    c.logout().unwrap();
}
