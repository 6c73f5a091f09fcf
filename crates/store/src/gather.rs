//! Group commit's gathering: how long a new commit leader waits for the writers already inside a write call before
//! it flushes.
//!
//! Without it, concurrent writers alternate between batches of one and of n − 1: the first writer back from a flush
//! finds no leader, leads a batch holding only its own record, and everyone else queues behind that flush. So a new
//! leader waits while some write call that has entered has not queued its record yet (it is encoding it, or
//! collecting the previous batch's result on its way back for another write), but never longer than half the last
//! flush took, nor [`GATHER_MAX`]: the wait costs at most half a flush and saves whole ones. A single writer never
//! waits (its own record is the only one expected).
//!
//! Invariant: [`Gather::enter`] is called once per write call that may queue records, before it takes the state lock,
//! and the caller's state counts each call's queuing once (the leader resets that count when it takes the batch).
//! A call counted here that never queues only shortens a wait to its cap; it never blocks a commit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a leader waits for writers to queue, whatever the last flush took.
pub(crate) const GATHER_MAX: Duration = Duration::from_millis(1);

/// Who is writing, and the wait of a leader for them. One per store, beside its state mutex.
#[derive(Default)]
pub(crate) struct Gather {
    /// Write calls entered and not yet returned.
    inside: AtomicUsize,
    /// Set while a leader waits: writers then wake it when they queue a record or leave.
    waiting: AtomicBool,
    cv: Condvar,
    /// How long the last flush took (µs); bounds the next wait.
    last_flush_us: AtomicU64,
}

/// A write call in progress; leaving (drop) may end a leader's wait.
pub(crate) struct Inside<'a, S> {
    gather: &'a Gather,
    state: &'a Mutex<S>,
}

impl Gather {
    /// A write call begins. Hold the guard until it returns; create it before taking `state`'s lock.
    pub(crate) fn enter<'a, S>(&'a self, state: &'a Mutex<S>) -> Inside<'a, S> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        Inside {
            gather: self,
            state,
        }
    }

    /// A write call queued its records (call with the state lock held, after counting it in the state).
    pub(crate) fn queued(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            self.cv.notify_all();
        }
    }

    /// A flush took `took`.
    pub(crate) fn flushed(&self, took: Duration) {
        self.last_flush_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Whether a write call inside has not queued yet, when `queued` have.
    fn must_wait(&self, queued: usize) -> bool {
        queued < self.inside.load(Ordering::SeqCst)
    }

    /// Waits (releasing the lock) while fewer write calls have queued (`queued` of the state) than are inside, up to
    /// half the last flush's time and [`GATHER_MAX`]; returns the lock held again.
    pub(crate) fn wait<'a, S>(
        &self,
        mut st: MutexGuard<'a, S>,
        queued: impl Fn(&S) -> usize,
    ) -> MutexGuard<'a, S> {
        if !self.must_wait(queued(&st)) {
            return st;
        }
        let cap =
            Duration::from_micros(self.last_flush_us.load(Ordering::Relaxed) / 2).min(GATHER_MAX);
        let deadline = Instant::now() + cap;
        self.waiting.store(true, Ordering::SeqCst);
        while self.must_wait(queued(&st)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = match self.cv.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        self.waiting.store(false, Ordering::SeqCst);
        st
    }
}

impl<S> Drop for Inside<'_, S> {
    fn drop(&mut self) {
        self.gather.inside.fetch_sub(1, Ordering::SeqCst);
        if self.gather.waiting.load(Ordering::SeqCst) {
            // Through the state lock: a leader is then either waiting (and woken below) or yet to read the count.
            drop(self.state.lock().unwrap_or_else(|p| p.into_inner()));
            self.gather.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct St {
        queued: usize,
    }

    #[test]
    fn a_lone_writer_never_waits() {
        let g = Gather::default();
        let m = Mutex::new(St { queued: 0 });
        g.flushed(Duration::from_secs(10));
        let _in = g.enter(&m);
        assert!(
            !g.must_wait(1),
            "its own record is all there is to wait for"
        );
        let second = g.enter(&m);
        assert!(g.must_wait(1), "a second call inside is waited for");
        drop(second);
        assert!(!g.must_wait(1), "one that left is not");
    }

    #[test]
    fn the_leader_waits_for_a_writer_inside_and_is_woken_when_it_queues() {
        let g = Arc::new(Gather::default());
        let m = Arc::new(Mutex::new(St { queued: 0 }));
        // A long last flush: the cap (GATHER_MAX) is what bounds the wait, and the second writer arrives well
        // before it.
        g.flushed(Duration::from_secs(1));
        let _leader = g.enter(&*m);
        let (g2, m2) = (g.clone(), m.clone());
        let entered = Arc::new(std::sync::Barrier::new(2));
        let e2 = entered.clone();
        let other = std::thread::spawn(move || {
            let _in = g2.enter(&*m2);
            e2.wait();
            let mut st = m2.lock().unwrap();
            st.queued += 1;
            g2.queued();
        });
        entered.wait();
        let mut st = m.lock().unwrap();
        st.queued += 1;
        let st = g.wait(st, |s| s.queued);
        // Either the other writer queued before the leader looked, or the leader waited for it: both in the batch.
        assert_eq!(st.queued, 2);
        drop(st);
        other.join().unwrap();
    }

    #[test]
    fn the_wait_ends_at_its_cap_when_a_writer_inside_never_queues() {
        let g = Gather::default();
        let m = Mutex::new(St { queued: 0 });
        g.flushed(Duration::from_micros(400));
        let _leader = g.enter(&m);
        let _idle = g.enter(&m);
        let mut st = m.lock().unwrap();
        st.queued += 1;
        let t0 = Instant::now();
        let st = g.wait(st, |s| s.queued);
        let took = t0.elapsed();
        assert_eq!(st.queued, 1);
        assert!(
            took >= Duration::from_micros(200),
            "left after {took:?}, before half the last flush"
        );
    }
}
