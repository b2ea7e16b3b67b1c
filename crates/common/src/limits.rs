//! Limits that more than one crate enforces. A bound defined twice with two values is two
//! bugs: every crate takes it from here.

/// Most bytes one command may move in either direction, whatever a device's configured
/// maximum transfer length says. Front-ends refuse a larger expected length before they
/// allocate a buffer for it; the command engines cap every configured limit at it.
pub const MAX_TRANSFER_BYTES: u32 = 32 << 20;

/// Longest iSCSI name in bytes (RFC 7143 4.2.7.1: 223 bytes, UTF-8).
pub const MAX_ISCSI_NAME_LEN: usize = 223;

/// Largest LUN number esos maps: the 14 bits of SAM-5's flat space addressing method
/// (SAM-5 4.7.7.3), so every LUN has one single-level address.
pub const MAX_LUN: u64 = 0x3FFF;
