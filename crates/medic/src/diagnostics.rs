//! Diagnostic bundles: when an incident opens, what was known at that moment is kept in one JSON file,
//! `<data>/diagnostics/<incident id>.json` — the event (the incident record with its issues and evidence), a metrics
//! snapshot (the samples the engine judged in that cycle), the relevant state (health, escalation level, store
//! figures, derived indexes, what recovery at open did, the process's readings) and suggestions (the decision, the
//! strategies that can repair its issues with their risk, the commands to look further). People read it after the
//! fact, when the state has long changed.
//!
//! `[diagnostics]`: `keep_days` and `keep_count` bound how many are kept (oldest first by file time), and a bundle
//! older than `compress_after_ms` is gzip-compressed in place (`<id>.json.gz`, with `flate2`). Housekeeping runs
//! after each bundle is written and every minute in the daemon. [`read`] answers either form as JSON
//! (`GET /v1/incidents/{id}/bundle`, `medic bundle ID`).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::App;
use crate::config::ConfigError;

/// The directory under the data directory.
pub const DIAGNOSTICS_DIR: &str = "diagnostics";
/// The bundle format's version, in every bundle.
pub const BUNDLE_VERSION: u32 = 1;
/// Largest bundle written: past it, the metrics snapshot is left out (`truncated`).
pub const BUNDLE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest bundle read back (compressed or not, once decompressed).
pub const BUNDLE_READ_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Most files of the directory looked at by housekeeping.
pub const DIAGNOSTICS_ENTRIES_MAX: usize = 100_000;

/// `[diagnostics]`: the bundles kept per incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosticsConfig {
    /// Keep a bundle for each incident that opens.
    pub enabled: bool,
    /// Bundles older than this many days are removed (0: never).
    pub keep_days: u32,
    /// At most this many bundles are kept, the newest (0: no limit).
    pub keep_count: u32,
    /// A bundle older than this is gzip-compressed (`<id>.json.gz`).
    pub compress_after_ms: u64,
}

impl Default for DiagnosticsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keep_days: 30,
            keep_count: 1_000,
            compress_after_ms: 86_400_000,
        }
    }
}

impl DiagnosticsConfig {
    /// Every value within its range; the error names the key, the value and the range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let days_max = 3_660;
        if self.keep_days > days_max {
            return Err(ConfigError::Invalid {
                key: "diagnostics.keep_days",
                value: self.keep_days.to_string(),
                accepted: format!("0..={days_max} (0: never removed by age)"),
            });
        }
        let ms_max: u64 = u64::from(days_max) * 86_400_000;
        if self.compress_after_ms > ms_max {
            return Err(ConfigError::Invalid {
                key: "diagnostics.compress_after_ms",
                value: self.compress_after_ms.to_string(),
                accepted: format!("0..={ms_max} ms"),
            });
        }
        Ok(())
    }
}

/// The bundles' directory of the data directory `data`.
pub fn dir(data: &Path) -> PathBuf {
    data.join(DIAGNOSTICS_DIR)
}

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// None kept for that incident.
    #[error(
        "no diagnostic bundle for incident {0}: bundles are kept for incidents opened while diagnostics.enabled \
         is true, for diagnostics.keep_days and up to diagnostics.keep_count"
    )]
    NotFound(u64),
    /// It is there but cannot be read or decoded.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The bundle of incident `id` in the data directory `data`, compressed or not.
pub fn read(data: &Path, id: u64) -> Result<Value, BundleError> {
    let d = dir(data);
    let plain = d.join(format!("{id}.json"));
    let gz = d.join(format!("{id}.json.gz"));
    let unreadable = |path: &Path, reason: String| BundleError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let (path, bytes) = if plain.exists() {
        let f = std::fs::File::open(&plain).map_err(|e| unreadable(&plain, e.to_string()))?;
        let mut bytes = Vec::new();
        f.take(BUNDLE_READ_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(&plain, e.to_string()))?;
        (plain, bytes)
    } else if gz.exists() {
        let f = std::fs::File::open(&gz).map_err(|e| unreadable(&gz, e.to_string()))?;
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(f)
            .take(BUNDLE_READ_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(&gz, format!("not a gzip file: {e}")))?;
        (gz, bytes)
    } else {
        return Err(BundleError::NotFound(id));
    };
    if bytes.len() as u64 > BUNDLE_READ_BYTES_MAX {
        return Err(unreadable(
            &path,
            format!("over bundle_read_bytes_max = {BUNDLE_READ_BYTES_MAX}"),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| unreadable(&path, format!("not JSON: {e}")))
}

/// What the cycle summary `summary` (`App::run_cycle`'s answer) opened gets a bundle each, then housekeeping runs.
/// Failures are logged: a bundle is never worth failing a cycle for.
pub fn on_cycle(app: &App, summary: &Value) {
    let c = &app.config().diagnostics;
    if !c.enabled {
        return;
    }
    let opened: Vec<u64> = summary["incidents_opened"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    if opened.is_empty() {
        return;
    }
    for id in opened {
        match write(app, id, summary) {
            Ok(path) => {
                tracing::info!(incident = id, bundle = %path.display(), "diagnostic bundle kept")
            }
            Err(e) => tracing::warn!(incident = id, "diagnostic bundle not kept: {e:#}"),
        }
    }
    housekeeping(app, crate::daemon::reports::housekeeping_now(app));
}

/// Retention and compression of the bundles of `app`'s data directory at `now` (the daemon's housekeeping clock,
/// `crate::daemon::reports::housekeeping_now`); failures logged.
pub fn housekeeping(app: &App, now: heal::Timestamp) {
    let data = &app.config().server.data_dir;
    let now = SystemTime::UNIX_EPOCH + Duration::from_micros(now);
    match tidy(&dir(data), &app.config().diagnostics, now) {
        Ok(t) => {
            for p in t.removed {
                tracing::info!(bundle = %p.display(), "diagnostic bundle past retention removed");
            }
        }
        Err(e) => tracing::warn!("diagnostic bundles in {}: {e}", dir(data).display()),
    }
}

/// The bundle of incident `id` as opened in the cycle `summary`.
pub fn bundle(app: &App, id: u64, summary: &Value) -> anyhow::Result<Value> {
    let engine = app.engine();
    let record = engine.incident(id)?;
    let samples = engine.last_samples().to_vec();
    let escalation_level = engine.escalation_level();
    drop(engine);
    let Some(record) = record else {
        anyhow::bail!("incident {id} is not known to the engine");
    };
    let store = app.store();
    let repair_options: Vec<Value> = record
        .issues
        .iter()
        .map(|i| {
            json!({
                "issue": format!("[{}] {}", i.code, i.resource),
                "strategies": app.repair_options(i).into_iter()
                    .map(|(name, risk)| json!({ "strategy": name, "risk": risk }))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "format": "medic-diagnostic-bundle",
        "version": BUNDLE_VERSION,
        "incident_id": id,
        "created_at": app.now(),
        "event": record,
        "metrics": {
            "at": summary["at"],
            "samples": samples,
        },
        "state": {
            "health": summary["health"],
            "escalation_level": escalation_level,
            "checks_failed": summary["checks_failed"],
            "issues_in_cycle": summary["issues"],
            "store": store.stats(),
            "derived": store.derived().status(),
            "recovery": store.recovery_report(),
            "process": app.process_reading(),
        },
        "suggestions": {
            "decision": record.decision,
            "root_cause": record.root_cause,
            "repair_options": repair_options,
            "commands": [
                format!("medic report {id}"),
                "medic incidents --since -1h".to_string(),
                format!("medic ack {id}"),
            ],
        },
        "truncated": false,
    }))
}

/// Writes the bundle of incident `id` (temporary name, then renamed); returns its path.
pub fn write(app: &App, id: u64, summary: &Value) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let mut v = bundle(app, id, summary)?;
    let mut text = serde_json::to_vec_pretty(&v)?;
    if text.len() > BUNDLE_BYTES_MAX {
        v["metrics"]["samples"] = json!([]);
        v["truncated"] = json!(true);
        text = serde_json::to_vec_pretty(&v)?;
    }
    let d = dir(&app.config().server.data_dir);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let path = d.join(format!("{id}.json"));
    let tmp = d.join(format!(".{id}.json.tmp"));
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}

/// What [`tidy`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tidied {
    /// Bundles compressed (their new paths).
    pub compressed: Vec<PathBuf>,
    /// Bundles removed.
    pub removed: Vec<PathBuf>,
}

/// `<id>.json` or `<id>.json.gz` → the id.
fn bundle_id(name: &str) -> Option<u64> {
    let stem = name
        .strip_suffix(".json.gz")
        .or_else(|| name.strip_suffix(".json"))?;
    (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// Applies retention (`keep_days`, `keep_count`; by file time, the newest kept) and compression
/// (`compress_after_ms`) to the bundles in `d` at `now`. Files that are not bundles are left alone.
pub fn tidy(d: &Path, c: &DiagnosticsConfig, now: SystemTime) -> std::io::Result<Tidied> {
    let entries = match std::fs::read_dir(d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tidied::default()),
        Err(e) => return Err(e),
    };
    let mut bundles: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in entries.take(DIAGNOSTICS_ENTRIES_MAX) {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().and_then(bundle_id).is_none() {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        bundles.push((modified, entry.path()));
    }
    bundles.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let mut out = Tidied::default();
    let age = |t: SystemTime| now.duration_since(t).unwrap_or(Duration::ZERO);
    let too_old = Duration::from_secs(u64::from(c.keep_days) * 86_400);
    for (rank, (modified, path)) in bundles.iter().enumerate() {
        let old = c.keep_days > 0 && age(*modified) > too_old;
        let many = c.keep_count > 0 && rank >= c.keep_count as usize;
        if old || many {
            std::fs::remove_file(path)?;
            out.removed.push(path.clone());
            continue;
        }
        let is_plain = path.extension().is_some_and(|e| e == "json");
        if is_plain && age(*modified) >= Duration::from_millis(c.compress_after_ms) {
            out.compressed.push(compress(path, *modified)?);
        }
    }
    Ok(out)
}

/// `<id>.json` → `<id>.json.gz` (written under a temporary name, renamed, the original removed), keeping the file
/// time so retention still counts from when the bundle was made.
fn compress(path: &Path, modified: SystemTime) -> std::io::Result<PathBuf> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", path.display()));
    let bytes = std::fs::read(path)?;
    {
        let f = std::fs::File::create(&tmp)?;
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        enc.write_all(&bytes)?;
        let f = enc.finish()?;
        f.set_modified(modified)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)?;
    Ok(gz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(d: &Path, name: &str, age: Duration, now: SystemTime) {
        let p = d.join(name);
        std::fs::write(&p, br#"{"incident_id": 1}"#).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(now - age)
            .unwrap();
    }

    #[test]
    fn old_bundles_are_compressed_then_removed_and_other_files_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        let d = &dir(data);
        std::fs::create_dir_all(d).unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3_600);
        put(d, "1.json", 40 * 24 * hour, now);
        put(d, "2.json", 2 * hour, now);
        put(d, "3.json", Duration::ZERO, now);
        put(d, "notes.json", 90 * 24 * hour, now);
        let c = DiagnosticsConfig {
            keep_days: 30,
            compress_after_ms: 3_600_000,
            ..DiagnosticsConfig::default()
        };
        let t = tidy(d, &c, now).unwrap();
        assert_eq!(t.removed, [d.join("1.json")]);
        assert_eq!(t.compressed, [d.join("2.json.gz")]);
        assert!(!d.join("2.json").exists() && d.join("3.json").exists());
        assert!(d.join("notes.json").exists());
        // The compressed bundle reads back as the JSON it was.
        assert_eq!(read(data, 2).unwrap()["incident_id"], 1);
        assert!(matches!(read(data, 9), Err(BundleError::NotFound(9))));
        // Past keep_count the oldest go, whatever their age.
        let c = DiagnosticsConfig {
            keep_count: 1,
            ..DiagnosticsConfig::default()
        };
        put(d, "4.json", hour, now);
        let t = tidy(d, &c, now).unwrap();
        assert_eq!(t.removed, [d.join("4.json"), d.join("2.json.gz")]);
        assert!(d.join("3.json").exists());
    }
}
