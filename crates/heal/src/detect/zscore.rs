//! Z-score on a rolling window: how many standard deviations a point lies from the mean of the last `window`
//! points. Catches spikes and level shifts on roughly Gaussian noise; the baseline adapts as the window rolls.

use serde::{Deserialize, Serialize};

use super::Detector;
use super::explain::{Last, describe};
use super::stats::{RollingWindow, deviation, deviation_score, floored_spread};
use crate::clock::Timestamp;

/// Settings of a [`ZScore`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZScoreConfig {
    /// Points in the rolling baseline.
    pub window: usize,
    /// Points needed before judging (score 0 until then).
    pub min_samples: usize,
    /// Deviations (in standard deviations) at or below this score 0.
    pub threshold: f64,
    /// Deviations past the threshold at which the score is 0.5 (see [`deviation_score`](super::stats::deviation_score)).
    pub scale: f64,
}

impl Default for ZScoreConfig {
    fn default() -> Self {
        Self {
            window: 600,
            min_samples: 30,
            threshold: 3.0,
            scale: 3.0,
        }
    }
}

/// Rolling-window z-score detector.
#[derive(Debug, Clone)]
pub struct ZScore {
    config: ZScoreConfig,
    window: RollingWindow,
    last: Last,
}

impl ZScore {
    /// A detector with these settings.
    pub fn new(config: ZScoreConfig) -> Self {
        let window = RollingWindow::new(config.window);
        Self {
            config,
            window,
            last: Last::Nothing,
        }
    }
}

impl Default for ZScore {
    fn default() -> Self {
        Self::new(ZScoreConfig::default())
    }
}

impl Detector for ZScore {
    fn name(&self) -> &str {
        "zscore"
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
            let mean = self.window.mean();
            let spread = floored_spread(self.window.std(mean), mean);
            let d = deviation(value, mean, spread);
            let score = deviation_score(d, self.config.threshold, self.config.scale);
            self.last = Last::Scored {
                value,
                centre: mean,
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
        describe("zscore", "mean", "std", &self.last)
    }
}
