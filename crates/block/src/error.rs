//! The one public error type of the block layer.
//!
//! A [`BlockError`] carries a [`BlockErrorKind`] the front-ends map to their status (SCSI
//! sense data in `esos_scsi::block_status`), a short message with the context (path, offset,
//! length) and, for I/O failures, the OS error.
//!
//! Rule: the kind is decided once, where the OS error is known ([`BlockError::io`] classifies
//! the errno), so no front-end inspects errnos and a stacked layer passes the kind through.

use std::io;

/// What went wrong: exactly the distinctions a front-end must make to choose its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockErrorKind {
    /// The medium failed the operation (EIO and every errno not classified otherwise).
    Io,
    /// The backing store is full (ENOSPC, EDQUOT): a thin device ran out of space. Hosts
    /// should pause rather than retry.
    NoSpace,
    /// A transient condition (ETIMEDOUT, EAGAIN, EBUSY, EINTR, ENOMEM, ENOBUFS): the same
    /// request may succeed when retried.
    Retryable,
    /// The request falls outside the device's capacity.
    OutOfRange,
    /// Offset or length is not a multiple of the logical block size.
    Misaligned,
    /// A write to a device opened read-only, or a backing store that became read-only
    /// (EROFS).
    ReadOnly,
    /// The device description is unusable (bad size, wrong file type, missing path...).
    InvalidConfig,
    /// The backend cannot do what was asked (also EOPNOTSUPP).
    Unsupported,
    /// The device may not serve I/O here and now, though it may elsewhere: a replicated
    /// device that is not primary on this node, lost its quorum or its lease. The host
    /// should try another path or retry after the path states change.
    Unavailable,
}

impl BlockErrorKind {
    /// The kind an OS error stands for. Unknown errnos are medium errors: failing loudly is
    /// safer than inviting a retry that can never succeed.
    pub fn from_io(e: &io::Error) -> BlockErrorKind {
        let Some(errno) = e.raw_os_error() else {
            return match e.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                    BlockErrorKind::NoSpace
                }
                io::ErrorKind::ReadOnlyFilesystem => BlockErrorKind::ReadOnly,
                io::ErrorKind::TimedOut
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::Interrupted
                | io::ErrorKind::ResourceBusy
                | io::ErrorKind::OutOfMemory => BlockErrorKind::Retryable,
                io::ErrorKind::Unsupported => BlockErrorKind::Unsupported,
                _ => BlockErrorKind::Io,
            };
        };
        match errno {
            libc::ENOSPC | libc::EDQUOT => BlockErrorKind::NoSpace,
            libc::EROFS => BlockErrorKind::ReadOnly,
            libc::ETIMEDOUT
            | libc::EAGAIN
            | libc::EBUSY
            | libc::EINTR
            | libc::ENOMEM
            | libc::ENOBUFS => BlockErrorKind::Retryable,
            libc::EOPNOTSUPP => BlockErrorKind::Unsupported,
            _ => BlockErrorKind::Io,
        }
    }
}

/// A block-layer failure: a kind, a message with context and, where there is one, the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BlockError {
    kind: BlockErrorKind,
    message: String,
    #[source]
    source: Option<io::Error>,
}

impl BlockError {
    /// An error without an OS cause.
    pub fn new(kind: BlockErrorKind, message: impl Into<String>) -> Self {
        BlockError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An I/O failure caused by `source`, its kind classified from the OS error
    /// ([`BlockErrorKind::from_io`]).
    pub fn io(message: impl Into<String>, source: io::Error) -> Self {
        Self::with_source(BlockErrorKind::from_io(&source), message, source)
    }

    /// An error of any kind caused by `source`.
    pub fn with_source(
        kind: BlockErrorKind,
        message: impl Into<String>,
        source: io::Error,
    ) -> Self {
        BlockError {
            kind,
            message: message.into(),
            source: Some(source),
        }
    }

    /// Puts `context` (a path) in front of the message.
    pub(crate) fn prefixed(mut self, context: &str) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn kind(&self) -> BlockErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The errno behind an I/O failure (for logs; the kind already says what it means).
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.as_ref().and_then(io::Error::raw_os_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn message_and_source_are_kept_apart() {
        let e = BlockError::io(
            "read /x at 4096",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(e.kind(), BlockErrorKind::NoSpace);
        assert_eq!(e.to_string(), "read /x at 4096");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(e.source().is_some());
        let e = BlockError::new(BlockErrorKind::ReadOnly, "ro");
        assert!(e.source().is_none());
        assert_eq!(e.raw_os_error(), None);
    }

    #[test]
    fn os_errors_are_classified_once() {
        let kind = |errno| BlockError::io("x", io::Error::from_raw_os_error(errno)).kind();
        for (errno, want) in [
            (libc::ENOSPC, BlockErrorKind::NoSpace),
            (libc::EDQUOT, BlockErrorKind::NoSpace),
            (libc::EIO, BlockErrorKind::Io),
            (libc::ENXIO, BlockErrorKind::Io),
            (libc::EROFS, BlockErrorKind::ReadOnly),
            (libc::ETIMEDOUT, BlockErrorKind::Retryable),
            (libc::EAGAIN, BlockErrorKind::Retryable),
            (libc::EBUSY, BlockErrorKind::Retryable),
            (libc::EINTR, BlockErrorKind::Retryable),
            (libc::ENOMEM, BlockErrorKind::Retryable),
            (libc::EOPNOTSUPP, BlockErrorKind::Unsupported),
        ] {
            assert_eq!(kind(errno), want, "errno {errno}");
        }
        // Errors without an errno are classified by their std kind.
        let e = io::Error::new(io::ErrorKind::StorageFull, "full");
        assert_eq!(BlockErrorKind::from_io(&e), BlockErrorKind::NoSpace);
        let e = io::Error::other("lost");
        assert_eq!(BlockErrorKind::from_io(&e), BlockErrorKind::Io);
    }
}
