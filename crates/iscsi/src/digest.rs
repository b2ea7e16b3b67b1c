//! CRC32C digests.
