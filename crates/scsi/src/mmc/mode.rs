//! MODE SENSE for a CD/DVD unit: the MM capabilities and mechanical status page (2Ah,
//! MMC-3 6.3.11, kept in MMC-6 as legacy and still how Linux `sr` learns what the drive can
//! do). Drives return no block descriptors (MMC-6 7.2.2) and have nothing changeable;
//! MODE SELECT is not supported.

use crate::cdb::PageControl;
use crate::sense::{Asc, Sense};

pub const PAGE_CAPABILITIES: u8 = 0x2A;
const PAGE_ALL: u8 = 0x3F;
const CAPABILITIES_LEN: usize = 22;

/// Read speed reported in page 2Ah, kB/s: 40x (a 1x CD is 176.4 kB/s). A network drive
/// has no real speed; this is what `sr` prints.
const READ_SPEED_KBS: u16 = 7056;

/// Page 2Ah. `locked`: PREVENT is in effect (LOCK STATE).
fn capabilities(pc: PageControl, locked: bool, out: &mut Vec<u8>) {
    let mut p = [0u8; CAPABILITIES_LEN];
    p[0] = PAGE_CAPABILITIES;
    p[1] = (CAPABILITIES_LEN - 2) as u8;
    if pc != PageControl::Changeable {
        // Reads CD-R, CD-RW, method 2 and DVD-ROM; writes nothing.
        p[2] = 0x01 | 0x02 | 0x04 | 0x08;
        // Tray loading mechanism (001b), EJECT, LOCK, and LOCK STATE.
        p[6] = 0x20 | 0x08 | 0x01 | if locked { 0x02 } else { 0 };
        p[8..10].copy_from_slice(&READ_SPEED_KBS.to_be_bytes());
        p[14..16].copy_from_slice(&READ_SPEED_KBS.to_be_bytes());
    }
    out.extend_from_slice(&p);
}

/// MODE SENSE (6)/(10) data: header, no block descriptor, then page 2Ah when asked for
/// it or for all pages.
pub fn mode_sense(
    ten: bool,
    pc: PageControl,
    page: u8,
    subpage: u8,
    locked: bool,
    out: &mut Vec<u8>,
) -> Result<(), Sense> {
    if pc == PageControl::Saved {
        return Err(Sense::illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED));
    }
    match (page, subpage) {
        (PAGE_CAPABILITIES, 0) | (PAGE_ALL, 0 | 0xFF) => {}
        (PAGE_CAPABILITIES | PAGE_ALL, _) => return Err(Sense::invalid_cdb_field(3, None)),
        _ => return Err(Sense::invalid_cdb_field(2, Some(5))),
    }
    out.clear();
    let header_len = if ten { 8 } else { 4 };
    out.resize(header_len, 0);
    capabilities(pc, locked, out);
    if ten {
        let len = (out.len() - 2) as u16;
        out[0..2].copy_from_slice(&len.to_be_bytes());
    } else {
        out[0] = (out.len() - 1) as u8;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_page() {
        let mut out = Vec::new();
        mode_sense(true, PageControl::Current, 0x2A, 0, true, &mut out).unwrap();
        assert_eq!(
            usize::from(u16::from_be_bytes([out[0], out[1]])) + 2,
            out.len()
        );
        assert_eq!(&out[6..8], &[0, 0], "no block descriptors");
        let p = &out[8..];
        assert_eq!((p[0], usize::from(p[1]) + 2), (0x2A, CAPABILITIES_LEN));
        assert_eq!(p[3], 0, "writes nothing");
        assert_eq!(p[6], 0x2B);
        mode_sense(false, PageControl::Changeable, 0x3F, 0, false, &mut out).unwrap();
        assert_eq!(usize::from(out[0]) + 1, out.len());
        assert!(out[6..].iter().all(|&b| b == 0));
        assert!(mode_sense(false, PageControl::Saved, 0x2A, 0, false, &mut out).is_err());
        let e = mode_sense(false, PageControl::Current, 0x08, 0, false, &mut out).unwrap_err();
        assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
    }
}
