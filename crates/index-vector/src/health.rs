//! The HNSW graph's health: what a search can reach, what no link points to, how the degrees and layers are
//! spread, how many tombstones there are, and how good the answers are (sampled recall against brute force).
//!
//! Owns [`HnswHealth`] (every figure, serde, for `/v1/collections/{c}` and metrics), [`HealthOptions`] and the
//! reachability scan used by the repairs.
//!
//! Definitions:
//! - *reachable*: what a search can visit. Starting from the entry point on the top layer, a breadth-first walk of
//!   each layer from everything reached so far, descending to layer 0 (a node reached on a layer is a start on the
//!   layers below). Tombstones are walked through; only live nodes are counted.
//! - *orphan*: a live node other than the entry point that no node (live or tombstone) links to on layer 0.
//! - *recall@10*: for up to `recall_queries` live nodes drawn with a seed, the fraction of the brute-force ten
//!   nearest (by distance: ties at the tenth distance count as found) that the search returns.

use rand::seq::index::sample;
use rand::{SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::graph::{Graph, Visited};

/// Structural problem of a vector index: the sampled recall@10 is below the configured floor.
pub const RECALL_BELOW_FLOOR: &str = "recall_below_floor";

/// What to measure beyond the structure.
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// Live nodes used as queries for the recall sample (0: no recall measured).
    pub recall_queries: usize,
    /// Seed of the sample.
    pub seed: u64,
    /// `ef` of the sampled searches (`None`: the index's `ef_search`).
    pub ef: Option<usize>,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            recall_queries: 32,
            seed: 0x7265_6361_6c6c,
            ef: None,
        }
    }
}

/// Nodes on one level.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LevelCount {
    /// The level (a node on level `l` is on layers `0..=l`).
    pub level: u8,
    /// Live nodes whose highest layer is this one.
    pub nodes: u64,
    /// What the geometric level law expects: `live · (1 − p) · p^level`, `p = 1/m`.
    pub expected: f64,
}

/// Fewest tombstones that make a graph's compaction due, whatever their fraction: a store of a few documents
/// overwritten in place has half its nodes tombstones after one round of overwrites, which costs nothing worth a
/// repair (a search skips them; the next compaction past this floor drops them).
pub const COMPACT_TOMBSTONES_MIN: u64 = 256;

/// Every health figure of one HNSW index.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HnswHealth {
    /// Nodes, tombstones included.
    pub nodes: u64,
    /// Live nodes (searchable vectors).
    pub live: u64,
    /// Tombstones: deleted or replaced vectors still in the graph.
    pub tombstones: u64,
    /// `tombstones / nodes` (0 for an empty graph).
    pub tombstone_fraction: f64,
    /// Whether the tombstone fraction is past the compaction threshold and the tombstones are at least
    /// [`COMPACT_TOMBSTONES_MIN`] (a few in a tiny graph cost nothing worth an incident).
    pub compaction_due: bool,
    /// Documents known without a vector (none, or one refused).
    pub unindexed: u64,
    /// The entry point's slot, if any.
    pub entry: Option<u32>,
    /// Whether the entry point is a live node.
    pub entry_live: bool,
    /// The entry point's level.
    pub entry_level: u8,
    /// The highest level of a live node; the entry point should be on it.
    pub top_live_level: u8,
    /// Live nodes a search can reach.
    pub reachable: u64,
    /// Live nodes a search cannot reach.
    pub unreachable: u64,
    /// `reachable / live` (1 for an empty graph).
    pub reachable_fraction: f64,
    /// Live nodes (not the entry) with no incoming link on layer 0.
    pub orphans: u64,
    /// Live nodes by layer-0 out-degree: `degree_histogram[d]` nodes have `d` links (`0..=m0`).
    pub degree_histogram: Vec<u64>,
    /// Mean layer-0 out-degree of live nodes.
    pub mean_degree: f64,
    /// Live nodes per level, against the geometric law.
    pub levels: Vec<LevelCount>,
    /// Sampled recall@10 against brute force (`None`: not measured, or no live node).
    pub recall_at_10: Option<f64>,
    /// Queries behind `recall_at_10`.
    pub recall_queries: u64,
    /// Time of the reachability scan, ms.
    pub scan_ms: f64,
    /// Heap bytes the index holds (vectors, links, ids; allocator overhead not counted).
    pub memory_bytes: u64,
}

impl HnswHealth {
    /// No damage to the graph's connectivity: every live node reachable, no orphan, entry live on the top level.
    pub fn connected(&self) -> bool {
        self.unreachable == 0
            && self.orphans == 0
            && (self.live == 0 || (self.entry_live && self.entry_level == self.top_live_level))
    }
}

/// Per slot, whether a search can reach it (see the module doc). Tombstones are marked too.
pub(crate) fn reachable(g: &Graph) -> Vec<bool> {
    let mut reached = vec![false; g.n_slots()];
    let Some(entry) = g.entry else {
        return reached;
    };
    reached[entry as usize] = true;
    let mut order = vec![entry];
    for layer in (0..=usize::from(g.top_level)).rev() {
        let mut i = 0;
        // `order` grows while it is walked: a breadth-first walk of this layer from everything reached so far.
        while i < order.len() {
            let s = order[i];
            i += 1;
            if usize::from(g.levels[s as usize]) < layer {
                continue;
            }
            for &t in g.links(s, layer) {
                if !reached[t as usize] {
                    reached[t as usize] = true;
                    order.push(t);
                }
            }
        }
    }
    reached
}

/// Incoming layer-0 links per slot.
pub(crate) fn in_degrees(g: &Graph) -> Vec<u32> {
    let mut deg = vec![0u32; g.n_slots()];
    for s in 0..g.n_slots() as u32 {
        for &t in g.links(s, 0) {
            deg[t as usize] += 1;
        }
    }
    deg
}

/// Measures everything but recall.
pub(crate) fn structure(g: &Graph) -> HnswHealth {
    let started = std::time::Instant::now();
    let reached = reachable(g);
    let scan_ms = started.elapsed().as_secs_f64() * 1e3;
    let indeg = in_degrees(g);
    let n = g.n_slots();
    let live = g.n_live() as u64;
    let mut reachable = 0u64;
    let mut orphans = 0u64;
    let mut hist = vec![0u64; g.params.m0 + 1];
    let mut degree_sum = 0u64;
    let mut per_level = vec![0u64; usize::from(crate::params::LEVEL_MAX) + 1];
    for s in 0..n {
        if g.dead[s] {
            continue;
        }
        if reached[s] {
            reachable += 1;
        }
        if indeg[s] == 0 && g.entry != Some(s as u32) {
            orphans += 1;
        }
        let d = g.links(s as u32, 0).len();
        hist[d] += 1;
        degree_sum += d as u64;
        per_level[usize::from(g.levels[s])] += 1;
    }
    let p = 1.0 / g.params.m as f64;
    let top = per_level.iter().rposition(|c| *c > 0).unwrap_or(0);
    let levels = (0..=top)
        .map(|l| LevelCount {
            level: l as u8,
            nodes: per_level[l],
            expected: live as f64 * (1.0 - p) * p.powi(l as i32),
        })
        .collect();
    let tombstone_fraction = if n == 0 {
        0.0
    } else {
        g.n_dead as f64 / n as f64
    };
    let (entry_live, entry_level) = match g.entry {
        Some(e) => (!g.dead[e as usize], g.levels[e as usize]),
        None => (false, 0),
    };
    HnswHealth {
        nodes: n as u64,
        live,
        tombstones: g.n_dead as u64,
        tombstone_fraction,
        compaction_due: tombstone_fraction > g.params.compact_tombstone_fraction
            && g.n_dead as u64 >= COMPACT_TOMBSTONES_MIN,
        unindexed: g.unindexed.len() as u64,
        entry: g.entry,
        entry_live,
        entry_level,
        top_live_level: g.top_live_level().unwrap_or(0),
        reachable,
        unreachable: live - reachable,
        reachable_fraction: if live == 0 {
            1.0
        } else {
            reachable as f64 / live as f64
        },
        orphans,
        degree_histogram: hist,
        mean_degree: if live == 0 {
            0.0
        } else {
            degree_sum as f64 / live as f64
        },
        levels,
        recall_at_10: None,
        recall_queries: 0,
        scan_ms,
        memory_bytes: g.memory_bytes(),
    }
}

/// Sampled recall@10 (see the module doc) and the number of queries; `None` when nothing is live or asked for.
pub(crate) fn sampled_recall(
    g: &Graph,
    opts: &HealthOptions,
    visited: &mut Visited,
) -> (Option<f64>, u64) {
    let live: Vec<u32> = (0..g.n_slots() as u32)
        .filter(|&s| !g.dead[s as usize])
        .collect();
    let ef = opts.ef.unwrap_or(g.params.ef_search);
    sampled_recall_of(
        &live,
        opts.recall_queries,
        opts.seed,
        |s| g.exact(g.vector(s), 10, None),
        |s| g.search(g.vector(s), 10, ef, visited, None),
    )
}

/// Recall@10 over up to `queries` of the `live` slots drawn with `seed`, each slot's own vector the query: the
/// fraction of `exact`'s hits `approx` found (see [`recall_hits`]), and the queries run. Shared by HNSW and IVF.
pub(crate) fn sampled_recall_of(
    live: &[u32],
    queries: usize,
    seed: u64,
    mut exact: impl FnMut(u32) -> Vec<crate::graph::Near>,
    mut approx: impl FnMut(u32) -> Vec<crate::graph::Near>,
) -> (Option<f64>, u64) {
    let n = queries.min(live.len());
    if n == 0 {
        return (None, 0);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut found = 0usize;
    let mut wanted = 0usize;
    for i in sample(&mut rng, live.len(), n) {
        let e = exact(live[i]);
        found += recall_hits(&e, &approx(live[i]));
        wanted += e.len();
    }
    (Some(found as f64 / wanted.max(1) as f64), n as u64)
}

/// How many of `exact`'s hits `approx` found, by distance: an approximate hit no farther than the last exact one
/// counts (so equal distances, e.g. duplicate vectors, are not counted as misses), at most `exact.len()`.
pub(crate) fn recall_hits(exact: &[crate::graph::Near], approx: &[crate::graph::Near]) -> usize {
    let Some(last) = exact.last() else {
        return 0;
    };
    let tol = 1e-6_f32.max(last.dist.abs() * 1e-5);
    approx
        .iter()
        .filter(|a| a.dist <= last.dist + tol)
        .count()
        .min(exact.len())
}
