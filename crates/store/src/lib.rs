//! # store — medic's embedded document database
//!
//! Owns every file of a data directory: write-ahead log, snapshots, parity, manifest, lock. Implements the engine's
//! traits (`heal::Subject`, `heal::HealthCheck`, `heal::RepairStrategy`) for itself. The on-disk format, the commit
//! steps and why a crash at any point is safe are in `crates/store/FORMAT.md`.

pub mod chaos;
pub mod codec;
pub mod collection;
mod compaction;
pub mod config;
pub mod derived;
pub mod error;
pub mod fault;
mod gather;
pub mod identity;
pub mod io;
pub mod issues;
pub mod layout;
pub mod lock;
pub mod loss;
pub mod manifest;
pub mod parity;
pub mod read_only;
mod recovery;
pub mod snapshot;
pub mod store;
pub mod subject;
mod table;
mod verify;
pub mod wal;

pub use codec::Document;
pub use collection::{CollectionInfo, CollectionState, Created, Settings as CollectionSettings};
pub use config::{Limits, StoreConfig};
pub use derived::{Agreement, Change, DerivedError, DerivedIndex, Truth};
pub use error::StoreError;
pub use io::IoFaults;
pub use issues::Code as IssueCode;
pub use read_only::{DiskSpace, ReadOnly};
pub use store::{
    DataFile, FileVerdict, ImmutableFile, LossAcceptance, LostRange, RESERVED_ID_PREFIX,
    RecoveryReport, SegmentDamage, Store, StoreStats, TornTail,
};
pub use subject::StoreSubject;

#[cfg(test)]
mod tests {
    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Store>();
        check::<super::StoreSubject>();
    }
}
