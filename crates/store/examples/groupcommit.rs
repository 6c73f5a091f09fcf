//! How group commit shares flushes among concurrent writers: for 1, 4 and 16 writers putting 1 KiB documents
//! durably (mirror on) into one store, puts per second and records per commit (`StoreStats::records_committed /
//! commits`). With perfect sharing every commit carries one record per writer; batches alternating between one
//! record and the rest show as about half that.
//!
//! Run: `cargo run --release -p store --example groupcommit -- [DIR] [SECONDS] [ROUNDS]` (default: a temporary
//! directory under the current one, 2 s per writer count, one round; the store is removed afterwards).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use store::{Document, Store, StoreConfig};

fn arg<T: std::str::FromStr>(a: Option<String>, name: &str, default: T) -> Result<T, String> {
    match a {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("{name} must be a number, got {s:?}")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| ".".into());
    let secs: f64 = arg(args.next(), "SECONDS", 2.0)?;
    let rounds: usize = arg(args.next(), "ROUNDS", 1)?;
    let text = "lorem ipsum ".repeat(86)[..1024].to_string();
    for round in 1..=rounds {
        for writers in [1usize, 4, 16] {
            let dir = tempfile::tempdir_in(&base)?;
            let cfg = StoreConfig {
                disk_low_bytes_floor: 0,
                disk_critical_bytes_floor: 0,
                ..StoreConfig::default()
            };
            let s = Arc::new(Store::open(dir.path(), cfg)?);
            let before = s.stats();
            let stop = Arc::new(AtomicBool::new(false));
            let puts = Arc::new(AtomicU64::new(0));
            let t0 = Instant::now();
            let hs: Vec<_> = (0..writers)
                .map(|w| {
                    let (s, stop, puts, text) =
                        (s.clone(), stop.clone(), puts.clone(), text.clone());
                    std::thread::spawn(move || -> Result<(), String> {
                        let mut i = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            s.put(&format!("w{w}-{i}"), Document::text(text.clone()))
                                .map_err(|e| e.to_string())?;
                            puts.fetch_add(1, Ordering::Relaxed);
                            i += 1;
                        }
                        Ok(())
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
            for h in hs {
                h.join().map_err(|_| "a writer panicked")??;
            }
            let took = t0.elapsed().as_secs_f64();
            let after = s.stats();
            let commits = after.commits - before.commits;
            let records = after.records_committed - before.records_committed;
            println!(
                "round {round} {writers:2} writers {:8.0} puts/s {:6.2} records/commit ({commits} commits)",
                puts.load(Ordering::Relaxed) as f64 / took,
                records as f64 / commits.max(1) as f64
            );
        }
    }
    Ok(())
}
