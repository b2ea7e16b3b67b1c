//! Initiator PDUs decoded from their BHS and AHS (RFC 7143 11).

use esos_common::be::{u16_at, u32_at, u64_at};

use super::{BHS_LEN, PduError, common, opcode};

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
pub(super) const AHS_EXTENDED_CDB: u8 = 1;
pub(super) const AHS_BIDI_READ_LENGTH: u8 = 2;

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
