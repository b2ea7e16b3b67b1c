//! A virtual CD-ROM (`type = "cdrom"`, an ISO made by genisoimage) and a removable disk
//! (`removable = true`), driven with the raw client and libiscsi's tools: identity, the
//! MMC descriptions of the disc, data read back byte for byte against the image, and the
//! medium state machine (eject, load, prevention, media events, unit attention).

use std::path::Path;

use esos_e2e::client::{Conn, LoginOptions, ScsiResult};
use esos_e2e::daemon::Daemon;
use esos_e2e::{cmd, data, tools};

const TARGET: &str = "iqn.2026-11.org.esos:cdrom";
const CD_LUN: u64 = 0;
const DISK_LUN: u64 = 1;
/// A file on the disc larger than one READ(10) of this test, not a multiple of 2048.
const FILE_LEN: usize = 300 * 1024 + 123;

/// Makes `dir/disc.iso` holding `payload` as `PAYLOAD.BIN`; returns the ISO's bytes.
fn make_iso(dir: &Path, payload: &[u8]) -> Vec<u8> {
    tools::require("genisoimage");
    let src = dir.join("iso-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("payload.bin"), payload).unwrap();
    let iso = dir.join("disc.iso");
    let args = [
        "-quiet".to_owned(),
        "-V".into(),
        "ESOS_TEST".into(),
        "-o".into(),
        iso.to_string_lossy().into_owned(),
        src.to_string_lossy().into_owned(),
    ];
    let out = cmd::run("genisoimage", &args, tools::TOOL_TIMEOUT).unwrap();
    assert!(out.success(), "{}", out.describe());
    std::fs::read(iso).unwrap()
}

fn daemon(payload: &[u8]) -> (Daemon, Vec<u8>) {
    let mut iso = Vec::new();
    let d = Daemon::with_config(TARGET, |ctx| {
        iso = make_iso(&ctx.dir, payload);
        format!(
            r#"
[server]
data_dir = "{dir}/data"

[[server.portal]]
address = "127.0.0.1:{port}"

[[device]]
name = "cd0"
type = "cdrom"
path = "disc.iso"

[[device]]
name = "usb0"
type = "ram"
size = "8M"
removable = true

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "cd0" }}, {{ lun = 1, device = "usb0" }}]
"#,
            dir = ctx.dir.display(),
            port = ctx.port
        )
    });
    (d, iso)
}

fn login(d: &Daemon) -> Conn {
    let mut c = Conn::login(d.addr(), &LoginOptions::normal(&d.target))
        .unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    for lun in [CD_LUN, DISK_LUN] {
        c.clear_unit_attention(lun)
            .unwrap_or_else(|e| panic!("TEST UNIT READY: {e}\n{}", d.log()));
    }
    c
}

fn run(c: &mut Conn, d: &Daemon, lun: u64, cdb: &[u8], read_len: u32) -> ScsiResult {
    c.command(lun, cdb, &[], read_len)
        .unwrap_or_else(|e| panic!("CDB {cdb:02x?}: {e}\n{}", d.log()))
}

fn good(c: &mut Conn, d: &Daemon, lun: u64, cdb: &[u8], read_len: u32) -> Vec<u8> {
    let r = run(c, d, lun, cdb, read_len);
    assert!(
        r.is_good(),
        "CDB {cdb:02x?}: status {:#x} sense {:?}",
        r.status,
        r.sense_triple()
    );
    r.data
}

fn sense(c: &mut Conn, d: &Daemon, lun: u64, cdb: &[u8], read_len: u32) -> Option<(u8, u8, u8)> {
    let r = run(c, d, lun, cdb, read_len);
    assert!(
        !r.is_good(),
        "CDB {cdb:02x?} succeeded, expected CHECK CONDITION"
    );
    r.sense_triple()
}

const TUR: [u8; 6] = [0; 6];
const EJECT: [u8; 6] = [0x1B, 0, 0, 0, 0x02, 0];
const LOAD: [u8; 6] = [0x1B, 0, 0, 0, 0x03, 0];
const PREVENT: [u8; 6] = [0x1E, 0, 0, 0, 1, 0];
const ALLOW: [u8; 6] = [0x1E, 0, 0, 0, 0, 0];
/// GET EVENT STATUS NOTIFICATION, polled, media class.
const GESN: [u8; 10] = [0x4A, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0];

fn read10_cdb(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn cdrom_reads_the_iso_and_describes_one_data_track() {
    let payload = data::pattern(data::seed("cdrom payload"), FILE_LEN);
    let (d, iso) = daemon(&payload);
    let blocks = (iso.len() / 2048) as u32;
    assert_eq!(iso.len() % 2048, 0, "genisoimage writes whole sectors");
    let mut c = login(&d);

    // Standard INQUIRY: CD/DVD device, removable, MMC-6 version descriptor.
    let inq = good(&mut c, &d, CD_LUN, &[0x12, 0, 0, 0, 96, 0], 96);
    assert_eq!((inq[0], inq[1]), (0x05, 0x80));
    assert!(
        inq[58..74].chunks(2).any(|v| v == [0x04, 0xE0]),
        "no MMC-6 version descriptor: {:02x?}",
        &inq[58..74]
    );
    let out = tools::libiscsi("iscsi-inq", &d.url(CD_LUN as u32), None);
    assert!(out.success(), "{}\n{}", out.describe(), d.log());
    let pdt = tools::field(&out.stdout, "Peripheral Device Type").unwrap_or_default();
    assert!(pdt.contains("MMC"), "iscsi-inq:\n{}", out.stdout);
    assert_eq!(tools::field(&out.stdout, "Removable"), Some("1"));

    // Capacity: the ISO's size in 2048-byte blocks, by READ CAPACITY(10) and libiscsi's
    // READ CAPACITY(16) tool.
    assert_eq!(c.read_capacity10(CD_LUN).unwrap(), (blocks - 1, 2048));
    let rc16 = tools::libiscsi("iscsi-readcapacity16", &d.url(CD_LUN as u32), None);
    assert!(rc16.success(), "{}\n{}", rc16.describe(), d.log());
    assert_eq!(
        tools::field(&rc16.stdout, "LOGICAL BLOCK LENGTH IN BYTES"),
        Some("2048")
    );
    let total = tools::field(&rc16.stdout, "Total size").unwrap_or_default();
    assert_eq!(total, iso.len().to_string(), "{}", rc16.stdout);

    // The whole disc, read with READ(10) in 64-block pieces, equals the image; the file's
    // bytes are on it at a sector boundary.
    let mut disc = Vec::with_capacity(iso.len());
    for lba in (0..blocks).step_by(64) {
        let n = (blocks - lba).min(64) as u16;
        disc.extend(good(
            &mut c,
            &d,
            CD_LUN,
            &read10_cdb(lba, n),
            u32::from(n) * 2048,
        ));
    }
    assert!(disc == iso, "disc contents differ from the ISO file");
    let at = (0..disc.len() / 2048)
        .map(|s| s * 2048)
        .find(|&o| disc[o..].starts_with(&payload[..4096]))
        .expect("file not found on the disc");
    assert!(disc[at..at + FILE_LEN] == payload[..], "file bytes differ");
    // Past the end: LBA OUT OF RANGE.
    assert_eq!(
        sense(&mut c, &d, CD_LUN, &read10_cdb(blocks, 1), 2048),
        Some((0x05, 0x21, 0x00))
    );

    // READ TOC format 0, LBA: track 1 at 0, lead-out at the capacity.
    let toc = good(
        &mut c,
        &d,
        CD_LUN,
        &[0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24, 0],
        804,
    );
    assert_eq!(&toc[0..4], &[0, 18, 1, 1]);
    assert_eq!(&toc[4..12], &[0, 0x14, 1, 0, 0, 0, 0, 0]);
    assert_eq!(toc[14], 0xAA);
    assert_eq!(&toc[16..20], &blocks.to_be_bytes());
    // MSF: LBA 0 is 00:02:00; session info (format 1).
    let toc = good(
        &mut c,
        &d,
        CD_LUN,
        &[0x43, 0x02, 1, 0, 0, 0, 0, 0, 12, 0],
        12,
    );
    assert_eq!(&toc[..], &[0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 2, 0]);

    // GET CONFIGURATION: current profile CD-ROM; the profile list names it current.
    let cfg = good(
        &mut c,
        &d,
        CD_LUN,
        &[0x46, 0, 0, 0, 0, 0, 0, 0x01, 0, 0],
        256,
    );
    assert_eq!(&cfg[6..8], &[0x00, 0x08]);
    assert_eq!(&cfg[8..10], &[0, 0], "first feature is the profile list");
    let list = &cfg[12..12 + usize::from(cfg[11])];
    assert!(
        list.chunks(4).any(|p| p == [0x00, 0x08, 1, 0]),
        "{list:02x?}"
    );

    // READ DISC INFORMATION: complete disc, one session; MODE SENSE(10) page 2Ah.
    let di = good(&mut c, &d, CD_LUN, &[0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0], 34);
    assert_eq!((di[2] & 0x03, di[4], di[6]), (0x02, 1, 1));
    let ms = good(
        &mut c,
        &d,
        CD_LUN,
        &[0x5A, 0x08, 0x2A, 0, 0, 0, 0, 0, 64, 0],
        64,
    );
    assert_eq!(ms[8] & 0x3F, 0x2A);
    assert_eq!(ms[8 + 3], 0, "the drive claims to write");

    // Read-only: writes are not in the command set.
    let write = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let r = c.command(CD_LUN, &write, &[0u8; 2048], 0).unwrap();
    assert_eq!(r.sense_triple(), Some((0x05, 0x20, 0x00)), "{r:?}");
    // The image is untouched.
    assert!(std::fs::read(d.dir().join("disc.iso")).unwrap() == iso);
}

#[test]
fn cdrom_tray_eject_load_prevent_and_media_events() {
    let payload = data::pattern(data::seed("cdrom tray"), 4096);
    let (d, _) = daemon(&payload);
    let mut c = login(&d);
    let mut other = login(&d);

    // No event pending at first.
    let ev = good(&mut c, &d, CD_LUN, &GESN, 8);
    assert_eq!(&ev[..6], &[0, 4, 4, 0x10, 0, 0x02]);

    // Locked: eject refused, disc still readable.
    good(&mut c, &d, CD_LUN, &PREVENT, 0);
    assert_eq!(
        sense(&mut other, &d, CD_LUN, &EJECT, 0),
        Some((0x05, 0x53, 0x02))
    );
    good(&mut c, &d, CD_LUN, &TUR, 0);
    good(&mut c, &d, CD_LUN, &ALLOW, 0);

    // Eject: NOT READY, MEDIUM NOT PRESENT - TRAY OPEN; the event says so once.
    good(&mut c, &d, CD_LUN, &EJECT, 0);
    assert_eq!(sense(&mut c, &d, CD_LUN, &TUR, 0), Some((0x02, 0x3A, 0x02)));
    assert_eq!(
        sense(&mut other, &d, CD_LUN, &read10_cdb(0, 1), 2048),
        Some((0x02, 0x3A, 0x02))
    );
    let ev = good(&mut c, &d, CD_LUN, &GESN, 8);
    assert_eq!(&ev[4..6], &[3, 0x01], "MEDIA REMOVAL, tray open");
    let ev = good(&mut c, &d, CD_LUN, &GESN, 8);
    assert_eq!(ev[4], 0, "the event is reported once");
    // GET CONFIGURATION still works with no disc: current profile 0000h.
    let cfg = good(&mut c, &d, CD_LUN, &[0x46, 0x02, 0, 0, 0, 0, 0, 0, 8, 0], 8);
    assert_eq!(&cfg[6..8], &[0, 0]);

    // Load: ready again; the other nexus gets NOT READY TO READY CHANGE, then its event.
    good(&mut c, &d, CD_LUN, &LOAD, 0);
    good(&mut c, &d, CD_LUN, &TUR, 0);
    assert_eq!(
        sense(&mut other, &d, CD_LUN, &TUR, 0),
        Some((0x06, 0x28, 0x00))
    );
    good(&mut other, &d, CD_LUN, &TUR, 0);
    let ev = good(&mut other, &d, CD_LUN, &GESN, 8);
    assert_eq!(&ev[4..6], &[2, 0x02], "NEW MEDIA, present");
    good(&mut c, &d, CD_LUN, &read10_cdb(0, 1), 2048);

    // A prevention ends with its nexus: log the locking session out, then eject works.
    good(&mut other, &d, CD_LUN, &PREVENT, 0);
    assert_eq!(
        sense(&mut c, &d, CD_LUN, &EJECT, 0),
        Some((0x05, 0x53, 0x02))
    );
    other.logout().unwrap();
    // The session ends just after the Logout Response: allow the teardown a moment.
    let ejected = (0..50).any(|_| {
        let r = run(&mut c, &d, CD_LUN, &EJECT, 0);
        if r.is_good() {
            return true;
        }
        assert_eq!(r.sense_triple(), Some((0x05, 0x53, 0x02)), "{r:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        false
    });
    assert!(ejected, "prevention outlived its session\n{}", d.log());
    good(&mut c, &d, CD_LUN, &LOAD, 0);
}

#[test]
fn removable_disk_ejects_and_loads() {
    let (d, _) = daemon(&data::pattern(data::seed("removable disk"), 4096));
    let mut c = login(&d);
    let inq = good(&mut c, &d, DISK_LUN, &[0x12, 0, 0, 0, 96, 0], 96);
    assert_eq!((inq[0], inq[1]), (0x00, 0x80), "direct access, RMB 1");

    let block = data::pattern(data::seed("removable disk block"), 512);
    assert!(c.write10(DISK_LUN, 7, 1, &block, false).unwrap().is_good());
    good(&mut c, &d, DISK_LUN, &EJECT, 0);
    assert_eq!(
        sense(&mut c, &d, DISK_LUN, &TUR, 0),
        Some((0x02, 0x3A, 0x00))
    );
    let r = c.write10(DISK_LUN, 7, 1, &block, false).unwrap();
    assert_eq!(r.sense_triple(), Some((0x02, 0x3A, 0x00)));
    // REQUEST SENSE describes the not-ready state.
    let rs = good(&mut c, &d, DISK_LUN, &[0x03, 0, 0, 0, 18, 0], 18);
    assert_eq!((rs[2] & 0x0F, rs[12], rs[13]), (0x02, 0x3A, 0x00));
    good(&mut c, &d, DISK_LUN, &LOAD, 0);
    let r = c.read10(DISK_LUN, 7, 1, 512).unwrap();
    assert!(
        r.is_good() && r.data == block,
        "data lost across eject/load"
    );
}
