//! Trend rules: a slow leak is not an anomaly at any single point, only a sustained slope. A [`TrendRule`] names a
//! metric and the most it may grow per hour relative to its baseline (e.g. resident memory at most 5%/hour); a
//! [`TrendTracker`] keeps a decimated history of that metric (at most [`TREND_POINTS_MAX`] points, so memory is
//! bounded however long it runs) and reports a breach when, over the last `sustained_us`, both the whole span and
//! each of its halves grew faster than allowed (a single step up, such as a cache filling once, is not sustained).
//!
//! Growth is the least-squares slope over the span, per hour, divided by the baseline (the mean of the span's first
//! tenth of points, at least one). A baseline at or below zero, a span shorter than `sustained_us`, or fewer than
//! [`TREND_POINTS_MIN`] points judge nothing.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::clock::{Timestamp, US_PER_S};

/// Points kept per trend rule.
pub const TREND_POINTS_MAX: usize = 240;
/// Points a span needs before it is judged.
pub const TREND_POINTS_MIN: usize = 8;

const HOUR_US: f64 = 3_600.0 * US_PER_S as f64;

/// The most a metric may grow, relative to its baseline, sustained over a span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrendRule {
    /// The metric (as its samples name it).
    pub metric: String,
    /// The largest relative growth per hour that is not a leak, e.g. 0.05 for 5%/hour. (0, 100].
    pub growth_per_hour_max: f64,
    /// How long the growth must last, µs. [1 min, 7 days].
    pub sustained_us: u64,
}

impl TrendRule {
    /// Resident memory growing more than 5% an hour for an hour.
    pub fn defaults() -> Vec<TrendRule> {
        vec![TrendRule {
            metric: "process_resident_bytes".into(),
            growth_per_hour_max: 0.05,
            sustained_us: 3_600 * US_PER_S,
        }]
    }

    /// Checks the bounds; the error names the key (`engine.<key>.<field>`), the value and the range.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if self.metric.is_empty() {
            return Err(format!("engine.{key}.metric must not be empty"));
        }
        crate::config::range_f(
            &format!("{key}.growth_per_hour_max"),
            self.growth_per_hour_max,
            0.0,
            100.0,
            true,
        )?;
        crate::config::range_u(
            &format!("{key}.sustained_us"),
            self.sustained_us,
            60 * US_PER_S,
            7 * 86_400 * US_PER_S,
        )
    }
}

/// A sustained growth beyond a rule's bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendBreach {
    /// Relative growth per hour over the whole span.
    pub growth_per_hour: f64,
    /// The baseline it is relative to.
    pub baseline: f64,
    /// The latest value.
    pub value: f64,
    /// The span judged, µs.
    pub span_us: u64,
}

/// The decimated history of one metric under one rule.
#[derive(Debug, Clone)]
pub struct TrendTracker {
    rule: TrendRule,
    points: VecDeque<(Timestamp, f64)>,
}

impl TrendTracker {
    /// An empty tracker for `rule`.
    pub fn new(rule: TrendRule) -> Self {
        Self {
            rule,
            points: VecDeque::new(),
        }
    }

    /// The rule it applies.
    pub fn rule(&self) -> &TrendRule {
        &self.rule
    }

    fn step_us(&self) -> u64 {
        // Two spans' worth of history in TREND_POINTS_MAX points.
        (2 * self.rule.sustained_us / TREND_POINTS_MAX as u64).max(1)
    }

    /// Feeds one reading; returns a breach when the growth over the last `sustained_us` is sustained beyond the
    /// rule. Non-finite values and readings older than the newest point are ignored.
    pub fn update(&mut self, at: Timestamp, value: f64) -> Option<TrendBreach> {
        if !value.is_finite() {
            return None;
        }
        match self.points.back() {
            Some(&(last, _)) if at < last => return None,
            Some(&(last, _)) if at - last < self.step_us() => {
                // Within one step: the newest reading stands for the step.
                if let Some(p) = self.points.back_mut() {
                    p.1 = value;
                }
            }
            _ => self.points.push_back((at, value)),
        }
        while self.points.len() > TREND_POINTS_MAX {
            self.points.pop_front();
        }
        self.judge(at)
    }

    fn judge(&self, now: Timestamp) -> Option<TrendBreach> {
        let from = now.checked_sub(self.rule.sustained_us)?;
        // The span starts at the last point at or before `from`, so it covers the whole `sustained_us`.
        let start = self.points.iter().rposition(|&(t, _)| t <= from)?;
        let span: Vec<(Timestamp, f64)> = self.points.iter().skip(start).copied().collect();
        if span.len() < TREND_POINTS_MIN {
            return None;
        }
        let head = (span.len() / 10).max(1);
        let baseline = span[..head].iter().map(|p| p.1).sum::<f64>() / head as f64;
        if baseline <= 0.0 || !baseline.is_finite() {
            return None;
        }
        let growth = |pts: &[(Timestamp, f64)]| slope_per_us(pts) * HOUR_US / baseline;
        let whole = growth(&span);
        let mid = span.len() / 2;
        let max = self.rule.growth_per_hour_max;
        let sustained =
            whole > max && growth(&span[..=mid]) > max / 2.0 && growth(&span[mid..]) > max / 2.0;
        sustained.then(|| TrendBreach {
            growth_per_hour: whole,
            baseline,
            value: span[span.len() - 1].1,
            span_us: now - span[0].0,
        })
    }
}

/// The least-squares slope of `pts`, value per µs (0 for fewer than two distinct times).
fn slope_per_us(pts: &[(Timestamp, f64)]) -> f64 {
    if pts.len() < 2 {
        return 0.0;
    }
    let t0 = pts[0].0;
    let n = pts.len() as f64;
    let mean_t = pts.iter().map(|p| (p.0 - t0) as f64).sum::<f64>() / n;
    let mean_v = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(t, v) in pts {
        let dt = (t - t0) as f64 - mean_t;
        num += dt * (v - mean_v);
        den += dt * dt;
    }
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60 * US_PER_S;

    fn rule() -> TrendRule {
        TrendRule {
            metric: "m".into(),
            growth_per_hour_max: 0.05,
            sustained_us: 60 * MIN,
        }
    }

    /// Feeds `minutes` of one reading every 10 s from `f(minute)`; returns the minute of the first breach.
    fn first_breach(f: impl Fn(f64) -> f64, minutes: u64) -> Option<f64> {
        let mut t = TrendTracker::new(rule());
        let start = 1_000 * US_PER_S;
        for i in 0..minutes * 6 {
            let at = start + i * 10 * US_PER_S;
            let minute = i as f64 / 6.0;
            if t.update(at, f(minute)).is_some() {
                return Some(minute);
            }
        }
        None
    }

    #[test]
    fn a_sustained_slope_is_a_breach_only_after_the_span() {
        // 8%/hour linear growth: judged once an hour is covered, not before.
        let minute = first_breach(|m| 1e9 * (1.0 + 0.08 * m / 60.0), 180).expect("a breach");
        assert!((60.0..62.0).contains(&minute), "{minute}");
        // 3%/hour is within the rule, however long.
        assert_eq!(first_breach(|m| 1e9 * (1.0 + 0.03 * m / 60.0), 300), None);
    }

    #[test]
    fn noise_a_flat_line_and_one_step_are_not_leaks() {
        assert_eq!(
            first_breach(|m| 1e9 + 2e7 * (m * 7.3).sin(), 300),
            None,
            "±2% noise"
        );
        // One step of +20% (a cache filling once) at minute 90: the halves are not both growing.
        assert_eq!(
            first_breach(|m| if m < 90.0 { 1e9 } else { 1.2e9 }, 300),
            None
        );
        // A baseline of zero judges nothing.
        assert_eq!(first_breach(|_| 0.0, 300), None);
    }

    #[test]
    fn memory_is_bounded_however_long_it_runs() {
        let mut t = TrendTracker::new(rule());
        for i in 0..100_000u64 {
            t.update(i * US_PER_S, 1.0);
        }
        assert!(t.points.len() <= TREND_POINTS_MAX);
        assert!(rule().validate("trends[0]").is_ok());
        let bad = TrendRule {
            growth_per_hour_max: 0.0,
            ..rule()
        };
        assert!(
            bad.validate("trends[0]")
                .unwrap_err()
                .starts_with("engine.trends[0].growth_per_hour_max = 0 is out of range")
        );
    }
}
