//! The operator's views served by the daemon: the dashboard page at `GET /` (one self-contained HTML page embedded
//! in the binary — its script polls the JSON API and draws the charts as inline SVG; no CDN, no build step), the
//! metric history (`GET /v1/history`), the daily and weekly reports (`GET /v1/reports/{daily|weekly}`), the KPIs
//! over time (`GET /v1/kpis/history`), the latest escalation (`GET /v1/escalations/latest`) and an incident's
//! diagnostic bundle (`GET /v1/incidents/{id}/bundle`).

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
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
        .route("/v1/reports/{period}", get(report))
        .route("/v1/kpis/history", get(kpi_history))
        .route("/v1/escalations/latest", get(latest_escalation))
        .route("/v1/incidents/{id}/bundle", get(bundle))
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

/// The query of `GET /v1/reports/{period}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// The UTC day (`YYYY-MM-DD`; the last day of a weekly report); default today.
    pub date: Option<String>,
    /// `json` (default), `md` or `html`.
    pub format: Option<String>,
}

impl From<crate::report::BuildError> for ApiError {
    fn from(e: crate::report::BuildError) -> Self {
        match e {
            crate::report::BuildError::BadDate(m) => ApiError::bad_request(m),
            crate::report::BuildError::Kb(e) => ApiError::internal(e.to_string()),
        }
    }
}

/// `GET /v1/reports/{daily|weekly}?date=YYYY-MM-DD&format=json|md|html`: the report, from the knowledge base.
async fn report(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(period) = path?;
    let Query(q) = q?;
    let Some(period) = crate::report::Period::parse(&period) else {
        return Err(ApiError::not_found(format!(
            "no report {period:?}: the reports are daily and weekly"
        )));
    };
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "md" | "html") {
        return Err(ApiError::bad_request(format!(
            "format = {format:?}: one of json, md, html"
        )));
    }
    let app = s.app.clone();
    let date = q.date.clone();
    let r = tokio::task::spawn_blocking(move || {
        crate::report::build(
            app.kb(),
            period,
            date.as_deref(),
            app.now(),
            &app.config().report,
        )
    })
    .await??;
    Ok(match format {
        "md" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            r.markdown(),
        )
            .into_response(),
        "html" => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            r.html(),
        )
            .into_response(),
        _ => axum::Json(serde_json::to_value(&r).map_err(|e| ApiError::internal(e.to_string()))?)
            .into_response(),
    })
}

impl From<crate::report::trend::TrendError> for ApiError {
    fn from(e: crate::report::trend::TrendError) -> Self {
        match e {
            crate::report::trend::TrendError::BadQuery(m) => ApiError::bad_request(m),
            crate::report::trend::TrendError::Kb(e) => ApiError::internal(e.to_string()),
        }
    }
}

/// `GET /v1/kpis/history?days=N&step=day|hour`: per day or hour, incidents, MTTD, MTTR, incidents by resolution
/// and repairs by outcome (`crate::report::trend`).
async fn kpi_history(
    State(s): State<ApiState>,
    q: Result<Query<crate::report::trend::KpiHistoryQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let Query(q) = q?;
    let app = s.app.clone();
    let h =
        tokio::task::spawn_blocking(move || crate::report::trend::build(app.kb(), &q, app.now()))
            .await??;
    Ok(axum::Json(
        serde_json::to_value(&h).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}

/// `GET /v1/escalations/latest`: the newest escalated incident, the level it reached, who was notified and whether
/// it was acknowledged (`crate::report::escalation`); `{"escalation": null}` when none.
async fn latest_escalation(State(s): State<ApiState>) -> Result<axum::Json<Value>, ApiError> {
    let app = s.app.clone();
    let v = tokio::task::spawn_blocking(move || crate::report::escalation::latest(&app))
        .await?
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    Ok(axum::Json(v))
}

/// `GET /v1/incidents/{id}/bundle`: the incident's diagnostic bundle (`crate::diagnostics`), decompressed.
async fn bundle(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let Path(raw) = path?;
    let id = raw
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("incident id {raw:?} is not a number")))?;
    let data = s.app.config().server.data_dir.clone();
    let v = tokio::task::spawn_blocking(move || crate::diagnostics::read(&data, id))
        .await?
        .map_err(|e| match e {
            crate::diagnostics::BundleError::NotFound(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other.to_string()),
        })?;
    Ok(axum::Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page is self-contained and never writes API data as HTML.
    #[test]
    fn the_dashboard_loads_nothing_from_elsewhere_and_never_parses_data_as_html() {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "<script src",
            "<link",
        ] {
            assert!(!DASHBOARD_HTML.contains(banned), "{banned}");
        }
        let urls: Vec<&str> = DASHBOARD_HTML
            .match_indices("http")
            .map(|(i, _)| &DASHBOARD_HTML[i..(i + 40).min(DASHBOARD_HTML.len())])
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .collect();
        assert_eq!(urls.len(), 1, "{urls:?}");
        assert!(
            urls[0].starts_with("http://www.w3.org/2000/svg\""),
            "only the SVG namespace: {urls:?}"
        );
    }
}
