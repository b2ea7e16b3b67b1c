//! PRE-FETCH(10) and (16) (SBC-3 5.11, 5.12).

use esos_block::BlockDevice;

use super::{Done, Outcome};
use crate::sense::{Asc, Sense};
use crate::unit::LogicalUnit;

/// Checks the range and answers GOOD. The engine keeps no cache of its own to load the
/// blocks into (the backend's page cache is not ours to size), which SBC-3 5.11 answers
/// with GOOD rather than CONDITION MET ("the cache does not have sufficient capacity");
/// libiscsi's PRE-FETCH tests expect GOOD too. IMMED changes nothing for a no-op.
pub fn pre_fetch(lu: &LogicalUnit, lba: u64, blocks: u32) -> Outcome {
    let capacity = lu.device.num_blocks();
    // The first LBA must exist even when PREFETCH LENGTH 0 means "to the last LBA".
    let end = lba.checked_add(u64::from(blocks));
    if lba >= capacity || end.is_none_or(|e| e > capacity) {
        return Err(Sense::illegal(Asc::LBA_OUT_OF_RANGE).into());
    }
    Ok(Done::NO_DATA)
}
