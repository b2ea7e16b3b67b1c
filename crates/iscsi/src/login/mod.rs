//! Login phase state machine (RFC 7143 6, 13): security negotiation (None, CHAP) and
//! operational negotiation. No I/O: the runtime feeds it login requests and sends what it
//! answers. (Interface; the implementation fills it in.)

pub mod chap;

use crate::params::{SessionParams, TargetParams};

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: Vec<u8>,
    /// Mutual CHAP: the name and secret the target answers the initiator's challenge with.
    pub mutual: Option<(String, Vec<u8>)>,
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
    Allowed { alias: Option<String>, chap: Option<ChapCredentials> },
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
    Continue { response: LoginResponseFields, data: Vec<u8> },
    /// Send the response (Transit to FullFeature, status 0) and enter full feature phase.
    /// The runtime fills in TSIH (it allocates it) before sending.
    Complete { response: LoginResponseFields, data: Vec<u8>, outcome: LoginOutcome },
    /// Send the response (a non-zero status) and close the connection.
    Fail { response: LoginResponseFields, data: Vec<u8> },
}

/// One connection's login negotiation.
#[derive(Debug)]
pub struct Login {
    _private: (),
}

impl Login {
    /// `portal_group_tag` is returned as TargetPortalGroupTag on normal sessions.
    pub fn new(ours: TargetParams, portal_group_tag: u16) -> Login {
        let _ = (ours, portal_group_tag);
        unimplemented!()
    }

    /// Handles one Login Request (header fields plus its complete data segment).
    pub fn step(
        &mut self,
        req: &LoginRequestFields,
        data: &[u8],
        policy: &dyn LoginPolicy,
    ) -> LoginStep {
        let _ = (req, data, policy);
        unimplemented!()
    }
}
