//! Numeric helpers shared by the detectors: a rolling window that keeps its values both in arrival order and
//! sorted (so median, quantiles, mean and spread are cheap), spread floors that keep flat data from dividing by
//! zero, and the mapping from a deviation to a score in [0, 1].
//!
//! Written by hand: the detectors need overflow-safe statistics on values as large as ±1e300, which the statistics
//! crates do not promise.

use std::collections::VecDeque;

/// The smallest spread a detector divides by, relative to the size of the centre it is measured around. On flat
/// data the spread is 0; dividing by this floor instead makes any jump score high and no change score 0.
pub const SPREAD_FLOOR_RELATIVE: f64 = 1e-9;
/// The smallest spread in absolute units (for flat data around 0).
pub const SPREAD_FLOOR_ABSOLUTE: f64 = 1e-12;

/// The spread to divide by: `spread`, but never below the floors around `centre`.
pub fn floored_spread(spread: f64, centre: f64) -> f64 {
    let floor = (SPREAD_FLOOR_RELATIVE * centre.abs()).max(SPREAD_FLOOR_ABSOLUTE);
    if spread.is_finite() {
        spread.max(floor)
    } else {
        f64::MAX
    }
}

/// `|value - centre| / spread`, overflow-safe: an infinite difference gives +inf, never NaN.
pub fn deviation(value: f64, centre: f64, spread: f64) -> f64 {
    let d = (value - centre).abs() / spread;
    if d.is_nan() { 0.0 } else { d }
}

/// Maps a deviation (in units of spread) to a score: 0 up to `threshold`, then `e / (e + scale)` where
/// `e = d - threshold` — 0.5 at `scale` past the threshold, 0.9 at 9 × `scale`, 0.99 at 99 × `scale`. It stays graded
/// far out (an exponential would pin every large deviation at 1.0, leaving no room to rank them). NaN maps to 0,
/// +inf to 1.
pub fn deviation_score(d: f64, threshold: f64, scale: f64) -> f64 {
    if d.is_nan() || d <= threshold {
        return 0.0;
    }
    if d == f64::INFINITY {
        return 1.0;
    }
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let e = d - threshold;
    clean_score(e / (e + scale))
}

/// MAD × this estimates the standard deviation of Gaussian data.
pub const MAD_TO_STD: f64 = 1.4826;
/// Mean absolute deviation × this estimates the standard deviation of Gaussian data (√(π/2)).
pub const MEAN_ABS_DEV_TO_STD: f64 = 1.2533;

/// A score forced into [0, 1]; NaN becomes 0.
pub fn clean_score(s: f64) -> f64 {
    if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) }
}

/// A rolling window of the last `capacity` finite values, in arrival order and sorted.
#[derive(Debug, Clone)]
pub struct RollingWindow {
    capacity: usize,
    ring: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl RollingWindow {
    /// An empty window holding at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            ring: VecDeque::with_capacity(capacity),
            sorted: Vec::with_capacity(capacity),
        }
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Whether it holds `capacity` values.
    pub fn is_full(&self) -> bool {
        self.ring.len() == self.capacity
    }

    /// Adds a finite value, evicting the oldest when full. Non-finite values are ignored.
    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if self.ring.len() == self.capacity
            && let Some(old) = self.ring.pop_front()
        {
            let i = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
            if i < self.sorted.len() {
                self.sorted.remove(i);
            }
        }
        self.ring.push_back(value);
        let i = self.sorted.partition_point(|v| v.total_cmp(&value).is_le());
        self.sorted.insert(i, value);
    }

    /// The values in arrival order, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        self.ring.iter().copied()
    }

    /// The newest value.
    pub fn last(&self) -> Option<f64> {
        self.ring.back().copied()
    }

    /// The `q` quantile (0 ≤ q ≤ 1) by linear interpolation; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        let n = self.sorted.len();
        if n == 0 {
            return 0.0;
        }
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        let frac = pos - lo as f64;
        let (a, b) = (self.sorted[lo], self.sorted[hi.min(n - 1)]);
        // a + frac * (b - a) overflows for a, b of opposite sign near f64::MAX; this form does not.
        a * (1.0 - frac) + b * frac
    }

    /// The median; 0 when empty.
    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    /// The median absolute deviation from `centre`. O(n log n); only called once per point.
    pub fn mad(&self, centre: f64, scratch: &mut Vec<f64>) -> f64 {
        scratch.clear();
        scratch.extend(self.sorted.iter().map(|v| (v - centre).abs()));
        if scratch.is_empty() {
            return 0.0;
        }
        let mid = scratch.len() / 2;
        let (_, m, _) = scratch.select_nth_unstable_by(mid, f64::total_cmp);
        let upper = *m;
        if scratch.len() % 2 == 1 {
            upper
        } else {
            let lower = scratch[..mid].iter().copied().fold(f64::MIN, f64::max);
            lower / 2.0 + upper / 2.0
        }
    }

    /// The mean absolute deviation from `centre`; 0 when empty.
    pub fn mean_abs_dev(&self, centre: f64) -> f64 {
        let n = self.ring.len();
        if n == 0 {
            return 0.0;
        }
        let inv = 1.0 / n as f64;
        self.ring.iter().map(|v| (v - centre).abs() * inv).sum()
    }

    /// A robust estimate of the standard deviation around `centre`: the scaled MAD, or, when more than half of
    /// the values sit exactly at the centre (quantised or mostly flat data, where the MAD is 0), the scaled mean
    /// absolute deviation, so that the rare values off the centre are not infinitely surprising.
    pub fn robust_std(&self, centre: f64, scratch: &mut Vec<f64>) -> f64 {
        let mad = self.mad(centre, scratch) * MAD_TO_STD;
        if mad > 0.0 {
            mad
        } else {
            self.mean_abs_dev(centre) * MEAN_ABS_DEV_TO_STD
        }
    }

    /// The mean, computed so that it cannot overflow for finite values; 0 when empty.
    pub fn mean(&self) -> f64 {
        let n = self.ring.len();
        if n == 0 {
            return 0.0;
        }
        let inv = 1.0 / n as f64;
        self.ring.iter().map(|v| v * inv).sum()
    }

    /// The population standard deviation around `mean`, overflow-safe (scaled by the largest deviation).
    pub fn std(&self, mean: f64) -> f64 {
        let n = self.ring.len();
        if n == 0 {
            return 0.0;
        }
        let scale = self
            .ring
            .iter()
            .map(|v| (v - mean).abs())
            .fold(0.0_f64, f64::max);
        if scale == 0.0 || !scale.is_finite() {
            return if scale.is_finite() { 0.0 } else { f64::MAX };
        }
        let sum: f64 = self
            .ring
            .iter()
            .map(|v| {
                let d = (v - mean) / scale;
                d * d
            })
            .sum();
        scale * (sum / n as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_last_values_sorted_and_in_order() {
        let mut w = RollingWindow::new(3);
        for v in [5.0, 1.0, 3.0, 2.0] {
            w.push(v);
        }
        assert_eq!(w.iter().collect::<Vec<_>>(), vec![1.0, 3.0, 2.0]);
        assert_eq!(w.median(), 2.0);
        assert_eq!(w.quantile(0.0), 1.0);
        assert_eq!(w.quantile(1.0), 3.0);
        assert_eq!(w.quantile(0.25), 1.5);
        w.push(f64::NAN);
        assert_eq!(w.len(), 3, "non-finite values are ignored");
    }

    #[test]
    fn mean_std_and_mad_are_right_and_overflow_safe() {
        let mut w = RollingWindow::new(10);
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            w.push(v);
        }
        assert_eq!(w.mean(), 5.0);
        assert!((w.std(5.0) - 2.0).abs() < 1e-12);
        let mut scratch = Vec::new();
        assert_eq!(w.mad(w.median(), &mut scratch), 0.5);

        let mut big = RollingWindow::new(4);
        for v in [1e300, -1e300, 1.7e308, -1.7e308] {
            big.push(v);
        }
        let m = big.mean();
        assert!(m.is_finite());
        let s = big.std(m);
        assert!(s.is_finite() && s > 1e307, "std {s}");
        assert!(big.median().is_finite());
    }

    #[test]
    fn scores_are_bounded_and_monotone() {
        assert_eq!(deviation_score(1.0, 2.0, 3.0), 0.0);
        assert_eq!(deviation_score(f64::NAN, 2.0, 3.0), 0.0);
        assert_eq!(deviation_score(f64::INFINITY, 2.0, 3.0), 1.0);
        let a = deviation_score(4.0, 2.0, 3.0);
        let b = deviation_score(8.0, 2.0, 3.0);
        assert!(0.0 < a && a < b && b < 1.0);
        assert_eq!(deviation(f64::INFINITY, f64::INFINITY, 1.0), 0.0);
        assert!(floored_spread(0.0, 0.0) > 0.0);
    }
}
