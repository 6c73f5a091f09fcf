//! The rules a detector meant to generalise is held to, checked on the surprise detector
//! (`[engine.composite] kind = "surprise"`; `detector_rules.rs` holds the likelihood detector to them): causal (a point's score depends only on the points before it, never on
//! what follows or on the series' length; a fixed warm-up in points), invariant to the scale and offset of a series
//! (checked over the NAB slice when it is present), cheap per point and bounded in memory however long it runs, and
//! quiet on healthy operational series and on the slice's series without anomalies (the legacy default meets
//! neither quietness rule; BENCHMARKS.md, `medic bench quiet`).

mod rules;

use rules::{engine_cutoff, scores, times};
use std::time::Instant;

use heal::detect::quiet::{START_US, STEP_US};
use heal::detect::surprise::{ALARM, CALM};
use heal::detect::{Composite, CompositeConfig, CompositeKind, Detector, Surprise, SurpriseConfig};

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
    let t = rules::times(6_000);
    for (s, full) in rules::assert_causal(detector) {
        // A fixed warm-up in points: the surprise detector scores nothing before it, whatever the series (the
        // composite's legacy stand-ins speak meanwhile).
        let warm_up = SurpriseConfig::default().warm_up;
        let alone = rules::scores(&mut Surprise::default(), &s.values, &t);
        assert!(alone[..warm_up].iter().all(|&x| x == 0.0), "{}", s.name);
        assert_eq!(alone[warm_up..], full[warm_up..], "{}", s.name);
    }
}

#[test]
/// The cost per point is measured by `medic bench nab` (BENCHMARKS.md, `ns/point`), not asserted here: a timed test
/// fails on a loaded machine without anything being slower.
fn memory_is_bounded_however_long_the_stream_runs() {
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
}

/// Healthy operational series: at most 0.5 alarms per 10,000 points after the warm-up, per series (see
/// [`rules::assert_quiet`]). Prints the counts: `cargo test -p heal --test detectors_surprise quiet -- --nocapture`.
#[test]
fn quiet_on_healthy_operational_series() {
    rules::assert_quiet(detector, SurpriseConfig::default().warm_up);
}

/// After the warm-up the surprise detector alone scores: the same scores up to rounding. (During it the legacy
/// stand-ins judge; their alarms are the same, their scores only close.)
#[test]
fn scale_and_offset_invariant_over_the_nab_slice() {
    rules::assert_scale_invariant(detector, SurpriseConfig::default().warm_up);
}

/// The slice's series without anomaly windows: no alarm after the warm-up (during it the legacy stand-ins judge).
#[test]
fn no_alarm_on_the_slices_series_without_anomalies() {
    rules::assert_silent_without_anomalies(detector, SurpriseConfig::default().warm_up);
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

/// Without the step score (`step_score = false`, the surprise detector of 2026-12-06) the detector is held to the same
/// rules: quiet on healthy operational series, scale and offset invariant over the slice, silent on its series
/// without anomalies, causal.
#[test]
fn without_the_step_score_the_rules_still_hold() {
    let make = || {
        Composite::new(CompositeConfig {
            surprise: SurpriseConfig {
                step_score: false,
                ..SurpriseConfig::default()
            },
            ..CompositeConfig::surprise()
        })
    };
    let warm_up = SurpriseConfig::default().warm_up;
    rules::assert_quiet(make, warm_up);
    rules::assert_scale_invariant(make, warm_up);
    rules::assert_silent_without_anomalies(make, warm_up);
    rules::assert_causal(make);
}
