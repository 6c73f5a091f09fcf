//! The store's one error enum, [`StoreError`]. Every variant says what was wrong and where; user errors
//! (bad input, too large) are told apart from storage errors so the HTTP layer can answer 4xx vs 5xx.

/// Everything that can go wrong in the store.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// Bad input from the caller: a bad id, a non-finite vector, a wrong dimension, meta not an object.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An input exceeds a named limit.
    #[error("{what} is {actual} bytes, over the limit {what}_bytes_max = {limit}")]
    TooLarge {
        /// What was too large (`id`, `text`, `meta`, `vector`, `record`).
        what: &'static str,
        /// The limit.
        limit: u64,
        /// The actual size.
        actual: u64,
    },
    /// No collection of that name (or it is being dropped): a 404.
    #[error("{0}")]
    UnknownCollection(String),
    /// The collection exists with other settings, or is being dropped: a 409.
    #[error("{0}")]
    CollectionConflict(String),
    /// The store refuses writes for now, and why ([`ReadOnly`](crate::read_only::ReadOnly): disk space, a loss, a
    /// CRISIS hold, opened to read); reads continue.
    #[error("{0}")]
    ReadOnly(crate::read_only::ReadOnly),
    /// Another live process holds the data directory's lock.
    #[error("data directory is locked by {holder}")]
    Locked {
        /// Who holds it: pid, host, start time.
        holder: String,
    },
    /// Damage that redundancy could not undo, precisely located.
    #[error("corrupt: {what} at {location:?}")]
    Corrupt {
        /// What is damaged.
        what: String,
        /// Where.
        location: heal::Location,
    },
    /// The answer could be wrong: acknowledged records that may have changed it (updated, deleted or created the
    /// document) were lost beyond every redundancy, as found on open. The store's own trouble, not the caller's;
    /// it lasts until the lost file is restored and the store reopened, or an operator accepts the loss
    /// (`Store::accept_loss`).
    #[error(
        "{what} may be stale: records LSN {}..={} of {file} were lost ({reason}); restore {file} from a backup and \
         restart medic, or accept the loss (`medic accept-loss --yes`) to serve what survives",
        .lsn_range.0,
        .lsn_range.1
    )]
    MayBeStale {
        /// What was asked for (`document "a1"`, `the scan`).
        what: String,
        /// The file whose records were lost.
        file: String,
        /// Where in it the loss starts, if known (`None`: the whole file is gone).
        offset: Option<u64>,
        /// The LSNs lost, inclusive.
        lsn_range: (u64, u64),
        /// Why they are lost.
        reason: String,
    },
    /// A failed fsync: the store stopped writing, because the kernel may have dropped dirty pages it now calls clean.
    #[error("poisoned: {0}; the store stopped writing, reopen to recover")]
    Poisoned(String),
    /// This process can no longer prove it is the only writer of its data directory (see
    /// [`WriterDoubt`](crate::lock::WriterDoubt) for why): writes are refused, reads go on. The store's trouble
    /// (HTTP 503), not the caller's.
    #[error("not writing: {0}")]
    NotSoleWriter(crate::lock::WriterDoubt),
    /// A data file's path is a symbolic link, which the store never follows (a planted link would redirect its reads
    /// and writes into a file elsewhere). Open refuses it, naming the link and its target.
    #[error(
        "{0}; replace the link with the file itself (or move the whole data directory) and open again"
    )]
    SymlinkRefused(crate::io::SymlinkRefused),
    /// An I/O error, with what the store was doing.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True for errors caused by the caller's input (answer 4xx), false for the store's own trouble.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidInput(_)
                | StoreError::TooLarge { .. }
                | StoreError::UnknownCollection(_)
                | StoreError::CollectionConflict(_)
        )
    }

    /// True for a lack of some resource of the process or machine (descriptors, memory, space, an interrupted call;
    /// see [`crate::io::is_resource`]): an environment issue that goes away by itself, never damage to the data.
    pub fn is_resource(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if crate::io::is_resource(source))
    }

    /// An error opening or reading a data file: a refused symbolic link becomes [`StoreError::SymlinkRefused`].
    pub(crate) fn from_open(context: impl Into<String>, source: std::io::Error) -> Self {
        match crate::io::symlink_refused(&source) {
            Some(l) => StoreError::SymlinkRefused(l.clone()),
            None => StoreError::io(context, source),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, location: heal::Location) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            location,
        }
    }
}

/// A `Location` naming a file and byte range.
pub(crate) fn loc(file: impl Into<String>, offset: u64, len: u64) -> heal::Location {
    heal::Location {
        file: Some(file.into()),
        offset: Some(offset),
        len: Some(len),
        lsn_range: None,
    }
}
