//! The login state machine (crates/iscsi/src/login/): security (CHAP) and operational
//! negotiation driven by arbitrary Login Request sequences. Input: one byte choosing the
//! target's policy, then PDUs, each a 48-byte BHS followed by its data segment (the
//! DataSegmentLength bytes, or what is left).
//! Holds: no panic; every response is a well-formed text segment with a valid status; a
//! completed login has parameters within RFC 7143's bounds and our offers; a target that
//! requires CHAP is never entered without it; after Complete or Fail every request fails.
#![no_main]

use esos_iscsi::login::{
    ChapCredentials, Login, LoginPolicy, LoginRequestFields, LoginStep, SessionKind, TargetCheck,
};
use esos_iscsi::params::TargetParams;
use esos_iscsi::pdu::{self, BHS_LEN, Request};
use esos_iscsi::text;
use libfuzzer_sys::fuzz_target;

const TARGET: &str = "iqn.2024-01.org.esos:disk1";

struct Policy(u8);

fn creds(mutual: bool) -> ChapCredentials {
    ChapCredentials {
        user: "alice".into(),
        secret: b"initiatorsecret1".to_vec(),
        mutual: mutual.then(|| ("esos-target".to_owned(), b"targetsecret1234".to_vec())),
    }
}

impl Policy {
    /// The target demands CHAP from normal sessions.
    fn target_chap(&self) -> bool {
        matches!(self.0 & 7, 1 | 2)
    }
}

impl LoginPolicy for Policy {
    fn check_target(&self, target_name: &str, _initiator: &str) -> TargetCheck {
        if target_name != TARGET {
            return TargetCheck::NotFound;
        }
        match self.0 & 7 {
            0 | 6 | 7 => TargetCheck::Allowed {
                alias: Some("disk one".into()),
                chap: None,
            },
            1 => TargetCheck::Allowed {
                alias: None,
                chap: Some(creds(false)),
            },
            2 => TargetCheck::Allowed {
                alias: None,
                chap: Some(creds(true)),
            },
            3 => TargetCheck::NotFound,
            4 => TargetCheck::Disabled,
            _ => TargetCheck::Forbidden,
        }
    }
    fn discovery_chap(&self) -> Option<ChapCredentials> {
        (self.0 & 8 != 0).then(|| creds(self.0 & 16 != 0))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&policy, mut rest)) = data.split_first() else {
        return;
    };
    let policy = Policy(policy);
    let ours = TargetParams::default();
    let mut login = Login::new(ours.clone(), 1);
    let mut finished = false;
    while let Some((bhs, tail)) = rest.split_first_chunk::<BHS_LEN>() {
        let len = pdu::common(bhs).data_len.min(tail.len());
        let (seg, next) = tail.split_at(len);
        rest = next;
        let Ok(Request::Login(r)) = pdu::parse_request(bhs, &[]) else {
            continue;
        };
        let req = LoginRequestFields {
            transit: r.transit,
            cont: r.cont,
            csg: r.csg,
            nsg: r.nsg,
            version_max: r.version_max,
            version_min: r.version_min,
            isid: r.isid,
            tsih: r.tsih,
            cid: r.cid,
        };
        let step = login.step(&req, seg, &policy);
        let (resp, out) = match &step {
            LoginStep::Continue { response, data }
            | LoginStep::Complete { response, data, .. }
            | LoginStep::Fail { response, data } => (response, data),
        };
        text::parse(out).expect("our own response text is well-formed");
        assert!(resp.csg < 4 && resp.nsg < 4 && resp.status_class <= 3);
        match &step {
            LoginStep::Continue { response, .. } => {
                assert!(!finished, "a finished login continued");
                assert_eq!(response.status_class, 0);
            }
            LoginStep::Fail { response, .. } => {
                assert_ne!(response.status_class, 0);
                assert!(!response.transit);
                finished = true;
            }
            LoginStep::Complete {
                response, outcome, ..
            } => {
                assert!(!finished, "a finished login completed again");
                assert_eq!(response.status_class, 0);
                assert!(response.transit && response.nsg == 3);
                if let SessionKind::Normal { target_name } = &outcome.kind {
                    assert_eq!(target_name, TARGET);
                    assert!(!policy.target_chap(), "CHAP target entered without CHAP");
                } else {
                    assert!(
                        policy.discovery_chap().is_none(),
                        "discovery entered without CHAP"
                    );
                }
                let p = &outcome.params;
                let data_range = 512..=(1u32 << 24) - 1;
                assert!(data_range.contains(&p.initiator_max_recv_data_segment_length));
                assert!(data_range.contains(&p.max_burst_length));
                assert!(p.max_burst_length <= ours.max_burst_length);
                assert!(p.first_burst_length <= p.max_burst_length);
                assert!(p.first_burst_length <= ours.first_burst_length);
                assert!((1..=ours.max_outstanding_r2t).contains(&p.max_outstanding_r2t));
                assert!(p.immediate_data <= ours.immediate_data);
                assert!(p.initial_r2t >= ours.initial_r2t);
                assert_eq!(p.error_recovery_level, 0);
                assert_eq!(p.max_connections, 1);
                assert!(p.default_time2wait >= ours.default_time2wait);
                assert!(p.default_time2wait <= 3600);
                assert!(p.default_time2retain <= ours.default_time2retain);
                finished = true;
            }
        }
    }
});
