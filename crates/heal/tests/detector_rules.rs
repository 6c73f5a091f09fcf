//! The rules a detector meant to generalise is held to, checked on the likelihood detector
//! (`[engine.composite] kind = "likelihood"`): causal (a point's score depends only on the points before it, never on
//! what follows or on the series' length; a fixed warm-up in points), invariant to the scale and offset of a series
//! (checked over the NAB slice when it is present), cheap per point and bounded in memory however long it runs, and
//! quiet on healthy operational series and on the slice's series without anomalies (the legacy default meets
//! neither quietness rule; BENCHMARKS.md, `medic bench quiet`).

mod rules;

use rules::engine_cutoff;
use std::time::Instant;

use heal::detect::likelihood::ALARM;
use heal::detect::quiet::{START_US, STEP_US};
use heal::detect::{Composite, CompositeConfig, Detector, Likelihood, LikelihoodConfig};

/// The likelihood detector as the engine would run it: the composite with `kind = "likelihood"`.
fn detector() -> Composite {
    Composite::new(CompositeConfig::likelihood())
}

#[test]
fn the_likelihood_detector_is_selectable_and_its_alarm_level_is_the_engine_cutoff() {
    let config: CompositeConfig = serde_json::from_str(r#"{"kind": "likelihood"}"#).unwrap();
    assert_eq!(config, CompositeConfig::likelihood());
    assert_eq!(
        heal::detect::by_name("likelihood").unwrap().name(),
        "likelihood"
    );
    assert_eq!(ALARM, engine_cutoff());
}

#[test]
fn causal_a_score_never_depends_on_later_points_or_on_the_length() {
    for (s, full) in rules::assert_causal(detector) {
        // A fixed warm-up in points: nothing before it scores, whatever the series.
        let warm_up = LikelihoodConfig::default().warm_up;
        assert!(full[..warm_up].iter().all(|&x| x == 0.0), "{}", s.name);
    }
}

#[test]
/// The cost per point is measured by `medic bench nab` (BENCHMARKS.md, `ns/point`), not asserted here: a timed test
/// fails on a loaded machine without anything being slower.
fn memory_is_bounded_however_long_the_stream_runs() {
    let mut d = Likelihood::default();
    let before = std::mem::size_of_val(&d) + d.config().short_window * 8;
    let n = 2_000_000u64;
    let started = Instant::now();
    let mut x = 0.0f64;
    for i in 0..n {
        x = 0.9 * x + ((i as f64 * 12.9898).sin() * 43_758.545).fract();
        d.update(START_US + i * STEP_US, 100.0 + x);
    }
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    println!("likelihood: {ns:.0} ns per point over {n} points");
    // The whole state is the struct and its ring of short_window raw scores; it does not grow with the stream.
    assert_eq!(
        std::mem::size_of_val(&d) + d.config().short_window * 8,
        before
    );
    assert_eq!(d.ring_len(), d.config().short_window);
}

/// Healthy operational series: at most 0.5 alarms per 10,000 points after the warm-up, per series (see
/// [`rules::assert_quiet`]). Prints the counts: `cargo test -p heal --test detector_rules quiet -- --nocapture`.
#[test]
fn quiet_on_healthy_operational_series() {
    rules::assert_quiet(detector, LikelihoodConfig::default().warm_up);
}

#[test]
fn scale_and_offset_invariant_over_the_nab_slice() {
    rules::assert_scale_invariant(detector, 0);
}

/// The slice's series without anomaly windows: no alarm at all.
#[test]
fn no_alarm_on_the_slices_series_without_anomalies() {
    rules::assert_silent_without_anomalies(detector, 0);
}
