//! Seeded, reproducible fault injection over a data directory.
//!
//! Owns [`FaultKind`] (the faults medic is tested against, with their stable snake_case names), [`Injector`] (one
//! `StdRng` seeded with `seed_from_u64`, so a seed replays the same faults on the same directory) and
//! [`InjectedFault`] (exactly what was done: file, offset, length), so a test can check that detection names the
//! same place.
//!
//! The injector lives in `store` because `store` owns every file of a data directory (an architecture invariant);
//! it picks its targets among the store's files by the layout in `FORMAT.md`. Faults on bytes (bit flip, zeroed
//! range, misdirected write, deleted file) are written straight to the files; torn writes (a partial record appended,
//! or the last record cut in both copies; a page of the last commit batch left zero in both, as a power loss mid-flush
//! leaves it: `hole_in_batch`) and stale locks imitate what a crash leaves behind; out-of-space and slow I/O go through the store's own I/O hooks
//! ([`crate::io::IoFaults`]). Written by hand: fault crates (`fail`) use a global registry and cannot aim at one
//! byte of one file.

use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use crate::layout::{FileRole, classify};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::issues::Code;

/// Largest range a zeroed-range fault writes, bytes.
pub const ZERO_RANGE_BYTES_MAX: u64 = 4096;
/// Largest block a misdirected write copies, bytes.
pub const MISDIRECTED_BYTES_MAX: u64 = 4096;
/// Largest file the injector reads whole (to find a range worth damaging), bytes.
pub const TARGET_FILE_BYTES_MAX: u64 = 1 << 30;
/// How many random picks the injector tries before it gives up on finding a range that would actually change.
const PICK_ATTEMPTS_MAX: usize = 64;

/// A kind of fault the injector can cause. Names are snake_case in serde and in [`FromStr`] (`--faults k,k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// One bit flipped in a stored file (media bit rot).
    BitFlip,
    /// A range of bytes overwritten with zeros (a lost sector, a firmware bug).
    ZeroRange,
    /// The log tail ends mid-record: a write torn by a crash before it was acknowledged. [`Injector::inject`]
    /// appends to the newest segment a record header announcing 64..4096 payload bytes followed by fewer random
    /// bytes (main copy only, nothing existing changed); [`Injector::cut_last_record`] instead cuts the open
    /// segment and its mirror in the middle of their last record, for a store that crashed before acknowledging it.
    TornWrite,
    /// A stored file removed (operator error, a clean-up script).
    DeleteFile,
    /// A block written over another block of the same file (a misdirected write).
    MisdirectedWrite,
    /// A lock file left behind by a process that died.
    StaleLock,
    /// The disk fills up: writes fail for lack of space.
    OutOfSpace,
    /// Every I/O takes much longer than usual.
    SlowIo,
    /// A snapshot or sealed segment damaged (a zeroed range) and its parity sidecar deleted, together: damage beyond
    /// the file's own redundancy, which only the verified in-memory table can undo.
    FileAndSidecar,
    /// `wal/`, `snap/` and both manifest copies deleted under the running store (a clean-up script run in the wrong
    /// directory): only the in-memory table still holds the data.
    LayoutDeleted,
    /// The process out of file descriptors: every open of a data file fails with EMFILE (set on the store's I/O
    /// hooks, as a crowd of clients would cause it), until the environment recovers.
    DescriptorExhaustion,
}

impl FaultKind {
    /// Double faults beyond a file's own redundancy, drawn only when named (`--faults file_and_sidecar,...`), so the
    /// default campaign's seeds keep drawing what they always drew.
    pub const BEYOND_REDUNDANCY: [FaultKind; 2] =
        [FaultKind::FileAndSidecar, FaultKind::LayoutDeleted];

    /// Resource exhaustion of the environment, drawn only when named (`--faults descriptor_exhaustion`).
    pub const RESOURCES: [FaultKind; 1] = [FaultKind::DescriptorExhaustion];

    /// Every fault kind of the default campaign, in a fixed order.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::BitFlip,
        FaultKind::ZeroRange,
        FaultKind::TornWrite,
        FaultKind::DeleteFile,
        FaultKind::MisdirectedWrite,
        FaultKind::StaleLock,
        FaultKind::OutOfSpace,
        FaultKind::SlowIo,
    ];

    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::BitFlip => "bit_flip",
            FaultKind::ZeroRange => "zero_range",
            FaultKind::TornWrite => "torn_write",
            FaultKind::DeleteFile => "delete_file",
            FaultKind::MisdirectedWrite => "misdirected_write",
            // Named after the issue it causes.
            FaultKind::StaleLock => Code::StaleLock.as_str(),
            FaultKind::OutOfSpace => "out_of_space",
            FaultKind::SlowIo => "slow_io",
            FaultKind::FileAndSidecar => "file_and_sidecar",
            FaultKind::LayoutDeleted => "layout_deleted",
            FaultKind::DescriptorExhaustion => "descriptor_exhaustion",
        }
    }

    /// Whether the fault changes stored bytes (as opposed to the environment: lock, space, latency).
    pub fn damages_bytes(self) -> bool {
        matches!(
            self,
            FaultKind::BitFlip
                | FaultKind::ZeroRange
                | FaultKind::TornWrite
                | FaultKind::DeleteFile
                | FaultKind::MisdirectedWrite
                | FaultKind::FileAndSidecar
                | FaultKind::LayoutDeleted
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        FaultKind::ALL
            .into_iter()
            .chain(FaultKind::BEYOND_REDUNDANCY)
            .chain(FaultKind::RESOURCES)
            .find(|k| k.name() == wanted || k.name().replace('_', "-") == wanted)
            .ok_or_else(|| FaultError::UnknownKind(wanted.to_string()))
    }
}

/// Parses a comma-separated list of fault kinds (`bit_flip,torn_write`). An empty string gives an empty list
/// (meaning "all" to the chaos harness); duplicates are dropped, order kept.
pub fn parse_fault_list(s: &str) -> Result<Vec<FaultKind>, FaultError> {
    let mut kinds = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let kind: FaultKind = part.parse()?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

/// Why an injection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// A fault name that is not one of [`FaultKind::ALL`].
    #[error(
        "unknown fault kind {0:?}; known: bit_flip, zero_range, torn_write, delete_file, misdirected_write, \
         stale_lock, out_of_space, slow_io, file_and_sidecar, layout_deleted, descriptor_exhaustion"
    )]
    UnknownKind(String),
    /// The directory holds no file this fault can be aimed at.
    #[error("no target for {kind} in {dir}: {why}")]
    NoTarget {
        /// The fault.
        kind: FaultKind,
        /// The data directory.
        dir: PathBuf,
        /// What was missing.
        why: String,
    },
    /// The fault happens in the store's I/O, not in its files, so the injector (which edits files) cannot cause it.
    #[error(
        "{0} is not a change to the files: set it on the store's I/O hooks, the `io::IoFaults` in \
         `StoreConfig::io` (`set_quota_bytes` for out_of_space, `set_latency_us` for slow_io), as \
         `chaos::Harness::inject` does"
    )]
    NoIoHooks(FaultKind),
    /// A file the injector wanted to read is larger than [`TARGET_FILE_BYTES_MAX`].
    #[error("{file}: {actual} bytes is over target_file_bytes_max = {limit}")]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// The limit.
        limit: u64,
        /// Its size.
        actual: u64,
    },
    /// An I/O error on a file of the data directory.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, to which file.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FaultError {
    let context = context.into();
    move |source| FaultError::Io { context, source }
}

/// Exactly what one injection did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFault {
    /// The fault.
    pub kind: FaultKind,
    /// The file changed, relative to the data directory with `/` separators (`None` for environment faults).
    pub file: Option<String>,
    /// The first byte changed.
    pub offset: Option<u64>,
    /// How many bytes changed (for a deleted file: its size; for a torn write: the bytes appended).
    pub len: Option<u64>,
    /// One line for a human, e.g. `flipped bit 3 of byte 8121`.
    pub detail: String,
}

impl InjectedFault {
    /// Where the fault is, as the engine's [`heal::Location`].
    pub fn location(&self) -> heal::Location {
        heal::Location {
            file: self.file.clone(),
            offset: self.offset,
            len: self.len,
            lsn_range: None,
        }
    }

    /// Whether `location` names the file this fault changed (environment faults match any location).
    pub fn names_file(&self, location: &heal::Location) -> bool {
        match (&self.file, &location.file) {
            (None, _) => true,
            (Some(ours), Some(theirs)) => same_file(ours, theirs),
            (Some(_), None) => false,
        }
    }

    /// Whether `location` covers at least one byte this fault changed (same file, overlapping ranges; a location
    /// without a range covers the whole file).
    pub fn overlaps(&self, location: &heal::Location) -> bool {
        if !self.names_file(location) {
            return false;
        }
        match (self.offset, self.len, location.offset, location.len) {
            (Some(a), Some(alen), Some(b), Some(blen)) => {
                a < b.saturating_add(blen.max(1)) && b < a.saturating_add(alen.max(1))
            }
            (Some(a), _, Some(b), None) => a >= b,
            _ => true,
        }
    }
}

fn same_file(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_start_matches("./").replace('\\', "/");
    let (a, b) = (norm(a), norm(b));
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// One file of a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Path relative to the data directory, `/` separators.
    pub rel: String,
    /// Its role.
    pub role: FileRole,
    /// Size in bytes.
    pub len: u64,
}

/// Lists the files of a data directory (recursively, sorted by path so picks are reproducible), skipping
/// temporary files (`*.tmp`).
pub fn list_files(dir: &Path) -> Result<Vec<DataFile>, FaultError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(io_err(format!("list {}", d.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("list {}", d.display())))?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(io_err(format!("stat {}", path.display())))?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(rel) = path.strip_prefix(dir) else {
                continue;
            };
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if rel.ends_with(".tmp") {
                continue;
            }
            out.push(DataFile {
                role: classify(&rel),
                rel,
                len: meta.len(),
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// A seeded, reproducible fault injector. The same seed, directory contents and sequence of calls give the same
/// faults.
#[derive(Debug)]
pub struct Injector {
    seed: u64,
    rng: StdRng,
}

impl Injector {
    /// An injector whose every choice derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The seed it was made with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The injector's random source, for callers that want further choices on the same seed.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Injects one fault of `kind` into the data directory `dir` and says exactly what was done.
    pub fn inject(&mut self, dir: &Path, kind: FaultKind) -> Result<InjectedFault, FaultError> {
        match kind {
            FaultKind::BitFlip => self.bit_flip(dir),
            FaultKind::ZeroRange => self.zero_range(dir),
            FaultKind::TornWrite => self.torn_write(dir),
            FaultKind::DeleteFile => self.delete_file(dir),
            FaultKind::MisdirectedWrite => self.misdirected_write(dir),
            FaultKind::StaleLock => self.stale_lock(dir),
            FaultKind::OutOfSpace | FaultKind::SlowIo | FaultKind::DescriptorExhaustion => {
                Err(FaultError::NoIoHooks(kind))
            }
            FaultKind::FileAndSidecar => self.file_and_sidecar(dir),
            FaultKind::LayoutDeleted => layout_deleted(dir),
        }
    }

    /// Zeroes 64..=4096 bytes of a random snapshot or sealed segment and deletes its sidecar.
    fn file_and_sidecar(&mut self, dir: &Path) -> Result<InjectedFault, FaultError> {
        let kind = FaultKind::FileAndSidecar;
        let files: Vec<DataFile> = list_files(dir)?
            .into_iter()
            .filter(|f| {
                f.len > 0
                    && matches!(f.role, FileRole::Wal | FileRole::Snapshot)
                    && dir.join(format!("{}.par", f.rel)).is_file()
            })
            .collect();
        if files.is_empty() {
            return Err(FaultError::NoTarget {
                kind,
                dir: dir.to_path_buf(),
                why: "no snapshot or sealed segment with a sidecar".into(),
            });
        }
        let target = self.pick(&files).clone();
        let len = self.rng.random_range(64..=4096u64).min(target.len);
        let offset = self.rng.random_range(0..=target.len - len);
        write_at(&dir.join(&target.rel), offset, &vec![0u8; len as usize])?;
        let par = dir.join(format!("{}.par", target.rel));
        fs::remove_file(&par).map_err(io_err(format!("delete {}", par.display())))?;
        Ok(InjectedFault {
            kind,
            file: Some(target.rel.clone()),
            offset: Some(offset),
            len: Some(len),
            detail: format!(
                "zeroed {len} bytes at {offset} and deleted {}.par",
                target.rel
            ),
        })
    }

    /// Flips one random bit of one random byte in `[start, end)` of the file `rel` (relative to `dir`): for aiming
    /// several faults at one parity group, beyond what its recovery blocks can rebuild.
    pub fn flip_bit_in(
        &mut self,
        dir: &Path,
        rel: &str,
        start: u64,
        end: u64,
    ) -> Result<InjectedFault, FaultError> {
        let path = dir.join(rel);
        let len = fs::metadata(&path)
            .map_err(io_err(format!("stat {}", path.display())))?
            .len();
        let end = end.min(len);
        if start >= end {
            return Err(FaultError::NoTarget {
                kind: FaultKind::BitFlip,
                dir: dir.to_path_buf(),
                why: format!("{rel} has no byte in [{start}, {end}) (it is {len} bytes)"),
            });
        }
        let offset = self.rng.random_range(start..end);
        let bit: u8 = self.rng.random_range(0..8);
        let mut byte = read_at(&path, offset, 1)?;
        byte[0] ^= 1 << bit;
        write_at(&path, offset, &byte)?;
        Ok(InjectedFault {
            kind: FaultKind::BitFlip,
            file: Some(rel.to_string()),
            offset: Some(offset),
            len: Some(1),
            detail: format!("flipped bit {bit} of byte {offset}"),
        })
    }

    /// Files a byte-damaging fault may hit: the log, snapshots, parity and the manifest, non-empty. A log file's
    /// `len` stops at its last non-zero byte: the zero-filled space past its records holds no data.
    fn byte_targets(&self, dir: &Path, kind: FaultKind) -> Result<Vec<DataFile>, FaultError> {
        let mut files = list_files(dir)?;
        for f in files.iter_mut().filter(|f| f.role == FileRole::Wal) {
            let path = dir.join(&f.rel);
            let bytes = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
            f.len = crate::wal::nonzero_end(&bytes) as u64;
        }
        let files: Vec<DataFile> = files
            .into_iter()
            .filter(|f| {
                f.len > 0
                    && matches!(
                        f.role,
                        FileRole::Wal | FileRole::Snapshot | FileRole::Parity | FileRole::Manifest
                    )
            })
            .collect();
        if files.is_empty() {
            return Err(FaultError::NoTarget {
                kind,
                dir: dir.to_path_buf(),
                why: "no non-empty log, snapshot, parity or manifest file".into(),
            });
        }
        Ok(files)
    }

    fn pick<'a>(&mut self, files: &'a [DataFile]) -> &'a DataFile {
        &files[self.rng.random_range(0..files.len())]
    }

    fn bit_flip(&mut self, dir: &Path) -> Result<InjectedFault, FaultError> {
        let files = self.byte_targets(dir, FaultKind::BitFlip)?;
        let target = self.pick(&files).clone();
        let offset = self.rng.random_range(0..target.len);
        let bit: u8 = self.rng.random_range(0..8);
        let path = dir.join(&target.rel);
        let mut byte = read_at(&path, offset, 1)?;
        byte[0] ^= 1 << bit;
        write_at(&path, offset, &byte)?;
        Ok(InjectedFault {
            kind: FaultKind::BitFlip,
            file: Some(target.rel),
            offset: Some(offset),
            len: Some(1),
            detail: format!("flipped bit {bit} of byte {offset}"),
        })
    }

    fn zero_range(&mut self, dir: &Path) -> Result<InjectedFault, FaultError> {
        let files = self.byte_targets(dir, FaultKind::ZeroRange)?;
        for _ in 0..PICK_ATTEMPTS_MAX {
            let target = self.pick(&files).clone();
            let offset = self.rng.random_range(0..target.len);
            let len_max = (target.len - offset).min(ZERO_RANGE_BYTES_MAX);
            let len = self.rng.random_range(1..=len_max);
            let path = dir.join(&target.rel);
            let old = read_at(&path, offset, len)?;
            // Narrow the range to the bytes that actually change, so the reported range is exact.
            let (Some(first), Some(last)) = (
                old.iter().position(|&b| b != 0),
                old.iter().rposition(|&b| b != 0),
            ) else {
                continue;
            };
            let start = offset + first as u64;
            let n = (last - first + 1) as u64;
            write_at(&path, start, &vec![0u8; n as usize])?;
            return Ok(InjectedFault {
                kind: FaultKind::ZeroRange,
                file: Some(target.rel),
                offset: Some(start),
                len: Some(n),
                detail: format!("zeroed {n} bytes at {start}"),
            });
        }
        Err(FaultError::NoTarget {
            kind: FaultKind::ZeroRange,
            dir: dir.to_path_buf(),
            why: format!("{PICK_ATTEMPTS_MAX} random ranges were all zero already"),
        })
    }

    fn misdirected_write(&mut self, dir: &Path) -> Result<InjectedFault, FaultError> {
        let files = self.byte_targets(dir, FaultKind::MisdirectedWrite)?;
        for _ in 0..PICK_ATTEMPTS_MAX {
            let target = self.pick(&files).clone();
            if target.len < 2 {
                continue;
            }
            let block = (target.len / 2).clamp(1, MISDIRECTED_BYTES_MAX);
            let from = self.rng.random_range(0..=target.len - block);
            let to = self.rng.random_range(0..=target.len - block);
            if from == to {
                continue;
            }
            let path = dir.join(&target.rel);
            let src = read_at(&path, from, block)?;
            let old = read_at(&path, to, block)?;
            let (Some(first), Some(last)) = (
                (0..src.len()).position(|i| src[i] != old[i]),
                (0..src.len()).rposition(|i| src[i] != old[i]),
            ) else {
                continue;
            };
            let start = to + first as u64;
            let n = (last - first + 1) as u64;
            write_at(&path, start, &src[first..=last])?;
            return Ok(InjectedFault {
                kind: FaultKind::MisdirectedWrite,
                file: Some(target.rel),
                offset: Some(start),
                len: Some(n),
                detail: format!(
                    "copied the {block}-byte block at {from} over {to} ({n} bytes changed from {start})"
                ),
            });
        }
        Err(FaultError::NoTarget {
            kind: FaultKind::MisdirectedWrite,
            dir: dir.to_path_buf(),
            why: format!("{PICK_ATTEMPTS_MAX} random block pairs were identical"),
        })
    }

    fn delete_file(&mut self, dir: &Path) -> Result<InjectedFault, FaultError> {
        let files = self.byte_targets(dir, FaultKind::DeleteFile)?;
        let target = self.pick(&files).clone();
        let path = dir.join(&target.rel);
        fs::remove_file(&path).map_err(io_err(format!("delete {}", path.display())))?;
        Ok(InjectedFault {
            kind: FaultKind::DeleteFile,
            file: Some(target.rel),
            offset: Some(0),
            len: Some(target.len),
            detail: format!("deleted the file ({} bytes)", target.len),
        })
    }

    fn torn_write(&mut self, dir: &Path) -> Result<InjectedFault, FaultError> {
        let wal: Vec<DataFile> = list_files(dir)?
            .into_iter()
            .filter(|f| f.role == FileRole::Wal && f.rel.ends_with(".seg"))
            .collect();
        // Segment names are zero-padded ids, so the last in path order is the open segment.
        let Some(tail) = wal.last().cloned() else {
            return Err(FaultError::NoTarget {
                kind: FaultKind::TornWrite,
                dir: dir.to_path_buf(),
                why: "no log segment".into(),
            });
        };
        // A record that was being appended when the power went: a header announcing more payload than made it
        // to disk. Never acknowledged, so recovery may drop it.
        let payload_len: u32 = self.rng.random_range(64..4096);
        let written: u32 = self.rng.random_range(1..payload_len);
        let mut bytes = Vec::with_capacity(8 + written as usize);
        bytes.extend_from_slice(&payload_len.to_le_bytes());
        bytes.extend_from_slice(&self.rng.random::<u32>().to_le_bytes());
        bytes.extend((0..written).map(|_| self.rng.random::<u8>()));
        let path = dir.join(&tail.rel);
        // Where the next commit would have gone: past the last record, over zero-filled space if the segment has
        // some (FORMAT.md, "Zero-filled space past the records"), else at the end of the file.
        let at = match read_at(&path, 0, tail.len) {
            Err(_) => tail.len,
            Ok(b) => {
                let mut pos = crate::wal::HEADER_BYTES as usize;
                while let crate::codec::Decoded::Ok(_, n) =
                    crate::codec::decode_record(b.get(pos..).unwrap_or(&[]), u64::from(u32::MAX))
                {
                    pos += n;
                }
                if pos < b.len() && crate::wal::nonzero_end(&b) <= pos {
                    pos as u64
                } else {
                    tail.len
                }
            }
        };
        write_at(&path, at, &bytes)?;
        Ok(InjectedFault {
            kind: FaultKind::TornWrite,
            file: Some(tail.rel),
            offset: Some(at),
            len: Some(bytes.len() as u64),
            detail: format!(
                "appended a record torn after {} of {} bytes",
                bytes.len(),
                payload_len as usize + 8
            ),
        })
    }

    /// A torn write by truncation: cuts the newest segment (the open one) and its mirror, if any, at one random
    /// byte strictly inside their last complete record, as a crash part-way through writing that record leaves them.
    /// Only for a store that is closed (crashed) and whose last record was never acknowledged: recovery drops it as
    /// a torn tail (the identity journal is cut before the frame listing it, which a crash before it was durable
    /// never wrote). The chaos harness uses it after a crash mid-commit, with that write counted as unacknowledged.
    pub fn cut_last_record(&mut self, dir: &Path) -> Result<InjectedFault, FaultError> {
        let no_target = |why: &str| FaultError::NoTarget {
            kind: FaultKind::TornWrite,
            dir: dir.to_path_buf(),
            why: why.into(),
        };
        let tail = list_files(dir)?
            .into_iter()
            .rfind(|f| f.role == FileRole::Wal && f.rel.ends_with(".seg"))
            .ok_or_else(|| no_target("no log segment"))?;
        let path = dir.join(&tail.rel);
        let bytes = read_at(&path, 0, tail.len)?;
        // Walk the records of the main copy; the last one that verifies is cut.
        let mut pos = crate::wal::HEADER_BYTES as usize;
        let mut last = None;
        while let crate::codec::Decoded::Ok(r, n) =
            crate::codec::decode_record(bytes.get(pos..).unwrap_or(&[]), u64::from(u32::MAX))
        {
            last = Some((pos, n, r.lsn));
            pos += n;
        }
        let (at, n, lsn) = last.ok_or_else(|| no_target("the open segment holds no record"))?;
        let cut = at + self.rng.random_range(1..n);
        let mut files = vec![tail.rel.clone()];
        let mir = tail.rel.replace(".seg", ".mir");
        if dir.join(&mir).exists() {
            files.push(mir);
        }
        for rel in &files {
            let p = dir.join(rel);
            fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(cut as u64))
                .map_err(io_err(format!("truncate {} to {cut}", p.display())))?;
        }
        // A record never acknowledged was never durable, so no identity frame lists it.
        unjournal_from(dir, &tail.rel, lsn)?;
        Ok(InjectedFault {
            kind: FaultKind::TornWrite,
            file: Some(tail.rel),
            offset: Some(cut as u64),
            len: Some((at + n - cut) as u64),
            detail: format!(
                "cut {} after {} of {n} bytes of its last record (LSN {lsn}, at offset {at})",
                files.join(" and "),
                cut - at
            ),
        })
    }

    /// A hole in one commit batch of the open segment, in both copies: one 4 KiB page of the batch (chosen by the
    /// seed among all its pages but the last) left as zeros, where the batch's records are, as a device that
    /// completed a later page of the batch but not that one leaves zero-filled space after a power loss. The batch
    /// is the one `batches_after` batches before the last: with 0, the last batch, which a store that lost power
    /// while flushing it never acknowledged (recovery cuts it as a torn tail); with more, acknowledged records
    /// damaged in both copies (recovery reports them lost). With 0, the open segment's identity journal is also cut
    /// before the batch's frame (a frame is written only once its batch is durable). Needs a segment with batch
    /// marks and a batch spanning two pages or more.
    pub fn hole_in_batch(
        &mut self,
        dir: &Path,
        batches_after: usize,
    ) -> Result<InjectedFault, FaultError> {
        const PAGE: usize = 4096;
        let no_target = |why: String| FaultError::NoTarget {
            kind: FaultKind::ZeroRange,
            dir: dir.to_path_buf(),
            why,
        };
        let tail = list_files(dir)?
            .into_iter()
            .rfind(|f| f.role == FileRole::Wal && f.rel.ends_with(".seg"))
            .ok_or_else(|| no_target("no log segment".into()))?;
        let bytes = read_at(&dir.join(&tail.rel), 0, tail.len)?;
        // Each batch's byte range, in order: consecutive records naming the same batch.
        let mut batches: Vec<(usize, usize, u64)> = Vec::new();
        let mut pos = crate::wal::HEADER_BYTES as usize;
        while let crate::codec::Decoded::Ok(r, n) =
            crate::codec::decode_record(bytes.get(pos..).unwrap_or(&[]), u64::from(u32::MAX))
        {
            let mark = r
                .batch
                .ok_or_else(|| no_target(format!("{} has no batch marks", tail.rel)))?;
            match batches.last_mut() {
                Some(b) if b.2 == mark.follows => b.1 = pos + n,
                _ => batches.push((pos, pos + n, mark.follows)),
            }
            pos += n;
        }
        let (start, end, follows) = batches
            .len()
            .checked_sub(1 + batches_after)
            .map(|i| batches[i])
            .ok_or_else(|| no_target(format!("fewer than {} batches", batches_after + 1)))?;
        let (first_page, last_page) = (start / PAGE, (end - 1) / PAGE);
        if first_page == last_page {
            return Err(no_target(format!(
                "the batch at offset {start} fits in one page"
            )));
        }
        let page = self.rng.random_range(first_page..last_page);
        let (from, to) = (start.max(page * PAGE), end.min((page + 1) * PAGE));
        let mut files = vec![tail.rel.clone()];
        let mir = tail.rel.replace(".seg", ".mir");
        if dir.join(&mir).exists() {
            files.push(mir);
        }
        for rel in &files {
            write_at(&dir.join(rel), from as u64, &vec![0u8; to - from])?;
        }
        if batches_after == 0 {
            // A batch in flight at a power loss was never durable, so its identity frame was never written.
            unjournal_from(dir, &tail.rel, follows + 1)?;
        }
        Ok(InjectedFault {
            kind: FaultKind::ZeroRange,
            file: Some(tail.rel),
            offset: Some(from as u64),
            len: Some((to - from) as u64),
            detail: format!(
                "zeroed page {page} ({} bytes at offset {from}) of {} in the batch following LSN {follows} \
                 (offsets {start}..{end}, {batches_after} batch(es) after it)",
                to - from,
                files.join(" and ")
            ),
        })
    }

    fn stale_lock(&mut self, dir: &Path) -> Result<InjectedFault, FaultError> {
        let pid = dead_pid()?;
        let rel = "LOCK".to_string();
        let path = dir.join(&rel);
        // The holder line as `lock.rs` writes it: same host (so the store can prove the pid dead), never closed.
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let started_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
            .saturating_sub(60_000_000);
        let body = format!(
            "pid={pid} host={host} started_us={started_us} heartbeat_us={started_us} closed=false\n"
        );
        fs::write(&path, body.as_bytes()).map_err(io_err(format!("write {}", path.display())))?;
        Ok(InjectedFault {
            kind: FaultKind::StaleLock,
            file: Some(rel),
            offset: Some(0),
            len: Some(body.len() as u64),
            detail: format!("left a lock file naming dead pid {pid}"),
        })
    }
}

/// A pid that certainly belonged to a process that has exited: start `true`, wait for it.
pub fn dead_pid() -> Result<u32, FaultError> {
    let mut child = std::process::Command::new("true")
        .spawn()
        .map_err(io_err("spawn a short-lived process for a dead pid"))?;
    let pid = child.id();
    child
        .wait()
        .map_err(io_err("wait for the short-lived process"))?;
    Ok(pid)
}

/// Deletes `wal/`, `snap/` and both manifest copies.
fn layout_deleted(dir: &Path) -> Result<InjectedFault, FaultError> {
    for sub in ["wal", "snap"] {
        let p = dir.join(sub);
        fs::remove_dir_all(&p).map_err(io_err(format!("delete {}", p.display())))?;
    }
    for m in ["MANIFEST-A", "MANIFEST-B"] {
        let p = dir.join(m);
        fs::remove_file(&p).map_err(io_err(format!("delete {}", p.display())))?;
    }
    Ok(InjectedFault {
        kind: FaultKind::LayoutDeleted,
        file: Some("MANIFEST-A".into()),
        offset: None,
        len: None,
        detail: "deleted wal/, snap/, MANIFEST-A and MANIFEST-B".into(),
    })
}

fn read_at(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FaultError> {
    if len > TARGET_FILE_BYTES_MAX {
        return Err(FaultError::TooLarge {
            file: path.to_path_buf(),
            limit: TARGET_FILE_BYTES_MAX,
            actual: len,
        });
    }
    let mut f = fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(io_err(format!("seek {} to {offset}", path.display())))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).map_err(io_err(format!(
        "read {len} bytes of {} at {offset}",
        path.display()
    )))?;
    Ok(buf)
}

/// Cuts the identity journal of segment `seg_rel` (if any) before its first frame listing LSN `lsn` or later: a
/// frame is appended only once its batch is durable, so a crash that tore the batch left none.
fn unjournal_from(dir: &Path, seg_rel: &str, lsn: u64) -> Result<(), FaultError> {
    let journal = dir.join(crate::identity::name_for(seg_rel));
    let Ok(b) = fs::read(&journal) else {
        return Ok(());
    };
    let keep = crate::identity::prefix_below(&b, lsn);
    fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .and_then(|f| f.set_len(keep as u64))
        .map_err(io_err(format!("truncate {}", journal.display())))
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> Result<(), FaultError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(format!("open {} for writing", path.display())))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(io_err(format!("seek {} to {offset}", path.display())))?;
    f.write_all(bytes).map_err(io_err(format!(
        "write {} bytes to {} at {offset}",
        bytes.len(),
        path.display()
    )))?;
    f.sync_all()
        .map_err(io_err(format!("fsync {}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("wal")).unwrap();
        fs::create_dir_all(dir.path().join("backup/x")).unwrap();
        fs::write(
            dir.path().join("backup/x/wal__0000000000000009.seg"),
            b"backup",
        )
        .unwrap();
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 + 1).collect();
        fs::write(dir.path().join("wal/0000000000000001.seg"), &bytes).unwrap();
        fs::write(dir.path().join("wal/0000000000000002.seg"), &bytes[..5000]).unwrap();
        fs::write(dir.path().join("MANIFEST-A"), &bytes[..300]).unwrap();
        dir
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        list_files(dir)
            .unwrap()
            .into_iter()
            .map(|f| {
                let b = fs::read(dir.join(&f.rel)).unwrap();
                (f.rel, b)
            })
            .collect()
    }

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for kind in FaultKind::ALL
            .into_iter()
            .chain(FaultKind::BEYOND_REDUNDANCY)
        {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(kind.name().parse::<FaultKind>().unwrap(), kind);
        }
        assert_eq!(
            parse_fault_list("bit_flip, torn-write,bit_flip").unwrap(),
            vec![FaultKind::BitFlip, FaultKind::TornWrite]
        );
        assert!(parse_fault_list("").unwrap().is_empty());
        let err = parse_fault_list("bit_flip,cosmic_ray").unwrap_err();
        assert!(err.to_string().contains("cosmic_ray"), "{err}");
    }

    #[test]
    fn bit_flip_changes_exactly_one_bit_where_it_says() {
        let dir = fixture();
        let before = snapshot(dir.path());
        let f = Injector::new(7)
            .inject(dir.path(), FaultKind::BitFlip)
            .unwrap();
        let after = snapshot(dir.path());
        let mut diffs = 0;
        for ((name, a), (_, b)) in before.iter().zip(&after) {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if x != y {
                    diffs += 1;
                    assert_eq!(Some(name.as_str()), f.file.as_deref());
                    assert_eq!(Some(i as u64), f.offset);
                    assert_eq!((x ^ y).count_ones(), 1);
                }
            }
        }
        assert_eq!(diffs, 1);
    }

    #[test]
    fn same_seed_same_fault() {
        let (a, b) = (fixture(), fixture());
        for kind in [
            FaultKind::BitFlip,
            FaultKind::ZeroRange,
            FaultKind::MisdirectedWrite,
            FaultKind::TornWrite,
        ] {
            let fa = Injector::new(42).inject(a.path(), kind).unwrap();
            let fb = Injector::new(42).inject(b.path(), kind).unwrap();
            assert_eq!(fa, fb);
        }
        assert_eq!(snapshot(a.path()), snapshot(b.path()));
    }

    #[test]
    fn zero_and_misdirected_report_exactly_the_changed_range() {
        for seed in 0..20 {
            for kind in [FaultKind::ZeroRange, FaultKind::MisdirectedWrite] {
                let dir = fixture();
                let before = snapshot(dir.path());
                let f = Injector::new(seed).inject(dir.path(), kind).unwrap();
                let after = snapshot(dir.path());
                let (off, len) = (f.offset.unwrap() as usize, f.len.unwrap() as usize);
                for ((name, a), (_, b)) in before.iter().zip(&after) {
                    let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
                    if Some(name.as_str()) != f.file.as_deref() {
                        assert!(changed.is_empty());
                        continue;
                    }
                    assert_eq!(changed.first(), Some(&off), "{kind} seed {seed}");
                    assert_eq!(changed.last(), Some(&(off + len - 1)), "{kind} seed {seed}");
                }
            }
        }
    }

    #[test]
    fn torn_write_appends_to_the_newest_segment_and_delete_removes() {
        let dir = fixture();
        let f = Injector::new(1)
            .inject(dir.path(), FaultKind::TornWrite)
            .unwrap();
        assert_eq!(f.file.as_deref(), Some("wal/0000000000000002.seg"));
        assert_eq!(f.offset, Some(5000));
        let len = fs::metadata(dir.path().join("wal/0000000000000002.seg"))
            .unwrap()
            .len();
        assert_eq!(len, 5000 + f.len.unwrap());

        let d = Injector::new(3)
            .inject(dir.path(), FaultKind::DeleteFile)
            .unwrap();
        assert!(!dir.path().join(d.file.unwrap()).exists());
    }

    /// A store of three puts dropped without a clean close, as a crash leaves it: its directory, the open
    /// segment's id and its records' length.
    fn three_puts_then_crash() -> (tempfile::TempDir, u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::Store::open(dir.path(), crate::StoreConfig::default()).unwrap();
        for i in 0..3 {
            s.put(&format!("d{i}"), crate::Document::text(format!("doc {i}")))
                .unwrap();
        }
        let (id, len) = s.open_segment();
        drop(s);
        (dir, id, len)
    }

    #[test]
    fn a_torn_write_lands_at_the_log_end_in_zero_filled_space_and_recovery_cuts_only_it() {
        // As a crash leaves it: zero-filled space past the records (where the filesystem allows).
        let (dir, id, len) = three_puts_then_crash();
        let rel = format!("wal/{id:016}.seg");
        let size = fs::metadata(dir.path().join(&rel)).unwrap().len();
        let f = Injector::new(7)
            .inject(dir.path(), FaultKind::TornWrite)
            .unwrap();
        assert_eq!(f.file.as_deref(), Some(rel.as_str()));
        assert_eq!(f.offset, Some(if size > len { len } else { size }));
        let s = crate::Store::open(dir.path(), crate::StoreConfig::default()).unwrap();
        let t = s.recovery_report().torn_tail.expect("torn tail");
        assert_eq!((t.offset, t.bytes), (len, f.len.unwrap()), "{t:?}");
        assert_eq!(s.count(), 3);
    }

    #[test]
    fn cut_last_record_tears_the_last_record_in_both_copies_and_recovery_drops_only_it() {
        let (dir, id, len) = three_puts_then_crash();
        let f = Injector::new(5).cut_last_record(dir.path()).unwrap();
        let seg = format!("wal/{id:016}.seg");
        assert_eq!(f.file.as_deref(), Some(seg.as_str()));
        let cut = f.offset.unwrap();
        assert_eq!(cut + f.len.unwrap(), len, "{f:?}");
        assert!(f.detail.contains("(LSN 3,"), "{f:?}");
        for e in ["seg", "mir"] {
            let p = dir.path().join(format!("wal/{id:016}.{e}"));
            assert_eq!(fs::metadata(p).unwrap().len(), cut, "{e}");
        }
        let s = crate::Store::open(dir.path(), crate::StoreConfig::default()).unwrap();
        let t = s.recovery_report().torn_tail.expect("a torn tail");
        assert!(
            f.detail.contains(&format!("at offset {})", t.offset)),
            "{f:?} {t:?}"
        );
        assert_eq!((t.offset + t.bytes, t.lsn_range), (cut, (3, 3)), "{t:?}");
        assert_eq!(s.count(), 2);
        assert_eq!(s.get("d2").unwrap(), None);
    }

    #[test]
    fn io_faults_are_refused_naming_the_hooks_that_cause_them() {
        let dir = fixture();
        for kind in [FaultKind::OutOfSpace, FaultKind::SlowIo] {
            let e = Injector::new(1).inject(dir.path(), kind).unwrap_err();
            let m = e.to_string();
            assert!(
                matches!(e, FaultError::NoIoHooks(k) if k == kind)
                    && m.contains("IoFaults")
                    && m.contains("set_quota_bytes")
                    && m.contains("set_latency_us")
                    && !m.contains("with_io"),
                "{m}"
            );
        }
    }

    #[test]
    fn empty_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Injector::new(1)
            .inject(dir.path(), FaultKind::BitFlip)
            .unwrap_err();
        assert!(matches!(err, FaultError::NoTarget { .. }), "{err}");
        assert!(err.to_string().contains("bit_flip"));
    }

    #[test]
    fn only_live_store_files_are_targets() {
        assert_eq!(classify("wal/0000000000000001.seg"), FileRole::Wal);
        assert_eq!(classify("wal/0000000000000001.mir"), FileRole::Wal);
        assert_eq!(classify("wal/0000000000000001.seg.par"), FileRole::Parity);
        assert_eq!(classify("snap/0000000000000100.snap"), FileRole::Snapshot);
        assert_eq!(classify("snap/0000000000000100.snap.par"), FileRole::Parity);
        assert_eq!(classify("MANIFEST-B"), FileRole::Manifest);
        assert_eq!(classify("LOCK"), FileRole::Lock);
        assert_eq!(
            classify("backup/x/wal__0000000000000001.seg"),
            FileRole::Other
        );
        assert_eq!(classify("MANIFEST-A.tmp"), FileRole::Other);
        let dir = fixture();
        for seed in 0..30 {
            let f = Injector::new(seed)
                .inject(dir.path(), FaultKind::BitFlip)
                .unwrap();
            assert!(!f.file.unwrap().starts_with("backup/"));
        }
    }

    #[test]
    fn flip_bit_in_stays_in_range() {
        let dir = fixture();
        let mut inj = Injector::new(5);
        for _ in 0..20 {
            let f = inj
                .flip_bit_in(dir.path(), "wal/0000000000000001.seg", 4096, 8192)
                .unwrap();
            assert!((4096..8192).contains(&f.offset.unwrap()));
        }
        assert!(
            inj.flip_bit_in(dir.path(), "wal/0000000000000002.seg", 6000, 7000)
                .is_err()
        );
    }

    #[test]
    fn location_matching() {
        let f = InjectedFault {
            kind: FaultKind::BitFlip,
            file: Some("wal/0000000000000001.seg".into()),
            offset: Some(100),
            len: Some(1),
            detail: String::new(),
        };
        let at = |file: &str, offset, len| heal::Location {
            file: Some(file.into()),
            offset,
            len,
            lsn_range: None,
        };
        assert!(f.overlaps(&at("wal/0000000000000001.seg", Some(0), Some(4096))));
        assert!(f.overlaps(&at("wal/0000000000000001.seg", None, None)));
        assert!(!f.overlaps(&at("wal/0000000000000001.seg", Some(101), Some(10))));
        assert!(!f.overlaps(&at("wal/0000000000000002.seg", Some(0), Some(4096))));
        assert!(!f.names_file(&heal::Location::default()));
    }
}
