//! Text key=value segments (crates/iscsi/src/text.rs) and their accumulation across
//! Continue-bit PDUs. Input: one byte choosing a split point, then the segment.
//! Holds: no panic; every parsed pair is within the RFC 7143 6.1 bounds; encode∘parse is
//! the identity on parsed pairs; accumulating two pieces gives the same result as one.
#![no_main]

use esos_iscsi::text::{self, MAX_KEY_BYTES, MAX_PAIRS, TextAccumulator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, seg)) = data.split_first() else {
        return;
    };
    let parsed = text::parse(seg);
    if let Ok(pairs) = &parsed {
        assert!(pairs.len() <= MAX_PAIRS);
        for p in pairs {
            assert!(!p.key.is_empty() && p.key.len() <= MAX_KEY_BYTES);
            assert!(!p.key.contains('=') && !p.key.contains('\0'));
            assert!(!p.value.contains('\0'));
        }
        let kv: Vec<(&str, &str)> = pairs.iter().map(|p| (&*p.key, &*p.value)).collect();
        let again = text::parse(&text::encode(&kv)).expect("encoded pairs parse");
        assert_eq!(&again, pairs);
    }
    // The same segment in two pieces, as a login split with the C bit delivers it.
    let at = usize::from(split).min(seg.len());
    let mut acc = TextAccumulator::default();
    if acc.push(&seg[..at]).is_ok()
        && let Ok(whole) = acc.finish(&seg[at..])
    {
        assert_eq!(whole, seg);
        assert_eq!(text::parse(&whole), parsed);
        assert!(acc.is_empty());
    }
});
