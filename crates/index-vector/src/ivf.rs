//! IVF with flat lists: k-means centroids trained on a sample, each vector in the list of its nearest centroid, a
//! search scanning the `probes` nearest lists. In memory (no file, no `DerivedIndex` yet): the engine of an `ivf`
//! index and its health figures.
//!
//! Why by hand: the same reasons as the HNSW graph (the engine reads list sizes, drift and recall, and retrains), and
//! the algorithm is a few dozen lines over the crate's own kernels.
//!
//! Invariants:
//! - Training needs at least [`IvfParams::points_per_list_min`] live vectors per list; with fewer the index refuses to
//!   train and answers from a flat scan of every live vector ([`IvfHealth::trained`] is false and says why), so an
//!   answer is never worse than exact.
//! - Every live slot is in exactly one list once trained: the list of its nearest centroid at insertion (centroids do
//!   not move until the next training); a delete or an update leaves a tombstone that searches skip.
//! - Training is seeded (k-means++-style seeding and the sample drawn with `seed`): the same data trains the same
//!   centroids.

use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use rand::seq::index::sample;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::distance::{Metric, VectorError};
use crate::graph::Near;
use crate::hnsw::{Hit, SearchError};
use crate::params::K_MAX;

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
        }
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
    /// Lists.
    pub lists: u64,
    /// Lists holding no live vector.
    pub empty_lists: u64,
    /// `k · Σ n² / (Σ n)²` over live list sizes: 1 when balanced, `k` when all in one list.
    pub imbalance: f64,
    /// Live vectors inserted since the last training.
    pub inserted_since_training: u64,
    /// Mean distance of vectors inserted since training to their centroid, over the same mean at training (1: no
    /// drift; `None` before any insert since training).
    pub drift: Option<f64>,
    /// Sampled recall@10 against brute force (`None`: not measured).
    pub recall_at_10: Option<f64>,
}

#[derive(Debug)]
struct Ivf {
    params: IvfParams,
    dim: usize,
    ids: Vec<Arc<str>>,
    lsns: Vec<u64>,
    vectors: Vec<f32>,
    dead: Vec<bool>,
    n_dead: usize,
    by_id: HashMap<Arc<str>, u32>,
    /// `lists × dim`, empty until trained.
    centroids: Vec<f32>,
    /// Live and dead slots per list (dead ones skipped).
    members: Vec<Vec<u32>>,
    untrained_reason: Option<String>,
    /// Slots at training; slots at or above it were inserted since.
    trained_slots: usize,
    /// Mean distance to the own centroid at training.
    trained_mean_dist: f64,
    /// Sum of distances to their centroid of vectors inserted since training, and their count.
    new_dist_sum: f64,
    new_count: u64,
}

impl Ivf {
    fn vector(&self, s: u32) -> &[f32] {
        let a = s as usize * self.dim;
        &self.vectors[a..a + self.dim]
    }

    fn centroid(&self, c: usize) -> &[f32] {
        &self.centroids[c * self.dim..(c + 1) * self.dim]
    }

    fn n_lists(&self) -> usize {
        self.members.len()
    }

    /// The `n` nearest centroids to `q`, nearest first.
    fn nearest_lists(&self, q: &[f32], n: usize) -> Vec<Near> {
        let mut all: Vec<Near> = (0..self.n_lists())
            .map(|c| Near {
                dist: self.params.metric.distance(q, self.centroid(c)),
                slot: c as u32,
            })
            .collect();
        all.sort_unstable();
        all.truncate(n);
        all
    }

    fn remove(&mut self, id: &str) {
        if let Some(s) = self.by_id.remove(id) {
            self.dead[s as usize] = true;
            self.n_dead += 1;
        }
    }

    fn upsert(&mut self, id: Arc<str>, lsn: u64, v: &[f32]) {
        self.remove(&id);
        if self.dim == 0 {
            self.dim = v.len();
        }
        let s = self.ids.len() as u32;
        self.ids.push(id.clone());
        self.lsns.push(lsn);
        self.vectors.extend_from_slice(v);
        self.dead.push(false);
        self.by_id.insert(id, s);
        if !self.members.is_empty() {
            let best = self.nearest_lists(v, 1)[0];
            self.members[best.slot as usize].push(s);
            self.new_dist_sum += f64::from(best.dist);
            self.new_count += 1;
        }
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
            if self.dead[s as usize] {
                continue;
            }
            let d = self.params.metric.distance(q, self.vector(s));
            if best.len() == k && best.peek().is_some_and(|w| d >= w.dist) {
                continue;
            }
            if filter.is_some_and(|f| !f(&self.ids[s as usize])) {
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
        let mut best = BinaryHeap::with_capacity(k + 1);
        if self.members.is_empty() {
            self.scan(q, 0..self.ids.len() as u32, k, filter, &mut best);
        } else {
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
        }
        best.into_sorted_vec()
    }

    fn exact(&self, q: &[f32], k: usize) -> Vec<Near> {
        let mut best = BinaryHeap::with_capacity(k + 1);
        self.scan(q, 0..self.ids.len() as u32, k, None, &mut best);
        best.into_sorted_vec()
    }

    /// k-means on a seeded sample of the live vectors; refuses below `points_per_list_min` per list.
    fn train(&mut self) -> Result<(), String> {
        let p = self.params.clone();
        let live: Vec<u32> = (0..self.ids.len() as u32)
            .filter(|&s| !self.dead[s as usize])
            .collect();
        let need = p.lists.saturating_mul(p.points_per_list_min);
        if p.lists == 0 || live.len() < need {
            let reason = format!(
                "{} live vectors for {} lists: training needs {} ({} per list); searches scan every vector",
                live.len(),
                p.lists,
                need,
                p.points_per_list_min
            );
            self.untrained_reason = Some(reason.clone());
            self.centroids.clear();
            self.members.clear();
            return Err(reason);
        }
        let mut rng = StdRng::seed_from_u64(p.seed);
        let n_sample = p.train_sample.max(need).min(live.len());
        let sample_slots: Vec<u32> = sample(&mut rng, live.len(), n_sample)
            .into_iter()
            .map(|i| live[i])
            .collect();
        let dim = self.dim;
        // Seeding: k-means++ over the sample (distance-weighted draws).
        let mut cent: Vec<f32> = Vec::with_capacity(p.lists * dim);
        cent.extend_from_slice(self.vector(sample_slots[rng.random_range(0..n_sample)]));
        let mut near_d: Vec<f32> = sample_slots
            .iter()
            .map(|&s| l2(self.vector(s), &cent[..dim]))
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
            cent.extend_from_slice(self.vector(sample_slots[pick]));
            for (i, &s) in sample_slots.iter().enumerate() {
                near_d[i] = near_d[i].min(l2(self.vector(s), &cent[c0..c0 + dim]));
            }
        }
        // Lloyd iterations (Euclidean; for cosine the vectors are unit and centroids renormalised).
        let mut assign = vec![0usize; n_sample];
        for _ in 0..p.iterations {
            for (i, &s) in sample_slots.iter().enumerate() {
                assign[i] = nearest(&cent, dim, self.vector(s), self.params.metric);
            }
            let mut sums = vec![0.0f64; p.lists * dim];
            let mut counts = vec![0usize; p.lists];
            for (i, &s) in sample_slots.iter().enumerate() {
                let c = assign[i];
                counts[c] += 1;
                for (acc, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(self.vector(s)) {
                    *acc += f64::from(*x);
                }
            }
            for c in 0..p.lists {
                if counts[c] == 0 {
                    // An empty cluster takes a random sample point.
                    let s = sample_slots[rng.random_range(0..n_sample)];
                    let v = self.vector(s).to_vec();
                    cent[c * dim..(c + 1) * dim].copy_from_slice(&v);
                    continue;
                }
                for d in 0..dim {
                    cent[c * dim + d] = (sums[c * dim + d] / counts[c] as f64) as f32;
                }
                if self.params.metric == Metric::Cosine {
                    let row = &mut cent[c * dim..(c + 1) * dim];
                    let norm = crate::distance::dot(row, row).sqrt();
                    if norm > 0.0 {
                        row.iter_mut().for_each(|x| *x /= norm);
                    }
                }
            }
        }
        self.centroids = cent;
        self.members = vec![Vec::new(); p.lists];
        let mut dist_sum = 0.0f64;
        for &s in &live {
            let best = self.nearest_lists(self.vector(s), 1)[0];
            self.members[best.slot as usize].push(s);
            dist_sum += f64::from(best.dist);
        }
        self.trained_slots = self.ids.len();
        self.trained_mean_dist = dist_sum / live.len() as f64;
        self.new_dist_sum = 0.0;
        self.new_count = 0;
        self.untrained_reason = None;
        Ok(())
    }
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    crate::distance::l2_squared(a, b)
}

fn nearest(cent: &[f32], dim: usize, v: &[f32], metric: Metric) -> usize {
    let mut best = (f32::INFINITY, 0usize);
    for (c, row) in cent.chunks_exact(dim).enumerate() {
        let d = metric.distance(v, row);
        if d < best.0 {
            best = (d, c);
        }
    }
    best.1
}

/// An IVF index over one collection's vectors, in memory. Searches concurrent; changes exclusive.
#[derive(Debug)]
pub struct IvfIndex {
    state: RwLock<Ivf>,
}

impl IvfIndex {
    /// An empty, untrained index.
    pub fn new(params: IvfParams) -> IvfIndex {
        IvfIndex {
            state: RwLock::new(Ivf {
                params,
                dim: 0,
                ids: Vec::new(),
                lsns: Vec::new(),
                vectors: Vec::new(),
                dead: Vec::new(),
                n_dead: 0,
                by_id: HashMap::new(),
                centroids: Vec::new(),
                members: Vec::new(),
                untrained_reason: Some("not trained yet".into()),
                trained_slots: 0,
                trained_mean_dist: 0.0,
                new_dist_sum: 0.0,
                new_count: 0,
            }),
        }
    }

    /// Inserts or replaces `id` (into the list of its nearest centroid once trained).
    pub fn upsert(&self, id: &str, lsn: u64, v: &[f32]) -> Result<(), VectorError> {
        let mut g = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let p = g.params.metric.prepare(v, g.dim)?;
        g.upsert(Arc::from(id), lsn, &p);
        Ok(())
    }

    /// Deletes `id` (a tombstone).
    pub fn remove(&self, id: &str) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Trains the centroids on a sample of the live vectors and reassigns every vector; refuses (and keeps serving
    /// from a flat scan) below `points_per_list_min` vectors per list.
    pub fn train(&self) -> Result<(), String> {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .train()
    }

    /// The `k` nearest live vectors scanning `probes` lists (`None`: the configured number); a flat scan while
    /// untrained.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        probes: Option<usize>,
        filter: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Vec<Hit>, SearchError> {
        if !(1..=K_MAX).contains(&k) {
            return Err(SearchError::K { k, max: K_MAX });
        }
        let g = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if g.dim == 0 {
            return Ok(Vec::new());
        }
        let q = g.params.metric.prepare(query, g.dim)?;
        Ok(g.search(&q, k, probes, filter)
            .into_iter()
            .map(|n| Hit {
                id: g.ids[n.slot as usize].clone(),
                lsn: g.lsns[n.slot as usize],
                distance: g.params.metric.reported(n.dist),
            })
            .collect())
    }

    /// Every health figure; recall@10 sampled over `recall_queries` live vectors (seeded).
    pub fn health(&self, recall_queries: usize, seed: u64) -> IvfHealth {
        let g = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let live_slots: Vec<u32> = (0..g.ids.len() as u32)
            .filter(|&s| !g.dead[s as usize])
            .collect();
        let sizes: Vec<u64> = g
            .members
            .iter()
            .map(|m| m.iter().filter(|&&s| !g.dead[s as usize]).count() as u64)
            .collect();
        let total: u64 = sizes.iter().sum();
        let sq: f64 = sizes.iter().map(|n| (*n as f64).powi(2)).sum();
        let imbalance = if total == 0 {
            0.0
        } else {
            sizes.len() as f64 * sq / (total as f64).powi(2)
        };
        let inserted_since = live_slots
            .iter()
            .filter(|&&s| (s as usize) >= g.trained_slots && !g.members.is_empty())
            .count() as u64;
        let drift = (g.new_count > 0 && g.trained_mean_dist > 0.0)
            .then(|| g.new_dist_sum / g.new_count as f64 / g.trained_mean_dist);
        let recall_at_10 = (recall_queries > 0 && !live_slots.is_empty()).then(|| {
            let mut rng = StdRng::seed_from_u64(seed);
            let n = recall_queries.min(live_slots.len());
            let mut found = 0.0;
            for i in sample(&mut rng, live_slots.len(), n) {
                let q = g.vector(live_slots[i]).to_vec();
                let exact = g.exact(&q, 10);
                let approx = g.search(&q, 10, None, None);
                found +=
                    crate::health::recall_hits(&exact, &approx) as f64 / exact.len().max(1) as f64;
            }
            found / n as f64
        });
        IvfHealth {
            trained: !g.members.is_empty(),
            untrained_reason: g.untrained_reason.clone(),
            live: live_slots.len() as u64,
            tombstones: g.n_dead as u64,
            lists: g.members.len() as u64,
            empty_lists: sizes.iter().filter(|n| **n == 0).count() as u64,
            imbalance,
            inserted_since_training: inserted_since,
            drift,
            recall_at_10,
        }
    }
}
