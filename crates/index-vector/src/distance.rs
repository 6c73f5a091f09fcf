//! Metrics and the distance kernels every vector index of medic uses.
//!
//! Owns [`Metric`] (cosine, dot product, Euclidean), the preparation of a vector for a metric (finite values, the
//! dimension, unit length for cosine) and the two hot loops, [`dot`] and [`l2_squared`].
//!
//! Invariants:
//! - Internally a smaller distance is always closer: cosine `1 − a·b` over unit vectors (vectors are normalised once,
//!   when stored or queried), dot product `−a·b`, Euclidean the *squared* distance (monotone in the distance, no
//!   square root in the hot loop). [`Metric::reported`] turns an internal distance into the one a caller sees.
//! - [`Metric::distance`] computes the cosine distance of unit vectors as `|a − b|² / 2` (the same value): `1 − a·b`
//!   cancels catastrophically near 0 — vectors closer than about 3e-4 radians all come out 0 or rounding noise in
//!   `f32` — and the graph's neighbour selection, which compares such distances, then prunes near-duplicates at
//!   random (3,000 vectors `[i, 1, i % 3]` under cosine: 3.4% of them unreachable after insertion, none with the
//!   squared form). The difference of two close floats is exact, so the squared form keeps their order.
//! - The kernels work on 16 lanes at a time (`as_chunks::<16>`: fixed-size arrays, so there is no bounds check in
//!   the loop and the compiler vectorises it with independent accumulators), then the tail.

use serde::{Deserialize, Serialize};

/// Lanes of the kernels' main loop.
const LANES: usize = 16;

/// How two vectors are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cosine distance `1 − cos(a, b)`, in `[0, 2]`. Vectors are stored normalised; a zero vector is refused.
    #[default]
    Cosine,
    /// Negative dot product `−a·b` (for vectors whose length carries meaning).
    Dot,
    /// Euclidean distance.
    L2,
}

/// Why a vector cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VectorError {
    /// The vector's dimension is not the index's.
    #[error("vector has dimension {got}, the index has {expected}")]
    Dimension { expected: usize, got: usize },
    /// A NaN or infinite component.
    #[error("vector component {index} is not a finite number")]
    NotFinite { index: usize },
    /// Cosine needs a direction.
    #[error("a zero vector has no direction (metric cosine)")]
    Zero,
    /// Empty, or longer than [`crate::params::DIM_MAX`].
    #[error("vector dimension {got} is outside 1..={max}")]
    DimensionRange { got: usize, max: usize },
}

impl Metric {
    /// The metric's name in configuration and on disk.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::L2 => "l2",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::Cosine => 1,
            Metric::Dot => 2,
            Metric::L2 => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Metric> {
        match code {
            1 => Some(Metric::Cosine),
            2 => Some(Metric::Dot),
            3 => Some(Metric::L2),
            _ => None,
        }
    }

    /// The internal distance (smaller is closer) of two prepared vectors of the same length.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => 0.5 * l2_squared(a, b),
            Metric::Dot => -dot(a, b),
            Metric::L2 => l2_squared(a, b),
        }
    }

    /// The distance a caller sees for an internal one: cosine `1 − cos`, dot `−a·b`, Euclidean (square root).
    pub fn reported(self, internal: f32) -> f32 {
        match self {
            Metric::Cosine | Metric::Dot => internal,
            Metric::L2 => internal.max(0.0).sqrt(),
        }
    }

    /// Checks `v` against the dimension `dim` (0: not fixed yet) and returns it ready to store or query with:
    /// finite, and of unit length for cosine.
    pub fn prepare(self, v: &[f32], dim: usize) -> Result<Vec<f32>, VectorError> {
        if v.is_empty() || v.len() > crate::params::DIM_MAX {
            return Err(VectorError::DimensionRange {
                got: v.len(),
                max: crate::params::DIM_MAX,
            });
        }
        if dim != 0 && v.len() != dim {
            return Err(VectorError::Dimension {
                expected: dim,
                got: v.len(),
            });
        }
        if let Some(index) = v.iter().position(|x| !x.is_finite()) {
            return Err(VectorError::NotFinite { index });
        }
        let mut out = v.to_vec();
        if self == Metric::Cosine {
            let norm = dot(&out, &out).sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                return Err(VectorError::Zero);
            }
            let inv = 1.0 / norm;
            out.iter_mut().for_each(|x| *x *= inv);
        }
        Ok(out)
    }
}

/// `a · b` over the common length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ta) = a[..n].as_chunks::<LANES>();
    let (cb, tb) = b[..n].as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum = fold(acc);
    for (x, y) in ta.iter().zip(tb) {
        sum += x * y;
    }
    sum
}

/// `|a − b|²` over the common length.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ta) = a[..n].as_chunks::<LANES>();
    let (cb, tb) = b[..n].as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut sum = fold(acc);
    for (x, y) in ta.iter().zip(tb) {
        let d = x - y;
        sum += d * d;
    }
    sum
}

/// Pairwise sum of the accumulators (keeps the rounding error low and the adds independent).
#[inline]
fn fold(acc: [f32; LANES]) -> f32 {
    let mut h = [0.0f32; LANES / 2];
    for i in 0..LANES / 2 {
        h[i] = acc[i] + acc[i + LANES / 2];
    }
    let mut q = [0.0f32; LANES / 4];
    for i in 0..LANES / 4 {
        q[i] = h[i] + h[i + LANES / 4];
    }
    (q[0] + q[2]) + (q[1] + q[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn kernels_match_naive_sums_at_every_tail_length() {
        for n in [1usize, 7, 15, 16, 17, 31, 32, 33, 100, 128, 131] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
            let d = dot(&a, &b) as f64;
            assert!((d - naive_dot(&a, &b)).abs() < 1e-3, "dot n={n}");
            let diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            let l = l2_squared(&a, &b) as f64;
            assert!((l - naive_dot(&diff, &diff)).abs() < 1e-3, "l2 n={n}");
        }
    }

    #[test]
    fn prepare_refuses_bad_vectors_and_normalises_for_cosine() {
        assert_eq!(
            Metric::Cosine.prepare(&[0.0, 0.0], 2),
            Err(VectorError::Zero)
        );
        assert_eq!(
            Metric::L2.prepare(&[1.0, f32::NAN], 2),
            Err(VectorError::NotFinite { index: 1 })
        );
        assert_eq!(
            Metric::Dot.prepare(&[1.0, 2.0, 3.0], 2),
            Err(VectorError::Dimension {
                expected: 2,
                got: 3
            })
        );
        let v = Metric::Cosine.prepare(&[3.0, 4.0], 0).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(Metric::L2.prepare(&[3.0, 4.0], 0).unwrap(), vec![3.0, 4.0]);
        assert!((Metric::L2.reported(25.0) - 5.0).abs() < 1e-6);
    }
}
