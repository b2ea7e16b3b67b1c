//! CRC32C header and data digests (RFC 7143 12.1, 11.2.3).
//!
//! The `crc32c` crate uses the SSE4.2 / ARMv8 CRC instructions when the CPU has them.
//! On the wire the digest is the finished CRC32C value in little-endian byte order, as every
//! interoperable implementation (Linux, libiscsi, SCST) sends it.

/// Digest of a header (BHS plus AHS).
pub fn header(bhs: &[u8], ahs: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(bhs), ahs)
}

/// Digest of a data segment including its zero padding to a 4-byte boundary.
pub fn data(segment: &[u8]) -> u32 {
    let pad = crate::pdu::pad_len(segment.len());
    crc32c::crc32c_append(crc32c::crc32c(segment), &[0u8; 3][..pad])
}

/// The four bytes sent on the wire for `digest`.
pub fn to_wire(digest: u32) -> [u8; 4] {
    digest.to_le_bytes()
}

/// Reads a digest received on the wire.
pub fn from_wire(bytes: [u8; 4]) -> u32 {
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // RFC 3720 B.4: 32 bytes of zeros have CRC32C 0x8a9136aa; on the wire: aa 36 91 8a.
        assert_eq!(data(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(to_wire(0x8a91_36aa), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(from_wire(to_wire(0x1234_5678)), 0x1234_5678);
    }

    #[test]
    fn padding_is_covered() {
        assert_eq!(data(&[1, 2, 3]), crc32c::crc32c(&[1, 2, 3, 0]));
        assert_eq!(header(&[5; 48], &[]), crc32c::crc32c(&[5; 48]));
    }
}
