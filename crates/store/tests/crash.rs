//! Crash test: a child process (this test binary, re-executed with `MEDIC_CRASH_CHILD` set) opens a store, writes
//! and deletes documents from several threads (so commits are grouped) and prints each acknowledgement
//! (`ACK PUT id lsn`, `ACK DEL id lsn`) the moment the call returns; the parent SIGKILLs it, reopens the store and
//! checks that every acknowledged write is there and intact, every acknowledged delete is gone, nothing appeared that
//! was never attempted, and acknowledged LSNs only rise. The same directory carries over from one kill to the next,
//! so recovery runs on what earlier crashes left.
//!
//! When to kill is seeded, but counted in acknowledgements rather than milliseconds: most kills wait until the child
//! has acknowledged a seeded number of records (read from its stdout), then a seeded few µs more; one in ten lands a
//! seeded few ms after spawn, during open and recovery. So how much is written, and therefore that the log is
//! compacted into snapshots many times over, does not depend on how fast the machine is; only where exactly within a
//! commit, rotation or compaction each kill lands does.
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
/// Concurrent writers in the child, so commits are grouped (several records per fsync round).
const WRITERS: u64 = 3;
/// A kill that waits for writes lands after this many acknowledgements since spawn, at least ...
const ACKS_MIN: u32 = 2;
/// ... and at most.
const ACKS_MAX: u32 = 12;
/// After those acknowledgements, the kill waits up to this long more (µs), so it lands anywhere in the next
/// commit, rotation or compaction.
const JITTER_US_MAX: u64 = 3_000;
/// Longest a child writes before it is killed, ms, for the kills timed from spawn (they hit open and recovery).
const KILL_AFTER_MS_MAX: u64 = 30;
/// Longest a child may take to open the store and acknowledge the writes a kill waits for.
const CHILD_PROGRESS_MAX: Duration = Duration::from_secs(20);

/// A small store so segments seal, parity gets written and snapshots are taken between kills: the log is bounded
/// to two minimal segments, so a compaction runs every few dozen writes.
fn config() -> StoreConfig {
    StoreConfig {
        segment_bytes_max: 4 << 10,
        wal_bytes_max: 8 << 10,
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

/// Bytes of the WAL record of a put of `doc(n)`, batch-marked as the leader writes it.
fn put_record_bytes(n: u64) -> usize {
    let d = doc(n);
    let meta = store::codec::validate_doc(&d, &store::Limits::default(), None).unwrap();
    let mut body = Vec::new();
    store::codec::encode_doc(&d, meta.as_deref(), &mut body);
    let mut rec = Vec::new();
    store::codec::encode_record(n, store::codec::KIND_PUT, &id(n), &body, &mut rec);
    rec.len() + store::codec::BATCH_MARK_BYTES
}

/// The smallest and the largest WAL record the child can write (a delete; a put of the longest document).
fn record_bytes_bounds() -> (usize, usize) {
    let mut del = Vec::new();
    store::codec::encode_record(1, store::codec::KIND_DELETE, &id(0), &[], &mut del);
    // Every shape of document (n mod 17, 3, 5) at the widest id the test reaches.
    let widest = (99_999_999 - 255..=99_999_999)
        .map(put_record_bytes)
        .max()
        .unwrap();
    (del.len() + store::codec::BATCH_MARK_BYTES, widest)
}

/// Prints one line and flushes it, in one write so a kill cannot cut it, under the lock so writers cannot mix it.
fn say(line: std::fmt::Arguments) {
    let line = format!("{line}\n");
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).unwrap();
    out.flush().unwrap();
}

/// The child: `WRITERS` threads write ids from `MEDIC_CRASH_CHILD=<dir>,<first>,<seed>` on, each deleting one of
/// its own earlier ids now and then, until killed. Writer `t` owns the ids `n` with `n % WRITERS == t`, so no two
/// writers ever touch the same document and the parent can tell whose line it reads.
fn child_main(spec: &str) {
    let mut parts = spec.split(',');
    let dir = parts.next().expect("dir");
    let first: u64 = parts.next().and_then(|s| s.parse().ok()).expect("first id");
    let seed: u64 = parts.next().and_then(|s| s.parse().ok()).expect("seed");
    let store = Store::open(dir, config()).expect("child opens the store");
    // libtest has printed `test crash_child ... ` without a newline: start a fresh line.
    say(format_args!("\nREADY"));
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            let store = &store;
            s.spawn(move || writer(store, first, t, seed));
        }
    });
}

fn writer(store: &Store, first: u64, t: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ t.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // This writer's first id at or above `first`.
    let mut n = first + (t + WRITERS - first % WRITERS) % WRITERS;
    loop {
        let earlier = (n / WRITERS).min(50);
        if earlier > 0 && rng.random_bool(0.1) {
            let victim = n - WRITERS * rng.random_range(1..=earlier);
            say(format_args!("TRY DEL {}", id(victim)));
            match store.delete(&id(victim)) {
                Ok(Some(lsn)) => say(format_args!("ACK DEL {} {lsn}", id(victim))),
                Ok(None) => say(format_args!("NONE DEL {}", id(victim))),
                Err(e) => panic!("delete failed: {e}"),
            }
        } else {
            say(format_args!("TRY PUT {}", id(n)));
            let lsn = store.put(&id(n), doc(n)).expect("put");
            say(format_args!("ACK PUT {} {lsn}", id(n)));
            n += WRITERS;
        }
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
    /// Every LSN a child acknowledges must be above this: the highest acknowledged or recovered so far.
    last_lsn: u64,
    /// Records (puts and deletes) acknowledged, over all kills.
    acked: u64,
    /// Acknowledgements the kills waited for: `acked` is at least this, whatever the timing.
    acked_guaranteed: u64,
    /// Distinct snapshots found on reopen.
    snapshots_seen: BTreeSet<u64>,
    /// Reopens that loaded a snapshot and replayed log records on top of it.
    snapshot_and_log_recoveries: u32,
}

impl Run {
    fn kill_one(&mut self, dir: &Path, rng: &mut StdRng, kill_idx: u32) {
        // Every draw is made on every kill, so the schedule is a pure function of the seed.
        let child_seed: u64 = rng.random();
        let from_spawn = rng.random_bool(0.1);
        let spawn_ms = rng.random_range(0..=KILL_AFTER_MS_MAX);
        let acks_wanted = rng.random_range(ACKS_MIN..=ACKS_MAX);
        let jitter_us = rng.random_range(0..=JITTER_US_MAX);

        let exe = std::env::current_exe().unwrap();
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
        // One kill in ten lands at a random moment from spawn, so some hit open and recovery. The others wait until
        // the child has acknowledged `acks_wanted` records (read from its stdout), then a little more, so every
        // such kill interrupts a store that has written, whatever the machine's speed.
        let mut lines = Vec::new();
        let mut stalled = None;
        if from_spawn {
            std::thread::sleep(Duration::from_millis(spawn_ms));
        } else {
            let deadline = Instant::now() + CHILD_PROGRESS_MAX;
            let (mut ready, mut acks) = (false, 0);
            while !ready || acks < acks_wanted {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => {
                        ready |= line == "READY";
                        acks += u32::from(ready && line.starts_with("ACK "));
                        lines.push(line);
                    }
                    Err(e) => {
                        stalled = Some(format!(
                            "{e:?} after ready={ready}, {acks} of {acks_wanted} acknowledgements"
                        ));
                        break;
                    }
                }
            }
            self.acked_guaranteed += u64::from(acks_wanted);
            std::thread::sleep(Duration::from_micros(jitter_us));
        }
        let exited_early = child.try_wait().unwrap();
        child.kill().ok();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        if exited_early.is_some() || stalled.is_some() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).ok();
            panic!(
                "seed={} kill {kill_idx}: child exited by itself ({exited_early:?}) or stalled ({stalled:?}) \
                 before the kill:\n{err}",
                self.seed
            );
        }
        assert!(
            !status.success(),
            "seed={}: child was not killed",
            self.seed
        );
        lines.extend(rx.try_iter());
        // LSNs: above everything acknowledged or recovered before this child, rising per writer, never repeated.
        let floor = self.last_lsn;
        let mut per_writer: BTreeMap<u64, u64> = BTreeMap::new();
        let mut lsns = BTreeSet::new();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["TRY", "PUT", id] | ["TRY", "DEL", id] => {
                    self.expect.insert(id.to_string(), Expect::Either);
                }
                ["ACK", "PUT", id, lsn] => {
                    self.expect.insert(id.to_string(), Expect::Present);
                    self.note_lsn(floor, (&mut per_writer, &mut lsns), id, lsn, &line);
                    self.next_id = self.next_id.max(parse_n(id) + 1);
                }
                ["ACK", "DEL", id, lsn] => {
                    self.expect.insert(id.to_string(), Expect::Gone);
                    self.note_lsn(floor, (&mut per_writer, &mut lsns), id, lsn, &line);
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
            // An attempted put moves next_id past its id, so it is never reused.
            if let ["TRY", "PUT", id] = words.as_slice() {
                self.next_id = self.next_id.max(parse_n(id) + 1);
            }
        }
    }

    /// Checks an acknowledged LSN: above `floor`, above the same writer's previous one, and not acknowledged twice.
    fn note_lsn(
        &mut self,
        floor: u64,
        (per_writer, lsns): (&mut BTreeMap<u64, u64>, &mut BTreeSet<u64>),
        id: &str,
        lsn: &str,
        line: &str,
    ) {
        let lsn: u64 = lsn.parse().unwrap_or_else(|_| panic!("bad line {line:?}"));
        let prev = per_writer.entry(parse_n(id) % WRITERS).or_insert(floor);
        assert!(
            lsn > *prev,
            "seed={}: LSN {lsn} not above {} (the writer's previous, or the last before this child) ({line})",
            self.seed,
            *prev
        );
        *prev = lsn;
        assert!(
            lsns.insert(lsn),
            "seed={}: LSN {lsn} acknowledged twice ({line})",
            self.seed
        );
        self.last_lsn = self.last_lsn.max(lsn);
        self.acked += 1;
    }

    /// Reopens the store and checks every expectation. Settles `Either` to what was found.
    fn verify(&mut self, dir: &Path, kill_idx: u32) {
        let store = Store::open(dir, config())
            .unwrap_or_else(|e| panic!("seed={} kill {kill_idx}: reopen failed: {e}", self.seed));
        let report = store.recovery_report();
        if let Some(snap) = report.snapshot_lsn {
            self.snapshots_seen.insert(snap);
            if report.records_replayed > 0 {
                self.snapshot_and_log_recoveries += 1;
            }
        }
        // Records in flight at the kill may have survived: the next child must number above them too.
        self.last_lsn = self.last_lsn.max(report.last_lsn);
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
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = Run {
        seed,
        expect: BTreeMap::new(),
        next_id: 0,
        last_lsn: 0,
        acked: 0,
        acked_guaranteed: 0,
        snapshots_seen: BTreeSet::new(),
        snapshot_and_log_recoveries: 0,
    };
    for k in 0..kills {
        run.kill_one(dir.path(), &mut rng, k);
        run.verify(dir.path(), k);
    }
    let present = run
        .expect
        .values()
        .filter(|e| **e == Expect::Present)
        .count();
    let store = Store::open(dir.path(), config()).unwrap();
    let stats = store.stats();
    eprintln!(
        "crash test seed={seed}: {kills} kills in {:.1?}, {} records acknowledged ({} waited for), {present} documents \
         present, last LSN {}, {} snapshots seen on reopen ({} reopens replayed a log on top of one), latest {:?}, \
         {} segments",
        t0.elapsed(),
        run.acked,
        run.acked_guaranteed,
        stats.last_lsn,
        run.snapshots_seen.len(),
        run.snapshot_and_log_recoveries,
        stats.snapshot_lsn,
        stats.segments
    );
    assert!(
        run.acked >= run.acked_guaranteed,
        "seed={seed}: {} acknowledgements counted, but the kills waited for {}",
        run.acked,
        run.acked_guaranteed
    );
    // Compaction is certain, not a matter of timing: every acknowledged record stays in the log until a snapshot
    // covers it, the log is compacted once it outgrows `wal_bytes_max`, and a record whose commit triggers a
    // compaction is acknowledged only after it. So each snapshot covers at most `wal_bytes_max` plus a group commit
    // (one record per writer) of acknowledged bytes; two, to leave room for a follower woken early by its condvar.
    // The records the kills waited for fill that many times over.
    let (record_min, record_max) = record_bytes_bounds();
    let per_snapshot = config().wal_bytes_max + 2 * WRITERS * record_max as u64;
    let snapshots_certain = run.acked_guaranteed * record_min as u64 / per_snapshot;
    if kills >= KILLS {
        assert!(
            snapshots_certain >= 2,
            "seed={seed}: test parameters too weak: {} acknowledgements of >= {record_min} bytes certainly cause only \
             {snapshots_certain} compactions",
            run.acked_guaranteed
        );
    }
    if snapshots_certain >= 1 {
        assert!(
            stats.snapshot_lsn.is_some(),
            "seed={seed}: no snapshot was taken, though {} acknowledged records of >= {record_min} bytes exceed the \
             log bound of {} bytes",
            run.acked_guaranteed,
            config().wal_bytes_max
        );
    }
}
