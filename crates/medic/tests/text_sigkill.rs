//! SIGKILL while the text index commits, against the real `medic serve`: writers (single puts and bulk loads) keep
//! the index committing (every 250 ms or 1,000 documents) while the daemon is killed at seeded moments, again and
//! again. After every restart each document acknowledged in the life just killed (and a seeded sample of earlier
//! ones; after the last restart every acknowledged document) is found by a strong-consistency search for the unique
//! token it holds (exactly once: `total` 1), a token every document holds counts exactly the documents the
//! collection has (nothing indexed twice, nothing lost), and the full-tier checks of the derived indexes pass.
//!
//! The seed is printed; `MEDIC_TEST_SEED=N` replays a run's timing.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, agent, wait_for};

/// Daemon lives, each ended by SIGKILL.
const KILLS: u64 = 5;
/// Documents per bulk load.
const BULK: usize = 100;
/// Pause between bulk loads: about 4,000 documents a second, so the index still commits several times a second (every
/// 250 ms or 1,000 documents) while each life acknowledges thousands of documents rather than tens of thousands,
/// every one of which is searched for again.
const BULK_PAUSE: Duration = Duration::from_millis(25);
/// Documents of earlier lives checked again after each kill (a seeded sample; every document of the life just
/// killed is checked, and every document of every life after the last kill).
const EARLIER_CHECKED: usize = 2_000;

/// splitmix64: the seeded timing.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The unique token of document `id` (ids are `r<life>w<writer>n<k>`).
fn token(id: &str) -> String {
    format!("tok{id}")
}

fn text_of(id: &str) -> String {
    format!("killtest {} alpha beta gamma", token(id))
}

/// Writer threads for one life of the daemon: `singles` threads putting one document at a time and one thread
/// bulk-loading [`BULK`] at a time; every acknowledged id is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, life: u64, singles: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut threads = Vec::new();
        for w in 0..singles {
            let (url, stop, acked) = (url.to_string(), stop.clone(), acked.clone());
            threads.push(std::thread::spawn(move || {
                let agent = agent();
                for k in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let id = format!("r{life}w{w}n{k}");
                    let r = agent
                        .put(&format!("{url}/v1/docs/{id}"))
                        .header("Content-Type", "application/json")
                        .send(json!({"text": text_of(&id)}).to_string());
                    match r {
                        Ok(mut resp) if resp.status() == 200 => {
                            let _ = resp.body_mut().read_to_string();
                            acked.lock().unwrap().push(id);
                        }
                        Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                        Err(_) => return,
                    }
                }
            }));
        }
        let (url, stop2, acked2) = (url.to_string(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let agent = agent();
            for b in 0.. {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let ids: Vec<String> = (0..BULK).map(|k| format!("r{life}wbn{b}x{k}")).collect();
                let body: String = ids
                    .iter()
                    .map(|id| format!("{}\n", json!({"id": id, "text": text_of(id)})))
                    .collect();
                let r = agent
                    .post(&format!("{url}/v1/docs"))
                    .header("Content-Type", "application/x-ndjson")
                    .send(body.as_bytes());
                match r {
                    Ok(mut resp) if resp.status() == 200 => {
                        let _ = resp.body_mut().read_to_string();
                        acked2.lock().unwrap().extend(ids);
                        std::thread::sleep(BULK_PAUSE);
                    }
                    Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => return,
                }
            }
        }));
        Load {
            stop,
            acked,
            threads,
        }
    }

    fn acked_len(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

fn strong(d: &Daemon, q: &str, k: usize) -> Value {
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"text": q, "k": k, "consistency": "strong", "timeout_ms": 10_000})),
    );
    assert_eq!(s, 200, "{q}: {v}\nstderr:\n{}", d.stderr());
    v
}

/// Documents the collection `default` holds, as the store counts them.
fn stored(d: &Daemon) -> u64 {
    let (s, v) = d.json("GET", "/v1/collections/default", None);
    assert_eq!(s, 200, "{v}");
    v["documents"]
        .as_u64()
        .or_else(|| v["count"].as_u64())
        .unwrap_or_else(|| panic!("no document count in {v}"))
}

/// Every document of `check` found exactly once by its token, `total` of the shared token exact (the collection
/// holding at least the `acked` documents acknowledged so far), the derived indexes' full-tier checks passing.
fn verify(d: &Daemon, check: &BTreeSet<String>, acked: usize, life: u64, seed: u64) {
    let t0 = Instant::now();
    wait_for(
        "the text index answering after restart",
        Duration::from_secs(120),
        || {
            let (s, v) = d.json(
                "POST",
                "/v1/search",
                Some(&json!({"text": "killtest", "k": 1, "consistency": "strong", "timeout_ms": 10_000})),
            );
            (s == 200 && v["index"] == "text").then_some(())
        },
    );
    let mut wrong = Vec::new();
    for id in check {
        let v = strong(d, &token(id), 5);
        let hits: Vec<&str> = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        if hits != [id.as_str()] || v["total"] != 1 || v["index"] != "text" {
            wrong.push(format!(
                "{id}: hits {hits:?} total {} index {}",
                v["total"], v["index"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "seed {seed}, after kill {life}: {} of {} acknowledged documents not found exactly once, e.g. {:?}",
        wrong.len(),
        check.len(),
        &wrong[..wrong.len().min(10)]
    );
    let n = stored(d);
    let v = strong(d, "killtest", 1);
    assert_eq!(
        v["total"].as_u64(),
        Some(n),
        "seed {seed}, after kill {life}: the shared token's total against the collection's {n} documents: {v}"
    );
    assert!(n >= acked as u64, "seed {seed}: {n} stored < {acked} acked");
    let (_, h) = d.json("GET", "/v1/health?tier=full", None);
    let failed: Vec<&Value> = h["results"]
        .as_array()
        .or_else(|| h["checks"].as_array())
        .unwrap_or_else(|| panic!("no check results in {h}"))
        .iter()
        .filter(|c| c.to_string().contains("derived") && c["passed"] == false)
        .collect();
    assert!(
        failed.is_empty(),
        "seed {seed}, after kill {life}: derived checks failed: {failed:?}"
    );
    eprintln!(
        "after kill {life}: {} of {acked} acknowledged documents checked, each found once, total {n} exact, \
         checks pass ({:?})",
        check.len(),
        t0.elapsed()
    );
}

#[test]
fn sigkill_during_index_commits_loses_and_doubles_nothing() {
    let seed = std::env::var("MEDIC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (MEDIC_TEST_SEED={seed} replays the timing)");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut acked = BTreeSet::new();
    let mut last_life: Vec<String> = Vec::new();
    for life in 0..KILLS {
        let d = Daemon::start(&data, tmp.path());
        if life > 0 {
            // The life just killed in full; earlier lives by a seeded sample (all of them are checked at the end).
            let mut check: BTreeSet<String> = last_life.iter().cloned().collect();
            let earlier: Vec<&String> = acked.iter().filter(|id| !check.contains(*id)).collect();
            for _ in 0..EARLIER_CHECKED.min(earlier.len()) {
                check.insert(earlier[rng.below(earlier.len() as u64) as usize].clone());
            }
            verify(&d, &check, acked.len(), life, seed);
        }
        let load = Load::start(&d.url, life, 2);
        // At least one commit's worth acknowledged, then a kill somewhere in the following commits.
        wait_for("writes acknowledged", Duration::from_secs(60), || {
            (load.acked_len() >= 50).then_some(())
        });
        let wait = 100 + rng.below(1_400);
        std::thread::sleep(Duration::from_millis(wait));
        let before = load.acked_len();
        d.kill9();
        let got = load.finish();
        eprintln!(
            "life {life}: killed {wait} ms after the first 50 acks, {} acknowledged ({before} when the signal went)",
            got.len()
        );
        acked.extend(got.iter().cloned());
        last_life = got;
    }
    let d = Daemon::start(&data, tmp.path());
    verify(&d, &acked, acked.len(), KILLS, seed);
    d.stop();
}
