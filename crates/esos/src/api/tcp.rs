//! The API on TCP: TLS (rustls) in front of the same router as the unix socket, behind the
//! bearer-token layer ([`super::auth`]).
//!
//! Every peer-controlled resource is bounded: connections ([`MAX_TCP_CONNECTIONS`]; more
//! are accepted and closed at once), the TLS handshake ([`TLS_HANDSHAKE_TIMEOUT`]), the
//! wait for a request's headers, idle keep-alive included ([`HEADER_READ_TIMEOUT`]), the
//! body (the router's `MAX_BODY_BYTES`) and requests in flight (`MAX_CONCURRENT_REQUESTS`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::auth::{Peer, Tokens, require_token};
use super::{Control, router};
use crate::config::ApiPlan;

/// TCP connections served at once over all listeners; an administrator's tools need few.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// Longest TLS handshake; a peer that stalls it loses its connection.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a complete request head, idle keep-alive time included.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head (request line and headers).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long connections may finish their requests after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. EMFILE) so a persistent error cannot spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why the TCP API cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error("api.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Listeners bound before the daemon reports ready, with what serving them needs.
pub struct TcpBound {
    listeners: Vec<(SocketAddr, TcpListener)>,
    acceptor: TlsAcceptor,
    tokens: Arc<Tokens>,
}

impl TcpBound {
    /// The bound addresses (a configured port 0 shows the port chosen).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(a, _)| *a).collect()
    }
}

/// Binds every `api.listen` address.
pub async fn bind_tcp(
    plan: &ApiPlan,
    tls: Arc<rustls::ServerConfig>,
) -> Result<TcpBound, TcpError> {
    let mut listeners = Vec::with_capacity(plan.listen.len());
    for &addr in &plan.listen {
        let bind = |source| TcpError::Bind { addr, source };
        let l = TcpListener::bind(addr).await.map_err(bind)?;
        let local = l.local_addr().map_err(bind)?;
        listeners.push((local, l));
    }
    Ok(TcpBound {
        listeners,
        acceptor: TlsAcceptor::from(tls),
        tokens: Arc::new(Tokens::new(plan.tokens.clone())),
    })
}

/// The router the TCP listeners serve: the API behind the token layer.
pub fn tcp_router(control: Arc<dyn Control>, tokens: Arc<Tokens>) -> Router {
    router(control).layer(axum::middleware::from_fn_with_state(tokens, require_token))
}

/// Serves until `shutdown` completes, then lets open connections finish their requests
/// for at most [`SHUTDOWN_GRACE`].
pub async fn serve_tcp_on(
    control: Arc<dyn Control>,
    bound: TcpBound,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let TcpBound {
        listeners,
        acceptor,
        tokens,
    } = bound;
    let app = tcp_router(control, tokens);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut loops = JoinSet::new();
    for (addr, listener) in listeners {
        tracing::info!(%addr, "management API listening on TCP (TLS, bearer tokens)");
        loops.spawn(accept_loop(
            listener,
            acceptor.clone(),
            app.clone(),
            slots.clone(),
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
}

/// Completes once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stopped(&mut stop) => break,
        };
        // Reap finished connections so the set stays as small as the live ones.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "management API: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = MAX_TCP_CONNECTIONS, "management API: too many connections; closing this one");
            continue;
        };
        conns.spawn(connection(
            stream,
            peer,
            acceptor.clone(),
            app.clone(),
            stop.clone(),
            slot,
        ));
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            "management API: connections still open after the shutdown grace; closing them"
        );
    }
    // Dropping `conns` aborts whatever is left.
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "management API: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "management API: TLS handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "management API connection ended");
    }
}
