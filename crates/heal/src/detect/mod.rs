//! Streaming anomaly detectors over metric series. Each sees every point once, in order, with no look-ahead, and
//! returns a score in [0, 1]. Written by hand: the engine needs control over warm-up, adaptation and flat data that
//! no maintained crate offers for one stream over time.

/// A streaming anomaly detector over one metric series.
pub trait Detector: Send {
    /// A stable name, e.g. `zscore`, `mad`, `composite`.
    fn name(&self) -> &str;
    /// Feeds one point and returns its anomaly score in [0, 1]. Non-finite values score 0 and do not move the
    /// baseline. Before the minimum number of samples the score is 0.
    fn update(&mut self, at: crate::clock::Timestamp, value: f64) -> f64;
    /// Whether the last point was judged against a baseline: false while warming up or for a non-finite value.
    /// A combination of detectors counts only the votes of those that judged.
    fn judged(&self) -> bool {
        true
    }
    /// Why the last point scored what it did, for a human.
    fn explain(&self) -> String;
}

mod explain;

pub(crate) mod changepoint;
pub mod composite;
pub(crate) mod discord;
pub mod ewma;
pub mod iqr;
pub mod likelihood;
pub mod mad;
pub mod quiet;
pub mod range;
pub mod roc;
pub mod seasonal;
pub mod stats;
pub mod surprise;
pub mod variance;
pub mod zscore;

use serde::{Deserialize, Serialize};

pub use composite::{Composite, CompositeConfig, CompositeKind, Weights};
pub use ewma::{Ewma, EwmaConfig};
pub use iqr::{Iqr, IqrConfig};
pub use likelihood::{Likelihood, LikelihoodConfig};
pub use mad::{Mad, MadConfig};
pub use range::{RangeConfig, RangeNovelty};
pub use roc::{RateOfChange, RocConfig};
pub use seasonal::{Season, Seasonal, SeasonalConfig};
pub use surprise::{Surprise, SurpriseConfig};
pub use variance::{VarianceConfig, VarianceShift};
pub use zscore::{ZScore, ZScoreConfig};

/// The names [`by_name`] knows.
pub const DETECTOR_NAMES: [&str; 11] = [
    "zscore",
    "mad",
    "ewma",
    "iqr",
    "roc",
    "seasonal",
    "variance",
    "range",
    "likelihood",
    "surprise",
    "composite",
];

/// A detector with its default settings, by name (see [`DETECTOR_NAMES`]); `None` for an unknown name.
pub fn by_name(name: &str) -> Option<Box<dyn Detector>> {
    Some(match name {
        "zscore" => Box::new(ZScore::default()),
        "mad" => Box::new(Mad::default()),
        "ewma" => Box::new(Ewma::default()),
        "iqr" => Box::new(Iqr::default()),
        "roc" => Box::new(RateOfChange::default()),
        "seasonal" => Box::new(Seasonal::default()),
        "variance" => Box::new(VarianceShift::default()),
        "range" => Box::new(RangeNovelty::default()),
        "likelihood" => Box::new(Likelihood::default()),
        "surprise" => Box::new(Surprise::default()),
        "composite" => Box::new(Composite::new(CompositeConfig::default())),
        _ => return None,
    })
}

/// How alarming an anomaly score is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyLevel {
    /// Below every cut-off.
    None,
    /// Worth a note.
    Info,
    /// Unusual.
    Low,
    /// Clearly unusual.
    Medium,
    /// Very unusual.
    High,
    /// Extreme.
    Critical,
}

impl AnomalyLevel {
    /// The incident severity an anomaly of this level suggests: `None` and `Info` raise no incident; an anomaly is a
    /// symptom, not damage, so even a critical one is SEV2 (`Low` to `High` are SEV3).
    pub fn severity(self) -> Option<crate::issue::Severity> {
        use crate::issue::Severity;
        match self {
            AnomalyLevel::None | AnomalyLevel::Info => None,
            AnomalyLevel::Low | AnomalyLevel::Medium | AnomalyLevel::High => Some(Severity::Sev3),
            AnomalyLevel::Critical => Some(Severity::Sev2),
        }
    }
}

/// Score cut-offs of the levels: a score at or above a cut-off has at least that level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeverityCutoffs {
    /// Lowest score of `Info`.
    pub info: f64,
    /// Lowest score of `Low`.
    pub low: f64,
    /// Lowest score of `Medium`.
    pub medium: f64,
    /// Lowest score of `High`.
    pub high: f64,
    /// Lowest score of `Critical`.
    pub critical: f64,
}

impl Default for SeverityCutoffs {
    fn default() -> Self {
        Self {
            info: 0.1,
            low: 0.3,
            medium: 0.5,
            high: 0.75,
            critical: 0.9,
        }
    }
}

impl SeverityCutoffs {
    /// The level of a score (NaN is `None`).
    pub fn level(&self, score: f64) -> AnomalyLevel {
        if score.is_nan() {
            AnomalyLevel::None
        } else if score >= self.critical {
            AnomalyLevel::Critical
        } else if score >= self.high {
            AnomalyLevel::High
        } else if score >= self.medium {
            AnomalyLevel::Medium
        } else if score >= self.low {
            AnomalyLevel::Low
        } else if score >= self.info {
            AnomalyLevel::Info
        } else {
            AnomalyLevel::None
        }
    }
}
