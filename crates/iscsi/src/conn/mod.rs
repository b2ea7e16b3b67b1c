//! One TCP connection: framing ([`pdu_reader`], [`pdu_writer`]), the login phase
//! ([`login`]), then the full feature phase ([`ffp`]).

mod ffp;
mod login;
mod pdu_reader;
mod pdu_writer;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::Instrument;

use crate::config::PortalConfig;
use crate::shared::Shared;

pub(crate) use pdu_reader::PduReader;
pub(crate) use pdu_writer::PduWriter;

/// Units in the server-wide buffer budget.
pub(crate) const BUFFER_BUDGET_UNITS: usize =
    ffp::MAX_BUFFERED_BYTES_TOTAL / ffp::BUDGET_UNIT_BYTES;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("connection closed by the initiator")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("header digest mismatch")]
    HeaderDigest,
    #[error("data digest mismatch")]
    DataDigest,
    #[error("data segment of {len} bytes exceeds the limit of {max}")]
    SegmentTooLong { len: usize, max: usize },
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("login timed out")]
    LoginTimeout,
}

/// Serves one accepted connection to its end.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    portal: PortalConfig,
    login_slot: tokio::sync::OwnedSemaphorePermit,
) {
    let local = stream.local_addr().unwrap_or(portal.addr);
    let span = tracing::info_span!("conn", %peer, portal = %portal.addr);
    async move {
        let (rd, wr) = stream.into_split();
        let mut rd = PduReader::new(rd);
        let stall = std::time::Duration::from_millis(shared.config.limits.nop_in_timeout_ms);
        let mut wr = PduWriter::new(wr, stall);
        let timeout = std::time::Duration::from_millis(shared.config.limits.login_timeout_ms);
        let logged_in = match tokio::time::timeout(
            timeout,
            login::login_phase(&shared, &mut rd, &mut wr, &portal),
        )
        .await
        {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => {
                shared.counters.login_failed();
                return;
            }
            Ok(Err(e)) => {
                shared.counters.login_failed();
                tracing::info!(error = %e, "login ended");
                return;
            }
            Err(_) => {
                shared.counters.login_failed();
                tracing::warn!(error = %ConnError::LoginTimeout, "closing connection");
                return;
            }
        };
        shared.counters.logged_in();
        // Logged in: the connection now counts against the session limits instead.
        drop(login_slot);
        ffp::run(shared, logged_in, rd, wr, portal, local, peer).await;
    }
    .instrument(span)
    .await
}
