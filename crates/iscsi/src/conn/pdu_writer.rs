//! Writing PDUs to the socket: batching small PDUs, zero-copy data segments (vectored
//! writes and `sendfile`), the torn flag after a write cut short, the stall timeout.

use std::io::IoSlice;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use crate::digest;
use crate::pdu::{self, BHS_LEN};

/// Socket write buffer: responses that are ready together leave in one write.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Writes PDUs. Small PDUs collect in a buffer that leaves in one write when the caller
/// flushes (nothing else ready); a large data segment goes out with whatever is buffered and
/// its own header in one vectored write, without being copied.
pub(crate) struct PduWriter {
    w: OwnedWriteHalf,
    out: Vec<u8>,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Longest one socket write may make no progress: an initiator that stops reading
    /// (its Data-In, its responses) must not hold the connection and its buffers forever.
    stall_timeout: std::time::Duration,
    /// The caller flushes right after this PDU: data segments are written from the
    /// caller's buffer instead of being copied into `out` to wait for company.
    pub eager: bool,
    /// A socket write did not finish (it failed, or its future was dropped): the stream
    /// may end inside a PDU, so nothing more may follow.
    torn: bool,
}

/// Data segments at least this long are written from the caller's buffer, not copied.
const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;

impl PduWriter {
    pub(super) fn new(w: OwnedWriteHalf, stall_timeout: std::time::Duration) -> PduWriter {
        PduWriter {
            w,
            out: Vec::with_capacity(WRITE_BUFFER_BYTES),
            header_digest: false,
            data_digest: false,
            stall_timeout,
            eager: false,
            torn: false,
        }
    }

    /// Marks the stream as possibly cut short until [`Self::end_write`]; refuses to write
    /// after a write that never ended.
    fn begin_write(&mut self) -> std::io::Result<()> {
        if self.torn {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "an earlier write stopped inside a PDU",
            ));
        }
        self.torn = true;
        Ok(())
    }

    fn end_write(&mut self) {
        self.torn = false;
    }

    /// Queues one PDU: header, header digest, data, padding, data digest.
    pub(crate) async fn send(&mut self, bhs: &[u8; BHS_LEN], data: &[u8]) -> std::io::Result<()> {
        debug_assert_eq!(pdu::common(bhs).data_len, data.len());
        self.out.extend_from_slice(bhs);
        if self.header_digest {
            self.out
                .extend_from_slice(&digest::to_wire(digest::header(bhs, &[])));
        }
        if data.is_empty() {
            return self.flush_if_full().await;
        }
        let mut tail = [0u8; 7];
        let pad = pdu::pad_len(data.len());
        let mut tail_len = pad;
        if self.data_digest {
            tail[pad..pad + 4].copy_from_slice(&digest::to_wire(digest::data(data)));
            tail_len += 4;
        }
        if data.len() < ZERO_COPY_MIN_BYTES && !self.eager {
            self.out.extend_from_slice(data);
            self.out.extend_from_slice(&tail[..tail_len]);
            return self.flush_if_full().await;
        }
        self.begin_write()?;
        let mut parts = [
            IoSlice::new(&self.out),
            IoSlice::new(data),
            IoSlice::new(&tail[..tail_len]),
        ];
        write_all_vectored(&mut self.w, &mut parts, self.stall_timeout).await?;
        self.out.clear();
        self.end_write();
        Ok(())
    }

    /// Sends one PDU whose data segment is `len` bytes of `file` at `offset`, straight from
    /// the page cache (`sendfile`): the header and whatever is queued before it leave first,
    /// flagged MSG_MORE so they share a segment with the data. Only without data digests
    /// (the bytes never pass through esos). A file shorter than the range (a device larger
    /// than its file) reads as zeros past its end, as [`esos_block::BlockDevice::read`] does.
    pub(crate) async fn send_file(
        &mut self,
        bhs: &[u8; BHS_LEN],
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        debug_assert!(!self.data_digest);
        debug_assert_eq!(pdu::common(bhs).data_len, len);
        self.out.extend_from_slice(bhs);
        if self.header_digest {
            self.out
                .extend_from_slice(&digest::to_wire(digest::header(bhs, &[])));
        }
        self.begin_write()?;
        let sock = self.w.as_ref().as_raw_fd();
        let mut at = 0;
        while at < self.out.len() {
            let head = &self.out[at..];
            let n = self
                .write_with(|| {
                    // SAFETY: `head` is a live slice for the whole call; `sock` is this
                    // connection's socket, open while `self.w` lives.
                    let n = unsafe {
                        libc::send(
                            sock,
                            head.as_ptr().cast(),
                            head.len(),
                            libc::MSG_MORE | libc::MSG_NOSIGNAL,
                        )
                    };
                    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
                })
                .await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            at += n;
        }
        self.out.clear();
        let fd = file.as_raw_fd();
        let mut pos = i64::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let mut left = len;
        while left > 0 {
            let n = self
                .write_with(|| {
                    // SAFETY: `fd` stays open (the caller holds `file`), `pos` is a live
                    // off_t the kernel advances; sendfile reads at most `left` bytes.
                    let n = unsafe { libc::sendfile(sock, fd, &mut pos, left) };
                    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
                })
                .await?;
            if n == 0 {
                break;
            }
            left -= n;
        }
        self.end_write();
        // Past the file's end (or padding): zeros.
        static ZEROS: [u8; 4096] = [0; 4096];
        let mut tail = left + pdu::pad_len(len);
        while tail > 0 {
            let n = tail.min(ZEROS.len());
            self.out.extend_from_slice(&ZEROS[..n]);
            tail -= n;
            self.flush_if_full().await?;
        }
        Ok(())
    }

    /// Runs one non-blocking socket operation once the socket is writable, retrying on
    /// WouldBlock; fails with `TimedOut` when it makes no progress within the stall timeout.
    async fn write_with(
        &self,
        mut op: impl FnMut() -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        let stream = self.w.as_ref();
        let attempt = async {
            loop {
                stream.writable().await?;
                match stream.try_io(tokio::io::Interest::WRITABLE, &mut op) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::time::timeout(self.stall_timeout, attempt)
            .await
            .map_err(|_| stalled(self.stall_timeout))?
    }

    async fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.out.len() >= WRITE_BUFFER_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.begin_write()?;
            let mut parts = [IoSlice::new(&self.out)];
            write_all_vectored(&mut self.w, &mut parts, self.stall_timeout).await?;
            self.out.clear();
            self.end_write();
        }
        Ok(())
    }

    pub(crate) async fn shutdown(&mut self) {
        let _ = self.w.shutdown().await;
    }
}

/// Writes every byte of `parts`, in order, with as few system calls as the socket allows.
/// Fails with `TimedOut` when one write makes no progress within `stall_timeout`.
async fn write_all_vectored(
    w: &mut OwnedWriteHalf,
    parts: &mut [IoSlice<'_>],
    stall_timeout: std::time::Duration,
) -> std::io::Result<()> {
    let mut parts = &mut parts[..];
    while parts.iter().any(|p| !p.is_empty()) {
        // Try first: a socket with room takes the bytes now, without arming a timer.
        let n = match w.try_write_vectored(parts) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::timeout(stall_timeout, w.write_vectored(parts))
                    .await
                    .map_err(|_| stalled(stall_timeout))??
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    Ok(())
}

/// The error of a socket write that made no progress within `stall_timeout`; logged here
/// because it ends the connection with nothing else to say why.
fn stalled(stall_timeout: std::time::Duration) -> std::io::Error {
    tracing::warn!(
        timeout_ms = stall_timeout.as_millis() as u64,
        "initiator took no data within the stall timeout: closing the connection"
    );
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "initiator took no data within the stall timeout",
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::conn::{ConnError, PduReader};

    /// A final Data-In header without status.
    fn data_in(itt: u32, seq: pdu::SeqNums, data_len: usize) -> pdu::DataIn {
        pdu::DataIn {
            final_flag: true,
            status: None,
            lun: 0,
            itt,
            seq,
            data_sn: 0,
            offset: 0,
            data_len,
        }
    }

    /// Everything one PduWriter puts on a loopback socket for `pdus` (header + data each,
    /// then one flush), with the given digests and write mode.
    async fn wire_bytes(
        pdus: &[Vec<u8>],
        header_digest: bool,
        data_digest: bool,
        eager: bool,
    ) -> Vec<u8> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_rd, wr) = client.unwrap().into_split();
        let (mut peer, _) = server.unwrap();
        let mut w = PduWriter::new(wr, std::time::Duration::from_secs(5));
        w.header_digest = header_digest;
        w.data_digest = data_digest;
        w.eager = eager;
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        for (i, data) in pdus.iter().enumerate() {
            let mut h = [0u8; BHS_LEN];
            let seq = pdu::SeqNums {
                stat_sn: i as u32,
                exp_cmd_sn: 1,
                max_cmd_sn: 64,
            };
            let head = data_in(i as u32, seq, data.len());
            pdu::encode_data_in(&mut h, &head);
            w.send(&h, data).await.unwrap();
        }
        w.flush().await.unwrap();
        w.shutdown().await;
        reader.await.unwrap()
    }

    /// A response written straight from the command's buffer (`eager`, the queue-depth-1
    /// path) is byte for byte what the batching path sends, and the framing reads it back:
    /// headers, padding, both digests, and segments on both sides of the copy threshold.
    #[tokio::test]
    async fn eager_writes_match_batched_writes() {
        let pdus: Vec<Vec<u8>> = [0usize, 3, 4096, 4099, ZERO_COPY_MIN_BYTES + 5]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
            let batched = wire_bytes(&pdus, hd, dd, false).await;
            let eager = wire_bytes(&pdus, hd, dd, true).await;
            assert_eq!(batched, eager, "header digest {hd}, data digest {dd}");
            let mut rd = PduReader::new(&eager[..]);
            rd.header_digest = hd;
            rd.data_digest = dd;
            for (i, want) in pdus.iter().enumerate() {
                let hdr = rd.read_header().await.unwrap();
                assert_eq!(hdr.common.data_len, want.len());
                assert_eq!(esos_common::be::u32_at(&hdr.bhs, 16), i as u32);
                let mut got = vec![0u8; want.len()];
                rd.read_data(&mut got).await.unwrap();
                assert_eq!(&got, want);
            }
            assert!(matches!(rd.read_header().await, Err(ConnError::Closed)));
        }
    }

    /// A write whose future is dropped while the socket is full (a reader cancelled
    /// mid-response) leaves the writer refusing everything after it: the initiator must
    /// never see a PDU start inside another.
    #[tokio::test]
    async fn a_write_cut_short_refuses_what_follows() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_rd, wr) = client.unwrap().into_split();
        // The peer never reads, so the socket fills up.
        let (_peer, _) = server.unwrap();
        let mut w = PduWriter::new(wr, std::time::Duration::from_secs(60));
        let big = vec![0x5au8; 8 << 20];
        let seq = pdu::SeqNums {
            stat_sn: 0,
            exp_cmd_sn: 1,
            max_cmd_sn: 64,
        };
        let header = |itt: u32, len: usize| {
            let mut h = [0u8; BHS_LEN];
            pdu::encode_data_in(&mut h, &data_in(itt, seq, len));
            h
        };
        let fill = async {
            for itt in 0..64 {
                w.send(&header(itt, big.len()), &big).await?;
            }
            std::io::Result::Ok(())
        };
        let cut = tokio::time::timeout(std::time::Duration::from_millis(300), fill).await;
        assert!(cut.is_err(), "writes into an unread socket never blocked");
        w.send(&header(1000, 0), &[]).await.unwrap(); // queued only
        let e = w.flush().await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        let n = ZERO_COPY_MIN_BYTES;
        let e = w.send(&header(1001, n), &big[..n]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
