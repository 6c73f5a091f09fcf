//! Incident reports people can act on, read from a real damaged store through the running daemon
//! (`GET /v1/incidents/{id}`) and `medic report ID`: a loss names the documents lost by id — exactly those the
//! store refuses to serve —, a repair lists the backup it kept, with the files it holds and the commands that put
//! them back, and times read as RFC 3339 with their age.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::{Daemon, medic, start_with_config, wait_for};

fn wal_files(data: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn detail(d: &Daemon, id: u64) -> Value {
    let (status, v) = d.json("GET", &format!("/v1/incidents/{id}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

/// Asserts `text` holds an RFC 3339 time followed by its age.
fn assert_times_with_age(text: &str) {
    // `YYYY-MM-DDTHH:MM:SS` (digits where the pattern has `9`) right before each `Z (`, then ` ago)` soon after.
    let shape = "9999-99-99T99:99:99";
    let ok = text.match_indices("Z (").any(|(i, _)| {
        let Some(time) = i
            .checked_sub(shape.len())
            .and_then(|start| text.get(start..i))
        else {
            return false;
        };
        let shaped = time.bytes().zip(shape.bytes()).all(|(c, p)| {
            if p == b'9' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        });
        shaped && text[i..(i + 40).min(text.len())].contains(" ago)")
    });
    assert!(ok, "no `YYYY-MM-DDTHH:MM:SSZ (… ago)` in:\n{text}");
}

#[test]
fn a_loss_names_the_documents_lost_exactly_those_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = "[checks]\nshallow_interval_ms = 200\n";
    let d = start_with_config(&data, tmp.path(), config);
    for i in 0..40 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&support::doc(i)));
        assert_eq!(s, 200);
    }
    d.stop();
    // The same bytes flipped in the open segment and its mirror: acknowledged records gone from every copy (the
    // identity sidecar, which names them, left intact).
    for path in wal_files(&data, "seg")
        .into_iter()
        .chain(wal_files(&data, "mir"))
    {
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() < 600 {
            continue;
        }
        for b in &mut bytes[300..340] {
            *b ^= 0xff;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    let d = start_with_config(&data, tmp.path(), config);
    let inc = wait_for("the loss's incident", Duration::from_secs(30), || {
        support::incident_with(&d, "acknowledged_data_lost")
    });
    let id = inc["id"].as_u64().unwrap();
    let v = detail(&d, id);
    let lost: Vec<String> = v["report"]["json"]["lost_documents"]["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("{v:#}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert!(!lost.is_empty(), "no document named: {v:#}");
    // The named documents are exactly those the store no longer serves.
    for i in 0..40 {
        let name = format!("doc-{i}");
        let (status, _, _) = d.request("GET", &format!("/v1/docs/{name}"), None);
        let named = lost
            .iter()
            .any(|l| l.ends_with(&name) && l.len() - name.len() <= 10);
        assert_eq!(
            status == 200,
            !named,
            "{name}: served {status}, named lost: {named} (named: {lost:?})"
        );
    }
    let md = v["report"]["markdown"].as_str().unwrap();
    assert!(md.contains("## Documents lost or at risk"), "{md}");
    assert!(md.contains(&lost[0]), "{md}");
    assert_times_with_age(md);
    // `medic report ID` (through the daemon) prints the same, and says it is escalated (exit 3).
    let (code, out, err) = medic(&data, &["report", &id.to_string()]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("## Documents lost or at risk") && out.contains(&lost[0]),
        "{out}"
    );
    assert!(
        out.contains("- detected: 20") && out.contains(" ago)"),
        "{out}"
    );
    d.stop();
}

#[test]
fn a_repair_lists_the_backup_it_kept_and_how_to_put_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Shallow checks every 500 ms; deep and comprehensive an hour apart (after the first cycle).
    let config = "[checks]\nshallow_interval_ms = 500\ndeep_interval_ms = 3600000\n\
                  comprehensive_interval_ms = 3600000\n";
    let d = start_with_config(&data, tmp.path(), config);
    let lines: Vec<Value> = (0..1500)
        .map(|i| {
            let mut doc = support::doc(i);
            doc["id"] = Value::String(format!("doc-{i}"));
            doc
        })
        .collect();
    d.bulk(lines);
    std::thread::sleep(Duration::from_secs(2));
    let seg = wal_files(&data, "seg").pop().expect("an open segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    // The records end at the last non-zero byte: past it the open segment may hold zero-filled space.
    let len = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    assert!(
        len > 50_000,
        "{} holds {len} bytes of records",
        seg.display()
    );
    let offset = len / 2;
    bytes[offset] ^= 0x5a;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&bytes[offset..offset + 1], offset as u64)
            .unwrap();
    }
    let inc = wait_for("the repaired incident", Duration::from_secs(60), || {
        support::incident_with(&d, "wal_record_damaged")
            .filter(|i| i["resolution"] == "auto_repaired")
    });
    let id = inc["id"].as_u64().unwrap();
    let v = detail(&d, id);
    let backups = v["report"]["json"]["backups"]
        .as_array()
        .unwrap_or_else(|| panic!("{v:#}"));
    let b = backups
        .iter()
        .find(|b| b["present"] == true)
        .unwrap_or_else(|| panic!("no backup kept: {v:#}"));
    let seg_rel = format!("wal/{}", seg.file_name().unwrap().to_string_lossy());
    let file = b["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["restores"] == seg_rel.as_str())
        .unwrap_or_else(|| panic!("{seg_rel} not in {b:#}"));
    // The copy is the file as it was before the repair: the flipped byte, which the repaired file no longer has.
    let copy = std::fs::read(data.join(file["copy"].as_str().unwrap())).unwrap();
    assert_eq!(
        copy[offset], bytes[offset],
        "the backup holds the damaged byte"
    );
    assert_ne!(
        std::fs::read(&seg).unwrap()[offset],
        bytes[offset],
        "the repair undid it"
    );
    let restore: Vec<&str> = b["restore"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let cp = format!(
        "`cp -p {} {}`",
        data.join(file["copy"].as_str().unwrap()).display(),
        data.join(&seg_rel).display()
    );
    assert!(restore.contains(&cp.as_str()), "{cp} not in {restore:#?}");
    assert!(restore[0].contains("systemctl stop medic"), "{restore:#?}");
    let md = v["report"]["markdown"].as_str().unwrap();
    assert!(
        md.contains("## Backups medic kept") && md.contains(&cp),
        "{md}"
    );
    assert_times_with_age(md);
    // Words for people, not Rust's names of the values.
    assert!(md.contains("- resolution: auto-repaired"), "{md}");
    assert!(md.contains("crisis level: obstacle"), "{md}");
    for debug in [
        "AutoRepaired",
        "Obstacle",
        "Sev",
        "Succeeded",
        "DryRun",
        "data loss None",
    ] {
        assert!(!md.contains(debug), "{debug:?} in {md}");
    }
    assert!(md.contains("no data lost"), "{md}");
    // Each issue once, however many cycles found it.
    let issue_lines: Vec<&str> = md.lines().filter(|l| l.starts_with("- `")).collect();
    let distinct: std::collections::BTreeSet<&&str> = issue_lines.iter().collect();
    assert_eq!(issue_lines.len(), distinct.len(), "{md}");
    assert!(!md.contains("none needed ("), "{md}");
    d.stop();
}
