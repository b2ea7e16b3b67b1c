//! READ CAPACITY (10) and (16) (SBC-3 5.15, 5.16).

/// READ CAPACITY(10) parameter data: last LBA (FFFFFFFFh when it does not fit, telling the
/// initiator to use READ CAPACITY(16)) and the block length.
pub fn capacity10(num_blocks: u64, block_size: u32, out: &mut Vec<u8>) {
    let last = u32::try_from(num_blocks.saturating_sub(1)).unwrap_or(u32::MAX);
    out.clear();
    out.extend_from_slice(&last.to_be_bytes());
    out.extend_from_slice(&block_size.to_be_bytes());
}

/// READ CAPACITY(16) parameter data (32 bytes, SBC-3 5.16.2): no protection, 2^`lbppb_exponent`
/// logical blocks per physical block with LOWEST ALIGNED LBA 0 (LBA 0 starts a physical
/// block), LBPME 0 (`provision::capacity16_bits` sets the thin-provisioning bits).
pub fn capacity16(num_blocks: u64, block_size: u32, lbppb_exponent: u8, out: &mut Vec<u8>) {
    out.clear();
    out.resize(32, 0);
    out[0..8].copy_from_slice(&num_blocks.saturating_sub(1).to_be_bytes());
    out[8..12].copy_from_slice(&block_size.to_be_bytes());
    // Byte 13 bits 3-0; the field is 4 bits, larger exponents are a config error.
    out[13] = lbppb_exponent & 0x0F;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_data() {
        let mut out = Vec::new();
        capacity10(1 << 33, 512, &mut out);
        assert_eq!(out, [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]);
        capacity10(2048, 4096, &mut out);
        assert_eq!(out, [0, 0, 0x07, 0xFF, 0, 0, 0x10, 0]);
        capacity16(1 << 33, 512, 0, &mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(&out[12..16], &[0; 4]);
        assert_eq!(
            u64::from_be_bytes(out[0..8].try_into().unwrap()),
            (1 << 33) - 1
        );
        assert_eq!(&out[8..12], &[0, 0, 2, 0]);
        // 4 KiB physical blocks under 512-byte logical ones; LOWEST ALIGNED LBA stays 0.
        capacity16(2048, 512, 3, &mut out);
        assert_eq!(&out[12..16], &[0, 3, 0, 0]);
    }
}
