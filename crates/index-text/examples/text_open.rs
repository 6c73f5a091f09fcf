//! What opening a text index costs: time and resident memory, in a process of its own.
//!
//! `cargo run --release -p index-text --example text_open -- DIR [DOCS]`: the first run builds the index of the
//! `fts` bench's corpus (`DOCS` documents, 100 000 by default, seed 20261205) under `DIR` and exits; every later
//! run opens it, prints the open time and `/proc/self/status`'s resident figures after the open and after the
//! bench's queries (40 of each class, once).

use std::time::Instant;

use index_text::synth::{Corpus, query_classes};
use index_text::{SearchRequest, TextIndex, TextSettings};
use store::derived::{Change, DerivedIndex};

/// `VmRSS`, `RssAnon`, `RssFile` and `VmHWM` in MiB.
fn resident() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut out = Vec::new();
    for key in ["VmRSS", "RssAnon", "RssFile", "VmHWM"] {
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        out.push(format!("{key} {:.1}", kb as f64 / 1024.0));
    }
    format!("{} MiB", out.join(", "))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: text_open DIR [DOCS]");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let n_docs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    if !dir.join("idx").exists() {
        let docs = Corpus::new(50_000, 1.0, 20261205).docs(n_docs);
        let idx = TextIndex::open(&dir, "default", TextSettings::default()).unwrap();
        let changes: Vec<Change> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| d.change(i as u64 + 1, &d.id))
            .collect();
        for chunk in changes.chunks(1000) {
            idx.apply(chunk).unwrap();
        }
        idx.persist().unwrap();
        println!("built {n_docs} documents in {}", dir.display());
        return;
    }
    println!("before open: {}", resident());
    let t = Instant::now();
    let idx = TextIndex::open(&dir, "default", TextSettings::default()).unwrap();
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(idx.open_report().loaded, "{:?}", idx.open_report());
    println!(
        "open: {open_ms:.1} ms, {} documents, {} segments",
        idx.len(),
        idx.segment_count()
    );
    println!("after open: {}", resident());
    let t = Instant::now();
    let mut n = 0;
    for class in query_classes(40) {
        for q in &class.ours {
            idx.search(&SearchRequest::new(q, 10)).unwrap();
            n += 1;
        }
    }
    println!(
        "{n} queries in {:.1} ms; after them: {}",
        t.elapsed().as_secs_f64() * 1e3,
        resident()
    );
}
