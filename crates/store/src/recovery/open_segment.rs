//! Recovery of the open segment: its main copy and mirror read and compared record by record (a missing or damaged
//! header or record taken from whichever copy verifies), a torn tail cut, acknowledged records damaged in both copies
//! salvaged around and named as lost (both files then left exactly as found), and the segment reopened for appends —
//! or, opening read-only, for reading only, nothing rewritten.

use heal::{IssueKind, Location};

use super::Opening;
use super::salvage::{SalvagedOpen, mirror_differences, salvage_open, torn_tail_lsns};
use crate::codec::{self, Record};
use crate::error::{StoreError, loc};
use crate::identity;
use crate::io;
use crate::issues::Code;
use crate::manifest::SegmentEntry;
use crate::store::{LostRange, TornTail, ioe, issue};
use crate::wal::{self, OpenSegment};

/// The open segment's two copies as read, the header taken from the mirror where the main copy's is damaged.
struct Copies {
    main: Vec<u8>,
    mirror: Option<Vec<u8>>,
    /// Mirroring is on and the mirror could not be read.
    mirror_missing: bool,
    /// The main copy's header failed and the mirror's was taken.
    header_from_mirror: bool,
}

impl Opening<'_> {
    /// The open segment `se` ready for appends and the records it holds in LSN order; `last_lsn` is the last LSN
    /// before it, and records damaged in both copies are added to `lost`.
    pub(super) fn open_segment(
        &mut self,
        se: &SegmentEntry,
        last_lsn: u64,
        lost: &mut Vec<LostRange>,
    ) -> Result<(OpenSegment, Vec<Record>), StoreError> {
        let c = self.read_copies(se)?;
        let journaled = self.journaled(se)?;
        let mut s = wal::scan_after_crash_journaled(
            &c.main,
            c.mirror.as_deref(),
            self.record_bytes_max,
            journaled,
        );
        // Before the segment: the last LSN of an earlier file, or (an empty segment) the one below its first.
        let before_seg = last_lsn.max(se.first_lsn.saturating_sub(1));
        let last = s.records.last().map_or(before_seg, |r| r.lsn);
        // The journal lists records past every one that verified: they were durable, so what the crash rules would
        // cut (or the zeros where they were) is damage.
        let listed = journaled.filter(|&l| l > last);
        if let Some(listed) = listed {
            s = durable_tail_as_damage(s, &c, listed, self.record_bytes_max);
        }
        match s.damaged.take() {
            Some(damaged) => {
                let from = lost.len();
                let seg = self.open_degraded(se, &c, &mut s, damaged, before_seg, lost)?;
                if let Some(listed) = listed {
                    let after = s.records.last().map_or(before_seg, |r| r.lsn);
                    if listed > after {
                        // Durable up to `listed`: what follows the last record is lost, not a torn tail.
                        let torn = self.report.torn_tail.take();
                        lose_trailing(lost, from, &wal::seg_name(se.id), torn, after, listed);
                    }
                }
                Ok((seg, s.records))
            }
            None => {
                self.note_torn_tail(se, &c, &s, before_seg);
                let seg = self.restore_and_reopen(se, &c, &s)?;
                Ok((seg, s.records))
            }
        }
    }

    /// The highest LSN the open segment's identity journal lists in its leading run of intact frames (`None` when
    /// it is missing or lists nothing; a resource error, such as too many open files, fails the open as for the
    /// copies). A frame is appended only after its batch is durable, so every LSN it lists was acknowledged (or about
    /// to be).
    fn journaled(&self, se: &SegmentEntry) -> Result<Option<u64>, StoreError> {
        let rel = identity::name_for(&wal::seg_name(se.id));
        match io::read_file(&self.config.io, &self.dir.join(&rel)) {
            Ok(buf) => Ok(identity::highest_listed_leading(&buf)),
            Err(e) if io::is_resource(&e) => Err(StoreError::io(format!("reading {rel}"), e)),
            Err(_) => Ok(None),
        }
    }

    /// Reads both copies (a missing main copy, or a missing mirror, reported), the header from the mirror where the
    /// main copy's fails; a main copy unreadable with no mirror, or no intact header in either, fails the open.
    fn read_copies(&mut self, se: &SegmentEntry) -> Result<Copies, StoreError> {
        let rel = wal::seg_name(se.id);
        let mirror = if self.config.mirror_open_segment {
            let mir_rel = wal::mirror_name(se.id);
            match io::read_file(&self.config.io, &self.dir.join(&mir_rel)) {
                Ok(b) => Some(b),
                Err(e) if io::is_resource(&e) => {
                    return Err(StoreError::io(format!("reading {mir_rel}"), e));
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let mirror_missing = self.config.mirror_open_segment && mirror.is_none();
        let main = match io::read_file(&self.config.io, &self.dir.join(&rel)) {
            Ok(b) => b,
            Err(e) if io::is_resource(&e) => {
                return Err(StoreError::io(format!("reading {rel}"), e));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && mirror.is_some() => {
                self.issues.push(
                    issue(
                        IssueKind::Integrity,
                        Code::WalRecordDamaged,
                        &rel,
                        self.on_open(
                            &format!("{rel} was missing; rebuilt from its mirror on open"),
                            &format!("{rel} is missing; its mirror holds the records"),
                        ),
                        "store.open",
                    )
                    .at(Location {
                        file: Some(rel.clone()),
                        ..Location::default()
                    }),
                );
                Vec::new()
            }
            Err(e) => {
                return Err(StoreError::corrupt(
                    format!("open segment {rel} cannot be read ({e}) and has no mirror"),
                    Location {
                        file: Some(rel.clone()),
                        ..Location::default()
                    },
                ));
            }
        };
        if mirror_missing {
            self.issues.push(
                issue(
                    IssueKind::Integrity,
                    Code::MirrorDamaged,
                    &rel,
                    self.on_open(
                        &format!("mirror of {rel} was missing; rewritten on open"),
                        &format!("mirror of {rel} is missing"),
                    ),
                    "store.open",
                )
                .at(Location {
                    file: Some(wal::mirror_name(se.id)),
                    ..Location::default()
                }),
            );
        }
        let main_ok = wal::check_header(&main, se.id);
        let mir_ok = mirror.as_deref().map(|m| wal::check_header(m, se.id));
        let main = match (&main_ok, &mir_ok, &mirror) {
            (Err(_), Some(Ok(())), Some(m)) => {
                // Main header damaged, mirror intact: take the header from the mirror.
                let mut fixed = main.clone();
                let h = wal::HEADER_BYTES as usize;
                if fixed.len() < h {
                    fixed.resize(h, 0);
                }
                fixed[..h].copy_from_slice(&m[..h]);
                self.report.records_from_mirror += 1;
                fixed
            }
            (Err(e), _, _) => {
                return Err(StoreError::corrupt(
                    format!("open segment {rel}: {e}, and no intact mirror"),
                    loc(&rel, 0, wal::HEADER_BYTES),
                ));
            }
            _ => main,
        };
        Ok(Copies {
            header_from_mirror: main_ok.is_err(),
            main,
            mirror,
            mirror_missing,
        })
    }

    /// Acknowledged records damaged in both copies: keeps every record that verifies on either side of the damage
    /// (into `s.records`), records what is lost, and leaves both files exactly as they are (evidence, and what an
    /// operator restores from). Writes are refused until the loss is accepted, which compacts into a new segment.
    fn open_degraded(
        &mut self,
        se: &SegmentEntry,
        c: &Copies,
        s: &mut wal::Scan,
        damaged: (u64, String),
        before_seg: u64,
        lost: &mut Vec<LostRange>,
    ) -> Result<OpenSegment, StoreError> {
        let rel = wal::seg_name(se.id);
        // Acknowledged records damaged in both copies: keep every record that verifies on either side of
        // the damage, record what is lost, and leave both files exactly as they are (evidence, and what
        // an operator restores from). Writes are refused until the loss is accepted, which compacts
        // into a new segment.
        let before = s.records.last().map_or(before_seg, |r| r.lsn);
        let SalvagedOpen {
            records: more,
            lost: lost_here,
            torn,
        } = salvage_open(
            &c.main,
            c.mirror.as_deref(),
            &rel,
            damaged,
            before,
            self.record_bytes_max,
        );
        s.records.extend(more);
        lost.extend(lost_here);
        if let Some((off, len, why)) = torn {
            let last = s.records.last().map_or(before, |r| r.lsn);
            self.report.torn_tail = Some(TornTail {
                file: rel.clone(),
                offset: off,
                bytes: len,
                reason: format!("{why} (left in place: the store opened degraded)"),
                lsn_range: torn_tail_lsns(
                    &c.main,
                    c.mirror.as_deref(),
                    off,
                    last,
                    self.record_bytes_max,
                ),
            });
        }
        let open = |rel: &str, create: bool| {
            if self.read_only {
                io::open_read(&self.config.io, &self.dir.join(rel))
            } else {
                io::open_rw(&self.config.io, &self.dir.join(rel), create)
            }
        };
        let file = open(&rel, true).map_err(ioe(format!("opening {rel}")))?;
        let mirror_f = if self.config.mirror_open_segment {
            open(&wal::mirror_name(se.id), false).ok()
        } else {
            None
        };
        let len = c.main.len().max(c.mirror.as_ref().map_or(0, Vec::len)) as u64;
        let seg = OpenSegment {
            id: se.id,
            first_lsn: se.first_lsn,
            file,
            mirror: mirror_f,
            len,
            ahead: crate::ahead::Ahead::new(len),
            one_flush: false,
            batch_marks: wal::header_has_marks(&s.good),
            last_lsn: s.records.last().map_or(before, |r| r.lsn),
            ids: None,
        };
        Ok(seg)
    }

    /// A torn tail (a record never acknowledged, cut short by a crash): reported with its LSNs; cut by the reopen.
    fn note_torn_tail(&mut self, se: &SegmentEntry, c: &Copies, s: &wal::Scan, before_seg: u64) {
        let rel = wal::seg_name(se.id);
        if let Some((off, len, why)) = &s.torn {
            let last = s.records.last().map_or(before_seg, |r| r.lsn);
            let mut lsns = torn_tail_lsns(
                &c.main,
                c.mirror.as_deref(),
                *off,
                last,
                self.record_bytes_max,
            );
            // A torn batch past a hole: its records found past the hole name LSNs the header walk cannot reach.
            lsns.1 = lsns.1.max(s.torn_lsn_max.unwrap_or(0));
            self.report.torn_tail = Some(TornTail {
                file: rel.clone(),
                offset: *off,
                bytes: *len,
                reason: why.clone(),
                lsn_range: lsns,
            });
            self.issues.push(
            issue(
                IssueKind::Integrity,
                Code::TornTail,
                &rel,
                format!(
                    "torn tail of {len} bytes at offset {off} of {rel} (LSNs {}..={}) {} ({why}); \
                     never acknowledged",
                    lsns.0, lsns.1,
                    if self.read_only { "left in place (opened read-only)" } else { "cut on open" }
                ),
                "store.open",
            )
            .at(Location {
                lsn_range: Some(lsns),
                ..loc(&rel, *off, *len)
            })
            .with_score(0.3)
            .evidence("reason", why.clone()),
        );
        }
    }

    /// Records restored from the mirror (and a mirror that differs) reported, then the segment reopened: writable,
    /// main copy and mirror rewritten where damaged and the torn tail cut; read-only, descriptors for reading only.
    fn restore_and_reopen(
        &mut self,
        se: &SegmentEntry,
        c: &Copies,
        s: &wal::Scan,
    ) -> Result<OpenSegment, StoreError> {
        let rel = wal::seg_name(se.id);
        let mut rewrite_main = s.from_mirror.clone();
        if c.header_from_mirror {
            rewrite_main.push((0, wal::HEADER_BYTES));
        }
        self.report.records_from_mirror += s.from_mirror.len() as u64;
        self.report.mirror_rewritten = s.mirror_damaged || c.mirror_missing;
        if let (Some(m), false) = (&c.mirror, c.mirror_missing) {
            self.issues.extend(mirror_differences(
                &s.good,
                m,
                &wal::mirror_name(se.id),
                self.record_bytes_max,
                self.read_only,
            ));
        }
        for (off, len) in &s.from_mirror {
            // The good bytes hold the mirror's verified copy of the record: its LSN.
            let lsn = match codec::decode_record(
                s.good.get(*off as usize..).unwrap_or(&[]),
                self.record_bytes_max,
            ) {
                codec::Decoded::Ok(r, _) => Some((r.lsn, r.lsn)),
                _ => None,
            };
            self.issues.push(
                issue(
                    IssueKind::Integrity,
                    Code::WalRecordDamaged,
                    &rel,
                    format!(
                        "record at offset {off}{} of {rel} {}",
                        lsn.map_or(String::new(), |(l, _)| format!(" (LSN {l})")),
                        self.on_open(
                            "was damaged; restored from the mirror on open",
                            "is damaged; the mirror's copy verifies"
                        )
                    ),
                    "store.open",
                )
                .at(Location {
                    lsn_range: lsn,
                    ..loc(&rel, *off, *len)
                }),
            );
        }
        let seg = if self.read_only {
            // Descriptors for reading only (never written through): the main copy, or the mirror
            // where the main copy is missing.
            let mir_rel = wal::mirror_name(se.id);
            let file = io::open_read(&self.config.io, &self.dir.join(&rel))
                .or_else(|_| io::open_read(&self.config.io, &self.dir.join(&mir_rel)))
                .map_err(ioe(format!("opening {rel}")))?;
            OpenSegment {
                id: se.id,
                first_lsn: se.first_lsn,
                file,
                mirror: io::open_read(&self.config.io, &self.dir.join(&mir_rel)).ok(),
                len: s.good.len() as u64,
                ahead: crate::ahead::Ahead::new(s.good.len() as u64),
                one_flush: false,
                batch_marks: wal::header_has_marks(&s.good),
                last_lsn: s
                    .records
                    .last()
                    .map_or(se.first_lsn.saturating_sub(1), |r| r.lsn),
                ids: None,
            }
        } else {
            OpenSegment::reopen(
                &self.config.io,
                self.dir,
                se.id,
                se.first_lsn,
                &s.good,
                &rewrite_main,
                s.mirror_damaged || c.mirror_missing,
                self.config.mirror_open_segment,
            )
            .map_err(ioe(format!("reopening {rel}")))?
        };
        Ok(seg)
    }
}

/// Records the identity journal shows were durable up to LSN `listed`, missing from the log, as damage: the batch
/// rule's cut undone (the plain scan finds the records past the hole) or, with nothing valid past it, the torn tail
/// (or the zeros where the records were) itself the damage.
fn durable_tail_as_damage(
    mut s: wal::Scan,
    c: &Copies,
    listed: u64,
    record_bytes_max: u64,
) -> wal::Scan {
    if s.damaged.is_none() && s.torn_lsn_max.is_some() {
        let plain = wal::scan(&c.main, c.mirror.as_deref(), record_bytes_max);
        if plain.damaged.is_some() {
            s = plain;
        }
    }
    if s.damaged.is_none() {
        s.damaged = Some(match s.torn.take() {
            Some((off, _, why)) => (off, why),
            None => (
                s.valid_end,
                "no record past here in either copy".to_string(),
            ),
        });
        s.torn_lsn_max = None;
    }
    if let Some((_, why)) = &mut s.damaged {
        *why = format!(
            "{why}; the identity journal lists LSN {listed}, so it was durable: damage, not a torn tail"
        );
    }
    s
}

/// Records the identity journal lists up to `listed`, past the last one kept (`after`), as lost: the last loss found
/// in the open segment (those from `from` on in `lost`) extended when it lies past every kept record, else a loss of
/// its own at the torn tail salvage found (`torn`), if any.
fn lose_trailing(
    lost: &mut Vec<LostRange>,
    from: usize,
    file: &str,
    torn: Option<TornTail>,
    after: u64,
    listed: u64,
) {
    if let Some(l) = lost[from..].last_mut()
        && l.lsn_range.0 > after
    {
        l.lsn_range.1 = l.lsn_range.1.max(listed);
        return;
    }
    lost.push(LostRange {
        file: file.to_string(),
        offset: torn.as_ref().map(|t| t.offset),
        lsn_range: (after + 1, listed),
        reason: format!(
            "the identity journal lists LSNs up to {listed}, durable once, that no copy of {file} holds any more{}",
            torn.map_or(String::new(), |t| format!(" ({})", t.reason))
        ),
        ids: None,
    });
}
