//! [`StoreSubject`]: the store as the engine sees it — health checks in three tiers (quick, incremental, full
//! scrub), repair strategies (parity rebuild, manifest twin, mirror, torn tail, table reload, compaction, lock,
//! disk space), metric samples, and the issues the store found on its own.
//!
//! A store opened degraded (acknowledged records lost beyond every redundancy) is reported by the quick check and
//! the scrub on every run as `acknowledged_data_lost` (data at risk, file, offset and LSN range) until an operator
//! accepts the loss; no strategy repairs it, so it escalates, and compaction is not offered meanwhile (it would
//! drop the record of the loss).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use heal::check::CheckContext;
use heal::repair::{Backup, RepairReport};
use heal::{
    CheckOutcome, DataLoss, Estimate, HealthCheck, Issue, IssueKind, Location, RepairCost,
    RepairError, RepairStrategy, Sample, Subject, Tier, Timestamp,
};
use rand::{Rng, SeedableRng};

use crate::error::loc;
use crate::issues::Code;
use crate::lock::now_us;
use crate::parity;
use crate::store::{CopyState, FileKind, ImmutableFile, Store};
use crate::wal;

/// Repair backups kept at most under `backup/`; older ones are removed.
pub const BACKUPS_KEPT_MAX: usize = 4;

/// The store as a subject of the engine.
pub struct StoreSubject {
    store: Arc<Store>,
    verified: Arc<Mutex<HashSet<String>>>,
    /// Where the quick check's next window over the open segment starts: (segment id, offset).
    open_cursor: Arc<Mutex<(u64, u64)>>,
}

impl StoreSubject {
    /// Wraps a store.
    pub fn new(store: Arc<Store>) -> StoreSubject {
        StoreSubject {
            store,
            verified: Arc::new(Mutex::new(HashSet::new())),
            open_cursor: Arc::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

fn integrity(code: Code, resource: &str, summary: String, source: &str) -> Issue {
    Issue::new(
        IssueKind::Integrity,
        code,
        resource,
        summary,
        source,
        now_us(),
    )
}

/// Marks `issue` as putting acknowledged data at risk only when nothing else holds that data. While the store is
/// neither degraded nor poisoned, the verified in-memory table holds every acknowledged record and compaction can
/// write it out again, so damage to any file (even beyond its own redundancy) loses nothing: it is an integrity
/// problem to repair, never a CRISIS that stops writes.
fn at_risk_unless_table_holds(store: &Store, issue: Issue) -> Issue {
    if store.table_holds_every_record() {
        issue.evidence("held_by", "the verified in-memory table")
    } else {
        issue.data_at_risk()
    }
}

/// A store error for an environment issue's summary: `reading wal/...: too many open files`.
fn resource_reason(e: &crate::StoreError) -> String {
    match e {
        crate::StoreError::Io { source, context } => {
            format!("{context}: {}", crate::io::reason(source))
        }
        other => other.to_string(),
    }
}

/// An environment issue: a file could not be read or opened for lack of a resource of the process or machine
/// (descriptors, memory; `cannot read wal/...: too many open files`). Never damage and never data at risk: no
/// strategy repairs it, the engine watches it for `environment_grace_us` (it goes away once the resource is back),
/// then escalates.
fn environment(summary: String, file: Option<&str>, source: &str) -> Issue {
    Issue::new(
        IssueKind::Resource,
        Code::ResourceExhausted,
        "environment",
        summary,
        source,
        now_us(),
    )
    .at(Location {
        file: file.map(str::to_owned),
        ..Location::default()
    })
    .with_score(0.5)
}

/// Issues for every live data file whose path is a symbolic link, naming the link and its target. The store never
/// follows one (it reads and appends through its own descriptors, and creates files anew), so each is reported under
/// the code whose strategy writes a real file back in the link's place: the mirror or the open segment from its twin,
/// a manifest copy from its twin, a sidecar from its data, a snapshot or sealed segment by compaction from the
/// verified table. `LOCK` is checked (and written back) by the heartbeat.
fn link_issues(store: &Store, source: &str) -> Vec<Issue> {
    let (id, _) = store.open_segment();
    store
        .data_files()
        .into_iter()
        .filter(|f| f.kind != FileKind::Lock)
        .filter_map(|f| {
            let l = crate::io::link_at(&store.dir().join(&f.rel))?;
            let (code, resource) = match f.kind {
                FileKind::OpenSegment => (Code::WalRecordDamaged, wal::seg_name(id)),
                FileKind::Mirror => (Code::MirrorDamaged, wal::seg_name(id)),
                FileKind::Manifest => (Code::ManifestCopyDamaged, f.rel.clone()),
                FileKind::Parity => (Code::ParityDamaged, f.rel.clone()),
                _ => (Code::FileUnreadable, f.rel.clone()),
            };
            let target = l
                .target
                .as_ref()
                .map_or("(unreadable)".into(), |t| t.display().to_string());
            Some(
                integrity(
                    code,
                    &resource,
                    format!(
                        "{}: {l}; never written through, to be replaced by a real file",
                        f.rel
                    ),
                    source,
                )
                .at(Location {
                    file: Some(f.rel.clone()),
                    ..Location::default()
                })
                .evidence("symlink_target", target),
            )
        })
        .collect()
}

/// A repair's validation of the open segment: every record verifies in both copies.
fn open_segment_verifies(store: &Store) -> Result<(), RepairError> {
    let bad = store.verify_open_segment(0).map_err(to_repair_err)?;
    if bad.is_empty() {
        Ok(())
    } else {
        Err(RepairError::Validation(format!(
            "open segment still damaged at {bad:?}"
        )))
    }
}

fn outcome(name: &str, issues: Vec<Issue>, what: String) -> CheckOutcome {
    if issues.is_empty() {
        CheckOutcome::pass(format!("{name}: {what}"))
    } else {
        CheckOutcome::fail(
            format!("{name}: {} problem(s) in {what}", issues.len()),
            issues,
        )
    }
}

/// Issues for one verified immutable file.
fn file_issues(
    store: &Store,
    f: &ImmutableFile,
    v: &crate::store::FileVerdict,
    source: &str,
) -> Vec<Issue> {
    let mut out = Vec::new();
    if let Some(e) = &v.environment_error {
        out.push(environment(e.clone(), Some(&f.rel), source));
        return out;
    }
    if let Some(e) = &v.read_error {
        out.push(at_risk_unless_table_holds(
            store,
            integrity(
                Code::FileUnreadable,
                &f.rel,
                format!("{} cannot be read: {e}", f.rel),
                source,
            )
            .at(Location {
                file: Some(f.rel.clone()),
                lsn_range: Some(f.lsn_range),
                ..Location::default()
            }),
        ));
    }
    if let Some(e) = &v.sidecar_error {
        let data = match &v.content_damaged {
            None => format!("{} itself verifies", f.rel),
            Some(d) => format!("{} is damaged too: {d}", f.rel),
        };
        let mut i = integrity(
            Code::ParityDamaged,
            &f.par_rel,
            format!("sidecar {} is unusable: {e}; {data}", f.par_rel),
            source,
        )
        .at(Location {
            file: Some(f.par_rel.clone()),
            lsn_range: Some(f.lsn_range),
            ..Location::default()
        })
        .evidence("protects", f.rel.clone())
        .evidence("data_verifies", v.content_damaged.is_none().to_string());
        if v.content_damaged.is_some() {
            i = at_risk_unless_table_holds(store, i);
        }
        out.push(i);
    }
    if !v.bad_blocks.is_empty() {
        let bs = v.block_bytes;
        let first = v.bad_blocks[0] as u64;
        let mut i = integrity(
            Code::BlockChecksum,
            &f.rel,
            format!(
                "{} block(s) of {} fail their checksum ({}rebuildable from parity)",
                v.bad_blocks.len(),
                f.rel,
                if v.rebuildable { "" } else { "NOT " }
            ),
            source,
        )
        .at(Location {
            lsn_range: Some(f.lsn_range),
            ..loc(&f.rel, first * bs, bs)
        })
        .evidence("blocks", format!("{:?}", v.bad_blocks))
        .evidence("block_bytes", bs.to_string())
        .evidence("disk_len", v.disk_len.to_string())
        .evidence("expected_len", f.len.to_string());
        if !v.rebuildable {
            i = at_risk_unless_table_holds(store, i.evidence("rebuildable", "false"));
        }
        out.push(i);
        store.note_read_repair();
    }
    if !v.parity_mismatches.is_empty() {
        out.push(
            integrity(
                Code::ParityMismatch,
                &f.par_rel,
                format!(
                    "{} recovery block(s) of {} disagree with the data",
                    v.parity_mismatches.len(),
                    f.par_rel
                ),
                source,
            )
            .at(Location {
                file: Some(f.par_rel.clone()),
                ..Location::default()
            })
            .evidence("groups", format!("{:?}", v.parity_mismatches)),
        );
    }
    out
}

fn open_segment_issues(store: &Store, from: u64, source: &str) -> Vec<Issue> {
    let (id, len) = store.open_segment();
    let rel = wal::seg_name(id);
    let mut out = Vec::new();
    match store.verify_open_segment(from) {
        Err(e) if e.is_resource() => out.push(environment(
            format!("cannot check {rel}: {e}"),
            Some(&rel),
            source,
        )),
        Err(e) => out.push(at_risk_unless_table_holds(
            store,
            integrity(Code::FileUnreadable, &rel, format!("{rel}: {e}"), source).at(Location {
                file: Some(rel.clone()),
                ..Location::default()
            }),
        )),
        Ok(bad) => {
            for d in bad {
                let lsns = match d.lsn_range {
                    Some((a, b)) if a == b => format!(" (LSN {a})"),
                    Some((a, b)) => format!(" (LSNs {a}..={b})"),
                    None => String::new(),
                };
                let what = if d.offset == 0 && d.lsn_range.is_none() {
                    "header".to_string()
                } else if d.both {
                    format!("{} bytes of records", d.len)
                } else {
                    "record".to_string()
                };
                let mut i = integrity(
                    if d.main {
                        Code::WalRecordDamaged
                    } else {
                        Code::MirrorDamaged
                    },
                    &rel,
                    format!(
                        "{what} at offset {}{lsns} of {} fails its checksum{}",
                        d.offset,
                        d.file,
                        if d.both {
                            " in every copy"
                        } else {
                            "; the other copy holds it"
                        }
                    ),
                    source,
                )
                .at(Location {
                    lsn_range: d.lsn_range,
                    ..loc(&d.file, d.offset, d.len)
                })
                .evidence("segment_len", len.to_string());
                if d.both {
                    i = at_risk_unless_table_holds(store, i.evidence("both_copies", "true"));
                }
                out.push(i);
            }
        }
    }
    if let Some(i) = torn_tail_issue(store, source) {
        out.push(i);
    }
    out
}

/// The bytes past the open segment's durable end (a failed, never-acknowledged write), if any: file, offset, length
/// and the LSNs they may carry (above the last durable one).
fn torn_tail_issue(store: &Store, source: &str) -> Option<Issue> {
    let t = store.torn_tail_now()?;
    Some(
        integrity(
            Code::TornTail,
            &t.file,
            format!(
                "{} bytes past the last durable record of {} at offset {} (LSNs {}..={}: a failed, never \
                 acknowledged write)",
                t.bytes, t.file, t.offset, t.lsn_range.0, t.lsn_range.1
            ),
            source,
        )
        .at(Location {
            lsn_range: Some(t.lsn_range),
            ..loc(&t.file, t.offset, t.bytes)
        })
        .with_score(0.3)
        .evidence("reason", t.reason),
    )
}

fn space_issues(store: &Store, source: &str) -> Vec<Issue> {
    let cfg = store.config();
    let mut out = Vec::new();
    if let Some(free) = store.free_bytes()
        && free < cfg.disk_low_bytes_floor
    {
        let (code, floor, name) = if free < cfg.disk_critical_bytes_floor {
            (
                Code::DiskSpaceCritical,
                cfg.disk_critical_bytes_floor,
                "disk_critical_bytes_floor",
            )
        } else {
            (
                Code::DiskSpaceLow,
                cfg.disk_low_bytes_floor,
                "disk_low_bytes_floor",
            )
        };
        out.push(
            Issue::new(
                IssueKind::Resource,
                code,
                "disk",
                format!("{free} bytes free, below {name} = {floor}"),
                source,
                now_us(),
            )
            .with_score(1.0 - free as f64 / floor.max(1) as f64)
            .evidence("free_bytes", free.to_string())
            .evidence("wal_bytes", store.wal_bytes().to_string()),
        );
    }
    // The commit that crosses the bound compacts right after it (in the leader role), so the WAL may stand over
    // it for a moment by up to a segment: only beyond that slack has compaction fallen behind.
    if store.wal_bytes() > cfg.wal_bytes_max.saturating_add(cfg.segment_bytes_max) {
        out.push(
            Issue::new(
                IssueKind::ConstraintBreach,
                Code::WalOverBound,
                "wal",
                format!(
                    "WAL is {} bytes, over wal_bytes_max = {}",
                    store.wal_bytes(),
                    cfg.wal_bytes_max
                ),
                source,
                now_us(),
            )
            .with_score(0.5),
        );
    }
    if let Some(p) = store.stats().poisoned {
        out.push(
            Issue::new(
                IssueKind::OperationError,
                Code::StorePoisoned,
                "wal",
                p,
                source,
                now_us(),
            )
            .data_at_risk(),
        );
    }
    out
}

/// Quick check: headers, manifest copies, lock, space, and a random sample of blocks. Reads only the sampled blocks
/// and each sidecar's block table, so it stays fast on large stores.
struct QuickCheck {
    store: Arc<Store>,
    /// Where the next window over the open segment starts: (segment id, offset).
    open_cursor: Arc<Mutex<(u64, u64)>>,
}

impl QuickCheck {
    /// Compares the next window (`quick_check_open_segment_bytes`) of the open segment's durable bytes with its
    /// mirror, the window moving on each run and wrapping at the end, so every acknowledged byte of the open segment
    /// is compared within `len / window` runs (bytes below the durable length never change, so the two copies are
    /// equal byte for byte). A difference is located precisely by verifying the whole open segment, record by
    /// record, against the mirror (`wal_record_damaged` / `mirror_damaged`). Without a mirror nothing is sampled
    /// here (the deep and comprehensive tiers verify the records). Returns the bytes compared.
    fn sample_open_segment(&self, out: &mut Vec<Issue>) -> u64 {
        let s = &self.store;
        let window = s.config().quick_check_open_segment_bytes;
        let (id, len, main, mirror) = match s.open_segment_descriptors() {
            Ok((id, len, main, Some(mirror))) if window > 0 => (id, len, main, mirror),
            Ok(_) => return 0,
            Err(e) => {
                out.push(environment(
                    format!("cannot sample the open segment: {e}"),
                    None,
                    "store.quick",
                ));
                return 0;
            }
        };
        let from = {
            let c = self.open_cursor.lock().unwrap_or_else(|p| p.into_inner());
            if c.0 == id && c.1 >= wal::HEADER_BYTES && c.1 < len {
                c.1
            } else {
                wal::HEADER_BYTES
            }
        };
        let end = len.min(from.saturating_add(window));
        if end <= from {
            return 0;
        }
        let faults = &*s.config().io;
        let n = (end - from) as usize;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        let read = crate::io::read_exact_at(faults, &main, &mut a, from)
            .and_then(|()| crate::io::read_exact_at(faults, &mirror, &mut b, from));
        match read {
            Err(e) if crate::io::is_resource(&e) => {
                out.push(environment(
                    format!(
                        "cannot read {}: {}",
                        wal::seg_name(id),
                        crate::io::reason(&e)
                    ),
                    Some(&wal::seg_name(id)),
                    "store.quick",
                ));
                return 0;
            }
            // A short file or an unreadable byte differs from the other copy: located below.
            Err(_) => a.clear(),
            Ok(()) => {}
        }
        *self.open_cursor.lock().unwrap_or_else(|p| p.into_inner()) =
            (id, if end >= len { wal::HEADER_BYTES } else { end });
        if a != b {
            out.extend(open_segment_issues(s, 0, "store.quick"));
        }
        n as u64
    }

    fn sample_blocks(&self, out: &mut Vec<Issue>) -> u64 {
        let files = self.store.immutable_files();
        let total: u64 = files.iter().map(|f| self.store.n_blocks(f)).sum();
        if total == 0 {
            return 0;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(now_us());
        let n = (self.store.config().quick_check_sample_blocks as u64).min(total);
        let mut picks: Vec<u64> = if n == total {
            (0..total).collect()
        } else {
            (0..n).map(|_| rng.random_range(0..total)).collect()
        };
        picks.sort_unstable();
        picks.dedup();
        let dir: PathBuf = self.store.dir().to_path_buf();
        let mut base = 0;
        let mut checked = 0;
        for f in &files {
            let nb = self.store.n_blocks(f);
            let mine: Vec<usize> = picks
                .iter()
                .filter(|&&p| p >= base && p < base + nb)
                .map(|&p| (p - base) as usize)
                .collect();
            base += nb;
            if mine.is_empty() {
                continue;
            }
            let faults = &*self.store.config().io;
            let resource = |rel: &str, e: &std::io::Error| {
                crate::io::is_resource(e)
                    .then(|| format!("cannot read {rel}: {}", crate::io::reason(e)))
            };
            let table = (|| -> Result<parity::Sidecar, (String, Option<String>)> {
                let err = |e: std::io::Error| (e.to_string(), resource(&f.par_rel, &e));
                let par = crate::io::open_read(faults, &dir.join(&f.par_rel)).map_err(err)?;
                let mut head = vec![0u8; parity::HEADER_BYTES];
                crate::io::read_exact_at(faults, &par, &mut head, 0).map_err(err)?;
                let end = parity::table_end(&head).map_err(|e| (e, None))?;
                if end > 64 << 20 {
                    return Err(("sidecar block table over 64 MiB".into(), None));
                }
                let mut t = vec![0u8; end];
                crate::io::read_exact_at(faults, &par, &mut t, 0).map_err(err)?;
                parity::parse_table(&t).map_err(|e| (e, None))
            })();
            let sc = match table {
                Ok(sc) if sc.file_id == f.file_id => sc,
                Err((_, Some(env))) => {
                    out.push(environment(env, Some(&f.par_rel), "store.quick"));
                    continue;
                }
                Ok(_) | Err(_) => {
                    // Let the full verification describe it precisely.
                    let v = self.store.verify_file(f, Some(&mine), false);
                    out.extend(file_issues(&self.store, f, &v, "store.quick"));
                    continue;
                }
            };
            let data = match crate::io::open_read(faults, &dir.join(&f.rel)) {
                Ok(d) => d,
                Err(e) => {
                    if let Some(env) = resource(&f.rel, &e) {
                        out.push(environment(env, Some(&f.rel), "store.quick"));
                    } else {
                        let v = self.store.verify_file(f, Some(&mine), false);
                        out.extend(file_issues(&self.store, f, &v, "store.quick"));
                    }
                    continue;
                }
            };
            let bs = sc.params.block_bytes as u64;
            let mut bad = Vec::new();
            for &b in &mine {
                let start = b as u64 * bs;
                let len = (sc.data_len - start).min(bs) as usize;
                let mut buf = vec![0u8; len];
                let read = crate::io::read_exact_at(faults, &data, &mut buf, start);
                if let Err(e) = &read
                    && let Some(env) = resource(&f.rel, e)
                {
                    out.push(environment(env, Some(&f.rel), "store.quick"));
                    break;
                }
                let ok = read.is_ok()
                    && parity::block_crc(sc.file_id, b as u64, &buf, bs as usize)
                        == sc.block_crcs[b];
                checked += 1;
                if !ok {
                    bad.push(b);
                }
            }
            if !bad.is_empty() {
                let v = self.store.verify_file(f, None, false);
                out.extend(file_issues(&self.store, f, &v, "store.quick"));
            }
        }
        checked
    }
}

impl HealthCheck for QuickCheck {
    fn name(&self) -> &str {
        "store.quick"
    }
    fn tier(&self) -> Tier {
        Tier::Shallow
    }
    /// The quick tier, as named steps: the manifest copies, links planted at data files, the open segment's
    /// headers and tail, the lock's heartbeat, free space, losses, then samples of sealed blocks and of open-segment
    /// records against the mirror.
    fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
        let s = &self.store;
        let mut out = Vec::new();
        manifest_copy_issues(s, &mut out, "store.quick");
        out.extend(link_issues(s, "store.quick"));
        open_segment_header_issues(s, &mut out);
        if let Some(i) = torn_tail_issue(s, "store.quick") {
            out.push(i);
        }
        out.extend(lock_issues(s));
        out.extend(space_issues(s, "store.quick"));
        out.extend(s.lost().iter().map(|l| l.issue("store.quick")));
        let checked = self.sample_blocks(&mut out);
        let compared = self.sample_open_segment(&mut out);
        outcome(
            "store.quick",
            out,
            format!(
                "headers, manifest, lock, space, {checked} sampled blocks, {compared} open-segment bytes against \
                 the mirror"
            ),
        )
    }
}

/// The manifest copies: one the store could not finish writing for lack of a resource is written now; each copy
/// is current, damaged (an integrity issue) or unreadable for lack of a resource (an environment issue).
fn manifest_copy_issues(s: &Store, out: &mut Vec<Issue>, check: &str) {
    if let Some(Err(e)) = s.finish_manifest_copy() {
        out.push(environment(
            format!("cannot write a manifest copy: {}", resource_reason(&e)),
            None,
            check,
        ));
    }
    for (name, r) in s.manifest_copy_states() {
        match r {
            CopyState::Current => {}
            CopyState::Unavailable(e) => out.push(environment(e, Some(&name), check)),
            CopyState::Damaged(e) => out.push(
                integrity(
                    Code::ManifestCopyDamaged,
                    &name,
                    format!("{name}: {e}"),
                    check,
                )
                .at(Location {
                    file: Some(name.clone()),
                    ..Location::default()
                })
                .evidence("state", e),
            ),
        }
    }
}

/// The open segment's header in the main copy and the mirror (a link is left to `link_issues`).
fn open_segment_header_issues(s: &Store, out: &mut Vec<Issue>) {
    let (id, _) = s.open_segment();
    for (rel, code) in [
        (wal::seg_name(id), Code::WalRecordDamaged),
        (wal::mirror_name(id), Code::MirrorDamaged),
    ] {
        if rel.ends_with(".mir") && !s.config().mirror_open_segment {
            continue;
        }
        let path = s.dir().join(&rel);
        if crate::io::link_at(&path).is_some() {
            continue;
        }
        let faults = &*s.config().io;
        let mut h = vec![0u8; wal::HEADER_BYTES as usize];
        let r = crate::io::open_read(faults, &path)
            .and_then(|f| crate::io::read_exact_at(faults, &f, &mut h, 0));
        if let Err(e) = &r
            && crate::io::is_resource(e)
        {
            out.push(environment(
                format!("cannot read {rel}: {}", crate::io::reason(e)),
                Some(&rel),
                "store.quick",
            ));
            continue;
        }
        let r = r
            .map_err(|e| crate::io::reason(&e))
            .and_then(|()| wal::check_header(&h, id));
        if let Err(e) = r {
            out.push(
                integrity(
                    code,
                    &wal::seg_name(id),
                    format!("{rel} header: {e}"),
                    "store.quick",
                )
                .at(loc(&rel, 0, wal::HEADER_BYTES)),
            );
        }
    }
}

/// The heartbeat (the quick check runs every few seconds): LOCK must name this process, which must still hold its
/// directory. A LOCK removed, edited or replaced is written back at once and reported; a takeover, or a heartbeat
/// that cannot be confirmed, stops writes and is reported with its reason.
fn lock_issues(s: &Store) -> Option<Issue> {
    match s.check_lock() {
        Ok(crate::lock::LockCheck::Fresh) => None,
        Ok(crate::lock::LockCheck::Restored(found)) => Some(
            Issue::new(
                IssueKind::Resource,
                Code::LockFileDamaged,
                crate::lock::LOCK_FILE,
                format!("{found}; written back naming this process"),
                "store.quick",
                now_us(),
            )
            .with_score(0.3)
            .evidence("found", found),
        ),
        Err(crate::StoreError::NotSoleWriter(d)) => {
            Some(crate::store::writer_doubt_issue(&d, "store.quick"))
        }
        Err(e) => Some(
            Issue::new(
                IssueKind::Resource,
                Code::LockHeartbeatFailed,
                crate::lock::LOCK_FILE,
                format!("cannot refresh the LOCK heartbeat: {e}"),
                "store.quick",
                now_us(),
            )
            .with_score(0.3),
        ),
    }
}

/// Incremental check: files sealed since the last run, and the open segment's records written since the last run.
struct IncrementalCheck {
    store: Arc<Store>,
    verified: Arc<Mutex<HashSet<String>>>,
}

impl HealthCheck for IncrementalCheck {
    fn name(&self) -> &str {
        "store.incremental"
    }
    fn tier(&self) -> Tier {
        Tier::Deep
    }
    fn run(&self, ctx: &CheckContext<'_>) -> CheckOutcome {
        let s = &self.store;
        let mut out = Vec::new();
        let files = s.immutable_files();
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.retain(|r| files.iter().any(|f| &f.rel == r));
        let mut n = 0;
        for f in &files {
            if verified.contains(&f.rel) {
                continue;
            }
            if ctx.clock.now() > ctx.deadline {
                break;
            }
            let v = s.verify_file(f, None, false);
            if v.clean() {
                verified.insert(f.rel.clone());
            }
            out.extend(file_issues(s, f, &v, "store.incremental"));
            n += 1;
        }
        drop(verified);
        let (id, len) = s.open_segment();
        let from = {
            let mut mark = s.incremental_mark.lock().unwrap_or_else(|p| p.into_inner());
            let from = if mark.0 == id {
                mark.1
            } else {
                wal::HEADER_BYTES
            };
            *mark = (id, len, mark.2);
            from
        };
        out.extend(open_segment_issues(s, from, "store.incremental"));
        outcome(
            "store.incremental",
            out,
            format!(
                "{n} newly sealed file(s) and {} new WAL bytes",
                len - from.min(len)
            ),
        )
    }
}

/// Full scrub: every block and recovery block, both manifest copies, the whole open segment and its mirror, and
/// agreement of a fresh replay of the files with the live table.
struct ScrubCheck {
    store: Arc<Store>,
}

impl HealthCheck for ScrubCheck {
    fn name(&self) -> &str {
        "store.scrub"
    }
    fn tier(&self) -> Tier {
        Tier::Comprehensive
    }
    fn run(&self, _ctx: &CheckContext<'_>) -> CheckOutcome {
        let s = &self.store;
        let mut out = Vec::new();
        let files = s.immutable_files();
        let interrupted = |done: usize| {
            CheckOutcome::pass(format!(
                "store.scrub interrupted after {done} of {} files: the process is stopping",
                files.len()
            ))
        };
        for (i, f) in files.iter().enumerate() {
            if s.checks_interrupted() {
                return interrupted(i);
            }
            let v = s.verify_file(f, None, true);
            out.extend(file_issues(s, f, &v, "store.scrub"));
        }
        if s.checks_interrupted() {
            return interrupted(files.len());
        }
        manifest_copy_issues(s, &mut out, "store.scrub");
        out.extend(link_issues(s, "store.scrub"));
        out.extend(identity_issues(s, "store.scrub"));
        out.extend(open_segment_issues(s, 0, "store.scrub"));
        out.extend(s.lost().iter().map(|l| l.issue("store.scrub")));
        // Only compare with a replay when the files themselves are sound (otherwise the above says why).
        if out.is_empty() {
            match s.replay_agrees() {
                Ok(diff) if diff.is_empty() => {}
                Ok(diff) => out.push(
                    integrity(
                        Code::MemoryTableMismatch,
                        "table",
                        format!(
                            "{} document(s) in memory disagree with a replay of the log",
                            diff.len()
                        ),
                        "store.scrub",
                    )
                    .data_at_risk()
                    .evidence("ids", format!("{:?}", &diff[..diff.len().min(10)])),
                ),
                Err(e) if e.is_resource() => out.push(environment(
                    format!("cannot replay the files: {}", resource_reason(&e)),
                    None,
                    "store.scrub",
                )),
                Err(e) => out.push(
                    integrity(
                        Code::SnapshotLogDisagree,
                        "table",
                        format!("replaying the files failed: {e}"),
                        "store.scrub",
                    )
                    .data_at_risk(),
                ),
            }
        }
        out.extend(space_issues(s, "store.scrub"));
        outcome(
            "store.scrub",
            out,
            format!(
                "{} immutable file(s), manifest, open segment, replay",
                files.len()
            ),
        )
    }
}

/// One file of a repair's backup and where it goes back to, both relative to the data directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupFile {
    /// The copy in the backup (`backup/<tag>-<time>/wal__0001.seg`).
    pub copy: String,
    /// The store's file it was copied from (`wal/0001.seg`).
    pub restores: String,
}

/// The files a repair backup at `location` (as its `Backup::location` says, relative to `data_dir`) holds, and
/// where each goes back to; `None` when it is not a backup directory of the store or is gone (only the
/// [`BACKUPS_KEPT_MAX`] newest are kept). At most `files_max` are listed.
pub fn backup_files_of(
    data_dir: &Path,
    location: &str,
    files_max: usize,
) -> Option<Vec<BackupFile>> {
    let rel = Path::new(location);
    let ours = BACKUP_DIRS
        .iter()
        .any(|d| rel.parent() == Some(Path::new(d)))
        && rel.components().count() == 2;
    if !ours {
        return None;
    }
    let mut files: Vec<BackupFile> = std::fs::read_dir(data_dir.join(rel))
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            BackupFile {
                copy: format!("{location}/{name}"),
                restores: name.replace("__", "/"),
            }
        })
        .collect();
    files.sort_by(|a, b| a.copy.cmp(&b.copy));
    files.truncate(files_max);
    Some(files)
}

/// Saves files under `backup/<tag>-<time>/` for rollback.
/// Where repair backups go, and where they go when that directory cannot be used (`backup/` replaced by a file, made
/// immutable, ...): a repair's backup is the environment's to provide, and an unusable `backup/` must not keep a
/// repair that needs one from running.
const BACKUP_DIRS: [&str; 2] = ["backup", "backup-fallback"];

/// Saves files under `backup/<tag>-<time>/` (or `backup-fallback/...` when `backup/` cannot be used) for rollback.
fn backup_files(store: &Store, tag: &str, rels: &[String]) -> Result<Backup, RepairError> {
    let mut errors = Vec::new();
    for sub in BACKUP_DIRS {
        match backup_into(store, sub, tag, rels) {
            Ok(b) => return Ok(b),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(RepairError::Io(format!(
        "no backup directory could be used: {}",
        errors.join("; ")
    )))
}

fn backup_into(
    store: &Store,
    sub: &str,
    tag: &str,
    rels: &[String],
) -> Result<Backup, RepairError> {
    let root = store.dir().join(sub);
    let name = format!("{tag}-{}", now_us());
    let dir = root.join(&name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| RepairError::Io(format!("creating {}: {e}", dir.display())))?;
    let mut bytes = 0;
    for rel in rels {
        let src = store.dir().join(rel);
        // Nothing there, a link (never followed), or something else that is not a regular file (a directory or a
        // fifo put in a file's place): none holds the store's bytes, so there is nothing of it to keep. Copying it
        // would fail and block the repair that moves it out of the way.
        let regular = std::fs::symlink_metadata(&src).is_ok_and(|m| m.file_type().is_file());
        if !regular || crate::io::link_at(&src).is_some() {
            continue;
        }
        let dst = dir.join(rel.replace('/', "__"));
        bytes += crate::io::copy_file(&store.config().io, &src, &dst)
            .map_err(|e| RepairError::Io(format!("backing up {rel}: {e}")))?;
    }
    // Bound the number of backups kept.
    if let Ok(rd) = std::fs::read_dir(&root) {
        let mut all: Vec<(std::time::SystemTime, PathBuf)> = rd
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        all.sort();
        while all.len() > BACKUPS_KEPT_MAX {
            let (_, p) = all.remove(0);
            let _ = std::fs::remove_dir_all(p);
        }
    }
    Ok(Backup {
        location: format!("{sub}/{name}"),
        bytes,
    })
}

fn restore_backup(store: &Store, b: &Backup) -> Result<(), RepairError> {
    let dir = store.dir().join(&b.location);
    if b.bytes == 0 && !dir.is_dir() {
        return Ok(()); // nothing was backed up (the file was already gone)
    }
    let rd = std::fs::read_dir(&dir)
        .map_err(|e| RepairError::Io(format!("reading {}: {e}", dir.display())))?;
    for e in rd.flatten() {
        let rel = e.file_name().to_string_lossy().replace("__", "/");
        crate::io::copy_file(&store.config().io, &e.path(), &store.dir().join(&rel))
            .map_err(|e| RepairError::Io(format!("restoring {rel}: {e}")))?;
    }
    Ok(())
}

fn est(duration_us: u64, data_loss: DataLoss, risk: f64) -> Estimate {
    Estimate {
        duration_us,
        data_loss,
        risk,
    }
}

fn to_repair_err(e: crate::StoreError) -> RepairError {
    match e {
        crate::StoreError::Corrupt { .. } => RepairError::Unrecoverable(e.to_string()),
        crate::StoreError::Io { ref source, .. } if crate::io::is_resource(source) => {
            RepairError::Environment(e.to_string())
        }
        crate::StoreError::Io { .. } | crate::StoreError::Poisoned(_) => {
            RepairError::Io(e.to_string())
        }
        other => RepairError::Other(other.to_string()),
    }
}

/// Whether the check that found this damage saw more of it than parity can rebuild.
/// An open-segment issue whose record is damaged in both the main copy and the mirror: no copy can undo it, but the
/// verified in-memory table still holds every document.
fn both_copies(issue: &Issue) -> bool {
    issue
        .evidence
        .iter()
        .any(|(k, v)| k == "both_copies" && v == "true")
}

fn not_rebuildable(issue: &Issue) -> bool {
    evidence_is(issue, "rebuildable", "false")
}

fn evidence_is(issue: &Issue, key: &str, value: &str) -> bool {
    issue.evidence.iter().any(|(k, v)| k == key && v == value)
}

fn find_file(store: &Store, issue: &Issue) -> Option<ImmutableFile> {
    let file = issue
        .location
        .file
        .clone()
        .unwrap_or_else(|| issue.resource.clone());
    store.immutable_files().into_iter().find(|f| {
        f.rel == file || f.par_rel == file || f.rel == issue.resource || f.par_rel == issue.resource
    })
}

/// Rebuilds damaged blocks of a sealed segment or snapshot from parity, or a damaged sidecar from verified data.
struct RebuildFromParity {
    store: Arc<Store>,
}

impl RepairStrategy for RebuildFromParity {
    fn name(&self) -> &str {
        "rebuild_from_parity"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::Redundancy
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        matches!(
            Code::of(issue),
            Some(Code::BlockChecksum | Code::ParityDamaged | Code::ParityMismatch)
        ) && !not_rebuildable(issue)
            && !evidence_is(issue, "data_verifies", "false")
    }
    fn estimate(&self, issue: &Issue) -> Estimate {
        let len = find_file(&self.store, issue).map_or(0, |f| f.len);
        // Reading, decoding and rewriting runs at a few hundred MB/s; 10 ms floor for the fsyncs.
        est(10_000 + len / 200, DataLoss::None, 0.05)
    }
    fn backup(&self, issue: &Issue) -> Result<Backup, RepairError> {
        let Some(f) = find_file(&self.store, issue) else {
            return Ok(Backup {
                location: "nothing to back up: the file is no longer part of the store".into(),
                bytes: 0,
            });
        };
        backup_files(&self.store, self.name(), &[f.rel, f.par_rel])
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        let Some(f) = find_file(&self.store, issue) else {
            // A compaction replaced the file since the check found it: the damage went with it.
            return Ok(RepairReport {
                actions: vec![format!(
                    "{} is no longer part of the store (compacted away); nothing left to repair",
                    issue.location.file.as_deref().unwrap_or(&issue.resource)
                )],
                data_loss: DataLoss::None,
            });
        };
        let mut actions = self.store.repair_file(&f).map_err(to_repair_err)?;
        if actions.is_empty() {
            actions.push(format!(
                "{} and {} already verify; nothing to rewrite",
                f.rel, f.par_rel
            ));
        }
        Ok(RepairReport {
            actions,
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, issue: &Issue) -> Result<(), RepairError> {
        let Some(f) = find_file(&self.store, issue) else {
            return Ok(()); // compacted away meanwhile
        };
        let v = self.store.verify_file(&f, None, true);
        if v.clean() {
            Ok(())
        } else {
            Err(RepairError::Validation(format!(
                "{} still fails: {v:?}",
                f.rel
            )))
        }
    }
    fn rollback(&self, _issue: &Issue, backup: &Backup) -> Result<(), RepairError> {
        restore_backup(&self.store, backup)
    }
}

/// An `identity_sidecar_damaged` issue per sealed segment or snapshot whose identity sidecar does not name every
/// record: nothing is lost, but a later loss of that file would not say which documents it took.
fn identity_issues(s: &Store, source: &str) -> Vec<Issue> {
    s.identity_gaps()
        .into_iter()
        .map(|(f, why)| {
            let rel = crate::identity::name_for(&f.rel);
            integrity(
                Code::IdentitySidecarDamaged,
                &rel,
                format!("{why}; rewritten from {} (which verifies)", f.rel),
                source,
            )
            .at(Location {
                file: Some(rel.clone()),
                ..Location::default()
            })
            .with_score(0.3)
            .evidence("of", f.rel)
        })
        .collect()
}

/// Rewrites an identity sidecar from the verified file it describes.
struct RewriteIdentity {
    store: Arc<Store>,
}

impl RepairStrategy for RewriteIdentity {
    fn name(&self) -> &str {
        "rewrite_identity_sidecar"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::Redundancy
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        Code::of(issue) == Some(Code::IdentitySidecarDamaged)
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(50_000, DataLoss::None, 0.02)
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        Ok(Backup {
            location: "none needed (a sidecar is rewritten from the file it describes)".into(),
            bytes: 0,
        })
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        let of = of_file(issue)?;
        match self.store.rewrite_identity(&of) {
            Ok(()) => Ok(RepairReport {
                actions: vec![format!(
                    "rewrote {} from {of}",
                    crate::identity::name_for(&of)
                )],
                data_loss: DataLoss::None,
            }),
            // Compacted away meanwhile: nothing left to describe.
            Err(crate::StoreError::InvalidInput(_)) => Ok(RepairReport {
                actions: vec![format!("{of} is no longer live: nothing to rewrite")],
                data_loss: DataLoss::None,
            }),
            Err(e) => Err(to_repair_err(e)),
        }
    }
    fn validate(&self, issue: &Issue) -> Result<(), RepairError> {
        let of = of_file(issue)?;
        match self
            .store
            .identity_gaps()
            .into_iter()
            .find(|(f, _)| f.rel == of)
        {
            Some((_, why)) => Err(RepairError::Validation(why)),
            None => Ok(()),
        }
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}

/// The file an identity issue describes (evidence `of`).
fn of_file(issue: &Issue) -> Result<String, RepairError> {
    issue
        .evidence
        .iter()
        .find(|(k, _)| k == "of")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| RepairError::NotApplicable("no file named (evidence `of`)".into()))
}

/// Restores a damaged or stale manifest copy from its twin.
struct RestoreManifestTwin {
    store: Arc<Store>,
}

impl RepairStrategy for RestoreManifestTwin {
    fn name(&self) -> &str {
        "restore_manifest_from_twin"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::Redundancy
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        Code::of(issue) == Some(Code::ManifestCopyDamaged)
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(5_000, DataLoss::None, 0.02)
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        backup_files(
            &self.store,
            self.name(),
            &crate::manifest::COPIES.map(String::from),
        )
    }
    fn repair(&self, _issue: &Issue) -> Result<RepairReport, RepairError> {
        let fixed = self.store.repair_manifest().map_err(to_repair_err)?;
        Ok(RepairReport {
            actions: if fixed.is_empty() {
                vec!["both manifest copies already current".into()]
            } else {
                fixed
                    .iter()
                    .map(|c| format!("rewrote {c} from the live manifest (its twin)"))
                    .collect()
            },
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, _issue: &Issue) -> Result<(), RepairError> {
        for (name, r) in self.store.manifest_copies_ok() {
            r.map_err(|e| RepairError::Validation(format!("{name}: {e}")))?;
        }
        Ok(())
    }
    fn rollback(&self, _issue: &Issue, backup: &Backup) -> Result<(), RepairError> {
        restore_backup(&self.store, backup)
    }
}

/// Rewrites damaged records of the open segment (or its mirror) from the other copy.
struct RepairFromMirror {
    store: Arc<Store>,
}

impl RepairStrategy for RepairFromMirror {
    fn name(&self) -> &str {
        "repair_from_mirror"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::Redundancy
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        // Damaged in both copies: neither can rebuild the other (compaction from the table repairs it).
        matches!(
            Code::of(issue),
            Some(Code::WalRecordDamaged | Code::MirrorDamaged)
        ) && !both_copies(issue)
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(
            10_000 + self.store.open_segment().1 / 500,
            DataLoss::None,
            0.05,
        )
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        let (id, _) = self.store.open_segment();
        backup_files(
            &self.store,
            self.name(),
            &[wal::seg_name(id), wal::mirror_name(id)],
        )
    }
    fn repair(&self, _issue: &Issue) -> Result<RepairReport, RepairError> {
        let mut actions = self.store.repair_open_segment().map_err(to_repair_err)?;
        if actions.is_empty() {
            actions.push("open segment and mirror already agree".into());
        }
        Ok(RepairReport {
            actions,
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, _issue: &Issue) -> Result<(), RepairError> {
        open_segment_verifies(&self.store)
    }
    fn rollback(&self, _issue: &Issue, backup: &Backup) -> Result<(), RepairError> {
        restore_backup(&self.store, backup)
    }
}

/// Cuts bytes past the last durable record (never acknowledged) off the open segment and its mirror.
struct TruncateTornTail {
    store: Arc<Store>,
}

impl RepairStrategy for TruncateTornTail {
    fn name(&self) -> &str {
        "truncate_torn_tail"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        Code::of(issue) == Some(Code::TornTail)
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(2_000, DataLoss::UnacknowledgedOnly, 0.01)
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        let (id, _) = self.store.open_segment();
        backup_files(
            &self.store,
            self.name(),
            &[wal::seg_name(id), wal::mirror_name(id)],
        )
    }
    fn repair(&self, _issue: &Issue) -> Result<RepairReport, RepairError> {
        let cut = self.store.truncate_tail().map_err(to_repair_err)?;
        Ok(RepairReport {
            actions: vec![if cut > 0 {
                format!("cut {cut} unacknowledged bytes off the open segment")
            } else {
                "no torn tail left (it was cut on open)".into()
            }],
            data_loss: DataLoss::UnacknowledgedOnly,
        })
    }
    fn validate(&self, _issue: &Issue) -> Result<(), RepairError> {
        match self.store.tail_excess_bytes() {
            0 => Ok(()),
            n => Err(RepairError::Validation(format!(
                "{n} bytes still past the durable end"
            ))),
        }
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        // Putting unacknowledged garbage back would only re-create the problem; the backup stays for inspection.
        Ok(())
    }
}

/// Reloads the in-memory table from the latest snapshot and the log.
struct ReloadTable {
    store: Arc<Store>,
}

impl RepairStrategy for ReloadTable {
    fn name(&self) -> &str {
        "restore_snapshot_and_replay"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::ReplayLog
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        Code::of(issue) == Some(Code::MemoryTableMismatch)
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(50_000 + self.store.wal_bytes() / 200, DataLoss::None, 0.1)
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        Ok(Backup {
            location: "memory (the files are not changed)".into(),
            bytes: 0,
        })
    }
    fn repair(&self, _issue: &Issue) -> Result<RepairReport, RepairError> {
        let n = self.store.reload_table().map_err(to_repair_err)?;
        Ok(RepairReport {
            actions: vec![format!(
                "reloaded {n} document(s) from the snapshot and the log"
            )],
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, _issue: &Issue) -> Result<(), RepairError> {
        let diff = self.store.replay_agrees().map_err(to_repair_err)?;
        if diff.is_empty() {
            Ok(())
        } else {
            Err(RepairError::Validation(format!(
                "{} document(s) still disagree",
                diff.len()
            )))
        }
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}

/// Takes a snapshot and drops the segments it covers: bounds the log, frees space, and replaces a snapshot that
/// parity could not save with one written from the verified table.
struct Compact {
    store: Arc<Store>,
}

impl RepairStrategy for Compact {
    fn name(&self) -> &str {
        "compact"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        if !self.store.lost().is_empty() {
            // Degraded: the table lacks what was lost, and a snapshot of it would silently drop that.
            return false;
        }
        match Code::of(issue) {
            // Compaction frees space only if there is log to drop (beyond an empty segment) and room to write the
            // new snapshot first.
            Some(Code::DiskSpaceLow | Code::DiskSpaceCritical) => {
                self.store.wal_bytes() > wal::HEADER_BYTES
                    && self
                        .store
                        .free_bytes()
                        .is_none_or(|free| free >= self.store.compaction_bytes_needed())
            }
            Some(Code::WalOverBound | Code::CompactionFailed) => true,
            // The table holds every acknowledged record; writing it out anew ends the uncertainty a failed flush or
            // an uncut tail left (`Store::recover_from_poison`).
            Some(Code::StorePoisoned) => true,
            // A sealed segment or snapshot lost beyond what parity can rebuild: the verified table in memory still
            // holds every document, so a new snapshot written from it replaces the lost file.
            Some(Code::FileUnreadable | Code::SnapshotLogDisagree) => true,
            // Damage parity cannot undo: the file and its redundancy damaged together, or the sidecar gone over
            // damaged data. Compaction rewrites both from the table.
            Some(Code::BlockChecksum) => not_rebuildable(issue),
            Some(Code::ParityDamaged) => evidence_is(issue, "data_verifies", "false"),
            // No manifest copy left to restore the other from: compaction writes both anew for the layout it
            // creates.
            Some(Code::ManifestCopyDamaged) => self
                .store
                .manifest_copies_ok()
                .iter()
                .all(|(_, r)| r.is_err()),
            // A record of the open segment damaged in both copies while running: the table verified every
            // document when it was written, so a snapshot of it replaces the segment (and its mirror) whole.
            Some(Code::WalRecordDamaged | Code::MirrorDamaged) => both_copies(issue),
            _ => false,
        }
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        let s = self.store.stats();
        est(
            20_000 + (s.wal_bytes + s.docs as u64 * 1024) / 200,
            DataLoss::None,
            0.1,
        )
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        // Compaction writes new files and only then switches the manifest; the old state is its own backup until
        // the switch, and the switch is atomic.
        let m = self.store.manifest();
        Ok(Backup {
            location: format!("manifest generation {}", m.generation),
            bytes: 0,
        })
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        if Code::of(issue) == Some(Code::StorePoisoned) {
            let reason = self.store.stats().poisoned.unwrap_or_default();
            self.store.recover_from_poison().map_err(to_repair_err)?;
            return Ok(RepairReport {
                actions: vec![format!(
                    "wrote the verified table out anew (snapshot, new segment, manifest) and resumed writes after: \
                     {reason}"
                )],
                data_loss: DataLoss::None,
            });
        }
        let before = self.store.wal_bytes();
        self.store.compact().map_err(to_repair_err)?;
        let free = self.store.free_bytes();
        Ok(RepairReport {
            actions: vec![format!(
                "compacted: WAL {before} -> {} bytes; free space now {}",
                self.store.wal_bytes(),
                free.map_or("unknown".to_string(), |f| format!("{f} bytes"))
            )],
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, issue: &Issue) -> Result<(), RepairError> {
        let cfg = self.store.config();
        match Code::of(issue) {
            Some(Code::WalOverBound) if self.store.wal_bytes() > cfg.wal_bytes_max => Err(
                RepairError::Validation(format!("WAL still {} bytes", self.store.wal_bytes())),
            ),
            Some(
                Code::FileUnreadable
                | Code::BlockChecksum
                | Code::ParityDamaged
                | Code::SnapshotLogDisagree,
            ) => {
                for f in self.store.immutable_files() {
                    let v = self.store.verify_file(&f, None, false);
                    if !v.clean() {
                        return Err(RepairError::Validation(format!(
                            "{} still fails: {v:?}",
                            f.rel
                        )));
                    }
                }
                Ok(())
            }
            Some(Code::WalRecordDamaged | Code::MirrorDamaged) => {
                open_segment_verifies(&self.store)
            }
            Some(Code::StorePoisoned) => match self.store.stats().poisoned {
                Some(p) => Err(RepairError::Validation(format!("still poisoned: {p}"))),
                None => Ok(()),
            },
            Some(Code::ManifestCopyDamaged) => {
                for (name, r) in self.store.manifest_copies_ok() {
                    if let Err(e) = r {
                        return Err(RepairError::Validation(format!("{name} still fails: {e}")));
                    }
                }
                Ok(())
            }
            Some(Code::DiskSpaceCritical) => match self.store.free_bytes() {
                Some(f) if f < cfg.disk_critical_bytes_floor => {
                    Err(RepairError::Validation(format!(
                        "still only {f} bytes free, below disk_critical_bytes_floor = {}",
                        cfg.disk_critical_bytes_floor
                    )))
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}

/// Rewrites the lock file's holder text. The kernel lock itself is held by this process (a kernel lock cannot
/// outlive its holder), so the text is the only thing that can go stale or be damaged.
struct RefreshLock {
    store: Arc<Store>,
}

impl RepairStrategy for RefreshLock {
    fn name(&self) -> &str {
        "break_stale_lock"
    }
    fn cost(&self) -> RepairCost {
        RepairCost::InPlace
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        matches!(
            Code::of(issue),
            Some(Code::StaleLock | Code::LockFileDamaged)
        )
    }
    fn estimate(&self, _issue: &Issue) -> Estimate {
        est(1_000, DataLoss::None, 0.01)
    }
    fn backup(&self, _issue: &Issue) -> Result<Backup, RepairError> {
        backup_files(
            &self.store,
            self.name(),
            &[crate::lock::LOCK_FILE.to_string()],
        )
    }
    fn repair(&self, issue: &Issue) -> Result<RepairReport, RepairError> {
        self.store.lock_file_ok(true).map_err(to_repair_err)?;
        Ok(RepairReport {
            actions: vec![format!(
                "LOCK rewritten to name this process (kernel lock held by us; {})",
                issue.summary
            )],
            data_loss: DataLoss::None,
        })
    }
    fn validate(&self, _issue: &Issue) -> Result<(), RepairError> {
        match self.store.lock_file_ok(false) {
            Ok(true) => Ok(()),
            _ => Err(RepairError::Validation(
                "LOCK still does not name this process".into(),
            )),
        }
    }
    fn rollback(&self, _issue: &Issue, _backup: &Backup) -> Result<(), RepairError> {
        Ok(())
    }
}

impl Subject for StoreSubject {
    fn name(&self) -> &str {
        "store"
    }
    /// The live data files (relative paths, as the store's issues name them) and the disk.
    fn resources(&self) -> Vec<String> {
        let mut out: Vec<String> = self.store.data_files().into_iter().map(|f| f.rel).collect();
        out.push("disk".to_string());
        out
    }
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        let s = self.store.clone();
        let own: Vec<Arc<dyn HealthCheck>> = vec![
            Arc::new(QuickCheck {
                store: s.clone(),
                open_cursor: self.open_cursor.clone(),
            }),
            Arc::new(IncrementalCheck {
                store: s.clone(),
                verified: self.verified.clone(),
            }),
            Arc::new(ScrubCheck { store: s.clone() }),
        ];
        own.into_iter()
            .chain(crate::derived::health::checks(&s))
            .collect()
    }
    fn strategies(&self) -> Vec<Arc<dyn RepairStrategy>> {
        let s = self.store.clone();
        let own: Vec<Arc<dyn RepairStrategy>> = vec![
            Arc::new(TruncateTornTail { store: s.clone() }),
            Arc::new(RefreshLock { store: s.clone() }),
            Arc::new(RebuildFromParity { store: s.clone() }),
            Arc::new(RestoreManifestTwin { store: s.clone() }),
            Arc::new(RepairFromMirror { store: s.clone() }),
            Arc::new(ReloadTable { store: s.clone() }),
            Arc::new(Compact { store: s.clone() }),
            Arc::new(RewriteIdentity { store: s.clone() }),
        ];
        own.into_iter()
            .chain(crate::derived::health::strategies(&s))
            .collect()
    }
    /// Typed samples: sizes (`docs`, `wal_bytes`, `segments`, `disk_free_bytes`, `quota_bytes_remaining`: judged by
    /// constraints and trend rules), counters since open (`last_lsn`, `commits_total`, `records_committed_total`,
    /// `compactions_total`: the engine judges their rates), states (`read_only`, `poisoned`), the gauges
    /// `lost_ranges` and `issues_queued`, and per operation (`put`, `get`, `delete`, `wal_sync` — the data
    /// directory's disk latency —, and whatever else records into the store's metrics, such as searches) the latency
    /// quantiles and error ratio of the operations since the previous cycle and the operation and error counters.
    fn sample(&self, now: Timestamp) -> Vec<Sample> {
        let st = self.store.stats();
        let mut samples = vec![
            Sample::size("docs", st.docs as f64, now),
            Sample::size("wal_bytes", st.wal_bytes as f64, now),
            Sample::size("segments", st.segments as f64, now),
            Sample::counter("last_lsn", st.last_lsn as f64, now),
            Sample::counter("commits_total", st.commits as f64, now),
            Sample::counter("records_committed_total", st.records_committed as f64, now),
            Sample::counter("compactions_total", st.compactions as f64, now),
            Sample::state("read_only", st.read_only.is_some(), now),
            Sample::state("poisoned", st.poisoned.is_some(), now),
            Sample::gauge("lost_ranges", st.lost.len() as f64, now),
            Sample::gauge("issues_queued", st.issues_queued as f64, now),
        ];
        if let Some(f) = self.store.free_bytes() {
            samples.push(Sample::size("disk_free_bytes", f as f64, now));
        }
        if let Some(q) = self.store.config().io.quota_bytes_remaining() {
            samples.push(Sample::size("quota_bytes_remaining", q as f64, now));
        }
        // Latency quantiles of the operations since the previous cycle (`put_latency_p99_us`, ...).
        samples.extend(self.store.metrics().window_snapshot(now).to_samples());
        samples
    }
    fn drain_issues(&self) -> Vec<Issue> {
        self.store.drain_issues()
    }
    fn stop_writes(&self, reason: Option<&str>) -> Result<(), String> {
        self.store.set_crisis(reason.map(str::to_string));
        Ok(())
    }
}
