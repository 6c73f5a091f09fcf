//! Tukey's IQR fences on a rolling window: a point beyond `q1 - k·IQR` or `q3 + k·IQR` scores by how far past the
//! fence it lies, in units of IQR. Distribution-free, so it suits skewed metrics (latencies, queue depths).

use serde::{Deserialize, Serialize};

use super::Detector;
use super::explain::{Last, describe};
use super::stats::{MEAN_ABS_DEV_TO_STD, RollingWindow, deviation_score, floored_spread};

/// The IQR of a Gaussian in standard deviations.
const IQR_TO_STD: f64 = 1.349;
use crate::clock::Timestamp;

/// Settings of an [`Iqr`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IqrConfig {
    /// Points in the rolling baseline.
    pub window: usize,
    /// Points needed before judging (score 0 until then).
    pub min_samples: usize,
    /// Fence distance in IQRs (Tukey's 1.5 for "outlier", 3 for "far out").
    pub fence: f64,
    /// How fast the score rises past the fence, in IQRs.
    pub scale: f64,
}

impl Default for IqrConfig {
    fn default() -> Self {
        Self {
            window: 600,
            min_samples: 30,
            fence: 1.5,
            scale: 2.0,
        }
    }
}

/// Rolling IQR-fence detector.
#[derive(Debug, Clone)]
pub struct Iqr {
    config: IqrConfig,
    window: RollingWindow,
    last: Last,
}

impl Iqr {
    /// A detector with these settings.
    pub fn new(config: IqrConfig) -> Self {
        let window = RollingWindow::new(config.window);
        Self {
            config,
            window,
            last: Last::Nothing,
        }
    }
}

impl Default for Iqr {
    fn default() -> Self {
        Self::new(IqrConfig::default())
    }
}

impl Detector for Iqr {
    fn name(&self) -> &str {
        "iqr"
    }

    fn update(&mut self, _at: Timestamp, value: f64) -> f64 {
        if !value.is_finite() {
            self.last = Last::NonFinite;
            return 0.0;
        }
        let needed = self.config.min_samples.max(4);
        let score = if self.window.len() < needed {
            self.last = Last::Warming {
                seen: self.window.len(),
                needed,
            };
            0.0
        } else {
            let q1 = self.window.quantile(0.25);
            let q3 = self.window.quantile(0.75);
            let centre = q1 / 2.0 + q3 / 2.0;
            // On quantised data the quartiles can coincide; fall back to the IQR a Gaussian of the same mean absolute
            // deviation would have, so rare values off the centre are not infinitely surprising.
            let iqr = if q3 > q1 {
                q3 - q1
            } else {
                self.window.mean_abs_dev(centre) * MEAN_ABS_DEV_TO_STD * IQR_TO_STD
            };
            let iqr = floored_spread(iqr, centre);
            // Distance from the nearer quartile in IQRs; the fence is the threshold.
            let beyond = if value > q3 {
                (value - q3) / iqr
            } else if value < q1 {
                (q1 - value) / iqr
            } else {
                0.0
            };
            let beyond = if beyond.is_nan() { 0.0 } else { beyond };
            let score = deviation_score(beyond, self.config.fence, self.config.scale);
            self.last = Last::Scored {
                value,
                centre,
                spread: iqr,
                deviation: beyond,
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
        describe("iqr", "mid-quartile", "IQR", &self.last)
    }
}
