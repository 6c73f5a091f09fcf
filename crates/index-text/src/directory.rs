//! [`HeldDirectory`]: a tantivy `Directory` over one generation directory held open by its file descriptor.
//!
//! Written by hand because tantivy's `MmapDirectory` works by path: it joins the directory's path for every file it
//! opens, writes, renames or deletes, so once an operator replaces `idx/<c>/text` (or the generation directory) by a
//! link to another collection's index, the writer's own threads — merges, garbage collection, `.managed.json`,
//! `meta.json`, temporary files — would write and delete through the link into the other index before medic
//! notices the swap. Here the generation directory is opened once (`O_DIRECTORY | O_NOFOLLOW`) and every operation
//! is relative to that descriptor (`openat`, `renameat`, `unlinkat`, `statat`), each with `O_NOFOLLOW`:
//!
//! - a directory moved away keeps receiving the writes (it is the one held), a removed one refuses them (a removed
//!   directory takes no new entries); whatever is at its path now is never touched;
//! - names are flat file names (tantivy uses no subdirectories); a name with a separator, `.` or `..` is refused;
//! - a symbolic link at a file's name is refused on read, write and delete with an error naming the file, never
//!   followed (an atomic write renames over the name, which replaces a link itself, never its target);
//! - reads ([`Directory::get_file_handle`]) read the whole file into memory — one read through the descriptor
//!   opened with `O_NOFOLLOW` — and check it before handing it out: the body's CRC32 against tantivy's footer
//!   (`loaded`); a file whose footer is missing, cut or does not match is an `io::Error` of kind `InvalidData`
//!   naming the file, so opening or reloading the reader fails as damage. The bytes of a file are shared by every
//!   reader of it while one is in use (a reader reload opens every segment's files again; tantivy's segment files
//!   are written once under names never used again). Nothing a searcher, a commit or a merge reads can change or
//!   vanish under it afterwards: a file truncated or overwritten on disk is no SIGBUS and no wrong answer (the
//!   `watch` finds it so the index is rebuilt). The cost is memory: the segments in use live in the heap, about
//!   the size of their files (BENCHMARKS);
//! - writes go through a buffered writer whose termination flushes and `fdatasync`s; `atomic_write` is a temporary
//!   `.tmp…` file (what open removes when a killed process left one), `fdatasync` and `renameat` over the name (no
//!   directory `fsync` after it, as in tantivy's own directory: see `write_atomically`);
//! - tantivy's lock files are taken with kernel locks on files opened relative to the descriptor (released with the
//!   process, so a crash leaves no stale lock);
//! - `watch` never fires: medic's reader reloads by hand ([`tantivy::ReloadPolicy::Manual`]) after each commit.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::footer::Footer;
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, FileSlice, Lock, OwnedBytes,
    TerminatingWrite, WatchCallback, WatchHandle, WritePtr,
};

/// Distinguishes the temporary files of concurrent atomic writes in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A generation directory held by its descriptor (see the module doc). Clones share the descriptor.
#[derive(Clone)]
pub(crate) struct HeldDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    fd: OwnedFd,
    /// The path it was opened at, for messages only: nothing is opened through it again.
    path: PathBuf,
    /// The checked bytes of the files in use, by name, shared by every reader of a file (a reader reload opens
    /// every segment's files again); a file's entry goes when it is deleted or replaced through this directory.
    loaded: Mutex<HashMap<OsString, Weak<Vec<u8>>>>,
}

/// A file's shared bytes as the owner of tantivy's `OwnedBytes`.
struct Shared(Arc<Vec<u8>>);

impl std::ops::Deref for Shared {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

// SAFETY: the bytes live in the vector's heap buffer, which the `Arc` keeps alive and nothing mutates once it is
// shared; moving the `Shared` (or the `Arc`) moves neither the buffer nor its address.
#[allow(unsafe_code)]
unsafe impl stable_deref_trait::StableDeref for Shared {}

impl fmt::Debug for HeldDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeldDirectory({})", self.inner.path.display())
    }
}

/// The flat file name `path` stands for; `Err` for anything else (a separator, `.`, `..`, a root, nothing).
fn file_name(path: &Path) -> io::Result<&OsStr> {
    let mut parts = path.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(name)), None) => Ok(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: not a file name of the index directory (separators, `.` and `..` are refused)",
                path.display()
            ),
        )),
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl HeldDirectory {
    /// The held descriptor, for looking at files relative to it (`watch`).
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.inner.fd.as_fd()
    }

    /// Opens the directory at `path`; a link at `path` is refused, never followed.
    pub(crate) fn open(path: &Path) -> io::Result<HeldDirectory> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(rustix::fs::CWD, path, flags, Mode::empty()).map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(
                e.kind(),
                format!("{}: open the index directory: {e}", path.display()),
            )
        })?;
        Ok(HeldDirectory {
            inner: Arc::new(Inner {
                fd,
                path: path.to_path_buf(),
                loaded: Mutex::default(),
            }),
        })
    }

    /// The error of an open that met a symbolic link at `name` (`ELOOP` under `O_NOFOLLOW`, `EEXIST` under
    /// `O_EXCL`), or `e` as it is.
    fn explain(&self, name: &OsStr, e: Errno) -> io::Error {
        let link = matches!(e, Errno::LOOP | Errno::EXIST) && self.is_link(name);
        if link {
            return self.link_refused(name);
        }
        io::Error::from(e)
    }

    fn is_link(&self, name: &OsStr) -> bool {
        rustix::fs::statat(&self.inner.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
        })
    }

    fn link_refused(&self, name: &OsStr) -> io::Error {
        io::Error::other(format!(
            "{}: a symbolic link in the index directory {}: refused, never followed",
            name.to_string_lossy(),
            self.inner.path.display()
        ))
    }

    /// Opens `name` relative to the held descriptor, never following a link.
    fn open_at(&self, name: &OsStr, flags: OFlags) -> io::Result<File> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&self.inner.fd, name, flags, Mode::from_raw_mode(0o644))
            .map(File::from)
            .map_err(|e| self.explain(name, e))
    }

    /// A new file `name` (`O_EXCL`: an existing entry — a link included — is `AlreadyExists` or refused).
    fn create_new(&self, name: &OsStr) -> io::Result<File> {
        self.open_at(name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL)
    }

    fn loaded(&self) -> MutexGuard<'_, HashMap<OsString, Weak<Vec<u8>>>> {
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole file `path`, read into memory and checked against its tantivy footer (module doc); shared while
    /// in use.
    fn read_handle(&self, path: &Path) -> io::Result<OwnedBytes> {
        let name = file_name(path)?;
        if let Some(bytes) = self.loaded().get(name).and_then(Weak::upgrade) {
            return Ok(OwnedBytes::new(Shared(bytes)));
        }
        let mut file = self.open_at(name, OFlags::RDONLY)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other(format!(
                "{}: not a regular file",
                path.display()
            )));
        }
        let named = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("{}: read: {e}", self.inner.path.join(name).display()),
            )
        };
        let bytes = read_whole(&mut file, meta.len()).map_err(named)?;
        let bytes = Arc::new(bytes);
        let owned = OwnedBytes::new(Shared(bytes.clone()));
        footer_checked(&owned).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {why} ({} bytes read): damaged or truncated",
                    self.inner.path.join(name).display(),
                    owned.len()
                ),
            )
        })?;
        let mut loaded = self.loaded();
        loaded.retain(|_, m| m.strong_count() > 0);
        loaded.insert(name.to_os_string(), Arc::downgrade(&bytes));
        Ok(owned)
    }

    fn write_atomically(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let name = file_name(path)?;
        let (temp, mut file) = loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp = format!(".tmp-{}-{n}-{}", std::process::id(), name.to_string_lossy());
            match self.create_new(OsStr::new(&temp)) {
                Ok(f) => break (temp, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        let written = file
            .write_all(data)
            .and_then(|()| file.sync_data())
            .and_then(|()| {
                rustix::fs::renameat(&self.inner.fd, temp.as_str(), &self.inner.fd, name)
                    .map_err(io::Error::from)
            });
        if let Err(e) = written {
            let _gone = rustix::fs::unlinkat(&self.inner.fd, temp.as_str(), AtFlags::empty());
            return Err(e);
        }
        self.loaded().remove(name);
        // No directory fsync after the rename (tantivy's own directory does none either): tantivy syncs the
        // directory before it writes `meta.json`, so the files a commit names are durable first; a rename lost to a
        // power cut leaves the previous `meta.json`, an older commit whose LSN the driver catches up from the log.
        // A sync here cost steady indexing (a commit every 250 documents) about a fifth of its rate.
        Ok(())
    }

    fn sync_held(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.inner.fd).map_err(io::Error::from)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let name = file_name(path)?;
        // `unlinkat` never follows a link; one is refused all the same, so the error names what is there.
        if self.is_link(name) {
            return Err(self.link_refused(name));
        }
        self.loaded().remove(name);
        rustix::fs::unlinkat(&self.inner.fd, name, AtFlags::empty()).map_err(io::Error::from)
    }
}

/// The whole of `file`, `len` bytes by its metadata, in one buffer (memory refused is `OutOfMemory`, not an abort).
/// A file that is shorter or longer now than `len` is read as it is: the footer check judges the bytes.
fn read_whole(file: &mut File, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "larger than the address space"))?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len)
        .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, format!("{len} bytes: {e}")))?;
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether `bytes` end with a tantivy footer whose CRC32 is the body's — what `ManagedDirectory::validate_checksum`
/// computes (tantivy 0.27). tantivy's public API has the footer parser ([`Footer::extract_footer`]) but not that
/// check on bytes in hand (`validate_checksum` opens the file again through the directory, which is this one),
/// so the body is hashed here with `crc32fast`, the hasher tantivy's `FooterProxy` uses as it writes. Every file
/// tantivy reads through [`Directory::get_file_handle`] carries a footer: they are all written through its
/// `ManagedDirectory`, which appends one, and read through it, which refuses a file without one (`meta.json` and
/// `.managed.json` are read with [`Directory::atomic_read`], lock files taken with [`Directory::acquire_lock`]:
/// neither comes here). So a file without a footer — an empty one, one cut anywhere — is damage.
fn footer_checked(bytes: &OwnedBytes) -> Result<(), String> {
    let slice = FileSlice::new(Arc::new(bytes.clone()));
    let (footer, body) = Footer::extract_footer(slice).map_err(|e| format!("footer: {e}"))?;
    let body = body.read_bytes().map_err(|e| format!("body: {e}"))?;
    let crc = crc32fast::hash(body.as_slice());
    if crc != footer.crc {
        return Err(format!(
            "checksum mismatch: the footer says CRC32 {:08x}, the body's is {crc:08x}",
            footer.crc
        ));
    }
    Ok(())
}

/// A file being written: bytes go to the file, termination makes them durable.
struct FileWriter(File);

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl TerminatingWrite for FileWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.0.flush()?;
        self.0.sync_data()
    }
}

impl Directory for HeldDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        match self.read_handle(path) {
            Ok(bytes) => Ok(Arc::new(bytes)),
            Err(e) if is_not_found(&e) => Err(OpenReadError::FileDoesNotExist(path.to_path_buf())),
            Err(e) => Err(OpenReadError::wrap_io_error(e, path.to_path_buf())),
        }
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.remove(path).map_err(|e| {
            if is_not_found(&e) {
                DeleteError::FileDoesNotExist(path.to_path_buf())
            } else {
                DeleteError::IoError {
                    io_error: Arc::new(e),
                    filepath: path.to_path_buf(),
                }
            }
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        let wrap = |e| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let name = file_name(path).map_err(wrap)?;
        match rustix::fs::statat(&self.inner.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(wrap(e.into())),
        }
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let name =
            file_name(path).map_err(|e| OpenWriteError::wrap_io_error(e, path.to_path_buf()))?;
        match self.create_new(name) {
            Ok(file) => Ok(BufWriter::new(Box::new(FileWriter(file)))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(OpenWriteError::FileAlreadyExists(path.to_path_buf()))
            }
            Err(e) => Err(OpenWriteError::wrap_io_error(e, path.to_path_buf())),
        }
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let read = file_name(path).and_then(|name| {
            let mut out = Vec::new();
            self.open_at(name, OFlags::RDONLY)?.read_to_end(&mut out)?;
            Ok(out)
        });
        read.map_err(|e| {
            if is_not_found(&e) {
                OpenReadError::FileDoesNotExist(path.to_path_buf())
            } else {
                OpenReadError::wrap_io_error(e, path.to_path_buf())
            }
        })
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.write_atomically(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.sync_held()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        let name = file_name(&lock.filepath).map_err(LockError::wrap_io_error)?;
        let file = self
            .open_at(name, OFlags::WRONLY | OFlags::CREATE)
            .map_err(LockError::wrap_io_error)?;
        if lock.is_blocking {
            file.lock().map_err(LockError::wrap_io_error)?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(LockError::LockBusy),
                Err(std::fs::TryLockError::Error(e)) => return Err(LockError::wrap_io_error(e)),
            }
        }
        // The kernel lock goes with the file: dropping the lock closes it.
        Ok(DirectoryLock::from(Box::new(file)))
    }

    fn watch(&self, _: WatchCallback) -> tantivy::Result<WatchHandle> {
        // Never fires: the reader is reloaded by hand after each commit (`ReloadPolicy::Manual`).
        Ok(WatchHandle::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use tantivy::schema::{STORED, Schema, TEXT};
    use tantivy::{Index, IndexSettings, TantivyDocument};

    fn held(dir: &Path) -> HeldDirectory {
        fs::create_dir_all(dir).unwrap();
        HeldDirectory::open(dir).unwrap()
    }

    /// Every entry under `dir` with its bytes (a link as its target's path).
    fn listing(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut out = std::collections::BTreeMap::new();
        for e in fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let bytes = match fs::read_link(e.path()) {
                Ok(to) => to.to_string_lossy().as_bytes().to_vec(),
                Err(_) => fs::read(e.path()).unwrap(),
            };
            out.insert(name, bytes);
        }
        out
    }

    #[test]
    fn a_link_at_a_file_name_is_refused_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("theirs"), b"their bytes").unwrap();
        let gen_dir = tmp.path().join("gen");
        let d = held(&gen_dir);
        for name in ["seg.idx", "x.lock"] {
            std::os::unix::fs::symlink(outside.join("theirs"), gen_dir.join(name)).unwrap();
        }
        let name = Path::new("seg.idx");
        let said = |e: String| {
            assert!(
                e.contains("seg.idx") && e.contains("symbolic link"),
                "names the file: {e}"
            );
        };
        said(d.get_file_handle(name).err().unwrap().to_string());
        said(d.atomic_read(name).unwrap_err().to_string());
        said(d.open_write(name).err().unwrap().to_string());
        said(d.delete(name).unwrap_err().to_string());
        assert!(d.exists(name).unwrap(), "a link is an entry");
        let lock = Lock {
            filepath: PathBuf::from("x.lock"),
            is_blocking: false,
        };
        // `LockError`'s text leaves its cause out; its debug form holds it.
        let e = format!("{:?}", d.acquire_lock(&lock).err().unwrap());
        assert!(e.contains("x.lock") && e.contains("symbolic link"), "{e}");
        for bad in ["../outside/theirs", "sub/file", "..", "/etc/passwd", ""] {
            let e = d.atomic_read(Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains("not a file name"), "{bad:?}: {e}");
            assert!(d.open_write(Path::new(bad)).is_err(), "{bad:?}");
            assert!(d.atomic_write(Path::new(bad), b"x").is_err(), "{bad:?}");
        }
        // An atomic write renames over the name: the link itself is replaced, its target untouched.
        d.atomic_write(name, b"ours").unwrap();
        assert!(
            fs::symlink_metadata(gen_dir.join("seg.idx"))
                .unwrap()
                .is_file()
        );
        assert_eq!(fs::read(gen_dir.join("seg.idx")).unwrap(), b"ours");
        assert_eq!(
            listing(&outside),
            [("theirs".to_string(), b"their bytes".to_vec())].into()
        );
    }

    /// `body` with the footer tantivy's `ManagedDirectory` appends: the JSON footer (version, CRC32 of the body),
    /// its length and the magic number, little-endian.
    fn with_footer(body: &[u8]) -> Vec<u8> {
        let footer = Footer {
            version: tantivy::version().clone(),
            crc: crc32fast::hash(body),
        };
        let json = serde_json::to_vec(&footer).unwrap();
        let mut out = body.to_vec();
        out.extend_from_slice(&json);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&1337u32.to_le_bytes());
        out
    }

    fn read(d: &HeldDirectory, name: &str) -> Result<OwnedBytes, OpenReadError> {
        Ok(d.open_read(Path::new(name))?.read_bytes().unwrap())
    }

    #[test]
    fn a_file_in_use_is_shared_and_a_deleted_or_replaced_file_is_read_anew() {
        let tmp = tempfile::tempdir().unwrap();
        let d = held(&tmp.path().join("gen"));
        let write = |name: &str, bytes: &[u8]| {
            let mut w = d.open_write(Path::new(name)).unwrap();
            w.write_all(&with_footer(bytes)).unwrap();
            w.terminate().unwrap();
        };
        write("seg", b"first");
        let first = read(&d, "seg").unwrap();
        let again = read(&d, "seg").unwrap();
        assert_eq!(
            first.as_slice().as_ptr(),
            again.as_slice().as_ptr(),
            "one copy in memory"
        );
        d.delete(Path::new("seg")).unwrap();
        assert!(matches!(
            d.delete(Path::new("seg")),
            Err(DeleteError::FileDoesNotExist(_))
        ));
        assert!(matches!(
            d.open_read(Path::new("seg")),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
        write("seg", b"second");
        let now = read(&d, "seg").unwrap();
        assert_eq!(now.as_slice(), with_footer(b"second"));
        assert_eq!(
            first.as_slice(),
            with_footer(b"first"),
            "a reader keeps the bytes it opened"
        );
        d.atomic_write(Path::new("seg"), &with_footer(b"third"))
            .unwrap();
        let now = read(&d, "seg").unwrap();
        assert_eq!(now.as_slice(), with_footer(b"third"));
    }

    /// The bytes handed out are the ones checked: what happens to the file afterwards changes none of them, and a
    /// file that does not match its footer is never handed out.
    #[test]
    fn a_file_is_read_whole_and_checked_and_later_damage_changes_nothing_read() {
        let tmp = tempfile::tempdir().unwrap();
        let gen_dir = tmp.path().join("gen");
        let d = held(&gen_dir);
        let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = with_footer(&body);
        fs::write(gen_dir.join("a.idx"), &whole).unwrap();
        let bytes = read(&d, "a.idx").unwrap();
        assert_eq!(bytes.as_slice(), whole);
        // Truncated, then overwritten, under the reader: the bytes in hand stay as checked (a map would SIGBUS).
        fs::OpenOptions::new()
            .write(true)
            .open(gen_dir.join("a.idx"))
            .unwrap()
            .set_len(10)
            .unwrap();
        assert_eq!(bytes.as_slice(), whole);
        fs::write(gen_dir.join("a.idx"), vec![0u8; whole.len()]).unwrap();
        assert_eq!(bytes.as_slice(), whole);
        drop(bytes);

        let invalid = |name: &str, what: &str| {
            let e = match read(&d, name) {
                Err(OpenReadError::IoError { io_error, .. }) => io_error,
                other => panic!("{what}: {other:?}"),
            };
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
            assert!(e.to_string().contains(name), "{what}: names the file: {e}");
            e.to_string()
        };
        // The file zeroed in place: no footer.
        invalid("a.idx", "zeroed");
        // Cut: anywhere in the body, in the footer, to nothing.
        for cut in [whole.len() / 2, whole.len() - 3, whole.len() - 20, 0] {
            fs::write(gen_dir.join("b.idx"), &whole[..cut]).unwrap();
            invalid("b.idx", &format!("cut at {cut}"));
        }
        // One bit flipped in the body: the checksum tells.
        let mut flipped = whole.clone();
        flipped[1234] ^= 0x10;
        fs::write(gen_dir.join("c.idx"), &flipped).unwrap();
        let why = invalid("c.idx", "a bit flipped");
        assert!(why.contains("checksum mismatch"), "{why}");
        // Put right, it reads again (a refused file is not remembered).
        fs::write(gen_dir.join("c.idx"), &whole).unwrap();
        assert_eq!(read(&d, "c.idx").unwrap().as_slice(), whole);
    }

    /// tantivy opening a segment whose file was cut on disk: the reader does not open (an `OpenReadError` naming
    /// the file, which the index counts as damage), where a map would have opened it and faulted on first read.
    #[test]
    fn a_reader_over_a_cut_segment_file_does_not_open_and_says_which_file() {
        let tmp = tempfile::tempdir().unwrap();
        let gen_dir = tmp.path().join("gen");
        let d = held(&gen_dir);
        let mut schema = Schema::builder();
        let text = schema.add_text_field("text", TEXT | STORED);
        let index = Index::create(d.clone(), schema.build(), IndexSettings::default()).unwrap();
        let mut writer: tantivy::IndexWriter =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..100 {
            let mut doc = TantivyDocument::default();
            doc.add_text(text, format!("document {i} of the segment"));
            writer.add_document(doc).unwrap();
        }
        writer.commit().unwrap();
        let reader = index.reader().unwrap();
        assert_eq!(reader.searcher().num_docs(), 100);
        drop(reader);
        let store = fs::read_dir(&gen_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "store"))
            .unwrap();
        let len = fs::metadata(&store).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&store)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let e = index.reader().err().expect("a reader over a cut file");
        let name = store.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            matches!(e, tantivy::TantivyError::OpenReadError(_)),
            "{e:?}"
        );
        assert!(e.to_string().contains(&name), "names the file: {e}");
    }

    #[test]
    fn an_atomic_write_leaves_the_old_or_the_new_content_never_a_part() {
        let tmp = tempfile::tempdir().unwrap();
        let d = held(&tmp.path().join("gen"));
        let name = Path::new("meta.json");
        const LEN: usize = 1 << 20;
        d.atomic_write(name, &vec![b'a'; LEN]).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (d, stop) = (d.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let got = d.atomic_read(Path::new("meta.json")).unwrap();
                    assert_eq!(got.len(), LEN, "a partial file was seen");
                    assert!(
                        got.iter().all(|b| *b == got[0]),
                        "a mix of two writes was seen"
                    );
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..40u8 {
            d.atomic_write(name, &vec![b'a' + i % 26; LEN]).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(d.atomic_read(name).unwrap(), vec![b'a' + 39 % 26; LEN]);
        let names: Vec<_> = listing(&tmp.path().join("gen")).into_keys().collect();
        assert_eq!(names, ["meta.json"], "no temporary file is left");
    }

    #[test]
    fn a_directory_moved_away_and_replaced_by_a_link_keeps_the_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let gen_dir = tmp.path().join("gen");
        let d = held(&gen_dir);
        let mut schema = Schema::builder();
        let text = schema.add_text_field("text", TEXT | STORED);
        let index = Index::create(d.clone(), schema.build(), IndexSettings::default()).unwrap();
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut doc = TantivyDocument::default();
        doc.add_text(text, "before the swap");
        writer.add_document(doc).unwrap();
        writer.commit().unwrap();
        let mut w = d.open_write(Path::new("gone")).unwrap();
        w.write_all(b"to delete").unwrap();
        w.terminate().unwrap();

        let other = tmp.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("meta.json"), b"their meta").unwrap();
        fs::write(other.join("gone"), b"theirs too").unwrap();
        let theirs = listing(&other);
        let moved = tmp.path().join("moved");
        fs::rename(&gen_dir, &moved).unwrap();
        std::os::unix::fs::symlink(&other, &gen_dir).unwrap();

        let mut doc = TantivyDocument::default();
        doc.add_text(text, "after the swap");
        writer.add_document(doc).unwrap();
        writer.commit().unwrap();
        writer.wait_merging_threads().unwrap();
        d.delete(Path::new("gone")).unwrap();
        let mut w = d.open_write(Path::new("new")).unwrap();
        w.write_all(b"ours").unwrap();
        w.terminate().unwrap();
        d.sync_directory().unwrap();

        assert_eq!(listing(&other), theirs, "nothing written through the link");
        let ours = listing(&moved);
        assert_eq!(ours["new"], b"ours");
        assert!(!ours.contains_key("gone"));
        assert!(ours.contains_key(".managed.json"));
        let meta = String::from_utf8(ours["meta.json"].clone()).unwrap();
        assert_eq!(meta.matches("\"max_doc\":").count(), 2, "{meta}");
        let reader = Index::open(HeldDirectory::open(&moved).unwrap())
            .unwrap()
            .reader()
            .unwrap();
        assert_eq!(reader.searcher().num_docs(), 2);
    }
}
