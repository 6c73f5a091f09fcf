//! The data directory's lock: a kernel lock (`File::try_lock`) on `LOCK`, which also holds the holder's pid, host,
//! start time and a heartbeat as text. The kernel lock cannot go stale (it dies with its process); the text only
//! names the holder for a second opener's `Locked` error and tells a restart whether the last holder crashed.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

use crate::error::StoreError;
use crate::io::{self, IoFaults};

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// Who holds (or last held) a lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// When it took the lock, µs since the epoch.
    pub started_us: u64,
    /// Its latest heartbeat, µs since the epoch.
    pub heartbeat_us: u64,
    /// Whether it closed cleanly (false while held).
    pub closed: bool,
}

impl Holder {
    fn render(&self) -> String {
        format!(
            "pid={} host={} started_us={} heartbeat_us={} closed={}\n",
            self.pid, self.host, self.started_us, self.heartbeat_us, self.closed
        )
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut h = Holder {
            pid: 0,
            host: String::new(),
            started_us: 0,
            heartbeat_us: 0,
            closed: false,
        };
        for kv in text.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            match k {
                "pid" => h.pid = v.parse().ok()?,
                "host" => h.host = v.to_owned(),
                "started_us" => h.started_us = v.parse().ok()?,
                "heartbeat_us" => h.heartbeat_us = v.parse().ok()?,
                "closed" => h.closed = v.parse().ok()?,
                _ => {}
            }
        }
        (h.pid != 0).then_some(h)
    }

    /// Whether the process named is provably gone: same host, and `kill(pid, 0)` says no such process.
    pub fn is_dead(&self) -> bool {
        if self.host != host_name() {
            return false;
        }
        let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) else {
            return true;
        };
        matches!(
            rustix::process::test_kill_process(pid),
            Err(e) if e == rustix::io::Errno::SRCH
        )
    }

    /// One line for errors and reports.
    pub fn describe(&self) -> String {
        format!(
            "pid {} on host {} since {} µs (last heartbeat {} µs)",
            self.pid, self.host, self.started_us, self.heartbeat_us
        )
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Now, µs since the UNIX epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A held lock. Dropping it releases the kernel lock.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    holder: Holder,
    /// What the lock file said before this process took it, if anything.
    pub previous: Option<Holder>,
}

/// Reads who the lock file names, without locking.
pub fn read_holder(dir: &Path) -> Option<Holder> {
    let mut s = String::new();
    File::open(dir.join(LOCK_FILE))
        .ok()?
        .read_to_string(&mut s)
        .ok()?;
    Holder::parse(&s)
}

impl DirLock {
    /// Takes the lock of `dir`, or fails with `Locked` naming the holder.
    pub fn acquire(dir: &Path, faults: &IoFaults) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = match read_holder(dir) {
                    Some(h) if h.is_dead() => format!(
                        "{} — that process is gone, yet the kernel lock is held (a process that inherited its \
                         descriptor?); not breaking it",
                        h.describe()
                    ),
                    Some(h) => h.describe(),
                    None => "an unknown process (LOCK names no holder)".into(),
                };
                return Err(StoreError::Locked { holder });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::io(format!("locking {}", path.display()), e));
            }
        }
        let previous = read_holder(dir);
        let now = now_us();
        let mut lock = DirLock {
            file,
            holder: Holder {
                pid: std::process::id(),
                host: host_name(),
                started_us: now,
                heartbeat_us: now,
                closed: false,
            },
            previous,
        };
        lock.write(faults)?;
        Ok(lock)
    }

    fn write(&mut self, faults: &IoFaults) -> Result<(), StoreError> {
        let text = self.holder.render();
        self.file
            .set_len(0)
            .map_err(|e| StoreError::io("truncating LOCK", e))?;
        io::write_all_at(faults, &self.file, text.as_bytes(), 0)
            .map_err(|e| StoreError::io("writing LOCK", e))?;
        io::sync(faults, &self.file).map_err(|e| StoreError::io("syncing LOCK", e))
    }

    /// Refreshes the heartbeat.
    pub fn heartbeat(&mut self, faults: &IoFaults) -> Result<(), StoreError> {
        self.holder.heartbeat_us = now_us();
        self.write(faults)
    }

    /// Marks a clean close (the lock itself goes when this is dropped).
    pub fn mark_closed(&mut self, faults: &IoFaults) -> Result<(), StoreError> {
        self.holder.closed = true;
        self.write(faults)
    }

    /// Whether the lock file still names this process (someone may have edited or removed it).
    pub fn names_me(&self, dir: &Path) -> bool {
        self.path_is_mine(dir)
            && read_holder(dir)
                .is_some_and(|h| h.pid == self.holder.pid && h.started_us == self.holder.started_us)
    }

    /// Rewrites the lock file's holder text (after it was found damaged or naming someone else). If `LOCK` was
    /// deleted or replaced, the kernel lock we hold is on a file no one else can find: lock the file now at the path
    /// instead, or fail with `Locked` if another process already has (then two processes think they own the
    /// directory, and the caller must stop writing).
    pub fn rewrite(&mut self, dir: &Path, faults: &IoFaults) -> Result<(), StoreError> {
        if !self.path_is_mine(dir) {
            let path = dir.join(LOCK_FILE);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
            match file.try_lock() {
                Ok(()) => self.file = file,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = read_holder(dir)
                        .map(|h| h.describe())
                        .unwrap_or_else(|| "an unknown process".into());
                    return Err(StoreError::Locked { holder });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::io(format!("locking {}", path.display()), e));
                }
            }
            io::sync_dir(faults, dir)
                .map_err(|e| StoreError::io("syncing the data directory", e))?;
        }
        self.write(faults)
    }

    /// Whether `LOCK` at the path is the very file this process holds locked.
    pub fn path_is_mine(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(dir.join(LOCK_FILE)), self.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// The holder record of this process.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }
}
