//! Zero-filling the open segment ahead of its end, off the commit path.
//!
//! With one flush for both copies (FORMAT.md, "Zero-filled space past the records") a commit writes only into space
//! whose zeros are durable in both copies. A helper thread kept for the process (one for every store) extends that
//! space before commits need it: when less than half of the zero-ahead distance is left past a commit, the leader
//! asks for more ([`Ahead::request`]) and goes on; the helper writes zeros to both copies one chunk at a time
//! ([`CHUNK_BYTES`]), flushes both, and only then publishes the chunk ([`Ahead::zeroed_end`]). A commit that finds
//! too little published room holds the helper ([`Ahead::hold`], which waits out the chunk in flight) and, if the
//! room is still short, zero-fills inline as it did before the helper existed.
//!
//! Invariants:
//! - the helper writes only at or past the published end, a commit only below it: they never write the same bytes;
//! - a chunk is published only once its zeros are written and flushed in both copies;
//! - whatever changes the segment's files or cuts them (a failed write's undo, a repair, sealing, close, drop) holds
//!   the helper first and resets it ([`Ahead::release`] with a new end): no zero lands in a file after it was cut,
//!   and the helper's descriptors are taken anew on the next request;
//! - a hold waits for at most one chunk; the helper never takes the WAL lock, so a hold under it cannot deadlock.

use std::fs::File;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::io::{self, IoFaults};

/// Zeros the helper writes and flushes per step: what a hold may wait for, and how often it publishes.
pub const CHUNK_BYTES: u64 = 256 << 10;

/// The segment's two copies as the helper writes them: descriptors of its own (new open file descriptions) for the
/// same files, so each flush reports write-back errors to the commit's descriptors too.
pub struct Copies {
    pub main: File,
    pub mirror: File,
    pub faults: Arc<IoFaults>,
}

/// One open segment's zero-fill-ahead state, shared with the helper thread.
#[derive(Debug)]
pub struct Ahead {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    st: Mutex<St>,
    cv: Condvar,
}

#[derive(Default)]
struct St {
    /// Zeros durable in both copies end here (`>=` the segment's durable end).
    zeroed_end: u64,
    /// The helper fills up to here.
    target: u64,
    /// What the helper writes to; taken on request, dropped on every reset.
    copies: Option<Arc<Copies>>,
    /// A chunk is being written (past `zeroed_end`).
    busy: bool,
    /// Handed to the helper thread and not yet finished.
    queued: bool,
    /// Holds in force: the helper starts no chunk.
    holds: u32,
    /// A chunk failed: no more requests are taken until a reset.
    failed: bool,
    /// The segment is gone: nothing is ever filled again.
    retired: bool,
}

impl std::fmt::Debug for St {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("St")
            .field("zeroed_end", &self.zeroed_end)
            .field("target", &self.target)
            .field("busy", &self.busy)
            .field("holds", &self.holds)
            .finish_non_exhaustive()
    }
}

impl Ahead {
    /// A segment whose zero-filled space ends at `zeroed_end` (its durable end when nothing is zero-filled).
    pub fn new(zeroed_end: u64) -> Ahead {
        let shared = Arc::new(Shared::default());
        shared.lock().zeroed_end = zeroed_end;
        Ahead { shared }
    }

    /// Where the zeros durable in both copies end now.
    pub fn zeroed_end(&self) -> u64 {
        self.shared.lock().zeroed_end
    }

    /// Stops the helper from starting another chunk and waits for the one in flight; returns the published end.
    /// Pair with [`Ahead::release`].
    pub fn hold(&self) -> u64 {
        let mut st = self.shared.lock();
        st.holds += 1;
        while st.busy {
            st = self.shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.zeroed_end
    }

    /// Ends a hold. `reset`: the copies were cut or replaced and their zero-filled space now ends there: nothing
    /// past it counts, the helper's descriptors are dropped and its target cleared.
    pub fn release(&self, reset: Option<u64>) {
        let mut st = self.shared.lock();
        st.holds = st.holds.saturating_sub(1);
        if let Some(end) = reset {
            st.zeroed_end = end;
            st.target = end;
            st.copies = None;
            st.failed = false;
        }
    }

    /// A commit zero-filled inline (under a hold) up to `end`.
    pub fn filled_inline(&self, end: u64) {
        let mut st = self.shared.lock();
        st.zeroed_end = st.zeroed_end.max(end);
    }

    /// Asks the helper to zero-fill up to `to` (rounded up to 4 KiB), with descriptors from `copies` if it has none.
    /// Returns at once; does nothing while held, after a failed chunk (until a reset) or once retired.
    pub fn request(&self, to: u64, copies: impl FnOnce() -> Option<Copies>) {
        let to = to.div_ceil(4096) * 4096;
        let mut st = self.shared.lock();
        if st.retired || st.failed || st.holds > 0 || to <= st.zeroed_end {
            return;
        }
        if st.copies.is_none() {
            st.copies = copies().map(Arc::new);
        }
        if st.copies.is_none() {
            return;
        }
        st.target = st.target.max(to);
        if !st.queued && helper::submit(self.shared.clone()) {
            st.queued = true;
        }
    }
}

impl Drop for Ahead {
    /// The segment is gone (sealed, replaced, closed): the helper stops before writing to its files again.
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.retired = true;
        while st.busy {
            st = self.shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.copies = None;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The helper's work for this segment: chunk after chunk until the target, a hold, a failure or retirement.
    fn run(&self) {
        loop {
            let (copies, from, to) = {
                let mut st = self.lock();
                let copies = st.copies.clone();
                let stop = st.retired || st.failed || st.holds > 0 || st.zeroed_end >= st.target;
                match copies {
                    Some(c) if !stop => {
                        st.busy = true;
                        let from = st.zeroed_end;
                        (c, from, st.target.min(from + CHUNK_BYTES))
                    }
                    _ => {
                        st.queued = false;
                        return;
                    }
                }
            };
            let filled = fill(&copies, from, to);
            drop(copies);
            let mut st = self.lock();
            st.busy = false;
            match filled {
                // Nothing but the helper moves the end while it is busy (holds wait for it first).
                Ok(()) => st.zeroed_end = to,
                Err(_) => st.failed = true,
            }
            self.cv.notify_all();
        }
    }
}

/// Writes zeros to `from..to` of both copies and flushes both (two flushes: sizes change).
fn fill(c: &Copies, from: u64, to: u64) -> std::io::Result<()> {
    write_zeros(&c.faults, &c.main, &c.mirror, from, to)
}

/// Writes zeros to `from..to` of `main` and `mirror`, at most 1 MiB a write, and flushes both: the helper's chunk
/// and a commit's inline fill alike.
pub(crate) fn write_zeros(
    faults: &IoFaults,
    main: &File,
    mirror: &File,
    from: u64,
    to: u64,
) -> std::io::Result<()> {
    const WRITE_BYTES_MAX: u64 = 1 << 20;
    let zeros = vec![0u8; WRITE_BYTES_MAX.min(to.saturating_sub(from)) as usize];
    for f in [main, mirror] {
        let mut at = from;
        while at < to {
            let n = (to - at).min(zeros.len() as u64) as usize;
            io::write_all_at(faults, f, &zeros[..n], at)?;
            at += n as u64;
        }
    }
    io::sync_data_both(faults, main, mirror)
}

/// The helper thread: one for the process, started on the first request, running one segment's fill at a time.
mod helper {
    use super::*;

    static QUEUE: Mutex<Option<Sender<Arc<Shared>>>> = Mutex::new(None);

    /// Hands `s` to the helper; false when there is none (no thread could be started): commits then fill inline.
    pub(super) fn submit(s: Arc<Shared>) -> bool {
        let mut q = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_none() {
            let (tx, rx) = channel::<Arc<Shared>>();
            let started = std::thread::Builder::new()
                .name("medic-zero-fill".into())
                .spawn(move || {
                    while let Ok(s) = rx.recv() {
                        s.run();
                    }
                });
            if started.is_err() {
                return false;
            }
            *q = Some(tx);
        }
        q.as_ref().is_some_and(|tx| tx.send(s).is_ok())
    }
}
