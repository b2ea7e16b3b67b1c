//! Decoder for SANITIZE (SBC-4 5.30; opcode 48h). Kept beside `cdb.rs` for its field
//! helpers; `disk/sanitize.rs` parses the OVERWRITE parameter list and runs the operation.

use esos_common::be::u16_at;

use super::{Cdb, Sanitize, SanitizeAction, reserved};
use crate::sense::Sense;

/// SANITIZE service actions (SBC-4 table 68).
pub mod sa {
    pub const OVERWRITE: u8 = 0x01;
    pub const BLOCK_ERASE: u8 = 0x02;
    pub const CRYPTOGRAPHIC_ERASE: u8 = 0x03;
    pub const EXIT_FAILURE_MODE: u8 = 0x1F;
}

/// Byte 1: IMMED (7), ZNR (6, zoned devices only, so refused), AUSE (5), SERVICE ACTION
/// (4-0); bytes 2-6 reserved; bytes 7-8 PARAMETER LIST LENGTH.
pub(super) fn decode(c: &[u8]) -> Result<Cdb, Sense> {
    reserved(c, 1, 0xBF)?;
    for byte in 2..=6 {
        reserved(c, byte, 0)?;
    }
    let param_len = u16_at(c, 7);
    let action = match c[1] & 0x1F {
        sa::OVERWRITE => SanitizeAction::Overwrite,
        sa::BLOCK_ERASE => SanitizeAction::BlockErase,
        sa::EXIT_FAILURE_MODE => SanitizeAction::ExitFailureMode,
        // Data is not stored encrypted: there is no key to destroy.
        sa::CRYPTOGRAPHIC_ERASE => return Err(Sense::invalid_cdb_field(1, Some(4))),
        _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
    };
    if action != SanitizeAction::Overwrite && param_len != 0 {
        // SBC-4 5.30.3-5.30.5: these service actions take no parameter list.
        return Err(Sense::invalid_cdb_field(7, None));
    }
    if action == SanitizeAction::Overwrite && param_len < 5 {
        // SBC-4 5.30.2: at least the header and one pattern byte.
        return Err(Sense::invalid_cdb_field(7, None));
    }
    Ok(Cdb::Sanitize(Sanitize {
        immed: c[1] & 0x80 != 0,
        ause: c[1] & 0x20 != 0,
        action,
        param_len,
    }))
}

/// CDB encoder for tests.
#[cfg(test)]
pub fn encode(immed: bool, ause: bool, service_action: u8, param_len: u16) -> Vec<u8> {
    let mut c = vec![0u8; 10];
    c[0] = super::op::SANITIZE;
    c[1] = service_action & 0x1F | if immed { 0x80 } else { 0 } | if ause { 0x20 } else { 0 };
    c[7..9].copy_from_slice(&param_len.to_be_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdb::decode as decode_cdb;
    use crate::sense::FieldPointer;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(immed: bool, ause: bool, which in 0usize..3, len in 5u16..) {
            let (code, action, len) = [
                (sa::OVERWRITE, SanitizeAction::Overwrite, len),
                (sa::BLOCK_ERASE, SanitizeAction::BlockErase, 0),
                (sa::EXIT_FAILURE_MODE, SanitizeAction::ExitFailureMode, 0),
            ][which];
            let got = decode_cdb(&encode(immed, ause, code, len)).unwrap();
            prop_assert_eq!(got, Cdb::Sanitize(Sanitize { immed, ause, action, param_len: len }));
        }
    }

    #[test]
    fn refusals_point_at_the_field() {
        let field = |c: &[u8]| decode_cdb(c).unwrap_err().field;
        // ZNR and every reserved byte.
        let mut c = encode(false, false, sa::BLOCK_ERASE, 0);
        c[1] |= 0x40;
        assert_eq!(field(&c), Some(FieldPointer::cdb(1, Some(6))));
        for byte in 2..=6 {
            let mut c = encode(false, false, sa::BLOCK_ERASE, 0);
            c[byte] = 1;
            assert_eq!(field(&c), Some(FieldPointer::cdb(byte as u16, Some(0))));
        }
        // Unknown service actions and CRYPTOGRAPHIC ERASE.
        for code in (0..=0x1E).filter(|&s| s != sa::OVERWRITE && s != sa::BLOCK_ERASE) {
            let c = encode(false, false, code, 0);
            assert_eq!(field(&c), Some(FieldPointer::cdb(1, Some(4))), "{code:#x}");
        }
        // Parameter list lengths.
        for (code, len) in [
            (sa::BLOCK_ERASE, 8),
            (sa::EXIT_FAILURE_MODE, 1),
            (sa::OVERWRITE, 0),
            (sa::OVERWRITE, 4),
        ] {
            let c = encode(false, false, code, len);
            assert_eq!(
                field(&c),
                Some(FieldPointer::cdb(7, None)),
                "{code:#x}/{len}"
            );
        }
    }
}
