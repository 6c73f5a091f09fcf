//! The engine's hot path, measured: recording one operation (a bare histogram as the reference, the `Sync`
//! `OpStats` handle with its uncontended mutex, and the by-name `Metrics` path), and one `update` of every detector
//! and the composite on a warmed-up detector.
//!
//! Run: `cargo bench -p heal --bench hot_path -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use heal::detect::{DETECTOR_NAMES, by_name};
use heal::observe::{LATENCY_US_MAX, Metrics, OpStats};

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    let mut bare = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 2).expect("bounds");
    let mut i = 0u64;
    g.bench_function("bare_histogram_single_thread", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            bare.saturating_record(black_box(i % 100_000));
        })
    });
    let op = OpStats::new(0);
    g.bench_function("opstats_handle_uncontended", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            op.record_us(black_box(i % 100_000), black_box(true));
        })
    });
    let metrics = Metrics::new(0);
    for name in ["get", "put", "delete", "search", "scrub"] {
        metrics.op(name).expect("valid name");
    }
    g.bench_function("metrics_by_name_uncontended", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            metrics
                .record_us(black_box("put"), black_box(i % 100_000), true)
                .expect("known op");
        })
    });
    g.finish();
}

fn noise(i: u64) -> f64 {
    let x = (i as f64 * 12.9898).sin() * 43_758.545_3;
    x - x.floor()
}

fn detectors(c: &mut Criterion) {
    let mut g = c.benchmark_group("detector_update");
    const STEP_US: u64 = 300_000_000;
    for name in DETECTOR_NAMES {
        let mut d = by_name(name).expect("known detector");
        // Warm up past every minimum so each update does its full work.
        let mut t = 1_600_000_000_000_000u64;
        for i in 0..5_000u64 {
            d.update(t, 100.0 + noise(i));
            t += STEP_US;
        }
        let mut i = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                t += STEP_US;
                black_box(d.update(t, black_box(100.0 + noise(i))))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, record, detectors);
criterion_main!(benches);
