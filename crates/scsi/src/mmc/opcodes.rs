//! REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) for a CD/DVD unit: its own command set,
//! encoded the same way as the disk's (`disk/opcodes.rs`).

use super::cdb::{
    GET_CONFIGURATION, GET_EVENT_STATUS_NOTIFICATION, MECHANISM_STATUS, READ_DISC_INFORMATION,
    READ_TOC, READ_TRACK_INFORMATION,
};
use crate::IoBuf;
use crate::disk::Outcome;
use crate::disk::opcodes::{FF, OpRow, encode_report, row, shared};

/// Every command of the unit, ascending by (opcode, service action).
pub const TABLE: &[OpRow] = &[
    shared::TEST_UNIT_READY,
    shared::REQUEST_SENSE,
    shared::READ_6,
    shared::INQUIRY,
    shared::MODE_SENSE_6,
    shared::START_STOP_UNIT,
    shared::PREVENT_ALLOW_MEDIUM_REMOVAL,
    shared::READ_CAPACITY_10,
    shared::READ_10,
    row(&[READ_TOC, 0x02, 0x0F, 0, 0, 0, FF, FF, FF, 0xC0]),
    row(&[GET_CONFIGURATION, 0x03, FF, FF, 0, 0, 0, FF, FF, 0]),
    row(&[
        GET_EVENT_STATUS_NOTIFICATION,
        0x01,
        0,
        0,
        FF,
        0,
        0,
        FF,
        FF,
        0,
    ]),
    row(&[READ_DISC_INFORMATION, 0, 0, 0, 0, 0, 0, FF, FF, 0]),
    row(&[READ_TRACK_INFORMATION, 0x03, FF, FF, FF, FF, 0, FF, FF, 0]),
    shared::MODE_SENSE_10,
    shared::READ_16,
    shared::READ_CAPACITY_16,
    shared::REPORT_LUNS,
    shared::REPORT_SUPPORTED_OPCODES,
    shared::REPORT_SUPPORTED_TMFS,
    shared::READ_12,
    row(&[MECHANISM_STATUS, 0, 0, 0, 0, 0, 0, 0, FF, FF, 0, 0]),
];

/// REPORTING OPTIONS 000b all commands, 001b one opcode without service actions, 010b one
/// with, 011b either (SPC-4 table 300), over this unit's table.
pub fn report_opcodes(
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
    alloc_len: u32,
    out: &mut IoBuf,
) -> Outcome {
    encode_report(TABLE.iter(), rctd, options, opcode, sa, alloc_len, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdb::{Cdb, group_len, op};

    #[test]
    fn table_is_sorted_and_every_row_decodes() {
        assert!(
            TABLE
                .windows(2)
                .all(|w| (w[0].opcode, w[0].sa) < (w[1].opcode, w[1].sa))
        );
        for r in TABLE {
            assert_eq!(Some(r.usage.len()), group_len(r.opcode), "{r:?}");
            let mut c = vec![0u8; r.usage.len()];
            c[0] = r.opcode;
            if let Some(sa) = r.sa {
                c[1] = sa as u8;
            }
            if r.opcode == GET_EVENT_STATUS_NOTIFICATION {
                c[1] = 1;
            }
            match super::super::decode(&c) {
                Ok(_) => {}
                Err(s) => assert_ne!(
                    s.asc,
                    crate::sense::Asc::INVALID_COMMAND_OPERATION_CODE,
                    "{r:?}"
                ),
            }
        }
        // And every opcode the unit decodes has a row.
        for opcode in 0..=u8::MAX {
            let Some(len) = group_len(opcode) else {
                continue;
            };
            let mut c = vec![0u8; len];
            c[0] = opcode;
            c[1] = 1;
            if matches!(super::super::decode(&c), Ok(Cdb::Mmc(_)) | Ok(Cdb::Read(_))) {
                assert!(TABLE.iter().any(|r| r.opcode == opcode), "{opcode:#x}");
            }
        }
    }

    #[test]
    fn one_command_and_all() {
        let mut out = Vec::new();
        report_opcodes(false, 1, READ_TOC, 0, 512, &mut out).unwrap();
        assert_eq!(&out[..5], &[0, 0x03, 0, 10, READ_TOC]);
        report_opcodes(false, 1, op::WRITE_10, 0, 512, &mut out).unwrap();
        assert_eq!(out, [0, 1, 0, 0]);
        report_opcodes(true, 0, 0, 0, u32::MAX, &mut out).unwrap();
        assert_eq!(out.len(), 4 + 20 * TABLE.len());
    }
}
