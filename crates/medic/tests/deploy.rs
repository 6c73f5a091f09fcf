//! What `deploy/` ships is checked by the tools that will read it: the Prometheus alert rules parse
//! (`promtool check rules`) and fire on the series they should (`promtool test rules`). promtool comes with
//! Debian's `prometheus` package, which `.ci/run` installs; set `MEDIC_SKIP_PROMTOOL=1` to skip without it.

use std::path::PathBuf;
use std::process::Command;

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
