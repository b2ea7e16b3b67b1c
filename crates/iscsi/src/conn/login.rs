//! The login phase on the wire (RFC 7143 6): feeds Login Requests to the
//! [`crate::login::Login`] state machine and registers the session when it completes.

use std::sync::Arc;

use crate::config::PortalConfig;
use crate::login::{
    Login, LoginOutcome, LoginRequestFields, LoginResponseFields, LoginStep, SessionKind,
};
use crate::pdu::{self, BHS_LEN, LoginResponse, Request, SeqNums};
use crate::session::{RegisterError, SessionGuard, SessionKey};
use crate::shared::Shared;

use super::{ConnError, PduReader, PduWriter};

/// Largest data segment accepted in one Login Request (the initiator may send at most
/// 8192 bytes before MaxRecvDataSegmentLength is negotiated; we allow some slack).
pub(crate) const MAX_LOGIN_SEGMENT: usize = 64 * 1024;

/// Status classes and details used by the runtime itself (RFC 7143 11.13.5).
const STATUS_INITIATOR_ERROR: u8 = 0x02;
const DETAIL_INVALID_DURING_LOGIN: u8 = 0x0b;
const DETAIL_SESSION_NOT_FOUND: u8 = 0x0a;
const DETAIL_TOO_MANY_CONNECTIONS: u8 = 0x06;
const STATUS_TARGET_ERROR: u8 = 0x03;
const DETAIL_OUT_OF_RESOURCES: u8 = 0x02;

/// A session that completed login.
pub(crate) struct LoggedIn {
    pub outcome: LoginOutcome,
    pub guard: SessionGuard,
    /// StatSN of the next response.
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
}

fn fail_fields(csg: u8, class: u8, detail: u8) -> LoginResponseFields {
    LoginResponseFields {
        transit: false,
        cont: false,
        csg,
        nsg: 0,
        status_class: class,
        status_detail: detail,
    }
}

/// Runs the login phase. `Ok(None)` means the login failed and its response was sent.
pub(crate) async fn login_phase(
    shared: &Arc<Shared>,
    rd: &mut PduReader,
    wr: &mut PduWriter,
    portal: &PortalConfig,
) -> Result<Option<LoggedIn>, ConnError> {
    let mut login = Login::new(shared.config.params.clone(), portal.group_tag);
    let mut stat_sn: u32 = 1;
    let mut exp_cmd_sn: Option<u32> = None;
    let window = shared.config.limits.max_cmds_per_session.max(1);
    let mut data = Vec::new();
    loop {
        let hdr = rd.read_header().await?;
        let len = hdr.common.data_len;
        if len > MAX_LOGIN_SEGMENT {
            return Err(ConnError::SegmentTooLong {
                len,
                max: MAX_LOGIN_SEGMENT,
            });
        }
        data.clear();
        data.resize(len, 0);
        rd.read_data(&mut data).await?;
        let req = match pdu::parse_request(&hdr.bhs, rd.ahs()) {
            Ok(Request::Login(l)) => l,
            _ => {
                // Anything but a Login Request before full feature phase ends the login.
                let f = fail_fields(0, STATUS_INITIATOR_ERROR, DETAIL_INVALID_DURING_LOGIN);
                let head = LoginResponse {
                    fields: f,
                    isid: [0; 6],
                    tsih: 0,
                    itt: pdu::RESERVED_TAG,
                    seq: login_seq(stat_sn, 0, window),
                    data_len: 0,
                };
                send_response(wr, head, &[]).await?;
                return Ok(None);
            }
        };
        let ecs = *exp_cmd_sn.get_or_insert(req.cmd_sn);
        // Every response to this request echoes its ISID and ITT.
        let reply = |fields: LoginResponseFields, tsih: u16, stat_sn: u32| LoginResponse {
            fields,
            isid: req.isid,
            tsih,
            itt: req.itt,
            seq: login_seq(stat_sn, ecs, window),
            data_len: 0,
        };
        let fields = LoginRequestFields {
            transit: req.transit,
            cont: req.cont,
            csg: req.csg,
            nsg: req.nsg,
            version_max: req.version_max,
            version_min: req.version_min,
            isid: req.isid,
            tsih: req.tsih,
            cid: req.cid,
        };
        let policy = crate::shared::Policy { shared, portal };
        match login.step(&fields, &data, &policy) {
            LoginStep::Continue {
                response,
                data: out,
            } => {
                send_response(wr, reply(response, req.tsih, stat_sn), &out).await?;
                stat_sn = stat_sn.wrapping_add(1);
            }
            LoginStep::Fail {
                response,
                data: out,
            } => {
                tracing::info!(
                    class = response.status_class,
                    detail = response.status_detail,
                    "login refused"
                );
                send_response(wr, reply(response, req.tsih, stat_sn), &out).await?;
                return Ok(None);
            }
            LoginStep::Complete {
                response,
                data: out,
                outcome,
            } => {
                let registered = register(shared, &outcome).await;
                let guard = match registered {
                    Ok(g) => g,
                    Err((class, detail)) => {
                        let f = fail_fields(response.csg, class, detail);
                        send_response(wr, reply(f, req.tsih, stat_sn), &[]).await?;
                        return Ok(None);
                    }
                };
                send_response(wr, reply(response, guard.tsih, stat_sn), &out).await?;
                tracing::info!(
                    initiator = %outcome.initiator_name,
                    kind = ?outcome.kind,
                    tsih = guard.tsih,
                    "login complete"
                );
                return Ok(Some(LoggedIn {
                    outcome,
                    guard,
                    stat_sn: stat_sn.wrapping_add(1),
                    exp_cmd_sn: ecs,
                }));
            }
        }
    }
}

async fn register(shared: &Arc<Shared>, outcome: &LoginOutcome) -> Result<SessionGuard, (u8, u8)> {
    if outcome.tsih != 0 {
        // One connection per session (MaxConnections=1, ERL 0): a TSIH names an existing
        // session we cannot add to, or one that does not exist.
        return Err(if shared.registry.exists(outcome.tsih) {
            (STATUS_INITIATOR_ERROR, DETAIL_TOO_MANY_CONNECTIONS)
        } else {
            (STATUS_INITIATOR_ERROR, DETAIL_SESSION_NOT_FOUND)
        });
    }
    let target = match &outcome.kind {
        SessionKind::Discovery => None,
        SessionKind::Normal { target_name } => Some(target_name.as_str()),
    };
    let key = SessionKey::new(&outcome.initiator_name, outcome.isid, target);
    shared.registry.register(key).await.map_err(|e| {
        tracing::warn!(error = %e, "session refused");
        match e {
            RegisterError::TooManySessions
            | RegisterError::TooManySessionsForTarget
            | RegisterError::ReinstateTimeout => (STATUS_TARGET_ERROR, DETAIL_OUT_OF_RESOURCES),
        }
    })
}

/// Sends one Login Response with `data` as its data segment, and flushes.
async fn send_response(
    wr: &mut PduWriter,
    head: LoginResponse,
    data: &[u8],
) -> Result<(), ConnError> {
    let mut h = [0u8; BHS_LEN];
    let head = LoginResponse {
        data_len: data.len(),
        ..head
    };
    pdu::encode_login_response(&mut h, &head);
    wr.send(&h, data).await?;
    wr.flush().await?;
    Ok(())
}

/// Sequence numbers of a Login Response: the CmdSN window opens at `exp_cmd_sn`.
fn login_seq(stat_sn: u32, exp_cmd_sn: u32, window: u32) -> SeqNums {
    SeqNums {
        stat_sn,
        exp_cmd_sn,
        max_cmd_sn: exp_cmd_sn.wrapping_add(window - 1),
    }
}
