//! Persistent reservations (SPC-4 5.9), the SCSI side: the state machine, its access
//! rules and the APTPL file are protocol-neutral in [`esos_lu::reservations`]; here are
//! the SPC codes of service actions and reservation types, the sense data of each refusal
//! and iSCSI TransportIDs (SPC-4 7.6.4.6). The commands that drive the state (and deliver
//! its unit attentions) are in `disk/pr.rs`.

use esos_lu::reservations::{Action, PrError, Requested};

pub use esos_lu::reservations::{
    Access, Effects, MAX_REGISTRATIONS, MoveParams, OutParams, Port, PrState, Registration,
    Reservation, ReservationType as PrType, Who, decode_state, encode_state, load, save,
};

use crate::sense::{Asc, Sense};

pub use esos_common::limits::MAX_ISCSI_NAME_LEN;

/// The APTPL state file: read at most `MAX_STATE_FILE_LEN` bytes ([`MAX_REGISTRATIONS`]
/// lines of at most two names fit), written crash-safely.
pub use esos_lu::state_file::{MAX_STATE_FILE_LEN, StateFileError};

pub const RESERVATIONS_PREEMPTED: Asc = Asc(0x2A, 0x03);
pub const RESERVATIONS_RELEASED: Asc = Asc(0x2A, 0x04);
pub const REGISTRATIONS_PREEMPTED: Asc = Asc(0x2A, 0x05);
pub const INVALID_RELEASE_OF_PR: Asc = Asc(0x26, 0x04);
pub const INSUFFICIENT_REGISTRATION_RESOURCES: Asc = Asc(0x55, 0x04);

/// PERSISTENT RESERVE OUT service actions (SPC-4 6.16.2, table 208).
pub mod sa {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE: u8 = 0x06;
    pub const REGISTER_AND_MOVE: u8 = 0x07;
}

/// Why PERSISTENT RESERVE OUT did not do what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// RESERVATION CONFLICT status, no sense.
    Conflict,
    Check(Sense),
}

impl From<Sense> for Refusal {
    fn from(s: Sense) -> Refusal {
        Refusal::Check(s)
    }
}

/// RESERVATION TYPE codes (SPC-4 6.15.3.3, table 201): one table for both directions.
const TYPE_CODES: [(PrType, u8); 6] = [
    (PrType::WriteExclusive, 1),
    (PrType::ExclusiveAccess, 3),
    (PrType::WriteExclusiveRegistrantsOnly, 5),
    (PrType::ExclusiveAccessRegistrantsOnly, 6),
    (PrType::WriteExclusiveAllRegistrants, 7),
    (PrType::ExclusiveAccessAllRegistrants, 8),
];

/// RESERVATION TYPE code of `ty`.
pub fn type_code(ty: PrType) -> u8 {
    TYPE_CODES
        .iter()
        .find(|(t, _)| *t == ty)
        .map_or(0, |&(_, code)| code)
}

/// The type of a RESERVATION TYPE code, `None` for codes SPC-4 does not define.
pub fn type_from_code(code: u8) -> Option<PrType> {
    TYPE_CODES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|&(ty, _)| ty)
}

/// SPC-4 6.16.2: only LU_SCOPE (0) exists.
fn requested(scope: u8, ty: u8) -> Requested {
    Requested {
        unit_scope: scope == 0,
        ty: type_from_code(ty),
    }
}

/// The sense data (or RESERVATION CONFLICT) of each refusal, with the field it points at:
/// SPC-4 5.9.7-5.9.11 and 6.16.
impl From<PrError> for Refusal {
    fn from(e: PrError) -> Refusal {
        let param = |byte, bit| Refusal::Check(Sense::invalid_param_field(byte, bit));
        match e {
            PrError::Conflict => Refusal::Conflict,
            PrError::InsufficientResources => {
                Refusal::Check(Sense::illegal(INSUFFICIENT_REGISTRATION_RESOURCES))
            }
            PrError::InvalidRelease => Refusal::Check(Sense::illegal(INVALID_RELEASE_OF_PR)),
            PrError::InvalidScope => Refusal::Check(Sense::invalid_cdb_field(2, Some(7))),
            PrError::InvalidType => Refusal::Check(Sense::invalid_cdb_field(2, Some(3))),
            PrError::SpecifiedInitiatorsNotAllowed => param(20, Some(3)),
            PrError::AlreadyRegistered => param(24, None),
            PrError::ZeroKey => param(8, None),
        }
    }
}

/// PERSISTENT RESERVE OUT on the neutral state, in SPC codes.
pub trait ReserveOut {
    /// One service action other than REGISTER AND MOVE; `scope` and `ty` are the CDB's.
    fn out(
        &mut self,
        p: Port<'_>,
        action: u8,
        scope: u8,
        ty: u8,
        prm: &OutParams,
    ) -> Result<Effects, Refusal>;
    /// REGISTER AND MOVE (SPC-4 5.9.8).
    fn register_and_move(
        &mut self,
        p: Port<'_>,
        scope: u8,
        ty: u8,
        prm: &MoveParams,
    ) -> Result<Effects, Refusal>;
}

impl ReserveOut for PrState {
    fn out(
        &mut self,
        p: Port<'_>,
        action: u8,
        scope: u8,
        ty: u8,
        prm: &OutParams,
    ) -> Result<Effects, Refusal> {
        let action = match action {
            sa::REGISTER => Action::Register,
            sa::REGISTER_AND_IGNORE => Action::RegisterAndIgnore,
            sa::RESERVE => Action::Reserve,
            sa::RELEASE => Action::Release,
            sa::CLEAR => Action::Clear,
            sa::PREEMPT => Action::Preempt,
            sa::PREEMPT_AND_ABORT => Action::PreemptAndAbort,
            _ => return Err(Refusal::Check(Sense::invalid_cdb_field(1, Some(4)))),
        };
        Ok(self.apply(p, action, requested(scope, ty), prm)?)
    }

    fn register_and_move(
        &mut self,
        p: Port<'_>,
        scope: u8,
        ty: u8,
        prm: &MoveParams,
    ) -> Result<Effects, Refusal> {
        Ok(self.move_reservation(p, requested(scope, ty), prm)?)
    }
}

/// SCSI protocol identifier of iSCSI (SPC-4 7.6.2, table 444).
const PROTOCOL_ISCSI: u8 = 0x5;

/// Decodes one iSCSI TransportID at the start of `b` (SPC-4 7.6.4.6): format 0 gives the
/// bare iSCSI name (every port of that initiator), format 1 the `name,i,0x<ISID>` port.
/// Returns the name and the bytes consumed; `Err` holds the offset of the bad field.
pub fn decode_transport_id(b: &[u8]) -> Result<(String, usize), usize> {
    if b.len() < 4 {
        return Err(0);
    }
    if b[0] & 0x0F != PROTOCOL_ISCSI {
        return Err(0);
    }
    let format = b[0] >> 6;
    if format > 1 || b[0] & 0x30 != 0 {
        return Err(0);
    }
    let add_len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if add_len == 0 || add_len % 4 != 0 || 4 + add_len > b.len() {
        return Err(2);
    }
    let body = &b[4..4 + add_len];
    let end = body.iter().position(|&c| c == 0).ok_or(4usize)?;
    let name = std::str::from_utf8(&body[..end]).map_err(|_| 4usize)?;
    if !name.bytes().all(|c| (0x21..0x7F).contains(&c)) {
        return Err(4);
    }
    let sep = name.to_ascii_lowercase().find(",i,0x");
    let iscsi_name = sep.map_or(name, |i| &name[..i]);
    if iscsi_name.is_empty() || iscsi_name.len() > MAX_ISCSI_NAME_LEN {
        return Err(4);
    }
    match (format, sep) {
        (0, None) => {}
        (1, Some(i)) => {
            let isid = &name[i + 5..];
            if isid.len() != 12 || !isid.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(4);
            }
        }
        _ => return Err(4),
    }
    Ok((name.to_owned(), 4 + add_len))
}

/// Encodes `initiator` (a port name or a bare iSCSI name) as an iSCSI TransportID: format 1
/// for a port name, format 0 otherwise; NUL-terminated, padded to a multiple of 4 and at
/// least 20 bytes of name as SPC-4 7.6.4.6 requires.
pub fn encode_transport_id(initiator: &str, out: &mut Vec<u8>) {
    let format: u8 = if initiator.to_ascii_lowercase().contains(",i,0x") {
        1
    } else {
        0
    };
    let len = (initiator.len() + 1).next_multiple_of(4).max(20);
    out.push(format << 6 | PROTOCOL_ISCSI);
    out.push(0);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(initiator.as_bytes());
    out.resize(start + len, 0);
}

#[cfg(test)]
mod tests;
