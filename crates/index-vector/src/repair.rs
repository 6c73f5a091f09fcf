//! Repairs of the HNSW graph and the faults that need them.
//!
//! Owns the re-linking of unreachable and orphaned nodes ([`relink`]), the graph faults for tests and chaos
//! ([`GraphFault`], [`inject`]) and their reports. Compaction and the full rebuild are
//! [`Graph::without_tombstones`] driven by [`crate::hnsw::HnswIndex`], which validates and swaps the new graph.
//!
//! Re-linking, bounded by a budget of nodes per call: the entry point is put back on a live node of the top level;
//! then each live node a search cannot reach (then each orphan) is searched for from the entry point — which can
//! only find reachable nodes — and linked both ways to the nodes the heuristic picks among them. The heuristic may
//! refuse the incoming links (a neighbour's list is full of closer, more diverse links — typical of duplicate
//! vectors, which are at distance 0 from each other); then the link is forced into the nearest list that has room,
//! or replaces that list's farthest link whose target keeps another incoming link, so no new orphan is made.
//! Every unreachable node gets its own search and links, and only nodes reachable before the pass (or linked by it)
//! are taken as neighbours: a cut-off region linked back through one node would be reachable, but a search would
//! rarely find its way in, so each of its nodes is linked to the rest of the graph again. A pass ends: a node is
//! linked by the heuristic (which can evict another node's last incoming link) at most once per pass, and only
//! gets a forced link (which never orphans anyone) when it comes back to the work.

use std::collections::VecDeque;
use std::sync::Arc;

use rand::seq::index::sample;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::graph::{Graph, Near, Visited};
use crate::health::{in_degrees, reachable};

/// What one re-linking pass did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Relinked {
    /// Whether the entry point was moved (it was a tombstone or below the top live level).
    pub entry_reset: bool,
    /// Nodes linked into the graph.
    pub relinked: u64,
    /// Links forced in past the heuristic.
    pub forced: u64,
    /// Nodes still waiting when the budget ran out.
    pub left: u64,
}

/// Rounds of re-linking in one call: each starts from the graph as it is (reachability measured again), since a
/// forced link may have taken the last way in of a node the round counted as reached.
const ROUNDS: usize = 4;

/// Re-links unreachable and orphaned live nodes, at most `budget` of them (see the module doc).
pub(crate) fn relink(g: &mut Graph, budget: usize, visited: &mut Visited) -> Relinked {
    let mut out = Relinked::default();
    if g.n_live() == 0 {
        return out;
    }
    let entry_ok = g
        .entry
        .is_some_and(|e| !g.dead[e as usize] && Some(g.levels[e as usize]) == g.top_live_level());
    if !entry_ok {
        out.entry_reset = g.reset_entry();
    }
    for _ in 0..ROUNDS {
        let before = out.relinked;
        relink_round(g, budget, visited, &mut out);
        if out.relinked == before || out.left > 0 {
            break;
        }
    }
    out
}

/// One round: every node that needs it, from the reachability measured at its start.
fn relink_round(g: &mut Graph, budget: usize, visited: &mut Visited, out: &mut Relinked) {
    out.left = 0;
    let mut reached = reachable(g);
    let mut indeg = in_degrees(g);
    let live = |g: &Graph, s: usize| !g.dead[s];
    let mut work: VecDeque<u32> = (0..g.n_slots())
        .filter(|&s| live(g, s) && !reached[s])
        .map(|s| s as u32)
        .collect();
    work.extend(
        (0..g.n_slots())
            .filter(|&s| live(g, s) && reached[s] && indeg[s] == 0 && g.entry != Some(s as u32))
            .map(|s| s as u32),
    );
    let mut linked_once = vec![false; g.n_slots()];
    while let Some(u) = work.pop_front() {
        let needs = !reached[u as usize] || (indeg[u as usize] == 0 && g.entry != Some(u));
        if !needs || g.dead[u as usize] {
            continue;
        }
        if out.relinked as usize >= budget {
            out.left = 1 + work
                .iter()
                .filter(|&&s| !reached[s as usize] || indeg[s as usize] == 0)
                .count() as u64;
            break;
        }
        let w = nearest_reachable(g, u, &reached, visited);
        if w.is_empty() {
            continue;
        }
        out.relinked += 1;
        // Linking may evict a link that was another node's last way in, which then joins the work; with
        // near-duplicate vectors two nodes can evict each other for ever. So a node is linked by the heuristic once
        // per pass; when it comes back it only gets a forced link, which never makes a new orphan.
        if !std::mem::replace(&mut linked_once[u as usize], true) {
            let chosen = g.select(&w, g.params.m, true);
            for &e in &chosen {
                link(g, u, e, &mut indeg, &mut work);
            }
            for &e in &chosen {
                link(g, e, u, &mut indeg, &mut work);
            }
        }
        // Reached only through a link from a reached node: incoming links from the cut-off region do not count.
        let mut linked_in = w.iter().any(|n| g.links(n.slot, 0).contains(&u));
        if !linked_in && force_in_link(g, u, &w, &mut indeg) {
            out.forced += 1;
            linked_in = true;
        }
        if linked_in {
            reached[u as usize] = true;
        }
    }
}

/// The nearest reachable nodes to `u` (not `u`), nearest first, found by a search from the entry point.
fn nearest_reachable(g: &Graph, u: u32, reached: &[bool], visited: &mut Visited) -> Vec<Near> {
    let Some(entry) = g.entry else {
        return Vec::new();
    };
    let q = g.vector(u).to_vec();
    let mut cur = Near {
        dist: g.dist_to(&q, entry),
        slot: entry,
    };
    for layer in (1..=usize::from(g.top_level)).rev() {
        cur = g.greedy(&q, cur, layer);
    }
    let ef = g.params.ef_construction;
    g.search_layer(&q, &[cur], ef, 0, visited, |s| {
        s != u && reached[s as usize]
    })
}

/// Adds `from → to` on layer 0, keeping the in-degrees; a node that lost its last incoming link joins the work.
fn link(g: &mut Graph, from: u32, to: u32, indeg: &mut [u32], work: &mut VecDeque<u32>) {
    let had = g.links(from, 0).contains(&to);
    for d in g.connect(from, to, 0) {
        indeg[d as usize] -= 1;
        if indeg[d as usize] == 0 && !g.dead[d as usize] {
            work.push_back(d);
        }
    }
    if !had && g.links(from, 0).contains(&to) {
        indeg[to as usize] += 1;
    }
}

/// Puts a link to `u` into the nearest candidate's list past the heuristic: into free room, or in place of the
/// farthest link whose target has another incoming link. Returns whether a link was placed.
fn force_in_link(g: &mut Graph, u: u32, cands: &[Near], indeg: &mut [u32]) -> bool {
    let cap = g.cap(0);
    for c in cands {
        let e = c.slot;
        let mut links = g.links(e, 0).to_vec();
        if links.len() < cap {
            links.push(u);
        } else {
            let victim = links
                .iter()
                .enumerate()
                .filter(|&(_, &x)| indeg[x as usize] > 1)
                .max_by(|a, b| g.dist_slots(e, *a.1).total_cmp(&g.dist_slots(e, *b.1)))
                .map(|(i, _)| i);
            let Some(i) = victim else {
                continue;
            };
            indeg[links[i] as usize] -= 1;
            links[i] = u;
        }
        g.set_links(e, 0, &links);
        indeg[u as usize] += 1;
        return true;
    }
    false
}

/// A fault of the graph, for tests and chaos drills. Each is seeded: the same seed on the same graph does the same.
#[derive(Clone, Debug, PartialEq)]
pub enum GraphFault {
    /// Every link to `nodes` random live nodes (never the entry point) is removed, on every layer: orphans that no
    /// search reaches.
    Orphans { nodes: usize, seed: u64 },
    /// A random live node and its `nodes − 1` nearest live nodes lose every link from outside the group, on every
    /// layer: a region cut off from the rest (never holding the entry point).
    CutRegion { nodes: usize, seed: u64 },
    /// The entry point is moved to a random live node of level 0 (a search then starts low, on one node).
    WrongEntry { seed: u64 },
    /// Every node's links are replaced: on layer 0 by a ring through all the nodes in a seeded random order, the
    /// layers above emptied. Every node stays reachable and keeps an incoming link, the entry point stays put: only
    /// the sampled recall shows the damage (a search is no longer led towards the query).
    ScrambledLinks { seed: u64 },
    /// `fraction` of the live nodes become tombstones (the documents are dropped from the index: a check against
    /// the table then finds them missing).
    Tombstones { fraction: f64, seed: u64 },
}

/// What a fault did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct FaultReport {
    /// The ids of the nodes it hit (empty for a fault that hits every node).
    pub ids: Vec<Arc<str>>,
    /// Links removed.
    pub links_removed: u64,
}

/// Applies `fault` to `g`.
pub(crate) fn inject(g: &mut Graph, fault: &GraphFault) -> FaultReport {
    let live: Vec<u32> = (0..g.n_slots() as u32)
        .filter(|&s| !g.dead[s as usize] && g.entry != Some(s))
        .collect();
    let mut out = FaultReport::default();
    match *fault {
        GraphFault::Orphans { nodes, seed } => {
            let mut rng = StdRng::seed_from_u64(seed);
            let n = nodes.min(live.len());
            let mut target = vec![false; g.n_slots()];
            for i in sample(&mut rng, live.len(), n) {
                target[live[i] as usize] = true;
            }
            out.links_removed = cut_links_into(g, &target, &vec![false; g.n_slots()]);
            out.ids = hit_ids(g, &target);
        }
        GraphFault::CutRegion { nodes, seed } => {
            if live.is_empty() {
                return out;
            }
            let mut rng = StdRng::seed_from_u64(seed);
            let center = live[rng.random_range(0..live.len())];
            let q = g.vector(center).to_vec();
            let mut region = vec![false; g.n_slots()];
            let near = g.exact(&q, nodes.saturating_add(1), None);
            for s in near
                .iter()
                .map(|n| n.slot)
                .filter(|&s| g.entry != Some(s))
                .take(nodes)
            {
                region[s as usize] = true;
            }
            out.links_removed = cut_links_into(g, &region, &region);
            out.ids = hit_ids(g, &region);
        }
        GraphFault::WrongEntry { seed } => {
            let low: Vec<u32> = live
                .iter()
                .copied()
                .filter(|&s| g.levels[s as usize] == 0)
                .collect();
            if let Some(&s) = low.get(StdRng::seed_from_u64(seed).random_range(0..low.len().max(1)))
            {
                g.entry = Some(s);
                g.top_level = 0;
                out.ids = vec![g.ids[s as usize].clone()];
            }
        }
        GraphFault::ScrambledLinks { seed } => {
            let n = g.n_slots();
            if n < 2 {
                return out;
            }
            let mut rng = StdRng::seed_from_u64(seed);
            let ring: Vec<u32> = sample(&mut rng, n, n)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            for s in 0..n as u32 {
                for layer in 0..=usize::from(g.levels[s as usize]) {
                    out.links_removed += g.links(s, layer).len() as u64;
                    g.set_links(s, layer, &[]);
                }
            }
            for (i, &s) in ring.iter().enumerate() {
                let next = ring[(i + 1) % n];
                let prev = ring[(i + n - 1) % n];
                let links: Vec<u32> = if next == prev {
                    vec![next]
                } else {
                    vec![next, prev]
                };
                g.set_links(s, 0, &links);
            }
            // Every node is hit: `ids` stays empty rather than listing the whole graph.
        }
        GraphFault::Tombstones { fraction, seed } => {
            let mut rng = StdRng::seed_from_u64(seed);
            let n = ((live.len() as f64 * fraction.clamp(0.0, 1.0)) as usize).min(live.len());
            for i in sample(&mut rng, live.len(), n) {
                let id = g.ids[live[i] as usize].clone();
                g.remove(&id);
                out.ids.push(id);
            }
        }
    }
    out
}

/// Removes every link into a `target` slot from a slot that is not `inside` (on every layer); returns how many.
fn cut_links_into(g: &mut Graph, target: &[bool], inside: &[bool]) -> u64 {
    let mut removed = 0u64;
    for s in 0..g.n_slots() as u32 {
        if inside[s as usize] {
            continue;
        }
        for layer in 0..=usize::from(g.levels[s as usize]) {
            let links = g.links(s, layer);
            if !links.iter().any(|&t| target[t as usize]) {
                continue;
            }
            let kept: Vec<u32> = links
                .iter()
                .copied()
                .filter(|&t| !target[t as usize])
                .collect();
            removed += (links.len() - kept.len()) as u64;
            g.set_links(s, layer, &kept);
        }
    }
    removed
}

fn hit_ids(g: &Graph, target: &[bool]) -> Vec<Arc<str>> {
    (0..g.n_slots())
        .filter(|&s| target[s])
        .map(|s| g.ids[s].clone())
        .collect()
}
