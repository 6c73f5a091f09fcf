//! Change-point evidence for the surprise detector (the `cp_h` experiment, [`super::likelihood`]'s `Variant`): the
//! predictive surprise of Bayesian online change-point detection (Adams & MacKay, 2007).
//!
//! The series is taken as a sequence of runs, each Gaussian with an unknown mean and variance (a Normal-Gamma prior,
//! so each run's predictive is a Student t), separated by change points arriving at a constant hazard `1 / horizon`.
//! After each point the distribution of the current run's length is updated exactly (up to pruning); the evidence
//! is the predictive surprise `-ln p(x_t | x_1..x_{t-1})`, the mixture of every run's Student t weighted by the
//! probability of that run length, measured in units of the detector's running spread.
//!
//! **Why it transfers.** Nothing in it is fitted to a data set: the model (runs of a Gaussian of unknown mean and
//! variance) and its prior are the textbook's, scaled by the series' own level and spread; the hazard is a horizon
//! tied to the detector's own. Unlike a distance from one level, the mixture knows how sure it is: after a change it
//! still gives weight to short runs, so a new regime is absorbed at the speed the evidence allows and the point
//! after it is not surprising again; a change of variance alone (a quiet series turning noisy, or the reverse) moves
//! the predictive, which a distance from the level measured in a slowly learned spread sees late. Its values go
//! through the detector's running distribution and fitted tail like the other scores, so it needs no threshold.
//!
//! Scale and offset invariance: a run's prior is centred on the detector's level with a variance of the running
//! spread squared, and the surprise is of the value divided by the spread, so multiplying the series by a factor and
//! adding an offset gives the same surprises up to rounding. Cost and state: at most `max_runs` runs are kept (the
//! least probable dropped, and any below [`PRUNE`]), a run's counts stop growing at `horizon` × [`MEMORY`] points
//! (older points are forgotten geometrically), so a point costs O(`max_runs`) and the state is bounded.

/// Runs less probable than this are dropped.
pub const PRUNE: f64 = 1e-6;
/// A run's counts stop growing at this many hazard horizons: beyond, its oldest points are forgotten geometrically.
pub const MEMORY: f64 = 10.0;
/// The prior's pseudo-counts: the mean's and the precision's (a Normal-Gamma with `kappa0`, `alpha0`).
const KAPPA0: f64 = 1.0;
const ALPHA0: f64 = 1.0;

/// One run length's posterior: the probability of that run and its Normal-Gamma parameters.
#[derive(Debug, Clone, Copy)]
struct Run {
    weight: f64,
    mean: f64,
    kappa: f64,
    alpha: f64,
    beta: f64,
}

impl Run {
    /// `ln` of the Student t predictive density of `x`.
    fn ln_predictive(&self, x: f64) -> f64 {
        let nu = 2.0 * self.alpha;
        let var = self.beta * (self.kappa + 1.0) / (self.alpha * self.kappa);
        let z2 = (x - self.mean).powi(2) / (nu * var);
        ln_gamma_ratio(self.alpha)
            - 0.5 * (nu * std::f64::consts::PI * var).ln()
            - (self.alpha + 0.5) * z2.ln_1p()
    }

    /// The posterior after `x`, forgetting geometrically once the counts reach `cap`.
    fn learn(&mut self, x: f64, cap: f64) {
        if self.kappa >= cap {
            let keep = 1.0 - 1.0 / cap;
            self.kappa *= keep;
            self.alpha = ALPHA0 + (self.alpha - ALPHA0) * keep;
            self.beta *= keep;
        }
        let k1 = self.kappa + 1.0;
        self.beta += self.kappa * (x - self.mean).powi(2) / (2.0 * k1);
        self.mean += (x - self.mean) / k1;
        self.kappa = k1;
        self.alpha += 0.5;
    }
}

/// `ln Γ(a + 1/2) - ln Γ(a)` for `a >= 1` (its asymptotic series: error below 1e-4 at 1, far less beyond).
fn ln_gamma_ratio(a: f64) -> f64 {
    0.5 * a.ln() - 1.0 / (8.0 * a) + 1.0 / (192.0 * a * a * a)
}

/// The run-length distribution and the predictive surprise of each new point.
#[derive(Debug, Clone)]
pub(crate) struct Changepoint {
    runs: Vec<Run>,
    hazard: f64,
    max_runs: usize,
    cap: f64,
}

impl Changepoint {
    /// Change points at a hazard of `1 / horizon` per point, at most `max_runs` run lengths kept.
    pub(crate) fn new(horizon: f64, max_runs: usize) -> Self {
        let horizon = horizon.max(2.0);
        Self {
            runs: Vec::with_capacity(max_runs.max(1) + 1),
            hazard: 1.0 / horizon,
            max_runs: max_runs.max(1),
            cap: (horizon * MEMORY).max(KAPPA0 + 1.0),
        }
    }

    fn prior(level: f64, spread: f64, weight: f64) -> Run {
        // The spread is a mean absolute deviation: a Gaussian's variance is pi/2 times its square.
        let var = spread * spread * std::f64::consts::FRAC_PI_2;
        Run {
            weight,
            mean: level,
            kappa: KAPPA0,
            alpha: ALPHA0,
            beta: ALPHA0 * var,
        }
    }

    /// Takes the next value; `level` and `spread` are the detector's before it. Returns the predictive surprise of the
    /// value in spreads (nats), None while the spread is 0 or not finite.
    pub(crate) fn push(&mut self, x: f64, level: f64, spread: f64) -> Option<f64> {
        if !(spread > 0.0 && spread.is_finite()) {
            return None;
        }
        if self.runs.is_empty() {
            self.runs.push(Self::prior(level, spread, 1.0));
        }
        // The predictive: the mixture over run lengths (log-sum-exp over the runs' densities).
        let lp: Vec<f64> = self
            .runs
            .iter()
            .map(|r| r.weight.ln() + r.ln_predictive(x))
            .collect();
        let top = lp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if !top.is_finite() {
            self.runs.clear();
            return None;
        }
        let mass: f64 = lp.iter().map(|l| (l - top).exp()).sum();
        let ln_evidence = top + mass.ln();
        // Growth and change: each run grows with probability 1 - hazard; a change starts a run from the prior.
        for (r, l) in self.runs.iter_mut().zip(&lp) {
            r.weight = (l - ln_evidence).exp() * (1.0 - self.hazard);
            r.learn(x, self.cap);
        }
        self.runs.insert(0, Self::prior(level, spread, self.hazard));
        self.prune();
        Some(-(ln_evidence + spread.ln()))
    }

    /// Drops runs below [`PRUNE`] and the least probable beyond `max_runs`; renormalises.
    fn prune(&mut self) {
        self.runs.retain(|r| r.weight >= PRUNE);
        while self.runs.len() > self.max_runs {
            let least = (0..self.runs.len())
                .min_by(|&a, &b| self.runs[a].weight.total_cmp(&self.runs[b].weight))
                .unwrap_or(0);
            self.runs.remove(least);
        }
        let total: f64 = self.runs.iter().map(|r| r.weight).sum();
        if total > 0.0 {
            for r in &mut self.runs {
                r.weight /= total;
            }
        }
    }

    /// Run lengths held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: u64) -> f64 {
        ((i as f64 * 12.9898).sin() * 43_758.545_3).fract() - 0.5
    }

    #[test]
    fn the_gamma_ratio_is_close() {
        // ln Γ(1.5) - ln Γ(1) = ln(sqrt(pi) / 2); ln Γ(5.5) - ln Γ(5) = ln(52.3428 / 24).
        assert!((ln_gamma_ratio(1.0) - (std::f64::consts::PI.sqrt() / 2.0).ln()).abs() < 1e-3);
        assert!((ln_gamma_ratio(5.0) - (52.342_777_8_f64 / 24.0).ln()).abs() < 1e-6);
    }

    /// A shift of the mean is surprising at its first point and absorbed after a few; so is a variance change;
    /// the run lengths held stay bounded; scale and offset change nothing.
    #[test]
    fn a_change_surprises_once_and_is_absorbed() {
        let run = |scale: f64, offset: f64| {
            let mut c = Changepoint::new(150.0, 40);
            let mut out = Vec::new();
            for i in 0..3_000u64 {
                let v = match i {
                    1_000..2_000 => 3.0 + noise(i),
                    2_000.. => 3.0 + 8.0 * noise(i),
                    _ => noise(i),
                };
                // The level and spread as a slow detector would have them: the first regime's.
                out.push(c.push(offset + scale * v, offset, scale * 0.25).unwrap());
                assert!(c.held() <= 40);
            }
            out
        };
        let s = run(1.0, 0.0);
        let usual = s[500..1_000].iter().cloned().fold(f64::MIN, f64::max);
        // The fresh run's wide prior (a Student t of 2 degrees of freedom, weight 1 / horizon) bounds the surprise of
        // any one value: about ln(horizon) plus its polynomial tail, here some 6 nats above the usual.
        assert!(s[1_000] > usual + 5.0, "{} vs {usual}", s[1_000]);
        let after = s[1_050..2_000].iter().cloned().fold(f64::MIN, f64::max);
        assert!(after <= usual + 1.0, "{after} vs {usual}");
        let noisy = s[2_000..2_010].iter().cloned().fold(f64::MIN, f64::max);
        assert!(noisy > usual + 2.0, "{noisy} vs {usual}");
        for (a, b) in s.iter().zip(run(10.0, 1_000.0)) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
