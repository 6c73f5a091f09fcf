//! [`IvfIndex`]: IVF with flat lists as a derived index (`idx/<collection>/ivf/ivf.bin`) — k-means centroids trained
//! on a seeded sample, each vector in the list of its nearest centroid, a search scanning the `probes` nearest lists.
//!
//! Why by hand: the same reasons as the HNSW graph (the engine reads list sizes, drift and recall, and retrains), and
//! the algorithm is a few dozen lines over the crate's own kernels.
//!
//! Storage: the vectors, ids, versions and tombstones are the flat index's matrix ([`Flat`]); the IVF adds the
//! centroids, each slot's list and the training's figures. On disk the file is `flat.bin`'s sections 1–5 under its
//! own magic, then:
//!
//! ```text
//!   6 training   lists u32 | trained u8 | slots_at_training u64 | mean_dist f64 | imbalance f64 | new_dist_sum f64
//!                | new_count u64 | centroids lists × dim f32 (when trained) | list per slot u32 (0xFFFFFFFF: none)
//!   7 end        total bytes before this section u64 | sections before it u32
//! ```
//!
//! Persisted, not retrained at open: a training is k-means over up to `train_sample` vectors (seconds at 256 lists),
//! and the drift figures compare inserts with the training they were assigned under, which a retraining at open
//! would forget. A file with another number of lists or metric is foreign: the index opens empty and is rebuilt.
//!
//! Invariants:
//! - Training needs at least [`IvfParams::points_per_list_min`] live vectors per list; with fewer the index refuses to
//!   train and answers from a scan of every live vector (the answer says so: [`IvfHits::untrained`]), so an answer is
//!   never worse than exact. Once there are enough, the next `apply` trains.
//! - Once trained, every slot is in exactly one list: the list of its nearest centroid when it was inserted
//!   (centroids move only at a retraining); a delete or an update leaves a tombstone that searches skip.
//! - Training is seeded (the sample and the k-means++ seeding): the same data trains the same centroids.
//! - A retraining (`repair_structure`) is built under the read lock, swapped in, measured, and swapped back out when
//!   the sampled recall fell by more than [`RETRAIN_RECALL_SLACK`].

use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rand::seq::index::sample;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use store::codec::Document;
use store::derived::{
    Agreement, Change, DerivedError, DerivedIndex, Structure, StructureProblem, Truth,
};
use store::io::IoFaults;

use crate::distance::{Metric, dot};
use crate::file::{self, FileError, Format, Reader};
use crate::file_fault::{self, FileFault, FileFaultError};
use crate::flat::{Flat, lock, refused_error};
use crate::graph::Near;
use crate::health::{RECALL_BELOW_FLOOR, sampled_recall_of};
use crate::hnsw::{Hit, OpenError, OpenReport, SearchError};
use crate::params::{K_MAX, ParamsError};
use crate::stored::IndexFile;

/// The index's name: its directory is `idx/<collection>/ivf/`.
pub const NAME: &str = "ivf";
/// The file's name inside the index directory.
pub const FILE_NAME: &str = "ivf.bin";
/// Most lists an IVF index has (and most probes a query asks for).
pub const LISTS_MAX: usize = 65_536;
/// Structural problem: the lists no longer fit the data (imbalance, drift or inserts since training past their
/// thresholds); repaired by retraining.
pub const RETRAIN: &str = "ivf_retrain";
/// How much lower a retraining's sampled recall may be than before it without being rolled back.
pub const RETRAIN_RECALL_SLACK: f64 = 0.01;
/// Seed of the sampled recall of the structure figures.
const RECALL_SEED: u64 = 0x6976_6672_6563;
const NO_LIST: u32 = u32::MAX;

const TRAINING: u32 = 6;
const END: u32 = 7;

fn section_name(kind: u32) -> &'static str {
    match kind {
        1 => "meta",
        2 => "ids",
        3 => "vectors",
        4 => "tombstones",
        5 => "unindexed",
        TRAINING => "training",
        END => "end",
        _ => "unknown",
    }
}

const IVF: Format = Format {
    what: "ivf",
    magic: b"MEDIVF\0\0",
    version: 1,
    end: END,
    name: section_name,
};

/// Parameters of an IVF index.
#[derive(Clone, Debug, PartialEq)]
pub struct IvfParams {
    /// How vectors are compared.
    pub metric: Metric,
    /// Lists (centroids).
    pub lists: usize,
    /// Lists scanned per query unless the query names its own.
    pub probes: usize,
    /// Vectors drawn for k-means.
    pub train_sample: usize,
    /// k-means iterations.
    pub iterations: usize,
    /// Fewest live vectors per list to train at all.
    pub points_per_list_min: usize,
    /// Seed of the sample and the seeding.
    pub seed: u64,
    /// Sampled recall@10 below which the index is a problem (`recall_below_floor`).
    pub recall_floor: f64,
    /// Live vectors queried by the sampled recall (0: not measured).
    pub recall_queries: usize,
    /// Share of the live vectors inserted since training past which the index is retrained.
    pub retrain_inserted_fraction: f64,
    /// Drift (mean distance of inserts since training to their centroid over the same at training) past which the
    /// index is retrained.
    pub retrain_drift: f64,
    /// Imbalance past this many times the imbalance at training (and past 1.5) makes the index retrained.
    pub retrain_imbalance: f64,
}

impl Default for IvfParams {
    fn default() -> Self {
        IvfParams {
            metric: Metric::Cosine,
            lists: 256,
            probes: 16,
            train_sample: 32_768,
            iterations: 10,
            points_per_list_min: 40,
            seed: 0x0069_7666,
            recall_floor: 0.8,
            recall_queries: 32,
            retrain_inserted_fraction: 0.5,
            retrain_drift: 1.5,
            retrain_imbalance: 2.0,
        }
    }
}

impl IvfParams {
    /// Checks every parameter against its range.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let err = |key, value: String, range| Err(ParamsError { key, value, range });
        if !(1..=LISTS_MAX).contains(&self.lists) {
            return err("ivf.lists", self.lists.to_string(), "1..=65536");
        }
        if !(1..=self.lists).contains(&self.probes) {
            return err("ivf.probes", self.probes.to_string(), "1..=lists");
        }
        if !(1..=100).contains(&self.iterations) {
            return err("ivf.iterations", self.iterations.to_string(), "1..=100");
        }
        if !(1..=1_000_000).contains(&self.train_sample) {
            return err(
                "ivf.train_sample",
                self.train_sample.to_string(),
                "1..=1000000",
            );
        }
        if !(1..=10_000).contains(&self.points_per_list_min) {
            return err(
                "ivf.points_per_list_min",
                self.points_per_list_min.to_string(),
                "1..=10000",
            );
        }
        if self.recall_queries > 1_000 {
            return err(
                "ivf.recall_queries",
                self.recall_queries.to_string(),
                "0..=1000",
            );
        }
        for (key, v, range) in [
            ("ivf.recall_floor", self.recall_floor, "[0, 1]"),
            (
                "ivf.retrain_inserted_fraction",
                self.retrain_inserted_fraction,
                "[0, 1]",
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(key, v.to_string(), range);
            }
        }
        for (key, v) in [
            ("ivf.retrain_drift", self.retrain_drift),
            ("ivf.retrain_imbalance", self.retrain_imbalance),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                return err(key, v.to_string(), "[1, ∞)");
            }
        }
        Ok(())
    }
}

/// Health figures of an IVF index.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct IvfHealth {
    /// Whether centroids are trained (otherwise every search is a flat scan).
    pub trained: bool,
    /// Why not, when not.
    pub untrained_reason: Option<String>,
    /// Live vectors.
    pub live: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Lists (0 until trained).
    pub lists: u64,
    /// Lists holding no live vector.
    pub empty_lists: u64,
    /// `k · Σ n² / (Σ n)²` over live list sizes: 1 when balanced, `k` when all in one list.
    pub imbalance: f64,
    /// The imbalance right after the last training.
    pub imbalance_at_training: f64,
    /// Live vectors inserted since the last training.
    pub inserted_since_training: u64,
    /// `inserted_since_training / live`.
    pub inserted_fraction: f64,
    /// Mean distance of vectors inserted since training to their centroid, over the same mean at training (1: no
    /// drift; `None` before any insert since training).
    pub drift: Option<f64>,
    /// Vectors inserted since training behind `drift`.
    pub drift_inserts: u64,
    /// Sampled recall@10 against an exact scan (`None`: not measured).
    pub recall_at_10: Option<f64>,
    /// Queries behind `recall_at_10`.
    pub recall_queries: u64,
}

/// What a training computed: centroids and each slot's list.
#[derive(Clone, Debug, Default)]
struct Model {
    /// `lists × dim`; empty when untrained.
    centroids: Vec<f32>,
    /// Per slot: its list, [`NO_LIST`] when untrained or a tombstone at training.
    list: Vec<u32>,
    /// Slots at training; slots at or above it were inserted since.
    slots_at_training: usize,
    /// Mean distance of the live vectors to their centroid at training.
    mean_dist: f64,
    /// Imbalance right after training.
    imbalance: f64,
    /// Sum of the distances of vectors inserted since training to their centroid, and their count.
    new_dist_sum: f64,
    new_count: u64,
}

#[derive(Debug)]
struct Ivf {
    params: IvfParams,
    flat: Flat,
    model: Model,
    /// Per list, its slots (tombstones skipped by searches); derived from `model.list`.
    members: Vec<Vec<u32>>,
}

impl Ivf {
    fn new(params: IvfParams, flat: Flat) -> Ivf {
        let n = flat.n_slots();
        Ivf {
            params,
            flat,
            model: Model {
                list: vec![NO_LIST; n],
                ..Model::default()
            },
            members: Vec::new(),
        }
    }

    fn trained(&self) -> bool {
        !self.model.centroids.is_empty()
    }

    fn n_lists(&self) -> usize {
        self.model
            .centroids
            .len()
            .checked_div(self.flat.dim)
            .unwrap_or(0)
    }

    fn training_need(&self) -> usize {
        self.params
            .lists
            .saturating_mul(self.params.points_per_list_min)
    }

    fn untrained_reason(&self) -> Option<String> {
        (!self.trained()).then(|| {
            format!(
                "{} live vectors for {} lists: training needs {} ({} per list); searches scan every vector",
                self.flat.by_id.len(),
                self.params.lists,
                self.training_need(),
                self.params.points_per_list_min
            )
        })
    }

    /// The `n` nearest centroids to `q`, nearest first.
    fn nearest_lists(&self, q: &[f32], n: usize) -> Vec<Near> {
        nearest_centroids(
            &self.model.centroids,
            self.flat.dim,
            self.params.metric,
            q,
            n,
        )
    }

    /// Sets each slot's list from `model` and the lists' members.
    fn install(&mut self, model: Model) {
        self.members = vec![Vec::new(); model.centroids.len() / self.flat.dim.max(1)];
        for (s, &c) in model.list.iter().enumerate() {
            if c != NO_LIST && !self.flat.dead[s] {
                self.members[c as usize].push(s as u32);
            }
        }
        self.model = model;
    }

    /// Assigns the slots from `from` on (new since the last call) to their nearest list.
    fn assign_new(&mut self, from: usize) {
        for s in from..self.flat.n_slots() {
            let mut c = NO_LIST;
            if self.trained() && !self.flat.dead[s] {
                let best = self.nearest_lists(self.flat.vector(s as u32), 1)[0];
                c = best.slot;
                self.members[c as usize].push(s as u32);
                self.model.new_dist_sum += f64::from(best.dist);
                self.model.new_count += 1;
            }
            self.model.list.push(c);
        }
    }

    /// Drops the tombstones when due, keeping each slot's list.
    fn compact_if_due(&mut self) {
        let Some(kept) = self.flat.compact_if_due() else {
            return;
        };
        let mut model = std::mem::take(&mut self.model);
        model.slots_at_training = kept
            .iter()
            .filter(|&&old| (old as usize) < model.slots_at_training)
            .count();
        model.list = kept.iter().map(|&old| model.list[old as usize]).collect();
        self.install(model);
    }

    /// Scans `slots` (live ones that `filter` takes) into the best-`k` heap.
    fn scan(
        &self,
        q: &[f32],
        slots: impl Iterator<Item = u32>,
        k: usize,
        filter: Option<&dyn Fn(&str) -> bool>,
        best: &mut BinaryHeap<Near>,
    ) {
        for s in slots {
            if self.flat.dead[s as usize] {
                continue;
            }
            let d = self.params.metric.distance(q, self.flat.vector(s));
            if !d.is_finite() || (best.len() == k && best.peek().is_some_and(|w| d >= w.dist)) {
                continue;
            }
            if filter.is_some_and(|f| !f(&self.flat.ids[s as usize])) {
                continue;
            }
            best.push(Near { dist: d, slot: s });
            if best.len() > k {
                best.pop();
            }
        }
    }

    fn search(
        &self,
        q: &[f32],
        k: usize,
        probes: Option<usize>,
        filter: Option<&dyn Fn(&str) -> bool>,
    ) -> Vec<Near> {
        if !self.trained() {
            return self.exact(q, k, filter);
        }
        let mut best = BinaryHeap::with_capacity(k + 1);
        let probes = probes
            .unwrap_or(self.params.probes)
            .clamp(1, self.n_lists());
        for c in self.nearest_lists(q, probes) {
            self.scan(
                q,
                self.members[c.slot as usize].iter().copied(),
                k,
                filter,
                &mut best,
            );
        }
        best.into_sorted_vec()
    }

    fn exact(&self, q: &[f32], k: usize, filter: Option<&dyn Fn(&str) -> bool>) -> Vec<Near> {
        let mut best = BinaryHeap::with_capacity(k + 1);
        self.scan(q, 0..self.flat.n_slots() as u32, k, filter, &mut best);
        best.into_sorted_vec()
    }

    fn health(&self) -> IvfHealth {
        let live = self.flat.by_id.len() as u64;
        let sizes = self.list_sizes();
        let inserted_since = if self.trained() {
            (self.model.slots_at_training..self.flat.n_slots())
                .filter(|&s| !self.flat.dead[s])
                .count() as u64
        } else {
            0
        };
        let m = &self.model;
        let drift = (m.new_count > 0 && m.mean_dist > 0.0)
            .then(|| m.new_dist_sum / m.new_count as f64 / m.mean_dist);
        let live_slots = self.flat.live_slots();
        let (recall_at_10, recall_queries) = sampled_recall_of(
            &live_slots,
            self.params.recall_queries,
            RECALL_SEED,
            |s| self.exact(self.flat.vector(s), 10, None),
            |s| self.search(self.flat.vector(s), 10, None, None),
        );
        IvfHealth {
            trained: self.trained(),
            untrained_reason: self.untrained_reason(),
            live,
            tombstones: self.flat.n_dead as u64,
            lists: sizes.len() as u64,
            empty_lists: sizes.iter().filter(|n| **n == 0).count() as u64,
            imbalance: imbalance(&sizes),
            imbalance_at_training: m.imbalance,
            inserted_since_training: inserted_since,
            inserted_fraction: if live == 0 {
                0.0
            } else {
                inserted_since as f64 / live as f64
            },
            drift,
            drift_inserts: m.new_count,
            recall_at_10,
            recall_queries,
        }
    }

    /// Live vectors per list.
    fn list_sizes(&self) -> Vec<u64> {
        self.members
            .iter()
            .map(|m| m.iter().filter(|&&s| !self.flat.dead[s as usize]).count() as u64)
            .collect()
    }

    fn encode(&self) -> Vec<u8> {
        let f = &self.flat;
        let mut out = Vec::with_capacity(128 + f.vectors.len() * 4 + f.n_slots() * 44);
        file::header(&mut out, &IVF);
        f.encode_sections(&mut out);
        let m = &self.model;
        file::section(&mut out, TRAINING, |b| {
            b.extend_from_slice(&(self.params.lists as u32).to_le_bytes());
            b.push(u8::from(self.trained()));
            b.extend_from_slice(&(m.slots_at_training as u64).to_le_bytes());
            for x in [m.mean_dist, m.imbalance, m.new_dist_sum] {
                b.extend_from_slice(&x.to_le_bytes());
            }
            b.extend_from_slice(&m.new_count.to_le_bytes());
            for x in &m.centroids {
                b.extend_from_slice(&x.to_le_bytes());
            }
            for c in &m.list {
                b.extend_from_slice(&c.to_le_bytes());
            }
        });
        file::end_section(&mut out, &IVF);
        out
    }

    fn decode(bytes: &[u8], params: &IvfParams) -> Result<Ivf, FileError> {
        let s = file::sections_of(bytes, &IVF)?;
        let flat = Flat::decode_sections(&s[..5], params.metric)?;
        let (_, at, t) = s[(TRAINING - 1) as usize];
        let mut r = Reader::new(t, at);
        let lists = r.u32()? as usize;
        if lists != params.lists {
            return file::err(
                at,
                format!("built with {lists} lists, configured {}", params.lists),
            );
        }
        let trained = r.u8()? == 1;
        let slots_at_training = r.u64()? as usize;
        let mut f64s = [0.0f64; 3];
        for x in &mut f64s {
            *x = f64::from_bits(r.u64()?);
        }
        let new_count = r.u64()?;
        let n_cent = if trained { lists * flat.dim } else { 0 };
        if r.left() != (n_cent + flat.n_slots()) * 4 || slots_at_training > flat.n_slots() {
            return file::err(at, "training: lengths do not match the lists and slots");
        }
        let floats = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let centroids = floats(r.take(n_cent * 4)?);
        let list: Vec<u32> = r
            .take(flat.n_slots() * 4)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if list
            .iter()
            .any(|&c| c != NO_LIST && (!trained || c as usize >= lists))
        {
            return file::err(at, "training: a slot names a list that does not exist");
        }
        let mut ivf = Ivf::new(params.clone(), flat);
        ivf.install(Model {
            centroids,
            list,
            slots_at_training,
            mean_dist: f64s[0],
            imbalance: f64s[1],
            new_dist_sum: f64s[2],
            new_count,
        });
        Ok(ivf)
    }
}

/// `k · Σ n² / (Σ n)²` over list sizes (0 without vectors).
fn imbalance(sizes: &[u64]) -> f64 {
    let total: u64 = sizes.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let sq: f64 = sizes.iter().map(|n| (*n as f64).powi(2)).sum();
    sizes.len() as f64 * sq / (total as f64).powi(2)
}

/// The `n` nearest of the centroids (`lists × dim`) to `q`, nearest first.
fn nearest_centroids(cent: &[f32], dim: usize, metric: Metric, q: &[f32], n: usize) -> Vec<Near> {
    if dim == 0 {
        return Vec::new();
    }
    let mut all: Vec<Near> = cent
        .chunks_exact(dim)
        .enumerate()
        .map(|(c, row)| Near {
            dist: metric.distance(q, row),
            slot: c as u32,
        })
        .collect();
    if n < all.len() {
        all.select_nth_unstable(n);
        all.truncate(n);
    }
    all.sort_unstable();
    all
}

/// k-means on a seeded sample of `f`'s live vectors; refuses below `points_per_list_min` per list.
fn train(f: &Flat, p: &IvfParams) -> Result<Model, String> {
    let live = f.live_slots();
    let need = p.lists.saturating_mul(p.points_per_list_min);
    if live.len() < need {
        return Err(format!(
            "{} live vectors for {} lists: training needs {need} ({} per list)",
            live.len(),
            p.lists,
            p.points_per_list_min
        ));
    }
    let dim = f.dim;
    let mut rng = StdRng::seed_from_u64(p.seed);
    let n_sample = p.train_sample.max(need).min(live.len());
    let sample_slots: Vec<u32> = sample(&mut rng, live.len(), n_sample)
        .into_iter()
        .map(|i| live[i])
        .collect();
    // Seeding: k-means++ over the sample (draws weighted by the squared distance to the nearest centroid so far).
    let mut cent: Vec<f32> = Vec::with_capacity(p.lists * dim);
    cent.extend_from_slice(f.vector(sample_slots[rng.random_range(0..n_sample)]));
    let mut near_d: Vec<f32> = sample_slots
        .iter()
        .map(|&s| crate::distance::l2_squared(f.vector(s), &cent[..dim]))
        .collect();
    for _ in 1..p.lists {
        let total: f64 = near_d.iter().map(|d| f64::from(*d)).sum();
        let pick = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            near_d
                .iter()
                .position(|d| {
                    r -= f64::from(*d);
                    r <= 0.0
                })
                .unwrap_or(n_sample - 1)
        } else {
            rng.random_range(0..n_sample)
        };
        let c0 = cent.len();
        cent.extend_from_slice(f.vector(sample_slots[pick]));
        for (i, &s) in sample_slots.iter().enumerate() {
            near_d[i] = near_d[i].min(crate::distance::l2_squared(
                f.vector(s),
                &cent[c0..c0 + dim],
            ));
        }
    }
    // Lloyd iterations (for cosine the vectors are unit and the centroids renormalised).
    let mut assign = vec![0u32; n_sample];
    for _ in 0..p.iterations {
        for (i, &s) in sample_slots.iter().enumerate() {
            assign[i] = nearest_centroids(&cent, dim, p.metric, f.vector(s), 1)[0].slot;
        }
        let mut sums = vec![0.0f64; p.lists * dim];
        let mut counts = vec![0usize; p.lists];
        for (i, &s) in sample_slots.iter().enumerate() {
            let c = assign[i] as usize;
            counts[c] += 1;
            for (acc, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(f.vector(s)) {
                *acc += f64::from(*x);
            }
        }
        for c in 0..p.lists {
            let row = &mut cent[c * dim..(c + 1) * dim];
            if counts[c] == 0 {
                // An empty cluster takes a random sample point.
                row.copy_from_slice(f.vector(sample_slots[rng.random_range(0..n_sample)]));
                continue;
            }
            for (d, x) in row.iter_mut().enumerate() {
                *x = (sums[c * dim + d] / counts[c] as f64) as f32;
            }
            if p.metric == Metric::Cosine {
                let norm = dot(row, row).sqrt();
                if norm > 0.0 {
                    row.iter_mut().for_each(|x| *x /= norm);
                }
            }
        }
    }
    let mut list = vec![NO_LIST; f.n_slots()];
    let mut sizes = vec![0u64; p.lists];
    let mut dist_sum = 0.0f64;
    for &s in &live {
        let best = nearest_centroids(&cent, dim, p.metric, f.vector(s), 1)[0];
        list[s as usize] = best.slot;
        sizes[best.slot as usize] += 1;
        dist_sum += f64::from(best.dist);
    }
    Ok(Model {
        centroids: cent,
        list,
        slots_at_training: f.n_slots(),
        mean_dist: dist_sum / live.len() as f64,
        imbalance: imbalance(&sizes),
        new_dist_sum: 0.0,
        new_count: 0,
    })
}

/// The applied LSN an `ivf.bin` holds, after verifying every checksum and length.
fn verify(bytes: &[u8]) -> Result<u64, FileError> {
    let s = file::sections_of(bytes, &IVF)?;
    let (_, at, meta) = s[0];
    Reader::new(meta, at).u64()
}

/// A search's hits and, when the index is not trained, why the answer is an exact scan.
#[derive(Clone, Debug, PartialEq)]
pub struct IvfHits {
    /// Nearest first.
    pub hits: Vec<Hit>,
    /// `Some(why)`: every live vector was scanned (not trained yet).
    pub untrained: Option<String>,
}

/// One collection's IVF index. Searches concurrent; changes exclusive (`writer`, then `state`).
pub struct IvfIndex {
    collection: String,
    file: IndexFile,
    params: IvfParams,
    state: RwLock<Ivf>,
    writer: Mutex<()>,
    applied: AtomicU64,
    opened: OpenReport,
}

impl std::fmt::Debug for IvfIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvfIndex")
            .field("collection", &self.collection)
            .field("file", &self.file.path())
            .field("applied", &self.applied.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl IvfIndex {
    /// Opens the index of `collection` under `data_dir` (`idx/<collection>/ivf/ivf.bin`). A missing, damaged or
    /// foreign file gives an empty index with applied LSN 0 ([`IvfIndex::open_report`] says why).
    pub fn open(
        data_dir: &Path,
        collection: &str,
        params: IvfParams,
        faults: Arc<IoFaults>,
    ) -> Result<IvfIndex, OpenError> {
        params.validate()?;
        let file = IndexFile::new(data_dir, collection, NAME, FILE_NAME, faults)?;
        let (ivf, reason) = match file.load(|b| Ivf::decode(b, &params)) {
            Ok(ivf) => (ivf, None),
            Err(why) => (
                Ivf::new(params.clone(), Flat::new(params.metric)),
                Some(why),
            ),
        };
        let applied = ivf.flat.applied_lsn;
        Ok(IvfIndex {
            collection: collection.to_string(),
            opened: file.opened(reason, applied),
            file,
            params,
            state: RwLock::new(ivf),
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

    /// The parameters.
    pub fn params(&self) -> &IvfParams {
        &self.params
    }

    /// Fault hook for tests and chaos drills: damages the index's file on disk as `fault` says (the lists in memory
    /// are untouched; the next `check` finds the damage). Holds the writer lock, so no persist runs meanwhile.
    pub fn inject_file(&self, fault: &FileFault) -> Result<String, FileFaultError> {
        let _w = lock(&self.writer);
        file_fault::damage(self.file.path(), fault)
    }

    fn read(&self) -> RwLockReadGuard<'_, Ivf> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Ivf> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `k` nearest live vectors scanning `probes` lists (`None`: the configured number; at most the lists), or
    /// every vector while untrained (said in [`IvfHits::untrained`]).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        probes: Option<usize>,
        filter: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<IvfHits, SearchError> {
        self.answer(query, k, probes, filter, false)
    }

    /// The exact `k` nearest live vectors (a scan of every vector).
    pub fn exact(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Vec<Hit>, SearchError> {
        Ok(self.answer(query, k, None, filter, true)?.hits)
    }

    fn answer(
        &self,
        query: &[f32],
        k: usize,
        probes: Option<usize>,
        filter: Option<&dyn Fn(&str) -> bool>,
        exact: bool,
    ) -> Result<IvfHits, SearchError> {
        if !(1..=K_MAX).contains(&k) {
            return Err(SearchError::K { k, max: K_MAX });
        }
        if let Some(p) = probes
            && !(1..=LISTS_MAX).contains(&p)
        {
            return Err(SearchError::Probes {
                probes: p,
                max: LISTS_MAX,
            });
        }
        let g = self.read();
        if g.flat.dim == 0 {
            return Ok(IvfHits {
                hits: Vec::new(),
                untrained: g.untrained_reason(),
            });
        }
        let q = self.params.metric.prepare(query, g.flat.dim)?;
        let near = if exact {
            g.exact(&q, k, filter)
        } else {
            g.search(&q, k, probes, filter)
        };
        Ok(IvfHits {
            hits: near
                .into_iter()
                .map(|n| Hit {
                    id: g.flat.ids[n.slot as usize].clone(),
                    lsn: g.flat.lsns[n.slot as usize],
                    distance: self.params.metric.reported(n.dist),
                })
                .collect(),
            untrained: g.untrained_reason(),
        })
    }

    /// Every health figure (recall sampled over `recall_queries` live vectors, seeded).
    pub fn health(&self) -> IvfHealth {
        self.read().health()
    }

    /// Trains when untrained and there are enough vectors. Caller holds `writer`.
    fn train_if_due(&self) {
        let model = {
            let g = self.read();
            if g.trained() || g.flat.by_id.len() < g.training_need() {
                return;
            }
            train(&g.flat, &self.params)
        };
        if let Ok(model) = model {
            self.write().install(model);
            // The lists changed without a new LSN: the file must be written again.
            self.file.forget();
        }
    }

    /// Trains the centroids again on a sample of the live vectors and reassigns every vector; measured before and
    /// after, and rolled back when the sampled recall fell by more than [`RETRAIN_RECALL_SLACK`].
    pub fn retrain(&self) -> Result<String, DerivedError> {
        let _w = lock(&self.writer);
        let other = |reason: String| DerivedError::Other {
            index: NAME.into(),
            reason,
        };
        let (before, model) = {
            let g = self.read();
            (g.health(), train(&g.flat, &self.params).map_err(other)?)
        };
        let old = {
            let mut g = self.write();
            let old = std::mem::take(&mut g.model);
            g.install(model);
            old
        };
        let after = self.read().health();
        let (rb, ra) = (
            before.recall_at_10.unwrap_or(1.0),
            after.recall_at_10.unwrap_or(1.0),
        );
        // An untrained index had exact answers: any trained recall is the price of training, not a regression.
        if before.trained && ra < rb - RETRAIN_RECALL_SLACK {
            self.write().install(old);
            return Err(other(format!(
                "retraining lowered the sampled recall@10 from {rb:.3} to {ra:.3}: rolled back"
            )));
        }
        self.file.forget();
        self.persist_locked()?;
        Ok(format!(
            "retrained {} lists on {} vectors: imbalance {:.2} → {:.2}, inserted since training {} → 0, drift {} → \
             none, recall@10 {rb:.3} → {ra:.3}",
            after.lists,
            after.live,
            before.imbalance,
            after.imbalance,
            before.inserted_since_training,
            before
                .drift
                .map_or_else(|| "none".to_string(), |d| format!("{d:.2}")),
        ))
    }

    fn persist_locked(&self) -> Result<u64, DerivedError> {
        self.file.persist(self.applied.load(Ordering::Acquire), || {
            let g = self.read();
            (g.encode(), g.flat.applied_lsn)
        })
    }
}

/// The figures and problems the engine sees of an IVF index's health `h` (see [`DerivedIndex::structure`]).
fn structure_of(h: &IvfHealth, p: &IvfParams) -> Structure {
    let mut s = Structure::default();
    let mut figures = vec![
        ("trained", f64::from(u8::from(h.trained))),
        ("live", h.live as f64),
        ("tombstones", h.tombstones as f64),
        ("lists", h.lists as f64),
        ("empty_lists", h.empty_lists as f64),
        ("imbalance", h.imbalance),
        ("imbalance_at_training", h.imbalance_at_training),
        ("inserted_since_training", h.inserted_since_training as f64),
        ("inserted_fraction", h.inserted_fraction),
    ];
    if let Some(d) = h.drift {
        figures.push(("drift", d));
    }
    if let Some(r) = h.recall_at_10 {
        figures.push(("recall_at_10", r));
    }
    s.figures = figures
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if !h.trained {
        return s;
    }
    let enough = p.points_per_list_min as u64;
    let mut why = Vec::new();
    if h.inserted_fraction > p.retrain_inserted_fraction && h.inserted_since_training >= enough {
        why.push(format!(
            "{} of {} live vectors ({:.2}) were inserted since training (threshold {:.2})",
            h.inserted_since_training, h.live, h.inserted_fraction, p.retrain_inserted_fraction
        ));
    }
    if let Some(d) = h.drift
        && d > p.retrain_drift
        && h.drift_inserts >= enough
    {
        why.push(format!(
            "inserts since training lie {d:.2} times as far from their centroid as the trained vectors did \
             (threshold {:.2})",
            p.retrain_drift
        ));
    }
    let bound = (p.retrain_imbalance * h.imbalance_at_training.max(1.0)).max(1.5);
    if h.imbalance > bound {
        why.push(format!(
            "list imbalance {:.2} is past {bound:.2} ({:.2} times the {:.2} at training)",
            h.imbalance, p.retrain_imbalance, h.imbalance_at_training
        ));
    }
    if !why.is_empty() {
        s.problems.push(StructureProblem {
            code: RETRAIN.into(),
            summary: format!("the IVF lists no longer fit the data: {}", why.join("; ")),
        });
    }
    if let Some(r) = h.recall_at_10
        && r < p.recall_floor
    {
        s.problems.push(StructureProblem {
            code: RECALL_BELOW_FLOOR.into(),
            summary: format!(
                "sampled recall@10 {r:.3} over {} queries is below the floor {:.3} (probes {} of {} lists)",
                h.recall_queries, p.recall_floor, p.probes, h.lists
            ),
        });
    }
    s
}

impl DerivedIndex for IvfIndex {
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
        let refused = {
            let mut g = self.write();
            let from = g.flat.n_slots();
            let refused = g.flat.apply_changes(&self.collection, changes);
            g.assign_new(from);
            g.compact_if_due();
            self.applied.store(g.flat.applied_lsn, Ordering::Release);
            refused
        };
        self.train_if_due();
        refused_error(NAME, refused)
    }

    fn persist(&self) -> Result<u64, DerivedError> {
        let _w = lock(&self.writer);
        self.persist_locked()
    }

    fn check(&self, truth: &Truth) -> Result<Agreement, DerivedError> {
        let _w = lock(&self.writer);
        let damage = self.file.damage(verify);
        Ok(self.read().flat.agreement(truth, damage))
    }

    fn rebuild(
        &self,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<(), DerivedError> {
        let _w = lock(&self.writer);
        // Built beside the served one, swapped in whole.
        let mut ivf = Ivf::new(
            self.params.clone(),
            Flat::rebuilt(self.params.metric, docs, lsn),
        );
        if let Ok(model) = train(&ivf.flat, &self.params) {
            ivf.install(model);
        }
        *self.write() = ivf;
        self.applied.store(lsn, Ordering::Release);
        self.file.forget();
        self.persist_locked().map(|_| ())
    }

    fn structure(&self) -> Option<Structure> {
        Some(structure_of(&self.health(), &self.params))
    }

    fn repair_structure(&self, code: &str) -> Result<String, DerivedError> {
        match code {
            RETRAIN | RECALL_BELOW_FLOOR => self.retrain(),
            other => Err(DerivedError::Other {
                index: NAME.into(),
                reason: format!(
                    "no structural repair for {other:?} (known: {RETRAIN}, {RECALL_BELOW_FLOOR})"
                ),
            }),
        }
    }
}
