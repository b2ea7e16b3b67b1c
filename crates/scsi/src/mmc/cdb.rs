//! Decoding for a CD/DVD unit: the MMC-only commands here, the SPC/SBC commands a drive
//! also accepts through the shared decoder, every other opcode (writes included: the disc
//! is read-only and no recording profile exists) INVALID COMMAND OPERATION CODE.

use esos_common::be::u16_at;

use crate::cdb::{self, Cdb, MmcCdb, op};
use crate::sense::{Asc, Sense};

pub const READ_TOC: u8 = 0x43;
pub const GET_CONFIGURATION: u8 = op::GET_CONFIGURATION;
pub const GET_EVENT_STATUS_NOTIFICATION: u8 = op::GET_EVENT_STATUS_NOTIFICATION;
pub const READ_DISC_INFORMATION: u8 = 0x51;
pub const READ_TRACK_INFORMATION: u8 = 0x52;
pub const MECHANISM_STATUS: u8 = 0xBD;

/// SPC/SBC commands that mean the same on a CD/DVD unit.
const SHARED: [u8; 15] = [
    op::TEST_UNIT_READY,
    op::REQUEST_SENSE,
    op::READ_6,
    op::INQUIRY,
    op::MODE_SENSE_6,
    op::START_STOP_UNIT,
    op::PREVENT_ALLOW_MEDIUM_REMOVAL,
    op::READ_CAPACITY_10,
    op::READ_10,
    op::MODE_SENSE_10,
    op::READ_16,
    op::REPORT_LUNS,
    op::MAINTENANCE_IN,
    op::READ_12,
    op::SERVICE_ACTION_IN_16,
];

/// Fails with a field pointer at the first set bit of `byte` that `allowed` does not cover.
fn reserved(c: &[u8], byte: usize, allowed: u8) -> Result<(), Sense> {
    let bad = c[byte] & !allowed;
    if bad == 0 {
        return Ok(());
    }
    Err(Sense::invalid_cdb_field(
        byte as u16,
        Some(7 - bad.leading_zeros() as u8),
    ))
}

/// Decodes `c` (exactly the bytes that arrived) for a CD/DVD unit.
pub fn decode(c: &[u8]) -> Result<Cdb, Sense> {
    let invalid_opcode = || Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE);
    let Some(&opcode) = c.first() else {
        return Err(invalid_opcode());
    };
    if SHARED.contains(&opcode) {
        let decoded = cdb::decode(c)?;
        // SERVICE ACTION IN(16) is here only for READ CAPACITY(16), MAINTENANCE IN only for
        // the REPORT SUPPORTED ... commands.
        return match decoded {
            Cdb::ReadCapacity16 { .. } | Cdb::ReportOpcodes { .. } | Cdb::ReportTmfs { .. } => {
                Ok(decoded)
            }
            _ if opcode == op::SERVICE_ACTION_IN_16 || opcode == op::MAINTENANCE_IN => {
                Err(Sense::invalid_cdb_field(1, Some(4)))
            }
            _ => Ok(decoded),
        };
    }
    let len = match opcode {
        READ_TOC
        | GET_CONFIGURATION
        | GET_EVENT_STATUS_NOTIFICATION
        | READ_DISC_INFORMATION
        | READ_TRACK_INFORMATION => 10,
        MECHANISM_STATUS => 12,
        _ => return Err(invalid_opcode()),
    };
    if c.len() < len {
        return Err(invalid_opcode());
    }
    let c = &c[..len];
    // SAM-5 5.2 control byte: vendor bits only (NACA needs NormACA, LINK is obsolete).
    reserved(c, len - 1, 0xC0)?;
    let m = match opcode {
        READ_TOC => {
            reserved(c, 1, 0x02)?;
            reserved(c, 2, 0x0F)?;
            MmcCdb::ReadToc {
                msf: c[1] & 0x02 != 0,
                format: c[2] & 0x0F,
                track: c[6],
                alloc_len: u32::from(u16_at(c, 7)),
            }
        }
        GET_CONFIGURATION => {
            reserved(c, 1, 0x03)?;
            if c[1] & 0x03 == 0x03 {
                return Err(Sense::invalid_cdb_field(1, Some(1)));
            }
            MmcCdb::GetConfiguration {
                rt: c[1] & 0x03,
                start: u16_at(c, 2),
                alloc_len: u32::from(u16_at(c, 7)),
            }
        }
        GET_EVENT_STATUS_NOTIFICATION => {
            // MMC-6 6.7.1: asynchronous notification is not supported, so POLLED must be 1.
            if c[1] != 0x01 {
                return Err(Sense::invalid_cdb_field(1, Some(0)));
            }
            MmcCdb::GetEventStatus {
                classes: c[4],
                alloc_len: u32::from(u16_at(c, 7)),
            }
        }
        READ_DISC_INFORMATION => {
            // DATA TYPE 000b only: standard disc information.
            reserved(c, 1, 0x00)?;
            MmcCdb::ReadDiscInfo {
                alloc_len: u32::from(u16_at(c, 7)),
            }
        }
        READ_TRACK_INFORMATION => {
            // OPEN (bit 2) asks for an open track; a pressed disc has none.
            reserved(c, 1, 0x03)?;
            if c[1] & 0x03 == 0x03 {
                return Err(Sense::invalid_cdb_field(1, Some(1)));
            }
            MmcCdb::ReadTrackInfo {
                addr_type: c[1] & 0x03,
                addr: u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                alloc_len: u32::from(u16_at(c, 7)),
            }
        }
        _ => MmcCdb::MechanismStatus {
            alloc_len: u32::from_be_bytes([0, c[7], c[8], c[9]]),
        },
    };
    Ok(Cdb::Mmc(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::{FieldPointer, SenseKey};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn mmc_commands() {
        let c = [READ_TOC, 0x02, 0x01, 0, 0, 0, 0xAA, 0x03, 0x24, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::Mmc(MmcCdb::ReadToc {
                msf: true,
                format: 1,
                track: 0xAA,
                alloc_len: 0x324
            })
        );
        let c = [GET_CONFIGURATION, 0x02, 0x00, 0x1E, 0, 0, 0, 0, 8, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::Mmc(MmcCdb::GetConfiguration {
                rt: 2,
                start: 0x1E,
                alloc_len: 8
            })
        );
        let c = [GET_EVENT_STATUS_NOTIFICATION, 0, 0, 0, 0x10, 0, 0, 0, 8, 0];
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(1, Some(0)))
        );
        let c = [MECHANISM_STATUS, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::Mmc(MmcCdb::MechanismStatus { alloc_len: 8 })
        );
        // LINK in the control byte.
        let c = [READ_DISC_INFORMATION, 0, 0, 0, 0, 0, 0, 0, 34, 0x01];
        assert!(decode(&c).is_err());
    }

    #[test]
    fn writes_and_disk_only_commands_are_invalid_opcodes() {
        let write10 = [op::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let sync = [op::SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let unmap = [op::UNMAP, 0, 0, 0, 0, 0, 0, 0, 24, 0];
        for c in [&write10[..], &sync[..], &unmap[..], &[][..]] {
            let e = decode(c).unwrap_err();
            assert_eq!(
                (e.key, e.asc),
                (
                    SenseKey::IllegalRequest,
                    Asc::INVALID_COMMAND_OPERATION_CODE
                )
            );
        }
        // GET LBA STATUS is a SERVICE ACTION IN(16) a drive does not have.
        let mut c = [0u8; 16];
        c[0] = op::SERVICE_ACTION_IN_16;
        c[1] = op::SA_GET_LBA_STATUS;
        c[13] = 24;
        assert!(decode(&c).is_err());
        c[1] = op::SA_READ_CAPACITY_16;
        assert!(matches!(decode(&c), Ok(Cdb::ReadCapacity16 { .. })));
        let c = [op::READ_10, 0, 0, 0, 0, 4, 0, 0, 2, 0];
        assert!(matches!(decode(&c), Ok(Cdb::Read(r)) if r.lba == 4 && r.blocks == 2));
    }
}
