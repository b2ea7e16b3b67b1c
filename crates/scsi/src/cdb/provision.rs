//! Decoders for the logical block provisioning commands: UNMAP, WRITE SAME(10)/(16) and
//! GET LBA STATUS (SBC-3 5.28, 5.40, 5.41, 5.16). Kept beside `cdb.rs` for its field helpers.

use esos_common::be::{u16_at, u32_at, u64_at};

use super::{Cdb, WriteSame, protect, reserved};
use crate::sense::Sense;

/// SBC-3 5.28: ANCHOR is byte 1 bit 0; the group number is accepted and ignored.
pub(super) fn unmap(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0x01)?;
    reserved(c, 6, 0x1F)?;
    Ok(Cdb::Unmap {
        anchor: c[1] & 0x01 != 0,
        param_len: u32::from(u16_at(c, 7)),
    })
}

/// SBC-3 5.40/5.41: WRPROTECT, ANCHOR (bit 4), UNMAP (bit 3); PBDATA and LBDATA (bits 2,
/// 1) are obsolete and refused; NDOB (bit 0) exists only in the 16-byte CDB (SBC-4).
pub(super) fn write_same(c: &[u8]) -> Result<Cdb, Sense> {
    let ten = c.len() == 10;
    reserved(c, 1, if ten { 0xF8 } else { 0xF9 })?;
    protect(c)?;
    let (lba, blocks, len_byte) = if ten {
        reserved(c, 6, 0x1F)?;
        (u64::from(u32_at(c, 2)), u32::from(u16_at(c, 7)), 7)
    } else {
        reserved(c, 14, 0x3F)?;
        (u64_at(c, 2), u32_at(c, 10), 10)
    };
    Ok(Cdb::WriteSame(WriteSame {
        lba,
        blocks,
        unmap: c[1] & 0x08 != 0,
        anchor: c[1] & 0x10 != 0,
        ndob: c[1] & 0x01 != 0,
        len_byte,
    }))
}

/// SBC-3 5.16: GET LBA STATUS, a SERVICE ACTION IN(16) service action.
pub(super) fn get_lba_status(c: &[u8]) -> Result<Cdb, Sense> {
    Ok(Cdb::GetLbaStatus {
        lba: u64_at(c, 2),
        alloc_len: u32_at(c, 10),
    })
}

/// CDB encoders for tests.
#[cfg(test)]
pub mod encode {
    use crate::cdb::op;

    pub fn unmap(anchor: bool, param_len: u16) -> Vec<u8> {
        let mut c = vec![0u8; 10];
        c[0] = op::UNMAP;
        c[1] = u8::from(anchor);
        c[7..9].copy_from_slice(&param_len.to_be_bytes());
        c
    }

    /// WRITE SAME(10) when `ten`, else (16). `flags` is byte 1 (UNMAP 0x08, ANCHOR 0x10,
    /// NDOB 0x01).
    pub fn write_same(ten: bool, lba: u64, blocks: u32, flags: u8) -> Vec<u8> {
        if ten {
            let mut c = vec![0u8; 10];
            c[0] = op::WRITE_SAME_10;
            c[1] = flags;
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
            c
        } else {
            let mut c = vec![0u8; 16];
            c[0] = op::WRITE_SAME_16;
            c[1] = flags;
            c[2..10].copy_from_slice(&lba.to_be_bytes());
            c[10..14].copy_from_slice(&blocks.to_be_bytes());
            c
        }
    }

    pub fn get_lba_status(lba: u64, alloc_len: u32) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = op::SERVICE_ACTION_IN_16;
        c[1] = op::SA_GET_LBA_STATUS;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&alloc_len.to_be_bytes());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdb::decode;
    use crate::sense::FieldPointer;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn write_same_round_trip(ten: bool, lba: u64, blocks: u32, unmap: bool, ndob: bool) {
            let (lba, blocks) = if ten { (lba & 0xFFFF_FFFF, blocks & 0xFFFF) } else { (lba, blocks) };
            let ndob = ndob && !ten;
            let flags = if unmap { 0x08 } else { 0 } | u8::from(ndob);
            let got = decode(&encode::write_same(ten, lba, blocks, flags)).unwrap();
            let want = WriteSame {
                lba,
                blocks,
                unmap,
                anchor: false,
                ndob,
                len_byte: if ten { 7 } else { 10 },
            };
            prop_assert_eq!(got, Cdb::WriteSame(want));
        }

        #[test]
        fn get_lba_status_round_trip(lba: u64, alloc_len: u32) {
            let got = decode(&encode::get_lba_status(lba, alloc_len)).unwrap();
            prop_assert_eq!(got, Cdb::GetLbaStatus { lba, alloc_len });
        }

        #[test]
        fn unmap_round_trip(anchor: bool, param_len: u16) {
            let got = decode(&encode::unmap(anchor, param_len)).unwrap();
            prop_assert_eq!(got, Cdb::Unmap { anchor, param_len: u32::from(param_len) });
        }
    }

    #[test]
    fn obsolete_and_reserved_bits_are_refused() {
        // LBDATA (bit 1) in WRITE SAME(10).
        let c = encode::write_same(true, 0, 1, 0x02);
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(1)))
        );
        // NDOB does not exist in WRITE SAME(10).
        let c = encode::write_same(true, 0, 1, 0x01);
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(0)))
        );
        // WRPROTECT needs protection information.
        let c = encode::write_same(false, 0, 1, 0x20);
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(7)))
        );
        let mut c = encode::unmap(false, 24);
        c[1] = 0x02;
        assert!(decode(&c).is_err());
    }
}
