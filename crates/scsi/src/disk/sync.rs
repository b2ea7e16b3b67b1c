//! SYNCHRONIZE CACHE (10) and (16) (SBC-3 5.22, 5.23).

use std::sync::Arc;

use esos_block::BlockDevice;

use super::{Done, Outcome};
use crate::engine::LogicalUnit;
use crate::sense::{Asc, Sense, SenseKey};

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
            Err(Sense::new(SenseKey::MediumError, Asc::WRITE_ERROR).into())
        }
    }
}
