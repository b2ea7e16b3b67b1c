//! Routes a decoded command of a CD/DVD unit. READ and the medium commands are the
//! disk's (the data path is the same); the rest is MMC's own.

use std::sync::Arc;

use esos_block::BlockDevice;

use super::{MmcCdb, Profile, config, events, mode, opcodes, toc};
use crate::cdb::Cdb;
use crate::disk::dispatch::request_sense;
use crate::disk::{Done, Outcome, capacity, inquiry, rw, sync, vpd};
use crate::sense::{Asc, Sense};
use crate::unit::LogicalUnit;
use crate::{Command, IoBuf};

/// Runs one command on the CD/DVD unit `lu`.
pub async fn execute(
    lu: &Arc<LogicalUnit>,
    cmd: &Command,
    cdb: Cdb,
    mut buf: IoBuf,
) -> (Outcome, IoBuf) {
    if let Err(s) = lu.medium.check(&cdb) {
        return (Err(s.into()), buf);
    }
    let num_blocks = lu.device.num_blocks();
    let out = match cdb {
        Cdb::Read(r) => return rw::read(lu, r, buf, None).await,
        Cdb::TestUnitReady => Ok(Done::NO_DATA),
        Cdb::RequestSense { desc, alloc_len } => request_sense(lu, cmd, desc, alloc_len, &mut buf),
        Cdb::Inquiry {
            evpd,
            page,
            alloc_len,
        } => inquiry_cmd(lu, cmd, evpd, page, &mut buf).map(|()| Done::data(buf.len(), alloc_len)),
        Cdb::ReadCapacity10 => {
            capacity::capacity10(num_blocks, lu.device.block_size(), &mut buf);
            Ok(Done::data(buf.len(), u32::MAX))
        }
        Cdb::ReadCapacity16 { alloc_len } => {
            capacity::capacity16(num_blocks, lu.device.block_size(), 0, &mut buf);
            Ok(Done::data(buf.len(), alloc_len))
        }
        Cdb::ModeSense {
            ten,
            pc,
            page,
            subpage,
            alloc_len,
            ..
        } => mode::mode_sense(ten, pc, page, subpage, lu.medium.prevented(), &mut buf)
            .map(|()| Done::data(buf.len(), alloc_len))
            .map_err(Into::into),
        Cdb::StartStopUnit {
            power_condition,
            no_flush,
            loej,
            start,
            ..
        } => sync::start_stop_unit(lu, cmd, power_condition, no_flush, loej, start).await,
        Cdb::PreventAllow { prevent } => sync::prevent_allow(lu, cmd, prevent),
        Cdb::ReportOpcodes {
            rctd,
            options,
            opcode,
            sa,
            alloc_len,
        } => opcodes::report_opcodes(rctd, options, opcode, sa, alloc_len, &mut buf),
        Cdb::ReportTmfs { repd, alloc_len } => {
            crate::disk::opcodes::report_tmfs(repd, alloc_len, &mut buf)
        }
        Cdb::Mmc(m) => mmc_cmd(lu, cmd, m, num_blocks, &mut buf),
        // `mmc::decode` lets nothing else through.
        _ => Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE).into()),
    };
    (out, buf)
}

fn mmc_cmd(
    lu: &LogicalUnit,
    cmd: &Command,
    m: MmcCdb,
    num_blocks: u64,
    buf: &mut IoBuf,
) -> Outcome {
    let present = lu.medium.present();
    let alloc_len = match m {
        MmcCdb::ReadToc {
            msf,
            format,
            track,
            alloc_len,
        } => {
            toc::read_toc(num_blocks, msf, format, track, buf)?;
            alloc_len
        }
        MmcCdb::GetConfiguration {
            rt,
            start,
            alloc_len,
        } => {
            let profile = present.then(|| Profile::of(num_blocks));
            config::get_configuration(rt, start, profile, buf);
            alloc_len
        }
        MmcCdb::GetEventStatus { classes, alloc_len } => {
            // Only a request for the media class consumes the pending media event.
            let event = if events::wants_media(classes) {
                lu.medium.take_event(cmd.nexus.id)
            } else {
                crate::state::medium::MediaEvent::NoChange
            };
            events::event_status(classes, event, present, buf);
            alloc_len
        }
        MmcCdb::ReadDiscInfo { alloc_len } => {
            toc::disc_information(buf);
            alloc_len
        }
        MmcCdb::ReadTrackInfo {
            addr_type,
            addr,
            alloc_len,
        } => {
            toc::track_information(num_blocks, addr_type, addr, buf)?;
            alloc_len
        }
        MmcCdb::MechanismStatus { alloc_len } => {
            events::mechanism_status(present, buf);
            alloc_len
        }
    };
    Ok(Done::data(buf.len(), alloc_len))
}

/// Standard INQUIRY (PDT 05h, RMB 1, MMC-6 version descriptor) and the VPD pages that
/// are not about a block device: supported pages, unit serial number, device
/// identification (SPC-4 7.8).
fn inquiry_cmd(
    lu: &LogicalUnit,
    cmd: &Command,
    evpd: bool,
    page: u8,
    buf: &mut IoBuf,
) -> Result<(), crate::disk::Fail> {
    if !evpd {
        inquiry::standard_as(
            &lu.settings.identity,
            inquiry::PERIPHERAL_CDROM,
            true,
            &inquiry::MMC_VERSION_DESCRIPTORS,
            buf,
        );
        return Ok(());
    }
    const PAGES: [u8; 3] = [vpd::SUPPORTED_PAGES, vpd::UNIT_SERIAL, vpd::DEVICE_ID];
    if page == vpd::SUPPORTED_PAGES {
        buf.clear();
        buf.extend_from_slice(&[inquiry::PERIPHERAL_CDROM, page, 0, PAGES.len() as u8]);
        buf.extend_from_slice(&PAGES);
        return Ok(());
    }
    if !PAGES.contains(&page) {
        return Err(Sense::invalid_cdb_field(2, None).into());
    }
    let inp = vpd::VpdInput {
        identity: &lu.settings.identity,
        nexus: &cmd.nexus,
        block_size: lu.device.block_size(),
        max_transfer_blocks: lu.max_transfer_blocks(),
        rotational: lu.device.rotational(),
    };
    vpd::page(page, inp, buf)?;
    // Byte 0 carries the peripheral device type (SPC-4 7.8.1).
    buf[0] = inquiry::PERIPHERAL_CDROM;
    Ok(())
}
