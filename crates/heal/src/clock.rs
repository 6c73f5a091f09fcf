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

#[cfg(test)]
mod tests {
    use super::*;

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
