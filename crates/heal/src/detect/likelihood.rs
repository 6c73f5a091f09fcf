//! The likelihood detector (`[engine.composite] kind = "likelihood"`): a simple causal raw score, turned into an
//! alarm by how unlikely a short run of raw scores is against the series' own history of raw scores, plus a rule for
//! values beyond anything seen. Built from principles that transfer between metrics rather than from one data set:
//!
//! 1. **Raw score.** How far a value lies from what was expected, in units of a slowly learned spread: expected is a
//!    short exponentially weighted level (fed the median of the last three values, so a lone spike does not drag
//!    it) and, once an hour of the day has been seen on three days, that hour's profile (daily cycles are the rule
//!    in operational metrics); the raw score is the larger of the two. A distance `d` in spreads is squashed to
//!    `r = q / (1 + q)`, `q = (d / surprise)^3`: near 0 for ordinary noise, 0.5 at `surprise` spreads, near 1 beyond.
//! 2. **Anomaly likelihood** (after the post-processing of Numenta's HTM detector): the upper tail probability `P`
//!    of the average of the last `short_window` raw scores against that average's own distribution over the
//!    history horizon. The distribution is a fixed histogram ([`TAIL_BINS`] bins, finer near 0, exponentially
//!    forgetting); inside it `P` is the empirical tail, and beyond its upper `tail_fraction` quantile `u` (where a
//!    histogram of a thousand points knows nothing about one-in-a-hundred-thousand events) a generalized Pareto tail
//!    fitted by the moments of the excesses over `u`, its shape kept in `[0, `[`TAIL_SHAPE_MAX`]`]` (never lighter
//!    than exponential). The average of a bounded raw score is far from normal; this tail model fits it, so the
//!    alarm probability is calibrated. A flat-metric guard floors the tail's scale ([`TAIL_SCALE_FLOOR`]), so a
//!    metric whose raw score never moved does not alarm on the smallest wiggle of it. `P` maps to a score on a log
//!    scale, `0.75 × ln P / ln alarm_rate`, so the score reaches [`ALARM`] (the engine's default anomaly cut-off)
//!    exactly when the short average is as unlikely as `alarm_rate` per point.
//! 3. **New extreme.** A value more than `extreme_tolerance` × (range seen so far) beyond the lowest or highest value
//!    seen, and at least `surprise` spreads from the level, needs less evidence: it alarms once `ln P` reaches
//!    `extreme_evidence × ln alarm_rate` (a level never reached, and reached suddenly, is news, but a rule that alarms
//!    on every new extreme alarms on every healthy series early in its life). A value beyond a range of zero width (a
//!    flat metric that moves) always alarms.
//! 4. **One alarm per event.** The larger of the two scores is reported once per event: after a point at or above
//!    [`ALARM`], later points of the same event (until the score falls below [`CALM`]) are capped at [`ECHO_CAP`], so
//!    a level shift is reported at its start and not again while the baselines adapt.
//!
//! Invariants: each point is seen once, in order; nothing depends on the series' length or on values not yet seen
//! (the range is the running range of the values seen); the warm-up is a fixed number of points (`warm_up`, score 0
//! until then); every statistic is relative to the series' own spread and range, so multiplying a series by a
//! positive factor and adding an offset gives the same scores up to rounding; the state is a fixed-size struct (with
//! its histogram of [`TAIL_BINS`] bins) plus a ring of `short_window` raw scores, bounded however long the stream
//! runs; an update costs O([`TAIL_BINS`]).

use serde::{Deserialize, Serialize};

use super::Detector;
use super::changepoint::Changepoint;
use super::discord::Discord;
use super::stats::clean_score;
use crate::clock::Timestamp;

/// The score of an alarm: the engine's default anomaly cut-off. The likelihood maps to it at `alarm_rate`.
pub const ALARM: f64 = 0.75;
/// An event ends when the (uncapped) score falls below this.
pub const CALM: f64 = 0.5;
/// Points of an event after its alarm are capped at this (just under [`ALARM`]).
pub const ECHO_CAP: f64 = 0.7;
/// The smallest scale of the fitted tail of the short average of raw scores (the flat-metric guard), in raw-score
/// units.
pub const TAIL_SCALE_FLOOR: f64 = 0.01;
/// Bins of the histogram of the short average (over `sqrt` of it, so finer near 0 where most of it lies).
pub const TAIL_BINS: usize = 256;
/// The largest shape of the fitted generalized Pareto tail (0 is an exponential tail; larger is heavier).
pub const TAIL_SHAPE_MAX: f64 = 0.5;
/// Longest accepted `short_window`, points.
pub const SHORT_WINDOW_MAX: usize = 10_000;

/// Settings of a [`Likelihood`] detector. Horizons are in points (an exponential weight of `1 / horizon`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LikelihoodConfig {
    /// Horizon of the level the raw score measures from.
    pub level_horizon: f64,
    /// Horizon of the spreads and of the running distribution of the short average of raw scores.
    pub history_horizon: f64,
    /// Raw scores in the short average.
    pub short_window: usize,
    /// Probability per point, under the fitted tail, at which the short average scores [`ALARM`]: the calibrated
    /// false-alarm rate.
    pub alarm_rate: f64,
    /// The upper fraction of the short average's histogram beyond which its tail is the fitted generalized Pareto.
    pub tail_fraction: f64,
    /// How far beyond the range seen, as a fraction of its width, a value must lie to be a new extreme.
    pub extreme_tolerance: f64,
    /// Spreads from the expected value at which the raw score is 0.5; a new extreme must lie at least this far.
    pub surprise: f64,
    /// The fraction of an alarm's log-probability a new extreme just beyond the tolerance needs to alarm (less the
    /// further beyond the range it lies).
    pub extreme_evidence: f64,
    /// Points seen before judging (score 0 until then).
    pub warm_up: usize,
}

/// What the [`super::surprise::Surprise`] detector changes in the likelihood detector (all off for `likelihood`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ranking {
    /// The least score of a new extreme, whatever its evidence, below [`ECHO_CAP`]; 0: off.
    pub extreme_floor: f64,
    /// Spreads from the level a new extreme must lie to be ranked by `extreme_floor`.
    pub floor_spreads: f64,
    /// 0: the raw score is `q / (1 + q)`; above 0, `ln(1 + q) / (ln(1 + q) + raw_log)`.
    pub raw_log: f64,
    /// Points over which the memory of a high score fades; 0: the echo cap instead.
    pub refractory_horizon: f64,
    /// After a point scores `s`, the memory is `s + refractory_margin × (1 - s)`.
    pub refractory_margin: f64,
    /// A new extreme this many range widths beyond the tolerance alarms whatever the evidence.
    pub leap: f64,
    /// A second raw score, the step from the previous value against the spread of steps (at this hour of the day
    /// once the profile judges), through its own short average and tail; the point's tail probability is the smaller
    /// of the two.
    pub step_score: bool,
}

impl Ranking {
    /// The likelihood detector's own behaviour.
    pub const OFF: Ranking = Ranking {
        extreme_floor: 0.0,
        floor_spreads: f64::INFINITY,
        raw_log: 0.0,
        refractory_horizon: 0.0,
        refractory_margin: 0.0,
        leap: f64::INFINITY,
        step_score: false,
    };
}

/// The kind of second raw score of the surprise detector's step score ([`Ranking::step_score`]).
const STEP_SCORE: u32 = 8;

/// One hour-of-day bucket of the profile.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    mean: f64,
    spread: f64,
    /// The spread of steps from the previous value at this hour (the `second = 8` variant).
    step_spread: f64,
    seen: u64,
    days: u32,
    last_day: u64,
}

const US_PER_HOUR: u64 = 3_600_000_000;
/// Hour-of-day buckets of the profile.
const BUCKETS: usize = 24;
/// Days a bucket must have seen before it judges.
const SEASON_DAYS_MIN: u32 = 3;
/// The raw score is `q / (1 + q)` with `q = (d / surprise)^RAW_POWER`: near 0 for ordinary deviations, near 1 for
/// surprising ones, so that a run of surprises stands out of the short average.
const RAW_POWER: i32 = 3;

impl Default for LikelihoodConfig {
    fn default() -> Self {
        Self {
            level_horizon: 8.0,
            history_horizon: 1_000.0,
            short_window: 5,
            alarm_rate: 3e-6,
            tail_fraction: 0.005,
            extreme_tolerance: 0.05,
            extreme_evidence: 0.5,
            surprise: 4.0,
            warm_up: 300,
        }
    }
}

impl LikelihoodConfig {
    /// Checks every setting; the error names the key under `prefix`, the value and the accepted range.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        use crate::config::{range_f, range_u};
        let k = |key: &str| format!("{prefix}{key}");
        range_f(&k("level_horizon"), self.level_horizon, 1.0, 1e7, false)?;
        range_f(&k("history_horizon"), self.history_horizon, 1.0, 1e9, false)?;
        range_u(
            &k("short_window"),
            self.short_window as u64,
            1,
            SHORT_WINDOW_MAX as u64,
        )?;
        range_f(&k("alarm_rate"), self.alarm_rate, 0.0, 0.5, true)?;
        range_f(&k("tail_fraction"), self.tail_fraction, 0.0, 0.5, true)?;
        range_f(
            &k("extreme_tolerance"),
            self.extreme_tolerance,
            0.0,
            1e6,
            false,
        )?;
        range_f(&k("surprise"), self.surprise, 0.0, 1e6, true)?;
        range_f(
            &k("extreme_evidence"),
            self.extreme_evidence,
            0.0,
            1.0,
            true,
        )?;
        range_u(&k("warm_up"), self.warm_up as u64, 0, 1_000_000_000)?;
        Ok(())
    }
}

/// `ln Q(z)`, the log of the upper tail probability of the standard normal distribution, accurate in the far tail
/// (Numerical Recipes' `erfcc`, relative error below 1.2e-7, evaluated in log space).
pub fn ln_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ln_erfc_abs = t.ln() + poly;
    if x >= 0.0 {
        ln_erfc_abs - std::f64::consts::LN_2
    } else {
        // erfc(-|x|) = 2 - erfc(|x|)
        (1.0 - 0.5 * ln_erfc_abs.exp()).ln()
    }
}

/// What the last point was, for `explain`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LastPoint {
    Nothing,
    NonFinite,
    Warming {
        seen: u64,
    },
    Scored {
        value: f64,
        level: f64,
        spread: f64,
        raw: f64,
        avg: f64,
        ln_p: f64,
        likelihood_score: f64,
        extreme: bool,
        capped: bool,
        score: f64,
    },
}

/// The short average of a raw score over a ring of `short_window` points, and that average's running distribution:
/// a histogram over the history horizon (bin `i` holds `sqrt(avg)` in `[i, i+1) / TAIL_BINS`), exponentially
/// forgetting, with a generalized Pareto tail fitted beyond its upper `tail_fraction` quantile.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    /// The last `short_window` raw scores and their sum.
    ring: Vec<f64>,
    ring_at: usize,
    ring_sum: f64,
    /// Raw scores pushed.
    pushed: u64,
    /// Weights in units of `hist_unit` (so forgetting is one multiplication, not one per bin), their sum, and how many
    /// entered it.
    hist: [f64; TAIL_BINS],
    hist_unit: f64,
    hist_sum: f64,
    avg_seen: u64,
    /// The `taper` variant: the short average is the mean of the plain averages over `w - 1`, `w` and `w + 1` points
    /// (the ring holds `w + 1`).
    taper: bool,
}

impl Tail {
    pub(crate) fn new(short_window: usize) -> Self {
        Self::with_taper(short_window, false)
    }

    pub(crate) fn with_taper(short_window: usize, taper: bool) -> Self {
        let len = short_window.clamp(1, SHORT_WINDOW_MAX) + usize::from(taper);
        Self {
            taper,
            ring: vec![0.0; len],
            ring_at: 0,
            ring_sum: 0.0,
            pushed: 0,
            hist: [0.0; TAIL_BINS],
            hist_unit: 1.0,
            hist_sum: 0.0,
            avg_seen: 0,
        }
    }

    /// Puts a raw score in the ring; returns the short average.
    pub(crate) fn push(&mut self, raw: f64) -> f64 {
        self.pushed += 1;
        self.ring_sum += raw - self.ring[self.ring_at];
        self.ring[self.ring_at] = raw;
        self.ring_at = (self.ring_at + 1) % self.ring.len();
        if self.ring_at == 0 {
            // Once per turn of the ring, the running sum is recomputed, so rounding cannot drift over a long stream.
            self.ring_sum = self.ring.iter().sum();
        }
        if self.taper {
            return self.tapered();
        }
        (self.ring_sum / self.ring.len() as f64).clamp(0.0, 1.0)
    }

    /// The mean of the plain averages of the last `w - 1` (at least 1), `w` and `w + 1` raw scores.
    fn tapered(&self) -> f64 {
        let n = self.ring.len();
        let w = n - 1;
        let (mut sum, mut total) = (0.0, 0.0);
        for lag in 0..n {
            sum += self.ring[(self.ring_at + n - 1 - lag) % n];
            let k = lag + 1;
            if k == (w - 1).max(1) || k == w || k == w + 1 {
                total += sum / k as f64;
            }
        }
        let parts = if w >= 2 { 3.0 } else { 2.0 };
        (total / parts).clamp(0.0, 1.0)
    }

    /// `ln P(short average >= avg)` under the histogram and its fitted tail (0 before any sample).
    pub(crate) fn ln_tail(&self, avg: f64, tail_fraction: f64) -> f64 {
        if self.avg_seen == 0 {
            return 0.0;
        }
        let total = self.hist_sum;
        if total <= 0.0 {
            return 0.0;
        }
        // The bin whose lower edge is the tail threshold u: the highest bin with at least tail_fraction at or above it.
        let want = tail_fraction * total;
        let mut above = 0.0;
        let mut k = 0;
        for i in (0..TAIL_BINS).rev() {
            above += self.hist[i];
            if above >= want {
                k = i;
                break;
            }
        }
        let edge = |i: usize| (i as f64 / TAIL_BINS as f64).powi(2);
        let u = edge(k);
        if avg < u {
            // The empirical tail, interpolated within avg's bin.
            let s = avg.max(0.0).sqrt() * TAIL_BINS as f64;
            let b = (s as usize).min(TAIL_BINS - 1);
            let inside = self.hist[b] * (1.0 - (s - b as f64).clamp(0.0, 1.0));
            let mass: f64 = self.hist[b + 1..].iter().sum::<f64>() + inside;
            return (mass / total).min(1.0).ln();
        }
        // Excesses over u: their first two moments, from the bins' centres.
        let (mut m1, mut m2) = (0.0, 0.0);
        for i in k..TAIL_BINS {
            let c = ((i as f64 + 0.5) / TAIL_BINS as f64).powi(2) - u;
            m1 += self.hist[i] * c;
            m2 += self.hist[i] * c * c;
        }
        let mean = m1 / above;
        let var = (m2 / above - mean * mean).max(0.0);
        // Generalized Pareto by moments: shape = (1 - mean^2/var) / 2, scale = mean (1 - shape).
        let shape = if var > 0.0 {
            (0.5 * (1.0 - mean * mean / var)).clamp(0.0, TAIL_SHAPE_MAX)
        } else {
            0.0
        };
        let scale = (mean * (1.0 - shape)).max(TAIL_SCALE_FLOOR);
        let x = (avg - u) / scale;
        let ln_excess = if shape > 1e-9 {
            -(shape * x).ln_1p() / shape
        } else {
            -x
        };
        (above / total).min(1.0).ln() + ln_excess
    }

    /// The short average joins its distribution once the ring holds raw scores only.
    pub(crate) fn learn(&mut self, avg: f64, history_weight: f64) {
        if self.pushed < self.ring.len() as u64 {
            return;
        }
        self.avg_seen += 1;
        let aw = Likelihood::weight(self.avg_seen, history_weight);
        // Forgetting by (1 - aw) is a larger unit for what enters; far from 1, the weights are rescaled.
        if aw >= 1.0 {
            self.hist = [0.0; TAIL_BINS];
            self.hist_unit = 1.0;
            self.hist_sum = 0.0;
        } else {
            self.hist_unit /= 1.0 - aw;
        }
        let bin = ((avg.sqrt() * TAIL_BINS as f64) as usize).min(TAIL_BINS - 1);
        self.hist[bin] += aw * self.hist_unit;
        self.hist_sum += aw * self.hist_unit;
        if self.hist_unit > 1e100 {
            for h in &mut self.hist {
                *h /= self.hist_unit;
            }
            self.hist_unit = 1.0;
            self.hist_sum = self.hist.iter().sum();
        }
    }
}

/// Structural variants of the surprise detector measured on the NAB slice and not kept (BENCHMARKS.md, "Second
/// scores, robust spreads and finer seasons", "Families of settings, a CUSUM tail, steps away from the level" and "A
/// third kind of evidence").
/// The factors `s_*` and `h_*` take one use of a setting apart from its others (which of them moves the score).
/// Compiled only with the `experiments` feature (the NAB experiment tool's
/// build: `medic`'s dev-dependency) and read once from `MEDIC_NAB_VARIANT`, e.g. `second=4,combine=0`; without the
/// feature, or unset, every field is 0 (off) and the detector is the surprise detector.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Variant {
    /// The spread follows the distance clipped at this many spreads (0: not clipped): a robust scale.
    clip: f64,
    /// 1: the spread is the root mean square distance rather than the mean absolute one.
    rms: u32,
    /// A second raw score through its own short average and tail: 1 the size of the step from the previous value,
    /// 2 the short-window spread against the long one (variance shift), 4 how far beyond the running range (a new
    /// extreme), 5 the first raw score unaveraged, 6 the new-extreme score unaveraged, 7 the step of the residual
    /// against the hour-of-day profile (against the value until the profile judges), 8 the surprise detector's step
    /// score ([`Ranking::step_score`]: on by default when it is), `none` (stored as `u32::MAX`) none at all.
    second: u32,
    /// How the two tail probabilities combine: 0 the smaller, times 2 (a max corrected for taking it), 1 Fisher's
    /// product of independent evidence, 2 the smaller uncorrected; unset, the step score's own (2) or else 0.
    combine: Option<u32>,
    /// For `second = 2`: the spread ratio is measured in units of `surprise` times this.
    spread_units: f64,
    /// Buckets of the time-of-day profile per day (0: 24); at most [`BUCKET_SLOTS`].
    buckets: u32,
    /// The profile's distance is measured in 1: the larger of the bucket's and the level's spread, 2: their sum.
    bucket_spread: u32,
    /// The least rank of a new extreme instead of [`CALM`] (1 or more: not ranked).
    extreme_floor: f64,
    /// Factors (0: 1) on `surprise` in the raw scores only, in the ranked floor only, in the new-extreme test only.
    s_raw: f64,
    s_floor: f64,
    s_gate: f64,
    /// Factors (0: 1) on the history horizon of the spreads (level, profile, steps) only, of the histograms only,
    /// on the tail fraction only, on the refractory horizon only.
    h_spread: f64,
    h_hist: f64,
    h_tail: f64,
    h_refr: f64,
    /// Above 0: every raw score is the mean of the squashed distance at `surprise` / k, `surprise` and `surprise` × k.
    fam_s: f64,
    /// 1: the short averages are tapered ([`Tail::tapered`]).
    taper: u32,
    /// Above 0: a third tail, a two-sided CUSUM of the value's distance from a mean over the refractory horizon (times
    /// `cu_m`), in spreads clipped at `surprise`, less this allowance per point; squashed at `cu_h` (0: 8) spreads.
    cu_k: f64,
    cu_h: f64,
    cu_m: f64,
    /// Above 0: the refractory memory is the mean of three, fading over the refractory horizon / k, × 1 and × k.
    refr_fam: f64,
    /// Above 0: `ln P` is the mean of the tails at `tail_fraction` / k, × 1 and × k.
    tail_fam: f64,
    /// Each score's tail probability also from short averages over `w - 1` and `w + 1` points, each with its own
    /// histogram: 1 the mean of the three `ln P`, 2 the smallest times 3 (Bonferroni).
    win_fam: u32,
    /// 1: the step score counts only steps away from the level (a step back towards it scores 0); 2: a step back
    /// counts half.
    step_away: u32,
    /// Above 0: a shape tail ([`super::discord`]), the nearest-neighbour distance of the last `dd_m` z-normalised
    /// points among the windows ending up to `dd_l` (0: 1000) points before, spreads floored at `dd_f` (0: 0.1) running
    /// spreads, through its own short average of `dd_w` (0: 1) points and tail.
    dd_m: u32,
    dd_l: u32,
    dd_f: f64,
    dd_w: u32,
    /// Above 0: a change-point tail ([`super::changepoint`]), the predictive surprise of Bayesian online change-point
    /// detection at a hazard of 1 / (`cp_h` × the refractory horizon), at most `cp_r` (0: 50) run lengths, squashed as
    /// `u / (u + cp_s)` (0: 8) nats, through its own short average of `cp_w` (0: `short_window`) points and tail.
    cp_h: f64,
    cp_r: u32,
    cp_s: f64,
    cp_w: u32,
    /// Nats added to the `dd_m` and `cp_h` tails' `ln P` before the smallest is taken (a correction for taking it).
    x_pen: f64,
}

/// A factor of a [`Variant`]: 0 (unset) is 1.
fn factor(x: f64) -> f64 {
    if x > 0.0 { x } else { 1.0 }
}

impl Variant {
    #[cfg(feature = "experiments")]
    fn from_env() -> Self {
        /// `second=none`: no second score, whatever the detector's own.
        const NO_SECOND: u32 = u32::MAX;
        static VARIANT: std::sync::OnceLock<Variant> = std::sync::OnceLock::new();
        *VARIANT.get_or_init(|| {
            let mut v = Variant::default();
            let spec = std::env::var("MEDIC_NAB_VARIANT").unwrap_or_default();
            for (key, value) in spec.split(',').filter_map(|kv| kv.split_once('=')) {
                let x: f64 = value.trim().parse().unwrap_or(0.0);
                match key.trim() {
                    "clip" => v.clip = x,
                    "rms" => v.rms = x as u32,
                    "second" if value.trim() == "none" => v.second = NO_SECOND,
                    "second" => v.second = x as u32,
                    "combine" => v.combine = Some(x as u32),
                    "spread_units" => v.spread_units = x,
                    "buckets" => v.buckets = (x as u32).min(BUCKET_SLOTS as u32),
                    "bucket_spread" => v.bucket_spread = x as u32,
                    "extreme_floor" => v.extreme_floor = x,
                    "s_raw" => v.s_raw = x,
                    "s_floor" => v.s_floor = x,
                    "s_gate" => v.s_gate = x,
                    "h_spread" => v.h_spread = x,
                    "h_hist" => v.h_hist = x,
                    "h_tail" => v.h_tail = x,
                    "h_refr" => v.h_refr = x,
                    "fam_s" => v.fam_s = x,
                    "taper" => v.taper = x as u32,
                    "cu_k" => v.cu_k = x,
                    "cu_h" => v.cu_h = x,
                    "cu_m" => v.cu_m = x,
                    "refr_fam" => v.refr_fam = x,
                    "tail_fam" => v.tail_fam = x,
                    "step_away" => v.step_away = x as u32,
                    "win_fam" => v.win_fam = x as u32,
                    "dd_m" => v.dd_m = x as u32,
                    "dd_l" => v.dd_l = x as u32,
                    "dd_f" => v.dd_f = x,
                    "dd_w" => v.dd_w = x as u32,
                    "cp_h" => v.cp_h = x,
                    "cp_r" => v.cp_r = x as u32,
                    "cp_s" => v.cp_s = x,
                    "cp_w" => v.cp_w = x as u32,
                    "x_pen" => v.x_pen = x,
                    other => panic!("MEDIC_NAB_VARIANT: unknown key {other:?} in {spec:?}"),
                }
            }
            v
        })
    }

    #[cfg(not(feature = "experiments"))]
    fn from_env() -> Self {
        Self::default()
    }
}

/// Slots for the time-of-day profile's buckets (more only for the `buckets` variant).
#[cfg(feature = "experiments")]
const BUCKET_SLOTS: usize = 288;
#[cfg(not(feature = "experiments"))]
const BUCKET_SLOTS: usize = BUCKETS;

/// The likelihood detector (see the module documentation).
#[derive(Debug, Clone)]
pub struct Likelihood {
    /// A structural variant (experiments only; off).
    variant: Variant,
    /// The variant's second raw score: its short average and tail, the spread of steps, the short-window spread,
    /// and the previous value (or residual) the step is taken from.
    second: Option<Tail>,
    /// Which second raw score (0: none; [`STEP_SCORE`]: the surprise detector's; others: a [`Variant`]).
    second_kind: u32,
    step_spread: f64,
    short_spread: f64,
    last_value: f64,
    /// The `cu_k` variant: its tail (a window of one), mean and two sums.
    third: Option<Box<Tail>>,
    cu: [f64; 3],
    /// The `win_fam` variant's tails over `w - 1` and `w + 1` points, of the first score and of the second.
    wtails: Option<Box<[Tail; 4]>>,
    /// The `refr_fam` variant's three memories.
    memories: [f64; 3],
    /// The `dd_m` variant's shape score and its tail.
    shape: Option<Box<(Discord, Tail)>>,
    /// The `cp_h` variant's change-point surprise and its tail.
    change: Option<Box<(Changepoint, Tail)>>,
    config: LikelihoodConfig,
    level_weight: f64,
    history_weight: f64,
    /// The forgetting weight of the histograms (`history_weight` but for the `h_hist` variant).
    hist_weight: f64,
    seen: u64,
    level: f64,
    /// Exponentially weighted mean absolute distance from the level (the spread), over the history horizon.
    spread: f64,
    min: f64,
    max: f64,
    /// The short average of the raw scores and its running distribution.
    tail: Tail,
    in_event: bool,
    /// The faded memory of the highest score (`refractory_horizon`).
    memory: f64,
    /// The last reported score, fading as `memory` does (without its margin).
    reported: f64,
    ranking: Ranking,
    /// The last two values, for the median of three the level follows.
    prev: [f64; 2],
    /// The hour-of-day profile.
    buckets: [Bucket; BUCKET_SLOTS],
    last: LastPoint,
}

impl Likelihood {
    /// A detector with these settings; settings out of range are brought into range (see
    /// [`LikelihoodConfig::validate`] for the checked form).
    pub fn new(mut config: LikelihoodConfig) -> Self {
        let d = LikelihoodConfig::default();
        let fix =
            |v: f64, lo: f64, default: f64| if v.is_finite() && v >= lo { v } else { default };
        config.level_horizon = fix(config.level_horizon, 1.0, d.level_horizon);
        config.history_horizon = fix(config.history_horizon, 1.0, d.history_horizon);
        config.alarm_rate = fix(config.alarm_rate, 1e-300, d.alarm_rate).min(0.5);
        config.tail_fraction = fix(config.tail_fraction, 1e-9, d.tail_fraction).min(0.5);
        config.extreme_tolerance = fix(config.extreme_tolerance, 0.0, d.extreme_tolerance);
        config.surprise = fix(config.surprise, 1e-9, d.surprise);
        config.extreme_evidence = fix(config.extreme_evidence, 1e-9, d.extreme_evidence).min(1.0);
        config.short_window = config.short_window.clamp(1, SHORT_WINDOW_MAX);
        Self {
            variant: Variant::default(),
            second: None,
            second_kind: 0,
            step_spread: 0.0,
            short_spread: 0.0,
            last_value: 0.0,
            third: None,
            cu: [0.0; 3],
            memories: [0.0; 3],
            shape: None,
            change: None,
            wtails: None,
            buckets: [Bucket::default(); BUCKET_SLOTS],
            level_weight: 1.0 / config.level_horizon,
            history_weight: 1.0 / config.history_horizon,
            hist_weight: 1.0 / config.history_horizon,
            tail: Tail::new(config.short_window),
            config,
            seen: 0,
            level: 0.0,
            spread: 0.0,
            min: 0.0,
            max: 0.0,
            in_event: false,
            memory: 0.0,
            reported: 0.0,
            ranking: Ranking::OFF,
            prev: [0.0; 2],
            last: LastPoint::Nothing,
        }
    }

    /// A detector with these settings and the [`super::surprise::Surprise`] detector's changes.
    pub(crate) fn with_ranking(config: LikelihoodConfig, ranking: Ranking) -> Self {
        let mut d = Self::new(config);
        d.ranking = ranking;
        d.variant = Variant::from_env();
        let v = d.variant;
        if v.extreme_floor >= 1.0 {
            d.ranking.extreme_floor = 0.0;
        } else if v.extreme_floor > 0.0 {
            d.ranking.extreme_floor = v.extreme_floor.min(ECHO_CAP);
        }
        d.ranking.floor_spreads *= factor(v.s_floor);
        d.ranking.refractory_horizon *= factor(v.h_refr);
        d.config.tail_fraction = (d.config.tail_fraction * factor(v.h_tail)).min(0.5);
        d.history_weight /= factor(v.h_spread);
        d.hist_weight /= factor(v.h_hist);
        if v.win_fam > 0 {
            let w = d.config.short_window;
            let (lo, hi) = (Tail::new(w.saturating_sub(1).max(1)), Tail::new(w + 1));
            d.wtails = Some(Box::new([lo.clone(), hi.clone(), lo, hi]));
        }
        if v.cu_k > 0.0 {
            d.third = Some(Box::new(Tail::new(1)));
        }
        if v.taper > 0 {
            d.tail = Tail::with_taper(d.config.short_window, true);
        }
        if v.dd_m > 0 {
            let lags = if v.dd_l > 0 { v.dd_l as usize } else { 1_000 };
            let discord = Discord::new(
                v.dd_m as usize,
                lags,
                if v.dd_f > 0.0 { v.dd_f } else { 0.1 },
            );
            d.shape = Some(Box::new((discord, Tail::new(v.dd_w.max(1) as usize))));
        }
        if v.cp_h > 0.0 {
            let horizon = v.cp_h * d.ranking.refractory_horizon.max(1.0);
            let runs = if v.cp_r > 0 { v.cp_r as usize } else { 50 };
            let w = if v.cp_w > 0 {
                v.cp_w as usize
            } else {
                d.config.short_window
            };
            d.change = Some(Box::new((Changepoint::new(horizon, runs), Tail::new(w))));
        }
        d.second_kind = match v.second {
            0 if ranking.step_score => STEP_SCORE,
            u32::MAX => 0,
            n => n,
        };
        if d.second_kind > 0 {
            let window = if matches!(d.second_kind, 5 | 6) {
                1
            } else {
                d.config.short_window
            };
            d.second = Some(Tail::with_taper(window, v.taper > 0 && window > 1));
        }
        d
    }

    /// Its settings.
    pub fn config(&self) -> &LikelihoodConfig {
        &self.config
    }

    /// Raw scores kept (the ring of the short average): the only part of the state sized by a setting.
    pub fn ring_len(&self) -> usize {
        self.tail.ring.len()
    }

    /// The raw score of `value`: its distance from the level in spreads, squashed into 0..1; against the same hour
    /// of earlier days too once the profile knows it (the larger). Updates the hour's profile. Differences are taken
    /// halved so that values near ±f64::MAX cannot overflow.
    fn raw_score(&mut self, at: Timestamp, value: f64) -> Raw {
        let range = 2.0 * (self.max / 2.0 - self.min / 2.0);
        let distance = 2.0 * (value / 2.0 - self.level / 2.0).abs();
        // Rounding noise of the level (it converges to a flat value only to within an ulp) is not a move.
        let noise = 1e-12 * self.level.abs().max(value.abs());
        let spreads = if distance <= noise {
            0.0
        } else if self.spread > 0.0 {
            distance / self.spread
        } else {
            f64::INFINITY
        };
        let sq = self.squasher();
        let mut score = sq.of(spreads);
        let mut resid = value;
        let nb = match self.variant.buckets {
            0 => BUCKETS as u64,
            n => u64::from(n),
        };
        let hour = at / (US_PER_HOUR * 24 / nb);
        let day = hour / nb;
        let history_weight = self.history_weight;
        let bucket = (hour % nb) as usize;
        let b = &mut self.buckets[bucket];
        let bucket_distance = 2.0 * (value / 2.0 - b.mean / 2.0).abs();
        if b.days >= SEASON_DAYS_MIN {
            resid = value - b.mean;
            let bd = if bucket_distance <= 1e-12 * b.mean.abs().max(value.abs()) {
                0.0
            } else if self.variant.bucket_spread == 1 && b.spread.max(self.spread) > 0.0 {
                bucket_distance / b.spread.max(self.spread)
            } else if self.variant.bucket_spread == 2 && b.spread + self.spread > 0.0 {
                bucket_distance / (b.spread + self.spread)
            } else if b.spread > 0.0 {
                bucket_distance / b.spread
            } else {
                f64::INFINITY
            };
            score = score.max(sq.of(bd));
        }
        if b.seen == 0 || b.last_day != day {
            b.days = b.days.saturating_add(1);
            b.last_day = day;
        }
        b.seen = b.seen.saturating_add(1);
        if b.seen == 1 {
            b.mean = value;
        } else {
            let bw = Self::weight(b.seen - 1, nb as f64 * history_weight);
            b.spread += bw * (bucket_distance.min(f64::MAX) - b.spread);
            b.mean += bw * (value - b.mean);
        }
        Raw {
            resid,
            bucket,
            score,
            spreads,
            distance,
            range,
        }
    }

    /// Learns this point: spread, level (of the median of the last three), range; and the short average joins its
    /// distribution once the ring holds raw scores only.
    fn learn(&mut self, value: f64, distance: f64, avg: f64) {
        let w = Self::weight(self.seen - 1, self.history_weight);
        let lw = Self::weight(self.seen - 1, self.level_weight);
        let clipped = if self.variant.clip > 0.0 && self.spread > 0.0 && self.seen > 30 {
            distance.min(self.variant.clip * self.spread)
        } else {
            distance
        };
        if self.variant.rms > 0 {
            let sq = self.spread * self.spread;
            self.spread = (sq + w * (clipped.min(1e150).powi(2) - sq)).sqrt();
        } else {
            self.spread += w * (clipped.min(f64::MAX) - self.spread);
        }
        let [a, b] = self.prev;
        let median = a.max(b).min(value).max(a.min(b));
        self.prev = [b, value];
        self.level += lw * (median - self.level);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.tail.learn(avg, self.hist_weight);
    }

    /// The variant's second raw score of this point, through its own short average and tail: `ln P` (None without
    /// a second score).
    fn second_score(&mut self, value: f64, raw: &Raw) -> Option<f64> {
        let mut second = self.second.take()?;
        let w = Self::weight(self.seen - 1, self.history_weight);
        let sq = self.squasher();
        let (surprise, raw_log) = (self.config.surprise, self.ranking.raw_log);
        let r2 = match self.second_kind {
            STEP_SCORE => {
                let step = 2.0 * (value / 2.0 - self.last_value / 2.0).abs();
                let b = &mut self.buckets[raw.bucket];
                let spread = if b.days >= SEASON_DAYS_MIN {
                    b.step_spread.max(self.step_spread)
                } else {
                    self.step_spread
                };
                let back = (value - self.last_value) * (value - self.level) <= 0.0;
                let d = if step <= 1e-12 * value.abs().max(self.last_value.abs())
                    || (self.variant.step_away == 1 && back)
                {
                    0.0
                } else if spread > 0.0 {
                    step / spread
                        * if self.variant.step_away == 2 && back {
                            0.5
                        } else {
                            1.0
                        }
                } else {
                    f64::INFINITY
                };
                let bw = Self::weight(b.seen.max(1), BUCKETS as f64 * self.history_weight);
                b.step_spread += bw * (step.min(f64::MAX) - b.step_spread);
                self.step_spread += w * (step.min(f64::MAX) - self.step_spread);
                sq.of(d)
            }
            1 | 7 => {
                let cur = if self.second_kind == 7 {
                    raw.resid
                } else {
                    value
                };
                let step = 2.0 * (cur / 2.0 - self.last_value / 2.0).abs();
                let d = if step <= 1e-12 * cur.abs().max(self.last_value.abs()) {
                    0.0
                } else if self.step_spread > 0.0 {
                    step / self.step_spread
                } else {
                    f64::INFINITY
                };
                self.step_spread += w * (step.min(f64::MAX) - self.step_spread);
                sq.of(d)
            }
            4 | 6 => {
                let range = 2.0 * (self.max / 2.0 - self.min / 2.0);
                let beyond = (value - self.max).max(self.min - value).max(0.0);
                if beyond <= 0.0 {
                    0.0
                } else if range > 0.0 {
                    let e = beyond / range;
                    e / (e + self.config.extreme_tolerance)
                } else {
                    1.0
                }
            }
            5 => raw.score,
            _ => {
                let sw = 1.0 / self.config.short_window as f64;
                self.short_spread += sw * (raw.distance.min(f64::MAX) - self.short_spread);
                let d = if self.spread > 0.0 {
                    self.short_spread / self.spread
                } else if self.short_spread > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                };
                squash(d, surprise * self.variant.spread_units.max(0.01), raw_log)
            }
        };
        let avg = second.push(r2);
        let ln_p = tail_ln(
            &second,
            avg,
            self.config.tail_fraction,
            self.variant.tail_fam,
        );
        second.learn(avg, self.hist_weight);
        self.second = Some(second);
        let ln_p = self.window_family(2, r2, ln_p);
        Some(ln_p)
    }

    /// The `win_fam` variant: `ln_p` (of the short average over `w` points) joined with those over `w - 1` and
    /// `w + 1` (the tails `at` and `at + 1`), which learn this raw score.
    fn window_family(&mut self, at: usize, raw: f64, ln_p: f64) -> f64 {
        let Some(tails) = self.wtails.as_mut() else {
            return ln_p;
        };
        let mut all = [ln_p, 0.0, 0.0];
        for (k, t) in tails[at..at + 2].iter_mut().enumerate() {
            let avg = t.push(raw);
            all[k + 1] = t.ln_tail(avg, self.config.tail_fraction);
            t.learn(avg, self.hist_weight);
        }
        if self.variant.win_fam == 1 {
            all.iter().sum::<f64>() / 3.0
        } else {
            (all.iter().copied().fold(0.0, f64::min) + 3f64.ln()).min(0.0)
        }
    }

    /// The `cu_k` variant's CUSUM through its own tail: `ln P` (None without it).
    fn cusum_score(&mut self, value: f64) -> Option<f64> {
        let mut third = self.third.take()?;
        let v = self.variant;
        if self.seen == 2 {
            self.cu[0] = self.last_value;
        }
        let z = if self.spread > 0.0 {
            ((value - self.cu[0]) / self.spread).clamp(-self.config.surprise, self.config.surprise)
        } else {
            0.0
        };
        self.cu[1] = (self.cu[1] + z - v.cu_k).max(0.0);
        self.cu[2] = (self.cu[2] - z - v.cu_k).max(0.0);
        let horizon = self.ranking.refractory_horizon.max(1.0) * factor(v.cu_m);
        let mw = Self::weight(self.seen - 1, 1.0 / horizon);
        self.cu[0] += mw * (value - self.cu[0]);
        let c = self.cu[1].max(self.cu[2]);
        let h = if v.cu_h > 0.0 { v.cu_h } else { 8.0 };
        let avg = third.push(squash(c, h, self.ranking.raw_log));
        let ln_p = tail_ln(
            &third,
            avg,
            self.config.tail_fraction,
            self.variant.tail_fam,
        );
        third.learn(avg, self.hist_weight);
        self.third = Some(third);
        Some(ln_p)
    }

    /// The `dd_m` and `cp_h` variants' tails: the smaller `ln P` (0 without them, or before they score).
    fn shape_and_change(&mut self, value: f64) -> f64 {
        let (level, spread, w) = (self.level, self.spread, self.hist_weight);
        let fraction = self.config.tail_fraction;
        let mut ln_p: f64 = 0.0;
        if let Some(s) = self.shape.as_mut() {
            let (discord, tail) = &mut **s;
            if let Some(r) = discord.push(value, level, spread) {
                let avg = tail.push(r);
                ln_p = ln_p.min(tail.ln_tail(avg, fraction));
                tail.learn(avg, w);
            }
        }
        if let Some(c) = self.change.as_mut() {
            let (bocpd, tail) = &mut **c;
            if let Some(u) = bocpd.push(value, level, spread) {
                let u = u.max(0.0);
                let half = if self.variant.cp_s > 0.0 {
                    self.variant.cp_s
                } else {
                    8.0
                };
                let avg = tail.push(u / (u + half));
                ln_p = ln_p.min(tail.ln_tail(avg, fraction));
                tail.learn(avg, w);
            }
        }
        ln_p
    }

    /// A new extreme needs less evidence: `extreme_evidence` of the log-probability of an alarm (none beyond a
    /// range of zero width: a flat metric that moves). It is ranked above ordinary points by how far beyond the
    /// tolerance it lies, never alarming by that alone.
    fn extreme_score(&self, beyond: f64, range: f64, extreme: bool, likelihood_score: f64) -> f64 {
        let e = if range > 0.0 {
            beyond / range - self.config.extreme_tolerance
        } else {
            f64::INFINITY
        };
        let needed = if e.is_finite() && e < self.ranking.leap {
            self.config.extreme_evidence
        } else {
            0.0
        };
        let evidence = if !extreme {
            0.0
        } else if needed > 0.0 {
            clean_score(likelihood_score / needed)
        } else {
            1.0
        };
        let floor = self.ranking.extreme_floor;
        let ranked = if floor > 0.0 && e.is_finite() {
            floor + (ECHO_CAP - floor) * e / (e + self.config.extreme_tolerance)
        } else {
            0.0
        };
        evidence.max(ranked)
    }

    /// One alarm per event: the score reported and whether it was held back. With a refractory horizon
    /// (threshold-free), a point scores only above the faded memory of the scores before it (raised by the margin
    /// after a report), or when it is the event's first alarm, so the engine's cut-off is crossed once; without,
    /// scores after the event's first alarm are capped until it calms.
    fn one_alarm_per_event(&mut self, uncapped: f64) -> (f64, bool) {
        let horizon = self.ranking.refractory_horizon;
        if horizon > 0.0 && self.variant.refr_fam > 0.0 {
            let k = self.variant.refr_fam;
            let before = self.memories.iter().sum::<f64>() / 3.0;
            let first_alarm = uncapped >= ALARM && self.reported < ALARM;
            for (m, h) in self
                .memories
                .iter_mut()
                .zip([horizon / k, horizon, horizon * k])
            {
                *m = (*m * (1.0 - 1.0 / h.max(1.0))).max(uncapped);
            }
            self.reported *= 1.0 - 1.0 / horizon.max(1.0);
            if uncapped > before || first_alarm {
                self.memories = [uncapped + self.ranking.refractory_margin * (1.0 - uncapped); 3];
                self.reported = uncapped;
                (uncapped, false)
            } else {
                (0.0, uncapped > 0.0)
            }
        } else if horizon > 0.0 {
            let fade = 1.0 - 1.0 / horizon.max(1.0);
            let before = self.memory;
            let first_alarm = uncapped >= ALARM && self.reported < ALARM;
            self.memory = (before * fade).max(uncapped);
            self.reported *= fade;
            if uncapped > before || first_alarm {
                self.memory = uncapped + self.ranking.refractory_margin * (1.0 - uncapped);
                self.reported = uncapped;
                (uncapped, false)
            } else {
                (0.0, uncapped > 0.0)
            }
        } else if uncapped >= ALARM {
            if self.in_event {
                (uncapped.min(ECHO_CAP), true)
            } else {
                self.in_event = true;
                (uncapped, false)
            }
        } else {
            if uncapped < CALM {
                self.in_event = false;
            }
            (uncapped, false)
        }
    }

    /// The raw scores' squashing (the variant's `s_raw` and `fam_s`).
    fn squasher(&self) -> Squasher {
        Squasher {
            surprise: self.config.surprise * factor(self.variant.s_raw),
            raw_log: self.ranking.raw_log,
            family: self.variant.fam_s,
        }
    }

    /// A weight that averages the first `n` samples equally, then forgets with `floor`.
    fn weight(n: u64, floor: f64) -> f64 {
        (1.0 / n.max(1) as f64).max(floor)
    }
}

/// A point's raw score and what it was measured from.
struct Raw {
    /// The value less the hour's profile once the profile judges, else the value.
    resid: f64,
    /// The profile's bucket of this point.
    bucket: usize,
    /// Squashed into 0..1.
    score: f64,
    /// Distance from the level in spreads (infinite when the spread is 0 and the point moved).
    spreads: f64,
    /// Distance from the level.
    distance: f64,
    /// The range (max − min) before this point.
    range: f64,
}

/// `ln P` of `avg` under `tail` (the mean over the `tail_fam` variant's family of tail fractions).
fn tail_ln(tail: &Tail, avg: f64, tail_fraction: f64, family: f64) -> f64 {
    if family > 0.0 {
        [
            tail_fraction / family,
            tail_fraction,
            (tail_fraction * family).min(0.5),
        ]
        .iter()
        .map(|&f| tail.ln_tail(avg, f))
        .sum::<f64>()
            / 3.0
    } else {
        tail.ln_tail(avg, tail_fraction)
    }
}

/// How a distance in spreads becomes a raw score: [`squash`] at `surprise`, or over a family of values of it.
#[derive(Clone, Copy)]
struct Squasher {
    surprise: f64,
    raw_log: f64,
    family: f64,
}

impl Squasher {
    fn of(self, d: f64) -> f64 {
        let (s, k) = (self.surprise, self.family);
        if k > 0.0 {
            (squash(d, s / k, self.raw_log)
                + squash(d, s, self.raw_log)
                + squash(d, s * k, self.raw_log))
                / 3.0
        } else {
            squash(d, s, self.raw_log)
        }
    }
}

/// A distance in spreads squashed into 0..1: (d/surprise)^RAW_POWER as q/(1+q), or logarithmically with `raw_log`.
fn squash(d: f64, surprise: f64, raw_log: f64) -> f64 {
    if !d.is_finite() {
        return 1.0;
    }
    let q = (d / surprise).powi(RAW_POWER);
    if !q.is_finite() {
        1.0
    } else if raw_log > 0.0 {
        let l = q.ln_1p();
        l / (l + raw_log)
    } else {
        q / (1.0 + q)
    }
}

impl Default for Likelihood {
    fn default() -> Self {
        Self::new(LikelihoodConfig::default())
    }
}

impl Detector for Likelihood {
    fn name(&self) -> &str {
        "likelihood"
    }

    fn update(&mut self, at: Timestamp, value: f64) -> f64 {
        if !value.is_finite() {
            self.last = LastPoint::NonFinite;
            return 0.0;
        }
        if self.seen == 0 {
            self.seen = 1;
            self.level = value;
            self.min = value;
            self.max = value;
            self.prev = [value; 2];
            self.last_value = value;
            self.last = LastPoint::Warming { seen: 1 };
            return 0.0;
        }
        self.seen = self.seen.saturating_add(1);
        // 1. Raw score against the level and spread (and the hour's profile) before this point.
        let raw = self.raw_score(at, value);
        // 3. New extreme, against the range before this point.
        let beyond = (value - self.max).max(self.min - value).max(0.0);
        let novel = beyond > 0.0 && beyond > self.config.extreme_tolerance * raw.range;
        let extreme = novel && raw.spreads >= self.config.surprise * factor(self.variant.s_gate);
        let floored = novel && raw.spreads >= self.ranking.floor_spreads;
        // 2. The short average against its running distribution (before this point).
        let avg = self.tail.push(raw.score);
        let mut ln_p = tail_ln(
            &self.tail,
            avg,
            self.config.tail_fraction,
            self.variant.tail_fam,
        );
        ln_p = self.window_family(0, raw.score, ln_p);
        if let Some(ln_p2) = self.second_score(value, &raw) {
            let own = if self.second_kind == STEP_SCORE { 2 } else { 0 };
            ln_p = match self.variant.combine.unwrap_or(own) {
                0 => (ln_p.min(ln_p2) + std::f64::consts::LN_2).min(0.0),
                1 => {
                    let s = ln_p + ln_p2;
                    (s + (1.0 - s).ln()).min(0.0)
                }
                _ => ln_p.min(ln_p2),
            };
        }
        if let Some(ln_p3) = self.cusum_score(value) {
            ln_p = ln_p.min(ln_p3);
        }
        ln_p = ln_p.min((self.shape_and_change(value) + self.variant.x_pen).min(0.0));
        self.last_value = if self.second_kind == 7 {
            raw.resid
        } else {
            value
        };
        self.learn(value, raw.distance, avg);
        if self.seen <= self.config.warm_up as u64 {
            self.last = LastPoint::Warming { seen: self.seen };
            return 0.0;
        }
        let likelihood_score = if ln_p < 0.0 {
            clean_score(ALARM * ln_p / self.config.alarm_rate.ln())
        } else {
            0.0
        };
        let extreme_score = if extreme || floored {
            self.extreme_score(beyond, raw.range, extreme, likelihood_score)
        } else {
            0.0
        };
        // 4. One alarm per event.
        let (score, capped) = self.one_alarm_per_event(likelihood_score.max(extreme_score));
        self.last = LastPoint::Scored {
            value,
            level: self.level,
            spread: self.spread,
            raw: raw.score,
            avg,
            ln_p,
            likelihood_score,
            extreme: extreme || (floored && self.ranking.extreme_floor > 0.0),
            capped,
            score,
        };
        score
    }

    fn judged(&self) -> bool {
        matches!(self.last, LastPoint::Scored { .. })
    }

    fn explain(&self) -> String {
        match self.last {
            LastPoint::Nothing => "likelihood: no points seen yet".to_string(),
            LastPoint::NonFinite => {
                "likelihood: last value was not finite; scored 0, baseline unchanged".to_string()
            }
            LastPoint::Warming { seen } => format!(
                "likelihood: warming up ({seen}/{} points); scored 0",
                self.config.warm_up
            ),
            LastPoint::Scored {
                value,
                level,
                spread,
                raw,
                avg,
                ln_p,
                likelihood_score,
                extreme,
                capped,
                score,
            } => {
                let mut s = format!(
                    "likelihood: value {value:.6} vs level {level:.6}, spread {spread:.6} (raw score {raw:.3}); the \
                     last {} raw scores average {avg:.3}, an average this high has probability {:.3e} per point \
                     (alarm at {:.1e}; score {likelihood_score:.3})",
                    self.config.short_window,
                    ln_p.exp(),
                    self.config.alarm_rate
                );
                if extreme {
                    s.push_str(&format!(
                        "; a new extreme beyond the range seen [{:.6}, {:.6}] by more than {}% of it",
                        self.min,
                        self.max,
                        self.config.extreme_tolerance * 100.0
                    ));
                }
                if capped && self.ranking.refractory_horizon > 0.0 {
                    s.push_str(
                        "; suppressed: not above the fading memory of an earlier, higher score",
                    );
                } else if capped {
                    s.push_str("; capped: the same event already raised an alarm");
                }
                s.push_str(&format!("; score {score:.3}"));
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let bad = |json: &str| {
            let likelihood: LikelihoodConfig = serde_json::from_str(json).unwrap();
            crate::detect::CompositeConfig {
                likelihood,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
        };
        assert!(
            bad(r#"{"alarm_rate": 0}"#).starts_with("engine.composite.likelihood.alarm_rate = 0")
        );
        assert!(
            bad(r#"{"tail_fraction": 0.9}"#)
                .starts_with("engine.composite.likelihood.tail_fraction = 0.9")
        );
        assert!(
            bad(r#"{"short_window": 0}"#)
                .starts_with("engine.composite.likelihood.short_window = 0")
        );
        assert!(
            bad(r#"{"surprise": -1}"#).starts_with("engine.composite.likelihood.surprise = -1")
        );
        LikelihoodConfig::default()
            .validate("composite.likelihood.")
            .unwrap();
    }

    #[test]
    fn a_tapered_short_average_is_the_mean_of_the_averages_over_three_windows() {
        let mut t = Tail::with_taper(3, true);
        let mut plain = Tail::new(3);
        let raws = [0.9, 0.1, 0.2, 0.3, 0.6, 0.0];
        let (mut tapered, mut avg) = (0.0, 0.0);
        for r in raws {
            tapered = t.push(r);
            avg = plain.push(r);
        }
        // The averages of the last 2, 3 and 4 raw scores: 0.3, 0.3, 0.275.
        let want = (0.6 / 2.0 + 0.9 / 3.0 + 1.1 / 4.0) / 3.0;
        assert!((tapered - want).abs() < 1e-12, "{tapered} vs {want}");
        assert!((avg - 0.3).abs() < 1e-12, "{avg}");
        assert_eq!(t.ring.len(), 4);
    }

    #[test]
    fn upper_tail_matches_known_values() {
        for (z, q) in [
            (0.0, 0.5),
            (1.0, 0.158_655_25),
            (3.0, 1.349_898e-3),
            (5.0, 2.866_516e-7),
            (10.0, 7.619_853e-24),
            (-1.0, 0.841_344_75),
        ] {
            let got = ln_upper_tail(z).exp();
            assert!((got / q - 1.0).abs() < 1e-5, "Q({z}) = {got} vs {q}");
        }
    }

    #[test]
    fn a_spike_in_noise_alarms_once_and_the_noise_does_not() {
        let mut d = Likelihood::default();
        let noise = |i: u64| ((i as f64 * 12.9898).sin() * 43_758.545_3).fract();
        for i in 0..2_000 {
            let s = d.update(i, 10.0 + noise(i));
            assert!(s < ALARM, "noise at {i} scored {s}: {}", d.explain());
        }
        let s = d.update(2_000, 30.0);
        assert!(s >= ALARM, "{s}: {}", d.explain());
        assert!(d.explain().contains("new extreme"), "{}", d.explain());
        let echoes = (2_001..2_003)
            .map(|i| d.update(i, 30.0))
            .filter(|&s| s >= ALARM)
            .count();
        assert_eq!(echoes, 0, "one alarm per event");
    }

    #[test]
    fn flat_then_a_move_alarms_and_non_finite_is_ignored() {
        let mut d = Likelihood::default();
        for i in 0..500 {
            assert_eq!(d.update(i, 45.0), 0.0);
        }
        assert_eq!(d.update(500, f64::NAN), 0.0);
        assert!(d.update(501, 46.0) >= ALARM, "{}", d.explain());
        let mut d = Likelihood::default();
        for i in 0..400 {
            let v = if i % 2 == 0 { f64::MAX } else { -f64::MAX };
            assert!((0.0..=1.0).contains(&d.update(i, v)));
        }
    }
}
