//! One function per endpoint. Reads ask the [`super::Control`]; changes go through [`mutate`].

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::schema;
use crate::edit::{self, ChapSpec, DeviceSpec, EditError, GroupSpec, LunMap, TargetSpec};
use crate::manager::{ApplyReport, DeviceInfo, SessionInfo, TargetInfo};

type St = State<Arc<AppState>>;

// --- extractors whose rejections are JSON errors naming the field ----------------------

/// A JSON body; errors name the offending field (`initiators[1]: invalid type ...`).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path == "?" {
                "body".to_owned()
            } else {
                path
            };
            ApiError::bad_request(format!("{field}: {}", e.into_inner()))
        })
    }
}

/// Query parameters; unknown or malformed ones are a 400.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(q)| Q(q))
            .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))
    }
}

/// Path parameters; a malformed one (e.g. a LUN that is not a number) is a 400.
pub struct P<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| P(p))
            .map_err(|e| ApiError::bad_request(format!("path: {}", e.body_text())))
    }
}

// --- request and answer types -----------------------------------------------------------

/// Options of every change.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Mutate {
    /// Validate and report, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Allow removing or changing objects that logged-in sessions use.
    #[serde(default)]
    pub force: bool,
}

/// The answer to a change.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// True when nothing was changed (`dry_run=true`).
    pub dry_run: bool,
    /// The LUN number written, for LUN maps (chosen when the request gave none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<u64>,
    #[schema(value_type = schema::ApplyReportDoc)]
    pub report: ApplyReportJson,
}

/// [`ApplyReport`] as it travels: the client decodes it without the manager's types.
pub type ApplyReportJson = serde_json::Value;

/// Body of `POST .../luns`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LunRequest {
    /// Device to map.
    pub device: String,
    /// LUN number, 0..=16383; absent: the lowest free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<u64>,
}

/// Body of the initiator endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Initiators {
    pub initiators: Vec<String>,
}

/// Body of `POST /portals`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalRequest {
    /// `IPv4:port` or `[IPv6]:port`.
    pub address: String,
    /// Target portal group tag, default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
}

// --- the change pipeline ---------------------------------------------------------------

/// Export → edit → apply, one change at a time.
async fn mutate<T>(
    s: &AppState,
    q: &Mutate,
    change: impl FnOnce(&str) -> Result<(String, T), EditError>,
) -> Result<(ApplyReport, T), ApiError> {
    let one_at_a_time = Arc::clone(&s.edit_lock).lock_owned().await;
    let text = s.control.export();
    let (new_text, out) = change(&text)?;
    // The apply runs in a task of its own, holding the edit lock, so it goes to its end
    // even when the client leaves mid-request (a timeout, a closed connection): dropped
    // between two of its steps it would leave the daemon half changed and the config
    // file out of step with what runs.
    let control = Arc::clone(&s.control);
    let (dry_run, force) = (q.dry_run, q.force);
    let report = tokio::spawn(async move {
        let _one_at_a_time = one_at_a_time;
        control.apply(&new_text, dry_run, force).await
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the apply stopped without a result: {e}"),
        )
    })??;
    Ok((report, out))
}

fn applied(q: &Mutate, report: ApplyReport, lun: Option<u64>, created: bool) -> Response {
    let status = if created && !q.dry_run {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let report = serde_json::to_value(report).unwrap_or_default();
    (
        status,
        Json(Applied {
            dry_run: q.dry_run,
            lun,
            report,
        }),
    )
        .into_response()
}

/// Adapts an edit that only returns the new text.
fn text_only(r: Result<String, EditError>) -> Result<(String, ()), EditError> {
    r.map(|t| (t, ()))
}

// --- devices --------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    responses((status = 200, body = [schema::DeviceInfoDoc])))]
pub async fn list_devices(State(s): St) -> Json<Vec<DeviceInfo>> {
    Json(s.control.devices())
}

#[utoipa::path(get, path = "/api/v1/devices/{name}", tag = "devices",
    params(("name" = String, Path, description = "device name")),
    responses((status = 200, body = schema::DeviceInfoDoc), (status = 404, body = ErrorBody)))]
pub async fn get_device(State(s): St, P(name): P<String>) -> Result<Json<DeviceInfo>, ApiError> {
    s.control
        .devices()
        .into_iter()
        .find(|d| d.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no device {name:?}")))
}

#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", params(Mutate),
    request_body = DeviceSpec,
    responses((status = 201, body = Applied), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn add_device(
    State(s): St,
    Q(q): Q<Mutate>,
    Body(spec): Body<DeviceSpec>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::add_device(t, &spec))).await?;
    Ok(applied(&q, r, None, true))
}

#[utoipa::path(delete, path = "/api/v1/devices/{name}", tag = "devices", params(
    ("name" = String, Path, description = "device name"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "still mapped")))]
pub async fn remove_device(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::remove_device(t, &name))).await?;
    Ok(applied(&q, r, None, false))
}

/// Body of `PUT /devices/{name}/size`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SizeBody {
    /// New size, e.g. "20G"; only growing is possible.
    pub size: String,
}

#[utoipa::path(put, path = "/api/v1/devices/{name}/size", tag = "devices", params(
    ("name" = String, Path, description = "device name"), Mutate),
    request_body = SizeBody,
    responses((status = 200, body = Applied), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "shrinking, or a RAM device")))]
pub async fn resize_device(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
    Body(b): Body<SizeBody>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| {
        text_only(edit::resize_device(t, &name, &b.size))
    })
    .await?;
    Ok(applied(&q, r, None, false))
}

// --- targets --------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/targets", tag = "targets",
    responses((status = 200, body = [schema::TargetInfoDoc])))]
pub async fn list_targets(State(s): St) -> Json<Vec<TargetInfo>> {
    Json(s.control.targets())
}

#[utoipa::path(get, path = "/api/v1/targets/{name}", tag = "targets",
    params(("name" = String, Path, description = "target IQN")),
    responses((status = 200, body = schema::TargetInfoDoc), (status = 404, body = ErrorBody)))]
pub async fn get_target(State(s): St, P(name): P<String>) -> Result<Json<TargetInfo>, ApiError> {
    s.control
        .targets()
        .into_iter()
        .find(|t| t.name.eq_ignore_ascii_case(&name))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no target {name:?}")))
}

#[utoipa::path(post, path = "/api/v1/targets", tag = "targets", params(Mutate),
    request_body = TargetSpec,
    responses((status = 201, body = Applied), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn add_target(
    State(s): St,
    Q(q): Q<Mutate>,
    Body(spec): Body<TargetSpec>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::add_target(t, &spec))).await?;
    Ok(applied(&q, r, None, true))
}

#[utoipa::path(delete, path = "/api/v1/targets/{name}", tag = "targets", params(
    ("name" = String, Path, description = "target IQN"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "sessions use it; see force")))]
pub async fn remove_target(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::remove_target(t, &name))).await?;
    Ok(applied(&q, r, None, false))
}

async fn set_enabled(
    s: &AppState,
    name: &str,
    q: &Mutate,
    enabled: bool,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(s, q, |t| {
        text_only(edit::set_target_enabled(t, name, enabled))
    })
    .await?;
    Ok(applied(q, r, None, false))
}

#[utoipa::path(post, path = "/api/v1/targets/{name}/enable", tag = "targets", params(
    ("name" = String, Path, description = "target IQN"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody),
              (status = 400, body = ErrorBody, description = "e.g. no LUN map yet")))]
pub async fn enable_target(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    set_enabled(&s, &name, &q, true).await
}

#[utoipa::path(post, path = "/api/v1/targets/{name}/disable", tag = "targets", params(
    ("name" = String, Path, description = "target IQN"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody)))]
pub async fn disable_target(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    set_enabled(&s, &name, &q, false).await
}

#[utoipa::path(put, path = "/api/v1/targets/{name}/chap", tag = "targets", params(
    ("name" = String, Path, description = "target IQN"), Mutate),
    request_body = ChapSpec,
    responses((status = 200, body = Applied), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn set_chap(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
    Body(chap): Body<ChapSpec>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::set_chap(t, &name, &chap))).await?;
    Ok(applied(&q, r, None, false))
}

#[utoipa::path(delete, path = "/api/v1/targets/{name}/chap", tag = "targets", params(
    ("name" = String, Path, description = "target IQN"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody)))]
pub async fn clear_chap(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::clear_chap(t, &name))).await?;
    Ok(applied(&q, r, None, false))
}

// --- groups, initiators, LUN maps -----------------------------------------------------

#[utoipa::path(post, path = "/api/v1/targets/{name}/groups", tag = "groups", params(
    ("name" = String, Path, description = "target IQN"), Mutate),
    request_body = GroupSpec,
    responses((status = 201, body = Applied), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_group(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
    Body(spec): Body<GroupSpec>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::add_group(t, &name, &spec))).await?;
    Ok(applied(&q, r, None, true))
}

#[utoipa::path(delete, path = "/api/v1/targets/{name}/groups/{group}", tag = "groups", params(
    ("name" = String, Path, description = "target IQN"),
    ("group" = String, Path, description = "group name"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody)))]
pub async fn remove_group(
    State(s): St,
    P((name, group)): P<(String, String)>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::remove_group(t, &name, &group))).await?;
    Ok(applied(&q, r, None, false))
}

#[utoipa::path(post, path = "/api/v1/targets/{name}/groups/{group}/initiators", tag = "groups",
    params(("name" = String, Path, description = "target IQN"),
           ("group" = String, Path, description = "group name"), Mutate),
    request_body = Initiators,
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "already in a group")))]
pub async fn add_initiators(
    State(s): St,
    P((name, group)): P<(String, String)>,
    Q(q): Q<Mutate>,
    Body(b): Body<Initiators>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| {
        text_only(edit::add_initiators(t, &name, &group, &b.initiators))
    })
    .await?;
    Ok(applied(&q, r, None, false))
}

#[utoipa::path(delete, path = "/api/v1/targets/{name}/groups/{group}/initiators", tag = "groups",
    params(("name" = String, Path, description = "target IQN"),
           ("group" = String, Path, description = "group name"), Mutate),
    request_body = Initiators,
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "would leave the group empty")))]
pub async fn remove_initiators(
    State(s): St,
    P((name, group)): P<(String, String)>,
    Q(q): Q<Mutate>,
    Body(b): Body<Initiators>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| {
        text_only(edit::remove_initiators(t, &name, &group, &b.initiators))
    })
    .await?;
    Ok(applied(&q, r, None, false))
}

async fn map(
    s: &AppState,
    q: &Mutate,
    target: &str,
    map: LunMap<'_>,
    req: &LunRequest,
) -> Result<Response, ApiError> {
    let (r, m) = mutate(s, q, |t| {
        edit::map_lun(t, target, map, req.lun, &req.device)
    })
    .await?;
    Ok(applied(q, r, Some(m.lun), true))
}

async fn unmap(
    s: &AppState,
    q: &Mutate,
    target: &str,
    map: LunMap<'_>,
    lun: &str,
) -> Result<Response, ApiError> {
    let lun: u64 = lun
        .parse()
        .map_err(|_| ApiError::bad_request(format!("lun: {lun:?} is not a LUN number")))?;
    let (r, ()) = mutate(s, q, |t| text_only(edit::unmap_lun(t, target, map, lun))).await?;
    Ok(applied(q, r, Some(lun), false))
}

#[utoipa::path(post, path = "/api/v1/targets/{name}/luns", tag = "luns", params(
    ("name" = String, Path, description = "target IQN"), Mutate),
    request_body = LunRequest,
    responses((status = 201, body = Applied), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "LUN taken")))]
pub async fn map_default_lun(
    State(s): St,
    P(name): P<String>,
    Q(q): Q<Mutate>,
    Body(req): Body<LunRequest>,
) -> Result<Response, ApiError> {
    map(&s, &q, &name, LunMap::Default, &req).await
}

#[utoipa::path(delete, path = "/api/v1/targets/{name}/luns/{lun}", tag = "luns", params(
    ("name" = String, Path, description = "target IQN"),
    ("lun" = u64, Path, description = "LUN number"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody)))]
pub async fn unmap_default_lun(
    State(s): St,
    P((name, lun)): P<(String, String)>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    unmap(&s, &q, &name, LunMap::Default, &lun).await
}

#[utoipa::path(post, path = "/api/v1/targets/{name}/groups/{group}/luns", tag = "luns", params(
    ("name" = String, Path, description = "target IQN"),
    ("group" = String, Path, description = "group name"), Mutate),
    request_body = LunRequest,
    responses((status = 201, body = Applied), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "LUN taken")))]
pub async fn map_group_lun(
    State(s): St,
    P((name, group)): P<(String, String)>,
    Q(q): Q<Mutate>,
    Body(req): Body<LunRequest>,
) -> Result<Response, ApiError> {
    map(&s, &q, &name, LunMap::Group(&group), &req).await
}

#[utoipa::path(delete, path = "/api/v1/targets/{name}/groups/{group}/luns/{lun}", tag = "luns",
    params(("name" = String, Path, description = "target IQN"),
           ("group" = String, Path, description = "group name"),
           ("lun" = u64, Path, description = "LUN number"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody)))]
pub async fn unmap_group_lun(
    State(s): St,
    P((name, group, lun)): P<(String, String, String)>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    unmap(&s, &q, &name, LunMap::Group(&group), &lun).await
}

// --- portals --------------------------------------------------------------------------

#[utoipa::path(post, path = "/api/v1/portals", tag = "portals", params(Mutate),
    request_body = PortalRequest,
    responses((status = 201, body = Applied), (status = 409, body = ErrorBody,
        description = "exists, or portals cannot change live")))]
pub async fn add_portal(
    State(s): St,
    Q(q): Q<Mutate>,
    Body(p): Body<PortalRequest>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| {
        text_only(edit::add_portal(t, &p.address, p.group))
    })
    .await?;
    Ok(applied(&q, r, None, true))
}

#[utoipa::path(delete, path = "/api/v1/portals/{address}", tag = "portals", params(
    ("address" = String, Path, description = "portal address, percent-encoded"), Mutate),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody)))]
pub async fn remove_portal(
    State(s): St,
    P(address): P<String>,
    Q(q): Q<Mutate>,
) -> Result<Response, ApiError> {
    let (r, ()) = mutate(&s, &q, |t| text_only(edit::remove_portal(t, &address))).await?;
    Ok(applied(&q, r, None, false))
}

// --- ALUA target port groups -----------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/port-groups", tag = "port groups",
    responses((status = 200, body = [crate::manager::PortGroupInfo])))]
pub async fn list_port_groups(State(s): St) -> Json<Vec<crate::manager::PortGroupInfo>> {
    Json(s.control.port_groups())
}

/// Body of `PUT /port-groups/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    /// active-optimized | active-non-optimized | standby | unavailable
    pub state: String,
}

#[utoipa::path(put, path = "/api/v1/port-groups/{id}", tag = "port groups",
    params(("id" = u16, Path, description = "target port group id")),
    request_body = StateBody,
    responses((status = 204, description = "changed; every nexus gets ASYMMETRIC ACCESS STATE CHANGED"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_port_group_state(
    State(s): St,
    P(id): P<String>,
    Body(b): Body<StateBody>,
) -> Result<StatusCode, ApiError> {
    let id: u16 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("id: {id:?} is not a port group id")))?;
    let _serial = s.edit_lock.lock().await;
    match s.control.set_port_group_state(id, &b.state) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e @ crate::manager::PortGroupError::NotFound(_)) => {
            Err(ApiError::not_found(e.to_string()))
        }
        Err(e @ crate::manager::PortGroupError::BadState(_)) => {
            Err(ApiError::bad_request(e.to_string()))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

// --- statistics -----------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/stats", tag = "statistics",
    responses((status = 200, body = [crate::manager::DeviceStats])))]
pub async fn get_stats(State(s): St) -> Json<Vec<crate::manager::DeviceStats>> {
    Json(s.control.stats())
}

#[utoipa::path(get, path = "/api/v1/metrics", tag = "statistics",
    responses((status = 200, description = "Prometheus/OpenMetrics text", content_type = "text/plain")))]
pub async fn get_metrics(State(s): St) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        s.control.metrics(),
    )
        .into_response()
}

// --- the daemon itself -------------------------------------------------------------------

/// Log events `GET /system/log` returns when the request names no `limit`.
pub const DEFAULT_LOG_LIMIT: usize = 100;

/// Most log events one `GET /system/log` returns: the whole ring.
pub const MAX_LOG_LIMIT: usize = crate::system::LOG_RING_CAPACITY;

/// Query of `GET /system/log`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Newest events to return (default 100); more than the ring holds (500) is capped.
    pub limit: Option<usize>,
    /// Least severe level to include: error | warn | info | debug | trace (default:
    /// everything the daemon logs).
    pub level: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/system", tag = "system",
    responses((status = 200, body = crate::system::SystemInfo)))]
pub async fn get_system(State(s): St) -> Json<crate::system::SystemInfo> {
    Json(s.control.system())
}

#[utoipa::path(get, path = "/api/v1/system/log", tag = "system", params(LogQuery),
    responses((status = 200, body = [crate::system::LogEvent],
        description = "the newest matching events, oldest first (newest last, like a log \
            file's tail); only what the daemon's log filter lets through"),
        (status = 400, body = ErrorBody)))]
pub async fn get_log(
    State(s): St,
    Q(q): Q<LogQuery>,
) -> Result<Json<Vec<crate::system::LogEvent>>, ApiError> {
    let level = match q.level.as_deref() {
        None => tracing::Level::TRACE,
        Some(l) => crate::system::parse_level(l).ok_or_else(|| {
            ApiError::bad_request(format!(
                "level: {l:?} is not one of {}",
                crate::system::LEVEL_NAMES
            ))
        })?,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT).min(MAX_LOG_LIMIT);
    Ok(Json(s.control.log(limit, level)))
}

// --- sessions -------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 200, body = [schema::SessionInfoDoc])))]
pub async fn list_sessions(State(s): St) -> Json<Vec<SessionInfo>> {
    Json(s.control.sessions())
}

#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = u64, Path, description = "session id from GET /sessions")),
    responses((status = 204, description = "logged out"), (status = 404, body = ErrorBody)))]
pub async fn close_session(State(s): St, P(id): P<String>) -> Result<StatusCode, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("id: {id:?} is not a session id")))?;
    if s.control.close_session(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no session {id}")))
    }
}

// --- whole config ---------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    responses((status = 200, content_type = "application/toml", body = String,
        description = "the running config, comments intact")))]
pub async fn get_config(State(s): St) -> Response {
    (
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        s.control.export(),
    )
        .into_response()
}

#[utoipa::path(put, path = "/api/v1/config", tag = "config", params(Mutate),
    request_body(content = String, content_type = "application/toml",
        description = "a complete config; the difference is applied"),
    responses((status = 200, body = Applied), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put_config(
    State(s): St,
    Q(q): Q<Mutate>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("body: not UTF-8 ({e})")))?;
    let (r, ()) = mutate(&s, &q, |_| Ok((text.to_owned(), ()))).await?;
    Ok(applied(&q, r, None, false))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such resource; the API is under /api/v1 (see /api/v1/openapi.json)")
}
