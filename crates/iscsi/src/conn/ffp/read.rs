//! The READ path: a finished command's Data-In PDUs (from its buffer, or by `sendfile`
//! straight from the page cache) and its SCSI Response.

use std::sync::atomic::Ordering;

use esos_common::be::put_u16;
use esos_scsi::{Response, Status};

use crate::pdu::{self, BHS_LEN};

use super::writer::Writer;
use super::{Done, TaskMeta};

/// Where a response's Data-In comes from.
#[derive(Clone, Copy)]
pub(super) enum DataIn<'a> {
    Buf(&'a [u8]),
    File(&'a esos_block::FileSlice),
}

impl Writer {
    /// Answers one finished command (or only accounts for it when aborted or failed).
    pub(super) async fn complete(&mut self, done: Done) -> std::io::Result<()> {
        let Done {
            meta,
            resp,
            buf,
            data_ref,
        } = done;
        self.state.finished(meta.counted);
        self.state.release(meta.units);
        let aborted = self.inflight.remove(&meta.itt).is_some_and(|(_, a)| a);
        // `is_aborted`: another nexus aborted it (PREEMPT AND ABORT): no response, TAS 0.
        let result = if aborted || resp.is_aborted() || self.failed {
            Ok(())
        } else {
            let data = match &data_ref {
                Some(r) => DataIn::File(&r.slice),
                None => DataIn::Buf(&buf),
            };
            self.send_response(meta, &resp, data).await
        };
        // A READ answered by reference ends its task only now, its data sent.
        drop(data_ref);
        self.state.put_buf(buf);
        if aborted {
            self.task_finished(meta.itt).await?;
        }
        result
    }

    pub(super) async fn send_response(
        &mut self,
        meta: TaskMeta,
        resp: &Response,
        data: DataIn<'_>,
    ) -> std::io::Result<()> {
        let data_len = match data {
            DataIn::Buf(buf) => (resp.data_in_len as usize).min(buf.len()),
            DataIn::File(slice) => (resp.data_in_len as u64).min(slice.len) as usize,
        };
        let status = resp.status as u8;
        let collapse =
            resp.sense.len == 0 && matches!(resp.status, Status::Good | Status::ConditionMet);
        let max_seg = self.params.initiator_max_recv_data_segment_length as usize;
        let max_burst = self.params.max_burst_length as usize;
        let mut data_sn = 0u32;
        let mut offset = 0usize;
        let mut h = [0u8; BHS_LEN];
        while offset < data_len {
            // PDUs never cross a burst boundary; F ends each burst (RFC 7143 11.7.1).
            let burst_end = (offset / max_burst + 1) * max_burst;
            let end = (offset + max_seg).min(data_len).min(burst_end);
            let last = end == data_len;
            let final_flag = last || end == burst_end;
            let st = (last && collapse).then_some(pdu::CollapsedStatus {
                status,
                residual: resp.residual,
            });
            let sn = if st.is_some() {
                self.next_stat_sn()
            } else {
                self.stat_sn
            };
            let head = pdu::DataIn {
                final_flag,
                status: st,
                lun: meta.lun,
                itt: meta.itt,
                seq: self.state.seq(sn),
                data_sn,
                offset: offset as u32,
                data_len: end - offset,
            };
            pdu::encode_data_in(&mut h, &head);
            match data {
                DataIn::Buf(buf) => self.wr.send(&h, &buf[offset..end]).await?,
                DataIn::File(slice) => {
                    let at = slice.offset + offset as u64;
                    self.wr.send_file(&h, &slice.file, at, end - offset).await?;
                    self.shared
                        .counters
                        .zero_copy_bytes
                        .fetch_add((end - offset) as u64, Ordering::Relaxed);
                }
            }
            data_sn = data_sn.wrapping_add(1);
            offset = end;
        }
        if data_len > 0 && collapse {
            return Ok(());
        }
        let sense = resp.sense.as_slice();
        let mut seg = [0u8; 2 + esos_scsi::MAX_SENSE_LEN];
        let seg_len = if sense.is_empty() { 0 } else { 2 + sense.len() };
        put_u16(&mut seg, 0, sense.len() as u16);
        seg[2..2 + sense.len()].copy_from_slice(sense);
        let sn = self.next_stat_sn();
        let head = pdu::ScsiResponse {
            itt: meta.itt,
            status,
            residual: resp.residual,
            seq: self.state.seq(sn),
            exp_data_sn: data_sn,
            data_len: seg_len,
        };
        pdu::encode_scsi_response(&mut h, &head);
        self.wr.send(&h, &seg[..seg_len]).await
    }
}
