//! CDB decoding for every operation code (crates/scsi/src/cdb.rs `cdb::decode`).
//! Input: the CDB bytes as they arrived (up to 32).
//! Holds: no panic; refusals are ILLEGAL REQUEST with a field pointer inside the CDB and
//! encode to well-formed fixed and descriptor sense; bytes past the opcode group's length
//! never change the result.
#![no_main]

use esos_scsi::MAX_CDB_LEN;
use esos_scsi::cdb::{self, Cdb};
use esos_scsi::sense::SenseKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = &data[..data.len().min(MAX_CDB_LEN)];
    let got = cdb::decode(bytes);
    let group = bytes.first().and_then(|&op| cdb::group_len(op));
    if let Some(len) = group
        && bytes.len() >= len
    {
        assert_eq!(cdb::decode(&bytes[..len]), got);
    }
    match got {
        Ok(c) => {
            let len = group.expect("a decoded CDB has a fixed length");
            if let Cdb::Read(r) | Cdb::Write(r) | Cdb::WriteVerify(r) = c {
                assert!(usize::from(r.len_byte) < len);
                if len == 6 {
                    assert!((1..=256).contains(&r.blocks) && r.lba < 1 << 21);
                }
            }
        }
        Err(s) => {
            assert_eq!(s.key, SenseKey::IllegalRequest);
            if let (Some(f), Some(len)) = (s.field, group) {
                assert!(f.in_cdb && usize::from(f.byte) < len, "{s:?}");
                assert!(f.bit.is_none_or(|b| b < 8));
            }
            for desc in [false, true] {
                let e = s.encode(desc);
                let b = e.as_slice();
                assert!(b.len() >= 8 && b.len() <= esos_scsi::MAX_SENSE_LEN);
                assert_eq!(usize::from(b[7]) + 8, b.len());
                assert_eq!(b[0] & 0x7F, if desc { 0x72 } else { 0x70 });
            }
        }
    }
});
