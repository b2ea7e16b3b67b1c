//! File LUNs on xfs, ext4 and btrfs (each on its own loop device), and a block-device LUN
//! on a raw loop device, each with a qemu-img round trip. Needs root; skipped with the
//! reason otherwise.

use esos_e2e::daemon::Daemon;
use esos_e2e::data;
use esos_e2e::loopdev::{self, Fs, LoopDev, Mount};
use esos_e2e::tools::{self, QemuIscsi};

/// LUN size of the round trips on file systems.
const LUN_BYTES: u64 = 128 << 20;

fn skip() -> bool {
    if let Some(why) = loopdev::unavailable_reason() {
        eprintln!("SKIPPED: {why}");
        return true;
    }
    false
}

fn round_trip(d: &Daemon, scratch: &std::path::Path, what: &str) {
    let q = QemuIscsi {
        portal: d.portal(),
        target: d.target.clone(),
        lun: 0,
        header_digest: false,
        initiator: None,
        chap: None,
    };
    tools::qemu_round_trip(&q, scratch, LUN_BYTES, data::seed(what));
}

fn file_lun_on(fs: Fs) {
    if skip() {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("esos-e2e-fs-")
        .tempdir()
        .unwrap();
    let image = work.path().join("fs.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(fs.image_bytes())
        .unwrap();
    let dev = LoopDev::attach(&image);
    fs.mkfs(&dev.device);
    let mnt = Mount::new(&dev.device, &work.path().join("mnt"));
    let lun = mnt.point.join("lun0.img");
    {
        let d = Daemon::quick(&[&format!("{}:{}", lun.display(), LUN_BYTES)]);
        round_trip(&d, work.path(), &format!("{fs:?}"));
        let (status, _) = d.stop();
        assert!(
            matches!(status, Some(s) if s.success()),
            "esos exit {status:?}"
        );
    }
    assert_eq!(std::fs::metadata(&lun).unwrap().len(), LUN_BYTES);
    // Drop order: mount, then loop device, then the temp dir.
    drop(mnt);
    drop(dev);
}

#[test]
fn file_lun_on_xfs() {
    file_lun_on(Fs::Xfs);
}

#[test]
fn file_lun_on_ext4() {
    file_lun_on(Fs::Ext4);
}

#[test]
fn file_lun_on_btrfs() {
    file_lun_on(Fs::Btrfs);
}

#[test]
fn blockdev_lun_on_loop_device() {
    if skip() {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("esos-e2e-blk-")
        .tempdir()
        .unwrap();
    let image = work.path().join("raw.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(LUN_BYTES)
        .unwrap();
    let dev = LoopDev::attach(&image);
    {
        let d = Daemon::quick(&[&format!("blockdev:{}", dev.device.display())]);
        let inq = tools::libiscsi("iscsi-inq", &d.url(0), None);
        assert_eq!(
            tools::field(&inq.stdout, "Product"),
            Some("BLOCKIO"),
            "{}",
            inq.describe()
        );
        round_trip(&d, work.path(), "blockdev");
    }
    drop(dev);
}
