//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS: their CDBs and the EXTENDED COPY
//! parameter list (SPC-4 6.3, 6.18). Pure functions; `disk/xcopy.rs` runs the copy.
//!
//! The parser checks everything that does not need a logical unit: lengths against the
//! limits below, descriptor type codes, descriptor lengths. Resolving CSCD descriptors to
//! units and checking LBA ranges happens when the copy runs (COPY ABORTED territory).

use esos_common::be::{u16_at, u32_at, u64_at};

use super::{Cdb, reserved};
use crate::sense::{Asc, Sense};

/// EXTENDED COPY service action for the LID1 parameter list (SPC-4 6.3.1).
pub const SA_LID1: u8 = 0x00;
/// RECEIVE COPY RESULTS service actions (SPC-4 table 134).
pub const SA_COPY_STATUS: u8 = 0x00;
pub const SA_RECEIVE_DATA: u8 = 0x01;
pub const SA_OPERATING_PARAMETERS: u8 = 0x03;
pub const SA_FAILED_SEGMENT_DETAILS: u8 = 0x04;

/// CSCD descriptor type: identification descriptor (SPC-4 6.3.6.2).
pub const CSCD_IDENTIFICATION: u8 = 0xE4;
/// Segment descriptor type: block device to block device (SPC-4 6.3.7.5).
pub const SEG_BLOCK_TO_BLOCK: u8 = 0x02;
/// Segment descriptor type: block device to block device with byte offsets (SPC-4 6.3.7.7).
pub const SEG_BLOCK_TO_BLOCK_OFFSET: u8 = 0x0A;

/// Descriptor type codes reported as implemented (OPERATING PARAMETERS, VPD 8Fh).
pub const IMPLEMENTED_DESCRIPTORS: [u8; 3] = [
    SEG_BLOCK_TO_BLOCK,
    SEG_BLOCK_TO_BLOCK_OFFSET,
    CSCD_IDENTIFICATION,
];

/// Most CSCD descriptors in one parameter list: a VAAI clone names two.
pub const MAX_CSCD_DESCRIPTORS: u16 = 8;
/// Most segment descriptors in one parameter list.
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
/// Largest CSCD + segment descriptor list: the limits above at 32 bytes each.
pub const MAX_DESCRIPTOR_LIST_LEN: u32 =
    (MAX_CSCD_DESCRIPTORS as u32 + MAX_SEGMENT_DESCRIPTORS as u32) * 32;
/// Largest amount one segment may copy (MAXIMUM SEGMENT LENGTH, bytes): a full 16-bit
/// block count of 4 KiB blocks fits.
pub const MAX_SEGMENT_BYTES: u32 = 256 << 20;
/// Inline data is not supported (no segment type we implement uses it).
pub const MAX_INLINE_DATA_LEN: u32 = 0;

/// Parameter list header length (SPC-4 table 110).
pub const HEADER_LEN: usize = 16;
/// Length of the CSCD descriptors we parse (E0h-E9h are all 32 bytes).
const CSCD_LEN: usize = 32;
/// Largest designator in an identification CSCD descriptor (bytes 8-27).
pub const MAX_DESIGNATOR_LEN: usize = 20;

/// LIST ID USAGE (SPC-4 table 111).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListIdUsage {
    /// 00b: status (and held data) kept for RECEIVE COPY RESULTS.
    Hold,
    /// 10b: status kept, no held data.
    NoHold,
    /// 11b: the list identifier is not used and nothing is kept.
    None,
}

/// A designation descriptor naming a copy target (SPC-4 7.8.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Designator {
    pub code_set: u8,
    pub association: u8,
    pub kind: u8,
    pub len: u8,
    pub value: [u8; MAX_DESIGNATOR_LEN],
}

impl Designator {
    /// The NAA designator bytes when this is a binary, LU-associated NAA designator.
    pub fn naa(&self) -> Option<&[u8]> {
        (self.code_set == 1 && self.association == 0 && self.kind == 3)
            .then(|| &self.value[..usize::from(self.len)])
    }
}

/// One identification CSCD descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cscd {
    /// Byte offset of the descriptor in the parameter list (for field pointers).
    pub offset: u32,
    pub peripheral_type: u8,
    pub designator: Designator,
    /// DISK BLOCK LENGTH, for block devices (peripheral type 00h); 0 otherwise.
    pub block_len: u32,
}

/// How much a segment copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// Type 02h: BLOCK DEVICE NUMBER OF BLOCKS, counted in source blocks unless `dc`.
    Blocks { blocks: u16, dc: bool },
    /// Type 0Ah: NUMBER OF BYTES, with byte offsets into the first blocks.
    Bytes {
        bytes: u32,
        src_offset: u16,
        dst_offset: u16,
    },
}

/// One block-to-block segment descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Byte offset of the descriptor in the parameter list (for field pointers).
    pub offset: u32,
    pub src: u16,
    pub dst: u16,
    pub amount: Amount,
    pub src_lba: u64,
    pub dst_lba: u64,
}

/// Field offsets inside a segment descriptor, for COPY ABORTED segment pointers.
pub mod seg_field {
    pub const SRC_INDEX: u16 = 4;
    pub const DST_INDEX: u16 = 6;
    pub const SRC_LBA: u16 = 12;
    pub const DST_LBA: u16 = 20;
}

/// A parsed EXTENDED COPY (LID1) parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyList {
    pub list_id: u8,
    pub usage: ListIdUsage,
    pub cscds: Vec<Cscd>,
    pub segments: Vec<Segment>,
}

/// EXTENDED COPY CDB (SPC-4 6.3.1): only the LID1 service action.
pub(super) fn extended_copy(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0x1F)?;
    if c[1] & 0x1F != SA_LID1 {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    for byte in 2..10 {
        reserved(c, byte, 0)?;
    }
    reserved(c, 14, 0)?;
    Ok(Cdb::ExtendedCopy {
        param_len: u32_at(c, 10),
    })
}

/// RECEIVE COPY RESULTS CDB (SPC-4 6.18.1).
pub(super) fn receive_copy_results(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0x1F)?;
    let action = c[1] & 0x1F;
    if !matches!(
        action,
        SA_COPY_STATUS | SA_RECEIVE_DATA | SA_OPERATING_PARAMETERS | SA_FAILED_SEGMENT_DETAILS
    ) {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    for byte in 3..10 {
        reserved(c, byte, 0)?;
    }
    reserved(c, 14, 0)?;
    Ok(Cdb::ReceiveCopyResults {
        action,
        list_id: c[2],
        alloc_len: u32_at(c, 10),
    })
}

fn length_error() -> Sense {
    Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
}

fn param(byte: usize, bit: Option<u8>) -> Sense {
    Sense::invalid_param_field(u16::try_from(byte).unwrap_or(u16::MAX), bit)
}

/// Parses a LID1 parameter list of at least one byte (a zero PARAMETER LIST LENGTH is
/// a no-op the caller handles). Errors are ILLEGAL REQUEST with a parameter field
/// pointer, in the order SPC-4 6.3.x checks them: lengths, then descriptors.
pub fn parse_list(list: &[u8]) -> Result<CopyList, Sense> {
    if list.len() < HEADER_LEN {
        return Err(length_error());
    }
    let list_id = list[0];
    let bad = list[1] & 0xC0;
    if bad != 0 {
        return Err(param(1, Some(7 - bad.leading_zeros() as u8)));
    }
    let usage = match (list[1] >> 3) & 3 {
        0 => ListIdUsage::Hold,
        2 => ListIdUsage::NoHold,
        3 => ListIdUsage::None,
        _ => return Err(param(1, Some(4))),
    };
    // SPC-4 6.3.2: with LIST ID USAGE 11b the list identifier must be zero.
    if usage == ListIdUsage::None && list_id != 0 {
        return Err(param(0, None));
    }
    let cscd_len = u32::from(u16_at(list, 2)) as usize;
    let seg_len = u32_at(list, 8) as usize;
    let inline_len = u32_at(list, 12);
    if cscd_len as u64 + seg_len as u64 > u64::from(MAX_DESCRIPTOR_LIST_LEN) {
        return Err(length_error());
    }
    if inline_len > MAX_INLINE_DATA_LEN {
        return Err(param(12, None));
    }
    let end = HEADER_LEN + cscd_len + seg_len;
    if end > list.len() {
        return Err(length_error());
    }
    let cscds = parse_cscds(&list[..HEADER_LEN + cscd_len])?;
    let segments = parse_segments(list, HEADER_LEN + cscd_len, end)?;
    Ok(CopyList {
        list_id,
        usage,
        cscds,
        segments,
    })
}

/// CSCD descriptors: `list` ends where the CSCD descriptor list ends.
fn parse_cscds(list: &[u8]) -> Result<Vec<Cscd>, Sense> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at < list.len() {
        if out.len() >= usize::from(MAX_CSCD_DESCRIPTORS) {
            return Err(Sense::illegal(Asc::TOO_MANY_TARGET_DESCRIPTORS));
        }
        if list[at] != CSCD_IDENTIFICATION {
            let mut s = Sense::illegal(Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE);
            s.field = param(at, None).field;
            return Err(s);
        }
        if list.len() - at < CSCD_LEN {
            // The CSCD DESCRIPTOR LIST LENGTH cuts the last descriptor.
            return Err(param(2, None));
        }
        out.push(identification(&list[at..at + CSCD_LEN], at)?);
        at += CSCD_LEN;
    }
    Ok(out)
}

/// SPC-4 6.3.6.2. LU ID TYPE and NUL are ignored (the latter is obsolete in SPC-4); the
/// RELATIVE INITIATOR PORT IDENTIFIER only restricts ports, and any port is ours.
fn identification(d: &[u8], at: usize) -> Result<Cscd, Sense> {
    let peripheral_type = d[1] & 0x1F;
    let len = usize::from(d[7]);
    if len > MAX_DESIGNATOR_LEN {
        return Err(param(at + 7, None));
    }
    let mut value = [0u8; MAX_DESIGNATOR_LEN];
    value[..len].copy_from_slice(&d[8..8 + len]);
    let designator = Designator {
        code_set: d[4] & 0x0F,
        association: (d[5] >> 4) & 3,
        kind: d[5] & 0x0F,
        len: len as u8,
        value,
    };
    let block_len = if peripheral_type == 0 {
        u32::from_be_bytes([0, d[29], d[30], d[31]])
    } else {
        0
    };
    Ok(Cscd {
        offset: at as u32,
        peripheral_type,
        designator,
        block_len,
    })
}

/// Segment descriptors between `start` and `end` of `list`.
fn parse_segments(list: &[u8], start: usize, end: usize) -> Result<Vec<Segment>, Sense> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        if out.len() >= usize::from(MAX_SEGMENT_DESCRIPTORS) {
            return Err(Sense::illegal(Asc::TOO_MANY_SEGMENT_DESCRIPTORS));
        }
        let kind = list[at];
        let want = match kind {
            SEG_BLOCK_TO_BLOCK => 0x1C,
            SEG_BLOCK_TO_BLOCK_OFFSET => 0x20,
            _ => {
                let mut s = Sense::illegal(Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE);
                s.field = param(at, None).field;
                return Err(s);
            }
        };
        if end - at < 4 {
            return Err(param(8, None));
        }
        if u32::from(u16_at(list, at + 2)) as usize + 4 != want {
            return Err(param(at + 2, None));
        }
        if end - at < want {
            // The SEGMENT DESCRIPTOR LIST LENGTH cuts the last descriptor.
            return Err(param(8, None));
        }
        let d = &list[at..at + want];
        let amount = if kind == SEG_BLOCK_TO_BLOCK {
            Amount::Blocks {
                blocks: u16_at(d, 10),
                dc: d[1] & 0x02 != 0,
            }
        } else {
            Amount::Bytes {
                bytes: u32_at(d, 8),
                src_offset: u16_at(d, 28),
                dst_offset: u16_at(d, 30),
            }
        };
        out.push(Segment {
            offset: at as u32,
            src: u16_at(d, 4),
            dst: u16_at(d, 6),
            amount,
            src_lba: u64_at(d, 12),
            dst_lba: u64_at(d, 20),
        });
        at += want;
    }
    Ok(out)
}

/// Encoders for tests: parameter lists as an initiator builds them.
#[cfg(test)]
pub mod encode {
    use super::*;

    /// An identification CSCD descriptor naming an NAA designator of a block device.
    pub fn cscd_naa(naa: &[u8], block_len: u32) -> Vec<u8> {
        let mut d = vec![0u8; CSCD_LEN];
        d[0] = CSCD_IDENTIFICATION;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = naa.len() as u8;
        d[8..8 + naa.len()].copy_from_slice(naa);
        d[29..32].copy_from_slice(&block_len.to_be_bytes()[1..]);
        d
    }

    /// A type 02h segment descriptor.
    pub fn seg_blocks(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        let mut d = vec![0u8; 0x1C];
        d[0] = SEG_BLOCK_TO_BLOCK;
        d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
        d[4..6].copy_from_slice(&src.to_be_bytes());
        d[6..8].copy_from_slice(&dst.to_be_bytes());
        d[10..12].copy_from_slice(&blocks.to_be_bytes());
        d[12..20].copy_from_slice(&src_lba.to_be_bytes());
        d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
        d
    }

    /// A type 0Ah segment descriptor.
    pub fn seg_bytes(src: u16, dst: u16, bytes: u32, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        let mut d = vec![0u8; 0x20];
        d[0] = SEG_BLOCK_TO_BLOCK_OFFSET;
        d[2..4].copy_from_slice(&0x1Cu16.to_be_bytes());
        d[4..6].copy_from_slice(&src.to_be_bytes());
        d[6..8].copy_from_slice(&dst.to_be_bytes());
        d[8..12].copy_from_slice(&bytes.to_be_bytes());
        d[12..20].copy_from_slice(&src_lba.to_be_bytes());
        d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
        d
    }

    /// Header + descriptors; `usage` is the raw 2-bit LIST ID USAGE.
    pub fn list(list_id: u8, usage: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
        let cscd: Vec<u8> = cscds.concat();
        let seg: Vec<u8> = segs.concat();
        let mut l = vec![0u8; HEADER_LEN];
        l[0] = list_id;
        l[1] = usage << 3;
        l[2..4].copy_from_slice(&(cscd.len() as u16).to_be_bytes());
        l[8..12].copy_from_slice(&(seg.len() as u32).to_be_bytes());
        l.extend_from_slice(&cscd);
        l.extend_from_slice(&seg);
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::{FieldPointer, SenseKey};
    use proptest::prelude::*;

    const NAA: [u8; 16] = [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    fn asc(r: Result<CopyList, Sense>) -> Asc {
        let s = r.unwrap_err();
        assert_eq!(s.key, SenseKey::IllegalRequest);
        s.asc
    }

    #[test]
    fn cdbs_decode_and_reject_other_service_actions() {
        let mut c = [0u8; 16];
        c[0] = 0x83;
        c[10..14].copy_from_slice(&76u32.to_be_bytes());
        assert_eq!(
            super::super::decode(&c).unwrap(),
            Cdb::ExtendedCopy { param_len: 76 }
        );
        c[1] = 0x01; // LID4
        assert_eq!(
            super::super::decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(4)))
        );
        let mut c = [0u8; 16];
        c[0] = 0x84;
        c[1] = SA_OPERATING_PARAMETERS;
        c[2] = 7;
        c[10..14].copy_from_slice(&1024u32.to_be_bytes());
        assert_eq!(
            super::super::decode(&c).unwrap(),
            Cdb::ReceiveCopyResults {
                action: 3,
                list_id: 7,
                alloc_len: 1024
            }
        );
        c[1] = 0x05;
        assert!(super::super::decode(&c).is_err());
        c[1] = 0;
        c[5] = 1;
        assert_eq!(
            super::super::decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(5, Some(0)))
        );
    }

    #[test]
    fn header_checks() {
        let l = encode::list(1, 0, &[encode::cscd_naa(&NAA, 512)], &[]);
        assert_eq!(asc(parse_list(&l[..15])), Asc::PARAMETER_LIST_LENGTH_ERROR);
        assert_eq!(asc(parse_list(&l[..40])), Asc::PARAMETER_LIST_LENGTH_ERROR);
        let mut bad = l.clone();
        bad[1] = 1 << 3; // LIST ID USAGE 01b is reserved
        assert_eq!(
            parse_list(&bad).unwrap_err().field,
            Some(FieldPointer::param(1, Some(4)))
        );
        bad[1] = 3 << 3; // 11b needs list id 0
        assert_eq!(
            parse_list(&bad).unwrap_err().field,
            Some(FieldPointer::param(0, None))
        );
        bad[0] = 0;
        assert_eq!(parse_list(&bad).unwrap().usage, ListIdUsage::None);
        let mut inline = l.clone();
        inline[15] = 4;
        assert_eq!(
            asc(parse_list(&inline)),
            Asc::INVALID_FIELD_IN_PARAMETER_LIST
        );
    }

    #[test]
    fn descriptor_limits() {
        let seg = encode::seg_blocks(0, 0, 1, 0, 1);
        let many = vec![encode::cscd_naa(&NAA, 512); usize::from(MAX_CSCD_DESCRIPTORS) + 1];
        let l = encode::list(1, 0, &many, std::slice::from_ref(&seg));
        assert_eq!(asc(parse_list(&l)), Asc::TOO_MANY_TARGET_DESCRIPTORS);
        let segs = vec![seg.clone(); usize::from(MAX_SEGMENT_DESCRIPTORS) + 1];
        let l = encode::list(1, 0, &[encode::cscd_naa(&NAA, 512)], &segs);
        assert_eq!(asc(parse_list(&l)), Asc::TOO_MANY_SEGMENT_DESCRIPTORS);
        // Over the list length limit: a length error before any descriptor is looked at.
        let segs = vec![seg; usize::from(MAX_SEGMENT_DESCRIPTORS) * 2];
        let l = encode::list(1, 0, &many, &segs);
        assert_eq!(asc(parse_list(&l)), Asc::PARAMETER_LIST_LENGTH_ERROR);
    }

    #[test]
    fn unsupported_descriptor_types_point_at_the_type_code() {
        let mut fc = encode::cscd_naa(&NAA, 512);
        fc[0] = 0xE0;
        let l = encode::list(1, 0, &[fc], &[encode::seg_blocks(0, 0, 1, 0, 1)]);
        let s = parse_list(&l).unwrap_err();
        assert_eq!(s.asc, Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE);
        assert_eq!(s.field, Some(FieldPointer::param(16, None)));
        let mut stream = vec![0u8; 0x14];
        stream[0] = 0x03;
        stream[3] = 0x10;
        let l = encode::list(1, 0, &[encode::cscd_naa(&NAA, 512)], &[stream]);
        let s = parse_list(&l).unwrap_err();
        assert_eq!(s.asc, Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE);
        assert_eq!(s.field, Some(FieldPointer::param(48, None)));
    }

    #[test]
    fn wrong_descriptor_length_is_an_invalid_field() {
        let mut seg = encode::seg_blocks(0, 0, 1, 0, 1);
        seg[3] = 0x14;
        let l = encode::list(1, 0, &[encode::cscd_naa(&NAA, 512)], &[seg]);
        assert_eq!(
            parse_list(&l).unwrap_err().field,
            Some(FieldPointer::param(50, None))
        );
        let mut l = encode::list(1, 0, &[encode::cscd_naa(&NAA, 512)], &[]);
        l[3] = 31; // CSCD list length cuts the descriptor
        l.truncate(47);
        assert_eq!(
            parse_list(&l).unwrap_err().field,
            Some(FieldPointer::param(2, None))
        );
    }

    proptest! {
        #[test]
        fn round_trip(
            list_id in any::<u8>(),
            hold in any::<bool>(),
            naas in proptest::collection::vec(any::<[u8; 16]>(), 1..=MAX_CSCD_DESCRIPTORS as usize),
            segs in proptest::collection::vec(
                (any::<u16>(), any::<u16>(), any::<u16>(), any::<u64>(), any::<u64>(), any::<bool>()),
                0..=MAX_SEGMENT_DESCRIPTORS as usize),
        ) {
            let cscds: Vec<_> = naas.iter().map(|n| encode::cscd_naa(n, 4096)).collect();
            let seg_bytes: Vec<_> = segs.iter().map(|&(s, d, n, a, b, bytes)| if bytes {
                encode::seg_bytes(s, d, u32::from(n) * 512, a, b)
            } else {
                encode::seg_blocks(s, d, n, a, b)
            }).collect();
            let l = encode::list(list_id, if hold { 0 } else { 2 }, &cscds, &seg_bytes);
            let p = parse_list(&l).unwrap();
            prop_assert_eq!(p.list_id, list_id);
            prop_assert_eq!(p.usage, if hold { ListIdUsage::Hold } else { ListIdUsage::NoHold });
            prop_assert_eq!(p.cscds.len(), naas.len());
            for (c, n) in p.cscds.iter().zip(&naas) {
                prop_assert_eq!(c.designator.naa(), Some(&n[..]));
                prop_assert_eq!(c.block_len, 4096);
            }
            prop_assert_eq!(p.segments.len(), segs.len());
            for (g, &(s, d, n, a, b, bytes)) in p.segments.iter().zip(&segs) {
                prop_assert_eq!((g.src, g.dst, g.src_lba, g.dst_lba), (s, d, a, b));
                let want = if bytes {
                    Amount::Bytes { bytes: u32::from(n) * 512, src_offset: 0, dst_offset: 0 }
                } else {
                    Amount::Blocks { blocks: n, dc: false }
                };
                prop_assert_eq!(g.amount, want);
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_list(&bytes);
        }
    }
}
