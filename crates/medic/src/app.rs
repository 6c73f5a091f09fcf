//! The wired application: the store, the engine and the knowledge base, opened together from a [`Config`]. Used by
//! the daemon and by offline CLI commands.
//!
//! [`App::open`] opens the store in the data directory (the store recovers at open: torn tails cut, manifest copies
//! restored, blocks rebuilt from parity, issues queued for the engine), the SQLite knowledge base
//! `<data>/medic.sqlite3`, and builds the engine over a [`StoreSubject`]. The engine sits behind a mutex; every
//! method here is blocking and meant for `spawn_blocking` in async code. Views for the API are JSON values built
//! from the engine's and the store's own serde types.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use heal::clock::{Clock, SystemClock, Timestamp, US_PER_MS, US_PER_S};
use heal::engine::{Engine, IncidentStatus};
use heal::escalate::Notifier;
use heal::learn::{IncidentRecord, KnowledgeBase};
use heal::{HealthState, Subject, Tier};
use serde::Serialize;
use serde_json::{Value, json};
use store::{IoFaults, Store, StoreConfig, StoreSubject};

use crate::config::Config;
use crate::daemon::metrics::Snapshot;
use crate::kb::SqliteKb;
use crate::machine::{MemoryGuard, ProcessProbe, ProcfsProbe};
use crate::probe::{MedicSubject, SyntheticProbe};

/// The knowledge base's file name inside the data directory.
pub const KB_FILE: &str = "medic.sqlite3";

/// Metric history is pruned at most this often.
const PRUNE_INTERVAL_US: u64 = 60 * US_PER_S;

/// What `GET /health` reports: cheap, never waits on a running healing cycle.
#[derive(Debug, Clone, Serialize)]
pub struct ShallowHealth {
    /// Whether the daemon serves requests (false when the store stopped writing or the state is CRITICAL).
    pub serving: bool,
    /// The health state from the latest checks, or `UNKNOWN` while a healing cycle holds the engine.
    pub state: String,
    /// Why the store refuses writes, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<String>,
    /// The cause of `read_only`, for machines: `disk_space`, `lost`, `crisis`, `writer_doubt`, `opened`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_cause: Option<String>,
    /// Why the store stopped writing for good, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poisoned: Option<String>,
    /// Documents stored.
    pub documents: usize,
}

#[derive(Debug, Default)]
struct Schedule {
    last_deep_us: Option<Timestamp>,
    last_comprehensive_us: Option<Timestamp>,
    last_prune_us: Option<Timestamp>,
}

/// The notifiers `notify` asks for, and the router of `escalation`'s policies, each muted by the operators'
/// `silences`.
pub(crate) fn notifiers(
    notify: &crate::config::NotifyConfig,
    escalation: &crate::notify::EscalationConfig,
    silences: &crate::operators::SilenceSet,
    levels: Option<(
        Arc<dyn crate::notify::route::LevelMemory>,
        std::collections::BTreeSet<u64>,
    )>,
) -> anyhow::Result<Vec<Box<dyn Notifier>>> {
    let silenced = |n: Box<dyn Notifier>| -> Box<dyn Notifier> {
        Box::new(crate::operators::Silenced::new(n, silences.clone()))
    };
    let mut out = Vec::new();
    if notify.log {
        out.push(silenced(Box::new(crate::notify::LogNotifier)));
    }
    if let Some(url) = &notify.webhook_url {
        let options = crate::notify::WebhookOptions {
            timeout: std::time::Duration::from_millis(notify.webhook_timeout_ms),
            ca_pem: None,
            format: notify.webhook_format,
            headers: notify
                .webhook_headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            routing_key: notify.pagerduty_routing_key.clone(),
            retries: notify.webhook_retries,
        };
        let ca = notify
            .webhook_ca_file
            .as_deref()
            .map(|p| ("notify.webhook_ca_file", p));
        out.push(silenced(Box::new(crate::notify::webhook(
            url, ca, options,
        )?)));
    }
    if let Some(path) = &notify.file {
        let file = crate::notify::FileNotifier::new(path, notify.file_bytes_max)?;
        out.push(silenced(Box::new(file)));
    }
    if let Some(router) = crate::notify::Router::new(escalation, silenced)? {
        if let Some((kb, followed)) = levels {
            let taken = router.remember(kb, |id| followed.contains(&id));
            if taken > 0 {
                tracing::info!("{taken} escalation(s) go on at the level they had reached");
            }
        }
        out.push(Box::new(router));
    }
    Ok(out)
}

/// The attached indexes of one named collection (those its settings keep).
#[derive(Clone, Default)]
pub struct CollectionIndexes {
    /// Its vectors' metric.
    pub metric: store::collection::Metric,
    /// Exact vector search.
    pub flat: Option<Arc<index_vector::FlatIndex>>,
    /// Approximate vector search (a graph).
    pub hnsw: Option<Arc<index_vector::HnswIndex>>,
    /// Approximate vector search (k-means lists); served instead of `hnsw` when the collection keeps it.
    pub ivf: Option<Arc<index_vector::IvfIndex>>,
    /// Full-text search.
    pub text: Option<Arc<index_text::TextIndex>>,
}

/// The store, the engine and the knowledge base, opened together.
pub struct App {
    config: Config,
    store: Arc<Store>,
    subject: Arc<crate::probe::MedicSubject>,
    /// The process's readings (resident memory, CPU, files, threads).
    process: Arc<dyn ProcessProbe>,
    /// The memory-pressure gate of large writes.
    memory: Arc<MemoryGuard>,
    /// The synthetic probe, when `checks.probe` is on.
    probe: Option<Arc<SyntheticProbe>>,
    kb: Arc<SqliteKb>,
    /// The damaged knowledge base moved aside at open, if it was.
    kb_recreated: Option<crate::kb::KbRecreated>,
    engine: Mutex<Engine>,
    clock: Arc<dyn Clock>,
    started_at_us: Timestamp,
    schedule: Mutex<Schedule>,
    last_health: Mutex<Option<HealthState>>,
    /// Repairs running now, readable while a cycle holds the engine.
    in_flight: heal::engine::RepairsInFlight,
    /// The last status computed with the engine free: answered (with live repairs in flight) while a cycle runs.
    last_status: Mutex<Option<Value>>,
    /// The exact vector index the daemon serves searches from, once attached ([`App::attach_indexes`]).
    flat: std::sync::OnceLock<Arc<index_vector::FlatIndex>>,
    /// The HNSW vector index vector searches are served from by default, once attached.
    hnsw: std::sync::OnceLock<Arc<index_vector::HnswIndex>>,
    /// The full-text index, once attached ([`App::attach_indexes`] or, offline, [`App::text_index`]).
    text: std::sync::OnceLock<Arc<index_text::TextIndex>>,
    /// Held while an index is opened and attached, so two callers never open one directory twice.
    attaching: Mutex<()>,
    /// The attached indexes of every named collection but `default` (whose are `flat`, `hnsw`, `text`).
    collections: std::sync::RwLock<std::collections::BTreeMap<String, CollectionIndexes>>,
    /// Operators' silences in force, shared with the notifiers.
    silences: crate::operators::SilenceSet,
    /// Opened read-only ([`App::open_read_only`]): the temporary directory holding the copy of the knowledge base
    /// this process records into (removed at exit); the data directory's own file is never written.
    kb_copy: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("data_dir", &self.config.server.data_dir)
            .finish_non_exhaustive()
    }
}

fn state_name(s: HealthState) -> &'static str {
    crate::daemon::metrics::state_label(s)
}

/// The store's configuration for `config`: its constraint bounds mapped onto the store's.
pub fn store_config(config: &Config) -> StoreConfig {
    let c = &config.constraints;
    StoreConfig {
        wal_bytes_max: c.wal_bytes_max,
        disk_low_bytes_floor: c.disk_free_bytes_min,
        disk_critical_bytes_floor: c.disk_free_critical_bytes_min,
        segment_bytes_max: c.segment_bytes_max.min(c.wal_bytes_max),
        ..StoreConfig::default()
    }
}

impl App {
    /// Opens the store (recovering it), the knowledge base and the engine.
    pub fn open(config: &Config) -> anyhow::Result<App> {
        Self::open_with_faults(config, Arc::new(IoFaults::default()))
    }

    /// Like [`App::open`], with the store's I/O going through `faults` (out-of-space quota, latency, failing
    /// fsync) so tests and the chaos harness can drive the whole program into those conditions.
    pub fn open_with_faults(config: &Config, faults: Arc<IoFaults>) -> anyhow::Result<App> {
        Self::open_mode(config, faults, false)
    }

    /// Opens the data directory for a command that changes nothing (`status`, `check`, `heal --dry-run`, `get`,
    /// `search`, `incidents`, `report`): not a byte of it is written. The store opens read-only
    /// ([`Store::open_read_only`]: nothing created or repaired, what open would repair reported as issues, refused
    /// with `Locked` while a writer holds the directory); the knowledge base is copied to a temporary directory and
    /// the engine records into the copy, which goes at exit.
    pub fn open_read_only(config: &Config) -> anyhow::Result<App> {
        Self::open_mode(config, Arc::new(IoFaults::default()), true)
    }

    fn open_mode(config: &Config, faults: Arc<IoFaults>, read_only: bool) -> anyhow::Result<App> {
        let dir: PathBuf = config.server.data_dir.clone();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let started_at_us = clock.now();
        let store_config = StoreConfig {
            io: faults,
            ..store_config(config)
        };
        let store = if read_only {
            Store::open_read_only(&dir, store_config)
        } else {
            Store::open(&dir, store_config)
        }
        .with_context(|| format!("opening the store in {}", dir.display()))?;
        let store = Arc::new(store);
        let report = store.recovery_report();
        if !report.created {
            tracing::info!(
                last_lsn = report.last_lsn,
                records_replayed = report.records_replayed,
                issues = report.issues.len(),
                "store recovered in {} µs",
                report.duration_us
            );
        }
        for issue in &report.issues {
            tracing::warn!(code = %issue.code, resource = %issue.resource, "found at open: {}", issue.summary);
        }
        let kb_path = dir.join(KB_FILE);
        let kb_copy = if read_only {
            Some(copy_kb(&kb_path)?)
        } else {
            None
        };
        let kb_open = kb_copy
            .as_ref()
            .map_or(kb_path.clone(), |t| t.path().join(KB_FILE));
        let (kb, mut kb_recreated) = SqliteKb::open_or_recreate(&kb_open, started_at_us)
            .with_context(|| "opening the knowledge base".to_string())?;
        if let (Some(r), true) = (&mut kb_recreated, read_only) {
            // The copy was moved aside, not the file: name the file, which stays as found.
            r.damaged_file = kb_path.clone();
            r.moved_to = kb_path.clone();
            r.moved.clear();
        }
        if let Some(r) = &kb_recreated {
            tracing::warn!(
                damaged = %r.damaged_file.display(),
                moved_to = %r.moved_to.display(),
                "the knowledge base was damaged ({}); it was moved to {} and a fresh one started at {}: \
                 incident history and strategy statistics start over, documents are unaffected",
                r.reason,
                r.moved_to.display(),
                r.damaged_file.display()
            );
        }
        let kb = Arc::new(kb);
        let process: Arc<dyn ProcessProbe> = Arc::new(ProcfsProbe);
        let memory = Arc::new(MemoryGuard::new(
            Box::new(ProcfsProbe),
            config.server.memory_limit_bytes,
            config.server.large_write_bytes_min,
        ));
        let probe = config.checks.probe.then(|| {
            Arc::new(SyntheticProbe::new(
                store.clone(),
                std::time::Duration::from_millis(config.checks.probe_step_ms_max),
                config.checks.probe_interval_ms,
            ))
        });
        let subject = Arc::new(
            MedicSubject::new(
                Arc::new(StoreSubject::new(store.clone())),
                process.clone(),
                probe.clone(),
            )
            .with_repair_timeout(std::time::Duration::from_micros(
                config.engine.repair_timeout_us,
            )),
        );
        // The Alertmanager alerts firing when the program stopped fire on (before the engine's first check).
        match kb.saved_alerts_firing() {
            Ok(rows) if !rows.is_empty() => {
                let n = subject.alert_inbox().restore(rows);
                tracing::info!(firing = n, "Alertmanager alerts still firing taken back");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("the Alertmanager alerts firing before the stop are lost: {e}")
            }
        }
        let engine = Engine::new(
            subject.clone() as Arc<dyn Subject>,
            kb.clone() as Arc<dyn KnowledgeBase>,
            clock.clone(),
            config.engine.clone(),
        )
        .context("building the healing engine")?;
        let mut engine = engine;
        engine.set_check_timeouts(config.checks.timeouts());
        // Every notifier is muted by the operators' silences (kept in the knowledge base).
        let silences = crate::operators::SilenceSet::default();
        let followed = engine.followups().keys().copied().collect();
        let levels = Some((
            kb.clone() as Arc<dyn crate::notify::route::LevelMemory>,
            followed,
        ));
        for notifier in notifiers(&config.notify, &config.escalation, &silences, levels)? {
            engine.add_notifier(notifier);
        }
        // Silences without repair and maintenance windows make automatic repairs wait.
        let windows = crate::maintenance::compile_all(&config.maintenance)
            .map_err(|e| anyhow::anyhow!("config: {e}"))?;
        engine.set_repair_holds(vec![Arc::new(crate::maintenance::Holds::new(
            silences.clone(),
            windows,
        ))]);
        Ok(App {
            config: config.clone(),
            store,
            subject,
            process,
            memory,
            probe,
            kb,
            kb_recreated,
            in_flight: engine.repairs_in_flight(),
            last_status: Mutex::new(None),
            engine: Mutex::new(engine),
            clock,
            started_at_us,
            schedule: Mutex::new(Schedule::default()),
            last_health: Mutex::new(None),
            flat: std::sync::OnceLock::new(),
            hnsw: std::sync::OnceLock::new(),
            text: std::sync::OnceLock::new(),
            attaching: Mutex::new(()),
            collections: std::sync::RwLock::new(std::collections::BTreeMap::new()),
            silences,
            kb_copy,
        })
        .and_then(|app| {
            app.reload_silences()
                .map_err(|e| anyhow::anyhow!("reading silences from the knowledge base: {e}"))?;
            Ok(app)
        })
    }

    /// Switches the engine's dry-run mode (a configuration reload); waits for a running cycle to end.
    pub fn set_dry_run(&self, dry_run: bool) {
        self.engine().set_dry_run(dry_run);
    }

    /// Replaces the notifiers with those `notify` asks for (a configuration reload). Nothing changes when one cannot
    /// be built (a CA file that cannot be read, a bad URL): the error says why.
    pub fn set_notifiers(&self, notify: &crate::config::NotifyConfig) -> anyhow::Result<()> {
        let mut engine = self.engine();
        let followed = engine.followups().keys().copied().collect();
        let levels = Some((
            self.kb.clone() as Arc<dyn crate::notify::route::LevelMemory>,
            followed,
        ));
        let fresh = notifiers(notify, &self.config.escalation, &self.silences, levels)?;
        engine.set_notifiers(fresh);
        Ok(())
    }

    /// The time now on the app's clock, µs since the epoch.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The alerts a fleet's Alertmanager reports firing.
    pub fn alert_inbox(&self) -> &Arc<crate::alertmanager::AlertInbox> {
        self.subject.alert_inbox()
    }

    /// Takes one Alertmanager notification into the inbox and keeps the inbox in the knowledge base, so a restart
    /// forgets no alert still firing (a failure to keep it is logged: the alert is taken all the same).
    pub fn receive_alerts(
        &self,
        payload: crate::alertmanager::Payload,
    ) -> Result<crate::alertmanager::Received, String> {
        let inbox = self.alert_inbox();
        let received = inbox.receive(payload)?;
        if let Err(e) = self.kb.replace_alerts_firing(&inbox.saved()) {
            tracing::warn!("the Alertmanager alerts firing are not kept across a restart: {e}");
        }
        Ok(received)
    }

    /// The operators' silences in force.
    pub fn silence_set(&self) -> &crate::operators::SilenceSet {
        &self.silences
    }

    /// Each repair strategy's estimated risk on `issue`.
    pub fn strategy_risks(&self, issue: &heal::Issue) -> Vec<(String, f64)> {
        self.subject
            .strategies()
            .iter()
            .map(|s| (s.name().to_string(), s.estimate(issue).risk))
            .collect()
    }

    /// The strategies that can repair `issue`, with the risk each estimates (a diagnostic bundle's suggestions).
    pub fn repair_options(&self, issue: &heal::Issue) -> Vec<(String, f64)> {
        self.subject
            .strategies()
            .iter()
            .filter(|s| s.can_repair(issue))
            .map(|s| (s.name().to_string(), s.estimate(issue).risk))
            .collect()
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Loads the playbooks of `[playbooks] dir` (every one checked against `[[targets]]`; any error refuses, naming
    /// file and line), starts the `[[targets]]` (process targets are spawned) and adds them to what the engine
    /// watches. The daemon calls it once at start; offline commands never do (they start no process).
    pub fn attach_targets(&self) -> anyhow::Result<()> {
        let catalog = crate::target::catalog(&self.config.targets);
        let playbooks = match &self.config.playbooks.dir {
            Some(dir) => crate::playbook::load_dir(dir, &catalog).map_err(|errors| {
                let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                anyhow::anyhow!(
                    "refusing to start: {} invalid playbook{} in {}:\n{}",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    dir.display(),
                    list.join("\n")
                )
            })?,
            None => Vec::new(),
        };
        if self.config.targets.is_empty() && playbooks.is_empty() {
            return Ok(());
        }
        let targets = crate::target::Targets::start(&self.config.targets, &playbooks)?;
        tracing::info!(
            targets = self.config.targets.len(),
            playbooks = playbooks.len(),
            "targets attached"
        );
        self.subject
            .attach_targets(Arc::new(targets))
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Stops the targets' supervised processes (the daemon stops).
    pub fn stop_targets(&self) {
        if let Some(t) = self.subject.targets() {
            t.stop();
        }
    }

    /// Attaches the derived indexes the daemon serves from, all of the collection `default`: the exact `flat` vector
    /// index (`idx/default/flat/`, `"exact": true` searches), the `hnsw` vector index (`idx/default/hnsw/`, vector
    /// searches by default) and the `text` index (`idx/default/text/`, full-text searches). The store's
    /// `medic-derived` thread catches each up from the log, or rebuilds it from the table, then follows every
    /// commit. Offline commands attach only the text index, when they search by text ([`App::text_index`]).
    pub fn attach_indexes(&self) -> anyhow::Result<()> {
        let _g = self.attaching.lock().unwrap_or_else(|p| p.into_inner());
        if self.flat.get().is_none() {
            let flat = index_vector::FlatIndex::open(
                self.store.dir(),
                store::derived::DEFAULT_COLLECTION,
                index_vector::Metric::Cosine,
                self.store.config().io.clone(),
            )
            .context("opening the flat vector index")?;
            if let Some(why) = &flat.open_report().reason {
                tracing::info!(
                    "flat vector index: {why}; catching up or rebuilding from the store"
                );
            }
            let flat = Arc::new(flat);
            self.store
                .attach_derived(flat.clone())
                .context("attaching the flat vector index")?;
            self.flat.get_or_init(|| flat);
        }
        if self.hnsw.get().is_none() {
            let hnsw = index_vector::HnswIndex::open(
                self.store.dir(),
                store::derived::DEFAULT_COLLECTION,
                index_vector::HnswParams::default(),
                self.store.config().io.clone(),
            )
            .context("opening the hnsw vector index")?;
            if let Some(why) = &hnsw.open_report().reason {
                tracing::info!(
                    "hnsw vector index: {why}; catching up or rebuilding from the store"
                );
            }
            let hnsw = Arc::new(hnsw);
            self.store
                .attach_derived(hnsw.clone())
                .context("attaching the hnsw vector index")?;
            self.hnsw.get_or_init(|| hnsw);
        }
        self.attach_text_locked()?;
        drop(_g);
        self.attach_collections()
    }

    /// Attaches the declared indexes of every named collection (metric and fields from its settings), and
    /// finishes the drop of any collection a crash left `dropping`. Part of [`App::attach_indexes`].
    fn attach_collections(&self) -> anyhow::Result<()> {
        for c in self.store.collections()? {
            if c.name == store::collection::DEFAULT {
                continue;
            }
            match c.state {
                store::CollectionState::Ready => self.attach_collection(&c)?,
                store::CollectionState::Dropping => {
                    tracing::info!(collection = %c.name, "finishing the drop a restart interrupted");
                    self.drop_collection(&c.name)?;
                }
            }
        }
        Ok(())
    }

    /// Opens and attaches the indexes `c` keeps (`idx/<c>/{flat,hnsw,ivf,text}`), unless attached already.
    fn attach_collection(&self, c: &store::CollectionInfo) -> anyhow::Result<()> {
        let _g = self.attaching.lock().unwrap_or_else(|p| p.into_inner());
        self.attach_collection_locked(c)
    }

    /// [`App::attach_collection`] with `attaching` held by the caller.
    fn attach_collection_locked(&self, c: &store::CollectionInfo) -> anyhow::Result<()> {
        use store::collection::IndexKind;
        if self.collection_indexes(&c.name).is_some() {
            return Ok(());
        }
        let metric = vector_metric(c.settings.metric);
        let io = self.store.config().io.clone();
        let mut ix = CollectionIndexes {
            metric: c.settings.metric,
            ..CollectionIndexes::default()
        };
        if c.settings.keeps(IndexKind::Flat) {
            let flat = Arc::new(
                index_vector::FlatIndex::open(self.store.dir(), &c.name, metric, io.clone())
                    .with_context(|| format!("opening the flat index of {}", c.name))?,
            );
            self.store.attach_derived(flat.clone())?;
            ix.flat = Some(flat);
        }
        if c.settings.keeps(IndexKind::Hnsw) {
            let params = index_vector::HnswParams {
                metric,
                recall_floor: c.settings.recall_floor,
                ..index_vector::HnswParams::default()
            };
            let hnsw = Arc::new(
                index_vector::HnswIndex::open(self.store.dir(), &c.name, params, io.clone())
                    .with_context(|| format!("opening the hnsw index of {}", c.name))?,
            );
            self.store.attach_derived(hnsw.clone())?;
            ix.hnsw = Some(hnsw);
        }
        if c.settings.keeps(IndexKind::Ivf) {
            let params = index_vector::IvfParams {
                metric,
                lists: c.settings.ivf.lists as usize,
                probes: c.settings.ivf.probes as usize,
                recall_floor: c.settings.recall_floor,
                ..index_vector::IvfParams::default()
            };
            let ivf = Arc::new(
                index_vector::IvfIndex::open(self.store.dir(), &c.name, params, io.clone())
                    .with_context(|| format!("opening the ivf index of {}", c.name))?,
            );
            self.store.attach_derived(ivf.clone())?;
            ix.ivf = Some(ivf);
        }
        if c.settings.keeps(IndexKind::Text) {
            let fields = c
                .settings
                .fields
                .iter()
                .map(|(n, k)| {
                    let kind = match k {
                        store::collection::FieldKind::Keyword => index_text::FieldKind::Keyword,
                        store::collection::FieldKind::Integer => index_text::FieldKind::Integer,
                        store::collection::FieldKind::Float => index_text::FieldKind::Float,
                        store::collection::FieldKind::Bool => index_text::FieldKind::Bool,
                    };
                    (n.clone(), kind)
                })
                .collect();
            let settings = index_text::TextSettings {
                fields,
                ..index_text::TextSettings::default()
            };
            let text = Arc::new(
                index_text::TextIndex::open_with(self.store.dir(), &c.name, settings, io)
                    .with_context(|| format!("opening the text index of {}", c.name))?,
            );
            self.store.attach_derived(text.clone())?;
            ix.text = Some(text);
        }
        self.collections
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.name.clone(), ix);
        Ok(())
    }

    /// Attaches the indexes of the named collection `name` (an offline search of it), unless attached.
    pub fn attach_collection_indexes(&self, name: &str) -> anyhow::Result<()> {
        let info = self
            .store
            .collection(name)?
            .filter(|c| c.state == store::CollectionState::Ready)
            .ok_or_else(|| anyhow::anyhow!("no collection {name:?}"))?;
        self.attach_collection(&info)
    }

    /// The attached indexes of the named collection `c` (not `default`).
    pub fn collection_indexes(&self, c: &str) -> Option<CollectionIndexes> {
        self.collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(c)
            .cloned()
    }

    /// Creates the collection `name` in the store and, in a daemon (indexes attached), attaches its indexes.
    pub fn create_collection(
        &self,
        name: &str,
        settings: store::CollectionSettings,
    ) -> Result<store::Created, store::StoreError> {
        let created = self.store.create_collection(name, settings)?;
        if self.flat.get().is_some()
            && name != store::collection::DEFAULT
            && let Some(info) = self.store.collection(name)?
            && let Err(e) = self.attach_collection(&info)
        {
            tracing::warn!(collection = name, "attaching its indexes failed: {e:#}");
        }
        Ok(created)
    }

    /// Drops the collection `name`: its indexes detached first (nothing indexes what is being deleted), its
    /// documents and settings deleted through the log ([`Store::drop_collection`]), then `idx/<name>/` removed.
    /// Returns the documents deleted. A drop refused before it begins (`default`, a bad or unknown name) touches no
    /// index; one the store refuses after the detach (read-only, say) attaches the same indexes again.
    pub fn drop_collection(&self, name: &str) -> Result<u64, store::StoreError> {
        if name == store::collection::DEFAULT {
            return Err(store::StoreError::InvalidInput(
                "the collection \"default\" cannot be dropped".into(),
            ));
        }
        store::collection::validate_name(name)?;
        if self.store.collection(name)?.is_none() {
            return Err(store::StoreError::UnknownCollection(format!(
                "no collection {name:?}"
            )));
        }
        // Held through the drop: the `derived.attached` check's repair never attaches what is being dropped.
        let _g = self.attaching.lock().unwrap_or_else(|p| p.into_inner());
        let removed = self
            .collections
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let mut detached = Vec::new();
        for index in ["flat", "hnsw", "ivf", "text"] {
            detached.extend(self.store.derived().detach(name, index));
        }
        let n = match self.store.drop_collection(name) {
            Ok(n) => n,
            Err(e) => {
                // Refused before it began (read-only, say): the collection still serves, with the same indexes
                // (opening them anew would find their directories locked by these).
                for index in detached {
                    if let Err(a) = self.store.attach_derived(index.clone()) {
                        tracing::warn!(
                            collection = name,
                            index = index.name(),
                            "attaching the index again failed (the derived.attached check retries): {a}"
                        );
                    }
                }
                if let Some(ix) = removed {
                    self.collections
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.to_string(), ix);
                }
                return Err(e);
            }
        };
        drop(removed);
        drop(detached);
        self.store.remove_index_dir(name)?;
        Ok(n)
    }

    /// Makes the engine watch that every index this daemon keeps stays attached (the `derived.attached` check and
    /// its `derived_attach` repair, [`crate::attached`]). The daemon calls it once, after [`App::attach_indexes`].
    pub fn watch_attachments(self: &Arc<Self>) {
        self.subject
            .watch_attachments(Arc::new(crate::attached::AttachWatch(Arc::downgrade(self))));
    }

    /// The indexes this process keeps that are not attached to the store (`(collection, index)`): `default`'s
    /// `flat`, `hnsw` and `text` and every ready named collection's declared ones, once [`App::attach_indexes`]
    /// ran (a daemon); none in an offline command. What the `derived.attached` check reports.
    pub fn unattached_indexes(&self) -> Vec<(String, String)> {
        use store::collection::IndexKind;
        let mut out = Vec::new();
        if self.flat.get().is_none() {
            return out;
        }
        let derived = self.store.derived();
        let default = store::collection::DEFAULT;
        for name in ["flat", "hnsw", "text"] {
            if derived.state(default, name).is_none() {
                out.push((default.to_string(), name.to_string()));
            }
        }
        let Ok(collections) = self.store.collections() else {
            return out;
        };
        for c in collections {
            if c.name == default || c.state != store::CollectionState::Ready {
                continue;
            }
            for (kind, name) in [
                (IndexKind::Flat, "flat"),
                (IndexKind::Hnsw, "hnsw"),
                (IndexKind::Ivf, "ivf"),
                (IndexKind::Text, "text"),
            ] {
                if c.settings.keeps(kind) && derived.state(&c.name, name).is_none() {
                    out.push((c.name.clone(), name.to_string()));
                }
            }
        }
        out
    }

    /// Attaches the index `name` of `collection` again when it is not attached: the instance this process holds
    /// (its directory stays locked by it), or, when it holds none, the index opened anew. Nothing to do when it is
    /// attached, or its collection is no longer ready (dropped meanwhile).
    pub fn reattach_index(&self, collection: &str, name: &str) -> anyhow::Result<String> {
        let _g = self.attaching.lock().unwrap_or_else(|p| p.into_inner());
        if self.store.derived().state(collection, name).is_some() {
            return Ok(format!("index {collection}/{name} is attached already"));
        }
        let held: Option<Arc<dyn store::derived::DerivedIndex>> =
            if collection == store::collection::DEFAULT {
                match name {
                    "flat" => self.flat.get().map(|i| i.clone() as _),
                    "hnsw" => self.hnsw.get().map(|i| i.clone() as _),
                    "text" => match self.text.get() {
                        Some(t) => Some(t.clone() as _),
                        None => {
                            self.attach_text_locked()?;
                            return Ok(format!("opened and attached index {collection}/{name}"));
                        }
                    },
                    _ => anyhow::bail!("collection {collection} keeps no index {name}"),
                }
            } else {
                let Some(info) = self
                    .store
                    .collection(collection)?
                    .filter(|c| c.state == store::CollectionState::Ready)
                else {
                    return Ok(format!(
                        "collection {collection} is no longer ready: nothing to attach"
                    ));
                };
                match self.collection_indexes(collection) {
                    None => {
                        self.attach_collection_locked(&info)?;
                        return Ok(format!("opened and attached the indexes of {collection}"));
                    }
                    Some(ix) => match name {
                        "flat" => ix.flat.map(|i| i as _),
                        "hnsw" => ix.hnsw.map(|i| i as _),
                        "ivf" => ix.ivf.map(|i| i as _),
                        "text" => ix.text.map(|i| i as _),
                        _ => None,
                    },
                }
            };
        let index =
            held.ok_or_else(|| anyhow::anyhow!("collection {collection} keeps no index {name}"))?;
        self.store
            .attach_derived(index)
            .with_context(|| format!("attaching index {collection}/{name} again"))?;
        Ok(format!(
            "attached index {collection}/{name} again (caught up from the log or rebuilt)"
        ))
    }

    fn attach_text_locked(&self) -> anyhow::Result<Arc<index_text::TextIndex>> {
        if let Some(t) = self.text.get() {
            return Ok(t.clone());
        }
        let text = index_text::TextIndex::open_with(
            self.store.dir(),
            store::derived::DEFAULT_COLLECTION,
            index_text::TextSettings::default(),
            self.store.config().io.clone(),
        )
        .context("opening the text index")?;
        if let Some(why) = &text.open_report().reason {
            tracing::info!("text index: {why}; catching up or rebuilding from the store");
        }
        let text = Arc::new(text);
        self.store
            .attach_derived(text.clone())
            .context("attaching the text index")?;
        Ok(self.text.get_or_init(|| text).clone())
    }

    /// The text index, attached now if it is not yet (an offline command's first text search: it is then caught
    /// up or rebuilt from the store like the daemon's).
    pub fn text_index(&self) -> anyhow::Result<Arc<index_text::TextIndex>> {
        if let Some(t) = self.text.get() {
            return Ok(t.clone());
        }
        let _g = self.attaching.lock().unwrap_or_else(|p| p.into_inner());
        self.attach_text_locked()
    }

    /// The text index, when attached.
    pub fn text_index_attached(&self) -> Option<&Arc<index_text::TextIndex>> {
        self.text.get()
    }

    /// The flat vector index, when attached.
    pub fn flat_index(&self) -> Option<&Arc<index_vector::FlatIndex>> {
        self.flat.get()
    }

    /// The HNSW vector index, when attached.
    pub fn hnsw_index(&self) -> Option<&Arc<index_vector::HnswIndex>> {
        self.hnsw.get()
    }

    /// The memory-pressure gate of large writes.
    pub fn memory(&self) -> &MemoryGuard {
        &self.memory
    }

    /// The process's readings now, if `/proc` answers.
    pub fn process_reading(&self) -> Option<crate::machine::ProcessReading> {
        self.process.read().ok()
    }

    /// The knowledge base.
    pub fn kb(&self) -> &Arc<SqliteKb> {
        &self.kb
    }

    /// The names of the repair strategies the engine can use on this store.
    pub fn strategy_names(&self) -> Vec<String> {
        self.subject
            .strategies()
            .iter()
            .map(|s| s.name().to_string())
            .collect()
    }

    /// The damaged knowledge base moved aside (and replaced by a fresh one) at open, if it was.
    pub fn kb_recreated(&self) -> Option<&crate::kb::KbRecreated> {
        self.kb_recreated.as_ref()
    }

    /// When this app was opened, µs since the epoch.
    pub fn started_at_us(&self) -> Timestamp {
        self.started_at_us
    }

    /// The engine, locked. A panic inside a previous holder does not make it unusable: the engine's state is
    /// recomputed from checks every cycle.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember_health(&self, h: HealthState) {
        *self.last_health.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// Cheap health for `GET /health`: reads the store's flags and the engine's state without waiting for a cycle.
    pub fn shallow_health(&self) -> ShallowHealth {
        let st = self.store.stats();
        let state = match self.engine.try_lock() {
            Ok(e) => Some(e.health_state()),
            Err(_) => *self.last_health.lock().unwrap_or_else(|p| p.into_inner()),
        };
        if let Some(s) = state {
            self.remember_health(s);
        }
        let serving = st.poisoned.is_none() && state != Some(HealthState::Critical);
        ShallowHealth {
            serving,
            state: state.map(state_name).unwrap_or("UNKNOWN").to_string(),
            read_only: st.read_only,
            read_only_cause: st.read_only_cause,
            poisoned: st.poisoned,
            documents: st.docs,
        }
    }

    /// One healing cycle now; `dry_run` overrides the configured mode for this cycle only. Before it, the deep and
    /// comprehensive tiers run if their `[checks]` interval has passed, so what they find is handled in this cycle.
    /// After it, the subject's metrics go to the knowledge base's history (pruned to
    /// `metrics.history_retention_hours`).
    pub fn run_cycle(&self, dry_run: Option<bool>) -> anyhow::Result<Value> {
        let now = self.clock.now();
        let tiers = self.due_tiers(now);
        let mut engine = self.engine();
        let mut tier_results = Vec::new();
        for tier in tiers {
            let results = engine.run_tier(tier);
            tier_results.push(json!({ "tier": tier, "checks": results }));
        }
        let configured = engine.config().dry_run;
        if let Some(d) = dry_run {
            engine.set_dry_run(d);
        }
        let summary = engine.run_cycle();
        if dry_run.is_some() {
            engine.set_dry_run(configured);
        }
        self.remember_health(summary.health);
        // The samples the engine judged (counters with their rates): sampling again would steal the next window.
        let samples = engine.last_samples().to_vec();
        drop(engine);
        for e in &summary.errors {
            tracing::warn!("healing cycle: {e}");
        }
        for id in &summary.incidents_opened {
            tracing::warn!(incident = id, "incident opened");
        }
        for a in &summary.attempts {
            tracing::info!(
                incident = a.incident_id,
                strategy = %a.attempt.strategy,
                outcome = ?a.attempt.outcome,
                "repair attempt"
            );
        }
        for id in &summary.escalations {
            tracing::error!(incident = id, "incident escalated to a human");
        }
        self.record_history(now, &samples);
        let mut v = serde_json::to_value(&summary).context("encoding the cycle summary")?;
        if let Value::Object(m) = &mut v {
            m.insert("tiers_run".into(), Value::Array(tier_results));
        }
        Ok(v)
    }

    fn due_tiers(&self, now: Timestamp) -> Vec<Tier> {
        let c = &self.config.checks;
        let mut s = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        let is_due = |last: Option<Timestamp>, interval_ms: u64| match last {
            None => true,
            Some(l) => now.saturating_sub(l) >= interval_ms.saturating_mul(US_PER_MS),
        };
        // The comprehensive tier includes the cheaper ones.
        if is_due(s.last_comprehensive_us, c.comprehensive_interval_ms) {
            due.push(Tier::Comprehensive);
            s.last_comprehensive_us = Some(now);
            s.last_deep_us = Some(now);
        } else if is_due(s.last_deep_us, c.deep_interval_ms) {
            due.push(Tier::Deep);
            s.last_deep_us = Some(now);
        }
        due
    }

    fn record_history(&self, now: Timestamp, samples: &[heal::Sample]) {
        if let Err(e) = self.kb.record_metrics(now, samples) {
            tracing::warn!("recording metric history: {e}");
        }
        let mut s = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        if s.last_prune_us
            .is_none_or(|l| now.saturating_sub(l) >= PRUNE_INTERVAL_US)
        {
            s.last_prune_us = Some(now);
            let keep_us = self
                .config
                .metrics
                .history_retention_hours
                .saturating_mul(3_600 * US_PER_S);
            if let Err(e) = self.kb.prune(now.saturating_sub(keep_us)) {
                tracing::warn!("pruning metric history: {e}");
            }
        }
    }

    /// Runs the checks of `tier` (and the cheaper tiers) now. What they find is handled in the next cycle.
    pub fn run_tier(&self, tier: Tier) -> anyhow::Result<Value> {
        let mut engine = self.engine();
        let results = engine.run_tier(tier);
        let state = engine.health_state();
        // The state is judged from every check's latest result, the other tiers' too: name what makes it so when
        // the checks just run do not (a deep check that failed minutes ago), and the incidents still open.
        let ran: std::collections::BTreeSet<&str> =
            results.iter().map(|r| r.name.as_str()).collect();
        let failing: Vec<Value> = engine
            .last_check_results()
            .into_iter()
            .filter(|r| !r.passed && !ran.contains(r.name.as_str()))
            .map(|r| {
                json!({
                    "check": r.name,
                    "tier": r.tier,
                    "message": r.message,
                    "at": heal::clock::rfc3339(r.started_at),
                })
            })
            .collect();
        let open: Vec<Value> = engine
            .active_incidents()
            .iter()
            .map(|i| {
                json!({
                    "id": i.record.id,
                    "severity": i.record.severity,
                    "status": i.status,
                    "summary": i.record.issues.get(i.root_issue).map(|x| x.summary.clone()),
                })
            })
            .collect();
        drop(engine);
        self.remember_health(state);
        let passed = results.iter().all(|r| r.passed);
        Ok(json!({
            "tier": tier,
            "state": state_name(state),
            "passed": passed,
            "checks": results,
            "failing_from_earlier_runs": failing,
            "open_incidents": open,
        }))
    }

    /// `GET /v1/status`: health, active incidents, repairs in flight, KPIs, the engine's counters, the store's
    /// figures and what recovery at open did.
    /// Health, incidents, repairs in flight and KPIs. While a cycle holds the engine (a long repair), answers at
    /// once with the status of the last free moment, the repairs running now, and `"cycle_running": true`.
    pub fn status(&self) -> anyhow::Result<Value> {
        let engine = match self.engine.try_lock() {
            Ok(e) => e,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let cached = self
                    .last_status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                match cached {
                    Some(mut v) => {
                        let running = self.in_flight.list();
                        v["repairs_in_flight"] = json!(running.len());
                        v["repairs_running"] = json!(running);
                        v["cycle_running"] = json!(true);
                        return Ok(v);
                    }
                    None => self.engine(),
                }
            }
        };
        let state = engine.health_state();
        let active = engine.active_incidents();
        let kpis = engine.kpis().context("computing KPIs")?;
        let counters = engine.metrics().clone();
        let escalation = engine.escalation_level();
        let breakers: Vec<Value> = engine
            .breakers()
            .into_iter()
            .map(|(name, b)| json!({ "strategy": name, "breaker": b }))
            .collect();
        let dry_run = engine.config().dry_run;
        let now = self.clock.now();
        let silences: Vec<Value> = engine
            .silences(now)
            .into_iter()
            .map(|(metric, until)| json!({ "metric": metric, "until_us": until }))
            .collect();
        drop(engine);
        let escalated: Vec<u64> = active
            .iter()
            .filter(|i| i.status == IncidentStatus::Escalated)
            .map(|i| i.record.id)
            .collect();
        let running = self.in_flight.list();
        let mut recovery = serde_json::to_value(self.store.recovery_report())
            .context("encoding the recovery report")?;
        if let (Some(r), Value::Object(m)) = (&self.kb_recreated, &mut recovery) {
            m.insert("knowledge_base_recreated".into(), json!(r));
        }
        // Opened read-only, the engine records into a copy: the file named is the data directory's.
        let kb_path = match &self.kb_copy {
            Some(_) => self.config.server.data_dir.join(KB_FILE),
            None => self.kb.path().to_path_buf(),
        };
        let v = json!({
            "state": state_name(state),
            "escalation_level": escalation,
            "escalated_incidents": escalated,
            "dry_run": dry_run,
            "active_incidents": active,
            "repairs_in_flight": running.len(),
            "repairs_running": running,
            "cycle_running": false,
            "kpis": {
                "mttd_ms": kpis.mttd_us.map(|v| v / 1_000.0),
                "mttr_ms": kpis.mttr_us.map(|v| v / 1_000.0),
                "auto_remediation_rate": kpis.auto_remediation_rate,
                "repair_success_rate": kpis.repair_success_rate,
                "rollback_rate": kpis.rollback_rate,
                "false_positive_rate": kpis.false_positive_rate,
                "detail": kpis,
            },
            "engine": counters,
            "breakers": breakers,
            "silences": silences,
            "process": self.process_view(),
            "targets": self.subject.targets().map(|t| t.status()),
            "probe": self.probe.as_ref().map(|p| {
                p.last_steps()
                    .into_iter()
                    .map(|(step, us)| json!({ "step": step, "latency_us": us }))
                    .collect::<Vec<_>>()
            }),
            "search": self.search_view(now),
            "derived": self.store.derived().status(),
            "store": self.store.stats(),
            "recovery": recovery,
            "knowledge_base": {
                "path": kb_path,
                "recreated": self.kb_recreated,
                "damaged_copies": crate::kb::damaged_copies(&kb_path),
                "read_only_copy": self.kb_copy.is_some(),
            },
            "started_at_us": self.started_at_us,
        });
        *self.last_status.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
        Ok(v)
    }

    /// `process` of `/v1/status`: resident memory, CPU time, open files, threads, the memory limit, whether memory
    /// is above it and how many writes it refused.
    fn process_view(&self) -> Value {
        let reading = self.process.read();
        let pressure = self.memory.pressure();
        json!({
            "resident_bytes": reading.as_ref().ok().map(|r| r.resident_bytes),
            "cpu_seconds_total": reading.as_ref().ok().map(|r| r.cpu_us_total as f64 / 1e6),
            "open_fds": reading.as_ref().ok().map(|r| r.open_fds),
            "threads": reading.as_ref().ok().map(|r| r.threads),
            "error": reading.as_ref().err(),
            "memory_limit_bytes": self.memory.limit_bytes(),
            "memory_pressure": pressure.is_some(),
            "writes_refused_for_memory": self.memory.refused(),
        })
    }

    /// `search` of `/v1/status`: per query kind, the searches since the daemon started and their latency.
    fn search_view(&self, now: Timestamp) -> Value {
        let snapshot = self.store.metrics().snapshot(now);
        let kinds: serde_json::Map<String, Value> = snapshot
            .ops
            .iter()
            .filter_map(|(op, s)| {
                op.strip_prefix("search_").map(|kind| {
                    (
                        kind.to_string(),
                        json!({
                            "count": s.count,
                            "errors": s.errors,
                            "latency_p50_us": s.p50_us,
                            "latency_p99_us": s.p99_us,
                            "latency_max_us": s.max_us,
                        }),
                    )
                })
            })
            .collect();
        Value::Object(kinds)
    }

    /// [`App::status`] for a process that has just opened the data directory (offline commands): the shallow tier
    /// runs first, as the daemon's loop would have, so the state reflects the store rather than a fresh engine's
    /// HEALTHY. An incident an earlier process escalated (resolution `escalated`, never resolved) still counts in
    /// `escalated_incidents` while these checks report one of its problems (same code and resource).
    pub fn status_checked(&self) -> anyhow::Result<Value> {
        let mut engine = self.engine();
        let results = engine.run_tier(Tier::Shallow);
        let state = engine.health_state();
        drop(engine);
        self.remember_health(state);
        let resumed: Vec<u64> = self
            .engine()
            .active_incidents()
            .iter()
            .filter(|i| i.resumed)
            .map(|i| i.record.id)
            .collect();
        let mut v = self.status()?;
        let current: std::collections::BTreeSet<(&str, &str)> = results
            .iter()
            .flat_map(|r| r.issues.iter())
            .map(|i| (i.code.as_str(), i.resource.as_str()))
            .collect();
        // An incident taken back from an earlier process counts only while the checks still report its problem.
        let mut escalated: Vec<u64> = v["escalated_incidents"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        escalated.retain(|id| !resumed.contains(id));
        if current.is_empty() {
            v["escalated_incidents"] = json!(escalated);
            return Ok(v);
        }
        let records = self
            .kb
            .recent(self.config.engine.kb_records_max)
            .context("reading incidents")?;
        for r in records.iter().filter(|r| {
            r.resolution == heal::learn::Resolution::Escalated
                && r.resolved_at.is_none()
                && r.issues
                    .iter()
                    .any(|i| current.contains(&(i.code.as_str(), i.resource.as_str())))
        }) {
            if !escalated.contains(&r.id) {
                escalated.push(r.id);
            }
        }
        escalated.sort_unstable();
        v["escalated_incidents"] = json!(escalated);
        Ok(v)
    }

    /// An operator accepts acknowledged data lost beyond every redundancy: the store keeps what survived (a new
    /// snapshot), forgets the lost ranges and takes writes again. The acceptance is kept in the knowledge base.
    pub fn accept_loss(&self) -> anyhow::Result<Value> {
        let acceptance = self.store.accept_loss().context("accepting the loss")?;
        if !acceptance.ranges.is_empty() {
            let text = serde_json::to_string(&acceptance)?;
            self.kb
                .record_loss_acceptance(acceptance.accepted_at_us, &text)
                .context("recording the acceptance in the knowledge base")?;
            for r in &acceptance.ranges {
                tracing::warn!(file = %r.file, lsn_range = ?r.lsn_range, "loss accepted by an operator: {}", r.reason);
            }
            // Every tier again now, so health reflects the store as it is, not the loss.
            let results = self.engine().run_tier(Tier::Comprehensive);
            self.schedule
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_comprehensive_us = Some(self.clock.now());
            let state = heal::check::health_from_results(&results);
            self.remember_health(state);
            return Ok(json!({ "accepted": acceptance, "nothing_lost": false,
                "state": state_name(state), "checks": results }));
        }
        Ok(json!({ "accepted": acceptance, "nothing_lost": true,
            "message": "nothing to accept: no acknowledged data is lost" }))
    }

    /// The newest `limit` incidents, newest first (open ones from the engine, the rest from the knowledge base).
    pub fn incidents(&self, limit: usize) -> anyhow::Result<Vec<IncidentRecord>> {
        let mut records = self.kb.recent(limit).context("reading incidents")?;
        let active = self.engine().active_incidents();
        for inc in active {
            match records.iter_mut().find(|r| r.id == inc.record.id) {
                Some(r) => *r = inc.record,
                None => records.push(inc.record),
            }
        }
        records.sort_by_key(|r| std::cmp::Reverse(r.id));
        records.truncate(limit);
        Ok(records)
    }

    /// One incident with its timeline and its escalation report (Markdown and JSON); `None` if unknown.
    pub fn incident_detail(&self, id: u64) -> anyhow::Result<Option<Value>> {
        let engine = self.engine();
        let Some(record) = engine.incident(id).context("reading the incident")? else {
            return Ok(None);
        };
        let active = engine
            .active_incidents()
            .into_iter()
            .find(|i| i.record.id == id);
        drop(engine);
        let status = match &active {
            Some(a) => serde_json::to_value(a.status)?,
            None => Value::String("closed".into()),
        };
        let evidence = active
            .as_ref()
            .map(|a| a.evidence.clone())
            .unwrap_or_default();
        let report_json = json!({
            "incident_id": record.id,
            "title": record.issues.first().map(|i| i.summary.clone()).unwrap_or_default(),
            "crisis": record.crisis,
            "severity": record.severity,
            "root_cause": record.root_cause,
            "decision": record.decision,
            "blast_radius": record.blast_radius,
            "issues": record.issues.iter().map(|i| format!("[{}] {}: {}", i.code, i.resource, i.summary)).collect::<Vec<_>>(),
            "evidence": evidence,
            "attempts": record.attempts,
            "data_at_risk": record.issues.iter().filter(|i| i.data_at_risk).map(|i| format!("{}: {}", i.resource, i.location)).collect::<Vec<_>>(),
            "resolution": record.resolution,
        });
        let actionable = crate::report::incident::actionable(
            &record,
            &self.config.server.data_dir,
            self.clock.now(),
        );
        let mut report_json = report_json;
        if let Value::Object(m) = &mut report_json {
            m.insert("lost_documents".into(), json!(actionable.lost_documents));
            m.insert("backups".into(), json!(actionable.backups));
            m.insert("times".into(), json!(actionable.times));
        }
        let markdown = format!(
            "{}{}",
            record
                .report_markdown
                .clone()
                .unwrap_or_else(|| incident_markdown(&record)),
            actionable.markdown()
        );
        Ok(Some(json!({
            "incident": record,
            "status": status,
            "operators": self.incident_operator_view(id),
            "timeline": timeline(&record),
            "report": {
                "escalated": record.report_markdown.is_some(),
                "markdown": markdown,
                "json": report_json,
                "actionable": actionable,
            },
        })))
    }

    /// Marks an incident a false positive; returns the updated incident and the raised anomaly cut-offs, or `None`
    /// if no incident has this id.
    pub fn mark_false_positive(&self, id: u64) -> anyhow::Result<Option<Value>> {
        let mut engine = self.engine();
        match engine.mark_false_positive(id) {
            Ok(raised) => {
                let record = engine.incident(id).context("reading the incident")?;
                Ok(Some(json!({
                    "incident": record,
                    "cutoffs_raised": raised.into_iter().map(|(m, c)| json!({"metric": m, "cutoff": c})).collect::<Vec<_>>(),
                })))
            }
            Err(heal::engine::EngineError::UnknownIncident(_)) => Ok(None),
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("marking incident {id} a false positive")))
            }
        }
    }

    /// What the metrics mirror: documents, health, incidents, KPIs. Waits for a running cycle.
    pub fn snapshot(&self) -> Snapshot {
        let engine = self.engine();
        self.snapshot_with(Some(&engine))
    }

    /// Like [`App::snapshot`] but never waits: while a cycle holds the engine, only the store's figures are read
    /// (`engine_known` is false) so a metrics scrape is never stuck behind a scrub.
    pub fn try_snapshot(&self) -> Snapshot {
        match self.engine.try_lock() {
            Ok(engine) => self.snapshot_with(Some(&engine)),
            Err(std::sync::TryLockError::Poisoned(p)) => self.snapshot_with(Some(&p.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) => self.snapshot_with(None),
        }
    }

    /// [`App::snapshot`] if no cycle holds the engine now, else `None` (nothing waits).
    pub fn snapshot_if_free(&self) -> Option<Snapshot> {
        match self.engine.try_lock() {
            Ok(engine) => Some(self.snapshot_with(Some(&engine))),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                Some(self.snapshot_with(Some(&p.into_inner())))
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn snapshot_with(&self, engine: Option<&Engine>) -> Snapshot {
        let st = self.store.stats();
        let mut s = Snapshot {
            documents: st.docs as u64,
            read_only: st.read_only.is_some() || st.poisoned.is_some(),
            repairs_in_flight: self.in_flight.count() as u64,
            process: self.process.read().ok(),
            memory_limit_bytes: self.memory.limit_bytes(),
            memory_pressure: self.memory.pressure().is_some(),
            writes_refused_memory: self.memory.refused(),
            indexes: self.store.derived().status().indexes,
            collections: self
                .store
                .collections()
                .map(|all| all.into_iter().map(|c| (c.name, c.documents)).collect())
                .unwrap_or_default(),
            ..Snapshot::default()
        };
        let Some(engine) = engine else {
            return s;
        };
        s.engine_known = true;
        s.health = Some(engine.health_state());
        s.active_incidents = engine
            .active_incidents()
            .iter()
            .filter(|i| i.status != IncidentStatus::Watching)
            .count() as u64;
        if let Ok(k) = engine.kpis() {
            s.mttd_seconds = k.mttd_us.map(|v| v / US_PER_S as f64);
            s.mttr_seconds = k.mttr_us.map(|v| v / US_PER_S as f64);
            s.auto_remediation_ratio = k.auto_remediation_rate;
            s.repair_success_ratio = k.repair_success_rate;
            s.rollback_ratio = k.rollback_rate;
        }
        s
    }

    /// Closes the store cleanly (waits for in-flight commits, releases the lock).
    pub fn close(self) -> anyhow::Result<()> {
        let App {
            store,
            subject,
            engine,
            probe,
            ..
        } = self;
        drop(engine);
        drop(subject);
        // The derived indexes persist and their thread ends, so nothing else holds the store.
        store.derived().stop();
        // The probe holds the store too.
        drop(probe);
        match unwrap_when_last(store, std::time::Duration::from_secs(5)) {
            Ok(store) => store.close().context("closing the store"),
            Err(_) => {
                tracing::warn!(
                    "the store is still shared after 5 s; it is released when the last handle drops"
                );
                Ok(())
            }
        }
    }
}

/// The value of `arc` once every other handle is gone, waiting at most `bound` for threads that are ending to drop
/// theirs (a derived index's thread, a probe's); the `Arc` back if one is still held then.
fn unwrap_when_last<T>(mut arc: Arc<T>, bound: std::time::Duration) -> Result<T, Arc<T>> {
    let until = std::time::Instant::now() + bound;
    loop {
        match Arc::try_unwrap(arc) {
            Ok(v) => return Ok(v),
            Err(a) if std::time::Instant::now() >= until => return Err(a),
            Err(a) => {
                arc = a;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// A private copy of the knowledge base at `path` (the database and its `-wal`, those that exist) in a new temporary
/// directory, for a read-only open: the engine may record into it; the original is only read.
fn copy_kb(path: &std::path::Path) -> anyhow::Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix("medic-readonly-kb-")
        .tempdir()
        .context("creating a temporary directory for a copy of the knowledge base")?;
    for suffix in ["", "-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        let to = tmp.path().join(format!("{KB_FILE}{suffix}"));
        match std::fs::copy(&from, &to) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "copying the knowledge base {} to read it",
                    from.display()
                )));
            }
        }
    }
    Ok(tmp)
}

/// A serde name (`auto_repaired`, `dry_run`, `OBSTACLE`) as a word for people: `auto-repaired`, `dry run`,
/// `obstacle`.
fn word<T: serde::Serialize>(v: &T, sep: &str) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s.to_lowercase().replace('_', sep),
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// What a repair attempt may have lost, in words.
fn data_loss_words(l: &heal::repair::DataLoss) -> String {
    use heal::repair::DataLoss;
    match l {
        DataLoss::None => "no data lost".to_string(),
        DataLoss::UnacknowledgedOnly => "only unacknowledged bytes lost".to_string(),
        DataLoss::Records(1) => "1 acknowledged record may be lost".to_string(),
        DataLoss::Records(n) => format!("{n} acknowledged records may be lost"),
        DataLoss::Unknown => "data loss unknown".to_string(),
    }
}

/// A Markdown summary of an incident that was not escalated (an escalated one carries the engine's own report).
fn incident_markdown(r: &IncidentRecord) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let title = r
        .issues
        .first()
        .map(|i| i.summary.as_str())
        .unwrap_or("incident");
    let _ = writeln!(s, "# Incident {}: {title}\n", r.id);
    let _ = writeln!(
        s,
        "- severity: {}, crisis level: {}\n- resolution: {}\n- root cause: {}\n- decision: {}",
        word(&r.severity, "-"),
        word(&r.crisis, "-"),
        word(&r.resolution, "-"),
        r.root_cause,
        r.decision
    );
    let _ = writeln!(s, "\n## Issues\n");
    // One line per problem: an issue found again in a later cycle is listed once.
    let mut listed = std::collections::HashSet::new();
    for i in &r.issues {
        if listed.insert((&i.code, &i.resource, &i.summary)) {
            let _ = writeln!(s, "- `{}` on `{}`: {}", i.code, i.resource, i.summary);
        }
    }
    if !r.blast_radius.is_empty() {
        let _ = writeln!(s, "\n## Blast radius\n");
        for b in &r.blast_radius {
            let _ = writeln!(s, "- {b}");
        }
    }
    let _ = writeln!(s, "\n## Repair attempts\n");
    if r.attempts.is_empty() {
        let _ = writeln!(s, "- none");
    }
    for a in &r.attempts {
        let _ = writeln!(
            s,
            "- `{}`: {} in {}, {}{}",
            a.strategy,
            word(&a.outcome, " "),
            heal::clock::human_duration_us(a.duration_us),
            data_loss_words(&a.data_loss),
            if a.notes.is_empty() {
                String::new()
            } else {
                format!(" — {}", a.notes.join("; "))
            }
        );
    }
    s
}

/// The incident's events in time order: first observation, each issue, detection, each attempt, resolution.
fn timeline(r: &IncidentRecord) -> Vec<Value> {
    let mut events: Vec<(Timestamp, Value)> = Vec::new();
    events.push((
        r.started_at,
        json!({"at": r.started_at, "event": "first_observed"}),
    ));
    for i in &r.issues {
        events.push((
            i.detected_at,
            json!({"at": i.detected_at, "event": "issue", "code": i.code, "resource": i.resource, "summary": i.summary}),
        ));
    }
    events.push((
        r.detected_at,
        json!({"at": r.detected_at, "event": "detected", "decision": r.decision}),
    ));
    for a in &r.attempts {
        events.push((
            a.started_at,
            json!({"at": a.started_at, "event": "repair_attempt", "strategy": a.strategy, "outcome": a.outcome,
                   "duration_us": a.duration_us, "notes": a.notes}),
        ));
    }
    if let Some(at) = r.resolved_at {
        events.push((
            at,
            json!({"at": at, "event": "resolved", "resolution": r.resolution}),
        ));
    }
    events.sort_by_key(|(t, _)| *t);
    events.into_iter().map(|(_, v)| v).collect()
}

/// A collection's metric as the vector indexes name it.
pub fn vector_metric(m: store::collection::Metric) -> index_vector::Metric {
    match m {
        store::collection::Metric::Cosine => index_vector::Metric::Cosine,
        store::collection::Metric::Dot => index_vector::Metric::Dot,
        store::collection::Metric::L2 => index_vector::Metric::L2,
    }
}
