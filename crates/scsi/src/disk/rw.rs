//! READ, WRITE, WRITE AND VERIFY and VERIFY (SBC-3 5.8-5.11, 5.29-5.36).
//!
//! The hot path allocates nothing: the transport's buffer is resized within its capacity
//! and handed to the device, which gives it back.

use esos_block::{BlockDevice, FileSlice};

use super::{Done, Fail, Outcome};
use crate::block_status::{Direction, block_sense};
use crate::cdb::BlockRange;
use crate::sense::{Asc, Sense, SenseKey};
use crate::unit::LogicalUnit;
use crate::{IoBuf, Residual};

/// Checks the transfer length against the block limits and the range against capacity.
pub(super) fn check(lu: &LogicalUnit, r: &BlockRange) -> Result<u64, Fail> {
    if r.blocks > lu.max_transfer_blocks() {
        // SBC-3 6.5.3: MAXIMUM TRANSFER LENGTH exceeded.
        return Err(Sense::invalid_cdb_field(r.len_byte, None).into());
    }
    let end = r.lba.checked_add(u64::from(r.blocks));
    if end.is_none_or(|e| e > lu.device.num_blocks()) {
        return Err(Sense::illegal(Asc::LBA_OUT_OF_RANGE).into());
    }
    Ok(u64::from(r.blocks) * u64::from(lu.device.block_size()))
}

/// DATA PROTECT when the LU, its backend or the control page's SWP forbids writing.
pub(super) fn check_writable(lu: &LogicalUnit) -> Result<(), Fail> {
    if lu.mode.swp() {
        return Err(Sense::new(SenseKey::DataProtect, Asc::SOFTWARE_WRITE_PROTECTED).into());
    }
    if lu.write_protected() {
        return Err(Sense::new(SenseKey::DataProtect, Asc::WRITE_PROTECTED).into());
    }
    Ok(())
}

/// The data-out buffer must hold the whole transfer. When the initiator's EDTL is smaller,
/// nothing is written and the command ends with INVALID FIELD IN INFORMATION UNIT and the
/// overflow residual (FCP-4's option b for SPDTL > EDTL, which libiscsi's residual tests
/// accept; RFC 7143 11.4.5.2 defines the residual).
pub fn check_data_out(expected_len: u32, buf: &IoBuf, bytes: u64) -> Result<(), Fail> {
    if (buf.len() as u64) < bytes || u64::from(expected_len) < bytes {
        let over = bytes.saturating_sub(u64::from(expected_len));
        return Err(Fail {
            sense: Sense::illegal(Asc::INVALID_FIELD_IN_INFORMATION_UNIT),
            residual: if over > 0 {
                Residual::Overflow(u32::try_from(over).unwrap_or(u32::MAX))
            } else {
                Residual::None
            },
        });
    }
    Ok(())
}

pub(super) fn offset(lu: &LogicalUnit, lba: u64) -> u64 {
    lba * u64::from(lu.device.block_size())
}

/// READ. With `by_ref` = (min, slice), a transfer of at least `min` bytes from a device
/// whose data is resident in memory is answered by reference: `slice` gets the file range,
/// the buffer stays as it is, and the transport sends the range from the page cache.
pub async fn read(
    lu: &LogicalUnit,
    r: BlockRange,
    mut buf: IoBuf,
    by_ref: Option<(u32, &mut Option<FileSlice>)>,
) -> (Outcome, IoBuf) {
    let bytes = match check(lu, &r) {
        Ok(b) => b,
        Err(f) => return (Err(f), buf),
    };
    if bytes == 0 {
        return (Ok(Done::NO_DATA), buf);
    }
    if let Some((min, slice)) = by_ref
        && bytes >= u64::from(min)
    {
        match lu.device.resident_slice(offset(lu, r.lba), bytes) {
            Ok(Some(s)) => {
                *slice = Some(s);
                let done = Done {
                    data_in: bytes as u32,
                    transfer: bytes,
                };
                return (Ok(done), buf);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(lba = r.lba, blocks = r.blocks, "read failed: {e}");
                return (Err(block_sense(&e, Direction::Read).into()), buf);
            }
        }
    }
    // `check` bounded `bytes` by the maximum transfer, which fits in u32. Only growth is
    // zero-filled: the device overwrites every byte (zeros past a file's end included).
    buf.resize(bytes as usize, 0);
    let (res, buf) = lu.device.read(offset(lu, r.lba), buf).await;
    match res {
        Ok(()) => (
            Ok(Done {
                data_in: bytes as u32,
                transfer: bytes,
            }),
            buf,
        ),
        Err(e) => {
            tracing::warn!(lba = r.lba, blocks = r.blocks, "read failed: {e}");
            (Err(block_sense(&e, Direction::Read).into()), buf)
        }
    }
}

/// WRITE and WRITE AND VERIFY. With WCE 0 every write is FUA (SBC-3 6.4.5: write-through).
pub async fn write(
    lu: &LogicalUnit,
    r: BlockRange,
    force_fua: bool,
    expected_len: u32,
    mut buf: IoBuf,
) -> (Outcome, IoBuf) {
    let bytes = match check(lu, &r).and_then(|b| check_writable(lu).map(|()| b)) {
        Ok(b) => b,
        Err(f) => return (Err(f), buf),
    };
    if bytes == 0 {
        return (Ok(Done::NO_DATA), buf);
    }
    // EDTL smaller than the transfer: only the whole blocks the initiator sent are written
    // and the command ends GOOD with an overflow residual (RFC 7143 11.4.5.2; libiscsi's
    // residual tests expect exactly this). EDTL larger: only the transfer is written and
    // the residual is an underflow.
    let bs = u64::from(lu.device.block_size());
    let sent = bytes.min(u64::from(expected_len)).min(buf.len() as u64);
    let writable = sent / bs * bs;
    if writable == 0 {
        return (
            Ok(Done {
                data_in: 0,
                transfer: bytes,
            }),
            buf,
        );
    }
    buf.truncate(writable as usize);
    let fua = force_fua || r.fua || !lu.mode.wce();
    #[cfg(test)]
    if fua {
        lu.fua_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // Free unless a COMPARE AND WRITE / ORWRITE / WRITE ATOMIC is in flight (range_lock.rs).
    let range = lu.ranges.write(r.lba, writable / bs).await;
    let (res, buf) = lu.device.write(offset(lu, r.lba), buf, fua).await;
    drop(range);
    match res {
        Ok(()) => (
            Ok(Done {
                data_in: 0,
                transfer: bytes,
            }),
            buf,
        ),
        Err(e) => {
            tracing::warn!(lba = r.lba, blocks = r.blocks, "write failed: {e}");
            (Err(block_sense(&e, Direction::Write).into()), buf)
        }
    }
}

/// VERIFY: BYTCHK 0 checks the range only (the medium has no checkable ECC here); BYTCHK 1
/// compares the data-out buffer with the medium (SBC-3 5.33).
pub async fn verify(
    lu: &LogicalUnit,
    r: BlockRange,
    bytchk: bool,
    expected_len: u32,
    buf: IoBuf,
) -> (Outcome, IoBuf) {
    let bytes = match check(lu, &r) {
        Ok(b) => b,
        Err(f) => return (Err(f), buf),
    };
    if !bytchk || bytes == 0 {
        return (Ok(Done::NO_DATA), buf);
    }
    if let Err(f) = check_data_out(expected_len, &buf, bytes) {
        return (Err(f), buf);
    }
    // Verify is not a hot path: one medium buffer per command.
    let medium = vec![0u8; bytes as usize];
    let (res, medium) = lu.device.read(offset(lu, r.lba), medium).await;
    if let Err(e) = res {
        tracing::warn!(lba = r.lba, blocks = r.blocks, "verify read failed: {e}");
        return (Err(block_sense(&e, Direction::Read).into()), buf);
    }
    if let Some(at) = buf[..bytes as usize]
        .iter()
        .zip(&medium)
        .position(|(a, b)| a != b)
    {
        // SBC-3 5.33: INFORMATION is the offset of the first byte that did not match.
        let mut s = Sense::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY);
        s.info = Some(at as u64);
        return (Err(s.into()), buf);
    }
    (
        Ok(Done {
            data_in: 0,
            transfer: bytes,
        }),
        buf,
    )
}
