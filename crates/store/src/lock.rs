//! The data directory's lock. Two kernel locks (`File::try_lock`, i.e. `flock`): one on **the data directory itself**
//! (a descriptor of the directory, which deleting or replacing a file cannot take away) and one on `LOCK`, which also
//! holds the holder's pid, host, start time and a heartbeat as text. The kernel locks cannot go stale (they die with
//! their process); the text names the holder for a second opener's `Locked` error, tells a restart whether the last
//! holder crashed, and carries the heartbeat another host judges a holder by (a kernel lock does not reach across
//! hosts).
//!
//! Invariants: two processes on one host never both hold a data directory, whatever is done to `LOCK` (the second
//! opener finds the directory's kernel lock held and refuses, naming the holder). A holder checks that `LOCK` still
//! names it on every heartbeat ([`DirLock::check`]): a removed, emptied, edited or replaced `LOCK` (a symbolic link
//! included) is written back, and locked again if it is a new file; if `LOCK` names a holder on another host (which
//! took the directory over, having judged this one gone), if another process holds the kernel lock of the file at the
//! path, or if the directory's path no longer leads to the directory locked, this process can no longer prove it is
//! the only writer: [`WriterDoubt`] says why, and the store stops writing.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::StoreError;
use crate::io::{self, IoFaults};

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// Why a store can no longer prove it is the only writer of its data directory. While one stands the store refuses
/// writes (`StoreError::NotSoleWriter`); reads go on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum WriterDoubt {
    /// `LOCK` names a holder on another host that did not close: it took the directory over, having judged this
    /// process gone (e.g. after this process was stopped for longer than `lock_stale_after_ms`). Lasts until reopen.
    TakenOver {
        /// The holder `LOCK` names.
        holder: String,
    },
    /// The file at `LOCK`'s path is not the one this process locked, and another process holds its kernel lock.
    /// Lasts until reopen.
    LockHeldByOther {
        /// Who `LOCK` names, if anyone.
        holder: String,
    },
    /// The data directory's path no longer leads to the directory this process locked (it was moved or replaced).
    /// Lasts until reopen.
    DirectoryReplaced {
        /// The path.
        path: String,
    },
    /// The heartbeat in `LOCK` could not be written or confirmed for `for_ms` ms (half of `lock_stale_after_ms`,
    /// after which a process on another host may judge this one gone). Ends by itself once a heartbeat succeeds.
    HeartbeatUnconfirmed {
        /// Since the last confirmed heartbeat, ms.
        for_ms: u64,
        /// The latest failure.
        error: String,
    },
}

impl WriterDoubt {
    /// Whether it lasts until the store is reopened (someone else may have written meanwhile), as opposed to ending
    /// once a heartbeat is confirmed again.
    pub fn lasts(&self) -> bool {
        !matches!(self, WriterDoubt::HeartbeatUnconfirmed { .. })
    }

    /// A stable code for issues and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            WriterDoubt::TakenOver { .. } => "taken_over",
            WriterDoubt::LockHeldByOther { .. } => "lock_held_by_other",
            WriterDoubt::DirectoryReplaced { .. } => "directory_replaced",
            WriterDoubt::HeartbeatUnconfirmed { .. } => "heartbeat_unconfirmed",
        }
    }
}

impl std::fmt::Display for WriterDoubt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriterDoubt::TakenOver { holder } => write!(
                f,
                "LOCK now names {holder}, on another host: it took this data directory over; this process stopped \
                 writing so two processes never write one directory (check that process; reopen once it has stopped)"
            ),
            WriterDoubt::LockHeldByOther { holder } => write!(
                f,
                "LOCK was replaced and the new file is locked by another process ({holder}); this process stopped \
                 writing so two processes never write one directory (check which processes use the directory)"
            ),
            WriterDoubt::DirectoryReplaced { path } => write!(
                f,
                "{path} no longer leads to the data directory this process locked (moved or replaced); this process \
                 stopped writing (check what moved it)"
            ),
            WriterDoubt::HeartbeatUnconfirmed { for_ms, error } => write!(
                f,
                "the LOCK heartbeat could not be confirmed for {for_ms} ms ({error}); writes wait until it is, since \
                 a process on another host may take over a holder whose heartbeat is older than lock_stale_after_ms"
            ),
        }
    }
}

/// What a heartbeat found, when this process still holds its data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockCheck {
    /// `LOCK` named this process; its heartbeat is refreshed.
    Fresh,
    /// `LOCK` did not name this process (removed, emptied, edited, replaced by another file or a link); it was written
    /// back. Says what was found.
    Restored(String),
}

/// Why a heartbeat failed.
#[derive(Debug)]
pub enum LockTrouble {
    /// This process can no longer prove it is the only writer.
    Doubt(WriterDoubt),
    /// Reading or writing `LOCK` failed (e.g. no descriptors or no space left): nothing says another process took
    /// over, but the heartbeat was not refreshed.
    Io(std::io::Error),
}

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

    /// One line for errors and reports, times in RFC 3339 with their age: `pid 7 on host h since
    /// 2026-12-08T00:01:02Z (3 min 0 s ago), last heartbeat 2026-12-08T00:04:00Z (2 s ago)`.
    pub fn describe(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        format!(
            "pid {} on host {} since {}, last heartbeat {}",
            self.pid,
            self.host,
            heal::clock::rfc3339_with_age(self.started_us, now),
            heal::clock::rfc3339_with_age(self.heartbeat_us, now)
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

/// A held lock. Dropping it releases both kernel locks.
#[derive(Debug)]
pub struct DirLock {
    /// The data directory, kernel-locked.
    dir: File,
    /// `LOCK`, kernel-locked.
    file: File,
    holder: Holder,
    /// What the lock file said before this process took it, if anything.
    pub previous: Option<Holder>,
    /// Why the previous holder was judged gone, if it did not close cleanly and was taken over.
    pub previous_gone: Option<String>,
}

/// Reads who the lock file names, without locking (never through a symbolic link).
pub fn read_holder(dir: &Path) -> Option<Holder> {
    let mut s = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(LOCK_FILE))
        .ok()?
        .take(LOCK_TEXT_BYTES_MAX)
        .read_to_string(&mut s)
        .ok()?;
    Holder::parse(&s)
}

/// `LOCK` is one short line; more than this is not a holder line (read no further).
const LOCK_TEXT_BYTES_MAX: u64 = 4096;

/// The pid holding a kernel `flock` on the file with `dev`/`ino`, from `/proc/locks` (Linux), if it can be found.
fn flock_holder_pid(dev: u64, ino: u64) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let (maj, min) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    text.lines().find_map(|l| {
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (major:minor in hex, inode in decimal).
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = f.get(5)?.split(':');
        let (a, b, i) = (id.next()?, id.next()?, id.next()?);
        (u32::from_str_radix(a, 16).ok()? == maj
            && u32::from_str_radix(b, 16).ok()? == min
            && i.parse::<u64>().ok()? == ino)
            .then(|| f.get(4)?.parse().ok())?
    })
}

/// Who holds `dir` whose kernel lock a second opener found taken: the holder `LOCK` names, or — `LOCK` removed or
/// naming no one — the pid the kernel says holds the directory's lock.
fn describe_holder(dir: &Path, dir_file: &File) -> String {
    match read_holder(dir) {
        Some(h) if h.is_dead() => format!(
            "{} — that process is gone, yet the kernel lock is held (a process that inherited its descriptor?); not \
             breaking it",
            h.describe()
        ),
        Some(h) => h.describe(),
        None => {
            let pid = dir_file
                .metadata()
                .ok()
                .and_then(|m| flock_holder_pid(m.dev(), m.ino()));
            match pid {
                Some(pid) => format!(
                    "pid {pid} on host {} (it holds the kernel lock on the data directory; LOCK is missing or names \
                     no holder, and it restores LOCK at its next heartbeat)",
                    host_name()
                ),
                None => "another process (it holds the kernel lock on the data directory; LOCK is missing or names \
                         no holder)"
                    .into(),
            }
        }
    }
}

/// A read-only opener's hold on a data directory ([`crate::Store::open_read_only`]): a **shared** kernel lock on the
/// directory itself, nothing written (no `LOCK` created or edited). Readers share it; a writer's exclusive lock
/// excludes them both ways, so no daemon starts writing while a reader reads, and a reader never reads under a live
/// writer (it is refused with `Locked`, naming the holder, and goes to the daemon instead).
#[derive(Debug)]
pub struct ReadLock {
    /// The data directory, kernel-locked shared.
    _dir: File,
    /// What `LOCK` says, if anything.
    pub previous: Option<Holder>,
    /// Why the holder `LOCK` names is gone, if it did not close cleanly.
    pub previous_gone: Option<String>,
}

impl ReadLock {
    /// Takes the shared kernel lock of `dir`, or fails with `Locked` naming the holder: a process holding the
    /// directory's lock, or a holder `LOCK` names that did not close cleanly and is not provably gone (another host
    /// with a fresh heartbeat, a live pid here) — it may still be writing.
    pub fn acquire(dir: &Path, stale_after_ms: u64) -> Result<ReadLock, StoreError> {
        let dir_file =
            File::open(dir).map_err(|e| StoreError::io(format!("opening {}", dir.display()), e))?;
        match dir_file.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    holder: describe_holder(dir, &dir_file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::io(format!("locking {}", dir.display()), e));
            }
        }
        let previous = read_holder(dir);
        let previous_gone = match previous.as_ref().map(|h| h.judge(now_us(), stale_after_ms)) {
            None => None,
            Some(Ok(gone)) => gone,
            Some(Err(why)) => {
                let h = previous.as_ref().map(Holder::describe).unwrap_or_default();
                return Err(StoreError::Locked {
                    holder: format!(
                        "{h}, which did not close cleanly — the kernel lock is free, but {why}; not reading under it"
                    ),
                });
            }
        };
        Ok(ReadLock {
            _dir: dir_file,
            previous,
            previous_gone,
        })
    }
}

/// Whether two metadata name one file.
fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

impl DirLock {
    /// Takes the lock of `dir`: the kernel lock on the directory, then on `LOCK`; or fails with `Locked` naming the
    /// holder. A holder on another host is taken over once its heartbeat is older than `stale_after_ms`
    /// (`lock_stale_after_ms`). `LOCK` is never opened through a symbolic link.
    pub fn acquire(
        dir: &Path,
        faults: &IoFaults,
        stale_after_ms: u64,
    ) -> Result<DirLock, StoreError> {
        let dir_file =
            File::open(dir).map_err(|e| StoreError::io(format!("opening {}", dir.display()), e))?;
        match dir_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    holder: describe_holder(dir, &dir_file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::io(format!("locking {}", dir.display()), e));
            }
        }
        let path = dir.join(LOCK_FILE);
        let file = io::open_rw(faults, &path, true)
            .map_err(|e| StoreError::from_open(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    holder: describe_holder(dir, &dir_file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::io(format!("locking {}", path.display()), e));
            }
        }
        // The kernel locks are free, so no process on this host holds this directory. A holder that did not close
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
                         over. Check that process: once it has stopped (or, on another host, once its heartbeat is \
                         older than lock_stale_after_ms = {stale_after_ms}), open again"
                    ),
                });
            }
        };
        let now = now_us();
        let mut lock = DirLock {
            dir: dir_file,
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
    /// the old line (or a mix of two lines naming this same pid and start), never an empty file. Uses only the
    /// descriptor already held (no open: it works when the process is out of descriptors).
    fn write(&mut self, faults: &IoFaults) -> Result<(), StoreError> {
        let text = self.holder.render();
        io::write_all_at(faults, &self.file, text.as_bytes(), 0)
            .map_err(|e| StoreError::io("writing LOCK", e))?;
        self.file
            .set_len(text.len() as u64)
            .map_err(|e| StoreError::io("truncating LOCK", e))?;
        io::sync(faults, &self.file).map_err(|e| StoreError::io("syncing LOCK", e))
    }

    /// Refreshes the heartbeat in the file this process holds (without checking what the path leads to; see
    /// [`DirLock::check`]).
    pub fn heartbeat(&mut self, faults: &IoFaults) -> Result<(), StoreError> {
        self.holder.heartbeat_us = now_us();
        self.write(faults)
    }

    /// Marks a clean close (the locks themselves go when this is dropped). Only when `LOCK` at the path is still
    /// the file this process holds: a `LOCK` that names another holder is left to it.
    pub fn mark_closed(&mut self, faults: &IoFaults) -> Result<(), StoreError> {
        if let Some(h) = self.own_text()
            && !self.is_me(&h)
            && !h.closed
            && h.host != self.holder.host
        {
            return Ok(()); // taken over: the text is the new holder's
        }
        self.holder.closed = true;
        self.write(faults)
    }

    /// The holder text of the file this process holds, read through its own descriptor.
    fn own_text(&self) -> Option<Holder> {
        let mut b = vec![0u8; LOCK_TEXT_BYTES_MAX as usize];
        let n = self.file.read_at(&mut b, 0).ok()?;
        Holder::parse(std::str::from_utf8(&b[..n]).ok()?)
    }

    /// Whether the lock file still names this process (someone may have edited or removed it).
    pub fn names_me(&self, dir: &Path) -> bool {
        self.path_is_mine(dir) && self.own_text().is_some_and(|h| self.is_me(&h))
    }

    fn is_me(&self, h: &Holder) -> bool {
        h.pid == self.holder.pid
            && h.host == self.holder.host
            && h.started_us == self.holder.started_us
            && !h.closed
    }

    /// The heartbeat: checks that this process still holds `dir` and that `LOCK` names it, refreshes the heartbeat,
    /// and writes `LOCK` back when it was removed, emptied, edited or replaced (a link at the path is removed, never
    /// written through; a new file is kernel-locked first). Needs no new descriptor while `LOCK` is intact.
    ///
    /// Fails with a [`WriterDoubt`] when this process can no longer prove it is the only writer: the directory's
    /// path leads elsewhere, `LOCK` names a holder on another host (a takeover), or another process holds the kernel
    /// lock of the file now at the path. Fails with `Io` when `LOCK` could not be read or written.
    pub fn check(&mut self, dir: &Path, faults: &IoFaults) -> Result<LockCheck, LockTrouble> {
        let dir_now = std::fs::metadata(dir).map_err(LockTrouble::Io)?;
        let dir_held = self.dir.metadata().map_err(LockTrouble::Io)?;
        if !same_inode(&dir_now, &dir_held) {
            return Err(LockTrouble::Doubt(WriterDoubt::DirectoryReplaced {
                path: dir.display().to_string(),
            }));
        }
        let path = dir.join(LOCK_FILE);
        let link = io::link_at(&path);
        let mine = link.is_none() && self.path_is_mine(dir);
        let text = if mine {
            self.own_text()
        } else if link.is_none() {
            read_holder(dir)
        } else {
            None
        };
        let io_err = |e: StoreError| match e {
            StoreError::Io { source, .. } => LockTrouble::Io(source),
            other => LockTrouble::Io(std::io::Error::other(other.to_string())),
        };
        if mine && text.as_ref().is_some_and(|h| self.is_me(h)) {
            self.heartbeat(faults).map_err(io_err)?;
            return Ok(LockCheck::Fresh);
        }
        // A holder on another host that did not close wrote this: it judged this process gone and took over.
        if let Some(h) = &text
            && !h.closed
            && h.host != self.holder.host
        {
            return Err(LockTrouble::Doubt(WriterDoubt::TakenOver {
                holder: h.describe(),
            }));
        }
        let found = match (&link, &text) {
            (Some(l), _) => l.to_string(),
            (None, Some(h))
                if h.pid == self.holder.pid && h.host == self.holder.host && h.closed =>
            {
                "LOCK said this process had closed".to_string()
            }
            (None, Some(h)) => format!("LOCK named {} instead of this process", h.describe()),
            (None, None) if std::fs::symlink_metadata(&path).is_err() => {
                "LOCK was missing".to_string()
            }
            (None, None) => "LOCK named no holder (emptied or damaged)".to_string(),
        };
        if !mine {
            if link.is_some() {
                std::fs::remove_file(&path).map_err(LockTrouble::Io)?;
            }
            let file = io::open_rw(faults, &path, true).map_err(LockTrouble::Io)?;
            match file.try_lock() {
                Ok(()) => self.file = file,
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LockTrouble::Doubt(WriterDoubt::LockHeldByOther {
                        holder: text
                            .map(|h| h.describe())
                            .unwrap_or_else(|| "a process LOCK does not name".into()),
                    }));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(LockTrouble::Io(e)),
            }
            io::sync_dir(faults, dir).map_err(LockTrouble::Io)?;
        }
        self.holder.closed = false;
        self.heartbeat(faults).map_err(io_err)?;
        Ok(LockCheck::Restored(found))
    }

    /// Rewrites the lock file's holder text (after it was found damaged or naming someone else); see
    /// [`DirLock::check`], which this is. Fails with `Locked` if another process can be writing.
    pub fn rewrite(&mut self, dir: &Path, faults: &IoFaults) -> Result<(), StoreError> {
        match self.check(dir, faults) {
            Ok(_) => Ok(()),
            Err(LockTrouble::Doubt(d)) => Err(StoreError::NotSoleWriter(d)),
            Err(LockTrouble::Io(e)) => Err(StoreError::io("rewriting LOCK", e)),
        }
    }

    /// Whether `LOCK` at the path (not following a link) is the very file this process holds locked.
    pub fn path_is_mine(&self, dir: &Path) -> bool {
        match (
            std::fs::symlink_metadata(dir.join(LOCK_FILE)),
            self.file.metadata(),
        ) {
            (Ok(a), Ok(b)) => same_inode(&a, &b),
            _ => false,
        }
    }

    /// The holder record of this process.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }
}
