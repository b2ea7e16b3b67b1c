//! The top-level CDB decoder: opcode and service action to [`Cdb`], with the shared
//! field checks of `cdb.rs`; command families with many fields have their decoder beside
//! it (`alua.rs`, `copy.rs`, `extra.rs`, `pr.rs`, `provision.rs`, `sanitize.rs`), the MMC
//! commands theirs in `mmc/cdb.rs`.

use esos_common::be::{u16_at, u32_at, u64_at};

use super::{
    BlockRange, Cdb, PageControl, alua, control, copy, extra, group_len, invalid_opcode, op, pr,
    protect, provision, range, reserved, sanitize,
};
use crate::sense::Sense;

/// Decodes `cdb` (exactly the bytes that arrived). Unknown opcodes give
/// INVALID COMMAND OPERATION CODE, bad fields INVALID FIELD IN CDB with a field pointer.
pub fn decode(cdb: &[u8]) -> Result<Cdb, Sense> {
    let Some(&opcode) = cdb.first() else {
        return Err(invalid_opcode());
    };
    let Some(len) = group_len(opcode) else {
        return Err(invalid_opcode());
    };
    if cdb.len() < len {
        return Err(invalid_opcode());
    }
    let c = &cdb[..len];
    control(c, len - 1)?;
    if Cdb::is_reservation(opcode) {
        return pr::decode(c);
    }
    match opcode {
        op::TEST_UNIT_READY => Ok(Cdb::TestUnitReady),
        op::REQUEST_SENSE => {
            reserved(c, 1, 0x01)?;
            Ok(Cdb::RequestSense {
                desc: c[1] & 1 != 0,
                alloc_len: u32::from(c[4]),
            })
        }
        op::INQUIRY => decode_inquiry(c),
        op::REPORT_LUNS => Ok(Cdb::ReportLuns {
            select: c[2],
            alloc_len: u32_at(c, 6),
        }),
        op::READ_CAPACITY_10 => {
            // SBC-3 5.15: PMI is obsolete; with PMI 0 the LBA field must be 0.
            if c[8] & 1 == 0 && u32_at(c, 2) != 0 {
                return Err(Sense::invalid_cdb_field(2, None));
            }
            Ok(Cdb::ReadCapacity10)
        }
        op::SERVICE_ACTION_IN_16 => match c[1] & 0x1F {
            op::SA_READ_CAPACITY_16 => Ok(Cdb::ReadCapacity16 {
                alloc_len: u32_at(c, 10),
            }),
            op::SA_GET_LBA_STATUS => provision::get_lba_status(c),
            _ => Err(Sense::invalid_cdb_field(1, Some(4))),
        },
        op::READ_6 | op::WRITE_6 => {
            reserved(c, 1, 0x1F)?;
            let lba = u64::from(u32_at(c, 0) & 0x001F_FFFF);
            // SBC-3 5.9: a TRANSFER LENGTH of 0 in the 6-byte CDBs means 256 blocks.
            let blocks = if c[4] == 0 { 256 } else { u32::from(c[4]) };
            let r = BlockRange {
                lba,
                blocks,
                fua: false,
                dpo: false,
                len_byte: 4,
            };
            Ok(if opcode == op::READ_6 {
                Cdb::Read(r)
            } else {
                Cdb::Write(r)
            })
        }
        op::READ_10 | op::READ_12 | op::READ_16 => {
            // RDPROTECT (no protection information), DPO, FUA, RARC; FUA_NV obsolete.
            reserved(c, 1, 0xFE)?;
            protect(c)?;
            Ok(Cdb::Read(range(c)))
        }
        op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => {
            reserved(c, 1, 0xFA)?;
            protect(c)?;
            Ok(Cdb::Write(range(c)))
        }
        op::WRITE_AND_VERIFY_10 | op::WRITE_AND_VERIFY_12 | op::WRITE_AND_VERIFY_16 => {
            // SBC-3 5.36: WRPROTECT, DPO, BYTCHK (bit 1). No FUA bit: always durable.
            reserved(c, 1, 0xF2)?;
            protect(c)?;
            Ok(Cdb::WriteVerify(range(c)))
        }
        op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => {
            // SBC-3 5.33: VRPROTECT, DPO, BYTCHK (bit 1).
            reserved(c, 1, 0xF2)?;
            protect(c)?;
            let mut r = range(c);
            r.fua = false;
            Ok(Cdb::Verify {
                range: r,
                bytchk: c[1] & 0x02 != 0,
            })
        }
        op::SYNCHRONIZE_CACHE_10 => {
            // IMMED; SYNC_NV (bit 2) is obsolete and accepted.
            reserved(c, 1, 0x06)?;
            Ok(Cdb::SyncCache {
                lba: u64::from(u32_at(c, 2)),
                blocks: u32::from(u16_at(c, 7)),
                immed: c[1] & 2 != 0,
            })
        }
        op::SYNCHRONIZE_CACHE_16 => {
            reserved(c, 1, 0x06)?;
            Ok(Cdb::SyncCache {
                lba: u64_at(c, 2),
                blocks: u32_at(c, 10),
                immed: c[1] & 2 != 0,
            })
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => decode_mode_sense(c),
        op::MODE_SELECT_6 => {
            reserved(c, 1, 0x11)?;
            Ok(Cdb::ModeSelect {
                ten: false,
                pf: c[1] & 0x10 != 0,
                sp: c[1] & 1 != 0,
                param_len: u32::from(c[4]),
            })
        }
        op::MODE_SELECT_10 => {
            reserved(c, 1, 0x11)?;
            Ok(Cdb::ModeSelect {
                ten: true,
                pf: c[1] & 0x10 != 0,
                sp: c[1] & 1 != 0,
                param_len: u32::from(u16_at(c, 7)),
            })
        }
        op::START_STOP_UNIT => {
            reserved(c, 1, 0x01)?;
            reserved(c, 3, 0x0F)?;
            reserved(c, 4, 0xF7)?;
            Ok(Cdb::StartStopUnit {
                immed: c[1] & 1 != 0,
                power_condition: c[4] >> 4,
                no_flush: c[4] & 4 != 0,
                loej: c[4] & 2 != 0,
                start: c[4] & 1 != 0,
            })
        }
        op::PREVENT_ALLOW_MEDIUM_REMOVAL => {
            reserved(c, 4, 0x03)?;
            Ok(Cdb::PreventAllow { prevent: c[4] & 3 })
        }
        op::PRE_FETCH_10 | op::PRE_FETCH_16 => extra::pre_fetch(c),
        op::READ_DEFECT_DATA_10 | op::READ_DEFECT_DATA_12 => extra::read_defect_data(c),
        op::ORWRITE_16 => extra::orwrite(c),
        op::COMPARE_AND_WRITE => extra::compare_and_write(c),
        op::WRITE_ATOMIC_16 => extra::write_atomic(c),
        op::MAINTENANCE_IN if c[1] & 0x1F == op::SA_REPORT_TARGET_PORT_GROUPS => {
            alua::report_target_port_groups(c)
        }
        op::MAINTENANCE_IN => extra::maintenance_in(c),
        op::EXTENDED_COPY => copy::extended_copy(c),
        op::RECEIVE_COPY_RESULTS => copy::receive_copy_results(c),
        op::MAINTENANCE_OUT => alua::maintenance_out(c),
        op::UNMAP => provision::unmap(c),
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => provision::write_same(c),
        op::SANITIZE => sanitize::decode(c),
        _ => Err(invalid_opcode()),
    }
}

fn decode_inquiry(c: &[u8]) -> Result<Cdb, Sense> {
    // CmdDt (bit 1) is obsolete: SPC-4 6.6.1 says reject it.
    reserved(c, 1, 0x01)?;
    let evpd = c[1] & 1 != 0;
    if !evpd && c[2] != 0 {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    Ok(Cdb::Inquiry {
        evpd,
        page: c[2],
        alloc_len: u32::from(u16_at(c, 3)),
    })
}

fn decode_mode_sense(c: &[u8]) -> Result<Cdb, Sense> {
    let ten = c.len() == 10;
    reserved(c, 1, if ten { 0x18 } else { 0x08 })?;
    let pc = match c[2] >> 6 {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => PageControl::Saved,
    };
    Ok(Cdb::ModeSense {
        ten,
        dbd: c[1] & 0x08 != 0,
        llbaa: ten && c[1] & 0x10 != 0,
        pc,
        page: c[2] & 0x3F,
        subpage: c[3],
        alloc_len: if ten {
            u32::from(u16_at(c, 7))
        } else {
            u32::from(c[4])
        },
    })
}
