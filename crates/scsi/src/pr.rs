//! Persistent reservations (SPC-4 5.9) as pure state: registrations, the reservation,
//! the PERSISTENT RESERVE OUT state machine, the access rules that decide RESERVATION
//! CONFLICT, iSCSI TransportIDs (SPC-4 7.6.4.6) and the APTPL state file.
//!
//! No I/O happens here except in [`save`] / [`load`]; the commands that drive this state
//! (and deliver its unit attentions) are in `disk/pr.rs`.

use std::fmt::Write as _;
use std::path::Path;

use crate::sense::{Asc, Sense};

/// Registrations one logical unit keeps; a further one gets INSUFFICIENT REGISTRATION
/// RESOURCES (SPC-4 5.9.7). Each initiator port registers through each target port at
/// most once, so this is far above any real cluster.
pub const MAX_REGISTRATIONS: usize = 256;

/// Longest iSCSI name (RFC 7143 4.2.7.1: 223 bytes).
pub const MAX_ISCSI_NAME_LEN: usize = 223;

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

/// Persistent reservation types (SPC-4 6.15.3.3, table 201).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PrType {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

impl PrType {
    pub fn from_code(code: u8) -> Option<PrType> {
        Some(match code {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// Every registrant is a holder (SPC-4 5.9.10).
    pub fn all_registrants(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants other than the holder get full access too.
    fn registrants_access(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }

    /// Reads conflict for those without access (the "exclusive access" family).
    fn blocks_reads(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess
                | PrType::ExclusiveAccessRegistrantsOnly
                | PrType::ExclusiveAccessAllRegistrants
        )
    }
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

/// The I_T nexus a command came from, by name: registrations belong to names, not to
/// sessions, so they survive logout and reconnection (SPC-4 5.9.6).
#[derive(Debug, Clone, Copy)]
pub struct Port<'a> {
    /// `iqn...,i,0x<ISID>`.
    pub initiator: &'a str,
    /// `iqn...,t,0x<TPGT>`.
    pub target: &'a str,
    pub rel_port: u16,
}

/// The I_T nexuses a registration (or a unit attention) applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// A full initiator port name, or a bare iSCSI name that stands for all of that
    /// initiator's ports (TransportID format 0, SPC-4 7.6.4.6).
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

/// `pattern` is the port name itself or the iSCSI name part of it.
fn initiator_matches(pattern: &str, port: &str) -> bool {
    let (p, q) = (pattern.as_bytes(), port.as_bytes());
    if p.eq_ignore_ascii_case(q) {
        return true;
    }
    q.len() > p.len()
        && q[..p.len()].eq_ignore_ascii_case(p)
        && q[p.len()..]
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case(b",i,0x"))
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
    pub ty: PrType,
    /// Registration id of the holder; `None` for the all-registrants types.
    pub holder: Option<u64>,
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

/// What a successful PERSISTENT RESERVE OUT asks the logical unit to do besides
/// changing state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Unit attentions for the nexuses a [`Who`] matches (never the issuing nexus).
    pub ua: Vec<(Who, Asc)>,
    /// Nexuses whose tasks PREEMPT AND ABORT aborts (SPC-4 5.9.11.5).
    pub abort: Vec<Who>,
    /// The registrations or APTPL changed: write the state file.
    pub changed: bool,
}

/// PERSISTENT RESERVE OUT parameters of every service action but REGISTER AND MOVE
/// (SPC-4 6.16.3, table 210).
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

/// REGISTER AND MOVE parameters (SPC-4 6.16.4, table 213), the destination resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveParams {
    pub key: u64,
    pub sa_key: u64,
    pub unreg: bool,
    pub aptpl: bool,
    pub dest: Who,
    pub dest_rel_port: u16,
}

/// Persistent reservation state of one logical unit.
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

fn param_field(byte: u16, bit: Option<u8>) -> Refusal {
    Refusal::Check(Sense::invalid_param_field(byte, bit))
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

    fn add(&mut self, key: u64, who: Who, rel_port: u16) -> Result<(), Refusal> {
        if self.regs.len() >= MAX_REGISTRATIONS {
            return Err(Refusal::Check(Sense::illegal(
                INSUFFICIENT_REGISTRATION_RESOURCES,
            )));
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
                    self.ua_all(RESERVATIONS_RELEASED, fx);
                }
            }
            // The AR reservation lasts while any registrant is left.
            Some(Reservation { holder: None, .. }) if self.regs.is_empty() => self.res = None,
            _ => {}
        }
    }

    fn ua_all(&self, asc: Asc, fx: &mut Effects) {
        for r in &self.regs {
            fx.ua.push((r.who.clone(), asc));
        }
    }

    /// Runs one PERSISTENT RESERVE OUT service action other than REGISTER AND MOVE
    /// (SPC-4 5.9.7-5.9.11). `scope` and `ty` are the CDB's fields.
    pub fn out(
        &mut self,
        p: Port<'_>,
        action: u8,
        scope: u8,
        ty: u8,
        prm: &OutParams,
    ) -> Result<Effects, Refusal> {
        let mut fx = Effects::default();
        let me = self.find(p).cloned();
        match action {
            sa::REGISTER | sa::REGISTER_AND_IGNORE => {
                let ignore = action == sa::REGISTER_AND_IGNORE;
                if ignore && prm.spec_i_pt {
                    return Err(param_field(20, Some(3)));
                }
                match me {
                    None => {
                        if !ignore && prm.key != 0 {
                            return Err(Refusal::Conflict);
                        }
                        if prm.sa_key == 0 {
                            // SPC-4 5.9.7: unregistering an unregistered nexus is a no-op.
                            return Ok(fx);
                        }
                        self.register_new(p, prm)?;
                    }
                    Some(reg) => {
                        if !ignore && prm.key != reg.key {
                            return Err(Refusal::Conflict);
                        }
                        if prm.spec_i_pt {
                            return Err(param_field(20, Some(3)));
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
            sa::RESERVE => {
                let reg = self.registered(me.as_ref(), prm.key)?;
                let ty = check_scope_type(scope, ty)?;
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
                    Some(_) => Err(Refusal::Conflict),
                }
            }
            sa::RELEASE => {
                let reg = self.registered(me.as_ref(), prm.key)?.clone();
                let Some(res) = self.res else {
                    return Ok(fx);
                };
                if !self.is_holder(&reg) {
                    return Ok(fx);
                }
                if scope != 0 || res.ty as u8 != ty {
                    return Err(Refusal::Check(Sense::illegal(INVALID_RELEASE_OF_PR)));
                }
                self.res = None;
                if res.ty.registrants_access() {
                    self.ua_all(RESERVATIONS_RELEASED, &mut fx);
                }
                fx.changed = true;
                Ok(fx)
            }
            sa::CLEAR => {
                self.registered(me.as_ref(), prm.key)?;
                // SPC-4 5.9.11.6: every other registrant learns RESERVATIONS PREEMPTED.
                self.ua_all(RESERVATIONS_PREEMPTED, &mut fx);
                self.regs.clear();
                self.res = None;
                self.bump();
                fx.changed = true;
                Ok(fx)
            }
            sa::PREEMPT | sa::PREEMPT_AND_ABORT => {
                let reg = self.registered(me.as_ref(), prm.key)?.clone();
                self.preempt(&reg, scope, ty, prm.sa_key, &mut fx)?;
                if action == sa::PREEMPT_AND_ABORT {
                    fx.abort = fx
                        .ua
                        .iter()
                        .filter(|(_, a)| *a == REGISTRATIONS_PREEMPTED)
                        .map(|(w, _)| w.clone())
                        .collect();
                }
                self.bump();
                fx.changed = true;
                Ok(fx)
            }
            _ => Err(Refusal::Check(Sense::invalid_cdb_field(1, Some(4)))),
        }
    }

    /// The issuing nexus must be registered with the key it sends (SPC-4 5.9.7).
    fn registered<'a>(
        &self,
        me: Option<&'a Registration>,
        key: u64,
    ) -> Result<&'a Registration, Refusal> {
        match me {
            Some(r) if r.key == key => Ok(r),
            _ => Err(Refusal::Conflict),
        }
    }

    /// REGISTER from an unregistered nexus, with SPEC_I_PT and ALL_TG_PT (SPC-4 5.9.7).
    /// All or nothing: a failure leaves no registration behind.
    fn register_new(&mut self, p: Port<'_>, prm: &OutParams) -> Result<(), Refusal> {
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
                result = Err(param_field(24, None));
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
        scope: u8,
        ty: u8,
        sa_key: u64,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        let take_over = match self.res {
            None => false,
            Some(res) if res.ty.all_registrants() => sa_key == 0,
            Some(_) => self.holder_key() == Some(sa_key),
        };
        if !take_over && sa_key == 0 {
            return Err(param_field(8, None));
        }
        let new_ty = if take_over {
            Some(check_scope_type(scope, ty)?)
        } else {
            None
        };
        let victims: Vec<Registration> = self
            .regs
            .iter()
            .filter(|r| r.id != me.id && (r.key == sa_key || (take_over && sa_key == 0)))
            .cloned()
            .collect();
        let matched_self = me.key == sa_key;
        if victims.is_empty() && !take_over && !matched_self {
            return Err(Refusal::Conflict);
        }
        self.regs.retain(|r| !victims.iter().any(|v| v.id == r.id));
        for v in &victims {
            fx.ua.push((v.who.clone(), REGISTRATIONS_PREEMPTED));
        }
        if let (Some(new_ty), Some(old)) = (new_ty, self.res) {
            if old.ty != new_ty {
                // The survivors' reservation changed under them (SPC-4 5.9.11.4.3).
                self.ua_all(RESERVATIONS_RELEASED, fx);
            }
            self.res = Some(Reservation {
                ty: new_ty,
                holder: (!new_ty.all_registrants()).then_some(me.id),
            });
        }
        Ok(())
    }

    /// REGISTER AND MOVE (SPC-4 5.9.8): the holder hands its reservation to another nexus.
    pub fn register_and_move(
        &mut self,
        p: Port<'_>,
        scope: u8,
        ty: u8,
        prm: &MoveParams,
    ) -> Result<Effects, Refusal> {
        let mut fx = Effects::default();
        let me = self.find(p).cloned();
        let Some(me) = me else {
            return Err(Refusal::Conflict);
        };
        if me.key != prm.key {
            return Err(Refusal::Conflict);
        }
        let Some(res) = self.res else {
            return Err(Refusal::Conflict);
        };
        if res.ty.all_registrants() || !self.is_holder(&me) {
            return Err(Refusal::Conflict);
        }
        if prm.sa_key == 0 {
            return Err(param_field(8, None));
        }
        let dest = Port {
            initiator: &prm.dest.initiator,
            target: prm.dest.target.as_deref().unwrap_or(""),
            rel_port: prm.dest_rel_port,
        };
        if me.who.matches(dest) {
            return Err(param_field(24, None));
        }
        check_scope_type(scope, ty)?;
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
            ty: PrType::from_code(ty).unwrap_or(res.ty),
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

/// SPC-4 6.16.2: only LU_SCOPE exists; the type must be one we implement.
fn check_scope_type(scope: u8, ty: u8) -> Result<PrType, Refusal> {
    if scope != 0 {
        return Err(Refusal::Check(Sense::invalid_cdb_field(2, Some(7))));
    }
    PrType::from_code(ty).ok_or(Refusal::Check(Sense::invalid_cdb_field(2, Some(3))))
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
        let _ = writeln!(out, "res {} {holder}", res.ty as u8);
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
                    .and_then(PrType::from_code)
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

/// Writes `s` crash-safely: temporary file, fsync, rename, fsync of the directory, so a
/// crash leaves either the old or the new state, never a torn one.
pub fn save(path: &Path, s: &PrState) -> Result<(), StateFileError> {
    esos_lu::state_file::write(path, encode_state(s).as_bytes())
}

/// Loads the state at `path`; a missing file is an empty state.
pub fn load(path: &Path) -> Result<PrState, StateFileError> {
    match esos_lu::state_file::read(path)? {
        Some(text) => decode_state(&text, &path.display().to_string()),
        None => Ok(PrState::default()),
    }
}

#[cfg(test)]
mod tests;
