//! The portable engine: positional I/O on tokio's blocking thread pool.
//!
//! Used when io_uring is unavailable or forced with `ESOS_BLOCK_ENGINE=sync`. Each operation
//! moves its buffer into the blocking task, so dropping the future never frees memory the
//! thread still uses.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use crate::BlockError;
use crate::buf::Mem;

/// An outcome and the buffer, always returned.
type MemResult = (Result<(), BlockError>, Mem);

/// Runs `f` on the blocking pool; a panicked or cancelled task becomes an I/O error.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    lost: impl FnOnce() -> T,
) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(_) => lost(),
    }
}

/// Reads all of `buf`; bytes past end of file read as zeros (a file never shrinks under us
/// on purpose, but someone else may truncate it).
fn read_full(file: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => {
                buf.fill(0);
                return Ok(());
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) async fn read(file: &Arc<File>, offset: u64, buf: Mem) -> MemResult {
    let file = Arc::clone(file);
    blocking(
        move || read_inline(&file, offset, buf),
        || (Err(lost_task()), Mem::Vec(Vec::new())),
    )
    .await
}

/// A read done on the calling thread: only for memory-backed files, where it is a copy.
pub(crate) fn read_inline(file: &File, offset: u64, mut buf: Mem) -> MemResult {
    let len = buf.len();
    let r = match buf.as_mut_slice() {
        Some(dst) => read_full(file, offset, dst),
        None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    (
        r.map_err(|e| BlockError::io(format!("read at {offset} of {len} bytes"), e)),
        buf,
    )
}

/// A write done on the calling thread: only for memory-backed files, where it is a copy.
pub(crate) fn write_inline(file: &File, offset: u64, buf: Mem) -> MemResult {
    let len = buf.len();
    let r = file.write_all_at(buf.as_slice(), offset);
    (
        r.map_err(|e| BlockError::io(format!("write at {offset} of {len} bytes"), e)),
        buf,
    )
}

pub(crate) async fn write(file: &Arc<File>, offset: u64, buf: Mem, fua: bool) -> MemResult {
    let file = Arc::clone(file);
    let len = buf.len();
    blocking(
        move || {
            let mut r = file.write_all_at(buf.as_slice(), offset);
            if fua && r.is_ok() {
                r = file.sync_data();
            }
            (
                r.map_err(|e| BlockError::io(format!("write at {offset} of {len} bytes"), e)),
                buf,
            )
        },
        || (Err(lost_task()), Mem::Vec(Vec::new())),
    )
    .await
}

pub(crate) async fn flush(file: &Arc<File>) -> Result<(), BlockError> {
    let file = Arc::clone(file);
    blocking(
        move || file.sync_data().map_err(|e| BlockError::io("flush", e)),
        || Err(lost_task()),
    )
    .await
}

/// `BLKZEROOUT` = `_IO(0x12, 127)`: writes zeros over a byte range of a block device
/// (offloaded to the device when it can). Not exported by `libc`.
const BLKZEROOUT: libc::c_ulong = 0x127F;

/// How `[offset, offset + len)` of a file or device is released or zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Deallocate; the range reads as zeros afterwards (fallocate PUNCH_HOLE).
    Punch,
    /// Zero the range, allocation kept where the filesystem can (fallocate ZERO_RANGE).
    Zero,
}

/// One fallocate call, retried on EINTR.
fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    loop {
        // SAFETY: fallocate takes no pointers; the descriptor is open for the call.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, off, n) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// BLKZEROOUT over `[offset, offset + len)` of a block device.
fn blk_zeroout(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKZEROOUT reads two u64s (start, length) through the pointer, which points
    // to a live [u64; 2].
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKZEROOUT, range.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Errors meaning "this filesystem or device cannot do that fallocate mode".
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENODEV)
    )
}

/// Releases or zeroes a range. Regular files: PUNCH_HOLE, or ZERO_RANGE falling back to a
/// punched hole (tmpfs has no ZERO_RANGE). Block devices: fallocate on a block device is a
/// zero-out that may unmap (PUNCH_HOLE) or not (ZERO_RANGE); when the device cannot zero
/// that way, BLKZEROOUT writes the zeros, so a released range always reads as zeros.
fn release_blocking(
    file: &File,
    blockdev: bool,
    how: Release,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    const KEEP: libc::c_int = libc::FALLOC_FL_KEEP_SIZE;
    let punch = KEEP | libc::FALLOC_FL_PUNCH_HOLE;
    let zero = KEEP | libc::FALLOC_FL_ZERO_RANGE;
    let first = match how {
        Release::Punch => punch,
        Release::Zero => zero,
    };
    match fallocate(file, first, offset, len) {
        Err(e) if unsupported(&e) => {
            if blockdev {
                blk_zeroout(file, offset, len)
            } else if how == Release::Zero {
                fallocate(file, punch, offset, len)
            } else {
                Err(e)
            }
        }
        r => r,
    }
}

pub(crate) async fn release(
    file: &Arc<File>,
    blockdev: bool,
    how: Release,
    offset: u64,
    len: u64,
) -> Result<(), BlockError> {
    let file = Arc::clone(file);
    blocking(
        move || {
            release_blocking(&file, blockdev, how, offset, len).map_err(|e| {
                let what = match how {
                    Release::Punch => "discard",
                    Release::Zero => "write zeroes",
                };
                BlockError::io(format!("{what} at {offset} of {len} bytes"), e)
            })
        },
        || Err(lost_task()),
    )
    .await
}

/// One lseek(SEEK_DATA/SEEK_HOLE); `None` for ENXIO (no data at or after `offset`).
fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let Ok(off) = libc::off_t::try_from(offset) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: lseek takes no pointers; the descriptor is open for the call.
    let rc = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if rc >= 0 {
        return Ok(Some(rc as u64));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Raw (start, end, mapped) runs of `[offset, end)` by SEEK_DATA/SEEK_HOLE, at most
/// `2 * MAX_ALLOCATION_EXTENTS` of them. A filesystem without SEEK_DATA reports all data.
fn runs_blocking(file: &File, offset: u64, end: u64) -> io::Result<Vec<(u64, u64, bool)>> {
    let mut runs = Vec::new();
    let mut pos = offset;
    while pos < end && runs.len() < 2 * crate::MAX_ALLOCATION_EXTENTS {
        let data = match seek(file, pos, libc::SEEK_DATA) {
            Ok(d) => d.unwrap_or(end).min(end),
            Err(e) if unsupported(&e) => {
                runs.push((pos, end, true));
                break;
            }
            Err(e) => return Err(e),
        };
        if data > pos {
            runs.push((pos, data, false));
        }
        if data >= end {
            break;
        }
        let hole = seek(file, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        runs.push((data, hole, true));
        pos = hole;
    }
    Ok(runs)
}

pub(crate) async fn allocation(
    file: &Arc<File>,
    offset: u64,
    len: u64,
    block_size: u32,
) -> Result<Vec<crate::Extent>, BlockError> {
    let file = Arc::clone(file);
    blocking(
        move || {
            let runs = runs_blocking(&file, offset, offset + len)
                .map_err(|e| BlockError::io(format!("allocation at {offset} of {len} bytes"), e))?;
            Ok(crate::block_extents(runs, block_size))
        },
        || Err(lost_task()),
    )
    .await
}

fn lost_task() -> BlockError {
    BlockError::io(
        "blocking I/O task was lost",
        io::Error::other("task panicked or was cancelled"),
    )
}
