//! The HNSW graph itself (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
//! Hierarchical Navigable Small World graphs", 2016/2018): insertion (alg. 1), the layer search (alg. 2), the
//! neighbour-selection heuristic (alg. 4), searches with a filter, brute force over the same vectors, tombstones.
//! Single-threaded and lock-free by itself: [`crate::hnsw::HnswIndex`] wraps it in a lock.
//!
//! Why by hand: the index must be healed, so its engine reads every node's neighbour list per layer, the entry
//! point and the tombstones, counts unreachable and orphaned nodes, and re-links or rebuilds parts of the graph.
//! The maintained Rust libraries either hide the graph (no way to list or edit links) or cannot delete; `hnsw_rs`,
//! which exposes the graph, has no deletion (see DEPENDENCIES.md). It is used as the benchmark's reference.
//!
//! Storage: one slot per inserted vector, never reused until compaction rebuilds the graph.
//! - `vectors`: all vectors contiguous, slot `s` at `s·dim..(s+1)·dim` (prepared for the metric);
//! - `layer0`: layer-0 links contiguous, slot `s` at `s·(m0+1)`: a count, then `m0` places;
//! - `upper[s]`: layers `1..=level(s)`, each a count and `m` places.
//!
//! Invariants (checked by [`Graph::validate`], which the file decoder and `check` use):
//! - every link points to another slot (never itself) whose level is at least the layer; at most `m0` links on
//!   layer 0, `m` above, no slot twice in one list;
//! - `entry` is `None` exactly when there is no slot, and its level is `top_level`;
//! - `by_id` maps each live id to its one live slot; a tombstoned slot is in no map; an id is in at most one of
//!   `by_id` and `unindexed`;
//! - tombstones stay in the graph and are walked through (navigation) but never returned, until compaction.
//! - A node's level comes from its id and the seed alone (a hash, not a random stream), so a rebuild or a
//!   compaction of the same documents in the same order builds the same graph.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::distance::{Metric, VectorError};
use crate::params::{HnswParams, LEVEL_MAX};

/// A slot and its distance to the query, ordered by distance then slot (a total order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Near {
    pub dist: f32,
    pub slot: u32,
}

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.slot.cmp(&other.slot))
    }
}

/// Which slots have been seen by one search: an epoch per slot, so clearing is O(1).
#[derive(Debug, Default)]
pub(crate) struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    /// Ready for a new search over `n` slots.
    pub fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
    }

    /// Marks `slot`; true if it was not marked yet.
    #[inline]
    pub fn insert(&mut self, slot: u32) -> bool {
        let m = &mut self.marks[slot as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }
}

/// Candidates a search keeps on each layer above 0 on its way down (1 would be the paper's greedy descent). On
/// well-separated clusters the greedy descent can end in the wrong cluster, and layer 0 rarely links across: on
/// 100 000 clustered vectors (128 dimensions, 50 clusters) 13 of 500 queries found under half of their neighbours at
/// `ef` 16 and 5 still at `ef` 128 (recall@10 0.964 / 0.987); with two candidates none did (0.988 / 0.996) for
/// about the same time per query (`descent_experiment` below). More than two changed nothing.
pub(crate) const DESCENT_EF: usize = 2;

/// [`Graph::select`] fills a list with pruned candidates only when the heuristic kept fewer than `m` divided by
/// this (the sign of duplicates or of vectors converging on one direction).
const FILL_BELOW_DIVISOR: usize = 4;

/// Distance (under the index's metric, as compared internally) at or below which [`Graph::select`] takes a
/// candidate for a duplicate of the base: equal vectors only (cosine and L2 give exactly 0; under dot a vector is
/// not at distance 0 from itself, so there is no duplicate handling).
const DUPLICATE_DIST: f32 = 0.0;

/// [`Graph::select`] keeps at most `m` divided by this of the base's duplicates.
const DUPLICATES_DIVISOR: usize = 2;

/// The graph and the vectors. See the module doc for the layout and invariants.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    pub params: HnswParams,
    /// Dimension of every vector; 0 until the first one.
    pub dim: usize,
    /// The id of each slot.
    pub ids: Vec<Arc<str>>,
    /// The LSN of the change that wrote each slot's version.
    pub lsns: Vec<u64>,
    pub vectors: Vec<f32>,
    pub levels: Vec<u8>,
    pub layer0: Vec<u32>,
    /// How many layer-0 lists hold each slot (kept by [`Graph::set_links`]; recounted after a file is read).
    pub incoming0: Vec<u32>,
    pub upper: Vec<Vec<u32>>,
    /// Tombstones.
    pub dead: Vec<bool>,
    pub n_dead: usize,
    /// Live id → slot.
    pub by_id: HashMap<Arc<str>, u32>,
    /// Documents the index knows but holds no vector for (no vector, or one it refused): id → version LSN.
    pub unindexed: HashMap<Arc<str>, u64>,
    pub entry: Option<u32>,
    pub top_level: u8,
    /// The highest LSN applied.
    pub applied_lsn: u64,
    /// The LSN of the last rebuild from the table (0: none). A version recorded as exactly this LSN means "the
    /// version as of the rebuild", i.e. at most this LSN (the rebuild's documents carry no LSN of their own).
    pub rebuilt_lsn: u64,
}

impl Graph {
    pub fn new(params: HnswParams) -> Graph {
        Graph {
            params,
            dim: 0,
            ids: Vec::new(),
            lsns: Vec::new(),
            vectors: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            incoming0: Vec::new(),
            upper: Vec::new(),
            dead: Vec::new(),
            n_dead: 0,
            by_id: HashMap::new(),
            unindexed: HashMap::new(),
            entry: None,
            top_level: 0,
            applied_lsn: 0,
            rebuilt_lsn: 0,
        }
    }

    /// Slots, tombstones included.
    pub fn n_slots(&self) -> usize {
        self.ids.len()
    }

    /// Live vectors.
    pub fn n_live(&self) -> usize {
        self.ids.len() - self.n_dead
    }

    /// Documents the index holds (with or without a vector): what the table's count is compared with.
    pub fn n_docs(&self) -> usize {
        self.by_id.len() + self.unindexed.len()
    }

    /// Heap bytes held (vectors, links, ids, maps; allocator overhead not counted).
    pub fn memory_bytes(&self) -> u64 {
        let arc = std::mem::size_of::<Arc<str>>();
        let ids: usize =
            self.ids.iter().map(|i| i.len() + 16).sum::<usize>() + self.ids.capacity() * arc;
        let upper: usize = self.upper.iter().map(|u| u.capacity() * 4).sum::<usize>()
            + self.upper.capacity() * std::mem::size_of::<Vec<u32>>();
        let map_entry = arc + 8 + 8;
        (self.vectors.capacity() * 4
            + self.layer0.capacity() * 4
            + self.incoming0.capacity() * 4
            + upper
            + ids
            + self.lsns.capacity() * 8
            + self.levels.capacity()
            + self.dead.capacity()
            + self.by_id.capacity() * map_entry
            + self.unindexed.capacity() * map_entry) as u64
    }

    #[inline]
    pub fn vector(&self, slot: u32) -> &[f32] {
        let s = slot as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    #[inline]
    pub fn dist_to(&self, q: &[f32], slot: u32) -> f32 {
        self.params.metric.distance(q, self.vector(slot))
    }

    #[inline]
    pub fn dist_slots(&self, a: u32, b: u32) -> f32 {
        self.params.metric.distance(self.vector(a), self.vector(b))
    }

    /// Link capacity of `layer`.
    #[inline]
    pub fn cap(&self, layer: usize) -> usize {
        if layer == 0 {
            self.params.m0
        } else {
            self.params.m
        }
    }

    #[inline]
    pub fn links(&self, slot: u32, layer: usize) -> &[u32] {
        if layer == 0 {
            let s = slot as usize * (self.params.m0 + 1);
            let n = self.layer0[s] as usize;
            &self.layer0[s + 1..s + 1 + n]
        } else {
            let v = &self.upper[slot as usize];
            let s = (layer - 1) * (self.params.m + 1);
            let n = v[s] as usize;
            &v[s + 1..s + 1 + n]
        }
    }

    /// Replaces the links of `slot` on `layer` (at most the layer's capacity).
    pub fn set_links(&mut self, slot: u32, layer: usize, links: &[u32]) {
        debug_assert!(links.len() <= self.cap(layer));
        if layer == 0 {
            let old: Vec<u32> = self.links(slot, 0).to_vec();
            for o in old {
                if let Some(c) = self.incoming0.get_mut(o as usize) {
                    *c = c.saturating_sub(1);
                }
            }
            for &n in links {
                if let Some(c) = self.incoming0.get_mut(n as usize) {
                    *c += 1;
                }
            }
        }
        let (buf, s) = if layer == 0 {
            (&mut self.layer0, slot as usize * (self.params.m0 + 1))
        } else {
            (
                &mut self.upper[slot as usize],
                (layer - 1) * (self.params.m + 1),
            )
        };
        buf[s] = links.len() as u32;
        buf[s + 1..s + 1 + links.len()].copy_from_slice(links);
    }

    /// Recounts every slot's layer-0 incoming links from the lists (after the lists were read from a file).
    pub fn recount_incoming(&mut self) {
        let n = self.n_slots();
        self.incoming0 = vec![0; n];
        for s in 0..n as u32 {
            let stride = self.params.m0 + 1;
            let at = s as usize * stride;
            let Some(&count) = self.layer0.get(at) else {
                break;
            };
            let end = (at + 1 + count as usize).min(self.layer0.len());
            for i in at + 1..end {
                if let Some(c) = self.incoming0.get_mut(self.layer0[i] as usize) {
                    *c += 1;
                }
            }
        }
    }

    /// The level of a new node with this id: `⌊−ln(u)·mL⌋` with `u` from a hash of the id and the seed.
    pub fn level_for(&self, id: &str) -> u8 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let x = splitmix64(h ^ self.params.seed);
        // u in (0, 1]: never 0, so the logarithm is finite.
        let u = ((x >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let level = (-u.ln() * self.params.level_mult()).floor();
        level.min(f64::from(LEVEL_MAX)) as u8
    }

    /// Prepares `v` for this graph (dimension, finite values, unit length for cosine).
    pub fn prepare(&self, v: &[f32]) -> Result<Vec<f32>, VectorError> {
        self.params.metric.prepare(v, self.dim)
    }

    /// Removes `id` (its vector becomes a tombstone, its record of a document without a vector is forgotten).
    pub fn remove(&mut self, id: &str) {
        self.unindexed.remove(id);
        let Some(slot) = self.by_id.remove(id) else {
            return;
        };
        self.dead[slot as usize] = true;
        self.n_dead += 1;
        if self.entry == Some(slot) {
            self.reset_entry();
        }
    }

    /// Points the entry at a live node of the highest level (keeps it when no node is live: tombstones still
    /// navigate, and a search finds nothing to return anyway). Returns whether the entry changed.
    pub fn reset_entry(&mut self) -> bool {
        let best = (0..self.n_slots() as u32)
            .filter(|&s| !self.dead[s as usize])
            .max_by_key(|&s| (self.levels[s as usize], Reverse(s)));
        match best {
            Some(s) if self.entry != Some(s) => {
                self.entry = Some(s);
                self.top_level = self.levels[s as usize];
                true
            }
            _ => false,
        }
    }

    /// The highest level of a live node.
    pub fn top_live_level(&self) -> Option<u8> {
        (0..self.n_slots())
            .filter(|&s| !self.dead[s])
            .map(|s| self.levels[s])
            .max()
    }

    /// Inserts (or replaces) `id` with the prepared vector `v` at version `lsn`; returns its slot.
    pub fn upsert(&mut self, id: Arc<str>, lsn: u64, v: &[f32], visited: &mut Visited) -> u32 {
        self.remove(&id);
        if self.dim == 0 {
            self.dim = v.len();
        }
        debug_assert_eq!(v.len(), self.dim);
        let slot = self.n_slots() as u32;
        let level = self.level_for(&id);
        self.ids.push(id.clone());
        self.lsns.push(lsn);
        self.vectors.extend_from_slice(v);
        self.levels.push(level);
        self.layer0
            .extend(std::iter::repeat_n(0, self.params.m0 + 1));
        self.incoming0.push(0);
        self.upper
            .push(vec![0; usize::from(level) * (self.params.m + 1)]);
        self.dead.push(false);
        self.by_id.insert(id, slot);
        self.link_new(slot, visited);
        slot
    }

    /// Alg. 1: links a freshly stored slot into the graph.
    fn link_new(&mut self, slot: u32, visited: &mut Visited) {
        let Some(entry) = self.entry else {
            self.entry = Some(slot);
            self.top_level = self.levels[slot as usize];
            return;
        };
        let level = self.levels[slot as usize];
        let q = self.vector(slot).to_vec();
        let mut cur = Near {
            dist: self.dist_to(&q, entry),
            slot: entry,
        };
        for layer in (usize::from(level) + 1..=usize::from(self.top_level)).rev() {
            cur = self.greedy(&q, cur, layer);
        }
        let mut eps = vec![cur];
        let ef = self.params.ef_construction;
        for layer in (0..=usize::from(level.min(self.top_level))).rev() {
            let w = self.search_layer(&q, &eps, ef, layer, visited, |s| s != slot);
            let chosen = self.select(&w, self.params.m, true);
            self.set_links(slot, layer, &chosen);
            for &e in &chosen {
                self.connect(e, slot, layer);
            }
            if !w.is_empty() {
                eps = w;
            }
        }
        if level > self.top_level {
            self.entry = Some(slot);
            self.top_level = level;
        }
    }

    /// Adds the link `from → to` on `layer`; a full list is shrunk with the heuristic (which may drop `to` or
    /// another link). Returns the slots that lost their link from `from` (never `to`).
    pub fn connect(&mut self, from: u32, to: u32, layer: usize) -> Vec<u32> {
        let cap = self.cap(layer);
        let cur = self.links(from, layer);
        if cur.contains(&to) || from == to {
            return Vec::new();
        }
        if cur.len() < cap {
            let mut l = cur.to_vec();
            l.push(to);
            self.set_links(from, layer, &l);
            return Vec::new();
        }
        let mut cand: Vec<Near> = cur
            .iter()
            .chain(std::iter::once(&to))
            .map(|&s| Near {
                dist: self.dist_slots(from, s),
                slot: s,
            })
            .collect();
        // On equal distances the new link goes first: the node it points at may have no other incoming link yet,
        // while the ones it displaces were linked when they were inserted (duplicates tie at distance 0).
        cand.sort_unstable_by(|a, b| {
            a.dist
                .total_cmp(&b.dist)
                .then_with(|| (b.slot == to).cmp(&(a.slot == to)))
                .then(a.slot.cmp(&b.slot))
        });
        let mut kept = self.select(&cand, cap, false);
        if layer == 0 {
            self.keep_last_link(from, &cand, &mut kept);
        }
        let dropped = cand
            .iter()
            .map(|n| n.slot)
            .filter(|s| *s != to && !kept.contains(s))
            .collect();
        self.set_links(from, layer, &kept);
        dropped
    }

    /// Shrinking `from`'s layer-0 list must not take the last link into a live node: with many equal distances
    /// (duplicates, or vectors that converge on one direction under cosine) the heuristic would otherwise orphan
    /// node after node, and searches could never return them. A candidate left out whose only incoming link is
    /// `from`'s (or none yet: the node being inserted) takes the place of the farthest kept node that another list
    /// also links to.
    fn keep_last_link(&self, from: u32, cand: &[Near], kept: &mut [u32]) {
        let current = self.links(from, 0);
        let others = |s: u32| {
            let total = self.incoming0.get(s as usize).copied().unwrap_or(0);
            total.saturating_sub(u32::from(current.contains(&s)))
        };
        for c in cand {
            if kept.contains(&c.slot) || self.dead[c.slot as usize] || others(c.slot) > 0 {
                continue;
            }
            let Some(pos) = kept.iter().rposition(|&k| others(k) > 0) else {
                return;
            };
            kept[pos] = c.slot;
        }
    }

    /// Alg. 4 (without extending the candidates): walks the candidates nearest first and keeps one only if it is
    /// closer to the base than to every one kept, so the links point in different directions. Candidates pruned
    /// that way fill the places left, nearest first (the paper's `keepPrunedConnections`), but only for a node's
    /// own new links (`fill`, not when a full list is shrunk) and only when the heuristic kept fewer than
    /// `m / FILL_BELOW_DIVISOR`: on duplicates or vectors that converge on one direction
    /// every candidate but the first is pruned, and lists of one or two links left a third of such nodes
    /// unreachable; on ordinary data the diverse lists alone search better (filling every list cost recall@10 at
    /// `ef` 64 on clustered data, 1.000 → 0.987; filling shrunk lists too, 0.989 → 0.980 at `ef` 16).
    /// `candidates` sorted nearest first.
    ///
    /// Duplicates of the base (candidates within [`DUPLICATE_DIST`] of it) are handled apart: at most
    /// `m / DUPLICATES_DIVISOR` of them are kept, and a kept duplicate shadows no other candidate. A duplicate is
    /// as near to every other candidate as the base itself, so under the plain rule the first duplicate kept pruned
    /// every link out of a group of equal vectors; once a list was shrunk to it, whole groups lost their way out
    /// and in (1,100 vectors of 15 distinct values: 537 unreachable after insertion, 15 after a rebuild and its
    /// re-linking).
    pub fn select(&self, candidates: &[Near], m: usize, fill: bool) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        // The kept candidates that are not duplicates of the base: only they shadow others.
        let mut shadows: Vec<u32> = Vec::with_capacity(m);
        let mut duplicates = 0usize;
        let duplicates_max = (m / DUPLICATES_DIVISOR).max(1);
        let is_dup = |c: &Near| self.params.metric != Metric::Dot && c.dist <= DUPLICATE_DIST;
        let mut pruned: Vec<u32> = Vec::new();
        // Duplicates newest first (slots are given in insertion order): a new node links to the latest of its
        // group and they link back, so each group is a chain that its oldest member — the one nodes outside link
        // to, nearest first by slot on a tie — leads through; nearest-first on slots, every node of a group linked
        // to the same few oldest ones, which then dropped the rest as their lists filled.
        let mut order: Vec<Near> = candidates.to_vec();
        let dups = order.partition_point(is_dup);
        order[..dups].sort_unstable_by_key(|c| std::cmp::Reverse(c.slot));
        for c in &order {
            if kept.len() >= m {
                break;
            }
            let keep = if is_dup(c) {
                duplicates < duplicates_max
            } else {
                shadows.iter().all(|&r| self.dist_slots(c.slot, r) > c.dist)
            };
            if keep {
                kept.push(c.slot);
                if is_dup(c) {
                    duplicates += 1;
                } else {
                    shadows.push(c.slot);
                }
            } else {
                pruned.push(c.slot);
            }
        }
        if fill && kept.len() < m / FILL_BELOW_DIVISOR {
            kept.extend(pruned.into_iter().take(m - kept.len()));
        }
        kept
    }

    /// Greedy search with one candidate on `layer` (the descent through the upper layers).
    pub fn greedy(&self, q: &[f32], mut cur: Near, layer: usize) -> Near {
        loop {
            let mut moved = false;
            for &n in self.links(cur.slot, layer) {
                let d = self.dist_to(q, n);
                if d < cur.dist {
                    cur = Near { dist: d, slot: n };
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Alg. 2: the `ef` nearest slots to `q` on `layer` that `accept` takes, nearest first. Every slot reached is
    /// walked through whether accepted or not (tombstones and filtered-out nodes still navigate): the search
    /// continues until `ef` accepted slots are found and no candidate can improve them, or the reachable graph is
    /// exhausted.
    pub fn search_layer(
        &self,
        q: &[f32],
        eps: &[Near],
        ef: usize,
        layer: usize,
        visited: &mut Visited,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Near> {
        visited.reset(self.n_slots());
        let mut cand: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
        let mut found: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
        for &e in eps {
            if !visited.insert(e.slot) {
                continue;
            }
            cand.push(Reverse(e));
            if accept(e.slot) {
                found.push(e);
                if found.len() > ef {
                    found.pop();
                }
            }
        }
        let mut bound = if found.len() >= ef {
            found.peek().map_or(f32::INFINITY, |n| n.dist)
        } else {
            f32::INFINITY
        };
        while let Some(Reverse(c)) = cand.pop() {
            if c.dist > bound {
                break;
            }
            for &n in self.links(c.slot, layer) {
                if !visited.insert(n) {
                    continue;
                }
                let d = self.dist_to(q, n);
                if d < bound {
                    let near = Near { dist: d, slot: n };
                    cand.push(Reverse(near));
                    if accept(n) {
                        found.push(near);
                        if found.len() > ef {
                            found.pop();
                        }
                        if found.len() >= ef {
                            bound = found.peek().map_or(f32::INFINITY, |n| n.dist);
                        }
                    }
                }
            }
        }
        found.into_sorted_vec()
    }

    /// The `k` nearest live slots that `filter` takes (`ef` candidates on layer 0), nearest first.
    pub fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        visited: &mut Visited,
        filter: Option<&dyn Fn(&str) -> bool>,
    ) -> Vec<Near> {
        if self.entry.is_none() || self.n_live() == 0 || k == 0 {
            return Vec::new();
        }
        self.search_from(q, k, ef, DESCENT_EF, visited, filter)
    }

    /// [`Graph::search`] with `descent_ef` candidates kept on each upper layer (1: the paper's greedy descent).
    pub fn search_from(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        descent_ef: usize,
        visited: &mut Visited,
        filter: Option<&dyn Fn(&str) -> bool>,
    ) -> Vec<Near> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let mut eps = vec![Near {
            dist: self.dist_to(q, entry),
            slot: entry,
        }];
        for layer in (1..=usize::from(self.top_level)).rev() {
            if descent_ef <= 1 {
                eps[0] = self.greedy(q, eps[0], layer);
            } else {
                let w = self.search_layer(q, &eps, descent_ef, layer, visited, |_| true);
                if !w.is_empty() {
                    eps = w;
                }
            }
        }
        let accept =
            |s: u32| !self.dead[s as usize] && filter.is_none_or(|f| f(&self.ids[s as usize]));
        let mut w = self.search_layer(q, &eps, ef.max(k), 0, visited, accept);
        w.truncate(k);
        w
    }

    /// Brute force: the `k` nearest live slots that `filter` takes, nearest first.
    pub fn exact(&self, q: &[f32], k: usize, filter: Option<&dyn Fn(&str) -> bool>) -> Vec<Near> {
        if k == 0 {
            return Vec::new();
        }
        let mut best: BinaryHeap<Near> = BinaryHeap::with_capacity(k + 1);
        for s in 0..self.n_slots() as u32 {
            if self.dead[s as usize] {
                continue;
            }
            let d = self.dist_to(q, s);
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
        best.into_sorted_vec()
    }

    /// A new graph with the same parameters holding only the live nodes, inserted in slot order (so the same live
    /// set always gives the same graph). Versions, the documents without a vector and the LSNs are kept.
    pub fn without_tombstones(&self, visited: &mut Visited) -> Graph {
        let mut g = Graph::new(self.params.clone());
        g.dim = self.dim;
        for s in 0..self.n_slots() as u32 {
            if !self.dead[s as usize] {
                let id = self.ids[s as usize].clone();
                g.upsert(id, self.lsns[s as usize], self.vector(s), visited);
            }
        }
        g.unindexed = self.unindexed.clone();
        g.applied_lsn = self.applied_lsn;
        g.rebuilt_lsn = self.rebuilt_lsn;
        g
    }

    /// Checks the invariants of the module doc; each violation described (at most `max` of them).
    pub fn validate(&self, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let n = self.n_slots();
        let mut push = |s: String| {
            if out.len() < max {
                out.push(s);
            }
        };
        if self.lsns.len() != n
            || self.levels.len() != n
            || self.dead.len() != n
            || self.upper.len() != n
            || self.layer0.len() != n * (self.params.m0 + 1)
            || self.vectors.len() != n * self.dim
        {
            push(format!(
                "per-slot arrays disagree on the number of slots ({n})"
            ));
            return out;
        }
        match self.entry {
            None if n > 0 => push("no entry point although the graph has nodes".into()),
            Some(e) if e as usize >= n => push(format!("entry point {e} is not a slot")),
            Some(e) if self.levels[e as usize] != self.top_level => push(format!(
                "entry point {e} has level {} but the top level is {}",
                self.levels[e as usize], self.top_level
            )),
            _ => {}
        }
        let mut seen = Visited::default();
        for s in 0..n as u32 {
            let level = usize::from(self.levels[s as usize]);
            if self.upper[s as usize].len() != level * (self.params.m + 1) {
                push(format!(
                    "slot {s}: upper-layer links do not match level {level}"
                ));
                continue;
            }
            for layer in 0..=level {
                let cap = self.cap(layer);
                let count = if layer == 0 {
                    self.layer0[s as usize * (self.params.m0 + 1)] as usize
                } else {
                    self.upper[s as usize][(layer - 1) * (self.params.m + 1)] as usize
                };
                if count > cap {
                    push(format!(
                        "slot {s} layer {layer}: {count} links, at most {cap}"
                    ));
                    continue;
                }
                seen.reset(n);
                for &t in self.links(s, layer) {
                    if t as usize >= n || t == s {
                        push(format!(
                            "slot {s} layer {layer}: link to {t} is not another slot"
                        ));
                    } else if usize::from(self.levels[t as usize]) < layer {
                        push(format!(
                            "slot {s} layer {layer}: link to {t} which has no layer {layer}"
                        ));
                    } else if !seen.insert(t) {
                        push(format!("slot {s} layer {layer}: link to {t} twice"));
                    }
                }
            }
        }
        let dead = self.dead.iter().filter(|d| **d).count();
        if dead != self.n_dead || self.by_id.len() != n - dead {
            push(format!(
                "{} live ids for {} live slots ({dead} tombstones, {} counted)",
                self.by_id.len(),
                n - dead,
                self.n_dead
            ));
        }
        for (id, &s) in &self.by_id {
            if s as usize >= n || self.dead[s as usize] || *self.ids[s as usize] != **id {
                push(format!(
                    "id {id:?} maps to slot {s}, which does not hold it live"
                ));
            }
            if self.unindexed.contains_key(id) {
                push(format!(
                    "id {id:?} is both indexed and recorded without a vector"
                ));
            }
        }
        out
    }
}

/// SplitMix64 finaliser: a well-mixed 64-bit hash of `x`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;

    fn graph_of(n: usize, metric: Metric) -> Graph {
        let mut g = Graph::new(HnswParams::with_metric(metric));
        let mut vis = Visited::default();
        for i in 0..n {
            let v: Vec<f32> = (0..8)
                .map(|j| ((i * 31 + j * 17) % 23) as f32 - 11.0)
                .collect();
            let v = g.prepare(&v).unwrap();
            g.upsert(Arc::from(format!("d{i}")), i as u64 + 1, &v, &mut vis);
        }
        g
    }

    /// Experiment (`cargo test --release -p index-vector --lib descent -- --ignored --nocapture`): recall@10 of one
    /// clustered graph (`MEDIC_DESCENT_N`, default 100 000 × 128, L2) searched with a greedy descent and with wider
    /// beams on the upper layers, and how many queries found under half of their neighbours.
    #[test]
    #[ignore]
    fn descent_experiment() {
        let n: usize = std::env::var("MEDIC_DESCENT_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let (data, queries) = crate::synth::Clustered::new(n, 128, 7).generate(500);
        let mut g = Graph::new(HnswParams::with_metric(Metric::L2));
        let mut vis = Visited::default();
        let t = std::time::Instant::now();
        for (i, v) in data.iter().enumerate() {
            g.upsert(Arc::from(format!("{i}")), i as u64 + 1, v, &mut vis);
        }
        eprintln!("built {n} in {:.1} s", t.elapsed().as_secs_f64());
        let exact: Vec<Vec<Near>> = queries.iter().map(|q| g.exact(q, 10, None)).collect();
        for ef in [16, 32, 64, 128] {
            for descent in [1, 2, 4, 8, 16] {
                let (mut rec, mut lost) = (0.0, 0);
                let t = std::time::Instant::now();
                for (q, e) in queries.iter().zip(&exact) {
                    let w = g.search_from(q, 10, ef, descent, &mut vis, None);
                    let last = e.last().map_or(0.0, |n| n.dist);
                    let tol = 1e-5_f32.max(last * 1e-4);
                    let r = w.iter().filter(|h| h.dist <= last + tol).count().min(10) as f64 / 10.0;
                    lost += usize::from(r < 0.5);
                    rec += r;
                }
                eprintln!(
                    "ef {ef} descent {descent}: recall@10 {:.4}, queries < 0.5: {lost}, mean {:.3} ms",
                    rec / queries.len() as f64,
                    t.elapsed().as_secs_f64() * 1e3 / queries.len() as f64
                );
            }
        }
    }

    #[test]
    fn a_built_graph_holds_its_invariants() {
        for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
            let g = graph_of(500, metric);
            assert_eq!(g.validate(10), Vec::<String>::new(), "{metric:?}");
            assert_eq!(g.n_live(), 500);
        }
    }

    #[test]
    fn levels_depend_on_id_and_seed_only_and_follow_the_geometric_law() {
        let g = Graph::new(HnswParams::default());
        let n = 20_000;
        let above0 = (0..n).filter(|i| g.level_for(&format!("x{i}")) > 0).count();
        // P(level > 0) = 1/m = 1/16: 1250 expected, ±5 standard deviations.
        assert!((1080..=1420).contains(&above0), "{above0}");
        assert_eq!(g.level_for("a"), g.level_for("a"));
        let other = Graph::new(HnswParams {
            seed: 7,
            ..HnswParams::default()
        });
        let differ = (0..200)
            .filter(|i| g.level_for(&format!("x{i}")) != other.level_for(&format!("x{i}")))
            .count();
        assert!(differ > 0);
    }

    #[test]
    fn removing_the_entry_moves_it_to_a_live_top_node() {
        let mut g = graph_of(300, Metric::L2);
        let e = g.entry.unwrap();
        let id = g.ids[e as usize].clone();
        g.remove(&id);
        let e2 = g.entry.unwrap();
        assert_ne!(e, e2);
        assert!(!g.dead[e2 as usize]);
        assert_eq!(Some(g.levels[e2 as usize]), g.top_live_level());
        assert_eq!(g.validate(10), Vec::<String>::new());
    }
}
