//! The harness' raw iSCSI client against esos: data digests (libiscsi cannot negotiate
//! them) and malformed PDUs. In every malformed case a well-behaved session opened before
//! must keep working, and the daemon must keep accepting new logins.

use std::time::Duration;

use esos_e2e::client::pdu::{IMMEDIATE, op};
use esos_e2e::client::{ClientError, Conn, LoginOptions};
use esos_e2e::daemon::Daemon;
use esos_e2e::data;

/// How long a misbehaving connection is watched for the target's reaction.
const REACTION_TIMEOUT: Duration = Duration::from_secs(5);

fn daemon() -> Daemon {
    Daemon::quick(&["ram:64M", "{dir}/lun1.img:16M"])
}

fn login(d: &Daemon, digests: bool) -> Conn {
    let mut o = LoginOptions::normal(&d.target);
    if digests {
        o = o.digests();
    }
    let mut c = Conn::login(d.addr(), &o).unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    c.clear_unit_attention(0)
        .unwrap_or_else(|e| panic!("TEST UNIT READY: {e}\n{}", d.log()));
    c
}

/// A write and a read-back on `c`, proving the session still works.
fn check_alive(c: &mut Conn, d: &Daemon, seed: u64) {
    let payload = data::pattern(seed, 16 * 512);
    let w = c
        .write10(0, (seed % 1000) as u32, 16, &payload, false)
        .unwrap_or_else(|e| panic!("well-behaved session broke: {e}\n{}", d.log()));
    assert!(
        w.is_good(),
        "WRITE(10) status {:#x} sense {:?}",
        w.status,
        w.sense_triple()
    );
    let r = c.read10(0, (seed % 1000) as u32, 16, 512).unwrap();
    assert!(
        r.is_good() && r.data == payload,
        "read-back differs on the well-behaved session"
    );
}

/// After a misbehaving connection: the old session works and a new one can log in.
fn check_daemon_serves(good: &mut Conn, d: &Daemon, seed: u64) {
    check_alive(good, d, seed);
    let mut fresh = login(d, false);
    check_alive(&mut fresh, d, seed + 1);
    fresh.logout().unwrap_or_else(|e| {
        panic!(
            "Logout got no Logout Response (RFC 7143 11.15): {e}\n{}",
            d.log()
        )
    });
}

/// Reads what the target does after a bad PDU: a Reject (its reason) or the connection
/// ending. Anything else (such as acting on the PDU) is returned as `Err`.
fn reaction(c: &mut Conn) -> Result<Option<u8>, String> {
    c.set_read_timeout(REACTION_TIMEOUT).unwrap();
    match c.recv() {
        Ok(p) if p.opcode() == op::REJECT => Ok(Some(p.bhs[2])),
        Ok(p) => Err(format!(
            "target answered opcode {:#04x} instead of Reject/close",
            p.opcode()
        )),
        Err(e) if e.is_closed() => Ok(None),
        Err(ClientError::Io(e))
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            Err("target neither rejected the PDU nor closed the connection".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn write_read_round_trip_with_header_and_data_digests() {
    let d = daemon();
    let mut c = login(&d, true);
    assert!(
        c.neg.header_digest,
        "HeaderDigest=CRC32C refused: {:?}",
        c.neg.keys
    );
    assert!(
        c.neg.data_digest,
        "DataDigest=CRC32C refused: {:?}",
        c.neg.keys
    );
    let (last, bs) = c.read_capacity10(0).unwrap();
    assert_eq!((u64::from(last) + 1) * u64::from(bs), 64 << 20);
    // Larger than MaxRecvDataSegmentLength and FirstBurstLength, so immediate data, R2T
    // and several Data-Out and Data-In PDUs are all exercised under digests.
    let blocks = 1024u16;
    let payload = data::pattern(
        data::seed("digest round trip"),
        usize::from(blocks) * bs as usize,
    );
    let w = c
        .write10(0, 100, blocks, &payload, false)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert!(w.is_good(), "{w:?}");
    let r = c
        .read10(0, 100, blocks, bs)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert!(r.is_good(), "{r:?}");
    assert!(r.data == payload, "data read back differs");
    assert_eq!(c.ping(b"digest ping").unwrap(), b"digest ping");
    c.logout().unwrap_or_else(|e| {
        panic!(
            "Logout got no Logout Response (RFC 7143 11.15): {e}\n{}",
            d.log()
        )
    });
}

#[test]
fn unknown_opcode_is_rejected() {
    let d = daemon();
    let mut good = login(&d, false);
    let mut bad = login(&d, false);
    let mut p = bad.ping_pdu(&[]);
    p.bhs[0] = 0x0b | IMMEDIATE; // 0x0b: no initiator opcode (RFC 7143 11.2.1.2)
    bad.send(&p).unwrap();
    match reaction(&mut bad) {
        Ok(Some(reason)) => eprintln!("unknown opcode rejected, reason {reason:#04x}"),
        Ok(None) => {
            panic!("unknown opcode closed the connection instead of a Reject (RFC 7143 11.17)")
        }
        Err(e) => panic!("{e}\n{}", d.log()),
    }
    check_daemon_serves(&mut good, &d, 1);
}

#[test]
fn truncated_header_then_close_leaves_others_alone() {
    let d = daemon();
    let mut good = login(&d, false);
    let mut bad = login(&d, false);
    let p = bad.ping_pdu(b"x");
    bad.send_bytes(&p.encode(false, false)[..20]).unwrap();
    drop(bad);
    // A half header on a fresh, not logged-in connection too.
    let mut raw = std::net::TcpStream::connect(d.addr()).unwrap();
    std::io::Write::write_all(&mut raw, &[op::LOGIN_REQUEST | IMMEDIATE, 0x81, 0, 0, 0, 0])
        .unwrap();
    drop(raw);
    check_daemon_serves(&mut good, &d, 2);
}

#[test]
fn data_segment_over_max_recv_data_segment_length() {
    let d = daemon();
    let mut good = login(&d, false);
    let mut bad = login(&d, false);
    let limit = bad.neg.target_max_recv_dsl as usize;
    assert!(
        limit >= 512,
        "target declared MaxRecvDataSegmentLength {limit}"
    );
    let p = bad.ping_pdu(&vec![0x5a; limit + 4096]);
    let _ = bad.send(&p); // the target may close before reading it all
    match reaction(&mut bad) {
        Ok(r) => eprintln!("oversized segment: reject reason {r:?} (None = closed)"),
        Err(e) => panic!(
            "oversized data segment ({} > {limit}): {e}\n{}",
            limit + 4096,
            d.log()
        ),
    }
    check_daemon_serves(&mut good, &d, 3);
}

#[test]
fn bad_header_digest() {
    let d = daemon();
    let mut good = login(&d, true);
    let mut bad = login(&d, true);
    let p = bad.ping_pdu(b"bad header digest");
    let mut wire = p.encode(true, true);
    wire[48] ^= 0xff; // corrupt the header digest
    bad.send_bytes(&wire).unwrap();
    // RFC 7143 7.8: a header digest error makes the PDU untrustworthy; the target discards
    // it (maybe silently) or drops the connection. It must never act on it.
    bad.set_read_timeout(REACTION_TIMEOUT).unwrap();
    match bad.recv() {
        Ok(r) if r.opcode() == op::NOP_IN && r.itt() == p.itt() => {
            panic!(
                "target answered a PDU whose header digest was wrong\n{}",
                d.log()
            )
        }
        Ok(r) => eprintln!("bad header digest answered with opcode {:#04x}", r.opcode()),
        Err(e) => eprintln!("bad header digest: {e}"),
    }
    check_daemon_serves(&mut good, &d, 4);
}

#[test]
fn bad_data_digest() {
    let d = daemon();
    let mut good = login(&d, true);
    let mut bad = login(&d, true);
    let p = bad.ping_pdu(b"bad data digest!");
    let mut wire = p.encode(true, true);
    let n = wire.len();
    wire[n - 1] ^= 0xff; // corrupt the data digest
    bad.send_bytes(&wire).unwrap();
    // RFC 7143 7.8 / 11.17.1: the PDU is discarded and answered with Reject (reason 0x02,
    // data digest error), or the connection is dropped. It must not be echoed.
    match reaction(&mut bad) {
        Ok(Some(reason)) => assert_eq!(reason, 0x02, "Reject reason for a data digest error"),
        Ok(None) => eprintln!("bad data digest: connection closed"),
        Err(e) => panic!("bad data digest: {e}\n{}", d.log()),
    }
    // The same on a WRITE's immediate data: the block must not change.
    let mut w = login(&d, true);
    let before = w.read10(0, 7, 1, 512).unwrap().data;
    let mut cmd = w.scsi_header(0, &[0x2a, 0, 0, 0, 0, 7, 0, 0, 1, 0], 512, 0);
    cmd.data = data::pattern(99, 512);
    let mut wire = cmd.encode(true, true);
    let n = wire.len();
    wire[n - 2] ^= 0x01;
    w.send_bytes(&wire).unwrap();
    let _ = reaction(&mut w);
    drop(w);
    let mut check = login(&d, true);
    let after = check.read10(0, 7, 1, 512).unwrap().data;
    assert!(
        before == after,
        "a WRITE whose data digest was wrong changed the medium"
    );
    check_daemon_serves(&mut good, &d, 5);
}

#[test]
fn fua_write_lands_in_backing_file() {
    let d = daemon();
    let mut c = login(&d, false);
    c.clear_unit_attention(1).unwrap();
    let payload = data::pattern(data::seed("fua"), 64 * 512);
    let w = c.write10(1, 32, 64, &payload, true).unwrap();
    assert!(w.is_good(), "{w:?}");
    // FUA promises the data is on the medium now (SBC-3 5.40): read the file under the
    // running daemon.
    let file = std::fs::read(d.dir().join("lun1.img")).unwrap();
    assert!(
        file[32 * 512..96 * 512] == payload[..],
        "FUA write not in the backing file"
    );
}
