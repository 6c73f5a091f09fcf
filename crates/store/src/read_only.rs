//! Why the store refuses writes: one typed state per cause, so callers (the health checks, the repair strategies,
//! the HTTP layer) decide by the variant, never by searching a message. Reads go on in every one of them.
//!
//! | state | lifted by |
//! |---|---|
//! | [`ReadOnly::DiskSpace`] | free space returning above `disk_critical_bytes_floor` (checked at least every 200 ms while writes come, and by every space check) |
//! | [`ReadOnly::Lost`] | restoring the lost file and reopening, or `medic accept-loss --yes` |
//! | [`ReadOnly::Crisis`] | the engine, once no incident with acknowledged data at risk is open |
//! | [`ReadOnly::Opened`] | nothing: the store was opened to read only |
//!
//! A failed fsync (`StoreError::Poisoned`) and a writer that cannot prove it is alone (`StoreError::NotSoleWriter`)
//! are errors of their own: they are not "read-only" but "stopped".

use std::fmt;
use std::path::PathBuf;

use crate::store::LostRange;

/// Why writes are refused now.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOnly {
    /// Too little free space to write safely.
    DiskSpace(DiskSpace),
    /// Acknowledged records were lost beyond every redundancy (found on open) and the loss is not accepted yet.
    Lost(Vec<LostRange>),
    /// The engine holds writes while a CRISIS incident is open; the reason it gave.
    Crisis(String),
    /// The store was opened with `Store::open_read_only`: this directory.
    Opened(PathBuf),
}

/// Free space below the floor, or a write the device refused for lack of space.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpace {
    /// Bytes free when measured (`None`: the device refused a write, not measured).
    pub free: Option<u64>,
    /// The configured `disk_critical_bytes_floor`.
    pub floor: u64,
    /// What the store was writing when the device answered "no space", if that is how it was found.
    pub refused: Option<String>,
}

impl DiskSpace {
    /// Measured free space below the floor.
    pub fn below(free: u64, floor: u64) -> DiskSpace {
        DiskSpace {
            free: Some(free),
            floor,
            refused: None,
        }
    }

    /// The device refused a write (`ENOSPC`) while the store was doing `what`.
    pub fn refused(what: impl Into<String>, floor: u64) -> DiskSpace {
        DiskSpace {
            free: None,
            floor,
            refused: Some(what.into()),
        }
    }
}

impl ReadOnly {
    /// Short name of the cause, stable for machines (`disk_space`, `lost`, `crisis`, `opened`).
    pub fn cause(&self) -> &'static str {
        match self {
            ReadOnly::DiskSpace(_) => "disk_space",
            ReadOnly::Lost(_) => "lost",
            ReadOnly::Crisis(_) => "crisis",
            ReadOnly::Opened(_) => "opened",
        }
    }

    /// Whether the state ends by itself (space returning), with no one acting.
    pub fn lifts_by_itself(&self) -> bool {
        matches!(self, ReadOnly::DiskSpace(_))
    }
}

impl fmt::Display for DiskSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.refused, self.free) {
            (Some(what), _) => write!(f, "read-only: disk space: {what}"),
            (None, Some(free)) => write!(
                f,
                "read-only: disk space: {free} bytes free, below disk_critical_bytes_floor = {}",
                self.floor
            ),
            (None, None) => write!(
                f,
                "read-only: disk space: free space unknown, disk_critical_bytes_floor = {}",
                self.floor
            ),
        }
    }
}

impl fmt::Display for ReadOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadOnly::DiskSpace(d) => d.fmt(f),
            ReadOnly::Lost(lost) => {
                let list = lost
                    .iter()
                    .map(LostRange::describe)
                    .collect::<Vec<_>>()
                    .join("; ");
                write!(
                    f,
                    "read-only: acknowledged data lost beyond every redundancy: {list}. Reads serve only documents \
                     certainly current. To resume writes, restore the lost file(s) from a backup and reopen, or \
                     accept the loss (`medic accept-loss --yes`) to snapshot what survives"
                )
            }
            ReadOnly::Crisis(reason) => write!(f, "read-only: {reason}"),
            ReadOnly::Opened(dir) => write!(
                f,
                "read-only: {} was opened for reading only (a command that changes nothing); `medic heal` or \
                 `medic serve` writes and repairs",
                dir.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_names_its_cause_and_what_lifts_it() {
        let low = ReadOnly::DiskSpace(DiskSpace::below(10, 4096));
        assert_eq!(
            low.to_string(),
            "read-only: disk space: 10 bytes free, below disk_critical_bytes_floor = 4096"
        );
        assert!(low.lifts_by_itself());
        let refused =
            ReadOnly::DiskSpace(DiskSpace::refused("writing the WAL failed: ENOSPC", 4096));
        assert_eq!(
            refused.to_string(),
            "read-only: disk space: writing the WAL failed: ENOSPC"
        );
        let crisis = ReadOnly::Crisis("incident 3 holds writes".into());
        assert_eq!(crisis.cause(), "crisis");
        assert!(!crisis.lifts_by_itself());
        let opened = ReadOnly::Opened(PathBuf::from("/d"));
        assert!(
            opened
                .to_string()
                .contains("/d was opened for reading only")
        );
        assert!(ReadOnly::Lost(vec![]).to_string().contains("accept-loss"));
    }
}
