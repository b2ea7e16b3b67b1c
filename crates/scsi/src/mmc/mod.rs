//! The CD/DVD-ROM device handler (peripheral device type 05h, MMC-6): a read-only disc
//! image with 2048-byte blocks in a virtual drive whose tray opens and closes.
//!
//! Folder map: `cdb.rs` decodes the MMC command set (and reuses the shared decoder for the
//! SPC/SBC commands a drive also accepts), `dispatch.rs` routes a command, `toc.rs` READ
//! TOC/PMA/ATIP, READ DISC INFORMATION and READ TRACK INFORMATION (one data track in one
//! complete session), `config.rs` GET CONFIGURATION (profiles and features), `events.rs`
//! GET EVENT STATUS NOTIFICATION and MECHANISM STATUS, `mode.rs` MODE SENSE with the
//! capabilities page 2Ah, `opcodes.rs` REPORT SUPPORTED OPERATION CODES. The medium state
//! (tray, prevention) is shared with removable disks in `disk/medium.rs`.

mod cdb;
mod config;
pub mod dispatch;
mod events;
mod mode;
mod opcodes;
mod toc;

#[cfg(test)]
mod tests;

pub use cdb::decode;

/// Logical block size of a CD/DVD data track (Mode 1 / DVD user data, MMC-6 4.2.3).
pub const BLOCK_SIZE: u32 = 2048;

/// Largest disc, in blocks, that is presented as a CD-ROM: the MSF address space of a CD
/// (99:59:74, less the 2-second pre-gap, MMC-6 4.2.3.4). Larger images are DVD-ROMs.
pub const CD_MAX_BLOCKS: u64 = 100 * 60 * 75 - 150;

/// A command only a CD/DVD unit accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmcCdb {
    /// READ TOC/PMA/ATIP (MMC-6 6.33): `format` 0 (TOC) or 1 (session information).
    ReadToc {
        msf: bool,
        format: u8,
        track: u8,
        alloc_len: u32,
    },
    /// GET CONFIGURATION (MMC-6 6.6): `rt` 0 all, 1 current, 2 one feature.
    GetConfiguration { rt: u8, start: u16, alloc_len: u32 },
    /// GET EVENT STATUS NOTIFICATION, polled (MMC-6 6.7).
    GetEventStatus { classes: u8, alloc_len: u32 },
    /// READ DISC INFORMATION, standard disc information (MMC-6 6.22).
    ReadDiscInfo { alloc_len: u32 },
    /// READ TRACK INFORMATION (MMC-6 6.27): `addr_type` 0 LBA, 1 track, 2 session.
    ReadTrackInfo {
        addr_type: u8,
        addr: u32,
        alloc_len: u32,
    },
    /// MECHANISM STATUS (MMC-6 6.11).
    MechanismStatus { alloc_len: u32 },
}

impl MmcCdb {
    /// Describing the disc needs a disc; describing the drive does not.
    pub fn needs_medium(&self) -> bool {
        matches!(
            self,
            MmcCdb::ReadToc { .. } | MmcCdb::ReadDiscInfo { .. } | MmcCdb::ReadTrackInfo { .. }
        )
    }
}

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
