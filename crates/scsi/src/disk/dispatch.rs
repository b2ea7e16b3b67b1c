//! Routes a decoded CDB to the handler that implements it.

use std::sync::Arc;

use esos_block::BlockDevice;

use super::mode::{self, MAX_MODE_SELECT_LEN, Medium, SenseRequest};
use super::{
    Done, Outcome, atomic, capacity, defect, inquiry, opcodes, prefetch, provision, rw, sync, vpd,
};
use crate::cdb::Cdb;
use crate::engine::LogicalUnit;
use crate::sense::{Asc, Sense, SenseKey};
use crate::{Command, IoBuf};

/// Runs one command on `lu`. REPORT LUNS never gets here: the LUN map answers it.
pub async fn execute(
    lu: &Arc<LogicalUnit>,
    cmd: &Command,
    cdb: Cdb,
    mut buf: IoBuf,
) -> (Outcome, IoBuf) {
    let out = match cdb {
        Cdb::Read(r) => return rw::read(lu, r, buf).await,
        Cdb::Write(r) => return rw::write(lu, r, false, cmd.expected_len, buf).await,
        // SBC-3 5.36: the data must be on the medium before GOOD, whatever WCE says.
        Cdb::WriteVerify(r) => return rw::write(lu, r, true, cmd.expected_len, buf).await,
        Cdb::Verify { range, bytchk } => {
            return rw::verify(lu, range, bytchk, cmd.expected_len, buf).await;
        }
        Cdb::SyncCache { lba, blocks, immed } => {
            sync::synchronize_cache(lu, lba, blocks, immed).await
        }
        Cdb::TestUnitReady | Cdb::StartStopUnit { .. } => Ok(Done::NO_DATA),
        Cdb::RequestSense { desc, alloc_len } => {
            // SPC-4 6.29: report a pending unit attention (and clear it), else NO SENSE.
            let sense = match lu.ua.take(cmd.nexus.id) {
                Some(asc) => Sense::new(SenseKey::UnitAttention, asc),
                None => Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL_SENSE),
            };
            let enc = sense.encode(desc);
            buf.clear();
            buf.extend_from_slice(enc.as_slice());
            Ok(Done::data(buf.len(), alloc_len))
        }
        Cdb::Inquiry {
            evpd,
            page,
            alloc_len,
        } => inquiry_cmd(lu, cmd, evpd, page, alloc_len, &mut buf),
        Cdb::ReadCapacity10 => {
            capacity::capacity10(lu.device.num_blocks(), lu.device.block_size(), &mut buf);
            Ok(Done::data(buf.len(), u32::MAX))
        }
        Cdb::ReadCapacity16 { alloc_len } => {
            capacity::capacity16(lu.device.num_blocks(), lu.device.block_size(), &mut buf);
            provision::capacity16_bits(lu, &mut buf);
            Ok(Done::data(buf.len(), alloc_len))
        }
        Cdb::ModeSense {
            ten,
            dbd,
            llbaa,
            pc,
            page,
            subpage,
            alloc_len,
        } => {
            let req = SenseRequest {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
            };
            mode::mode_sense(req, medium(lu), &lu.mode, &mut buf)
                .map(|()| Done::data(buf.len(), alloc_len))
                .map_err(Into::into)
        }
        Cdb::ModeSelect {
            ten,
            pf,
            sp,
            param_len,
        } => mode_select(lu, cmd, ten, pf, sp, param_len, &buf),
        Cdb::ReportLuns { .. } => Err(Sense::illegal(Asc::INTERNAL_TARGET_FAILURE).into()),
        Cdb::Unmap { anchor, param_len } => {
            provision::unmap(lu, cmd, anchor, param_len, &buf).await
        }
        Cdb::WriteSame(ws) => return provision::write_same(lu, cmd, ws, buf).await,
        Cdb::GetLbaStatus { lba, alloc_len } => {
            provision::get_lba_status(lu, lba, alloc_len, &mut buf).await
        }
        // Answered by `pr::intercept` before dispatch.
        Cdb::PersistentReserveIn { .. }
        | Cdb::PersistentReserveOut { .. }
        | Cdb::Reserve
        | Cdb::Release => Err(Sense::illegal(Asc::INTERNAL_TARGET_FAILURE).into()),
        Cdb::OrWrite(r) => return atomic::orwrite(lu, r, cmd.expected_len, buf).await,
        Cdb::CompareAndWrite(r) => {
            return atomic::compare_and_write(lu, r, cmd.expected_len, buf).await;
        }
        Cdb::WriteAtomic(r) => return atomic::write_atomic(lu, r, cmd.expected_len, buf).await,
        Cdb::PreFetch { lba, blocks, .. } => prefetch::pre_fetch(lu, lba, blocks),
        Cdb::ReadDefectData {
            twelve,
            plist,
            glist,
            format,
            alloc_len,
        } => defect::read_defect_data(twelve, plist, glist, format, alloc_len, &mut buf),
        Cdb::ReportOpcodes {
            rctd,
            options,
            opcode,
            sa,
            alloc_len,
        } => opcodes::report_opcodes(rctd, options, opcode, sa, alloc_len, &mut buf),
        Cdb::ReportTmfs { repd, alloc_len } => opcodes::report_tmfs(repd, alloc_len, &mut buf),
    };
    (out, buf)
}

fn medium(lu: &LogicalUnit) -> Medium {
    Medium {
        num_blocks: lu.device.num_blocks(),
        block_size: lu.device.block_size(),
        write_protected: lu.write_protected() || lu.mode.swp(),
    }
}

fn inquiry_cmd(
    lu: &LogicalUnit,
    cmd: &Command,
    evpd: bool,
    page: u8,
    alloc_len: u32,
    buf: &mut IoBuf,
) -> Outcome {
    if evpd {
        let inp = vpd::VpdInput {
            identity: &lu.settings.identity,
            nexus: &cmd.nexus,
            block_size: lu.device.block_size(),
            max_transfer_blocks: lu.max_transfer_blocks(),
            rotational: lu.device.rotational(),
        };
        vpd::page(page, inp, buf)?;
        provision::fill_vpd(lu, page, buf);
    } else {
        inquiry::standard(Some(&lu.settings.identity), buf);
    }
    Ok(Done::data(buf.len(), alloc_len))
}

/// MODE SELECT (SPC-4 6.9): validate the whole list, apply it, and tell the other
/// nexuses MODE PARAMETERS CHANGED (SPC-4 7.5.1) when something changed.
fn mode_select(
    lu: &LogicalUnit,
    cmd: &Command,
    ten: bool,
    pf: bool,
    sp: bool,
    param_len: u32,
    buf: &IoBuf,
) -> Outcome {
    if sp {
        // No saved pages (SPC-4 6.9).
        return Err(Sense::invalid_cdb_field(1, Some(0)).into());
    }
    if param_len == 0 {
        return Ok(Done::NO_DATA);
    }
    if !pf {
        // Only the SPC page format is implemented.
        return Err(Sense::invalid_cdb_field(1, Some(4)).into());
    }
    if param_len > MAX_MODE_SELECT_LEN {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    rw::check_data_out(cmd.expected_len, buf, u64::from(param_len))?;
    let list = &buf[..param_len as usize];
    let changed = {
        let _serial = lu.mode_select_lock();
        let new = mode::mode_select(ten, list, medium(lu), &lu.mode)?;
        lu.mode.set(new)
    };
    if changed {
        lu.ua
            .post_others(Some(cmd.nexus.id), Asc::MODE_PARAMETERS_CHANGED);
    }
    Ok(Done {
        data_in: 0,
        transfer: u64::from(param_len),
    })
}
