//! The write-ahead log: one record per acknowledged batch, each with its length and a checksum,
//! so a record torn by a crash is recognised and dropped (it was never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::bytes::LeReader;
use super::Source;
use crate::error::{corrupt, io_error, Error, Result};

const MAGIC: &[u8; 8] = b"OMENWAL\0";
pub(crate) const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 32;
/// Record head: payload length (u64), payload checksum, checksum of these 12 bytes.
const RECORD_HEAD: usize = 16;
/// Payload head: kind, reserved, row count.
const PAYLOAD_HEAD: usize = 16;
const KIND_INSERT: u32 = 1;
const KIND_DELETE: u32 = 2;
const KIND_UPSERT: u32 = 3;

/// One logged change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum LogRecord<'a> {
    /// New ids with their vectors (row-major, as the caller passed them).
    Insert { ids: &'a [u64], vectors: &'a [f32] },
    /// Ids removed (those present when it was logged).
    Delete { ids: &'a [u64] },
    /// Ids inserted, each replacing the vector of the id if present.
    Upsert { ids: &'a [u64], vectors: &'a [f32] },
}

impl LogRecord<'_> {
    fn parts(&self) -> (u32, &[u64], &[f32]) {
        match *self {
            LogRecord::Insert { ids, vectors } => (KIND_INSERT, ids, vectors),
            LogRecord::Delete { ids } => (KIND_DELETE, ids, &[]),
            LogRecord::Upsert { ids, vectors } => (KIND_UPSERT, ids, vectors),
        }
    }
}

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

/// The bytes of one record.
fn encode(change: LogRecord<'_>) -> Vec<u8> {
    let (kind, ids, vectors) = change.parts();
    let payload = PAYLOAD_HEAD + ids.len() * 8 + vectors.len() * 4;
    let mut record = Vec::with_capacity(RECORD_HEAD + payload);
    record.extend_from_slice(&[0; RECORD_HEAD]);
    record.extend_from_slice(&kind.to_le_bytes());
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

    /// Opens the log at `path` and passes every intact record to `replay` in order. A damaged
    /// record followed by more data is corruption, not a torn write, and fails. A torn or damaged
    /// tail is refused when `strict`; otherwise it is dropped, and when `writable` its bytes are
    /// first moved aside (see [`DroppedTail`]) and the log cut back to its last intact record.
    pub(crate) fn open(
        source: &Source<'_>,
        dim: usize,
        generation: u64,
        writable: bool,
        strict: bool,
        mut replay: impl FnMut(LogRecord<'_>) -> Result<()>,
    ) -> Result<(Wal, Option<DroppedTail>)> {
        let path = source.path();
        let file = if writable {
            OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_error(path, "open", &e))?
        } else {
            source.open()?
        };
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
        let mut torn = None;
        while at < size {
            let record =
                read_record(&file, &mut reader, at, size, &mut payload).map_err(|e| io_error(path, "read", &e))?;
            let damaged = || corrupt(path, format!("damaged record at byte {at} with more data after it"));
            match record {
                Record::Intact => {
                    // Intact but not a record this version writes: damage that matched its checksum
                    // is all but impossible, so this is a file from elsewhere.
                    let (kind, ids, vectors) = decode(&payload, dim).ok_or_else(damaged)?;
                    replay(match kind {
                        KIND_INSERT => LogRecord::Insert { ids: &ids, vectors: &vectors },
                        KIND_DELETE => LogRecord::Delete { ids: &ids },
                        _ => LogRecord::Upsert { ids: &ids, vectors: &vectors },
                    })?;
                    at += (RECORD_HEAD + payload.len()) as u64;
                }
                Record::Torn(why) => {
                    torn = Some(why);
                    break;
                }
                Record::Damaged => return Err(damaged()),
            }
        }
        let dropped = match torn {
            Some(why) => {
                let records = records_in_tail(&file, at, size).map_err(|e| io_error(path, "read", &e))?;
                Some(DroppedTail { offset: at, bytes: size - at, records, why, moved_to: None })
            }
            None => None,
        };
        let dropped = match dropped {
            Some(tail) if strict => {
                return Err(corrupt(
                    path,
                    format!("{tail}; refused by the strict log recovery, nothing was changed (open without it to move the tail aside)"),
                ))
            }
            Some(tail) if writable => Some(tail.move_aside(&file, path)?),
            other => other,
        };
        Ok((Wal { file, path: path.to_path_buf(), len: at, dim }, dropped))
    }

    /// Appends the record of one change (not yet durable: see `sync_handle`). On failure the log
    /// is cut back to its previous length, so it never holds part of a record that will be
    /// followed by more.
    pub(crate) fn append(&mut self, change: LogRecord<'_>) -> Result<()> {
        let (kind, ids, vectors) = change.parts();
        debug_assert_eq!(vectors.len(), if kind == KIND_DELETE { 0 } else { ids.len() * self.dim });
        let record = encode(change);
        if let Err(e) = self.file.write_all_at(&record, self.len) {
            let _ = self.file.set_len(self.len);
            return Err(io_error(&self.path, "append", &e));
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Bytes of the log: its header and whole records.
    pub(crate) fn len(&self) -> u64 {
        self.len
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

/// The end of a log that does not hold whole, intact records and was dropped on opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DroppedTail {
    /// Where the tail starts: the end of the last intact record.
    pub offset: u64,
    pub bytes: u64,
    /// Records the tail holds as far as their heads tell (at least 1; a damaged head hides any
    /// after it).
    pub records: u64,
    /// What was wrong with its first record.
    pub why: &'static str,
    /// Where its bytes were moved; `None` when the log was opened read-only (and left as it is).
    pub moved_to: Option<PathBuf>,
}

/// What a moved-aside tail's file name ends with. Such files are the user's: the database never
/// reads or removes them.
pub(crate) const DAMAGED_SUFFIX: &str = ".damaged";

impl DroppedTail {
    /// Copies the tail to a new file beside the log (`<log>.<offset>.damaged`, or with `-2`, `-3`
    /// ... when that exists), makes it durable, then cuts the log back to `offset`. A crash
    /// between the two leaves the tail in both, and the next opening moves it again.
    fn move_aside(mut self, log: &File, path: &Path) -> Result<DroppedTail> {
        let name = |n: u32| {
            let suffix = if n == 1 { String::new() } else { format!("-{n}") };
            PathBuf::from(format!("{}.{}{suffix}{DAMAGED_SUFFIX}", path.display(), self.offset))
        };
        let mut n = 1;
        let (aside, mut copy) = loop {
            match OpenOptions::new().write(true).create_new(true).open(name(n)) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(io_error(&name(n), "create", &e)),
                Ok(copy) => break (name(n), copy),
            }
        };
        let mut source = log;
        let copied = std::io::Seek::seek(&mut source, std::io::SeekFrom::Start(self.offset))
            .and_then(|_| std::io::copy(&mut std::io::Read::take(source, self.bytes), &mut copy))
            .and_then(|_| copy.sync_all());
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&aside);
            return Err(io_error(&aside, "write the dropped log tail to", &e));
        }
        super::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        log.set_len(self.offset).and_then(|()| log.sync_all()).map_err(|e| io_error(path, "truncate torn tail", &e))?;
        self.moved_to = Some(aside);
        Ok(self)
    }
}

impl std::fmt::Display for DroppedTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.records == 1 { "" } else { "s" };
        write!(
            f,
            "dropped the last {} bytes of the log from byte {} ({} record{plural}: {}), as a crash during a write leaves them",
            self.bytes, self.offset, self.records, self.why
        )?;
        match &self.moved_to {
            Some(aside) => write!(f, "; they were moved to {}", aside.display()),
            None => write!(f, "; the log was left as it is (read-only)"),
        }
    }
}

/// What a log holds at one position.
enum Record {
    /// An intact record; its payload was read.
    Intact,
    /// The remains of the last write, as a crash leaves them (or damage that looks the same),
    /// and what is wrong with it.
    Torn(&'static str),
    /// A damaged record with more data after it.
    Damaged,
}

/// Reads the record at `at` (with `size - at` bytes left) into `payload`.
///
/// The head carries its own checksum, so a trustworthy length is told apart from a damaged one.
/// A crash tears only the last write: the file may end anywhere inside it, and a file extended by
/// a crash may hold zeros (or, on some file systems, stale bytes) where data never landed. So a
/// record that fails a checksum is a torn tail unless an intact record follows it.
fn read_record(
    file: &File,
    reader: &mut impl Read,
    at: u64,
    size: u64,
    payload: &mut Vec<u8>,
) -> std::io::Result<Record> {
    payload.clear();
    if size - at < RECORD_HEAD as u64 {
        return Ok(Record::Torn("the file ends inside a record head"));
    }
    let mut head = [0u8; RECORD_HEAD];
    reader.read_exact(&mut head)?;
    let Some((len, crc)) = intact_head(&head) else {
        return Ok(if intact_record_after(file, at + 1, size)? {
            Record::Damaged
        } else if head == [0; RECORD_HEAD] {
            Record::Torn("zeros where a record head should be")
        } else {
            Record::Torn("a record head whose checksum does not match")
        });
    };
    if len > size - at - RECORD_HEAD as u64 {
        return Ok(Record::Torn("the file ends inside a record"));
    }
    let end = at + RECORD_HEAD as u64 + len;
    payload.resize(len as usize, 0);
    reader.read_exact(payload)?;
    if crc32c::crc32c(payload) == crc {
        Ok(Record::Intact)
    } else if intact_record_after(file, end, size)? {
        Ok(Record::Damaged)
    } else {
        Ok(Record::Torn("a record whose payload checksum does not match"))
    }
}

/// The payload length and checksum of a record head whose own checksum matches.
fn intact_head(head: &[u8]) -> Option<(u64, u32)> {
    let mut fields = LeReader::at(head, 0);
    let (len, crc, head_crc) = (fields.u64()?, fields.u32()?, fields.u32()?);
    (crc32c::crc32c(&head[..12]) == head_crc).then_some((len, crc))
}

/// Whether an intact record (head and payload checksums matching) starts at any byte from
/// `from` on: the test that tells damage followed by acknowledged records (corruption) from the
/// remains of a torn write. Reads the rest of the file once, in windows.
fn intact_record_after(file: &File, from: u64, size: u64) -> std::io::Result<bool> {
    const WINDOW: usize = 1 << 20;
    let mut window = vec![0u8; WINDOW + RECORD_HEAD];
    let mut start = from;
    while start + RECORD_HEAD as u64 <= size {
        let n = (size - start).min(window.len() as u64) as usize;
        file.read_exact_at(&mut window[..n], start)?;
        for offset in 0..=n - RECORD_HEAD {
            let Some((len, crc)) = intact_head(&window[offset..offset + RECORD_HEAD]) else { continue };
            let at = start + offset as u64;
            if len <= size - at - RECORD_HEAD as u64 {
                let mut payload = vec![0u8; len as usize];
                file.read_exact_at(&mut payload, at + RECORD_HEAD as u64)?;
                if crc32c::crc32c(&payload) == crc {
                    return Ok(true);
                }
            }
        }
        start += (n - RECORD_HEAD + 1) as u64;
    }
    Ok(false)
}

/// How many records the tail from `at` to `size` holds as far as their heads tell: each intact
/// head counts one and gives the length to the next; a damaged head ends the count.
fn records_in_tail(file: &File, mut at: u64, size: u64) -> std::io::Result<u64> {
    let mut records = 0;
    while at < size {
        records += 1;
        let mut head = [0u8; RECORD_HEAD];
        if size - at < RECORD_HEAD as u64 || file.read_exact_at(&mut head, at).is_err() {
            break;
        }
        let Some((len, _)) = intact_head(&head) else { break };
        at = at.saturating_add(RECORD_HEAD as u64).saturating_add(len);
    }
    Ok(records)
}

/// The kind, ids and vectors of a record, or `None` when it is malformed.
fn decode(payload: &[u8], dim: usize) -> Option<(u32, Vec<u64>, Vec<f32>)> {
    let mut head = LeReader::at(payload, 0);
    let (kind, _reserved) = (head.u32()?, head.u32()?);
    let count = usize::try_from(head.u64()?).ok()?;
    let row = match kind {
        KIND_INSERT | KIND_UPSERT => 8 + 4 * dim,
        KIND_DELETE => 8,
        _ => return None,
    };
    if payload.len() != count.checked_mul(row)?.checked_add(PAYLOAD_HEAD)? {
        return None;
    }
    let (ids, vectors) = payload[PAYLOAD_HEAD..].split_at(count * 8);
    let ids = ids.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
    let vectors = vectors.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default())).collect();
    Some((kind, ids, vectors))
}
