//! Configuration: one TOML file, every option documented in [`default_toml`] and validated with bounds.
//!
//! [`Config::load`] reads and parses a file (unknown keys are refused, with their location); [`Config::validate`]
//! refuses a value outside its accepted range, naming the key, the value and the range, and returns warnings for
//! values that are valid but unusual. Every size is a named `*_bytes_max` / `*_min` limit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// Anomaly detection.
    pub detector: DetectorConfig,
    /// Bounds the store is kept within.
    pub constraints: ConstraintsConfig,
    /// Gates every repair passes.
    pub safety: SafetyConfig,
    /// Metric history kept for reports.
    pub metrics: MetricsConfig,
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
}

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
}

/// `[detector]`: anomaly detection over the store's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Score in (0, 1] above which a point is an anomaly; lower is more sensitive.
    pub score_threshold: f64,
    /// Points a detector sees before it scores anything.
    pub warmup_points: u64,
}

/// `[constraints]`: bounds the store is kept within.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConstraintsConfig {
    /// Free disk below this is a constraint breach; the store turns read-only before it runs out.
    pub disk_free_bytes_min: u64,
    /// A write-ahead log larger than this is a constraint breach (a snapshot and compaction are due).
    pub wal_bytes_max: u64,
}

/// `[safety]`: gates every repair passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetyConfig {
    /// Plan repairs but change nothing.
    pub dry_run: bool,
    /// Repairs whose estimated risk is above this wait for a human's approval.
    pub approval_risk_max: f64,
    /// Repairs running at once.
    pub repairs_concurrent_max: u64,
    /// Repairs started per hour; beyond it, issues are escalated.
    pub repairs_per_hour_max: u64,
    /// Consecutive failed repairs of one strategy that open its circuit breaker.
    pub breaker_failures_max: u64,
    /// How long an open circuit breaker stays open.
    pub breaker_cooldown_ms: u64,
}

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
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_body_bytes_max: 16 * 1024 * 1024,
            request_timeout_ms: 30_000,
            search_k_max: 1_000,
            incidents_listed_max: 1_000,
        }
    }
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            shallow_interval_ms: 5_000,
            deep_interval_ms: 60_000,
            comprehensive_interval_ms: 3_600_000,
        }
    }
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            score_threshold: 0.9,
            warmup_points: 30,
        }
    }
}

impl Default for ConstraintsConfig {
    fn default() -> Self {
        Self {
            disk_free_bytes_min: 256 * 1024 * 1024,
            wal_bytes_max: 1024 * 1024 * 1024,
        }
    }
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            approval_risk_max: 0.5,
            repairs_concurrent_max: 1,
            repairs_per_hour_max: 60,
            breaker_failures_max: 3,
            breaker_cooldown_ms: 600_000,
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

impl Config {
    /// Reads, parses and validates a configuration file. Returns the configuration and its warnings.
    pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let config = Self::read(path)?;
        let warnings = config.validate()?;
        Ok((config, warnings))
    }

    /// Reads and parses a configuration file without validating it (for command-line overrides before
    /// [`Config::validate`]).
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > CONFIG_FILE_BYTES_MAX {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                limit: CONFIG_FILE_BYTES_MAX,
                actual: len,
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
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
        toml::from_str(text).map_err(|e| ConfigError::Parse {
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
            "http.incidents_listed_max",
            h.incidents_listed_max,
            1,
            100_000,
            "",
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
        if c.shallow_interval_ms < 1_000 {
            warnings.push(ConfigWarning {
                key: "checks.shallow_interval_ms",
                message: format!(
                    "{} ms is very frequent; the healing loop will use CPU constantly",
                    c.shallow_interval_ms
                ),
            });
        }

        let d = &self.detector;
        if !(d.score_threshold > 0.0 && d.score_threshold <= 1.0) {
            return Err(ConfigError::Invalid {
                key: "detector.score_threshold",
                value: d.score_threshold.to_string(),
                accepted: "a number in (0, 1]".into(),
            });
        }
        if d.score_threshold < 0.5 {
            warnings.push(ConfigWarning {
                key: "detector.score_threshold",
                message: format!(
                    "{} is very sensitive; expect many false positives",
                    d.score_threshold
                ),
            });
        }
        check_range(
            "detector.warmup_points",
            d.warmup_points,
            2,
            100_000,
            " points",
        )?;

        let k = &self.constraints;
        check_range(
            "constraints.disk_free_bytes_min",
            k.disk_free_bytes_min,
            0,
            1 << 50,
            " bytes",
        )?;
        check_range(
            "constraints.wal_bytes_max",
            k.wal_bytes_max,
            1024 * 1024,
            1 << 50,
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

        let s = &self.safety;
        check_range(
            "safety.approval_risk_max",
            s.approval_risk_max,
            0.0,
            1.0,
            "",
        )?;
        check_range(
            "safety.repairs_concurrent_max",
            s.repairs_concurrent_max,
            1,
            64,
            "",
        )?;
        check_range(
            "safety.repairs_per_hour_max",
            s.repairs_per_hour_max,
            1,
            100_000,
            "",
        )?;
        check_range(
            "safety.breaker_failures_max",
            s.breaker_failures_max,
            1,
            1_000,
            "",
        )?;
        check_range(
            "safety.breaker_cooldown_ms",
            s.breaker_cooldown_ms,
            1_000,
            7 * 86_400_000,
            " ms",
        )?;
        if s.dry_run {
            warnings.push(ConfigWarning {
                key: "safety.dry_run",
                message: "true: repairs are planned and reported but nothing is changed".into(),
            });
        }
        if s.approval_risk_max >= 1.0 {
            warnings.push(ConfigWarning {
                key: "safety.approval_risk_max",
                message: "1.0: every repair runs without approval, however risky".into(),
            });
        }

        check_range(
            "metrics.history_retention_hours",
            self.metrics.history_retention_hours,
            1,
            24 * 366,
            " hours",
        )?;
        Ok(warnings)
    }
}

/// The documented default configuration: every option, its meaning and its default. Parses back to
/// [`Config::default()`].
pub fn default_toml() -> &'static str {
    DEFAULT_TOML
}

const DEFAULT_TOML: &str = r#"# medic configuration. Every option is shown with its default value.
# Load with `medic serve --config FILE`; unknown keys are refused.

[server]
# IP:PORT the HTTP API listens on. Port 0 picks a free port (the real address is printed on stdout).
listen = "127.0.0.1:7878"
# The data directory: the store's files and the knowledge base (medic.sqlite3). Created if absent.
data_dir = "./medic-data"
# Bearer token required (`Authorization: Bearer <token>`) on every mutating request: PUT, DELETE, POST.
# Required when `listen` is not a loopback address; without one, medic refuses to start there.
# token = "a-long-random-string"

[http]
# The largest request body accepted, in bytes (1024..=1073741824). Larger bodies get 413.
request_body_bytes_max = 16777216
# A request that takes longer than this gets 503 (100..=3600000 ms).
request_timeout_ms = 30000
# The largest `k` a search accepts (1..=100000).
search_k_max = 1000
# The most incidents `GET /v1/incidents` lists, newest first (1..=100000).
incidents_listed_max = 1000

[checks]
# The shallow tier (headers, liveness, a sample of blocks) runs this often; so does the healing cycle (10..=3600000 ms).
shallow_interval_ms = 5000
# The deep tier (blocks written since the last check, index agreement); at least shallow_interval_ms.
deep_interval_ms = 60000
# The comprehensive tier (full scrub); at least deep_interval_ms, at most a week.
comprehensive_interval_ms = 3600000

[detector]
# Anomaly score in (0, 1] above which a metric point is an anomaly. Lower is more sensitive.
score_threshold = 0.9
# Points a detector sees before it scores anything (2..=100000).
warmup_points = 30

[constraints]
# Free disk below this many bytes is a constraint breach; writes stop before the disk is full.
disk_free_bytes_min = 268435456
# A write-ahead log larger than this many bytes is a constraint breach (1048576..); a snapshot is due.
wal_bytes_max = 1073741824

[safety]
# Plan and report repairs but change nothing.
dry_run = false
# Repairs whose estimated risk (0..=1) is above this wait for a human's approval.
approval_risk_max = 0.5
# Repairs running at the same time (1..=64). Two repairs never touch one resource at once.
repairs_concurrent_max = 1
# Repairs started per hour (1..=100000); beyond this, issues are escalated instead.
repairs_per_hour_max = 60
# Consecutive failures of one strategy that open its circuit breaker (1..=1000).
breaker_failures_max = 3
# How long an open circuit breaker stays open, ms (1000..=604800000).
breaker_cooldown_ms = 600000

[metrics]
# Hours of metric history kept in the knowledge base (1..=8784).
history_retention_hours = 168
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_parses_back_to_default_and_is_valid() {
        let parsed = Config::parse(default_toml()).expect("default_toml parses");
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
            for key in inner.as_table().expect("sections are tables").keys() {
                assert!(
                    default_toml().contains(&format!("\n{key} = ")),
                    "{section}.{key} is not documented in default_toml"
                );
            }
        }
        // token has no default value, so it is shown commented out.
        assert!(default_toml().contains("# token = "));
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
        c.detector.score_threshold = f64::NAN;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "detector.score_threshold",
                ..
            })
        ));

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
        c.safety.dry_run = true;
        c.checks.shallow_interval_ms = 100;
        c.server.token = Some("short".into());
        let w = c.validate().unwrap();
        let keys: Vec<_> = w.iter().map(|w| w.key).collect();
        assert!(keys.contains(&"safety.dry_run"), "{keys:?}");
        assert!(keys.contains(&"checks.shallow_interval_ms"), "{keys:?}");
        assert!(keys.contains(&"server.token"), "{keys:?}");
    }

    #[test]
    fn load_reads_a_file_and_reports_missing_and_oversize_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("medic.toml");
        std::fs::write(&path, "[safety]\ndry_run = true\n").unwrap();
        let (c, w) = Config::load(&path).unwrap();
        assert!(c.safety.dry_run);
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
