//! The HTTP API's handlers: documents, search, health, status, incidents, healing, metrics. Each handler validates
//! its input, runs blocking store and engine work on `spawn_blocking` (a put blocks on fsync), and answers JSON; every
//! failure goes through [`ApiError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::{ApiError, Object};
use super::metrics::{Metrics, Operation};
use crate::app::App;
use crate::incident_filter::{IncidentFilter, IncidentQuery};

/// The newest incidents looked at to count new incidents and repair attempts in the metrics.
const INCIDENTS_OBSERVED_MAX: usize = 1_000;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The wired application.
    pub app: Arc<App>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
}

impl ApiState {
    fn body_limit(&self) -> u64 {
        self.app.config().http.request_body_bytes_max
    }

    /// Maps a JSON body rejection, naming the body limit on 413.
    fn json<T>(&self, body: Result<Json<Object<T>>, JsonRejection>) -> Result<T, ApiError> {
        match body {
            Ok(Json(Object(v))) => Ok(v),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::body_too_large(self.body_limit()))
            }
            Err(r) => Err(r.into()),
        }
    }
}

/// Runs blocking work off the async runtime and records its duration.
async fn blocking<T: Send + 'static>(
    metrics: &Metrics,
    op: Operation,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(f).await?;
    metrics.observe(op, start.elapsed().as_secs_f64());
    out
}

fn doc_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path?;
    check_doc_id(id)
}

/// A document id from a path: not empty, not under `.medic/`.
pub(super) fn check_doc_id(id: String) -> Result<String, ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_request("document id is empty"));
    }
    if id.starts_with(store::RESERVED_ID_PREFIX) {
        return Err(ApiError::bad_request(format!(
            "document id {id:?}: ids starting with {:?} are reserved for medic's own probe",
            store::RESERVED_ID_PREFIX
        )));
    }
    Ok(id)
}

/// `PUT /v1/docs/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    text: String,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    meta: Option<Map<String, Value>>,
}

/// A document as the API shows it.
#[derive(Debug, Serialize)]
pub struct DocOut {
    id: String,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Map<String, Value>>,
}

/// A vector as JSON numbers, each in the shortest form that reads back as the same `f32` (`0.1`, not the `f64`
/// widening `0.10000000149011612` that `json!` would give).
pub fn vector_json(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|x| f32_json(*x)).collect())
}

fn f32_json(x: f32) -> Value {
    // `f32`'s Display is the shortest decimal that parses back to `x`; read as `f64` it prints the same digits.
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// `PUT /v1/docs/{id}`: 200 `{"id","lsn"}` once durable.
pub async fn put_doc(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<Object<PutBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = doc_id(path)?;
    let body = s.json(body)?;
    put_in(s, store::collection::DEFAULT.to_owned(), id, body).await
}

/// A put into the collection `c`.
pub(super) async fn put_in(
    s: ApiState,
    c: String,
    id: String,
    body: PutBody,
) -> Result<Json<Value>, ApiError> {
    if let Some(v) = &body.vector
        && let Some(i) = v.iter().position(|x| !x.is_finite())
    {
        return Err(ApiError::bad_request(format!(
            "vector[{i}] is not a finite number (out of f32 range)"
        )));
    }
    // Under memory pressure a large write is refused before it adds to the table held in memory.
    let bytes = body.text.len()
        + body.vector.as_ref().map_or(0, |v| 4 * v.len())
        + body
            .meta
            .as_ref()
            .map_or(0, |m| serde_json::to_string(m).map_or(0, |t| t.len()));
    s.app
        .memory()
        .admit_write(bytes as u64)
        .map_err(|p| ApiError::unavailable(p.to_string()))?;
    let doc = store::Document {
        text: body.text,
        vector: body.vector,
        meta: body.meta,
    };
    let store = s.app.store().clone();
    let id2 = id.clone();
    let lsn = blocking(&s.metrics, Operation::Put, move || {
        store.put_in(&c, &id2, doc).map_err(ApiError::from)
    })
    .await?;
    Ok(Json(json!({ "id": id, "lsn": lsn })))
}

/// `POST /v1/docs`: bulk ingest of an NDJSON body (see [`super::bulk`]). 200
/// `{"written","first_lsn","last_lsn","lines","duplicates","warnings"}` once every document is durable; 400 naming
/// the first bad line with nothing written; 413 over `http.bulk_body_bytes_max`; a store refusal mid-way says how
/// many documents were durable before it.
pub async fn bulk_docs(
    State(s): State<ApiState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    bulk_in(s, store::collection::DEFAULT.to_owned(), body).await
}

/// A bulk ingest into the collection `c`.
pub(super) async fn bulk_in(
    s: ApiState,
    c: String,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let http = &s.app.config().http;
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::body_over(
                "http.bulk_body_bytes_max",
                http.bulk_body_bytes_max,
            ));
        }
        Err(r) => return Err(ApiError::bad_request(r.body_text())),
    };
    // Under memory pressure a large load is refused before it adds to the table held in memory.
    s.app
        .memory()
        .admit_write(body.len() as u64)
        .map_err(|p| ApiError::unavailable(p.to_string()))?;
    let store = s.app.store().clone();
    let docs_max = http.bulk_docs_max;
    blocking(&s.metrics, Operation::Bulk, move || {
        let limits = store.config().limits.clone();
        let info = store
            .collection(&c)?
            .filter(|i| i.state == store::CollectionState::Ready)
            .ok_or_else(|| ApiError::not_found(format!("no collection {c:?}")))?;
        let mut parsed = super::bulk::parse(&body, &limits, &c, info.settings.dimension, docs_max)
            .map_err(|e| ApiError::bad_request(format!("{e}; nothing was written")))?;
        // The collection's declared fields, checked whole first like the rest: a bad line writes nothing.
        if let Some(l) = parsed.docs.iter().find_map(|l| {
            store::collection::check_fields(&c, &info.settings.fields, l.doc.meta.as_ref())
                .err()
                .map(|e| format!("line {}: document {:?}: {e}; nothing was written", l.line, l.id))
        }) {
            return Err(ApiError::bad_request(l));
        }
        // A collection's keys are longer than its ids by the prefix: batches are sized by the records written.
        let key_extra = store::collection::key(&c, "").len() as u64;
        for l in &mut parsed.docs {
            l.record_bytes += key_extra;
        }
        drop(body);
        let (lines, duplicates) = (parsed.lines, parsed.duplicates);
        let warnings = super::bulk::warnings(&parsed.ignored);
        for w in &warnings {
            tracing::warn!("bulk ingest: {w}");
        }
        let batches = super::bulk::batches(parsed.docs, store.config().commit_batch_bytes_max);
        match super::bulk::write(&store, &c, batches) {
            Ok(w) => Ok(Json(json!({
                "written": w.written,
                "first_lsn": w.first_lsn,
                "last_lsn": w.last_lsn,
                "lines": lines,
                "duplicates": duplicates,
                "warnings": warnings,
            }))),
            Err(refused) => {
                let (w, line, e) = *refused;
                let base = ApiError::from(e);
                let done = if w.written == 0 {
                    "nothing was written".to_string()
                } else {
                    format!(
                        "{} documents were durable before it (LSN {}..={}), nothing from line {line} on",
                        w.written, w.first_lsn, w.last_lsn
                    )
                };
                Err(ApiError::new(
                    base.status,
                    format!("the batch from line {line} was refused: {}; {done}", base.message),
                ))
            }
        }
    })
    .await
}

/// The response header naming the LSN of the version a `GET /v1/docs/{id}` answers.
pub const LSN_HEADER: &str = "medic-lsn";

/// `GET /v1/docs/{id}`: exactly what was put, or 404; the `Medic-Lsn` header names the LSN of the version answered
/// (the `lsn` its put returned), so a client whose write went unanswered can tell whether that write is the one
/// stored. The vector is serialized as `f32` (shortest form: `0.1` comes back as `0.1`, not widened to
/// `0.10000000149011612`); meta numbers keep every digit.
pub async fn get_doc(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<([(&'static str, String); 1], Json<DocOut>), ApiError> {
    let id = doc_id(path)?;
    get_in(s, store::collection::DEFAULT.to_owned(), id).await
}

/// A get from the collection `c`.
pub(super) async fn get_in(
    s: ApiState,
    c: String,
    id: String,
) -> Result<([(&'static str, String); 1], Json<DocOut>), ApiError> {
    let store = s.app.store().clone();
    let id2 = id.clone();
    let doc = blocking(&s.metrics, Operation::Get, move || {
        store.get_with_lsn_in(&c, &id2).map_err(ApiError::from)
    })
    .await?;
    match doc {
        Some((d, lsn)) => Ok((
            [(LSN_HEADER, lsn.to_string())],
            Json(DocOut {
                id,
                text: d.text,
                vector: d.vector,
                meta: d.meta,
            }),
        )),
        None => Err(ApiError::not_found(format!("no document with id {id:?}"))),
    }
}

/// `DELETE /v1/docs/{id}`: 200 `{"id","lsn"}` once durable, or 404.
pub async fn delete_doc(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = doc_id(path)?;
    delete_in(s, store::collection::DEFAULT.to_owned(), id).await
}

/// A delete from the collection `c`.
pub(super) async fn delete_in(s: ApiState, c: String, id: String) -> Result<Json<Value>, ApiError> {
    let store = s.app.store().clone();
    let id2 = id.clone();
    let lsn = blocking(&s.metrics, Operation::Delete, move || {
        store.delete_in(&c, &id2).map_err(ApiError::from)
    })
    .await?;
    match lsn {
        Some(lsn) => Ok(Json(json!({ "id": id, "lsn": lsn }))),
        None => Err(ApiError::not_found(format!("no document with id {id:?}"))),
    }
}

/// `POST /v1/search` (and `POST /v1/collections/default/search`): by text, vector or both (see [`crate::search`] and
/// `docs/contracts/search.md`). Records the latency per kind (`search_text`, `search_vector`, `search_hybrid`) into
/// the store's metrics (the engine's samples) and the daemon's (`medic_search_duration_seconds{kind}`).
pub async fn search(
    State(s): State<ApiState>,
    body: Result<Json<Object<crate::search::SearchBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    search_in(s, store::collection::DEFAULT.to_owned(), body).await
}

/// A search of the collection `c`.
async fn search_in(
    s: ApiState,
    c: String,
    body: Result<Json<Object<crate::search::SearchBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = s.json(body)?;
    let wait = crate::search::wait_of(&body, Duration::from_millis(crate::search::STRONG_WAIT_MS))?;
    let kind = crate::search::kind(&body);
    let app = s.app.clone();
    let metrics = s.metrics.clone();
    let v = blocking(&s.metrics, Operation::Search, move || {
        let t0 = Instant::now();
        let out = crate::search::run_in(&app, &c, body, wait);
        let took = t0.elapsed();
        // A request refused as bad input is not a search that failed.
        let ok = match &out {
            Ok(_) => true,
            Err(e) => e.status.is_client_error(),
        };
        if let Err(e) = app.store().metrics().record_us(
            match kind {
                "text" => "search_text",
                "hybrid" => "search_hybrid",
                _ => "search_vector",
            },
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            ok,
        ) {
            tracing::debug!("search latency not recorded: {e}");
        }
        metrics.observe_search(kind, took.as_secs_f64());
        out
    })
    .await?;
    Ok(Json(v))
}

/// The collection a `/v1/collections/{collection}` path names, if it exists and is ready; another name is a 404
/// naming it.
pub(super) fn existing_collection(
    s: &ApiState,
    path: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(c) = path?;
    ready_collection(s, c)
}

/// `c` if it is a ready collection, else a 404 naming it (a 400 for a name no collection can have).
pub(super) fn ready_collection(s: &ApiState, c: String) -> Result<String, ApiError> {
    // A name no collection can have is a 400 naming the rule, never advice to create it.
    store::collection::validate_name(&c)?;
    match s.app.store().collection(&c)? {
        Some(info) if info.state == store::CollectionState::Ready => Ok(c),
        Some(_) => Err(ApiError::not_found(format!(
            "the collection {c:?} is being dropped"
        ))),
        None => Err(ApiError::not_found(format!(
            "no collection {c:?}: create it with PUT /v1/collections/{c}"
        ))),
    }
}

/// `POST /v1/collections/{collection}/search`: `POST /v1/search` within that collection (its own indexes); an
/// unknown collection is a 404 naming it.
pub async fn collection_search(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<Object<crate::search::SearchBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let c = existing_collection(&s, path)?;
    search_in(s, c, body).await
}

/// `GET /v1/collections/{collection}`: the collection's settings, state and documents, and every derived index of
/// it — applied LSN, lag, state and its structure as last measured by the engine (an HNSW graph's reachable
/// fraction, orphans, tombstones, mean degree). An unknown collection is a 404.
pub async fn collection(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(c) = path?;
    let app = s.app.clone();
    let v = tokio::task::spawn_blocking(move || describe_collection(&app, &c)).await??;
    Ok(Json(v))
}

/// A collection as `GET /v1/collections[/{c}]` shows it.
pub fn describe_collection(app: &App, c: &str) -> Result<Value, ApiError> {
    let store = app.store();
    let info = store
        .collection(c)?
        .ok_or_else(|| ApiError::not_found(format!("no collection {c:?}")))?;
    let indexes: Vec<_> = store
        .derived()
        .status()
        .indexes
        .into_iter()
        .filter(|i| i.collection == c)
        .collect();
    Ok(json!({
        "collection": c,
        "settings": info.settings.to_json(),
        "state": info.state,
        "documents": info.documents,
        "indexes": indexes,
    }))
}

/// `GET /health`: 200 when serving, 503 otherwise; JSON with the state. Never waits on a running healing cycle.
///
/// Also states who answers, as `holder`: this process's pid and host, and the `started_us` of the data directory's
/// lock when the `LOCK` file names this process (`null` when it does not). A command that found this daemon through
/// a data directory (`<data>/medic.url`, `server.listen`) compares it with that directory's `LOCK`, so it never acts
/// on another daemon's store.
pub async fn health_shallow(State(s): State<ApiState>) -> Response {
    let app = s.app.clone();
    let out = tokio::task::spawn_blocking(move || {
        let h = app.shallow_health();
        (h, self_holder(app.store().dir()))
    })
    .await;
    match out {
        Ok((h, holder)) => {
            let status = if h.serving {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut body = json!(h);
            if let Some(o) = body.as_object_mut() {
                o.insert("holder".into(), holder);
            }
            (status, Json(body)).into_response()
        }
        Err(e) => ApiError::unavailable(format!("health probe failed: {e}")).into_response(),
    }
}

/// `{"pid", "host", "started_us"}` of this process as the holder of the data directory `dir`: `started_us` is the
/// `LOCK` file's when it names this process (pid and host), else `null`.
fn self_holder(dir: &std::path::Path) -> Value {
    let pid = std::process::id();
    let host = store::lock::host_name();
    let started_us = store::lock::read_holder(dir)
        .filter(|h| h.pid == pid && h.host == host)
        .map(|h| h.started_us);
    json!({ "pid": pid, "host": host, "started_us": started_us })
}

/// `?tier=` of `GET /v1/health`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierQuery {
    #[serde(default)]
    tier: Option<String>,
}

/// `GET /v1/health?tier=shallow|deep|full`: runs that tier's checks now.
pub async fn health_tier(
    State(s): State<ApiState>,
    q: Result<Query<TierQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let tier = match q.tier.as_deref().unwrap_or("deep") {
        "shallow" | "quick" => heal::Tier::Shallow,
        "deep" => heal::Tier::Deep,
        "full" | "comprehensive" => heal::Tier::Comprehensive,
        other => {
            return Err(ApiError::bad_request(format!(
                "tier = {other:?} is not one of shallow, deep, full"
            )));
        }
    };
    let app = s.app.clone();
    let report = blocking(&s.metrics, Operation::HealthTier, move || {
        app.run_tier(tier)
            .map_err(|e| ApiError::internal(format!("{e:#}")))
    })
    .await?;
    Ok(Json(report))
}

/// `GET /v1/status`.
pub async fn status(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let app = s.app.clone();
    let metrics = s.metrics.clone();
    let v = tokio::task::spawn_blocking(move || {
        let st = app
            .status()
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        // While a cycle runs, the status is answered from the last free moment and the metrics wait for the next.
        if let Some(snapshot) = app.snapshot_if_free() {
            metrics.set_snapshot(&snapshot);
        }
        Ok::<_, ApiError>(st)
    })
    .await??;
    Ok(Json(v))
}

/// `GET /v1/incidents[?limit=&since=&until=&severity=&kind=&status=&resource=]`: newest first; a bad filter value
/// is a 400 naming it (`crate::incident_filter`).
pub async fn incidents(
    State(s): State<ApiState>,
    q: Result<Query<IncidentQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let http = &s.app.config().http;
    let limit = http
        .check_incidents_limit(q.limit.unwrap_or(http.incidents_listed_max))
        .map_err(ApiError::bad_request)?;
    let filter = IncidentFilter::parse(&q, s.app.now()).map_err(ApiError::bad_request)?;
    let app = s.app.clone();
    let v = tokio::task::spawn_blocking(move || crate::incident_filter::list(&app, &filter, limit))
        .await??;
    Ok(Json(json!({ "incidents": v })))
}

fn incident_id(path: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let Path(raw) = path?;
    raw.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("incident id {raw:?} is not a number")))
}

/// `GET /v1/incidents/{id}`: the record, its timeline and the escalation report (Markdown and JSON).
pub async fn incident(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = incident_id(path)?;
    let app = s.app.clone();
    match tokio::task::spawn_blocking(move || app.incident_detail(id)).await?? {
        Some(v) => Ok(Json(v)),
        None => Err(ApiError::not_found(format!("no incident with id {id}"))),
    }
}

/// The body of `POST /v1/accept-loss`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptLossBody {
    confirm: bool,
}

/// `POST /v1/accept-loss` `{"confirm": true}`: an operator accepts acknowledged data lost beyond every redundancy
/// (listed in `GET /v1/status` under `store.lost`); the store keeps what survived and takes writes again.
pub async fn accept_loss(
    State(s): State<ApiState>,
    body: Result<Json<Object<AcceptLossBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = s.json(body).map_err(|mut e| {
        if e.status == StatusCode::BAD_REQUEST {
            e.message = format!("{}; the body is {{\"confirm\": true}}", e.message);
        }
        e
    })?;
    if !body.confirm {
        return Err(ApiError::bad_request(
            "confirm must be true: accepting drops the lost records (store.lost in /v1/status) for good",
        ));
    }
    let app = s.app.clone();
    let v = tokio::task::spawn_blocking(move || app.accept_loss())
        .await?
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    Ok(Json(v))
}

/// `?dry_run=` of `POST /v1/heal`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealQuery {
    #[serde(default)]
    dry_run: Option<bool>,
}

/// `POST /v1/heal?dry_run=true|false`: one healing cycle now.
pub async fn heal_now(
    State(s): State<ApiState>,
    q: Result<Query<HealQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let v = run_cycle(&s, q.dry_run).await?;
    Ok(Json(v))
}

/// Runs one cycle on a blocking thread and mirrors the outcome into the metrics. Shared by `POST /v1/heal` and the
/// scheduled loop.
pub async fn run_cycle(s: &ApiState, dry_run: Option<bool>) -> Result<Value, ApiError> {
    let app = s.app.clone();
    let metrics = s.metrics.clone();
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let r = app.run_cycle(dry_run);
        metrics.record_cycle(r.is_ok());
        if let Ok(summary) = &r {
            crate::diagnostics::on_cycle(&app, summary);
        }
        if let Ok(recent) = app.incidents(INCIDENTS_OBSERVED_MAX) {
            metrics.observe_incidents(recent.iter());
        }
        metrics.set_snapshot(&app.snapshot());
        r
    })
    .await?;
    s.metrics
        .observe(Operation::HealCycle, start.elapsed().as_secs_f64());
    out.map_err(|e| ApiError::internal(format!("healing cycle failed: {e:#}")))
}

/// `GET /metrics`: OpenMetrics text when the `Accept` header asks for it, else the Prometheus text format 0.0.4.
pub async fn metrics(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    let app = s.app.clone();
    let m = s.metrics.clone();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let openmetrics = super::metrics::wants_openmetrics(accept);
    let text = tokio::task::spawn_blocking(move || {
        let snapshot = app.try_snapshot();
        m.set_snapshot(&snapshot);
        // Incidents are counted after every cycle; a scrape catches up only when no cycle holds the engine.
        if snapshot.engine_known
            && let Ok(recent) = app.incidents(INCIDENTS_OBSERVED_MAX)
        {
            m.observe_incidents(recent.iter());
        }
        if openmetrics {
            m.encode()
        } else {
            m.encode_prometheus()
        }
    })
    .await;
    let content_type = if openmetrics {
        super::metrics::OPENMETRICS_CONTENT_TYPE
    } else {
        super::metrics::PROMETHEUS_TEXT_CONTENT_TYPE
    };
    match text {
        Ok(t) => ([(header::CONTENT_TYPE, content_type)], t).into_response(),
        Err(e) => ApiError::internal(format!("metrics failed: {e}")).into_response(),
    }
}
