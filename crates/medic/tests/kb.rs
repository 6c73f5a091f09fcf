//! The SQLite knowledge base: records, statistics and metric history survive a reopen; bad files give clear errors.

use heal::issue::{CrisisLevel, Issue, IssueKind, Severity};
use heal::learn::{
    AttemptOutcome, AttemptRecord, IncidentRecord, KnowledgeBase, Resolution, StrategyStats,
};
use heal::repair::DataLoss;
use heal::subject::Sample;
use medic::kb::{SCHEMA_VERSION, SqliteKb};

fn record(id: u64, detected_at: u64, resolution: Resolution) -> IncidentRecord {
    let issue = Issue::new(
        IssueKind::Integrity,
        "block_checksum",
        "wal/00000001.seg",
        "checksum mismatch",
        "scrub",
        detected_at - 5,
    )
    .evidence("expected", "0xdeadbeef");
    IncidentRecord {
        id,
        started_at: detected_at - 5,
        detected_at,
        resolved_at: (resolution == Resolution::AutoRepaired).then_some(detected_at + 100),
        issues: vec![issue],
        crisis: CrisisLevel::Obstacle,
        severity: Severity::Sev2,
        root_cause: format!("bit rot in block {id}"),
        blast_radius: vec!["wal/00000001.seg".into()],
        decision: "repair with rebuild_from_parity".into(),
        attempts: vec![
            AttemptRecord {
                strategy: "retry_read".into(),
                started_at: detected_at + 1,
                duration_us: 10,
                outcome: AttemptOutcome::Failed,
                notes: vec!["still bad".into()],
                data_loss: DataLoss::None,
            },
            AttemptRecord {
                strategy: "rebuild_from_parity".into(),
                started_at: detected_at + 20,
                duration_us: 70,
                outcome: AttemptOutcome::Succeeded,
                notes: vec![],
                data_loss: DataLoss::Records(0),
            },
        ],
        resolution,
        report_markdown: None,
    }
}

#[test]
fn records_survive_reopen_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    let a = record(1, 1_000, Resolution::AutoRepaired);
    let mut b = record(2, 2_000, Resolution::Escalated);
    b.report_markdown = Some("# Incident 2\nneeds a human".into());
    {
        let kb = SqliteKb::open(&path).unwrap();
        assert_eq!(kb.max_id().unwrap(), 0);
        assert!(kb.recent(10).unwrap().is_empty());
        kb.save(&a).unwrap();
        kb.save(&b).unwrap();
    }
    let kb = SqliteKb::open(&path).unwrap();
    assert_eq!(kb.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(kb.get(1).unwrap().as_ref(), Some(&a));
    assert_eq!(kb.get(2).unwrap().as_ref(), Some(&b));
    assert_eq!(kb.get(3).unwrap(), None);
    assert_eq!(kb.max_id().unwrap(), 2);
    let recent = kb.recent(10).unwrap();
    assert_eq!(
        recent.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![2, 1],
        "newest first"
    );
    assert_eq!(kb.recent(1).unwrap().len(), 1);
    assert_eq!(kb.incident_count().unwrap(), 2);
    assert_eq!(
        kb.attempts(1).unwrap(),
        vec![
            ("retry_read".to_string(), "failed".to_string()),
            ("rebuild_from_parity".to_string(), "succeeded".to_string())
        ]
    );
    // KPIs computed from the records survive too.
    assert_eq!(kb.get(1).unwrap().unwrap().time_to_repair_us(), Some(100));
    assert_eq!(kb.get(2).unwrap().unwrap().time_to_detect_us(), 5);
}

#[test]
fn save_replaces_a_record_and_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let kb = SqliteKb::open(&dir.path().join("kb.sqlite")).unwrap();
    let mut r = record(7, 500, Resolution::Open);
    kb.save(&r).unwrap();
    r.resolution = Resolution::AutoRepaired;
    r.resolved_at = Some(900);
    r.attempts.truncate(1);
    kb.save(&r).unwrap();
    assert_eq!(kb.incident_count().unwrap(), 1);
    assert_eq!(kb.get(7).unwrap().unwrap(), r);
    assert_eq!(kb.attempts(7).unwrap().len(), 1);
    assert_eq!(kb.max_id().unwrap(), 7);
}

#[test]
fn strategy_stats_accumulate_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    {
        let kb = SqliteKb::open(&path).unwrap();
        assert_eq!(
            kb.strategy_stats("truncate_tail", "torn_tail").unwrap(),
            StrategyStats::default()
        );
        kb.record_outcome("truncate_tail", "torn_tail", true)
            .unwrap();
        kb.record_outcome("truncate_tail", "torn_tail", true)
            .unwrap();
        kb.record_outcome("truncate_tail", "torn_tail", false)
            .unwrap();
        kb.record_outcome("truncate_tail", "block_checksum", false)
            .unwrap();
    }
    let kb = SqliteKb::open(&path).unwrap();
    kb.record_outcome("truncate_tail", "torn_tail", true)
        .unwrap();
    assert_eq!(
        kb.strategy_stats("truncate_tail", "torn_tail").unwrap(),
        StrategyStats {
            successes: 3,
            failures: 1
        }
    );
    assert_eq!(
        kb.strategy_stats("truncate_tail", "block_checksum")
            .unwrap(),
        StrategyStats {
            successes: 0,
            failures: 1
        }
    );
    let all = kb.all_strategy_stats().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].code, "block_checksum");
}

#[test]
fn metric_history_is_kept_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    {
        let kb = SqliteKb::open(&path).unwrap();
        for t in 1..=10u64 {
            let samples = vec![
                Sample::size("wal_bytes", (t * 100) as f64, t * 1_000),
                Sample::gauge("put_latency_p99_us", f64::NAN, t * 1_000),
            ];
            assert_eq!(kb.record_metrics(t * 1_000, &samples).unwrap(), 1);
        }
    }
    let kb = SqliteKb::open(&path).unwrap();
    assert_eq!(kb.metric_rows().unwrap(), 10);
    let h = kb.metric_history("wal_bytes", 0, 100).unwrap();
    assert_eq!(h.len(), 10);
    assert_eq!(h[0], (1_000, 100.0));
    assert_eq!(
        kb.metric_history("wal_bytes", 0, 3).unwrap(),
        vec![(8_000, 800.0), (9_000, 900.0), (10_000, 1_000.0)],
        "the newest points, oldest first"
    );
    assert_eq!(kb.prune(5_000).unwrap(), 4);
    assert_eq!(kb.metric_rows().unwrap(), 6);
    assert_eq!(kb.metric_history("wal_bytes", 0, 100).unwrap()[0].0, 5_000);
    assert!(kb.metric_history("nope", 0, 100).unwrap().is_empty());
}

#[test]
fn metric_limits_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kb = SqliteKb::open(&dir.path().join("kb.sqlite")).unwrap();
    let long = Sample::gauge("m".repeat(300), 1.0, 1);
    let e = kb.record_metrics(1, &[long]).unwrap_err();
    assert!(e.0.contains("metric_name_bytes_max"), "{e}");
}

#[test]
fn garbage_file_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = SqliteKb::open(&path).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a readable SQLite database"), "{msg}");
}

#[test]
fn damaged_database_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    {
        let kb = SqliteKb::open(&path).unwrap();
        for id in 1..=200 {
            kb.save(&record(id, 1_000 + id, Resolution::AutoRepaired))
                .unwrap();
        }
    }
    // Checkpointed on close: everything is in the main file. Overwrite a stretch of its pages past the header.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "file has enough pages");
    for b in &mut bytes[4096 * 2..4096 * 12] {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("kb.sqlite-wal"));
    let _ = std::fs::remove_file(dir.path().join("kb.sqlite-shm"));
    let e = SqliteKb::open(&path).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    drop(SqliteKb::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 5)
            .unwrap();
    }
    let e = SqliteKb::open(&path).unwrap_err();
    assert!(e.0.contains("newer than this medic supports"), "{e}");
    assert!(e.0.contains(&path.display().to_string()), "{e}");
}

#[test]
fn missing_parent_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/kb.sqlite");
    let kb = SqliteKb::open(&path).unwrap();
    kb.record_outcome("s", "c", true).unwrap();
    assert!(path.exists());
}

/// XORs bytes 100..4000 of `path`: the first page past the header, where the schema lives.
fn damage_first_page(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= 4000, "{} bytes", bytes.len());
    for b in &mut bytes[100..4000] {
        *b ^= 0x5a;
    }
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn a_damaged_file_is_moved_aside_and_a_fresh_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    {
        let kb = SqliteKb::open(&path).unwrap();
        for id in 1..=20 {
            kb.save(&record(id, 1_000 + id, Resolution::AutoRepaired))
                .unwrap();
        }
    }
    damage_first_page(&path);
    let damaged = std::fs::read(&path).unwrap();
    assert!(
        SqliteKb::open(&path).is_err(),
        "plain open still refuses it"
    );

    let (kb, recreated) = SqliteKb::open_or_recreate(&path, 42).unwrap();
    let r = recreated.expect("recreated");
    assert_eq!(r.damaged_file, path);
    assert_eq!(r.moved_to, dir.path().join("kb.sqlite.corrupt-42"));
    assert!(r.moved.contains(&r.moved_to), "{r:?}");
    assert!(!r.reason.is_empty());
    // The damaged bytes are kept as they were; the fresh file works.
    assert_eq!(std::fs::read(&r.moved_to).unwrap(), damaged);
    assert_eq!(kb.recent(10).unwrap(), vec![]);
    kb.save(&record(1, 5, Resolution::Open)).unwrap();
    drop(kb);
    assert_eq!(
        medic::kb::damaged_copies(&path),
        vec![dir.path().join("kb.sqlite.corrupt-42")]
    );

    // A healthy file is left alone; a second damage at the same instant gets another name.
    let (_kb, again) = SqliteKb::open_or_recreate(&path, 42).unwrap();
    assert_eq!(again, None);
    drop(_kb);
    damage_first_page(&path);
    let (_kb, again) = SqliteKb::open_or_recreate(&path, 42).unwrap();
    assert_eq!(
        again.unwrap().moved_to,
        dir.path().join("kb.sqlite.corrupt-42-1")
    );
}

#[test]
fn garbage_is_recreated_but_a_newer_schema_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let (_kb, r) = SqliteKb::open_or_recreate(&path, 7).unwrap();
    assert!(r.is_some(), "not a database: moved aside");

    let path = dir.path().join("newer.sqlite");
    drop(SqliteKb::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 5)
            .unwrap();
    }
    let e = SqliteKb::open_or_recreate(&path, 7).unwrap_err();
    assert!(e.0.contains("newer than this medic supports"), "{e}");
    assert!(medic::kb::damaged_copies(&path).is_empty());

    // A newer medic's file this SQLite cannot even parse (here: pages scrambled past the header, which is what an
    // unknown schema looks like to it) is still recognised by its header's version and left untouched.
    let bytes = std::fs::read(&path).unwrap();
    let mut scrambled = bytes.clone();
    for b in &mut scrambled[100..bytes.len().min(4_000)] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &scrambled).unwrap();
    let e = SqliteKb::open_or_recreate(&path, 8).unwrap_err();
    assert!(e.0.contains("newer than this medic supports"), "{e}");
    assert!(
        medic::kb::damaged_copies(&path).is_empty(),
        "not moved aside"
    );
    assert_eq!(std::fs::read(&path).unwrap(), scrambled, "left as it is");
}

/// The history read back: names with counts and spans, points in a range, buckets of a step with mean, min, max and
/// count; and a query through `medic::history` with an anomaly of an incident on that metric and a bound named.
#[test]
fn metric_history_reads_back_by_range_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let kb = SqliteKb::open(&dir.path().join("kb.sqlite")).unwrap();
    const S: u64 = 1_000_000;
    for t in 0..10u64 {
        let samples = vec![
            Sample::size("wal_bytes", (t * 10) as f64, 0),
            Sample::gauge("put_latency_p99_us", 5.0, 0),
        ];
        kb.record_metrics(1_000 * S + t * S, &samples).unwrap();
    }
    let series = kb.metric_series(100).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(
        (
            series[1].name.as_str(),
            series[1].points,
            series[1].first_at,
            series[1].last_at
        ),
        ("wal_bytes", 10, 1_000 * S, 1_009 * S)
    );
    assert_eq!(kb.metric_series(1).unwrap().len(), 1, "bounded");
    assert_eq!(
        kb.metric_count("wal_bytes", 1_002 * S, 1_004 * S).unwrap(),
        3
    );
    assert_eq!(
        kb.metric_points("wal_bytes", 1_002 * S, 1_004 * S, 100)
            .unwrap(),
        vec![(1_002 * S, 20.0), (1_003 * S, 30.0), (1_004 * S, 40.0)]
    );
    let b = kb
        .metric_buckets("wal_bytes", 1_000 * S, 1_009 * S, 4 * S)
        .unwrap();
    let got: Vec<(u64, f64, f64, f64, u64)> = b
        .iter()
        .map(|b| (b.at, b.value, b.min, b.max, b.count))
        .collect();
    assert_eq!(
        got,
        vec![
            (1_000 * S, 15.0, 0.0, 30.0, 4),
            (1_004 * S, 55.0, 40.0, 70.0, 4),
            (1_008 * S, 85.0, 80.0, 90.0, 2)
        ]
    );

    // An anomaly on wal_bytes at 1005 s, in an incident detected then.
    let mut r = record(1, 1_005 * S, Resolution::SelfResolved);
    r.issues = vec![
        Issue::new(
            IssueKind::Anomaly,
            "anomaly_wal_bytes",
            "wal_bytes",
            "wal_bytes = 50 is anomalous",
            "detector:composite",
            1_005 * S,
        )
        .with_score(0.99),
    ];
    kb.save(&r).unwrap();
    let q = medic::history::HistoryQuery {
        metric: Some("wal_bytes".into()),
        since: Some("1000".into()),
        until: Some(format!("{}", 1_009 * S)),
        step: None,
    };
    let v = medic::history::query(&kb, &q, 2_000 * S).unwrap();
    assert_eq!(v["points"].as_array().unwrap().len(), 10);
    let a = v["anomalies"].as_array().unwrap();
    assert_eq!(a.len(), 1, "{v}");
    assert_eq!(
        (a[0]["at"].as_u64(), a[0]["incident"].as_u64()),
        (Some(1_005 * S), Some(1))
    );
    let q = medic::history::HistoryQuery {
        step: Some("1ms".into()),
        since: Some("0".into()),
        ..q
    };
    let e = medic::history::query(&kb, &q, 2_000 * S)
        .unwrap_err()
        .to_string();
    assert!(e.contains("over history_points_max = 10000"), "{e}");
}
