//! Which I/O engine serves a file or block device: io_uring (`uring.rs`), set up on first
//! use, or the blocking pool (`sync.rs`) when io_uring is unavailable or not wanted.
//!
//! This module sits between `file` and `uring` so neither depends on the other.

use std::fs::File;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::uring::Ring;

/// Set once io_uring setup failed, so later devices go straight to the blocking engine.
static URING_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Which engine runs a device's I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineChoice {
    Sync,
    Uring,
}

impl EngineChoice {
    /// `ESOS_BLOCK_ENGINE=sync|uring` forces an engine (tests, benchmarks); io_uring otherwise.
    pub(crate) fn from_env() -> Self {
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

/// The engine of one [`crate::FileDevice`]: io_uring, created on first use, or the
/// blocking pool.
#[derive(Debug)]
pub(crate) struct Engine {
    choice: EngineChoice,
    file: Arc<File>,
    ring: OnceLock<Option<Ring>>,
}

impl Engine {
    pub(crate) fn new(choice: EngineChoice, file: &Arc<File>) -> Self {
        Engine {
            choice,
            file: Arc::clone(file),
            ring: OnceLock::new(),
        }
    }

    pub(crate) fn uses_uring(&self) -> bool {
        matches!(self.ring.get(), Some(Some(_)))
    }

    /// The ring, set up on first call; `None` means use the blocking engine.
    pub(crate) fn ring(&self) -> Option<&Ring> {
        if self.choice == EngineChoice::Sync {
            return None;
        }
        self.ring
            .get_or_init(|| {
                if URING_UNAVAILABLE.load(Ordering::Relaxed) {
                    return None;
                }
                match Ring::new(&self.file) {
                    Ok(ring) => Some(ring),
                    Err(e) => {
                        if !URING_UNAVAILABLE.swap(true, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "io_uring unavailable; using blocking I/O");
                        }
                        None
                    }
                }
            })
            .as_ref()
    }
}
