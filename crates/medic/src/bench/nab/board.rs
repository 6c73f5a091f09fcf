//! The published scoreboard on a NAB slice, recomputed with medic's scorer: for every detector under
//! `NAB_DIR/results/`, its normalised scores from NAB's published per-series `_scores.csv` (NAB's thresholds,
//! optimised on the whole 58-series corpus), and, where the per-row results are published too, with the threshold
//! re-optimised on the series present (as `medic bench nab` does for medic's detectors).

use std::collections::BTreeMap;
use std::path::Path;

use super::corpus::{self, PROFILE_NAMES};
use super::harness::{self, ThresholdChoice};
use super::scoring::{self, SweptSeries};

/// Largest published `_scores.csv`, bytes.
pub const SCORES_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// One line of the board.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BoardRow {
    /// The detector.
    pub detector: String,
    /// `published` (NAB's thresholds) or `optimized` (re-optimised on the series present).
    pub thresholds: &'static str,
    /// Normalised score per profile, in [`PROFILE_NAMES`] order.
    pub normalized: [f64; 3],
    /// Series scored.
    pub series: usize,
}

/// Sums the `Score` column of a published `_scores.csv`, per series key.
pub fn read_published_scores(path: &Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = corpus::read_limited(path, "scores_bytes_max", SCORES_BYTES_MAX)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| anyhow::anyhow!("{}: header has no {name:?} column", path.display()))
    };
    let (file_col, score_col) = (col("File")?, col("Score")?);
    let mut out = BTreeMap::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let bad = || anyhow::anyhow!("{}:{}: malformed row {line:?}", path.display(), i + 2);
        let key = fields.get(file_col).ok_or_else(bad)?;
        let score: f64 = fields
            .get(score_col)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        out.insert((*key).to_string(), score);
    }
    Ok(out)
}

/// The board for every detector under `nab_dir/results/`, sorted by standard score, best first.
pub fn published_board(nab_dir: &Path) -> anyhow::Result<Vec<BoardRow>> {
    let profiles = corpus::read_profiles(&nab_dir.join("config/profiles.json"))?;
    let windows = corpus::read_windows(&nab_dir.join("labels/combined_windows.json"))?;
    // The null detector on the real data gives each series' scored windows (for the baselines).
    let data = corpus::read_corpus(&nab_dir.join("data"))?;
    let mut null_corpus: BTreeMap<String, SweptSeries> = BTreeMap::new();
    for series in &data {
        let w = harness::windows_of(&windows, &series.key)?;
        let zeros = vec![0.0; series.len()];
        let swept = scoring::sweep_series(&series.key, &series.timestamps_us, &zeros, w)?;
        null_corpus.insert(series.key.clone(), swept);
    }

    let results = nab_dir.join("results");
    let mut detectors: Vec<String> = std::fs::read_dir(&results)
        .map_err(|e| anyhow::anyhow!("{}: {e}", results.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    detectors.sort();
    let mut board = Vec::new();
    for detector in detectors {
        let mut published = [0.0; 3];
        let mut series = 0;
        let mut complete = true;
        for (i, profile) in PROFILE_NAMES.iter().enumerate() {
            let path = results
                .join(&detector)
                .join(format!("{detector}_{profile}_scores.csv"));
            if !path.is_file() {
                complete = false;
                break;
            }
            let scores = read_published_scores(&path)?;
            let present: Vec<SweptSeries> = scores
                .keys()
                .map(|k| {
                    null_corpus.get(k).cloned().ok_or_else(|| {
                        anyhow::anyhow!("{}: series {k:?} is not under data/", path.display())
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            let cost = &profiles[*profile];
            published[i] = scoring::normalize(
                scores.values().sum(),
                scoring::null_score(&present, cost),
                scoring::perfect_score(&present, cost),
            );
            series = scores.len();
        }
        if complete {
            board.push(BoardRow {
                detector: detector.clone(),
                thresholds: "published",
                normalized: published,
                series,
            });
        }
        if let Ok(swept) = harness::read_results_dir(&results, &detector, &windows) {
            let scored = harness::score_profiles(&profiles, &swept, |_| ThresholdChoice::Optimize);
            let mut normalized = [0.0; 3];
            for (n, r) in normalized.iter_mut().zip(&scored) {
                *n = r.normalized;
            }
            board.push(BoardRow {
                detector,
                thresholds: "optimized",
                normalized,
                series: swept.len(),
            });
        }
    }
    board.sort_by(|a, b| b.normalized[0].total_cmp(&a.normalized[0]));
    Ok(board)
}
