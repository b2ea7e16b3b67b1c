//! Login phase state machine (RFC 7143 6, 13): security negotiation (None, CHAP) and
//! operational negotiation. No I/O: [`Login::step`] takes one Login Request and a
//! [`LoginPolicy`] (what the configuration allows) and returns the next [`LoginStep`]; the
//! runtime (`conn::login`) reads the requests and sends the responses. Fuzzed by
//! `fuzz/fuzz_targets/login.rs`.

pub mod chap;
pub mod negotiate;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use esos_common::limits::MAX_ISCSI_NAME_LEN;

use crate::params::{SessionParams, TargetParams};
use crate::text::{self, TextAccumulator, TextPair};
use chap::ChapChallenge;
use negotiate::KeyAction;

/// Login Request PDUs (continuations included) accepted on one connection before the
/// login fails with 02/00. A normal CHAP login takes 4; the bound stops a peer looping.
pub const MAX_LOGIN_PDUS: u32 = 32;

/// Distinct keys accepted during one login; far above the ~30 real initiators send.
pub const MAX_LOGIN_KEYS: usize = 256;

/// Longest CHAP_N we compare against a configured user name.
pub const MAX_CHAP_NAME_BYTES: usize = 255;

/// Login stages (CSG/NSG field values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    FullFeature = 3,
}

/// The header fields of a Login Request the state machine needs.
#[derive(Debug, Clone)]
pub struct LoginRequestFields {
    pub transit: bool,
    pub cont: bool,
    /// Raw CSG and NSG (2 bits each); invalid values are the state machine's to refuse.
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub cid: u16,
}

/// The header fields of the Login Response to send (the runtime adds ITT, StatSN, etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponseFields {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub status_class: u8,
    pub status_detail: u8,
}

/// CHAP credentials: the user name and secret an initiator must prove (one-way), and
/// optionally what the target proves back (mutual).
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: Vec<u8>,
    /// Mutual CHAP: the name and secret the target answers the initiator's challenge with.
    pub mutual: Option<(String, Vec<u8>)>,
}

/// Secrets are redacted: credentials end up in config dumps and logs.
impl std::fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapCredentials")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .field("mutual_user", &self.mutual.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// What the runtime's configuration says about a requested target for this initiator.
#[derive(Debug, Clone)]
pub enum TargetCheck {
    /// No such target: status 02/03 (Not found).
    NotFound,
    /// Target exists but is disabled: status 03/01 (Service unavailable).
    Disabled,
    /// Initiator is not in any group and the target has no default group: 02/02.
    Forbidden,
    /// Allowed; CHAP is required when `chap` is set.
    Allowed {
        alias: Option<String>,
        chap: Option<ChapCredentials>,
    },
}

/// The runtime's answers to the questions a login asks.
pub trait LoginPolicy {
    fn check_target(&self, target_name: &str, initiator_name: &str) -> TargetCheck;
    /// CHAP required for discovery sessions, if any.
    fn discovery_chap(&self) -> Option<ChapCredentials>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKind {
    Discovery,
    Normal { target_name: String },
}

/// Result of a successful login.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub kind: SessionKind,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    pub isid: [u8; 6],
    /// TSIH the initiator sent in its first request (0 = new session).
    pub tsih: u16,
    pub params: SessionParams,
}

/// What one login request produced.
#[derive(Debug, Clone)]
pub enum LoginStep {
    /// Send the response and wait for the next request.
    Continue {
        response: LoginResponseFields,
        data: Vec<u8>,
    },
    /// Send the response (Transit to FullFeature, status 0) and enter full feature phase.
    /// The runtime fills in TSIH (it allocates it) before sending.
    Complete {
        response: LoginResponseFields,
        data: Vec<u8>,
        outcome: LoginOutcome,
    },
    /// Send the response (a non-zero status) and close the connection.
    Fail {
        response: LoginResponseFields,
        data: Vec<u8>,
    },
}

/// Status classes and details (RFC 7143 11.13.5).
pub mod status {
    pub const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);
    pub const AUTH_FAILURE: (u8, u8) = (0x02, 0x01);
    pub const AUTHORIZATION_FAILURE: (u8, u8) = (0x02, 0x02);
    pub const NOT_FOUND: (u8, u8) = (0x02, 0x03);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (0x02, 0x05);
    pub const MISSING_PARAMETER: (u8, u8) = (0x02, 0x07);
    pub const SESSION_TYPE_UNSUPPORTED: (u8, u8) = (0x02, 0x09);
    pub const INVALID_DURING_LOGIN: (u8, u8) = (0x02, 0x0B);
    pub const SERVICE_UNAVAILABLE: (u8, u8) = (0x03, 0x01);
}

/// A reason to end the login: the status to send and optional text (e.g. `AuthMethod=Reject`).
#[derive(Debug)]
struct Failure {
    status: (u8, u8),
    data: Vec<u8>,
}

impl From<(u8, u8)> for Failure {
    fn from(status: (u8, u8)) -> Failure {
        Failure {
            status,
            data: Vec::new(),
        }
    }
}

fn fail_with(status: (u8, u8), key: &str, value: &str) -> Failure {
    let mut data = Vec::new();
    text::push_pair(&mut data, key, value);
    Failure { status, data }
}

/// Where the security negotiation stands (RFC 7143 12.1.3 exchange order).
#[derive(Debug)]
enum Auth {
    /// No AuthMethod seen yet.
    NotStarted,
    /// We chose CHAP; waiting for CHAP_A.
    AwaitAlgorithm,
    /// We sent CHAP_I/CHAP_C; waiting for CHAP_N/CHAP_R.
    AwaitResponse(ChapChallenge),
    /// The initiator is authenticated (or no authentication was required).
    Done,
}

/// Header fields that must not change between the requests of one login (RFC 7143 6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
}

/// Keys an initiator states once, in its first request. libiscsi repeats them in each
/// request of the operational stage; an identical repeat is tolerated, a change is not.
const LOGIN_KEYS: [&str; 4] = [
    "InitiatorName",
    "InitiatorAlias",
    "TargetName",
    "SessionType",
];

/// Keys the target offers when the initiator is silent about them and the RFC default
/// exceeds what we accept (RFC 7143 6.2: either side may originate).
const OFFERABLE_KEYS: [&str; 3] = ["MaxBurstLength", "FirstBurstLength", "ImmediateData"];

/// One connection's login negotiation.
#[derive(Debug)]
pub struct Login {
    ours: TargetParams,
    portal_group_tag: u16,
    /// Current stage; `None` before the first request.
    stage: Option<Stage>,
    /// Set once a Complete or Fail has been returned: later requests are refused.
    finished: bool,
    pdus: u32,
    pending_text: TextAccumulator,
    identity: Option<Identity>,
    login_keys: Vec<TextPair>,
    kind: Option<SessionKind>,
    initiator_name: String,
    initiator_alias: Option<String>,
    target_alias: Option<String>,
    /// CHAP the initiator must pass; `None` means AuthMethod=None is acceptable.
    chap: Option<ChapCredentials>,
    auth: Auth,
    /// Every key the initiator has sent, to refuse renegotiation (RFC 7143 6.2).
    seen: HashSet<String>,
    /// Keys we offered and whose answer we await; each is offered at most once.
    offered: HashSet<&'static str>,
    offered_ever: HashSet<&'static str>,
    params: SessionParams,
    sent_portal_group_tag: bool,
    declared_mrdsl: bool,
}

impl Login {
    /// `portal_group_tag` is returned as TargetPortalGroupTag on normal sessions.
    pub fn new(ours: TargetParams, portal_group_tag: u16) -> Login {
        Login {
            ours,
            portal_group_tag,
            stage: None,
            finished: false,
            pdus: 0,
            pending_text: TextAccumulator::default(),
            identity: None,
            login_keys: Vec::new(),
            kind: None,
            initiator_name: String::new(),
            initiator_alias: None,
            target_alias: None,
            chap: None,
            auth: Auth::NotStarted,
            seen: HashSet::new(),
            offered: HashSet::new(),
            offered_ever: HashSet::new(),
            params: SessionParams::default(),
            sent_portal_group_tag: false,
            declared_mrdsl: false,
        }
    }

    /// Handles one Login Request (header fields plus its data segment). A request with the
    /// C bit carries part of a segment: it is kept and answered with an empty response until
    /// the last part arrives (RFC 7143 11.12.2).
    pub fn step(
        &mut self,
        req: &LoginRequestFields,
        data: &[u8],
        policy: &dyn LoginPolicy,
    ) -> LoginStep {
        let csg = req.csg & 3;
        if self.finished {
            return self.fail(csg, status::INVALID_DURING_LOGIN.into());
        }
        match self.step_inner(req, data, policy) {
            Ok(step) => {
                if matches!(step, LoginStep::Complete { .. }) {
                    self.finished = true;
                }
                step
            }
            Err(f) => self.fail(csg, f),
        }
    }

    fn fail(&mut self, csg: u8, f: Failure) -> LoginStep {
        self.finished = true;
        let csg = if csg == 2 || csg == 3 { 0 } else { csg };
        LoginStep::Fail {
            response: LoginResponseFields {
                transit: false,
                cont: false,
                csg,
                nsg: 0,
                status_class: f.status.0,
                status_detail: f.status.1,
            },
            data: f.data,
        }
    }

    fn step_inner(
        &mut self,
        req: &LoginRequestFields,
        data: &[u8],
        policy: &dyn LoginPolicy,
    ) -> Result<LoginStep, Failure> {
        self.pdus += 1;
        if self.pdus > MAX_LOGIN_PDUS {
            return Err(status::INITIATOR_ERROR.into());
        }
        let stage = self.check_header(req)?;
        if req.cont {
            self.pending_text
                .push(data)
                .map_err(|_| status::INITIATOR_ERROR)?;
            self.stage.get_or_insert(stage);
            return Ok(LoginStep::Continue {
                response: response(stage, None),
                data: Vec::new(),
            });
        }
        let segment = self
            .pending_text
            .finish(data)
            .map_err(|_| status::INITIATOR_ERROR)?;
        let pairs = text::parse(&segment).map_err(|_| status::INITIATOR_ERROR)?;
        let pairs = self.filter_repeats(pairs)?;

        let mut out = Reply::default();
        if self.kind.is_none() {
            self.first_request(stage, &pairs, policy, &mut out)?;
        }
        let discovery = self.kind == Some(SessionKind::Discovery);
        let mut op_answered = false;
        let mut fbl_index: Option<usize> = None;
        for p in pairs
            .iter()
            .filter(|p| !LOGIN_KEYS.contains(&p.key.as_str()))
        {
            if is_security_key(&p.key) {
                if stage != Stage::Security {
                    return Err(status::INITIATOR_ERROR.into());
                }
                continue;
            }
            if negotiate::is_target_only(&p.key) {
                return Err(status::INITIATOR_ERROR.into());
            }
            let action =
                negotiate::negotiate(&p.key, &p.value, &self.ours, &mut self.params, discovery);
            op_answered = true;
            if OFFERABLE_KEYS.contains(&p.key.as_str()) && self.offered.remove(p.key.as_str()) {
                // The initiator's answer to our offer; it is not answered again.
                continue;
            }
            match action {
                KeyAction::Answer(v) => {
                    if p.key == "FirstBurstLength" {
                        fbl_index = Some(out.0.len());
                    }
                    out.push(&p.key, &v);
                }
                KeyAction::Recorded => {}
                KeyAction::Invalid => return Err(status::INITIATOR_ERROR.into()),
            }
        }
        // RFC 7143 13.14: FirstBurstLength is irrelevant with InitialR2T=Yes and
        // ImmediateData=No; the results of those two are final once this request is read.
        if let Some(at) = fbl_index
            && self.params.initial_r2t
            && !self.params.immediate_data
        {
            out.0[at].1 = "Irrelevant".to_owned();
        }

        let mut ready = true;
        if stage == Stage::Security {
            ready = self.security(req, &pairs, &mut out)?;
        }
        if (stage == Stage::Operational || op_answered) && !self.declared_mrdsl {
            // Declarative: the initiator assumes 8192 until told (RFC 7143 13.12).
            self.declared_mrdsl = true;
            self.params.target_max_recv_data_segment_length =
                self.ours.max_recv_data_segment_length;
            let v = self.ours.max_recv_data_segment_length.to_string();
            out.push("MaxRecvDataSegmentLength", &v);
        }
        if stage == Stage::Operational && req.transit && !discovery {
            ready &= !self.offer_missing_keys(&mut out);
        }
        ready &= self.offered.is_empty();

        if !(req.transit && ready) {
            self.stage = Some(stage);
            return Ok(LoginStep::Continue {
                response: response(stage, None),
                data: out.encode(),
            });
        }
        let next = if req.nsg == 3 {
            Stage::FullFeature
        } else {
            Stage::Operational
        };
        let resp = response(stage, Some(next));
        if next == Stage::Operational {
            self.stage = Some(Stage::Operational);
            return Ok(LoginStep::Continue {
                response: resp,
                data: out.encode(),
            });
        }
        Ok(LoginStep::Complete {
            response: resp,
            data: out.encode(),
            outcome: self.outcome(),
        })
    }

    /// Validates the stage fields and the per-login constants; returns the request's stage.
    fn check_header(&mut self, req: &LoginRequestFields) -> Result<Stage, Failure> {
        let stage = match req.csg {
            0 => Stage::Security,
            1 => Stage::Operational,
            _ => return Err(status::INITIATOR_ERROR.into()),
        };
        // RFC 7143 11.12.2: T and C together are a protocol error.
        if req.transit && req.cont {
            return Err(status::INITIATOR_ERROR.into());
        }
        // A transit must move forward to a defined stage (RFC 7143 6.3).
        if req.transit && !(req.nsg == 1 || req.nsg == 3) || req.transit && req.nsg <= req.csg {
            return Err(status::INITIATOR_ERROR.into());
        }
        let identity = Identity {
            isid: req.isid,
            tsih: req.tsih,
            cid: req.cid,
        };
        match (&self.identity, self.stage) {
            (None, _) => {
                // RFC 7143 11.12.4: we speak version 0; the range must include it.
                if req.version_min > 0 {
                    return Err(status::UNSUPPORTED_VERSION.into());
                }
                self.identity = Some(identity);
            }
            (Some(first), current) => {
                if *first != identity {
                    return Err(status::INITIATOR_ERROR.into());
                }
                // The stage only changes when we answered a transit.
                if current.is_some_and(|c| c != stage) {
                    return Err(status::INITIATOR_ERROR.into());
                }
            }
        }
        Ok(stage)
    }

    /// Drops identical repeats of login keys (see [`LOGIN_KEYS`]) and refuses any other key
    /// sent twice in the login (RFC 7143 6.2: renegotiation is a protocol error).
    fn filter_repeats(&mut self, pairs: Vec<TextPair>) -> Result<Vec<TextPair>, Failure> {
        let mut kept = Vec::with_capacity(pairs.len());
        let mut in_this = HashSet::new();
        for p in pairs {
            if !in_this.insert(p.key.clone()) {
                return Err(status::INITIATOR_ERROR.into());
            }
            if LOGIN_KEYS.contains(&p.key.as_str()) && self.kind.is_some() {
                match self.login_keys.iter().find(|k| k.key == p.key) {
                    Some(k) if k.value == p.value => continue,
                    _ => return Err(status::INITIATOR_ERROR.into()),
                }
            }
            let answer_to_offer = self.offered.iter().any(|k| *k == p.key);
            if !self.seen.insert(p.key.clone()) && !answer_to_offer {
                return Err(status::INITIATOR_ERROR.into());
            }
            if self.seen.len() > MAX_LOGIN_KEYS {
                return Err(status::INITIATOR_ERROR.into());
            }
            kept.push(p);
        }
        Ok(kept)
    }

    /// The leading request: who is logging in to what (RFC 7143 6.3.1, 13.4-13.6, 13.21).
    fn first_request(
        &mut self,
        stage: Stage,
        pairs: &[TextPair],
        policy: &dyn LoginPolicy,
        out: &mut Reply,
    ) -> Result<(), Failure> {
        let get = |k: &str| pairs.iter().find(|p| p.key == k).map(|p| p.value.as_str());
        let initiator = get("InitiatorName").ok_or(status::MISSING_PARAMETER)?;
        if !valid_iscsi_name(initiator) {
            return Err(status::INITIATOR_ERROR.into());
        }
        let kind = match get("SessionType").unwrap_or("Normal") {
            "Normal" => {
                let target = get("TargetName").ok_or(status::MISSING_PARAMETER)?;
                if !valid_iscsi_name(target) {
                    return Err(status::NOT_FOUND.into());
                }
                SessionKind::Normal {
                    target_name: target.to_owned(),
                }
            }
            "Discovery" => SessionKind::Discovery,
            _ => return Err(status::SESSION_TYPE_UNSUPPORTED.into()),
        };
        self.chap = match &kind {
            SessionKind::Discovery => policy.discovery_chap(),
            SessionKind::Normal { target_name } => {
                match policy.check_target(target_name, initiator) {
                    TargetCheck::NotFound => return Err(status::NOT_FOUND.into()),
                    TargetCheck::Disabled => return Err(status::SERVICE_UNAVAILABLE.into()),
                    TargetCheck::Forbidden => return Err(status::AUTHORIZATION_FAILURE.into()),
                    TargetCheck::Allowed { alias, chap } => {
                        self.target_alias = alias;
                        chap
                    }
                }
            }
        };
        // RFC 7143 6.3: an initiator may skip the security stage only if the target
        // requires no authentication.
        if stage == Stage::Operational {
            if self.chap.is_some() {
                return Err(status::AUTH_FAILURE.into());
            }
            self.auth = Auth::Done;
        }
        self.initiator_name = initiator.to_owned();
        self.initiator_alias = get("InitiatorAlias").map(str::to_owned);
        self.login_keys = pairs
            .iter()
            .filter(|p| LOGIN_KEYS.contains(&p.key.as_str()))
            .cloned()
            .collect();
        if let SessionKind::Normal { .. } = kind {
            // RFC 7143 13.9: TargetPortalGroupTag in the first response of a normal session.
            if !self.sent_portal_group_tag {
                self.sent_portal_group_tag = true;
                out.push("TargetPortalGroupTag", &self.portal_group_tag.to_string());
            }
            if let Some(alias) = &self.target_alias {
                out.push("TargetAlias", alias);
            }
        }
        self.kind = Some(kind);
        self.stage = Some(stage);
        Ok(())
    }

    /// Runs the security stage for one request; returns whether authentication is complete
    /// so the stage may be left.
    fn security(
        &mut self,
        req: &LoginRequestFields,
        pairs: &[TextPair],
        out: &mut Reply,
    ) -> Result<bool, Failure> {
        let get = |k: &str| pairs.iter().find(|p| p.key == k).map(|p| p.value.as_str());
        let auth_fail = || Failure::from(status::AUTH_FAILURE);
        // Security keys out of their turn in the exchange are a failed authentication.
        let expected: &[&str] = match self.auth {
            Auth::NotStarted => &["AuthMethod"],
            Auth::AwaitAlgorithm => &["CHAP_A"],
            Auth::AwaitResponse(_) => &["CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"],
            Auth::Done => &[],
        };
        if pairs
            .iter()
            .any(|p| is_security_key(&p.key) && !expected.contains(&p.key.as_str()))
        {
            return Err(auth_fail());
        }
        let auth = std::mem::replace(&mut self.auth, Auth::Done);
        self.auth = match auth {
            Auth::NotStarted => match get("AuthMethod") {
                Some(list) => {
                    let offers: Vec<&str> =
                        list.split(',').take(negotiate::MAX_LIST_ITEMS).collect();
                    if self.chap.is_some() {
                        if !offers.contains(&"CHAP") {
                            return Err(fail_with(status::AUTH_FAILURE, "AuthMethod", "Reject"));
                        }
                        out.push("AuthMethod", "CHAP");
                        Auth::AwaitAlgorithm
                    } else {
                        if !offers.contains(&"None") {
                            return Err(fail_with(status::AUTH_FAILURE, "AuthMethod", "Reject"));
                        }
                        out.push("AuthMethod", "None");
                        Auth::Done
                    }
                }
                // AuthMethod defaults to None (RFC 7143 13.x): acceptable only without CHAP.
                None if self.chap.is_none() => Auth::Done,
                None if req.transit => return Err(auth_fail()),
                None => Auth::NotStarted,
            },
            Auth::AwaitAlgorithm => {
                let list = get("CHAP_A").ok_or_else(auth_fail)?;
                match chap::select_algorithm(list).map_err(|_| auth_fail())? {
                    Some(alg) => {
                        let c = ChapChallenge::generate();
                        let (i, ch) = c.to_keys();
                        out.push("CHAP_A", &alg.to_string());
                        out.push("CHAP_I", &i);
                        out.push("CHAP_C", &ch);
                        Auth::AwaitResponse(c)
                    }
                    None => return Err(fail_with(status::AUTH_FAILURE, "CHAP_A", "Reject")),
                }
            }
            Auth::AwaitResponse(challenge) => {
                self.verify_chap(&challenge, &get, out)?;
                Auth::Done
            }
            Auth::Done => Auth::Done,
        };
        Ok(matches!(self.auth, Auth::Done))
    }

    fn verify_chap<'a>(
        &self,
        challenge: &ChapChallenge,
        get: &dyn Fn(&str) -> Option<&'a str>,
        out: &mut Reply,
    ) -> Result<(), Failure> {
        let auth_fail = || Failure::from(status::AUTH_FAILURE);
        let creds = self.chap.as_ref().ok_or_else(auth_fail)?;
        let name = get("CHAP_N").ok_or_else(auth_fail)?;
        let resp = get("CHAP_R").ok_or_else(auth_fail)?;
        let resp = chap::decode_binary(resp).map_err(|_| auth_fail())?;
        let name_ok = name.len() <= MAX_CHAP_NAME_BYTES
            && chap::constant_time_eq(name.as_bytes(), creds.user.as_bytes());
        let resp_ok = challenge.verify(&creds.secret, &resp);
        if !(name_ok & resp_ok) {
            tracing::info!(initiator = %self.initiator_name, "CHAP authentication failed");
            return Err(auth_fail());
        }
        // Mutual CHAP: the initiator challenges us in the same request (RFC 7143 12.1.3).
        match (get("CHAP_I"), get("CHAP_C")) {
            (None, None) => Ok(()),
            (Some(id), Some(peer_challenge)) => {
                let (mutual_user, mutual_secret) = creds.mutual.as_ref().ok_or_else(auth_fail)?;
                let id = chap::parse_identifier(id).map_err(|_| auth_fail())?;
                let peer = chap::decode_binary(peer_challenge).map_err(|_| auth_fail())?;
                if challenge.is_reflected(&peer) {
                    tracing::warn!(initiator = %self.initiator_name, "CHAP challenge reflected");
                    return Err(auth_fail());
                }
                let answer = chap::md5_response(id, mutual_secret, &peer);
                out.push("CHAP_N", mutual_user);
                out.push("CHAP_R", &chap::encode_hex(&answer));
                Ok(())
            }
            _ => Err(auth_fail()),
        }
    }

    /// Before leaving the operational stage, offers keys the initiator never mentioned
    /// whose RFC default exceeds our limits. Returns true if anything was offered.
    fn offer_missing_keys(&mut self, out: &mut Reply) -> bool {
        let defaults = SessionParams::default();
        let mut any = false;
        for key in OFFERABLE_KEYS {
            if self.seen.contains(key) || self.offered_ever.contains(key) {
                continue;
            }
            let value = match key {
                "MaxBurstLength" if self.ours.max_burst_length < defaults.max_burst_length => {
                    self.ours.max_burst_length.to_string()
                }
                "FirstBurstLength"
                    if self.ours.first_burst_length < defaults.first_burst_length
                        && (self.params.immediate_data || !self.params.initial_r2t) =>
                {
                    self.ours.first_burst_length.to_string()
                }
                "ImmediateData" if !self.ours.immediate_data && defaults.immediate_data => {
                    "No".to_owned()
                }
                _ => continue,
            };
            out.push(key, &value);
            self.offered.insert(key);
            self.offered_ever.insert(key);
            any = true;
        }
        any
    }

    fn outcome(&self) -> LoginOutcome {
        let mut params = self.params.clone();
        // RFC 7143 13.14: FirstBurstLength never exceeds MaxBurstLength.
        params.first_burst_length = params.first_burst_length.min(params.max_burst_length);
        let identity = self.identity.clone().unwrap_or(Identity {
            isid: [0; 6],
            tsih: 0,
            cid: 0,
        });
        LoginOutcome {
            kind: self.kind.clone().unwrap_or(SessionKind::Discovery),
            initiator_name: self.initiator_name.clone(),
            initiator_alias: self.initiator_alias.clone(),
            isid: identity.isid,
            tsih: identity.tsih,
            params,
        }
    }
}

/// The key=value pairs of one response, in the order they are decided.
#[derive(Debug, Default)]
struct Reply(Vec<(String, String)>);

impl Reply {
    fn push(&mut self, key: &str, value: &str) {
        self.0.push((key.to_owned(), value.to_owned()));
    }

    fn encode(&self) -> Vec<u8> {
        text::encode(&self.0)
    }
}

fn is_security_key(key: &str) -> bool {
    key == "AuthMethod" || key.starts_with("CHAP_")
}

/// iSCSI names (RFC 7143 4.2.7): non-empty, bounded, no spaces or control characters.
/// The exact iqn./eui./naa. grammar is the config layer's business; here it is only input
/// to compare.
fn valid_iscsi_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ISCSI_NAME_LEN
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A success response in `stage`; with `next`, the T bit is set towards it.
fn response(stage: Stage, next: Option<Stage>) -> LoginResponseFields {
    LoginResponseFields {
        transit: next.is_some(),
        cont: false,
        csg: stage as u8,
        nsg: next.map_or(0, |s| s as u8),
        status_class: 0,
        status_detail: 0,
    }
}
