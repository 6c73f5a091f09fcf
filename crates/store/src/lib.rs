//! # store — medic's embedded document database
//!
//! Owns every file of a data directory: write-ahead log, snapshots, parity, manifest, lock. Implements the engine's
//! traits (`heal::Subject`, `heal::HealthCheck`, `heal::RepairStrategy`) for itself. The on-disk format, the commit
//! steps and why a crash at any point is safe are in `crates/store/FORMAT.md`.
//!
//! The public surface is what this file re-exports (the `Store` facade, its configuration, errors and states, the
//! derived-data contract, the subject) plus the modules other crates reach into on purpose: `collection` and
//! `codec` (documents and settings), `derived` (the contract indexes implement), `lock` and `io` (the lock's holder,
//! fault hooks), `layout`, `manifest` and `parity` (files, for reports and tests), `fault` and `chaos` (the fault
//! injector). Everything else — the log, snapshots, identity sidecars, recovery, compaction, group commit — is
//! private to the crate.

mod ahead;
pub mod chaos;
pub mod codec;
pub mod collection;
mod commit;
mod compaction;
mod config;
pub mod derived;
mod error;
pub mod fault;
mod gather;
mod identity;
pub mod io;
mod issues;
pub mod layout;
pub mod lock;
mod loss;
pub mod manifest;
pub mod parity;
mod read_only;
mod recovery;
mod repair;
mod snapshot;
pub mod store;
mod subject;
mod table;
mod verify;
mod wal;

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
pub use subject::{BackupFile, StoreSubject, backup_files_of};

#[cfg(test)]
mod tests {
    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Store>();
        check::<super::StoreSubject>();
    }
}
