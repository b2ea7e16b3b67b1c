//! The framing every cluster connection uses (replication and quorum alike).
//!
//! ```text
//! 0        4      6       8        12       16
//! | magic  | kind | flags | length | crc32c | payload (length bytes)
//! ```
//! Big-endian. `crc32c` covers bytes 0..12 of the header and the whole payload, so every
//! block that crosses the wire is checksummed end to end (TCP's 16-bit sum misses too much
//! at SAN volumes). A frame whose magic, length or checksum is wrong ends the connection:
//! the stream can no longer be trusted to be in step.
//!
//! Payloads are built with [`Writer`] and read with [`Reader`], which never panic on short
//! or hostile input: a field that is not there is a [`FrameError::Truncated`].

use bytes::BufMut as _;
use esos_common::be;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// "ESR1": esos replication, version 1 of the framing.
pub const MAGIC: u32 = 0x4553_5231;
/// Header bytes before the payload.
pub const HEADER_LEN: usize = 16;
/// Largest payload a peer may send: the largest write esos accepts from an initiator plus
/// room for the message's own fields.
pub const MAX_PAYLOAD_BYTES: usize = esos_common::limits::MAX_TRANSFER_BYTES as usize + 4096;
/// Longest string field (node, cluster and device names, reports).
pub const MAX_STRING_BYTES: usize = 4096;

/// A frame that cannot be read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {0:#010x}")]
    BadMagic(u32),
    #[error("frame payload of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLong(usize),
    #[error("frame checksum mismatch (sent {sent:#010x}, computed {computed:#010x})")]
    BadChecksum { sent: u32, computed: u32 },
    #[error("message field `{0}` is truncated")]
    Truncated(&'static str),
    #[error("message field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("unknown message kind {0:#06x}")]
    UnknownKind(u16),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// A frame's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u16,
    pub flags: u16,
    pub len: u32,
    pub crc: u32,
}

/// A received frame: header fields and the checked payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u16,
    pub flags: u16,
    pub payload: Vec<u8>,
}

/// Encodes the header of a frame carrying `payload` (given as parts, sent back to back).
pub fn header(kind: u16, flags: u16, payload: &[&[u8]]) -> [u8; HEADER_LEN] {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    assert!(
        len <= MAX_PAYLOAD_BYTES,
        "frame payload {len} over the limit"
    );
    let mut h = [0u8; HEADER_LEN];
    be::put_u32(&mut h, 0, MAGIC);
    be::put_u16(&mut h, 4, kind);
    be::put_u16(&mut h, 6, flags);
    be::put_u32(&mut h, 8, len as u32);
    let mut crc = crc32c::crc32c(&h[..12]);
    for p in payload {
        crc = crc32c::crc32c_append(crc, p);
    }
    be::put_u32(&mut h, 12, crc);
    h
}

/// Decodes and bounds-checks a header; the checksum is checked with the payload
/// ([`check`]).
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    let magic = be::u32_at(h, 0);
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let len = be::u32_at(h, 8);
    if len as usize > MAX_PAYLOAD_BYTES {
        return Err(FrameError::TooLong(len as usize));
    }
    Ok(Header {
        kind: be::u16_at(h, 4),
        flags: be::u16_at(h, 6),
        len,
        crc: be::u32_at(h, 12),
    })
}

/// Verifies the checksum of `payload` under the raw header `h`.
pub fn check(h: &[u8; HEADER_LEN], hdr: &Header, payload: &[u8]) -> Result<(), FrameError> {
    let computed = crc32c::crc32c_append(crc32c::crc32c(&h[..12]), payload);
    if computed != hdr.crc {
        return Err(FrameError::BadChecksum {
            sent: hdr.crc,
            computed,
        });
    }
    Ok(())
}

/// Decodes one whole frame from `bytes` (header + payload, nothing after it).
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    let h: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated("header"))?;
    let hdr = decode_header(h)?;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != hdr.len as usize {
        return Err(FrameError::Truncated("payload"));
    }
    check(h, &hdr, payload)?;
    Ok(Frame {
        kind: hdr.kind,
        flags: hdr.flags,
        payload: payload.to_vec(),
    })
}

/// Reads a payload of exactly `len` bytes into a fresh buffer without zeroing it first
/// (a 1 MiB write arrives every millisecond on a busy link: zero-filled buffers cost page
/// faults and a memset each, for bytes overwritten at once).
pub async fn read_payload<R: AsyncRead + Unpin>(r: &mut R, len: usize) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(len);
    while payload.len() < len {
        let want = len - payload.len();
        let mut rest = (&mut payload).limit(want);
        if r.read_buf(&mut rest).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(payload)
}

/// Reads one frame. `Ok(None)` on a clean end of stream before a header starts.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut h[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated("header"));
        }
        got += n;
    }
    let hdr = decode_header(&h)?;
    let payload = read_payload(r, hdr.len as usize).await?;
    check(&h, &hdr, &payload)?;
    Ok(Some(Frame {
        kind: hdr.kind,
        flags: hdr.flags,
        payload,
    }))
}

/// Writes one frame whose payload is `parts` back to back (a message's fields, then the
/// data it carries, without copying the data).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u16,
    flags: u16,
    parts: &[&[u8]],
) -> Result<(), FrameError> {
    let h = header(kind, flags, parts);
    w.write_all(&h).await?;
    for p in parts {
        w.write_all(p).await?;
    }
    Ok(())
}

/// Builds a message payload field by field (big-endian).
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Writer {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A string as a u16 length and its UTF-8 bytes; longer than [`MAX_STRING_BYTES`] is a
    /// bug of the sender (callers bound their strings), so it is cut at a char boundary.
    pub fn str(&mut self, s: &str) -> &mut Writer {
        let mut end = s.len().min(MAX_STRING_BYTES);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.buf.extend_from_slice(&s.as_bytes()[..end]);
        self
    }
    /// Bytes as a u32 length and the bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Writer {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
        self
    }
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads a message payload field by field; every read names the field it wanted.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Truncated(field));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, field)?[0])
    }
    pub fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        Ok(be::u16_at(self.take(2, field)?, 0))
    }
    pub fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        Ok(be::u32_at(self.take(4, field)?, 0))
    }
    pub fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        Ok(be::u64_at(self.take(8, field)?, 0))
    }
    pub fn str(&mut self, field: &'static str) -> Result<String, FrameError> {
        let n = usize::from(self.u16(field)?);
        if n > MAX_STRING_BYTES {
            return Err(FrameError::Invalid {
                field,
                reason: format!("{n} bytes; at most {MAX_STRING_BYTES}"),
            });
        }
        let b = self.take(n, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| FrameError::Invalid {
            field,
            reason: "not UTF-8".into(),
        })
    }
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], FrameError> {
        let n = self.u32(field)? as usize;
        if n > MAX_PAYLOAD_BYTES {
            return Err(FrameError::TooLong(n));
        }
        self.take(n, field)
    }
    /// Everything not read yet (a message's trailing data).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    /// Fails unless every byte was read: trailing garbage means the peer and this node
    /// disagree on the message layout.
    pub fn end(&self, field: &'static str) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Invalid {
                field,
                reason: format!("{} unexpected trailing bytes", self.buf.len()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = header(kind, flags, &[payload]).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let good = encode(7, 1, b"hello block");
        assert!(decode(&good).is_ok());
        for byte in 0..good.len() {
            let mut bad = good.clone();
            bad[byte] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip in byte {byte} went unnoticed");
        }
    }

    #[test]
    fn lengths_over_the_limit_are_refused_before_reading() {
        let mut h = header(1, 0, &[]);
        be::put_u32(&mut h, 8, MAX_PAYLOAD_BYTES as u32 + 1);
        assert!(matches!(decode_header(&h), Err(FrameError::TooLong(_))));
    }

    #[tokio::test]
    async fn frames_cross_a_stream_in_parts() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let w = tokio::spawn(async move {
            write_frame(&mut a, 3, 9, &[b"ab", b"", b"cdef"])
                .await
                .unwrap();
            write_frame(&mut a, 4, 0, &[]).await.unwrap();
        });
        let f = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!((f.kind, f.flags, &f.payload[..]), (3, 9, &b"abcdef"[..]));
        let f = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!((f.kind, f.payload.len()), (4, 0));
        w.await.unwrap();
        assert!(read_frame(&mut b).await.unwrap().is_none());
    }

    #[test]
    fn fields_round_trip_and_truncation_names_the_field() {
        let p = Writer::new()
            .u8(1)
            .u16(2)
            .u32(3)
            .u64(4)
            .str("node-é")
            .bytes(b"xyz")
            .finish();
        let mut r = Reader::new(&p);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16("b").unwrap(), 2);
        assert_eq!(r.u32("c").unwrap(), 3);
        assert_eq!(r.u64("d").unwrap(), 4);
        assert_eq!(r.str("e").unwrap(), "node-é");
        assert_eq!(r.bytes("f").unwrap(), b"xyz");
        r.end("end").unwrap();
        let mut r = Reader::new(&p[..5]);
        r.u8("a").unwrap();
        r.u16("b").unwrap();
        assert!(matches!(r.u32("c"), Err(FrameError::Truncated("c"))));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
            let mut r = Reader::new(&bytes);
            let _ = r.str("s");
            let _ = r.bytes("b");
        }

        #[test]
        fn encode_decode_round_trip(kind: u16, flags: u16,
                                    payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let f = decode(&encode(kind, flags, &payload)).unwrap();
            prop_assert_eq!((f.kind, f.flags, f.payload), (kind, flags, payload));
        }
    }
}
