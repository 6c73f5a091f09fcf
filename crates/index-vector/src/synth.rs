//! Seeded synthetic vectors for tests and benchmarks (no data set is downloaded): clustered data of low intrinsic
//! dimension, the easy and realistic case for an embedding index, and i.i.d. Gaussian data, the hard one (no
//! structure for the graph to follow; unreachable nodes show up there first).
//!
//! Clustered: `clusters` centres drawn N(0, 1) in `dim` dimensions; each cluster has its own random `intrinsic`-
//! dimensional subspace (a `dim × intrinsic` Gaussian basis scaled by `spread / sqrt(intrinsic)`); a point is its
//! centre plus a N(0, 1) combination of the basis plus N(0, `noise`²) per component. The same seed gives the same
//! vectors on every machine (the generator is `StdRng`, Gaussians by Box–Muller).

use rand::{Rng, SeedableRng, rngs::StdRng};

/// A standard normal draw (Box–Muller).
pub fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// `n` vectors of `dim` i.i.d. N(0, 1) components, row after row.
pub fn gaussian_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..dim).map(|_| gaussian(&mut rng)).collect())
        .collect()
}

/// Shape of clustered data.
#[derive(Clone, Debug)]
pub struct Clustered {
    pub n: usize,
    pub dim: usize,
    pub clusters: usize,
    pub intrinsic: usize,
    pub spread: f32,
    pub noise: f32,
    pub seed: u64,
}

impl Clustered {
    /// `n` points of `dim` dimensions in 50 clusters of intrinsic dimension 8.
    pub fn new(n: usize, dim: usize, seed: u64) -> Self {
        Clustered {
            n,
            dim,
            clusters: 50,
            intrinsic: 8,
            spread: 0.5,
            noise: 0.02,
            seed,
        }
    }

    /// The points, then `queries` more drawn from the same clusters (not in the set).
    pub fn generate(&self, queries: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let scale = self.spread / (self.intrinsic.max(1) as f32).sqrt();
        let clusters: Vec<(Vec<f32>, Vec<f32>)> = (0..self.clusters.max(1))
            .map(|_| {
                let centre = (0..self.dim).map(|_| gaussian(&mut rng)).collect();
                let basis = (0..self.dim * self.intrinsic)
                    .map(|_| gaussian(&mut rng) * scale)
                    .collect();
                (centre, basis)
            })
            .collect();
        let point = |rng: &mut StdRng| {
            let (centre, basis) = &clusters[rng.random_range(0..clusters.len())];
            let z: Vec<f32> = (0..self.intrinsic).map(|_| gaussian(rng)).collect();
            (0..self.dim)
                .map(|d| {
                    let row = &basis[d * self.intrinsic..(d + 1) * self.intrinsic];
                    centre[d]
                        + row.iter().zip(&z).map(|(b, z)| b * z).sum::<f32>()
                        + gaussian(rng) * self.noise
                })
                .collect::<Vec<f32>>()
        };
        let data = (0..self.n).map(|_| point(&mut rng)).collect();
        let qs = (0..queries).map(|_| point(&mut rng)).collect();
        (data, qs)
    }
}
