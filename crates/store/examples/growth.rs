//! How the store grows: for each size N (documents of `MEDIC_GROWTH_DOC_BYTES` bytes of text, default 1 KiB, put in
//! `put_batch` batches of 8,192 with the default [`StoreConfig`]), a fresh store in a temporary directory, then:
//!
//! - **memory**: the process's resident set before and after loading, per document (the in-memory table holds every
//!   document's encoded bytes, its key and entry);
//! - **load**: the time to put the N documents;
//! - **compaction**: the time of one `compact` (snapshot of the whole table, parity, manifest switch);
//! - **open**: the time to reopen the closed store (recovery: the snapshot and the log after it, verified);
//! - **open after log**: the same with the documents in the log instead (no compaction before the close).
//!
//! Run: `cargo run --release -p store --example growth -- 10000 100000 1000000` (sizes as arguments; the default is
//! 10,000 and 100,000). Needs about 2.2 × N × doc bytes of free space under `$TMPDIR`. Prints one Markdown row per
//! size.

use std::time::Instant;

use store::{Document, Store, StoreConfig};

const BATCH: usize = 8192;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn cfg() -> StoreConfig {
    StoreConfig {
        disk_low_bytes_floor: 0,
        disk_critical_bytes_floor: 0,
        ..StoreConfig::default()
    }
}

fn doc(i: usize, bytes: usize) -> Document {
    let mut text = format!("document {i} ");
    while text.len() < bytes {
        text.push_str("lorem ipsum ");
    }
    text.truncate(bytes);
    Document {
        text,
        vector: None,
        meta: None,
    }
}

fn load(s: &Store, n: usize, bytes: usize) -> f64 {
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        s.put_batch(
            (i..end)
                .map(|j| (format!("doc-{j:08}"), doc(j, bytes)))
                .collect(),
        )
        .expect("put_batch");
        i = end;
    }
    t.elapsed().as_secs_f64()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let bytes: usize = std::env::var("MEDIC_GROWTH_DOC_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    // Each size in a process of its own, so memory an earlier size freed (which the allocator keeps) does not hide
    // what this one takes.
    if let Ok(one) = std::env::var("MEDIC_GROWTH_ONE") {
        measure(one.parse().expect("MEDIC_GROWTH_ONE"), bytes);
        return;
    }
    println!(
        "| documents ({bytes} B text) | resident memory per document | load | compaction | open (snapshot) | open (log only) | data directory |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in sizes {
        let status = std::process::Command::new(std::env::current_exe().expect("current_exe"))
            .env("MEDIC_GROWTH_ONE", n.to_string())
            .status()
            .expect("run one size");
        assert!(status.success(), "size {n}: {status}");
    }
}

/// One size: prints its row.
fn measure(n: usize, bytes: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = rss_bytes();
    let s = Store::open(dir.path(), cfg()).expect("open");
    let load_s = load(&s, n, bytes);
    let per_doc = rss_bytes().saturating_sub(before) as f64 / n as f64;
    let t = Instant::now();
    s.compact().expect("compact");
    let compact_s = t.elapsed().as_secs_f64();
    s.close().expect("close");
    let du: u64 = walk(dir.path());
    let t = Instant::now();
    let s = Store::open(dir.path(), cfg()).expect("reopen");
    let open_s = t.elapsed().as_secs_f64();
    assert_eq!(s.count(), n);
    drop(s);
    drop(dir);
    // The documents in the log only: a store closed without compaction, reopened.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(
        dir.path(),
        StoreConfig {
            wal_bytes_max: u64::MAX,
            ..cfg()
        },
    )
    .expect("open");
    load(&s, n, bytes);
    s.close().expect("close");
    let t = Instant::now();
    let s = Store::open(dir.path(), cfg()).expect("reopen");
    let log_open = t.elapsed().as_secs_f64();
    assert_eq!(s.count(), n);
    drop(s);
    println!(
        "| {n} | {per_doc:.0} B | {load_s:.2} s ({:.0} docs/s) | {compact_s:.2} s | {open_s:.2} s | {log_open:.2} s | {:.1} MiB |",
        n as f64 / load_s,
        du as f64 / (1 << 20) as f64
    );
}

fn walk(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() { walk(&e.path()) } else { m.len() };
        }
    }
    total
}
