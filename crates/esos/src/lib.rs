//! The esos daemon's library half: configuration (parse → validate → plan), LU identity,
//! command-line presets and the object graph. `main.rs` is the thin edge that runs them.

pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod edit;
pub mod graph;
pub mod identity;
pub mod manager;
pub mod metrics;
pub mod presets;
pub mod system;
pub mod tui;
