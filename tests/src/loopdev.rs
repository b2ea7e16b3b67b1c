//! Loop devices, file systems and mounts for the file-system tests (root only). Each is a
//! Drop guard that undoes exactly what it did: `umount` of its own mount point and
//! `losetup -d` of the device it created, never a search by name.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd;

/// Longest a losetup/mkfs/mount/umount may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);

/// A loop device attached to a backing file.
pub struct LoopDev {
    pub device: PathBuf,
}

impl LoopDev {
    /// `losetup --find --show FILE`
    pub fn attach(file: &Path) -> LoopDev {
        let o = cmd::run_ok(
            "losetup",
            &["--find", "--show", &file.to_string_lossy()],
            ADMIN_TIMEOUT,
        );
        let name = o.stdout.trim();
        // Guard first, so the device is detached even if the check below fails.
        let dev = LoopDev {
            device: PathBuf::from(name),
        };
        assert!(
            name.starts_with("/dev/loop"),
            "losetup printed {:?}",
            o.stdout
        );
        dev
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        match cmd::run(
            "losetup",
            &["-d", &self.device.to_string_lossy()],
            ADMIN_TIMEOUT,
        ) {
            Ok(o) if o.success() => {}
            Ok(o) => eprintln!(
                "esos-e2e: losetup -d {} failed\n{}",
                self.device.display(),
                o.describe()
            ),
            Err(e) => eprintln!("esos-e2e: {e}"),
        }
    }
}

/// A mounted file system.
pub struct Mount {
    pub point: PathBuf,
}

impl Mount {
    pub fn new(device: &Path, point: &Path) -> Mount {
        std::fs::create_dir_all(point).expect("mount point");
        cmd::run_ok(
            "mount",
            &[device.as_os_str(), point.as_os_str()],
            ADMIN_TIMEOUT,
        );
        Mount {
            point: point.to_path_buf(),
        }
    }

    /// A tmpfs of `size_bytes` at `point`: a file system that fills up on demand.
    pub fn tmpfs(point: &Path, size_bytes: u64) -> Mount {
        std::fs::create_dir_all(point).expect("mount point");
        let opts = format!("size={size_bytes}");
        cmd::run_ok(
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("tmpfs"),
                OsStr::new("-o"),
                OsStr::new(&opts),
                OsStr::new("tmpfs"),
                point.as_os_str(),
            ],
            ADMIN_TIMEOUT,
        );
        Mount {
            point: point.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // A daemon that still holds files there makes umount fail; callers drop the daemon
        // first. A few retries cover the kernel finishing writeback.
        for _ in 0..5 {
            match cmd::run("umount", &[self.point.as_os_str()], ADMIN_TIMEOUT) {
                Ok(o) if o.success() => return,
                Ok(o) => eprintln!(
                    "esos-e2e: umount {} failed\n{}",
                    self.point.display(),
                    o.describe()
                ),
                Err(e) => eprintln!("esos-e2e: {e}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// File systems the tests cover, with their mkfs command line.
#[derive(Clone, Copy, Debug)]
pub enum Fs {
    Xfs,
    Ext4,
    Btrfs,
}

impl Fs {
    pub fn mkfs(self, device: &Path) {
        let dev = device.to_string_lossy().into_owned();
        let (prog, args): (&str, Vec<&str>) = match self {
            Fs::Xfs => ("mkfs.xfs", vec!["-q", "-f", &dev]),
            Fs::Ext4 => ("mkfs.ext4", vec!["-q", "-F", &dev]),
            Fs::Btrfs => ("mkfs.btrfs", vec!["-q", "-f", &dev]),
        };
        crate::tools::require(prog);
        cmd::run_ok(prog, &args, ADMIN_TIMEOUT);
    }

    /// Smallest image the mkfs accepts comfortably (btrfs wants ~110 MiB, xfs 300 MiB).
    pub fn image_bytes(self) -> u64 {
        match self {
            Fs::Xfs => 512 << 20,
            Fs::Ext4 => 256 << 20,
            Fs::Btrfs => 256 << 20,
        }
    }
}

/// Why loop-device tests cannot run here, if they cannot.
pub fn unavailable_reason() -> Option<String> {
    if !crate::paths::is_root() {
        return Some("not running as root (loop devices and mounts need root)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control is missing (no loop device support)".into());
    }
    None
}
