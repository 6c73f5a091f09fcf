//! The daemon's Prometheus metrics: one explicit [`Registry`] per daemon (no global state, so tests stay
//! deterministic), encoded on `GET /metrics` as OpenMetrics text when the scraper asks for it (Prometheus does) and
//! otherwise as the classic Prometheus text format 0.0.4 (what `curl` and `promtool check metrics` read): counters'
//! `# HELP`/`# TYPE` name the `_total` series, and there is no `# EOF`.
//!
//! Request counts and operation latencies are recorded as they happen; the engine's and the store's state (health,
//! incidents, repairs, documents, KPIs) is mirrored into gauges and counters after every healing cycle and at each
//! scrape, from the incident records themselves, so the figures agree with `GET /v1/incidents`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use heal::HealthState;
use heal::learn::{AttemptOutcome, IncidentRecord};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`Metrics::encode_prometheus`]'s output.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Incident ids remembered to count repairs once; older ones are forgotten beyond this.
const INCIDENTS_TRACKED_MAX: usize = 10_000;

/// A timed operation, the `operation` label of `medic_operation_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `PUT /v1/docs/{id}`, until durable.
    Put,
    /// `POST /v1/docs` (bulk ingest), validation and every commit until durable.
    Bulk,
    /// `GET /v1/docs/{id}`.
    Get,
    /// `DELETE /v1/docs/{id}`, until durable.
    Delete,
    /// `POST /v1/search`.
    Search,
    /// One healing cycle (scheduled or `POST /v1/heal`).
    HealCycle,
    /// An on-demand check tier (`GET /v1/health?tier=`).
    HealthTier,
}

impl Operation {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Put => "put",
            Operation::Bulk => "bulk",
            Operation::Get => "get",
            Operation::Delete => "delete",
            Operation::Search => "search",
            Operation::HealCycle => "heal_cycle",
            Operation::HealthTier => "health_tier",
        }
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: Operation,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    /// The HTTP status code (Prometheus' conventional label name).
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectionLabels {
    collection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IndexLabels {
    collection: String,
    index: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FigureLabels {
    collection: String,
    index: String,
    figure: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepairLabels {
    strategy: String,
    outcome: &'static str,
}

/// What the store and engine report, mirrored into gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Whether the engine's fields were read (false while a healing cycle held the engine); when false only
    /// `documents` and `read_only` are applied.
    pub engine_known: bool,
    /// Documents stored.
    pub documents: u64,
    /// Health state, if known.
    pub health: Option<HealthState>,
    /// Open incidents.
    pub active_incidents: u64,
    /// Repairs running now.
    pub repairs_in_flight: u64,
    /// Whether the store refuses writes.
    pub read_only: bool,
    /// Mean time to detect, seconds.
    pub mttd_seconds: Option<f64>,
    /// Mean time to repair, seconds.
    pub mttr_seconds: Option<f64>,
    /// Share of incidents repaired without a human, [0, 1].
    pub auto_remediation_ratio: Option<f64>,
    /// Share of repair attempts that succeeded, [0, 1].
    pub repair_success_ratio: Option<f64>,
    /// Share of repair attempts rolled back, [0, 1].
    pub rollback_ratio: Option<f64>,
    /// The process's readings, when `/proc` answered.
    pub process: Option<crate::machine::ProcessReading>,
    /// The configured `server.memory_limit_bytes`.
    pub memory_limit_bytes: Option<u64>,
    /// Whether resident memory is above that limit now.
    pub memory_pressure: bool,
    /// Writes refused for memory pressure since start.
    pub writes_refused_memory: u64,
    /// Every derived index's status (lag, and its structure as last measured).
    pub indexes: Vec<store::derived::IndexStatus>,
    /// Documents per collection (`default` included).
    pub collections: Vec<(String, u64)>,
}

#[derive(Default)]
struct Seen {
    /// Incident id → repair attempts already counted.
    attempts: BTreeMap<u64, usize>,
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    operation_duration: Family<OperationLabels, Histogram>,
    health_state: Family<StateLabels, Gauge>,
    incidents: Family<SeverityLabels, Counter>,
    repairs: Family<RepairLabels, Counter>,
    active_incidents: Gauge,
    repairs_in_flight: Gauge,
    documents: Gauge,
    read_only: Gauge,
    heal_cycles: Counter,
    heal_cycle_failures: Counter,
    connections_open: Gauge,
    connections_refused: Counter,
    mttd: Gauge<f64, AtomicU64>,
    mttr: Gauge<f64, AtomicU64>,
    auto_remediation: Gauge<f64, AtomicU64>,
    repair_success: Gauge<f64, AtomicU64>,
    rollback: Gauge<f64, AtomicU64>,
    search_duration: Family<KindLabels, Histogram>,
    process_resident: Gauge,
    process_cpu: Gauge<f64, AtomicU64>,
    process_fds: Gauge,
    process_threads: Gauge,
    memory_limit: Gauge<f64, AtomicU64>,
    memory_pressure: Gauge,
    writes_refused_memory: Gauge,
    index_lag: Family<IndexLabels, Gauge>,
    collection_documents: Family<CollectionLabels, Gauge>,
    /// The collections `collection_documents` has a series of (a dropped one's is removed).
    collections_seen: Mutex<std::collections::BTreeSet<String>>,
    /// `(collection, index, figure)` of every `index_lag` (figure `None`) and `index_structure` series.
    index_series_seen: Mutex<std::collections::BTreeSet<(String, String, Option<String>)>>,
    index_structure: Family<FigureLabels, Gauge<f64, AtomicU64>>,
    seen: Mutex<Seen>,
    /// Incidents detected before this (µs since the epoch) belong to an earlier process and are not counted.
    counted_since_us: u64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn severity_label(s: heal::Severity) -> &'static str {
    match s {
        heal::Severity::Sev0 => "sev0",
        heal::Severity::Sev1 => "sev1",
        heal::Severity::Sev2 => "sev2",
        heal::Severity::Sev3 => "sev3",
    }
}

fn outcome_label(o: AttemptOutcome) -> &'static str {
    match o {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::Failed => "failed",
        AttemptOutcome::RolledBack => "rolled_back",
        AttemptOutcome::DryRun => "dry_run",
    }
}

/// The label value of a health state.
pub fn state_label(s: HealthState) -> &'static str {
    match s {
        HealthState::Healthy => "HEALTHY",
        HealthState::Degraded => "DEGRADED",
        HealthState::Unhealthy => "UNHEALTHY",
        HealthState::Critical => "CRITICAL",
    }
}

const OUTCOMES: [AttemptOutcome; 4] = [
    AttemptOutcome::Succeeded,
    AttemptOutcome::Failed,
    AttemptOutcome::RolledBack,
    AttemptOutcome::DryRun,
];

const STATES: [HealthState; 4] = [
    HealthState::Healthy,
    HealthState::Degraded,
    HealthState::Unhealthy,
    HealthState::Critical,
];

impl Metrics {
    /// A fresh registry. Incidents detected before `counted_since_us` are not counted in `medic_incidents_total`
    /// or `medic_repairs_total` (they were counted by the process that saw them).
    pub fn new(counted_since_us: u64) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "medic_http_requests",
            "HTTP requests answered, by route, method and status code",
            http_requests.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: crate::BUILD_COMMIT,
            })
            .set(1);
        registry.register(
            "medic_build_info",
            "Always 1; the labels say which medic this is (version, git commit it was built from)",
            build_info,
        );
        // 50 µs .. ~52 s in 21 doubling buckets.
        let operation_duration = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
        });
        registry.register(
            "medic_operation_duration_seconds",
            "Duration of operations: put and delete until durable, get, search, healing cycles, check tiers",
            operation_duration.clone(),
        );
        let health_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "medic_health_state",
            "1 for the current health state (HEALTHY, DEGRADED, UNHEALTHY, CRITICAL), 0 for the others",
            health_state.clone(),
        );
        let incidents = Family::<SeverityLabels, Counter>::default();
        registry.register(
            "medic_incidents",
            "Incidents opened, by severity",
            incidents.clone(),
        );
        let repairs = Family::<RepairLabels, Counter>::default();
        registry.register(
            "medic_repairs",
            "Repair attempts, by strategy and outcome (succeeded, failed, rolled_back, dry_run)",
            repairs.clone(),
        );
        let active_incidents = Gauge::default();
        registry.register(
            "medic_active_incidents",
            "Incidents open now",
            active_incidents.clone(),
        );
        let repairs_in_flight = Gauge::default();
        registry.register(
            "medic_repairs_in_flight",
            "Repairs running now",
            repairs_in_flight.clone(),
        );
        let documents = Gauge::default();
        registry.register("medic_documents", "Documents stored", documents.clone());
        let collection_documents = Family::<CollectionLabels, Gauge>::default();
        registry.register(
            "medic_collection_documents",
            "Documents of one collection",
            collection_documents.clone(),
        );
        let index_lag = Family::<IndexLabels, Gauge>::default();
        registry.register(
            "medic_index_lag_records",
            "Log records a derived index has not applied yet",
            index_lag.clone(),
        );
        let index_structure = Family::<FigureLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "medic_index_structure",
            "A derived index's structure as last measured by derived.structure (e.g. reachable_fraction, orphans, \
             tombstone_fraction of an HNSW graph)",
            index_structure.clone(),
        );
        let read_only = Gauge::default();
        registry.register(
            "medic_store_read_only",
            "1 when the store refuses writes",
            read_only.clone(),
        );
        let heal_cycles = Counter::default();
        registry.register(
            "medic_heal_cycles",
            "Healing cycles run",
            heal_cycles.clone(),
        );
        let heal_cycle_failures = Counter::default();
        registry.register(
            "medic_heal_cycle_failures",
            "Healing cycles that returned an error",
            heal_cycle_failures.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "medic_http_connections",
            "Client connections open now (at most http.connections_max)",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "medic_http_connections_refused",
            "Connections answered 503 and closed because http.connections_max were open",
            connections_refused.clone(),
        );
        // The KPI gauges start unknown: NaN until the engine reports a value.
        let mttd = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "medic_mttd_seconds",
            "Mean time to detect an incident (NaN until one is recorded)",
            mttd.clone(),
        );
        let mttr = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "medic_mttr_seconds",
            "Mean time to repair an auto-repaired incident (NaN until one is recorded)",
            mttr.clone(),
        );
        let auto_remediation = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "medic_auto_remediation_ratio",
            "Share of resolved incidents repaired without a human (NaN until one is resolved)",
            auto_remediation.clone(),
        );
        let repair_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "medic_repair_success_ratio",
            "Share of repair attempts that succeeded (NaN until the first attempt)",
            repair_success.clone(),
        );
        let rollback = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "medic_rollback_ratio",
            "Share of repair attempts rolled back (NaN until the first attempt)",
            rollback.clone(),
        );
        let search_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
        });
        registry.register(
            "medic_search_duration_seconds",
            "Duration of searches by query kind (vector; text once the text index lands)",
            search_duration.clone(),
        );
        let process_resident = Gauge::default();
        registry.register(
            "medic_process_resident_bytes",
            "Resident memory of the daemon process",
            process_resident.clone(),
        );
        let process_cpu = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "medic_process_cpu_seconds",
            "CPU time (user + system) the daemon process used since it started",
            process_cpu.clone(),
        );
        let process_fds = Gauge::default();
        registry.register(
            "medic_process_open_fds",
            "Open file descriptors of the daemon process",
            process_fds.clone(),
        );
        let process_threads = Gauge::default();
        registry.register(
            "medic_process_threads",
            "Threads of the daemon process",
            process_threads.clone(),
        );
        let memory_limit = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "medic_memory_limit_bytes",
            "server.memory_limit_bytes (NaN when no limit is configured)",
            memory_limit.clone(),
        );
        let memory_pressure = Gauge::default();
        registry.register(
            "medic_memory_pressure",
            "1 while resident memory is above server.memory_limit_bytes (large writes are refused)",
            memory_pressure.clone(),
        );
        let writes_refused_memory = Gauge::default();
        registry.register(
            "medic_writes_refused_memory",
            "Writes refused with 503 for memory pressure since the daemon started",
            writes_refused_memory.clone(),
        );
        let m = Self {
            registry,
            search_duration,
            process_resident,
            process_cpu,
            process_fds,
            process_threads,
            memory_limit,
            memory_pressure,
            writes_refused_memory,
            index_lag,
            collection_documents,
            collections_seen: Mutex::new(std::collections::BTreeSet::new()),
            index_series_seen: Mutex::new(std::collections::BTreeSet::new()),
            index_structure,
            http_requests,
            operation_duration,
            health_state,
            incidents,
            repairs,
            active_incidents,
            repairs_in_flight,
            documents,
            read_only,
            heal_cycles,
            heal_cycle_failures,
            connections_open,
            connections_refused,
            mttd,
            mttr,
            auto_remediation,
            repair_success,
            rollback,
            seen: Mutex::new(Seen::default()),
            counted_since_us,
        };
        m.memory_limit.set(f64::NAN);
        // Present at 0 from the start for every query kind served.
        let _ = m
            .search_duration
            .get_or_create(&KindLabels { kind: "vector" });
        for g in [
            &m.mttd,
            &m.mttr,
            &m.auto_remediation,
            &m.repair_success,
            &m.rollback,
        ] {
            g.set(f64::NAN);
        }
        for sev in [
            heal::Severity::Sev0,
            heal::Severity::Sev1,
            heal::Severity::Sev2,
            heal::Severity::Sev3,
        ] {
            // Present at 0 from the start, so rates and alerts work before the first incident.
            let _ = m.incidents.get_or_create(&SeverityLabels {
                severity: severity_label(sev),
            });
        }
        for s in STATES {
            m.health_state
                .get_or_create(&StateLabels {
                    state: state_label(s),
                })
                .set(0);
        }
        m
    }

    /// Creates `medic_repairs_total{strategy, outcome}` at 0 for every outcome of each of `strategies`, so the
    /// family is exposed (and rates work) before the first repair. Counts already made are kept.
    pub fn preregister_repairs(&self, strategies: &[String]) {
        for strategy in strategies {
            for outcome in OUTCOMES {
                let _ = self.repairs.get_or_create(&RepairLabels {
                    strategy: strategy.clone(),
                    outcome: outcome_label(outcome),
                });
            }
        }
    }

    /// Records one answered HTTP request. `route` is the matched route template (bounded cardinality).
    pub fn record_request(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                code: status,
            })
            .inc();
    }

    /// A client connection was accepted (`+1`) or closed (`-1`).
    pub fn connections_changed(&self, by: i64) {
        self.connections_open.inc_by(by);
    }

    /// A connection was refused because `http.connections_max` were open.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Records how long an operation took.
    pub fn observe(&self, operation: Operation, seconds: f64) {
        self.operation_duration
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }

    /// Records how long a search of `kind` (`vector`) took.
    pub fn observe_search(&self, kind: &'static str, seconds: f64) {
        self.search_duration
            .get_or_create(&KindLabels { kind })
            .observe(seconds);
    }

    /// Counts one healing cycle and whether it failed.
    pub fn record_cycle(&self, ok: bool) {
        self.heal_cycles.inc();
        if !ok {
            self.heal_cycle_failures.inc();
        }
    }

    /// Mirrors the store's and the engine's state into gauges.
    pub fn set_snapshot(&self, s: &Snapshot) {
        self.documents.set(s.documents.min(i64::MAX as u64) as i64);
        self.active_incidents
            .set(s.active_incidents.min(i64::MAX as u64) as i64);
        self.repairs_in_flight
            .set(s.repairs_in_flight.min(i64::MAX as u64) as i64);
        self.read_only.set(i64::from(s.read_only));
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        if let Some(p) = &s.process {
            self.process_resident.set(clamp(p.resident_bytes));
            self.process_cpu.set(p.cpu_us_total as f64 / 1e6);
            self.process_fds.set(clamp(p.open_fds));
            self.process_threads.set(clamp(p.threads));
        }
        self.memory_limit
            .set(s.memory_limit_bytes.map_or(f64::NAN, |v| v as f64));
        self.memory_pressure.set(i64::from(s.memory_pressure));
        self.writes_refused_memory
            .set(clamp(s.writes_refused_memory));
        {
            let mut seen = self
                .collections_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now: std::collections::BTreeSet<String> =
                s.collections.iter().map(|(c, _)| c.clone()).collect();
            for gone in seen.difference(&now) {
                self.collection_documents.remove(&CollectionLabels {
                    collection: gone.clone(),
                });
            }
            for (c, n) in &s.collections {
                self.collection_documents
                    .get_or_create(&CollectionLabels {
                        collection: c.clone(),
                    })
                    .set(clamp(*n));
            }
            *seen = now;
        }
        let mut series: std::collections::BTreeSet<(String, String, Option<String>)> =
            std::collections::BTreeSet::new();
        for i in &s.indexes {
            self.index_lag
                .get_or_create(&IndexLabels {
                    collection: i.collection.clone(),
                    index: i.name.clone(),
                })
                .set(clamp(i.lag_records));
            series.insert((i.collection.clone(), i.name.clone(), None));
            for (figure, v) in i.structure.iter().flat_map(|st| &st.figures) {
                self.index_structure
                    .get_or_create(&FigureLabels {
                        collection: i.collection.clone(),
                        index: i.name.clone(),
                        figure: figure.clone(),
                    })
                    .set(*v);
                series.insert((i.collection.clone(), i.name.clone(), Some(figure.clone())));
            }
        }
        {
            // An index detached (its collection dropped) has its series removed.
            let mut seen = self
                .index_series_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (collection, index, figure) in seen.difference(&series) {
                match figure {
                    None => self.index_lag.remove(&IndexLabels {
                        collection: collection.clone(),
                        index: index.clone(),
                    }),
                    Some(figure) => self.index_structure.remove(&FigureLabels {
                        collection: collection.clone(),
                        index: index.clone(),
                        figure: figure.clone(),
                    }),
                };
            }
            *seen = series;
        }
        if !s.engine_known {
            return;
        }
        if let Some(h) = s.health {
            for state in STATES {
                self.health_state
                    .get_or_create(&StateLabels {
                        state: state_label(state),
                    })
                    .set(i64::from(state == h));
            }
        }
        // Unknown (no incident recorded yet) is NaN, as OpenMetrics has it, not a misleading 0.
        let set = |g: &Gauge<f64, AtomicU64>, v: Option<f64>| {
            g.set(v.filter(|v| v.is_finite()).unwrap_or(f64::NAN));
        };
        set(&self.mttd, s.mttd_seconds);
        set(&self.mttr, s.mttr_seconds);
        set(&self.auto_remediation, s.auto_remediation_ratio);
        set(&self.repair_success, s.repair_success_ratio);
        set(&self.rollback, s.rollback_ratio);
    }

    /// Counts incidents and repair attempts not counted yet (each once, however often it is called).
    pub fn observe_incidents<'a>(&self, records: impl IntoIterator<Item = &'a IncidentRecord>) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        for r in records {
            if r.detected_at < self.counted_since_us {
                continue;
            }
            let counted = match seen.attempts.get(&r.id) {
                Some(&n) => n,
                None => {
                    self.incidents
                        .get_or_create(&SeverityLabels {
                            severity: severity_label(r.severity),
                        })
                        .inc();
                    0
                }
            };
            for a in r.attempts.iter().skip(counted) {
                self.repairs
                    .get_or_create(&RepairLabels {
                        strategy: a.strategy.clone(),
                        outcome: outcome_label(a.outcome),
                    })
                    .inc();
            }
            seen.attempts.insert(r.id, r.attempts.len().max(counted));
        }
        while seen.attempts.len() > INCIDENTS_TRACKED_MAX {
            seen.attempts.pop_first();
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Encoding into a String cannot fail; keep the output well-formed if it ever does.
            out.clear();
            let _ = writeln!(out, "# EOF");
        }
        out
    }

    /// The classic Prometheus text exposition (format 0.0.4) of every metric.
    pub fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode())
    }
}

/// Rewrites an OpenMetrics text exposition as the Prometheus text format 0.0.4: a counter family `x` is announced as
/// `x_total` (the name its samples carry), `# UNIT` and `# EOF` lines are dropped (the older format has neither).
/// Gauges and histograms are written the same way in both formats.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether an `Accept` header asks for OpenMetrics (Prometheus sends `application/openmetrics-text;...` first).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut fields = part.split(';');
            let media = fields.next().unwrap_or("").trim();
            let q_zero = fields.any(|f| matches!(f.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use heal::learn::{AttemptRecord, Resolution};
    use heal::{CrisisLevel, DataLoss, Severity};

    fn record(id: u64, detected_at: u64, attempts: &[(&str, AttemptOutcome)]) -> IncidentRecord {
        IncidentRecord {
            id,
            started_at: detected_at,
            detected_at,
            resolved_at: None,
            issues: vec![],
            crisis: CrisisLevel::Obstacle,
            severity: Severity::Sev2,
            root_cause: "test".into(),
            blast_radius: vec![],
            decision: "repair".into(),
            attempts: attempts
                .iter()
                .map(|(s, o)| AttemptRecord {
                    strategy: s.to_string(),
                    started_at: detected_at,
                    duration_us: 10,
                    outcome: *o,
                    notes: vec![],
                    data_loss: DataLoss::None,
                })
                .collect(),
            resolution: Resolution::Open,
            report_markdown: None,
        }
    }

    #[test]
    fn the_prometheus_format_names_counter_families_by_their_total_series() {
        let m = Metrics::new(0);
        let om = m.encode();
        assert!(om.contains("# TYPE medic_heal_cycles counter\n"), "{om}");
        let text = m.encode_prometheus();
        assert!(
            text.contains("# TYPE medic_heal_cycles_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP medic_heal_cycles_total "), "{text}");
        assert!(text.contains("\nmedic_heal_cycles_total 0\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("# TYPE medic_documents gauge\n") || !om.contains("medic_documents"),
            "{text}"
        );
        assert_eq!(
            openmetrics_to_prometheus(
                "# HELP a_seconds A.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\na_seconds_count 1\n# EOF\n"
            ),
            "# HELP a_seconds A.\n# TYPE a_seconds histogram\na_seconds_count 1\n"
        );
    }

    #[test]
    fn openmetrics_is_served_only_when_asked_for() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=0, text/plain"
        )));
    }

    #[test]
    fn incidents_and_repairs_are_counted_once_and_old_ones_skipped() {
        let m = Metrics::new(100);
        let mut r = record(1, 150, &[("rebuild_from_parity", AttemptOutcome::Failed)]);
        m.observe_incidents([&r, &record(2, 50, &[("x", AttemptOutcome::Succeeded)])]);
        m.observe_incidents([&r]);
        r.attempts.push(
            record(
                1,
                150,
                &[("rebuild_from_parity", AttemptOutcome::Succeeded)],
            )
            .attempts[0]
                .clone(),
        );
        m.observe_incidents([&r]);
        let text = m.encode();
        assert!(
            text.contains("medic_incidents_total{severity=\"sev2\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "medic_repairs_total{strategy=\"rebuild_from_parity\",outcome=\"failed\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "medic_repairs_total{strategy=\"rebuild_from_parity\",outcome=\"succeeded\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("strategy=\"x\""),
            "incident 2 predates the process: {text}"
        );
    }

    #[test]
    fn snapshot_sets_one_health_state_and_gauges() {
        let m = Metrics::new(0);
        m.set_snapshot(&Snapshot {
            engine_known: true,
            documents: 7,
            health: Some(HealthState::Degraded),
            mttr_seconds: Some(f64::NAN),
            mttd_seconds: Some(1.5),
            ..Snapshot::default()
        });
        m.observe(Operation::Put, 0.001);
        m.record_request("/v1/docs/{id}", "PUT", 200);
        let text = m.encode();
        assert!(text.contains("medic_documents 7\n"), "{text}");
        assert!(
            text.contains("medic_health_state{state=\"DEGRADED\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("medic_health_state{state=\"HEALTHY\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("medic_mttr_seconds NaN\n"),
            "unknown is NaN, not 0: {text}"
        );
        assert!(
            text.contains("medic_operation_duration_seconds_count{operation=\"put\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "medic_http_requests_total{route=\"/v1/docs/{id}\",method=\"PUT\",code=\"200\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("medic_mttd_seconds 1.5\n"), "{text}");
        assert!(
            text.contains("medic_repair_success_ratio NaN\n"),
            "no attempt yet: {text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn repairs_family_is_exposed_before_the_first_repair_and_kpis_start_unknown() {
        let m = Metrics::new(0);
        let text = m.encode();
        assert!(text.contains("medic_mttd_seconds NaN\n"), "{text}");
        assert!(text.contains("medic_mttr_seconds NaN\n"), "{text}");
        assert!(!text.contains("medic_mttr_seconds 0"), "{text}");
        m.preregister_repairs(&["compact".to_string()]);
        let text = m.encode();
        assert!(text.contains("# TYPE medic_repairs counter\n"), "{text}");
        for outcome in ["succeeded", "failed", "rolled_back", "dry_run"] {
            assert!(
                text.contains(&format!(
                    "medic_repairs_total{{strategy=\"compact\",outcome=\"{outcome}\"}} 0\n"
                )),
                "{outcome}: {text}"
            );
        }
        // Counting afterwards is unaffected, and pre-registering again keeps the count.
        m.observe_incidents([&record(1, 5, &[("compact", AttemptOutcome::Succeeded)])]);
        m.preregister_repairs(&["compact".to_string()]);
        assert!(
            m.encode()
                .contains("medic_repairs_total{strategy=\"compact\",outcome=\"succeeded\"} 1\n")
        );
    }
}
