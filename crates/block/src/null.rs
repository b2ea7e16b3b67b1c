//! The null backend: reads return zeros, writes are discarded. For benchmarks of the
//! transport and SCSI layers without any storage cost.

use std::path::Path;

use crate::{
    BlockDevice, BlockError, BlockErrorKind, BufResult, DeviceSpec, Extent, IoBuf, SharedBuf,
    SharedResult, SplitBuf, SplitResult, check_io, check_range,
};

#[derive(Debug)]
pub struct NullDevice {
    block_size: u32,
    /// Changes live ([`BlockDevice::resize`]); readers see the old or the new size, never a mix.
    size_bytes: std::sync::atomic::AtomicU64,
    read_only: bool,
    rotational: bool,
}

impl NullDevice {
    pub fn new(size_bytes: u64, spec: &DeviceSpec) -> Result<Self, BlockError> {
        crate::check_size(Path::new("null"), size_bytes, spec.block_size)?;
        Ok(NullDevice {
            block_size: spec.block_size,
            size_bytes: size_bytes.into(),
            read_only: spec.read_only,
            rotational: spec.rotational.unwrap_or(false),
        })
    }
}

impl NullDevice {
    fn size(&self) -> u64 {
        self.size_bytes.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl BlockDevice for NullDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.size() / u64::from(self.block_size)
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn rotational(&self) -> bool {
        self.rotational
    }
    /// Changes the size (a null device holds nothing, so shrinking loses nothing either).
    fn resize(&self, new_size: u64) -> Result<(), BlockError> {
        crate::check_size(Path::new("null"), new_size, self.block_size)?;
        self.size_bytes
            .store(new_size, std::sync::atomic::Ordering::Release);
        Ok(())
    }
    async fn read(&self, offset: u64, mut buf: IoBuf) -> BufResult {
        if let Err(e) = check_io("read", offset, buf.len(), self.block_size, self.size()) {
            return (Err(e), buf);
        }
        buf.fill(0);
        (Ok(()), buf)
    }
    async fn write(&self, offset: u64, buf: IoBuf, _fua: bool) -> BufResult {
        if self.read_only {
            return (
                Err(BlockError::new(
                    BlockErrorKind::ReadOnly,
                    "null device is read-only",
                )),
                buf,
            );
        }
        let r = check_io("write", offset, buf.len(), self.block_size, self.size());
        (r, buf)
    }
    async fn read_split(&self, offset: u64, mut buf: SplitBuf) -> SplitResult {
        if let Err(e) = check_io("read", offset, buf.len(), self.block_size, self.size()) {
            return (Err(e), buf);
        }
        buf.as_mut_slice().fill(0);
        (Ok(()), buf)
    }
    async fn write_shared(&self, offset: u64, buf: SharedBuf, _fua: bool) -> SharedResult {
        if self.read_only {
            let e = BlockError::new(BlockErrorKind::ReadOnly, "null device is read-only");
            return (Err(e), buf);
        }
        let r = check_io("write", offset, buf.len(), self.block_size, self.size());
        (r, buf)
    }
    async fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }
    fn supports_discard(&self) -> bool {
        true
    }
    fn discard_zeroes(&self) -> bool {
        true
    }
    async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check_writable("discard", offset, len)
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check_writable("write zeroes", offset, len)
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        check_range("allocation", offset, len, self.block_size, self.size())?;
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![Extent {
            offset,
            len,
            mapped: true,
        }])
    }
}

impl NullDevice {
    fn check_writable(&self, op: &str, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::new(
                BlockErrorKind::ReadOnly,
                format!("null: {op} on a read-only device"),
            ));
        }
        check_range(op, offset, len, self.block_size, self.size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    fn spec(read_only: bool) -> DeviceSpec {
        DeviceSpec {
            backend: Backend::Null { size_bytes: 8192 },
            block_size: 512,
            read_only,
            rotational: None,
        }
    }

    #[tokio::test]
    async fn reads_zeros_and_discards_writes() {
        let d = NullDevice::new(8192, &spec(false)).unwrap();
        assert_eq!(d.num_blocks(), 16);
        let (r, _) = d.write(0, vec![7; 512], true).await;
        r.unwrap();
        let (r, buf) = d.read(0, vec![9; 1024]).await;
        r.unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        let (r, _) = d.read(8192, vec![0; 512]).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::OutOfRange);
        let (r, _) = d.write(3, vec![0; 512], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::Misaligned);
        d.flush().await.unwrap();
    }

    #[tokio::test]
    async fn read_only_rejects_writes() {
        let d = NullDevice::new(8192, &spec(true)).unwrap();
        let (r, _) = d.write(0, vec![0; 512], false).await;
        assert_eq!(r.unwrap_err().kind(), BlockErrorKind::ReadOnly);
    }

    #[test]
    fn size_rules() {
        assert!(NullDevice::new(0, &spec(false)).is_err());
        assert!(NullDevice::new(1000, &spec(false)).is_err());
    }
}
