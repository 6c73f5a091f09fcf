//! `medic chaos` with graph faults: every kind (orphans, a cut-off region, a wrong entry point, scrambled links,
//! mass deletions) injected into an HNSW graph in seeded rounds is detected and repaired by the engine, with the
//! sampled recall@10 after each repair at least the recall before the fault minus 0.01; a mixed list runs the
//! store's faults beside them in one report.

mod support;

use medic::chaos_graph::{GraphKind, plan};
use serde_json::Value;
use support::medic;

fn report(stdout: &str) -> Value {
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn every_graph_fault_is_detected_and_repaired_within_the_recall_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let kinds = [
        "graph_orphans",
        "graph_cut_region",
        "graph_wrong_entry",
        "graph_scrambled_links",
        "graph_deletions",
    ];
    let list = kinds.join(",");
    let (code, out, err) = medic(
        &data,
        &[
            "chaos", "--seed", "5", "--rounds", "10", "--docs", "1500", "--faults", &list, "--json",
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    let v = report(&out);
    eprintln!("{v:#}");
    assert_eq!(v["rounds"], 10, "{v}");
    assert_eq!(v["injected"], 10, "{v}");
    assert_eq!(v["detected"], 10, "{v}");
    assert_eq!(v["repaired"], 10, "{v}");
    assert_eq!(v["escalated"], 0, "{v}");
    for k in kinds {
        let f = &v["by_fault"][k];
        assert_eq!(f["injected"], 2, "{k}: {v}");
        assert_eq!(f["repaired"], 2, "{k}: {v}");
        assert!(f["mttr_ms_p50"].as_f64().unwrap() > 0.0, "{k}: {v}");
        assert!(
            f["recall_change_min"].as_f64().unwrap() >= -0.01,
            "{k}: recall after a repair fell more than 0.01 below the recall before: {v}"
        );
    }
    // The scrambled graph is whole to every structural figure: it is its recall that fell.
    assert!(
        v["by_fault"]["graph_scrambled_links"]["recall_faulted_min"]
            .as_f64()
            .unwrap()
            < 0.8,
        "{v}"
    );
    assert_eq!(v["graph"]["notes"], serde_json::json!([]), "{v}");

    // Human-readable: the graph kinds are rows of the table.
    let (code, out, err) = medic(
        &data,
        &[
            "chaos",
            "--seed",
            "6",
            "--rounds",
            "2",
            "--docs",
            "300",
            "--faults",
            "bit_flip,graph_wrong_entry",
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("graph_wrong_entry"), "{out}");
    assert!(out.contains("bit_flip"), "{out}");
}

#[test]
fn an_unknown_fault_is_refused_naming_the_graph_kinds_too() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = medic(
        &dir.path().join("data"),
        &[
            "chaos",
            "--seed",
            "1",
            "--rounds",
            "2",
            "--faults",
            "graph_gremlins",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("graph_gremlins") && err.contains("graph_scrambled_links"),
        "{err}"
    );
}

#[test]
fn the_plan_splits_kinds_and_rounds() {
    let p = plan(
        Some("bit_flip,graph_orphans,graph_orphans,graph_wrong_entry"),
        7,
    );
    assert_eq!(p.store_faults.as_deref(), Some("bit_flip"));
    assert_eq!(
        p.graph_kinds,
        vec![GraphKind::Orphans, GraphKind::WrongEntry]
    );
    // Round-robin over 3 kinds: rounds 0, 3, 6 are the store's.
    assert_eq!((p.store_rounds, p.graph_rounds), (3, 4));
    let p = plan(Some("graph_scrambled_links"), 2);
    assert_eq!((p.store_rounds, p.graph_rounds), (0, 2));
    let p = plan(None, 13);
    assert_eq!(p.store_faults, None);
    assert_eq!(p.graph_kinds.len(), GraphKind::ALL.len());
    assert_eq!((p.store_rounds, p.graph_rounds), (8, 5));
    for k in GraphKind::ALL {
        assert_eq!(GraphKind::parse(k.name()), Some(k));
    }
}
