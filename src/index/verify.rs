//! Inspecting a database: its files and segments (`Index::files`, `Index::segments`), and
//! `Index::verify`, which reads all of it and checks everything a search relies on.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Index;
use crate::distance::Metric;
use crate::error::{io_error, Result};
use crate::options::Options;
use crate::segment::GraphCheck;
use crate::storage::Manifest;

/// One file of a database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    pub name: String,
    pub bytes: u64,
    /// The format version in its header (docs/format.md: each kind of file has its own).
    pub format_version: u32,
}

/// One segment of an index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its file (for the growing segment, its snapshot); empty in memory, and for a growing
    /// segment whose vectors all came from the log since the last checkpoint.
    pub file: String,
    /// Live vectors.
    pub vectors: usize,
    pub deleted: usize,
    /// Size of its file (0 without one).
    pub bytes: u64,
    /// Whether it is sealed (immutable) rather than the growing one.
    pub sealed: bool,
}

/// What [`Index::verify`] checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Every file of the database: the manifest first, then those it names (segments, growing
    /// snapshot, deletion files, the log). Each passed its checksums.
    pub files: Vec<FileInfo>,
    /// Each segment's graph, sealed ones first.
    pub segments: Vec<SegmentReport>,
    /// Damage the checksums cannot see (they hold for what was written): a link to a node that
    /// does not exist, a count beyond its list, a sealed node no search can reach. Each names
    /// its file. Empty when the database is sound.
    pub problems: Vec<String>,
    /// Worth knowing, but not damage: a torn log tail (what a crash during a write leaves),
    /// files the manifest does not name, growing-segment nodes that the next reachability pass
    /// will link.
    pub notices: Vec<String>,
}

/// One segment's graph, as [`Index::verify`] found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentReport {
    pub segment: SegmentInfo,
    /// Links checked, on every layer.
    pub links: u64,
    /// Nodes no walk from the entry point reaches.
    pub unreachable: usize,
}

impl Index {
    /// The files of a database: the manifest first, then every file it names, with sizes and
    /// format versions, as of one moment (see [`Index::backup`]). Empty for an in-memory index.
    pub fn files(&self) -> Result<Vec<FileInfo>> {
        Ok(self.listing()?.0)
    }

    /// The files, and the manifest they belong to (`None` in memory).
    fn listing(&self) -> Result<(Vec<FileInfo>, Option<Manifest>)> {
        let Some(store) = &self.shared.store else { return Ok((Vec::new(), None)) };
        let frozen = store.freeze()?;
        let manifest = Manifest::path(store.dir());
        let bytes = std::fs::read(&manifest).map_err(|e| io_error(&manifest, "read", &e))?;
        // Every file kind starts with 8 magic bytes and its version.
        let version_of = |head: &[u8]| head.get(8..12).map_or(0, |v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
        let mut files =
            vec![FileInfo { name: "MANIFEST".into(), bytes: bytes.len() as u64, format_version: version_of(&bytes) }];
        for file in &frozen.files {
            let mut head = [0u8; 12];
            let path = store.dir().join(&file.name);
            let read = file.file.read_at(&mut head, 0).map_err(|e| io_error(&path, "read", &e))?;
            files.push(FileInfo {
                name: file.name.clone(),
                bytes: file.len,
                format_version: version_of(&head[..read]),
            });
        }
        Ok((files, Some(frozen.manifest)))
    }

    /// Each segment holding vectors, sealed ones first: live and deleted counts, its file.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        let (files, manifest) = self.listing()?;
        let set = self.shared.snapshot();
        let store = self.shared.store.as_ref();
        // A file the manifest names (a segment sealed since the last checkpoint has none yet).
        let file = |path: Option<PathBuf>| {
            let name = path.and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            files
                .iter()
                .find(|f| Some(&f.name) == name.as_ref())
                .map_or((String::new(), 0), |f| (f.name.clone(), f.bytes))
        };
        let mut segments: Vec<SegmentInfo> = set
            .sealed
            .iter()
            .map(|s| {
                let (file, bytes) = file(store.map(|store| store.segment_path(s.ordinal())));
                let deleted = s.tombstones().count();
                SegmentInfo { file, vectors: s.len() - deleted, deleted, bytes, sealed: true }
            })
            .collect();
        if set.growing.len() > 0 {
            let snapshot = manifest.filter(|m| m.growing.ordinal == set.growing.ordinal());
            let (file, bytes) = file(store.zip(snapshot).map(|(store, m)| store.growing_path(&m)));
            let deleted = set.growing.tombstones().count();
            segments.push(SegmentInfo { file, vectors: set.growing.len() - deleted, deleted, bytes, sealed: false });
        }
        Ok(segments)
    }

    /// Opens the database at `path` read-only (beside a writer, if one has it open), checks the
    /// checksum of every byte of every file, replays the log, then reads every graph: counts
    /// within their lists, links to nodes that exist on their layer, every node reachable.
    ///
    /// Damage that makes the database unreadable (a checksum, a truncated or foreign file, a
    /// corrupt log) fails as [`Index::open`] does, naming the file; damage inside a readable
    /// graph is listed in [`Verification::problems`].
    pub fn verify(path: impl AsRef<Path>) -> Result<Verification> {
        let dir = path.as_ref();
        let options = Options { create: false, read_only: true, verify: true, ..Options::new(0, Metric::L2) };
        let index = Index::open(dir, options)?;
        let mut report = Verification { files: index.files()?, ..Verification::default() };
        let set = index.shared.snapshot();
        let checks = set.sealed.iter().map(|s| s.check()).chain((set.growing.len() > 0).then(|| set.growing.check()));
        for (segment, check) in index.segments()?.into_iter().zip(checks) {
            let GraphCheck { links, problems, problem_count, unreachable } = check;
            let shown = if segment.file.is_empty() {
                "the growing segment (from the log)".to_string()
            } else {
                segment.file.clone()
            };
            report.problems.extend(problems.iter().map(|p| format!("{shown}: {p}")));
            if problem_count > problems.len() as u64 {
                report.problems.push(format!("{shown}: {} more problems", problem_count - problems.len() as u64));
            }
            if unreachable > 0 {
                let nodes = segment.vectors + segment.deleted;
                let message = format!("{shown}: {unreachable} of {nodes} nodes are unreachable from the entry point");
                if segment.sealed {
                    report.problems.push(format!("{message}: searches can miss them"));
                } else {
                    report.notices.push(format!("{message} until the next reachability pass"));
                }
            }
            report.segments.push(SegmentReport { segment, links, unreachable });
        }
        if let Some(notice) = index.recovery_notice() {
            report.notices.push(notice);
        }
        let known: Vec<&str> = report.files.iter().map(|f| f.name.as_str()).collect();
        let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, "list", &e))?;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file != "LOCK" && !known.contains(&file.as_str()) {
                report.notices.push(format!(
                    "{file} is not part of the database (a checkpoint's leftover, removed at the next writable open, or a file of yours)"
                ));
            }
        }
        Ok(report)
    }
}
