//! The boundary between a replicated device and the quorum: what the device asks a majority
//! of voters before it acts. [`crate::quorum`] implements it over the network.

use std::fmt;

use esos_block::BoxFuture;

/// Longest node name (bytes).
pub const MAX_NODE_NAME_LEN: usize = 63;
/// Most data nodes one replicated device spans.
pub const MAX_DATA_NODES: usize = 3;
/// Most voters (data nodes plus witness) of one device.
pub const MAX_VOTERS: usize = 4;

/// A node's name as configured (`cluster.node[].name`): 1 to [`MAX_NODE_NAME_LEN`] bytes of
/// `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(String);

impl NodeName {
    /// Checks the name; `None` when it is empty, too long or has other characters.
    pub fn new(name: &str) -> Option<NodeName> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NODE_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| NodeName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The cluster-wide record of one replicated device, as a majority of voters holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Bumped by every change; 0 = never written (a new device).
    pub epoch: u64,
    /// The node that may acknowledge I/O; `None` after a demotion or before the first
    /// promotion.
    pub primary: Option<NodeName>,
    /// Generation of the current data (the primary's current generation); 0 = none yet.
    pub generation: u64,
    /// Nodes whose copy holds every write of `generation` (the primary among them). Only
    /// these may be promoted.
    pub up_to_date: Vec<NodeName>,
}

impl Record {
    pub fn is_up_to_date(&self, node: &NodeName) -> bool {
        self.up_to_date.contains(node)
    }
}

/// Why the quorum did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// Fewer than a majority of voters answered in time.
    #[error("no quorum: {reachable} of {voters} voters reachable, {needed} needed")]
    NoQuorum {
        reachable: usize,
        voters: usize,
        needed: usize,
    },
    /// The record does not allow it (another node is primary, this node is not up to
    /// date, the generation moved on...). The message says which.
    #[error("refused: {0}")]
    Refused(String),
    /// This node's lease ended (or was never granted) before the operation could finish.
    #[error("lease lost")]
    LeaseLost,
    /// A voter's state could not be stored.
    #[error("voter storage: {0}")]
    Storage(String),
}

/// What a replicated device asks of the voters. Every method that changes the record is a
/// compare-and-set against the record a majority holds: it fails with
/// [`QuorumError::Refused`] when its precondition does not hold there.
pub trait Arbiter: Send + Sync + fmt::Debug {
    /// This node.
    fn me(&self) -> &NodeName;

    /// Makes this node primary of data at `generation`. Precondition: no other primary
    /// holds the record (or `force`), and this node is in `up_to_date` with the record's
    /// generation equal to `generation` — or `force` while no node holds a lease (the
    /// administrator accepts this node's data as the only up-to-date copy after losing the
    /// others) — or the record is new (epoch 0) and `force`
    /// (the administrator names the first primary). Waits until every lease a majority
    /// granted to a previous primary has expired, then holds a lease of its own, renewed in
    /// the background until [`Arbiter::demote`] or until renewal fails.
    fn promote(&self, generation: u64, force: bool) -> BoxFuture<'_, Result<Record, QuorumError>>;

    /// Primary only: records that exactly `up_to_date` (this node among them) hold every
    /// write of `generation`. Called with a new generation and without a peer before any
    /// write is acknowledged without that peer, and with the peer again once its resync
    /// ended.
    fn set_up_to_date(
        &self,
        generation: u64,
        up_to_date: Vec<NodeName>,
    ) -> BoxFuture<'_, Result<Record, QuorumError>>;

    /// Gives up the primary role: `primary` becomes `None`, the lease is released (after the
    /// caller stopped acknowledging I/O).
    fn demote(&self) -> BoxFuture<'_, Result<Record, QuorumError>>;

    /// The record as a majority holds it now.
    fn record(&self) -> BoxFuture<'_, Result<Record, QuorumError>>;

    /// True while this node holds an unexpired primary lease. Cheap (an atomic load and a
    /// clock read): checked before each acknowledgement.
    fn lease_valid(&self) -> bool;

    /// True when the last exchange with the voters reached a majority.
    fn quorate(&self) -> bool;
}
