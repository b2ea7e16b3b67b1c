//! What a replicated device reports about itself: the management plane (API, CLI, TUI,
//! metrics, the OCF agent) reads these and nothing else.

use std::fmt;

use crate::arbiter::NodeName;

/// The role of this node for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Secondary,
}

/// The state of this node's copy of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataState {
    /// Holds every acknowledged write.
    UpToDate,
    /// Consistent, but the primary went on without it.
    Outdated,
    /// Partly written (a resync target before the end, a fresh device): never served.
    Inconsistent,
    /// This node's data device failed; it serves nothing until replaced and resynced.
    Failed,
}

/// The replication link to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Not connected; trying.
    Connecting,
    /// Connected and in step: writes go to the peer synchronously.
    Connected,
    /// Connected, copying what differs to the peer.
    SyncSource,
    /// Connected, receiving what differs from the peer.
    SyncTarget,
    /// Connected, comparing checksums of every chunk (online verify).
    Verifying,
    /// Both copies took writes the other never saw: waits for the administrator.
    SplitBrain,
    /// The peer's data is unrelated to ours (no common generation): waits for the
    /// administrator.
    Unrelated,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name used in the API, the CLI, metrics labels and the OCF agent.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Role { Primary => "primary", Secondary => "secondary" });
names!(DataState {
    UpToDate => "up-to-date",
    Outdated => "outdated",
    Inconsistent => "inconsistent",
    Failed => "failed",
});
names!(LinkState {
    Connecting => "connecting",
    Connected => "connected",
    SyncSource => "sync-source",
    SyncTarget => "sync-target",
    Verifying => "verifying",
    SplitBrain => "split-brain",
    Unrelated => "unrelated",
});

/// One peer as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub name: NodeName,
    pub link: LinkState,
    /// The peer's role and data state as it last told us (`None` while not connected).
    pub role: Option<Role>,
    pub data: Option<DataState>,
    /// Bytes that may differ between this node and the peer (set bits × chunk size).
    pub out_of_sync_bytes: u64,
    /// Resync or verify progress: bytes done of the bytes to do, and the rate now.
    pub sync_done_bytes: u64,
    pub sync_total_bytes: u64,
    pub sync_rate_bytes_per_sec: u64,
    /// Chunks found different by the last online verify (0 when none ran).
    pub verify_mismatched_chunks: u64,
    /// Replicated writes sent and not acknowledged yet.
    pub in_flight: u32,
}

/// Everything about one replicated device on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub device: String,
    pub me: NodeName,
    pub role: Role,
    pub data: DataState,
    /// This node's current generation (hex in reports).
    pub generation: u64,
    /// A majority of voters answered the last exchange.
    pub quorate: bool,
    /// This node holds an unexpired primary lease (only ever true on the primary).
    pub lease_valid: bool,
    /// The primary as the cluster record names it, if known.
    pub primary: Option<NodeName>,
    pub peers: Vec<PeerStatus>,
    /// Set while a split brain or unrelated data is detected: what differs and what the
    /// administrator can do, in a sentence or two.
    pub report: Option<String>,
}
