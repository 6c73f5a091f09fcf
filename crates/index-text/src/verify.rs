//! Verifying a generation's files with plain reads (never through a memory map: a truncated mapped file is a
//! SIGBUS, and tantivy's directory caches maps of files deleted since): `meta.json` parses, every file of every
//! segment it lists exists, and each one's body matches the CRC32 in its tantivy footer.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tantivy::directory::footer::Footer;
use tantivy::directory::{FileHandle, FileSlice, OwnedBytes};
use tantivy::index::{SegmentComponent, SegmentMeta};
use tantivy::{HasLen, Index};

/// The per-segment files tantivy 0.27 writes (its built-in plugins' extensions), besides the delete bitset.
pub(crate) const SEGMENT_EXTENSIONS: [&str; 6] =
    ["fieldnorm", "term", "idx", "pos", "fast", "store"];

/// Reads a file through `pread`, so tantivy's footer parser can read it without a map.
#[derive(Debug)]
struct PlainFile {
    file: File,
    len: usize,
}

impl HasLen for PlainFile {
    fn len(&self) -> usize {
        self.len
    }
}

impl FileHandle for PlainFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        let mut buf = vec![0u8; range.len()];
        self.file.read_exact_at(&mut buf, range.start as u64)?;
        Ok(OwnedBytes::new(buf))
    }
}

/// Every file a segment must have on disk.
pub(crate) fn segment_files(seg: &SegmentMeta) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = SEGMENT_EXTENSIONS
        .iter()
        .map(|ext| seg.relative_path(SegmentComponent::Custom((*ext).to_string())))
        .collect();
    if seg.has_deletes() {
        files.push(seg.relative_path(SegmentComponent::Delete));
    }
    files
}

/// Whether one file's body matches its footer's checksum; `Err` describes why it cannot be read or parsed.
pub(crate) fn file_checksum_ok(path: &Path) -> Result<bool, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len() as usize;
    let slice = FileSlice::new(Arc::new(PlainFile { file, len }));
    let (footer, body) = Footer::extract_footer(slice).map_err(|e| format!("footer: {e}"))?;
    let mut hasher = crc32fast::Hasher::new();
    const CHUNK: usize = 1 << 20;
    let n = body.len();
    let mut at = 0;
    while at < n {
        let end = (at + CHUNK).min(n);
        let bytes = body
            .read_bytes_slice(at..end)
            .map_err(|e| format!("read at {at}: {e}"))?;
        hasher.update(bytes.as_slice());
        at = end;
    }
    Ok(hasher.finalize() == footer.crc)
}

/// Reads `meta.json` through a fresh directory handle (no cached maps): the segments it names; `Err`: unreadable or
/// not tantivy's.
pub(crate) fn read_metas(gen_dir: &Path) -> Result<Vec<SegmentMeta>, String> {
    meta_json_parses(gen_dir)?;
    let index = Index::open_in_dir(gen_dir).map_err(|e| format!("meta.json: {e}"))?;
    segments_of(&index)
}

/// Whether the generation's `meta.json` is readable JSON (tantivy's own open says less about garbage).
pub(crate) fn meta_json_parses(gen_dir: &Path) -> Result<(), String> {
    let mut meta = Vec::new();
    File::open(gen_dir.join("meta.json"))
        .and_then(|mut f| f.read_to_end(&mut meta))
        .map_err(|e| format!("meta.json: {e}"))?;
    serde_json::from_slice::<serde_json::Value>(&meta).map_err(|e| format!("meta.json: {e}"))?;
    Ok(())
}

/// The segments an opened index's `meta.json` names.
pub(crate) fn segments_of(index: &Index) -> Result<Vec<SegmentMeta>, String> {
    index
        .searchable_segment_metas()
        .map_err(|e| format!("meta.json: {e}"))
}

/// Every damaged or missing file of the generation in `gen_dir`, described with its name. `Err`: `meta.json`
/// itself cannot be read (the whole generation is unusable).
pub(crate) fn damage(gen_dir: &Path, segs: &[SegmentMeta]) -> Vec<String> {
    let mut out = Vec::new();
    for seg in segs {
        for rel in segment_files(seg) {
            let path = gen_dir.join(&rel);
            match file_checksum_ok(&path) {
                Ok(true) => {}
                Ok(false) => out.push(format!("{}: checksum mismatch", rel.display())),
                Err(e) if !path.exists() => out.push(format!("{}: missing ({e})", rel.display())),
                Err(e) => out.push(format!("{}: {e}", rel.display())),
            }
        }
    }
    out
}

/// A quick look at open: every listed file exists and is at least as long as an empty footer.
pub(crate) fn files_present(gen_dir: &Path, segs: &[SegmentMeta]) -> Result<(), String> {
    for seg in segs {
        for rel in segment_files(seg) {
            let path = gen_dir.join(&rel);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() >= 8 => {}
                Ok(m) => return Err(format!("{}: only {} bytes", rel.display(), m.len())),
                Err(e) => return Err(format!("{}: {e}", rel.display())),
            }
        }
    }
    Ok(())
}

/// tantivy's own files in a generation directory, besides the segments' files.
const TANTIVY_FILES: [&str; 4] = [
    "meta.json",
    ".managed.json",
    ".tantivy-meta.lock",
    ".tantivy-writer.lock",
];

/// What a generation directory holds against what its `meta.json` names.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Entries of the directory.
    pub(crate) files: usize,
    /// Files neither `meta.json` nor tantivy's list of the files it manages (`.managed.json`: a writer's
    /// uncommitted segments, a merge in progress, files awaiting its garbage collection) name, last modified at
    /// least the given age ago (a file younger may be a temporary file of an atomic write).
    pub(crate) orphans: Vec<std::path::PathBuf>,
    /// Files `meta.json` names that are not there.
    pub(crate) missing: Vec<String>,
}

/// The files tantivy says it manages in `gen_dir` (an unreadable list names none).
fn managed(gen_dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read(gen_dir.join(".managed.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Lists `gen_dir` against its `meta.json` (read after the listing: a file tantivy creates meanwhile is already in
/// its list when the listing sees it). `Err`: `meta.json` cannot be read.
pub(crate) fn inventory(gen_dir: &Path, age_min: std::time::Duration) -> Result<Inventory, String> {
    let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(gen_dir)
        .map_err(|e| format!("{}: {e}", gen_dir.display()))?
        .flatten()
        .collect();
    let managed = managed(gen_dir);
    let referenced = |segs: &[SegmentMeta]| -> std::collections::BTreeSet<String> {
        segs.iter()
            .flat_map(segment_files)
            .map(|p| p.to_string_lossy().to_string())
            .collect()
    };
    let segs = read_metas(gen_dir)?;
    let mut named = referenced(&segs);
    let mut missing: Vec<String> = named
        .iter()
        .filter(|f| !gen_dir.join(f).exists())
        .cloned()
        .collect();
    if !missing.is_empty() {
        // A merge may have ended and its old segments been collected since `meta.json` was read: read it again.
        let segs = read_metas(gen_dir)?;
        named = referenced(&segs);
        missing = named
            .iter()
            .filter(|f| !gen_dir.join(f).exists())
            .cloned()
            .collect();
    }
    let now = std::time::SystemTime::now();
    let mut orphans = Vec::new();
    for e in &entries {
        let name = e.file_name().to_string_lossy().to_string();
        if TANTIVY_FILES.contains(&name.as_str())
            || named.contains(&name)
            || managed.contains(&name)
        {
            continue;
        }
        let old_enough = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= age_min);
        if old_enough {
            orphans.push(e.path());
        }
    }
    orphans.sort();
    Ok(Inventory {
        files: entries.len(),
        orphans,
        missing,
    })
}
