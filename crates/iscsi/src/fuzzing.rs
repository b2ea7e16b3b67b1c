//! Entry points for the fuzz targets in `fuzz/`: internal decoders that have no public API
//! of their own. Not a stable interface; nothing in the runtime uses it.

use futures_util::FutureExt;

use crate::conn::{ConnError, PduReader};
use crate::pdu::BHS_LEN;

/// Largest data segment [`read_pdus`] reads; longer ones end the stream as the runtime's
/// `SegmentTooLong` does (its own limits are lower still).
pub const MAX_SEGMENT_BYTES: usize = 1 << 18;

/// One PDU as the connection's framing delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedPdu {
    pub bhs: [u8; BHS_LEN],
    pub ahs: Vec<u8>,
    pub data: Vec<u8>,
}

/// Why [`read_pdus`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The bytes ran out (possibly in the middle of a PDU).
    Closed,
    HeaderDigest,
    DataDigest,
    SegmentTooLong,
    /// Any other framing error, as its message.
    Other(String),
}

/// Frames `stream` with the runtime's `PduReader` (BHS, AHS, digests, padding) until the
/// bytes end or framing fails, at most `max_pdus` PDUs.
pub fn read_pdus(
    stream: &[u8],
    header_digest: bool,
    data_digest: bool,
    max_pdus: usize,
) -> (Vec<FramedPdu>, StreamEnd) {
    let mut rd = PduReader::new(stream);
    rd.header_digest = header_digest;
    rd.data_digest = data_digest;
    let mut out = Vec::new();
    let end = loop {
        if out.len() == max_pdus {
            break StreamEnd::Closed;
        }
        // A byte slice is always ready: the futures complete on their first poll.
        let hdr = match rd.read_header().now_or_never() {
            Some(Ok(h)) => h,
            Some(Err(e)) => break end_of(e),
            None => unreachable!("reading a byte slice never waits"),
        };
        let len = hdr.common.data_len;
        if len > MAX_SEGMENT_BYTES {
            break StreamEnd::SegmentTooLong;
        }
        let mut data = vec![0u8; len];
        match rd.read_data(&mut data).now_or_never() {
            Some(Ok(())) => {}
            Some(Err(e)) => break end_of(e),
            None => unreachable!("reading a byte slice never waits"),
        }
        out.push(FramedPdu {
            bhs: hdr.bhs,
            ahs: rd.ahs().to_vec(),
            data,
        });
    };
    (out, end)
}

fn end_of(e: ConnError) -> StreamEnd {
    match e {
        ConnError::Closed => StreamEnd::Closed,
        ConnError::HeaderDigest => StreamEnd::HeaderDigest,
        ConnError::DataDigest => StreamEnd::DataDigest,
        ConnError::SegmentTooLong { .. } => StreamEnd::SegmentTooLong,
        other => StreamEnd::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest;

    #[test]
    fn frames_header_and_data_digests() {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = crate::pdu::opcode::NOP_OUT;
        bhs[7] = 5; // 5 data bytes, 3 bytes of padding.
        let mut wire = bhs.to_vec();
        wire.extend_from_slice(&digest::to_wire(digest::header(&bhs, &[])));
        wire.extend_from_slice(b"hello\0\0\0");
        wire.extend_from_slice(&digest::to_wire(digest::data(b"hello")));
        let (pdus, end) = read_pdus(&wire, true, true, 8);
        assert_eq!(end, StreamEnd::Closed);
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].data, b"hello");
        let mut bad = wire.clone();
        bad[BHS_LEN] ^= 1;
        assert_eq!(read_pdus(&bad, true, true, 8).1, StreamEnd::HeaderDigest);
        let last = bad.len() - 1;
        bad[BHS_LEN] ^= 1;
        bad[last] ^= 1;
        assert_eq!(read_pdus(&bad, true, true, 8).1, StreamEnd::DataDigest);
    }
}
