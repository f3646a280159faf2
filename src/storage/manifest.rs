//! The manifest: which segment files, growing snapshot and write-ahead log make up the database.
//! Replaced atomically; the file names derive from the numbers it holds.

use std::path::{Path, PathBuf};

use super::bytes::LeReader;
use super::write_atomically;
use crate::error::{corrupt, io_error, Error, Result};

const MAGIC: &[u8; 8] = b"OMENMAN\0";
/// Version 2 added `quantization`, version 3 the deletions of each segment; older manifests still
/// open. A manifest is written as version 2 while nothing is deleted, so older libraries keep
/// opening such databases.
pub(crate) const FORMAT_VERSION: u32 = 3;
pub(crate) const FILE_NAME: &str = "MANIFEST";
/// Far more sealed segments than a database can hold (ordinals are u32, segments hold up to
/// 2^28 vectors): bounds what a reader will allocate for a damaged count.
const MAX_SEGMENTS: usize = 1 << 20;

/// A segment, how many vectors it holds, and how many of them are deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentEntry {
    pub ordinal: u32,
    /// Nodes, deleted ones included.
    pub count: u64,
    pub deleted: u64,
    /// The generation that wrote the segment's deletion file (which exists when `deleted > 0`).
    pub deletions: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Manifest {
    pub dim: u32,
    pub metric: u32,
    pub m: u32,
    pub ef_construction: u32,
    pub segment_capacity: u64,
    pub seed: u64,
    /// Numbers the write-ahead log and the growing snapshot; +1 at each checkpoint.
    pub generation: u64,
    pub next_ordinal: u32,
    /// `Quantization::code` of the codes every segment carries.
    pub quantization: u32,
    pub sealed: Vec<SegmentEntry>,
    /// The growing segment; its snapshot file exists when `count > 0`.
    pub growing: SegmentEntry,
}

pub(crate) fn segment_name(ordinal: u32) -> String {
    format!("segment-{ordinal:010}.omen")
}

pub(crate) fn growing_name(ordinal: u32, generation: u64) -> String {
    format!("growing-{ordinal:010}-{generation:020}.omen")
}

pub(crate) fn deletions_name(ordinal: u32, generation: u64) -> String {
    format!("deleted-{ordinal:010}-{generation:020}.omen")
}

pub(crate) fn wal_name(generation: u64) -> String {
    format!("wal-{generation:020}.log")
}

impl Manifest {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Every segment, the growing one last.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &SegmentEntry> {
        self.sealed.iter().chain([&self.growing])
    }

    /// The names of the files this manifest makes up the database from, besides itself: sealed
    /// segments, the growing snapshot (when it holds vectors), deletion files and the log.
    pub(crate) fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = self.sealed.iter().map(|e| segment_name(e.ordinal)).collect();
        if self.growing.count > 0 {
            names.push(growing_name(self.growing.ordinal, self.generation));
        }
        names.extend(self.entries().filter(|e| e.deleted > 0).map(|e| deletions_name(e.ordinal, e.deletions)));
        names.push(wal_name(self.generation));
        names
    }

    fn encode(&self) -> Vec<u8> {
        let version = if self.entries().any(|e| e.deleted > 0) { FORMAT_VERSION } else { 2 };
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        for word in [self.dim, self.metric, self.m, self.ef_construction] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for word in [self.segment_capacity, self.seed, self.generation] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.next_ordinal.to_le_bytes());
        out.extend_from_slice(&self.quantization.to_le_bytes());
        out.extend_from_slice(&(self.sealed.len() as u32).to_le_bytes());
        for entry in self.entries() {
            out.extend_from_slice(&entry.ordinal.to_le_bytes());
            out.extend_from_slice(&entry.count.to_le_bytes());
            if version >= 3 {
                out.extend_from_slice(&entry.deleted.to_le_bytes());
                out.extend_from_slice(&entry.deletions.to_le_bytes());
            }
        }
        out.extend_from_slice(&crc32c::crc32c(&out).to_le_bytes());
        out
    }

    /// Parses manifest bytes, or says what is wrong with them.
    fn decode(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let body = bytes.len().checked_sub(4).ok_or("too short")?;
        let mut r = LeReader::at(&bytes[..body], 0);
        if r.take::<8>().as_ref() != Some(MAGIC) {
            return Err("not an omendb manifest (bad magic bytes)".into());
        }
        let stored = u32::from_le_bytes(bytes[body..].try_into().map_err(|_| "too short")?);
        if crc32c::crc32c(&bytes[..body]) != stored {
            return Err("checksum mismatch".into());
        }
        let short = || "truncated".to_string();
        let version = r.u32().ok_or_else(short)?;
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(format!("version {version}"));
        }
        let (dim, metric, m, ef_construction) = (
            r.u32().ok_or_else(short)?,
            r.u32().ok_or_else(short)?,
            r.u32().ok_or_else(short)?,
            r.u32().ok_or_else(short)?,
        );
        let (segment_capacity, seed, generation) =
            (r.u64().ok_or_else(short)?, r.u64().ok_or_else(short)?, r.u64().ok_or_else(short)?);
        let next_ordinal = r.u32().ok_or_else(short)?;
        let quantization = if version >= 2 { r.u32().ok_or_else(short)? } else { 0 };
        let count = r.u32().ok_or_else(short)? as usize;
        let entry_len = if version >= 3 { 28 } else { 12 };
        if count > MAX_SEGMENTS || body != r.position() + (count + 1) * entry_len {
            return Err(format!("{count} segments do not match the file length"));
        }
        let mut entry = || {
            let (ordinal, count) = (r.u32()?, r.u64()?);
            let (deleted, deletions) = if version >= 3 { (r.u64()?, r.u64()?) } else { (0, 0) };
            if deleted > count {
                return None;
            }
            Some(SegmentEntry { ordinal, count, deleted, deletions })
        };
        let inconsistent = || "a segment entry is truncated or counts more deletions than nodes".to_string();
        let sealed = (0..count).map(|_| entry()).collect::<Option<Vec<_>>>().ok_or_else(inconsistent)?;
        let growing = entry().ok_or_else(inconsistent)?;
        Ok(Manifest {
            dim,
            metric,
            m,
            ef_construction,
            segment_capacity,
            seed,
            generation,
            next_ordinal,
            quantization,
            sealed,
            growing,
        })
    }

    /// Reads the manifest in `dir`; `Ok(None)` when there is none.
    pub(crate) fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = Self::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, "read", &e)),
        };
        match Self::decode(&bytes) {
            Ok(manifest) => Ok(Some(manifest)),
            Err(detail) if detail.starts_with("version") => Err(Error::Version {
                path: path.display().to_string(),
                detail: format!("manifest {detail}; this library reads versions 1 to {FORMAT_VERSION}"),
            }),
            Err(detail) => Err(corrupt(&path, detail)),
        }
    }

    /// Replaces the manifest in `dir` atomically.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let bytes = self.encode();
        write_atomically(&Self::path(dir), |mut file| std::io::Write::write_all(&mut file, &bytes))
    }
}

#[cfg(test)]
impl Manifest {
    /// The manifest of a new database of 384-d vectors (cosine, 4-bit codes), for tests.
    pub(crate) fn new_for_tests() -> Manifest {
        Manifest {
            dim: 384,
            metric: 1,
            m: 16,
            ef_construction: 100,
            segment_capacity: 1 << 20,
            seed: 42,
            generation: 0,
            next_ordinal: 2,
            quantization: 2,
            sealed: Vec::new(),
            growing: SegmentEntry { ordinal: 1, ..Default::default() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_every_single_byte_change() {
        let manifest = Manifest {
            generation: 7,
            next_ordinal: 4,
            sealed: vec![
                SegmentEntry { ordinal: 0, count: 10, ..Default::default() },
                SegmentEntry { ordinal: 2, count: 5, ..Default::default() },
            ],
            growing: SegmentEntry { ordinal: 3, count: 1, ..Default::default() },
            ..Manifest::new_for_tests()
        };
        let bytes = manifest.encode();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2, "nothing deleted: version 2");
        assert_eq!(Manifest::decode(&bytes), Ok(manifest.clone()));
        let mut with_deletions = manifest;
        with_deletions.sealed[1].deleted = 4;
        with_deletions.sealed[1].deletions = 6;
        let bytes = with_deletions.encode();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3);
        assert_eq!(Manifest::decode(&bytes), Ok(with_deletions));
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(Manifest::decode(&damaged).is_err(), "flip at {at} went unnoticed");
            assert!(Manifest::decode(&bytes[..at]).is_err(), "truncation at {at} went unnoticed");
        }
    }
}
