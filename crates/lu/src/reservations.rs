//! Persistent reservations as pure state, for every protocol: registrations, the
//! reservation, the service actions (register, reserve, release, clear, preempt, move),
//! the access rules that decide a conflict, and the APTPL state file. SCSI (SPC-4 5.9)
//! and NVMe (NVM Express base 8.19) define the same model; their command parsing, wire
//! codes and status values stay in their front-ends, which map [`ReservationType`] and
//! [`PrError`] to their own codes.
//!
//! Registrants are named by a transport-neutral initiator identity ([`Port`], [`Who`]):
//!
//! - iSCSI: initiator port `iqn…,i,0x<ISID>` and target port `iqn…,t,0x<TPGT>` with its
//!   relative port; a bare initiator name (TransportID format 0) stands for every port of
//!   that initiator;
//! - NVMe (to come): `<host NQN>,h,0x<host identifier>` as the initiator, the subsystem
//!   port as the target, and registrations with `target: None`, since an NVMe
//!   registration belongs to the host on every controller.
//!
//! No I/O happens here except in [`save`] / [`load`]; unit attentions and other notices
//! are returned as [`Effects`] for the front-end to post through [`crate::events`].

use std::fmt::Write as _;
use std::path::Path;

use crate::events::Event;
use crate::state_file::{self, StateFileError};

mod shared;

pub use shared::{Held, HeldGuard, Observer, Reservations};

/// Registrations one unit keeps; a further one is refused with
/// [`PrError::InsufficientResources`]. Each initiator port registers through each target
/// port at most once, so this is far above any real cluster.
pub const MAX_REGISTRATIONS: usize = 256;

/// Persistent reservation types, the same six in SCSI (SPC-4 6.15.3.3) and NVMe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationType {
    WriteExclusive,
    ExclusiveAccess,
    WriteExclusiveRegistrantsOnly,
    ExclusiveAccessRegistrantsOnly,
    WriteExclusiveAllRegistrants,
    ExclusiveAccessAllRegistrants,
}

impl ReservationType {
    /// Every registrant is a holder (SPC-4 5.9.10).
    pub fn all_registrants(self) -> bool {
        matches!(
            self,
            ReservationType::WriteExclusiveAllRegistrants
                | ReservationType::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants other than the holder get full access too.
    fn registrants_access(self) -> bool {
        !matches!(
            self,
            ReservationType::WriteExclusive | ReservationType::ExclusiveAccess
        )
    }

    /// Reads conflict for those without access (the "exclusive access" family).
    fn blocks_reads(self) -> bool {
        matches!(
            self,
            ReservationType::ExclusiveAccess
                | ReservationType::ExclusiveAccessRegistrantsOnly
                | ReservationType::ExclusiveAccessAllRegistrants
        )
    }

    /// The type's number in the state file: the SPC-4 code (1, 3, 5, 6, 7, 8), so files
    /// written before this crate existed still load.
    fn file_code(self) -> u8 {
        match self {
            ReservationType::WriteExclusive => 1,
            ReservationType::ExclusiveAccess => 3,
            ReservationType::WriteExclusiveRegistrantsOnly => 5,
            ReservationType::ExclusiveAccessRegistrantsOnly => 6,
            ReservationType::WriteExclusiveAllRegistrants => 7,
            ReservationType::ExclusiveAccessAllRegistrants => 8,
        }
    }

    fn from_file_code(code: u8) -> Option<ReservationType> {
        Some(match code {
            1 => ReservationType::WriteExclusive,
            3 => ReservationType::ExclusiveAccess,
            5 => ReservationType::WriteExclusiveRegistrantsOnly,
            6 => ReservationType::ExclusiveAccessRegistrantsOnly,
            7 => ReservationType::WriteExclusiveAllRegistrants,
            8 => ReservationType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }
}

/// The service actions that change reservation state (SPC-4 6.16.2; NVMe Reservation
/// Register / Acquire / Release). Register-and-move is [`PrState::move_reservation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Register,
    RegisterAndIgnore,
    Reserve,
    Release,
    Clear,
    Preempt,
    PreemptAndAbort,
}

/// The scope and type a command asks for, as far as its front-end could decode them:
/// checked only by the actions that use them, so an unused bad field is no error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    /// The scope is the whole unit (the only scope either protocol defines now).
    pub unit_scope: bool,
    /// `None`: a type code the front-end does not know.
    pub ty: Option<ReservationType>,
}

impl Requested {
    fn check(self) -> Result<ReservationType, PrError> {
        if !self.unit_scope {
            return Err(PrError::InvalidScope);
        }
        self.ty.ok_or(PrError::InvalidType)
    }
}

/// Why a service action did not do what it asked. SCSI maps [`PrError::Conflict`] to
/// RESERVATION CONFLICT and the rest to sense data; NVMe to its status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrError {
    /// Not registered, wrong key, or held by another initiator.
    #[error("reservation conflict")]
    Conflict,
    /// [`MAX_REGISTRATIONS`] reached.
    #[error("no room for another registration")]
    InsufficientResources,
    /// The holder released with another scope or type (SPC-4 5.9.11.2).
    #[error("release does not match the reservation")]
    InvalidRelease,
    #[error("scope is not the unit")]
    InvalidScope,
    #[error("unknown reservation type")]
    InvalidType,
    /// Registering on behalf of other initiators where that is not allowed.
    #[error("registration of other initiators not allowed here")]
    SpecifiedInitiatorsNotAllowed,
    /// A named initiator is already registered, or a move names its own source.
    #[error("initiator already registered")]
    AlreadyRegistered,
    /// A service-action key of 0 where one is required.
    #[error("service action key must not be zero")]
    ZeroKey,
}

/// What a command does to the medium, for the reservation access rules (SPC-4 5.9.1,
/// table 62; SBC-3 4.17, table 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Allowed whatever the reservation (INQUIRY, REPORT LUNS, PR IN/OUT, ...).
    Always,
    /// Reads or reports: conflicts only under the exclusive access types.
    Read,
    /// Everything else: conflicts under every type for nexuses without access.
    Write,
}

/// The initiator a command came from, by name (see the module doc for the forms):
/// registrations belong to names, not to sessions, so they survive logout and
/// reconnection (SPC-4 5.9.6).
#[derive(Debug, Clone, Copy)]
pub struct Port<'a> {
    /// Initiator port name, e.g. `iqn...,i,0x<ISID>`.
    pub initiator: &'a str,
    /// Target port name, e.g. `iqn...,t,0x<TPGT>`.
    pub target: &'a str,
    pub rel_port: u16,
}

/// The I_T nexuses a registration (or a unit attention) applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// A full initiator port name, or a bare name that stands for all of that
    /// initiator's ports (iSCSI TransportID format 0, SPC-4 7.6.4.6).
    pub initiator: String,
    /// The target port name; `None` for ALL_TG_PT registrations (every target port).
    pub target: Option<String>,
}

impl Who {
    pub fn matches(&self, p: Port<'_>) -> bool {
        initiator_matches(&self.initiator, p.initiator)
            && self
                .target
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case(p.target))
    }
}

/// `pattern` is the port name itself or the name part of it (before `,i,0x` for iSCSI,
/// `,h,0x` for NVMe).
fn initiator_matches(pattern: &str, port: &str) -> bool {
    let (p, q) = (pattern.as_bytes(), port.as_bytes());
    if p.eq_ignore_ascii_case(q) {
        return true;
    }
    q.len() > p.len()
        && q[..p.len()].eq_ignore_ascii_case(p)
        && q[p.len()..]
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case(b",i,0x") || s.eq_ignore_ascii_case(b",h,0x"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Stable within the state, so the holder survives removal of other registrations.
    pub id: u64,
    pub key: u64,
    pub who: Who,
    /// Relative target port identifier reported by READ FULL STATUS (0 with ALL_TG_PT).
    pub rel_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub ty: ReservationType,
    /// Registration id of the holder; `None` for the all-registrants types.
    pub holder: Option<u64>,
}

/// What a successful service action asks the unit's front-ends to do besides changing
/// state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Notices for the initiators a [`Who`] matches (never the issuing one): one of
    /// [`Event::ReservationsPreempted`], [`Event::ReservationsReleased`],
    /// [`Event::RegistrationsPreempted`].
    pub notices: Vec<(Who, Event)>,
    /// Initiators whose commands preempt-and-abort aborts (SPC-4 5.9.11.5).
    pub abort: Vec<Who>,
    /// The registrations or APTPL changed: write the state file.
    pub changed: bool,
}

/// Parameters of every service action but register-and-move (SPC-4 6.16.3, table 210).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutParams {
    pub key: u64,
    pub sa_key: u64,
    pub spec_i_pt: bool,
    pub all_tg_pt: bool,
    pub aptpl: bool,
    /// Initiators from the TransportIDs after SPEC_I_PT (patterns as in [`Who`]).
    pub transport_ids: Vec<String>,
}

/// Register-and-move parameters (SPC-4 6.16.4, table 213), the destination resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveParams {
    pub key: u64,
    pub sa_key: u64,
    pub unreg: bool,
    pub aptpl: bool,
    pub dest: Who,
    pub dest_rel_port: u16,
}

/// Persistent reservation state of one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrState {
    /// PRgeneration (SPC-4 6.15.2): bumped by every change of the registrations.
    pub generation: u32,
    pub regs: Vec<Registration>,
    pub res: Option<Reservation>,
    /// Activate persist through power loss (SPC-4 5.9.4).
    pub aptpl: bool,
    next_id: u64,
}

impl PrState {
    /// The registration of the nexus `p`, if any.
    pub fn find(&self, p: Port<'_>) -> Option<&Registration> {
        self.regs.iter().find(|r| r.who.matches(p))
    }

    /// True when `reg` holds the reservation (every registrant does for the AR types).
    pub fn is_holder(&self, reg: &Registration) -> bool {
        match self.res {
            Some(Reservation { holder: None, .. }) => true,
            Some(Reservation {
                holder: Some(id), ..
            }) => id == reg.id,
            None => false,
        }
    }

    /// The key READ RESERVATION reports: the holder's, 0 for the AR types (SPC-4 6.15.3.3).
    pub fn holder_key(&self) -> Option<u64> {
        let res = self.res?;
        Some(match res.holder {
            None => 0,
            Some(id) => self.regs.iter().find(|r| r.id == id).map_or(0, |r| r.key),
        })
    }

    /// SPC-4 5.9.1: does a command of class `access` from `p` conflict with the reservation?
    pub fn conflicts(&self, p: Port<'_>, access: Access) -> bool {
        let Some(res) = self.res else {
            return false;
        };
        if access == Access::Always {
            return false;
        }
        if let Some(reg) = self.find(p)
            && (self.is_holder(reg) || res.ty.registrants_access())
        {
            return false;
        }
        access == Access::Write || res.ty.blocks_reads()
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    fn add(&mut self, key: u64, who: Who, rel_port: u16) -> Result<(), PrError> {
        if self.regs.len() >= MAX_REGISTRATIONS {
            return Err(PrError::InsufficientResources);
        }
        self.next_id += 1;
        self.regs.push(Registration {
            id: self.next_id,
            key,
            who,
            rel_port,
        });
        Ok(())
    }

    /// Removes registration `id`; a holder's removal releases its reservation, and for
    /// the registrants-only types that tells the other registrants (SPC-4 5.9.11.2).
    fn unregister(&mut self, id: u64, fx: &mut Effects) {
        self.regs.retain(|r| r.id != id);
        match self.res {
            Some(Reservation {
                ty,
                holder: Some(h),
            }) if h == id => {
                self.res = None;
                if ty.registrants_access() {
                    self.notify_all(Event::ReservationsReleased, fx);
                }
            }
            // The AR reservation lasts while any registrant is left.
            Some(Reservation { holder: None, .. }) if self.regs.is_empty() => self.res = None,
            _ => {}
        }
    }

    fn notify_all(&self, event: Event, fx: &mut Effects) {
        for r in &self.regs {
            fx.notices.push((r.who.clone(), event));
        }
    }

    /// Runs one service action (SPC-4 5.9.7-5.9.11) for initiator `p`.
    pub fn apply(
        &mut self,
        p: Port<'_>,
        action: Action,
        req: Requested,
        prm: &OutParams,
    ) -> Result<Effects, PrError> {
        let mut fx = Effects::default();
        let me = self.find(p).cloned();
        match action {
            Action::Register | Action::RegisterAndIgnore => {
                let ignore = action == Action::RegisterAndIgnore;
                if ignore && prm.spec_i_pt {
                    return Err(PrError::SpecifiedInitiatorsNotAllowed);
                }
                match me {
                    None => {
                        if !ignore && prm.key != 0 {
                            return Err(PrError::Conflict);
                        }
                        if prm.sa_key == 0 {
                            // SPC-4 5.9.7: unregistering an unregistered nexus is a no-op.
                            return Ok(fx);
                        }
                        self.register_new(p, prm)?;
                    }
                    Some(reg) => {
                        if !ignore && prm.key != reg.key {
                            return Err(PrError::Conflict);
                        }
                        if prm.spec_i_pt {
                            return Err(PrError::SpecifiedInitiatorsNotAllowed);
                        }
                        if prm.sa_key == 0 {
                            self.unregister(reg.id, &mut fx);
                        } else if let Some(r) = self.regs.iter_mut().find(|r| r.id == reg.id) {
                            r.key = prm.sa_key;
                        }
                    }
                }
                self.aptpl = prm.aptpl;
                self.bump();
                fx.changed = true;
                Ok(fx)
            }
            Action::Reserve => {
                let reg = self.registered(me.as_ref(), prm.key)?;
                let ty = req.check()?;
                match self.res {
                    None => {
                        self.res = Some(Reservation {
                            ty,
                            holder: (!ty.all_registrants()).then_some(reg.id),
                        });
                        fx.changed = true;
                        Ok(fx)
                    }
                    // SPC-4 5.9.9: the holder reserving again with the same type is a no-op.
                    Some(res) if res.ty == ty && self.is_holder(reg) => Ok(fx),
                    Some(_) => Err(PrError::Conflict),
                }
            }
            Action::Release => {
                let reg = self.registered(me.as_ref(), prm.key)?.clone();
                let Some(res) = self.res else {
                    return Ok(fx);
                };
                if !self.is_holder(&reg) {
                    return Ok(fx);
                }
                if !req.unit_scope || req.ty != Some(res.ty) {
                    return Err(PrError::InvalidRelease);
                }
                self.res = None;
                if res.ty.registrants_access() {
                    self.notify_all(Event::ReservationsReleased, &mut fx);
                }
                fx.changed = true;
                Ok(fx)
            }
            Action::Clear => {
                self.registered(me.as_ref(), prm.key)?;
                // SPC-4 5.9.11.6: every other registrant learns RESERVATIONS PREEMPTED.
                self.notify_all(Event::ReservationsPreempted, &mut fx);
                self.regs.clear();
                self.res = None;
                self.bump();
                fx.changed = true;
                Ok(fx)
            }
            Action::Preempt | Action::PreemptAndAbort => {
                let reg = self.registered(me.as_ref(), prm.key)?.clone();
                self.preempt(&reg, req, prm.sa_key, &mut fx)?;
                if action == Action::PreemptAndAbort {
                    fx.abort = fx
                        .notices
                        .iter()
                        .filter(|(_, e)| *e == Event::RegistrationsPreempted)
                        .map(|(w, _)| w.clone())
                        .collect();
                }
                self.bump();
                fx.changed = true;
                Ok(fx)
            }
        }
    }

    /// The issuing nexus must be registered with the key it sends (SPC-4 5.9.7).
    fn registered<'a>(
        &self,
        me: Option<&'a Registration>,
        key: u64,
    ) -> Result<&'a Registration, PrError> {
        match me {
            Some(r) if r.key == key => Ok(r),
            _ => Err(PrError::Conflict),
        }
    }

    /// REGISTER from an unregistered nexus, with SPEC_I_PT and ALL_TG_PT (SPC-4 5.9.7).
    /// All or nothing: a failure leaves no registration behind.
    fn register_new(&mut self, p: Port<'_>, prm: &OutParams) -> Result<(), PrError> {
        let (before, next_id) = (self.regs.len(), self.next_id);
        let target = (!prm.all_tg_pt).then(|| p.target.to_owned());
        let rel_port = if prm.all_tg_pt { 0 } else { p.rel_port };
        let mine = Who {
            initiator: p.initiator.to_owned(),
            target: target.clone(),
        };
        let mut result = self.add(prm.sa_key, mine, rel_port);
        for name in &prm.transport_ids {
            if result.is_err() {
                break;
            }
            let who = Who {
                initiator: name.clone(),
                target: target.clone(),
            };
            let probe = Port {
                initiator: name,
                target: p.target,
                rel_port: p.rel_port,
            };
            // SPC-4 5.9.7: a TransportID naming an already registered nexus fails the whole
            // command (the issuing nexus itself included).
            if self.regs[..before].iter().any(|r| r.who.matches(probe))
                || self.regs[before..].iter().any(|r| r.who == who)
            {
                result = Err(PrError::AlreadyRegistered);
            } else {
                result = self.add(prm.sa_key, who, rel_port);
            }
        }
        if result.is_err() {
            self.regs.truncate(before);
            self.next_id = next_id;
        }
        result
    }

    /// PREEMPT (SPC-4 5.9.11.4): remove the registrations with `sa_key`, and when they
    /// include the holder, take the reservation over with the new type.
    fn preempt(
        &mut self,
        me: &Registration,
        req: Requested,
        sa_key: u64,
        fx: &mut Effects,
    ) -> Result<(), PrError> {
        let take_over = match self.res {
            None => false,
            Some(res) if res.ty.all_registrants() => sa_key == 0,
            Some(_) => self.holder_key() == Some(sa_key),
        };
        if !take_over && sa_key == 0 {
            return Err(PrError::ZeroKey);
        }
        let new_ty = if take_over { Some(req.check()?) } else { None };
        let victims: Vec<Registration> = self
            .regs
            .iter()
            .filter(|r| r.id != me.id && (r.key == sa_key || (take_over && sa_key == 0)))
            .cloned()
            .collect();
        let matched_self = me.key == sa_key;
        if victims.is_empty() && !take_over && !matched_self {
            return Err(PrError::Conflict);
        }
        self.regs.retain(|r| !victims.iter().any(|v| v.id == r.id));
        for v in &victims {
            fx.notices
                .push((v.who.clone(), Event::RegistrationsPreempted));
        }
        if let (Some(new_ty), Some(old)) = (new_ty, self.res) {
            if old.ty != new_ty {
                // The survivors' reservation changed under them (SPC-4 5.9.11.4.3).
                self.notify_all(Event::ReservationsReleased, fx);
            }
            self.res = Some(Reservation {
                ty: new_ty,
                holder: (!new_ty.all_registrants()).then_some(me.id),
            });
        }
        Ok(())
    }

    /// REGISTER AND MOVE (SPC-4 5.9.8): the holder hands its reservation to another
    /// initiator.
    pub fn move_reservation(
        &mut self,
        p: Port<'_>,
        req: Requested,
        prm: &MoveParams,
    ) -> Result<Effects, PrError> {
        let mut fx = Effects::default();
        let me = self.find(p).cloned();
        let Some(me) = me else {
            return Err(PrError::Conflict);
        };
        if me.key != prm.key {
            return Err(PrError::Conflict);
        }
        let Some(res) = self.res else {
            return Err(PrError::Conflict);
        };
        if res.ty.all_registrants() || !self.is_holder(&me) {
            return Err(PrError::Conflict);
        }
        if prm.sa_key == 0 {
            return Err(PrError::ZeroKey);
        }
        let dest = Port {
            initiator: &prm.dest.initiator,
            target: prm.dest.target.as_deref().unwrap_or(""),
            rel_port: prm.dest_rel_port,
        };
        if me.who.matches(dest) {
            return Err(PrError::AlreadyRegistered);
        }
        let ty = req.check()?;
        let dest_id = match self.find(dest).map(|r| r.id) {
            Some(id) => {
                if let Some(r) = self.regs.iter_mut().find(|r| r.id == id) {
                    r.key = prm.sa_key;
                }
                id
            }
            None => {
                self.add(prm.sa_key, prm.dest.clone(), prm.dest_rel_port)?;
                self.next_id
            }
        };
        self.res = Some(Reservation {
            ty,
            holder: Some(dest_id),
        });
        if prm.unreg {
            self.regs.retain(|r| r.id != me.id);
        }
        self.aptpl = prm.aptpl;
        self.bump();
        fx.changed = true;
        Ok(fx)
    }
}

const FILE_MAGIC: &str = "esos-pr 1";

/// Names in the state file: printable ASCII, with `%`, `*` (the ALL_TG_PT marker), space
/// and anything else escaped as `%XX`, so one line always has the same fields.
fn escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        if (0x21..0x7F).contains(&b) && b != b'%' && b != b'*' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The state file text. Only an APTPL state carries registrations: without APTPL a
/// restart must forget them (SPC-4 5.9.4).
pub fn encode_state(s: &PrState) -> String {
    let mut out = format!("{FILE_MAGIC}\naptpl {}\n", u8::from(s.aptpl));
    if !s.aptpl {
        return out;
    }
    let _ = writeln!(out, "generation {}", s.generation);
    for r in &s.regs {
        let _ = write!(out, "reg {} {:016x} {} ", r.id, r.key, r.rel_port);
        escape(&r.who.initiator, &mut out);
        out.push(' ');
        match &r.who.target {
            Some(t) => escape(t, &mut out),
            None => out.push('*'),
        }
        out.push('\n');
    }
    if let Some(res) = s.res {
        let holder = res.holder.map_or("-".to_owned(), |h| h.to_string());
        let _ = writeln!(out, "res {} {holder}", res.ty.file_code());
    }
    out
}

/// Parses [`encode_state`]'s output; every defect is reported with its line.
pub fn decode_state(text: &str, path: &str) -> Result<PrState, StateFileError> {
    let fail = |line: usize, reason: &str| StateFileError::Parse {
        path: path.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let mut s = PrState::default();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, l)) if l == FILE_MAGIC => {}
        _ => return Err(fail(1, "not an esos reservation state file")),
    }
    for (n, line) in lines {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        match f.as_slice() {
            [] => {}
            ["aptpl", v] => {
                s.aptpl = match *v {
                    "0" => false,
                    "1" => true,
                    _ => return Err(fail(n, "aptpl must be 0 or 1")),
                }
            }
            ["generation", g] => s.generation = g.parse().map_err(|_| fail(n, "bad generation"))?,
            ["reg", id, key, rel, init, target] => {
                if s.regs.len() >= MAX_REGISTRATIONS {
                    return Err(fail(n, "too many registrations"));
                }
                let id: u64 = id.parse().map_err(|_| fail(n, "bad registration id"))?;
                if id == 0 || s.regs.iter().any(|r| r.id == id) {
                    return Err(fail(n, "duplicate or zero registration id"));
                }
                let key = u64::from_str_radix(key, 16).map_err(|_| fail(n, "bad key"))?;
                let rel_port = rel.parse().map_err(|_| fail(n, "bad relative port"))?;
                let initiator = unescape(init)
                    .filter(|i| !i.is_empty())
                    .ok_or_else(|| fail(n, "bad initiator name"))?;
                let target = match *target {
                    "*" => None,
                    t => Some(unescape(t).ok_or_else(|| fail(n, "bad target port name"))?),
                };
                s.next_id = s.next_id.max(id);
                s.regs.push(Registration {
                    id,
                    key,
                    who: Who { initiator, target },
                    rel_port,
                });
            }
            ["res", ty, holder] => {
                let ty = ty
                    .parse()
                    .ok()
                    .and_then(ReservationType::from_file_code)
                    .ok_or_else(|| fail(n, "bad reservation type"))?;
                let holder = match *holder {
                    "-" => None,
                    h => Some(h.parse().map_err(|_| fail(n, "bad holder id"))?),
                };
                if ty.all_registrants() != holder.is_none() {
                    return Err(fail(n, "holder does not fit the reservation type"));
                }
                s.res = Some(Reservation { ty, holder });
            }
            _ => return Err(fail(n, "unknown line")),
        }
    }
    if let Some(Reservation {
        holder: Some(h), ..
    }) = s.res
        && !s.regs.iter().any(|r| r.id == h)
    {
        return Err(fail(0, "reservation holder is not registered"));
    }
    if !s.aptpl {
        return Ok(PrState::default());
    }
    Ok(s)
}

/// Writes `s` crash-safely: a crash leaves either the old or the new state.
pub fn save(path: &Path, s: &PrState) -> Result<(), StateFileError> {
    state_file::write(path, encode_state(s).as_bytes())
}

/// Loads the state at `path`; a missing file is an empty state.
pub fn load(path: &Path) -> Result<PrState, StateFileError> {
    match state_file::read(path)? {
        Some(text) => decode_state(&text, &path.display().to_string()),
        None => Ok(PrState::default()),
    }
}

#[cfg(test)]
mod tests;
