//! What `deploy/` ships is checked by the tools that will read it: the Prometheus alert rules parse
//! (`promtool check rules`) and fire on the series they should (`promtool test rules`). promtool comes with
//! Debian's `prometheus` package, which `.ci/run` installs; set `MEDIC_SKIP_PROMTOOL=1` to skip without it.

use std::path::PathBuf;
use std::process::Command;

mod support;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
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
