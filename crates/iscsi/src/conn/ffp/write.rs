//! The WRITE path after admission: unsolicited Data-Out, R2Ts up to MaxOutstandingR2T and
//! the Data-Out they ask for, until the command has all its data and goes to the engine.

use std::future::Future;

use esos_scsi::{AbortMark, Command, IoBuf};

use crate::pdu;

use super::super::ConnError;
use super::reader::Reader;
use super::{Done, Msg, SENSE_DATA_OFFSET_ERROR, SENSE_DATA_PHASE_ERROR, TaskMeta, sense_response};

/// A write command waiting for its data.
pub(super) struct PendingWrite {
    pub(super) cmd: Command,
    pub(super) buf: IoBuf,
    pub(super) counted: bool,
    pub(super) units: u32,
    pub(super) edtl: u32,
    pub(super) received: u32,
    /// Unsolicited data still allowed (FirstBurstLength minus immediate data).
    pub(super) unsolicited_end: u32,
    pub(super) unsolicited_done: bool,
    pub(super) next_data_sn: u32,
    /// Next offset to request with an R2T.
    pub(super) next_r2t_offset: u32,
    pub(super) r2t_sn: u32,
    /// R2Ts sent whose data has not all arrived.
    pub(super) r2ts: Vec<OutstandingR2t>,
    /// The unit's aborts when the command arrived: another nexus's PREEMPT AND ABORT
    /// since then aborts it too, once its data is in.
    pub(super) abort_mark: Option<AbortMark>,
}

/// One R2T the initiator still owes data for.
#[derive(Debug, Clone, Copy)]
pub(super) struct OutstandingR2t {
    pub(super) ttt: u32,
    /// First byte asked for, in the command's buffer.
    pub(super) offset: u32,
    pub(super) len: u32,
    /// Bytes of it received so far.
    pub(super) received: u32,
}

impl<F> Reader<'_, F>
where
    F: Future<Output = Done> + Send + Unpin + 'static,
{
    /// Sends R2Ts for a pending write up to MaxOutstandingR2T.
    pub(super) async fn issue_r2ts(&mut self, itt: u32) -> Result<(), ConnError> {
        let max_burst = self.params.max_burst_length;
        let max_out = self.params.max_outstanding_r2t as usize;
        let mut msgs = Vec::new();
        if let Some(p) = self.pending.get_mut(&itt) {
            if !p.unsolicited_done {
                return Ok(());
            }
            while p.r2ts.len() < max_out && p.next_r2t_offset < p.edtl {
                let offset = p.next_r2t_offset;
                let len = max_burst.min(p.edtl - offset);
                let ttt = self.tags.next_free(|t| p.r2ts.iter().any(|r| r.ttt == t));
                p.r2ts.push(OutstandingR2t {
                    ttt,
                    offset,
                    len,
                    received: 0,
                });
                msgs.push(Msg::R2t {
                    lun: p.cmd.lun,
                    itt,
                    ttt,
                    r2t_sn: p.r2t_sn,
                    offset,
                    len,
                });
                p.r2t_sn = p.r2t_sn.wrapping_add(1);
                p.next_r2t_offset = offset + len;
            }
        }
        for m in msgs {
            self.send(m).await?;
        }
        Ok(())
    }

    pub(super) async fn data_out(&mut self, d: pdu::DataOut, len: usize) -> Result<(), ConnError> {
        let Some(p) = self.pending.get_mut(&d.itt) else {
            // Data for a task that ended (aborted, or refused early): discard it.
            tracing::debug!(itt = d.itt, "Data-Out for an unknown task: discarded");
            return self.rd.skip_data(len).await;
        };
        let offset = d.buffer_offset;
        let end = offset as u64 + len as u64;
        let (start_ok, limit) = if d.ttt == pdu::RESERVED_TAG {
            (
                !p.unsolicited_done && offset == p.received,
                p.unsolicited_end,
            )
        } else {
            match p.r2ts.iter().find(|r| r.ttt == d.ttt) {
                Some(r) => (offset == r.offset + r.received, r.offset + r.len),
                None => (false, 0),
            }
        };
        if !start_ok || end > limit as u64 || d.data_sn != p.next_data_sn {
            // ERL 0 cannot recover within the command: end this task with ABORTED COMMAND
            // and keep the connection; later Data-Out for it is discarded.
            self.rd.skip_data(len).await?;
            let asc = if d.data_sn != p.next_data_sn {
                SENSE_DATA_PHASE_ERROR
            } else {
                SENSE_DATA_OFFSET_ERROR
            };
            tracing::warn!(
                itt = d.itt,
                offset,
                len,
                data_sn = d.data_sn,
                "Data-Out out of order or range: task ended"
            );
            let p = self.pending.remove(&d.itt).expect("pending write present");
            self.state.put_buf(p.buf);
            let meta = TaskMeta {
                itt: d.itt,
                lun: p.cmd.lun,
                counted: p.counted,
                units: p.units,
            };
            return self
                .send(Msg::Immediate(meta, sense_response(asc, p.edtl)))
                .await;
        }
        let start = offset as usize;
        self.rd.read_data(&mut p.buf[start..start + len]).await?;
        p.received += len as u32;
        p.next_data_sn = p.next_data_sn.wrapping_add(1);
        if d.ttt == pdu::RESERVED_TAG {
            if d.final_flag || p.received >= p.unsolicited_end {
                p.unsolicited_done = true;
                p.next_data_sn = 0;
                p.next_r2t_offset = p.next_r2t_offset.max(p.received);
            }
        } else if let Some(i) = p.r2ts.iter().position(|r| r.ttt == d.ttt) {
            p.r2ts[i].received += len as u32;
            if p.r2ts[i].received >= p.r2ts[i].len {
                p.r2ts.remove(i);
                p.next_data_sn = 0;
            }
        }
        if p.received >= p.edtl {
            let p = self.pending.remove(&d.itt).expect("pending write present");
            let nexus = self.nexus.id;
            if p.abort_mark
                .as_ref()
                .is_some_and(|m| m.aborted(nexus, d.itt))
            {
                // Aborted by another nexus while its data came in: it ends without a
                // response, like its tasks in the task set (TAS 0).
                tracing::debug!(itt = d.itt, "write aborted by another nexus: no response");
                self.state.finished(p.counted);
                self.state.release(p.units);
                self.state.put_buf(p.buf);
                return Ok(());
            }
            let meta = TaskMeta {
                itt: d.itt,
                lun: p.cmd.lun,
                counted: p.counted,
                units: p.units,
            };
            return self.submit(meta, p.cmd, p.buf).await;
        }
        self.issue_r2ts(d.itt).await
    }
}
