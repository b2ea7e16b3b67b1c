//! What a text request in full feature phase is answered: SendTargets (RFC 7143 Appendix C)
//! and NotUnderstood for other keys. The PDU exchange is in [`super::text`].

use std::net::{IpAddr, SocketAddr};

use crate::shared::Shared;
use crate::text::{self, TextError, push_pair};

/// Largest text request (all Continue pieces together) we accept.
pub(crate) const MAX_TEXT_REQUEST: usize = text::MAX_TEXT_BYTES;

fn format_address(addr: SocketAddr, local: SocketAddr, tag: u16) -> String {
    // A wildcard portal is reported with the address this connection reached.
    let ip = if addr.ip().is_unspecified() {
        local.ip()
    } else {
        addr.ip()
    };
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{},{tag}", addr.port()),
        IpAddr::V6(v6) => format!("[{v6}]:{},{tag}", addr.port()),
    }
}

/// Who asks: the initiator, and for normal sessions the target it is logged in to.
pub(crate) struct Asker<'a> {
    pub initiator: &'a str,
    pub session_target: Option<&'a str>,
    pub local: SocketAddr,
}

/// Builds the response to one complete text request. Unknown keys are answered
/// NotUnderstood; nothing is renegotiated in full feature phase. A malformed request is an
/// error the caller answers with a Reject.
pub(crate) fn respond(
    shared: &Shared,
    asker: &Asker<'_>,
    request: &[u8],
) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::new();
    for pair in text::parse(request)? {
        if pair.key == "SendTargets" {
            send_targets(shared, asker, &pair.value, &mut out);
        } else {
            push_pair(&mut out, &pair.key, "NotUnderstood");
        }
    }
    Ok(out)
}

fn send_targets(shared: &Shared, asker: &Asker<'_>, value: &str, out: &mut Vec<u8>) {
    let live = shared.live();
    for t in &live.targets {
        let wanted = match (value, asker.session_target) {
            ("All", None) => true,
            ("All", Some(_)) => true,
            ("", Some(own)) => t.name.eq_ignore_ascii_case(own),
            (name, _) => t.name.eq_ignore_ascii_case(name),
        };
        // Discovery shows only what this initiator may log in to (RFC 7143 Appendix C).
        if !wanted || !t.enabled || crate::config::LiveConfig::lun_map(t, asker.initiator).is_none()
        {
            continue;
        }
        push_pair(out, "TargetName", &t.name);
        for p in &shared.portals() {
            if crate::config::target_on_portal(t, p) {
                push_pair(
                    out,
                    "TargetAddress",
                    &format_address(p.addr, asker.local, p.group_tag),
                );
            }
        }
    }
}
