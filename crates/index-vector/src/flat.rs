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
use store::derived::{Agreement, Change, DerivedError, DerivedIndex, Truth};
use store::io::IoFaults;

use crate::distance::{Metric, dot};
use crate::file::{self, FileError, Format, Reader, Section};
use crate::hnsw::{Hit, OpenError, OpenReport, SearchError, agreement};
use crate::params::{DIM_MAX, K_MAX, NODES_MAX};
use crate::stored::IndexFile;

/// The index's name: its directory is `idx/<collection>/flat/`.
pub const NAME: &str = "flat";
/// The file's name inside the index directory.
pub const FILE_NAME: &str = "flat.bin";
/// Tombstones kept at least before a compaction is considered.
pub const COMPACT_DEAD_MIN: usize = 1_024;

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

/// The matrix and what describes each slot (shared with the IVF index, which keeps its vectors the same way).
#[derive(Clone, Debug, Default)]
pub(crate) struct Flat {
    pub(crate) metric: Metric,
    /// 0 until the first vector.
    pub(crate) dim: usize,
    pub(crate) vectors: Vec<f32>,
    pub(crate) ids: Vec<Arc<str>>,
    pub(crate) lsns: Vec<u64>,
    pub(crate) dead: Vec<bool>,
    pub(crate) n_dead: usize,
    pub(crate) by_id: HashMap<Arc<str>, u32>,
    pub(crate) unindexed: HashMap<Arc<str>, u64>,
    pub(crate) applied_lsn: u64,
    pub(crate) rebuilt_lsn: u64,
}

impl Flat {
    pub(crate) fn new(metric: Metric) -> Flat {
        Flat {
            metric,
            ..Flat::default()
        }
    }

    pub(crate) fn n_slots(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn vector(&self, s: u32) -> &[f32] {
        let a = s as usize * self.dim;
        &self.vectors[a..a + self.dim]
    }

    /// Live slots, in slot order.
    pub(crate) fn live_slots(&self) -> Vec<u32> {
        (0..self.n_slots() as u32)
            .filter(|&s| !self.dead[s as usize])
            .collect()
    }

    fn remove(&mut self, id: &str) {
        self.unindexed.remove(id);
        if let Some(s) = self.by_id.remove(id) {
            self.dead[s as usize] = true;
            self.n_dead += 1;
        }
    }

    /// Applies one document's change; `Err(reason)` when its vector was refused (recorded without one).
    pub(crate) fn apply_one(
        &mut self,
        id: &Arc<str>,
        lsn: u64,
        doc: Option<&Document>,
    ) -> Result<(), String> {
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

    /// Whether the tombstones outnumber the live slots (and are at least [`COMPACT_DEAD_MIN`]).
    pub(crate) fn compaction_due(&self) -> bool {
        self.n_dead >= COMPACT_DEAD_MIN && self.n_dead > self.by_id.len()
    }

    /// Drops the tombstones when they outnumber the live slots; returns each kept slot's old slot (`None`: nothing
    /// done).
    pub(crate) fn compact_if_due(&mut self) -> Option<Vec<u32>> {
        if !self.compaction_due() {
            return None;
        }
        let mut out = Flat {
            metric: self.metric,
            dim: self.dim,
            unindexed: std::mem::take(&mut self.unindexed),
            applied_lsn: self.applied_lsn,
            rebuilt_lsn: self.rebuilt_lsn,
            ..Flat::default()
        };
        let kept = self.live_slots();
        for &s in &kept {
            let slot = out.n_slots() as u32;
            out.vectors.extend_from_slice(self.vector(s));
            out.ids.push(self.ids[s as usize].clone());
            out.lsns.push(self.lsns[s as usize]);
            out.dead.push(false);
            out.by_id.insert(self.ids[s as usize].clone(), slot);
        }
        *self = out;
        Some(kept)
    }

    /// Applies `changes` of `collection` (those at or below the applied LSN skipped); returns the refused ones
    /// (id, LSN, why).
    pub(crate) fn apply_changes(
        &mut self,
        collection: &str,
        changes: &[Change],
    ) -> Vec<(String, u64, String)> {
        let mut refused = Vec::new();
        for ch in changes {
            // Already applied (a replay from an older LSN): skipped, so applying is idempotent.
            if ch.lsn <= self.applied_lsn {
                continue;
            }
            if *ch.collection != *collection {
                refused.push((
                    ch.id.to_string(),
                    ch.lsn,
                    format!(
                        "change of collection {:?}, this index is {collection:?}'s",
                        ch.collection
                    ),
                ));
            } else if let Err(reason) = self.apply_one(&ch.id, ch.lsn, ch.doc.as_deref()) {
                refused.push((ch.id.to_string(), ch.lsn, reason));
            }
            self.applied_lsn = ch.lsn;
        }
        refused
    }

    /// Every document of `docs` indexed at `lsn` (a rebuild).
    pub(crate) fn rebuilt(
        metric: Metric,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Flat {
        let mut f = Flat::new(metric);
        for (id, doc) in docs {
            // A refused vector is recorded without one (as in apply); the rebuild itself goes on.
            let _refused = f.apply_one(&id, lsn, Some(&doc));
        }
        f.applied_lsn = lsn;
        f.rebuilt_lsn = lsn;
        f
    }

    /// The documents held against `truth` (count at the same LSN, sampled versions), with the file's `damage`.
    pub(crate) fn agreement(&self, truth: &Truth, damage: Vec<String>) -> Agreement {
        agreement(
            truth,
            (self.by_id.len() + self.unindexed.len()) as u64,
            self.applied_lsn,
            self.rebuilt_lsn,
            |id| {
                self.by_id
                    .get(id)
                    .map(|&s| self.lsns[s as usize])
                    .or_else(|| self.unindexed.get(id).copied())
            },
            damage,
        )
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
        let mut out = Vec::with_capacity(64 + self.vectors.len() * 4 + self.n_slots() * 40);
        file::header(&mut out, &FLAT);
        self.encode_sections(&mut out);
        file::end_section(&mut out, &FLAT);
        out
    }

    /// Sections 1 (meta) to 5 (unindexed), shared by `flat.bin` and `ivf.bin`.
    pub(crate) fn encode_sections(&self, out: &mut Vec<u8>) {
        let n = self.n_slots();
        file::section(out, META, |b| {
            b.extend_from_slice(&self.applied_lsn.to_le_bytes());
            b.extend_from_slice(&self.rebuilt_lsn.to_le_bytes());
            b.push(self.metric.code());
            b.extend_from_slice(&(self.dim as u32).to_le_bytes());
            b.extend_from_slice(&(n as u32).to_le_bytes());
        });
        file::section(out, IDS, |b| {
            for (id, lsn) in self.ids.iter().zip(&self.lsns) {
                put_id(b, id, *lsn);
            }
        });
        file::section(out, VECTORS, |b| {
            for x in &self.vectors {
                b.extend_from_slice(&x.to_le_bytes());
            }
        });
        file::section(out, TOMBSTONES, |b| {
            b.extend(self.dead.iter().map(|d| u8::from(*d)));
        });
        file::section(out, UNINDEXED, |b| {
            let mut docs: Vec<(&Arc<str>, &u64)> = self.unindexed.iter().collect();
            docs.sort();
            b.extend_from_slice(&(docs.len() as u32).to_le_bytes());
            for (id, lsn) in docs {
                put_id(b, id, *lsn);
            }
        });
    }

    fn decode(bytes: &[u8], metric: Metric) -> Result<Flat, FileError> {
        Flat::decode_sections(&file::sections_of(bytes, &FLAT)?, metric)
    }

    /// A matrix from verified sections 1 to 5 (see [`Flat::encode_sections`]).
    pub(crate) fn decode_sections(s: &[Section<'_>], metric: Metric) -> Result<Flat, FileError> {
        let payload = |kind: u32| s[(kind - 1) as usize];
        let (_, at, meta) = payload(META);
        let mut r = Reader::new(meta, at);
        let applied_lsn = r.u64()?;
        let rebuilt_lsn = r.u64()?;
        let code = r.u8()?;
        let dim = r.u32()? as usize;
        let n = r.u32()? as usize;
        r.done("meta")?;
        if code != metric.code() {
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error of the changes an index refused (the first named, the rest counted), if any.
pub(crate) fn refused_error(
    index: &str,
    mut refused: Vec<(String, u64, String)>,
) -> Result<(), DerivedError> {
    match refused.len() {
        0 => Ok(()),
        n => {
            let (id, lsn, mut reason) = refused.swap_remove(0);
            if n > 1 {
                reason.push_str(&format!(" (and {} more documents refused)", n - 1));
            }
            Err(DerivedError::Refused {
                index: index.into(),
                id,
                lsn,
                reason,
            })
        }
    }
}

/// One collection's exact vector index. See the module doc.
pub struct FlatIndex {
    collection: String,
    file: IndexFile,
    metric: Metric,
    inner: RwLock<Flat>,
    writer: Mutex<()>,
    applied: AtomicU64,
    opened: OpenReport,
}

impl std::fmt::Debug for FlatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex")
            .field("collection", &self.collection)
            .field("file", &self.file.path())
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
        let file = IndexFile::new(data_dir, collection, NAME, FILE_NAME, faults)?;
        let (flat, reason) = match file.load(|b| Flat::decode(b, metric)) {
            Ok(f) => (f, None),
            Err(why) => (Flat::new(metric), Some(why)),
        };
        let applied = flat.applied_lsn;
        Ok(FlatIndex {
            collection: collection.to_string(),
            opened: file.opened(reason, applied),
            file,
            metric,
            inner: RwLock::new(flat),
            writer: Mutex::new(()),
            applied: AtomicU64::new(applied),
        })
    }

    /// How the file was found on open.
    pub fn open_report(&self) -> &OpenReport {
        &self.opened
    }

    /// The index file's path.
    pub fn file_path(&self) -> PathBuf {
        self.file.path().to_path_buf()
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
        self.file.persist(self.applied.load(Ordering::Acquire), || {
            let f = self.read();
            (f.encode(), f.applied_lsn)
        })
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
        self.file.persisted()
    }

    fn apply(&self, changes: &[Change]) -> Result<(), DerivedError> {
        let _w = lock(&self.writer);
        let mut f = self.write();
        let refused = f.apply_changes(&self.collection, changes);
        f.compact_if_due();
        self.applied.store(f.applied_lsn, Ordering::Release);
        drop(f);
        refused_error(NAME, refused)
    }

    fn persist(&self) -> Result<u64, DerivedError> {
        let _w = lock(&self.writer);
        self.persist_locked()
    }

    fn check(&self, truth: &Truth) -> Result<Agreement, DerivedError> {
        let _w = lock(&self.writer);
        let damage = self.file.damage(verify);
        Ok(self.read().agreement(truth, damage))
    }

    fn rebuild(
        &self,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<(), DerivedError> {
        let _w = lock(&self.writer);
        // Built beside the served one, swapped in whole.
        *self.write() = Flat::rebuilt(self.metric, docs, lsn);
        self.applied.store(lsn, Ordering::Release);
        // Whatever was persisted before describes the old matrix.
        self.file.forget();
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
