//! READ TOC/PMA/ATIP (MMC-6 6.33), READ DISC INFORMATION (6.22) and READ TRACK
//! INFORMATION (6.27) for a pressed disc: one session holding one data track that starts at
//! LBA 0, then the lead-out.

use crate::sense::{Asc, Sense};

/// Track number of the lead-out area in a TOC (MMC-6 6.33.3.2).
const LEAD_OUT: u8 = 0xAA;
/// ADR 1 (Q sub-channel mode 1) and CONTROL 4 (data track, recorded uninterrupted).
const ADR_CONTROL_DATA: u8 = 0x14;
/// Frames (blocks) per second and the 2-second pre-gap before LBA 0 (MMC-6 4.2.3.4).
const FRAMES_PER_SECOND: u64 = 75;
const PREGAP_FRAMES: u64 = 150;

/// A track start address as 4 bytes: the LBA, or with `msf` 0, M, S, F (saturating at
/// the largest address MSF can express, 255:59:74).
fn address(lba: u64, msf: bool) -> [u8; 4] {
    if !msf {
        return u32::try_from(lba).unwrap_or(u32::MAX).to_be_bytes();
    }
    let frames = lba + PREGAP_FRAMES;
    let minutes = frames / (60 * FRAMES_PER_SECOND);
    if minutes > 255 {
        return [0, 255, 59, 74];
    }
    let seconds = (frames / FRAMES_PER_SECOND) % 60;
    [
        0,
        minutes as u8,
        seconds as u8,
        (frames % FRAMES_PER_SECOND) as u8,
    ]
}

fn descriptor(out: &mut Vec<u8>, track: u8, lba: u64, msf: bool) {
    out.extend_from_slice(&[0, ADR_CONTROL_DATA, track, 0]);
    out.extend_from_slice(&address(lba, msf));
}

/// READ TOC/PMA/ATIP data for a disc of `num_blocks`. Format 0: the descriptors of track 1
/// (when `track` ≤ 1) and of the lead-out (track ≤ 1 or AAh); format 1: the first track of
/// the last (only) session. Other formats (full TOC, PMA, ATIP, CD-TEXT) describe
/// recordable or audio discs and are not supported.
pub fn read_toc(
    num_blocks: u64,
    msf: bool,
    format: u8,
    track: u8,
    out: &mut Vec<u8>,
) -> Result<(), Sense> {
    out.clear();
    // Header: data length, then first and last track (format 0) or session (format 1).
    out.extend_from_slice(&[0, 0, 1, 1]);
    match format {
        0 => {
            if track > 1 && track != LEAD_OUT {
                return Err(Sense::invalid_cdb_field(6, None));
            }
            if track <= 1 {
                descriptor(out, 1, 0, msf);
            }
            descriptor(out, LEAD_OUT, num_blocks, msf);
        }
        1 => descriptor(out, 1, 0, msf),
        _ => return Err(Sense::invalid_cdb_field(2, Some(3))),
    }
    let len = (out.len() - 2) as u16;
    out[0..2].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Standard disc information (MMC-6 table 309): a complete, non-erasable disc with one
/// complete session of one track, unrestricted use.
pub fn disc_information(out: &mut Vec<u8>) {
    out.clear();
    out.resize(34, 0);
    out[0..2].copy_from_slice(&32u16.to_be_bytes());
    // DATA TYPE 000b, not erasable, last session complete (11b), disc complete (10b).
    out[2] = 0x0E;
    out[3] = 1; // first track on the disc
    out[4] = 1; // number of sessions (LSB)
    out[5] = 1; // first track in the last session (LSB)
    out[6] = 1; // last track in the last session (LSB)
    out[7] = 0x20; // URU: unrestricted use
    // Lead-in and last possible lead-out start: FFFFFFFFh for a complete disc.
    out[16..24].fill(0xFF);
}

/// Track information (MMC-6 table 545) of our one track, which `addr_type` and `addr`
/// must name: an LBA on the disc (0), track 1 (1) or session 1 (2).
pub fn track_information(
    num_blocks: u64,
    addr_type: u8,
    addr: u32,
    out: &mut Vec<u8>,
) -> Result<(), Sense> {
    let ok = match addr_type {
        0 => {
            if u64::from(addr) >= num_blocks {
                return Err(Sense::illegal(Asc::LBA_OUT_OF_RANGE));
            }
            true
        }
        _ => addr == 1,
    };
    if !ok {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    out.clear();
    out.resize(48, 0);
    out[0..2].copy_from_slice(&46u16.to_be_bytes());
    out[2] = 1; // track number (LSB)
    out[3] = 1; // session number (LSB)
    out[5] = 0x04; // TRACK MODE: data, recorded uninterrupted
    out[6] = 0x01; // DATA MODE 1
    let size = u32::try_from(num_blocks).unwrap_or(u32::MAX);
    out[24..28].copy_from_slice(&size.to_be_bytes());
    out[28..32].copy_from_slice(&size.saturating_sub(1).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_lba_and_msf() {
        let mut out = Vec::new();
        read_toc(1000, false, 0, 0, &mut out).unwrap();
        assert_eq!(out.len(), 4 + 16);
        assert_eq!(&out[0..4], &[0, 18, 1, 1]);
        assert_eq!(&out[4..12], &[0, 0x14, 1, 0, 0, 0, 0, 0]);
        assert_eq!(&out[12..20], &[0, 0x14, 0xAA, 0, 0, 0, 0x03, 0xE8]);
        // 1000 + 150 frames = 0 min, 15 s, 25 frames; LBA 0 is 00:02:00.
        read_toc(1000, true, 0, 1, &mut out).unwrap();
        assert_eq!(&out[8..12], &[0, 0, 2, 0]);
        assert_eq!(&out[16..20], &[0, 0, 15, 25]);
        // Lead-out only.
        read_toc(1000, false, 0, 0xAA, &mut out).unwrap();
        assert_eq!((out.len(), out[6]), (12, 0xAA));
        assert!(read_toc(1000, false, 0, 2, &mut out).is_err());
        // Session information.
        read_toc(1000, true, 1, 0, &mut out).unwrap();
        assert_eq!(&out[..], &[0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 2, 0]);
        assert!(read_toc(1000, false, 2, 0, &mut out).is_err());
        // A DVD-sized disc saturates in MSF.
        assert_eq!(address(4_000_000, true), [0, 255, 59, 74]);
    }

    #[test]
    fn disc_and_track_information() {
        let mut out = Vec::new();
        disc_information(&mut out);
        assert_eq!(
            usize::from(u16::from_be_bytes([out[0], out[1]])) + 2,
            out.len()
        );
        assert_eq!(out[2] & 0x03, 0x02, "complete disc");
        track_information(500, 1, 1, &mut out).unwrap();
        assert_eq!(out.len(), 48);
        assert_eq!(&out[24..28], &500u32.to_be_bytes());
        track_information(500, 0, 499, &mut out).unwrap();
        assert!(track_information(500, 0, 500, &mut out).is_err());
        assert!(track_information(500, 1, 2, &mut out).is_err());
        assert!(track_information(500, 2, 1, &mut out).is_ok());
    }
}
