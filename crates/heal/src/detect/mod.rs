//! Streaming anomaly detectors over metric series. Each sees every point once, in order, with no look-ahead, and
//! returns a score in [0, 1]. Written by hand: the engine needs control over warm-up, adaptation and flat data that
//! no maintained crate offers for one stream over time.

/// A streaming anomaly detector over one metric series.
pub trait Detector: Send {
    /// A stable name, e.g. `zscore`, `mad`, `composite`.
    fn name(&self) -> &str;
    /// Feeds one point and returns its anomaly score in [0, 1]. Non-finite values score 0 and do not move the
    /// baseline. Before the minimum number of samples the score is 0.
    fn update(&mut self, at: crate::clock::Timestamp, value: f64) -> f64;
    /// Why the last point scored what it did, for a human.
    fn explain(&self) -> String;
}
