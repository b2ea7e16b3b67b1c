//! iSCSI PDU codec (RFC 7143 11): pure functions over byte slices.
//!
//! Every PDU starts with a 48-byte Basic Header Segment (BHS). Requests are decoded into
//! typed structs by [`parse_request`] (`request.rs`); responses are encoded from named
//! structs by the `encode_*` functions (`response.rs`) into a caller-owned 48-byte array,
//! so the runtime builds headers on its stack and never allocates. [`build`] makes
//! initiator PDUs for tests and fuzz targets.

pub mod build;
mod request;
mod response;
#[cfg(test)]
mod tests;

use esos_common::be::u24_at;

pub use request::{
    DataOut, LoginRequest, LogoutRequest, NopOut, Request, ScsiCommand, Snack, TaskMgmt,
    TextRequest, parse_request,
};
pub use response::{
    CollapsedStatus, DataIn, LoginResponse, LogoutResponse, NopIn, R2t, ScsiResponse, SeqNums,
    TextResponse, encode_async, encode_data_in, encode_login_response, encode_logout_response,
    encode_nop_in, encode_r2t, encode_reject, encode_scsi_response, encode_task_mgmt_response,
    encode_text_response,
};

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// Largest AHS we accept (TotalAHSLength counts 4-byte words, one byte wide: 1020 bytes).
pub const MAX_AHS_LEN: usize = 255 * 4;
/// The reserved tag value (RFC 7143 11.1): "no task".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

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
