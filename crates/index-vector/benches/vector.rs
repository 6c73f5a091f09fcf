//! `cargo bench -p index-vector`: medic's HNSW against brute force and `hnsw_rs` on the same data, in the same run.
//!
//! Data (seeded): clustered vectors of low intrinsic dimension (`synth::Clustered`) and i.i.d. Gaussian vectors.
//! For each: build rate (single-threaded inserts, both libraries), resident memory added by the build, the
//! reachability scan, and single queries (k = 10) at several `ef`: recall@10 against brute force, p50 / p99
//! latency; brute force's own latency; ratios medic / hnsw_rs. Euclidean metric throughout (hnsw_rs `DistL2`).
//! Then the healing figures: the re-link of what the build left unreachable (`repair_connectivity`, unbounded), and
//! 30% of the vectors deleted (seeded), the graph repaired as the engine does (`compact`, then a re-link) and its
//! recall@10 compared with a fresh build of the remaining 70% (same insertion order) at every `ef`.
//!
//! Environment: `MEDIC_BENCH_N` (vectors, default 20000; the reference size is 100000), `MEDIC_BENCH_DIM` (128),
//! `MEDIC_BENCH_QUERIES` (500), `MEDIC_BENCH_EF` (comma list, default `16,32,64,128`), `MEDIC_BENCH_DATA`
//! (`clustered,gaussian`), `MEDIC_BENCH_SEED` (7), `MEDIC_BENCH_DELETE` (1; 0 skips the deletion figures and their
//! fresh build).

use std::sync::Arc;
use std::time::Instant;

use hnsw_rs::prelude::{DistL2, Hnsw};
use index_vector::synth::{Clustered, gaussian_vectors};
use index_vector::{HealthOptions, Hit, HnswIndex, HnswParams, Metric};
use store::derived::{Change, DEFAULT_COLLECTION, DerivedIndex};
use store::io::IoFaults;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

struct Lat {
    p50_ms: f64,
    p99_ms: f64,
}

fn lat(mut v: Vec<f64>) -> Lat {
    v.sort_by(f64::total_cmp);
    Lat {
        p50_ms: percentile(&v, 0.5),
        p99_ms: percentile(&v, 0.99),
    }
}

/// Recall of ids against the exact hits (by distance, so ties count).
fn recall_by_distance(exact: &[Hit], found_dists: &[f32]) -> f64 {
    let Some(last) = exact.last() else {
        return 1.0;
    };
    let tol = 1e-5_f32.max(last.distance * 1e-4);
    let n = found_dists
        .iter()
        .filter(|d| **d <= last.distance + tol)
        .count()
        .min(exact.len());
    n as f64 / exact.len() as f64
}

/// Mean recall@10 of medic's index over `queries` at `ef`, the latencies, and how many queries found under half of
/// their true neighbours (a search that ended in the wrong region, not a slightly short list).
fn measure(
    idx: &HnswIndex,
    queries: &[Vec<f32>],
    exact: &[Vec<Hit>],
    ef: usize,
) -> (f64, Lat, usize) {
    let mut ms = Vec::with_capacity(queries.len());
    let mut rec = 0.0;
    let mut lost = 0;
    for (q, e) in queries.iter().zip(exact) {
        let t = Instant::now();
        let hits = idx.search(q, 10, Some(ef), None).expect("search");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        let d: Vec<f32> = hits.iter().map(|h| h.distance).collect();
        let r = recall_by_distance(e, &d);
        lost += usize::from(r < 0.5);
        rec += r;
    }
    (rec / queries.len().max(1) as f64, lat(ms), lost)
}

fn changes_of(data: &[Vec<f32>], ids: impl Iterator<Item = usize>) -> Vec<Change> {
    ids.enumerate()
        .map(|(lsn, i)| Change {
            lsn: lsn as u64 + 1,
            collection: Arc::from(DEFAULT_COLLECTION),
            id: Arc::from(format!("{i}")),
            doc: Some(Arc::new(store::codec::Document {
                text: String::new(),
                vector: Some(data[i].clone()),
                meta: None,
            })),
        })
        .collect()
}

fn open_index(dir: &std::path::Path) -> HnswIndex {
    HnswIndex::open(
        dir,
        DEFAULT_COLLECTION,
        HnswParams::with_metric(Metric::L2),
        Arc::new(IoFaults::new()),
    )
    .expect("open")
}

/// Unreachable nodes after the build, re-linked with no budget: before, after, time.
fn relink_figures(idx: &HnswIndex) {
    let t = Instant::now();
    let r = idx.repair_connectivity(usize::MAX);
    println!(
        "re-link after the build: unreachable {} → {}, orphans {} → {}, {} nodes re-linked in {:.1} ms",
        r.before.unreachable,
        r.after.unreachable,
        r.before.orphans,
        r.after.orphans,
        r.relinked.relinked,
        t.elapsed().as_secs_f64() * 1e3
    );
}

/// 30% deleted (seeded), repaired as the engine does, against a fresh build of the rest.
fn deletion_figures(
    idx: &HnswIndex,
    data: &[Vec<f32>],
    queries: &[Vec<f32>],
    efs: &[usize],
    seed: u64,
) {
    let n = data.len();
    let k = n * 3 / 10;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0xde1e7e);
    let mut gone = rand::seq::index::sample(&mut rng, n, k).into_vec();
    gone.sort_unstable();
    let base = n as u64 + 1;
    let deletes: Vec<Change> = gone
        .iter()
        .enumerate()
        .map(|(j, &i)| Change {
            lsn: base + j as u64,
            collection: Arc::from(DEFAULT_COLLECTION),
            id: Arc::from(format!("{i}")),
            doc: None,
        })
        .collect();
    for batch in deletes.chunks(1_000) {
        idx.apply(batch).expect("delete");
    }
    let exact: Vec<Vec<Hit>> = queries
        .iter()
        .map(|q| idx.exact(q, 10, None).expect("exact"))
        .collect();
    let faulted: Vec<(f64, Lat, usize)> = efs
        .iter()
        .map(|&ef| measure(idx, queries, &exact, ef))
        .collect();
    let t = Instant::now();
    let c = idx.compact();
    let compact_s = t.elapsed().as_secs_f64();
    let r = idx.repair_connectivity(usize::MAX);
    println!(
        "\n30% deleted ({k} of {n}): tombstone fraction {:.3}; compact {} in {compact_s:.1} s, then unreachable {}, \
         orphans {}",
        c.before.tombstone_fraction,
        if c.applied { "applied" } else { "not applied" },
        r.after.unreachable,
        r.after.orphans
    );
    let repaired: Vec<(f64, Lat, usize)> = efs
        .iter()
        .map(|&ef| measure(idx, queries, &exact, ef))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let fresh = open_index(dir.path());
    let kept = {
        let mut g = gone.iter().peekable();
        (0..n).filter(move |i| {
            if g.peek() == Some(&i) {
                g.next();
                false
            } else {
                true
            }
        })
    };
    let changes = changes_of(data, kept);
    let t = Instant::now();
    for batch in changes.chunks(1_000) {
        fresh.apply(batch).expect("apply");
    }
    println!(
        "fresh build of the remaining {}: {:.1} s\n",
        changes.len(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "| ef | recall@10 deleted, before repair | after repair | fresh build | after repair − fresh | p50 ms after \
         repair / fresh |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, &ef) in efs.iter().enumerate() {
        let (fr, fl, _) = measure(&fresh, queries, &exact, ef);
        let (rr, rl, _) = &repaired[i];
        println!(
            "| {ef} | {:.4} | {rr:.4} | {fr:.4} | {:+.4} | {:.3} / {:.3} |",
            faulted[i].0,
            rr - fr,
            rl.p50_ms,
            fl.p50_ms
        );
    }
}

fn run(
    name: &str,
    data: &[Vec<f32>],
    queries: &[Vec<f32>],
    efs: &[usize],
    seed: u64,
    deletions: bool,
) {
    let n = data.len();
    let dim = data[0].len();
    println!(
        "\n## {name}: {n} x {dim}, {} queries, k = 10\n",
        queries.len()
    );

    // medic HNSW.
    let dir = tempfile::tempdir().expect("temp dir");
    let params = HnswParams::with_metric(Metric::L2);
    let (m, ef_c) = (params.m, params.ef_construction);
    let rss0 = rss_bytes();
    let idx = open_index(dir.path());
    let changes = changes_of(data, 0..n);
    let started = Instant::now();
    for batch in changes.chunks(1_000) {
        idx.apply(batch).expect("apply");
    }
    let medic_build_s = started.elapsed().as_secs_f64();
    drop(changes);
    let medic_mem = rss_bytes().saturating_sub(rss0);
    let h = idx.health(&HealthOptions {
        recall_queries: 0,
        ..HealthOptions::default()
    });
    let mut scans: Vec<f64> = (0..5)
        .map(|_| {
            idx.health(&HealthOptions {
                recall_queries: 0,
                ..HealthOptions::default()
            })
            .scan_ms
        })
        .collect();
    scans.sort_by(f64::total_cmp);

    // Brute force over the same vectors: the truth, and its own latency.
    let mut exact_ms = Vec::new();
    let exact: Vec<Vec<Hit>> = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            let e = idx.exact(q, 10, None).expect("exact");
            exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
            e
        })
        .collect();
    let brute = lat(exact_ms);

    // hnsw_rs, same m, ef_construction, data and insertion order, single-threaded inserts.
    let rss1 = rss_bytes();
    let started = Instant::now();
    let mut reference: Hnsw<f32, DistL2> = Hnsw::new(m, n, 16, ef_c, DistL2 {});
    for (i, v) in data.iter().enumerate() {
        reference.insert_slice((v.as_slice(), i));
    }
    let ref_build_s = started.elapsed().as_secs_f64();
    reference.set_searching_mode(true);
    let ref_mem = rss_bytes().saturating_sub(rss1);

    println!(
        "build: medic {:.0} vectors/s ({medic_build_s:.1} s), hnsw_rs {:.0} vectors/s ({ref_build_s:.1} s), ratio \
         medic/hnsw_rs {:.2}",
        n as f64 / medic_build_s,
        n as f64 / ref_build_s,
        ref_build_s / medic_build_s
    );
    println!(
        "memory: medic {:.1} MiB held ({:.1} MiB resident added by the build), hnsw_rs {:.1} MiB resident added \
         (raw vectors {:.1} MiB)",
        h.memory_bytes as f64 / 1048576.0,
        medic_mem as f64 / 1048576.0,
        ref_mem as f64 / 1048576.0,
        (n * dim * 4) as f64 / 1048576.0
    );
    println!(
        "reachability scan: median {:.1} ms ({:.1} ms per 100k nodes); unreachable {}, orphans {}, mean degree {:.1}",
        scans[2],
        scans[2] * 100_000.0 / n as f64,
        h.unreachable,
        h.orphans,
        h.mean_degree
    );
    println!(
        "brute force: p50 {:.3} ms, p99 {:.3} ms\n",
        brute.p50_ms, brute.p99_ms
    );
    println!(
        "| ef | medic recall@10 | medic p50 ms | medic p99 ms | medic queries < 0.5 | hnsw_rs recall@10 | hnsw_rs \
         p50 ms | hnsw_rs p99 ms | p50 medic/hnsw_rs | p50 brute/medic |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &ef in efs {
        let (medic_recall, medic, lost) = measure(&idx, queries, &exact, ef);
        let mut ms = Vec::with_capacity(queries.len());
        let mut rec = 0.0;
        for (q, e) in queries.iter().zip(&exact) {
            let t = Instant::now();
            let hits = reference.search(q, 10, ef);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            let d: Vec<f32> = hits.iter().map(|h| h.distance).collect();
            rec += recall_by_distance(e, &d);
        }
        let refl = lat(ms);
        let ref_recall = rec / queries.len() as f64;
        println!(
            "| {ef} | {medic_recall:.4} | {:.3} | {:.3} | {lost} | {ref_recall:.4} | {:.3} | {:.3} | {:.2} | {:.0} |",
            medic.p50_ms,
            medic.p99_ms,
            refl.p50_ms,
            refl.p99_ms,
            medic.p50_ms / refl.p50_ms,
            brute.p50_ms / medic.p50_ms
        );
    }
    drop(reference);
    relink_figures(&idx);
    if deletions {
        deletion_figures(&idx, data, queries, efs, seed);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = env_or("MEDIC_BENCH_N", if quick { 2_000 } else { 20_000 });
    let dim: usize = env_or("MEDIC_BENCH_DIM", 128);
    let nq: usize = env_or("MEDIC_BENCH_QUERIES", if quick { 50 } else { 500 });
    let seed: u64 = env_or("MEDIC_BENCH_SEED", 7);
    let efs: Vec<usize> = std::env::var("MEDIC_BENCH_EF")
        .unwrap_or_else(|_| "16,32,64,128".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let deletions = env_or("MEDIC_BENCH_DELETE", 1u8) != 0;
    let sets = std::env::var("MEDIC_BENCH_DATA").unwrap_or_else(|_| "clustered,gaussian".into());
    println!(
        "# index-vector bench: n {n}, dim {dim}, queries {nq}, seed {seed}, m {}, ef_construction {}",
        HnswParams::default().m,
        HnswParams::default().ef_construction
    );
    for set in sets.split(',') {
        match set.trim() {
            "clustered" => {
                let (data, queries) = Clustered::new(n, dim, seed).generate(nq);
                run(
                    "clustered (50 clusters, intrinsic dimension 8)",
                    &data,
                    &queries,
                    &efs,
                    seed,
                    deletions,
                );
            }
            "gaussian" => {
                let data = gaussian_vectors(n, dim, seed);
                let queries = gaussian_vectors(nq, dim, seed ^ 0xabcdef);
                run("i.i.d. Gaussian", &data, &queries, &efs, seed, deletions);
            }
            other => eprintln!("unknown data set {other:?} (clustered, gaussian)"),
        }
    }
}
