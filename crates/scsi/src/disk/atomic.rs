//! COMPARE AND WRITE (SBC-3 5.2), ORWRITE(16) (SBC-3 5.13) and WRITE ATOMIC(16) (SBC-4 5.48):
//! the writes that must not interleave with any other write to the same blocks. Each holds
//! the unit's range lock (`esos_lu::range_lock`) from its read to the end of its write.
//!
//! WRITE ATOMIC is atomic against other commands; against power loss it is only as atomic
//! as one write request to the backend is.

use esos_block::BlockDevice;

use super::rw::{check, check_data_out, check_writable, offset};
use super::{Done, Fail, Outcome};
use crate::IoBuf;
use crate::block_status::{Direction, block_sense};
use crate::cdb::BlockRange;
use crate::sense::{Asc, Sense, SenseKey};
use crate::unit::LogicalUnit;

/// Upper bound of MAXIMUM COMPARE AND WRITE LENGTH: the CDB field is one byte.
pub const MAX_CAW_BLOCKS: u32 = 255;

/// MAXIMUM COMPARE AND WRITE LENGTH for an LU (Block Limits VPD byte 5): the data-out
/// buffer carries twice the blocks, and must fit the maximum transfer length.
pub fn max_caw_blocks(max_transfer_blocks: u32) -> u32 {
    (max_transfer_blocks / 2).clamp(1, MAX_CAW_BLOCKS)
}

/// Reads `blocks` at `lba` into a fresh buffer (these commands are not on the hot path).
async fn read_medium(lu: &LogicalUnit, lba: u64, bytes: usize) -> Result<IoBuf, Fail> {
    let (res, medium) = lu.device.read(offset(lu, lba), vec![0u8; bytes]).await;
    res.map_err(|e| {
        tracing::warn!(lba, "read for an atomic write failed: {e}");
        Fail::from(block_sense(&e, Direction::Read))
    })?;
    Ok(medium)
}

async fn write_medium(lu: &LogicalUnit, r: &BlockRange, data: IoBuf) -> (Result<(), Fail>, IoBuf) {
    // Write-through when WCE is 0 (SBC-3 6.4.5), as for WRITE.
    let fua = r.fua || !lu.mode.wce();
    let (res, data) = lu.device.write(offset(lu, r.lba), data, fua).await;
    let res = res.map_err(|e| {
        tracing::warn!(lba = r.lba, blocks = r.blocks, "atomic write failed: {e}");
        Fail::from(block_sense(&e, Direction::Write))
    });
    (res, data)
}

/// COMPARE AND WRITE: the first half of the data-out buffer is compared with the medium;
/// only when every byte matches is the second half written (SBC-3 5.2).
pub async fn compare_and_write(
    lu: &LogicalUnit,
    r: BlockRange,
    expected_len: u32,
    buf: IoBuf,
) -> (Outcome, IoBuf) {
    match caw(lu, r, expected_len, &buf).await {
        Ok(done) => (Ok(done), buf),
        Err(f) => (Err(f), buf),
    }
}

async fn caw(lu: &LogicalUnit, r: BlockRange, expected_len: u32, buf: &IoBuf) -> Outcome {
    if r.blocks > max_caw_blocks(lu.max_transfer_blocks()) {
        return Err(Sense::invalid_cdb_field(r.len_byte, None).into());
    }
    let bytes = check(lu, &r)?;
    check_writable(lu)?;
    let total = 2 * bytes;
    // The buffer's halves are defined by NUMBER OF LOGICAL BLOCKS; more data-out than that
    // leaves the halves ambiguous (a count of 256 wrapped to 0 is the usual cause), so
    // nothing is done.
    if u64::from(expected_len) > total {
        return Err(Sense::invalid_cdb_field(r.len_byte, None).into());
    }
    if bytes == 0 {
        // SBC-3 5.2: zero blocks is not an error; nothing is compared or written.
        return Ok(Done::NO_DATA);
    }
    check_data_out(expected_len, buf, total)?;
    let bytes = bytes as usize;
    let _range = lu.ranges.atomic(r.lba, u64::from(r.blocks)).await;
    let mut medium = read_medium(lu, r.lba, bytes).await?;
    if let Some(at) = buf[..bytes].iter().zip(&medium).position(|(a, b)| a != b) {
        // SBC-3 5.2: INFORMATION is the offset of the first differing byte in the buffer.
        let mut s = Sense::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY);
        s.info = Some(at as u64);
        return Err(s.into());
    }
    medium.copy_from_slice(&buf[bytes..2 * bytes]);
    write_medium(lu, &r, medium).await.0?;
    Ok(Done {
        data_in: 0,
        transfer: total,
    })
}

/// ORWRITE(16): medium := medium OR data-out (SBC-3 5.13, BMOP 000b of ORWRITE(32)).
pub async fn orwrite(
    lu: &LogicalUnit,
    r: BlockRange,
    expected_len: u32,
    buf: IoBuf,
) -> (Outcome, IoBuf) {
    match or_write(lu, r, expected_len, &buf).await {
        Ok(done) => (Ok(done), buf),
        Err(f) => (Err(f), buf),
    }
}

async fn or_write(lu: &LogicalUnit, r: BlockRange, expected_len: u32, buf: &IoBuf) -> Outcome {
    let bytes = check(lu, &r)?;
    check_writable(lu)?;
    if bytes == 0 {
        return Ok(Done::NO_DATA);
    }
    // All or nothing: a partial OR would not be the atomic operation SBC-3 describes.
    check_data_out(expected_len, buf, bytes)?;
    let _range = lu.ranges.atomic(r.lba, u64::from(r.blocks)).await;
    let mut medium = read_medium(lu, r.lba, bytes as usize).await?;
    for (m, d) in medium.iter_mut().zip(buf.iter()) {
        *m |= d;
    }
    write_medium(lu, &r, medium).await.0?;
    Ok(Done {
        data_in: 0,
        transfer: bytes,
    })
}

/// WRITE ATOMIC(16): the whole transfer or nothing, never interleaved with another write
/// (SBC-4 4.29). MAXIMUM ATOMIC TRANSFER LENGTH equals MAXIMUM TRANSFER LENGTH, so the
/// common transfer-length check covers it.
pub async fn write_atomic(
    lu: &LogicalUnit,
    r: BlockRange,
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
    if let Err(f) = check_data_out(expected_len, &buf, bytes) {
        return (Err(f), buf);
    }
    buf.truncate(bytes as usize);
    let range = lu.ranges.atomic(r.lba, u64::from(r.blocks)).await;
    let (res, buf) = write_medium(lu, &r, buf).await;
    drop(range);
    let out = res.map(|()| Done {
        data_in: 0,
        transfer: bytes,
    });
    (out, buf)
}
