//! The rules a detector meant to generalise is held to, checked on the surprise detector
//! (`[engine.composite] kind = "surprise"`; `detector_rules.rs` holds the likelihood detector to them): causal (a point's score depends only on the points before it, never on
//! what follows or on the series' length; a fixed warm-up in points), invariant to the scale and offset of a series
//! (checked over the NAB slice when it is present), cheap per point and bounded in memory however long it runs, and
//! quiet on healthy operational series and on the slice's series without anomalies (the legacy default meets
//! neither quietness rule; BENCHMARKS.md, `medic bench quiet`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use heal::detect::quiet::{self, START_US, STEP_US};
use heal::detect::surprise::{ALARM, CALM};
use heal::detect::{Composite, CompositeConfig, CompositeKind, Detector, Surprise, SurpriseConfig};

/// The engine's default anomaly cut-off: a score at or above it is an anomaly issue.
fn engine_cutoff() -> f64 {
    heal::config::EngineConfig::default().anomaly_cutoff
}

fn scores(d: &mut dyn Detector, values: &[f64], times: &[u64]) -> Vec<f64> {
    values
        .iter()
        .zip(times)
        .map(|(&v, &t)| d.update(t, v))
        .collect()
}

fn times(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| START_US + i * STEP_US).collect()
}

/// One point every 5 minutes (NAB's usual cadence), so that the hour-of-day profile takes part within a series.
fn times_5min(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| START_US + i * 300_000_000).collect()
}

/// The surprise detector as the engine would run it: the composite with `kind = "surprise"`.
fn detector() -> Composite {
    Composite::new(CompositeConfig::surprise())
}

#[test]
fn the_surprise_detector_is_selectable_and_its_alarm_level_is_the_engine_cutoff() {
    let config: CompositeConfig = serde_json::from_str(r#"{"kind": "surprise"}"#).unwrap();
    assert_eq!(config, CompositeConfig::surprise());
    assert_eq!(config.kind, CompositeKind::Surprise);
    assert_eq!(
        heal::detect::by_name("surprise").unwrap().name(),
        "surprise"
    );
    assert_eq!(ALARM, engine_cutoff());
}

#[test]
fn causal_a_score_never_depends_on_later_points_or_on_the_length() {
    let suite = quiet::suite(6_000, 11);
    let t = times(6_000);
    for s in &suite {
        let full = scores(&mut detector(), &s.values, &t);
        // The same prefix followed by something entirely different (or by nothing) scores the same.
        for cut in [400, 2_500, 5_999] {
            let mut other = s.values[..cut].to_vec();
            other.extend((cut..6_000).map(|i| 1e6 * (i % 7) as f64));
            let changed = scores(&mut detector(), &other, &t);
            assert_eq!(full[..cut], changed[..cut], "{}: cut at {cut}", s.name);
            let short = scores(&mut detector(), &s.values[..cut], &t[..cut]);
            assert_eq!(full[..cut], short[..], "{}: length {cut}", s.name);
        }
        // A fixed warm-up in points: the surprise detector scores nothing before it, whatever the series (the
        // composite's legacy stand-ins speak meanwhile).
        let warm_up = SurpriseConfig::default().warm_up;
        let alone = scores(&mut Surprise::default(), &s.values, &t);
        assert!(alone[..warm_up].iter().all(|&x| x == 0.0), "{}", s.name);
        assert_eq!(alone[warm_up..], full[warm_up..], "{}", s.name);
    }
}

#[test]
fn memory_is_bounded_and_an_update_costs_a_few_microseconds() {
    let mut d = Surprise::default();
    let before = std::mem::size_of_val(&d) + d.config().short_window * 8;
    let n = 2_000_000u64;
    let started = Instant::now();
    let mut x = 0.0f64;
    for i in 0..n {
        x = 0.9 * x + ((i as f64 * 12.9898).sin() * 43_758.545).fract();
        d.update(START_US + i * STEP_US, 100.0 + x);
    }
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    println!("surprise: {ns:.0} ns per point over {n} points");
    // The whole state is the struct and its ring of short_window raw scores; it does not grow with the stream.
    assert_eq!(
        std::mem::size_of_val(&d) + d.config().short_window * 8,
        before
    );
    assert_eq!(d.ring_len(), d.config().short_window);
    assert!(ns < 5_000.0, "{ns} ns per point");
}

/// Healthy operational series, 50,000 points each (about 69 hours at the engine's 5 s cycle), fixed seeds: at most
/// 0.5 alarms (scores at or above the engine's default cut-off) per 10,000 points after the warm-up, per series.
/// Prints the counts: `cargo test -p heal --test detector_rules quiet -- --nocapture`.
#[test]
fn quiet_on_healthy_operational_series() {
    const POINTS: usize = 50_000;
    let cutoff = engine_cutoff();
    let warm_up = SurpriseConfig::default().warm_up;
    let mut loud = Vec::new();
    for seed in [1, 2] {
        for s in quiet::suite(POINTS, seed) {
            let mut d = detector();
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
fn slice() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            manifest.join("../../shared/nab"),
            manifest.join("../../../shared/nab"),
            manifest.join("../../../../shared/nab"),
        ])
        .find(|p| p.join("labels/combined_windows.json").is_file())
}

/// Every series of the slice as (key, values); timestamps are replaced by the engine's cycle from a fixed start
/// (the rule under test concerns values).
fn slice_series(nab: &Path) -> Vec<(String, Vec<f64>)> {
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

#[test]
fn scale_and_offset_invariant_over_the_nab_slice() {
    let Some(nab) = slice() else {
        println!("NOTICE: NAB slice not found (set NAB_DIR or put it at shared/nab); skipping");
        return;
    };
    let cutoff = engine_cutoff();
    let mut alarms_total = 0;
    for (key, values) in slice_series(&nab) {
        let t = times_5min(values.len());
        let a = scores(&mut detector(), &values, &t);
        let moved: Vec<f64> = values.iter().map(|v| 10.0 * v + 1000.0).collect();
        let b = scores(&mut detector(), &moved, &t);
        let alarms =
            |s: &[f64]| -> Vec<usize> { (0..s.len()).filter(|&i| s[i] >= cutoff).collect() };
        assert_eq!(
            alarms(&a),
            alarms(&b),
            "{key}: alarms differ after ×10 + 1000"
        );
        // After the warm-up the surprise detector alone scores: the same scores up to rounding. (During it the
        // legacy stand-ins judge; the alarms above are the same, their scores only close.)
        let warm_up = SurpriseConfig::default().warm_up;
        for (i, (x, y)) in a.iter().zip(&b).enumerate().skip(warm_up) {
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
/// no score at or above the engine's cut-off after the warm-up (during it the legacy stand-ins judge).
#[test]
fn no_alarm_on_the_slices_series_without_anomalies() {
    let Some(nab) = slice() else {
        println!("NOTICE: NAB slice not found (set NAB_DIR or put it at shared/nab); skipping");
        return;
    };
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
        let a = scores(&mut detector(), &values, &times_5min(values.len()));
        let warm_up = SurpriseConfig::default().warm_up;
        let alarms: Vec<usize> = (warm_up..a.len()).filter(|&i| a[i] >= cutoff).collect();
        assert!(alarms.is_empty(), "{short}: alarms at {alarms:?}");
    }
    assert_eq!(checked, 6);
}

/// One report per event whatever the threshold: a level shift held for 500 points is reported at its start, and at
/// any threshold its later points cross only when they rise well above the last report (at most twice more), never
/// for as long as the baselines take to adapt; the engine's cut-off is crossed once.
#[test]
fn a_sustained_shift_is_reported_at_its_start_at_every_threshold() {
    let noise = |i: u64| ((i as f64 * 12.9898).sin() * 43_758.545_3).fract() - 0.5;
    let mut d = detector();
    let t = times(4_000);
    let values: Vec<f64> = (0..4_000u64)
        .map(|i| {
            100.0
                + noise(i)
                + if (3_000..3_500).contains(&i) {
                    5.0
                } else {
                    0.0
                }
        })
        .collect();
    let s = scores(&mut d, &values, &t);
    let shift = &s[3_000..3_500];
    let top = shift.iter().cloned().fold(0.0, f64::max);
    assert!(top >= engine_cutoff(), "the shift scored at most {top}");
    // Reported at once: the first point scores above every ordinary point.
    assert!(
        shift[0] >= CALM,
        "first point of the shift scored {}",
        shift[0]
    );
    for threshold in [0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9] {
        let crossings = shift.iter().filter(|&&x| x >= threshold).count();
        assert!(
            crossings <= 3,
            "{crossings} points of one shift at or above {threshold}"
        );
        if threshold >= engine_cutoff() && threshold <= top {
            assert_eq!(crossings, 1, "alarms at {threshold}");
        }
    }
}
