//! REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) and REPORT SUPPORTED TASK MANAGEMENT
//! FUNCTIONS (SPC-4 6.36), built from one table of every command the engine knows.
//!
//! A row is reported only while `cdb::decode` actually accepts its opcode (and service
//! action), so rows for commands still being written elsewhere stay hidden until their
//! decoder lands; a unit test checks the converse (every decodable opcode has a row).

use super::{Done, Outcome};
use crate::IoBuf;
use crate::cdb::{self, op};
use crate::sense::{Asc, Sense};

/// One supported command: its CDB usage map (SPC-4 6.35.3) says everything else.
#[derive(Debug, Clone, Copy)]
pub struct OpRow {
    pub opcode: u8,
    /// Service action, for opcodes that have them (reported with SERVACTV set).
    pub sa: Option<u16>,
    /// CDB USAGE DATA: byte 0 is the opcode, the service action sits in its own field, and
    /// every other bit is set where the device server evaluates it; its length is the CDB's.
    pub usage: &'static [u8],
}

pub(crate) const fn row(usage: &'static [u8]) -> OpRow {
    OpRow {
        opcode: usage[0],
        sa: None,
        usage,
    }
}

/// Rows for opcodes whose service action is in byte 1, bits 4-0.
pub(crate) const fn sa_row(usage: &'static [u8]) -> OpRow {
    OpRow {
        opcode: usage[0],
        sa: Some((usage[1] & 0x1F) as u16),
        usage,
    }
}

pub(crate) const FF: u8 = 0xFF;

/// Rows a CD/DVD unit (`mmc/opcodes.rs`) reports exactly as the disk does: the same
/// command with the same fields evaluated.
pub(crate) mod shared {
    use super::{FF, OpRow, row, sa_row};
    use crate::cdb::op;

    pub(crate) const TEST_UNIT_READY: OpRow = row(&[op::TEST_UNIT_READY, 0, 0, 0, 0, 0]);
    pub(crate) const REQUEST_SENSE: OpRow = row(&[op::REQUEST_SENSE, 0x01, 0, 0, FF, 0]);
    pub(crate) const READ_6: OpRow = row(&[op::READ_6, 0x1F, FF, FF, FF, 0]);
    pub(crate) const INQUIRY: OpRow = row(&[op::INQUIRY, 0x01, FF, FF, FF, 0]);
    pub(crate) const MODE_SENSE_6: OpRow = row(&[op::MODE_SENSE_6, 0x08, FF, FF, FF, 0]);
    pub(crate) const START_STOP_UNIT: OpRow = row(&[op::START_STOP_UNIT, 0x01, 0, 0x0F, 0xF7, 0]);
    pub(crate) const PREVENT_ALLOW_MEDIUM_REMOVAL: OpRow =
        row(&[op::PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0x03, 0]);
    pub(crate) const READ_CAPACITY_10: OpRow =
        row(&[op::READ_CAPACITY_10, 0, FF, FF, FF, FF, 0, 0, 0x01, 0]);
    pub(crate) const READ_10: OpRow = row(&[op::READ_10, 0x18, FF, FF, FF, FF, 0, FF, FF, 0]);
    pub(crate) const MODE_SENSE_10: OpRow =
        row(&[op::MODE_SENSE_10, 0x18, FF, FF, 0, 0, 0, FF, FF, 0]);
    pub(crate) const READ_16: OpRow = row(&[
        op::READ_16,
        0x18,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]);
    pub(crate) const READ_CAPACITY_16: OpRow = sa_row(&[
        op::SERVICE_ACTION_IN_16,
        op::SA_READ_CAPACITY_16,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]);
    pub(crate) const REPORT_LUNS: OpRow =
        row(&[op::REPORT_LUNS, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0]);
    pub(crate) const REPORT_SUPPORTED_OPCODES: OpRow = sa_row(&[
        op::MAINTENANCE_IN,
        op::SA_REPORT_SUPPORTED_OPCODES,
        0x87,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]);
    pub(crate) const REPORT_SUPPORTED_TMFS: OpRow = sa_row(&[
        op::MAINTENANCE_IN,
        op::SA_REPORT_SUPPORTED_TMFS,
        0x80,
        0,
        0,
        0,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]);
    pub(crate) const READ_12: OpRow =
        row(&[op::READ_12, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]);
}

/// Every command, ascending by (opcode, service action). DPO and FUA are listed for the
/// commands that honour them, since MODE SENSE reports DPOFUA (SBC-3 6.4.1); protection
/// fields, group numbers and the control byte are not, as only their zero value is accepted
/// or they are ignored.
pub const TABLE: &[OpRow] = &[
    shared::TEST_UNIT_READY,
    shared::REQUEST_SENSE,
    shared::READ_6,
    row(&[op::WRITE_6, 0x1F, FF, FF, FF, 0]),
    shared::INQUIRY,
    row(&[op::MODE_SELECT_6, 0x11, 0, 0, FF, 0]),
    // RESERVE(6) / RELEASE(6) (SPC-2 7.21, 7.17).
    row(&[0x16, 0, 0, 0, 0, 0]),
    row(&[0x17, 0, 0, 0, 0, 0]),
    shared::MODE_SENSE_6,
    shared::START_STOP_UNIT,
    shared::PREVENT_ALLOW_MEDIUM_REMOVAL,
    shared::READ_CAPACITY_10,
    shared::READ_10,
    row(&[op::WRITE_10, 0x18, FF, FF, FF, FF, 0, FF, FF, 0]),
    row(&[op::WRITE_AND_VERIFY_10, 0x12, FF, FF, FF, FF, 0, FF, FF, 0]),
    row(&[op::VERIFY_10, 0x12, FF, FF, FF, FF, 0, FF, FF, 0]),
    row(&[op::PRE_FETCH_10, 0x02, FF, FF, FF, FF, 0, FF, FF, 0]),
    row(&[op::SYNCHRONIZE_CACHE_10, 0x02, FF, FF, FF, FF, 0, FF, FF, 0]),
    row(&[op::READ_DEFECT_DATA_10, 0, 0x1F, 0, 0, 0, 0, FF, FF, 0]),
    // WRITE SAME(10) (SBC-3 5.39): UNMAP bit.
    row(&[0x41, 0x08, FF, FF, FF, FF, 0, FF, FF, 0]),
    // UNMAP (SBC-3 5.28).
    row(&[0x42, 0, 0, 0, 0, 0, 0, FF, FF, 0]),
    // SANITIZE (SBC-4 5.30): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE with IMMED and
    // AUSE; no CRYPTOGRAPHIC ERASE.
    sa_row(&[op::SANITIZE, 0xA1, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa_row(&[op::SANITIZE, 0xA2, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa_row(&[op::SANITIZE, 0xBF, 0, 0, 0, 0, 0, FF, FF, 0]),
    row(&[op::MODE_SELECT_10, 0x11, 0, 0, 0, 0, 0, FF, FF, 0]),
    // RESERVE(10) / RELEASE(10) (SPC-2 7.22, 7.18).
    row(&[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    row(&[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    shared::MODE_SENSE_10,
    // PERSISTENT RESERVE IN (SPC-4 6.13): READ KEYS, READ RESERVATION, REPORT
    // CAPABILITIES, READ FULL STATUS.
    sa_row(&[0x5E, 0x00, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa_row(&[0x5E, 0x01, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa_row(&[0x5E, 0x02, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa_row(&[0x5E, 0x03, 0, 0, 0, 0, 0, FF, FF, 0]),
    // PERSISTENT RESERVE OUT (SPC-4 6.14): REGISTER .. REGISTER AND MOVE; SCOPE and TYPE
    // in byte 2, PARAMETER LIST LENGTH in bytes 5-8.
    sa_row(&[0x5F, 0x00, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa_row(&[0x5F, 0x01, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa_row(&[0x5F, 0x02, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa_row(&[0x5F, 0x03, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa_row(&[0x5F, 0x04, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa_row(&[0x5F, 0x05, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa_row(&[0x5F, 0x06, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa_row(&[0x5F, 0x07, FF, 0, 0, FF, FF, FF, FF, 0]),
    // EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.3, 6.18).
    sa_row(&[
        op::EXTENDED_COPY,
        0x00,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    sa_row(&[0x84, 0x00, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]),
    sa_row(&[0x84, 0x01, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]),
    sa_row(&[0x84, 0x03, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]),
    sa_row(&[0x84, 0x04, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]),
    shared::READ_16,
    row(&[
        op::COMPARE_AND_WRITE,
        0x18,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
        0,
        FF,
        0,
        0,
    ]),
    row(&[
        op::WRITE_16,
        0x18,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    row(&[
        op::ORWRITE_16,
        0x18,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    row(&[
        op::WRITE_AND_VERIFY_16,
        0x12,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    row(&[
        op::VERIFY_16,
        0x12,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    row(&[
        op::PRE_FETCH_16,
        0x02,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    row(&[
        op::SYNCHRONIZE_CACHE_16,
        0x02,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    // WRITE SAME(16) (SBC-3 5.40): UNMAP bit.
    row(&[
        0x93, 0x08, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0,
    ]),
    row(&[
        op::WRITE_ATOMIC_16,
        0x18,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
        FF,
        FF,
        0,
        0,
    ]),
    shared::READ_CAPACITY_16,
    // GET LBA STATUS (SBC-3 5.6).
    sa_row(&[
        op::SERVICE_ACTION_IN_16,
        0x12,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    shared::REPORT_LUNS,
    // REPORT TARGET PORT GROUPS (SPC-4 6.27): PARAMETER DATA FORMAT in byte 1.
    sa_row(&[
        op::MAINTENANCE_IN,
        0xE0 | op::SA_REPORT_TARGET_PORT_GROUPS,
        0,
        0,
        0,
        0,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    shared::REPORT_SUPPORTED_OPCODES,
    shared::REPORT_SUPPORTED_TMFS,
    // SET TARGET PORT GROUPS (SPC-4 6.39); hidden while ALUA is implicit only.
    sa_row(&[
        op::MAINTENANCE_OUT,
        op::SA_SET_TARGET_PORT_GROUPS,
        0,
        0,
        0,
        0,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    shared::READ_12,
    row(&[op::WRITE_12, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    row(&[
        op::WRITE_AND_VERIFY_12,
        0x12,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
    row(&[op::VERIFY_12, 0x12, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    row(&[
        op::READ_DEFECT_DATA_12,
        0x1F,
        0,
        0,
        0,
        0,
        FF,
        FF,
        FF,
        FF,
        0,
        0,
    ]),
];

/// RECOMMENDED COMMAND TIMEOUT reported with RCTD (seconds); the nominal processing time
/// is reported as 0, "not specified" (SPC-4 6.35.4).
pub const RECOMMENDED_TIMEOUT_S: u32 = 30;

/// The smallest CDB that carries `row`'s opcode and service action, all else zero.
fn sample(row: &OpRow) -> Vec<u8> {
    let mut c = vec![0u8; row.usage.len()];
    c[0] = row.opcode;
    if let Some(sa) = row.sa {
        c[1] = sa as u8;
    }
    c
}

/// True when the decoder accepts the row's opcode and service action. A sample that
/// fails on another field (e.g. a zero allocation length) is still a decoded command.
pub fn decoded(row: &OpRow) -> bool {
    match cdb::decode(&sample(row)) {
        Ok(_) => true,
        Err(s) if s.asc == Asc::INVALID_COMMAND_OPERATION_CODE => false,
        Err(s) => !(row.sa.is_some() && s.field.is_some_and(|f| f.in_cdb && f.byte == 1)),
    }
}

/// The rows reported right now.
pub fn supported() -> impl Iterator<Item = &'static OpRow> + Clone {
    TABLE.iter().filter(|r| decoded(r))
}

/// Appends a command timeouts descriptor (SPC-4 6.35.4).
fn timeouts(out: &mut IoBuf) {
    out.extend_from_slice(&[0x00, 0x0A, 0, 0]);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&RECOMMENDED_TIMEOUT_S.to_be_bytes());
}

/// REPORT SUPPORTED OPERATION CODES: options 000b all commands, 001b one opcode without
/// service actions, 010b one opcode and service action, 011b either (SPC-4 table 300).
/// `stpg` is false while ALUA is implicit only: SET TARGET PORT GROUPS is then not
/// supported (SPC-4 6.39).
pub fn report_opcodes(
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
    alloc_len: u32,
    stpg: bool,
    out: &mut IoBuf,
) -> Outcome {
    let rows = supported().filter(move |r| stpg || r.opcode != op::MAINTENANCE_OUT);
    encode_report(rows, rctd, options, opcode, sa, alloc_len, out)
}

/// The REPORT SUPPORTED OPERATION CODES parameter data for `supported` rows (every
/// command set of the engine encodes its table through this).
pub(crate) fn encode_report<'a>(
    supported: impl Iterator<Item = &'a OpRow> + Clone,
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
    alloc_len: u32,
    out: &mut IoBuf,
) -> Outcome {
    out.clear();
    let supported = || supported.clone();
    if options == 0 {
        out.extend_from_slice(&[0; 4]);
        for r in supported() {
            let [sa_hi, sa_lo] = r.sa.unwrap_or(0).to_be_bytes();
            let flags = (if rctd { 0x02 } else { 0 }) | u8::from(r.sa.is_some());
            let [len_hi, len_lo] = (r.usage.len() as u16).to_be_bytes();
            out.extend_from_slice(&[r.opcode, 0, sa_hi, sa_lo, 0, flags, len_hi, len_lo]);
            if rctd {
                timeouts(out);
            }
        }
        let len = (out.len() - 4) as u32;
        out[0..4].copy_from_slice(&len.to_be_bytes());
        return Ok(Done::data(out.len(), alloc_len));
    }
    let mut rows = supported().filter(|r| r.opcode == opcode).peekable();
    let has_sa = rows.peek().map(|r| r.sa.is_some());
    let found = match (options, has_sa) {
        (_, None) => None,
        // SPC-4 6.35.2: 001b names an opcode that must not have service actions, 010b one
        // that must.
        (1, Some(true)) | (2, Some(false)) => {
            return Err(Sense::invalid_cdb_field(3, None).into());
        }
        (_, Some(false)) => rows.next(),
        (_, Some(true)) => rows.find(|r| r.sa == Some(sa)),
    };
    match found {
        Some(r) => {
            // SUPPORT 011b: supported as the standard describes.
            let ctdp = if rctd { 0x80 } else { 0 };
            out.extend_from_slice(&[0, ctdp | 0x03]);
            out.extend_from_slice(&(r.usage.len() as u16).to_be_bytes());
            out.extend_from_slice(r.usage);
            if rctd {
                timeouts(out);
            }
        }
        // SUPPORT 001b: not supported; no usage data.
        None => out.extend_from_slice(&[0, 0x01, 0, 0]),
    }
    Ok(Done::data(out.len(), alloc_len))
}

/// Task management functions the iSCSI transport implements (crates/iscsi conn/ffp/tmf.rs):
/// ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET and TARGET RESET
/// (SPC-4 table 306: ATS, ATSS, CTSS, LURS, TRS). No CLEAR ACA, QUERY TASK or I_T NEXUS RESET.
const TMF_BYTE0: u8 = 0x80 | 0x40 | 0x10 | 0x08 | 0x02;

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS: 4 bytes, or 16 with REPD (no timeouts).
pub fn report_tmfs(repd: bool, alloc_len: u32, out: &mut IoBuf) -> Outcome {
    out.clear();
    out.extend_from_slice(&[TMF_BYTE0, 0, 0, 0]);
    if repd {
        out[3] = 0x0C;
        out.resize(16, 0);
    }
    Ok(Done::data(out.len(), alloc_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rctd: bool, options: u8, opcode: u8, sa: u16) -> Result<Vec<u8>, Sense> {
        let mut out = Vec::new();
        report_opcodes(rctd, options, opcode, sa, u32::MAX, true, &mut out).map_err(|f| f.sense)?;
        Ok(out)
    }

    #[test]
    fn table_is_sorted_unique_and_self_describing() {
        assert!(
            TABLE
                .windows(2)
                .all(|w| (w[0].opcode, w[0].sa) < (w[1].opcode, w[1].sa))
        );
        for r in TABLE {
            assert_eq!(r.usage[0], r.opcode);
            assert_eq!(Some(r.usage.len()), cdb::group_len(r.opcode), "{r:?}");
            if let Some(sa) = r.sa {
                assert_eq!(u16::from(r.usage[1] & 0x1F), sa);
            }
        }
    }

    /// Every opcode (and service action) the decoder accepts has a row, so the report never
    /// omits a command; rows the decoder rejects are never reported.
    static ZEROS: [u8; 16] = [0; 16];

    #[test]
    fn every_decodable_command_has_a_row() {
        for opcode in 0..=u8::MAX {
            let Some(len) = cdb::group_len(opcode) else {
                continue;
            };
            let has_sa = TABLE.iter().any(|r| r.opcode == opcode && r.sa.is_some());
            let sas: Vec<Option<u16>> = if has_sa {
                (0..32).map(Some).collect()
            } else {
                vec![None]
            };
            for sa in sas {
                let probe = OpRow {
                    opcode,
                    sa,
                    usage: &ZEROS[..len],
                };
                if decoded(&probe) {
                    assert!(
                        TABLE.iter().any(|r| r.opcode == opcode && r.sa == sa),
                        "opcode {opcode:#04x} sa {sa:?} decodes but has no row"
                    );
                }
            }
        }
        let listed: Vec<_> = supported().map(|r| (r.opcode, r.sa)).collect();
        for r in TABLE {
            assert_eq!(listed.contains(&(r.opcode, r.sa)), decoded(r));
        }
        // The commands of this engine are always there.
        for o in [
            op::READ_10,
            op::COMPARE_AND_WRITE,
            op::PRE_FETCH_16,
            op::WRITE_ATOMIC_16,
        ] {
            assert!(listed.contains(&(o, None)), "{o:#x}");
        }
    }

    #[test]
    fn all_commands_with_and_without_timeouts() {
        let plain = report(false, 0, 0, 0).unwrap();
        let n = supported().count();
        assert_eq!(plain.len(), 4 + 8 * n);
        assert_eq!(
            u32::from_be_bytes(plain[0..4].try_into().unwrap()) as usize,
            8 * n
        );
        let with = report(true, 0, 0, 0).unwrap();
        assert_eq!(with.len(), 4 + 20 * n);
        for (d, r) in with[4..].chunks(20).zip(supported()) {
            assert_eq!(d[0], r.opcode);
            assert_eq!(d[5], 0x02 | u8::from(r.sa.is_some()));
            assert_eq!(u16::from_be_bytes([d[2], d[3]]), r.sa.unwrap_or(0));
            assert_eq!(usize::from(u16::from_be_bytes([d[6], d[7]])), r.usage.len());
            assert_eq!(&d[8..10], &[0x00, 0x0A]);
        }
    }

    #[test]
    fn one_command_options() {
        // READ(10) has no service actions: 001b and 011b work, 010b is invalid.
        let one = report(false, 1, op::READ_10, 0).unwrap();
        assert_eq!(&one[..4], &[0, 0x03, 0, 10]);
        assert_eq!(one[4], op::READ_10);
        assert_eq!(one[5] & 0x18, 0x18, "DPO/FUA in the usage map");
        assert_eq!(report(false, 3, op::READ_10, 7).unwrap(), one);
        let e = report(false, 2, op::READ_10, 0).unwrap_err();
        assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
        // MAINTENANCE IN has service actions: 010b works, 001b is invalid.
        let one = report(true, 2, op::MAINTENANCE_IN, 0x0C).unwrap();
        assert_eq!(&one[..4], &[0, 0x83, 0, 12]);
        assert_eq!(&one[4..6], &[op::MAINTENANCE_IN, 0x0C]);
        assert_eq!(one.len(), 4 + 12 + 12);
        assert!(report(false, 1, op::MAINTENANCE_IN, 0).is_err());
        // Unknown opcode and unknown service action: SUPPORT 001b.
        assert_eq!(report(false, 1, 0xFF, 0).unwrap(), [0, 1, 0, 0]);
        assert_eq!(
            report(false, 2, op::MAINTENANCE_IN, 0x1F).unwrap(),
            [0, 1, 0, 0]
        );
    }

    #[test]
    fn task_management_functions() {
        let mut out = Vec::new();
        report_tmfs(false, 4, &mut out).unwrap();
        assert_eq!(out, [0xDA, 0, 0, 0]);
        let d = report_tmfs(true, 8, &mut out).unwrap();
        assert_eq!((out.len(), out[3], d.data_in), (16, 0x0C, 8));
    }
}
