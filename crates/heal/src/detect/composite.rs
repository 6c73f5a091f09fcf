//! The composite detector, the engine's per-metric detector. Its `kind` chooses what it runs:
//!
//! - `legacy`: leads, stand-ins and a refractory period over the window detectors, described below.
//! - `likelihood`: the [`Likelihood`] detector (see [`super::likelihood`]): a causal raw score turned into an alarm by
//!   its anomaly likelihood, plus new extremes, one alarm per event. Its settings are `likelihood`; the other
//!   settings below do not apply to it. It is not the default: cross-validated on the NAB slice it scores below the
//!   legacy composite (BENCHMARKS.md, NAB).
//! - `surprise`: the [`Surprise`] detector (see [`super::surprise`]): the likelihood detector with a raw score that
//!   does not saturate, new extremes ranked below the alarm, one report per event at any threshold; settings
//!   `surprise`. While it warms up (its first `warm_up` points) the legacy detectors stand in, so a new metric is
//!   judged from its first minutes; after that it alone scores and the legacy detectors are dropped. **The default**:
//!   cross-validated on the NAB slice it scores above the legacy composite (68.61 against 64.37, standard profile)
//!   and it is quieter on healthy series (BENCHMARKS.md, NAB).
//!
//! The legacy composite runs the streaming detectors on the same stream and combines their scores into one.
//! Detectors named in `lead` lead: once any of them has judged a point, the composite scores the largest of their
//! scores. While every lead is still warming up, the other detectors with a weight stand in, combined by a weighted
//! power mean (1 = mean, large = max) over those that have judged the point (one still warming up abstains rather
//! than voting "normal"). A refractory period then damps repeated alerts right after one (an anomaly is reported at
//! its start, not for as long as the baselines take to adapt), unless a much larger excursion breaks through; it
//! applies to what the leads say, never to the stand-ins, so a blip during warm-up cannot hide what follows. Its
//! score maps to an [`AnomalyLevel`] through [`SeverityCutoffs`].
//!
//! The legacy defaults are one parameter set for every series, chosen on the NAB slice in `shared/nab` (see
//! BENCHMARKS.md: 72.2 in-sample on the standard profile, lower cross-validated): the seasonal profile
//! (hour of day) and range novelty lead; the window detectors (z-score, MAD, EWMA, IQR, rate of change, variance)
//! watch while those warm up — the first minutes of a metric, or an hour of the day the profile has not seen yet —
//! and keep their baselines current for that; a score of 0.2 starts a 200-point refractory period that only an
//! excursion ten times further from the last calm value breaks.

use serde::{Deserialize, Serialize};

use super::ewma::{Ewma, EwmaConfig};
use super::iqr::{Iqr, IqrConfig};
use super::likelihood::{Likelihood, LikelihoodConfig};
use super::mad::{Mad, MadConfig};
use super::range::{RangeConfig, RangeNovelty};
use super::roc::{RateOfChange, RocConfig};
use super::seasonal::{Seasonal, SeasonalConfig};
use super::stats::clean_score;
use super::surprise::{Surprise, SurpriseConfig};
use super::variance::{VarianceConfig, VarianceShift};
use super::zscore::{ZScore, ZScoreConfig};
use super::{AnomalyLevel, Detector, SeverityCutoffs};
use crate::clock::Timestamp;
use crate::config::{range_f, range_u};

/// The weight of each detector in the composite; 0 leaves a detector out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// Rolling z-score.
    pub zscore: f64,
    /// Rolling median/MAD.
    pub mad: f64,
    /// EWMA deviation.
    pub ewma: f64,
    /// IQR fences.
    pub iqr: f64,
    /// Rate of change.
    pub roc: f64,
    /// Seasonal profile.
    pub seasonal: f64,
    /// Variance change (includes flatlines).
    pub variance: f64,
    /// Range novelty (a value beyond every value seen).
    pub range: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            zscore: 1.0,
            mad: 0.5,
            ewma: 1.0,
            iqr: 0.5,
            roc: 0.5,
            seasonal: 1.0,
            variance: 0.25,
            range: 1.0,
        }
    }
}

/// What a [`Composite`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompositeKind {
    /// Leads, stand-ins and a refractory period over the window detectors.
    Legacy,
    /// The [`Likelihood`] detector with the `likelihood` settings.
    Likelihood,
    /// The [`Surprise`] detector with the `surprise` settings (the legacy detectors stand in while it warms up).
    #[default]
    Surprise,
}

/// Settings of the [`Composite`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompositeConfig {
    /// What it runs: `surprise` (the default), `legacy` or `likelihood`.
    pub kind: CompositeKind,
    /// Settings of the likelihood detector (`kind = "likelihood"`).
    pub likelihood: LikelihoodConfig,
    /// Settings of the surprise detector (`kind = "surprise"`).
    pub surprise: SurpriseConfig,
    /// Weight of each detector.
    pub weights: Weights,
    /// Exponent of the weighted power mean of the scores: 1 is the weighted mean (all must agree), larger values
    /// move towards the maximum (one confident detector is enough). At least 1.
    pub combine_power: f64,
    /// Detectors (by name) that lead: once any of them has judged a point, the composite's score is the largest of
    /// their scores; while none has (all still warming up), the weighted combination of the others stands in.
    pub lead: Vec<String>,
    /// A combined score at or above this starts a refractory period.
    pub refractory_trigger: f64,
    /// Points after a trigger during which scores are damped.
    pub refractory_points: usize,
    /// What damped scores are multiplied by, in [0, 1].
    pub refractory_factor: f64,
    /// During a refractory period, a point at or above the trigger that lies at least this many times further from
    /// the last calm value than the triggering point did is not damped: a much larger excursion is news, not an echo
    /// (a latency blip followed by a disk stalling). 0 turns this off.
    pub refractory_breakout: f64,
    /// Score cut-offs of the severity levels.
    pub cutoffs: SeverityCutoffs,
    /// Settings of the z-score detector.
    pub zscore: ZScoreConfig,
    /// Settings of the MAD detector.
    pub mad: MadConfig,
    /// Settings of the EWMA detector.
    pub ewma: EwmaConfig,
    /// Settings of the IQR detector.
    pub iqr: IqrConfig,
    /// Settings of the rate-of-change detector.
    pub roc: RocConfig,
    /// Settings of the seasonal detector.
    pub seasonal: SeasonalConfig,
    /// Settings of the variance-change detector.
    pub variance: VarianceConfig,
    /// Settings of the range-novelty detector.
    pub range: RangeConfig,
}

impl Default for CompositeConfig {
    fn default() -> Self {
        Self {
            kind: CompositeKind::Surprise,
            likelihood: LikelihoodConfig::default(),
            surprise: SurpriseConfig::default(),
            weights: Weights::default(),
            combine_power: 1.0,
            lead: vec!["seasonal".to_string(), "range".to_string()],
            refractory_trigger: 0.2,
            refractory_points: 200,
            refractory_factor: 0.0,
            refractory_breakout: 10.0,
            cutoffs: SeverityCutoffs::default(),
            zscore: ZScoreConfig::default(),
            mad: MadConfig::default(),
            ewma: EwmaConfig::default(),
            iqr: IqrConfig::default(),
            roc: RocConfig::default(),
            seasonal: SeasonalConfig {
                min_samples: 12,
                ..SeasonalConfig::default()
            },
            variance: VarianceConfig::default(),
            range: RangeConfig::default(),
        }
    }
}

/// Largest accepted window, in points, of a window detector.
const WINDOW_MAX: u64 = 100_000;
/// Largest accepted `min_samples` of any detector.
const MIN_SAMPLES_MAX: u64 = 1_000_000;
/// Largest accepted weight, threshold, scale or breakout factor.
const FACTOR_MAX: f64 = 1e6;

impl CompositeConfig {
    /// The likelihood detector with its default settings (`kind = "likelihood"`).
    pub fn likelihood() -> Self {
        Self {
            kind: CompositeKind::Likelihood,
            ..Self::default()
        }
    }

    /// The legacy composite with its default settings (`kind = "legacy"`).
    pub fn legacy() -> Self {
        Self {
            kind: CompositeKind::Legacy,
            ..Self::default()
        }
    }

    /// The surprise detector with its default settings (`kind = "surprise"`).
    pub fn surprise() -> Self {
        Self {
            kind: CompositeKind::Surprise,
            ..Self::default()
        }
    }

    /// Checks every setting of the composite and of its detectors; the error names the key (under
    /// `engine.composite.`), the value and the accepted range. A composite whose every weight is 0 would never score,
    /// and a lead that names no detector would never lead: both are refused.
    pub fn validate(&self) -> Result<(), String> {
        self.likelihood.validate("composite.likelihood.")?;
        self.surprise.validate("composite.surprise.")?;
        self.validate_weights()?;
        self.validate_refractory_and_cutoffs()?;
        self.validate_detectors()
    }

    /// Each weight in range, at least one above 0, and every lead a detector of the composite.
    fn validate_weights(&self) -> Result<(), String> {
        let w = &self.weights;
        let weights = [
            ("zscore", w.zscore),
            ("mad", w.mad),
            ("ewma", w.ewma),
            ("iqr", w.iqr),
            ("roc", w.roc),
            ("seasonal", w.seasonal),
            ("variance", w.variance),
            ("range", w.range),
        ];
        for (name, weight) in weights {
            in_range_f(&format!("weights.{name}"), weight, 0.0, FACTOR_MAX, false)?;
        }
        if weights.iter().all(|(_, weight)| *weight == 0.0) {
            return Err(
                "engine.composite.weights: every weight is 0, so the composite would never score: give at least one \
                 detector a weight above 0"
                    .to_string(),
            );
        }
        for name in &self.lead {
            if !weights.iter().any(|(n, _)| n == name) {
                return Err(format!(
                    "engine.composite.lead names {name:?}, which is not one of the composite's detectors {:?}",
                    weights.map(|(n, _)| n)
                ));
            }
        }
        Ok(())
    }

    /// How scores combine and quiet down after an alarm, and the severity cut-offs (each at least the one below).
    fn validate_refractory_and_cutoffs(&self) -> Result<(), String> {
        in_range_f("combine_power", self.combine_power, 1.0, 64.0, false)?;
        in_range_f(
            "refractory_trigger",
            self.refractory_trigger,
            0.0,
            1.0,
            true,
        )?;
        in_range_u("refractory_points", self.refractory_points, 0, WINDOW_MAX)?;
        in_range_f("refractory_factor", self.refractory_factor, 0.0, 1.0, false)?;
        let breakout = self.refractory_breakout;
        in_range_f("refractory_breakout", breakout, 0.0, FACTOR_MAX, false)?;
        let c = &self.cutoffs;
        let cutoffs = [
            ("info", c.info),
            ("low", c.low),
            ("medium", c.medium),
            ("high", c.high),
            ("critical", c.critical),
        ];
        let mut below = 0.0;
        for (name, v) in cutoffs {
            in_range_f(&format!("cutoffs.{name}"), v, below, 1.0, false)?;
            below = v;
        }
        Ok(())
    }

    /// The windowed detectors' window, warm-up, threshold and scale; then the smoothed ones.
    fn validate_detectors(&self) -> Result<(), String> {
        let (z, m, i, r, v) = (
            &self.zscore,
            &self.mad,
            &self.iqr,
            &self.roc,
            &self.variance,
        );
        let windowed = [
            (
                "zscore",
                "window",
                z.window,
                z.min_samples,
                "threshold",
                z.threshold,
                z.scale,
            ),
            (
                "mad",
                "window",
                m.window,
                m.min_samples,
                "threshold",
                m.threshold,
                m.scale,
            ),
            (
                "iqr",
                "window",
                i.window,
                i.min_samples,
                "fence",
                i.fence,
                i.scale,
            ),
            (
                "roc",
                "window",
                r.window,
                r.min_samples,
                "threshold",
                r.threshold,
                r.scale,
            ),
            (
                "variance",
                "short_window",
                v.short_window,
                v.min_samples,
                "threshold",
                v.threshold,
                v.scale,
            ),
        ];
        for (name, window_key, window, min_samples, threshold_key, threshold, scale) in windowed {
            in_range_u(&format!("{name}.{window_key}"), window, 2, WINDOW_MAX)?;
            in_range_u(
                &format!("{name}.min_samples"),
                min_samples,
                0,
                MIN_SAMPLES_MAX,
            )?;
            in_range_f(
                &format!("{name}.{threshold_key}"),
                threshold,
                0.0,
                FACTOR_MAX,
                false,
            )?;
            in_range_f(&format!("{name}.scale"), scale, 0.0, FACTOR_MAX, true)?;
        }
        self.validate_smoothed()
    }

    /// The smoothed detectors' (ewma, seasonal) factor, warm-up, threshold and scale, and the variance and range
    /// detectors' own settings.
    fn validate_smoothed(&self) -> Result<(), String> {
        let v = &self.variance;
        let (e, s) = (&self.ewma, &self.seasonal);
        let smoothed = [
            ("ewma", e.alpha, e.min_samples, e.threshold, e.scale),
            ("seasonal", s.alpha, s.min_samples, s.threshold, s.scale),
        ];
        for (name, alpha, min_samples, threshold, scale) in smoothed {
            in_range_f(&format!("{name}.alpha"), alpha, 0.0, 1.0, true)?;
            in_range_u(
                &format!("{name}.min_samples"),
                min_samples,
                0,
                MIN_SAMPLES_MAX,
            )?;
            in_range_f(
                &format!("{name}.threshold"),
                threshold,
                0.0,
                FACTOR_MAX,
                false,
            )?;
            in_range_f(&format!("{name}.scale"), scale, 0.0, FACTOR_MAX, true)?;
        }
        in_range_f("variance.alpha", v.alpha, 0.0, 1.0, true)?;
        in_range_u(
            "range.min_samples",
            self.range.min_samples,
            0,
            MIN_SAMPLES_MAX,
        )?;
        in_range_f(
            "range.tolerance",
            self.range.tolerance,
            0.0,
            FACTOR_MAX,
            false,
        )?;
        in_range_f("range.scale", self.range.scale, 0.0, FACTOR_MAX, true)
    }
}

/// `engine.composite.<key>` within range, or an error naming key, value and range.
fn in_range_f(key: &str, v: f64, lo: f64, hi: f64, lo_open: bool) -> Result<(), String> {
    range_f(&format!("composite.{key}"), v, lo, hi, lo_open)
}

/// `engine.composite.<key>` within `lo..=hi`, or an error naming key, value and range.
fn in_range_u(key: &str, v: usize, lo: u64, hi: u64) -> Result<(), String> {
    range_u(&format!("composite.{key}"), v as u64, lo, hi)
}

struct Part {
    detector: Box<dyn Detector>,
    weight: f64,
    /// Named in `lead`.
    lead: bool,
    score: f64,
}

/// The engine's per-metric detector: the likelihood detector, or the legacy weighted combination of the streaming
/// detectors.
pub struct Composite {
    config: CompositeConfig,
    /// Set when `kind` is `likelihood` or `surprise`: then it alone scores (for `surprise`, once it has judged a
    /// point; until then the legacy detectors stand in).
    alone: Option<Box<dyn Detector>>,
    /// `kind = "surprise"` and its detector has not judged a point yet: the legacy detectors stand in.
    standing_in: bool,
    parts: Vec<Part>,
    power: f64,
    refractory_left: usize,
    /// The last value that scored below the refractory trigger outside a refractory period.
    calm_value: Option<f64>,
    /// How far from `calm_value` the point that started the refractory period was.
    trigger_distance: f64,
    last_raw: f64,
    last_score: f64,
    last_damped: bool,
}

impl std::fmt::Debug for Composite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composite")
            .field("config", &self.config)
            .field("last_score", &self.last_score)
            .finish_non_exhaustive()
    }
}

impl Composite {
    /// A composite with these settings. Detectors with a weight ≤ 0 (or not finite) are left out.
    pub fn new(config: CompositeConfig) -> Self {
        let alone: Option<Box<dyn Detector>> = match config.kind {
            CompositeKind::Legacy => None,
            CompositeKind::Likelihood => Some(Box::new(Likelihood::new(config.likelihood.clone()))),
            CompositeKind::Surprise => Some(Box::new(Surprise::new(config.surprise.clone()))),
        };
        let w = &config.weights;
        let candidates: [(f64, Box<dyn Detector>); 8] = [
            (w.zscore, Box::new(ZScore::new(config.zscore.clone()))),
            (w.mad, Box::new(Mad::new(config.mad.clone()))),
            (w.ewma, Box::new(Ewma::new(config.ewma.clone()))),
            (w.iqr, Box::new(Iqr::new(config.iqr.clone()))),
            (w.roc, Box::new(RateOfChange::new(config.roc.clone()))),
            (w.seasonal, Box::new(Seasonal::new(config.seasonal.clone()))),
            (
                w.variance,
                Box::new(VarianceShift::new(config.variance.clone())),
            ),
            (w.range, Box::new(RangeNovelty::new(config.range.clone()))),
        ];
        let parts: Vec<Part> = candidates
            .into_iter()
            .filter(|_| config.kind != CompositeKind::Likelihood)
            .filter(|(weight, _)| weight.is_finite() && *weight > 0.0)
            .map(|(weight, detector)| Part {
                lead: config.lead.iter().any(|n| n == detector.name()),
                detector,
                weight,
                score: 0.0,
            })
            .collect();
        let power = if config.combine_power.is_finite() {
            config.combine_power.clamp(1.0, 64.0)
        } else {
            1.0
        };
        Self {
            standing_in: config.kind == CompositeKind::Surprise,
            config,
            alone,
            parts,
            power,
            refractory_left: 0,
            calm_value: None,
            trigger_distance: 0.0,
            last_raw: 0.0,
            last_score: 0.0,
            last_damped: false,
        }
    }

    /// Whether no detector with a weight is named in `lead` (then the refractory period applies to the weighted
    /// combination as a whole).
    fn lead_parts_absent(&self) -> bool {
        !self.parts.iter().any(|p| p.lead)
    }

    /// Its settings.
    pub fn config(&self) -> &CompositeConfig {
        &self.config
    }

    /// The severity level of the last score.
    pub fn level(&self) -> AnomalyLevel {
        self.config.cutoffs.level(self.last_score)
    }

    /// Each detector's name and its score for the last point.
    pub fn part_scores(&self) -> Vec<(&str, f64)> {
        self.parts
            .iter()
            .map(|p| (p.detector.name(), p.score))
            .collect()
    }
}

impl Default for Composite {
    fn default() -> Self {
        Self::new(CompositeConfig::default())
    }
}

impl Detector for Composite {
    fn name(&self) -> &str {
        "composite"
    }

    fn update(&mut self, at: Timestamp, value: f64) -> f64 {
        if let Some(l) = &mut self.alone {
            let score = clean_score(l.update(at, value));
            if self.standing_in && l.judged() {
                // Warmed up: the stand-ins are no longer needed.
                self.standing_in = false;
                self.parts = Vec::new();
            }
            if !self.standing_in {
                self.last_score = score;
                return score;
            }
        }
        if !value.is_finite() {
            for p in &mut self.parts {
                p.score = 0.0;
                p.detector.update(at, value);
            }
            self.last_raw = 0.0;
            self.last_score = 0.0;
            self.last_damped = false;
            return 0.0;
        }
        // Detectors still warming up abstain: a missing opinion is not a vote for "normal".
        let (mut acc, mut weights, mut lead) = (0.0, 0.0, None::<f64>);
        for p in &mut self.parts {
            p.score = clean_score(p.detector.update(at, value));
            if !p.detector.judged() {
                continue;
            }
            if p.lead {
                lead = Some(lead.map_or(p.score, |l| l.max(p.score)));
            } else {
                acc += p.weight * p.score.powf(self.power);
                weights += p.weight;
            }
        }
        let raw = match lead {
            Some(lead) => lead,
            None if weights > 0.0 => clean_score((acc / weights).powf(1.0 / self.power)),
            None => 0.0,
        };
        self.last_raw = raw;
        let distance = self.calm_value.map(|c| (value - c).abs());
        let triggered = raw >= self.config.refractory_trigger;
        let breakout = self.config.refractory_breakout;
        let breaks_out = triggered
            && breakout.is_finite()
            && breakout > 0.0
            && distance.is_some_and(|d| d > 0.0 && d >= breakout * self.trigger_distance);
        let score = if lead.is_none() && !self.lead_parts_absent() {
            // Only stand-ins judged (every lead is warming up): their alerts are neither damped nor start a
            // refractory period, so a warm-up blip cannot hide what follows before the leads can judge.
            self.last_damped = false;
            if !triggered {
                self.calm_value = Some(value);
            }
            raw
        } else if self.refractory_left > 0 && !breaks_out {
            self.refractory_left -= 1;
            self.last_damped = true;
            raw * self.config.refractory_factor.clamp(0.0, 1.0)
        } else {
            self.last_damped = false;
            if triggered {
                self.refractory_left = self.config.refractory_points;
                self.trigger_distance = distance.unwrap_or(0.0);
            } else {
                self.calm_value = Some(value);
            }
            raw
        };
        self.last_score = clean_score(score);
        self.last_score
    }

    fn judged(&self) -> bool {
        if let Some(l) = self.alone.as_ref().filter(|_| !self.standing_in) {
            return l.judged();
        }
        self.parts.iter().any(|p| p.detector.judged())
    }

    fn explain(&self) -> String {
        if let Some(l) = self.alone.as_ref().filter(|_| !self.standing_in) {
            return l.explain();
        }
        let mut parts: Vec<&Part> = self.parts.iter().collect();
        parts.sort_by(|a, b| (b.weight * b.score).total_cmp(&(a.weight * a.score)));
        let mut s = format!(
            "composite: score {:.3} ({:?})",
            self.last_score,
            self.config.cutoffs.level(self.last_score)
        );
        if self.last_damped {
            s.push_str(&format!(
                ", damped from {:.3} (refractory after an alert)",
                self.last_raw
            ));
        }
        for p in parts {
            s.push_str(&format!(
                "\n  {} (weight {}): {}",
                p.detector.name(),
                p.weight,
                p.detector.explain()
            ));
        }
        s
    }
}
