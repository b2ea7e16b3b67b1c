//! Real initiators against esos: the libiscsi tools and qemu-img's iSCSI driver.

use esos_e2e::daemon::{Daemon, Quick};
use esos_e2e::data;
use esos_e2e::tools::{self, QemuIscsi};

/// Size of the qemu-img round-trip images (the brief's 256 MiB).
const IMAGE_BYTES: u64 = 256 << 20;
/// CHAP credentials of the protected quick export (secret >= 12 bytes, RFC 7143 12.1.3).
const CHAP_USER: &str = "e2e-user";
const CHAP_SECRET: &str = "e2e-secret-0123";

fn qemu(d: &Daemon, lun: u32, header_digest: bool) -> QemuIscsi {
    QemuIscsi {
        portal: d.portal(),
        target: d.target.clone(),
        lun,
        header_digest,
        initiator: None,
        chap: None,
    }
}

#[test]
fn libiscsi_lists_inquires_and_reads_capacity() {
    let d = Daemon::quick(&["{dir}/lun0.img:64M", "ram:32M", "null:1G"]);
    let ls = tools::iscsi_ls(&format!("iscsi://{}", d.portal()), None);
    assert!(
        ls.success(),
        "iscsi-ls failed\n{}\n{}",
        ls.describe(),
        d.log()
    );
    assert!(
        ls.stdout.contains(&d.target),
        "target missing from iscsi-ls\n{}",
        ls.stdout
    );
    assert_eq!(
        tools::luns_in_listing(&ls.stdout),
        [0, 1, 2],
        "{}",
        ls.stdout
    );

    let inq = tools::libiscsi("iscsi-inq", &d.url(0), None);
    assert!(inq.success(), "{}\n{}", inq.describe(), d.log());
    assert_eq!(
        tools::field(&inq.stdout, "Vendor"),
        Some("ESOS"),
        "{}",
        inq.stdout
    );
    assert_eq!(
        tools::field(&inq.stdout, "Product"),
        Some("FILEIO"),
        "{}",
        inq.stdout
    );
    assert_eq!(
        tools::field(&inq.stdout, "Peripheral Device Type"),
        Some("DIRECT_ACCESS")
    );

    for (lun, bytes) in [(0u32, 64u64 << 20), (1, 32 << 20), (2, 1 << 30)] {
        let rc = tools::libiscsi("iscsi-readcapacity16", &d.url(lun), None);
        assert!(rc.success(), "{}\n{}", rc.describe(), d.log());
        assert_eq!(
            tools::field(&rc.stdout, "Total size"),
            Some(bytes.to_string().as_str()),
            "LUN {lun}\n{}",
            rc.stdout
        );
    }
}

#[test]
fn qemu_img_round_trip_plain() {
    let d = Daemon::quick(&["{dir}/lun0.img:256M"]);
    let sha = tools::qemu_round_trip(
        &qemu(&d, 0, false),
        d.dir(),
        IMAGE_BYTES,
        data::seed("qemu plain"),
    );
    // What qemu wrote must be in the backing file, not only in a cache.
    stop_and_check_backing(d, "lun0.img", &sha);
}

#[test]
fn qemu_img_round_trip_header_digest() {
    let d = Daemon::quick(&["{dir}/lun0.img:256M"]);
    tools::qemu_round_trip(
        &qemu(&d, 0, true),
        d.dir(),
        IMAGE_BYTES,
        data::seed("qemu hd"),
    );
}

#[test]
fn qemu_img_round_trip_chap() {
    let d = Quick::new()
        .lun("ram:256M")
        .chap(CHAP_USER, CHAP_SECRET)
        .start();
    let mut q = qemu(&d, 0, false);
    q.chap = Some((CHAP_USER.into(), CHAP_SECRET.into()));
    tools::qemu_round_trip(&q, d.dir(), IMAGE_BYTES, data::seed("qemu chap"));

    // The URL form with user%secret works with libiscsi too, and no credentials are refused.
    let url = format!(
        "iscsi://{CHAP_USER}%{CHAP_SECRET}@{}/{}/0",
        d.portal(),
        d.target
    );
    let ok = tools::libiscsi("iscsi-inq", &url, None);
    assert!(
        ok.success(),
        "CHAP login via URL failed\n{}\n{}",
        ok.describe(),
        d.log()
    );
    let anon = tools::libiscsi("iscsi-inq", &d.url(0), None);
    assert!(
        !anon.success(),
        "login without CHAP credentials was accepted\n{}",
        anon.describe()
    );
}

/// Stops the daemon (SIGTERM, clean exit) and checks the backing file kept the last image
/// qemu wrote: a round trip through the file, not through the daemon's memory.
fn stop_and_check_backing(mut d: Daemon, file: &str, sha: &str) {
    let status = d.terminate(esos_e2e::daemon::STOP_TIMEOUT);
    assert!(
        matches!(status, Some(s) if s.success()),
        "esos exit status {status:?}\n{}",
        d.log()
    );
    let path = d.dir().join(file);
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, IMAGE_BYTES, "backing file has the wrong size");
    assert_eq!(
        data::sha256(&path),
        sha,
        "backing file differs from the image qemu wrote"
    );
}
