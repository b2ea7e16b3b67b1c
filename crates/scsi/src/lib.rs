//! The transport-agnostic SCSI target engine (SAM-5, SPC-4, SBC-3).
//!
//! Input: an I_T nexus, a LUN, a CDB, a task attribute and an owned data buffer.
//! Output: status, sense, data-in and residual, with the buffer handed back for reuse.
//! The engine has no sockets: transports (iSCSI now, others later) map their tasks onto
//! [`LunMap::submit`] and never interpret CDBs themselves.
//!
//! # Layers
//!
//! Each layer depends only on the ones below it (a module re-exporting its submodule's
//! items is the only upward path, and only for names):
//!
//! 1. vocabulary: this file (commands, responses, settings), `sense.rs`, `lun.rs`,
//!    `block_status.rs`, `pr.rs` (the SPC codes of persistent reservations), `alua.rs`
//!    (ALUA codes, REPORT / SET TARGET PORT GROUPS over the shared port-group table), and
//!    `cdb.rs` with `cdb/` (the decoded command and one decoder per command family);
//! 2. `state/`: the per-unit state SCSI keeps (mode parameters, medium, unit attentions,
//!    task set, reservation nexuses, sanitize, EXTENDED COPY results, aborts);
//! 3. `unit.rs`: [`LogicalUnit`], the protocol-neutral `esos_lu::Unit` plus that state;
//! 4. the handlers: `disk/` (SBC-3 / SPC-4) and `mmc/` (CD/DVD-ROM), which take a unit;
//! 5. `engine.rs`: [`LunMap`], admission, ordering and task management.
//!
//! # A WRITE(16), file by file
//!
//! The transport calls [`LunMap::submit`] (`engine.rs`), which finds the unit, checks the
//! task attribute and pending unit attentions (`state/ua.rs`), the port group's access
//! state (`alua.rs`), decodes the CDB into `Cdb::Write` (`cdb/decode.rs`, field checks
//! from `cdb.rs`), asks the sanitize gate (`disk/dispatch.rs`) and takes a place in the
//! task set (`state/task_set.rs`). When the task's turn comes, the reservation check runs
//! (`disk/pr.rs`), then `disk/dispatch.rs` checks the medium (`state/medium.rs`) and calls
//! `disk/rw.rs`, which checks range and write protection and writes through the unit's
//! device, with FUA when the caching mode page (`state/mode.rs`) says write-through.
//! `engine.rs` turns the outcome into status, sense (`sense.rs`) and residual.

use std::sync::Arc;

pub use esos_block::IoBuf;

/// Largest CDB the engine accepts (16-byte CDBs plus room for 32-byte variable-length ones).
pub const MAX_CDB_LEN: usize = 32;

/// Hard bound on the bytes one command may move, whatever `max_transfer_blocks` says: the
/// engine sizes the data buffer from the CDB, which the peer controls. The same bound the
/// front-ends apply before they allocate anything.
pub use esos_common::limits::MAX_TRANSFER_BYTES;

/// Largest sense buffer we ever produce (fixed format is 18 bytes; descriptor format stays small).
pub const MAX_SENSE_LEN: usize = 64;

/// SAM-5 task attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAttr {
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// SAM-5 status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Good = 0x00,
    CheckCondition = 0x02,
    ConditionMet = 0x04,
    Busy = 0x08,
    ReservationConflict = 0x18,
    TaskSetFull = 0x28,
    AcaActive = 0x30,
    TaskAborted = 0x40,
}

/// One I_T nexus: an initiator port talking to a target port.
///
/// Transports create one per session and tell the map when it ends
/// ([`LunMap::nexus_gone`]), so per-nexus state (unit attentions, later reservations) is
/// kept exactly as long as the nexus exists.
#[derive(Debug)]
pub struct Nexus {
    /// Unique for the life of the process; keys per-nexus state.
    pub id: u64,
    /// SCSI initiator port name, e.g. `iqn.1993-08.org.debian:01:abc,i,0x23d000000001`.
    pub initiator_port: String,
    /// SCSI target port name, e.g. `iqn.2026-01.org.esos:disk1,t,0x0001`.
    pub target_port: String,
    /// Relative target port identifier reported in VPD 0x83 (1-based).
    pub relative_port: u16,
    /// ALUA target port group of the target port (SPC-4 5.16), reported in VPD 0x83 and
    /// REPORT TARGET PORT GROUPS.
    pub port_group: u16,
}

/// A command as a transport hands it to the engine.
#[derive(Debug, Clone)]
pub struct Command {
    pub nexus: Arc<Nexus>,
    /// The 64-bit SAM LUN field exactly as it arrived on the wire.
    pub lun: u64,
    pub cdb: [u8; MAX_CDB_LEN],
    pub cdb_len: u8,
    pub attr: TaskAttr,
    /// Transport task tag, for logs and task management.
    pub tag: u32,
    /// The initiator's expected data transfer length in bytes (iSCSI EDTL).
    pub expected_len: u32,
    /// True when the initiator sends data (write direction). The data is in the buffer
    /// passed to [`LunMap::submit`]: exactly the bytes the initiator sent, at most `expected_len`.
    pub data_out: bool,
}

/// Sense data, already encoded (fixed or descriptor format as the control page selects).
#[derive(Clone, Copy)]
pub struct SenseBytes {
    pub bytes: [u8; MAX_SENSE_LEN],
    pub len: u8,
}

impl SenseBytes {
    pub const EMPTY: SenseBytes = SenseBytes {
        bytes: [0; MAX_SENSE_LEN],
        len: 0,
    };
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for SenseBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SenseBytes({:02x?})", self.as_slice())
    }
}

/// SAM residual, relative to the command's `expected_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residual {
    None,
    /// Fewer bytes were transferred than expected (bytes not transferred).
    Underflow(u32),
    /// The command wanted more bytes than expected (bytes that could not be transferred).
    Overflow(u32),
}

/// What the engine answers.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    pub status: Status,
    /// Empty unless `status` is CHECK CONDITION.
    pub sense: SenseBytes,
    /// Number of valid data-in bytes at the start of the returned buffer (≤ `expected_len`).
    pub data_in_len: u32,
    pub residual: Residual,
}

impl Response {
    /// An aborted task's answer (SAM-5 5.6): aborted by task management, or by another
    /// nexus's PREEMPT AND ABORT, before it started or while it ran. With TAS 0 in the
    /// control mode page, the only value esos reports, the initiator gets no response at
    /// all: the transport ends the task and sends nothing. The engine returns TASK ABORTED
    /// status for nothing else.
    pub const ABORTED: Response = Response {
        status: Status::TaskAborted,
        sense: SenseBytes::EMPTY,
        data_in_len: 0,
        residual: Residual::None,
    };

    /// True for [`Response::ABORTED`]: send no response.
    pub fn is_aborted(&self) -> bool {
        self.status == Status::TaskAborted
    }
}

/// Identity of a logical unit, shared with every other front-end of the device
/// (`esos_lu::identity`): stable across restarts so multipath recognises it.
pub use esos_lu::identity::Identity;

/// Settings of a logical unit that the engine exposes through mode pages and VPD.
#[derive(Debug, Clone)]
pub struct LuSettings {
    pub identity: Identity,
    /// Initial WCE: true = write-back (volatile cache made durable by SYNCHRONIZE CACHE and
    /// FUA), false = write-through (every write durable before good status). MODE SELECT on
    /// the caching page switches it at run time.
    pub write_cache: bool,
    /// Read-only LUN even when the backend is writable (write-protect bit, DATA PROTECT).
    pub read_only: bool,
    /// Largest transfer in blocks a single command may move (VPD 0xB0 MAXIMUM TRANSFER LENGTH).
    /// 0 means "as large as allowed"; values are capped at [`MAX_TRANSFER_BYTES`].
    pub max_transfer_blocks: u32,
    /// Thin provisioning (SBC-3 4.7.3): UNMAP and WRITE SAME release storage, READ
    /// CAPACITY(16) reports LBPME. Takes effect only when the device can discard.
    pub thin: bool,
    /// File that keeps persistent reservations across restarts when an initiator sets
    /// APTPL (SPC-4 5.9.4); `None` reports PTPL_C 0 and refuses APTPL.
    pub pr_state: Option<std::path::PathBuf>,
    /// Peripheral device type and the command set it implies (SPC-4 6.6.2).
    pub kind: LuKind,
    /// RMB in standard INQUIRY: the medium can be removed (START STOP UNIT LoEj,
    /// PREVENT ALLOW MEDIUM REMOVAL).
    pub removable: bool,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT reported by READ CAPACITY(16)
    /// (SBC-3 5.16.2): 3 says 4 KiB physical blocks under 512-byte logical ones.
    pub lbppb_exponent: u8,
    /// Bytes per second a SANITIZE may write (0 = as fast as the device goes), so a
    /// sanitize of one LU does not starve the others sharing its storage.
    pub sanitize_rate: u64,
    /// ALUA target port groups and their access states (SPC-4 5.16), one table shared by
    /// every unit of the server so a state change reaches all of them.
    pub alua: Arc<esos_lu::access::PortGroups>,
}

impl LuSettings {
    /// A writable, write-through, fully provisioned disk with no reservation file, the
    /// largest transfer allowed and a port-group table of its own: the safe choice for
    /// every setting, which callers override field by field.
    pub fn disk(identity: Identity) -> Self {
        LuSettings {
            identity,
            write_cache: false,
            read_only: false,
            max_transfer_blocks: 0,
            thin: false,
            pr_state: None,
            kind: LuKind::Disk,
            removable: false,
            lbppb_exponent: 0,
            sanitize_rate: 0,
            alua: Default::default(),
        }
    }
}

/// What kind of logical unit a device is exported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LuKind {
    /// Direct-access block device (peripheral device type 00h, SBC-3).
    #[default]
    Disk,
    /// CD/DVD device (peripheral device type 05h, MMC), read-only 2048-byte blocks.
    Cdrom,
}

pub mod alua;
pub mod block_status;
pub mod cdb;
mod disk;
mod engine;
pub mod lun;
mod mmc;
pub mod pr;
pub mod sense;
mod state;
mod unit;

pub use engine::{DataInRef, LunMap};
pub use state::task_set::MAX_TASKS_PER_LU;
pub use state::ua::MAX_UA_PER_NEXUS;
pub use unit::{AbortMark, LogicalUnit, ResetKind};

#[cfg(test)]
mod tests_layers;
