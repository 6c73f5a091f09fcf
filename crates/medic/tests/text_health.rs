//! The text index's files checked by the engine under the real `medic serve`: a file in the index directory that
//! tantivy's `meta.json` does not name (an orphan) is reported by `derived.structure` and removed in place; a file
//! it names that is missing is reported and the index rebuilt from the table. Searches answer the same throughout.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Daemon, incidents_about, wait_for};

fn search(d: &Daemon, q: &str) -> Vec<String> {
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&json!({"text": q, "k": 50, "consistency": "strong"})),
    );
    assert_eq!(s, 200, "{q}: {v}");
    support::hit_ids(&v)
}

/// Makes `path` look `secs` seconds old.
fn age(path: &std::path::Path, secs: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(secs);
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn orphan_files_are_removed_and_missing_files_rebuilt_by_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = support::checks_config(tmp.path(), 400);
    let d = Daemon::start_with(
        &data,
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    );
    for (id, text) in [
        ("a", "the quick brown fox"),
        ("b", "lazy brown dog"),
        ("c", "quick thinking"),
    ] {
        let (s, v) = d.json(
            "PUT",
            &format!("/v1/docs/{id}"),
            Some(&json!({"text": text})),
        );
        assert_eq!(s, 200, "{v}");
    }
    wait_for("the text index answering", Duration::from_secs(60), || {
        let (s, v) = d.json(
            "POST",
            "/v1/search",
            Some(&json!({"text": "brown", "k": 5, "consistency": "strong"})),
        );
        (s == 200 && v["index"] == "text").then_some(())
    });
    let want = search(&d, "brown");
    assert_eq!(want, ["b", "a"]);
    let text_dir = data.join("idx/default/text");
    let current = std::fs::read_to_string(text_dir.join("CURRENT")).unwrap();
    let gen_dir = text_dir.join(current.trim());

    // An orphan: found by derived.structure, removed in place by derived_restructure.
    let orphan = gen_dir.join("00000000000000000000000000000000.store");
    std::fs::write(&orphan, b"left over").unwrap();
    age(&orphan, 300);
    wait_for("the orphan removed", Duration::from_secs(60), || {
        (!orphan.exists()).then_some(())
    });
    let found = wait_for("the orphan's incident", Duration::from_secs(30), || {
        let v = incidents_about(&d, "orphan_files");
        (!v.is_empty()).then_some(v)
    });
    let text = found[0].to_string();
    assert!(text.contains("derived.structure"), "{text}");
    assert!(text.contains("derived_restructure"), "{text}");
    assert!(
        text.contains("00000000000000000000000000000000.store"),
        "{text}"
    );
    assert_eq!(
        found[0]["incident"]["resolution"], "auto_repaired",
        "{text}"
    );
    assert_eq!(search(&d, "brown"), want);

    // A missing file meta.json names: reported, and the index rebuilt from the table.
    let rebuilds = {
        let (_, st) = d.json("GET", "/v1/status", None);
        st["derived"]["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "text")
            .unwrap()["rebuilds"]
            .as_u64()
            .unwrap()
    };
    let victim = std::fs::read_dir(&gen_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pos"))
        .expect("a positions file");
    std::fs::remove_file(&victim).unwrap();
    wait_for("the text index rebuilt", Duration::from_secs(60), || {
        let (_, st) = d.json("GET", "/v1/status", None);
        let t = st["derived"]["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "text")
            .cloned()
            .unwrap();
        (t["rebuilds"].as_u64() > Some(rebuilds) && t["state"] == "current").then_some(())
    });
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    let found = wait_for(
        "the missing file's incident",
        Duration::from_secs(30),
        || {
            let v = incidents_about(&d, &name);
            (!v.is_empty()).then_some(v)
        },
    );
    let text = found[0].to_string();
    assert!(text.contains("missing_files"), "{text}");
    assert!(text.contains("derived.structure"), "{text}");
    assert!(text.contains("derived_rebuild"), "{text}");
    assert_eq!(
        found[0]["incident"]["resolution"], "auto_repaired",
        "{text}"
    );
    assert_eq!(search(&d, "brown"), want);
    d.stop();
}
