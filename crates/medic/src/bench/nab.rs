//! `medic bench nab`: the Numenta Anomaly Benchmark, streamed through medic's detectors and scored.

use std::path::PathBuf;

use serde::Serialize;

/// What `medic bench nab` is asked to do.
#[derive(Debug, Clone)]
pub struct NabArgs {
    /// NAB's layout: `data/`, `labels/combined_windows.json`, `config/profiles.json`.
    pub data: PathBuf,
    /// Where NAB's results layout is written.
    pub out: PathBuf,
    /// Which detector; `None` for the engine's default (the composite).
    pub detector: Option<String>,
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
}

/// Runs the benchmark.
pub fn run(args: &NabArgs) -> anyhow::Result<NabSummary> {
    anyhow::bail!(
        "NAB benchmark not available yet (data {})",
        args.data.display()
    )
}
