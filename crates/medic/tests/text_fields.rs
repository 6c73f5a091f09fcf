//! A collection's declared meta fields (`PUT /v1/collections/{c}` with `"fields"`) end to end against the real
//! `medic serve`: field-scoped queries and filters typed by the declaration (text, vector and a scan while the text
//! index is gone), an undeclared field or a value of the wrong type refused with a 400 naming it, the declaration
//! kept across a restart.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, wait_for};

const C: &str = "books";

fn ids(v: &Value) -> BTreeSet<String> {
    v["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {v}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn search(d: &Daemon, body: Value) -> (u16, Value) {
    let mut body = body;
    if body.get("consistency").is_none() {
        body["consistency"] = json!("strong");
    }
    d.json("POST", &format!("/v1/collections/{C}/search"), Some(&body))
}

fn hits(d: &Daemon, body: Value) -> BTreeSet<String> {
    let (s, v) = search(d, body.clone());
    assert_eq!(s, 200, "{body}: {v}");
    ids(&v)
}

fn refused(d: &Daemon, body: Value, says: &[&str]) {
    let (s, v) = search(d, body.clone());
    assert_eq!(s, 400, "{body}: {v}");
    let e = v["error"].as_str().unwrap();
    for w in says {
        assert!(e.contains(w), "{body}: {e:?} does not say {w:?}");
    }
}

/// id, text, lang, year, score, draft, vector.
type Doc = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    f64,
    bool,
    [f32; 2],
);

const DOCS: &[Doc] = &[
    (
        "a",
        "the quick brown fox",
        "en",
        2020,
        0.9,
        false,
        [1.0, 0.0],
    ),
    ("b", "a brown dog sleeps", "en", 2022, 0.4, true, [0.9, 0.1]),
    ("c", "le renard brun", "fr", 2021, 0.7, false, [0.0, 1.0]),
    (
        "d",
        "brown bears in the forest",
        "de",
        2019,
        0.2,
        false,
        [0.7, 0.7],
    ),
    ("e", "quick thinking", "en", 2023, 0.5, true, [0.5, 0.5]),
];

fn check_queries(d: &Daemon) {
    // Field-scoped queries on declared fields, typed by the declaration.
    assert_eq!(
        hits(d, json!({"text": "brown lang:en", "k": 10})),
        set(&["a", "b"])
    );
    assert_eq!(hits(d, json!({"text": "lang:fr", "k": 10})), set(&["c"]));
    assert_eq!(
        hits(d, json!({"text": "brown year:[2020 TO 2022]", "k": 10})),
        set(&["a", "b"])
    );
    assert_eq!(
        hits(d, json!({"text": "draft:true", "k": 10})),
        set(&["b", "e"])
    );
    assert_eq!(
        hits(d, json!({"text": "lang: IN [fr de]", "k": 10})),
        set(&["c", "d"])
    );
    assert_eq!(
        hits(d, json!({"text": "text:quick", "k": 10})),
        set(&["a", "e"])
    );
    // Filters on declared fields: keyword, integer and float ranges, bool, combined.
    assert_eq!(
        hits(
            d,
            json!({"text": "*", "k": 10, "filter": {"year": {"gte": 2021}, "draft": false}})
        ),
        set(&["c"])
    );
    assert_eq!(
        hits(
            d,
            json!({"text": "*", "k": 10, "filter": {"score": {"lt": 0.45}}})
        ),
        set(&["b", "d"])
    );
    assert_eq!(
        hits(
            d,
            json!({"text": "*", "k": 10, "filter": {"or": [{"lang": "de"}, {"not": {"lang": {"in": ["en", "de"]}}}]}})
        ),
        set(&["c", "d"])
    );
}

#[test]
fn declared_fields_scope_queries_and_filters_and_refuse_what_is_not_declared() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, tmp.path());
    let fields = json!({"lang": "keyword", "year": "integer", "score": "float", "draft": "bool"});
    let (s, v) = d.json(
        "PUT",
        &format!("/v1/collections/{C}"),
        Some(&json!({"dimension": 2, "fields": fields})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["settings"]["fields"], fields, "{v}");
    for (id, text, lang, year, score, draft, vector) in DOCS {
        let (s, v) = d.json(
            "PUT",
            &format!("/v1/collections/{C}/docs/{id}"),
            Some(&json!({"text": text, "vector": vector,
                         "meta": {"lang": lang, "year": year, "score": score, "draft": draft, "author": "x"}})),
        );
        assert_eq!(s, 200, "{v}");
    }
    wait_for("the text index answering", Duration::from_secs(60), || {
        let (s, v) = search(&d, json!({"text": "brown", "k": 1}));
        (s == 200 && v["index"] == "text").then_some(())
    });
    check_queries(&d);

    // Not declared, or not of the declared type: 400 naming the field (and the column in a query).
    refused(
        &d,
        json!({"text": "brown author:x", "k": 5}),
        &["column 7", "unknown field \"author\"", "lang"],
    );
    refused(
        &d,
        json!({"text": "year:abc", "k": 5}),
        &["column 1", "year", "integer"],
    );
    refused(
        &d,
        json!({"text": "draft:maybe", "k": 5}),
        &["draft", "true or false"],
    );
    refused(
        &d,
        json!({"text": "lang:[a TO b]", "k": 5}),
        &["lang", "numeric"],
    );
    refused(
        &d,
        json!({"text": "brown", "k": 5, "filter": {"author": "x"}}),
        &["filter.author"],
    );
    refused(
        &d,
        json!({"text": "brown", "k": 5, "filter": {"year": "2020"}}),
        &["filter.year"],
    );
    // The same declaration holds for a vector search's filter.
    let (s, v) = search(
        &d,
        json!({"vector": [1.0, 0.0], "k": 5, "filter": {"lang": "en", "draft": false}}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), set(&["a"]), "{v}");
    refused(
        &d,
        json!({"vector": [1.0, 0.0], "k": 5, "filter": {"author": "x"}}),
        &["filter.author"],
    );

    // Answered from a scan while the collection's text index is gone: the same declaration, the same hits.
    let text_dir = data.join(format!("idx/{C}/text"));
    wait_for("the directory removed", Duration::from_secs(10), || {
        std::fs::remove_dir_all(&text_dir).ok()
    });
    let (s, v) = search(&d, json!({"text": "brown lang:en", "k": 10}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), set(&["a", "b"]), "{v}");
    if v["degraded"] == true {
        assert_eq!(v["index"], "scan", "{v}");
    }
    refused(
        &d,
        json!({"text": "brown author:x", "k": 5}),
        &["unknown field \"author\""],
    );
    d.stop();

    // Kept across a restart.
    let d = Daemon::start(&data, tmp.path());
    wait_for("the text index answering", Duration::from_secs(60), || {
        let (s, v) = search(&d, json!({"text": "brown", "k": 1}));
        (s == 200 && v["index"] == "text").then_some(())
    });
    check_queries(&d);
    refused(
        &d,
        json!({"text": "author:x", "k": 5}),
        &["unknown field \"author\""],
    );
    d.stop();
}
