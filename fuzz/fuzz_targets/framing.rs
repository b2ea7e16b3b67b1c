//! PDU framing of a connection (crates/iscsi/src/conn/pdu_reader.rs `PduReader`): BHS, AHS,
//! header digest, data segment, padding, data digest. Input: one byte of flags (bit 0
//! HeaderDigest, bit 1 DataDigest), then the byte stream an initiator sends.
//! Holds: no panic; every delivered PDU is exactly the bytes at its place in the stream;
//! digests were checked; each header decodes (or is refused) without panicking.
#![no_main]

use esos_iscsi::digest;
use esos_iscsi::fuzzing::{StreamEnd, read_pdus};
use esos_iscsi::pdu::{self, BHS_LEN};
use libfuzzer_sys::fuzz_target;

/// PDUs framed per input: enough for any interesting sequence.
const MAX_PDUS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let (hd, dd) = (flags & 1 != 0, flags & 2 != 0);
    let (pdus, end) = read_pdus(stream, hd, dd, MAX_PDUS);
    let mut off = 0usize;
    for p in &pdus {
        assert_eq!(&stream[off..off + BHS_LEN], &p.bhs);
        off += BHS_LEN;
        let c = pdu::common(&p.bhs);
        assert_eq!(p.ahs.len(), c.ahs_len);
        assert_eq!(&stream[off..off + c.ahs_len], &p.ahs[..]);
        off += c.ahs_len;
        if hd {
            let wire: [u8; 4] = stream[off..off + 4].try_into().unwrap();
            let mut hdr = p.bhs.to_vec();
            hdr.extend_from_slice(&p.ahs);
            assert_eq!(digest::from_wire(wire), crc32c_of(&hdr));
            off += 4;
        }
        assert_eq!(p.data.len(), c.data_len);
        assert_eq!(&stream[off..off + c.data_len], &p.data[..]);
        let padded = c.data_len + pdu::pad_len(c.data_len);
        if dd && c.data_len > 0 {
            let wire: [u8; 4] = stream[off + padded..off + padded + 4].try_into().unwrap();
            assert_eq!(
                digest::from_wire(wire),
                crc32c_of(&stream[off..off + padded])
            );
            off += 4;
        }
        off += padded;
        let _ = pdu::parse_request(&p.bhs, &p.ahs);
    }
    assert!(off <= stream.len());
    match end {
        StreamEnd::HeaderDigest => assert!(hd),
        StreamEnd::DataDigest => assert!(dd),
        _ => {}
    }
});

/// Bitwise CRC32C (Castagnoli, reflected 0x82F63B78): an oracle independent of the
/// crate the target uses. Received padding may hold anything: it is hashed as sent.
fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
