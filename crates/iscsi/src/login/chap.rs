//! CHAP with MD5 (RFC 1994, RFC 7143 12.1.3): the pieces the login state machine combines.
//!
//! Response = MD5(identifier || secret || challenge). Binary values travel as hex (`0x…`)
//! or base64 (`0b…`) constants (RFC 7143 6.1). Secrets are never formatted or logged.

use md5::{Digest, Md5};
use rand::Rng;

/// CHAP_A value for MD5, the only algorithm we accept (RFC 7143 12.1.3).
pub const CHAP_ALGORITHM_MD5: u8 = 5;

/// Length of the challenges we send. RFC 7143 12.1.3 asks for at least 16 bytes; 16 is also
/// what every interoperable target uses, so no initiator's buffer is surprised.
pub const CHALLENGE_BYTES: usize = 16;

/// Largest challenge we accept from an initiator (mutual CHAP). RFC 7143 12.1.3 caps
/// binary CHAP values at 1024 bytes.
pub const MAX_PEER_CHALLENGE_BYTES: usize = 1024;

/// Most algorithms we look at in a CHAP_A list.
pub const MAX_ALGORITHMS_OFFERED: usize = 16;

/// MD5 digest length: the only valid CHAP_R length for algorithm 5.
pub const MD5_RESPONSE_BYTES: usize = 16;

/// Why a CHAP value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChapError {
    #[error("binary value has neither a 0x nor a 0b prefix")]
    NoBinaryPrefix,
    #[error("hex value has an odd number of digits or a non-hex character")]
    BadHex,
    #[error("base64 value is malformed")]
    BadBase64,
    #[error("binary value is empty")]
    Empty,
    #[error("binary value is longer than {MAX_PEER_CHALLENGE_BYTES} bytes")]
    TooLong,
    #[error("CHAP_I is not a number in 0..=255")]
    BadIdentifier,
    #[error("CHAP_A list is malformed or too long")]
    BadAlgorithmList,
}

/// Picks MD5 from an initiator's CHAP_A list (`"7,5"`). `Ok(None)` when MD5 is absent,
/// which the caller answers with `CHAP_A=Reject`.
pub fn select_algorithm(list: &str) -> Result<Option<u8>, ChapError> {
    let mut found = false;
    for (i, item) in list.split(',').enumerate() {
        if i == MAX_ALGORITHMS_OFFERED || item.is_empty() {
            return Err(ChapError::BadAlgorithmList);
        }
        // Unknown or non-numeric algorithms are simply not selectable.
        if parse_small_number(item) == Some(u64::from(CHAP_ALGORITHM_MD5)) {
            found = true;
        }
    }
    Ok(found.then_some(CHAP_ALGORITHM_MD5))
}

/// Parses CHAP_I: a decimal or `0x` hex number in 0..=255.
pub fn parse_identifier(value: &str) -> Result<u8, ChapError> {
    parse_small_number(value)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or(ChapError::BadIdentifier)
}

/// Decimal or `0x` hex, at most 8 digits: enough for every small CHAP number.
fn parse_small_number(v: &str) -> Option<u64> {
    let (digits, radix) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (v, 10),
    };
    if digits.is_empty() || digits.len() > 8 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Decodes a CHAP binary value: `0x` hex or `0b` base64 (RFC 7143 6.1).
pub fn decode_binary(value: &str) -> Result<Vec<u8>, ChapError> {
    let bytes = if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        decode_hex(hex)?
    } else if let Some(b64) = value
        .strip_prefix("0b")
        .or_else(|| value.strip_prefix("0B"))
    {
        decode_base64(b64)?
    } else {
        return Err(ChapError::NoBinaryPrefix);
    };
    if bytes.is_empty() {
        return Err(ChapError::Empty);
    }
    if bytes.len() > MAX_PEER_CHALLENGE_BYTES {
        return Err(ChapError::TooLong);
    }
    Ok(bytes)
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, ChapError> {
    let raw = hex.as_bytes();
    if !raw.len().is_multiple_of(2) || raw.len() > 2 * MAX_PEER_CHALLENGE_BYTES {
        return Err(if !raw.len().is_multiple_of(2) {
            ChapError::BadHex
        } else {
            ChapError::TooLong
        });
    }
    let nibble = |c: u8| (c as char).to_digit(16).ok_or(ChapError::BadHex);
    raw.chunks_exact(2)
        .map(|p| Ok((nibble(p[0])? << 4 | nibble(p[1])?) as u8))
        .collect()
}

fn decode_base64(text: &str) -> Result<Vec<u8>, ChapError> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let raw = text.as_bytes();
    if !raw.len().is_multiple_of(4) || raw.len() > 4 * MAX_PEER_CHALLENGE_BYTES.div_ceil(3) {
        return Err(ChapError::BadBase64);
    }
    let pad = raw.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return Err(ChapError::BadBase64);
    }
    let body = &raw[..raw.len() - pad];
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | sextet(c).ok_or(ChapError::BadBase64)?;
        }
        // A short final chunk carries 2 or 3 sextets (1 or 2 bytes).
        match chunk.len() {
            4 => out.extend_from_slice(&acc.to_be_bytes()[1..]),
            3 => out.extend_from_slice(&(acc >> 2).to_be_bytes()[2..]),
            2 => out.push((acc >> 4) as u8),
            _ => return Err(ChapError::BadBase64),
        }
    }
    Ok(out)
}

/// Encodes bytes as a `0x` hex constant.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// RFC 1994 4.1: MD5 over identifier, secret and challenge.
pub fn md5_response(identifier: u8, secret: &[u8], challenge: &[u8]) -> [u8; MD5_RESPONSE_BYTES] {
    let mut h = Md5::new();
    h.update([identifier]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Equality whose time depends only on the lengths, so a wrong response leaks nothing
/// about how many leading bytes were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// The challenge we sent an initiator, kept until its response arrives.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapChallenge {
    pub identifier: u8,
    pub challenge: [u8; CHALLENGE_BYTES],
}

impl std::fmt::Debug for ChapChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapChallenge")
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

impl ChapChallenge {
    /// A fresh random identifier and challenge from the thread-local CSPRNG.
    pub fn generate() -> ChapChallenge {
        let mut rng = rand::rng();
        let mut challenge = [0u8; CHALLENGE_BYTES];
        rng.fill_bytes(&mut challenge);
        let identifier = rng.next_u32() as u8;
        ChapChallenge {
            identifier,
            challenge,
        }
    }

    /// The CHAP_I and CHAP_C values to send.
    pub fn to_keys(&self) -> (String, String) {
        (self.identifier.to_string(), encode_hex(&self.challenge))
    }

    /// Checks an initiator's CHAP_R (already decoded) against `secret`.
    pub fn verify(&self, secret: &[u8], response: &[u8]) -> bool {
        let expected = md5_response(self.identifier, secret, &self.challenge);
        constant_time_eq(&expected, response)
    }

    /// RFC 7143 12.1.3: a mutual challenge equal to ours would let an attacker reflect our
    /// own challenge back and replay our answer as its proof.
    pub fn is_reflected(&self, peer_challenge: &[u8]) -> bool {
        constant_time_eq(&self.challenge, peer_challenge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc1321_vectors() {
        // MD5("") and MD5("abc") from RFC 1321 A.5, fed through the id/secret/challenge split.
        assert_eq!(
            encode_hex(&md5_response(b'a', b"bc", b"")),
            "0x900150983cd24fb0d6963f7d28e17f72"
        );
        let empty = Md5::new().finalize();
        assert_eq!(encode_hex(&empty), "0xd41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn hex_and_base64_decode() {
        assert_eq!(decode_binary("0x00ff10").unwrap(), vec![0, 0xff, 0x10]);
        assert_eq!(decode_binary("0XABcd").unwrap(), vec![0xab, 0xcd]);
        assert_eq!(decode_binary("0bAP8Q").unwrap(), vec![0, 0xff, 0x10]);
        assert_eq!(decode_binary("0bAP8=").unwrap(), vec![0, 0xff]);
        assert_eq!(decode_binary("0bAA==").unwrap(), vec![0]);
        assert_eq!(
            decode_binary("0baGVsbG8gd29ybGQ=").unwrap(),
            b"hello world".to_vec()
        );
        assert_eq!(decode_binary("00ff"), Err(ChapError::NoBinaryPrefix));
        assert_eq!(decode_binary("0x0"), Err(ChapError::BadHex));
        assert_eq!(decode_binary("0xzz"), Err(ChapError::BadHex));
        assert_eq!(decode_binary("0x"), Err(ChapError::Empty));
        assert_eq!(decode_binary("0bA"), Err(ChapError::BadBase64));
        assert_eq!(decode_binary("0bA==="), Err(ChapError::BadBase64));
        assert_eq!(decode_binary("0bA*=="), Err(ChapError::BadBase64));
        let long = format!("0x{}", "00".repeat(MAX_PEER_CHALLENGE_BYTES + 1));
        assert_eq!(decode_binary(&long), Err(ChapError::TooLong));
        let max = format!("0x{}", "00".repeat(MAX_PEER_CHALLENGE_BYTES));
        assert_eq!(decode_binary(&max).unwrap().len(), MAX_PEER_CHALLENGE_BYTES);
    }

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_binary(&encode_hex(&bytes)).unwrap(), bytes);
    }

    #[test]
    fn algorithm_selection() {
        assert_eq!(select_algorithm("5"), Ok(Some(5)));
        assert_eq!(select_algorithm("7,6,5"), Ok(Some(5)));
        assert_eq!(select_algorithm("7,6"), Ok(None));
        assert_eq!(select_algorithm("foo"), Ok(None));
        assert_eq!(select_algorithm("5,"), Err(ChapError::BadAlgorithmList));
        assert_eq!(
            select_algorithm(&"1,".repeat(20)),
            Err(ChapError::BadAlgorithmList)
        );
    }

    #[test]
    fn identifier_range() {
        assert_eq!(parse_identifier("0"), Ok(0));
        assert_eq!(parse_identifier("255"), Ok(255));
        assert_eq!(parse_identifier("0xff"), Ok(255));
        assert_eq!(parse_identifier("256"), Err(ChapError::BadIdentifier));
        assert_eq!(parse_identifier("-1"), Err(ChapError::BadIdentifier));
        assert_eq!(parse_identifier(""), Err(ChapError::BadIdentifier));
    }

    #[test]
    fn verify_and_reflection() {
        let c = ChapChallenge::generate();
        let good = md5_response(c.identifier, b"secretsecret", &c.challenge);
        assert!(c.verify(b"secretsecret", &good));
        assert!(!c.verify(b"secretsecreT", &good));
        assert!(!c.verify(b"secretsecret", &good[..15]));
        assert!(c.is_reflected(&c.challenge));
        assert!(!c.is_reflected(&[0u8; 8]));
        // Two challenges differ (16 random bytes colliding would be a broken RNG).
        assert_ne!(c.challenge, ChapChallenge::generate().challenge);
        assert!(!format!("{c:?}").contains("challenge:"));
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
