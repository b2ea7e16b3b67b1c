//! The crate's layers (see the crate docs) as a test: no module names a module of a
//! higher layer in its non-test code, so the next command set cannot quietly bring back
//! a cycle between the engine, the unit and the handlers.

use std::path::{Path, PathBuf};

/// Layer of a source file (path relative to `src/`), lowest first.
fn layer(rel: &str) -> usize {
    let top = rel.split('/').next().unwrap_or(rel);
    match top.trim_end_matches(".rs") {
        "state" => 1,
        "unit" => 2,
        "disk" | "mmc" => 3,
        "engine" => 4,
        // The vocabulary: lib.rs, sense, lun, block_status, pr, alua, cdb.
        _ => 0,
    }
}

/// What a file of a lower layer may not name, with the layer it belongs to. Items
/// re-exported at the crate root are listed by name too, so `crate::{LunMap}` counts.
const UPPER: [(&str, usize); 8] = [
    ("crate::state", 1),
    ("crate::unit", 2),
    ("LogicalUnit", 2),
    ("crate::disk", 3),
    ("crate::mmc", 3),
    ("crate::engine", 4),
    ("LunMap", 4),
    ("DataInRef", 4),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without comments and without its test module.
fn code(text: &str) -> String {
    let end = [
        "#[cfg(test)]\nmod tests {",
        "#[cfg(test)]\npub mod encode {",
    ]
    .iter()
    .filter_map(|m| text.find(m))
    .min()
    .unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_module_names_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut bad = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        if name.starts_with("tests") || rel == "lib.rs" {
            // Tests drive the whole engine; lib.rs only declares and re-exports.
            continue;
        }
        let own = layer(&rel);
        let text = code(&std::fs::read_to_string(&path).unwrap());
        for (needle, upper) in UPPER {
            if upper > own && text.contains(needle) {
                bad.push(format!(
                    "{rel} (layer {own}) names {needle} (layer {upper})"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "upward dependencies:\n{}", bad.join("\n"));
}
