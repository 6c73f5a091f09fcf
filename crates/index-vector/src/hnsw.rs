//! [`HnswIndex`]: one collection's HNSW index — the graph behind a lock, its file, the [`DerivedIndex`] contract,
//! searches, health, repairs and fault hooks.
//!
//! Concurrency: searches take the graph's read lock and run concurrently with each other; every change of the graph
//! (apply, repair, compaction, rebuild, fault) first takes the `writer` mutex, then the graph's write lock only for
//! the moment it changes. Lock order: `writer`, then `graph`. Since every write lock is taken by the `writer` holder,
//! no writer ever queues on the graph lock while a long read (a compaction building its new graph, a persist
//! encoding) holds it, so searches are never held up behind one. `apply` takes the write lock per chunk of
//! [`APPLY_CHUNK`] changes, so a large batch does not stall searches either.
//!
//! Invariants:
//! - `applied` equals the graph's applied LSN; it only grows, except through `rebuild`.
//! - `persisted` is the applied LSN of the last file written by this process, or of the file opened.
//! - A damaged, missing or foreign (other parameters) file opens an empty index with applied LSN 0.
//! - A search never returns a tombstone, a document whose vector was refused, or a version older than the one
//!   applied (a replaced vector is a tombstone at once).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;
use store::codec::Document;
use store::derived::{
    Agreement, Change, DerivedError, DerivedIndex, Structure, StructureProblem, Truth,
    index_dir_rel,
};
use store::io::{self, IoFaults};

use crate::distance::VectorError;
use crate::file;
use crate::file_fault::{self, FileFault, FileFaultError};
use crate::graph::{Graph, Near, Visited};
use crate::health::{self, COMPACT_TOMBSTONES_MIN, HealthOptions, HnswHealth, RECALL_BELOW_FLOOR};
use crate::params::{EF_MAX, HnswParams, K_MAX, ParamsError};
use crate::repair::{self, FaultReport, GraphFault, Relinked};

/// The index's name: its directory is `idx/<collection>/hnsw/`.
pub const NAME: &str = "hnsw";
/// Changes applied under one hold of the write lock.
pub const APPLY_CHUNK: usize = 64;
/// Search scratch kept for reuse.
const POOL_MAX: usize = 64;
/// Structural problem: the entry point is a tombstone or not on the top live layer.
pub const ENTRY_POINT: &str = "entry_point";
/// Structural problem: more than [`UNREACHABLE_FRACTION_MAX`] of the live nodes no search reaches.
pub const UNREACHABLE_NODES: &str = "unreachable_nodes";
/// Structural problem: tombstones past `compact_tombstone_fraction`.
pub const TOMBSTONES: &str = "tombstones";
/// Nodes re-linked by one structural repair (a graph with more waits for the next repair, or a rebuild).
pub const RELINK_BUDGET: usize = 10_000;
/// Ids compared by name in a disagreement list before the rest are counted.
const DISAGREEMENTS_MAX: usize = 32;

/// Why an index cannot be opened at all (a damaged file never is: it opens empty).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A parameter out of range.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// A collection name that cannot be a directory.
    #[error("collection name {0:?} cannot name an index directory")]
    Collection(String),
}

/// How [`HnswIndex::open`] found the file.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OpenReport {
    /// The file.
    pub path: PathBuf,
    /// Whether the index was loaded from it.
    pub loaded: bool,
    /// Why not (missing, damaged — with what and where —, other parameters).
    pub reason: Option<String>,
    /// The applied LSN it opened with (0 when empty).
    pub applied_lsn: u64,
}

/// One search hit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// The document's id.
    pub id: Arc<str>,
    /// The LSN of the version whose vector matched (the rebuild's LSN for a version indexed by a rebuild).
    pub lsn: u64,
    /// The distance under the index's metric (cosine `1 − cos`, dot `−a·b`, Euclidean): smaller is closer.
    pub distance: f32,
}

/// A query the index cannot answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SearchError {
    /// The query vector is unusable.
    #[error("query vector: {0}")]
    Vector(#[from] VectorError),
    /// `k` out of range.
    #[error("k = {k} is outside 1..={max}")]
    K { k: usize, max: usize },
    /// `ef` out of range.
    #[error("ef = {ef} is outside 1..={max}")]
    Ef { ef: usize, max: usize },
    /// `probes` out of range.
    #[error("probes = {probes} is outside 1..={max}")]
    Probes { probes: usize, max: usize },
}

/// What a repair did, measured before and after.
#[derive(Clone, Debug, Serialize)]
pub struct RepairReport {
    /// `relink`, `compact` or `rebuild_graph`.
    pub action: &'static str,
    /// Whether the graph was changed.
    pub applied: bool,
    /// Why not, or what the validation found.
    pub reason: Option<String>,
    /// The re-linking done (all repairs end with one).
    pub relinked: Relinked,
    /// Health before (no recall).
    pub before: HnswHealth,
    /// Health after (no recall).
    pub after: HnswHealth,
}

/// One collection's HNSW index. See the module doc.
pub struct HnswIndex {
    collection: String,
    dir: PathBuf,
    faults: Arc<IoFaults>,
    params: HnswParams,
    graph: RwLock<Graph>,
    writer: Mutex<()>,
    applied: AtomicU64,
    persisted: AtomicU64,
    pool: Mutex<Vec<Visited>>,
    opened: OpenReport,
    /// The applied LSN at the last [`DerivedIndex::structure`] measurement (reachability is judged only when no
    /// change arrived since: see [`structure_of`]).
    measured_lsn: AtomicU64,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("collection", &self.collection)
            .field("dir", &self.dir)
            .field("applied", &self.applied.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HnswIndex {
    /// Opens the index of `collection` in the data directory `data_dir` (its file under `idx/<collection>/hnsw/`).
    /// A missing, damaged or foreign file gives an empty index with applied LSN 0 ([`HnswIndex::open_report`]
    /// says why); the caller catches it up or rebuilds it. I/O goes through `faults` (the store's hooks).
    pub fn open(
        data_dir: &Path,
        collection: &str,
        params: HnswParams,
        faults: Arc<IoFaults>,
    ) -> Result<HnswIndex, OpenError> {
        params.validate()?;
        if collection.is_empty()
            || collection.len() > 255
            || collection.contains(['/', '\\', '\0'])
            || collection == "."
            || collection == ".."
        {
            return Err(OpenError::Collection(collection.to_string()));
        }
        let dir = data_dir.join(index_dir_rel(collection, NAME));
        let path = dir.join(file::FILE_NAME);
        let read = match io::not_a_directory(&dir) {
            // Never read through a link: the file there is another index's (or nobody's).
            Some(what) => Err(what),
            None => io::read_file(&faults, &path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!("{}: no index file", path.display()),
                _ => format!("{}: cannot read: {}", path.display(), io::reason(&e)),
            }),
        };
        let (graph, reason) = match read {
            Ok(bytes) => match file::decode(&bytes, &params) {
                Ok(g) => (g, None),
                Err(e) => (
                    Graph::new(params.clone()),
                    Some(format!("{}: damaged: {e}", path.display())),
                ),
            },
            Err(reason) => (Graph::new(params.clone()), Some(reason)),
        };
        let applied = graph.applied_lsn;
        Ok(HnswIndex {
            measured_lsn: AtomicU64::new(u64::MAX),
            collection: collection.to_string(),
            opened: OpenReport {
                path,
                loaded: reason.is_none(),
                reason,
                applied_lsn: applied,
            },
            dir,
            faults,
            params,
            graph: RwLock::new(graph),
            writer: Mutex::new(()),
            applied: AtomicU64::new(applied),
            persisted: AtomicU64::new(applied),
            pool: Mutex::new(Vec::new()),
        })
    }

    /// How the file was found on open.
    pub fn open_report(&self) -> &OpenReport {
        &self.opened
    }

    /// The index file's path.
    pub fn file_path(&self) -> PathBuf {
        self.dir.join(file::FILE_NAME)
    }

    /// The parameters (run-time ones as configured).
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.read().n_live()
    }

    /// Whether no vector is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dimension of the vectors (0 before the first).
    pub fn dim(&self) -> usize {
        self.read().dim
    }

    fn read(&self) -> RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Graph> {
        self.graph.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_visited<R>(&self, f: impl FnOnce(&mut Visited) -> R) -> R {
        let mut v = lock(&self.pool).pop().unwrap_or_default();
        let r = f(&mut v);
        let mut pool = lock(&self.pool);
        if pool.len() < POOL_MAX {
            pool.push(v);
        }
        r
    }

    fn check_query(k: usize, ef: Option<usize>) -> Result<(), SearchError> {
        if !(1..=K_MAX).contains(&k) {
            return Err(SearchError::K { k, max: K_MAX });
        }
        if let Some(ef) = ef
            && !(1..=EF_MAX).contains(&ef)
        {
            return Err(SearchError::Ef { ef, max: EF_MAX });
        }
        Ok(())
    }

    fn hits(&self, g: &Graph, near: Vec<Near>) -> Vec<Hit> {
        near.into_iter()
            .map(|n| Hit {
                id: g.ids[n.slot as usize].clone(),
                lsn: g.lsns[n.slot as usize],
                distance: g.params.metric.reported(n.dist),
            })
            .collect()
    }

    /// The `k` nearest live documents to `query`, nearest first, exploring `ef` candidates (`None`: the
    /// configured `ef_search`; at least `k`). With a `filter`, only ids it accepts are collected — the others are
    /// still walked through — so `k` hits come back whenever `k` accepted documents are reachable.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Vec<Hit>, SearchError> {
        Self::check_query(k, ef)?;
        let g = self.read();
        if g.dim == 0 {
            return Ok(Vec::new());
        }
        let q = g.prepare(query)?;
        let ef = ef.unwrap_or(self.params.ef_search);
        let near = self.with_visited(|v| g.search(&q, k, ef, v, filter));
        Ok(self.hits(&g, near))
    }

    /// Brute force over the same stored vectors: the exact `k` nearest live documents `filter` accepts.
    pub fn exact(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Vec<Hit>, SearchError> {
        Self::check_query(k, None)?;
        let g = self.read();
        if g.dim == 0 {
            return Ok(Vec::new());
        }
        let q = g.prepare(query)?;
        let near = g.exact(&q, k, filter);
        Ok(self.hits(&g, near))
    }

    /// Every health figure; recall sampled as `opts` says.
    pub fn health(&self, opts: &HealthOptions) -> HnswHealth {
        let g = self.read();
        let mut h = health::structure(&g);
        let (recall, n) = self.with_visited(|v| health::sampled_recall(&g, opts, v));
        h.recall_at_10 = recall;
        h.recall_queries = n;
        h
    }

    /// Re-links unreachable and orphaned nodes and puts the entry point back on a live top node, at most
    /// `budget` nodes per call; measured before and after.
    pub fn repair_connectivity(&self, budget: usize) -> RepairReport {
        let _w = lock(&self.writer);
        let before = health::structure(&self.read());
        let relinked = {
            let mut g = self.write();
            self.with_visited(|v| repair::relink(&mut g, budget, v))
        };
        let after = health::structure(&self.read());
        let reason = (after.unreachable > 0 || after.orphans > 0).then(|| {
            format!(
                "{} unreachable and {} orphans left ({} waiting past the budget of {budget})",
                after.unreachable, after.orphans, relinked.left
            )
        });
        RepairReport {
            action: "relink",
            applied: relinked.relinked > 0 || relinked.entry_reset,
            reason,
            relinked,
            before,
            after,
        }
    }

    /// Rebuilds the graph without its tombstones if their fraction is past `compact_tombstone_fraction`.
    pub fn compact(&self) -> RepairReport {
        self.rebuild_graph_inner("compact", true)
    }

    /// Rebuilds the whole graph from the stored vectors (live ones, in slot order), whatever its state.
    pub fn rebuild_graph(&self) -> RepairReport {
        self.rebuild_graph_inner("rebuild_graph", false)
    }

    /// Builds the new graph under the read lock (searches go on), re-links it, validates it against the old one
    /// (same documents and versions, invariants hold, everything reachable) and swaps it in.
    fn rebuild_graph_inner(&self, action: &'static str, only_if_due: bool) -> RepairReport {
        let _w = lock(&self.writer);
        let (before, new) = {
            let g = self.read();
            let before = health::structure(&g);
            if only_if_due && !before.compaction_due {
                let reason = format!(
                    "tombstone fraction {:.3} is not past {:.3}",
                    before.tombstone_fraction, self.params.compact_tombstone_fraction
                );
                return RepairReport {
                    action,
                    applied: false,
                    reason: Some(reason),
                    relinked: Relinked::default(),
                    after: before.clone(),
                    before,
                };
            }
            let new = self.with_visited(|v| g.without_tombstones(v));
            (before, new)
        };
        let mut new = new;
        let relinked = self.with_visited(|v| repair::relink(&mut new, usize::MAX, v));
        let problem = {
            let g = self.read();
            validate_replacement(&g, &new)
        };
        if let Some(reason) = problem {
            return RepairReport {
                action,
                applied: false,
                reason: Some(reason),
                relinked,
                after: before.clone(),
                before,
            };
        }
        *self.write() = new;
        let after = health::structure(&self.read());
        RepairReport {
            action,
            applied: true,
            reason: None,
            relinked,
            before,
            after,
        }
    }

    /// Fault hook for tests and chaos drills: damages the in-memory graph as `fault` says.
    pub fn inject(&self, fault: &GraphFault) -> FaultReport {
        let _w = lock(&self.writer);
        repair::inject(&mut self.write(), fault)
    }

    /// Fault hook for tests and chaos drills: damages the index's file on disk as `fault` says (the graph in memory
    /// is untouched; the next `check` finds the damage). Holds the writer lock, so no persist runs meanwhile.
    pub fn inject_file(&self, fault: &FileFault) -> Result<String, FileFaultError> {
        let _w = lock(&self.writer);
        file_fault::damage(&self.file_path(), fault)
    }

    /// Writes the graph as it is now, even when nothing was applied since the last write (after [`Self::inject`]:
    /// the damaged graph on disk with good checksums, as a fault in memory that reached the disk would be; a reopen
    /// loads it). Returns the applied LSN written.
    pub fn write_now(&self) -> Result<u64, DerivedError> {
        let _w = lock(&self.writer);
        self.persisted.store(0, Ordering::Release);
        self.persist_locked()
    }

    /// The stored (prepared) vector of a live document, if any (for tests and the daemon's document view).
    pub fn vector_of(&self, id: &str) -> Option<Vec<f32>> {
        let g = self.read();
        g.by_id.get(id).map(|&s| g.vector(s).to_vec())
    }

    /// Writes the file if anything was applied since the last write (or the file is gone). Caller holds `writer`.
    fn persist_locked(&self) -> Result<u64, DerivedError> {
        let path = self.file_path();
        let applied = self.applied.load(Ordering::Acquire);
        if applied == self.persisted.load(Ordering::Acquire)
            && applied > 0
            && path.is_file()
            && io::not_a_directory(&self.dir).is_none()
        {
            return Ok(applied);
        }
        let (bytes, lsn) = {
            let g = self.read();
            (file::encode(&g), g.applied_lsn)
        };
        let io_err = |context: &str, source| DerivedError::Io {
            index: NAME.into(),
            context: format!("{context} {}", path.display()),
            source,
        };
        // A link or a file at the directory is moved aside, never written through (the other index stays as it was).
        io::move_aside_non_directory(&self.dir).map_err(|e| {
            io_err(
                "moving aside what is not a directory at the directory of",
                e,
            )
        })?;
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("creating the directory of", e))?;
        io::write_file_atomic(&self.faults, &path, &bytes).map_err(|e| io_err("writing", e))?;
        self.persisted.store(lsn, Ordering::Release);
        Ok(lsn)
    }

    /// Applies one document's change to `g`; `Err(reason)` when its vector was refused (the document is then
    /// recorded without one, so the old vector is never returned).
    fn apply_one(
        g: &mut Graph,
        id: &Arc<str>,
        lsn: u64,
        doc: Option<&Document>,
        v: &mut Visited,
    ) -> Result<(), String> {
        let Some(doc) = doc else {
            g.remove(id);
            return Ok(());
        };
        let Some(vector) = &doc.vector else {
            g.remove(id);
            g.unindexed.insert(id.clone(), lsn);
            return Ok(());
        };
        match g.prepare(vector) {
            Ok(p) => {
                g.unindexed.remove(&**id);
                g.upsert(id.clone(), lsn, &p, v);
                Ok(())
            }
            Err(e) => {
                g.remove(id);
                g.unindexed.insert(id.clone(), lsn);
                Err(e.to_string())
            }
        }
    }

    /// The file's damage, if any (checksums, lengths; a file holding another LSN than persisted).
    fn file_damage(&self) -> Vec<String> {
        let path = self.file_path();
        let persisted = self.persisted.load(Ordering::Acquire);
        if let Some(what) = io::not_a_directory(&self.dir) {
            return vec![what];
        }
        match io::read_file(&self.faults, &path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if persisted > 0 {
                    vec![format!(
                        "{}: missing (persisted LSN {persisted})",
                        path.display()
                    )]
                } else {
                    Vec::new()
                }
            }
            Err(e) if io::is_resource(&e) => Vec::new(),
            Err(e) => vec![format!(
                "{}: cannot read: {}",
                path.display(),
                io::reason(&e)
            )],
            Ok(bytes) => match file::verify(&bytes) {
                Err(e) => vec![format!("{}: {e}", path.display())],
                Ok(lsn) if lsn != persisted => vec![format!(
                    "{}: holds LSN {lsn}, the index persisted {persisted}",
                    path.display()
                )],
                Ok(_) => Vec::new(),
            },
        }
    }
}

/// Why `new` cannot replace `old`, if it cannot: other documents or versions, broken invariants.
fn validate_replacement(old: &Graph, new: &Graph) -> Option<String> {
    let problems = new.validate(3);
    if !problems.is_empty() {
        return Some(format!(
            "new graph does not hold together: {}",
            problems.join("; ")
        ));
    }
    if new.by_id.len() != old.by_id.len() || new.unindexed != old.unindexed {
        return Some(format!(
            "new graph holds {} live documents, the old one {}",
            new.by_id.len(),
            old.by_id.len()
        ));
    }
    for (id, &s) in &old.by_id {
        match new.by_id.get(id) {
            Some(&t) if new.lsns[t as usize] == old.lsns[s as usize] => {}
            _ => {
                return Some(format!(
                    "document {id:?} is missing or of another version in the new graph"
                ));
            }
        }
    }
    let h = health::structure(new);
    if h.unreachable > 0 {
        return Some(format!(
            "{} live nodes unreachable in the new graph",
            h.unreachable
        ));
    }
    None
}

/// An index's documents against `truth`: its `count` when both are at the same LSN, and each sampled id's version
/// (`version`: the index's version LSN of an id, `None` when it holds none) through [`Truth::versions_agree`]; at most
/// [`DISAGREEMENTS_MAX`] named, the rest counted. Shared by every vector index's `check`.
pub(crate) fn agreement(
    truth: &Truth,
    count: u64,
    applied: u64,
    rebuilt: u64,
    version: impl Fn(&str) -> Option<u64>,
    damage: Vec<String>,
) -> Agreement {
    let mut disagreements = Vec::new();
    if applied == truth.lsn && count != truth.count {
        disagreements.push(format!(
            "count: table has {} documents at LSN {}, index {count}",
            truth.count, truth.lsn
        ));
    }
    let mut wrong = 0usize;
    for (id, vt) in &truth.sample {
        let vi = version(id.as_str());
        if !Truth::versions_agree(vi, applied, rebuilt, *vt, truth.lsn) {
            wrong += 1;
            if disagreements.len() < DISAGREEMENTS_MAX {
                disagreements.push(format!(
                    "id {id:?}: table has version {vt:?} at LSN {}, index {vi:?} at LSN {applied}",
                    truth.lsn
                ));
            }
        }
    }
    if wrong > 0 && disagreements.len() >= DISAGREEMENTS_MAX {
        disagreements.push(format!("{wrong} sampled ids disagree in all"));
    }
    Agreement {
        count,
        disagreements,
        damage,
    }
}

impl DerivedIndex for HnswIndex {
    fn name(&self) -> &str {
        NAME
    }

    fn collection(&self) -> &str {
        &self.collection
    }

    fn applied_lsn(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    fn persisted_lsn(&self) -> u64 {
        self.persisted.load(Ordering::Acquire)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), DerivedError> {
        let _w = lock(&self.writer);
        let mut refused: Vec<(String, u64, String)> = Vec::new();
        for chunk in changes.chunks(APPLY_CHUNK) {
            let mut g = self.write();
            self.with_visited(|v| {
                for ch in chunk {
                    // Already applied (a replay from an older LSN): skipped, so applying is idempotent.
                    if ch.lsn <= g.applied_lsn {
                        continue;
                    }
                    if *ch.collection != *self.collection {
                        refused.push((
                            ch.id.to_string(),
                            ch.lsn,
                            format!(
                                "change of collection {:?}, this index is {:?}'s",
                                ch.collection, self.collection
                            ),
                        ));
                    } else if let Err(reason) =
                        Self::apply_one(&mut g, &ch.id, ch.lsn, ch.doc.as_deref(), v)
                    {
                        refused.push((ch.id.to_string(), ch.lsn, reason));
                    }
                    g.applied_lsn = ch.lsn;
                }
            });
            self.applied.store(g.applied_lsn, Ordering::Release);
        }
        match refused.len() {
            0 => Ok(()),
            n => {
                let (id, lsn, mut reason) = refused.swap_remove(0);
                if n > 1 {
                    reason.push_str(&format!(" (and {} more documents refused)", n - 1));
                }
                Err(DerivedError::Refused {
                    index: NAME.into(),
                    id,
                    lsn,
                    reason,
                })
            }
        }
    }

    fn persist(&self) -> Result<u64, DerivedError> {
        let _w = lock(&self.writer);
        self.persist_locked()
    }

    fn check(&self, truth: &Truth) -> Result<Agreement, DerivedError> {
        let _w = lock(&self.writer);
        let mut damage = self.file_damage();
        let g = self.read();
        damage.extend(g.validate(8).into_iter().map(|p| format!("in memory: {p}")));
        Ok(agreement(
            truth,
            g.n_docs() as u64,
            g.applied_lsn,
            g.rebuilt_lsn,
            |id| {
                g.by_id
                    .get(id)
                    .map(|&s| g.lsns[s as usize])
                    .or_else(|| g.unindexed.get(id).copied())
            },
            damage,
        ))
    }

    fn rebuild(
        &self,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<(), DerivedError> {
        let _w = lock(&self.writer);
        let mut g = Graph::new(self.params.clone());
        self.with_visited(|v| {
            for (id, doc) in docs {
                // A refused vector is recorded without one (as in apply); the rebuild itself goes on.
                let _refused = Self::apply_one(&mut g, &id, lsn, Some(&doc), v);
            }
            repair::relink(&mut g, usize::MAX, v);
        });
        g.applied_lsn = lsn;
        g.rebuilt_lsn = lsn;
        *self.write() = g;
        self.applied.store(lsn, Ordering::Release);
        // A graph built whole and re-linked is settled: the next structure measurement judges its reachability
        // (a rebuild that leaves nodes unreachable must not pass its validation as "not settled yet").
        self.measured_lsn.store(lsn, Ordering::Release);
        // Whatever was persisted before describes the old graph.
        self.persisted.store(0, Ordering::Release);
        self.persist_locked().map(|_| ())
    }

    fn structure(&self) -> Option<Structure> {
        let g = self.read();
        let mut h = health::structure(&g);
        let (recall, n) =
            self.with_visited(|v| health::sampled_recall(&g, &HealthOptions::default(), v));
        h.recall_at_10 = recall;
        h.recall_queries = n;
        let settled = self.measured_lsn.swap(g.applied_lsn, Ordering::AcqRel) == g.applied_lsn;
        Some(structure_of(&h, &self.params, settled))
    }

    fn repair_structure(&self, code: &str) -> Result<String, DerivedError> {
        let report = match code {
            ENTRY_POINT | UNREACHABLE_NODES => self.repair_connectivity(RELINK_BUDGET),
            TOMBSTONES => self.compact(),
            RECALL_BELOW_FLOOR => self.rebuild_graph(),
            other => {
                return Err(DerivedError::Other {
                    index: NAME.into(),
                    reason: format!(
                        "no structural repair for {other:?} (known: {ENTRY_POINT}, {UNREACHABLE_NODES}, \
                         {TOMBSTONES}, {RECALL_BELOW_FLOOR})"
                    ),
                });
            }
        };
        if report.applied {
            // The graph changed without a new LSN: the file must be written again.
            let _w = lock(&self.writer);
            self.persisted.store(0, Ordering::Release);
            self.persist_locked()?;
        }
        let (b, a) = (&report.before, &report.after);
        let done = format!(
            "{}: {} re-linked{}; reachable {}/{} → {}/{}, orphans {} → {}, tombstones {} → {}",
            report.action,
            report.relinked.relinked,
            if report.relinked.entry_reset {
                ", entry point reset"
            } else {
                ""
            },
            b.reachable,
            b.live,
            a.reachable,
            a.live,
            b.orphans,
            a.orphans,
            b.tombstones,
            a.tombstones
        );
        match report.reason {
            Some(reason) if !report.applied => Err(DerivedError::Other {
                index: NAME.into(),
                reason: format!("{done}: {reason}"),
            }),
            _ => Ok(done),
        }
    }
}

/// Unreachable live nodes tolerated before `unreachable_nodes` is a problem, as a fraction of the live ones.
pub const UNREACHABLE_FRACTION_MAX: f64 = 0.01;

/// The figures and problems the engine sees of a graph's health `h` (see [`DerivedIndex::structure`]).
///
/// Reachability is a problem only when the graph is `settled` (no change applied since the previous measurement)
/// and more than [`UNREACHABLE_FRACTION_MAX`] of the live nodes are unreachable. Insertion itself can disconnect
/// nodes on hard data (the selection heuristic prunes links; see `graph::Graph::select`); judged while writes go on,
/// every deep run would open an incident that the next writes reopen. Measured once the writes pause, a re-link
/// holds until they resume.
fn structure_of(h: &HnswHealth, params: &HnswParams, settled: bool) -> Structure {
    let compact_fraction = params.compact_tombstone_fraction;
    let mut s = Structure::default();
    let mut figures = vec![
        ("nodes", h.nodes as f64),
        ("live", h.live as f64),
        ("tombstones", h.tombstones as f64),
        ("tombstone_fraction", h.tombstone_fraction),
        ("reachable_fraction", h.reachable_fraction),
        ("unreachable", h.unreachable as f64),
        ("orphans", h.orphans as f64),
        ("entry_live", f64::from(u8::from(h.entry_live))),
        ("mean_degree", h.mean_degree),
        ("memory_bytes", h.memory_bytes as f64),
        ("scan_ms", h.scan_ms),
    ];
    if let Some(r) = h.recall_at_10 {
        figures.push(("recall_at_10", r));
    }
    s.figures = figures
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if h.live > 0 && (!h.entry_live || h.entry_level != h.top_live_level) {
        s.problems.push(StructureProblem {
            code: ENTRY_POINT.into(),
            summary: format!(
                "the HNSW entry point is {} on level {} while live nodes reach level {}: searches start low",
                if h.entry_live { "live" } else { "a tombstone" },
                h.entry_level,
                h.top_live_level
            ),
        });
    }
    if settled && 1.0 - h.reachable_fraction > UNREACHABLE_FRACTION_MAX {
        s.problems.push(StructureProblem {
            code: UNREACHABLE_NODES.into(),
            summary: format!(
                "{} of {} live HNSW nodes are unreachable from the entry point (reachable fraction {:.4}, tolerated \
                 {:.2}; {} with no incoming layer-0 link): searches cannot return them",
                h.unreachable,
                h.live,
                h.reachable_fraction,
                1.0 - UNREACHABLE_FRACTION_MAX,
                h.orphans
            ),
        });
    }
    if settled
        && let Some(r) = h.recall_at_10
        && r < params.recall_floor
    {
        s.problems.push(StructureProblem {
            code: RECALL_BELOW_FLOOR.into(),
            summary: format!(
                "sampled recall@10 {r:.3} over {} queries is below the floor {:.3}: searches miss near vectors",
                h.recall_queries, params.recall_floor
            ),
        });
    }
    if h.compaction_due {
        s.problems.push(StructureProblem {
            code: TOMBSTONES.into(),
            summary: format!(
                "{} of {} HNSW nodes are tombstones ({:.3}, past {compact_fraction:.3}, and at least \
                 {COMPACT_TOMBSTONES_MIN}): memory and search time spent on deleted vectors",
                h.tombstones, h.nodes, h.tombstone_fraction
            ),
        });
    }
    s
}
