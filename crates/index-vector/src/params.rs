//! The HNSW index's parameters and every size limit of the crate.
//!
//! Owns [`HnswParams`] (serde, `Default`, [`HnswParams::validate`] naming the key, value and accepted range) and the
//! named limits. Structural parameters (metric, `m`, `m0`, `ef_construction`, `seed`) shape the graph and are
//! stored in the index file: a file built with others is not used (the index is rebuilt). `ef_search` and the
//! compaction threshold are read at run time and may change freely.

use serde::{Deserialize, Serialize};

use crate::distance::Metric;

/// Largest vector dimension an index takes.
pub const DIM_MAX: usize = 65_536;
/// Largest `m` (links per node on the upper layers; layer 0 holds `m0`).
pub const M_MAX: usize = 128;
/// Largest `ef_construction` and `ef_search`.
pub const EF_MAX: usize = 10_000;
/// Largest `k` of one search.
pub const K_MAX: usize = 10_000;
/// Highest layer a node is given (the geometric draw is capped there).
pub const LEVEL_MAX: u8 = 16;
/// Largest number of nodes (slots, tombstones included) one index holds.
pub const NODES_MAX: usize = (u32::MAX - 1) as usize;
/// Largest id, bytes (the store's own limit is lower).
pub const ID_BYTES_MAX: usize = 64 * 1024;

/// Parameters of an HNSW index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HnswParams {
    /// How vectors are compared.
    pub metric: Metric,
    /// Links per node on layers above 0 (and how many a new node picks on each layer).
    pub m: usize,
    /// Links per node on layer 0; `2 m` unless set.
    pub m0: usize,
    /// Candidates explored while inserting.
    pub ef_construction: usize,
    /// Candidates explored by a search unless the query names its own.
    pub ef_search: usize,
    /// Seed of the level draw: the same documents inserted in the same order give the same graph.
    pub seed: u64,
    /// Tombstone fraction (of all nodes) above which compaction rebuilds the graph without them.
    pub compact_tombstone_fraction: f64,
    /// Sampled recall@10 below which the graph is a problem (`recall_below_floor`, repaired by rebuilding it).
    pub recall_floor: f64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            metric: Metric::Cosine,
            m: 16,
            m0: 32,
            ef_construction: 100,
            ef_search: 64,
            seed: 0x6d65_6469_6368_6e73,
            compact_tombstone_fraction: 0.2,
            recall_floor: 0.8,
        }
    }
}

/// A parameter outside its range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("vector index parameter {key} = {value} is outside {range}")]
pub struct ParamsError {
    /// The parameter's name.
    pub key: &'static str,
    /// Its value, as written.
    pub value: String,
    /// The accepted range.
    pub range: &'static str,
}

impl HnswParams {
    /// Defaults with the metric given.
    pub fn with_metric(metric: Metric) -> Self {
        HnswParams {
            metric,
            ..HnswParams::default()
        }
    }

    /// Checks every parameter against its range.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let err = |key, value: String, range| Err(ParamsError { key, value, range });
        if !(2..=M_MAX).contains(&self.m) {
            return err("m", self.m.to_string(), "2..=128");
        }
        if !(self.m..=2 * M_MAX).contains(&self.m0) {
            return err("m0", self.m0.to_string(), "m..=256");
        }
        if !(1..=EF_MAX).contains(&self.ef_construction) {
            return err(
                "ef_construction",
                self.ef_construction.to_string(),
                "1..=10000",
            );
        }
        if !(1..=EF_MAX).contains(&self.ef_search) {
            return err("ef_search", self.ef_search.to_string(), "1..=10000");
        }
        let f = self.compact_tombstone_fraction;
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return err("compact_tombstone_fraction", f.to_string(), "(0, 1]");
        }
        if !(0.0..=1.0).contains(&self.recall_floor) {
            return err("recall_floor", self.recall_floor.to_string(), "[0, 1]");
        }
        Ok(())
    }

    /// Whether a graph built with `other` is a graph these parameters would build.
    pub(crate) fn same_structure(&self, other: &HnswParams) -> bool {
        self.metric == other.metric
            && self.m == other.m
            && self.m0 == other.m0
            && self.ef_construction == other.ef_construction
            && self.seed == other.seed
    }

    /// The level multiplier `1 / ln m` of the geometric level draw.
    pub(crate) fn level_mult(&self) -> f64 {
        1.0 / (self.m as f64).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        HnswParams::default().validate().unwrap();
        let e = HnswParams {
            m: 1,
            ..HnswParams::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "m");
        let e = HnswParams {
            compact_tombstone_fraction: 0.0,
            ..HnswParams::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "compact_tombstone_fraction");
    }
}
