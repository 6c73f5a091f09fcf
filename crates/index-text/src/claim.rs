//! The index directory as the index's own: the directory it opened, never something else found at its path.
//!
//! A file, a symbolic link (to another collection's index, say) or any other entry at `idx/<collection>/text` is not
//! followed: it is moved aside to `text.not-a-directory-<µs>` beside it, never deleted (it may hold someone's files),
//! and a directory is created in its place. The index notices its directory replaced under it by its identity
//! (device and inode, taken without following a link) and is then rebuilt there from the table.
//! Meanwhile tantivy's own writes still go to the generation directory held open (`directory`), never through
//! whatever is at the path now.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::OpenError;

/// Device and inode of the directory at a path (a link is not followed: a link is no directory).
pub(crate) type Identity = (u64, u64);

/// The identity of the directory at `dir`; `None` when there is none (missing, a file, a link).
pub(crate) fn identity(dir: &Path) -> Option<Identity> {
    fs::symlink_metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// What is at `dir` instead of the directory with identity `opened`, said for a person; `None` when it is still there.
pub(crate) fn replaced(dir: &Path, opened: Identity) -> Option<String> {
    let what = match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && (m.dev(), m.ino()) == opened => return None,
        Ok(m) if m.is_dir() => "another directory".to_string(),
        Ok(m) if m.file_type().is_symlink() => match fs::read_link(dir) {
            Ok(to) => format!("a symbolic link to {}", to.display()),
            Err(_) => "a symbolic link".to_string(),
        },
        Ok(m) if m.is_file() => format!("a regular file of {} bytes", m.len()),
        Ok(_) => "neither a directory nor a file".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing".to_string(),
        Err(e) => format!("unreadable ({e})"),
    };
    Some(format!(
        "{} is {what}, not the index directory opened",
        dir.display()
    ))
}

/// Makes `dir` a directory: whatever else is at its path is moved aside first (see the module doc). Returns where
/// it went.
pub(crate) fn claim(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let moved = store::io::move_aside_non_directory(dir)?;
    fs::create_dir_all(dir)?;
    Ok(moved)
}

/// Takes the kernel lock on `dir/LOCK` (created if missing); a second writer is refused.
pub(crate) fn lock(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join("LOCK");
    let io_err = |context: &str, source| OpenError::Io {
        path: path.clone(),
        context: context.to_string(),
        source,
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("open", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(OpenError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock", e)),
    }
}

/// Claims and locks `dir`: its lock, its identity, and what was moved aside from its path.
pub(crate) fn claim_and_lock(dir: &Path) -> Result<(File, Identity, Option<PathBuf>), OpenError> {
    let moved = claim(dir).map_err(|e| OpenError::Io {
        path: dir.to_path_buf(),
        context: "claim the index directory".to_string(),
        source: e,
    })?;
    let file = lock(dir)?;
    Ok((file, identity(dir).unwrap_or((0, 0)), moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_or_a_link_at_the_path_is_moved_aside_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let other = tmp.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("keep"), b"theirs").unwrap();
        let dir = tmp.path().join("text");
        std::os::unix::fs::symlink(&other, &dir).unwrap();
        let (_lock, id, moved) = claim_and_lock(&dir).unwrap();
        let moved = moved.expect("the link moved aside");
        assert!(
            fs::symlink_metadata(&moved)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(identity(&dir), Some(id));
        assert!(!other.join("LOCK").exists(), "the link was followed");
        assert_eq!(fs::read(other.join("keep")).unwrap(), b"theirs");
        assert_eq!(replaced(&dir, id), None);

        fs::rename(&dir, tmp.path().join("gone")).unwrap();
        fs::write(&dir, vec![7u8; 4096]).unwrap();
        let why = replaced(&dir, id).unwrap();
        assert!(why.contains("a regular file of 4096 bytes"), "{why}");
        let moved = claim(&dir).unwrap().expect("the file moved aside");
        assert_eq!(fs::read(&moved).unwrap(), vec![7u8; 4096]);
        assert!(identity(&dir).is_some_and(|i| i != id));
        assert!(replaced(&dir, id).unwrap().contains("another directory"));
    }
}
