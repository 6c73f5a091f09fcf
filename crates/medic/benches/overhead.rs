//! The cost of being watched: durable put and vector search with the healing loop off and on, side by side in one
//! run.
//!
//! Each mode opens an [`App`] the way `medic serve` does (store, SQLite knowledge base, engine; the default
//! configuration) in a fresh data directory holding the same 10 000 documents (1 KiB of text and a 64-dimensional
//! vector each).
//!
//! - `healing_off`: no healing cycle runs.
//! - `healing_on`: the daemon's healing loop runs on a background tokio runtime, as `serve` runs it: one
//!   [`api::run_cycle`] per `checks.shallow_interval_ms` (5 000 ms by default), each cycle with the `[checks]` tier
//!   schedule (deep every `deep_interval_ms`, comprehensive every `comprehensive_interval_ms`). The first cycle runs
//!   every tier, the full scrub included; measurement starts once it has finished, so the steady state is measured.
//!
//! Operations are the calls the HTTP handlers make: `Store::put` of a 1 KiB text document (one writer, durable:
//! returns after fsync; 1 000 ids overwritten in turn, deleted again afterwards so every search scans the same
//! 10 000 documents) and [`index_vector::scan::search_store`] with k = 10. The store records every put's latency into a
//! `heal::observe::OpStats` histogram; that recording is always on, so its cost is in both figures (`scan`, which
//! the search reads through, records nothing).
//!
//! Order: off, on, then off again (`healing_off_again`), so a drift of the machine's load during the run shows.
//! `heal_cycle/steady_state` times one cycle of that loop back to back (the work the loop adds once per interval).
//! Cycles run and checks run during the `healing_on` measurements are printed at the end.
//!
//! Run: `cargo bench -p medic --bench overhead`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medic::app::App;
use medic::config::Config;
use medic::daemon::Metrics;
use medic::daemon::api::{self, ApiState};
use rand::{Rng as _, SeedableRng as _};
use store::Document;

/// Documents in the store the search scans.
const N_DOCS: u64 = 10_000;
/// Vector dimension.
const DIM: usize = 64;
/// Text bytes per document.
const DOC_BYTES: usize = 1024;
/// Hits per search.
const K: usize = 10;
/// Distinct ids the put benchmark writes (overwriting them in turn); deleted again after it.
const PUT_IDS: u64 = 1000;

fn text(i: u64) -> String {
    let mut t = format!("document {i} ");
    while t.len() < DOC_BYTES {
        t.push_str("lorem ipsum ");
    }
    t.truncate(DOC_BYTES);
    t
}

fn vector(rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

/// An app over a fresh data directory holding `N_DOCS` documents (the same ones for every call).
fn filled_app() -> (tempfile::TempDir, Arc<App>) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    let app = App::open(&config).expect("open app");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut i = 0;
    while i < N_DOCS {
        let batch: Vec<(String, Document)> = (i..(i + 1000).min(N_DOCS))
            .map(|j| {
                (
                    format!("v{j:08}"),
                    Document {
                        text: text(j),
                        vector: Some(vector(&mut rng)),
                        meta: None,
                    },
                )
            })
            .collect();
        i += batch.len() as u64;
        app.store().put_batch(batch).expect("fill");
    }
    (dir, Arc::new(app))
}

fn close(app: Arc<App>) {
    Arc::try_unwrap(app)
        .expect("no other handle on the app")
        .close()
        .expect("close");
}

/// The daemon's healing loop (`daemon::serve`'s), on its own multi-threaded tokio runtime.
struct Watcher {
    rt: tokio::runtime::Runtime,
    state: ApiState,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    cycles: Arc<AtomicU64>,
}

impl Watcher {
    /// Starts the loop and returns once its first cycle (every tier) has finished.
    fn start(app: Arc<App>) -> Watcher {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let state = ApiState {
            metrics: Arc::new(Metrics::new(app.started_at_us())),
            app,
        };
        let interval = Duration::from_millis(state.app.config().checks.shallow_interval_ms);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let cycles = Arc::new(AtomicU64::new(0));
        let (s, n) = (state.clone(), cycles.clone());
        let task = rt.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => return,
                }
                if *stopped.borrow() {
                    return;
                }
                if let Err(e) = api::run_cycle(&s, None).await {
                    eprintln!("healing cycle: {}", e.message);
                }
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        while cycles.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        Watcher {
            rt,
            state,
            stop,
            task: Some(task),
            cycles,
        }
    }

    fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::SeqCst)
    }

    /// Stops the loop, waiting for a running cycle to finish.
    fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            self.rt.block_on(t).expect("healing loop");
        }
    }

    /// One cycle now, as the loop runs it.
    fn cycle_once(&self) {
        self.rt
            .block_on(api::run_cycle(&self.state, None))
            .expect("cycle");
    }
}

fn search(c: &mut Criterion, app: &App, mode: &str) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let query = vector(&mut rng);
    let mut g = c.benchmark_group(format!("overhead/search_k{K}_{N_DOCS}docs_dim{DIM}"));
    g.sample_size(30)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));
    g.bench_function(mode, |b| {
        b.iter(|| {
            let hits = index_vector::scan::search_store(
                app.store(),
                store::collection::DEFAULT,
                &query,
                K,
                index_vector::Metric::Cosine,
                &|_| true,
            )
            .expect("search");
            assert_eq!(hits.len(), K);
            hits
        })
    });
    g.finish();
}

fn put(c: &mut Criterion, app: &App, mode: &str) {
    let mut g = c.benchmark_group("overhead/durable_put_1KiB_1_writer");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));
    let store = app.store();
    let mut i = 0u64;
    g.bench_function(mode, |b| {
        b.iter(|| {
            i += 1;
            store.put(&put_id(i), Document::text(text(i))).expect("put")
        })
    });
    g.finish();
    // Back to the same N_DOCS documents, so every search scans the same store.
    for j in 0..PUT_IDS.min(i + 1) {
        store.delete(&put_id(j)).expect("delete");
    }
    assert_eq!(store.count() as u64, N_DOCS);
}

/// The id of the `i`th put: `PUT_IDS` ids, overwritten in turn.
fn put_id(i: u64) -> String {
    format!("p{:04}", i % PUT_IDS)
}

fn overhead(c: &mut Criterion) {
    let (_off_dir, off) = filled_app();
    let (_on_dir, on) = filled_app();
    search(c, &off, "healing_off");
    put(c, &off, "healing_off");

    let mut watcher = Watcher::start(on.clone());
    let (cycles0, checks0) = (watcher.cycles(), on.engine().metrics().checks_run);
    search(c, &on, "healing_on");
    put(c, &on, "healing_on");
    let (cycles1, checks1) = (watcher.cycles(), on.engine().metrics().checks_run);
    watcher.stop();
    println!(
        "healing_on: {} cycles and {} checks ran during the search and put measurements (after the first cycle); \
         interval {} ms",
        cycles1 - cycles0,
        checks1 - checks0,
        on.config().checks.shallow_interval_ms
    );

    // Off again after on: a drift of the machine's load between the two shows as a difference between the offs.
    search(c, &off, "healing_off_again");
    put(c, &off, "healing_off_again");
    close(off);

    let mut g = c.benchmark_group("overhead/heal_cycle");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.bench_function("steady_state", |b| b.iter(|| watcher.cycle_once()));
    g.finish();
    drop(watcher);
    close(on);
}

criterion_group!(benches, overhead);
criterion_main!(benches);
