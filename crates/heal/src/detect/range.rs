//! Range novelty: a value outside everything the series has shown so far. The detector keeps the lowest and highest
//! value seen; once it has seen `min_samples` points, a value further than `tolerance` × (highest − lowest) beyond
//! either end scores by how far beyond it lies. A level never reached before is news whatever the local noise says:
//! a latency no request has ever had, a queue deeper than it has ever been, a metric that never moved moving.
//!
//! It never forgets: after an excursion the range includes it, so the same level again is not new. On a flat series
//! the range is floored (as every detector's spread is), so the first move of a metric that never moved scores 1.

use serde::{Deserialize, Serialize};

use super::Detector;
use super::explain::{Last, describe};
use super::stats::{clean_score, floored_spread};
use crate::clock::Timestamp;

/// Settings of a [`RangeNovelty`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RangeConfig {
    /// Points seen before judging (score 0 until then).
    pub min_samples: usize,
    /// How far beyond the range seen, as a fraction of its width, a value may lie and still score 0.
    pub tolerance: f64,
    /// How fast the score rises past the tolerance: `e / (e + scale)` where `e` is the excess beyond the tolerance in
    /// range widths (0.5 at `scale`).
    pub scale: f64,
}

impl Default for RangeConfig {
    fn default() -> Self {
        Self {
            min_samples: 150,
            tolerance: 0.02,
            scale: 0.01,
        }
    }
}

/// The range-novelty detector.
#[derive(Debug, Clone)]
pub struct RangeNovelty {
    config: RangeConfig,
    /// Lowest and highest finite value seen.
    bounds: Option<(f64, f64)>,
    seen: usize,
    last: Last,
}

impl RangeNovelty {
    /// A detector with these settings (a tolerance or scale that is negative or not finite becomes the default).
    pub fn new(mut config: RangeConfig) -> Self {
        let defaults = RangeConfig::default();
        if !(config.tolerance.is_finite() && config.tolerance >= 0.0) {
            config.tolerance = defaults.tolerance;
        }
        if !(config.scale.is_finite() && config.scale > 0.0) {
            config.scale = defaults.scale;
        }
        Self {
            config,
            bounds: None,
            seen: 0,
            last: Last::Nothing,
        }
    }
}

impl Default for RangeNovelty {
    fn default() -> Self {
        Self::new(RangeConfig::default())
    }
}

impl Detector for RangeNovelty {
    fn name(&self) -> &str {
        "range"
    }

    fn update(&mut self, _at: Timestamp, value: f64) -> f64 {
        if !value.is_finite() {
            self.last = Last::NonFinite;
            return 0.0;
        }
        let needed = self.config.min_samples.max(2);
        let score = match self.bounds {
            Some((lo, hi)) if self.seen >= needed => {
                // The width halved and doubled again cannot overflow for finite ends; `hi - lo` can.
                let width = floored_spread(2.0 * (hi / 2.0 - lo / 2.0), lo.abs().max(hi.abs()));
                let beyond = (value - hi).max(lo - value).max(0.0);
                let excess = beyond / width;
                let e = excess - self.config.tolerance;
                let score = if e > 0.0 {
                    clean_score(if e.is_finite() {
                        e / (e + self.config.scale)
                    } else {
                        1.0
                    })
                } else {
                    0.0
                };
                self.last = Last::Scored {
                    value,
                    centre: lo / 2.0 + hi / 2.0,
                    spread: width,
                    deviation: excess,
                    score,
                };
                score
            }
            _ => {
                self.last = Last::Warming {
                    seen: self.seen,
                    needed,
                };
                0.0
            }
        };
        self.bounds = Some(match self.bounds {
            None => (value, value),
            Some((lo, hi)) => (lo.min(value), hi.max(value)),
        });
        self.seen = self.seen.saturating_add(1);
        score
    }

    fn judged(&self) -> bool {
        matches!(self.last, Last::Scored { .. })
    }

    fn explain(&self) -> String {
        describe(
            "range",
            "middle of the range seen",
            "range width",
            &self.last,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(values: &[f64]) -> (RangeNovelty, Vec<f64>) {
        let mut d = RangeNovelty::new(RangeConfig {
            min_samples: 5,
            ..RangeConfig::default()
        });
        let scores = values
            .iter()
            .enumerate()
            .map(|(i, &v)| d.update(i as u64, v))
            .collect();
        (d, scores)
    }

    #[test]
    fn values_inside_the_range_or_within_tolerance_score_zero() {
        let (_, s) = fed(&[0.0, 10.0, 5.0, 2.0, 8.0, 10.1, -0.15, 7.0]);
        assert!(s.iter().all(|&x| x == 0.0), "{s:?}");
    }

    #[test]
    fn a_new_extreme_scores_by_how_far_beyond_and_is_then_part_of_the_range() {
        let (d, s) = fed(&[0.0, 10.0, 5.0, 2.0, 8.0, 10.3, 10.3, 12.0, 30.0]);
        // 10.3 is 0.03 widths beyond: 0.01 past the tolerance, score 0.5.
        assert!((s[5] - 0.5).abs() < 1e-9, "{s:?}");
        assert_eq!(s[6], 0.0, "the same level again is not new");
        assert!(s[7] > 0.9 && s[8] > s[7], "{s:?}");
        assert!(d.explain().contains("range width"), "{}", d.explain());
    }

    #[test]
    fn below_the_range_counts_too_and_warm_up_abstains() {
        let (mut d, s) = fed(&[5.0, 6.0, 5.5, 6.0]);
        assert!(s.iter().all(|&x| x == 0.0));
        d.update(4, 5.2);
        assert!(!d.judged(), "the fifth point is still part of the warm-up");
        assert!(d.update(5, -100.0) > 0.99);
        assert!(d.judged());
    }

    #[test]
    fn the_first_move_of_a_flat_metric_scores_one_and_huge_values_never_nan() {
        let (mut d, s) = fed(&[0.0; 10]);
        assert!(s.iter().all(|&x| x == 0.0));
        assert!(d.update(10, 1.0) > 0.999);
        let mut d = RangeNovelty::default();
        for i in 0..200 {
            let v = if i % 2 == 0 { f64::MAX } else { -f64::MAX };
            let s = d.update(i, v);
            assert!((0.0..=1.0).contains(&s));
        }
        assert_eq!(d.update(200, f64::NAN), 0.0);
        assert_eq!(d.update(201, f64::INFINITY), 0.0);
        assert_eq!(d.update(202, 0.0), 0.0);
    }
}
