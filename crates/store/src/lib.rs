//! # store — medic's embedded document database
//!
//! Owns every file of a data directory: write-ahead log, snapshots, parity, manifest, lock. Implements the engine's
//! traits (`heal::Subject`, `heal::HealthCheck`, `heal::RepairStrategy`) for itself.

pub mod chaos;
pub mod fault;
