//! A suite of healthy operational series, for checking that a detector stays quiet where nothing is wrong: Gaussian
//! noise, an AR(1) process, Poisson counts, log-normal latencies, a daily seasonal load and a random walk. Every
//! series is generated from a fixed seed, one point per [`STEP_US`] (the engine's default cycle), so the figures are
//! reproducible. [`alarms`] counts a detector's scores at or above a cut-off after a warm-up.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Detector;
use crate::clock::Timestamp;

/// Time between points, µs (the engine's default cycle, 5 s).
pub const STEP_US: u64 = 5_000_000;
/// The first point's time (2020-09-13, a fixed date).
pub const START_US: u64 = 1_600_000_000_000_000;

/// One healthy series.
#[derive(Debug, Clone)]
pub struct QuietSeries {
    /// What it is.
    pub name: &'static str,
    /// Its values, one per [`STEP_US`] from [`START_US`].
    pub values: Vec<f64>,
}

fn standard_normal(rng: &mut StdRng) -> f64 {
    // Box–Muller; `1 - u` keeps the logarithm's argument in (0, 1].
    let u: f64 = rng.random();
    let v: f64 = rng.random();
    (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn poisson(rng: &mut StdRng, lambda: f64) -> f64 {
    // Knuth's method, exact for the small rates used here.
    let limit = (-lambda).exp();
    let mut k = 0.0;
    let mut p: f64 = rng.random();
    while p > limit {
        k += 1.0;
        p *= rng.random::<f64>();
    }
    k
}

/// The suite, `points` points per series, from `seed`.
pub fn suite(points: usize, seed: u64) -> Vec<QuietSeries> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut gen_series = |name: &'static str, f: &mut dyn FnMut(&mut StdRng, usize) -> f64| {
        let values = (0..points).map(|i| f(&mut rng, i)).collect();
        QuietSeries { name, values }
    };
    let day_points = (86_400_000_000 / STEP_US) as f64;
    let mut ar = 0.0;
    let mut walk = 100.0;
    vec![
        gen_series("gaussian", &mut |r, _| 50.0 + 5.0 * standard_normal(r)),
        gen_series("ar1", &mut |r, _| {
            ar = 0.9 * ar + standard_normal(r);
            20.0 + ar
        }),
        gen_series("poisson", &mut |r, _| poisson(r, 10.0)),
        gen_series("lognormal_latency", &mut |r, _| {
            (3.0 + 0.5 * standard_normal(r)).exp()
        }),
        gen_series("daily_load", &mut |r, i| {
            let phase = std::f64::consts::TAU * i as f64 / day_points;
            1_000.0 + 400.0 * phase.sin() + 30.0 * standard_normal(r)
        }),
        gen_series("random_walk", &mut |r, _| {
            walk += standard_normal(r);
            walk
        }),
    ]
}

/// Streams `values` through `detector` and counts the points after the first `skip` whose score is at or above
/// `cutoff`.
pub fn alarms(detector: &mut dyn Detector, values: &[f64], cutoff: f64, skip: usize) -> usize {
    values
        .iter()
        .enumerate()
        .filter(|&(i, &v)| {
            let at: Timestamp = START_US + i as u64 * STEP_US;
            detector.update(at, v) >= cutoff && i >= skip
        })
        .count()
}
