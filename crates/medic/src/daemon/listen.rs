//! The daemon's connections: the accept loop, the bound on open connections, the slow-client timeouts, the bounded
//! stop, and the process's descriptor limit.
//!
//! Owns every client socket. Invariants:
//! - At most `http.connections_max` connections are served at once, and at most [`REFUSALS_MAX`] more are being
//!   refused, so clients hold at most `connections_max + REFUSALS_MAX` descriptors. At start the soft
//!   `RLIMIT_NOFILE` is raised to the hard limit and the daemon refuses to start unless that leaves
//!   [`DESCRIPTORS_RESERVED`] (256) for the store, the knowledge base and the runtime
//!   ([`HttpConfig::check_descriptors`]): no number of clients can make a store `open` fail with "too many open
//!   files". At rest the daemon holds about 20 descriptors besides its connections; compaction and a full scrub
//!   open a few more for a moment.
//! - A connection over the bound is accepted, answered `503 {"error"}` naming `http.connections_max` with
//!   `Connection: close` and `Retry-After: 1`, and closed within a second (its unread request is drained for that
//!   second so the client reads the answer rather than a reset); when [`REFUSALS_MAX`] refusals are already under
//!   way it is closed at once. Accept-and-refuse rather than leaving excess connections in the kernel's listen
//!   backlog: a client learns at once that the daemon is full and why, and the backlog never holds well-behaved
//!   clients behind a crowd that keeps every slot, where they would wait silently until their own timeout.
//! - A connection must deliver a complete request head within `http.header_read_timeout_ms` (counted from accept
//!   for its first request, from the first byte of the head for later ones), and a kept-alive connection with no
//!   request is closed after `http.idle_timeout_ms`: a client that connects and sends nothing, or sends its head a
//!   byte at a time, loses its slot. A body is read inside the handler, bounded by `http.request_timeout_ms`.
//!   hyper's own head timeout is set to the sum of both as a backstop (bytes pipelined behind a request are not
//!   watched by the head timer here).
//! - A stop (the `stop` future) closes the listener, lets every connection finish its request in flight and closes
//!   kept-alive ones, and after `server.shutdown_grace_ms` cuts whatever is still open (a client that never sends
//!   the rest of its body, say): [`serve`] returns within the grace period whatever clients do, so the store can be
//!   closed cleanly. A write cut this way was not acknowledged.
//! - An accept that fails for want of a resource (descriptors, memory) is retried after a short pause, never in a
//!   hot loop; the connection waits in the backlog meanwhile.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::Metrics;
use super::head_errors::{self, Rewrite};
use crate::config::{Config, DESCRIPTORS_RESERVED, HttpConfig, REFUSALS_MAX};

/// How long a refused connection is kept to deliver its 503 and drain what the client sent.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The most bytes read (and dropped) from a refused connection before it is closed.
const REFUSAL_DRAIN_BYTES_MAX: usize = 64 * 1024;

/// The pause after an accept failed for want of a resource (descriptors, memory, buffers).
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The longest pause between two looks at a connection's timeouts.
const WATCH_TICK_MAX: Duration = Duration::from_secs(1);

/// The shortest pause between two looks at a connection's timeouts.
const WATCH_TICK_MIN: Duration = Duration::from_millis(20);

/// What the connections are held to, from `[http]` and `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `http.connections_max`.
    pub connections_max: usize,
    /// `http.header_read_timeout_ms`.
    pub header_read_timeout: Duration,
    /// `http.idle_timeout_ms`.
    pub idle_timeout: Duration,
    /// `server.shutdown_grace_ms`.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The limits `config` sets.
    pub fn from_config(config: &Config) -> Limits {
        let h = &config.http;
        Limits {
            connections_max: usize::try_from(h.connections_max).unwrap_or(usize::MAX),
            header_read_timeout: Duration::from_millis(h.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(h.idle_timeout_ms),
            shutdown_grace: Duration::from_millis(config.server.shutdown_grace_ms),
        }
    }

    fn watch_tick(&self) -> Duration {
        (self.header_read_timeout.min(self.idle_timeout) / 4).clamp(WATCH_TICK_MIN, WATCH_TICK_MAX)
    }
}

/// The descriptor limit after [`raise_descriptor_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit at start (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now (`None`: unlimited).
    pub now: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (connections and the store's files all need descriptors) and
/// returns the limit before and after. When the hard limit is unlimited the kernel's `fs.nr_open` caps the raise;
/// when the raise is refused the soft limit stays as it was.
pub fn raise_descriptor_limit() -> DescriptorLimit {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current.is_some() && before.current != before.maximum {
        let target = before.maximum.or_else(nr_open);
        if let Some(target) = target.filter(|t| Some(*t) > before.current) {
            let raised = Rlimit {
                current: Some(target),
                maximum: before.maximum,
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(
                    "cannot raise the soft descriptor limit (RLIMIT_NOFILE) from {:?} to {target}: {e}",
                    before.current
                );
            }
        }
    }
    DescriptorLimit {
        before: before.current,
        now: getrlimit(Resource::Nofile).current,
    }
}

/// The kernel's ceiling on a process's descriptors, `/proc/sys/fs/nr_open`.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Raises the descriptor limit and checks `http.connections_max` against it; the error names the key, the value,
/// the limit and what medic keeps.
pub fn prepare_descriptors(http: &HttpConfig) -> anyhow::Result<DescriptorLimit> {
    let limit = raise_descriptor_limit();
    http.check_descriptors(limit.now)?;
    if limit.before != limit.now {
        tracing::info!(
            before = ?limit.before,
            now = ?limit.now,
            connections_max = http.connections_max,
            reserved = DESCRIPTORS_RESERVED + REFUSALS_MAX,
            "raised the soft descriptor limit (RLIMIT_NOFILE) to the hard limit"
        );
    }
    Ok(limit)
}

/// Serves `router` on `listener` under `limits` until `stop` completes, then stops within `limits.shutdown_grace`
/// (see the module doc). Returns how many connections were cut at the end of the grace period.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) -> usize {
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let refusals = Arc::new(Semaphore::new(
        usize::try_from(REFUSALS_MAX).unwrap_or(usize::MAX),
    ));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut accept_warned: Option<Instant> = None;
    let mut accept_failures = 0u64;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        if !is_connection_error(&e) {
                            // Out of descriptors or memory: pause, the connection waits in the backlog.
                            accept_failures += 1;
                            if accept_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                tracing::warn!(
                                    failures = accept_failures,
                                    "cannot accept a connection: {e}; retrying every {} ms",
                                    ACCEPT_RETRY_PAUSE.as_millis()
                                );
                                accept_warned = Some(Instant::now());
                            }
                            tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                        }
                        continue;
                    }
                };
                if let Ok(slot) = slots.clone().try_acquire_owned() {
                    let (router, metrics, closing) =
                        (router.clone(), metrics.clone(), closing_rx.clone());
                    tasks.spawn(async move {
                        metrics.connections_changed(1);
                        serve_connection(stream, router, limits, closing).await;
                        metrics.connections_changed(-1);
                        drop(slot);
                    });
                } else {
                    metrics.connection_refused();
                    if let Ok(permit) = refusals.clone().try_acquire_owned() {
                        let max = limits.connections_max;
                        tasks.spawn(async move {
                            refuse(stream, max).await;
                            drop(permit);
                        });
                    }
                    // Otherwise dropped here: closed without an answer.
                }
            }
        }
    }
    drop(listener);
    let open = tasks.len();
    tracing::info!(
        connections = open,
        grace_ms = limits.shutdown_grace.as_millis() as u64,
        "listener closed; letting requests in flight finish"
    );
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_ok() {
        return 0;
    }
    let cut = tasks.len();
    tracing::warn!(
        connections = cut,
        "server.shutdown_grace_ms = {} ms passed: cutting the connections still open (their requests were not \
         answered)",
        limits.shutdown_grace.as_millis()
    );
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    cut
}

/// Whether an accept error concerns only the one connection (the next accept may well succeed).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Answers 503 to a connection over the bound and closes it within [`REFUSAL_LINGER`].
async fn refuse(mut stream: TcpStream, connections_max: usize) {
    let body = serde_json::json!({
        "error": format!(
            "too many connections: http.connections_max = {connections_max} are open; retry in a moment"
        )
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Closing with unread bytes would reset the connection and could destroy the answer before the client
        // reads it: read what the client sent (bounded) until it closes.
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_BYTES_MAX {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

/// Milliseconds since the connection was accepted; `NONE` where nothing is pending.
const NONE: u64 = u64::MAX;

/// What the watchdog of one connection needs to know: when it last read a byte or answered, whether a request
/// head has begun, how many requests are being served. Updated by [`Watched`] (reads) and by the service.
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    /// When a byte was last read or a request answered.
    last_ms: AtomicU64,
    /// When the request head now pending began (`NONE`: none pending). The first request's counts from accept.
    head_ms: AtomicU64,
    /// Requests handed to the router and not answered yet.
    in_flight: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            last_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn read(&self) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self
                .head_ms
                .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_ms.store(NONE, Ordering::Relaxed);
    }

    fn request_answered(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Why the connection is to be closed now, if it is.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = self.now_ms();
        let head = self.head_ms.load(Ordering::Relaxed);
        if head != NONE {
            let limit = u64::try_from(limits.header_read_timeout.as_millis()).unwrap_or(NONE);
            return (now.saturating_sub(head) >= limit).then_some("http.header_read_timeout_ms");
        }
        let limit = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(NONE);
        (now.saturating_sub(self.last_ms.load(Ordering::Relaxed)) >= limit)
            .then_some("http.idle_timeout_ms")
    }
}

/// Marks a request answered when dropped (also when its future is dropped unfinished).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_answered();
    }
}

/// A client socket that tells its [`Activity`] about every read, and gives the HTTP parser's automatic answers a
/// body naming the limit ([`head_errors`]).
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// An automatic answer being sent in place of the parser's (the parser's write is reported written once it is).
    rewrite: Option<Rewrite>,
}

impl Watched {
    /// Writes `written` — or, when it is one of the parser's automatic answers, its replacement — reporting
    /// `written`'s length once the replacement is all sent.
    fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
        written: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        if self.rewrite.is_none() {
            self.rewrite = Some(Rewrite::answer_for(written)?);
        }
        let r = self.rewrite.as_mut()?;
        loop {
            match Pin::new(&mut self.stream).poll_write(cx, r.unsent()) {
                Poll::Ready(Ok(0)) => {
                    return Some(Poll::Ready(Err(io::ErrorKind::WriteZero.into())));
                }
                Poll::Ready(Ok(n)) if r.advance(n) => break,
                Poll::Ready(Ok(_)) => continue,
                other => return Some(other),
            }
        }
        self.rewrite = None;
        Some(Poll::Ready(Ok(written.len())))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(answer) = self.poll_answer(cx, buf) {
            return answer;
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut whole = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (whole.next(), whole.next())
            && let Some(answer) = self.poll_answer(cx, only)
        {
            return answer;
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves one connection (HTTP/1.1, kept alive) until it closes, a timeout of `limits` closes it, or the stop
/// finishes it (`closing`; the caller cuts it after the grace period).
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
        rewrite: None,
    });
    let act = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        act.request_started();
        let guard = InFlight(act.clone());
        let answer = tower::ServiceExt::oneshot(router.clone(), req.map(Body::new));
        async move {
            let resp: Result<Response<Body>, Infallible> = answer.await;
            drop(guard);
            resp
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    head_errors::configure(&mut builder);
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout + limits.idle_timeout);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(limits.watch_tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = closing.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if let Some(why) = activity.expired(&limits) {
                    tracing::debug!("closing a connection: {why} passed");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            connections_max: 4,
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            shutdown_grace: Duration::from_millis(100),
        }
    }

    #[test]
    fn first_head_counts_from_accept_later_ones_from_their_first_byte() {
        let l = limits();
        let a = Activity::new();
        assert_eq!(a.expired(&l), None);
        a.head_ms.store(0, Ordering::Relaxed);
        a.last_ms.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(a.expired(&l), Some("http.header_read_timeout_ms"));
        // Served: no timeout while the request is in flight, then idle counts from the answer.
        a.request_started();
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(a.expired(&l), None);
        a.request_answered();
        assert_eq!(a.expired(&l), None, "idle, not a pending head");
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(a.expired(&l), None, "idle timeout is longer");
        // A byte of the next head starts the head timer.
        a.read();
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(a.expired(&l), Some("http.header_read_timeout_ms"));
    }

    #[test]
    fn an_idle_connection_expires_after_the_idle_timeout() {
        let l = limits();
        let a = Activity::new();
        a.request_started();
        a.request_answered();
        std::thread::sleep(Duration::from_millis(320));
        assert_eq!(a.expired(&l), Some("http.idle_timeout_ms"));
    }
}
