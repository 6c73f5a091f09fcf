//! # index-vector — medic's vector indexes
//!
//! HNSW (and IVF) indexes per collection under `idx/<collection>/<hnsw|ivf>/`, derived from the store's log through
//! [`store::derived::DerivedIndex`]: rebuilt whenever they are missing, damaged or behind what the log still covers.
//!
//! API boundary: [`FlatIndex`] (exact search, the `flat` derived index the daemon serves), [`HnswIndex`] (open, the [`store::derived::DerivedIndex`] contract, `search` / `exact`, `health`,
//! repairs, fault hooks: [`GraphFault`] in memory, [`FileFault`] on disk), [`HnswParams`], [`Metric`], [`HnswHealth`], [`scan`] (the reference search: a scan of the store's
//! table), [`synth`] (seeded data for tests and benches).

mod distance;
mod file;
mod file_fault;
mod flat;
mod graph;
mod health;
mod hnsw;
mod ivf;
mod params;
mod repair;
pub mod scan;
mod stored;
pub mod synth;

pub use distance::{Metric, VectorError, dot, l2_squared};
pub use file::{FILE_NAME, FileError};
pub use file_fault::{FileFault, FileFaultError, ZERO_BYTES_MAX, ZERO_BYTES_MIN};
pub use flat::{COMPACT_DEAD_MIN, FlatIndex};
/// The flat index's name and file name.
pub mod flat_names {
    pub use crate::flat::{FILE_NAME, NAME};
}
pub use health::{
    COMPACT_TOMBSTONES_MIN, HealthOptions, HnswHealth, LevelCount, RECALL_BELOW_FLOOR,
};
pub use hnsw::{
    APPLY_CHUNK, ENTRY_POINT, Hit, HnswIndex, NAME, OpenError, OpenReport, RELINK_BUDGET,
    RepairReport, SearchError, TOMBSTONES, UNREACHABLE_FRACTION_MAX, UNREACHABLE_NODES,
};
pub use ivf::{IvfHealth, IvfHits, IvfIndex, IvfParams, LISTS_MAX, RETRAIN, RETRAIN_RECALL_SLACK};
/// The IVF index's name and file name.
pub mod ivf_names {
    pub use crate::ivf::{FILE_NAME, NAME};
}
pub use params::{
    DIM_MAX, EF_MAX, HnswParams, ID_BYTES_MAX, K_MAX, LEVEL_MAX, M_MAX, NODES_MAX, ParamsError,
};
pub use repair::{FaultReport, GraphFault, Relinked};

/// Recall of `approx` against `exact` (both nearest first): the fraction of `exact`'s hits found, by distance — an
/// approximate hit no farther than the last exact one counts, so ties (duplicate vectors) are not misses.
pub fn recall(exact: &[Hit], approx: &[Hit]) -> f64 {
    let Some(last) = exact.last() else {
        return 1.0;
    };
    let tol = 1e-6_f32.max(last.distance.abs() * 1e-5);
    let found = approx
        .iter()
        .filter(|a| a.distance <= last.distance + tol)
        .count()
        .min(exact.len());
    found as f64 / exact.len() as f64
}
