//! The data directory's layout in one place (`FORMAT.md` describes it): file names, what each live file is
//! ([`FileKind`], [`DataFile`]), the role a path plays by its name alone ([`classify`], [`FileRole`]), the immutable
//! files and what verifying one found ([`ImmutableFile`], [`FileVerdict`]), and the state of a manifest copy
//! ([`CopyState`]).
//!
//! ```text
//! LOCK                      the lock: holder, heartbeat, closed
//! MANIFEST-A, MANIFEST-B    the manifest, two copies
//! wal/<id>.seg              WAL segments (one open, the rest sealed)
//! wal/<id>.mir              the open segment's mirror
//! wal/<id>.seg.par          a sealed segment's parity sidecar
//! snap/<lsn>.snap(.par)     the snapshot and its parity sidecar
//! *.ids                     identity sidecars (which documents a file's records touch)
//! idx/<coll>/<name>/        derived indexes (owned by their index)
//! backup/                   repair backups
//! ```

use serde::{Deserialize, Serialize};

/// `snap/` under the data directory.
pub(crate) const SNAP_DIR: &str = "snap";
/// Snapshot file ids have the top bit set so a snapshot block can never pass as a segment block.
pub(crate) const SNAP_ID_BIT: u64 = 1 << 63;

/// A snapshot's relative path.
pub fn snap_name(lsn: u64) -> String {
    format!("snap/{lsn:016}.snap")
}
/// A snapshot sidecar's relative path.
pub fn snap_par_name(lsn: u64) -> String {
    format!("snap/{lsn:016}.snap.par")
}

/// What a live data file is, as the manifest says (a segment is open or sealed by the manifest, not by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A sealed WAL segment.
    Segment,
    /// The open WAL segment.
    OpenSegment,
    /// The open segment's mirror.
    Mirror,
    /// A parity sidecar.
    Parity,
    /// The snapshot.
    Snapshot,
    /// A manifest copy.
    Manifest,
    /// The lock file.
    Lock,
}

impl FileKind {
    /// The role a file of this kind plays, as [`classify`] names it from the path.
    pub fn role(self) -> FileRole {
        match self {
            FileKind::Segment | FileKind::OpenSegment | FileKind::Mirror => FileRole::Wal,
            FileKind::Parity => FileRole::Parity,
            FileKind::Snapshot => FileRole::Snapshot,
            FileKind::Manifest => FileRole::Manifest,
            FileKind::Lock => FileRole::Lock,
        }
    }

    /// The snake_case name (`open_segment`), as reports and the API spell it.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Segment => "segment",
            FileKind::OpenSegment => "open_segment",
            FileKind::Mirror => "mirror",
            FileKind::Parity => "parity",
            FileKind::Snapshot => "snapshot",
            FileKind::Manifest => "manifest",
            FileKind::Lock => "lock",
        }
    }
}

/// What role a file plays in a data directory, by its path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    /// A write-ahead log segment.
    Wal,
    /// A snapshot.
    Snapshot,
    /// Parity over other files.
    Parity,
    /// The manifest (or one of its copies).
    Manifest,
    /// The lock file.
    Lock,
    /// Anything else (derived indexes, temporary files).
    Other,
}

/// Classifies a path relative to the data directory: `LOCK`, `MANIFEST-A`/`-B`, `wal/<id>.seg` (segments),
/// `wal/<id>.mir` (the open segment's mirror), `wal/<id>.seg.par` and `snap/<lsn>.snap.par` (parity sidecars),
/// `snap/<lsn>.snap`. Anything else (repair backups under `backup/`, temporary files) is [`FileRole::Other`].
pub fn classify(rel: &str) -> FileRole {
    match rel.split('/').collect::<Vec<_>>().as_slice() {
        ["LOCK"] => FileRole::Lock,
        [name] if name.starts_with("MANIFEST-") && !name.ends_with(".tmp") => FileRole::Manifest,
        ["wal", name] if name.ends_with(".seg.par") => FileRole::Parity,
        ["wal", name] if name.ends_with(".seg") || name.ends_with(".mir") => FileRole::Wal,
        ["snap", name] if name.ends_with(".snap.par") => FileRole::Parity,
        ["snap", name] if name.ends_with(".snap") => FileRole::Snapshot,
        _ => FileRole::Other,
    }
}

/// A file the store wrote once and never changes: a sealed segment or a snapshot, with its parity sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableFile {
    /// Path relative to the data directory.
    pub rel: String,
    /// The sidecar's relative path.
    pub par_rel: String,
    /// Id mixed into block checksums.
    pub file_id: u64,
    /// Expected length.
    pub len: u64,
    /// LSNs it covers.
    pub lsn_range: (u64, u64),
}

/// What verifying an immutable file found.
#[derive(Debug, Clone, Default)]
pub struct FileVerdict {
    /// Data blocks failing their checksum.
    pub bad_blocks: Vec<usize>,
    /// The sidecar is unusable, and why.
    pub sidecar_error: Option<String>,
    /// Recovery blocks damaged or disagreeing with the data (only checked when asked).
    pub parity_mismatches: Vec<(usize, usize)>,
    /// Whether the damage can be rebuilt from parity.
    pub rebuildable: bool,
    /// The file could not be read at all.
    pub read_error: Option<String>,
    /// The file or its sidecar could not be read for lack of a resource (e.g. `cannot open snap/...: too many open
    /// files`): nothing is known about its bytes — not damage; verified again once the resource is back.
    pub environment_error: Option<String>,
    /// The file's length on disk.
    pub disk_len: u64,
    /// Block size used.
    pub block_bytes: u64,
    /// With the sidecar unusable, the file's own record or entry checksums were checked instead: what failed.
    pub content_damaged: Option<String>,
}

impl FileVerdict {
    /// Whether parity can undo every problem found (or there is none). A damaged sidecar over intact data counts as
    /// rebuildable: the sidecar is regenerated from the data.
    pub fn rebuildable_or_clean(&self) -> bool {
        self.read_error.is_none()
            && self.content_damaged.is_none()
            && (self.bad_blocks.is_empty() || self.rebuildable)
    }

    /// Whether everything checked is intact.
    pub fn clean(&self) -> bool {
        self.bad_blocks.is_empty()
            && self.sidecar_error.is_none()
            && self.parity_mismatches.is_empty()
            && self.read_error.is_none()
            && self.environment_error.is_none()
    }
}

/// What a manifest copy holds, as [`Store::manifest_copy_states`](crate::Store::manifest_copy_states) found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyState {
    /// The current manifest.
    Current,
    /// Missing, damaged, stale, or a link; why.
    Damaged(String),
    /// Could not be read for lack of a resource (`cannot read MANIFEST-A: too many open files`): nothing is known.
    Unavailable(String),
}

/// A live data file and what protects it, for fault injection and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path relative to the data directory.
    pub rel: String,
    /// What it is.
    pub kind: FileKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_s_name_classifies_to_its_role() {
        let named = [
            ("wal/0000000000000001.seg", FileKind::Segment),
            ("wal/0000000000000002.seg", FileKind::OpenSegment),
            ("wal/0000000000000002.mir", FileKind::Mirror),
            ("wal/0000000000000001.seg.par", FileKind::Parity),
            (&*snap_name(9), FileKind::Snapshot),
            (&*snap_par_name(9), FileKind::Parity),
            ("MANIFEST-B", FileKind::Manifest),
            ("LOCK", FileKind::Lock),
        ];
        for (rel, kind) in named {
            assert_eq!(classify(rel), kind.role(), "{rel}");
        }
        assert_eq!(classify("backup/1/wal/1.seg"), FileRole::Other);
        assert_eq!(classify("MANIFEST-A.tmp"), FileRole::Other);
        assert_eq!(
            serde_json::to_string(&FileKind::OpenSegment).unwrap(),
            "\"open_segment\""
        );
    }
}
