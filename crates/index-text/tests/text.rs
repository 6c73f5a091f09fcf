//! The text index through its public API: the store's contract (apply, persist, reopen, check, rebuild), the query
//! language, filters, highlights, bounds and errors, and damaged files.

use std::path::Path;
use std::sync::Arc;

use index_text::synth::Corpus;
use index_text::{
    FieldKind, Filter, HighlightOptions, Include, OpenError, QueryError, SearchRequest, TextIndex,
    TextSettings,
};
use serde_json::{Value, json};
use store::Document;
use store::derived::{Change, DerivedError, DerivedIndex, Truth};

const C: &str = "default";

fn settings() -> TextSettings {
    TextSettings {
        writer_memory_bytes: 15_000_000,
        ..TextSettings::default()
    }
}

fn open(dir: &Path) -> TextIndex {
    TextIndex::open(dir, C, settings()).expect("open")
}

fn put(lsn: u64, id: &str, text: &str, meta: Value) -> Change {
    Change {
        lsn,
        collection: Arc::from(C),
        id: Arc::from(id),
        doc: Some(Arc::new(Document {
            text: text.to_string(),
            vector: None,
            meta: meta.as_object().cloned(),
        })),
    }
}

fn del(lsn: u64, id: &str) -> Change {
    Change {
        lsn,
        collection: Arc::from(C),
        id: Arc::from(id),
        doc: None,
    }
}

/// A small corpus whose matches are easy to tell by hand.
fn fixture(idx: &TextIndex) {
    let docs = [
        (
            "a",
            "the quick brown fox jumps over the lazy dog",
            json!({"lang": "en", "year": 2020, "draft": false, "tags": ["animal", "classic"]}),
        ),
        (
            "b",
            "a quick brown dog runs",
            json!({"lang": "en", "year": 2021, "draft": true}),
        ),
        (
            "c",
            "le renard brun rapide saute",
            json!({"lang": "fr", "year": 2019, "draft": false}),
        ),
        (
            "d",
            "quickly quicker quickest foxes",
            json!({"lang": "en", "year": 2022.5, "draft": false}),
        ),
        (
            "e",
            "brown bears and brown foxes in the brown forest",
            json!({"lang": "de", "year": 2020}),
        ),
        ("f", "nothing to see here", json!({})),
    ];
    let changes: Vec<Change> = docs
        .iter()
        .enumerate()
        .map(|(i, (id, text, meta))| put(i as u64 + 1, id, text, meta.clone()))
        .collect();
    idx.apply(&changes).unwrap();
    assert_eq!(idx.persist().unwrap(), docs.len() as u64);
}

fn ids(idx: &TextIndex, q: &str) -> Vec<String> {
    let mut v: Vec<String> = idx
        .search(&SearchRequest::new(q, 100))
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect();
    v.sort();
    v
}

fn err(idx: &TextIndex, q: &str) -> QueryError {
    idx.search(&SearchRequest::new(q, 10))
        .err()
        .unwrap_or_else(|| panic!("{q}: expected an error"))
}

#[test]
fn apply_persist_reopen_keeps_the_applied_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let idx = open(tmp.path());
        assert_eq!((idx.applied_lsn(), idx.persisted_lsn()), (0, 0));
        fixture(&idx);
        idx.apply(&[put(7, "g", "late words", json!({}))]).unwrap();
        assert_eq!(idx.applied_lsn(), 7);
        assert_eq!(idx.persisted_lsn(), 6);
        // Not persisted: not visible yet.
        assert!(ids(&idx, "late").is_empty());
    }
    let idx = open(tmp.path());
    assert!(idx.open_report().loaded, "{:?}", idx.open_report());
    assert_eq!((idx.applied_lsn(), idx.persisted_lsn()), (6, 6));
    assert_eq!(idx.len(), 6);
    assert!(ids(&idx, "late").is_empty());
    // Re-fed changes at or below the applied LSN are skipped.
    idx.apply(&[put(6, "f", "changed", json!({}))]).unwrap();
    idx.persist().unwrap();
    assert!(ids(&idx, "changed").is_empty());
}

#[test]
fn a_search_sees_a_persisted_change_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    for i in 1..=20u64 {
        idx.apply(&[put(
            i,
            &format!("x{i}"),
            &format!("word{i} common"),
            json!({}),
        )])
        .unwrap();
        idx.persist().unwrap();
        let a = idx
            .search(&SearchRequest::new(format!("word{i}"), 5))
            .unwrap();
        assert_eq!(a.hits.len(), 1, "after persist of LSN {i}");
        assert_eq!(a.lsn, i);
    }
}

#[test]
fn delete_and_update_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    idx.apply(&[
        del(7, "a"),
        put(8, "b", "a slow green turtle", json!({"lang": "en"})),
        del(9, "nope"),
    ])
    .unwrap();
    idx.persist().unwrap();
    assert_eq!(ids(&idx, "fox"), Vec::<String>::new());
    assert_eq!(ids(&idx, "turtle"), vec!["b"]);
    assert_eq!(ids(&idx, "dog"), Vec::<String>::new());
    assert_eq!(idx.len(), 5);
    // Updated twice in one batch: the last version wins.
    idx.apply(&[
        put(10, "c", "first", json!({})),
        put(11, "c", "second", json!({})),
    ])
    .unwrap();
    idx.persist().unwrap();
    assert!(ids(&idx, "first").is_empty());
    assert_eq!(ids(&idx, "second"), vec!["c"]);
    assert_eq!(idx.len(), 5);
}

#[test]
fn query_language() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let cases: &[(&str, &[&str])] = &[
        ("fox", &["a"]),
        ("FOX", &["a"]),
        ("brown", &["a", "b", "e"]),
        // Terms side by side are all required.
        ("brown dog", &["a", "b"]),
        ("quick OR foxes", &["a", "b", "d", "e"]),
        ("quick AND dog", &["a", "b"]),
        ("+brown -dog", &["e"]),
        ("brown -dog", &["e"]),
        ("\"brown dog\"", &["b"]),
        ("\"quick brown\"", &["a", "b"]),
        ("\"brown quick\"", &[]),
        ("\"quick dog\"~1", &["b"]),
        ("quick*", &["a", "b", "d"]),
        ("\"brown fo\"*", &["a", "e"]),
        ("(fox OR bears) brown", &["a", "e"]),
        ("text:renard", &["c"]),
        ("lang:fr", &["c"]),
        ("brown lang:en", &["a", "b"]),
        ("year:2020", &["a", "e"]),
        ("year:2022.5", &["d"]),
        ("year:[2020 TO 2021]", &["a", "b", "e"]),
        ("year:{2020 TO *}", &["b", "d"]),
        ("draft:true", &["b"]),
        ("tags:classic", &["a"]),
        ("lang: IN [fr de]", &["c", "e"]),
        ("*", &["a", "b", "c", "d", "e", "f"]),
        ("* -lang:en", &["c", "e", "f"]),
        ("zebra", &[]),
    ];
    for (q, want) in cases {
        assert_eq!(ids(&idx, q), want.to_vec(), "query {q:?}");
    }
}

#[test]
fn bm25_ranks_and_total_counts_every_match() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let a = idx.search(&SearchRequest::new("brown", 1)).unwrap();
    // "e" says brown three times in a short text.
    assert_eq!(a.hits[0].id, "e");
    assert_eq!(a.total, 3);
    assert!(a.took_ms >= 0.0);
    let page2 = idx
        .search(&SearchRequest {
            offset: 1,
            ..SearchRequest::new("brown", 1)
        })
        .unwrap();
    assert_eq!(page2.total, 3);
    assert_eq!(page2.hits.len(), 1);
    assert_ne!(page2.hits[0].id, "e");
    let all = idx.search(&SearchRequest::new("brown", 10)).unwrap();
    assert!(all.hits.windows(2).all(|w| w[0].score >= w[1].score));
    let past = idx
        .search(&SearchRequest {
            offset: 5,
            ..SearchRequest::new("brown", 10)
        })
        .unwrap();
    assert!(past.hits.is_empty());
    assert_eq!(past.total, 3);
}

#[test]
fn filters_select_without_changing_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let run = |filter: Value| -> Vec<String> {
        let mut v: Vec<String> = idx
            .search(&SearchRequest {
                filter: Some(filter.clone()),
                ..SearchRequest::new("*", 100)
            })
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        v.sort();
        v
    };
    let cases = [
        (json!({"lang": "en"}), vec!["a", "b", "d"]),
        (json!({"lang": {"in": ["fr", "de"]}}), vec!["c", "e"]),
        (json!({"lang": ["fr", "de"]}), vec!["c", "e"]),
        (
            json!({"year": {"gte": 2020, "lt": 2022}}),
            vec!["a", "b", "e"],
        ),
        (json!({"year": {"gt": 2022}}), vec!["d"]),
        (json!({"year": 2020.0}), vec!["a", "e"]),
        (json!({"draft": false}), vec!["a", "c", "d"]),
        (json!({"tags": "animal"}), vec!["a"]),
        (
            json!({"or": [{"lang": "fr"}, {"draft": true}]}),
            vec!["b", "c"],
        ),
        (json!({"not": {"lang": "en"}}), vec!["c", "e", "f"]),
        (
            json!({"and": [{"lang": "en"}, {"not": {"draft": true}}]}),
            vec!["a", "d"],
        ),
        (json!({"lang": "en", "year": {"lte": 2020}}), vec!["a"]),
        (json!({"field": "lang", "eq": "de"}), vec!["e"]),
    ];
    // Every filter also agrees with the predicate evaluated on the meta (the scan's answer).
    let metas = [
        (
            "a",
            json!({"lang": "en", "year": 2020, "draft": false, "tags": ["animal", "classic"]}),
        ),
        ("b", json!({"lang": "en", "year": 2021, "draft": true})),
        ("c", json!({"lang": "fr", "year": 2019, "draft": false})),
        ("d", json!({"lang": "en", "year": 2022.5, "draft": false})),
        ("e", json!({"lang": "de", "year": 2020})),
        ("f", json!({})),
    ];
    for (f, want) in cases {
        assert_eq!(run(f.clone()), want, "filter {f}");
        let parsed = Filter::parse(&f, &TextSettings::default()).unwrap();
        let scan: Vec<&str> = metas
            .iter()
            .filter(|(_, m)| parsed.matches(m.as_object()))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(scan, want, "scan of filter {f}");
    }
    // Scores are the query's alone.
    let plain = idx.search(&SearchRequest::new("brown", 10)).unwrap();
    let filtered = idx
        .search(&SearchRequest {
            filter: Some(json!({"lang": "en"})),
            ..SearchRequest::new("brown", 10)
        })
        .unwrap();
    for h in &filtered.hits {
        let p = plain.hits.iter().find(|p| p.id == h.id).unwrap();
        assert!((p.score - h.score).abs() < 1e-6, "{h:?} vs {p:?}");
    }
    assert_eq!(filtered.total, 2);
}

#[test]
fn declared_fields_limit_queries_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.fields.insert("lang".into(), FieldKind::Keyword);
    s.fields.insert("year".into(), FieldKind::Float);
    let idx = TextIndex::open(tmp.path(), C, s).unwrap();
    fixture(&idx);
    assert_eq!(ids(&idx, "lang:fr"), vec!["c"]);
    match err(&idx, "brown color:red") {
        QueryError::UnknownField { column, field, .. } => {
            assert_eq!((column, field.as_str()), (7, "color"));
        }
        other => panic!("{other:?}"),
    }
    match err(&idx, "year:abc") {
        QueryError::Field { column, .. } => assert_eq!(column, 1),
        other => panic!("{other:?}"),
    }
    let e = idx
        .search(&SearchRequest {
            filter: Some(json!({"draft": true})),
            ..SearchRequest::new("*", 10)
        })
        .unwrap_err();
    assert!(e.is_user_error());
    assert!(
        e.to_string().contains("filter.draft") && e.to_string().contains("lang, year"),
        "{e}"
    );
}

#[test]
fn include_returns_stored_fields_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    let meta = json!({"price": 12345678901234567890.123456789, "nested": {"k": [1, "x", null]}, "date": "2024-01-02T03:04:05Z"});
    idx.apply(&[put(1, "p", "priced item", meta.clone())])
        .unwrap();
    idx.persist().unwrap();
    let a = idx
        .search(&SearchRequest {
            include: Include {
                text: true,
                meta: true,
            },
            ..SearchRequest::new("priced", 1)
        })
        .unwrap();
    let h = &a.hits[0];
    assert_eq!(h.text.as_deref(), Some("priced item"));
    assert_eq!(
        serde_json::to_string(h.meta.as_ref().unwrap()).unwrap(),
        serde_json::to_string(&meta).unwrap()
    );
    // A date-like string is still a string for equality.
    assert_eq!(ids(&idx, "date:\"2024-01-02T03:04:05Z\""), vec!["p"]);
    // Without include, nothing but id and score.
    let a = idx.search(&SearchRequest::new("priced", 1)).unwrap();
    assert!(a.hits[0].text.is_none() && a.hits[0].meta.is_none() && a.hits[0].highlights.is_none());
}

#[test]
fn highlight_marks_the_matched_terms() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let hl = |q: &str, opts: HighlightOptions| -> Vec<(String, String)> {
        idx.search(&SearchRequest {
            highlight: Some(opts),
            ..SearchRequest::new(q, 10)
        })
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.id, h.highlights.unwrap().join("|")))
        .collect()
    };
    let got = hl("fox", HighlightOptions::default());
    assert_eq!(got.len(), 1);
    assert!(got[0].1.contains("brown <mark>fox</mark> jumps"), "{got:?}");
    let got = hl("\"lazy dog\"", HighlightOptions::default());
    assert!(
        got[0].1.contains("<mark>lazy</mark> <mark>dog</mark>"),
        "{got:?}"
    );
    let got = hl(
        "quick*",
        HighlightOptions {
            pre: "[".into(),
            post: "]".into(),
            chars: 150,
        },
    );
    let d = got.iter().find(|(id, _)| id == "d").unwrap();
    assert_eq!(d.1, "[quickly] [quicker] [quickest] foxes");
    // Snippets are bounded.
    let got = hl(
        "brown",
        HighlightOptions {
            chars: 20,
            ..HighlightOptions::default()
        },
    );
    assert!(got.iter().all(|(_, s)| {
        s.replace("<mark>", "")
            .replace("</mark>", "")
            .chars()
            .count()
            <= 20
    }));
}

#[test]
fn bad_queries_name_what_and_the_column() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let syntax = [
        "\"unclosed phrase",
        "brown AND",
        "(brown",
        "brown)",
        "year:[1 TO",
        "fox^x",
    ];
    for q in syntax {
        let e = err(&idx, q);
        assert!(e.is_user_error(), "{q}: {e}");
        assert!(e.column().is_some(), "{q}: {e:?}");
        assert!(e.to_string().contains("column"), "{q}: {e}");
    }
    assert!(matches!(err(&idx, ""), QueryError::Empty));
    assert!(matches!(err(&idx, "   "), QueryError::Empty));
    assert!(matches!(
        err(&idx, "-fox"),
        QueryError::OnlyExcluded { column: 1 }
    ));
    assert!(matches!(
        err(&idx, "year:[a TO b]"),
        QueryError::Field { .. }
    ));
    assert!(matches!(
        err(&idx, "text:[a TO b]"),
        QueryError::Field { .. }
    ));
    assert!(matches!(err(&idx, "lang:e*"), QueryError::Field { .. }));
    assert!(matches!(err(&idx, "/regex/"), QueryError::Field { .. }));
    match err(&idx, "brown *own") {
        QueryError::Field { column, .. } => assert_eq!(column, 7),
        other => panic!("{other:?}"),
    }
    assert!(matches!(err(&idx, "qu*ck"), QueryError::Field { .. }));
    let long = "a ".repeat(3000);
    assert!(matches!(
        err(&idx, &long),
        QueryError::TooLong { max: 4096, .. }
    ));
    let deep = format!("{}fox{}", "(".repeat(40), ")".repeat(40));
    match err(&idx, &deep) {
        QueryError::TooDeep { column, max } => assert_eq!((column, max), (33, 32)),
        other => panic!("{other:?}"),
    }
    // Bounds are named.
    for (k, offset, what) in [
        (0, 0, "k: 0"),
        (1001, 0, "k: 1001"),
        (10, 10_001, "offset: 10001"),
    ] {
        let e = idx
            .search(&SearchRequest {
                offset,
                ..SearchRequest::new("fox", k)
            })
            .unwrap_err();
        assert!(e.to_string().starts_with(what), "{e}");
        assert!(
            e.to_string().contains("1000") || e.to_string().contains("10000"),
            "{e}"
        );
    }
    let e = idx
        .search(&SearchRequest {
            highlight: Some(HighlightOptions {
                chars: 0,
                ..HighlightOptions::default()
            }),
            ..SearchRequest::new("fox", 1)
        })
        .unwrap_err();
    assert!(e.to_string().contains("highlight"), "{e}");
    // Odd input never panics.
    for q in [
        "\"", "\\", ":", "a:", "+", "-", "*:*", "((", "~", "^", "\"\"*", "a~~", "a:\"b", "NOT",
        "OR", "AND",
    ] {
        let _either = idx.search(&SearchRequest::new(q, 5));
    }
}

fn truth_of(idx: &TextIndex, sample: Vec<(String, Option<u64>)>, count: u64) -> Truth {
    Truth {
        lsn: idx.persisted_lsn(),
        count,
        sample,
    }
}

#[test]
fn check_compares_versions_and_count() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let good = truth_of(
        &idx,
        vec![
            ("a".into(), Some(1)),
            ("f".into(), Some(6)),
            ("zz".into(), None),
        ],
        6,
    );
    assert!(idx.check(&good).unwrap().agrees(), "{:?}", idx.check(&good));
    let bad = truth_of(
        &idx,
        vec![
            ("a".into(), Some(9)),
            ("zz".into(), Some(3)),
            ("b".into(), None),
        ],
        7,
    );
    let ag = idx.check(&bad).unwrap();
    assert_eq!(ag.count, 6);
    assert_eq!(ag.disagreements.len(), 4, "{ag:?}");
    assert!(ag.damage.is_empty());
}

fn segment_files(gen_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(gen_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            ["store", "idx", "term", "pos", "fast", "fieldnorm"].contains(&ext)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn damaged_files_are_reported_as_damage_never_a_panic() {
    for fault in [
        "flip",
        "zero",
        "delete",
        "truncate",
        "meta_garbage",
        "meta_delete",
        "current_garbage",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let idx = open(tmp.path());
        fixture(&idx);
        let truth = truth_of(&idx, vec![("a".into(), Some(1))], 6);
        assert!(idx.check(&truth).unwrap().agrees());
        let gen_dir = idx.generation_dir();
        let files = segment_files(&gen_dir);
        assert!(!files.is_empty());
        for f in &files {
            let mut bytes = std::fs::read(f).unwrap();
            match fault {
                "flip" => {
                    let i = bytes.len() / 3;
                    bytes[i] ^= 0x10;
                    std::fs::write(f, &bytes).unwrap();
                }
                "zero" => {
                    let n = bytes.len();
                    bytes[n / 4..n / 2].fill(0);
                    std::fs::write(f, &bytes).unwrap();
                }
                "delete" => std::fs::remove_file(f).unwrap(),
                "truncate" => std::fs::write(f, &bytes[..bytes.len() / 2]).unwrap(),
                _ => {}
            }
            if !matches!(fault, "delete" | "truncate") {
                continue;
            }
        }
        match fault {
            "meta_garbage" => std::fs::write(gen_dir.join("meta.json"), b"{not json").unwrap(),
            "meta_delete" => std::fs::remove_file(gen_dir.join("meta.json")).unwrap(),
            "current_garbage" => std::fs::write(idx.dir().join("CURRENT"), b"garbage").unwrap(),
            _ => {}
        }
        match idx.check(&truth) {
            Ok(ag) if fault == "current_garbage" => {
                // CURRENT is read at open only; the live generation is intact.
                assert!(ag.agrees(), "{ag:?}");
            }
            Ok(ag) => {
                assert!(!ag.damage.is_empty(), "{fault}: {ag:?}");
                assert!(!ag.agrees());
            }
            Err(DerivedError::Damaged { reason, .. }) => {
                assert!(reason.contains("meta.json"), "{fault}: {reason}");
                assert!(fault.starts_with("meta"), "{fault}: {reason}");
            }
            Err(e) => panic!("{fault}: {e}"),
        }
        // Searching damaged files fails or answers; it never takes the process down.
        let _either = idx.search(&SearchRequest::new("brown", 10));
        drop(idx);
        // Reopened: a damaged generation is quarantined and the index starts empty, saying why.
        let idx = open(tmp.path());
        // Every segment file's checksum is verified as the reader opens it: a flipped or zeroed byte too.
        let r = idx.open_report().clone();
        assert!(!r.loaded, "{fault}: {r:?}");
        assert!(r.reason.is_some(), "{fault}: {r:?}");
        assert_eq!(idx.applied_lsn(), 0);
        assert_eq!(idx.len(), 0);
        // A rebuild makes it whole again.
        let mut docs = Corpus::new(100, 1.0, 1)
            .docs(10)
            .into_iter()
            .map(|d| {
                let doc = Document {
                    text: d.text,
                    vector: None,
                    meta: Some(d.meta),
                };
                (Arc::<str>::from(d.id.as_str()), Arc::new(doc))
            })
            .collect::<Vec<_>>()
            .into_iter();
        idx.rebuild(&mut docs, 40).unwrap();
        let truth = Truth {
            lsn: 40,
            count: 10,
            sample: vec![("d3".into(), Some(40)), ("a".into(), None)],
        };
        let ag = idx.check(&truth).unwrap();
        assert!(ag.agrees(), "{fault}: {ag:?}");
    }
}

#[test]
fn rebuild_swaps_generations_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let old_gen = idx.generation_dir();
    let docs: Vec<(Arc<str>, Arc<Document>)> = (0..50)
        .map(|i| {
            (
                Arc::from(format!("r{i}").as_str()),
                Arc::new(Document {
                    text: format!("rebuilt number{i}"),
                    vector: None,
                    meta: json!({"n": i}).as_object().cloned(),
                }),
            )
        })
        .collect();
    idx.rebuild(&mut docs.clone().into_iter(), 100).unwrap();
    let new_gen = idx.generation_dir();
    assert_ne!(old_gen, new_gen);
    assert!(!old_gen.exists(), "the old generation is removed");
    assert_eq!(
        std::fs::read_to_string(idx.dir().join("CURRENT"))
            .unwrap()
            .trim(),
        new_gen.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!((idx.applied_lsn(), idx.persisted_lsn()), (100, 100));
    assert!(ids(&idx, "fox").is_empty());
    assert_eq!(ids(&idx, "number7"), vec!["r7"]);
    assert_eq!(
        idx.search(&SearchRequest::new("rebuilt", 5)).unwrap().total,
        50
    );
    // Versions of rebuilt documents are the rebuild's LSN; later changes carry their own.
    idx.apply(&[put(101, "r1", "changed after", json!({}))])
        .unwrap();
    idx.persist().unwrap();
    let truth = Truth {
        lsn: 101,
        count: 50,
        sample: vec![
            ("r1".into(), Some(101)),
            ("r2".into(), Some(60)),
            ("a".into(), None),
        ],
    };
    assert!(
        idx.check(&truth).unwrap().agrees(),
        "{:?}",
        idx.check(&truth)
    );
    drop(idx);
    // A crash mid-rebuild leaves a half-built generation beside the live one: open removes it.
    std::fs::create_dir_all(new_gen.parent().unwrap().join("gen-000099")).unwrap();
    std::fs::write(new_gen.parent().unwrap().join("gen-000099/junk"), b"x").unwrap();
    let idx = open(tmp.path());
    assert!(idx.open_report().loaded);
    assert_eq!(idx.generation_dir(), new_gen);
    assert!(!new_gen.parent().unwrap().join("gen-000099").exists());
    assert_eq!(idx.applied_lsn(), 101);
    assert_eq!(ids(&idx, "changed"), vec!["r1"]);
}

#[test]
fn a_second_writer_is_refused_and_the_lock_goes_with_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    match TextIndex::open(tmp.path(), C, settings()) {
        Err(OpenError::Locked { path }) => assert!(path.ends_with("idx/default/text")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened twice"),
    }
    drop(idx);
    let _again = open(tmp.path());
    assert!(matches!(
        TextIndex::open(tmp.path(), "../x", settings()),
        Err(OpenError::Collection(_))
    ));
}

/// A predicate on a document's words and meta.
type Pred<'a> = dyn Fn(&[String], &serde_json::Map<String, Value>) -> bool + 'a;

#[test]
fn agrees_with_a_scan_on_a_synthetic_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    let docs = Corpus::new(2000, 1.0, 42).docs(3000);
    let changes: Vec<Change> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| put(i as u64 + 1, &d.id, &d.text, Value::Object(d.meta.clone())))
        .collect();
    for chunk in changes.chunks(500) {
        idx.apply(chunk).unwrap();
        idx.persist().unwrap();
    }
    let w = |r| index_text::synth::word(r);
    let words_of = |t: &str| t.split(' ').map(str::to_string).collect::<Vec<_>>();
    let scan = |pred: &Pred<'_>| -> u64 {
        docs.iter()
            .filter(|d| pred(&words_of(&d.text), &d.meta))
            .count() as u64
    };
    let total = |q: &str, filter: Option<Value>| {
        idx.search(&SearchRequest {
            filter,
            ..SearchRequest::new(q, 10)
        })
        .unwrap()
        .total
    };
    let (a, b, r) = (w(3), w(40), w(700));
    assert_eq!(total(&a, None), scan(&|ws, _| ws.contains(&a)));
    assert_eq!(total(&r, None), scan(&|ws, _| ws.contains(&r)));
    assert_eq!(
        total(&format!("{a} {b}"), None),
        scan(&|ws, _| ws.contains(&a) && ws.contains(&b))
    );
    assert_eq!(
        total(&format!("{a} OR {b}"), None),
        scan(&|ws, _| ws.contains(&a) || ws.contains(&b))
    );
    assert_eq!(
        total(&format!("{a} -{b}"), None),
        scan(&|ws, _| ws.contains(&a) && !ws.contains(&b))
    );
    let phrase = format!("\"{a} {b}\"");
    assert_eq!(
        total(&phrase, None),
        scan(&|ws, _| ws.windows(2).any(|p| p[0] == a && p[1] == b))
    );
    // Three and four words: a phrase over the pairs field (each pair at its first word's position).
    let c = w(1);
    for words in [
        vec![a.clone(), b.clone(), c.clone()],
        vec![c.clone(), a.clone(), c.clone(), a.clone()],
    ] {
        let n = words.len();
        assert_eq!(
            total(&format!("\"{}\"", words.join(" ")), None),
            scan(&|ws, _| ws.windows(n).any(|p| p == words.as_slice())),
            "{words:?}"
        );
    }
    // A phrase with slop keeps the positions of the text.
    assert_eq!(
        total(&format!("\"{a} {b}\"~1"), None),
        scan(&|ws, _| (0..ws.len())
            .any(|i| ws[i] == a && (ws.get(i + 1) == Some(&b) || ws.get(i + 2) == Some(&b))))
    );
    // Prefixes of 1..=4 characters are indexed terms; longer ones expand over the term dictionary.
    for len in 1..=a.len().min(6) {
        let prefix = &a[..len];
        assert_eq!(
            total(&format!("{prefix}*"), None),
            scan(&|ws, _| ws.iter().any(|x| x.starts_with(prefix))),
            "{prefix}*"
        );
    }
    let f = json!({"lang": "fr", "year": {"gte": 2010}});
    let parsed = Filter::parse(&f, &TextSettings::default()).unwrap();
    assert_eq!(
        total(&a, Some(f.clone())),
        scan(&|ws, m| ws.contains(&a) && parsed.matches(Some(m)))
    );
    assert_eq!(idx.len(), 3000);
}

#[test]
fn a_scan_answers_exactly_what_the_index_answers_and_refuses_bad_input_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    let docs = Corpus::new(500, 1.0, 9).docs(1500);
    let changes: Vec<Change> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| put(i as u64 + 1, &d.id, &d.text, Value::Object(d.meta.clone())))
        .collect();
    idx.apply(&changes).unwrap();
    idx.persist().unwrap();
    let w = |r| index_text::synth::word(r);
    let table = || {
        docs.iter().map(|d| {
            (
                d.id.clone(),
                Document {
                    text: d.text.clone(),
                    vector: None,
                    meta: Some(d.meta.clone()),
                },
            )
        })
    };
    let queries = [
        w(0),
        w(40),
        w(300),
        format!("{} {}", w(1), w(2)),
        format!("{} OR {}", w(30), w(31)),
        format!("\"{} {}\"", w(0), w(1)),
        format!("{}*", &w(5)[..2]),
        format!("{} -{}", w(3), w(0)),
        "*".to_string(),
    ];
    for q in &queries {
        for (filter, offset) in [
            (None, 0),
            (Some(json!({"lang": "fr", "year": {"gte": 2010}})), 0),
            (None, 5),
        ] {
            let req = SearchRequest {
                filter,
                offset,
                include: Include {
                    text: true,
                    meta: true,
                },
                highlight: Some(HighlightOptions::default()),
                ..SearchRequest::new(q.clone(), 20)
            };
            let from_index = idx.search(&req).unwrap();
            let from_scan = index_text::scan(&settings(), &req, &mut table(), 1500).unwrap();
            assert_eq!(from_scan.total, from_index.total, "{q}");
            assert_eq!(from_scan.lsn, 1500);
            let strip = |a: &index_text::SearchAnswer| {
                a.hits
                    .iter()
                    .map(|h| {
                        (
                            h.id.clone(),
                            h.text.clone(),
                            h.meta.clone(),
                            h.highlights.clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            if q != "*" {
                // `*` scores every document alike: the order among equal scores is each index's own.
                assert_eq!(strip(&from_scan), strip(&from_index), "{q} {req:?}");
                for (a, b) in from_scan.hits.iter().zip(&from_index.hits) {
                    assert!(
                        (a.score - b.score).abs() < 1e-4,
                        "{q}: {} vs {}",
                        a.score,
                        b.score
                    );
                }
            }
        }
    }
    // Bad input is refused before a document is read.
    let mut read = 0usize;
    let mut counting = table().inspect(|_| read += 1);
    let e = index_text::scan(
        &settings(),
        &SearchRequest::new("quick (", 10),
        &mut counting,
        1,
    )
    .unwrap_err();
    assert!(e.is_user_error() && e.column().is_some(), "{e}");
    let declared = TextSettings {
        fields: [("lang".to_string(), FieldKind::Keyword)].into(),
        ..settings()
    };
    let e = index_text::scan(
        &declared,
        &SearchRequest {
            filter: Some(json!({"year": 2020})),
            ..SearchRequest::new(w(0), 10)
        },
        &mut counting,
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("year"), "{e}");
    drop(counting);
    assert_eq!(read, 0);

    // The index's own scan keeps its documents for the next scan at the same LSN: the table is not read again.
    let req = SearchRequest::new(w(40), 10);
    let want = idx.search(&req).unwrap();
    let mut reads = Vec::new();
    for lsn in [1500, 1500, 1501] {
        let mut n = 0usize;
        let got = idx
            .scan(&req, &mut table().inspect(|_| n += 1), lsn)
            .unwrap();
        assert_eq!(
            got.hits.iter().map(|h| &h.id).collect::<Vec<_>>(),
            want.hits.iter().map(|h| &h.id).collect::<Vec<_>>()
        );
        assert_eq!(got.lsn, lsn);
        reads.push(n);
    }
    assert_eq!(reads, [1500, 0, 1500]);
    let e = idx
        .scan(&SearchRequest::new("(", 10), &mut table(), 1501)
        .unwrap_err();
    assert!(e.is_user_error(), "{e}");
    idx.drop_scan();
    let mut n = 0usize;
    idx.scan(&req, &mut table().inspect(|_| n += 1), 1501)
        .unwrap();
    assert_eq!(n, 1500, "dropped: read again");
}

#[test]
fn a_bounded_scan_reads_at_most_its_bound_and_says_it_is_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    let docs = Corpus::new(300, 1.0, 11).docs(1000);
    let table = || {
        docs.iter().map(|d| {
            (
                d.id.clone(),
                Document {
                    text: d.text.clone(),
                    vector: None,
                    meta: Some(d.meta.clone()),
                },
            )
        })
    };
    let q = index_text::synth::word(0);
    let req = SearchRequest::new(q.clone(), 1000);
    let first: std::collections::BTreeSet<String> =
        docs.iter().take(100).map(|d| d.id.clone()).collect();
    let matches_in_first = docs
        .iter()
        .take(100)
        .filter(|d| d.text.split(' ').any(|x| x == q))
        .count() as u64;
    assert!(matches_in_first > 0);

    // Cut at 100: the first 100 documents only (and one more looked at to know there are more).
    let mut n = 0usize;
    let (a, scanned) =
        index_text::scan_bounded(&settings(), &req, &mut table().inspect(|_| n += 1), 7, 100)
            .unwrap();
    assert_eq!(
        scanned,
        index_text::Scanned {
            docs: 100,
            truncated: true
        }
    );
    assert_eq!(n, 101);
    assert_eq!(a.total, matches_in_first);
    assert!(a.hits.iter().all(|h| first.contains(&h.id)), "{:?}", a.hits);
    // A bound the table fits in: the whole table, not truncated, the unbounded answer.
    let (b, scanned) = index_text::scan_bounded(&settings(), &req, &mut table(), 7, 1000).unwrap();
    assert_eq!(
        scanned,
        index_text::Scanned {
            docs: 1000,
            truncated: false
        }
    );
    assert_eq!(
        b,
        index_text::SearchAnswer {
            took_ms: b.took_ms,
            ..index_text::scan(&settings(), &req, &mut table(), 7).unwrap()
        }
    );

    // The index's scan keeps a cut scan only for the same bound; a whole-table scan for any bound it fits in.
    let reads = |bound: usize, lsn: u64| {
        let mut n = 0usize;
        let (a, s) = idx
            .scan_bounded(&req, &mut table().inspect(|_| n += 1), lsn, bound)
            .unwrap();
        (n, s.truncated, a.total)
    };
    assert_eq!(reads(100, 9), (101, true, matches_in_first));
    assert_eq!(reads(100, 9), (0, true, matches_in_first));
    assert_eq!(reads(200, 9).0, 201);
    assert_eq!(reads(5000, 9), (1000, false, b.total));
    assert_eq!(reads(1000, 9), (0, false, b.total));
    assert_eq!(
        reads(999, 9).0,
        1000,
        "the table does not fit: read again, cut"
    );
}

/// Makes `path` look `secs` seconds old.
fn age(path: &Path, secs: u64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn structure_reports_orphan_and_missing_files_and_removes_the_orphans() {
    use index_text::{MISSING_FILES, ORPHAN_AGE_MIN, ORPHAN_FILES};
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let codes = |idx: &TextIndex| -> Vec<String> {
        idx.structure()
            .unwrap()
            .problems
            .into_iter()
            .map(|p| p.code)
            .collect()
    };
    let s = idx.structure().unwrap();
    assert!(s.problems.is_empty(), "{s:?}");
    assert_eq!(s.figures["documents"], 6.0);
    assert_eq!(s.figures["orphan_files"], 0.0);
    assert!(
        s.figures["segments"] >= 1.0 && s.figures["files"] >= 6.0,
        "{s:?}"
    );

    // Orphans: a stray file in the generation, a generation directory nothing names; a young file is not one yet
    // (it may be a temporary file of an atomic write).
    let gen_dir = idx.generation_dir();
    let stray = gen_dir.join("0123456789abcdef0123456789abcdef.idx");
    std::fs::write(&stray, b"not tantivy's").unwrap();
    let young = gen_dir.join(".tmp-young");
    std::fs::write(&young, b"x").unwrap();
    let old_gen = idx.dir().join("gen-000099");
    std::fs::create_dir(&old_gen).unwrap();
    std::fs::write(old_gen.join("meta.json"), b"{}").unwrap();
    assert!(
        codes(&idx).is_empty(),
        "nothing is an orphan before {ORPHAN_AGE_MIN:?}"
    );
    age(&stray, 120);
    age(&old_gen, 120);
    let s = idx.structure().unwrap();
    assert_eq!(codes(&idx), [ORPHAN_FILES], "{s:?}");
    assert_eq!(s.figures["orphan_files"], 2.0, "{s:?}");
    let summary = &s.problems[0].summary;
    assert!(
        summary.contains("0123456789abcdef0123456789abcdef.idx") && summary.contains("gen-000099"),
        "{summary}"
    );
    let done = idx.repair_structure(ORPHAN_FILES).unwrap();
    assert!(done.contains("removed 2 orphan file(s)"), "{done}");
    assert!(!stray.exists() && !old_gen.exists());
    assert!(young.exists(), "a young file is left alone");
    assert!(codes(&idx).is_empty());
    // Searches are unchanged.
    assert_eq!(ids(&idx, "brown"), ["a", "b", "e"]);

    // A file meta.json names is missing: reported, not repaired in place (a rebuild is).
    let victim = std::fs::read_dir(&gen_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pos"))
        .expect("a positions file");
    std::fs::remove_file(&victim).unwrap();
    let s = idx.structure().unwrap();
    assert_eq!(codes(&idx), [MISSING_FILES], "{s:?}");
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(s.problems[0].summary.contains(&name), "{s:?}");
    assert!(idx.repair_structure(MISSING_FILES).is_err());
    let docs: Vec<(Arc<str>, Arc<Document>)> = ["quick brown fox", "brown dog"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                Arc::from(format!("r{i}")),
                Arc::new(Document {
                    text: t.to_string(),
                    vector: None,
                    meta: None,
                }),
            )
        })
        .collect();
    idx.rebuild(&mut docs.into_iter(), 50).unwrap();
    assert!(codes(&idx).is_empty());
    assert_eq!(ids(&idx, "brown"), ["r0", "r1"]);

    // meta.json itself gone: missing too.
    std::fs::remove_file(idx.generation_dir().join("meta.json")).unwrap();
    let s = idx.structure().unwrap();
    assert_eq!(codes(&idx), [MISSING_FILES], "{s:?}");
    assert!(s.problems[0].summary.contains("meta.json"), "{s:?}");
}

/// A process killed in the middle of tantivy's atomic write leaves a `.tmp…` file in the generation: the next open
/// removes it, so a restart after a kill never reports it as an orphan; the index loads whole.
#[test]
fn an_interrupted_atomic_write_s_leftover_is_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = {
        let idx = open(tmp.path());
        fixture(&idx);
        idx.generation_dir()
    };
    let leftover = gen_dir.join(".tmpAbC123");
    std::fs::write(&leftover, b"half of a meta.json").unwrap();
    age(&leftover, 120);
    let idx = open(tmp.path());
    assert!(idx.open_report().loaded, "{:?}", idx.open_report());
    assert!(!leftover.exists(), "the leftover is removed");
    let s = idx.structure().unwrap();
    assert!(s.problems.is_empty(), "{s:?}");
    assert_eq!(s.figures["orphan_files"], 0.0);
    assert_eq!(ids(&idx, "brown"), ["a", "b", "e"]);
}

/// An index written by a version with another schema (here: without the pairs field) is not used as it is: it is
/// quarantined, and the index starts empty at LSN 0, so the store rebuilds it from the log.
#[test]
fn an_index_of_an_older_schema_is_quarantined_and_starts_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let gen_dir = idx.generation_dir();
    drop(idx);
    let meta_path = gen_dir.join("meta.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let fields = meta["schema"].as_array_mut().unwrap();
    let n_fields = fields.len();
    fields.retain(|f| f["name"] != "text_pairs");
    assert_eq!(
        fields.len(),
        n_fields - 1,
        "this version's schema has text_pairs"
    );
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let idx = open(tmp.path());
    let r = idx.open_report().clone();
    assert!(!r.loaded, "{r:?}");
    let reason = r.reason.clone().unwrap_or_default();
    assert!(reason.contains("schema"), "{reason}");
    assert_eq!(idx.applied_lsn(), 0);
    assert_eq!(idx.len(), 0);
    assert_ne!(idx.generation_dir(), gen_dir);
    let name = gen_dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(idx.dir().join(format!("quarantine-{name}")).is_dir());
    // Applied again (as the store's replay does), its phrases answer.
    fixture(&idx);
    assert_eq!(ids(&idx, "\"quick brown\""), vec!["a", "b"]);
    assert_eq!(ids(&idx, "\"brown fox\""), vec!["a"]);
}

/// Every file under `dir` with its bytes, the search library's own bookkeeping (`.managed.json`, lock files, `.tmp…`
/// files of an atomic write) included.
fn contents(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(contents(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// Asserts that no file of another index differs from `before` and none is new (a write through a swapped-in link).
fn nothing_written_through(
    now: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    before: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
) {
    let changed: Vec<_> = now
        .keys()
        .chain(before.keys())
        .filter(|p| now.get(*p) != before.get(*p))
        .collect();
    assert!(changed.is_empty(), "written through the link: {changed:?}");
}

fn rebuild_docs(texts: &[&str]) -> Vec<(Arc<str>, Arc<Document>)> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let doc = Document {
                text: t.to_string(),
                vector: None,
                meta: None,
            };
            (Arc::from(format!("r{i}")), Arc::new(doc))
        })
        .collect()
}

/// The index directory replaced under a running index — by a link to another collection's index, by a file — is
/// never written through: persist reports the index damaged, the structure check names what is there, and a
/// rebuild moves it aside (kept, never deleted) and builds in a directory of its own. A link found at open is moved
/// aside too, never followed to the other index's lock.
#[test]
fn an_index_directory_replaced_by_a_link_or_a_file_is_moved_aside_and_rebuilt() {
    use index_text::DIRECTORY_REPLACED;
    let tmp = tempfile::tempdir().unwrap();
    let other = TextIndex::open(tmp.path(), "other", settings()).unwrap();
    let mut c = put(1, "o1", "other collection words", json!({}));
    c.collection = Arc::from("other");
    other.apply(&[c]).unwrap();
    other.persist().unwrap();
    let theirs = contents(other.dir());
    let idx = open(tmp.path());
    fixture(&idx);
    let dir = idx.dir().to_path_buf();
    let aside = |what: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.to_string_lossy()
                    .contains(&format!("text.not-a-directory-{what}"))
            })
            .collect()
    };
    let codes = |idx: &TextIndex| -> Vec<String> {
        let s = idx.structure().unwrap();
        s.problems.into_iter().map(|p| p.code).collect()
    };

    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(other.dir(), &dir).unwrap();
    idx.apply(&[put(7, "g", "late words", json!({}))]).unwrap();
    let e = idx.persist().unwrap_err();
    assert!(matches!(e, DerivedError::Damaged { .. }), "{e}");
    assert!(e.to_string().contains("a symbolic link to"), "{e}");
    assert_eq!(codes(&idx), [DIRECTORY_REPLACED]);
    // The search library's own writes (merges, garbage collection, `.managed.json`) go to the generation directory
    // the index holds open, never through the link.
    nothing_written_through(&contents(other.dir()), &theirs);
    idx.rebuild(&mut rebuild_docs(&["quick brown fox"]).into_iter(), 50)
        .unwrap();
    assert!(std::fs::symlink_metadata(&dir).unwrap().is_dir());
    assert_eq!(aside("").len(), 1, "the link kept aside");
    nothing_written_through(&contents(other.dir()), &theirs);
    assert!(codes(&idx).is_empty());
    assert_eq!(ids(&idx, "brown"), ["r0"]);
    idx.apply(&[put(51, "h", "brown hat", json!({}))]).unwrap();
    assert_eq!(idx.persist().unwrap(), 51);

    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, vec![9u8; 4096]).unwrap();
    assert_eq!(codes(&idx), [DIRECTORY_REPLACED]);
    idx.rebuild(&mut rebuild_docs(&["brown bear"]).into_iter(), 60)
        .unwrap();
    assert_eq!(ids(&idx, "brown"), ["r0"]);
    let kept: Vec<_> = aside("").into_iter().filter(|p| p.is_file()).collect();
    assert_eq!(kept.len(), 1, "the file kept aside");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), vec![9u8; 4096]);
    drop(idx);

    // At open: a link to the other (open, locked) index is moved aside, not locked through.
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(other.dir(), &dir).unwrap();
    let idx = open(tmp.path());
    let why = idx.open_report().reason.clone().unwrap_or_default();
    assert!(why.contains("moved aside"), "{why}");
    assert_eq!(idx.applied_lsn(), 0);
    assert!(std::fs::symlink_metadata(&dir).unwrap().is_dir());
    nothing_written_through(&contents(other.dir()), &theirs);
}

/// A freshly opened index holding the fixture, and the files its searcher maps.
fn watched_fixture(dir: &Path) -> (TextIndex, Vec<std::path::PathBuf>) {
    let idx = open(dir);
    fixture(&idx);
    assert_eq!(ids(&idx, "brown"), vec!["a", "b", "e"]);
    idx.quick_check().unwrap();
    let files = segment_files(&idx.generation_dir());
    assert!(!files.is_empty());
    (idx, files)
}

/// After `damage` changed files under the open index: searches still answer right (from the bytes read and checked
/// when the segments were opened, never from the damaged files), the quick check says damaged naming the file, and
/// a rebuild serves again.
fn damage_is_noticed(idx: &TextIndex, what: &str) {
    assert_eq!(ids(idx, "brown"), vec!["a", "b", "e"], "{what}");
    assert_eq!(ids(idx, "\"brown fox\""), vec!["a"], "{what}");
    match idx.quick_check() {
        Err(DerivedError::Damaged { reason, .. }) => {
            assert!(
                reason.contains("changed under the open index"),
                "{what}: {reason}"
            )
        }
        other => panic!("{what}: {other:?}"),
    }
    let mut docs = rebuild_docs(&["brown bear"]).into_iter();
    idx.rebuild(&mut docs, 40).unwrap();
    idx.quick_check().unwrap();
    assert_eq!(ids(idx, "brown").len(), 1, "{what}");
}

#[test]
fn a_file_truncated_under_the_open_index_is_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let (idx, files) = watched_fixture(tmp.path());
    let f = &files[0];
    let len = std::fs::metadata(f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    damage_is_noticed(&idx, "truncated");
}

#[test]
fn a_file_overwritten_with_garbage_under_the_open_index_is_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let (idx, files) = watched_fixture(tmp.path());
    // The same length: only the modification time tells (the inode stays).
    std::thread::sleep(std::time::Duration::from_millis(20));
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len() as usize;
        let garbage: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
        std::fs::write(f, garbage).unwrap();
        assert_eq!(std::fs::metadata(f).unwrap().len() as usize, len);
    }
    damage_is_noticed(&idx, "garbage");
}

#[test]
fn a_file_replaced_under_the_open_index_is_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let (idx, files) = watched_fixture(tmp.path());
    let f = &files[0];
    let bytes = std::fs::read(f).unwrap();
    let other = f.with_extension("copy");
    std::fs::write(&other, &bytes).unwrap();
    std::fs::rename(&other, f).unwrap();
    damage_is_noticed(&idx, "replaced");
}

/// The ids (sorted) of a search over every document, and the number of matches.
fn answer(idx: &TextIndex, q: &str) -> Result<(Vec<String>, u64), QueryError> {
    let a = idx.search(&SearchRequest::new(q, 1000))?;
    let mut ids: Vec<String> = a.hits.into_iter().map(|h| h.id).collect();
    ids.sort();
    Ok((ids, a.total))
}

/// A segment file truncated under the open index — anywhere, to nothing included — while searches run on other
/// threads, round after round (seeded: `MEDIC_TEST_SEED`): the process lives (the searcher reads no file through a
/// map, so a truncated page is no SIGBUS), every answer is the right one (it reads the bytes checked when the
/// segments were opened), and the store's driver notices the damage by its quick check and rebuilds the index.
#[test]
fn segment_files_truncated_while_searches_run_kill_nothing_mislead_no_one_and_are_rebuilt() {
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let seed: u64 = std::env::var("MEDIC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7C_5EED);
    eprintln!("seed={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    const DOCS: usize = 300;
    const ROUNDS: usize = 12;
    let tmp = tempfile::tempdir().unwrap();
    let config = store::StoreConfig {
        disk_low_bytes_floor: 0,
        disk_critical_bytes_floor: 0,
        ..store::StoreConfig::default()
    };
    let store = Arc::new(store::Store::open(tmp.path(), config).unwrap());
    let idx = Arc::new(
        TextIndex::open_with(store.dir(), C, settings(), store.config().io.clone()).unwrap(),
    );
    store.attach_derived(idx.clone()).unwrap();
    let mut last = 0;
    for i in 0..DOCS {
        let doc = Document {
            text: format!("common w{} n{i}", i % 10),
            vector: None,
            meta: None,
        };
        last = store.put(&format!("d{i:03}"), doc).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while idx.visible_lsn() < last {
        assert!(Instant::now() < deadline, "never caught up to LSN {last}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // What every search must answer: all documents, or those of one `w` word.
    let expected = |q: &str| -> (Vec<String>, u64) {
        let ids: Vec<String> = (0..DOCS)
            .filter(|i| q == "common" || q == format!("w{}", i % 10))
            .map(|i| format!("d{i:03}"))
            .collect();
        let n = ids.len() as u64;
        (ids, n)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let searchers: Vec<_> = (0..3u64)
        .map(|t| {
            let (idx, stop, answered) = (idx.clone(), stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let q = if n % 3 == 0 {
                        "common".to_string()
                    } else {
                        format!("w{}", n % 10)
                    };
                    let got = answer(&idx, &q).unwrap_or_else(|e| panic!("{q}: {e}"));
                    assert_eq!(got, expected(&q), "{q}: a wrong answer");
                    answered.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    let rebuilds = || {
        store
            .derived()
            .status()
            .indexes
            .iter()
            .find(|s| s.name == "text")
            .map(|s| s.rebuilds)
            .unwrap_or(0)
    };
    let initial = rebuilds();
    for round in 0..ROUNDS {
        let before = rebuilds();
        let gen_dir = idx.generation_dir();
        let files = segment_files(&gen_dir);
        assert!(!files.is_empty(), "round {round}");
        let f = &files[rng.random_range(0..files.len())];
        let len = std::fs::metadata(f).unwrap().len();
        let to = rng.random_range(0..len);
        let answered_before = answered.load(Ordering::Relaxed);
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(to)
            .unwrap();
        let what = format!("round {round}: {} cut to {to} of {len} bytes", f.display());
        // Searches go on, right, while the damage waits for the quick check.
        let t0 = Instant::now();
        while answered.load(Ordering::Relaxed) < answered_before + 20 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{what}: searches stopped"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        while rebuilds() == before || idx.generation_dir() == gen_dir {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{what}: not rebuilt: {:?}",
                store.derived().status()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        idx.quick_check()
            .unwrap_or_else(|e| panic!("{what}: after the rebuild: {e}"));
        assert_eq!(
            answer(&idx, "common").unwrap(),
            expected("common"),
            "{what}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in searchers {
        h.join().expect("a searcher failed");
    }
    assert!(answered.load(Ordering::Relaxed) >= (ROUNDS * 20) as u64);
    assert_eq!(
        rebuilds() - initial,
        ROUNDS as u64,
        "one rebuild per damage"
    );
}

/// Many small commits with updates and deletes: tantivy merges segments and removes the merged ones' files while
/// searches run on other threads. None of it is damage: every search answers, every quick check passes.
#[test]
fn merges_and_tantivy_s_own_file_removals_are_never_taken_for_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = Arc::new(open(tmp.path()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searchers: Vec<_> = (0..2)
        .map(|_| {
            let (idx, stop) = (idx.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(e) = idx.search(&SearchRequest::new("word", 10)) {
                        panic!("a search during merges: {e}");
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let gen_dir = idx.generation_dir();
    let mut seen_segments = std::collections::BTreeSet::new();
    let mut lsn = 0;
    for round in 0..120u64 {
        let mut batch = Vec::new();
        for j in 0..3u64 {
            lsn += 1;
            let id = format!("d{}", (round * 3 + j) % 50);
            batch.push(put(lsn, &id, &format!("word w{round} w{j}"), json!({})));
        }
        if round % 5 == 4 {
            lsn += 1;
            batch.push(del(lsn, &format!("d{}", round % 50)));
        }
        idx.apply(&batch).unwrap();
        idx.persist().unwrap();
        for f in segment_files(&gen_dir) {
            seen_segments.insert(f.file_stem().unwrap().to_string_lossy().to_string());
        }
        idx.quick_check()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let searches: u64 = searchers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(searches > 0);
    idx.quick_check().unwrap();
    // tantivy merged segments and removed the merged ones' files meanwhile.
    let live: std::collections::BTreeSet<String> = segment_files(&gen_dir)
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(
        seen_segments.len() > live.len() + 10,
        "{} segments seen, {} live: no merge happened",
        seen_segments.len(),
        live.len()
    );
    assert!(idx.search(&SearchRequest::new("word", 10)).is_ok());
    let truth = truth_of(&idx, vec![], idx.len() as u64);
    assert!(idx.check(&truth).unwrap().damage.is_empty());
}

/// `chattr` on `path` (`+i`: nothing in it can be written, created or removed, even by root).
fn chattr(flag: &str, path: &Path) {
    let out = std::process::Command::new("chattr")
        .args(["-R", flag])
        .arg(path)
        .output()
        .expect("chattr");
    assert!(
        out.status.success(),
        "chattr {flag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A persist that fails (the directory immutable) drops what it could not commit: the applied LSN goes back to
/// the visible one, while `applied_high` keeps what was applied, so a strong search (which waits until
/// `applied_high` is visible) never takes the persisted state for the applied one.
#[test]
fn a_failed_persist_leaves_the_index_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = open(tmp.path());
    fixture(&idx);
    let visible = idx.visible_lsn();
    idx.apply(&[put(visible + 1, "late", "brown late", json!({}))])
        .unwrap();
    assert_eq!(idx.applied_high(), visible + 1);
    let dir = idx.dir().to_path_buf();
    chattr("+i", &dir);
    let persisted = idx.persist();
    chattr("-i", &dir);
    assert!(
        persisted.is_err(),
        "a persist into an immutable directory: {persisted:?}"
    );
    assert_eq!(idx.visible_lsn(), visible);
    assert_eq!(
        idx.applied_lsn(),
        visible,
        "the unpersisted change is dropped"
    );
    assert_eq!(
        idx.applied_high(),
        visible + 1,
        "what was applied is remembered"
    );
    assert!(!ids(&idx, "late").contains(&"late".to_string()));
    // Applied again (the driver catches up from the log), or rebuilt when the writer was retired: visible again.
    let again = match idx.apply(&[put(visible + 1, "late", "brown late", json!({}))]) {
        Ok(()) => idx.persist().map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = again {
        assert!(matches!(e, DerivedError::Damaged { .. }), "{e}");
        let mut docs = rebuild_docs(&["brown late"]).into_iter();
        idx.rebuild(&mut docs, visible + 1).unwrap();
    }
    assert!(idx.visible_lsn() >= idx.applied_high());
}
