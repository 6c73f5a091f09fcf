//! Eyes on the machine: the process's own readings (resident memory, CPU time, open file descriptors, threads)
//! behind the [`ProcessProbe`] trait, so the engine (`heal`) stays pure and tests can give any reading. The real
//! probe, [`ProcfsProbe`], reads `/proc/self` through the `procfs` crate.
//!
//! Also the memory-pressure gate: [`MemoryGuard`] compares the resident memory with the configured
//! `server.memory_limit_bytes`; above it, large writes are refused with a 503 naming the limit (before the kernel's
//! OOM killer takes the whole process), while reads and small writes go on.

use heal::clock::Timestamp;
use heal::subject::Sample;
use serde::Serialize;

/// One reading of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessReading {
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// CPU time used since the process started (user + system), µs.
    pub cpu_us_total: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Threads.
    pub threads: u64,
}

impl ProcessReading {
    /// The reading as typed samples: `process_resident_bytes` (a size: trend rules judge it, such as a slow leak),
    /// `process_cpu_us_total` (a counter: the engine judges its rate, CPU µs per second), `process_open_fds` and
    /// `process_threads` (gauges).
    pub fn samples(&self, at: Timestamp) -> Vec<Sample> {
        vec![
            Sample::size("process_resident_bytes", self.resident_bytes as f64, at),
            Sample::counter("process_cpu_us_total", self.cpu_us_total as f64, at),
            Sample::gauge("process_open_fds", self.open_fds as f64, at),
            Sample::gauge("process_threads", self.threads as f64, at),
        ]
    }
}

/// Reads the process's resource use.
pub trait ProcessProbe: Send + Sync {
    /// Every reading.
    fn read(&self) -> Result<ProcessReading, String>;
    /// Resident memory only, bytes (cheap: called on large writes for the memory-pressure gate).
    fn resident_bytes(&self) -> Result<u64, String> {
        self.read().map(|r| r.resident_bytes)
    }
}

/// `/proc/self` through the `procfs` crate.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcfsProbe;

fn proc_err(what: &str) -> impl Fn(procfs::ProcError) -> String + '_ {
    move |e| format!("reading /proc/self/{what}: {e}")
}

impl ProcessProbe for ProcfsProbe {
    fn read(&self) -> Result<ProcessReading, String> {
        let me = procfs::process::Process::myself().map_err(proc_err(""))?;
        let stat = me.stat().map_err(proc_err("stat"))?;
        let ticks = procfs::ticks_per_second().max(1);
        let cpu_ticks = stat.utime.saturating_add(stat.stime);
        let open_fds = me.fd_count().map_err(proc_err("fd"))? as u64;
        Ok(ProcessReading {
            resident_bytes: stat.rss.saturating_mul(procfs::page_size()),
            cpu_us_total: cpu_ticks.saturating_mul(1_000_000) / ticks,
            open_fds,
            threads: u64::try_from(stat.num_threads).unwrap_or(0),
        })
    }

    fn resident_bytes(&self) -> Result<u64, String> {
        let me = procfs::process::Process::myself().map_err(proc_err(""))?;
        let statm = me.statm().map_err(proc_err("statm"))?;
        Ok(statm.resident.saturating_mul(procfs::page_size()))
    }
}

/// Why a write was refused under memory pressure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPressure {
    /// Resident memory when refused, bytes.
    pub resident_bytes: u64,
    /// The configured limit, bytes.
    pub limit_bytes: u64,
}

impl std::fmt::Display for MemoryPressure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory pressure: the process holds {} bytes resident, over server.memory_limit_bytes = {}; \
             large writes are refused until memory falls below the limit (reads and small writes go on)",
            self.resident_bytes, self.limit_bytes
        )
    }
}

/// The memory-pressure gate: with a limit configured, a write of at least `large_write_bytes_min` bytes is refused
/// while the resident memory is above the limit.
pub struct MemoryGuard {
    probe: Box<dyn ProcessProbe>,
    limit_bytes: Option<u64>,
    large_write_bytes_min: u64,
    refused: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for MemoryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGuard")
            .field("limit_bytes", &self.limit_bytes)
            .field("large_write_bytes_min", &self.large_write_bytes_min)
            .finish_non_exhaustive()
    }
}

impl MemoryGuard {
    /// A gate reading `probe`, refusing writes of at least `large_write_bytes_min` bytes above `limit_bytes`.
    pub fn new(
        probe: Box<dyn ProcessProbe>,
        limit_bytes: Option<u64>,
        large_write_bytes_min: u64,
    ) -> Self {
        Self {
            probe,
            limit_bytes,
            large_write_bytes_min,
            refused: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The configured limit, bytes.
    pub fn limit_bytes(&self) -> Option<u64> {
        self.limit_bytes
    }

    /// Writes refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether memory is above the limit now, and by how much.
    pub fn pressure(&self) -> Option<MemoryPressure> {
        let limit_bytes = self.limit_bytes?;
        // An unreadable /proc is no reason to refuse writes.
        let resident_bytes = self.probe.resident_bytes().ok()?;
        (resident_bytes > limit_bytes).then_some(MemoryPressure {
            resident_bytes,
            limit_bytes,
        })
    }

    /// `Err` when a write of `bytes` must be refused now.
    pub fn admit_write(&self, bytes: u64) -> Result<(), MemoryPressure> {
        if bytes < self.large_write_bytes_min {
            return Ok(());
        }
        match self.pressure() {
            Some(p) => {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(p)
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);

    impl ProcessProbe for Fixed {
        fn read(&self) -> Result<ProcessReading, String> {
            Ok(ProcessReading {
                resident_bytes: self.0,
                ..ProcessReading::default()
            })
        }
    }

    #[test]
    fn procfs_reads_this_process() {
        let r = ProcfsProbe.read().expect("a reading of /proc/self");
        assert!(r.resident_bytes > 1 << 20, "{r:?}");
        assert!(r.open_fds >= 3, "{r:?}");
        assert!(r.threads >= 1, "{r:?}");
        let rss = ProcfsProbe.resident_bytes().unwrap();
        assert!(rss > 1 << 20);
        let kinds: Vec<_> = r
            .samples(7)
            .iter()
            .map(|s| (s.metric.clone(), s.kind))
            .collect();
        assert!(kinds.contains(&("process_cpu_us_total".into(), heal::MetricKind::Counter)));
        assert!(kinds.contains(&("process_resident_bytes".into(), heal::MetricKind::Size)));
    }

    #[test]
    fn only_large_writes_are_refused_and_only_above_the_limit() {
        let g = MemoryGuard::new(Box::new(Fixed(2_000)), Some(1_000), 100);
        assert!(g.admit_write(99).is_ok(), "a small write goes on");
        let e = g.admit_write(100).unwrap_err();
        assert!(
            e.to_string()
                .contains("over server.memory_limit_bytes = 1000"),
            "{e}"
        );
        assert_eq!(g.refused(), 1);
        let calm = MemoryGuard::new(Box::new(Fixed(500)), Some(1_000), 100);
        assert!(calm.admit_write(1 << 30).is_ok());
        let unlimited = MemoryGuard::new(Box::new(Fixed(u64::MAX)), None, 0);
        assert!(unlimited.admit_write(1 << 30).is_ok());
    }
}
