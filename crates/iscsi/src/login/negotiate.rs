//! Operational key negotiation (RFC 7143 6.2 and 13): value syntax, ranges and the result
//! function of every key a target answers. Pure functions over the session parameters.

use crate::params::{SessionParams, TargetParams};

/// Largest value of MaxRecvDataSegmentLength, MaxBurstLength and FirstBurstLength
/// (2^24 - 1, RFC 7143 13.12-13.14).
pub const MAX_DATA_LENGTH: u64 = (1 << 24) - 1;
/// Smallest value of the same three keys.
pub const MIN_DATA_LENGTH: u64 = 512;
/// Upper bound of DefaultTime2Wait / DefaultTime2Retain (RFC 7143 13.15, 13.16).
pub const MAX_TIME2_SECONDS: u64 = 3600;
/// The iSCSIProtocolLevel we implement: 1 = RFC 7143 (RFC 7144 13.25 result: minimum).
pub const OUR_PROTOCOL_LEVEL: u64 = 1;
/// Highest iSCSIProtocolLevel value an initiator may send (RFC 7144: 0..31).
pub const MAX_PROTOCOL_LEVEL: u64 = 31;
/// We run one connection per session and error recovery level 0.
pub const OUR_MAX_CONNECTIONS: u64 = 1;
pub const OUR_ERROR_RECOVERY_LEVEL: u8 = 0;
/// Most items we look at in a list-valued key (HeaderDigest, TaskReporting, …).
pub const MAX_LIST_ITEMS: usize = 16;

/// What to do with one received key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Reply `key=value`.
    Answer(String),
    /// A declaration, recorded; nothing to reply.
    Recorded,
    /// A value that is not allowed for a key that cannot be answered with Reject:
    /// the login fails with 02/00 (RFC 7143 6.2.1).
    Invalid,
}

/// Keys that only a target sends; an initiator sending one commits a protocol error.
pub fn is_target_only(key: &str) -> bool {
    matches!(
        key,
        "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag"
    )
}

/// Keys irrelevant in a discovery session (RFC 7143 13: "Irrelevant when:
/// SessionType=Discovery"; RFC 7144 for TaskReporting and iSCSIProtocolLevel).
fn irrelevant_in_discovery(key: &str) -> bool {
    matches!(
        key,
        "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "TaskReporting"
            | "iSCSIProtocolLevel"
    )
}

/// RFC 7143 6.1 numerical values: decimal, or `0x` hex. Anything else is `None`.
pub fn parse_number(v: &str) -> Option<u64> {
    let (digits, radix, max_digits) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => (hex, 16, 16),
        None => (v, 10, 19),
    };
    if digits.is_empty() || digits.len() > max_digits || !digits.chars().all(|c| c.is_digit(radix))
    {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

fn reject() -> KeyAction {
    KeyAction::Answer("Reject".to_owned())
}

/// A number within `lo..=hi`, or `None` (answered with Reject).
fn ranged(v: &str, lo: u64, hi: u64) -> Option<u64> {
    parse_number(v).filter(|n| (lo..=hi).contains(n))
}

/// A `u32` setting from a range that fits in `u32`.
fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The first item of the initiator's list that `accept` takes (RFC 7143 6.2.1: the
/// acceptor picks the first value it supports, in the originator's order).
fn pick_from_list(v: &str, accept: impl Fn(&str) -> bool) -> Option<&str> {
    v.split(',')
        .take(MAX_LIST_ITEMS)
        .find(|i| !i.is_empty() && accept(i))
}

fn digest(v: &str, crc_allowed: bool, set: &mut bool) -> KeyAction {
    match pick_from_list(v, |i| i == "None" || (i == "CRC32C" && crc_allowed)) {
        Some(choice) => {
            *set = choice == "CRC32C";
            KeyAction::Answer(choice.to_owned())
        }
        None => reject(),
    }
}

/// Negotiates one operational key offered by the initiator, updating `params`.
/// Login keys (InitiatorName…), security keys and target-only keys are handled by the
/// caller before this is reached.
pub fn negotiate(
    key: &str,
    value: &str,
    ours: &TargetParams,
    params: &mut SessionParams,
    discovery: bool,
) -> KeyAction {
    if discovery && irrelevant_in_discovery(key) {
        return KeyAction::Answer("Irrelevant".to_owned());
    }
    let d = MIN_DATA_LENGTH;
    let answer_min = |n: Option<u64>, our: u64, slot: &mut u32| match n {
        Some(n) => {
            let r = n.min(our);
            *slot = to_u32(r);
            KeyAction::Answer(r.to_string())
        }
        None => reject(),
    };
    match key {
        "HeaderDigest" => digest(value, ours.header_digest_crc32c, &mut params.header_digest),
        "DataDigest" => digest(value, ours.data_digest_crc32c, &mut params.data_digest),
        "MaxRecvDataSegmentLength" => match ranged(value, d, MAX_DATA_LENGTH) {
            Some(n) => {
                params.initiator_max_recv_data_segment_length = to_u32(n);
                KeyAction::Recorded
            }
            None => KeyAction::Invalid,
        },
        "MaxBurstLength" => answer_min(
            ranged(value, d, MAX_DATA_LENGTH),
            u64::from(ours.max_burst_length),
            &mut params.max_burst_length,
        ),
        "FirstBurstLength" => answer_min(
            ranged(value, d, MAX_DATA_LENGTH),
            u64::from(ours.first_burst_length.min(ours.max_burst_length)),
            &mut params.first_burst_length,
        ),
        "MaxOutstandingR2T" => answer_min(
            ranged(value, 1, 65535),
            u64::from(ours.max_outstanding_r2t.max(1)),
            &mut params.max_outstanding_r2t,
        ),
        "DefaultTime2Retain" => answer_min(
            ranged(value, 0, MAX_TIME2_SECONDS),
            u64::from(ours.default_time2retain),
            &mut params.default_time2retain,
        ),
        "DefaultTime2Wait" => match ranged(value, 0, MAX_TIME2_SECONDS) {
            Some(n) => {
                let r = n.max(u64::from(ours.default_time2wait));
                params.default_time2wait = to_u32(r);
                KeyAction::Answer(r.to_string())
            }
            None => reject(),
        },
        "MaxConnections" => match ranged(value, 1, 65535) {
            Some(n) => {
                let r = n.min(OUR_MAX_CONNECTIONS);
                params.max_connections = r as u16;
                KeyAction::Answer(r.to_string())
            }
            None => reject(),
        },
        "ErrorRecoveryLevel" => match ranged(value, 0, 2) {
            // Result function minimum; ours is the lowest level, so it always wins.
            Some(_) => {
                params.error_recovery_level = OUR_ERROR_RECOVERY_LEVEL;
                KeyAction::Answer(OUR_ERROR_RECOVERY_LEVEL.to_string())
            }
            None => reject(),
        },
        "iSCSIProtocolLevel" => match ranged(value, 0, MAX_PROTOCOL_LEVEL) {
            Some(n) => KeyAction::Answer(n.min(OUR_PROTOCOL_LEVEL).to_string()),
            None => reject(),
        },
        "InitialR2T" | "ImmediateData" | "DataPDUInOrder" | "DataSequenceInOrder" => {
            let Some(b) = parse_bool(value) else {
                return reject();
            };
            let r = match key {
                // Result function OR (RFC 7143 13.10, 13.18, 13.19); we want in-order data.
                "InitialR2T" => {
                    params.initial_r2t = b || ours.initial_r2t;
                    params.initial_r2t
                }
                "DataPDUInOrder" => {
                    params.data_pdu_in_order = true;
                    true
                }
                "DataSequenceInOrder" => {
                    params.data_sequence_in_order = true;
                    true
                }
                // Result function AND (RFC 7143 13.11).
                _ => {
                    params.immediate_data = b && ours.immediate_data;
                    params.immediate_data
                }
            };
            KeyAction::Answer(yes_no(r))
        }
        // Markers are obsolete (RFC 7143 13.25, result AND): always off, so their intervals
        // are irrelevant. iSER's RDMAExtensions (RFC 7145, AND) is off on TCP.
        "IFMarker" | "OFMarker" | "RDMAExtensions" => match parse_bool(value) {
            Some(_) => KeyAction::Answer(yes_no(false)),
            None => reject(),
        },
        "IFMarkInt" | "OFMarkInt" => KeyAction::Answer("Irrelevant".to_owned()),
        // RFC 7144 13.23: we implement the RFC 3720 semantics only.
        "TaskReporting" => match pick_from_list(value, |i| i == "RFC3720") {
            Some(v) => KeyAction::Answer(v.to_owned()),
            None => reject(),
        },
        // Private (X-, X#) and unknown keys (RFC 7143 6.2.1).
        _ => KeyAction::Answer("NotUnderstood".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(key: &str, value: &str) -> (KeyAction, SessionParams) {
        let mut p = SessionParams::default();
        let a = negotiate(key, value, &TargetParams::default(), &mut p, false);
        (a, p)
    }

    fn ans(s: &str) -> KeyAction {
        KeyAction::Answer(s.to_owned())
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("262144"), Some(262144));
        assert_eq!(parse_number("0x10"), Some(16));
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("+1"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("1 "), None);
        assert_eq!(parse_number("99999999999999999999"), None);
    }

    #[test]
    fn digests_pick_first_supported() {
        let (a, p) = run("HeaderDigest", "CRC32C,None");
        assert_eq!((a, p.header_digest), (ans("CRC32C"), true));
        let (a, p) = run("HeaderDigest", "None,CRC32C");
        assert_eq!((a, p.header_digest), (ans("None"), false));
        let (a, p) = run("DataDigest", "CRC32C");
        assert_eq!((a, p.data_digest), (ans("CRC32C"), true));
        assert_eq!(run("DataDigest", "X-foo,None").0, ans("None"));
        assert_eq!(run("DataDigest", "X-foo").0, ans("Reject"));
        let ours = TargetParams {
            header_digest_crc32c: false,
            ..TargetParams::default()
        };
        let mut p = SessionParams::default();
        assert_eq!(
            negotiate("HeaderDigest", "CRC32C", &ours, &mut p, false),
            ans("Reject")
        );
        assert_eq!(
            negotiate("HeaderDigest", "CRC32C,None", &ours, &mut p, false),
            ans("None")
        );
    }

    #[test]
    fn numeric_results() {
        let ours = TargetParams::default();
        let (a, p) = run("MaxBurstLength", "16776192");
        assert_eq!(a, ans(&ours.max_burst_length.to_string()));
        assert_eq!(p.max_burst_length, ours.max_burst_length);
        let (a, p) = run("MaxBurstLength", "4096");
        assert_eq!((a, p.max_burst_length), (ans("4096"), 4096));
        assert_eq!(run("MaxBurstLength", "511").0, ans("Reject"));
        assert_eq!(run("MaxBurstLength", "16777216").0, ans("Reject"));
        let (a, p) = run("FirstBurstLength", "65536");
        assert_eq!((a, p.first_burst_length), (ans("65536"), 65536));
        let (a, p) = run("MaxConnections", "8");
        assert_eq!((a, p.max_connections), (ans("1"), 1));
        assert_eq!(run("MaxConnections", "0").0, ans("Reject"));
        let (a, p) = run("ErrorRecoveryLevel", "2");
        assert_eq!((a, p.error_recovery_level), (ans("0"), 0));
        assert_eq!(run("ErrorRecoveryLevel", "3").0, ans("Reject"));
        let (a, p) = run("DefaultTime2Wait", "0");
        assert_eq!((a, p.default_time2wait), (ans("2"), 2));
        let (a, p) = run("DefaultTime2Wait", "10");
        assert_eq!((a, p.default_time2wait), (ans("10"), 10));
        let (a, p) = run("DefaultTime2Retain", "0");
        assert_eq!((a, p.default_time2retain), (ans("0"), 0));
        assert_eq!(run("DefaultTime2Retain", "3601").0, ans("Reject"));
        let (a, p) = run("MaxOutstandingR2T", "1");
        assert_eq!((a, p.max_outstanding_r2t), (ans("1"), 1));
        assert_eq!(run("MaxOutstandingR2T", "65536").0, ans("Reject"));
        assert_eq!(run("iSCSIProtocolLevel", "2").0, ans("1"));
        assert_eq!(run("iSCSIProtocolLevel", "0").0, ans("0"));
    }

    #[test]
    fn declarative_mrdsl() {
        let (a, p) = run("MaxRecvDataSegmentLength", "262144");
        assert_eq!(
            (a, p.initiator_max_recv_data_segment_length),
            (KeyAction::Recorded, 262144)
        );
        assert_eq!(run("MaxRecvDataSegmentLength", "100").0, KeyAction::Invalid);
        assert_eq!(run("MaxRecvDataSegmentLength", "abc").0, KeyAction::Invalid);
    }

    #[test]
    fn booleans() {
        let (a, p) = run("InitialR2T", "No");
        assert_eq!((a, p.initial_r2t), (ans("No"), false));
        let ours = TargetParams {
            initial_r2t: true,
            immediate_data: false,
            ..Default::default()
        };
        let mut p = SessionParams::default();
        assert_eq!(
            negotiate("InitialR2T", "No", &ours, &mut p, false),
            ans("Yes")
        );
        assert!(p.initial_r2t);
        assert_eq!(
            negotiate("ImmediateData", "Yes", &ours, &mut p, false),
            ans("No")
        );
        assert!(!p.immediate_data);
        let (a, p) = run("ImmediateData", "Yes");
        assert_eq!((a, p.immediate_data), (ans("Yes"), true));
        let (a, p) = run("DataPDUInOrder", "No");
        assert_eq!((a, p.data_pdu_in_order), (ans("Yes"), true));
        assert_eq!(run("DataSequenceInOrder", "No").0, ans("Yes"));
        assert_eq!(run("IFMarker", "Yes").0, ans("No"));
        assert_eq!(run("OFMarker", "No").0, ans("No"));
        assert_eq!(run("InitialR2T", "yes").0, ans("Reject"));
        assert_eq!(run("OFMarkInt", "2048~8192").0, ans("Irrelevant"));
    }

    #[test]
    fn unknown_and_private_keys() {
        assert_eq!(run("X-com.example.Foo", "1").0, ans("NotUnderstood"));
        assert_eq!(run("X#org.example", "1").0, ans("NotUnderstood"));
        assert_eq!(run("Bogus", "1").0, ans("NotUnderstood"));
        assert_eq!(
            run("TaskReporting", "ResponseFence,RFC3720").0,
            ans("RFC3720")
        );
        assert_eq!(run("TaskReporting", "FastAbort").0, ans("Reject"));
    }

    #[test]
    fn discovery_irrelevant_keys() {
        let mut p = SessionParams::default();
        let ours = TargetParams::default();
        for k in [
            "MaxConnections",
            "InitialR2T",
            "ImmediateData",
            "MaxBurstLength",
        ] {
            assert_eq!(negotiate(k, "1", &ours, &mut p, true), ans("Irrelevant"));
        }
        assert_eq!(p, SessionParams::default());
        assert_eq!(
            negotiate("HeaderDigest", "None", &ours, &mut p, true),
            ans("None")
        );
    }
}

/// RFC 7143 6.2 and 13 as properties: ranges, result functions per key, declarative and
/// unknown keys, for any target settings within the RFC's bounds.
#[cfg(test)]
mod rule_tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: [&str; 20] = [
        "HeaderDigest",
        "DataDigest",
        "MaxRecvDataSegmentLength",
        "MaxBurstLength",
        "FirstBurstLength",
        "MaxOutstandingR2T",
        "DefaultTime2Retain",
        "DefaultTime2Wait",
        "MaxConnections",
        "ErrorRecoveryLevel",
        "iSCSIProtocolLevel",
        "InitialR2T",
        "ImmediateData",
        "DataPDUInOrder",
        "DataSequenceInOrder",
        "IFMarker",
        "OFMarker",
        "IFMarkInt",
        "OFMarkInt",
        "TaskReporting",
    ];

    fn arb_ours() -> impl Strategy<Value = TargetParams> {
        let len = MIN_DATA_LENGTH as u32..=MAX_DATA_LENGTH as u32;
        (
            (len.clone(), len.clone(), len, 1u32..=65535),
            any::<(bool, bool, bool, bool)>(),
            (0u32..=3600, 0u32..=3600),
        )
            .prop_map(
                |((mrdsl, mbl, fbl, r2t), (imm, ir2t, hd, dd), (t2w, t2r))| TargetParams {
                    max_recv_data_segment_length: mrdsl,
                    max_burst_length: mbl,
                    first_burst_length: fbl,
                    max_outstanding_r2t: r2t,
                    immediate_data: imm,
                    initial_r2t: ir2t,
                    header_digest_crc32c: hd,
                    data_digest_crc32c: dd,
                    default_time2wait: t2w,
                    default_time2retain: t2r,
                    zero_copy_reads: true,
                },
            )
    }

    /// Values as initiators write them: decimal, hex, booleans, lists, and junk.
    fn arb_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..70_000).prop_map(|n| n.to_string()),
            (0u64..1 << 25).prop_map(|n| format!("{n:#x}")),
            Just("Yes".to_owned()),
            Just("No".to_owned()),
            Just("CRC32C,None".to_owned()),
            Just("None".to_owned()),
            "[A-Za-z0-9,~.+-]{0,12}",
        ]
    }

    fn ans(v: impl ToString) -> KeyAction {
        KeyAction::Answer(v.to_string())
    }

    /// Every parameter within RFC 7143 13's range and, for result function minimum, at
    /// most what we offered.
    fn assert_in_bounds(p: &SessionParams, ours: &TargetParams) {
        let data = MIN_DATA_LENGTH..=MAX_DATA_LENGTH;
        let mrdsl = u64::from(p.initiator_max_recv_data_segment_length);
        assert!(mrdsl == 8192 || data.contains(&mrdsl));
        let mbl = u64::from(p.max_burst_length);
        assert!(data.contains(&mbl));
        assert!(mbl == 262_144 || p.max_burst_length <= ours.max_burst_length);
        let fbl = u64::from(p.first_burst_length);
        assert!(data.contains(&fbl));
        assert!(fbl == 65_536 || p.first_burst_length <= ours.first_burst_length);
        assert!((1..=65535).contains(&p.max_outstanding_r2t));
        assert!(p.max_outstanding_r2t == 1 || p.max_outstanding_r2t <= ours.max_outstanding_r2t);
        assert!(u64::from(p.default_time2wait) <= MAX_TIME2_SECONDS);
        assert!(u64::from(p.default_time2retain) <= MAX_TIME2_SECONDS);
        assert_eq!(p.error_recovery_level, OUR_ERROR_RECOVERY_LEVEL);
        assert_eq!(u64::from(p.max_connections), OUR_MAX_CONNECTIONS);
        assert!(p.data_pdu_in_order && p.data_sequence_in_order);
        assert!(!p.header_digest || ours.header_digest_crc32c);
        assert!(!p.data_digest || ours.data_digest_crc32c);
    }

    /// (key, minimum, maximum, our value, the negotiated field).
    type MinimumCase = (&'static str, u64, u64, u64, fn(&SessionParams) -> u32);

    proptest! {
        /// Any sequence of known keys with any values keeps every parameter in bounds, and
        /// every answer is a legal value for its key.
        #[test]
        fn results_stay_within_bounds(
            ours in arb_ours(),
            offers in proptest::collection::vec((0..KEYS.len(), arb_value()), 0..40),
        ) {
            let mut p = SessionParams::default();
            for (k, v) in &offers {
                let key = KEYS[*k];
                match negotiate(key, v, &ours, &mut p, false) {
                    KeyAction::Answer(a) => {
                        prop_assert!(a == "Reject" || a == "Irrelevant" || !a.is_empty());
                        if let Some(n) = parse_number(&a) {
                            prop_assert!(n <= MAX_DATA_LENGTH, "{key}={v} -> {a}");
                        }
                    }
                    KeyAction::Recorded => prop_assert_eq!(key, "MaxRecvDataSegmentLength"),
                    KeyAction::Invalid => prop_assert_eq!(key, "MaxRecvDataSegmentLength"),
                }
                assert_in_bounds(&p, &ours);
            }
        }

        /// Result function minimum (RFC 7143 13.13, 13.14, 13.17, 13.16): in range, the
        /// answer is min(offer, ours); out of range it is Reject and nothing changes.
        #[test]
        fn minimum_keys(ours in arb_ours(), n: u64, small in 0u64..70_000) {
            let cases: [MinimumCase; 4] = [
                ("MaxBurstLength", MIN_DATA_LENGTH, MAX_DATA_LENGTH,
                 u64::from(ours.max_burst_length), |p| p.max_burst_length),
                ("FirstBurstLength", MIN_DATA_LENGTH, MAX_DATA_LENGTH,
                 u64::from(ours.first_burst_length.min(ours.max_burst_length)),
                 |p| p.first_burst_length),
                ("MaxOutstandingR2T", 1, 65535, u64::from(ours.max_outstanding_r2t),
                 |p| p.max_outstanding_r2t),
                ("DefaultTime2Retain", 0, MAX_TIME2_SECONDS, u64::from(ours.default_time2retain),
                 |p| p.default_time2retain),
            ];
            for (key, lo, hi, our, get) in cases {
                for offer in [n, small, lo, hi] {
                    let mut p = SessionParams::default();
                    let before = p.clone();
                    let got = negotiate(key, &offer.to_string(), &ours, &mut p, false);
                    if (lo..=hi).contains(&offer) {
                        let r = offer.min(our);
                        prop_assert_eq!(got, ans(r));
                        prop_assert_eq!(u64::from(get(&p)), r);
                    } else {
                        prop_assert_eq!(got, ans("Reject"));
                        prop_assert_eq!(&p, &before);
                    }
                }
            }
        }

        /// DefaultTime2Wait: result function maximum (RFC 7143 13.15).
        #[test]
        fn time2wait_is_maximum(ours in arb_ours(), offer in 0u64..5000) {
            let mut p = SessionParams::default();
            let got = negotiate("DefaultTime2Wait", &offer.to_string(), &ours, &mut p, false);
            if offer <= MAX_TIME2_SECONDS {
                let r = offer.max(u64::from(ours.default_time2wait));
                prop_assert_eq!(got, ans(r));
                prop_assert_eq!(u64::from(p.default_time2wait), r);
            } else {
                prop_assert_eq!(got, ans("Reject"));
            }
        }

        /// InitialR2T is OR, ImmediateData is AND (RFC 7143 13.10, 13.11); both accept
        /// exactly "Yes" and "No".
        #[test]
        fn boolean_keys(ours in arb_ours(), b: bool, junk in "[a-zA-Z]{0,4}") {
            let v = if b { "Yes" } else { "No" };
            let mut p = SessionParams::default();
            let or = b || ours.initial_r2t;
            prop_assert_eq!(negotiate("InitialR2T", v, &ours, &mut p, false), ans(if or { "Yes" } else { "No" }));
            prop_assert_eq!(p.initial_r2t, or);
            let and = b && ours.immediate_data;
            prop_assert_eq!(negotiate("ImmediateData", v, &ours, &mut p, false), ans(if and { "Yes" } else { "No" }));
            prop_assert_eq!(p.immediate_data, and);
            if junk != "Yes" && junk != "No" {
                let before = p.clone();
                prop_assert_eq!(negotiate("InitialR2T", &junk, &ours, &mut p, false), ans("Reject"));
                prop_assert_eq!(negotiate("ImmediateData", &junk, &ours, &mut p, false), ans("Reject"));
                prop_assert_eq!(p, before);
            }
        }

        /// MaxRecvDataSegmentLength is declarative (RFC 7143 13.12): recorded, never
        /// answered; an illegal value fails the login.
        #[test]
        fn declarative_key(ours in arb_ours(), n: u32) {
            let mut p = SessionParams::default();
            let got = negotiate("MaxRecvDataSegmentLength", &n.to_string(), &ours, &mut p, false);
            if (MIN_DATA_LENGTH..=MAX_DATA_LENGTH).contains(&u64::from(n)) {
                prop_assert_eq!(got, KeyAction::Recorded);
                prop_assert_eq!(p.initiator_max_recv_data_segment_length, n);
            } else {
                prop_assert_eq!(got, KeyAction::Invalid);
                prop_assert_eq!(p, SessionParams::default());
            }
        }

        /// Unknown and private keys are NotUnderstood and change nothing (RFC 7143 6.2.1).
        #[test]
        fn unknown_keys(ours in arb_ours(), key in "(X-|X#)?[A-Za-z][A-Za-z0-9.]{0,20}",
                        v in arb_value(), discovery: bool) {
            prop_assume!(!KEYS.contains(&key.as_str()));
            let mut p = SessionParams::default();
            prop_assert_eq!(negotiate(&key, &v, &ours, &mut p, discovery), ans("NotUnderstood"));
            prop_assert_eq!(p, SessionParams::default());
        }

        /// Keys irrelevant to discovery sessions are answered Irrelevant there, whatever
        /// the value, and change nothing.
        #[test]
        fn discovery_irrelevance(ours in arb_ours(), k in 0..KEYS.len(), v in arb_value()) {
            let key = KEYS[k];
            prop_assume!(irrelevant_in_discovery(key));
            let mut p = SessionParams::default();
            prop_assert_eq!(negotiate(key, &v, &ours, &mut p, true), ans("Irrelevant"));
            prop_assert_eq!(p, SessionParams::default());
        }

        /// RFC 7143 6.1 numbers: decimal and 0x hex both parse to the value written.
        /// Decimal stops at 19 digits (`parse_number`); every key's range is far below.
        #[test]
        fn numbers_round_trip(n: u64) {
            if n < 10_000_000_000_000_000_000 {
                prop_assert_eq!(parse_number(&n.to_string()), Some(n));
            }
            prop_assert_eq!(parse_number(&format!("{n:#x}")), Some(n));
            prop_assert_eq!(parse_number(&format!("{n:#X}").replacen("0X", "0x", 1)), Some(n));
        }
    }
}
