//! The HNSW index file `idx/<collection>/hnsw/hnsw.bin`: one file, written whole to a temp name, fsynced and renamed
//! over the old one (`store::io::write_file_atomic`, so the store's fault injection reaches it).
//!
//! Layout (little-endian, fixed-width; no host-endian or `usize` on disk):
//!
//! ```text
//! header   magic "MEDHNSW\0" (8) | version u32 (= 1) | crc32c u32 of the 12 bytes before it
//! section  kind u32 | len u64 | crc32c u32 (over kind, len and payload) | payload (len bytes)
//!          in this order, each exactly once:
//!   1 meta       applied_lsn u64 | rebuilt_lsn u64 | metric u8 (1 cosine, 2 dot, 3 l2) | m u32 | m0 u32
//!                | ef_construction u32 | seed u64 | dim u32 | slots u32 | entry u32 (0xFFFFFFFF: none) | top u8
//!   2 ids        per slot: lsn u64 | id_len u32 | id bytes (UTF-8)
//!   3 vectors    slots × dim × f32 (prepared: unit length for cosine)
//!   4 levels     slots × u8
//!   5 tombstones slots × u8 (0 live, 1 tombstone)
//!   6 layer0     slots × (m0 + 1) × u32: count, then m0 places
//!   7 upper      for each slot of level l > 0, in slot order: l × (m + 1) × u32
//!   8 unindexed  count u32 | per document: lsn u64 | id_len u32 | id bytes
//!   9 end        total bytes before this section u64 | sections before it u32
//! ```
//!
//! Invariants: a file is used only if every checksum verifies, every length agrees with the meta section, the end
//! section names the exact length (a cut or extended file is refused), the structural parameters are the configured
//! ones and the decoded graph passes [`Graph::validate`]. Anything else is damage: the index opens empty with
//! applied LSN 0 and is rebuilt from the log or the table — never trusted.

use std::collections::HashMap;
use std::sync::Arc;

use crate::distance::Metric;
use crate::graph::Graph;
use crate::params::{DIM_MAX, HnswParams, ID_BYTES_MAX, LEVEL_MAX, NODES_MAX};

/// The file's name inside the index directory.
pub const FILE_NAME: &str = "hnsw.bin";
const MAGIC: &[u8; 8] = b"MEDHNSW\0";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 16;
const SECTION_HEADER_BYTES: usize = 16;
const NO_ENTRY: u32 = u32::MAX;

const META: u32 = 1;
const IDS: u32 = 2;
const VECTORS: u32 = 3;
const LEVELS: u32 = 4;
const TOMBSTONES: u32 = 5;
const LAYER0: u32 = 6;
const UPPER: u32 = 7;
const UNINDEXED: u32 = 8;
const END: u32 = 9;

fn section_name(kind: u32) -> &'static str {
    match kind {
        META => "meta",
        IDS => "ids",
        VECTORS => "vectors",
        LEVELS => "levels",
        TOMBSTONES => "tombstones",
        LAYER0 => "layer0",
        UPPER => "upper",
        UNINDEXED => "unindexed",
        END => "end",
        _ => "unknown",
    }
}

/// One file format built of checksummed sections (`hnsw.bin`, `flat.bin`): its magic, version, the kind of its
/// last (end) section — kinds run `1..=end`, each exactly once, in order — and the sections' names for errors.
pub(crate) struct Format {
    /// What the file is, in errors (`hnsw`, `flat`).
    pub(crate) what: &'static str,
    pub(crate) magic: &'static [u8; 8],
    pub(crate) version: u32,
    pub(crate) end: u32,
    pub(crate) name: fn(u32) -> &'static str,
}

/// `hnsw.bin`.
const HNSW: Format = Format {
    what: "hnsw",
    magic: MAGIC,
    version: VERSION,
    end: END,
    name: section_name,
};

/// Writes a format's header.
pub(crate) fn header(out: &mut Vec<u8>, f: &Format) {
    out.extend_from_slice(f.magic);
    out.extend_from_slice(&f.version.to_le_bytes());
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Writes the end section (total bytes before it, sections before it): the file's exact length.
pub(crate) fn end_section(out: &mut Vec<u8>, f: &Format) {
    let before = out.len() as u64;
    section(out, f.end, |b| {
        b.extend_from_slice(&before.to_le_bytes());
        b.extend_from_slice(&(f.end - 1).to_le_bytes());
    });
}

/// Why a file cannot be used, with the byte offset where it was found.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{what} (at byte {offset})")]
pub struct FileError {
    /// What is wrong.
    pub what: String,
    /// Where.
    pub offset: u64,
}

pub(crate) fn err<T>(offset: usize, what: impl Into<String>) -> Result<T, FileError> {
    Err(FileError {
        what: what.into(),
        offset: offset as u64,
    })
}

/// Encodes `g` as the file's bytes.
pub(crate) fn encode(g: &Graph) -> Vec<u8> {
    let n = g.n_slots();
    let mut out = Vec::with_capacity(
        HEADER_BYTES
            + 10 * SECTION_HEADER_BYTES
            + g.vectors.len() * 4
            + g.layer0.len() * 4
            + n * 32
            + 128,
    );
    header(&mut out, &HNSW);

    section(&mut out, META, |b| {
        b.extend_from_slice(&g.applied_lsn.to_le_bytes());
        b.extend_from_slice(&g.rebuilt_lsn.to_le_bytes());
        b.push(g.params.metric.code());
        b.extend_from_slice(&(g.params.m as u32).to_le_bytes());
        b.extend_from_slice(&(g.params.m0 as u32).to_le_bytes());
        b.extend_from_slice(&(g.params.ef_construction as u32).to_le_bytes());
        b.extend_from_slice(&g.params.seed.to_le_bytes());
        b.extend_from_slice(&(g.dim as u32).to_le_bytes());
        b.extend_from_slice(&(n as u32).to_le_bytes());
        b.extend_from_slice(&g.entry.unwrap_or(NO_ENTRY).to_le_bytes());
        b.push(g.top_level);
    });
    section(&mut out, IDS, |b| {
        for (id, lsn) in g.ids.iter().zip(&g.lsns) {
            put_id(b, id, *lsn);
        }
    });
    section(&mut out, VECTORS, |b| {
        for x in &g.vectors {
            b.extend_from_slice(&x.to_le_bytes());
        }
    });
    section(&mut out, LEVELS, |b| b.extend_from_slice(&g.levels));
    section(&mut out, TOMBSTONES, |b| {
        b.extend(g.dead.iter().map(|d| u8::from(*d)));
    });
    section(&mut out, LAYER0, |b| put_u32s(b, &g.layer0));
    section(&mut out, UPPER, |b| {
        for u in &g.upper {
            put_u32s(b, u);
        }
    });
    section(&mut out, UNINDEXED, |b| {
        let mut docs: Vec<(&Arc<str>, &u64)> = g.unindexed.iter().collect();
        docs.sort();
        b.extend_from_slice(&(docs.len() as u32).to_le_bytes());
        for (id, lsn) in docs {
            put_id(b, id, *lsn);
        }
    });
    end_section(&mut out, &HNSW);
    out
}

fn put_id(b: &mut Vec<u8>, id: &str, lsn: u64) {
    b.extend_from_slice(&lsn.to_le_bytes());
    b.extend_from_slice(&(id.len() as u32).to_le_bytes());
    b.extend_from_slice(id.as_bytes());
}

fn put_u32s(b: &mut Vec<u8>, xs: &[u32]) {
    for x in xs {
        b.extend_from_slice(&x.to_le_bytes());
    }
}

pub(crate) fn section(out: &mut Vec<u8>, kind: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    fill(out);
    let len = (out.len() - start - SECTION_HEADER_BYTES) as u64;
    out[start + 4..start + 12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[start..start + 12]),
        &out[start + SECTION_HEADER_BYTES..],
    );
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
}

/// One verified section: kind, the payload's offset in the file, the payload.
pub(crate) type Section<'a> = (u32, usize, &'a [u8]);

/// The sections of an `hnsw.bin` whose checksums all verify, in file order.
fn sections(bytes: &[u8]) -> Result<Vec<Section<'_>>, FileError> {
    sections_of(bytes, &HNSW)
}

/// The sections of a file of format `f` whose checksums all verify, in file order (kinds `1..=f.end`).
pub(crate) fn sections_of<'a>(bytes: &'a [u8], f: &Format) -> Result<Vec<Section<'a>>, FileError> {
    let section_name = f.name;
    if bytes.len() < HEADER_BYTES {
        return err(
            0,
            format!("file of {} bytes is shorter than its header", bytes.len()),
        );
    }
    if &bytes[..8] != f.magic {
        return err(0, format!("not a {} index file (magic)", f.what));
    }
    let header_crc = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    if crc32c::crc32c(&bytes[..12]) != header_crc {
        return err(0, "header checksum mismatch");
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != f.version {
        return err(
            8,
            format!("format version {version}, this build reads {}", f.version),
        );
    }
    let mut at = HEADER_BYTES;
    let mut out = Vec::new();
    loop {
        let expected = out.len() as u32 + 1;
        if bytes.len() - at < SECTION_HEADER_BYTES {
            return err(
                at,
                format!("file ends before section {}", section_name(expected)),
            );
        }
        let h = &bytes[at..at + SECTION_HEADER_BYTES];
        let kind = u32::from_le_bytes(h[0..4].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(h[4..12].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(h[12..16].try_into().unwrap_or_default());
        if kind != expected {
            return err(
                at,
                format!("section {kind} where {} belongs", section_name(expected)),
            );
        }
        let body = at + SECTION_HEADER_BYTES;
        if len > (bytes.len() - body) as u64 {
            return err(
                at,
                format!(
                    "section {} claims {len} bytes past the end",
                    section_name(kind)
                ),
            );
        }
        let payload = &bytes[body..body + len as usize];
        if crc32c::crc32c_append(crc32c::crc32c(&h[..12]), payload) != crc {
            return err(
                at,
                format!("section {} checksum mismatch", section_name(kind)),
            );
        }
        out.push((kind, body, payload));
        at = body + len as usize;
        if kind == f.end {
            let mut r = Reader::new(payload, body);
            let total = r.u64()?;
            let count = r.u32()?;
            if total != (body - SECTION_HEADER_BYTES) as u64 || count != f.end - 1 || r.left() != 0
            {
                return err(body, "end section does not match the file");
            }
            if at != bytes.len() {
                return err(
                    at,
                    format!("{} bytes after the end section", bytes.len() - at),
                );
            }
            return Ok(out);
        }
    }
}

/// Verifies every checksum and length; returns the applied LSN the file holds.
pub(crate) fn verify(bytes: &[u8]) -> Result<u64, FileError> {
    let s = sections(bytes)?;
    let (_, at, meta) = s[0];
    Reader::new(meta, at).u64()
}

/// Decodes a file into a graph built with `params` (whose run-time parameters are kept).
pub(crate) fn decode(bytes: &[u8], params: &HnswParams) -> Result<Graph, FileError> {
    let s = sections(bytes)?;
    let payload = |kind: u32| s[(kind - 1) as usize];

    let (_, at, meta) = payload(META);
    let mut r = Reader::new(meta, at);
    let applied_lsn = r.u64()?;
    let rebuilt_lsn = r.u64()?;
    let metric = Metric::from_code(r.u8()?);
    let m = r.u32()? as usize;
    let m0 = r.u32()? as usize;
    let ef_construction = r.u32()? as usize;
    let seed = r.u64()?;
    let dim = r.u32()? as usize;
    let n = r.u32()? as usize;
    let entry = r.u32()?;
    let top_level = r.u8()?;
    let Some(metric) = metric else {
        return err(at, "unknown metric");
    };
    let stored = HnswParams {
        metric,
        m,
        m0,
        ef_construction,
        seed,
        ..params.clone()
    };
    if !params.same_structure(&stored) {
        return err(
            at,
            format!(
                "built with metric {} m {m} m0 {m0} ef_construction {ef_construction} seed {seed}, configured \
                 metric {} m {} m0 {} ef_construction {} seed {}",
                metric.as_str(),
                params.metric.as_str(),
                params.m,
                params.m0,
                params.ef_construction,
                params.seed
            ),
        );
    }
    if dim > DIM_MAX || n > NODES_MAX || top_level > LEVEL_MAX || (n > 0 && dim == 0) {
        return err(
            at,
            format!("meta out of range: dim {dim}, slots {n}, top level {top_level}"),
        );
    }
    let mut g = Graph::new(params.clone());
    g.applied_lsn = applied_lsn;
    g.rebuilt_lsn = rebuilt_lsn;
    g.dim = dim;
    g.top_level = top_level;
    g.entry = (entry != NO_ENTRY).then_some(entry);

    let (_, at, ids) = payload(IDS);
    let mut r = Reader::new(ids, at);
    g.ids.reserve(n);
    for _ in 0..n {
        let (id, lsn) = r.id()?;
        g.ids.push(id);
        g.lsns.push(lsn);
    }
    r.done("ids")?;

    let (_, at, vectors) = payload(VECTORS);
    if vectors.len() as u64 != n as u64 * dim as u64 * 4 {
        return err(
            at,
            format!("vectors: {} bytes for {n} × {dim} floats", vectors.len()),
        );
    }
    g.vectors = vectors
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = g.vectors.iter().position(|x| !x.is_finite()) {
        return err(at + i * 4, "vectors: a component is not finite");
    }

    let (_, at, levels) = payload(LEVELS);
    if levels.len() != n || levels.iter().any(|l| *l > LEVEL_MAX) {
        return err(at, "levels: wrong length or a level above the limit");
    }
    g.levels = levels.to_vec();

    let (_, at, dead) = payload(TOMBSTONES);
    if dead.len() != n || dead.iter().any(|d| *d > 1) {
        return err(at, "tombstones: wrong length or a value other than 0 and 1");
    }
    g.dead = dead.iter().map(|d| *d == 1).collect();
    g.n_dead = g.dead.iter().filter(|d| **d).count();

    let (_, at, layer0) = payload(LAYER0);
    if layer0.len() as u64 != n as u64 * (m0 as u64 + 1) * 4 {
        return err(at, format!("layer0: {} bytes for {n} nodes", layer0.len()));
    }
    g.layer0 = u32s(layer0);

    let (_, at, upper) = payload(UPPER);
    let want: u64 = g
        .levels
        .iter()
        .map(|l| u64::from(*l) * (m as u64 + 1) * 4)
        .sum();
    if upper.len() as u64 != want {
        return err(
            at,
            format!("upper: {} bytes, the levels need {want}", upper.len()),
        );
    }
    let mut off = 0;
    g.upper = g
        .levels
        .iter()
        .map(|l| {
            let len = usize::from(*l) * (m + 1) * 4;
            let v = u32s(&upper[off..off + len]);
            off += len;
            v
        })
        .collect();

    let (_, at, unindexed) = payload(UNINDEXED);
    let mut r = Reader::new(unindexed, at);
    let count = r.u32()? as usize;
    if count > unindexed.len() / 12 {
        return err(at, format!("unindexed: {count} documents cannot fit"));
    }
    let mut docs = HashMap::with_capacity(count);
    for _ in 0..count {
        let (id, lsn) = r.id()?;
        if docs.insert(id, lsn).is_some() {
            return err(at, "unindexed: an id twice");
        }
    }
    r.done("unindexed")?;
    g.unindexed = docs;

    for s in 0..n {
        if g.dead[s] {
            continue;
        }
        if g.by_id.insert(g.ids[s].clone(), s as u32).is_some() {
            return err(at, format!("id {:?} is live in two slots", g.ids[s]));
        }
    }
    let problems = g.validate(3);
    if !problems.is_empty() {
        return err(
            0,
            format!("graph does not hold together: {}", problems.join("; ")),
        );
    }
    g.recount_incoming();
    Ok(g)
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A bounds-checked reader over one section's payload; `base` is the payload's offset in the file.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8], base: usize) -> Self {
        Reader { b, at: 0, base }
    }

    pub(crate) fn left(&self) -> usize {
        self.b.len() - self.at
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FileError> {
        if self.left() < n {
            return err(
                self.base + self.at,
                format!("needs {n} bytes, {} left", self.left()),
            );
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FileError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FileError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FileError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn id(&mut self) -> Result<(Arc<str>, u64), FileError> {
        let lsn = self.u64()?;
        let at = self.base + self.at;
        let len = self.u32()? as usize;
        if len > ID_BYTES_MAX {
            return err(at, format!("id of {len} bytes, at most {ID_BYTES_MAX}"));
        }
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok((Arc::from(s), lsn)),
            Err(_) => err(at, "id is not UTF-8"),
        }
    }

    pub(crate) fn done(&self, what: &str) -> Result<(), FileError> {
        if self.left() != 0 {
            return err(
                self.base + self.at,
                format!("{what}: {} bytes left over", self.left()),
            );
        }
        Ok(())
    }
}
