//! The copy manager: EXTENDED COPY (LID1), RECEIVE COPY RESULTS and the Third-party Copy
//! VPD page (SPC-4 5.16.4, 6.3, 6.18, 7.8.17). This is what VMware VAAI "XCOPY" uses to
//! clone and migrate without moving the data through the host.
//!
//! The copy runs inside the EXTENDED COPY command: GOOD means every byte is on the
//! destination as durably as a WRITE under the destination's cache mode would leave it.
//! Copy targets are resolved by NAA among the units of the issuing nexus's LUN map only,
//! so no initiator can read or write a unit it cannot see. Everything that needs no I/O
//! (indexes, targets, block sizes, ranges, write protection, reservations) is checked for
//! every segment before the first byte moves.
//!
//! Errors found while processing segments end in COPY ABORTED with a segment pointer
//! (SPC-4 4.5.2.4.6, SD 0: offset into the parameter list) at the field at fault.

use std::sync::Arc;

use esos_block::BlockDevice;

use super::{Done, Outcome, pr, rw};
use crate::block_status::{Direction, block_sense};
use crate::cdb::copy::{self, Amount, CopyList, Cscd, ListIdUsage, Segment, seg_field};
use crate::cdb::{Cdb, op};
use crate::sense::{Asc, FieldPointer, Sense, SenseKey};
use crate::state::copy::{
    CopyResults, MAX_COPY_RECORDS_PER_NEXUS, Record, STATUS_DONE, STATUS_FAILED,
};
use crate::unit::{LogicalUnit, Luns};
use crate::{Command, IoBuf, LuKind, MAX_CDB_LEN, SenseBytes, Status};

/// Bytes moved per read/write step: bounds the memory one copy holds.
pub const COPY_CHUNK_BYTES: u64 = 1 << 20;
/// Largest PARAMETER LIST LENGTH accepted: the header and the largest descriptor list.
pub const MAX_PARAM_LIST_LEN: u32 = copy::HEADER_LEN as u32 + copy::MAX_DESCRIPTOR_LIST_LEN;

/// Keeps one copy's record current; a copy dropped before it finished (aborted task)
/// is recorded as completed with errors.
struct Tracker<'a> {
    results: &'a CopyResults,
    nexus: u64,
    /// `None` for LIST ID USAGE 11b: nothing is recorded.
    list_id: Option<u8>,
    finished: bool,
}

impl Tracker<'_> {
    fn progress(&self, segments: usize, bytes: u64) {
        if let Some(id) = self.list_id {
            self.results.update(self.nexus, id, |r| {
                r.segments = u16::try_from(segments).unwrap_or(u16::MAX);
                r.bytes = bytes;
            });
        }
    }

    fn finish(&mut self, failure: Option<(Status, SenseBytes)>) {
        self.finished = true;
        if let Some(id) = self.list_id {
            self.results.update(self.nexus, id, |r| match failure {
                None => r.state = STATUS_DONE,
                Some((status, sense)) => {
                    r.state = STATUS_FAILED;
                    r.status = status;
                    r.sense = sense;
                }
            });
        }
    }
}

impl Drop for Tracker<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Some((Status::TaskAborted, SenseBytes::EMPTY)));
        }
    }
}

/// COPY ABORTED with a segment pointer at byte `at` of the parameter list.
fn aborted(asc: Asc, at: u32) -> Sense {
    let mut s = Sense::new(SenseKey::CopyAborted, asc);
    s.field = Some(FieldPointer::param(
        u16::try_from(at).unwrap_or(u16::MAX),
        None,
    ));
    s
}

/// A block-layer failure while copying: the ASC the one mapping gives (`block_status.rs`),
/// under COPY ABORTED as SPC-4 6.3.4.5 wants for errors met while processing segments.
fn copy_failed(e: &esos_block::BlockError, dir: Direction, at: u32) -> Sense {
    aborted(block_sense(e, dir).asc, at)
}

fn invalid_param(at: u32) -> Sense {
    Sense::invalid_param_field(u16::try_from(at).unwrap_or(u16::MAX), None)
}

/// One segment, resolved and checked.
struct Step {
    seg: Segment,
    src: Arc<LogicalUnit>,
    dst: Arc<LogicalUnit>,
    bytes: u64,
}

/// Resolves the CSCD descriptor `index` names to a unit of `map` (SPC-4 6.3.6.2).
fn target(map: &Luns, list: &CopyList, index: u16, at: u32) -> Result<Arc<LogicalUnit>, Sense> {
    let Some(c): Option<&Cscd> = list.cscds.get(usize::from(index)) else {
        return Err(aborted(Asc::COPY_TARGET_DEVICE_NOT_REACHABLE, at));
    };
    let found = c.designator.naa().and_then(|naa| {
        map.iter()
            .find(|(_, lu)| lu.settings.identity.naa[..] == *naa)
            .map(|(_, lu)| Arc::clone(lu))
    });
    let Some(lu) = found else {
        return Err(aborted(Asc::COPY_TARGET_DEVICE_NOT_REACHABLE, c.offset + 4));
    };
    if c.peripheral_type != 0 || lu.settings.kind != LuKind::Disk {
        return Err(aborted(
            Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE,
            c.offset + 1,
        ));
    }
    if c.block_len != lu.device.block_size() {
        let mut s = Sense::illegal(Asc::INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION);
        s.field = invalid_param(c.offset + 29).field;
        return Err(s);
    }
    Ok(lu)
}

/// `blocks` from `lba` must lie within `lu`.
fn in_range(lu: &LogicalUnit, lba: u64, blocks: u64, at: u32) -> Result<(), Sense> {
    match lba.checked_add(blocks) {
        Some(end) if end <= lu.device.num_blocks() => Ok(()),
        _ => Err(aborted(Asc::NO_ADDITIONAL_SENSE, at)),
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resolves and checks every segment before any data moves.
fn plan(map: &Luns, list: &CopyList) -> Result<Vec<Step>, Sense> {
    let mut steps = Vec::with_capacity(list.segments.len());
    for seg in &list.segments {
        let src = target(
            map,
            list,
            seg.src,
            seg.offset + u32::from(seg_field::SRC_INDEX),
        )?;
        let dst = target(
            map,
            list,
            seg.dst,
            seg.offset + u32::from(seg_field::DST_INDEX),
        )?;
        let sbs = u64::from(src.device.block_size());
        let dbs = u64::from(dst.device.block_size());
        let (bytes, len_at) = match seg.amount {
            // SPC-4 6.3.7.5: DC 1 counts destination blocks, DC 0 source blocks.
            Amount::Blocks { blocks, dc } => (u64::from(blocks) * if dc { dbs } else { sbs }, 10),
            Amount::Bytes {
                bytes,
                src_offset,
                dst_offset,
            } => {
                // Byte offsets inside the first blocks are not implemented.
                if src_offset != 0 {
                    return Err(invalid_param(seg.offset + 28));
                }
                if dst_offset != 0 {
                    return Err(invalid_param(seg.offset + 30));
                }
                (u64::from(bytes), 8)
            }
        };
        if bytes > u64::from(copy::MAX_SEGMENT_BYTES) {
            return Err(invalid_param(seg.offset + len_at));
        }
        // Both ends move whole blocks.
        if bytes % (sbs / gcd(sbs, dbs) * dbs) != 0 {
            let mut s = Sense::illegal(Asc::INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION);
            s.field = invalid_param(seg.offset + len_at).field;
            return Err(s);
        }
        in_range(
            &src,
            seg.src_lba,
            bytes / sbs,
            seg.offset + u32::from(seg_field::SRC_LBA),
        )?;
        in_range(
            &dst,
            seg.dst_lba,
            bytes / dbs,
            seg.offset + u32::from(seg_field::DST_LBA),
        )?;
        rw::check_writable(&dst).map_err(|f| f.sense)?;
        steps.push(Step {
            seg: *seg,
            src,
            dst,
            bytes,
        });
    }
    Ok(steps)
}

/// The reservation check a READ(16) (`write` false) or WRITE(16) from the issuing nexus
/// would meet on `lu`: the copy manager acts for the application client (SPC-4 5.9.1).
fn conflicts(lu: &LogicalUnit, cmd: &Command, write: bool) -> bool {
    let mut probe = cmd.clone();
    probe.cdb = [0; MAX_CDB_LEN];
    probe.cdb[0] = if write { op::WRITE_16 } else { op::READ_16 };
    probe.cdb_len = 16;
    matches!(
        pr::intercept(lu, &probe, &Cdb::TestUnitReady, Vec::new()),
        pr::Intercept::Conflict(_)
    )
}

/// The LUN map's entry point for EXTENDED COPY, after the reservation check on `lu`:
/// `map` is the issuing nexus's map. `Err` hands the buffer back for RESERVATION CONFLICT.
pub async fn execute(
    lu: &LogicalUnit,
    map: Option<&Luns>,
    cmd: &Command,
    cdb: &Cdb,
    buf: IoBuf,
) -> Result<(Outcome, IoBuf), IoBuf> {
    match (map, *cdb) {
        (Some(map), Cdb::ExtendedCopy { param_len }) => {
            extended_copy(lu, map, cmd, param_len, buf).await
        }
        _ => Ok((
            Err(Sense::illegal(Asc::INTERNAL_TARGET_FAILURE).into()),
            buf,
        )),
    }
}

/// EXTENDED COPY (LID1). `Err` hands the buffer back for RESERVATION CONFLICT status.
pub async fn extended_copy(
    lu: &LogicalUnit,
    map: &Luns,
    cmd: &Command,
    param_len: u32,
    buf: IoBuf,
) -> Result<(Outcome, IoBuf), IoBuf> {
    // SPC-4 6.3.1: a zero PARAMETER LIST LENGTH copies nothing and is not an error.
    if param_len == 0 {
        return Ok((Ok(Done::NO_DATA), buf));
    }
    if param_len > MAX_PARAM_LIST_LEN {
        return Ok((
            Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into()),
            buf,
        ));
    }
    if let Err(f) = rw::check_data_out(cmd.expected_len, &buf, u64::from(param_len)) {
        return Ok((Err(f), buf));
    }
    let list = match copy::parse_list(&buf[..param_len as usize]) {
        Ok(l) => l,
        Err(s) => return Ok((Err(s.into()), buf)),
    };
    let list_id = (list.usage != ListIdUsage::None).then_some(list.list_id);
    if let Some(id) = list_id
        && let Err(s) = lu.xcopy.begin(cmd.nexus.id, id)
    {
        return Ok((Err(s.into()), buf));
    }
    let mut tracker = Tracker {
        results: &lu.xcopy,
        nexus: cmd.nexus.id,
        list_id,
        finished: false,
    };
    let steps = match plan(map, &list) {
        Ok(s) => s,
        Err(s) => {
            tracker.finish(Some((Status::CheckCondition, s.encode(lu.mode.d_sense()))));
            return Ok((Err(s.into()), buf));
        }
    };
    if steps
        .iter()
        .any(|s| conflicts(&s.src, cmd, false) || conflicts(&s.dst, cmd, true))
    {
        tracker.finish(Some((Status::ReservationConflict, SenseBytes::EMPTY)));
        return Err(buf);
    }
    let (res, buf) = run(&steps, &tracker, buf).await;
    let outcome = match res {
        Ok(()) => {
            tracker.finish(None);
            Ok(Done {
                data_in: 0,
                transfer: u64::from(param_len),
            })
        }
        Err(s) => {
            tracker.finish(Some((Status::CheckCondition, s.encode(lu.mode.d_sense()))));
            Err(s.into())
        }
    };
    Ok((outcome, buf))
}

/// Copies every segment in order, reusing the command's buffer for the data.
async fn run(steps: &[Step], tracker: &Tracker<'_>, mut buf: IoBuf) -> (Result<(), Sense>, IoBuf) {
    let mut moved = 0u64;
    for (i, step) in steps.iter().enumerate() {
        let (res, b) = copy_segment(step, tracker, i, &mut moved, buf).await;
        buf = b;
        if let Err(s) = res {
            return (Err(s), buf);
        }
        tracker.progress(i + 1, moved);
    }
    (Ok(()), buf)
}

/// One segment, chunk by chunk. Within one unit, an overlapping copy to higher LBAs runs
/// from the end so that no source block is overwritten before it is read.
async fn copy_segment(
    s: &Step,
    tracker: &Tracker<'_>,
    done_segments: usize,
    moved: &mut u64,
    mut buf: IoBuf,
) -> (Result<(), Sense>, IoBuf) {
    let sbs = u64::from(s.src.device.block_size());
    let dbs = u64::from(s.dst.device.block_size());
    let unit = sbs / gcd(sbs, dbs) * dbs;
    let chunk = (COPY_CHUNK_BYTES / unit).max(1) * unit;
    // `plan` checked both ranges against capacity, so these products fit.
    let src_base = s.seg.src_lba * sbs;
    let dst_base = s.seg.dst_lba * dbs;
    let backwards =
        Arc::ptr_eq(&s.src, &s.dst) && dst_base > src_base && dst_base < src_base + s.bytes;
    let chunks = s.bytes.div_ceil(chunk);
    let seg_at = s.seg.offset;
    for k in 0..chunks {
        let idx = if backwards { chunks - 1 - k } else { k };
        let off = idx * chunk;
        let len = chunk.min(s.bytes - off);
        // `chunk` is at most COPY_CHUNK_BYTES (or one block), so it fits in usize.
        buf.truncate(len as usize);
        buf.resize(len as usize, 0);
        let (res, b) = s.src.device.read(src_base + off, buf).await;
        buf = b;
        if let Err(e) = res {
            tracing::warn!(lba = s.seg.src_lba, "copy source read failed: {e}");
            let at = seg_at + u32::from(seg_field::SRC_LBA);
            return (Err(copy_failed(&e, Direction::Read, at)), buf);
        }
        // SBC-3 6.4.5: with WCE 0 every write is durable before it completes.
        let fua = !s.dst.mode.wce();
        #[cfg(test)]
        if fua {
            s.dst
                .fua_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // Like a plain WRITE: atomic against COMPARE AND WRITE and friends (range_lock.rs).
        let range = s.dst.ranges.write((dst_base + off) / dbs, len / dbs).await;
        let (res, b) = s.dst.device.write(dst_base + off, buf, fua).await;
        drop(range);
        buf = b;
        if let Err(e) = res {
            tracing::warn!(lba = s.seg.dst_lba, "copy destination write failed: {e}");
            let at = seg_at + u32::from(seg_field::DST_LBA);
            return (Err(copy_failed(&e, Direction::Write, at)), buf);
        }
        *moved += len;
        tracker.progress(done_segments, *moved);
    }
    (Ok(()), buf)
}

/// RECEIVE COPY RESULTS (SPC-4 6.18). Every service action but OPERATING PARAMETERS
/// names a copy by list identifier; an unknown one is an invalid CDB field.
pub fn receive_copy_results(
    lu: &LogicalUnit,
    cmd: &Command,
    action: u8,
    list_id: u8,
    alloc_len: u32,
    buf: &mut IoBuf,
) -> Outcome {
    buf.clear();
    if action == copy::SA_OPERATING_PARAMETERS {
        operating_parameters(buf);
        return Ok(Done::data(buf.len(), alloc_len));
    }
    let Some(r) = lu.xcopy.get(cmd.nexus.id, list_id) else {
        return Err(Sense::invalid_cdb_field(2, None).into());
    };
    match action {
        copy::SA_COPY_STATUS => copy_status(&r, buf),
        // No segment type we implement holds data: AVAILABLE DATA 0 (SPC-4 6.18.2).
        copy::SA_RECEIVE_DATA => buf.extend_from_slice(&[0; 4]),
        _ => failed_segment_details(&r, buf),
    }
    Ok(Done::data(buf.len(), alloc_len))
}

/// SPC-4 6.18.3: the byte count in the smallest unit (bytes, KiB, ... EiB) that fits.
fn copy_status(r: &Record, out: &mut IoBuf) {
    let (units, count) = (0u8..=6)
        .map(|u| (u, r.bytes >> (10 * u32::from(u))))
        .find(|&(_, c)| c <= u64::from(u32::MAX))
        .unwrap_or((6, u64::from(u32::MAX)));
    out.extend_from_slice(&8u32.to_be_bytes());
    out.push(r.state);
    out.extend_from_slice(&r.segments.to_be_bytes());
    out.push(units);
    out.extend_from_slice(&(count as u32).to_be_bytes());
}

/// SPC-4 6.18.5: the status and sense data of a copy that failed; AVAILABLE DATA 0 for
/// one that is running or succeeded.
fn failed_segment_details(r: &Record, out: &mut IoBuf) {
    if r.state != STATUS_FAILED {
        out.extend_from_slice(&[0; 4]);
        return;
    }
    let sense = r.sense.as_slice();
    out.resize(60, 0);
    out[0..4].copy_from_slice(&(56 + sense.len() as u32).to_be_bytes());
    out[57] = r.status as u8;
    out[58..60].copy_from_slice(&(sense.len() as u16).to_be_bytes());
    out.extend_from_slice(sense);
}

/// SPC-4 6.18.4, OPERATING PARAMETERS: the limits in `cdb/copy.rs`.
fn operating_parameters(out: &mut IoBuf) {
    let max_copies = MAX_COPY_RECORDS_PER_NEXUS as u16;
    out.resize(44, 0);
    // SNLID: LIST ID USAGE 11b (no list identifier) is supported.
    out[4] = 0x01;
    out[8..10].copy_from_slice(&copy::MAX_CSCD_DESCRIPTORS.to_be_bytes());
    out[10..12].copy_from_slice(&copy::MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    out[12..16].copy_from_slice(&copy::MAX_DESCRIPTOR_LIST_LEN.to_be_bytes());
    out[16..20].copy_from_slice(&copy::MAX_SEGMENT_BYTES.to_be_bytes());
    out[20..24].copy_from_slice(&copy::MAX_INLINE_DATA_LEN.to_be_bytes());
    // HELD DATA LIMIT and MAXIMUM STREAM DEVICE TRANSFER SIZE stay 0.
    out[34..36].copy_from_slice(&max_copies.to_be_bytes());
    out[36] = max_copies.min(255) as u8;
    // DATA SEGMENT GRANULARITY: 2^9, the smallest block size.
    out[37] = 9;
    out[43] = copy::IMPLEMENTED_DESCRIPTORS.len() as u8;
    out.extend_from_slice(&copy::IMPLEMENTED_DESCRIPTORS);
    let avail = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&avail.to_be_bytes());
}

/// Appends one third-party copy descriptor, padded to a multiple of 4 (SPC-4 7.8.17.1).
fn tpc_descriptor(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    let len = body.len().next_multiple_of(4);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + len - body.len(), 0);
}

/// The Third-party Copy VPD page body (SPC-4 7.8.17), after the 4-byte page header:
/// the descriptors SPC-4 requires for EXTENDED COPY (LID1).
pub fn third_party_copy_vpd(out: &mut Vec<u8>) {
    // Supported Commands (0001h): EXTENDED COPY LID1, RECEIVE COPY RESULTS 00h/01h/03h/04h.
    let commands = [
        op::EXTENDED_COPY,
        1,
        copy::SA_LID1,
        op::RECEIVE_COPY_RESULTS,
        4,
        copy::SA_COPY_STATUS,
        copy::SA_RECEIVE_DATA,
        copy::SA_OPERATING_PARAMETERS,
        copy::SA_FAILED_SEGMENT_DETAILS,
    ];
    let mut body = vec![commands.len() as u8];
    body.extend_from_slice(&commands);
    tpc_descriptor(out, 0x0001, &body);
    // Parameter Data (0004h).
    let mut p = [0u8; 28];
    p[4..6].copy_from_slice(&copy::MAX_CSCD_DESCRIPTORS.to_be_bytes());
    p[6..8].copy_from_slice(&copy::MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    p[8..12].copy_from_slice(&copy::MAX_DESCRIPTOR_LIST_LEN.to_be_bytes());
    p[12..16].copy_from_slice(&copy::MAX_INLINE_DATA_LEN.to_be_bytes());
    tpc_descriptor(out, 0x0004, &p);
    // Supported Descriptors (0008h).
    let mut d = vec![copy::IMPLEMENTED_DESCRIPTORS.len() as u8];
    d.extend_from_slice(&copy::IMPLEMENTED_DESCRIPTORS);
    tpc_descriptor(out, 0x0008, &d);
    // Supported CSCD Descriptor IDs (000Ch): none, LID1 names targets by descriptor.
    tpc_descriptor(out, 0x000C, &[0, 0]);
    // General Copy Operations (8001h).
    let mut g = [0u8; 32];
    let copies = MAX_COPY_RECORDS_PER_NEXUS as u32;
    g[0..4].copy_from_slice(&copies.to_be_bytes());
    g[4..8].copy_from_slice(&copies.to_be_bytes());
    g[8..12].copy_from_slice(&copy::MAX_SEGMENT_BYTES.to_be_bytes());
    g[12] = 9;
    tpc_descriptor(out, 0x8001, &g);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use esos_block::{Backend, Device, DeviceSpec};

    use super::*;
    use crate::LunMap;
    use crate::cdb::copy::encode;
    use crate::state::copy::STATUS_IN_PROGRESS;
    use crate::{Identity, LuSettings, Nexus, Response, TaskAttr};

    const BS: usize = 512;
    const BLOCKS: u64 = 4096;

    fn naa(n: u8) -> [u8; 16] {
        [0x60, 0x01, 0x40, 0x50, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, n]
    }

    fn lu(n: u8, read_only: bool, wce: bool) -> Arc<LogicalUnit> {
        let spec = DeviceSpec {
            backend: Backend::Ram {
                size_bytes: BLOCKS * BS as u64,
            },
            block_size: BS as u32,
            read_only: false,
            rotational: None,
        };
        let settings = LuSettings {
            write_cache: wce,
            read_only,
            ..LuSettings::disk(Identity {
                vendor: "ESOS".into(),
                product: "xcopy".into(),
                revision: "0001".into(),
                serial: format!("SN{n}"),
                uuid: [0; 16],
                naa: naa(n),
            })
        };
        LogicalUnit::new(Device::open(&spec).unwrap(), settings)
    }

    fn nexus(id: u64) -> Arc<Nexus> {
        Arc::new(Nexus {
            id,
            initiator_port: format!("iqn.init:{id},i,0x1"),
            target_port: "iqn.2026-01.org.esos:t,t,0x0001".into(),
            relative_port: 1,
            port_group: 1,
        })
    }

    fn command(nx: &Arc<Nexus>, lun: u64, cdb: &[u8], expected_len: u32, out: bool) -> Command {
        let mut c = [0u8; MAX_CDB_LEN];
        c[..cdb.len()].copy_from_slice(cdb);
        Command {
            nexus: Arc::clone(nx),
            lun: crate::lun::encode(lun),
            cdb: c,
            cdb_len: cdb.len() as u8,
            attr: TaskAttr::Simple,
            tag: 0,
            expected_len,
            data_out: out,
        }
    }

    async fn run(map: &LunMap, c: Command, buf: Vec<u8>) -> (Response, Vec<u8>) {
        tokio::time::timeout(Duration::from_secs(10), map.submit(c, buf))
            .await
            .expect("command hung")
    }

    fn sense(r: &Response) -> (u8, u8, u8) {
        let b = r.sense.as_slice();
        assert_eq!(r.status, Status::CheckCondition, "{r:?}");
        (b[2] & 0x0F, b[12], b[13])
    }

    /// Two units at LUN 0 and 1 (`ro1`: LUN 1 read-only) and a nexus whose power-on unit
    /// attention is consumed on LUN 0 only.
    async fn setup(ro1: bool, wce1: bool) -> (LunMap, [Arc<LogicalUnit>; 2], Arc<Nexus>) {
        let a = lu(1, false, true);
        let b = lu(2, ro1, wce1);
        let map = LunMap::new(vec![(0, Arc::clone(&a)), (1, Arc::clone(&b))]);
        let nx = nexus(7);
        let (r, _) = run(&map, command(&nx, 0, &[0; 6], 0, false), Vec::new()).await;
        assert_eq!(sense(&r), (6, 0x29, 0));
        (map, [a, b], nx)
    }

    async fn write(map: &LunMap, nx: &Arc<Nexus>, lun: u64, lba: u64, data: Vec<u8>) {
        let c = crate::cdb::encode::rw(true, 16, lba, (data.len() / BS) as u32, false, false);
        let n = data.len() as u32;
        let (r, _) = run(map, command(nx, lun, &c, n, true), data).await;
        assert_eq!(r.status, Status::Good, "{r:?}");
    }

    async fn read(map: &LunMap, nx: &Arc<Nexus>, lun: u64, lba: u64, blocks: u32) -> Vec<u8> {
        let c = crate::cdb::encode::rw(false, 16, lba, blocks, false, false);
        let n = blocks * BS as u32;
        let (r, mut buf) = run(map, command(nx, lun, &c, n, false), Vec::new()).await;
        assert_eq!(r.status, Status::Good, "{r:?}");
        buf.truncate(r.data_in_len as usize);
        buf
    }

    async fn xcopy(map: &LunMap, nx: &Arc<Nexus>, list: Vec<u8>) -> Response {
        let mut c = [0u8; 16];
        c[0] = op::EXTENDED_COPY;
        c[10..14].copy_from_slice(&(list.len() as u32).to_be_bytes());
        let n = list.len() as u32;
        run(map, command(nx, 0, &c, n, true), list).await.0
    }

    async fn results(map: &LunMap, nx: &Arc<Nexus>, sa: u8, list_id: u8) -> (Response, Vec<u8>) {
        let mut c = [0u8; 16];
        c[0] = op::RECEIVE_COPY_RESULTS;
        c[1] = sa;
        c[2] = list_id;
        c[10..14].copy_from_slice(&1024u32.to_be_bytes());
        let (r, mut buf) = run(map, command(nx, 0, &c, 1024, false), Vec::new()).await;
        buf.truncate(r.data_in_len as usize);
        (r, buf)
    }

    fn pattern(blocks: usize, seed: u8) -> Vec<u8> {
        (0..blocks * BS)
            .map(|i| (i / 7) as u8 ^ seed)
            .collect::<Vec<_>>()
    }

    fn two_targets() -> Vec<Vec<u8>> {
        vec![
            encode::cscd_naa(&naa(1), BS as u32),
            encode::cscd_naa(&naa(2), BS as u32),
        ]
    }

    #[tokio::test]
    async fn copies_across_units_in_chunks_and_reports_status() {
        let (map, [_, b], nx) = setup(false, false).await;
        // 3000 blocks: more than one COPY_CHUNK_BYTES step, with a partial last one.
        let data = pattern(3000, 0x5A);
        write(&map, &nx, 0, 10, data.clone()).await;
        let list = encode::list(
            9,
            0,
            &two_targets(),
            &[encode::seg_blocks(0, 1, 3000, 10, 500)],
        );
        let (r, _) = results(&map, &nx, copy::SA_COPY_STATUS, 9).await;
        assert_eq!(sense(&r), (5, 0x24, 0), "no copy with that list id yet");
        let r = xcopy(&map, &nx, list).await;
        assert_eq!(r.status, Status::Good, "{r:?}");
        // LUN 1 still reports its power-on unit attention: the copy did not consume it.
        let (t, _) = run(&map, command(&nx, 1, &[0; 6], 0, false), Vec::new()).await;
        assert_eq!(sense(&t), (6, 0x29, 0));
        assert_eq!(read(&map, &nx, 1, 500, 3000).await, data);
        // WCE 0 on the destination: every chunk was written FUA.
        assert_eq!(
            b.fua_writes.load(std::sync::atomic::Ordering::Relaxed),
            3000u64.div_ceil(COPY_CHUNK_BYTES / BS as u64)
        );
        let (r, st) = results(&map, &nx, copy::SA_COPY_STATUS, 9).await;
        assert_eq!(r.status, Status::Good);
        assert_eq!(&st[0..4], &8u32.to_be_bytes());
        assert_eq!(st[4], STATUS_DONE);
        assert_eq!(u16::from_be_bytes([st[5], st[6]]), 1);
        assert_eq!(st[7], 0, "bytes");
        assert_eq!(
            u32::from_be_bytes(st[8..12].try_into().unwrap()),
            3000 * BS as u32
        );
        let (_, fsd) = results(&map, &nx, copy::SA_FAILED_SEGMENT_DETAILS, 9).await;
        assert_eq!(fsd, [0; 4]);
        // Another nexus has no such list identifier.
        let (r, _) = results(&map, &nexus(8), copy::SA_COPY_STATUS, 9).await;
        assert_eq!(r.status, Status::CheckCondition);
        // The session ends: its records go.
        map.nexus_gone(&nx);
        assert!(map.luns().all(|(_, l)| l.xcopy.get(nx.id, 9).is_none()));
    }

    #[tokio::test]
    async fn overlapping_copy_within_one_unit_reads_before_it_overwrites() {
        let (map, _, nx) = setup(false, true).await;
        let data = pattern(2500, 0x11);
        write(&map, &nx, 0, 0, data.clone()).await;
        let one = vec![encode::cscd_naa(&naa(1), BS as u32)];
        let r = xcopy(
            &map,
            &nx,
            encode::list(0, 3, &one, &[encode::seg_blocks(0, 0, 2500, 0, 100)]),
        )
        .await;
        assert_eq!(r.status, Status::Good, "{r:?}");
        assert_eq!(read(&map, &nx, 0, 100, 2500).await, data);
        // And downwards, with a byte-count (0Ah) segment.
        let r = xcopy(
            &map,
            &nx,
            encode::list(0, 3, &one, &[encode::seg_bytes(0, 0, 2500 * 512, 100, 50)]),
        )
        .await;
        assert_eq!(r.status, Status::Good, "{r:?}");
        assert_eq!(read(&map, &nx, 0, 50, 2500).await, data);
    }

    #[tokio::test]
    async fn targets_outside_the_map_ranges_and_protection_are_refused() {
        let (map, _, nx) = setup(true, true).await;
        // A unit that exists but is not in this nexus's map is not reachable.
        let _hidden = lu(3, false, true);
        let cscds = vec![
            encode::cscd_naa(&naa(1), BS as u32),
            encode::cscd_naa(&naa(3), BS as u32),
        ];
        let r = xcopy(
            &map,
            &nx,
            encode::list(1, 0, &cscds, &[encode::seg_blocks(0, 1, 8, 0, 0)]),
        )
        .await;
        assert_eq!(sense(&r), (0x0A, 0x0D, 0x02));
        // The failure is kept for FAILED SEGMENT DETAILS.
        let (_, fsd) = results(&map, &nx, copy::SA_FAILED_SEGMENT_DETAILS, 1).await;
        assert_eq!(fsd[57], Status::CheckCondition as u8);
        assert_eq!((fsd[60 + 2] & 0x0F, fsd[60 + 12]), (0x0A, 0x0D));
        // Destination index past the descriptors.
        let r = xcopy(
            &map,
            &nx,
            encode::list(
                2,
                0,
                &two_targets()[..1],
                &[encode::seg_blocks(0, 1, 8, 0, 0)],
            ),
        )
        .await;
        assert_eq!(sense(&r), (0x0A, 0x0D, 0x02));
        assert_eq!(&r.sense.as_slice()[15..18], &[0x80, 0, 48 + 6]);
        // Past the end of the source.
        let one = vec![encode::cscd_naa(&naa(1), BS as u32)];
        let r = xcopy(
            &map,
            &nx,
            encode::list(3, 0, &one, &[encode::seg_blocks(0, 0, 8, BLOCKS - 4, 0)]),
        )
        .await;
        assert_eq!(sense(&r).0, 0x0A);
        assert_eq!(&r.sense.as_slice()[15..18], &[0x80, 0, 48 + 12]);
        // Read-only destination.
        let r = xcopy(
            &map,
            &nx,
            encode::list(4, 0, &two_targets(), &[encode::seg_blocks(0, 1, 8, 0, 0)]),
        )
        .await;
        assert_eq!(sense(&r), (0x07, 0x27, 0x00));
        // Wrong DISK BLOCK LENGTH.
        let bad = vec![encode::cscd_naa(&naa(1), 4096)];
        let r = xcopy(
            &map,
            &nx,
            encode::list(5, 0, &bad, &[encode::seg_blocks(0, 0, 8, 0, 8)]),
        )
        .await;
        assert_eq!(sense(&r), (0x05, 0x26, 0x0C));
    }

    #[tokio::test]
    async fn parameter_list_edge_cases() {
        let (map, _, nx) = setup(false, true).await;
        assert_eq!(xcopy(&map, &nx, Vec::new()).await.status, Status::Good);
        let list = encode::list(1, 0, &two_targets(), &[encode::seg_blocks(0, 1, 8, 0, 0)]);
        let r = xcopy(&map, &nx, list[..list.len() - 1].to_vec()).await;
        assert_eq!(sense(&r), (0x05, 0x1A, 0x00));
        // A list identifier still running on this nexus.
        let a = &map.luns().next().unwrap().1;
        a.xcopy.begin(nx.id, 1).unwrap();
        let r = xcopy(&map, &nx, list.clone()).await;
        assert_eq!(sense(&r), (0x05, 0x00, 0x16));
        let (_, st) = results(&map, &nx, copy::SA_COPY_STATUS, 1).await;
        assert_eq!(st[4], STATUS_IN_PROGRESS);
        // Another list identifier is fine.
        let mut other = list;
        other[0] = 2;
        assert_eq!(xcopy(&map, &nx, other).await.status, Status::Good);
    }

    #[tokio::test]
    async fn reservations_on_copy_targets_are_honoured() {
        let (map, _, nx) = setup(false, true).await;
        // Another initiator holds WRITE EXCLUSIVE on LUN 1.
        let holder = nexus(9);
        let mut reg = vec![0u8; 24];
        reg[8..16].copy_from_slice(&0xABu64.to_be_bytes());
        let out = |sa: u8, ty: u8| [0x5F, sa, ty, 0, 0, 0, 0, 0, 24, 0];
        let (r, _) = run(&map, command(&holder, 1, &out(0, 0), 24, true), reg).await;
        assert_eq!(sense(&r).0, 6, "power-on unit attention first");
        let mut reg = vec![0u8; 24];
        reg[8..16].copy_from_slice(&0xABu64.to_be_bytes());
        let (r, _) = run(&map, command(&holder, 1, &out(0, 0), 24, true), reg).await;
        assert_eq!(r.status, Status::Good, "{r:?}");
        let mut res = vec![0u8; 24];
        res[0..8].copy_from_slice(&0xABu64.to_be_bytes());
        let (r, _) = run(&map, command(&holder, 1, &out(1, 1), 24, true), res).await;
        assert_eq!(r.status, Status::Good, "{r:?}");
        // Reading from LUN 1 is allowed, writing to it is not.
        let list = encode::list(1, 0, &two_targets(), &[encode::seg_blocks(1, 0, 8, 0, 0)]);
        assert_eq!(xcopy(&map, &nx, list).await.status, Status::Good);
        let list = encode::list(2, 0, &two_targets(), &[encode::seg_blocks(0, 1, 8, 0, 0)]);
        let r = xcopy(&map, &nx, list).await;
        assert_eq!(r.status, Status::ReservationConflict);
    }

    #[tokio::test]
    async fn operating_parameters_and_vpd_advertise_the_limits() {
        let (map, [a, _], nx) = setup(false, true).await;
        let (r, p) = results(&map, &nx, copy::SA_OPERATING_PARAMETERS, 0).await;
        assert_eq!(r.status, Status::Good);
        assert_eq!(
            u32::from_be_bytes(p[0..4].try_into().unwrap()) as usize,
            p.len() - 4
        );
        assert_eq!(u16::from_be_bytes([p[8], p[9]]), copy::MAX_CSCD_DESCRIPTORS);
        assert_eq!(
            u16::from_be_bytes([p[10], p[11]]),
            copy::MAX_SEGMENT_DESCRIPTORS
        );
        assert_eq!(
            u32::from_be_bytes(p[12..16].try_into().unwrap()),
            copy::MAX_DESCRIPTOR_LIST_LEN
        );
        assert_eq!(usize::from(p[43]), p.len() - 44);
        assert_eq!(&p[44..], &copy::IMPLEMENTED_DESCRIPTORS);
        // VPD 8Fh: well-formed descriptors, RECEIVE COPY RESULTS COPY STATUS listed.
        let (r, v) = run(
            &map,
            command(&nx, 0, &[0x12, 1, 0x8F, 4, 0, 0], 1024, false),
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, Status::Good, "{r:?}");
        let v = &v[..r.data_in_len as usize];
        assert_eq!(usize::from(u16::from_be_bytes([v[2], v[3]])), v.len() - 4);
        let mut at = 4;
        let mut kinds = Vec::new();
        while at < v.len() {
            let kind = u16::from_be_bytes([v[at], v[at + 1]]);
            let len = usize::from(u16::from_be_bytes([v[at + 2], v[at + 3]]));
            assert_eq!(len % 4, 0);
            if kind == 1 {
                let list = &v[at + 5..at + 5 + usize::from(v[at + 4])];
                assert_eq!(list, &[0x83, 1, 0, 0x84, 4, 0, 1, 3, 4]);
            }
            kinds.push(kind);
            at += 4 + len;
        }
        assert_eq!(at, v.len());
        assert_eq!(kinds, [0x0001, 0x0004, 0x0008, 0x000C, 0x8001]);
        // Standard INQUIRY sets 3PC.
        let mut std = Vec::new();
        super::super::inquiry::standard(Some(&a.settings.identity), &mut std);
        assert_eq!(std[5] & 0x08, 0x08);
    }
}
