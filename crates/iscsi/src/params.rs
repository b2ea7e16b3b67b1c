//! Operational parameters: our limits (what we declare) and the negotiated result.

/// Limits and preferences this target declares during login (RFC 7143 13.x).
/// Every value is bounded by the RFC's range; the config layer validates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetParams {
    /// Largest data segment we accept in one PDU (declared as our MaxRecvDataSegmentLength).
    pub max_recv_data_segment_length: u32,
    /// Our offer for MaxBurstLength (result: minimum).
    pub max_burst_length: u32,
    /// Our offer for FirstBurstLength (result: minimum).
    pub first_burst_length: u32,
    /// Our offer for MaxOutstandingR2T (result: minimum).
    pub max_outstanding_r2t: u32,
    /// Our offer for ImmediateData (result: AND).
    pub immediate_data: bool,
    /// Our offer for InitialR2T (result: OR).
    pub initial_r2t: bool,
    /// Digests we accept, in order of preference: CRC32C and/or None.
    pub header_digest_crc32c: bool,
    pub data_digest_crc32c: bool,
    /// DefaultTime2Wait / DefaultTime2Retain we offer (result: max / min).
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    /// Large READs from files held in memory (tmpfs) send their Data-In straight from the
    /// page cache (`sendfile`) on connections without data digests. Not negotiated.
    pub zero_copy_reads: bool,
}

impl Default for TargetParams {
    fn default() -> Self {
        TargetParams {
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
            max_outstanding_r2t: 8,
            immediate_data: true,
            initial_r2t: false,
            header_digest_crc32c: true,
            data_digest_crc32c: true,
            default_time2wait: 2,
            default_time2retain: 20,
            zero_copy_reads: true,
        }
    }
}

/// The session's negotiated parameters (RFC 7143 13), used by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// Largest data segment the initiator accepts: we never send more per PDU.
    pub initiator_max_recv_data_segment_length: u32,
    /// Largest data segment we accept (what we declared).
    pub target_max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub header_digest: bool,
    pub data_digest: bool,
    pub error_recovery_level: u8,
    pub max_connections: u16,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
}

impl Default for SessionParams {
    /// RFC 7143 defaults, as in force before any negotiation.
    fn default() -> Self {
        SessionParams {
            initiator_max_recv_data_segment_length: 8192,
            target_max_recv_data_segment_length: 8192,
            max_burst_length: 262144,
            first_burst_length: 65536,
            max_outstanding_r2t: 1,
            immediate_data: true,
            initial_r2t: true,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            header_digest: false,
            data_digest: false,
            error_recovery_level: 0,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
        }
    }
}
