//! MODE SENSE / MODE SELECT (SPC-4 6.11-6.14, 7.5) for disks.
//!
//! Pages: caching (08h, SBC-3 6.4.5) with a changeable WCE that really switches every write
//! to FUA; control (0Ah, SPC-4 7.5.8) with changeable D_SENSE and SWP; informational
//! exceptions control (1Ch, SPC-4 7.5.11), nothing changeable. No saved pages.

use crate::cdb::PageControl;
use crate::sense::{Asc, Sense};
use crate::state::mode::{ModeState, ModeValues};

pub const PAGE_CACHING: u8 = 0x08;
pub const PAGE_CONTROL: u8 = 0x0A;
pub const PAGE_INFO_EXCEPTIONS: u8 = 0x1C;
pub const PAGE_ALL: u8 = 0x3F;

const CACHING_LEN: usize = 20;
const CONTROL_LEN: usize = 12;
const IEC_LEN: usize = 12;

/// Largest MODE SELECT parameter list we accept: header, a long block descriptor and every
/// page once, with room to spare. Longer lists cannot be valid.
pub const MAX_MODE_SELECT_LEN: u32 = 512;

/// The pages we implement, in ascending page-code order (SPC-4 6.11.4: "all pages" are
/// returned in ascending order).
const PAGES: [u8; 3] = [PAGE_CACHING, PAGE_CONTROL, PAGE_INFO_EXCEPTIONS];

/// Writes one page as `pc` asks. `v` holds current or default values; ignored for Changeable.
fn page(code: u8, pc: PageControl, v: ModeValues, out: &mut Vec<u8>) {
    let changeable = pc == PageControl::Changeable;
    match code {
        PAGE_CACHING => {
            let mut p = [0u8; CACHING_LEN];
            p[0] = PAGE_CACHING;
            p[1] = (CACHING_LEN - 2) as u8;
            if changeable || v.wce {
                p[2] |= 0x04;
            }
            out.extend_from_slice(&p);
        }
        PAGE_CONTROL => {
            let mut p = [0u8; CONTROL_LEN];
            p[0] = PAGE_CONTROL;
            p[1] = (CONTROL_LEN - 2) as u8;
            if changeable {
                p[2] = 0x04;
                p[4] = 0x08;
            } else {
                // GLTSD: we save no log parameters. QAM 1: SIMPLE commands are reordered.
                p[2] = 0x02 | if v.d_sense { 0x04 } else { 0 };
                p[3] = 0x10;
                p[4] = if v.swp { 0x08 } else { 0 };
                // BUSY TIMEOUT PERIOD: unlimited.
                p[8] = 0xFF;
                p[9] = 0xFF;
            }
            out.extend_from_slice(&p);
        }
        PAGE_INFO_EXCEPTIONS => {
            let mut p = [0u8; IEC_LEN];
            p[0] = PAGE_INFO_EXCEPTIONS;
            p[1] = (IEC_LEN - 2) as u8;
            if !changeable {
                // DEXCPT: we report no informational exceptions; MRIE 0.
                p[2] = 0x08;
            }
            out.extend_from_slice(&p);
        }
        _ => unreachable!("page {code:#x} is not in PAGES"),
    }
}

/// What a MODE SENSE asks for, already decoded.
#[derive(Debug, Clone, Copy)]
pub struct SenseRequest {
    pub ten: bool,
    pub dbd: bool,
    pub llbaa: bool,
    pub pc: PageControl,
    pub page: u8,
    pub subpage: u8,
}

/// The medium facts the header and block descriptor report.
#[derive(Debug, Clone, Copy)]
pub struct Medium {
    pub num_blocks: u64,
    pub block_size: u32,
    pub write_protected: bool,
}

/// Builds the full MODE SENSE data (header, block descriptor, pages) into `out`.
pub fn mode_sense(
    req: SenseRequest,
    medium: Medium,
    state: &ModeState,
    out: &mut Vec<u8>,
) -> Result<(), Sense> {
    let values = match req.pc {
        PageControl::Current | PageControl::Changeable => state.current(),
        PageControl::Default => state.defaults(),
        // SPC-4 6.11.1: saved values not implemented.
        PageControl::Saved => return Err(Sense::illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED)),
    };
    // Subpage 00h, or FFh with "all pages" (all pages and subpages; we have no subpages).
    let pages: &[u8] = match (req.page, req.subpage) {
        (PAGE_ALL, 0x00 | 0xFF) => &PAGES,
        (p, 0x00) if PAGES.contains(&p) => {
            std::slice::from_ref(PAGES.iter().find(|&&x| x == p).expect("contained"))
        }
        (p, _) if p == PAGE_ALL || PAGES.contains(&p) => {
            return Err(Sense::invalid_cdb_field(3, None));
        }
        _ => return Err(Sense::invalid_cdb_field(2, Some(5))),
    };
    out.clear();
    let header_len = if req.ten { 8 } else { 4 };
    out.resize(header_len, 0);
    // SBC-3 6.4.1: WP reports write protection; DPOFUA: DPO and FUA are supported.
    let device_specific = 0x10 | if medium.write_protected { 0x80 } else { 0 };
    let long = req.ten && req.llbaa;
    if !req.dbd {
        let changeable = req.pc == PageControl::Changeable;
        if long {
            let mut d = [0u8; 16];
            if !changeable {
                d[0..8].copy_from_slice(&medium.num_blocks.to_be_bytes());
                d[12..16].copy_from_slice(&medium.block_size.to_be_bytes());
            }
            out.extend_from_slice(&d);
        } else {
            let mut d = [0u8; 8];
            if !changeable {
                // SBC-3 6.4.2.2: FFFFFFFFh when the count does not fit.
                let n = u32::try_from(medium.num_blocks).unwrap_or(u32::MAX);
                d[0..4].copy_from_slice(&n.to_be_bytes());
                d[5..8].copy_from_slice(&medium.block_size.to_be_bytes()[1..4]);
            }
            out.extend_from_slice(&d);
        }
    }
    let bd_len = out.len() - header_len;
    for &p in pages {
        page(p, req.pc, values, out);
    }
    if req.ten {
        let len = (out.len() - 2) as u16;
        out[0..2].copy_from_slice(&len.to_be_bytes());
        out[3] = device_specific;
        out[4] = u8::from(long);
        out[6..8].copy_from_slice(&(bd_len as u16).to_be_bytes());
    } else {
        out[0] = (out.len() - 1) as u8;
        out[2] = device_specific;
        out[3] = bd_len as u8;
    }
    Ok(())
}

/// Validates a MODE SELECT parameter list (SPC-4 6.9, 7.5) and returns the new values.
/// Nothing is applied unless the whole list is valid.
pub fn mode_select(
    ten: bool,
    list: &[u8],
    medium: Medium,
    state: &ModeState,
) -> Result<ModeValues, Sense> {
    let header_len = if ten { 8 } else { 4 };
    if list.len() < header_len {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    // MODE DATA LENGTH is reserved in MODE SELECT and ignored; the medium type must be 0.
    let (medium_type_at, bd_len, long) = if ten {
        (
            2,
            usize::from(u16::from_be_bytes([list[6], list[7]])),
            list[4] & 1 != 0,
        )
    } else {
        (1, usize::from(list[3]), false)
    };
    if list[medium_type_at] != 0 {
        return Err(Sense::invalid_param_field(medium_type_at as u16, None));
    }
    let bd_len_at = if ten { 6 } else { 3 };
    let want_bd = if long { 16 } else { 8 };
    if bd_len != 0 && bd_len != want_bd {
        return Err(Sense::invalid_param_field(bd_len_at, None));
    }
    if list.len() < header_len + bd_len {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    if bd_len != 0 {
        check_block_descriptor(&list[header_len..header_len + bd_len], header_len, medium)?;
    }
    let mut new = state.current();
    let mut at = header_len + bd_len;
    while at < list.len() {
        if list.len() - at < 2 {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        // PS is reserved in MODE SELECT but initiators echo MODE SENSE data: ignored.
        // SPF (sub-page format): we have no subpages.
        if list[at] & 0x40 != 0 {
            return Err(Sense::invalid_param_field(at as u16, Some(6)));
        }
        let code = list[at] & 0x3F;
        if !PAGES.contains(&code) {
            return Err(Sense::invalid_param_field(at as u16, Some(5)));
        }
        let mut current = Vec::with_capacity(CACHING_LEN);
        page(code, PageControl::Current, new, &mut current);
        let mut mask = Vec::with_capacity(CACHING_LEN);
        page(code, PageControl::Changeable, new, &mut mask);
        if usize::from(list[at + 1]) != current.len() - 2 {
            return Err(Sense::invalid_param_field(at as u16 + 1, None));
        }
        if list.len() - at < current.len() {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let given = &list[at..at + current.len()];
        for i in 2..current.len() {
            let bad = (given[i] ^ current[i]) & !mask[i];
            if bad != 0 {
                let bit = 7 - bad.leading_zeros() as u8;
                return Err(Sense::invalid_param_field((at + i) as u16, Some(bit)));
            }
        }
        match code {
            PAGE_CACHING => new.wce = given[2] & 0x04 != 0,
            PAGE_CONTROL => {
                new.d_sense = given[2] & 0x04 != 0;
                new.swp = given[4] & 0x08 != 0;
            }
            _ => {}
        }
        at += current.len();
    }
    Ok(new)
}

/// SBC-3 6.4.2: we cannot reformat, so the block length must be ours and the number of
/// blocks zero (no change), all ones, or the current capacity.
fn check_block_descriptor(d: &[u8], at: usize, medium: Medium) -> Result<(), Sense> {
    let (blocks, len, len_at) = if d.len() == 16 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[0..8]);
        (
            u64::from_be_bytes(b),
            u32::from_be_bytes([d[12], d[13], d[14], d[15]]),
            12,
        )
    } else {
        (
            u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])),
            u32::from_be_bytes([0, d[5], d[6], d[7]]),
            5,
        )
    };
    let all_ones = if d.len() == 16 {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    if blocks != 0 && blocks != all_ones && blocks != medium.num_blocks {
        return Err(Sense::invalid_param_field(at as u16, None));
    }
    if len != medium.block_size {
        return Err(Sense::invalid_param_field((at + len_at) as u16, None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::FieldPointer;

    const MEDIUM: Medium = Medium {
        num_blocks: 2048,
        block_size: 512,
        write_protected: false,
    };

    fn req(ten: bool, pc: PageControl, page: u8) -> SenseRequest {
        SenseRequest {
            ten,
            dbd: false,
            llbaa: false,
            pc,
            page,
            subpage: 0,
        }
    }

    /// Finds page `code` in MODE SENSE data.
    fn find(data: &[u8], ten: bool, code: u8) -> Option<Vec<u8>> {
        let (mut at, end) = if ten {
            (
                8 + usize::from(u16::from_be_bytes([data[6], data[7]])),
                usize::from(u16::from_be_bytes([data[0], data[1]])) + 2,
            )
        } else {
            (4 + usize::from(data[3]), usize::from(data[0]) + 1)
        };
        while at + 2 <= end {
            let len = usize::from(data[at + 1]) + 2;
            if data[at] & 0x3F == code {
                return Some(data[at..at + len].to_vec());
            }
            at += len;
        }
        None
    }

    #[test]
    fn all_pages_with_block_descriptor() {
        let st = ModeState::new(true);
        let mut out = Vec::new();
        mode_sense(
            req(false, PageControl::Current, PAGE_ALL),
            MEDIUM,
            &st,
            &mut out,
        )
        .unwrap();
        assert_eq!(usize::from(out[0]) + 1, out.len());
        assert_eq!(out[2], 0x10);
        assert_eq!(out[3], 8);
        assert_eq!(&out[4..8], &2048u32.to_be_bytes());
        assert_eq!(&out[9..12], &[0, 2, 0]);
        assert_eq!(find(&out, false, PAGE_CACHING).unwrap()[2] & 0x04, 0x04);
        assert!(find(&out, false, PAGE_CONTROL).is_some());
        assert!(find(&out, false, PAGE_INFO_EXCEPTIONS).is_some());
    }

    #[test]
    fn long_lba_descriptor_and_dbd() {
        let st = ModeState::new(false);
        let mut out = Vec::new();
        let mut r = req(true, PageControl::Current, PAGE_CACHING);
        r.llbaa = true;
        mode_sense(r, MEDIUM, &st, &mut out).unwrap();
        assert_eq!(out[4], 1);
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 16);
        assert_eq!(&out[8..16], &2048u64.to_be_bytes());
        r.dbd = true;
        mode_sense(r, MEDIUM, &st, &mut out).unwrap();
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 0);
        assert_eq!(out.len(), 8 + CACHING_LEN);
    }

    #[test]
    fn saved_and_unknown_pages_are_rejected() {
        let st = ModeState::new(false);
        let mut out = Vec::new();
        let e = mode_sense(
            req(false, PageControl::Saved, PAGE_ALL),
            MEDIUM,
            &st,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.asc, Asc::SAVING_PARAMETERS_NOT_SUPPORTED);
        let e = mode_sense(
            req(false, PageControl::Current, 0x19),
            MEDIUM,
            &st,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.field, Some(FieldPointer::cdb(2, Some(5))));
    }

    #[test]
    fn select_toggles_wce_and_rejects_unchangeable_bits() {
        let st = ModeState::new(true);
        let mut sense = Vec::new();
        let mut r = req(false, PageControl::Current, PAGE_CACHING);
        r.dbd = true;
        mode_sense(r, MEDIUM, &st, &mut sense).unwrap();
        let mut list = sense.clone();
        list[0] = 0;
        list[4 + 2] &= !0x04;
        let v = mode_select(false, &list, MEDIUM, &st).unwrap();
        assert!(!v.wce);
        assert!(st.set(v));
        assert!(!st.wce());
        // RCD is not changeable.
        list[4 + 2] |= 0x01;
        let e = mode_select(false, &list, MEDIUM, &st).unwrap_err();
        assert_eq!(e.field, Some(FieldPointer::param(6, Some(0))));
        // Wrong page length.
        list[4 + 2] &= !0x01;
        list[4 + 1] = 5;
        assert_eq!(
            mode_select(false, &list, MEDIUM, &st).unwrap_err().field,
            Some(FieldPointer::param(5, None))
        );
        // Truncated.
        assert_eq!(
            mode_select(false, &list[..10], MEDIUM, &st)
                .unwrap_err()
                .asc,
            Asc::INVALID_FIELD_IN_PARAMETER_LIST
        );
        list[4 + 1] = 18;
        assert_eq!(
            mode_select(false, &list[..10], MEDIUM, &st)
                .unwrap_err()
                .asc,
            Asc::PARAMETER_LIST_LENGTH_ERROR
        );
    }

    #[test]
    fn select_control_page_with_block_descriptor() {
        let st = ModeState::new(true);
        let mut data = Vec::new();
        mode_sense(
            req(true, PageControl::Current, PAGE_CONTROL),
            MEDIUM,
            &st,
            &mut data,
        )
        .unwrap();
        data[0] = 0;
        data[1] = 0;
        data[8 + 8 + 2] |= 0x04;
        data[8 + 8 + 4] |= 0x08;
        let v = mode_select(true, &data, MEDIUM, &st).unwrap();
        assert!(v.d_sense && v.swp && v.wce);
        // A different block length cannot be selected.
        data[8 + 6] = 0x10;
        assert_eq!(
            mode_select(true, &data, MEDIUM, &st).unwrap_err().field,
            Some(FieldPointer::param(13, None))
        );
    }
}
