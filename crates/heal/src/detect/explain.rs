//! What a detector remembers about its last point so that `explain()` can describe it without the hot path
//! formatting any text.

use std::fmt::Write as _;

/// The state of a detector's last update.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Last {
    /// No point seen yet.
    #[default]
    Nothing,
    /// The value was NaN or infinite: scored 0, baseline untouched.
    NonFinite,
    /// Still warming up: `seen` of `needed` samples.
    Warming {
        /// Samples in the baseline.
        seen: usize,
        /// Samples needed before judging.
        needed: usize,
    },
    /// Judged against a baseline.
    Scored {
        /// The value.
        value: f64,
        /// The baseline's centre (mean, median, expected value).
        centre: f64,
        /// The baseline's spread (std, MAD, IQR), after flooring.
        spread: f64,
        /// How far off, in units of spread.
        deviation: f64,
        /// The score given.
        score: f64,
    },
}

/// One line describing `last` for the detector `name`; `centre` and `spread` name what they are.
pub fn describe(name: &str, centre: &str, spread: &str, last: &Last) -> String {
    let mut s = String::new();
    match *last {
        Last::Nothing => {
            let _ = write!(s, "{name}: no points seen yet");
        }
        Last::NonFinite => {
            let _ = write!(
                s,
                "{name}: last value was not finite; scored 0, baseline unchanged"
            );
        }
        Last::Warming { seen, needed } => {
            let _ = write!(s, "{name}: warming up ({seen}/{needed} samples); scored 0");
        }
        Last::Scored {
            value,
            centre: c,
            spread: sp,
            deviation,
            score,
        } => {
            let _ = write!(
                s,
                "{name}: value {value:.6} vs {centre} {c:.6}, {spread} {sp:.6}: {deviation:.2} {spread}s off; score {score:.3}"
            );
        }
    }
    s
}
