//! iSCSI name validation (RFC 7143 4.2.7) and the names of config objects.

pub use esos_common::limits::MAX_ISCSI_NAME_LEN;

/// Longest device or group name; these appear in logs and in the identity file.
pub const MAX_OBJECT_NAME_LEN: usize = 64;

/// Why an iSCSI name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is {0} bytes long; an iSCSI name is at most {MAX_ISCSI_NAME_LEN} (RFC 7143 4.2.7.2)")]
    TooLong(usize),
    #[error("must start with \"iqn.\", \"eui.\" or \"naa.\"")]
    UnknownType,
    #[error(
        "must contain only lower-case letters, digits, '-', '.' and ':' (found {0:?}; RFC 7143 4.2.7.2)"
    )]
    BadChar(char),
    #[error("needs a date \"iqn.YYYY-MM.\" after \"iqn.\" (RFC 7143 4.2.7.4)")]
    BadDate,
    #[error("needs a reversed domain name after the date, e.g. \"iqn.2026-11.org.example\"")]
    BadDomain,
    #[error("\"eui.\" must be followed by exactly 16 hex digits (RFC 7143 4.2.7.5)")]
    BadEui,
    #[error("\"naa.\" must be followed by 16 or 32 hex digits (RFC 7143 4.2.7.6)")]
    BadNaa,
}

/// Validates an iSCSI name in its normalised (lower-case for `iqn.`) form.
///
/// We refuse rather than fold upper case in target names, because initiators compare the
/// name they discovered byte for byte on some stacks.
pub fn validate_iscsi_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_ISCSI_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(rest) = name.strip_prefix("iqn.") {
        validate_iqn(rest)
    } else if let Some(hex) = strip_prefix_ci(name, "eui.") {
        if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(NameError::BadEui)
        }
    } else if let Some(hex) = strip_prefix_ci(name, "naa.") {
        if (hex.len() == 16 || hex.len() == 32) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(NameError::BadNaa)
        }
    } else {
        Err(NameError::UnknownType)
    }
}

fn strip_prefix_ci<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

fn validate_iqn(rest: &str) -> Result<(), NameError> {
    if let Some(c) = rest
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
    {
        return Err(NameError::BadChar(c));
    }
    // "YYYY-MM." then the reversed domain, then optionally ":" and anything.
    let date = rest.get(..7).ok_or(NameError::BadDate)?;
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && b[4] == b'-' && digits(5..7)) {
        return Err(NameError::BadDate);
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    if !(1..=12).contains(&month) {
        return Err(NameError::BadDate);
    }
    let after = &rest[7..];
    let domain = after.strip_prefix('.').ok_or(NameError::BadDomain)?;
    let domain = domain.split(':').next().unwrap_or("");
    let labels_ok = !domain.is_empty()
        && domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-') && !l.contains(':'));
    if labels_ok {
        Ok(())
    } else {
        Err(NameError::BadDomain)
    }
}

/// Normalises an initiator name for case-insensitive comparison (RFC 7143 4.2.7.1:
/// names are compared after stringprep, which folds case).
pub fn normalise_initiator(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Device and group names: `[A-Za-z0-9._-]`, 1..=64 bytes, so they are safe as keys in the
/// identity file, in logs and in file names.
pub fn validate_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_OBJECT_NAME_LEN {
        return Err(format!(
            "is {} bytes long; at most {MAX_OBJECT_NAME_LEN}",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "contains {c:?}; only letters, digits, '.', '_' and '-' are allowed"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names() {
        for n in [
            "iqn.2026-11.org.esos:default",
            "iqn.2026-11.org.esos",
            "iqn.1993-08.org.debian:01:abcdef",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "eui.02004567A425678D",
            "naa.52004567BA64678D",
            "naa.62004567BA64678D0123456789ABCDEF",
        ] {
            assert_eq!(validate_iscsi_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn bad_names() {
        let long = format!("iqn.2026-11.org.esos:{}", "a".repeat(300));
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (&long, NameError::TooLong(long.len())),
            ("iqx.2026-11.org.esos", NameError::UnknownType),
            ("iqn.2026-11.org.Esos", NameError::BadChar('E')),
            ("iqn.2026-11.org.esos:a b", NameError::BadChar(' ')),
            ("iqn.2026-13.org.esos", NameError::BadDate),
            ("iqn.26-11.org.esos", NameError::BadDate),
            ("iqn.2026", NameError::BadDate),
            ("iqn.2026-11", NameError::BadDomain),
            ("iqn.2026-11.", NameError::BadDomain),
            ("iqn.2026-11.:x", NameError::BadDomain),
            ("iqn.2026-11.org..esos", NameError::BadDomain),
            ("iqn.2026-11org.esos", NameError::BadDomain),
            ("eui.02004567A425678", NameError::BadEui),
            ("eui.02004567A425678G", NameError::BadEui),
            ("naa.1234", NameError::BadNaa),
        ];
        for (name, want) in cases {
            assert_eq!(validate_iscsi_name(name).as_ref(), Err(want), "{name}");
        }
    }

    #[test]
    fn object_names() {
        assert!(validate_object_name("disk-1.a_b").is_ok());
        assert!(validate_object_name("").is_err());
        assert!(validate_object_name("a/b").unwrap_err().contains("'/'"));
        assert!(
            validate_object_name(&"x".repeat(65))
                .unwrap_err()
                .contains("at most 64")
        );
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        for s in [
            "iqn.",
            "iqn.é",
            "eui.",
            "naa.",
            "iqn.2026-1",
            "iqn.2026-11.a:",
        ] {
            let _ = validate_iscsi_name(s);
        }
    }
}
