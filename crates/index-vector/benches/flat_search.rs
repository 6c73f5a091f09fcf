//! `cargo bench -p index-vector --bench flat_search`: one vector search (k = 10, cosine) over 20 000 documents of
//! dimension 64, side by side in one run:
//!
//! - `scan_store`: the search without a vector index — `index_vector::scan::search_store` (the store's `scan` in pages
//!   of 1 024 documents, each decoded and cloned, cosine in `f64`);
//! - `flat_index`: the same query answered by [`FlatIndex::search`], the `flat` derived index attached to the same
//!   store the way the daemon attaches it (caught up by the `medic-derived` thread before measuring).
//!
//! Both answer the same hits (asserted once before measuring). Environment: `MEDIC_BENCH_N` (20000),
//! `MEDIC_BENCH_DIM` (64).

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use index_vector::{FlatIndex, Metric};
use store::{Document, Store, StoreConfig};

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vector(i: usize, dim: usize) -> Vec<f32> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % 2001) as f32 - 1000.0) / 1000.0 + 0.001
        })
        .collect()
}

/// The reference scan ([`index_vector::scan::search_store`]) as the daemon serves a search without a vector index.
fn scan_store(store: &Store, query: &[f32], k: usize) -> Vec<(String, f64)> {
    index_vector::scan::search_store(store, "default", query, k, Metric::Cosine, &|_| true)
        .unwrap()
        .into_iter()
        .map(|h| (h.id, h.score))
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = env_or("MEDIC_BENCH_N", 20_000);
    let dim = env_or("MEDIC_BENCH_DIM", 64);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreConfig::default()).unwrap());
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let docs = chunk
            .iter()
            .map(|&i| {
                (
                    format!("doc-{i:06}"),
                    Document {
                        text: format!("document {i}"),
                        vector: Some(vector(i, dim)),
                        meta: None,
                    },
                )
            })
            .collect();
        store.put_batch(docs).unwrap();
    }
    let flat = Arc::new(
        FlatIndex::open(
            dir.path(),
            "default",
            Metric::Cosine,
            store.config().io.clone(),
        )
        .unwrap(),
    );
    store.attach_derived(flat.clone()).unwrap();
    store
        .derived()
        .wait_applied(store.stats().last_lsn, Duration::from_secs(120))
        .unwrap();
    let queries: Vec<Vec<f32>> = (0..64).map(|i| vector(1_000_000 + i, dim)).collect();
    for q in &queries[..4] {
        let a: Vec<String> = scan_store(&store, q, 10).into_iter().map(|h| h.0).collect();
        let b: Vec<String> = flat
            .search(q, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.id.to_string())
            .collect();
        assert_eq!(a, b, "the index answers what the scan does");
    }
    let mut g = c.benchmark_group(format!("vector_search_{n}x{dim}_k10"));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    let mut qi = 0;
    g.bench_function("scan_store", |b| {
        b.iter(|| {
            qi = (qi + 1) % queries.len();
            scan_store(&store, &queries[qi], 10)
        })
    });
    g.bench_function("flat_index", |b| {
        b.iter(|| {
            qi = (qi + 1) % queries.len();
            flat.search(&queries[qi], 10).unwrap()
        })
    });
    g.finish();
    store.derived().stop();
}

criterion_group!(benches, bench);
criterion_main!(benches);
