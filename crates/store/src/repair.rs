//! The mutations repair strategies call, as functions over what they are given: the directory and settings
//! ([`Files`]) and, for the open segment, the log state ([`WalState`]) under the caller's WAL lock and leader role.
//! Each returns what it did, in words for the incident's record (`"rebuilt blocks [3] of wal/…seg from parity and
//! rewrote it"`), or an error saying why it could not.
//!
//! Invariants:
//! - Nothing is rebuilt from data that does not verify: a sidecar is regenerated only from a file whose own records
//!   or entries verify ([`verify::file_content`](crate::verify::file_content)); the open segment only from records that verify in one of its copies.
//! - A file is replaced atomically (written beside it, flushed, renamed over it) or rewritten in place and flushed;
//!   a failed flush of the open segment poisons the store (the kernel may have dropped what it reported written).
//! - A copy whose path no longer leads to the file the store holds (deleted, replaced, a link) is recreated anew at
//!   its path from the verified bytes, never written through.

use std::path::Path;

use crate::compaction::{Files, read_fd};
use crate::error::{StoreError, loc};
use crate::io;
use crate::layout::ImmutableFile;
use crate::manifest::{self, Manifest};
use crate::parity;
use crate::store::{WalState, ioe, same_file};
use crate::verify;
use crate::wal;

/// Repairs a sealed segment or snapshot from its parity sidecar (blocks rebuilt, the file rewritten), recomputes
/// recovery blocks that disagree with the data, or — the sidecar unusable — regenerates the sidecar from data that
/// verifies on its own.
pub(crate) fn immutable_file(files: &Files, f: &ImmutableFile) -> Result<Vec<String>, StoreError> {
    let faults = &*files.cfg.io;
    let mut actions = Vec::new();
    let path = files.dir.join(&f.rel);
    let mut data = io::read_file(faults, &path)
        .map_err(|e| StoreError::from_open(format!("reading {}", f.rel), e))?;
    let sc = io::read_file(faults, &files.dir.join(&f.par_rel))
        .map_err(|e| io::reason(&e))
        .and_then(|b| parity::parse(&b))
        .and_then(|sc| {
            if sc.file_id == f.file_id {
                Ok(sc)
            } else {
                Err("sidecar belongs to another file".into())
            }
        });
    match sc {
        Ok(sc) => {
            let bad = parity::bad_blocks(&data, &sc);
            let too_long = data.len() as u64 > sc.data_len;
            if !bad.is_empty() || too_long {
                parity::rebuild(&mut data, &sc, &bad)
                    .map_err(|e| StoreError::corrupt(e, loc(&f.rel, 0, f.len)))?;
                data.truncate(sc.data_len as usize);
                io::write_file_atomic(faults, &path, &data)
                    .map_err(ioe(format!("rewriting {}", f.rel)))?;
                actions.push(format!(
                    "rebuilt blocks {bad:?} of {} from parity and rewrote it",
                    f.rel
                ));
            }
            let mism = parity::parity_mismatches(&data, &sc)
                .map_err(|e| StoreError::io("checking parity", std::io::Error::other(e)))?;
            if !mism.is_empty() {
                write_sidecar(files, f, &data)?;
                actions.push(format!(
                    "recomputed {} recovery blocks of {}",
                    mism.len(),
                    f.par_rel
                ));
            }
        }
        Err(e) => {
            // The sidecar is unusable: rebuild it, but only from data that verifies on its own.
            verify::file_content(files.record_bytes_max, f, &data)?;
            write_sidecar(files, f, &data)?;
            actions.push(format!(
                "sidecar {} was unusable ({e}); rebuilt it from verified data",
                f.par_rel
            ));
        }
    }
    Ok(actions)
}

/// Writes `f`'s parity sidecar anew from `data`.
fn write_sidecar(files: &Files, f: &ImmutableFile, data: &[u8]) -> Result<(), StoreError> {
    let side = parity::build(f.file_id, data, &files.params())
        .map_err(|e| StoreError::io("building parity", std::io::Error::other(e)))?;
    io::write_file_atomic(&files.cfg.io, &files.dir.join(&f.par_rel), &side)
        .map_err(ioe(format!("rewriting {}", f.par_rel)))
}

/// Repairs the open segment and its mirror from each other, record by record whichever copy verifies (a damaged
/// main header taken from the mirror), and recreates a copy whose path no longer leads to the file held. Refused
/// (`Corrupt`) when a record is damaged in both copies: the verified table's compaction replaces the segment then.
pub(crate) fn open_segment(files: &Files, w: &mut WalState) -> Result<Vec<String>, StoreError> {
    let faults = &*files.cfg.io;
    let id = w.seg.id;
    let len = w.seg.len as usize;
    let rel = wal::seg_name(id);
    let mir_rel = wal::mirror_name(id);
    // A copy whose path no longer leads to the file we hold (deleted or replaced) is read through our descriptor,
    // which still holds what we wrote, and recreated at its path.
    let read_copy = |rel: &str, f: &std::fs::File| -> (Vec<u8>, bool) {
        let p = files.dir.join(rel);
        if same_file(&p, f) {
            let mut b = io::read_file(faults, &p).unwrap_or_default();
            b.truncate(len);
            (b, false)
        } else {
            (read_fd(f, len), true)
        }
    };
    let (main, main_lost) = read_copy(&rel, &w.seg.file);
    let (mirror, mirror_lost) = match &w.seg.mirror {
        Some(f) => {
            let (b, lost) = read_copy(&mir_rel, f);
            (Some(b), lost)
        }
        None => (None, false),
    };
    let main_for_scan = match (wal::check_header(&main, id), &mirror) {
        (Err(_), Some(m)) if m.len() >= wal::HEADER_BYTES as usize => {
            let mut f = main.clone();
            f.resize(f.len().max(wal::HEADER_BYTES as usize), 0);
            f[..wal::HEADER_BYTES as usize].copy_from_slice(&m[..wal::HEADER_BYTES as usize]);
            f
        }
        _ => main.clone(),
    };
    let s = wal::scan(&main_for_scan, mirror.as_deref(), files.record_bytes_max);
    if s.valid_end != len as u64 {
        return Err(StoreError::corrupt(
            format!("{rel}: acknowledged records damaged in both copies"),
            loc(&rel, s.valid_end, len as u64 - s.valid_end),
        ));
    }
    let mut actions = Vec::new();
    let poison = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| StoreError::Poisoned(format!("fsync of {what}: {e}"))
    };
    if main_lost {
        w.seg.file = recreate(faults, files.dir, &rel, &s.good)?;
        actions.push(format!(
            "{rel} was deleted or replaced; recreated it from the data we hold"
        ));
    } else if main != s.good {
        io::write_all_at(faults, &w.seg.file, &s.good, 0)
            .map_err(ioe(format!("rewriting {rel}")))?;
        io::sync(faults, &w.seg.file).map_err(poison(&rel))?;
        actions.push(format!("rewrote damaged records of {rel} from its mirror"));
    }
    if mirror_lost {
        w.seg.mirror = Some(recreate(faults, files.dir, &mir_rel, &s.good)?);
        actions.push(format!("{mir_rel} was deleted or replaced; recreated it"));
    } else if let (Some(m), Some(f)) = (&mirror, &w.seg.mirror)
        && *m != s.good
    {
        f.set_len(0).map_err(ioe("truncating the mirror"))?;
        io::write_all_at(faults, f, &s.good, 0).map_err(ioe("rewriting the mirror"))?;
        io::sync(faults, f).map_err(poison(&mir_rel))?;
        actions.push(format!("rewrote the mirror of {rel}"));
    }
    if !actions.is_empty() {
        // A recreated copy has no zero-filled space: a commit there changes its size, which one flush of the
        // other copy would not make durable.
        w.seg.copies_replaced(faults).map_err(|e| {
            StoreError::Poisoned(format!(
                "cutting {rel} and its mirror to their records: {e}"
            ))
        })?;
    }
    Ok(actions)
}

/// Restores a damaged, missing or stale manifest copy from the current manifest `current` (the caller holds the
/// WAL lock, so no switch runs). Returns the copies rewritten.
pub(crate) fn manifest_copies(
    files: &Files,
    current: &Manifest,
) -> Result<Vec<String>, StoreError> {
    let loaded = manifest::load(&files.cfg.io, files.dir);
    if let Some(why) = loaded.unavailable {
        return Err(StoreError::io(
            why,
            std::io::Error::other("resource exhausted"),
        ));
    }
    let mut out = Vec::new();
    for i in 0..2 {
        let ok = matches!(&loaded.copies[i], Some(Ok(g)) if *g == current.generation);
        let same = io::read_file(&files.cfg.io, &files.dir.join(manifest::COPIES[i])).ok()
            == Some(current.encode());
        if !ok || !same {
            manifest::write_copy(&files.cfg.io, files.dir, i, current)
                .map_err(ioe(format!("restoring {}", manifest::COPIES[i])))?;
            out.push(manifest::COPIES[i].to_string());
        }
    }
    Ok(out)
}

/// Writes `bytes` as a new file at `rel` (fsynced, directory fsynced) and returns it open for appending.
fn recreate(
    faults: &io::IoFaults,
    dir: &Path,
    rel: &str,
    bytes: &[u8],
) -> Result<std::fs::File, StoreError> {
    let path = dir.join(rel);
    let f = io::create_new(faults, &path).map_err(ioe(format!("recreating {rel}")))?;
    io::write_all_at(faults, &f, bytes, 0).map_err(ioe(format!("writing {rel}")))?;
    io::sync(faults, &f).map_err(|e| StoreError::Poisoned(format!("fsync of {rel}: {e}")))?;
    if let Some(parent) = path.parent() {
        io::sync_dir(faults, parent).map_err(ioe("syncing the WAL directory"))?;
    }
    Ok(f)
}
