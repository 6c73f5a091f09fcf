//! Vector index faults for `medic chaos`: an HNSW index (and, when an IVF kind is drawn, an IVF index) attached to a
//! scratch store of seeded clustered vectors is damaged round after round — in the graph (links dropped into orphans
//! or a cut-off region, the entry point moved to a low node, every link scrambled, a third of the documents
//! deleted), in the index's file on disk (`hnsw.bin` or `ivf.bin`: one bit flipped, a range zeroed, the file
//! deleted; the index in memory untouched) or in the data (a new cluster inserted after the IVF was trained: drift) —
//! and the engine's repairs are measured: whether the fault was detected (an incident about the damaged index),
//! repaired (every incident auto-repaired, the index whole again — a graph connected, a file that loads and holds the
//! applied LSN, an IVF trained on the data it holds — and its sampled recall@10 at least the recall before the fault
//! minus [`RECALL_SLACK`]), and how long each took. A round that fails is named with the command that replays it.
//!
//! Owns [`GraphKind`] (the fault names `--faults` takes: `graph_*`, `hnsw_file_*`, `ivf_file_*`, `ivf_drift`),
//! [`GraphChaosConfig`],
//! [`GraphChaosReport`] and [`run`]. The store's own chaos harness (`store::chaos`) cannot hold these scenarios: the
//! store does not know the vector indexes (dependencies point from the indexes to the store). One seed derives every
//! choice, so a run replays; times are on the real clock, the engine's on a simulated one that moves past every
//! check interval before each cycle (as in the store's harness).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use heal::clock::SimClock;
use heal::learn::{MemoryKnowledgeBase, Resolution};
use heal::{Clock, Subject, SystemClock};
use index_vector::{
    FileFault, GraphFault, HealthOptions, HnswIndex, HnswParams, IvfIndex, IvfParams,
};
use serde::Serialize;
use store::codec::Document;
use store::{Store, StoreSubject};

/// Sampled recall@10 a repaired graph may lose against the graph before the fault.
pub const RECALL_SLACK: f64 = 0.01;
/// Engine cycles per round at most before the round is called unhealed.
pub const CYCLES_PER_ROUND_MAX: u32 = 12;
/// Most documents a graph run loads (each a vector of [`DIM`]).
pub const GRAPH_DOCS_MAX: u32 = 100_000;
/// Fewest documents a graph run loads (fewer are raised to this: the sampled recall needs a graph to search).
pub const GRAPH_DOCS_MIN: u32 = 200;
/// Dimension of the run's vectors.
pub const DIM: usize = 32;
/// Share of the documents a `graph_deletions` round deletes.
pub const DELETE_FRACTION: f64 = 0.3;
/// Vectors an `ivf_drift` round inserts, as a share of the documents (at least [`DRIFT_DOCS_MIN`]); deleted again
/// after the round.
pub const DRIFT_FRACTION: f64 = 0.2;
/// Fewest vectors an `ivf_drift` round inserts (the IVF judges drift over at least 40 inserts).
pub const DRIFT_DOCS_MIN: usize = 80;
/// How far the drift round's cluster is moved from the data (added to every component before normalising).
const DRIFT_OFFSET: f32 = 12.0;
/// Vectors per IVF list the run aims at (the IVF trains from 40 per list).
const DOCS_PER_LIST: u32 = 100;
/// Directory the run keeps its store in, under the data directory (beside the store harness's `chaos`).
pub const SUBDIR: &str = "chaos-graph";
/// Marker file that makes the directory safe to remove.
const MARKER: &str = "CHAOS-GRAPH-HARNESS";
/// Cycles without an incident after which a round (or the load) counts as quiet.
const QUIET_CYCLES: u32 = 3;
/// How long to wait for the index to apply the store's log.
const APPLY_WAIT: Duration = Duration::from_secs(60);

/// A graph fault `medic chaos` can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GraphKind {
    /// Every link into 2% of the live nodes removed: orphans no search reaches.
    Orphans,
    /// A node and its nearest 2% cut off from the rest of the graph.
    CutRegion,
    /// The entry point moved to a random node of level 0.
    WrongEntry,
    /// Every link replaced by a random ring: whole to every structural figure, only the recall shows it.
    ScrambledLinks,
    /// [`DELETE_FRACTION`] of the documents deleted through the store (tombstones past the compaction threshold);
    /// put back after the round.
    Deletions,
    /// One bit of `hnsw.bin` flipped on disk.
    HnswFileBitFlip,
    /// A range of `hnsw.bin` zeroed on disk.
    HnswFileZeroed,
    /// `hnsw.bin` deleted.
    HnswFileDeleted,
    /// One bit of `ivf.bin` flipped on disk.
    IvfFileBitFlip,
    /// A range of `ivf.bin` zeroed on disk.
    IvfFileZeroed,
    /// `ivf.bin` deleted.
    IvfFileDeleted,
    /// A new cluster, far from every centroid, inserted after the IVF was trained ([`DRIFT_FRACTION`] of the
    /// documents); deleted after the round.
    IvfDrift,
}

/// Which index a fault damages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Hnsw,
    Ivf,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Hnsw => index_vector::NAME,
            Target::Ivf => index_vector::ivf_names::NAME,
        }
    }
}

impl GraphKind {
    /// Every kind, in the order a run draws them.
    pub const ALL: [GraphKind; 12] = [
        GraphKind::Orphans,
        GraphKind::CutRegion,
        GraphKind::WrongEntry,
        GraphKind::ScrambledLinks,
        GraphKind::Deletions,
        GraphKind::HnswFileBitFlip,
        GraphKind::HnswFileZeroed,
        GraphKind::HnswFileDeleted,
        GraphKind::IvfFileBitFlip,
        GraphKind::IvfFileZeroed,
        GraphKind::IvfFileDeleted,
        GraphKind::IvfDrift,
    ];

    /// The name `--faults` takes and reports use.
    pub fn name(self) -> &'static str {
        match self {
            GraphKind::Orphans => "graph_orphans",
            GraphKind::CutRegion => "graph_cut_region",
            GraphKind::WrongEntry => "graph_wrong_entry",
            GraphKind::ScrambledLinks => "graph_scrambled_links",
            GraphKind::Deletions => "graph_deletions",
            GraphKind::HnswFileBitFlip => "hnsw_file_bit_flip",
            GraphKind::HnswFileZeroed => "hnsw_file_zeroed",
            GraphKind::HnswFileDeleted => "hnsw_file_deleted",
            GraphKind::IvfFileBitFlip => "ivf_file_bit_flip",
            GraphKind::IvfFileZeroed => "ivf_file_zeroed",
            GraphKind::IvfFileDeleted => "ivf_file_deleted",
            GraphKind::IvfDrift => "ivf_drift",
        }
    }

    /// The index the fault damages.
    fn target(self) -> Target {
        match self {
            GraphKind::IvfFileBitFlip
            | GraphKind::IvfFileZeroed
            | GraphKind::IvfFileDeleted
            | GraphKind::IvfDrift => Target::Ivf,
            _ => Target::Hnsw,
        }
    }

    /// The damage to the index's file on disk, for the file kinds.
    fn file_fault(self, seed: u64) -> Option<FileFault> {
        match self {
            GraphKind::HnswFileBitFlip | GraphKind::IvfFileBitFlip => {
                Some(FileFault::BitFlip { seed })
            }
            GraphKind::HnswFileZeroed | GraphKind::IvfFileZeroed => {
                Some(FileFault::ZeroRange { seed })
            }
            GraphKind::HnswFileDeleted | GraphKind::IvfFileDeleted => Some(FileFault::Deleted),
            _ => None,
        }
    }

    /// The kind named `name`, if it is one.
    pub fn parse(name: &str) -> Option<GraphKind> {
        GraphKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What a graph run does.
#[derive(Clone, Debug)]
pub struct GraphChaosConfig {
    /// Where the run keeps its store (a [`SUBDIR`] directory is made inside it).
    pub data_dir: PathBuf,
    /// The seed every choice derives from.
    pub seed: u64,
    /// Faults to inject, one per round.
    pub rounds: u32,
    /// The kinds to draw from (empty: all).
    pub kinds: Vec<GraphKind>,
    /// Documents (vectors) loaded before the first round.
    pub docs: u32,
}

/// Counts, times and recall for one kind (or for all).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct GraphStats {
    /// Faults injected.
    pub injected: u64,
    /// Faults the engine opened an incident about.
    pub detected: u64,
    /// Faults repaired without a human: every incident auto-repaired, the graph whole, the recall bound kept.
    pub repaired: u64,
    /// Faults handed to a human.
    pub escalated: u64,
    /// Median time from injection to the incident, ms.
    pub mttd_ms_p50: f64,
    /// Median time from injection to the repaired graph, ms.
    pub mttr_ms_p50: f64,
    /// 99th percentile of the time from injection to the repaired graph, ms.
    pub mttr_ms_p99: f64,
    /// Lowest sampled recall@10 seen right after a fault.
    pub recall_faulted_min: f64,
    /// Lowest of (recall after the repair − recall before the fault); at least −[`RECALL_SLACK`] when every repair
    /// kept the bound.
    pub recall_change_min: f64,
}

/// One round that did not end in a clean detect-and-repair.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GraphNote {
    /// The round's index.
    pub round: u32,
    /// The fault's name.
    pub fault: String,
    /// The seed the round's fault was drawn from (derived from the run's seed and the round).
    pub fault_seed: u64,
    /// How it ended, one line.
    pub outcome: String,
    /// The command that replays the run up to this round.
    pub replay: String,
}

/// What a graph run found.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct GraphChaosReport {
    /// Rounds run.
    pub rounds: u64,
    /// Vectors in the graph before the first round.
    pub docs: u64,
    /// Every round together.
    #[serde(flatten)]
    pub total: GraphStats,
    /// Per kind, by name.
    pub by_fault: BTreeMap<String, GraphStats>,
    /// Rounds that did not end cleanly (at most 64).
    pub notes: Vec<GraphNote>,
    /// Engine cycles run.
    pub cycles: u64,
    /// Wall time of the run, s.
    pub seconds: f64,
}

/// Why a graph run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum GraphChaosError {
    /// A setting out of range, or a directory the run may not touch.
    #[error("{0}")]
    Config(String),
    /// The store, the index or the engine failed.
    #[error("{context}: {reason}")]
    Failed { context: String, reason: String },
}

fn failed(context: &str) -> impl FnOnce(String) -> GraphChaosError + '_ {
    move |reason| GraphChaosError::Failed {
        context: context.to_string(),
        reason,
    }
}

#[derive(Default)]
struct Tally {
    stats: GraphStats,
    ttd: Vec<f64>,
    ttr: Vec<f64>,
    faulted: Vec<f64>,
    change: Vec<f64>,
}

impl Tally {
    fn finish(mut self) -> GraphStats {
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        self.stats.mttd_ms_p50 = store::chaos::percentile(&self.ttd, 0.5);
        self.stats.mttr_ms_p50 = store::chaos::percentile(&self.ttr, 0.5);
        self.stats.mttr_ms_p99 = store::chaos::percentile(&self.ttr, 0.99);
        self.stats.recall_faulted_min = if self.faulted.is_empty() {
            0.0
        } else {
            min(&self.faulted)
        };
        self.stats.recall_change_min = if self.change.is_empty() {
            0.0
        } else {
            min(&self.change)
        };
        self.stats
    }
}

/// How one round went.
struct Round {
    detected: bool,
    repaired: bool,
    escalated: bool,
    detect_ms: Option<f64>,
    repair_ms: Option<f64>,
    recall_before: f64,
    recall_faulted: f64,
    recall_after: f64,
    outcome: String,
}

struct Harness {
    store: Arc<Store>,
    hnsw: Arc<HnswIndex>,
    /// Attached only when an IVF kind is drawn (so the graph kinds' runs stay as they were).
    ivf: Option<Arc<IvfIndex>>,
    dir: PathBuf,
    drift_rounds: u32,
    engine: heal::engine::Engine,
    clock: SimClock,
    vectors: Vec<Vec<f32>>,
    cycles: u64,
}

fn id_of(i: usize) -> String {
    format!("g{i:06}")
}

/// The IVF's parameters for `docs` vectors: about [`DOCS_PER_LIST`] per list (so it trains once loaded), half the
/// lists probed (the sampled recall stays far above the floor on clustered data).
fn ivf_params(docs: u32) -> IvfParams {
    let lists = (docs / DOCS_PER_LIST).clamp(2, 64) as usize;
    IvfParams {
        lists,
        probes: (lists / 2).max(1),
        ..IvfParams::default()
    }
}

impl Harness {
    fn new(dir: &Path, seed: u64, docs: usize, with_ivf: bool) -> Result<Harness, GraphChaosError> {
        let store = Arc::new(
            Store::open(dir, store::chaos::chaos_store_config())
                .map_err(|e| failed("opening the store")(e.to_string()))?,
        );
        let hnsw = Arc::new(
            HnswIndex::open(
                dir,
                store::derived::DEFAULT_COLLECTION,
                HnswParams::default(),
                store.config().io.clone(),
            )
            .map_err(|e| failed("opening the hnsw index")(e.to_string()))?,
        );
        store
            .attach_derived(hnsw.clone())
            .map_err(|e| failed("attaching the hnsw index")(e.to_string()))?;
        let ivf = if with_ivf {
            let ivf = Arc::new(
                IvfIndex::open(
                    dir,
                    store::derived::DEFAULT_COLLECTION,
                    ivf_params(docs as u32),
                    store.config().io.clone(),
                )
                .map_err(|e| failed("opening the ivf index")(e.to_string()))?,
            );
            store
                .attach_derived(ivf.clone())
                .map_err(|e| failed("attaching the ivf index")(e.to_string()))?;
            Some(ivf)
        } else {
            None
        };
        let (vectors, _) = index_vector::synth::Clustered::new(docs, DIM, seed).generate(0);
        let subject: Arc<dyn Subject> = Arc::new(StoreSubject::new(store.clone()));
        let clock = SimClock::new(SystemClock::new().now());
        let engine = heal::engine::Engine::new(
            subject,
            Arc::new(MemoryKnowledgeBase::new()),
            Arc::new(clock.clone()),
            heal::config::EngineConfig::default(),
        )
        .map_err(|e| failed("starting the engine")(e.to_string()))?;
        let mut h = Harness {
            store,
            hnsw,
            ivf,
            dir: dir.to_path_buf(),
            drift_rounds: 0,
            engine,
            clock,
            vectors,
            cycles: 0,
        };
        h.put_range(0..docs)?;
        if let Some(ivf) = &h.ivf {
            // Trained once on everything loaded: where the driver's batches made it train first depends on timing.
            ivf.retrain()
                .map_err(|e| failed("training the ivf index")(e.to_string()))?;
        }
        // The graph as loaded may need the engine once (insertion can leave a few nodes unreachable).
        h.heal()?;
        Ok(h)
    }

    fn put_range(&self, range: impl Iterator<Item = usize>) -> Result<(), GraphChaosError> {
        for i in range {
            let doc = Document {
                text: String::new(),
                vector: Some(self.vectors[i].clone()),
                meta: None,
            };
            self.store
                .put(&id_of(i), doc)
                .map_err(|e| failed("writing a document")(e.to_string()))?;
        }
        self.applied()
    }

    fn applied(&self) -> Result<(), GraphChaosError> {
        self.store
            .derived()
            .wait_applied(self.store.stats().last_lsn, APPLY_WAIT)
            .map(|_| ())
            .map_err(|e| failed("waiting for the index")(e.to_string()))
    }

    fn recall(&self, target: Target) -> f64 {
        match (target, &self.ivf) {
            (Target::Ivf, Some(ivf)) => ivf.health().recall_at_10.unwrap_or(0.0),
            _ => self
                .hnsw
                .health(&HealthOptions::default())
                .recall_at_10
                .unwrap_or(0.0),
        }
    }

    fn ivf(&self) -> Result<&Arc<IvfIndex>, GraphChaosError> {
        self.ivf.as_ref().ok_or_else(|| GraphChaosError::Failed {
            context: "an ivf fault".into(),
            reason: "no ivf index attached".into(),
        })
    }

    /// Waits until every index wrote what it applied (so the file damaged is the current one, and no persist due
    /// rewrites it before the engine looks).
    fn persisted(&self) -> Result<(), GraphChaosError> {
        let deadline = Instant::now() + APPLY_WAIT;
        loop {
            let st = self.store.derived().status();
            if st
                .indexes
                .iter()
                .all(|i| i.unpersisted_changes == 0 && i.persisted_lsn == i.applied_lsn)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed("waiting for the indexes' files")(format!(
                    "not every index persisted within {} s",
                    APPLY_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the index's file on disk loads whole and holds what the index applied (opened beside it, read only).
    fn file_loads(&self, target: Target) -> Result<bool, String> {
        let io = Arc::new(store::io::IoFaults::new());
        let c = store::derived::DEFAULT_COLLECTION;
        let (report, applied) = match target {
            Target::Hnsw => {
                let fresh = HnswIndex::open(&self.dir, c, self.hnsw.params().clone(), io)
                    .map_err(|e| e.to_string())?;
                (
                    fresh.open_report().clone(),
                    store::derived::DerivedIndex::applied_lsn(&*self.hnsw),
                )
            }
            Target::Ivf => {
                let ivf = self.ivf.as_ref().ok_or("no ivf index attached")?;
                let fresh = IvfIndex::open(&self.dir, c, ivf.params().clone(), io)
                    .map_err(|e| e.to_string())?;
                (
                    fresh.open_report().clone(),
                    store::derived::DerivedIndex::applied_lsn(&**ivf),
                )
            }
        };
        Ok(report.loaded && report.applied_lsn == applied)
    }

    /// Inserts a cluster far from the data (ids `drift<round>-<i>`); their ids.
    fn insert_drift(&mut self, seed: u64) -> Result<Vec<String>, GraphChaosError> {
        let n = ((self.vectors.len() as f64 * DRIFT_FRACTION) as usize).max(DRIFT_DOCS_MIN);
        let (far, _) = index_vector::synth::Clustered::new(n, DIM, seed).generate(0);
        let round = self.drift_rounds;
        self.drift_rounds += 1;
        let mut ids = Vec::with_capacity(n);
        for (i, v) in far.into_iter().enumerate() {
            let id = format!("drift{round}-{i:05}");
            let doc = Document {
                text: String::new(),
                vector: Some(v.into_iter().map(|x| x + DRIFT_OFFSET).collect()),
                meta: None,
            };
            self.store
                .put(&id, doc)
                .map_err(|e| failed("writing a drift document")(e.to_string()))?;
            ids.push(id);
        }
        self.applied()?;
        Ok(ids)
    }

    /// Cycles until no incident is open (at most [`CYCLES_PER_ROUND_MAX`]); the incidents opened, and the real time
    /// of the first one's opening since `start`.
    fn heal_from(&mut self, start: Instant) -> (Vec<heal::IncidentRecord>, Option<f64>, bool) {
        let mut opened = Vec::new();
        let mut detect_ms = None;
        for quiet in 0..CYCLES_PER_ROUND_MAX {
            self.clock.advance(store::chaos::CYCLE_ADVANCE_US);
            let sum = self.engine.run_cycle();
            self.cycles += 1;
            if !sum.incidents_opened.is_empty() && detect_ms.is_none() {
                detect_ms = Some(start.elapsed().as_secs_f64() * 1e3);
            }
            opened.extend(sum.incidents_opened);
            // Cycles with nothing open before the first incident are not the end: the structure is judged on a
            // settled graph, one deep run after the change.
            if self.engine.active_incidents().is_empty()
                && (!opened.is_empty() || quiet >= QUIET_CYCLES)
            {
                break;
            }
        }
        let records = opened
            .iter()
            .filter_map(|id| self.engine.incident(*id).ok().flatten())
            .collect();
        (
            records,
            detect_ms,
            self.engine.active_incidents().is_empty(),
        )
    }

    fn heal(&mut self) -> Result<(), GraphChaosError> {
        let (_, _, closed) = self.heal_from(Instant::now());
        if closed {
            Ok(())
        } else {
            Err(GraphChaosError::Failed {
                context: "healing the freshly loaded graph".into(),
                reason: format!(
                    "{} incidents still open",
                    self.engine.active_incidents().len()
                ),
            })
        }
    }

    fn round(&mut self, kind: GraphKind, seed: u64) -> Result<Round, GraphChaosError> {
        let target = kind.target();
        if let Some(fault) = kind.file_fault(seed) {
            self.persisted()?;
            let recall_before = self.recall(target);
            let start = Instant::now();
            let done = match target {
                Target::Hnsw => self.hnsw.inject_file(&fault),
                Target::Ivf => self.ivf()?.inject_file(&fault),
            }
            .map_err(|e| failed("damaging an index file")(e.to_string()))?;
            let recall_faulted = self.recall(target);
            return self.judge(target, start, recall_before, recall_faulted, done);
        }
        if kind == GraphKind::IvfDrift {
            self.ivf()?;
            let recall_before = self.recall(target);
            let start = Instant::now();
            let ids = self.insert_drift(seed)?;
            let recall_faulted = self.recall(target);
            let done = format!("{} vectors of a new cluster inserted", ids.len());
            let mut round = self.judge(target, start, recall_before, recall_faulted, done)?;
            // The drift cluster is taken out again for the next round (and the indexes healed of what that leaves).
            for id in &ids {
                self.store
                    .delete(id)
                    .map_err(|e| failed("deleting a drift document")(e.to_string()))?;
            }
            self.applied()?;
            let (_, _, closed) = self.heal_from(Instant::now());
            if !closed {
                round
                    .outcome
                    .push_str("; incidents open after the drift cluster was deleted");
            }
            return Ok(round);
        }
        let recall_before = self.recall(target);
        let live = self.hnsw.health(&HealthOptions {
            recall_queries: 0,
            ..HealthOptions::default()
        });
        let share = (live.live as usize / 50).max(1);
        let start = Instant::now();
        let mut deleted = Vec::new();
        match kind {
            GraphKind::Orphans => {
                self.hnsw
                    .inject(&GraphFault::Orphans { nodes: share, seed });
            }
            GraphKind::CutRegion => {
                self.hnsw
                    .inject(&GraphFault::CutRegion { nodes: share, seed });
            }
            GraphKind::WrongEntry => {
                self.hnsw.inject(&GraphFault::WrongEntry { seed });
            }
            GraphKind::ScrambledLinks => {
                self.hnsw.inject(&GraphFault::ScrambledLinks { seed });
            }
            GraphKind::Deletions => {
                let n = self.vectors.len();
                let k = (n as f64 * DELETE_FRACTION) as usize;
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
                deleted = rand::seq::index::sample(&mut rng, n, k).into_vec();
                for &i in &deleted {
                    self.store
                        .delete(&id_of(i))
                        .map_err(|e| failed("deleting a document")(e.to_string()))?;
                }
                self.applied()?;
            }
            other => {
                return Err(failed("injecting a graph fault")(format!(
                    "{} is not a graph fault",
                    other.name()
                )));
            }
        }
        let recall_faulted = self.recall(target);
        let mut round = self.judge(target, start, recall_before, recall_faulted, String::new())?;
        if !deleted.is_empty() {
            // The corpus is put back for the next round (and the graph healed of what that leaves).
            self.put_range(deleted.into_iter())?;
            let (_, _, closed) = self.heal_from(Instant::now());
            if !closed {
                round
                    .outcome
                    .push_str("; incidents open after the documents were put back");
            }
        }
        Ok(round)
    }

    /// Runs the engine after a fault injected at `start` into `target` and judges the round: detected (an incident
    /// about the index), every incident auto-repaired, the index whole again (graph connected, file loading, IVF
    /// trained on what it holds) and the recall bound kept.
    fn judge(
        &mut self,
        target: Target,
        start: Instant,
        recall_before: f64,
        recall_faulted: f64,
        done: String,
    ) -> Result<Round, GraphChaosError> {
        let (records, detect_ms, closed) = self.heal_from(start);
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        let recall_after = self.recall(target);
        let resource =
            store::derived::index_dir_rel(store::derived::DEFAULT_COLLECTION, target.name());
        let about_index =
            |r: &heal::IncidentRecord| r.issues.iter().any(|i| i.resource == resource);
        let detected = records.iter().any(about_index);
        let escalated = records
            .iter()
            .any(|r| r.resolution == Resolution::Escalated);
        let auto = closed
            && !records.is_empty()
            && records
                .iter()
                .all(|r| r.resolution == Resolution::AutoRepaired);
        let bound = recall_after >= recall_before - RECALL_SLACK;
        // A file a repair left unpersisted is written by the driver within its persist interval.
        let loads = self.persisted().is_ok() && self.file_loads(target).unwrap_or(false);
        let (whole, state) = match target {
            Target::Hnsw => {
                let after = self.hnsw.health(&HealthOptions {
                    recall_queries: 0,
                    ..HealthOptions::default()
                });
                (
                    after.connected(),
                    format!(
                        "unreachable {}, orphans {}, entry live {}",
                        after.unreachable, after.orphans, after.entry_live
                    ),
                )
            }
            Target::Ivf => {
                let ivf = self.ivf()?;
                let after = ivf.health();
                let drift_max = ivf.params().retrain_drift;
                (
                    after.trained && after.drift.is_none_or(|d| d <= drift_max),
                    format!(
                        "trained {}, inserted since training {}, drift {}",
                        after.trained,
                        after.inserted_since_training,
                        after
                            .drift
                            .map_or_else(|| "none".to_string(), |d| format!("{d:.2}"))
                    ),
                )
            }
        };
        let repaired = detected && auto && whole && loads && bound;
        let mut outcome = format!(
            "{}{} incident(s) {}; recall@10 {recall_before:.3} → {recall_faulted:.3} → {recall_after:.3}; {state}; \
             file loads {loads}",
            if done.is_empty() {
                String::new()
            } else {
                format!("{done}; ")
            },
            records.len(),
            records
                .iter()
                .map(|r| format!("{:?}", r.resolution))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if !closed {
            outcome.push_str("; incidents still open");
        }
        Ok(Round {
            detected,
            repaired,
            escalated,
            detect_ms,
            repair_ms: repaired.then_some(elapsed_ms),
            recall_before,
            recall_faulted,
            recall_after,
            outcome,
        })
    }
}

/// Prepares `data_dir/`[`SUBDIR`]: removes what a previous run left (only if it carries the marker).
fn prepare_dir(data_dir: &Path) -> Result<PathBuf, GraphChaosError> {
    let dir = data_dir.join(SUBDIR);
    let io = |what: String| move |e: std::io::Error| failed(&what)(e.to_string());
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(GraphChaosError::Config(format!(
                "{} exists and was not made by the chaos harness; refusing to touch it",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::write(
        dir.join(MARKER),
        b"made by medic chaos; removed by the next run\n",
    )
    .map_err(io(format!("writing the marker in {}", dir.display())))?;
    Ok(dir.join("store"))
}

/// Runs `config.rounds` graph faults (see the module doc).
pub fn run(config: &GraphChaosConfig) -> Result<GraphChaosReport, GraphChaosError> {
    if config.rounds == 0 || config.rounds > store::chaos::ROUNDS_MAX {
        return Err(GraphChaosError::Config(format!(
            "rounds = {} is out of range: accepted [1, {}]",
            config.rounds,
            store::chaos::ROUNDS_MAX
        )));
    }
    if config.docs > GRAPH_DOCS_MAX {
        return Err(GraphChaosError::Config(format!(
            "docs = {} is over GRAPH_DOCS_MAX = {GRAPH_DOCS_MAX} for graph faults",
            config.docs
        )));
    }
    let docs = config.docs.max(GRAPH_DOCS_MIN);
    let started = Instant::now();
    let kinds: Vec<GraphKind> = if config.kinds.is_empty() {
        GraphKind::ALL.to_vec()
    } else {
        config.kinds.clone()
    };
    let dir = prepare_dir(&config.data_dir)?;
    let with_ivf = kinds.iter().any(|k| k.target() == Target::Ivf);
    let mut h = Harness::new(&dir, config.seed, docs as usize, with_ivf)?;
    let mut report = GraphChaosReport {
        docs: u64::from(docs),
        ..GraphChaosReport::default()
    };
    let mut total = Tally::default();
    let mut by: BTreeMap<GraphKind, Tally> = BTreeMap::new();
    for r in 0..config.rounds {
        let kind = kinds[(r as usize + (config.seed as usize % kinds.len())) % kinds.len()];
        let fault_seed = config
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(u64::from(r));
        let out = h.round(kind, fault_seed)?;
        report.rounds += 1;
        for t in [&mut total, by.entry(kind).or_default()] {
            t.stats.injected += 1;
            t.stats.detected += u64::from(out.detected);
            t.stats.repaired += u64::from(out.repaired);
            t.stats.escalated += u64::from(out.escalated);
            t.ttd.extend(out.detect_ms);
            t.ttr.extend(out.repair_ms);
            t.faulted.push(out.recall_faulted);
            t.change.push(out.recall_after - out.recall_before);
        }
        if !(out.detected && out.repaired) && report.notes.len() < 64 {
            report.notes.push(GraphNote {
                round: r,
                fault: kind.name().into(),
                fault_seed,
                outcome: out.outcome,
                replay: format!(
                    "medic chaos --seed {} --rounds {} --docs {docs} --faults {}",
                    config.seed,
                    r + 1,
                    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
                ),
            });
        }
    }
    report.total = total.finish();
    report.by_fault = by
        .into_iter()
        .map(|(k, t)| (k.name().to_string(), t.finish()))
        .collect();
    report.cycles = h.cycles;
    report.seconds = started.elapsed().as_secs_f64();
    drop(h);
    Ok(report)
}

/// How one `medic chaos` run divides its rounds between the store's faults and the graph's.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The store kinds asked for, as `store::fault::parse_fault_list` takes them (`None`: every store kind).
    pub store_faults: Option<String>,
    /// Rounds of store faults.
    pub store_rounds: u32,
    /// The graph kinds drawn from.
    pub graph_kinds: Vec<GraphKind>,
    /// Rounds of graph faults.
    pub graph_rounds: u32,
}

/// Splits `--faults` (`None`: every kind of both) into store and graph kinds, and `rounds` between them as a
/// round-robin over all the kinds would (so each kind is injected about equally often).
pub fn plan(faults: Option<&str>, rounds: u32) -> Plan {
    let (store_names, graph_kinds, all_store) = match faults {
        None => (Vec::new(), GraphKind::ALL.to_vec(), true),
        Some(list) => {
            let mut store_names = Vec::new();
            let mut graph_kinds = Vec::new();
            for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match GraphKind::parse(part) {
                    Some(k) if !graph_kinds.contains(&k) => graph_kinds.push(k),
                    Some(_) => {}
                    None => store_names.push(part.to_string()),
                }
            }
            let all = store_names.is_empty() && graph_kinds.is_empty();
            (store_names, graph_kinds, all)
        }
    };
    let store_kinds = if all_store {
        store::fault::FaultKind::ALL.len()
    } else {
        store_names.len()
    };
    let kinds = store_kinds + graph_kinds.len();
    let graph_rounds = if kinds == 0 {
        0
    } else {
        (0..rounds as usize)
            .filter(|r| r % kinds >= store_kinds)
            .count() as u32
    };
    Plan {
        store_faults: (!all_store).then(|| store_names.join(",")),
        store_rounds: rounds - graph_rounds,
        graph_kinds,
        graph_rounds,
    }
}

/// Adds a graph run to the store harness's JSON report (`report`: `null` when no store round ran): the counts and
/// `by_fault` gain the graph kinds, and the whole graph report is under `graph`. The times at the top stay the
/// store's unless only graph faults ran.
pub fn merge(report: &mut serde_json::Value, graph: &GraphChaosReport, seed: u64) {
    use serde_json::{Value, json};
    if !report.is_object() {
        *report = json!({
            "seed": seed, "rounds": 0, "docs": graph.docs, "injected": 0, "detected": 0, "repaired": 0,
            "escalated": 0, "acked_writes_lost": 0, "silent_corruptions": 0,
            "mttd_ms_p50": graph.total.mttd_ms_p50, "mttr_ms_p50": graph.total.mttr_ms_p50,
            "mttr_ms_p99": graph.total.mttr_ms_p99, "by_fault": {}, "notes": [], "cycles": 0, "seconds": 0.0,
        });
    }
    let add = |v: &mut Value, key: &str, n: u64| {
        let cur = v.get(key).and_then(Value::as_u64).unwrap_or(0);
        v[key] = json!(cur + n);
    };
    add(report, "rounds", graph.rounds);
    add(report, "injected", graph.total.injected);
    add(report, "detected", graph.total.detected);
    add(report, "repaired", graph.total.repaired);
    add(report, "escalated", graph.total.escalated);
    add(report, "cycles", graph.cycles);
    let secs = report.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
    report["seconds"] = json!(secs + graph.seconds);
    if !report["by_fault"].is_object() {
        report["by_fault"] = json!({});
    }
    for (name, s) in &graph.by_fault {
        report["by_fault"][name] = json!({
            "injected": s.injected, "detected": s.detected, "repaired": s.repaired, "escalated": s.escalated,
            "acked_writes_lost": 0, "silent_corruptions": 0, "mttd_ms_p50": s.mttd_ms_p50,
            "mttr_ms_p50": s.mttr_ms_p50, "mttr_ms_p99": s.mttr_ms_p99,
            "recall_faulted_min": s.recall_faulted_min, "recall_change_min": s.recall_change_min,
        });
    }
    report["graph"] = serde_json::to_value(graph).unwrap_or(Value::Null);
}
