//! The reader: reads PDUs in order and hands each to its handler.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use esos_common::sync::LockExt;
use esos_scsi::{Command, IoBuf, LunMap, Nexus};
use tokio::sync::{Mutex as AsyncMutex, mpsc};

use crate::config::PortalConfig;
use crate::params::SessionParams;
use crate::pdu::{self, BHS_LEN, Request, reject_reason};
use crate::shared::Shared;

use super::super::{ConnError, PduReader};
use super::state::ConnState;
use super::tag::TagAllocator;
use super::text::TextOut;
use super::write::PendingWrite;
use super::writer::Writer;
use super::{Done, Msg, TaskMeta};

pub(super) struct Reader<'a, F> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) rd: PduReader,
    pub(super) state: Arc<ConnState>,
    pub(super) params: SessionParams,
    pub(super) luns: LunMap,
    /// `Shared::generation` when `luns` was resolved.
    pub(super) generation: u64,
    pub(super) portal: PortalConfig,
    /// SCSI commands received (for management's session list).
    pub(super) commands: Arc<AtomicU64>,
    pub(super) nexus: Arc<Nexus>,
    pub(super) tx: mpsc::Sender<Msg<F>>,
    /// The writer's state, for answering a command directly when the writer is idle.
    pub(super) writer: Arc<AsyncMutex<Writer>>,
    pub(super) make: fn(&LunMap, TaskMeta, Command, IoBuf, u32) -> F,
    /// Smallest READ answered from a file by reference (0: never; with data digests the
    /// writer must see the bytes).
    pub(super) ref_min: u32,
    pub(super) pending: HashMap<u32, PendingWrite>,
    /// Target transfer tags for R2Ts and text continuations.
    pub(super) tags: TagAllocator,
    pub(super) text_in: Vec<u8>,
    /// A text response still being sent in pieces.
    pub(super) text_out: Option<TextOut>,
    pub(super) asker_initiator: String,
    pub(super) target_name: Option<String>,
    pub(super) local: SocketAddr,
    pub(super) discovery: bool,
}

impl<F> Reader<'_, F>
where
    F: Future<Output = Done> + Send + Unpin + 'static,
{
    pub(super) async fn send(&self, m: Msg<F>) -> Result<(), ConnError> {
        self.tx
            .send(m)
            .await
            .map_err(|_| ConnError::Protocol("writer ended"))
    }

    pub(super) async fn reject(&self, reason: u8, bhs: &[u8; BHS_LEN]) -> Result<(), ConnError> {
        self.send(Msg::Reject { reason, bhs: *bhs }).await
    }

    /// The configuration changed: move to this session's new LUN map. Sessions that are no
    /// longer admitted are cancelled by `ServerHandle::set_live`; here such a session keeps
    /// its old map until the cancellation ends it.
    pub(super) fn refresh_luns(&mut self) {
        self.generation = self.shared.generation.load(Ordering::Acquire);
        let Some(target) = &self.target_name else {
            return;
        };
        let live = self.shared.live();
        let Some(new) = live.session_map(target, &self.asker_initiator, &self.portal) else {
            return;
        };
        new.remapped_from(&self.luns, &self.nexus);
        self.luns = new.clone();
        *self.state.luns.locked() = new.clone();
    }

    /// Reads PDUs until the connection ends, a Logout is received or framing fails.
    pub(super) async fn run(&mut self) -> Result<(), ConnError> {
        loop {
            let hdr = self.rd.read_header().await?;
            self.state.rx_count.fetch_add(1, Ordering::Relaxed);
            let len = hdr.common.data_len;
            let max = self.params.target_max_recv_data_segment_length as usize;
            if len > max {
                // The length cannot be trusted: answer, then close (RFC 7143 7.2).
                self.reject(reject_reason::PROTOCOL_ERROR, &hdr.bhs).await?;
                return Err(ConnError::SegmentTooLong { len, max });
            }
            let req = match pdu::parse_request(&hdr.bhs, self.rd.ahs()) {
                Ok(r) => r,
                Err(pdu::PduError::UnknownOpcode(_)) => {
                    self.rd.skip_data(len).await?;
                    self.reject(reject_reason::COMMAND_NOT_SUPPORTED, &hdr.bhs)
                        .await?;
                    continue;
                }
                Err(_) => {
                    self.rd.skip_data(len).await?;
                    self.reject(reject_reason::INVALID_PDU_FIELD, &hdr.bhs)
                        .await?;
                    continue;
                }
            };
            match req {
                Request::ScsiCommand(c) => self.scsi_command(c, &hdr.bhs, len).await?,
                Request::DataOut(d) => self.data_out(d, len).await?,
                Request::NopOut(n) => self.nop_out(n, len).await?,
                Request::Text(t) => self.text(t, &hdr.bhs, len).await?,
                Request::TaskMgmt(t) => {
                    self.rd.skip_data(len).await?;
                    self.task_mgmt(t).await?;
                }
                Request::Logout(l) => {
                    self.rd.skip_data(len).await?;
                    if !l.immediate {
                        if !self.accept_cmd_sn(l.cmd_sn, false) {
                            continue;
                        }
                        self.advance_cmd_sn(false);
                    }
                    // Reason 2 (remove for recovery) needs ERL 2; one connection per session.
                    let response = match l.reason {
                        0 | 1 => 0,
                        _ => 2,
                    };
                    self.send(Msg::Logout {
                        itt: l.itt,
                        response,
                    })
                    .await?;
                    return Ok(());
                }
                Request::Login(_) => {
                    self.rd.skip_data(len).await?;
                    self.reject(reject_reason::PROTOCOL_ERROR, &hdr.bhs).await?;
                }
                Request::Snack(_) => {
                    // ErrorRecoveryLevel 0 has no SNACK.
                    self.rd.skip_data(len).await?;
                    self.reject(reject_reason::PROTOCOL_ERROR, &hdr.bhs).await?;
                }
            }
        }
    }
}
