//! The management REST API: JSON over HTTP/1.1 on a unix socket, under `/api/v1`.
//!
//! Reads come straight from the [`Manager`]. Every change is a config edit: take the running
//! text ([`Manager::export`]), change one thing ([`crate::edit`]), hand the whole new text to
//! [`Manager::apply`], which validates, applies live and persists. Edits run one at a time
//! so two concurrent changes cannot lose each other. The OpenAPI document is served at
//! `/api/v1/openapi.json`.
//!
//! The socket is the access control: it is created mode 0600 in the daemon's data
//! directory, so only its owner (root) can manage the daemon. Optionally (`[api] listen`)
//! the same router is served on TCP with TLS ([`tls`], [`tcp`]) behind bearer tokens with
//! an admin or read-only role ([`auth`]).

pub mod auth;
mod doc;
mod error;
mod handlers;
#[cfg(test)]
mod markdown;
mod replicas;
mod schema;
mod socket;
pub mod tcp;
pub mod tls;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use crate::manager::{ApplyError, ApplyReport, DeviceInfo, Manager, SessionInfo, TargetInfo};

pub use doc::openapi_json;
pub use error::ApiError;
pub use handlers::{Applied, Initiators, LunRequest, PortalRequest};
pub use socket::{Bound, ServeError, SocketGuard, bind_socket};
pub use tcp::{TcpBound, TcpError, bind_tcp, serve_tcp_on};

/// Largest request body: a whole config for `PUT /config`, so the config file's own limit.
pub const MAX_BODY_BYTES: usize = crate::config::MAX_CONFIG_BYTES as usize;

/// Requests served at once; an admin tool needs few, and a runaway script can't pile up.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// File name of the API socket in the daemon's data directory.
pub const SOCKET_NAME: &str = "esos.sock";

/// A future of an apply, boxed so [`Control`] can be a trait object.
pub type ApplyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ApplyReport, ApplyError>> + Send + 'a>>;

/// What the API needs from the live object model. [`Manager`] is the real one; tests use
/// an in-memory implementation that validates with the same config code.
pub trait Control: Send + Sync + 'static {
    fn export(&self) -> String;
    fn apply<'a>(&'a self, text: &'a str, dry_run: bool, force: bool) -> ApplyFuture<'a>;
    fn devices(&self) -> Vec<DeviceInfo>;
    fn targets(&self) -> Vec<TargetInfo>;
    fn sessions(&self) -> Vec<SessionInfo>;
    fn close_session(&self, id: u64) -> bool;
    fn stats(&self) -> Vec<crate::manager::DeviceStats>;
    fn port_groups(&self) -> Vec<crate::manager::PortGroupInfo>;
    fn set_port_group_state(
        &self,
        id: u16,
        state: &str,
    ) -> Result<(), crate::manager::PortGroupError>;
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
    /// The daemon's version, process, uptime and paths.
    fn system(&self) -> crate::system::SystemInfo;
    /// The newest `limit` log events at `min_level` or more severe, oldest first.
    fn log(&self, limit: usize, min_level: tracing::Level) -> Vec<crate::system::LogEvent>;
    /// Every replicated device's report (none without `[cluster]`).
    fn replicas(&self) -> Vec<crate::cluster::ReplicaInfo> {
        Vec::new()
    }
    /// Runs `action` on replicated device `device`.
    fn replica_action<'a>(
        &'a self,
        device: &'a str,
        action: crate::cluster::Action,
    ) -> ReplicaFuture<'a> {
        let _ = action;
        Box::pin(async move {
            Err(crate::cluster::ReplicaActionError::NotFound(
                device.to_owned(),
            ))
        })
    }
}

/// A future of a replica action, boxed so [`Control`] can be a trait object.
pub type ReplicaFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<crate::cluster::ReplicaInfo, crate::cluster::ReplicaActionError>>
            + Send
            + 'a,
    >,
>;

impl Control for Manager {
    fn export(&self) -> String {
        Manager::export(self)
    }
    fn apply<'a>(&'a self, text: &'a str, dry_run: bool, force: bool) -> ApplyFuture<'a> {
        Box::pin(Manager::apply(self, text, dry_run, force))
    }
    fn devices(&self) -> Vec<DeviceInfo> {
        Manager::devices(self)
    }
    fn targets(&self) -> Vec<TargetInfo> {
        Manager::targets(self)
    }
    fn sessions(&self) -> Vec<SessionInfo> {
        Manager::sessions(self)
    }
    fn close_session(&self, id: u64) -> bool {
        Manager::close_session(self, id)
    }
    fn stats(&self) -> Vec<crate::manager::DeviceStats> {
        Manager::stats(self)
    }
    fn port_groups(&self) -> Vec<crate::manager::PortGroupInfo> {
        Manager::port_groups(self)
    }
    fn set_port_group_state(
        &self,
        id: u16,
        state: &str,
    ) -> Result<(), crate::manager::PortGroupError> {
        Manager::set_port_group_state(self, id, state)
    }
    fn metrics(&self) -> String {
        crate::metrics::render(self)
    }
    fn system(&self) -> crate::system::SystemInfo {
        crate::system::daemon_info(Manager::config_path(self), &Manager::data_dir(self))
    }
    fn log(&self, limit: usize, min_level: tracing::Level) -> Vec<crate::system::LogEvent> {
        crate::system::daemon_log(limit, min_level)
    }
    fn replicas(&self) -> Vec<crate::cluster::ReplicaInfo> {
        Manager::replicas(self)
    }
    fn replica_action<'a>(
        &'a self,
        device: &'a str,
        action: crate::cluster::Action,
    ) -> ReplicaFuture<'a> {
        Box::pin(Manager::replica_action(self, device, action))
    }
}

/// Shared by every handler.
pub(crate) struct AppState {
    control: Arc<dyn Control>,
    /// Held from `export` to the end of `apply`: a read-modify-write of the config text.
    edit_lock: Arc<tokio::sync::Mutex<()>>,
}

/// The `/api/v1` router over `control`.
pub fn router(control: Arc<dyn Control>) -> Router {
    use handlers as h;
    let state = Arc::new(AppState {
        control,
        edit_lock: Arc::new(tokio::sync::Mutex::new(())),
    });
    let api = Router::new()
        .route("/devices", get(h::list_devices).post(h::add_device))
        .route(
            "/devices/{name}",
            get(h::get_device).delete(h::remove_device),
        )
        .route("/devices/{name}/size", put(h::resize_device))
        .route("/targets", get(h::list_targets).post(h::add_target))
        .route(
            "/targets/{name}",
            get(h::get_target).delete(h::remove_target),
        )
        .route("/targets/{name}/enable", post(h::enable_target))
        .route("/targets/{name}/disable", post(h::disable_target))
        .route(
            "/targets/{name}/chap",
            put(h::set_chap).delete(h::clear_chap),
        )
        .route("/targets/{name}/luns", post(h::map_default_lun))
        .route("/targets/{name}/luns/{lun}", delete(h::unmap_default_lun))
        .route("/targets/{name}/groups", post(h::add_group))
        .route("/targets/{name}/groups/{group}", delete(h::remove_group))
        .route(
            "/targets/{name}/groups/{group}/initiators",
            post(h::add_initiators).delete(h::remove_initiators),
        )
        .route(
            "/targets/{name}/groups/{group}/luns",
            post(h::map_group_lun),
        )
        .route(
            "/targets/{name}/groups/{group}/luns/{lun}",
            delete(h::unmap_group_lun),
        )
        .route("/portals", post(h::add_portal))
        .route("/portals/{address}", delete(h::remove_portal))
        .route("/sessions", get(h::list_sessions))
        .route("/sessions/{id}", delete(h::close_session))
        .route("/config", get(h::get_config).put(h::put_config))
        .route("/stats", get(h::get_stats))
        .route("/port-groups", get(h::list_port_groups))
        .route("/port-groups/{id}", put(h::set_port_group_state))
        .route("/metrics", get(h::get_metrics))
        .route("/system", get(h::get_system))
        .route("/system/log", get(h::get_log))
        .route("/replicas", get(replicas::list_replicas))
        .route("/replicas/{device}", get(replicas::get_replica))
        .route(
            "/replicas/{device}/{action}",
            post(replicas::replica_action),
        )
        .route("/openapi.json", get(doc::openapi))
        .with_state(state);
    Router::new()
        .nest("/api/v1", api)
        .fallback(h::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
}

/// Serves the API on the unix socket `socket` until `shutdown` completes, then removes the
/// socket. A stale socket left by a dead daemon is replaced; one a live daemon answers on
/// is refused ([`ServeError::InUse`]).
///
/// The daemon calls it beside the iSCSI server, e.g.
/// `tokio::spawn(api::serve(manager.clone(), data_dir.join(api::SOCKET_NAME), stop))`.
pub async fn serve(
    manager: Arc<Manager>,
    socket: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_control(manager, socket, shutdown).await
}

/// [`serve`] over any [`Control`].
pub async fn serve_control(
    control: Arc<dyn Control>,
    socket: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let bound = socket::bind_socket(&socket).await?;
    serve_on(control, bound, shutdown).await
}

/// Serves on a socket bound beforehand with [`bind_socket`] (so a daemon can refuse to
/// start when its API socket is taken), then removes the socket.
pub async fn serve_on(
    control: Arc<dyn Control>,
    bound: Bound,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Bound { listener, guard } = bound;
    let path = guard.path().to_owned();
    tracing::info!(socket = %path.display(), "management API listening");
    let result = axum::serve(listener, router(control))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Io { path, source });
    guard.remove();
    result
}
