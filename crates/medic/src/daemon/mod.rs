//! The daemon: the HTTP API ([`router`]), its metrics, and the healing loop on its schedule ([`serve`]).
//!
//! `serve` raises the descriptor limit and checks `http.connections_max` against it ([`listen`]), opens the [`App`]
//! (the store recovers at open), binds, prints `http://HOST:PORT` on stdout, runs a tokio task that calls one
//! healing cycle every `checks.shallow_interval_ms` (the engine behind a mutex, the cycle on a blocking thread),
//! writes `<data>/medic.url` ([`url_file`]) so commands given only `--data` find it, serves connections under the
//! bounds of [`listen`], and stops cleanly on SIGTERM or SIGINT (removing that file): the listener closes, requests
//! in flight get `server.shutdown_grace_ms` to finish (a put either returns its LSN or an error; one cut at the end
//! of the grace period was not acknowledged), the loop stops, and the store is closed. SIGHUP reads the configuration
//! file again and applies what can change at run time ([`reload`]); SIGPIPE is caught, so a client hanging up is an
//! error on its connection only.
//!
//! A request whose `Content-Length` is over `http.request_body_bytes_max` is answered 413 before its body is read.

mod alertmanager;
pub mod api;
pub mod auth;
mod bulk;
mod collections;
pub mod dashboard;
pub mod error;
mod head_errors;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod operators;
pub mod reload;
pub mod reports;
pub mod url_file;

use std::io::IsTerminal as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

pub use error::ApiError;
pub use metrics::Metrics;

use crate::app::App;
use crate::config::{Config, LogFormat, is_loopback};
use api::ApiState;

/// How long `serve` waits at exit for connection tasks to drop their handles on the app.
const APP_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The router for `app`, with a fresh metrics registry. Used by tests with `tower::ServiceExt::oneshot`.
pub fn router(app: Arc<App>) -> Router {
    let metrics = Arc::new(Metrics::new(app.started_at_us()));
    router_with_metrics(app, metrics)
}

/// The router for `app`, recording into `metrics`.
pub fn router_with_metrics(app: Arc<App>, metrics: Arc<Metrics>) -> Router {
    let http = app.config().http.clone();
    let token = app.config().server.token.clone();
    // Every strategy × outcome at 0 from the start, so scrapers see the family before the first repair.
    metrics.preregister_repairs(&app.strategy_names());
    let state = ApiState { app, metrics };
    let timeout = Duration::from_millis(http.request_timeout_ms);
    Router::new()
        .route(
            "/v1/docs",
            post(api::bulk_docs).layer(DefaultBodyLimit::max(
                usize::try_from(http.bulk_body_bytes_max).unwrap_or(usize::MAX),
            )),
        )
        .route(
            "/v1/docs/{id}",
            put(api::put_doc).get(api::get_doc).delete(api::delete_doc),
        )
        .route("/v1/search", post(api::search))
        .route(
            "/v1/collections/{collection}/search",
            post(api::collection_search),
        )
        .route("/v1/collections", get(collections::list))
        .route(
            "/v1/collections/{collection}",
            get(api::collection)
                .put(collections::create)
                .delete(collections::drop_collection),
        )
        .route(
            "/v1/collections/{collection}/docs",
            post(collections::bulk_docs).layer(DefaultBodyLimit::max(
                usize::try_from(http.bulk_body_bytes_max).unwrap_or(usize::MAX),
            )),
        )
        .route(
            "/v1/collections/{collection}/docs/{id}",
            put(collections::put_doc)
                .get(collections::get_doc)
                .delete(collections::delete_doc),
        )
        .route("/health", get(api::health_shallow))
        .route("/v1/health", get(api::health_tier))
        .route("/v1/status", get(api::status))
        .route("/v1/incidents", get(api::incidents))
        .route("/v1/incidents/{id}", get(api::incident))
        .merge(operators::routes())
        .route("/v1/alertmanager", post(alertmanager::receive))
        .merge(dashboard::routes())
        .merge(openapi::routes())
        .route("/v1/heal", post(api::heal_now))
        .route("/v1/accept-loss", post(api::accept_loss))
        .route("/metrics", get(api::metrics))
        .fallback(|| async {
            ApiError::not_found("no such route; see README.md's HTTP API section")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(
            usize::try_from(http.request_body_bytes_max).unwrap_or(usize::MAX),
        ))
        .layer(middleware::from_fn_with_state(
            auth::Auth::new(token).with_operators(&http.operators),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(timeout, time_limit))
        .layer(middleware::from_fn_with_state(
            BodyLimits {
                request: http.request_body_bytes_max,
                bulk: http.bulk_body_bytes_max,
            },
            refuse_declared_oversize,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

/// The target of the access log's lines (`RUST_LOG=medic::access=debug` shows them alone).
pub const ACCESS_LOG_TARGET: &str = "medic::access";

/// The access log, one line per answered request at debug level on [`ACCESS_LOG_TARGET`]: method, path (never the
/// query string, never a header — a token stays out of the log), status code, duration and the body's bytes when
/// known. A request refused before routing (413, 401) is logged too.
async fn access_log(req: Request, next: Next) -> Response {
    if !tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::DEBUG) {
        return next.run(req).await;
    }
    use axum::body::HttpBody as _;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    let duration_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let bytes = resp.body().size_hint().exact().or_else(|| {
        resp.headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    });
    tracing::debug!(
        target: ACCESS_LOG_TARGET,
        method = %method,
        path = %path,
        code = resp.status().as_u16(),
        duration_us,
        bytes,
        "request"
    );
    resp
}

/// Answers 503 `{"error"}` when a request takes longer than `http.request_timeout_ms`. Blocking work already
/// started (a put waiting on fsync) still completes; the client was not told it succeeded.
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::unavailable(format!(
            "request took longer than http.request_timeout_ms = {} ms",
            limit.as_millis()
        ))
        .into_response(),
    }
}

/// A refused body at most this many times `http.request_body_bytes_max` is read and discarded before the 413 goes
/// out (for at most [`DRAIN_TIMEOUT`]): a client that sends its whole body before reading the answer — most do —
/// then reads the 413 and its reason instead of a reset connection. A larger one is refused without reading.
const DRAIN_FACTOR: u64 = 4;
/// How long a refused body is drained at most before the 413 is sent anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers 413 when the request's `Content-Length` declares more than `http.request_body_bytes_max`, never
/// buffering the body: one declared far beyond the limit (a client announcing a gigabyte) is answered at once, one
/// moderately over it is drained first (bounded in bytes and time) so the client can read why.
async fn refuse_declared_oversize(
    State(limits): State<BodyLimits>,
    req: Request,
    next: Next,
) -> Response {
    use http_body_util::BodyExt as _;
    let (key, limit) = limits.of(&req);
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => {
            if n <= limit.saturating_mul(DRAIN_FACTOR) {
                let mut body = req.into_body();
                let drain = async {
                    let mut seen = 0u64;
                    while let Some(Ok(frame)) = body.frame().await {
                        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                        if seen >= n {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
            }
            ApiError::declared_body_too_large(key, limit, n).into_response()
        }
        _ => next.run(req).await,
    }
}

/// The body limits: `http.bulk_body_bytes_max` for a bulk ingest (`POST /v1/docs`), `http.request_body_bytes_max`
/// for every other request.
#[derive(Clone, Copy, Debug)]
struct BodyLimits {
    request: u64,
    bulk: u64,
}

impl BodyLimits {
    /// The key and value of the limit that applies to `req`.
    fn of(&self, req: &Request) -> (&'static str, u64) {
        let path = req.uri().path();
        let bulk = path == "/v1/docs"
            || path
                .strip_prefix("/v1/collections/")
                .and_then(|rest| rest.strip_suffix("/docs"))
                .is_some_and(|c| !c.contains('/'));
        if req.method() == axum::http::Method::POST && bulk {
            ("http.bulk_body_bytes_max", self.bulk)
        } else {
            ("http.request_body_bytes_max", self.request)
        }
    }
}

/// Counts every answered request by matched route (bounded label values), method and status.
async fn count_request(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let resp = next.run(req).await;
    s.metrics
        .record_request(&route, &method, resp.status().as_u16());
    resp
}

/// The log on stderr, as `format` asks; `RUST_LOG` filters it (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // Another subscriber (set by the CLI or a test) wins; that is fine.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the daemon until SIGTERM or SIGINT: validates `config` (refusing a non-loopback listener without a token),
/// opens the app, listens, prints `http://HOST:PORT` on stdout, runs the healing loop.
pub fn serve(config: Config, source: reload::ConfigSource) -> anyhow::Result<()> {
    init_logging(config.server.log_format);
    let warnings = config.validate()?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let addr = config.listen_addr()?;
    if !is_loopback(&addr) && config.server.token.is_none() {
        anyhow::bail!(
            "refusing to listen on {addr}: it is not a loopback address and server.token is not set"
        );
    }
    listen::prepare_descriptors(&config.http)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve_async(config, source, addr))
}

async fn serve_async(
    config: Config,
    source: reload::ConfigSource,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    ignore_sigpipe();
    // Bound before the data directory is opened: a port in use is refused before anything is created or repaired
    // there. A client connecting during recovery waits in the listen queue until the first accept.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let open_config = config.clone();
    let data = config.server.data_dir.display().to_string();
    // Recovery verifies every block and replays the log: on a terminal a spinner shows it is working.
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("opening {data}: verifying and replaying the log"));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    if spinner.is_none() {
        tracing::info!(data = %data, "opening: verifying and replaying the log");
    }
    let app = tokio::task::spawn_blocking(move || App::open(&open_config))
        .await
        .context("opening the data directory");
    if let Some(bar) = &spinner {
        bar.finish_and_clear();
    }
    let app = app??;
    {
        let r = app.store().recovery_report();
        tracing::info!(
            data = %data,
            created = r.created,
            snapshot_docs = r.snapshot_docs,
            records_replayed = r.records_replayed,
            last_lsn = r.last_lsn,
            issues = r.issues.len(),
            ms = r.duration_us / 1_000,
            "opened"
        );
    }
    app.attach_indexes()?;
    app.attach_targets()?;
    for w in crate::operators::start_warnings(&app) {
        tracing::warn!("configuration: {w}");
    }
    let app = Arc::new(app);
    app.watch_attachments();
    let local = listener.local_addr().context("reading the bound address")?;
    let metrics = Arc::new(Metrics::new(app.started_at_us()));
    let router = router_with_metrics(app.clone(), metrics.clone());
    // Commands given only `--data` find this daemon through `<data>/medic.url` (removed when it stops); written before
    // the URL is printed, so whoever saw the URL finds the file.
    let url_file = match url_file::UrlFile::write(
        &config.server.data_dir,
        &url_file::local_url(local),
    ) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(
                "cannot write {}: {e}; commands given only --data find this daemon through server.listen only",
                config.server.data_dir.join(url_file::URL_FILE).display()
            );
            None
        }
    };
    let stop_signal = shutdown_signal();
    let hangup = install_signal(tokio::signal::unix::SignalKind::hangup(), "SIGHUP");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "http://{local}").context("writing the address to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    tracing::info!(%local, data = %config.server.data_dir.display(), "medic serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state_metrics = metrics.clone();
    let state = ApiState {
        app: app.clone(),
        metrics,
    };
    let healing = tokio::spawn(healing_loop(
        state,
        Duration::from_millis(config.checks.shallow_interval_ms),
        stop_rx.clone(),
    ));
    let reports = tokio::spawn(reports::report_loop(app.clone(), stop_rx.clone()));
    let reloads = tokio::spawn(reload_loop(
        app.clone(),
        source,
        config.clone(),
        hangup,
        stop_rx,
    ));

    let cut = listen::serve(
        listener,
        router,
        listen::Limits::from_config(&config),
        state_metrics,
        stop_signal,
    )
    .await;
    tracing::info!(
        connections_cut = cut,
        "stopping: listener closed, requests in flight finished or cut"
    );
    drop(url_file);
    let _ = stop_tx.send(true);
    // A cycle in a long full scrub ends it early: the stop is bounded by one file's verification, not the store's.
    app.store().interrupt_checks();
    if let Err(e) = healing.await {
        tracing::warn!("healing loop ended abnormally: {e}");
    }
    if let Err(e) = reports.await {
        tracing::warn!("scheduled reports loop ended abnormally: {e}");
    }
    if let Err(e) = reloads.await {
        tracing::warn!("configuration reload loop ended abnormally: {e}");
    }
    // The supervised processes stop with the daemon.
    app.stop_targets();
    // Blocking work a request started (a put waiting on fsync) holds the app until it finishes, also when its
    // connection was cut; wait (bounded) for the last handle so the store is closed cleanly rather than dropped.
    let deadline = tokio::time::Instant::now() + APP_RELEASE_TIMEOUT;
    let mut app = app;
    loop {
        match Arc::try_unwrap(app) {
            Ok(owned) => {
                tokio::task::spawn_blocking(move || owned.close())
                    .await
                    .context("closing the store")??;
                break;
            }
            Err(shared) if tokio::time::Instant::now() < deadline => {
                app = shared;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => {
                tracing::warn!(
                    "the store is still shared {} ms after the listener closed; it is released when the last \
                     handle drops",
                    APP_RELEASE_TIMEOUT.as_millis()
                );
                break;
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// A tick every `interval` for a loop that runs until the daemon stops; a late tick delays the next instead of
/// bunching them.
pub(super) struct Every(tokio::time::Interval);

impl Every {
    pub(super) fn new(interval: Duration) -> Every {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Every(ticker)
    }

    /// Waits for the next tick; `false` once `stop` says the daemon is stopping.
    pub(super) async fn tick(&mut self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = self.0.tick() => {}
            _ = stop.changed() => return false,
        }
        !*stop.borrow()
    }
}

/// One healing cycle every `interval` until told to stop. A cycle never overlaps the next: the next tick waits.
async fn healing_loop(
    state: ApiState,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = Every::new(interval);
    let mut index_health = reports::IndexHealthSampler::default();
    while every.tick(&mut stop).await {
        if let Err(e) = api::run_cycle(&state, None).await {
            tracing::warn!("{}", e.message);
        }
        index_health.after_cycle(&state.app).await;
    }
}

/// Reloads the configuration at every SIGHUP ([`reload`]) until told to stop. One reload at a time; a SIGHUP
/// arriving during one is taken after it.
async fn reload_loop(
    app: Arc<App>,
    source: reload::ConfigSource,
    mut running: Config,
    mut hangup: Option<tokio::signal::unix::Signal>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = received(hangup.as_mut()) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        tracing::info!("SIGHUP received: reading the configuration again");
        reload::on_hangup(&app, &source, &mut running).await;
    }
}

/// Installs a handler for `kind` now (the signal's default action no longer applies); `None`, logged, when it
/// cannot be installed.
fn install_signal(
    kind: tokio::signal::unix::SignalKind,
    name: &str,
) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .inspect_err(|e| tracing::warn!("cannot listen for {name}: {e}"))
        .ok()
}

/// Installs the SIGTERM and SIGINT handlers now (before the URL is printed, so a signal sent as soon as the daemon
/// is seen never meets the default action and kills it uncleanly) and returns a future that completes at the first
/// of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::SignalKind;
    let mut term = install_signal(SignalKind::terminate(), "SIGTERM");
    let mut int = install_signal(SignalKind::interrupt(), "SIGINT");
    async move {
        tokio::select! {
            () = received(int.as_mut()) => tracing::info!("SIGINT received"),
            () = received(term.as_mut()) => tracing::info!("SIGTERM received"),
        }
    }
}

/// Catches SIGPIPE (the binary's `main` restored its default action, which ends the process): a write to a
/// connection the peer closed — hyper's vectored writes go through `writev`, which raises the signal — is then an
/// error on that connection only. The handler stays for the process's life after the stream is dropped.
fn ignore_sigpipe() {
    use tokio::signal::unix::{SignalKind, signal};
    if let Err(e) = signal(SignalKind::pipe()) {
        tracing::warn!(
            "cannot catch SIGPIPE: a client hanging up mid-answer may end the daemon: {e}"
        );
    }
}

/// Completes when `signal` arrives; never when it could not be installed.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
