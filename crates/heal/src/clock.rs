//! Time, behind a seam. The engine reads time only through [`Clock`]; production uses [`SystemClock`], tests use
//! [`SimClock`] and advance it by hand, so simulated hours run in milliseconds and every run is reproducible.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Microseconds since the UNIX epoch. One unit everywhere in the engine: durations are differences of these.
pub type Timestamp = u64;

/// Microseconds in one millisecond.
pub const US_PER_MS: u64 = 1_000;
/// Microseconds in one second.
pub const US_PER_S: u64 = 1_000_000;

/// A source of time.
pub trait Clock: Send + Sync {
    /// Now, in microseconds since the UNIX epoch. Never goes backwards for one clock.
    fn now(&self) -> Timestamp;
}

/// The real wall clock, made monotonic: a reading never goes below the previous one even if the system clock steps
/// back.
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicU64,
}

impl SystemClock {
    /// A new system clock.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        prev.max(wall)
    }
}

/// A simulated clock: stands still until advanced. Clones share the same time.
#[derive(Debug, Clone)]
pub struct SimClock {
    now: Arc<AtomicU64>,
}

impl SimClock {
    /// A simulated clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start)),
        }
    }

    /// Moves time forward by `us` microseconds.
    pub fn advance(&self, us: u64) {
        self.now.fetch_add(us, Ordering::SeqCst);
    }

    /// Moves time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.advance(ms.saturating_mul(US_PER_MS));
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        self.now.load(Ordering::SeqCst)
    }
}

/// `ts` (µs since the UNIX epoch) as RFC 3339 in UTC, to the second: `2023-11-14T22:13:20Z` (Howard Hinnant's
/// civil-from-days; a date crate for one format is not worth it).
pub fn rfc3339(ts: Timestamp) -> String {
    let secs = ts / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// A duration in µs for people: `850 µs`, `12 ms`, `3.2 s`, `4 min 5 s`, `2 h 3 min`, `3 d 4 h`.
pub fn human_duration_us(us: u64) -> String {
    let s = us / US_PER_S;
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{} ms", us / 1_000),
        1_000_000..60_000_000 => format!("{:.1} s", us as f64 / 1e6),
        _ if s < 3_600 => format!("{} min {} s", s / 60, s % 60),
        _ if s < 86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// `ts` as RFC 3339 with its age at `now`: `2023-11-14T22:13:20Z (3 min 5 s ago)`; a time after `now` says `in`.
pub fn rfc3339_with_age(ts: Timestamp, now: Timestamp) -> String {
    if ts <= now {
        format!("{} ({} ago)", rfc3339(ts), human_duration_us(now - ts))
    } else {
        format!("{} (in {})", rfc3339(ts), human_duration_us(ts - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_durations_render_for_people() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123_456), "2023-11-14T22:13:20Z");
        assert_eq!(human_duration_us(850), "850 µs");
        assert_eq!(human_duration_us(12_345), "12 ms");
        assert_eq!(human_duration_us(3_240_000), "3.2 s");
        assert_eq!(human_duration_us(245 * US_PER_S), "4 min 5 s");
        assert_eq!(human_duration_us(7_380 * US_PER_S), "2 h 3 min");
        assert_eq!(
            human_duration_us((3 * 86_400 + 4 * 3_600) * US_PER_S),
            "3 d 4 h"
        );
        let t = 1_700_000_000_000_000;
        assert_eq!(
            rfc3339_with_age(t, t + 180 * US_PER_S),
            "2023-11-14T22:13:20Z (3 min 0 s ago)"
        );
        assert_eq!(
            rfc3339_with_age(t + 2 * US_PER_S, t),
            "2023-11-14T22:13:22Z (in 2.0 s)"
        );
    }

    #[test]
    fn sim_clock_advances_and_clones_share_time() {
        let c = SimClock::new(10);
        let d = c.clone();
        c.advance_ms(2);
        assert_eq!(d.now(), 2_010);
    }

    #[test]
    fn system_clock_never_goes_back() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(
            a > 1_600_000_000 * US_PER_S,
            "clock reads a plausible epoch time"
        );
    }
}
