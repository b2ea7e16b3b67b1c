//! Regular files and block devices, driven by the io_uring engine or the blocking-pool engine
//! (`engine.rs` chooses). Opening and sizing: `open.rs`; tests: `tests.rs`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::buf::Mem;
use crate::engine::EngineChoice;
use crate::sync::Release;
use crate::{
    BlockDevice, BlockError, BlockErrorKind, BufResult, DeviceSpec, Extent, FileSlice, IoBuf,
    SharedBuf, SharedResult, SplitBuf, SplitResult, check_io, check_range, sync,
};

mod open;
#[cfg(test)]
pub(crate) mod tests;

use open::{config_err, io_err, on_tmpfs};

/// A regular file or a block device.
#[derive(Debug)]
pub struct FileDevice {
    path: PathBuf,
    file: Arc<File>,
    block_size: u32,
    /// Grows live ([`BlockDevice::resize`]); readers see the old or the new size, never a mix.
    size_bytes: std::sync::atomic::AtomicU64,
    read_only: bool,
    rotational: bool,
    /// A block device rather than a regular file: no SEEK_DATA, zero-out instead of holes.
    blockdev: bool,
    /// On tmpfs: data lives in memory and a transfer never waits for a device, so it is done
    /// inline rather than handed to an io_uring worker thread (tmpfs refuses RWF_NOWAIT, so
    /// io_uring punts every request to a worker and wakes the task back: two thread hops
    /// for a memory copy).
    memory_backed: bool,
    engine: crate::engine::Engine,
}

impl FileDevice {
    fn new(
        path: &Path,
        file: File,
        size_bytes: u64,
        spec: &DeviceSpec,
        rotational: bool,
        engine: EngineChoice,
    ) -> Self {
        // A device node on devtmpfs reports tmpfs too: only regular files qualify.
        let memory_backed = file.metadata().is_ok_and(|m| m.is_file()) && on_tmpfs(&file);
        let file = Arc::new(file);
        FileDevice {
            path: path.to_owned(),
            engine: crate::engine::Engine::new(engine, &file),
            file,
            block_size: spec.block_size,
            size_bytes: size_bytes.into(),
            read_only: spec.read_only,
            rotational,
            blockdev: false,
            memory_backed,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when I/O goes through io_uring (known after the first operation).
    pub fn uses_uring(&self) -> bool {
        self.engine.uses_uring()
    }

    fn context(&self, e: BlockError) -> BlockError {
        e.prefixed(&self.path.display().to_string())
    }

    /// Reads into any buffer kind; the engines hold it until the kernel is done.
    async fn read_mem(&self, offset: u64, buf: Mem) -> (Result<(), BlockError>, Mem) {
        if let Err(e) = check_io("read", offset, buf.len(), self.block_size, self.size()) {
            return (Err(self.context(e)), buf);
        }
        if buf.len() == 0 {
            return (Ok(()), buf);
        }
        let (r, buf) = match self.engine.ring() {
            _ if self.memory_backed => sync::read_inline(&self.file, offset, buf),
            Some(ring) => ring.read(offset, buf).await,
            None => sync::read(&self.file, offset, buf).await,
        };
        (r.map_err(|e| self.context(e)), buf)
    }

    /// Writes from any buffer kind; the engines hold it until the kernel is done.
    async fn write_mem(&self, offset: u64, buf: Mem, fua: bool) -> (Result<(), BlockError>, Mem) {
        if self.read_only {
            let e = BlockError::new(BlockErrorKind::ReadOnly, "write to a read-only device");
            return (Err(self.context(e)), buf);
        }
        if let Err(e) = check_io("write", offset, buf.len(), self.block_size, self.size()) {
            return (Err(self.context(e)), buf);
        }
        if buf.len() == 0 {
            // Nothing to write, but FUA still promises what was written before is durable.
            let r = if fua { self.flush().await } else { Ok(()) };
            return (r, buf);
        }
        let (r, buf) = match self.engine.ring() {
            _ if self.memory_backed && !fua => sync::write_inline(&self.file, offset, buf),
            Some(ring) => ring.write(offset, buf, fua).await,
            None => sync::write(&self.file, offset, buf, fua).await,
        };
        (r.map_err(|e| self.context(e)), buf)
    }
}

impl FileDevice {
    fn size(&self) -> u64 {
        self.size_bytes.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl BlockDevice for FileDevice {
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
    /// Grows a regular file to `new_size` bytes (sparse), or re-reads a block device's
    /// size after the admin grew it underneath (`new_size` is then ignored). Shrinking is
    /// refused: initiators would lose data beyond the new end.
    fn resize(&self, new_size: u64) -> Result<(), BlockError> {
        let target = if self.blockdev {
            let dev_bytes = open::blockdev_bytes(&self.file)
                .map_err(|e| io_err(&self.path, "BLKGETSIZE64 failed", e))?;
            dev_bytes - dev_bytes % u64::from(self.block_size)
        } else {
            new_size
        };
        let current = self.size();
        if target < current {
            return Err(config_err(
                &self.path,
                format!("cannot shrink from {current} to {target} bytes"),
            ));
        }
        crate::check_size(&self.path, target, self.block_size)?;
        if !self.blockdev && target > current {
            if self.read_only {
                return Err(self.context(BlockError::new(
                    BlockErrorKind::ReadOnly,
                    "read-only: cannot grow",
                )));
            }
            self.file
                .set_len(target)
                .map_err(|e| io_err(&self.path, "cannot grow", e))?;
        }
        self.size_bytes
            .store(target, std::sync::atomic::Ordering::Release);
        Ok(())
    }
    async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        let (r, buf) = self.read_mem(offset, Mem::Vec(buf)).await;
        (r, buf.into_vec())
    }
    async fn read_split(&self, offset: u64, buf: SplitBuf) -> SplitResult {
        let (r, buf) = self.read_mem(offset, buf.into()).await;
        (r, buf.into_split())
    }
    fn resident_slice(&self, offset: u64, len: u64) -> Result<Option<FileSlice>, BlockError> {
        if !self.memory_backed {
            return Ok(None);
        }
        check_range("read", offset, len, self.block_size, self.size())
            .map_err(|e| self.context(e))?;
        Ok(Some(FileSlice {
            file: self.file.clone(),
            offset,
            len,
        }))
    }
    async fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BufResult {
        let (r, buf) = self.write_mem(offset, Mem::Vec(buf), fua).await;
        (r, buf.into_vec())
    }
    async fn write_shared(&self, offset: u64, buf: SharedBuf, fua: bool) -> SharedResult {
        let (r, buf) = self.write_mem(offset, buf.into(), fua).await;
        (r, buf.into_shared())
    }
    async fn flush(&self) -> Result<(), BlockError> {
        let r = match self.engine.ring() {
            Some(ring) => ring.flush().await,
            None => sync::flush(&self.file).await,
        };
        r.map_err(|e| self.context(e))
    }
    fn supports_discard(&self) -> bool {
        true
    }
    fn discard_zeroes(&self) -> bool {
        // A punched hole reads as zeros; on a block device the zero-out guarantees it.
        true
    }
    // Discard, zeroing and allocation queries run on the blocking pool with either engine:
    // they are rare next to reads and writes, and fallocate/lseek are not worth a ring slot.
    async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.release(Release::Punch, offset, len).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.release(Release::Zero, offset, len).await
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        check_range("allocation", offset, len, self.block_size, self.size())
            .map_err(|e| self.context(e))?;
        if len == 0 {
            return Ok(Vec::new());
        }
        if self.blockdev {
            // A block device does not say what it has allocated.
            return Ok(vec![Extent {
                offset,
                len,
                mapped: true,
            }]);
        }
        sync::allocation(&self.file, offset, len, self.block_size)
            .await
            .map_err(|e| self.context(e))
    }
}

impl FileDevice {
    async fn release(&self, how: Release, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            let e = BlockError::new(BlockErrorKind::ReadOnly, "discard on a read-only device");
            return Err(self.context(e));
        }
        check_range("discard", offset, len, self.block_size, self.size())
            .map_err(|e| self.context(e))?;
        if len == 0 {
            return Ok(());
        }
        sync::release(&self.file, self.blockdev, how, offset, len)
            .await
            .map_err(|e| self.context(e))
    }
}
