//! Damage to an index's own file for tests and chaos drills ([`FileFault`]): one bit flipped, a range zeroed, the
//! file deleted — what bit rot, a lost sector and a clean-up script do to `hnsw.bin` or `ivf.bin` while the index
//! in memory stays whole. Here rather than in the store's injector because the index owns its file's layout and
//! writes it (through `store::io`); [`crate::HnswIndex::inject_file`] and [`crate::IvfIndex::inject_file`] hold the
//! index's writer lock, so no persist runs during the damage.
//!
//! Every choice (byte, bit, range) derives from the fault's seed. A zeroed range is drawn where the file holds a
//! non-zero byte (zeroing zeros would change nothing), at most [`ZERO_TRIES`] draws.

use std::path::Path;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

/// Fewest bytes a [`FileFault::ZeroRange`] zeroes (fewer when the file is shorter).
pub const ZERO_BYTES_MIN: u64 = 64;
/// Most bytes a [`FileFault::ZeroRange`] zeroes.
pub const ZERO_BYTES_MAX: u64 = 4_096;
/// Draws of a range before a [`FileFault::ZeroRange`] gives up on a file of zeros.
const ZERO_TRIES: usize = 64;

/// A fault of an index's file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FileFault {
    /// One bit of one byte flipped in place.
    BitFlip { seed: u64 },
    /// [`ZERO_BYTES_MIN`]..=[`ZERO_BYTES_MAX`] bytes overwritten with zeros in place.
    ZeroRange { seed: u64 },
    /// The file removed.
    Deleted,
}

/// Why a file fault could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum FileFaultError {
    /// The file is not there (nothing persisted yet, or already gone).
    #[error("{path}: no index file to damage")]
    Missing { path: String },
    /// Reading, writing or removing the file failed.
    #[error("{path}: {context}: {source}")]
    Io {
        path: String,
        context: &'static str,
        source: std::io::Error,
    },
    /// No range of the file holds a non-zero byte.
    #[error("{path}: every byte drawn is already zero")]
    AllZero { path: String },
}

/// Damages the file at `path` as `fault` says; what was done, e.g. `flipped bit 3 of byte 812 of …/hnsw.bin`.
pub(crate) fn damage(path: &Path, fault: &FileFault) -> Result<String, FileFaultError> {
    let shown = path.display().to_string();
    let io = |context: &'static str| {
        let path = shown.clone();
        move |source| FileFaultError::Io {
            path,
            context,
            source,
        }
    };
    if !path.is_file() {
        return Err(FileFaultError::Missing { path: shown });
    }
    match *fault {
        FileFault::Deleted => {
            std::fs::remove_file(path).map_err(io("removing"))?;
            Ok(format!("deleted {shown}"))
        }
        FileFault::BitFlip { seed } => {
            let mut bytes = std::fs::read(path).map_err(io("reading"))?;
            if bytes.is_empty() {
                return Err(FileFaultError::AllZero { path: shown });
            }
            let mut rng = StdRng::seed_from_u64(seed);
            let at = rng.random_range(0..bytes.len());
            let bit: u8 = rng.random_range(0..8);
            bytes[at] ^= 1 << bit;
            std::fs::write(path, &bytes).map_err(io("writing"))?;
            Ok(format!("flipped bit {bit} of byte {at} of {shown}"))
        }
        FileFault::ZeroRange { seed } => {
            let mut bytes = std::fs::read(path).map_err(io("reading"))?;
            let len = bytes.len() as u64;
            let mut rng = StdRng::seed_from_u64(seed);
            for _ in 0..ZERO_TRIES {
                let n = rng.random_range(ZERO_BYTES_MIN..=ZERO_BYTES_MAX).min(len);
                let at = rng.random_range(0..=len - n);
                let range = at as usize..(at + n) as usize;
                if bytes[range.clone()].iter().all(|b| *b == 0) {
                    continue;
                }
                bytes[range].fill(0);
                std::fs::write(path, &bytes).map_err(io("writing"))?;
                return Ok(format!("zeroed {n} bytes at {at} of {shown}"));
            }
            Err(FileFaultError::AllZero { path: shown })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_changes_the_file_as_it_says_and_replays_from_its_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 251 + 1) as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let said = damage(&path, &FileFault::BitFlip { seed: 3 }).unwrap();
        let flipped = std::fs::read(&path).unwrap();
        let diff: Vec<usize> = (0..original.len())
            .filter(|&i| original[i] != flipped[i])
            .collect();
        assert_eq!(diff.len(), 1, "{said}");
        assert_eq!((original[diff[0]] ^ flipped[diff[0]]).count_ones(), 1);
        assert!(said.contains(&format!("byte {}", diff[0])), "{said}");
        // Same seed, same damage.
        std::fs::write(&path, &original).unwrap();
        assert_eq!(
            damage(&path, &FileFault::BitFlip { seed: 3 }).unwrap(),
            said
        );

        std::fs::write(&path, &original).unwrap();
        let said = damage(&path, &FileFault::ZeroRange { seed: 9 }).unwrap();
        let zeroed = std::fs::read(&path).unwrap();
        let changed = (0..original.len())
            .filter(|&i| original[i] != zeroed[i])
            .count() as u64;
        assert!(
            (ZERO_BYTES_MIN..=ZERO_BYTES_MAX).contains(&changed),
            "{said}"
        );
        assert!(said.contains(&format!("zeroed {changed} bytes")), "{said}");

        std::fs::write(&path, vec![0u8; 5_000]).unwrap();
        assert!(matches!(
            damage(&path, &FileFault::ZeroRange { seed: 1 }),
            Err(FileFaultError::AllZero { .. })
        ));

        damage(&path, &FileFault::Deleted).unwrap();
        assert!(!path.exists());
        assert!(matches!(
            damage(&path, &FileFault::Deleted),
            Err(FileFaultError::Missing { .. })
        ));
    }
}
