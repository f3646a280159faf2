//! The write-ahead log: one record per acknowledged batch, each with its length and a checksum,
//! so a record torn by a crash is recognised and dropped (it was never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::bytes::LeReader;
use crate::error::{corrupt, io_error, Error, Result};

const MAGIC: &[u8; 8] = b"OMENWAL\0";
pub(crate) const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 32;
/// Record head: payload length (u64), payload checksum, checksum of these 12 bytes.
const RECORD_HEAD: usize = 16;
/// Payload head: kind, reserved, row count.
const PAYLOAD_HEAD: usize = 16;
const KIND_INSERT: u32 = 1;

/// An open log, positioned after its last good record.
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
    dim: usize,
}

fn header(dim: usize, generation: u64) -> [u8; HEADER] {
    let mut head = [0u8; HEADER];
    head[..8].copy_from_slice(MAGIC);
    head[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    head[12..16].copy_from_slice(&(dim as u32).to_le_bytes());
    head[16..24].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&head[..HEADER - 4]);
    head[HEADER - 4..].copy_from_slice(&crc.to_le_bytes());
    head
}

/// The record that logs inserting `ids` with `vectors`.
fn encode(ids: &[u64], vectors: &[f32]) -> Vec<u8> {
    let payload = PAYLOAD_HEAD + ids.len() * 8 + vectors.len() * 4;
    let mut record = Vec::with_capacity(RECORD_HEAD + payload);
    record.extend_from_slice(&[0; RECORD_HEAD]);
    record.extend_from_slice(&KIND_INSERT.to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    record.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    ids.iter().for_each(|id| record.extend_from_slice(&id.to_le_bytes()));
    vectors.iter().for_each(|x| record.extend_from_slice(&x.to_le_bytes()));
    let crc = crc32c::crc32c(&record[RECORD_HEAD..]);
    record[..8].copy_from_slice(&(payload as u64).to_le_bytes());
    record[8..12].copy_from_slice(&crc.to_le_bytes());
    let head_crc = crc32c::crc32c(&record[..12]);
    record[12..16].copy_from_slice(&head_crc.to_le_bytes());
    record
}

impl Wal {
    /// Bytes of an empty log: its header.
    pub(crate) const HEADER_LEN: u64 = HEADER as u64;

    /// Creates an empty log at `path` (replacing any file there) and makes it durable.
    pub(crate) fn create(path: &Path, dim: usize, generation: u64) -> Result<Wal> {
        let fail = |e: std::io::Error| io_error(path, "create", &e);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(fail)?;
        file.write_all_at(&header(dim, generation), 0).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        Ok(Wal { file, path: path.to_path_buf(), len: HEADER as u64, dim })
    }

    /// Opens the log at `path`, passes every intact record to `replay` in order, and drops a torn
    /// last record (truncating it away when `writable`). A damaged record followed by more data
    /// is corruption, not a torn write.
    pub(crate) fn open(
        path: &Path,
        dim: usize,
        generation: u64,
        writable: bool,
        mut replay: impl FnMut(&[u64], &[f32]) -> Result<()>,
    ) -> Result<Wal> {
        let file = OpenOptions::new().read(true).write(writable).open(path).map_err(|e| io_error(path, "open", &e))?;
        let size = file.metadata().map_err(|e| io_error(path, "stat", &e))?.len();
        let mut head = [0u8; HEADER];
        if size < HEADER as u64 || file.read_exact_at(&mut head, 0).is_err() {
            return Err(corrupt(path, format!("{size} bytes is too short for a log header")));
        }
        if &head[..8] != MAGIC {
            return Err(corrupt(path, "not an omendb write-ahead log (bad magic bytes)".into()));
        }
        let mut fields = LeReader::at(&head, 8);
        let (version, stored_dim) = (fields.u32().unwrap_or(0), fields.u32().unwrap_or(0) as usize);
        if head != header(dim, generation) {
            return Err(if version != FORMAT_VERSION {
                Error::Version {
                    path: path.display().to_string(),
                    detail: format!("log format version {version}; this library reads version {FORMAT_VERSION}"),
                }
            } else if head == header(stored_dim, generation) {
                Error::DimensionMismatch(format!(
                    "{}: log of {stored_dim}-dimensional vectors, the database has {dim}",
                    path.display()
                ))
            } else {
                corrupt(path, format!("header does not match generation {generation} at dim {dim}"))
            });
        }
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &file);
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(HEADER as u64))
            .map_err(|e| io_error(path, "seek", &e))?;
        let mut at = HEADER as u64;
        let mut payload = Vec::new();
        while at < size {
            let record =
                read_record(&file, &mut reader, at, size, &mut payload).map_err(|e| io_error(path, "read", &e))?;
            let damaged = || corrupt(path, format!("damaged record at byte {at} with more data after it"));
            match record {
                Record::Intact => {
                    // Intact but not a record this version writes: damage that matched its checksum
                    // is all but impossible, so this is a file from elsewhere.
                    let (ids, vectors) = decode(&payload, dim).ok_or_else(damaged)?;
                    replay(&ids, &vectors)?;
                    at += (RECORD_HEAD + payload.len()) as u64;
                }
                Record::Torn => break,
                Record::Damaged => return Err(damaged()),
            }
        }
        if writable && at < size {
            file.set_len(at).and_then(|()| file.sync_all()).map_err(|e| io_error(path, "truncate torn tail", &e))?;
        }
        Ok(Wal { file, path: path.to_path_buf(), len: at, dim })
    }

    /// Appends the record for one batch (not yet durable: see `sync_handle`). On failure the log
    /// is cut back to its previous length, so it never holds part of a record that will be
    /// followed by more.
    pub(crate) fn append(&mut self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        debug_assert_eq!(vectors.len(), ids.len() * self.dim);
        let record = encode(ids, vectors);
        if let Err(e) = self.file.write_all_at(&record, self.len) {
            let _ = self.file.set_len(self.len);
            return Err(io_error(&self.path, "append", &e));
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Whether the log holds any record.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == HEADER as u64
    }

    /// A second handle on the file, for fsync without holding the appender.
    pub(crate) fn sync_handle(&self) -> Result<File> {
        self.file.try_clone().map_err(|e| io_error(&self.path, "duplicate handle", &e))
    }
}

/// What a log holds at one position.
enum Record {
    /// An intact record; its payload was read.
    Intact,
    /// The remains of the last write, torn by a crash.
    Torn,
    /// A damaged record with more data after it.
    Damaged,
}

/// Reads the record at `at` (with `size - at` bytes left) into `payload`.
///
/// The head carries its own checksum, so a trustworthy length is told apart from a damaged one.
/// A crash tears only the last write: its head is intact (and the file ends inside the record),
/// or zero, or cut short; a file extended by a crash may also hold zeros where data never landed.
fn read_record(
    file: &File,
    reader: &mut impl Read,
    at: u64,
    size: u64,
    payload: &mut Vec<u8>,
) -> std::io::Result<Record> {
    payload.clear();
    let zeros_from = |offset: u64| zeros_to_end(file, offset, size);
    if size - at < RECORD_HEAD as u64 {
        return Ok(Record::Torn);
    }
    let mut head = [0u8; RECORD_HEAD];
    reader.read_exact(&mut head)?;
    let mut fields = LeReader::at(&head, 0);
    let (len, crc, head_crc) = (fields.u64(), fields.u32(), fields.u32());
    let (Some(len), Some(crc), Some(head_crc)) = (len, crc, head_crc) else { return Ok(Record::Damaged) };
    if crc32c::crc32c(&head[..12]) != head_crc {
        return Ok(if zeros_from(at)? { Record::Torn } else { Record::Damaged });
    }
    if len > size - at - RECORD_HEAD as u64 {
        return Ok(Record::Torn);
    }
    let end = at + RECORD_HEAD as u64 + len;
    payload.resize(len as usize, 0);
    reader.read_exact(payload)?;
    if crc32c::crc32c(payload) == crc {
        Ok(Record::Intact)
    } else if zeros_from(end)? {
        Ok(Record::Torn)
    } else {
        Ok(Record::Damaged)
    }
}

/// Whether every byte from `offset` to `size` is zero.
fn zeros_to_end(file: &File, mut offset: u64, size: u64) -> std::io::Result<bool> {
    let mut chunk = vec![0u8; (size - offset).min(1 << 20) as usize];
    while offset < size {
        let n = chunk.len().min((size - offset) as usize);
        file.read_exact_at(&mut chunk[..n], offset)?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

/// The ids and vectors of an insert record, or `None` when it is malformed.
fn decode(payload: &[u8], dim: usize) -> Option<(Vec<u64>, Vec<f32>)> {
    let mut head = LeReader::at(payload, 0);
    let (kind, _reserved) = (head.u32()?, head.u32()?);
    let count = usize::try_from(head.u64()?).ok()?;
    let expected = count.checked_mul(8 + 4 * dim)?.checked_add(PAYLOAD_HEAD)?;
    if kind != KIND_INSERT || payload.len() != expected {
        return None;
    }
    let (ids, vectors) = payload[PAYLOAD_HEAD..].split_at(count * 8);
    let ids = ids.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
    let vectors = vectors.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default())).collect();
    Some((ids, vectors))
}
