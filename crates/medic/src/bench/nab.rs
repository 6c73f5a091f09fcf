//! `medic bench nab`: the Numenta Anomaly Benchmark, streamed through medic's detectors and scored with medic's own
//! implementation of NAB's scoring.
//!
//! [`run`] reads NAB's layout (`data/`, `labels/combined_windows.json`, `config/profiles.json`), streams every series
//! through a fresh detector (each point once, in order, no look-ahead, one set of parameters for every series),
//! writes NAB's results layout (`<out>/<detector>/<category>/<detector>_<file>.csv`), optimises the threshold over
//! the whole corpus per profile as NAB does, and normalises the scores. Submodules: [`corpus`] (NAB's files),
//! [`scoring`] (NAB's scoring), [`harness`] (streaming and per-profile scoring), [`board`] (published scores,
//! recomputed).

pub mod board;
pub mod corpus;
pub mod cv;
pub mod harness;
pub mod scoring;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use harness::{DetectorFactory, ProfileResult, ThresholdChoice};

/// What `medic bench nab` is asked to do.
#[derive(Debug, Clone)]
pub struct NabArgs {
    /// NAB's layout: `data/`, `labels/combined_windows.json`, `config/profiles.json`.
    pub data: PathBuf,
    /// Where NAB's results layout is written.
    pub out: PathBuf,
    /// Which detector; `None` for the engine's default (the composite).
    pub detector: Option<String>,
    /// The composite's settings (`[engine.composite]` of the configuration) when the composite is scored.
    pub composite: heal::detect::CompositeConfig,
}

/// The one JSON object `medic bench nab --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct NabSummary {
    /// Normalized score, standard profile.
    pub standard: f64,
    /// Normalized score, reward_low_FP_rate profile.
    #[serde(rename = "reward_low_FP_rate")]
    pub reward_low_fp_rate: f64,
    /// Normalized score, reward_low_FN_rate profile.
    #[serde(rename = "reward_low_FN_rate")]
    pub reward_low_fn_rate: f64,
    /// Data points streamed.
    pub points: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Streaming cost: ns inside the detector per point.
    pub ns_per_point: f64,
    /// The detector's name in the results layout.
    pub detector: String,
    /// Series streamed.
    pub series: u64,
}

/// Everything one benchmark run found: the summary and each profile's detail.
#[derive(Debug, Clone)]
pub struct NabReport {
    /// What `--json` prints.
    pub summary: NabSummary,
    /// Per profile: threshold, raw, null and perfect scores, per-series outcomes.
    pub profiles: Vec<ProfileResult>,
}

/// The engine's default detector's name in the results layout.
pub const DEFAULT_DETECTOR: &str = "composite";

/// A factory for the named detector (`None` or `composite`: the engine's default, the composite with `composite`'s
/// settings). The name must be one [`heal::detect::by_name`] knows; it is also the detector's name in the results
/// layout.
pub fn detector_factory(
    name: Option<&str>,
    composite: &heal::detect::CompositeConfig,
) -> anyhow::Result<(String, Box<DetectorFactory<'static>>)> {
    if name.is_none_or(|n| n == DEFAULT_DETECTOR) {
        let composite = composite.clone();
        let factory = move || -> Box<dyn heal::Detector> {
            Box::new(heal::detect::Composite::new(composite.clone()))
        };
        return Ok((DEFAULT_DETECTOR.to_string(), Box::new(factory)));
    }
    let name = name.unwrap_or(DEFAULT_DETECTOR);
    if heal::detect::by_name(name).is_none() {
        anyhow::bail!(
            "unknown detector {name:?}; known: {}",
            heal::detect::DETECTOR_NAMES.join(", ")
        );
    }
    corpus::check_detector_name(name)?;
    let owned = name.to_string();
    let factory = move || heal::detect::by_name(&owned).expect("checked above");
    Ok((name.to_string(), Box::new(factory)))
}

/// Runs the benchmark with the named detector (or the default) and returns the summary.
pub fn run(args: &NabArgs) -> anyhow::Result<NabSummary> {
    let (name, factory) = detector_factory(args.detector.as_deref(), &args.composite)?;
    Ok(run_with(args, &name, &*factory)?.summary)
}

/// Runs the benchmark with any detector: `name` names it in the results layout (letters and digits), `factory`
/// makes one fresh detector per series.
pub fn run_with(
    args: &NabArgs,
    name: &str,
    factory: &DetectorFactory<'_>,
) -> anyhow::Result<NabReport> {
    let started = Instant::now();
    corpus::check_detector_name(name)?;
    let profiles = corpus::read_profiles(&args.data.join("config").join("profiles.json"))?;
    let windows = corpus::read_windows(&args.data.join("labels").join("combined_windows.json"))?;
    let all = corpus::read_corpus(&args.data.join("data"))?;

    let mut swept = Vec::with_capacity(all.len());
    let mut points = 0u64;
    let mut stream_ns = 0u128;
    for series in &all {
        let series_windows = harness::windows_of(&windows, &series.key)?;
        let mut detector = factory();
        let streamed = harness::stream(detector.as_mut(), series);
        points += series.len() as u64;
        stream_ns += streamed.stream_ns;
        corpus::write_results(&args.out, name, series, &streamed.scores, series_windows)
            .with_context(|| format!("writing results for {}", series.key))?;
        swept.push(scoring::sweep_series(
            &series.key,
            &series.timestamps_us,
            &streamed.scores,
            series_windows,
        )?);
    }
    let profiles = harness::score_profiles(&profiles, &swept, |_| ThresholdChoice::Optimize);
    let normalized = |p: &str| {
        profiles
            .iter()
            .find(|r| r.profile == p)
            .map_or(0.0, |r| r.normalized)
    };
    let summary = NabSummary {
        standard: normalized("standard"),
        reward_low_fp_rate: normalized("reward_low_FP_rate"),
        reward_low_fn_rate: normalized("reward_low_FN_rate"),
        points,
        seconds: started.elapsed().as_secs_f64(),
        ns_per_point: if points == 0 {
            0.0
        } else {
            stream_ns as f64 / points as f64
        },
        detector: name.to_string(),
        series: all.len() as u64,
    };
    Ok(NabReport { summary, profiles })
}
