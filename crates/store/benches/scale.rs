//! Store checks at scale: the quick check (`store.quick`, the shallow tier) on a 1 GiB store, with the store's files
//! in the page cache and evicted from it, and the incremental check (`store.incremental`, the deep tier) after 1 000
//! new documents on that store.
//!
//! **Gated**: building the store writes 1 GiB of documents (about 2 GiB of writes with mirror, parity and the
//! snapshots compaction takes, and a minute or more on a small machine), so every group here runs only with
//! `MEDIC_BENCH_1GIB=1`; without it the bench prints how to run it and exits.
//!
//! The store is built through the public API only: 1 048 576 documents of 1 KiB of text in `put_batch` batches of
//! 8 192, then more batches until the log has two sealed segments besides the snapshot compaction made (about
//! 1.15 GiB of documents in all), with the default [`StoreConfig`] (64 MiB segments, parity sidecars, compaction into a snapshot when the
//! log passes 512 MiB) except the free-space floors, as in the `store` bench. What the store looks like on disk is
//! printed before the measurements. It lives in a temporary directory under `$TMPDIR` (default `/tmp`), removed at
//! the end; check free space first (about 2 GiB at peak).
//!
//! The checks are taken from [`StoreSubject::checks`] and run with a [`CheckContext`], as the engine runs them.
//! "Cold" evicts every file of the store from the page cache (`posix_fadvise(DONTNEED)`, outside the timing)
//! before each run; on a VM the host may still cache the disk.
//!
//! The incremental check verifies every file sealed since its last run and the WAL written since then. It runs once
//! over the whole store first (timed once and printed: that is its first run on a freshly opened store); then each
//! measured run follows one `put_batch` of 1 000 new 1 KiB documents (outside the timing). Batches instead of 1 000
//! single puts give the same log bytes to check without 1 000 fsyncs per iteration.
//!
//! Run: `MEDIC_BENCH_1GIB=1 cargo bench -p store --bench scale`

use std::num::NonZeroU64;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use heal::check::CheckContext;
use heal::{Clock, HealthCheck, Subject, SystemClock};
use store::{Document, Store, StoreConfig, StoreSubject};

/// The environment variable that turns these benchmarks on.
const GATE: &str = "MEDIC_BENCH_1GIB";
const DOC_BYTES: usize = 1024;
/// Documents in the store: 1 GiB of text.
const N_DOCS: u64 = 1 << 20;
const BATCH_DOCS: u64 = 8192;
/// Sealed WAL segments the store has at least once filled (besides its snapshot).
const SEALED_SEGMENTS_MIN: usize = 2;
/// Documents put before each measured incremental check.
const NEW_DOCS: u64 = 1000;

fn cfg() -> StoreConfig {
    StoreConfig {
        disk_low_bytes_floor: 0,
        disk_critical_bytes_floor: 0,
        ..StoreConfig::default()
    }
}

fn doc(i: u64) -> Document {
    let mut text = format!("document {i} ");
    while text.len() < DOC_BYTES {
        text.push_str("lorem ipsum ");
    }
    text.truncate(DOC_BYTES);
    Document::text(text)
}

fn put_range(s: &Store, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let batch: Vec<(String, Document)> = (i..(i + BATCH_DOCS).min(to))
            .map(|j| (format!("d{j:09}"), doc(j)))
            .collect();
        i += batch.len() as u64;
        s.put_batch(batch).expect("batch");
    }
}

/// Every regular file under `dir` (recursively), its path relative to `dir` and its size.
fn files(dir: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            let path = e.path();
            if m.is_dir() {
                walk(root, &path, out);
            } else if m.is_file() {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                out.push((rel.to_string_lossy().into_owned(), m.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Drops the store's files from the page cache.
fn evict(dir: &Path) {
    for (name, _) in files(dir) {
        if let Ok(f) = std::fs::File::open(dir.join(name)) {
            let _ = rustix::fs::fadvise(&f, 0, None::<NonZeroU64>, rustix::fs::Advice::DontNeed);
        }
    }
}

fn check(subject: &StoreSubject, name: &str) -> Arc<dyn HealthCheck> {
    subject
        .checks()
        .into_iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no check named {name}"))
}

fn run(check: &dyn HealthCheck, clock: &SystemClock) -> heal::check::CheckOutcome {
    let ctx = CheckContext {
        clock,
        deadline: clock.now() + 60_000_000,
    };
    let out = check.run(&ctx);
    assert!(out.passed, "{}: {}", check.name(), out.message);
    out
}

fn scale(c: &mut Criterion) {
    if std::env::var_os(GATE).is_none_or(|v| v.is_empty() || v == "0") {
        eprintln!(
            "scale: skipped; building the 1 GiB store takes a while. Run: {GATE}=1 cargo bench -p store --bench scale"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path(), cfg()).expect("open");
    let t0 = Instant::now();
    put_range(&store, 0, N_DOCS);
    // Compaction has just folded the log into a snapshot; go on until the log has sealed segments again, so the
    // checks see every kind of immutable file.
    let mut n_docs = N_DOCS;
    while store.stats().segments < 1 + SEALED_SEGMENTS_MIN {
        put_range(&store, n_docs, n_docs + BATCH_DOCS);
        n_docs += BATCH_DOCS;
    }
    let fill = t0.elapsed();
    let st = store.stats();
    let on_disk = files(dir.path());
    let total: u64 = on_disk.iter().map(|(_, n)| n).sum();
    println!(
        "scale: {} docs ({} MiB of text) put in {:.1} s; {} files, {:.0} MiB on disk; {} segment(s), snapshot at \
         LSN {:?}, {} compaction(s), {} rotation(s), {} immutable file(s) with parity",
        st.docs,
        (n_docs * DOC_BYTES as u64) >> 20,
        fill.as_secs_f64(),
        on_disk.len(),
        total as f64 / (1 << 20) as f64,
        st.segments,
        st.snapshot_lsn,
        st.compactions,
        st.rotations,
        store.immutable_files().len(),
    );
    for (name, n) in &on_disk {
        println!(
            "scale:   {name:<40} {:>10.1} MiB",
            *n as f64 / (1 << 20) as f64
        );
    }

    let store = Arc::new(store);
    let subject = StoreSubject::new(store.clone());
    let quick = check(&subject, "store.quick");
    let incremental = check(&subject, "store.incremental");
    let clock = SystemClock::new();
    println!(
        "scale: store.quick: {}",
        run(quick.as_ref(), &clock).message
    );

    let mut g = c.benchmark_group("store/scale_1GiB");
    g.sample_size(50);
    g.bench_function("quick_check/warm", |b| {
        b.iter(|| run(quick.as_ref(), &clock))
    });
    g.bench_function("quick_check/cold", |b| {
        b.iter_batched(
            || evict(dir.path()),
            |()| run(quick.as_ref(), &clock),
            BatchSize::PerIteration,
        )
    });

    // First run: verifies every immutable file and the whole open segment.
    evict(dir.path());
    let t0 = Instant::now();
    let first = run(incremental.as_ref(), &clock);
    println!(
        "scale: store.incremental, first run on the 1 GiB store (cold cache, one run): {:.0} ms — {}",
        t0.elapsed().as_secs_f64() * 1e3,
        first.message
    );
    // Flat sampling with the smallest time budget: one iteration per sample, so the store grows by only
    // samples × NEW_DOCS documents.
    g.sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    let mut next = n_docs;
    let mut last = String::new();
    g.bench_function("incremental_check/after_1000_puts", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                put_range(&store, next, next + NEW_DOCS);
                next += NEW_DOCS;
                let t0 = Instant::now();
                last = run(incremental.as_ref(), &clock).message;
                spent += t0.elapsed();
            }
            spent
        })
    });
    g.finish();
    println!(
        "scale: store.incremental after {NEW_DOCS} puts, last run: {last} ({} docs put after the fill)",
        next - n_docs
    );
    drop((quick, incremental, subject));
    match Arc::try_unwrap(store) {
        Ok(s) => s.close().expect("close"),
        Err(_) => panic!("store still shared"),
    }
    drop(dir);
}

criterion_group!(benches, scale);
criterion_main!(benches);
