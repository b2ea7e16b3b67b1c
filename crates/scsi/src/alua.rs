//! Asymmetric logical unit access (SPC-4 5.16), the SCSI side of the port-group table
//! ([`esos_lu::access`]): the codes of each access state, the commands each state lets
//! through, REPORT / SET TARGET PORT GROUPS, and the sense codes of a refusal.
//!
//! The table itself (groups, states, the state file, the "every group active" fast path)
//! is shared with other front-ends and lives in esos-lu; a change reaches every unit's
//! nexuses as an [`esos_lu::events::Event::AccessStateChanged`], which the unit turns into
//! ASYMMETRIC ACCESS STATE CHANGED unit attentions (`unit.rs`).

use esos_lu::events::Session;

pub use esos_lu::access::{
    AccessError as AluaError, AccessMode as AluaMode, AccessState, ChangeCause, GroupSpec,
    MAX_PORT_GROUPS, MAX_PORTS_PER_GROUP, PortGroups,
};

use crate::Nexus;
use crate::cdb::op;
use crate::sense::{Asc, Sense, SenseKey};

/// Largest SET TARGET PORT GROUPS parameter list: the header and one descriptor per group.
pub const MAX_STPG_PARAM_LEN: u32 = 4 + 4 * MAX_PORT_GROUPS as u32;
/// IMPLICIT TRANSITION TIME reported in the extended RTPG header (seconds): esos changes
/// states at once, so this only bounds how long a management-driven transition may last.
pub const IMPLICIT_TRANSITION_TIME_S: u8 = 10;

/// LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION.
pub const NOT_ACCESSIBLE_TRANSITION: Asc = Asc(0x04, 0x0A);
/// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE.
pub const NOT_ACCESSIBLE_STANDBY: Asc = Asc(0x04, 0x0B);
/// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE.
pub const NOT_ACCESSIBLE_UNAVAILABLE: Asc = Asc(0x04, 0x0C);
/// ASYMMETRIC ACCESS STATE CHANGED (unit attention, SPC-4 5.16.2.7).
pub const ACCESS_STATE_CHANGED: Asc = Asc(0x2A, 0x06);

/// ASYMMETRIC ACCESS STATE code of a state (SPC-4 5.16.2.4, table 35).
pub fn code(state: AccessState) -> u8 {
    match state {
        AccessState::ActiveOptimized => 0x0,
        AccessState::ActiveNonOptimized => 0x1,
        AccessState::Standby => 0x2,
        AccessState::Unavailable => 0x3,
        AccessState::Transitioning => 0xF,
    }
}

/// The state of an ASYMMETRIC ACCESS STATE code.
pub fn from_code(code: u8) -> Option<AccessState> {
    Some(match code {
        0x0 => AccessState::ActiveOptimized,
        0x1 => AccessState::ActiveNonOptimized,
        0x2 => AccessState::Standby,
        0x3 => AccessState::Unavailable,
        0xF => AccessState::Transitioning,
        _ => return None,
    })
}

/// The sense code for commands a state does not allow (SPC-4 5.16.2.4.4-5.16.2.4.6).
fn refusal(state: AccessState) -> Option<Asc> {
    match state {
        AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => None,
        AccessState::Standby => Some(NOT_ACCESSIBLE_STANDBY),
        AccessState::Unavailable => Some(NOT_ACCESSIBLE_UNAVAILABLE),
        AccessState::Transitioning => Some(NOT_ACCESSIBLE_TRANSITION),
    }
}

/// The two-bit TPGS value of standard INQUIRY (SPC-4 6.6.2).
pub trait Tpgs {
    fn tpgs(self) -> u8;
}

impl Tpgs for AluaMode {
    fn tpgs(self) -> u8 {
        match self {
            AluaMode::Implicit => 0b01,
            AluaMode::Explicit => 0b10,
            AluaMode::Both => 0b11,
        }
    }
}

/// STATUS CODE of a target port group descriptor (SPC-4 6.27, table 251).
fn status(cause: ChangeCause) -> u8 {
    match cause {
        ChangeCause::None => 0x00,
        ChangeCause::Explicit => 0x01,
        ChangeCause::Implicit => 0x02,
    }
}

/// What SCSI does with the port-group table.
pub trait Spc {
    /// The target port group of the nexus's target port (VPD 0x83 designator type 5).
    fn group_id(&self, nexus: &Nexus) -> u16;
    /// Admission check: the sense for a command the state of the nexus's group does not
    /// allow, `None` to run it.
    fn check(&self, nexus: &Nexus, cdb: &[u8]) -> Option<Sense>;
    /// REPORT TARGET PORT GROUPS parameter data (SPC-4 6.27).
    fn report(&self, nexus: &Nexus, extended: bool, out: &mut Vec<u8>);
    /// SET TARGET PORT GROUPS (SPC-4 6.39) with parameter list `list`, issued by the
    /// session `from` (which gets no unit attention for its own change).
    fn set_target_port_groups(&self, list: &[u8], from: Option<Session>) -> Result<(), Sense>;
}

impl Spc for PortGroups {
    /// A port in no group (and every port, when no group is configured) is its own
    /// group numbered [`Nexus::port_group`].
    fn group_id(&self, nexus: &Nexus) -> u16 {
        self.group_of_port(nexus.relative_port)
            .map_or(nexus.port_group, |g| g.id)
    }

    /// SPC-4 5.16.2.4.4-5.16.2.4.6. One relaxed load while every group is active.
    #[inline]
    fn check(&self, nexus: &Nexus, cdb: &[u8]) -> Option<Sense> {
        if self.all_active() {
            return None;
        }
        let state = self.group_of_port(nexus.relative_port)?.state;
        let asc = refusal(state)?;
        if allowed(state, cdb) {
            return None;
        }
        Some(Sense::new(SenseKey::NotReady, asc))
    }

    /// In the length-only or the extended header format.
    fn report(&self, nexus: &Nexus, extended: bool, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[0; 4]);
        if extended {
            // FORMAT TYPE 001b, IMPLICIT TRANSITION TIME.
            out.extend_from_slice(&[0x10, IMPLICIT_TRANSITION_TIME_S, 0, 0]);
        }
        if self.group_of_port(nexus.relative_port).is_none() {
            descriptor(
                out,
                nexus.port_group,
                AccessState::ActiveOptimized,
                status(ChangeCause::None),
                &[nexus.relative_port],
            );
        }
        for g in self.groups() {
            descriptor(out, g.id, g.state, status(g.cause), g.ports);
        }
        let len = (out.len() - 4) as u32;
        out[0..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Validates every descriptor, then applies them all, saves them, and tells every
    /// other nexus (SPC-4 5.16.2.7).
    fn set_target_port_groups(&self, list: &[u8], from: Option<Session>) -> Result<(), Sense> {
        let wanted = decode_stpg(list, |id| self.has_group(id))?;
        self.set_explicit(&wanted, from).map_err(|e| {
            tracing::error!(error = %e, "ALUA state not saved; SET TARGET PORT GROUPS refused");
            Sense::new(SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE)
        })
    }
}

/// One target port group descriptor (SPC-4 6.27, table 250).
fn descriptor(out: &mut Vec<u8>, id: u16, state: AccessState, status: u8, ports: &[u16]) {
    // T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP; no offline, no LBA dependent.
    const SUPPORTED: u8 = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;
    let [hi, lo] = id.to_be_bytes();
    let count = ports.len().min(MAX_PORTS_PER_GROUP) as u8;
    out.extend_from_slice(&[code(state), SUPPORTED, hi, lo, 0, status, 0, count]);
    for p in &ports[..usize::from(count)] {
        let [hi, lo] = p.to_be_bytes();
        out.extend_from_slice(&[0, 0, hi, lo]);
    }
}

/// Decodes a SET TARGET PORT GROUPS parameter list into (group, state) pairs. Only the
/// four primary states can be asked for; groups must exist and appear once.
pub fn decode_stpg(
    list: &[u8],
    exists: impl Fn(u16) -> bool,
) -> Result<Vec<(u16, AccessState)>, Sense> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    if list.len() < 4 || !list.len().is_multiple_of(4) {
        // A truncated descriptor (SPC-4 6.39).
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    reserved_param(list, 0..4)?;
    let mut out: Vec<(u16, AccessState)> = Vec::with_capacity(list.len() / 4 - 1);
    for (i, d) in list[4..].chunks_exact(4).enumerate() {
        let at = 4 + 4 * i;
        if d[0] & 0xF0 != 0 {
            let bit = 7 - (d[0] & 0xF0).leading_zeros() as u8;
            return Err(Sense::invalid_param_field(at as u16, Some(bit)));
        }
        reserved_param(list, at + 1..at + 2)?;
        let state = match from_code(d[0] & 0x0F) {
            Some(s) if s != AccessState::Transitioning => s,
            _ => return Err(Sense::invalid_param_field(at as u16, Some(3))),
        };
        let id = u16::from_be_bytes([d[2], d[3]]);
        if !exists(id) || out.iter().any(|(seen, _)| *seen == id) {
            return Err(Sense::invalid_param_field(at as u16 + 2, None));
        }
        out.push((id, state));
    }
    Ok(out)
}

fn reserved_param(list: &[u8], bytes: std::ops::Range<usize>) -> Result<(), Sense> {
    for at in bytes {
        if list[at] != 0 {
            let bit = 7 - list[at].leading_zeros() as u8;
            return Err(Sense::invalid_param_field(at as u16, Some(bit)));
        }
    }
    Ok(())
}

/// Commands a non-active state still processes (SPC-4 5.16.2.4.4 standby, 5.16.2.4.5
/// unavailable, 5.16.2.4.6 transitioning). TEST UNIT READY is not among them: path
/// checkers (dm-multipath's `tur`) read NOT READY 04/0B as "standby path".
fn allowed(state: AccessState, cdb: &[u8]) -> bool {
    const LOG_SELECT: u8 = 0x4C;
    const LOG_SENSE: u8 = 0x4D;
    const RECEIVE_DIAGNOSTIC: u8 = 0x1C;
    const SEND_DIAGNOSTIC: u8 = 0x1D;
    const WRITE_BUFFER: u8 = 0x3B;
    const READ_BUFFER: u8 = 0x3C;
    const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    let Some(&opcode) = cdb.first() else {
        return false;
    };
    let sa = cdb.get(1).map_or(0, |b| b & 0x1F);
    let always = match opcode {
        op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE => true,
        op::MAINTENANCE_IN => matches!(
            sa,
            op::SA_REPORT_TARGET_PORT_GROUPS
                | op::SA_REPORT_SUPPORTED_OPCODES
                | op::SA_REPORT_SUPPORTED_TMFS
        ),
        // Echo buffer modes only (0Ah).
        READ_BUFFER | WRITE_BUFFER => sa == 0x0A,
        _ => false,
    };
    let stpg = opcode == op::MAINTENANCE_OUT && sa == op::SA_SET_TARGET_PORT_GROUPS;
    match state {
        AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => true,
        AccessState::Standby => {
            always
                || stpg
                || matches!(
                    opcode,
                    op::MODE_SENSE_6
                        | op::MODE_SENSE_10
                        | op::MODE_SELECT_6
                        | op::MODE_SELECT_10
                        | LOG_SELECT
                        | LOG_SENSE
                        | RECEIVE_DIAGNOSTIC
                        | SEND_DIAGNOSTIC
                        | PERSISTENT_RESERVE_IN
                        | PERSISTENT_RESERVE_OUT
                )
        }
        AccessState::Unavailable => always || stpg,
        AccessState::Transitioning => always,
    }
}

#[cfg(test)]
mod tests;
