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
//!   reopened (an index copied from elsewhere, or a log restored from an older backup).

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
}

impl TextFault {
    /// Every text fault, in a fixed order.
    pub const ALL: [TextFault; 3] = [
        TextFault::TextSegmentFlip,
        TextFault::TextMetaDeleted,
        TextFault::TextLsnAhead,
    ];

    /// The fault's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TextFault::TextSegmentFlip => "text_segment_flip",
            TextFault::TextMetaDeleted => "text_meta_deleted",
            TextFault::TextLsnAhead => "text_lsn_ahead",
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
    let faults = if config.faults.is_empty() {
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
        let fault = faults[rng.random_range(0..faults.len())];
        let before = answers(h.store(), &index, &queries)?;
        let mut wrong = disagreements(&before, "before the fault");
        let t0 = Instant::now();
        let gen_dir = index.generation_dir();
        let (detail, outcome) = match fault {
            TextFault::TextSegmentFlip | TextFault::TextMetaDeleted => {
                let detail = match fault {
                    TextFault::TextSegmentFlip => flip_segment_file(&mut rng, &gen_dir, h.dir())?,
                    _ => {
                        let meta = gen_dir.join("meta.json");
                        std::fs::remove_file(&meta)
                            .map_err(|e| format!("{}: {e}", meta.display()))?;
                        format!("deleted {}", rel(h.dir(), &meta))
                    }
                };
                let injected = InjectedFault {
                    kind: if fault == TextFault::TextSegmentFlip {
                        FaultKind::BitFlip
                    } else {
                        FaultKind::DeleteFile
                    },
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
        rounds.push(TextRound {
            round,
            fault,
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
fn flip_segment_file(rng: &mut StdRng, gen_dir: &Path, data: &Path) -> Result<String, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(gen_dir)
        .map_err(|e| format!("{}: {e}", gen_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| crate::verify::SEGMENT_EXTENSIONS.contains(&x))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no segment file to damage", gen_dir.display()));
    }
    let path = &files[rng.random_range(0..files.len())];
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
    Ok(format!(
        "flipped bit {bit} of byte {at} of {}",
        rel(data, path)
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
