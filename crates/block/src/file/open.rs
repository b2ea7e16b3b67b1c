//! Opening regular files and block devices: creation, sizing, sysfs and tmpfs detection.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::FileDevice;
use crate::engine::EngineChoice;
use crate::{BlockError, BlockErrorKind, DeviceSpec};

/// `BLKGETSIZE64` = `_IOR(0x12, 114, size_t)`: device size in bytes. Not exported by `libc`.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// `statfs` magic of tmpfs.
const TMPFS_MAGIC: libc::c_long = 0x0102_1994;

pub(super) fn on_tmpfs(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes a whole `statfs` into the pointer on success and nothing on
    // failure; we read it only when it returned 0.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: rc == 0 means the kernel initialised the struct.
    rc == 0 && unsafe { st.assume_init() }.f_type as libc::c_long == TMPFS_MAGIC
}

pub(super) fn io_err(path: &Path, what: &str, e: io::Error) -> BlockError {
    BlockError::with_source(
        BlockErrorKind::InvalidConfig,
        format!("{}: {what}", path.display()),
        e,
    )
}

pub(super) fn config_err(path: &Path, what: impl std::fmt::Display) -> BlockError {
    BlockError::new(
        BlockErrorKind::InvalidConfig,
        format!("{}: {what}", path.display()),
    )
}

impl FileDevice {
    /// Opens a regular file, creating it sparse with `size_bytes` when missing and extending
    /// it when smaller. `None` exports the file's current size.
    pub fn open_file(
        path: &Path,
        size_bytes: Option<u64>,
        spec: &DeviceSpec,
    ) -> Result<Self, BlockError> {
        Self::open_file_with(path, size_bytes, spec, EngineChoice::from_env())
    }

    pub(crate) fn open_file_with(
        path: &Path,
        size_bytes: Option<u64>,
        spec: &DeviceSpec,
        engine: EngineChoice,
    ) -> Result<Self, BlockError> {
        if let Some(size) = size_bytes {
            crate::check_size(path, size, spec.block_size)?;
        }
        let create = !spec.read_only && size_bytes.is_some();
        if create && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_err(path, "cannot create the parent directory", e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!spec.read_only)
            .create(create)
            .open(path)
            .map_err(|e| io_err(path, "cannot open", e))?;
        let meta = file
            .metadata()
            .map_err(|e| io_err(path, "cannot stat", e))?;
        if !meta.file_type().is_file() {
            return Err(config_err(
                path,
                "not a regular file (use the blockdev backend for devices)",
            ));
        }
        let size = match size_bytes {
            Some(size) => {
                if meta.len() < size {
                    if spec.read_only {
                        return Err(config_err(
                            path,
                            format!(
                                "file is {} bytes, smaller than {size}, and read-only",
                                meta.len()
                            ),
                        ));
                    }
                    // set_len extends with a hole: no blocks are allocated.
                    file.set_len(size)
                        .map_err(|e| io_err(path, "cannot extend", e))?;
                }
                size
            }
            None => {
                crate::check_size(path, meta.len(), spec.block_size)?;
                meta.len()
            }
        };
        let rotational = spec
            .rotational
            .unwrap_or_else(|| sysfs_rotational(meta.dev()).unwrap_or(false));
        Ok(Self::new(path, file, size, spec, rotational, engine))
    }

    /// Opens a block device; its size comes from the device. Opened with `O_EXCL` when
    /// writable so a device that is mounted or in use elsewhere is refused.
    pub fn open_blockdev(path: &Path, spec: &DeviceSpec) -> Result<Self, BlockError> {
        Self::open_blockdev_with(path, spec, EngineChoice::from_env())
    }

    /// How long an `O_EXCL` open retries while the device is busy. A killed daemon's
    /// io_uring file references are released by the kernel asynchronously (tens of ms), so
    /// a supervisor's immediate restart would otherwise find its own device "in use".
    pub const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

    pub(crate) fn open_blockdev_with(
        path: &Path,
        spec: &DeviceSpec,
        engine: EngineChoice,
    ) -> Result<Self, BlockError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(!spec.read_only);
        if !spec.read_only {
            opts.custom_flags(libc::O_EXCL);
        }
        let file = open_retrying_busy(&opts, path).map_err(|e| io_err(path, "cannot open", e))?;
        let meta = file
            .metadata()
            .map_err(|e| io_err(path, "cannot stat", e))?;
        if !meta.file_type().is_block_device() {
            return Err(config_err(path, "not a block device"));
        }
        let dev_bytes =
            blockdev_bytes(&file).map_err(|e| io_err(path, "BLKGETSIZE64 failed", e))?;
        let mut sector: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer, which points to a live c_int.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::BLKSSZGET,
                &mut sector as *mut libc::c_int,
            )
        };
        if rc != 0 {
            return Err(io_err(path, "BLKSSZGET failed", io::Error::last_os_error()));
        }
        // A logical block must be made of whole device sectors, or a write of one of our
        // blocks would be a read-modify-write the device does not promise to do atomically.
        if sector <= 0
            || sector as u32 > spec.block_size
            || !spec.block_size.is_multiple_of(sector as u32)
        {
            return Err(config_err(
                path,
                format!(
                    "device sector size {sector} does not fit block size {}",
                    spec.block_size
                ),
            ));
        }
        // A trailing partial block is not exported.
        let size = dev_bytes - dev_bytes % u64::from(spec.block_size);
        if size == 0 {
            return Err(config_err(
                path,
                format!("device of {dev_bytes} bytes is too small"),
            ));
        }
        let rotational = spec
            .rotational
            .unwrap_or_else(|| sysfs_rotational(meta.rdev()).unwrap_or(false));
        let mut dev = Self::new(path, file, size, spec, rotational, engine);
        dev.blockdev = true;
        Ok(dev)
    }
}

/// The size in bytes of the block device behind `file` (BLKGETSIZE64).
pub(super) fn blockdev_bytes(file: &File) -> io::Result<u64> {
    let mut dev_bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a live u64.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut dev_bytes as *mut u64) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dev_bytes)
}

/// Reads `/sys/dev/block/MAJ:MIN/queue/rotational` for the device `dev` (a partition looks at
/// its parent disk). `None` when sysfs does not know (tmpfs, overlay, no sysfs).
fn sysfs_rotational(dev: u64) -> Option<bool> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let base = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    for queue in [
        base.join("queue/rotational"),
        base.join("../queue/rotational"),
    ] {
        if let Ok(s) = std::fs::read_to_string(&queue) {
            return match s.trim() {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            };
        }
    }
    None
}

/// Opens `path`, retrying for up to [`FileDevice::BUSY_RETRY`] while it fails with EBUSY.
fn open_retrying_busy(opts: &OpenOptions, path: &Path) -> io::Result<File> {
    let deadline = std::time::Instant::now() + FileDevice::BUSY_RETRY;
    loop {
        match opts.open(path) {
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}
