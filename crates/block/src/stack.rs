//! Stacked devices: layers that hold other devices (thin volumes over a pool, a cache over an
//! origin, a replica over a local device and its peers).
//!
//! Rules:
//! - A layer is written as an ordinary [`BlockDevice`] (native `async fn`, static dispatch
//!   to the device it holds, which may be a concrete backend or a [`Device`]). It becomes
//!   object-safe through the blanket [`DynBlockDevice`] impl, which boxes each future: one
//!   allocation per I/O, paid only at a [`Device::Stacked`] boundary. The leaf arms of
//!   [`Device`] never box.
//! - Buffers stay owned until completion, exactly as for a leaf: a layer hands the buffer it
//!   was given down and hands back the one it gets back (see `uring.rs` for why a buffer the
//!   kernel may still write must never be freed or reused). A layer that splits or shares a
//!   payload does it through `buf.rs`, without copying.
//! - Errors pass through unchanged: the kind was decided where the OS error was known
//!   (`error.rs`). A layer adds context to the message, never a different kind.
//! - Capacity is read from the device each time ([`BlockDevice::num_blocks`]); a layer
//!   either forwards [`BlockDevice::resize`] or refuses it with [`BlockErrorKind::Unsupported`]
//!   and a message that says which layer refused.
//!
//! [`crate::PassThrough`] is the template for new layers.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use crate::{
    BlockDevice, BlockError, BufResult, Extent, FileSlice, IoBuf, SharedBuf, SharedResult,
    SplitBuf, SplitResult,
};
#[cfg(doc)]
use crate::{BlockErrorKind, Device};

/// A boxed, sendable future borrowing the device: what an object-safe device returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe twin of [`BlockDevice`], for devices held as `Arc<dyn DynBlockDevice>`.
/// Every [`BlockDevice`] that is `Debug` is one; see [`BlockDevice`] for the meaning, units
/// and bounds of each method.
pub trait DynBlockDevice: Send + Sync + Debug {
    fn block_size(&self) -> u32;
    fn num_blocks(&self) -> u64;
    fn read_only(&self) -> bool;
    fn rotational(&self) -> bool;
    fn resize(&self, new_size: u64) -> Result<(), BlockError>;
    fn read(&self, offset: u64, buf: IoBuf) -> BoxFuture<'_, BufResult>;
    fn resident_slice(&self, offset: u64, len: u64) -> Result<Option<FileSlice>, BlockError>;
    fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BoxFuture<'_, BufResult>;
    fn read_split(&self, offset: u64, buf: SplitBuf) -> BoxFuture<'_, SplitResult>;
    fn write_shared(&self, offset: u64, buf: SharedBuf, fua: bool) -> BoxFuture<'_, SharedResult>;
    fn flush(&self) -> BoxFuture<'_, Result<(), BlockError>>;
    fn supports_discard(&self) -> bool;
    fn discard_zeroes(&self) -> bool;
    fn discard(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<(), BlockError>>;
    fn write_zeroes(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<(), BlockError>>;
    fn allocation(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<Vec<Extent>, BlockError>>;
}

impl<T: BlockDevice + Debug> DynBlockDevice for T {
    fn block_size(&self) -> u32 {
        BlockDevice::block_size(self)
    }
    fn num_blocks(&self) -> u64 {
        BlockDevice::num_blocks(self)
    }
    fn read_only(&self) -> bool {
        BlockDevice::read_only(self)
    }
    fn rotational(&self) -> bool {
        BlockDevice::rotational(self)
    }
    fn resize(&self, new_size: u64) -> Result<(), BlockError> {
        BlockDevice::resize(self, new_size)
    }
    fn read(&self, offset: u64, buf: IoBuf) -> BoxFuture<'_, BufResult> {
        Box::pin(BlockDevice::read(self, offset, buf))
    }
    fn resident_slice(&self, offset: u64, len: u64) -> Result<Option<FileSlice>, BlockError> {
        BlockDevice::resident_slice(self, offset, len)
    }
    fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BoxFuture<'_, BufResult> {
        Box::pin(BlockDevice::write(self, offset, buf, fua))
    }
    fn read_split(&self, offset: u64, buf: SplitBuf) -> BoxFuture<'_, SplitResult> {
        Box::pin(BlockDevice::read_split(self, offset, buf))
    }
    fn write_shared(&self, offset: u64, buf: SharedBuf, fua: bool) -> BoxFuture<'_, SharedResult> {
        Box::pin(BlockDevice::write_shared(self, offset, buf, fua))
    }
    fn flush(&self) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(BlockDevice::flush(self))
    }
    fn supports_discard(&self) -> bool {
        BlockDevice::supports_discard(self)
    }
    fn discard_zeroes(&self) -> bool {
        BlockDevice::discard_zeroes(self)
    }
    fn discard(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(BlockDevice::discard(self, offset, len))
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(BlockDevice::write_zeroes(self, offset, len))
    }
    fn allocation(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<Vec<Extent>, BlockError>> {
        Box::pin(BlockDevice::allocation(self, offset, len))
    }
}
