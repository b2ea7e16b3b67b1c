//! Standard INQUIRY data (SPC-4 6.6.2).

use crate::Identity;

/// Standard INQUIRY data length we return: through the version descriptors and the
/// reserved bytes after them (SPC-4 table 142).
pub const STANDARD_LEN: usize = 96;

/// Version descriptors (SPC-4 table 148): SAM-5, SPC-4, SBC-3, iSCSI (no version claimed).
pub const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0460, 0x04C0, 0x0960];

/// The same for a CD/DVD unit: SAM-5, SPC-4, MMC-6, iSCSI (no version claimed).
pub const MMC_VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0460, 0x04E0, 0x0960];

/// Peripheral device type of a CD/DVD device (SPC-4 table 141).
pub const PERIPHERAL_CDROM: u8 = 0x05;

/// Peripheral qualifier 3, device type 1Fh: "no logical unit at this LUN" (SPC-4 6.6.2).
pub const PERIPHERAL_NONE: u8 = 0x7F;

/// Copies `s` into `dst`, space padded; non-printable characters become spaces
/// (SPC-4 4.4.1 allows only 20h-7Eh).
pub fn ascii_field(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    for (d, c) in dst.iter_mut().zip(s.bytes()) {
        *d = if (0x20..=0x7E).contains(&c) { c } else { b' ' };
    }
}

/// Standard INQUIRY data of a mapped unit of another device type than a disk, or of a
/// removable one: RMB (SPC-4 6.6.2) says the medium can be removed.
pub fn standard_as(
    identity: &Identity,
    device_type: u8,
    removable: bool,
    descriptors: &[u16; 4],
    out: &mut Vec<u8>,
) {
    standard(Some(identity), out);
    out[0] = device_type & 0x1F;
    out[1] = if removable { 0x80 } else { 0 };
    for (i, v) in descriptors.iter().enumerate() {
        out[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes standard INQUIRY data into `out`. `identity` is `None` for an unmapped LUN.
pub fn standard(identity: Option<&Identity>, out: &mut Vec<u8>) {
    out.clear();
    out.resize(STANDARD_LEN, 0);
    let d = &mut out[..];
    d[0] = if identity.is_some() {
        0x00
    } else {
        PERIPHERAL_NONE
    };
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HiSup, response data format 2; NormACA 0
    d[4] = (STANDARD_LEN - 5) as u8;
    d[7] = 0x02; // CmdQue
    let (vendor, product, revision) =
        identity.map_or(("", "", ""), |i| (&*i.vendor, &*i.product, &*i.revision));
    ascii_field(&mut d[8..16], vendor);
    ascii_field(&mut d[16..32], product);
    ascii_field(&mut d[32..36], revision);
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    if identity.is_some() {
        // 3PC: the unit is a copy manager for EXTENDED COPY (disk/xcopy.rs).
        d[5] |= 0x08;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_inquiry_layout() {
        let id = Identity {
            vendor: "ESOS".into(),
            product: "disk\u{1}".into(),
            revision: "0.1".into(),
            serial: "x".into(),
            uuid: [0; 16],
            naa: [0; 16],
        };
        let mut out = Vec::new();
        standard(Some(&id), &mut out);
        assert_eq!(out.len(), usize::from(out[4]) + 5);
        assert_eq!(
            (out[0], out[2], out[3] & 0x0F, out[3] & 0x10, out[7] & 0x02),
            (0, 6, 2, 0x10, 2)
        );
        assert_eq!(&out[8..16], b"ESOS    ");
        assert_eq!(&out[16..32], b"disk            ");
        assert_eq!(&out[32..36], b"0.1 ");
        assert_eq!(
            &out[58..66],
            &[0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0, 0x09, 0x60]
        );
        standard(None, &mut out);
        assert_eq!(out[0], 0x7F);
        standard_as(
            &id,
            PERIPHERAL_CDROM,
            true,
            &MMC_VERSION_DESCRIPTORS,
            &mut out,
        );
        assert_eq!((out[0], out[1], out[2]), (0x05, 0x80, 6));
        assert_eq!(&out[62..64], &[0x04, 0xE0]);
        assert_eq!(&out[8..16], b"ESOS    ");
    }
}
