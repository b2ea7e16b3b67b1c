//! The esos daemon's library half: configuration (parse → validate → plan), LU identity,
//! command-line presets and the object graph. `main.rs` is the thin edge that runs them.

pub mod cli;
pub mod config;
pub mod graph;
pub mod identity;
pub mod presets;
