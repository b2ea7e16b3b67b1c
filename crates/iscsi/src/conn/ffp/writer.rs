//! The writer: runs admitted commands, sends every response in order, and keeps the
//! connection alive with NOP-In pings (see [`super::nop`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use esos_scsi::Nexus;
use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::params::SessionParams;
use crate::pdu::{self, BHS_LEN};
use crate::shared::Shared;

use super::super::PduWriter;
use super::nop::{KeepAlive, KeepAliveStep};
use super::state::ConnState;
use super::tmf::PendingTmf;
use super::{Done, Msg};

/// How long the writer lets in-flight commands finish once the connection ends.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) wr: PduWriter,
    pub(super) state: Arc<ConnState>,
    pub(super) params: SessionParams,
    pub(super) stat_sn: u32,
    pub(super) target_name: Option<String>,
    /// The session's I_T nexus: units are told which of their tasks an abort covers, and
    /// that it ended before the Logout Response goes out.
    pub(super) nexus: Arc<Nexus>,
    /// ITT → (LUN, aborted).
    pub(super) inflight: HashMap<u32, (u64, bool)>,
    pub(super) pending_tmfs: Vec<PendingTmf>,
    pub(super) logout: Option<(u32, u8)>,
    pub(super) cancel: CancellationToken,
    /// The socket failed: responses are only accounted for, no longer sent.
    pub(super) failed: bool,
}

impl Writer {
    pub(super) fn next_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    pub(super) async fn run<F>(me: Arc<AsyncMutex<Writer>>, mut rx: mpsc::Receiver<Msg<F>>)
    where
        F: Future<Output = Done> + Send + 'static,
    {
        let mut running: FuturesUnordered<F> = FuturesUnordered::new();
        let (nop_interval, nop_timeout) = {
            let limits = &me.lock().await.shared.config.limits;
            (
                Duration::from_millis(limits.nop_in_interval_ms),
                Duration::from_millis(limits.nop_in_timeout_ms),
            )
        };
        let mut ticker = tokio::time::interval(if nop_interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            nop_interval
        });
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut keep_alive = KeepAlive::new(nop_timeout);
        let mut open = true;
        /// What woke the writer.
        enum Event<F> {
            Done(Done),
            Msg(Msg<F>),
            Tick,
        }
        loop {
            if running.is_empty() {
                let mut w = me.lock().await;
                if w.logout.is_some() {
                    if !w.failed {
                        let (itt, response) = w.logout.take().expect("logout present");
                        // The I_T nexus ends with the logout: its SPC-2 reservation,
                        // prevention and unit attentions go before the initiator hears the
                        // logout is done, so its next command on another session finds
                        // them gone.
                        w.state.current_luns().nexus_gone(&w.nexus);
                        let _ = w.send_logout(itt, response).await;
                    }
                    break;
                }
                if !open {
                    break;
                }
            }
            // Waits without the lock: meanwhile the reader may answer a command alone on
            // the connection itself (see `Reader::submit`).
            let event = tokio::select! {
                biased;
                Some(done) = running.next(), if !running.is_empty() => Event::Done(done),
                m = rx.recv(), if open => match m {
                    Some(m) => Event::Msg(m),
                    None => {
                        open = false;
                        continue;
                    }
                },
                _ = ticker.tick(), if !nop_interval.is_zero() && open => Event::Tick,
            };
            let mut w = me.lock().await;
            let w = &mut *w;
            match event {
                Event::Done(done) => w.failed |= w.complete(done).await.is_err(),
                Event::Msg(m) => w.failed |= w.handle(m, &mut running).await.is_err(),
                Event::Tick => {
                    let rx_count = w.state.rx_count.load(Ordering::Relaxed);
                    match keep_alive.tick(rx_count, Instant::now(), !w.failed) {
                        KeepAliveStep::Quiet => {}
                        KeepAliveStep::Ping { ttt } => {
                            w.failed |= w.send_ping(ttt).await.is_err();
                        }
                        KeepAliveStep::Expired => {
                            tracing::warn!("initiator did not answer NOP-In: closing connection");
                            w.cancel.cancel();
                            w.failed = true;
                        }
                    }
                }
            }
            // Send everything else that is ready before one flush.
            loop {
                let mut progressed = false;
                while let Some(Some(done)) = running.next().now_or_never() {
                    w.failed |= w.complete(done).await.is_err();
                    progressed = true;
                }
                while open {
                    match rx.try_recv() {
                        Ok(m) => {
                            w.failed |= w.handle(m, &mut running).await.is_err();
                            progressed = true;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                if !progressed {
                    break;
                }
            }
            if !w.failed && w.wr.flush().await.is_err() {
                w.failed = true;
            }
            if w.failed {
                // The socket is gone: stop reading, let running commands finish unanswered.
                w.cancel.cancel();
                if !running.is_empty() && !open {
                    let drain = async { while running.next().await.is_some() {} };
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
                    break;
                }
            }
        }
        let mut w = me.lock().await;
        w.cancel.cancel();
        w.wr.shutdown().await;
    }

    /// Answers a command the reader ran to completion, when the writer is idle: at queue
    /// depth 1 this saves the hand-off to the writer task. `Err` gives `done` back when the
    /// writer is busy (it will send it in order) or the connection has failed.
    pub(super) async fn answer_now(me: &AsyncMutex<Writer>, done: Done) -> Result<(), Done> {
        let Ok(mut w) = me.try_lock() else {
            return Err(done);
        };
        if w.failed {
            return Err(done);
        }
        // A reader cancelled mid-write leaves the PduWriter cut short: the writer's next
        // send then fails instead of following half a PDU.
        w.wr.eager = true;
        let sent = match w.complete(done).await {
            Ok(()) => w.wr.flush().await,
            Err(e) => Err(e),
        };
        w.wr.eager = false;
        if sent.is_err() {
            w.failed = true;
            w.cancel.cancel();
        }
        Ok(())
    }

    pub(super) async fn handle<F>(
        &mut self,
        m: Msg<F>,
        running: &mut FuturesUnordered<F>,
    ) -> std::io::Result<()>
    where
        F: Future<Output = Done> + Send + 'static,
    {
        match m {
            Msg::Exec(meta, fut) => {
                self.inflight.insert(meta.itt, (meta.lun, false));
                running.push(fut);
                Ok(())
            }
            // Never in `inflight`: a task management request behind it in the channel
            // finds it already answered, as if it had completed in `running`.
            Msg::Done(done) => self.complete(done).await,
            Msg::Immediate(meta, resp) => {
                self.inflight.insert(meta.itt, (meta.lun, false));
                self.complete(Done {
                    meta,
                    resp,
                    buf: Vec::new(),
                    data_ref: None,
                })
                .await
            }
            _ if self.failed => Ok(()),
            Msg::R2t {
                lun,
                itt,
                ttt,
                r2t_sn,
                offset,
                len,
            } => {
                let mut h = [0u8; BHS_LEN];
                let head = pdu::R2t {
                    lun,
                    itt,
                    ttt,
                    seq: self.state.seq(self.stat_sn),
                    r2t_sn,
                    offset,
                    length: len,
                };
                pdu::encode_r2t(&mut h, &head);
                self.wr.send(&h, &[]).await
            }
            Msg::NopIn { itt, lun, data } => {
                let mut h = [0u8; BHS_LEN];
                let max = self.params.initiator_max_recv_data_segment_length as usize;
                let data = &data[..data.len().min(max)];
                let sn = self.next_stat_sn();
                let head = pdu::NopIn {
                    lun,
                    itt,
                    ttt: pdu::RESERVED_TAG,
                    seq: self.state.seq(sn),
                    data_len: data.len(),
                };
                pdu::encode_nop_in(&mut h, &head);
                self.wr.send(&h, data).await
            }
            Msg::Text {
                itt,
                ttt,
                final_flag,
                cont,
                data,
            } => {
                let mut h = [0u8; BHS_LEN];
                let sn = self.next_stat_sn();
                let head = pdu::TextResponse {
                    final_flag,
                    cont,
                    lun: 0,
                    itt,
                    ttt,
                    seq: self.state.seq(sn),
                    data_len: data.len(),
                };
                pdu::encode_text_response(&mut h, &head);
                self.wr.send(&h, &data).await
            }
            Msg::Reject { reason, bhs } => {
                let mut h = [0u8; BHS_LEN];
                let sn = self.next_stat_sn();
                pdu::encode_reject(&mut h, reason, self.state.seq(sn));
                self.wr.send(&h, &bhs).await
            }
            Msg::Tmf {
                req,
                found_in_reader,
            } => self.task_mgmt(req, found_in_reader).await,
            Msg::Logout { itt, response } => {
                self.logout = Some((itt, response));
                Ok(())
            }
        }
    }

    pub(super) async fn send_logout(&mut self, itt: u32, response: u8) -> std::io::Result<()> {
        let mut h = [0u8; BHS_LEN];
        let sn = self.next_stat_sn();
        let head = pdu::LogoutResponse {
            itt,
            response,
            seq: self.state.seq(sn),
            time2wait: self.params.default_time2wait as u16,
            time2retain: self.params.default_time2retain as u16,
        };
        pdu::encode_logout_response(&mut h, &head);
        self.wr.send(&h, &[]).await?;
        self.wr.flush().await
    }
}
