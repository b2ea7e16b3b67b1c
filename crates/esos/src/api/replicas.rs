//! `/replicas`: replicated devices, their state, and the actions an administrator or the
//! OCF agent takes on them. Actions are not config edits: they change roles, not the
//! config, so they take the edit lock only to keep one change at a time.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::handlers::P;
use crate::cluster::{Action, ReplicaActionError, ReplicaInfo, ReplicaList};

type St = State<Arc<AppState>>;

impl From<ReplicaActionError> for ApiError {
    fn from(e: ReplicaActionError) -> Self {
        let status = match &e {
            ReplicaActionError::NotFound(_) => StatusCode::NOT_FOUND,
            ReplicaActionError::Refused { .. } => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

#[utoipa::path(get, path = "/api/v1/replicas", tag = "replication",
    responses((status = 200, body = ReplicaList)))]
pub async fn list_replicas(State(s): St) -> Json<ReplicaList> {
    Json(ReplicaList {
        replicas: s.control.replicas(),
    })
}

#[utoipa::path(get, path = "/api/v1/replicas/{device}", tag = "replication",
    params(("device" = String, Path, description = "replicated device name")),
    responses((status = 200, body = ReplicaInfo), (status = 404, body = ErrorBody)))]
pub async fn get_replica(
    State(s): St,
    P(device): P<String>,
) -> Result<Json<ReplicaInfo>, ApiError> {
    s.control
        .replicas()
        .into_iter()
        .find(|r| r.device == device)
        .map(Json)
        .ok_or_else(|| ApiError::from(ReplicaActionError::NotFound(device)))
}

/// Body of `POST /replicas/{device}/promote` (may be empty).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// Promote even when the quorum record names another primary or no up-to-date node
    /// (the first promotion of a new device). Never overrides the lease of a live primary.
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /replicas/{device}/resolve`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// local | peer: whose data survives the split brain; the other's writes since the
    /// split are discarded by a resync.
    pub keep: String,
}

#[utoipa::path(post, path = "/api/v1/replicas/{device}/{action}", tag = "replication",
    params(("device" = String, Path, description = "replicated device name"),
           ("action" = String, Path, description = "promote | demote | up | down | verify | resolve")),
    request_body(content = PromoteBody, description = "promote: {\"force\": bool} (optional); \
        resolve: {\"keep\": \"local\" | \"peer\"}; the others: none"),
    responses((status = 200, body = ReplicaInfo, description = "done; the device's state after it"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "refused: the reason (not up to date, no quorum, another primary...)")))]
pub async fn replica_action(
    State(s): St,
    P((device, verb)): P<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<ReplicaInfo>, ApiError> {
    let action = parse_action(&verb, &body)?;
    let _one_change = s.edit_lock.lock().await;
    Ok(Json(s.control.replica_action(&device, action).await?))
}

/// The action named by the path and its body.
fn parse_action(verb: &str, body: &[u8]) -> Result<Action, ApiError> {
    Ok(match verb {
        "promote" => {
            let b: PromoteBody = if body.iter().all(u8::is_ascii_whitespace) {
                PromoteBody::default()
            } else {
                json_body(body)?
            };
            Action::Promote { force: b.force }
        }
        "resolve" => {
            let b: ResolveBody = json_body(body)?;
            match b.keep.as_str() {
                "local" => Action::Resolve { keep_local: true },
                "peer" => Action::Resolve { keep_local: false },
                other => {
                    return Err(ApiError::bad_request(format!(
                        "keep: {other:?} is not \"local\" or \"peer\""
                    )));
                }
            }
        }
        "demote" => Action::Demote,
        "up" => Action::Up,
        "down" => Action::Down,
        "verify" => Action::Verify,
        other => {
            return Err(ApiError::not_found(format!(
                "no replica action {other:?}: promote, demote, up, down, verify or resolve"
            )));
        }
    })
}

/// A JSON body; errors name the field.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::bad_request(format!("{field}: {}", e.into_inner()))
    })
}
