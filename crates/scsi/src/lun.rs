//! LUN addressing (SAM-5 4.7) and REPORT LUNS parameter data (SPC-4 6.33).

use crate::sense::Sense;

pub use esos_common::limits::MAX_LUN;

/// Turns the 8-byte wire LUN (big-endian, as a u64) into a LUN number; `None` for any
/// address we do not hand out (other methods, bus numbers, second-level addressing).
pub fn decode(wire: u64) -> Option<u64> {
    if wire & 0x0000_FFFF_FFFF_FFFF != 0 {
        return None;
    }
    let first = (wire >> 48) as u16;
    match first >> 14 {
        // Peripheral device addressing with bus 0 (SAM-5 4.7.6.2).
        0 if first >> 8 == 0 => Some(u64::from(first & 0xFF)),
        // Flat space addressing (SAM-5 4.7.7.3).
        1 => Some(u64::from(first & 0x3FFF)),
        _ => None,
    }
}

/// The wire form of a LUN number (≤ [`MAX_LUN`]): peripheral addressing below 256, flat
/// space above, as Linux and libiscsi expect.
pub fn encode(lun: u64) -> u64 {
    debug_assert!(lun <= MAX_LUN);
    if lun < 256 {
        lun << 48
    } else {
        (0x4000 | (lun & 0x3FFF)) << 48
    }
}

/// Builds REPORT LUNS data for `luns` (ascending) into `out`.
///
/// SELECT REPORT (SPC-4 table 285): 00h and 02h list every LUN (we have no well-known
/// LUs), 01h lists well-known LUs only (none), 10h-12h (administrative/subsidiary, SPC-5)
/// list the same as 00h since we have no conglomerates.
pub fn report_luns(
    luns: impl Iterator<Item = u64>,
    select: u8,
    out: &mut Vec<u8>,
) -> Result<(), Sense> {
    let list = match select {
        0x00 | 0x02 | 0x10..=0x12 => true,
        0x01 => false,
        _ => return Err(Sense::invalid_cdb_field(2, None)),
    };
    out.clear();
    out.resize(8, 0);
    if list {
        for l in luns {
            out.extend_from_slice(&encode(l).to_be_bytes());
        }
    }
    let len = (out.len() - 8) as u32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lun_round_trip(lun in 0u64..=MAX_LUN) {
            prop_assert_eq!(decode(encode(lun)), Some(lun));
        }
    }

    #[test]
    fn foreign_addresses_are_unmapped() {
        assert_eq!(decode(0x0100_0000_0000_0000), None); // bus 1
        assert_eq!(decode(0x0000_0000_0000_0001), None); // second level
        assert_eq!(decode(0x8000_0000_0000_0000), None); // logical unit addressing
        assert_eq!(decode(0x0005_0000_0000_0000), Some(5));
        assert_eq!(decode(0x4105_0000_0000_0000), Some(0x105));
    }

    #[test]
    fn report_luns_data() {
        let mut out = Vec::new();
        report_luns([0, 1, 300].into_iter(), 0, &mut out).unwrap();
        assert_eq!(&out[0..4], &24u32.to_be_bytes());
        assert_eq!(&out[16..18], &[0, 1]);
        assert_eq!(&out[24..26], &[0x41, 0x2C]);
        report_luns([0].into_iter(), 1, &mut out).unwrap();
        assert_eq!(out, [0; 8]);
        assert!(report_luns([0].into_iter(), 3, &mut out).is_err());
    }
}
