//! Damage done to a running daemon's data directory while writers write — a file together with its redundancy, the
//! whole layout deleted, the open segment deleted, both manifest copies —, then a clean SIGTERM and a restart:
//! every acknowledged document must read back byte for byte. While the in-memory table verifies it holds every
//! acknowledged record, so none of this may put data at risk, stop writes for good, or need a human.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{
    Daemon, WriteLog, Writers, assert_all_acked_readable, files_in, start_with_config, tail,
    wait_for,
};

/// Checks every 100 ms; 64 KiB segments and a 2 MiB log, so segments are sealed within a second of writing and
/// a snapshot written every few seconds, and a sealed segment lives long enough to be damaged and found. A strategy
/// that failed is retried after 2 s instead of a minute, so a retry falls inside the test's time.
const FAST_CHECKS: &str = "[checks]\nshallow_interval_ms = 100\ndeep_interval_ms = 200\n\
                           comprehensive_interval_ms = 400\n\n[constraints]\nwal_bytes_max = 2097152\n\
                           segment_bytes_max = 65536\n\n[engine]\nescalated_recheck_us = 1000000\n\
                           strategy_cooldown_us = 2000000\n";

/// Checks so rare they never run during a test: nothing repairs the damage before the stop.
const NO_CHECKS: &str = "[checks]\nshallow_interval_ms = 3600000\ndeep_interval_ms = 3600000\n\
                         comprehensive_interval_ms = 3600000\n\n[constraints]\nwal_bytes_max = 2097152\n\
                         segment_bytes_max = 65536\n";

/// Flips every byte of one 4 KiB range in the middle of `path` (several blocks past what parity rebuilds alone
/// when its sidecar is gone). False if the file is gone (compaction replaces files all the time under writers).
fn damage_middle(path: &Path) -> bool {
    let Ok(mut b) = std::fs::read(path) else {
        return false;
    };
    let mid = b.len() / 2;
    let end = (mid + 4096).min(b.len());
    for x in &mut b[mid..end] {
        *x ^= 0x5A;
    }
    // Overwrite in place (never create: a file compaction removed meanwhile stays removed).
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &b))
        .is_ok()
}

/// Removes `path`; false if it was already gone.
fn remove(path: &Path) -> bool {
    std::fs::remove_file(path).is_ok()
}

/// A file and its sidecar damaged together: the newest `<file>.par` under `sub` removed and its file damaged.
fn file_and_sidecar(data: &Path, sub: &str, suffix: &str) -> bool {
    let Some(par) = files_in(&data.join(sub), &format!("{suffix}.par")).pop() else {
        return false;
    };
    let file = PathBuf::from(par.to_string_lossy().trim_end_matches(".par").to_string());
    remove(&par) && damage_middle(&file)
}

/// Waits until the damage is healed: no active incident has an integrity issue or a CRISIS, the full scrub passes,
/// and writes are acknowledged again — writers that keep writing see at least `more` acknowledged writes after
/// `since` acknowledged ones. (Anomalies of the write rate itself may stay open: they are not damage.)
fn wait_healed(d: &Daemon, w: &Writers, since: usize, more: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, st) = d.json("GET", "/v1/status", None);
        let damage: Vec<String> = st["active_incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| {
                i["record"]["crisis"] == "CRISIS"
                    || i["record"]["issues"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|is| is["kind"] == "integrity")
            })
            .map(|i| {
                format!(
                    "{} [{}]: {} (decision: {})",
                    i["record"]["id"],
                    i["status"],
                    i["record"]["root_cause"],
                    i["record"]["decision"]
                )
            })
            .collect();
        let acked = w.acked_count();
        let last = if damage.is_empty() && acked >= since + more {
            let (_, h) = d.json("GET", "/v1/health?tier=full", None);
            if h["passed"] == true {
                return;
            }
            format!("full scrub: {h}")
        } else {
            format!(
                "damage incidents {damage:?}; read_only {}",
                st["store"]["read_only"]
            )
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not healed within 60 s: acked {acked} (had {since}); {last}; stderr tail:\n{}",
            tail(&d.stderr(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `damage` against a daemon with writers at work (retried until it finds its files: the writers make
/// compaction replace them every few seconds), waits for it to heal (when `heals`), stops it cleanly, restarts it
/// and compares every acknowledged document. Returns the write log.
fn attack(name: &str, config: &str, heals: bool, damage: impl Fn(&Path) -> bool) -> WriteLog {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start_with_config(&data, tmp.path(), config);
    let w = Writers::start(&d.url, "a", 4, 50_000, false);
    // Enough for a snapshot and a sealed segment under the 1 MiB log bound.
    w.wait_acked(500, Duration::from_secs(60));
    wait_for(
        "a snapshot and a sealed segment",
        Duration::from_secs(60),
        || {
            (!files_in(&data.join("snap"), ".snap").is_empty()
                && !files_in(&data.join("wal"), ".par").is_empty())
            .then_some(())
        },
    );
    wait_for(
        &format!("{name}: the damage done"),
        Duration::from_secs(30),
        || damage(&data).then_some(()),
    );
    let at_damage = w.acked_count();
    if heals {
        wait_healed(&d, &w, at_damage, 300, name);
    } else {
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = w.finish();
    eprintln!("{name}: {}", log.summary());
    for (status, (n, example)) in log.refusals() {
        // The store's own trouble is a 503 with a reason; a 500 would be a bug in medic.
        assert!(
            status == 503,
            "{name}: {n} writes answered {status}, e.g. {example}"
        );
    }
    d.stop();
    let d = start_with_config(&data, tmp.path(), config);
    let (_, st) = d.json("GET", "/v1/status", None);
    assert_eq!(
        st["store"]["lost"].as_array().map_or(0, Vec::len),
        0,
        "{name}: a loss after a clean restart: {}; recovery issues {}",
        st["store"]["lost"],
        st["recovery"]["issues"]
    );
    assert_all_acked_readable(&d, &log, name);
    d.stop();
    log
}

#[test]
fn a_snapshot_and_its_sidecar_damaged_together_are_rewritten_from_the_table_and_writes_go_on() {
    attack("snapshot + sidecar", FAST_CHECKS, true, |data| {
        file_and_sidecar(data, "snap", ".snap")
    });
}

#[test]
fn a_sealed_segment_and_its_sidecar_damaged_together_are_rewritten_from_the_table_and_writes_go_on()
{
    attack("sealed segment + sidecar", FAST_CHECKS, true, |data| {
        file_and_sidecar(data, "wal", ".seg")
    });
}

fn delete_layout(data: &Path) -> bool {
    std::fs::remove_dir_all(data.join("wal")).is_ok()
        & std::fs::remove_dir_all(data.join("snap")).is_ok()
        & remove(&data.join("MANIFEST-A"))
        & remove(&data.join("MANIFEST-B"))
}

#[test]
fn the_whole_layout_deleted_while_running_is_rewritten_from_the_table() {
    attack(
        "wal/, snap/ and both manifests deleted",
        FAST_CHECKS,
        true,
        delete_layout,
    );
}

fn delete_open_segment(data: &Path) -> bool {
    let Some(mir) = files_in(&data.join("wal"), ".mir").pop() else {
        return false;
    };
    let seg = PathBuf::from(mir.to_string_lossy().trim_end_matches(".mir").to_string() + ".seg");
    remove(&seg) & remove(&mir)
}

#[test]
fn the_open_segment_and_its_mirror_deleted_while_running_lose_nothing() {
    attack(
        "open segment + mirror deleted",
        FAST_CHECKS,
        true,
        delete_open_segment,
    );
    // No check and no compaction due for an hour: the next commit itself must notice.
    attack(
        "open segment + mirror deleted, no checks",
        NO_CHECKS,
        false,
        delete_open_segment,
    );
}

#[test]
fn both_manifest_copies_damaged_while_running_are_rewritten() {
    attack("both manifests damaged", FAST_CHECKS, true, |data| {
        damage_middle(&data.join("MANIFEST-A")) & damage_middle(&data.join("MANIFEST-B"))
    });
}

/// No check runs before the stop: `close` itself must write out what only the table still holds.
#[test]
fn a_clean_stop_never_discards_the_only_good_copy() {
    attack(
        "snapshot + sidecar, then SIGTERM at once",
        NO_CHECKS,
        false,
        |data| file_and_sidecar(data, "snap", ".snap"),
    );
    attack(
        "sealed segment + sidecar, then SIGTERM at once",
        NO_CHECKS,
        false,
        |data| file_and_sidecar(data, "wal", ".seg"),
    );
    attack(
        "everything deleted, then SIGTERM at once",
        NO_CHECKS,
        false,
        delete_layout,
    );
}

/// One seeded damage operation on a random data file: a flipped byte, a zeroed range, a cut tail, or the file
/// deleted. Returns what it did, or `None` when it found no file to damage.
fn random_damage(data: &Path, rng: &mut u64) -> Option<String> {
    let mut next = || {
        // xorshift64*: small, seeded, reproducible.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut files = Vec::new();
    for sub in ["wal", "snap"] {
        files.extend(files_in(&data.join(sub), ""));
    }
    files.extend(["MANIFEST-A", "MANIFEST-B"].map(|m| data.join(m)));
    files.retain(|f| f.is_file());
    if files.is_empty() {
        return None;
    }
    let f = &files[(next() % files.len() as u64) as usize];
    let len = std::fs::metadata(f).ok()?.len();
    let what = match next() % 4 {
        0 if len > 0 => {
            let at = next() % len;
            let mut b = std::fs::read(f).ok()?;
            b[at as usize] ^= 1 << (next() % 8);
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .and_then(|mut h| std::io::Write::write_all(&mut h, &b))
                .ok()?;
            format!("flipped a bit at {at}")
        }
        1 if len > 0 => {
            let at = next() % len;
            let n = (next() % 4096).min(len - at);
            let mut b = std::fs::read(f).ok()?;
            b[at as usize..(at + n) as usize].fill(0);
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .and_then(|mut h| std::io::Write::write_all(&mut h, &b))
                .ok()?;
            format!("zeroed {n} bytes at {at}")
        }
        2 if len > 0 => {
            let to = next() % len;
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .and_then(|h| h.set_len(to))
                .ok()?;
            format!("cut to {to} bytes")
        }
        _ => {
            std::fs::remove_file(f).ok()?;
            "deleted".to_string()
        }
    };
    Some(format!(
        "{}: {what}",
        f.strip_prefix(data).unwrap_or(f).display()
    ))
}

/// Mixed load (writers, readers, vector searches) while seeded random damage hits every kind of data file: what
/// redundancy undoes is undone, writes never stay refused, and after the load a clean restart finds every
/// acknowledged document. Seed from `MEDIC_ATTACK_SEED`, printed.
#[test]
fn random_damage_under_mixed_load_is_healed_and_loses_nothing() {
    let seed: u64 = std::env::var("MEDIC_ATTACK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0FDA_3A6E);
    eprintln!("random damage under load: seed={seed} (replay: MEDIC_ATTACK_SEED={seed})");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start_with_config(&data, tmp.path(), FAST_CHECKS);
    let w = Writers::start(&d.url, "m", 4, 100_000, false);
    w.wait_acked(500, Duration::from_secs(60));
    // Readers and vector searches beside the writers.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (url, stop) = (d.url.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = support::agent();
                let mut bad = Vec::new();
                let mut i = r;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let resp = if i % 2 == 0 {
                        agent.get(&format!("{url}/v1/docs/m-{}", i % 500)).call()
                    } else {
                        agent
                            .post(&format!("{url}/v1/search"))
                            .header("Content-Type", "application/json")
                            .send(r#"{"vector":[1.0,1.0,1.0],"k":5}"#)
                    };
                    if let Ok(mut resp) = resp {
                        let s = resp.status().as_u16();
                        let body = resp.body_mut().read_to_string().unwrap_or_default();
                        // A read may be refused (503, naming why) but never answered wrongly or with a 500.
                        if s == 500 {
                            bad.push(body);
                        }
                    }
                    i += 2;
                }
                bad
            })
        })
        .collect();
    let mut rng = seed | 1;
    let mut done = Vec::new();
    while done.len() < 20 {
        if let Some(what) = random_damage(&data, &mut rng) {
            done.push(what);
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    eprintln!("damage done: {done:#?}");
    let at_damage = w.acked_count();
    wait_healed(&d, &w, at_damage, 300, &format!("seed {seed}"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        let bad = r.join().unwrap();
        assert!(bad.is_empty(), "seed {seed}: reads answered 500: {bad:?}");
    }
    let log = w.finish();
    eprintln!("seed {seed}: {}", log.summary());
    for (status, (n, example)) in log.refusals() {
        assert!(
            status == 503,
            "seed {seed}: {n} writes answered {status}, e.g. {example}"
        );
    }
    d.stop();
    let d = start_with_config(&data, tmp.path(), FAST_CHECKS);
    let (_, st) = d.json("GET", "/v1/status", None);
    assert_eq!(
        st["store"]["lost"].as_array().map_or(0, Vec::len),
        0,
        "seed {seed}: a loss after a clean restart: {}",
        st["store"]["lost"]
    );
    assert_all_acked_readable(&d, &log, &format!("seed {seed}"));
    d.stop();
}
