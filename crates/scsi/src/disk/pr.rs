//! PERSISTENT RESERVE IN / OUT (SPC-4 6.15, 6.16), SPC-2 RESERVE / RELEASE, and the
//! reservation check every command passes before it runs (SPC-4 5.9.1).
//!
//! The state machine is pure and protocol-neutral (`esos_lu::reservations`, with its SPC
//! codes in `crate::pr`), and the state itself is the unit's, shared with every front-end
//! (`Unit::reservations`); this file parses parameter lists, builds parameter data,
//! persists APTPL state and delivers unit attentions to live nexuses.
//!
//! PREEMPT AND ABORT removes the preempted registrations and posts their unit attentions
//! like PREEMPT, then aborts every task of the preempted nexuses on this unit (SPC-4
//! 5.9.11.5; the issuer's own nexus is never among them). With the control mode page's
//! TST 000b, TAS 0 and QERR 00b (the only values esos reports), SAM-5 5.6 has the aborted
//! tasks end without a response and each nexus that lost a task get COMMANDS CLEARED BY
//! ANOTHER INITIATOR. What "aborted" guarantees, once the PERSISTENT RESERVE OUT answers
//! GOOD: an aborted task that had not started never touches the medium; one that had
//! started (its write may already be with the device, which cannot take it back) has
//! ended, so its write has landed or failed before the GOOD and nothing of it lands
//! later; and no aborted task ever reports a status. A task whose status was decided
//! before the abort (a READ still sending its data) is complete, not aborted. A write the
//! transport still gathers data for is not in the task set yet: the transport asks its
//! `AbortMark` once the data is in, and the write ends the same way. Waiting for a started
//! task can take as long as its I/O, or, when its session no longer polls it (a socket
//! that stopped moving), until that connection is dropped and its commands with it.
//!
//! With APTPL the state file is written (and fsynced) inside the PERSISTENT RESERVE OUT
//! command, on the executor thread: a rare, small write, and GOOD must wait for it anyway.

use esos_common::be::{u32_at, u64_at};
use esos_common::sync::RwLockExt as _;

use esos_lu::events::{Audience, Session};

use super::{Done, Outcome};
use crate::cdb::pr::opc;
use crate::cdb::{Cdb, op};
use crate::pr::{
    self, Access, Effects, MoveParams, OutParams, Port, Refusal, ReserveOut as _, Who,
};
use crate::sense::{Asc, Sense, SenseKey};
use crate::unit::LogicalUnit;
use crate::{Command, IoBuf, Nexus, Residual, Response, SenseBytes, Status};

/// Largest PERSISTENT RESERVE OUT parameter list: the 24-byte header plus TransportIDs
/// (SPEC_I_PT) for up to [`pr::MAX_REGISTRATIONS`] initiators of the longest name.
pub const MAX_PR_OUT_LEN: u32 = 28 + 256 * (pr::MAX_ISCSI_NAME_LEN as u32 + 24);

/// The session of nexus `id` of `lu`, as the unit's shared state names it.
fn session(lu: &LogicalUnit, id: u64) -> Session {
    Session {
        subscriber: lu.subscriber(),
        session: id,
    }
}

/// The session ended: its SPC-2 reservation goes with it; registrations stay.
pub fn nexus_gone(lu: &LogicalUnit, id: u64) {
    lu.pr.known.write_locked().remove(&id);
    lu.reservations.session_gone(session(lu, id));
}

fn port(n: &Nexus) -> Port<'_> {
    Port {
        initiator: &n.initiator_port,
        target: &n.target_port,
        rel_port: n.relative_port,
    }
}

/// RESERVATION CONFLICT: a status without sense data (SAM-5 5.3.1).
pub fn conflict_response() -> Response {
    Response {
        status: Status::ReservationConflict,
        sense: SenseBytes::EMPTY,
        data_in_len: 0,
        residual: Residual::None,
    }
}

/// What the reservation check decided about a command.
pub enum Intercept {
    /// RESERVATION CONFLICT status.
    Conflict(IoBuf),
    /// A reservation command, answered here.
    Done(Outcome, IoBuf),
    /// PREEMPT AND ABORT, answered once the aborted tasks that had `started` have ended
    /// (`TaskSet::drained`).
    DoneAfter {
        outcome: Outcome,
        buf: IoBuf,
        started: Vec<u64>,
    },
    /// Any other command: run it.
    Dispatch(IoBuf),
}

/// SPC-4 table 62 and SBC-3 table 13, by opcode so that commands added later are
/// classified without a change here: unknown commands count as writes (the safe side).
fn access(cdb: &[u8]) -> Access {
    let sa = cdb.get(1).map_or(0, |b| b & 0x1F);
    match cdb[0] {
        op::INQUIRY
        | op::REPORT_LUNS
        | op::REQUEST_SENSE
        | op::TEST_UNIT_READY
        | op::READ_CAPACITY_10
        | opc::LOG_SENSE
        | opc::MAINTENANCE_IN
        | opc::PERSISTENT_RESERVE_IN
        | opc::PERSISTENT_RESERVE_OUT
        | opc::RESERVE_6
        | opc::RESERVE_10
        | opc::RELEASE_6
        | opc::RELEASE_10
        // RECEIVE COPY RESULTS only reports on copies this nexus ran (SPC-4 table 62).
        | 0x84 => Access::Always,
        op::SERVICE_ACTION_IN_16 if sa == op::SA_READ_CAPACITY_16 => Access::Always,
        op::READ_6
        | op::READ_10
        | op::READ_12
        | op::READ_16
        | op::VERIFY_10
        | op::VERIFY_12
        | op::VERIFY_16
        | op::MODE_SENSE_6
        | op::MODE_SENSE_10
        | op::SERVICE_ACTION_IN_16
        // PRE-FETCH(10)/(16), READ DEFECT DATA(10)/(12), READ BUFFER
        | 0x34
        | 0x90
        | 0x37
        | 0xB7
        | 0x3C => Access::Read,
        _ => Access::Write,
    }
}

/// Commands another nexus may send while an SPC-2 reservation is held (SPC-2 5.5.1).
fn spc2_allowed(opcode: u8) -> bool {
    matches!(
        opcode,
        op::INQUIRY
            | op::REPORT_LUNS
            | op::REQUEST_SENSE
            | opc::RELEASE_6
            | opc::RELEASE_10
            | opc::LOG_SENSE
            | opc::MAINTENANCE_IN
    )
}

/// Runs before every command that entered the task set (after its turn came, so the
/// check sees every reservation change that precedes it).
pub fn intercept(lu: &LogicalUnit, cmd: &Command, cdb: &Cdb, mut buf: IoBuf) -> Intercept {
    lu.pr.track(&cmd.nexus);
    if lu.reservations.active() {
        let g = lu.reservations.lock();
        let raw = &cmd.cdb[..usize::from(cmd.cdb_len).clamp(1, crate::MAX_CDB_LEN)];
        let me = session(lu, cmd.nexus.id);
        if g.exclusive.is_some_and(|h| h != me) && !spc2_allowed(raw[0]) {
            return Intercept::Conflict(buf);
        }
        if g.state.conflicts(port(&cmd.nexus), access(raw)) {
            return Intercept::Conflict(buf);
        }
    }
    let none = |r: Result<Outcome, Conflict>| r.map(|o| (o, Vec::new()));
    let result = match *cdb {
        Cdb::PersistentReserveIn { action, alloc_len } => {
            Ok((pr_in(lu, action, alloc_len, &mut buf), Vec::new()))
        }
        Cdb::PersistentReserveOut {
            action,
            scope,
            pr_type,
            param_len,
        } => pr_out(lu, cmd, action, scope, pr_type, param_len, &buf),
        Cdb::Reserve => none(reserve(lu, cmd, true)),
        Cdb::Release => none(reserve(lu, cmd, false)),
        _ => return Intercept::Dispatch(buf),
    };
    match result {
        Ok((outcome, started)) if started.is_empty() => Intercept::Done(outcome, buf),
        Ok((outcome, started)) => Intercept::DoneAfter {
            outcome,
            buf,
            started,
        },
        Err(Conflict) => Intercept::Conflict(buf),
    }
}

/// A command that ends in RESERVATION CONFLICT.
struct Conflict;

/// SPC-2 RESERVE / RELEASE with the SPC-4 5.9.3 exceptions: both conflict while a
/// persistent reservation exists; RELEASE by a non-holder does nothing.
fn reserve(lu: &LogicalUnit, cmd: &Command, take: bool) -> Result<Outcome, Conflict> {
    let mut g = lu.reservations.lock();
    if g.state.res.is_some() {
        return Err(Conflict);
    }
    let me = session(lu, cmd.nexus.id);
    match (take, g.exclusive) {
        (true, Some(h)) if h != me => return Err(Conflict),
        (true, _) => g.exclusive = Some(me),
        (false, Some(h)) if h == me => g.exclusive = None,
        (false, _) => {}
    }
    Ok(Ok(Done::NO_DATA))
}

/// PERSISTENT RESERVE IN (SPC-4 6.15).
fn pr_in(lu: &LogicalUnit, action: u8, alloc_len: u32, buf: &mut IoBuf) -> Outcome {
    let g = lu.reservations.lock();
    let s = &g.state;
    buf.clear();
    buf.extend_from_slice(&s.generation.to_be_bytes());
    match action {
        // READ KEYS (6.15.2)
        0 => {
            buf.extend_from_slice(&((s.regs.len() * 8) as u32).to_be_bytes());
            for r in &s.regs {
                buf.extend_from_slice(&r.key.to_be_bytes());
            }
        }
        // READ RESERVATION (6.15.3)
        1 => match (s.res, s.holder_key()) {
            (Some(res), Some(key)) => {
                buf.extend_from_slice(&16u32.to_be_bytes());
                buf.extend_from_slice(&key.to_be_bytes());
                buf.extend_from_slice(&[0, 0, 0, 0, 0, pr::type_code(res.ty), 0, 0]);
            }
            _ => buf.extend_from_slice(&0u32.to_be_bytes()),
        },
        // REPORT CAPABILITIES (6.15.4): CRH, SIP_C, ATP_C, PTPL_C; TMV with every type.
        2 => {
            buf.clear();
            let ptpl_c = u8::from(lu.reservations.file().is_some());
            let ptpl_a = u8::from(s.aptpl);
            buf.extend_from_slice(&[0, 8, 0x10 | 0x08 | 0x04 | ptpl_c, 0x80 | ptpl_a]);
            buf.extend_from_slice(&[0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01, 0, 0]);
        }
        // READ FULL STATUS (6.15.5)
        _ => {
            buf.extend_from_slice(&[0; 4]);
            for r in &s.regs {
                let holder = s.is_holder(r);
                buf.extend_from_slice(&r.key.to_be_bytes());
                buf.extend_from_slice(&[0; 4]);
                let all_tg_pt = if r.who.target.is_none() { 0x02 } else { 0 };
                let scope_type = match (holder, s.res) {
                    (true, Some(res)) => pr::type_code(res.ty),
                    _ => 0,
                };
                buf.extend_from_slice(&[all_tg_pt | u8::from(holder), scope_type]);
                buf.extend_from_slice(&[0; 4]);
                buf.extend_from_slice(&r.rel_port.to_be_bytes());
                let len_at = buf.len();
                buf.extend_from_slice(&[0; 4]);
                pr::encode_transport_id(&r.who.initiator, buf);
                let tid_len = (buf.len() - len_at - 4) as u32;
                buf[len_at..len_at + 4].copy_from_slice(&tid_len.to_be_bytes());
            }
            let len = (buf.len() - 8) as u32;
            buf[4..8].copy_from_slice(&len.to_be_bytes());
        }
    }
    Ok(Done::data(buf.len(), alloc_len))
}

fn length_error() -> Sense {
    Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
}

/// Parses the basic parameter list (SPC-4 6.16.3) with its SPEC_I_PT TransportIDs.
fn out_params(action: u8, list: &[u8]) -> Result<OutParams, Sense> {
    if list.len() < 24 {
        return Err(length_error());
    }
    let flags = list[20];
    let spec_i_pt = flags & 0x08 != 0;
    let mut prm = OutParams {
        key: u64_at(list, 0),
        sa_key: u64_at(list, 8),
        spec_i_pt,
        all_tg_pt: flags & 0x04 != 0,
        aptpl: flags & 0x01 != 0,
        transport_ids: Vec::new(),
    };
    if !spec_i_pt {
        return if list.len() == 24 {
            Ok(prm)
        } else {
            Err(length_error())
        };
    }
    if action != pr::sa::REGISTER && action != pr::sa::REGISTER_AND_IGNORE {
        return Err(Sense::invalid_param_field(20, Some(3)));
    }
    if list.len() < 28 || 28 + u32_at(list, 24) as usize != list.len() {
        return Err(length_error());
    }
    let mut at = 28;
    while at < list.len() {
        let (name, used) = pr::decode_transport_id(&list[at..])
            .map_err(|off| Sense::invalid_param_field((at + off) as u16, None))?;
        if prm.transport_ids.len() >= pr::MAX_REGISTRATIONS {
            return Err(Sense::illegal(pr::INSUFFICIENT_REGISTRATION_RESOURCES));
        }
        prm.transport_ids.push(name);
        at += used;
    }
    Ok(prm)
}

/// Parses REGISTER AND MOVE's parameter list (SPC-4 6.16.4) and resolves the destination
/// target port from its relative port identifier among the live nexuses.
fn move_params(lu: &LogicalUnit, cmd: &Command, list: &[u8]) -> Result<MoveParams, Sense> {
    if list.len() < 24 || 24 + u32_at(list, 20) as usize > list.len() {
        return Err(length_error());
    }
    let rel_port = u16::from_be_bytes([list[18], list[19]]);
    let (initiator, _) = pr::decode_transport_id(&list[24..])
        .map_err(|off| Sense::invalid_param_field((24 + off) as u16, None))?;
    let target = if rel_port == cmd.nexus.relative_port {
        Some(cmd.nexus.target_port.clone())
    } else {
        let known = lu.pr.known.read_locked();
        known
            .values()
            .find(|n| n.relative_port == rel_port)
            .map(|n| n.target_port.clone())
    };
    let target = target.ok_or(Sense::invalid_param_field(18, None))?;
    Ok(MoveParams {
        key: u64_at(list, 0),
        sa_key: u64_at(list, 8),
        unreg: list[17] & 0x02 != 0,
        aptpl: list[17] & 0x01 != 0,
        dest: Who {
            initiator,
            target: Some(target),
        },
        dest_rel_port: rel_port,
    })
}

/// PERSISTENT RESERVE OUT (SPC-4 6.16): parse, run the state machine on a copy, make it
/// durable when APTPL asks, then publish it and its unit attentions, and abort the
/// preempted tasks of PREEMPT AND ABORT. Also returns the aborted tasks that had started,
/// which the command waits for before it answers.
fn pr_out(
    lu: &LogicalUnit,
    cmd: &Command,
    action: u8,
    scope: u8,
    pr_type: u8,
    param_len: u32,
    buf: &IoBuf,
) -> Result<(Outcome, Vec<u64>), Conflict> {
    let fail = |s: Sense| Ok((Err(s.into()), Vec::new()));
    if param_len > MAX_PR_OUT_LEN {
        return fail(length_error());
    }
    if let Err(f) = super::rw::check_data_out(cmd.expected_len, buf, u64::from(param_len)) {
        return Ok((Err(f), Vec::new()));
    }
    let list = &buf[..param_len as usize];
    let me = port(&cmd.nexus);
    let mut g = lu.reservations.lock();
    let mut next = g.state.clone();
    let fx = if action == pr::sa::REGISTER_AND_MOVE {
        let prm = match move_params(lu, cmd, list) {
            Ok(p) => p,
            Err(s) => return fail(s),
        };
        if prm.aptpl && lu.reservations.file().is_none() {
            return fail(Sense::invalid_param_field(17, Some(0)));
        }
        next.register_and_move(me, scope, pr_type, &prm)
    } else {
        let prm = match out_params(action, list) {
            Ok(p) => p,
            Err(s) => return fail(s),
        };
        let registers = matches!(action, pr::sa::REGISTER | pr::sa::REGISTER_AND_IGNORE);
        if registers && prm.aptpl && lu.reservations.file().is_none() {
            return fail(Sense::invalid_param_field(20, Some(0)));
        }
        next.out(me, action, scope, pr_type, &prm)
    };
    let fx: Effects = match fx {
        Ok(fx) => fx,
        Err(Refusal::Conflict) => return Err(Conflict),
        Err(Refusal::Check(s)) => return fail(s),
    };
    if let Some(path) = lu.reservations.file()
        && fx.changed
        && (next.aptpl || g.state.aptpl)
        && let Err(e) = pr::save(path, &next)
    {
        // Not durable, so not done: the state stays as it was (SPC-4 5.9.4).
        tracing::error!(error = %e, "cannot persist reservations");
        return fail(Sense::new(
            SenseKey::HardwareError,
            Asc::INTERNAL_TARGET_FAILURE,
        ));
    }
    g.state = next;
    drop(g);
    deliver(lu, cmd.nexus.id, &fx);
    let started = abort_preempted(lu, cmd.nexus.id, &fx.abort);
    let done = Done {
        data_in: 0,
        transfer: u64::from(param_len),
    };
    Ok((Ok(done), started))
}

/// Aborts every task on `lu` of the nexuses `victims` match, except the issuer's (SPC-4
/// 5.9.11.5, with TAS 0: see the top of this file); returns those that had started.
fn abort_preempted(lu: &LogicalUnit, issuer: u64, victims: &[Who]) -> Vec<u64> {
    if victims.is_empty() {
        return Vec::new();
    }
    let covers = |n: &Nexus| n.id != issuer && victims.iter().any(|w| w.matches(port(n)));
    lu.abort_for_other(covers).started
}

/// Posts the notices of `fx` to every live nexus they name except the issuer, through the
/// unit's events (the SCSI subscriber turns them into unit attentions).
fn deliver(lu: &LogicalUnit, issuer: u64, fx: &Effects) {
    if fx.notices.is_empty() {
        return;
    }
    let known = lu.pr.known.read_locked();
    for &(ref who, event) in &fx.notices {
        let to: Vec<Session> = known
            .values()
            .filter(|n| n.id != issuer && who.matches(port(n)))
            .map(|n| Session {
                subscriber: lu.subscriber(),
                session: n.id,
            })
            .collect();
        if !to.is_empty() {
            lu.unit().events.post(event, Audience::Only(&to));
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_abort;
