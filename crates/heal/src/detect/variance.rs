//! Variance change: the spread of the last few points against the long-run spread (a weighted geometric mean of
//! past short-window spreads), scored on the log of their ratio. Catches what value-based detectors miss: noise that suddenly grows, and a series that goes flat (a stuck
//! sensor, a stalled counter).

use serde::{Deserialize, Serialize};

use super::Detector;
use super::explain::{Last, describe};
use super::stats::{RollingWindow, deviation_score, floored_spread};
use crate::clock::Timestamp;

/// Settings of a [`VarianceShift`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VarianceConfig {
    /// Points in the short window whose spread is judged.
    pub short_window: usize,
    /// Weight of the newest short-window variance in the long-run variance, in (0, 1].
    pub alpha: f64,
    /// Points needed before judging (score 0 until then).
    pub min_samples: usize,
    /// `|ln(short std / long std)|` at or below this scores 0 (1.3 ≈ ln 3.7: 3.7 times wider or narrower).
    pub threshold: f64,
    /// How fast the score rises past the threshold.
    pub scale: f64,
}

impl Default for VarianceConfig {
    fn default() -> Self {
        Self {
            short_window: 12,
            alpha: 0.01,
            min_samples: 60,
            threshold: 1.3,
            scale: 0.4,
        }
    }
}

/// Short-versus-long spread detector.
#[derive(Debug, Clone)]
pub struct VarianceShift {
    config: VarianceConfig,
    alpha: f64,
    short: RollingWindow,
    /// Weighted mean of ln(short-window std).
    long_ln_std: f64,
    long_mean: f64,
    seen: usize,
    last: Last,
}

impl VarianceShift {
    /// A detector with these settings.
    pub fn new(config: VarianceConfig) -> Self {
        let alpha = if config.alpha.is_finite() {
            config.alpha.clamp(1e-6, 1.0)
        } else {
            0.01
        };
        Self {
            short: RollingWindow::new(config.short_window.max(3)),
            config,
            alpha,
            long_ln_std: 0.0,
            long_mean: 0.0,
            seen: 0,
            last: Last::Nothing,
        }
    }
}

impl Default for VarianceShift {
    fn default() -> Self {
        Self::new(VarianceConfig::default())
    }
}

impl Detector for VarianceShift {
    fn name(&self) -> &str {
        "variance"
    }

    fn update(&mut self, _at: Timestamp, value: f64) -> f64 {
        if !value.is_finite() {
            self.last = Last::NonFinite;
            return 0.0;
        }
        self.short.push(value);
        self.seen = self.seen.saturating_add(1);
        if !self.short.is_full() {
            self.last = Last::Warming {
                seen: self.seen,
                needed: self.config.min_samples.max(self.short.len() + 1),
            };
            return 0.0;
        }
        let mean = self.short.mean();
        let short_std = self.short.std(mean);
        let needed = self.config.min_samples.max(2);
        let score = if self.seen < needed {
            self.last = Last::Warming {
                seen: self.seen,
                needed,
            };
            0.0
        } else {
            let long_std = self.long_ln_std.exp();
            let short_ln = floored_spread(short_std, self.long_mean).ln();
            let ratio = (short_ln - self.long_ln_std).exp();
            let d = (short_ln - self.long_ln_std).abs();
            let d = if d.is_nan() { 0.0 } else { d };
            let score = deviation_score(d, self.config.threshold, self.config.scale);
            self.last = Last::Scored {
                value: short_std,
                centre: long_std,
                spread: ratio,
                deviation: d,
                score,
            };
            score
        };
        // The long-run spread learns the log of the short-window spread slowly (a geometric mean, so one burst
        // does not inflate it; equal weights until 1/alpha windows).
        let filled = self.seen - self.short.len() + 1;
        let a = self.alpha.max(1.0 / filled as f64);
        self.long_mean = (1.0 - a) * self.long_mean + a * mean;
        let short_ln = floored_spread(short_std, self.long_mean).ln();
        self.long_ln_std = (1.0 - a) * self.long_ln_std + a * short_ln;
        score
    }

    fn judged(&self) -> bool {
        matches!(self.last, Last::Scored { .. })
    }

    fn explain(&self) -> String {
        match self.last {
            Last::Scored {
                value,
                centre,
                spread,
                score,
                ..
            } => format!(
                "variance: recent std {value:.6} vs long-run std {centre:.6} (ratio {spread:.3}); score {score:.3}"
            ),
            ref other => describe("variance", "", "", other),
        }
    }
}
