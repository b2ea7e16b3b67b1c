//! Logical block provisioning (SBC-3 4.7): UNMAP, WRITE SAME, GET LBA STATUS, and the
//! provisioning fields of READ CAPACITY(16) and the Block Limits / Logical Block
//! Provisioning VPD pages.
//!
//! A LU is thin when its settings ask for it and its device can discard. Only a thin LU
//! reports LBPME and accepts UNMAP and WRITE SAME with the UNMAP bit; WRITE SAME without it
//! and GET LBA STATUS (then "all mapped") work on every LU.

use esos_block::{BlockDevice, Extent};

use super::rw::{check_data_out, check_writable};
use super::{Done, Fail, Outcome};
use crate::block_status::{Direction, block_sense};
use crate::cdb::WriteSame;
use crate::sense::{Asc, Sense};
use crate::unit::LogicalUnit;
use crate::{Command, IoBuf, Residual};

/// Most block descriptors one UNMAP may carry (VPD 0xB0 MAXIMUM UNMAP BLOCK DESCRIPTOR
/// COUNT); bounds the parameter list a peer makes us parse.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;

/// Largest UNMAP parameter list: the header and [`MAX_UNMAP_DESCRIPTORS`] descriptors.
pub const MAX_UNMAP_PARAM_LEN: u32 = 8 + 16 * MAX_UNMAP_DESCRIPTORS;

/// Most blocks one UNMAP may release in total (VPD 0xB0 MAXIMUM UNMAP LBA COUNT). A hole
/// punch is cheap, but one command should still finish in bounded time; libiscsi treats
/// more than 2^20 as insane.
pub const MAX_UNMAP_BLOCKS: u32 = 1 << 20;

/// Most bytes one WRITE SAME may cover (VPD 0xB0 MAXIMUM WRITE SAME LENGTH): without UNMAP
/// the block is really written that many times.
pub const MAX_WRITE_SAME_BYTES: u64 = 1 << 30;

/// Size of the buffer WRITE SAME fills with copies of its block and writes repeatedly.
const WRITE_SAME_CHUNK_BYTES: u64 = 1 << 20;

/// Most descriptors GET LBA STATUS returns; the initiator asks again from where it ends.
pub const MAX_LBA_STATUS_DESCRIPTORS: usize = esos_block::MAX_ALLOCATION_EXTENTS;

/// Provisioning status codes of an LBA status descriptor (SBC-3 table 44).
const STATUS_MAPPED: u8 = 0;
const STATUS_DEALLOCATED: u8 = 1;

/// True when the LU exposes thin provisioning.
pub(crate) fn thin(lu: &LogicalUnit) -> bool {
    lu.settings.thin && lu.device.supports_discard()
}

/// LBPRZ: unmapped blocks read as zeros.
pub(crate) fn lbprz(lu: &LogicalUnit) -> bool {
    thin(lu) && lu.device.discard_zeroes()
}

fn max_unmap_blocks(_lu: &LogicalUnit) -> u32 {
    MAX_UNMAP_BLOCKS
}

/// No more than a WRITE may move either, so initiators that size one by the other agree.
fn max_write_same_blocks(lu: &LogicalUnit) -> u32 {
    let by_bytes = MAX_WRITE_SAME_BYTES / u64::from(lu.device.block_size());
    u32::try_from(by_bytes)
        .unwrap_or(u32::MAX)
        .min(lu.max_transfer_blocks())
}

/// Sets LBPME and LBPRZ in READ CAPACITY(16) data built by `capacity::capacity16`
/// (SBC-3 5.16.2, byte 14).
pub fn capacity16_bits(lu: &LogicalUnit, data: &mut [u8]) {
    if data.len() > 14 && thin(lu) {
        data[14] |= 0x80 | if lbprz(lu) { 0x40 } else { 0 };
    }
}

/// Logical blocks per physical block (SBC-3 5.16.2 LBPPB), from the LU settings.
fn lbppb(lu: &LogicalUnit) -> u32 {
    1u32 << lu.settings.lbppb_exponent.min(15)
}

/// Fills the provisioning fields of the VPD pages that `vpd.rs` lays out: Block Limits
/// (SBC-3 6.5.3) gets the WRITE SAME limit and the physical-block granularity always, the
/// UNMAP limits when thin (WSNZ stays 0: a NUMBER OF LOGICAL BLOCKS of 0 is accepted);
/// Logical Block Provisioning (SBC-3 6.5.4) gets LBPU, LBPWS, LBPWS10, LBPRZ and the
/// provisioning type when thin. Pages shorter than expected are left alone.
pub fn fill_vpd(lu: &LogicalUnit, page: u8, out: &mut [u8]) {
    match page {
        super::vpd::BLOCK_LIMITS if out.len() >= 44 => {
            // OPTIMAL TRANSFER LENGTH GRANULARITY: at least one physical block, so
            // initiators avoid read-modify-write of partial physical blocks.
            let otlg = u16::from_be_bytes([out[6], out[7]]);
            let pb = u16::try_from(lbppb(lu)).unwrap_or(u16::MAX);
            out[6..8].copy_from_slice(&otlg.max(pb).to_be_bytes());
            out[36..44].copy_from_slice(&u64::from(max_write_same_blocks(lu)).to_be_bytes());
            if thin(lu) {
                out[20..24].copy_from_slice(&max_unmap_blocks(lu).to_be_bytes());
                out[24..28].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
                // OPTIMAL UNMAP GRANULARITY: a 4 KiB filesystem block, below which a hole
                // punch only zeroes.
                let gran = (4096 / lu.device.block_size()).max(1).max(lbppb(lu));
                out[28..32].copy_from_slice(&gran.to_be_bytes());
            }
        }
        super::vpd::BLOCK_CHARACTERISTICS if out.len() >= 8 => {
            // WABEREQ 01b: after a SANITIZE BLOCK ERASE, reads of blocks not written
            // since succeed (they return zeros, disk/sanitize.rs); WACEREQ 00b, as
            // CRYPTOGRAPHIC ERASE is not supported (SBC-4 6.6.2).
            out[7] = (out[7] & 0x0F) | 0x40;
        }
        super::vpd::LB_PROVISIONING if out.len() >= 8 && thin(lu) => {
            // LBPU, LBPWS, LBPWS10; LBPRZ 001b; ANC_SUP 0 (no anchored state); DP 0.
            out[5] = 0x80 | 0x40 | 0x20 | if lbprz(lu) { 0x04 } else { 0 };
            // PROVISIONING TYPE 010b: thin provisioned.
            out[6] = (out[6] & !0x07) | 0x02;
        }
        _ => {}
    }
}

/// Runs a block-layer operation and turns a failure into sense (`block_status.rs`); with
/// WCE 0 the result is made durable before status (SBC-3 6.4.5).
async fn durable(
    lu: &LogicalUnit,
    what: &str,
    lba: u64,
    r: Result<(), esos_block::BlockError>,
) -> Result<(), Fail> {
    let r = match r {
        Ok(()) if !lu.mode.wce() => lu.device.flush().await,
        other => other,
    };
    r.map_err(|e| {
        tracing::warn!(lba, "{what} failed: {e}");
        block_sense(&e, Direction::Write).into()
    })
}

/// UNMAP (SBC-3 5.28): every descriptor is checked before any block is released.
pub async fn unmap(
    lu: &LogicalUnit,
    cmd: &Command,
    anchor: bool,
    param_len: u32,
    buf: &IoBuf,
) -> Outcome {
    if !thin(lu) {
        return Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE).into());
    }
    if anchor {
        // ANC_SUP 0 (SBC-3 5.28.1).
        return Err(Sense::invalid_cdb_field(1, Some(0)).into());
    }
    if param_len == 0 {
        return Ok(Done::NO_DATA);
    }
    if param_len < 8 {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    if param_len > MAX_UNMAP_PARAM_LEN {
        // Room for more descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (SBC-3 5.28.2).
        return Err(Sense::invalid_param_field(2, None).into());
    }
    check_data_out(cmd.expected_len, buf, u64::from(param_len))?;
    let list = &buf[..param_len as usize];
    let ranges = parse_unmap_list(list, lu.device.num_blocks(), max_unmap_blocks(lu))?;
    // Write protection refuses changes to the medium; descriptors of 0 blocks change
    // nothing, so a list of only those succeeds even then.
    if !ranges.is_empty() {
        check_writable(lu)?;
    }
    let bs = u64::from(lu.device.block_size());
    let mut released = Ok(());
    let mut first_lba = 0;
    for &(lba, blocks) in &ranges {
        first_lba = lba;
        // Ordered against COMPARE AND WRITE / ORWRITE on the same blocks.
        let _range = lu.ranges.write(lba, u64::from(blocks)).await;
        released = lu.device.discard(lba * bs, u64::from(blocks) * bs).await;
        if released.is_err() {
            break;
        }
    }
    durable(lu, "unmap", first_lba, released).await?;
    Ok(Done {
        data_in: 0,
        transfer: u64::from(param_len),
    })
}

/// Parses an UNMAP parameter list (SBC-3 5.28.2) into (LBA, blocks) ranges with blocks > 0.
/// An incomplete trailing descriptor is ignored, as the standard says.
pub fn parse_unmap_list(
    list: &[u8],
    num_blocks: u64,
    max_blocks: u32,
) -> Result<Vec<(u64, u32)>, Fail> {
    if list.len() < 8 {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    let desc_len = usize::from(u16::from_be_bytes([list[2], list[3]]));
    let avail = list.len() - 8;
    let count = desc_len.min(avail) / 16;
    if count > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::invalid_param_field(2, None).into());
    }
    let mut out = Vec::with_capacity(count);
    let mut total: u64 = 0;
    for i in 0..count {
        let d = &list[8 + 16 * i..8 + 16 * (i + 1)];
        let lba = u64::from_be_bytes(d[0..8].try_into().unwrap_or_default());
        let blocks = u32::from_be_bytes(d[8..12].try_into().unwrap_or_default());
        if lba
            .checked_add(u64::from(blocks))
            .is_none_or(|end| end > num_blocks)
        {
            let mut s = Sense::illegal(Asc::LBA_OUT_OF_RANGE);
            s.info = Some(lba);
            return Err(s.into());
        }
        total += u64::from(blocks);
        if total > u64::from(max_blocks) {
            return Err(Sense::invalid_param_field((8 + 16 * i + 8) as u16, None).into());
        }
        if blocks > 0 {
            out.push((lba, blocks));
        }
    }
    Ok(out)
}

/// WRITE SAME(10)/(16) (SBC-3 5.40, 5.41).
pub async fn write_same(
    lu: &LogicalUnit,
    cmd: &Command,
    ws: WriteSame,
    buf: IoBuf,
) -> (Outcome, IoBuf) {
    let out = write_same_inner(lu, cmd, ws, &buf).await;
    (out, buf)
}

async fn write_same_inner(lu: &LogicalUnit, cmd: &Command, ws: WriteSame, buf: &IoBuf) -> Outcome {
    // A write-protected unit refuses every WRITE SAME as a write first (SBC-3 4.11; what
    // libiscsi's ReadOnlySBC expects even when the UNMAP bit is set on a non-thin unit).
    check_writable(lu)?;
    if ws.anchor {
        // ANC_SUP 0; ANCHOR without UNMAP is invalid in any case (SBC-3 5.40).
        return Err(Sense::invalid_cdb_field(1, Some(4)).into());
    }
    if ws.unmap && !thin(lu) {
        return Err(Sense::invalid_cdb_field(1, Some(3)).into());
    }
    let ws = WriteSame {
        blocks: write_same_blocks(lu, &ws)?,
        ..ws
    };
    check_writable(lu)?;
    let bs = u64::from(lu.device.block_size());
    let transfer = if ws.ndob { 0 } else { bs };
    if !ws.ndob {
        check_data_out(cmd.expected_len, buf, bs)?;
        if u64::from(cmd.expected_len) > bs {
            // The data-out buffer is exactly one block.
            return Err(Fail {
                sense: Sense::illegal(Asc::INVALID_FIELD_IN_CDB),
                residual: Residual::Underflow(cmd.expected_len - bs as u32),
            });
        }
    }
    let block = if ws.ndob {
        &[][..]
    } else {
        &buf[..bs as usize]
    };
    let zeros = block.iter().all(|&b| b == 0);
    let (offset, len) = (ws.lba * bs, u64::from(ws.blocks) * bs);
    // Ordered against COMPARE AND WRITE / ORWRITE on the same blocks.
    let _range = lu.ranges.write(ws.lba, u64::from(ws.blocks)).await;
    let r = if ws.unmap && lbprz(lu) {
        // UNMAP set: the initiator asks for the blocks to be deallocated, and SBC-3
        // (4.7.3.4, 5.43) lets the device server unmap them instead of writing the block;
        // with LBPRZ they then read as zeros, whatever the Data-Out block held (what
        // LIO does, and what libiscsi's WriteSame10.UnmapUntilEnd checks).
        lu.device.discard(offset, len).await
    } else if zeros && !thin(lu) {
        // Fully provisioned: allocation is not reported, so zeroing need not send data.
        lu.device.write_zeroes(offset, len).await
    } else {
        // A thin LU keeps written blocks mapped: zeros are written for real.
        repeat_write(lu, offset, len, block).await
    };
    durable(lu, "write same", ws.lba, r).await?;
    Ok(Done {
        data_in: 0,
        transfer,
    })
}

/// The number of blocks a WRITE SAME covers, checked against MAXIMUM WRITE SAME LENGTH and
/// the capacity. A NUMBER OF LOGICAL BLOCKS of 0 means "from the LBA to the last LBA"
/// (SBC-3 5.41, WSNZ 0); when that is more than the limit the CDB is refused, as for an
/// explicit count (SBC-3 6.5.3).
fn write_same_blocks(lu: &LogicalUnit, ws: &WriteSame) -> Result<u32, Fail> {
    let num_blocks = lu.device.num_blocks();
    let max = max_write_same_blocks(lu);
    let too_long = || Sense::invalid_cdb_field(ws.len_byte, None).into();
    let out_of_range = || Sense::illegal(Asc::LBA_OUT_OF_RANGE).into();
    if ws.blocks == 0 {
        if ws.lba >= num_blocks {
            return Err(out_of_range());
        }
        return u32::try_from(num_blocks - ws.lba)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(too_long);
    }
    if ws.blocks > max {
        return Err(too_long());
    }
    let end = ws.lba.checked_add(u64::from(ws.blocks));
    if end.is_none_or(|e| e > num_blocks) {
        return Err(out_of_range());
    }
    Ok(ws.blocks)
}

/// Writes `block` (empty means zeros) over `[offset, offset + len)` from one bounded buffer.
async fn repeat_write(
    lu: &LogicalUnit,
    offset: u64,
    len: u64,
    block: &[u8],
) -> Result<(), esos_block::BlockError> {
    let bs = u64::from(lu.device.block_size());
    let chunk = len.min(WRITE_SAME_CHUNK_BYTES / bs * bs);
    let mut data = vec![0u8; chunk as usize];
    if !block.is_empty() {
        for piece in data.chunks_exact_mut(bs as usize) {
            piece.copy_from_slice(block);
        }
    }
    let fua = !lu.mode.wce();
    let mut done = 0;
    while done < len {
        let n = chunk.min(len - done);
        data.truncate(n as usize);
        let (r, back) = lu.device.write(offset + done, data, fua).await;
        r?;
        data = back;
        done += n;
    }
    Ok(())
}

/// GET LBA STATUS (SBC-3 5.16): descriptors from the starting LBA on, as many as the
/// allocation length holds (at most [`MAX_LBA_STATUS_DESCRIPTORS`]).
pub async fn get_lba_status(
    lu: &LogicalUnit,
    lba: u64,
    alloc_len: u32,
    buf: &mut IoBuf,
) -> Outcome {
    let num_blocks = lu.device.num_blocks();
    if lba >= num_blocks {
        return Err(Sense::illegal(Asc::LBA_OUT_OF_RANGE).into());
    }
    let bs = u64::from(lu.device.block_size());
    let extents = if thin(lu) {
        match lu
            .device
            .allocation(lba * bs, (num_blocks - lba) * bs)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(lba, "allocation query failed: {e}");
                return Err(block_sense(&e, Direction::Read).into());
            }
        }
    } else {
        vec![Extent {
            offset: lba * bs,
            len: (num_blocks - lba) * bs,
            mapped: true,
        }]
    };
    let room = (alloc_len.saturating_sub(8) / 16).max(1) as usize;
    lba_status_data(&extents, bs, room.min(MAX_LBA_STATUS_DESCRIPTORS), buf);
    Ok(Done::data(buf.len(), alloc_len))
}

/// Encodes LBA status parameter data (SBC-3 5.16.2) for up to `max` extents.
pub fn lba_status_data(extents: &[Extent], block_size: u64, max: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(8, 0);
    for e in extents.iter().take(max) {
        let lba = e.offset / block_size;
        // NUMBER OF LOGICAL BLOCKS is 32 bits; the initiator asks again for the rest.
        let blocks = u32::try_from(e.len / block_size).unwrap_or(u32::MAX);
        out.extend_from_slice(&lba.to_be_bytes());
        out.extend_from_slice(&blocks.to_be_bytes());
        let status = if e.mapped {
            STATUS_MAPPED
        } else {
            STATUS_DEALLOCATED
        };
        out.extend_from_slice(&[status, 0, 0, 0]);
    }
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use esos_block::{Backend, Device, DeviceSpec};

    use super::*;
    use crate::cdb::{op, provision_encode as enc};
    use crate::{Identity, LuSettings, LunMap, MAX_CDB_LEN, Nexus, Response, Status, TaskAttr};

    const BS: usize = 512;
    /// 4 RAM chunks of 1 MiB, so whole-chunk discards show up in the allocation map.
    const BLOCKS: u64 = 8192;
    const CHUNK_BLOCKS: u64 = 2048;

    fn lu(thin: bool, read_only: bool) -> Arc<LogicalUnit> {
        lu_with(thin, read_only, 0)
    }

    fn lu_with(thin: bool, read_only: bool, lbppb_exponent: u8) -> Arc<LogicalUnit> {
        let spec = DeviceSpec {
            backend: Backend::Ram {
                size_bytes: BLOCKS * BS as u64,
            },
            block_size: BS as u32,
            read_only: false,
            rotational: None,
        };
        let settings = LuSettings {
            write_cache: true,
            read_only,
            max_transfer_blocks: 4096,
            thin,
            lbppb_exponent,
            ..LuSettings::disk(Identity {
                vendor: "ESOS".into(),
                product: "thin".into(),
                revision: "1".into(),
                serial: "T1".into(),
                uuid: [0; 16],
                naa: [0x60; 16],
            })
        };
        LogicalUnit::new(Device::open(&spec).unwrap(), settings)
    }

    struct T {
        map: LunMap,
        nx: Arc<Nexus>,
    }

    impl T {
        async fn new(thin: bool, read_only: bool) -> T {
            T::with(lu(thin, read_only)).await
        }

        async fn with(lu: Arc<LogicalUnit>) -> T {
            let t = T {
                map: LunMap::new(vec![(0, lu)]),
                nx: Arc::new(Nexus {
                    id: 1,
                    initiator_port: "iqn.i,i,0x1".into(),
                    target_port: "iqn.t,t,0x1".into(),
                    relative_port: 1,
                    port_group: 1,
                }),
            };
            // Consume the power-on unit attention.
            t.run(&[op::TEST_UNIT_READY, 0, 0, 0, 0, 0], 0, Vec::new())
                .await;
            t
        }

        async fn run(&self, cdb: &[u8], expected_len: u32, buf: Vec<u8>) -> (Response, Vec<u8>) {
            let mut c = [0u8; MAX_CDB_LEN];
            c[..cdb.len()].copy_from_slice(cdb);
            let cmd = Command {
                nexus: Arc::clone(&self.nx),
                lun: crate::lun::encode(0),
                cdb: c,
                cdb_len: cdb.len() as u8,
                attr: TaskAttr::Simple,
                tag: 0,
                expected_len,
                data_out: !buf.is_empty(),
            };
            self.map.submit(cmd, buf).await
        }

        async fn write(&self, lba: u64, data: Vec<u8>) {
            let blocks = (data.len() / BS) as u32;
            let cdb = crate::cdb::encode::rw(true, 16, lba, blocks, false, false);
            let (r, _) = self.run(&cdb, data.len() as u32, data).await;
            good(&r);
        }

        async fn read(&self, lba: u64, blocks: u32) -> Vec<u8> {
            let cdb = crate::cdb::encode::rw(false, 16, lba, blocks, false, false);
            let (r, mut data) = self.run(&cdb, blocks * BS as u32, Vec::new()).await;
            good(&r);
            data.truncate(r.data_in_len as usize);
            data
        }

        async fn unmap(&self, ranges: &[(u64, u32)]) -> Response {
            let list = unmap_list(ranges);
            let cdb = enc::unmap(false, list.len() as u16);
            self.run(&cdb, list.len() as u32, list).await.0
        }

        async fn lba_status(&self, lba: u64) -> Result<Vec<(u64, u32, u8)>, Response> {
            let (r, data) = self
                .run(&enc::get_lba_status(lba, 4096), 4096, Vec::new())
                .await;
            if r.status != Status::Good {
                return Err(r);
            }
            let len = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
            assert_eq!(len + 4, r.data_in_len as usize);
            Ok(data[8..len + 4]
                .chunks_exact(16)
                .map(|d| {
                    (
                        u64::from_be_bytes(d[0..8].try_into().unwrap()),
                        u32::from_be_bytes(d[8..12].try_into().unwrap()),
                        d[12],
                    )
                })
                .collect())
        }

        async fn vpd(&self, page: u8) -> Vec<u8> {
            let (r, mut data) = self
                .run(&[op::INQUIRY, 1, page, 1, 0, 0], 256, Vec::new())
                .await;
            good(&r);
            data.truncate(r.data_in_len as usize);
            data
        }
    }

    fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
        let mut l = vec![0u8; 8];
        for &(lba, n) in ranges {
            l.extend_from_slice(&lba.to_be_bytes());
            l.extend_from_slice(&n.to_be_bytes());
            l.extend_from_slice(&[0; 4]);
        }
        let n = (l.len() - 2) as u16;
        l[0..2].copy_from_slice(&n.to_be_bytes());
        let d = (l.len() - 8) as u16;
        l[2..4].copy_from_slice(&d.to_be_bytes());
        l
    }

    fn good(r: &Response) {
        assert_eq!(r.status, Status::Good, "{r:?}");
    }

    /// (sense key, ASC, ASCQ) of fixed-format sense.
    fn check(r: &Response, key: u8, asc: u8, ascq: u8) {
        assert_eq!(r.status, Status::CheckCondition, "{r:?}");
        let b = r.sense.as_slice();
        assert_eq!((b[2] & 0x0F, b[12], b[13]), (key, asc, ascq), "{r:?}");
    }

    fn pattern(blocks: usize, seed: u8) -> Vec<u8> {
        (0..blocks * BS)
            .map(|i| (i as u8).wrapping_mul(7) ^ seed | 1)
            .collect()
    }

    #[tokio::test]
    async fn capacity_and_vpd_report_thin_only_when_thin() {
        for thin in [false, true] {
            let t = T::new(thin, false).await;
            let (r, data) = t
                .run(
                    &[
                        op::SERVICE_ACTION_IN_16,
                        0x10,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        32,
                        0,
                        0,
                    ],
                    32,
                    Vec::new(),
                )
                .await;
            good(&r);
            assert_eq!(data[14] & 0xC0, if thin { 0xC0 } else { 0 }, "thin {thin}");
            let b0 = t.vpd(0xB0).await;
            assert_eq!(b0[4] & 1, 0, "WSNZ");
            assert_eq!(u16::from_be_bytes([b0[6], b0[7]]), 8, "4 KiB granularity");
            let ws = u64::from_be_bytes(b0[36..44].try_into().unwrap());
            assert_eq!(ws, 4096, "bounded by the maximum transfer length");
            let max_lba = u32::from_be_bytes(b0[20..24].try_into().unwrap());
            let max_desc = u32::from_be_bytes(b0[24..28].try_into().unwrap());
            let b2 = t.vpd(0xB2).await;
            if thin {
                assert_eq!(max_desc, MAX_UNMAP_DESCRIPTORS);
                assert!(max_lba > 0);
                assert_eq!(b2[5], 0xE4, "LBPU LBPWS LBPWS10 LBPRZ");
                assert_eq!(b2[6] & 7, 2, "thin provisioned");
            } else {
                assert_eq!((max_lba, max_desc), (0, 0));
                assert_eq!(&b2[4..8], &[0; 4]);
            }
        }
    }

    #[tokio::test]
    async fn fully_provisioned_lu_refuses_unmapping() {
        let t = T::new(false, false).await;
        check(&t.unmap(&[(0, 1)]).await, 5, 0x20, 0);
        let (r, _) = t
            .run(&enc::write_same(false, 0, 1, 0x08), 512, vec![0; BS])
            .await;
        check(&r, 5, 0x24, 0);
        // WRITE SAME without UNMAP works, zeros included.
        t.write(0, pattern(4, 1)).await;
        let (r, _) = t
            .run(&enc::write_same(true, 1, 2, 0), 512, vec![0; BS])
            .await;
        good(&r);
        let got = t.read(0, 4).await;
        assert_eq!(got[..BS], pattern(4, 1)[..BS]);
        assert!(got[BS..3 * BS].iter().all(|&b| b == 0));
        assert_eq!(got[3 * BS..], pattern(4, 1)[3 * BS..]);
        // GET LBA STATUS: everything mapped.
        assert_eq!(
            t.lba_status(5).await.unwrap(),
            [(5, (BLOCKS - 5) as u32, 0)]
        );
    }

    #[tokio::test]
    async fn unmap_releases_and_reads_zeros() {
        let t = T::new(true, false).await;
        t.write(CHUNK_BLOCKS - 8, pattern(16, 2)).await;
        t.write(2 * CHUNK_BLOCKS, pattern(8, 3)).await;
        // One descriptor inside chunk 0/1's boundary, one covering chunk 2 entirely, a
        // zero-length one at the end of the LU.
        let r = t
            .unmap(&[
                (CHUNK_BLOCKS - 4, 2),
                (2 * CHUNK_BLOCKS, CHUNK_BLOCKS as u32),
                (BLOCKS, 0),
            ])
            .await;
        good(&r);
        let got = t.read(CHUNK_BLOCKS - 8, 16).await;
        let want = pattern(16, 2);
        assert_eq!(got[..4 * BS], want[..4 * BS]);
        assert!(got[4 * BS..6 * BS].iter().all(|&b| b == 0));
        assert_eq!(got[6 * BS..], want[6 * BS..]);
        assert!(t.read(2 * CHUNK_BLOCKS, 8).await.iter().all(|&b| b == 0));
        // Chunk 2 is deallocated, chunk 1 still mapped.
        let st = t.lba_status(CHUNK_BLOCKS).await.unwrap();
        assert_eq!(st[0], (CHUNK_BLOCKS, CHUNK_BLOCKS as u32, STATUS_MAPPED));
        assert_eq!(st[1].0, 2 * CHUNK_BLOCKS);
        assert_eq!(st[1].2, STATUS_DEALLOCATED);
        // A status query starts at the LBA asked for.
        assert_eq!(
            t.lba_status(CHUNK_BLOCKS + 5).await.unwrap()[0].0,
            CHUNK_BLOCKS + 5
        );
        // Empty list and zero parameter length are fine.
        good(&t.unmap(&[]).await);
        let (r, _) = t.run(&enc::unmap(false, 0), 0, Vec::new()).await;
        good(&r);
    }

    #[tokio::test]
    async fn unmap_errors_release_nothing() {
        let t = T::new(true, false).await;
        t.write(0, pattern(4, 4)).await;
        // A bad descriptor after a good one: nothing is released.
        check(&t.unmap(&[(0, 4), (BLOCKS - 1, 2)]).await, 5, 0x21, 0);
        assert_eq!(t.read(0, 4).await, pattern(4, 4));
        let too_many: Vec<_> = (0..=u64::from(MAX_UNMAP_DESCRIPTORS))
            .map(|i| (i, 1))
            .collect();
        check(&t.unmap(&too_many).await, 5, 0x26, 0);
        assert_eq!(t.read(0, 4).await, pattern(4, 4));
        // Parameter list shorter than its header.
        let (r, _) = t.run(&enc::unmap(false, 4), 4, vec![0; 4]).await;
        check(&r, 5, 0x1A, 0);
        // ANCHOR is not supported.
        let list = unmap_list(&[(0, 1)]);
        let (r, _) = t.run(&enc::unmap(true, 24), 24, list.clone()).await;
        check(&r, 5, 0x24, 0);
        // Less data than the parameter list length.
        let (r, _) = t.run(&enc::unmap(false, 24), 16, list[..16].to_vec()).await;
        check(&r, 5, 0x0E, 3);
        // Write protected.
        let ro = T::new(true, true).await;
        check(&ro.unmap(&[(0, 1)]).await, 7, 0x27, 0);
        let (r, _) = ro
            .run(&enc::write_same(false, 0, 1, 0x08), 512, vec![0; BS])
            .await;
        check(&r, 7, 0x27, 0);
    }

    #[tokio::test]
    async fn write_same_writes_unmaps_and_checks() {
        let t = T::new(true, false).await;
        let block: Vec<u8> = pattern(1, 9);
        // More blocks than one internal chunk: the repeat loop runs several times.
        let n = 3000u32;
        let (r, _) = t
            .run(&enc::write_same(false, 100, n, 0), 512, block.clone())
            .await;
        good(&r);
        let got = t.read(99, n + 2).await;
        assert!(got[..BS].iter().all(|&b| b == 0));
        for (i, b) in got[BS..].chunks_exact(BS).enumerate().take(n as usize) {
            assert_eq!(b, &block[..], "block {i}");
        }
        assert!(got[(n as usize + 1) * BS..].iter().all(|&b| b == 0));
        // UNMAP deallocates, with a zero block or any other: the blocks read as zeros.
        t.write(2 * CHUNK_BLOCKS, pattern(4, 5)).await;
        let ws = enc::write_same(true, 2 * CHUNK_BLOCKS, CHUNK_BLOCKS as u32, 0x08);
        good(&t.run(&ws, 512, vec![0; BS]).await.0);
        assert!(t.read(2 * CHUNK_BLOCKS, 4).await.iter().all(|&b| b == 0));
        let st = t.lba_status(2 * CHUNK_BLOCKS).await.unwrap();
        assert_eq!(st[0].2, STATUS_DEALLOCATED, "{st:?}");
        t.write(2 * CHUNK_BLOCKS, block.clone()).await;
        let ws = enc::write_same(true, 2 * CHUNK_BLOCKS, 2, 0x08);
        good(&t.run(&ws, 512, block.clone()).await.0);
        assert!(t.read(2 * CHUNK_BLOCKS, 2).await.iter().all(|&b| b == 0));
        // NDOB writes zeros without a data-out buffer.
        let (r, _) = t
            .run(&enc::write_same(false, 100, 2, 0x01), 0, Vec::new())
            .await;
        good(&r);
        assert!(t.read(100, 2).await.iter().all(|&b| b == 0));
        assert_eq!(t.read(102, 1).await, block);
        // WSNZ, MAXIMUM WRITE SAME LENGTH, range, ANCHOR, buffer size.
        let bad = |cdb: Vec<u8>, len: usize| {
            let t = &t;
            async move { t.run(&cdb, len as u32, vec![0; len]).await.0 }
        };
        let max = 4096;
        check(
            &bad(enc::write_same(false, 0, max + 1, 0), BS).await,
            5,
            0x24,
            0,
        );
        check(
            &bad(enc::write_same(false, BLOCKS - 1, 2, 0), BS).await,
            5,
            0x21,
            0,
        );
        check(
            &bad(enc::write_same(false, u64::MAX, 1, 0), BS).await,
            5,
            0x21,
            0,
        );
        check(
            &bad(enc::write_same(true, 0, 1, 0x18), BS).await,
            5,
            0x24,
            0,
        );
        check(
            &bad(enc::write_same(true, 0, 1, 0x10), BS).await,
            5,
            0x24,
            0,
        );
        assert_ne!(
            bad(enc::write_same(true, 0, 1, 0), BS / 2).await.status,
            Status::Good
        );
        assert_ne!(
            bad(enc::write_same(true, 0, 1, 0), 2 * BS).await.status,
            Status::Good
        );
    }

    #[tokio::test]
    async fn write_same_zero_blocks_runs_to_the_end() {
        let t = T::new(true, false).await;
        t.write(BLOCKS - 12, pattern(12, 6)).await;
        let block = pattern(1, 8);
        // 0 blocks from BLOCKS - 10: the last ten blocks, nothing before them.
        let (r, _) = t
            .run(
                &enc::write_same(false, BLOCKS - 10, 0, 0),
                512,
                block.clone(),
            )
            .await;
        good(&r);
        let got = t.read(BLOCKS - 12, 12).await;
        assert_eq!(got[..2 * BS], pattern(12, 6)[..2 * BS]);
        for b in got[2 * BS..].chunks_exact(BS) {
            assert_eq!(b, &block[..]);
        }
        // With UNMAP and zeros the tail is released and reads back as zeros.
        let (r, _) = t
            .run(
                &enc::write_same(true, BLOCKS - 4, 0, 0x08),
                512,
                vec![0; BS],
            )
            .await;
        good(&r);
        assert!(t.read(BLOCKS - 4, 4).await.iter().all(|&b| b == 0));
        // From LBA 0 the rest (8192 blocks) exceeds MAXIMUM WRITE SAME LENGTH (4096).
        let (r, _) = t
            .run(&enc::write_same(false, 0, 0, 0), 512, block.clone())
            .await;
        check(&r, 5, 0x24, 0);
        assert_eq!(r.sense.as_slice()[15..18], [0xC0, 0, 10]);
        // Exactly the limit from the end is fine; an LBA past the last one is out of range.
        let (r, _) = t
            .run(
                &enc::write_same(true, BLOCKS - 4096, 0, 0),
                512,
                block.clone(),
            )
            .await;
        good(&r);
        for lba in [BLOCKS, BLOCKS + 1, u64::from(u32::MAX)] {
            let (r, _) = t
                .run(&enc::write_same(true, lba, 0, 0), 512, block.clone())
                .await;
            check(&r, 5, 0x21, 0);
        }
        // Write protected: refused, nothing written.
        let ro = T::new(true, true).await;
        let (r, _) = ro
            .run(&enc::write_same(false, BLOCKS - 1, 0, 0), 512, block)
            .await;
        check(&r, 7, 0x27, 0);
    }

    #[tokio::test]
    async fn physical_block_size_shows_in_capacity_and_block_limits() {
        let t = T::with(lu_with(true, false, 4)).await;
        let mut cdb = [0u8; 16];
        cdb[0] = op::SERVICE_ACTION_IN_16;
        cdb[1] = 0x10;
        cdb[13] = 32;
        let (r, data) = t.run(&cdb, 32, Vec::new()).await;
        good(&r);
        // LBPPBE 4 (8 KiB physical blocks), LOWEST ALIGNED LBA 0, LBPME + LBPRZ.
        assert_eq!(data[13], 4);
        assert_eq!((data[14], data[15]), (0xC0, 0));
        let b0 = t.vpd(0xB0).await;
        assert_eq!(
            u16::from_be_bytes([b0[6], b0[7]]),
            16,
            "transfer granularity"
        );
        assert_eq!(u32::from_be_bytes(b0[28..32].try_into().unwrap()), 16);
    }

    #[tokio::test]
    async fn zero_length_writes_on_a_read_only_unit_only_check_the_range() {
        let ro = T::new(false, true).await;
        for len in [10, 16] {
            let cdb = crate::cdb::encode::rw(true, len, 0, 0, false, false);
            good(&ro.run(&cdb, 0, Vec::new()).await.0);
            let cdb = crate::cdb::encode::rw(true, len, BLOCKS + 1, 0, false, false);
            check(&ro.run(&cdb, 0, Vec::new()).await.0, 5, 0x21, 0);
            let cdb = crate::cdb::encode::rw(true, len, 0, 1, false, false);
            check(&ro.run(&cdb, 512, vec![0; BS]).await.0, 7, 0x27, 0);
        }
    }

    #[tokio::test]
    async fn zero_block_unmap_is_not_a_write() {
        let ro = T::new(true, true).await;
        good(&ro.unmap(&[(0, 0), (BLOCKS, 0)]).await);
        check(&ro.unmap(&[(0, 0), (5, 1)]).await, 7, 0x27, 0);
        // The range is still checked.
        check(&ro.unmap(&[(BLOCKS + 1, 0)]).await, 5, 0x21, 0);
    }

    #[tokio::test]
    async fn get_lba_status_range_and_short_allocation() {
        let t = T::new(true, false).await;
        check(&t.lba_status(BLOCKS).await.unwrap_err(), 5, 0x21, 0);
        check(&t.lba_status(u64::MAX).await.unwrap_err(), 5, 0x21, 0);
        let st = t.lba_status(BLOCKS - 1).await.unwrap();
        assert_eq!(st, [(BLOCKS - 1, 1, STATUS_DEALLOCATED)]);
        // An allocation length of 24 holds one descriptor.
        t.write(0, pattern(1, 1)).await;
        let (r, data) = t.run(&enc::get_lba_status(0, 24), 24, Vec::new()).await;
        good(&r);
        assert_eq!(r.data_in_len, 24);
        assert_eq!(u32::from_be_bytes(data[0..4].try_into().unwrap()), 20);
        assert_eq!(u64::from_be_bytes(data[8..16].try_into().unwrap()), 0);
        assert_eq!(data[20], STATUS_MAPPED);
    }

    #[test]
    fn unmap_list_parsing() {
        let list = unmap_list(&[(1, 2), (10, 0), (20, 3)]);
        assert_eq!(
            parse_unmap_list(&list, 100, 1000).unwrap(),
            [(1, 2), (20, 3)]
        );
        // An incomplete trailing descriptor is ignored.
        assert_eq!(
            parse_unmap_list(&list[..list.len() - 4], 100, 1000).unwrap(),
            [(1, 2)]
        );
        // Over the total block limit.
        assert!(parse_unmap_list(&list, 100, 4).is_err());
        // Overflowing LBA + count.
        let list = unmap_list(&[(u64::MAX, 2)]);
        assert!(parse_unmap_list(&list, 100, 1000).is_err());
        assert!(parse_unmap_list(&[0; 4], 100, 1000).is_err());
    }
}
