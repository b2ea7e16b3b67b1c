//! Regular files and block devices, driven by the io_uring engine or the blocking-pool engine.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sync::Release;
use crate::{
    BlockDevice, BlockError, BlockErrorKind, BufResult, DeviceSpec, Extent, FileSlice, IoBuf,
    check_io, check_range, sync,
};

/// `BLKGETSIZE64` = `_IOR(0x12, 114, size_t)`: device size in bytes. Not exported by `libc`.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// Which engine runs a device's I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineChoice {
    Sync,
    Uring,
}

impl EngineChoice {
    /// `ESOS_BLOCK_ENGINE=sync|uring` forces an engine (tests, benchmarks); io_uring otherwise.
    fn from_env() -> Self {
        match std::env::var("ESOS_BLOCK_ENGINE").as_deref() {
            Ok("sync") => EngineChoice::Sync,
            Ok("uring") | Err(_) => EngineChoice::Uring,
            Ok(other) => {
                tracing::warn!(
                    value = other,
                    "ESOS_BLOCK_ENGINE is not sync or uring; using uring"
                );
                EngineChoice::Uring
            }
        }
    }
}

/// A regular file or a block device.
#[derive(Debug)]
pub struct FileDevice {
    path: PathBuf,
    file: Arc<File>,
    block_size: u32,
    /// Grows live ([`Self::grow`]); readers see the old or the new size, never a mix.
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
    engine: crate::uring::Engine,
}

/// `statfs` magic of tmpfs.
const TMPFS_MAGIC: libc::c_long = 0x0102_1994;

fn on_tmpfs(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes a whole `statfs` into the pointer on success and nothing on
    // failure; we read it only when it returned 0.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: rc == 0 means the kernel initialised the struct.
    rc == 0 && unsafe { st.assume_init() }.f_type as libc::c_long == TMPFS_MAGIC
}

fn io_err(path: &Path, what: &str, e: io::Error) -> BlockError {
    BlockError::with_source(
        BlockErrorKind::InvalidConfig,
        format!("{}: {what}", path.display()),
        e,
    )
}

fn config_err(path: &Path, what: impl std::fmt::Display) -> BlockError {
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
        let mut dev_bytes: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a live u64.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut dev_bytes as *mut u64) };
        if rc != 0 {
            return Err(io_err(
                path,
                "BLKGETSIZE64 failed",
                io::Error::last_os_error(),
            ));
        }
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
            engine: crate::uring::Engine::new(engine, &file),
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

impl FileDevice {
    fn size(&self) -> u64 {
        self.size_bytes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Grows a regular file to `new_size` bytes (sparse), or re-reads a block device's
    /// size after the admin grew it underneath (`new_size` is then ignored). Shrinking is
    /// refused: initiators would lose data beyond the new end.
    pub fn grow(&self, new_size: u64) -> Result<(), BlockError> {
        let target = if self.blockdev {
            let mut dev_bytes: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a
            // live u64.
            let rc = unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    BLKGETSIZE64,
                    &mut dev_bytes as *mut u64,
                )
            };
            if rc != 0 {
                return Err(io_err(
                    &self.path,
                    "BLKGETSIZE64 failed",
                    io::Error::last_os_error(),
                ));
            }
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
                return Err(config_err(&self.path, "read-only: cannot grow"));
            }
            self.file
                .set_len(target)
                .map_err(|e| io_err(&self.path, "cannot grow", e))?;
        }
        self.size_bytes
            .store(target, std::sync::atomic::Ordering::Release);
        Ok(())
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
    async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        if let Err(e) = check_io("read", offset, buf.len(), self.block_size, self.size()) {
            return (Err(self.context(e)), buf);
        }
        if buf.is_empty() {
            return (Ok(()), buf);
        }
        let (r, buf) = match self.engine.ring() {
            _ if self.memory_backed => sync::read_inline(&self.file, offset, buf),
            Some(ring) => ring.read(offset, buf).await,
            None => sync::read(&self.file, offset, buf).await,
        };
        (r.map_err(|e| self.context(e)), buf)
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
        if self.read_only {
            let e = BlockError::new(BlockErrorKind::ReadOnly, "write to a read-only device");
            return (Err(self.context(e)), buf);
        }
        if let Err(e) = check_io("write", offset, buf.len(), self.block_size, self.size()) {
            return (Err(self.context(e)), buf);
        }
        if buf.is_empty() {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Backend, BlockErrorKind};
    use std::os::unix::fs::MetadataExt;
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Poll;

    pub(crate) const ENGINES: [EngineChoice; 2] = [EngineChoice::Sync, EngineChoice::Uring];

    pub(crate) fn spec(path: &Path, size: Option<u64>, bs: u32, read_only: bool) -> DeviceSpec {
        DeviceSpec {
            backend: Backend::File {
                path: path.to_owned(),
                size_bytes: size,
            },
            block_size: bs,
            read_only,
            rotational: None,
        }
    }

    fn open(path: &Path, size: Option<u64>, bs: u32, engine: EngineChoice) -> FileDevice {
        FileDevice::open_file_with(path, size, &spec(path, size, bs, false), engine).unwrap()
    }

    pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Says once per process when io_uring could not be used, so a green run on a kernel
    /// without it is not mistaken for a tested io_uring engine.
    fn note_engine(dev: &FileDevice, engine: EngineChoice) {
        static NOTED: AtomicBool = AtomicBool::new(false);
        if engine == EngineChoice::Uring
            && !dev.uses_uring()
            && !NOTED.swap(true, Ordering::Relaxed)
        {
            eprintln!("NOTE: io_uring unavailable here; the uring tests ran the blocking engine");
        }
    }

    #[tokio::test]
    async fn round_trip_at_various_offsets() {
        let dir = tempfile::tempdir().unwrap();
        for engine in ENGINES {
            for bs in [512u32, 4096] {
                let path = dir.path().join(format!("rt-{engine:?}-{bs}"));
                let size = 4 << 20;
                let dev = open(&path, Some(size), bs, engine);
                assert_eq!(dev.num_blocks(), size / u64::from(bs));
                let b = u64::from(bs);
                let cases = [
                    (0, b),
                    (b, 2 * b),
                    (1 << 20, 300 << 10),
                    (size - 8 * b, 8 * b),
                ];
                for (i, &(off, len)) in cases.iter().enumerate() {
                    let data = pattern(i as u64 + 1, len as usize);
                    let (r, back) = dev.write(off, data.clone(), i % 2 == 0).await;
                    r.unwrap();
                    assert_eq!(back, data, "write returns the buffer");
                    let (r, got) = dev.read(off, vec![0xaa; len as usize]).await;
                    r.unwrap();
                    assert!(got == data, "{engine:?} bs {bs} offset {off}");
                }
                // Untouched space reads as zeros.
                let (r, got) = dev.read(2 << 20, vec![0xaa; 4096]).await;
                r.unwrap();
                assert!(got.iter().all(|&x| x == 0));
                dev.flush().await.unwrap();
                // Empty transfers are no-ops.
                let (r, _) = dev.read(size, Vec::new()).await;
                r.unwrap();
                let (r, _) = dev.write(0, Vec::new(), true).await;
                r.unwrap();
                note_engine(&dev, engine);
            }
        }
    }

    #[tokio::test]
    async fn range_and_alignment_rejected_without_touching_data() {
        let dir = tempfile::tempdir().unwrap();
        for engine in ENGINES {
            let path = dir.path().join(format!("range-{engine:?}"));
            let dev = open(&path, Some(64 << 10), 4096, engine);
            let (r, _) = dev.write(0, vec![5; 64 << 10], false).await;
            r.unwrap();
            let kind = |r: Result<(), BlockError>| r.unwrap_err().kind();
            let (r, _) = dev.write(60 << 10, vec![1; 8192], false).await;
            assert_eq!(kind(r), BlockErrorKind::OutOfRange);
            let (r, _) = dev.read(64 << 10, vec![0; 4096]).await;
            assert_eq!(kind(r), BlockErrorKind::OutOfRange);
            let (r, _) = dev.read(u64::MAX - 4095, vec![0; 8192]).await;
            assert_eq!(kind(r), BlockErrorKind::OutOfRange);
            let (r, _) = dev.write(512, vec![1; 4096], false).await;
            assert_eq!(kind(r), BlockErrorKind::Misaligned);
            let (r, _) = dev.write(0, vec![1; 4000], false).await;
            assert_eq!(kind(r), BlockErrorKind::Misaligned);
            let (r, got) = dev.read(0, vec![0; 64 << 10]).await;
            r.unwrap();
            assert!(got.iter().all(|&x| x == 5));
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 << 10);
        }
    }

    #[tokio::test]
    async fn read_only_rejects_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, pattern(3, 8192)).unwrap();
        for engine in ENGINES {
            let s = spec(&path, None, 512, true);
            let dev = FileDevice::open_file_with(&path, None, &s, engine).unwrap();
            assert!(dev.read_only());
            let (r, _) = dev.write(0, vec![0; 512], false).await;
            let e = r.unwrap_err();
            assert_eq!(e.kind(), BlockErrorKind::ReadOnly);
            assert!(e.message().contains("ro"), "{e}");
            let (r, got) = dev.read(0, vec![0; 8192]).await;
            r.unwrap();
            assert_eq!(got, pattern(3, 8192));
        }
        // A read-only device is not created.
        let missing = dir.path().join("missing");
        let s = spec(&missing, Some(4096), 512, true);
        assert!(FileDevice::open_file(&missing, Some(4096), &s).is_err());
        assert!(!missing.exists());
    }

    #[tokio::test]
    async fn tmpfs_files_are_served_inline_and_correctly() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() || !on_tmpfs(&File::open(shm).unwrap()) {
            eprintln!("skipped: /dev/shm is not a tmpfs here");
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        let dev = open(
            &dir.path().join("t.img"),
            Some(1 << 20),
            512,
            EngineChoice::Uring,
        );
        assert!(dev.memory_backed);
        let data = pattern(7, 8192);
        let (r, _) = dev.write(4096, data.clone(), false).await;
        r.unwrap();
        let (r, back) = dev.read(4096, vec![0; 8192]).await;
        r.unwrap();
        assert_eq!(back, data);
        // A transport may send the range from the page cache itself: same file, same bytes.
        let s = dev
            .resident_slice(4096, 8192)
            .unwrap()
            .expect("tmpfs is resident");
        assert_eq!((s.offset, s.len), (4096, 8192));
        let mut sent = vec![0; 8192];
        std::os::unix::fs::FileExt::read_exact_at(&*s.file, &mut sent, s.offset).unwrap();
        assert!(sent == data, "the file holds what was written");
        // The same bounds as a read.
        assert!(dev.resident_slice(1 << 20, 512).is_err());
        assert!(dev.resident_slice(100, 512).is_err());
        // FUA still goes through the durable path.
        let (r, _) = dev.write(0, data.clone(), true).await;
        r.unwrap();
        // Regular files elsewhere and device nodes on devtmpfs are not memory-backed.
        let other = tempfile::tempdir().unwrap();
        if !on_tmpfs(&File::open(other.path()).unwrap()) {
            let dev = open(
                &other.path().join("d.img"),
                Some(1 << 20),
                512,
                EngineChoice::Uring,
            );
            assert!(!dev.memory_backed);
            assert!(dev.resident_slice(0, 512).unwrap().is_none());
        }
    }

    #[test]
    fn created_sparse_in_a_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/sparse.img");
        let dev = open(&path, Some(1 << 30), 4096, EngineChoice::Sync);
        assert_eq!(dev.num_blocks(), (1 << 30) / 4096);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        // st_blocks counts 512-byte units; a sparse file has (almost) none.
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "allocated {} blocks",
            meta.blocks()
        );
    }

    #[test]
    fn size_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("size");
        let err = |size: Option<u64>, bs: u32| {
            FileDevice::open_file(&path, size, &spec(&path, size, bs, false)).unwrap_err()
        };
        // Not a multiple of the block size, or zero: rejected, naming the path.
        let e = err(Some(4096 + 512), 4096);
        assert_eq!(e.kind(), BlockErrorKind::InvalidConfig);
        assert!(e.message().contains("size"), "{e}");
        assert!(e.message().contains(path.to_str().unwrap()), "{e}");
        assert_eq!(err(Some(0), 512).kind(), BlockErrorKind::InvalidConfig);
        // Missing file without a size: cannot be created.
        assert_eq!(err(None, 512).kind(), BlockErrorKind::InvalidConfig);
        // Existing file of an odd size without a configured size.
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        assert_eq!(err(None, 512).kind(), BlockErrorKind::InvalidConfig);
        // Empty existing file without a size.
        std::fs::write(&path, []).unwrap();
        assert_eq!(err(None, 512).kind(), BlockErrorKind::InvalidConfig);
        // The file's size is used when none is configured.
        std::fs::write(&path, vec![1u8; 8192]).unwrap();
        let dev = open(&path, None, 4096, EngineChoice::Sync);
        assert_eq!(dev.num_blocks(), 2);
        // A smaller file is extended, keeping its data.
        let dev = open(&path, Some(1 << 20), 512, EngineChoice::Sync);
        assert_eq!(dev.num_blocks(), 2048);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        assert_eq!(&std::fs::read(&path).unwrap()[..8192], &[1u8; 8192][..]);
        // A larger file exports only the configured size and is not truncated.
        let dev = open(&path, Some(8192), 512, EngineChoice::Sync);
        assert_eq!(dev.num_blocks(), 16);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        // A directory is not a regular file.
        let e = FileDevice::open_file(dir.path(), Some(4096), &spec(dir.path(), None, 512, false))
            .unwrap_err();
        assert_eq!(e.kind(), BlockErrorKind::InvalidConfig);
    }

    #[tokio::test]
    async fn fua_write_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        for engine in ENGINES {
            let path = dir.path().join(format!("fua-{engine:?}"));
            let data = pattern(11, 128 << 10);
            {
                let dev = open(&path, Some(1 << 20), 512, engine);
                let (r, _) = dev.write(4096, data.clone(), true).await;
                r.unwrap();
                let (r, _) = dev.write(512 << 10, data.clone(), false).await;
                r.unwrap();
                dev.flush().await.unwrap();
            }
            let dev = open(&path, None, 512, engine);
            assert_eq!(dev.num_blocks(), 2048);
            for off in [4096, 512 << 10] {
                let (r, got) = dev.read(off, vec![0; data.len()]).await;
                r.unwrap();
                assert!(got == data);
            }
        }
    }

    #[tokio::test]
    async fn reads_past_a_truncated_end_are_zeros() {
        let dir = tempfile::tempdir().unwrap();
        for engine in ENGINES {
            let path = dir.path().join(format!("trunc-{engine:?}"));
            let dev = open(&path, Some(1 << 20), 512, engine);
            let (r, _) = dev.write(0, vec![7; 1 << 20], false).await;
            r.unwrap();
            // Someone else shrinks the file under the device.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(4096)
                .unwrap();
            let (r, got) = dev.read(0, vec![0xaa; 256 << 10]).await;
            r.unwrap();
            assert!(got[..4096].iter().all(|&x| x == 7));
            assert!(got[4096..].iter().all(|&x| x == 0));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_ops_are_all_correct() {
        let dir = tempfile::tempdir().unwrap();
        for engine in ENGINES {
            let path = dir.path().join(format!("conc-{engine:?}"));
            const OPS: u64 = 512; // twice the queue depth: exercises waiting for a slot
            const LEN: u64 = 8192;
            let dev = Arc::new(open(&path, Some(OPS * LEN), 512, engine));
            let mut tasks = Vec::new();
            for i in 0..OPS {
                let dev = Arc::clone(&dev);
                tasks.push(tokio::spawn(async move {
                    let (r, _) = dev
                        .write(i * LEN, pattern(i, LEN as usize), i % 7 == 0)
                        .await;
                    r.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let mut tasks = Vec::new();
            for i in 0..OPS {
                let dev = Arc::clone(&dev);
                tasks.push(tokio::spawn(async move {
                    let (r, got) = dev.read(i * LEN, vec![0; LEN as usize]).await;
                    r.unwrap();
                    assert!(got == pattern(i, LEN as usize), "block {i}");
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            if let Some(ring) = dev.engine.ring() {
                assert_eq!(ring.in_flight(), 0);
            }
            note_engine(&dev, engine);
        }
    }

    /// Polls `fut` once, then drops it: a request cancelled while the kernel may hold it.
    async fn poll_once_then_drop<F: Future>(fut: F) {
        let mut fut = pin!(fut);
        std::future::poll_fn(|cx| {
            let _ = fut.as_mut().poll(cx);
            Poll::Ready(())
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_ops_leave_the_device_usable() {
        let dir = tempfile::tempdir().unwrap();
        for engine in ENGINES {
            let path = dir.path().join(format!("cancel-{engine:?}"));
            let size = 8 << 20;
            let dev = open(&path, Some(size), 4096, engine);
            let data = pattern(1, size as usize);
            let (r, _) = dev.write(0, data.clone(), false).await;
            r.unwrap();
            dev.flush().await.unwrap();
            for i in 0..64u64 {
                let off = (i % 8) << 20;
                if i % 8 == 0 {
                    // Evict the file from the page cache so reads really go to the disk
                    // and are still in the kernel when cancelled.
                    // SAFETY: fadvise takes no pointers; the descriptor is open.
                    unsafe {
                        libc::posix_fadvise(dev.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
                    };
                }
                let chunk = data[off as usize..][..1 << 20].to_vec();
                match i % 4 {
                    0 | 1 => poll_once_then_drop(dev.read(off, vec![0; 1 << 20])).await,
                    2 => poll_once_then_drop(dev.write(off, chunk, true)).await,
                    _ => poll_once_then_drop(dev.flush()).await,
                }
            }
            let (r, got) = dev.read(0, vec![0; size as usize]).await;
            r.unwrap();
            assert!(got == data);
            if let Some(ring) = dev.engine.ring() {
                // Orphaned slots are reclaimed as their completions arrive.
                for _ in 0..500 {
                    if ring.in_flight() == 0 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                assert_eq!(ring.in_flight(), 0);
                assert!(ring.orphaned() > 0, "no request was cancelled in flight");
            }
            // Dropping the device with cancelled requests outstanding waits for them.
            // SAFETY: fadvise takes no pointers; the descriptor is open.
            unsafe { libc::posix_fadvise(dev.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            for _ in 0..16 {
                poll_once_then_drop(dev.read(0, vec![0; 1 << 20])).await;
            }
            drop(dev);
        }
    }

    #[test]
    fn device_outlives_its_first_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtimes");
        let dev = open(&path, Some(1 << 20), 512, EngineChoice::Uring);
        for round in 0..3u64 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (r, _) = dev.write(round * 4096, pattern(round, 4096), false).await;
                r.unwrap();
                let (r, got) = dev.read(round * 4096, vec![0; 4096]).await;
                r.unwrap();
                assert!(got == pattern(round, 4096));
            });
        }
    }

    #[test]
    fn uring_engine_is_used_when_available() {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|s| s.trim() != "0")
            .unwrap_or(false);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine");
        let dev = open(&path, Some(4096), 512, EngineChoice::Uring);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (r, _) = dev.read(0, vec![0; 512]).await;
            r.unwrap();
        });
        if disabled {
            eprintln!("NOTE: io_uring disabled by sysctl; fallback checked instead");
            assert!(!dev.uses_uring());
        } else {
            assert!(dev.uses_uring());
        }
        let dev = open(&path, Some(4096), 512, EngineChoice::Sync);
        assert!(!dev.uses_uring());
    }

    /// Discard, zeroing and allocation on the filesystem that holds `dir`.
    pub(crate) async fn exercise_thin(dir: &Path, engine: EngineChoice) {
        let path = dir.join(format!("thin-{engine:?}"));
        let size: u64 = 8 << 20;
        let dev = open(&path, Some(size), 512, engine);
        assert!(dev.supports_discard() && dev.discard_zeroes());
        // A new sparse file is one unmapped extent.
        let ext = dev.allocation(0, size).await.unwrap();
        assert_eq!(
            ext,
            [Extent {
                offset: 0,
                len: size,
                mapped: false
            }]
        );
        let (r, _) = dev.write(0, pattern(1, 4 << 20), false).await;
        r.unwrap();
        dev.flush().await.unwrap();
        // Punch 1 MiB in the middle: reads zeros, reported as a hole.
        dev.discard(1 << 20, 1 << 20).await.unwrap();
        let (r, got) = dev.read(0, vec![0xaa; 4 << 20]).await;
        r.unwrap();
        let want = pattern(1, 4 << 20);
        assert!(got[..1 << 20] == want[..1 << 20]);
        assert!(got[1 << 20..2 << 20].iter().all(|&b| b == 0));
        assert!(got[2 << 20..] == want[2 << 20..]);
        let ext = dev.allocation(0, size).await.unwrap();
        let at = |off: u64| {
            ext.iter()
                .find(|e| e.offset <= off && off < e.offset + e.len)
        };
        assert!(at(0).unwrap().mapped, "{ext:?}");
        assert!(!at(1 << 20).unwrap().mapped, "{ext:?}");
        assert!(!at((2 << 20) - 512).unwrap().mapped, "{ext:?}");
        assert!(at(2 << 20).unwrap().mapped, "{ext:?}");
        assert!(!at(size - 512).unwrap().mapped, "{ext:?}");
        // Extents are adjacent, start at the query and cover it.
        assert_eq!(ext[0].offset, 0);
        assert!(
            ext.windows(2)
                .all(|w| w[0].offset + w[0].len == w[1].offset)
        );
        assert_eq!(ext.last().map(|e| e.offset + e.len), Some(size));
        // A query starting inside a mapped run starts there.
        let ext = dev.allocation(3 << 20, 512).await.unwrap();
        assert_eq!(
            ext,
            [Extent {
                offset: 3 << 20,
                len: 512,
                mapped: true
            }]
        );
        // A sub-filesystem-block discard still zeroes exactly its blocks.
        dev.discard(512, 1024).await.unwrap();
        let (r, got) = dev.read(0, vec![0xaa; 4096]).await;
        r.unwrap();
        assert!(got[..512] == want[..512]);
        assert!(got[512..1536].iter().all(|&b| b == 0));
        assert!(got[1536..] == want[1536..4096]);
        // Write zeroes: reads zeros, neighbours intact.
        dev.write_zeroes(3 << 20, 8192).await.unwrap();
        let (r, got) = dev.read((3 << 20) - 512, vec![0xaa; 9216]).await;
        r.unwrap();
        assert!(got[..512] == want[(3 << 20) - 512..3 << 20]);
        assert!(got[512..8704].iter().all(|&b| b == 0));
        assert!(got[8704..] == want[(3 << 20) + 8192..(3 << 20) + 8704]);
        // Range and alignment are checked; nothing is touched.
        let kind = |r: Result<(), BlockError>| r.unwrap_err().kind();
        assert_eq!(
            kind(dev.discard(size, 512).await),
            BlockErrorKind::OutOfRange
        );
        assert_eq!(
            kind(dev.discard(100, 512).await),
            BlockErrorKind::Misaligned
        );
        assert_eq!(
            kind(dev.write_zeroes(size - 512, 1024).await),
            BlockErrorKind::OutOfRange
        );
        assert!(dev.allocation(size, 512).await.is_err());
        dev.discard(0, 0).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        drop(dev);
        // Read-only devices refuse.
        let s = spec(&path, None, 512, true);
        let ro = FileDevice::open_file_with(&path, None, &s, engine).unwrap();
        assert_eq!(kind(ro.discard(0, 512).await), BlockErrorKind::ReadOnly);
        assert_eq!(
            kind(ro.write_zeroes(0, 512).await),
            BlockErrorKind::ReadOnly
        );
    }

    #[tokio::test]
    async fn discard_zeroes_and_allocation() {
        let dir = tempfile::tempdir().unwrap();
        for engine in ENGINES {
            exercise_thin(dir.path(), engine).await;
        }
        // tmpfs as well, when there is one.
        let shm = Path::new("/dev/shm");
        if shm.is_dir()
            && let Ok(dir) = tempfile::tempdir_in(shm)
        {
            for engine in ENGINES {
                exercise_thin(dir.path(), engine).await;
            }
        }
    }
}
