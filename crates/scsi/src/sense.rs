//! Sense data: keys, additional sense codes and the two encodings (SPC-4 4.5).
//!
//! A failed command is described once as a [`Sense`] value; it is encoded in fixed or
//! descriptor format only when the response is built, because the control mode page's
//! D_SENSE bit (SPC-4 7.5.8) can change between the two at run time.

use crate::{MAX_SENSE_LEN, SenseBytes};

/// SPC-4 4.5.6 sense keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    NoSense = 0x0,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    /// An EXTENDED COPY failed while processing its segments (SPC-4 6.3.4.5).
    CopyAborted = 0xA,
    AbortedCommand = 0xB,
    Miscompare = 0xE,
}

/// An additional sense code and its qualifier (SPC-4 4.5.6, table 28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asc(pub u8, pub u8);

impl Asc {
    pub const NO_ADDITIONAL_SENSE: Asc = Asc(0x00, 0x00);
    /// LOGICAL UNIT NOT READY, OPERATION IN PROGRESS: a transient block-layer failure.
    pub const NOT_READY_OPERATION_IN_PROGRESS: Asc = Asc(0x04, 0x07);
    pub const NOT_READY_SANITIZE_IN_PROGRESS: Asc = Asc(0x04, 0x1B);
    pub const SANITIZE_COMMAND_FAILED: Asc = Asc(0x31, 0x03);
    pub const WRITE_ERROR: Asc = Asc(0x0C, 0x00);
    pub const INVALID_FIELD_IN_INFORMATION_UNIT: Asc = Asc(0x0E, 0x03);
    pub const UNRECOVERED_READ_ERROR: Asc = Asc(0x11, 0x00);
    pub const MISCOMPARE_DURING_VERIFY: Asc = Asc(0x1D, 0x00);
    pub const PARAMETER_LIST_LENGTH_ERROR: Asc = Asc(0x1A, 0x00);
    pub const INVALID_COMMAND_OPERATION_CODE: Asc = Asc(0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Asc = Asc(0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Asc = Asc(0x24, 0x00);
    pub const LOGICAL_UNIT_NOT_SUPPORTED: Asc = Asc(0x25, 0x00);
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Asc = Asc(0x26, 0x00);
    pub const WRITE_PROTECTED: Asc = Asc(0x27, 0x00);
    pub const SOFTWARE_WRITE_PROTECTED: Asc = Asc(0x27, 0x02);
    /// SPACE ALLOCATION FAILED WRITE PROTECT: a thin LU ran out of backing space
    /// (SBC-3 4.7.3.7).
    pub const SPACE_ALLOCATION_FAILED_WRITE_PROTECT: Asc = Asc(0x27, 0x07);
    /// NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED (a medium was loaded).
    pub const MEDIUM_MAY_HAVE_CHANGED: Asc = Asc(0x28, 0x00);
    pub const POWER_ON_RESET: Asc = Asc(0x29, 0x00);
    pub const POWER_ON_OCCURRED: Asc = Asc(0x29, 0x01);
    pub const BUS_RESET_OCCURRED: Asc = Asc(0x29, 0x02);
    pub const DEVICE_RESET_OCCURRED: Asc = Asc(0x29, 0x03);
    pub const MODE_PARAMETERS_CHANGED: Asc = Asc(0x2A, 0x01);
    /// Tasks of this nexus were aborted by another nexus (SAM-5 5.6, TAS 0).
    pub const COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: Asc = Asc(0x2F, 0x00);
    pub const CAPACITY_DATA_CHANGED: Asc = Asc(0x2A, 0x09);
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Asc = Asc(0x39, 0x00);
    pub const REPORTED_LUNS_DATA_CHANGED: Asc = Asc(0x3F, 0x0E);
    pub const MEDIUM_NOT_PRESENT: Asc = Asc(0x3A, 0x00);
    pub const MEDIUM_NOT_PRESENT_TRAY_OPEN: Asc = Asc(0x3A, 0x02);
    pub const INTERNAL_TARGET_FAILURE: Asc = Asc(0x44, 0x00);
    pub const INVALID_MESSAGE_ERROR: Asc = Asc(0x49, 0x00);
    // Third-party copy (SPC-4 6.3, table 28).
    pub const OPERATION_IN_PROGRESS: Asc = Asc(0x00, 0x16);
    pub const THIRD_PARTY_DEVICE_FAILURE: Asc = Asc(0x0D, 0x01);
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: Asc = Asc(0x0D, 0x02);
    pub const INCORRECT_COPY_TARGET_DEVICE_TYPE: Asc = Asc(0x0D, 0x03);
    pub const TOO_MANY_TARGET_DESCRIPTORS: Asc = Asc(0x26, 0x06);
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: Asc = Asc(0x26, 0x07);
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Asc = Asc(0x26, 0x08);
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: Asc = Asc(0x26, 0x09);
    pub const INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION: Asc = Asc(0x26, 0x0C);
    pub const MEDIUM_REMOVAL_PREVENTED: Asc = Asc(0x53, 0x02);
}

/// Where the offending field is (SPC-4 4.5.2.4.2, sense-key specific field pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// True when the field is in the CDB, false when in the parameter list (C/D bit).
    pub in_cdb: bool,
    /// Byte offset of the field.
    pub byte: u16,
    /// Bit of the field's most significant bit, when it is not a whole byte.
    pub bit: Option<u8>,
}

impl FieldPointer {
    pub const fn cdb(byte: u16, bit: Option<u8>) -> FieldPointer {
        FieldPointer {
            in_cdb: true,
            byte,
            bit,
        }
    }
    pub const fn param(byte: u16, bit: Option<u8>) -> FieldPointer {
        FieldPointer {
            in_cdb: false,
            byte,
            bit,
        }
    }

    /// The three sense-key specific bytes, SKSV set.
    fn encode(self) -> [u8; 3] {
        let mut b0 = 0x80;
        if self.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = self.bit {
            b0 |= 0x08 | (bit & 0x07);
        }
        let [hi, lo] = self.byte.to_be_bytes();
        [b0, hi, lo]
    }
}

/// One sense condition, independent of its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: Asc,
    /// INFORMATION field (e.g. the miscompare offset for VERIFY, SBC-3 5.24).
    pub info: Option<u64>,
    pub field: Option<FieldPointer>,
    /// PROGRESS INDICATION (SPC-4 4.5.2.4.4): done / 65536 of a long operation, reported
    /// in the sense-key specific field when there is no field pointer.
    pub progress: Option<u16>,
}

/// Fixed-format sense length we produce: 8-byte header plus 10 additional bytes.
const FIXED_LEN: usize = 18;

impl Sense {
    pub const fn new(key: SenseKey, asc: Asc) -> Sense {
        Sense {
            key,
            asc,
            info: None,
            field: None,
            progress: None,
        }
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB, pointing at `byte` (and `bit`).
    pub const fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Sense {
        Sense {
            key: SenseKey::IllegalRequest,
            asc: Asc::INVALID_FIELD_IN_CDB,
            info: None,
            field: Some(FieldPointer::cdb(byte, bit)),
            progress: None,
        }
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, pointing at `byte` (and `bit`).
    pub const fn invalid_param_field(byte: u16, bit: Option<u8>) -> Sense {
        Sense {
            key: SenseKey::IllegalRequest,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            info: None,
            field: Some(FieldPointer::param(byte, bit)),
            progress: None,
        }
    }

    /// NOT READY with a progress indication (e.g. SANITIZE IN PROGRESS, SBC-4 4.11).
    pub const fn not_ready_progress(asc: Asc, progress: u16) -> Sense {
        Sense {
            key: SenseKey::NotReady,
            asc,
            info: None,
            field: None,
            progress: Some(progress),
        }
    }

    /// The three sense-key specific bytes, SKSV set, when there are any.
    fn key_specific(&self) -> Option<[u8; 3]> {
        match (self.field, self.progress) {
            (Some(f), _) => Some(f.encode()),
            (None, Some(p)) => {
                let [hi, lo] = p.to_be_bytes();
                Some([0x80, hi, lo])
            }
            (None, None) => None,
        }
    }

    pub const fn illegal(asc: Asc) -> Sense {
        Sense::new(SenseKey::IllegalRequest, asc)
    }

    /// Encodes as current-error sense data; `descriptor` selects the format (SPC-4 4.5.1).
    pub fn encode(&self, descriptor: bool) -> SenseBytes {
        let mut out = SenseBytes::EMPTY;
        let len = if descriptor {
            self.encode_descriptor(&mut out.bytes)
        } else {
            self.encode_fixed(&mut out.bytes)
        };
        out.len = len as u8;
        out
    }

    /// SPC-4 4.5.3: fixed format, response code 70h.
    fn encode_fixed(&self, b: &mut [u8; MAX_SENSE_LEN]) -> usize {
        b[0] = 0x70;
        b[2] = self.key as u8;
        if let Some(info) = self.info {
            // The fixed INFORMATION field holds 4 bytes; VALID only when the value fits.
            if let Ok(v) = u32::try_from(info) {
                b[0] |= 0x80;
                b[3..7].copy_from_slice(&v.to_be_bytes());
            }
        }
        b[7] = (FIXED_LEN - 8) as u8;
        b[12] = self.asc.0;
        b[13] = self.asc.1;
        if let Some(k) = self.key_specific() {
            b[15..18].copy_from_slice(&k);
        }
        FIXED_LEN
    }

    /// SPC-4 4.5.2: descriptor format, response code 72h, with an information
    /// descriptor (4.5.2.2) and a sense-key specific descriptor (4.5.2.4) when needed.
    fn encode_descriptor(&self, b: &mut [u8; MAX_SENSE_LEN]) -> usize {
        b[0] = 0x72;
        b[1] = self.key as u8;
        b[2] = self.asc.0;
        b[3] = self.asc.1;
        let mut at = 8;
        if let Some(info) = self.info {
            b[at] = 0x00;
            b[at + 1] = 0x0A;
            b[at + 2] = 0x80;
            b[at + 4..at + 12].copy_from_slice(&info.to_be_bytes());
            at += 12;
        }
        if let Some(k) = self.key_specific() {
            b[at] = 0x02;
            b[at + 1] = 0x06;
            b[at + 4..at + 7].copy_from_slice(&k);
            at += 8;
        }
        b[7] = (at - 8) as u8;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_layout() {
        let s = Sense::invalid_cdb_field(2, Some(5)).encode(false);
        let b = s.as_slice();
        assert_eq!(b.len(), 18);
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x05);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x24, 0x00));
        assert_eq!(&b[15..18], &[0x80 | 0x40 | 0x08 | 5, 0, 2]);
    }

    #[test]
    fn fixed_format_information() {
        let mut s = Sense::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY);
        s.info = Some(0x1234);
        let e = s.encode(false);
        let b = e.as_slice();
        assert_eq!(b[0], 0xF0);
        assert_eq!(&b[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!(b[2], 0x0E);
        // Too large for the fixed field: VALID stays clear.
        s.info = Some(1 << 40);
        assert_eq!(s.encode(false).as_slice()[0], 0x70);
    }

    #[test]
    fn descriptor_format_layout() {
        let mut s = Sense::invalid_cdb_field(10, None);
        s.info = Some(7);
        let e = s.encode(true);
        let b = e.as_slice();
        assert_eq!(b[0], 0x72);
        assert_eq!((b[1], b[2], b[3]), (0x05, 0x24, 0x00));
        assert_eq!(b[7] as usize, b.len() - 8);
        assert_eq!(&b[8..12], &[0x00, 0x0A, 0x80, 0x00]);
        assert_eq!(u64::from_be_bytes(b[12..20].try_into().unwrap()), 7);
        assert_eq!(&b[20..28], &[0x02, 0x06, 0, 0, 0xC0, 0, 10, 0]);
    }

    #[test]
    fn progress_indication_in_both_formats() {
        let s = Sense::not_ready_progress(Asc::NOT_READY_SANITIZE_IN_PROGRESS, 0x1234);
        let f = s.encode(false);
        let b = f.as_slice();
        assert_eq!((b[2], b[12], b[13]), (0x02, 0x04, 0x1B));
        assert_eq!(&b[15..18], &[0x80, 0x12, 0x34]);
        let d = s.encode(true);
        assert_eq!(
            &d.as_slice()[8..16],
            &[0x02, 0x06, 0, 0, 0x80, 0x12, 0x34, 0]
        );
    }

    #[test]
    fn descriptor_without_extras_is_eight_bytes() {
        let e = Sense::new(SenseKey::UnitAttention, Asc::POWER_ON_RESET).encode(true);
        assert_eq!(e.as_slice(), &[0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]);
    }
}
