//! The reservation CDBs: PERSISTENT RESERVE IN / OUT (SPC-4 6.15, 6.16) and SPC-2
//! RESERVE / RELEASE. What they do is `disk/pr.rs`.

use super::Cdb;
use crate::pr;
use crate::sense::{Asc, Sense};

pub mod opc {
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const LOG_SENSE: u8 = 0x4D;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    pub const MAINTENANCE_IN: u8 = 0xA3;
}

/// Decodes the reservation CDBs (called from `cdb::decode`).
pub fn decode(c: &[u8]) -> Result<Cdb, Sense> {
    let reserved = |byte: usize, allowed: u8| {
        let bad = c[byte] & !allowed;
        if bad == 0 {
            Ok(())
        } else {
            Err(Sense::invalid_cdb_field(
                byte as u16,
                Some(7 - bad.leading_zeros() as u8),
            ))
        }
    };
    match c[0] {
        opc::PERSISTENT_RESERVE_IN => {
            let action = c[1] & 0x1F;
            reserved(1, 0x1F)?;
            if action > 3 {
                return Err(Sense::invalid_cdb_field(1, Some(4)));
            }
            Ok(Cdb::PersistentReserveIn {
                action,
                alloc_len: u32::from(u16::from_be_bytes([c[7], c[8]])),
            })
        }
        opc::PERSISTENT_RESERVE_OUT => {
            let action = c[1] & 0x1F;
            reserved(1, 0x1F)?;
            if action > pr::sa::REGISTER_AND_MOVE {
                return Err(Sense::invalid_cdb_field(1, Some(4)));
            }
            Ok(Cdb::PersistentReserveOut {
                action,
                scope: c[2] >> 4,
                pr_type: c[2] & 0x0F,
                param_len: u32::from_be_bytes([c[5], c[6], c[7], c[8]]),
            })
        }
        // Third-party reservations and extents (SPC-2 7.21, 7.22) are not implemented;
        // bits 7-5 of RESERVE(6)/RELEASE(6) byte 1 are the obsolete LUN field.
        opc::RESERVE_6 | opc::RELEASE_6 => {
            reserved(1, 0xE0)?;
            Ok(if c[0] == opc::RESERVE_6 {
                Cdb::Reserve
            } else {
                Cdb::Release
            })
        }
        opc::RESERVE_10 | opc::RELEASE_10 => {
            reserved(1, 0x00)?;
            Ok(if c[0] == opc::RESERVE_10 {
                Cdb::Reserve
            } else {
                Cdb::Release
            })
        }
        _ => Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE)),
    }
}
