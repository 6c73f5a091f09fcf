//! The surprise detector (`[engine.composite] kind = "surprise"`): the [`Likelihood`] detector's calibrated anomaly
//! likelihood, with three changes that make its score rank points the same way whatever threshold reads it, and
//! fewer settings (the others follow from these by principle):
//!
//! 1. **A raw score that does not saturate.** A deviation of `d` spreads gives `l = ln(1 + (d / surprise)^3)` and the
//!    raw score `l / (l + RAW_LOG)` ([`RAW_LOG`] = 3): 0.19 at `surprise` spreads, 0.62 at five times that, still
//!    rising beyond, so a larger spike is more evidence (the likelihood detector's `q / (1 + q)` is 0.99 at five
//!    times `surprise`, and every larger spike counts the same).
//! 2. **New extremes ranked, not alarmed.** A value more than `extreme_tolerance` × (range seen so far) beyond the
//!    lowest or highest value seen, and at least half of `surprise` spreads from the level, scores at least
//!    [`CALM`] (0.5), rising towards [`ECHO_CAP`] (0.7) the further beyond the range it lies: above every ordinary
//!    point, below the alarm. It alarms (reaches [`ALARM`]) only on [`EXTREME_EVIDENCE`] of the likelihood's
//!    log-evidence of an alarm (any other point needs all of it), except a leap more than [`LEAP`] range widths beyond
//!    the range (a level never approached, reached in one step: a lone spike, whose raw score moves the short average
//!    by a fifth only) and a move of a metric that never moved (a range of zero width), which always alarm. So a reader with a
//!    lower threshold than the engine's (an operator's dashboard, a benchmark's optimised threshold) sees every new
//!    extreme, and the engine's cut-off stays calibrated (`alarm_rate`).
//! 3. **One report per event, whatever the threshold.** A point scores only when it is higher than the fading memory
//!    of earlier scores (the memory fades by `1 - 1/refractory` per point, `refractory` = `history_horizon` / 10;
//!    after a point is reported at `s`, the memory is `s + ` [`REFRACTORY_MARGIN`]` × (1 - s)`), otherwise 0: an
//!    event is reported at its first point above any threshold, later points only when they rise well above the
//!    last report, and not while the baselines adapt; a much larger excursion still breaks through, and so does the
//!    event's first point at or above [`ALARM`] (the engine's cut-off is crossed once per event). (The likelihood
//!    detector's one-alarm-per-event cap works only at its own alarm level: at the lower threshold a reader may use,
//!    every point of an event counts.)
//!
//! 4. **A second score, on steps** (`step_score`, on by default). The step from the previous value, in units of the
//!    spread of steps at this hour of the day once the hour's profile judges (never below the spread of all steps,
//!    which judges until then), goes through its own short average and tail; a point's tail probability is the
//!    smaller of the two. A series that turns jagged within its range, or moves in a way a level does not (the edges
//!    of a daily square wave are steps expected at their hour), is judged on what it does, not only where it is.
//!
//! Settings: `level_horizon`, `history_horizon`, `short_window`, `extreme_tolerance`, `surprise` (tuned on the NAB
//! slice, BENCHMARKS.md) and `alarm_rate` (the calibrated false-alarm rate per point, chosen for quietness), plus the
//! fixed warm-up. Tied to them: the fitted tail begins at the ten highest short averages the history horizon holds
//! (`tail_fraction` = 10 / `history_horizon`), the refractory horizon is a tenth of the history horizon, a new extreme
//! is ranked from `surprise` / 2 spreads. Invariants as the likelihood detector's: causal, a fixed warm-up, scale and
//! offset invariant, fixed-size state (the struct and a ring of `short_window` raw scores), O(histogram) per point.

use serde::{Deserialize, Serialize};

use super::Detector;
/// The alarm score, the least rank of a new extreme and the highest (the likelihood detector's constants).
pub use super::likelihood::{ALARM, CALM, ECHO_CAP};
use super::likelihood::{Likelihood, LikelihoodConfig, Ranking, SHORT_WINDOW_MAX};
use crate::clock::Timestamp;

/// The raw score is `l / (l + RAW_LOG)` with `l = ln(1 + (d / surprise)^3)`: 0.5 at `l = RAW_LOG`, about 2.7 ×
/// `surprise` spreads.
pub const RAW_LOG: f64 = 3.0;
/// After a point is reported at `s`, later points must exceed `s + REFRACTORY_MARGIN × (1 - s)` (fading) to be
/// reported again.
pub const REFRACTORY_MARGIN: f64 = 0.25;
/// The fraction of an alarm's log-probability a new extreme needs to alarm (every other point needs all of it).
pub const EXTREME_EVIDENCE: f64 = 0.75;
/// A new extreme more than this many widths of the running range beyond its tolerance alarms whatever the evidence:
/// a level never approached, reached in one step (a lone spike moves the short average too little to alarm).
pub const LEAP: f64 = 2.0;
/// Short averages in the fitted tail, on average, over the history horizon: `tail_fraction` = this / horizon.
pub const TAIL_POINTS: f64 = 10.0;
/// The refractory horizon is the history horizon divided by this.
pub const REFRACTORY_PER_HISTORY: f64 = 10.0;

/// Settings of a [`Surprise`] detector. Horizons are in points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurpriseConfig {
    /// Horizon of the level the raw score measures from.
    pub level_horizon: f64,
    /// Horizon of the spreads and of the running distribution of the short average of raw scores; a tenth of it is
    /// the refractory horizon.
    pub history_horizon: f64,
    /// Raw scores in the short average.
    pub short_window: usize,
    /// Probability per point, under the fitted tail, at which the short average scores [`ALARM`]: the calibrated
    /// false-alarm rate.
    pub alarm_rate: f64,
    /// How far beyond the range seen, as a fraction of its width, a value must lie to be a new extreme.
    pub extreme_tolerance: f64,
    /// Spreads from the expected value at which the raw score rises; a new extreme must lie at least half as far.
    pub surprise: f64,
    /// Points seen before judging (score 0 until then).
    pub warm_up: usize,
    /// The step score (on by default): a second raw score, the step from the previous value in units of the spread
    /// of steps (at this hour of the day once the hour's profile judges, never below the spread of all steps), with
    /// its own short average and tail; a point's tail probability is the smaller of the two (so the calibrated
    /// false-alarm rate is at most twice `alarm_rate`). `false` is the surprise detector of 2026-12-06.
    pub step_score: bool,
}

impl Default for SurpriseConfig {
    fn default() -> Self {
        Self {
            level_horizon: 16.0,
            history_horizon: 1_500.0,
            short_window: 5,
            alarm_rate: 3e-6,
            extreme_tolerance: 0.02,
            surprise: 4.0,
            warm_up: 300,
            step_score: true,
        }
    }
}

impl SurpriseConfig {
    /// Checks every setting; the error names the key under `prefix`, the value and the accepted range.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        use crate::config::{range_f, range_u};
        let k = |key: &str| format!("{prefix}{key}");
        range_f(&k("level_horizon"), self.level_horizon, 1.0, 1e7, false)?;
        range_f(
            &k("history_horizon"),
            self.history_horizon,
            20.0,
            1e9,
            false,
        )?;
        range_u(
            &k("short_window"),
            self.short_window as u64,
            1,
            SHORT_WINDOW_MAX as u64,
        )?;
        range_f(&k("alarm_rate"), self.alarm_rate, 0.0, 0.5, true)?;
        range_f(
            &k("extreme_tolerance"),
            self.extreme_tolerance,
            0.0,
            1e6,
            false,
        )?;
        range_f(&k("surprise"), self.surprise, 0.0, 1e6, true)?;
        range_u(&k("warm_up"), self.warm_up as u64, 0, 1_000_000_000)?;
        Ok(())
    }

    /// The likelihood detector's settings these stand for.
    pub fn likelihood(&self) -> LikelihoodConfig {
        let history = if self.history_horizon.is_finite() {
            self.history_horizon.max(20.0)
        } else {
            SurpriseConfig::default().history_horizon
        };
        LikelihoodConfig {
            level_horizon: self.level_horizon,
            history_horizon: history,
            short_window: self.short_window,
            alarm_rate: self.alarm_rate,
            tail_fraction: (TAIL_POINTS / history).min(0.5),
            extreme_tolerance: self.extreme_tolerance,
            surprise: self.surprise,
            extreme_evidence: EXTREME_EVIDENCE,
            warm_up: self.warm_up,
        }
    }

    fn ranking(&self) -> Ranking {
        let history = self.likelihood().history_horizon;
        Ranking {
            extreme_floor: CALM,
            floor_spreads: self.surprise / 2.0,
            raw_log: RAW_LOG,
            refractory_horizon: history / REFRACTORY_PER_HISTORY,
            refractory_margin: REFRACTORY_MARGIN,
            leap: LEAP,
            step_score: self.step_score,
        }
    }
}

/// The surprise detector (see the module documentation).
#[derive(Debug, Clone)]
pub struct Surprise {
    config: SurpriseConfig,
    inner: Likelihood,
}

impl Surprise {
    /// A detector with these settings; settings out of range are brought into range (see
    /// [`SurpriseConfig::validate`] for the checked form).
    pub fn new(config: SurpriseConfig) -> Self {
        let inner = Likelihood::with_ranking(config.likelihood(), config.ranking());
        Self { config, inner }
    }

    /// Its settings.
    pub fn config(&self) -> &SurpriseConfig {
        &self.config
    }

    /// Raw scores kept (the ring of the short average): the only part of the state sized by a setting.
    pub fn ring_len(&self) -> usize {
        self.inner.ring_len()
    }
}

impl Default for Surprise {
    fn default() -> Self {
        Self::new(SurpriseConfig::default())
    }
}

impl Detector for Surprise {
    fn name(&self) -> &str {
        "surprise"
    }

    fn update(&mut self, at: Timestamp, value: f64) -> f64 {
        self.inner.update(at, value)
    }

    fn judged(&self) -> bool {
        self.inner.judged()
    }

    fn explain(&self) -> String {
        let inner = self.inner.explain();
        format!(
            "surprise: {}",
            inner.strip_prefix("likelihood: ").unwrap_or(&inner)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: u64) -> f64 {
        ((i as f64 * 12.9898).sin() * 43_758.545_3).fract()
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let bad = |json: &str| {
            let surprise: SurpriseConfig = serde_json::from_str(json).unwrap();
            crate::detect::CompositeConfig {
                surprise,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
        };
        assert!(
            bad(r#"{"alarm_rate": 0}"#).starts_with("engine.composite.surprise.alarm_rate = 0")
        );
        assert!(
            bad(r#"{"history_horizon": 5}"#)
                .starts_with("engine.composite.surprise.history_horizon = 5")
        );
        assert!(
            bad(r#"{"short_window": 0}"#).starts_with("engine.composite.surprise.short_window = 0")
        );
        SurpriseConfig::default()
            .validate("composite.surprise.")
            .unwrap();
    }

    #[test]
    fn a_new_extreme_ranks_above_the_noise_below_the_alarm_and_a_held_excursion_is_reported_once() {
        let mut d = Surprise::default();
        let mut noise_max: f64 = 0.0;
        for i in 0..3_000 {
            let s = d.update(i, 10.0 + noise(i));
            if i > 300 {
                noise_max = noise_max.max(s);
            }
        }
        assert!(noise_max < CALM, "noise scored up to {noise_max}");
        // Just beyond the range (by 10% of it) and a few spreads from the level: a new extreme, ranked, no alarm.
        let s = d.update(3_000, 11.1);
        assert!((CALM..ALARM).contains(&s), "{s}: {}", d.explain());
        assert!(d.explain().contains("new extreme"), "{}", d.explain());
        // Much later, a huge excursion held for a few points: reported at its first point, above every ordinary
        // point, and not again while it lasts.
        for i in 3_001..4_000 {
            d.update(i, 10.0 + noise(i));
        }
        let held: Vec<f64> = (4_000..4_010).map(|i| d.update(i, 60.0)).collect();
        assert!(held[0] >= CALM, "{held:?}");
        assert!(held[1..].iter().all(|&s| s < held[0]), "{held:?}");
    }

    #[test]
    fn a_raw_score_that_does_not_saturate_ranks_a_larger_spike_higher() {
        let spike = |height: f64| {
            let mut d = Surprise::default();
            for i in 0..3_000 {
                // Two outliers during the warm-up widen the range: the spikes below stay within it.
                let outlier = match i {
                    5 => 1_000.0,
                    6 => -1_000.0,
                    _ => 0.0,
                };
                d.update(i, 10.0 + noise(i) + 2.0 * (i as f64 / 7.0).sin() + outlier);
            }
            // Within the range (no new extreme): only the likelihood speaks.
            d.update(3_000, 10.0 + height)
        };
        let (small, large) = (spike(-4.0), spike(-40.0));
        assert!(large > small, "{large} vs {small}");
    }

    #[test]
    fn a_lone_spike_far_beyond_the_range_alarms_and_one_just_beyond_it_does_not() {
        let spike = |height: f64| {
            let mut d = Surprise::default();
            for i in 0..3_000 {
                d.update(i, 10.0 + noise(i));
            }
            // The noise lies in (-1, 1), so the range is about (9, 11): `height` is in range widths above its top.
            let s = d.update(3_000, 11.0 + 2.0 * height);
            (s, d.explain())
        };
        let (far, why) = spike(2.5);
        assert!(far >= ALARM, "{far}: {why}");
        let (near, why) = spike(1.5);
        assert!((CALM..ALARM).contains(&near), "{near}: {why}");
    }

    #[test]
    fn the_step_score_ranks_a_jagged_stretch_within_the_range_higher() {
        let jagged = |step_score: bool| {
            let mut d = Surprise::new(SurpriseConfig {
                step_score,
                ..SurpriseConfig::default()
            });
            let smooth = |i: u64| 10.0 + 5.0 * (i as f64 / 50.0).sin() + 0.01 * noise(i);
            for i in 0..3_000 {
                d.update(i, smooth(i));
            }
            // Alternating by ±1 around the smooth curve: every value within the range seen, the level barely moved
            // (it follows the median of three), every step a hundred times the usual one.
            (3_000..3_020)
                .map(|i| d.update(i, smooth(i) + if i % 2 == 0 { 1.0 } else { -1.0 }))
                .fold(0.0, f64::max)
        };
        let (with, without) = (jagged(true), jagged(false));
        assert!(with > without, "{with} vs {without}");
        assert!(with >= CALM, "{with}");
    }

    #[test]
    fn flat_then_a_move_alarms() {
        let mut d = Surprise::default();
        for i in 0..500 {
            assert_eq!(d.update(i, 45.0), 0.0);
        }
        assert!(d.update(500, 46.0) >= ALARM, "{}", d.explain());
    }
}
