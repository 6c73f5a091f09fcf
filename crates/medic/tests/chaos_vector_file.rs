//! `medic chaos` with vector index file faults and IVF drift: one bit of `hnsw.bin` or `ivf.bin` flipped, a range
//! of it zeroed, the file deleted (the index in memory untouched), and a new cluster inserted after the IVF was
//! trained — each injected in seeded rounds is detected (an incident about the damaged index) and repaired by the
//! engine (every incident auto-repaired, the file loading again with the applied LSN, the IVF trained on what it
//! holds), with the sampled recall@10 after each repair at least the recall before the fault minus 0.01; the same
//! seed gives the same rounds.

mod support;

use serde_json::Value;
use support::medic;

const KINDS: [&str; 7] = [
    "hnsw_file_bit_flip",
    "hnsw_file_zeroed",
    "hnsw_file_deleted",
    "ivf_file_bit_flip",
    "ivf_file_zeroed",
    "ivf_file_deleted",
    "ivf_drift",
];

fn report(stdout: &str) -> Value {
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn every_file_fault_and_ivf_drift_is_detected_and_repaired_within_the_recall_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let list = KINDS.join(",");
    let run = |seed: &str| {
        let (code, out, err) = medic(
            &data,
            &[
                "chaos", "--seed", seed, "--rounds", "14", "--docs", "1500", "--faults", &list,
                "--json",
            ],
        );
        assert_eq!(code, 0, "seed {seed}: {err}\n{out}");
        report(&out)
    };
    let v = run("11");
    eprintln!("{v:#}");
    assert_eq!(v["graph"]["notes"], serde_json::json!([]), "seed 11: {v}");
    assert_eq!(v["injected"], 14, "{v}");
    assert_eq!(v["detected"], 14, "{v}");
    assert_eq!(v["repaired"], 14, "{v}");
    assert_eq!(v["escalated"], 0, "{v}");
    for k in KINDS {
        let f = &v["by_fault"][k];
        assert_eq!(f["injected"], 2, "{k}: {v}");
        assert_eq!(f["detected"], 2, "{k}: {v}");
        assert_eq!(f["repaired"], 2, "{k}: {v}");
        assert!(
            f["recall_change_min"].as_f64().unwrap() >= -0.01,
            "{k}: recall after a repair fell more than 0.01 below the recall before: {v}"
        );
    }

    // Seeded: a second run with the same seed injects the same faults with the same outcome.
    let again = run("11");
    for k in KINDS {
        for field in [
            "injected",
            "detected",
            "repaired",
            "recall_change_min",
            "recall_faulted_min",
        ] {
            assert_eq!(
                again["by_fault"][k][field], v["by_fault"][k][field],
                "{k}.{field} differs between two runs of seed 11"
            );
        }
    }
}

#[test]
fn a_file_fault_beside_the_stores_own_and_the_table_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = medic(
        &dir.path().join("data"),
        &[
            "chaos",
            "--seed",
            "3",
            "--rounds",
            "3",
            "--docs",
            "400",
            "--faults",
            "bit_flip,hnsw_file_deleted,ivf_drift",
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    for k in ["bit_flip", "hnsw_file_deleted", "ivf_drift"] {
        assert!(out.contains(k), "{k} missing: {out}");
    }
}
