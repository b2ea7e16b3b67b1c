//! READs served straight from the page cache (`server.iscsi.zero_copy_reads`, files on
//! tmpfs): the initiator gets exactly the file's bytes however the Data-In is cut into PDUs
//! and bursts, with header digests, with an EDTL below the transfer, and as zeros where the
//! file was truncated underneath; data digests and `zero_copy_reads = false` take the copy
//! path. The daemon's counter tells which path served the bytes.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use esos_e2e::client::{Conn, LoginOptions};
use esos_e2e::daemon::{Ctx, Daemon, default_target_toml};
use esos_e2e::{data, paths};

const IMAGE_BYTES: u64 = 16 << 20;
const BS: u32 = 512;
const TARGET: &str = "iqn.2026-11.org.esos.e2e:zero-copy";
/// `server.limits.nop_in_timeout_ms`: how long a socket write may make no progress.
const STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A temp dir on tmpfs, or `None` (the test is skipped) where /dev/shm is not one.
fn shm_dir() -> Option<tempfile::TempDir> {
    paths::tmpfs_dir("esos-e2e-zc-")
}

/// `esos_zero_copy_read_bytes_total` from the daemon's API socket.
fn zero_copy_bytes(d: &Daemon) -> u64 {
    let mut s = std::os::unix::net::UnixStream::connect(d.dir().join("data").join("esos.sock"))
        .unwrap_or_else(|e| panic!("API socket: {e}\n{}", d.log()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/v1/metrics HTTP/1.0\r\nHost: esos\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("esos_zero_copy_read_bytes_total "))
        .unwrap_or_else(|| panic!("no zero-copy counter in /metrics:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

fn login(d: &Daemon, opts: LoginOptions) -> Conn {
    let mut c = Conn::login(d.addr(), &opts).unwrap_or_else(|e| panic!("login: {e}\n{}", d.log()));
    c.clear_unit_attention(0)
        .unwrap_or_else(|e| panic!("TEST UNIT READY: {e}\n{}", d.log()));
    c
}

/// READ(16) of `blocks` at `lba` with an EDTL of `edtl` bytes; checks GOOD and returns the data.
fn read(c: &mut Conn, d: &Daemon, lba: u64, blocks: u32, edtl: u32) -> Vec<u8> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x88;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    let r = c
        .command(0, &cdb, &[], edtl)
        .unwrap_or_else(|e| panic!("READ(16): {e}\n{}", d.log()));
    assert!(
        r.is_good(),
        "READ(16) status {:#x} sense {:?}",
        r.status,
        r.sense_triple()
    );
    assert_eq!(
        r.data.len(),
        edtl.min(blocks * BS) as usize,
        "Data-In length"
    );
    r.data
}

fn file_bytes(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut v, offset)
        .unwrap();
    v
}

#[test]
fn reads_from_the_page_cache_are_exact() {
    let Some(shm) = shm_dir() else { return };
    let img = shm.path().join("lun0.img");
    data::write_random_file(&img, IMAGE_BYTES, data::seed("zero_copy"));
    let d = Daemon::quick(&[img.to_str().unwrap()]);
    assert_eq!(zero_copy_bytes(&d), 0);

    // (what the initiator offers, what must be sent by reference)
    let small_pdus = LoginOptions {
        max_recv_dsl: 8192,
        max_burst: 65536,
        ..LoginOptions::normal(&d.target)
    };
    let header_digest = LoginOptions {
        header_digest: true,
        ..LoginOptions::normal(&d.target)
    };
    let cases = [
        ("defaults", LoginOptions::normal(&d.target), true),
        ("8 KiB PDUs, 64 KiB bursts", small_pdus, true),
        ("header digest", header_digest, true),
        (
            "data digest",
            LoginOptions::normal(&d.target).digests(),
            false,
        ),
    ];
    for (name, opts, by_ref) in cases {
        let mut c = login(&d, opts);
        for (lba, blocks) in [(0u64, 2048u32), (4095, 129), (30000, 2048), (100, 8)] {
            let before = zero_copy_bytes(&d);
            let got = read(&mut c, &d, lba, blocks, blocks * BS);
            let want = file_bytes(&img, lba * u64::from(BS), (blocks * BS) as usize);
            assert!(
                got == want,
                "{name}: READ at {lba} x {blocks} differs from the file"
            );
            let sent = zero_copy_bytes(&d) - before;
            let expect = if by_ref && blocks * BS >= 64 * 1024 {
                u64::from(blocks * BS)
            } else {
                0
            };
            assert_eq!(sent, expect, "{name}: zero-copy bytes for {blocks} blocks");
        }
        // The initiator takes less than the transfer: only that much leaves.
        let got = read(&mut c, &d, 64, 2048, 300 * BS);
        assert!(got == file_bytes(&img, 64 * u64::from(BS), (300 * BS) as usize));
        c.logout().unwrap();
    }

    // The file shrinks underneath the device: the blocks past its end read as zeros.
    let cut = IMAGE_BYTES - (1 << 20);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let mut c = login(&d, LoginOptions::normal(&d.target));
    let lba = cut / u64::from(BS) - 256;
    let got = read(&mut c, &d, lba, 1024, 1024 * BS);
    let mut want = file_bytes(&img, lba * u64::from(BS), 256 * BS as usize);
    want.resize((1024 * BS) as usize, 0);
    assert!(got == want, "the truncated tail must read as zeros");
    // The session is still in step after a short file.
    assert!(c.test_unit_ready(0).unwrap().is_good());
    c.logout().unwrap();
}

/// One file LUN at `img` on [`TARGET`], a short stall timeout, and `iscsi` as the body of
/// `[server.iscsi]`.
fn config(ctx: &Ctx, img: &Path, iscsi: &str) -> String {
    format!(
        r#"{server}
[server.limits]
nop_in_interval_ms = 1000
nop_in_timeout_ms = {stall}

[server.iscsi]
{iscsi}

[[device]]
name = "d0"
type = "file"
path = "{img}"

{target}"#,
        server = ctx.server_toml(),
        target = default_target_toml(TARGET, "d0"),
        stall = STALL_TIMEOUT.as_millis(),
        img = img.display(),
    )
}

#[test]
fn switched_off_every_read_is_copied() {
    let Some(shm) = shm_dir() else { return };
    let img = shm.path().join("lun0.img");
    data::write_random_file(&img, IMAGE_BYTES, data::seed("zero_copy_off"));
    let path = img.clone();
    let d = Daemon::with_config(TARGET, move |ctx: &Ctx| {
        config(ctx, &path, "zero_copy_reads = false")
    });
    let mut c = login(&d, LoginOptions::normal(TARGET));
    let got = read(&mut c, &d, 0, 2048, 2048 * BS);
    assert!(got == file_bytes(&img, 0, (2048 * BS) as usize));
    assert_eq!(zero_copy_bytes(&d), 0);
    c.logout().unwrap();
}

/// An initiator that asks for zero-copy Data-In and never reads it is dropped after the
/// stall timeout, like one served from buffers; another session keeps reading meanwhile.
#[test]
fn a_session_that_never_reads_is_dropped() {
    let Some(shm) = shm_dir() else { return };
    let img = shm.path().join("lun0.img");
    data::write_random_file(&img, IMAGE_BYTES, data::seed("zero_copy_stall"));
    let path = img.clone();
    let d = Daemon::with_config(TARGET, move |ctx: &Ctx| config(ctx, &path, ""));
    let mut stalled = login(&d, LoginOptions::normal(TARGET));
    const UNREAD: u32 = 16;
    for i in 0..UNREAD {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[2..10].copy_from_slice(&(u64::from(i) * 2048).to_be_bytes());
        cdb[10..14].copy_from_slice(&2048u32.to_be_bytes());
        let p = stalled.scsi_header(0, &cdb, 0, 2048 * BS);
        stalled.send(&p).unwrap();
    }
    let mut s = stalled.into_stream();
    let mut good = login(&d, LoginOptions::normal(TARGET));
    let until = std::time::Instant::now() + STALL_TIMEOUT + Duration::from_secs(2);
    let mut reads = 0;
    while std::time::Instant::now() < until {
        let lba = (reads % 8) * 2048;
        let got = read(&mut good, &d, lba, 2048, 2048 * BS);
        assert!(got == file_bytes(&img, lba * u64::from(BS), (2048 * BS) as usize));
        reads += 1;
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0usize;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the stalled session was not closed: {e}\n{}", d.log()),
        }
    }
    assert!(
        bytes < (UNREAD as usize) << 20,
        "the stalled session got all {bytes} bytes: it never stalled"
    );
    eprintln!("esos-e2e: stalled session closed after {bytes} bytes; the other did {reads} reads");
    assert!(reads > 0);
    assert!(
        d.log().contains("stall timeout"),
        "no stall in the log\n{}",
        d.log()
    );
    good.logout().unwrap();
}
