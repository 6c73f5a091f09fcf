//! Commands that change nothing (`status`, `check`, `heal --dry-run`, `get`, `search`, `incidents`, `report`) leave
//! a data directory byte for byte as they found it, damage included, and refuse a path that holds no store. Run as a
//! user would: the real `medic` binary on a directory no daemon holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn medic(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .current_dir(cwd)
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_TOKEN")
        .env_remove("MEDIC_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run medic")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_json(o: &Output) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", stderr(o)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Every entry under `dir`: for a file its bytes and modification time, for a directory its modification time.
type Snapshot = BTreeMap<PathBuf, (Option<Vec<u8>>, std::time::SystemTime)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        out.insert(d.clone(), (None, m.modified().unwrap()));
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.clone(),
                    (Some(std::fs::read(&p).unwrap()), m.modified().unwrap()),
                );
            }
        }
    }
    out
}

fn assert_unchanged(before: &Snapshot, dir: &Path, what: &str) {
    let after = snapshot(dir);
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "{what}: created {added:?}, removed {removed:?}"
    );
    for (p, (bytes, mtime)) in before {
        let (b2, m2) = &after[p];
        assert!(bytes == b2, "{what}: {} changed", p.display());
        assert_eq!(mtime, m2, "{what}: {} was touched", p.display());
    }
}

fn flip(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], offset).unwrap();
}

/// A stopped store with a sealed segment (and its parity) and an open segment (and its mirror), written by `medic
/// load`; returns the configuration file that gives it small segments.
fn stopped_store(dir: &Path, data: &Path) -> String {
    let config = dir.join("small.toml");
    std::fs::write(&config, "[constraints]\nsegment_bytes_max = 65536\n").unwrap();
    let docs: String = (0..300)
        .map(|i| {
            format!(
                "{{\"id\":\"d{i}\",\"text\":\"document {i} {}\"}}\n",
                "x".repeat(300)
            )
        })
        .collect();
    std::fs::write(dir.join("docs.jsonl"), docs).unwrap();
    let config = config.to_str().unwrap().to_string();
    let o = medic(
        &[
            "load",
            "docs.jsonl",
            "--data",
            data.to_str().unwrap(),
            "--config",
            &config,
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    config
}

#[test]
fn read_only_commands_leave_a_damaged_directory_byte_identical_and_report_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = stopped_store(dir.path(), &data);
    let wal = data.join("wal");
    let sealed = wal.join("0000000000000001.seg");
    let open = wal.join("0000000000000002.seg");
    assert!(sealed.exists() && wal.join("0000000000000001.seg.par").exists());
    assert!(open.exists() && wal.join("0000000000000002.mir").exists());
    // One byte inside a record of the sealed segment (parity rebuilds it) and of the open segment (the mirror
    // holds it): what `serve` and `heal` repair at open.
    flip(&sealed, 5000);
    flip(&open, 3000);
    let before = snapshot(&data);
    let d = data.to_str().unwrap();
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--data".into(), d.into(), "--config".into(), config.clone()]);
        v
    };
    let run = |args: &[&str]| {
        let a = with(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        medic(&a, dir.path())
    };

    let o = run(&["status", "--json"]);
    assert_unchanged(&before, &data, "status");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = last_json(&o);
    let codes: Vec<String> = v["recovery"]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_string())
        .collect();
    assert!(
        codes.contains(&"block_checksum".to_string())
            && codes.contains(&"wal_record_damaged".to_string()),
        "status reports both damages: {codes:?}"
    );
    assert_ne!(v["state"], "HEALTHY", "{v}");
    let o = run(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("left as found") && text.contains("wal/0000000000000002.seg"),
        "{text}"
    );

    let o = run(&["heal", "--dry-run", "--json"]);
    assert_unchanged(&before, &data, "heal --dry-run");
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["dry_run"], true, "{v}");
    assert!(
        !v["incidents_opened"].as_array().unwrap().is_empty(),
        "the dry run finds the damage: {v}"
    );

    for args in [
        &["check", "--tier", "full"][..],
        &["get", "d7"],
        &["incidents"],
        &["report", "1"],
        &["search", "--vector", "[1.0, 0.0]"],
    ] {
        let o = run(args);
        assert_unchanged(&before, &data, &format!("{args:?}"));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
    let o = run(&["get", "d7"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("document 7 "));

    // A command that writes repairs: `heal` changes the files, and then the store is healthy.
    let o = run(&["heal", "--json"]);
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_ne!(
        std::fs::read(&open).unwrap(),
        before[&open].0.clone().unwrap()
    );
    let o = run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", last_json(&o));
}

#[test]
fn a_path_holding_no_store_is_exit_2_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "not a store").unwrap();
    let before = snapshot(dir.path());
    for data in [&missing, &empty] {
        for args in [
            &["status"][..],
            &["status", "--json"],
            &["check"],
            &["heal", "--dry-run"],
            &["heal"],
            &["get", "a"],
            &["search", "--vector", "[1.0]"],
            &["incidents"],
            &["report", "1"],
        ] {
            let mut a = args.to_vec();
            a.extend(["--data", data.to_str().unwrap()]);
            let o = medic(&a, dir.path());
            assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(
                err.contains(data.to_str().unwrap())
                    && (err.contains("does not exist") || err.contains("no medic store")),
                "{a:?}: {err}"
            );
            assert_unchanged(&before, dir.path(), &format!("{a:?}"));
        }
    }
    let mut a = vec!["status", "--data", empty.to_str().unwrap()];
    let o = medic(&a, dir.path());
    assert!(
        stderr(&o).contains("medic serve --data"),
        "says how to create one: {}",
        stderr(&o)
    );
    // A first write creates a store there, and then status answers.
    let o = medic(
        &["put", "a", "--text", "x", "--data", empty.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    a.push("--json");
    let o = medic(&a, dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["store"]["docs"], 1);
}
