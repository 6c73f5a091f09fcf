//! What one durable commit costs on this disk, by the way its bytes are made durable: the floor under the store's
//! single-writer put rate (`BENCHMARKS.md`, "What a flush costs").
//!
//! Each mode appends `N` records of 1,100 bytes (a 1 KiB document's record) and makes each durable before the next,
//! as a lone writer's commits do; it prints commits per second. Modes:
//! - `one_file`: append + `fdatasync` to one file (a single-copy log, as SQLite's WAL);
//! - `two_files`: append to a main file and a mirror, `fdatasync` both, one after the other (medic's open segment);
//! - `two_files_prezeroed`: the same into files already allocated and flushed (no size change to make durable);
//! - `one_file_prezeroed`: one pre-allocated file, `fdatasync` (the floor for the mode below);
//! - `two_files_one_flush`: both pre-allocated files written, the mirror's range written out and waited for with
//!   `sync_file_range` (no device flush), then one `fdatasync` of the main file, whose device cache flush also makes
//!   the mirror's already-written blocks durable: one flush per commit for two copies;
//! - `two_files_parallel`: appended main and mirror, the two `fdatasync`s issued at once (the mirror's on a helper
//!   thread that lives for the whole run, not one per commit);
//! - `two_files_prezeroed_parallel`: both files pre-zeroed (zeros really written and flushed, so an overwrite has no
//!   allocation or size change to commit), the two `fdatasync`s issued at once on two threads;
//! - `two_files_overlap_one_flush`: both pre-zeroed files written, their ranges submitted to the device together
//!   (`sync_file_range(WRITE)` on each, no wait), then waited for (`sync_file_range(WAIT_BEFORE | WRITE |
//!   WAIT_AFTER)` on each), then one `fdatasync` of the main file, whose device cache flush also covers the mirror's
//!   completed writes (both files on one device): the two writes overlap, one flush per commit;
//! - `two_files_direct_threads_one_flush`: `O_DIRECT` 4 KiB block writes to both pre-zeroed files, the mirror's on a
//!   helper thread at the same time as the main file's, then one `fdatasync` of the main file (the device cache flush);
//! - `two_files_dsync`: `O_DSYNC` writes to both files (the kernel flushes inside each `write`);
//! - `two_files_direct`: `O_DIRECT | O_DSYNC` 4 KiB block writes to both pre-allocated files (bypassing the page
//!   cache; what a block-aligned log would do).
//!
//! Run: `cargo run --release -p store --example flushcost -- [DIR] [N] [ROUNDS] [MODE,MODE...]` (default: a temporary
//! directory under the current one, N = 2000, one round of every mode; the files are removed afterwards). With several
//! rounds the modes alternate within each round, so a noisy shared disk affects them alike; compare within a round. Written by hand because it measures the system calls
//! themselves.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

const RECORD_BYTES: usize = 1100;
const BLOCK_BYTES: usize = 4096;

#[repr(align(4096))]
struct Block([u8; BLOCK_BYTES]);

#[derive(Clone, Copy)]
enum Mode {
    OneFile,
    TwoFiles,
    TwoFilesPrezeroed,
    TwoFilesDsync,
    TwoFilesDirect,
    OneFilePrezeroed,
    TwoFilesOneFlush,
    TwoFilesParallel,
    TwoFilesPrezeroedParallel,
    TwoFilesOverlapOneFlush,
    TwoFilesDirectThreadsOneFlush,
}

impl Mode {
    const ALL: [Mode; 11] = [
        Mode::OneFile,
        Mode::TwoFiles,
        Mode::TwoFilesPrezeroed,
        Mode::TwoFilesDsync,
        Mode::TwoFilesDirect,
        Mode::OneFilePrezeroed,
        Mode::TwoFilesOneFlush,
        Mode::TwoFilesParallel,
        Mode::TwoFilesPrezeroedParallel,
        Mode::TwoFilesOverlapOneFlush,
        Mode::TwoFilesDirectThreadsOneFlush,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::OneFile => "one_file",
            Mode::TwoFiles => "two_files",
            Mode::TwoFilesPrezeroed => "two_files_prezeroed",
            Mode::TwoFilesDsync => "two_files_dsync",
            Mode::TwoFilesDirect => "two_files_direct",
            Mode::OneFilePrezeroed => "one_file_prezeroed",
            Mode::TwoFilesOneFlush => "two_files_one_flush",
            Mode::TwoFilesParallel => "two_files_parallel",
            Mode::TwoFilesPrezeroedParallel => "two_files_prezeroed_parallel",
            Mode::TwoFilesOverlapOneFlush => "two_files_overlap_one_flush",
            Mode::TwoFilesDirectThreadsOneFlush => "two_files_direct_threads_one_flush",
        }
    }

    fn flags(self) -> i32 {
        match self {
            Mode::TwoFilesDsync => libc::O_DSYNC,
            Mode::TwoFilesDirect => libc::O_DSYNC | libc::O_DIRECT,
            Mode::TwoFilesDirectThreadsOneFlush => libc::O_DIRECT,
            _ => 0,
        }
    }

    fn preallocated(self) -> bool {
        matches!(
            self,
            Mode::TwoFilesPrezeroed
                | Mode::TwoFilesDirect
                | Mode::OneFilePrezeroed
                | Mode::TwoFilesOneFlush
                | Mode::TwoFilesPrezeroedParallel
                | Mode::TwoFilesOverlapOneFlush
                | Mode::TwoFilesDirectThreadsOneFlush
        )
    }
}

/// Creates `path` (allocated and flushed to `bytes` when asked) and opens it with `flags`.
fn create(path: &Path, bytes: usize, preallocate: bool, flags: i32) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    if preallocate {
        f.write_all_at(&vec![0u8; bytes], 0)?;
    }
    f.sync_all()?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
}

/// Writes a file's dirty pages in `off..off + len` to the device and waits for them, without a cache flush.
fn write_out(f: &File, off: u64, len: usize) -> std::io::Result<()> {
    sync_range(
        f,
        off,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    )
}

/// `sync_file_range(f, off, len, flags)`.
#[allow(unsafe_code)] // `sync_file_range` has no safe wrapper in libc or rustix.
fn sync_range(f: &File, off: u64, len: usize, flags: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the call's duration; the range is plain integers.
    let r = unsafe { libc::sync_file_range(f.as_raw_fd(), off as i64, len as i64, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Commits per second of `mode` over `n` commits in `dir`.
fn run(dir: &Path, mode: Mode, n: usize) -> std::io::Result<f64> {
    let bytes = n * BLOCK_BYTES + BLOCK_BYTES;
    let (pre, flags) = (mode.preallocated(), mode.flags());
    let main = create(
        &dir.join(format!("{}.main", mode.name())),
        bytes,
        pre,
        flags,
    )?;
    let mirror = create(
        &dir.join(format!("{}.mirror", mode.name())),
        bytes,
        pre,
        flags,
    )?;
    let record = vec![7u8; RECORD_BYTES];
    // The mirror's flusher for the parallel modes: one thread for the run, told to flush through a channel.
    let mirror = std::sync::Arc::new(mirror);
    let (go, todo) = std::sync::mpsc::channel::<()>();
    let (done_tx, done) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let m2 = mirror.clone();
    let direct = matches!(mode, Mode::TwoFilesDirectThreadsOneFlush);
    let flusher = std::thread::spawn(move || {
        let block = Box::new(Block([7u8; BLOCK_BYTES]));
        let mut i = 0u64;
        while todo.recv().is_ok() {
            // In the direct mode the helper writes the mirror's block; otherwise it flushes the mirror.
            let r = if direct {
                m2.write_all_at(&block.0, i * BLOCK_BYTES as u64)
            } else {
                m2.sync_data()
            };
            i += 1;
            if done_tx.send(r).is_err() {
                break;
            }
        }
    });
    let block = Box::new(Block([7u8; BLOCK_BYTES]));
    let t0 = Instant::now();
    for i in 0..n {
        let off = (i * RECORD_BYTES) as u64;
        match mode {
            Mode::OneFile | Mode::OneFilePrezeroed => {
                main.write_all_at(&record, off)?;
                main.sync_data()?;
            }
            Mode::TwoFilesOneFlush => {
                main.write_all_at(&record, off)?;
                mirror.write_all_at(&record, off)?;
                write_out(&mirror, off, RECORD_BYTES)?;
                main.sync_data()?;
            }
            Mode::TwoFilesOverlapOneFlush => {
                main.write_all_at(&record, off)?;
                mirror.write_all_at(&record, off)?;
                let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                sync_range(&main, off, RECORD_BYTES, libc::SYNC_FILE_RANGE_WRITE)?;
                sync_range(&mirror, off, RECORD_BYTES, libc::SYNC_FILE_RANGE_WRITE)?;
                sync_range(&main, off, RECORD_BYTES, wait)?;
                sync_range(&mirror, off, RECORD_BYTES, wait)?;
                main.sync_data()?;
            }
            Mode::TwoFilesDirectThreadsOneFlush => {
                let at = (i * BLOCK_BYTES) as u64;
                go.send(()).map_err(std::io::Error::other)?;
                main.write_all_at(&block.0, at)?;
                done.recv().map_err(std::io::Error::other)??;
                main.sync_data()?;
            }
            Mode::TwoFilesParallel | Mode::TwoFilesPrezeroedParallel => {
                main.write_all_at(&record, off)?;
                mirror.write_all_at(&record, off)?;
                go.send(()).map_err(std::io::Error::other)?;
                main.sync_data()?;
                done.recv().map_err(std::io::Error::other)??;
            }
            Mode::TwoFiles | Mode::TwoFilesPrezeroed => {
                main.write_all_at(&record, off)?;
                mirror.write_all_at(&record, off)?;
                main.sync_data()?;
                mirror.sync_data()?;
            }
            Mode::TwoFilesDsync => {
                main.write_all_at(&record, off)?;
                mirror.write_all_at(&record, off)?;
            }
            Mode::TwoFilesDirect => {
                let at = (i * BLOCK_BYTES) as u64;
                main.write_all_at(&block.0, at)?;
                mirror.write_all_at(&block.0, at)?;
            }
        }
    }
    let per_s = n as f64 / t0.elapsed().as_secs_f64();
    drop(go);
    let _ = flusher.join();
    Ok(per_s)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| ".".into());
    let n: usize = match args.next() {
        None => 2000,
        Some(a) => a.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("N (commits per mode) must be a count: {a:?}: {e}"),
            )
        })?,
    };
    let rounds: usize = match args.next() {
        None => 1,
        Some(a) => a.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("ROUNDS must be a count: {a:?}: {e}"),
            )
        })?,
    };
    let modes: Vec<Mode> = match args.next() {
        None => Mode::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|name| {
                Mode::ALL
                    .into_iter()
                    .find(|m| m.name() == name)
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!(
                                "unknown mode {name:?}; modes: {}",
                                Mode::ALL.map(|m| m.name()).join(",")
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let dir = tempfile::tempdir_in(&base)?;
    println!("{n} commits per mode in {}", dir.path().display());
    for round in 1..=rounds {
        for &mode in &modes {
            let per_s = run(dir.path(), mode, n)?;
            println!("round {round} {:30} {per_s:8.0} commits/s", mode.name());
        }
    }
    Ok(())
}
