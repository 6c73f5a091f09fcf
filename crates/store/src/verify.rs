//! Read-only checks of the store's files that need no lock held while they read: an immutable file's own structure
//! ([`file_content`]), and the open segment compared with its mirror record by record. The store hands over duplicated descriptors taken under its WAL lock
//! ([`SegmentView`]); commits go on meanwhile (the files only grow, and only bytes below the view's length are read).

use std::path::Path;

use crate::codec;
use crate::error::StoreError;
use crate::error::loc;
use crate::io::{self, IoFaults};
use crate::layout::{ImmutableFile, SNAP_ID_BIT};
use crate::snapshot;
use crate::store::{SegmentDamage, same_file};
use crate::wal;

/// The open segment as of one moment: its identity, durable length and last LSN, and descriptors of both copies.
pub(crate) struct SegmentView {
    pub(crate) id: u64,
    pub(crate) first_lsn: u64,
    pub(crate) len: u64,
    pub(crate) last_lsn: u64,
    pub(crate) main: std::fs::File,
    pub(crate) mirror: Option<std::fs::File>,
}

/// Compares the open segment with its mirror from `from` (a record boundary, an earlier durable end) to the view's
/// length; see [`crate::Store::verify_open_segment`]. Only the header and `from..len` are read, unless a run damaged
/// in both copies needs the LSN of the record before it: then both copies are read again from the header.
pub(crate) fn open_segment_damage(
    dir: &Path,
    faults: &IoFaults,
    v: &SegmentView,
    from: u64,
    record_bytes_max: u64,
) -> Result<Vec<SegmentDamage>, StoreError> {
    let start = if from >= wal::HEADER_BYTES && from <= v.len {
        from
    } else {
        wal::HEADER_BYTES
    };
    let mut c = Compare {
        dir,
        faults,
        v,
        from,
        record_bytes_max,
        seg_rel: wal::seg_name(v.id),
        mir_rel: wal::mirror_name(v.id),
        main: Vec::new(),
        mirror: None,
        out: Vec::new(),
    };
    c.read_from(start)?;
    c.check_header();
    c.records(start)?;
    Ok(c.out)
}

/// One comparison in progress: both copies' bytes as read, and the damage found so far.
struct Compare<'a> {
    dir: &'a Path,
    faults: &'a IoFaults,
    v: &'a SegmentView,
    from: u64,
    record_bytes_max: u64,
    seg_rel: String,
    mir_rel: String,
    main: Vec<u8>,
    mirror: Option<Vec<u8>>,
    out: Vec<SegmentDamage>,
}

impl Compare<'_> {
    /// Reads the header and `start..len` of both copies. A path that no longer leads to the file we append to
    /// (deleted, replaced, a link) reads as empty: all damaged. One that does is read through our own descriptor (the
    /// same file; no new descriptor needed). A read failing for lack of a resource is an error, never damage.
    fn read_from(&mut self, start: u64) -> Result<(), StoreError> {
        let read = |rel: &str, f: &std::fs::File| -> Result<Vec<u8>, StoreError> {
            let mut b = vec![0u8; self.v.len as usize];
            if !same_file(&self.dir.join(rel), f) {
                return Ok(Vec::new());
            }
            let h = wal::HEADER_BYTES as usize;
            let r = io::read_exact_at(self.faults, f, &mut b[..h], 0)
                .and_then(|()| io::read_exact_at(self.faults, f, &mut b[start as usize..], start));
            match r {
                Ok(()) => Ok(b),
                Err(e) if io::is_resource(&e) => Err(StoreError::io(format!("reading {rel}"), e)),
                Err(_) => Ok(Vec::new()),
            }
        };
        self.main = read(&self.seg_rel, &self.v.main)?;
        self.mirror = match &self.v.mirror {
            Some(f) => Some(read(&self.mir_rel, f)?),
            None => None,
        };
        Ok(())
    }

    fn check_header(&mut self) {
        if wal::check_header(&self.main, self.v.id).is_err() {
            self.out.push(SegmentDamage {
                file: self.seg_rel.clone(),
                offset: 0,
                len: wal::HEADER_BYTES,
                main: true,
                both: false,
                lsn_range: None,
            });
        }
    }

    /// The record at `pos` of one copy (the main one, or the mirror) when it verifies, with its length.
    fn decode(&self, mirror: bool, pos: usize) -> Option<(codec::Record, usize)> {
        let c = if mirror {
            self.mirror.as_ref()?
        } else {
            &self.main
        };
        match codec::decode_record(
            c.get(pos..(self.v.len as usize).min(c.len()))
                .unwrap_or(&[]),
            self.record_bytes_max,
        ) {
            codec::Decoded::Ok(r, n) => Some((r, n)),
            _ => None,
        }
    }

    /// Walks the records from `start`, noting each damaged in one copy and each run damaged in both.
    fn records(&mut self, start: u64) -> Result<(), StoreError> {
        let mut pos = start as usize;
        // The LSN of the last record that verified before `pos` (unknown when the scan started past the header).
        let mut prev: Option<u64> =
            (start == wal::HEADER_BYTES).then(|| self.v.first_lsn.saturating_sub(1));
        let mut reread = false;
        while (pos as u64) < self.v.len {
            let m = self.decode(false, pos);
            let mi = self.decode(true, pos);
            match (&m, &mi) {
                (Some((r, n)), _) | (None, Some((r, n))) => {
                    let (lsn, n) = (r.lsn, *n);
                    let mirror_differs = match (&m, &mi) {
                        (_, None) => true,
                        (Some((_, a)), Some((_, b))) => a != b,
                        (None, Some(_)) => false,
                    };
                    self.one_copy(pos, n, lsn, m.is_none(), mirror_differs);
                    prev = Some(lsn);
                    pos += n;
                }
                (None, None) => {
                    let Some(before) = prev else {
                        // The LSN before the run is known only from the header on: read both copies again.
                        if reread {
                            break;
                        }
                        reread = true;
                        self.read_from(wal::HEADER_BYTES)?;
                        pos = wal::HEADER_BYTES as usize;
                        prev = Some(self.v.first_lsn.saturating_sub(1));
                        continue;
                    };
                    let (end, last) = self.both_copies(pos, before);
                    prev = Some(last);
                    pos = end;
                }
            }
        }
        Ok(())
    }

    /// A record at `pos` (`n` bytes, LSN `lsn`) that verifies in at least one copy: the copy where it does not, or
    /// where the mirror's differs, is damaged (only past `from`).
    fn one_copy(&mut self, pos: usize, n: usize, lsn: u64, main_bad: bool, mirror_differs: bool) {
        if pos as u64 + n as u64 <= self.from {
            return;
        }
        let at = |main: bool| SegmentDamage {
            file: if main {
                self.seg_rel.clone()
            } else {
                self.mir_rel.clone()
            },
            offset: pos as u64,
            len: n as u64,
            main,
            both: false,
            lsn_range: Some((lsn, lsn)),
        };
        let mut found = Vec::new();
        if main_bad {
            found.push(at(true));
        }
        if self.mirror.is_some() && mirror_differs {
            found.push(at(false));
        }
        self.out.extend(found);
    }

    /// No copy holds the record at `pos`. Its LSN lies between its intact neighbours: the previous record (LSN
    /// `before`) and the next one that verifies in either copy; without a later one, the run reaches the durable end
    /// and its last LSN. Returns where the run ends and its last LSN.
    fn both_copies(&mut self, pos: usize, before: u64) -> (usize, u64) {
        let len = self.v.len as usize;
        let next = (pos + 1..len).find_map(|p| {
            [self.decode(false, p), self.decode(true, p)]
                .into_iter()
                .flatten()
                .find(|(r, _)| r.lsn > before)
                .map(|(r, _)| (p, r.lsn))
        });
        let (end, lsns) = match next {
            Some((p, lsn)) => (p, (before + 1, (lsn - 1).max(before + 1))),
            None => (len, (before + 1, self.v.last_lsn.max(before + 1))),
        };
        if end as u64 > self.from {
            let files = std::iter::once((self.seg_rel.clone(), true))
                .chain(self.mirror.as_ref().map(|_| (self.mir_rel.clone(), false)));
            let found: Vec<SegmentDamage> = files
                .map(|(file, main)| SegmentDamage {
                    file,
                    offset: pos as u64,
                    len: (end - pos) as u64,
                    main,
                    both: true,
                    lsn_range: Some(lsns),
                })
                .collect();
            self.out.extend(found);
        }
        (end, lsns.1)
    }
}

/// Checks a file's own structure (record or entry checksums) without the sidecar.
pub(crate) fn file_content(
    record_bytes_max: u64,
    f: &ImmutableFile,
    data: &[u8],
) -> Result<(), StoreError> {
    if f.file_id & SNAP_ID_BIT != 0 {
        snapshot::decode(data)
            .map(|_| ())
            .map_err(|(off, e)| StoreError::corrupt(format!("{}: {e}", f.rel), loc(&f.rel, off, 0)))
    } else {
        wal::check_header(data, f.file_id).map_err(|e| {
            StoreError::corrupt(format!("{}: {e}", f.rel), loc(&f.rel, 0, wal::HEADER_BYTES))
        })?;
        let s = wal::scan(data, None, record_bytes_max);
        if s.valid_end != f.len || data.len() as u64 != f.len {
            return Err(StoreError::corrupt(
                format!(
                    "{}: valid records end at {} of {} bytes",
                    f.rel, s.valid_end, f.len
                ),
                loc(&f.rel, s.valid_end, f.len.saturating_sub(s.valid_end)),
            ));
        }
        Ok(())
    }
}
