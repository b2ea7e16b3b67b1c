//! Config errors: each names the source (file), the key path as written in the file
//! (e.g. `target[1].group[0].luns[2].device`) and the reason.

use std::fmt;

/// One refused value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Path of the key, e.g. `device[2].size`.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Everything wrong with one config, so the administrator fixes it in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyErrors(pub Vec<KeyError>);

impl fmt::Display for KeyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// TOML syntax or type error (unknown key, wrong type).
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    /// Well-formed TOML with values we refuse.
    #[error("{file}: invalid configuration ({} error{}):\n{errors}", errors.0.len(), if errors.0.len() == 1 { "" } else { "s" })]
    Invalid { file: String, errors: KeyErrors },
}

impl ConfigError {
    /// The refused keys, for tests and tooling; empty for read and parse errors.
    pub fn key_errors(&self) -> &[KeyError] {
        match self {
            ConfigError::Invalid { errors, .. } => &errors.0,
            _ => &[],
        }
    }
}
