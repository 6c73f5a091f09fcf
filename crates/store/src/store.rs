//! [`Store`]: the document table in memory, made durable by the WAL, snapshots and the manifest; opening, recovery,
//! rotation, compaction, and the verify/repair operations the health checks and repair strategies use. Writes queue
//! their records and wait for group commit ([`crate::commit`]), which calls back into the store (as its
//! [`Host`](crate::commit::Host)) for the layout steps: fence, relink, rotation, compaction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use heal::{Issue, IssueKind, Location};
use serde::{Deserialize, Serialize};

use crate::codec::{self, Document, KIND_PUT};
use crate::collection::{self, CollectionInfo, CollectionState, Created, Stored};
use crate::commit::{Fail, Op};
use crate::compaction;
use crate::config::StoreConfig;
use crate::derived::{DerivedIndex, DerivedSet, FeedItem, LogCover, Truth};
use crate::error::{StoreError, loc};
use crate::identity;
use crate::io;
use crate::lock::{DirLock, now_us};
use crate::manifest::{self, Manifest};
use crate::parity::{self, ParityParams};
use crate::read_only::{DiskSpace, ReadOnly};
use crate::repair;

use crate::issues::Code;
pub use crate::layout::{
    CopyState, DataFile, FileKind, FileVerdict, ImmutableFile, snap_name, snap_par_name,
};
pub(crate) use crate::layout::{SNAP_DIR, SNAP_ID_BIT};
pub use crate::loss::{LossAcceptance, LostRange};
pub use crate::recovery::holds_a_store;
use crate::recovery::salvage::load_immutable;
use crate::snapshot;
use crate::wal::{self, OpenSegment};

/// A damaged stretch of the open segment found by [`Store::verify_open_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDamage {
    /// The damaged copy: the segment (`wal/<id>.seg`) or its mirror (`wal/<id>.mir`).
    pub file: String,
    /// Offset of the first damaged byte's record (0 with `len` 32: the header).
    pub offset: u64,
    /// Bytes of the damaged record(s): one record when the twin copy holds it, else up to the next record that
    /// verifies in either copy (or the durable end).
    pub len: u64,
    /// Whether `file` is the main copy.
    pub main: bool,
    /// Damaged in every copy (both, or the only one without a mirror): no copy can rebuild it.
    pub both: bool,
    /// LSNs of the damaged record(s), inclusive; `None` for the header.
    pub lsn_range: Option<(u64, u64)>,
}

/// One document in memory: its encoding and a checksum verified on every read.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    lsn: u64,
    bytes: Arc<[u8]>,
    crc: u32,
}

impl Entry {
    pub(crate) fn new(lsn: u64, bytes: Vec<u8>) -> Entry {
        let crc = crc32c::crc32c(&bytes);
        Entry {
            lsn,
            bytes: bytes.into(),
            crc,
        }
    }
    fn verified(&self) -> bool {
        crc32c::crc32c(&self.bytes) == self.crc
    }
    /// The encoded document.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

pub(crate) struct State {
    pub(crate) docs: crate::table::Table<Entry>,
    next_lsn: u64,
    pub(crate) durable_lsn: u64,
    /// Records waiting for the next group commit, and the leader role ([`crate::commit`]).
    pub(crate) queue: crate::commit::Queue,
    pub(crate) poisoned: Option<String>,
    /// Set while writes are refused for lack of space: the one read-only state free space lifts, cleared
    /// automatically when space returns. Losses (`lost`) and poisoning are kept apart.
    pub(crate) low_space: Option<DiskSpace>,
    vector_dim: Option<u32>,
    space_checked_us: u64,
    disk_free_bytes: Option<u64>,
    /// Acknowledged records lost beyond redundancy, found on open and not yet accepted. Kept apart from
    /// `low_space`, which free space lifts.
    lost: Vec<LostRange>,
    /// While `lost` is not empty: ids whose surviving last record is a delete, with its LSN (a delete after every
    /// lost range is certainly current).
    tombstones: HashMap<String, u64>,
    /// Losses accepted since open.
    losses_accepted: Vec<LostRange>,
    /// Set while the engine holds writes for a CRISIS ([`Store::set_crisis`]); only the engine lifts it.
    crisis: Option<String>,
}

pub(crate) struct WalState {
    pub(crate) seg: OpenSegment,
    pub(crate) manifest: Manifest,
    pub(crate) sealed_bytes: u64,
    /// LSN of the last record durable in the WAL (changed together with `seg.len`, so a check that captures both
    /// knows the LSN of the last record below the captured length).
    pub(crate) last_lsn: u64,
}

/// Counters for stats and samples.
#[derive(Default, Debug)]
struct Counters {
    puts: AtomicU64,
    deletes: AtomicU64,
    compactions: AtomicU64,
    rotations: AtomicU64,
    issues_dropped: AtomicU64,
    read_repairs: AtomicU64,
    put_latency_us_last: AtomicU64,
}

/// Ids under this prefix belong to medic itself (the synthetic probe's document): [`Store::scan`] never lists them, so
/// no listing or search shows them, and the HTTP API refuses them to clients.
pub const RESERVED_ID_PREFIX: &str = ".medic/";

/// Documents deleted per commit while a collection is dropped.
pub const DROP_BATCH_DOCS: usize = 1_000;

/// What a store looks like now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Documents stored, in every collection (medic's own — collection settings, the probe's — not counted).
    pub docs: usize,
    /// The latest durable LSN.
    pub last_lsn: u64,
    /// Bytes in all WAL segments.
    pub wal_bytes: u64,
    /// WAL segments (sealed and open).
    pub segments: usize,
    /// The snapshot's LSN, if any.
    pub snapshot_lsn: Option<u64>,
    /// Manifest generation.
    pub manifest_generation: u64,
    /// Why writes are refused, if they are.
    pub read_only: Option<String>,
    /// The cause of `read_only`, stable for machines: `disk_space` (lifts when space returns), `lost` (until the
    /// file is restored or the loss accepted), `crisis` (the engine holds writes), `writer_doubt`, `opened` (opened
    /// to read only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_cause: Option<String>,
    /// Why the store stopped writing for good, if it did.
    pub poisoned: Option<String>,
    /// The vector dimension, once fixed.
    pub vector_dim: Option<u32>,
    /// Free bytes for the store: the smaller of the disk's and the fault quota's.
    pub disk_free_bytes: Option<u64>,
    /// Puts acknowledged since open.
    pub puts: u64,
    /// Deletes acknowledged since open.
    pub deletes: u64,
    /// Group commits (one fsync round each) since open.
    pub commits: u64,
    /// Records written by those commits.
    pub records_committed: u64,
    /// Commits that zero-filled the open segment themselves, on the commit path (the zero-fill helper was behind,
    /// or not asked yet: the first commit into a new segment).
    #[serde(default)]
    pub zero_fills_inline: u64,
    /// Compactions since open.
    pub compactions: u64,
    /// Segment rotations since open.
    pub rotations: u64,
    /// Issues waiting for the engine.
    pub issues_queued: usize,
    /// Issues dropped because the queue was full.
    pub issues_dropped: u64,
    /// Acknowledged records lost beyond every redundancy and not yet accepted: while any is listed, writes are
    /// refused (`read_only` says why) and reads answer only what is certainly current.
    #[serde(default)]
    pub lost: Vec<LostRange>,
    /// Losses an operator accepted since open ([`Store::accept_loss`]).
    #[serde(default)]
    pub losses_accepted: Vec<LostRange>,
    /// Why this process cannot prove it is the only writer of its data directory, if it cannot: writes are refused
    /// meanwhile (`read_only` says so too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_doubt: Option<crate::lock::WriterDoubt>,
}

/// A torn tail cut off on open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornTail {
    /// The segment file.
    pub file: String,
    /// Where the valid bytes ended.
    pub offset: u64,
    /// Bytes cut.
    pub bytes: u64,
    /// What was wrong at `offset`.
    pub reason: String,
    /// LSNs the torn bytes may carry (inclusive): above the last durable LSN, up to the highest LSN their readable
    /// record headers name (never acknowledged).
    #[serde(default)]
    pub lsn_range: (u64, u64),
}

/// What open found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// A new, empty store was created.
    pub created: bool,
    /// The manifest generation opened.
    pub manifest_generation: u64,
    /// The manifest format version found, when open upgraded it (to [`manifest::VERSION`]).
    pub manifest_upgraded_from: Option<u32>,
    /// Manifest copies that were damaged, missing or behind, and rewritten from the twin.
    pub manifest_copies_restored: Vec<String>,
    /// The snapshot loaded, if any.
    pub snapshot_lsn: Option<u64>,
    /// Documents loaded from it.
    pub snapshot_docs: u64,
    /// Segments replayed.
    pub segments_replayed: u64,
    /// Records replayed from them.
    pub records_replayed: u64,
    /// The last LSN after recovery.
    pub last_lsn: u64,
    /// Torn tail cut off (never acknowledged).
    pub torn_tail: Option<TornTail>,
    /// Blocks rebuilt in memory from parity: `(file, block index)`; the on-disk copy is repaired by the engine.
    pub blocks_rebuilt: Vec<(String, u64)>,
    /// Records the open segment had damaged and its mirror supplied (repaired on disk during open).
    pub records_from_mirror: u64,
    /// The open segment's mirror was rewritten.
    pub mirror_rewritten: bool,
    /// Files no manifest referenced (leftovers of an interrupted rotation or compaction), removed.
    pub orphans_removed: Vec<String>,
    /// The previous holder of the lock did not close cleanly (it crashed or was killed).
    pub previous_holder_crashed: bool,
    /// What the lock file said of the previous holder.
    pub previous_holder: Option<String>,
    /// How long open took, µs.
    pub duration_us: u64,
    /// Issues found (also queued for the engine).
    pub issues: Vec<Issue>,
    /// Acknowledged records lost beyond every redundancy: the store opened degraded (see [`LostRange`]).
    #[serde(default)]
    pub lost: Vec<LostRange>,
}

/// medic's embedded document store. `Send + Sync`; share it as `Arc<Store>`.
pub struct Store {
    dir: PathBuf,
    cfg: StoreConfig,
    record_bytes_max: u64,
    state: Mutex<State>,
    /// Group commit: the leader role, the waits for it and the gathering of a batch ([`crate::commit`]).
    group: crate::commit::GroupCommit,
    wal: Mutex<WalState>,
    issues: Mutex<VecDeque<Issue>>,
    report: RecoveryReport,
    lock: Mutex<Option<DirLock>>,
    counters: Counters,
    /// Per-operation latency histograms (`put`, `get`, `delete`, `scan`); the subject samples a window per cycle.
    metrics: heal::observe::Metrics,
    put_op: Arc<heal::observe::OpStats>,
    get_op: Arc<heal::observe::OpStats>,
    delete_op: Arc<heal::observe::OpStats>,
    /// Blocks the incremental check has verified up to: (segment id, offset) of the open segment.
    pub(crate) incremental_mark: Mutex<(u64, u64, u64)>,
    /// When a write next refreshes LOCK's heartbeat (µs since the epoch); see [`Store::heartbeat_if_due`].
    heartbeat_due_us: AtomicU64,
    /// Why this process cannot prove it is the only writer, if it cannot (a leaf lock: nothing else is taken while
    /// it is held).
    writer_doubt: Mutex<Option<crate::lock::WriterDoubt>>,
    /// When the heartbeat was last confirmed (LOCK names this process and was refreshed), µs after `opened` on the
    /// monotonic clock, which runs on while the process is stopped.
    lock_confirmed_us: AtomicU64,
    /// When the store was opened (the origin of `lock_confirmed_us`).
    opened: std::time::Instant,
    /// A manifest switch could not write MANIFEST-B for lack of a resource (which, here): the next check writes it
    /// again.
    manifest_copy_pending: Mutex<Option<String>>,
    /// Set when the process is stopping: long checks (the full scrub) end early, so a stop stays bounded.
    checks_interrupted: std::sync::atomic::AtomicBool,
    /// The derived indexes attached ([`Store::attach_derived`]) and the feed the commit leader fills.
    derived: crate::derived::DerivedSet,
    /// Opened with [`Store::open_read_only`]: the shared kernel lock held; nothing is ever written.
    read_lock: Option<crate::lock::ReadLock>,
}

/// How often writes refresh LOCK's heartbeat: a sixth of the age at which another host may take a silent holder
/// over, so a store that is written to without the quick check running still shows it is alive.
const HEARTBEAT_EVERY_US: u64 = crate::lock::LOCK_STALE_AFTER_MS * 1_000 / 6;

/// A write (or compaction) goes ahead only if the heartbeat was confirmed within this long, else it confirms it
/// first: half the age at which a process on another host may judge this one gone and take over. So a holder that
/// was stopped (SIGSTOP, a frozen VM) for longer than that re-reads LOCK before its next write, and one that was
/// taken over meanwhile never writes again.
const FENCE_US: u64 = crate::lock::LOCK_STALE_AFTER_MS * 1_000 / 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn ioe(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let c = context.into();
    move |e| StoreError::io(c, e)
}

pub(crate) fn issue(
    kind: IssueKind,
    code: Code,
    resource: &str,
    summary: String,
    source: &str,
) -> Issue {
    Issue::new(kind, code, resource, summary, source, now_us())
}

/// The issue for a store that cannot prove it is the only writer of its directory: `sole_writer_unproven` — an
/// environment issue while only the heartbeat is unconfirmed (it ends by itself), otherwise an integrity issue no
/// strategy repairs (a human checks the other process; a reopen ends it). Writes are refused meanwhile.
pub(crate) fn writer_doubt_issue(d: &crate::lock::WriterDoubt, source: &str) -> Issue {
    let kind = if d.lasts() {
        IssueKind::Integrity
    } else {
        IssueKind::Resource
    };
    issue(
        kind,
        Code::SoleWriterUnproven,
        crate::lock::LOCK_FILE,
        d.to_string(),
        source,
    )
    .at(Location {
        file: Some(crate::lock::LOCK_FILE.into()),
        ..Location::default()
    })
    .evidence("reason", d.code())
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `dir` (creating it if absent), takes its lock and recovers: loads the latest snapshot,
    /// replays the log, cuts a torn tail, rebuilds damaged blocks from parity, restores a damaged manifest copy.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store, StoreError> {
        Self::open_mode(dir.as_ref(), config, false)
    }

    /// Opens the store in `dir` for reading only, changing no byte of it: no directory or file created, no `LOCK`
    /// written (a shared kernel lock on the directory instead, [`crate::lock::ReadLock`]: refused with `Locked` while
    /// a writer holds it), nothing repaired. What [`Store::open`] would repair is reported the same way (the
    /// recovery report's issues, queued for the engine) and left in place; every write, compaction and repair is
    /// refused (`ReadOnly`), and `close` writes nothing. A directory holding no store is `InvalidInput`.
    pub fn open_read_only(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store, StoreError> {
        Self::open_mode(dir.as_ref(), config, true)
    }

    /// Validates `config`, recovers (the steps are [`crate::recovery::recover`]'s) and builds the store from what
    /// recovery found.
    fn open_mode(dir: &Path, config: StoreConfig, read_only: bool) -> Result<Store, StoreError> {
        config.validate()?;
        let crate::recovery::Recovered {
            dir_lock,
            read_lock,
            manifest,
            table,
            seg,
            sealed_bytes,
            record_bytes_max,
            report,
            issues,
        } = crate::recovery::recover(dir, &config, read_only)?;
        let crate::recovery::Rebuilt {
            docs,
            tombstones,
            lost,
            last_lsn,
            vector_dim,
        } = table;
        let dir = dir.to_path_buf();
        let mark = (seg.id, seg.len, sealed_bytes);
        let metrics = heal::observe::Metrics::new(now_us());
        let op = |n: &str| {
            metrics
                .op(n)
                .map_err(|e| StoreError::InvalidInput(format!("metric {n}: {e}")))
        };
        let (put_op, get_op, delete_op) = (op("put")?, op("get")?, op("delete")?);
        let wal_sync_op = op("wal_sync")?;
        let store = Store {
            metrics,
            put_op,
            group: crate::commit::GroupCommit::new(wal_sync_op),
            get_op,
            delete_op,
            dir,
            record_bytes_max,
            state: Mutex::new(State {
                docs: docs.into(),
                next_lsn: last_lsn + 1,
                durable_lsn: last_lsn,
                queue: crate::commit::Queue::default(),
                poisoned: None,
                low_space: None,
                vector_dim,
                space_checked_us: 0,
                disk_free_bytes: None,
                lost,
                tombstones,
                losses_accepted: Vec::new(),
                crisis: None,
            }),
            wal: Mutex::new(WalState {
                seg,
                manifest,
                sealed_bytes,
                last_lsn,
            }),
            issues: Mutex::new(VecDeque::new()),
            report,
            lock: Mutex::new(dir_lock),
            counters: Counters::default(),
            incremental_mark: Mutex::new(mark),
            heartbeat_due_us: AtomicU64::new(now_us().saturating_add(HEARTBEAT_EVERY_US)),
            writer_doubt: Mutex::new(None),
            lock_confirmed_us: AtomicU64::new(0),
            opened: std::time::Instant::now(),
            manifest_copy_pending: Mutex::new(None),
            checks_interrupted: std::sync::atomic::AtomicBool::new(false),
            derived: crate::derived::DerivedSet::with_feed_capacity(
                config.derived_feed_records_max,
            ),
            cfg: config,
            read_lock,
        };
        store.derived.feed().note_log_lsn(lock(&store.wal).last_lsn);
        for i in issues {
            store.queue_issue(i);
        }
        Ok(store)
    }

    /// Whether the store was opened with [`Store::open_read_only`] (every write and repair refused).
    pub fn is_read_only(&self) -> bool {
        self.read_lock.is_some()
    }

    fn refuse_read_only(&self) -> Result<(), StoreError> {
        match self.read_lock {
            Some(_) => Err(StoreError::ReadOnly(ReadOnly::Opened(self.dir.clone()))),
            None => Ok(()),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// What open found and did.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.report.clone()
    }

    /// Stores `doc` under `id`; returns its LSN once the record is durable.
    pub fn put(&self, id: &str, doc: Document) -> Result<u64, StoreError> {
        let t0 = std::time::Instant::now();
        let _inside = self.group.gather.enter(&self.state);
        codec::validate_id(id, &self.cfg.limits)?;
        let mut st = lock(&self.state);
        let meta = codec::validate_doc(&doc, &self.cfg.limits, st.vector_dim)?;
        self.writable(&mut st)?;
        let mut bytes = Vec::new();
        codec::encode_doc(&doc, meta.as_deref(), &mut bytes);
        if let Some(v) = &doc.vector
            && st.vector_dim.is_none()
        {
            st.vector_dim = Some(v.len() as u32);
        }
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        st.queue
            .push(lsn, id.to_owned(), Some(Entry::new(lsn, bytes)));
        let r = self.group.commit(self, st, lsn);
        let us = t0.elapsed().as_micros() as u64;
        self.put_op.record_us(us, r.is_ok());
        if r.is_ok() {
            self.counters.puts.fetch_add(1, Ordering::Relaxed);
            self.counters
                .put_latency_us_last
                .store(us, Ordering::Relaxed);
            self.heartbeat_if_due();
        }
        r
    }

    /// Refreshes LOCK's heartbeat after a write when [`HEARTBEAT_EVERY_US`] has passed since the last refresh by a
    /// write; best effort (the quick check reports a LOCK that no longer names this process).
    fn heartbeat_if_due(&self) {
        let now = now_us();
        let due = self.heartbeat_due_us.load(Ordering::Relaxed);
        if now >= due
            && self
                .heartbeat_due_us
                .compare_exchange(
                    due,
                    now.saturating_add(HEARTBEAT_EVERY_US),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let _ = self.heartbeat();
        }
    }

    /// The store's operation metrics (latency histograms of `put`, `get`, `delete`, `scan`).
    pub fn metrics(&self) -> &heal::observe::Metrics {
        &self.metrics
    }

    /// Stores several documents in one group commit (one fsync round); returns their LSNs once all are durable.
    /// Either every document is validated and written, or (on bad input) none is. A batch whose records exceed
    /// `commit_batch_bytes_max` is refused whole with `TooLarge` (`commit_batch`, the limit and its size).
    pub fn put_batch(&self, docs: Vec<(String, Document)>) -> Result<Vec<u64>, StoreError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let _inside = self.group.gather.enter(&self.state);
        let mut encoded = Vec::with_capacity(docs.len());
        let mut st = lock(&self.state);
        let mut dim = st.vector_dim;
        for (id, doc) in &docs {
            codec::validate_id(id, &self.cfg.limits).map_err(|e| refused_in_batch(id, e))?;
            let meta = codec::validate_doc(doc, &self.cfg.limits, dim)
                .map_err(|e| refused_in_batch(id, e))?;
            if let Some(v) = &doc.vector {
                dim.get_or_insert(v.len() as u32);
            }
            let mut bytes = Vec::new();
            codec::encode_doc(doc, meta.as_deref(), &mut bytes);
            encoded.push(bytes);
        }
        // The batch is one commit: its records on disk (len + crc + fixed fields + id + document) are bounded.
        let batch_bytes: u64 = docs
            .iter()
            .zip(&encoded)
            .map(|((id, _), b)| (8 + codec::RECORD_FIXED_BYTES + id.len() + b.len()) as u64)
            .sum();
        if batch_bytes > self.cfg.commit_batch_bytes_max {
            return Err(StoreError::TooLarge {
                what: "commit_batch",
                limit: self.cfg.commit_batch_bytes_max,
                actual: batch_bytes,
            });
        }
        self.writable(&mut st)?;
        st.vector_dim = dim;
        let mut lsns = Vec::with_capacity(docs.len());
        for ((id, _), bytes) in docs.into_iter().zip(encoded) {
            let lsn = st.next_lsn;
            st.next_lsn += 1;
            st.queue.push(lsn, id, Some(Entry::new(lsn, bytes)));
            lsns.push(lsn);
        }
        let last = *lsns.last().unwrap_or(&0);
        let r = self.group.commit(self, st, last);
        // Every record of the batch went out in the same commit as the last one; collect their results.
        lock(&self.state).queue.forget(&lsns[..lsns.len() - 1]);
        r?;
        self.counters
            .puts
            .fetch_add(lsns.len() as u64, Ordering::Relaxed);
        self.heartbeat_if_due();
        Ok(lsns)
    }

    /// Deletes `id`; `Some(lsn)` once durable if it existed, `None` (nothing written) if not.
    pub fn delete(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let t0 = std::time::Instant::now();
        let r = self.delete_inner(id);
        if matches!(r, Ok(Some(_))) {
            self.heartbeat_if_due();
        }
        self.delete_op.record_us(
            t0.elapsed().as_micros() as u64,
            r.is_ok() || r.as_ref().is_err_and(|e| e.is_user_error()),
        );
        r
    }

    fn delete_inner(&self, id: &str) -> Result<Option<u64>, StoreError> {
        codec::validate_id(id, &self.cfg.limits)?;
        self.delete_key(id)
    }

    /// Deletes a table key (not validated).
    fn delete_key(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let _inside = self.group.gather.enter(&self.state);
        let mut st = lock(&self.state);
        if !st.lost.is_empty() {
            // Whether `id` exists is itself uncertain: refuse like every write.
            return Err(StoreError::ReadOnly(ReadOnly::Lost(st.lost.clone())));
        }
        let pending = st.queue.latest(id).map(|o| o.entry.is_some());
        let exists = pending.unwrap_or_else(|| st.docs.contains_key(id));
        if !exists {
            return Ok(None);
        }
        self.writable(&mut st)?;
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        st.queue.push(lsn, id.to_owned(), None);
        let r = self.group.commit(self, st, lsn).map(Some);
        if r.is_ok() {
            self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// The document stored under `id`, verified against its checksum.
    ///
    /// While the store is degraded (acknowledged records lost beyond redundancy, see [`LostRange`]), only what is
    /// certainly current is answered: a document whose surviving version is newer than every lost record, or an id
    /// whose surviving last record is a delete newer than every lost record (`None`). Anything a lost record may have
    /// updated, deleted or created fails with [`StoreError::MayBeStale`] naming the lost range.
    pub fn get(&self, id: &str) -> Result<Option<Document>, StoreError> {
        codec::validate_id(id, &self.cfg.limits)?;
        self.get_key(id)
    }

    /// [`Store::get`] of a table key (an id, or a collection's namespaced key), not validated.
    fn get_key(&self, id: &str) -> Result<Option<Document>, StoreError> {
        let t0 = std::time::Instant::now();
        let entry = {
            let st = lock(&self.state);
            // A lost record with an LSN above the surviving version may have changed the answer.
            if let Some(l) = Self::loss_touching(&st, id) {
                let e = l.stale(format!("document {id:?}"));
                drop(st);
                self.get_op
                    .record_us(t0.elapsed().as_micros() as u64, false);
                return Err(e);
            }
            st.docs.get(id).cloned()
        };
        let r = entry.map(|e| self.decode_entry(id, &e)).transpose();
        self.get_op
            .record_us(t0.elapsed().as_micros() as u64, r.is_ok());
        r
    }

    /// Whether a lost record (see [`LostRange`]) may have changed document `id` of collection `c`, so that nothing
    /// derived from it (a search hit from an index built before the loss) may be answered. False whenever the store
    /// is not degraded.
    pub fn may_be_stale_in(&self, c: &str, id: &str) -> bool {
        Self::loss_touching(&lock(&self.state), &collection::key(c, id)).is_some()
    }

    /// The first unaccepted loss that may have changed the document under table key `key`: one ending above its
    /// surviving version (its entry's LSN, its delete's, or 0) that names the key or names none.
    fn loss_touching<'s>(st: &'s State, key: &str) -> Option<&'s LostRange> {
        if st.lost.is_empty() {
            return None;
        }
        let version = match st.docs.get(key) {
            Some(e) => e.lsn,
            None => st.tombstones.get(key).copied().unwrap_or(0),
        };
        st.lost.iter().find(|l| l.may_have_changed(key, version))
    }

    /// [`Store::get`] with the LSN of the version answered: the record that wrote it, the `lsn` its put returned.
    /// A client whose write went unanswered compares it with the LSNs it knows. The LSN is read before and after
    /// `get`, and `get` again while they differ (LSNs only grow, so equal readings enclose one version).
    pub fn get_with_lsn(&self, id: &str) -> Result<Option<(Document, u64)>, StoreError> {
        codec::validate_id(id, &self.cfg.limits)?;
        self.get_with_lsn_key(id)
    }

    fn get_with_lsn_key(&self, id: &str) -> Result<Option<(Document, u64)>, StoreError> {
        let lsn_of = || lock(&self.state).docs.get(id).map(|e| e.lsn);
        loop {
            let before = lsn_of();
            let doc = self.get_key(id)?;
            let after = lsn_of();
            if before == after {
                return Ok(doc.zip(after));
            }
        }
    }

    /// Up to `limit` documents in id order, starting after `after`. Ids under [`RESERVED_ID_PREFIX`] are never
    /// listed.
    ///
    /// While the store is degraded by a loss whose documents are unknown, the scan is refused with
    /// [`StoreError::MayBeStale`]: a listing could miss documents a lost record created and show ones it deleted or
    /// updated, and a partial page would pass for a complete one. When every loss names the documents it may have
    /// changed ([`LostRange::ids`]), the scan lists every other document and leaves those out; callers say so
    /// ([`Store::lost`]). `get` answers every document that is certainly current either way.
    pub fn scan(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>, StoreError> {
        self.scan_range(collection::DEFAULT, after, limit)
    }

    /// The scan of one collection's key range; ids un-prefixed.
    fn scan_range(
        &self,
        c: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>, StoreError> {
        use std::ops::Bound;
        let entries: Vec<(String, Entry)> = {
            let st = lock(&self.state);
            // A loss that names no documents could have changed any: the scan is refused. One that names them
            // leaves every other document certain: those it names are left out (see [`Store::lost`]).
            if let Some(l) = st.lost.iter().find(|l| l.ids.is_none()) {
                return Err(l.stale("the scan".into()));
            }
            let (lo, hi) = collection::range(c);
            let lo = match after {
                Some(a) => Bound::Excluded(collection::key(c, a)),
                None => lo,
            };
            st.docs
                .range((lo, hi))
                .filter(|(k, _)| !k.starts_with(RESERVED_ID_PREFIX))
                .filter(|(k, e)| !st.lost.iter().any(|l| l.may_have_changed(k, e.lsn)))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        entries
            .into_iter()
            .map(|(key, e)| {
                let d = self.decode_entry(&key, &e)?;
                Ok((collection::split(&key).1.to_owned(), d))
            })
            .collect()
    }

    /// The current entry under `key`, counting writes queued for the commit in flight.
    fn current_entry(st: &State, key: &str) -> Option<Entry> {
        match st.queue.latest(key) {
            Some(o) => o.entry.clone(),
            None => st.docs.get(key).cloned(),
        }
    }

    /// The settings document of `name`, if any (its state whatever it is).
    fn stored_collection(&self, st: &State, name: &str) -> Result<Option<Stored>, StoreError> {
        let key = collection::settings_key(name);
        let Some(e) = Self::current_entry(st, &key) else {
            return Ok(None);
        };
        let d = self.decode_entry(&key, &e)?;
        Stored::from_meta(d.meta.as_ref()).map(Some).map_err(|why| {
            StoreError::corrupt(
                format!("the settings of the collection {name:?} do not read: {why}"),
                Location {
                    lsn_range: Some((e.lsn, e.lsn)),
                    ..Location::default()
                },
            )
        })
    }

    /// The settings of `name` when it exists and is ready; [`StoreError::UnknownCollection`] otherwise.
    fn ready_collection(&self, st: &State, name: &str) -> Result<Stored, StoreError> {
        match self.stored_collection(st, name)? {
            Some(s) if s.state == CollectionState::Ready => Ok(s),
            Some(_) => Err(StoreError::UnknownCollection(format!(
                "the collection {name:?} is being dropped"
            ))),
            None => Err(StoreError::UnknownCollection(format!(
                "no collection {name:?}: create it with PUT /v1/collections/{name}"
            ))),
        }
    }

    /// A settings document's bytes.
    fn encode_stored(&self, stored: &Stored) -> Result<Vec<u8>, StoreError> {
        let doc = Document {
            text: String::new(),
            vector: None,
            meta: Some(stored.to_meta()),
        };
        let meta = codec::validate_doc(&doc, &self.cfg.limits, None)?;
        let mut bytes = Vec::new();
        codec::encode_doc(&doc, meta.as_deref(), &mut bytes);
        Ok(bytes)
    }

    /// Writes `ops` — `(table key, Some(encoded document))` for a put, `(key, None)` for a delete — as one group
    /// commit, in order; returns their LSNs once all are durable. Bounded by `commit_batch_bytes_max` like
    /// [`Store::put_batch`].
    fn write_ops(
        &self,
        mut st: MutexGuard<'_, State>,
        ops: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<Vec<u64>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let batch_bytes: u64 = ops
            .iter()
            .map(|(k, b)| {
                (8 + codec::RECORD_FIXED_BYTES + k.len() + b.as_ref().map_or(0, Vec::len)) as u64
            })
            .sum();
        if batch_bytes > self.cfg.commit_batch_bytes_max {
            return Err(StoreError::TooLarge {
                what: "commit_batch",
                limit: self.cfg.commit_batch_bytes_max,
                actual: batch_bytes,
            });
        }
        self.writable(&mut st)?;
        let (mut n_puts, mut n_deletes) = (0, 0);
        let mut lsns = Vec::with_capacity(ops.len());
        for (key, bytes) in ops {
            let lsn = st.next_lsn;
            st.next_lsn += 1;
            match &bytes {
                Some(_) => n_puts += 1,
                None => n_deletes += 1,
            }
            st.queue.push(lsn, key, bytes.map(|b| Entry::new(lsn, b)));
            lsns.push(lsn);
        }
        let last = *lsns.last().unwrap_or(&0);
        let r = self.group.commit(self, st, last);
        lock(&self.state).queue.forget(&lsns[..lsns.len() - 1]);
        r?;
        self.counters.puts.fetch_add(n_puts, Ordering::Relaxed);
        self.counters
            .deletes
            .fetch_add(n_deletes, Ordering::Relaxed);
        self.heartbeat_if_due();
        Ok(lsns)
    }

    /// Creates the collection `name` with `settings` (through the log: the settings document
    /// `.medic/collection/<name>`). A collection that exists with settings satisfying the request is
    /// [`Created::Existed`]; with other settings, or being dropped, [`StoreError::CollectionConflict`].
    pub fn create_collection(
        &self,
        name: &str,
        settings: collection::Settings,
    ) -> Result<Created, StoreError> {
        collection::validate_name(name)?;
        if let Some(d) = settings.dimension
            && d > self.cfg.limits.vector_dim_max
        {
            return Err(StoreError::InvalidInput(format!(
                "setting dimension: {d} is over vector_dim_max = {}",
                self.cfg.limits.vector_dim_max
            )));
        }
        let st = lock(&self.state);
        let existing = if name == collection::DEFAULT {
            Some(self.default_stored(&st))
        } else {
            self.stored_collection(&st, name)?
        };
        match existing {
            Some(s) if s.state == CollectionState::Dropping => {
                Err(StoreError::CollectionConflict(format!(
                    "the collection {name:?} is being dropped; create it again once the drop finished"
                )))
            }
            Some(s) if s.settings.satisfies(&settings) => Ok(Created::Existed),
            Some(s) => Err(StoreError::CollectionConflict(format!(
                "the collection {name:?} exists with other settings: {}",
                s.settings.to_json()
            ))),
            None => {
                let bytes = self.encode_stored(&Stored {
                    settings,
                    state: CollectionState::Ready,
                })?;
                let lsns =
                    self.write_ops(st, vec![(collection::settings_key(name), Some(bytes))])?;
                Ok(Created::New { lsn: lsns[0] })
            }
        }
    }

    /// The collection `default` as a settings document would describe it.
    fn default_stored(&self, st: &State) -> Stored {
        Stored {
            settings: collection::Settings {
                dimension: st.vector_dim,
                ..collection::Settings::default()
            },
            state: CollectionState::Ready,
        }
    }

    /// Every collection, `default` first, then by name, with its documents now (one being dropped included, in
    /// state `dropping`).
    pub fn collections(&self) -> Result<Vec<CollectionInfo>, StoreError> {
        let names: Vec<String> = {
            let st = lock(&self.state);
            st.docs
                .range(collection::settings_range())
                .map_while(|(k, _)| collection::settings_name(k).map(str::to_owned))
                .collect()
        };
        let mut out = Vec::with_capacity(names.len() + 1);
        out.extend(self.collection(collection::DEFAULT)?);
        for n in names {
            out.extend(self.collection(&n)?);
        }
        Ok(out)
    }

    /// The collection `name` (`None`: no such collection).
    pub fn collection(&self, name: &str) -> Result<Option<CollectionInfo>, StoreError> {
        let st = lock(&self.state);
        let stored = if name == collection::DEFAULT {
            self.default_stored(&st)
        } else {
            match self.stored_collection(&st, name)? {
                Some(s) => s,
                None => return Ok(None),
            }
        };
        let documents = Self::count_locked(&st, name) as u64;
        Ok(Some(CollectionInfo {
            name: name.to_owned(),
            settings: stored.settings,
            state: stored.state,
            documents,
        }))
    }

    /// Documents of `collection` (medic's own left out).
    pub fn count_in(&self, collection: &str) -> usize {
        Self::count_locked(&lock(&self.state), collection)
    }

    fn count_locked(st: &State, c: &str) -> usize {
        st.docs.count_in(c)
    }

    /// Stores `doc` under `id` in `collection`; returns its LSN once durable. The collection's first vector fixes
    /// its dimension when its settings left it open (the settings document rewritten in the same commit, before
    /// the document).
    pub fn put_in(&self, collection: &str, id: &str, doc: Document) -> Result<u64, StoreError> {
        if collection == collection::DEFAULT {
            return self.put(id, doc);
        }
        let lsns = self.put_batch_in(collection, vec![(id.to_owned(), doc)])?;
        Ok(*lsns.last().unwrap_or(&0))
    }

    /// [`Store::put_batch`] into `collection`: returns the documents' LSNs (a settings rewrite fixing the
    /// dimension is not among them).
    pub fn put_batch_in(
        &self,
        c: &str,
        docs: Vec<(String, Document)>,
    ) -> Result<Vec<u64>, StoreError> {
        if c == collection::DEFAULT {
            return self.put_batch(docs);
        }
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let _inside = self.group.gather.enter(&self.state);
        let st = lock(&self.state);
        let mut stored = self.ready_collection(&st, c)?;
        let open_dim = stored.settings.dimension.is_none();
        let mut ops = Vec::with_capacity(docs.len() + 1);
        for (id, doc) in &docs {
            codec::validate_id(id, &self.cfg.limits).map_err(|e| refused_in_batch(id, e))?;
            if let (Some(v), Some(d)) = (&doc.vector, stored.settings.dimension)
                && v.len() as u32 != d
            {
                return Err(StoreError::InvalidInput(format!(
                    "document {id:?}: {}",
                    collection::wrong_dimension(c, v.len(), d)
                )));
            }
            let meta = codec::validate_doc(doc, &self.cfg.limits, stored.settings.dimension)
                .map_err(|e| refused_in_batch(id, e))?;
            collection::check_fields(c, &stored.settings.fields, doc.meta.as_ref())
                .map_err(|e| StoreError::InvalidInput(format!("document {id:?}: {e}")))?;
            if let Some(v) = &doc.vector {
                stored.settings.dimension.get_or_insert(v.len() as u32);
            }
            let mut bytes = Vec::new();
            codec::encode_doc(doc, meta.as_deref(), &mut bytes);
            ops.push((collection::key(c, id), Some(bytes)));
        }
        let fixes_dim = open_dim && stored.settings.dimension.is_some();
        if fixes_dim {
            // First in the commit: a document with a vector never survives a crash without the dimension it fixed.
            ops.insert(
                0,
                (
                    collection::settings_key(c),
                    Some(self.encode_stored(&stored)?),
                ),
            );
        }
        let mut lsns = self.write_ops(st, ops)?;
        if fixes_dim {
            lsns.remove(0);
        }
        Ok(lsns)
    }

    /// [`Store::get`] in `collection`.
    pub fn get_in(&self, collection: &str, id: &str) -> Result<Option<Document>, StoreError> {
        Ok(self.get_with_lsn_in(collection, id)?.map(|(d, _)| d))
    }

    /// [`Store::get_with_lsn`] in `collection`.
    pub fn get_with_lsn_in(
        &self,
        c: &str,
        id: &str,
    ) -> Result<Option<(Document, u64)>, StoreError> {
        if c == collection::DEFAULT {
            return self.get_with_lsn(id);
        }
        codec::validate_id(id, &self.cfg.limits)?;
        self.ready_collection(&lock(&self.state), c)?;
        self.get_with_lsn_key(&collection::key(c, id))
    }

    /// [`Store::delete`] in `collection`.
    pub fn delete_in(&self, c: &str, id: &str) -> Result<Option<u64>, StoreError> {
        if c == collection::DEFAULT {
            return self.delete(id);
        }
        codec::validate_id(id, &self.cfg.limits)?;
        self.ready_collection(&lock(&self.state), c)?;
        self.delete_key(&collection::key(c, id))
    }

    /// [`Store::scan`] of `collection`; ids as the collection knows them.
    pub fn scan_in(
        &self,
        c: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>, StoreError> {
        if c != collection::DEFAULT {
            self.ready_collection(&lock(&self.state), c)?;
        }
        self.scan_range(c, after, limit)
    }

    /// Removes `idx/<collection>/`, the files of a dropped collection's indexes (detached first). Absent is fine.
    pub fn remove_index_dir(&self, collection: &str) -> Result<(), StoreError> {
        collection::validate_name(collection)?;
        if collection == collection::DEFAULT {
            return Err(StoreError::InvalidInput(
                "the indexes of \"default\" are not removed".into(),
            ));
        }
        let dir = self.dir.join("idx").join(collection);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(format!("removing {}", dir.display()), e)),
        }
    }

    /// Drops the collection `name`: marks it `dropping` (from then on nothing reads or writes it), deletes its
    /// documents through the log in commits of at most [`DROP_BATCH_DOCS`], then deletes its settings document.
    /// Restartable: a drop cut short (a crash) leaves the collection `dropping`, and calling this again finishes
    /// it. Returns the documents deleted by this call.
    pub fn drop_collection(&self, name: &str) -> Result<u64, StoreError> {
        self.drop_collection_partly(name, usize::MAX)
    }

    /// [`Store::drop_collection`] that stops after `batches_max` commits of deletes (the settings document left
    /// `dropping`), as a crash would: for tests of the restart.
    #[doc(hidden)]
    pub fn drop_collection_partly(
        &self,
        name: &str,
        batches_max: usize,
    ) -> Result<u64, StoreError> {
        if name == collection::DEFAULT {
            return Err(StoreError::InvalidInput(
                "the collection \"default\" cannot be dropped".into(),
            ));
        }
        collection::validate_name(name)?;
        let skey = collection::settings_key(name);
        {
            let st = lock(&self.state);
            let Some(mut stored) = self.stored_collection(&st, name)? else {
                return Err(StoreError::UnknownCollection(format!(
                    "no collection {name:?}"
                )));
            };
            if stored.state != CollectionState::Dropping {
                stored.state = CollectionState::Dropping;
                let bytes = self.encode_stored(&stored)?;
                self.write_ops(st, vec![(skey.clone(), Some(bytes))])?;
            }
        }
        let mut deleted = 0u64;
        for _ in 0..batches_max {
            let st = lock(&self.state);
            let keys: Vec<(String, Option<Vec<u8>>)> = st
                .docs
                .range(collection::range(name))
                .take(DROP_BATCH_DOCS)
                .map(|(k, _)| (k.clone(), None))
                .collect();
            if keys.is_empty() {
                self.write_ops(st, vec![(skey, None)])?;
                return Ok(deleted);
            }
            deleted += keys.len() as u64;
            self.write_ops(st, keys)?;
        }
        Ok(deleted)
    }

    /// Documents stored, in every collection (medic's own — collection settings, the probe's — not counted). While
    /// the store is degraded this counts what survived, which may differ from what was
    /// acknowledged ([`StoreStats::lost`] says so).
    pub fn count(&self) -> usize {
        lock(&self.state).docs.documents()
    }

    /// Holds writes for a CRISIS (`Some(reason)`: every put, delete and batch is refused as read-only naming the
    /// reason, reads go on) or lifts that hold (`None`). The healing engine calls it (through
    /// `heal::Subject::stop_writes`) when an incident that puts acknowledged data at risk is left unrepaired, and
    /// again when none is open. Repairs (compaction) are not held.
    pub fn set_crisis(&self, reason: Option<String>) {
        lock(&self.state).crisis = reason;
    }

    /// Current figures.
    pub fn stats(&self) -> StoreStats {
        let writer_doubt = lock(&self.writer_doubt).clone();
        let (docs, last_lsn, read_only, poisoned, vector_dim, disk, lost, accepted) = {
            let st = lock(&self.state);
            // The first cause that refuses a write, in the order `writable` asks.
            let read_only = if !st.lost.is_empty() {
                Some((ReadOnly::Lost(st.lost.clone()).to_string(), "lost"))
            } else if let Some(d) = &writer_doubt {
                Some((format!("read-only: {d}"), "writer_doubt"))
            } else if let Some(c) = &st.crisis {
                Some((ReadOnly::Crisis(c.clone()).to_string(), "crisis"))
            } else if let Err(e) = self.refuse_read_only() {
                Some((e.to_string(), "opened"))
            } else {
                st.low_space.as_ref().map(|d| (d.to_string(), "disk_space"))
            };
            (
                st.docs.documents(),
                st.durable_lsn,
                read_only,
                st.poisoned.clone(),
                st.vector_dim,
                st.disk_free_bytes,
                st.lost.clone(),
                st.losses_accepted.clone(),
            )
        };
        let (wal_bytes, segments, snapshot_lsn, generation) = {
            let w = lock(&self.wal);
            (
                w.sealed_bytes + w.seg.len,
                w.manifest.segments.len(),
                w.manifest.snapshot_lsn,
                w.manifest.generation,
            )
        };
        let c = &self.counters;
        StoreStats {
            docs,
            last_lsn,
            wal_bytes,
            segments,
            snapshot_lsn,
            manifest_generation: generation,
            read_only_cause: read_only.as_ref().map(|(_, c)| (*c).to_owned()),
            read_only: read_only.map(|(m, _)| m),
            poisoned,
            vector_dim,
            disk_free_bytes: disk,
            puts: c.puts.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            commits: self.group.commits.load(Ordering::Relaxed),
            records_committed: self.group.records_committed.load(Ordering::Relaxed),
            zero_fills_inline: self.group.zero_fills_inline.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
            issues_queued: lock(&self.issues).len(),
            issues_dropped: c.issues_dropped.load(Ordering::Relaxed),
            lost,
            losses_accepted: accepted,
            writer_doubt,
        }
    }

    /// Closes the store: waits for in-flight commits, makes sure the files on disk hold every acknowledged record
    /// with their redundancy ([`Store::durable_layout_intact`]; if not, a compaction writes the verified table out
    /// first — a clean stop never discards the only remaining good copy), marks the lock file closed and releases
    /// the lock. If the table cannot be written out, the lock is left unclosed (the next open recovers and reports)
    /// and the error says why.
    pub fn close(self) -> Result<(), StoreError> {
        {
            let st = lock(&self.state);
            drop(self.group.wait_until(st, |s| s.queue.idle()));
        }
        // The derived indexes persist what they applied; a reopen catches them up from there.
        self.derived.stop();
        if self.read_lock.is_some() {
            return Ok(()); // opened read-only: nothing to write, the shared lock goes with `self`
        }
        if self.table_holds_every_record()
            && let Err(why) = self.durable_layout_intact()
        {
            self.compact().map_err(|e| {
                StoreError::Poisoned(format!(
                    "closing: the files on disk no longer hold every acknowledged record ({why}), and writing \
                     them out from the in-memory table failed: {e}"
                ))
            })?;
            if let Err(still) = self.durable_layout_intact() {
                return Err(StoreError::Poisoned(format!(
                    "closing: the files on disk no longer hold every acknowledged record ({why}); after a \
                     compaction from the in-memory table: {still}"
                )));
            }
        }
        {
            // Never cut while another writer may hold the directory (a takeover): its files are no longer this
            // process's to change.
            let sole_writer = self.fence().is_ok();
            let mut w = lock(&self.wal);
            w.seg.sync_ids(&self.cfg.io);
            // A closed segment is exactly its records (the zero-filled space goes; a reopen zero-fills anew). Best
            // effort: zero-filled space left behind reads as the log's end.
            if sole_writer && w.seg.zeroed_end() > w.seg.len {
                let _ = w.seg.cut_to_len(&self.cfg.io);
            }
        }
        if let Some(mut l) = lock(&self.lock).take() {
            l.mark_closed(&self.cfg.io)?;
        }
        Ok(())
    }

    fn decode_entry(&self, id: &str, e: &Entry) -> Result<Document, StoreError> {
        let location = Location {
            lsn_range: Some((e.lsn, e.lsn)),
            ..Location::default()
        };
        if !e.verified() {
            self.queue_issue(
                issue(
                    IssueKind::Integrity,
                    Code::MemoryTableMismatch,
                    "table",
                    format!(
                        "in-memory copy of document {id:?} (LSN {}) fails its checksum",
                        e.lsn
                    ),
                    "store.get",
                )
                .at(location.clone())
                .data_at_risk(),
            );
            return Err(StoreError::corrupt(
                format!(
                    "in-memory copy of document {id:?} fails its checksum; reload from the log"
                ),
                location,
            ));
        }
        codec::decode_doc(&e.bytes)
            .map_err(|m| StoreError::corrupt(format!("document {id:?}: {m}"), location))
    }

    /// Refuses writes when poisoned, degraded (acknowledged data lost, until the loss is accepted) or short of
    /// space; resumes automatically once space returns.
    fn writable(&self, st: &mut State) -> Result<(), StoreError> {
        self.refuse_read_only()?;
        if let Some(p) = &st.poisoned {
            return Err(StoreError::Poisoned(p.clone()));
        }
        if let Some(d) = lock(&self.writer_doubt).as_ref().filter(|d| d.lasts()) {
            return Err(StoreError::NotSoleWriter(d.clone()));
        }
        if !st.lost.is_empty() {
            return Err(StoreError::ReadOnly(ReadOnly::Lost(st.lost.clone())));
        }
        if let Some(c) = &st.crisis {
            return Err(StoreError::ReadOnly(ReadOnly::Crisis(c.clone())));
        }
        let now = now_us();
        let quota = self.cfg.io.quota_bytes_remaining();
        let stale = now.saturating_sub(st.space_checked_us) > 200_000;
        if stale || quota.is_some() || st.low_space.is_some() {
            st.space_checked_us = now;
            let disk = disk_free_bytes(&self.dir);
            let free = match (disk, quota) {
                (Some(d), Some(q)) => Some(d.min(q)),
                (d, q) => d.or(q),
            };
            st.disk_free_bytes = free;
            match free {
                Some(f) if f < self.cfg.disk_critical_bytes_floor => {
                    st.low_space = Some(DiskSpace::below(f, self.cfg.disk_critical_bytes_floor));
                }
                _ => st.low_space = None,
            }
        }
        match &st.low_space {
            Some(d) => Err(StoreError::ReadOnly(ReadOnly::DiskSpace(d.clone()))),
            None => Ok(()),
        }
    }

    fn needs_compaction(&self) -> bool {
        let w = lock(&self.wal);
        w.sealed_bytes + w.seg.len > self.cfg.wal_bytes_max
    }

    /// If the open segment or its mirror was deleted or replaced (by another file, or a symbolic link), appending
    /// to it would acknowledge writes into a file no reopen reads: the table, which holds every acknowledged record,
    /// is written out first (reported as `file_unreadable`).
    fn ensure_open_segment_linked(&self, w: &mut WalState) -> Result<(), StoreError> {
        if self.open_segment_linked(w) {
            return Ok(());
        }
        let links: Vec<String> = [wal::seg_name(w.seg.id), wal::mirror_name(w.seg.id)]
            .iter()
            .filter_map(|rel| io::link_at(&self.dir.join(rel)).map(|l| l.to_string()))
            .collect();
        self.queue_issue(
            issue(
                IssueKind::Integrity,
                Code::FileUnreadable,
                &wal::seg_name(w.seg.id),
                format!(
                    "{} or its mirror was deleted or replaced while open{}; rewriting the layout from the \
                     in-memory table before the next write (never written through)",
                    wal::seg_name(w.seg.id),
                    if links.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", links.join("; "))
                    }
                ),
                "store.commit",
            )
            .at(Location {
                file: Some(wal::seg_name(w.seg.id)),
                ..Location::default()
            }),
        );
        self.compact_locked(w, true)
    }

    /// Seals the open segment before a batch that would overflow it. Should sealing fail for a reason other than
    /// space or a poisoning (files or directories removed under the running store, say), the table holds every
    /// record the segment did, so a compaction replaces the layout instead (reported as `rotation_failed`).
    fn rotate_for_batch(&self, w: &mut WalState, first_lsn: u64) -> Result<(), Fail> {
        match self.rotate(w, first_lsn) {
            Ok(()) => Ok(()),
            Err(e @ StoreError::Poisoned(_)) => Err(crate::commit::layout_fail(
                e,
                self.cfg.disk_critical_bytes_floor,
            )),
            Err(StoreError::Io { source, context }) if io::is_no_space(&source) => {
                Err(crate::commit::layout_fail(
                    StoreError::Io { source, context },
                    self.cfg.disk_critical_bytes_floor,
                ))
            }
            Err(e) => {
                self.queue_issue(issue(
                    IssueKind::OperationError,
                    Code::RotationFailed,
                    "wal",
                    format!(
                        "sealing {} failed ({e}); compacting from the table instead",
                        wal::seg_name(w.seg.id)
                    ),
                    "store.commit",
                ));
                self.compact_locked(w, true)
                    .map_err(|e| crate::commit::layout_fail(e, self.cfg.disk_critical_bytes_floor))
            }
        }
    }

    /// How far past a commit the open segment's copies are zero-filled when it needs more room
    /// ([`wal::OpenSegment::append`]): a quarter of a segment, at most 4 MiB; nothing while the free space (disk or
    /// injected quota) would fall within twice that of `disk_low_bytes_floor`.
    fn zero_ahead_bytes(&self) -> u64 {
        let ahead = (self.cfg.segment_bytes_max / 4).clamp(4096, 4 << 20);
        let free = match (
            disk_free_bytes(&self.dir),
            self.cfg.io.quota_bytes_remaining(),
        ) {
            (Some(d), Some(q)) => Some(d.min(q)),
            (d, q) => d.or(q),
        };
        match free {
            Some(f) if f < self.cfg.disk_low_bytes_floor.saturating_add(4 * ahead) => 0,
            _ => ahead,
        }
    }

    fn params(&self) -> ParityParams {
        self.files().params()
    }

    /// The directory and settings [`crate::compaction`] writes with.
    fn files(&self) -> compaction::Files<'_> {
        compaction::Files {
            dir: &self.dir,
            cfg: &self.cfg,
            record_bytes_max: self.record_bytes_max,
        }
    }

    /// Seals the open segment and starts a new one at `next_lsn` ([`compaction::seal_open_segment`]). If a record
    /// is damaged in every copy (or the segment cannot be read back), the segment is not sealed: a compaction from
    /// the verified table (which holds every acknowledged document) replaces it, so writes go on.
    fn rotate(&self, w: &mut WalState, next_lsn: u64) -> Result<(), StoreError> {
        let dim = lock(&self.state).vector_dim;
        match compaction::seal_open_segment(&self.files(), w, next_lsn, dim)? {
            compaction::Sealed::NeedsCompaction => self.compact_locked(w, true),
            compaction::Sealed::Done(copy_b) => {
                self.copy_b_outcome(copy_b, w.manifest.generation);
                self.counters.rotations.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// What the store makes of the second manifest copy after a switch to `generation`: a copy not written for lack
    /// of a resource is written again by the next check ([`Store::finish_manifest_copy`]); a failed one is an issue
    /// (restored from its twin).
    fn copy_b_outcome(&self, copy_b: compaction::CopyB, generation: u64) {
        match copy_b {
            compaction::CopyB::Written => {}
            compaction::CopyB::Pending(reason) => {
                self.queue_issue(
                    issue(
                        IssueKind::Resource,
                        Code::ResourceExhausted,
                        "environment",
                        format!(
                            "cannot write MANIFEST-B (generation {generation}): {reason}; written again once the \
                             resource is back"
                        ),
                        "store.manifest",
                    )
                    .with_score(0.5),
                );
                *lock(&self.manifest_copy_pending) = Some(reason);
            }
            compaction::CopyB::Failed(e) => self.queue_issue(
                issue(
                    IssueKind::Integrity,
                    Code::ManifestCopyDamaged,
                    manifest::COPIES[1],
                    format!("writing MANIFEST-B (generation {generation}) failed: {e}"),
                    "store.manifest",
                )
                .at(Location {
                    file: Some(manifest::COPIES[1].into()),
                    ..Location::default()
                }),
            ),
        }
    }

    /// Takes a snapshot of the table at the latest durable LSN and drops every segment it covers. Waits for the
    /// leader role, so no commit is in flight. Refused while the store is degraded: dropping the segments would
    /// drop the record of what was lost (only [`Store::accept_loss`] may do that).
    pub fn compact(&self) -> Result<(), StoreError> {
        self.refuse_read_only()?;
        {
            let mut st = self.group.wait_for_role(lock(&self.state));
            if let Some(p) = &st.poisoned {
                return Err(StoreError::Poisoned(p.clone()));
            }
            if !st.lost.is_empty() {
                return Err(StoreError::ReadOnly(ReadOnly::Lost(st.lost.clone())));
            }
            st.queue.leader = true;
        }
        let r = self.compact_as_leader(true);
        let mut st = lock(&self.state);
        if let Err(StoreError::Poisoned(m)) = &r {
            st.poisoned = Some(m.clone());
        }
        self.group.release_role(&mut st);
        drop(st);
        r
    }

    /// Asks long checks (the full scrub) to end early: the process is stopping. Cannot be undone.
    pub fn interrupt_checks(&self) {
        self.checks_interrupted.store(true, Ordering::Relaxed);
    }

    /// Whether [`Store::interrupt_checks`] was called.
    pub fn checks_interrupted(&self) -> bool {
        self.checks_interrupted.load(Ordering::Relaxed)
    }

    /// Whether the verified in-memory table holds every acknowledged record and can still be written out: the
    /// store is neither degraded (records lost on open) nor poisoned. While it is, damage to any file loses nothing
    /// — compaction rewrites the layout from the table —, so no file's damage puts acknowledged data at risk.
    pub fn table_holds_every_record(&self) -> bool {
        let st = lock(&self.state);
        st.lost.is_empty() && st.poisoned.is_none()
    }

    /// Ends a poisoned state (a failed flush, a write whose tail could not be cut back, a manifest switch whose
    /// outcome is unknown) without a restart: the verified table — which holds every acknowledged record, the failed
    /// batch never having been acknowledged — is written out anew by a compaction into new files, and only once
    /// every write and flush of it succeeded are writes resumed. The files the failure left uncertain are dropped
    /// with the old layout. Refused while degraded (a loss only an operator ends). `Ok(false)` if not poisoned.
    pub fn recover_from_poison(&self) -> Result<bool, StoreError> {
        self.refuse_read_only()?;
        {
            let mut st = self.group.wait_for_role(lock(&self.state));
            if st.poisoned.is_none() {
                return Ok(false);
            }
            if !st.lost.is_empty() {
                return Err(StoreError::ReadOnly(ReadOnly::Lost(st.lost.clone())));
            }
            st.queue.leader = true;
        }
        let r = self.compact_as_leader(true);
        let mut st = lock(&self.state);
        if r.is_ok() {
            st.poisoned = None;
        }
        self.group.release_role(&mut st);
        drop(st);
        r.map(|()| true)
    }

    /// Acknowledged records lost beyond redundancy, found on open and not yet accepted (empty when healthy).
    pub fn lost(&self) -> Vec<LostRange> {
        lock(&self.state).lost.clone()
    }

    /// An operator accepts the loss of every [`LostRange`] found on open: writes a snapshot of what survived
    /// (a compaction: new snapshot and segment, the damaged files dropped), forgets the lost ranges, and the store
    /// serves and writes normally again; a reopen afterwards is clean. Returns what was accepted (also kept in
    /// [`StoreStats::losses_accepted`]). With nothing lost it does nothing. Damaged files are deleted by the
    /// compaction: copy them first if they are wanted for forensics.
    pub fn accept_loss(&self) -> Result<LossAcceptance, StoreError> {
        self.refuse_read_only()?;
        let ranges = {
            let mut st = self.group.wait_for_role(lock(&self.state));
            if let Some(p) = &st.poisoned {
                return Err(StoreError::Poisoned(p.clone()));
            }
            if st.lost.is_empty() {
                return Ok(LossAcceptance {
                    ranges: Vec::new(),
                    snapshot_lsn: None,
                    docs: st.docs.documents(),
                    accepted_at_us: now_us(),
                });
            }
            st.queue.leader = true;
            st.lost.clone()
        };
        let r = self.compact_as_leader(true);
        let snapshot_lsn = lock(&self.wal).manifest.snapshot_lsn;
        let mut st = lock(&self.state);
        match &r {
            Ok(()) => {
                st.lost.clear();
                st.tombstones = HashMap::new();
                st.losses_accepted.extend(ranges.iter().cloned());
                // The operator's acceptance ends the crisis the loss was.
                st.crisis = None;
            }
            Err(StoreError::Poisoned(m)) => st.poisoned = Some(m.clone()),
            Err(_) => {}
        }
        let docs = st.docs.documents();
        self.group.release_role(&mut st);
        drop(st);
        r?;
        lock(&self.issues).retain(|i| Code::of(i) != Some(Code::AcknowledgedDataLost));
        // The table was rewritten from what survived: the indexes are rebuilt from it.
        self.derived
            .invalidate_all("a loss was accepted: rebuilding from the table");
        Ok(LossAcceptance {
            ranges,
            snapshot_lsn,
            docs,
            accepted_at_us: now_us(),
        })
    }

    /// `force`: write a new snapshot even when one exists at the current LSN (it may be the damaged file).
    fn compact_as_leader(&self, force: bool) -> Result<(), StoreError> {
        let mut w = lock(&self.wal);
        self.compact_locked(&mut w, force)
    }

    /// [`Store::compact_as_leader`] with the WAL lock already held (the caller holds the leader role).
    fn compact_locked(&self, w: &mut WalState, force: bool) -> Result<(), StoreError> {
        self.fence()?;
        let (lsn, entries, dim) = {
            let st = lock(&self.state);
            let entries: Vec<(String, Entry)> = st
                .docs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (st.durable_lsn, entries, st.vector_dim)
        };
        if lsn == 0 || (!force && w.manifest.snapshot_lsn == Some(lsn)) {
            return Ok(());
        }
        if let Some((id, e)) = entries.iter().find(|(_, e)| !e.verified()) {
            return Err(StoreError::corrupt(
                format!("in-memory copy of {id:?} fails its checksum; refusing to snapshot it"),
                Location {
                    lsn_range: Some((e.lsn, e.lsn)),
                    ..Location::default()
                },
            ));
        }
        let entries: Vec<compaction::TableEntry> = entries
            .into_iter()
            .map(|(key, e)| compaction::TableEntry {
                key,
                lsn: e.lsn,
                bytes: e.bytes,
            })
            .collect();
        let (new_id, copy_b) =
            compaction::snapshot_and_switch(&self.files(), w, lsn, &entries, dim)?;
        self.copy_b_outcome(copy_b, w.manifest.generation);
        *lock(&self.incremental_mark) = (new_id, wal::HEADER_BYTES, 0);
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// `Ok` when a reopen would find every acknowledged record with its redundancy: a manifest copy verifies, every
    /// immutable file verifies or parity rebuilds it, and every record of the open segment verifies in at least one
    /// copy, which are still the files at their paths. Reads every file: [`Store::close`] runs it once.
    pub fn durable_layout_intact(&self) -> Result<(), String> {
        if self.manifest_copies_ok().iter().all(|(_, r)| r.is_err()) {
            return Err("no manifest copy verifies".into());
        }
        for f in self.immutable_files() {
            let v = self.verify_file(&f, None, false);
            if !v.rebuildable_or_clean() {
                return Err(format!("{} is damaged beyond its parity: {v:?}", f.rel));
            }
        }
        if !self.open_segment_linked(&lock(&self.wal)) {
            return Err("the open segment or its mirror was deleted or replaced".into());
        }
        match self.verify_open_segment(0) {
            Ok(bad) => match bad.iter().find(|d| d.both) {
                Some(d) => Err(format!(
                    "{} at offset {} is damaged in every copy",
                    d.file, d.offset
                )),
                None => Ok(()),
            },
            Err(e) => Err(format!("the open segment cannot be read: {e}")),
        }
    }

    /// Recreates `wal/` and `snap/` if they were removed under the running store (the table still holds everything
    /// they held; compaction writes it back into them), syncing the data directory so the new entries are durable.
    fn open_segment_linked(&self, w: &WalState) -> bool {
        same_file(&self.dir.join(wal::seg_name(w.seg.id)), &w.seg.file)
            && w.seg
                .mirror
                .as_ref()
                .is_none_or(|m| same_file(&self.dir.join(wal::mirror_name(w.seg.id)), m))
    }

    /// Queues an issue for the engine (bounded by `issues_queued_max`; the oldest is dropped beyond it).
    pub(crate) fn queue_issue(&self, i: Issue) {
        let mut q = lock(&self.issues);
        if q.len() >= self.cfg.issues_queued_max {
            q.pop_front();
            self.counters.issues_dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(i);
    }

    /// Takes every queued issue.
    pub(crate) fn drain_issues(&self) -> Vec<Issue> {
        lock(&self.issues).drain(..).collect()
    }

    /// The current manifest.
    pub fn manifest(&self) -> Manifest {
        lock(&self.wal).manifest.clone()
    }

    /// The immutable (parity-protected) files: sealed segments and the snapshot.
    pub fn immutable_files(&self) -> Vec<ImmutableFile> {
        let m = self.manifest();
        let mut out = Vec::new();
        if let Some(l) = m.snapshot_lsn {
            let len = std::fs::metadata(self.dir.join(snap_name(l)))
                .map(|md| md.len())
                .unwrap_or(0);
            let len = parity_len(&self.dir, &snap_par_name(l)).unwrap_or(len);
            out.push(ImmutableFile {
                rel: snap_name(l),
                par_rel: snap_par_name(l),
                file_id: l | SNAP_ID_BIT,
                len,
                lsn_range: (0, l),
            });
        }
        let segs = &m.segments;
        for (i, s) in segs.iter().enumerate().filter(|(_, s)| s.sealed) {
            let end = segs
                .get(i + 1)
                .map_or(u64::MAX, |n| n.first_lsn.saturating_sub(1));
            out.push(ImmutableFile {
                rel: wal::seg_name(s.id),
                par_rel: wal::par_name(s.id),
                file_id: s.id,
                len: s.sealed_len,
                lsn_range: (s.first_lsn, end),
            });
        }
        out
    }

    /// The identity sidecars of the sealed segments and the snapshot (see [`crate::identity`]) that do not name
    /// every LSN of their file: `(file, why)`. Missing or damaged, a later loss of that file would be anonymous; each
    /// is rewritten from the verified file by [`Store::rewrite_identity`]. The open segment's journal is not
    /// listed: every open rewrites it.
    pub fn identity_gaps(&self) -> Vec<(ImmutableFile, String)> {
        self.immutable_files()
            .into_iter()
            .filter_map(|f| {
                let rel = identity::name_for(&f.rel);
                let (a, b) = (f.lsn_range.0.max(1), f.lsn_range.1);
                let why = match io::read_file(&self.cfg.io, &self.dir.join(&rel)) {
                    // Not damage: the next check tries again.
                    Err(e) if io::is_resource(&e) => return None,
                    Err(e) => format!("{rel} is unreadable: {}", io::reason(&e)),
                    Ok(bytes) => {
                        if identity::Identities::parse(&bytes).keys_in(a, b).is_some() {
                            return None;
                        }
                        format!(
                            "{rel} does not name every record of LSN {a}..={b} (damaged frames)"
                        )
                    }
                };
                Some((f, why))
            })
            .collect()
    }

    /// Rewrites the identity sidecar of the immutable file `rel` (a sealed segment or the snapshot) from the file
    /// itself, read and verified against its parity.
    pub fn rewrite_identity(&self, rel: &str) -> Result<(), StoreError> {
        self.refuse_read_only()?;
        let f = self
            .immutable_files()
            .into_iter()
            .find(|f| f.rel == rel)
            .ok_or_else(|| {
                StoreError::InvalidInput(format!("{rel} is not a live sealed segment or snapshot"))
            })?;
        let mut report = RecoveryReport::default();
        let mut found = Vec::new();
        let expected = rel.ends_with(".seg").then_some(f.len);
        let bytes = load_immutable(&self.dir, &f, expected, &mut report, &mut found)?;
        let sidecar = if rel.ends_with(".seg") {
            identity::of_segment(&bytes, f.lsn_range.0, f.lsn_range.1)
        } else {
            let (lsn, entries) = snapshot::decode(&bytes)
                .map_err(|(off, e)| StoreError::corrupt(format!("{rel}: {e}"), loc(rel, off, 0)))?;
            identity::of_snapshot(lsn, entries.iter().map(|(id, l, _)| (id.as_str(), *l)))
        };
        let path = self.dir.join(identity::name_for(rel));
        io::write_file_atomic(&self.cfg.io, &path, &sidecar)
            .map_err(ioe(format!("writing {}", identity::name_for(rel))))
    }

    /// Every live file and what it is.
    pub fn data_files(&self) -> Vec<DataFile> {
        let m = self.manifest();
        let f = |rel: String, kind: FileKind| DataFile { rel, kind };
        let mut out = vec![
            f(manifest::COPIES[0].into(), FileKind::Manifest),
            f(manifest::COPIES[1].into(), FileKind::Manifest),
            f(crate::lock::LOCK_FILE.into(), FileKind::Lock),
        ];
        if let Some(l) = m.snapshot_lsn {
            out.push(f(snap_name(l), FileKind::Snapshot));
            out.push(f(snap_par_name(l), FileKind::Parity));
        }
        for s in &m.segments {
            if s.sealed {
                out.push(f(wal::seg_name(s.id), FileKind::Segment));
                out.push(f(wal::par_name(s.id), FileKind::Parity));
            } else {
                out.push(f(wal::seg_name(s.id), FileKind::OpenSegment));
                if self.cfg.mirror_open_segment {
                    out.push(f(wal::mirror_name(s.id), FileKind::Mirror));
                }
            }
        }
        out
    }

    /// Verifies an immutable file against its sidecar: every block, or only `blocks`; recovery blocks too if
    /// `check_parity`.
    pub fn verify_file(
        &self,
        f: &ImmutableFile,
        blocks: Option<&[usize]>,
        check_parity: bool,
    ) -> FileVerdict {
        let mut v = FileVerdict {
            block_bytes: self.cfg.block_bytes as u64,
            ..FileVerdict::default()
        };
        let faults = &*self.cfg.io;
        let data = match io::read_file(faults, &self.dir.join(&f.rel)) {
            Ok(d) => d,
            Err(e) if io::is_resource(&e) => {
                v.environment_error = Some(format!("cannot read {}: {}", f.rel, io::reason(&e)));
                return v;
            }
            Err(e) => {
                v.read_error = Some(format!("{}: {}", f.rel, io::reason(&e)));
                return v;
            }
        };
        v.disk_len = data.len() as u64;
        let sc = match io::read_file(faults, &self.dir.join(&f.par_rel)) {
            Err(e) if io::is_resource(&e) => {
                v.environment_error =
                    Some(format!("cannot read {}: {}", f.par_rel, io::reason(&e)));
                return v;
            }
            r => r,
        };
        let sc = match sc
            .map_err(|e| io::reason(&e))
            .and_then(|b| parity::parse(&b))
        {
            Ok(sc) if sc.file_id == f.file_id => sc,
            Ok(sc) => {
                v.sidecar_error = Some(format!(
                    "sidecar names file id {}, expected {}",
                    sc.file_id, f.file_id
                ));
                v.content_damaged = crate::verify::file_content(self.record_bytes_max, f, &data)
                    .err()
                    .map(|e| e.to_string());
                return v;
            }
            Err(e) => {
                v.sidecar_error = Some(e);
                // Without parity only the file's own checksums tell whether its data is intact.
                v.content_damaged = crate::verify::file_content(self.record_bytes_max, f, &data)
                    .err()
                    .map(|e| e.to_string());
                return v;
            }
        };
        v.block_bytes = sc.params.block_bytes as u64;
        v.bad_blocks = match blocks {
            Some(b) => parity::bad_blocks_in(&data, &sc, b.iter().copied()),
            None => parity::bad_blocks(&data, &sc),
        };
        if data.len() as u64 > sc.data_len {
            v.bad_blocks.push(sc.block_crcs.len()); // bytes past the sealed end
        }
        if !v.bad_blocks.is_empty() {
            let mut copy = data.clone();
            let real: Vec<usize> = if blocks.is_some() {
                parity::bad_blocks(&data, &sc)
            } else {
                v.bad_blocks
                    .iter()
                    .copied()
                    .filter(|&b| b < sc.block_crcs.len())
                    .collect()
            };
            v.rebuildable = parity::rebuild(&mut copy, &sc, &real).is_ok();
        } else if check_parity {
            match parity::parity_mismatches(&data, &sc) {
                Ok(m) => v.parity_mismatches = m,
                Err(e) => v.sidecar_error = Some(e),
            }
        }
        v
    }

    /// Number of blocks of an immutable file.
    pub fn n_blocks(&self, f: &ImmutableFile) -> u64 {
        f.len.div_ceil(self.cfg.block_bytes as u64)
    }

    /// Rebuilds an immutable file's damaged blocks from parity and writes the repaired file back (temp file,
    /// fsync, rename). Rewrites a damaged sidecar from the data when the data itself verifies. Returns what it did.
    pub fn repair_file(&self, f: &ImmutableFile) -> Result<Vec<String>, StoreError> {
        self.refuse_read_only()?;
        repair::immutable_file(&self.files(), f)
    }

    /// Compares the open segment with its mirror from `from` to the end. Returns every damaged stretch: the record
    /// (or, damaged in both copies, the run of records up to the next one that verifies) with its LSN range — the
    /// LSN of a record damaged in one copy is read from the intact twin; a run damaged in both copies lies between
    /// the LSNs of its intact neighbours.
    pub fn verify_open_segment(&self, from: u64) -> Result<Vec<SegmentDamage>, StoreError> {
        // Take the descriptors under the lock, read without it: the files only grow, and commits must not wait for
        // a check. `from` is a record boundary (an earlier durable end); only the header and `from..len` are read.
        let view = {
            let w = lock(&self.wal);
            let clone =
                |f: &std::fs::File| f.try_clone().map_err(ioe("duplicating a WAL descriptor"));
            let mirror = match &w.seg.mirror {
                Some(m) => Some(clone(m)?),
                None => None,
            };
            crate::verify::SegmentView {
                id: w.seg.id,
                first_lsn: w.seg.first_lsn,
                len: w.seg.len,
                last_lsn: w.last_lsn,
                main: clone(&w.seg.file)?,
                mirror,
            }
        };
        crate::verify::open_segment_damage(
            &self.dir,
            &self.cfg.io,
            &view,
            from,
            self.record_bytes_max,
        )
    }

    /// Repairs the open segment: damaged records in either copy are rewritten from the other, and both are fsynced.
    /// Holds the leader role so no commit runs meanwhile.
    pub fn repair_open_segment(&self) -> Result<Vec<String>, StoreError> {
        self.refuse_read_only()?;
        self.as_leader(|| repair::open_segment(&self.files(), &mut lock(&self.wal)))
    }

    fn as_leader<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        {
            let mut st = self.group.wait_for_role(lock(&self.state));
            st.queue.leader = true;
        }
        let r = f();
        let mut st = lock(&self.state);
        self.group.release_role(&mut st);
        r
    }

    /// Restores a damaged or stale manifest copy from its twin. Returns the copies rewritten.
    pub fn repair_manifest(&self) -> Result<Vec<String>, StoreError> {
        self.refuse_read_only()?;
        repair::manifest_copies(&self.files(), &lock(&self.wal).manifest)
    }

    /// Writes again a manifest copy that a switch could not write for lack of a resource (no descriptor, no space), if
    /// there is one: `None` when nothing was pending, else whether it is written now (`Err`: still short of the
    /// resource; tried again next time). The checks run this first, so such a copy is never reported as damaged.
    pub fn finish_manifest_copy(&self) -> Option<Result<(), StoreError>> {
        if lock(&self.manifest_copy_pending).is_none() {
            return None;
        }
        let r = self.repair_manifest().map(|_| ());
        if r.is_ok() {
            *lock(&self.manifest_copy_pending) = None;
        }
        Some(r)
    }

    /// Whether both manifest copies hold the current manifest (`Err` says why not, including a copy that could not
    /// be read for lack of a resource; see [`Store::manifest_copy_states`] to tell the two apart).
    pub fn manifest_copies_ok(&self) -> Vec<(String, Result<(), String>)> {
        self.manifest_copy_states()
            .into_iter()
            .map(|(n, st)| {
                let r = match st {
                    CopyState::Current => Ok(()),
                    CopyState::Damaged(e) | CopyState::Unavailable(e) => Err(e),
                };
                (n, r)
            })
            .collect()
    }

    /// The state of each manifest copy: current, damaged or stale (why), or unreadable for lack of a resource.
    pub fn manifest_copy_states(&self) -> Vec<(String, CopyState)> {
        let cur = lock(&self.wal).manifest.encode();
        let pending = lock(&self.manifest_copy_pending).clone();
        manifest::COPIES
            .iter()
            .map(|name| {
                let r = match io::read_file(&self.cfg.io, &self.dir.join(name)) {
                    Err(e) if io::is_resource(&e) => {
                        CopyState::Unavailable(format!("cannot read {name}: {}", io::reason(&e)))
                    }
                    Err(e) => CopyState::Damaged(format!("unreadable: {}", io::reason(&e))),
                    Ok(b) if b == cur => CopyState::Current,
                    Ok(b) => match Manifest::decode(&b) {
                        Err(e) => CopyState::Damaged(e),
                        // The copy a switch could not write for lack of a resource is behind until
                        // `finish_manifest_copy` writes it: not damage.
                        Ok(m) if *name == manifest::COPIES[1] && pending.is_some() => {
                            CopyState::Unavailable(format!(
                                "cannot write {name} (at generation {}): {}; it is written again once the \
                                 resource is back",
                                m.generation,
                                pending.as_deref().unwrap_or_default()
                            ))
                        }
                        Ok(m) => CopyState::Damaged(format!(
                            "at generation {}, not the current one",
                            m.generation
                        )),
                    },
                };
                (name.to_string(), r)
            })
            .collect()
    }

    /// Replays the store's files into a fresh table (snapshot + every segment, repairing nothing) and compares it
    /// with the live table. Returns the ids that differ. Writes wait only while the layout, the open segment's
    /// length and the table are captured, not during the replay; if a compaction changes the layout meanwhile the
    /// comparison is skipped (empty result) and the next run makes it.
    pub fn replay_agrees(&self) -> Result<Vec<String>, StoreError> {
        let (m, open_len, table) = self.as_leader(|| {
            let (m, open_len) = {
                let w = lock(&self.wal);
                (w.manifest.clone(), w.seg.len)
            };
            let table: Vec<(String, u64, u32, bool)> = lock(&self.state)
                .docs
                .iter()
                .map(|(k, e)| (k.clone(), e.lsn, e.crc, e.verified()))
                .collect();
            Ok((m, open_len, table))
        })?;
        let fresh = match self.replay_docs(&m, open_len) {
            Ok(f) => f,
            Err(_) if self.manifest().generation != m.generation => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut diff = Vec::new();
        for (id, lsn, crc, ok) in &table {
            let same = fresh
                .get(id)
                .is_some_and(|e| e.lsn == *lsn && e.crc == *crc);
            if !same || !ok {
                diff.push(id.clone());
            }
        }
        let live: std::collections::HashSet<&str> =
            table.iter().map(|(k, ..)| k.as_str()).collect();
        diff.extend(fresh.keys().filter(|k| !live.contains(k.as_str())).cloned());
        Ok(diff)
    }

    /// Fault hook, like [`io::IoFaults`] (for tests and fault drills, not for applications): flips the byte at
    /// `at` (modulo its length) of the in-memory copy of document `id` without updating its checksum, as a memory
    /// error or a stray write would. Nothing on disk changes. Returns whether `id` was in the table.
    ///
    /// The next read of `id` fails naming the damage (and queues `memory_table_mismatch`), a scrub reports it, and
    /// `restore_snapshot_and_replay` ([`Store::reload_table`]) rebuilds the entry from the snapshot and the log.
    #[doc(hidden)]
    pub fn fault_flip_table_byte(&self, id: &str, at: usize) -> bool {
        let mut st = lock(&self.state);
        let Some(e) = st.docs.get_mut(id) else {
            return false;
        };
        let mut b = e.bytes.to_vec();
        if b.is_empty() {
            return false;
        }
        let i = at % b.len();
        b[i] ^= 0x5a;
        e.bytes = b.into();
        true
    }

    /// Reloads the in-memory table from the files (latest snapshot + log), replacing what is in memory.
    pub fn reload_table(&self) -> Result<usize, StoreError> {
        self.as_leader(|| {
            let (m, open_len) = {
                let w = lock(&self.wal);
                (w.manifest.clone(), w.seg.len)
            };
            let fresh = self.replay_docs(&m, open_len)?;
            let mut st = lock(&self.state);
            let mut changed = 0;
            let ids: Vec<String> = st.docs.keys().chain(fresh.keys()).cloned().collect();
            for id in ids {
                let same = match (st.docs.get(&id), fresh.get(&id)) {
                    (Some(a), Some(b)) => a.lsn == b.lsn && a.crc == b.crc && a.verified(),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    changed += 1;
                    match fresh.get(&id) {
                        Some(e) => st.docs.insert(id, e.clone()),
                        None => st.docs.remove(&id),
                    };
                }
            }
            Ok(changed)
        })
    }

    fn replay_docs(
        &self,
        m: &Manifest,
        open_len: u64,
    ) -> Result<BTreeMap<String, Entry>, StoreError> {
        let mut docs = BTreeMap::new();
        let mut rep = RecoveryReport::default();
        let mut iss = Vec::new();
        if let Some(l) = m.snapshot_lsn {
            let f = ImmutableFile {
                rel: snap_name(l),
                par_rel: snap_par_name(l),
                file_id: l | SNAP_ID_BIT,
                len: 0,
                lsn_range: (0, l),
            };
            let b = load_immutable(&self.dir, &f, None, &mut rep, &mut iss)?;
            let (_, entries) =
                snapshot::decode(&b).map_err(|(o, e)| StoreError::corrupt(e, loc(&f.rel, o, 0)))?;
            for (id, lsn, doc) in entries {
                docs.insert(id, Entry::new(lsn, doc));
            }
        }
        let after = m.snapshot_lsn.unwrap_or(0);
        self.replay(m, open_len, after, &mut |r: codec::Record| {
            if r.kind == KIND_PUT {
                docs.insert(r.id, Entry::new(r.lsn, r.doc));
            } else {
                docs.remove(&r.id);
            }
        })?;
        Ok(docs)
    }

    /// The one replay of the log's records (the segments of `m`, the open one cut at `open_len`, records verified
    /// against the mirror) in LSN order into `sink`, from the first record above `after`. Reads only; repairs
    /// nothing. Used by the scrub's comparison, the table reload and the derived indexes' catch-up.
    fn replay(
        &self,
        m: &Manifest,
        open_len: u64,
        after: u64,
        sink: &mut dyn FnMut(codec::Record),
    ) -> Result<(), StoreError> {
        let mut rep = RecoveryReport::default();
        let mut iss = Vec::new();
        for (i, s) in m.segments.iter().enumerate() {
            // A segment whose records all lie at or below `after` is not read.
            if m.segments
                .get(i + 1)
                .is_some_and(|n| n.first_lsn <= after + 1)
            {
                continue;
            }
            let rel = wal::seg_name(s.id);
            let bytes = if s.sealed {
                let f = ImmutableFile {
                    rel: rel.clone(),
                    par_rel: wal::par_name(s.id),
                    file_id: s.id,
                    len: s.sealed_len,
                    lsn_range: (s.first_lsn, u64::MAX),
                };
                load_immutable(&self.dir, &f, Some(s.sealed_len), &mut rep, &mut iss)?
            } else {
                let mut b = io::read_file(&self.cfg.io, &self.dir.join(&rel))
                    .map_err(|e| StoreError::from_open(format!("reading {rel}"), e))?;
                b.truncate(open_len as usize);
                b
            };
            // Both copies cut at the captured end: records appended since are not part of this replay.
            let mirror = if s.sealed || !self.cfg.mirror_open_segment {
                None
            } else {
                io::read_file(&self.cfg.io, &self.dir.join(wal::mirror_name(s.id)))
                    .ok()
                    .map(|mut b| {
                        b.truncate(open_len as usize);
                        b
                    })
            };
            let scan = wal::scan(&bytes, mirror.as_deref(), self.record_bytes_max);
            // Every byte up to the captured end was acknowledged: a record no copy can read is damage, never the
            // end. A replay that skipped it would hand on a log without those records (a reload of the table from
            // it would drop them from memory, the only intact copy left).
            if scan.valid_end < bytes.len() as u64 {
                let why = scan
                    .damaged
                    .map(|(_, why)| why)
                    .or(scan.torn.map(|(_, _, why)| why))
                    .unwrap_or_else(|| "unreadable records".into());
                return Err(StoreError::corrupt(
                    format!(
                        "{rel}: records from offset {} cannot be read in any copy ({why}); the replay stops \
                         rather than leave them out",
                        scan.valid_end
                    ),
                    loc(&rel, scan.valid_end, bytes.len() as u64 - scan.valid_end),
                ));
            }
            for r in scan.records {
                if r.lsn > after {
                    sink(r);
                }
            }
        }
        Ok(())
    }

    /// The derived indexes attached to this store: look one up, wait for one, read their status.
    pub fn derived(&self) -> &DerivedSet {
        &self.derived
    }

    /// Attaches a derived index (any [`DerivedIndex`]): the `medic-derived` thread catches it up from the log (or
    /// rebuilds it from the table) and then applies every durable change in LSN order. Errors only for a second
    /// index of the same collection and name, or a collection that does not exist.
    pub fn attach_derived(
        self: &Arc<Self>,
        index: Arc<dyn DerivedIndex>,
    ) -> Result<(), StoreError> {
        self.derived.attach(Arc::downgrade(self), index)
    }

    /// Whether acknowledged records are lost (and not yet accepted): nothing derived is rebuilt meanwhile.
    pub fn degraded(&self) -> bool {
        !lock(&self.state).lost.is_empty()
    }

    /// Replays the log's records above `after` into `sink`, if the log still covers them (see [`LogCover`]). The
    /// log is captured as of now (writes wait only for the capture).
    pub(crate) fn derived_replay_after(
        &self,
        after: u64,
        sink: &mut dyn FnMut(codec::Record),
    ) -> Result<LogCover, StoreError> {
        let (m, open_len, last) = self.as_leader(|| {
            let w = lock(&self.wal);
            Ok((w.manifest.clone(), w.seg.len, w.last_lsn))
        })?;
        if after > last {
            return Ok(LogCover::Ahead { last });
        }
        let snapshot_lsn = m.snapshot_lsn.unwrap_or(0);
        if snapshot_lsn > after {
            return Ok(LogCover::NotCovered { snapshot_lsn });
        }
        self.replay(&m, open_len, after, sink)?;
        Ok(LogCover::Replayed { last })
    }

    /// Every document of the collection (medic's own documents left out), verified, with the LSN the table is at:
    /// what a derived index is rebuilt from. Refused while the store is degraded.
    pub(crate) fn derived_table(
        &self,
        c: &str,
    ) -> Result<(u64, crate::derived::TableDocs), StoreError> {
        let (lsn, entries): (u64, Vec<(String, Entry)>) = {
            let st = lock(&self.state);
            if let Some(l) = st.lost.first() {
                return Err(l.stale("rebuilding a derived index".into()));
            }
            let entries = st
                .docs
                .range(collection::range(c))
                .filter(|(k, _)| !k.starts_with(RESERVED_ID_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (st.durable_lsn, entries)
        };
        let docs = entries
            .into_iter()
            .map(|(key, e)| {
                let d = self.decode_entry(&key, &e)?;
                Ok((Arc::from(collection::split(&key).1), Arc::new(d)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((lsn, docs))
    }

    /// What a derived index is checked against: the table's LSN, its count of documents (medic's own left out) and
    /// up to `sample_max` ids with their versions, spread over the table from a seeded offset.
    pub(crate) fn derived_truth(&self, c: &str, sample_max: usize, seed: u64) -> Truth {
        let st = lock(&self.state);
        let count = Self::count_locked(&st, c);
        let stride = (count / sample_max.max(1)).max(1);
        let offset = (seed as usize) % stride;
        let sample = st
            .docs
            .range(collection::range(c))
            .filter(|(k, _)| !k.starts_with(RESERVED_ID_PREFIX))
            .skip(offset)
            .step_by(stride)
            .take(sample_max)
            .map(|(k, e)| (collection::split(k).1.to_owned(), Some(e.lsn)))
            .collect();
        Truth {
            lsn: st.durable_lsn,
            count: count as u64,
            sample,
        }
    }

    /// Cuts bytes past the last durable record off the open segment and its mirror (a torn tail left by a failed
    /// write), with the zero-filled space past the end. Returns the torn bytes cut (zero-filled space uncounted).
    pub fn truncate_tail(&self) -> Result<u64, StoreError> {
        self.refuse_read_only()?;
        self.as_leader(|| {
            let w = lock(&self.wal);
            let cut: u64 = copy_tails(&w.seg, self.record_bytes_max)
                .iter()
                .map(|t| t.bytes)
                .sum();
            if cut == 0 {
                return Ok(0);
            }
            let len = w.seg.len;
            w.seg.ahead.hold();
            let truncated = || -> Result<(), StoreError> {
                for f in std::iter::once(&w.seg.file).chain(w.seg.mirror.as_ref()) {
                    f.set_len(len).map_err(ioe("truncating the open segment"))?;
                    io::sync(&self.cfg.io, f).map_err(|e| {
                        StoreError::Poisoned(format!("fsync after truncation: {e}"))
                    })?;
                }
                Ok(())
            };
            let r = truncated();
            w.seg.ahead.release(Some(len));
            r.map(|()| cut)
        })
    }

    /// The bytes past the open segment's durable end now (a failed, never-acknowledged write), if any: the copy that
    /// holds the most of them, where they start, how many, and the LSNs they may carry — above the last durable LSN,
    /// up to what their readable record headers name, never beyond the last LSN handed out.
    pub fn torn_tail_now(&self) -> Option<TornTail> {
        let w = lock(&self.wal);
        let len = w.seg.len;
        let tails = copy_tails(&w.seg, self.record_bytes_max);
        let main = tails[0].bytes;
        let mir = tails.get(1).map_or(0, |t| t.bytes);
        if main == 0 && mir == 0 {
            return None;
        }
        let (t, rel, bytes) = match tails.get(1) {
            Some(m) if mir > main => (m, wal::mirror_name(w.seg.id), mir),
            _ => (&tails[0], wal::seg_name(w.seg.id), main),
        };
        let (lo, hi) = wal::torn_lsns(&t.head, w.last_lsn, self.record_bytes_max);
        let issued = lock(&self.state).next_lsn.saturating_sub(1).max(lo);
        Some(TornTail {
            file: rel,
            offset: len,
            bytes,
            reason: format!(
                "main copy {main} byte(s), mirror {mir} byte(s) past the durable end at offset {len}"
            ),
            lsn_range: (lo, hi.min(issued)),
        })
    }

    /// Bytes past the durable end of the open segment or its mirror (0 when clean; zero-filled space uncounted).
    pub fn tail_excess_bytes(&self) -> u64 {
        let w = lock(&self.wal);
        copy_tails(&w.seg, self.record_bytes_max)
            .iter()
            .map(|t| t.bytes)
            .sum()
    }

    /// The open segment's id, durable length and duplicated descriptors (main, mirror), for a check that reads
    /// without holding up commits (bytes below the durable length never change).
    pub(crate) fn open_segment_descriptors(
        &self,
    ) -> Result<(u64, u64, std::fs::File, Option<std::fs::File>), StoreError> {
        let w = lock(&self.wal);
        let clone = |f: &std::fs::File| f.try_clone().map_err(ioe("duplicating a WAL descriptor"));
        let mirror = match &w.seg.mirror {
            Some(m) => Some(clone(m)?),
            None => None,
        };
        Ok((w.seg.id, w.seg.len, clone(&w.seg.file)?, mirror))
    }

    /// The open segment's id and durable length.
    pub fn open_segment(&self) -> (u64, u64) {
        let w = lock(&self.wal);
        (w.seg.id, w.seg.len)
    }

    /// The heartbeat (the `store.quick` check runs it every time, writes at most every 5 s): checks that this
    /// process still holds its data directory and that `LOCK` names it, refreshes the heartbeat, and writes `LOCK`
    /// back if it was removed, edited or replaced ([`crate::lock::LockCheck::Restored`] says what was found). Fails
    /// with `NotSoleWriter` when this process can no longer prove it is the only writer (then writes stop; reads go
    /// on), or with `Io` when `LOCK` could not be written (writes stop too once that lasts half of
    /// `lock_stale_after_ms`).
    pub fn check_lock(&self) -> Result<crate::lock::LockCheck, StoreError> {
        use crate::lock::{LockTrouble, WriterDoubt};
        if self.read_lock.is_some() {
            // Opened read-only: the shared kernel lock is held for the store's life and `LOCK` is not ours to write.
            return Ok(crate::lock::LockCheck::Fresh);
        }
        let r = match lock(&self.lock).as_mut() {
            Some(dl) => dl.check(&self.dir, &self.cfg.io),
            None => {
                return Err(StoreError::io(
                    "checking LOCK",
                    std::io::Error::other("the store is closed"),
                ));
            }
        };
        let mut doubt = lock(&self.writer_doubt);
        match r {
            Ok(c) => {
                if let Some(d) = doubt.as_ref().filter(|d| d.lasts()) {
                    // Someone else may have written meanwhile: only a reopen ends it.
                    return Err(StoreError::NotSoleWriter(d.clone()));
                }
                *doubt = None;
                self.lock_confirmed_us
                    .store(self.opened.elapsed().as_micros() as u64, Ordering::SeqCst);
                Ok(c)
            }
            Err(LockTrouble::Doubt(d)) => {
                if doubt.as_ref().is_none_or(|old| !old.lasts()) {
                    *doubt = Some(d.clone());
                }
                Err(StoreError::NotSoleWriter(d))
            }
            Err(LockTrouble::Io(e)) => {
                let age_us = (self.opened.elapsed().as_micros() as u64)
                    .saturating_sub(self.lock_confirmed_us.load(Ordering::SeqCst));
                if age_us >= FENCE_US && doubt.as_ref().is_none_or(|old| !old.lasts()) {
                    *doubt = Some(WriterDoubt::HeartbeatUnconfirmed {
                        for_ms: age_us / 1_000,
                        error: io::reason(&e),
                    });
                }
                Err(StoreError::io("refreshing the LOCK heartbeat", e))
            }
        }
    }

    /// Proves, before a write, that this process is still the only writer: at once when the heartbeat was confirmed
    /// within [`FENCE_US`] and nothing casts doubt on it, else by running the heartbeat now ([`Store::check_lock`]).
    fn fence(&self) -> Result<(), StoreError> {
        self.refuse_read_only()?;
        {
            let doubt = lock(&self.writer_doubt);
            if let Some(d) = doubt.as_ref().filter(|d| d.lasts()) {
                return Err(StoreError::NotSoleWriter(d.clone()));
            }
            let age_us = (self.opened.elapsed().as_micros() as u64)
                .saturating_sub(self.lock_confirmed_us.load(Ordering::SeqCst));
            if doubt.is_none() && age_us < FENCE_US {
                return Ok(());
            }
        }
        match self.check_lock() {
            Ok(_) => Ok(()),
            Err(e @ StoreError::NotSoleWriter(_)) => Err(e),
            Err(e) => match lock(&self.writer_doubt).clone() {
                Some(d) => Err(StoreError::NotSoleWriter(d)),
                None => {
                    // Within the bound: the heartbeat failed (no descriptor, no space) but no one can have taken
                    // over yet; the next write or check tries again.
                    let _ = e;
                    Ok(())
                }
            },
        }
    }

    /// Why this process cannot prove it is the only writer of its data directory, if it cannot.
    pub fn writer_doubt(&self) -> Option<crate::lock::WriterDoubt> {
        lock(&self.writer_doubt).clone()
    }

    /// Refreshes the heartbeat in `LOCK` ([`Store::check_lock`], which also writes back a `LOCK` that no longer
    /// names this process). Returns whether `LOCK` names this process now.
    pub fn heartbeat(&self) -> Result<bool, StoreError> {
        self.check_lock().map(|_| true)
    }

    /// Whether the lock file still names this process; if not and `fix`, writes it back ([`Store::check_lock`]).
    pub fn lock_file_ok(&self, fix: bool) -> Result<bool, StoreError> {
        let names_me = match lock(&self.lock).as_ref() {
            Some(dl) => dl.names_me(&self.dir),
            None => return Ok(false),
        };
        if names_me || fix {
            self.check_lock()?;
        }
        Ok(names_me)
    }

    /// Free space for the store now: the smaller of the disk's and the fault quota's.
    pub fn free_bytes(&self) -> Option<u64> {
        let disk = disk_free_bytes(&self.dir);
        let q = self.cfg.io.quota_bytes_remaining();
        let free = match (disk, q) {
            (Some(d), Some(q)) => Some(d.min(q)),
            (d, q) => d.or(q),
        };
        let mut st = lock(&self.state);
        st.disk_free_bytes = free;
        // Leave read-only mode as soon as space is back (and enter it when space is gone), even with no writes.
        match free {
            Some(f) if f < self.cfg.disk_critical_bytes_floor => {
                st.low_space = Some(DiskSpace::below(f, self.cfg.disk_critical_bytes_floor))
            }
            _ => st.low_space = None,
        }
        free
    }

    /// Bytes a compaction would write (the new snapshot, its parity sidecar, a fresh segment and a manifest), an
    /// upper bound: free space below this means compaction cannot help and would only fail.
    pub fn compaction_bytes_needed(&self) -> u64 {
        let table: u64 = {
            let st = lock(&self.state);
            st.docs
                .iter()
                .map(|(id, e)| id.len() as u64 + e.bytes.len() as u64 + 32)
                .sum()
        };
        let p = self.params();
        let parity = table * u64::from(p.parity_blocks) / u64::from(p.data_blocks.max(1))
            + 2 * u64::from(p.block_bytes) * u64::from(p.parity_blocks);
        // Headers, a new segment's first block and two manifest copies.
        table + parity + 64 * 1024
    }

    /// WAL bytes now (sealed + open).
    pub fn wal_bytes(&self) -> u64 {
        let w = lock(&self.wal);
        w.sealed_bytes + w.seg.len
    }

    /// Latency of the latest acknowledged put, µs.
    pub fn last_put_latency_us(&self) -> u64 {
        self.counters.put_latency_us_last.load(Ordering::Relaxed)
    }

    /// Records rebuilt on reads or scrubs since open.
    pub(crate) fn note_read_repair(&self) {
        self.counters.read_repairs.fetch_add(1, Ordering::Relaxed);
    }
}

impl crate::commit::Host for Store {
    fn state(&self) -> &Mutex<State> {
        &self.state
    }
    fn wal(&self) -> &Mutex<WalState> {
        &self.wal
    }
    fn config(&self) -> &StoreConfig {
        &self.cfg
    }
    fn fence(&self) -> Result<(), StoreError> {
        Store::fence(self)
    }
    fn relink(&self, w: &mut WalState) -> Result<(), StoreError> {
        self.ensure_open_segment_linked(w)
    }
    fn rotate_for_batch(&self, w: &mut WalState, first_lsn: u64) -> Result<(), Fail> {
        Store::rotate_for_batch(self, w, first_lsn)
    }
    fn zero_ahead_bytes(&self) -> u64 {
        Store::zero_ahead_bytes(self)
    }
    fn after_batch(&self) {
        if !self.needs_compaction() {
            return;
        }
        if let Err(e) = self.compact_as_leader(false) {
            if let StoreError::Poisoned(m) = &e {
                lock(&self.state).poisoned = Some(m.clone());
            }
            self.queue_issue(issue(
                IssueKind::OperationError,
                Code::CompactionFailed,
                "wal",
                format!("compaction failed: {e}"),
                "store.commit",
            ));
        }
    }
    fn publish(&self, ops: &[Op]) {
        // Durable: hand the batch to the derived indexes (never blocks, never fails).
        self.derived.feed().publish(ops.iter().map(|op| FeedItem {
            lsn: op.lsn,
            id: Arc::from(op.id.as_str()),
            doc: op.entry.as_ref().map(|e| e.bytes.clone()),
        }));
        self.derived
            .feed()
            .note_log_lsn(ops.last().map_or(0, |o| o.lsn));
    }
    fn report(&self, i: Issue) {
        self.queue_issue(i);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The kernel lock goes with the file; the holder text stays "not closed" unless `close` ran.
        self.derived.stop();
        lock(&self.lock).take();
    }
}

/// Whether `path` names the same file as the open `file` (not deleted, not replaced, not a link to it).
pub(crate) fn same_file(path: &Path, file: &std::fs::File) -> bool {
    // Device and inode only (`io::file_identity`): asking for the times would slow the next commit's flush.
    match (
        io::file_identity(Some(path), None),
        io::file_identity(None, Some(file)),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The protected file's length as its sidecar's header records it (reads only the header).
fn parity_len(dir: &Path, par_rel: &str) -> Option<u64> {
    let faults = io::IoFaults::new();
    let f = io::open_read(&faults, &dir.join(par_rel)).ok()?;
    let mut h = [0u8; parity::HEADER_BYTES];
    io::read_exact_at(&faults, &f, &mut h, 0).ok()?;
    parity::header_data_len(&h)
}

/// Free bytes on the file system holding `dir` (`f_bavail * f_frsize`).
pub fn disk_free_bytes(dir: &Path) -> Option<u64> {
    rustix::fs::statvfs(dir)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// What lies past the durable end of one copy of the open segment.
struct CopyTail {
    /// Bytes from the durable end to the last one that is not zero-filled space (0: clean).
    bytes: u64,
    /// The first of those bytes (up to one record), for the LSNs they may name.
    head: Vec<u8>,
}

/// The tails of the open segment's main copy and mirror (in that order). Past the durable end lies zero-filled
/// space the store wrote ([`wal::OpenSegment::zeroed_end`]) and then, if anything, bytes it did not: within the
/// zeroed space only non-zero bytes count (up to the last of them), and everything past it counts. A torn write
/// starts at the durable end, so the zeroed space is read from there in growing windows (64 KiB first) only as far
/// as non-zero bytes reach a window's end: a clean tail costs one small read per copy, never the whole space.
fn copy_tails(seg: &wal::OpenSegment, record_bytes_max: u64) -> Vec<CopyTail> {
    use std::os::unix::fs::FileExt;
    const WINDOW: u64 = 64 << 10;
    // The zero-fill helper held while the tails are read: no chunk is half written meanwhile.
    let (len, room) = (seg.len, seg.ahead.hold());
    let read = |f: &std::fs::File, n: u64| {
        let mut b = vec![0u8; n as usize];
        let got = f.read_at(&mut b, len).unwrap_or(0);
        b.truncate(got);
        b
    };
    let tails = std::iter::once(&seg.file)
        .chain(seg.mirror.as_ref())
        .map(|f| {
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            let head_max = record_bytes_max + 64;
            let within = size.min(room).saturating_sub(len);
            let mut win = within.min(WINDOW);
            let mut head = read(f, win);
            while wal::nonzero_end(&head) as u64 == win && win < within {
                win = (win * 4).min(within);
                head = read(f, win);
            }
            let bytes = if size > room {
                size - len
            } else {
                wal::nonzero_end(&head) as u64
            };
            if (head.len() as u64) < bytes.min(head_max) {
                head = read(f, bytes.min(head_max));
            }
            head.truncate(head_max.min(bytes) as usize);
            CopyTail { bytes, head }
        })
        .collect();
    seg.ahead.release(None);
    tails
}

/// A document of a batch refused as bad input, the refusal naming it (so a caller can name its line); other errors
/// as they are.
fn refused_in_batch(id: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::InvalidInput(m) => StoreError::InvalidInput(format!("document {id:?}: {m}")),
        e @ StoreError::TooLarge { .. } => {
            StoreError::InvalidInput(format!("document {id:?}: {e}"))
        }
        e => e,
    }
}
