//! Shape evidence for the surprise detector (the `dd_m` experiment, [`super::likelihood`]'s `Variant`): how unlike
//! every earlier stretch of a bounded recent history the last `m` points are, in shape alone.
//!
//! The score is the distance of the last `m` points, each window z-normalised (its own mean removed, divided by its
//! own spread), to their nearest neighbour among the windows that end `m` to `lags` points earlier (the
//! matrix-profile "discord" of Yeh, Keogh et al., restricted to a causal, bounded left history as in DAMP). A
//! window overlapping the current one is excluded (it matches itself trivially).
//!
//! **Why it transfers.** It has no notion of a level or of a scale: z-normalisation makes it invariant to both, and
//! the nearest neighbour makes it invariant to what a healthy series looks like — a daily cycle, a sawtooth, a
//! square wave, bursts that recur — as long as it has happened before within the history. What it sees is what the
//! level and step scores cannot: a stretch that stays within the range and takes no large step, but has a shape not
//! seen before (a lost or changed periodicity, a wave that flattens, a new pattern of bursts). It carries no tuned
//! threshold: its values go through the detector's own running distribution and fitted tail, like the other scores.
//!
//! A window of nearly constant values would be all rounding noise once divided by its own spread; its spread is
//! floored at `floor` × the detector's running spread (a scale of the series, so the score stays scale invariant):
//! a flat window then matches a flat window, and a flat window among noisy ones is a change of shape.
//!
//! Cost and state: the dot products of the current window with each candidate are kept per lag and moved along by
//! one point in O(1) each (the matrix profile's diagonal recurrence), so a point costs O(`lags`) multiply-adds;
//! values are stored relative to an anchor moved to the detector's level once per `lags` points (then every sum is
//! recomputed, O(`lags` × `m`), so rounding cannot drift and a wandering series loses no precision). State: rings of
//! `lags + m + 1` values, window sums and window summaries (six numbers a slot) and `lags` dot products, bounded
//! however long the stream runs.

/// One window's summary, as of the point it ended.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    /// Mean of the anchored values.
    mean: f64,
    /// `var / (var + floor²)`: the squared norm of the z-normalised window, divided by `m`.
    norm: f64,
    /// `1 / sqrt(var + floor²)`.
    inv_spread: f64,
}

/// The nearest-neighbour distance of the last `m` points among the windows ending `m..=lags` points before.
#[derive(Debug, Clone)]
pub(crate) struct Discord {
    m: usize,
    lags: usize,
    floor: f64,
    /// Anchored values, by absolute index modulo the capacity.
    y: Vec<f64>,
    /// Sums of the anchored values and their squares over the window ending at each index.
    s1: Vec<f64>,
    s2: Vec<f64>,
    windows: Vec<Window>,
    /// `dots[k]`: the dot product of the window ending now with the one ending `k` points before.
    dots: Vec<f64>,
    /// Points pushed.
    t: usize,
    anchor: f64,
    since_anchor: usize,
}

impl Discord {
    /// Windows of `m` points (at least 2), candidates ending up to `lags` points before (at least `m`), spreads floored
    /// at `floor` running spreads.
    pub(crate) fn new(m: usize, lags: usize, floor: f64) -> Self {
        let m = m.max(2);
        let lags = lags.max(m);
        let cap = lags + m + 1;
        Self {
            m,
            lags,
            floor: floor.max(0.0),
            y: vec![0.0; cap],
            s1: vec![0.0; cap],
            s2: vec![0.0; cap],
            windows: vec![Window::default(); cap],
            dots: vec![0.0; lags + 1],
            t: 0,
            anchor: 0.0,
            since_anchor: 0,
        }
    }

    /// The anchored value at absolute index `i` (0 before the stream began).
    fn at(&self, i: isize) -> f64 {
        if i < 0 {
            0.0
        } else {
            self.y[i as usize % self.y.len()]
        }
    }

    /// Takes the next value; `level` and `spread` are the detector's before it. Returns the nearest neighbour's
    /// distance as `d² / 4m` in `[0, 1]` (0 the same shape, 0.5 uncorrelated, 1 the opposite), None until a
    /// candidate exists.
    pub(crate) fn push(&mut self, value: f64, level: f64, spread: f64) -> Option<f64> {
        if self.t == 0 {
            self.anchor = value;
        }
        let cap = self.y.len();
        let t = self.t as isize;
        let y = value - self.anchor;
        let (m, mi) = (self.m, self.m as isize);
        self.y[self.t % cap] = y;
        let out = self.at(t - mi);
        self.s1[self.t % cap] = self.s1_at(t - 1) + y - out;
        self.s2[self.t % cap] = self.s2_at(t - 1) + y * y - out * out;
        if self.t >= self.lags + m {
            // Every candidate's points are stored: walk the ring backwards without a division per lag.
            let (mut near, mut far) = ((self.t - m) % cap, (self.t - 2 * m) % cap);
            for dot in &mut self.dots[m..=self.lags] {
                *dot += y * self.y[near] - out * self.y[far];
                near = near.checked_sub(1).unwrap_or(cap - 1);
                far = far.checked_sub(1).unwrap_or(cap - 1);
            }
        } else {
            for k in m..=self.lags {
                let ki = k as isize;
                self.dots[k] += y * self.at(t - ki) - out * self.at(t - ki - mi);
            }
        }
        self.t += 1;
        self.since_anchor += 1;
        if self.since_anchor >= self.lags && spread.is_finite() {
            self.rebuild(level);
        }
        self.windows[(self.t - 1) % cap] = self.summary(t, spread);
        self.nearest(t)
    }

    fn s1_at(&self, i: isize) -> f64 {
        if i < 0 {
            0.0
        } else {
            self.s1[i as usize % self.y.len()]
        }
    }

    fn s2_at(&self, i: isize) -> f64 {
        if i < 0 {
            0.0
        } else {
            self.s2[i as usize % self.y.len()]
        }
    }

    /// The window ending at `i`, its spread floored at `floor × spread`.
    fn summary(&self, i: isize, spread: f64) -> Window {
        let m = self.m as f64;
        let mean = self.s1_at(i) / m;
        let var = (self.s2_at(i) / m - mean * mean).max(0.0);
        let f2 = (self.floor * spread).powi(2);
        let denom = var + if f2.is_finite() { f2 } else { 0.0 };
        if denom > 0.0 && denom.is_finite() {
            Window {
                mean,
                norm: var / denom,
                inv_spread: 1.0 / denom.sqrt(),
            }
        } else {
            Window::default()
        }
    }

    /// The smallest `d² / 4m` over the candidates of the window ending at `t`.
    fn nearest(&self, t: isize) -> Option<f64> {
        let (m, cap) = (self.m as isize, self.y.len());
        if t < 2 * m - 1 {
            return None;
        }
        let a = self.windows[t as usize % cap];
        let last = (self.lags as isize).min(t - (m - 1));
        let mut best = f64::INFINITY;
        let mut at = (t - m) as usize % cap;
        let inv_m = 1.0 / m as f64;
        for &dot in &self.dots[m as usize..=last as usize] {
            let b = self.windows[at];
            let cov = dot * inv_m - a.mean * b.mean;
            let d2 = a.norm + b.norm - 2.0 * cov * a.inv_spread * b.inv_spread;
            best = best.min(d2);
            at = at.checked_sub(1).unwrap_or(cap - 1);
        }
        best.is_finite().then(|| (best / 4.0).clamp(0.0, 1.0))
    }

    /// Moves the anchor to `level` and recomputes every stored sum from the stored values.
    fn rebuild(&mut self, level: f64) {
        let cap = self.y.len();
        let delta = level - self.anchor;
        if !delta.is_finite() {
            return;
        }
        self.anchor = level;
        self.since_anchor = 0;
        let t = self.t as isize;
        let first = (t - cap as isize).max(0);
        for i in first..t {
            self.y[i as usize % cap] -= delta;
        }
        let m = self.m as isize;
        // Window sums: every window whose points are all still stored.
        for i in (first + m - 1).max(0)..t {
            let (mut a, mut b) = (0.0, 0.0);
            for j in i - m + 1..=i {
                let v = self.at(j);
                a += v;
                b += v * v;
            }
            self.s1[i as usize % cap] = a;
            self.s2[i as usize % cap] = b;
            let w = &mut self.windows[i as usize % cap];
            w.mean -= delta;
        }
        let now = t - 1;
        for k in self.m..=self.lags {
            let ki = k as isize;
            self.dots[k] = (0..m)
                .map(|i| self.at(now - i) * self.at(now - ki - i))
                .sum();
        }
    }

    /// Numbers held (a window summary is three): bounded by the settings.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.y.len() + self.s1.len() + self.s2.len() + 3 * self.windows.len() + self.dots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: usize) -> f64 {
        ((i as f64 * 12.9898).sin() * 43_758.545_3).fract() - 0.5
    }

    /// The recurrence agrees with the direct computation, through several re-anchorings of a wandering series.
    #[test]
    fn the_running_distance_is_the_direct_one() {
        let (m, lags) = (8, 50);
        let mut d = Discord::new(m, lags, 0.0);
        let values: Vec<f64> = (0..400).map(|i| 1e3 + i as f64 * 0.7 + noise(i)).collect();
        for (t, &v) in values.iter().enumerate() {
            let got = d.push(v, v, 1.0);
            if t + 1 < 2 * m {
                assert!(got.is_none());
                continue;
            }
            let z = |end: usize| {
                let w = &values[end + 1 - m..=end];
                let mean = w.iter().sum::<f64>() / m as f64;
                let sd = (w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / m as f64).sqrt();
                w.iter().map(|x| (x - mean) / sd).collect::<Vec<_>>()
            };
            let a = z(t);
            let want = (m..=lags.min(t + 1 - m))
                .map(|k| {
                    let b = z(t - k);
                    a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
                / (4.0 * m as f64);
            let got = got.unwrap();
            assert!((got - want).abs() < 1e-9, "at {t}: {got} vs {want}");
        }
        assert_eq!(d.held(), 6 * (lags + m + 1) + lags + 1);
    }

    /// A periodic series repeats its shapes: near 0; the same period with one cycle's shape changed (within the
    /// range, no larger step) stands out; multiplying by 10 and adding 1000 changes nothing.
    #[test]
    fn a_changed_shape_within_the_range_stands_out_of_a_repeating_one() {
        let wave = |i: usize| (i as f64 * std::f64::consts::TAU / 40.0).sin() + 0.01 * noise(i);
        let run = |scale: f64, offset: f64| {
            let mut d = Discord::new(10, 200, 0.1);
            let mut out = Vec::new();
            for i in 0..1_000 {
                // One cycle turned into a triangle of the same range.
                let v = if (800..840).contains(&i) {
                    let p = (i - 800) as f64 / 40.0;
                    1.0 - 4.0 * (p - 0.5).abs()
                } else {
                    wave(i)
                };
                out.push(
                    d.push(offset + scale * v, offset, scale * 0.6)
                        .unwrap_or(0.0),
                );
            }
            out
        };
        let plain = run(1.0, 0.0);
        let usual = plain[300..800].iter().cloned().fold(0.0, f64::max);
        let changed = plain[800..850].iter().cloned().fold(0.0, f64::max);
        assert!(usual < 0.01, "{usual}");
        assert!(changed > 5.0 * usual, "{changed} vs {usual}");
        let moved = run(10.0, 1_000.0);
        for (a, b) in plain.iter().zip(&moved) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
