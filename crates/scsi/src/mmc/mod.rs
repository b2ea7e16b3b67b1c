//! The CD/DVD-ROM device handler (peripheral device type 05h, MMC-6): a read-only disc
//! image with 2048-byte blocks in a virtual drive whose tray opens and closes.
//!
//! Folder map: `cdb.rs` decodes the MMC command set (and reuses the shared decoder for the
//! SPC/SBC commands a drive also accepts), `dispatch.rs` routes a command, `toc.rs` READ
//! TOC/PMA/ATIP, READ DISC INFORMATION and READ TRACK INFORMATION (one data track in one
//! complete session), `config.rs` GET CONFIGURATION (profiles and features), `events.rs`
//! GET EVENT STATUS NOTIFICATION and MECHANISM STATUS, `mode.rs` MODE SENSE with the
//! capabilities page 2Ah, `opcodes.rs` REPORT SUPPORTED OPERATION CODES. The medium state
//! (tray, prevention) is shared with removable disks in `state/medium.rs`.

mod cdb;
mod config;
pub mod dispatch;
mod events;
mod mode;
mod opcodes;
mod toc;

#[cfg(test)]
mod tests;

pub use crate::cdb::MmcCdb;
pub use cdb::decode;

/// Logical block size of a CD/DVD data track (Mode 1 / DVD user data, MMC-6 4.2.3).
pub const BLOCK_SIZE: u32 = 2048;

/// Largest disc, in blocks, that is presented as a CD-ROM: the MSF address space of a CD
/// (99:59:74, less the 2-second pre-gap, MMC-6 4.2.3.4). Larger images are DVD-ROMs.
pub const CD_MAX_BLOCKS: u64 = 100 * 60 * 75 - 150;

/// Which profile the loaded disc is (MMC-6 table 89), by its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    CdRom = 0x0008,
    DvdRom = 0x0010,
}

impl Profile {
    pub fn of(num_blocks: u64) -> Profile {
        if num_blocks <= CD_MAX_BLOCKS {
            Profile::CdRom
        } else {
            Profile::DvdRom
        }
    }
}
