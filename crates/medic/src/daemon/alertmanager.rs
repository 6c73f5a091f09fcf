//! `POST /v1/alertmanager`: Alertmanager's webhook payload in, `{"received": {"firing", "resolved", "firing_now"}}`
//! out (see [`crate::alertmanager`]). A body that is not such a payload, or an alert that is not valid, is a 400
//! naming what is wrong, and nothing is taken. Like every write it needs the token when one is configured
//! (Alertmanager's `http_config.authorization`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};

use super::api::ApiState;
use super::error::ApiError;
use crate::alertmanager::Payload;

/// Takes one Alertmanager notification.
pub async fn receive(State(s): State<ApiState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let payload: Payload = super::error::parse_json_body(&body, None).map_err(|e| {
        ApiError::bad_request(format!(
            "not an Alertmanager webhook payload: {}; expected {{\"alerts\": [{{\"status\", \"labels\", ...}}]}}",
            e.message
        ))
    })?;
    let received = s
        .app
        .receive_alerts(payload)
        .map_err(ApiError::bad_request)?;
    tracing::info!(
        firing = received.firing,
        resolved = received.resolved,
        firing_now = received.firing_now,
        "alertmanager notification"
    );
    Ok(Json(json!({ "received": received })))
}
