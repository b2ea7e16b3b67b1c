//! Block devices ("device handlers") that esos exports as logical units.
//!
//! Every device implements [`BlockDevice`]: byte-addressed, block-aligned I/O on buffers the
//! request owns until it completes, so an io_uring engine can hold them while the kernel works.
//! The SCSI layer holds a [`Device`], an enum over every backend, so the hot path uses static
//! dispatch and allocates nothing per command.

use std::future::Future;
use std::path::{Path, PathBuf};

mod error;
mod file;
#[cfg(test)]
mod loopdev_tests;
mod null;
mod ram;
mod sync;
mod uring;

pub use uring::URING_QUEUE_DEPTH;

pub use error::{BlockError, BlockErrorKind};
pub use file::FileDevice;
pub use null::NullDevice;
pub use ram::{RAM_MAX_BYTES, RamDevice};

/// A buffer owned by an I/O request: handed to the device and given back on completion.
pub type IoBuf = Vec<u8>;

/// The result of an owned-buffer operation: the outcome and the buffer, always returned.
pub type BufResult = (Result<(), BlockError>, IoBuf);

/// Logical block sizes a device may present.
pub const SUPPORTED_BLOCK_SIZES: [u32; 2] = [512, 4096];

/// Asynchronous, owned-buffer block I/O.
///
/// Offsets and lengths are in bytes and must be multiples of [`BlockDevice::block_size`] and
/// inside the capacity; the SCSI layer validates LBAs before calling, and implementations
/// check again and fail with [`BlockErrorKind::OutOfRange`] rather than touch other data.
pub trait BlockDevice: Send + Sync {
    /// Logical block size in bytes (512 or 4096).
    fn block_size(&self) -> u32;
    /// Capacity in logical blocks.
    fn num_blocks(&self) -> u64;
    /// True when the backend cannot be written (opened read-only).
    fn read_only(&self) -> bool;
    /// True for spinning media (reported in VPD 0xB1).
    fn rotational(&self) -> bool;
    /// Reads `buf.len()` bytes at `offset` into `buf`.
    fn read(&self, offset: u64, buf: IoBuf) -> impl Future<Output = BufResult> + Send;
    /// Writes all of `buf` at `offset`. With `fua` the data is durable on stable storage
    /// before the future completes (RWF_DSYNC or a following fdatasync).
    fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> impl Future<Output = BufResult> + Send;
    /// Makes every completed write durable (fdatasync).
    fn flush(&self) -> impl Future<Output = Result<(), BlockError>> + Send;
}

/// What to open: the backend and its per-device settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub backend: Backend,
    /// Logical block size, 512 or 4096.
    pub block_size: u32,
    pub read_only: bool,
    /// Reported rotation; `None` asks the backend (sysfs for block devices, false otherwise).
    pub rotational: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A regular file; created (sparse) with `size_bytes` when missing. When the file exists
    /// and is smaller than `size_bytes` it is extended; `None` takes the file's size.
    File {
        path: PathBuf,
        size_bytes: Option<u64>,
    },
    /// A block device; its size is read from the device.
    BlockDev { path: PathBuf },
    /// Memory-backed, zero-filled.
    Ram { size_bytes: u64 },
    /// Writes discarded, reads return zeros.
    Null { size_bytes: u64 },
}

/// Every backend, for static dispatch.
#[derive(Debug)]
pub enum Device {
    /// Regular files and block devices.
    File(FileDevice),
    Ram(RamDevice),
    Null(NullDevice),
}

impl Device {
    /// Opens (or creates) the device that `spec` describes.
    pub fn open(spec: &DeviceSpec) -> Result<Device, BlockError> {
        if !SUPPORTED_BLOCK_SIZES.contains(&spec.block_size) {
            return Err(BlockError::new(
                BlockErrorKind::InvalidConfig,
                format!("block size {} is not 512 or 4096", spec.block_size),
            ));
        }
        Ok(match &spec.backend {
            Backend::File { path, size_bytes } => {
                Device::File(FileDevice::open_file(path, *size_bytes, spec)?)
            }
            Backend::BlockDev { path } => Device::File(FileDevice::open_blockdev(path, spec)?),
            Backend::Ram { size_bytes } => Device::Ram(RamDevice::new(*size_bytes, spec)?),
            Backend::Null { size_bytes } => Device::Null(NullDevice::new(*size_bytes, spec)?),
        })
    }
}

macro_rules! dispatch {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Device::File($d) => $e,
            Device::Ram($d) => $e,
            Device::Null($d) => $e,
        }
    };
}

impl BlockDevice for Device {
    fn block_size(&self) -> u32 {
        dispatch!(self, d => d.block_size())
    }
    fn num_blocks(&self) -> u64 {
        dispatch!(self, d => d.num_blocks())
    }
    fn read_only(&self) -> bool {
        dispatch!(self, d => d.read_only())
    }
    fn rotational(&self) -> bool {
        dispatch!(self, d => d.rotational())
    }
    async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        dispatch!(self, d => d.read(offset, buf).await)
    }
    async fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BufResult {
        dispatch!(self, d => d.write(offset, buf, fua).await)
    }
    async fn flush(&self) -> Result<(), BlockError> {
        dispatch!(self, d => d.flush().await)
    }
}

/// Checks that `[offset, offset + len)` is block-aligned and inside `capacity_bytes`, so no
/// backend ever touches bytes outside the request.
pub(crate) fn check_io(
    op: &str,
    offset: u64,
    len: usize,
    block_size: u32,
    capacity_bytes: u64,
) -> Result<(), BlockError> {
    let bs = u64::from(block_size);
    let len = len as u64;
    if !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) {
        return Err(BlockError::new(
            BlockErrorKind::Misaligned,
            format!("{op} at {offset} of {len} bytes is not aligned to {bs}-byte blocks"),
        ));
    }
    match offset.checked_add(len) {
        Some(end) if end <= capacity_bytes => Ok(()),
        _ => Err(BlockError::new(
            BlockErrorKind::OutOfRange,
            format!("{op} at {offset} of {len} bytes is beyond the capacity of {capacity_bytes}"),
        )),
    }
}

/// Checks a configured size: non-zero and a whole number of blocks. `what` names the device
/// (its path, or "ram"/"null") so the message says which one is wrong.
pub(crate) fn check_size(what: &Path, size_bytes: u64, block_size: u32) -> Result<(), BlockError> {
    if size_bytes == 0 || !size_bytes.is_multiple_of(u64::from(block_size)) {
        return Err(BlockError::new(
            BlockErrorKind::InvalidConfig,
            format!(
                "{}: size {size_bytes} is not a non-zero multiple of the block size {block_size}",
                what.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_io_rules() {
        assert!(check_io("read", 0, 512, 512, 1024).is_ok());
        assert!(check_io("read", 512, 512, 512, 1024).is_ok());
        assert!(check_io("read", 1024, 0, 512, 1024).is_ok());
        let k = |r: Result<(), BlockError>| r.unwrap_err().kind();
        assert_eq!(
            k(check_io("read", 1024, 512, 512, 1024)),
            BlockErrorKind::OutOfRange
        );
        assert_eq!(
            k(check_io("read", 512, 1024, 512, 1024)),
            BlockErrorKind::OutOfRange
        );
        assert_eq!(
            k(check_io("read", 1, 512, 512, 1024)),
            BlockErrorKind::Misaligned
        );
        assert_eq!(
            k(check_io("read", 0, 100, 512, 1024)),
            BlockErrorKind::Misaligned
        );
        assert_eq!(
            k(check_io("read", u64::MAX - 511, 4096, 512, u64::MAX)),
            BlockErrorKind::OutOfRange
        );
    }

    #[test]
    fn check_size_rules() {
        let p = Path::new("/d");
        assert!(check_size(p, 4096, 4096).is_ok());
        assert!(check_size(p, 0, 512).is_err());
        let e = check_size(p, 4096 + 512, 4096).unwrap_err();
        assert_eq!(e.kind(), BlockErrorKind::InvalidConfig);
        assert!(e.message().contains("/d"));
    }

    #[test]
    fn open_rejects_odd_block_size() {
        let spec = DeviceSpec {
            backend: Backend::Null {
                size_bytes: 1 << 20,
            },
            block_size: 1024,
            read_only: false,
            rotational: None,
        };
        assert_eq!(
            Device::open(&spec).unwrap_err().kind(),
            BlockErrorKind::InvalidConfig
        );
    }
}
