//! API errors: a status code and `{"error": "message"}`. 400 bad input (the message names
//! the field), 404 no such object, 409 conflict or in use, 413 body too large, 500 only for
//! a genuine internal failure.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::edit::EditError;
use crate::manager::ApplyError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was refused and why; names the field or object.
    pub error: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        }
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<EditError> for ApiError {
    fn from(e: EditError) -> Self {
        let status = match &e {
            EditError::Invalid { .. } => StatusCode::BAD_REQUEST,
            EditError::NotFound { .. } | EditError::LunNotMapped { .. } => StatusCode::NOT_FOUND,
            EditError::Exists { .. }
            | EditError::LunTaken { .. }
            | EditError::LunsFull { .. }
            | EditError::InUse { .. }
            | EditError::Layout { .. } => StatusCode::CONFLICT,
            // The running text always parses: failing to is our bug.
            EditError::Parse(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        let status = match &e {
            ApplyError::Config(_) | ApplyError::Device(_) | ApplyError::Cluster(_) => {
                StatusCode::BAD_REQUEST
            }
            ApplyError::NotLive { .. } | ApplyError::InUse { .. } => StatusCode::CONFLICT,
            ApplyError::Persist { .. } | ApplyError::Identities(_) | ApplyError::Open(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}
