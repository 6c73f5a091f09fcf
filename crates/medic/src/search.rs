//! Searching the collection `default`: the request of `POST /v1/search` ([`SearchBody`]) and its answer, by text
//! (the `text` derived index), by vector (the `hnsw` index by default, a collection's `ivf` index when it keeps one,
//! `"exact": true` from the `flat` index, a scan of the table when no vector index is attached) or both at once, fused
//! by reciprocal rank fusion ([`RRF_K`]).
//! The daemon's handler and the offline CLI run the same [`run`], so both answer the same shapes; the shapes are
//! documented in `docs/contracts/search.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use store::Store;
use store::derived::DerivedIndex as _;

use crate::app::App;
use crate::daemon::error::ApiError;

/// The constant `k` of reciprocal rank fusion: a hit at rank `r` (from 1) of one ranking adds `weight / (RRF_K + r)`.
pub const RRF_K: f64 = 60.0;
/// Hits each ranking contributes to a fusion at least (at most [`index_text::K_MAX`]).
pub const FUSION_WINDOW_MIN: usize = 100;
/// How long a `"consistency": "strong"` search waits for the indexes to reach the log before it is answered 503.
pub const STRONG_WAIT_MS: u64 = 2_000;
/// The longest wait a `"strong"` search may ask for (`timeout_ms`).
pub const STRONG_WAIT_MS_MAX: u64 = 10_000;
/// A fusion weight at most.
pub const WEIGHT_MAX: f64 = 1_000.0;
/// Documents read from the table at a time by a text search answered from a scan.
const SCAN_PAGE_DOCS: usize = 1_024;
/// Documents a text search answered from a scan (no usable text index) reads at most, unless the request says
/// `scan_docs_max`: about 1–2 s of scanning on a loaded 2-core machine (BENCHMARKS.md, full-text section). A larger
/// collection is answered from its first documents in id order, flagged `"partial": true`, or refused 503 when the
/// request says `"allow_partial": false`.
pub const TEXT_SCAN_DOCS_MAX: u64 = 100_000;
/// The largest `scan_docs_max` a request may ask for.
pub const TEXT_SCAN_DOCS_MAX_MAX: u64 = 10_000_000;

/// `POST /v1/search` body: `text`, `vector` or both, and `k`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// A full-text query (index-text's query language).
    #[serde(default)]
    pub text: Option<String>,
    /// A query vector (cosine).
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// Hits to return.
    pub k: u64,
    /// Hits to skip first.
    #[serde(default)]
    pub offset: Option<u64>,
    /// A filter over meta fields (index-text's filter shape), for every kind of search.
    #[serde(default)]
    pub filter: Option<Value>,
    /// `["text", "meta"]`: stored fields returned with each hit.
    #[serde(default)]
    pub include: Option<Value>,
    /// `true` or `{"chars", "pre", "post"}`: snippets of the text with the matched terms marked (text searches).
    #[serde(default)]
    pub highlight: Option<Value>,
    /// `"strong"`: answered once the indexes have applied the log as of the request (at most
    /// [`STRONG_WAIT_MS`]); `"eventual"` (the default): what the indexes have applied.
    #[serde(default)]
    pub consistency: Option<String>,
    /// How long a `"strong"` search may wait for the indexes (1..=[`STRONG_WAIT_MS_MAX`] ms; default
    /// [`STRONG_WAIT_MS`]) before it is answered an error naming the lag.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Candidates the HNSW search explores (default: the index's `ef_search`).
    #[serde(default)]
    pub ef: Option<u64>,
    /// Lists the IVF search scans (default: the collection's `ivf.probes`).
    #[serde(default)]
    pub probes: Option<u64>,
    /// `true`: the exact nearest vectors (the `flat` index), not an approximation.
    #[serde(default)]
    pub exact: Option<bool>,
    /// Fusion weights of a search by both text and vector.
    #[serde(default)]
    pub hybrid: Option<HybridBody>,
    /// Documents a text search answered from a scan of the table (while no usable text index exists) reads at
    /// most (1..=[`TEXT_SCAN_DOCS_MAX_MAX`]; default [`TEXT_SCAN_DOCS_MAX`]).
    #[serde(default)]
    pub scan_docs_max: Option<u64>,
    /// `false`: a text search whose scan would have to stop at `scan_docs_max` is answered 503 naming the limit
    /// instead of a partial answer (default `true`: partial, flagged `"partial": true`).
    #[serde(default)]
    pub allow_partial: Option<bool>,
}

/// Why a text answer came from a scan, and whether it covers only part of the table.
#[derive(Clone, Debug)]
struct Degraded {
    /// The reason, for `"reason"`.
    why: String,
    /// `Some(n)`: the scan stopped at `scan_docs_max` after `n` documents (`"partial": true`, `"scanned": n`).
    partial: Option<u64>,
}

impl Degraded {
    /// Adds `"degraded": true`, the reason and, for a cut scan, `"partial": true` and `"scanned"`.
    fn mark(&self, m: &mut Map<String, Value>) {
        m.insert("degraded".into(), json!(true));
        m.insert("reason".into(), json!(self.why));
        if let Some(n) = self.partial {
            m.insert("partial".into(), json!(true));
            m.insert("scanned".into(), json!(n));
        }
    }
}

/// How far a text search answered from a scan may read the table.
#[derive(Clone, Copy, Debug)]
struct ScanBound {
    /// Documents read at most.
    docs_max: u64,
    /// A scan cut at `docs_max` answers partially (`true`) or is refused 503 (`false`).
    allow_partial: bool,
}

impl ScanBound {
    fn of(body: &SearchBody) -> Result<ScanBound, ApiError> {
        let docs_max = match body.scan_docs_max {
            None => TEXT_SCAN_DOCS_MAX,
            Some(n @ 1..=TEXT_SCAN_DOCS_MAX_MAX) => n,
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "scan_docs_max: {n} is outside 1..={TEXT_SCAN_DOCS_MAX_MAX}"
                )));
            }
        };
        if body.text.is_none() && (body.scan_docs_max.is_some() || body.allow_partial.is_some()) {
            return Err(ApiError::bad_request(
                "scan_docs_max, allow_partial: they bound a \"text\" search's scan; give \"text\" too",
            ));
        }
        Ok(ScanBound {
            docs_max,
            allow_partial: body.allow_partial.unwrap_or(true),
        })
    }
}

/// `hybrid` of a search by both text and vector.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridBody {
    /// The weight of the text ranking (default 1).
    #[serde(default)]
    pub text_weight: Option<f64>,
    /// The weight of the vector ranking (default 1).
    #[serde(default)]
    pub vector_weight: Option<f64>,
}

/// What a search waits for and how long.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    /// Wait for the log as of the request.
    pub strong: bool,
    /// At most this long.
    pub timeout: Duration,
}

/// One vector hit: id and cosine similarity.
#[derive(Clone, Debug)]
struct VectorHit {
    id: String,
    score: f64,
}

/// Which vector index answered.
#[derive(Clone, Debug, PartialEq, Eq)]
enum VectorSource {
    Hnsw,
    Ivf,
    Flat,
    Scan,
    /// The IVF index, not trained yet, scanned every vector: why.
    IvfScan(String),
}

impl VectorSource {
    fn name(&self) -> &'static str {
        match self {
            VectorSource::Hnsw => "hnsw",
            VectorSource::Ivf => "ivf",
            VectorSource::Flat => "flat",
            VectorSource::Scan | VectorSource::IvfScan(_) => "scan",
        }
    }

    /// Whether the hits are the exact nearest.
    fn exact(&self) -> bool {
        !matches!(self, VectorSource::Hnsw | VectorSource::Ivf)
    }

    /// Names the source in an answer: `index`, `exact` and, for an untrained IVF index, `reason`.
    fn mark(&self, m: &mut Map<String, Value>, index: String) {
        m.insert("index".into(), json!(index));
        m.insert("exact".into(), json!(self.exact()));
        if let VectorSource::IvfScan(why) = self {
            m.insert("reason".into(), json!(format!("ivf index: {why}")));
        }
    }
}

/// The kind of a search, for the latency metrics (`search_text`, `search_vector`, `search_hybrid`).
pub fn kind(body: &SearchBody) -> &'static str {
    match (&body.text, &body.vector) {
        (Some(_), Some(_)) => "hybrid",
        (Some(_), None) => "text",
        _ => "vector",
    }
}

/// The parsed consistency of a request; `timeout` is how long a strong search may wait.
pub fn wait_of(body: &SearchBody, timeout: Duration) -> Result<Wait, ApiError> {
    let strong = match body.consistency.as_deref() {
        None | Some("eventual") => false,
        Some("strong") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "consistency: {other:?} is not one of \"strong\", \"eventual\""
            )));
        }
    };
    let timeout = match body.timeout_ms {
        None => timeout,
        Some(_) if !strong => {
            return Err(ApiError::bad_request(
                "timeout_ms: it bounds a \"consistency\": \"strong\" search's wait; give that too",
            ));
        }
        Some(ms @ 1..=STRONG_WAIT_MS_MAX) => Duration::from_millis(ms),
        Some(ms) => {
            return Err(ApiError::bad_request(format!(
                "timeout_ms: {ms} is outside 1..={STRONG_WAIT_MS_MAX}"
            )));
        }
    };
    Ok(Wait { strong, timeout })
}

/// Answers a search (blocking). `k` is checked against `http.search_k_max` by the caller's configuration here.
pub fn run(app: &App, body: SearchBody, wait: Wait) -> Result<Value, ApiError> {
    run_in(app, store::collection::DEFAULT, body, wait)
}

/// The indexes a search of one collection is served from.
struct Scope<'a> {
    app: &'a App,
    collection: &'a str,
    /// `None` for `default`, whose indexes the app holds itself.
    named: Option<crate::app::CollectionIndexes>,
    /// How far a text search answered from a scan may read.
    scan: ScanBound,
}

impl Scope<'_> {
    fn flat(&self) -> Option<Arc<index_vector::FlatIndex>> {
        match &self.named {
            None => self.app.flat_index().cloned(),
            Some(n) => n.flat.clone(),
        }
    }

    fn hnsw(&self) -> Option<Arc<index_vector::HnswIndex>> {
        match &self.named {
            None => self.app.hnsw_index().cloned(),
            Some(n) => n.hnsw.clone(),
        }
    }

    fn ivf(&self) -> Option<Arc<index_vector::IvfIndex>> {
        self.named.as_ref().and_then(|n| n.ivf.clone())
    }

    fn text_attached(&self) -> Option<Arc<index_text::TextIndex>> {
        match &self.named {
            None => self.app.text_index_attached().cloned(),
            Some(n) => n.text.clone(),
        }
    }

    /// The text index (for `default`, attached now if it is not yet); the inner `Err` says why there is none to
    /// search (answered by a scan), the outer one is the request's fault.
    fn text(&self) -> Result<Result<Arc<index_text::TextIndex>, String>, ApiError> {
        match &self.named {
            None => Ok(self
                .app
                .text_index()
                .map_err(|e| format!("the text index cannot be opened: {e:#}"))),
            Some(n) => match n.text.clone() {
                Some(t) => Ok(Ok(t)),
                // Kept but not attached (its attach failed; the `derived.attached` check re-attaches it): a scan.
                None if self
                    .app
                    .store()
                    .collection(self.collection)?
                    .is_some_and(|c| c.settings.keeps(store::collection::IndexKind::Text)) =>
                {
                    Ok(Err(format!(
                        "the text index of {:?} is not attached",
                        self.collection
                    )))
                }
                None => Err(ApiError::bad_request(format!(
                    "text: the collection {:?} keeps no text index (its settings' \"indexes\")",
                    self.collection
                ))),
            },
        }
    }

    /// The collection's metric (`default`'s is cosine).
    fn metric(&self) -> store::collection::Metric {
        self.named
            .as_ref()
            .map_or(store::collection::Metric::Cosine, |n| n.metric)
    }

    /// Scores by the collection's metric: cosine similarity for cosine, the negated distance otherwise.
    fn score(&self, distance: f32) -> f64 {
        match self.named.as_ref().map(|n| n.metric) {
            None | Some(store::collection::Metric::Cosine) => {
                f64::from(1.0 - distance).clamp(-1.0, 1.0)
            }
            Some(_) => -f64::from(distance),
        }
    }
}

/// [`run`] within the collection `collection` (its own indexes; `default`'s are the app's).
pub fn run_in(
    app: &App,
    collection: &str,
    body: SearchBody,
    wait: Wait,
) -> Result<Value, ApiError> {
    let named = if collection == store::collection::DEFAULT {
        None
    } else {
        match app.collection_indexes(collection) {
            Some(ix) => Some(ix),
            // Not attached (an offline command): vectors by a scan of the collection, text refused.
            None => {
                let info = app
                    .store()
                    .collection(collection)?
                    .ok_or_else(|| ApiError::not_found(format!("no collection {collection:?}")))?;
                Some(crate::app::CollectionIndexes {
                    metric: info.settings.metric,
                    ..crate::app::CollectionIndexes::default()
                })
            }
        }
    };
    let scope = Scope {
        app,
        collection,
        named,
        scan: ScanBound::of(&body)?,
    };
    let t0 = Instant::now();
    let k = app
        .config()
        .http
        .check_search_k(body.k)
        .map_err(ApiError::bad_request)?;
    let offset = usize::try_from(body.offset.unwrap_or(0)).unwrap_or(usize::MAX);
    if offset > index_text::OFFSET_MAX {
        return Err(ApiError::bad_request(format!(
            "offset: {offset} is more than the limit of {}",
            index_text::OFFSET_MAX
        )));
    }
    let include = parse_include(body.include.as_ref())?;
    let highlight = parse_highlight(body.highlight.as_ref())?;
    if let Some(v) = &body.vector {
        check_vector(v)?;
    }
    let ef = body
        .ef
        .map(|ef| {
            usize::try_from(ef)
                .ok()
                .filter(|ef| (1..=index_vector::EF_MAX).contains(ef))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "ef: {ef} is outside 1..={}",
                        index_vector::EF_MAX
                    ))
                })
        })
        .transpose()?;
    let probes = body
        .probes
        .map(|p| {
            usize::try_from(p)
                .ok()
                .filter(|p| (1..=index_vector::LISTS_MAX).contains(p))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "probes: {p} is outside 1..={}",
                        index_vector::LISTS_MAX
                    ))
                })
        })
        .transpose()?;
    let exact = body.exact.unwrap_or(false);
    if body.text.is_none() && highlight.is_some() {
        return Err(ApiError::bad_request(
            "highlight: snippets need a \"text\" query",
        ));
    }
    if body.vector.is_none() && (body.ef.is_some() || body.exact.is_some() || probes.is_some()) {
        return Err(ApiError::bad_request(
            "ef, probes, exact: they apply to a \"vector\" search only",
        ));
    }
    if probes.is_some() && scope.ivf().is_none() {
        return Err(ApiError::bad_request(format!(
            "probes: the collection {collection:?} keeps no ivf index (its settings' \"index\")"
        )));
    }
    let vq = VectorQuery { ef, probes, exact };
    if body.hybrid.is_some() && (body.text.is_none() || body.vector.is_none()) {
        return Err(ApiError::bad_request(
            "hybrid: give both \"text\" and \"vector\" to fuse",
        ));
    }
    let settings = index_text::TextSettings::default();
    let attached_text = scope.text_attached();
    let filter = body
        .filter
        .as_ref()
        .map(|f| {
            index_text::Filter::parse(
                f,
                attached_text.as_deref().map_or(&settings, |t| t.settings()),
            )
        })
        .transpose()
        .map_err(query_error)?;
    let store = app.store();
    let mut answer = match (body.text, body.vector) {
        (None, None) => {
            return Err(ApiError::bad_request(
                "give \"text\", \"vector\" or both to search by",
            ));
        }
        (Some(text), None) => {
            let req = index_text::SearchRequest {
                query: text,
                k,
                offset,
                filter: body.filter.clone(),
                include,
                highlight,
            };
            let (ans, degraded) = text_search(&scope, &req, wait)?;
            let mut v =
                serde_json::to_value(&ans).map_err(|e| ApiError::internal(e.to_string()))?;
            if let Some(m) = v.as_object_mut() {
                mark_source(m, degraded);
            }
            v
        }
        (None, Some(vector)) => {
            wait_for(store, collection, None, wait)?;
            let (hits, source) = vector_hits(
                &scope,
                &vector,
                k.saturating_add(offset),
                vq,
                filter.as_ref(),
            )?;
            let hits: Vec<Value> = hits
                .into_iter()
                .skip(offset)
                .map(|h| {
                    let mut o = Map::new();
                    o.insert("id".into(), json!(&h.id));
                    o.insert("score".into(), json!(h.score));
                    add_stored(store, collection, &mut o, &h.id, include);
                    Value::Object(o)
                })
                .collect();
            let mut m = Map::new();
            m.insert("hits".into(), Value::Array(hits));
            source.mark(&mut m, source.name().into());
            Value::Object(m)
        }
        (Some(text), Some(vector)) => {
            let (wt, wv) = weights(body.hybrid.as_ref())?;
            let window = k
                .saturating_add(offset)
                .clamp(FUSION_WINDOW_MIN, index_text::K_MAX);
            if k.saturating_add(offset) > index_text::K_MAX {
                return Err(ApiError::bad_request(format!(
                    "k + offset: {} is more than the {} hits a fusion ranks (index_text::K_MAX)",
                    k.saturating_add(offset),
                    index_text::K_MAX
                )));
            }
            let req = index_text::SearchRequest {
                query: text,
                k: window,
                offset: 0,
                filter: body.filter.clone(),
                include,
                highlight,
            };
            let (text_ans, degraded) = text_search(&scope, &req, wait)?;
            // The text side waited for its own index (or read the table); the vector side waits for its own.
            wait_for(store, collection, None, wait)?;
            let (vhits, source) = vector_hits(&scope, &vector, window, vq, filter.as_ref())?;
            let fused = fuse(&text_ans.hits, &vhits, wt, wv);
            let hits: Vec<Value> = fused
                .into_iter()
                .skip(offset)
                .take(k)
                .map(|f| {
                    let mut o = Map::new();
                    o.insert("id".into(), json!(&f.id));
                    o.insert("score".into(), json!(f.score));
                    o.insert("text_rank".into(), json!(f.text.map(|(r, _)| r)));
                    o.insert("text_score".into(), json!(f.text.map(|(_, s)| s)));
                    o.insert("vector_rank".into(), json!(f.vector.map(|(r, _)| r)));
                    o.insert("vector_score".into(), json!(f.vector.map(|(_, s)| s)));
                    match f.text.map(|(r, _)| &text_ans.hits[r - 1]) {
                        Some(th) => {
                            if let Some(t) = &th.text {
                                o.insert("text".into(), json!(t));
                            }
                            if let Some(m) = &th.meta {
                                o.insert("meta".into(), Value::Object(m.clone()));
                            }
                            if let Some(h) = &th.highlights {
                                o.insert("highlights".into(), json!(h));
                            }
                        }
                        None => add_stored(store, collection, &mut o, &f.id, include),
                    }
                    Value::Object(o)
                })
                .collect();
            let mut v = json!({
                "hits": hits,
                "fusion": "rrf",
                "rrf_k": RRF_K,
                "weights": {"text": wt, "vector": wv},
                "window": window,
                "total": text_ans.total,
                "lsn": text_ans.lsn,
            });
            if let Some(m) = v.as_object_mut() {
                let text_source = if degraded.is_some() { "scan" } else { "text" };
                source.mark(m, format!("{text_source}+{}", source.name()));
                if let Some(d) = degraded {
                    d.mark(m);
                }
            }
            v
        }
    };
    withhold_stale(store, collection, &mut answer);
    if let Some(m) = answer.as_object_mut() {
        m.insert("took_ms".into(), json!(t0.elapsed().as_secs_f64() * 1e3));
    }
    Ok(answer)
}

/// While the store is degraded, a hit on a document a lost record may have changed is never answered (an index
/// built before the loss still holds it, but nothing says which version is the truth): such hits are removed and
/// named in `"withheld"` (present only while degraded: `store.lost` in `/v1/status` says what was lost), so the
/// answer may hold fewer than `k` hits and says why.
fn withhold_stale(store: &store::Store, collection: &str, answer: &mut Value) {
    if !store.degraded() {
        return;
    }
    let Some(hits) = answer.get_mut("hits").and_then(Value::as_array_mut) else {
        return;
    };
    let mut withheld = Vec::new();
    hits.retain(|h| {
        let id = h.get("id").and_then(Value::as_str).unwrap_or_default();
        let stale = store.may_be_stale_in(collection, id);
        if stale {
            withheld.push(json!(id));
        }
        !stale
    });
    if let Some(m) = answer.as_object_mut() {
        m.insert("withheld".into(), Value::Array(withheld));
    }
}

/// A query error: the request's fault is a 400 naming what and where (the query's column); the index's is a 503.
fn query_error(e: index_text::QueryError) -> ApiError {
    if e.is_user_error() {
        ApiError::bad_request(e.to_string())
    } else {
        ApiError::unavailable(e.to_string())
    }
}

/// A scan's error: the query's fault is a 400, the store's its own status.
fn scan_error(e: index_vector::scan::ScanError) -> ApiError {
    match e {
        index_vector::scan::ScanError::Store(e) => e.into(),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// A text search: from the text index while it is usable, otherwise from a scan of the table (never wrong, never
/// a 5xx: the answer is the same as a rebuilt index's). The second value says why the answer is degraded (a scan).
fn text_search(
    scope: &Scope<'_>,
    req: &index_text::SearchRequest,
    wait: Wait,
) -> Result<(index_text::SearchAnswer, Option<Degraded>), ApiError> {
    let store = scope.app.store();
    let index = match scope.text()? {
        Ok(index) => index,
        Err(why) => {
            return scan_text(scope, None, req, why);
        }
    };
    match text_unusable(store, &index) {
        None => {}
        // Behind the log (just attached, catching up): a strong search waits for it like for any lag.
        Some((why, true)) if !wait.strong => return scan_text(scope, Some(&index), req, why),
        Some((_, true)) => {}
        // Files gone, or damaged and being rebuilt: waiting would not help.
        Some((why, false)) => return scan_text(scope, Some(&index), req, why),
    }
    let waited = wait_for(store, scope.collection, Some(index.as_ref()), wait);
    // Still (or now) unusable after the wait: the scan reads the table as of now, which a strong search accepts.
    if let Some((why, _)) = text_unusable(store, &index) {
        return scan_text(scope, Some(&index), req, why);
    }
    waited?;
    match index.search(req) {
        Ok(ans) => {
            index.drop_scan();
            Ok((ans, None))
        }
        Err(e) if e.is_user_error() => Err(query_error(e)),
        Err(e) => scan_text(scope, Some(&index), req, e.to_string()),
    }
}

/// Why the text index cannot answer now (`None`: it can), and whether it is only behind (`true`: a wait may see it
/// catch up): its files are gone, or the derived driver has it behind the log (just attached, opened empty after a
/// damaged generation was quarantined, catching up) or damaged (being rebuilt). An index that is current answers
/// everything acknowledged before its last commit.
fn text_unusable(store: &Store, index: &index_text::TextIndex) -> Option<(String, bool)> {
    let meta = index.generation_dir().join("meta.json");
    if !meta.is_file() {
        return Some((
            format!(
                "the text index's {} is gone (it is being rebuilt)",
                meta.strip_prefix(store.dir()).unwrap_or(&meta).display()
            ),
            false,
        ));
    }
    let collection = index.collection();
    let status = store.derived().status();
    let Some(st) = status
        .indexes
        .iter()
        .find(|i| i.collection == collection && i.name == index_text::NAME)
    else {
        return Some((
            format!("the text index of {collection:?} is not attached"),
            false,
        ));
    };
    let behind = st.state == store::derived::IndexState::Behind;
    match st.state {
        store::derived::IndexState::Current => None,
        ref other => Some((
            format!(
                "the text index of {collection:?} is {} at LSN {} of {}{}",
                serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                st.applied_lsn,
                st.log_lsn,
                st.last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            behind,
        )),
    }
}

/// A text search answered from a scan of the collection's documents (read in pages; not at all when the index's
/// previous scan was at the same LSN), as of the log's LSN when it began; `why` is the reason given with the
/// degraded answer. The scan reads at most the scope's `scan_docs_max` documents: beyond, the answer covers the
/// first ones in id order and the reason says so (the caller flags it `"partial"`), or, when the request does not
/// allow a partial answer, a 503 names the limit before anything is read.
fn scan_text(
    scope: &Scope<'_>,
    index: Option<&index_text::TextIndex>,
    req: &index_text::SearchRequest,
    why: String,
) -> Result<(index_text::SearchAnswer, Option<Degraded>), ApiError> {
    let store = scope.app.store();
    let lsn = store.stats().last_lsn;
    let bound = scope.scan;
    let n_docs = store.count_in(scope.collection) as u64;
    if n_docs > bound.docs_max && !bound.allow_partial {
        return Err(ApiError::unavailable(format!(
            "{why}; a scan of the collection {:?} would read {n_docs} documents, more than scan_docs_max = {} \
             (default {TEXT_SCAN_DOCS_MAX}): retry once the index is rebuilt, raise scan_docs_max, or allow a \
             partial answer (\"allow_partial\": true)",
            scope.collection, bound.docs_max
        )));
    }
    let mut pages = Pages {
        store,
        collection: scope.collection,
        after: None,
        page: Vec::new().into_iter(),
        done: false,
        failed: None,
    };
    let docs_max = usize::try_from(bound.docs_max).unwrap_or(usize::MAX);
    // The index's own scan reuses the previous scan's documents at the same LSN (a rebuild takes a while).
    let ans = match index {
        Some(index) => index.scan_bounded(req, &mut pages, lsn, docs_max),
        None => index_text::scan_bounded(
            &index_text::TextSettings::default(),
            req,
            &mut pages,
            lsn,
            docs_max,
        ),
    };
    if let Some(e) = pages.failed {
        return Err(e.into());
    }
    let (ans, scanned) = ans.map_err(query_error)?;
    let why = if scanned.truncated {
        format!(
            "{why}; partial: the scan read the first {} documents (in id order) of {n_docs}, the limit \
             scan_docs_max = {}",
            scanned.docs, bound.docs_max
        )
    } else {
        why
    };
    Ok((
        ans,
        Some(Degraded {
            why,
            partial: scanned.truncated.then_some(scanned.docs),
        }),
    ))
}

/// Every document of a collection, read from the table a page at a time; the first failure is kept in `failed`.
struct Pages<'a> {
    store: &'a Store,
    collection: &'a str,
    after: Option<String>,
    page: std::vec::IntoIter<(String, store::Document)>,
    done: bool,
    failed: Option<store::StoreError>,
}

impl Iterator for Pages<'_> {
    type Item = (String, store::Document);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(d) = self.page.next() {
                return Some(d);
            }
            if self.done {
                return None;
            }
            match self
                .store
                .scan_in(self.collection, self.after.as_deref(), SCAN_PAGE_DOCS)
            {
                Ok(page) => {
                    self.done = page.len() < SCAN_PAGE_DOCS;
                    self.after = page.last().map(|(id, _)| id.clone());
                    if self.after.is_none() {
                        self.done = true;
                    }
                    self.page = page.into_iter();
                }
                Err(e) => {
                    self.failed = Some(e);
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

/// Names the text answer's source: `"index": "text"`, or `"scan"` with `"degraded": true`, the reason and, for a
/// scan cut at `scan_docs_max`, `"partial": true` with the documents `"scanned"`.
fn mark_source(m: &mut Map<String, Value>, degraded: Option<Degraded>) {
    match degraded {
        None => {
            m.insert("index".into(), json!("text"));
        }
        Some(d) => {
            m.insert("index".into(), json!("scan"));
            d.mark(m);
        }
    }
}

fn check_vector(v: &[f32]) -> Result<(), ApiError> {
    if v.is_empty() {
        return Err(ApiError::bad_request("vector is empty"));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(ApiError::bad_request(format!(
            "vector[{i}] is not a finite number (out of f32 range)"
        )));
    }
    if v.iter().all(|x| *x == 0.0) {
        return Err(ApiError::bad_request(
            "vector has zero length: cosine similarity is undefined",
        ));
    }
    Ok(())
}

fn parse_include(v: Option<&Value>) -> Result<index_text::Include, ApiError> {
    let mut inc = index_text::Include::default();
    let Some(v) = v else { return Ok(inc) };
    let Some(items) = v.as_array() else {
        return Err(ApiError::bad_request(
            "include: expected an array of \"text\", \"meta\"",
        ));
    };
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some("text") => inc.text = true,
            Some("meta") => inc.meta = true,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "include[{i}]: {item} is not one of \"text\", \"meta\""
                )));
            }
        }
    }
    Ok(inc)
}

fn parse_highlight(v: Option<&Value>) -> Result<Option<index_text::HighlightOptions>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct H {
        #[serde(default)]
        chars: Option<usize>,
        #[serde(default)]
        pre: Option<String>,
        #[serde(default)]
        post: Option<String>,
    }
    match v {
        None | Some(Value::Bool(false)) | Some(Value::Null) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(index_text::HighlightOptions::default())),
        Some(o @ Value::Object(_)) => {
            let h: H = serde_json::from_value(o.clone())
                .map_err(|e| ApiError::bad_request(format!("highlight: {e}")))?;
            let d = index_text::HighlightOptions::default();
            Ok(Some(index_text::HighlightOptions {
                chars: h.chars.unwrap_or(d.chars),
                pre: h.pre.unwrap_or(d.pre),
                post: h.post.unwrap_or(d.post),
            }))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "highlight: {other} is not true, false or {{\"chars\", \"pre\", \"post\"}}"
        ))),
    }
}

fn weights(h: Option<&HybridBody>) -> Result<(f64, f64), ApiError> {
    let check = |name: &str, w: Option<f64>| -> Result<f64, ApiError> {
        let w = w.unwrap_or(1.0);
        if !(w.is_finite() && (0.0..=WEIGHT_MAX).contains(&w)) {
            return Err(ApiError::bad_request(format!(
                "hybrid.{name}: {w} is outside 0..={WEIGHT_MAX}"
            )));
        }
        Ok(w)
    };
    let wt = check("text_weight", h.and_then(|h| h.text_weight))?;
    let wv = check("vector_weight", h.and_then(|h| h.vector_weight))?;
    if wt == 0.0 && wv == 0.0 {
        return Err(ApiError::bad_request(
            "hybrid: text_weight and vector_weight are both 0: nothing to rank by",
        ));
    }
    Ok((wt, wv))
}

/// `strong`: waits until the indexes that answer the search applied the log as of now: the text index (when given)
/// and made what it applied visible to searches (its next commit, at most 250 ms later), else the vector indexes
/// of `collection`. An index of another kind or collection, being rebuilt, does not hold the search up.
fn wait_for(
    store: &Store,
    collection: &str,
    text: Option<&index_text::TextIndex>,
    wait: Wait,
) -> Result<(), ApiError> {
    if !wait.strong {
        return Ok(());
    }
    let t0 = Instant::now();
    let lsn = store.stats().last_lsn;
    let ms = wait.timeout.as_millis();
    let answers =
        |c: &str, name: &str| c == collection && (name == index_text::NAME) == text.is_some();
    store
        .derived()
        .wait_applied_by(lsn, wait.timeout, answers)
        .map_err(|e| {
            ApiError::unavailable(format!(
                "consistency \"strong\": the indexes did not reach the log within {ms} ms: {e}; retry, or \
                 search with \"consistency\": \"eventual\""
            ))
        })?;
    if let Some(t) = text {
        // The highest LSN it ever applied: a failed persist drops the unpersisted changes (its applied LSN goes
        // back to the visible one) until the driver applies them again from the log.
        let want = t.applied_high();
        while t.visible_lsn() < want {
            let state = store.derived().state(t.collection(), index_text::NAME);
            if state != Some(store::derived::IndexState::Current) {
                // Behind (a persist failed) or damaged: the caller answers from the table.
                return Ok(());
            }
            if t0.elapsed() >= wait.timeout {
                let visible = t.visible_lsn();
                return Err(ApiError::unavailable(format!(
                    "consistency \"strong\": index {}/{} made LSN {visible} visible, {} record(s) behind LSN \
                     {want}, within {ms} ms; retry, or search with \"consistency\": \"eventual\"",
                    t.collection(),
                    index_text::NAME,
                    want.saturating_sub(visible),
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// How a vector search asked to be run.
#[derive(Clone, Copy, Debug)]
struct VectorQuery {
    /// HNSW's candidates.
    ef: Option<usize>,
    /// IVF's lists scanned.
    probes: Option<usize>,
    /// The exact nearest.
    exact: bool,
}

/// The `k` nearest documents to `query` (cosine similarity, highest first) and which index answered: exact from
/// `flat` (or the approximate index's own exact scan under a filter), else the collection's IVF index when it keeps
/// one, else HNSW, else a scan of the table.
fn vector_hits(
    scope: &Scope<'_>,
    query: &[f32],
    k: usize,
    vq: VectorQuery,
    filter: Option<&index_text::Filter>,
) -> Result<(Vec<VectorHit>, VectorSource), ApiError> {
    let VectorQuery { ef, probes, exact } = vq;
    let store = scope.app.store();
    let failed = std::cell::RefCell::new(None::<store::StoreError>);
    let accept = |id: &str| -> bool {
        let Some(f) = filter else { return true };
        match store.get_in(scope.collection, id) {
            Ok(Some(d)) => f.matches(d.meta.as_ref()),
            Ok(None) => false,
            Err(e) => {
                failed.borrow_mut().get_or_insert(e);
                false
            }
        }
    };
    let pred: Option<&dyn Fn(&str) -> bool> = filter.map(|_| &accept as &dyn Fn(&str) -> bool);
    let (hits, source) = match (scope.hnsw(), scope.ivf(), scope.flat()) {
        (_, _, Some(flat)) if exact && filter.is_none() => (
            flat.search(query, k).map_err(vector_error)?,
            VectorSource::Flat,
        ),
        (_, Some(ivf), _) if exact => (
            ivf.exact(query, k, pred).map_err(vector_error)?,
            VectorSource::Flat,
        ),
        (Some(hnsw), _, _) if exact => (
            hnsw.exact(query, k, pred).map_err(vector_error)?,
            VectorSource::Flat,
        ),
        (_, Some(ivf), _) => {
            let ans = ivf.search(query, k, probes, pred).map_err(vector_error)?;
            let source = match ans.untrained {
                Some(why) => VectorSource::IvfScan(why),
                None => VectorSource::Ivf,
            };
            (ans.hits, source)
        }
        (Some(hnsw), _, _) => (
            hnsw.search(query, k, ef, pred).map_err(vector_error)?,
            VectorSource::Hnsw,
        ),
        (None, None, Some(flat)) if filter.is_none() => (
            flat.search(query, k).map_err(vector_error)?,
            VectorSource::Flat,
        ),
        _ => {
            return Ok((
                scan(store, scope.collection, scope.metric(), query, k, filter)?,
                VectorSource::Scan,
            ));
        }
    };
    if let Some(e) = failed.into_inner() {
        return Err(e.into());
    }
    Ok((
        hits.into_iter()
            .map(|h| VectorHit {
                id: h.id.to_string(),
                score: scope.score(h.distance),
            })
            .collect(),
        source,
    ))
}

fn vector_error(e: index_vector::SearchError) -> ApiError {
    match e {
        index_vector::SearchError::Vector(index_vector::VectorError::Dimension {
            expected,
            got,
        }) => ApiError::bad_request(format!(
            "query vector has dimension {got}, stored vectors have dimension {expected}"
        )),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Adds the stored `text`/`meta` of `id` to a hit, as asked (a document deleted since is left without them).
fn add_stored(
    store: &Store,
    collection: &str,
    o: &mut Map<String, Value>,
    id: &str,
    include: index_text::Include,
) {
    if !(include.text || include.meta) {
        return;
    }
    if let Ok(Some(d)) = store.get_in(collection, id) {
        if include.text {
            o.insert("text".into(), json!(d.text));
        }
        if include.meta {
            o.insert("meta".into(), Value::Object(d.meta.unwrap_or_default()));
        }
    }
}

/// One fused hit: the RRF score and, per ranking, its rank (from 1) and score there.
#[derive(Debug)]
struct Fused {
    id: String,
    score: f64,
    text: Option<(usize, f32)>,
    vector: Option<(usize, f64)>,
}

/// Reciprocal rank fusion: `wt / (RRF_K + text rank) + wv / (RRF_K + vector rank)`, highest first, ties by id.
fn fuse(text: &[index_text::Hit], vector: &[VectorHit], wt: f64, wv: f64) -> Vec<Fused> {
    let mut by_id: BTreeMap<&str, Fused> = BTreeMap::new();
    for (i, h) in text.iter().enumerate() {
        let f = by_id.entry(&h.id).or_insert_with(|| Fused {
            id: h.id.clone(),
            score: 0.0,
            text: None,
            vector: None,
        });
        if f.text.is_none() {
            f.text = Some((i + 1, h.score));
            f.score += wt / (RRF_K + (i + 1) as f64);
        }
    }
    for (i, h) in vector.iter().enumerate() {
        let f = by_id.entry(&h.id).or_insert_with(|| Fused {
            id: h.id.clone(),
            score: 0.0,
            text: None,
            vector: None,
        });
        if f.vector.is_none() {
            f.vector = Some((i + 1, h.score));
            f.score += wv / (RRF_K + (i + 1) as f64);
        }
    }
    let mut out: Vec<Fused> = by_id.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    out
}

/// The `k` stored vectors closest to `query` under the collection's metric that `filter` accepts, by the reference
/// scan of the table ([`index_vector::scan::search_store`]).
fn scan(
    store: &Store,
    collection: &str,
    metric: store::collection::Metric,
    query: &[f32],
    k: usize,
    filter: Option<&index_text::Filter>,
) -> Result<Vec<VectorHit>, ApiError> {
    let accepted = |meta: Option<&Map<String, Value>>| filter.is_none_or(|f| f.matches(meta));
    let hits = index_vector::scan::search_store(
        store,
        collection,
        query,
        k,
        crate::app::vector_metric(metric),
        &accepted,
    )
    .map_err(scan_error)?;
    Ok(hits
        .into_iter()
        .map(|h| VectorHit {
            id: h.id,
            score: h.score,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(id: &str) -> index_text::Hit {
        index_text::Hit {
            id: id.to_string(),
            score: 1.0,
            text: None,
            meta: None,
            highlights: None,
        }
    }

    fn vh(id: &str) -> VectorHit {
        VectorHit {
            id: id.to_string(),
            score: 0.5,
        }
    }

    #[test]
    fn rrf_ranks_a_hit_in_both_lists_first_and_weights_tip_the_rest() {
        let text = [th("a"), th("b"), th("c")];
        let vector = [vh("c"), vh("d"), vh("a")];
        let f = fuse(&text, &vector, 1.0, 1.0);
        let ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        // a: 1/61 + 1/63, c: 1/63 + 1/61 — a tie broken by id; then b (1/62) and d (1/62), by id.
        assert_eq!(ids, ["a", "c", "b", "d"]);
        assert!((f[0].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-12);
        assert_eq!(f[0].text, Some((1, 1.0)));
        assert_eq!(f[0].vector.map(|v| v.0), Some(3));
        let f = fuse(&text, &vector, 0.0, 1.0);
        assert_eq!(f[0].id, "c");
        // 3/61 + 1/63 (a) > 3/63 + 1/61 (c) > 3/62 (b) > 1/62 (d).
        let f = fuse(&text, &vector, 3.0, 1.0);
        let ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b", "d"]);
        let f = fuse(&text, &vector, 1.0, 3.0);
        let ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "d", "b"]);
    }
}
