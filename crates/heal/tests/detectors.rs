//! Behaviour of the streaming detectors and the latency recorder on any input: scores stay in [0, 1] and never NaN,
//! warm-up, flat data, jumps, non-finite values and huge values; histogram quantiles stay ordered; recording from
//! many threads loses nothing.

use std::sync::Arc;

use heal::detect::{
    AnomalyLevel, Composite, CompositeConfig, DETECTOR_NAMES, Detector, SeverityCutoffs, by_name,
};
use heal::observe::{Metrics, OpStats};
use proptest::prelude::*;

const MINUTE_US: u64 = 60_000_000;

fn all_detectors() -> Vec<Box<dyn Detector>> {
    DETECTOR_NAMES
        .iter()
        .map(|n| by_name(n).unwrap_or_else(|| panic!("by_name({n})")))
        .collect()
}

/// Feeds `values` at one point per 5 minutes and returns the scores, checking each is in [0, 1].
fn run(d: &mut dyn Detector, values: &[f64]) -> Vec<f64> {
    run_every(d, values, 5 * MINUTE_US)
}

/// Feeds `values` at one point per `step_us` and returns the scores, checking each is in [0, 1].
fn run_every(d: &mut dyn Detector, values: &[f64], step_us: u64) -> Vec<f64> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = d.update(1_600_000_000_000_000 + i as u64 * step_us, v);
            assert!(
                (0.0..=1.0).contains(&s),
                "{} scored {s} on {v} at {i}",
                d.name()
            );
            s
        })
        .collect()
}

/// The engine's default cycle.
const CYCLE_US: u64 = 5_000_000;

/// Deterministic pseudo-noise in [-1, 1] (no RNG needed for fixed fixtures).
fn noise(i: usize) -> f64 {
    let x = (i as f64 * 12.9898).sin() * 43_758.545_3;
    2.0 * (x - x.floor()) - 1.0
}

#[test]
fn by_name_knows_every_listed_detector_and_rejects_others() {
    for name in DETECTOR_NAMES {
        let d = by_name(name).expect("known name");
        assert_eq!(d.name(), name);
    }
    assert!(by_name("nope").is_none());
    let boxed: Box<dyn Detector> = Box::new(Composite::new(CompositeConfig::default()));
    assert_eq!(boxed.name(), "composite");
}

#[test]
fn flat_series_scores_zero_and_a_jump_after_it_scores_high() {
    for mut d in all_detectors() {
        let mut values = vec![42.0; 400];
        let flat = run(d.as_mut(), &values);
        assert!(
            flat.iter().all(|&s| s == 0.0),
            "{} scored a flat series",
            d.name()
        );
        if d.name() == "seasonal" || d.name() == "variance" {
            continue; // judged separately: they need hours of data / react to spread, not level
        }
        values.clear();
        values.push(50.0);
        let jump = run(d.as_mut(), &values)[0];
        // The composite is a weighted mean; seasonal and variance do not react to one jump, so "high" (0.75).
        let high = if d.name() == "composite" { 0.75 } else { 0.9 };
        assert!(
            jump > high,
            "{} scored a jump off a flat series {jump}: {}",
            d.name(),
            d.explain()
        );
    }
}

#[test]
fn scores_are_zero_during_warm_up() {
    for mut d in all_detectors() {
        let values: Vec<f64> = (0..10)
            .map(|i| if i % 2 == 0 { 0.0 } else { 1e6 })
            .collect();
        let scores = run(d.as_mut(), &values);
        assert!(
            scores.iter().all(|&s| s == 0.0),
            "{} judged before warm-up: {scores:?}",
            d.name()
        );
        assert!(d.explain().contains("warming"), "{}", d.explain());
    }
}

#[test]
fn non_finite_values_score_zero_and_leave_the_baseline_alone() {
    for name in DETECTOR_NAMES {
        let base: Vec<f64> = (0..300).map(|i| 10.0 + noise(i)).collect();
        let mut clean = by_name(name).unwrap();
        let mut dirty = by_name(name).unwrap();
        let a = run(clean.as_mut(), &base);
        let mut with_junk = Vec::new();
        for (i, &v) in base.iter().enumerate() {
            with_junk.push(v);
            if i % 7 == 0 {
                with_junk.push([f64::NAN, f64::INFINITY, f64::NEG_INFINITY][i % 3]);
            }
        }
        // Feed the same finite points at the same times, with junk in between.
        let mut b = Vec::new();
        let mut k = 0;
        for (i, &v) in with_junk.iter().enumerate() {
            let at = 1_600_000_000_000_000 + k as u64 * 5 * MINUTE_US;
            let s = dirty.update(at, v);
            if v.is_finite() {
                b.push(s);
                k += 1;
            } else {
                assert_eq!(s, 0.0, "{name} scored junk at {i}");
                assert!(
                    dirty.explain().contains("not finite"),
                    "{}",
                    dirty.explain()
                );
            }
        }
        // The composite's refractory state depends only on finite points too, so the scores agree exactly.
        assert_eq!(a, b, "{name}: junk moved the baseline");
    }
}

#[test]
fn a_spike_in_noise_scores_high_and_the_noise_low() {
    for name in ["zscore", "mad", "ewma", "iqr", "roc", "composite"] {
        let mut d = by_name(name).unwrap();
        let mut values: Vec<f64> = (0..500).map(|i| 100.0 + noise(i)).collect();
        values[450] = 130.0;
        let scores = run(d.as_mut(), &values);
        let normal_max = scores[..450].iter().copied().fold(0.0, f64::max);
        // The composite averages detectors, some of which (seasonal, variance) do not react to one spike.
        let high = if name == "composite" { 0.5 } else { 0.8 };
        assert!(
            scores[450] > high,
            "{name}: spike scored {}: {}",
            scores[450],
            d.explain()
        );
        assert!(normal_max < 0.3, "{name}: noise scored up to {normal_max}");
    }
}

#[test]
fn seasonal_learns_the_daily_shape_and_flags_an_off_hour_peak() {
    let mut d = by_name("seasonal").unwrap();
    let hour = 60 * MINUTE_US;
    let start = 1_600_041_600_000_000u64; // a midnight, UTC
    let shape = |h: u64| {
        if (9..17).contains(&(h % 24)) {
            100.0
        } else {
            10.0
        }
    };
    let mut max_normal: f64 = 0.0;
    // Ten days, one point per 5 minutes.
    for i in 0..(10 * 24 * 12) {
        let at = start + i * 5 * MINUTE_US;
        let v = shape(at / hour) + noise(i as usize);
        let s = d.update(at, v);
        max_normal = max_normal.max(s);
    }
    assert!(max_normal < 0.3, "usual daily shape scored {max_normal}");
    // 03:00 on day 11 with a working-hours value.
    let at = start + 10 * 24 * hour + 3 * hour;
    let s = d.update(at, 100.0);
    assert!(s > 0.9, "off-hour peak scored {s}: {}", d.explain());
}

#[test]
fn variance_detector_flags_a_flatline_and_a_noise_burst() {
    let mut d = by_name("variance").unwrap();
    let mut values: Vec<f64> = (0..400).map(|i| 50.0 + 5.0 * noise(i)).collect();
    values.extend(std::iter::repeat_n(50.0, 40));
    let scores = run(d.as_mut(), &values);
    let normal_max = scores[..400].iter().copied().fold(0.0, f64::max);
    let flat_max = scores[400..].iter().copied().fold(0.0, f64::max);
    assert!(normal_max < 0.3, "noise scored {normal_max}");
    assert!(flat_max > 0.9, "flatline scored {flat_max}");

    let mut d = by_name("variance").unwrap();
    let mut values: Vec<f64> = (0..400).map(|i| 50.0 + noise(i)).collect();
    values.extend((400..440).map(|i| 50.0 + 20.0 * noise(i)));
    let scores = run(d.as_mut(), &values);
    let burst_max = scores[400..].iter().copied().fold(0.0, f64::max);
    assert!(burst_max > 0.75, "variance burst scored {burst_max}");
}

#[test]
fn composite_reports_a_level_shift_at_its_start_then_damps_repeats() {
    let mut d = Composite::new(CompositeConfig::legacy());
    let mut values: Vec<f64> = (0..600).map(|i| 20.0 + noise(i)).collect();
    values.extend((600..900).map(|i| 40.0 + noise(i)));
    let scores = run(&mut d, &values);
    let normal_max = scores[..600].iter().copied().fold(0.0, f64::max);
    assert!(normal_max < 0.3, "noise scored {normal_max}");
    assert!(scores[600] > 0.75, "shift start scored {}", scores[600]);
    let after = scores[601..650].iter().copied().fold(0.0, f64::max);
    assert!(
        after < scores[600],
        "repeats right after the alert are damped: {after}"
    );
    let why = {
        let mut d = Composite::new(CompositeConfig::legacy());
        run(&mut d, &values[..601]);
        d.explain()
    };
    assert!(why.contains("seasonal") && why.contains("range"), "{why}");
}

#[test]
fn composite_detectors_still_warming_up_abstain() {
    // 45 calm points, 5 seconds apart (the engine's cycle): the seasonal profile judges (its bucket for this hour
    // has seen 45 points), range novelty is still warming up. A jump of two orders of magnitude must reach
    // "critical" on the judge's vote alone, not be averaged down by the silent one.
    let mut d = Composite::new(CompositeConfig::legacy());
    let mut values: Vec<f64> = (0..45).map(|i| 100.0 + 10.0 * noise(i)).collect();
    values.push(10_000.0);
    let scores = run_every(&mut d, &values, CYCLE_US);
    assert!(
        scores[45] >= 0.9,
        "jump scored {}: {}",
        scores[45],
        d.explain()
    );
    assert!(d.explain().contains("warming up"), "{}", d.explain());
}

#[test]
fn composite_refractory_damps_echoes_but_not_a_much_larger_excursion() {
    // Points 5 seconds apart, as the engine samples: the seasonal profile judges after 12.
    let calm: Vec<f64> = (0..200).map(|i| 100.0 + 10.0 * noise(i)).collect();
    // A blip to 300 starts the refractory period; a second blip of the same size is an echo and is damped.
    let mut echo = calm.clone();
    echo.extend([300.0, 100.0, 300.0]);
    let mut d = Composite::new(CompositeConfig::legacy());
    let scores = run_every(&mut d, &echo, CYCLE_US);
    assert!(scores[200] >= 0.75, "blip scored {}", scores[200]);
    assert!(scores[202] < 0.75, "echo scored {}", scores[202]);
    // A stall 400× the calm level right after the blip is news: it is reported at full strength.
    let mut stall = calm.clone();
    stall.extend([300.0, 40_000.0]);
    let mut d = Composite::new(CompositeConfig::legacy());
    let scores = run_every(&mut d, &stall, CYCLE_US);
    assert!(
        scores[201] >= 0.75,
        "stall after a blip scored {}: {}",
        scores[201],
        d.explain()
    );
    // With the breakout turned off the stall is damped like any echo.
    let mut d = Composite::new(CompositeConfig {
        refractory_breakout: 0.0,
        ..CompositeConfig::legacy()
    });
    let scores = run_every(&mut d, &stall, CYCLE_US);
    assert!(
        scores[201] < 0.75,
        "breakout off, stall scored {}",
        scores[201]
    );
}

#[test]
fn composite_stand_ins_are_not_damped_while_the_leads_warm_up() {
    // 5 minutes apart: after 60 points the seasonal buckets have 5 points each and range novelty has seen 60 of
    // its 150, so only the stand-ins judge. A blip and then a second excursion of the same size: both are reported,
    // because a warm-up alert must not hide what follows before the leads can judge.
    let mut values: Vec<f64> = (0..60).map(|i| 100.0 + 10.0 * noise(i)).collect();
    values.extend([400.0, 100.0, 100.0, 400.0]);
    let mut d = Composite::new(CompositeConfig::legacy());
    let scores = run(&mut d, &values);
    assert!(scores[60] >= 0.75, "blip scored {}", scores[60]);
    assert!(
        scores[63] >= 0.5,
        "second excursion scored {}: {}",
        scores[63],
        d.explain()
    );
    assert!(!d.explain().contains("damped"), "{}", d.explain());
}

/// False alarms of the default composite on stationary noise, sampled every 5 s for 3 days: a score at or above the
/// engine's default anomaly cut-off (0.75) is an anomaly incident. Range novelty flags the records noise sets while
/// the range seen is still young; they thin out as the metric ages. Prints the counts:
/// `cargo test -p heal --test detectors composite_false_alarms -- --nocapture`.
#[test]
fn composite_false_alarms_on_stationary_noise_are_few_and_early() {
    const DAY: usize = 17_280;
    for (name, heavy) in [("gaussian", false), ("lognormal", true)] {
        let mut rng: u64 = 7;
        let mut uniform = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut d = Composite::new(CompositeConfig::default());
        let mut alarms = Vec::new();
        for i in 0..3 * DAY {
            let z = (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos();
            let v = if heavy {
                1000.0 * (0.5 * z).exp()
            } else {
                1000.0 + 40.0 * z
            };
            if d.update(1_800_000_000_000_000 + i as u64 * CYCLE_US, v) >= 0.75 {
                alarms.push(i);
            }
        }
        println!("{name}: alarms at points {alarms:?} of {}", 3 * DAY);
        assert!(alarms.len() <= 3, "{name}: {alarms:?}");
        assert!(alarms.iter().all(|&i| i < DAY), "{name}: {alarms:?}");
    }
}

#[test]
fn composite_config_is_serde_with_defaults_and_weights_select_detectors() {
    let cfg: CompositeConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, CompositeConfig::default());
    let cfg: CompositeConfig = serde_json::from_str(
        r#"{"weights":{"zscore":1,"mad":0,"ewma":0,"iqr":0,"roc":0,"seasonal":0,"variance":0,"range":0}}"#,
    )
    .unwrap();
    let d = Composite::new(cfg);
    assert_eq!(d.part_scores().len(), 1);
    assert!(serde_json::from_str::<CompositeConfig>(r#"{"bogus":1}"#).is_err());
}

#[test]
fn severity_cutoffs_map_scores_to_levels_at_their_edges() {
    let c = SeverityCutoffs::default();
    let cases = [
        (0.0, AnomalyLevel::None),
        (0.099, AnomalyLevel::None),
        (0.1, AnomalyLevel::Info),
        (0.3, AnomalyLevel::Low),
        (0.5, AnomalyLevel::Medium),
        (0.75, AnomalyLevel::High),
        (0.9, AnomalyLevel::Critical),
        (1.0, AnomalyLevel::Critical),
        (f64::NAN, AnomalyLevel::None),
    ];
    for (score, level) in cases {
        assert_eq!(c.level(score), level, "score {score}");
    }
    assert!(AnomalyLevel::Critical.severity().is_some());
    assert!(AnomalyLevel::Info.severity().is_none());
}

#[test]
fn recording_from_many_threads_loses_nothing() {
    let m = Arc::new(Metrics::new(0));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let m = Arc::clone(&m);
            s.spawn(move || {
                let op = m.op("put").unwrap();
                for i in 0..10_000u64 {
                    op.record_us(i % 500 + t, i % 1000 != 0);
                }
                m.record_us("get", 7, true).unwrap();
            });
        }
    });
    let snap = m.snapshot(1);
    assert_eq!(snap.ops["put"].count, 40_000);
    assert_eq!(snap.ops["put"].errors, 40);
    assert_eq!(snap.ops["get"].count, 4);
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e3..1e3f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(1e300),
        1 => Just(-1e300),
        1 => Just(f64::MAX),
        1 => Just(f64::MIN),
        1 => Just(0.0),
        1 => Just(f64::MIN_POSITIVE),
    ]
}

fn series() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        Just(Vec::new()),
        (value(), 0..200usize).prop_map(|(v, n)| vec![v; n]),
        (value(), value(), 0..200usize)
            .prop_map(|(a, b, n)| (0..n).map(|i| if i % 2 == 0 { a } else { b }).collect()),
        prop::collection::vec(value(), 0..300),
        // A long flat or noisy stretch, then arbitrary values: exercises judged (post-warm-up) points.
        (
            prop::collection::vec(-1.0..1.0f64, 60..120),
            prop::collection::vec(value(), 0..60)
        )
            .prop_map(|(a, b)| a.into_iter().chain(b).collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_detector_scores_in_unit_interval_on_any_input(
        values in series(),
        step_us in prop_oneof![Just(0u64), Just(1u64), Just(300_000_000u64), 0..u64::MAX / 1_000_000],
    ) {
        for mut d in all_detectors() {
            let mut at = 0u64;
            for &v in &values {
                let s = d.update(at, v);
                prop_assert!(!s.is_nan(), "{} gave NaN on {}", d.name(), v);
                prop_assert!((0.0..=1.0).contains(&s), "{} gave {} on {}", d.name(), s, v);
                if !v.is_finite() {
                    prop_assert_eq!(s, 0.0);
                }
                at = at.saturating_add(step_us);
            }
            let _ = d.explain();
        }
    }

    #[test]
    fn histogram_quantiles_are_ordered_and_never_panic(
        latencies in prop::collection::vec(prop_oneof![0..2_000u64, any::<u64>()], 0..300),
        oks in prop::collection::vec(any::<bool>(), 300),
    ) {
        let op = OpStats::new(0);
        for (i, &l) in latencies.iter().enumerate() {
            op.record_us(l, oks[i]);
        }
        for s in [op.summary(1_000_000), op.take_window(2_000_000), op.summary(3_000_000)] {
            prop_assert_eq!(s.count, latencies.len() as u64);
            prop_assert!(s.min_us <= s.p50_us && s.p50_us <= s.p95_us);
            prop_assert!(s.p95_us <= s.p99_us && s.p99_us <= s.max_us);
            prop_assert!(s.mean_us.is_finite() && s.ops_per_s.is_finite());
            let errors = oks[..latencies.len()].iter().filter(|ok| !**ok).count() as u64;
            prop_assert_eq!(s.errors, errors);
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` to µs since the epoch.
fn parse_timestamp(s: &str) -> Option<u64> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?);
    let secs = days * 86_400 + n(11..13)? * 3_600 + n(14..16)? * 60 + n(17..19)?;
    u64::try_from(secs).ok().map(|s| s * 1_000_000)
}

#[test]
fn timestamps_parse_to_epoch_microseconds() {
    assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
    assert_eq!(
        parse_timestamp("2014-04-10 07:15:00"),
        Some(1_397_114_100_000_000)
    );
    assert_eq!(parse_timestamp("garbage"), None);
}

/// Writes per-point scores of a detector over a NAB data directory in NAB's results layout, for scoring with NAB
/// (or `medic bench nab`'s scorer). Ignored by default: it needs the data. Environment: `NAB_DIR` (NAB's layout),
/// `NAB_OUT` (results directory), `NAB_DETECTOR` (a `by_name` name, default `composite`), `NAB_CONFIG` (optional
/// `CompositeConfig` JSON for the composite).
#[test]
#[ignore = "needs NAB data: NAB_DIR=... NAB_OUT=... cargo nextest run -p heal --run-ignored only nab"]
fn nab_scores_dump() {
    let dir = std::path::PathBuf::from(std::env::var("NAB_DIR").expect("NAB_DIR"));
    let out = std::path::PathBuf::from(std::env::var("NAB_OUT").expect("NAB_OUT"));
    let name = std::env::var("NAB_DETECTOR").unwrap_or_else(|_| "composite".into());
    let make = || -> Box<dyn Detector> {
        match std::env::var("NAB_CONFIG") {
            Ok(json) if name == "composite" => Box::new(Composite::new(
                serde_json::from_str(&json).expect("NAB_CONFIG is a CompositeConfig"),
            )),
            _ => by_name(&name).expect("known detector"),
        }
    };
    let mut n_series = 0;
    for cat in std::fs::read_dir(dir.join("data")).expect("data dir") {
        let cat = cat.expect("entry").path();
        for file in std::fs::read_dir(&cat).expect("category dir") {
            let file = file.expect("entry").path();
            let text = std::fs::read_to_string(&file).expect("read series");
            let mut d = make();
            let mut csv = String::from("timestamp,value,anomaly_score\n");
            for line in text.lines().skip(1) {
                let (ts, v) = line.split_once(',').expect("timestamp,value");
                let at = parse_timestamp(ts).expect("timestamp");
                let v: f64 = v.trim().parse().expect("value");
                let s = d.update(at, v);
                assert!((0.0..=1.0).contains(&s));
                csv.push_str(&format!("{ts},{v},{s}\n"));
            }
            let cat_name = cat.file_name().expect("name");
            let target = out.join(cat_name);
            std::fs::create_dir_all(&target).expect("mkdir");
            let fname = format!(
                "{name}_{}",
                file.file_name().expect("name").to_string_lossy()
            );
            std::fs::write(target.join(fname), csv).expect("write");
            n_series += 1;
        }
    }
    assert!(n_series > 0, "no series under {}", dir.display());
}
