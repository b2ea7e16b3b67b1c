//! iSCSI PDU codec (RFC 7143 11): pure functions over byte slices.
//!
//! Every PDU starts with a 48-byte Basic Header Segment (BHS). Requests are decoded into
//! typed structs by [`parse_request`]; responses are encoded by the `encode_*` functions into a
//! caller-owned 48-byte array, so the runtime builds headers on its stack and never allocates.

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// Largest AHS we accept (TotalAHSLength counts 4-byte words, one byte wide: 1020 bytes).
pub const MAX_AHS_LEN: usize = 255 * 4;
/// The reserved tag value (RFC 7143 11.1): "no task".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

use esos_common::be::{put_u16, put_u24, put_u32, put_u64, u16_at, u24_at, u32_at, u64_at};

/// Initiator opcodes (RFC 7143 11.1.1).
pub mod opcode {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT_REQUEST: u8 = 0x02;
    pub const LOGIN_REQUEST: u8 = 0x03;
    pub const TEXT_REQUEST: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQUEST: u8 = 0x06;
    pub const SNACK_REQUEST: u8 = 0x10;
    // Target opcodes.
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RESPONSE: u8 = 0x22;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const TEXT_RESPONSE: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC_MESSAGE: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// Reject reasons (RFC 7143 11.17.1).
pub mod reject_reason {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_DATA_ACK: u8 = 0x08;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    pub const OUT_OF_RESOURCES: u8 = 0x0a;
    pub const NEGOTIATION_RESET: u8 = 0x0b;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Decoding errors. Each maps to a Reject reason or to closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("unknown or target-only opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("AHS of {0} bytes is malformed")]
    BadAhs(usize),
    #[error("CDB of {0} bytes is longer than supported")]
    CdbTooLong(usize),
}

/// Fields common to every BHS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BhsCommon {
    pub opcode: u8,
    pub immediate: bool,
    /// TotalAHSLength in bytes.
    pub ahs_len: usize,
    /// DataSegmentLength in bytes (without padding).
    pub data_len: usize,
}

/// Reads opcode, AHS and data-segment lengths: what framing needs before anything else.
pub fn common(bhs: &[u8; BHS_LEN]) -> BhsCommon {
    BhsCommon {
        opcode: bhs[0] & 0x3f,
        immediate: bhs[0] & 0x40 != 0,
        ahs_len: bhs[4] as usize * 4,
        data_len: u24_at(bhs, 5) as usize,
    }
}

/// Bytes of padding after a data segment of `len` bytes (segments are 4-byte aligned).
pub fn pad_len(len: usize) -> usize {
    (4 - (len & 3)) & 3
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_flag: bool,
    pub read: bool,
    pub write: bool,
    /// Task attribute, 3 bits (0 untagged, 1 simple, 2 ordered, 3 head of queue, 4 ACA).
    pub attr: u8,
    pub lun: u64,
    pub itt: u32,
    pub edtl: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub cdb: [u8; esos_scsi::MAX_CDB_LEN],
    pub cdb_len: u8,
    /// Expected bidirectional read length from AHS type 2 (unsupported; reported if present).
    pub bidi_read_len: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMgmt {
    pub immediate: bool,
    pub function: u8,
    pub lun: u64,
    pub itt: u32,
    pub rtt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
    pub exp_data_sn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_flag: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    pub final_flag: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snack {
    pub snack_type: u8,
    pub itt: u32,
}

/// A decoded initiator PDU header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmt(TaskMgmt),
    Login(LoginRequest),
    Text(TextRequest),
    DataOut(DataOut),
    Logout(LogoutRequest),
    Snack(Snack),
}

/// AHS types (RFC 7143 11.2.2).
const AHS_EXTENDED_CDB: u8 = 1;
const AHS_BIDI_READ_LENGTH: u8 = 2;

/// Decodes an initiator PDU from its BHS and AHS bytes.
pub fn parse_request(bhs: &[u8; BHS_LEN], ahs: &[u8]) -> Result<Request, PduError> {
    let c = common(bhs);
    let b = &bhs[..];
    Ok(match c.opcode {
        opcode::NOP_OUT => Request::NopOut(NopOut {
            immediate: c.immediate,
            lun: u64_at(b, 8),
            itt: u32_at(b, 16),
            ttt: u32_at(b, 20),
            cmd_sn: u32_at(b, 24),
            exp_stat_sn: u32_at(b, 28),
        }),
        opcode::SCSI_COMMAND => {
            let mut cdb = [0u8; esos_scsi::MAX_CDB_LEN];
            cdb[..16].copy_from_slice(&b[32..48]);
            let mut cdb_len = 16usize;
            let mut bidi_read_len = None;
            let mut rest = ahs;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err(PduError::BadAhs(ahs.len()));
                }
                let len = u16_at(rest, 0) as usize;
                let kind = rest[2];
                let total = (3 + len + 3) & !3;
                if total > rest.len() || len == 0 {
                    return Err(PduError::BadAhs(ahs.len()));
                }
                match kind {
                    // One AHS of each type at most: a second would leave the first's bytes
                    // behind (an extended CDB) or silently replace it.
                    AHS_EXTENDED_CDB if cdb_len > 16 => return Err(PduError::BadAhs(ahs.len())),
                    AHS_BIDI_READ_LENGTH if bidi_read_len.is_some() => {
                        return Err(PduError::BadAhs(ahs.len()));
                    }
                    AHS_EXTENDED_CDB => {
                        // AHSLength counts the reserved byte plus the CDB bytes beyond 16.
                        let extra = len - 1;
                        if 16 + extra > esos_scsi::MAX_CDB_LEN {
                            return Err(PduError::CdbTooLong(16 + extra));
                        }
                        cdb[16..16 + extra].copy_from_slice(&rest[4..4 + extra]);
                        cdb_len = 16 + extra;
                    }
                    AHS_BIDI_READ_LENGTH if len == 5 => bidi_read_len = Some(u32_at(rest, 4)),
                    _ => return Err(PduError::BadAhs(ahs.len())),
                }
                rest = &rest[total..];
            }
            Request::ScsiCommand(ScsiCommand {
                immediate: c.immediate,
                final_flag: b[1] & 0x80 != 0,
                read: b[1] & 0x40 != 0,
                write: b[1] & 0x20 != 0,
                attr: b[1] & 0x07,
                lun: u64_at(b, 8),
                itt: u32_at(b, 16),
                edtl: u32_at(b, 20),
                cmd_sn: u32_at(b, 24),
                exp_stat_sn: u32_at(b, 28),
                cdb,
                cdb_len: cdb_len as u8,
                bidi_read_len,
            })
        }
        opcode::TASK_MGMT_REQUEST => Request::TaskMgmt(TaskMgmt {
            immediate: c.immediate,
            function: b[1] & 0x7f,
            lun: u64_at(b, 8),
            itt: u32_at(b, 16),
            rtt: u32_at(b, 20),
            cmd_sn: u32_at(b, 24),
            exp_stat_sn: u32_at(b, 28),
            ref_cmd_sn: u32_at(b, 32),
            exp_data_sn: u32_at(b, 36),
        }),
        opcode::LOGIN_REQUEST => {
            let mut isid = [0u8; 6];
            isid.copy_from_slice(&b[8..14]);
            Request::Login(LoginRequest {
                transit: b[1] & 0x80 != 0,
                cont: b[1] & 0x40 != 0,
                csg: (b[1] >> 2) & 3,
                nsg: b[1] & 3,
                version_max: b[2],
                version_min: b[3],
                isid,
                tsih: u16_at(b, 14),
                itt: u32_at(b, 16),
                cid: u16_at(b, 20),
                cmd_sn: u32_at(b, 24),
                exp_stat_sn: u32_at(b, 28),
            })
        }
        opcode::TEXT_REQUEST => Request::Text(TextRequest {
            immediate: c.immediate,
            final_flag: b[1] & 0x80 != 0,
            cont: b[1] & 0x40 != 0,
            lun: u64_at(b, 8),
            itt: u32_at(b, 16),
            ttt: u32_at(b, 20),
            cmd_sn: u32_at(b, 24),
            exp_stat_sn: u32_at(b, 28),
        }),
        opcode::DATA_OUT => Request::DataOut(DataOut {
            final_flag: b[1] & 0x80 != 0,
            lun: u64_at(b, 8),
            itt: u32_at(b, 16),
            ttt: u32_at(b, 20),
            exp_stat_sn: u32_at(b, 28),
            data_sn: u32_at(b, 36),
            buffer_offset: u32_at(b, 40),
        }),
        opcode::LOGOUT_REQUEST => Request::Logout(LogoutRequest {
            immediate: c.immediate,
            reason: b[1] & 0x7f,
            itt: u32_at(b, 16),
            cid: u16_at(b, 20),
            cmd_sn: u32_at(b, 24),
            exp_stat_sn: u32_at(b, 28),
        }),
        opcode::SNACK_REQUEST => Request::Snack(Snack {
            snack_type: b[1] & 0x0f,
            itt: u32_at(b, 16),
        }),
        other => return Err(PduError::UnknownOpcode(other)),
    })
}

/// The sequence numbers every target PDU carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqNums {
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

fn start(h: &mut [u8; BHS_LEN], op: u8, flags: u8, data_len: usize) {
    *h = [0; BHS_LEN];
    h[0] = op;
    h[1] = flags;
    debug_assert!(data_len < 1 << 24);
    put_u24(h, 5, data_len as u32);
}

fn put_seq(h: &mut [u8; BHS_LEN], s: SeqNums) {
    put_u32(h, 24, s.stat_sn);
    put_u32(h, 28, s.exp_cmd_sn);
    put_u32(h, 32, s.max_cmd_sn);
}

/// Residual flags and count as SCSI Response and Data-In carry them.
fn put_residual(h: &mut [u8; BHS_LEN], residual: esos_scsi::Residual) {
    match residual {
        esos_scsi::Residual::None => {}
        esos_scsi::Residual::Underflow(n) => {
            h[1] |= 0x02;
            put_u32(h, 44, n);
        }
        esos_scsi::Residual::Overflow(n) => {
            h[1] |= 0x04;
            put_u32(h, 44, n);
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn encode_nop_in(
    h: &mut [u8; BHS_LEN],
    lun: u64,
    itt: u32,
    ttt: u32,
    seq: SeqNums,
    data_len: usize,
) {
    start(h, opcode::NOP_IN, 0x80, data_len);
    put_u64(h, 8, lun);
    put_u32(h, 16, itt);
    put_u32(h, 20, ttt);
    put_seq(h, seq);
}

/// SCSI Response (RFC 7143 11.4); `data_len` is the sense segment (2-byte length + sense).
pub fn encode_scsi_response(
    h: &mut [u8; BHS_LEN],
    itt: u32,
    status: u8,
    residual: esos_scsi::Residual,
    seq: SeqNums,
    exp_data_sn: u32,
    data_len: usize,
) {
    start(h, opcode::SCSI_RESPONSE, 0x80, data_len);
    h[2] = 0; // Command Completed at Target.
    h[3] = status;
    put_u32(h, 16, itt);
    put_seq(h, seq);
    put_u32(h, 36, exp_data_sn);
    put_residual(h, residual);
}

/// Data-In (RFC 7143 11.7). With `status` set, the PDU carries phase-collapsed status (S bit).
#[allow(clippy::too_many_arguments)]
pub fn encode_data_in(
    h: &mut [u8; BHS_LEN],
    final_flag: bool,
    status: Option<(u8, esos_scsi::Residual)>,
    lun: u64,
    itt: u32,
    seq: SeqNums,
    data_sn: u32,
    offset: u32,
    data_len: usize,
) {
    let mut flags = if final_flag { 0x80 } else { 0 };
    if status.is_some() {
        flags |= 0x81;
    }
    start(h, opcode::DATA_IN, flags, data_len);
    put_u64(h, 8, lun);
    put_u32(h, 16, itt);
    put_u32(h, 20, RESERVED_TAG);
    put_seq(h, seq);
    if let Some((st, residual)) = status {
        h[3] = st;
        put_residual(h, residual);
    } else {
        // StatSN is reserved without the S bit.
        put_u32(h, 24, 0);
    }
    put_u32(h, 36, data_sn);
    put_u32(h, 40, offset);
}

#[allow(clippy::too_many_arguments)]
pub fn encode_r2t(
    h: &mut [u8; BHS_LEN],
    lun: u64,
    itt: u32,
    ttt: u32,
    seq: SeqNums,
    r2t_sn: u32,
    offset: u32,
    length: u32,
) {
    start(h, opcode::R2T, 0x80, 0);
    put_u64(h, 8, lun);
    put_u32(h, 16, itt);
    put_u32(h, 20, ttt);
    put_seq(h, seq);
    put_u32(h, 36, r2t_sn);
    put_u32(h, 40, offset);
    put_u32(h, 44, length);
}

pub fn encode_task_mgmt_response(h: &mut [u8; BHS_LEN], itt: u32, response: u8, seq: SeqNums) {
    start(h, opcode::TASK_MGMT_RESPONSE, 0x80, 0);
    h[2] = response;
    put_u32(h, 16, itt);
    put_seq(h, seq);
}

#[allow(clippy::too_many_arguments)]
pub fn encode_login_response(
    h: &mut [u8; BHS_LEN],
    r: &crate::login::LoginResponseFields,
    isid: [u8; 6],
    tsih: u16,
    itt: u32,
    seq: SeqNums,
    data_len: usize,
) {
    let mut flags = (r.csg & 3) << 2 | (r.nsg & 3);
    if r.transit {
        flags |= 0x80;
    }
    if r.cont {
        flags |= 0x40;
    }
    start(h, opcode::LOGIN_RESPONSE, flags, data_len);
    h[2] = 0; // Version-max
    h[3] = 0; // Version-active
    h[8..14].copy_from_slice(&isid);
    put_u16(h, 14, tsih);
    put_u32(h, 16, itt);
    put_seq(h, seq);
    h[36] = r.status_class;
    h[37] = r.status_detail;
}

#[allow(clippy::too_many_arguments)]
pub fn encode_text_response(
    h: &mut [u8; BHS_LEN],
    final_flag: bool,
    cont: bool,
    lun: u64,
    itt: u32,
    ttt: u32,
    seq: SeqNums,
    data_len: usize,
) {
    let mut flags = 0;
    if final_flag {
        flags |= 0x80;
    }
    if cont {
        flags |= 0x40;
    }
    start(h, opcode::TEXT_RESPONSE, flags, data_len);
    put_u64(h, 8, lun);
    put_u32(h, 16, itt);
    put_u32(h, 20, ttt);
    put_seq(h, seq);
}

pub fn encode_logout_response(
    h: &mut [u8; BHS_LEN],
    itt: u32,
    response: u8,
    seq: SeqNums,
    time2wait: u16,
    time2retain: u16,
) {
    start(h, opcode::LOGOUT_RESPONSE, 0x80, 0);
    h[2] = response;
    put_u32(h, 16, itt);
    put_seq(h, seq);
    put_u16(h, 40, time2wait);
    put_u16(h, 42, time2retain);
}

/// Reject (RFC 7143 11.17): the data segment is the rejected PDU's BHS.
pub fn encode_reject(h: &mut [u8; BHS_LEN], reason: u8, seq: SeqNums) {
    start(h, opcode::REJECT, 0x80, BHS_LEN);
    h[2] = reason;
    put_u32(h, 16, RESERVED_TAG);
    put_seq(h, seq);
}

/// Async Message (RFC 7143 11.9), e.g. event 1 "target requests logout".
pub fn encode_async(h: &mut [u8; BHS_LEN], event: u8, seq: SeqNums, param3: u16) {
    start(h, opcode::ASYNC_MESSAGE, 0x80, 0);
    put_u32(h, 16, RESERVED_TAG);
    put_seq(h, seq);
    h[36] = event;
    put_u16(h, 42, param3);
}

/// Builders used by tests (and later by fuzz targets) to make initiator PDUs.
pub mod build {
    use super::*;

    pub fn scsi_command(c: &ScsiCommand, data_len: usize) -> [u8; BHS_LEN] {
        let mut h = [0u8; BHS_LEN];
        start(&mut h, opcode::SCSI_COMMAND, 0, data_len);
        if c.immediate {
            h[0] |= 0x40;
        }
        h[1] = (c.final_flag as u8) << 7 | (c.read as u8) << 6 | (c.write as u8) << 5 | c.attr & 7;
        put_u64(&mut h, 8, c.lun);
        put_u32(&mut h, 16, c.itt);
        put_u32(&mut h, 20, c.edtl);
        put_u32(&mut h, 24, c.cmd_sn);
        put_u32(&mut h, 28, c.exp_stat_sn);
        h[32..48].copy_from_slice(&c.cdb[..16]);
        h
    }

    pub fn data_out(d: &DataOut, data_len: usize) -> [u8; BHS_LEN] {
        let mut h = [0u8; BHS_LEN];
        start(
            &mut h,
            opcode::DATA_OUT,
            (d.final_flag as u8) << 7,
            data_len,
        );
        put_u64(&mut h, 8, d.lun);
        put_u32(&mut h, 16, d.itt);
        put_u32(&mut h, 20, d.ttt);
        put_u32(&mut h, 28, d.exp_stat_sn);
        put_u32(&mut h, 36, d.data_sn);
        put_u32(&mut h, 40, d.buffer_offset);
        h
    }

    pub fn login(l: &LoginRequest, data_len: usize) -> [u8; BHS_LEN] {
        let mut h = [0u8; BHS_LEN];
        let mut flags = (l.csg & 3) << 2 | (l.nsg & 3);
        if l.transit {
            flags |= 0x80;
        }
        if l.cont {
            flags |= 0x40;
        }
        start(&mut h, opcode::LOGIN_REQUEST, flags, data_len);
        h[0] |= 0x40;
        h[2] = l.version_max;
        h[3] = l.version_min;
        h[8..14].copy_from_slice(&l.isid);
        put_u16(&mut h, 14, l.tsih);
        put_u32(&mut h, 16, l.itt);
        put_u16(&mut h, 20, l.cid);
        put_u32(&mut h, 24, l.cmd_sn);
        put_u32(&mut h, 28, l.exp_stat_sn);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_cmd() -> impl Strategy<Value = ScsiCommand> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0u8..8,
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<(u32, u32)>(),
            any::<[u8; 16]>(),
        )
            .prop_map(|(imm, r, w, attr, lun, itt, edtl, (cmd_sn, exp), cdb16)| {
                let mut cdb = [0u8; esos_scsi::MAX_CDB_LEN];
                cdb[..16].copy_from_slice(&cdb16);
                ScsiCommand {
                    immediate: imm,
                    final_flag: true,
                    read: r,
                    write: w,
                    attr,
                    lun,
                    itt,
                    edtl,
                    cmd_sn,
                    exp_stat_sn: exp,
                    cdb,
                    cdb_len: 16,
                    bidi_read_len: None,
                }
            })
    }

    proptest! {
        #[test]
        fn scsi_command_round_trip(c in arb_cmd(), dl in 0usize..(1 << 24)) {
            let h = build::scsi_command(&c, dl);
            prop_assert_eq!(common(&h).data_len, dl);
            prop_assert_eq!(parse_request(&h, &[]).unwrap(), Request::ScsiCommand(c));
        }

        #[test]
        fn data_out_round_trip(f: bool, lun: u64, itt: u32, ttt: u32, e: u32, sn: u32, off: u32) {
            let d = DataOut { final_flag: f, lun, itt, ttt, exp_stat_sn: e, data_sn: sn, buffer_offset: off };
            let h = build::data_out(&d, 512);
            prop_assert_eq!(parse_request(&h, &[]).unwrap(), Request::DataOut(d));
        }

        #[test]
        fn parse_never_panics(bhs in any::<[u8; 48]>(), ahs in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_request(&bhs, &ahs);
        }
    }

    #[test]
    fn extended_cdb_ahs() {
        let c = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: true,
            write: false,
            attr: 1,
            lun: 0,
            itt: 1,
            edtl: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            cdb: [0x7f; esos_scsi::MAX_CDB_LEN],
            cdb_len: 16,
            bidi_read_len: None,
        };
        let h = build::scsi_command(&c, 0);
        // 16 extra CDB bytes: AHSLength = 17, padded to 20 bytes.
        let mut ahs = vec![0u8, 17, AHS_EXTENDED_CDB, 0];
        ahs.extend_from_slice(&[0x7f; 16]);
        ahs.resize(20, 0);
        let Request::ScsiCommand(p) = parse_request(&h, &ahs).unwrap() else {
            panic!()
        };
        assert_eq!(p.cdb_len, 32);
        assert_eq!(&p.cdb[16..32], &[0x7f; 16]);
        assert!(parse_request(&h, &ahs[..8]).is_err());
    }

    /// Found by the `pdu` fuzz target: two extended-CDB AHSs left the longer one's tail
    /// beyond `cdb_len`.
    #[test]
    fn repeated_ahs_types_are_refused() {
        let mut c = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: true,
            write: false,
            attr: 1,
            lun: 0,
            itt: 1,
            edtl: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            cdb: [0; esos_scsi::MAX_CDB_LEN],
            cdb_len: 16,
            bidi_read_len: None,
        };
        c.cdb[0] = 0x7f;
        let h = build::scsi_command(&c, 0);
        let mut long = vec![0u8, 17, AHS_EXTENDED_CDB, 0];
        long.extend_from_slice(&[0xee; 16]);
        long.resize(20, 0);
        let short = [0u8, 3, AHS_EXTENDED_CDB, 0, 1, 2, 0, 0];
        let twice = [long.clone(), short.to_vec()].concat();
        assert_eq!(
            parse_request(&h, &twice),
            Err(PduError::BadAhs(twice.len()))
        );
        let bidi = [0u8, 5, AHS_BIDI_READ_LENGTH, 0, 0, 0, 2, 0];
        let bidi_twice = [bidi, bidi].concat();
        assert_eq!(
            parse_request(&h, &bidi_twice),
            Err(PduError::BadAhs(bidi_twice.len()))
        );
        let Ok(Request::ScsiCommand(p)) = parse_request(&h, &[long, bidi.to_vec()].concat()) else {
            panic!("one AHS of each type is fine");
        };
        assert_eq!((p.cdb_len, p.bidi_read_len), (32, Some(512)));
    }

    #[test]
    fn target_opcodes_are_refused() {
        let mut h = [0u8; BHS_LEN];
        h[0] = opcode::SCSI_RESPONSE;
        assert_eq!(parse_request(&h, &[]), Err(PduError::UnknownOpcode(0x21)));
    }

    #[test]
    fn data_in_with_status_and_residual() {
        let mut h = [0u8; BHS_LEN];
        let seq = SeqNums {
            stat_sn: 7,
            exp_cmd_sn: 8,
            max_cmd_sn: 40,
        };
        encode_data_in(
            &mut h,
            true,
            Some((0, esos_scsi::Residual::Underflow(100))),
            0,
            5,
            seq,
            2,
            4096,
            512,
        );
        assert_eq!(h[0], opcode::DATA_IN);
        assert_eq!(h[1], 0x80 | 0x01 | 0x02);
        assert_eq!(u32_at(&h, 24), 7);
        assert_eq!(u32_at(&h, 44), 100);
        assert_eq!(u32_at(&h, 36), 2);
        assert_eq!(u32_at(&h, 40), 4096);
        assert_eq!(common(&h).data_len, 512);
        encode_data_in(&mut h, false, None, 0, 5, seq, 3, 0, 512);
        assert_eq!(h[1], 0);
        assert_eq!(u32_at(&h, 24), 0);
    }

    #[test]
    fn padding() {
        assert_eq!(pad_len(0), 0);
        assert_eq!(pad_len(1), 3);
        assert_eq!(pad_len(4), 0);
        assert_eq!(pad_len(18), 2);
    }
}

/// Round trips for every PDU type: initiator PDUs through `parse_request` (with encoders
/// written here from RFC 7143 11 for those `build` lacks), target PDUs read back at their
/// RFC field offsets.
#[cfg(test)]
mod round_trip_tests {
    use super::*;
    use proptest::prelude::*;

    fn header(op: u8, immediate: bool, flags: u8, data_len: usize) -> [u8; BHS_LEN] {
        let mut h = [0u8; BHS_LEN];
        start(&mut h, op, flags, data_len);
        if immediate {
            h[0] |= 0x40;
        }
        h
    }

    fn arb_seq() -> impl Strategy<Value = SeqNums> {
        any::<(u32, u32, u32)>().prop_map(|(stat_sn, exp_cmd_sn, max_cmd_sn)| SeqNums {
            stat_sn,
            exp_cmd_sn,
            max_cmd_sn,
        })
    }

    fn arb_residual() -> impl Strategy<Value = esos_scsi::Residual> {
        prop_oneof![
            Just(esos_scsi::Residual::None),
            any::<u32>().prop_map(esos_scsi::Residual::Underflow),
            any::<u32>().prop_map(esos_scsi::Residual::Overflow),
        ]
    }

    /// (flags bits, residual count) as RFC 7143 11.4.5 places them.
    fn residual_on_wire(r: esos_scsi::Residual) -> (u8, u32) {
        match r {
            esos_scsi::Residual::None => (0, 0),
            esos_scsi::Residual::Underflow(n) => (0x02, n),
            esos_scsi::Residual::Overflow(n) => (0x04, n),
        }
    }

    proptest! {
        #[test]
        fn nop_out(imm: bool, lun: u64, itt: u32, ttt: u32, sn: u32, exp: u32, dl in 0usize..1 << 24) {
            let mut h = header(opcode::NOP_OUT, imm, 0x80, dl);
            put_u64(&mut h, 8, lun);
            put_u32(&mut h, 16, itt);
            put_u32(&mut h, 20, ttt);
            put_u32(&mut h, 24, sn);
            put_u32(&mut h, 28, exp);
            let want = NopOut { immediate: imm, lun, itt, ttt, cmd_sn: sn, exp_stat_sn: exp };
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::NopOut(want)));
            prop_assert_eq!(common(&h).data_len, dl);
        }

        #[test]
        fn task_mgmt(imm: bool, function in 1u8..=14, lun: u64, itt: u32, rtt: u32,
                     sns: (u32, u32, u32, u32)) {
            let mut h = header(opcode::TASK_MGMT_REQUEST, imm, 0x80 | function, 0);
            put_u64(&mut h, 8, lun);
            put_u32(&mut h, 16, itt);
            put_u32(&mut h, 20, rtt);
            put_u32(&mut h, 24, sns.0);
            put_u32(&mut h, 28, sns.1);
            put_u32(&mut h, 32, sns.2);
            put_u32(&mut h, 36, sns.3);
            let want = TaskMgmt {
                immediate: imm, function, lun, itt, rtt, cmd_sn: sns.0, exp_stat_sn: sns.1,
                ref_cmd_sn: sns.2, exp_data_sn: sns.3,
            };
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::TaskMgmt(want)));
        }

        #[test]
        fn text_request(imm: bool, f: bool, c: bool, lun: u64, itt: u32, ttt: u32, sn: u32,
                        exp: u32, dl in 0usize..1 << 24) {
            let flags = (f as u8) << 7 | (c as u8) << 6;
            let mut h = header(opcode::TEXT_REQUEST, imm, flags, dl);
            put_u64(&mut h, 8, lun);
            put_u32(&mut h, 16, itt);
            put_u32(&mut h, 20, ttt);
            put_u32(&mut h, 24, sn);
            put_u32(&mut h, 28, exp);
            let want = TextRequest {
                immediate: imm, final_flag: f, cont: c, lun, itt, ttt, cmd_sn: sn, exp_stat_sn: exp,
            };
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::Text(want)));
        }

        #[test]
        fn logout(imm: bool, reason in 0u8..3, itt: u32, cid: u16, sn: u32, exp: u32) {
            let mut h = header(opcode::LOGOUT_REQUEST, imm, 0x80 | reason, 0);
            put_u32(&mut h, 16, itt);
            put_u16(&mut h, 20, cid);
            put_u32(&mut h, 24, sn);
            put_u32(&mut h, 28, exp);
            let want = LogoutRequest { immediate: imm, reason, itt, cid, cmd_sn: sn, exp_stat_sn: exp };
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::Logout(want)));
        }

        #[test]
        fn snack(snack_type in 0u8..4, itt: u32) {
            let mut h = header(opcode::SNACK_REQUEST, false, 0x80 | snack_type, 0);
            put_u32(&mut h, 16, itt);
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::Snack(Snack { snack_type, itt })));
        }

        #[test]
        fn login_request(t: bool, c: bool, csg in 0u8..4, nsg in 0u8..4, vmax: u8, vmin: u8,
                         isid: [u8; 6], tsih: u16, itt: u32, cid: u16, sn: u32, exp: u32,
                         dl in 0usize..1 << 24) {
            let l = LoginRequest {
                transit: t, cont: c, csg, nsg, version_max: vmax, version_min: vmin, isid, tsih,
                itt, cid, cmd_sn: sn, exp_stat_sn: exp,
            };
            let h = build::login(&l, dl);
            prop_assert_eq!(common(&h).data_len, dl);
            prop_assert!(common(&h).immediate);
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::Login(l)));
        }

        /// Extended CDBs of every length travel in the AHS (RFC 7143 11.2.2.3).
        #[test]
        fn scsi_command_extended_cdb(extra in proptest::collection::vec(any::<u8>(), 1..=16),
                                     cdb16: [u8; 16], bidi in proptest::option::of(any::<u32>())) {
            let mut cdb = [0u8; esos_scsi::MAX_CDB_LEN];
            cdb[..16].copy_from_slice(&cdb16);
            cdb[16..16 + extra.len()].copy_from_slice(&extra);
            let c = ScsiCommand {
                immediate: false, final_flag: true, read: bidi.is_some(), write: true, attr: 1,
                lun: 0, itt: 9, edtl: 4096, cmd_sn: 3, exp_stat_sn: 4, cdb,
                cdb_len: (16 + extra.len()) as u8, bidi_read_len: bidi,
            };
            let h = build::scsi_command(&c, 0);
            let mut ahs = vec![0, (extra.len() + 1) as u8, AHS_EXTENDED_CDB, 0];
            ahs.extend_from_slice(&extra);
            ahs.resize(ahs.len() + pad_len(ahs.len()), 0);
            if let Some(n) = bidi {
                ahs.extend_from_slice(&[0, 5, AHS_BIDI_READ_LENGTH, 0]);
                ahs.extend_from_slice(&n.to_be_bytes());
            }
            prop_assert_eq!(parse_request(&h, &ahs), Ok(Request::ScsiCommand(c)));
        }

        #[test]
        fn scsi_response(itt: u32, status: u8, res in arb_residual(), seq in arb_seq(),
                         eds: u32, dl in 0usize..1 << 24) {
            let mut h = [0xAAu8; BHS_LEN];
            encode_scsi_response(&mut h, itt, status, res, seq, eds, dl);
            let (flag, count) = residual_on_wire(res);
            prop_assert_eq!(common(&h), BhsCommon {
                opcode: opcode::SCSI_RESPONSE, immediate: false, ahs_len: 0, data_len: dl,
            });
            prop_assert_eq!((h[1], h[2], h[3]), (0x80 | flag, 0, status));
            prop_assert_eq!((u32_at(&h, 16), u32_at(&h, 24), u32_at(&h, 28), u32_at(&h, 32)),
                            (itt, seq.stat_sn, seq.exp_cmd_sn, seq.max_cmd_sn));
            prop_assert_eq!((u32_at(&h, 36), u32_at(&h, 44)), (eds, count));
        }

        #[test]
        fn data_in(f: bool, status in proptest::option::of((any::<u8>(), arb_residual())),
                   lun: u64, itt: u32, seq in arb_seq(), dsn: u32, off: u32,
                   dl in 0usize..1 << 24) {
            let mut h = [0x55u8; BHS_LEN];
            encode_data_in(&mut h, f, status, lun, itt, seq, dsn, off, dl);
            prop_assert_eq!(common(&h).opcode, opcode::DATA_IN);
            prop_assert_eq!(common(&h).data_len, dl);
            // The S bit implies the F bit (RFC 7143 11.7.1).
            prop_assert_eq!(h[1] & 0x80 != 0, f || status.is_some());
            prop_assert_eq!(h[1] & 0x01 != 0, status.is_some());
            prop_assert_eq!((u64_at(&h, 8), u32_at(&h, 16), u32_at(&h, 20)), (lun, itt, RESERVED_TAG));
            prop_assert_eq!((u32_at(&h, 36), u32_at(&h, 40)), (dsn, off));
            match status {
                Some((st, res)) => {
                    let (flag, count) = residual_on_wire(res);
                    prop_assert_eq!((h[1] & 0x06, h[3], u32_at(&h, 44)), (flag, st, count));
                    prop_assert_eq!(u32_at(&h, 24), seq.stat_sn);
                }
                None => prop_assert_eq!((h[1] & 0x06, u32_at(&h, 24), u32_at(&h, 44)), (0, 0, 0)),
            }
        }

        #[test]
        fn r2t(lun: u64, itt: u32, ttt: u32, seq in arb_seq(), sn: u32, off: u32, len: u32) {
            let mut h = [0xFFu8; BHS_LEN];
            encode_r2t(&mut h, lun, itt, ttt, seq, sn, off, len);
            prop_assert_eq!(common(&h), BhsCommon {
                opcode: opcode::R2T, immediate: false, ahs_len: 0, data_len: 0,
            });
            prop_assert_eq!((u64_at(&h, 8), u32_at(&h, 16), u32_at(&h, 20)), (lun, itt, ttt));
            prop_assert_eq!((u32_at(&h, 36), u32_at(&h, 40), u32_at(&h, 44)), (sn, off, len));
        }

        #[test]
        fn nop_in_text_logout_reject_async(lun: u64, itt: u32, ttt: u32, seq in arb_seq(),
                                           f: bool, c: bool, code: u8, t2w: u16, t2r: u16,
                                           dl in 0usize..1 << 24) {
            let mut h = [0u8; BHS_LEN];
            encode_nop_in(&mut h, lun, itt, ttt, seq, dl);
            prop_assert_eq!((common(&h).opcode, common(&h).data_len), (opcode::NOP_IN, dl));
            prop_assert_eq!((u64_at(&h, 8), u32_at(&h, 16), u32_at(&h, 20)), (lun, itt, ttt));
            encode_text_response(&mut h, f, c, lun, itt, ttt, seq, dl);
            prop_assert_eq!(h[1], (f as u8) << 7 | (c as u8) << 6);
            prop_assert_eq!((common(&h).opcode, common(&h).data_len), (opcode::TEXT_RESPONSE, dl));
            encode_logout_response(&mut h, itt, code, seq, t2w, t2r);
            prop_assert_eq!((h[0], h[2], u32_at(&h, 16)), (opcode::LOGOUT_RESPONSE, code, itt));
            prop_assert_eq!((u16_at(&h, 40), u16_at(&h, 42)), (t2w, t2r));
            encode_reject(&mut h, code, seq);
            prop_assert_eq!((h[0], h[2], common(&h).data_len), (opcode::REJECT, code, BHS_LEN));
            encode_async(&mut h, code, seq, t2w);
            prop_assert_eq!((h[0], h[36], u16_at(&h, 42)), (opcode::ASYNC_MESSAGE, code, t2w));
            prop_assert_eq!(
                (u32_at(&h, 24), u32_at(&h, 28), u32_at(&h, 32)),
                (seq.stat_sn, seq.exp_cmd_sn, seq.max_cmd_sn)
            );
        }

        #[test]
        fn login_response(t: bool, c: bool, csg in 0u8..4, nsg in 0u8..4, class: u8, detail: u8,
                          isid: [u8; 6], tsih: u16, itt: u32, seq in arb_seq(),
                          dl in 0usize..1 << 24) {
            let r = crate::login::LoginResponseFields {
                transit: t, cont: c, csg, nsg, status_class: class, status_detail: detail,
            };
            let mut h = [0u8; BHS_LEN];
            encode_login_response(&mut h, &r, isid, tsih, itt, seq, dl);
            prop_assert_eq!((common(&h).opcode, common(&h).data_len), (opcode::LOGIN_RESPONSE, dl));
            prop_assert_eq!(h[1], (t as u8) << 7 | (c as u8) << 6 | csg << 2 | nsg);
            prop_assert_eq!(&h[8..14], &isid[..]);
            prop_assert_eq!((u16_at(&h, 14), u32_at(&h, 16), h[36], h[37]), (tsih, itt, class, detail));
        }
    }
}
