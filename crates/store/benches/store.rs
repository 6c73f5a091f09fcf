//! Store benchmarks, side by side in one run: durable put throughput (1 KiB documents, one, four and sixteen
//! writers) against SQLite (WAL mode, synchronous=FULL); the write cost of redundancy (mirror on vs off) and of
//! parity encoding; scrub throughput; recovery time after a crash with 100k documents.
//!
//! Run: `cargo bench -p store --bench store`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use heal::check::CheckContext;
use heal::{Clock, Subject, SystemClock, Tier};
use store::{Document, Store, StoreConfig, StoreSubject};

const DOC_BYTES: usize = 1024;

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

fn medic_puts(store: &Arc<Store>, writers: u64, iters: u64, base: u64) -> Duration {
    let t0 = Instant::now();
    let hs: Vec<_> = (0..writers)
        .map(|w| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..iters.div_ceil(writers) {
                    s.put(&format!("w{w}-{}", base + i), doc(i)).expect("put");
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("writer");
    }
    t0.elapsed()
}

fn sqlite_open(path: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("sqlite open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("sync");
    c.busy_timeout(Duration::from_secs(30)).expect("busy");
    c.execute_batch("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        .expect("table");
    c
}

fn sqlite_puts(path: &std::path::Path, writers: u64, iters: u64, base: u64) -> Duration {
    let conns: Vec<_> = (0..writers).map(|_| sqlite_open(path)).collect();
    let t0 = Instant::now();
    let hs: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, c)| {
            std::thread::spawn(move || {
                for i in 0..iters.div_ceil(writers) {
                    c.execute(
                        "INSERT OR REPLACE INTO docs (id, body) VALUES (?1, ?2)",
                        (format!("w{w}-{}", base + i), doc(i).text),
                    )
                    .expect("insert");
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("writer");
    }
    t0.elapsed()
}

fn durable_puts(c: &mut Criterion) {
    let mut g = c.benchmark_group("store/durable_put_1KiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for writers in [1u64, 4, 16] {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Arc::new(Store::open(dir.path(), cfg()).expect("open"));
        let mut base = 0;
        g.bench_function(format!("medic/{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                base += iters;
                medic_puts(&s, writers, iters, base)
            })
        });
        let dir = tempfile::tempdir().expect("tmp");
        let nomirror = Arc::new(
            Store::open(
                dir.path(),
                StoreConfig {
                    mirror_open_segment: false,
                    ..cfg()
                },
            )
            .expect("open"),
        );
        let mut base = 0;
        g.bench_function(format!("medic_no_mirror/{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                base += iters;
                medic_puts(&nomirror, writers, iters, base)
            })
        });
        let sdir = tempfile::tempdir().expect("tmp");
        let path = sdir.path().join("bench.sqlite");
        drop(sqlite_open(&path));
        let mut base = 0;
        g.bench_function(format!("sqlite_wal_full/{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                base += iters;
                sqlite_puts(&path, writers, iters, base)
            })
        });
    }
    g.finish();
}

fn parity_encode(c: &mut Criterion) {
    let data: Vec<u8> = (0..(16u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let p = store::parity::ParityParams {
        block_bytes: 4096,
        data_blocks: 16,
        parity_blocks: 4,
    };
    let mut g = c.benchmark_group("store/redundancy");
    g.sample_size(10)
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("parity_build_16MiB", |b| {
        b.iter(|| store::parity::build(1, &data, &p).expect("build"))
    });
    let side =
        store::parity::parse(&store::parity::build(1, &data, &p).expect("build")).expect("parse");
    g.bench_function("verify_blocks_16MiB", |b| {
        b.iter(|| store::parity::bad_blocks(&data, &side))
    });
    g.finish();
}

fn filled(n: u64, cfg: StoreConfig) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path(), cfg).expect("open");
    let mut i = 0;
    while i < n {
        let batch: Vec<(String, Document)> = (i..(i + 1000).min(n))
            .map(|j| (format!("d{j:08}"), doc(j)))
            .collect();
        i += batch.len() as u64;
        s.put_batch(batch).expect("batch");
    }
    (dir, s)
}

fn scrub(c: &mut Criterion) {
    // 32k documents ≈ 34 MiB of log in 4 MiB segments, all sealed but the last.
    let (_dir, s) = filled(
        32_000,
        StoreConfig {
            segment_bytes_max: 4 << 20,
            ..cfg()
        },
    );
    let bytes = s.stats().wal_bytes;
    let subject = StoreSubject::new(Arc::new(s));
    let check = subject
        .checks()
        .into_iter()
        .find(|c| c.tier() == Tier::Comprehensive)
        .expect("scrub");
    let quick = subject
        .checks()
        .into_iter()
        .find(|c| c.tier() == Tier::Shallow)
        .expect("quick");
    let clock = SystemClock::new();
    let mut g = c.benchmark_group("store/scrub");
    g.sample_size(10).throughput(Throughput::Bytes(bytes));
    g.bench_function("full_scrub", |b| {
        b.iter(|| {
            let ctx = CheckContext {
                clock: &clock,
                deadline: clock.now() + 60_000_000,
            };
            assert!(check.run(&ctx).passed);
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("quick_check", |b| {
        b.iter(|| {
            let ctx = CheckContext {
                clock: &clock,
                deadline: clock.now() + 60_000_000,
            };
            assert!(quick.run(&ctx).passed);
        })
    });
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let (dir, s) = filled(100_000, cfg());
    drop(s); // no close: the lock text says "crashed"
    let mut g = c.benchmark_group("store/recovery");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(100_000));
    g.bench_function("open_after_crash_100k_docs", |b| {
        b.iter(|| {
            let s = Store::open(dir.path(), cfg()).expect("open");
            assert_eq!(s.count(), 100_000);
        })
    });
    g.finish();
}

criterion_group!(benches, durable_puts, parity_encode, scrub, recovery);
criterion_main!(benches);
