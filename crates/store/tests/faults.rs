//! The fault matrix: for every fault kind, seeded randomized rounds against a store of a few thousand documents with
//! the engine's cycle run over `StoreSubject`. Each round must be detected (an issue naming the damaged file),
//! repaired, pass a full scrub, and read every acknowledged document back byte-identical, live and after a reopen.
//! Double faults beyond parity (more damaged blocks in one parity group of a sealed segment than it has recovery
//! blocks) never serve wrong data: while the store runs, the engine rewrites the log from the verified in-memory table;
//! found only on restart, the loss is located precisely (the file, its LSNs, the damaged blocks of the group) and
//! escalated, and reads refuse what may be stale, naming the file. A canary round with repair switched off must fail
//! these checks, proving the harness can catch a bug.
//!
//! Replay a failing round with `MEDIC_FAULT_SEED=<seed> cargo nextest run -p store --test faults <test name>`.

use rand::Rng;
use rand::seq::SliceRandom;
use store::chaos::{Harness, HarnessConfig, RoundOutcome, Verification, describe};
use store::fault::FaultKind;

/// Rounds per fault kind in CI.
const ROUNDS_PER_KIND: u32 = 3;
/// Documents in each matrix store.
const DOCS: u32 = 2_000;

fn seed_for(kind: FaultKind) -> u64 {
    std::env::var("MEDIC_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(
            0xFA17_0000
                + FaultKind::ALL
                    .iter()
                    .chain(&FaultKind::BEYOND_REDUNDANCY)
                    .chain(&FaultKind::RESOURCES)
                    .position(|k| *k == kind)
                    .unwrap() as u64,
        )
}

fn assert_healed(seed: u64, out: &RoundOutcome) {
    let ctx = format!("seed={seed} round {}: {}", out.round, describe(out));
    let fault = &out.faults[0];
    assert!(out.detected, "not detected: {ctx}");
    if let Some(file) = &fault.file {
        assert!(
            out.matching_issues
                .iter()
                .any(|i| i.location.file.as_deref() == Some(file.as_str())
                    || &i.resource == file
                    || i.evidence.contains(&("protects".to_string(), file.clone()))),
            "no issue names {file}: {ctx}"
        );
    }
    assert!(
        out.scrub_failures.is_empty(),
        "scrub fails after repair: {ctx}"
    );
    assert!(out.live.clean(), "live reads wrong: {ctx}");
    assert!(out.reopen_error.is_none(), "reopen failed: {ctx}");
    assert!(out.reopened.clean(), "reads after reopen wrong: {ctx}");
    assert!(out.repaired, "not repaired: {ctx}");
    assert!(!out.escalated, "escalated a repairable fault: {ctx}");
}

fn matrix(kind: FaultKind) {
    let seed = seed_for(kind);
    eprintln!("fault matrix {kind}: seed={seed} (replay: MEDIC_FAULT_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(
        dir.path(),
        seed,
        HarnessConfig {
            docs: DOCS,
            ..HarnessConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("seed={seed}: {e}"));
    for _ in 0..ROUNDS_PER_KIND {
        let out = h.round(kind).unwrap_or_else(|e| panic!("seed={seed}: {e}"));
        eprintln!("  {}", describe(&out));
        assert_healed(seed, &out);
    }
}

#[test]
fn bit_flip() {
    matrix(FaultKind::BitFlip);
}

#[test]
fn zero_range() {
    matrix(FaultKind::ZeroRange);
}

#[test]
fn torn_write() {
    matrix(FaultKind::TornWrite);
}

#[test]
fn delete_file() {
    matrix(FaultKind::DeleteFile);
}

#[test]
fn misdirected_write() {
    matrix(FaultKind::MisdirectedWrite);
}

#[test]
fn stale_lock() {
    matrix(FaultKind::StaleLock);
}

#[test]
fn out_of_space() {
    matrix(FaultKind::OutOfSpace);
}

#[test]
fn slow_io() {
    matrix(FaultKind::SlowIo);
}

/// A snapshot or sealed segment damaged and its sidecar deleted together, while the store runs: rewritten from the
/// verified table, never escalated, nothing lost.
#[test]
fn file_and_sidecar() {
    matrix(FaultKind::FileAndSidecar);
}

/// `wal/`, `snap/` and both manifests deleted under the running store: rewritten from the verified table.
#[test]
fn layout_deleted() {
    matrix(FaultKind::LayoutDeleted);
}

/// Every open failing with EMFILE for a while: reported as `resource_exhausted` (never damage, never escalated),
/// and the store is back to normal by itself once descriptors are back.
#[test]
fn descriptor_exhaustion() {
    matrix(FaultKind::DescriptorExhaustion);
}

/// Regression: `medic chaos --seed 1 --rounds 300` once stopped at round 43, where a misdirected write in the open
/// segment put valid records with later LSNs at an earlier record's offset; the scan took them for the log and
/// both copies ended up wrong. The run up to that round must now repair everything and lose nothing.
#[test]
fn chaos_seed_1_misdirected_write_in_the_open_segment() {
    let dir = tempfile::tempdir().unwrap();
    let report = store::chaos::run(&store::chaos::ChaosConfig {
        data_dir: dir.path().to_path_buf(),
        seed: 1,
        rounds: 44,
        ..store::chaos::ChaosConfig::default()
    })
    .unwrap();
    assert_eq!(report.rounds, 44, "{report:?}");
    assert_eq!(report.repaired, 44, "{:?}", report.notes);
    assert_eq!(report.acked_writes_lost, 0);
    assert_eq!(report.silent_corruptions, 0);
}

fn seed_or(default: u64) -> u64 {
    std::env::var("MEDIC_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Every acknowledged document is either read back exactly or refused with an error naming `file`; nothing wrong is
/// served and nothing undone.
fn assert_no_wrong_data(ctx: &str, what: &str, v: &Verification, file: &str) {
    assert!(
        v.silent.is_empty() && v.phantom.is_empty(),
        "{what}: wrong data served: silent {:?} phantom {:?}: {ctx}",
        v.silent,
        v.phantom
    );
    assert!(v.lost.is_empty(), "{what}: lost {:?}: {ctx}", v.lost);
    for (id, err) in &v.refused {
        assert!(
            err.contains(file),
            "{what}: {id} refused with an error that does not name {file}: {err}: {ctx}"
        );
    }
}

/// The canary: with repair switched off (the engine in dry run) a byte-damaging fault stays, and the harness must say
/// so: detected, not repaired, and the full scrub failing. If it reported these rounds healed, the matrix above
/// would prove nothing.
#[test]
fn canary_without_repair_the_harness_reports_the_damage_unrepaired() {
    let seed = seed_or(0xFA17_CA4A);
    eprintln!("canary: seed={seed} (replay: MEDIC_FAULT_SEED={seed})");
    for (i, kind) in [
        FaultKind::BitFlip,
        FaultKind::ZeroRange,
        FaultKind::DeleteFile,
        FaultKind::MisdirectedWrite,
    ]
    .into_iter()
    .enumerate()
    {
        // A seed per kind, so the rounds hit different files.
        let seed = seed.wrapping_add(i as u64);
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::new(
            dir.path(),
            seed,
            HarnessConfig {
                docs: 600,
                skip_repair: true,
                ..HarnessConfig::default()
            },
        )
        .unwrap_or_else(|e| panic!("seed={seed}: {e}"));
        let out = h.round(kind).unwrap_or_else(|e| panic!("seed={seed}: {e}"));
        let ctx = format!("seed={seed} {kind} {:?}: {}", out.faults, describe(&out));
        eprintln!("  {ctx}");
        assert!(
            out.detected,
            "the dry-run engine did not even detect: {ctx}"
        );
        assert!(!out.repaired, "reported repaired with repair off: {ctx}");
        assert!(
            !out.scrub_failures.is_empty(),
            "the scrub passed over unrepaired damage: {ctx}"
        );
        // And the matrix's own verdict rejects the round.
        let verdict =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| assert_healed(seed, &out)));
        assert!(verdict.is_err(), "assert_healed accepted: {ctx}");
    }
}

/// Damages `parity_blocks + 1` distinct data blocks of one parity group of the first sealed segment (one bit flip
/// each): more than its recovery blocks can rebuild. Returns the file and what was done.
/// A harness of 1,000 documents over `dir` with [`damage_beyond_parity`] done to it.
fn damaged_beyond_parity(
    dir: &std::path::Path,
    seed: u64,
) -> (
    Harness,
    store::ImmutableFile,
    Vec<store::fault::InjectedFault>,
) {
    let mut h = Harness::new(
        dir,
        seed,
        HarnessConfig {
            docs: 1_000,
            ..HarnessConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("seed={seed}: {e}"));
    let (target, faults) = damage_beyond_parity(&mut h);
    (h, target, faults)
}

fn damage_beyond_parity(
    h: &mut Harness,
) -> (store::ImmutableFile, Vec<store::fault::InjectedFault>) {
    let cfg = h.store().config().clone();
    let (block, per_group) = (cfg.block_bytes as u64, cfg.parity_data_blocks as u64);
    let store = h.store().clone();
    let target = store
        .immutable_files()
        .into_iter()
        .find(|f| f.rel.ends_with(".seg"))
        .expect("the harness store has a sealed segment");
    let full_groups = store.n_blocks(&target) / per_group;
    assert!(
        full_groups >= 1,
        "{} is too short for a full parity group",
        target.rel
    );
    let dir = h.dir().to_path_buf();
    let inj = h.injector();
    let g = inj.rng().random_range(0..full_groups);
    let mut blocks: Vec<u64> = (g * per_group..(g + 1) * per_group).collect();
    blocks.shuffle(inj.rng());
    blocks.truncate(cfg.parity_blocks as usize + 1);
    blocks.sort_unstable();
    let faults = blocks
        .iter()
        .map(|b| {
            inj.flip_bit_in(&dir, &target.rel, b * block, (b + 1) * block)
                .unwrap()
        })
        .collect();
    (target, faults)
}

/// A double fault beyond parity in a sealed segment while the store runs: parity cannot rebuild the group, but the
/// in-memory table (every entry verified against its checksum) still holds every document. Reads never serve wrong
/// bytes, the check reports the file as not rebuildable, and the engine repairs it by rewriting the log from the
/// table (compaction), after which the scrub passes and every acknowledged document reads back exactly, live and
/// after a reopen.
#[test]
fn double_fault_beyond_parity_while_running_serves_no_wrong_data_and_is_rewritten_from_the_table() {
    let seed = seed_or(0xFA17_D0B1);
    eprintln!("double fault (running): seed={seed} (replay: MEDIC_FAULT_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let (mut h, target, faults) = damaged_beyond_parity(dir.path(), seed);
    let file = target.rel;
    let ctx = format!("seed={seed} {file}: {faults:?}");
    // Before the engine runs: the damage is on disk only.
    assert_no_wrong_data(&ctx, "before healing", &h.verify(), &file);

    let out = h
        .heal(faults)
        .unwrap_or_else(|e| panic!("seed={seed}: {e}"));
    let ctx = format!("{ctx}: {}", describe(&out));
    eprintln!("  {ctx}");
    assert!(out.detected, "not detected: {ctx}");
    let named: Vec<_> = out
        .matching_issues
        .iter()
        .filter(|i| i.location.file.as_deref() == Some(file.as_str()) || i.resource == file)
        .collect();
    assert!(!named.is_empty(), "no issue names {file}: {ctx}");
    assert!(
        named.iter().any(|i| i.code == "block_checksum"
            && i.evidence
                .contains(&("rebuildable".to_string(), "false".to_string()))),
        "no issue says {file} is beyond parity: {ctx}"
    );
    assert_no_wrong_data(&ctx, "live", &out.live, &file);
    assert_no_wrong_data(&ctx, "after reopen", &out.reopened, &file);
    assert!(out.reopen_error.is_none(), "reopen failed: {ctx}");
    assert!(out.scrub_failures.is_empty(), "scrub fails: {ctx}");
    assert!(out.live.clean() && out.reopened.clean(), "{ctx}");
    assert!(out.repaired && !out.escalated, "{ctx}");
}

/// The same double fault, and then a clean close before any check ran: the table still held every record of the
/// damaged group, so `close` writes it out (a compaction) and the reopen finds nothing lost. A clean stop never
/// discards the only remaining good copy.
#[test]
fn double_fault_beyond_parity_then_a_clean_close_loses_nothing() {
    let seed = seed_or(0xC105_EDD0);
    eprintln!("double fault (clean close): seed={seed} (replay: MEDIC_FAULT_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let (mut h, target, faults) = damaged_beyond_parity(dir.path(), seed);
    let ctx = format!("seed={seed} {}: {faults:?}", target.rel);
    let (after, err) = h.reopen_and_verify();
    assert!(err.is_none(), "close or reopen failed: {err:?}: {ctx}");
    assert!(
        after.clean(),
        "after a clean close and reopen: {after:?}: {ctx}"
    );
    assert!(h.store().lost().is_empty(), "a loss reported: {ctx}");
    assert!(h.scrub().is_empty(), "scrub fails: {:?}: {ctx}", h.scrub());
}

/// The same double fault found only after a crash and restart: the table is rebuilt from the files, so the records in the
/// damaged group are gone beyond every copy. The store opens degraded with the loss located in that file and within
/// its LSNs; reads serve a document only if it is certainly current (exactly as acknowledged) and refuse the rest
/// naming the file; the engine cannot repair it and escalates, naming the file.
#[test]
fn double_fault_beyond_parity_found_on_restart_escalates_naming_the_file_and_serves_no_wrong_data()
{
    let seed = seed_or(0xFA17_D0B2);
    eprintln!("double fault (restart): seed={seed} (replay: MEDIC_FAULT_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let (mut h, target, faults) = damaged_beyond_parity(dir.path(), seed);
    let file = target.rel.clone();
    let ctx = format!("seed={seed} {file}: {faults:?}");

    // A crash, not a clean stop: `close` would write out from the table what only the table still holds.
    let (after_restart, err) = h.crash_reopen_and_verify();
    assert!(err.is_none(), "reopen failed: {err:?}: {ctx}");
    assert_no_wrong_data(&ctx, "after restart", &after_restart, &file);
    assert!(
        !after_restart.refused.is_empty(),
        "nothing refused, though records were lost: {ctx}"
    );
    assert!(
        after_restart.refused.len() < h.acked_docs(),
        "every document refused, not just those the loss may concern: {ctx}"
    );
    let lost = h.store().lost();
    assert!(!lost.is_empty(), "opened without reporting a loss: {ctx}");
    let block_bytes = h.store().config().block_bytes as u64;
    let damaged: Vec<u64> = faults
        .iter()
        .map(|f| f.offset.unwrap() / block_bytes)
        .collect();
    for l in &lost {
        assert_eq!(l.file, file, "loss placed in the wrong file: {l:?}: {ctx}");
        assert!(
            l.reason.contains(&format!("{damaged:?}")),
            "the loss does not name the damaged blocks {damaged:?}: {l:?}: {ctx}"
        );
        assert!(
            target.lsn_range.0 <= l.lsn_range.0 && l.lsn_range.1 <= target.lsn_range.1,
            "lost LSNs {:?} outside the file's {:?}: {ctx}",
            l.lsn_range,
            target.lsn_range
        );
    }

    let out = h
        .heal(faults)
        .unwrap_or_else(|e| panic!("seed={seed}: {e}"));
    let ctx = format!("{ctx}: {}", describe(&out));
    eprintln!("  {ctx}");
    assert!(out.detected, "not detected: {ctx}");
    assert!(
        out.matching_issues
            .iter()
            .any(|i| i.code == "acknowledged_data_lost"
                && i.location.file.as_deref() == Some(file.as_str())),
        "no acknowledged_data_lost issue names {file}: {ctx}"
    );
    assert!(out.escalated, "not escalated: {ctx}");
    assert!(!out.repaired, "reported repaired: {ctx}");
    assert!(
        out.incidents
            .iter()
            .any(|i| i.resolution != heal::learn::Resolution::AutoRepaired
                && i.issues
                    .iter()
                    .any(|is| is.location.file.as_deref() == Some(file.as_str()))),
        "no unrepaired incident names {file}: {ctx}"
    );
    assert_no_wrong_data(&ctx, "live", &out.live, &file);
    assert_no_wrong_data(&ctx, "after reopen", &out.reopened, &file);
}
