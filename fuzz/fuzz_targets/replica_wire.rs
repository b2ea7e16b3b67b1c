//! Replication link messages (crates/replica/src/wire.rs `Msg::decode`).
//! Input: a frame kind (2 bytes) and a payload as a peer may send it.
//! Holds: no panic; a decoded message keeps its kind and encodes back to the same bytes;
//! data, blobs and bitmap pieces stay within their limits.
#![no_main]

use esos_replica::wire::{MAX_BITMAP_PIECE_BYTES, MAX_DATA_BYTES, MAX_STATE_BLOB_BYTES, Msg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // Kinds outside the replication range are tried too: they must be refused.
    let kind = 0x0100 | u16::from(data[0] & 0x1f) | (u16::from(data[1] & 0x80) << 2);
    let payload = data[2..].to_vec();
    let Ok(m) = Msg::decode(kind, payload.clone()) else {
        return;
    };
    assert_eq!(m.kind(), kind);
    match &m {
        Msg::Write { data, .. } | Msg::ResyncData { data, .. } => {
            assert!(!data.is_empty() && data.len() <= MAX_DATA_BYTES)
        }
        Msg::StateBlob { blob } => assert!(blob.len() <= MAX_STATE_BLOB_BYTES),
        Msg::Bitmap { bits, .. } => assert!(bits.len() <= MAX_BITMAP_PIECE_BYTES),
        _ => {}
    }
    let (mut bytes, d) = m.encode();
    if let Some(d) = d {
        bytes.extend_from_slice(d.as_slice());
    }
    assert_eq!(bytes, payload);
});
