//! Deletion files: which nodes of one segment are deleted, as a checksummed bitset. Segment files
//! never change; a checkpoint writes a new deletion file beside a segment whose deletions changed,
//! and the manifest names it (docs/format.md).

use std::io::Read;
use std::path::Path;

use super::bytes::LeReader;
use super::{write_atomically, Source};
use crate::error::{corrupt, io_error, Result};

const MAGIC: &[u8; 8] = b"OMENDEL\0";
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Magic, version, ordinal, node count, deleted count.
const HEADER: usize = 32;

/// Writes the deletion file of segment `ordinal`: bit `n` of `words` is set when node `n` (of
/// `nodes`) is deleted.
pub(crate) fn write_deletions(path: &Path, ordinal: u32, nodes: u64, words: &[u64]) -> Result<()> {
    let deleted: u64 = words.iter().map(|w| u64::from(w.count_ones())).sum();
    let mut bytes = Vec::with_capacity(HEADER + words.len() * 8 + 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&ordinal.to_le_bytes());
    bytes.extend_from_slice(&nodes.to_le_bytes());
    bytes.extend_from_slice(&deleted.to_le_bytes());
    words.iter().for_each(|w| bytes.extend_from_slice(&w.to_le_bytes()));
    bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    write_atomically(path, |mut file| std::io::Write::write_all(&mut file, &bytes))
}

/// Reads the deletion file at `path`, which the manifest says belongs to segment `ordinal` of
/// `nodes` nodes with `deleted` of them deleted; anything else is corruption.
pub(crate) fn read_deletions(source: &Source<'_>, ordinal: u32, nodes: u64, deleted: u64) -> Result<Vec<u64>> {
    let path = source.path();
    let mut bytes = Vec::new();
    source.open()?.read_to_end(&mut bytes).map_err(|e| io_error(path, "read", &e))?;
    let damaged = |detail: String| corrupt(path, detail);
    let body = bytes.len().checked_sub(4).ok_or_else(|| damaged("too short for a deletion file".into()))?;
    let mut r = LeReader::at(&bytes[..body], 0);
    if r.take::<8>().as_ref() != Some(MAGIC) {
        return Err(damaged("not an omendb deletion file (bad magic bytes)".into()));
    }
    if crc32c::crc32c(&bytes[..body]).to_le_bytes()[..] != bytes[body..] {
        return Err(damaged("checksum mismatch".into()));
    }
    let fields = (r.u32(), r.u32(), r.u64(), r.u64());
    let (Some(version), Some(stored_ordinal), Some(stored_nodes), Some(stored_deleted)) = fields else {
        return Err(damaged("truncated header".into()));
    };
    if version != FORMAT_VERSION {
        return Err(damaged(format!("deletion file version {version}; this library reads {FORMAT_VERSION}")));
    }
    let words_len = usize::try_from(nodes.div_ceil(64)).unwrap_or(usize::MAX);
    if (stored_ordinal, stored_nodes, stored_deleted) != (ordinal, nodes, deleted)
        || Some(body) != words_len.checked_mul(8).and_then(|w| w.checked_add(HEADER))
    {
        return Err(damaged(format!(
            "holds {stored_deleted} of {stored_nodes} nodes of segment {stored_ordinal}, the manifest says \
             {deleted} of {nodes} of segment {ordinal}"
        )));
    }
    let words: Vec<u64> =
        bytes[HEADER..body].chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
    let counted: u64 = words.iter().map(|w| u64::from(w.count_ones())).sum();
    let beyond = !nodes.is_multiple_of(64) && words.last().is_some_and(|w| w >> (nodes % 64) != 0);
    if counted != deleted || beyond {
        return Err(damaged(format!("{counted} marks set, the header says {deleted}")));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage_and_mismatches() {
        let path = std::env::temp_dir().join(format!("omendb-deletions-{}", std::process::id()));
        let words = [0b1011u64, 1 << 63, 0b1];
        write_deletions(&path, 3, 129, &words).unwrap();
        assert_eq!(read_deletions(&Source::at(&path), 3, 129, 5).unwrap(), words);
        assert!(read_deletions(&Source::at(&path), 4, 129, 5).is_err());
        assert!(read_deletions(&Source::at(&path), 3, 130, 6).is_err());
        assert!(read_deletions(&Source::at(&path), 3, 129, 6).is_err());
        let bytes = std::fs::read(&path).unwrap();
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 4;
            std::fs::write(&path, &damaged).unwrap();
            assert!(read_deletions(&Source::at(&path), 3, 129, 5).is_err(), "flip at {at}");
            std::fs::write(&path, &bytes[..at]).unwrap();
            assert!(read_deletions(&Source::at(&path), 3, 129, 5).is_err(), "cut at {at}");
        }
        let _ = std::fs::remove_file(path);
    }
}
