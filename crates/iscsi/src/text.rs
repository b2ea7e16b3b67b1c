//! Text key=value data segments (RFC 7143 6.1), used by Login and Text PDUs.
//!
//! A segment is a sequence of `key=value` strings, each terminated by a NUL. Parsing is
//! strict because every byte comes from the network: a malformed segment is an error, never
//! a panic, and every size is bounded by a named limit.

/// Longest key name (RFC 7143 6.1: "MUST NOT exceed 63 bytes").
pub const MAX_KEY_BYTES: usize = 63;

/// Longest ordinary value (RFC 7143 6.1: 255 bytes).
pub const MAX_VALUE_BYTES: usize = 255;

/// Longest value written as a hex (`0x`) or base64 (`0b`) binary constant, as CHAP_C and
/// CHAP_R may be (RFC 7143 6.1 and 12.1.3 allow large binary values up to 8192 bytes).
pub const MAX_BINARY_VALUE_BYTES: usize = 8192;

/// Most key=value pairs accepted in one (possibly continued) segment. Real initiators send
/// about 25 during a login; the bound stops a peer from making us allocate per tiny pair.
pub const MAX_PAIRS: usize = 256;

/// Largest text segment, across Continue-bit PDUs, that we accumulate before parsing.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Why a text segment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("text segment is {len} bytes, more than {MAX_TEXT_BYTES}")]
    TooLong { len: usize },
    #[error("more than {MAX_PAIRS} key=value pairs")]
    TooManyPairs,
    #[error("last key=value pair is not NUL-terminated")]
    Unterminated,
    #[error("key=value pair {index} has no '='")]
    MissingEquals { index: usize },
    #[error("key=value pair {index} has an empty key")]
    EmptyKey { index: usize },
    #[error("key in pair {index} is longer than {MAX_KEY_BYTES} bytes")]
    KeyTooLong { index: usize },
    #[error("key in pair {index} has a character outside RFC 7143 6.1's set")]
    BadKeyChar { index: usize },
    #[error("value of pair {index} is {len} bytes, too long")]
    ValueTooLong { index: usize, len: usize },
    #[error("value of pair {index} is not valid UTF-8 or holds a control character")]
    BadValue { index: usize },
}

/// One parsed `key=value` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPair {
    pub key: String,
    pub value: String,
}

/// Key characters allowed by RFC 7143 6.1: letters, digits, `.`, `-`, `+`, `@`, `_`.
fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_')
}

/// Binary constants (`0x…`, `0b…`) may be longer than ordinary values.
fn is_binary_constant(value: &[u8]) -> bool {
    value.len() >= 2 && value[0] == b'0' && matches!(value[1], b'x' | b'X' | b'b' | b'B')
}

/// Parses a complete text segment into its pairs, in order. Duplicate keys are kept: whether
/// a repeat is an error depends on the key and is the caller's decision (RFC 7143 6.2).
///
/// Trailing NUL bytes after the last pair (padding some initiators include) are ignored.
pub fn parse(data: &[u8]) -> Result<Vec<TextPair>, TextError> {
    if data.len() > MAX_TEXT_BYTES {
        return Err(TextError::TooLong { len: data.len() });
    }
    // Strip trailing padding, keeping the terminator of the last pair.
    let mut end = data.len();
    while end >= 2 && data[end - 1] == 0 && data[end - 2] == 0 {
        end -= 1;
    }
    let data = &data[..end];
    if data.is_empty() || data == [0] {
        return Ok(Vec::new());
    }
    let Some(body) = data.strip_suffix(&[0]) else {
        return Err(TextError::Unterminated);
    };
    let mut pairs = Vec::new();
    for (index, item) in body.split(|&b| b == 0).enumerate() {
        if pairs.len() == MAX_PAIRS {
            return Err(TextError::TooManyPairs);
        }
        pairs.push(parse_pair(index, item)?);
    }
    Ok(pairs)
}

fn parse_pair(index: usize, item: &[u8]) -> Result<TextPair, TextError> {
    let eq = item
        .iter()
        .position(|&b| b == b'=')
        .ok_or(TextError::MissingEquals { index })?;
    let (key, value) = (&item[..eq], &item[eq + 1..]);
    if key.is_empty() {
        return Err(TextError::EmptyKey { index });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(TextError::KeyTooLong { index });
    }
    if !key.iter().all(|&b| is_key_char(b)) {
        return Err(TextError::BadKeyChar { index });
    }
    let max = if is_binary_constant(value) {
        MAX_BINARY_VALUE_BYTES
    } else {
        MAX_VALUE_BYTES
    };
    if value.len() > max {
        return Err(TextError::ValueTooLong {
            index,
            len: value.len(),
        });
    }
    let value = std::str::from_utf8(value).map_err(|_| TextError::BadValue { index })?;
    if value.chars().any(char::is_control) {
        return Err(TextError::BadValue { index });
    }
    // Key characters are ASCII, checked above.
    let key = String::from_utf8_lossy(key).into_owned();
    Ok(TextPair {
        key,
        value: value.to_owned(),
    })
}

/// Appends one `key=value\0` to `out`.
pub fn push_pair(out: &mut Vec<u8>, key: &str, value: &str) {
    out.reserve(key.len() + value.len() + 2);
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

/// Encodes pairs as a text segment (the inverse of [`parse`]).
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        push_pair(&mut out, k.as_ref(), v.as_ref());
    }
    out
}

/// Collects a text segment spread over several PDUs with the Continue bit (RFC 7143 6.1:
/// a pair may be split across PDUs), refusing to grow beyond its bound.
#[derive(Debug)]
pub struct TextAccumulator {
    buf: Vec<u8>,
    limit_bytes: usize,
}

impl Default for TextAccumulator {
    fn default() -> Self {
        TextAccumulator::new(MAX_TEXT_BYTES)
    }
}

impl TextAccumulator {
    /// An accumulator holding at most `limit_bytes` (capped at [`MAX_TEXT_BYTES`]).
    pub fn new(limit_bytes: usize) -> TextAccumulator {
        TextAccumulator {
            buf: Vec::new(),
            limit_bytes: limit_bytes.min(MAX_TEXT_BYTES),
        }
    }

    /// Appends one PDU's data segment.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), TextError> {
        let len = self.buf.len().saturating_add(piece.len());
        if len > self.limit_bytes {
            return Err(TextError::TooLong { len });
        }
        self.buf.extend_from_slice(piece);
        Ok(())
    }

    /// True when nothing has been accumulated.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes accumulated so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Hands out the whole segment and empties the accumulator.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Appends the final piece and returns the whole segment, emptying the accumulator.
    pub fn finish(&mut self, last: &[u8]) -> Result<Vec<u8>, TextError> {
        let pushed = self.push(last);
        if let Err(e) = pushed {
            self.buf.clear();
            return Err(e);
        }
        Ok(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(k: &str, v: &str) -> TextPair {
        TextPair {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn parses_pairs_in_order() {
        let got = parse(b"InitiatorName=iqn.x:y\0SessionType=Normal\0").unwrap();
        assert_eq!(
            got,
            vec![
                pair("InitiatorName", "iqn.x:y"),
                pair("SessionType", "Normal")
            ]
        );
    }

    #[test]
    fn value_may_contain_equals_and_be_empty() {
        let got = parse(b"X-a=b=c\0K=\0").unwrap();
        assert_eq!(got, vec![pair("X-a", "b=c"), pair("K", "")]);
    }

    #[test]
    fn empty_and_padded_segments() {
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b"\0").unwrap(), vec![]);
        assert_eq!(parse(b"A=1\0\0\0\0").unwrap(), vec![pair("A", "1")]);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(b"A=1"), Err(TextError::Unterminated));
        assert_eq!(
            parse(b"A=1\0B\0"),
            Err(TextError::MissingEquals { index: 1 })
        );
        assert_eq!(parse(b"=1\0"), Err(TextError::EmptyKey { index: 0 }));
        assert_eq!(parse(b"A B=1\0"), Err(TextError::BadKeyChar { index: 0 }));
        assert_eq!(
            parse(b"A\0\0B=1\0"),
            Err(TextError::MissingEquals { index: 0 })
        );
        assert_eq!(parse(b"A=\xff\0"), Err(TextError::BadValue { index: 0 }));
        assert_eq!(parse(b"A=a\x07\0"), Err(TextError::BadValue { index: 0 }));
        // An empty string between pairs is not a pair.
        assert_eq!(
            parse(b"A=1\0\0B=2\0"),
            Err(TextError::MissingEquals { index: 1 })
        );
    }

    #[test]
    fn length_limits() {
        let key = "K".repeat(MAX_KEY_BYTES);
        assert!(parse(format!("{key}=1\0").as_bytes()).is_ok());
        let key = "K".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            parse(format!("{key}=1\0").as_bytes()),
            Err(TextError::KeyTooLong { index: 0 })
        );
        let v = "v".repeat(MAX_VALUE_BYTES);
        assert!(parse(format!("A={v}\0").as_bytes()).is_ok());
        let v = "v".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            parse(format!("A={v}\0").as_bytes()),
            Err(TextError::ValueTooLong {
                index: 0,
                len: MAX_VALUE_BYTES + 1
            })
        );
        // Binary constants may be long, up to their own limit.
        let hex = format!("0x{}", "ab".repeat(1000));
        assert!(parse(format!("CHAP_C={hex}\0").as_bytes()).is_ok());
        let hex = format!("0x{}", "a".repeat(MAX_BINARY_VALUE_BYTES));
        assert!(matches!(
            parse(format!("CHAP_C={hex}\0").as_bytes()),
            Err(TextError::ValueTooLong { .. })
        ));
        let many: String = (0..=MAX_PAIRS).map(|i| format!("K{i}=1\0")).collect();
        assert_eq!(parse(many.as_bytes()), Err(TextError::TooManyPairs));
        let big = vec![b'a'; MAX_TEXT_BYTES + 1];
        assert!(matches!(parse(&big), Err(TextError::TooLong { .. })));
    }

    #[test]
    fn accumulator_joins_split_pairs_and_bounds() {
        let mut acc = TextAccumulator::new(16);
        acc.push(b"Initiator").unwrap();
        let all = acc.finish(b"Name=a\0").unwrap();
        assert_eq!(parse(&all).unwrap(), vec![pair("InitiatorName", "a")]);
        assert!(acc.is_empty());
        acc.push(b"0123456789").unwrap();
        assert_eq!(acc.push(b"0123456"), Err(TextError::TooLong { len: 17 }));
        assert_eq!(acc.len(), 10);
        assert!(acc.finish(b"0123456").is_err());
        assert!(acc.is_empty());
    }

    fn arb_key() -> impl Strategy<Value = String> {
        "[A-Za-z0-9.+@_-]{1,63}"
    }

    fn arb_value() -> impl Strategy<Value = String> {
        // Printable values, including non-ASCII UTF-8 and '='.
        "[ -~\u{a0}-\u{2ff}]{0,60}"
    }

    proptest! {
        #[test]
        fn round_trip(pairs in proptest::collection::vec((arb_key(), arb_value()), 0..40)) {
            let bytes = encode(&pairs);
            let parsed = parse(&bytes).unwrap();
            let back: Vec<(String, String)> =
                parsed.into_iter().map(|p| (p.key, p.value)).collect();
            prop_assert_eq!(back, pairs);
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&data);
        }
    }
}
