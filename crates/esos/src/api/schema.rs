//! Mirror types describing the manager's answers in the OpenAPI document.
//!
//! The answers themselves are plain `Serialize` structs in [`crate::manager`]; a test checks
//! each mirror has exactly the fields the real type serialises.

use utoipa::ToSchema;

/// One device (see `manager::DeviceInfo`).
#[derive(ToSchema)]
#[schema(as = DeviceInfo)]
#[allow(dead_code)]
pub struct DeviceInfoDoc {
    name: String,
    /// file | blockdev | ram | null | cdrom | replicated
    kind: String,
    /// File or block device path (a replicated device's: its backing's).
    path: Option<String>,
    /// The backing device of a replicated device; null otherwise.
    backing: Option<String>,
    size_bytes: u64,
    block_size: u32,
    read_only: bool,
    thin: bool,
    write_cache: bool,
    serial: String,
    /// NAA designator, 32 hex digits.
    naa: String,
    /// Where it is exported: "target/lun" or "target/group/lun".
    exports: Vec<String>,
}

/// One target (see `manager::TargetInfo`).
#[derive(ToSchema)]
#[schema(as = TargetInfo)]
#[allow(dead_code)]
pub struct TargetInfoDoc {
    name: String,
    alias: Option<String>,
    enabled: bool,
    portals: Vec<String>,
    chap: bool,
    groups: Vec<GroupInfoDoc>,
    /// LUN map for initiators in no group; null refuses them.
    default_luns: Option<Vec<LunInfoDoc>>,
    sessions: u32,
}

#[derive(ToSchema)]
#[schema(as = GroupInfo)]
#[allow(dead_code)]
pub struct GroupInfoDoc {
    name: String,
    initiators: Vec<String>,
    luns: Vec<LunInfoDoc>,
}

#[derive(ToSchema)]
#[schema(as = LunInfo)]
#[allow(dead_code)]
pub struct LunInfoDoc {
    lun: u64,
    device: String,
}

/// One logged-in session (see `manager::SessionInfo`).
#[derive(ToSchema)]
#[schema(as = SessionInfo)]
#[allow(dead_code)]
pub struct SessionInfoDoc {
    /// Handle for `DELETE /sessions/{id}`.
    id: u64,
    tsih: u16,
    initiator: String,
    /// 12 hex digits.
    isid: String,
    /// null for discovery sessions.
    target: Option<String>,
    portal: String,
    peer: String,
    since_unix: u64,
    header_digest: bool,
    data_digest: bool,
    /// MaxRecvDataSegmentLength the initiator declared (what the target may send).
    initiator_max_recv_data_segment_length: u32,
    /// MaxRecvDataSegmentLength the target declared (what the initiator may send).
    target_max_recv_data_segment_length: u32,
    max_burst_length: u32,
    first_burst_length: u32,
    immediate_data: bool,
    initial_r2t: bool,
    /// SCSI commands received.
    commands: u64,
}

/// What a change did (see `manager::ApplyReport`).
#[derive(ToSchema)]
#[schema(as = ApplyReport)]
#[allow(dead_code)]
pub struct ApplyReportDoc {
    devices_added: Vec<String>,
    devices_removed: Vec<String>,
    devices_changed: Vec<String>,
    targets_added: Vec<String>,
    targets_removed: Vec<String>,
    targets_changed: Vec<String>,
    /// The set of listening portals changed.
    portals_changed: bool,
    sessions_closed: u32,
    /// Config file written; null when the daemon runs without one.
    persisted_to: Option<String>,
    warnings: Vec<String>,
}
