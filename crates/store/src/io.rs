//! Every byte the store writes and every fsync it issues goes through this module, so [`IoFaults`] can inject what a
//! real disk does: run out of space part-way through a write, stall, or fail an fsync. Reads are not hooked: damage
//! to stored bytes is injected by editing the files themselves (see `fault`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const UNLIMITED: u64 = u64::MAX;

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
}

impl Default for IoFaults {
    fn default() -> Self {
        IoFaults {
            quota_bytes_remaining: AtomicU64::new(UNLIMITED),
            latency_us: AtomicU64::new(0),
            fail_fsync: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
        }
    }
}

impl IoFaults {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
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

/// Flushes a directory, so created, renamed and removed names in it are durable.
pub fn sync_dir(faults: &IoFaults, dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    sync(faults, &f)
}

/// Writes a whole file atomically: a temp file, fsync, rename over `path`, fsync the directory.
pub fn write_file_atomic(faults: &IoFaults, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let f = File::create(&tmp)?;
        write_all_at(faults, &f, bytes, 0)?;
        sync(faults, &f)?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(faults, dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes a file the store no longer needs; under a quota its bytes are free again, as on a disk. (Files replaced by
/// a rename, i.e. manifest copies, are not credited: the quota errs on the side of less space.)
pub fn remove_file(faults: &IoFaults, path: &Path) -> io::Result<()> {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    std::fs::remove_file(path)?;
    faults.credit_quota(len);
    Ok(())
}

/// Is this error the disk (or the quota) being full?
pub fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

#[cfg(test)]
mod tests {
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
