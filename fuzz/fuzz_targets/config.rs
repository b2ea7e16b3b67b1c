//! The config file (crates/esos/src/config: `parse` then `validate`). Input: the file's
//! bytes. Holds: no panic, whatever the text; every error renders as a message; a valid
//! config validates again, with the same warnings (validation is pure).
#![no_main]

use std::path::PathBuf;

use esos::config::{self, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let raw = match config::parse(text, "fuzz.toml") {
        Ok(raw) => raw,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let source = Source {
        label: "fuzz.toml".to_owned(),
        base_dir: PathBuf::from("/nonexistent/esos-fuzz"),
        node: None,
    };
    match config::validate(&raw, &source) {
        Ok(plan) => {
            let again = config::validate(&raw, &source).expect("validation is deterministic");
            assert_eq!(plan.warnings, again.warnings);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
