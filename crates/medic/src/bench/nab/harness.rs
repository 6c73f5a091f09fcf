//! Streaming series through a detector exactly as the engine does online (each point once, in order, no look-ahead,
//! one fresh detector per series with the same parameters for every series), and scoring a whole corpus of results
//! for every profile.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use heal::Detector;

use super::corpus::{self, CostMatrix, NabError, PROFILE_NAMES, Series, Windows};
use super::scoring::{self, Outcome, SweptSeries};

/// Makes one fresh detector; called once per series.
pub type DetectorFactory<'a> = dyn Fn() -> Box<dyn Detector> + 'a;

/// One series streamed through a detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Streamed {
    /// One score in [0, 1] per row.
    pub scores: Vec<f64>,
    /// Time spent inside `Detector::update`, ns (the loop around it included).
    pub stream_ns: u128,
}

/// Feeds every row of `series` to `detector` in order and collects its scores. A score that is not a number becomes 0
/// and one outside [0, 1] is clamped, so NAB can read the result whatever the detector returns. Timestamps before
/// 1970 are given to the detector as 0 (its time is unsigned).
pub fn stream(detector: &mut dyn Detector, series: &Series) -> Streamed {
    let mut scores = Vec::with_capacity(series.len());
    let started = Instant::now();
    for (&at, &value) in series.timestamps_us.iter().zip(&series.values) {
        let at = u64::try_from(at).unwrap_or(0);
        scores.push(detector.update(at, value));
    }
    let stream_ns = started.elapsed().as_nanos();
    for s in &mut scores {
        *s = if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) };
    }
    Streamed { scores, stream_ns }
}

/// The windows of a series, or an error naming the labels file when it has none.
pub fn windows_of<'a>(windows: &'a Windows, key: &str) -> Result<&'a [(i64, i64)], NabError> {
    windows.get(key).map(Vec::as_slice).ok_or_else(|| {
        NabError::Invalid(format!(
            "labels/combined_windows.json has no entry for {key:?} (every series needs one, [] for none)"
        ))
    })
}

/// A detector's result for one profile over a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileResult {
    /// The profile's name.
    pub profile: String,
    /// The threshold used.
    pub threshold: f64,
    /// The corpus' raw score at that threshold.
    pub raw: f64,
    /// The null detector's raw score.
    pub null: f64,
    /// The perfect detector's raw score.
    pub perfect: f64,
    /// `100 * (raw - null) / (perfect - null)`.
    pub normalized: f64,
    /// Each series' outcome at the threshold, by key.
    pub per_series: BTreeMap<String, Outcome>,
}

/// How the threshold of each profile is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdChoice {
    /// NAB's optimiser over the corpus scored.
    Optimize,
    /// A given threshold for every profile (e.g. a published one).
    Fixed(f64),
}

/// Scores a corpus of prepared series for one profile.
pub fn score_profile(
    profile: &str,
    cost: &CostMatrix,
    corpus: &[SweptSeries],
    choice: ThresholdChoice,
) -> ProfileResult {
    let threshold = match choice {
        ThresholdChoice::Optimize => scoring::optimize_threshold(corpus, cost).0,
        ThresholdChoice::Fixed(t) => t,
    };
    let per_series: BTreeMap<String, Outcome> = corpus
        .iter()
        .map(|s| (s.key.clone(), scoring::score_at(s, cost, threshold)))
        .collect();
    let raw = per_series.values().map(|o| o.score).sum();
    let null = scoring::null_score(corpus, cost);
    let perfect = scoring::perfect_score(corpus, cost);
    ProfileResult {
        profile: profile.to_string(),
        threshold,
        raw,
        null,
        perfect,
        normalized: scoring::normalize(raw, null, perfect),
        per_series,
    }
}

/// Scores every profile of [`PROFILE_NAMES`].
pub fn score_profiles(
    profiles: &BTreeMap<String, CostMatrix>,
    corpus: &[SweptSeries],
    choice: impl Fn(&str) -> ThresholdChoice,
) -> Vec<ProfileResult> {
    PROFILE_NAMES
        .iter()
        .filter_map(|name| profiles.get(*name).map(|cost| (name, cost)))
        .map(|(name, cost)| score_profile(name, cost, corpus, choice(name)))
        .collect()
}

/// Reads a detector's results in NAB's layout (`<results>/<detector>/<category>/<detector>_<file>.csv`) for every
/// series of `windows` that has a results file, and prepares them for scoring. Series without a results file are
/// skipped; an empty result is an error.
pub fn read_results_dir(
    results_dir: &Path,
    detector: &str,
    windows: &Windows,
) -> Result<Vec<SweptSeries>, anyhow::Error> {
    let mut out = Vec::new();
    for (key, series_windows) in windows {
        let path = corpus::results_path(results_dir, detector, key);
        if !path.is_file() {
            continue;
        }
        let results = corpus::read_results(&path)?;
        out.push(scoring::sweep_series(
            key,
            &results.timestamps_us,
            &results.anomaly_scores,
            series_windows,
        )?);
    }
    if out.is_empty() {
        anyhow::bail!(
            "{}: no results files for detector {detector:?} (wanted {}/<category>/{detector}_<file>.csv)",
            results_dir.display(),
            detector
        );
    }
    Ok(out)
}
