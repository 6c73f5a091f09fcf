//! [`ApiError`]: the one place that decides what HTTP clients see when a request fails. Every failure is JSON
//! `{"error": "..."}` saying what was wrong; axum's own rejections (plain text by default) are mapped here, and only
//! the daemon's or the store's own trouble is a 5xx — bad input never is.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failed request: a status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What was wrong, for the client.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or a value is out of range.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500: the daemon's own failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503: the service cannot do this now (read-only, stopped writing, busy).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The 413 answer for a body over `request_body_bytes_max`.
    pub fn body_too_large(limit: u64) -> Self {
        Self::body_over("http.request_body_bytes_max", limit)
    }

    /// The 413 answer for a body over the limit `key` = `limit`.
    pub fn body_over(key: &str, limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over {key} = {limit} bytes"),
        )
    }

    /// The 413 answer for a request whose `Content-Length` declares more than `request_body_bytes_max`, given
    /// before any of the body is read.
    pub fn declared_body_too_large(key: &str, limit: u64, declared: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {declared} bytes (Content-Length) is over {key} = {limit} bytes"
            ),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = %self.message, "request failed");
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        // A rejected body is always the client's fault; never let it surface as a 5xx.
        let status = if status.is_server_error() {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a JSON body with `Content-Type: application/json`".to_string()
            }
            _ => format!("invalid JSON body: {}", r.body_text()),
        };
        Self::new(status, message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(format!("invalid path: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query string: {}", r.body_text()))
    }
}

impl From<heal::learn::KbError> for ApiError {
    fn from(e: heal::learn::KbError) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(format!("request task failed: {e}"))
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        use store::StoreError as E;
        let status = match &e {
            E::InvalidInput(_) => StatusCode::BAD_REQUEST,
            E::UnknownCollection(_) => StatusCode::NOT_FOUND,
            E::CollectionConflict(_) => StatusCode::CONFLICT,
            E::TooLarge { what: "id", .. } => StatusCode::BAD_REQUEST,
            E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // Everything else is the store's own trouble (I/O, damage found, read-only, a loss): 503 with the
            // store's reason, never a 500 — the request was fine, and the engine is already on it.
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        // A user error must never surface as a 5xx, whatever variant the store adds later.
        let status = if e.is_user_error() && status.is_server_error() {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::new(status, e.to_string())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(format!("{e:#}"))
    }
}
