//! What `deploy/` ships is checked by the tools that will read it: the Prometheus alert rules parse
//! (`promtool check rules`) and fire on the series they should (`promtool test rules`). promtool comes with
//! Debian's `prometheus` package, which `.ci/run` installs; set `MEDIC_SKIP_PROMTOOL=1` to skip without it. The
//! systemd unit passes `systemd-analyze verify` (where installed), and the Dockerfile's `ENTRYPOINT` is run as
//! written (no container engine needed: the same argument list, data directory and port moved to the test's).

use std::path::PathBuf;
use std::process::Command;

mod support;

/// The repository's `deploy/`.
fn deploy_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn deploy_dir() -> PathBuf {
    deploy_root().join("prometheus")
}

/// Runs `promtool ARGS` in `deploy/prometheus`; `None` when promtool is missing and skipping was asked for.
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(deploy_dir())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if std::env::var_os("MEDIC_SKIP_PROMTOOL").is_some() => {
            eprintln!("promtool not run ({e}); MEDIC_SKIP_PROMTOOL is set");
            None
        }
        Err(e) => panic!(
            "promtool could not be started ({e}): install Debian's `prometheus` package (as .ci/run does) or set \
             MEDIC_SKIP_PROMTOOL=1"
        ),
    }
}

fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_parse_and_fire_when_they_should() {
    let Some(out) = promtool(&["check", "rules", "medic.rules.yml"]) else {
        return;
    };
    assert_success(&out, "promtool check rules");
    let Some(out) = promtool(&["test", "rules", "medic.rules.test.yml"]) else {
        return;
    };
    assert_success(&out, "promtool test rules");
}

#[test]
fn every_metric_an_alert_rule_reads_is_one_medic_exports() {
    let rules = std::fs::read_to_string(deploy_dir().join("medic.rules.yml")).unwrap();
    let exported = medic::daemon::metrics::Metrics::new(0).encode_prometheus();
    let mut read = 0;
    for name in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("medic_") && w.len() > "medic_".len())
    {
        read += 1;
        assert!(
            exported.contains(&format!("\n{name}"))
                || exported.contains(&format!("# TYPE {name} ")),
            "deploy/prometheus/medic.rules.yml reads {name}, which /metrics does not export"
        );
    }
    assert!(read >= 6, "the rules read only {read} medic metrics");
}

fn grafana_dashboard() -> serde_json::Value {
    let path = deploy_dir().join("../grafana/medic.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// Every panel of the dashboard, those inside rows too.
fn panels(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

/// Every PromQL expression of the dashboard.
fn grafana_exprs(dash: &serde_json::Value) -> Vec<String> {
    panels(dash)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("a target with an expr")
                .to_string()
        })
        .collect()
}

/// The metric names an expression reads (`medic_...` words).
fn metric_names(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("medic_") && w.len() > "medic_".len())
        .collect()
}

#[test]
fn the_grafana_dashboard_is_well_formed_and_reads_only_exported_metrics() {
    let dash = grafana_dashboard();
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()), "a uid");
    assert!(dash["schemaVersion"].as_u64().is_some(), "a schemaVersion");
    let variables: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel id repeated: {p}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            w > 0 && x + w <= 24,
            "{title}: gridPos beyond 24 columns: {g}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = std::collections::BTreeSet::new();
        for t in targets {
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "{title}: refId repeated"
            );
            // Every variable an expression uses is defined (or Grafana's own `$__...`).
            let expr = t["expr"].as_str().unwrap();
            for var in expr.split('$').skip(1) {
                let name: String = var
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || variables.contains(&name.as_str()),
                    "{title}: ${name} is not a variable of the dashboard"
                );
            }
        }
    }

    // What the real daemon exports after some traffic (labelled families show up once they have a series).
    let tmp = tempfile::tempdir().unwrap();
    let d = support::Daemon::start(&tmp.path().join("data"), tmp.path());
    let (s, v) = d.json(
        "PUT",
        "/v1/docs/g1",
        Some(&serde_json::json!({"text": "grafana", "vector": [0.1, 0.2]})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.json(
        "POST",
        "/v1/search",
        Some(&serde_json::json!({"vector": [0.1, 0.2], "k": 1})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.json("POST", "/v1/heal", None);
    assert_eq!(s, 200, "{v}");
    d.request("GET", "/metrics", None);
    let (s, _, exported) = d.request("GET", "/metrics", None);
    assert_eq!(s, 200);
    d.stop();
    let exports = |name: &str| {
        let series =
            exported.contains(&format!("\n{name}{{")) || exported.contains(&format!("\n{name} "));
        let family = exported.contains(&format!("# TYPE {name} "));
        let histogram = ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| exported.contains(&format!("# TYPE {base} histogram")))
        });
        series || family || histogram
    };
    let exprs = grafana_exprs(&dash);
    assert!(exprs.len() >= 20, "only {} expressions", exprs.len());
    let mut read = std::collections::BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr}: reads no medic metric");
        for name in names {
            assert!(
                exports(name),
                "deploy/grafana/medic.json reads {name}, which /metrics does not export (in {expr})"
            );
            read.insert(name);
        }
    }
    assert!(
        read.len() >= 20,
        "the dashboard reads only {} metrics",
        read.len()
    );
    // The check above can fail: a name /metrics does not export is told apart.
    assert!(!exports("medic_no_such_metric_total"));
}

#[test]
fn every_grafana_expression_is_promql_that_promtool_parses() {
    let dash = grafana_dashboard();
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: grafana\n    rules:\n");
    for (i, expr) in grafana_exprs(&dash).iter().enumerate() {
        // Grafana's variables as Prometheus would receive them.
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: grafana:expr_{i}\n        expr: {}\n",
            serde_json::Value::String(expr)
        ));
    }
    let file = dir.path().join("grafana.rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let Some(out) = promtool(&["check", "rules", file.to_str().unwrap()]) else {
        return;
    };
    assert_success(
        &out,
        &format!("promtool check rules on the dashboard's expressions:\n{rules}"),
    );
    // promtool does refuse PromQL that does not parse.
    std::fs::write(
        &file,
        "groups:\n  - name: g\n    rules:\n      - record: x:y\n        expr: \"sum by (le (rate(x[5m]))\"\n",
    )
    .unwrap();
    let Some(out) = promtool(&["check", "rules", file.to_str().unwrap()]) else {
        return;
    };
    assert!(
        !out.status.success(),
        "promtool accepted a broken expression"
    );
}

fn deploy_file(name: &str) -> String {
    let path = deploy_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The systemd unit as written, with `ExecStart` pointing at the binary under test, passes `systemd-analyze verify`
/// (skipped, saying so, where systemd-analyze is not installed). A unit naming a missing binary does not.
#[test]
fn the_systemd_unit_verifies_with_systemd_analyze() {
    let Some(analyze) = support::binary_on_path(&["systemd-analyze"]) else {
        eprintln!("systemd-analyze is not installed here: the unit is not verified");
        return;
    };
    let unit = deploy_file("medic.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/medic serve"),
        "the unit's ExecStart changed; update this test:\n{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| {
        let file = dir.path().join("medic.service");
        std::fs::write(&file, text).unwrap();
        Command::new(&analyze)
            .args(["verify", "--man=no"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let here = unit.replace("/usr/local/bin/medic", env!("CARGO_BIN_EXE_medic"));
    assert_success(&verify(&here), "systemd-analyze verify medic.service");
    let missing = unit.replace("/usr/local/bin/medic", "/nonexistent/medic");
    assert!(
        !verify(&missing).status.success(),
        "systemd-analyze accepted a unit whose binary does not exist"
    );
}

/// The container's `ENTRYPOINT` (the Dockerfile's exact argument list; only the data directory and the port moved
/// to this test's) starts medic listening on all addresses with `MEDIC_TOKEN`, answers `/health`, refuses an API
/// write without the token, takes one with it, and stops cleanly on SIGTERM, as `docker stop` sends it. Without a token it refuses to
/// listen beyond loopback.
#[test]
fn the_dockerfile_entrypoint_serves_with_a_token_and_refuses_without_one() {
    let dockerfile = deploy_file("Dockerfile");
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .expect("the Dockerfile has an ENTRYPOINT");
    let argv: Vec<String> = serde_json::from_str(line.trim_start_matches("ENTRYPOINT ")).unwrap();
    assert_eq!(argv[0], "medic", "{argv:?}");
    // `serve --data /var/lib/medic` is what support::Daemon runs too; the rest (listener, log format) is taken as
    // written, the port made 0 so the daemon picks a free one.
    assert_eq!(
        argv[1..4],
        ["serve", "--data", "/var/lib/medic"],
        "{argv:?}"
    );
    let extra: Vec<&str> = argv[4..]
        .iter()
        .map(|a| match a.as_str() {
            "0.0.0.0:7878" => "0.0.0.0:0",
            other => other,
        })
        .collect();
    assert!(extra.contains(&"0.0.0.0:0"), "{argv:?}");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("var-lib-medic");

    let refused = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(&extra)
        .env_remove("MEDIC_TOKEN")
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "medic listened on 0.0.0.0 without a token"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let token = "entrypoint-test-token-0123456789abcdef";
    let d = support::Daemon::start_with_env(&data, tmp.path(), &extra, &[("MEDIC_TOKEN", token)]);
    support::wait_for(
        "/health HEALTHY",
        std::time::Duration::from_secs(60),
        || {
            let (status, health) = d.json("GET", "/health", None);
            (status == 200 && health["state"] == "HEALTHY").then_some(())
        },
    );
    // Reads stay open; a write needs the token.
    let doc = serde_json::json!({"text": "written through the container's command line"});
    let (status, _, text) = d.request("PUT", "/v1/docs/entrypoint", Some(&doc));
    assert_eq!(status, 401, "{text}");
    let with_token = d
        .agent
        .put(format!("{}/v1/docs/entrypoint", d.url))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(doc.to_string())
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(with_token, 200);
    let (status, got) = d.json("GET", "/v1/docs/entrypoint", None);
    assert_eq!((status, &got["text"]), (200, &doc["text"]), "{got}");

    // JSON log lines, as the ENTRYPOINT asks for the container's log collector.
    let err = d.stderr();
    let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "not a JSON log line: {first}"
    );
    // docker stop: SIGTERM, then a clean exit.
    d.stop();
}
