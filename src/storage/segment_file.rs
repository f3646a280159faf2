//! Segment files: a checksummed header and section table, then page-aligned sections that are
//! mapped, not parsed. The layout is documented in docs/format.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::bytes::LeReader;
use super::{write_atomically, Source};
use crate::error::{corrupt, io_error, Error, Result};
use crate::memory::{release_pages, Array, Mapping, Plain};

const MAGIC: &[u8; 8] = b"OMENSEG\0";
/// Bumped when a reader of the previous version would misread a file; see docs/format.md.
/// Version 2 added the quantized-code sections, version 3 the ring bit in layer-0 count words,
/// version 4 binary codebooks with a rotation (RaBitQ); files of versions 1 to 3 still open.
pub(crate) const FORMAT_VERSION: u32 = 4;
/// What a segment without binary codes is written as, so older libraries keep reading it.
pub(crate) const VERSION_WITHOUT_BINARY_CODES: u32 = 3;
const OLDEST_VERSION: u32 = 1;
const FIXED_HEADER: usize = 64;
const TABLE_ENTRY: usize = 32;
/// More sections than any version defines: bounds the header a reader will parse.
const MAX_SECTIONS: usize = 64;
/// Section flag: a reader that does not know the section must refuse the file.
const REQUIRED: u32 = 1;
/// Sections start at multiples of this, so every array is aligned and starts on its own page.
const SECTION_ALIGN: u64 = 4096;

/// The kinds of section a segment file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Section {
    Ids = 1,
    Levels = 2,
    High = 3,
    Low = 4,
    Layer0 = 5,
    UpperStart = 6,
    Upper = 7,
    Codes = 8,
    CodeNorms = 9,
    Codebook = 10,
    Flags = 11,
}

impl Section {
    const ALL: [Section; 11] = [
        Section::Ids,
        Section::Levels,
        Section::High,
        Section::Low,
        Section::Layer0,
        Section::UpperStart,
        Section::Upper,
        Section::Codes,
        Section::CodeNorms,
        Section::Codebook,
        Section::Flags,
    ];

    fn from_u32(kind: u32) -> Option<Section> {
        Self::ALL.into_iter().find(|s| *s as u32 == kind)
    }
}

/// What a segment file says about its graph, besides the arrays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SegmentHeader {
    /// The format version the file is written in (or was read from).
    pub version: u32,
    pub dim: u32,
    pub metric: u32,
    pub m: u32,
    pub ef_construction: u32,
    pub count: u64,
    pub seed: u64,
    pub entry: u64,
    pub ordinal: u32,
}

struct TableEntry {
    kind: u32,
    flags: u32,
    offset: u64,
    length: u64,
    crc: u32,
}

/// Writes a segment file at `path` (through a temporary name, fsync'd, renamed).
pub(crate) fn write(path: &Path, header: &SegmentHeader, sections: &[(Section, &[u8])]) -> Result<()> {
    let header_len = FIXED_HEADER + sections.len() * TABLE_ENTRY + 4;
    let mut table = Vec::with_capacity(sections.len());
    let mut offset = (header_len as u64).next_multiple_of(SECTION_ALIGN);
    for (section, bytes) in sections {
        table.push(TableEntry {
            kind: *section as u32,
            flags: REQUIRED,
            offset,
            length: bytes.len() as u64,
            crc: crc32c::crc32c(bytes),
        });
        offset = (offset + bytes.len() as u64).next_multiple_of(SECTION_ALIGN);
    }
    let mut head = Vec::with_capacity(header_len);
    head.extend_from_slice(MAGIC);
    for word in [header.version, header_len as u32, header.dim, header.metric, header.m, header.ef_construction] {
        head.extend_from_slice(&word.to_le_bytes());
    }
    for word in [header.count, header.seed, header.entry] {
        head.extend_from_slice(&word.to_le_bytes());
    }
    head.extend_from_slice(&header.ordinal.to_le_bytes());
    head.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for entry in &table {
        head.extend_from_slice(&entry.kind.to_le_bytes());
        head.extend_from_slice(&entry.flags.to_le_bytes());
        head.extend_from_slice(&entry.offset.to_le_bytes());
        head.extend_from_slice(&entry.length.to_le_bytes());
        head.extend_from_slice(&entry.crc.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
    }
    head.extend_from_slice(&crc32c::crc32c(&head).to_le_bytes());
    debug_assert_eq!(head.len(), header_len);

    write_atomically(path, |file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        out.write_all(&head)?;
        let mut written = head.len() as u64;
        for (entry, (_, bytes)) in table.iter().zip(sections) {
            out.write_all(&vec![0u8; (entry.offset - written) as usize])?;
            out.write_all(bytes)?;
            written = entry.offset + entry.length;
        }
        out.flush()
    })
}

/// An opened, validated segment file whose sections can be viewed as arrays.
pub(crate) struct SegmentFile {
    pub header: SegmentHeader,
    path: PathBuf,
    map: Arc<Mapping>,
    table: Vec<TableEntry>,
}

impl SegmentFile {
    /// Maps and validates the file `source`: magic, version, header checksum, every section's
    /// bounds and the checksums of the small sections; with `verify`, also those of the vectors
    /// and layer-0 links (reading the whole file once).
    pub(crate) fn open(source: &Source<'_>, verify: bool) -> Result<SegmentFile> {
        let (path, file) = (source.path(), source.open()?);
        let len = file.metadata().map_err(|e| io_error(path, "stat", &e))?.len();
        let fail = |detail: String| corrupt(path, detail);
        if len < (FIXED_HEADER + 4) as u64 {
            return Err(fail(format!("{len} bytes is too short for a segment header")));
        }
        let len = usize::try_from(len).map_err(|_| fail("larger than the address space".into()))?;
        let map = Arc::new(Mapping::new(&file, len).map_err(|e| io_error(path, "map", &e))?);
        let bytes = map.bytes();
        if &bytes[..8] != MAGIC {
            return Err(fail("not an omendb segment file (bad magic bytes)".into()));
        }
        let mut fields = LeReader::at(bytes, 8);
        let mut word = || fields.u32().unwrap_or(0);
        let (version, header_len) = (word(), word() as usize);
        if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::Version {
                path: path.display().to_string(),
                detail: format!(
                    "segment format version {version}; this library reads versions {OLDEST_VERSION} to {FORMAT_VERSION}"
                ),
            });
        }
        let sections = LeReader::at(bytes, 60).u32().unwrap_or(0) as usize;
        if sections > MAX_SECTIONS || header_len != FIXED_HEADER + sections * TABLE_ENTRY + 4 || header_len > len {
            return Err(fail(format!("header length {header_len} with {sections} sections does not fit")));
        }
        let stored_crc = LeReader::at(bytes, header_len - 4).u32().unwrap_or(0);
        if crc32c::crc32c(&bytes[..header_len - 4]) != stored_crc {
            return Err(fail("header checksum mismatch".into()));
        }
        // Every field lies inside the header, whose length was checked above.
        let mut fields = LeReader::at(bytes, 16);
        let mut word = || fields.u32().unwrap_or(0);
        let (dim, metric, m, ef_construction) = (word(), word(), word(), word());
        let mut long = || fields.u64().unwrap_or(0);
        let (count, seed, entry) = (long(), long(), long());
        let header = SegmentHeader {
            version,
            dim,
            metric,
            m,
            ef_construction,
            count,
            seed,
            entry,
            ordinal: fields.u32().unwrap_or(0),
        };
        let mut table = Vec::with_capacity(sections);
        for i in 0..sections {
            let mut fields = LeReader::at(bytes, FIXED_HEADER + i * TABLE_ENTRY);
            let (kind, flags) = (fields.u32().unwrap_or(0), fields.u32().unwrap_or(0));
            let (offset, length) = (fields.u64().unwrap_or(0), fields.u64().unwrap_or(0));
            let entry = TableEntry { kind, flags, offset, length, crc: fields.u32().unwrap_or(0) };
            let in_bounds = entry.offset.checked_add(entry.length).is_some_and(|end| end <= len as u64);
            if !in_bounds || entry.offset < header_len as u64 || !entry.offset.is_multiple_of(8) {
                return Err(fail(format!(
                    "section {} (offset {}, length {}) lies outside the file of {len} bytes",
                    entry.kind, entry.offset, entry.length
                )));
            }
            if Section::from_u32(entry.kind).is_none() && entry.flags & REQUIRED != 0 {
                return Err(Error::Version {
                    path: path.display().to_string(),
                    detail: format!("required section kind {} is unknown to this library", entry.kind),
                });
            }
            table.push(entry);
        }
        let segment = SegmentFile { header, path: path.to_path_buf(), map, table };
        // Opening reads the ids and the level structure whole anyway, so their checksums cost
        // little; `verify` adds the vectors and layer-0 links, the bulk of the file.
        segment.verify(|kind| {
            verify || !matches!(kind, Some(Section::High | Section::Low | Section::Layer0 | Section::Codes))
        })?;
        segment.map.advise_random();
        Ok(segment)
    }

    /// Checks the sections `which` selects (by kind; `None` for kinds unknown to this version)
    /// against their checksums, in parallel.
    fn verify(&self, which: impl Fn(Option<Section>) -> bool + Sync) -> Result<()> {
        let bytes = self.map.bytes();
        self.table.par_iter().filter(|entry| which(Section::from_u32(entry.kind))).try_for_each(|entry| {
            let section = &bytes[entry.offset as usize..(entry.offset + entry.length) as usize];
            let mut crc = 0;
            for chunk in section.chunks(4 << 20) {
                crc = crc32c::crc32c_append(crc, chunk);
                // The check reads every page once; give them back, so opening leaves the file
                // out of resident memory until searches need it.
                release_pages(chunk);
            }
            if crc == entry.crc {
                Ok(())
            } else {
                Err(corrupt(&self.path, format!("section {} fails its checksum", entry.kind)))
            }
        })
    }

    /// Section `kind` as `len` elements of `T`; an error unless it holds exactly that.
    pub(crate) fn array<T: Plain>(&self, kind: Section, len: usize) -> Result<Array<T>> {
        let entry = self.table.iter().find(|e| e.kind == kind as u32);
        let fail = |detail: String| corrupt(&self.path, detail);
        let entry = entry.ok_or_else(|| fail(format!("section {kind:?} is missing")))?;
        let expected = len.checked_mul(size_of::<T>()).ok_or_else(|| fail(format!("{kind:?} too large")))?;
        if entry.length != expected as u64 {
            return Err(fail(format!("section {kind:?} holds {} bytes, expected {expected}", entry.length)));
        }
        if len == 0 {
            return Ok(Array::default());
        }
        Array::mapped(&self.map, entry.offset as usize, len)
            .ok_or_else(|| fail(format!("section {kind:?} is misaligned or out of bounds")))
    }

    /// Section `kind` as `T`s whatever its length, or `None` when the file has no such section.
    pub(crate) fn optional_array<T: Plain>(&self, kind: Section) -> Result<Option<Array<T>>> {
        let Some(entry) = self.table.iter().find(|e| e.kind == kind as u32) else { return Ok(None) };
        if entry.length % size_of::<T>() as u64 != 0 {
            return Err(self.corrupt(format!("section {kind:?} is not a whole number of elements")));
        }
        self.array(kind, (entry.length / size_of::<T>() as u64) as usize).map(Some)
    }

    /// A corruption error naming this file.
    pub(crate) fn corrupt(&self, detail: String) -> Error {
        corrupt(&self.path, detail)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }
}
