//! Record identity sidecars: which document keys each LSN of a log segment or snapshot touched, kept in a file of
//! its own (`<file>.ids`: `wal/<id>.seg.ids`, `snap/<lsn>.snap.ids`), so that records lost beyond every redundancy
//! name the documents they may have changed and every other document stays readable.
//!
//! A file is a sequence of frames, each checksummed on its own, so damage costs only the frames it reaches:
//!
//! ```text
//! frame  magic "MIDF" | len u32 | crc u32 (of len ++ body) | body
//! body   first_lsn u64 | last_lsn u64 | n u32 | n × (lsn u64 | key_len u16 | key)
//! ```
//!
//! A frame's promise: **every record (or snapshot entry) of the file with an LSN in `first_lsn..=last_lsn` is
//! listed**. Frames of one file cover consecutive intervals: the open segment's journal gets one frame per commit
//! batch, starting one above the last durable LSN before it (a failed batch was cut from the log, so its LSNs hold
//! no record); on open and when a segment is sealed the file is rewritten from the verified records; a snapshot's
//! entries are listed by LSN up to the snapshot's LSN. A lost LSN range names its keys only when intact frames
//! cover all of it ([`Identities::keys_in`]); otherwise the loss stays anonymous and the store answers only what is
//! certainly current, as before.
//!
//! The open segment's journal is written without a flush of its own: a crash can cut its tail, which the next
//! open rewrites from the log. Only damage to log records *and* to the journal frames naming them, before the next
//! open, leaves a loss anonymous.

use std::collections::BTreeSet;

use crate::codec::{RECORD_FIXED_BYTES, RECORD_HEADER_BYTES, Reader, crc_of};

const MAGIC: &[u8; 4] = b"MIDF";
/// Bytes before a frame's body: magic, length, checksum.
const FRAME_HEADER_BYTES: usize = 12;
/// Keys per frame when a whole file is written at once (a damaged frame costs at most this many).
pub const KEYS_PER_FRAME: usize = 4096;
/// The largest frame body read back: a length above it is damage.
const FRAME_BYTES_MAX: usize = 64 << 20;

/// The sidecar of a data file (relative path in, relative path out).
pub fn name_for(rel: &str) -> String {
    format!("{rel}.ids")
}

/// Appends one frame: the interval `first..=last` and the keys with their LSNs in it.
pub fn encode_frame<'a>(
    first: u64,
    last: u64,
    entries: impl IntoIterator<Item = (u64, &'a str)>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&last.to_le_bytes());
    let n_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut n = 0u32;
    for (lsn, key) in entries {
        // A key longer than u16 cannot be stored (ids are bounded far below it); such a frame is left unwritten.
        let Ok(len) = u16::try_from(key.len()) else {
            out.truncate(start);
            return;
        };
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        n += 1;
    }
    out[n_at..n_at + 4].copy_from_slice(&n.to_le_bytes());
    let body_len = (out.len() - start - FRAME_HEADER_BYTES) as u32;
    out[start + 4..start + 8].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc_of(&[
        &out[start + 4..start + 8],
        &out[start + FRAME_HEADER_BYTES..],
    ]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// The `(lsn, key)` of each framed WAL record in `buf` (records this process encoded: trusted, not re-verified),
/// in order. Stops at the first frame that does not parse.
pub fn record_keys(buf: &[u8]) -> Vec<(u64, &str)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + RECORD_HEADER_BYTES + RECORD_FIXED_BYTES <= buf.len() {
        let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let body = pos + RECORD_HEADER_BYTES;
        if len < RECORD_FIXED_BYTES || body + len > buf.len() {
            break;
        }
        let mut r = Reader::new(&buf[body..body + len]);
        let parsed = (|| -> Result<(u64, &str), String> {
            let lsn = r.u64()?;
            let _kind = r.u8()?;
            let id_len = r.u16()? as usize;
            let id = std::str::from_utf8(r.bytes(id_len)?).map_err(|e| e.to_string())?;
            Ok((lsn, id))
        })();
        match parsed {
            Ok(k) => out.push(k),
            Err(_) => break,
        }
        pos = body + len;
    }
    out
}

/// A whole sidecar for `entries` (sorted by LSN here), covering `first..=last` in frames of [`KEYS_PER_FRAME`] keys.
pub fn encode_all(first: u64, last: u64, entries: &mut [(u64, &str)]) -> Vec<u8> {
    entries.sort_unstable();
    let mut out = Vec::new();
    let mut from = first;
    let chunks: Vec<&[(u64, &str)]> = entries.chunks(KEYS_PER_FRAME).collect();
    if chunks.is_empty() {
        encode_frame(first, last, [], &mut out);
        return out;
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let to = if i + 1 == chunks.len() {
            last
        } else {
            chunk.last().map_or(from, |e| e.0)
        };
        encode_frame(from, to, chunk.iter().copied(), &mut out);
        from = to.saturating_add(1);
    }
    out
}

/// The whole sidecar of a segment whose verified bytes (header included) are `segment`, covering `first..=last`.
pub fn of_segment(segment: &[u8], first: u64, last: u64) -> Vec<u8> {
    let records = segment
        .get(crate::wal::HEADER_BYTES as usize..)
        .unwrap_or(&[]);
    encode_all(first, last, &mut record_keys(records))
}

/// The whole sidecar of a snapshot at LSN `lsn` holding `entries` (key, version LSN).
pub fn of_snapshot<'a>(lsn: u64, entries: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<u8> {
    let mut keys: Vec<(u64, &str)> = entries.into_iter().map(|(k, l)| (l, k)).collect();
    encode_all(1, lsn, &mut keys)
}

/// One intact frame read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    first: u64,
    last: u64,
    entries: Vec<(u64, String)>,
}

/// The intact frames of a sidecar.
#[derive(Debug, Default, Clone)]
pub struct Identities {
    frames: Vec<Frame>,
}

fn decode_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < FRAME_HEADER_BYTES || &buf[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if len > FRAME_BYTES_MAX || buf.len() < FRAME_HEADER_BYTES + len {
        return None;
    }
    let body = &buf[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len];
    if crc_of(&[&buf[4..8], body]) != crc {
        return None;
    }
    let mut r = Reader::new(body);
    let frame = (|| -> Result<Frame, String> {
        let first = r.u64()?;
        let last = r.u64()?;
        let n = r.u32()? as usize;
        let mut entries = Vec::with_capacity(n.min(len / 10 + 1));
        for _ in 0..n {
            let lsn = r.u64()?;
            let kl = r.u16()? as usize;
            let key = std::str::from_utf8(r.bytes(kl)?).map_err(|e| e.to_string())?;
            entries.push((lsn, key.to_owned()));
        }
        Ok(Frame {
            first,
            last,
            entries,
        })
    })()
    .ok()?;
    Some((frame, FRAME_HEADER_BYTES + len))
}

/// `buf`'s leading run of intact frames, each with the offset where it ends (the journal is appended frame by frame,
/// so this is what it held in order, up to the first damage).
fn leading(buf: &[u8]) -> impl Iterator<Item = (Frame, usize)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let (f, n) = decode_frame(&buf[pos..])?;
        pos += n;
        Some((f, pos))
    })
}

/// The highest LSN listed by `buf`'s leading run of intact frames (each entry inside its frame's interval), or
/// `None`. The open segment's journal gets a batch's frame only after the batch is durable, so every LSN it lists was
/// durable once: a record it names that the log no longer holds was damaged after it was written, never torn by a
/// crash. Frames after a damaged one are not trusted for this (a resynchronised read could land in a key's bytes).
pub fn highest_listed_leading(buf: &[u8]) -> Option<u64> {
    leading(buf)
        .map(|(f, _)| f)
        .take_while(|f| f.entries.iter().all(|e| (f.first..=f.last).contains(&e.0)))
        .filter_map(|f| f.entries.iter().map(|e| e.0).max())
        .max()
}

/// The length of `buf`'s leading run of intact frames that list only LSNs below `lsn` (what the journal held before
/// the batch starting at `lsn` was durable: the frames are appended in LSN order).
pub fn prefix_below(buf: &[u8], lsn: u64) -> usize {
    leading(buf)
        .take_while(|(f, _)| f.entries.iter().all(|e| e.0 < lsn))
        .last()
        .map_or(0, |(_, end)| end)
}

impl Identities {
    /// Every intact frame of `buf`; damaged bytes are skipped up to the next frame that verifies.
    pub fn parse(buf: &[u8]) -> Identities {
        let mut frames = Vec::new();
        let mut pos = 0usize;
        while pos < buf.len() {
            match decode_frame(&buf[pos..]) {
                Some((f, n)) => {
                    frames.push(f);
                    pos += n;
                }
                None => {
                    // Resynchronise at the next magic.
                    match buf[pos + 1..].windows(4).position(|w| w == MAGIC) {
                        Some(p) => pos += 1 + p,
                        None => break,
                    }
                }
            }
        }
        Identities { frames }
    }

    /// The keys of every record with an LSN in `a..=b`, sorted and without repeats, when intact frames cover the
    /// whole interval; `None` when some LSN of it is covered by no intact frame.
    pub fn keys_in(&self, a: u64, b: u64) -> Option<Vec<String>> {
        let mut spans: Vec<(u64, u64)> = self
            .frames
            .iter()
            .filter(|f| f.first <= f.last && f.last >= a && f.first <= b)
            .map(|f| (f.first, f.last))
            .collect();
        spans.sort_unstable();
        let mut next = a;
        for (s, e) in spans {
            if s > next {
                return None;
            }
            if e >= next {
                if e >= b {
                    next = b.saturating_add(1);
                    break;
                }
                next = e + 1;
            }
        }
        if a <= b && next <= b {
            return None;
        }
        let keys: BTreeSet<&str> = self
            .frames
            .iter()
            .flat_map(|f| f.entries.iter())
            .filter(|(l, _)| (a..=b).contains(l))
            .map(|(_, k)| k.as_str())
            .collect();
        Some(keys.into_iter().map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{KIND_DELETE, KIND_PUT, encode_record};

    #[test]
    fn keys_of_a_covered_interval_are_named_and_a_gap_leaves_it_anonymous() {
        let mut buf = Vec::new();
        encode_frame(1, 3, [(1, "a"), (2, "b"), (3, "a")], &mut buf);
        encode_frame(4, 6, [(4, "c"), (6, "d")], &mut buf);
        encode_frame(9, 10, [(9, "e"), (10, "f")], &mut buf);
        let ids = Identities::parse(&buf);
        assert_eq!(ids.keys_in(2, 2), Some(vec!["b".into()]));
        assert_eq!(ids.keys_in(3, 4), Some(vec!["a".into(), "c".into()]));
        assert_eq!(
            ids.keys_in(1, 6),
            Some(
                vec!["a", "b", "c", "d"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        assert_eq!(
            ids.keys_in(5, 5),
            Some(vec![]),
            "an LSN a frame covers but no record holds"
        );
        assert_eq!(ids.keys_in(6, 9), None, "7..=8 are covered by no frame");
        assert_eq!(ids.keys_in(9, 11), None, "11 is beyond the last frame");
    }

    #[test]
    fn a_damaged_frame_costs_only_its_own_interval() {
        let mut buf = Vec::new();
        encode_frame(1, 2, [(1, "a"), (2, "b")], &mut buf);
        let second = buf.len();
        encode_frame(3, 4, [(3, "c"), (4, "d")], &mut buf);
        let third = buf.len();
        encode_frame(5, 6, [(5, "e"), (6, "f")], &mut buf);
        for flip in second..third {
            let mut b = buf.clone();
            b[flip] ^= 0x20;
            let ids = Identities::parse(&b);
            assert_eq!(
                ids.keys_in(1, 2),
                Some(vec!["a".into(), "b".into()]),
                "flip at {flip}"
            );
            assert_eq!(
                ids.keys_in(5, 6),
                Some(vec!["e".into(), "f".into()]),
                "flip at {flip}"
            );
            assert_eq!(
                ids.keys_in(3, 3),
                None,
                "flip at {flip}: a damaged frame names nothing"
            );
        }
        // A torn tail: the last frame cut short.
        let ids = Identities::parse(&buf[..buf.len() - 3]);
        assert_eq!(ids.keys_in(5, 5), None);
        assert!(ids.keys_in(1, 4).is_some());
    }

    #[test]
    fn keys_of_encoded_records_and_a_whole_file_in_frames() {
        let mut recs = Vec::new();
        encode_record(7, KIND_PUT, "x", b"doc", &mut recs);
        encode_record(8, KIND_DELETE, "y", &[], &mut recs);
        encode_record(9, KIND_PUT, "x", b"doc2", &mut recs);
        assert_eq!(record_keys(&recs), vec![(7, "x"), (8, "y"), (9, "x")]);
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let mut entries: Vec<(u64, &str)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (20_000 - 2 * i as u64, k.as_str()))
            .collect();
        let buf = encode_all(1, 30_000, &mut entries);
        let ids = Identities::parse(&buf);
        assert_eq!(ids.frames.len(), 10_000usize.div_ceil(KEYS_PER_FRAME));
        assert_eq!(ids.keys_in(1, 30_000).map(|k| k.len()), Some(10_000));
        assert_eq!(ids.keys_in(20_000, 20_000), Some(vec!["k0".into()]));
        let empty = encode_all(5, 9, &mut []);
        assert_eq!(Identities::parse(&empty).keys_in(5, 9), Some(vec![]));
    }
}
