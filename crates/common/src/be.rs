//! Big-endian field access at byte offsets, for CDBs, PDUs and parameter lists.
//!
//! Readers panic when the field runs past the slice, like slice indexing: callers check a
//! buffer's length once (a CDB's length from its opcode, a PDU's fixed 48-byte header)
//! and then read fields at constant offsets inside it.

/// The 16-bit big-endian field at `at`.
#[inline]
pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The 24-bit big-endian field at `at` (iSCSI DataSegmentLength, SCSI allocation lengths).
#[inline]
pub fn u24_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
}

/// The 32-bit big-endian field at `at`.
#[inline]
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The 64-bit big-endian field at `at`.
#[inline]
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

/// Stores `v` big-endian at `at`.
#[inline]
pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Stores the low 24 bits of `v` big-endian at `at`.
#[inline]
pub fn put_u24(b: &mut [u8], at: usize, v: u32) {
    debug_assert!(v < 1 << 24, "{v} does not fit 24 bits");
    b[at..at + 3].copy_from_slice(&v.to_be_bytes()[1..]);
}

/// Stores `v` big-endian at `at`.
#[inline]
pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Stores `v` big-endian at `at`.
#[inline]
pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(a in any::<u16>(), b in 0u32..1 << 24, c in any::<u32>(), d in any::<u64>()) {
            let mut buf = [0u8; 1 + 2 + 3 + 4 + 8];
            put_u16(&mut buf, 1, a);
            put_u24(&mut buf, 3, b);
            put_u32(&mut buf, 6, c);
            put_u64(&mut buf, 10, d);
            prop_assert_eq!(buf[0], 0);
            prop_assert_eq!((u16_at(&buf, 1), u24_at(&buf, 3), u32_at(&buf, 6), u64_at(&buf, 10)), (a, b, c, d));
        }
    }

    #[test]
    fn byte_order() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&b, 0), 0x0102);
        assert_eq!(u24_at(&b, 1), 0x02_0304);
        assert_eq!(u32_at(&b, 4), 0x0506_0708);
        assert_eq!(u64_at(&b, 0), 0x0102_0304_0506_0708);
    }
}
