//! Index lag under a steady write load: a store with the text index attached (as the daemon runs it: the derived
//! thread applies the log and commits at most every 250 ms or 1,000 changes), one writer putting documents at a
//! fixed rate, and an observer that measures, for every put, the time from its acknowledgement until a default
//! (eventual) search finds the unique token it holds. Prints p50/p90/p99/max.
//!
//! `LAG_RATE=500 LAG_SECS=30 cargo run --release -p index-text --example lag`

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use index_text::synth::{Corpus, percentile as pct};
use index_text::{SearchRequest, TextIndex, TextSettings};
use store::derived::DerivedIndex;
use store::{Document, Store, StoreConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rate = env("LAG_RATE", 500).clamp(1, 100_000);
    let secs = env("LAG_SECS", 30).clamp(1, 3_600);
    let base = env("LAG_BASE_DOCS", 100_000).min(10_000_000) as usize;
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(Store::open(tmp.path(), StoreConfig::default()).expect("store opens"));
    let mut corpus = Corpus::new(50_000, 1.0, 20261206);
    // A corpus already indexed, so each commit works on an index of realistic size.
    for chunk in corpus.docs(base).chunks(8_192) {
        let batch: Vec<(String, Document)> = chunk
            .iter()
            .map(|d| {
                (
                    d.id.clone(),
                    Document {
                        text: d.text.clone(),
                        vector: None,
                        meta: Some(d.meta.clone()),
                    },
                )
            })
            .collect();
        store.put_batch(batch).expect("bulk load");
    }
    let index = Arc::new(
        TextIndex::open(tmp.path(), "default", TextSettings::default()).expect("index opens"),
    );
    store.attach_derived(index.clone()).expect("attach");
    let t0 = Instant::now();
    while index.visible_lsn() < store.stats().last_lsn {
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{base} documents indexed in {:.1} s; now {rate} puts/s for {secs} s",
        t0.elapsed().as_secs_f64()
    );

    let (tx, rx) = mpsc::channel::<(u64, u64, Instant)>();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut corpus = Corpus::new(50_000, 1.0, 7);
            let period = Duration::from_secs_f64(1.0 / rate as f64);
            let start = Instant::now();
            let n_max = rate * secs;
            for n in 0..n_max {
                let due = start + period * n as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let d = corpus.next_doc();
                let doc = Document {
                    text: format!("{} lagtok{n}", d.text),
                    vector: None,
                    meta: None,
                };
                let lsn = store.put(&format!("lag{n}"), doc).expect("put");
                tx.send((n, lsn, Instant::now())).expect("observer alive");
            }
        })
    };
    let mut pending: VecDeque<(u64, u64, Instant)> = VecDeque::new();
    let mut lags = Vec::new();
    let mut missing = 0u64;
    let mut open = true;
    while open || !pending.is_empty() {
        loop {
            match rx.try_recv() {
                Ok(p) => pending.push_back(p),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let visible = index.visible_lsn();
        while let Some(&(n, lsn, acked)) = pending.front() {
            if lsn > visible {
                break;
            }
            // Visible by LSN: the search itself must find it (what an eventual search answers).
            let a = index
                .search(&SearchRequest::new(format!("lagtok{n}"), 1))
                .expect("search");
            if a.hits.first().map(|h| h.id.as_str()) != Some(&format!("lag{n}")) {
                // Not yet in the reader this search used: measured again on the next poll.
                missing += 1;
                break;
            }
            lags.push(acked.elapsed().as_secs_f64() * 1e3);
            pending.pop_front();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    writer.join().expect("writer");
    lags.sort_by(f64::total_cmp);
    let st = store.derived().status();
    let persists = st.indexes.first().map_or(0, |i| i.persists);
    println!(
        "lag from acknowledgement to an eventual search finding the document: {} puts at {rate}/s over {secs} s \
         on {base} indexed documents: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({persists} commits; \
         {missing} polls where the LSN was visible before the search saw it; applied LSN {})",
        lags.len(),
        pct(&lags, 0.5),
        pct(&lags, 0.9),
        pct(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN),
        index.applied_lsn()
    );
}
