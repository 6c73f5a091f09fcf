//! Recovery's first step: the manifest. The newest valid copy wins and a stale or damaged twin is restored from it;
//! with both copies lost, one is rebuilt from the files present; a new directory gets its first segment and
//! manifest; an older format version is upgraded in place; a newer one is refused.

use std::path::Path;

use heal::{IssueKind, Location};

use super::Opening;
use super::salvage::read_data;
use crate::error::StoreError;
use crate::io;
use crate::issues::Code;
use crate::manifest::{self, Manifest, SegmentEntry};
use crate::parity;
use crate::snapshot;
use crate::store::{RecoveryReport, SNAP_DIR, ioe, issue, snap_name};
use crate::wal::{self, OpenSegment};

impl Opening<'_> {
    /// The manifest to open with, and whether this open created the store.
    pub(super) fn load_manifest(&mut self) -> Result<(Manifest, bool), StoreError> {
        let loaded = manifest::load(&self.config.io, self.dir);
        if let Some(why) = &loaded.unavailable {
            // Lack of a resource says nothing about the files: fail the open (retry later), conclude nothing.
            return Err(StoreError::io(
                why.clone(),
                std::io::Error::other("resource exhausted"),
            ));
        }
        if let Some(why) = loaded.newer() {
            return Err(StoreError::InvalidInput(format!(
                "the data directory {} was written by a newer medic ({why}); open it with that version",
                self.dir.display()
            )));
        }
        let (manifest, created) = match loaded.manifest.clone() {
            Some(m) => {
                self.restore_stale_copies(&loaded, &m)?;
                (m, false)
            }
            None => self.manifest_from_files(&loaded)?,
        };
        if !self.read_only && manifest.version < manifest::VERSION {
            let upgraded = upgrade(&self.config.io, self.dir, manifest, &mut self.report)?;
            return Ok((upgraded, created));
        }
        Ok((manifest, created))
    }

    /// Restores each copy behind the newest valid one (missing, damaged, or at an older generation) from it; a
    /// read-only open reports them only.
    fn restore_stale_copies(
        &mut self,
        loaded: &manifest::Loaded,
        m: &Manifest,
    ) -> Result<(), StoreError> {
        for i in loaded.stale_copies() {
            let what = match &loaded.copies[i] {
                None => "missing".to_string(),
                Some(Ok(g)) => format!("at generation {g}, behind {}", m.generation),
                Some(Err(e)) => e.clone(),
            };
            if !self.read_only {
                manifest::write_copy(&self.config.io, self.dir, i, m).map_err(ioe(format!(
                    "restoring {} from its twin",
                    manifest::COPIES[i]
                )))?;
                self.report
                    .manifest_copies_restored
                    .push(manifest::COPIES[i].to_string());
            }
            self.issues.push(
                issue(
                    IssueKind::Integrity,
                    Code::ManifestCopyDamaged,
                    manifest::COPIES[i],
                    format!(
                        "{} was {what}; {}",
                        manifest::COPIES[i],
                        self.on_open(
                            "restored from its twin on open",
                            "its twin holds the manifest"
                        )
                    ),
                    "store.open",
                )
                .at(Location {
                    file: Some(manifest::COPIES[i].into()),
                    ..Location::default()
                })
                .evidence("state", what),
            );
        }
        Ok(())
    }

    /// No valid manifest copy: one rebuilt from the files present, or (a new or interrupted-at-creation directory,
    /// writable) the first segment and manifest created; the second value says whether this open created the store.
    fn manifest_from_files(
        &mut self,
        loaded: &manifest::Loaded,
    ) -> Result<(Manifest, bool), StoreError> {
        let any_copy = loaded.copies.iter().any(Option::is_some);
        let wal_files = names_in(&self.dir.join("wal"));
        let snap_files = names_in(&self.dir.join(SNAP_DIR));
        // A crash while creating a new store leaves at most an empty first segment and no manifest.
        let interrupted_create = snap_files.is_empty()
            && wal_files.iter().all(|(n, len)| {
                (n.starts_with(&format!("{:016}.", 1)) || n.ends_with(".tmp"))
                    && *len <= wal::HEADER_BYTES
            });
        let holds_data = any_copy || !interrupted_create;
        if holds_data {
            match reconstruct(self.dir) {
                Some(m) => self.take_rebuilt(m, loaded).map(|m| (m, false)),
                None => Err(no_valid_copy(loaded)),
            }
        } else if self.read_only {
            Err(StoreError::InvalidInput(super::no_store_message(self.dir)))
        } else {
            self.create_first(&wal_files).map(|m| (m, true))
        }
    }

    /// A manifest rebuilt from the files present: written as both copies (unless read-only), reported with data
    /// at risk.
    fn take_rebuilt(
        &mut self,
        m: Manifest,
        loaded: &manifest::Loaded,
    ) -> Result<Manifest, StoreError> {
        if !self.read_only {
            manifest::write_both(&self.config.io, self.dir, &m)
                .map_err(ioe("writing the rebuilt manifest"))?;
            self.report.manifest_copies_restored =
                manifest::COPIES.iter().map(|c| c.to_string()).collect();
        }
        self.issues.push(
            issue(
                IssueKind::Integrity,
                Code::ManifestRebuilt,
                "MANIFEST-A",
                format!(
                    "no valid manifest copy; rebuilt from the files present: {}, {} segment(s)",
                    m.snapshot_lsn
                        .map_or("no snapshot".to_string(), |l| format!(
                            "snapshot at LSN {l}"
                        )),
                    m.segments.len()
                ),
                "store.open",
            )
            .data_at_risk()
            .evidence("copies", format!("{:?}", loaded.copies)),
        );
        Ok(m)
    }

    /// A new store (or one whose creation was interrupted): leftovers removed, the first segment and both
    /// manifest copies created.
    fn create_first(&mut self, wal_files: &[(String, u64)]) -> Result<Manifest, StoreError> {
        for (n, _) in wal_files {
            let _ = std::fs::remove_file(wal::wal_dir(self.dir).join(n));
        }
        let seg = OpenSegment::create(
            &self.config.io,
            self.dir,
            1,
            1,
            self.config.mirror_open_segment,
        )
        .map_err(ioe("creating the first WAL segment"))?;
        drop(seg);
        let m = Manifest {
            version: manifest::VERSION,
            generation: 1,
            vector_dim: self.config.vector_dim,
            snapshot_lsn: None,
            segments: vec![SegmentEntry {
                id: 1,
                first_lsn: 1,
                sealed: false,
                sealed_len: 0,
            }],
        };
        manifest::write_both(&self.config.io, self.dir, &m)
            .map_err(ioe("writing the first manifest"))?;
        self.report.created = true;
        Ok(m)
    }
}

/// The names and lengths of the entries of `dir` (none when it cannot be read).
fn names_in(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// No manifest copy is valid and none can be rebuilt, but the directory holds data: refused, with each copy's state.
fn no_valid_copy(loaded: &manifest::Loaded) -> StoreError {
    let why = loaded
        .copies
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{}: {:?}", manifest::COPIES[i], c))
        .collect::<Vec<_>>()
        .join("; ");
    StoreError::corrupt(
        format!("no valid manifest copy, but the directory holds data ({why})"),
        Location {
            file: Some("MANIFEST-A".into()),
            ..Location::default()
        },
    )
}

/// Upgrades a manifest of an older version in place: the same layout at the next generation, written as
/// [`manifest::VERSION`] through the two-copy write (A, then B). A crash between the copies leaves A at the new
/// version and generation, which the next open takes (and restores B from); a crash before A is renamed into place
/// leaves the old version in both, and the next open upgrades again.
fn upgrade(
    faults: &io::IoFaults,
    dir: &Path,
    old: Manifest,
    report: &mut RecoveryReport,
) -> Result<Manifest, StoreError> {
    let m = Manifest {
        version: manifest::VERSION,
        generation: old.generation + 1,
        ..old.clone()
    };
    manifest::write_both(faults, dir, &m).map_err(ioe(format!(
        "upgrading the manifest from version {} to {}",
        old.version,
        manifest::VERSION
    )))?;
    report.manifest_upgraded_from = Some(old.version);
    Ok(m)
}

/// Rebuilds a manifest from the files present when both copies are lost: the newest snapshot that verifies, every
/// segment whose header verifies (sealed if it has a matching sidecar; the last one open).
fn reconstruct(dir: &Path) -> Option<Manifest> {
    let mut snaps: Vec<u64> = std::fs::read_dir(dir.join(SNAP_DIR))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".snap")?.parse().ok())
        .collect();
    snaps.sort_unstable();
    let snapshot_lsn = snaps.into_iter().rev().find(|l| {
        read_data(&dir.join(snap_name(*l)))
            .ok()
            .is_some_and(|b| snapshot::decode(&b).is_ok_and(|(lsn, _)| lsn == *l))
    });
    let mut ids: Vec<u64> = std::fs::read_dir(wal::wal_dir(dir))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_owned();
            n.strip_suffix(".seg")
                .or_else(|| n.strip_suffix(".mir"))?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut segments = Vec::new();
    for id in ids {
        let head = [wal::seg_name(id), wal::mirror_name(id)]
            .into_iter()
            .find_map(|rel| {
                let b = read_data(&dir.join(rel)).ok()?;
                wal::header_first_lsn(&b, id).ok()
            });
        let Some(first_lsn) = head else { continue };
        let par = read_data(&dir.join(wal::par_name(id)))
            .ok()
            .and_then(|b| parity::parse(&b).ok())
            .filter(|sc| sc.file_id == id);
        let len = std::fs::symlink_metadata(dir.join(wal::seg_name(id)))
            .map(|m| m.len())
            .ok();
        segments.push(SegmentEntry {
            id,
            first_lsn,
            sealed: true,
            sealed_len: par.map(|p| p.data_len).or(len).unwrap_or(0),
        });
    }
    if let Some(last) = segments.last_mut() {
        last.sealed = false;
        last.sealed_len = 0;
    } else {
        return None;
    }
    Some(Manifest {
        version: manifest::VERSION,
        generation: 1,
        vector_dim: None,
        snapshot_lsn,
        segments,
    })
}
