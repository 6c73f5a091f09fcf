//! Text-index faults for the chaos campaign ([`run`], `medic chaos --faults text_segment_flip,...`): a store from
//! [`store::chaos::Harness`] with a [`TextIndex`] attached, then per round one fault of the index's files, healed by
//! the engine (or, for an index ahead of the log, by the attach that finds it) with detection and repair timed.
//! Before the fault and after the repair, a fixed set of searches is answered by the index and by a scan of the
//! table ([`crate::scan()`]); both must agree, and the searches' hits after the repair must be the ones before.
//!
//! The faults ([`TextFault`]):
//! - `text_segment_flip` — one bit flipped in a file of a segment of the live generation (seeded: file, byte, bit);
//! - `text_meta_deleted` — the live generation's `meta.json` deleted;
//! - `text_lsn_ahead` — the index closed, its commit payload rewritten to claim an LSN beyond the log's last, and
//!   reopened (an index copied from elsewhere, or a log restored from an older backup);
//! - `text_zeroed_range` — 64..=4096 bytes of a segment file zeroed in place (seeded: file, offset, length);
//! - `text_segment_deleted` — one file of a segment of the live generation deleted;
//! - `text_stale_lock` — the index closed as a killed process leaves it: `LOCK` naming a dead pid and tantivy's
//!   `.tantivy-writer.lock` left in the generation; reopened without any clean-up (the kernel locks went with the
//!   process, the files mean nothing);
//! - `text_lag` — the index stops applying (detached) while 50..=200 documents are written, then attached again: it
//!   is behind and caught up by replay of the log (the new documents found, then deleted again, also replayed);
//! - `text_crash_commit` — the index closed as a crash in the middle of a commit leaves it: a new segment's files
//!   written (copies of a live segment's, under a new id) and `meta.json`'s atomic replacement interrupted (a
//!   `.tmp` file with half of it); reopened at the last commit, the leftover `.tmp` removed, the unreferenced files
//!   left to the `orphan_files` structure check. (`medic`'s `text_sigkill` test kills a real process mid-commit.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use store::Store;
use store::chaos::{Harness, HarnessConfig};
use store::derived::{DEFAULT_COLLECTION, DerivedIndex, index_dir_rel};
use store::fault::{FaultKind, InjectedFault};

use crate::index::{NAME, TextIndex};
use crate::search::SearchRequest;
use crate::settings::TextSettings;

/// Rounds of one campaign at most.
pub const ROUNDS_MAX: u32 = 100;
/// Documents in the store at most.
pub const DOCS_MAX: u32 = 50_000;
/// How long the index may take to reach the log (a catch-up or a rebuild) before the round fails.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// The searches compared before and after each fault.
const QUERIES: usize = 12;

/// A fault of the text index's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextFault {
    /// One bit of a segment file flipped.
    TextSegmentFlip,
    /// `meta.json` of the live generation deleted.
    TextMetaDeleted,
    /// The commit payload's LSN beyond the log's last.
    TextLsnAhead,
    /// A range of a segment file zeroed.
    TextZeroedRange,
    /// A segment file deleted.
    TextSegmentDeleted,
    /// Lock files left by a killed process.
    TextStaleLock,
    /// The index stopped applying while documents were written.
    TextLag,
    /// A commit interrupted by a crash.
    TextCrashCommit,
}

impl TextFault {
    /// Every text fault, in a fixed order.
    pub const ALL: [TextFault; 8] = [
        TextFault::TextSegmentFlip,
        TextFault::TextMetaDeleted,
        TextFault::TextLsnAhead,
        TextFault::TextZeroedRange,
        TextFault::TextSegmentDeleted,
        TextFault::TextStaleLock,
        TextFault::TextLag,
        TextFault::TextCrashCommit,
    ];

    /// The fault's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TextFault::TextSegmentFlip => "text_segment_flip",
            TextFault::TextMetaDeleted => "text_meta_deleted",
            TextFault::TextLsnAhead => "text_lsn_ahead",
            TextFault::TextZeroedRange => "text_zeroed_range",
            TextFault::TextSegmentDeleted => "text_segment_deleted",
            TextFault::TextStaleLock => "text_stale_lock",
            TextFault::TextLag => "text_lag",
            TextFault::TextCrashCommit => "text_crash_commit",
        }
    }

    /// The fault named `name`.
    pub fn parse(name: &str) -> Option<TextFault> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A text chaos campaign.
#[derive(Clone, Debug)]
pub struct TextChaosConfig {
    /// A scratch data directory (empty or absent).
    pub data_dir: PathBuf,
    /// Every choice derives from it.
    pub seed: u64,
    /// Rounds (1..=[`ROUNDS_MAX`]).
    pub rounds: u32,
    /// Faults drawn from (empty: all).
    pub faults: Vec<TextFault>,
    /// Documents before the first round (1..=[`DOCS_MAX`]).
    pub docs: u32,
}

/// One round.
#[derive(Clone, Debug, Serialize)]
pub struct TextRound {
    pub round: u32,
    pub fault: TextFault,
    /// What was done, e.g. `flipped bit 3 of byte 812 of idx/default/text/gen-000001/….idx`.
    pub detail: String,
    /// The damaged segment file stopped being part of the index before any check read it (a merge replaced its
    /// segment from the bytes already loaded): nothing left to detect or repair, and every search right.
    pub absorbed: bool,
    pub detected: bool,
    /// Injection to the first issue naming the index (or, for `text_lsn_ahead`, to the rebuild that replaced it).
    pub detect_ms: Option<f64>,
    /// Repaired, the index caught up, and every search agreed with the scan and with its answer before the fault.
    pub repaired: bool,
    /// Injection to a verified repair.
    pub repair_ms: Option<f64>,
    /// Engine cycles run.
    pub cycles: u32,
    /// The repairs the engine applied (strategy names).
    pub strategies: Vec<String>,
    /// Searches whose hits differ (from the scan's, or from before the fault), with both answers.
    pub wrong_searches: Vec<String>,
    /// Comprehensive-tier checks that still failed after the round.
    pub scrub_failures: Vec<String>,
}

/// The campaign's report.
#[derive(Clone, Debug, Serialize)]
pub struct TextChaosReport {
    pub seed: u64,
    pub docs: u32,
    pub rounds: Vec<TextRound>,
    pub injected: u32,
    pub detected: u32,
    pub repaired: u32,
    /// Rounds whose damaged file stopped being part of the index before any check read it (see [`TextRound`]).
    pub absorbed: u32,
    /// Searches answered wrongly after a repair, over every round (the bar: 0).
    pub wrong_searches: u32,
    /// Per fault: detection and repair times (p50, max), ms.
    pub by_fault: BTreeMap<String, FaultTimes>,
}

/// Detection and repair times of one fault kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultTimes {
    pub rounds: u32,
    pub detect_ms_p50: Option<f64>,
    pub detect_ms_max: Option<f64>,
    pub repair_ms_p50: Option<f64>,
    pub repair_ms_max: Option<f64>,
}

fn err(context: &str) -> impl FnOnce(String) -> String + '_ {
    move |e| format!("{context}: {e}")
}

/// Runs the campaign; `Err` names what could not be set up (a configuration error starts with `config:`).
pub fn run(config: &TextChaosConfig) -> Result<TextChaosReport, String> {
    if !(1..=ROUNDS_MAX).contains(&config.rounds) {
        return Err(format!(
            "config: rounds = {} is outside 1..={ROUNDS_MAX}",
            config.rounds
        ));
    }
    if !(1..=DOCS_MAX).contains(&config.docs) {
        return Err(format!(
            "config: docs = {} is outside 1..={DOCS_MAX}",
            config.docs
        ));
    }
    let mut faults = if config.faults.is_empty() {
        TextFault::ALL.to_vec()
    } else {
        config.faults.clone()
    };
    let hc = HarnessConfig {
        docs: config.docs,
        writes_per_round: 0,
        cycles_max: store::chaos::CYCLES_PER_ROUND_MAX,
        ..HarnessConfig::default()
    };
    let mut h = Harness::new(&config.data_dir, config.seed, hc).map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x7E47_1DE5);
    let mut index = attach(h.store())?;
    caught_up(h.store(), &index)?;
    let queries = queries(&mut rng, config.docs);
    let mut rounds = Vec::new();
    for round in 0..config.rounds {
        // Every listed fault once per `faults.len()` rounds, in a seeded order.
        if (round as usize).is_multiple_of(faults.len()) {
            for i in (1..faults.len()).rev() {
                faults.swap(i, rng.random_range(0..=i));
            }
        }
        let fault = faults[round as usize % faults.len()];
        let before = answers(h.store(), &index, &queries)?;
        let mut wrong = disagreements(&before, "before the fault");
        let t0 = Instant::now();
        let gen_dir = index.generation_dir();
        settle(&gen_dir);
        // The segment file damaged in place, if the fault damaged one.
        let mut damaged_file: Option<PathBuf> = None;
        let (detail, outcome) = match fault {
            TextFault::TextSegmentFlip
            | TextFault::TextMetaDeleted
            | TextFault::TextZeroedRange
            | TextFault::TextSegmentDeleted => {
                let (kind, detail) = match fault {
                    TextFault::TextSegmentFlip => {
                        let (detail, path) = flip_segment_file(&mut rng, &gen_dir, h.dir())?;
                        damaged_file = Some(path);
                        (FaultKind::BitFlip, detail)
                    }
                    TextFault::TextZeroedRange => {
                        let (detail, path) = zero_segment_range(&mut rng, &gen_dir, h.dir())?;
                        damaged_file = Some(path);
                        (FaultKind::ZeroRange, detail)
                    }
                    TextFault::TextSegmentDeleted => {
                        let path = pick_segment_file(&mut rng, &gen_dir)?;
                        std::fs::remove_file(&path)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        (
                            FaultKind::DeleteFile,
                            format!("deleted {}", rel(h.dir(), &path)),
                        )
                    }
                    _ => {
                        let meta = gen_dir.join("meta.json");
                        std::fs::remove_file(&meta)
                            .map_err(|e| format!("{}: {e}", meta.display()))?;
                        (
                            FaultKind::DeleteFile,
                            format!("deleted {}", rel(h.dir(), &meta)),
                        )
                    }
                };
                let injected = InjectedFault {
                    kind,
                    file: Some(index_dir_rel(DEFAULT_COLLECTION, NAME)),
                    offset: None,
                    len: None,
                    detail: detail.clone(),
                };
                let out = h.heal(vec![injected]).map_err(|e| e.to_string())?;
                // The round ends with the store reopened: the index is opened and attached again, as at a restart.
                drop(index);
                index = attach(h.store())?;
                let strategies = out
                    .incidents
                    .iter()
                    .flat_map(|i| i.attempts.iter().map(|a| a.strategy.clone()))
                    .collect();
                (
                    detail,
                    Healed {
                        detect_ms: out.detect_ms,
                        engine_ok: out.repaired,
                        cycles: out.cycles,
                        strategies,
                        scrub_failures: out.scrub_failures,
                    },
                )
            }
            TextFault::TextLsnAhead => {
                let last = h.store().stats().last_lsn;
                let ahead = last + 1_000 + rng.random_range(0..1_000);
                drop(h.store().derived().detach(DEFAULT_COLLECTION, NAME));
                drop(index);
                let detail = rewrite_payload_lsn(&gen_dir, ahead)?;
                let t0 = Instant::now();
                index = attach(h.store())?;
                let rebuilt = wait_until(CATCH_UP_TIMEOUT, || {
                    index.applied_lsn() <= h.store().stats().last_lsn
                });
                let detect_ms = rebuilt.then(|| t0.elapsed().as_secs_f64() * 1e3);
                let scrub_failures = h.scrub();
                (
                    format!("{detail} (the log's last LSN is {last})"),
                    Healed {
                        detect_ms,
                        engine_ok: rebuilt && scrub_failures.is_empty(),
                        cycles: 0,
                        strategies: vec!["attach: rebuild from the table".to_string()],
                        scrub_failures,
                    },
                )
            }
            TextFault::TextStaleLock | TextFault::TextCrashCommit => {
                drop(h.store().derived().detach(DEFAULT_COLLECTION, NAME));
                drop(index);
                let generation = gen_dir.clone();
                let detail = if fault == TextFault::TextStaleLock {
                    leave_stale_locks(&gen_dir, h.dir())?
                } else {
                    leave_interrupted_commit(&mut rng, &gen_dir, h.dir())?
                };
                let t0 = Instant::now();
                index = attach(h.store())?;
                let reopened = caught_up(h.store(), &index).is_ok();
                let detect_ms = reopened.then(|| t0.elapsed().as_secs_f64() * 1e3);
                let mut problems = h.scrub();
                // Reopened at its last commit: the same generation, no rebuild needed, no `.tmp` left.
                if index.generation_dir() != generation {
                    problems.push(format!(
                        "reopened as {} instead of {}",
                        rel(h.dir(), &index.generation_dir()),
                        rel(h.dir(), &generation)
                    ));
                }
                if let Some(tmp) = tmp_files(&index.generation_dir()).first() {
                    problems.push(format!("{} left after the reopen", rel(h.dir(), tmp)));
                }
                (
                    detail,
                    Healed {
                        detect_ms,
                        engine_ok: reopened && problems.is_empty(),
                        cycles: 0,
                        strategies: vec!["open: reopened at the last commit".to_string()],
                        scrub_failures: problems,
                    },
                )
            }
            TextFault::TextLag => {
                let (detail, healed, reattached) = lag(&mut rng, &mut h, index)?;
                index = reattached;
                (detail, healed)
            }
        };
        let after = match caught_up(h.store(), &index) {
            Ok(()) => answers(h.store(), &index, &queries)?,
            Err(e) => {
                wrong.push(e);
                Vec::new()
            }
        };
        wrong.extend(disagreements(&after, "after the repair"));
        for (b, a) in before.iter().zip(&after) {
            if b.index != a.index {
                wrong.push(format!(
                    "{:?}: before the fault {:?}, after the repair {:?}",
                    b.query, b.index, a.index
                ));
            }
        }
        let repaired = outcome.engine_ok && wrong.is_empty() && after.len() == before.len();
        // Not found because it no longer mattered: the damaged file is no segment of the index now (a merge in
        // flight replaced its segment, reading the bytes already loaded and checked, before any check ran).
        let absorbed = outcome.detect_ms.is_none()
            && wrong.is_empty()
            && after.len() == before.len()
            && damaged_file.as_ref().is_some_and(|p| {
                segment_files(&index.generation_dir()).is_ok_and(|live| !live.contains(p))
            });
        rounds.push(TextRound {
            round,
            fault,
            absorbed,
            detail,
            detected: outcome.detect_ms.is_some(),
            detect_ms: outcome.detect_ms,
            repaired,
            repair_ms: repaired.then(|| t0.elapsed().as_secs_f64() * 1e3),
            cycles: outcome.cycles,
            strategies: outcome.strategies,
            wrong_searches: wrong,
            scrub_failures: outcome.scrub_failures,
        });
    }
    Ok(report(config, rounds))
}

struct Healed {
    detect_ms: Option<f64>,
    engine_ok: bool,
    cycles: u32,
    strategies: Vec<String>,
    scrub_failures: Vec<String>,
}

fn report(config: &TextChaosConfig, rounds: Vec<TextRound>) -> TextChaosReport {
    let mut by_fault: BTreeMap<String, (Vec<f64>, Vec<f64>, u32)> = BTreeMap::new();
    for r in &rounds {
        let e = by_fault.entry(r.fault.name().to_string()).or_default();
        e.2 += 1;
        e.0.extend(r.detect_ms);
        e.1.extend(r.repair_ms);
    }
    let p50 = |v: &[f64]| (!v.is_empty()).then(|| store::chaos::percentile(v, 0.5));
    let max = |v: &[f64]| v.iter().copied().reduce(f64::max);
    TextChaosReport {
        seed: config.seed,
        docs: config.docs,
        injected: rounds.len() as u32,
        detected: rounds.iter().filter(|r| r.detected).count() as u32,
        repaired: rounds.iter().filter(|r| r.repaired).count() as u32,
        absorbed: rounds.iter().filter(|r| r.absorbed).count() as u32,
        wrong_searches: rounds.iter().map(|r| r.wrong_searches.len() as u32).sum(),
        by_fault: by_fault
            .into_iter()
            .map(|(k, (d, r, n))| {
                (
                    k,
                    FaultTimes {
                        rounds: n,
                        detect_ms_p50: p50(&d),
                        detect_ms_max: max(&d),
                        repair_ms_p50: p50(&r),
                        repair_ms_max: max(&r),
                    },
                )
            })
            .collect(),
        rounds,
    }
}

fn rel(base: &Path, p: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

fn attach(store: &Arc<Store>) -> Result<Arc<TextIndex>, String> {
    let index = TextIndex::open_with(
        store.dir(),
        DEFAULT_COLLECTION,
        TextSettings::default(),
        store.config().io.clone(),
    )
    .map_err(|e| format!("opening the text index: {e}"))?;
    let index = Arc::new(index);
    store
        .attach_derived(index.clone())
        .map_err(|e| format!("attaching the text index: {e}"))?;
    Ok(index)
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the index has applied the log as of now and made it visible (as a strong search does).
fn caught_up(store: &Store, index: &TextIndex) -> Result<(), String> {
    let lsn = store.stats().last_lsn;
    store
        .derived()
        .wait_applied(lsn, CATCH_UP_TIMEOUT)
        .map_err(|e| format!("the text index did not reach LSN {lsn}: {e}"))?;
    if wait_until(CATCH_UP_TIMEOUT, || index.visible_lsn() >= lsn) {
        Ok(())
    } else {
        Err(format!(
            "the text index made LSN {} visible, not {lsn}, within {CATCH_UP_TIMEOUT:?}",
            index.visible_lsn()
        ))
    }
}

/// Searches over the documents the harness writes (`chaos document N version V: medic heals …`): single numbers,
/// phrases, AND, OR and a prefix, none matching a document written after the campaign starts.
fn queries(rng: &mut StdRng, docs: u32) -> Vec<String> {
    let mut n = || rng.random_range(1..docs.max(2));
    let mut out = Vec::with_capacity(QUERIES);
    for i in 0..QUERIES {
        out.push(match i % 4 {
            0 => format!("{}", n()),
            1 => format!("\"document {}\"", n()),
            2 => format!("+{} +heals", n()),
            _ => format!("{} OR {}", n(), n()),
        });
    }
    out
}

/// One search answered by the index and by a scan: hit ids and totals.
struct Answer {
    query: String,
    index: (Vec<String>, u64),
    scan: (Vec<String>, u64),
}

fn answers(store: &Store, index: &TextIndex, queries: &[String]) -> Result<Vec<Answer>, String> {
    let mut docs: Vec<(String, store::Document)> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan(after.as_deref(), 1_000)
            .map_err(|e| format!("reading the table: {e}"))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        docs.extend(page);
    }
    let lsn = store.stats().last_lsn;
    let settings = TextSettings::default();
    queries
        .iter()
        .map(|q| {
            let req = SearchRequest::new(q.clone(), 20);
            let ids =
                |a: crate::SearchAnswer| (a.hits.into_iter().map(|h| h.id).collect(), a.total);
            let i = index
                .search(&req)
                .map(&ids)
                .unwrap_or_else(|e| (vec![format!("error: {e}")], 0));
            let s = crate::scan(&settings, &req, &mut docs.iter().cloned(), lsn)
                .map_err(|e| err("scan")(e.to_string()))?;
            Ok(Answer {
                query: q.clone(),
                index: i,
                scan: ids(s),
            })
        })
        .collect()
}

fn disagreements(answers: &[Answer], when: &str) -> Vec<String> {
    answers
        .iter()
        .filter(|a| a.index != a.scan)
        .map(|a| {
            format!(
                "{:?} {when}: index {:?}, scan {:?}",
                a.query, a.index, a.scan
            )
        })
        .collect()
}

/// Flips one seeded bit of one seeded segment file of the generation in `gen_dir`.
fn flip_segment_file(
    rng: &mut StdRng,
    gen_dir: &Path,
    data: &Path,
) -> Result<(String, PathBuf), String> {
    let path = &pick_segment_file(rng, gen_dir)?;
    let mut bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.is_empty() {
        return Err(format!("{}: empty", path.display()));
    }
    let at = rng.random_range(0..bytes.len());
    let bit = rng.random_range(0..8u32);
    bytes[at] ^= 1 << bit;
    // In place (same inode), as bit rot under the running index is.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all_at(&bytes[at..=at], at as u64)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((
        format!("flipped bit {bit} of byte {at} of {}", rel(data, path)),
        path.clone(),
    ))
}

/// The files of the live segments of the generation in `gen_dir` (those its `meta.json` names: damage to a file
/// no commit names — a crashed commit's leftovers — is not damage to the index), sorted.
fn segment_files(gen_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let segs = crate::verify::read_metas(gen_dir)?;
    let mut files: Vec<PathBuf> = segs
        .iter()
        .flat_map(crate::verify::segment_files)
        .map(|rel| gen_dir.join(rel))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no segment file to damage", gen_dir.display()));
    }
    Ok(files)
}

/// Waits (at most 5 s) until the generation's live segment files stay the same for 300 ms: merges a rebuild left in
/// flight have landed, so the file a fault picks is not merged away before a check can find it.
fn settle(gen_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = segment_files(gen_dir).ok();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = segment_files(gen_dir).ok();
        if now == last {
            return;
        }
        last = now;
    }
}

fn pick_segment_file(rng: &mut StdRng, gen_dir: &Path) -> Result<PathBuf, String> {
    let files = segment_files(gen_dir)?;
    Ok(files[rng.random_range(0..files.len())].clone())
}

/// Zeroes 64..=4096 seeded bytes (fewer in a smaller file) of one seeded segment file, in place.
fn zero_segment_range(
    rng: &mut StdRng,
    gen_dir: &Path,
    data: &Path,
) -> Result<(String, PathBuf), String> {
    let path = pick_segment_file(rng, gen_dir)?;
    let len_file = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len_file == 0 {
        return Err(format!("{}: empty", path.display()));
    }
    // Zeros over zeros change nothing: look for a range holding a non-zero byte.
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = rng.random_range(64..=4096u64).min(len_file);
    let mut at = rng.random_range(0..=len_file - len);
    for _ in 0..64 {
        if bytes[at as usize..(at + len) as usize]
            .iter()
            .any(|b| *b != 0)
        {
            break;
        }
        at = rng.random_range(0..=len_file - len);
    }
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all_at(&vec![0u8; len as usize], at)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((
        format!("zeroed bytes {at}..+{len} of {}", rel(data, &path)),
        path,
    ))
}

/// The lock files a killed process leaves: `LOCK` naming a pid that is not running, tantivy's writer lock file.
fn leave_stale_locks(gen_dir: &Path, data: &Path) -> Result<String, String> {
    let index_dir = gen_dir
        .parent()
        .ok_or_else(|| format!("{}: no parent", gen_dir.display()))?;
    let dead_pid = dead_pid();
    let lock = index_dir.join("LOCK");
    std::fs::write(&lock, format!("pid {dead_pid}\n"))
        .map_err(|e| format!("{}: {e}", lock.display()))?;
    let writer_lock = gen_dir.join(".tantivy-writer.lock");
    std::fs::write(&writer_lock, b"").map_err(|e| format!("{}: {e}", writer_lock.display()))?;
    Ok(format!(
        "left {} naming dead pid {dead_pid} and {}",
        rel(data, &lock),
        rel(data, &writer_lock)
    ))
}

/// A pid no process has now (the highest pids are free on any ordinary system).
fn dead_pid() -> u32 {
    (4_000_000..4_194_304)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap_or(4_194_303)
}

/// What a crash in the middle of a commit leaves: a new segment's files (copies of a live segment's under a new
/// segment id) that `meta.json` does not name, and a `.tmp` file with the first half of a new `meta.json`.
fn leave_interrupted_commit(
    rng: &mut StdRng,
    gen_dir: &Path,
    data: &Path,
) -> Result<String, String> {
    let files = segment_files(gen_dir)?;
    let segment = files[rng.random_range(0..files.len())]
        .file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: a segment file without a name", gen_dir.display()))?;
    let new_id: String = (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect();
    let mut copied = 0;
    for f in files
        .iter()
        .filter(|f| f.file_stem().and_then(|s| s.to_str()) == Some(&segment))
    {
        let ext = f.extension().and_then(|x| x.to_str()).unwrap_or("");
        let to = gen_dir.join(format!("{new_id}.{ext}"));
        std::fs::copy(f, &to).map_err(|e| format!("{}: {e}", to.display()))?;
        copied += 1;
    }
    let meta = std::fs::read(gen_dir.join("meta.json"))
        .map_err(|e| format!("{}: {e}", gen_dir.join("meta.json").display()))?;
    let tmp = gen_dir.join(format!(".tmp{}", &new_id[..6]));
    std::fs::write(&tmp, &meta[..meta.len() / 2]).map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(format!(
        "{copied} files of a segment {new_id} no meta.json names, and {} with half of a meta.json",
        rel(data, &tmp)
    ))
}

fn tmp_files(gen_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(gen_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(".tmp"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `text_lag`: the index detached (it stops applying) while documents are written, then attached again; it must be
/// behind, catch up by replay, find the new documents, then apply their deletion too.
fn lag(
    rng: &mut StdRng,
    h: &mut Harness,
    index: Arc<TextIndex>,
) -> Result<(String, Healed, Arc<TextIndex>), String> {
    drop(h.store().derived().detach(DEFAULT_COLLECTION, NAME));
    let applied = index.applied_lsn();
    // Closed (its writer lock released), as a stopped index is.
    drop(index);
    let n_docs = rng.random_range(50..=200u32);
    let ids: Vec<String> = (0..n_docs).map(|i| format!("lag-{i}")).collect();
    for id in &ids {
        let doc = store::Document {
            text: "lagging writes unseen".to_string(),
            vector: None,
            meta: None,
        };
        h.store()
            .put(id, doc)
            .map_err(|e| format!("writing {id}: {e}"))?;
    }
    let last = h.store().stats().last_lsn;
    let t0 = Instant::now();
    let index = attach(h.store())?;
    let mut problems = Vec::new();
    let caught = caught_up(h.store(), &index);
    let detect_ms = caught.is_ok().then(|| t0.elapsed().as_secs_f64() * 1e3);
    if let Err(e) = caught {
        problems.push(e);
    }
    let found = index
        .search(&SearchRequest::new("lagging", 10))
        .map(|a| a.total)
        .unwrap_or(0);
    if found != u64::from(n_docs) {
        problems.push(format!(
            "after the catch-up \"lagging\" finds {found} documents, not {n_docs}"
        ));
    }
    for id in &ids {
        h.store()
            .delete(id)
            .map_err(|e| format!("deleting {id}: {e}"))?;
    }
    if let Err(e) = caught_up(h.store(), &index) {
        problems.push(e);
    }
    let left = index
        .search(&SearchRequest::new("lagging", 10))
        .map(|a| a.total)
        .unwrap_or(u64::MAX);
    if left != 0 {
        problems.push(format!(
            "after the deletes \"lagging\" finds {left} documents, not 0"
        ));
    }
    let catch_ups = h
        .store()
        .derived()
        .status()
        .indexes
        .iter()
        .find(|i| i.name == NAME)
        .map_or(0, |i| i.catch_ups);
    problems.extend(h.scrub());
    Ok((
        format!(
            "detached at LSN {applied} while {n_docs} documents were written (log at LSN {last}), then attached"
        ),
        Healed {
            detect_ms,
            engine_ok: problems.is_empty(),
            cycles: 0,
            strategies: vec![format!(
                "attach: caught up by replay ({catch_ups} catch-ups)"
            )],
            scrub_failures: problems,
        },
        index,
    ))
}

/// Rewrites the commit payload in `gen_dir/meta.json` to claim LSN `lsn`.
fn rewrite_payload_lsn(gen_dir: &Path, lsn: u64) -> Result<String, String> {
    let path = gen_dir.join("meta.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let old = meta["payload"].as_str().unwrap_or("{}").to_string();
    let mut payload: serde_json::Value =
        serde_json::from_str(&old).map_err(|e| format!("{}: payload: {e}", path.display()))?;
    payload["lsn"] = serde_json::json!(lsn);
    meta["payload"] = serde_json::Value::String(payload.to_string());
    std::fs::write(&path, meta.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!(
        "commit payload {old} rewritten to {payload} in {}",
        path.display()
    ))
}
