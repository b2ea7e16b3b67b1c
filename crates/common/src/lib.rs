//! What every esos crate shares, kept in one place so it cannot drift: the limits a peer
//! runs into ([`limits`]), big-endian field access for wire formats ([`be`]), crash-safe
//! file replacement for state and config files ([`fs`]) and recovery of poisoned locks
//! ([`sync`]).
//!
//! This crate depends on nothing and knows no protocol.

pub mod be;
pub mod fs;
pub mod limits;
pub mod sync;
