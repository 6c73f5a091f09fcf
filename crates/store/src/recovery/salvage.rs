//! Reading what redundancy can still save: immutable files (snapshots, sealed segments) verified against their
//! parity sidecars with damaged blocks rebuilt in memory, and the open segment's records salvaged around damage that
//! both copies share — each loss named by file, offset and LSN range. Used by recovery on open and by the store's
//! verify operations; nothing here writes a file.

use std::path::Path;

use heal::{Issue, IssueKind, Location};

use crate::codec;
use crate::error::{StoreError, loc};
use crate::io;
use crate::issues::Code;
use crate::manifest::SegmentEntry;
use crate::parity;
use crate::store::{ImmutableFile, LostRange, RecoveryReport, issue};
use crate::wal;

/// Reads a data file for recovery on open and for free functions without the store's fault hooks (never through a
/// link; resource errors retried, see [`io::read_file`]).
pub(crate) fn read_data(path: &Path) -> std::io::Result<Vec<u8>> {
    static NO_FAULTS: std::sync::OnceLock<io::IoFaults> = std::sync::OnceLock::new();
    io::read_file(NO_FAULTS.get_or_init(io::IoFaults::new), path)
}

/// An immutable file as read: its verified bytes, or what is left when redundancy cannot undo the damage.
pub(crate) enum Loaded {
    /// Verified (blocks rebuilt from parity where needed), or without a usable sidecar to be checked by structure.
    Ok(Vec<u8>),
    /// The file cannot be read at all.
    Missing(String),
    /// The file or its sidecar could not be read for lack of a resource (no descriptor, no memory): nothing is known
    /// about it — never a loss; the caller fails (and is retried later).
    Unavailable(StoreError),
    /// More blocks damaged than parity rebuilds: the bytes before `valid_to` (the first damaged block) verify.
    Beyond {
        data: Vec<u8>,
        valid_to: u64,
        why: String,
    },
}

/// Reads an immutable file and verifies it against its sidecar, rebuilding damaged blocks in memory; the caller
/// decides what damage beyond parity means.
pub(crate) fn load_immutable(
    dir: &Path,
    f: &ImmutableFile,
    expected_len: Option<u64>,
    report: &mut RecoveryReport,
    issues: &mut Vec<Issue>,
) -> Result<Vec<u8>, StoreError> {
    match load_immutable_salvage(dir, f, expected_len, report, issues) {
        Loaded::Ok(d) => Ok(d),
        Loaded::Unavailable(e) => Err(e),
        Loaded::Missing(why) => Err(StoreError::corrupt(
            format!(
                "{} {why}: the records it held (LSN {}..={}) are lost",
                f.rel, f.lsn_range.0, f.lsn_range.1
            ),
            Location {
                file: Some(f.rel.clone()),
                lsn_range: Some(f.lsn_range),
                ..Location::default()
            },
        )),
        Loaded::Beyond { valid_to, why, .. } => Err(StoreError::corrupt(
            format!("{}: {why}", f.rel),
            Location {
                lsn_range: Some(f.lsn_range),
                ..loc(&f.rel, valid_to, f.len.saturating_sub(valid_to))
            },
        )),
    }
}

/// Reads an immutable file and verifies it against its sidecar, rebuilding damaged blocks in memory. Each rebuilt
/// block is recorded and becomes a queued `block_checksum` issue (the on-disk copy is repaired by the engine). A
/// missing or damaged sidecar is an issue too, if the data verifies on its own structure.
pub(crate) fn load_immutable_salvage(
    dir: &Path,
    f: &ImmutableFile,
    expected_len: Option<u64>,
    report: &mut RecoveryReport,
    issues: &mut Vec<Issue>,
) -> Loaded {
    let mut data = match read_data(&dir.join(&f.rel)) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Loaded::Missing("is missing".into());
        }
        Err(e) if io::is_resource(&e) => {
            return Loaded::Unavailable(StoreError::io(format!("reading {}", f.rel), e));
        }
        Err(e) => return Loaded::Missing(format!("cannot be read ({})", io::reason(&e))),
    };
    let sc = match read_data(&dir.join(&f.par_rel)) {
        Err(e) if io::is_resource(&e) => {
            return Loaded::Unavailable(StoreError::io(format!("reading {}", f.par_rel), e));
        }
        r => r,
    };
    let sc = sc
        .map_err(|e| io::reason(&e))
        .and_then(|b| parity::parse(&b));
    match sc {
        Ok(sc) if sc.file_id == f.file_id && expected_len.is_none_or(|l| l == sc.data_len) => {
            let bad = parity::bad_blocks(&data, &sc);
            if !bad.is_empty() || data.len() as u64 > sc.data_len {
                let bs = sc.params.block_bytes as u64;
                if let Err(e) = parity::rebuild(&mut data, &sc, &bad) {
                    let valid_to = bad.first().map_or(sc.data_len, |b| *b as u64 * bs);
                    return Loaded::Beyond {
                        data,
                        valid_to: valid_to.min(sc.data_len),
                        why: format!("{} damaged block(s) {bad:?} of {bs} bytes: {e}", bad.len()),
                    };
                }
                data.truncate(sc.data_len as usize);
                for b in &bad {
                    report.blocks_rebuilt.push((f.rel.clone(), *b as u64));
                }
                let first = bad.first().copied().unwrap_or(0) as u64;
                issues.push(
                    issue(
                        IssueKind::Integrity,
                        Code::BlockChecksum,
                        &f.rel,
                        format!(
                            "{} damaged block(s) {bad:?} in {}; rebuilt in memory from parity, disk copy needs repair",
                            bad.len(),
                            f.rel
                        ),
                        "store.read",
                    )
                    .at(Location {
                        lsn_range: Some(f.lsn_range),
                        ..loc(&f.rel, first * bs, bs)
                    })
                    .data_at_risk()
                    .evidence("blocks", format!("{bad:?}"))
                    .evidence("block_bytes", bs.to_string()),
                );
            }
            Loaded::Ok(data)
        }
        other => {
            let why = match other {
                Ok(sc) => format!(
                    "sidecar describes file id {} / {} bytes",
                    sc.file_id, sc.data_len
                ),
                Err(e) => e,
            };
            issues.push(
                issue(
                    IssueKind::Integrity,
                    Code::ParityDamaged,
                    &f.par_rel,
                    format!(
                        "parity sidecar {} is unusable ({why}); {} is unprotected",
                        f.par_rel, f.rel
                    ),
                    "store.read",
                )
                .at(Location {
                    file: Some(f.par_rel.clone()),
                    ..Location::default()
                })
                .data_at_risk()
                .evidence("reason", why),
            );
            // Without parity the file must verify on its own (record / entry checksums); callers parse it next.
            Loaded::Ok(data)
        }
    }
}

/// Replays a sealed segment whose LSNs end at `end_lsn`: every record that verifies, and, if redundancy cannot undo
/// its damage, the [`LostRange`] from the first record that does not verify to the segment's end. Fails when the
/// segment cannot be read for lack of a resource (that is no loss).
pub(crate) fn salvage_sealed(
    dir: &Path,
    se: &SegmentEntry,
    end_lsn: u64,
    record_bytes_max: u64,
    report: &mut RecoveryReport,
    issues: &mut Vec<Issue>,
) -> Result<(Vec<codec::Record>, Option<LostRange>), StoreError> {
    let rel = wal::seg_name(se.id);
    let f = ImmutableFile {
        rel: rel.clone(),
        par_rel: wal::par_name(se.id),
        file_id: se.id,
        len: se.sealed_len,
        lsn_range: (se.first_lsn, end_lsn),
    };
    let lost = |offset: Option<u64>, from: u64, reason: String| LostRange {
        file: rel.clone(),
        offset,
        lsn_range: (from, end_lsn.max(from)),
        reason,
        ids: None,
    };
    let (data, valid_to, why) =
        match load_immutable_salvage(dir, &f, Some(se.sealed_len), report, issues) {
            Loaded::Ok(d) => (d, se.sealed_len, None),
            Loaded::Unavailable(e) => return Err(e),
            Loaded::Missing(why) => {
                return Ok((
                    Vec::new(),
                    Some(lost(None, se.first_lsn, format!("{rel} {why}"))),
                ));
            }
            Loaded::Beyond {
                data,
                valid_to,
                why,
            } => (data, valid_to, Some(why)),
        };
    let data = &data[..(valid_to as usize).min(data.len())];
    if let Err(e) = wal::check_header(data, se.id) {
        let reason = why.unwrap_or(e);
        return Ok((Vec::new(), Some(lost(Some(0), se.first_lsn, reason))));
    }
    let s = wal::scan(data, None, record_bytes_max);
    if s.valid_end == se.sealed_len {
        return Ok((s.records, None));
    }
    let from = s.records.last().map_or(se.first_lsn, |r| r.lsn + 1);
    let reason = why.unwrap_or_else(|| {
        format!(
            "valid records end at offset {} of {} bytes",
            s.valid_end, se.sealed_len
        )
    });
    Ok((s.records, Some(lost(Some(s.valid_end), from, reason))))
}

/// What [`salvage_open`] recovered after mid-log damage in both copies of the open segment.
pub(crate) struct SalvagedOpen {
    /// Records that verify after the damage, in order.
    pub(crate) records: Vec<codec::Record>,
    /// One per damaged stretch.
    pub(crate) lost: Vec<LostRange>,
    /// A torn tail at the very end: `(offset, len, reason)`.
    pub(crate) torn: Option<(u64, u64, String)>,
}

/// Issues for the records (and header) of the open segment's mirror that differ from the good bytes found on open,
/// each located by offset, record length and LSN. (Bytes past the good end are a torn tail, reported as such.)
pub(crate) fn mirror_differences(
    good: &[u8],
    mirror: &[u8],
    rel: &str,
    record_bytes_max: u64,
    read_only: bool,
) -> Vec<Issue> {
    let mut out = Vec::new();
    let h = wal::HEADER_BYTES as usize;
    let damaged = |what: String, at: Location| {
        issue(
            IssueKind::Integrity,
            Code::MirrorDamaged,
            rel,
            if read_only {
                format!(
                    "{what} of {rel} is damaged; the main copy verifies (opened read-only: left as found)"
                )
            } else {
                format!("{what} of {rel} was damaged; rewritten from the main copy on open")
            },
            "store.open",
        )
        .at(at)
    };
    if mirror.get(..h) != good.get(..h) {
        out.push(damaged("the header".into(), loc(rel, 0, wal::HEADER_BYTES)));
    }
    let mut pos = h;
    while let codec::Decoded::Ok(r, n) =
        codec::decode_record(good.get(pos..).unwrap_or(&[]), record_bytes_max)
    {
        if mirror.get(pos..pos + n) != good.get(pos..pos + n) {
            out.push(damaged(
                format!("record at offset {pos} (LSN {})", r.lsn),
                Location {
                    lsn_range: Some((r.lsn, r.lsn)),
                    ..loc(rel, pos as u64, n as u64)
                },
            ));
        }
        pos += n;
    }
    out
}

/// The LSNs a torn tail at `off` may carry (see [`wal::torn_lsns`]), read from the longer copy (the one that holds
/// the torn bytes).
pub(crate) fn torn_tail_lsns(
    main: &[u8],
    mirror: Option<&[u8]>,
    off: u64,
    last: u64,
    record_bytes_max: u64,
) -> (u64, u64) {
    let copy = match mirror {
        Some(m) if m.len() > main.len() => m,
        _ => main,
    };
    wal::torn_lsns(
        copy.get(off as usize..).unwrap_or(&[]),
        last,
        record_bytes_max,
    )
}

/// The open segment after mid-log damage in both copies at `damaged_at`: finds where valid records resume (in
/// either copy), replays them, and repeats past any further damage. Returns the records after the damage, a
/// [`LostRange`] per damaged stretch, and a torn tail at the very end if any. `last` is the last LSN before the
/// damage.
pub(crate) fn salvage_open(
    main: &[u8],
    mirror: Option<&[u8]>,
    rel: &str,
    (mut damaged_at, mut why): (u64, String),
    mut last: u64,
    record_bytes_max: u64,
) -> SalvagedOpen {
    let h = wal::HEADER_BYTES as usize;
    let mut records = Vec::new();
    let mut lost = Vec::new();
    loop {
        let start = damaged_at as usize;
        let resume = |copy: &[u8]| {
            (start + 1..copy.len()).find_map(|p| {
                match codec::decode_record(&copy[p..], record_bytes_max) {
                    codec::Decoded::Ok(r, _) if r.lsn > last => Some((p, r.lsn)),
                    _ => None,
                }
            })
        };
        let found = std::iter::once(main)
            .chain(mirror)
            .filter_map(resume)
            .min_by_key(|(p, _)| *p);
        let reason = format!("records damaged in both {rel} and its mirror: {why}");
        let Some((p, lsn)) = found else {
            lost.push(LostRange {
                file: rel.to_string(),
                offset: Some(damaged_at),
                lsn_range: (last + 1, last + 1),
                reason,
                ids: None,
            });
            return SalvagedOpen {
                records,
                lost,
                torn: None,
            };
        };
        lost.push(LostRange {
            file: rel.to_string(),
            offset: Some(damaged_at),
            lsn_range: (last + 1, (lsn - 1).max(last + 1)),
            reason,
            ids: None,
        });
        // Rescan both copies from `p` as if it followed the header, so the mirror still stands in for the main copy.
        let from = |c: &[u8]| {
            let mut v = c[..h.min(c.len())].to_vec();
            if c.len() > p {
                v.extend_from_slice(&c[p..]);
            }
            v
        };
        let shift = (p - h) as u64;
        let m2 = from(main);
        let mi2 = mirror.map(from);
        let s = wal::scan(&m2, mi2.as_deref(), record_bytes_max);
        records.extend(s.records);
        last = records.last().map_or(last, |r| r.lsn);
        match s.damaged {
            Some((o, w)) => {
                damaged_at = o + shift;
                why = w;
            }
            None => {
                let torn = s.torn.map(|(o, l, w)| (o + shift, l, w));
                return SalvagedOpen {
                    records,
                    lost,
                    torn,
                };
            }
        }
    }
}
