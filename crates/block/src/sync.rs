//! The portable engine: positional I/O on tokio's blocking thread pool.
//!
//! Used when io_uring is unavailable or forced with `ESOS_BLOCK_ENGINE=sync`. Each operation
//! moves its buffer into the blocking task, so dropping the future never frees memory the
//! thread still uses.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::{BlockError, BufResult, IoBuf};

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

pub(crate) async fn read(file: &Arc<File>, offset: u64, buf: IoBuf) -> BufResult {
    let file = Arc::clone(file);
    let len = buf.len();
    blocking(
        move || {
            let mut buf = buf;
            let r = read_full(&file, offset, &mut buf);
            (
                r.map_err(|e| BlockError::io(format!("read at {offset} of {len} bytes"), e)),
                buf,
            )
        },
        || (Err(lost_task()), Vec::new()),
    )
    .await
}

pub(crate) async fn write(file: &Arc<File>, offset: u64, buf: IoBuf, fua: bool) -> BufResult {
    let file = Arc::clone(file);
    let len = buf.len();
    blocking(
        move || {
            let mut r = file.write_all_at(&buf, offset);
            if fua && r.is_ok() {
                r = file.sync_data();
            }
            (
                r.map_err(|e| BlockError::io(format!("write at {offset} of {len} bytes"), e)),
                buf,
            )
        },
        || (Err(lost_task()), Vec::new()),
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

fn lost_task() -> BlockError {
    BlockError::io(
        "blocking I/O task was lost",
        io::Error::other("task panicked or was cancelled"),
    )
}
