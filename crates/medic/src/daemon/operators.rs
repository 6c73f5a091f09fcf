//! The operators' routes: actions on incidents (`POST /v1/incidents/{id}/approve|deny|ack|resolve|reopen|annotate|
//! false-positive`, optional body `{"note": "..."}`), pending approvals (`GET /v1/approvals`), circuit breakers
//! (`GET /v1/breakers`, `POST /v1/breakers/{strategy}/reset`) and silences (`POST /v1/silences`,
//! `GET /v1/silences[?all=true]`, `DELETE /v1/silences/{id}`). Each action is recorded with who did it (the
//! [`Operator`] the token names) in the knowledge base. An action the incident's state does not allow is a 409
//! naming the incident and its state; an unknown incident, strategy or silence a 404.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::api::ApiState;
use super::auth::Operator;
use super::error::ApiError;
use crate::operators::{IncidentAction, OpError, SilenceRequest};

/// The operators' routes, merged into the daemon's router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/incidents/{id}/{action}", post(incident_action))
        .route("/v1/approvals", get(approvals))
        .route("/v1/breakers", get(breakers))
        .route("/v1/breakers/{strategy}/reset", post(reset_breaker))
        .route("/v1/silences", post(add_silence).get(silences))
        .route("/v1/silences/{id}", delete(expire_silence))
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::BadRequest(m) => ApiError::bad_request(m),
            OpError::NotFound(m) => ApiError::not_found(m),
            OpError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            OpError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// An optional `{"note": "..."}` body (empty is fine).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    #[serde(default)]
    note: String,
}

fn note(body: &Bytes) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    super::error::parse_json_body::<NoteBody>(body, None)
        .map(|b| b.note)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{}; expected nothing or {{\"note\": \"...\"}}",
                e.message
            ))
        })
}

fn who(op: Option<Extension<Operator>>) -> String {
    op.map(|Extension(Operator(n))| n)
        .unwrap_or_else(|| crate::operators::LOCAL.to_string())
}

/// `POST /v1/incidents/{id}/{action}`.
async fn incident_action(
    State(s): State<ApiState>,
    op: Option<Extension<Operator>>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path((raw, action)) = path?;
    let Some(action) = IncidentAction::from_route(&action) else {
        let known: Vec<&str> = IncidentAction::ALL.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::not_found(format!(
            "no action {action:?} on incidents; one of {}",
            known.join(", ")
        )));
    };
    let id = raw
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("incident id {raw:?} is not a number")))?;
    let note = note(&body)?;
    let who = who(op);
    let app = s.app.clone();
    let v =
        tokio::task::spawn_blocking(move || app.incident_action(id, action, &who, &note)).await??;
    Ok(Json(v))
}

/// `GET /v1/approvals`.
async fn approvals(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let app = s.app.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || app.approvals()).await?,
    ))
}

/// `GET /v1/breakers`.
async fn breakers(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let app = s.app.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || app.breakers_view()).await?,
    ))
}

/// `POST /v1/breakers/{strategy}/reset`.
async fn reset_breaker(
    State(s): State<ApiState>,
    op: Option<Extension<Operator>>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path(strategy) = path?;
    let note = note(&body)?;
    let who = who(op);
    let app = s.app.clone();
    let v =
        tokio::task::spawn_blocking(move || app.reset_breaker(&strategy, &who, &note)).await??;
    Ok(Json(v))
}

/// `POST /v1/silences` `{"matchers": [...], "duration" | "for": "1h", "comment": "..."}`.
async fn add_silence(
    State(s): State<ApiState>,
    op: Option<Extension<Operator>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: SilenceRequest = super::error::parse_json_body(&body, None).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid silence: {}; expected {{\"matchers\": [\"code=slow_io\"], \"duration\": \"1h\", \
             \"comment\": \"why\"}}",
            e.message
        ))
    })?;
    let who = who(op);
    let app = s.app.clone();
    let v = tokio::task::spawn_blocking(move || app.add_silence(req, &who)).await??;
    Ok(Json(v))
}

/// `?all=` of `GET /v1/silences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilencesQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /v1/silences[?all=true]`: in force, or also those ended within the last day.
async fn silences(
    State(s): State<ApiState>,
    q: Result<Query<SilencesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let app = s.app.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || app.silences_view(q.all)).await??,
    ))
}

/// `DELETE /v1/silences/{id}`: ends it now.
async fn expire_silence(
    State(s): State<ApiState>,
    op: Option<Extension<Operator>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(raw) = path?;
    let id = raw
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("silence id {raw:?} is not a number")))?;
    let who = who(op);
    let app = s.app.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || app.expire_silence(id, &who)).await??,
    ))
}
