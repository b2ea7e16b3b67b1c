//! NOP-Out and NOP-In (RFC 7143 11.18, 11.19): the initiator's pings and CmdSN updates,
//! and the writer's keep-alive, which pings a silent initiator and ends the connection
//! when it stays silent.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::pdu::{self, BHS_LEN};

use super::super::ConnError;
use super::reader::Reader;
use super::writer::Writer;
use super::{Done, Msg};

impl<F> Reader<'_, F>
where
    F: Future<Output = Done> + Send + Unpin + 'static,
{
    pub(super) async fn nop_out(&mut self, n: pdu::NopOut, len: usize) -> Result<(), ConnError> {
        let mut data = vec![0u8; len];
        self.rd.read_data(&mut data).await?;
        if n.itt == pdu::RESERVED_TAG {
            // Answer to our NOP-In ping, or a bare CmdSN update: nothing to send.
            return Ok(());
        }
        if !self.accept_cmd_sn(n.cmd_sn, n.immediate) {
            return Ok(());
        }
        if !n.immediate {
            self.advance_cmd_sn(false);
        }
        self.send(Msg::NopIn {
            itt: n.itt,
            lun: n.lun,
            data,
        })
        .await
    }
}

/// What the keep-alive asks the writer to do at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeepAliveStep {
    Quiet,
    /// Send a NOP-In ping with this target transfer tag.
    Ping {
        ttt: u32,
    },
    /// The initiator answered nothing within the timeout after a ping: end the connection.
    Expired,
}

/// The writer's liveness check, run at every NOP-In interval: after an interval without a
/// PDU from the initiator it pings; nothing received for `timeout` after the ping ends the
/// connection. Any PDU counts as an answer. No I/O: the writer sends the ping.
#[derive(Debug)]
pub(super) struct KeepAlive {
    timeout: Duration,
    /// PDUs received at the last tick.
    last_rx: u64,
    ping_since: Option<Instant>,
    /// Below 2^31, so never the reserved tag; the initiator echoes it and nothing
    /// looks it up.
    ping_ttt: u32,
}

impl KeepAlive {
    pub(super) fn new(timeout: Duration) -> KeepAlive {
        KeepAlive {
            timeout,
            last_rx: 0,
            ping_since: None,
            ping_ttt: 0,
        }
    }

    /// One tick: `rx_count` is the PDUs received so far; `may_ping` is false once the
    /// socket has failed.
    pub(super) fn tick(&mut self, rx_count: u64, now: Instant, may_ping: bool) -> KeepAliveStep {
        if rx_count != self.last_rx {
            self.last_rx = rx_count;
            self.ping_since = None;
            KeepAliveStep::Quiet
        } else if let Some(t) = self.ping_since {
            if now.duration_since(t) >= self.timeout {
                KeepAliveStep::Expired
            } else {
                KeepAliveStep::Quiet
            }
        } else if may_ping {
            self.ping_ttt = self.ping_ttt.wrapping_add(1) & 0x7fff_ffff;
            self.ping_since = Some(now);
            KeepAliveStep::Ping { ttt: self.ping_ttt }
        } else {
            KeepAliveStep::Quiet
        }
    }
}

impl Writer {
    /// Sends a NOP-In ping; a target ping does not advance StatSN (RFC 7143 11.19).
    pub(super) async fn send_ping(&mut self, ttt: u32) -> std::io::Result<()> {
        let mut h = [0u8; BHS_LEN];
        let head = pdu::NopIn {
            lun: 0,
            itt: pdu::RESERVED_TAG,
            ttt,
            seq: self.state.seq(self.stat_sn),
            data_len: 0,
        };
        pdu::encode_nop_in(&mut h, &head);
        self.wr.send(&h, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_pings_a_silent_initiator_then_gives_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut k = KeepAlive::new(5 * s);
        // Traffic since the last tick: nothing to do.
        assert_eq!(k.tick(3, t0, true), KeepAliveStep::Quiet);
        // A silent interval: ping.
        assert_eq!(k.tick(3, t0 + s, true), KeepAliveStep::Ping { ttt: 1 });
        assert_eq!(k.tick(3, t0 + 2 * s, true), KeepAliveStep::Quiet);
        // Any PDU answers it; the next silence pings again with a new tag.
        assert_eq!(k.tick(4, t0 + 3 * s, true), KeepAliveStep::Quiet);
        assert_eq!(k.tick(4, t0 + 4 * s, true), KeepAliveStep::Ping { ttt: 2 });
        assert_eq!(k.tick(4, t0 + 8 * s, true), KeepAliveStep::Quiet);
        assert_eq!(k.tick(4, t0 + 9 * s, true), KeepAliveStep::Expired);
        // A failed socket is not pinged.
        let mut f = KeepAlive::new(s);
        assert_eq!(f.tick(0, t0, false), KeepAliveStep::Quiet);
    }
}
