//! Reports on a schedule and diagnostic bundles, black-box through the real daemon: the scheduled daily and weekly
//! reports written to `report.dir` as Markdown and HTML, older ones pruned by retention, each delivered to a webhook;
//! bad schedule keys refused naming the key; an incident's diagnostic bundle kept at open, compressed, served by
//! `GET /v1/incidents/{id}/bundle` and `medic bundle ID`, and an old bundle removed by retention.

mod support;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::{alert_receiver, start_with_config, wait_for};

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    n.sort();
    n
}

/// `daily_at = "00:00"` in UTC: the day's scheduled instant has always passed, so the daemon writes yesterday's
/// report (and the latest weekly one) at its first look, without the test waiting for a clock.
#[test]
fn scheduled_reports_are_written_pruned_and_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    for old in [
        "daily-2026-01-01.md",
        "daily-2026-01-01.html",
        "weekly-2025-12-01.md",
        "notes.txt",
    ] {
        std::fs::write(reports.join(old), "old").unwrap();
    }
    let (hook, got) = alert_receiver();
    let config = format!(
        "[report]\ndaily_at = \"00:00\"\nweekly_day = \"monday\"\nzone = \"UTC\"\ndir = \"{}\"\nkeep_days = 30\n\
         deliver = true\n\n[notify]\nlog = false\nwebhook_url = \"{hook}\"\n",
        reports.display()
    );
    let d = start_with_config(&tmp.path().join("data"), tmp.path(), &config);
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let yesterday = today.yesterday().unwrap();
    let mut monday = today;
    while monday.weekday() != jiff::civil::Weekday::Monday {
        monday = monday.yesterday().unwrap();
    }
    let daily = format!("daily-{yesterday}");
    let weekly = format!("weekly-{}", monday.yesterday().unwrap());
    let want = [
        format!("{daily}.html"),
        format!("{daily}.md"),
        "notes.txt".to_string(),
        format!("{weekly}.html"),
        format!("{weekly}.md"),
    ];
    wait_for(
        "the scheduled reports written and the old ones pruned",
        Duration::from_secs(30),
        || (names(&reports) == want).then_some(()),
    );
    let md = std::fs::read_to_string(reports.join(format!("{daily}.md"))).unwrap();
    assert!(
        md.starts_with(&format!("# medic daily report {yesterday}\n")),
        "{md}"
    );
    let html = std::fs::read_to_string(reports.join(format!("{daily}.html"))).unwrap();
    assert!(
        html.contains("<!DOCTYPE html>") || html.contains("<html"),
        "{html}"
    );
    assert!(html.contains(&format!("medic daily report {yesterday}")));
    let wmd = std::fs::read_to_string(reports.join(format!("{weekly}.md"))).unwrap();
    assert!(wmd.starts_with("# medic weekly report "), "{wmd}");

    // Each went out through the webhook: its summary and where the files are.
    let delivered = wait_for("both reports delivered", Duration::from_secs(30), || {
        let alerts = got.lock().unwrap().clone();
        let reports: Vec<Value> = alerts
            .into_iter()
            .filter(|a| a["code"] == "report")
            .collect();
        (reports.len() >= 2).then_some(reports)
    });
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    let daily_alert = delivered
        .iter()
        .find(|a| a["rule"] == "daily_report")
        .expect("the daily report delivered");
    let title = daily_alert["title"].as_str().unwrap();
    assert!(
        title.contains(&format!("medic daily report {yesterday}: 0 incidents"))
            && title.contains(&reports.join(format!("{daily}.md")).display().to_string()),
        "{title}"
    );
    assert!(delivered.iter().any(|a| a["rule"] == "weekly_report"));
    d.stop();

    // Started again, nothing is due: the files are there and nothing more is delivered.
    let before = std::fs::metadata(reports.join(format!("{daily}.md")))
        .unwrap()
        .modified()
        .unwrap();
    let d = start_with_config(&tmp.path().join("data"), tmp.path(), &config);
    let (s, _) = d.json("GET", "/v1/status", None);
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(500));
    d.stop();
    let after = std::fs::metadata(reports.join(format!("{daily}.md")))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "not written again");
    assert_eq!(
        got.lock()
            .unwrap()
            .iter()
            .filter(|a| a["code"] == "report")
            .count(),
        2
    );
}

#[test]
fn bad_schedule_keys_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (section, key, want) in [
        (
            "[report]\ndaily_at = \"07:00\"\nzone = \"Mars/Olympus\"\n",
            "report.zone",
            "Mars/Olympus",
        ),
        ("[report]\ndaily_at = \"7am\"\n", "report.daily_at", "HH:MM"),
        (
            "[report]\ndaily_at = \"07:00\"\nweekly_day = \"someday\"\n",
            "report.weekly_day",
            "monday",
        ),
        (
            "[diagnostics]\nkeep_days = 100000\n",
            "diagnostics.keep_days",
            "0..=3660",
        ),
    ] {
        let cfg = tmp.path().join("bad.toml");
        std::fs::write(&cfg, section).unwrap();
        let (code, out, err) = support::medic_cli(&[
            "serve",
            "--data",
            tmp.path().join("data").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ]);
        assert_ne!(code, 0, "{section}: {out}{err}");
        assert!(err.contains(key) && err.contains(want), "{section}: {err}");
    }
}

/// The last WAL segment of `data`.
fn last_segment(data: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a WAL segment")
}

/// An incident opened by damage found at open gets its bundle; with `compress_after_ms = 0` it is compressed at
/// once, and read back decompressed over HTTP, through `medic bundle` and offline; a bundle 40 days old is removed.
#[test]
fn an_incident_keeps_a_diagnostic_bundle_compressed_and_served() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = "[checks]\nshallow_interval_ms = 200\n\n[diagnostics]\ncompress_after_ms = 0\nkeep_days = 30\n";
    let d = start_with_config(&data, tmp.path(), config);
    for i in 0..40 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&support::doc(i)));
        assert_eq!(s, 200);
    }
    d.stop();
    let seg = last_segment(&data);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(&seg, &bytes).unwrap();
    // A bundle from long ago, past keep_days.
    let bundles = data.join("diagnostics");
    std::fs::create_dir_all(&bundles).unwrap();
    let old = bundles.join("77777.json");
    std::fs::write(&old, "{}").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(40 * 86_400))
        .unwrap();

    let d = start_with_config(&data, tmp.path(), config);
    let id = wait_for("an incident", Duration::from_secs(30), || {
        let (_, v) = d.json("GET", "/v1/incidents?limit=5", None);
        v["incidents"].as_array()?.last()?["id"].as_u64()
    });
    let bundle = wait_for("the incident's bundle", Duration::from_secs(30), || {
        let (s, v) = d.json("GET", &format!("/v1/incidents/{id}/bundle"), None);
        (s == 200).then_some(v)
    });
    assert_eq!(bundle["format"], "medic-diagnostic-bundle");
    assert_eq!(bundle["version"], 1);
    assert_eq!(bundle["incident_id"].as_u64(), Some(id));
    assert_eq!(bundle["event"]["id"].as_u64(), Some(id), "{bundle}");
    assert!(
        !bundle["event"]["issues"].as_array().unwrap().is_empty(),
        "{bundle}"
    );
    assert!(bundle["state"]["store"]["docs"].is_u64(), "{bundle}");
    assert!(bundle["metrics"]["samples"].is_array(), "{bundle}");
    assert!(
        bundle["suggestions"]["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == &Value::from(format!("medic report {id}"))),
        "{bundle}"
    );

    // Kept compressed (compress_after_ms = 0), the same JSON; the old bundle removed, nothing else.
    let gz = bundles.join(format!("{id}.json.gz"));
    wait_for("the bundle compressed", Duration::from_secs(30), || {
        (gz.exists() && !bundles.join(format!("{id}.json")).exists()).then_some(())
    });
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), bundle);
    wait_for("the old bundle removed", Duration::from_secs(30), || {
        (!old.exists()).then_some(())
    });

    // Errors name what is missing or wrong.
    let (s, e) = d.json("GET", "/v1/incidents/999999/bundle", None);
    assert_eq!(s, 404, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("no diagnostic bundle for incident 999999"),
        "{e}"
    );
    let (s, e) = d.json("GET", "/v1/incidents/abc/bundle", None);
    assert_eq!(s, 400, "{e}");

    // The CLI through the daemon, then offline on the stopped daemon's directory.
    let (code, out, err) = support::medic_cli(&["bundle", &id.to_string(), "--server", &d.url]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, bundle);
    let (code, _, err) = support::medic_cli(&["bundle", "999999", "--server", &d.url]);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    d.stop();
    let (code, out, err) = support::medic_cli(&[
        "bundle",
        &id.to_string(),
        "--json",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["incident_id"].as_u64(), Some(id));
}

/// A daemon that starts with nothing due writes and delivers the daily report when the clock passes `daily_at`,
/// without a restart. The housekeeping clock is moved (`MEDIC_CLOCK_OFFSET_MS`) to 25 s before a UTC midnight; the
/// report of the day before that midnight was written already, so nothing is due at start. The daemon also records
/// its indexes' health in the metric history (`index.<collection>.<index>.<figure>`) after its first cycle, and
/// today's report shows how they moved.
#[test]
fn a_report_due_while_the_daemon_runs_is_written_and_delivered_once() {
    const LEAD_MS: i64 = 25_000;
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let (hook, got) = alert_receiver();
    let config = format!(
        "[checks]\nshallow_interval_ms = 1000\n\n[report]\ndaily_at = \"00:00\"\nzone = \"UTC\"\ndir = \"{}\"\n\
         deliver = true\n\n[notify]\nlog = false\nwebhook_url = \"{hook}\"\n",
        reports.display()
    );
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let day_ms = 86_400_000;
    let next_midnight_ms = (now_ms / day_ms + 1) * day_ms;
    let offset_ms = next_midnight_ms - LEAD_MS - now_ms;
    let midnight = jiff::Timestamp::from_millisecond(next_midnight_ms)
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    // The daemon's day is the one before that midnight; its report (of the day before) is already there.
    let day = midnight.yesterday().unwrap();
    let already = format!("daily-{}.md", day.yesterday().unwrap());
    std::fs::write(reports.join(&already), "written before").unwrap();

    let cfg = tmp.path().join("medic.toml");
    std::fs::write(&cfg, &config).unwrap();
    let offset = offset_ms.to_string();
    let d = support::Daemon::start_with_env(
        &tmp.path().join("data"),
        tmp.path(),
        &["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
        &[("MEDIC_CLOCK_OFFSET_MS", offset.as_str())],
    );
    let started_ms = jiff::Timestamp::now().as_millisecond();
    assert!(
        started_ms - now_ms < LEAD_MS - 2_000,
        "the daemon took {} ms to start: the midnight passed before the test could look",
        started_ms - now_ms
    );
    // Nothing due at start: only the report written before.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(names(&reports), std::slice::from_ref(&already));
    assert!(
        got.lock().unwrap().iter().all(|a| a["code"] != "report"),
        "nothing delivered at start"
    );

    // The index health figures are in the metric history after the first cycle.
    wait_for(
        "index health in the metric history",
        Duration::from_secs(30),
        || {
            let (s, v) = d.json("GET", "/v1/history", None);
            let listed = v.to_string();
            (s == 200 && listed.contains("index.default.text.lag_records")).then_some(())
        },
    );

    // Today's report (on the app's clock, which the offset does not move) shows them, with a sparkline in HTML.
    let (s, r) = d.json("GET", "/v1/reports/daily", None);
    assert_eq!(s, 200, "{r}");
    let series = r["index_trends"]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        series.iter().any(|t| t["collection"] == "default"
            && t["index"] == "text"
            && t["figure"] == "lag_records"
            && t["points"].as_u64() >= Some(1)),
        "{r}"
    );
    let (s, _, html) = d.request("GET", "/v1/reports/daily?format=html", None);
    assert!(
        s == 200
            && html.contains("<h2>Index health trends</h2><table>")
            && html.contains("<svg class=\"spark\""),
        "{html}"
    );

    // The clock passes daily_at: the report of `day` appears and goes out once.
    let stem = format!("daily-{day}");
    wait_for(
        "the report written at the scheduled instant",
        Duration::from_millis(LEAD_MS as u64 + 30_000),
        || reports.join(format!("{stem}.md")).exists().then_some(()),
    );
    assert!(reports.join(format!("{stem}.html")).exists());
    let md = std::fs::read_to_string(reports.join(format!("{stem}.md"))).unwrap();
    assert!(
        md.starts_with(&format!("# medic daily report {day}\n")),
        "{md}"
    );
    assert!(md.contains("## Strategies whose success rate fell"), "{md}");
    assert!(md.contains("## Index health trends"), "{md}");
    let delivered = || -> Vec<Value> {
        got.lock()
            .unwrap()
            .iter()
            .filter(|a| a["code"] == "report")
            .cloned()
            .collect()
    };
    wait_for("the report delivered", Duration::from_secs(30), || {
        (!delivered().is_empty()).then_some(())
    });
    // Written once, so delivered once: nothing more goes out.
    std::thread::sleep(Duration::from_secs(3));
    let sent = delivered();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["rule"], "daily_report");
    let title = sent[0]["title"].as_str().unwrap();
    assert!(
        title.contains(&format!("medic daily report {day}: ")),
        "{title}"
    );
    assert_eq!(
        names(&reports),
        [already, format!("{stem}.html"), format!("{stem}.md")]
    );
    d.stop();
}
