//! The direct-access (disk) device handler: what each SBC-3/SPC-4 command does.
//!
//! Layering: the handlers take a [`crate::LogicalUnit`] (`unit.rs`) and read or change its
//! state (`state/`); they never call the engine (`engine.rs`), which calls
//! [`dispatch::execute`] once a command's turn has come. Their CDBs are decoded before
//! that, in `cdb/`.
//!
//! Folder map: `dispatch.rs` routes a decoded CDB to the others (and holds the sanitize
//! gate the engine consults at admission), `inquiry.rs` standard INQUIRY, `vpd.rs` VPD
//! pages, `mode.rs` MODE SENSE / MODE SELECT, `capacity.rs` READ CAPACITY, `rw.rs` READ /
//! WRITE / VERIFY / WRITE AND VERIFY, `sync.rs` SYNCHRONIZE CACHE and START STOP UNIT /
//! PREVENT ALLOW MEDIUM REMOVAL over the removable-medium state in `state/medium.rs`.
//! `pr.rs` PERSISTENT RESERVE IN / OUT, RESERVE / RELEASE and the reservation check every
//! command passes, `sanitize.rs` SANITIZE.
//! `atomic.rs` COMPARE AND WRITE / ORWRITE / WRITE ATOMIC (serialised by `esos_lu::range_lock`),
//! `prefetch.rs` PRE-FETCH, `defect.rs` READ DEFECT DATA, `opcodes.rs` the table of
//! supported commands behind REPORT SUPPORTED OPERATION CODES.
//! `provision.rs` UNMAP / WRITE SAME / GET LBA STATUS and the thin-provisioning fields.
//! `xcopy.rs` EXTENDED COPY / RECEIVE COPY RESULTS (the copy manager, VAAI XCOPY).

pub mod atomic;
pub mod capacity;
pub mod defect;
pub mod dispatch;
pub mod inquiry;
pub mod mode;
pub mod opcodes;
pub mod pr;
pub mod prefetch;
pub mod provision;
pub mod rw;
pub mod sanitize;
pub mod sync;
pub mod vpd;
pub mod xcopy;

use crate::Residual;
use crate::sense::Sense;

/// A command that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Valid data-in bytes at the start of the buffer (before clipping to the EDTL).
    pub data_in: u32,
    /// Bytes the command itself transfers in either direction (SPDTL), for the residual.
    pub transfer: u64,
}

impl Done {
    pub const NO_DATA: Done = Done {
        data_in: 0,
        transfer: 0,
    };

    /// Data-in of `len` bytes, cut to the CDB's allocation length (SPC-4 4.2.5.6).
    pub fn data(len: usize, alloc_len: u32) -> Done {
        let n = (len as u64).min(u64::from(alloc_len)) as u32;
        Done {
            data_in: n,
            transfer: u64::from(n),
        }
    }
}

/// A command that ended in CHECK CONDITION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail {
    pub sense: Sense,
    pub residual: Residual,
}

impl From<Sense> for Fail {
    fn from(sense: Sense) -> Fail {
        Fail {
            sense,
            residual: Residual::None,
        }
    }
}

pub type Outcome = Result<Done, Fail>;
