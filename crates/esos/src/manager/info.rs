//! What the manager reports: devices, targets, sessions, statistics and port groups as the
//! API shows them.

use serde::Serialize;

/// One device as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub name: String,
    /// file | blockdev | ram | null (and later kinds)
    pub kind: String,
    /// File or block device path (a replicated device's: its backing's).
    pub path: Option<String>,
    /// The backing device of a replicated device.
    pub backing: Option<String>,
    pub size_bytes: u64,
    pub block_size: u32,
    pub read_only: bool,
    pub thin: bool,
    pub write_cache: bool,
    pub serial: String,
    /// NAA designator as 32 hex digits.
    pub naa: String,
    /// Where it is exported: "target/lun" or "target/group/lun".
    pub exports: Vec<String>,
}

/// One target as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub name: String,
    pub alias: Option<String>,
    pub enabled: bool,
    pub portals: Vec<String>,
    pub chap: bool,
    pub groups: Vec<GroupInfo>,
    /// LUN → device for initiators in no group; `None` refuses them.
    pub default_luns: Option<Vec<LunInfo>>,
    pub sessions: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub name: String,
    pub initiators: Vec<String>,
    pub luns: Vec<LunInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LunInfo {
    pub lun: u64,
    pub device: String,
}

/// I/O counters of one device since the daemon started (or since it was added).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceStats {
    pub name: String,
    pub read_commands: u64,
    pub write_commands: u64,
    /// Every other command (INQUIRY, SYNCHRONIZE CACHE, UNMAP, ...).
    pub other_commands: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Commands that ended in CHECK CONDITION.
    pub errors: u64,
    /// Commands admitted and not yet completed.
    pub in_flight: u64,
    /// Sums of completion latencies, microseconds (divide by the command count for a mean).
    pub read_latency_us: u64,
    pub write_latency_us: u64,
}

/// One ALUA target port group as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PortGroupInfo {
    pub id: u16,
    /// active-optimized | active-non-optimized | standby | unavailable | transitioning
    pub state: String,
    /// Portal group tags (relative target port identifiers) in the group.
    pub portal_groups: Vec<u16>,
    /// implicit | explicit | both: who may change states (SET TARGET PORT GROUPS needs
    /// explicit); the management API always may.
    pub mode: String,
}

/// Why a port group state change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PortGroupError {
    #[error("no target port group {0}")]
    NotFound(u16),
    #[error("state: {0:?} is not active-optimized, active-non-optimized, standby or unavailable")]
    BadState(String),
    #[error("{0}")]
    Failed(String),
}

/// One logged-in session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Handle for [`Manager::close_session`]; unique for the life of the daemon.
    pub id: u64,
    /// TSIH the target assigned (RFC 7143 11.12.6).
    pub tsih: u16,
    pub initiator: String,
    /// ISID as 12 hex digits.
    pub isid: String,
    /// `None` for discovery sessions.
    pub target: Option<String>,
    /// Local portal address the session came in on.
    pub portal: String,
    /// Initiator's address.
    pub peer: String,
    /// Seconds since the Unix epoch when the session reached full feature phase.
    pub since_unix: u64,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment the initiator accepts (we send at most this per PDU).
    pub initiator_max_recv_data_segment_length: u32,
    /// Largest data segment esos accepts from the initiator.
    pub target_max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// SCSI commands received.
    pub commands: u64,
}
