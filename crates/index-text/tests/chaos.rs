//! The text-index chaos campaign: every fault of each kind detected, repaired, and every search after the repair
//! answering what it answered before the fault (and what a scan of the table answers).

use index_text::chaos::{TextChaosConfig, TextFault, run};

#[test]
fn every_text_fault_is_detected_and_repaired_with_the_same_hits() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TextChaosConfig {
        data_dir: tmp.path().join("data"),
        seed: 20261206,
        rounds: TextFault::ALL.len() as u32,
        faults: Vec::new(),
        docs: 600,
    };
    let report = run(&config).unwrap();
    let json = serde_json::to_string_pretty(&report).unwrap();
    eprintln!("{json}");
    for f in TextFault::ALL {
        assert!(
            report.rounds.iter().any(|r| r.fault == f),
            "{} never drawn: {json}",
            f.name()
        );
    }
    for r in &report.rounds {
        assert!(
            r.detected || r.absorbed,
            "round {} ({}) not detected: {json}",
            r.round,
            r.fault.name()
        );
        assert!(
            r.repaired || r.absorbed,
            "round {} ({}) not repaired: {json}",
            r.round,
            r.fault.name()
        );
        assert!(
            r.wrong_searches.is_empty(),
            "round {}: {:?}",
            r.round,
            r.wrong_searches
        );
    }
    assert_eq!(report.wrong_searches, 0);
    assert_eq!(report.repaired + report.absorbed, config.rounds, "{json}");
    assert!(
        report.absorbed <= 1,
        "more than one round found nothing to repair: {json}"
    );
}

#[test]
fn the_campaign_refuses_bounds_it_cannot_keep() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = TextChaosConfig {
        data_dir: tmp.path().join("data"),
        seed: 1,
        rounds: 0,
        faults: Vec::new(),
        docs: 10,
    };
    let e = run(&config).unwrap_err();
    assert!(e.contains("rounds = 0"), "{e}");
    config.rounds = 1;
    config.docs = 0;
    let e = run(&config).unwrap_err();
    assert!(e.contains("docs = 0"), "{e}");
    assert_eq!(
        TextFault::parse("text_meta_deleted"),
        Some(TextFault::TextMetaDeleted)
    );
    assert_eq!(TextFault::parse("bit_flip"), None);
}
