//! The one public error type of the block layer.
//!
//! A [`BlockError`] carries a [`BlockErrorKind`] the SCSI layer maps to sense data, a short
//! message with the context (path, offset, length) and, for I/O failures, the OS error.

use std::io;

/// What went wrong, coarse enough for the SCSI layer to choose sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockErrorKind {
    /// The operating system failed the operation (medium error, ENOSPC, EIO...).
    Io,
    /// The request falls outside the device's capacity.
    OutOfRange,
    /// Offset or length is not a multiple of the logical block size.
    Misaligned,
    /// A write to a device opened read-only.
    ReadOnly,
    /// The device description is unusable (bad size, wrong file type, missing path...).
    InvalidConfig,
    /// The backend cannot do what was asked.
    Unsupported,
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

    /// A [`BlockErrorKind::Io`] error caused by `source`.
    pub fn io(message: impl Into<String>, source: io::Error) -> Self {
        Self::with_source(BlockErrorKind::Io, message, source)
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

    /// The errno behind an I/O failure, so callers can tell ENOSPC (thin provisioning
    /// exhausted) from EIO (medium error).
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
        assert_eq!(e.kind(), BlockErrorKind::Io);
        assert_eq!(e.to_string(), "read /x at 4096");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(e.source().is_some());
        let e = BlockError::new(BlockErrorKind::ReadOnly, "ro");
        assert!(e.source().is_none());
        assert_eq!(e.raw_os_error(), None);
    }
}
