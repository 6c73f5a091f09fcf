//! The chaos harness behind `medic chaos`: fill a store, inject faults, run the engine, verify every acknowledged
//! document.
//!
//! Owns [`ChaosConfig`], [`ChaosReport`] (with a per-fault-kind breakdown) and [`run`]. One seed derives every choice
//! (which fault, where, which documents are written between rounds), so a run replays exactly.
//!
//! Time to detect is measured on the daemon's own schedule ([`CheckSchedule`], `medic serve`'s `[checks]`
//! intervals): each round's engine starts as the daemon does (every tier at its first cycle), runs a seeded number of
//! cycles before the fault so the fault lands at a random point of the tiers' rhythm, and after the fault runs one
//! cycle per `shallow_interval_us` — the deep and comprehensive tiers only when their interval has passed, as
//! `medic serve` forces them, and every check no more often than its own interval — until an incident names the
//! fault or a whole comprehensive interval passed without one. The clock those cycles run on is moved one shallow
//! interval per cycle instead of sleeping, so the time to detect is the time a running daemon takes (waiting for the
//! tier that can see the fault included), measured in a fraction of it. Repair then runs as fast as the engine
//! goes (every tier due each cycle); time to repair is wall time from the injection. A harness without a schedule
//! ([`HarnessConfig::schedule`] `None`, the fault-matrix tests) runs every tier each cycle from the start and
//! measures both on the real clock. Percentiles are taken by hand from the sorted samples (a few hundred
//! per run): exact nearest-rank values, no histogram rounding.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use heal::check::CheckContext;
use heal::clock::{Clock, SystemClock, Timestamp, US_PER_S};
use heal::config::EngineConfig;
use heal::engine::Engine;
use heal::learn::{MemoryKnowledgeBase, Resolution};
use heal::{IncidentRecord, Issue, KnowledgeBase, Subject, Tier};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::codec::Document;
use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::fault::{FaultError, FaultKind, InjectedFault, Injector};
use crate::io::IoFaults;
use crate::issues::Code;
use crate::store::Store;
use crate::subject::StoreSubject;

/// Most rounds one run may ask for.
pub const ROUNDS_MAX: u32 = 100_000;
/// Most documents one run may fill its store with.
pub const DOCS_MAX: u32 = 1_000_000;
/// Most rounds described one by one in a report (the rest are only counted).
pub const ROUND_NOTES_MAX: usize = 64;
/// Engine cycles per round at most before the round is called unhealed.
pub const CYCLES_PER_ROUND_MAX: u32 = 8;
/// How far the harness clock moves before each cycle: past every check interval (so every tier runs each cycle),
/// every cooldown and rate-limit window, and the quiet period (so finished incidents close).
pub const CYCLE_ADVANCE_US: u64 = 3_601 * US_PER_S;
/// Latency a slow-I/O fault adds to every write and fsync at least, µs.
pub const SLOW_IO_LATENCY_US: u64 = 20_000;
/// A slow-I/O fault adds at least this many times the median put time measured before it (so a disk already slow
/// and jittery, e.g. shared with other work, still turns clearly slower than its own normal).
pub const SLOW_IO_TIMES_NORMAL: u64 = 4;
/// A slow-I/O fault adds at least this many times the slowest put measured before it: on a loaded machine single
/// puts spike, and the detector's baseline holds those spikes, so a disk slower than the median only may still look
/// like the baseline's tail.
pub const SLOW_IO_TIMES_SLOWEST: u64 = 2;
/// The most a slow-I/O fault adds, µs, however slow the baseline was.
pub const SLOW_IO_LATENCY_MAX_US: u64 = 250_000;
/// Puts the harness makes in each engine cycle while the disk is slow.
const SLOW_IO_PUTS_PER_CYCLE: usize = 4;
/// Cycles (each with one put) that give the latency detector its baseline before a slow-I/O fault.
pub const SLOW_IO_WARMUP_CYCLES: u32 = 40;
/// Directory name the run keeps its store in, under `ChaosConfig::data_dir`.
pub const CHAOS_SUBDIR: &str = "chaos";
/// Marker file that makes a directory safe for the harness to remove.
const MARKER: &str = "CHAOS-HARNESS";

/// Most cycles one round runs on the daemon's schedule waiting for a detection: the comprehensive interval over the
/// shallow one must not exceed it.
pub const SCHEDULE_CYCLES_MAX: u64 = 100_000;

/// The daemon's check schedule (`[checks]` of `medic serve`), µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSchedule {
    /// One healing cycle (and the shallow tier, no more often than its checks' own interval) this often.
    pub shallow_interval_us: u64,
    /// The deep tier this often.
    pub deep_interval_us: u64,
    /// The comprehensive tier (the full scrub) this often.
    pub comprehensive_interval_us: u64,
}

impl Default for CheckSchedule {
    /// `medic serve`'s defaults: 5 s, 60 s, 1 h.
    fn default() -> Self {
        CheckSchedule {
            shallow_interval_us: Tier::Shallow.default_interval_us(),
            deep_interval_us: Tier::Deep.default_interval_us(),
            comprehensive_interval_us: Tier::Comprehensive.default_interval_us(),
        }
    }
}

impl CheckSchedule {
    /// Cycles from one full scrub to the next.
    fn cycles_per_comprehensive(&self) -> u64 {
        self.comprehensive_interval_us
            .div_ceil(self.shallow_interval_us.max(1))
    }

    /// Refuses a schedule a run cannot follow, naming the setting.
    pub fn validate(&self) -> Result<(), ChaosError> {
        if self.shallow_interval_us == 0
            || self.deep_interval_us < self.shallow_interval_us
            || self.comprehensive_interval_us < self.deep_interval_us
        {
            return Err(ChaosError::Config(format!(
                "schedule {self:?}: accepted 0 < shallow_interval_us <= deep_interval_us <= comprehensive_interval_us"
            )));
        }
        if self.cycles_per_comprehensive() > SCHEDULE_CYCLES_MAX {
            return Err(ChaosError::Config(format!(
                "schedule: comprehensive_interval_us / shallow_interval_us = {} cycles, over SCHEDULE_CYCLES_MAX = \
                 {SCHEDULE_CYCLES_MAX}",
                self.cycles_per_comprehensive()
            )));
        }
        Ok(())
    }

    /// One line for people: what the time to detect was measured on.
    pub fn describe(&self) -> String {
        let s = |us: u64| heal::clock::human_duration_us(us);
        format!(
            "the daemon's schedule: a healing cycle every {}, the deep tier every {}, the comprehensive tier (full \
             scrub) every {}; the fault lands at a random point of that rhythm and is found by the tier that runs \
             next and can see it; time to repair adds the engine's own time from detection to the verified repair",
            s(self.shallow_interval_us),
            s(self.deep_interval_us),
            s(self.comprehensive_interval_us)
        )
    }
}

/// What a chaos run does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosConfig {
    /// Where the run keeps its store (a `chaos` directory is made inside it).
    pub data_dir: PathBuf,
    /// The seed every choice derives from.
    pub seed: u64,
    /// How many faults to inject, one per round.
    pub rounds: u32,
    /// The fault kinds to draw from; empty means all of [`FaultKind::ALL`].
    pub faults: Vec<FaultKind>,
    /// How many documents the store holds before the first round.
    pub docs: u32,
    /// The check schedule time to detect is measured on.
    #[serde(default)]
    pub schedule: CheckSchedule,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            data_dir: PathBuf::from("medic-chaos"),
            seed: 0,
            rounds: 100,
            faults: Vec::new(),
            docs: 2_000,
            schedule: CheckSchedule::default(),
        }
    }
}

/// Counts and timings for one fault kind (or for all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultStats {
    /// Faults injected.
    pub injected: u64,
    /// Faults the engine saw (an issue or incident naming the damaged place).
    pub detected: u64,
    /// Faults repaired without a human, with a clean full scrub afterwards.
    pub repaired: u64,
    /// Faults handed to a human.
    pub escalated: u64,
    /// Acknowledged documents that could no longer be read (missing, or refused as corrupt).
    pub acked_writes_lost: u64,
    /// Acknowledged documents that read back different from what was written, without an error. Must be 0.
    pub silent_corruptions: u64,
    /// Median time from injection to detection, ms.
    pub mttd_ms_p50: f64,
    /// 99th percentile of the time from injection to detection, ms.
    pub mttd_ms_p99: f64,
    /// Median time from injection to a verified repair, ms.
    pub mttr_ms_p50: f64,
    /// 99th percentile of the time from injection to a verified repair, ms.
    pub mttr_ms_p99: f64,
}

/// One round worth describing in a report (anything but a clean detect-and-repair).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundNote {
    /// The round's index.
    pub round: u32,
    /// The fault.
    pub fault: FaultKind,
    /// What the injector did.
    pub injected: String,
    /// How it ended, one line.
    pub outcome: String,
}

/// What a chaos run found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosReport {
    /// The seed (replays the run).
    pub seed: u64,
    /// Rounds run.
    pub rounds: u64,
    /// Documents in the store before the first round.
    pub docs: u64,
    /// Faults injected.
    pub injected: u64,
    /// Faults detected.
    pub detected: u64,
    /// Faults repaired without a human.
    pub repaired: u64,
    /// Faults escalated.
    pub escalated: u64,
    /// Acknowledged documents lost.
    pub acked_writes_lost: u64,
    /// Acknowledged documents served wrong. Must be 0.
    pub silent_corruptions: u64,
    /// Median time to detect, ms, on the daemon's schedule.
    pub mttd_ms_p50: f64,
    /// 99th percentile time to detect, ms, on the daemon's schedule.
    pub mttd_ms_p99: f64,
    /// What the time to detect was measured on, one line.
    pub mttd_basis: String,
    /// The schedule it was measured on.
    pub schedule: Option<CheckSchedule>,
    /// Median time to repair, ms: time to detect, then the engine's time from detection to a verified repair.
    pub mttr_ms_p50: f64,
    /// 99th percentile time to repair, ms.
    pub mttr_ms_p99: f64,
    /// Engine cycles run in all.
    pub cycles: u64,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
    /// The same counts per fault kind (snake_case names).
    pub by_fault: BTreeMap<String, FaultStats>,
    /// Rounds that did not end in a clean detect-and-repair (at most [`ROUND_NOTES_MAX`]).
    pub notes: Vec<RoundNote>,
}

/// Why a chaos run could not run (faults it found are results, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// A setting out of range.
    #[error("chaos config: {0}")]
    Config(String),
    /// The store failed outside any injected fault (opening, filling).
    #[error("chaos store: {0}")]
    Store(String),
    /// The injector failed.
    #[error("chaos injector: {0}")]
    Fault(#[from] FaultError),
    /// The run's own files.
    #[error("chaos: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Nearest-rank percentile (`q` in [0, 1]) of samples, 0 when there are none.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// Raw per-kind tallies, from which [`FaultStats`] follow.
#[derive(Debug, Default, Clone)]
struct Tally {
    stats: FaultStats,
    ttd_ms: Vec<f64>,
    ttr_ms: Vec<f64>,
}

impl Tally {
    fn finish(mut self) -> FaultStats {
        self.stats.mttd_ms_p50 = percentile(&self.ttd_ms, 0.5);
        self.stats.mttd_ms_p99 = percentile(&self.ttd_ms, 0.99);
        self.stats.mttr_ms_p50 = percentile(&self.ttr_ms, 0.5);
        self.stats.mttr_ms_p99 = percentile(&self.ttr_ms, 0.99);
        self.stats
    }
}

/// A clock reading real time plus an offset the harness moves forward, so every check is due each cycle while
/// durations measured within a cycle stay real.
#[derive(Debug, Default)]
pub struct HarnessClock {
    real: SystemClock,
    offset_us: AtomicU64,
}

impl HarnessClock {
    /// Moves the clock forward by `us`.
    pub fn advance(&self, us: u64) {
        self.offset_us.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for HarnessClock {
    fn now(&self) -> Timestamp {
        self.real
            .now()
            .saturating_add(self.offset_us.load(Ordering::SeqCst))
    }
}

/// How a [`Harness`] runs.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// Documents written before the first round.
    pub docs: u32,
    /// Documents written (and one overwritten, one deleted) before each round, so the log keeps moving.
    pub writes_per_round: u32,
    /// Engine cycles per round at most (≤ [`CYCLES_PER_ROUND_MAX`]).
    pub cycles_max: u32,
    /// The canary: run the engine in dry run, so nothing is repaired. A harness that still reports "repaired" is
    /// broken.
    pub skip_repair: bool,
    /// The store's configuration (its `io` is replaced by the harness's own hooks).
    pub store: StoreConfig,
    /// Detect on the daemon's schedule ([`CheckSchedule`]); `None`: every tier each cycle from the start.
    pub schedule: Option<CheckSchedule>,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        HarnessConfig {
            docs: 2_000,
            writes_per_round: 8,
            cycles_max: 6,
            skip_repair: false,
            store: chaos_store_config(),
            schedule: None,
        }
    }
}

/// A small store that seals segments, writes parity and takes snapshots within a few thousand documents.
pub fn chaos_store_config() -> StoreConfig {
    StoreConfig {
        segment_bytes_max: 64 << 10,
        wal_bytes_max: 512 << 10,
        block_bytes: 1024,
        parity_data_blocks: 16,
        parity_blocks: 2,
        disk_low_bytes_floor: 1 << 20,
        disk_critical_bytes_floor: 256 << 10,
        ..StoreConfig::default()
    }
}

/// The document the harness writes under number `n` at version `v`: a pure function, so a replay writes the same.
pub fn chaos_doc(n: u64, v: u64) -> Document {
    let text =
        format!("chaos document {n} version {v}: ") + &"medic heals ".repeat((n % 13) as usize);
    let vector = n.is_multiple_of(2).then(|| {
        (0..8)
            .map(|i| (n as f32).sin() + i as f32 + v as f32)
            .collect()
    });
    let meta = n.is_multiple_of(3).then(|| {
        let mut m = serde_json::Map::new();
        m.insert("n".into(), serde_json::json!(n));
        m.insert("v".into(), serde_json::json!(v));
        m
    });
    Document { text, vector, meta }
}

fn chaos_id(n: u64) -> String {
    format!("c{n:08}")
}

/// What reading every acknowledged document back found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Documents checked.
    pub checked: u64,
    /// Acknowledged documents missing.
    pub lost: Vec<String>,
    /// Acknowledged documents refused with an error (`Corrupt` and the like), with the error.
    pub refused: Vec<(String, String)>,
    /// Acknowledged documents served different from what was written, without an error.
    pub silent: Vec<String>,
    /// Acknowledged deletes undone, or documents present that were never written.
    pub phantom: Vec<String>,
}

impl Verification {
    /// No acknowledged write lost, refused or served wrong, nothing undone.
    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.refused.is_empty()
            && self.silent.is_empty()
            && self.phantom.is_empty()
    }
}

/// How one round went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundOutcome {
    /// The round's index.
    pub round: u32,
    /// What was injected.
    pub faults: Vec<InjectedFault>,
    /// Whether an issue named the damaged place.
    pub detected: bool,
    /// Time from injection to detection, ms.
    pub detect_ms: Option<f64>,
    /// Whether the engine repaired it without a human, the full scrub then passed and every acknowledged document
    /// read back intact after a reopen.
    pub repaired: bool,
    /// Time from injection to a verified repair, ms.
    pub repair_ms: Option<f64>,
    /// Whether an incident about it was escalated to a human.
    pub escalated: bool,
    /// Engine cycles run.
    pub cycles: u32,
    /// The issues that named the fault.
    pub matching_issues: Vec<Issue>,
    /// Every incident the round opened, in its latest state.
    pub incidents: Vec<IncidentRecord>,
    /// Messages of comprehensive-tier checks that still failed after the round (empty: the scrub passed).
    pub scrub_failures: Vec<String>,
    /// Reading every acknowledged document from the live store.
    pub live: Verification,
    /// Reading every acknowledged document after closing and reopening the store.
    pub reopened: Verification,
    /// Why the store could not be reopened, if it could not.
    pub reopen_error: Option<String>,
}

/// What driving one round's engine saw.
#[derive(Debug, Default)]
struct Drive {
    /// Incidents the round opened.
    opened: BTreeSet<u64>,
    /// Time from injection to detection, ms.
    detect_ms: Option<f64>,
    /// When the fault was detected, on the wall clock.
    detected_wall: Option<Instant>,
    /// The issues that named the fault.
    matching: Vec<Issue>,
    /// Unscheduled engine cycles run.
    cycles: u32,
    /// Whether the environment faults were lifted.
    lifted: bool,
}

/// Whether a fault is of the environment (it goes away by itself) rather than damage or a stale lock.
fn environment_fault(faults: &[InjectedFault]) -> bool {
    faults
        .iter()
        .any(|f| !f.kind.damages_bytes() && f.kind != FaultKind::StaleLock)
}

/// The incidents with an issue that names one of the faults.
fn about_faults<'a>(
    incidents: &'a [IncidentRecord],
    faults: &[InjectedFault],
) -> Vec<&'a IncidentRecord> {
    incidents
        .iter()
        .filter(|i| {
            i.issues
                .iter()
                .any(|is| faults.iter().any(|f| fault_matches(f, is)))
        })
        .collect()
}

/// When the forced tiers last ran, on the harness clock.
#[derive(Debug, Clone, Copy, Default)]
struct TiersRan {
    deep: Option<Timestamp>,
    comprehensive: Option<Timestamp>,
}

/// What the harness knows about one document id.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    /// Acknowledged at this version: must read back exactly.
    Doc(u64),
    /// Acknowledged delete: must be gone.
    Deleted,
    /// A write that failed (unacknowledged): either the old state or this version.
    Maybe(Option<u64>, u64),
}

/// A store, an engine and an injector, one seed. Drive it round by round ([`Harness::round`]) or inject by hand
/// ([`Harness::inject`], [`Injector::flip_bit_in`]) and then [`Harness::heal`].
pub struct Harness {
    dir: PathBuf,
    config: HarnessConfig,
    io: Arc<IoFaults>,
    store: Option<Arc<Store>>,
    kb: Arc<MemoryKnowledgeBase>,
    clock: Arc<HarnessClock>,
    injector: Injector,
    rng: StdRng,
    known: BTreeMap<String, Known>,
    next_n: u64,
    round: u32,
    engine_cycles: u64,
    /// When the deep and comprehensive tiers last ran on the schedule (the round's engine), if they did.
    tiers_ran: TiersRan,
    /// Torn writes injected so far: they alternate between a partial record appended under the live store and a
    /// crash mid-commit that leaves the last record cut in both copies ([`Injector::cut_last_record`]).
    torn_writes: u64,
    /// The latency a slow-I/O fault adds, µs: [`SLOW_IO_LATENCY_US`], or more on a disk already slow or jittery.
    slow_io_us: u64,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("dir", &self.dir)
            .field("round", &self.round)
            .field("docs", &self.known.len())
            .finish_non_exhaustive()
    }
}

fn store_err(context: &str) -> impl FnOnce(StoreError) -> ChaosError + '_ {
    move |e| ChaosError::Store(format!("{context}: {e}"))
}

impl Harness {
    /// Opens a store in `dir` (which must be empty or absent) and fills it with `config.docs` documents. Every
    /// choice derives from `seed`.
    pub fn new(dir: &Path, seed: u64, config: HarnessConfig) -> Result<Harness, ChaosError> {
        if config.cycles_max == 0 || config.cycles_max > CYCLES_PER_ROUND_MAX {
            return Err(ChaosError::Config(format!(
                "cycles_max = {} is out of range: accepted [1, {CYCLES_PER_ROUND_MAX}]",
                config.cycles_max
            )));
        }
        if config.docs > DOCS_MAX {
            return Err(ChaosError::Config(format!(
                "docs = {} is over DOCS_MAX = {DOCS_MAX}",
                config.docs
            )));
        }
        if let Some(schedule) = &config.schedule {
            schedule.validate()?;
        }
        let io = Arc::new(IoFaults::new());
        let mut store_cfg = config.store.clone();
        store_cfg.io = io.clone();
        let store = Store::open(dir, store_cfg).map_err(store_err("opening the chaos store"))?;
        let mut h = Harness {
            dir: dir.to_path_buf(),
            config,
            io,
            store: Some(Arc::new(store)),
            kb: Arc::new(MemoryKnowledgeBase::new()),
            clock: Arc::new(HarnessClock::default()),
            injector: Injector::new(seed),
            rng: StdRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15),
            known: BTreeMap::new(),
            next_n: 0,
            round: 0,
            engine_cycles: 0,
            tiers_ran: TiersRan::default(),
            slow_io_us: SLOW_IO_LATENCY_US,
            torn_writes: 0,
        };
        for _ in 0..h.config.docs {
            h.put_new()?;
        }
        Ok(h)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The live store.
    pub fn store(&self) -> &Arc<Store> {
        self.store
            .as_ref()
            .expect("the harness always holds an open store between calls")
    }

    /// The injector (for hand-aimed faults).
    pub fn injector(&mut self) -> &mut Injector {
        &mut self.injector
    }

    /// The knowledge base every round's engine records into.
    pub fn kb(&self) -> &Arc<MemoryKnowledgeBase> {
        &self.kb
    }

    /// Acknowledged documents currently expected present.
    pub fn acked_docs(&self) -> usize {
        self.known
            .values()
            .filter(|k| matches!(k, Known::Doc(_)))
            .count()
    }

    /// Engine cycles run so far.
    pub fn cycles(&self) -> u64 {
        self.engine_cycles
    }

    fn put_new(&mut self) -> Result<(), ChaosError> {
        let n = self.next_n;
        self.next_n += 1;
        self.put_version(n, 0)
    }

    fn put_version(&mut self, n: u64, v: u64) -> Result<(), ChaosError> {
        let id = chaos_id(n);
        let before = self.known.get(&id).and_then(|k| match k {
            Known::Doc(v) => Some(*v),
            _ => None,
        });
        match self.store().put(&id, chaos_doc(n, v)) {
            Ok(_) => {
                self.known.insert(id, Known::Doc(v));
                Ok(())
            }
            Err(e) if e.is_user_error() => Err(ChaosError::Store(format!("put {id}: {e}"))),
            Err(_) => {
                self.known.insert(id, Known::Maybe(before, v));
                Ok(())
            }
        }
    }

    /// Background load before a round: new documents, one overwrite, one delete.
    fn background_writes(&mut self) -> Result<(), ChaosError> {
        for _ in 0..self.config.writes_per_round {
            self.put_new()?;
        }
        if self.next_n > 2 {
            let n = self.rng.random_range(0..self.next_n);
            if let Some(Known::Doc(v)) = self.known.get(&chaos_id(n)).cloned() {
                self.put_version(n, v + 1)?;
            }
            let n = self.rng.random_range(0..self.next_n);
            let id = chaos_id(n);
            if let Some(Known::Doc(_)) = self.known.get(&id) {
                match self.store().delete(&id) {
                    Ok(Some(_)) => {
                        self.known.insert(id, Known::Deleted);
                    }
                    Ok(None) => {
                        return Err(ChaosError::Store(format!(
                            "delete {id}: the store says it does not exist, but its put was acknowledged"
                        )));
                    }
                    Err(_) => {
                        let v = match self.known.get(&id) {
                            Some(Known::Doc(v)) => *v,
                            _ => 0,
                        };
                        self.known.insert(id, Known::Maybe(Some(v), u64::MAX));
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes the store as a crash would (no clean close: the lock text still says "not closed").
    fn crash_store(&mut self) -> Result<(), ChaosError> {
        let store = self.store.take().expect("store open");
        match Arc::try_unwrap(store) {
            Ok(s) => drop(s),
            Err(_) => {
                return Err(ChaosError::Store(
                    "the store is still shared; cannot crash it".into(),
                ));
            }
        }
        Ok(())
    }

    fn open_store(&mut self) -> Result<(), StoreError> {
        let mut cfg = self.config.store.clone();
        cfg.io = self.io.clone();
        let store = Store::open(&self.dir, cfg)?;
        self.store = Some(Arc::new(store));
        Ok(())
    }

    /// Injects one fault of `kind` the way it happens in life: byte damage and torn tails under the live store, a
    /// stale lock by a crash and a restart, out-of-space and slow I/O through the store's I/O hooks (after which the
    /// harness writes, so the store meets the fault).
    pub fn inject(&mut self, kind: FaultKind) -> Result<InjectedFault, ChaosError> {
        match kind {
            FaultKind::StaleLock => {
                self.crash_store()?;
                let f = self.injector.inject(&self.dir, kind)?;
                self.open_store()
                    .map_err(store_err("reopening after a stale lock"))?;
                Ok(f)
            }
            FaultKind::OutOfSpace => {
                let quota = self.rng.random_range(0..8_192u64);
                self.io.set_quota_bytes(Some(quota));
                // Writes until one fails: the store meets the full disk mid-write.
                for _ in 0..64 {
                    let n = self.next_n;
                    self.put_new()?;
                    if matches!(self.known.get(&chaos_id(n)), Some(Known::Maybe(..))) {
                        break;
                    }
                }
                Ok(InjectedFault {
                    kind,
                    file: None,
                    offset: None,
                    len: None,
                    detail: format!(
                        "disk full: byte quota of {quota} bytes, then writes until one failed"
                    ),
                })
            }
            FaultKind::TornWrite if self.torn_write_is_a_crash() => {
                self.torn_writes += 1;
                self.crash_mid_commit()
            }
            FaultKind::TornWrite => {
                self.torn_writes += 1;
                Ok(self.injector.inject(&self.dir, kind)?)
            }
            FaultKind::DescriptorExhaustion => {
                self.io.set_open_errors(Some(crate::io::ErrnoFault {
                    errno: libc::EMFILE,
                    per_mille: 1000,
                    seed: self.rng.random(),
                }));
                Ok(InjectedFault {
                    kind,
                    file: None,
                    offset: None,
                    len: None,
                    detail: "every open of a data file fails with EMFILE (too many open files)"
                        .into(),
                })
            }
            FaultKind::SlowIo => {
                self.io.set_latency_us(self.slow_io_us);
                Ok(InjectedFault {
                    kind,
                    file: None,
                    offset: None,
                    len: None,
                    detail: format!("{} µs added to every write and fsync", self.slow_io_us),
                })
            }
            _ => Ok(self.injector.inject(&self.dir, kind)?),
        }
    }

    /// Whether the next torn write is a crash mid-commit (every second one) rather than a partial record appended
    /// under the live store.
    fn torn_write_is_a_crash(&self) -> bool {
        self.torn_writes % 2 == 1
    }

    /// A crash part-way through a commit: a new document is written, the store crashes, and the open segment and
    /// its mirror are cut inside that last record, as if the crash came before the record was whole on disk. The
    /// write is counted as unacknowledged (it may be absent afterwards, never different); every other write keeps
    /// its acknowledged state, so nothing acknowledged becomes unverifiable.
    fn crash_mid_commit(&mut self) -> Result<InjectedFault, ChaosError> {
        let mut tries = 0;
        let (id, lsn) = loop {
            tries += 1;
            if tries > 8 {
                return Err(ChaosError::Store(
                    "torn write: no put stayed in the open segment in 8 tries".into(),
                ));
            }
            let n = self.next_n;
            self.next_n += 1;
            let id = chaos_id(n);
            match self.store().put(&id, chaos_doc(n, 0)) {
                // A compaction right after the commit moved it into a snapshot: an ordinary acknowledged write.
                Ok(lsn) if self.store().stats().snapshot_lsn.is_some_and(|l| l >= lsn) => {
                    self.known.insert(id, Known::Doc(0));
                }
                Ok(lsn) => break (id, lsn),
                Err(e) if e.is_user_error() => {
                    return Err(ChaosError::Store(format!("put {id}: {e}")));
                }
                Err(_) => {
                    self.known.insert(id, Known::Maybe(None, 0));
                }
            }
        };
        self.known.insert(id.clone(), Known::Maybe(None, 0));
        self.crash_store()?;
        let f = self.injector.cut_last_record(&self.dir)?;
        if !f.detail.contains(&format!("(LSN {lsn},")) {
            return Err(ChaosError::Store(format!(
                "torn write: meant to cut the record of {id} (LSN {lsn}), but {}",
                f.detail
            )));
        }
        self.open_store()
            .map_err(store_err("reopening after a crash mid-commit"))?;
        Ok(f)
    }

    fn lift_environment_faults(&self) {
        self.io.set_quota_bytes(None);
        self.io.set_latency_us(0);
        self.io.set_open_errors(None);
    }

    /// One round: background writes, one fault of `kind`, then [`Harness::heal`].
    pub fn round(&mut self, kind: FaultKind) -> Result<RoundOutcome, ChaosError> {
        self.background_writes()?;
        if kind == FaultKind::StaleLock
            || (kind == FaultKind::TornWrite && self.torn_write_is_a_crash())
        {
            // A stale lock, or a write torn by a crash mid-commit, comes from a crash and a restart: the engine
            // starts with the reopened store.
            let t0 = Instant::now();
            let fault = self.inject(kind)?;
            let engine = self.engine()?;
            return self.heal_with(engine, vec![fault], t0);
        }
        let mut engine = self.engine()?;
        if kind == FaultKind::SlowIo {
            // The latency detector needs a baseline of normal puts first; the fault is then sized against it.
            let mut took_us = Vec::with_capacity(SLOW_IO_WARMUP_CYCLES as usize);
            for _ in 0..SLOW_IO_WARMUP_CYCLES {
                let t = Instant::now();
                self.put_new()?;
                took_us.push(t.elapsed().as_micros() as u64);
                self.clock.advance(1);
                engine.run_cycle();
                self.engine_cycles += 1;
            }
            took_us.sort_unstable();
            let median = took_us.get(took_us.len() / 2).copied().unwrap_or(0);
            let slowest = took_us.last().copied().unwrap_or(0);
            self.slow_io_us = SLOW_IO_LATENCY_US
                .max(SLOW_IO_TIMES_NORMAL * median)
                .max(SLOW_IO_TIMES_SLOWEST * slowest)
                .min(SLOW_IO_LATENCY_MAX_US);
        }
        if let Some(schedule) = self.config.schedule {
            // A running daemon: it started (every tier at its first cycle), and has run for a while since.
            let phase = self
                .rng
                .random_range(0..schedule.cycles_per_comprehensive());
            for _ in 0..=phase {
                self.scheduled_cycle(&mut engine, &schedule);
            }
        }
        let t0 = Instant::now();
        let fault = self.inject(kind)?;
        self.heal_with(engine, vec![fault], t0)
    }

    /// One cycle as `medic serve` runs it every `shallow_interval_us`: the clock moves one shallow interval, the
    /// deep and comprehensive tiers run when their interval has passed since they last ran (every tier at an
    /// engine's first cycle), then the engine's cycle (which runs each check no more often than its own interval).
    fn scheduled_cycle(
        &mut self,
        engine: &mut Engine,
        schedule: &CheckSchedule,
    ) -> heal::engine::CycleSummary {
        self.clock.advance(schedule.shallow_interval_us);
        let now = self.clock.now();
        let due = |last: Option<Timestamp>, every: u64| {
            last.is_none_or(|l| now.saturating_sub(l) >= every)
        };
        if due(
            self.tiers_ran.comprehensive,
            schedule.comprehensive_interval_us,
        ) {
            engine.run_tier(Tier::Comprehensive);
            self.tiers_ran = TiersRan {
                deep: Some(now),
                comprehensive: Some(now),
            };
        } else if due(self.tiers_ran.deep, schedule.deep_interval_us) {
            engine.run_tier(Tier::Deep);
            self.tiers_ran.deep = Some(now);
        }
        self.engine_cycles += 1;
        engine.run_cycle()
    }

    fn engine(&mut self) -> Result<Engine, ChaosError> {
        // A new engine is a daemon starting: every tier runs at its first cycle.
        self.tiers_ran = TiersRan::default();
        let subject: Arc<dyn Subject> = Arc::new(StoreSubject::new(self.store().clone()));
        let config = EngineConfig {
            dry_run: self.config.skip_repair,
            ..EngineConfig::default()
        };
        Engine::new(subject, self.kb.clone(), self.clock.clone(), config)
            .map_err(|e| ChaosError::Config(format!("engine: {e}")))
    }

    /// Runs the engine until the injected faults are healed or escalated (at most `cycles_max` cycles), then checks
    /// the outcome: a full scrub, every acknowledged document from the live store, and again after a reopen.
    pub fn heal(&mut self, faults: Vec<InjectedFault>) -> Result<RoundOutcome, ChaosError> {
        let engine = self.engine()?;
        self.heal_with(engine, faults, Instant::now())
    }

    /// One round: drive the engine until the faults are healed or escalated, then judge the outcome.
    fn heal_with(
        &mut self,
        mut engine: Engine,
        faults: Vec<InjectedFault>,
        t0: Instant,
    ) -> Result<RoundOutcome, ChaosError> {
        let round = self.round;
        self.round += 1;
        let drive = self.drive(&mut engine, &faults, t0)?;
        self.judge(round, engine, faults, drive, t0)
    }

    /// Runs the engine's cycles until the faults are detected and every incident about them is closed (at most
    /// `cycles_max` cycles; on the schedule, cycles one shallow interval apart for at most a whole comprehensive
    /// interval and the shallow one that may separate the fault from the next scrub). An environment fault is
    /// lifted once the engine has seen it, or after as many blind cycles as the engine needs to raise a lasting
    /// anomaly (`anomaly_for_samples`) and three more.
    fn drive(
        &mut self,
        engine: &mut Engine,
        faults: &[InjectedFault],
        t0: Instant,
    ) -> Result<Drive, ChaosError> {
        let env_fault = environment_fault(faults);
        let mut d = Drive::default();
        let mut settled = false;
        let schedule = self.config.schedule;
        let injected_at = self.clock.now();
        let mut scheduled_cycles: u64 = 0;
        loop {
            let on_schedule = schedule.is_some_and(|s| {
                d.detect_ms.is_none()
                    && !d.lifted
                    && scheduled_cycles <= s.cycles_per_comprehensive() + 1
            });
            if settled || (!on_schedule && d.cycles >= self.config.cycles_max) {
                break;
            }
            if faults.iter().any(|f| f.kind == FaultKind::SlowIo) && !d.lifted {
                // Puts under the slow disk give the detector its evidence: several per cycle, so each window's
                // latency quantiles are the slow disk's, not one sample's (the engine raises an anomaly only when
                // it lasts `anomaly_for_samples` windows).
                for _ in 0..SLOW_IO_PUTS_PER_CYCLE {
                    self.put_new()?;
                }
            }
            let summary = match schedule.filter(|_| on_schedule) {
                Some(s) => {
                    scheduled_cycles += 1;
                    self.scheduled_cycle(engine, &s)
                }
                None => {
                    self.clock.advance(CYCLE_ADVANCE_US);
                    d.cycles += 1;
                    self.engine_cycles += 1;
                    engine.run_cycle()
                }
            };
            d.opened.extend(summary.incidents_opened.iter().copied());
            let incidents = self.incidents(&d.opened);
            for inc in &incidents {
                for issue in &inc.issues {
                    if faults.iter().any(|f| fault_matches(f, issue)) && !d.matching.contains(issue)
                    {
                        d.matching.push(issue.clone());
                    }
                }
            }
            if d.detect_ms.is_none() && !d.matching.is_empty() {
                d.detected_wall = Some(Instant::now());
                d.detect_ms = Some(match schedule {
                    // The daemon's time: the schedule's intervals waited plus the checks' own run time.
                    Some(_) => self.clock.now().saturating_sub(injected_at) as f64 / 1e3,
                    None => t0.elapsed().as_secs_f64() * 1e3,
                });
            }
            let blind_max = EngineConfig::default().anomaly_for_samples + 3;
            let blind = d.cycles as u64 + scheduled_cycles;
            if env_fault && !d.lifted && (d.detect_ms.is_some() || blind >= blind_max as u64) {
                self.lift_environment_faults();
                d.lifted = true;
                if faults.iter().any(|f| f.kind == FaultKind::OutOfSpace) {
                    // Space is back: the next write must succeed.
                    let _ = self.store().free_bytes();
                }
                continue;
            }
            let relevant = about_faults(&incidents, faults);
            settled = d.detect_ms.is_some()
                && !relevant.is_empty()
                && relevant.iter().all(|i| i.resolution != Resolution::Open)
                && engine
                    .active_incidents()
                    .iter()
                    .all(|a| !relevant.iter().any(|r| r.id == a.record.id));
        }
        if !d.lifted {
            self.lift_environment_faults();
        }
        Ok(d)
    }

    /// The round's outcome: who closed the incidents about the faults, a full scrub, every acknowledged document
    /// from the live store, a write, and every document again after a reopen.
    fn judge(
        &mut self,
        round: u32,
        engine: Engine,
        faults: Vec<InjectedFault>,
        d: Drive,
        t0: Instant,
    ) -> Result<RoundOutcome, ChaosError> {
        let env_fault = environment_fault(&faults);
        let incidents = self.incidents(&d.opened);
        let relevant = about_faults(&incidents, &faults);
        let escalated = relevant
            .iter()
            .any(|i| i.resolution == Resolution::Escalated)
            || engine.active_incidents().iter().any(|a| {
                relevant.iter().any(|r| r.id == a.record.id)
                    && matches!(
                        a.status,
                        heal::engine::IncidentStatus::Escalated
                            | heal::engine::IncidentStatus::AwaitingApproval
                    )
            });
        let healed_by_engine = !relevant.is_empty()
            && relevant.iter().all(|i| {
                i.resolution == Resolution::AutoRepaired
                    || (env_fault && i.resolution == Resolution::SelfResolved)
            });
        drop(engine);
        let scrub_failures = self.scrub();
        let live = self.verify();
        // A write after the round proves the store takes writes again.
        let writable = {
            let n = self.next_n;
            self.put_new()?;
            matches!(self.known.get(&chaos_id(n)), Some(Known::Doc(_)))
        };
        // On the schedule: the time to detect, then the engine's own time from detection to the verified repair.
        let repair_ms_candidate = match (self.config.schedule, d.detect_ms, d.detected_wall) {
            (Some(_), Some(ttd), Some(at)) => ttd + at.elapsed().as_secs_f64() * 1e3,
            _ => t0.elapsed().as_secs_f64() * 1e3,
        };
        let (reopened, reopen_error) = self.reopen_and_verify();
        let repaired = healed_by_engine
            && scrub_failures.is_empty()
            && live.clean()
            && reopened.clean()
            && reopen_error.is_none()
            && writable;
        Ok(RoundOutcome {
            round,
            faults,
            detected: d.detect_ms.is_some(),
            detect_ms: d.detect_ms,
            repaired,
            repair_ms: repaired.then_some(repair_ms_candidate),
            escalated,
            cycles: d.cycles,
            matching_issues: d.matching,
            incidents,
            scrub_failures,
            live,
            reopened,
            reopen_error,
        })
    }

    fn incidents(&self, ids: &BTreeSet<u64>) -> Vec<IncidentRecord> {
        ids.iter()
            .filter_map(|id| self.kb.get(*id).ok().flatten())
            .collect()
    }

    /// Runs every comprehensive-tier check of the store now; returns the messages of those that fail.
    pub fn scrub(&self) -> Vec<String> {
        let subject = StoreSubject::new(self.store().clone());
        let clock = SystemClock::new();
        let mut failures = Vec::new();
        for check in subject
            .checks()
            .iter()
            .filter(|c| c.tier() == Tier::Comprehensive)
        {
            let ctx = CheckContext {
                clock: &clock,
                deadline: clock.now() + check.timeout_us(),
            };
            let out = check.run(&ctx);
            if !out.passed {
                failures.push(out.message);
            }
        }
        // Issues the store queued while scrubbing are the scrub's own report; drop them so they do not leak into the
        // next round.
        let _ = subject.drain_issues();
        failures
    }

    /// Reads every document the harness wrote back from the live store.
    pub fn verify(&self) -> Verification {
        verify_against(self.store(), &self.known)
    }

    /// Closes the store cleanly, reopens it and verifies every acknowledged document from disk. Settles writes
    /// that failed unacknowledged to what the store holds.
    pub fn reopen_and_verify(&mut self) -> (Verification, Option<String>) {
        self.restart_and_verify(true)
    }

    /// [`Harness::reopen_and_verify`] after a crash instead of a clean close: the store is dropped as it is, so
    /// damage done while it ran is found by the next open (a clean close would first have rewritten from the
    /// table what only the table still held).
    pub fn crash_reopen_and_verify(&mut self) -> (Verification, Option<String>) {
        self.restart_and_verify(false)
    }

    fn restart_and_verify(&mut self, clean: bool) -> (Verification, Option<String>) {
        let store = self.store.take().expect("store open");
        let close = match Arc::try_unwrap(store) {
            Ok(s) if clean => s.close().err().map(|e| format!("close: {e}")),
            Ok(s) => {
                drop(s);
                None
            }
            Err(s) => {
                self.store = Some(s);
                return (
                    Verification::default(),
                    Some("the store is still shared".into()),
                );
            }
        };
        if let Err(e) = self.open_store() {
            return (
                Verification::default(),
                Some(format!(
                    "{}reopen: {e}",
                    close.map(|c| c + "; ").unwrap_or_default()
                )),
            );
        }
        let v = verify_against(self.store(), &self.known);
        // Settle unacknowledged writes to what is there.
        let settled: Vec<(String, Known)> = self
            .known
            .iter()
            .filter_map(|(id, k)| match k {
                Known::Maybe(..) => Some(id.clone()),
                _ => None,
            })
            .map(|id| {
                let now = match self.store().get(&id) {
                    Ok(Some(d)) => {
                        let n = parse_chaos_id(&id);
                        let v = (0..=64).find(|v| chaos_doc(n, *v) == d).unwrap_or(0);
                        Known::Doc(v)
                    }
                    _ => Known::Deleted,
                };
                (id, now)
            })
            .collect();
        self.known.extend(settled);
        let _ = self.store().stats();
        (v, close)
    }
}

fn parse_chaos_id(id: &str) -> u64 {
    id.trim_start_matches('c').parse().unwrap_or(0)
}

fn verify_against(store: &Store, known: &BTreeMap<String, Known>) -> Verification {
    let mut v = Verification::default();
    for (id, k) in known {
        v.checked += 1;
        let n = parse_chaos_id(id);
        let got = store.get(id);
        match (k, got) {
            (Known::Doc(ver), Ok(Some(d))) => {
                if d != chaos_doc(n, *ver) {
                    v.silent.push(id.clone());
                }
            }
            (Known::Doc(_), Ok(None)) => v.lost.push(id.clone()),
            (Known::Doc(_), Err(e)) => v.refused.push((id.clone(), e.to_string())),
            (Known::Deleted, Ok(Some(_))) => v.phantom.push(id.clone()),
            (Known::Deleted, Ok(None)) => {}
            (Known::Deleted, Err(_)) => {}
            (Known::Maybe(before, attempted), Ok(Some(d))) => {
                let ok =
                    before.is_some_and(|b| d == chaos_doc(n, b)) || d == chaos_doc(n, *attempted);
                if !ok {
                    v.silent.push(id.clone());
                }
            }
            (Known::Maybe(..), Ok(None)) => {}
            (Known::Maybe(before, _), Err(e)) => {
                if before.is_some() {
                    v.refused.push((id.clone(), e.to_string()));
                }
            }
        }
    }
    // Nothing present that was never written.
    let mut after: Option<String> = None;
    while let Ok(page) = store.scan(after.as_deref(), 1_000) {
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (id, _) in page {
            if !known.contains_key(&id) {
                v.phantom.push(id);
            }
        }
    }
    v
}

/// Whether `issue` names the place `fault` damaged: the same file (by location or resource), or for faults of the
/// environment an issue of the matching kind.
pub fn fault_matches(fault: &InjectedFault, issue: &Issue) -> bool {
    match fault.kind {
        FaultKind::OutOfSpace => {
            matches!(
                Code::of(issue),
                Some(Code::DiskSpaceLow | Code::DiskSpaceCritical)
            ) || issue.summary.contains("no space")
                || issue.summary.contains("disk space")
        }
        FaultKind::SlowIo => issue.code == "latency_anomaly" || issue.resource.contains("latency"),
        FaultKind::DescriptorExhaustion => Code::of(issue) == Some(Code::ResourceExhausted),
        FaultKind::StaleLock => {
            matches!(
                Code::of(issue),
                Some(Code::StaleLock | Code::LockFileDamaged)
            )
        }
        _ => {
            let by_location = issue.location.file.is_some() && fault.names_file(&issue.location);
            let by_resource = fault.file.as_deref().is_some_and(|f| {
                issue.resource == f
                    || issue
                        .evidence
                        .iter()
                        .any(|(k, v)| k == "protects" && v == f)
            });
            by_location || by_resource
        }
    }
}

/// Runs a chaos campaign: fills a store, then for each round injects one fault, runs the engine until healed or
/// escalated, verifies every acknowledged document (live and after a reopen), and tallies the outcome.
pub fn run(config: &ChaosConfig) -> Result<ChaosReport, ChaosError> {
    if config.rounds == 0 || config.rounds > ROUNDS_MAX {
        return Err(ChaosError::Config(format!(
            "rounds = {} is out of range: accepted [1, {ROUNDS_MAX}]",
            config.rounds
        )));
    }
    if config.docs > DOCS_MAX {
        return Err(ChaosError::Config(format!(
            "docs = {} is over DOCS_MAX = {DOCS_MAX}",
            config.docs
        )));
    }
    config.schedule.validate()?;
    let started = Instant::now();
    let dir = prepare_dir(&config.data_dir)?;
    let kinds: Vec<FaultKind> = if config.faults.is_empty() {
        FaultKind::ALL.to_vec()
    } else {
        config.faults.clone()
    };
    let mut harness = Harness::new(
        &dir,
        config.seed,
        HarnessConfig {
            docs: config.docs,
            schedule: Some(config.schedule),
            ..HarnessConfig::default()
        },
    )?;
    let mut report = ChaosReport {
        seed: config.seed,
        docs: config.docs as u64,
        mttd_basis: config.schedule.describe(),
        schedule: Some(config.schedule),
        ..ChaosReport::default()
    };
    let mut total = Tally::default();
    let mut by: BTreeMap<FaultKind, Tally> = BTreeMap::new();
    for r in 0..config.rounds {
        // Every kind equally often, in a seeded order within each pass.
        let kind = kinds[(r as usize + (config.seed as usize % kinds.len())) % kinds.len()];
        let out = harness.round(kind)?;
        report.rounds += 1;
        let lost = (out.live.lost.len() + out.live.refused.len())
            .max(out.reopened.lost.len() + out.reopened.refused.len()) as u64;
        let silent = (out.live.silent.len() + out.live.phantom.len())
            .max(out.reopened.silent.len() + out.reopened.phantom.len())
            as u64;
        for t in [&mut total, by.entry(kind).or_default()] {
            t.stats.injected += 1;
            t.stats.detected += out.detected as u64;
            t.stats.repaired += out.repaired as u64;
            t.stats.escalated += out.escalated as u64;
            t.stats.acked_writes_lost += lost;
            t.stats.silent_corruptions += silent;
            t.ttd_ms.extend(out.detect_ms);
            t.ttr_ms.extend(out.repair_ms);
        }
        if (!out.repaired || lost > 0 || silent > 0) && report.notes.len() < ROUND_NOTES_MAX {
            report.notes.push(RoundNote {
                round: r,
                fault: kind,
                injected: out
                    .faults
                    .iter()
                    .map(|f| format!("{} {}", f.file.as_deref().unwrap_or("-"), f.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
                outcome: describe(&out),
            });
        }
        if out.reopen_error.is_some() && harness.store.is_none() {
            // The store cannot be opened again: the campaign ends here, and the report says why.
            break;
        }
    }
    let total = total.finish();
    report.injected = total.injected;
    report.detected = total.detected;
    report.repaired = total.repaired;
    report.escalated = total.escalated;
    report.acked_writes_lost = total.acked_writes_lost;
    report.silent_corruptions = total.silent_corruptions;
    report.mttd_ms_p50 = total.mttd_ms_p50;
    report.mttd_ms_p99 = total.mttd_ms_p99;
    report.mttr_ms_p50 = total.mttr_ms_p50;
    report.mttr_ms_p99 = total.mttr_ms_p99;
    report.by_fault = by
        .into_iter()
        .map(|(k, t)| (k.name().to_string(), t.finish()))
        .collect();
    report.cycles = harness.cycles();
    report.seconds = started.elapsed().as_secs_f64();
    if let Some(store) = harness.store.take()
        && let Ok(s) = Arc::try_unwrap(store)
    {
        let _ = s.close();
    }
    Ok(report)
}

/// One line on how a round ended.
pub fn describe(out: &RoundOutcome) -> String {
    let mut parts = vec![format!(
        "detected={} repaired={} escalated={} cycles={}",
        out.detected, out.repaired, out.escalated, out.cycles
    )];
    if !out.scrub_failures.is_empty() {
        parts.push(format!("scrub: {}", out.scrub_failures.join(" | ")));
    }
    for (name, v) in [("live", &out.live), ("reopened", &out.reopened)] {
        if !v.clean() {
            parts.push(format!(
                "{name}: lost {:?} refused {:?} silent {:?} phantom {:?}",
                v.lost.iter().take(5).collect::<Vec<_>>(),
                v.refused.iter().take(3).collect::<Vec<_>>(),
                v.silent.iter().take(5).collect::<Vec<_>>(),
                v.phantom.iter().take(5).collect::<Vec<_>>()
            ));
        }
    }
    if let Some(e) = &out.reopen_error {
        parts.push(format!("reopen: {e}"));
    }
    for inc in &out.incidents {
        parts.push(format!(
            "incident {} {:?}: {} [{}]",
            inc.id,
            inc.resolution,
            inc.decision,
            inc.issues
                .iter()
                .map(|i| i.code.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    parts.join("; ")
}

/// Makes `data_dir/chaos` afresh. Removes an earlier one only if the harness made it (it holds the marker file).
fn prepare_dir(data_dir: &Path) -> Result<PathBuf, ChaosError> {
    let dir = data_dir.join(CHAOS_SUBDIR);
    let ioe = |context: String| move |source| ChaosError::Io { context, source };
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(ChaosError::Config(format!(
                "{} exists and was not made by the chaos harness; refusing to touch it",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(&dir).map_err(ioe(format!("removing {}", dir.display())))?;
    }
    std::fs::create_dir_all(&dir).map_err(ioe(format!("creating {}", dir.display())))?;
    std::fs::write(
        dir.join(MARKER),
        b"made by medic chaos; removed by the next run\n",
    )
    .map_err(ioe(format!("writing {}", dir.join(MARKER).display())))?;
    let store_dir = dir.join("store");
    Ok(store_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 50.0);
        assert_eq!(percentile(&xs, 0.99), 99.0);
        assert_eq!(percentile(&xs, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7.0, f64::NAN], 0.5), 7.0);
    }

    #[test]
    fn report_has_the_documented_keys() {
        let mut t = Tally::default();
        t.stats.injected = 2;
        t.ttr_ms = vec![1.0, 3.0];
        let mut report = ChaosReport::default();
        report.by_fault.insert("bit_flip".into(), t.finish());
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "rounds",
            "injected",
            "detected",
            "repaired",
            "escalated",
            "acked_writes_lost",
            "silent_corruptions",
            "mttd_ms_p50",
            "mttr_ms_p50",
            "mttr_ms_p99",
            "by_fault",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["by_fault"]["bit_flip"]["mttr_ms_p99"], 3.0);
        assert_eq!(json["by_fault"]["bit_flip"]["injected"], 2);
    }
}
