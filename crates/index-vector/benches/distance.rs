//! `cargo bench -p index-vector --bench distance`: the two hot loops of every vector search, side by side in one run
//! at dimensions 64, 128 and 768:
//!
//! - `medic`: [`index_vector::dot`] and [`index_vector::l2_squared`], written so the compiler vectorises them (the
//!   body over fixed-width chunks with independent accumulators, then the tail);
//! - `naive`: the one-line iterator sum a reader would write first, whose single accumulator is a dependency chain
//!   the compiler may not reorder (floating-point addition is not associative), so it stays scalar.
//!
//! Both give the same value to within rounding (asserted once before measuring).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2_000) as f32 / 1_000.0 - 1.0
        })
        .collect()
}

fn naive_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn naive_l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn bench(c: &mut Criterion) {
    for dim in [64, 128, 768] {
        let (a, b) = (vector(1, dim), vector(2, dim));
        let close = |x: f32, y: f32| (x - y).abs() <= 1e-3 * x.abs().max(1.0);
        assert!(close(index_vector::dot(&a, &b), naive_dot(&a, &b)));
        assert!(close(index_vector::l2_squared(&a, &b), naive_l2(&a, &b)));
        let mut g = c.benchmark_group(format!("distance_{dim}"));
        g.bench_function("dot/medic", |x| {
            x.iter(|| index_vector::dot(black_box(&a), black_box(&b)))
        });
        g.bench_function("dot/naive", |x| {
            x.iter(|| naive_dot(black_box(&a), black_box(&b)))
        });
        g.bench_function("l2/medic", |x| {
            x.iter(|| index_vector::l2_squared(black_box(&a), black_box(&b)))
        });
        g.bench_function("l2/naive", |x| {
            x.iter(|| naive_l2(black_box(&a), black_box(&b)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
