//! Reading and writing NAB's files: the data series (`data/<category>/<file>.csv`), the anomaly windows
//! (`labels/combined_windows.json`), the profiles (`config/profiles.json`), and results files in NAB's results layout
//! (`<out>/<detector>/<category>/<detector>_<file>.csv`).
//!
//! The CSV files are parsed by hand rather than with the `csv` crate: NAB's files are plain comma-separated columns
//! without quoting, and reading them by hand keeps every error pointing at the exact file and line. Timestamps
//! (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC) are parsed by hand for the same reason; no date crate is needed for one
//! fixed format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest data or results CSV file read, bytes.
pub const SERIES_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Largest labels or profiles JSON file read, bytes.
pub const LABELS_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Most data files scored in one run.
pub const SERIES_COUNT_MAX: usize = 10_000;
/// Longest detector name, bytes.
pub const DETECTOR_NAME_BYTES_MAX: usize = 64;

/// Why reading or writing NAB's files failed. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NabError {
    /// The file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (shown in the message, not chained as a source, so it is printed once).
        error: std::io::Error,
    },
    /// The file is larger than the named limit.
    #[error("{path}: {size} bytes is over the limit {limit} = {max} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit's name.
        limit: &'static str,
        /// The limit.
        max: u64,
    },
    /// A line of a CSV file is malformed.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A JSON file is malformed or has the wrong shape.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The data set as a whole is not usable (no series, too many, a bad detector name, ...).
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NabError + '_ {
    move |error| NabError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Reads a whole file, refusing one over `max` bytes (`limit` names the limit in the error).
pub fn read_limited(path: &Path, limit: &'static str, max: u64) -> Result<String, NabError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let size = file.metadata().map_err(io_err(path))?.len();
    if size > max {
        return Err(NabError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
            max,
        });
    }
    let mut text = String::with_capacity(size as usize);
    // `take` guards against a file that grows while it is read.
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(io_err(path))?;
    if text.len() as u64 > max {
        return Err(NabError::TooLarge {
            path: path.to_path_buf(),
            size: text.len() as u64,
            limit,
            max,
        });
    }
    Ok(text)
}

/// Parses `YYYY-MM-DD HH:MM:SS` with an optional fraction of up to 6 digits (`.ffffff`), as UTC, into µs since the
/// UNIX epoch (negative before 1970). Returns a description of what is wrong on bad input.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let bad = || format!("timestamp {text:?} is not YYYY-MM-DD HH:MM:SS[.ffffff]");
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || (b[10] != b' ' && b[10] != b'T') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |from: usize, to: usize| -> Result<i64, String> {
        let s = &text[from..to];
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut micros = 0;
    if b.len() > 19 {
        let frac = &text[20..];
        if b[19] != b'.' || frac.is_empty() || frac.len() > 6 {
            return Err(bad());
        }
        if !frac.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        micros = frac.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(6 - frac.len() as u32);
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(format!("timestamp {text:?} is not a valid date and time"));
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One data series, as read from `data/<category>/<file>.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// NAB's key: `<category>/<file>.csv`.
    pub key: String,
    /// The timestamps exactly as written in the file, one per row.
    pub timestamp_text: Vec<String>,
    /// The values exactly as written in the file, one per row.
    pub value_text: Vec<String>,
    /// The timestamps, µs since the UNIX epoch.
    pub timestamps_us: Vec<i64>,
    /// The values.
    pub values: Vec<f64>,
}

impl Series {
    /// The category (the key's directory).
    pub fn category(&self) -> &str {
        self.key.split_once('/').map_or("", |(c, _)| c)
    }

    /// The file name (the key's last part).
    pub fn file_name(&self) -> &str {
        self.key.split_once('/').map_or(&self.key, |(_, f)| f)
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the series has no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The column indexes of a CSV header, by name.
fn header_columns(path: &Path, header: &str, wanted: &[&str]) -> Result<Vec<usize>, NabError> {
    let names: Vec<&str> = header
        .trim_end_matches('\r')
        .split(',')
        .map(str::trim)
        .collect();
    wanted
        .iter()
        .map(|w| {
            names
                .iter()
                .position(|n| n == w)
                .ok_or_else(|| NabError::Csv {
                    path: path.to_path_buf(),
                    line: 1,
                    message: format!("header {header:?} has no column {w:?}"),
                })
        })
        .collect()
}

/// The rows of a CSV text after its header, split into fields, with 1-based line numbers; blank lines are skipped.
fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            (
                i + 1,
                l.trim_end_matches('\r').split(',').map(str::trim).collect(),
            )
        })
}

fn field<'a>(
    path: &Path,
    line: usize,
    fields: &[&'a str],
    idx: usize,
) -> Result<&'a str, NabError> {
    fields.get(idx).copied().ok_or_else(|| NabError::Csv {
        path: path.to_path_buf(),
        line,
        message: format!(
            "row has {} fields, wanted at least {}",
            fields.len(),
            idx + 1
        ),
    })
}

/// Reads one data series (`timestamp,value`). `key` is its `<category>/<file>.csv`.
pub fn read_series(path: &Path, key: &str) -> Result<Series, NabError> {
    let text = read_limited(path, "series_bytes_max", SERIES_BYTES_MAX)?;
    let header = text.lines().next().ok_or_else(|| NabError::Csv {
        path: path.to_path_buf(),
        line: 1,
        message: "empty file: wanted a header `timestamp,value`".into(),
    })?;
    let cols = header_columns(path, header, &["timestamp", "value"])?;
    let mut series = Series {
        key: key.to_string(),
        timestamp_text: Vec::new(),
        value_text: Vec::new(),
        timestamps_us: Vec::new(),
        values: Vec::new(),
    };
    for (line, fields) in rows(&text) {
        let ts = field(path, line, &fields, cols[0])?;
        let value = field(path, line, &fields, cols[1])?;
        let at = parse_timestamp(ts).map_err(|message| NabError::Csv {
            path: path.to_path_buf(),
            line,
            message,
        })?;
        let v: f64 = value.parse().map_err(|_| NabError::Csv {
            path: path.to_path_buf(),
            line,
            message: format!("value {value:?} is not a number"),
        })?;
        series.timestamp_text.push(ts.to_string());
        series.value_text.push(value.to_string());
        series.timestamps_us.push(at);
        series.values.push(v);
    }
    Ok(series)
}

/// Every series under `data_dir` (`<category>/<file>.csv`, one level of categories), sorted by key.
pub fn read_corpus(data_dir: &Path) -> Result<Vec<Series>, NabError> {
    let mut keys = Vec::new();
    let mut categories: Vec<_> = std::fs::read_dir(data_dir)
        .map_err(io_err(data_dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(data_dir))?;
    categories.sort_by_key(|e| e.file_name());
    for category in categories {
        let cat_path = category.path();
        if !cat_path.is_dir() {
            continue;
        }
        let cat_name = category.file_name().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&cat_path)
            .map_err(io_err(&cat_path))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err(&cat_path))?;
        files.sort_by_key(|e| e.file_name());
        for file in files {
            let name = file.file_name().to_string_lossy().into_owned();
            if file.path().is_file() && name.ends_with(".csv") {
                keys.push((format!("{cat_name}/{name}"), file.path()));
            }
        }
    }
    if keys.is_empty() {
        return Err(NabError::Invalid(format!(
            "{}: no series found (wanted <category>/<file>.csv files)",
            data_dir.display()
        )));
    }
    if keys.len() > SERIES_COUNT_MAX {
        return Err(NabError::Invalid(format!(
            "{}: {} series is over the limit series_count_max = {SERIES_COUNT_MAX}",
            data_dir.display(),
            keys.len()
        )));
    }
    keys.iter()
        .map(|(key, path)| read_series(path, key))
        .collect()
}

/// Anomaly windows per series key, each `(start, end)` in µs since the epoch, inclusive, in file order.
pub type Windows = BTreeMap<String, Vec<(i64, i64)>>;

/// Reads `combined_windows.json`: `{"<category>/<file>.csv": [["start", "end"], ...], ...}`.
pub fn read_windows(path: &Path) -> Result<Windows, NabError> {
    let text = read_limited(path, "labels_bytes_max", LABELS_BYTES_MAX)?;
    let raw: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).map_err(|e| NabError::Json {
            path: path.to_path_buf(),
            message: format!("wanted {{\"<category>/<file>.csv\": [[start, end], ...]}}: {e}"),
        })?;
    let mut out = Windows::new();
    for (key, windows) in raw {
        let mut parsed = Vec::with_capacity(windows.len());
        for (i, w) in windows.iter().enumerate() {
            let json_err = |message: String| NabError::Json {
                path: path.to_path_buf(),
                message: format!("{key}, window {i}: {message}"),
            };
            if w.len() != 2 {
                return Err(json_err(format!(
                    "wanted [start, end], got {} items",
                    w.len()
                )));
            }
            let start = parse_timestamp(&w[0]).map_err(json_err)?;
            let end = parse_timestamp(&w[1]).map_err(json_err)?;
            if end < start {
                return Err(json_err(format!(
                    "ends ({}) before it starts ({})",
                    w[1], w[0]
                )));
            }
            if let Some(&(_, prev_end)) = parsed.last()
                && start <= prev_end
            {
                return Err(json_err("overlaps or precedes the window before it".into()));
            }
            parsed.push((start, end));
        }
        out.insert(key, parsed);
    }
    Ok(out)
}

/// The weights of one application profile.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct CostMatrix {
    /// Weight of a true positive (the reward for detecting a window).
    #[serde(rename = "tpWeight")]
    pub tp: f64,
    /// Weight of a false positive.
    #[serde(rename = "fpWeight")]
    pub fp: f64,
    /// Weight of a false negative (a missed window).
    #[serde(rename = "fnWeight")]
    pub fn_: f64,
}

#[derive(Deserialize)]
struct ProfileJson {
    #[serde(rename = "CostMatrix")]
    cost_matrix: CostMatrix,
}

/// The three profiles NAB reports, in the order medic reports them.
pub const PROFILE_NAMES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

/// Reads `profiles.json`: `{"<profile>": {"CostMatrix": {"tpWeight", "fpWeight", "fnWeight", ...}}, ...}`. Every
/// profile in [`PROFILE_NAMES`] must be there.
pub fn read_profiles(path: &Path) -> Result<BTreeMap<String, CostMatrix>, NabError> {
    let text = read_limited(path, "labels_bytes_max", LABELS_BYTES_MAX)?;
    let raw: BTreeMap<String, ProfileJson> =
        serde_json::from_str(&text).map_err(|e| NabError::Json {
            path: path.to_path_buf(),
            message: format!(
                "wanted {{\"<profile>\": {{\"CostMatrix\": {{\"tpWeight\", \"fpWeight\", \"fnWeight\"}}}}}}: {e}"
            ),
        })?;
    let out: BTreeMap<String, CostMatrix> =
        raw.into_iter().map(|(k, v)| (k, v.cost_matrix)).collect();
    for name in PROFILE_NAMES {
        let Some(c) = out.get(name) else {
            return Err(NabError::Json {
                path: path.to_path_buf(),
                message: format!("profile {name:?} is missing"),
            });
        };
        if ![c.tp, c.fp, c.fn_]
            .iter()
            .all(|w| w.is_finite() && *w >= 0.0)
        {
            return Err(NabError::Json {
                path: path.to_path_buf(),
                message: format!("profile {name:?}: weights must be finite and not negative"),
            });
        }
    }
    Ok(out)
}

/// Checks a detector name is usable in NAB's results layout: letters and digits only, 1 to
/// [`DETECTOR_NAME_BYTES_MAX`] bytes.
pub fn check_detector_name(name: &str) -> Result<(), NabError> {
    if name.is_empty()
        || name.len() > DETECTOR_NAME_BYTES_MAX
        || !name.bytes().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(NabError::Invalid(format!(
            "detector name {name:?} must be 1 to {DETECTOR_NAME_BYTES_MAX} (detector_name_bytes_max) ASCII letters and digits"
        )));
    }
    Ok(())
}

/// Where a detector's results for a series go: `<out>/<detector>/<category>/<detector>_<file>.csv`.
pub fn results_path(out: &Path, detector: &str, series_key: &str) -> PathBuf {
    let (category, file) = series_key.split_once('/').unwrap_or(("", series_key));
    out.join(detector)
        .join(category)
        .join(format!("{detector}_{file}"))
}

/// Whether a timestamp falls in one of the windows (NAB's `label`).
pub fn in_window(windows: &[(i64, i64)], at: i64) -> bool {
    windows.iter().any(|&(s, e)| s <= at && at <= e)
}

/// Writes one results file, `timestamp,value,anomaly_score,label`, one row per data row in order. Scores must be
/// finite and in [0, 1].
pub fn write_results(
    out: &Path,
    detector: &str,
    series: &Series,
    scores: &[f64],
    windows: &[(i64, i64)],
) -> Result<PathBuf, NabError> {
    check_detector_name(detector)?;
    if scores.len() != series.len() {
        return Err(NabError::Invalid(format!(
            "{}: {} scores for {} rows",
            series.key,
            scores.len(),
            series.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| !(0.0..=1.0).contains(s)) {
        return Err(NabError::Invalid(format!(
            "{}: row {} has anomaly_score {} outside [0, 1]",
            series.key,
            i + 1,
            scores[i]
        )));
    }
    let path = results_path(out, detector, &series.key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut text = String::with_capacity(series.len() * 48);
    text.push_str("timestamp,value,anomaly_score,label\n");
    for (i, score) in scores.iter().enumerate() {
        let label = u8::from(in_window(windows, series.timestamps_us[i]));
        let _ = writeln!(
            text,
            "{},{},{},{}",
            series.timestamp_text[i], series.value_text[i], score, label
        );
    }
    std::fs::write(&path, text).map_err(io_err(&path))?;
    Ok(path)
}

/// One results file read back: NAB's own (with extra columns) or medic's.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsFile {
    /// The timestamps as written.
    pub timestamp_text: Vec<String>,
    /// The timestamps, µs since the epoch.
    pub timestamps_us: Vec<i64>,
    /// The `anomaly_score` column.
    pub anomaly_scores: Vec<f64>,
    /// The `label` column.
    pub labels: Vec<u8>,
}

/// Reads a results file: needs the columns `timestamp`, `anomaly_score` and `label`, in any order among others.
/// Every score must be finite and in [0, 1], every label 0 or 1.
pub fn read_results(path: &Path) -> Result<ResultsFile, NabError> {
    let text = read_limited(path, "series_bytes_max", SERIES_BYTES_MAX)?;
    let header = text.lines().next().ok_or_else(|| NabError::Csv {
        path: path.to_path_buf(),
        line: 1,
        message: "empty file: wanted a header with timestamp, anomaly_score, label".into(),
    })?;
    let cols = header_columns(path, header, &["timestamp", "anomaly_score", "label"])?;
    let mut out = ResultsFile {
        timestamp_text: Vec::new(),
        timestamps_us: Vec::new(),
        anomaly_scores: Vec::new(),
        labels: Vec::new(),
    };
    for (line, fields) in rows(&text) {
        let csv_err = |message: String| NabError::Csv {
            path: path.to_path_buf(),
            line,
            message,
        };
        let ts = field(path, line, &fields, cols[0])?;
        let score_text = field(path, line, &fields, cols[1])?;
        let label_text = field(path, line, &fields, cols[2])?;
        let at = parse_timestamp(ts).map_err(csv_err)?;
        let score: f64 = score_text
            .parse()
            .ok()
            .filter(|s: &f64| (0.0..=1.0).contains(s))
            .ok_or_else(|| {
                csv_err(format!(
                    "anomaly_score {score_text:?} is not a number in [0, 1]"
                ))
            })?;
        let label = match label_text {
            "0" | "0.0" => 0,
            "1" | "1.0" => 1,
            other => return Err(csv_err(format!("label {other:?} is not 0 or 1"))),
        };
        out.timestamp_text.push(ts.to_string());
        out.timestamps_us.push(at);
        out.anomaly_scores.push(score);
        out.labels.push(label);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_epoch_micros() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(parse_timestamp("1970-01-02 00:00:01"), Ok(86_401_000_000));
        // 2014-04-10 07:15:00 UTC is 1397114100 s.
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00"),
            Ok(1_397_114_100_000_000)
        );
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.000000"),
            Ok(1_397_114_100_000_000)
        );
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.5"),
            Ok(1_397_114_100_500_000)
        );
        assert_eq!(
            parse_timestamp("2016-02-29 00:00:00"),
            Ok(1_456_704_000_000_000)
        );
        assert_eq!(parse_timestamp("1969-12-31 23:59:59"), Ok(-1_000_000));
    }

    #[test]
    fn bad_timestamps_say_what_is_wrong() {
        for bad in [
            "",
            "2014-04-10",
            "2014/04/10 07:15:00",
            "2014-13-10 07:15:00",
            "2015-02-29 07:15:00",
            "2014-04-10 24:00:00",
            "2014-04-10 07:15:00.",
            "2014-04-10 07:15:00.1234567",
            "2014-04-10 07:15:0x",
            "+014-04-10 07:15:00",
        ] {
            let err = parse_timestamp(bad).expect_err(bad);
            assert!(err.contains("timestamp"), "{bad}: {err}");
        }
    }

    #[test]
    fn detector_names_are_letters_and_digits() {
        assert!(check_detector_name("composite").is_ok());
        assert!(check_detector_name("zscore2").is_ok());
        for bad in ["", "windowed_gaussian", "a b", "a/b", &"x".repeat(65)] {
            let err = check_detector_name(bad).expect_err(bad).to_string();
            assert!(err.contains("letters and digits"), "{err}");
        }
    }

    #[test]
    fn results_path_follows_nab_layout() {
        assert_eq!(
            results_path(Path::new("/r"), "composite", "realKnownCause/nyc_taxi.csv"),
            PathBuf::from("/r/composite/realKnownCause/composite_nyc_taxi.csv")
        );
    }

    #[test]
    fn oversized_file_names_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.csv");
        std::fs::write(&p, "timestamp,value\n").unwrap();
        let err = read_limited(&p, "series_bytes_max", 4)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("series_bytes_max") && err.contains("big.csv"),
            "{err}"
        );
    }

    #[test]
    fn bad_series_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        std::fs::write(
            &p,
            "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,abc\n",
        )
        .unwrap();
        let err = read_series(&p, "c/s.csv").unwrap_err().to_string();
        assert!(err.contains("s.csv:3") && err.contains("abc"), "{err}");
        std::fs::write(&p, "time,value\n").unwrap();
        let err = read_series(&p, "c/s.csv").unwrap_err().to_string();
        assert!(err.contains("timestamp"), "{err}");
    }

    #[test]
    fn overlapping_windows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.json");
        std::fs::write(
            &p,
            r#"{"c/s.csv": [["2014-01-01 00:00:00", "2014-01-02 00:00:00"], ["2014-01-01 12:00:00", "2014-01-03 00:00:00"]]}"#,
        )
        .unwrap();
        let err = read_windows(&p).unwrap_err().to_string();
        assert!(
            err.contains("c/s.csv, window 1") && err.contains("overlaps"),
            "{err}"
        );
    }
}
