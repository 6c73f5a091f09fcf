//! Seasonal profile: one baseline (weighted mean and variance) per hour of the day, or per hour of the week, taken
//! from the point's timestamp (µs since the UNIX epoch, UTC). A point scores by its distance from what is usual for
//! that hour, so a daily peak is not an anomaly but the same value at 3 a.m. is.

use serde::{Deserialize, Serialize};

use super::Detector;
use super::explain::{Last, describe};
use super::stats::{deviation, deviation_score, floored_spread};
use crate::clock::{Timestamp, US_PER_S};

const US_PER_HOUR: u64 = 3_600 * US_PER_S;
/// The UNIX epoch (1970-01-01) was a Thursday: day 0 is day-of-week 4 counting from Sunday = 0.
const EPOCH_DAY_OF_WEEK: u64 = 4;

/// Which season the profile follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    /// 24 buckets: hour of the day (UTC).
    HourOfDay,
    /// 168 buckets: hour of the week (UTC), Sunday 00:00 first.
    HourOfWeek,
}

impl Season {
    /// The number of buckets.
    pub fn buckets(self) -> usize {
        match self {
            Season::HourOfDay => 24,
            Season::HourOfWeek => 168,
        }
    }

    /// The bucket of a timestamp.
    pub fn bucket(self, at: Timestamp) -> usize {
        let hours = at / US_PER_HOUR;
        match self {
            Season::HourOfDay => (hours % 24) as usize,
            Season::HourOfWeek => {
                let day = hours / 24;
                (((day + EPOCH_DAY_OF_WEEK) % 7) * 24 + hours % 24) as usize
            }
        }
    }
}

/// Settings of a [`Seasonal`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeasonalConfig {
    /// Hour of day or hour of week.
    pub season: Season,
    /// Weight of the newest point in its bucket's baseline, in (0, 1].
    pub alpha: f64,
    /// Points a bucket needs before its points are judged (score 0 until then).
    pub min_samples: usize,
    /// Deviations at or below this score 0.
    pub threshold: f64,
    /// How fast the score rises past the threshold.
    pub scale: f64,
}

impl Default for SeasonalConfig {
    fn default() -> Self {
        Self {
            season: Season::HourOfDay,
            alpha: 0.05,
            min_samples: 24,
            threshold: 4.0,
            scale: 4.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    seen: usize,
    mean: f64,
    var: f64,
}

/// Hour-of-day / hour-of-week profile detector.
#[derive(Debug, Clone)]
pub struct Seasonal {
    config: SeasonalConfig,
    alpha: f64,
    buckets: Vec<Bucket>,
    last: Last,
}

impl Seasonal {
    /// A detector with these settings (an alpha outside (0, 1] is clamped into it).
    pub fn new(config: SeasonalConfig) -> Self {
        let alpha = if config.alpha.is_finite() {
            config.alpha.clamp(1e-6, 1.0)
        } else {
            0.05
        };
        Self {
            buckets: vec![Bucket::default(); config.season.buckets()],
            config,
            alpha,
            last: Last::Nothing,
        }
    }
}

impl Default for Seasonal {
    fn default() -> Self {
        Self::new(SeasonalConfig::default())
    }
}

impl Detector for Seasonal {
    fn name(&self) -> &str {
        "seasonal"
    }

    fn update(&mut self, at: Timestamp, value: f64) -> f64 {
        if !value.is_finite() {
            self.last = Last::NonFinite;
            return 0.0;
        }
        let needed = self.config.min_samples.max(2);
        let alpha = self.alpha;
        let b = &mut self.buckets[self.config.season.bucket(at)];
        let score = if b.seen < needed {
            self.last = Last::Warming {
                seen: b.seen,
                needed,
            };
            0.0
        } else {
            let spread = floored_spread(b.var.sqrt(), b.mean);
            let d = deviation(value, b.mean, spread);
            let score = deviation_score(d, self.config.threshold, self.config.scale);
            self.last = Last::Scored {
                value,
                centre: b.mean,
                spread,
                deviation: d,
                score,
            };
            score
        };
        if b.seen == 0 {
            b.mean = value;
            b.var = 0.0;
        } else {
            let a = alpha.max(1.0 / (b.seen + 1) as f64);
            let diff = value - b.mean;
            b.mean = (1.0 - a) * b.mean + a * value;
            let v = (1.0 - a) * (b.var + a * diff * diff);
            b.var = if v.is_finite() { v } else { f64::MAX };
        }
        b.seen = b.seen.saturating_add(1);
        score
    }

    fn judged(&self) -> bool {
        matches!(self.last, Last::Scored { .. })
    }

    fn explain(&self) -> String {
        describe(
            "seasonal",
            "usual value for this hour",
            "usual std",
            &self.last,
        )
    }
}
