//! `medic chaos` measures the time to detect on the daemon's own schedule (`[checks]` of the configuration it is
//! given), and says so: a fault is found by the tier that runs next on that schedule, never sooner than the next
//! healing cycle, so the figure moves with the configured intervals.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `medic chaos` on a fresh directory under `dir` with `[checks]` intervals (ms): the JSON report.
fn chaos(
    dir: &Path,
    name: &str,
    shallow_ms: u64,
    deep_ms: u64,
    full_ms: u64,
    faults: &str,
) -> Value {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[checks]\nshallow_interval_ms = {shallow_ms}\ndeep_interval_ms = {deep_ms}\n\
             comprehensive_interval_ms = {full_ms}\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args([
            "chaos", "--seed", "11", "--rounds", "4", "--docs", "200", "--faults", faults,
        ])
        .arg("--data")
        .arg(dir.join(name))
        .arg("--config")
        .arg(&config)
        .arg("--json")
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn chaos_measures_time_to_detect_on_the_configured_schedule_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // Cycles every 2 s, the deep tier every 20 s, the full scrub every 2 min.
    let v = chaos(
        dir.path(),
        "slow",
        2_000,
        20_000,
        120_000,
        "bit_flip,torn_write",
    );
    assert_eq!(v["injected"], 4, "{v}");
    assert_eq!(
        v["detected"], 4,
        "every fault found within a scrub interval: {v}"
    );
    assert_eq!(v["acked_writes_lost"], 0, "{v}");
    let basis = v["mttd_basis"].as_str().unwrap();
    assert!(
        basis.starts_with(
            "the daemon's schedule: a healing cycle every 2.0 s, the deep tier every 20.0 s, the \
                           comprehensive tier (full scrub) every 2 min 0 s"
        ),
        "{basis}"
    );
    assert_eq!(v["schedule"]["shallow_interval_us"], 2_000_000, "{v}");
    assert_eq!(
        v["schedule"]["comprehensive_interval_us"], 120_000_000,
        "{v}"
    );
    // Never sooner than the next cycle, never later than a scrub interval and the cycle that follows it.
    let (p50, p99) = (
        v["mttd_ms_p50"].as_f64().unwrap(),
        v["mttd_ms_p99"].as_f64().unwrap(),
    );
    assert!(
        p50 >= 2_000.0,
        "MTTD p50 {p50} ms is under one healing cycle: {v}"
    );
    assert!(p99 >= p50 && p99 <= 124_000.0 + 10_000.0, "{v}");
    for (kind, f) in v["by_fault"].as_object().unwrap() {
        if f["detected"].as_u64().unwrap_or(0) > 0 {
            assert!(f["mttd_ms_p50"].as_f64().unwrap() >= 2_000.0, "{kind}: {f}");
        }
    }

    // The same faults with cycles every 200 ms: detection follows the schedule, so a cycle ten times as frequent
    // finds them sooner (each check still no more often than its own interval).
    let fast = chaos(
        dir.path(),
        "fast",
        200,
        2_000,
        12_000,
        "bit_flip,torn_write",
    );
    assert_eq!(fast["detected"], 4, "{fast}");
    let fast_p50 = fast["mttd_ms_p50"].as_f64().unwrap();
    assert!(fast_p50 >= 200.0, "{fast}");
    assert!(fast_p50 < p50, "fast schedule {fast_p50} ms, slow {p50} ms");
}
