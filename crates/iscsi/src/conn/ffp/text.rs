//! Text requests in full feature phase (SendTargets): requests gathered over several
//! PDUs, long responses sent in pieces the initiator asks for.

use std::future::Future;

use crate::pdu::{self, BHS_LEN, reject_reason};

use super::super::ConnError;
use super::reader::Reader;
use super::send_targets::{self, Asker};
use super::{Done, Msg};

impl<F> Reader<'_, F>
where
    F: Future<Output = Done> + Send + Unpin + 'static,
{
    pub(super) async fn text(
        &mut self,
        t: pdu::TextRequest,
        bhs: &[u8; BHS_LEN],
        len: usize,
    ) -> Result<(), ConnError> {
        if self.text_in.len() + len > send_targets::MAX_TEXT_REQUEST {
            self.rd.skip_data(len).await?;
            self.text_in.clear();
            return self.reject(reject_reason::PROTOCOL_ERROR, bhs).await;
        }
        let start = self.text_in.len();
        self.text_in.resize(start + len, 0);
        self.rd.read_data(&mut self.text_in[start..]).await?;
        if !self.accept_cmd_sn(t.cmd_sn, t.immediate) {
            self.text_in.clear();
            return Ok(());
        }
        if !t.immediate {
            self.advance_cmd_sn(false);
        }
        let max_seg = self.params.initiator_max_recv_data_segment_length as usize;
        // A continuation of our own long response.
        if t.ttt != pdu::RESERVED_TAG {
            let (data, done, ttt) = match self.text_out.as_mut() {
                Some(out) if out.ttt == t.ttt => {
                    let end = (out.sent + max_seg).min(out.data.len());
                    let piece = out.data[out.sent..end].to_vec();
                    out.sent = end;
                    (piece, end >= out.data.len(), out.ttt)
                }
                _ => {
                    self.text_in.clear();
                    return self.reject(reject_reason::INVALID_PDU_FIELD, bhs).await;
                }
            };
            if done {
                self.text_out = None;
            }
            self.text_in.clear();
            let ttt = if done { pdu::RESERVED_TAG } else { ttt };
            return self
                .send(Msg::Text {
                    itt: t.itt,
                    ttt,
                    final_flag: done,
                    cont: !done,
                    data,
                })
                .await;
        }
        if t.cont {
            // More pieces of this request follow; acknowledge with an empty response.
            return self
                .send(Msg::Text {
                    itt: t.itt,
                    ttt: pdu::RESERVED_TAG,
                    final_flag: false,
                    cont: false,
                    data: Vec::new(),
                })
                .await;
        }
        let asker = Asker {
            initiator: &self.asker_initiator,
            session_target: self.target_name.as_deref(),
            local: self.local,
        };
        let out = send_targets::respond(self.shared, &asker, &self.text_in);
        self.text_in.clear();
        let Ok(out) = out else {
            return self.reject(reject_reason::PROTOCOL_ERROR, bhs).await;
        };
        if out.len() <= max_seg {
            return self
                .send(Msg::Text {
                    itt: t.itt,
                    ttt: pdu::RESERVED_TAG,
                    final_flag: true,
                    cont: false,
                    data: out,
                })
                .await;
        }
        let ttt = self.tags.next();
        let first = out[..max_seg].to_vec();
        self.text_out = Some(TextOut {
            ttt,
            data: out,
            sent: max_seg,
        });
        self.send(Msg::Text {
            itt: t.itt,
            ttt,
            final_flag: false,
            cont: true,
            data: first,
        })
        .await
    }
}

/// A text response longer than the initiator's MaxRecvDataSegmentLength, sent a piece
/// per Text Request that continues it with `ttt` (RFC 7143 11.10, 11.11).
pub(super) struct TextOut {
    pub(super) ttt: u32,
    pub(super) data: Vec<u8>,
    /// Bytes of `data` sent so far.
    pub(super) sent: usize,
}
