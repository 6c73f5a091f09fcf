//! The write-ahead log: numbered segment files under `wal/`, each a 32-byte header and framed records
//! (see `codec::encode_record`). The open (last) segment has a byte-identical mirror (`.mir`) written and fsynced
//! with it; a sealed segment is immutable and protected by a parity sidecar (`.par`) instead.
//!
//! ```text
//! header  magic "MEDWAL\0\x01" | version u32 | segment_id u64 | first_lsn u64 | crc u32             = 32 bytes
//! ```
//!
//! Segment version 2 (every segment this code creates): each record carries its commit batch's mark
//! ([`codec::BatchMark`], added by [`OpenSegment::append`]), which lets recovery cut a torn last batch that a power
//! loss left with a hole ([`scan_after_crash`]). Version 1 (written before): no marks, a hole before valid records is
//! always damage. A version-1 open segment keeps its format until it is sealed.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::codec::{
    self, Decoded, RECORD_FIXED_BYTES, RECORD_HEADER_BYTES, Record, crc_of, decode_record,
};
use std::sync::Arc;

use crate::ahead::{self, Ahead, Copies};
use crate::io::{self, IoFaults};

const MAGIC: &[u8; 8] = b"MEDWAL\0\x01";
/// The version of every segment created: records carry batch marks.
const VERSION: u32 = 2;
/// The version of segments written before batch marks (read, and appended to while open).
const VERSION_UNMARKED: u32 = 1;
/// Segment header size.
pub const HEADER_BYTES: u64 = 32;

/// `wal/` under the data directory.
pub fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}
/// A segment's relative path.
pub fn seg_name(id: u64) -> String {
    format!("wal/{id:016}.seg")
}
/// A segment mirror's relative path.
pub fn mirror_name(id: u64) -> String {
    format!("wal/{id:016}.mir")
}
/// A sealed segment's parity sidecar's relative path.
pub fn par_name(id: u64) -> String {
    format!("wal/{id:016}.seg.par")
}

/// Encodes a segment header.
pub fn header(id: u64, first_lsn: u64) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.to_le_bytes());
    h[20..28].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc_of(&[&h[..28]]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header belongs to segment `id`.
pub fn check_header(bytes: &[u8], id: u64) -> Result<(), String> {
    if bytes.len() < HEADER_BYTES as usize {
        return Err(format!(
            "segment header needs {HEADER_BYTES} bytes, file has {}",
            bytes.len()
        ));
    }
    let h = &bytes[..HEADER_BYTES as usize];
    if &h[..8] != MAGIC {
        return Err("bad segment magic".into());
    }
    if crc_of(&[&h[..28]]) != u32::from_le_bytes([h[28], h[29], h[30], h[31]]) {
        return Err("segment header checksum mismatch".into());
    }
    let got = u64::from_le_bytes(h[12..20].try_into().unwrap_or([0; 8]));
    if got != id {
        return Err(format!("segment header names segment {got}, expected {id}"));
    }
    let version = header_version(h);
    if version != VERSION && version != VERSION_UNMARKED {
        return Err(format!(
            "segment version {version} unknown (this medic reads {VERSION_UNMARKED} and {VERSION})"
        ));
    }
    Ok(())
}

/// The version field of a segment header (checked by [`check_header`]); 0 if too short.
fn header_version(bytes: &[u8]) -> u32 {
    bytes
        .get(8..12)
        .and_then(|v| v.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// Whether the segment whose (checked) header starts `bytes` carries batch marks.
pub fn header_has_marks(bytes: &[u8]) -> bool {
    header_version(bytes) >= VERSION
}

/// The first LSN a segment header of segment `id` records, once the header verifies.
pub fn header_first_lsn(bytes: &[u8], id: u64) -> Result<u64, String> {
    check_header(bytes, id)?;
    Ok(u64::from_le_bytes(
        bytes[20..28].try_into().unwrap_or([0; 8]),
    ))
}

/// What scanning a segment's bytes found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid records, in order.
    pub records: Vec<Record>,
    /// Where valid bytes end.
    pub valid_end: u64,
    /// The good bytes (the main copy with damaged records replaced from the mirror), up to `valid_end`.
    pub good: Vec<u8>,
    /// Records the main copy had damaged and the mirror supplied: `(offset, len)`.
    pub from_mirror: Vec<(u64, u64)>,
    /// Ranges where the mirror differs from the good bytes (to be rewritten).
    pub mirror_damaged: bool,
    /// Bytes past `valid_end` in the longer copy: a torn, never-acknowledged tail, `(offset, len, reason)`.
    pub torn: Option<(u64, u64, String)>,
    /// Damage in the middle of the log that no copy could undo: `(offset, reason)`.
    pub damaged: Option<(u64, String)>,
    /// When the torn tail is a torn batch with valid records past a hole ([`scan_after_crash`]): their highest LSN.
    pub torn_lsn_max: Option<u64>,
}

/// Scans a segment. `mirror` is the open segment's mirror, if any. Record by record, whichever copy verifies is
/// taken. A record that fails in both copies ends the scan: if a valid record continuing the LSN order follows it in
/// either copy, that is acknowledged data lost (`damaged`); otherwise a torn tail.
pub fn scan(main: &[u8], mirror: Option<&[u8]>, record_bytes_max: u64) -> Scan {
    let mut s = Scan::default();
    let h = HEADER_BYTES as usize;
    let mut good = Vec::with_capacity(main.len());
    // The header: take whichever copy is intact (the caller checked one of them).
    good.extend_from_slice(&main[..h.min(main.len())]);
    let mut pos = h;
    loop {
        // A record counts only if it decodes and continues the log: its LSN above the last one taken. A misdirected
        // write can put a valid record from elsewhere in the file at this offset; where the two copies hold
        // different valid records, the one that continues the sequence most closely (the lowest later LSN) is the
        // record that was written here.
        let last = s.records.last().map(|r| r.lsn);
        let decode = |copy: &[u8]| -> Decoded {
            if pos > copy.len() {
                return Decoded::Short;
            }
            match decode_record(&copy[pos..], record_bytes_max) {
                Decoded::Ok(rec, _) if last.is_some_and(|l| rec.lsn <= l) => Decoded::Bad(format!(
                    "record LSN {} out of order after LSN {}",
                    rec.lsn,
                    last.unwrap_or(0)
                )),
                d => d,
            }
        };
        let m = decode(main);
        let same_in_mirror = |n: usize| {
            mirror.is_none_or(|mir| mir.len() >= pos + n && mir[pos..pos + n] == main[pos..pos + n])
        };
        let r = match (&m, mirror) {
            (Decoded::Ok(_, n), _) if same_in_mirror(*n) => Decoded::Short,
            (_, Some(mir)) => decode(mir),
            (_, None) => Decoded::Short,
        };
        let (from_mirror, rec, n) = match (m, r) {
            (Decoded::Ok(a, _), Decoded::Ok(b, k)) if b.lsn < a.lsn => (true, b, k),
            (Decoded::Ok(a, n), _) => (false, a, n),
            (_, Decoded::Ok(b, k)) => (true, b, k),
            (m, _) => {
                let reason = match m {
                    Decoded::Bad(r) => r,
                    _ => "incomplete record".to_string(),
                };
                // Zero bytes past the last record are the file's pre-zeroed space, not data: the log ends where the
                // last non-zero byte of either copy does.
                let longest = nonzero_end(main).max(mirror.map_or(0, nonzero_end));
                if pos < longest {
                    // Is there a valid record continuing the LSN order anywhere after this point, in either copy?
                    // Then this is mid-log damage (acknowledged records lost), not a torn tail: one copy may be
                    // cut short while the other still holds every later record.
                    let later_in = |copy: &[u8]| {
                        (pos + 1..nonzero_end(copy)).find(|&p| {
                            matches!(decode_record(&copy[p..], record_bytes_max), Decoded::Ok(ref r, _)
                                if last.is_none_or(|l| r.lsn > l))
                        })
                    };
                    let later = [Some(main), mirror]
                        .into_iter()
                        .flatten()
                        .zip(["main copy", "mirror"])
                        .filter_map(|(c, name)| later_in(c).map(|p| (p, name)))
                        .min();
                    match later {
                        Some((p, name)) => {
                            s.damaged = Some((
                                pos as u64,
                                format!(
                                    "{reason}; valid records resume at offset {p} of the {name}"
                                ),
                            ))
                        }
                        None => s.torn = Some((pos as u64, (longest - pos) as u64, reason)),
                    }
                }
                break;
            }
        };
        let copy = match mirror {
            Some(mir) if from_mirror => {
                s.from_mirror.push((pos as u64, n as u64));
                mir
            }
            _ => main,
        };
        good.extend_from_slice(&copy[pos..pos + n]);
        s.records.push(rec);
        pos += n;
    }
    s.valid_end = pos as u64;
    if let Some(mir) = mirror {
        s.mirror_damaged = mir.len() < good.len()
            || mir[..good.len()] != good[..]
            || nonzero_end(mir) > good.len();
    }
    s.good = good;
    s
}

/// Scans the open segment on open, after a crash: [`scan`], then the batch rule. A power loss while a batch written
/// into zero-filled space is flushed can leave a later page of it durable and an earlier one still zero, in both
/// copies (a device completes writes in any order). Batch B+1 is written only after batch B is durable, so when
/// every valid record past the hole (in either copy) belongs to the batch the hole is in, nothing later was written
/// and that batch, incomplete, was never acknowledged: a torn tail, cut from the hole on like any other. A hole
/// followed by a record of any other batch, or in a segment without batch marks, stays damage.
#[cfg(test)]
pub fn scan_after_crash(main: &[u8], mirror: Option<&[u8]>, record_bytes_max: u64) -> Scan {
    scan_after_crash_journaled(main, mirror, record_bytes_max, None)
}

/// [`scan_after_crash`] with the highest LSN the segment's identity journal lists (`journaled`): a journal whose
/// frames end exactly where the holed batch begins says every batch before it was durable and that one was not (a
/// frame is appended only once its batch is durable, and a process crash keeps it), which stands in for the zeros
/// of an unwritten sector: a write torn at any byte of a sector (FORMAT.md) is cut too.
pub fn scan_after_crash_journaled(
    main: &[u8],
    mirror: Option<&[u8]>,
    record_bytes_max: u64,
    journaled: Option<u64>,
) -> Scan {
    let mut s = scan(main, mirror, record_bytes_max);
    let Some((pos, why)) = &s.damaged else {
        return s;
    };
    let pos = *pos;
    let at = pos as usize;
    if let Some((follows, hi)) = torn_batch(&s, main, mirror, at, record_bytes_max, journaled) {
        let longest = nonzero_end(main).max(mirror.map_or(0, nonzero_end)) as u64;
        let reason = format!(
            "{why}; every valid record past it belongs to the batch in flight (following LSN {follows}), \
             which never completed"
        );
        s.torn = Some((pos, longest - pos, reason));
        s.torn_lsn_max = Some(hi);
        s.damaged = None;
    }
    s
}

/// The batch a hole at `pos` is in (the LSN it follows) and the highest LSN found of it, if every valid record past
/// the hole continuing the LSN order, in either copy, belongs to it.
fn torn_batch(
    s: &Scan,
    main: &[u8],
    mirror: Option<&[u8]>,
    pos: usize,
    record_bytes_max: u64,
    journaled: Option<u64>,
) -> Option<(u64, u64)> {
    if !header_has_marks(&s.good) {
        return None;
    }
    let last = s.records.last();
    // The record before the hole ended its batch: the hole starts the next one. Otherwise the hole is inside that
    // batch — or, when an earlier open cut that batch after this record (a torn batch keeps its prefix), it starts
    // the batch written after that open, which follows this record.
    let candidates = match last {
        Some(q) => match q.batch? {
            m if m.last => [Some(q.lsn), None],
            m => [Some(m.follows), Some(q.lsn)],
        },
        None => [header_first_lsn_unchecked(&s.good).checked_sub(1), None],
    };
    let past = Past {
        main,
        mirror,
        pos,
        last_lsn: last.map(|q| q.lsn),
        record_bytes_max,
    };
    candidates
        .into_iter()
        .flatten()
        .find_map(|f| past.all_of_batch(f, journaled).map(|hi| (f, hi)))
}

/// The valid records past a hole at `pos`, in both copies.
struct Past<'a> {
    main: &'a [u8],
    mirror: Option<&'a [u8]>,
    pos: usize,
    last_lsn: Option<u64>,
    record_bytes_max: u64,
}

impl Past<'_> {
    /// The highest LSN past the hole, if there is one, every valid record past the hole in either copy belongs to the
    /// batch following `in_flight`, and each copy's invalid bytes look like an interrupted write: zeros of an
    /// unwritten sector ([`looks_unwritten`]) — or, when the identity journal's frames end exactly at `in_flight`
    /// (every earlier batch durable, this one not), a sector torn within itself ([`looks_torn`]). Damage (flipped or
    /// garbage bytes) leaves neither, and stays damage.
    fn all_of_batch(&self, in_flight: u64, journaled: Option<u64>) -> Option<u64> {
        let mut hi = None;
        let copies: Vec<_> = std::iter::once(self.main).chain(self.mirror).collect();
        let pasts: Vec<_> = copies
            .iter()
            .map(|c| records_past(c, self.pos, self.last_lsn, self.record_bytes_max))
            .collect();
        // Where valid records resume in any copy: the record at the hole ends there at the latest.
        let resume = pasts
            .iter()
            .filter_map(|p| p.first().map(|(at, _)| *at))
            .min();
        for (copy, past) in copies.into_iter().zip(pasts) {
            let next = match past.first() {
                Some((at, _)) => *at,
                None => self.invalid_reach(copy, resume),
            };
            // A copy with no valid record past the hole holds nothing of the log after it: a sector that starts in
            // the hole's span may be judged whole, to its end past the span.
            let clear_to = if past.is_empty() { copy.len() } else { next };
            let interrupted = match journaled == Some(in_flight) {
                true => looks_torn(copy, self.pos, next, clear_to),
                false => looks_unwritten(copy, self.pos, next, clear_to),
            };
            if !interrupted {
                return None;
            }
            for (_, r) in past {
                if r.batch.is_none_or(|m| m.follows != in_flight) {
                    return None;
                }
                hi = hi.max(Some(r.lsn));
            }
        }
        hi
    }

    /// How far the invalid bytes at the hole reach in a copy with no valid record past it: to the copy's last
    /// non-zero byte, or — when the hole starts with the header of the record expected there (a length within
    /// bounds, the next LSN, and an end no later than `resume`, where valid records resume in another copy) — to
    /// that record's claimed end, if further. A record whose first sector was written and whose later sectors were
    /// not ends its non-zero bytes inside its first sector; the zeros of the unwritten sectors it claims are what
    /// [`looks_unwritten`] looks for. A header with a flipped length or LSN claims nothing (or claims past `resume`);
    /// a header whose later bytes fall in a sector still zero claims up to `resume`.
    fn invalid_reach(&self, copy: &[u8], resume: Option<usize>) -> usize {
        let end = nonzero_end(copy);
        // A header cut by the end of its sector, with zeros from there to where records resume: the sector holding
        // the rest of the header was never written, so the header claims up to `resume` (nothing of it is flipped).
        let sector_end = (self.pos / SECTOR_BYTES + 1) * SECTOR_BYTES;
        if let Some(r) = resume
            && sector_end < self.pos + RECORD_HEADER_BYTES + 8
            && sector_end < r
            && copy.len() >= r
            && copy[sector_end..r].iter().all(|&x| x == 0)
        {
            return end.max(r);
        }
        let Some(head) = copy.get(self.pos..self.pos + RECORD_HEADER_BYTES + 8) else {
            return end;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
        let lsn = u64::from_le_bytes(head[RECORD_HEADER_BYTES..].try_into().unwrap_or([0; 8]));
        let expected = self.last_lsn.is_none_or(|l| lsn == l + 1);
        if len < RECORD_FIXED_BYTES as u64 || len > self.record_bytes_max || !expected {
            return end;
        }
        let claimed = self.pos + RECORD_HEADER_BYTES + len as usize;
        match resume {
            Some(r) if claimed <= r => end.max(claimed.min(copy.len())),
            _ => end,
        }
    }
}

/// The least run of zeros, ending at a sector's end, taken for the unwritten rest of a sector torn within itself.
const TORN_ZEROS_MIN: usize = 8;

/// Whether the invalid bytes `copy[pos..next]` hold what a write torn at any byte leaves: an unwritten sector
/// ([`looks_unwritten`]), or a sector whose first bytes were written and whose rest (at least [`TORN_ZEROS_MIN`]
/// bytes, up to the sector's end, within the span) is still zero.
fn looks_torn(copy: &[u8], pos: usize, next: usize, clear_to: usize) -> bool {
    let next = next.min(copy.len());
    if looks_unwritten(copy, pos, next, clear_to) {
        return true;
    }
    let mut end = (pos / SECTOR_BYTES + 1) * SECTOR_BYTES;
    while end <= next {
        if end >= pos + TORN_ZEROS_MIN && copy[end - TORN_ZEROS_MIN..end].iter().all(|&x| x == 0) {
            return true;
        }
        end += SECTOR_BYTES;
    }
    false
}

/// The device's unit of a write that reaches the disk whole or not at all (the smallest sector size).
const SECTOR_BYTES: usize = 512;

/// Whether the invalid bytes `copy[pos..next]` (a record invalid in both copies, up to the next valid record) hold
/// what an interrupted write leaves: a sector never written, so still zero — either the part of `pos`'s sector from
/// `pos` on (a record starts with its non-zero length, so a written one is never zero there), or a whole aligned
/// sector starting inside the span. `clear_to` (at least `next`) is where the copy may next hold a valid record: a
/// sector starting inside the span and reaching past `next` counts when it is zero up to its end or `clear_to`,
/// whichever comes first — a short record torn where its second sector begins, with nothing of the log after it.
fn looks_unwritten(copy: &[u8], pos: usize, next: usize, clear_to: usize) -> bool {
    let next = next.min(copy.len());
    let clear_to = clear_to.clamp(next, copy.len());
    if pos >= next {
        return true; // nothing but zeros past the hole in this copy
    }
    let zero = |a: usize, b: usize| copy[a..b].iter().all(|&x| x == 0);
    let first_end = (pos / SECTOR_BYTES + 1) * SECTOR_BYTES;
    if zero(pos, first_end.min(next)) {
        return true;
    }
    let mut s = first_end;
    while s < next {
        let end = s + SECTOR_BYTES;
        let whole = end <= next || clear_to > next;
        if whole && zero(s, end.min(clear_to)) {
            return true;
        }
        s = end;
    }
    false
}

/// Every valid record after offset `pos` of `copy` with an LSN above `last`, with its offset, found byte by byte (a
/// found record is skipped whole).
fn records_past(
    copy: &[u8],
    pos: usize,
    last: Option<u64>,
    record_bytes_max: u64,
) -> Vec<(usize, Record)> {
    let mut out = Vec::new();
    let end = nonzero_end(copy);
    let mut p = pos + 1;
    while p < end {
        match decode_record(&copy[p..], record_bytes_max) {
            Decoded::Ok(r, n) if last.is_none_or(|l| r.lsn > l) => {
                out.push((p, r));
                p += n;
            }
            _ => p += 1,
        }
    }
    out
}

/// The first LSN field of a segment header already checked.
fn header_first_lsn_unchecked(bytes: &[u8]) -> u64 {
    bytes
        .get(20..28)
        .and_then(|v| v.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Where a copy's bytes end once its trailing zero bytes (pre-zeroed space, never a record: a record starts with
/// its non-zero length) are set aside.
pub fn nonzero_end(copy: &[u8]) -> usize {
    copy.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// The LSNs a torn tail (bytes past the last durable record, never acknowledged) may carry, inclusive: above
/// `last`, the last durable LSN; the upper end is the highest LSN named by the record headers readable in the torn
/// bytes while they continue the order (unverified: the records are incomplete), else `last + 1`.
pub fn torn_lsns(tail: &[u8], last: u64, record_bytes_max: u64) -> (u64, u64) {
    let (mut pos, mut prev, mut hi) = (0usize, last, last + 1);
    while pos + RECORD_HEADER_BYTES + 8 <= tail.len() {
        let len = u32::from_le_bytes(tail[pos..pos + 4].try_into().unwrap_or([0; 4])) as usize;
        if len < RECORD_FIXED_BYTES || len as u64 > record_bytes_max {
            break;
        }
        let at = pos + RECORD_HEADER_BYTES;
        let lsn = u64::from_le_bytes(tail[at..at + 8].try_into().unwrap_or([0; 8]));
        if lsn <= prev {
            break;
        }
        (prev, hi) = (lsn, hi.max(lsn));
        pos += RECORD_HEADER_BYTES + len;
    }
    (last + 1, hi)
}

/// The open segment: appends go to the main file and its mirror.
#[derive(Debug)]
pub struct OpenSegment {
    /// Segment id.
    pub id: u64,
    /// LSN the segment starts at.
    pub first_lsn: u64,
    /// The main file.
    pub file: File,
    /// The mirror, if mirroring is on.
    pub mirror: Option<File>,
    /// Current end (next append offset).
    pub len: u64,
    /// Where the zero-filled space of both copies ends (`>= len`, [`Ahead::zeroed_end`]): `len..zeroed_end` was
    /// written as zeros and flushed, so a commit overwriting it changes no size or extent and needs one device flush
    /// for both copies ([`io::sync_data_one_flush`]). The helper thread extends it ahead of commits.
    pub ahead: Ahead,
    /// Whether one flush of the main copy covers the mirror ([`io::one_flush_covers_both`], decided on open).
    pub one_flush: bool,
    /// Whether its records carry batch marks (segment version 2; see the module doc).
    pub batch_marks: bool,
    /// With batch marks: the LSN of the last record written to it (its first LSN − 1 while it holds none), which
    /// the next batch's marks name as the one it follows.
    pub last_lsn: u64,
    /// The segment's identity journal (`<seg>.ids`, see [`crate::identity`]), appended without a flush of its own;
    /// `None` when not kept (opened read-only or degraded, or a write to it failed).
    pub ids: Option<IdsJournal>,
}

/// The open end of a segment's identity journal.
#[derive(Debug)]
pub struct IdsJournal {
    /// The file.
    pub file: File,
    /// Its length (next append offset).
    pub len: u64,
}

/// The identity sidecar of segment `id`.
pub fn ids_name(id: u64) -> String {
    crate::identity::name_for(&seg_name(id))
}

impl OpenSegment {
    /// Creates a new empty segment (and mirror), durable.
    pub fn create(
        faults: &IoFaults,
        dir: &Path,
        id: u64,
        first_lsn: u64,
        mirror: bool,
    ) -> std::io::Result<OpenSegment> {
        let h = header(id, first_lsn);
        let file = io::create_new(faults, &dir.join(seg_name(id)))?;
        io::write_all_at(faults, &file, &h, 0)?;
        io::sync(faults, &file)?;
        let mirror = if mirror {
            let m = io::create_new(faults, &dir.join(mirror_name(id)))?;
            io::write_all_at(faults, &m, &h, 0)?;
            io::sync(faults, &m)?;
            Some(m)
        } else {
            None
        };
        let ids = io::create_new(faults, &dir.join(ids_name(id)))
            .ok()
            .map(|file| IdsJournal { file, len: 0 });
        io::sync_dir(faults, &wal_dir(dir))?;
        let one_flush = mirror
            .as_ref()
            .is_some_and(|m| io::one_flush_covers_both(&file, m));
        Ok(OpenSegment {
            id,
            first_lsn,
            file,
            one_flush,
            batch_marks: true,
            last_lsn: first_lsn.saturating_sub(1),
            mirror,
            len: HEADER_BYTES,
            ahead: Ahead::new(HEADER_BYTES),
            ids,
        })
    }

    /// Opens an existing segment whose good bytes (after recovery) are `good`; makes main and mirror equal to them.
    #[allow(clippy::too_many_arguments)] // one call site, in recovery; each argument is a distinct fact
    pub fn reopen(
        faults: &IoFaults,
        dir: &Path,
        id: u64,
        first_lsn: u64,
        good: &[u8],
        rewrite_main: &[(u64, u64)],
        rewrite_mirror: bool,
        mirror: bool,
    ) -> std::io::Result<OpenSegment> {
        let file = io::open_rw(faults, &dir.join(seg_name(id)), true)?;
        for &(off, len) in rewrite_main {
            io::write_all_at(
                faults,
                &file,
                &good[off as usize..(off + len) as usize],
                off,
            )?;
        }
        if file.metadata()?.len() != good.len() as u64 || !rewrite_main.is_empty() {
            file.set_len(good.len() as u64)?;
            io::sync(faults, &file)?;
            io::sync_dir(faults, &wal_dir(dir))?;
        }
        let mirror = if mirror {
            let m = io::open_rw(faults, &dir.join(mirror_name(id)), true)?;
            if rewrite_mirror {
                m.set_len(0)?;
                io::write_all_at(faults, &m, good, 0)?;
                io::sync(faults, &m)?;
            } else if m.metadata()?.len() != good.len() as u64 {
                // Only zeros past the good end (the scan found the copies equal): cut to the same length.
                m.set_len(good.len() as u64)?;
                io::sync(faults, &m)?;
            }
            Some(m)
        } else {
            let _ = std::fs::remove_file(dir.join(mirror_name(id)));
            None
        };
        // The identity journal, rewritten from the verified records (a crash may have cut its unflushed tail).
        let mut keys =
            crate::identity::record_keys(good.get(HEADER_BYTES as usize..).unwrap_or(&[]));
        let last = keys.last().map_or(first_lsn.saturating_sub(1), |k| k.0);
        let journal = crate::identity::encode_all(first_lsn, last, &mut keys);
        let ids_path = dir.join(ids_name(id));
        let ids = io::write_file_atomic(faults, &ids_path, &journal)
            .and_then(|()| io::open_rw(faults, &ids_path, false))
            .ok()
            .map(|file| IdsJournal {
                file,
                len: journal.len() as u64,
            });
        let one_flush = mirror
            .as_ref()
            .is_some_and(|m| io::one_flush_covers_both(&file, m));
        Ok(OpenSegment {
            id,
            first_lsn,
            file,
            one_flush,
            batch_marks: header_has_marks(good),
            last_lsn: last,
            mirror,
            len: good.len() as u64,
            ahead: Ahead::new(good.len() as u64),
            ids,
        })
    }

    /// Appends to the identity journal the frame of a batch just made durable (`buf`, its records), covering
    /// `first..=last`. Best effort, never failing the write: after a failed write the journal is no longer kept for
    /// this segment (a loss in what it misses stays anonymous).
    pub fn append_ids(&mut self, faults: &IoFaults, first: u64, last: u64, buf: &[u8]) {
        let Some(j) = &mut self.ids else { return };
        let mut frame = Vec::new();
        crate::identity::encode_frame(first, last, crate::identity::record_keys(buf), &mut frame);
        match io::write_all_at(faults, &j.file, &frame, j.len) {
            Ok(()) => j.len += frame.len() as u64,
            Err(_) => self.ids = None,
        }
    }

    /// Flushes the identity journal (on a clean close).
    pub fn sync_ids(&self, faults: &IoFaults) {
        if let Some(j) = &self.ids {
            let _ = io::sync_data(faults, &j.file);
        }
    }

    /// Where the zero-filled space of both copies ends now (`len` when there is none).
    pub fn zeroed_end(&self) -> u64 {
        self.ahead.zeroed_end()
    }

    /// Appends a batch to main and mirror and fsyncs both. On error the caller must [`OpenSegment::undo`].
    /// Writes both copies, then flushes them at once ([`io::sync_data_both`]: the mirror's `fdatasync` on a pooled
    /// helper thread while this one flushes the main copy) and returns only when both are durable. `fdatasync`
    /// suffices: an append changes only data and the size, which `fdatasync` flushes. (A thread spawned per commit
    /// was measured slower than flushing one after the other; a thread kept for the process is not.)
    ///
    /// With a mirror on a filesystem where one flush covers both copies, the batch goes into zero-filled space
    /// instead and is made durable by one device flush ([`io::sync_data_one_flush`]). The zero-fill helper
    /// ([`crate::ahead`]) keeps that space ahead of the end: once less than half of `zero_ahead` bytes is left past
    /// the batch, it is asked for more. When the batch does not fit in what is already zeroed (the helper is behind
    /// or was not asked yet), the commit holds the helper and, if the room is still short, zero-fills both copies
    /// itself up to one [`ahead::CHUNK_BYTES`] past the batch (written and flushed, two flushes: sizes change).
    /// Extending is best effort: if it fails (no space, say), both copies are cut back to the durable end and the
    /// batch is appended as above. Returns whether this commit zero-filled.
    ///
    /// `buf` is one commit batch of unmarked records; in a segment with batch marks each is written marked
    /// ([`codec::mark_batch`]: 8 bytes more per record), so the segment grows by more than `buf.len()`.
    pub fn append(
        &mut self,
        faults: &Arc<IoFaults>,
        buf: &[u8],
        zero_ahead: impl Fn() -> u64,
    ) -> Result<Appended, AppendError> {
        let marked = match self.batch_marks {
            true => Some(codec::mark_batch(buf, self.last_lsn).ok_or_else(|| {
                AppendError::Write(std::io::Error::other(
                    "the batch is not a sequence of unmarked records",
                ))
            })?),
            false => None,
        };
        let buf = marked.as_ref().map_or(buf, |m| &m.bytes[..]);
        let end = self.len + buf.len() as u64;
        let zeroing = self.one_flush && self.mirror.is_some();
        let mut room = self.ahead.zeroed_end();
        // Past the published room the helper may be writing zeros: held until the batch is in, so it never does.
        let held = zeroing && end > room;
        let mut filled_inline = false;
        if held {
            room = self.ahead.hold();
            if end > room && zero_ahead() > 0 {
                room = self.zero_fill(faults, room.max(self.len), end + ahead::CHUNK_BYTES);
                filled_inline = room >= end;
            }
        }
        let written = self.write_and_flush(faults, buf, zeroing && end <= room);
        if held {
            // Appended past the zero-filled space: the copies hold data up to `end`, nothing zeroed beyond.
            self.ahead.release((end > room).then_some(end));
        }
        written?;
        self.len = end;
        if let Some(last) = marked.as_ref().and_then(|m| m.last_lsn) {
            self.last_lsn = last;
        }
        if zeroing {
            self.fill_ahead(faults, room.max(end), &zero_ahead);
        }
        Ok(Appended { filled_inline })
    }

    /// Writes `buf` at the end of both copies and makes it durable: with one flush when it lies in zero-filled
    /// space (`one_flush`), else with a flush of each copy.
    fn write_and_flush(
        &self,
        faults: &IoFaults,
        buf: &[u8],
        one_flush: bool,
    ) -> Result<(), AppendError> {
        io::write_all_at(faults, &self.file, buf, self.len).map_err(AppendError::Write)?;
        if let Some(m) = &self.mirror {
            io::write_all_at(faults, m, buf, self.len).map_err(AppendError::Write)?;
        }
        match &self.mirror {
            Some(m) if one_flush => {
                io::sync_data_one_flush(faults, &self.file, m, self.len, buf.len() as u64)
            }
            Some(m) => io::sync_data_both(faults, &self.file, m),
            None => io::sync_data(faults, &self.file),
        }
        .map_err(AppendError::Sync)
    }

    /// Asks the zero-fill helper for more room once less than half of `zero_ahead` is left past the end.
    fn fill_ahead(&self, faults: &Arc<IoFaults>, room: u64, zero_ahead: &impl Fn() -> u64) {
        let left = room - self.len;
        if left >= 2 << 20 {
            return; // at least half of the largest zero-ahead distance (4 MiB) left: no need to ask the disk
        }
        let want = zero_ahead();
        if want == 0 || left >= want / 2 {
            return;
        }
        let Some(m) = &self.mirror else { return };
        self.ahead.request(self.len + want, || {
            Some(Copies {
                main: reopen(&self.file)?,
                mirror: reopen(m)?,
                faults: faults.clone(),
            })
        });
    }

    /// Zero-fills both copies from `from` (the published end, under a hold) to `to` (rounded up to 4 KiB) and
    /// flushes them, so later commits overwrite allocated space; returns the new end. On any failure, cuts both
    /// back to `len` (nothing past it was acknowledged) and leaves nothing zeroed ahead (returns `len`).
    fn zero_fill(&mut self, faults: &IoFaults, from: u64, to: u64) -> u64 {
        let to = to.div_ceil(4096) * 4096;
        let Some(m) = &self.mirror else {
            return self.len;
        };
        let filled = ahead::write_zeros(faults, &self.file, m, from, to);
        match filled {
            Ok(()) => {
                self.ahead.filled_inline(to);
                to
            }
            Err(_) => {
                let _ = self.undo(faults);
                self.len
            }
        }
    }

    /// After a copy was recreated or rewritten in place: both copies are cut to the durable end (nothing past it
    /// is known to be zero-filled and flushed in both any more; the next commit zero-fills anew), and whether one
    /// flush covers both is asked again.
    pub fn copies_replaced(&mut self, faults: &IoFaults) -> std::io::Result<()> {
        self.one_flush = self
            .mirror
            .as_ref()
            .is_some_and(|m| io::one_flush_covers_both(&self.file, m));
        self.cut_to_len(faults)
    }

    /// Cuts both copies to the durable end (dropping the zero-filled space past it) and flushes them: a segment
    /// being sealed is exactly its records. Holds the zero-fill helper meanwhile and resets it to the new end.
    pub fn cut_to_len(&mut self, faults: &IoFaults) -> std::io::Result<()> {
        self.cut(faults, false)
    }

    /// Cuts both copies back to the last good end after a failed write (holding the helper, which restarts from
    /// there).
    pub fn undo(&mut self, faults: &IoFaults) -> std::io::Result<()> {
        self.cut(faults, true)
    }

    /// Sets both copies' length to `len` (`always`, else only a longer copy) and flushes them, the zero-fill helper
    /// held meanwhile; whatever happened, nothing past `len` is taken for zero-filled space any more.
    fn cut(&mut self, faults: &IoFaults, always: bool) -> std::io::Result<()> {
        self.ahead.hold();
        let cut = || -> std::io::Result<()> {
            for f in std::iter::once(&self.file).chain(self.mirror.as_ref()) {
                if always || f.metadata()?.len() > self.len {
                    f.set_len(self.len)?;
                    io::sync(faults, f)?;
                }
            }
            Ok(())
        };
        let r = cut();
        self.ahead.release(Some(self.len));
        r
    }
}

/// A descriptor of its own (a new open file description, not a duplicate) for the file `f` is open on: a write-back
/// error that the zero-fill helper's flush reports through it is still reported to the commit's flush through `f`
/// (Linux reports such an error once per open file description).
fn reopen(f: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", f.as_raw_fd());
    std::fs::OpenOptions::new().write(true).open(path).ok()
}

/// What an append did besides writing the batch.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    /// The commit zero-filled space itself (the helper was behind or not asked yet).
    pub filled_inline: bool,
}

/// Why an append failed.
#[derive(Debug)]
pub enum AppendError {
    /// A write failed (nothing acknowledged; the tail can be cut back).
    Write(std::io::Error),
    /// An fsync failed: the store must stop writing.
    Sync(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{KIND_PUT, encode_record};

    fn seg(n: u64) -> Vec<u8> {
        let mut b = header(1, 1).to_vec();
        for lsn in 1..=n {
            encode_record(lsn, KIND_PUT, &format!("id{lsn}"), b"doc", &mut b);
        }
        b
    }

    #[test]
    fn torn_tail_is_told_apart_from_mid_log_damage() {
        let full = seg(5);
        let cut = &full[..full.len() - 3];
        let s = scan(cut, None, 1 << 20);
        assert_eq!(s.records.len(), 4);
        assert!(s.torn.is_some() && s.damaged.is_none());

        let mut mid = full.clone();
        mid[40] ^= 1;
        let s = scan(&mid, None, 1 << 20);
        assert!(s.damaged.is_some(), "{s:?}");

        let s = scan(&mid, Some(&full), 1 << 20);
        assert_eq!(s.records.len(), 5);
        assert_eq!(s.from_mirror.len(), 1);
        assert_eq!(s.good, full);
        assert!(s.torn.is_none() && s.damaged.is_none());
    }

    #[test]
    fn a_torn_copy_does_not_hide_later_records_of_its_twin() {
        let full = seg(8);
        let at = offsets(&full);
        let mut torn = full[..at[4] + 5].to_vec();
        let mut flipped = full.clone();
        flipped[at[4] + 12] ^= 1;
        for (main, mirror) in [(&torn, &flipped), (&flipped, &torn)] {
            let s = scan(main, Some(mirror), 1 << 20);
            assert_eq!(s.records.len(), 4, "{s:?}");
            assert!(s.torn.is_none(), "{s:?}");
            let (off, why) = s.damaged.expect("mid-log damage");
            assert_eq!(off, at[4] as u64);
            assert!(why.contains(&format!("offset {}", at[5])), "{why}");
        }
        // Both copies cut inside record 5 with nothing after it: a torn tail.
        torn.truncate(at[4] + 3);
        let s = scan(&full[..at[4] + 7], Some(&torn), 1 << 20);
        assert!(s.damaged.is_none() && s.torn.is_some(), "{s:?}");
        flipped.truncate(at[4] + 20);
        assert!(scan(&flipped, Some(&torn), 1 << 20).torn.is_some());
    }

    #[test]
    fn zero_filled_space_past_the_records_is_the_end_and_a_hole_before_records_is_damage() {
        let full = seg(6);
        let mut padded = full.clone();
        padded.resize(full.len() + 8192, 0);
        for mirror in [None, Some(&padded[..]), Some(&full[..])] {
            let s = scan(&padded, mirror, 1 << 20);
            assert_eq!(s.records.len(), 6);
            assert!(s.torn.is_none() && s.damaged.is_none(), "{s:?}");
            assert!(!s.mirror_damaged);
            assert_eq!(s.good, full);
        }
        // A record cut short in the zero-filled space: a torn tail of exactly its bytes.
        let mut torn = padded.clone();
        torn[full.len()..full.len() + 9].copy_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5]);
        let s = scan(&torn, Some(&padded), 1 << 20);
        assert_eq!(s.records.len(), 6);
        let (off, len, _) = s.torn.clone().expect("torn tail");
        assert_eq!((off, len), (full.len() as u64, 9));
        // The same bytes in the mirror only: the mirror differs from the good bytes.
        assert!(scan(&padded, Some(&torn), 1 << 20).mirror_damaged);
        // A zeroed range in both copies with valid records after it is damage, never the end.
        let at = offsets(&full);
        let mut holed = padded.clone();
        holed[at[2]..at[4]].fill(0);
        let s = scan(&holed, Some(&holed), 1 << 20);
        assert_eq!(s.records.len(), 2);
        assert!(s.torn.is_none(), "{s:?}");
        let (off, why) = s.damaged.expect("mid-log damage");
        assert_eq!(off, at[2] as u64);
        assert!(why.contains(&format!("offset {}", at[4])), "{why}");
        // Zeroed in one copy only: the other supplies the records.
        let s = scan(&holed, Some(&padded), 1 << 20);
        assert_eq!((s.records.len(), s.from_mirror.len()), (6, 2));
        assert!(s.damaged.is_none() && s.torn.is_none());
    }

    /// A version-2 segment (first LSN 1) of the given batches, each a list of (LSN, document bytes), marked as
    /// the leader marks them, zero-filled to 16 KiB past the records; and the offset each batch starts at.
    fn marked_seg(batches: &[Vec<(u64, usize)>]) -> (Vec<u8>, Vec<usize>) {
        let mut b = header(1, 1).to_vec();
        let mut starts = Vec::new();
        let mut follows = 0;
        for batch in batches {
            let mut queued = Vec::new();
            for &(lsn, n) in batch {
                encode_record(
                    lsn,
                    KIND_PUT,
                    &format!("id{lsn}"),
                    &vec![b'x'; n],
                    &mut queued,
                );
            }
            let m = codec::mark_batch(&queued, follows).expect("framed records");
            starts.push(b.len());
            b.extend_from_slice(&m.bytes);
            follows = m.last_lsn.unwrap();
        }
        let end = b.len();
        b.resize(end + (16 << 10), 0);
        (b, starts)
    }

    /// Three one-record batches, then a batch of four records of 3 KiB (LSNs 4..=7), then `later` more batches.
    fn with_big_batch(later: u64) -> (Vec<u8>, Vec<usize>) {
        let mut batches: Vec<Vec<(u64, usize)>> = (1..=3).map(|l| vec![(l, 100)]).collect();
        batches.push((4..=7).map(|l| (l, 3000)).collect());
        batches.extend((8..8 + later).map(|l| vec![(l, 100)]));
        marked_seg(&batches)
    }

    #[test]
    fn a_hole_in_the_last_batch_with_only_its_own_records_after_it_is_a_torn_tail() {
        let (img, starts) = with_big_batch(0);
        let at = offsets(&img);
        // An earlier page of the batch still zero in both copies, the later ones durable.
        for hole in [starts[3]..4096, 4096..8192, at[4] + 10..at[5] + 5] {
            let mut holed = img.clone();
            holed[hole.clone()].fill(0);
            let s = scan_after_crash(&holed, Some(&holed), 1 << 20);
            assert!(s.damaged.is_none(), "{hole:?} {s:?}");
            let (off, len, why) = s.torn.clone().expect("a torn tail");
            let first_bad = at.iter().rposition(|&o| o <= hole.start).unwrap();
            assert_eq!(off, at[first_bad] as u64, "{hole:?}");
            assert_eq!(off + len, nonzero_end(&img) as u64);
            assert!(why.contains("batch in flight (following LSN 3)"), "{why}");
            assert_eq!(s.torn_lsn_max, Some(7));
            assert_eq!(s.records.len(), first_bad);
            assert_eq!(s.good, img[..at[first_bad]]);
            // The plain scan (used while running, where every record is acknowledged) still calls it damage.
            assert!(scan(&holed, Some(&holed), 1 << 20).damaged.is_some());
            // The hole in one copy only: the other supplies the records, nothing is torn.
            let s = scan_after_crash(&holed, Some(&img), 1 << 20);
            assert_eq!(s.records.len(), 7);
            assert!(s.torn.is_none() && s.damaged.is_none());
        }
    }

    #[test]
    fn a_short_record_torn_at_its_second_sector_differently_in_each_copy_is_a_torn_tail() {
        // One-record batches, then a batch of short records: one of them straddles a sector boundary. A power loss
        // leaves the main copy's part before the boundary unwritten and the mirror's part after it (with the rest of
        // the batch): neither copy holds the record, only the main copy holds the batch's later records, and no
        // whole sector lies inside the record. Each copy's zeros are a sector never written: a torn tail.
        let mut batches: Vec<Vec<(u64, usize)>> = (1..=3).map(|l| vec![(l, 100)]).collect();
        batches.push((4..=12).map(|l| (l, 90)).collect());
        let (img, starts) = marked_seg(&batches);
        let at = offsets(&img);
        let end = nonzero_end(&img);
        let straddling: Vec<usize> = (3..at.len() - 1)
            .filter(|&i| at[i] / SECTOR_BYTES != (at[i + 1] - 1) / SECTOR_BYTES)
            .collect();
        // Records whose header fits in their first sector, and one whose header the boundary cuts.
        let header_cut = |i: usize| (at[i] / SECTOR_BYTES + 1) * SECTOR_BYTES < at[i] + 16;
        assert!(straddling.iter().any(|&i| header_cut(i)), "{straddling:?}");
        assert!(straddling.iter().any(|&i| !header_cut(i)), "{straddling:?}");
        for &r in &straddling {
            assert!(at[r] >= starts[3]);
            let boundary = (at[r] / SECTOR_BYTES + 1) * SECTOR_BYTES;
            let mut main = img.clone();
            main[at[r]..boundary].fill(0);
            let mut mirror = img.clone();
            mirror[boundary..end].fill(0);
            let s = scan_after_crash(&main, Some(&mirror), 1 << 20);
            assert!(s.damaged.is_none(), "record {r}: {s:?}");
            assert_eq!(s.torn.clone().expect("a torn tail").0, at[r] as u64);
            assert_eq!(s.torn_lsn_max, Some(12));
            assert_eq!(s.records.len(), r);
        }
        let r = straddling[0];
        let boundary = (at[r] / SECTOR_BYTES + 1) * SECTOR_BYTES;
        // The same zeros with a record of a later batch after them: damage.
        batches.push(vec![(13, 100)]);
        let (img, _) = marked_seg(&batches);
        let end = nonzero_end(&img);
        let mut main = img.clone();
        main[at[r]..boundary].fill(0);
        let mut mirror = img.clone();
        mirror[boundary..end].fill(0);
        let s = scan_after_crash(&main, Some(&mirror), 1 << 20);
        assert!(s.torn.is_none() && s.damaged.is_some(), "{s:?}");
        // Flipped (not zeroed) where the mirror's record continues past the boundary: damage.
        let (img, _) = marked_seg(&batches[..4]);
        let mut main = img.clone();
        main[at[r]..boundary].fill(0);
        let mut mirror = img.clone();
        mirror[boundary..at[r + 1]]
            .iter_mut()
            .for_each(|b| *b ^= 0x5a);
        mirror[at[r + 1]..end].fill(0);
        let s = scan_after_crash(&main, Some(&mirror), 1 << 20);
        assert!(s.torn.is_none() && s.damaged.is_some(), "{s:?}");
    }

    #[test]
    fn bytes_of_the_last_batch_damaged_in_both_copies_without_a_zero_sector_stay_damage() {
        // A power loss leaves unwritten sectors zero; flipped bytes in the acknowledged last batch are damage, even
        // with only that batch's records after them.
        let (img, _) = with_big_batch(0);
        let at = offsets(&img);
        for hole in [at[4] + 10..at[4] + 50, at[5]..at[5] + 700] {
            let mut damaged = img.clone();
            damaged[hole.clone()].iter_mut().for_each(|b| *b ^= 0xff);
            let s = scan_after_crash(&damaged, Some(&damaged), 1 << 20);
            assert!(s.torn.is_none() && s.damaged.is_some(), "{hole:?} {s:?}");
        }
        // Zeros from the record's start to its sector's end are what an unwritten sector leaves: torn.
        let mut holed = img.clone();
        let sector_end = (at[4] / SECTOR_BYTES + 1) * SECTOR_BYTES;
        holed[at[4]..sector_end.min(at[5])].fill(0);
        let s = scan_after_crash(&holed, Some(&holed), 1 << 20);
        assert!(s.damaged.is_none() && s.torn.is_some(), "{s:?}");
    }

    #[test]
    fn a_sector_torn_within_itself_is_cut_when_the_journal_ends_where_the_batch_begins() {
        // The big batch (LSNs 4..=7, following LSN 3) in flight: one record's first 8 bytes written, the rest of its
        // sector not (zeros), the later sectors durable. No zeros from the record's start, no whole zero sector.
        let (img, _) = with_big_batch(0);
        let at = offsets(&img);
        let mut torn = img.clone();
        let sector_end = (at[5] / SECTOR_BYTES + 1) * SECTOR_BYTES;
        torn[at[5] + 8..sector_end].fill(0);
        let journaled = |j| scan_after_crash_journaled(&torn, Some(&torn), 1 << 20, j);
        // Without the journal, or with one listing the batch (it was durable), it stays damage.
        for j in [None, Some(2), Some(5), Some(7)] {
            let s = journaled(j);
            assert!(s.torn.is_none() && s.damaged.is_some(), "{j:?} {s:?}");
        }
        // The journal's frames end at LSN 3: every batch before was durable and this one was not.
        let s = journaled(Some(3));
        assert!(s.damaged.is_none(), "{s:?}");
        assert_eq!(s.torn.expect("a torn tail").0, at[5] as u64);
        assert_eq!(s.records.len(), 5);
        // Garbage where the sector was, the journal ending at LSN 3 all the same: damage (no zeros of a tear).
        let mut garbled = img.clone();
        garbled[at[5] + 8..sector_end]
            .iter_mut()
            .for_each(|b| *b ^= 0xa5);
        let s = scan_after_crash_journaled(&garbled, Some(&garbled), 1 << 20, Some(3));
        assert!(s.torn.is_none() && s.damaged.is_some(), "{s:?}");
        // Flipped bytes with a later batch after them stay damage whatever the journal says.
        let (img, _) = with_big_batch(1);
        let at = offsets(&img);
        let mut flipped = img.clone();
        flipped[at[4] + 10..at[4] + 50]
            .iter_mut()
            .for_each(|b| *b ^= 0xff);
        let s = scan_after_crash_journaled(&flipped, Some(&flipped), 1 << 20, Some(3));
        assert!(s.damaged.is_some(), "{s:?}");
    }

    #[test]
    fn a_record_torn_across_two_sectors_in_different_copies_is_a_torn_tail() {
        // The big batch (LSNs 4..=7, following LSN 3) in flight when the power failed, the journal lost: LSN 5's
        // record spans a sector boundary. The main copy's write of its first sector did not reach the disk (zeros
        // from the record on), its later sectors did (LSNs 6 and 7 valid); the mirror's first sector did, nothing
        // after it (the record's header, then zeros). Every valid record past the hole is the batch's own: torn.
        let (img, _) = with_big_batch(0);
        let at = offsets(&img);
        let sector_end = (at[5] / SECTOR_BYTES + 1) * SECTOR_BYTES;
        assert!(sector_end < at[5] + 3000, "the record spans sectors");
        let mut main = img.clone();
        main[at[5]..sector_end].fill(0);
        let mut mirror = img.clone();
        mirror[sector_end..].fill(0);
        for (a, b) in [(&main, &mirror), (&mirror, &main)] {
            let s = scan_after_crash(a, Some(b), 1 << 20);
            assert!(s.damaged.is_none(), "{:?}", s.damaged);
            assert_eq!(s.torn.as_ref().map(|t| t.0), Some(at[5] as u64));
            assert_eq!((s.records.len(), s.torn_lsn_max), (5, Some(7)));
        }
        // The same with the mirror's header flipped in its LSN or length: it claims nothing, so damage.
        for field in [9, 1] {
            let mut flipped = mirror.clone();
            flipped[at[5] + field] ^= 0x40;
            let s = scan_after_crash(&main, Some(&flipped), 1 << 20);
            assert!(
                s.torn.is_none() && s.damaged.is_some(),
                "{field} {:?}",
                s.torn
            );
        }
        // The mirror's record with garbage (not zeros) in the rest it claims: damage.
        let mut garbled = mirror.clone();
        garbled[sector_end..at[6]].fill(0x5a);
        let s = scan_after_crash(&main, Some(&garbled), 1 << 20);
        assert!(s.torn.is_none() && s.damaged.is_some(), "{:?}", s.torn);
    }

    #[test]
    fn a_hole_in_the_batch_after_a_kept_prefix_of_a_torn_batch_is_a_torn_tail() {
        // An earlier open cut the big batch (following LSN 3) after LSN 5, keeping 4 and 5 (5 not marked last); the
        // batch written next follows LSN 5, and a power loss leaves its first sector zero and a later page durable.
        let (img, _) = with_big_batch(0);
        let at = offsets(&img);
        let mut b = img[..at[5]].to_vec();
        let mut queued = Vec::new();
        for lsn in 6..=9 {
            encode_record(
                lsn,
                KIND_PUT,
                &format!("id{lsn}"),
                &[b'y'; 3000],
                &mut queued,
            );
        }
        let y = codec::mark_batch(&queued, 5).expect("framed records");
        let y_at = b.len();
        b.extend_from_slice(&y.bytes);
        b.resize(b.len() + (16 << 10), 0);
        let mut holed = b.clone();
        holed[y_at..(y_at / SECTOR_BYTES + 1) * SECTOR_BYTES].fill(0);
        let s = scan_after_crash(&holed, Some(&holed), 1 << 20);
        assert!(s.damaged.is_none(), "{:?}", s.damaged);
        assert_eq!(s.torn.as_ref().map(|t| t.0), Some(y_at as u64));
        assert_eq!(s.torn_lsn_max, Some(9));
        assert_eq!(s.records.len(), 5);
        // A record of another batch past the hole (following LSN 3 but after LSN 5's record) stays damage.
        let mut other = img[..at[5]].to_vec();
        let mut queued = Vec::new();
        encode_record(6, KIND_PUT, "id6", &[b'y'; 3000], &mut queued);
        encode_record(7, KIND_PUT, "id7", &[b'y'; 3000], &mut queued);
        let z = codec::mark_batch(&queued, 2).expect("framed records");
        let z_at = other.len();
        other.extend_from_slice(&z.bytes);
        other.resize(other.len() + (16 << 10), 0);
        other[z_at..(z_at / SECTOR_BYTES + 1) * SECTOR_BYTES].fill(0);
        let s = scan_after_crash(&other, Some(&other), 1 << 20);
        assert!(s.torn.is_none() && s.damaged.is_some(), "{:?}", s.torn);
    }

    #[test]
    fn a_hole_followed_by_a_later_batch_or_inside_an_older_batch_stays_damage() {
        // The big batch, then one more batch: the big batch was durable before it was written.
        let (img, starts) = with_big_batch(1);
        for hole in [starts[3]..4096, 4096..8192] {
            let mut holed = img.clone();
            holed[hole.clone()].fill(0);
            let s = scan_after_crash(&holed, Some(&holed), 1 << 20);
            assert!(s.torn.is_none() && s.damaged.is_some(), "{hole:?} {s:?}");
        }
        // A whole batch zeroed, the next one intact: acknowledged records lost, never a torn tail.
        let (img, starts) = with_big_batch(2);
        let mut holed = img.clone();
        holed[starts[4]..starts[5]].fill(0);
        let s = scan_after_crash(&holed, Some(&holed), 1 << 20);
        assert!(s.torn.is_none() && s.damaged.is_some(), "{s:?}");
        // A hole in an older one-record batch followed by the last batch.
        let (img, starts) = with_big_batch(0);
        let mut holed = img.clone();
        holed[starts[1] + 3..starts[2]].fill(0);
        let s = scan_after_crash(&holed, Some(&holed), 1 << 20);
        assert!(s.torn.is_none() && s.damaged.is_some(), "{s:?}");
        // A segment written before batch marks keeps today's rule: a hole before valid records is damage.
        let mut old = seg(6);
        old[8..12].copy_from_slice(&VERSION_UNMARKED.to_le_bytes());
        let crc = crc_of(&[&old[..28]]);
        old[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(check_header(&old, 1).is_ok() && !header_has_marks(&old));
        old.resize(old.len() + 4096, 0);
        let at = offsets(&old);
        old[at[4]..at[5]].fill(0);
        let s = scan_after_crash(&old, Some(&old), 1 << 20);
        assert!(s.torn.is_none() && s.damaged.is_some(), "{s:?}");
    }

    #[test]
    fn a_hole_at_the_start_of_a_fresh_segment_is_told_by_its_first_lsn() {
        // The segment's first batch follows its first LSN − 1 (here 0).
        let (img, starts) = marked_seg(&[(1..=3).map(|l| (l, 3000)).collect()]);
        let mut holed = img.clone();
        holed[starts[0]..4096].fill(0);
        let s = scan_after_crash(&holed, Some(&holed), 1 << 20);
        assert!(s.damaged.is_none() && s.records.is_empty(), "{s:?}");
        assert_eq!(s.torn.map(|t| t.0), Some(HEADER_BYTES));
        // A record claiming to follow anything else is not the segment's first batch.
        let mut queued = Vec::new();
        for lsn in 1..=3 {
            encode_record(lsn, KIND_PUT, "x", &[b'x'; 3000], &mut queued);
        }
        let mut other = header(1, 1).to_vec();
        other.extend_from_slice(&codec::mark_batch(&queued, 5).unwrap().bytes);
        other.resize(other.len() + 4096, 0);
        other[HEADER_BYTES as usize..4096].fill(0);
        assert!(scan_after_crash(&other, None, 1 << 20).damaged.is_some());
    }

    /// Offsets of each record of `seg(n)`.
    fn offsets(b: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = HEADER_BYTES as usize;
        while let Decoded::Ok(_, n) = decode_record(&b[pos..], 1 << 20) {
            out.push(pos);
            pos += n;
        }
        out
    }

    #[test]
    fn a_misdirected_copy_of_valid_records_is_not_taken_for_the_log() {
        // Records of different lengths, so the copied ones straddle the true boundaries.
        let mut full = header(1, 1).to_vec();
        for lsn in 1..=12u64 {
            let doc = vec![b'x'; 10 + (lsn as usize * 7) % 23];
            encode_record(lsn, KIND_PUT, &format!("id{lsn}"), &doc, &mut full);
        }
        let at = offsets(&full);
        // Records 8.. copied over records 2.. in the main copy: valid records with later LSNs at record 2's offset.
        let mut main = full.clone();
        let len = at[5] - at[1];
        let src = at[7];
        let copy = main[src..src + len].to_vec();
        main[at[1]..at[1] + len].copy_from_slice(&copy);
        assert!(
            matches!(decode_record(&main[at[1]..], 1 << 20), Decoded::Ok(ref r, _) if r.lsn == 8)
        );

        let s = scan(&main, Some(&full), 1 << 20);
        let lsns: Vec<u64> = s.records.iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, (1..=12).collect::<Vec<_>>(), "{s:?}");
        assert_eq!(s.good, full);
        assert!(!s.from_mirror.is_empty());
        assert!(!s.mirror_damaged && s.damaged.is_none() && s.torn.is_none());

        // The same damage in the mirror, the main copy intact: the main copy's records are taken.
        let s = scan(&full, Some(&main), 1 << 20);
        assert_eq!(s.good, full);
        assert!(s.mirror_damaged && s.from_mirror.is_empty());

        // With no mirror the loss of records 2 to 7 cannot be undone, but it is reported as damage (the true
        // record after the copy is out of order), never passed off as the log's end.
        let s = scan(&main, None, 1 << 20);
        assert!(s.damaged.is_some(), "{s:?}");
    }
}
