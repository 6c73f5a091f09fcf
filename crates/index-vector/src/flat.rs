//! [`FlatIndex`]: exact vector search over one contiguous `f32` matrix — the reference every approximate index is
//! compared against, and the index the daemon serves `POST /v1/search` from.
//!
//! In memory: the prepared vectors (unit length for cosine) one slot after another, each slot's id and version LSN,
//! a tombstone per slot (a delete or an update kills the old slot at once; a new version takes a new slot), the live
//! slot of each id, and the documents without a vector (`unindexed`, so their versions can be checked too). When
//! tombstones outnumber live slots (and are at least [`COMPACT_DEAD_MIN`]) the matrix is compacted in place.
//!
//! On disk: `idx/<collection>/flat/flat.bin`, written whole through `store::io::write_file_atomic` (the store's
//! fault hooks reach it):
//!
//! ```text
//! header   magic "MEDFLAT\0" (8) | version u32 (= 1) | crc32c u32 of the 12 bytes before it
//! section  kind u32 | len u64 | crc32c u32 (over kind, len and payload) | payload, in this order:
//!   1 meta       applied_lsn u64 | rebuilt_lsn u64 | metric u8 | dim u32 | slots u32
//!   2 ids        per slot: lsn u64 | id_len u32 | id bytes (UTF-8)
//!   3 vectors    slots × dim × f32
//!   4 tombstones slots × u8 (0 live, 1 tombstone)
//!   5 unindexed  count u32 | per document: lsn u64 | id_len u32 | id bytes
//!   6 end        total bytes before this section u64 | sections before it u32
//! ```
//!
//! Invariants: a file is used only when every checksum and length verifies and its metric is the configured one;
//! otherwise the index opens empty (applied LSN 0) and the driver rebuilds it. A file this index persisted that is
//! gone (someone deleted `idx/`) makes the next `persist` report [`DerivedError::Damaged`]: deleting the directory
//! forces a rebuild. Lock order: `writer`, then `inner`; searches take only `inner`'s read lock.

use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use store::codec::Document;
use store::derived::{Agreement, Change, DerivedError, DerivedIndex, Truth, index_dir_rel};
use store::io::{self, IoFaults};

use crate::distance::{Metric, dot};
use crate::file::{self, FileError, Format, Reader};
use crate::hnsw::{Hit, OpenError, OpenReport, SearchError, versions_agree};
use crate::params::{DIM_MAX, K_MAX, NODES_MAX};

/// The index's name: its directory is `idx/<collection>/flat/`.
pub const NAME: &str = "flat";
/// The file's name inside the index directory.
pub const FILE_NAME: &str = "flat.bin";
/// Tombstones kept at least before a compaction is considered.
pub const COMPACT_DEAD_MIN: usize = 1_024;
/// Ids compared by name in a disagreement list before the rest are counted.
const DISAGREEMENTS_MAX: usize = 32;

const META: u32 = 1;
const IDS: u32 = 2;
const VECTORS: u32 = 3;
const TOMBSTONES: u32 = 4;
const UNINDEXED: u32 = 5;
const END: u32 = 6;

fn section_name(kind: u32) -> &'static str {
    match kind {
        META => "meta",
        IDS => "ids",
        VECTORS => "vectors",
        TOMBSTONES => "tombstones",
        UNINDEXED => "unindexed",
        END => "end",
        _ => "unknown",
    }
}

const FLAT: Format = Format {
    what: "flat",
    magic: b"MEDFLAT\0",
    version: 1,
    end: END,
    name: section_name,
};

/// The matrix and what describes each slot.
#[derive(Clone, Debug, Default)]
struct Flat {
    metric: Metric,
    /// 0 until the first vector.
    dim: usize,
    vectors: Vec<f32>,
    ids: Vec<Arc<str>>,
    lsns: Vec<u64>,
    dead: Vec<bool>,
    n_dead: usize,
    by_id: HashMap<Arc<str>, u32>,
    unindexed: HashMap<Arc<str>, u64>,
    applied_lsn: u64,
    rebuilt_lsn: u64,
}

impl Flat {
    fn new(metric: Metric) -> Flat {
        Flat {
            metric,
            ..Flat::default()
        }
    }

    fn n_slots(&self) -> usize {
        self.ids.len()
    }

    fn remove(&mut self, id: &str) {
        self.unindexed.remove(id);
        if let Some(s) = self.by_id.remove(id) {
            self.dead[s as usize] = true;
            self.n_dead += 1;
        }
    }

    /// Applies one document's change; `Err(reason)` when its vector was refused (recorded without one).
    fn apply_one(&mut self, id: &Arc<str>, lsn: u64, doc: Option<&Document>) -> Result<(), String> {
        self.remove(id);
        let Some(doc) = doc else { return Ok(()) };
        let Some(v) = &doc.vector else {
            self.unindexed.insert(id.clone(), lsn);
            return Ok(());
        };
        if self.n_slots() >= NODES_MAX {
            self.unindexed.insert(id.clone(), lsn);
            return Err(format!("the index holds {NODES_MAX} slots, its bound"));
        }
        match self.metric.prepare(v, self.dim) {
            Ok(p) => {
                self.dim = p.len();
                let slot = self.n_slots() as u32;
                self.vectors.extend_from_slice(&p);
                self.ids.push(id.clone());
                self.lsns.push(lsn);
                self.dead.push(false);
                self.by_id.insert(id.clone(), slot);
                Ok(())
            }
            Err(e) => {
                self.unindexed.insert(id.clone(), lsn);
                Err(e.to_string())
            }
        }
    }

    /// Drops the tombstones when they outnumber the live slots.
    fn compact_if_due(&mut self) {
        if self.n_dead < COMPACT_DEAD_MIN || self.n_dead <= self.by_id.len() {
            return;
        }
        let mut out = Flat {
            metric: self.metric,
            dim: self.dim,
            unindexed: std::mem::take(&mut self.unindexed),
            applied_lsn: self.applied_lsn,
            rebuilt_lsn: self.rebuilt_lsn,
            ..Flat::default()
        };
        for s in 0..self.n_slots() {
            if self.dead[s] {
                continue;
            }
            let slot = out.n_slots() as u32;
            out.vectors
                .extend_from_slice(&self.vectors[s * self.dim..(s + 1) * self.dim]);
            out.ids.push(self.ids[s].clone());
            out.lsns.push(self.lsns[s]);
            out.dead.push(false);
            out.by_id.insert(self.ids[s].clone(), slot);
        }
        *self = out;
    }

    /// The exact `k` nearest live slots to the prepared `q`: `(distance, slot)`, nearest first, ties by id.
    fn nearest(&self, q: &[f32], k: usize) -> Vec<(f32, u32)> {
        /// Max-heap entry: the worst kept hit on top.
        struct Worst<'a>(f32, u32, &'a str);
        impl PartialEq for Worst<'_> {
            fn eq(&self, o: &Self) -> bool {
                self.cmp(o) == std::cmp::Ordering::Equal
            }
        }
        impl Eq for Worst<'_> {}
        impl PartialOrd for Worst<'_> {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Worst<'_> {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.0.total_cmp(&o.0).then_with(|| self.2.cmp(o.2))
            }
        }
        let mut heap: BinaryHeap<Worst<'_>> = BinaryHeap::with_capacity(k + 1);
        let dim = self.dim;
        for (s, v) in self.vectors.chunks_exact(dim).enumerate() {
            if self.dead[s] {
                continue;
            }
            let d = match self.metric {
                Metric::Cosine => 1.0 - dot(q, v),
                m => m.distance(q, v),
            };
            if !d.is_finite() {
                continue;
            }
            if heap.len() < k {
                heap.push(Worst(d, s as u32, &self.ids[s]));
            } else if let Some(top) = heap.peek()
                && (d < top.0 || (d == top.0 && *self.ids[s] < *top.2))
            {
                heap.pop();
                heap.push(Worst(d, s as u32, &self.ids[s]));
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|w| (w.0, w.1))
            .collect()
    }

    fn encode(&self) -> Vec<u8> {
        let n = self.n_slots();
        let mut out = Vec::with_capacity(64 + self.vectors.len() * 4 + n * 40);
        file::header(&mut out, &FLAT);
        file::section(&mut out, META, |b| {
            b.extend_from_slice(&self.applied_lsn.to_le_bytes());
            b.extend_from_slice(&self.rebuilt_lsn.to_le_bytes());
            b.push(metric_code(self.metric));
            b.extend_from_slice(&(self.dim as u32).to_le_bytes());
            b.extend_from_slice(&(n as u32).to_le_bytes());
        });
        file::section(&mut out, IDS, |b| {
            for (id, lsn) in self.ids.iter().zip(&self.lsns) {
                put_id(b, id, *lsn);
            }
        });
        file::section(&mut out, VECTORS, |b| {
            for x in &self.vectors {
                b.extend_from_slice(&x.to_le_bytes());
            }
        });
        file::section(&mut out, TOMBSTONES, |b| {
            b.extend(self.dead.iter().map(|d| u8::from(*d)));
        });
        file::section(&mut out, UNINDEXED, |b| {
            let mut docs: Vec<(&Arc<str>, &u64)> = self.unindexed.iter().collect();
            docs.sort();
            b.extend_from_slice(&(docs.len() as u32).to_le_bytes());
            for (id, lsn) in docs {
                put_id(b, id, *lsn);
            }
        });
        file::end_section(&mut out, &FLAT);
        out
    }

    fn decode(bytes: &[u8], metric: Metric) -> Result<Flat, FileError> {
        let s = file::sections_of(bytes, &FLAT)?;
        let payload = |kind: u32| s[(kind - 1) as usize];
        let (_, at, meta) = payload(META);
        let mut r = Reader::new(meta, at);
        let applied_lsn = r.u64()?;
        let rebuilt_lsn = r.u64()?;
        let code = r.u8()?;
        let dim = r.u32()? as usize;
        let n = r.u32()? as usize;
        r.done("meta")?;
        if code != metric_code(metric) {
            return file::err(
                at,
                format!(
                    "built with metric code {code}, configured {}",
                    metric.as_str()
                ),
            );
        }
        if dim > DIM_MAX || n > NODES_MAX || (dim == 0 && n > 0) {
            return file::err(
                at,
                format!("dimension {dim} with {n} slots is out of range"),
            );
        }
        let (_, at, ids) = payload(IDS);
        let mut r = Reader::new(ids, at);
        let mut f = Flat {
            metric,
            dim,
            applied_lsn,
            rebuilt_lsn,
            ..Flat::default()
        };
        for _ in 0..n {
            let (id, lsn) = r.id()?;
            f.ids.push(id);
            f.lsns.push(lsn);
        }
        r.done("ids")?;
        let (_, at, vectors) = payload(VECTORS);
        if vectors.len() != n * dim * 4 {
            return file::err(
                at,
                format!("vectors: {} bytes for {n} × {dim} floats", vectors.len()),
            );
        }
        f.vectors = vectors
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (_, at, dead) = payload(TOMBSTONES);
        if dead.len() != n || dead.iter().any(|d| *d > 1) {
            return file::err(at, "tombstones do not match the slots");
        }
        for (s, d) in dead.iter().enumerate() {
            if *d == 1 {
                f.dead.push(true);
                f.n_dead += 1;
            } else {
                f.dead.push(false);
                if f.by_id.insert(f.ids[s].clone(), s as u32).is_some() {
                    return file::err(at, format!("id {:?} live in two slots", f.ids[s]));
                }
            }
        }
        let (_, at, unindexed) = payload(UNINDEXED);
        let mut r = Reader::new(unindexed, at);
        let count = r.u32()?;
        for _ in 0..count {
            let (id, lsn) = r.id()?;
            if f.by_id.contains_key(&id) {
                return file::err(at, format!("id {id:?} both indexed and unindexed"));
            }
            f.unindexed.insert(id, lsn);
        }
        r.done("unindexed")?;
        Ok(f)
    }
}

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 1,
        Metric::Dot => 2,
        Metric::L2 => 3,
    }
}

fn put_id(b: &mut Vec<u8>, id: &str, lsn: u64) {
    b.extend_from_slice(&lsn.to_le_bytes());
    b.extend_from_slice(&(id.len() as u32).to_le_bytes());
    b.extend_from_slice(id.as_bytes());
}

/// The applied LSN a `flat.bin` holds, after verifying every checksum and length.
fn verify(bytes: &[u8]) -> Result<u64, FileError> {
    let s = file::sections_of(bytes, &FLAT)?;
    let (_, at, meta) = s[0];
    Reader::new(meta, at).u64()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One collection's exact vector index. See the module doc.
pub struct FlatIndex {
    collection: String,
    dir: PathBuf,
    faults: Arc<IoFaults>,
    metric: Metric,
    inner: RwLock<Flat>,
    writer: Mutex<()>,
    applied: AtomicU64,
    persisted: AtomicU64,
    opened: OpenReport,
}

impl std::fmt::Debug for FlatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex")
            .field("collection", &self.collection)
            .field("dir", &self.dir)
            .field("applied", &self.applied.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl FlatIndex {
    /// Opens the index of `collection` in the data directory `data_dir` (its file under `idx/<collection>/flat/`).
    /// A missing, damaged or foreign file gives an empty index with applied LSN 0 ([`FlatIndex::open_report`] says
    /// why). I/O goes through `faults` (the store's hooks).
    pub fn open(
        data_dir: &Path,
        collection: &str,
        metric: Metric,
        faults: Arc<IoFaults>,
    ) -> Result<FlatIndex, OpenError> {
        if collection.is_empty()
            || collection.len() > 255
            || collection.contains(['/', '\\', '\0'])
            || collection == "."
            || collection == ".."
        {
            return Err(OpenError::Collection(collection.to_string()));
        }
        let dir = data_dir.join(index_dir_rel(collection, NAME));
        let path = dir.join(FILE_NAME);
        let (flat, reason) = match io::read_file(&faults, &path) {
            Ok(bytes) => match Flat::decode(&bytes, metric) {
                Ok(f) => (f, None),
                Err(e) => (
                    Flat::new(metric),
                    Some(format!("{}: damaged: {e}", path.display())),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                Flat::new(metric),
                Some(format!("{}: no index file", path.display())),
            ),
            Err(e) => (
                Flat::new(metric),
                Some(format!(
                    "{}: cannot read: {}",
                    path.display(),
                    io::reason(&e)
                )),
            ),
        };
        let applied = flat.applied_lsn;
        Ok(FlatIndex {
            collection: collection.to_string(),
            opened: OpenReport {
                path,
                loaded: reason.is_none(),
                reason,
                applied_lsn: applied,
            },
            dir,
            faults,
            metric,
            inner: RwLock::new(flat),
            writer: Mutex::new(()),
            applied: AtomicU64::new(applied),
            persisted: AtomicU64::new(applied),
        })
    }

    /// How the file was found on open.
    pub fn open_report(&self) -> &OpenReport {
        &self.opened
    }

    /// The index file's path.
    pub fn file_path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether no vector is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dimension (0 before the first vector).
    pub fn dim(&self) -> usize {
        self.read().dim
    }

    fn read(&self) -> RwLockReadGuard<'_, Flat> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Flat> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exact `k` nearest live documents to `query`, nearest first (ties by id). An empty index answers nothing;
    /// a query of another dimension than the stored vectors is refused.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, SearchError> {
        if !(1..=K_MAX).contains(&k) {
            return Err(SearchError::K { k, max: K_MAX });
        }
        let f = self.read();
        if f.dim == 0 {
            return Ok(Vec::new());
        }
        let q = self.metric.prepare(query, f.dim)?;
        Ok(f.nearest(&q, k)
            .into_iter()
            .map(|(d, s)| Hit {
                id: f.ids[s as usize].clone(),
                lsn: f.lsns[s as usize],
                distance: self.metric.reported(d),
            })
            .collect())
    }

    fn persist_locked(&self) -> Result<u64, DerivedError> {
        let path = self.file_path();
        let applied = self.applied.load(Ordering::Acquire);
        let persisted = self.persisted.load(Ordering::Acquire);
        let exists = path.is_file();
        if persisted > 0 && !exists {
            return Err(DerivedError::Damaged {
                index: NAME.into(),
                reason: format!("{} was removed (persisted LSN {persisted})", path.display()),
            });
        }
        if applied == persisted && exists {
            return Ok(applied);
        }
        let (bytes, lsn) = {
            let f = self.read();
            (f.encode(), f.applied_lsn)
        };
        let io_err = |context: &str, source| DerivedError::Io {
            index: NAME.into(),
            context: format!("{context} {}", path.display()),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("creating the directory of", e))?;
        io::write_file_atomic(&self.faults, &path, &bytes).map_err(|e| io_err("writing", e))?;
        self.persisted.store(lsn, Ordering::Release);
        Ok(lsn)
    }

    /// The file's damage, if any (missing after a persist, checksums, lengths, another LSN than persisted).
    fn file_damage(&self) -> Vec<String> {
        let path = self.file_path();
        let persisted = self.persisted.load(Ordering::Acquire);
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
            Ok(bytes) => match verify(&bytes) {
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

impl DerivedIndex for FlatIndex {
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
        let mut f = self.write();
        for ch in changes {
            // Already applied (a replay from an older LSN): skipped, so applying is idempotent.
            if ch.lsn <= f.applied_lsn {
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
            } else if let Err(reason) = f.apply_one(&ch.id, ch.lsn, ch.doc.as_deref()) {
                refused.push((ch.id.to_string(), ch.lsn, reason));
            }
            f.applied_lsn = ch.lsn;
        }
        f.compact_if_due();
        self.applied.store(f.applied_lsn, Ordering::Release);
        drop(f);
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
        let damage = self.file_damage();
        let f = self.read();
        let count = (f.by_id.len() + f.unindexed.len()) as u64;
        let mut disagreements = Vec::new();
        if f.applied_lsn == truth.lsn && count != truth.count {
            disagreements.push(format!(
                "count: table has {} documents at LSN {}, index {count}",
                truth.count, truth.lsn
            ));
        }
        let mut wrong = 0usize;
        for (id, vt) in &truth.sample {
            let vi = f
                .by_id
                .get(id.as_str())
                .map(|&s| f.lsns[s as usize])
                .or_else(|| f.unindexed.get(id.as_str()).copied());
            if !versions_agree(vi, f.applied_lsn, f.rebuilt_lsn, *vt, truth.lsn) {
                wrong += 1;
                if disagreements.len() < DISAGREEMENTS_MAX {
                    disagreements.push(format!(
                        "id {id:?}: table has version {vt:?} at LSN {}, index {vi:?} at LSN {}",
                        truth.lsn, f.applied_lsn
                    ));
                }
            }
        }
        if wrong > 0 && disagreements.len() >= DISAGREEMENTS_MAX {
            disagreements.push(format!("{wrong} sampled ids disagree in all"));
        }
        Ok(Agreement {
            count,
            disagreements,
            damage,
        })
    }

    fn rebuild(
        &self,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<(), DerivedError> {
        let _w = lock(&self.writer);
        // Built beside the served one, swapped in whole.
        let mut f = Flat::new(self.metric);
        for (id, doc) in docs {
            // A refused vector is recorded without one (as in apply); the rebuild itself goes on.
            let _refused = f.apply_one(&id, lsn, Some(&doc));
        }
        f.applied_lsn = lsn;
        f.rebuilt_lsn = lsn;
        *self.write() = f;
        self.applied.store(lsn, Ordering::Release);
        // Whatever was persisted before describes the old matrix.
        self.persisted.store(0, Ordering::Release);
        self.persist_locked().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(lsn: u64, id: &str, v: Option<Vec<f32>>) -> Change {
        Change {
            lsn,
            collection: Arc::from("default"),
            id: Arc::from(id),
            doc: v.map(|v| {
                Arc::new(Document {
                    text: String::new(),
                    vector: Some(v),
                    meta: None,
                })
            }),
        }
    }

    #[test]
    fn search_is_exact_and_a_delete_or_update_hides_the_old_vector() {
        let dir = tempfile::tempdir().unwrap();
        let idx = FlatIndex::open(dir.path(), "default", Metric::Cosine, Arc::default()).unwrap();
        idx.apply(&[
            change(1, "a", Some(vec![1.0, 0.0])),
            change(2, "b", Some(vec![0.0, 1.0])),
            change(3, "c", Some(vec![1.0, 1.0])),
        ])
        .unwrap();
        let ids = |hits: Vec<Hit>| hits.iter().map(|h| h.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(idx.search(&[1.0, 0.1], 2).unwrap()), ["a", "c"]);
        idx.apply(&[change(4, "a", None), change(5, "c", Some(vec![0.0, -1.0]))])
            .unwrap();
        assert_eq!(ids(idx.search(&[1.0, 0.1], 3).unwrap()), ["b", "c"]);
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn persist_and_reopen_keep_everything_and_a_flipped_byte_opens_empty() {
        let dir = tempfile::tempdir().unwrap();
        let idx = FlatIndex::open(dir.path(), "default", Metric::Cosine, Arc::default()).unwrap();
        idx.apply(&[change(1, "a", Some(vec![1.0, 0.0])), change(2, "b", None)])
            .unwrap();
        assert_eq!(idx.persist().unwrap(), 2);
        let again = FlatIndex::open(dir.path(), "default", Metric::Cosine, Arc::default()).unwrap();
        assert!(again.open_report().loaded);
        assert_eq!(again.applied_lsn(), 2);
        assert_eq!(again.search(&[1.0, 0.0], 1).unwrap()[0].id.as_ref(), "a");
        let path = idx.file_path();
        let mut b = std::fs::read(&path).unwrap();
        let n = b.len();
        b[n / 2] ^= 0x40;
        std::fs::write(&path, b).unwrap();
        let damaged =
            FlatIndex::open(dir.path(), "default", Metric::Cosine, Arc::default()).unwrap();
        assert!(!damaged.open_report().loaded);
        assert_eq!(damaged.applied_lsn(), 0);
        let truth = Truth {
            lsn: 2,
            count: 2,
            sample: vec![("a".into(), Some(1))],
        };
        assert!(!idx.check(&truth).unwrap().damage.is_empty());
    }

    #[test]
    fn a_removed_file_makes_the_next_persist_report_damage() {
        let dir = tempfile::tempdir().unwrap();
        let idx = FlatIndex::open(dir.path(), "default", Metric::Cosine, Arc::default()).unwrap();
        idx.apply(&[change(1, "a", Some(vec![1.0, 0.0]))]).unwrap();
        idx.persist().unwrap();
        std::fs::remove_dir_all(dir.path().join("idx")).unwrap();
        idx.apply(&[change(2, "b", Some(vec![0.0, 1.0]))]).unwrap();
        assert!(matches!(idx.persist(), Err(DerivedError::Damaged { .. })));
    }

    #[test]
    fn tombstones_are_compacted_once_they_outnumber_live_slots() {
        let dir = tempfile::tempdir().unwrap();
        let idx = FlatIndex::open(dir.path(), "default", Metric::L2, Arc::default()).unwrap();
        let n = COMPACT_DEAD_MIN as u64 + 10;
        let puts: Vec<Change> = (1..=n)
            .map(|i| change(i, &format!("d{i}"), Some(vec![i as f32, 0.0])))
            .collect();
        idx.apply(&puts).unwrap();
        let dels: Vec<Change> = (1..n)
            .map(|i| change(n + i, &format!("d{i}"), None))
            .collect();
        idx.apply(&dels).unwrap();
        assert_eq!(idx.read().n_slots(), 1);
        assert_eq!(idx.search(&[0.0, 0.0], 5).unwrap().len(), 1);
    }
}
