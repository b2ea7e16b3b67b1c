//! Bounds and defaults of config values: one home, so the validator, the ALUA rules and
//! the editors agree. Limits other crates enforce too come from [`esos_common::limits`].

pub use esos_common::limits::MAX_LUN;

/// The largest transfer each logical unit reports (VPD Block Limits MAXIMUM TRANSFER
/// LENGTH) and enforces, in bytes. Hosts split larger I/O; 8 MiB keeps one command's buffer
/// small while being far past where throughput stops growing. Below the hard bound of
/// every front-end, [`esos_common::limits::MAX_TRANSFER_BYTES`].
pub const ADVERTISED_MAX_TRANSFER_BYTES: u32 = 8 << 20;
const _: () = assert!(ADVERTISED_MAX_TRANSFER_BYTES <= esos_common::limits::MAX_TRANSFER_BYTES);

/// Largest `physical_block_size` accepted: 64 KiB, beyond any real medium's physical block,
/// so the LBPPB exponent (4 bits in READ CAPACITY(16)) always fits.
pub const MAX_PHYSICAL_BLOCK_SIZE: u32 = 64 << 10;

/// RFC 7143 recommends CHAP secrets of at least 12 bytes (96 bits): shorter ones fall to
/// an offline dictionary attack on one captured exchange.
pub const CHAP_SECRET_MIN_LEN: usize = 12;
/// Longest CHAP secret; matches what common initiators (open-iscsi, Windows) accept.
pub const CHAP_SECRET_MAX_LEN: usize = 255;
/// Longest CHAP user name we accept.
pub const CHAP_NAME_MAX_LEN: usize = 255;
/// Longest TargetAlias (RFC 7143 13.6 text value, kept to one short line).
pub const MAX_ALIAS_LEN: usize = 255;

/// TSIH is 16 bits and 0 is reserved, so no target can hold more sessions (RFC 7143 11.12.4).
pub const MAX_SESSIONS: u32 = 65535;
/// Largest CmdSN window one session may have; bounds the per-session command memory.
pub const MAX_CMDS_PER_SESSION: u32 = 4096;
/// Login timeout bounds (ms): long enough for a slow CHAP exchange, short enough that a
/// half-open login cannot hold a session slot for long.
pub const LOGIN_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=300_000;
/// NOP-In interval bounds when enabled (ms); 0 disables pings.
pub const NOP_IN_INTERVAL_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;
/// NOP-In answer timeout bounds (ms).
pub const NOP_IN_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;
/// Most connections that may be in the login phase at once; each holds a task and socket
/// buffers until it logs in or `login_timeout_ms` ends it.
pub const MAX_LOGIN_CONNECTIONS: u32 = 65535;

/// MaxRecvDataSegmentLength, MaxBurstLength and FirstBurstLength range (RFC 7143 13.12-13.14).
pub const DATA_LENGTH_RANGE: std::ops::RangeInclusive<u64> = 512..=16_777_215;
/// MaxOutstandingR2T range (RFC 7143 13.17).
pub const MAX_OUTSTANDING_R2T_RANGE: std::ops::RangeInclusive<u32> = 1..=65535;
/// DefaultTime2Wait / DefaultTime2Retain range in seconds (RFC 7143 13.15, 13.16).
pub const TIME2_RANGE: std::ops::RangeInclusive<u32> = 0..=3600;

/// Portal used when the config names none.
pub const DEFAULT_PORTAL: &str = "0.0.0.0:3260";
/// Largest portal group tag (RFC 7143 13.9: 16 bits; 0 is not used by esos).
pub const MAX_PORTAL_GROUP: u32 = 65535;
/// Name of the state directory next to the config file when `data_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "esos-state";

/// Slowest `sanitize_rate` accepted: below it a sanitize of a large device would take
/// months, which is a typo rather than a policy.
pub const MIN_SANITIZE_RATE: u64 = 1 << 20;

/// Default primary lease of a cluster (ms): a failover waits at most this long for an old
/// primary's lease to run out. The quorum's own bounds, so config and quorum agree.
pub const DEFAULT_LEASE_MS: u64 = esos_replica::quorum::DEFAULT_LEASE_MS;
/// Lease bounds (ms): shorter leases renew too often to survive a busy host, longer ones
/// make every failover slow.
pub const LEASE_MS: std::ops::RangeInclusive<u64> =
    esos_replica::quorum::MIN_LEASE_MS..=esos_replica::quorum::wire::MAX_LEASE_MS;
/// Default time I/O of a replicated device waits for the quorum or a peer (ms) before it
/// fails as not ready: longer than a lease, so a failover completes within it.
pub const DEFAULT_IO_TIMEOUT_MS: u64 = 5000;
/// `io_timeout_ms` bounds.
pub const IO_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=600_000;
