//! Every issue code the store emits, as one enum: the string of each code appears here and nowhere else in the
//! crate (a test reads the sources to keep it so). Checks raise issues under a [`Code`]; strategies decide what they
//! handle by matching [`Code::of`] an issue, so a misspelt code is a compile error instead of an issue no strategy
//! ever picks up.
//!
//! The strings are a contract (`../shared/CONTRACTS.md`): incidents, metrics, playbooks and silences name them.

use heal::Issue;

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $s:literal, )+) => {
        /// An issue code of the store.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( $(#[$doc])* $variant, )+
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$( Code::$variant, )+];

            /// The code as issues, incidents and the API spell it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Code::$variant => $s, )+
                }
            }
        }
    };
}

codes! {
    /// Acknowledged records lost beyond every redundancy (a [`LostRange`](crate::LostRange)).
    AcknowledgedDataLost = "acknowledged_data_lost",
    /// A block of an immutable file fails its checksum.
    BlockChecksum = "block_checksum",
    /// Compaction failed after a commit.
    CompactionFailed = "compaction_failed",
    /// A derived index's files are damaged (a checksum, a missing file).
    DerivedDamaged = "derived_damaged",
    /// A derived index's structure is unhealthy (reachability, recall, balance, staleness of training).
    DerivedStructure = "derived_structure",
    /// Free space below `disk_critical_bytes_floor`: writes refused.
    DiskSpaceCritical = "disk_space_critical",
    /// Free space below `disk_low_bytes_floor`: a warning.
    DiskSpaceLow = "disk_space_low",
    /// A data file cannot be read or is missing.
    FileUnreadable = "file_unreadable",
    /// An immutable file's identity sidecar is damaged or missing.
    IdentitySidecarDamaged = "identity_sidecar_damaged",
    /// The `LOCK` file's content is damaged or gone.
    LockFileDamaged = "lock_file_damaged",
    /// The lock's heartbeat could not be written.
    LockHeartbeatFailed = "lock_heartbeat_failed",
    /// One copy of the manifest is damaged or stale.
    ManifestCopyDamaged = "manifest_copy_damaged",
    /// Both manifest copies were unusable and the manifest was rebuilt from the files.
    ManifestRebuilt = "manifest_rebuilt",
    /// An entry of the in-memory table fails its checksum or disagrees with the log.
    MemoryTableMismatch = "memory_table_mismatch",
    /// Open-segment records damaged in the mirror copy.
    MirrorDamaged = "mirror_damaged",
    /// A parity sidecar is damaged.
    ParityDamaged = "parity_damaged",
    /// A file and its parity disagree.
    ParityMismatch = "parity_mismatch",
    /// A resource of the process or machine ran out (descriptors, memory): never damage.
    ResourceExhausted = "resource_exhausted",
    /// Rotating to a new WAL segment failed.
    RotationFailed = "rotation_failed",
    /// A snapshot and the log replayed over it disagree.
    SnapshotLogDisagree = "snapshot_log_disagree",
    /// This process cannot prove it is the only writer of its data directory.
    SoleWriterUnproven = "sole_writer_unproven",
    /// A derived index is behind the log.
    StaleDerived = "stale_derived",
    /// A `LOCK` left by a process that is gone.
    StaleLock = "stale_lock",
    /// A failed fsync: the store stopped writing.
    StorePoisoned = "store_poisoned",
    /// A partial record at the end of the open segment.
    TornTail = "torn_tail",
    /// The log has grown past `wal_bytes_max` without a compaction.
    WalOverBound = "wal_over_bound",
    /// Open-segment records damaged in the main copy.
    WalRecordDamaged = "wal_record_damaged",
    /// A write to the WAL failed (not for lack of space, not an fsync).
    WalWriteFailed = "wal_write_failed",
}

impl Code {
    /// The code named `s`, if the store emits it.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// The store's code of `issue` (`None`: another subject's issue).
    pub fn of(issue: &Issue) -> Option<Code> {
        Code::parse(&issue.code)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Code> for String {
    fn from(c: Code) -> String {
        c.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for &c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert_eq!(Code::parse(c.as_str()), Some(c));
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{c}"
            );
        }
        assert_eq!(Code::parse("latency_anomaly"), None);
    }

    /// The invariant of this module: no other source file of the crate spells a code as a string literal, so every
    /// emitter and every strategy goes through [`Code`].
    #[test]
    fn no_other_source_file_spells_a_code() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src];
        let mut offenders = Vec::new();
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") || p.ends_with("issues.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for &c in Code::ALL {
                if text.contains(&format!("\"{}\"", c.as_str())) {
                    offenders.push(format!("{} spells {c:?}", p.display()));
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:#?}");
    }
}
