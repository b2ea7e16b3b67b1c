//! Vital product data pages (SPC-4 7.8, SBC-3 6.5).

use crate::sense::Sense;
use crate::{Identity, Nexus};

pub const SUPPORTED_PAGES: u8 = 0x00;
pub const UNIT_SERIAL: u8 = 0x80;
pub const DEVICE_ID: u8 = 0x83;
pub const THIRD_PARTY_COPY: u8 = 0x8F;
pub const BLOCK_LIMITS: u8 = 0xB0;
pub const BLOCK_CHARACTERISTICS: u8 = 0xB1;
pub const LB_PROVISIONING: u8 = 0xB2;

/// Page codes in ascending order (SPC-4 7.8.13 requires the order).
const PAGES: [u8; 7] = [
    SUPPORTED_PAGES,
    UNIT_SERIAL,
    DEVICE_ID,
    THIRD_PARTY_COPY,
    BLOCK_LIMITS,
    BLOCK_CHARACTERISTICS,
    LB_PROVISIONING,
];

/// Serial numbers longer than this are cut (the VPD 80h page length is one byte).
pub const MAX_SERIAL_LEN: usize = 32;

/// iSCSI protocol identifier (SPC-4 table 362).
const PROTOCOL_ISCSI: u8 = 0x05;

/// Facts about the LU that the pages report.
#[derive(Debug, Clone, Copy)]
pub struct VpdInput<'a> {
    pub identity: &'a Identity,
    pub nexus: &'a Nexus,
    pub block_size: u32,
    pub max_transfer_blocks: u32,
    pub rotational: bool,
}

/// Writes VPD page `page` into `out`, or INVALID FIELD IN CDB for an unknown page.
pub fn page(page: u8, inp: VpdInput<'_>, out: &mut Vec<u8>) -> Result<(), Sense> {
    out.clear();
    out.extend_from_slice(&[0x00, page, 0, 0]);
    match page {
        SUPPORTED_PAGES => out.extend_from_slice(&PAGES),
        UNIT_SERIAL => {
            let s = inp.identity.serial.as_bytes();
            let s = &s[..s.len().min(MAX_SERIAL_LEN)];
            out.extend(
                s.iter()
                    .map(|&c| if (0x20..=0x7E).contains(&c) { c } else { b' ' }),
            );
        }
        DEVICE_ID => device_id(inp, out),
        THIRD_PARTY_COPY => super::xcopy::third_party_copy_vpd(out),
        BLOCK_LIMITS => block_limits(inp, out),
        BLOCK_CHARACTERISTICS => {
            let mut p = [0u8; 0x3C];
            // SBC-3 6.5.2: 1 = non-rotating medium, 0 = rate not reported.
            let rate: u16 = if inp.rotational { 0 } else { 1 };
            p[0..2].copy_from_slice(&rate.to_be_bytes());
            out.extend_from_slice(&p);
        }
        LB_PROVISIONING => {
            // SBC-3 6.5.4: full provisioning; no UNMAP, no WRITE SAME unmapping, LBPRZ 0.
            out.extend_from_slice(&[0u8; 4]);
        }
        _ => return Err(Sense::invalid_cdb_field(2, None)),
    }
    let len = (out.len() - 4) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Appends one designation descriptor (SPC-4 7.8.6.1).
fn designator(out: &mut Vec<u8>, code_set: u8, piv_assoc_type: u8, value: &[u8], pad_to: usize) {
    let len = value.len().next_multiple_of(pad_to);
    let proto = if piv_assoc_type & 0x80 != 0 {
        PROTOCOL_ISCSI << 4
    } else {
        0
    };
    out.extend_from_slice(&[proto | code_set, piv_assoc_type, 0, len as u8]);
    out.extend_from_slice(value);
    out.resize(out.len() + len - value.len(), 0);
}

/// Largest SCSI name string we report; longer names (beyond iSCSI's 223-byte limit) are cut.
const MAX_NAME_LEN: usize = 252;

/// SPC-4 7.8.6: NAA (LU), T10 vendor ID (LU), relative target port and SCSI name string of
/// the target port (both with PIV and the iSCSI protocol identifier).
fn device_id(inp: VpdInput<'_>, out: &mut Vec<u8>) {
    // NAA, binary, association LU, type 3.
    designator(out, 0x01, 0x03, &inp.identity.naa, 1);
    // T10 vendor ID, ASCII, association LU, type 1: vendor (8, padded) + serial.
    let mut t10 = [b' '; 8 + MAX_SERIAL_LEN];
    super::inquiry::ascii_field(&mut t10[..8], &inp.identity.vendor);
    let serial = inp.identity.serial.as_bytes();
    let n = serial.len().min(MAX_SERIAL_LEN);
    super::inquiry::ascii_field(&mut t10[8..8 + n], &inp.identity.serial);
    designator(out, 0x02, 0x01, &t10[..8 + n], 1);
    // Relative target port, PIV, association target port (01b), type 4.
    let mut rel = [0u8; 4];
    rel[2..4].copy_from_slice(&inp.nexus.relative_port.to_be_bytes());
    designator(out, 0x01, 0x80 | 0x10 | 0x04, &rel, 1);
    // SCSI name string, UTF-8, PIV, association target port, type 8: null terminated and
    // padded to a multiple of 4 (SPC-4 7.8.6.11).
    let name = inp.nexus.target_port.as_bytes();
    let name = &name[..name.len().min(MAX_NAME_LEN - 1)];
    let mut v = Vec::with_capacity(name.len() + 4);
    v.extend_from_slice(name);
    v.push(0);
    designator(out, 0x03, 0x80 | 0x10 | 0x08, &v, 4);
}

/// Appends the target port group designator (SPC-4 7.8.6.8: binary, PIV, association
/// target port, type 5) to a Device Identification page in `out` and fixes its length.
/// Kept apart from [`page`] because the group comes from the ALUA table (`alua.rs`).
pub fn append_port_group(out: &mut Vec<u8>, group: u16) {
    let mut tpg = [0u8; 4];
    tpg[2..4].copy_from_slice(&group.to_be_bytes());
    designator(out, 0x01, 0x80 | 0x10 | 0x05, &tpg, 1);
    let len = (out.len() - 4) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

/// SBC-3 6.5.3, page length 3Ch.
fn block_limits(inp: VpdInput<'_>, out: &mut Vec<u8>) {
    let mut p = [0u8; 0x3C];
    // OPTIMAL TRANSFER LENGTH GRANULARITY: 4 KiB, the common physical/page size.
    let gran = (4096 / inp.block_size).max(1) as u16;
    p[2..4].copy_from_slice(&gran.to_be_bytes());
    p[4..8].copy_from_slice(&inp.max_transfer_blocks.to_be_bytes());
    p[8..12].copy_from_slice(&inp.max_transfer_blocks.to_be_bytes());
    // Byte 5, MAXIMUM COMPARE AND WRITE LENGTH (disk/atomic.rs).
    p[1] = super::atomic::max_caw_blocks(inp.max_transfer_blocks) as u8;
    // Bytes 44-47, MAXIMUM ATOMIC TRANSFER LENGTH (SBC-4 6.6.4): any transfer WRITE
    // ATOMIC(16) can name; alignment, granularity and boundaries (48-63) stay 0.
    let max_atomic = inp.max_transfer_blocks.min(u32::from(u16::MAX));
    p[40..44].copy_from_slice(&max_atomic.to_be_bytes());
    out.extend_from_slice(&p);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(id: &'a Identity, nexus: &'a Nexus) -> VpdInput<'a> {
        VpdInput {
            identity: id,
            nexus,
            block_size: 512,
            max_transfer_blocks: 2048,
            rotational: false,
        }
    }

    fn ident() -> Identity {
        Identity {
            vendor: "ESOS".into(),
            product: "p".into(),
            revision: "1".into(),
            serial: "SER123".into(),
            uuid: [0; 16],
            naa: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        }
    }

    fn nexus() -> Nexus {
        Nexus {
            id: 1,
            initiator_port: "i".into(),
            target_port: "iqn.x:t,t,0x0001".into(),
            relative_port: 3,
            port_group: 3,
        }
    }

    #[test]
    fn device_id_designators_parse_back() {
        let (id, nx) = (ident(), nexus());
        let mut out = Vec::new();
        page(DEVICE_ID, input(&id, &nx), &mut out).unwrap();
        append_port_group(&mut out, 9);
        assert_eq!(
            usize::from(u16::from_be_bytes([out[2], out[3]])),
            out.len() - 4
        );
        let mut at = 4;
        let mut seen = Vec::new();
        while at < out.len() {
            let len = usize::from(out[at + 3]);
            seen.push((out[at], out[at + 1], out[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
        }
        assert_eq!(at, out.len());
        assert_eq!(seen[0], (0x01, 0x03, id.naa.to_vec()));
        assert_eq!(seen[1].0, 0x02);
        assert_eq!(&seen[1].2, b"ESOS    SER123");
        assert_eq!(seen[2], (0x51, 0x94, vec![0, 0, 0, 3]));
        assert_eq!((seen[3].0, seen[3].1), (0x53, 0x98));
        assert_eq!(seen[3].2.len() % 4, 0);
        assert!(seen[3].2.starts_with(b"iqn.x:t,t,0x0001\0"));
        assert_eq!(seen[4], (0x51, 0x95, vec![0, 0, 0, 9]));
    }

    #[test]
    fn every_page_is_listed_and_well_formed() {
        let (id, nx) = (ident(), nexus());
        let mut list = Vec::new();
        page(SUPPORTED_PAGES, input(&id, &nx), &mut list).unwrap();
        assert!(list[4..].windows(2).all(|w| w[0] < w[1]));
        for &p in &list[4..] {
            let mut out = Vec::new();
            page(p, input(&id, &nx), &mut out).unwrap();
            assert_eq!(out[1], p);
            assert_eq!(
                usize::from(u16::from_be_bytes([out[2], out[3]])) + 4,
                out.len()
            );
        }
        let mut out = Vec::new();
        page(BLOCK_LIMITS, input(&id, &nx), &mut out).unwrap();
        assert_eq!(out[3], 0x3C);
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 8);
        assert_eq!(u32::from_be_bytes(out[8..12].try_into().unwrap()), 2048);
        assert_eq!(&out[24..32], &[0; 8], "no UNMAP limits without UNMAP");
        page(BLOCK_CHARACTERISTICS, input(&id, &nx), &mut out).unwrap();
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 1);
        page(UNIT_SERIAL, input(&id, &nx), &mut out).unwrap();
        assert_eq!(&out[4..], b"SER123");
        assert!(page(0x99, input(&id, &nx), &mut out).is_err());
    }
}
