//! Crash test: a child process (this test binary, re-executed with `MEDIC_CRASH_CHILD` set) opens a store, writes
//! and deletes documents and prints each acknowledgement (`ACK PUT id lsn`, `ACK DEL id lsn`) the moment the call
//! returns; the parent SIGKILLs it at a seeded random moment, reopens the store and checks that every acknowledged
//! write is there and intact, every acknowledged delete is gone, and nothing appeared that was never attempted.
//! The same directory carries over from one kill to the next, so recovery runs on what earlier crashes left.
//!
//! Replay a failure with `MEDIC_CRASH_SEED=<seed> cargo nextest run -p store --test crash`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store::{Document, Store, StoreConfig};

/// Kill points per CI run.
const KILLS: u32 = 200;
const CHILD_ENV: &str = "MEDIC_CRASH_CHILD";
const SEED_ENV: &str = "MEDIC_CRASH_SEED";
const DEFAULT_SEED: u64 = 0x5EED_C2A5;
/// Longest a child writes before it is killed, ms.
const KILL_AFTER_MS_MAX: u64 = 30;
/// Longest a child may take to open the store.
const CHILD_READY_MAX: Duration = Duration::from_secs(20);

/// A small store so segments seal, parity gets written and snapshots are taken between kills.
fn config() -> StoreConfig {
    StoreConfig {
        segment_bytes_max: 16 << 10,
        wal_bytes_max: 64 << 10,
        ..StoreConfig::default()
    }
}

/// The document written under id `n`: a pure function of `n`, so the parent knows what to expect.
fn doc(n: u64) -> Document {
    let text = format!("document {n} ") + &"lorem ipsum ".repeat((n % 17) as usize);
    let vector = n
        .is_multiple_of(3)
        .then(|| (0..4).map(|i| (n as f32) * 0.5 + i as f32).collect());
    let meta = n.is_multiple_of(5).then(|| {
        let mut m = serde_json::Map::new();
        m.insert("n".into(), serde_json::json!(n));
        m.insert("tag".into(), serde_json::json!(format!("t{}", n % 7)));
        m
    });
    Document { text, vector, meta }
}

fn id(n: u64) -> String {
    format!("doc-{n:08}")
}

/// The child: writes ids from `MEDIC_CRASH_CHILD=<dir>,<first>,<seed>` on, deleting an earlier one now and then,
/// until killed.
fn child_main(spec: &str) {
    let mut parts = spec.split(',');
    let dir = parts.next().expect("dir");
    let first: u64 = parts.next().and_then(|s| s.parse().ok()).expect("first id");
    let seed: u64 = parts.next().and_then(|s| s.parse().ok()).expect("seed");
    let mut rng = StdRng::seed_from_u64(seed);
    let store = Store::open(dir, config()).expect("child opens the store");
    let mut out = std::io::stdout().lock();
    // libtest has printed `test crash_child ... ` without a newline: start a fresh line.
    writeln!(out, "\nREADY").unwrap();
    out.flush().unwrap();
    let mut n = first;
    loop {
        if n > first && rng.random_bool(0.1) {
            let victim = rng.random_range(first.saturating_sub(50)..n);
            writeln!(out, "TRY DEL {}", id(victim)).unwrap();
            out.flush().unwrap();
            match store.delete(&id(victim)) {
                Ok(Some(lsn)) => writeln!(out, "ACK DEL {} {lsn}", id(victim)).unwrap(),
                Ok(None) => writeln!(out, "NONE DEL {}", id(victim)).unwrap(),
                Err(e) => panic!("delete failed: {e}"),
            }
        } else {
            writeln!(out, "TRY PUT {}", id(n)).unwrap();
            out.flush().unwrap();
            let lsn = store.put(&id(n), doc(n)).expect("put");
            writeln!(out, "ACK PUT {} {lsn}", id(n)).unwrap();
            n += 1;
        }
        out.flush().unwrap();
    }
}

/// What the parent knows about each id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Acknowledged put, not since deleted: must be present and intact.
    Present,
    /// Acknowledged delete: must be gone.
    Gone,
    /// A write or delete in flight at the kill: either state is fine (if present, intact).
    Either,
}

struct Run {
    seed: u64,
    expect: BTreeMap<String, Expect>,
    next_id: u64,
    last_lsn: u64,
}

impl Run {
    fn kill_one(&mut self, dir: &Path, rng: &mut StdRng, kill_idx: u32) {
        let exe = std::env::current_exe().unwrap();
        let child_seed: u64 = rng.random();
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(
                CHILD_ENV,
                format!("{},{},{child_seed}", dir.display(), self.next_id),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Most kills land while documents are being written; one in ten lands at a random moment from spawn, so
        // some hit open and recovery.
        let mut lines = Vec::new();
        if rng.random_bool(0.1) {
            std::thread::sleep(Duration::from_millis(
                rng.random_range(0..=KILL_AFTER_MS_MAX),
            ));
        } else {
            let deadline = Instant::now() + CHILD_READY_MAX;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) if line == "READY" => break,
                    Ok(line) => lines.push(line),
                    Err(_) => {
                        child.kill().ok();
                        panic!(
                            "seed={} kill {kill_idx}: child not ready within {CHILD_READY_MAX:?}",
                            self.seed
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(
                rng.random_range(0..=KILL_AFTER_MS_MAX),
            ));
        }
        let exited_early = child.try_wait().unwrap();
        child.kill().ok();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        if let Some(st) = exited_early {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).ok();
            panic!(
                "seed={} kill {kill_idx}: child exited by itself ({st}) before the kill:\n{err}",
                self.seed
            );
        }
        assert!(
            !status.success(),
            "seed={}: child was not killed",
            self.seed
        );
        lines.extend(rx.try_iter());
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["TRY", "PUT", id] | ["TRY", "DEL", id] => {
                    self.expect.insert(id.to_string(), Expect::Either);
                }
                ["ACK", "PUT", id, lsn] => {
                    self.expect.insert(id.to_string(), Expect::Present);
                    self.note_lsn(lsn, &line);
                    self.next_id = self.next_id.max(parse_n(id) + 1);
                }
                ["ACK", "DEL", id, lsn] => {
                    self.expect.insert(id.to_string(), Expect::Gone);
                    self.note_lsn(lsn, &line);
                }
                ["NONE", "DEL", id] => {
                    // The delete found nothing: it was already gone, which it must have been.
                    let was = self.expect.get(*id).copied();
                    assert!(
                        was != Some(Expect::Present),
                        "seed={}: delete of acknowledged {id} found nothing",
                        self.seed
                    );
                    self.expect.insert(id.to_string(), Expect::Gone);
                }
                _ => {}
            }
            // An attempted put whose id is the next one to use moves next_id past it, so it is never reused.
            if let ["TRY", "PUT", id] = words.as_slice() {
                self.next_id = self.next_id.max(parse_n(id) + 1);
            }
        }
    }

    fn note_lsn(&mut self, lsn: &str, line: &str) {
        let lsn: u64 = lsn.parse().unwrap_or_else(|_| panic!("bad line {line:?}"));
        assert!(
            lsn > self.last_lsn,
            "seed={}: LSN {lsn} not above {} ({line})",
            self.seed,
            self.last_lsn
        );
        self.last_lsn = lsn;
    }

    /// Reopens the store and checks every expectation. Settles `Either` to what was found.
    fn verify(&mut self, dir: &Path, kill_idx: u32) {
        let store = Store::open(dir, config())
            .unwrap_or_else(|e| panic!("seed={} kill {kill_idx}: reopen failed: {e}", self.seed));
        let mut present = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.scan(after.as_deref(), 1000).unwrap();
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (id, d) in page {
                assert_eq!(
                    d,
                    doc(parse_n(&id)),
                    "seed={} kill {kill_idx}: {id} read back different",
                    self.seed
                );
                present.insert(id);
            }
        }
        for (id, want) in self.expect.iter_mut() {
            let got = store
                .get(id)
                .unwrap_or_else(|e| panic!("seed={} kill {kill_idx}: get {id}: {e}", self.seed));
            match *want {
                Expect::Present => {
                    assert_eq!(
                        got.as_ref(),
                        Some(&doc(parse_n(id))),
                        "seed={} kill {kill_idx}: acknowledged {id} lost or changed",
                        self.seed
                    );
                }
                Expect::Gone => assert!(
                    got.is_none(),
                    "seed={} kill {kill_idx}: acknowledged delete of {id} undone",
                    self.seed
                ),
                Expect::Either => {
                    if let Some(d) = &got {
                        assert_eq!(d, &doc(parse_n(id)), "seed={}: {id} torn", self.seed);
                    }
                    *want = if got.is_some() {
                        Expect::Present
                    } else {
                        Expect::Gone
                    };
                }
            }
            assert_eq!(
                got.is_some(),
                present.contains(id.as_str()),
                "seed={}: scan and get disagree on {id}",
                self.seed
            );
        }
        for id in &present {
            assert!(
                self.expect.contains_key(id),
                "seed={} kill {kill_idx}: {id} is present but was never written",
                self.seed
            );
        }
        assert_eq!(
            store.count(),
            present.len(),
            "seed={}: count disagrees with scan",
            self.seed
        );
        store.close().unwrap();
    }
}

fn parse_n(id: &str) -> u64 {
    id.trim_start_matches("doc-").parse().unwrap()
}

/// The re-executed child. Without `MEDIC_CRASH_CHILD` it does nothing.
#[test]
fn crash_child() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let kills = std::env::var("MEDIC_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS);
    eprintln!("crash test seed={seed} kills={kills} (replay: {SEED_ENV}={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = Run {
        seed,
        expect: BTreeMap::new(),
        next_id: 0,
        last_lsn: 0,
    };
    for k in 0..kills {
        run.kill_one(dir.path(), &mut rng, k);
        run.verify(dir.path(), k);
    }
    let acked = run
        .expect
        .values()
        .filter(|e| **e == Expect::Present)
        .count();
    let store = Store::open(dir.path(), config()).unwrap();
    let stats = store.stats();
    eprintln!(
        "crash test seed={seed}: {kills} kills, {acked} documents present, last LSN {}, snapshot {:?}, {} segments",
        stats.last_lsn, stats.snapshot_lsn, stats.segments
    );
    assert!(
        acked > kills as usize,
        "seed={seed}: only {acked} documents acknowledged over {kills} kills"
    );
    assert!(
        stats.snapshot_lsn.is_some(),
        "seed={seed}: no snapshot was taken, so no kill landed near compaction; write more per kill"
    );
}
