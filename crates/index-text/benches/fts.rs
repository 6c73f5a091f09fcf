//! The text index side by side with SQLite FTS5 (rusqlite's bundled SQLite) on one seeded Zipf corpus, in one run:
//! indexing throughput (bulk and steady state), query latency per class (p50/p99, top 10, BM25 order on both),
//! index size, rebuild and validation time. Prints a Markdown table; BENCHMARKS.md has the figures.
//!
//! `FTS_DOCS=100000 FTS_QUERIES=40 cargo bench -p index-text --bench fts`

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use index_text::synth::{Corpus, percentile as pct, query_classes as classes, word};
use index_text::{SearchRequest, TextIndex, TextSettings};
use rusqlite::Connection;
use store::Document;
use store::derived::{Change, DerivedIndex};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            let m = e.metadata().unwrap();
            n += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    n
}

fn main() {
    let n_docs = env("FTS_DOCS", 100_000);
    let n_queries = env("FTS_QUERIES", 40);
    let rounds = env("FTS_ROUNDS", 5);
    let vocabulary = env("FTS_VOCABULARY", 50_000);
    let seed = 20261205;
    let docs = Corpus::new(vocabulary, 1.0, seed).docs(n_docs);
    let tmp = tempfile::tempdir().unwrap();
    println!("corpus: {n_docs} docs, 10-30 words, Zipf s=1.0 over {vocabulary} words, seed {seed}");

    // Bulk indexing: ours through the contract (apply in batches of 1000, one persist at the end).
    let idx = TextIndex::open(tmp.path(), "default", TextSettings::default()).unwrap();
    let changes: Vec<Change> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| d.change(i as u64 + 1, &d.id))
        .collect();
    let t = Instant::now();
    for chunk in changes.chunks(1000) {
        idx.apply(chunk).unwrap();
    }
    idx.persist().unwrap();
    let ours_bulk = t.elapsed().as_secs_f64();

    let db_path = tmp.path().join("fts5.sqlite");
    let conn = Connection::open(&db_path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, text);",
    )
    .unwrap();
    let t = Instant::now();
    {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut ins = tx
                .prepare("INSERT INTO docs(rowid, id, text) VALUES (?1, ?2, ?3)")
                .unwrap();
            for (i, d) in docs.iter().enumerate() {
                ins.execute(rusqlite::params![i as i64 + 1, d.id, d.text])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let fts_bulk = t.elapsed().as_secs_f64();

    // Steady state: 5,000 more documents, one at a time, a commit every 250 (ours: persist; FTS5: transaction).
    let extra = Corpus::new(vocabulary, 1.0, seed + 1).docs(5_000);
    let t = Instant::now();
    for (i, d) in extra.iter().enumerate() {
        idx.apply(&[d.change((n_docs + i) as u64 + 1, &format!("s{i}"))])
            .unwrap();
        if i % 250 == 249 {
            idx.persist().unwrap();
        }
    }
    idx.persist().unwrap();
    let ours_steady = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in extra.chunks(250) {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut ins = tx
                .prepare_cached("INSERT INTO docs(id, text) VALUES (?1, ?2)")
                .unwrap();
            for d in chunk {
                ins.execute(rusqlite::params![d.id, d.text]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let fts_steady = t.elapsed().as_secs_f64();

    println!();
    println!("| figure | medic text (tantivy) | SQLite FTS5 | FTS5 / medic |");
    println!("|---|---|---|---|");
    let n = n_docs as f64;
    println!(
        "| bulk indexing, docs/s | {:.0} | {:.0} | {:.2} |",
        n / ours_bulk,
        n / fts_bulk,
        ours_bulk / fts_bulk
    );
    let m = extra.len() as f64;
    println!(
        "| steady indexing (commit every 250), docs/s | {:.0} | {:.0} | {:.2} |",
        m / ours_steady,
        m / fts_steady,
        ours_steady / fts_steady
    );

    // Queries: each class's queries, interleaved per query, `rounds` times; top 10 in BM25 order.
    let mut stmt = conn
        .prepare_cached("SELECT id FROM docs WHERE docs MATCH ?1 ORDER BY bm25(docs) LIMIT 10")
        .unwrap();
    for class in classes(n_queries) {
        let (mut ours, mut fts) = (Vec::new(), Vec::new());
        let mut totals = 0u64;
        for _ in 0..rounds {
            for (q, f) in class.ours.iter().zip(&class.fts5) {
                let t = Instant::now();
                let a = idx.search(&SearchRequest::new(q.clone(), 10)).unwrap();
                ours.push(t.elapsed().as_secs_f64() * 1e3);
                totals += a.total;
                let t = Instant::now();
                let ids: Vec<String> = stmt
                    .query_map([f], |r| r.get::<_, String>(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                fts.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(ids.len(), a.hits.len(), "{q} / {f}: same number of hits");
            }
        }
        ours.sort_by(f64::total_cmp);
        fts.sort_by(f64::total_cmp);
        let mean_matches = totals as f64 / (rounds * class.ours.len()) as f64;
        println!(
            "| {} (mean {:.0} matches): p50 / p99 ms | {:.3} / {:.3} | {:.3} / {:.3} | {:.1} / {:.1} |",
            class.name,
            mean_matches,
            pct(&ours, 0.5),
            pct(&ours, 0.99),
            pct(&fts, 0.5),
            pct(&fts, 0.99),
            pct(&fts, 0.5) / pct(&ours, 0.5),
            pct(&fts, 0.99) / pct(&ours, 0.99),
        );
    }
    drop(stmt);

    let ours_bytes = dir_bytes(&idx.generation_dir());
    conn.execute_batch(
        "INSERT INTO docs(docs) VALUES('optimize'); PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    let fts_bytes = std::fs::metadata(&db_path).unwrap().len();
    println!(
        "| index size, MB (FTS5 after optimize; it also stores the text) | {:.1} | {:.1} | {:.2} |",
        ours_bytes as f64 / 1e6,
        fts_bytes as f64 / 1e6,
        fts_bytes as f64 / ours_bytes as f64
    );

    // A degraded answer (no usable index): a scan of every document, then the same LSN again (reused).
    let table = || {
        docs.iter().map(|d| {
            (
                d.id.clone(),
                Document {
                    text: d.text.clone(),
                    vector: None,
                    meta: Some(d.meta.clone()),
                },
            )
        })
    };
    let req = SearchRequest::new(word(150), 10);
    let t = Instant::now();
    let first = idx.scan(&req, &mut table(), 1).unwrap();
    let scan_first = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let again = idx.scan(&req, &mut table(), 1).unwrap();
    let scan_again = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(first.hits.len(), again.hits.len());
    idx.drop_scan();
    println!(
        "| a search answered by a scan (no usable index): first / again at the same LSN, ms | {scan_first:.1} / {scan_again:.3} | | |"
    );

    let t = Instant::now();
    let damage = idx.verify_files().unwrap();
    assert!(damage.is_empty(), "{damage:?}");
    println!(
        "| validating every index file (plain reads, CRC32), s | {:.3} | | |",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut all = docs.iter().map(|d| {
        (
            Arc::<str>::from(d.id.as_str()),
            Arc::new(Document {
                text: d.text.clone(),
                vector: None,
                meta: Some(d.meta.clone()),
            }),
        )
    });
    idx.rebuild(&mut all, n_docs as u64 + 10_000).unwrap();
    let rebuild = t.elapsed().as_secs_f64();
    let t = Instant::now();
    conn.execute_batch("INSERT INTO docs(docs) VALUES('rebuild');")
        .unwrap();
    let fts_rebuild = t.elapsed().as_secs_f64();
    println!(
        "| rebuild from the documents, docs/s | {:.0} | {:.0} | {:.2} |",
        n / rebuild,
        (n + m) / fts_rebuild,
        rebuild / fts_rebuild * (n + m) / n
    );
}
