//! Robust z-score: distance from the rolling median in units of the median absolute deviation (MAD, scaled by
//! 1.4826 so it estimates a standard deviation on Gaussian data; on quantised data where the MAD is 0, the scaled mean
//! absolute deviation). Outliers in the baseline barely move it, so it
//! keeps scoring a burst of spikes where the plain z-score would be inflated by the first ones.

use serde::{Deserialize, Serialize};

use super::Detector;
use super::explain::{Last, describe};
use super::stats::{RollingWindow, deviation, deviation_score, floored_spread};
use crate::clock::Timestamp;

pub use super::stats::MAD_TO_STD;

/// Settings of a [`Mad`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MadConfig {
    /// Points in the rolling baseline.
    pub window: usize,
    /// Points needed before judging (score 0 until then).
    pub min_samples: usize,
    /// Robust deviations at or below this score 0.
    pub threshold: f64,
    /// How fast the score rises past the threshold.
    pub scale: f64,
}

impl Default for MadConfig {
    fn default() -> Self {
        Self {
            window: 600,
            min_samples: 30,
            threshold: 3.5,
            scale: 4.0,
        }
    }
}

/// Rolling median/MAD detector.
#[derive(Debug, Clone)]
pub struct Mad {
    config: MadConfig,
    window: RollingWindow,
    scratch: Vec<f64>,
    last: Last,
}

impl Mad {
    /// A detector with these settings.
    pub fn new(config: MadConfig) -> Self {
        let window = RollingWindow::new(config.window);
        Self {
            scratch: Vec::with_capacity(config.window),
            config,
            window,
            last: Last::Nothing,
        }
    }
}

impl Default for Mad {
    fn default() -> Self {
        Self::new(MadConfig::default())
    }
}

impl Detector for Mad {
    fn name(&self) -> &str {
        "mad"
    }

    fn update(&mut self, _at: Timestamp, value: f64) -> f64 {
        if !value.is_finite() {
            self.last = Last::NonFinite;
            return 0.0;
        }
        let needed = self.config.min_samples.max(2);
        let score = if self.window.len() < needed {
            self.last = Last::Warming {
                seen: self.window.len(),
                needed,
            };
            0.0
        } else {
            let median = self.window.median();
            let mad = self.window.robust_std(median, &mut self.scratch);
            let spread = floored_spread(mad, median);
            let d = deviation(value, median, spread);
            let score = deviation_score(d, self.config.threshold, self.config.scale);
            self.last = Last::Scored {
                value,
                centre: median,
                spread,
                deviation: d,
                score,
            };
            score
        };
        self.window.push(value);
        score
    }

    fn judged(&self) -> bool {
        matches!(self.last, Last::Scored { .. })
    }

    fn explain(&self) -> String {
        describe("mad", "median", "scaled MAD", &self.last)
    }
}
