//! [`PassThrough`]: a stacked device that forwards everything to the device below.
//!
//! It does nothing useful by itself; it is the template for the layers that will (thin
//! volumes, caches, replicas) and the proof that a stack serves like a leaf. A new layer
//! copies its shape:
//! - hold the lower device by value (`D: BlockDevice`, static dispatch; [`crate::Device`]
//!   for "any device") or as `Arc<dyn DynBlockDevice>` when it is shared between layers;
//! - check ranges against its own capacity before forwarding (a layer that remaps offsets
//!   must, or it would touch the wrong blocks of the device below);
//! - hand every buffer back, on success and on failure, and keep error kinds as they are;
//! - forward FUA and flush so a write acknowledged durable is durable at the bottom;
//! - override `read_split` and `write_shared` (the defaults copy through a bounce buffer);
//! - answer `resident_slice` only when its offsets are the lower device's offsets;
//! - forward `resize` or refuse it with an `Unsupported` error naming the layer.
//!
//! Wrap it as `Device::Stacked(Arc::new(PassThrough::new(lower)))` to serve it.
//!
//! [`DynBlockDevice`]: crate::DynBlockDevice

use crate::{
    BlockDevice, BlockError, BufResult, Device, Extent, FileSlice, IoBuf, SharedBuf, SharedResult,
    SplitBuf, SplitResult, check_range,
};

/// Forwards every operation, including FUA, flush, split reads, shared writes, discard,
/// zeroing, allocation queries and resize, to `D`.
#[derive(Debug)]
pub struct PassThrough<D = Device> {
    lower: D,
}

impl<D: BlockDevice> PassThrough<D> {
    pub fn new(lower: D) -> Self {
        PassThrough { lower }
    }

    /// The device below.
    pub fn lower(&self) -> &D {
        &self.lower
    }

    fn capacity_bytes(&self) -> u64 {
        self.lower.num_blocks() * u64::from(self.lower.block_size())
    }

    fn check(&self, op: &str, offset: u64, len: u64) -> Result<(), BlockError> {
        check_range(
            op,
            offset,
            len,
            self.lower.block_size(),
            self.capacity_bytes(),
        )
    }
}

impl<D: BlockDevice> BlockDevice for PassThrough<D> {
    fn block_size(&self) -> u32 {
        self.lower.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.lower.num_blocks()
    }
    fn read_only(&self) -> bool {
        self.lower.read_only()
    }
    fn rotational(&self) -> bool {
        self.lower.rotational()
    }
    fn resize(&self, new_size: u64) -> Result<(), BlockError> {
        self.lower.resize(new_size)
    }
    async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        if let Err(e) = self.check("read", offset, buf.len() as u64) {
            return (Err(e), buf);
        }
        self.lower.read(offset, buf).await
    }
    fn resident_slice(&self, offset: u64, len: u64) -> Result<Option<FileSlice>, BlockError> {
        // Same offsets as the device below, so its file range is this device's range.
        self.check("read", offset, len)?;
        self.lower.resident_slice(offset, len)
    }
    async fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BufResult {
        if let Err(e) = self.check("write", offset, buf.len() as u64) {
            return (Err(e), buf);
        }
        self.lower.write(offset, buf, fua).await
    }
    async fn read_split(&self, offset: u64, buf: SplitBuf) -> SplitResult {
        if let Err(e) = self.check("read", offset, buf.len() as u64) {
            return (Err(e), buf);
        }
        self.lower.read_split(offset, buf).await
    }
    async fn write_shared(&self, offset: u64, buf: SharedBuf, fua: bool) -> SharedResult {
        if let Err(e) = self.check("write", offset, buf.len() as u64) {
            return (Err(e), buf);
        }
        self.lower.write_shared(offset, buf, fua).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        self.lower.flush().await
    }
    fn supports_discard(&self) -> bool {
        self.lower.supports_discard()
    }
    fn discard_zeroes(&self) -> bool {
        self.lower.discard_zeroes()
    }
    async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check("discard", offset, len)?;
        self.lower.discard(offset, len).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check("write zeroes", offset, len)?;
        self.lower.write_zeroes(offset, len).await
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        self.check("allocation", offset, len)?;
        self.lower.allocation(offset, len).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::file::tests::{pattern, spec};
    use crate::{Backend, BlockErrorKind, DeviceSpec};

    fn ram(size_bytes: u64) -> Device {
        Device::open(&DeviceSpec {
            backend: Backend::Ram { size_bytes },
            block_size: 512,
            read_only: false,
            rotational: None,
        })
        .unwrap()
    }

    /// The whole contract through a stacked `Device`.
    async fn exercise(dev: &Device, thin: bool) {
        let bs = u64::from(dev.block_size());
        let size = dev.num_blocks() * bs;
        let data = pattern(5, 64 << 10);
        for fua in [false, true] {
            let (r, back) = dev.write(8 * bs, data.clone(), fua).await;
            r.unwrap();
            assert!(back == data, "the buffer comes back");
        }
        let (r, got) = dev.read(8 * bs, vec![0; data.len()]).await;
        r.unwrap();
        assert!(got == data);
        dev.flush().await.unwrap();
        dev.write_zeroes(8 * bs, bs).await.unwrap();
        let (r, got) = dev.read(8 * bs, vec![0xaa; bs as usize]).await;
        r.unwrap();
        assert!(got.iter().all(|&b| b == 0));
        assert!(dev.supports_discard());
        dev.discard(0, size).await.unwrap();
        let ext = dev.allocation(0, size).await.unwrap();
        assert_eq!(ext.first().map(|e| e.offset), Some(0));
        if thin {
            assert!(ext.iter().all(|e| !e.mapped), "{ext:?}");
        }
        // Range errors keep their kind and hand the buffer back.
        let (r, back) = dev.write(size, vec![1; 512], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::OutOfRange);
        assert_eq!(back.len(), 512);
        let (r, _) = dev.read(1, vec![0; 512]).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Misaligned);
        assert_eq!(
            dev.discard(size, bs).await.unwrap_err().kind(),
            BlockErrorKind::OutOfRange
        );
    }

    #[tokio::test]
    async fn over_ram() {
        let dev = Device::Stacked(Arc::new(PassThrough::new(ram(1 << 20))));
        assert_eq!((dev.block_size(), dev.num_blocks()), (512, 2048));
        exercise(&dev, false).await;
        // RAM refuses to change size; the layer forwards the refusal as it is.
        let e = dev.resize(2 << 20).unwrap_err();
        assert_eq!(e.kind(), BlockErrorKind::Unsupported);
        assert!(e.message().contains("RAM"), "{e}");
    }

    #[tokio::test]
    async fn two_layers_over_a_file_resize_and_serve_the_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lower.img");
        let leaf = Device::open(&spec(&path, Some(1 << 20), 512, false)).unwrap();
        let mid = Device::Stacked(Arc::new(PassThrough::new(leaf)));
        let dev = Device::Stacked(Arc::new(PassThrough::new(mid)));
        exercise(&dev, true).await;
        // Grow through both layers; the capacity is read from the bottom each time.
        dev.resize(2 << 20).unwrap();
        assert_eq!(dev.num_blocks(), 4096);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 << 20);
        let (r, _) = dev.write((2 << 20) - 512, vec![9; 512], true).await;
        r.unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[(2 << 20) - 1], 9);
        // Shrinking is refused by the file, unchanged by the layers.
        let e = dev.resize(1 << 20).unwrap_err();
        assert_eq!(e.kind(), BlockErrorKind::InvalidConfig);
        assert!(e.message().contains("shrink"), "{e}");
    }

    #[tokio::test]
    async fn read_only_and_resident_slices_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.img");
        std::fs::write(&path, pattern(2, 8192)).unwrap();
        let leaf = Device::open(&spec(&path, None, 512, true)).unwrap();
        let dev = PassThrough::new(leaf);
        assert!(dev.read_only());
        let (r, _) = dev.write(0, vec![0; 512], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::ReadOnly);
        assert_eq!(
            dev.discard(0, 512).await.unwrap_err().kind(),
            BlockErrorKind::ReadOnly
        );
        // Not on tmpfs here (or on it): the layer answers what the leaf answers.
        let leaf_answer = dev.lower().resident_slice(0, 4096).unwrap().is_some();
        assert_eq!(dev.resident_slice(0, 4096).unwrap().is_some(), leaf_answer);
        assert!(dev.resident_slice(8192, 512).is_err());
    }
}
