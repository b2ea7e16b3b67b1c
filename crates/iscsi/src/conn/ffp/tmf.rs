//! Task management (RFC 7143 11.5): writes still gathering data end in the reader; running
//! tasks are aborted in the writer, whose response waits for them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use esos_scsi::ResetKind;

use crate::pdu::{self, BHS_LEN};

use super::super::ConnError;
use super::reader::Reader;
use super::writer::Writer;
use super::{Done, Msg};

/// Task management function codes (RFC 7143 11.5.1).
mod code {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    pub const TASK_REASSIGN: u8 = 8;
    // Responses.
    pub const COMPLETE: u8 = 0;
    pub const NO_TASK: u8 = 1;
    pub const NO_LUN: u8 = 2;
    pub const REASSIGN_UNSUPPORTED: u8 = 4;
    pub const NOT_SUPPORTED: u8 = 5;
}

/// Serial number arithmetic (RFC 1982) on 32-bit sequence numbers.
pub(super) fn sn_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl<F> Reader<'_, F>
where
    F: Future<Output = Done> + Send + Unpin + 'static,
{
    pub(super) async fn task_mgmt(&mut self, t: pdu::TaskMgmt) -> Result<(), ConnError> {
        if !self.accept_cmd_sn(t.cmd_sn, t.immediate) {
            return Ok(());
        }
        if !t.immediate {
            self.advance_cmd_sn(false);
        }
        // Writes still gathering data are ended here; the writer handles the rest.
        let mut found = false;
        let affected: Vec<u32> = self
            .pending
            .iter()
            .filter(|(itt, p)| match t.function {
                code::ABORT_TASK => **itt == t.rtt,
                code::ABORT_TASK_SET | code::CLEAR_TASK_SET | code::LOGICAL_UNIT_RESET => {
                    p.cmd.lun == t.lun
                }
                code::TARGET_WARM_RESET | code::TARGET_COLD_RESET => true,
                _ => false,
            })
            .map(|(itt, _)| *itt)
            .collect();
        for itt in affected {
            if let Some(p) = self.pending.remove(&itt) {
                found = true;
                self.state.finished(p.counted);
                self.state.release(p.units);
                self.state.put_buf(p.buf);
            }
        }
        self.send(Msg::Tmf {
            req: t,
            found_in_reader: found,
        })
        .await
    }
}

pub(super) struct PendingTmf {
    pub(super) itt: u32,
    pub(super) response: u8,
    /// Aborted tasks still running; the response waits for them (RFC 7143 4.2.3.3).
    pub(super) waiting: Vec<u32>,
    pub(super) after: AfterTmf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterTmf {
    Nothing,
    CloseTargetSessions,
}

impl Writer {
    /// An aborted task ended: TMF responses waiting only on it can go out now.
    pub(super) async fn task_finished(&mut self, itt: u32) -> std::io::Result<()> {
        for t in &mut self.pending_tmfs {
            t.waiting.retain(|&w| w != itt);
        }
        let ready: Vec<PendingTmf> = {
            let (ready, rest) = std::mem::take(&mut self.pending_tmfs)
                .into_iter()
                .partition(|t| t.waiting.is_empty());
            self.pending_tmfs = rest;
            ready
        };
        for t in ready {
            self.send_tmf_response(t.itt, t.response, t.after).await?;
        }
        Ok(())
    }

    pub(super) async fn send_tmf_response(
        &mut self,
        itt: u32,
        response: u8,
        after: AfterTmf,
    ) -> std::io::Result<()> {
        let mut h = [0u8; BHS_LEN];
        let sn = self.next_stat_sn();
        pdu::encode_task_mgmt_response(&mut h, itt, response, self.state.seq(sn));
        self.wr.send(&h, &[]).await?;
        if after == AfterTmf::CloseTargetSessions {
            self.wr.flush().await?;
            if let Some(t) = &self.target_name {
                // TARGET COLD RESET ends every session of the target (RFC 7143 11.5.1).
                self.shared.registry.cancel_target(t);
            }
        }
        Ok(())
    }

    pub(super) fn lu(&self, raw_lun: u64) -> Option<Arc<esos_scsi::LogicalUnit>> {
        let n = esos_scsi::lun::decode(raw_lun)?;
        self.state
            .current_luns()
            .luns()
            .find(|(l, _)| *l == n)
            .map(|(_, lu)| lu.clone())
    }

    /// Marks matching tasks aborted and returns their tags.
    pub(super) fn abort_where(&mut self, pred: impl Fn(u32, u64) -> bool) -> Vec<u32> {
        let mut tags = Vec::new();
        for (itt, (lun, aborted)) in self.inflight.iter_mut() {
            if !*aborted && pred(*itt, *lun) {
                *aborted = true;
                tags.push(*itt);
            }
        }
        tags
    }

    pub(super) async fn task_mgmt(
        &mut self,
        t: pdu::TaskMgmt,
        found_in_reader: bool,
    ) -> std::io::Result<()> {
        let mut after = AfterTmf::Nothing;
        let (response, waiting) = match t.function {
            code::ABORT_TASK => {
                let w = self.abort_where(|itt, _| itt == t.rtt);
                if !w.is_empty()
                    && let Some(lu) = self.lu(t.lun)
                {
                    lu.abort(Some(self.nexus.id), Some(t.rtt));
                }
                if !w.is_empty() || found_in_reader {
                    (code::COMPLETE, w)
                } else if !sn_lt(t.ref_cmd_sn, self.state.exp_cmd_sn.load(Ordering::Acquire)) {
                    // Never received: it counts as received and aborted (RFC 7143 11.5.1).
                    (code::COMPLETE, w)
                } else {
                    // Received and already answered: there is nothing to abort.
                    (code::NO_TASK, w)
                }
            }
            code::ABORT_TASK_SET | code::CLEAR_TASK_SET | code::LOGICAL_UNIT_RESET => {
                match self.lu(t.lun) {
                    None => (code::NO_LUN, Vec::new()),
                    Some(lu) => {
                        let w = self.abort_where(|_, lun| lun == t.lun);
                        if t.function == code::LOGICAL_UNIT_RESET {
                            lu.reset(ResetKind::LogicalUnit);
                        } else {
                            lu.abort(Some(self.nexus.id), None);
                        }
                        (code::COMPLETE, w)
                    }
                }
            }
            code::TARGET_WARM_RESET | code::TARGET_COLD_RESET => {
                let w = self.abort_where(|_, _| true);
                let kind = if t.function == code::TARGET_COLD_RESET {
                    after = AfterTmf::CloseTargetSessions;
                    ResetKind::TargetCold
                } else {
                    ResetKind::TargetWarm
                };
                for (_, lu) in self.state.current_luns().luns() {
                    lu.reset(kind);
                }
                (code::COMPLETE, w)
            }
            code::TASK_REASSIGN => (code::REASSIGN_UNSUPPORTED, Vec::new()),
            code::CLEAR_ACA => (code::NOT_SUPPORTED, Vec::new()),
            _ => (code::NOT_SUPPORTED, Vec::new()),
        };
        if waiting.is_empty() {
            self.send_tmf_response(t.itt, response, after).await
        } else {
            self.pending_tmfs.push(PendingTmf {
                itt: t.itt,
                response,
                waiting,
                after,
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_number_arithmetic() {
        assert!(sn_lt(1, 2));
        assert!(!sn_lt(2, 1));
        assert!(sn_lt(u32::MAX, 0));
        assert!(!sn_lt(5, 5));
    }

    #[test]
    fn lun_numbers() {
        // The TMF path finds units by the engine's decoder: the same numbers as REPORT LUNS.
        use esos_scsi::lun::decode as lun_number;
        assert_eq!(lun_number(0), Some(0));
        assert_eq!(lun_number(0x0005_0000_0000_0000), Some(5));
        assert_eq!(lun_number(0x4123_0000_0000_0000), Some(0x123));
        assert_eq!(lun_number(0x0001_0001_0000_0000), None);
        assert_eq!(lun_number(0x8000_0000_0000_0000), None);
    }
}
