//! READ DEFECT DATA(10) and (12) (SBC-3 5.17, 5.18): virtual media have no defects.

use super::{Done, Outcome};
use crate::IoBuf;

/// Builds an empty defect list in the requested format. PLISTV/GLISTV echo the requested
/// lists: both exist and are empty, so they are valid (SBC-3 5.17).
pub fn read_defect_data(
    twelve: bool,
    plist: bool,
    glist: bool,
    format: u8,
    alloc_len: u32,
    buf: &mut IoBuf,
) -> Outcome {
    let flags = (if plist { 0x10 } else { 0 }) | (if glist { 0x08 } else { 0 }) | (format & 0x07);
    buf.clear();
    if twelve {
        // Byte 1 flags, bytes 2-3 generation code (0: not reported), 4-7 list length.
        buf.extend_from_slice(&[0, flags, 0, 0, 0, 0, 0, 0]);
    } else {
        // Byte 1 flags, bytes 2-3 list length.
        buf.extend_from_slice(&[0, flags, 0, 0]);
    }
    Ok(Done::data(buf.len(), alloc_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_in_the_requested_format() {
        let mut b = Vec::new();
        let d = read_defect_data(false, true, false, 5, 32, &mut b).unwrap();
        assert_eq!(b, [0, 0x15, 0, 0]);
        assert_eq!(d.data_in, 4);
        let d = read_defect_data(true, false, true, 0, 2, &mut b).unwrap();
        assert_eq!(b, [0, 0x08, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.data_in, 2);
    }
}
