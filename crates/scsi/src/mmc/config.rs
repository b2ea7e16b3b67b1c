//! GET CONFIGURATION (MMC-6 6.6): the feature header with the current profile and the
//! features of a read-only CD/DVD drive (MMC-6 5.2, 5.3).

use super::{BLOCK_SIZE, Profile};

const PROFILE_LIST: u16 = 0x0000;
const CORE: u16 = 0x0001;
const MORPHING: u16 = 0x0002;
const REMOVABLE_MEDIUM: u16 = 0x0003;
const RANDOM_READABLE: u16 = 0x0010;
const MULTI_READ: u16 = 0x001D;
const CD_READ: u16 = 0x001E;
const DVD_READ: u16 = 0x001F;
const POWER_MANAGEMENT: u16 = 0x0100;
const TIMEOUT: u16 = 0x0105;
const REAL_TIME_STREAMING: u16 = 0x0107;

/// Every feature we report, ascending (MMC-6 6.6.2.1 lists them in feature order).
const FEATURES: [u16; 11] = [
    PROFILE_LIST,
    CORE,
    MORPHING,
    REMOVABLE_MEDIUM,
    RANDOM_READABLE,
    MULTI_READ,
    CD_READ,
    DVD_READ,
    POWER_MANAGEMENT,
    TIMEOUT,
    REAL_TIME_STREAMING,
];

/// Physical interface standard in the Core feature: 1 = SCSI family (MMC-6 table 95).
const INTERFACE_SCSI: u32 = 1;

/// One feature descriptor: (version, persistent, current, additional data).
fn feature(code: u16, profile: Option<Profile>) -> (u8, bool, bool, Vec<u8>) {
    let cd = profile == Some(Profile::CdRom);
    let dvd = profile == Some(Profile::DvdRom);
    let loaded = profile.is_some();
    match code {
        PROFILE_LIST => {
            let mut d = Vec::with_capacity(8);
            for p in [Profile::DvdRom, Profile::CdRom] {
                d.extend_from_slice(&(p as u16).to_be_bytes());
                d.extend_from_slice(&[u8::from(profile == Some(p)), 0]);
            }
            (0, true, true, d)
        }
        CORE => {
            let mut d = INTERFACE_SCSI.to_be_bytes().to_vec();
            d.extend_from_slice(&[0; 4]);
            (2, true, true, d)
        }
        // Polled event notification only (ASYNC 0), no operational change events.
        MORPHING => (1, true, true, vec![0; 4]),
        REMOVABLE_MEDIUM => {
            // Tray loading mechanism (001b), LOAD, EJECT, LOCK; the lock state is in the
            // capabilities page and in MECHANISM STATUS.
            (2, true, true, vec![0x20 | 0x10 | 0x08 | 0x01, 0, 0, 0])
        }
        RANDOM_READABLE => {
            let mut d = BLOCK_SIZE.to_be_bytes().to_vec();
            // BLOCKING: 16 sectors per ECC block on a DVD, 1 on a CD.
            let blocking: u16 = if dvd { 16 } else { 1 };
            d.extend_from_slice(&blocking.to_be_bytes());
            d.extend_from_slice(&[0, 0]);
            (0, false, loaded, d)
        }
        MULTI_READ => (0, false, cd, Vec::new()),
        CD_READ => (2, false, cd, vec![0; 4]),
        DVD_READ => (0, false, dvd, Vec::new()),
        POWER_MANAGEMENT => (0, true, true, Vec::new()),
        TIMEOUT => (0, true, true, vec![0; 4]),
        _ => (0, false, dvd, vec![0; 4]), // REAL_TIME_STREAMING
    }
}

/// GET CONFIGURATION data. RT 0: every feature from `start` on; 1: only the current ones;
/// 2: exactly feature `start` (just the header when we do not have it). `profile` is the
/// loaded disc's, `None` with an empty tray (current profile 0000h).
pub fn get_configuration(rt: u8, start: u16, profile: Option<Profile>, out: &mut Vec<u8>) {
    out.clear();
    out.resize(8, 0);
    let current = profile.map_or(0u16, |p| p as u16);
    out[6..8].copy_from_slice(&current.to_be_bytes());
    for &code in FEATURES.iter().filter(|&&c| c >= start) {
        if rt == 2 && code != start {
            continue;
        }
        let (version, persistent, cur, data) = feature(code, profile);
        if rt == 1 && !cur {
            continue;
        }
        out.extend_from_slice(&code.to_be_bytes());
        out.push(version << 2 | u8::from(persistent) << 1 | u8::from(cur));
        out.push(data.len() as u8);
        out.extend_from_slice(&data);
    }
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (code, flags byte, data) of each descriptor.
    fn parse(out: &[u8]) -> Vec<(u16, u8, Vec<u8>)> {
        assert_eq!(
            u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len() - 4
        );
        let mut at = 8;
        let mut v = Vec::new();
        while at < out.len() {
            let len = usize::from(out[at + 3]);
            assert_eq!(len % 4, 0, "additional lengths are multiples of 4");
            v.push((
                u16::from_be_bytes([out[at], out[at + 1]]),
                out[at + 2],
                out[at + 4..at + 4 + len].to_vec(),
            ));
            at += 4 + len;
        }
        assert_eq!(at, out.len());
        v
    }

    #[test]
    fn cd_profile_all_and_current() {
        let st = Some(Profile::CdRom);
        let mut out = Vec::new();
        get_configuration(0, 0, st, &mut out);
        assert_eq!(&out[6..8], &[0x00, 0x08]);
        let all = parse(&out);
        assert_eq!(all.len(), FEATURES.len());
        let list = &all[0];
        assert_eq!(list.0, PROFILE_LIST);
        // DVD-ROM not current, CD-ROM current.
        assert_eq!(list.2, vec![0x00, 0x10, 0, 0, 0x00, 0x08, 1, 0]);
        get_configuration(1, 0, st, &mut out);
        let cur: Vec<u16> = parse(&out).iter().map(|f| f.0).collect();
        assert!(cur.contains(&CD_READ) && cur.contains(&RANDOM_READABLE));
        assert!(!cur.contains(&DVD_READ));
        assert!(parse(&out).iter().all(|f| f.1 & 1 == 1));
    }

    #[test]
    fn one_feature_and_empty_tray() {
        let st = None;
        let mut out = Vec::new();
        get_configuration(2, RANDOM_READABLE, st, &mut out);
        assert_eq!(&out[6..8], &[0, 0]);
        let f = parse(&out);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].0, f[0].1 & 1), (RANDOM_READABLE, 0));
        assert_eq!(&f[0].2[0..4], &2048u32.to_be_bytes());
        get_configuration(2, 0x0020, st, &mut out);
        assert_eq!(out.len(), 8);
        let dvd = Some(Profile::DvdRom);
        get_configuration(1, 0, dvd, &mut out);
        assert_eq!(&out[6..8], &[0x00, 0x10]);
        let codes: Vec<u16> = parse(&out).iter().map(|f| f.0).collect();
        assert!(codes.contains(&DVD_READ) && !codes.contains(&CD_READ));
    }
}
