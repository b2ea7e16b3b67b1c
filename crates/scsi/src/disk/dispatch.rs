//! Routes a decoded CDB to the handler that implements it.

use std::sync::Arc;

use esos_block::{BlockDevice, FileSlice};

use super::mode::{self, MAX_MODE_SELECT_LEN, Medium, SenseRequest};
use super::{
    Done, Outcome, atomic, capacity, defect, inquiry, opcodes, prefetch, provision, rw, sanitize,
    sync, vpd,
};
use crate::alua::{Spc as _, Tpgs as _};
use crate::cdb::Cdb;
use crate::sense::{Asc, Sense, SenseKey};
use crate::unit::LogicalUnit;
use crate::{Command, IoBuf};

/// Runs one command on `lu`. REPORT LUNS never gets here: the LUN map answers it.
pub async fn execute(
    lu: &Arc<LogicalUnit>,
    cmd: &Command,
    cdb: Cdb,
    mut buf: IoBuf,
    by_ref: Option<(u32, &mut Option<FileSlice>)>,
) -> (Outcome, IoBuf) {
    // An ejected removable medium (state/medium.rs): one atomic load when it is there.
    if let Err(s) = lu.medium.check(&cdb) {
        return (Err(s.into()), buf);
    }
    // A sanitize that started while this command waited for its turn.
    if let Some(out) = sanitize_gate(lu, cmd, &cdb, &mut buf) {
        return (out, buf);
    }
    if let Some(out) = zero_length_write(lu, &cdb) {
        return (out, buf);
    }
    let out = match cdb {
        Cdb::Read(r) => return rw::read(lu, r, buf, by_ref).await,
        Cdb::Write(r) => return rw::write(lu, r, false, cmd.expected_len, buf).await,
        // SBC-3 5.36: the data must be on the medium before GOOD, whatever WCE says.
        Cdb::WriteVerify(r) => return rw::write(lu, r, true, cmd.expected_len, buf).await,
        Cdb::Verify { range, bytchk } => {
            return rw::verify(lu, range, bytchk, cmd.expected_len, buf).await;
        }
        Cdb::SyncCache { lba, blocks, immed } => {
            sync::synchronize_cache(lu, lba, blocks, immed).await
        }
        Cdb::TestUnitReady => Ok(Done::NO_DATA),
        Cdb::StartStopUnit {
            power_condition,
            no_flush,
            loej,
            start,
            ..
        } => sync::start_stop_unit(lu, cmd, power_condition, no_flush, loej, start).await,
        Cdb::PreventAllow { prevent } => sync::prevent_allow(lu, cmd, prevent),
        Cdb::RequestSense { desc, alloc_len } => request_sense(lu, cmd, desc, alloc_len, &mut buf),
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
            capacity::capacity16(
                lu.device.num_blocks(),
                lu.device.block_size(),
                lu.settings.lbppb_exponent,
                &mut buf,
            );
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
        } => {
            let stpg = lu.settings.alua.mode().explicit();
            opcodes::report_opcodes(rctd, options, opcode, sa, alloc_len, stpg, &mut buf)
        }
        Cdb::ReportTargetPortGroups {
            extended,
            alloc_len,
        } => {
            lu.settings.alua.report(&cmd.nexus, extended, &mut buf);
            Ok(Done::data(buf.len(), alloc_len))
        }
        Cdb::SetTargetPortGroups { param_len } => set_target_port_groups(lu, cmd, param_len, &buf),
        Cdb::ReportTmfs { repd, alloc_len } => opcodes::report_tmfs(repd, alloc_len, &mut buf),
        // Run by the LUN map, which has the copy targets (disk/xcopy.rs).
        Cdb::ExtendedCopy { .. } => Err(Sense::illegal(Asc::INTERNAL_TARGET_FAILURE).into()),
        Cdb::ReceiveCopyResults {
            action,
            list_id,
            alloc_len,
        } => super::xcopy::receive_copy_results(lu, cmd, action, list_id, alloc_len, &mut buf),
        Cdb::Sanitize(s) => sanitize::sanitize(lu, cmd, s, &buf).await,
        // Decoded only for CD-ROM units.
        Cdb::Mmc(_) => Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE).into()),
    };
    (out, buf)
}

/// Answers commands that a running or failed sanitize affects (SBC-4 4.11.1): `None`
/// lets the command through. INQUIRY and REQUEST SENSE are answered here and at once, so
/// they never wait in the task set behind the SANITIZE command that is still running;
/// REPORT LUNS never reaches a unit. A SANITIZE is let through after a failure, since a
/// successful one (or EXIT FAILURE MODE) is the way out.
pub fn sanitize_gate(
    lu: &LogicalUnit,
    cmd: &Command,
    cdb: &Cdb,
    buf: &mut IoBuf,
) -> Option<Outcome> {
    let sense = lu.sanitize.refusal()?;
    match *cdb {
        Cdb::Inquiry {
            evpd,
            page,
            alloc_len,
        } => Some(inquiry_cmd(lu, cmd, evpd, page, alloc_len, buf)),
        // SPC-4 6.29: the sense data describes the condition, with GOOD status.
        Cdb::RequestSense { desc, alloc_len } => {
            let enc = sense.encode(desc);
            buf.clear();
            buf.extend_from_slice(enc.as_slice());
            Some(Ok(Done::data(buf.len(), alloc_len)))
        }
        Cdb::Sanitize(_) if !lu.sanitize.running() => None,
        _ => Some(Err(sense.into())),
    }
}

/// REQUEST SENSE (SPC-4 6.29): a pending unit attention (cleared), else the NOT READY
/// of an ejected medium, else NO SENSE.
pub(crate) fn request_sense(
    lu: &LogicalUnit,
    cmd: &Command,
    desc: bool,
    alloc_len: u32,
    buf: &mut IoBuf,
) -> Outcome {
    let sense = match lu.ua.take(cmd.nexus.id) {
        Some(asc) => Sense::new(SenseKey::UnitAttention, asc),
        None if !lu.medium.present() => lu.medium.absent_sense(),
        None => Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL_SENSE),
    };
    let enc = sense.encode(desc);
    buf.clear();
    buf.extend_from_slice(enc.as_slice());
    Ok(Done::data(buf.len(), alloc_len))
}

fn medium(lu: &LogicalUnit) -> Medium {
    Medium {
        num_blocks: lu.device.num_blocks(),
        block_size: lu.device.block_size(),
        write_protected: lu.write_protected() || lu.mode.swp(),
    }
}

/// A write command with a TRANSFER LENGTH of 0 on a write-protected unit: it writes no
/// block, which "shall not be considered an error" (SBC-3 5.31), and write protection
/// refuses only writes to the medium (SBC-3 4.x), so only its range is checked. Writable
/// units take the usual path.
fn zero_length_write(lu: &LogicalUnit, cdb: &Cdb) -> Option<Outcome> {
    let r = match cdb {
        Cdb::Write(r)
        | Cdb::WriteVerify(r)
        | Cdb::OrWrite(r)
        | Cdb::WriteAtomic(r)
        | Cdb::CompareAndWrite(r) => r,
        _ => return None,
    };
    if r.blocks != 0 || !(lu.write_protected() || lu.mode.swp()) {
        return None;
    }
    Some(rw::check(lu, r).map(|_| Done::NO_DATA))
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
        if page == vpd::DEVICE_ID {
            vpd::append_port_group(buf, lu.settings.alua.group_id(&cmd.nexus));
        }
        provision::fill_vpd(lu, page, buf);
    } else if lu.settings.removable {
        inquiry::standard_as(
            &lu.settings.identity,
            0x00,
            true,
            &inquiry::VERSION_DESCRIPTORS,
            buf,
        );
    } else {
        inquiry::standard(Some(&lu.settings.identity), buf);
    }
    if !evpd {
        // TPGS: who may change ALUA states (SPC-4 6.6.2).
        buf[5] |= lu.settings.alua.mode().tpgs() << 4;
    }
    Ok(Done::data(buf.len(), alloc_len))
}

/// SET TARGET PORT GROUPS (SPC-4 6.39): only with explicit ALUA (TPGS 10b or 11b).
fn set_target_port_groups(lu: &LogicalUnit, cmd: &Command, param_len: u32, buf: &IoBuf) -> Outcome {
    if !lu.settings.alua.mode().explicit() {
        return Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE).into());
    }
    if param_len > crate::alua::MAX_STPG_PARAM_LEN {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    rw::check_data_out(cmd.expected_len, buf, u64::from(param_len))?;
    let from = esos_lu::events::Session {
        subscriber: lu.subscriber(),
        session: cmd.nexus.id,
    };
    lu.settings
        .alua
        .set_target_port_groups(&buf[..param_len as usize], Some(from))?;
    Ok(Done {
        data_in: 0,
        transfer: u64::from(param_len),
    })
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
