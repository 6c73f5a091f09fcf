//! [`TextIndex`]: one collection's tantivy index under `idx/<collection>/text/`, kept in generations.
//!
//! Layout of the directory:
//! - `LOCK` — a kernel lock (`File::try_lock`) held while the index is open: a second writer, in this process or
//!   another, is refused; the lock goes with the process, so a crash leaves nothing to clean up;
//! - `CURRENT` — the name of the live generation (`gen-000007`), replaced atomically (temp file, fsync, rename,
//!   fsync of the directory);
//! - `gen-NNNNNN/` — a tantivy index; its commit payload holds `{"lsn", "rebuilt_lsn"}`;
//! - `quarantine-gen-NNNNNN/` — the last generation found damaged at open, kept for inspection (one at a time).
//!
//! A rebuild writes the next generation beside the live one, commits it, names it in `CURRENT`, then removes the
//! old one; a crash at any point leaves `CURRENT` naming a complete generation, and open removes the other
//! generation directories. Changes are buffered by tantivy's writer and become visible to searches at
//! [`DerivedIndex::persist`] (a commit, then a manual reload of the reader: read-your-writes without polling).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use store::derived::{
    Agreement, Change, DerivedError, DerivedIndex, Structure, StructureProblem, Truth,
    index_dir_rel,
};
use store::{Document, IoFaults};
use tantivy::collector::DocSetCollector;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyError, Term};

use crate::error::OpenError;
use crate::schema::{self, Fields};
use crate::settings::TextSettings;
use crate::tokens;
use crate::verify;

/// The index's name (its directory under `idx/<collection>/`).
pub const NAME: &str = "text";
/// Disagreements listed one by one before the rest are only counted.
const DISAGREEMENTS_MAX: usize = 16;
/// The structural problem of files in the index directory that nothing names ([`DerivedIndex::structure`]),
/// repaired by removing them.
pub const ORPHAN_FILES: &str = "orphan_files";
/// The structural problem of files `meta.json` names that are missing; only a rebuild repairs it.
pub const MISSING_FILES: &str = "missing_files";
/// A file nothing names is an orphan once it is this old (younger, it may be a temporary file of an atomic write).
pub const ORPHAN_AGE_MIN: std::time::Duration = std::time::Duration::from_secs(60);
/// The structural problem of the index directory replaced under the index (a file, a link, another directory, or
/// nothing at its path); only a rebuild repairs it, in a directory of its own (`claim`).
pub const DIRECTORY_REPLACED: &str = "directory_replaced";
/// Files named one by one in a problem's summary before the rest are only counted.
const FILES_NAMED_MAX: usize = 8;
/// tantivy refuses a writer buffer below 15 MB.
pub(crate) const WRITER_MEMORY_MIN_BYTES: usize = 15_000_000;

/// What the commit payload of a generation holds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Payload {
    /// Every change up to this LSN is in the commit.
    lsn: u64,
    /// The LSN of the last rebuild (0: never rebuilt); documents it indexed carry it as their version.
    rebuilt_lsn: u64,
}

/// How the index opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The generation directory in use.
    pub generation: PathBuf,
    /// Whether a persisted generation was loaded (false: started empty).
    pub loaded: bool,
    /// Why not, when there was something to load (damaged, with what and where).
    pub reason: Option<String>,
    /// The persisted LSN it opened with.
    pub applied_lsn: u64,
}

/// One generation: a tantivy index with its reader and writer.
pub(crate) struct Generation {
    pub(crate) number: u64,
    pub(crate) path: PathBuf,
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    /// Its directory, held by its descriptor: tantivy's files are written and looked at through it.
    pub(crate) held: crate::directory::HeldDirectory,
    /// The id columns of the segments searched.
    pub(crate) ids: crate::search::IdColumns,
    /// The stamps of the files its reader maps (`watch`).
    pub(crate) watch: crate::watch::Watch,
    /// `None` once the generation is retired.
    writer: Mutex<Option<IndexWriter>>,
}

/// A full-text index of one collection, derived from the store's log. See the module doc for its files.
///
/// Lock order: `write`, then `generation`, then a generation's `writer`.
pub struct TextIndex {
    collection: String,
    dir: PathBuf,
    pub(crate) settings: TextSettings,
    pub(crate) fields: Fields,
    faults: Arc<IoFaults>,
    /// The kernel lock on `LOCK` and the identity of the directory it is in (taken again when a rebuild has to
    /// claim a new directory).
    claim: Mutex<(File, crate::claim::Identity)>,
    /// Serializes apply, persist, check and rebuild.
    write: Mutex<()>,
    pub(crate) generation: RwLock<Arc<Generation>>,
    applied: AtomicU64,
    /// The highest `applied` ever was ([`TextIndex::applied_high`]).
    applied_high: AtomicU64,
    persisted: AtomicU64,
    rebuilt: AtomicU64,
    opened: OpenReport,
    /// The last scan's in-memory index ([`TextIndex::scan`]).
    pub(crate) scan_cache: crate::scan::ScanCache,
}

fn gen_name(n: u64) -> String {
    format!("gen-{n:06}")
}

fn parse_gen(name: &str) -> Option<u64> {
    name.strip_prefix("gen-")?.parse().ok()
}

fn io_err(path: &Path, context: &str, source: std::io::Error) -> OpenError {
    OpenError::Io {
        path: path.to_path_buf(),
        context: context.to_string(),
        source,
    }
}

/// Removes what a process killed in the middle of an atomic write left in a generation directory: tantivy writes
/// `meta.json` and its managed list to a temporary `.tmp…` file and renames it into place, so such a file is never
/// part of a committed state. Nothing else writes to the directory while it is opened (the index's lock), so none is
/// in use; a file that cannot be removed is left for the structure check, which reports it as an orphan.
fn remove_interrupted_writes(path: &Path) {
    let Ok(entries) = fs::read_dir(path) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp") && e.path().is_file() {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Reads a generation's persisted state; `Err` says what is damaged.
fn open_generation(path: &Path, writer_memory: usize) -> Result<(Generation, Payload), String> {
    remove_interrupted_writes(path);
    verify::meta_json_parses(path)?;
    let held = crate::directory::HeldDirectory::open(path).map_err(|e| e.to_string())?;
    let index = Index::open(held.clone()).map_err(|e| format!("meta.json: {e}"))?;
    let segs = verify::segments_of(&index)?;
    schema::fields_of(&index.schema())?;
    verify::files_present(path, &segs)?;
    let metas = index.load_metas().map_err(|e| format!("meta.json: {e}"))?;
    let payload = match metas.payload.as_deref() {
        Some(p) => serde_json::from_str::<Payload>(p)
            .map_err(|e| format!("meta.json: commit payload {p:?}: {e}"))?,
        None => return Err("meta.json: no commit payload (not a medic text index)".to_string()),
    };
    // Damaged segment files can make tantivy panic while opening them (a bad length in a file's header): damage,
    // not a failed open.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        generation_of(index, held, path, writer_memory)
    }));
    let generation = match opened {
        Ok(g) => g.map_err(|e| e.to_string())?,
        Err(_) => return Err("opening the segments failed (damaged files?)".to_string()),
    };
    // The first look stamps the files the reader maps.
    generation
        .watch
        .check(&generation.held, &generation.reader.searcher())?;
    Ok((generation, payload))
}

fn generation_of(
    index: Index,
    held: crate::directory::HeldDirectory,
    path: &Path,
    writer_memory: usize,
) -> tantivy::Result<Generation> {
    tokens::register(&index);
    let number = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_gen)
        .unwrap_or(0);
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let writer = index.writer_with_num_threads(1, writer_memory)?;
    Ok(Generation {
        number,
        path: path.to_path_buf(),
        index,
        reader,
        held,
        ids: crate::search::IdColumns::default(),
        watch: crate::watch::Watch::default(),
        writer: Mutex::new(Some(writer)),
    })
}

/// Creates an empty generation committed with `payload`.
fn create_generation(
    path: &Path,
    writer_memory: usize,
    payload: Payload,
) -> tantivy::Result<Generation> {
    if path.exists() {
        fs::remove_dir_all(path)?;
    }
    fs::create_dir_all(path)?;
    let dir = crate::directory::HeldDirectory::open(path)?;
    let index = Index::create(
        dir.clone(),
        schema::schema(),
        tantivy::IndexSettings::default(),
    )?;
    let g = generation_of(index, dir, path, writer_memory)?;
    commit(&g, payload)?;
    Ok(g)
}

/// Commits what the generation's writer holds with `payload`, then reloads the reader.
fn commit(g: &Generation, payload: Payload) -> tantivy::Result<()> {
    let mut w = lock(&g.writer);
    let writer = w
        .as_mut()
        .ok_or_else(|| TantivyError::InternalError("the generation is retired".to_string()))?;
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&serde_json::to_string(&payload).unwrap_or_default());
    prepared.commit()?;
    drop(w);
    if let Err(e) = g.reader.reload() {
        // A file the commit made visible does not read back as written (its checksum, a cut): the searcher keeps
        // the last good state, and the latch makes the quick check report the generation damaged (rebuilt).
        g.watch.latch(format!("reload after a commit: {e}"));
        return Err(e);
    }
    // Stamps the files the commit made visible. A difference found here is latched: the next quick check reports
    // it.
    let _latched = g.watch.check(&g.held, &g.reader.searcher());
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Generation {
    /// Stops the writer (waiting for its merges) so the directory can be removed.
    fn retire(&self) {
        if let Some(w) = lock(&self.writer).take() {
            // A merge that fails now changes nothing: the generation is going away.
            w.wait_merging_threads().ok();
        }
    }
}

impl TextIndex {
    /// Opens (or creates) the text index of `collection` under `data_dir/idx/<collection>/text/`. A damaged or
    /// unreadable generation is quarantined and the index opens empty (applied LSN 0), saying why in
    /// [`TextIndex::open_report`]: it is then caught up or rebuilt from the log like a new one.
    pub fn open(
        data_dir: &Path,
        collection: &str,
        settings: TextSettings,
    ) -> Result<TextIndex, OpenError> {
        Self::open_with(
            data_dir,
            collection,
            settings,
            Arc::new(IoFaults::default()),
        )
    }

    /// [`TextIndex::open`] with the store's I/O fault injector (used for `CURRENT`).
    pub fn open_with(
        data_dir: &Path,
        collection: &str,
        mut settings: TextSettings,
        faults: Arc<IoFaults>,
    ) -> Result<TextIndex, OpenError> {
        if collection.is_empty()
            || collection.len() > 255
            || collection.contains(['/', '\\', '\0'])
            || collection == "."
            || collection == ".."
        {
            return Err(OpenError::Collection(collection.to_string()));
        }
        settings.writer_memory_bytes = settings.writer_memory_bytes.max(WRITER_MEMORY_MIN_BYTES);
        let dir = data_dir.join(index_dir_rel(collection, NAME));
        let (lock_file, identity, moved) = crate::claim::claim_and_lock(&dir)?;
        let (generation, payload, mut report) = Self::load(&dir, &settings, &faults)?;
        if let Some(aside) = moved {
            report.reason = Some(format!(
                "{} was not a directory: moved aside to {}",
                dir.display(),
                aside.display()
            ));
        }
        Self::remove_others(&dir, generation.number);
        let fields =
            schema::fields_of(&generation.index.schema()).map_err(|reason| OpenError::Tantivy {
                path: generation.path.clone(),
                reason,
            })?;
        Ok(TextIndex {
            collection: collection.to_string(),
            dir,
            settings,
            fields,
            faults,
            claim: Mutex::new((lock_file, identity)),
            write: Mutex::new(()),
            generation: RwLock::new(Arc::new(generation)),
            applied: AtomicU64::new(payload.lsn),
            applied_high: AtomicU64::new(payload.lsn),
            persisted: AtomicU64::new(payload.lsn),
            rebuilt: AtomicU64::new(payload.rebuilt_lsn),
            opened: report,
            scan_cache: crate::scan::ScanCache::default(),
        })
    }

    /// Opens the generation `CURRENT` names, or quarantines it and creates an empty one.
    fn load(
        dir: &Path,
        settings: &TextSettings,
        faults: &IoFaults,
    ) -> Result<(Generation, Payload, OpenReport), OpenError> {
        let current = dir.join("CURRENT");
        let named = match fs::read_to_string(&current) {
            Ok(s) => match parse_gen(s.trim()) {
                Some(n) => Ok(Some(n)),
                None => Err(format!("CURRENT: {:?} names no generation", s.trim())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("CURRENT: {e}")),
        };
        let mut reason = None;
        match named {
            Ok(Some(n)) => {
                let path = dir.join(gen_name(n));
                match open_generation(&path, settings.writer_memory_bytes) {
                    Ok((g, payload)) => {
                        let report = OpenReport {
                            generation: path,
                            loaded: true,
                            reason: None,
                            applied_lsn: payload.lsn,
                        };
                        return Ok((g, payload, report));
                    }
                    Err(why) => {
                        reason = Some(format!("{}: {why}", path.display()));
                        Self::quarantine(dir, &path);
                    }
                }
            }
            Ok(None) => {}
            Err(why) => reason = Some(why),
        }
        let next = Self::highest_generation(dir) + 1;
        let path = dir.join(gen_name(next));
        let g = create_generation(&path, settings.writer_memory_bytes, Payload::default())
            .map_err(|e| OpenError::Tantivy {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Self::write_current(faults, dir, next).map_err(|e| io_err(&current, "write", e))?;
        let report = OpenReport {
            generation: path,
            loaded: false,
            reason,
            applied_lsn: 0,
        };
        Ok((g, Payload::default(), report))
    }

    fn highest_generation(dir: &Path) -> u64 {
        let mut max = 0;
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                let n = name.strip_prefix("quarantine-").unwrap_or(&name);
                if let Some(n) = parse_gen(n) {
                    max = max.max(n);
                }
            }
        }
        max
    }

    /// Moves a damaged generation aside (replacing an older quarantined one); removes it if that fails.
    fn quarantine(dir: &Path, path: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("quarantine-") {
                    let _gone = fs::remove_dir_all(e.path());
                }
            }
        }
        if let Some(name) = path.file_name() {
            let to = dir.join(format!("quarantine-{}", name.to_string_lossy()));
            if fs::rename(path, &to).is_err() {
                let _gone = fs::remove_dir_all(path);
            }
        }
    }

    /// Removes generation directories other than `keep` (left by a crash during a rebuild) and temp files.
    fn remove_others(dir: &Path, keep: u64) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if parse_gen(&name).is_some_and(|n| n != keep) {
                let _gone = fs::remove_dir_all(e.path());
            } else if name.starts_with("CURRENT") && name != "CURRENT" {
                let _gone = fs::remove_file(e.path());
            }
        }
    }

    fn write_current(faults: &IoFaults, dir: &Path, n: u64) -> std::io::Result<()> {
        store::io::write_file_atomic(
            faults,
            &dir.join("CURRENT"),
            format!("{}\n", gen_name(n)).as_bytes(),
        )
    }

    /// How the index opened.
    pub fn open_report(&self) -> &OpenReport {
        &self.opened
    }

    /// The index directory (`idx/<collection>/text`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The live generation's directory.
    pub fn generation_dir(&self) -> PathBuf {
        self.current().path.clone()
    }

    /// The settings the index was opened with.
    pub fn settings(&self) -> &TextSettings {
        &self.settings
    }

    /// The LSN searches see: the last persisted one.
    pub fn visible_lsn(&self) -> u64 {
        self.persisted.load(Ordering::Acquire)
    }

    /// Documents searches see.
    pub fn len(&self) -> u64 {
        self.current().reader.searcher().num_docs()
    }

    /// Whether searches see no document.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segments of the live generation (a shape figure: many small segments want a merge).
    pub fn segment_count(&self) -> usize {
        self.current().reader.searcher().segment_readers().len()
    }

    pub(crate) fn current(&self) -> Arc<Generation> {
        self.generation
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What is at the index directory's path instead of the directory opened, if anything.
    fn dir_replaced(&self) -> Option<String> {
        crate::claim::replaced(&self.dir, lock(&self.claim).1)
    }

    /// Makes the index directory the index's own again when something replaced it (before a rebuild writes there).
    fn reclaim(&self) -> Result<(), DerivedError> {
        let mut claim = lock(&self.claim);
        if crate::claim::identity(&self.dir) == Some(claim.1) {
            return Ok(());
        }
        let (file, identity, _moved) = crate::claim::claim_and_lock(&self.dir)
            .map_err(|e| self.damaged(format!("rebuild: {e}")))?;
        *claim = (file, identity);
        Ok(())
    }

    fn damaged(&self, reason: impl Into<String>) -> DerivedError {
        DerivedError::Damaged {
            index: self.label(),
            reason: reason.into(),
        }
    }

    fn label(&self) -> String {
        format!("{}/{NAME}", self.collection)
    }

    /// A tantivy error as the contract's: missing or corrupt files are damage, I/O is retryable.
    fn derived_error(&self, context: &str, e: TantivyError) -> DerivedError {
        match e {
            TantivyError::DataCorruption(_)
            | TantivyError::OpenReadError(_)
            | TantivyError::OpenDirectoryError(_)
            | TantivyError::IncompatibleIndex(_)
            | TantivyError::SchemaError(_) => self.damaged(format!("{context}: {e}")),
            TantivyError::IoError(io) => DerivedError::Io {
                index: self.label(),
                context: context.to_string(),
                source: same_io_error(&io),
            },
            TantivyError::OpenWriteError(tantivy::directory::error::OpenWriteError::IoError {
                io_error,
                filepath,
            }) => DerivedError::Io {
                index: self.label(),
                context: format!("{context}: {}", filepath.display()),
                source: same_io_error(&io_error),
            },
            other => DerivedError::Other {
                index: self.label(),
                reason: format!("{context}: {other}"),
            },
        }
    }

    /// The version (LSN) of each live document with `id` the searcher sees.
    fn versions_of(&self, searcher: &tantivy::Searcher, id: &str) -> tantivy::Result<Vec<u64>> {
        let q = TermQuery::new(
            Term::from_field_text(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        let docs = searcher.search(&q, &DocSetCollector)?;
        let mut out = Vec::with_capacity(docs.len());
        for addr in docs {
            let seg = searcher.segment_reader(addr.segment_ord);
            let col = seg.fast_fields().u64(schema::VERSION)?;
            out.push(col.first(addr.doc_id).unwrap_or(0));
        }
        Ok(out)
    }

    /// Verifies the live generation's files with plain reads: every damaged or missing file described; `Err` when
    /// `meta.json` itself is unreadable.
    pub fn verify_files(&self) -> Result<Vec<String>, DerivedError> {
        let g = self.current();
        let segs = verify::read_metas(&g.path)
            .map_err(|why| self.damaged(format!("{}: {why}", g.path.display())))?;
        Ok(verify::damage(&g.path, &segs))
    }

    /// Whether the files the live generation's reader opened are still on disk as they were committed (`watch`: a
    /// `statx` of each, no read); `Err(Damaged)` names the first that changed under the open index (or a reload
    /// that found a file not as written), latched: the driver rebuilds the index. Searches meanwhile go on
    /// answering from the bytes read and checked when the segments were opened.
    pub fn files_intact(&self) -> Result<(), DerivedError> {
        let g = self.current();
        g.watch
            .check(&g.held, &g.reader.searcher())
            .map_err(|why| self.damaged(format!("{}: {why}", g.path.display())))
    }

    /// The highest LSN the index ever applied. A failed persist drops the changes it could not commit
    /// ([`DerivedIndex::applied_lsn`] goes back to the persisted LSN until the driver applies them again from the
    /// log); this never goes back, so a strong search waits until it is visible
    /// ([`TextIndex::visible_lsn`]) and never takes the persisted state for what was applied.
    pub fn applied_high(&self) -> u64 {
        self.applied_high.load(Ordering::Acquire)
    }

    fn rollback_to_persisted(&self, g: &Generation) {
        let mut guard = lock(&g.writer);
        if let Some(w) = guard.as_mut() {
            // A failed rollback leaves tantivy's writer without its directory lock, and a second rollback panics
            // inside tantivy ("does not have any lock"): the writer is retired instead, so the next apply or persist
            // reports the generation damaged and the index is rebuilt.
            let ok =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.rollback().is_ok()))
                    .unwrap_or(false);
            if !ok {
                *guard = None;
            }
        }
        drop(guard);
        // What was buffered is gone either way (rolled back, or with the retired writer).
        self.applied
            .store(self.persisted.load(Ordering::Acquire), Ordering::Release);
    }

    /// The live generation's files against its `meta.json`, and the entries of the index directory that are
    /// neither `LOCK`, `CURRENT`, the live generation nor a quarantined one (a generation a crash left, a temporary
    /// file), as orphans once [`ORPHAN_AGE_MIN`] old. `Err`: `meta.json` cannot be read.
    fn inventory(&self) -> Result<verify::Inventory, String> {
        let g = self.current();
        let mut inv = verify::inventory(&g.path, ORPHAN_AGE_MIN)
            .map_err(|why| format!("{}: {why}", g.path.display()))?;
        let live = gen_name(g.number);
        let now = std::time::SystemTime::now();
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name == "LOCK"
                    || name == "CURRENT"
                    || name == live
                    || name.starts_with("quarantine-gen-")
                {
                    continue;
                }
                let old_enough = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= ORPHAN_AGE_MIN);
                if old_enough {
                    inv.orphans.push(e.path());
                }
            }
        }
        Ok(inv)
    }

    /// `names` relative to the index directory, the first few of them.
    fn named(&self, paths: impl Iterator<Item = String>, n: usize) -> String {
        let mut out: Vec<String> = paths.take(FILES_NAMED_MAX).collect();
        if n > FILES_NAMED_MAX {
            out.push(format!("and {} more", n - FILES_NAMED_MAX));
        }
        out.join(", ")
    }

    fn build_generation(
        &self,
        number: u64,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<Generation, DerivedError> {
        let path = self.dir.join(gen_name(number));
        let payload = Payload {
            lsn,
            rebuilt_lsn: lsn,
        };
        let g = create_generation(&path, self.settings.writer_memory_bytes, Payload::default())
            .map_err(|e| self.derived_error("rebuild: create", e))?;
        {
            let w = lock(&g.writer);
            let writer = w
                .as_ref()
                .ok_or_else(|| self.damaged("rebuild: no writer"))?;
            for (id, doc) in docs {
                let d = schema::document(&self.fields, &id, &doc.text, doc.meta.as_ref(), lsn);
                writer
                    .add_document(d)
                    .map_err(|e| self.derived_error("rebuild: add", e))?;
            }
        }
        commit(&g, payload).map_err(|e| self.derived_error("rebuild: commit", e))?;
        Ok(g)
    }
}

impl DerivedIndex for TextIndex {
    fn name(&self) -> &str {
        NAME
    }

    fn collection(&self) -> &str {
        &self.collection
    }

    fn applied_lsn(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    fn persisted_lsn(&self) -> u64 {
        self.persisted.load(Ordering::Acquire)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), DerivedError> {
        let _w = lock(&self.write);
        let g = self.current();
        let mut guard = lock(&g.writer);
        let writer = guard
            .as_mut()
            .ok_or_else(|| self.damaged("the generation is retired"))?;
        for c in changes {
            if c.lsn <= self.applied.load(Ordering::Acquire) {
                continue;
            }
            if &*c.collection == self.collection.as_str() {
                writer.delete_term(Term::from_field_text(self.fields.id, &c.id));
                if let Some(doc) = &c.doc {
                    let d =
                        schema::document(&self.fields, &c.id, &doc.text, doc.meta.as_ref(), c.lsn);
                    if let Err(e) = writer.add_document(d) {
                        drop(guard);
                        let err = self.derived_error("apply", e);
                        self.rollback_to_persisted(&g);
                        return Err(err);
                    }
                }
            }
            self.applied.store(c.lsn, Ordering::Release);
            self.applied_high.fetch_max(c.lsn, Ordering::AcqRel);
        }
        Ok(())
    }

    fn quick_check(&self) -> Result<(), DerivedError> {
        self.files_intact()
    }

    fn persist(&self) -> Result<u64, DerivedError> {
        let _w = lock(&self.write);
        let applied = self.applied.load(Ordering::Acquire);
        let persisted = self.persisted.load(Ordering::Acquire);
        if applied == persisted {
            return Ok(persisted);
        }
        if let Some(why) = self.dir_replaced() {
            // Committing would write through whatever is there now (a link: another index's files).
            return Err(self.damaged(why));
        }
        // What a commit and its merges read of the segments is checked bytes in memory (`directory`), but its
        // reload and a restart open files again: a change on disk found now is rebuilt before either meets it.
        self.files_intact()?;
        let g = self.current();
        if lock(&g.writer).is_none() {
            // Retired after a failed rollback: only a rebuild gives the index a writer again.
            return Err(self.damaged("the generation's writer is retired"));
        }
        let payload = Payload {
            lsn: applied,
            rebuilt_lsn: self.rebuilt.load(Ordering::Acquire),
        };
        if let Err(e) = commit(&g, payload) {
            let err = self.derived_error("persist", e);
            self.rollback_to_persisted(&g);
            return Err(err);
        }
        self.persisted.store(applied, Ordering::Release);
        Ok(applied)
    }

    fn check(&self, truth: &Truth) -> Result<Agreement, DerivedError> {
        let _w = lock(&self.write);
        let damage = self.verify_files()?;
        let g = self.current();
        let searcher = g.reader.searcher();
        let count = searcher.num_docs();
        if !damage.is_empty() {
            // Reading damaged files tells nothing more, and may fail: the damage is the finding.
            return Ok(Agreement {
                count,
                disagreements: Vec::new(),
                damage,
            });
        }
        let visible = self.persisted.load(Ordering::Acquire);
        let rebuilt = self.rebuilt.load(Ordering::Acquire);
        let mut disagreements = Vec::new();
        if visible == truth.lsn && count != truth.count {
            disagreements.push(format!(
                "count: table has {} documents at LSN {}, index {count}",
                truth.count, truth.lsn
            ));
        }
        let mut wrong = 0usize;
        for (id, vt) in &truth.sample {
            let versions = self
                .versions_of(&searcher, id)
                .map_err(|e| self.derived_error("check", e))?;
            let ok = match versions.as_slice() {
                [] => Truth::versions_agree(None, visible, rebuilt, *vt, truth.lsn),
                [vi] => Truth::versions_agree(Some(*vi), visible, rebuilt, *vt, truth.lsn),
                _ => false,
            };
            if !ok {
                wrong += 1;
                if disagreements.len() < DISAGREEMENTS_MAX {
                    disagreements.push(format!(
                        "id {id:?}: table has version {vt:?} at LSN {}, index {versions:?} at LSN {visible}",
                        truth.lsn
                    ));
                }
            }
        }
        if wrong > 0 && disagreements.len() >= DISAGREEMENTS_MAX {
            disagreements.push(format!("{wrong} sampled ids disagree in all"));
        }
        Ok(Agreement {
            count,
            disagreements,
            damage,
        })
    }

    fn rebuild(
        &self,
        docs: &mut dyn Iterator<Item = (Arc<str>, Arc<Document>)>,
        lsn: u64,
    ) -> Result<(), DerivedError> {
        let _w = lock(&self.write);
        self.reclaim()?;
        let old = self.current();
        let number = old.number.max(Self::highest_generation(&self.dir)) + 1;
        let g = match self.build_generation(number, docs, lsn) {
            Ok(g) => g,
            Err(e) => {
                let _gone = fs::remove_dir_all(self.dir.join(gen_name(number)));
                return Err(e);
            }
        };
        if let Err(e) = Self::write_current(&self.faults, &self.dir, number) {
            g.retire();
            let _gone = fs::remove_dir_all(&g.path);
            return Err(DerivedError::Io {
                index: self.label(),
                context: "rebuild: write CURRENT".to_string(),
                source: e,
            });
        }
        *self.generation.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(g);
        self.applied.store(lsn, Ordering::Release);
        self.applied_high.fetch_max(lsn, Ordering::AcqRel);
        self.persisted.store(lsn, Ordering::Release);
        self.rebuilt.store(lsn, Ordering::Release);
        old.retire();
        // Searches still holding the old generation read its bytes in memory; they go with the last of them.
        let _gone = fs::remove_dir_all(&old.path);
        Ok(())
    }

    /// Figures `segments`, `documents`, `deleted_documents`, `files`, `orphan_files`, `missing_files`, `scan_ms`;
    /// problems [`ORPHAN_FILES`] (removed by [`DerivedIndex::repair_structure`]) and [`MISSING_FILES`] (also
    /// when `meta.json` itself cannot be read; only a rebuild repairs it).
    fn structure(&self) -> Option<Structure> {
        let _w = lock(&self.write);
        let t0 = std::time::Instant::now();
        let g = self.current();
        let searcher = g.reader.searcher();
        let mut s = Structure::default();
        if let Some(why) = self.dir_replaced() {
            s.problems.push(StructureProblem {
                code: DIRECTORY_REPLACED.into(),
                summary: format!(
                    "{why}: the index is rebuilt from the table in a directory of its own"
                ),
            });
            return Some(s);
        }
        let deleted: u64 = searcher
            .segment_readers()
            .iter()
            .map(|r| u64::from(r.num_deleted_docs()))
            .sum();
        s.figures
            .insert("segments".into(), searcher.segment_readers().len() as f64);
        s.figures
            .insert("documents".into(), searcher.num_docs() as f64);
        s.figures.insert("deleted_documents".into(), deleted as f64);
        let rel = |p: &Path| p.strip_prefix(&self.dir).unwrap_or(p).display().to_string();
        match self.inventory() {
            Ok(inv) => {
                s.figures.insert("files".into(), inv.files as f64);
                s.figures
                    .insert("orphan_files".into(), inv.orphans.len() as f64);
                s.figures
                    .insert("missing_files".into(), inv.missing.len() as f64);
                if !inv.orphans.is_empty() {
                    s.problems.push(StructureProblem {
                        code: ORPHAN_FILES.into(),
                        summary: format!(
                            "{} file(s) in {} that meta.json does not name: {}",
                            inv.orphans.len(),
                            index_dir_rel(&self.collection, NAME),
                            self.named(inv.orphans.iter().map(|p| rel(p)), inv.orphans.len())
                        ),
                    });
                }
                if !inv.missing.is_empty() {
                    s.problems.push(StructureProblem {
                        code: MISSING_FILES.into(),
                        summary: format!(
                            "{} file(s) meta.json of {} names are missing: {}",
                            inv.missing.len(),
                            rel(&g.path),
                            self.named(inv.missing.iter().cloned(), inv.missing.len())
                        ),
                    });
                }
            }
            Err(why) => s.problems.push(StructureProblem {
                code: MISSING_FILES.into(),
                summary: format!("the live generation cannot be listed: {why}"),
            }),
        }
        s.figures
            .insert("scan_ms".into(), t0.elapsed().as_secs_f64() * 1e3);
        Some(s)
    }

    fn repair_structure(&self, code: &str) -> Result<String, DerivedError> {
        if code != ORPHAN_FILES {
            return Err(DerivedError::Other {
                index: self.label(),
                reason: format!(
                    "no repair in place for {code:?} (only {ORPHAN_FILES}: the index is rebuilt from the table)"
                ),
            });
        }
        let _w = lock(&self.write);
        let inv = self.inventory().map_err(|why| self.damaged(why))?;
        let mut removed = Vec::new();
        for p in &inv.orphans {
            let r = if p.is_dir() {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            };
            match r {
                Ok(()) => {
                    removed.push(p.strip_prefix(&self.dir).unwrap_or(p).display().to_string())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(DerivedError::Io {
                        index: self.label(),
                        context: format!("removing the orphan {}", p.display()),
                        source: e,
                    });
                }
            }
        }
        let n = removed.len();
        Ok(format!(
            "removed {n} orphan file(s): {}",
            self.named(removed.into_iter(), n)
        ))
    }
}

/// A copy of a shared I/O error with its errno (which a kind and a message alone would lose: `too many open files`
/// has no kind of its own), so the store can tell a full disk or a lack of descriptors from damage.
fn same_io_error(e: &std::io::Error) -> std::io::Error {
    e.raw_os_error().map_or_else(
        || std::io::Error::new(e.kind(), e.to_string()),
        std::io::Error::from_raw_os_error,
    )
}
