//! ALUA through the real daemon (SPC-4 5.16): two portals in two target port groups, one
//! active/optimized and one standby. REPORT TARGET PORT GROUPS agrees on both paths, the
//! standby path refuses I/O with NOT READY 04/0B, and SET TARGET PORT GROUPS swaps the
//! states, tells the other path (2A/06) and survives a restart.

use std::net::SocketAddr;
use std::path::Path;

use esos_e2e::client::{Conn, LoginOptions, ScsiResult};
use esos_e2e::daemon::{Ctx, Daemon};

const TARGET: &str = "iqn.2026-11.org.esos.test:alua";
const RTPG_EXTENDED: [u8; 12] = [0xA3, 0x2A, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0];
const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 96, 0];
const VPD_DEVICE_ID: [u8; 6] = [0x12, 0x01, 0x83, 0x01, 0x00, 0];

fn config(ctx: &Ctx, state: &Path, mode: &str) -> String {
    format!(
        r#"
[server]
data_dir = "{state}/data"

[[server.portal]]
address = "127.0.0.1:{port}"
group = 1

[[server.portal]]
address = "127.0.0.2:{port}"
group = 2

[server.alua]
mode = "{mode}"

[[server.alua.group]]
id = 10
state = "active-optimized"
portal_groups = [1]

[[server.alua.group]]
id = 20
state = "standby"
portal_groups = [2]

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

/// Logs in on `addr` and consumes the power-on unit attention (with INQUIRY-safe TUR:
/// on the standby path TUR gives the unit attention first, then 04/0B).
fn login(d: &Daemon, addr: SocketAddr) -> Conn {
    let mut c = Conn::login(addr, &LoginOptions::normal(TARGET))
        .unwrap_or_else(|e| panic!("login on {addr}: {e}\n{}", d.log()));
    let r = c.test_unit_ready(0).unwrap();
    assert_eq!(r.sense_triple(), Some((6, 0x29, 0)), "{r:?}");
    c
}

fn run(c: &mut Conn, d: &Daemon, cdb: &[u8], out: &[u8], read_len: u32) -> ScsiResult {
    c.command(0, cdb, out, read_len)
        .unwrap_or_else(|e| panic!("command {:#04x}: {e}\n{}", cdb[0], d.log()))
}

/// (group id, state, relative ports) of each descriptor of extended RTPG data.
fn groups(data: &[u8]) -> Vec<(u16, u8, Vec<u16>)> {
    let len = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize + 4;
    assert_eq!(len, data.len(), "RETURN DATA LENGTH: {data:02x?}");
    assert_eq!(data[4] & 0x70, 0x10, "extended header");
    let mut at = 8;
    let mut out = Vec::new();
    while at < len {
        let d = &data[at..];
        let count = usize::from(d[7]);
        let ports = (0..count)
            .map(|i| u16::from_be_bytes([d[8 + 4 * i + 2], d[8 + 4 * i + 3]]))
            .collect();
        out.push((u16::from_be_bytes([d[2], d[3]]), d[0] & 0x0F, ports));
        at += 8 + 4 * count;
    }
    out
}

fn rtpg(c: &mut Conn, d: &Daemon) -> Vec<(u16, u8, Vec<u16>)> {
    let r = run(c, d, &RTPG_EXTENDED, &[], 1024);
    assert!(r.is_good(), "RTPG: {r:?}\n{}", d.log());
    groups(&r.data)
}

/// The target port group designator (type 5) of VPD page 0x83.
fn vpd_port_group(c: &mut Conn, d: &Daemon) -> u16 {
    let r = run(c, d, &VPD_DEVICE_ID, &[], 256);
    assert!(r.is_good(), "VPD 0x83: {r:?}");
    let p = &r.data;
    let mut at = 4;
    while at + 4 <= p.len() {
        let len = usize::from(p[at + 3]);
        if p[at + 1] & 0x0F == 5 {
            assert_eq!(p[at + 1] & 0x30, 0x10, "association: target port");
            return u16::from_be_bytes([p[at + 6], p[at + 7]]);
        }
        at += 4 + len;
    }
    panic!("no target port group designator: {p:02x?}");
}

fn read(c: &mut Conn, d: &Daemon) -> ScsiResult {
    c.read10(0, 0, 1, 512)
        .unwrap_or_else(|e| panic!("READ: {e}\n{}", d.log()))
}

fn stpg(c: &mut Conn, d: &Daemon, to: &[(u16, u8)]) -> ScsiResult {
    let mut list = vec![0u8; 4];
    for &(id, state) in to {
        list.extend_from_slice(&[state, 0]);
        list.extend_from_slice(&id.to_be_bytes());
    }
    let mut cdb = [0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[6..10].copy_from_slice(&(list.len() as u32).to_be_bytes());
    run(c, d, &cdb, &list, 0)
}

#[test]
fn standby_path_and_explicit_failover() {
    let state = tempfile::tempdir().expect("tempdir");
    let d = Daemon::with_config(TARGET, |ctx| config(ctx, state.path(), "both"));
    let second: SocketAddr = ([127, 0, 0, 2], d.port).into();
    let mut opt = login(&d, d.addr());
    let mut stby = login(&d, second);

    // Both paths report the same two groups, with their ports and states.
    let want = vec![(10, 0x0, vec![1]), (20, 0x2, vec![2])];
    assert_eq!(rtpg(&mut opt, &d), want);
    assert_eq!(rtpg(&mut stby, &d), want);
    assert_eq!(vpd_port_group(&mut opt, &d), 10);
    assert_eq!(vpd_port_group(&mut stby, &d), 20);

    // Standby path: INQUIRY answers with TPGS 11b, I/O and TUR get 02/04/0B.
    let r = run(&mut stby, &d, &INQUIRY, &[], 96);
    assert!(r.is_good(), "{r:?}");
    assert_eq!(r.data[5] & 0x30, 0x30, "TPGS both");
    assert_eq!(read(&mut stby, &d).sense_triple(), Some((2, 0x04, 0x0B)));
    let r = stby.test_unit_ready(0).unwrap();
    assert_eq!(r.sense_triple(), Some((2, 0x04, 0x0B)));
    assert!(read(&mut opt, &d).is_good());

    // Invalid STPG: unknown group, pointing at its TARGET PORT GROUP field.
    let r = stpg(&mut opt, &d, &[(99, 0)]);
    assert_eq!(r.sense_triple(), Some((5, 0x26, 0)), "{r:?}");
    assert_eq!(&r.sense[15..18], &[0x80, 0, 6], "field pointer");

    // Fail over through the standby path itself (STPG is allowed in standby).
    let r = stpg(&mut stby, &d, &[(10, 0x2), (20, 0x0)]);
    assert!(r.is_good(), "STPG: {r:?}\n{}", d.log());
    let r = opt.test_unit_ready(0).unwrap();
    assert_eq!(r.sense_triple(), Some((6, 0x2A, 0x06)), "other path told");
    assert_eq!(read(&mut opt, &d).sense_triple(), Some((2, 0x04, 0x0B)));
    assert!(
        read(&mut stby, &d).is_good(),
        "the sender is not told and can read"
    );
    assert_eq!(
        rtpg(&mut opt, &d),
        vec![(10, 0x2, vec![1]), (20, 0x0, vec![2])]
    );
    opt.logout().unwrap();
    stby.logout().unwrap();
    drop(d);

    // The explicit change survives a restart.
    let d = Daemon::with_config(TARGET, |ctx| config(ctx, state.path(), "both"));
    let mut c = login(&d, d.addr());
    assert_eq!(
        rtpg(&mut c, &d),
        vec![(10, 0x2, vec![1]), (20, 0x0, vec![2])]
    );
    assert_eq!(read(&mut c, &d).sense_triple(), Some((2, 0x04, 0x0B)));
    c.logout().unwrap();
}

#[test]
fn implicit_mode_refuses_stpg() {
    let state = tempfile::tempdir().expect("tempdir");
    let d = Daemon::with_config(TARGET, |ctx| config(ctx, state.path(), "implicit"));
    let mut c = login(&d, d.addr());
    let r = run(&mut c, &d, &INQUIRY, &[], 96);
    assert_eq!(r.data[5] & 0x30, 0x10, "TPGS implicit");
    let r = stpg(&mut c, &d, &[(20, 0x0)]);
    assert_eq!(r.sense_triple(), Some((5, 0x20, 0)), "{r:?}");
    assert_eq!(rtpg(&mut c, &d)[1].1, 0x2, "still standby");
    c.logout().unwrap();
}
