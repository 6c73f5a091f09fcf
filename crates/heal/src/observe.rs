//! Observation: per-operation latency histograms, error counts, throughput and gauges, recorded from many threads
//! at once and summarised into a serde-serialisable [`MetricsSnapshot`] that the engine turns into
//! [`Sample`]s and the daemon exports as Prometheus metrics.
//!
//! Design, measured in `benches/hot_path.rs`: each operation has one [`OpStats`] holding an HDR histogram (µs,
//! 2 significant digits, 1 µs ..= [`LATENCY_US_MAX`], values above saturate at the top so recording never fails)
//! behind a short `Mutex`. Uncontended, lock + record + unlock costs tens of nanoseconds; callers on the hot path
//! keep the `Arc<OpStats>` from [`Metrics::op`] so they skip the name lookup. No clock is read while recording:
//! time comes from the caller of a snapshot, and throughput is operations per second of the caller's time.
//!
//! Two views: [`Metrics::snapshot`] is cumulative since start (what a Prometheus scrape wants, and any number of
//! readers may take it); [`Metrics::window_snapshot`] covers only the operations since the previous window snapshot
//! and then starts a new window (what the engine's detectors want: the recent p99, not the all-time one). Take
//! window snapshots from one place only (the engine loop).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::clock::{Timestamp, US_PER_S};
use crate::subject::Sample;

/// Latencies above this many µs (one hour) are recorded as this value.
pub const LATENCY_US_MAX: u64 = 3_600 * US_PER_S;
/// Significant decimal digits of the latency histograms (1% resolution).
pub const HISTOGRAM_SIGFIG: u8 = 2;
/// Longest operation or gauge name, in bytes.
pub const METRIC_NAME_BYTES_MAX: usize = 64;
/// Most distinct operations one [`Metrics`] tracks.
pub const OPS_MAX: usize = 256;
/// Most distinct gauges one [`Metrics`] tracks.
pub const GAUGES_MAX: usize = 1_024;

/// Why a metric could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// The name is empty.
    #[error("metric name is empty")]
    NameEmpty,
    /// The name is longer than [`METRIC_NAME_BYTES_MAX`].
    #[error("metric name {name:?} is {len} bytes, longer than metric_name_bytes_max = {max}")]
    NameTooLong {
        /// The name (cut to the limit).
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name has a character other than ASCII letters, digits and `_`, or starts with a digit.
    #[error(
        "metric name {name:?} has {found:?} at byte {at}; use ASCII letters, digits and '_', not starting with a digit"
    )]
    NameInvalid {
        /// The name.
        name: String,
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// Too many distinct operations.
    #[error("cannot track operation {name:?}: already tracking ops_max = {max} operations")]
    TooManyOps {
        /// The new name.
        name: String,
        /// The limit.
        max: usize,
    },
    /// Too many distinct gauges.
    #[error("cannot track gauge {name:?}: already tracking gauges_max = {max} gauges")]
    TooManyGauges {
        /// The new name.
        name: String,
        /// The limit.
        max: usize,
    },
}

/// Checks a metric name: 1..=[`METRIC_NAME_BYTES_MAX`] bytes of `[A-Za-z0-9_]`, not starting with a digit (so it
/// is a valid Prometheus name).
pub fn validate_name(name: &str) -> Result<(), ObserveError> {
    if name.is_empty() {
        return Err(ObserveError::NameEmpty);
    }
    if name.len() > METRIC_NAME_BYTES_MAX {
        let mut cut = METRIC_NAME_BYTES_MAX;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(ObserveError::NameTooLong {
            name: name[..cut].to_string(),
            len: name.len(),
            max: METRIC_NAME_BYTES_MAX,
        });
    }
    for (at, c) in name.char_indices() {
        let ok = c.is_ascii_alphabetic() || c == '_' || (at > 0 && c.is_ascii_digit());
        if !ok {
            return Err(ObserveError::NameInvalid {
                name: name.to_string(),
                found: c,
                at,
            });
        }
    }
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low ≥ 1, high ≥ 2·low, sigfig ≤ 5), so this cannot fail.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, HISTOGRAM_SIGFIG).unwrap_or_else(|_| {
        Histogram::new(HISTOGRAM_SIGFIG).unwrap_or_else(|_| unreachable_histogram())
    })
}

#[cold]
fn unreachable_histogram() -> Histogram<u64> {
    // hdrhistogram rejects only sigfig > 5; HISTOGRAM_SIGFIG is 2.
    Histogram::new(3).expect("hdrhistogram accepts 3 significant digits")
}

#[derive(Debug)]
struct OpState {
    /// Latencies since the window started.
    window: Histogram<u64>,
    /// Errors since the window started.
    window_errors: u64,
    /// When the window started (µs since the epoch; the creation time for the first window).
    window_start: Timestamp,
    /// Latencies of every closed window.
    closed: Histogram<u64>,
    /// Errors of every closed window.
    closed_errors: u64,
}

/// The statistics of one operation. `Send + Sync`: record from any thread.
#[derive(Debug)]
pub struct OpStats {
    state: Mutex<OpState>,
}

impl OpStats {
    /// Empty statistics whose first window starts at `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            state: Mutex::new(OpState {
                window: new_histogram(),
                window_errors: 0,
                window_start: now,
                closed: new_histogram(),
                closed_errors: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OpState> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way that matters: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one operation that took `latency_us` µs; `ok == false` counts it as an error too. Values above
    /// [`LATENCY_US_MAX`] are recorded as that value.
    #[inline]
    pub fn record_us(&self, latency_us: u64, ok: bool) {
        let mut s = self.lock();
        s.window.saturating_record(latency_us);
        s.window_errors += u64::from(!ok);
    }

    /// Records one operation that took `latency` (rounded down to whole µs).
    #[inline]
    pub fn record(&self, latency: Duration, ok: bool) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_us(us, ok);
    }

    /// Summary of everything recorded so far; `now` gives the throughput of the current window.
    pub fn summary(&self, now: Timestamp) -> OpSummary {
        let s = self.lock();
        let mut all = s.closed.clone();
        // Both histograms share bounds, so adding cannot fail; if it somehow did, the closed part is still right.
        let _ = all.add(&s.window);
        let window_count = s.window.len();
        let rate = ops_per_s(window_count, s.window_start, now);
        let errors = s.closed_errors + s.window_errors;
        let mut out = summarize(&all, errors, rate);
        out.count_total = all.len();
        out.errors_total = errors;
        out
    }

    /// Summary of the current window, then starts a new window at `now`.
    pub fn take_window(&self, now: Timestamp) -> OpSummary {
        let mut s = self.lock();
        let rate = ops_per_s(s.window.len(), s.window_start, now);
        let summary = summarize(&s.window, s.window_errors, rate);
        let OpState {
            window,
            window_errors,
            window_start,
            closed,
            closed_errors,
        } = &mut *s;
        let _ = closed.add(&*window);
        *closed_errors += *window_errors;
        let mut summary = summary;
        summary.count_total = closed.len();
        summary.errors_total = *closed_errors;
        window.reset();
        *window_errors = 0;
        *window_start = now.max(*window_start);
        summary
    }
}

fn ops_per_s(count: u64, since: Timestamp, now: Timestamp) -> f64 {
    let elapsed_us = now.saturating_sub(since);
    if elapsed_us == 0 {
        0.0
    } else {
        count as f64 * US_PER_S as f64 / elapsed_us as f64
    }
}

fn summarize(h: &Histogram<u64>, errors: u64, ops_per_s: f64) -> OpSummary {
    if h.is_empty() {
        return OpSummary {
            errors,
            ops_per_s,
            ..OpSummary::default()
        };
    }
    let max = h.max();
    let min = h.min();
    // hdrhistogram reports bucket edges; clamp so that min ≤ p50 ≤ p95 ≤ p99 ≤ max holds exactly.
    let q = |p: f64| h.value_at_quantile(p).clamp(min, max);
    let p50 = q(0.50);
    let p95 = q(0.95).max(p50);
    let p99 = q(0.99).max(p95);
    OpSummary {
        count: h.len(),
        errors,
        p50_us: p50,
        p95_us: p95,
        p99_us: p99,
        min_us: min,
        max_us: max,
        mean_us: h.mean(),
        ops_per_s,
        count_total: 0,
        errors_total: 0,
    }
}

/// What one operation looked like over a span of time. Latencies are µs, at 1% resolution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpSummary {
    /// Operations recorded (including failed ones).
    pub count: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 95th percentile latency.
    pub p95_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
    /// Lowest latency.
    pub min_us: u64,
    /// Highest latency.
    pub max_us: u64,
    /// Mean latency.
    pub mean_us: f64,
    /// Operations per second over the current (or, for a window snapshot, the closed) window.
    pub ops_per_s: f64,
    /// Operations recorded since creation (equal to `count` in a cumulative snapshot): a monotonic counter.
    #[serde(default)]
    pub count_total: u64,
    /// Errors since creation: a monotonic counter.
    #[serde(default)]
    pub errors_total: u64,
}

/// Every operation and gauge at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// When it was taken.
    pub at: Timestamp,
    /// The span it covers, µs: since creation for a cumulative snapshot, since the previous window for a window
    /// snapshot.
    pub span_us: u64,
    /// Per operation.
    pub ops: BTreeMap<String, OpSummary>,
    /// Gauges by name.
    pub gauges: BTreeMap<String, f64>,
}

impl MetricsSnapshot {
    /// The snapshot as typed metric samples at its time. Per operation `op`, only when it had operations (a quiet
    /// window has no latency and no error ratio): gauges `op_latency_p50_us`, `op_latency_p95_us`,
    /// `op_latency_p99_us`, `op_latency_max_us`, `op_latency_mean_us`, `op_error_ratio`; always the counters
    /// `op_ops_total` and `op_errors_total` (since creation; the engine judges their rates `op_ops_per_s`,
    /// `op_errors_per_s`); every gauge under its own name.
    pub fn to_samples(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.ops.len() * 8 + self.gauges.len());
        let at = self.at;
        for (op, s) in &self.ops {
            if s.count > 0 {
                let mut gauge = |name: String, value: f64| out.push(Sample::gauge(name, value, at));
                gauge(format!("{op}_latency_p50_us"), s.p50_us as f64);
                gauge(format!("{op}_latency_p95_us"), s.p95_us as f64);
                gauge(format!("{op}_latency_p99_us"), s.p99_us as f64);
                gauge(format!("{op}_latency_max_us"), s.max_us as f64);
                gauge(format!("{op}_latency_mean_us"), s.mean_us);
                gauge(
                    format!("{op}_error_ratio"),
                    s.errors as f64 / s.count as f64,
                );
            }
            out.push(Sample::counter(
                format!("{op}_ops_total"),
                s.count_total.max(s.count) as f64,
                at,
            ));
            out.push(Sample::counter(
                format!("{op}_errors_total"),
                s.errors_total.max(s.errors) as f64,
                at,
            ));
        }
        for (name, value) in &self.gauges {
            out.push(Sample::gauge(name.clone(), *value, at));
        }
        out
    }
}

/// The registry of every operation's statistics and every gauge. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    created_at: Timestamp,
    ops: RwLock<BTreeMap<String, Arc<OpStats>>>,
    gauges: Mutex<BTreeMap<String, f64>>,
    window_start: Mutex<Timestamp>,
}

impl Metrics {
    /// An empty registry created at `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            created_at: now,
            ops: RwLock::new(BTreeMap::new()),
            gauges: Mutex::new(BTreeMap::new()),
            window_start: Mutex::new(now),
        }
    }

    /// The statistics of operation `name`, created on first use (its first window starts at the registry's
    /// current window). Keep the handle: recording through it skips the name lookup.
    pub fn op(&self, name: &str) -> Result<Arc<OpStats>, ObserveError> {
        if let Some(s) = self.ops.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(Arc::clone(s));
        }
        validate_name(name)?;
        let start = *self.window_start.lock().unwrap_or_else(|e| e.into_inner());
        let mut ops = self.ops.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = ops.get(name) {
            return Ok(Arc::clone(s));
        }
        if ops.len() >= OPS_MAX {
            return Err(ObserveError::TooManyOps {
                name: name.to_string(),
                max: OPS_MAX,
            });
        }
        let stats = Arc::new(OpStats::new(start));
        ops.insert(name.to_string(), Arc::clone(&stats));
        Ok(stats)
    }

    /// Records one operation of `name` by name (a map lookup under a read lock, then [`OpStats::record_us`]).
    pub fn record_us(&self, name: &str, latency_us: u64, ok: bool) -> Result<(), ObserveError> {
        if let Some(s) = self.ops.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            s.record_us(latency_us, ok);
            return Ok(());
        }
        self.op(name)?.record_us(latency_us, ok);
        Ok(())
    }

    /// Sets gauge `name` to `value` (memory, free disk, WAL size, queue depth...). Non-finite values are kept as
    /// they are; detectors ignore them.
    pub fn set_gauge(&self, name: &str, value: f64) -> Result<(), ObserveError> {
        let mut gauges = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = gauges.get_mut(name) {
            *g = value;
            return Ok(());
        }
        validate_name(name)?;
        if gauges.len() >= GAUGES_MAX {
            return Err(ObserveError::TooManyGauges {
                name: name.to_string(),
                max: GAUGES_MAX,
            });
        }
        gauges.insert(name.to_string(), value);
        Ok(())
    }

    /// The current value of a gauge.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.gauges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }

    fn gauges_copy(&self) -> BTreeMap<String, f64> {
        self.gauges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn ops_copy(&self) -> Vec<(String, Arc<OpStats>)> {
        self.ops
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// Everything since creation, at `now`. Does not disturb windows; any number of readers may call it.
    pub fn snapshot(&self, now: Timestamp) -> MetricsSnapshot {
        MetricsSnapshot {
            at: now,
            span_us: now.saturating_sub(self.created_at),
            ops: self
                .ops_copy()
                .into_iter()
                .map(|(k, v)| {
                    let s = v.summary(now);
                    (k, s)
                })
                .collect(),
            gauges: self.gauges_copy(),
        }
    }

    /// The operations since the previous window snapshot (or creation), at `now`; then starts a new window.
    /// Gauges are their current values.
    pub fn window_snapshot(&self, now: Timestamp) -> MetricsSnapshot {
        let span_us = {
            let mut start = self.window_start.lock().unwrap_or_else(|e| e.into_inner());
            let span = now.saturating_sub(*start);
            *start = now.max(*start);
            span
        };
        MetricsSnapshot {
            at: now,
            span_us,
            ops: self
                .ops_copy()
                .into_iter()
                .map(|(k, v)| {
                    let s = v.take_window(now);
                    (k, s)
                })
                .collect(),
            gauges: self.gauges_copy(),
        }
    }
}

/// Events per second over a sliding window of fixed-width buckets, with time from the caller. For rates of
/// things that are not timed operations (bytes written, repairs run). Not synchronised: wrap it in a `Mutex` to
/// share it.
#[derive(Debug, Clone)]
pub struct RateMeter {
    bucket_us: u64,
    counts: Vec<u64>,
    /// The absolute index (time / bucket_us) of the newest bucket.
    head: u64,
}

/// Most buckets a [`RateMeter`] keeps.
pub const RATE_BUCKETS_MAX: usize = 4_096;

impl RateMeter {
    /// A meter over `buckets` buckets of `bucket_us` µs each (both at least 1; buckets at most
    /// [`RATE_BUCKETS_MAX`]): the window is `buckets × bucket_us`.
    pub fn new(bucket_us: u64, buckets: usize) -> Self {
        Self {
            bucket_us: bucket_us.max(1),
            counts: vec![0; buckets.clamp(1, RATE_BUCKETS_MAX)],
            head: 0,
        }
    }

    fn advance(&mut self, at: Timestamp) {
        let b = at / self.bucket_us;
        if b <= self.head {
            return;
        }
        let n = self.counts.len() as u64;
        let gap = (b - self.head).min(n);
        for i in 1..=gap {
            let idx = ((self.head + i) % n) as usize;
            self.counts[idx] = 0;
        }
        self.head = b;
    }

    /// Counts `n` events at `at`. Events older than the window are dropped.
    pub fn record(&mut self, at: Timestamp, n: u64) {
        self.advance(at);
        let b = at / self.bucket_us;
        let len = self.counts.len() as u64;
        if b + len <= self.head {
            return;
        }
        let idx = (b % len) as usize;
        self.counts[idx] = self.counts[idx].saturating_add(n);
    }

    /// Events per second over the window ending at `now`.
    pub fn per_second(&mut self, now: Timestamp) -> f64 {
        self.advance(now);
        let total: u64 = self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c));
        let window_us = self.bucket_us as f64 * self.counts.len() as f64;
        total as f64 * US_PER_S as f64 / window_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_ordered_quantiles_counts_and_errors() {
        let m = Metrics::new(0);
        let put = m.op("put").unwrap();
        for us in 1..=1000u64 {
            put.record_us(us, us % 100 != 0);
        }
        let s = m.snapshot(2 * US_PER_S);
        let p = &s.ops["put"];
        assert_eq!(p.count, 1000);
        assert_eq!(p.errors, 10);
        assert_eq!(p.min_us, 1);
        assert!((p.p50_us as f64 - 500.0).abs() <= 5.0, "p50 {}", p.p50_us);
        assert!((p.p99_us as f64 - 990.0).abs() <= 10.0, "p99 {}", p.p99_us);
        assert!(p.max_us >= 1000 && p.max_us <= 1010);
        assert!((p.mean_us - 500.5).abs() < 5.0);
        assert!((p.ops_per_s - 500.0).abs() < 1e-9);
    }

    #[test]
    fn out_of_range_latencies_saturate_instead_of_failing() {
        let s = OpStats::new(0);
        s.record_us(0, true);
        s.record_us(u64::MAX, true);
        s.record(Duration::from_secs(u64::MAX), false);
        let sum = s.summary(1);
        assert_eq!(sum.count, 3);
        assert_eq!(sum.errors, 1);
        assert_eq!(sum.min_us, 0);
        assert!(sum.max_us >= LATENCY_US_MAX && sum.max_us <= LATENCY_US_MAX + LATENCY_US_MAX / 50);
    }

    #[test]
    fn window_snapshot_covers_only_the_last_window_and_cumulative_covers_all() {
        let m = Metrics::new(0);
        m.record_us("get", 10, true).unwrap();
        m.record_us("get", 10, false).unwrap();
        let w1 = m.window_snapshot(US_PER_S);
        assert_eq!(w1.ops["get"].count, 2);
        assert_eq!(w1.ops["get"].errors, 1);
        assert_eq!(w1.span_us, US_PER_S);
        assert!((w1.ops["get"].ops_per_s - 2.0).abs() < 1e-9);
        m.record_us("get", 5_000, true).unwrap();
        let w2 = m.window_snapshot(3 * US_PER_S);
        assert_eq!(w2.ops["get"].count, 1);
        assert_eq!(w2.ops["get"].errors, 0);
        assert!(w2.ops["get"].p99_us >= 4_950);
        assert!((w2.ops["get"].ops_per_s - 0.5).abs() < 1e-9);
        let all = m.snapshot(3 * US_PER_S);
        assert_eq!(all.ops["get"].count, 3);
        assert_eq!(all.ops["get"].errors, 1);
        let empty = m.window_snapshot(4 * US_PER_S);
        assert_eq!(
            empty.ops["get"],
            OpSummary {
                count_total: 3,
                errors_total: 1,
                ..OpSummary::default()
            }
        );
    }

    #[test]
    fn samples_are_named_after_op_and_gauge() {
        let m = Metrics::new(0);
        m.record_us("put", 100, false).unwrap();
        m.set_gauge("disk_free_bytes", 5e9).unwrap();
        m.set_gauge("disk_free_bytes", 4e9).unwrap();
        let samples = m.snapshot(US_PER_S).to_samples();
        let get = |name: &str| {
            samples
                .iter()
                .find(|s| s.metric == name)
                .unwrap_or_else(|| panic!("no sample {name}"))
                .value
        };
        assert!((get("put_latency_p99_us") - 100.0).abs() <= 1.0);
        assert_eq!(get("put_errors_total"), 1.0);
        assert_eq!(get("put_ops_total"), 1.0);
        assert_eq!(get("put_error_ratio"), 1.0);
        let kind = |name: &str| samples.iter().find(|s| s.metric == name).unwrap().kind;
        assert_eq!(kind("put_ops_total"), crate::subject::MetricKind::Counter);
        assert_eq!(
            kind("put_latency_p99_us"),
            crate::subject::MetricKind::Gauge
        );
        assert_eq!(get("disk_free_bytes"), 4e9);
        assert!(samples.iter().all(|s| s.at == US_PER_S));
        // A quiet window has counts but no latency samples.
        let _ = m.window_snapshot(2 * US_PER_S);
        let quiet = m.window_snapshot(4 * US_PER_S).to_samples();
        assert!(!quiet.iter().any(|s| s.metric == "put_latency_p99_us"));
        assert!(!quiet.iter().any(|s| s.metric == "put_error_ratio"));
        // The counters of a window snapshot count since creation, so they never step back between windows.
        let ops = quiet.iter().find(|s| s.metric == "put_ops_total").unwrap();
        assert_eq!(ops.value, 1.0);
        let snapshot_json = serde_json::to_string(&m.snapshot(5 * US_PER_S)).unwrap();
        assert!(snapshot_json.contains("\"p99_us\""));
    }

    #[test]
    fn bad_names_are_rejected_with_the_limit_named() {
        let m = Metrics::new(0);
        assert_eq!(m.op("").unwrap_err(), ObserveError::NameEmpty);
        let long = "a".repeat(METRIC_NAME_BYTES_MAX + 1);
        let e = m.op(&long).unwrap_err();
        assert!(e.to_string().contains("metric_name_bytes_max = 64"), "{e}");
        let e = m.set_gauge("disk free", 1.0).unwrap_err();
        assert!(
            matches!(
                e,
                ObserveError::NameInvalid {
                    found: ' ',
                    at: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            m.op("9lives"),
            Err(ObserveError::NameInvalid { at: 0, .. })
        ));
        for i in 0..OPS_MAX {
            m.op(&format!("op{i}")).unwrap();
        }
        let e = m.op("one_more").unwrap_err();
        assert!(e.to_string().contains("ops_max = 256"), "{e}");
        assert!(
            m.op("op0").is_ok(),
            "existing ops still resolve at the limit"
        );
    }

    #[test]
    fn rate_meter_counts_events_in_its_window() {
        let mut r = RateMeter::new(US_PER_S, 10);
        for s in 0..10u64 {
            r.record(s * US_PER_S, 5);
        }
        assert!((r.per_second(9 * US_PER_S) - 5.0).abs() < 1e-9);
        // Five seconds later half the window has aged out.
        assert!((r.per_second(14 * US_PER_S) - 2.5).abs() < 1e-9);
        // Far later, nothing is left; a late event older than the window is dropped.
        assert_eq!(r.per_second(100 * US_PER_S), 0.0);
        r.record(50 * US_PER_S, 1_000);
        assert_eq!(r.per_second(100 * US_PER_S), 0.0);
    }
}
