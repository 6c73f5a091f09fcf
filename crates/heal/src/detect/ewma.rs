//! EWMA deviation: an exponentially weighted moving mean and variance; a point scores by how many weighted standard
//! deviations it lies from the weighted mean. Needs no window, adapts smoothly, and reacts to a level shift at its
//! first point.

use serde::{Deserialize, Serialize};

use super::Detector;
use super::explain::{Last, describe};
use super::stats::{deviation, deviation_score, floored_spread};
use crate::clock::Timestamp;

/// Settings of an [`Ewma`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EwmaConfig {
    /// Weight of the newest point, in (0, 1]. Smaller adapts slower.
    pub alpha: f64,
    /// Points needed before judging (score 0 until then).
    pub min_samples: usize,
    /// Deviations at or below this score 0.
    pub threshold: f64,
    /// How fast the score rises past the threshold.
    pub scale: f64,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        Self {
            alpha: 0.02,
            min_samples: 30,
            threshold: 3.0,
            scale: 3.0,
        }
    }
}

/// Exponentially weighted mean/variance detector.
#[derive(Debug, Clone)]
pub struct Ewma {
    config: EwmaConfig,
    alpha: f64,
    mean: f64,
    var: f64,
    seen: usize,
    last: Last,
}

impl Ewma {
    /// A detector with these settings (an alpha outside (0, 1] is clamped into it).
    pub fn new(config: EwmaConfig) -> Self {
        let alpha = if config.alpha.is_finite() {
            config.alpha.clamp(1e-6, 1.0)
        } else {
            0.02
        };
        Self {
            config,
            alpha,
            mean: 0.0,
            var: 0.0,
            seen: 0,
            last: Last::Nothing,
        }
    }

    fn learn(&mut self, value: f64) {
        if self.seen == 0 {
            self.mean = value;
            self.var = 0.0;
        } else {
            // Until 1/alpha points are seen, weigh them equally so the start is not dominated by the first one.
            let a = self.alpha.max(1.0 / (self.seen + 1) as f64);
            let diff = value - self.mean;
            // (1 - a)·m + a·x cannot overflow for finite m and x; m + a·(x - m) can.
            self.mean = (1.0 - a) * self.mean + a * value;
            let v = (1.0 - a) * (self.var + a * diff * diff);
            self.var = if v.is_finite() { v } else { f64::MAX };
        }
        self.seen = self.seen.saturating_add(1);
    }
}

impl Default for Ewma {
    fn default() -> Self {
        Self::new(EwmaConfig::default())
    }
}

impl Detector for Ewma {
    fn name(&self) -> &str {
        "ewma"
    }

    fn update(&mut self, _at: Timestamp, value: f64) -> f64 {
        if !value.is_finite() {
            self.last = Last::NonFinite;
            return 0.0;
        }
        let needed = self.config.min_samples.max(2);
        let score = if self.seen < needed {
            self.last = Last::Warming {
                seen: self.seen,
                needed,
            };
            0.0
        } else {
            let spread = floored_spread(self.var.sqrt(), self.mean);
            let d = deviation(value, self.mean, spread);
            let score = deviation_score(d, self.config.threshold, self.config.scale);
            self.last = Last::Scored {
                value,
                centre: self.mean,
                spread,
                deviation: d,
                score,
            };
            score
        };
        self.learn(value);
        score
    }

    fn judged(&self) -> bool {
        matches!(self.last, Last::Scored { .. })
    }

    fn explain(&self) -> String {
        describe("ewma", "weighted mean", "weighted std", &self.last)
    }
}
