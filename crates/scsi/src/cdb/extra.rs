//! Decoders for PRE-FETCH, READ DEFECT DATA, ORWRITE, COMPARE AND WRITE, WRITE ATOMIC and
//! the MAINTENANCE IN reports. Kept beside `cdb.rs` so they share its field helpers.

use esos_common::be::{u16_at, u32_at, u64_at};

use super::{BlockRange, Cdb, op, protect, range, reserved};
use crate::sense::Sense;

/// SBC-3 5.11/5.12: IMMED is the only flag; the group number is accepted and ignored.
pub(super) fn pre_fetch(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0x02)?;
    let (lba, blocks) = if c.len() == 10 {
        reserved(c, 6, 0x1F)?;
        (u64::from(u32_at(c, 2)), u32::from(u16_at(c, 7)))
    } else {
        reserved(c, 14, 0x1F)?;
        (u64_at(c, 2), u32_at(c, 10))
    };
    Ok(Cdb::PreFetch {
        lba,
        blocks,
        immed: c[1] & 0x02 != 0,
    })
}

/// SBC-3 5.17 (10: flags in byte 2) and 5.18 (12: flags in byte 1).
pub(super) fn read_defect_data(c: &[u8]) -> Result<Cdb, Sense> {
    let twelve = c.len() == 12;
    let (flags, alloc_len) = if twelve {
        reserved(c, 1, 0x1F)?;
        (c[1], u32_at(c, 6))
    } else {
        reserved(c, 1, 0x00)?;
        reserved(c, 2, 0x1F)?;
        (c[2], u32::from(u16_at(c, 7)))
    };
    Ok(Cdb::ReadDefectData {
        twelve,
        plist: flags & 0x10 != 0,
        glist: flags & 0x08 != 0,
        format: flags & 0x07,
        alloc_len,
    })
}

/// SBC-3 5.13: ORPROTECT, DPO, FUA (FUA_NV obsolete, accepted); group number ignored.
pub(super) fn orwrite(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0xFA)?;
    protect(c)?;
    reserved(c, 14, 0x1F)?;
    Ok(Cdb::OrWrite(range(c)))
}

/// SBC-3 5.2: WRPROTECT, DPO, FUA; NUMBER OF LOGICAL BLOCKS in byte 13.
pub(super) fn compare_and_write(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0xFA)?;
    protect(c)?;
    for byte in 10..13 {
        reserved(c, byte, 0)?;
    }
    reserved(c, 14, 0x1F)?;
    Ok(Cdb::CompareAndWrite(BlockRange {
        lba: u64_at(c, 2),
        blocks: u32::from(c[13]),
        fua: c[1] & 0x08 != 0,
        dpo: c[1] & 0x10 != 0,
        len_byte: 13,
    }))
}

/// SBC-4 5.48: WRPROTECT, DPO, FUA; a 16-bit TRANSFER LENGTH in bytes 12-13. We report a
/// MAXIMUM ATOMIC BOUNDARY SIZE of 0 (no boundaries), so a non-zero ATOMIC BOUNDARY is invalid.
pub(super) fn write_atomic(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0xF8)?;
    protect(c)?;
    if u32::from(u16_at(c, 10)) != 0 {
        return Err(Sense::invalid_cdb_field(10, None));
    }
    reserved(c, 14, 0x1F)?;
    Ok(Cdb::WriteAtomic(BlockRange {
        lba: u64_at(c, 2),
        blocks: u32::from(u16_at(c, 12)),
        fua: c[1] & 0x08 != 0,
        dpo: c[1] & 0x10 != 0,
        len_byte: 12,
    }))
}

/// MAINTENANCE IN (SPC-4 6.35, 6.36); other service actions are not implemented.
pub(super) fn maintenance_in(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0x1F)?;
    reserved(c, 10, 0)?;
    match c[1] & 0x1F {
        op::SA_REPORT_SUPPORTED_OPCODES => {
            reserved(c, 2, 0x87)?;
            let options = c[2] & 0x07;
            // Reporting options above 011b are reserved (SPC-4 table 300).
            if options > 3 {
                return Err(Sense::invalid_cdb_field(2, Some(2)));
            }
            Ok(Cdb::ReportOpcodes {
                rctd: c[2] & 0x80 != 0,
                options,
                opcode: c[3],
                sa: u16_at(c, 4),
                alloc_len: u32_at(c, 6),
            })
        }
        op::SA_REPORT_SUPPORTED_TMFS => {
            reserved(c, 2, 0x80)?;
            for byte in 3..6 {
                reserved(c, byte, 0)?;
            }
            let alloc_len = u32_at(c, 6);
            // SPC-4 6.36: an ALLOCATION LENGTH below 4 is an error, not a truncation.
            if alloc_len < 4 {
                return Err(Sense::invalid_cdb_field(6, None));
            }
            Ok(Cdb::ReportTmfs {
                repd: c[2] & 0x80 != 0,
                alloc_len,
            })
        }
        _ => Err(Sense::invalid_cdb_field(1, Some(4))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;
    use crate::sense::FieldPointer;
    use proptest::prelude::*;

    fn cdb16(opcode: u8, b1: u8, lba: u64, len_at_10: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = opcode;
        c[1] = b1;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&len_at_10.to_be_bytes());
        c
    }

    proptest! {
        #[test]
        fn pre_fetch_16_round_trip(lba in any::<u64>(), blocks in any::<u32>(), immed in any::<bool>(), group in 0u8..32) {
            let mut c = cdb16(op::PRE_FETCH_16, if immed { 2 } else { 0 }, lba, blocks);
            c[14] = group;
            prop_assert_eq!(decode(&c).unwrap(), Cdb::PreFetch { lba, blocks, immed });
        }

        #[test]
        fn compare_and_write_round_trip(lba in any::<u64>(), nlb in any::<u8>(), fua in any::<bool>(), dpo in any::<bool>()) {
            let mut c = [0u8; 16];
            c[0] = op::COMPARE_AND_WRITE;
            c[1] = (if fua { 0x08 } else { 0 }) | (if dpo { 0x10 } else { 0 });
            c[2..10].copy_from_slice(&lba.to_be_bytes());
            c[13] = nlb;
            let Cdb::CompareAndWrite(r) = decode(&c).unwrap() else { panic!() };
            prop_assert_eq!((r.lba, r.blocks, r.fua, r.dpo, r.len_byte), (lba, u32::from(nlb), fua, dpo, 13));
        }

        #[test]
        fn write_atomic_round_trip(lba in any::<u64>(), blocks in any::<u16>()) {
            let mut c = [0u8; 16];
            c[0] = op::WRITE_ATOMIC_16;
            c[2..10].copy_from_slice(&lba.to_be_bytes());
            c[12..14].copy_from_slice(&blocks.to_be_bytes());
            let Cdb::WriteAtomic(r) = decode(&c).unwrap() else { panic!() };
            prop_assert_eq!((r.lba, r.blocks), (lba, u32::from(blocks)));
        }

        #[test]
        fn report_opcodes_round_trip(rctd in any::<bool>(), options in 0u8..4, opcode in any::<u8>(), sa in any::<u16>(), alloc_len in any::<u32>()) {
            let mut c = [0u8; 12];
            c[0] = op::MAINTENANCE_IN;
            c[1] = op::SA_REPORT_SUPPORTED_OPCODES;
            c[2] = options | if rctd { 0x80 } else { 0 };
            c[3] = opcode;
            c[4..6].copy_from_slice(&sa.to_be_bytes());
            c[6..10].copy_from_slice(&alloc_len.to_be_bytes());
            prop_assert_eq!(decode(&c).unwrap(), Cdb::ReportOpcodes { rctd, options, opcode, sa, alloc_len });
        }
    }

    #[test]
    fn pre_fetch_10_fields() {
        let c = [op::PRE_FETCH_10, 0x02, 0, 0, 1, 0, 3, 0, 9, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::PreFetch {
                lba: 256,
                blocks: 9,
                immed: true
            }
        );
        let c = [op::PRE_FETCH_10, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(0)))
        );
    }

    #[test]
    fn read_defect_data_flags() {
        let c = [op::READ_DEFECT_DATA_10, 0, 0x1D, 0, 0, 0, 0, 0, 32, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::ReadDefectData {
                twelve: false,
                plist: true,
                glist: true,
                format: 5,
                alloc_len: 32
            }
        );
        let c = [op::READ_DEFECT_DATA_12, 0x08, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::ReadDefectData {
                twelve: true,
                plist: false,
                glist: true,
                format: 0,
                alloc_len: 256
            }
        );
    }

    #[test]
    fn invalid_fields_point_at_the_field() {
        // WRITE ATOMIC with an atomic boundary.
        let mut c = [0u8; 16];
        c[0] = op::WRITE_ATOMIC_16;
        c[11] = 1;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(10, None))
        );
        // COMPARE AND WRITE reserved byte 11.
        let mut c = [0u8; 16];
        c[0] = op::COMPARE_AND_WRITE;
        c[11] = 0x80;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(11, Some(7)))
        );
        // ORWRITE with ORPROTECT.
        let c = cdb16(op::ORWRITE_16, 0x20, 0, 1);
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(7)))
        );
        // Reserved reporting option and unknown MAINTENANCE IN service action.
        let mut c = [0u8; 12];
        c[0] = op::MAINTENANCE_IN;
        c[1] = op::SA_REPORT_SUPPORTED_OPCODES;
        c[2] = 4;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(2, Some(2)))
        );
        c[1] = 0x05;
        c[2] = 0;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(4)))
        );
        // REPORT SUPPORTED TMFS with ALLOCATION LENGTH < 4.
        c[1] = op::SA_REPORT_SUPPORTED_TMFS;
        c[9] = 3;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(6, None))
        );
        c[9] = 4;
        c[2] = 0x80;
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::ReportTmfs {
                repd: true,
                alloc_len: 4
            }
        );
    }
}
