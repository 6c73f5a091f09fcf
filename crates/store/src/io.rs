//! Every open, read, write, fsync and removal of a data file goes through this module, so that
//!
//! - **no data file is ever reached through a symbolic link**: every open uses `O_NOFOLLOW` (a link at the path fails
//!   with [`SymlinkRefused`], naming the link and its target), files are created with `O_EXCL` after removing what
//!   was at the path, and [`refuse_links`] checks a whole data directory on open (a planted link cannot redirect the
//!   store's reads or writes into a file elsewhere);
//! - **a resource error is never taken for damage**: EMFILE, ENFILE, ENOMEM, EAGAIN, ENOBUFS, EINTR (and ENOSPC on
//!   open) are retried a bounded number of times ([`RETRIES_MAX`], with a short back-off), so are EIO and EINTR on a
//!   read; what persists is returned as the original error, which [`is_resource`] tells apart from damage;
//! - [`IoFaults`] can inject what a real disk and a real process do: run out of space part-way through a write,
//!   stall, fail an fsync, or fail opens and reads with an errno (e.g. EMFILE) — seeded, so a run is reproducible.
//!   Damage to stored bytes is injected by editing the files themselves (see `fault`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::{Rng, SeedableRng};

const UNLIMITED: u64 = u64::MAX;

/// Attempts after the first for an open or read that fails with a resource error (and for a read failing with EIO).
pub const RETRIES_MAX: u32 = 4;
/// Back-off before the first retry, µs; doubled for each further one (1 + 2 + 4 + 8 ms at most in all).
const RETRY_BACKOFF_US: u64 = 1_000;

/// An injected errno on opens or reads: each operation fails with `errno` with probability `per_mille` / 1000,
/// drawn from a generator seeded with `seed` (the same seed and sequence of operations fail the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrnoFault {
    /// The error, e.g. `libc::EMFILE`.
    pub errno: i32,
    /// How often, per thousand operations (1000: every one).
    pub per_mille: u16,
    /// Seed of the draw.
    pub seed: u64,
}

#[derive(Debug)]
struct ErrnoFaultState {
    fault: ErrnoFault,
    rng: rand::rngs::StdRng,
}

impl ErrnoFaultState {
    fn new(fault: ErrnoFault) -> Self {
        ErrnoFaultState {
            fault,
            rng: rand::rngs::StdRng::seed_from_u64(fault.seed),
        }
    }
}

/// Fault hooks shared between a store and a fault injector. All atomics: set them while the store runs.
#[derive(Debug)]
pub struct IoFaults {
    /// Bytes the store may still write before writes fail with "no space" (`u64::MAX`: unlimited): the disk's free
    /// space. Files the store removes through [`remove_file`] give their bytes back, as on a disk.
    quota_bytes_remaining: AtomicU64,
    /// Added before every write and fsync, µs.
    latency_us: AtomicU64,
    /// When set, every fsync fails with EIO.
    fail_fsync: AtomicBool,
    /// Bytes written through this hook so far.
    bytes_written: AtomicU64,
    /// Fsyncs issued so far (including failed ones).
    fsyncs: AtomicU64,
    /// Errors injected on opens, if any.
    open_fault: Mutex<Option<ErrnoFaultState>>,
    /// Errors injected on reads, if any.
    read_fault: Mutex<Option<ErrnoFaultState>>,
    /// Errors injected so far (opens and reads).
    errors_injected: AtomicU64,
    /// A file name whose atomic replacement ends the process at once, after the rename and its directory fsync (a
    /// crash between two steps of a commit, e.g. between the two manifest copies).
    abort_after_replacing: Mutex<Option<String>>,
}

impl Default for IoFaults {
    fn default() -> Self {
        IoFaults {
            quota_bytes_remaining: AtomicU64::new(UNLIMITED),
            latency_us: AtomicU64::new(0),
            fail_fsync: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            open_fault: Mutex::new(None),
            read_fault: Mutex::new(None),
            errors_injected: AtomicU64::new(0),
            abort_after_replacing: Mutex::new(None),
        }
    }
}

impl IoFaults {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ends the process (`abort`, as a kill would) right after the file named `name` was atomically replaced
    /// ([`write_file_atomic`]); `None` disarms it. For crash tests in a child process.
    pub fn set_abort_after_replacing(&self, name: Option<String>) {
        *self
            .abort_after_replacing
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = name;
    }

    fn abort_if_armed(&self, path: &Path) {
        let armed = self
            .abort_after_replacing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(name) = armed
            && path.file_name().is_some_and(|n| n == name.as_str())
        {
            std::process::abort();
        }
    }

    /// Limits further writes to `bytes` (`None`: unlimited). Writes past it fail with ENOSPC after a partial write.
    pub fn set_quota_bytes(&self, bytes: Option<u64>) {
        self.quota_bytes_remaining
            .store(bytes.unwrap_or(UNLIMITED), Ordering::SeqCst);
    }
    /// Bytes left under the quota, `None` if unlimited.
    pub fn quota_bytes_remaining(&self) -> Option<u64> {
        match self.quota_bytes_remaining.load(Ordering::SeqCst) {
            UNLIMITED => None,
            n => Some(n),
        }
    }
    /// Sets the latency added to every write and fsync, µs.
    pub fn set_latency_us(&self, us: u64) {
        self.latency_us.store(us, Ordering::SeqCst);
    }
    /// The injected latency, µs.
    pub fn latency_us(&self) -> u64 {
        self.latency_us.load(Ordering::SeqCst)
    }
    /// Makes every fsync fail (true) or succeed (false).
    pub fn set_fail_fsync(&self, fail: bool) {
        self.fail_fsync.store(fail, Ordering::SeqCst);
    }
    /// Whether fsyncs currently fail.
    pub fn fail_fsync(&self) -> bool {
        self.fail_fsync.load(Ordering::SeqCst)
    }
    /// Bytes written through the hooks so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }
    /// Fsyncs issued so far.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Makes opens of data files fail with an errno (e.g. `libc::EMFILE`: the process is out of descriptors), seeded;
    /// `None` ends it. Retries draw again, so `per_mille = 1000` fails every attempt.
    pub fn set_open_errors(&self, fault: Option<ErrnoFault>) {
        *lock(&self.open_fault) = fault.map(ErrnoFaultState::new);
    }
    /// The injected open error, if any.
    pub fn open_errors(&self) -> Option<ErrnoFault> {
        lock(&self.open_fault).as_ref().map(|s| s.fault)
    }
    /// Makes reads of data files fail with an errno (e.g. `libc::EIO`), seeded; `None` ends it.
    pub fn set_read_errors(&self, fault: Option<ErrnoFault>) {
        *lock(&self.read_fault) = fault.map(ErrnoFaultState::new);
    }
    /// Opens and reads failed by injection so far.
    pub fn errors_injected(&self) -> u64 {
        self.errors_injected.load(Ordering::Relaxed)
    }

    fn draw(&self, which: &Mutex<Option<ErrnoFaultState>>) -> io::Result<()> {
        let mut g = lock(which);
        let Some(s) = g.as_mut() else {
            return Ok(());
        };
        if s.rng.random_range(0..1000u16) < s.fault.per_mille {
            self.errors_injected.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(s.fault.errno));
        }
        Ok(())
    }

    fn delay(&self) {
        let us = self.latency_us();
        if us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(us));
        }
    }

    /// Gives `bytes` back to the quota (a file was removed); nothing when unlimited.
    fn credit_quota(&self, bytes: u64) {
        let _ =
            self.quota_bytes_remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                    (cur != UNLIMITED).then(|| cur.saturating_add(bytes).min(UNLIMITED - 1))
                });
    }

    /// Takes up to `want` bytes from the quota; returns how many may be written.
    fn take_quota(&self, want: u64) -> u64 {
        let mut cur = self.quota_bytes_remaining.load(Ordering::SeqCst);
        loop {
            if cur == UNLIMITED {
                return want;
            }
            let grant = cur.min(want);
            match self.quota_bytes_remaining.compare_exchange(
                cur,
                cur - grant,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return grant,
                Err(now) => cur = now,
            }
        }
    }
}

/// Writes all of `buf` at `offset`. Under a quota, writes what fits and then fails with ENOSPC, like a full disk.
pub fn write_all_at(faults: &IoFaults, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    faults.delay();
    let grant = faults.take_quota(buf.len() as u64) as usize;
    file.write_all_at(&buf[..grant], offset)?;
    faults
        .bytes_written
        .fetch_add(grant as u64, Ordering::Relaxed);
    if grant < buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "no space left (byte quota): wrote {grant} of {} bytes",
                buf.len()
            ),
        ));
    }
    Ok(())
}

/// Flushes a file's data and metadata to the disk.
pub fn sync(faults: &IoFaults, file: &File) -> io::Result<()> {
    faults.delay();
    faults.fsyncs.fetch_add(1, Ordering::Relaxed);
    if faults.fail_fsync() {
        return Err(io::Error::other("fsync failed (injected EIO)"));
    }
    file.sync_all()
}

/// Flushes a file's data and the metadata needed to read it back (its size): `fdatasync`. Enough for appends.
pub fn sync_data(faults: &IoFaults, file: &File) -> io::Result<()> {
    faults.delay();
    faults.fsyncs.fetch_add(1, Ordering::Relaxed);
    if faults.fail_fsync() {
        return Err(io::Error::other("fdatasync failed (injected EIO)"));
    }
    file.sync_data()
}

/// Flushes two files' data at once (`fdatasync` of `a` on this thread, of `b` on a helper thread), returning when
/// both are durable or one failed: the open segment and its mirror in one device round trip's time instead of two
/// (`examples/flushcost.rs`, modes `two_files` against `two_files_parallel`). The helper threads are pooled for the
/// process (one is taken for the call and given back), so no thread is spawned per commit. Faults apply to each
/// flush as to [`sync_data`] (an injected latency is waited once: the two flushes overlap).
pub fn sync_data_both(faults: &IoFaults, a: &File, b: &File) -> io::Result<()> {
    faults.delay();
    faults.fsyncs.fetch_add(2, Ordering::Relaxed);
    if faults.fail_fsync() {
        return Err(io::Error::other("fdatasync failed (injected EIO)"));
    }
    // The helper flushes its own descriptor of `b` (the same open file), so it borrows nothing from the caller.
    // Without a descriptor to spare (EMFILE) the two are flushed here, one after the other.
    let Ok(b) = b.try_clone() else {
        return a.sync_data().and_then(|()| b.sync_data());
    };
    let helper = flusher::take();
    let pending = flusher::start(&helper, b);
    let here = a.sync_data();
    let there = flusher::finish(helper, pending);
    here.and(there)
}

/// Whether one `fdatasync` of `a` also makes writes of `b` that have already completed durable: both files on the
/// same device (`st_dev`) of a filesystem known to send the device a cache flush on every `fdatasync`, even one with
/// no dirty data of its own (ext4, XFS). A flush command has no range: it commits every write the device completed
/// before it. Any other case — two devices, another filesystem, a failed `fstat` — answers `false` (two flushes).
pub fn one_flush_covers_both(a: &File, b: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
    let (Ok(ma), Ok(mb)) = (a.metadata(), b.metadata()) else {
        return false;
    };
    ma.dev() == mb.dev()
        && [a, b]
            .iter()
            .all(|f| matches!(fs_type(f), Some(EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC)))
}

/// The filesystem type (`f_type` of `fstatfs`) a file lives on.
#[allow(unsafe_code)] // `fstatfs` has no safe wrapper in std.
#[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between architectures
fn fs_type(f: &File) -> Option<i64> {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the descriptor is open for the call's duration and `st` is a writable `statfs` the call fills in.
    let r = unsafe { libc::fstatfs(f.as_raw_fd(), st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: `fstatfs` succeeded, so `st` is initialised.
    Some(unsafe { st.assume_init() }.f_type as i64)
}

/// Which file a path names (without following a link) or a descriptor holds: `(device major, device minor, inode)`.
/// Asks `statx` for the type and inode only, never the timestamps: a query of a file's times makes the kernel give
/// its next write a fine-grained time (multigrain timestamps), which dirties the inode, and without a journal (ext4
/// `^has_journal`) every `fdatasync` then writes the inode table block out synchronously — a second device round
/// trip per commit for the commit path's "still the file at its path?" check.
#[allow(unsafe_code)] // `statx` has no safe wrapper in std.
pub fn file_identity(path: Option<&Path>, file: Option<&File>) -> io::Result<(u32, u32, u64)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let (dirfd, cpath, flags) = match (path, file) {
        (Some(p), _) => (
            libc::AT_FDCWD,
            std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)?,
            libc::AT_SYMLINK_NOFOLLOW,
        ),
        (None, Some(f)) => (
            f.as_raw_fd(),
            std::ffi::CString::default(),
            libc::AT_EMPTY_PATH,
        ),
        (None, None) => return Err(io::Error::other("file_identity: no path and no file")),
    };
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `cpath` is a NUL-terminated string and `dirfd` a descriptor (or AT_FDCWD), both live for the call;
    // `st` is a writable `statx` the call fills in.
    let r = unsafe {
        libc::statx(
            dirfd,
            cpath.as_ptr(),
            flags,
            libc::STATX_TYPE | libc::STATX_INO,
            st.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `statx` succeeded, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    Ok((st.stx_dev_major, st.stx_dev_minor, st.stx_ino))
}

/// `sync_file_range(f, off, len, flags)`: starts (`SYNC_FILE_RANGE_WRITE`) or waits for (with the `WAIT_*` flags)
/// the device writes of a file's dirty pages in a range. Never a cache flush, never metadata.
#[allow(unsafe_code)] // `sync_file_range` has no safe wrapper in std.
fn sync_range(f: &File, off: u64, len: u64, flags: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the call's duration; the other arguments are plain integers.
    let r = unsafe { libc::sync_file_range(f.as_raw_fd(), off as i64, len as i64, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `off..off + len` of two files durable with one device flush: both ranges' writes submitted to the device
/// together (`sync_file_range(WRITE)` on each), then waited for (`WAIT_BEFORE | WRITE | WAIT_AFTER` on each, which
/// also reports a failed write-back), then one `fdatasync` of `a`, whose cache flush commits `b`'s completed writes
/// as well as `a`'s. Only for files [`one_flush_covers_both`] accepts, in ranges that need no metadata to be read
/// back (already allocated, written and flushed: no size or extent change). Faults apply as to [`sync_data`]
/// (counted as one flush).
pub fn sync_data_one_flush(
    faults: &IoFaults,
    a: &File,
    b: &File,
    off: u64,
    len: u64,
) -> io::Result<()> {
    faults.delay();
    faults.fsyncs.fetch_add(1, Ordering::Relaxed);
    if faults.fail_fsync() {
        return Err(io::Error::other("fdatasync failed (injected EIO)"));
    }
    let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    sync_range(a, off, len, libc::SYNC_FILE_RANGE_WRITE)?;
    sync_range(b, off, len, libc::SYNC_FILE_RANGE_WRITE)?;
    sync_range(a, off, len, wait)?;
    sync_range(b, off, len, wait)?;
    a.sync_data()
}

/// The pool of helper threads [`sync_data_both`] flushes a second file on.
mod flusher {
    use std::fs::File;
    use std::io;
    use std::sync::Mutex;
    use std::sync::mpsc::{Receiver, Sender, channel};

    /// Idle helpers, bounded by the most flushes ever in flight at once in this process.
    static IDLE: Mutex<Vec<Helper>> = Mutex::new(Vec::new());

    /// One helper thread: files in, results out.
    pub(super) struct Helper {
        files: Sender<File>,
        results: Receiver<io::Result<()>>,
    }

    /// A flush handed to a helper; `None` when no helper could run it (the caller's thread does it instead).
    pub(super) struct Pending(Option<File>);

    /// An idle helper, or a new one.
    pub(super) fn take() -> Option<Helper> {
        let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        idle.or_else(spawn)
    }

    fn spawn() -> Option<Helper> {
        let (files, todo) = channel::<File>();
        let (done, results) = channel();
        std::thread::Builder::new()
            .name("medic-flush".into())
            .spawn(move || {
                while let Ok(f) = todo.recv() {
                    let r = f.sync_data();
                    // Closed before the caller hears back: no descriptor of a store's file outlives the call.
                    drop(f);
                    if done.send(r).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Helper { files, results })
    }

    /// Hands `f` to the helper (kept to flush on the caller's thread if there is none or it is gone).
    pub(super) fn start(helper: &Option<Helper>, f: File) -> Pending {
        match helper {
            Some(h) => match h.files.send(f) {
                Ok(()) => Pending(None),
                Err(e) => Pending(Some(e.0)),
            },
            None => Pending(Some(f)),
        }
    }

    /// Waits for the helper's result (or flushes here what it could not take) and gives the helper back.
    pub(super) fn finish(helper: Option<Helper>, p: Pending) -> io::Result<()> {
        if let Some(f) = p.0 {
            return f.sync_data();
        }
        let Some(h) = helper else {
            return Err(io::Error::other("flush helper missing"));
        };
        match h.results.recv() {
            Ok(r) => {
                IDLE.lock().unwrap_or_else(|p| p.into_inner()).push(h);
                r
            }
            Err(_) => Err(io::Error::other(
                "the flush helper thread ended before reporting its fdatasync",
            )),
        }
    }
}

/// Flushes a directory, so created, renamed and removed names in it are durable.
pub fn sync_dir(faults: &IoFaults, dir: &Path) -> io::Result<()> {
    let f = retry_resource(|| File::open(dir))?;
    sync(faults, &f)
}

/// What stands at `dir` when it is not a directory of its own (a link — to a directory or not — or another kind of
/// file), in words; `None` for a real directory or nothing there. A derived index never reads or writes through such
/// a path: what it would find there belongs to something else.
pub fn not_a_directory(dir: &Path) -> Option<String> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            let to =
                std::fs::read_link(dir).map_or_else(|_| "?".into(), |t| t.display().to_string());
            Some(format!(
                "{} is a link (to {to}), not a directory",
                dir.display()
            ))
        }
        Ok(m) if !m.is_dir() => Some(format!("{} is a file, not a directory", dir.display())),
        _ => None,
    }
}

/// Moves anything but a directory at `dir`'s path (a file, a link: never followed nor deleted) aside to
/// `<name>.not-a-directory-<µs>` beside it, so an index can write in a directory of its own there. Returns where it
/// went, `None` when `dir` is a directory or nothing.
pub fn move_aside_non_directory(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => {
            let us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            let mut aside = dir.as_os_str().to_os_string();
            aside.push(format!(".not-a-directory-{us}"));
            let aside = PathBuf::from(aside);
            std::fs::rename(dir, &aside)?;
            Ok(Some(aside))
        }
        _ => Ok(None),
    }
}

/// Writes a whole file atomically: a temp file (created anew, never through a link), fsync, rename over `path`
/// (which replaces a link at `path` itself, never its target), fsync the directory.
pub fn write_file_atomic(faults: &IoFaults, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file_atomic_staged(faults, path, bytes).map_err(|f| f.error)
}

/// Why [`write_file_atomic_staged`] failed, and whether `path` may already hold the new bytes.
#[derive(Debug)]
pub struct AtomicWriteFailure {
    /// The error.
    pub error: io::Error,
    /// The temp file was renamed over `path` (only the directory's flush failed): `path` holds the new bytes, not
    /// known to be durable. When false, `path` is certainly unchanged.
    pub renamed: bool,
}

/// [`write_file_atomic`], telling a failure before the rename (nothing changed) from one after it.
pub fn write_file_atomic_staged(
    faults: &IoFaults,
    path: &Path,
    bytes: &[u8],
) -> Result<(), AtomicWriteFailure> {
    let before = |error| AtomicWriteFailure {
        error,
        renamed: false,
    };
    let dir = path
        .parent()
        .ok_or_else(|| before(io::Error::other("path has no parent directory")))?;
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| before(io::Error::other("path has no file name")))?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let f = create_new(faults, &tmp).map_err(before)?;
        write_all_at(faults, &f, bytes, 0).map_err(before)?;
        sync(faults, &f).map_err(before)?;
        drop(f);
        move_aside_if_directory(path).map_err(before)?;
        std::fs::rename(&tmp, path).map_err(before)?;
        sync_dir(faults, dir).map_err(|error| AtomicWriteFailure {
            error,
            renamed: true,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        faults.abort_if_armed(path);
    }
    result
}

/// A directory where a data file belongs (put there by hand, or by a tool gone wrong) cannot be renamed over; it is
/// moved aside to `<name>.not-a-file-<µs>` beside it, never deleted (it may hold someone's files), so the file can be
/// written in its place.
fn move_aside_if_directory(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let mut aside = path.as_os_str().to_os_string();
            aside.push(format!(".not-a-file-{}", crate::lock::now_us()));
            std::fs::rename(path, &aside)
        }
        _ => Ok(()),
    }
}

/// Removes a file the store no longer needs (a link at `path` is removed itself, its target untouched); under a
/// quota its bytes are free again, as on a disk. (Files replaced by a rename, i.e. manifest copies, are not credited:
/// the quota errs on the side of less space.)
pub fn remove_file(faults: &IoFaults, path: &Path) -> io::Result<()> {
    let len = std::fs::symlink_metadata(path)
        .map(|m| if m.is_file() { m.len() } else { 0 })
        .unwrap_or(0);
    std::fs::remove_file(path)?;
    faults.credit_quota(len);
    Ok(())
}

/// Is this error the disk (or the quota) being full?
pub fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

/// Is this error a lack of some resource of the process or the machine — descriptors (EMFILE, ENFILE), memory
/// (ENOMEM, ENOBUFS), a busy or interrupted call (EAGAIN/EWOULDBLOCK, EINTR), space (ENOSPC, EDQUOT, the quota) —
/// rather than anything wrong with the stored bytes? Such an error says nothing about the data: it is an
/// environment issue, retried and watched, never damage.
pub fn is_resource(e: &io::Error) -> bool {
    if is_no_space(e) || e.kind() == io::ErrorKind::Interrupted {
        return true;
    }
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOMEM
                | libc::ENOBUFS
                | libc::EAGAIN
                | libc::EINTR
                | libc::EDQUOT
        )
    ) || e.kind() == io::ErrorKind::WouldBlock
        || e.kind() == io::ErrorKind::OutOfMemory
}

/// What went wrong, for a message: `too many open files`, not `Too many open files (os error 24)`.
pub fn reason(e: &io::Error) -> String {
    if let Some(l) = symlink_refused(e) {
        return l.to_string();
    }
    let s = e.to_string();
    let s = match (s.rfind(" (os error "), e.raw_os_error()) {
        (Some(i), Some(_)) => s[..i].to_string(),
        _ => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) if e.raw_os_error().is_some() => f.to_lowercase().chain(c).collect(),
        _ => s,
    }
}

/// A data file's path is a symbolic link; the store does not follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkRefused {
    /// The link.
    pub path: PathBuf,
    /// Where it points (as stored in the link), if it could be read.
    pub target: Option<PathBuf>,
}

impl std::fmt::Display for SymlinkRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is a symbolic link to {}; the store never follows a link for a data file (it would read or write \
             the file it points to)",
            self.path.display(),
            self.target
                .as_ref()
                .map_or("(unreadable target)".into(), |t| t.display().to_string())
        )
    }
}

impl std::error::Error for SymlinkRefused {}

/// The link an error is about, if the error is a refused symbolic link.
pub fn symlink_refused(e: &io::Error) -> Option<&SymlinkRefused> {
    e.get_ref()?.downcast_ref::<SymlinkRefused>()
}

/// An error naming the link at `path` and its target.
fn refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        SymlinkRefused {
            path: path.to_path_buf(),
            target: std::fs::read_link(path).ok(),
        },
    )
}

/// Whether `path` is a symbolic link (not following it); its target if so.
pub fn link_at(path: &Path) -> Option<SymlinkRefused> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Some(SymlinkRefused {
            path: path.to_path_buf(),
            target: std::fs::read_link(path).ok(),
        }),
        _ => None,
    }
}

/// Runs `op` again (bounded, with a short back-off) while it fails with a resource error.
fn retry_resource<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut wait = RETRY_BACKOFF_US;
    let mut attempt = 0;
    loop {
        match op() {
            Err(e) if is_resource(&e) && attempt < RETRIES_MAX => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_micros(wait));
                wait *= 2;
            }
            r => return r,
        }
    }
}

/// Opens a data file with `opts` and `O_NOFOLLOW`: a link at the path fails with [`SymlinkRefused`]; resource errors
/// are retried.
fn open_with(faults: &IoFaults, path: &Path, opts: &OpenOptions) -> io::Result<File> {
    let mut opts = opts.clone();
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    retry_resource(|| {
        faults.draw(&faults.open_fault)?;
        opts.open(path)
    })
    .map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            refused(path)
        } else {
            e
        }
    })
    .and_then(|f| {
        // A FIFO or a device at a data file's path would block or lie: only regular files are data files.
        let t = f.metadata()?.file_type();
        if t.is_file() {
            Ok(f)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ))
        }
    })
}

/// Opens a data file for reading (never through a link).
pub fn open_read(faults: &IoFaults, path: &Path) -> io::Result<File> {
    open_with(faults, path, OpenOptions::new().read(true))
}

/// Opens a data file for reading and writing, creating it if `create` (never through a link).
pub fn open_rw(faults: &IoFaults, path: &Path, create: bool) -> io::Result<File> {
    open_with(
        faults,
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false),
    )
}

/// Creates a new, empty data file at `path` for reading and writing: whatever was at the path (an old file, a
/// link) is removed first, and the file is created with `O_EXCL`, so nothing at the path is ever written through.
pub fn create_new(faults: &IoFaults, path: &Path) -> io::Result<File> {
    let _ = std::fs::remove_file(path);
    open_with(
        faults,
        path,
        OpenOptions::new().read(true).write(true).create_new(true),
    )
}

/// Reads `buf.len()` bytes at `offset` of an open file, retrying EIO, EINTR and resource errors (bounded).
pub fn read_exact_at(
    faults: &IoFaults,
    file: &File,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<()> {
    retry_read(|| {
        faults.draw(&faults.read_fault)?;
        file.read_exact_at(buf, offset)
    })
}

/// Reads a whole data file (never through a link). Resource errors on the open and EIO or resource errors on the
/// read are retried (bounded) before they are returned.
pub fn read_file(faults: &IoFaults, path: &Path) -> io::Result<Vec<u8>> {
    let f = open_read(faults, path)?;
    retry_read(|| {
        faults.draw(&faults.read_fault)?;
        let mut b = Vec::with_capacity(f.metadata().map_or(0, |m| m.len() as usize));
        (&f).seek(io::SeekFrom::Start(0))?;
        (&f).read_to_end(&mut b)?;
        Ok(b)
    })
}

/// Copies a data file to `dst` (for backups and their restore), like `std::fs::copy` but never through a link: `src`
/// is read without following one; `dst`, if a regular file, is overwritten in place (so a descriptor the store holds
/// on it sees the copy), if a link, replaced by a new file (its target untouched). Fsynced. Returns the bytes copied.
pub fn copy_file(faults: &IoFaults, src: &Path, dst: &Path) -> io::Result<u64> {
    let bytes = read_file(faults, src)?;
    let f = match open_rw(faults, dst, true) {
        Err(e) if symlink_refused(&e).is_some() => create_new(faults, dst)?,
        r => r?,
    };
    f.set_len(0)?;
    write_all_at(faults, &f, &bytes, 0)?;
    sync(faults, &f)?;
    Ok(bytes.len() as u64)
}

/// Runs a read again (bounded, with back-off) while it fails with EIO or a resource error: an EIO that a retry
/// clears was the device's hiccup, not damage.
fn retry_read<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut wait = RETRY_BACKOFF_US;
    let mut attempt = 0;
    loop {
        match op() {
            Err(e)
                if (is_resource(&e) || e.raw_os_error() == Some(libc::EIO))
                    && attempt < RETRIES_MAX =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_micros(wait));
                wait *= 2;
            }
            r => return r,
        }
    }
}

/// The store's names in a data directory that must never be symbolic links (nor anything but a regular file, or a
/// directory for `wal`, `snap`, `backup`): `LOCK`, the manifest copies, every file in `wal/` and `snap/`, and those
/// directories themselves. Fails with [`SymlinkRefused`] naming the first link found and its target. (The data
/// directory itself may be reached through a link: that is where the operator put it.)
pub fn refuse_links(dir: &Path) -> io::Result<()> {
    for sub in ["wal", "snap", "backup"] {
        if let Some(l) = link_at(&dir.join(sub)) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, l));
        }
    }
    for name in [
        "LOCK",
        "MANIFEST-A",
        "MANIFEST-B",
        "MANIFEST-A.tmp",
        "MANIFEST-B.tmp",
    ] {
        if let Some(l) = link_at(&dir.join(name)) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, l));
        }
    }
    for sub in ["wal", "snap"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            if let Some(l) = link_at(&p) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, l));
            }
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {

    #[test]
    fn file_identity_tells_files_apart_and_does_not_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, link) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("l"),
        );
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let fa = File::open(&a).unwrap();
        let id = |p: &Path| file_identity(Some(p), None).unwrap();
        assert_eq!(id(&a), file_identity(None, Some(&fa)).unwrap());
        assert_ne!(id(&a), id(&b));
        assert_ne!(id(&link), id(&a), "the link itself, not its target");
        assert!(file_identity(Some(&dir.path().join("missing")), None).is_err());
    }

    use super::*;

    #[test]
    fn quota_allows_a_partial_write_then_fails() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("x")).unwrap();
        let faults = IoFaults::new();
        faults.set_quota_bytes(Some(5));
        let err = write_all_at(&faults, &f, b"0123456789", 0).unwrap_err();
        assert!(is_no_space(&err));
        assert_eq!(faults.quota_bytes_remaining(), Some(0));
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"01234");
        faults.set_quota_bytes(None);
        write_all_at(&faults, &f, b"abc", 5).unwrap();
    }

    /// A descriptor `fdatasync` refuses (EINVAL on a pipe), standing in for a flush that fails.
    fn unflushable() -> File {
        let (r, _w) = std::io::pipe().unwrap();
        File::from(std::os::fd::OwnedFd::from(r))
    }

    #[test]
    fn both_flushes_must_succeed_whichever_thread_runs_each() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            File::create(dir.path().join("a")).unwrap(),
            File::create(dir.path().join("b")).unwrap(),
        );
        let faults = IoFaults::new();
        for _ in 0..3 {
            write_all_at(&faults, &a, b"main", 0).unwrap();
            write_all_at(&faults, &b, b"mirror", 0).unwrap();
            sync_data_both(&faults, &a, &b).unwrap();
        }
        assert_eq!(faults.fsyncs(), 6);
        // The helper's failure (second file) and the caller's (first file) each fail the call.
        assert!(sync_data_both(&faults, &a, &unflushable()).is_err());
        assert!(sync_data_both(&faults, &unflushable(), &b).is_err());
        // The helper that reported a failure is still usable.
        sync_data_both(&faults, &a, &b).unwrap();
        faults.set_fail_fsync(true);
        assert!(sync_data_both(&faults, &a, &b).is_err());
    }

    #[test]
    fn concurrent_paired_flushes_each_get_their_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let faults = std::sync::Arc::new(IoFaults::new());
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let (dir, faults) = (dir.path().to_path_buf(), faults.clone());
                std::thread::spawn(move || {
                    let a = File::create(dir.join(format!("a{t}"))).unwrap();
                    let b = File::create(dir.join(format!("b{t}"))).unwrap();
                    for i in 0..20 {
                        // Every other call on odd threads has a second file that cannot be flushed.
                        let bad = t % 2 == 1 && i % 2 == 0;
                        let r = if bad {
                            sync_data_both(&faults, &a, &unflushable())
                        } else {
                            sync_data_both(&faults, &a, &b)
                        };
                        assert_eq!(r.is_err(), bad, "thread {t} call {i}: {r:?}");
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn a_removed_file_gives_its_bytes_back_to_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let f = File::create(&p).unwrap();
        let faults = IoFaults::new();
        write_all_at(&faults, &f, &[7; 100], 0).unwrap();
        faults.set_quota_bytes(Some(10));
        remove_file(&faults, &p).unwrap();
        assert_eq!(faults.quota_bytes_remaining(), Some(110));
        faults.set_quota_bytes(None);
        File::create(&p).unwrap();
        remove_file(&faults, &p).unwrap();
        assert_eq!(faults.quota_bytes_remaining(), None);
    }

    #[test]
    fn a_link_at_a_data_files_path_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"not yours").unwrap();
        let link = dir.path().join("x.seg");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let faults = IoFaults::new();
        for e in [
            open_read(&faults, &link).unwrap_err(),
            open_rw(&faults, &link, true).unwrap_err(),
            read_file(&faults, &link).unwrap_err(),
        ] {
            let l = symlink_refused(&e).expect("a refused link");
            assert_eq!(l.path, link);
            assert_eq!(l.target.as_deref(), Some(elsewhere.as_path()));
            assert!(reason(&e).contains("is a symbolic link to"), "{e}");
            assert!(!is_resource(&e));
        }
        // Creating anew replaces the link, and an atomic write renames over it: the target is never written.
        let f = create_new(&faults, &link).unwrap();
        write_all_at(&faults, &f, b"mine", 0).unwrap();
        assert!(link_at(&link).is_none());
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("M")).unwrap();
        write_file_atomic(&faults, &dir.path().join("M"), b"manifest").unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not yours");
        assert_eq!(std::fs::read(dir.path().join("M")).unwrap(), b"manifest");
        // refuse_links names the first link found and its target.
        std::fs::create_dir(dir.path().join("wal")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("wal/1.mir")).unwrap();
        let e = refuse_links(dir.path()).unwrap_err();
        assert_eq!(
            symlink_refused(&e).unwrap().path,
            dir.path().join("wal/1.mir")
        );
    }

    #[test]
    fn injected_open_errors_are_seeded_retried_and_told_apart_from_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let faults = IoFaults::new();
        let every = ErrnoFault {
            errno: libc::EMFILE,
            per_mille: 1000,
            seed: 7,
        };
        faults.set_open_errors(Some(every));
        let e = read_file(&faults, &p).unwrap_err();
        assert!(is_resource(&e));
        assert_eq!(reason(&e), "too many open files");
        assert_eq!(faults.errors_injected(), u64::from(RETRIES_MAX) + 1);
        // Half the opens fail: the retries get through, and the same seed fails the same attempts.
        let half = ErrnoFault {
            per_mille: 500,
            ..every
        };
        let pattern = |faults: &IoFaults| {
            faults.set_open_errors(Some(half));
            let before = faults.errors_injected();
            let ok: Vec<bool> = (0..20).map(|_| read_file(faults, &p).is_ok()).collect();
            (ok, faults.errors_injected() - before)
        };
        let (a, na) = pattern(&faults);
        let (b, nb) = pattern(&faults);
        assert_eq!((a.clone(), na), (b, nb));
        assert!(na > 0 && a.iter().filter(|ok| **ok).count() >= 18, "{a:?}");
        faults.set_open_errors(None);
        assert_eq!(read_file(&faults, &p).unwrap(), b"abc");
        // An EIO that a retry clears is no error at all.
        faults.set_read_errors(Some(ErrnoFault {
            errno: libc::EIO,
            per_mille: 300,
            seed: 1,
        }));
        for _ in 0..20 {
            assert_eq!(read_file(&faults, &p).unwrap(), b"abc");
        }
        assert!(!is_resource(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(is_resource(&io::Error::from_raw_os_error(libc::ENFILE)));
    }

    #[test]
    fn failing_fsync_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("x")).unwrap();
        let faults = IoFaults::new();
        faults.set_fail_fsync(true);
        assert!(sync(&faults, &f).is_err());
        faults.set_fail_fsync(false);
        sync(&faults, &f).unwrap();
        assert_eq!(faults.fsyncs(), 2);
    }
}
