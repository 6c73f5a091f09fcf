//! [`StoreConfig`] and [`Limits`]: every size the store accepts or keeps has a named bound here, with a default.

use std::sync::Arc;

use crate::io::IoFaults;

/// Bounds on what a caller may store. Every one is named in the error that enforces it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest document id, bytes.
    pub id_bytes_max: u64,
    /// Longest document text, bytes.
    pub text_bytes_max: u64,
    /// Longest metadata object, bytes of its JSON.
    pub meta_bytes_max: u64,
    /// Largest vector dimension.
    pub vector_dim_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            id_bytes_max: 256,
            text_bytes_max: 1 << 20,
            meta_bytes_max: 64 << 10,
            vector_dim_max: 4096,
        }
    }
}

/// How a store is opened. Every field has a default.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Vector dimension; `None`: fixed by the first put that has a vector.
    pub vector_dim: Option<u32>,
    /// Input bounds.
    pub limits: Limits,
    /// Fault hooks every write and fsync goes through (byte quota, latency, failing fsync).
    pub io: Arc<IoFaults>,
    /// A WAL segment is sealed (and gets parity) once it reaches this size.
    pub segment_bytes_max: u64,
    /// When the log (all segments) grows past this, a snapshot is taken and covered segments are dropped.
    pub wal_bytes_max: u64,
    /// Parity block size, bytes (even).
    pub block_bytes: u32,
    /// Data blocks per parity group.
    pub parity_data_blocks: u16,
    /// Parity blocks per group: this many damaged blocks per group can be rebuilt.
    pub parity_blocks: u16,
    /// Keep a mirror of the open WAL segment (the open segment's redundancy). Off only to measure its cost.
    pub mirror_open_segment: bool,
    /// Below this much free space (disk or quota) the store asks for compaction (`disk_space_low`).
    pub disk_low_bytes_floor: u64,
    /// Below this much free space the store turns read-only until space returns.
    pub disk_critical_bytes_floor: u64,
    /// Blocks sampled by the quick check.
    pub quick_check_sample_blocks: u32,
    /// Bytes of the open segment the quick check compares with its mirror per run (a window moving on each run, so
    /// the whole open segment is compared every `segment length / this` runs); 0: none.
    pub quick_check_open_segment_bytes: u64,
    /// Issues queued for the engine at most; older ones are dropped (and counted) beyond this.
    pub issues_queued_max: usize,
    /// Largest `put_batch`, bytes of its records as queued for the WAL (length, checksum, fixed fields, id and
    /// document of each; not the 8-byte batch mark each gets as it is written, see `codec::mark_batch`); a larger
    /// batch is refused whole (`TooLarge`, nothing written). A batch shares its group
    /// commit with concurrent single writes, which are not counted against it.
    pub commit_batch_bytes_max: u64,
    /// Records the change feed to the derived indexes holds at most; a commit that finds it full drops its batch
    /// from the feed (never waits), and the indexes catch up from the log instead.
    pub derived_feed_records_max: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            vector_dim: None,
            limits: Limits::default(),
            io: Arc::new(IoFaults::default()),
            segment_bytes_max: 64 << 20,
            wal_bytes_max: 512 << 20,
            block_bytes: 4096,
            parity_data_blocks: 16,
            parity_blocks: 4,
            mirror_open_segment: true,
            disk_low_bytes_floor: 256 << 20,
            disk_critical_bytes_floor: 64 << 20,
            quick_check_sample_blocks: 64,
            quick_check_open_segment_bytes: 4 << 20,
            issues_queued_max: 1024,
            commit_batch_bytes_max: 16 << 20,
            derived_feed_records_max: crate::derived::FEED_RECORDS_MAX,
        }
    }
}

impl StoreConfig {
    /// Checks the bounds relate sensibly.
    pub(crate) fn validate(&self) -> Result<(), crate::StoreError> {
        let bad = |m: &str| {
            Err(crate::StoreError::InvalidInput(format!(
                "store config: {m}"
            )))
        };
        if self.block_bytes < 64 || !self.block_bytes.is_multiple_of(64) {
            return bad("block_bytes must be a multiple of 64, at least 64");
        }
        if self.parity_data_blocks == 0 || self.parity_blocks == 0 {
            return bad("parity_data_blocks and parity_blocks must be at least 1");
        }
        if self.segment_bytes_max < 4096 {
            return bad("segment_bytes_max must be at least 4096");
        }
        if self.wal_bytes_max < self.segment_bytes_max {
            return bad("wal_bytes_max must be at least segment_bytes_max");
        }
        if self.disk_critical_bytes_floor > self.disk_low_bytes_floor {
            return bad("disk_critical_bytes_floor must not exceed disk_low_bytes_floor");
        }
        if self.limits.id_bytes_max > u16::MAX as u64 {
            return bad("id_bytes_max must fit in 16 bits");
        }
        Ok(())
    }
}
