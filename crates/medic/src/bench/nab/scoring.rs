//! NAB's scoring, reimplemented to agree with NAB's reference code (`nab/sweeper.py`, `nab/scorer.py`,
//! `nab/optimizer.py`, `nab/runner.py` of NAB 1.x):
//!
//! - **Probation**: the first `min(floor(0.15 * rows), 0.15 * 5000)` rows of a series are not scored.
//! - **Sweep score of a row** ([`sweep_series`]): inside a window, `tpWeight * S(p) / S(-1)` with
//!   `p = -(right - i + 1) / width`; outside, `fpWeight * S(q)` with `q = |right_prev - i| / (width_prev - 1)` past
//!   the preceding window, or `-fpWeight` before any window. `S(x) = 2 / (1 + e^{5x}) - 1`, and `-1` from `x >= 3`.
//! - **Score of a series at a threshold** ([`score_at`]): a row detects when its anomaly score is `>= threshold`.
//!   Each window contributes the best (earliest) detection's sweep score in it, or `-fnWeight` with none; every
//!   detection outside a window adds its (negative) sweep score. TP/FN count scored rows inside windows,
//!   FP/TN scored rows outside, as NAB counts them.
//! - **Threshold** ([`optimize_threshold`]): NAB's sweeper over the whole corpus: all scored rows sorted by anomaly
//!   score, descending; the corpus score is evaluated at every distinct score and the best kept (the highest
//!   threshold among equal scores).
//! - **Normalisation** ([`normalize`]): `100 * (raw - raw_null) / (raw_perfect - raw_null)`, with
//!   `raw_null = -fnWeight * windows` (no detection) and `raw_perfect = tpWeight * windows`.
//!
//! Windows are located the way NAB locates them: a window opens at the first row whose timestamp equals its start
//! and its right edge is the first row whose timestamp equals its end. NAB's data has repeated timestamps (a
//! daylight-saving hour) so rows, not times, are what count.

use std::collections::HashMap;

use super::corpus::CostMatrix;

/// The share of a series' first rows that is probationary.
pub const PROBATION_FRACTION: f64 = 0.15;

/// Probationary rows of a series of `rows` rows: `min(floor(0.15 * rows), 750)`.
pub fn probationary_len(rows: usize) -> usize {
    let by_share = (PROBATION_FRACTION * rows as f64).floor();
    by_share.min(PROBATION_FRACTION * 5000.0) as usize
}

/// NAB's scaled sigmoid: `2 / (1 + e^{5x}) - 1`, and `-1` for `x >= 3`.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Why a series cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScoringError {
    /// A window's start or end is not one of the series' timestamps.
    #[error("{series}: window {window} {edge} {at} µs is not a timestamp of the series")]
    WindowEdgeMissing {
        /// The series key.
        series: String,
        /// The window's index.
        window: usize,
        /// `start` or `end`.
        edge: &'static str,
        /// The edge, µs since the epoch.
        at: i64,
    },
    /// A window's end row comes before its start row (the series' timestamps go backwards across it).
    #[error("{series}: window {window} ends on a row before the one it starts on")]
    WindowBackwards {
        /// The series key.
        series: String,
        /// The window's index.
        window: usize,
    },
    /// Scores and timestamps differ in length.
    #[error("{series}: {scores} anomaly scores for {rows} rows")]
    LengthMismatch {
        /// The series key.
        series: String,
        /// Scores given.
        scores: usize,
        /// Rows in the series.
        rows: usize,
    },
    /// An anomaly score is not a number in [0, 1].
    #[error("{series}: row {row} has anomaly score {score}, not in [0, 1]")]
    BadScore {
        /// The series key.
        series: String,
        /// 1-based row.
        row: usize,
        /// The score.
        score: f64,
    },
}

/// Where a row stands for scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// In the probationary period: not scored.
    Probationary,
    /// In window number `n` of its series.
    Window(u32),
    /// Outside every window.
    Outside,
}

/// One row prepared for scoring: its anomaly score, where it stands, and its unweighted sweep score (`S(p) / S(-1)`
/// inside a window, `S(q)` outside).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepRow {
    /// The detector's anomaly score.
    pub anomaly_score: f64,
    /// Where the row stands.
    pub kind: RowKind,
    /// The sweep score before the profile's weight.
    pub unweighted: f64,
}

impl SweepRow {
    /// The sweep score under a profile's weights.
    pub fn weighted(&self, cost: &CostMatrix) -> f64 {
        match self.kind {
            RowKind::Window(_) => self.unweighted * cost.tp,
            RowKind::Outside | RowKind::Probationary => self.unweighted * cost.fp,
        }
    }
}

/// One series prepared for scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct SweptSeries {
    /// The series key.
    pub key: String,
    /// One per row, in order.
    pub rows: Vec<SweepRow>,
    /// Windows that have at least one scored row (each costs `fnWeight` when missed).
    pub scored_windows: u32,
    /// Windows given for the series.
    pub windows: u32,
}

/// Prepares a series for scoring, as NAB's `Sweeper.calcSweepScore` does.
pub fn sweep_series(
    key: &str,
    timestamps_us: &[i64],
    anomaly_scores: &[f64],
    windows: &[(i64, i64)],
) -> Result<SweptSeries, ScoringError> {
    if timestamps_us.len() != anomaly_scores.len() {
        return Err(ScoringError::LengthMismatch {
            series: key.into(),
            scores: anomaly_scores.len(),
            rows: timestamps_us.len(),
        });
    }
    if let Some(i) = anomaly_scores.iter().position(|s| !(0.0..=1.0).contains(s)) {
        return Err(ScoringError::BadScore {
            series: key.into(),
            row: i + 1,
            score: anomaly_scores[i],
        });
    }
    // NAB's `timestamps.index(t)`: the first row with that timestamp.
    let mut first_row: HashMap<i64, usize> = HashMap::with_capacity(timestamps_us.len());
    for (i, &t) in timestamps_us.iter().enumerate() {
        first_row.entry(t).or_insert(i);
    }
    let mut edges = Vec::with_capacity(windows.len());
    for (w, &(start, end)) in windows.iter().enumerate() {
        let missing = |edge, at| ScoringError::WindowEdgeMissing {
            series: key.into(),
            window: w,
            edge,
            at,
        };
        let left = *first_row
            .get(&start)
            .ok_or_else(|| missing("start", start))?;
        let right = *first_row.get(&end).ok_or_else(|| missing("end", end))?;
        if right < left {
            return Err(ScoringError::WindowBackwards {
                series: key.into(),
                window: w,
            });
        }
        edges.push((left, right));
    }

    let max_tp = scaled_sigmoid(-1.0);
    let probation = probationary_len(timestamps_us.len());
    let mut rows = Vec::with_capacity(timestamps_us.len());
    let mut next_window = 0usize;
    let mut current: Option<usize> = None;
    let mut previous: Option<usize> = None;
    let mut window_scored = vec![false; windows.len()];
    for (i, (&t, &score)) in timestamps_us.iter().zip(anomaly_scores).enumerate() {
        if next_window < windows.len() && t == windows[next_window].0 {
            current = Some(next_window);
            next_window += 1;
        }
        let (kind, unweighted) = match current {
            Some(w) => {
                let (left, right) = edges[w];
                let width = right as f64 - left as f64 + 1.0;
                let position = -(right as f64 - i as f64 + 1.0) / width;
                (RowKind::Window(w as u32), scaled_sigmoid(position) / max_tp)
            }
            None => {
                let past = match previous {
                    None => 3.0,
                    Some(w) => {
                        let (left, right) = edges[w];
                        let width = right as f64 - left as f64 + 1.0;
                        // A one-row window makes this a division by zero in NAB; +inf scores -1 like a far row.
                        (right as f64 - i as f64).abs() / (width - 1.0)
                    }
                };
                (RowKind::Outside, scaled_sigmoid(past))
            }
        };
        let kind = if i < probation {
            RowKind::Probationary
        } else {
            kind
        };
        if let RowKind::Window(w) = kind {
            window_scored[w as usize] = true;
        }
        rows.push(SweepRow {
            anomaly_score: score,
            kind,
            unweighted,
        });
        if let Some(w) = current
            && t == windows[w].1
        {
            previous = Some(w);
            current = None;
        }
    }
    Ok(SweptSeries {
        key: key.into(),
        rows,
        scored_windows: window_scored.iter().filter(|s| **s).count() as u32,
        windows: windows.len() as u32,
    })
}

/// A series' (or the corpus') outcome at one threshold, as in NAB's `_scores.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The threshold.
    pub threshold: f64,
    /// The raw score.
    pub score: f64,
    /// Scored rows inside windows that detect.
    pub tp: u64,
    /// Scored rows outside windows that do not detect.
    pub tn: u64,
    /// Scored rows outside windows that detect.
    pub fp: u64,
    /// Scored rows inside windows that do not detect.
    pub fn_: u64,
    /// All rows, probationary ones included (NAB's `Total_Count`).
    pub total: u64,
}

/// Scores one prepared series at `threshold` under a profile.
pub fn score_at(series: &SweptSeries, cost: &CostMatrix, threshold: f64) -> Outcome {
    let mut best = vec![-cost.fn_; series.windows as usize];
    let mut window_has_scored_row = vec![false; series.windows as usize];
    let mut fp_sum = 0.0;
    let mut out = Outcome {
        threshold,
        score: 0.0,
        tp: 0,
        tn: 0,
        fp: 0,
        fn_: 0,
        total: series.rows.len() as u64,
    };
    for row in &series.rows {
        let detects = row.anomaly_score >= threshold;
        match row.kind {
            RowKind::Probationary => {}
            RowKind::Window(w) => {
                window_has_scored_row[w as usize] = true;
                if detects {
                    out.tp += 1;
                    best[w as usize] = best[w as usize].max(row.weighted(cost));
                } else {
                    out.fn_ += 1;
                }
            }
            RowKind::Outside => {
                if detects {
                    out.fp += 1;
                    fp_sum += row.weighted(cost);
                } else {
                    out.tn += 1;
                }
            }
        }
    }
    let windows_sum: f64 = best
        .iter()
        .zip(&window_has_scored_row)
        .filter(|(_, scored)| **scored)
        .map(|(b, _)| *b)
        .sum();
    out.score = fp_sum + windows_sum;
    out
}

/// The best threshold over a corpus for one profile, as NAB's optimiser finds it, and the corpus' raw score there.
/// With no scored row at all the threshold is 1.1 (nothing detects), NAB's starting point.
pub fn optimize_threshold(corpus: &[SweptSeries], cost: &CostMatrix) -> (f64, f64) {
    // Global window ids: offset of each series' first window.
    let mut offsets = Vec::with_capacity(corpus.len());
    let mut n_windows = 0usize;
    for s in corpus {
        offsets.push(n_windows);
        n_windows += s.windows as usize;
    }
    let mut rows: Vec<(f64, Option<usize>, f64)> = corpus
        .iter()
        .zip(&offsets)
        .flat_map(|(s, &off)| {
            s.rows.iter().filter_map(move |r| match r.kind {
                RowKind::Probationary => None,
                RowKind::Window(w) => {
                    Some((r.anomaly_score, Some(off + w as usize), r.weighted(cost)))
                }
                RowKind::Outside => Some((r.anomaly_score, None, r.weighted(cost))),
            })
        })
        .collect();
    // Stable, descending: equal scores keep corpus order, as Python's `sorted(..., reverse=True)` does.
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));

    let scored_windows: u32 = corpus.iter().map(|s| s.scored_windows).sum();
    let mut best_window = vec![-cost.fn_; n_windows];
    let mut windows_sum = -cost.fn_ * f64::from(scored_windows);
    let mut fp_sum = 0.0;
    let mut threshold = 1.1;
    let mut best = (threshold, windows_sum);
    for (score, window, sweep) in rows {
        if score != threshold {
            // Every row with an anomaly score >= `threshold` is in; record the corpus score there.
            let current = fp_sum + windows_sum;
            if current > best.1 {
                best = (threshold, current);
            }
            threshold = score;
        }
        match window {
            Some(w) => {
                if sweep > best_window[w] {
                    windows_sum += sweep - best_window[w];
                    best_window[w] = sweep;
                }
            }
            None => fp_sum += sweep,
        }
    }
    let current = fp_sum + windows_sum;
    if current > best.1 {
        best = (threshold, current);
    }
    best
}

/// NAB's normalised score: `100 * (raw - null) / (perfect - null)`; 0 when perfect equals null (no windows).
pub fn normalize(raw: f64, null: f64, perfect: f64) -> f64 {
    if perfect == null {
        0.0
    } else {
        100.0 * (raw - null) / (perfect - null)
    }
}

/// The null detector's raw score over a corpus (it never detects): `-fnWeight` per scored window.
pub fn null_score(corpus: &[SweptSeries], cost: &CostMatrix) -> f64 {
    -cost.fn_ * f64::from(corpus.iter().map(|s| s.scored_windows).sum::<u32>())
}

/// The perfect detector's raw score over a corpus: `tpWeight` per window of the series scored. (NAB's runner counts
/// every window of its labels file; the two agree when the labels cover exactly the series scored, as in NAB.)
pub fn perfect_score(corpus: &[SweptSeries], cost: &CostMatrix) -> f64 {
    cost.tp * f64::from(corpus.iter().map(|s| s.windows).sum::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: CostMatrix = CostMatrix {
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    };

    /// `S(x)` written independently: `2 sigmoid(-5x) - 1 = tanh(-2.5x)`.
    fn s(x: f64) -> f64 {
        (-2.5 * x).tanh()
    }

    #[test]
    fn probation_is_fifteen_percent_at_most_750() {
        assert_eq!(probationary_len(20), 3);
        assert_eq!(probationary_len(4032), 604);
        assert_eq!(probationary_len(1882), 282);
        assert_eq!(probationary_len(5000), 750);
        assert_eq!(probationary_len(22_695), 750);
        assert_eq!(probationary_len(0), 0);
    }

    #[test]
    fn scaled_sigmoid_matches_tanh_and_clamps_far_rows() {
        for x in [-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 2.9] {
            assert!((scaled_sigmoid(x) - s(x)).abs() < 1e-12, "{x}");
        }
        assert_eq!(scaled_sigmoid(3.0), -1.0);
        assert_eq!(scaled_sigmoid(50.0), -1.0);
    }

    /// 20 rows (probation 3), one window on rows 8..=11.
    fn one_window(scores: &[f64]) -> SweptSeries {
        let ts: Vec<i64> = (0..20).map(|i| i * 300_000_000).collect();
        sweep_series("c/s.csv", &ts, scores, &[(ts[8], ts[11])]).unwrap()
    }

    #[test]
    fn first_detection_in_window_earns_sigmoid_of_its_position() {
        let mut scores = vec![0.0; 20];
        scores[9] = 0.9;
        scores[10] = 0.95;
        let series = one_window(&scores);
        let o = score_at(&series, &STANDARD, 0.5);
        // Row 9: p = -(11 - 9 + 1) / 4 = -0.75; row 10 is later and lower.
        let expected = s(-0.75) / s(-1.0);
        assert!(
            (o.score - expected).abs() < 1e-12,
            "{} vs {expected}",
            o.score
        );
        assert_eq!((o.tp, o.fn_, o.fp, o.tn), (2, 2, 0, 13));
        assert_eq!(o.total, 20);
    }

    #[test]
    fn missed_window_costs_fn_weight_and_probation_is_ignored() {
        let mut scores = vec![0.0; 20];
        scores[1] = 1.0; // probationary: no false positive
        let o = score_at(&one_window(&scores), &STANDARD, 0.5);
        assert_eq!(o.score, -1.0);
        assert_eq!((o.tp, o.fn_, o.fp, o.tn), (0, 4, 0, 13));
    }

    #[test]
    fn false_positives_are_weighted_by_distance_after_the_window() {
        let mut scores = vec![0.0; 20];
        scores[5] = 1.0; // before any window: -fp
        scores[13] = 1.0; // |11 - 13| / (4 - 1) past the window
        let o = score_at(&one_window(&scores), &STANDARD, 1.0);
        let expected = -1.0 - 0.11 + 0.11 * s(2.0 / 3.0);
        assert!(
            (o.score - expected).abs() < 1e-12,
            "{} vs {expected}",
            o.score
        );
        assert_eq!((o.tp, o.fn_, o.fp, o.tn), (0, 4, 2, 11));
    }

    #[test]
    fn optimizer_agrees_with_scoring_every_threshold() {
        // Pseudo-random scores over three series; the optimiser's best must equal the best of a brute force.
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) % 20) as f64 / 20.0
        };
        let corpus: Vec<SweptSeries> = (0..3)
            .map(|_| one_window(&(0..20).map(|_| next()).collect::<Vec<_>>()))
            .collect();
        for cost in [
            STANDARD,
            CostMatrix {
                tp: 1.0,
                fp: 0.22,
                fn_: 1.0,
            },
            CostMatrix {
                tp: 1.0,
                fp: 0.11,
                fn_: 2.0,
            },
        ] {
            let (threshold, score) = optimize_threshold(&corpus, &cost);
            let mut thresholds: Vec<f64> = corpus
                .iter()
                .flat_map(|s| s.rows.iter().map(|r| r.anomaly_score))
                .collect();
            thresholds.push(1.1);
            let brute = thresholds
                .iter()
                .map(|&t| {
                    corpus
                        .iter()
                        .map(|s| score_at(s, &cost, t).score)
                        .sum::<f64>()
                })
                .fold(f64::NEG_INFINITY, f64::max);
            assert!((score - brute).abs() < 1e-9, "{score} vs {brute}");
            let at: f64 = corpus
                .iter()
                .map(|s| score_at(s, &cost, threshold).score)
                .sum();
            assert!((at - score).abs() < 1e-9, "{at} vs {score}");
        }
    }

    #[test]
    fn normalisation_maps_null_to_zero_and_perfect_to_hundred() {
        let series = one_window(&[0.0; 20]);
        let corpus = [series.clone(), series];
        let null = null_score(&corpus, &STANDARD);
        let perfect = perfect_score(&corpus, &STANDARD);
        assert_eq!((null, perfect), (-2.0, 2.0));
        assert_eq!(normalize(null, null, perfect), 0.0);
        assert_eq!(normalize(perfect, null, perfect), 100.0);
        assert_eq!(normalize(0.0, null, perfect), 50.0);
    }

    #[test]
    fn missing_window_edge_and_bad_scores_are_errors() {
        let ts: Vec<i64> = (0..5).collect();
        let err = sweep_series("c/s.csv", &ts, &[0.0; 5], &[(1, 9)]).unwrap_err();
        assert!(err.to_string().contains("window 0 end"), "{err}");
        let err = sweep_series("c/s.csv", &ts, &[0.0, 2.0, 0.0, 0.0, 0.0], &[]).unwrap_err();
        assert!(err.to_string().contains("row 2"), "{err}");
        let backwards = [0, 1, 5, 3, 4];
        let err = sweep_series("c/s.csv", &backwards, &[0.0; 5], &[(3, 5)]).unwrap_err();
        assert!(
            err.to_string().contains("window 0 ends on a row before"),
            "{err}"
        );
        let err = sweep_series("c/s.csv", &ts, &[0.0; 4], &[]).unwrap_err();
        assert!(
            err.to_string().contains("4 anomaly scores for 5 rows"),
            "{err}"
        );
    }
}
