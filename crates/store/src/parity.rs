//! Reed–Solomon parity sidecars for immutable files (sealed WAL segments, snapshots).
//!
//! A file is cut into fixed-size blocks (the last one zero-padded). Each block has a CRC32C that mixes in the file id
//! and the block index, so a block written to the wrong place or the wrong file fails its check. Blocks are grouped
//! `data_blocks` at a time and each group gets `parity_blocks` Reed–Solomon recovery blocks (`reed-solomon-simd`):
//! any `parity_blocks` damaged blocks of a group can be rebuilt. The sidecar (`<file>.par`) holds:
//!
//! ```text
//! header  magic "MEDPAR\0\x01" | version u32 | block_bytes u32 | data_blocks u16 | parity_blocks u16 | file_id u64
//!         | data_len u64 | n_blocks u64 | crc u32 (of the 44 bytes before)                        = 48 bytes
//! table   n_blocks × crc u32 | table_crc u32 (crc of file_id ++ table)
//! parity  for each group g, each k < parity_blocks: block_bytes of recovery data | crc u32 (file_id, g, k, data)
//! ```

use crate::codec::{Reader, crc_of};

const MAGIC: &[u8; 8] = b"MEDPAR\0\x01";
const VERSION: u32 = 1;
/// Sidecar header size.
pub const HEADER_BYTES: usize = 48;

/// Block and group sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParityParams {
    /// Block size, bytes (even).
    pub block_bytes: u32,
    /// Data blocks per group.
    pub data_blocks: u16,
    /// Recovery blocks per group.
    pub parity_blocks: u16,
}

/// A parsed sidecar.
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// The protected file's id (mixed into every checksum).
    pub file_id: u64,
    /// The protected file's length.
    pub data_len: u64,
    /// Sizes.
    pub params: ParityParams,
    /// One CRC per data block.
    pub block_crcs: Vec<u32>,
    /// Recovery blocks, `[group][k]`; `None` where the stored block failed its checksum.
    pub parity: Vec<Vec<Option<Vec<u8>>>>,
}

/// The checksum of data block `idx` of file `file_id` (zero-padded to the block size).
pub fn block_crc(file_id: u64, idx: u64, block: &[u8], block_bytes: usize) -> u32 {
    let pad = vec![0u8; block_bytes.saturating_sub(block.len())];
    crc_of(&[&file_id.to_le_bytes(), &idx.to_le_bytes(), block, &pad])
}

fn parity_crc(file_id: u64, group: u64, k: u16, data: &[u8]) -> u32 {
    crc_of(&[
        &file_id.to_le_bytes(),
        &group.to_le_bytes(),
        &k.to_le_bytes(),
        data,
    ])
}

fn n_blocks(len: u64, bs: u64) -> u64 {
    len.div_ceil(bs)
}

/// The padded block `idx` of `data`.
fn padded_block(data: &[u8], idx: usize, bs: usize) -> Vec<u8> {
    let start = (idx * bs).min(data.len());
    let end = ((idx + 1) * bs).min(data.len());
    let mut b = data[start..end].to_vec();
    b.resize(bs, 0);
    b
}

/// Computes the recovery blocks of every group.
fn encode_groups(data: &[u8], p: &ParityParams) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let bs = p.block_bytes as usize;
    let nb = n_blocks(data.len() as u64, bs as u64) as usize;
    let mut out = Vec::new();
    let mut g = 0;
    while g * (p.data_blocks as usize) < nb {
        let first = g * p.data_blocks as usize;
        let last = (first + p.data_blocks as usize).min(nb);
        let blocks: Vec<Vec<u8>> = (first..last).map(|i| padded_block(data, i, bs)).collect();
        let rec = reed_solomon_simd::encode(blocks.len(), p.parity_blocks as usize, &blocks)
            .map_err(|e| format!("parity encode failed: {e}"))?;
        out.push(rec);
        g += 1;
    }
    Ok(out)
}

/// Builds the sidecar for `data`.
pub fn build(file_id: u64, data: &[u8], p: &ParityParams) -> Result<Vec<u8>, String> {
    let bs = p.block_bytes as usize;
    let nb = n_blocks(data.len() as u64, bs as u64);
    let mut out = Vec::with_capacity(HEADER_BYTES + nb as usize * 4 + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&p.block_bytes.to_le_bytes());
    out.extend_from_slice(&p.data_blocks.to_le_bytes());
    out.extend_from_slice(&p.parity_blocks.to_le_bytes());
    out.extend_from_slice(&file_id.to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&nb.to_le_bytes());
    let crc = crc_of(&[&out[..]]);
    out.extend_from_slice(&crc.to_le_bytes());
    let table_start = out.len();
    for i in 0..nb as usize {
        let start = i * bs;
        let end = (start + bs).min(data.len());
        out.extend_from_slice(&block_crc(file_id, i as u64, &data[start..end], bs).to_le_bytes());
    }
    let tcrc = crc_of(&[&file_id.to_le_bytes(), &out[table_start..]]);
    out.extend_from_slice(&tcrc.to_le_bytes());
    for (g, rec) in encode_groups(data, p)?.iter().enumerate() {
        for (k, block) in rec.iter().enumerate() {
            out.extend_from_slice(block);
            out.extend_from_slice(&parity_crc(file_id, g as u64, k as u16, block).to_le_bytes());
        }
    }
    Ok(out)
}

/// Parses a sidecar. The header and block table must be intact (their checksums are checked); individual damaged
/// recovery blocks are marked `None`.
pub fn parse(bytes: &[u8]) -> Result<Sidecar, String> {
    parse_inner(bytes, true)
}

/// Parses only the header and block table (the recovery blocks are left out, `parity` is empty): what a quick check
/// needs to verify sampled blocks. `bytes` must hold at least [`table_end`] bytes.
pub fn parse_table(bytes: &[u8]) -> Result<Sidecar, String> {
    parse_inner(bytes, false)
}

/// The protected file's length, from a sidecar's first [`HEADER_BYTES`] bytes (`None` if the header fails its
/// checksum).
pub fn header_data_len(header: &[u8]) -> Option<u64> {
    let h = header.get(..HEADER_BYTES)?;
    let crc = u32::from_le_bytes(h[44..48].try_into().ok()?);
    if &h[..8] != MAGIC || crc_of(&[&h[..44]]) != crc {
        return None;
    }
    Some(u64::from_le_bytes(h[28..36].try_into().ok()?))
}

/// Where the block table ends, from a sidecar's first [`HEADER_BYTES`] bytes.
pub fn table_end(header: &[u8]) -> Result<usize, String> {
    let mut r = Reader::new(header);
    r.bytes(36)?;
    let nb = r.u64()?;
    usize::try_from(nb)
        .ok()
        .and_then(|n| n.checked_mul(4))
        .and_then(|n| n.checked_add(HEADER_BYTES + 4))
        .ok_or_else(|| "sidecar block count overflows".to_string())
}

fn parse_inner(bytes: &[u8], with_parity: bool) -> Result<Sidecar, String> {
    let mut r = Reader::new(bytes);
    if r.bytes(8)? != MAGIC {
        return Err("bad sidecar magic".into());
    }
    let version = r.u32()?;
    let block_bytes = r.u32()?;
    let data_blocks = r.u16()?;
    let parity_blocks = r.u16()?;
    let file_id = r.u64()?;
    let data_len = r.u64()?;
    let nb = r.u64()?;
    let crc = r.u32()?;
    if crc_of(&[&bytes[..HEADER_BYTES - 4]]) != crc {
        return Err("sidecar header checksum mismatch".into());
    }
    if version != VERSION {
        return Err(format!("unknown sidecar version {version}"));
    }
    if block_bytes == 0 || block_bytes % 2 != 0 || data_blocks == 0 || parity_blocks == 0 {
        return Err("sidecar parameters invalid".into());
    }
    if bytes.len() < HEADER_BYTES {
        return Err("sidecar shorter than its header".into());
    }
    if nb != n_blocks(data_len, block_bytes as u64) || nb > (bytes.len() / 4) as u64 {
        return Err("sidecar block count disagrees with its length".into());
    }
    let table = r.bytes(nb as usize * 4)?;
    let tcrc = r.u32()?;
    if crc_of(&[&file_id.to_le_bytes(), table]) != tcrc {
        return Err("sidecar block table checksum mismatch".into());
    }
    let block_crcs = table
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let n_groups = if with_parity {
        nb.div_ceil(data_blocks as u64)
    } else {
        0
    };
    let mut parity = Vec::with_capacity(n_groups as usize);
    for g in 0..n_groups {
        let mut group = Vec::with_capacity(parity_blocks as usize);
        for k in 0..parity_blocks {
            let (block, crc) = match (r.bytes(block_bytes as usize), r.u32()) {
                (Ok(b), Ok(c)) => (b, c),
                _ => {
                    group.push(None);
                    continue;
                }
            };
            group.push((parity_crc(file_id, g, k, block) == crc).then(|| block.to_vec()));
        }
        parity.push(group);
    }
    Ok(Sidecar {
        file_id,
        data_len,
        params: ParityParams {
            block_bytes,
            data_blocks,
            parity_blocks,
        },
        block_crcs,
        parity,
    })
}

/// Indices of data blocks whose bytes (as read, possibly truncated) fail their checksum.
pub fn bad_blocks(data: &[u8], sc: &Sidecar) -> Vec<usize> {
    bad_blocks_in(data, sc, 0..sc.block_crcs.len())
}

/// Like [`bad_blocks`], for some blocks only.
pub fn bad_blocks_in(data: &[u8], sc: &Sidecar, blocks: impl Iterator<Item = usize>) -> Vec<usize> {
    let bs = sc.params.block_bytes as usize;
    let logical = (sc.data_len as usize).min(data.len());
    blocks
        .filter(|&i| {
            let Some(&want) = sc.block_crcs.get(i) else {
                return false;
            };
            let start = i * bs;
            let want_end = ((i + 1) * bs).min(sc.data_len as usize);
            if want_end > logical {
                return true; // the file was truncated into this block
            }
            block_crc(sc.file_id, i as u64, &data[start..want_end], bs) != want
        })
        .collect()
}

/// Rebuilds the given damaged blocks of `data` in place (extending it if it was truncated). Fails, naming the group,
/// when a group has more damage than recovery blocks.
pub fn rebuild(data: &mut Vec<u8>, sc: &Sidecar, bad: &[usize]) -> Result<(), String> {
    let bs = sc.params.block_bytes as usize;
    let per = sc.params.data_blocks as usize;
    let nb = sc.block_crcs.len();
    data.resize(sc.data_len as usize, 0);
    let mut groups: Vec<usize> = bad.iter().map(|b| b / per).collect();
    groups.dedup();
    for g in groups {
        let first = g * per;
        let last = (first + per).min(nb);
        let good: Vec<(usize, Vec<u8>)> = (first..last)
            .filter(|i| !bad.contains(i))
            .map(|i| (i - first, padded_block(data, i, bs)))
            .collect();
        let rec: Vec<(usize, &Vec<u8>)> = sc.parity[g]
            .iter()
            .enumerate()
            .filter_map(|(k, b)| b.as_ref().map(|b| (k, b)))
            .collect();
        let missing = (last - first) - good.len();
        if rec.len() < missing {
            return Err(format!(
                "parity group {g} has {missing} damaged blocks but only {} intact recovery blocks",
                rec.len()
            ));
        }
        let restored =
            reed_solomon_simd::decode(last - first, sc.params.parity_blocks as usize, good, rec)
                .map_err(|e| format!("parity decode of group {g} failed: {e}"))?;
        for (local, block) in restored {
            let i = first + local;
            let start = i * bs;
            let end = ((i + 1) * bs).min(sc.data_len as usize);
            if block_crc(sc.file_id, i as u64, &block[..end - start], bs) != sc.block_crcs[i] {
                return Err(format!(
                    "block {i} rebuilt from parity still fails its checksum"
                ));
            }
            data[start..end].copy_from_slice(&block[..end - start]);
        }
    }
    Ok(())
}

/// Recovery blocks that are damaged or disagree with the data: `(group, k)`. `data` must be intact.
pub fn parity_mismatches(data: &[u8], sc: &Sidecar) -> Result<Vec<(usize, usize)>, String> {
    let fresh = encode_groups(data, &sc.params)?;
    let mut out = Vec::new();
    for (g, rec) in fresh.iter().enumerate() {
        for (k, block) in rec.iter().enumerate() {
            let stored = sc
                .parity
                .get(g)
                .and_then(|gr| gr.get(k))
                .and_then(|b| b.as_ref());
            if stored != Some(block) {
                out.push((g, k));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ParityParams = ParityParams {
        block_bytes: 64,
        data_blocks: 4,
        parity_blocks: 2,
    };

    fn data() -> Vec<u8> {
        (0..1000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn two_damaged_blocks_per_group_are_rebuilt() {
        let d = data();
        let sc = parse(&build(9, &d, &P).unwrap()).unwrap();
        let mut bad = d.clone();
        bad[3] ^= 1;
        bad[70] ^= 0xff;
        bad[999] = 0;
        let found = bad_blocks(&bad, &sc);
        assert_eq!(found, vec![0, 1, 15]);
        rebuild(&mut bad, &sc, &found).unwrap();
        assert_eq!(bad, d);
        assert!(parity_mismatches(&d, &sc).unwrap().is_empty());
    }

    #[test]
    fn truncation_is_found_and_undone() {
        let d = data();
        let side = build(9, &d, &P).unwrap();
        assert_eq!(header_data_len(&side), Some(1000));
        let sc = parse(&side).unwrap();
        let mut cut = d[..900].to_vec();
        let found = bad_blocks(&cut, &sc);
        assert_eq!(found, vec![14, 15]);
        rebuild(&mut cut, &sc, &found).unwrap();
        assert_eq!(cut, d);
    }

    #[test]
    fn too_much_damage_is_an_error_not_wrong_bytes() {
        let d = data();
        let sc = parse(&build(9, &d, &P).unwrap()).unwrap();
        let mut bad = d.clone();
        for b in [0, 64, 128] {
            bad[b] ^= 1;
        }
        let found = bad_blocks(&bad, &sc);
        assert!(
            rebuild(&mut bad, &sc, &found)
                .unwrap_err()
                .contains("group 0")
        );
    }

    #[test]
    fn a_block_moved_to_another_file_or_index_fails() {
        let d = data();
        let sc = parse(&build(9, &d, &P).unwrap()).unwrap();
        let mut moved = d.clone();
        let b1: Vec<u8> = d[64..128].to_vec();
        moved[128..192].copy_from_slice(&b1);
        assert_eq!(bad_blocks(&moved, &sc), vec![2]);
        let other = parse(&build(10, &d, &P).unwrap()).unwrap();
        assert_eq!(bad_blocks(&d, &other), Vec::<usize>::new());
        assert_ne!(sc.block_crcs[0], other.block_crcs[0]);
    }

    #[test]
    fn damaged_sidecar_header_is_rejected_and_damaged_parity_found() {
        let d = data();
        let mut s = build(9, &d, &P).unwrap();
        let mut h = s.clone();
        h[20] ^= 1;
        assert!(parse(&h).is_err());
        let n = s.len();
        s[n - 10] ^= 1;
        let sc = parse(&s).unwrap();
        assert_eq!(parity_mismatches(&d, &sc).unwrap(), vec![(3, 1)]);
    }
}
