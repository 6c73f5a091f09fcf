//! Generalisation checks on a NAB corpus: leave-one-category-out cross-validation, the in-sample score per category,
//! and a parameter plateau table. Nothing is written to disk; every series is streamed as `medic bench nab` streams
//! it (a fresh detector per series, each point once, in order).
//!
//! Cross-validation: for each category in turn, the parameter set (from a grid of candidates) and each profile's
//! threshold are chosen on the other categories only, with NAB's optimiser; the held-out category is then scored at
//! that threshold with that parameter set. The held-out raw scores of all categories are summed and normalised over
//! the whole corpus, so the cross-validated figure is comparable with the in-sample one. The parameter set is chosen
//! by the standard profile's score; the thresholds per profile, as NAB does.

use std::collections::BTreeMap;
use std::path::Path;

use heal::detect::{CompositeConfig, CompositeKind, LikelihoodConfig, SurpriseConfig};
use serde::Serialize;

use super::corpus::{self, CostMatrix, PROFILE_NAMES, Series, Windows};
use super::harness;
use super::scoring::{self, SweptSeries};

/// A corpus read once for many runs.
pub struct Corpus {
    /// The series, in key order.
    pub series: Vec<Series>,
    /// Their windows.
    pub windows: Windows,
    /// The profiles' weights, in [`PROFILE_NAMES`] order.
    pub costs: [CostMatrix; 3],
    /// The categories, sorted.
    pub categories: Vec<String>,
}

impl Corpus {
    /// Reads NAB's layout under `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let profiles = corpus::read_profiles(&dir.join("config/profiles.json"))?;
        let windows = corpus::read_windows(&dir.join("labels/combined_windows.json"))?;
        let series = corpus::read_corpus(&dir.join("data"))?;
        for s in &series {
            harness::windows_of(&windows, &s.key)?;
        }
        let mut categories: Vec<String> = series.iter().map(|s| s.category().to_string()).collect();
        categories.sort();
        categories.dedup();
        let costs = PROFILE_NAMES.map(|p| profiles[p]);
        Ok(Self {
            series,
            windows,
            costs,
            categories,
        })
    }

    /// Streams every series through a fresh composite with `config` and prepares it for scoring; the second value is
    /// ns inside the detector per point.
    pub fn sweep(&self, config: &CompositeConfig) -> anyhow::Result<(Vec<SweptSeries>, f64)> {
        let mut out = Vec::with_capacity(self.series.len());
        let (mut ns, mut points) = (0u128, 0u64);
        for s in &self.series {
            let mut d = heal::detect::Composite::new(config.clone());
            let streamed = harness::stream(&mut d, s);
            ns += streamed.stream_ns;
            points += s.len() as u64;
            out.push(scoring::sweep_series(
                &s.key,
                &s.timestamps_us,
                &streamed.scores,
                harness::windows_of(&self.windows, &s.key)?,
            )?);
        }
        Ok((out, ns as f64 / points.max(1) as f64))
    }
}

/// One candidate's results: in-sample and per fold, per profile.
#[derive(Debug, Clone)]
struct CandidateResult {
    /// Per profile: threshold optimised on the whole corpus, raw score of each category there.
    in_sample: [(f64, BTreeMap<String, f64>); 3],
    /// Per held-out category, per profile: (training raw score at its optimised threshold, that threshold, held-out
    /// raw score at it).
    folds: BTreeMap<String, [(f64, f64, f64); 3]>,
}

fn evaluate(corpus: &Corpus, swept: &[SweptSeries]) -> CandidateResult {
    let category = |s: &SweptSeries| s.key.split_once('/').map_or("", |(c, _)| c).to_string();
    let in_sample = std::array::from_fn(|p| {
        let cost = &corpus.costs[p];
        let (threshold, _) = scoring::optimize_threshold(swept, cost);
        let mut per = BTreeMap::new();
        for s in swept {
            *per.entry(category(s)).or_insert(0.0) += scoring::score_at(s, cost, threshold).score;
        }
        (threshold, per)
    });
    let mut folds = BTreeMap::new();
    for held in &corpus.categories {
        let (test, train): (Vec<SweptSeries>, Vec<SweptSeries>) =
            swept.iter().cloned().partition(|s| &category(s) == held);
        let per_profile = std::array::from_fn(|p| {
            let cost = &corpus.costs[p];
            let (threshold, train_raw) = scoring::optimize_threshold(&train, cost);
            let held_raw = test
                .iter()
                .map(|s| scoring::score_at(s, cost, threshold).score)
                .sum();
            (train_raw, threshold, held_raw)
        });
        folds.insert(held.clone(), per_profile);
    }
    CandidateResult { in_sample, folds }
}

/// Normalised scores per profile, in [`PROFILE_NAMES`] order.
pub type Scores = [f64; 3];

/// One category's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryRow {
    /// The category.
    pub category: String,
    /// Windows in it.
    pub windows: u32,
    /// In-sample: the chosen candidate, thresholds optimised on the whole corpus; normalised within the category
    /// (raw score when it has no windows: 0 is the best).
    pub in_sample: Scores,
    /// Cross-validated: parameters and thresholds chosen on the other categories; normalised within the category
    /// (raw score when it has no windows).
    pub cross_validated: Scores,
    /// The candidate chosen on the other categories (index into the candidates).
    pub chosen: usize,
}

/// What `medic bench nab-cv` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    /// Candidates tried.
    pub candidates: usize,
    /// The candidate chosen on the whole corpus (index), and its settings.
    pub chosen: usize,
    /// Its settings, as JSON.
    pub chosen_config: serde_json::Value,
    /// In-sample normalised scores of the chosen candidate, per profile.
    pub in_sample: Scores,
    /// In-sample normalised scores of the first candidate (the default), per profile.
    pub default_in_sample: Scores,
    /// The thresholds of the chosen candidate, optimised on the whole corpus, per profile.
    pub in_sample_thresholds: Scores,
    /// Cross-validated normalised scores, per profile.
    pub cross_validated: Scores,
    /// Per category.
    pub categories: Vec<CategoryRow>,
    /// Profile names, in the order of every score array.
    pub profiles: [&'static str; 3],
    /// Streaming cost of the chosen candidate, ns per point.
    pub ns_per_point: f64,
    /// Wall-clock seconds for the whole run.
    pub seconds: f64,
}

/// Cross-validates choosing among `candidates` (the first is preferred on ties). With one candidate only the
/// thresholds are chosen per fold.
pub fn cross_validate(corpus: &Corpus, candidates: &[CompositeConfig]) -> anyhow::Result<CvReport> {
    anyhow::ensure!(!candidates.is_empty(), "no candidate parameter sets");
    let started = std::time::Instant::now();
    let mut results = Vec::with_capacity(candidates.len());
    let mut costs_ns = Vec::with_capacity(candidates.len());
    let mut baseline: Option<Vec<SweptSeries>> = None;
    for c in candidates {
        let (swept, ns) = corpus.sweep(c)?;
        results.push(evaluate(corpus, &swept));
        costs_ns.push(ns);
        baseline.get_or_insert(swept);
    }
    let baseline = baseline.expect("one candidate at least");
    let category_of = |s: &SweptSeries| s.key.split_once('/').map_or("", |(c, _)| c).to_string();
    let null_perfect = |p: usize, cat: Option<&str>| {
        let part: Vec<SweptSeries> = baseline
            .iter()
            .filter(|s| cat.is_none_or(|c| category_of(s) == c))
            .cloned()
            .collect();
        (
            scoring::null_score(&part, &corpus.costs[p]),
            scoring::perfect_score(&part, &corpus.costs[p]),
        )
    };
    let best_by = |score: &dyn Fn(&CandidateResult) -> f64| {
        let mut best = 0;
        for (i, r) in results.iter().enumerate() {
            if score(r) > score(&results[best]) + 1e-9 {
                best = i;
            }
        }
        best
    };
    let standard_in_sample = |r: &CandidateResult| r.in_sample[0].1.values().sum::<f64>();
    let chosen = best_by(&standard_in_sample);
    let in_sample = std::array::from_fn(|p| {
        let (null, perfect) = null_perfect(p, None);
        scoring::normalize(results[chosen].in_sample[p].1.values().sum(), null, perfect)
    });
    let default_in_sample = std::array::from_fn(|p| {
        let (null, perfect) = null_perfect(p, None);
        scoring::normalize(results[0].in_sample[p].1.values().sum(), null, perfect)
    });
    let mut cv_raw = [0.0; 3];
    let mut categories = Vec::new();
    for cat in &corpus.categories {
        let pick = best_by(&|r: &CandidateResult| r.folds[cat][0].0);
        let mut row_in = [0.0; 3];
        let mut row_cv = [0.0; 3];
        for p in 0..3 {
            let held = results[pick].folds[cat][p].2;
            cv_raw[p] += held;
            let (null, perfect) = null_perfect(p, Some(cat));
            let within = |raw: f64| {
                if perfect == null {
                    raw
                } else {
                    scoring::normalize(raw, null, perfect)
                }
            };
            row_cv[p] = within(held);
            row_in[p] = within(results[chosen].in_sample[p].1[cat]);
        }
        categories.push(CategoryRow {
            category: cat.clone(),
            windows: baseline
                .iter()
                .filter(|s| &category_of(s) == cat)
                .map(|s| s.windows)
                .sum(),
            in_sample: row_in,
            cross_validated: row_cv,
            chosen: pick,
        });
    }
    let cross_validated = std::array::from_fn(|p| {
        let (null, perfect) = null_perfect(p, None);
        scoring::normalize(cv_raw[p], null, perfect)
    });
    Ok(CvReport {
        candidates: candidates.len(),
        chosen,
        chosen_config: serde_json::to_value(&candidates[chosen])?,
        in_sample,
        default_in_sample,
        in_sample_thresholds: std::array::from_fn(|p| results[chosen].in_sample[p].0),
        cross_validated,
        categories,
        profiles: PROFILE_NAMES,
        ns_per_point: costs_ns[chosen],
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The candidates `medic bench nab-cv --grid GRID` cross-validates: `default`, the configured composite alone; `pairs`
/// or `full`, the grid around the configured detector's settings — the surprise detector's when `kind` is
/// `surprise`, otherwise the likelihood detector's.
pub fn candidates(
    configured: &CompositeConfig,
    grid: &str,
) -> anyhow::Result<Vec<CompositeConfig>> {
    let full = match grid {
        "default" => return Ok(vec![configured.clone()]),
        "pairs" => false,
        "full" => true,
        other => anyhow::bail!("--grid {other:?}: one of default, pairs, full"),
    };
    Ok(if configured.kind == CompositeKind::Surprise {
        surprise_grid(&configured.surprise, full)
    } else {
        likelihood_grid(&configured.likelihood, full)
    })
}

/// The names of the likelihood detector's tuned parameters, in grid and plateau order.
/// (`alarm_rate` is not among them: it is the calibrated false-alarm rate, chosen for quietness, and NAB's optimised
/// threshold undoes any change of it.)
pub const PARAMETERS: [&str; 7] = [
    "level_horizon",
    "history_horizon",
    "short_window",
    "tail_fraction",
    "extreme_tolerance",
    "surprise",
    "extreme_evidence",
];

/// `config` with parameter `name` multiplied by `factor` (integers rounded, at least 1).
pub fn scaled(config: &LikelihoodConfig, name: &str, factor: f64) -> LikelihoodConfig {
    let mut c = config.clone();
    match name {
        "level_horizon" => c.level_horizon *= factor,
        "history_horizon" => c.history_horizon *= factor,
        "short_window" => {
            c.short_window = ((c.short_window as f64 * factor).round() as usize).max(1)
        }
        "alarm_rate" => c.alarm_rate *= factor,
        "tail_fraction" => c.tail_fraction *= factor,
        "extreme_evidence" => c.extreme_evidence *= factor,
        "extreme_tolerance" => c.extreme_tolerance *= factor,
        "surprise" => c.surprise *= factor,
        "warm_up" => c.warm_up = (c.warm_up as f64 * factor).round() as usize,
        _ => {}
    }
    c
}

/// The names of the surprise detector's tuned parameters, in grid and plateau order (`alarm_rate`, the calibrated
/// false-alarm rate, and the warm-up are shown in the plateau table but not in the grid).
pub const SURPRISE_PARAMETERS: [&str; 5] = [
    "level_horizon",
    "history_horizon",
    "short_window",
    "extreme_tolerance",
    "surprise",
];

/// `config` with parameter `name` multiplied by `factor` (integers rounded, at least 1).
pub fn scaled_surprise(config: &SurpriseConfig, name: &str, factor: f64) -> SurpriseConfig {
    let mut c = config.clone();
    match name {
        "level_horizon" => c.level_horizon *= factor,
        "history_horizon" => c.history_horizon *= factor,
        "short_window" => {
            c.short_window = ((c.short_window as f64 * factor).round() as usize).max(1)
        }
        "alarm_rate" => c.alarm_rate *= factor,
        "extreme_tolerance" => c.extreme_tolerance *= factor,
        "surprise" => c.surprise *= factor,
        "warm_up" => c.warm_up = (c.warm_up as f64 * factor).round() as usize,
        _ => {}
    }
    c
}

/// The surprise detector around `base`: each tuned parameter at ×0.5, ×1 and ×2, changed one or two at a time (the
/// default first; 51 sets), or every combination (`full`: 3^5 = 243).
pub fn surprise_grid(base: &SurpriseConfig, full: bool) -> Vec<CompositeConfig> {
    let factors = [1.0, 0.5, 2.0];
    let mut configs: Vec<SurpriseConfig> = vec![base.clone()];
    if full {
        for name in SURPRISE_PARAMETERS {
            configs = configs
                .iter()
                .flat_map(|c| factors.iter().map(move |&f| scaled_surprise(c, name, f)))
                .collect();
        }
    } else {
        for (i, a) in SURPRISE_PARAMETERS.iter().enumerate() {
            for &fa in &factors[1..] {
                configs.push(scaled_surprise(base, a, fa));
            }
            for b in &SURPRISE_PARAMETERS[i + 1..] {
                for &fa in &factors[1..] {
                    for &fb in &factors[1..] {
                        configs.push(scaled_surprise(&scaled_surprise(base, a, fa), b, fb));
                    }
                }
            }
        }
    }
    configs
        .into_iter()
        .map(|surprise| CompositeConfig {
            kind: CompositeKind::Surprise,
            surprise,
            ..CompositeConfig::default()
        })
        .collect()
}

/// The grid the likelihood detector's defaults were chosen from: each tuned parameter at ×0.5, ×1 and ×2 of its
/// value in `base`, changed one or two at a time (the default first). `full` takes every combination (3^7 = 2,187) instead.
pub fn likelihood_grid(base: &LikelihoodConfig, full: bool) -> Vec<CompositeConfig> {
    let base = base.clone();
    let factors = [1.0, 0.5, 2.0];
    let mut configs: Vec<LikelihoodConfig> = Vec::new();
    if full {
        let mut combos = vec![base.clone()];
        for name in PARAMETERS {
            combos = combos
                .iter()
                .flat_map(|c| factors.iter().map(move |&f| scaled(c, name, f)))
                .collect();
        }
        configs = combos;
    } else {
        configs.push(base.clone());
        for (i, a) in PARAMETERS.iter().enumerate() {
            for &fa in &factors[1..] {
                configs.push(scaled(&base, a, fa));
            }
            for b in &PARAMETERS[i + 1..] {
                for &fa in &factors[1..] {
                    for &fb in &factors[1..] {
                        configs.push(scaled(&scaled(&base, a, fa), b, fb));
                    }
                }
            }
        }
    }
    configs
        .into_iter()
        .map(|likelihood| CompositeConfig {
            kind: CompositeKind::Likelihood,
            likelihood,
            ..CompositeConfig::default()
        })
        .collect()
}

/// One row of the plateau table.
#[derive(Debug, Clone, Serialize)]
pub struct PlateauRow {
    /// The parameter changed (`default` for none).
    pub parameter: String,
    /// Its value.
    pub value: f64,
    /// In-sample normalised scores per profile.
    pub scores: Scores,
    /// Standard-profile change from the default, points.
    pub delta_standard: f64,
}

/// In-sample normalised scores per profile of one configuration (thresholds optimised on the corpus).
pub fn in_sample(corpus: &Corpus, config: &CompositeConfig) -> anyhow::Result<Scores> {
    let (swept, _) = corpus.sweep(config)?;
    Ok(std::array::from_fn(|p| {
        let cost = &corpus.costs[p];
        let (_, raw) = scoring::optimize_threshold(&swept, cost);
        scoring::normalize(
            raw,
            scoring::null_score(&swept, cost),
            scoring::perfect_score(&swept, cost),
        )
    }))
}

/// The detector `base` configures — the surprise detector when its `kind` is `surprise`, otherwise the likelihood
/// detector — with its settings, and each tuned parameter (and `alarm_rate` and the warm-up) at ×0.75 and ×1.25,
/// in-sample.
pub fn plateau(corpus: &Corpus, base: &CompositeConfig) -> anyhow::Result<Vec<PlateauRow>> {
    let surprise = base.kind == CompositeKind::Surprise;
    let base = &CompositeConfig {
        kind: if surprise {
            CompositeKind::Surprise
        } else {
            CompositeKind::Likelihood
        },
        ..base.clone()
    };
    let default = in_sample(corpus, base)?;
    let mut rows = vec![PlateauRow {
        parameter: "default".into(),
        value: f64::NAN,
        scores: default,
        delta_standard: 0.0,
    }];
    let names: Vec<&str> = if surprise {
        SURPRISE_PARAMETERS.to_vec()
    } else {
        PARAMETERS.to_vec()
    };
    for name in names.into_iter().chain(["alarm_rate", "warm_up"]) {
        for factor in [0.75, 1.25] {
            let (config, value) = if surprise {
                let surprise = scaled_surprise(&base.surprise, name, factor);
                let value = serde_json::to_value(&surprise)?[name]
                    .as_f64()
                    .unwrap_or(f64::NAN);
                (
                    CompositeConfig {
                        surprise,
                        ..base.clone()
                    },
                    value,
                )
            } else {
                let likelihood = scaled(&base.likelihood, name, factor);
                let value = serde_json::to_value(&likelihood)?[name]
                    .as_f64()
                    .unwrap_or(f64::NAN);
                (
                    CompositeConfig {
                        likelihood,
                        ..base.clone()
                    },
                    value,
                )
            };
            let scores = in_sample(corpus, &config)?;
            rows.push(PlateauRow {
                parameter: name.to_string(),
                value,
                delta_standard: scores[0] - default[0],
                scores,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_surprise_grid_starts_with_the_base_and_changes_one_or_two_parameters() {
        let base = SurpriseConfig::default();
        let grid = surprise_grid(&base, false);
        // The base, each of 5 parameters at 2 factors, each of 10 pairs at 4 combinations.
        assert_eq!(grid.len(), 1 + 5 * 2 + 10 * 4);
        assert_eq!(grid[0].surprise, base);
        assert!(grid.iter().all(|c| c.kind == CompositeKind::Surprise));
        assert_eq!(surprise_grid(&base, true).len(), 3usize.pow(5));
        let halved = scaled_surprise(&base, "history_horizon", 0.5);
        assert_eq!(halved.history_horizon, base.history_horizon / 2.0);
    }

    #[test]
    fn the_grid_follows_the_configured_kind() {
        let surprise = CompositeConfig::surprise();
        assert_eq!(
            candidates(&surprise, "default").unwrap(),
            vec![surprise.clone()]
        );
        let pairs = candidates(&surprise, "pairs").unwrap();
        assert_eq!(pairs, surprise_grid(&surprise.surprise, false));
        assert!(pairs.iter().all(|c| c.kind == CompositeKind::Surprise));
        assert_eq!(candidates(&surprise, "full").unwrap().len(), 3usize.pow(5));
        let likelihood = CompositeConfig {
            kind: CompositeKind::Likelihood,
            ..CompositeConfig::default()
        };
        assert_eq!(
            candidates(&likelihood, "pairs").unwrap(),
            likelihood_grid(&likelihood.likelihood, false)
        );
        let err = candidates(&surprise, "most").unwrap_err().to_string();
        assert!(err.contains("--grid \"most\""), "{err}");
    }

    /// The surprise detector cross-validated with its parameters also chosen per fold from the grid of pairs (the
    /// same as `medic bench nab-cv --grid pairs` with `kind = "surprise"`): `NAB_DIR=... cargo test --release -p medic
    /// --lib surprise_grid_cross_validated -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs the NAB slice; prints figures for BENCHMARKS.md"]
    fn surprise_grid_cross_validated() {
        let dir = std::env::var_os("NAB_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/nab"));
        let corpus = Corpus::read(&dir).unwrap();
        let report =
            cross_validate(&corpus, &surprise_grid(&SurpriseConfig::default(), false)).unwrap();
        println!("{}", serde_json::to_string(&report).unwrap());
    }
}

#[cfg(test)]
mod experiments {
    use super::*;
    use scoring::RowKind;

    /// Each window's first row at or above `threshold` (its row, its place in the window from 0 to 1, its score) or
    /// `missed`, then the false positives (rows outside windows and after the probation at or above it, with their
    /// scores).
    fn detections(s: &SweptSeries, threshold: f64) -> String {
        let mut out = Vec::new();
        for w in 0..s.windows {
            let rows: Vec<usize> = (0..s.rows.len())
                .filter(|&i| s.rows[i].kind == RowKind::Window(w))
                .collect();
            let Some(&first) = rows.first() else {
                continue;
            };
            let hit = rows
                .iter()
                .position(|&i| s.rows[i].anomaly_score >= threshold);
            out.push(match hit {
                Some(k) => format!(
                    "window {first}: at {:.2} ({:.2})",
                    k as f64 / rows.len() as f64,
                    s.rows[rows[k]].anomaly_score
                ),
                None => format!("window {first}: missed"),
            });
        }
        let fps: Vec<String> = (0..s.rows.len())
            .filter(|&i| s.rows[i].kind == RowKind::Outside && s.rows[i].anomaly_score >= threshold)
            .map(|i| format!("{i} ({:.2})", s.rows[i].anomaly_score))
            .collect();
        format!("{}; false positives: {}", out.join(", "), fps.join(", "))
    }

    /// Each composite configuration of the JSON array in `NAB_CONFIGS` (objects merged over the default),
    /// cross-validated alone (thresholds chosen per fold): one line per configuration. `NAB_SERIES=1` adds each
    /// series' outcome at the in-sample standard threshold, `NAB_SERIES=windows` also each window's first detection
    /// and the false positives.
    /// `NAB_CONFIGS='[{}, {"surprise": {"short_window": 4}}]' cargo test -p medic --lib nab_configs -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "an experiment tool: needs NAB_CONFIGS and the slice"]
    fn nab_configs() {
        let dir = std::env::var_os("NAB_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/nab"));
        let corpus = Corpus::read(&dir).unwrap();
        let configs: Vec<CompositeConfig> =
            serde_json::from_str(&std::env::var("NAB_CONFIGS").unwrap()).unwrap();
        for c in configs {
            if std::env::var_os("NAB_SERIES").is_some() {
                // Per series at the in-sample standard threshold: windows, TP, FP, FN, raw score.
                let (swept, _) = corpus.sweep(&c).unwrap();
                let cost = &corpus.costs[0];
                let (threshold, _) = scoring::optimize_threshold(&swept, cost);
                for s in &swept {
                    let o = scoring::score_at(s, cost, threshold);
                    println!(
                        "{:60} w {:2} tp {:2} fp {:3} fn {:2} score {:7.3}",
                        s.key, s.windows, o.tp, o.fp, o.fn_, o.score
                    );
                    if std::env::var("NAB_SERIES").as_deref() == Ok("windows") {
                        println!("    {}", detections(s, threshold));
                    }
                }
            }
            let r = cross_validate(&corpus, std::slice::from_ref(&c)).unwrap();
            let cats: Vec<String> = r
                .categories
                .iter()
                .map(|row| format!("{:.2}/{:.2}", row.in_sample[0], row.cross_validated[0]))
                .collect();
            println!(
                "in {:.2} {:.2} {:.2} | cv {:.2} {:.2} {:.2} | {} | thr {:.3} | {:.0} ns | {}",
                r.in_sample[0],
                r.in_sample[1],
                r.in_sample[2],
                r.cross_validated[0],
                r.cross_validated[1],
                r.cross_validated[2],
                cats.join(" "),
                r.in_sample_thresholds[0],
                r.ns_per_point,
                serde_json::to_string(&c.surprise).unwrap()
            );
        }
    }
}
