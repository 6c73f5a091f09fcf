//! Recovery on open: from a data directory's files to the verified table, the open segment ready for appends, and
//! the report of what was found and done. [`recover`] reads as its steps: take the lock, prepare the directory, load
//! the manifest, load the snapshot, replay the segments in order (the open one against its mirror), name what was
//! lost, remove leftovers of an interrupted rotation or compaction.
//!
//! A read-only open runs the same steps and changes no byte: what a writable open would repair is reported (the
//! same issues, "left as found") and left in place. Nothing here takes `&Store`; the store is built from
//! [`Recovered`] afterwards.

mod manifest;
mod open_segment;
pub(crate) mod salvage;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use heal::{Issue, IssueKind, Location};

use crate::codec::{self, KIND_PUT, Record};
use crate::collection;
use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::identity;
use crate::io;
use crate::issues::Code;
use crate::lock::{DirLock, ReadLock};
use crate::manifest::{COPIES, Manifest};
use crate::snapshot;
use crate::store::{
    Entry, ImmutableFile, LostRange, RecoveryReport, SNAP_DIR, SNAP_ID_BIT, ioe, issue, snap_name,
    snap_par_name,
};
use crate::wal::{self, OpenSegment};
use salvage::{Loaded, load_immutable_salvage, salvage_sealed};

/// What recovery hands the store.
pub(crate) struct Recovered {
    /// Held by a writable open.
    pub(crate) dir_lock: Option<DirLock>,
    /// Held by a read-only open.
    pub(crate) read_lock: Option<ReadLock>,
    pub(crate) manifest: Manifest,
    pub(crate) table: Rebuilt,
    pub(crate) seg: OpenSegment,
    /// Bytes in sealed segments.
    pub(crate) sealed_bytes: u64,
    /// The largest record the limits allow (what a scan accepts as a length).
    pub(crate) record_bytes_max: u64,
    pub(crate) report: RecoveryReport,
    /// The issues found, queued for the engine once the store exists.
    pub(crate) issues: Vec<Issue>,
}

/// The table as the files rebuild it, record by record in LSN order.
#[derive(Default)]
pub(crate) struct Rebuilt {
    pub(crate) docs: BTreeMap<String, Entry>,
    /// Deletes seen while something is lost: what a degraded read may still answer. Empty when nothing is lost.
    pub(crate) tombstones: HashMap<String, u64>,
    pub(crate) lost: Vec<LostRange>,
    /// The last LSN read (above every lost one once losses are named).
    pub(crate) last_lsn: u64,
    pub(crate) vector_dim: Option<u32>,
}

impl Rebuilt {
    fn note_vector(&mut self, doc: &[u8]) {
        if self.vector_dim.is_none()
            && let Ok(d) = codec::decode_doc(doc)
            && let Some(v) = d.vector
        {
            self.vector_dim = Some(v.len() as u32);
        }
    }

    fn apply(&mut self, rec: Record) {
        self.last_lsn = rec.lsn;
        if rec.kind == KIND_PUT {
            self.note_vector(&rec.doc);
            self.tombstones.remove(&rec.id);
            self.docs.insert(rec.id, Entry::new(rec.lsn, rec.doc));
        } else {
            self.docs.remove(&rec.id);
            self.tombstones.insert(rec.id, rec.lsn);
        }
    }
}

/// One open in progress: where, how, and what it has found so far.
pub(crate) struct Opening<'a> {
    dir: &'a Path,
    config: &'a StoreConfig,
    read_only: bool,
    record_bytes_max: u64,
    report: RecoveryReport,
    issues: Vec<Issue>,
}

/// Opens the store in `dir` (`config` already validated): the steps of recovery, in order.
pub(crate) fn recover(
    dir: &Path,
    config: &StoreConfig,
    read_only: bool,
) -> Result<Recovered, StoreError> {
    let t0 = std::time::Instant::now();
    let (dir_lock, read_lock) = take_lock(dir, config, read_only)?;
    let mut o = Opening {
        dir,
        config,
        read_only,
        record_bytes_max: record_bytes_max(config),
        report: RecoveryReport::default(),
        issues: Vec::new(),
    };
    o.note_previous_holder(dir_lock.as_ref(), read_lock.as_ref());
    o.prepare_dir()?;
    let (manifest, created) = o.load_manifest()?;
    o.report.manifest_generation = manifest.generation;
    let mut table = Rebuilt {
        vector_dim: o.vector_dim(&manifest)?,
        ..Rebuilt::default()
    };
    o.load_snapshot(&manifest, &mut table)?;
    let (seg, sealed_bytes) = o.replay_segments(&manifest, &mut table)?;
    o.name_losses(&mut table);
    o.remove_leftovers(&manifest);
    o.note_stale_lock(created);
    o.report.last_lsn = table.last_lsn;
    o.report.duration_us = t0.elapsed().as_micros() as u64;
    o.report.issues = o.issues.clone();
    Ok(Recovered {
        dir_lock,
        read_lock,
        manifest,
        table,
        seg,
        sealed_bytes,
        record_bytes_max: o.record_bytes_max,
        report: o.report,
        issues: o.issues,
    })
}

/// The largest record `config`'s limits allow.
fn record_bytes_max(config: &StoreConfig) -> u64 {
    let limits = &config.limits;
    (codec::RECORD_FIXED_BYTES as u64 + 64)
        + limits.id_bytes_max
        + collection::KEY_EXTRA_BYTES_MAX
        + limits.text_bytes_max
        + limits.meta_bytes_max
        + limits.vector_dim_max as u64 * 4
}

/// Writers hold the directory's lock (`LOCK`, created with the directory if absent); a read-only open holds a
/// shared kernel lock and writes nothing, and refuses a directory that holds no store.
fn take_lock(
    dir: &Path,
    config: &StoreConfig,
    read_only: bool,
) -> Result<(Option<DirLock>, Option<ReadLock>), StoreError> {
    if read_only {
        if !holds_a_store(dir) {
            return Err(StoreError::InvalidInput(no_store_message(dir)));
        }
        let l = ReadLock::acquire(dir, crate::lock::LOCK_STALE_AFTER_MS)?;
        Ok((None, Some(l)))
    } else {
        std::fs::create_dir_all(dir).map_err(ioe(format!("creating {}", dir.display())))?;
        let l = DirLock::acquire(dir, &config.io, crate::lock::LOCK_STALE_AFTER_MS)?;
        Ok((Some(l), None))
    }
}

/// Whether `dir` holds a store (a manifest copy or a `wal/` directory), as far as a read-only open can tell without
/// creating anything.
pub fn holds_a_store(dir: &Path) -> bool {
    COPIES
        .iter()
        .chain(&["wal"])
        .any(|n| std::fs::symlink_metadata(dir.join(n)).is_ok())
}

/// The error for a directory that holds no store, opened read-only.
fn no_store_message(dir: &Path) -> String {
    format!(
        "no medic store at {} (no {}, {} or wal/); `medic serve --data {}` creates one",
        dir.display(),
        COPIES[0],
        COPIES[1],
        dir.display()
    )
}

impl Opening<'_> {
    /// What a repair at open did — or, opening read-only, would do (and left as found).
    fn on_open(&self, done: &str, would: &str) -> String {
        if self.read_only {
            format!("{would} (opened read-only: left as found)")
        } else {
            done.to_string()
        }
    }

    /// The previous holder of the lock, as the lock found it. The kernel lock is ours and the lock refused a holder
    /// that may still be alive (another host with a fresh heartbeat, a live pid): a holder text not marked closed is
    /// left by a process judged gone — a stale lock, taken over (or by an earlier open in this very process that was
    /// dropped without `close`).
    fn note_previous_holder(&mut self, dir_lock: Option<&DirLock>, read_lock: Option<&ReadLock>) {
        let (previous, previous_gone) = match (dir_lock, read_lock) {
            (Some(l), _) => (&l.previous, &l.previous_gone),
            (None, Some(l)) => (&l.previous, &l.previous_gone),
            (None, None) => (&None, &None),
        };
        if let Some(prev) = previous {
            self.report.previous_holder = Some(match previous_gone {
                Some(why) => format!("{} ({why})", prev.describe()),
                None => prev.describe(),
            });
            self.report.previous_holder_crashed = !prev.closed;
        }
    }

    /// No data file is ever reached through a symbolic link: one planted in the directory is refused, named. A
    /// writable open creates `wal/` and the snapshot directory.
    fn prepare_dir(&self) -> Result<(), StoreError> {
        io::refuse_links(self.dir).map_err(|e| {
            StoreError::from_open(format!("checking {} for links", self.dir.display()), e)
        })?;
        if !self.read_only {
            for sub in ["wal", SNAP_DIR] {
                std::fs::create_dir_all(self.dir.join(sub))
                    .map_err(ioe(format!("creating {}", self.dir.join(sub).display())))?;
            }
        }
        Ok(())
    }

    /// The vector dimension the manifest records, checked against the configured one (which applies when the
    /// store has none yet).
    fn vector_dim(&self, manifest: &Manifest) -> Result<Option<u32>, StoreError> {
        match (self.config.vector_dim, manifest.vector_dim) {
            (Some(want), Some(have)) if want != have => Err(StoreError::InvalidInput(format!(
                "config vector_dim = {want}, but the store in {} holds vectors of dimension {have}",
                self.dir.display()
            ))),
            (want, have) => Ok(have.or(want)),
        }
    }

    /// The snapshot into `table`. One that redundancy cannot save is lost whole (no log covers its documents any
    /// more): the store opens degraded with what the log holds after it.
    fn load_snapshot(
        &mut self,
        manifest: &Manifest,
        table: &mut Rebuilt,
    ) -> Result<(), StoreError> {
        let Some(snap_lsn) = manifest.snapshot_lsn else {
            return Ok(());
        };
        let f = ImmutableFile {
            rel: snap_name(snap_lsn),
            par_rel: snap_par_name(snap_lsn),
            file_id: snap_lsn | SNAP_ID_BIT,
            len: 0,
            lsn_range: (0, snap_lsn),
        };
        let decoded =
            match load_immutable_salvage(self.dir, &f, None, &mut self.report, &mut self.issues) {
                Loaded::Ok(bytes) => match snapshot::decode(&bytes) {
                    Ok((lsn, entries)) if lsn == snap_lsn => Ok(entries),
                    Ok((lsn, _)) => Err((
                        Some(0),
                        format!("it says LSN {lsn}, the manifest says {snap_lsn}"),
                    )),
                    Err((off, e)) => Err((Some(off), e)),
                },
                Loaded::Missing(why) => Err((None, why)),
                Loaded::Beyond { valid_to, why, .. } => Err((Some(valid_to), why)),
                Loaded::Unavailable(e) => return Err(e),
            };
        let entries = match decoded {
            Ok(entries) => entries,
            Err((offset, why)) => {
                table.lost.push(LostRange {
                    file: f.rel.clone(),
                    offset,
                    lsn_range: (1, snap_lsn),
                    reason: format!("snapshot {} {why}", f.rel),
                    ids: None,
                });
                Vec::new()
            }
        };
        self.report.snapshot_lsn = Some(snap_lsn);
        self.report.snapshot_docs = entries.len() as u64;
        for (id, lsn, doc) in entries {
            table.note_vector(&doc);
            table.docs.insert(id, Entry::new(lsn, doc));
        }
        table.last_lsn = snap_lsn;
        Ok(())
    }

    /// Every segment's records into `table` in LSN order (sealed ones verified against their sidecars, the last one
    /// against its mirror); returns the open segment and the sealed segments' bytes.
    fn replay_segments(
        &mut self,
        manifest: &Manifest,
        table: &mut Rebuilt,
    ) -> Result<(OpenSegment, u64), StoreError> {
        let n_segs = manifest.segments.len();
        let mut open_seg = None;
        let mut sealed_bytes = 0;
        for (i, se) in manifest.segments.iter().enumerate() {
            let rel = wal::seg_name(se.id);
            let records = if i + 1 == n_segs && !se.sealed {
                let (seg, records) = self.open_segment(se, table.last_lsn, &mut table.lost)?;
                open_seg = Some(seg);
                records
            } else {
                // A sealed segment ends where the next one starts.
                let end_lsn = manifest
                    .segments
                    .get(i + 1)
                    .map_or(u64::MAX, |n| n.first_lsn.saturating_sub(1));
                let (records, lost_here) = salvage_sealed(
                    self.dir,
                    se,
                    end_lsn,
                    self.record_bytes_max,
                    &mut self.report,
                    &mut self.issues,
                )?;
                table.lost.extend(lost_here);
                sealed_bytes += se.sealed_len;
                records
            };
            self.report.segments_replayed += 1;
            for rec in records {
                if rec.lsn <= table.last_lsn {
                    if rec.lsn <= manifest.snapshot_lsn.unwrap_or(0) {
                        continue; // covered by the snapshot
                    }
                    return Err(StoreError::corrupt(
                        format!(
                            "LSN {} follows LSN {}: records out of order",
                            rec.lsn, table.last_lsn
                        ),
                        Location {
                            file: Some(rel.clone()),
                            lsn_range: Some((rec.lsn, rec.lsn)),
                            ..Location::default()
                        },
                    ));
                }
                self.report.records_replayed += 1;
                table.apply(rec);
            }
        }
        let seg = open_seg.ok_or_else(|| {
            StoreError::corrupt(
                "manifest lists no open segment".to_string(),
                Location {
                    file: Some(COPIES[0].into()),
                    ..Location::default()
                },
            )
        })?;
        Ok((seg, sealed_bytes))
    }

    /// Names what was lost: which documents each loss may have changed (from the files' identity sidecars), one
    /// issue per loss, and new LSNs above every lost one (so an LSN never names two records).
    fn name_losses(&mut self, table: &mut Rebuilt) {
        if table.lost.is_empty() {
            table.tombstones = HashMap::new();
        }
        if let Some(end) = table.lost.iter().map(|l| l.lsn_range.1).max() {
            table.last_lsn = table.last_lsn.max(end);
        }
        for l in &mut table.lost {
            l.ids = io::read_file(&self.config.io, &self.dir.join(identity::name_for(&l.file)))
                .ok()
                .and_then(|b| {
                    identity::Identities::parse(&b).keys_in(l.lsn_range.0, l.lsn_range.1)
                });
        }
        for l in &table.lost {
            self.issues.push(l.issue("store.open"));
        }
        self.report.lost = table.lost.clone();
    }

    /// Removes the leftovers of an interrupted rotation or compaction: files in `wal/` and the snapshot directory the
    /// manifest does not name (a read-only open leaves them).
    fn remove_leftovers(&mut self, manifest: &Manifest) {
        let mut live: Vec<String> = Vec::new();
        for se in &manifest.segments {
            live.push(wal::seg_name(se.id));
            live.push(wal::ids_name(se.id));
            if se.sealed {
                live.push(wal::par_name(se.id));
            } else if self.config.mirror_open_segment {
                live.push(wal::mirror_name(se.id));
            }
        }
        if let Some(l) = manifest.snapshot_lsn {
            live.push(snap_name(l));
            live.push(snap_par_name(l));
            live.push(identity::name_for(&snap_name(l)));
        }
        for sub in ["wal", SNAP_DIR] {
            if let Ok(rd) = std::fs::read_dir(self.dir.join(sub)) {
                for e in rd.flatten() {
                    let rel = format!("{sub}/{}", e.file_name().to_string_lossy());
                    if !live.contains(&rel) && !self.read_only {
                        let _ = std::fs::remove_file(e.path());
                        self.report.orphans_removed.push(rel);
                    }
                }
            }
        }
        if !self.report.orphans_removed.is_empty() {
            let _ = io::sync_dir(&self.config.io, &wal::wal_dir(self.dir));
            let _ = io::sync_dir(&self.config.io, &self.dir.join(SNAP_DIR));
        }
    }

    /// A previous holder that did not close cleanly is reported (once the store existed before this open).
    fn note_stale_lock(&mut self, created: bool) {
        if created || !self.report.previous_holder_crashed {
            return;
        }
        let summary = format!(
            "previous holder ({}) did not close cleanly; its kernel lock died with it and {}",
            self.report.previous_holder.clone().unwrap_or_default(),
            self.on_open("was taken over", "the next writer takes it over")
        );
        self.issues.push(
            issue(
                IssueKind::Resource,
                Code::StaleLock,
                crate::lock::LOCK_FILE,
                summary,
                "store.open",
            )
            .with_score(0.2),
        );
    }
}
