//! `[server]`: portals, session limits and iSCSI negotiation defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use esos_iscsi::params::TargetParams;
use esos_iscsi::server::{Limits, PortalConfig};

use super::{ServerPlan, Source, Validator, parse_addr, range_msg, size_value};
use crate::config::limits::{
    DATA_LENGTH_RANGE, DEFAULT_PORTAL, DEFAULT_STATE_DIR, LOGIN_TIMEOUT_MS, MAX_CMDS_PER_SESSION,
    MAX_LOGIN_CONNECTIONS, MAX_OUTSTANDING_R2T_RANGE, MAX_PORTAL_GROUP, MAX_SESSIONS,
    NOP_IN_INTERVAL_MS, NOP_IN_TIMEOUT_MS, TIME2_RANGE,
};
use crate::config::schema::{RawIscsi, RawLimits, RawServer, RawSize};

impl Validator {
    pub(super) fn server(&mut self, raw: &RawServer, source: &Source) -> ServerPlan {
        let portals = self.portals(raw);
        let limits = self.limits(&raw.limits);
        let params = self.iscsi(&raw.iscsi);
        let discovery_chap = raw
            .discovery_chap
            .as_ref()
            .and_then(|c| self.chap(c, "server.discovery_chap"));
        let data_dir = match &raw.data_dir {
            Some(d) if d.is_empty() => {
                self.err("server.data_dir", "is empty");
                PathBuf::new()
            }
            Some(d) => source.base_dir.join(d),
            None => source.base_dir.join(DEFAULT_STATE_DIR),
        };
        let log_level = raw.log_level.clone();
        if let Some(level) = &log_level
            && let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level)
        {
            self.err(
                "server.log_level",
                format!("{level:?} is not a log filter: {e}"),
            );
        }
        let metrics = raw.metrics_address.as_ref().and_then(|a| {
            a.parse::<SocketAddr>()
                .map_err(|e| {
                    self.err(
                        "server.metrics_address",
                        format!("{a:?} is not an address:port: {e}"),
                    )
                })
                .ok()
        });
        ServerPlan {
            data_dir,
            log_level,
            metrics,
            portals,
            limits,
            params,
            discovery_chap,
        }
    }

    pub(super) fn portals(&mut self, raw: &RawServer) -> Vec<PortalConfig> {
        let Some(list) = &raw.portal else {
            let addr = DEFAULT_PORTAL
                .parse()
                .expect("constant portal address parses");
            return vec![PortalConfig { addr, group_tag: 1 }];
        };
        if list.is_empty() {
            self.err(
                "server.portal",
                "is empty; omit it to listen on 0.0.0.0:3260",
            );
        }
        let mut out: Vec<PortalConfig> = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let key = format!("server.portal[{i}]");
            let addr = parse_addr(&p.address);
            let group = p.group.unwrap_or(1);
            if !(1..=MAX_PORTAL_GROUP).contains(&group) {
                self.err(
                    format!("{key}.group"),
                    format!("{group} is not in 1..={MAX_PORTAL_GROUP}"),
                );
            }
            match addr {
                Err(reason) => self.err(format!("{key}.address"), reason),
                Ok(addr) if out.iter().any(|o| o.addr == addr) => {
                    self.err(format!("{key}.address"), format!("{addr} is listed twice"))
                }
                Ok(addr) => out.push(PortalConfig {
                    addr,
                    group_tag: group.min(MAX_PORTAL_GROUP) as u16,
                }),
            }
        }
        out
    }

    pub(super) fn limits(&mut self, raw: &RawLimits) -> Limits {
        let d = Limits::default();
        let l = Limits {
            max_sessions: raw.max_sessions.unwrap_or(d.max_sessions),
            max_sessions_per_target: raw
                .max_sessions_per_target
                .unwrap_or(d.max_sessions_per_target),
            login_timeout_ms: raw.login_timeout_ms.unwrap_or(d.login_timeout_ms),
            max_cmds_per_session: raw.max_cmds_per_session.unwrap_or(d.max_cmds_per_session),
            nop_in_interval_ms: raw.nop_in_interval_ms.unwrap_or(d.nop_in_interval_ms),
            nop_in_timeout_ms: raw.nop_in_timeout_ms.unwrap_or(d.nop_in_timeout_ms),
            max_login_connections: raw.max_login_connections.unwrap_or(d.max_login_connections),
        };
        let k = "server.limits";
        let sessions_ok = (1..=MAX_SESSIONS).contains(&l.max_sessions);
        if !sessions_ok {
            self.err(
                format!("{k}.max_sessions"),
                format!("{} is not in 1..={MAX_SESSIONS}", l.max_sessions),
            );
        }
        // Compared only against a valid max_sessions, so one mistake gives one error.
        let bound = if sessions_ok {
            l.max_sessions
        } else {
            MAX_SESSIONS
        };
        if l.max_sessions_per_target == 0 || l.max_sessions_per_target > bound {
            self.err(
                format!("{k}.max_sessions_per_target"),
                format!(
                    "{} is not in 1..=max_sessions ({})",
                    l.max_sessions_per_target, l.max_sessions
                ),
            );
        }
        if !LOGIN_TIMEOUT_MS.contains(&l.login_timeout_ms) {
            self.err(
                format!("{k}.login_timeout_ms"),
                range_msg(l.login_timeout_ms, &LOGIN_TIMEOUT_MS),
            );
        }
        if !(1..=MAX_CMDS_PER_SESSION).contains(&l.max_cmds_per_session) {
            self.err(
                format!("{k}.max_cmds_per_session"),
                format!(
                    "{} is not in 1..={MAX_CMDS_PER_SESSION}",
                    l.max_cmds_per_session
                ),
            );
        }
        if l.nop_in_interval_ms != 0 && !NOP_IN_INTERVAL_MS.contains(&l.nop_in_interval_ms) {
            self.err(
                format!("{k}.nop_in_interval_ms"),
                format!(
                    "{} (0 disables pings)",
                    range_msg(l.nop_in_interval_ms, &NOP_IN_INTERVAL_MS)
                ),
            );
        }
        if !NOP_IN_TIMEOUT_MS.contains(&l.nop_in_timeout_ms) {
            self.err(
                format!("{k}.nop_in_timeout_ms"),
                range_msg(l.nop_in_timeout_ms, &NOP_IN_TIMEOUT_MS),
            );
        }
        if !(1..=MAX_LOGIN_CONNECTIONS).contains(&l.max_login_connections) {
            self.err(
                format!("{k}.max_login_connections"),
                format!(
                    "{} is not in 1..={MAX_LOGIN_CONNECTIONS}",
                    l.max_login_connections
                ),
            );
        }
        l
    }

    pub(super) fn data_length(&mut self, raw: &Option<RawSize>, key: &str, default: u32) -> u32 {
        let Some(raw) = raw else { return default };
        let key = format!("server.iscsi.{key}");
        match size_value(raw) {
            Err(e) => {
                self.err(key, e);
                default
            }
            Ok(n) if !DATA_LENGTH_RANGE.contains(&n) => {
                self.err(
                    key,
                    format!(
                        "{} (RFC 7143 13.12-13.14)",
                        range_msg(n, &DATA_LENGTH_RANGE)
                    ),
                );
                default
            }
            Ok(n) => n as u32,
        }
    }

    pub(super) fn iscsi(&mut self, raw: &RawIscsi) -> TargetParams {
        let d = TargetParams::default();
        let p = TargetParams {
            max_recv_data_segment_length: self.data_length(
                &raw.max_recv_data_segment_length,
                "max_recv_data_segment_length",
                d.max_recv_data_segment_length,
            ),
            max_burst_length: self.data_length(
                &raw.max_burst_length,
                "max_burst_length",
                d.max_burst_length,
            ),
            first_burst_length: self.data_length(
                &raw.first_burst_length,
                "first_burst_length",
                d.first_burst_length,
            ),
            max_outstanding_r2t: raw.max_outstanding_r2t.unwrap_or(d.max_outstanding_r2t),
            immediate_data: raw.immediate_data.unwrap_or(d.immediate_data),
            initial_r2t: raw.initial_r2t.unwrap_or(d.initial_r2t),
            header_digest_crc32c: raw.header_digest.unwrap_or(d.header_digest_crc32c),
            data_digest_crc32c: raw.data_digest.unwrap_or(d.data_digest_crc32c),
            default_time2wait: raw.default_time2wait.unwrap_or(d.default_time2wait),
            default_time2retain: raw.default_time2retain.unwrap_or(d.default_time2retain),
            zero_copy_reads: raw.zero_copy_reads.unwrap_or(d.zero_copy_reads),
        };
        let k = "server.iscsi";
        // RFC 7143 13.14: FirstBurstLength MUST NOT exceed MaxBurstLength.
        if p.first_burst_length > p.max_burst_length {
            self.err(
                format!("{k}.first_burst_length"),
                format!(
                    "{} exceeds max_burst_length {} (RFC 7143 13.14)",
                    p.first_burst_length, p.max_burst_length
                ),
            );
        }
        if !MAX_OUTSTANDING_R2T_RANGE.contains(&p.max_outstanding_r2t) {
            self.err(
                format!("{k}.max_outstanding_r2t"),
                format!(
                    "{} is not in 1..=65535 (RFC 7143 13.17)",
                    p.max_outstanding_r2t
                ),
            );
        }
        for (name, v) in [
            ("default_time2wait", p.default_time2wait),
            ("default_time2retain", p.default_time2retain),
        ] {
            if !TIME2_RANGE.contains(&v) {
                self.err(
                    format!("{k}.{name}"),
                    format!("{v} seconds is not in 0..=3600 (RFC 7143 13.15, 13.16)"),
                );
            }
        }
        p
    }
}
