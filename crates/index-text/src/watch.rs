//! Watching, on disk, the files a generation's reader opened while it serves them.
//!
//! tantivy writes a segment's files once, under names never used again (`<segment uuid>.<ext>`, deletes as
//! `<uuid>.<opstamp>.del`). The reader does not read them from disk while it searches: [`crate::directory`] read
//! each whole into memory and checked it against its footer's CRC32 when the segment was opened. So a file changed
//! on disk afterwards (truncated, overwritten, replaced by another file) changes no answer and is no SIGBUS — but it
//! is damage all the same: a reload that reads it again (once no searcher holds its bytes) or a restart would meet
//! it. So each file the reader's
//! *current* searcher uses is stamped — length, modification time, inode — the first time a searcher listing it is
//! looked at (right after the commit that made it visible: [`crate::index`]'s `commit` looks at once, and at open),
//! and looked at again with a `statx` of each, relative to the held generation directory (length, time and inode
//! only):
//! - by the derived driver's [`store::derived::DerivedIndex::quick_check`] every 200 ms;
//! - before each persist, so nothing is committed on a generation whose files changed under it.
//!
//! A file that differs latches the generation damaged (as does a reload after a commit that found a file not as
//! written: [`Watch::latch`]); the driver rebuilds the index into a new generation (whose watch starts clean).
//! Searches are not looked at around: until the rebuild replaces the generation they answer from its checked
//! bytes in memory, which are right.
//!
//! What follows the segment list: the files looked at are those of the searcher in hand, listed again whenever its
//! reader generation changes (each commit's reload). A file tantivy removes itself — the segments a merge replaced,
//! an older `.del` file — is no longer listed by the next searcher; a searcher still holding it reads its bytes in
//! memory. So a file that is *gone* is never damage here, and a file gone while `meta.json` still names it is the
//! deep check's `missing_files` (rebuilt). A file gone and back under the same name with another stamp is damage
//! (tantivy never reuses a name). No stamp is read from a file that is not there, so a reload racing a look cannot
//! stamp a file wrong: either it is there, as tantivy wrote it, or it is skipped.
//!
//! Not watched, and the bounds:
//! - a change that keeps the length, the modification time and the inode (bytes changed below the file system,
//!   a write whose time is set back) — only the deep check's checksums ([`crate::TextIndex::verify_files`]) find
//!   it; the searcher is not wrong meanwhile (its bytes are in memory), a reload opening that file refuses it by
//!   its checksum;
//! - `meta.json` and tantivy's `.managed.json` (read at open and reload through `atomic_read`, not held by a
//!   searcher);
//! - the time to notice: up to one quick-check interval (200 ms) and the driver's rebuild after it, during which
//!   searches are answered from memory;
//! - memory: the segment files the searcher uses live in the heap, about their size on disk (a merge holds its
//!   sources and its result at once until the sources' searchers go), where a map would let the kernel page them
//!   out — the price of answers no file change can alter (BENCHMARKS).

use std::collections::HashMap;
use std::sync::Mutex;

use tantivy::Searcher;

use crate::directory::HeldDirectory;
use crate::verify::SEGMENT_EXTENSIONS;

/// Stamps kept beyond those of the current listing (files of earlier listings, some since removed by tantivy)
/// before the others are forgotten.
const EXTRA_STAMPS_MAX: usize = 256;

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    /// Seconds and nanoseconds.
    modified: (i64, u32),
    inode: u64,
}

/// File `name` relative to the directory `dir` now (one `statx` asking for length, time and inode; a link is
/// looked at itself, never followed): its stamp, or `None` when it is not there.
fn stamp_at(
    dir: impl std::os::fd::AsFd,
    name: impl rustix::path::Arg,
) -> std::io::Result<Option<Stamp>> {
    use rustix::fs::{AtFlags, StatxFlags};
    let want = StatxFlags::SIZE | StatxFlags::MTIME | StatxFlags::INO;
    match rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, want) {
        Ok(x) => Ok(Some(Stamp {
            len: x.stx_size,
            modified: (x.stx_mtime.tv_sec, x.stx_mtime.tv_nsec),
            inode: x.stx_ino,
        })),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[derive(Default)]
struct State {
    /// The reader generation `listed` is for.
    listed_for: Option<u64>,
    /// The files that searcher uses (names in the generation directory).
    listed: Vec<String>,
    /// The stamp of each file when first looked at.
    stamps: HashMap<String, Stamp>,
    /// Latched once a file differs: the generation is never served again.
    damaged: Option<String>,
}

/// The stamps of one generation's committed files. See the module doc.
#[derive(Default)]
pub(crate) struct Watch {
    state: Mutex<State>,
}

/// The files `searcher` uses, as names in the generation directory.
fn files_of(searcher: &Searcher) -> Vec<String> {
    let mut out = Vec::new();
    for reader in searcher.segment_readers() {
        let uuid = reader.segment_id().uuid_string();
        for ext in SEGMENT_EXTENSIONS {
            out.push(format!("{uuid}.{ext}"));
        }
        if let Some(opstamp) = reader.delete_opstamp() {
            out.push(format!("{uuid}.{opstamp}.del"));
        }
    }
    out
}

impl Watch {
    /// Looks at every file `searcher` uses in `dir` (its generation directory, by the held descriptor): stamps the
    /// ones not seen before, compares the others. `Err` says which file differs and how; it is latched.
    pub(crate) fn check(&self, dir: &HeldDirectory, searcher: &Searcher) -> Result<(), String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &st.damaged {
            return Err(why.clone());
        }
        let generation = searcher.generation().generation_id();
        if st.listed_for != Some(generation) {
            st.listed = files_of(searcher);
            st.listed_for = Some(generation);
            st.forget_unlisted();
        }
        let State {
            listed,
            stamps,
            damaged,
            ..
        } = &mut *st;
        for name in listed.iter() {
            let now = match stamp_at(dir.fd(), name.as_str()) {
                Ok(Some(now)) => now,
                // Gone: tantivy removed it after a merge, or someone did; the map still reads it (module doc).
                Ok(None) => continue,
                Err(e) => return Err(latch(damaged, format!("{name}: {e}"))),
            };
            match stamps.get(name) {
                None => {
                    stamps.insert(name.clone(), now);
                }
                Some(was) if *was == now => {}
                Some(was) => return Err(latch(damaged, differs(name, was, &now))),
            }
        }
        Ok(())
    }
}

impl Watch {
    /// Latches the generation damaged for `why` (unless it already is): every later [`Watch::check`] says so.
    pub(crate) fn latch(&self, why: String) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.damaged.is_none() {
            st.damaged = Some(why);
        }
    }
}

impl State {
    /// Bounds the stamps kept: beyond [`EXTRA_STAMPS_MAX`] more than the listing, only the listing's are kept.
    fn forget_unlisted(&mut self) {
        if self.stamps.len() > self.listed.len() + EXTRA_STAMPS_MAX {
            let keep: std::collections::HashSet<&String> = self.listed.iter().collect();
            self.stamps.retain(|name, _| keep.contains(name));
        }
    }
}

fn differs(name: &str, was: &Stamp, now: &Stamp) -> String {
    let what = if now.inode != was.inode {
        "replaced by another file"
    } else if now.len != was.len {
        "its length changed"
    } else {
        "rewritten"
    };
    format!(
        "{name} changed under the open index: {what} ({} bytes, was {})",
        now.len, was.len
    )
}

fn latch(damaged: &mut Option<String>, why: String) -> String {
    *damaged = Some(why.clone());
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_differs_after_a_truncation_or_an_overwrite_of_the_same_length() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, vec![1u8; 4096]).unwrap();
        let before = stamp_at(rustix::fs::CWD, &p).unwrap().unwrap();
        assert_eq!(stamp_at(rustix::fs::CWD, &p).unwrap(), Some(before));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, vec![2u8; 4096]).unwrap();
        let rewritten = stamp_at(rustix::fs::CWD, &p).unwrap().unwrap();
        assert_eq!(rewritten.len, before.len);
        assert_ne!(rewritten, before);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(2048)
            .unwrap();
        assert_ne!(stamp_at(rustix::fs::CWD, &p).unwrap(), Some(rewritten));
        std::fs::remove_file(&p).unwrap();
        assert_eq!(stamp_at(rustix::fs::CWD, &p).unwrap(), None);
    }
}
