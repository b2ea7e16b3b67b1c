//! Block devices ("device handlers") that esos exports as logical units.
//!
//! Every device implements [`BlockDevice`]: byte-addressed, block-aligned I/O on buffers the
//! request owns until it completes, so an io_uring engine can hold them while the kernel works.
//! The SCSI layer holds a [`Device`], an enum over every backend, so the hot path uses static
//! dispatch and allocates nothing per command.
//!
//! Where things live: the leaf backends (`file/` with its engines `engine.rs`, `uring.rs`,
//! `sync.rs`; `ram.rs`; `null.rs`), stacked devices and their rules (`stack.rs`, with
//! `passthrough.rs` as the template layer), buffers a layer can split and share
//! (`buf.rs`), and the one error type whose kind front-ends map to their status
//! (`error.rs`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod buf;
mod engine;
mod error;
mod file;
#[cfg(test)]
mod loopdev_tests;
mod null;
mod passthrough;
mod ram;
mod stack;
mod sync;
mod uring;

pub use uring::URING_QUEUE_DEPTH;

pub use buf::{SharedBuf, SharedResult, SplitBuf, SplitResult};
pub use error::{BlockError, BlockErrorKind};
pub use file::FileDevice;
pub use null::NullDevice;
pub use passthrough::PassThrough;
pub use ram::{RAM_MAX_BYTES, RamDevice};
pub use stack::{BoxFuture, DynBlockDevice};

/// A buffer owned by an I/O request: handed to the device and given back on completion.
pub type IoBuf = Vec<u8>;

/// The result of an owned-buffer operation: the outcome and the buffer, always returned.
pub type BufResult = (Result<(), BlockError>, IoBuf);

/// A range of a backing file that a transport sends straight from the page cache
/// (`sendfile`), instead of the device copying it into a buffer first.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// Keeps the file open while the transport sends, even if the device goes away.
    pub file: Arc<std::fs::File>,
    pub offset: u64,
    pub len: u64,
}

/// One run of bytes with the same allocation state, from [`BlockDevice::allocation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    /// False when the range holds no storage (a hole) and reads as zeros.
    pub mapped: bool,
}

/// Most extents one [`BlockDevice::allocation`] call returns: the answer covers a prefix of
/// the range when it is more fragmented, so a peer asking about a huge range costs a bound.
pub const MAX_ALLOCATION_EXTENTS: usize = 64;

/// Logical block sizes a device may present.
pub const SUPPORTED_BLOCK_SIZES: [u32; 2] = [512, 4096];

/// Block size of a CD/DVD data track (MMC-6 4.2.3); allowed for read-only devices only,
/// which is what a disc image is.
pub const OPTICAL_BLOCK_SIZE: u32 = 2048;

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
    /// Changes the capacity to `new_size` bytes while the device serves (a whole number of
    /// blocks; what a backend allows differs: files grow, block devices re-read their size,
    /// RAM refuses). Callers read [`BlockDevice::num_blocks`] again afterwards.
    fn resize(&self, new_size: u64) -> Result<(), BlockError> {
        let _ = new_size;
        Err(BlockError::new(
            BlockErrorKind::Unsupported,
            "this device cannot change size",
        ))
    }
    /// Reads `buf.len()` bytes at `offset` into `buf`.
    fn read(&self, offset: u64, buf: IoBuf) -> impl Future<Output = BufResult> + Send;
    /// The file range behind a read of `len` bytes at `offset`, when a transport may send it
    /// from the page cache without ever waiting for a device (a file on tmpfs): one copy
    /// less than [`BlockDevice::read`] and none in esos. `Ok(None)`: read into a buffer.
    fn resident_slice(&self, offset: u64, len: u64) -> Result<Option<FileSlice>, BlockError> {
        let _ = (offset, len);
        Ok(None)
    }
    /// Writes all of `buf` at `offset`. With `fua` the data is durable on stable storage
    /// before the future completes (RWF_DSYNC or a following fdatasync).
    fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> impl Future<Output = BufResult> + Send;
    /// [`BlockDevice::read`] into one piece of a split request buffer (`buf.rs`): how a layer
    /// reads one request from several places without a copy. Every esos device overrides
    /// this; the default reads into a bounce buffer and copies.
    fn read_split(
        &self,
        offset: u64,
        mut buf: SplitBuf,
    ) -> impl Future<Output = SplitResult> + Send {
        async move {
            let (r, bounce) = self.read(offset, vec![0; buf.len()]).await;
            if r.is_ok() {
                buf.as_mut_slice().copy_from_slice(&bounce);
            }
            (r, buf)
        }
    }
    /// [`BlockDevice::write`] of a payload that other writers may share (`buf.rs`): how a
    /// layer writes the same data to two devices without a copy. Every esos device overrides
    /// this; the default copies into a bounce buffer.
    fn write_shared(
        &self,
        offset: u64,
        buf: SharedBuf,
        fua: bool,
    ) -> impl Future<Output = SharedResult> + Send {
        async move {
            let (r, _) = self.write(offset, buf.as_slice().to_vec(), fua).await;
            (r, buf)
        }
    }
    /// Makes every completed write durable (fdatasync).
    fn flush(&self) -> impl Future<Output = Result<(), BlockError>> + Send;
    /// True when [`BlockDevice::discard`] releases storage (the device can be thin).
    fn supports_discard(&self) -> bool;
    /// True when discarded ranges read back as zeros (SBC-3 LBPRZ).
    fn discard_zeroes(&self) -> bool;
    /// Releases the storage behind `[offset, offset + len)`. Like a write, it is durable
    /// only after [`BlockDevice::flush`].
    fn discard(&self, offset: u64, len: u64)
    -> impl Future<Output = Result<(), BlockError>> + Send;
    /// Makes `[offset, offset + len)` read as zeros without sending zeros; the range may stay
    /// allocated or not, whatever is cheaper. Durable after [`BlockDevice::flush`].
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<(), BlockError>> + Send;
    /// Allocation state of `[offset, offset + len)`: ascending, adjacent extents starting at
    /// `offset`, block-aligned (a block with any data is mapped), at most
    /// [`MAX_ALLOCATION_EXTENTS`] of them (then covering only a prefix of the range).
    fn allocation(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Vec<Extent>, BlockError>> + Send;
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

/// Every backend, for static dispatch, and stacked devices behind one pointer.
#[derive(Debug)]
pub enum Device {
    /// Regular files and block devices.
    File(FileDevice),
    Ram(RamDevice),
    Null(NullDevice),
    /// A layer over other devices (`stack.rs`): its futures are boxed, the leaves' are not.
    Stacked(Arc<dyn DynBlockDevice>),
}

impl Device {
    /// Opens (or creates) the device that `spec` describes.
    pub fn open(spec: &DeviceSpec) -> Result<Device, BlockError> {
        let optical = spec.read_only && spec.block_size == OPTICAL_BLOCK_SIZE;
        if !SUPPORTED_BLOCK_SIZES.contains(&spec.block_size) && !optical {
            return Err(BlockError::new(
                BlockErrorKind::InvalidConfig,
                format!(
                    "block size {} is not 512 or 4096 (or 2048 read-only)",
                    spec.block_size
                ),
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

// Leaf arms call the concrete `BlockDevice` method (static dispatch, no allocation); the
// stacked arm calls through the object-safe trait.
macro_rules! dispatch {
    ($self:ident, $m:ident($($a:expr),*)) => {
        match $self {
            Device::File(d) => BlockDevice::$m(d, $($a),*),
            Device::Ram(d) => BlockDevice::$m(d, $($a),*),
            Device::Null(d) => BlockDevice::$m(d, $($a),*),
            Device::Stacked(d) => DynBlockDevice::$m(&**d, $($a),*),
        }
    };
}

macro_rules! dispatch_await {
    ($self:ident, $m:ident($($a:expr),*)) => {
        match $self {
            Device::File(d) => BlockDevice::$m(d, $($a),*).await,
            Device::Ram(d) => BlockDevice::$m(d, $($a),*).await,
            Device::Null(d) => BlockDevice::$m(d, $($a),*).await,
            Device::Stacked(d) => DynBlockDevice::$m(&**d, $($a),*).await,
        }
    };
}

impl BlockDevice for Device {
    fn block_size(&self) -> u32 {
        dispatch!(self, block_size())
    }
    fn num_blocks(&self) -> u64 {
        dispatch!(self, num_blocks())
    }
    fn read_only(&self) -> bool {
        dispatch!(self, read_only())
    }
    fn rotational(&self) -> bool {
        dispatch!(self, rotational())
    }
    fn resize(&self, new_size: u64) -> Result<(), BlockError> {
        dispatch!(self, resize(new_size))
    }
    async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        dispatch_await!(self, read(offset, buf))
    }
    fn resident_slice(&self, offset: u64, len: u64) -> Result<Option<FileSlice>, BlockError> {
        dispatch!(self, resident_slice(offset, len))
    }
    async fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BufResult {
        dispatch_await!(self, write(offset, buf, fua))
    }
    async fn read_split(&self, offset: u64, buf: SplitBuf) -> SplitResult {
        dispatch_await!(self, read_split(offset, buf))
    }
    async fn write_shared(&self, offset: u64, buf: SharedBuf, fua: bool) -> SharedResult {
        dispatch_await!(self, write_shared(offset, buf, fua))
    }
    async fn flush(&self) -> Result<(), BlockError> {
        dispatch_await!(self, flush())
    }
    fn supports_discard(&self) -> bool {
        dispatch!(self, supports_discard())
    }
    fn discard_zeroes(&self) -> bool {
        dispatch!(self, discard_zeroes())
    }
    async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        dispatch_await!(self, discard(offset, len))
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        dispatch_await!(self, write_zeroes(offset, len))
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        dispatch_await!(self, allocation(offset, len))
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
    check_range(op, offset, len as u64, block_size, capacity_bytes)
}

/// [`check_io`] for ranges given as a byte count (discard, zeroing, allocation queries).
pub(crate) fn check_range(
    op: &str,
    offset: u64,
    len: u64,
    block_size: u32,
    capacity_bytes: u64,
) -> Result<(), BlockError> {
    let bs = u64::from(block_size);
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

/// Turns raw `(start, end, mapped)` runs (ascending, adjacent, covering `[offset, end)`) into
/// block-aligned extents: a block that holds any mapped byte is mapped, neighbours with the
/// same state merge, and the list stops at [`MAX_ALLOCATION_EXTENTS`].
pub(crate) fn block_extents(
    runs: impl IntoIterator<Item = (u64, u64, bool)>,
    block_size: u32,
) -> Vec<Extent> {
    let bs = u64::from(block_size);
    let mut out: Vec<Extent> = Vec::new();
    // Mapped runs widen to whole blocks; holes shrink, and vanish when inside one block.
    // Runs are adjacent, so a widened mapped run meets the shrunk hole next to it exactly.
    let mut push = |start: u64, end: u64, mapped: bool| {
        let (start, end) = if mapped {
            (start / bs * bs, end.div_ceil(bs) * bs)
        } else {
            (start.div_ceil(bs) * bs, end / bs * bs)
        };
        if let Some(last) = out.last_mut() {
            let last_end = last.offset + last.len;
            let start = start.max(last_end);
            if end <= start {
                return;
            }
            if last.mapped == mapped {
                last.len = end - last.offset;
                return;
            }
            out.push(Extent {
                offset: start,
                len: end - start,
                mapped,
            });
        } else if end > start {
            out.push(Extent {
                offset: start,
                len: end - start,
                mapped,
            });
        }
    };
    for (start, end, mapped) in runs {
        push(start, end, mapped);
    }
    out.truncate(MAX_ALLOCATION_EXTENTS);
    out
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
    // Not a glob: `DynBlockDevice` in scope would make every method call ambiguous.
    use super::{
        Backend, BlockDevice, BlockError, BlockErrorKind, Device, DeviceSpec, Extent,
        MAX_ALLOCATION_EXTENTS, OPTICAL_BLOCK_SIZE, Path, block_extents, check_io, check_size,
    };

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

    #[tokio::test]
    async fn read_only_file_with_optical_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disc.iso");
        let data: Vec<u8> = (0..3 * 2048u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let spec = |read_only| DeviceSpec {
            backend: Backend::File {
                path: path.clone(),
                size_bytes: None,
            },
            block_size: OPTICAL_BLOCK_SIZE,
            read_only,
            rotational: None,
        };
        // 2048-byte blocks are for read-only disc images only.
        assert_eq!(
            Device::open(&spec(false)).unwrap_err().kind(),
            BlockErrorKind::InvalidConfig
        );
        let d = Device::open(&spec(true)).unwrap();
        assert_eq!(
            (d.block_size(), d.num_blocks(), d.read_only()),
            (2048, 3, true)
        );
        let (r, buf) = d.read(2048, vec![0; 2048]).await;
        r.unwrap();
        assert_eq!(&buf[..], &data[2048..4096]);
        let (r, _) = d.write(0, vec![0; 2048], false).await;
        assert!(r.is_err());
    }

    #[test]
    fn block_extents_round_to_blocks() {
        let e = |offset, len, mapped| Extent {
            offset,
            len,
            mapped,
        };
        // Aligned runs pass through.
        let runs = [(0, 4096, true), (4096, 8192, false), (8192, 12288, true)];
        assert_eq!(
            block_extents(runs, 512),
            [e(0, 4096, true), e(4096, 4096, false), e(8192, 4096, true)]
        );
        // A hole edge inside a block: the block counts as mapped.
        let runs = [(0, 1024, true), (1024, 5120, false), (5120, 8192, true)];
        assert_eq!(block_extents(runs, 4096), [e(0, 8192, true)]);
        // A hole smaller than a block vanishes and its neighbours merge.
        let runs = [(0, 1024, true), (1024, 2048, false), (2048, 4096, true)];
        assert_eq!(block_extents(runs, 4096), [e(0, 4096, true)]);
        // Bounded.
        let runs: Vec<_> = (0..1000u64)
            .map(|i| (i * 512, (i + 1) * 512, i % 2 == 0))
            .collect();
        assert_eq!(block_extents(runs, 512).len(), MAX_ALLOCATION_EXTENTS);
    }

    #[tokio::test]
    async fn null_device_is_fully_mapped() {
        let spec = DeviceSpec {
            backend: Backend::Null { size_bytes: 8192 },
            block_size: 512,
            read_only: false,
            rotational: None,
        };
        let d = Device::open(&spec).unwrap();
        assert!(d.supports_discard() && d.discard_zeroes());
        d.discard(0, 8192).await.unwrap();
        d.write_zeroes(512, 512).await.unwrap();
        let ext = d.allocation(512, 1024).await.unwrap();
        assert_eq!(
            ext,
            [Extent {
                offset: 512,
                len: 1024,
                mapped: true
            }]
        );
        assert!(d.discard(8192, 512).await.is_err());
    }
}
