//! Bulk loads, collections and configuration reloads attacked black-box through the real `medic serve`, the way a
//! failing machine or a careless operator would:
//!
//! - **bulk NDJSON loads into indexed collections while the disk fills**: a small tmpfs (free-space guards off) is
//!   run into ENOSPC by bulk loads into two collections with text and vector indexes, then space is freed. Every
//!   acknowledged bulk is whole, every refused one wrote exactly what its answer says (nothing), reads go on while
//!   full, writes come back without a human, and after healing and a SIGKILL and restart every acknowledged document
//!   reads back byte for byte and the text and vector searches agree with the documents;
//!   The same with a SIGKILL while the device is full and a start on it; collections created and dropped (two
//!   clients at once) and `medic load` run while it is full: each done or refused naming why, never half;
//! - **SIGKILL amid concurrent bulk loads into several collections** of other dimensions and indexes, and SIGTERM
//!   amid large ones (a clean stop);
//! - **a collection dropped under a bulk load into it and recreated with another dimension**, and **the same
//!   collection created at once by two clients with different settings**;
//! - **SIGHUP with a broken configuration** (does not parse, half-written, a directory, a dangling symlink, a symlink
//!   loop, values out of range, not UTF-8) under bulk loads: the old configuration stays, the log says what was
//!   wrong, no write is lost; a good reload applies `engine.dry_run` at once and logs the rest as needing a restart;
//!   a storm of SIGHUPs over good and broken files settles on the last good one;
//! - **huge inputs**: a bulk body past `http.bulk_body_bytes_max` (declared and chunked), more lines than
//!   `http.bulk_docs_max`, a line past the text or meta limit, ids and collection names at and past their limits,
//!   meta nested deep: a 4xx naming the limit, nothing written.
//!
//! Seeds come from `MEDIC_ATTACK_SEED` and are printed. A break of a documented promise is kept as an `#[ignore]`d
//! test with what happens in its reason.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, Rng, agent, tail, wait_for};

fn seed(default: u64) -> u64 {
    let s = support::attack_seed(default);
    eprintln!("seed {s} (MEDIC_ATTACK_SEED={s} replays it)");
    s
}

/// Checks fast enough for a test; 64 KiB segments and a 2 MiB log, so segments seal and snapshots are written while
/// the bulks load; failed repairs retried after a second.
const FAST: &str = "[checks]\nshallow_interval_ms = 100\ndeep_interval_ms = 300\ncomprehensive_interval_ms = 1000\n\n\
                    [constraints]\nwal_bytes_max = 2097152\nsegment_bytes_max = 65536\n";
const ENGINE: &str = "escalated_recheck_us = 1000000\nstrategy_cooldown_us = 1000000\n";

/// Writes `<dir>/medic.toml`: [`FAST`], `constraints` under `[constraints]`, `engine` under `[engine]`, `http` under
/// `[http]`.
fn config(dir: &Path, constraints: &str, engine: &str, http: &str) -> PathBuf {
    let path = dir.join("medic.toml");
    std::fs::write(&path, config_text(constraints, engine, http)).unwrap();
    path
}

fn config_text(constraints: &str, engine: &str, http: &str) -> String {
    format!("{FAST}{constraints}\n[engine]\n{ENGINE}{engine}\n[http]\n{http}\n")
}

fn start(data: &Path, logs: &Path, cfg: &Path) -> Daemon {
    support::start_with_config_file(data, logs, cfg)
}

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A command run on drop (an unmount).
struct Undo(String);

impl Drop for Undo {
    fn drop(&mut self) {
        let _ = sh(&self.0);
    }
}

/// A tmpfs of `size` (e.g. `24m`) mounted at `<dir>/mnt`, unmounted when the guard drops.
fn mount_tmpfs(dir: &Path, size: &str) -> (PathBuf, Undo) {
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (ok, out) = sh(&format!(
        "mount -t tmpfs -o size={size} tmpfs {}",
        mnt.display()
    ));
    assert!(ok, "mount tmpfs: {out}");
    let undo = Undo(format!("umount -l {}", mnt.display()));
    (mnt, undo)
}

/// The lines of the daemon's stderr that are not INFO.
fn warnings(d: &Daemon, lines: usize) -> String {
    let s = d.stderr();
    let v: Vec<&str> = s.lines().filter(|l| !l.contains(" INFO ")).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn status(d: &Daemon) -> Value {
    let (s, st) = d.json("GET", "/v1/status", None);
    assert_eq!(s, 200, "{st}");
    st
}

fn assert_nothing_lost(d: &Daemon, what: &str) {
    let st = status(d);
    let n = st["store"]["lost"].as_array().map_or(0, Vec::len)
        + st["recovery"]["lost"].as_array().map_or(0, Vec::len);
    assert_eq!(
        n, 0,
        "{what}: a loss reported: store.lost {}, recovery.lost {}",
        st["store"]["lost"], st["recovery"]["lost"]
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Documents, bulk bodies and what was acknowledged.
// ---------------------------------------------------------------------------------------------------------------

/// A vector component exactly representable in `f32` (so it reads back with the same digits).
fn component(rng: &mut Rng) -> f64 {
    (1 + rng.below(2048)) as f64 / 64.0
}

/// The word only document `id` of collection `c` holds (letters and digits: one token).
fn token(c: &str, id: &str) -> String {
    format!(
        "tok{}{}",
        c.replace(['_', '-'], ""),
        id.replace(['_', '-'], "")
    )
}

/// A document of collection `c`: text with its own token (and `pad` bytes more), a vector of `dim`, meta.
fn make_doc(rng: &mut Rng, c: &str, id: &str, dim: usize, pad: usize) -> Value {
    let mut text = format!("{} bulk load under attack", token(c, id));
    while text.len() < pad {
        text.push_str(" filler words");
    }
    let vector: Vec<f64> = (0..dim).map(|_| component(rng)).collect();
    json!({"text": text, "vector": vector, "meta": {"c": c, "id": id, "n": rng.below(1000)}})
}

fn ndjson(docs: &[(String, Value)]) -> String {
    docs.iter()
        .map(|(id, d)| {
            let mut line = d.clone();
            line["id"] = json!(id);
            format!("{line}\n")
        })
        .collect()
}

/// What a client saw for one request.
#[derive(Debug, Clone)]
enum Outcome {
    Acked(Value),
    Refused(u16, String),
    NoAnswer(String),
}

fn send(agent: &ureq::Agent, method: &str, url: &str, ct: &str, body: Option<String>) -> Outcome {
    let r = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        ("PUT", Some(b)) => agent.put(url).header("Content-Type", ct).send(b),
        ("POST", Some(b)) => agent.post(url).header("Content-Type", ct).send(b),
        _ => panic!("unsupported {method}"),
    };
    match r {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            if status == 200 || status == 201 {
                Outcome::Acked(serde_json::from_str(&text).unwrap_or(json!({"raw": text})))
            } else {
                Outcome::Refused(status, text)
            }
        }
        Err(e) => Outcome::NoAnswer(e.to_string()),
    }
}

/// One bulk body sent: its collection, documents and answer.
#[derive(Debug, Clone)]
struct Bulk {
    c: String,
    docs: Vec<(String, Value)>,
    outcome: Outcome,
    started: Instant,
    answered: Instant,
}

/// Loader threads, one per collection, posting bulk bodies until stopped.
struct Loaders {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    bulks: Arc<Mutex<Vec<Bulk>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Loaders {
    /// One thread per `(collection, dimension)`, bodies of 1..=`max_docs` documents of about `pad` text bytes;
    /// after a refusal a loader waits 50 ms; it stops at the first unanswered request when `end_on_no_answer`.
    fn start(
        url: &str,
        collections: &[(&str, usize)],
        seed: u64,
        max_docs: u64,
        pad: usize,
        end_on_no_answer: bool,
    ) -> Loaders {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let bulks: Arc<Mutex<Vec<Bulk>>> = Arc::default();
        let threads = collections
            .iter()
            .enumerate()
            .map(|(k, &(c, dim))| {
                let (url, c) = (url.to_string(), c.to_string());
                let (stop, acked, bulks) = (stop.clone(), acked.clone(), bulks.clone());
                std::thread::spawn(move || {
                    let agent = agent();
                    let mut rng = Rng::new(seed ^ ((k as u64 + 1) * 0x9E37));
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let count = 1 + rng.below(max_docs);
                        let docs: Vec<(String, Value)> = (0..count)
                            .map(|_| {
                                n += 1;
                                let id = format!("b{n}");
                                let d = make_doc(&mut rng, &c, &id, dim, pad);
                                (id, d)
                            })
                            .collect();
                        let started = Instant::now();
                        let outcome = send(
                            &agent,
                            "POST",
                            &format!("{url}/v1/collections/{c}/docs"),
                            "application/x-ndjson",
                            Some(ndjson(&docs)),
                        );
                        let answered = Instant::now();
                        let (ok, none) = (
                            matches!(outcome, Outcome::Acked(_)),
                            matches!(outcome, Outcome::NoAnswer(_)),
                        );
                        if ok {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        bulks.lock().unwrap().push(Bulk {
                            c: c.clone(),
                            docs,
                            outcome,
                            started,
                            answered,
                        });
                        if none && end_on_no_answer {
                            return;
                        }
                        if !ok {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                })
            })
            .collect();
        Loaders {
            stop,
            acked,
            bulks,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    fn finish(mut self) -> Vec<Bulk> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.bulks.lock().unwrap())
    }
}

fn summary(bulks: &[Bulk]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for b in bulks {
        let k = match &b.outcome {
            Outcome::Acked(_) => "acked".to_string(),
            Outcome::Refused(s, _) => format!("refused {s}"),
            Outcome::NoAnswer(_) => "unanswered".to_string(),
        };
        *by.entry(k).or_default() += 1;
    }
    format!(
        "{} bulks ({} documents): {by:?}",
        bulks.len(),
        bulks.iter().map(|b| b.docs.len()).sum::<usize>()
    )
}

/// The document as read back (`None` when 404); panics on any other answer but a 503 (returned as an error).
fn read_doc(d: &Daemon, c: &str, id: &str) -> Result<Option<Value>, String> {
    let (s, _, text) = d.request("GET", &format!("/v1/collections/{c}/docs/{id}"), None);
    match s {
        200 => {
            let mut v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            v.as_object_mut().unwrap().remove("id");
            Ok(Some(v))
        }
        404 => Ok(None),
        _ => Err(format!("GET {c}/{id}: {s} {text}")),
    }
}

/// Every document of every acknowledged bulk reads back exactly (the last acknowledged line of an id wins); what
/// differs, at most 10 named.
fn check_acked(d: &Daemon, bulks: &[Bulk]) -> Vec<String> {
    let mut want: BTreeMap<(String, String), Value> = BTreeMap::new();
    for b in bulks {
        if matches!(b.outcome, Outcome::Acked(_)) {
            for (id, doc) in &b.docs {
                want.insert((b.c.clone(), id.clone()), doc.clone());
            }
        }
    }
    let mut bad = Vec::new();
    for ((c, id), doc) in &want {
        match read_doc(d, c, id) {
            Ok(Some(got)) if &got == doc => {}
            Ok(Some(got)) => bad.push(format!("{c}/{id}: differs: {got}")),
            Ok(None) => bad.push(format!("{c}/{id}: acknowledged, 404")),
            Err(e) => bad.push(e),
        }
    }
    bad
}

/// For each refused or unanswered bulk, how many of its documents are stored: `(refused partial, unanswered
/// partial)` descriptions. A refused bulk must have stored nothing (or exactly what its answer says it wrote).
fn check_unacked(d: &Daemon, bulks: &[Bulk]) -> (Vec<String>, Vec<String>) {
    let acked_ids: BTreeSet<(String, String)> = bulks
        .iter()
        .filter(|b| matches!(b.outcome, Outcome::Acked(_)))
        .flat_map(|b| b.docs.iter().map(|(id, _)| (b.c.clone(), id.clone())))
        .collect();
    let (mut refused_bad, mut unanswered) = (Vec::new(), Vec::new());
    for b in bulks {
        let present = b
            .docs
            .iter()
            .filter(|(id, doc)| {
                !acked_ids.contains(&(b.c.clone(), id.clone()))
                    && read_doc(d, &b.c, id).unwrap().as_ref() == Some(doc)
            })
            .count();
        match &b.outcome {
            Outcome::Acked(_) => {}
            Outcome::Refused(s, body) => {
                let said: usize = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v["written"].as_u64())
                    .unwrap_or(0) as usize;
                if present != said {
                    refused_bad.push(format!(
                        "{}: a refused bulk of {} documents ({s} {body}) left {present} stored",
                        b.c,
                        b.docs.len()
                    ));
                }
            }
            Outcome::NoAnswer(_) => {
                if present != 0 {
                    unanswered.push(format!(
                        "{}: an unanswered bulk of {} left {present} stored",
                        b.c,
                        b.docs.len()
                    ));
                }
            }
        }
    }
    (refused_bad, unanswered)
}

/// Waits until every index of `c` is current with no lag.
fn wait_indexes_current(d: &Daemon, c: &str, secs: u64) {
    wait_for(
        &format!("the indexes of {c} current"),
        Duration::from_secs(secs),
        || {
            let (s, v) = d.json("GET", &format!("/v1/collections/{c}"), None);
            (s == 200
                && v["indexes"].as_array().is_some_and(|a| {
                    a.iter()
                        .all(|i| i["state"] == "current" && i["lag_records"] == 0)
                }))
            .then_some(())
        },
    );
}

fn search(d: &Daemon, c: &str, q: Value) -> (u16, Value) {
    d.json("POST", &format!("/v1/collections/{c}/search"), Some(&q))
}

/// The text and vector searches of `c` agree with what is stored: for up to `sample` documents stored, its own
/// token finds exactly it, and an exact vector search with its vector finds it (or an equal vector) first; for up to
/// `sample` documents not stored (refused), its token finds nothing. What disagrees.
fn check_searches(
    d: &Daemon,
    c: &str,
    stored: &[(String, Value)],
    absent: &[String],
    sample: usize,
    rng: &mut Rng,
) -> Vec<String> {
    let mut bad = Vec::new();
    for _ in 0..sample.min(stored.len()) {
        let (id, doc) = &stored[rng.index(stored.len())];
        let (s, v) = search(
            d,
            c,
            json!({"text": token(c, id), "k": 5, "consistency": "strong"}),
        );
        let ids: Vec<String> = if s == 200 {
            support::hit_ids(&v)
        } else {
            vec![]
        };
        if s != 200 || ids != vec![id.clone()] {
            bad.push(format!("{c}: text {} → {s} {v}", token(c, id)));
        }
        let (s, v) = search(
            d,
            c,
            json!({"vector": doc["vector"], "k": 3, "exact": true, "include": ["meta"]}),
        );
        let top_ok = s == 200
            && v["hits"].as_array().is_some_and(|h| {
                h.iter().any(|h| h["id"] == json!(id))
                    || h.first()
                        .is_some_and(|h| h["score"].as_f64() >= Some(0.99999))
            });
        if !top_ok {
            bad.push(format!("{c}: exact vector of {id} → {s} {v}"));
        }
    }
    for _ in 0..sample.min(absent.len()) {
        let id = &absent[rng.index(absent.len())];
        let (s, v) = search(
            d,
            c,
            json!({"text": token(c, id), "k": 5, "consistency": "strong"}),
        );
        if s != 200 || !v["hits"].as_array().is_some_and(Vec::is_empty) {
            bad.push(format!("{c}: text of absent {id} → {s} {v}"));
        }
    }
    bad
}

/// Documents of `c` stored (acknowledged) and absent (refused, never acknowledged under another bulk).
fn stored_and_absent(bulks: &[Bulk], c: &str) -> (Vec<(String, Value)>, Vec<String>) {
    let mut stored: BTreeMap<String, Value> = BTreeMap::new();
    for b in bulks.iter().filter(|b| b.c == c) {
        if matches!(b.outcome, Outcome::Acked(_)) {
            for (id, doc) in &b.docs {
                stored.insert(id.clone(), doc.clone());
            }
        }
    }
    let absent = bulks
        .iter()
        .filter(|b| b.c == c && matches!(b.outcome, Outcome::Refused(..)))
        .flat_map(|b| b.docs.iter().map(|(id, _)| id.clone()))
        .filter(|id| !stored.contains_key(id))
        .collect();
    (stored.into_iter().collect(), absent)
}

/// Waits until no bulk was acknowledged for 2 s (the device full); the bulks acknowledged by then.
fn wait_full(loaders: &Loaders) -> usize {
    let deadline = Instant::now() + Duration::from_secs(40);
    let (mut last, mut still) = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let a = loaders.acked();
        if a != last {
            (last, still) = (a, Instant::now());
        }
        if still.elapsed() > Duration::from_secs(2) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "the device never filled: {a} bulks acknowledged"
        );
    }
}

fn create(d: &Daemon, c: &str, settings: Value) {
    let (s, v) = d.json("PUT", &format!("/v1/collections/{c}"), Some(&settings));
    assert_eq!(s, 201, "create {c}: {v}");
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Bulk loads into indexed collections while a small tmpfs fills, then space returns.
// ---------------------------------------------------------------------------------------------------------------

/// A 24 MiB tmpfs holding the data directory, the free-space guards off, a daemon on it with `ta` (3 dimensions,
/// HNSW and text) and `tb` (5 dimensions, IVF and text), and a 19 MiB ballast written beside them, so bulk loads run
/// the device into ENOSPC themselves.
struct FillingDisk {
    mnt: PathBuf,
    _umount: Undo,
    data: PathBuf,
    cfg: PathBuf,
    d: Daemon,
    ballast: PathBuf,
}

fn filling_disk(dir: &Path) -> FillingDisk {
    let (mnt, umount) = mount_tmpfs(dir, "24m");
    let data = mnt.join("data");
    let cfg = config(
        dir,
        "disk_free_bytes_min = 0\ndisk_free_critical_bytes_min = 0\n",
        "",
        "",
    );
    let d = start(&data, dir, &cfg);
    create(&d, "ta", json!({"dimension": 3}));
    create(
        &d,
        "tb",
        json!({"dimension": 5, "index": "ivf", "ivf": {"lists": 2, "probes": 2}}),
    );
    let ballast = mnt.join("ballast");
    let (_, out) = sh(&format!(
        "dd if=/dev/zero of={} bs=1M count=19 2>&1; df -k {}",
        ballast.display(),
        mnt.display()
    ));
    eprintln!("ballast: {}", tail(&out, 2));
    FillingDisk {
        mnt,
        _umount: umount,
        data,
        cfg,
        d,
        ballast,
    }
}

/// A tmpfs of 24 MiB holds the data directory and a ballast that leaves a few MiB; the free-space guards are off, so
/// bulk loads into `ta` (HNSW and text) and `tb` (IVF and text, 5 dimensions) run the device into ENOSPC themselves.
/// While full: every bulk is refused with a 503 naming why and leaves nothing (or what its answer says), reads and
/// searches go on. The ballast removed: bulks are acknowledged again without a human. Then the indexes catch up and
/// agree with the documents; SIGKILL and a restart: every acknowledged document reads back byte for byte, nothing
/// is reported lost, the searches still agree.
#[test]
fn bulk_loads_into_indexed_collections_on_a_filling_disk_are_whole_or_absent_and_heal() {
    let seed = seed(0xB01C_5BA7);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let FillingDisk {
        mnt,
        _umount,
        data,
        cfg,
        d,
        ballast,
    } = filling_disk(tmp.path());
    let loaders = Loaders::start(&d.url, &[("ta", 3), ("tb", 5)], seed, 40, 300, false);
    let last = wait_full(&loaders);
    let (_, df) = sh(&format!("df -k {}", mnt.display()));
    eprintln!("full after {last} acknowledged bulks: {}", tail(&df, 1));
    // Reads and searches go on while full.
    let (s, v) = d.json("GET", "/v1/collections/ta/docs/b1", None);
    assert!(s == 200 || s == 404, "read while full: {s} {v}");
    let (s, v) = search(&d, "ta", json!({"text": "bulk", "k": 3}));
    assert_eq!(s, 200, "text search while full: {v}");
    let (s, v) = search(&d, "tb", json!({"vector": [1, 2, 3, 4, 5], "k": 3}));
    assert_eq!(s, 200, "vector search while full: {v}");
    let st = status(&d);
    let (hs, health) = d.json("GET", "/health", None);
    eprintln!(
        "while full: state {}; store.read_only {}; store.disk_free_bytes {}; active incidents {}; /health {hs} {health}",
        st["state"],
        st["store"]["read_only"],
        st["store"]["disk_free_bytes"],
        st["active_incidents"].as_array().map_or(0, Vec::len)
    );
    // Space returns: bulks are acknowledged again without a human.
    std::fs::remove_file(&ballast).unwrap();
    let since = loaders.acked();
    let deadline = Instant::now() + Duration::from_secs(40);
    while loaders.acked() < since + 6 {
        assert!(
            Instant::now() < deadline,
            "bulks not acknowledged again within 40 s of space returning ({} since {since}); status {}; log:\n{}",
            loaders.acked(),
            status(&d),
            warnings(&d, 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let bulks = loaders.finish();
    eprintln!("{}", summary(&bulks));
    let mut refusals = BTreeMap::new();
    for b in &bulks {
        match &b.outcome {
            Outcome::Refused(s, body) => {
                refusals.entry(*s).or_insert_with(|| body.clone());
            }
            Outcome::NoAnswer(e) => panic!("a bulk got no answer from a running daemon: {e}"),
            Outcome::Acked(_) => {}
        }
    }
    eprintln!("refusals: {refusals:?}");
    for (s, body) in &refusals {
        assert_eq!(*s, 503, "a bulk on a full disk answered {s}: {body}");
        let e: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert!(
            e["error"]
                .as_str()
                .is_some_and(|m| m.contains("space") || m.contains("read-only")),
            "a refusal not saying why: {body}"
        );
    }
    assert!(!refusals.is_empty(), "the full disk refused no bulk");
    for c in ["ta", "tb"] {
        wait_indexes_current(&d, c, 40);
    }
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "after space returned: {bad:?}");
    let (refused_bad, unanswered) = check_unacked(&d, &bulks);
    assert!(refused_bad.is_empty(), "{refused_bad:?}");
    assert!(unanswered.is_empty(), "{unanswered:?}");
    for c in ["ta", "tb"] {
        let (stored, absent) = stored_and_absent(&bulks, c);
        let bad = check_searches(&d, c, &stored, &absent, 15, &mut rng);
        assert!(bad.is_empty(), "searches after healing: {bad:?}");
        let (_, v) = d.json("GET", &format!("/v1/collections/{c}"), None);
        assert_eq!(
            v["documents"].as_u64(),
            Some(stored.len() as u64),
            "{c}: document count against the acknowledged documents: {v}"
        );
    }
    d.kill9();
    let d = start(&data, tmp.path(), &cfg);
    assert_nothing_lost(&d, "after SIGKILL");
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "after SIGKILL and restart: {bad:?}");
    for c in ["ta", "tb"] {
        wait_indexes_current(&d, c, 40);
        let (stored, absent) = stored_and_absent(&bulks, c);
        let bad = check_searches(&d, c, &stored, &absent, 10, &mut rng);
        assert!(bad.is_empty(), "searches after restart: {bad:?}");
    }
    d.stop();
}

/// Bulk loads into `ta` and `tb` fill the tmpfs; SIGKILL while bodies are refused or in flight; a start on the
/// still-full device (it may serve or refuse, naming why: it must not lose or damage anything); then space freed and
/// a start: nothing reported lost, every acknowledged document byte for byte, no refused body stored, the indexes
/// agreeing with the documents.
#[test]
fn sigkill_while_bulk_loads_fill_the_disk_then_a_start_on_the_full_disk_loses_nothing() {
    let seed = seed(0xF011_D15C);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let FillingDisk {
        mnt: _,
        _umount,
        data,
        cfg,
        d,
        ballast,
    } = filling_disk(tmp.path());
    let loaders = Loaders::start(&d.url, &[("ta", 3), ("tb", 5)], seed, 40, 300, false);
    let full = wait_full(&loaders);
    std::thread::sleep(Duration::from_millis(rng.below(300)));
    d.kill9();
    let bulks = loaders.finish();
    eprintln!(
        "full after {full} acknowledged bulks, then SIGKILL: {}",
        summary(&bulks)
    );
    // A start on the full device: serving or refusing, it must not lose or damage anything.
    let mut child = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "a start on the full device ({}): {}",
        exited.map_or("still running after 3 s".into(), |s| s.to_string()),
        tail(&String::from_utf8_lossy(&out.stderr), 4)
    );
    std::fs::remove_file(&ballast).unwrap();
    let d = start(&data, tmp.path(), &cfg);
    assert_nothing_lost(&d, "after SIGKILL on a full disk");
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "after SIGKILL on a full disk: {bad:?}");
    let (refused_bad, unanswered) = check_unacked(&d, &bulks);
    assert!(refused_bad.is_empty(), "{refused_bad:?}");
    eprintln!("unanswered bulks partly stored: {unanswered:?}");
    for c in ["ta", "tb"] {
        wait_indexes_current(&d, c, 40);
        let (stored, absent) = stored_and_absent(&bulks, c);
        let bad = check_searches(&d, c, &stored, &absent, 10, &mut rng);
        assert!(bad.is_empty(), "searches after the restart: {bad:?}");
    }
    d.stop();
}

// ---------------------------------------------------------------------------------------------------------------
// 2. SIGKILL amid concurrent bulk loads into several collections.
// ---------------------------------------------------------------------------------------------------------------

/// Four loaders post bulks into three collections (3, 4 and 8 dimensions; HNSW, IVF with l2, flat only) and `default`; the
/// daemon is SIGKILLed at a seeded moment while bodies are in flight. After the restart every acknowledged document
/// reads back byte for byte, nothing is reported lost, the indexes catch up and agree with the documents, and the
/// collections' counts match what is stored.
#[test]
fn sigkill_amid_concurrent_bulk_loads_into_several_collections_loses_nothing() {
    let seed = seed(0x51C4_B01C);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = start(&data, tmp.path(), &cfg);
    create(&d, "k3", json!({"dimension": 3}));
    create(
        &d,
        "k4",
        json!({"dimension": 4, "index": "ivf", "ivf": {"lists": 2, "probes": 2}, "metric": "l2"}),
    );
    create(&d, "k8", json!({"dimension": 8, "index": "flat"}));
    let cols = [("k3", 3), ("k4", 4), ("k8", 8), ("default", 2)];
    let loaders = Loaders::start(&d.url, &cols, seed, 120, 200, true);
    let target = 6 + rng.below(10) as usize;
    wait_for("acknowledged bulks", Duration::from_secs(30), || {
        (loaders.acked() >= target).then_some(())
    });
    std::thread::sleep(Duration::from_millis(rng.below(150)));
    d.kill9();
    let bulks = loaders.finish();
    eprintln!("killed after {target}+ acknowledged: {}", summary(&bulks));
    let d = start(&data, tmp.path(), &cfg);
    assert_nothing_lost(&d, "after SIGKILL");
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "after SIGKILL amid bulks: {bad:?}");
    let (refused_bad, unanswered) = check_unacked(&d, &bulks);
    assert!(refused_bad.is_empty(), "{refused_bad:?}");
    // A body cut by the kill is not promised whole; how many were cut part-way is only reported.
    eprintln!("unanswered bulks partly stored: {unanswered:?}");
    for (c, _) in cols {
        wait_indexes_current(&d, c, 40);
        let (stored, _) = stored_and_absent(&bulks, c);
        let present_unacked: usize = bulks
            .iter()
            .filter(|b| b.c == c && matches!(b.outcome, Outcome::NoAnswer(_)))
            .flat_map(|b| b.docs.iter())
            .filter(|(id, _)| {
                !stored.iter().any(|(s, _)| s == id) && read_doc(&d, c, id).unwrap().is_some()
            })
            .count();
        let (_, v) = d.json("GET", &format!("/v1/collections/{c}"), None);
        assert_eq!(
            v["documents"].as_u64(),
            Some((stored.len() + present_unacked) as u64),
            "{c}: count against the documents read back: {v}"
        );
        if c != "default" {
            let bad = check_searches(&d, c, &stored, &[], 8, &mut rng);
            assert!(bad.is_empty(), "searches after the restart: {bad:?}");
        }
    }
    d.stop();
}

// ---------------------------------------------------------------------------------------------------------------
// 3. A collection dropped under a bulk load, recreated with another dimension; concurrent creations.
// ---------------------------------------------------------------------------------------------------------------

/// A loader posts 3-dimensional bulks into `dv` without pause; `dv` is dropped mid-way and recreated with 6
/// dimensions. Bodies sent after the drop was answered and answered before the recreation was asked for are 404s
/// naming `dv`; sent after the recreation they are 400s naming the dimension 6; nothing of the first incarnation is
/// visible in the second (documents, count, text search), and after a SIGKILL and restart that still holds and a
/// 6-dimensional bulk reads back.
#[test]
fn a_collection_dropped_under_a_bulk_load_and_recreated_with_another_dimension_leaks_nothing() {
    let seed = seed(0xD20B_B01C);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = start(&data, tmp.path(), &cfg);
    create(&d, "dv", json!({"dimension": 3}));
    let loaders = Loaders::start(&d.url, &[("dv", 3)], seed, 60, 100, false);
    wait_for("bulks into dv", Duration::from_secs(20), || {
        (loaders.acked() >= 3).then_some(())
    });
    let (s, v) = d.json("DELETE", "/v1/collections/dv", None);
    assert_eq!(s, 200, "drop under a bulk load: {v}");
    let dropped = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let recreating = Instant::now();
    let (s, v) = d.json("PUT", "/v1/collections/dv", Some(&json!({"dimension": 6})));
    assert_eq!(s, 201, "recreate with 6 dimensions: {v}");
    let recreated = Instant::now();
    std::thread::sleep(Duration::from_millis(400));
    let bulks = loaders.finish();
    eprintln!("{}", summary(&bulks));
    let mut bad = Vec::new();
    for b in &bulks {
        let after_drop = b.started > dropped;
        match &b.outcome {
            Outcome::Acked(a) if after_drop => bad.push(format!(
                "a 3-dimensional bulk sent after the drop acknowledged: {a}"
            )),
            Outcome::Refused(s, body) => {
                let wrong = if b.started > recreated {
                    *s != 400 || !body.contains('6') || !body.contains("dimension")
                } else if after_drop && b.answered < recreating {
                    *s != 404 || !body.contains("dv")
                } else {
                    false
                };
                if wrong {
                    bad.push(format!(
                        "sent {:?} after the drop, answered {:?} after the recreation: {s} {body}",
                        b.started.checked_duration_since(dropped),
                        b.answered.checked_duration_since(recreated)
                    ));
                }
            }
            Outcome::NoAnswer(e) => bad.push(format!("no answer: {e}")),
            _ => {}
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
    let check_second = |d: &Daemon, what: &str| {
        let (_, v) = d.json("GET", "/v1/collections/dv", None);
        assert_eq!(v["settings"]["dimension"], 6, "{what}: {v}");
        let mut leaks = Vec::new();
        for b in &bulks {
            for (id, _) in b.docs.iter().take(3) {
                if let Some(doc) = read_doc(d, "dv", id).unwrap() {
                    leaks.push(format!("{id}: {doc}"));
                }
            }
        }
        let (s, v) = search(
            d,
            "dv",
            json!({"text": "bulk", "k": 10, "consistency": "strong"}),
        );
        assert_eq!(s, 200, "{v}");
        for id in support::hit_ids(&v) {
            if !id.starts_with("new") {
                leaks.push(format!("text hit {id}"));
            }
        }
        assert!(
            leaks.is_empty(),
            "{what}: the first incarnation leaks: {leaks:?}"
        );
    };
    check_second(&d, "after the recreation");
    let mut rng = Rng::new(seed);
    let fresh: Vec<(String, Value)> = (0..20)
        .map(|i| {
            let id = format!("new{i}");
            let doc = make_doc(&mut rng, "dv", &id, 6, 50);
            (id, doc)
        })
        .collect();
    let (s, v) = d.post_ndjson("/v1/collections/dv/docs", &ndjson(&fresh));
    assert_eq!(s, 200, "a 6-dimensional bulk: {v}");
    let (_, v) = d.json("GET", "/v1/collections/dv", None);
    assert_eq!(
        v["documents"], 20,
        "only the second incarnation's documents: {v}"
    );
    d.kill9();
    let d = start(&data, tmp.path(), &cfg);
    assert_nothing_lost(&d, "after SIGKILL");
    check_second(&d, "after SIGKILL and restart");
    for (id, doc) in &fresh {
        assert_eq!(read_doc(&d, "dv", id).unwrap().as_ref(), Some(doc), "{id}");
    }
    let (_, v) = d.json("GET", "/v1/collections/dv", None);
    assert_eq!(v["documents"], 20, "{v}");
    d.stop();
}

/// Two clients create the same collection at the same moment, one with 3 dimensions and cosine, the other with 7
/// and l2, ten rounds. Exactly one gets 201, the other 409; the collection has the winner's settings (also after a
/// restart), and a vector of the loser's dimension is refused naming the winner's.
#[test]
fn the_same_collection_created_at_once_with_different_settings_has_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = start(&data, tmp.path(), &cfg);
    let settings = [
        json!({"dimension": 3, "metric": "cosine"}),
        json!({"dimension": 7, "metric": "l2", "indexes": ["flat", "text"], "index": "flat"}),
    ];
    let mut winners = BTreeMap::new();
    for round in 0..10 {
        let c = format!("race{round}");
        let barrier = Arc::new(Barrier::new(2));
        let answers: Vec<(u16, String)> = std::thread::scope(|s| {
            let hs: Vec<_> = settings
                .iter()
                .map(|set| {
                    let (url, c, b) = (d.url.clone(), c.clone(), barrier.clone());
                    s.spawn(move || {
                        let a = agent();
                        b.wait();
                        match send(
                            &a,
                            "PUT",
                            &format!("{url}/v1/collections/{c}"),
                            "application/json",
                            Some(set.to_string()),
                        ) {
                            Outcome::Acked(v) => (201, v.to_string()),
                            Outcome::Refused(s, t) => (s, t),
                            Outcome::NoAnswer(e) => (0, e),
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
        assert!(
            codes == [201, 409] || codes == [409, 201],
            "round {round}: {answers:?}"
        );
        let w = codes.iter().position(|&s| s == 201).unwrap();
        assert!(
            answers[1 - w].1.contains("error"),
            "the 409 names why: {answers:?}"
        );
        let (_, v) = d.json("GET", &format!("/v1/collections/{c}"), None);
        assert_eq!(v["settings"]["dimension"], settings[w]["dimension"], "{v}");
        assert_eq!(v["settings"]["metric"], settings[w]["metric"], "{v}");
        let loser_dim = settings[1 - w]["dimension"].as_u64().unwrap() as usize;
        let (s, v) = d.json(
            "PUT",
            &format!("/v1/collections/{c}/docs/x"),
            Some(&json!({"text": "x", "vector": vec![1.0; loser_dim]})),
        );
        let want = settings[w]["dimension"].to_string();
        assert!(
            s == 400 && v["error"].as_str().is_some_and(|e| e.contains(&want)),
            "a vector of the loser's dimension: {s} {v}"
        );
        winners.insert(c, w);
    }
    eprintln!("winners: {winners:?}");
    d.kill9();
    let d = start(&data, tmp.path(), &cfg);
    for (c, w) in &winners {
        let (_, v) = d.json("GET", &format!("/v1/collections/{c}"), None);
        assert_eq!(v["settings"]["dimension"], settings[*w]["dimension"], "{v}");
        assert_eq!(v["settings"]["metric"], settings[*w]["metric"], "{v}");
    }
    d.stop();
}

// ---------------------------------------------------------------------------------------------------------------
// 4. SIGHUP with a broken configuration file under bulk loads; a good reload.
// ---------------------------------------------------------------------------------------------------------------

type Damage = Box<dyn Fn(&Path)>;

fn case(
    what: &'static str,
    damage: Damage,
    names: &'static [&'static str],
) -> (&'static str, Damage, &'static [&'static str]) {
    (what, damage, names)
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Sends SIGHUP and waits for the reload's outcome in the log (a `configuration not reloaded` or `configuration
/// reloaded` line more than before); the log lines written since the signal.
fn reload(d: &Daemon) -> String {
    let before = d.stderr();
    let (nr, r) = (
        count(&before, "configuration not reloaded"),
        count(&before, "configuration reloaded"),
    );
    signal(d.child.id(), "-HUP");
    wait_for(
        "the reload's outcome in the log",
        Duration::from_secs(10),
        || {
            let now = d.stderr();
            (count(&now, "configuration not reloaded") > nr
                || count(&now, "configuration reloaded") > r)
                .then(|| now[before.len().min(now.len())..].to_string())
        },
    )
}

fn dry_run(d: &Daemon) -> bool {
    status(d)["dry_run"].as_bool().expect("status.dry_run")
}

/// The configuration file (`--config`) replaced by a file that does not parse, one cut half-way, a directory, a
/// dangling symlink, a symlink loop, values out of range and bytes that are not UTF-8 (each also setting
/// `engine.dry_run = true`), SIGHUP after each, under bulk loads into two collections: the daemon keeps running on
/// the old configuration (`dry_run` stays false), logs `configuration not reloaded` with what was wrong, and every
/// bulk is acknowledged. Then a good file: `engine.dry_run` applies at once, `http.bulk_docs_max` is logged as
/// needing a restart and keeps its running value until the restart, where it takes effect. Every acknowledged
/// document reads back after a SIGKILL and restart. (Root reads a file whatever its mode, so `chmod 000` is no
/// unreadable file here; the dangling link and the loop are.)
#[test]
fn a_broken_configuration_on_sighup_changes_nothing_and_loses_no_write() {
    let seed = seed(0x5167_4B0B);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let good = config_text("", "dry_run = false\n", "bulk_docs_max = 200\n");
    let cfg = config(tmp.path(), "", "dry_run = false\n", "bulk_docs_max = 200\n");
    let d = start(&data, tmp.path(), &cfg);
    create(&d, "h1", json!({"dimension": 3}));
    create(&d, "h2", json!({"dimension": 4, "index": "flat"}));
    let loaders = Loaders::start(&d.url, &[("h1", 3), ("h2", 4)], seed, 30, 100, false);
    wait_for("bulks", Duration::from_secs(20), || {
        (loaders.acked() >= 2).then_some(())
    });
    let dry = "dry_run = true\n";
    let half = config_text("", dry, "bulk_docs_max = 100\n");
    let cases = vec![
        case(
            "does not parse",
            Box::new(|p: &Path| std::fs::write(p, "[engine\ndry_run = true\n").unwrap()),
            &["line 1"],
        ),
        case(
            "half-written",
            Box::new(move |p: &Path| {
                let cut = half.find("[http]").unwrap() + 9;
                std::fs::write(p, &half[..cut]).unwrap()
            }),
            &["line"],
        ),
        case(
            "a directory",
            Box::new(|p: &Path| {
                std::fs::remove_file(p).unwrap();
                std::fs::create_dir(p).unwrap()
            }),
            &["directory"],
        ),
        case(
            "a dangling symlink",
            Box::new(|p: &Path| {
                let _ = std::fs::remove_dir(p);
                std::os::unix::fs::symlink("/nonexistent/medic.toml", p).unwrap()
            }),
            &["No such file"],
        ),
        case(
            "a symlink loop",
            Box::new(|p: &Path| {
                std::fs::remove_file(p).unwrap();
                std::os::unix::fs::symlink(p, p).unwrap()
            }),
            &["symbolic links"],
        ),
        case(
            "bulk_docs_max out of range",
            Box::new(|p: &Path| {
                std::fs::remove_file(p).unwrap();
                std::fs::write(
                    p,
                    config_text("", "dry_run = true\n", "bulk_docs_max = 0\n"),
                )
                .unwrap()
            }),
            &["bulk_docs_max"],
        ),
        case(
            "request_body_bytes_max out of range",
            Box::new(|p: &Path| {
                std::fs::write(
                    p,
                    config_text("", "dry_run = true\n", "request_body_bytes_max = 1023\n"),
                )
                .unwrap()
            }),
            &["request_body_bytes_max", "1024"],
        ),
        case(
            "a wrong type",
            Box::new(|p: &Path| {
                std::fs::write(p, config_text("", "dry_run = \"yes\"\n", "")).unwrap()
            }),
            &["dry_run", "boolean"],
        ),
        case(
            "not UTF-8",
            Box::new(|p: &Path| {
                let mut b = b"[engine]\ndry_run = true\n# \xff\xfe\n".to_vec();
                b.extend_from_slice(b"\n");
                std::fs::write(p, b).unwrap()
            }),
            &["UTF-8"],
        ),
    ];
    for (what, damage, names) in &cases {
        damage(&cfg);
        let log = reload(&d);
        let line = log
            .lines()
            .find(|l| l.contains("configuration not reloaded"))
            .unwrap_or_else(|| panic!("{what}: reloaded anyway:\n{log}"));
        for n in *names {
            assert!(
                log.contains(n),
                "{what}: the log does not name {n:?}:\n{log}"
            );
        }
        assert!(line.contains("medic.toml"), "{what}: no path in {line}");
        assert!(!dry_run(&d), "{what}: dry_run applied from a refused file");
        let (s, v) = d.json("GET", "/health", None);
        assert_eq!(s, 200, "{what}: {v}");
        eprintln!("{what}: {}", line.chars().take(220).collect::<String>());
    }
    // Bulks went on through every refused reload.
    let a = loaders.acked();
    wait_for(
        "bulks after the refused reloads",
        Duration::from_secs(20),
        || (loaders.acked() >= a + 2).then_some(()),
    );
    // A good file: dry_run at once; bulk_docs_max needs a restart and keeps 200 meanwhile.
    let _ = std::fs::remove_file(&cfg);
    let _ = std::fs::remove_dir(&cfg);
    let next = config_text("", "dry_run = true\n", "bulk_docs_max = 10\n");
    std::fs::write(&cfg, &next).unwrap();
    let log = reload(&d);
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("needs a restart: http.bulk_docs_max"),
        "bulk_docs_max not logged as needing a restart:\n{log}"
    );
    let t = Instant::now();
    wait_for(
        "dry_run = true in /v1/status",
        Duration::from_secs(1),
        || dry_run(&d).then_some(()),
    );
    eprintln!(
        "dry_run = true shown {:?} after the reload was logged",
        t.elapsed()
    );
    let mut rng = Rng::new(seed);
    let fifty: Vec<(String, Value)> = (0..50)
        .map(|i| {
            let id = format!("hup{i}");
            let doc = make_doc(&mut rng, "h1", &id, 3, 10);
            (id, doc)
        })
        .collect();
    let (s, v) = d.post_ndjson("/v1/collections/h1/docs", &ndjson(&fifty));
    assert_eq!(
        s, 200,
        "50 lines under the running bulk_docs_max = 200: {v}"
    );
    std::fs::write(&cfg, &good).unwrap();
    let log = reload(&d);
    assert!(log.contains("configuration reloaded"), "{log}");
    let t = Instant::now();
    wait_for(
        "dry_run = false in /v1/status",
        Duration::from_secs(1),
        || (!dry_run(&d)).then_some(()),
    );
    eprintln!(
        "dry_run = false shown {:?} after the reload was logged",
        t.elapsed()
    );
    let mut bulks = loaders.finish();
    eprintln!("{}", summary(&bulks));
    for b in &bulks {
        assert!(
            matches!(b.outcome, Outcome::Acked(_)),
            "a bulk not acknowledged across reloads: {:?}",
            b.outcome
        );
    }
    bulks.push(Bulk {
        c: "h1".into(),
        docs: fifty,
        outcome: Outcome::Acked(v),
        started: Instant::now(),
        answered: Instant::now(),
    });
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "{bad:?}");
    d.kill9();
    // The restart takes the file's bulk_docs_max = 10.
    std::fs::write(&cfg, &next).unwrap();
    let d = start(&data, tmp.path(), &cfg);
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "after SIGKILL and restart: {bad:?}");
    let eleven: Vec<(String, Value)> = (0..11)
        .map(|i| {
            let id = format!("eleven{i}");
            let doc = make_doc(&mut rng, "h1", &id, 3, 10);
            (id, doc)
        })
        .collect();
    let (s, v) = d.post_ndjson("/v1/collections/h1/docs", &ndjson(&eleven));
    assert!(
        (400..500).contains(&s) && v.to_string().contains("bulk_docs_max"),
        "11 lines after the restart with bulk_docs_max = 10: {s} {v}"
    );
    assert_eq!(read_doc(&d, "h1", "eleven0").unwrap(), None);
    assert!(dry_run(&d));
    d.stop();
}

/// Spawns `medic serve` through `sh -c` (so a `ulimit` can bound it); its URL once printed.
fn spawn_serve(prefix: &str, data: &Path, logs: &Path, cfg: &Path) -> Daemon {
    let stderr_path = logs.join("stderr-spawned.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{prefix} exec '{}' serve --data '{}' --listen 127.0.0.1:0 --config '{}'",
            env!("CARGO_BIN_EXE_medic"),
            data.display(),
            cfg.display()
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    let url = String::from_utf8(line).unwrap().trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "no URL ({url:?}); stderr:\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    Daemon {
        child,
        url,
        stderr_path,
        agent: agent(),
    }
}

/// The configuration file replaced by a FIFO no one writes, then SIGHUP: the reload must not hold the daemon. It
/// serves, and SIGTERM must stop it cleanly within the harness's 30 s (`docs/contracts/program.md`: "SIGTERM/SIGINT
/// stop cleanly").
#[test]
fn a_configuration_replaced_by_a_fifo_does_not_hold_sighup_or_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = start(&data, tmp.path(), &cfg);
    let (s, v) = d.json("PUT", "/v1/docs/a", Some(&json!({"text": "before"})));
    assert_eq!(s, 200, "{v}");
    std::fs::remove_file(&cfg).unwrap();
    let (ok, out) = sh(&format!("mkfifo {}", cfg.display()));
    assert!(ok, "{out}");
    signal(d.child.id(), "-HUP");
    std::thread::sleep(Duration::from_secs(1));
    let (s, v) = d.json("PUT", "/v1/docs/b", Some(&json!({"text": "during"})));
    assert_eq!(s, 200, "a write while the reload waits: {v}");
    // Whatever happens, the FIFO is opened for writing on the way out so a held daemon can end.
    struct Unblock(PathBuf);
    impl Drop for Unblock {
        fn drop(&mut self) {
            let p = self.0.clone();
            std::thread::spawn(move || {
                let _ = std::fs::OpenOptions::new().write(true).open(&p);
            });
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _unblock = Unblock(cfg.clone());
    let mut d = d;
    signal(d.child.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM (reload reading a FIFO); log:\n{}",
            tail(&d.stderr(), 6)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// The configuration file replaced by a symlink to `/dev/zero` (a file without end), then SIGHUP: the read must be
/// bounded, refused with its limit named, the old configuration kept (README: "every size has a limit named in its
/// error"). The daemon runs under `ulimit -v` 6 GB so the attack cannot take the machine's memory.
#[test]
fn a_configuration_without_end_is_read_within_a_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = spawn_serve("ulimit -v 6000000;", &data, tmp.path(), &cfg);
    std::fs::remove_file(&cfg).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &cfg).unwrap();
    let log = reload(&d);
    let rss_peak_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", d.child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("peak resident {rss_peak_kb} kB; {}", tail(&log, 2));
    assert!(log.contains("configuration not reloaded"), "{log}");
    assert!(
        rss_peak_kb < 512 * 1024,
        "reading the configuration took {rss_peak_kb} kB resident"
    );
    // Refused before any byte is read (a device is not a configuration file), or read up to a limit it names.
    assert!(
        (log.contains("not a regular file") || log.contains("bytes"))
            && !log.contains("out of memory"),
        "neither refused as a device nor a size limit named: {log}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Huge inputs: past every limit a clear 4xx naming it, nothing written.
// ---------------------------------------------------------------------------------------------------------------

const BULK_BYTES: usize = 4 << 20;

/// Sends a bulk body to `path` with `Transfer-Encoding: chunked` (no declared length), `total` bytes of `line`
/// repeated, over a raw connection; the status and body of the answer (writes may fail once the daemon answered).
fn chunked_bulk(url: &str, path: &str, line: &str, total: usize) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut chunk = String::new();
    while chunk.len() < 64 * 1024 {
        chunk.push_str(line);
    }
    let mut sent = 0;
    while sent < total {
        let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if s.write_all(frame.as_bytes()).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn doc_count(d: &Daemon, c: &str) -> u64 {
    let (s, v) = d.json("GET", &format!("/v1/collections/{c}"), None);
    assert_eq!(s, 200, "{v}");
    v["documents"].as_u64().unwrap()
}

/// With `http.bulk_body_bytes_max` = 4 MiB and `http.bulk_docs_max` = 100: a body over the limit (declared, and
/// chunked without a length), 101 lines, a line whose text is one byte past `text_bytes_max` or whose meta is past
/// `meta_bytes_max`, an id of 257 bytes, a collection name of 65 characters, meta nested past what the parser takes:
/// each a 4xx naming the limit (and the line), nothing written, the daemon serving; the same at the limits is
/// acknowledged and reads back exactly, also after a restart.
#[test]
fn inputs_past_their_limits_are_refused_naming_the_limit_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(
        tmp.path(),
        "",
        "",
        &format!("bulk_body_bytes_max = {BULK_BYTES}\nbulk_docs_max = 100\n"),
    );
    let d = start(&data, tmp.path(), &cfg);
    let c64 = "c".repeat(64);
    create(&d, "big", json!({"dimension": 3}));
    create(&d, &c64, json!({"dimension": 3}));
    let (s, v) = d.json(
        "PUT",
        &format!("/v1/collections/{}", "c".repeat(65)),
        Some(&json!({})),
    );
    assert!(
        s == 400 && v["error"].as_str().is_some_and(|e| e.contains("64")),
        "a 65-character collection name: {s} {v}"
    );
    let line = |id: &str, text: &str, meta: Value| {
        format!(
            "{}\n",
            json!({"id": id, "text": text, "vector": [1, 2, 3], "meta": meta})
        )
    };
    let mut acked: Vec<(String, String, Value)> = Vec::new();
    let refused = |d: &Daemon, what: &str, c: &str, body: String, names: &[&str]| {
        let before = doc_count(d, c);
        let (s, v) = d.post_ndjson(&format!("/v1/collections/{c}/docs"), &body);
        let e = v["error"].as_str().unwrap_or("");
        assert!(
            (400..500).contains(&s) && names.iter().all(|n| e.contains(n)),
            "{what}: {s} {v} (expected a 4xx naming {names:?})"
        );
        assert_eq!(doc_count(d, c), before, "{what}: something was written");
        let first: Value =
            serde_json::from_str(body.lines().next().unwrap()).unwrap_or(Value::Null);
        if let Some(id) = first["id"].as_str() {
            assert_eq!(read_doc(d, c, id).unwrap(), None, "{what}: {id} written");
        }
        eprintln!("{what}: {s} {}", e.chars().take(160).collect::<String>());
    };
    // The body's size.
    let filler = line("fill", &"f".repeat(1000), json!({}));
    let mut over = String::new();
    let mut k = 0;
    while over.len() <= BULK_BYTES {
        over.push_str(&line(&format!("o{k}"), &"o".repeat(60_000), json!({})));
        k += 1;
    }
    refused(
        &d,
        "a declared body past the limit",
        "big",
        over,
        &["bulk_body_bytes_max", &BULK_BYTES.to_string()],
    );
    let (s, body) = chunked_bulk(
        &d.url,
        "/v1/collections/big/docs",
        &filler,
        BULK_BYTES + (1 << 20),
    );
    assert!(
        s == 413 && body.contains("bulk_body_bytes_max"),
        "a chunked body past the limit: {s} {body}"
    );
    assert_eq!(
        read_doc(&d, "big", "fill").unwrap(),
        None,
        "a chunked body past the limit wrote"
    );
    // The number of lines.
    let lines = |n: usize, p: &str| -> String {
        (0..n)
            .map(|i| line(&format!("{p}{i}"), "x", json!({"i": i})))
            .collect()
    };
    refused(
        &d,
        "101 lines",
        "big",
        lines(101, "l"),
        &["bulk_docs_max", "100"],
    );
    let (s, v) = d.post_ndjson("/v1/collections/big/docs", &lines(100, "m"));
    assert_eq!(s, 200, "100 lines: {v}");
    for i in 0..100 {
        acked.push((
            "big".into(),
            format!("m{i}"),
            json!({"text": "x", "vector": [1.0, 2.0, 3.0], "meta": {"i": i}}),
        ));
    }
    // A line's fields.
    const TEXT_MAX: usize = 1 << 20;
    let mut body = lines(5, "t");
    body.push_str(&line("tlong", &"t".repeat(TEXT_MAX + 1), json!({})));
    refused(
        &d,
        "a line past text_bytes_max",
        "big",
        body,
        &["line 6", "text_bytes_max"],
    );
    let mut body = lines(3, "u");
    body.push_str(&line("umeta", "x", json!({"m": "m".repeat(70_000)})));
    refused(
        &d,
        "a line past meta_bytes_max",
        "big",
        body,
        &["line 4", "meta_bytes_max"],
    );
    let mut body = lines(2, "v");
    body.push_str(&line(&"i".repeat(257), "x", json!({})));
    refused(
        &d,
        "an id of 257 bytes",
        "big",
        body,
        &["line 3", "id_bytes_max", "256"],
    );
    let mut body = lines(2, "w");
    body.push_str(&format!(
        "{{\"id\":\"deep\",\"text\":\"x\",\"meta\":{}1{}}}\n",
        "{\"a\":".repeat(127),
        "}".repeat(127)
    ));
    refused(&d, "meta nested 127 deep", "big", body, &["line 3"]);
    // At the limits: acknowledged, read back exactly.
    let at: Vec<(String, Value)> = vec![
        (
            "ttext".into(),
            json!({"text": "t".repeat(TEXT_MAX), "vector": [1.0, 2.0, 3.0], "meta": {"at": true}}),
        ),
        (
            "i".repeat(256),
            json!({"text": "long id", "vector": [1.0, 2.0, 3.0], "meta": {"at": true}}),
        ),
        (
            "nest".into(),
            json!({"text": "nested", "vector": [1.0, 2.0, 3.0],
            "meta": serde_json::from_str::<Value>(&format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100))).unwrap()}),
        ),
    ];
    let (s, v) = d.post_ndjson("/v1/collections/big/docs", &ndjson(&at));
    assert_eq!(s, 200, "documents at the limits: {v}");
    for (id, doc) in &at {
        acked.push(("big".into(), id.clone(), doc.clone()));
    }
    let (s, v) = d.post_ndjson(&format!("/v1/collections/{c64}/docs"), &lines(3, "n"));
    assert_eq!(s, 200, "a bulk into a 64-character collection: {v}");
    for i in 0..3 {
        acked.push((
            c64.clone(),
            format!("n{i}"),
            json!({"text": "x", "vector": [1.0, 2.0, 3.0], "meta": {"i": i}}),
        ));
    }
    // A name past the limit is no collection: a 404 naming it (the limit itself: see
    // `a_bulk_into_a_collection_name_past_its_limit_names_the_limit`).
    let c65 = "c".repeat(65);
    let (s, v) = d.post_ndjson(&format!("/v1/collections/{c65}/docs"), &lines(1, "p"));
    assert!(
        (400..500).contains(&s) && v["error"].as_str().is_some_and(|e| e.contains(&c65)),
        "a bulk into a 65-character collection name: {s} {v}"
    );
    let check = |d: &Daemon, what: &str| {
        for (c, id, doc) in &acked {
            let got = read_doc(d, c, id).unwrap();
            assert_eq!(
                got.as_ref(),
                Some(doc),
                "{what}: {c}/{}",
                &id[..id.len().min(20)]
            );
        }
        assert_eq!(doc_count(d, "big"), 103, "{what}");
    };
    check(&d, "before the restart");
    assert_eq!(d.json("GET", "/health", None).0, 200);
    d.kill9();
    let d = start(&data, tmp.path(), &cfg);
    assert_nothing_lost(&d, "after SIGKILL");
    check(&d, "after SIGKILL and restart");
    d.stop();
}

/// Meta nested one level past what the parser takes is refused with the nesting limit named (README: "every size
/// has a limit named in its error").
#[test]
fn meta_nested_past_the_parser_depth_names_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = start(&data, tmp.path(), &cfg);
    let body = format!(
        "{{\"text\":\"x\",\"meta\":{}1{}}}",
        "{\"a\":".repeat(127),
        "}".repeat(127)
    );
    let (s, _, text) = {
        let mut r = d
            .agent
            .put(format!("{}/v1/docs/deep", d.url))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap();
        (
            r.status().as_u16(),
            (),
            r.body_mut().read_to_string().unwrap(),
        )
    };
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("128") || text.contains("126") || text.contains("127"),
        "the depth limit is not named: {text}"
    );
    d.stop();
}

/// `medic load` through the daemon, of a file whose fifth line has a text one byte past `text_bytes_max`: exit 2
/// naming the line and the limit, and, as README says of `medic load` ("a bad line is named, nothing written") and
/// as `POST /v1/collections/{c}/docs` does with the same lines, nothing written.
#[test]
fn medic_load_of_a_line_past_the_text_limit_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = start(&data, tmp.path(), &cfg);
    create(&d, "big", json!({"dimension": 3}));
    const TEXT_MAX: usize = 1 << 20;
    let line = |id: &str, text: &str| {
        format!("{}\n", json!({"id": id, "text": text, "vector": [1, 2, 3]}))
    };
    let mut text: String = (0..4).map(|i| line(&format!("q{i}"), "x")).collect();
    text.push_str(&line("qlong", &"q".repeat(TEXT_MAX + 1)));
    let (s, v) = d.post_ndjson("/v1/collections/big/docs", &text);
    assert!(
        s == 400 && v.to_string().contains("line 5"),
        "the same lines through POST: {s} {v}"
    );
    assert_eq!(read_doc(&d, "big", "q0").unwrap(), None, "POST wrote q0");
    let file = tmp.path().join("load.jsonl");
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = support::medic_cli(&[
        "load",
        file.to_str().unwrap(),
        "--collection",
        "big",
        "--server",
        &d.url,
    ]);
    assert!(
        code == 2
            && format!("{out}{err}").contains("text_bytes_max")
            && format!("{out}{err}").contains('5'),
        "medic load with a line past the text limit: exit {code}; {out} {err}"
    );
    assert_eq!(
        read_doc(&d, "big", "q0").unwrap(),
        None,
        "medic load wrote q0"
    );
    d.stop();
}

/// A bulk into a collection whose name is past the 64-character limit: a 4xx naming the limit (README: "every size
/// has a limit named in its error"), not advice the daemon itself refuses.
#[test]
fn a_bulk_into_a_collection_name_past_its_limit_names_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = start(&data, tmp.path(), &cfg);
    let c65 = "c".repeat(65);
    let (s, v) = d.post_ndjson(
        &format!("/v1/collections/{c65}/docs"),
        "{\"id\":\"a\",\"text\":\"x\"}\n",
    );
    let e = v["error"].as_str().unwrap_or("").to_string();
    let (ps, pv) = d.json("PUT", &format!("/v1/collections/{c65}"), Some(&json!({})));
    assert!(
        (400..500).contains(&s) && e.contains("64"),
        "{s} {v}; the PUT it advises: {ps} {pv}"
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Collections created and dropped, and `medic load` run, while the disk is full.
// ---------------------------------------------------------------------------------------------------------------

/// Bulk loads into `fa` fill the tmpfs. While it is full: a new collection is created, `fa` is dropped (two clients
/// at once) and `medic load` sends a file into `fb` through the daemon. Each is either done or refused naming why —
/// never half: a refused creation leaves no collection, a refused drop leaves `fa` with every acknowledged document
/// (or, once space returns, finishes and `fa` is gone), `medic load` stores exactly the lines it says were written.
/// Space freed: the creation and the drop succeed when asked again, and after a SIGKILL and restart nothing is
/// reported lost and every acknowledged document of `fb` reads back.
#[test]
fn collections_created_and_dropped_and_files_loaded_on_a_full_disk_are_whole_or_refused() {
    let seed = seed(0xC011_F011);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let (mnt, _umount) = mount_tmpfs(tmp.path(), "24m");
    let data = mnt.join("data");
    let cfg = config(
        tmp.path(),
        "disk_free_bytes_min = 0\ndisk_free_critical_bytes_min = 0\n",
        "",
        "",
    );
    let d = start(&data, tmp.path(), &cfg);
    create(&d, "fa", json!({"dimension": 3}));
    create(&d, "fb", json!({"dimension": 3}));
    let fb_docs: Vec<(String, Value)> = (0..40)
        .map(|i| {
            let id = format!("pre{i}");
            let doc = make_doc(&mut rng, "fb", &id, 3, 50);
            (id, doc)
        })
        .collect();
    let (s, v) = d.post_ndjson("/v1/collections/fb/docs", &ndjson(&fb_docs));
    assert_eq!(s, 200, "{v}");
    let ballast = mnt.join("ballast");
    let _ = sh(&format!(
        "dd if=/dev/zero of={} bs=1M count=19 2>&1",
        ballast.display()
    ));
    let loaders = Loaders::start(&d.url, &[("fa", 3)], seed, 40, 300, false);
    let full = wait_full(&loaders);
    let bulks = loaders.finish();
    eprintln!("full after {full}: {}", summary(&bulks));
    // Create while full.
    let (cs, cv) = d.json(
        "PUT",
        "/v1/collections/fnew",
        Some(&json!({"dimension": 4})),
    );
    eprintln!("create while full: {cs} {cv}");
    let (gs, gv) = d.json("GET", "/v1/collections/fnew", None);
    match cs {
        201 => assert_eq!(gs, 200, "created, yet {gs} {gv}"),
        503 => assert_eq!(gs, 404, "a refused creation left {gv}"),
        _ => panic!("create on a full disk: {cs} {cv}"),
    }
    // Two clients drop fa at once.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let barrier = Arc::new(Barrier::new(2));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (url, b) = (d.url.clone(), barrier.clone());
                s.spawn(move || {
                    b.wait();
                    match send(
                        &agent(),
                        "DELETE",
                        &format!("{url}/v1/collections/fa"),
                        "",
                        None,
                    ) {
                        Outcome::Acked(v) => (200, v.to_string()),
                        Outcome::Refused(s, t) => (s, t),
                        Outcome::NoAnswer(e) => (0, e),
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("two drops of fa while full: {answers:?}");
    for (s, body) in &answers {
        assert!(
            [200, 404, 409, 503].contains(s) && body.contains("error") != (*s == 200),
            "a drop on a full disk: {s} {body}"
        );
    }
    assert!(
        answers.iter().filter(|a| a.0 == 200).count() <= 1,
        "dropped twice: {answers:?}"
    );
    let (gs, gv) = d.json("GET", "/v1/collections/fa", None);
    eprintln!(
        "fa after the drops: {gs} state {} documents {}",
        gv["state"], gv["documents"]
    );
    if answers.iter().any(|a| a.0 == 200) {
        assert_eq!(gs, 404, "dropped, yet {gv}");
    } else if gs == 200 && gv["state"] == "ready" {
        let bad = check_acked(&d, &bulks);
        assert!(
            bad.is_empty(),
            "a refused drop lost documents of fa: {bad:?}"
        );
    }
    // medic load into fb while full.
    let file = tmp.path().join("load.jsonl");
    let load_docs: Vec<(String, Value)> = (0..300)
        .map(|i| {
            let id = format!("load{i}");
            let doc = make_doc(&mut rng, "fb", &id, 3, 400);
            (id, doc)
        })
        .collect();
    std::fs::write(&file, ndjson(&load_docs)).unwrap();
    let (code, out, err) = support::medic_cli(&[
        "load",
        file.to_str().unwrap(),
        "--collection",
        "fb",
        "--server",
        &d.url,
    ]);
    eprintln!(
        "medic load while full: exit {code}; {}{}",
        tail(&out, 2),
        tail(&err, 2)
    );
    let stored: Vec<bool> = load_docs
        .iter()
        .map(|(id, doc)| read_doc(&d, "fb", id).unwrap().as_ref() == Some(doc))
        .collect();
    let n_stored = stored.iter().filter(|&&b| b).count();
    if code == 0 {
        assert_eq!(n_stored, load_docs.len(), "medic load said done");
    } else {
        assert!(
            !err.is_empty() && (err.contains("space") || err.contains("read-only")),
            "medic load failed without saying why: {err}"
        );
        // What it says was written is what is stored: a prefix of the lines.
        let prefix = stored.iter().take_while(|&&b| b).count();
        assert_eq!(
            prefix, n_stored,
            "stored lines are not a prefix: {stored:?}"
        );
        let said = err
            .split("the ")
            .filter_map(|p| p.split(' ').next()?.parse::<usize>().ok())
            .last();
        if let Some(said) = said {
            assert_eq!(said, n_stored, "medic load said {said} were written: {err}");
        }
    }
    let mut fb_acked = fb_docs.clone();
    fb_acked.extend(
        load_docs
            .iter()
            .zip(&stored)
            .filter(|(_, s)| **s)
            .map(|(d, _)| d.clone()),
    );
    // Space returns: creation and drop work when asked again; fa gone either way.
    std::fs::remove_file(&ballast).unwrap();
    wait_for(
        "fnew created after space returned",
        Duration::from_secs(40),
        || {
            let (s, _) = d.json(
                "PUT",
                "/v1/collections/fnew",
                Some(&json!({"dimension": 4})),
            );
            (s == 200 || s == 201).then_some(())
        },
    );
    wait_for(
        "fa dropped after space returned",
        Duration::from_secs(40),
        || {
            let (s, _) = d.json("DELETE", "/v1/collections/fa", None);
            let (g, _) = d.json("GET", "/v1/collections/fa", None);
            ((s == 200 || s == 404) && g == 404).then_some(())
        },
    );
    d.kill9();
    let d = start(&data, tmp.path(), &cfg);
    assert_nothing_lost(&d, "after SIGKILL");
    let (s, v) = d.json("GET", "/v1/collections/fa", None);
    assert_eq!(s, 404, "a dropped collection came back: {v}");
    let (s, v) = d.json("GET", "/v1/collections/fnew", None);
    assert_eq!(s, 200, "{v}");
    for (id, doc) in &fb_acked {
        assert_eq!(
            read_doc(&d, "fb", id).unwrap().as_ref(),
            Some(doc),
            "fb/{id}"
        );
    }
    let (_, v) = d.json("GET", "/v1/collections/fb", None);
    assert_eq!(v["documents"].as_u64(), Some(fb_acked.len() as u64), "{v}");
    d.stop();
}

/// Forty SIGHUPs without waiting, each after the configuration was replaced (atomically by a rename, or written in
/// place) by a good file with a seeded `engine.dry_run` or a broken one, under bulk loads: the daemon stays up, never
/// panics, refuses no bulk, and settles on the last good file (`dry_run = true`) within a second of its reload;
/// every acknowledged document reads back after a SIGKILL and restart.
#[test]
fn a_storm_of_sighups_over_good_and_broken_files_loses_nothing_and_settles_on_the_last() {
    let seed = seed(0x5707_4A11);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "dry_run = false\n", "");
    let d = start(&data, tmp.path(), &cfg);
    create(&d, "s1", json!({"dimension": 3}));
    let loaders = Loaders::start(&d.url, &[("s1", 3), ("default", 2)], seed, 20, 50, false);
    let spare = tmp.path().join("next.toml");
    for _ in 0..40 {
        let text = match rng.index(4) {
            0 => "[engine\ndry_run = true\n".to_string(),
            1 => config_text("", "dry_run = true\n", "bulk_docs_max = 0\n"),
            _ => config_text("", &format!("dry_run = {}\n", rng.chance(50)), ""),
        };
        if rng.chance(50) {
            std::fs::write(&spare, &text).unwrap();
            std::fs::rename(&spare, &cfg).unwrap();
        } else {
            std::fs::write(&cfg, &text).unwrap();
        }
        signal(d.child.id(), "-HUP");
        std::thread::sleep(Duration::from_millis(rng.below(40)));
    }
    std::fs::write(&spare, config_text("", "dry_run = true\n", "")).unwrap();
    std::fs::rename(&spare, &cfg).unwrap();
    let log = reload(&d);
    let t = Instant::now();
    wait_for(
        "the last good file in force",
        Duration::from_secs(1),
        || dry_run(&d).then_some(()),
    );
    eprintln!(
        "settled {:?} after the last reload was logged; {} reloads refused, {} applied",
        t.elapsed(),
        count(&d.stderr(), "configuration not reloaded"),
        count(&d.stderr(), "configuration reloaded")
    );
    assert!(log.contains("reloaded"), "{log}");
    let bulks = loaders.finish();
    eprintln!("{}", summary(&bulks));
    assert!(
        !d.stderr().contains("panicked"),
        "a panic: {}",
        warnings(&d, 20)
    );
    for b in &bulks {
        assert!(
            matches!(b.outcome, Outcome::Acked(_)),
            "a bulk not acknowledged in the storm: {:?}",
            b.outcome
        );
    }
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "{bad:?}");
    d.kill9();
    let d = start(&data, tmp.path(), &cfg);
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "after SIGKILL and restart: {bad:?}");
    assert!(dry_run(&d));
    d.stop();
}

/// SIGTERM while large bulk bodies (up to 200 documents of 2 KB) are in flight into two collections: the daemon
/// stops cleanly (exit 0 within 30 s), every body it acknowledged reads back after the restart byte for byte, no
/// refused body left anything, and nothing is reported lost.
#[test]
fn sigterm_amid_large_bulk_loads_stops_cleanly_and_loses_nothing() {
    let seed = seed(0x5167_7E24);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "", "", "");
    let d = start(&data, tmp.path(), &cfg);
    create(&d, "t1", json!({"dimension": 3}));
    create(&d, "t2", json!({"dimension": 6, "index": "flat"}));
    let loaders = Loaders::start(&d.url, &[("t1", 3), ("t2", 6)], seed, 200, 2000, true);
    let target = 3 + rng.below(5) as usize;
    wait_for("acknowledged bulks", Duration::from_secs(30), || {
        (loaders.acked() >= target).then_some(())
    });
    std::thread::sleep(Duration::from_millis(rng.below(200)));
    d.stop();
    let bulks = loaders.finish();
    eprintln!("SIGTERM after {target}+ acknowledged: {}", summary(&bulks));
    let d = start(&data, tmp.path(), &cfg);
    assert_nothing_lost(&d, "after SIGTERM");
    let bad = check_acked(&d, &bulks);
    assert!(bad.is_empty(), "after SIGTERM amid bulks: {bad:?}");
    let (refused_bad, unanswered) = check_unacked(&d, &bulks);
    assert!(refused_bad.is_empty(), "{refused_bad:?}");
    eprintln!("unanswered bulks partly stored: {unanswered:?}");
    for c in ["t1", "t2"] {
        wait_indexes_current(&d, c, 40);
        let (stored, absent) = stored_and_absent(&bulks, c);
        let bad = check_searches(&d, c, &stored, &absent, 8, &mut rng);
        assert!(bad.is_empty(), "searches after the restart: {bad:?}");
    }
    d.stop();
}
