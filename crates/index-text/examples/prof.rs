//! Query latency per class on a persisted index built once (the same corpus and queries as `benches/fts.rs`), for
//! profiling: the first run builds the index under `PROF_DIR`, later runs reopen it.
//!
//! `PROF_DIR=/tmp/prof1m FTS_DOCS=1000000 cargo run --release -p index-text --example prof`
//! `PROF_CLASS=phrase PROF_LOOPS=2000 ...` repeats one class (for `perf record`).

use std::time::Instant;

use index_text::synth::{Corpus, percentile as pct, query_classes};
use index_text::{SearchRequest, TextIndex, TextSettings};
use store::derived::{Change, DerivedIndex};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n_docs = env("FTS_DOCS", 100_000);
    let n_queries = env("FTS_QUERIES", 20);
    let rounds = env("FTS_ROUNDS", 3);
    let dir = std::env::var("PROF_DIR").unwrap_or_else(|_| "/tmp/medic-prof".to_string());
    let idx = TextIndex::open(
        std::path::Path::new(&dir),
        "default",
        TextSettings::default(),
    )
    .unwrap();
    if idx.visible_lsn() == 0 {
        let seed = 20261205;
        let docs = Corpus::new(50_000, 1.0, seed).docs(n_docs);
        let t = Instant::now();
        let changes: Vec<Change> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| d.change(i as u64 + 1, &d.id))
            .collect();
        for chunk in changes.chunks(1000) {
            idx.apply(chunk).unwrap();
        }
        idx.persist().unwrap();
        let extra = Corpus::new(50_000, 1.0, seed + 1).docs(5_000);
        for (i, d) in extra.iter().enumerate() {
            idx.apply(&[d.change((n_docs + i) as u64 + 1, &format!("s{i}"))])
                .unwrap();
            if i % 250 == 249 {
                idx.persist().unwrap();
            }
        }
        idx.persist().unwrap();
        println!("built {n_docs} docs in {:.1} s", t.elapsed().as_secs_f64());
    }
    println!("segments: {}, docs {}", idx.segment_count(), idx.len());
    let only = std::env::var("PROF_CLASS").ok();
    let loops = env("PROF_LOOPS", 0);
    for class in query_classes(n_queries) {
        let (name, queries) = (class.key, class.ours);
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut times = Vec::new();
        let mut total = 0u64;
        let r = if loops > 0 { loops } else { rounds };
        for _ in 0..r {
            for q in &queries {
                let t = Instant::now();
                let a = idx.search(&SearchRequest::new(q.clone(), 10)).unwrap();
                times.push(t.elapsed().as_secs_f64() * 1e3);
                total += a.total;
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:8} mean matches {:>8.0}  p50 {:.3}  p99 {:.3} ms",
            total as f64 / times.len() as f64,
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
    }
}
