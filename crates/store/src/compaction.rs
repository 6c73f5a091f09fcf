//! How the log's files change shape: **rotation** (seal the open segment with its parity and identity sidecars and
//! start the next) and **compaction** (write a snapshot of the verified table and a fresh segment, then drop every
//! file the snapshot covers), both ending in **the manifest switch** that makes the new layout the truth.
//!
//! These functions take what they need explicitly — the directory and configuration ([`Files`]), the log's state
//! ([`WalState`], whose lock the caller holds together with the leader role, so no commit is in flight) and, for a
//! snapshot, the table's verified entries — and tell the caller what happened as values ([`Sealed`], [`CopyB`]): the
//! store decides what that means for its state (issues, pending manifest copy, counters).
//!
//! Invariants:
//! - A segment is sealed only once every record verifies in the main copy or the mirror (parity over damaged bytes
//!   would vouch for them); otherwise [`Sealed::NeedsCompaction`]: the table, which verified every document when it
//!   was written, replaces the segment.
//! - New files are whole and flushed before the manifest names them; old files are removed only after the switch.
//! - The switch writes MANIFEST-A then MANIFEST-B. A failure of A that leaves A certainly old is an ordinary error
//!   (nothing changed); one that may have left the new A unflushed is `Poisoned` (which layout survives a crash is
//!   unknown). B failing leaves A durable: [`CopyB`] says so and B is restored from its twin.

use std::path::Path;
use std::sync::Arc;

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::identity;
use crate::io;
use crate::layout::{SNAP_DIR, SNAP_ID_BIT, snap_name, snap_par_name};
use crate::manifest::{self, Manifest, SegmentEntry};
use crate::parity::{self, ParityParams};
use crate::snapshot;
use crate::store::{WalState, ioe};
use crate::wal::{self, OpenSegment};

/// The directory and settings a change of layout writes with.
pub(crate) struct Files<'a> {
    /// The data directory.
    pub dir: &'a Path,
    /// The store's configuration (fault hooks, parity geometry, mirroring).
    pub cfg: &'a StoreConfig,
    /// The largest record a scan accepts.
    pub record_bytes_max: u64,
}

impl Files<'_> {
    /// The parity geometry of new sidecars.
    pub fn params(&self) -> ParityParams {
        ParityParams {
            block_bytes: self.cfg.block_bytes,
            data_blocks: self.cfg.parity_data_blocks,
            parity_blocks: self.cfg.parity_blocks,
        }
    }

    /// Creates `wal/` and `snap/` again if something removed them (and flushes the directory).
    pub fn ensure_dirs(&self) -> Result<(), StoreError> {
        let mut created = false;
        for sub in ["wal", SNAP_DIR] {
            let d = self.dir.join(sub);
            if !d.is_dir() {
                std::fs::create_dir_all(&d).map_err(ioe(format!("recreating {sub}/")))?;
                created = true;
            }
        }
        if created {
            io::sync_dir(&self.cfg.io, self.dir).map_err(ioe("syncing the data directory"))?;
        }
        Ok(())
    }
}

/// How the second manifest copy fared in a switch (the first is durable whenever a switch returns `Ok`).
#[derive(Debug)]
pub(crate) enum CopyB {
    /// Written and flushed.
    Written,
    /// Not written for lack of a resource (the reason): not damage; to be written again once the resource is back.
    Pending(String),
    /// Writing it failed: it is damaged or stale until restored from its twin.
    Failed(std::io::Error),
}

/// What sealing the open segment did.
#[derive(Debug)]
pub(crate) enum Sealed {
    /// Sealed; the new segment is open and the manifest switched.
    Done(CopyB),
    /// Not sealed: the segment could not be read back, its header is damaged, or a record is damaged in every copy.
    /// Nothing changed; a compaction from the verified table replaces it.
    NeedsCompaction,
}

/// Makes `m` the layout on disk: copy A, then copy B (see the module's invariants).
pub(crate) fn switch_manifest(f: &Files, m: &Manifest) -> Result<CopyB, StoreError> {
    let faults = &*f.cfg.io;
    if let Err(io::AtomicWriteFailure { error: e, renamed }) =
        manifest::write_copy_staged(faults, f.dir, 0, m)
    {
        // Failed before its rename: A is certainly the old copy. After it, a copy that cannot be read back (no
        // descriptor) may be the new one: only "certainly old" goes on.
        let a_is_new = renamed
            && io::read_file(faults, &f.dir.join(manifest::COPIES[0]))
                .map_or(true, |b| b == m.encode());
        if a_is_new {
            return Err(StoreError::Poisoned(format!(
                "MANIFEST-A (generation {}) was renamed into place but not flushed: {e}",
                m.generation
            )));
        }
        return Err(StoreError::io("writing MANIFEST-A", e));
    }
    Ok(match manifest::write_copy(faults, f.dir, 1, m) {
        Ok(()) => CopyB::Written,
        Err(e) if io::is_resource(&e) => CopyB::Pending(io::reason(&e)),
        Err(e) => CopyB::Failed(e),
    })
}

/// Seals the open segment and starts a new one at `next_lsn`: verifies every record (taking a record damaged in
/// the main copy from the mirror and writing it back), writes the parity sidecar, creates the next segment, switches
/// the manifest (recording `vector_dim`), writes — best effort — the identity sidecar, then drops the old mirror.
pub(crate) fn seal_open_segment(
    f: &Files,
    w: &mut WalState,
    next_lsn: u64,
    vector_dim: Option<u32>,
) -> Result<Sealed, StoreError> {
    let faults = &*f.cfg.io;
    let id = w.seg.id;
    let rel = wal::seg_name(id);
    // A sealed segment is exactly its records: the zero-filled space past them goes first.
    w.seg
        .cut_to_len(faults)
        .map_err(ioe(format!("cutting {rel} to its records")))?;
    // Read through the open descriptor (the caller, `write_batch`, has just checked that the segment is still the
    // file at its path). Should the read fail, the table holds every record the segment does.
    let mut bytes = read_fd(&w.seg.file, w.seg.len as usize);
    if bytes.len() as u64 != w.seg.len {
        return Ok(Sealed::NeedsCompaction);
    }
    let mir = w
        .seg
        .mirror
        .as_ref()
        .map(|m| read_fd(m, w.seg.len as usize));
    let header_ok = wal::check_header(&bytes, id).is_ok();
    let s = wal::scan(&bytes, mir.as_deref(), f.record_bytes_max);
    if !header_ok || s.valid_end != w.seg.len {
        return Ok(Sealed::NeedsCompaction);
    }
    if !s.from_mirror.is_empty() {
        for (off, len) in &s.from_mirror {
            io::write_all_at(
                faults,
                &w.seg.file,
                &s.good[*off as usize..(*off + *len) as usize],
                *off,
            )
            .map_err(ioe(format!("repairing {rel} from its mirror")))?;
        }
        bytes = s.good;
    }
    let sidecar = parity::build(id, &bytes, &f.params())
        .map_err(|e| StoreError::io("building parity", std::io::Error::other(e)))?;
    io::write_file_atomic(faults, &f.dir.join(wal::par_name(id)), &sidecar)
        .map_err(ioe(format!("writing {}", wal::par_name(id))))?;
    let new = OpenSegment::create(faults, f.dir, id + 1, next_lsn, f.cfg.mirror_open_segment)
        .map_err(ioe(format!("creating {}", wal::seg_name(id + 1))))?;
    let mut m = w.manifest.clone();
    m.generation += 1;
    m.vector_dim = vector_dim;
    if let Some(last) = m.segments.last_mut() {
        last.sealed = true;
        last.sealed_len = w.seg.len;
    }
    m.segments.push(SegmentEntry {
        id: id + 1,
        first_lsn: next_lsn,
        sealed: false,
        sealed_len: 0,
    });
    let copy_b = switch_manifest(f, &m)?;
    // Only once sealed: until the switch the segment may take more batches, whose frames the open journal's
    // descriptor must reach (a sidecar renamed over it earlier would leave that descriptor on a removed file). The
    // journal stays if the identity sidecar cannot be written.
    let ids = identity::of_segment(&bytes, w.seg.first_lsn, next_lsn.saturating_sub(1));
    let _ = io::write_file_atomic(faults, &f.dir.join(wal::ids_name(id)), &ids);
    let _ = io::remove_file(faults, &f.dir.join(wal::mirror_name(id)));
    let _ = io::sync_dir(faults, &wal::wal_dir(f.dir));
    w.sealed_bytes += w.seg.len;
    w.seg = new;
    w.manifest = m;
    Ok(Sealed::Done(copy_b))
}

/// One verified document of the table, as a snapshot writes it.
pub(crate) struct TableEntry {
    /// Its table key.
    pub key: String,
    /// The LSN of its last write.
    pub lsn: u64,
    /// Its encoding.
    pub bytes: Arc<[u8]>,
}

/// Writes a snapshot of `entries` at `lsn` (with parity and identity sidecars) and a fresh open segment after it,
/// switches the manifest to them, then removes every file of the old layout. The caller verified every entry.
/// Returns the new open segment's id and how the second manifest copy fared.
pub(crate) fn snapshot_and_switch(
    f: &Files,
    w: &mut WalState,
    lsn: u64,
    entries: &[TableEntry],
    vector_dim: Option<u32>,
) -> Result<(u64, CopyB), StoreError> {
    let faults = &*f.cfg.io;
    f.ensure_dirs()?;
    let bytes = snapshot::encode(
        lsn,
        entries.iter().map(|e| snapshot::SnapEntry {
            id: &e.key,
            lsn: e.lsn,
            doc: &e.bytes,
        }),
    );
    let sidecar = parity::build(lsn | SNAP_ID_BIT, &bytes, &f.params())
        .map_err(|e| StoreError::io("building parity", std::io::Error::other(e)))?;
    io::write_file_atomic(faults, &f.dir.join(snap_name(lsn)), &bytes)
        .map_err(ioe(format!("writing {}", snap_name(lsn))))?;
    io::write_file_atomic(faults, &f.dir.join(snap_par_name(lsn)), &sidecar)
        .map_err(ioe(format!("writing {}", snap_par_name(lsn))))?;
    // Which documents the snapshot holds, by version (best effort: without it a lost snapshot names none).
    let ids = identity::of_snapshot(lsn, entries.iter().map(|e| (e.key.as_str(), e.lsn)));
    let _ = io::write_file_atomic(
        faults,
        &f.dir.join(identity::name_for(&snap_name(lsn))),
        &ids,
    );
    let new_id = w.seg.id + 1;
    let new = OpenSegment::create(faults, f.dir, new_id, lsn + 1, f.cfg.mirror_open_segment)
        .map_err(ioe(format!("creating {}", wal::seg_name(new_id))))?;
    let old = w.manifest.clone();
    let m = Manifest {
        version: manifest::VERSION,
        generation: old.generation + 1,
        vector_dim,
        snapshot_lsn: Some(lsn),
        segments: vec![SegmentEntry {
            id: new_id,
            first_lsn: lsn + 1,
            sealed: false,
            sealed_len: 0,
        }],
    };
    let copy_b = switch_manifest(f, &m)?;
    for s in &old.segments {
        for rel in [
            wal::seg_name(s.id),
            wal::mirror_name(s.id),
            wal::par_name(s.id),
            wal::ids_name(s.id),
        ] {
            let _ = io::remove_file(faults, &f.dir.join(rel));
        }
    }
    if let Some(l) = old.snapshot_lsn.filter(|l| *l != lsn) {
        let _ = io::remove_file(faults, &f.dir.join(snap_name(l)));
        let _ = io::remove_file(faults, &f.dir.join(snap_par_name(l)));
        let _ = io::remove_file(faults, &f.dir.join(identity::name_for(&snap_name(l))));
    }
    let _ = io::sync_dir(faults, &wal::wal_dir(f.dir));
    let _ = io::sync_dir(faults, &f.dir.join(SNAP_DIR));
    w.seg = new;
    w.manifest = m;
    w.sealed_bytes = 0;
    Ok((new_id, copy_b))
}

/// The first `len` bytes of an open file, read through its descriptor; empty if they cannot all be read.
pub(crate) fn read_fd(file: &std::fs::File, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; len];
    match file.read_exact_at(&mut b, 0) {
        Ok(()) => b,
        Err(_) => Vec::new(),
    }
}
