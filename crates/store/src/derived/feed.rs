//! The change feed: what the commit leader hands to the derived-data driver after a batch is durable.
//!
//! Bounded by records ([`FEED_RECORDS_MAX`]). Publishing never blocks and never fails: a batch that does not fit is
//! dropped whole and the feed is marked *behind*; the driver then catches every index up from the log (the dropped
//! records are durable there before they are published). Documents travel encoded (the table's own bytes, shared,
//! not copied); the driver decodes them off the write path.
//!
//! Lock order: the feed's mutex is a leaf (the commit leader takes it while holding the store's state lock).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Records the feed holds at most; a batch that would exceed it is dropped and the feed marked behind.
pub const FEED_RECORDS_MAX: usize = 65_536;

/// One durable record as the commit leader publishes it.
#[derive(Clone, Debug)]
pub struct FeedItem {
    /// The record's LSN.
    pub lsn: u64,
    /// The document id.
    pub id: Arc<str>,
    /// The encoded document (the table entry's bytes); `None` for a delete.
    pub doc: Option<Arc<[u8]>>,
}

/// The bounded feed between the commit leader and the driver. See the module doc.
#[derive(Debug)]
pub struct Feed {
    queue: Mutex<VecDeque<FeedItem>>,
    ready: Condvar,
    capacity: usize,
    /// Set when a batch was dropped; the driver swaps it back and catches up from the log.
    behind: AtomicBool,
    /// Whether anyone consumes the feed (an index is attached); publishing is skipped otherwise.
    active: AtomicBool,
    /// The last durable LSN published (or told) by the commit leader: the log's head, for status and lag.
    log_lsn: AtomicU64,
    /// Batches dropped because the feed was full, since open.
    dropped_batches: AtomicU64,
    /// Set when the driver is asked to stop; wakes a waiting consumer.
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Feed {
    /// An empty, inactive feed holding at most `capacity` records.
    pub fn new(capacity: usize) -> Feed {
        Feed {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            behind: AtomicBool::new(false),
            active: AtomicBool::new(false),
            log_lsn: AtomicU64::new(0),
            dropped_batches: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether a consumer is attached.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub(crate) fn activate(&self) {
        self.active.store(true, Ordering::Release);
    }

    /// Records that the log is durable up to `lsn` (the commit leader, after every successful batch).
    pub fn note_log_lsn(&self, lsn: u64) {
        self.log_lsn.fetch_max(lsn, Ordering::AcqRel);
    }

    /// The log's head as last told.
    pub fn log_lsn(&self) -> u64 {
        self.log_lsn.load(Ordering::Acquire)
    }

    /// Hands a durable batch to the consumer. Never blocks (beyond a short leaf lock) and never fails: a batch that
    /// does not fit is dropped whole and the feed marked behind.
    pub fn publish(&self, items: impl ExactSizeIterator<Item = FeedItem>) {
        if !self.active() || items.len() == 0 {
            return;
        }
        let mut q = lock(&self.queue);
        if q.len() + items.len() > self.capacity {
            drop(q);
            self.behind.store(true, Ordering::Release);
            self.dropped_batches.fetch_add(1, Ordering::Relaxed);
            self.ready.notify_one();
            return;
        }
        q.extend(items);
        drop(q);
        self.ready.notify_one();
    }

    /// Takes up to `max` records in LSN order, waiting up to `wait` for the first one (or a stop, or the behind
    /// mark).
    pub fn take(&self, max: usize, wait: Duration) -> Vec<FeedItem> {
        let mut q = lock(&self.queue);
        if q.is_empty() && !self.stopping() && !self.behind.load(Ordering::Acquire) {
            q = self
                .ready
                .wait_timeout(q, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Swaps the behind mark back: `true` when a batch was dropped since the last call.
    pub fn take_behind(&self) -> bool {
        self.behind.swap(false, Ordering::AcqRel)
    }

    /// Batches dropped since open.
    pub fn dropped_batches(&self) -> u64 {
        self.dropped_batches.load(Ordering::Relaxed)
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _q = lock(&self.queue);
        self.ready.notify_all();
    }

    /// Wakes the consumer without publishing (a state change it should act on).
    pub(crate) fn request_wake(&self) {
        let _q = lock(&self.queue);
        self.ready.notify_all();
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(lsn: u64) -> FeedItem {
        FeedItem {
            lsn,
            id: format!("d{lsn}").into(),
            doc: None,
        }
    }

    #[test]
    fn an_inactive_feed_keeps_nothing() {
        let f = Feed::new(4);
        f.publish([item(1)].into_iter());
        assert!(f.is_empty());
    }

    #[test]
    fn a_full_feed_drops_the_batch_and_marks_behind() {
        let f = Feed::new(3);
        f.activate();
        f.publish([item(1), item(2)].into_iter());
        f.publish([item(3), item(4)].into_iter());
        assert_eq!(f.len(), 2);
        assert!(f.take_behind());
        assert!(!f.take_behind());
        assert_eq!(f.dropped_batches(), 1);
        let got: Vec<u64> = f
            .take(10, Duration::from_millis(1))
            .iter()
            .map(|i| i.lsn)
            .collect();
        assert_eq!(got, vec![1, 2]);
    }
}
