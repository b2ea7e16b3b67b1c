//! Persistent reservations with APTPL survive `kill -9` of the daemon and a restart
//! (SPC-4 5.9.4: Activate Persist Through Power Loss), seen by a real initiator session;
//! PREEMPT AND ABORT fences another session's outstanding writes (SPC-4 5.9.11.5).

use std::path::Path;
use std::time::Duration;

use esos_e2e::client::pdu::{FINAL, Pdu, op};
use esos_e2e::client::{ClientError, Conn, LoginOptions};
use esos_e2e::daemon::{Ctx, Daemon};
use esos_e2e::paths;

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

/// Write Exclusive – Registrants Only.
const TYPE_WE_RO: u8 = 5;
const BS: usize = 512;
/// READs that session C leaves unread: more than loopback's socket buffers hold (send
/// buffer at most 4 MiB here, an unread receive window stays small), so its zero-copy
/// READs keep their place in the task set.
const STALL_READS: u32 = 4;
const STALL_READ_BYTES: u32 = 8 << 20;

/// The device on tmpfs (zero-copy READs: the task ends once its data is sent), NOP-In
/// pings off and a long stall timeout, so a session that does not read stays connected.
fn fence_config(ctx: &Ctx, shm: &Path) -> String {
    format!(
        r#"
[server]
data_dir = "{dir}/data"

[server.limits]
nop_in_interval_ms = 0
nop_in_timeout_ms = 120000

[[server.portal]]
address = "127.0.0.1:{port}"

[[device]]
name = "d0"
type = "file"
path = "{shm}/d0.img"
size = "64M"

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "d0" }}]
"#,
        dir = ctx.dir.display(),
        shm = shm.display(),
        port = ctx.port
    )
}

fn login_as(d: &Daemon, who: &str) -> Conn {
    let opts = LoginOptions {
        initiator: format!("iqn.2026-11.org.esos.test:{who}"),
        ..LoginOptions::normal(TARGET)
    };
    let mut c =
        Conn::login(d.addr(), &opts).unwrap_or_else(|e| panic!("login {who}: {e}\n{}", d.log()));
    c.clear_unit_attention(0)
        .unwrap_or_else(|e| panic!("TEST UNIT READY: {e}\n{}", d.log()));
    c
}

/// Sends a command with task attribute `attr` (1 SIMPLE, 2 ORDERED, 3 HEAD OF QUEUE) and
/// all of `data` as immediate data, without waiting for its response; returns its ITT.
fn send(c: &mut Conn, cdb: &[u8], data: &[u8], read_len: u32, attr: u8) -> u32 {
    send_part(c, cdb, data, data.len() as u32, read_len, attr)
}

/// [`send`] of a write of `write_len` bytes of which `data` goes as immediate data.
fn send_part(
    c: &mut Conn,
    cdb: &[u8],
    data: &[u8],
    write_len: u32,
    read_len: u32,
    attr: u8,
) -> u32 {
    assert!(c.neg.immediate_data && data.len() <= c.neg.first_burst as usize);
    let mut p: Pdu = c.scsi_header(0, cdb, write_len, read_len);
    p.bhs[1] = (p.bhs[1] & !0x07) | attr;
    p.data = data.to_vec();
    c.send(&p).expect("send command");
    p.itt()
}

fn write10(lba: u32) -> [u8; 10] {
    let l = lba.to_be_bytes();
    [0x2a, 0, l[0], l[1], l[2], l[3], 0, 0, 1, 0]
}

fn pr_params(key: u64, sa_key: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p
}

/// Reads PDUs until the SCSI status of `itt` (a response, or Data-In with S); returns it.
fn status_of(c: &mut Conn, itt: u32, what: &str) -> (u8, Vec<u8>) {
    loop {
        let p = c.recv_response().unwrap_or_else(|e| panic!("{what}: {e}"));
        match p.opcode() {
            op::DATA_IN if p.itt() == itt && p.flags() & 0x01 != 0 => {
                return (p.bhs[3], Vec::new());
            }
            op::DATA_IN if p.itt() == itt => {}
            op::SCSI_RESPONSE if p.itt() == itt => return (p.bhs[3], p.data),
            other => panic!("{what}: unexpected PDU {other:#04x} for ITT {:#x}", p.itt()),
        }
    }
}

/// Session A has writes outstanding (queued behind session C's READs, which C does not
/// read); session B fences A with PREEMPT AND ABORT as HEAD OF QUEUE. B gets GOOD while
/// C is still stuck; A never hears of its writes, which never reach the disk; A's next
/// commands report REGISTRATIONS PREEMPTED and COMMANDS CLEARED BY ANOTHER INITIATOR, and
/// under A's Write Exclusive – Registrants Only reservation, now B's, its writes conflict.
#[test]
fn preempt_and_abort_fences_outstanding_writes() {
    preempt_and_abort(true);
}

/// The same with registrations only: nothing but the abort keeps A's queued writes off
/// the disk (a PREEMPT would let them run after it).
#[test]
fn preempt_and_abort_without_reservation_aborts_outstanding_writes() {
    preempt_and_abort(false);
}

fn preempt_and_abort(reserve: bool) {
    let Some(shm) = paths::tmpfs_dir("esos-e2e-pra-") else {
        eprintln!("SKIPPED: /dev/shm is not a tmpfs (zero-copy READs keep C's tasks)");
        return;
    };
    let d = Daemon::with_config(TARGET, |ctx| fence_config(ctx, shm.path()));
    let (mut a, mut b, mut c) = (login_as(&d, "a"), login_as(&d, "b"), login_as(&d, "c"));
    const KEY_A: u64 = 0xA;
    const KEY_B: u64 = 0xB;
    pr_out(&mut a, &d, 0x06, 0, 0, KEY_A, false); // REGISTER AND IGNORE EXISTING KEY
    pr_out(&mut b, &d, 0x06, 0, 0, KEY_B, false);
    if reserve {
        pr_out(&mut a, &d, 0x01, TYPE_WE_RO, KEY_A, 0, false); // RESERVE
    }

    // C: READs it leaves unread hold the task set; ORDERED commands wait behind them.
    let blocks = STALL_READ_BYTES / BS as u32;
    for i in 0..STALL_READS {
        let lba = (i * blocks).to_be_bytes();
        let n = blocks.to_be_bytes();
        let cdb = [0x28, 0, lba[0], lba[1], lba[2], lba[3], 0, n[2], n[3], 0];
        send(&mut c, &cdb, &[], STALL_READ_BYTES, 1);
    }
    std::thread::sleep(Duration::from_millis(300));

    // A: a two-block write whose second block the target asks for with an R2T, which A
    // answers only after the preemption.
    let mut cdb = write10(98);
    cdb[8] = 2;
    let gathering = send_part(&mut a, &cdb, &[0xA5; BS], 2 * BS as u32, 0, 1);
    a.set_read_timeout(Duration::from_secs(20)).unwrap();
    let r2t = a.recv_response().expect("R2T");
    assert_eq!((r2t.opcode(), r2t.itt()), (op::R2T, gathering), "{r2t:?}");
    let (ttt, offset) = (r2t.u32_at(20), r2t.u32_at(40));
    assert_eq!(
        (offset, r2t.u32_at(44)),
        (BS as u32, BS as u32),
        "R2T range"
    );

    // A: an ORDERED write, then SIMPLE ones behind it.
    let lbas = [100u32, 101, 102];
    let mut itts = Vec::new();
    for (i, &lba) in lbas.iter().enumerate() {
        let attr = if i == 0 { 2 } else { 1 };
        itts.push(send(&mut a, &write10(lba), &[0xA5; BS], 0, attr));
    }
    a.set_read_timeout(Duration::from_millis(300)).unwrap();
    match a.recv_response() {
        Err(ClientError::Io(_)) => {}
        other => panic!(
            "A's writes did not stay outstanding: {other:?}\n{}",
            d.log()
        ),
    }

    // B: PREEMPT AND ABORT of A's key, HEAD OF QUEUE so it is not queued behind A.
    let ty = if reserve { TYPE_WE_RO } else { 0 };
    let cdb = [0x5f, 0x05, ty, 0, 0, 0, 0, 0, 24, 0];
    b.set_read_timeout(Duration::from_secs(20)).unwrap();
    let itt = send(&mut b, &cdb, &pr_params(KEY_B, KEY_A), 0, 3);
    let (status, sense) = status_of(&mut b, itt, "PREEMPT AND ABORT");
    assert_eq!(
        status,
        0,
        "PREEMPT AND ABORT: status {status:#x} sense {sense:02x?}\n{}",
        d.log()
    );

    // C: its READs were not aborted; they complete as C reads them.
    c.set_read_timeout(Duration::from_secs(30)).unwrap();
    let mut done = 0;
    while done < STALL_READS {
        let p = c
            .recv_response()
            .unwrap_or_else(|e| panic!("C's READs: {e}\n{}", d.log()));
        match p.opcode() {
            op::DATA_IN if p.flags() & 0x01 != 0 => {
                assert_eq!(p.bhs[3], 0, "C's READ status");
                done += 1;
            }
            op::DATA_IN => {}
            op::SCSI_RESPONSE => panic!("C's READ answered {:#x}: {:02x?}", p.bhs[3], p.data),
            other => panic!("C: unexpected PDU {other:#04x}"),
        }
    }

    // A: the data of its gathering write, after the preemption.
    let mut p = Pdu::new(op::DATA_OUT, FINAL);
    p.set_lun(0);
    p.set_u32(16, gathering);
    p.set_u32(20, ttt);
    p.set_u32(40, offset);
    p.data = vec![0xA5; BS];
    a.send(&p).expect("Data-Out");

    // A: no response ever comes for its aborted writes (TAS 0).
    a.set_read_timeout(Duration::from_millis(1000)).unwrap();
    match a.recv_response() {
        Err(ClientError::Io(_)) => {}
        other => panic!(
            "A heard of an aborted write: {other:?} (ITTs {itts:x?})\n{}",
            d.log()
        ),
    }
    a.set_read_timeout(Duration::from_secs(20)).unwrap();
    let mut uas = Vec::new();
    for _ in 0..2 {
        let r = a.test_unit_ready(0).expect("TEST UNIT READY");
        assert_eq!(r.status, 2, "A's unit attention: {r:?}");
        uas.push(r.sense_triple().expect("sense"));
    }
    assert_eq!(
        uas,
        [(6, 0x2a, 0x05), (6, 0x2f, 0x00)],
        "A's unit attentions"
    );
    assert!(a.test_unit_ready(0).unwrap().is_good());
    // With the reservation A is fenced: unregistered under B's Write Exclusive –
    // Registrants Only. Without one, its new writes run.
    let r = a.command(0, &write10(103), &[0xA5; BS], 0).unwrap();
    let want = if reserve { 0x18 } else { 0 };
    assert_eq!(r.status, want, "A's write after the preemption: {r:?}");

    // None of A's outstanding writes reached the disk.
    let file = std::fs::read(shm.path().join("d0.img")).unwrap();
    for lba in [98, 99].into_iter().chain(lbas) {
        let at = lba as usize * BS;
        assert!(
            file[at..at + BS].iter().all(|&b| b == 0),
            "A's aborted write to LBA {lba} landed"
        );
    }
    b.logout().unwrap();
    c.logout().unwrap();
}
