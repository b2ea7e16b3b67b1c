//! One device identity for every protocol: a UUID generated once per device, from which
//! the SCSI NAA designator (VPD 0x83), the NVMe EUI-64 and NGUID derive, plus the serial
//! number and the vendor/product/revision strings.
//!
//! Devices created before the UUID existed keep their stored NAA (multipath and clusters
//! recognise disks by it); their UUID is derived from that NAA ([`uuid_from_naa`]) and
//! then stored beside it, so the derivation only ever runs once per device.

use sha2::{Digest as _, Sha256};

/// The 24-bit company id in generated designators. Its second hex digit is A (the IEEE
/// "locally administered" CID form), so it cannot collide with an assigned OUI.
pub const COMPANY_ID: u32 = 0x2A_E5_05;

/// A device's identity as every front-end reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// T10 vendor identification, at most 8 ASCII characters.
    pub vendor: String,
    /// Product identification, at most 16 ASCII characters.
    pub product: String,
    /// Product revision level, at most 4 ASCII characters.
    pub revision: String,
    /// Unit serial number (SCSI VPD 0x80, NVMe SN), printable ASCII, at most 32 characters.
    pub serial: String,
    /// RFC 9562 UUID, generated once (NVMe namespace UUID); the source of the other ids.
    pub uuid: [u8; 16],
    /// NAA IEEE Registered Extended designator (NAA 6, 16 bytes) for SCSI VPD 0x83:
    /// [`naa_from_uuid`] for new devices, the stored one for older devices.
    pub naa: [u8; 16],
}

impl Identity {
    /// IEEE EUI-64 (NVMe namespace EUI64): the company id, then 40 bits of the UUID.
    pub fn eui64(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..3].copy_from_slice(&COMPANY_ID.to_be_bytes()[1..]);
        out[3..].copy_from_slice(&self.uuid[11..16]);
        out
    }

    /// NVMe namespace globally unique identifier: the company id (IEEE OUI field) and 104
    /// bits of the UUID, skipping its version and variant bits.
    pub fn nguid(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..3].copy_from_slice(&COMPANY_ID.to_be_bytes()[1..]);
        out[3..9].copy_from_slice(&self.uuid[0..6]);
        out[9] = self.uuid[7];
        out[10..16].copy_from_slice(&self.uuid[10..16]);
        out
    }
}

/// Sets the RFC 9562 version nibble and the `10` variant bits.
fn stamp(mut uuid: [u8; 16], version: u8) -> [u8; 16] {
    uuid[6] = (uuid[6] & 0x0F) | (version << 4);
    uuid[8] = (uuid[8] & 0x3F) | 0x80;
    uuid
}

/// A new random (version 4) UUID from 16 random bytes.
pub fn new_uuid(random: [u8; 16]) -> [u8; 16] {
    stamp(random, 4)
}

/// The NAA 6 designator of a device: 4-bit NAA, 24-bit company id, then 100 bits of the
/// UUID as the vendor-specific identifier (SPC-4 7.8.6.6.5). The 100 bits skip the
/// UUID's version and variant bits, so they are all random.
pub fn naa_from_uuid(uuid: &[u8; 16]) -> [u8; 16] {
    let u = u128::from_be_bytes(*uuid);
    // Drop the version nibble (bits 76..80) and the variant (bits 62..64), keep 122 bits.
    let high = u >> 80;
    let mid = (u >> 64) & 0x0FFF;
    let low = u & ((1u128 << 62) - 1);
    let random = (high << 74) | (mid << 62) | low;
    let vendor_mask = (1u128 << 100) - 1;
    let naa = (6u128 << 124) | (u128::from(COMPANY_ID) << 100) | (random & vendor_mask);
    naa.to_be_bytes()
}

/// The UUID of a device that predates UUIDs, from its stored NAA: a version 8 UUID made of
/// a SHA-256 of the NAA, so it is the same on every node and every load.
pub fn uuid_from_naa(naa: &[u8; 16]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"esos identity uuid from naa\0");
    h.update(naa);
    let digest = h.finalize();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    stamp(uuid, 8)
}

/// The canonical text form, `8-4-4-4-12` lower-case hex digits.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (i, b) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Parses [`format_uuid`]'s form (either case).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let t = text.as_bytes();
    if t.len() != 36 || [8, 13, 18, 23].iter().any(|&i| t[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = t.iter().copied().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?;
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uuid: [u8; 16]) -> Identity {
        Identity {
            vendor: "ESOS".into(),
            product: "FILEIO".into(),
            revision: "0.1".into(),
            serial: "S1".into(),
            naa: naa_from_uuid(&uuid),
            uuid,
        }
    }

    #[test]
    fn new_device_naa_eui64_nguid_come_from_the_uuid() {
        let uuid = new_uuid([0xFF; 16]);
        assert_eq!(uuid[6] >> 4, 4, "version 4");
        assert_eq!(uuid[8] >> 6, 0b10, "RFC 9562 variant");
        let i = id(uuid);
        assert_eq!(i.naa[0] >> 4, 6, "NAA 6");
        let cid = u32::from_be_bytes([0, i.naa[0] & 0xF, i.naa[1], i.naa[2]]) << 4
            | u32::from(i.naa[3] >> 4);
        assert_eq!(cid, COMPANY_ID);
        // All 100 vendor bits come from random UUID bits: all ones here.
        assert_eq!(
            u128::from_be_bytes(i.naa) & ((1 << 100) - 1),
            (1 << 100) - 1
        );
        assert_eq!(&i.eui64()[..3], &[0x2A, 0xE5, 0x05]);
        assert_eq!(&i.nguid()[..3], &[0x2A, 0xE5, 0x05]);
        // Different UUIDs, different ids.
        let mut other = [0xFF; 16];
        other[15] = 0;
        let j = id(new_uuid(other));
        assert_ne!((i.naa, i.eui64(), i.nguid()), (j.naa, j.eui64(), j.nguid()));
    }

    #[test]
    fn old_device_uuid_is_derived_from_its_naa_and_stable() {
        let naa = [
            0x62, 0xae, 0x50, 0x5a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71, 0x82, 0x93, 0xa4,
            0xb5, 0xc6,
        ];
        let uuid = uuid_from_naa(&naa);
        assert_eq!(uuid, uuid_from_naa(&naa), "deterministic");
        assert_eq!(uuid[6] >> 4, 8, "version 8");
        assert_eq!(uuid[8] >> 6, 0b10);
        let mut other = naa;
        other[15] ^= 1;
        assert_ne!(uuid, uuid_from_naa(&other));
        // Pinned: a changed derivation would change deployed devices' UUIDs.
        assert_eq!(format_uuid(&uuid), "762ef0ee-30db-8304-9011-480022852556");
    }

    #[test]
    fn uuid_text_round_trips() {
        let u = new_uuid([0x12; 16]);
        let t = format_uuid(&u);
        assert_eq!(t, "12121212-1212-4212-9212-121212121212");
        assert_eq!(parse_uuid(&t), Some(u));
        assert_eq!(parse_uuid(&t.to_uppercase()), Some(u));
        for bad in [
            "",
            "12121212-1212-4212-9212-12121212121",
            "12121212x1212-4212-9212-121212121212",
            "1212121g-1212-4212-9212-121212121212",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }
}
