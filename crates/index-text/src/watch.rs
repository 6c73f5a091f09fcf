//! Watching a generation's committed files while they are served: tantivy writes a segment's files once and never
//! changes them, and a reader maps them, so a file changed under an open index (truncated, overwritten, replaced)
//! makes searches silently wrong. Each committed file's stamp — length, modification time, inode — is taken when a
//! commit makes it visible (or at open), and compared with a `stat` of every file before and after each search
//! (a few dozen `stat` calls, no read), at each apply and persist and by the derived driver's quick look
//! ([`store::derived::DerivedIndex::quick_check`]). A file that differs latches the generation as damaged: searches
//! fall back to a scan of the table, and the driver rebuilds the index.
//!
//! The window that remains: a change that keeps a file's length, modification time and inode (a write whose time
//! is set back, or bytes changed below the file system) is found only by the deep check's checksums
//! ([`crate::TextIndex::verify_files`]); and a file damaged between its commit and its stamp (the same call) is
//! stamped damaged.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use tantivy::Searcher;

use crate::verify::SEGMENT_EXTENSIONS;

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            inode: m.ino(),
        })
    }
}

#[derive(Default)]
struct State {
    /// The reader generation the files were listed for.
    searcher_generation: Option<u64>,
    files: BTreeMap<PathBuf, Stamp>,
    /// Latched once a file differs: the generation is never served again.
    damaged: Option<String>,
}

/// The stamps of one generation's committed files.
#[derive(Default)]
pub(crate) struct Watch {
    state: Mutex<State>,
}

/// The committed files `searcher` reads, relative to the generation directory.
fn files_of(searcher: &Searcher) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (id, del) in searcher.generation().segments() {
        let uuid = id.uuid_string();
        for ext in SEGMENT_EXTENSIONS {
            out.push(PathBuf::from(format!("{uuid}.{ext}")));
        }
        if let Some(opstamp) = del {
            out.push(PathBuf::from(format!("{uuid}.{opstamp}.del")));
        }
    }
    out
}

impl Watch {
    /// Lists the files `searcher` reads (when its generation changed since the last listing), stamping the new
    /// ones, then compares every stamp with the file now. `Err` names the first file that differs (latched).
    pub(crate) fn check(&self, dir: &Path, searcher: &Searcher) -> Result<(), String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &st.damaged {
            return Err(why.clone());
        }
        let generation = searcher.generation().generation_id();
        if st.searcher_generation != Some(generation) {
            let mut files = BTreeMap::new();
            for rel in files_of(searcher) {
                let stamp = match st.files.get(&rel) {
                    Some(s) => *s,
                    None => match Stamp::of(&dir.join(&rel)) {
                        Ok(s) => s,
                        Err(e) => return Err(latch(&mut st, format!("{}: {e}", rel.display()))),
                    },
                };
                files.insert(rel, stamp);
            }
            st.files = files;
            st.searcher_generation = Some(generation);
        }
        let mut differs = None;
        for (rel, was) in &st.files {
            match Stamp::of(&dir.join(rel)) {
                Ok(now) if now == *was => {}
                Ok(now) => {
                    differs = Some(format!(
                        "{}: changed under the open index ({} bytes, was {})",
                        rel.display(),
                        now.len,
                        was.len
                    ));
                    break;
                }
                Err(e) => {
                    differs = Some(format!("{}: {e}", rel.display()));
                    break;
                }
            }
        }
        match differs {
            Some(why) => Err(latch(&mut st, why)),
            None => Ok(()),
        }
    }
}

fn latch(st: &mut State, why: String) -> String {
    st.damaged = Some(why.clone());
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
        let before = Stamp::of(&p).unwrap();
        assert_eq!(Stamp::of(&p).unwrap(), before);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, vec![2u8; 4096]).unwrap();
        let rewritten = Stamp::of(&p).unwrap();
        assert_eq!(rewritten.len, before.len);
        assert_ne!(rewritten, before);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(2048)
            .unwrap();
        assert_ne!(Stamp::of(&p).unwrap(), rewritten);
    }
}
