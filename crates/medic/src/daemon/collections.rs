//! The named collections' routes: `PUT`/`DELETE /v1/collections/{c}` (create, drop), `GET /v1/collections` (list),
//! and the documents of a collection (`/v1/collections/{c}/docs[/{id}]`), which answer as `/v1/docs` does for
//! `default`. Describing one collection and searching it are in [`super::api`].

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::api::{self, ApiState, DocOut, PutBody};
use super::error::{ApiError, Object};

/// `GET /v1/collections`: every collection (`default` first) with its settings, state, documents and indexes.
pub async fn list(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let app = s.app.clone();
    let v = tokio::task::spawn_blocking(move || {
        let all = app
            .store()
            .collections()?
            .into_iter()
            .map(|c| api::describe_collection(&app, &c.name))
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok::<_, ApiError>(json!({ "collections": all }))
    })
    .await??;
    Ok(Json(v))
}

/// `PUT /v1/collections/{c}` with the settings `{"dimension"?, "metric"?, "indexes"?, "fields"?}` (an empty
/// body: the defaults): 201 with the description when created, 200 when it exists with settings satisfying the
/// request, 409 when it exists with others (or is being dropped), 400 naming a bad setting or name.
pub async fn create(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Path(name) = path?;
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        super::error::parse_json_body(&body, None)?
    };
    let dim_max = s.app.store().config().limits.vector_dim_max;
    let settings = store::CollectionSettings::from_json(&v, dim_max)?;
    let app = s.app.clone();
    let (created, v) = tokio::task::spawn_blocking(move || {
        let created = app.create_collection(&name, settings)?;
        Ok::<_, ApiError>((created, api::describe_collection(&app, &name)?))
    })
    .await??;
    let status = match created {
        store::Created::New { .. } => StatusCode::CREATED,
        store::Created::Existed => StatusCode::OK,
    };
    Ok((status, Json(v)))
}

/// `DELETE /v1/collections/{c}`: drops it — its indexes detached, its documents and settings deleted through the
/// log, `idx/<c>/` removed; 200 `{"collection","dropped","documents_deleted"}`. `default` cannot be dropped (400);
/// an unknown collection is a 404.
pub async fn drop_collection(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = path?;
    let app = s.app.clone();
    let v = tokio::task::spawn_blocking(move || {
        let n = app.drop_collection(&name)?;
        Ok::<_, ApiError>(json!({ "collection": name, "dropped": true, "documents_deleted": n }))
    })
    .await??;
    Ok(Json(v))
}

fn coll_doc(
    s: &ApiState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Path((c, id)) = path?;
    let c = api::ready_collection(s, c)?;
    Ok((c, api::check_doc_id(id)?))
}

/// `PUT /v1/collections/{c}/docs/{id}`: as `PUT /v1/docs/{id}`, in `c`.
pub async fn put_doc(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<Object<PutBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let (c, id) = coll_doc(&s, path)?;
    let body = match body {
        Ok(Json(Object(b))) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::body_too_large(
                s.app.config().http.request_body_bytes_max,
            ));
        }
        Err(r) => return Err(r.into()),
    };
    api::put_in(s, c, id, body).await
}

/// `GET /v1/collections/{c}/docs/{id}`: as `GET /v1/docs/{id}`, in `c`.
pub async fn get_doc(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<([(&'static str, String); 1], Json<DocOut>), ApiError> {
    let (c, id) = coll_doc(&s, path)?;
    api::get_in(s, c, id).await
}

/// `DELETE /v1/collections/{c}/docs/{id}`: as `DELETE /v1/docs/{id}`, in `c`.
pub async fn delete_doc(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (c, id) = coll_doc(&s, path)?;
    api::delete_in(s, c, id).await
}

/// `POST /v1/collections/{c}/docs`: the NDJSON bulk ingest of `POST /v1/docs`, into `c`.
pub async fn bulk_docs(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let c = api::existing_collection(&s, path)?;
    api::bulk_in(s, c, body).await
}
