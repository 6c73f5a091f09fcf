//! The operator's views served by the daemon: the dashboard page at `GET /` (one self-contained HTML page embedded
//! in the binary — its script polls the JSON API and draws the charts as inline SVG; no CDN, no build step), the
//! metric history (`GET /v1/history`) and the daily and weekly reports (`GET /v1/reports/{daily|weekly}`).

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::api::ApiState;
use super::error::ApiError;
use crate::history::{HistoryError, HistoryQuery};

/// The dashboard page, embedded at build time.
pub const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");

/// What the page may load: its own inline script and style, and requests to this daemon only.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/v1/history", get(history))
}

/// `GET /`: the dashboard.
async fn dashboard() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        DASHBOARD_HTML,
    )
        .into_response()
}

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::BadQuery(m) => ApiError::bad_request(m),
            HistoryError::Kb(e) => ApiError::internal(e.to_string()),
        }
    }
}

/// `GET /v1/history[?metric=&since=&until=&step=]`: without `metric`, the metric names; with it, its points.
async fn history(
    State(s): State<ApiState>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let Query(q) = q?;
    let app = s.app.clone();
    let v = tokio::task::spawn_blocking(move || crate::history::query(app.kb(), &q, app.now()))
        .await??;
    Ok(axum::Json(v))
}
