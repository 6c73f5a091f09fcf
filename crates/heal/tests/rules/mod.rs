//! The rules a detector meant to generalise is held to, as checks over any detector (`make` builds a fresh one):
//! causal, quiet on healthy operational series, scale and offset invariant over the NAB slice, and silent on the
//! slice's series without anomalies. `detector_rules.rs` (likelihood) and `detectors_surprise.rs` (surprise) call
//! them.

#![allow(dead_code)] // each test file uses the checks it needs

use std::path::{Path, PathBuf};

use heal::detect::Detector;
use heal::detect::quiet::{self, START_US, STEP_US};

/// The engine's default anomaly cut-off: a score at or above it is an anomaly issue.
pub fn engine_cutoff() -> f64 {
    heal::config::EngineConfig::default().anomaly_cutoff
}

pub fn scores(d: &mut dyn Detector, values: &[f64], times: &[u64]) -> Vec<f64> {
    values
        .iter()
        .zip(times)
        .map(|(&v, &t)| d.update(t, v))
        .collect()
}

pub fn times(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| START_US + i * STEP_US).collect()
}

/// One point every 5 minutes (NAB's usual cadence), so that the hour-of-day profile takes part within a series.
pub fn times_5min(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| START_US + i * 300_000_000).collect()
}

/// Causal: on the quiet suite (6,000 points), a prefix followed by something entirely different, or by nothing,
/// scores the same. Returns each series with its full scores, for the caller's warm-up checks.
pub fn assert_causal<D: Detector>(make: impl Fn() -> D) -> Vec<(quiet::QuietSeries, Vec<f64>)> {
    let t = times(6_000);
    quiet::suite(6_000, 11)
        .into_iter()
        .map(|s| {
            let full = scores(&mut make(), &s.values, &t);
            for cut in [400, 2_500, 5_999] {
                let mut other = s.values[..cut].to_vec();
                other.extend((cut..6_000).map(|i| 1e6 * (i % 7) as f64));
                let changed = scores(&mut make(), &other, &t);
                assert_eq!(full[..cut], changed[..cut], "{}: cut at {cut}", s.name);
                let short = scores(&mut make(), &s.values[..cut], &t[..cut]);
                assert_eq!(full[..cut], short[..], "{}: length {cut}", s.name);
            }
            (s, full)
        })
        .collect()
}

/// Healthy operational series, 50,000 points each (about 69 hours at the engine's 5 s cycle), seeds 1 and 2: at
/// most 0.5 alarms (scores at or above the engine's default cut-off) per 10,000 points after `warm_up`, per series.
/// Prints the counts (`-- --nocapture`).
pub fn assert_quiet<D: Detector>(make: impl Fn() -> D, warm_up: usize) {
    const POINTS: usize = 50_000;
    let cutoff = engine_cutoff();
    let mut loud = Vec::new();
    for seed in [1, 2] {
        for s in quiet::suite(POINTS, seed) {
            let mut d = make();
            let alarms = quiet::alarms(&mut d, &s.values, cutoff, warm_up);
            let per_10k = alarms as f64 * 10_000.0 / (POINTS - warm_up) as f64;
            println!(
                "seed {seed} {}: {alarms} alarms, {per_10k:.2} per 10k points",
                s.name
            );
            if per_10k > 0.5 {
                loud.push(format!("seed {seed} {}: {alarms} alarms", s.name));
            }
        }
    }
    assert!(loud.is_empty(), "{loud:?}");
}

/// The NAB slice: `NAB_DIR`, or `shared/nab` next to the workspace.
pub fn slice() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            manifest.join("../../shared/nab"),
            manifest.join("../../../shared/nab"),
            manifest.join("../../../../shared/nab"),
        ])
        .find(|p| p.join("labels/combined_windows.json").is_file());
    if found.is_none() {
        println!("NOTICE: NAB slice not found (set NAB_DIR or put it at shared/nab); skipping");
    }
    found
}

/// Every series of the slice as (key, values); timestamps are replaced by the engine's cycle from a fixed start
/// (the rules under test concern values).
pub fn slice_series(nab: &Path) -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(nab.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let values = text
                .lines()
                .skip(1)
                .filter_map(|l| l.split(',').nth(1)?.trim().parse().ok())
                .collect();
            out.push((f.display().to_string(), values));
        }
    }
    out
}

/// Scale and offset invariant over the slice: ×10 + 1000 gives the same alarms, and the same scores within 1e-6
/// from point `scores_equal_from` on (before it, stand-ins that are only nearly invariant may judge).
pub fn assert_scale_invariant<D: Detector>(make: impl Fn() -> D, scores_equal_from: usize) {
    let Some(nab) = slice() else { return };
    let cutoff = engine_cutoff();
    let mut alarms_total = 0;
    for (key, values) in slice_series(&nab) {
        let t = times_5min(values.len());
        let a = scores(&mut make(), &values, &t);
        let moved: Vec<f64> = values.iter().map(|v| 10.0 * v + 1000.0).collect();
        let b = scores(&mut make(), &moved, &t);
        let alarms =
            |s: &[f64]| -> Vec<usize> { (0..s.len()).filter(|&i| s[i] >= cutoff).collect() };
        assert_eq!(
            alarms(&a),
            alarms(&b),
            "{key}: alarms differ after ×10 + 1000"
        );
        for (i, (x, y)) in a.iter().zip(&b).enumerate().skip(scores_equal_from) {
            assert!((x - y).abs() < 1e-6, "{key} point {i}: {x} vs {y}");
        }
        alarms_total += alarms(&a).len();
    }
    assert!(
        alarms_total > 0,
        "the slice has anomalies: some alarms are expected"
    );
}

/// The slice's series without anomaly windows (the five of `artificialNoAnomaly` and one of `realAWSCloudwatch`):
/// no score at or above the engine's cut-off from point `from` on.
pub fn assert_silent_without_anomalies<D: Detector>(make: impl Fn() -> D, from: usize) {
    let Some(nab) = slice() else { return };
    let windows: std::collections::BTreeMap<String, Vec<serde_json::Value>> = serde_json::from_str(
        &std::fs::read_to_string(nab.join("labels/combined_windows.json")).unwrap(),
    )
    .unwrap();
    let cutoff = engine_cutoff();
    let mut checked = 0;
    for (key, values) in slice_series(&nab) {
        let short = key.rsplitn(3, '/').take(2).collect::<Vec<_>>();
        let short = format!("{}/{}", short[1], short[0]);
        if !windows.get(&short).is_some_and(Vec::is_empty) {
            continue;
        }
        checked += 1;
        let a = scores(&mut make(), &values, &times_5min(values.len()));
        let alarms: Vec<usize> = (from..a.len()).filter(|&i| a[i] >= cutoff).collect();
        assert!(alarms.is_empty(), "{short}: alarms at {alarms:?}");
    }
    assert_eq!(checked, 6);
}
