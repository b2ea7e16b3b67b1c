//! SYNCHRONIZE CACHE (10) and (16) (SBC-3 5.22, 5.23), and the commands that stop the
//! unit or move its medium: START STOP UNIT (SBC-3 5.25, MMC-6 6.39) and PREVENT ALLOW
//! MEDIUM REMOVAL (SBC-3 5.13, MMC-6 6.28), over the state in `medium.rs`.

use std::sync::Arc;

use esos_block::BlockDevice;

use super::{Done, Outcome};
use crate::block_status::{Direction, block_sense};
use crate::sense::{Asc, Sense};
use crate::state::medium::LoadEject;
use crate::unit::LogicalUnit;
use crate::{Command, LuKind};

/// Flushes the device's volatile cache. The backend flushes everything, which covers any
/// range; the range is still checked (NUMBER OF LOGICAL BLOCKS 0 means "to the end").
/// With IMMED the status is returned once the CDB is valid and the flush runs on.
pub async fn synchronize_cache(
    lu: &Arc<LogicalUnit>,
    lba: u64,
    blocks: u32,
    immed: bool,
) -> Outcome {
    let end = lba.checked_add(u64::from(blocks));
    if end.is_none_or(|e| e > lu.device.num_blocks()) {
        return Err(Sense::illegal(Asc::LBA_OUT_OF_RANGE).into());
    }
    if immed {
        let lu = Arc::clone(lu);
        tokio::spawn(async move {
            if let Err(e) = lu.device.flush().await {
                tracing::error!("SYNCHRONIZE CACHE (IMMED) flush failed: {e}");
            }
        });
        return Ok(Done::NO_DATA);
    }
    match lu.device.flush().await {
        Ok(()) => Ok(Done::NO_DATA),
        Err(e) => {
            tracing::error!("SYNCHRONIZE CACHE flush failed: {e}");
            Err(block_sense(&e, Direction::Write).into())
        }
    }
}

/// START STOP UNIT. IMMED needs no handling: everything is done before the status anyway.
///
/// - POWER CONDITION other than 0h sets a power condition and ignores START and LOEJ
///   (SBC-3 5.25). We have no power states, so every value is accepted as a no-op.
/// - START 0 (stop, or eject) first writes the volatile cache unless NO_FLUSH.
/// - LOEJ 0: no stopped state is kept (a virtual unit is ready at once), so media access
///   keeps working, as libiscsi's StartStopUnit.NoLoej expects.
/// - LOEJ 1 ejects (START 0) or loads (START 1) a removable medium; a load tells the
///   other nexuses NOT READY TO READY CHANGE (SBC-3 4.x, MMC-6 4.1.4). A fixed disk has
///   nothing to move and answers GOOD.
pub async fn start_stop_unit(
    lu: &LogicalUnit,
    cmd: &Command,
    power_condition: u8,
    no_flush: bool,
    loej: bool,
    start: bool,
) -> Outcome {
    if power_condition != 0 {
        return Ok(Done::NO_DATA);
    }
    if !start
        && !no_flush
        && !lu.write_protected()
        && let Err(e) = lu.device.flush().await
    {
        tracing::error!("START STOP UNIT flush failed: {e}");
        return Err(block_sense(&e, Direction::Write).into());
    }
    if !loej {
        return Ok(Done::NO_DATA);
    }
    match lu.medium.load_eject(start)? {
        LoadEject::Loaded => {
            lu.ua
                .post_others(Some(cmd.nexus.id), Asc::MEDIUM_MAY_HAVE_CHANGED);
            tracing::info!(lun_serial = %lu.settings.identity.serial, "medium loaded");
        }
        LoadEject::Ejected => {
            tracing::info!(lun_serial = %lu.settings.identity.serial, "medium ejected");
        }
        LoadEject::Unchanged => {}
    }
    Ok(Done::NO_DATA)
}

/// PREVENT ALLOW MEDIUM REMOVAL. PREVENT 00b allows and 01b prevents removal for this
/// nexus. A unit with RMB 0 cannot honour a prevention: INVALID FIELD IN CDB. SBC-3 made
/// 10b and 11b obsolete (invalid for a disk); MMC-6 6.28 gives bit 1 the meaning "persistent
/// prevent", which only changes how an eject button is reported, and we have no button.
pub fn prevent_allow(lu: &LogicalUnit, cmd: &Command, prevent: u8) -> Outcome {
    let invalid = || Err(Sense::invalid_cdb_field(4, Some(1)).into());
    let cdrom = lu.settings.kind == LuKind::Cdrom;
    match prevent {
        0 => lu.medium.prevent(cmd.nexus.id, false),
        _ if !lu.medium.removable() => return invalid(),
        1 => lu.medium.prevent(cmd.nexus.id, true),
        2 | 3 if cdrom => lu.medium.prevent(cmd.nexus.id, prevent & 1 != 0),
        _ => return invalid(),
    }
    Ok(Done::NO_DATA)
}
