//! Group commit: the queue of records waiting for the log, and the leader/follower protocol that makes them durable.
//!
//! A writer encodes its record into the shared pending buffer ([`Queue`], inside the store's state, under its lock);
//! the first writer that finds no leader becomes one ([`GroupCommit::commit`]), writes and flushes everything pending
//! in one go (main copy and mirror, [`write_batch`]), applies the batch to the table, and wakes everyone whose record
//! it carried. A write returns only after its record is durable. Before it takes the batch a new leader waits briefly
//! for writers already inside a write call ([`crate::gather`]), so concurrent writers share flushes. Rotation and
//! compaction run inside the leader role, so no batch is in flight while they do.
//!
//! The module takes what it needs of the store through [`Host`]: its state and WAL locks, its settings, and the
//! layout steps (fence, relink, rotation, compaction) that belong to the store. Lock order: wal → state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use heal::{Issue, IssueKind, Location};

use crate::codec;
use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::gather::Gather;
use crate::io;
use crate::issues::Code;
use crate::read_only::{DiskSpace, ReadOnly};
use crate::store::{Entry, State, WalState, issue, writer_doubt_issue};
use crate::wal::{self, AppendError};

/// One record queued for the log, applied to the table once durable.
pub(crate) struct Op {
    pub(crate) lsn: u64,
    /// The table key.
    pub(crate) id: String,
    /// The document (`None`: a delete).
    pub(crate) entry: Option<Entry>,
}

/// Why a commit failed, kept cloneable for every waiter of a batch.
#[derive(Clone, Debug)]
pub(crate) enum Fail {
    /// Out of space: the store goes read-only until space returns.
    NoSpace(DiskSpace),
    Poisoned(String),
    Io(String),
    /// This process cannot prove it is the only writer: nothing was written.
    NotSoleWriter(crate::lock::WriterDoubt),
}

impl Fail {
    pub(crate) fn into_error(self) -> StoreError {
        match self {
            Fail::NoSpace(d) => StoreError::ReadOnly(ReadOnly::DiskSpace(d)),
            Fail::Poisoned(m) => StoreError::Poisoned(m),
            Fail::Io(m) => StoreError::io("committing to the WAL", std::io::Error::other(m)),
            Fail::NotSoleWriter(d) => StoreError::NotSoleWriter(d),
        }
    }
}

/// Records waiting for the next group commit, and the results of the last ones. Part of the store's state (under
/// its lock).
#[derive(Default)]
pub(crate) struct Queue {
    /// The encoded records of `ops`, in order.
    pending: Vec<u8>,
    ops: Vec<Op>,
    /// The batch being written and flushed (taken from `ops` by the leader, applied or refused when its flush
    /// returns). Still visible to [`Queue::latest`]: a write queued meanwhile is validated against it (a collection's
    /// settings, the dimension its first vector fixed), so when it fails the records queued behind it are refused too.
    in_flight: Vec<Op>,
    /// Write calls whose records are in `pending` (one per call, however many records): what a new leader's
    /// [`Gather`] wait compares with the calls inside.
    calls: usize,
    /// Someone holds the leader role (a commit, rotation, compaction or repair is in flight).
    pub(crate) leader: bool,
    results: HashMap<u64, Result<(), Fail>>,
}

impl Queue {
    /// Queues a record: a put (`entry` holds the encoded document) or a delete (`None`).
    pub(crate) fn push(&mut self, lsn: u64, id: String, entry: Option<Entry>) {
        match &entry {
            Some(e) => {
                codec::encode_record(lsn, codec::KIND_PUT, &id, e.bytes(), &mut self.pending)
            }
            None => codec::encode_record(lsn, codec::KIND_DELETE, &id, &[], &mut self.pending),
        }
        self.ops.push(Op { lsn, id, entry });
    }

    /// The last queued or in-flight record for `id`, if any.
    pub(crate) fn latest(&self, id: &str) -> Option<&Op> {
        (self.ops.iter().rev())
            .chain(self.in_flight.iter().rev())
            .find(|o| o.id == id)
    }

    /// Nothing queued and no leader: no commit in flight.
    pub(crate) fn idle(&self) -> bool {
        !self.leader && self.ops.is_empty()
    }

    /// Drops the results of `lsns` (the records of a multi-record call other than the one it waited for: they went
    /// out in the same commit).
    pub(crate) fn forget(&mut self, lsns: &[u64]) {
        for l in lsns {
            self.results.remove(l);
        }
    }
}

/// What group commit needs of the store.
pub(crate) trait Host {
    fn state(&self) -> &Mutex<State>;
    fn wal(&self) -> &Mutex<WalState>;
    fn config(&self) -> &StoreConfig;
    /// Proves this process is still the only writer ([`crate::store::Store`]'s fence).
    fn fence(&self) -> Result<(), StoreError>;
    /// Makes sure the open segment and its mirror are still the files at their paths (compacting if not).
    fn relink(&self, w: &mut WalState) -> Result<(), StoreError>;
    /// Seals the open segment before a batch starting at `first_lsn` that would overflow it.
    fn rotate_for_batch(&self, w: &mut WalState, first_lsn: u64) -> Result<(), Fail>;
    /// How far past a commit to zero-fill the open segment when it needs room.
    fn zero_ahead_bytes(&self) -> u64;
    /// After a durable batch, still in the leader role: compaction when the log has outgrown its bound.
    fn after_batch(&self);
    /// Hands a durable batch to the derived indexes.
    fn publish(&self, ops: &[Op]);
    /// Queues an issue for the engine.
    fn report(&self, i: Issue);
}

/// The leader role and the waits for it: one per store, beside its state mutex.
pub(crate) struct GroupCommit {
    cond: Condvar,
    /// The write calls inside, and a new leader's wait for them.
    pub(crate) gather: Gather,
    /// A commit's write and fdatasync of the open segment and its mirror: the data directory's disk latency.
    wal_sync_op: Arc<heal::observe::OpStats>,
    /// Group commits (one flush round each) since open.
    pub(crate) commits: AtomicU64,
    /// Records written by those commits.
    pub(crate) records_committed: AtomicU64,
    /// Commits that zero-filled the open segment themselves (the zero-fill helper was behind or not asked yet).
    pub(crate) zero_fills_inline: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCommit {
    pub(crate) fn new(wal_sync_op: Arc<heal::observe::OpStats>) -> GroupCommit {
        GroupCommit {
            cond: Condvar::new(),
            gather: Gather::default(),
            wal_sync_op,
            commits: AtomicU64::new(0),
            records_committed: AtomicU64::new(0),
            zero_fills_inline: AtomicU64::new(0),
        }
    }

    /// Waits (releasing the lock) until `until` holds of the state; re-checked whenever the leader role changes.
    pub(crate) fn wait_until<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        until: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        while !until(&st) {
            st = self.cond.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st
    }

    /// Waits for the leader role to be free (returns the lock held; the caller takes the role by setting
    /// `queue.leader`).
    pub(crate) fn wait_for_role<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.wait_until(st, |s| !s.queue.leader)
    }

    /// Hands the leader role back and wakes everyone waiting for it or for a result.
    pub(crate) fn release_role(&self, st: &mut State) {
        st.queue.leader = false;
        self.cond.notify_all();
    }

    /// Waits until record `lsn` is durable, leading a group commit when no one else is.
    /// The caller queued its records in `st.queue` under this same lock, inside a [`Gather::enter`] call.
    pub(crate) fn commit<'a>(
        &self,
        host: &'a impl Host,
        mut st: MutexGuard<'a, State>,
        lsn: u64,
    ) -> Result<u64, StoreError> {
        st.queue.calls += 1;
        self.gather.queued();
        loop {
            if let Some(r) = st.queue.results.remove(&lsn) {
                return r.map(|()| lsn).map_err(Fail::into_error);
            }
            if !st.queue.leader && !st.queue.ops.is_empty() {
                st = self.lead(host, st);
                continue;
            }
            st = self.cond.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Leads one group commit: gathers the writers already inside a call, writes and flushes everything pending
    /// without the state lock, then applies the batch (or records why it failed) for every waiter, compacts when the
    /// log has grown past its bound, and hands the role back.
    fn lead<'a>(
        &self,
        host: &'a impl Host,
        mut st: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        st.queue.leader = true;
        // Writers already inside a call join this batch rather than wait a whole flush for the next.
        st = self.gather.wait(st, |s| s.queue.calls);
        st.queue.calls = 0;
        let buf = std::mem::take(&mut st.queue.pending);
        let ops = std::mem::take(&mut st.queue.ops);
        let first = ops.first().map_or(0, |o| o.lsn);
        let last = ops.last().map_or(0, |o| o.lsn);
        st.queue.in_flight = ops;
        drop(st);
        let res = self.write_batch(host, &buf, first, last);
        // Before the state lock: the wal lock is never taken while holding it (wal → state is the order).
        let seg_id = lock(host.wal()).seg.id;
        let ok = res.is_ok();
        st = lock(host.state());
        let ops = std::mem::take(&mut st.queue.in_flight);
        match res {
            Ok(()) => self.applied(host, &mut st, ops),
            Err(f) => {
                refused(host, &mut st, ops, f.clone(), seg_id);
                refuse_queued(&mut st, &f);
            }
        }
        if ok && st.poisoned.is_none() {
            drop(st);
            host.after_batch();
            st = lock(host.state());
        }
        self.release_role(&mut st);
        st
    }

    /// A durable batch: handed to the derived indexes, applied to the table, each waiter's result `Ok`.
    fn applied(&self, host: &impl Host, st: &mut State, ops: Vec<Op>) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.records_committed
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        // Durable: hand the batch to the derived indexes (never blocks, never fails).
        host.publish(&ops);
        for op in ops {
            st.durable_lsn = op.lsn;
            st.queue.results.insert(op.lsn, Ok(()));
            match op.entry {
                Some(e) => st.docs.insert(op.id, e),
                None => st.docs.remove(&op.id),
            };
        }
    }

    /// Writes one batch of records to the log, as named steps under the WAL lock: prove this process is still the
    /// only writer, make sure the open segment is still the file at its path, rotate when the batch would overflow
    /// it or the segment has no batch marks, then append and flush.
    fn write_batch(
        &self,
        host: &impl Host,
        buf: &[u8],
        first_lsn: u64,
        last_lsn: u64,
    ) -> Result<(), Fail> {
        let mut w = lock(host.wal());
        host.fence().map_err(|e| match e {
            StoreError::NotSoleWriter(d) => Fail::NotSoleWriter(d),
            other => Fail::Io(other.to_string()),
        })?;
        let floor = host.config().disk_critical_bytes_floor;
        host.relink(&mut w).map_err(|e| layout_fail(e, floor))?;
        // A segment written before batch marks is sealed before its next batch: a power loss can tear a batch into
        // zero-filled space with a later page durable, which only marks tell from damage (FORMAT.md).
        if !w.seg.batch_marks
            || (w.seg.len > wal::HEADER_BYTES
                && w.seg.len + buf.len() as u64 > host.config().segment_bytes_max)
        {
            host.rotate_for_batch(&mut w, first_lsn)?;
        }
        self.append_batch(host, &mut w, buf, first_lsn, last_lsn)
    }

    /// Appends the batch to the open segment (and its mirror) and flushes, timing it for `wal_sync` and the
    /// gathering of the next batch. A failed write is cut back off the tail (if that fails too, the store is
    /// poisoned); a failed flush poisons the store.
    fn append_batch(
        &self,
        host: &impl Host,
        w: &mut WalState,
        buf: &[u8],
        first_lsn: u64,
        last_lsn: u64,
    ) -> Result<(), Fail> {
        let faults = &*host.config().io;
        let t0 = std::time::Instant::now();
        let appended = w
            .seg
            .append(&host.config().io, buf, || host.zero_ahead_bytes());
        self.wal_sync_op.record(t0.elapsed(), appended.is_ok());
        self.gather.flushed(t0.elapsed());
        match appended {
            Ok(a) => {
                if a.filled_inline {
                    self.zero_fills_inline.fetch_add(1, Ordering::Relaxed);
                }
                // The batch's identity frame covers from one above the last durable LSN (a failed batch before it
                // was cut from the log: its LSNs hold no record).
                let from = (w.last_lsn + 1).max(w.seg.first_lsn).min(first_lsn);
                w.seg.append_ids(faults, from, last_lsn, buf);
                w.last_lsn = w.last_lsn.max(last_lsn);
                Ok(())
            }
            Err(AppendError::Write(e)) => {
                if let Err(u) = w.seg.undo(faults) {
                    return Err(Fail::Poisoned(format!(
                        "write failed ({e}) and cutting the tail back failed ({u})"
                    )));
                }
                if io::is_no_space(&e) {
                    Err(Fail::NoSpace(DiskSpace::refused(
                        format!("writing the WAL failed: {e}"),
                        host.config().disk_critical_bytes_floor,
                    )))
                } else {
                    Err(Fail::Io(format!(
                        "writing {}: {e}",
                        wal::seg_name(w.seg.id)
                    )))
                }
            }
            Err(AppendError::Sync(e)) => Err(Fail::Poisoned(format!(
                "fsync of {} failed: {e}",
                wal::seg_name(w.seg.id)
            ))),
        }
    }
}

/// A failure while changing the layout, as a commit failure: out of space turns read-only (below `floor_bytes`), a
/// poisoning stays one, anything else fails the batch.
pub(crate) fn layout_fail(e: StoreError, floor_bytes: u64) -> Fail {
    match e {
        StoreError::Io { source, context } if io::is_no_space(&source) => Fail::NoSpace(
            DiskSpace::refused(format!("{context}: {source}"), floor_bytes),
        ),
        StoreError::Poisoned(m) => Fail::Poisoned(m),
        other => Fail::Io(other.to_string()),
    }
}

/// A batch that failed: the cause becomes the store's state (poisoned, out of space) and an issue; every waiter
/// gets the failure.
fn refused(host: &impl Host, st: &mut State, ops: Vec<Op>, f: Fail, seg_id: u64) {
    let first = ops.first().map_or(0, |o| o.lsn);
    let last = ops.last().map_or(0, |o| o.lsn);
    let at = Location {
        file: Some(wal::seg_name(seg_id)),
        lsn_range: Some((first, last)),
        ..Location::default()
    };
    let n = ops.len().to_string();
    let i = match &f {
        Fail::Poisoned(m) => {
            st.poisoned = Some(m.clone());
            let i = issue(
                IssueKind::OperationError,
                Code::StorePoisoned,
                "wal",
                m.clone(),
                "store.commit",
            );
            i.at(at).evidence("records_refused", n)
        }
        Fail::NoSpace(d) => {
            st.low_space = Some(d.clone());
            let i = issue(
                IssueKind::Resource,
                Code::DiskSpaceCritical,
                "disk",
                d.to_string(),
                "store.commit",
            );
            i.at(at).evidence("records_refused", n)
        }
        Fail::Io(m) => issue(
            IssueKind::OperationError,
            Code::WalWriteFailed,
            "wal",
            m.clone(),
            "store.commit",
        )
        .at(at),
        Fail::NotSoleWriter(d) => writer_doubt_issue(d, "store.commit"),
    };
    host.report(i);
    for op in ops {
        st.queue.results.insert(op.lsn, Err(f.clone()));
    }
}

/// Refuses, with a failed batch's reason, every record queued while it was in flight: each may have been validated
/// against it (a collection it created, the dimension it fixed), so none may become durable without it.
fn refuse_queued(st: &mut State, f: &Fail) {
    st.queue.pending.clear();
    st.queue.calls = 0;
    for op in std::mem::take(&mut st.queue.ops) {
        st.queue.results.insert(op.lsn, Err(f.clone()));
    }
}
