//! The operator's views of the running daemon, black-box: the metric history over HTTP and through `medic history`,
//! the dashboard page rendered by a real headless Chromium after an incident was caused and repaired, and the
//! daily report route; the KPIs over time and the latest escalation, over HTTP and in the page.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{Daemon, Writers, wait_for};

/// Checks every 100 ms and small segments, so metrics are recorded within a second and segments seal quickly.
const FAST: &str = "[checks]\nshallow_interval_ms = 100\ndeep_interval_ms = 200\ncomprehensive_interval_ms = 400\n\n\
                    [constraints]\nwal_bytes_max = 2097152\nsegment_bytes_max = 65536\n";

fn start(tmp: &Path) -> Daemon {
    let cfg = tmp.join("medic.toml");
    std::fs::write(&cfg, FAST).unwrap();
    Daemon::start_with(
        &tmp.join("data"),
        tmp,
        &["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    )
}

#[test]
fn history_lists_metrics_and_answers_points_with_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let d = start(tmp.path());
    // A few cycles record the engine's samples.
    let names = wait_for(
        "metric names in the history",
        Duration::from_secs(30),
        || {
            let (s, v) = d.json("GET", "/v1/history", None);
            assert_eq!(s, 200, "{v}");
            let names: Vec<String> = v["metrics"]
                .as_array()?
                .iter()
                .filter(|m| m["points"].as_u64().unwrap_or(0) >= 3)
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect();
            names.iter().any(|n| n == "docs").then_some(names)
        },
    );
    assert!(names.len() > 3, "{names:?}");

    let (s, v) = d.json("GET", "/v1/history?metric=docs&since=-1h", None);
    assert_eq!(s, 200, "{v}");
    let points = v["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{v}");
    let ats: Vec<u64> = points.iter().map(|p| p["at"].as_u64().unwrap()).collect();
    assert!(
        ats.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {ats:?}"
    );
    assert!(
        ats[0] >= v["since"].as_u64().unwrap()
            && *ats.last().unwrap() <= v["until"].as_u64().unwrap()
    );
    assert_eq!(
        points[0]["value"].as_f64(),
        Some(0.0),
        "an empty store has 0 docs"
    );
    assert_eq!(v["points_max"], 10_000);

    // Buckets: fewer points, each with its count.
    let (s, b) = d.json("GET", "/v1/history?metric=docs&since=-1h&step=1h", None);
    assert_eq!(s, 200, "{b}");
    let buckets = b["points"].as_array().unwrap();
    assert!(!buckets.is_empty() && buckets.len() <= 2, "{b}");
    let counted: u64 = buckets.iter().map(|x| x["count"].as_u64().unwrap()).sum();
    assert!(counted >= points.len() as u64, "{b}");

    // An RFC 3339 range in the future holds nothing.
    let (s, f) = d.json(
        "GET",
        "/v1/history?metric=docs&since=2999-01-01T00:00:00Z&until=2999-01-02",
        None,
    );
    assert_eq!(s, 200, "{f}");
    assert_eq!(f["points"].as_array().map(Vec::len), Some(0));

    // Bad input: a 400 naming what and the limit.
    for (q, want) in [
        ("metric=docs&since=yesterday", "since = \"yesterday\""),
        (
            "metric=docs&since=-1h&step=1ms",
            "history_points_max = 10000",
        ),
        ("metric=docs&step=fast", "step:"),
        ("metric=docs&since=now&until=-1h", "empty range"),
        ("metric=docs&colour=red", "unknown field"),
    ] {
        let (s, e) = d.json("GET", &format!("/v1/history?{q}"), None);
        assert_eq!(s, 400, "{q}: {e}");
        let msg = e["error"].as_str().unwrap();
        assert!(msg.contains(want), "{q}: {msg}");
    }

    // The CLI through the daemon: JSON data, and a sparkline for people.
    let (code, out, err) = support::medic_cli(&[
        "history", "docs", "--since", "-1h", "--json", "--server", &d.url,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["metric"], "docs");
    assert!(v["points"].as_array().unwrap().len() >= 3, "{v}");
    let (code, out, err) = support::medic_cli(&["history", "docs", "--server", &d.url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("docs from") && out.contains('▄'), "{out}");
    let (code, out, err) = support::medic_cli(&["history", "--server", &d.url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("METRIC") && out.contains("docs"), "{out}");
    let (code, out, err) =
        support::medic_cli(&["history", "docs", "--since", "soon", "--server", &d.url]);
    assert_eq!(code, 2, "a bad time is a usage error: {out}{err}");
    assert!(err.contains("since = \"soon\""), "{err}");

    // Reports: nothing happened yet, so every count is 0; formats, periods and dates are checked.
    let (s, r) = d.json("GET", "/v1/reports/daily", None);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["period"].as_str(), r["incidents"].as_u64()),
        (Some("daily"), Some(0)),
        "{r}"
    );
    assert_eq!(r["targets"].as_array().map(Vec::len), Some(4), "{r}");
    let (s, ct, html) = d.request(
        "GET",
        "/v1/reports/weekly?date=2026-12-05&format=html",
        None,
    );
    assert_eq!(s, 200, "{html}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(
        html.contains("medic weekly report 2026-11-29 – 2026-12-05") && html.contains("<svg"),
        "{html}"
    );
    let (s, ct, md) = d.request("GET", "/v1/reports/daily?date=2026-12-05&format=md", None);
    assert_eq!(s, 200, "{md}");
    assert!(
        ct.starts_with("text/markdown") && md.starts_with("# medic daily report 2026-12-05"),
        "{md}"
    );
    for (path, status, want) in [
        ("/v1/reports/monthly", 404, "daily and weekly"),
        (
            "/v1/reports/daily?date=2026-02-30",
            400,
            "date = \"2026-02-30\"",
        ),
        ("/v1/reports/daily?format=pdf", 400, "one of json, md, html"),
    ] {
        let (s, e) = d.json("GET", path, None);
        assert_eq!(s, status, "{path}: {e}");
        assert!(e["error"].as_str().unwrap().contains(want), "{path}: {e}");
    }
    let (code, out, err) = support::medic_cli(&["report", "--daily", "--server", &d.url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("# medic daily report ") && out.contains("**0 incidents**"),
        "{out}"
    );
    let (code, _, err) =
        support::medic_cli(&["report", "--weekly", "--at", "someday", "--server", &d.url]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = support::medic_cli(&["report", "--server", &d.url]);
    assert_eq!(code, 2, "neither an id nor a period: {err}");
    d.stop();

    // Offline, on the stopped daemon's data directory: the same answer shape.
    let data = tmp.path().join("data");
    let (code, out, err) = support::medic_cli(&[
        "history",
        "docs",
        "--since",
        "-1d",
        "--json",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(v["points"].as_array().unwrap().len() >= 3, "{v}");
}

/// The headless Chromium the browser test drives, if installed.
fn chromium() -> Option<String> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        let o = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (o.status.success() && !path.is_empty()).then_some(path)
    })
}

/// Runs headless Chromium on `url` with a fresh profile: `--dump-dom` (the DOM once the page's polling had
/// `budget_ms` of virtual time) or `--screenshot=PATH`.
fn chromium_run(bin: &str, profile: &Path, url: &str, mode: &str, budget_ms: u64) -> String {
    let o = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,1800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(mode)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        o.status.success(),
        "chromium {mode}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The sealed segments that have a parity sidecar.
fn sealed(data: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .filter(|p| PathBuf::from(format!("{}.par", p.display())).exists())
        .collect();
    segs.sort();
    segs
}

/// XORs 64 bytes at a third of `path` in place.
fn flip(path: &Path) -> bool {
    let Ok(mut b) = std::fs::read(path) else {
        return false;
    };
    let at = b.len() / 3;
    let end = (at + 64).min(b.len());
    for x in &mut b[at..end] {
        *x ^= 0xFF;
    }
    std::fs::write(path, &b).is_ok()
}

/// The real daemon, a sealed segment damaged (its sidecar intact) so the healing loop opens an incident and
/// repairs it; then headless Chromium renders `GET /` and the DOM shows that incident and its repair's outcome. A
/// screenshot is kept under target/tmp/. Skipped (saying so) without Chromium unless MEDIC_REQUIRE_CHROMIUM=1.
#[test]
fn the_dashboard_shows_a_repaired_incident_in_a_real_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("MEDIC_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "MEDIC_REQUIRE_CHROMIUM=1 but neither chromium nor chromium-browser is installed"
        );
        eprintln!(
            "SKIPPED: no chromium or chromium-browser on PATH (MEDIC_REQUIRE_CHROMIUM=1 makes this a failure)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = start(tmp.path());

    // The page itself: self-contained, served with a policy that allows no other origin.
    let (s, ct, html) = d.request("GET", "/", None);
    assert_eq!(s, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(html.contains("<title>medic dashboard</title>"));

    let w = Writers::start(&d.url, "dash", 2, 1_000_000, false);
    wait_for("two sealed segments", Duration::from_secs(60), || {
        (sealed(&data).len() >= 2).then_some(())
    });
    let log = w.finish();
    eprintln!("{}", log.summary());
    let seg = sealed(&data)[0].clone();
    assert!(flip(&seg), "damaging {}", seg.display());
    let (id, strategy) = wait_for(
        "an incident repaired automatically",
        Duration::from_secs(60),
        || {
            let (_, v) = d.json("GET", "/v1/incidents?limit=50", None);
            v["incidents"].as_array()?.iter().find_map(|i| {
                (i["resolution"] == "auto_repaired").then(|| {
                    let a = i["attempts"]
                        .as_array()
                        .and_then(|a| a.last())
                        .cloned()
                        .unwrap_or_default();
                    (
                        i["id"].as_u64().unwrap(),
                        a["strategy"].as_str().unwrap_or_default().to_string(),
                    )
                })
            })
        },
    );
    eprintln!(
        "incident {id} repaired by {strategy:?} after {} was damaged",
        seg.display()
    );

    // Today's report counts it among the automatic repairs.
    let (s, r) = d.json("GET", "/v1/reports/daily", None);
    assert_eq!(s, 200, "{r}");
    let repaired = &r["repaired_automatically"];
    assert!(repaired["count"].as_u64().unwrap() >= 1, "{r}");
    assert!(
        repaired["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"].as_u64() == Some(id)),
        "{r}"
    );

    // The KPIs over time count it: today's bucket has the incident, its MTTR and its successful repair.
    let (s, h) = d.json("GET", "/v1/kpis/history?days=1&step=hour", None);
    assert_eq!(s, 200, "{h}");
    assert_eq!(
        (h["step"].as_str(), h["buckets"].as_array().map(Vec::len)),
        (Some("hour"), Some(24)),
        "{h}"
    );
    let (s, h) = d.json("GET", "/v1/kpis/history", None);
    assert_eq!(s, 200, "{h}");
    let today = h["buckets"].as_array().unwrap().last().unwrap().clone();
    assert!(
        today["by_resolution"]["auto_repaired"].as_u64() >= Some(1)
            && today["repairs"]["succeeded"].as_u64() >= Some(1)
            && today["mttr_ms"].as_f64().is_some_and(|v| v > 0.0),
        "{h}"
    );
    for (q, want) in [
        ("days=0", "days = \"0\""),
        ("days=30&step=hour", "at most 14 days by the hour"),
        ("step=week", "one of day, hour"),
        ("colour=red", "unknown field"),
    ] {
        let (s, e) = d.json("GET", &format!("/v1/kpis/history?{q}"), None);
        assert_eq!(s, 400, "{q}: {e}");
        assert!(e["error"].as_str().unwrap().contains(want), "{q}: {e}");
    }
    // Nothing was escalated.
    let (s, e) = d.json("GET", "/v1/escalations/latest", None);
    assert_eq!((s, &e["escalation"]), (200, &Value::Null), "{e}");

    let profile = tmp.path().join("chromium-profile");
    let url = format!("{}/", d.url);
    let dom = chromium_run(&browser, &profile, &url, "--dump-dom", 8_000);
    // The KPI charts drew today's repair and MTTR, and the escalation panel says nothing was escalated.
    let chart = |id: &str| -> String {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no chart {id}; DOM:\n{dom}"));
        dom[at..at + dom[at..].find("</svg>").unwrap()].to_string()
    };
    let repairs = chart("kpi-repairs");
    assert!(
        repairs.contains("class=\"bar o-succeeded\" data-key=\"succeeded\""),
        "{repairs}"
    );
    let times = chart("kpi-times");
    assert!(times.contains("data-kpi=\"mttr_ms\""), "{times}");
    assert!(chart("kpi-resolutions").contains("data-key=\"auto_repaired\""));
    assert!(
        dom.contains("id=\"escalation-none\""),
        "no escalation shown"
    );
    let row_start = dom
        .find(&format!("id=\"recent-{id}\""))
        .unwrap_or_else(|| panic!("incident {id} is not on the page; DOM:\n{dom}"));
    let row = &dom[row_start
        ..dom[row_start..]
            .find("</tr>")
            .map_or(dom.len(), |e| row_start + e)];
    assert!(row.contains("auto_repaired"), "its outcome: {row}");
    assert!(
        !strategy.is_empty() && row.contains(&format!("{strategy}: succeeded")),
        "its repair: {row}"
    );
    // The rest of the page filled from the API too.
    assert!(
        dom.contains("class=\"state HEALTHY\"") || dom.contains("class=\"state DEGRADED\""),
        "state shown"
    );
    assert!(
        dom.contains("<svg class=\"chart\""),
        "a metric chart was drawn; the page's error line: {}",
        dom.find("id=\"error\"")
            .map_or("", |at| &dom[at..(at + 600).min(dom.len())])
    );
    assert!(
        dom.contains("Read only: paste an operator token"),
        "no token: read only"
    );
    // A store taking writes says so in its table, not with a blank cell (`read_only` is null).
    assert!(
        dom.contains("<th>read only</th><td>no</td>"),
        "the store table's read only: {}",
        dom.find("<th>read only</th>")
            .map_or("absent", |at| &dom[at..(at + 80).min(dom.len())])
    );

    let shot_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let shot = shot_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium_run(
        &browser,
        &profile,
        &url,
        &format!("--screenshot={}", shot.display()),
        8_000,
    );
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    d.stop();
}

/// An incident waiting for an operator's approval (every repair needs one here) is shown as an active incident
/// with its timeline, and without a token in the page its approve, acknowledge and silence buttons are disabled.
#[test]
fn the_dashboard_shows_an_incident_awaiting_approval_read_only_without_a_token() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("MEDIC_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "MEDIC_REQUIRE_CHROMIUM=1 but neither chromium nor chromium-browser is installed"
        );
        eprintln!(
            "SKIPPED: no chromium or chromium-browser on PATH (MEDIC_REQUIRE_CHROMIUM=1 makes this a failure)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("medic.toml");
    std::fs::write(
        &cfg,
        "[checks]\nshallow_interval_ms = 200\n\n[engine]\napproval_risk_max = 0.0\n\n\
         [http.operators]\nalice = \"alice-token-0123456789\"\n",
    )
    .unwrap();
    let args = ["--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    // Documents written, the daemon stopped, the open segment damaged: the next daemon finds it at open.
    let d = Daemon::start_with(&data, tmp.path(), &args);
    for i in 0..40 {
        let (s, _) = d.json("PUT", &format!("/v1/docs/doc-{i}"), Some(&support::doc(i)));
        assert_eq!(s, 200);
    }
    d.stop();
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let seg = segs.pop().expect("a WAL segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let d = Daemon::start_with(&data, tmp.path(), &args);
    let id = wait_for(
        "an incident waiting for approval",
        Duration::from_secs(30),
        || {
            let (_, v) = d.json("GET", "/v1/approvals", None);
            v["approvals"].as_array()?.first()?["incident_id"].as_u64()
        },
    );

    let dom = chromium_run(
        &browser,
        &tmp.path().join("chromium-profile"),
        &format!("{}/", d.url),
        "--dump-dom",
        6_000,
    );
    let card_start = dom
        .find(&format!("id=\"incident-{id}\""))
        .unwrap_or_else(|| panic!("incident {id} is not shown as active; DOM:\n{dom}"));
    let card = &dom[card_start..];
    let card = &card[..card
        .find("</button></div></div>")
        .map_or(card.len(), |e| e + 21)];
    assert!(card.contains("awaiting_approval"), "{card}");
    assert!(
        card.contains("<ul class=\"timeline\"><li>"),
        "a timeline: {card}"
    );
    for action in ["approve", "acknowledge", "silence 2h"] {
        let at = card
            .find(&format!("data-action=\"{action}\""))
            .unwrap_or_else(|| panic!("no {action} button: {card}"));
        let tag = &card[at..at + card[at..].find('>').unwrap()];
        assert!(
            tag.contains("disabled"),
            "{action} disabled without a token: {tag}"
        );
    }
    assert!(dom.contains("Read only: paste an operator token"));
    // Asking for approval escalated it to a human (with its report): the latest escalation, not acknowledged.
    let (s, e) = d.json("GET", "/v1/escalations/latest", None);
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["escalation"]["incident"].as_u64(), Some(id), "{e}");
    assert_eq!(e["escalation"]["acknowledged"], Value::Null, "{e}");
    let panel = &dom[dom
        .find("id=\"escalation-incident\"")
        .unwrap_or_else(|| panic!("no escalation panel; DOM:\n{dom}"))..];
    assert!(
        panel.contains("class=\"ack-no\">not acknowledged"),
        "{}",
        &panel[..panel.len().min(2000)]
    );

    // Alice denies the repair: the incident is escalated and acknowledged by her, and the latest escalation panel
    // shows it.
    let resp = d
        .agent
        .post(&format!("{}/v1/incidents/{id}/deny", d.url))
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer alice-token-0123456789")
        .send(r#"{"note":"not now"}"#)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (s, e) = d.json("GET", "/v1/escalations/latest", None);
    assert_eq!(s, 200, "{e}");
    let e = &e["escalation"];
    assert_eq!(e["incident"].as_u64(), Some(id), "{e}");
    assert_eq!(e["resolution"], "escalated", "{e}");
    assert_eq!(e["acknowledged"]["by"], "alice", "{e}");
    assert_eq!(e["notified_by"], "notifiers", "{e}");
    assert!(
        e["notified"].as_array().unwrap().iter().any(|n| n == "log"),
        "{e}"
    );
    let dom = chromium_run(
        &browser,
        &tmp.path().join("chromium-profile-2"),
        &format!("{}/", d.url),
        "--dump-dom",
        6_000,
    );
    let panel = &dom[dom
        .find("id=\"escalation-incident\"")
        .unwrap_or_else(|| panic!("no escalation panel; DOM:\n{dom}"))..];
    let panel = &panel[..panel.find("</section>").unwrap()];
    assert!(
        panel.contains(&format!("data-incident=\"{id}\"")),
        "{panel}"
    );
    assert!(panel.contains("acknowledged by alice"), "{panel}");
    assert!(panel.contains("id=\"escalation-notified\">log"), "{panel}");
    assert!(panel.contains("escalation report"), "{panel}");
    d.stop();
}
