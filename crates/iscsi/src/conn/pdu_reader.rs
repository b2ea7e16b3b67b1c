//! Reading PDUs off the socket: header, AHS, digests, data segment and padding.

use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;

use crate::digest;
use crate::pdu::{self, BHS_LEN, BhsCommon};

use super::ConnError;

/// Socket read buffer: several small PDUs per read system call.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A decoded header with its raw bytes (for Reject) and AHS.
pub(crate) struct Header {
    pub bhs: [u8; BHS_LEN],
    pub common: BhsCommon,
}

/// Reads PDUs: BHS, AHS, header digest, then the data segment on request. Generic over
/// the byte source so the fuzz target can drive the very same framing from a byte slice.
pub(crate) struct PduReader<R = OwnedReadHalf> {
    rd: BufReader<R>,
    pub header_digest: bool,
    pub data_digest: bool,
    ahs: Vec<u8>,
}

impl<R: AsyncRead + Unpin> PduReader<R> {
    pub(crate) fn new(rd: R) -> PduReader<R> {
        PduReader {
            rd: BufReader::with_capacity(READ_BUFFER_BYTES, rd),
            header_digest: false,
            data_digest: false,
            ahs: Vec::new(),
        }
    }

    /// Bytes already read from the socket and not yet consumed: more PDUs waiting.
    pub(crate) fn buffered(&self) -> usize {
        self.rd.buffer().len()
    }

    pub(crate) fn ahs(&self) -> &[u8] {
        &self.ahs
    }

    async fn read_exact(&mut self, dst: &mut [u8]) -> Result<(), ConnError> {
        match self.rd.read_exact(dst).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ConnError::Closed),
            Err(e) => Err(ConnError::Io(e)),
        }
    }

    /// Reads the next header. The caller then reads or skips exactly `common.data_len` bytes.
    pub(crate) async fn read_header(&mut self) -> Result<Header, ConnError> {
        let mut bhs = [0u8; BHS_LEN];
        self.read_exact(&mut bhs).await?;
        let common = pdu::common(&bhs);
        self.ahs.clear();
        if common.ahs_len > 0 {
            self.ahs.resize(common.ahs_len, 0);
            let mut ahs = std::mem::take(&mut self.ahs);
            let r = self.read_exact(&mut ahs).await;
            self.ahs = ahs;
            r?;
        }
        if self.header_digest {
            let mut d = [0u8; 4];
            self.read_exact(&mut d).await?;
            if digest::from_wire(d) != digest::header(&bhs, &self.ahs) {
                return Err(ConnError::HeaderDigest);
            }
        }
        Ok(Header { bhs, common })
    }

    /// Reads a data segment of `dst.len()` bytes, its padding and its digest.
    pub(crate) async fn read_data(&mut self, dst: &mut [u8]) -> Result<(), ConnError> {
        self.read_exact(dst).await?;
        let pad = pdu::pad_len(dst.len());
        let mut tail = [0u8; 7];
        let tail_len = pad
            + if self.data_digest && !dst.is_empty() {
                4
            } else {
                0
            };
        self.read_exact(&mut tail[..tail_len]).await?;
        if self.data_digest && !dst.is_empty() {
            let mut d = [0u8; 4];
            d.copy_from_slice(&tail[pad..pad + 4]);
            let want = crc32c::crc32c_append(crc32c::crc32c(dst), &tail[..pad]);
            if digest::from_wire(d) != want {
                return Err(ConnError::DataDigest);
            }
        }
        Ok(())
    }

    /// Discards a data segment of `len` bytes (and its padding and digest).
    pub(crate) async fn skip_data(&mut self, len: usize) -> Result<(), ConnError> {
        let mut total = len + pdu::pad_len(len);
        if self.data_digest && len > 0 {
            total += 4;
        }
        let mut scratch = [0u8; 4096];
        while total > 0 {
            let n = total.min(scratch.len());
            self.read_exact(&mut scratch[..n]).await?;
            total -= n;
        }
        Ok(())
    }
}
