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
