//! CDB decoding: pure functions from bytes to typed commands (SPC-4, SBC-3).
//!
//! Decoding rejects every field we do not implement with the exact byte/bit, so the
//! caller can answer INVALID FIELD IN CDB with a sense-key specific field pointer.

use esos_common::be::{u16_at, u32_at, u64_at};

use crate::sense::{Asc, Sense};

/// Operation codes the engine knows.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    /// MMC-6 6.6 (CD/DVD units only, `mmc/cdb.rs`).
    pub const GET_CONFIGURATION: u8 = 0x46;
    /// MMC-6 6.7 (CD/DVD units only, `mmc/cdb.rs`).
    pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4A;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8A;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;

    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const WRITE_SAME_16: u8 = 0x93;
    /// SERVICE ACTION IN(16) service action of GET LBA STATUS (SBC-3 5.16).
    pub const SA_GET_LBA_STATUS: u8 = 0x12;

    /// SERVICE ACTION IN(16) service action of READ CAPACITY(16).
    pub const SA_READ_CAPACITY_16: u8 = 0x10;

    pub const PRE_FETCH_10: u8 = 0x34;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
    /// SANITIZE (SBC-4 5.30).
    pub const SANITIZE: u8 = 0x48;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    /// Third-party copy (SPC-4 6.3, 6.18), decoded in `cdb/copy.rs`.
    pub const EXTENDED_COPY: u8 = 0x83;
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;
    /// MAINTENANCE IN service action of REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
    pub const SA_REPORT_SUPPORTED_OPCODES: u8 = 0x0C;
    /// MAINTENANCE IN service action of REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.36).
    pub const SA_REPORT_SUPPORTED_TMFS: u8 = 0x0D;
    /// MAINTENANCE IN service action of REPORT TARGET PORT GROUPS (SPC-4 6.27).
    pub const SA_REPORT_TARGET_PORT_GROUPS: u8 = 0x0A;
    pub const MAINTENANCE_OUT: u8 = 0xA4;
    /// MAINTENANCE OUT service action of SET TARGET PORT GROUPS (SPC-4 6.39).
    pub const SA_SET_TARGET_PORT_GROUPS: u8 = 0x0A;
}

mod alua;
pub mod copy;
mod decode;
mod extra;
pub(crate) mod pr;
mod provision;
pub(crate) mod sanitize;

pub use decode::decode;
#[cfg(test)]
pub use provision::encode as provision_encode;

/// A block range command's common fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub lba: u64,
    /// Blocks to transfer; READ(6)/WRITE(6) length 0 is already turned into 256.
    pub blocks: u32,
    pub fua: bool,
    pub dpo: bool,
    /// CDB byte of the TRANSFER LENGTH field, for the field pointer when it is too large.
    pub len_byte: u16,
}

/// Mode page control (SPC-4 6.11.1, table 166).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    Current,
    Changeable,
    Default,
    Saved,
}

/// WRITE SAME(10)/(16) fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSame {
    pub lba: u64,
    /// NUMBER OF LOGICAL BLOCKS; 0 is refused later (we report WSNZ 1).
    pub blocks: u32,
    /// Deallocate the blocks when the data allows it.
    pub unmap: bool,
    pub anchor: bool,
    /// No data-out buffer: the block is all zeros (WRITE SAME(16) only).
    pub ndob: bool,
    /// CDB byte of NUMBER OF LOGICAL BLOCKS, for the field pointer.
    pub len_byte: u16,
}

/// What a SANITIZE asks for. CRYPTOGRAPHIC ERASE is never decoded: data is not stored
/// encrypted, so there is no key whose destruction would erase it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    /// Write the initialization pattern over every block (parameter list required).
    Overwrite,
    /// Deallocate (thin) or zero every block.
    BlockErase,
    /// Leave the failed state of an earlier sanitize that allowed it (AUSE 1).
    ExitFailureMode,
}

/// SANITIZE fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sanitize {
    /// Return status once the CDB and parameter list are validated; the operation goes on.
    pub immed: bool,
    /// Allow unrestricted sanitize exit: a failure may be left with EXIT FAILURE MODE.
    pub ause: bool,
    pub action: SanitizeAction,
    /// PARAMETER LIST LENGTH; 0 for everything but OVERWRITE (checked here), 5 up to the
    /// block length + 4 for OVERWRITE (checked against the block length on execution).
    pub param_len: u16,
}

/// A command only a CD/DVD unit accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmcCdb {
    /// READ TOC/PMA/ATIP (MMC-6 6.33): `format` 0 (TOC) or 1 (session information).
    ReadToc {
        msf: bool,
        format: u8,
        track: u8,
        alloc_len: u32,
    },
    /// GET CONFIGURATION (MMC-6 6.6): `rt` 0 all, 1 current, 2 one feature.
    GetConfiguration { rt: u8, start: u16, alloc_len: u32 },
    /// GET EVENT STATUS NOTIFICATION, polled (MMC-6 6.7).
    GetEventStatus { classes: u8, alloc_len: u32 },
    /// READ DISC INFORMATION, standard disc information (MMC-6 6.22).
    ReadDiscInfo { alloc_len: u32 },
    /// READ TRACK INFORMATION (MMC-6 6.27): `addr_type` 0 LBA, 1 track, 2 session.
    ReadTrackInfo {
        addr_type: u8,
        addr: u32,
        alloc_len: u32,
    },
    /// MECHANISM STATUS (MMC-6 6.11).
    MechanismStatus { alloc_len: u32 },
}

impl MmcCdb {
    /// Describing the disc needs a disc; describing the drive does not.
    pub fn needs_medium(&self) -> bool {
        matches!(
            self,
            MmcCdb::ReadToc { .. } | MmcCdb::ReadDiscInfo { .. } | MmcCdb::ReadTrackInfo { .. }
        )
    }
}

/// A decoded CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cdb {
    TestUnitReady,
    /// UNMAP (SBC-3 5.28); the parameter list is parsed by `disk/provision.rs`.
    Unmap {
        anchor: bool,
        param_len: u32,
    },
    /// WRITE SAME(10)/(16) (SBC-3 5.40, 5.41).
    WriteSame(WriteSame),
    /// GET LBA STATUS (SBC-3 5.16).
    GetLbaStatus {
        lba: u64,
        alloc_len: u32,
    },
    /// PERSISTENT RESERVE IN (SPC-4 6.15).
    PersistentReserveIn {
        action: u8,
        alloc_len: u32,
    },
    /// PERSISTENT RESERVE OUT (SPC-4 6.16).
    PersistentReserveOut {
        action: u8,
        scope: u8,
        pr_type: u8,
        param_len: u32,
    },
    /// SPC-2 RESERVE(6)/(10), without third-party reservations.
    Reserve,
    /// SPC-2 RELEASE(6)/(10).
    Release,
    RequestSense {
        desc: bool,
        alloc_len: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc_len: u32,
    },
    ReportLuns {
        select: u8,
        alloc_len: u32,
    },
    ReadCapacity10,
    ReadCapacity16 {
        alloc_len: u32,
    },
    Read(BlockRange),
    Write(BlockRange),
    /// WRITE AND VERIFY: the verification of data just written is a durable write.
    WriteVerify(BlockRange),
    /// VERIFY with BYTCHK 0 (range check) or 1 (compare the data-out buffer).
    Verify {
        range: BlockRange,
        bytchk: bool,
    },
    SyncCache {
        lba: u64,
        blocks: u32,
        immed: bool,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: PageControl,
        page: u8,
        subpage: u8,
        alloc_len: u32,
    },
    ModeSelect {
        ten: bool,
        pf: bool,
        sp: bool,
        param_len: u32,
    },
    StartStopUnit {
        immed: bool,
        power_condition: u8,
        /// NO_FLUSH: stopping or ejecting need not write the volatile cache first.
        no_flush: bool,
        loej: bool,
        start: bool,
    },
    /// PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.13, MMC-6 6.28): the PREVENT field (0-3).
    PreventAllow {
        prevent: u8,
    },
    /// A command only CD/DVD units accept (decoded by `mmc/cdb.rs`).
    Mmc(MmcCdb),
    /// PRE-FETCH(10)/(16) (SBC-3 5.11, 5.12); `blocks` 0 means "to the last LBA".
    PreFetch {
        lba: u64,
        blocks: u32,
        immed: bool,
    },
    /// READ DEFECT DATA(10)/(12) (SBC-3 5.17, 5.18).
    ReadDefectData {
        twelve: bool,
        plist: bool,
        glist: bool,
        format: u8,
        alloc_len: u32,
    },
    /// ORWRITE(16) (SBC-3 5.13): medium := medium OR data-out, atomically.
    OrWrite(BlockRange),
    /// COMPARE AND WRITE (SBC-3 5.2): `blocks` is NUMBER OF LOGICAL BLOCKS; the data-out
    /// buffer holds twice that (verify data, then write data).
    CompareAndWrite(BlockRange),
    /// WRITE ATOMIC(16) (SBC-4 5.48), without atomic boundaries.
    WriteAtomic(BlockRange),
    /// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
    ReportOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        sa: u16,
        alloc_len: u32,
    },
    /// REPORT TARGET PORT GROUPS (SPC-4 6.27); `extended` asks for the extended header.
    ReportTargetPortGroups {
        extended: bool,
        alloc_len: u32,
    },
    /// SET TARGET PORT GROUPS (SPC-4 6.39).
    SetTargetPortGroups {
        param_len: u32,
    },
    /// EXTENDED COPY (LID1) (SPC-4 6.3); the parameter list is parsed by `copy::parse_list`.
    ExtendedCopy {
        param_len: u32,
    },
    /// RECEIVE COPY RESULTS (SPC-4 6.18).
    ReceiveCopyResults {
        action: u8,
        list_id: u8,
        alloc_len: u32,
    },
    /// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.36).
    ReportTmfs {
        repd: bool,
        alloc_len: u32,
    },
    /// SANITIZE (SBC-4 5.30), run by `disk/sanitize.rs`.
    Sanitize(Sanitize),
}

/// Reservation CDBs (decoded in `cdb/pr.rs`).
impl Cdb {
    pub(crate) fn is_reservation(opcode: u8) -> bool {
        matches!(opcode, 0x16 | 0x17 | 0x56 | 0x57 | 0x5E | 0x5F)
    }
}

/// CDB length for an operation code's group (SPC-4 4.3.2), `None` for variable/vendor groups.
pub fn group_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

fn invalid_opcode() -> Sense {
    Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE)
}

/// Fails with a field pointer at the first set bit of `byte` that `allowed` does not cover.
fn reserved(cdb: &[u8], byte: usize, allowed: u8) -> Result<(), Sense> {
    let bad = cdb[byte] & !allowed;
    if bad == 0 {
        Ok(())
    } else {
        Err(Sense::invalid_cdb_field(
            byte as u16,
            Some(7 - bad.leading_zeros() as u8),
        ))
    }
}

/// SAM-5 5.2 control byte: NACA needs NormACA (we report 0); LINK is obsolete.
fn control(cdb: &[u8], byte: usize) -> Result<(), Sense> {
    reserved(cdb, byte, 0xC0)
}

/// True for the READ opcodes, whose handler overwrites the whole data-in buffer (so the
/// transport's scratch bytes need not be cleared first).
pub fn is_read(opcode: u8) -> bool {
    matches!(opcode, op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16)
}

/// SBC-3 4.22: RDPROTECT/WRPROTECT/VRPROTECT other than 0 need protection information,
/// which we do not format.
fn protect(c: &[u8]) -> Result<(), Sense> {
    if c[1] & 0xE0 != 0 {
        return Err(Sense::invalid_cdb_field(1, Some(7)));
    }
    Ok(())
}

/// LBA and TRANSFER LENGTH of the 10/12/16-byte block commands, which share their layout.
fn range(c: &[u8]) -> BlockRange {
    let (lba, blocks, len_byte) = match c.len() {
        10 => (u64::from(u32_at(c, 2)), u32::from(u16_at(c, 7)), 7),
        12 => (u64::from(u32_at(c, 2)), u32_at(c, 6), 6),
        _ => (u64_at(c, 2), u32_at(c, 10), 10),
    };
    BlockRange {
        lba,
        blocks,
        fua: c[1] & 0x08 != 0,
        dpo: c[1] & 0x10 != 0,
        len_byte,
    }
}

/// Encoders for the read/write CDBs, used by round-trip tests and by in-crate tests that
/// drive the engine with real CDB bytes.
#[cfg(test)]
pub mod encode {
    use super::op;

    /// Builds READ/WRITE CDB bytes of `len` (6, 10, 12 or 16).
    pub fn rw(write: bool, len: usize, lba: u64, blocks: u32, fua: bool, dpo: bool) -> Vec<u8> {
        let mut c = vec![0u8; len];
        let flags = (if fua { 0x08 } else { 0 }) | (if dpo { 0x10 } else { 0 });
        match len {
            6 => {
                c[0] = if write { op::WRITE_6 } else { op::READ_6 };
                c[1] = ((lba >> 16) & 0x1F) as u8;
                c[2] = (lba >> 8) as u8;
                c[3] = lba as u8;
                c[4] = if blocks == 256 { 0 } else { blocks as u8 };
            }
            10 => {
                c[0] = if write { op::WRITE_10 } else { op::READ_10 };
                c[1] = flags;
                c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
            }
            12 => {
                c[0] = if write { op::WRITE_12 } else { op::READ_12 };
                c[1] = flags;
                c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                c[6..10].copy_from_slice(&blocks.to_be_bytes());
            }
            _ => {
                c[0] = if write { op::WRITE_16 } else { op::READ_16 };
                c[1] = flags;
                c[2..10].copy_from_slice(&lba.to_be_bytes());
                c[10..14].copy_from_slice(&blocks.to_be_bytes());
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::{FieldPointer, SenseKey};
    use proptest::prelude::*;

    fn rw_case() -> impl Strategy<Value = (bool, usize, u64, u32, bool, bool)> {
        (
            any::<bool>(),
            prop_oneof![Just(6usize), Just(10), Just(12), Just(16)],
        )
            .prop_flat_map(|(w, len)| {
                let (lba, blocks): (BoxedStrategy<u64>, BoxedStrategy<u32>) = match len {
                    6 => ((0u64..1 << 21).boxed(), (1u32..=256).boxed()),
                    10 => ((0u64..1 << 32).boxed(), (0u32..1 << 16).boxed()),
                    12 => ((0u64..1 << 32).boxed(), any::<u32>().boxed()),
                    _ => (any::<u64>().boxed(), any::<u32>().boxed()),
                };
                let flags = if len == 6 {
                    (Just(false), Just(false)).boxed()
                } else {
                    (any::<bool>(), any::<bool>()).boxed()
                };
                (Just(w), Just(len), lba, blocks, flags)
                    .prop_map(|(w, len, lba, blocks, (fua, dpo))| (w, len, lba, blocks, fua, dpo))
            })
    }

    proptest! {
        #[test]
        fn rw_round_trip((write, len, lba, blocks, fua, dpo) in rw_case()) {
            let bytes = encode::rw(write, len, lba, blocks, fua, dpo);
            let got = decode(&bytes).unwrap();
            let r = match (got, write) {
                (Cdb::Read(r), false) | (Cdb::Write(r), true) => r,
                other => panic!("wrong command {other:?}"),
            };
            prop_assert_eq!((r.lba, r.blocks, r.fua, r.dpo), (lba, blocks, fua, dpo));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn read6_zero_length_is_256_blocks() {
        let c = [op::READ_6, 0, 0, 5, 0, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::Read(BlockRange {
                lba: 5,
                blocks: 256,
                fua: false,
                dpo: false,
                len_byte: 4
            })
        );
    }

    #[test]
    fn unknown_and_short_cdbs_are_invalid_opcode() {
        for c in [
            &[0x59u8, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[op::READ_10, 0, 0][..],
            &[][..],
            &[0x7F; 32][..],
        ] {
            let e = decode(c).unwrap_err();
            assert_eq!(
                (e.key, e.asc),
                (
                    SenseKey::IllegalRequest,
                    Asc::INVALID_COMMAND_OPERATION_CODE
                )
            );
        }
    }

    #[test]
    fn protect_field_points_at_byte_1_bit_7() {
        let mut c = encode::rw(true, 10, 0, 1, false, false);
        c[1] |= 0x20;
        let e = decode(&c).unwrap_err();
        assert_eq!(e.field, Some(FieldPointer::cdb(1, Some(7))));
    }

    #[test]
    fn naca_and_link_are_rejected() {
        let mut c = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0x04];
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(5, Some(2)))
        );
        c[5] = 0x01;
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(5, Some(0)))
        );
    }

    #[test]
    fn inquiry_page_without_evpd_is_invalid() {
        let c = [op::INQUIRY, 0, 0x80, 0, 255, 0];
        assert_eq!(
            decode(&c).unwrap_err().field,
            Some(FieldPointer::cdb(2, None))
        );
        let c = [op::INQUIRY, 1, 0x80, 1, 0, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::Inquiry {
                evpd: true,
                page: 0x80,
                alloc_len: 256
            }
        );
    }

    #[test]
    fn verify_bytchk_and_sync_cache_immed() {
        let c = [op::VERIFY_10, 0x02, 0, 0, 0, 9, 0, 0, 3, 0];
        let Cdb::Verify { range, bytchk } = decode(&c).unwrap() else {
            panic!()
        };
        assert!(bytchk);
        assert_eq!((range.lba, range.blocks), (9, 3));
        let c = [
            op::SYNCHRONIZE_CACHE_16,
            0x02,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            8,
            0,
            0,
        ];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::SyncCache {
                lba: 1,
                blocks: 8,
                immed: true
            }
        );
    }

    #[test]
    fn mode_sense_fields() {
        let c = [op::MODE_SENSE_10, 0x18, 0x88, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::ModeSense {
                ten: true,
                dbd: true,
                llbaa: true,
                pc: PageControl::Default,
                page: 8,
                subpage: 0,
                alloc_len: 256
            }
        );
        // LLBAA does not exist in MODE SENSE(6).
        let c = [op::MODE_SENSE_6, 0x10, 0x3F, 0, 255, 0];
        assert!(decode(&c).is_err());
    }
}

/// Encode → decode round trips for the commands `encode` does not cover, with CDBs built
/// here from the SPC-4/SBC-3 layouts, and properties of every refusal.
#[cfg(test)]
mod round_trip_tests {
    use super::*;
    use crate::sense::SenseKey;
    use proptest::prelude::*;

    /// A 10/12/16-byte block command with LBA and TRANSFER LENGTH in the shared layout.
    fn block_cdb(opcode: u8, byte1: u8, lba: u64, blocks: u32) -> Vec<u8> {
        let len = group_len(opcode).unwrap();
        let mut c = vec![0u8; len];
        c[0] = opcode;
        c[1] = byte1;
        match len {
            10 => {
                c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
            }
            12 => {
                c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                c[6..10].copy_from_slice(&blocks.to_be_bytes());
            }
            _ => {
                c[2..10].copy_from_slice(&lba.to_be_bytes());
                c[10..14].copy_from_slice(&blocks.to_be_bytes());
            }
        }
        c
    }

    /// LBA and block count cut to what a CDB of `opcode`'s length can carry.
    fn fit(opcode: u8, lba: u64, blocks: u32) -> (u64, u32) {
        match group_len(opcode) {
            Some(10) => (lba & 0xFFFF_FFFF, blocks & 0xFFFF),
            Some(12) => (lba & 0xFFFF_FFFF, blocks),
            _ => (lba, blocks),
        }
    }

    proptest! {
        #[test]
        fn write_and_verify(
            op in prop_oneof![Just(op::WRITE_AND_VERIFY_10), Just(op::WRITE_AND_VERIFY_12),
                              Just(op::WRITE_AND_VERIFY_16)],
            lba: u64, blocks: u32, dpo: bool, bytchk: bool,
        ) {
            let (lba, blocks) = fit(op, lba, blocks);
            let b1 = u8::from(dpo) << 4 | u8::from(bytchk) << 1;
            let Cdb::WriteVerify(r) = decode(&block_cdb(op, b1, lba, blocks)).unwrap() else {
                panic!("not WRITE AND VERIFY");
            };
            prop_assert_eq!((r.lba, r.blocks, r.dpo, r.fua), (lba, blocks, dpo, false));
        }

        #[test]
        fn verify(
            op in prop_oneof![Just(op::VERIFY_10), Just(op::VERIFY_12), Just(op::VERIFY_16)],
            lba: u64, blocks: u32, dpo: bool, bytchk: bool,
        ) {
            let (lba, blocks) = fit(op, lba, blocks);
            let b1 = u8::from(dpo) << 4 | u8::from(bytchk) << 1;
            let got = decode(&block_cdb(op, b1, lba, blocks)).unwrap();
            let Cdb::Verify { range, bytchk: b } = got else { panic!("not VERIFY") };
            prop_assert_eq!((range.lba, range.blocks, range.dpo, b), (lba, blocks, dpo, bytchk));
        }

        #[test]
        fn synchronize_cache(sixteen: bool, lba: u64, blocks: u32, immed: bool) {
            let op = if sixteen { op::SYNCHRONIZE_CACHE_16 } else { op::SYNCHRONIZE_CACHE_10 };
            let (lba, blocks) = fit(op, lba, blocks);
            let got = decode(&block_cdb(op, u8::from(immed) << 1, lba, blocks)).unwrap();
            prop_assert_eq!(got, Cdb::SyncCache { lba, blocks, immed });
        }

        #[test]
        fn mode_sense(ten: bool, dbd: bool, llbaa: bool, pc in 0u8..4, page in 0u8..64,
                      subpage: u8, alloc: u16) {
            let mut c = vec![0u8; if ten { 10 } else { 6 }];
            c[0] = if ten { op::MODE_SENSE_10 } else { op::MODE_SENSE_6 };
            c[1] = u8::from(dbd) << 3 | u8::from(llbaa && ten) << 4;
            c[2] = pc << 6 | page;
            c[3] = subpage;
            let alloc_len = if ten {
                c[7..9].copy_from_slice(&alloc.to_be_bytes());
                u32::from(alloc)
            } else {
                c[4] = alloc as u8;
                u32::from(alloc as u8)
            };
            let pc = [PageControl::Current, PageControl::Changeable, PageControl::Default,
                      PageControl::Saved][usize::from(pc)];
            prop_assert_eq!(decode(&c).unwrap(), Cdb::ModeSense {
                ten, dbd, llbaa: llbaa && ten, pc, page, subpage, alloc_len,
            });
        }

        #[test]
        fn mode_select(ten: bool, pf: bool, sp: bool, len: u16) {
            let mut c = vec![0u8; if ten { 10 } else { 6 }];
            c[0] = if ten { op::MODE_SELECT_10 } else { op::MODE_SELECT_6 };
            c[1] = u8::from(pf) << 4 | u8::from(sp);
            let param_len = if ten {
                c[7..9].copy_from_slice(&len.to_be_bytes());
                u32::from(len)
            } else {
                c[4] = len as u8;
                u32::from(len as u8)
            };
            prop_assert_eq!(decode(&c).unwrap(), Cdb::ModeSelect { ten, pf, sp, param_len });
        }

        #[test]
        fn inquiry_and_report_luns(evpd: bool, page: u8, alloc: u16, select: u8, rl_alloc: u32) {
            let page = if evpd { page } else { 0 };
            let mut c = [op::INQUIRY, u8::from(evpd), page, 0, 0, 0];
            c[3..5].copy_from_slice(&alloc.to_be_bytes());
            prop_assert_eq!(decode(&c).unwrap(),
                            Cdb::Inquiry { evpd, page, alloc_len: u32::from(alloc) });
            let mut c = [0u8; 12];
            c[0] = op::REPORT_LUNS;
            c[2] = select;
            c[6..10].copy_from_slice(&rl_alloc.to_be_bytes());
            prop_assert_eq!(decode(&c).unwrap(), Cdb::ReportLuns { select, alloc_len: rl_alloc });
        }

        /// Whatever the bytes: a refusal is ILLEGAL REQUEST whose field pointer lies inside
        /// the CDB, and bytes after the opcode group's length change nothing.
        #[test]
        fn refusals_point_inside_the_cdb(bytes in proptest::collection::vec(any::<u8>(), 1..=32),
                                         junk in proptest::collection::vec(any::<u8>(), 0..16)) {
            let got = decode(&bytes);
            let len = group_len(bytes[0]);
            if let Some(len) = len.filter(|&l| l <= bytes.len()) {
                let mut longer = bytes[..len].to_vec();
                longer.extend_from_slice(&junk);
                prop_assert_eq!(&decode(&longer), &got);
            }
            if let Err(s) = got {
                prop_assert_eq!(s.key, SenseKey::IllegalRequest);
                if let (Some(f), Some(len)) = (s.field, len) {
                    prop_assert!(f.in_cdb && usize::from(f.byte) < len, "{:?}", s);
                }
            }
        }
    }
}
