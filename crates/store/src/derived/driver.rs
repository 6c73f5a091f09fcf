//! [`DerivedSet`]: the indexes attached to a store and the thread (`medic-derived`) that drives them.
//!
//! The driver takes the [`Feed`](super::feed::Feed) in LSN order and applies it to every index; persists each index
//! when [`PERSIST_EVERY_MS`] passed or [`PERSIST_EVERY_CHANGES`] changes arrived since its last persist (never per
//! document); catches an index up through the store's one replay of the log when it is behind (just attached, the
//! feed overflowed, an apply failed for want of a resource) and rebuilds it from the table when the log no longer
//! covers its applied LSN, when the index holds an LSN the log does not, or when it says it is damaged. Nothing is
//! rebuilt while the store is degraded (acknowledged records lost). A current index is asked for its cheap
//! [`DerivedIndex::quick_check`] every [`QUICK_CHECK_MS`] (damaged: rebuilt). A persist that failed and made the
//! index drop its unpersisted changes (its applied LSN went down) leaves it `behind`: `seen` goes down to what it
//! kept, so a strong search waits for it (or is answered from the table), and it is caught up from the log again
//! once a persist succeeds.
//!
//! Invariants:
//! - An index only ever receives durable changes, in strictly increasing LSN order, each at most once (a change
//!   it dropped in a failed persist is given again, above its lowered applied LSN).
//! - `seen` (per index) is the highest LSN the driver handled for it: applied, or deliberately skipped (ids under
//!   [`RESERVED_ID_PREFIX`](crate::store::RESERVED_ID_PREFIX) belong to medic itself and are never indexed). What a
//!   reader of the index sees is "the collection as of `seen`". It goes down only when the index dropped changes
//!   in a failed persist (to the applied LSN the index kept).
//! - The driver holds the store only through a `Weak`, upgraded for one catch-up or rebuild at a time, so dropping
//!   the last handle of the store ends the thread.
//! - Lock order: a slot's `work` lock, then the store's locks; the set's `slots` lock is held only to clone the list.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::feed::{FEED_RECORDS_MAX, Feed, FeedItem};
use super::{Agreement, Change, DEFAULT_COLLECTION, DerivedError, DerivedIndex, Structure, Truth};
use crate::codec::{self, KIND_PUT};
use crate::collection;
use crate::error::StoreError;
use crate::store::{RESERVED_ID_PREFIX, Store};

/// An index is persisted once this long has passed since its last persist (if it changed).
pub const PERSIST_EVERY_MS: u64 = 250;
/// ... or once this many changes arrived since its last persist.
pub const PERSIST_EVERY_CHANGES: u64 = 1_000;
/// Records the driver takes from the feed at a time.
const TAKE_MAX: usize = 4_096;
/// Changes given to an index per `apply` call (bounded memory during a catch-up).
const APPLY_CHUNK: usize = 1_024;
/// After a failed catch-up, rebuild or persist, the next try waits this long.
const RETRY_MS: u64 = 1_000;
/// How long the driver waits on an empty feed before it looks at its indexes again.
const IDLE_WAIT_MS: u64 = 50;
/// A current index's [`DerivedIndex::quick_check`] is asked at most this often.
pub const QUICK_CHECK_MS: u64 = 200;

/// Where an index stands, as [`DerivedSet::status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexState {
    /// Following the feed.
    Current,
    /// Needs a catch-up from the log (just attached, the feed overflowed, an apply failed).
    Behind,
    /// Needs a rebuild from the table (the index said so, or the log no longer covers it).
    Damaged,
}

/// One index's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexStatus {
    /// The collection.
    pub collection: String,
    /// The index's name.
    pub name: String,
    /// Its directory, relative to the data directory.
    pub dir: String,
    /// The highest LSN handled: what a reader sees.
    pub applied_lsn: u64,
    /// The highest LSN persisted in its files.
    pub persisted_lsn: u64,
    /// The log's last durable LSN.
    pub log_lsn: u64,
    /// LSNs between the applied one and the log's head.
    pub lag_records: u64,
    /// Current, behind or damaged.
    pub state: IndexState,
    /// Why it is behind or damaged, or the last error (a refused change, a failed persist).
    pub last_error: Option<String>,
    /// Catch-ups from the log since attach.
    pub catch_ups: u64,
    /// Rebuilds from the table since attach.
    pub rebuilds: u64,
    /// Persists since attach.
    pub persists: u64,
    /// Changes applied since the last persist (written out within `PERSIST_EVERY_MS` or `PERSIST_EVERY_CHANGES`;
    /// a restart catches them up from the log meanwhile).
    #[serde(default)]
    pub unpersisted_changes: u64,
    /// Changes refused by the index (named in `last_error`).
    pub refused: u64,
    /// The index's structure as last measured by the engine's `derived.structure` check (`None`: not measured
    /// yet, or the index has none worth measuring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<Structure>,
}

/// The status of every attached index and of the feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DerivedStatus {
    /// Per index.
    pub indexes: Vec<IndexStatus>,
    /// Records waiting in the feed.
    pub feed_records: usize,
    /// The feed's bound.
    pub feed_records_max: usize,
    /// Batches dropped because the feed was full (each followed by a catch-up from the log).
    pub feed_dropped_batches: u64,
}

/// A read-your-writes wait that ran out of time, naming the index and its lag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "index {collection}/{name} has applied LSN {applied}, {lag} record(s) behind LSN {wanted}, after waiting {waited_ms} ms{state}"
)]
pub struct LagError {
    /// The collection.
    pub collection: String,
    /// The lagging index.
    pub name: String,
    /// What it has applied.
    pub applied: u64,
    /// What was waited for.
    pub wanted: u64,
    /// `wanted - applied`.
    pub lag: u64,
    /// How long the wait lasted.
    pub waited_ms: u64,
    /// `" (behind: why)"` when the index is not current.
    pub state: String,
}

#[derive(Debug)]
struct SlotState {
    state: IndexState,
    last_error: Option<String>,
    retry_at: Option<Instant>,
    persisted_at: Instant,
    /// When the last [`DerivedIndex::quick_check`] was asked.
    checked_at: Instant,
    changes_since_persist: u64,
    catch_ups: u64,
    rebuilds: u64,
    persists: u64,
    refused: u64,
    structure: Option<Structure>,
    /// Lag tracking for the engine: an LSN the index had not reached, and since when.
    pub(crate) pending: Option<(u64, Instant)>,
}

/// One attached index and what the driver knows of it.
pub(crate) struct Slot {
    pub(crate) index: Arc<dyn DerivedIndex>,
    /// Held while the index is changed or checked (apply, catch-up, rebuild, persist, check).
    work: Mutex<()>,
    seen: AtomicU64,
    st: Mutex<SlotState>,
    /// Set by [`DerivedSet::detach`] under `work`: the driver leaves the index alone from then on.
    detached: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Slot {
    fn seen(&self) -> u64 {
        self.seen
            .load(Ordering::Acquire)
            .max(self.index.applied_lsn())
    }

    fn set_seen(&self, lsn: u64) {
        self.seen.fetch_max(lsn, Ordering::AcqRel);
    }

    fn mark(&self, state: IndexState, why: String) {
        let mut s = lock(&self.st);
        if s.state != IndexState::Damaged {
            s.state = state;
        }
        s.last_error = Some(why);
    }

    fn key(&self) -> (String, String) {
        (
            self.index.collection().to_string(),
            self.index.name().to_string(),
        )
    }
}

struct Shared {
    feed: Arc<Feed>,
    slots: RwLock<Vec<Arc<Slot>>>,
    applied_lock: Mutex<()>,
    applied: Condvar,
}

/// The derived indexes of one store and the thread driving them. See the module doc.
pub struct DerivedSet {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: Mutex<Option<std::thread::ThreadId>>,
}

impl std::fmt::Debug for DerivedSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedSet")
            .field("indexes", &self.names())
            .finish_non_exhaustive()
    }
}

impl Default for DerivedSet {
    fn default() -> Self {
        DerivedSet::new()
    }
}

impl DerivedSet {
    /// An empty set with an inactive feed of [`FEED_RECORDS_MAX`] records.
    pub fn new() -> DerivedSet {
        DerivedSet::with_feed_capacity(FEED_RECORDS_MAX)
    }

    /// An empty set whose feed holds at most `capacity` records (tests use a tiny one).
    pub fn with_feed_capacity(capacity: usize) -> DerivedSet {
        DerivedSet {
            shared: Arc::new(Shared {
                feed: Arc::new(Feed::new(capacity)),
                slots: RwLock::new(Vec::new()),
                applied_lock: Mutex::new(()),
                applied: Condvar::new(),
            }),
            thread: Mutex::new(None),
            thread_id: Mutex::new(None),
        }
    }

    /// The feed the commit leader publishes to.
    pub fn feed(&self) -> &Feed {
        &self.shared.feed
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.shared
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn slot(&self, collection: &str, name: &str) -> Option<Arc<Slot>> {
        self.slots()
            .into_iter()
            .find(|s| s.index.collection() == collection && s.index.name() == name)
    }

    /// `collection/name` of every attached index.
    pub fn names(&self) -> Vec<String> {
        self.slots()
            .iter()
            .map(|s| format!("{}/{}", s.index.collection(), s.index.name()))
            .collect()
    }

    /// The attached index `name` of `collection`.
    pub fn index(&self, collection: &str, name: &str) -> Option<Arc<dyn DerivedIndex>> {
        self.slot(collection, name).map(|s| s.index.clone())
    }

    /// The LSN a reader of index `name` sees (`None`: not attached).
    pub fn applied_lsn(&self, collection: &str, name: &str) -> Option<u64> {
        self.slot(collection, name).map(|s| s.seen())
    }

    /// Attaches `index`: the driver catches it up from the log (or rebuilds it) and then follows the feed. An index
    /// of the same collection and name is refused.
    pub(crate) fn attach(
        &self,
        store: Weak<Store>,
        index: Arc<dyn DerivedIndex>,
    ) -> Result<(), StoreError> {
        if index.collection() != DEFAULT_COLLECTION {
            let exists = store.upgrade().is_some_and(|s| {
                s.collection(index.collection())
                    .ok()
                    .flatten()
                    .is_some_and(|c| c.state == crate::collection::CollectionState::Ready)
            });
            if !exists {
                return Err(StoreError::UnknownCollection(format!(
                    "index {}/{}: no collection {:?}",
                    index.collection(),
                    index.name(),
                    index.collection()
                )));
            }
        }
        {
            let mut slots = self.shared.slots.write().unwrap_or_else(|p| p.into_inner());
            if slots
                .iter()
                .any(|s| s.key() == (index.collection().into(), index.name().into()))
            {
                return Err(StoreError::InvalidInput(format!(
                    "index {}/{} is already attached",
                    index.collection(),
                    index.name()
                )));
            }
            let seen = index.applied_lsn();
            slots.push(Arc::new(Slot {
                index,
                work: Mutex::new(()),
                seen: AtomicU64::new(seen),
                detached: std::sync::atomic::AtomicBool::new(false),
                st: Mutex::new(SlotState {
                    state: IndexState::Behind,
                    last_error: Some("attached: catching up from the log".into()),
                    retry_at: None,
                    persisted_at: Instant::now(),
                    checked_at: Instant::now(),
                    changes_since_persist: 0,
                    catch_ups: 0,
                    rebuilds: 0,
                    persists: 0,
                    refused: 0,
                    structure: None,
                    pending: None,
                }),
            }));
        }
        self.shared.feed.activate();
        let mut t = lock(&self.thread);
        if t.is_none() && !self.shared.feed.stopping() {
            let shared = self.shared.clone();
            let h = std::thread::Builder::new()
                .name("medic-derived".into())
                .spawn(move || run(shared, store))
                .map_err(|e| StoreError::io("starting the medic-derived thread", e))?;
            *lock(&self.thread_id) = Some(h.thread().id());
            *t = Some(h);
        }
        Ok(())
    }

    /// Detaches the index `name` of `collection` (its collection is dropped): waits for the work in progress on
    /// it, after which the driver never touches it again; the caller may then remove its files. `None` when no
    /// such index is attached.
    pub fn detach(&self, collection: &str, name: &str) -> Option<Arc<dyn DerivedIndex>> {
        let slot = {
            let mut slots = self.shared.slots.write().unwrap_or_else(|p| p.into_inner());
            let i = slots
                .iter()
                .position(|s| s.index.collection() == collection && s.index.name() == name)?;
            slots.remove(i)
        };
        let _w = lock(&slot.work);
        slot.detached.store(true, Ordering::Release);
        Some(slot.index.clone())
    }

    /// Stops the driver: it persists every index and ends. Waits for it unless called on the driver's own thread.
    /// Idempotent.
    pub fn stop(&self) {
        self.shared.feed.request_stop();
        let own = *lock(&self.thread_id) == Some(std::thread::current().id());
        if own {
            return;
        }
        if let Some(h) = lock(&self.thread).take() {
            let _joined = h.join();
        }
    }

    /// Waits until every attached index has applied `lsn` (read-your-writes), at most `timeout`.
    pub fn wait_applied(&self, lsn: u64, timeout: Duration) -> Result<(), LagError> {
        self.wait_applied_by(lsn, timeout, |_, _| true)
    }

    /// Where the index `collection`/`name` stands (`None`: not attached); [`DerivedSet::status`] for one index,
    /// without its figures.
    pub fn state(&self, collection: &str, name: &str) -> Option<IndexState> {
        self.slot(collection, name)
            .map(|s| lock(&s.st).state.clone())
    }

    /// [`DerivedSet::wait_applied`] for the indexes `wanted(collection, name)` picks only: a search waits for the
    /// indexes that answer it, not for an unrelated one being rebuilt.
    pub fn wait_applied_by(
        &self,
        lsn: u64,
        timeout: Duration,
        wanted: impl Fn(&str, &str) -> bool,
    ) -> Result<(), LagError> {
        let t0 = Instant::now();
        let mut g = lock(&self.shared.applied_lock);
        loop {
            let lagging = self.slots().into_iter().find(|s| {
                // An index `behind` and about to be caught up (just attached, the feed overflowed) has not
                // shown it holds `lsn`, whatever LSN it reopened at: waited for too. One whose catch-up failed
                // (a retry pending) is not: the caller answers from the table.
                let catching_up = || {
                    let st = lock(&s.st);
                    st.state == IndexState::Behind && st.retry_at.is_none()
                };
                (s.seen() < lsn || catching_up()) && wanted(s.index.collection(), s.index.name())
            });
            let Some(slot) = lagging else {
                return Ok(());
            };
            let waited = t0.elapsed();
            if waited >= timeout || self.shared.feed.stopping() {
                let applied = slot.seen();
                let st = lock(&slot.st);
                let state = match (&st.state, &st.last_error) {
                    (IndexState::Current, _) => String::new(),
                    (s, why) => format!(
                        " ({}: {})",
                        serde_json::to_value(s)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        why.as_deref().unwrap_or("")
                    ),
                };
                let (collection, name) = slot.key();
                return Err(LagError {
                    collection,
                    name,
                    applied,
                    wanted: lsn,
                    lag: lsn.saturating_sub(applied),
                    waited_ms: waited.as_millis() as u64,
                    state,
                });
            }
            let left = (timeout - waited).min(Duration::from_millis(IDLE_WAIT_MS));
            g = self
                .shared
                .applied
                .wait_timeout(g, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The status of every index, against the log's head.
    pub fn status(&self) -> DerivedStatus {
        let log = self.shared.feed.log_lsn();
        let indexes = self
            .slots()
            .iter()
            .map(|s| {
                let applied = s.seen();
                let st = lock(&s.st);
                IndexStatus {
                    collection: s.index.collection().to_string(),
                    name: s.index.name().to_string(),
                    dir: super::index_dir_rel(s.index.collection(), s.index.name()),
                    applied_lsn: applied,
                    persisted_lsn: s.index.persisted_lsn(),
                    log_lsn: log.max(applied),
                    lag_records: log.saturating_sub(applied),
                    state: st.state.clone(),
                    last_error: st.last_error.clone(),
                    catch_ups: st.catch_ups,
                    rebuilds: st.rebuilds,
                    persists: st.persists,
                    unpersisted_changes: st.changes_since_persist,
                    refused: st.refused,
                    structure: st.structure.clone(),
                }
            })
            .collect();
        DerivedStatus {
            indexes,
            feed_records: self.shared.feed.len(),
            feed_records_max: FEED_RECORDS_MAX,
            feed_dropped_batches: self.shared.feed.dropped_batches(),
        }
    }

    /// Marks every index for a rebuild (the table's versions changed without the log: a loss was accepted).
    pub(crate) fn invalidate_all(&self, why: &str) {
        for s in self.slots() {
            let mut st = lock(&s.st);
            st.state = IndexState::Damaged;
            st.last_error = Some(why.to_string());
            st.retry_at = None;
        }
        self.shared.feed.request_wake();
    }

    /// Catches index `name` up from the log now (or rebuilds it when the log no longer covers it). The engine's
    /// `derived_catch_up` strategy.
    pub fn catch_up(&self, store: &Store, collection: &str, name: &str) -> Result<u64, StoreError> {
        let slot = self
            .slot(collection, name)
            .ok_or_else(|| not_attached(collection, name))?;
        let _w = lock(&slot.work);
        sync(store, &slot, false)
    }

    /// Rebuilds index `name` from the table now (refused while the store is degraded). The engine's
    /// `derived_rebuild` strategy.
    pub fn rebuild(&self, store: &Store, collection: &str, name: &str) -> Result<u64, StoreError> {
        let slot = self
            .slot(collection, name)
            .ok_or_else(|| not_attached(collection, name))?;
        let _w = lock(&slot.work);
        sync(store, &slot, true)
    }

    /// Checks index `name` against a truth sampled from the table (`sample_max` ids). Applying waits meanwhile, so
    /// the index holds still while it is compared.
    pub fn check(
        &self,
        store: &Store,
        collection: &str,
        name: &str,
        sample_max: usize,
        seed: u64,
    ) -> Result<(Truth, Agreement), StoreError> {
        let slot = self
            .slot(collection, name)
            .ok_or_else(|| not_attached(collection, name))?;
        let _w = lock(&slot.work);
        let mut truth = store.derived_truth(collection, sample_max, seed);
        // Everything up to the table's LSN handled: the collection is as of the index's applied LSN (later LSNs
        // were medic's own documents, skipped).
        if slot.seen() >= truth.lsn {
            truth.lsn = slot.index.applied_lsn();
        }
        let agreement = slot.index.check(&truth).map_err(derived_err)?;
        Ok((truth, agreement))
    }

    /// Measures index `name`'s structure ([`DerivedIndex::structure`]) with applying held still, and keeps it for
    /// [`DerivedSet::status`].
    pub fn structure(&self, collection: &str, name: &str) -> Result<Option<Structure>, StoreError> {
        let slot = self
            .slot(collection, name)
            .ok_or_else(|| not_attached(collection, name))?;
        let _w = lock(&slot.work);
        let structure = slot.index.structure();
        lock(&slot.st).structure.clone_from(&structure);
        Ok(structure)
    }

    /// Repairs the structural problem `code` of index `name` in place ([`DerivedIndex::repair_structure`]) and
    /// measures the structure again; returns what was done. The engine's `derived_restructure` strategy.
    pub fn repair_structure(
        &self,
        collection: &str,
        name: &str,
        code: &str,
    ) -> Result<(String, Option<Structure>), StoreError> {
        let slot = self
            .slot(collection, name)
            .ok_or_else(|| not_attached(collection, name))?;
        let _w = lock(&slot.work);
        let done = slot.index.repair_structure(code).map_err(derived_err)?;
        let structure = slot.index.structure();
        lock(&slot.st).structure.clone_from(&structure);
        Ok((done, structure))
    }

    /// For the engine's lag check: per index `(collection, name, applied, log, state, seconds behind)`, where
    /// "seconds behind" is how long an LSN the log held has not been applied.
    pub fn lag(&self, log_lsn: u64) -> Vec<Lag> {
        let now = Instant::now();
        self.slots()
            .iter()
            .map(|s| {
                let applied = s.seen();
                let mut st = lock(&s.st);
                st.pending = match st.pending {
                    Some((target, since)) if applied < target => Some((target, since)),
                    _ if applied < log_lsn => Some((log_lsn, now)),
                    _ => None,
                };
                let (collection, name) = s.key();
                Lag {
                    collection,
                    name,
                    applied,
                    log_lsn,
                    state: st.state.clone(),
                    last_error: st.last_error.clone(),
                    behind_for: st.pending.map_or(Duration::ZERO, |(_, since)| now - since),
                }
            })
            .collect()
    }
}

/// One index's lag, for the engine.
#[derive(Clone, Debug)]
pub struct Lag {
    /// The collection.
    pub collection: String,
    /// The index.
    pub name: String,
    /// What it has applied.
    pub applied: u64,
    /// The log's head.
    pub log_lsn: u64,
    /// Its state.
    pub state: IndexState,
    /// Why, if not current.
    pub last_error: Option<String>,
    /// How long an LSN the log held has been waiting to be applied.
    pub behind_for: Duration,
}

fn not_attached(collection: &str, name: &str) -> StoreError {
    StoreError::InvalidInput(format!("no index {collection}/{name} is attached"))
}

/// An index's error as the store's; an I/O error keeps its kind and errno (a full disk stays a full disk, which a
/// repair treats as the environment refusing, not as a failure).
fn derived_err(e: DerivedError) -> StoreError {
    match e {
        DerivedError::Io {
            index,
            context,
            source,
        } => StoreError::io(format!("derived index {index}: {context}"), source),
        other => StoreError::io("derived index", std::io::Error::other(other.to_string())),
    }
}

/// The driver's loop. See the module doc.
fn run(shared: Arc<Shared>, store: Weak<Store>) {
    loop {
        let items = shared
            .feed
            .take(TAKE_MAX, Duration::from_millis(IDLE_WAIT_MS));
        let stopping = shared.feed.stopping();
        let slots = shared
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if shared.feed.take_behind() {
            for s in &slots {
                s.mark(
                    IndexState::Behind,
                    "the change feed was full: catching up from the log".into(),
                );
            }
        }
        let changes = decode(&items);
        for s in &slots {
            drive(s, &store, &changes, stopping);
        }
        {
            let _g = lock(&shared.applied_lock);
            shared.applied.notify_all();
        }
        if stopping {
            return;
        }
    }
}

/// Feed items as changes; `None` for medic's own documents (skipped) and for a document that does not decode
/// (the index is then caught up from the log).
fn decode(items: &[FeedItem]) -> Vec<(u64, Option<Change>)> {
    let mut names: Vec<Arc<str>> = vec![Arc::from(DEFAULT_COLLECTION)];
    items
        .iter()
        .map(|it| {
            if it.id.starts_with(RESERVED_ID_PREFIX) {
                return (it.lsn, None);
            }
            let (c, id) = collection::split(&it.id);
            let collection = interned(&mut names, c);
            let doc = match &it.doc {
                None => None,
                Some(b) => match codec::decode_doc(b) {
                    Ok(d) => Some(Arc::new(d)),
                    Err(_) => return (it.lsn, None),
                },
            };
            (
                it.lsn,
                Some(Change {
                    lsn: it.lsn,
                    collection,
                    id: if collection::is_namespaced(&it.id) {
                        Arc::from(id)
                    } else {
                        it.id.clone()
                    },
                    doc,
                }),
            )
        })
        .collect()
}

/// The shared name `c` (collections are few: a linear search).
fn interned(names: &mut Vec<Arc<str>>, c: &str) -> Arc<str> {
    if let Some(n) = names.iter().find(|n| &***n == c) {
        return n.clone();
    }
    let n: Arc<str> = Arc::from(c);
    names.push(n.clone());
    n
}

/// One round for one index: catch up or rebuild if needed (and due), apply the new changes, persist if due.
fn drive(slot: &Slot, store: &Weak<Store>, changes: &[(u64, Option<Change>)], stopping: bool) {
    let _w = lock(&slot.work);
    if slot.detached.load(Ordering::Acquire) {
        return;
    }
    quick_check_if_due(slot);
    let (state, due) = {
        let st = lock(&slot.st);
        (
            st.state.clone(),
            st.retry_at.is_none_or(|t| Instant::now() >= t),
        )
    };
    if state != IndexState::Current && due && !stopping {
        let Some(store) = store.upgrade() else { return };
        let r = sync(&store, slot, state == IndexState::Damaged);
        drop(store);
        if r.is_err() {
            return;
        }
    }
    if lock(&slot.st).state == IndexState::Current {
        apply(slot, changes);
    }
    persist_if_due(slot, stopping);
}

/// Applies the changes above what the slot has seen.
fn apply(slot: &Slot, changes: &[(u64, Option<Change>)]) {
    let seen = slot.seen();
    let fresh: Vec<&(u64, Option<Change>)> = changes.iter().filter(|(l, _)| *l > seen).collect();
    let Some(&&(last, _)) = fresh.last() else {
        return;
    };
    let mine = slot.index.collection();
    let batch: Vec<Change> = fresh
        .iter()
        .filter_map(|(_, c)| c.clone())
        .filter(|c| &*c.collection == mine)
        .collect();
    for chunk in batch.chunks(APPLY_CHUNK) {
        if !apply_chunk(slot, chunk) {
            return;
        }
    }
    slot.set_seen(last);
}

/// Applies one chunk; `false` when the index fell behind or is damaged.
fn apply_chunk(slot: &Slot, chunk: &[Change]) -> bool {
    match slot.index.apply(chunk) {
        Ok(()) => {
            lock(&slot.st).changes_since_persist += chunk.len() as u64;
            true
        }
        Err(e @ DerivedError::Refused { .. }) => {
            let mut st = lock(&slot.st);
            st.changes_since_persist += chunk.len() as u64;
            st.refused += 1;
            st.last_error = Some(e.to_string());
            true
        }
        Err(e @ DerivedError::Damaged { .. }) => {
            let mut st = lock(&slot.st);
            st.state = IndexState::Damaged;
            st.last_error = Some(e.to_string());
            false
        }
        Err(e) => {
            let mut st = lock(&slot.st);
            if st.state != IndexState::Damaged {
                st.state = IndexState::Behind;
            }
            st.last_error = Some(e.to_string());
            st.retry_at = Some(Instant::now() + Duration::from_millis(RETRY_MS));
            false
        }
    }
}

fn persist_if_due(slot: &Slot, force: bool) {
    let due = {
        let st = lock(&slot.st);
        st.changes_since_persist > 0
            && (force
                || st.changes_since_persist >= PERSIST_EVERY_CHANGES
                || st.persisted_at.elapsed() >= Duration::from_millis(PERSIST_EVERY_MS))
    };
    if !due {
        return;
    }
    let applied = slot.index.applied_lsn();
    let r = slot.index.persist();
    let mut st = lock(&slot.st);
    st.persisted_at = Instant::now();
    match r {
        Ok(_) => {
            st.changes_since_persist = 0;
            st.persists += 1;
        }
        Err(e @ DerivedError::Damaged { .. }) => {
            st.state = IndexState::Damaged;
            st.last_error = Some(e.to_string());
        }
        Err(e) if slot.index.applied_lsn() < applied => {
            // The index dropped the changes it could not persist: behind until they are applied again from the
            // log (a strong search waits for it, or is answered from the table).
            slot.seen.store(slot.index.applied_lsn(), Ordering::Release);
            st.changes_since_persist = 0;
            if st.state != IndexState::Damaged {
                st.state = IndexState::Behind;
            }
            st.last_error = Some(format!(
                "persist failed, unpersisted changes dropped (caught up from the log): {e}"
            ));
            st.retry_at = Some(Instant::now() + Duration::from_millis(RETRY_MS));
        }
        Err(e) => st.last_error = Some(format!("persist failed (retried): {e}")),
    }
}

/// Asks a current index for its [`DerivedIndex::quick_check`], at most every [`QUICK_CHECK_MS`]; a damaged one is
/// marked for a rebuild (at once: no retry delay).
fn quick_check_if_due(slot: &Slot) {
    {
        let mut st = lock(&slot.st);
        if st.state != IndexState::Current
            || st.checked_at.elapsed() < Duration::from_millis(QUICK_CHECK_MS)
        {
            return;
        }
        st.checked_at = Instant::now();
    }
    if let Err(e @ DerivedError::Damaged { .. }) = slot.index.quick_check() {
        let mut st = lock(&slot.st);
        st.state = IndexState::Damaged;
        st.last_error = Some(e.to_string());
        st.retry_at = None;
    }
}

/// Brings the index level with the log: a catch-up through the store's replay, or a rebuild from the table when
/// `rebuild` is asked, the log no longer covers the index, or the index is ahead of the log. Returns the LSN
/// reached. The caller holds the slot's `work` lock.
fn sync(store: &Store, slot: &Slot, rebuild: bool) -> Result<u64, StoreError> {
    let rebuilt = |lsn| (lsn, Reached::Rebuilt);
    let r = if rebuild {
        rebuild_from_table(store, slot).map(rebuilt)
    } else {
        match catch_up_from_log(store, slot) {
            Ok(Some(reached)) => Ok(reached),
            Ok(None) => rebuild_from_table(store, slot).map(rebuilt),
            Err(e) if store.degraded() => Err(e),
            // The table holds every acknowledged record while the store is not degraded.
            Err(_) => rebuild_from_table(store, slot).map(rebuilt),
        }
    };
    let mut st = lock(&slot.st);
    match &r {
        // The catch-up's persist failed and the index dropped what it applied: still behind, retried.
        Ok((_, Reached::Dropped)) => {}
        Ok((lsn, reached)) => {
            // Current first, the LSN published after: whoever waited for the LSN finds the index current, never
            // "behind at N of N" while a catch-up's persist runs.
            st.state = IndexState::Current;
            st.last_error = None;
            st.retry_at = None;
            if *reached == Reached::Rebuilt {
                slot.seen.store(*lsn, Ordering::Release);
            } else {
                slot.set_seen(*lsn);
            }
        }
        Err(e) => {
            st.last_error = Some(e.to_string());
            st.retry_at = Some(Instant::now() + Duration::from_millis(RETRY_MS));
        }
    }
    drop(st);
    r.map(|(lsn, _)| lsn)
}

/// How [`sync`] reached its LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reached {
    /// Caught up from the log and persisted.
    CaughtUp,
    /// Caught up from the log, but the persist failed and the index dropped what it applied: still behind.
    Dropped,
    /// Rebuilt from the table at exactly that LSN.
    Rebuilt,
}

/// `Some((last, how))`: replayed up to `last` and persisted ([`Reached::CaughtUp`]) or the persist failed and the
/// index dropped what it applied ([`Reached::Dropped`]). The LSN is not published (`seen`) here: [`sync`] does, once
/// the index is current.
fn catch_up_from_log(store: &Store, slot: &Slot) -> Result<Option<(u64, Reached)>, StoreError> {
    let from = slot.seen();
    let mine: Arc<str> = Arc::from(slot.index.collection());
    let mut buf: Vec<Change> = Vec::new();
    let mut failed: Option<DerivedError> = None;
    let flush = |buf: &mut Vec<Change>, failed: &mut Option<DerivedError>| {
        if failed.is_none() && !buf.is_empty() {
            if let Err(e) = slot.index.apply(buf) {
                if matches!(e, DerivedError::Refused { .. }) {
                    let mut st = lock(&slot.st);
                    st.refused += 1;
                    st.last_error = Some(e.to_string());
                } else {
                    *failed = Some(e);
                }
            }
            lock(&slot.st).changes_since_persist += buf.len() as u64;
        }
        buf.clear();
    };
    let settings = collection::settings_key(&mine);
    let mut dropped = false;
    let cover = store.derived_replay_after(from, &mut |rec: codec::Record| {
        if rec.id == settings && rec.kind != KIND_PUT {
            // An earlier incarnation of the collection ended here (a drop); see below.
            dropped = true;
        }
        if rec.id.starts_with(RESERVED_ID_PREFIX) {
            return;
        }
        let (c, id) = collection::split(&rec.id);
        if c != &*mine {
            return;
        }
        let id: Arc<str> = Arc::from(id);
        let doc = if rec.kind == KIND_PUT {
            match codec::decode_doc(&rec.doc) {
                Ok(d) => Some(Arc::new(d)),
                Err(_) => None,
            }
        } else {
            None
        };
        buf.push(Change {
            lsn: rec.lsn,
            collection: mine.clone(),
            id,
            doc,
        });
        if buf.len() >= APPLY_CHUNK {
            flush(&mut buf, &mut failed);
        }
    })?;
    flush(&mut buf, &mut failed);
    if let Some(e) = failed {
        return match e {
            DerivedError::Damaged { .. } => Ok(None),
            other => Err(StoreError::io(
                "catching a derived index up",
                std::io::Error::other(other.to_string()),
            )),
        };
    }
    if dropped {
        // The log took the index through a drop of its collection: what the dropped incarnation left in it (the
        // dimension its vectors fixed) is not the new one's. Built again from the table instead.
        return Ok(None);
    }
    match cover {
        LogCover::Replayed { last } => {
            lock(&slot.st).catch_ups += 1;
            let applied = slot.index.applied_lsn();
            persist_if_due(slot, true);
            let how = if slot.index.applied_lsn() < applied {
                Reached::Dropped
            } else {
                Reached::CaughtUp
            };
            Ok(Some((last, how)))
        }
        LogCover::NotCovered { .. } | LogCover::Ahead { .. } => Ok(None),
    }
}

fn rebuild_from_table(store: &Store, slot: &Slot) -> Result<u64, StoreError> {
    let (lsn, docs) = store.derived_table(slot.index.collection())?;
    let mut it = docs.into_iter();
    slot.index.rebuild(&mut it, lsn).map_err(derived_err)?;
    // `seen` is published by [`sync`], once the index is current.
    let mut st = lock(&slot.st);
    st.rebuilds += 1;
    st.changes_since_persist = 0;
    st.persisted_at = Instant::now();
    st.pending = None;
    Ok(lsn)
}

/// What [`Store::derived_replay_after`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogCover {
    /// Every record above the asked LSN up to `last` was replayed.
    Replayed { last: u64 },
    /// The log starts after a snapshot at `snapshot_lsn`, above the asked LSN: rebuild from the table.
    NotCovered { snapshot_lsn: u64 },
    /// The asked LSN is above the log's last durable one (`last`): the index holds what the log does not.
    Ahead { last: u64 },
}
