//! Decoders for REPORT TARGET PORT GROUPS (MAINTENANCE IN) and SET TARGET PORT GROUPS
//! (MAINTENANCE OUT), SPC-4 6.27 and 6.39.

use esos_common::be::u32_at;

use super::{Cdb, op, reserved};
use crate::sense::Sense;

/// SPC-4 6.27: PARAMETER DATA FORMAT in byte 1 bits 7-5 (000b length only, 001b
/// extended header); bytes 2-5 and 10 reserved.
pub(super) fn report_target_port_groups(c: &[u8]) -> Result<Cdb, Sense> {
    let extended = match c[1] >> 5 {
        0 => false,
        1 => true,
        _ => return Err(Sense::invalid_cdb_field(1, Some(7))),
    };
    for byte in [2, 3, 4, 5, 10] {
        reserved(c, byte, 0)?;
    }
    Ok(Cdb::ReportTargetPortGroups {
        extended,
        alloc_len: u32_at(c, 6),
    })
}

/// MAINTENANCE OUT: only SET TARGET PORT GROUPS (SPC-4 6.39); bytes 2-5 and 10 reserved.
pub(super) fn maintenance_out(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0x1F)?;
    if c[1] & 0x1F != op::SA_SET_TARGET_PORT_GROUPS {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    for byte in [2, 3, 4, 5, 10] {
        reserved(c, byte, 0)?;
    }
    Ok(Cdb::SetTargetPortGroups {
        param_len: u32_at(c, 6),
    })
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;
    use crate::sense::{Asc, FieldPointer};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rtpg_round_trip(extended in any::<bool>(), alloc_len in any::<u32>()) {
            let mut c = [0u8; 12];
            c[0] = op::MAINTENANCE_IN;
            c[1] = op::SA_REPORT_TARGET_PORT_GROUPS | if extended { 0x20 } else { 0 };
            c[6..10].copy_from_slice(&alloc_len.to_be_bytes());
            prop_assert_eq!(decode(&c).unwrap(), Cdb::ReportTargetPortGroups { extended, alloc_len });
        }

        #[test]
        fn stpg_round_trip(param_len in any::<u32>()) {
            let mut c = [0u8; 12];
            c[0] = op::MAINTENANCE_OUT;
            c[1] = op::SA_SET_TARGET_PORT_GROUPS;
            c[6..10].copy_from_slice(&param_len.to_be_bytes());
            prop_assert_eq!(decode(&c).unwrap(), Cdb::SetTargetPortGroups { param_len });
        }
    }

    #[test]
    fn bad_fields_have_pointers() {
        let mut c = [0u8; 12];
        c[0] = op::MAINTENANCE_IN;
        c[1] = op::SA_REPORT_TARGET_PORT_GROUPS | 0x40;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(7)))
        );
        c[1] = op::SA_REPORT_TARGET_PORT_GROUPS;
        c[4] = 1;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(4, Some(0)))
        );
        let mut c = [0u8; 12];
        c[0] = op::MAINTENANCE_OUT;
        c[1] = 0x0B;
        let e = decode(&c).unwrap_err();
        assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(e.field, Some(FieldPointer::cdb(1, Some(4))));
        c[1] = op::SA_SET_TARGET_PORT_GROUPS | 0x80;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(7)))
        );
        c[1] = op::SA_SET_TARGET_PORT_GROUPS;
        c[10] = 0x04;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(10, Some(2)))
        );
    }
}
