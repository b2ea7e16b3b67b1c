//! Login conversations as libiscsi (lib/login.c) and open-iscsi (usr/login.c, usr/auth.c)
//! conduct them, plus every failure status.

use super::*;
use md5::{Digest, Md5};
use proptest::prelude::*;

const IQN_I: &str = "iqn.2005-03.org.open-iscsi:host1";
const IQN_T: &str = "iqn.2024-01.org.esos:disk1";
const SECRET: &[u8] = b"initiatorsecret1";
const MUTUAL_SECRET: &[u8] = b"targetsecret1234";

#[derive(Clone)]
struct Policy {
    check: TargetCheck,
    discovery_chap: Option<ChapCredentials>,
}

impl LoginPolicy for Policy {
    fn check_target(&self, target_name: &str, _initiator: &str) -> TargetCheck {
        if target_name == IQN_T {
            self.check.clone()
        } else {
            TargetCheck::NotFound
        }
    }
    fn discovery_chap(&self) -> Option<ChapCredentials> {
        self.discovery_chap.clone()
    }
}

fn open() -> Policy {
    Policy {
        check: TargetCheck::Allowed {
            alias: Some("disk one".into()),
            chap: None,
        },
        discovery_chap: None,
    }
}

fn creds(mutual: bool) -> ChapCredentials {
    ChapCredentials {
        user: "alice".into(),
        secret: SECRET.to_vec(),
        mutual: mutual.then(|| ("esos-target".to_owned(), MUTUAL_SECRET.to_vec())),
    }
}

fn chap_policy(mutual: bool) -> Policy {
    Policy {
        check: TargetCheck::Allowed {
            alias: None,
            chap: Some(creds(mutual)),
        },
        discovery_chap: None,
    }
}

fn req(csg: u8, nsg: u8, transit: bool) -> LoginRequestFields {
    LoginRequestFields {
        transit,
        cont: false,
        csg,
        nsg,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0, 0x23, 0x45, 0, 1],
        tsih: 0,
        cid: 0,
    }
}

fn kv(pairs: &[(&str, &str)]) -> Vec<u8> {
    text::encode(pairs)
}

fn keys(data: &[u8]) -> Vec<(String, String)> {
    text::parse(data)
        .unwrap()
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect()
}

fn get(data: &[u8], key: &str) -> Option<String> {
    keys(data)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn expect_continue(step: LoginStep) -> (LoginResponseFields, Vec<u8>) {
    match step {
        LoginStep::Continue { response, data } => {
            assert_eq!((response.status_class, response.status_detail), (0, 0));
            (response, data)
        }
        other => panic!("expected Continue, got {other:?}"),
    }
}

fn expect_complete(step: LoginStep) -> (LoginResponseFields, Vec<u8>, LoginOutcome) {
    match step {
        LoginStep::Complete {
            response,
            data,
            outcome,
        } => (response, data, outcome),
        other => panic!("expected Complete, got {other:?}"),
    }
}

fn expect_fail(step: LoginStep, status: (u8, u8)) -> Vec<u8> {
    match step {
        LoginStep::Fail { response, data } => {
            assert_eq!((response.status_class, response.status_detail), status);
            assert!(!response.transit);
            data
        }
        other => panic!("expected Fail {status:?}, got {other:?}"),
    }
}

/// The operational keys libiscsi sends (lib/login.c), in its order.
fn libiscsi_opneg(digest: &str) -> Vec<(&str, &str)> {
    vec![
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("SessionType", "Normal"),
        ("HeaderDigest", digest),
        ("DataDigest", "None"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("MaxConnections", "1"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
    ]
}

/// The operational keys open-iscsi sends for a normal session (usr/login.c).
fn open_iscsi_opneg() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HeaderDigest", "CRC32C,None"),
        ("DataDigest", "CRC32C,None"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("ErrorRecoveryLevel", "0"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("MaxConnections", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("MaxOutstandingR2T", "1"),
        ("MaxRecvDataSegmentLength", "262144"),
    ]
}

/// The initiator's side of CHAP, computed independently of `chap::md5_response`.
fn initiator_chap_r(id: &str, secret: &[u8], challenge_hex: &str) -> [u8; 16] {
    let id: u8 = id.parse().unwrap();
    let hex = challenge_hex.strip_prefix("0x").unwrap();
    let challenge: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(&challenge);
    h.finalize().into()
}

fn hex_upper(bytes: &[u8]) -> String {
    let mut s = "0x".to_owned();
    for b in bytes {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

#[test]
fn libiscsi_without_chap_single_request() {
    let mut l = Login::new(TargetParams::default(), 7);
    let step = l.step(
        &req(1, 3, true),
        &kv(&libiscsi_opneg("None,CRC32C")),
        &open(),
    );
    let (resp, data, out) = expect_complete(step);
    assert_eq!((resp.transit, resp.csg, resp.nsg), (true, 1, 3));
    assert_eq!(get(&data, "TargetPortalGroupTag").as_deref(), Some("7"));
    assert_eq!(get(&data, "TargetAlias").as_deref(), Some("disk one"));
    assert_eq!(get(&data, "HeaderDigest").as_deref(), Some("None"));
    assert_eq!(
        get(&data, "MaxRecvDataSegmentLength").as_deref(),
        Some("262144")
    );
    assert_eq!(get(&data, "InitialR2T").as_deref(), Some("No"));
    assert_eq!(get(&data, "ImmediateData").as_deref(), Some("Yes"));
    assert_eq!(get(&data, "MaxBurstLength").as_deref(), Some("262144"));
    assert_eq!(get(&data, "FirstBurstLength").as_deref(), Some("262144"));
    assert_eq!(get(&data, "ErrorRecoveryLevel").as_deref(), Some("0"));
    assert_eq!(get(&data, "InitiatorName"), None);
    assert_eq!(
        out.kind,
        SessionKind::Normal {
            target_name: IQN_T.into()
        }
    );
    assert_eq!(out.initiator_name, IQN_I);
    assert_eq!(out.isid, [0x80, 0, 0x23, 0x45, 0, 1]);
    assert_eq!(out.tsih, 0);
    let p = out.params;
    assert_eq!(p.initiator_max_recv_data_segment_length, 262144);
    assert_eq!(p.target_max_recv_data_segment_length, 256 * 1024);
    assert_eq!((p.max_burst_length, p.first_burst_length), (262144, 262144));
    assert!(!p.initial_r2t && p.immediate_data && !p.header_digest && !p.data_digest);
    assert_eq!(
        (
            p.max_outstanding_r2t,
            p.default_time2retain,
            p.max_connections
        ),
        (1, 0, 1)
    );
}

#[test]
fn libiscsi_header_digest_crc32c() {
    let mut l = Login::new(TargetParams::default(), 1);
    let step = l.step(
        &req(1, 3, true),
        &kv(&libiscsi_opneg("CRC32C,None")),
        &open(),
    );
    let (_, data, out) = expect_complete(step);
    assert_eq!(get(&data, "HeaderDigest").as_deref(), Some("CRC32C"));
    assert!(out.params.header_digest && !out.params.data_digest);
}

#[test]
fn open_iscsi_without_chap() {
    let mut l = Login::new(TargetParams::default(), 2);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("InitiatorAlias", "host1"),
        ("TargetName", IQN_T),
        ("SessionType", "Normal"),
        ("AuthMethod", "None"),
    ]);
    let (resp, data) = expect_continue(l.step(&req(0, 1, true), &first, &open()));
    assert_eq!((resp.transit, resp.csg, resp.nsg), (true, 0, 1));
    assert_eq!(get(&data, "AuthMethod").as_deref(), Some("None"));
    assert_eq!(get(&data, "TargetPortalGroupTag").as_deref(), Some("2"));
    let step = l.step(&req(1, 3, true), &kv(&open_iscsi_opneg()), &open());
    let (resp, data, out) = expect_complete(step);
    assert_eq!((resp.transit, resp.csg, resp.nsg), (true, 1, 3));
    assert_eq!(
        get(&data, "TargetPortalGroupTag"),
        None,
        "only in the first response"
    );
    assert_eq!(get(&data, "HeaderDigest").as_deref(), Some("CRC32C"));
    assert_eq!(get(&data, "DataDigest").as_deref(), Some("CRC32C"));
    assert_eq!(get(&data, "MaxBurstLength").as_deref(), Some("1048576"));
    assert_eq!(
        get(&data, "MaxRecvDataSegmentLength").as_deref(),
        Some("262144")
    );
    assert_eq!(out.initiator_alias.as_deref(), Some("host1"));
    assert!(out.params.header_digest && out.params.data_digest);
    assert_eq!(out.params.max_burst_length, 1024 * 1024);
}

/// libiscsi with CHAP: AuthMethod offer, CHAP_A, CHAP_N/CHAP_R (+ mutual CHAP_I/CHAP_C),
/// then the operational stage repeating InitiatorName/TargetName/SessionType.
fn libiscsi_chap(mutual: bool) {
    let policy = chap_policy(mutual);
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("SessionType", "Normal"),
        ("AuthMethod", "CHAP,None"),
    ]);
    let (resp, data) = expect_continue(l.step(&req(0, 1, true), &first, &policy));
    assert!(!resp.transit, "no transit before authentication");
    assert_eq!(resp.csg, 0);
    assert_eq!(get(&data, "AuthMethod").as_deref(), Some("CHAP"));

    let (resp, data) = expect_continue(l.step(&req(0, 1, false), &kv(&[("CHAP_A", "5")]), &policy));
    assert!(!resp.transit);
    assert_eq!(get(&data, "CHAP_A").as_deref(), Some("5"));
    let id = get(&data, "CHAP_I").unwrap();
    let challenge = get(&data, "CHAP_C").unwrap();
    assert_eq!(challenge.len(), 2 + 2 * chap::CHALLENGE_BYTES);

    let r = initiator_chap_r(&id, SECRET, &challenge);
    let mutual_c = [0x5au8; 32];
    let r_hex = hex_upper(&r);
    let c_hex = hex_upper(&mutual_c);
    let mut third = vec![("CHAP_N", "alice"), ("CHAP_R", r_hex.as_str())];
    if mutual {
        third.push(("CHAP_I", "1"));
        third.push(("CHAP_C", c_hex.as_str()));
    }
    let (resp, data) = expect_continue(l.step(&req(0, 1, true), &kv(&third), &policy));
    assert_eq!((resp.transit, resp.csg, resp.nsg), (true, 0, 1));
    if mutual {
        assert_eq!(get(&data, "CHAP_N").as_deref(), Some("esos-target"));
        let mut h = Md5::new();
        h.update([1u8]);
        h.update(MUTUAL_SECRET);
        h.update(mutual_c);
        let expected: [u8; 16] = h.finalize().into();
        let got = chap::decode_binary(&get(&data, "CHAP_R").unwrap()).unwrap();
        assert_eq!(got, expected);
    } else {
        assert_eq!(get(&data, "CHAP_R"), None);
    }

    let step = l.step(&req(1, 3, true), &kv(&libiscsi_opneg("None")), &policy);
    let (_, _, out) = expect_complete(step);
    assert_eq!(out.initiator_name, IQN_I);
}

#[test]
fn libiscsi_one_way_chap() {
    libiscsi_chap(false);
}

#[test]
fn libiscsi_mutual_chap() {
    libiscsi_chap(true);
}

/// open-iscsi offers several algorithms and may send base64 values.
#[test]
fn open_iscsi_chap_with_algorithm_list_and_base64() {
    let policy = chap_policy(false);
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("SessionType", "Normal"),
        ("AuthMethod", "CHAP,None"),
    ]);
    expect_continue(l.step(&req(0, 1, true), &first, &policy));
    let (_, data) = expect_continue(l.step(&req(0, 1, true), &kv(&[("CHAP_A", "7,6,5")]), &policy));
    let r = initiator_chap_r(
        &get(&data, "CHAP_I").unwrap(),
        SECRET,
        &get(&data, "CHAP_C").unwrap(),
    );
    let b64 = format!("0b{}", base64(&r));
    let step = l.step(
        &req(0, 1, true),
        &kv(&[("CHAP_N", "alice"), ("CHAP_R", &b64)]),
        &policy,
    );
    let (resp, _) = expect_continue(step);
    assert!(resp.transit);
    expect_complete(l.step(&req(1, 3, true), &kv(&open_iscsi_opneg()), &policy));
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Runs a CHAP login up to the response step and returns the final step.
fn chap_exchange(
    policy: &Policy,
    third: impl FnOnce(&str, &str) -> Vec<(String, String)>,
) -> LoginStep {
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "CHAP"),
    ]);
    expect_continue(l.step(&req(0, 1, true), &first, policy));
    let (_, data) = expect_continue(l.step(&req(0, 1, false), &kv(&[("CHAP_A", "5")]), policy));
    let pairs = third(
        &get(&data, "CHAP_I").unwrap(),
        &get(&data, "CHAP_C").unwrap(),
    );
    l.step(&req(0, 1, true), &text::encode(&pairs), policy)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn chap_wrong_secret_fails() {
    let step = chap_exchange(&chap_policy(false), |i, c| {
        let r = hex_upper(&initiator_chap_r(i, b"wrong-secret", c));
        owned(&[("CHAP_N", "alice"), ("CHAP_R", &r)])
    });
    expect_fail(step, status::AUTH_FAILURE);
}

#[test]
fn chap_wrong_user_fails() {
    let step = chap_exchange(&chap_policy(false), |i, c| {
        let r = hex_upper(&initiator_chap_r(i, SECRET, c));
        owned(&[("CHAP_N", "mallory"), ("CHAP_R", &r)])
    });
    expect_fail(step, status::AUTH_FAILURE);
}

#[test]
fn chap_malformed_or_missing_response_fails() {
    let step = chap_exchange(&chap_policy(false), |_, _| {
        owned(&[("CHAP_N", "alice"), ("CHAP_R", "0xZZ")])
    });
    expect_fail(step, status::AUTH_FAILURE);
    let step = chap_exchange(&chap_policy(false), |_, _| owned(&[("CHAP_N", "alice")]));
    expect_fail(step, status::AUTH_FAILURE);
}

#[test]
fn chap_reflected_challenge_refused() {
    let step = chap_exchange(&chap_policy(true), |i, c| {
        let r = hex_upper(&initiator_chap_r(i, SECRET, c));
        owned(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &r),
            ("CHAP_I", i),
            ("CHAP_C", c),
        ])
    });
    let data = expect_fail(step, status::AUTH_FAILURE);
    assert_eq!(
        get(&data, "CHAP_R"),
        None,
        "no answer to a reflected challenge"
    );
}

#[test]
fn mutual_chap_without_mutual_credentials_fails() {
    let step = chap_exchange(&chap_policy(false), |i, c| {
        let r = hex_upper(&initiator_chap_r(i, SECRET, c));
        owned(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &r),
            ("CHAP_I", "3"),
            ("CHAP_C", "0x0102030405"),
        ])
    });
    expect_fail(step, status::AUTH_FAILURE);
}

#[test]
fn mutual_chap_half_or_bad_identifier_fails() {
    let step = chap_exchange(&chap_policy(true), |i, c| {
        let r = hex_upper(&initiator_chap_r(i, SECRET, c));
        owned(&[("CHAP_N", "alice"), ("CHAP_R", &r), ("CHAP_I", "3")])
    });
    expect_fail(step, status::AUTH_FAILURE);
    let step = chap_exchange(&chap_policy(true), |i, c| {
        let r = hex_upper(&initiator_chap_r(i, SECRET, c));
        owned(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &r),
            ("CHAP_I", "300"),
            ("CHAP_C", "0x0102"),
        ])
    });
    expect_fail(step, status::AUTH_FAILURE);
}

#[test]
fn chap_algorithm_without_md5_rejected() {
    let policy = chap_policy(false);
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "CHAP"),
    ]);
    expect_continue(l.step(&req(0, 1, true), &first, &policy));
    let data = expect_fail(
        l.step(&req(0, 1, false), &kv(&[("CHAP_A", "7,6")]), &policy),
        status::AUTH_FAILURE,
    );
    assert_eq!(get(&data, "CHAP_A").as_deref(), Some("Reject"));
}

#[test]
fn chap_keys_out_of_turn_fail() {
    let policy = chap_policy(false);
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "CHAP"),
    ]);
    expect_continue(l.step(&req(0, 1, true), &first, &policy));
    let step = l.step(
        &req(0, 1, true),
        &kv(&[("CHAP_N", "alice"), ("CHAP_R", "0x00")]),
        &policy,
    );
    expect_fail(step, status::AUTH_FAILURE);
}

#[test]
fn chap_required_but_initiator_offers_none() {
    let policy = chap_policy(false);
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "None"),
    ]);
    let data = expect_fail(
        l.step(&req(0, 1, true), &first, &policy),
        status::AUTH_FAILURE,
    );
    assert_eq!(get(&data, "AuthMethod").as_deref(), Some("Reject"));
}

#[test]
fn chap_required_but_security_stage_skipped() {
    let mut l = Login::new(TargetParams::default(), 1);
    let step = l.step(
        &req(1, 3, true),
        &kv(&libiscsi_opneg("None")),
        &chap_policy(false),
    );
    expect_fail(step, status::AUTH_FAILURE);
}

#[test]
fn chap_required_but_transit_without_auth_method() {
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[("InitiatorName", IQN_I), ("TargetName", IQN_T)]);
    expect_fail(
        l.step(&req(0, 1, true), &first, &chap_policy(false)),
        status::AUTH_FAILURE,
    );
}

#[test]
fn chap_only_offer_without_credentials_rejected() {
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "CHAP"),
    ]);
    let data = expect_fail(
        l.step(&req(0, 1, true), &first, &open()),
        status::AUTH_FAILURE,
    );
    assert_eq!(get(&data, "AuthMethod").as_deref(), Some("Reject"));
}

#[test]
fn chap_offer_with_none_accepted_without_credentials() {
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "CHAP,None"),
    ]);
    let (resp, data) = expect_continue(l.step(&req(0, 1, true), &first, &open()));
    assert!(resp.transit);
    assert_eq!(get(&data, "AuthMethod").as_deref(), Some("None"));
}

#[test]
fn security_straight_to_full_feature() {
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "None"),
    ]);
    let (resp, _, out) = expect_complete(l.step(&req(0, 3, true), &first, &open()));
    assert_eq!((resp.transit, resp.csg, resp.nsg), (true, 0, 3));
    assert_eq!(out.params, SessionParams::default());
}

#[test]
fn first_request_failures() {
    type Case = (Policy, Vec<(&'static str, &'static str)>, (u8, u8));
    let cases: Vec<Case> = vec![
        (
            open(),
            vec![("TargetName", IQN_T)],
            status::MISSING_PARAMETER,
        ),
        (
            open(),
            vec![("InitiatorName", IQN_I)],
            status::MISSING_PARAMETER,
        ),
        (
            open(),
            vec![("InitiatorName", IQN_I), ("TargetName", "iqn.x:none")],
            status::NOT_FOUND,
        ),
        (
            open(),
            vec![("InitiatorName", IQN_I), ("SessionType", "Bogus")],
            status::SESSION_TYPE_UNSUPPORTED,
        ),
        (
            open(),
            vec![("InitiatorName", ""), ("TargetName", IQN_T)],
            status::INITIATOR_ERROR,
        ),
        (
            Policy {
                check: TargetCheck::Disabled,
                discovery_chap: None,
            },
            vec![("InitiatorName", IQN_I), ("TargetName", IQN_T)],
            status::SERVICE_UNAVAILABLE,
        ),
        (
            Policy {
                check: TargetCheck::Forbidden,
                discovery_chap: None,
            },
            vec![("InitiatorName", IQN_I), ("TargetName", IQN_T)],
            status::AUTHORIZATION_FAILURE,
        ),
    ];
    for (policy, pairs, st) in cases {
        let mut l = Login::new(TargetParams::default(), 1);
        expect_fail(l.step(&req(1, 3, true), &kv(&pairs), &policy), st);
    }
}

#[test]
fn unsupported_version() {
    let mut l = Login::new(TargetParams::default(), 1);
    let mut r = req(1, 3, true);
    r.version_min = 1;
    r.version_max = 2;
    let step = l.step(&r, &kv(&libiscsi_opneg("None")), &open());
    expect_fail(step, status::UNSUPPORTED_VERSION);
}

#[test]
fn header_protocol_errors() {
    let body = kv(&libiscsi_opneg("None"));
    let mut cases = Vec::new();
    let mut r = req(1, 3, true);
    r.cont = true;
    cases.push(r);
    cases.push(req(2, 3, true));
    cases.push(req(3, 3, true));
    cases.push(req(1, 1, true));
    cases.push(req(1, 0, true));
    cases.push(req(0, 2, true));
    for r in cases {
        let mut l = Login::new(TargetParams::default(), 1);
        expect_fail(l.step(&r, &body, &open()), status::INITIATOR_ERROR);
    }
}

#[test]
fn malformed_text_is_initiator_error() {
    let mut l = Login::new(TargetParams::default(), 1);
    expect_fail(
        l.step(&req(1, 3, true), b"InitiatorName\0", &open()),
        status::INITIATOR_ERROR,
    );
    let mut l = Login::new(TargetParams::default(), 1);
    expect_fail(
        l.step(&req(1, 3, true), b"InitiatorName=a", &open()),
        status::INITIATOR_ERROR,
    );
}

#[test]
fn duplicate_key_in_one_request() {
    let mut pairs = libiscsi_opneg("None");
    pairs.push(("MaxBurstLength", "512"));
    let mut l = Login::new(TargetParams::default(), 1);
    expect_fail(
        l.step(&req(1, 3, true), &kv(&pairs), &open()),
        status::INITIATOR_ERROR,
    );
}

fn after_security_stage(l: &mut Login) {
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "None"),
    ]);
    expect_continue(l.step(&req(0, 1, true), &first, &open()));
}

#[test]
fn renegotiation_across_requests() {
    let mut l = Login::new(TargetParams::default(), 1);
    after_security_stage(&mut l);
    expect_continue(l.step(
        &req(1, 3, false),
        &kv(&[("MaxBurstLength", "4096")]),
        &open(),
    ));
    let step = l.step(
        &req(1, 3, true),
        &kv(&[("MaxBurstLength", "8192")]),
        &open(),
    );
    expect_fail(step, status::INITIATOR_ERROR);
}

#[test]
fn changed_login_key_refused_identical_tolerated() {
    let mut l = Login::new(TargetParams::default(), 1);
    after_security_stage(&mut l);
    let step = l.step(
        &req(1, 3, false),
        &kv(&[("InitiatorName", IQN_I), ("TargetName", IQN_T)]),
        &open(),
    );
    expect_continue(step);
    let step = l.step(
        &req(1, 3, true),
        &kv(&[("TargetName", "iqn.other:t")]),
        &open(),
    );
    expect_fail(step, status::INITIATOR_ERROR);
}

#[test]
fn target_only_and_security_keys_in_wrong_place() {
    let mut l = Login::new(TargetParams::default(), 1);
    let mut pairs = libiscsi_opneg("None");
    pairs.push(("TargetPortalGroupTag", "1"));
    expect_fail(
        l.step(&req(1, 3, true), &kv(&pairs), &open()),
        status::INITIATOR_ERROR,
    );
    let mut l = Login::new(TargetParams::default(), 1);
    after_security_stage(&mut l);
    let step = l.step(&req(1, 3, true), &kv(&[("CHAP_A", "5")]), &open());
    expect_fail(step, status::INITIATOR_ERROR);
}

#[test]
fn invalid_declarative_value() {
    let mut l = Login::new(TargetParams::default(), 1);
    let mut pairs = libiscsi_opneg("None");
    pairs.retain(|(k, _)| *k != "MaxRecvDataSegmentLength");
    pairs.push(("MaxRecvDataSegmentLength", "16"));
    expect_fail(
        l.step(&req(1, 3, true), &kv(&pairs), &open()),
        status::INITIATOR_ERROR,
    );
}

#[test]
fn out_of_range_and_unknown_keys_answered() {
    let mut l = Login::new(TargetParams::default(), 1);
    let mut pairs = libiscsi_opneg("None");
    pairs.retain(|(k, _)| *k != "MaxConnections");
    pairs.push(("MaxConnections", "0"));
    pairs.push(("X-com.example.Foo", "bar"));
    pairs.push(("iSCSIProtocolLevel", "2"));
    let (_, data, out) = expect_complete(l.step(&req(1, 3, true), &kv(&pairs), &open()));
    assert_eq!(get(&data, "MaxConnections").as_deref(), Some("Reject"));
    assert_eq!(
        get(&data, "X-com.example.Foo").as_deref(),
        Some("NotUnderstood")
    );
    assert_eq!(get(&data, "iSCSIProtocolLevel").as_deref(), Some("1"));
    assert_eq!(out.params.max_connections, 1);
}

#[test]
fn identity_change_and_stage_mismatch() {
    let mut l = Login::new(TargetParams::default(), 1);
    after_security_stage(&mut l);
    let mut r = req(1, 3, true);
    r.isid[5] = 9;
    expect_fail(l.step(&r, &[], &open()), status::INITIATOR_ERROR);

    // We answered without transit: the initiator must stay in the security stage.
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("AuthMethod", "CHAP"),
    ]);
    expect_continue(l.step(&req(0, 1, true), &first, &chap_policy(false)));
    let step = l.step(
        &req(1, 3, true),
        &kv(&libiscsi_opneg("None")),
        &chap_policy(false),
    );
    expect_fail(step, status::INITIATOR_ERROR);
}

#[test]
fn too_many_requests() {
    let mut l = Login::new(TargetParams::default(), 1);
    after_security_stage(&mut l);
    for _ in 1..MAX_LOGIN_PDUS {
        expect_continue(l.step(&req(1, 3, false), &[], &open()));
    }
    expect_fail(
        l.step(&req(1, 3, false), &[], &open()),
        status::INITIATOR_ERROR,
    );
    // Anything after the failure is refused.
    expect_fail(
        l.step(&req(1, 3, true), &[], &open()),
        status::INVALID_DURING_LOGIN,
    );
}

#[test]
fn request_after_completion_refused() {
    let mut l = Login::new(TargetParams::default(), 1);
    expect_complete(l.step(&req(1, 3, true), &kv(&libiscsi_opneg("None")), &open()));
    expect_fail(
        l.step(&req(1, 3, true), &[], &open()),
        status::INVALID_DURING_LOGIN,
    );
}

#[test]
fn continuation_accumulates_text() {
    let body = kv(&libiscsi_opneg("CRC32C"));
    let (a, rest) = body.split_at(10);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut l = Login::new(TargetParams::default(), 1);
    for piece in [a, b] {
        let mut r = req(1, 3, false);
        r.cont = true;
        let (resp, data) = expect_continue(l.step(&r, piece, &open()));
        assert!(data.is_empty());
        assert_eq!((resp.transit, resp.cont, resp.csg), (false, false, 1));
    }
    let (_, data, out) = expect_complete(l.step(&req(1, 3, true), c, &open()));
    assert_eq!(get(&data, "HeaderDigest").as_deref(), Some("CRC32C"));
    assert!(out.params.header_digest);
}

#[test]
fn continuation_is_bounded() {
    let mut l = Login::new(TargetParams::default(), 1);
    let mut r = req(1, 3, false);
    r.cont = true;
    let piece = vec![b'a'; text::MAX_TEXT_BYTES / 2 + 1];
    expect_continue(l.step(&r, &piece, &open()));
    expect_fail(l.step(&r, &piece, &open()), status::INITIATOR_ERROR);
}

#[test]
fn discovery_session() {
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("SessionType", "Discovery"),
        ("AuthMethod", "None"),
    ]);
    let (_, data) = expect_continue(l.step(&req(0, 1, true), &first, &open()));
    assert_eq!(get(&data, "TargetPortalGroupTag"), None);
    let ops = kv(&[
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxBurstLength", "262144"),
        ("MaxRecvDataSegmentLength", "32768"),
    ]);
    let (_, data, out) = expect_complete(l.step(&req(1, 3, true), &ops, &open()));
    assert_eq!(get(&data, "MaxBurstLength").as_deref(), Some("Irrelevant"));
    assert_eq!(out.kind, SessionKind::Discovery);
    assert_eq!(out.params.initiator_max_recv_data_segment_length, 32768);
}

#[test]
fn discovery_chap_required() {
    let policy = Policy {
        check: TargetCheck::NotFound,
        discovery_chap: Some(creds(false)),
    };
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[("InitiatorName", IQN_I), ("SessionType", "Discovery")]);
    expect_fail(
        l.step(&req(1, 3, true), &first, &policy),
        status::AUTH_FAILURE,
    );
    let mut l = Login::new(TargetParams::default(), 1);
    let first = kv(&[
        ("InitiatorName", IQN_I),
        ("SessionType", "Discovery"),
        ("AuthMethod", "CHAP"),
    ]);
    let (_, data) = expect_continue(l.step(&req(0, 1, true), &first, &policy));
    assert_eq!(get(&data, "AuthMethod").as_deref(), Some("CHAP"));
}

#[test]
fn target_offers_keys_initiator_omitted() {
    let ours = TargetParams {
        max_burst_length: 65536,
        first_burst_length: 16384,
        ..Default::default()
    };
    let mut l = Login::new(ours, 1);
    after_security_stage(&mut l);
    let ops = kv(&[("InitialR2T", "No"), ("ImmediateData", "Yes")]);
    let (resp, data) = expect_continue(l.step(&req(1, 3, true), &ops, &open()));
    assert!(!resp.transit, "an offer awaits its answer");
    assert_eq!(get(&data, "MaxBurstLength").as_deref(), Some("65536"));
    assert_eq!(get(&data, "FirstBurstLength").as_deref(), Some("16384"));
    let answers = kv(&[("MaxBurstLength", "65536"), ("FirstBurstLength", "16384")]);
    let (resp, data, out) = expect_complete(l.step(&req(1, 3, true), &answers, &open()));
    assert!(resp.transit);
    assert_eq!(
        get(&data, "MaxBurstLength"),
        None,
        "answers are not answered"
    );
    assert_eq!(
        (out.params.max_burst_length, out.params.first_burst_length),
        (65536, 16384)
    );
}

#[test]
fn first_burst_irrelevant_without_unsolicited_data() {
    let mut l = Login::new(TargetParams::default(), 1);
    after_security_stage(&mut l);
    let ops = kv(&[
        ("InitialR2T", "Yes"),
        ("FirstBurstLength", "65536"),
        ("ImmediateData", "No"),
    ]);
    let (_, data, out) = expect_complete(l.step(&req(1, 3, true), &ops, &open()));
    assert_eq!(
        keys(&data)[..3],
        [
            ("InitialR2T".to_owned(), "Yes".to_owned()),
            ("FirstBurstLength".to_owned(), "Irrelevant".to_owned()),
            ("ImmediateData".to_owned(), "No".to_owned()),
        ]
    );
    assert!(out.params.initial_r2t && !out.params.immediate_data);
}

#[test]
fn credentials_debug_hides_secrets() {
    let s = format!("{:?}", creds(true));
    assert!(s.contains("alice"));
    assert!(!s.contains("initiatorsecret") && !s.contains("targetsecret"));
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("InitiatorName".to_owned()),
        Just("TargetName".to_owned()),
        Just("SessionType".to_owned()),
        Just("AuthMethod".to_owned()),
        Just("CHAP_A".to_owned()),
        Just("CHAP_N".to_owned()),
        Just("CHAP_R".to_owned()),
        Just("CHAP_I".to_owned()),
        Just("CHAP_C".to_owned()),
        Just("HeaderDigest".to_owned()),
        Just("MaxBurstLength".to_owned()),
        Just("FirstBurstLength".to_owned()),
        Just("MaxRecvDataSegmentLength".to_owned()),
        Just("InitialR2T".to_owned()),
        Just("ImmediateData".to_owned()),
        Just("DefaultTime2Wait".to_owned()),
        Just("ErrorRecoveryLevel".to_owned()),
        "[A-Za-z0-9_.-]{1,20}",
    ]
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(IQN_T.to_owned()),
        Just("Discovery".to_owned()),
        Just("CHAP,None".to_owned()),
        Just("5".to_owned()),
        Just("0x00112233".to_owned()),
        Just("Yes".to_owned()),
        "[0-9]{1,12}",
        "[ -~]{0,30}",
    ]
}

fn arb_request() -> impl Strategy<Value = LoginRequestFields> {
    (any::<bool>(), any::<bool>(), 0u8..4, 0u8..4, 0u8..2).prop_map(|(t, c, csg, nsg, vmin)| {
        let mut r = req(csg, nsg, t);
        r.cont = c;
        r.version_min = vmin;
        r
    })
}

proptest! {
    #[test]
    fn negotiation_never_panics(
        steps in proptest::collection::vec(
            (arb_request(), proptest::collection::vec((arb_key(), arb_value()), 0..12)),
            1..6,
        ),
        chap in any::<bool>(),
    ) {
        let policy = if chap { chap_policy(true) } else { open() };
        let mut l = Login::new(TargetParams::default(), 1);
        for (r, pairs) in steps {
            let step = l.step(&r, &text::encode(&pairs), &policy);
            let data = match &step {
                LoginStep::Continue { data, .. } | LoginStep::Complete { data, .. }
                | LoginStep::Fail { data, .. } => data,
            };
            // Whatever we answer is itself well-formed text.
            prop_assert!(text::parse(data).is_ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), r in arb_request()) {
        let mut l = Login::new(TargetParams::default(), 1);
        let _ = l.step(&r, &data, &open());
    }
}
