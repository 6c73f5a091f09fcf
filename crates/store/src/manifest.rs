//! The manifest: which snapshot and which WAL segments make up the store, kept as two checksummed copies
//! (`MANIFEST-A`, `MANIFEST-B`) so either can be restored from its twin.
//!
//! ```text
//! magic "MEDMAN\0\x01" | version u32 | generation u64 | vector_dim u32 (u32::MAX: unset) | snapshot_lsn u64
//! (0: none) | n_segments u32 | n × (segment_id u64 | first_lsn u64 | sealed u8 | sealed_len u64) | crc u32
//! ```
//!
//! A new generation is written to A (temp file, fsync, rename, fsync dir), then to B the same way. A crash leaves at
//! least one copy at the old or new generation; open takes the highest valid generation.
//!
//! Versions: 1 (one collection), 2 (named collections: namespaced keys and settings documents, see
//! `collection`; the frame is the same), 3 (segments may carry batch-marked records, see `wal`; the frame is the
//! same). All are read; every write is version 3. A version above 3 is refused ([`Loaded::newer`]): open fails
//! instead of taking the copy for damage, so an older medic never reads batch-marked records as damage.

use std::path::Path;

use crate::codec::{Reader, crc_of};
use crate::io::{self, IoFaults};

const MAGIC: &[u8; 8] = b"MEDMAN\0\x01";
/// The version every write has.
pub const VERSION: u32 = 3;
/// The oldest version read.
pub const VERSION_MIN: u32 = 1;
/// The two copies' file names.
pub const COPIES: [&str; 2] = ["MANIFEST-A", "MANIFEST-B"];
/// How a copy of a newer version is described (what [`Loaded::newer`] looks for).
const NEWER: &str = "written by a newer medic: manifest version";
/// Largest manifest accepted, bytes.
pub const MANIFEST_BYTES_MAX: usize = 1 << 20;

/// One WAL segment as the manifest lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentEntry {
    /// Segment id (its file name).
    pub id: u64,
    /// LSN of its first record (or the first one it may hold).
    pub first_lsn: u64,
    /// Sealed segments are immutable and parity-protected.
    pub sealed: bool,
    /// Length when sealed.
    pub sealed_len: u64,
}

/// The store's layout at one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The format version it was read with ([`VERSION`] for one made by this code; always written as [`VERSION`]).
    pub version: u32,
    /// Increases by one per write.
    pub generation: u64,
    /// The store's vector dimension once fixed.
    pub vector_dim: Option<u32>,
    /// The snapshot's LSN, if there is one.
    pub snapshot_lsn: Option<u64>,
    /// Segments in order; only the last may be open.
    pub segments: Vec<SegmentEntry>,
}

impl Manifest {
    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.vector_dim.unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&self.snapshot_lsn.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            out.extend_from_slice(&s.id.to_le_bytes());
            out.extend_from_slice(&s.first_lsn.to_le_bytes());
            out.push(s.sealed as u8);
            out.extend_from_slice(&s.sealed_len.to_le_bytes());
        }
        let crc = crc_of(&[&out]);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies one copy.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() < 4 || bytes.len() > MANIFEST_BYTES_MAX {
            return Err(format!(
                "manifest is {} bytes, outside [4, manifest_bytes_max = {MANIFEST_BYTES_MAX}]",
                bytes.len()
            ));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc_of(&[body]) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err("manifest checksum mismatch".into());
        }
        let mut r = Reader::new(body);
        if r.bytes(8)? != MAGIC {
            return Err("bad manifest magic".into());
        }
        let version = r.u32()?;
        if version > VERSION {
            return Err(format!(
                "{NEWER} {version} (this medic reads up to {VERSION})"
            ));
        }
        if version < VERSION_MIN {
            return Err(format!("unknown manifest version {version}"));
        }
        let generation = r.u64()?;
        let dim = r.u32()?;
        let snap = r.u64()?;
        let n = r.u32()? as usize;
        if n > r.remaining() / 25 {
            return Err("manifest segment count disagrees with its length".into());
        }
        let mut segments = Vec::with_capacity(n);
        for _ in 0..n {
            segments.push(SegmentEntry {
                id: r.u64()?,
                first_lsn: r.u64()?,
                sealed: r.u8()? != 0,
                sealed_len: r.u64()?,
            });
        }
        if r.remaining() != 0 {
            return Err("trailing bytes in manifest".into());
        }
        if segments.is_empty() || segments[..segments.len() - 1].iter().any(|s| !s.sealed) {
            return Err("manifest must list segments, only the last one open".into());
        }
        Ok(Manifest {
            version,
            generation,
            vector_dim: (dim != u32::MAX).then_some(dim),
            snapshot_lsn: (snap != 0).then_some(snap),
            segments,
        })
    }
}

/// What reading both copies found.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The newest valid manifest, if any copy is valid.
    pub manifest: Option<Manifest>,
    /// Per copy: `Ok(generation)` or why it is unusable (`None`: absent).
    pub copies: [Option<Result<u64, String>>; 2],
    /// A copy could not be read for lack of a resource (e.g. `cannot read MANIFEST-A: too many open files`): the
    /// result says nothing about that copy, and nothing may be concluded (or rewritten) from it.
    pub unavailable: Option<String>,
}

impl Loaded {
    /// Why a copy was written by a newer medic, if one was: such a directory is not opened.
    pub fn newer(&self) -> Option<String> {
        self.copies.iter().enumerate().find_map(|(i, c)| match c {
            Some(Err(e)) if e.starts_with(NEWER) => Some(format!("{}: {e}", COPIES[i])),
            _ => None,
        })
    }

    /// Copies that are absent, damaged, or behind the newest one.
    pub fn stale_copies(&self) -> Vec<usize> {
        let best = self.manifest.as_ref().map(|m| m.generation);
        (0..2)
            .filter(|&i| match &self.copies[i] {
                Some(Ok(g)) => Some(*g) != best,
                _ => true,
            })
            .collect()
    }
}

/// Reads both copies (never through a symbolic link). A copy that cannot be read for lack of a resource (no
/// descriptor, no memory) is neither missing nor damaged: it is named in `unavailable` and counts as absent here.
pub fn load(faults: &IoFaults, dir: &Path) -> Loaded {
    let mut copies: [Option<Result<u64, String>>; 2] = [None, None];
    let mut best: Option<Manifest> = None;
    let mut unavailable = None;
    for (i, name) in COPIES.iter().enumerate() {
        match io::read_file(faults, &dir.join(name)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if io::is_resource(&e) => {
                unavailable = Some(format!("cannot read {name}: {}", io::reason(&e)));
            }
            Err(e) => copies[i] = Some(Err(format!("unreadable: {}", io::reason(&e)))),
            Ok(bytes) => match Manifest::decode(&bytes) {
                Err(e) => copies[i] = Some(Err(e)),
                Ok(m) => {
                    copies[i] = Some(Ok(m.generation));
                    if best.as_ref().is_none_or(|b| m.generation > b.generation) {
                        best = Some(m);
                    }
                }
            },
        }
    }
    Loaded {
        manifest: best,
        copies,
        unavailable,
    }
}

/// Writes one copy atomically.
pub fn write_copy(faults: &IoFaults, dir: &Path, idx: usize, m: &Manifest) -> std::io::Result<()> {
    io::write_file_atomic(faults, &dir.join(COPIES[idx]), &m.encode())
}

/// [`write_copy`], telling a failure that left the copy unchanged from one after its rename.
pub fn write_copy_staged(
    faults: &IoFaults,
    dir: &Path,
    idx: usize,
    m: &Manifest,
) -> Result<(), io::AtomicWriteFailure> {
    io::write_file_atomic_staged(faults, &dir.join(COPIES[idx]), &m.encode())
}

/// Writes both copies, A then B.
pub fn write_both(faults: &IoFaults, dir: &Path, m: &Manifest) -> std::io::Result<()> {
    write_copy(faults, dir, 0, m)?;
    write_copy(faults, dir, 1, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(g: u64) -> Manifest {
        Manifest {
            version: VERSION,
            generation: g,
            vector_dim: Some(3),
            snapshot_lsn: Some(10),
            segments: vec![
                SegmentEntry {
                    id: 1,
                    first_lsn: 11,
                    sealed: true,
                    sealed_len: 99,
                },
                SegmentEntry {
                    id: 2,
                    first_lsn: 20,
                    sealed: false,
                    sealed_len: 0,
                },
            ],
        }
    }

    #[test]
    fn newest_valid_copy_wins_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let f = IoFaults::new();
        write_both(&f, dir.path(), &m(1)).unwrap();
        write_copy(&f, dir.path(), 0, &m(2)).unwrap();
        let l = load(&IoFaults::new(), dir.path());
        assert_eq!(l.manifest.as_ref().unwrap().generation, 2);
        assert_eq!(l.stale_copies(), vec![1]);
        let mut b = std::fs::read(dir.path().join(COPIES[0])).unwrap();
        b[12] ^= 4;
        std::fs::write(dir.path().join(COPIES[0]), b).unwrap();
        let l = load(&IoFaults::new(), dir.path());
        assert_eq!(l.manifest.unwrap().generation, 1);
        assert!(matches!(&l.copies[0], Some(Err(e)) if e.contains("checksum")));
    }

    #[test]
    fn version_one_is_read_and_a_newer_version_is_named() {
        let mut one = m(1);
        one.version = 1;
        let mut b = one.encode();
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc_of(&[&b[..n]]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Manifest::decode(&b).unwrap(), one);
        b[8..12].copy_from_slice(&4u32.to_le_bytes());
        let crc = crc_of(&[&b[..n]]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(COPIES[0]), &b).unwrap();
        let l = load(&IoFaults::new(), dir.path());
        assert!(
            l.newer().unwrap().contains("manifest version 4"),
            "{:?}",
            l.newer()
        );
    }
}
