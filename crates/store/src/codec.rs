//! Explicit on-disk bytes: the [`Document`] encoding, the WAL record frame and the checksum helpers. Fixed-width
//! little-endian fields only; meta is stored as its JSON text (postcard cannot carry `serde_json::Value`, which needs
//! a self-describing format). Every decoder checks lengths before it reads, so damaged input is an error, never a
//! panic.

use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::error::StoreError;

/// One stored document: what a client put, returned exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The text.
    pub text: String,
    /// An embedding; every vector of a store has the same dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// A JSON object of metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Document {
    /// A document with only text.
    pub fn text(text: impl Into<String>) -> Self {
        Document {
            text: text.into(),
            vector: None,
            meta: None,
        }
    }
}

const NONE32: u32 = u32::MAX;

/// Record kinds in the WAL.
pub const KIND_PUT: u8 = 1;
/// A deletion.
pub const KIND_DELETE: u8 = 2;
/// Kind flag: the record is batch-marked, its body ends with `follows: u64` (see [`BatchMark`]).
pub const KIND_MARKED: u8 = 0x80;
/// Kind flag (with [`KIND_MARKED`] only): the last record of its commit batch.
pub const KIND_LAST_OF_BATCH: u8 = 0x40;
/// The kind bits that are not flags.
const KIND_BASE_MASK: u8 = 0x3F;
/// Bytes a batch mark adds to a record's body.
pub const BATCH_MARK_BYTES: usize = 8;

/// Bytes before a record's body: `len: u32`, `crc: u32`.
pub const RECORD_HEADER_BYTES: usize = 8;
/// A record body's fixed part: `lsn: u64`, `kind: u8`, `id_len: u16`.
pub const RECORD_FIXED_BYTES: usize = 11;

/// CRC32C of several slices in a row.
pub fn crc_of(parts: &[&[u8]]) -> u32 {
    parts.iter().fold(0, |c, p| crc32c::crc32c_append(c, p))
}

/// Checks an id: non-empty, within `id_bytes_max`, no control characters.
pub fn validate_id(id: &str, limits: &Limits) -> Result<(), StoreError> {
    if id.is_empty() {
        return Err(StoreError::InvalidInput("id is empty".into()));
    }
    if id.len() as u64 > limits.id_bytes_max {
        return Err(StoreError::TooLarge {
            what: "id",
            limit: limits.id_bytes_max,
            actual: id.len() as u64,
        });
    }
    if id.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput(
            "id contains a control character".into(),
        ));
    }
    Ok(())
}

/// Checks a document against the limits and the store's vector dimension (if fixed). Returns the meta JSON.
pub fn validate_doc(
    doc: &Document,
    limits: &Limits,
    vector_dim: Option<u32>,
) -> Result<Option<Vec<u8>>, StoreError> {
    if doc.text.len() as u64 > limits.text_bytes_max {
        return Err(StoreError::TooLarge {
            what: "text",
            limit: limits.text_bytes_max,
            actual: doc.text.len() as u64,
        });
    }
    if let Some(v) = &doc.vector {
        if v.is_empty() {
            return Err(StoreError::InvalidInput("vector is empty".into()));
        }
        if v.len() as u64 > limits.vector_dim_max as u64 {
            return Err(StoreError::InvalidInput(format!(
                "vector has {} dimensions, over the limit vector_dim_max = {}",
                v.len(),
                limits.vector_dim_max
            )));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(StoreError::InvalidInput(format!(
                "vector[{i}] is not a finite number"
            )));
        }
        if let Some(dim) = vector_dim
            && v.len() as u32 != dim
        {
            return Err(StoreError::InvalidInput(
                crate::collection::wrong_dimension(crate::collection::DEFAULT, v.len(), dim),
            ));
        }
    }
    match &doc.meta {
        None => Ok(None),
        Some(m) => {
            let json = serde_json::to_vec(m).map_err(|e| {
                StoreError::InvalidInput(format!("meta cannot be encoded as JSON: {e}"))
            })?;
            if json.len() as u64 > limits.meta_bytes_max {
                return Err(StoreError::TooLarge {
                    what: "meta",
                    limit: limits.meta_bytes_max,
                    actual: json.len() as u64,
                });
            }
            Ok(Some(json))
        }
    }
}

/// Encodes a document: `text_len u32, text, dim u32 (u32::MAX: none), f32 LE × dim, meta_len u32 (u32::MAX: none),
/// meta JSON`.
pub fn encode_doc(doc: &Document, meta_json: Option<&[u8]>, out: &mut Vec<u8>) {
    out.extend_from_slice(&(doc.text.len() as u32).to_le_bytes());
    out.extend_from_slice(doc.text.as_bytes());
    match &doc.vector {
        None => out.extend_from_slice(&NONE32.to_le_bytes()),
        Some(v) => {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    match meta_json {
        None => out.extend_from_slice(&NONE32.to_le_bytes()),
        Some(m) => {
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            out.extend_from_slice(m);
        }
    }
}

/// A bounds-checked little-endian reader.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    /// Bytes consumed.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.remaining() < n {
            return Err(format!(
                "needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// A u8.
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }
    /// A u16 LE.
    pub fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.bytes(2)?.try_into().unwrap_or([0; 2]),
        ))
    }
    /// A u32 LE.
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    /// A u64 LE.
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
}

/// Decodes a document encoded by [`encode_doc`].
pub fn decode_doc(buf: &[u8]) -> Result<Document, String> {
    let mut r = Reader::new(buf);
    let text_len = r.u32()? as usize;
    let text = std::str::from_utf8(r.bytes(text_len)?)
        .map_err(|e| format!("text is not UTF-8: {e}"))?
        .to_owned();
    let dim = r.u32()?;
    let vector = if dim == NONE32 {
        None
    } else {
        let raw = r.bytes(dim as usize * 4)?;
        Some(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    };
    let meta_len = r.u32()?;
    let meta = if meta_len == NONE32 {
        None
    } else {
        let raw = r.bytes(meta_len as usize)?;
        match serde_json::from_slice::<serde_json::Value>(raw)
            .map_err(|e| format!("meta is not JSON: {e}"))?
        {
            serde_json::Value::Object(m) => Some(m),
            _ => return Err("meta is not a JSON object".into()),
        }
    };
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes after document", r.remaining()));
    }
    Ok(Document { text, vector, meta })
}

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its log sequence number.
    pub lsn: u64,
    /// `KIND_PUT` or `KIND_DELETE`.
    pub kind: u8,
    /// The document id.
    pub id: String,
    /// The encoded document (puts only).
    pub doc: Vec<u8>,
    /// Which commit batch wrote it; `None` for a record of a segment written before batch marks.
    pub batch: Option<BatchMark>,
}

/// A record's commit batch, as the leader marked it ([`mark_batch`]). Batch B+1 is written only after batch B is
/// durable, so recovery can tell a torn last batch (a hole followed only by records of the batch the hole is in) from
/// damage (a hole followed by records of a later batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMark {
    /// The LSN of the record just before the batch in its segment, or the segment's first LSN − 1 for the
    /// segment's first batch: every record of one batch carries the same value, and no two batches of a segment do.
    pub follows: u64,
    /// The batch's last record.
    pub last: bool,
}

/// A batch as the leader writes it: the queued records with their batch marks.
#[derive(Debug, Default)]
pub struct MarkedBatch {
    /// The framed records, each with its mark.
    pub bytes: Vec<u8>,
    /// The LSN of the batch's last record (`None`: no record).
    pub last_lsn: Option<u64>,
}

/// Marks every record of one commit batch (`buf`, records framed by [`encode_record`] without marks) as following
/// LSN `follows`, the last one as the batch's last: each body gains `follows: u64` at its end, its kind the flags
/// [`KIND_MARKED`] (and [`KIND_LAST_OF_BATCH`]), its length and checksum are recomputed. Returns `None` if `buf` is
/// not a sequence of unmarked records (a bug in the caller, never written).
pub fn mark_batch(buf: &[u8], follows: u64) -> Option<MarkedBatch> {
    let mut out = MarkedBatch {
        bytes: Vec::with_capacity(buf.len() + buf.len() / 8),
        last_lsn: None,
    };
    let mut pos = 0;
    while pos < buf.len() {
        let rest = buf.get(pos..)?;
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let body = rest.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len)?;
        if len < RECORD_FIXED_BYTES || body[8] & !KIND_BASE_MASK != 0 {
            return None;
        }
        let last = pos + RECORD_HEADER_BYTES + len == buf.len();
        let start = out.bytes.len();
        out.bytes
            .extend_from_slice(&((len + BATCH_MARK_BYTES) as u32).to_le_bytes());
        out.bytes.extend_from_slice(&[0; 4]);
        out.bytes.extend_from_slice(body);
        out.bytes[start + RECORD_HEADER_BYTES + 8] |=
            KIND_MARKED | if last { KIND_LAST_OF_BATCH } else { 0 };
        out.bytes.extend_from_slice(&follows.to_le_bytes());
        let crc = crc_of(&[&out.bytes[start..start + 4], &out.bytes[start + 8..]]);
        out.bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        out.last_lsn = Some(u64::from_le_bytes(body[..8].try_into().ok()?));
        pos += RECORD_HEADER_BYTES + len;
    }
    Some(out)
}

/// Appends one framed record: `len u32 | crc u32 | lsn u64 | kind u8 | id_len u16 | id | doc`. The CRC covers the
/// length and the body, so a damaged length is caught too. The leader adds the batch mark ([`mark_batch`]) when it
/// writes the batch to a segment that carries marks.
pub fn encode_record(lsn: u64, kind: u8, id: &str, doc: &[u8], out: &mut Vec<u8>) {
    let body_len = RECORD_FIXED_BYTES + id.len() + doc.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(doc);
    let crc = crc_of(&[&out[start..start + 4], &out[start + 8..]]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What decoding a record at some offset found.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A valid record and its framed length.
    Ok(Record, usize),
    /// Too few bytes for the record the header announces (a torn write, or the end).
    Short,
    /// Bytes present but invalid.
    Bad(String),
}

/// Decodes the record at the start of `buf`. `record_bytes_max` bounds the announced length.
pub fn decode_record(buf: &[u8], record_bytes_max: u64) -> Decoded {
    if buf.len() < RECORD_HEADER_BYTES {
        return Decoded::Short;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len < RECORD_FIXED_BYTES || len as u64 > record_bytes_max {
        return Decoded::Bad(format!(
            "record length {len} outside [{RECORD_FIXED_BYTES}, record_bytes_max = {record_bytes_max}]"
        ));
    }
    if buf.len() < RECORD_HEADER_BYTES + len {
        return Decoded::Short;
    }
    let body = &buf[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
    if crc_of(&[&buf[0..4], body]) != crc {
        return Decoded::Bad("record checksum mismatch".into());
    }
    let mut r = Reader::new(body);
    let parse = (|| -> Result<Record, String> {
        let lsn = r.u64()?;
        let flags = r.u8()?;
        let kind = flags & KIND_BASE_MASK;
        let marked = flags & KIND_MARKED != 0;
        if (kind != KIND_PUT && kind != KIND_DELETE) || (!marked && flags & KIND_LAST_OF_BATCH != 0)
        {
            return Err(format!("unknown record kind {flags}"));
        }
        let id_len = r.u16()? as usize;
        let id = std::str::from_utf8(r.bytes(id_len)?)
            .map_err(|e| format!("id is not UTF-8: {e}"))?
            .to_owned();
        let mark_bytes = if marked { BATCH_MARK_BYTES } else { 0 };
        let doc_len = r
            .remaining()
            .checked_sub(mark_bytes)
            .ok_or("no batch mark")?;
        let doc = r.bytes(doc_len)?.to_vec();
        let batch = match marked {
            true => Some(BatchMark {
                follows: r.u64()?,
                last: flags & KIND_LAST_OF_BATCH != 0,
            }),
            false => None,
        };
        Ok(Record {
            lsn,
            kind,
            id,
            doc,
            batch,
        })
    })();
    match parse {
        Ok(rec) => Decoded::Ok(rec, RECORD_HEADER_BYTES + len),
        Err(e) => Decoded::Bad(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        let mut meta = serde_json::Map::new();
        meta.insert("k".into(), serde_json::json!([1, "two"]));
        Document {
            text: "héllo".into(),
            vector: Some(vec![0.5, -1.25, 3.0]),
            meta: Some(meta),
        }
    }

    #[test]
    fn document_round_trips() {
        let d = doc();
        let meta = validate_doc(&d, &Limits::default(), None).unwrap();
        let mut buf = Vec::new();
        encode_doc(&d, meta.as_deref(), &mut buf);
        assert_eq!(decode_doc(&buf).unwrap(), d);
        assert!(decode_doc(&buf[..buf.len() - 1]).is_err());
    }

    #[test]
    fn record_round_trips_and_any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode_record(7, KIND_PUT, "a", b"payload", &mut buf);
        let Decoded::Ok(rec, n) = decode_record(&buf, 1 << 20) else {
            panic!("valid record must decode")
        };
        assert_eq!((rec.lsn, rec.id.as_str(), n), (7, "a", buf.len()));
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_record(&b, 1 << 20), Decoded::Ok(..)),
                "bit {bit}"
            );
        }
        assert_eq!(
            decode_record(&buf[..buf.len() - 1], 1 << 20),
            Decoded::Short
        );
    }

    #[test]
    fn a_marked_batch_decodes_to_the_same_records_with_their_marks() {
        let mut queued = Vec::new();
        encode_record(7, KIND_PUT, "a", b"payload", &mut queued);
        encode_record(8, KIND_DELETE, "b", &[], &mut queued);
        encode_record(9, KIND_PUT, "c", b"more", &mut queued);
        let m = mark_batch(&queued, 4).expect("framed records");
        assert_eq!(m.bytes.len(), queued.len() + 3 * BATCH_MARK_BYTES);
        assert_eq!(m.last_lsn, Some(9));
        let (mut pos, mut plain) = (0, 0);
        for (lsn, last) in [(7, false), (8, false), (9, true)] {
            let Decoded::Ok(rec, n) = decode_record(&m.bytes[pos..], 1 << 20) else {
                panic!("marked record at {pos} must decode")
            };
            let Decoded::Ok(unmarked, k) = decode_record(&queued[plain..], 1 << 20) else {
                panic!("queued record at {plain} must decode")
            };
            assert_eq!(rec.batch, Some(BatchMark { follows: 4, last }));
            assert_eq!((rec.lsn, unmarked.batch), (lsn, None));
            assert_eq!(Record { batch: None, ..rec }, unmarked);
            for bit in 0..n * 8 {
                let mut b = m.bytes[pos..pos + n].to_vec();
                b[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    !matches!(decode_record(&b, 1 << 20), Decoded::Ok(..)),
                    "bit {bit}"
                );
            }
            (pos, plain) = (pos + n, plain + k);
        }
        // Marking twice, or bytes that are not whole records, is refused.
        assert!(mark_batch(&m.bytes, 4).is_none());
        assert!(mark_batch(&queued[..queued.len() - 1], 4).is_none());
        assert_eq!(mark_batch(&[], 4).map(|m| m.last_lsn), Some(None));
    }

    #[test]
    fn limits_are_named_in_errors() {
        let l = Limits {
            text_bytes_max: 3,
            ..Limits::default()
        };
        let e = validate_doc(&Document::text("long"), &l, None).unwrap_err();
        assert!(e.to_string().contains("text_bytes_max = 3"), "{e}");
        let e = validate_id(&"x".repeat(300), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("id_bytes_max = 256"), "{e}");
        let bad = Document {
            vector: Some(vec![f32::NAN]),
            ..Document::text("t")
        };
        assert!(validate_doc(&bad, &l, None).unwrap_err().is_user_error());
    }
}
