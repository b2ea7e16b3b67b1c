//! Human-readable sizes: `"10G"`, `"512M"`, `"1T"`, `"4096"`, or a bare TOML integer.
//!
//! Units are binary (K = 1024) because disks are provisioned in powers of two and a `"1G"`
//! LUN that is not a whole number of 4096-byte blocks would surprise everyone. An optional
//! `iB` / `B` suffix is accepted (`"10GiB"`, `"10GB"` both mean 10 × 2³⁰).

use std::fmt;

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("empty size")]
    Empty,
    #[error(
        "`{0}` is not a size: expected digits with an optional unit K, M, G, T or P (e.g. \"10G\")"
    )]
    Syntax(String),
    #[error("`{0}` does not fit in 64 bits")]
    Overflow(String),
}

/// Parses a size in bytes. Whitespace between number and unit is allowed (`"10 G"`).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::Syntax(text.to_owned()));
    }
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(SizeError::Syntax(text.to_owned())),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_owned()))?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(text.to_owned()))
}

/// Formats bytes with the largest binary unit that divides them exactly, for messages.
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u32, &str); 5] = [(50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")];
        for (shift, unit) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10g"), Ok(10 << 30));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("10 GB"), Ok(10 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("2P"), Ok(2 << 50));
        assert_eq!(parse_size("8K"), Ok(8192));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("  "), Err(SizeError::Empty));
        assert!(matches!(parse_size("G"), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size("1.5G"), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size("10X"), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size("-1"), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size("16384P"), Err(SizeError::Overflow(_))));
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
    }

    proptest! {
        #[test]
        fn human_round_trip(n in any::<u64>()) {
            prop_assert_eq!(parse_size(&HumanSize(n).to_string()), Ok(n));
        }

        #[test]
        fn never_panics(s in ".{0,24}") {
            let _ = parse_size(&s);
        }
    }
}
