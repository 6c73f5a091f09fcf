//! Snapshots: the whole document table at one LSN, written once and never modified (parity-protected by a sidecar).
//!
//! ```text
//! header  magic "MEDSNP\0\x01" | version u32 | lsn u64 | n_docs u64 | crc u32                      = 32 bytes
//! entry   len u32 | crc u32 (of len ++ body) | body: lsn u64 | id_len u16 | id | encoded document
//! trailer n_docs u64 | crc u32 of every entry crc in order                                        = 12 bytes
//! ```

use crate::codec::{Reader, crc_of};

const MAGIC: &[u8; 8] = b"MEDSNP\0\x01";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 32;

/// One document in a snapshot.
pub struct SnapEntry<'a> {
    /// The document id.
    pub id: &'a str,
    /// The LSN that wrote it.
    pub lsn: u64,
    /// Its encoding.
    pub doc: &'a [u8],
}

/// Encodes a snapshot at `lsn`.
pub fn encode<'a>(lsn: u64, entries: impl ExactSizeIterator<Item = SnapEntry<'a>>) -> Vec<u8> {
    let n = entries.len() as u64;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    let crc = crc_of(&[&out]);
    out.extend_from_slice(&crc.to_le_bytes());
    let mut all = 0u32;
    for e in entries {
        let body_len = 8 + 2 + e.id.len() + e.doc.len();
        let start = out.len();
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&e.lsn.to_le_bytes());
        out.extend_from_slice(&(e.id.len() as u16).to_le_bytes());
        out.extend_from_slice(e.id.as_bytes());
        out.extend_from_slice(e.doc);
        let c = crc_of(&[&out[start..start + 4], &out[start + 8..]]);
        out[start + 4..start + 8].copy_from_slice(&c.to_le_bytes());
        all = crc32c::crc32c_append(all, &c.to_le_bytes());
    }
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&all.to_le_bytes());
    out
}

/// A decoded snapshot entry, owned.
pub type Owned = (String, u64, Vec<u8>);

/// Decodes and verifies a snapshot. Errors name the byte offset of the damage.
pub fn decode(bytes: &[u8]) -> Result<(u64, Vec<Owned>), (u64, String)> {
    let mut r = Reader::new(bytes);
    let head = (|| -> Result<(u64, u64), String> {
        if r.bytes(8)? != MAGIC {
            return Err("bad snapshot magic".into());
        }
        let version = r.u32()?;
        let lsn = r.u64()?;
        let n = r.u64()?;
        let crc = r.u32()?;
        if crc_of(&[&bytes[..HEADER_BYTES - 4]]) != crc {
            return Err("snapshot header checksum mismatch".into());
        }
        if version != VERSION {
            return Err(format!("unknown snapshot version {version}"));
        }
        Ok((lsn, n))
    })()
    .map_err(|e| (0, e))?;
    let (lsn, n) = head;
    if n > (bytes.len() / 18) as u64 {
        return Err((
            0,
            "snapshot document count disagrees with its length".into(),
        ));
    }
    let mut out = Vec::with_capacity(n as usize);
    let mut all = 0u32;
    for _ in 0..n {
        let at = r.pos() as u64;
        let e = (|| -> Result<Owned, String> {
            let len = r.u32()? as usize;
            let crc = r.u32()?;
            let body = r.bytes(len)?;
            if crc_of(&[&(len as u32).to_le_bytes(), body]) != crc {
                return Err("snapshot entry checksum mismatch".into());
            }
            all = crc32c::crc32c_append(all, &crc.to_le_bytes());
            let mut b = Reader::new(body);
            let lsn = b.u64()?;
            let id_len = b.u16()? as usize;
            let id = std::str::from_utf8(b.bytes(id_len)?)
                .map_err(|e| format!("id not UTF-8: {e}"))?
                .to_owned();
            Ok((id, lsn, b.bytes(b.remaining())?.to_vec()))
        })()
        .map_err(|e| (at, e))?;
        out.push(e);
    }
    let at = r.pos() as u64;
    let tail = (|| -> Result<(), String> {
        if r.u64()? != n || r.u32()? != all || r.remaining() != 0 {
            return Err("snapshot trailer mismatch".into());
        }
        Ok(())
    })();
    tail.map_err(|e| (at, e))?;
    Ok((lsn, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_located() {
        let docs = [("a", 1u64, b"xx".as_slice()), ("b", 5, b"yyy".as_slice())];
        let bytes = encode(
            5,
            docs.iter()
                .map(|(id, lsn, doc)| SnapEntry { id, lsn: *lsn, doc }),
        );
        let (lsn, got) = decode(&bytes).unwrap();
        assert_eq!(lsn, 5);
        assert_eq!(got[1], ("b".to_string(), 5, b"yyy".to_vec()));
        let mut bad = bytes.clone();
        bad[45] ^= 1;
        let (at, msg) = decode(&bad).unwrap_err();
        assert_eq!(at, 32, "{msg}");
    }
}
