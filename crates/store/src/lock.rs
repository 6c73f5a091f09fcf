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

/// `lock_stale_after_ms`: a holder on another host that did not close cleanly, whose kernel lock is free, is taken
/// over once its heartbeat is older than this. Several `store.quick` intervals (5 s each by default), so a live
/// holder refreshes it well within the bound; a holder that does not run `store.quick` must call
/// `Store::heartbeat` at least this often, or a store on another host sharing the directory takes it over.
pub const LOCK_STALE_AFTER_MS: u64 = 30_000;

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

    /// Whether the process named is provably gone: same host, and either `kill(pid, 0)` says no such process, or
    /// the process with that pid is a zombie (it holds no files any more), or it started after this holder took the
    /// lock (the pid was reused by another process). Never true for this very process.
    pub fn is_dead(&self) -> bool {
        if self.host != host_name() || self.pid == std::process::id() {
            return false;
        }
        let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) else {
            return true;
        };
        match rustix::process::test_kill_process(pid) {
            Err(e) if e == rustix::io::Errno::SRCH => true,
            _ => match proc_stat(self.pid) {
                Some((state, _)) if state == 'Z' || state == 'X' => true,
                // Start times are read at 1 s granularity (boot time) and clocks drift: 2 s of slack.
                Some((_, Some(start_us))) => start_us > self.started_us.saturating_add(2_000_000),
                _ => false,
            },
        }
    }

    /// How long ago this holder's heartbeat was, ms; `None` if it is in the future (clock skew: counted as fresh).
    pub fn heartbeat_age_ms(&self, now_us: u64) -> Option<u64> {
        now_us.checked_sub(self.heartbeat_us).map(|d| d / 1_000)
    }

    /// Why this holder's claim on the directory still stands although the kernel lock is free, if it does: it did
    /// not close cleanly and it is not provably gone — it runs on another host and its heartbeat is no older than
    /// `stale_after_ms` (a kernel lock does not reach across hosts, e.g. on a network file system, so it may still be
    /// writing), or its pid is alive here (it may hold a lock on a `LOCK` that was since replaced). An earlier holder
    /// in this very process released its kernel lock (else the lock would not be free), so it never stands.
    pub fn claim_stands(&self, now_us: u64, stale_after_ms: u64) -> Option<String> {
        self.judge(now_us, stale_after_ms).err()
    }

    /// `Ok(why it is gone)` if this holder's claim lapsed (`None`: it closed cleanly or is this very process), or
    /// `Err(why it stands)`; see [`Holder::claim_stands`].
    pub fn judge(&self, now_us: u64, stale_after_ms: u64) -> Result<Option<String>, String> {
        if self.closed || self.pid == std::process::id() && self.host == host_name() {
            return Ok(None);
        }
        if self.host != host_name() {
            let age_ms = self.heartbeat_age_ms(now_us);
            let age = match age_ms {
                Some(ms) => format!("heartbeat {ms} ms ago"),
                None => format!(
                    "heartbeat {} ms in the future (clock skew: counted as fresh)",
                    self.heartbeat_us.saturating_sub(now_us) / 1_000
                ),
            };
            return match age_ms {
                Some(ms) if ms > stale_after_ms => Ok(Some(format!(
                    "on host {}, not this host {}, {age}, older than lock_stale_after_ms = {stale_after_ms}: judged \
                     gone",
                    self.host,
                    host_name()
                ))),
                _ => Err(format!(
                    "held by pid {} on host {}, {age}, under lock_stale_after_ms = {stale_after_ms}: refusing; it is \
                     taken over once its heartbeat is older (this is host {}: a kernel lock does not reach across \
                     hosts, so it may still be writing)",
                    self.pid,
                    self.host,
                    host_name()
                )),
            };
        }
        if self.is_dead() {
            return Ok(Some("process gone".into()));
        }
        Err(format!("process {} is alive on this host", self.pid))
    }

    /// One line for errors and reports.
    pub fn describe(&self) -> String {
        format!(
            "pid {} on host {} since {} µs (last heartbeat {} µs)",
            self.pid, self.host, self.started_us, self.heartbeat_us
        )
    }
}

/// `/proc/<pid>/stat` of a process: its state letter and, if it can be worked out, when it started (µs since the
/// epoch). `None` without `/proc` (then nothing more can be proven than `kill(pid, 0)` says).
fn proc_stat(pid: u32) -> Option<(char, Option<u64>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ... starttime(22nd field) ...`; comm may hold spaces and parentheses: split at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state), so field 22 is the 20th.
    let ticks: Option<u64> = fields.nth(18).and_then(|t| t.parse().ok());
    let boot_s: Option<u64> = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    });
    let hz = rustix::param::clock_ticks_per_second();
    let start = match (ticks, boot_s) {
        (Some(t), Some(b)) if hz > 0 => Some(
            b.saturating_mul(1_000_000)
                .saturating_add(t.saturating_mul(1_000_000) / hz),
        ),
        _ => None,
    };
    Some((state, start))
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
    /// Why the previous holder was judged gone, if it did not close cleanly and was taken over.
    pub previous_gone: Option<String>,
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
    /// Takes the lock of `dir`, or fails with `Locked` naming the holder. A holder on another host is taken over
    /// once its heartbeat is older than `stale_after_ms` (`lock_stale_after_ms`).
    pub fn acquire(
        dir: &Path,
        faults: &IoFaults,
        stale_after_ms: u64,
    ) -> Result<DirLock, StoreError> {
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
        // The kernel lock is free, so no process on this host holds this `LOCK` file. A holder that did not close
        // cleanly is taken over only if it is provably gone: same host and pid gone, or another host and its
        // heartbeat older than `stale_after_ms`. One on another host with a fresh heartbeat, or whose pid is alive
        // here, is not (it may still be writing).
        let previous = read_holder(dir);
        let previous_gone = match previous.as_ref().map(|h| h.judge(now_us(), stale_after_ms)) {
            None => None,
            Some(Ok(gone)) => gone,
            Some(Err(why)) => {
                let h = previous.as_ref().map(Holder::describe).unwrap_or_default();
                return Err(StoreError::Locked {
                    holder: format!(
                        "{h}, which did not close cleanly — the kernel lock is free, but {why}; not taking it \
                         over. If that process is certainly gone, remove {} and open again",
                        path.display()
                    ),
                });
            }
        };
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
            previous_gone,
        };
        lock.write(faults)?;
        Ok(lock)
    }

    /// Writes the holder line over the old one, then cuts what is left of a longer old line: a failed write leaves
    /// the old line (or a mix of two lines naming this same pid and start), never an empty file.
    fn write(&mut self, faults: &IoFaults) -> Result<(), StoreError> {
        let text = self.holder.render();
        io::write_all_at(faults, &self.file, text.as_bytes(), 0)
            .map_err(|e| StoreError::io("writing LOCK", e))?;
        self.file
            .set_len(text.len() as u64)
            .map_err(|e| StoreError::io("truncating LOCK", e))?;
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
