//! Target PDU encoders (RFC 7143 11): each fills a caller-owned 48-byte BHS from a named
//! struct, so the runtime builds headers on its stack and never allocates. The data
//! segment, when there is one, is the caller's; `data_len` is its length.

use esos_common::be::{put_u16, put_u24, put_u32, put_u64};
use esos_scsi::Residual;

use super::{BHS_LEN, RESERVED_TAG, opcode};
use crate::login::LoginResponseFields;

/// The sequence numbers every target PDU carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqNums {
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

/// NOP-In (RFC 7143 11.19): an answer to a NOP-Out (`ttt` reserved) or a target ping
/// (`itt` reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopIn {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub seq: SeqNums,
    pub data_len: usize,
}

/// SCSI Response (RFC 7143 11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiResponse {
    pub itt: u32,
    /// SCSI status byte.
    pub status: u8,
    pub residual: Residual,
    pub seq: SeqNums,
    /// Data-In PDUs sent for the command.
    pub exp_data_sn: u32,
    /// The sense segment: 2-byte length + sense, or 0.
    pub data_len: usize,
}

/// Status carried in the last Data-In of a command (phase collapse, RFC 7143 11.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollapsedStatus {
    /// SCSI status byte.
    pub status: u8,
    pub residual: Residual,
}

/// Data-In (RFC 7143 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataIn {
    /// F: the last PDU of a burst (implied by `status`).
    pub final_flag: bool,
    /// With status, the PDU ends the command (S bit) and no SCSI Response follows.
    pub status: Option<CollapsedStatus>,
    pub lun: u64,
    pub itt: u32,
    /// StatSN is sent only with `status`.
    pub seq: SeqNums,
    pub data_sn: u32,
    /// Offset of this segment in the command's data.
    pub offset: u32,
    pub data_len: usize,
}

/// Ready To Transfer (RFC 7143 11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub seq: SeqNums,
    pub r2t_sn: u32,
    /// Offset of the requested data in the command's data.
    pub offset: u32,
    /// Bytes requested.
    pub length: u32,
}

/// Login Response (RFC 7143 11.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponse {
    pub fields: LoginResponseFields,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub seq: SeqNums,
    pub data_len: usize,
}

/// Text Response (RFC 7143 11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextResponse {
    pub final_flag: bool,
    /// C: more of this response follows when the initiator asks with `ttt`.
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub seq: SeqNums,
    pub data_len: usize,
}

/// Logout Response (RFC 7143 11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutResponse {
    pub itt: u32,
    pub response: u8,
    pub seq: SeqNums,
    pub time2wait: u16,
    pub time2retain: u16,
}

pub(super) fn start(h: &mut [u8; BHS_LEN], op: u8, flags: u8, data_len: usize) {
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
fn put_residual(h: &mut [u8; BHS_LEN], residual: Residual) {
    match residual {
        Residual::None => {}
        Residual::Underflow(n) => {
            h[1] |= 0x02;
            put_u32(h, 44, n);
        }
        Residual::Overflow(n) => {
            h[1] |= 0x04;
            put_u32(h, 44, n);
        }
    }
}

pub fn encode_nop_in(h: &mut [u8; BHS_LEN], p: &NopIn) {
    start(h, opcode::NOP_IN, 0x80, p.data_len);
    put_u64(h, 8, p.lun);
    put_u32(h, 16, p.itt);
    put_u32(h, 20, p.ttt);
    put_seq(h, p.seq);
}

pub fn encode_scsi_response(h: &mut [u8; BHS_LEN], p: &ScsiResponse) {
    start(h, opcode::SCSI_RESPONSE, 0x80, p.data_len);
    h[2] = 0; // Command Completed at Target.
    h[3] = p.status;
    put_u32(h, 16, p.itt);
    put_seq(h, p.seq);
    put_u32(h, 36, p.exp_data_sn);
    put_residual(h, p.residual);
}

pub fn encode_data_in(h: &mut [u8; BHS_LEN], p: &DataIn) {
    let mut flags = if p.final_flag { 0x80 } else { 0 };
    if p.status.is_some() {
        flags |= 0x81;
    }
    start(h, opcode::DATA_IN, flags, p.data_len);
    put_u64(h, 8, p.lun);
    put_u32(h, 16, p.itt);
    put_u32(h, 20, RESERVED_TAG);
    put_seq(h, p.seq);
    if let Some(st) = p.status {
        h[3] = st.status;
        put_residual(h, st.residual);
    } else {
        // StatSN is reserved without the S bit.
        put_u32(h, 24, 0);
    }
    put_u32(h, 36, p.data_sn);
    put_u32(h, 40, p.offset);
}

pub fn encode_r2t(h: &mut [u8; BHS_LEN], p: &R2t) {
    start(h, opcode::R2T, 0x80, 0);
    put_u64(h, 8, p.lun);
    put_u32(h, 16, p.itt);
    put_u32(h, 20, p.ttt);
    put_seq(h, p.seq);
    put_u32(h, 36, p.r2t_sn);
    put_u32(h, 40, p.offset);
    put_u32(h, 44, p.length);
}

/// Task Management Function Response (RFC 7143 11.6).
pub fn encode_task_mgmt_response(h: &mut [u8; BHS_LEN], itt: u32, response: u8, seq: SeqNums) {
    start(h, opcode::TASK_MGMT_RESPONSE, 0x80, 0);
    h[2] = response;
    put_u32(h, 16, itt);
    put_seq(h, seq);
}

pub fn encode_login_response(h: &mut [u8; BHS_LEN], p: &LoginResponse) {
    let r = &p.fields;
    let mut flags = (r.csg & 3) << 2 | (r.nsg & 3);
    if r.transit {
        flags |= 0x80;
    }
    if r.cont {
        flags |= 0x40;
    }
    start(h, opcode::LOGIN_RESPONSE, flags, p.data_len);
    h[2] = 0; // Version-max
    h[3] = 0; // Version-active
    h[8..14].copy_from_slice(&p.isid);
    put_u16(h, 14, p.tsih);
    put_u32(h, 16, p.itt);
    put_seq(h, p.seq);
    h[36] = r.status_class;
    h[37] = r.status_detail;
}

pub fn encode_text_response(h: &mut [u8; BHS_LEN], p: &TextResponse) {
    let mut flags = 0;
    if p.final_flag {
        flags |= 0x80;
    }
    if p.cont {
        flags |= 0x40;
    }
    start(h, opcode::TEXT_RESPONSE, flags, p.data_len);
    put_u64(h, 8, p.lun);
    put_u32(h, 16, p.itt);
    put_u32(h, 20, p.ttt);
    put_seq(h, p.seq);
}

pub fn encode_logout_response(h: &mut [u8; BHS_LEN], p: &LogoutResponse) {
    start(h, opcode::LOGOUT_RESPONSE, 0x80, 0);
    h[2] = p.response;
    put_u32(h, 16, p.itt);
    put_seq(h, p.seq);
    put_u16(h, 40, p.time2wait);
    put_u16(h, 42, p.time2retain);
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
