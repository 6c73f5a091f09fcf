//! Query latency per class on a persisted index built once (the same corpus and queries as `benches/fts.rs`), for
//! profiling: the first run builds the index under `PROF_DIR`, later runs reopen it.
//!
//! `PROF_DIR=/tmp/prof1m FTS_DOCS=1000000 cargo run --release -p index-text --example prof`
//! `PROF_CLASS=phrase PROF_LOOPS=2000 ...` repeats one class (for `perf record`).

use std::sync::Arc;
use std::time::Instant;

use index_text::synth::{Corpus, word};
use index_text::{SearchRequest, TextIndex, TextSettings};
use store::Document;
use store::derived::{Change, DerivedIndex};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn classes(n: usize) -> Vec<(&'static str, Vec<String>)> {
    let pick = |lo: usize, hi: usize, i: usize| lo + (i * 7919) % (hi - lo);
    let mk = |f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>();
    vec![
        ("rare", mk(&|i| word(pick(5_000, 20_000, i)))),
        ("mid", mk(&|i| word(pick(100, 400, i)))),
        ("common", mk(&|i| word(i % 3))),
        (
            "and",
            mk(&|i| format!("{} {}", word(pick(0, 30, i)), word(pick(50, 300, i + 1)))),
        ),
        (
            "or",
            mk(&|i| {
                format!(
                    "{} OR {}",
                    word(pick(20, 200, i)),
                    word(pick(200, 2000, i + 3))
                )
            }),
        ),
        (
            "phrase",
            mk(&|i| format!("\"{} {}\"", word(pick(0, 10, i)), word(pick(0, 40, i + 5)))),
        ),
        (
            "prefix",
            mk(&|i| format!("{}*", &word(pick(30, 600, i))[..3])),
        ),
    ]
}

fn change(
    lsn: u64,
    id: &str,
    text: &str,
    meta: &serde_json::Map<String, serde_json::Value>,
) -> Change {
    Change {
        lsn,
        collection: Arc::from("default"),
        id: Arc::from(id),
        doc: Some(Arc::new(Document {
            text: text.to_string(),
            vector: None,
            meta: Some(meta.clone()),
        })),
    }
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
            .map(|(i, d)| change(i as u64 + 1, &d.id, &d.text, &d.meta))
            .collect();
        for chunk in changes.chunks(1000) {
            idx.apply(chunk).unwrap();
        }
        idx.persist().unwrap();
        let extra = Corpus::new(50_000, 1.0, seed + 1).docs(5_000);
        for (i, d) in extra.iter().enumerate() {
            idx.apply(&[change(
                (n_docs + i) as u64 + 1,
                &format!("s{i}"),
                &d.text,
                &d.meta,
            )])
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
    for (name, queries) in classes(n_queries) {
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
