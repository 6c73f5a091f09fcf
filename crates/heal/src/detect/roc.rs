//! Rate of change: the step from the previous finite point, judged robustly (median/MAD) against the recent steps.
//! Catches sudden jumps even inside the normal range of values (a drop from a peak to a trough in one step), and a
//! level shift at its first point.

use serde::{Deserialize, Serialize};

use super::Detector;
use super::explain::{Last, describe};
use super::stats::{RollingWindow, deviation, deviation_score, floored_spread};
use crate::clock::Timestamp;

/// Settings of a [`RateOfChange`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RocConfig {
    /// Steps in the rolling baseline.
    pub window: usize,
    /// Steps needed before judging (score 0 until then).
    pub min_samples: usize,
    /// Robust deviations of a step at or below this score 0.
    pub threshold: f64,
    /// How fast the score rises past the threshold.
    pub scale: f64,
}

impl Default for RocConfig {
    fn default() -> Self {
        Self {
            window: 600,
            min_samples: 30,
            threshold: 4.0,
            scale: 4.0,
        }
    }
}

/// Step-size detector.
#[derive(Debug, Clone)]
pub struct RateOfChange {
    config: RocConfig,
    steps: RollingWindow,
    prev: Option<f64>,
    scratch: Vec<f64>,
    last: Last,
}

impl RateOfChange {
    /// A detector with these settings.
    pub fn new(config: RocConfig) -> Self {
        let steps = RollingWindow::new(config.window);
        Self {
            scratch: Vec::with_capacity(config.window),
            config,
            steps,
            prev: None,
            last: Last::Nothing,
        }
    }
}

impl Default for RateOfChange {
    fn default() -> Self {
        Self::new(RocConfig::default())
    }
}

impl Detector for RateOfChange {
    fn name(&self) -> &str {
        "roc"
    }

    fn update(&mut self, _at: Timestamp, value: f64) -> f64 {
        if !value.is_finite() {
            self.last = Last::NonFinite;
            return 0.0;
        }
        let Some(prev) = self.prev.replace(value) else {
            self.last = Last::Warming {
                seen: 0,
                needed: self.config.min_samples.max(2),
            };
            return 0.0;
        };
        // May be infinite for steps across the whole f64 range: that scores 1 and is not learned.
        let step = value - prev;
        let needed = self.config.min_samples.max(2);
        let score = if self.steps.len() < needed {
            self.last = Last::Warming {
                seen: self.steps.len(),
                needed,
            };
            0.0
        } else {
            let median = self.steps.median();
            let mad = self.steps.robust_std(median, &mut self.scratch);
            let spread = floored_spread(mad, prev);
            let d = deviation(step, median, spread);
            let score = deviation_score(d, self.config.threshold, self.config.scale);
            self.last = Last::Scored {
                value: step,
                centre: median,
                spread,
                deviation: d,
                score,
            };
            score
        };
        self.steps.push(step);
        score
    }

    fn judged(&self) -> bool {
        matches!(self.last, Last::Scored { .. })
    }

    fn explain(&self) -> String {
        describe(
            "roc (step from previous point)",
            "median step",
            "scaled MAD",
            &self.last,
        )
    }
}
