//! [`IndexFile`]: the one file of a derived index written whole (`flat.bin`, `ivf.bin`) — where it lives, reading it
//! at open (a missing, unreadable or damaged file is a reason to open empty, never an error), writing it through
//! `store::io::write_file_atomic` (the store's fault hooks reach it) and checking it for damage.
//!
//! Invariant: once this process persisted the file, its disappearance is damage (`persist` reports
//! [`DerivedError::Damaged`], `damage` names it): deleting `idx/` forces a rebuild.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use store::derived::{DerivedError, index_dir_rel};
use store::io::{self, IoFaults};

use crate::file::FileError;
use crate::hnsw::{OpenError, OpenReport};

/// One index's file. See the module doc.
#[derive(Debug)]
pub(crate) struct IndexFile {
    /// The index's name (`flat`, `ivf`), in errors.
    name: &'static str,
    dir: PathBuf,
    path: PathBuf,
    faults: Arc<IoFaults>,
    /// The applied LSN of the last file written by this process, or of the file opened.
    persisted: AtomicU64,
}

impl IndexFile {
    /// The file `file_name` of index `name` of `collection` under `data_dir` (`idx/<collection>/<name>/`); a
    /// collection name that cannot be a directory is refused.
    pub(crate) fn new(
        data_dir: &Path,
        collection: &str,
        name: &'static str,
        file_name: &str,
        faults: Arc<IoFaults>,
    ) -> Result<IndexFile, OpenError> {
        if collection.is_empty()
            || collection.len() > 255
            || collection.contains(['/', '\\', '\0'])
            || collection == "."
            || collection == ".."
        {
            return Err(OpenError::Collection(collection.to_string()));
        }
        let dir = data_dir.join(index_dir_rel(collection, name));
        Ok(IndexFile {
            name,
            path: dir.join(file_name),
            dir,
            faults,
            persisted: AtomicU64::new(0),
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and decodes the file: the value, or why there is none (missing, unreadable, damaged).
    pub(crate) fn load<T>(
        &self,
        decode: impl FnOnce(&[u8]) -> Result<T, FileError>,
    ) -> Result<T, String> {
        let path = self.path.display();
        if let Some(what) = io::not_a_directory(&self.dir) {
            // Never read through a link: the file there is another index's (or nobody's).
            return Err(what);
        }
        match io::read_file(&self.faults, &self.path) {
            Ok(bytes) => decode(&bytes).map_err(|e| format!("{path}: damaged: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(format!("{path}: no index file"))
            }
            Err(e) => Err(format!("{path}: cannot read: {}", io::reason(&e))),
        }
    }

    /// The report of an open that loaded applied LSN `applied` (or found `reason` not to); remembers `applied` as
    /// persisted.
    pub(crate) fn opened(&self, reason: Option<String>, applied: u64) -> OpenReport {
        self.persisted.store(applied, Ordering::Release);
        OpenReport {
            path: self.path.clone(),
            loaded: reason.is_none(),
            reason,
            applied_lsn: applied,
        }
    }

    /// The LSN last persisted.
    pub(crate) fn persisted(&self) -> u64 {
        self.persisted.load(Ordering::Acquire)
    }

    /// Forgets what was persisted (a rebuild or a repair replaced the state: the next persist writes).
    pub(crate) fn forget(&self) {
        self.persisted.store(0, Ordering::Release);
    }

    /// Writes the file when `applied` is not what was persisted (or the file is missing); `encode` gives the bytes
    /// and the LSN they hold. A file this process wrote that is gone is damage.
    pub(crate) fn persist(
        &self,
        applied: u64,
        encode: impl FnOnce() -> (Vec<u8>, u64),
    ) -> Result<u64, DerivedError> {
        let persisted = self.persisted();
        // Through a link the file seen is another index's: as good as missing (written anew, the link moved aside).
        let exists = self.path.is_file() && io::not_a_directory(&self.dir).is_none();
        if persisted > 0 && !exists {
            return Err(DerivedError::Damaged {
                index: self.name.into(),
                reason: io::not_a_directory(&self.dir).unwrap_or_else(|| {
                    format!(
                        "{} was removed (persisted LSN {persisted})",
                        self.path.display()
                    )
                }),
            });
        }
        if applied == persisted && exists {
            return Ok(applied);
        }
        let (bytes, lsn) = encode();
        let io_err = |context: &str, source| DerivedError::Io {
            index: self.name.into(),
            context: format!("{context} {}", self.path.display()),
            source,
        };
        store::io::move_aside_non_directory(&self.dir)
            .map(drop)
            .map_err(|e| {
                io_err(
                    "moving aside what is not a directory at the directory of",
                    e,
                )
            })?;
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("creating the directory of", e))?;
        io::write_file_atomic(&self.faults, &self.path, &bytes)
            .map_err(|e| io_err("writing", e))?;
        self.persisted.store(lsn, Ordering::Release);
        Ok(lsn)
    }

    /// The file's damage, if any: missing after a persist, checksums and lengths (`verify` returns the LSN it
    /// holds), another LSN than persisted.
    pub(crate) fn damage(
        &self,
        verify: impl FnOnce(&[u8]) -> Result<u64, FileError>,
    ) -> Vec<String> {
        let path = self.path.display();
        let persisted = self.persisted();
        if let Some(what) = io::not_a_directory(&self.dir) {
            return vec![what];
        }
        match io::read_file(&self.faults, &self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if persisted > 0 {
                    vec![format!("{path}: missing (persisted LSN {persisted})")]
                } else {
                    Vec::new()
                }
            }
            Err(e) if io::is_resource(&e) => Vec::new(),
            Err(e) => vec![format!("{path}: cannot read: {}", io::reason(&e))],
            Ok(bytes) => match verify(&bytes) {
                Err(e) => vec![format!("{path}: {e}")],
                Ok(lsn) if lsn != persisted => vec![format!(
                    "{path}: holds LSN {lsn}, the index persisted {persisted}"
                )],
                Ok(_) => Vec::new(),
            },
        }
    }
}
