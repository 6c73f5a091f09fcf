//! Configuration: one TOML file, every option documented in [`default_toml`] and validated with bounds.
//!
//! [`Config::load`] reads and parses a file (unknown keys are refused, with their location); [`Config::validate`]
//! refuses a value outside its accepted range, naming the key, the value and the range, and returns warnings for
//! values that are valid but unusual. Every size is a named `*_bytes_max` / `*_min` limit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use heal::config::EngineConfig;
use serde::{Deserialize, Serialize};

/// The smallest WAL bound accepted; below the store's segment size, segments shrink to the bound.
const WAL_BYTES_MAX_MIN: u64 = 1024 * 1024;
/// The smallest `constraints.segment_bytes_max`.
const SEGMENT_BYTES_MAX_MIN: u64 = 64 * 1024;

/// The largest `http.connections_max` accepted (the descriptor limit bounds it further at start).
pub const CONNECTIONS_MAX_MAX: u64 = 1_000_000;

/// Descriptors kept for everything but client connections: the store's files (`LOCK`, the open segment and its
/// mirror, the snapshots, segments and sidecars that checks, repairs and compaction open), the knowledge base with
/// its journal files, the async runtime and stdio. Measured use is about 20 at rest (see the daemon's module doc).
pub const DESCRIPTORS_RESERVED: u64 = 256;

/// Connections over `http.connections_max` being answered 503 at once; each holds its descriptor at most a second,
/// and a connection arriving while all of these are busy is closed without an answer.
pub const REFUSALS_MAX: u64 = 32;

/// The largest configuration file accepted.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Everything the program can be told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to listen and where the data lives.
    pub server: ServerConfig,
    /// Limits of the HTTP API.
    pub http: HttpConfig,
    /// How often each tier of health checks runs.
    pub checks: ChecksConfig,
    /// Bounds the store is kept within.
    pub constraints: ConstraintsConfig,
    /// Metric history kept for reports.
    pub metrics: MetricsConfig,
    /// Where alerts go: the log, a webhook.
    pub notify: NotifyConfig,
    /// Named receivers and the escalation policies routing to them (`crate::notify::route`).
    pub escalation: crate::notify::EscalationConfig,
    /// The KPI targets daily and weekly reports hold the KPIs against.
    pub report: crate::report::ReportConfig,
    /// The diagnostic bundle kept per incident: retention and compression (`crate::diagnostics`).
    pub diagnostics: crate::diagnostics::DiagnosticsConfig,
    /// The healing engine: detectors, diagnosis, safety gates (dry-run, approval risk, concurrency, rate limits,
    /// circuit breakers), escalation. Validated by `heal::config::EngineConfig::validate`.
    pub engine: EngineConfig,
    /// Where playbooks (YAML repairs of the targets) are loaded from.
    pub playbooks: PlaybooksConfig,
    /// The services medic watches beside its store (`[[targets]]`), checked by `crate::target::validate`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<crate::target::TargetConfig>,
    /// Recurring maintenance windows (`[[maintenance]]`) during which risky repairs wait, checked by
    /// `crate::maintenance::compile_all`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<crate::maintenance::MaintenanceConfig>,
}

/// `[playbooks]`: the directory of playbook files (`*.yaml`), loaded and checked when the daemon starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaybooksConfig {
    /// The directory; none: no playbooks (a target's issues are escalated, a process target is still restarted).
    pub dir: Option<PathBuf>,
}

/// `[server]`: where to listen and where the data lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `IP:PORT` the HTTP API listens on; port 0 picks a free port.
    pub listen: String,
    /// The data directory (store files and `medic.sqlite3`).
    pub data_dir: PathBuf,
    /// Bearer token required on every mutating request; required to listen on a non-loopback address.
    pub token: Option<String>,
    /// Resident memory the process should stay under; above it, writes of at least `large_write_bytes_min` are
    /// refused with 503 naming this limit (reads and small writes go on). None: no limit.
    pub memory_limit_bytes: Option<u64>,
    /// Under memory pressure, a write whose body is at least this many bytes is refused.
    pub large_write_bytes_min: u64,
    /// After SIGTERM/SIGINT, requests in flight get this long to finish; connections still open then are cut and
    /// the store is closed.
    pub shutdown_grace_ms: u64,
    /// How the daemon writes its log on stderr (`medic serve --log-format` wins).
    pub log_format: LogFormat,
}

/// The daemon's log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`), for log collectors.
    Json,
}

/// `[http]`: limits of the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The largest request body accepted; larger ones get 413.
    pub request_body_bytes_max: u64,
    /// A request taking longer than this gets 503.
    pub request_timeout_ms: u64,
    /// The largest `k` a search accepts.
    pub search_k_max: u64,
    /// The most incidents `GET /v1/incidents` lists.
    pub incidents_listed_max: u64,
    /// The most client connections open at once; one more is answered 503 and closed. Checked at start against
    /// the descriptor limit, so that clients never take the descriptors the store needs.
    pub connections_max: u64,
    /// A connection must deliver a complete request head within this: from accept for its first request, from
    /// the first byte for later ones; otherwise it is closed.
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// The largest body of a bulk ingest (`POST /v1/docs`, NDJSON); larger ones get 413. The body is held in memory
    /// while it is validated.
    pub bulk_body_bytes_max: u64,
    /// The most documents one bulk ingest body may hold.
    pub bulk_docs_max: u64,
    /// Operators' bearer tokens, name → token (`[http.operators]`): a request carrying one is accepted wherever
    /// `server.token` is, and the operator's name is recorded with each action; with any configured, operators'
    /// actions need a token. At most [`OPERATORS_MAX`].
    pub operators: std::collections::BTreeMap<String, String>,
}

/// The most operators `[http.operators]` may name.
pub const OPERATORS_MAX: usize = 1_000;
/// The longest operator name.
pub const OPERATOR_NAME_BYTES_MAX: usize = 64;

/// `[checks]`: how often each tier of health checks runs, and the cycle's time limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// Interval of the shallow tier; the healing loop runs one cycle this often.
    pub shallow_interval_ms: u64,
    /// Interval of the deep tier.
    pub deep_interval_ms: u64,
    /// Interval of the comprehensive tier (full scrub).
    pub comprehensive_interval_ms: u64,
    /// Whether the synthetic probe (put, get, search, delete of a reserved document) runs in the shallow tier.
    pub probe: bool,
    /// The synthetic probe runs at most this often.
    pub probe_interval_ms: u64,
    /// Each step of the synthetic probe must take at most this long.
    pub probe_step_ms_max: u64,
    /// The time limit of a shallow check (the store's quick check, the derived indexes' lag) that sets none of its
    /// own.
    pub shallow_timeout_ms: u64,
    /// The time limit of a deep check that sets none of its own.
    pub deep_timeout_ms: u64,
    /// The time limit of a comprehensive check (the scrub) that sets none of its own.
    pub comprehensive_timeout_ms: u64,
    /// Runs in a row of one check past its time limit before the overrun is a `check_timeout` issue; a single
    /// overrun of a check that completes is only noted.
    pub overruns_before_issue: u32,
}

/// `[constraints]`: bounds the store is kept within.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConstraintsConfig {
    /// Free space (disk or quota) below this: the store reports `disk_space_low` and compaction is due.
    pub disk_free_bytes_min: u64,
    /// Free space below this: the store turns read-only until space returns. At most `disk_free_bytes_min`.
    pub disk_free_critical_bytes_min: u64,
    /// A write-ahead log larger than this gets a snapshot, and the segments it covers are dropped.
    pub wal_bytes_max: u64,
    /// The open WAL segment is sealed (parity written) and a new one started at this size; at most `wal_bytes_max`
    /// (a larger value is taken as `wal_bytes_max`).
    pub segment_bytes_max: u64,
}

/// `[notify]`: where the engine's alerts go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Write every alert to the log (stderr) as a warning.
    pub log: bool,
    /// POST every alert as JSON to this `http://` or `https://` URL.
    pub webhook_url: Option<String>,
    /// PEM file of the certificate authorities an `https://` webhook's certificate must chain to, instead of
    /// Mozilla's roots (a private CA).
    pub webhook_ca_file: Option<std::path::PathBuf>,
    /// One webhook POST may take this long.
    pub webhook_timeout_ms: u64,
    /// The webhook body's shape: `json` (medic's alert), `slack`, `pagerduty` (Events API v2).
    pub webhook_format: crate::notify::WebhookFormat,
    /// Headers sent with every webhook POST, e.g. `Authorization = "Bearer ..."` (values are secrets: `medic
    /// config` redacts them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub webhook_headers: BTreeMap<String, String>,
    /// Retries of a webhook POST that failed to connect or got a 429 or 5xx, with a doubling backoff from 500 ms.
    pub webhook_retries: u32,
    /// PagerDuty's integration (routing) key, required with `webhook_format = "pagerduty"` (redacted).
    pub pagerduty_routing_key: Option<String>,
    /// Append every alert to this JSON Lines file, one object a line.
    pub file: Option<PathBuf>,
    /// The file is renamed to `<file>.1` and started anew once it would grow past this.
    pub file_bytes_max: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            log: true,
            webhook_url: None,
            webhook_ca_file: None,
            webhook_timeout_ms: 5_000,
            webhook_format: crate::notify::WebhookFormat::Json,
            webhook_headers: BTreeMap::new(),
            webhook_retries: 3,
            pagerduty_routing_key: None,
            file: None,
            file_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// Headers a webhook may carry at most.
pub const WEBHOOK_HEADERS_MAX: usize = 32;

/// `[metrics]`: metric history kept for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// How long metric history is kept.
    pub history_retention_hours: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7878".to_string(),
            data_dir: PathBuf::from("./medic-data"),
            token: None,
            memory_limit_bytes: None,
            large_write_bytes_min: 64 * 1024,
            shutdown_grace_ms: 10_000,
            log_format: LogFormat::Text,
        }
    }
}

impl HttpConfig {
    /// Checks a search's `k` against `search_k_max`; the daemon and offline commands both use it, so one limit
    /// holds wherever a search runs.
    pub fn check_search_k(&self, k: u64) -> Result<usize, String> {
        if k == 0 || k > self.search_k_max {
            return Err(format!(
                "k = {k} is out of range: accepted 1..={} (http.search_k_max)",
                self.search_k_max
            ));
        }
        Ok(usize::try_from(k).unwrap_or(usize::MAX))
    }

    /// Checks how many incidents a listing asks for against `incidents_listed_max` (daemon and offline alike).
    pub fn check_incidents_limit(&self, limit: u64) -> Result<usize, String> {
        if limit == 0 || limit > self.incidents_listed_max {
            return Err(format!(
                "limit = {limit} is out of range: accepted 1..={} (http.incidents_listed_max)",
                self.incidents_listed_max
            ));
        }
        Ok(usize::try_from(limit).unwrap_or(usize::MAX))
    }

    /// Checks `connections_max` against the process's descriptor limit (`None`: unlimited): every connection holds
    /// a descriptor, and [`DESCRIPTORS_RESERVED`] + [`REFUSALS_MAX`] must stay free for the store and the rest, so
    /// that no number of clients can make the store's own opens fail.
    pub fn check_descriptors(&self, limit: Option<u64>) -> Result<(), ConfigError> {
        let Some(limit) = limit else { return Ok(()) };
        let kept = DESCRIPTORS_RESERVED + REFUSALS_MAX;
        if self.connections_max.saturating_add(kept) <= limit {
            return Ok(());
        }
        let room = limit.saturating_sub(kept);
        let range = if room == 0 {
            "no value".to_string()
        } else {
            format!("1..={room}")
        };
        Err(ConfigError::Invalid {
            key: "http.connections_max",
            value: self.connections_max.to_string(),
            accepted: format!(
                "{range} here: the descriptor limit (RLIMIT_NOFILE, hard) is {limit} and medic keeps \
                 {DESCRIPTORS_RESERVED} for the store, the knowledge base and the runtime and {REFUSALS_MAX} to \
                 refuse excess connections; lower http.connections_max or raise the hard limit (ulimit -Hn, \
                 systemd LimitNOFILE=)"
            ),
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_body_bytes_max: 16 * 1024 * 1024,
            request_timeout_ms: 30_000,
            search_k_max: 1_000,
            incidents_listed_max: 1_000,
            connections_max: 512,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            bulk_body_bytes_max: 256 * 1024 * 1024,
            bulk_docs_max: 1_000_000,
            operators: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            shallow_interval_ms: 5_000,
            deep_interval_ms: 60_000,
            comprehensive_interval_ms: 3_600_000,
            probe: true,
            probe_interval_ms: 60_000,
            probe_step_ms_max: 1_000,
            shallow_timeout_ms: 100,
            deep_timeout_ms: 5_000,
            comprehensive_timeout_ms: 30_000,
            overruns_before_issue: 2,
        }
    }
}

impl ChecksConfig {
    /// The checks' time limits for the engine's scheduler.
    pub fn timeouts(&self) -> heal::schedule::CheckTimeouts {
        heal::schedule::CheckTimeouts {
            shallow_us: self.shallow_timeout_ms.saturating_mul(1_000),
            deep_us: self.deep_timeout_ms.saturating_mul(1_000),
            comprehensive_us: self.comprehensive_timeout_ms.saturating_mul(1_000),
            overruns_before_issue: self.overruns_before_issue,
        }
    }
}

impl Default for ConstraintsConfig {
    fn default() -> Self {
        Self {
            disk_free_bytes_min: 256 * 1024 * 1024,
            disk_free_critical_bytes_min: 64 * 1024 * 1024,
            wal_bytes_max: 512 * 1024 * 1024,
            segment_bytes_max: 64 * 1024 * 1024,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            history_retention_hours: 168,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than [`CONFIG_FILE_BYTES_MAX`].
    #[error("config {path}: {actual} bytes is over config_file_bytes_max = {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
        /// The file's size.
        actual: u64,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type); the message names the line and key.
    #[error("config {path}: {message}")]
    Parse {
        /// The file (or `<text>` when parsed from a string).
        path: PathBuf,
        /// What the parser said, with the location.
        message: String,
    },
    /// An `[engine]` value is outside its accepted range (the message names key, value and range).
    #[error("config: {0}")]
    Engine(String),
    /// A `[[targets]]` entry is invalid (the message names the target, key, value and what is accepted).
    #[error("config: {0}")]
    Targets(String),
    /// A `[[maintenance]]` window is invalid (the message names the entry, key, value and what is accepted).
    #[error("config: {0}")]
    Maintenance(String),
    /// An `[escalation]` receiver or policy is invalid (the message names the key, the value and what is accepted).
    #[error("config: {0}")]
    Escalation(String),
    /// A command-line flag's value is invalid (the flag, the value and why).
    #[error("{flag} {value:?} is invalid: {reason}")]
    Flag {
        /// The flag, e.g. `--listen`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused and what is accepted.
        reason: String,
    },
    /// A value is outside its accepted range.
    #[error("config: {key} = {value} is invalid: accepted {accepted}")]
    Invalid {
        /// The key, e.g. `http.request_body_bytes_max`.
        key: &'static str,
        /// The value given.
        value: String,
        /// The accepted range or form.
        accepted: String,
    },
    /// A value of the file at `path` is invalid: the error above with the file, and the line of its key when found.
    #[error("config {path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the key, when the file holds it.
        line: Option<u64>,
        /// What is wrong (the key, the value and what is accepted).
        message: String,
    },
}

impl ConfigError {
    /// A validation error located in the file at `path` whose text is `text`: the file named, and the line of the
    /// key the message starts with (`engine.approval_risk_max = 1.5 ...` → the line `approval_risk_max = ...`),
    /// when one line sets it. Errors that already name their file stay as they are.
    pub fn in_file(self, path: &Path, text: &str) -> ConfigError {
        let message = match &self {
            ConfigError::Engine(m)
            | ConfigError::Targets(m)
            | ConfigError::Maintenance(m)
            | ConfigError::Escalation(m) => m.clone(),
            ConfigError::Invalid { .. } => {
                self.to_string().trim_start_matches("config: ").to_string()
            }
            _ => return self,
        };
        let line = key_line(text, &message);
        ConfigError::InFile {
            path: path.to_path_buf(),
            line,
            message,
        }
    }
}

/// The 1-based line of `text` that sets the key `message` starts with (its last dotted part, an index dropped):
/// none when no line or several lines set such a key.
fn key_line(text: &str, message: &str) -> Option<u64> {
    let key = message
        .split([' ', '=', ':', ','])
        .next()
        .unwrap_or_default();
    let last = key.rsplit('.').next().unwrap_or_default();
    let last = last.split('[').next().unwrap_or_default();
    if last.is_empty() || !last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let mut found = text.lines().enumerate().filter(|(_, l)| {
        l.trim_start()
            .strip_prefix(last)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    match (found.next(), found.next()) {
        (Some((n, _)), None) => Some(n as u64 + 1),
        _ => None,
    }
}

/// A valid-but-unusual value, reported at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key.
    pub key: &'static str,
    /// What is unusual about it.
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config: {}: {}", self.key, self.message)
    }
}

fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
    unit: &str,
) -> Result<(), ConfigError> {
    // NaN compares false with everything, so it is refused here too.
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            value: value.to_string(),
            accepted: format!("{min}..={max}{unit}"),
        })
    }
}

/// Whether `addr` (an `IP:PORT`) is a loopback address.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Why [`read_regular_file`] failed.
enum Bounded {
    /// The file holds more than the limit: its size (or the bytes read before stopping).
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads a regular file of at most `limit` bytes. Opened without blocking (a FIFO no one writes would otherwise hold
/// the reader, and with it a reload, forever), then refused unless it is a regular file (a FIFO, a device such as
/// `/dev/zero` that never ends, a socket); read through a bound, so a file growing while read stops at the limit.
fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, Bounded> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(Bounded::Io)?;
    let meta = file.metadata().map_err(Bounded::Io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(Bounded::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file: {what}"),
        )));
    }
    if meta.len() > limit {
        return Err(Bounded::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Bounded::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Bounded::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

impl Config {
    /// Reads, parses and validates a configuration file. Returns the configuration and its warnings.
    pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let config = Self::read(path)?;
        let warnings = config.validate_file(path)?;
        Ok((config, warnings))
    }

    /// [`Config::validate`] of the configuration read from `path`: an error names the file, and the line when
    /// the key is found there.
    pub fn validate_file(&self, path: &Path) -> Result<Vec<ConfigWarning>, ConfigError> {
        self.validate().map_err(|e| {
            // Read as `read` reads it (never blocking on a FIFO swapped in since, never past the limit).
            let text = read_regular_file(path, CONFIG_FILE_BYTES_MAX)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            e.in_file(path, &text)
        })
    }

    /// Reads and parses a configuration file without validating it (for command-line overrides before
    /// [`Config::validate`]).
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bytes = read_regular_file(path, CONFIG_FILE_BYTES_MAX).map_err(|e| match e {
            Bounded::TooLarge(actual) => ConfigError::TooLarge {
                path: path.to_path_buf(),
                limit: CONFIG_FILE_BYTES_MAX,
                actual,
            },
            Bounded::Io(e) => read_err(e),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("not UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
        })?;
        Self::parse_at(&text, path)
    }

    /// Parses TOML text (not validated).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Self::parse_at(text, Path::new("<text>"))
    }

    fn parse_at(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // Durations given with units ("30s") become integers in their key's unit, on the same lines.
        let text = crate::duration::rewrite(text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|_| ConfigError::Invalid {
                key: "server.listen",
                value: format!("{:?}", self.server.listen),
                accepted: "an IP:PORT address such as \"127.0.0.1:7878\" or \"[::1]:7878\"".into(),
            })
    }

    /// Why `listen` is not an IP:PORT address, in words (`None` when it is one).
    pub fn listen_problem(listen: &str) -> Option<String> {
        if listen.parse::<SocketAddr>().is_ok() {
            return None;
        }
        let accepted = "give IP:PORT, such as 127.0.0.1:7878 (this machine only), [::1]:7878 or 0.0.0.0:7878 \
                        (every interface); port 0 picks a free one";
        let (host, port) = match listen.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => {
                (h.trim_start_matches('[').trim_end_matches(']'), Some(p))
            }
            _ => (listen, None),
        };
        let why = match port {
            None => "it has no port".to_string(),
            Some(p) if p.parse::<u16>().is_err() => format!("{p:?} is not a port (0 to 65535)"),
            Some(_) if host.parse::<std::net::IpAddr>().is_err() => format!(
                "{host:?} is not an IP address (host names are not looked up: for this machine use 127.0.0.1)"
            ),
            Some(_) => "it is not an IP:PORT address".to_string(),
        };
        Some(format!("{why}; {accepted}"))
    }

    /// Refuses values outside their range; returns warnings for unusual but valid ones.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut warnings = Vec::new();
        let addr = self.listen_addr()?;
        match &self.server.token {
            Some(t)
                if t.is_empty()
                    || t.len() > 4096
                    || t.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                return Err(ConfigError::Invalid {
                    key: "server.token",
                    value: "<hidden>".into(),
                    accepted: "1..=4096 characters, no whitespace or control characters".into(),
                });
            }
            Some(t) if t.len() < 16 => warnings.push(ConfigWarning {
                key: "server.token",
                message: format!("only {} characters; use at least 16", t.len()),
            }),
            None if !is_loopback(&addr) => {
                return Err(ConfigError::Invalid {
                    key: "server.token",
                    value: "<none>".into(),
                    accepted: format!(
                        "a token: server.listen = {addr} is not a loopback address, so mutating requests need a bearer token"
                    ),
                });
            }
            _ => {}
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "server.data_dir",
                value: "\"\"".into(),
                accepted: "a directory path".into(),
            });
        }

        let h = &self.http;
        check_range(
            "http.request_body_bytes_max",
            h.request_body_bytes_max,
            1024,
            1 << 30,
            " bytes",
        )?;
        check_range(
            "http.request_timeout_ms",
            h.request_timeout_ms,
            100,
            3_600_000,
            " ms",
        )?;
        check_range("http.search_k_max", h.search_k_max, 1, 100_000, "")?;
        check_range(
            "http.bulk_body_bytes_max",
            h.bulk_body_bytes_max,
            1024,
            1 << 34,
            " bytes",
        )?;
        check_range("http.bulk_docs_max", h.bulk_docs_max, 1, 100_000_000, "")?;
        check_range(
            "http.incidents_listed_max",
            h.incidents_listed_max,
            1,
            100_000,
            "",
        )?;
        check_range(
            "http.connections_max",
            h.connections_max,
            1,
            CONNECTIONS_MAX_MAX,
            " (and at most the descriptor limit less what the store keeps; checked at start)",
        )?;
        check_range(
            "http.header_read_timeout_ms",
            h.header_read_timeout_ms,
            100,
            600_000,
            " ms",
        )?;
        check_range(
            "http.idle_timeout_ms",
            h.idle_timeout_ms,
            100,
            3_600_000,
            " ms",
        )?;
        check_range(
            "server.shutdown_grace_ms",
            self.server.shutdown_grace_ms,
            0,
            600_000,
            " ms",
        )?;

        let c = &self.checks;
        check_range(
            "checks.shallow_interval_ms",
            c.shallow_interval_ms,
            10,
            3_600_000,
            " ms",
        )?;
        check_range(
            "checks.deep_interval_ms",
            c.deep_interval_ms,
            c.shallow_interval_ms,
            86_400_000,
            " ms (at least checks.shallow_interval_ms)",
        )?;
        check_range(
            "checks.comprehensive_interval_ms",
            c.comprehensive_interval_ms,
            c.deep_interval_ms,
            7 * 86_400_000,
            " ms (at least checks.deep_interval_ms)",
        )?;
        check_range(
            "checks.probe_interval_ms",
            c.probe_interval_ms,
            10,
            86_400_000,
            " ms",
        )?;
        check_range(
            "checks.probe_step_ms_max",
            c.probe_step_ms_max,
            1,
            3_600_000,
            " ms",
        )?;
        for (key, v) in [
            ("checks.shallow_timeout_ms", c.shallow_timeout_ms),
            ("checks.deep_timeout_ms", c.deep_timeout_ms),
            (
                "checks.comprehensive_timeout_ms",
                c.comprehensive_timeout_ms,
            ),
        ] {
            check_range(key, v, 1, 3_600_000, " ms")?;
        }
        check_range(
            "checks.overruns_before_issue",
            u64::from(c.overruns_before_issue),
            1,
            100,
            "",
        )?;
        check_range(
            "server.large_write_bytes_min",
            self.server.large_write_bytes_min,
            0,
            1 << 40,
            " bytes",
        )?;
        if let Some(m) = self.server.memory_limit_bytes {
            check_range("server.memory_limit_bytes", m, 1 << 20, 1 << 50, " bytes")?;
        }
        if c.shallow_interval_ms < 1_000 {
            warnings.push(ConfigWarning {
                key: "checks.shallow_interval_ms",
                message: format!(
                    "{} ms is very frequent; the healing loop will use CPU constantly",
                    c.shallow_interval_ms
                ),
            });
        }

        let k = &self.constraints;
        check_range(
            "constraints.disk_free_bytes_min",
            k.disk_free_bytes_min,
            0,
            1 << 50,
            " bytes",
        )?;
        check_range(
            "constraints.disk_free_critical_bytes_min",
            k.disk_free_critical_bytes_min,
            0,
            k.disk_free_bytes_min,
            " bytes (at most constraints.disk_free_bytes_min)",
        )?;
        check_range(
            "constraints.wal_bytes_max",
            k.wal_bytes_max,
            WAL_BYTES_MAX_MIN,
            1 << 50,
            " bytes",
        )?;
        check_range(
            "constraints.segment_bytes_max",
            k.segment_bytes_max,
            SEGMENT_BYTES_MAX_MIN,
            1 << 40,
            " bytes",
        )?;
        if k.disk_free_bytes_min < 16 * 1024 * 1024 {
            warnings.push(ConfigWarning {
                key: "constraints.disk_free_bytes_min",
                message: format!(
                    "{} bytes leaves little room to repair or compact before the disk is full",
                    k.disk_free_bytes_min
                ),
            });
        }

        let e = &self.engine;
        e.validate().map_err(ConfigError::Engine)?;
        if e.dry_run {
            warnings.push(ConfigWarning {
                key: "engine.dry_run",
                message: "true: repairs are planned and reported but nothing is changed".into(),
            });
        }
        if e.approval_risk_max >= 1.0 {
            warnings.push(ConfigWarning {
                key: "engine.approval_risk_max",
                message: "1.0: every repair runs without approval, however risky".into(),
            });
        }
        if e.anomaly_cutoff < 0.5 {
            warnings.push(ConfigWarning {
                key: "engine.anomaly_cutoff",
                message: format!(
                    "{} is very sensitive; expect many false positives",
                    e.anomaly_cutoff
                ),
            });
        }

        check_range(
            "metrics.history_retention_hours",
            self.metrics.history_retention_hours,
            1,
            24 * 366,
            " hours",
        )?;

        self.report.validate()?;
        self.diagnostics.validate()?;
        self.check_operators(&mut warnings)?;

        let n = &self.notify;
        check_range(
            "notify.webhook_timeout_ms",
            n.webhook_timeout_ms,
            100,
            60_000,
            " ms",
        )?;
        if let Some(url) = &n.webhook_url
            && !crate::notify::route::url_ok(url)
        {
            return Err(ConfigError::Invalid {
                key: "notify.webhook_url",
                value: url.clone(),
                accepted:
                    "an http:// or https://HOST[:PORT]/PATH URL of at most 2048 bytes without spaces"
                        .into(),
            });
        }
        if n.webhook_ca_file.is_some()
            && !n
                .webhook_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        {
            warnings.push(ConfigWarning {
                key: "notify.webhook_ca_file",
                message: "set without an https:// notify.webhook_url: it is not used".into(),
            });
        }
        check_range(
            "notify.webhook_retries",
            u64::from(n.webhook_retries),
            0,
            10,
            "",
        )?;
        check_range(
            "notify.file_bytes_max",
            n.file_bytes_max,
            4096,
            1 << 40,
            " bytes",
        )?;
        if n.webhook_headers.len() > WEBHOOK_HEADERS_MAX {
            return Err(ConfigError::Invalid {
                key: "notify.webhook_headers",
                value: format!("{} headers", n.webhook_headers.len()),
                accepted: format!("at most {WEBHOOK_HEADERS_MAX} (webhook_headers_max)"),
            });
        }
        for (name, value) in &n.webhook_headers {
            if let Some(accepted) = crate::notify::route::header_problem(name, value) {
                return Err(ConfigError::Invalid {
                    key: "notify.webhook_headers",
                    value: format!("{name:?} = <{} bytes>", value.len()),
                    accepted: accepted.into(),
                });
            }
        }
        let pagerduty = n.webhook_format == crate::notify::WebhookFormat::Pagerduty;
        match (&n.pagerduty_routing_key, pagerduty) {
            (None, true) => {
                return Err(ConfigError::Invalid {
                    key: "notify.pagerduty_routing_key",
                    value: "none".into(),
                    accepted:
                        "the integration key of a PagerDuty Events API v2 service (required with \
                               webhook_format = \"pagerduty\")"
                            .into(),
                });
            }
            (Some(k), true)
                if k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_control()) =>
            {
                return Err(ConfigError::Invalid {
                    key: "notify.pagerduty_routing_key",
                    value: format!("<{} bytes>", k.len()),
                    accepted: "1..=256 bytes without control characters".into(),
                });
            }
            (Some(_), false) => warnings.push(ConfigWarning {
                key: "notify.pagerduty_routing_key",
                message: "set without webhook_format = \"pagerduty\": it is not used".into(),
            }),
            _ => {}
        }
        if n.webhook_format != crate::notify::WebhookFormat::Json && n.webhook_url.is_none() {
            warnings.push(ConfigWarning {
                key: "notify.webhook_format",
                message: "set without notify.webhook_url: it is not used".into(),
            });
        }
        if !n.log && n.webhook_url.is_none() && n.file.is_none() {
            warnings.push(ConfigWarning {
                key: "notify.log",
                message: "false with no notify.webhook_url or notify.file: alerts reach no one (they stay in \
                          /v1/incidents)"
                    .into(),
            });
        }
        self.escalation
            .validate()
            .map_err(ConfigError::Escalation)?;
        for name in self.escalation.unused_receivers() {
            warnings.push(ConfigWarning {
                key: "escalation.receivers",
                message: format!("receiver {name:?} is in no policy's levels: it is not used"),
            });
        }
        crate::target::validate(&self.targets).map_err(ConfigError::Targets)?;
        crate::maintenance::compile_all(&self.maintenance).map_err(ConfigError::Maintenance)?;
        Ok(warnings)
    }
}

impl Config {
    /// `[http.operators]`: names of `[A-Za-z0-9._-]`, at most [`OPERATOR_NAME_BYTES_MAX`] bytes, not `local`;
    /// tokens like `server.token`, each used once (a token names exactly one operator).
    fn check_operators(&self, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
        let ops = &self.http.operators;
        if ops.len() > OPERATORS_MAX {
            return Err(ConfigError::Invalid {
                key: "http.operators",
                value: format!("{} operators", ops.len()),
                accepted: format!("at most operators_max = {OPERATORS_MAX}"),
            });
        }
        let mut seen = std::collections::BTreeMap::new();
        for (name, token) in ops {
            if name.is_empty()
                || name.len() > OPERATOR_NAME_BYTES_MAX
                || name == "local"
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(ConfigError::Invalid {
                    key: "http.operators",
                    value: format!("{name:?}"),
                    accepted: format!(
                        "operator names of 1..={OPERATOR_NAME_BYTES_MAX} letters, digits, '.', '_' or '-', \
                         other than \"local\""
                    ),
                });
            }
            if token.is_empty()
                || token.len() > 4096
                || token.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::Invalid {
                    key: "http.operators",
                    value: format!("{name} = <hidden>"),
                    accepted: "tokens of 1..=4096 characters, no whitespace or control characters"
                        .into(),
                });
            }
            if let Some(other) = seen.insert(token.as_str(), name.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "http.operators",
                    value: format!("{other} and {name} = <hidden>"),
                    accepted: "a token of its own for each operator (the token names who acted)"
                        .into(),
                });
            }
            if self.server.token.as_deref() == Some(token.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "http.operators",
                    value: format!("{name} = <hidden>"),
                    accepted: "a token other than server.token (the token names who acted)".into(),
                });
            }
            if token.len() < 16 {
                warnings.push(ConfigWarning {
                    key: "http.operators",
                    message: format!(
                        "{name}'s token has only {} characters; use at least 16",
                        token.len()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// What `medic config` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

impl Config {
    /// This configuration with every secret replaced by [`REDACTED`]: `server.token`, each operator's token in
    /// `[http.operators]` (the names stay, they say who may act) and the password of a postgres target's `url`. What `medic config` prints: a configuration
    /// shown on a terminal, pasted into an issue or kept in a CI log must not hand out the keys.
    pub fn redacted(&self) -> Config {
        let mut shown = self.clone();
        if shown.server.token.is_some() {
            shown.server.token = Some(REDACTED.to_string());
        }
        for token in shown.http.operators.values_mut() {
            *token = REDACTED.to_string();
        }
        for value in shown.notify.webhook_headers.values_mut() {
            *value = REDACTED.to_string();
        }
        if shown.notify.pagerduty_routing_key.is_some() {
            shown.notify.pagerduty_routing_key = Some(REDACTED.to_string());
        }
        shown.escalation.redact(REDACTED);
        for t in &mut shown.targets {
            if t.kind == crate::target::TargetKind::Postgres
                && let Some(url) = &t.url
            {
                t.url = Some(crate::target::postgres::session::redact_url(url));
            }
        }
        shown
    }
}

/// The documented default configuration: every option, its meaning and its default. Parses back to
/// [`Config::default()`].
pub fn default_toml() -> String {
    let mut out = String::from(DEFAULT_TOML);
    out.push_str(&engine_toml());
    out
}

/// One line of documentation per `[engine]` key, from `heal::config::EngineConfig`.
const ENGINE_DOCS: &[(&str, &str)] = &[
    ("dry_run", "Decide and record repairs, but change nothing."),
    (
        "detector",
        "The anomaly detector per metric: zscore, mad, ewma, iqr, roc, seasonal, variance, range, likelihood, surprise or composite (the detectors combined as [engine.composite] says).",
    ),
    (
        "anomaly_cutoff",
        "A detector score at or above this raises an anomaly issue, (0, 1]. Lower is more sensitive.",
    ),
    (
        "false_positive_factor",
        "A false positive multiplies that metric's cut-off by this, [1, 2].",
    ),
    (
        "anomaly_cutoff_max",
        "The most a metric's cut-off can be raised to by false positives, [anomaly_cutoff, 1].",
    ),
    (
        "constraints",
        "Bounds on metrics that raise constraint-breach issues, none by default. Each entry: name, metric, lower and/or upper (the value must stay at or above / at or below), warning_fraction (0.8) and critical_fraction (0.95) of the utilisation, headroom (the distance from a one-sided bound where utilisation is 0; |bound| by default), auto_fix_available (false: a breach is escalated, no strategy tried). E.g. constraints = [{ name = \"wal_big\", metric = \"wal_bytes\", upper = 1e9 }].",
    ),
    (
        "correlation_window_us",
        "Issues this close (µs) to an incident's latest issue may join it, [1 s, 1 day].",
    ),
    (
        "quiet_period_us",
        "An incident with no new issue for this long (µs) is closed, [1 s, 7 days].",
    ),
    (
        "escalated_recheck_us",
        "An escalated incident's checks are re-run this often (µs); once they no longer find its problems it closes and its hold on writes ends, [100 ms, 1 day].",
    ),
    (
        "environment_grace_us",
        "A full disk or slow device no strategy can fix is watched this long (µs) for the environment to recover before it escalates, [0, 1 day].",
    ),
    (
        "approval_risk_max",
        "A repair strategy above this risk needs an operator's approval (`medic approve ID`), [0, 1].",
    ),
    (
        "approval_expiry_us",
        "An incident waiting this long for approval without an answer escalates, µs, [1 s, 7 days].",
    ),
    (
        "repair_timeout_us",
        "A repair step running longer than this is failed as overrun and rolled back, µs, [1 s, 1 day].",
    ),
    (
        "renotify_interval_us",
        "An escalated incident nobody acknowledged (`medic ack ID`) is notified again this often, µs; 0: never.",
    ),
    (
        "max_concurrent_repairs",
        "Repairs started in one cycle at most, [1, 64].",
    ),
    (
        "strategy_rate_max",
        "Attempts of one strategy per rate window at most, [1, 10000].",
    ),
    (
        "strategy_rate_window_us",
        "The rate-limit window, µs, [1 s, 7 days].",
    ),
    (
        "strategy_cooldown_us",
        "After a failed attempt a strategy rests this long, µs, [0, 1 day].",
    ),
    (
        "breaker_failures_max",
        "Consecutive failures that open a strategy's circuit breaker, [1, 100].",
    ),
    (
        "breaker_cooldown_us",
        "How long an open circuit breaker stays open before a trial, µs, [1 s, 7 days].",
    ),
    (
        "same_problem_failures_max",
        "Failed repairs of one problem before escalating instead, [1, 100].",
    ),
    (
        "breakage_resources_min",
        "At least this many resources failing at once, and more than breakage_share_max of those watched, stop automatic repair and escalate (the breakage cap); 0 (default): never, [0, 100000].",
    ),
    (
        "breakage_share_max",
        "The breakage cap's share of the watched resources, (0, 1].",
    ),
    (
        "recurring_repairs_max",
        "Successful automatic repairs of one problem within recurring_window_us after which it is escalated as recurring, with its history; 0: never, [0, 1000].",
    ),
    (
        "recurring_window_us",
        "The window of recurring_repairs_max, µs, and the least time between two recurring alerts of one problem, [1 min, 30 days].",
    ),
    (
        "success_rate_min",
        "Strategies whose estimated success rate is below this are skipped, [0, 1).",
    ),
    (
        "prior_successes",
        "Prior successes of every strategy (Beta prior), (0, 1000].",
    ),
    (
        "prior_failures",
        "Prior failures of every strategy (Beta prior), (0, 1000].",
    ),
    (
        "warn_incidents_min",
        "Escalation rises to WARN with this many open incidents, [1, 1000].",
    ),
    (
        "deescalate_quiet_us",
        "Escalation steps down one level after this long without a new issue, µs.",
    ),
    (
        "escalation_alert_cooldown_us",
        "An escalation alert is not repeated for one problem within this, µs.",
    ),
    (
        "incidents_active_max",
        "Open incidents kept at most; further ones are counted and dropped.",
    ),
    (
        "issues_per_incident_max",
        "Issues kept per incident at most.",
    ),
    (
        "cycle_issues_max",
        "Issues taken per healing cycle at most.",
    ),
    ("metrics_max", "Metrics with a detector at most."),
    (
        "false_positive_silence_us",
        "A false positive silences anomalies of the metrics it marked for this long, µs, [1 s, 30 days].",
    ),
    (
        "rate_events_min",
        "A counter's rate is judged only when a cycle's count differs from what its baseline predicts by at least this many, [0, 1e9].",
    ),
    (
        "flat_samples_min",
        "A gauge that held one value this many samples in a row is flat: its first step is not judged; 0 is off.",
    ),
    (
        "latency_floor_us",
        "Latency gauges below this many µs are not judged (no client notices them); 0 is off.",
    ),
    (
        "anomaly_for_samples",
        "A metric raises an anomaly only after this many anomalous samples in a row, [1, 100].",
    ),
    (
        "trends",
        "Sustained-growth rules (slow leaks): metric, growth_per_hour_max (relative), sustained_us.",
    ),
    (
        "recent_anomalies_max",
        "Recent anomalies kept for escalation reports.",
    ),
    (
        "kb_records_max",
        "Incident records read from the knowledge base for KPIs and at start-up.",
    ),
];

/// A comment before each `[engine.composite...]` table: what it configures.
const COMPOSITE_SECTION_DOCS: &[(&str, &str)] = &[
    (
        "engine.composite.likelihood",
        "The likelihood detector (kind = \"likelihood\"): a causal raw score against a short level and the hour-of-day profile, the anomaly likelihood of its short average, new extremes, one alarm per event.",
    ),
    (
        "engine.composite.surprise",
        "The surprise detector (kind = \"surprise\"): the likelihood detector with a raw score that does not saturate, new extremes ranked above ordinary points without alarming, and one report per event whatever the threshold.",
    ),
    (
        "engine.composite",
        "The composite anomaly detector (engine.detector = \"composite\"), one per metric. Once a `lead` detector has \
         judged a point, the composite scores the largest lead score; while every lead warms up, the other \
         weighted detectors stand in (weighted power mean). Defaults chosen on the NAB slice (BENCHMARKS.md).",
    ),
    (
        "engine.composite.weights",
        "Weight of each detector, [0, 1000000]; 0 leaves it out. At least one must be above 0.",
    ),
    (
        "engine.composite.cutoffs",
        "Score cut-offs of the anomaly levels info <= low <= medium <= high <= critical, each in [0, 1]. A critical \
         anomaly is a SEV2 incident, below it SEV3.",
    ),
    (
        "engine.composite.zscore",
        "Rolling z-score: distance from the window's mean in standard deviations.",
    ),
    (
        "engine.composite.mad",
        "Rolling median/MAD: distance from the window's median in robust standard deviations.",
    ),
    (
        "engine.composite.ewma",
        "EWMA: distance from an exponentially weighted mean in weighted standard deviations.",
    ),
    (
        "engine.composite.iqr",
        "IQR fences: distance beyond the window's quartiles in interquartile ranges.",
    ),
    (
        "engine.composite.roc",
        "Rate of change: a step between points far outside the window's usual steps.",
    ),
    (
        "engine.composite.seasonal",
        "Seasonal profile: distance from what is usual for this hour of the day (or week).",
    ),
    (
        "engine.composite.variance",
        "Variance change: a short window's spread against the long-run spread (noise bursts, flatlines).",
    ),
    (
        "engine.composite.range",
        "Range novelty: a value beyond everything the metric has shown, past a tolerance.",
    ),
];

/// One line per key of the `[engine.composite...]` tables: `section.key` first, then the key alone (shared by the
/// detectors' tables).
const COMPOSITE_KEY_DOCS: &[(&str, &str)] = &[
    (
        "engine.composite.combine_power",
        "Exponent of the stand-ins' weighted power mean, [1, 64]: 1 is the mean, larger moves towards the maximum.",
    ),
    (
        "engine.composite.kind",
        "What the composite runs: \"surprise\" (the default: the detector of [engine.composite.surprise], the detectors below standing in while it warms up), \"legacy\" (the detectors below) or \"likelihood\" (the causal anomaly-likelihood detector of [engine.composite.likelihood]); BENCHMARKS.md compares them.",
    ),
    (
        "engine.composite.likelihood.level_horizon",
        "Horizon (points) of the level the raw score measures from, [1, 1e7].",
    ),
    (
        "engine.composite.likelihood.history_horizon",
        "Horizon (points) of the spreads and of the histogram of the short average of raw scores, [1, 1e9].",
    ),
    (
        "engine.composite.likelihood.short_window",
        "Raw scores in the short average, [1, 10000].",
    ),
    (
        "engine.composite.likelihood.alarm_rate",
        "Probability per point, under the fitted tail of the short average of raw scores, at which it scores an alarm (the calibrated false-alarm rate), (0, 0.5].",
    ),
    (
        "engine.composite.likelihood.tail_fraction",
        "Upper fraction of the short average's histogram beyond which its tail is a fitted generalized Pareto, (0, 0.5].",
    ),
    (
        "engine.composite.likelihood.extreme_tolerance",
        "How far beyond the range seen, as a fraction of its width, a value must lie to be a new extreme, [0, 1e6].",
    ),
    (
        "engine.composite.likelihood.surprise",
        "Spreads from the expected value at which the raw score is 0.5; a new extreme must lie at least this far, (0, 1e6].",
    ),
    (
        "engine.composite.likelihood.extreme_evidence",
        "Fraction of an alarm's log-probability a new extreme just beyond the tolerance needs to alarm (less the further beyond), (0, 1].",
    ),
    (
        "engine.composite.likelihood.warm_up",
        "Points seen before judging (score 0 until then), [0, 1e9].",
    ),
    (
        "engine.composite.surprise.level_horizon",
        "Horizon (points) of the level the raw score measures from, [1, 1e7].",
    ),
    (
        "engine.composite.surprise.history_horizon",
        "Horizon (points) of the spreads and of the histogram of the short average of raw scores, [20, 1e9]; a tenth of it is the refractory horizon.",
    ),
    (
        "engine.composite.surprise.short_window",
        "Raw scores in the short average, [1, 10000].",
    ),
    (
        "engine.composite.surprise.alarm_rate",
        "Probability per point, under the fitted tail of the short average of raw scores, at which it scores an alarm (the calibrated false-alarm rate), (0, 0.5].",
    ),
    (
        "engine.composite.surprise.extreme_tolerance",
        "How far beyond the range seen, as a fraction of its width, a value must lie to be a new extreme (ranked 0.5 to 0.7, not alarmed), [0, 1e6].",
    ),
    (
        "engine.composite.surprise.surprise",
        "Spreads from the expected value at which the raw score rises; a new extreme must lie at least half as far, (0, 1e6].",
    ),
    (
        "engine.composite.surprise.warm_up",
        "Points seen before judging (score 0 until then), [0, 1e9].",
    ),
    (
        "engine.composite.surprise.step_score",
        "true (the default) adds a second raw score, the step from the previous value against the spread of steps (at that hour of the day once the profile judges), with its own tail probability (the point's is the smaller of the two); false is the surprise detector without it. BENCHMARKS.md has both.",
    ),
    (
        "engine.composite.lead",
        "Detectors (by name) that lead once any of them has judged a point; [] averages every weighted detector.",
    ),
    (
        "engine.composite.refractory_trigger",
        "A score at or above this starts a refractory period, (0, 1].",
    ),
    (
        "engine.composite.refractory_points",
        "Points after a trigger during which the leads' scores are damped, [0, 100000].",
    ),
    (
        "engine.composite.refractory_factor",
        "What damped scores are multiplied by, [0, 1].",
    ),
    (
        "engine.composite.refractory_breakout",
        "A point this many times further from the last calm value than the trigger was is not damped; 0 turns it off.",
    ),
    ("info", "Lowest score of an informational anomaly."),
    ("low", "Lowest score of a low anomaly."),
    ("medium", "Lowest score of a medium anomaly."),
    ("high", "Lowest score of a high anomaly."),
    ("critical", "Lowest score of a critical anomaly."),
    ("window", "Points in the rolling window, [2, 100000]."),
    (
        "short_window",
        "Points in the short window compared with the long run, [2, 100000].",
    ),
    (
        "min_samples",
        "Points (for seasonal: per bucket) seen before the detector judges; it abstains until then.",
    ),
    (
        "threshold",
        "Deviations at or below this score 0, [0, 1000000].",
    ),
    (
        "fence",
        "Interquartile ranges beyond the quartiles at or below which a point scores 0.",
    ),
    (
        "scale",
        "How fast the score rises past the threshold: 0.5 at threshold + scale, (0, 1000000].",
    ),
    (
        "alpha",
        "Weight of the newest point in the baseline, (0, 1].",
    ),
    ("season", "hour_of_day (24 buckets) or hour_of_week (168)."),
    (
        "tolerance",
        "How far beyond the range seen, as a fraction of its width, a value may lie and still score 0.",
    ),
];

/// The documentation line of `key` in the table `section`, if it has one.
/// What each array of tables of `[engine]` holds (shown once, above its first entry), and its keys.
const ENGINE_TABLE_DOCS: &[(&str, &str)] = &[
    (
        "engine.trends",
        "Trend rules, one [[engine.trends]] table each: a metric growing faster than a rate for a sustained span (a leak, not a step) raises a trend issue. Writing any replaces the defaults below; the list may be emptied with trends = [] in [engine].",
    ),
    (
        "engine.trends.metric",
        "The metric, as its samples name it (see `medic history`).",
    ),
    (
        "engine.trends.growth_per_hour_max",
        "The largest relative growth per hour that is not a leak, e.g. 0.05 for 5 %/hour, (0, 100].",
    ),
    (
        "engine.trends.sustained_us",
        "How long the growth must last (µs), each half of the span growing too, [1 min, 7 days].",
    ),
    (
        "engine.known_causes",
        "Known causes, one [[engine.known_causes]] table each: an issue of code `effect` close in time to one of code `cause` is diagnosed as caused by it, with the hypothesis as its root cause. Writing any replaces the defaults below.",
    ),
    (
        "engine.known_causes.effect",
        "The code of the symptom, e.g. latency_anomaly.",
    ),
    (
        "engine.known_causes.cause",
        "The code of the cause, e.g. index_fragmentation.",
    ),
    (
        "engine.known_causes.hypothesis",
        "The root cause stated in one line, e.g. \"a fragmented index slows queries\".",
    ),
    (
        "engine.alert_rules",
        "Alert rules, one [[engine.alert_rules]] table each: `count` issues of `code` at `severity_max` or worse within `window_us` send one alert to the notifiers, then none for `cooldown_us`. Writing any replaces the defaults below.",
    ),
    (
        "engine.alert_rules.name",
        "A name, part of the alert's dedup key.",
    ),
    (
        "engine.alert_rules.code",
        "The issue code it matches, or \"*\" for any.",
    ),
    (
        "engine.alert_rules.severity_max",
        "It matches issues of this severity or worse: Sev0 (data at risk) to Sev3.",
    ),
    (
        "engine.alert_rules.count",
        "Matching issues needed within the window.",
    ),
    ("engine.alert_rules.window_us", "The window, µs."),
    (
        "engine.alert_rules.cooldown_us",
        "Quiet time after the rule fired, µs.",
    ),
];

fn key_doc(section: &str, key: &str) -> Option<&'static str> {
    if let Some((_, d)) = ENGINE_TABLE_DOCS
        .iter()
        .find(|(k, _)| k.strip_prefix(section).and_then(|r| r.strip_prefix('.')) == Some(key))
    {
        return Some(d);
    }
    if section == "engine" {
        return ENGINE_DOCS.iter().find(|(k, _)| *k == key).map(|(_, d)| *d);
    }
    if section == "engine.composite.weights" {
        let detector = format!("engine.composite.{key}");
        return COMPOSITE_SECTION_DOCS
            .iter()
            .find(|(k, _)| *k == detector)
            .map(|(_, d)| *d);
    }
    let full = format!("{section}.{key}");
    COMPOSITE_KEY_DOCS
        .iter()
        .find(|(k, _)| *k == full)
        .or_else(|| COMPOSITE_KEY_DOCS.iter().find(|(k, _)| *k == key))
        .map(|(_, d)| *d)
}

/// The `[engine]` section: `heal::config::EngineConfig::default()` serialized, each key preceded by its
/// documentation line and each composite table by what it configures. Generated, so it always matches the engine's
/// defaults.
fn engine_toml() -> String {
    #[derive(Serialize)]
    struct Wrapper<'a> {
        engine: &'a EngineConfig,
    }
    let text = match toml::to_string(&Wrapper {
        engine: &EngineConfig::default(),
    }) {
        Ok(t) => t,
        Err(e) => return format!("\n# [engine] defaults could not be shown: {e}\n"),
    };
    let mut out = String::from(
        "\n# The healing engine: detectors, diagnosis, safety gates, escalation. Times are microseconds (µs).\n",
    );
    let mut section = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            // An array of tables: what it holds, above its first entry.
            if name != section {
                out.push('\n');
                if let Some((_, doc)) = ENGINE_TABLE_DOCS.iter().find(|(k, _)| *k == name) {
                    out.push_str(&comment(doc));
                }
            }
            section = name.to_string();
        } else if let Some(name) = line
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .filter(|l| !l.starts_with('['))
        {
            section = name.to_string();
            if section != "engine" {
                out.push('\n');
            }
            if let Some((_, doc)) = COMPOSITE_SECTION_DOCS.iter().find(|(k, _)| *k == section) {
                out.push_str(&comment(doc));
            }
        } else if let Some((key, _)) = line.split_once(" = ") {
            out.push_str(&comment(key_doc(&section, key.trim()).unwrap_or(
                "An [engine] setting; see README.md \"Engine\" (this key has no description yet).",
            )));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `text` as TOML comment lines of at most about 116 characters.
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 116 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

const DEFAULT_TOML: &str = r#"# medic configuration. Every option is shown with its default value.
# Load with `medic serve --config FILE`; unknown keys are refused.
# Durations: a key ending in _ms, _us or _secs takes an integer in that unit, or a string with units such as
# "250ms", "30s", "5m", "2h", "1d" or "1h30m".

[server]
# IP:PORT the HTTP API listens on. Port 0 picks a free port (the real address is printed on stdout).
listen = "127.0.0.1:7878"
# The data directory: the store's files and the knowledge base (medic.sqlite3). Created if absent.
data_dir = "./medic-data"
# Bearer token required (`Authorization: Bearer <token>`) on every mutating request: PUT, DELETE, POST.
# Required when `listen` is not a loopback address; without one, medic refuses to start there.
# token = "a-long-random-string"
# Resident memory the process should stay under (1048576..=2^50 bytes); above it, writes of at least
# large_write_bytes_min bytes get 503 naming this limit, before the kernel kills the process. No limit by default.
# memory_limit_bytes = 1073741824
# Under memory pressure, a write whose body is at least this many bytes is refused (0..=2^40).
large_write_bytes_min = 65536
# After SIGTERM/SIGINT, requests in flight get this long to finish (0..=600000 ms); connections still open then
# (a client that never sends the rest of its body, say) are cut, and the store is closed cleanly either way.
shutdown_grace_ms = 10000
# The daemon's log on stderr: "text" (a line for people) or "json" (one JSON object per line, for log collectors).
# `medic serve --log-format` wins over this.
log_format = "text"

[http]
# The largest request body accepted, in bytes (1024..=1073741824). Larger bodies get 413.
request_body_bytes_max = 16777216
# A request that takes longer than this gets 503 (100..=3600000 ms).
request_timeout_ms = 30000
# The largest `k` a search accepts (1..=100000).
search_k_max = 1000
# The most incidents `GET /v1/incidents` lists, newest first (1..=100000).
incidents_listed_max = 1000
# The most client connections open at once (1..=1000000); one more is answered 503 at once and closed. At start
# medic raises its soft descriptor limit (RLIMIT_NOFILE) to the hard one and refuses to start unless the limit is at
# least connections_max + 288: 256 descriptors kept for the store, the knowledge base and the runtime, 32 for
# answering excess connections. So clients can never take the descriptors the store needs.
connections_max = 512
# A connection must send a complete request head within this (100..=600000 ms): from accept for its first request,
# from the request's first byte for later ones. Slower clients are disconnected.
header_read_timeout_ms = 10000
# A kept-alive connection with no request for this long is closed (100..=3600000 ms).
idle_timeout_ms = 30000
# The largest body of a bulk ingest, `POST /v1/docs` with one JSON document a line (1024..=17179869184 bytes);
# larger ones get 413. The body is held in memory while every line is validated, before anything is written.
bulk_body_bytes_max = 268435456
# The most documents in one bulk ingest body (1..=100000000).
bulk_docs_max = 1000000

# Operators' bearer tokens, one `name = "token"` each (at most 1000). A request carrying one is accepted wherever
# server.token is, and the name is recorded with every action it takes (approve, deny, ack, resolve, reopen,
# annotate, false-positive, breaker reset, silences); with any configured, those actions need a token. Without
# tokens, actions are recorded as done by "local".
[http.operators]
# alice = "a-long-random-string-for-alice"

[checks]
# The shallow tier (headers, liveness, a sample of blocks) runs this often; so does the healing cycle (10..=3600000 ms).
shallow_interval_ms = 5000
# The deep tier (blocks written since the last check, index agreement); at least shallow_interval_ms.
deep_interval_ms = 60000
# The comprehensive tier (full scrub); at least deep_interval_ms, at most a week.
comprehensive_interval_ms = 3600000
# The synthetic probe: put, get, search and delete one document under the reserved id prefix `.medic/` (never listed,
# never found by a search, refused to clients), each step against probe_step_ms_max; a failure is an issue.
probe = true
# The probe runs at most this often, at the next healing cycle when due (10..=86400000 ms).
probe_interval_ms = 60000
# Each probe step must take at most this long (1..=3600000 ms).
probe_step_ms_max = 1000
# The time limit of a check of each tier that sets none of its own (the store's quick check and the indexes' lag are
# shallow, the incremental check and index agreement deep, the scrub comprehensive; a target's probe takes its
# timeout_ms plus 1 s) (1..=3600000 ms). A run past it is measured on the clock, whatever the check returned.
shallow_timeout_ms = 100
deep_timeout_ms = 5000
comprehensive_timeout_ms = 30000
# Runs in a row of one check past its time limit before the overrun is a `check_timeout` issue (1..=100): a single
# slow run of a check that then completes (a busy machine) is only noted in the check's result.
overruns_before_issue = 2

[constraints]
# Free space (disk or quota) below this many bytes: the store reports `disk_space_low` and compaction is due.
disk_free_bytes_min = 268435456
# Free space below this many bytes: the store turns read-only until space returns (at most disk_free_bytes_min).
disk_free_critical_bytes_min = 67108864
# A write-ahead log larger than this many bytes gets a snapshot; covered segments are dropped (at least 1048576).
wal_bytes_max = 536870912
# The open WAL segment is sealed (parity sidecar written) at this many bytes (65536..=2^40; taken as wal_bytes_max
# when larger).
segment_bytes_max = 67108864

[metrics]
# Hours of metric history kept in the knowledge base (1..=8784).
history_retention_hours = 168

[report]
# Daily and weekly reports (medic report --daily, GET /v1/reports/daily) hold the period's KPIs against these
# targets: mean time to detect and to repair at most (ms, 0..=86400000), the share of incidents needing action
# repaired without a human at least, and the share of false positives at most (0..=1).
mttd_ms_max = 60000.0
mttr_ms_max = 300000.0
auto_remediation_rate_min = 0.9
false_positive_rate_max = 0.1
# Reports on a schedule: at daily_at (HH:MM, in zone) the daily report of the day before is written to dir as
# Markdown and HTML (daily-YYYY-MM-DD.md/.html); on weekly_day (monday..sunday) at that time the weekly report of
# the seven days before too (weekly-YYYY-MM-DD.*, the last day covered). A report missed while the daemon was down
# is written when it starts. Unset daily_at: no scheduled reports.
# daily_at = "07:00"
# weekly_day = "monday"
# The IANA time zone of daily_at and of the days scheduled reports cover.
zone = "UTC"
# Where scheduled reports go (default <data dir>/reports).
# dir = "/var/lib/medic/reports"
# Reports covering days more than keep_days ago are removed (0: never), and past keep_count of a period the oldest
# (0: no limit); the newest of each period is always kept.
keep_days = 30
keep_count = 0
# Send each scheduled report through the notifiers of [notify] too (a summary and the files' paths).
deliver = false

[diagnostics]
# When an incident opens, keep a diagnostic bundle (the event, the metrics judged, the store's state, suggestions)
# in <data dir>/diagnostics/<id>.json: GET /v1/incidents/ID/bundle, medic bundle ID.
enabled = true
# Bundles older than keep_days are removed (0: never), and past keep_count the oldest (0: no limit).
keep_days = 30
keep_count = 1000
# A bundle older than this is gzip-compressed (<id>.json.gz).
compress_after_ms = 86400000

[notify]
# Write every alert (data at risk, repeated serious issues, escalations) to the log on stderr as a warning.
log = true
# POST every alert as one JSON object to this http:// or https:// URL (delivered from a queue; the healing cycle
# never waits). An https:// server's certificate must chain to Mozilla's roots, or to webhook_ca_file's CAs.
# webhook_url = "https://hooks.example.com/medic-alerts"
# PEM file of the certificate authorities to trust for an https:// webhook instead (a private CA).
# webhook_ca_file = "/etc/medic/webhook-ca.pem"
# One webhook POST may take this long (100..=60000 ms).
webhook_timeout_ms = 5000
# The body's shape: "json" (the alert as medic's JSON), "slack" (an incoming webhook's {"text"}), or "pagerduty"
# (Events API v2 to https://events.pagerduty.com/v2/enqueue: trigger, acknowledge, resolve, one dedup key per
# incident; needs pagerduty_routing_key).
webhook_format = "json"
# pagerduty_routing_key = "R0123456789ABCDEF0123456789ABCDE"
# Headers sent with every POST (values are redacted by `medic config`), at most 32.
# webhook_headers = { Authorization = "Bearer s3cret" }
# A POST that cannot connect or gets a 429 or 5xx is retried this many times (0..=10), waiting 0.5 s, 1 s, 2 s...
webhook_retries = 3
# Append every alert to this JSON Lines file, one object a line.
# file = "/var/log/medic/alerts.jsonl"
# The file is renamed to <file>.1 and started anew past this size (4096..=2^40 bytes).
file_bytes_max = 67108864

# Escalation policies route escalations to named receivers, level by level (none by default: the [notify]
# notifiers above receive every alert, as they always did, and keep doing so beside any policy). An escalated
# incident is notified to level 1 at once, reminded every engine.renotify_interval_us until `medic ack ID`, and
# notified to the next level when nobody acknowledges within the level's delay_ms ("5m" or ms, 100..=604800000);
# `acknowledged` and `resolved` go to every receiver that was notified. The first policy whose severity_max
# ("Sev0".."Sev3", default every severity) covers an alert routes it; other alerts go to its level 1.
# At most 32 receivers, 16 policies, 8 levels a policy, 16 receivers a level.
[escalation]
# [[escalation.receivers]]
# name = "oncall"
# kind = "pagerduty"               # webhook | slack | pagerduty | file | email
# url = "https://events.pagerduty.com/v2/enqueue"
# routing_key = "R0123456789ABCDEF0123456789ABCDE"   # redacted by `medic config`
# headers = { Authorization = "Bearer s3cret" }      # redacted by `medic config`
# ca_file = "/etc/medic/ca.pem"     # https:// with a private CA
# timeout_ms = 5000                 # 100..=60000
# retries = 3                       # 0..=10
# [[escalation.receivers]]
# name = "team-chat"
# kind = "slack"
# url = "https://hooks.slack.com/services/T000/B000/XXXX"
# [[escalation.receivers]]
# name = "audit"
# kind = "file"
# path = "/var/log/medic/escalations.jsonl"
# bytes_max = 67108864              # rotated to <path>.1 past this
# [[escalation.receivers]]
# name = "mail"
# kind = "email"                   # one plain-text mail per alert naming incident, severity and `medic ack ID`
# host = "smtp.example.com"
# port = 587
# tls = "starttls"                  # none | starttls | tls (implicit, port 465)
# username = "medic"
# password = "s3cret"               # redacted by `medic config`
# from = "medic <medic@example.com>"
# to = ["oncall@example.com"]       # at most 32
# [[escalation.policies]]
# name = "data"
# severity_max = "Sev1"
# [[escalation.policies.levels]]
# delay_ms = "15m"
# receivers = ["team-chat", "audit"]
# [[escalation.policies.levels]]
# delay_ms = "30m"
# receivers = ["oncall"]

[playbooks]
# A directory of playbooks (*.yaml): repairs of the [[targets]] written as data. Loaded and checked when
# `medic serve` starts (an invalid one stops the start, naming file and line); `medic playbooks check DIR` checks
# without running. None by default.
# dir = "/etc/medic/playbooks"

# Maintenance windows, one [[maintenance]] table each (none by default, at most 64). While a window is open, an
# automatic repair whose first strategy's risk is above the window's risk_max waits (status `deferred`, naming the
# window) while it is open. A bad entry stops the start (exit 2). See docs/contracts/operators.md "Maintenance
# windows".
# [[maintenance]]
# name = "weekly"                  # named in the decisions and the log
# cron = "0 2 * * SUN"             # when it opens: five fields, minute first, UTC
# duration = "2h"                  # how long it stays open from each start, at most 7 days
# risk_max = 0.2                   # [0, 1]; 0 holds every automatic repair while it is open

# Services medic watches beside its store, one [[targets]] table each (none by default). Issues are on the
# resource `target.NAME`, readings are samples `target.NAME.READING`. See README "Supervising other services".
# [[targets]]
# name = "web"                     # a-z, 0-9, `_`, `-`; not `store`
# kind = "http"                    # probed with GET
# url = "http://127.0.0.1:8080/health"
# interval_ms = 5000               # 100..=3600000
# timeout_ms = 2000                # 1..=10000: the probe holds the engine's cycle at most this long
# expect_status = 200
# body_match = "ok"                # optional: text the first 64 KiB of the body contain
# failures_before_down = 3         # endpoint_down after this many failed probes in a row (1..=100)
#
# [[targets]]
# name = "worker"
# kind = "process"                 # started and supervised by medic; process_dead when it exits
# command = ["/usr/local/bin/worker", "--port", "9000"]
# env = { RUST_LOG = "info" }
# dir = "/srv/worker"
# interval_ms = 1000
# restarts_max = 5                 # restarts within restart_window_ms before medic gives up and escalates
# restart_window_ms = 600000
# backoff_ms = 1000                # wait before a restart, doubled per restart in the window (at most 60000)
#
# [[targets]]
# name = "svc"
# kind = "process"                 # watched, not started: pid = N or pidfile instead of command
# pidfile = "/run/svc.pid"         # read anew every check: pidfile_missing, pidfile_invalid, pidfile_stale
# interval_ms = 1000               # process_dead once the pid seen running is gone
# restart_command = ["systemctl", "restart", "svc"]   # run by a playbook's run_restart_command step
#
# [[targets]]
# name = "db"                      # at most 40 bytes for a postgres target
# kind = "postgres"                # probed over a connection; see README "Healing PostgreSQL"
# url = "postgres://medic:PASSWORD@127.0.0.1:5432/app"   # or "host=/run/postgresql dbname=app"; password redacted when shown
# interval_ms = 5000
# timeout_ms = 2000                # 1..=10000: connect and every query of one probe together
# failures_before_down = 3         # pg_down after this many failed probes in a row
# connections_used_max = 0.9       # pg_connections_exhausted at this fraction of max_connections
# idle_in_transaction_s_max = 300  # pg_idle_in_transaction (evidence: the backends' pids)
# query_s_max = 300                # pg_long_query (evidence: pid and statement)
# dead_tuple_ratio_max = 0.2       # pg_bloat (evidence: schema and table)
# bloat_rows_min = 1000            # smaller tables are not judged for bloat
# replication_lag_s_max = 60       # pg_replication_lag, on a replica (pg_is_in_recovery())
# amcheck_interval_ms = 3600000    # bt_index_check of the B-tree indexes (deep tier; needs CREATE EXTENSION amcheck)
# amcheck_timeout_ms = 30000
# amcheck_indexes_max = 100
# restart_command = ["systemctl", "restart", "postgresql"]   # run by run_restart_command (pg_down's default playbook)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_parses_back_to_default_and_is_valid() {
        let parsed = Config::parse(&default_toml()).expect("default_toml parses");
        assert_eq!(parsed, Config::default());
        assert_eq!(parsed.validate().expect("default is valid"), vec![]);
    }

    #[test]
    fn every_option_is_documented_in_default_toml() {
        let value = toml::Value::try_from(Config::default()).expect("serializes");
        let table = value.as_table().expect("a table");
        for (section, inner) in table {
            assert!(
                default_toml().contains(&format!("[{section}]")),
                "section [{section}] missing"
            );
            for (key, v) in inner.as_table().expect("sections are tables") {
                let text = default_toml();
                let shown = text.contains(&format!("\n{key} = "))
                    || (v.is_table() && text.contains(&format!("\n[{section}.{key}]")))
                    || (v.is_array() && text.contains(&format!("\n[[{section}.{key}]]")));
                assert!(shown, "{section}.{key} is not documented in default_toml");
            }
        }
        // token has no default value, so it is shown commented out.
        assert!(default_toml().contains("# token = "));
        // Every engine key has its own line of documentation, not the fallback.
        let engine = table["engine"].as_table().unwrap();
        for key in engine.keys() {
            if !engine[key].is_table() && !engine[key].is_array() || key == "constraints" {
                assert!(
                    ENGINE_DOCS.iter().any(|(k, _)| k == key),
                    "engine.{key} has no line in ENGINE_DOCS"
                );
            }
        }
        // So has every key of the composite and of each of its detectors, and each of their tables.
        let composite = engine["composite"].as_table().unwrap();
        for (key, v) in composite {
            let Some(inner) = v.as_table() else {
                assert!(
                    key_doc("engine.composite", key).is_some(),
                    "engine.composite.{key} undocumented"
                );
                continue;
            };
            let section = format!("engine.composite.{key}");
            assert!(
                COMPOSITE_SECTION_DOCS.iter().any(|(k, _)| *k == section),
                "[{section}] has no comment"
            );
            for k in inner.keys() {
                assert!(key_doc(&section, k).is_some(), "{section}.{k} undocumented");
            }
        }
        assert!(default_toml().contains("# Range novelty: a value beyond everything"));
        // Each array of tables of [engine] is described in words, never by a Rust path.
        let text = default_toml();
        assert!(!text.contains("heal::"), "a Rust path in default_toml");
        assert!(
            !text.contains("has no description yet"),
            "an undocumented key"
        );
        for (key, v) in engine {
            if v.is_array() && key != "constraints" {
                let section = format!("engine.{key}");
                assert!(
                    ENGINE_TABLE_DOCS.iter().any(|(k, _)| *k == section),
                    "[[{section}]] has no comment"
                );
            }
        }
        // Every detector `detector` accepts is named in its documentation.
        let detector = ENGINE_DOCS
            .iter()
            .find(|(k, _)| *k == "detector")
            .unwrap()
            .1;
        for name in [
            "zscore",
            "mad",
            "ewma",
            "iqr",
            "roc",
            "seasonal",
            "variance",
            "range",
            "likelihood",
            "surprise",
            "composite",
        ] {
            assert!(
                heal::detect::by_name(name).is_some(),
                "{name} is a detector"
            );
            assert!(detector.contains(name), "detector {name} undocumented");
        }
        // Maintenance windows (empty by default) are shown with their keys.
        for key in [
            "[[maintenance]]",
            "# name = ",
            "# cron = ",
            "# duration = ",
            "# risk_max = ",
        ] {
            assert!(text.contains(key), "{key} missing from default_toml");
        }
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err = Config::parse("[http]\nrequest_body_byte_max = 5\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("request_body_byte_max"), "{msg}");
    }

    #[test]
    fn wrong_type_is_refused() {
        let err = Config::parse("[checks]\nshallow_interval_ms = \"fast\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("shallow_interval_ms"), "{err}");
    }

    #[test]
    fn out_of_range_names_key_value_and_range() {
        let mut c = Config::default();
        c.http.request_body_bytes_max = 10;
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("http.request_body_bytes_max"), "{msg}");
        assert!(msg.contains("= 10 "), "{msg}");
        assert!(msg.contains("1024..=1073741824"), "{msg}");

        let mut c = Config::default();
        c.engine.anomaly_cutoff = f64::NAN;
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("engine.anomaly_cutoff = NaN"), "{msg}");

        let mut c = Config::default();
        c.checks.deep_interval_ms = 1_000; // below the shallow interval
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "checks.deep_interval_ms",
                ..
            })
        ));
    }

    #[test]
    fn connection_bounds_are_validated_and_checked_against_the_descriptor_limit() {
        for (edit, key) in [
            (
                (|c: &mut Config| c.http.connections_max = 0) as fn(&mut Config),
                "http.connections_max",
            ),
            (
                |c: &mut Config| c.http.header_read_timeout_ms = 10,
                "http.header_read_timeout_ms",
            ),
            (
                |c: &mut Config| c.http.idle_timeout_ms = 7_200_000,
                "http.idle_timeout_ms",
            ),
            (
                |c: &mut Config| c.server.shutdown_grace_ms = 600_001,
                "server.shutdown_grace_ms",
            ),
        ] {
            let mut c = Config::default();
            edit(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(key), "{msg}");
        }

        let h = HttpConfig::default();
        assert!(h.check_descriptors(None).is_ok(), "unlimited");
        let kept = DESCRIPTORS_RESERVED + REFUSALS_MAX;
        assert!(h.check_descriptors(Some(h.connections_max + kept)).is_ok());
        let msg = h
            .check_descriptors(Some(1024))
            .map(|()| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(msg.is_empty(), "512 connections fit a limit of 1024: {msg}");
        let msg = h.check_descriptors(Some(700)).unwrap_err().to_string();
        for part in [
            "http.connections_max = 512",
            "1..=412",
            "is 700",
            "keeps 256",
        ] {
            assert!(msg.contains(part), "{part:?} missing: {msg}");
        }
        let msg = h.check_descriptors(Some(100)).unwrap_err().to_string();
        assert!(msg.contains("accepted no value here"), "{msg}");
    }

    #[test]
    fn non_loopback_without_token_is_refused_and_with_token_accepted() {
        let mut c = Config::default();
        c.server.listen = "0.0.0.0:7878".into();
        let err = c.validate().unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "server.token",
                    ..
                }
            ),
            "{err}"
        );
        c.server.token = Some("0123456789abcdef-secret".into());
        assert_eq!(c.validate().unwrap(), vec![]);
        c.server.listen = "[::1]:0".into();
        c.server.token = None;
        assert!(c.validate().is_ok(), "IPv6 loopback needs no token");
    }

    #[test]
    fn a_bad_listen_address_says_why() {
        assert_eq!(Config::listen_problem("127.0.0.1:0"), None);
        let p = Config::listen_problem("localhost:0").unwrap();
        assert!(p.starts_with("\"localhost\" is not an IP address"), "{p}");
        assert!(
            Config::listen_problem("127.0.0.1")
                .unwrap()
                .starts_with("it has no port")
        );
        assert!(
            Config::listen_problem("127.0.0.1:http")
                .unwrap()
                .contains("not a port")
        );
    }

    #[test]
    fn bad_listen_address_is_refused() {
        let mut c = Config::default();
        c.server.listen = "localhost".into();
        let err = c.validate().unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "server.listen",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unusual_values_give_warnings() {
        let mut c = Config::default();
        c.engine.dry_run = true;
        c.checks.shallow_interval_ms = 100;
        c.server.token = Some("short".into());
        let w = c.validate().unwrap();
        let keys: Vec<_> = w.iter().map(|w| w.key).collect();
        assert!(keys.contains(&"engine.dry_run"), "{keys:?}");
        assert!(keys.contains(&"checks.shallow_interval_ms"), "{keys:?}");
        assert!(keys.contains(&"server.token"), "{keys:?}");
    }

    #[test]
    fn load_reads_a_file_and_reports_missing_and_oversize_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("medic.toml");
        std::fs::write(&path, "[engine]\ndry_run = true\n").unwrap();
        let (c, w) = Config::load(&path).unwrap();
        assert!(c.engine.dry_run);
        assert_eq!(c.http, HttpConfig::default(), "missing sections default");
        assert_eq!(w.len(), 1);

        let missing = dir.path().join("nope.toml");
        let err = Config::load(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("nope.toml"), "{err}");

        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; CONFIG_FILE_BYTES_MAX as usize + 1]).unwrap();
        let err = Config::load(&big).unwrap_err();
        assert!(err.to_string().contains("config_file_bytes_max"), "{err}");
    }
}
