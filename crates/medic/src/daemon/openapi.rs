//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP API, written by hand in `assets/openapi.json` and
//! embedded in the binary; `info.version` is set to the binary's version when served.
//!
//! `tests/openapi.rs` keeps it true: every route the daemon's router declares (every `.route(...)` of
//! `src/daemon/`, with its methods) is described, every described path and method is answered by a route (never the
//! router's fallback), and every `{parameter}` of a path is declared.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::api::ApiState;

/// The description as written, embedded at build time.
pub const OPENAPI_JSON: &str = include_str!("../../assets/openapi.json");

/// The routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(openapi))
}

/// The description with `info.version` set to this binary's version.
pub fn description() -> Value {
    // The embedded file is checked by tests; a file that does not parse would be served as `null` rather than panic.
    let mut doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap_or(Value::Null);
    if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
        info.insert(
            "version".to_string(),
            Value::String(env!("CARGO_PKG_VERSION").to_string()),
        );
    }
    doc
}

/// `GET /openapi.json`.
async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-cache")],
        axum::Json(description()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_description_parses_and_names_this_version() {
        let doc = description();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(doc["paths"].as_object().is_some_and(|p| p.len() > 20));
    }
}
