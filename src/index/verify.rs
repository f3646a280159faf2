//! `Index::verify`: reads a whole database and checks everything a search relies on.

use std::path::Path;

use super::Index;
use crate::distance::Metric;
use crate::error::{io_error, Error, Result};
use crate::options::Options;
use crate::segment::GraphCheck;

/// What [`Index::verify`] checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Every file of the database with its size in bytes: the manifest first, then those it
    /// names (segments, growing snapshot, deletion files, the log). Each passed its checksums.
    pub files: Vec<(String, u64)>,
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
    /// The segment's file (for the growing segment, its snapshot; empty when it has none yet
    /// because its nodes all came from the log).
    pub file: String,
    pub nodes: usize,
    pub deleted: usize,
    /// Links checked, on every layer.
    pub links: u64,
    /// Nodes no walk from the entry point reaches.
    pub unreachable: usize,
}

impl Index {
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
        let missing = || Error::NotFound { path: dir.display().to_string() };
        let store = index.shared.store.as_ref().ok_or_else(missing)?;
        let frozen = store.freeze()?;
        let manifest_path = dir.join("MANIFEST");
        let manifest_len = std::fs::metadata(&manifest_path).map_err(|e| io_error(&manifest_path, "stat", &e))?.len();
        let mut report = Verification { files: vec![("MANIFEST".into(), manifest_len)], ..Verification::default() };
        report.files.extend(frozen.files.iter().map(|file| (file.name.clone(), file.len)));

        let name = |path: std::path::PathBuf| path.file_name().map(|n| n.to_string_lossy().into_owned());
        let set = index.shared.snapshot();
        let growing_file = (frozen.manifest.growing.count > 0).then(|| store.growing_path(&frozen.manifest));
        let segments = set
            .sealed
            .iter()
            .map(|s| (name(store.segment_path(s.ordinal())), s.check(), s.len(), s.tombstones().count(), true))
            .chain((set.growing.len() > 0).then(|| {
                let growing = &set.growing;
                (growing_file.and_then(name), growing.check(), growing.len(), growing.tombstones().count(), false)
            }));
        for (file, check, nodes, deleted, sealed) in segments {
            let file = file.unwrap_or_default();
            let GraphCheck { links, problems, problem_count, unreachable } = check;
            let shown = if file.is_empty() { "the growing segment (from the log)" } else { file.as_str() };
            report.problems.extend(problems.iter().map(|p| format!("{shown}: {p}")));
            if problem_count > problems.len() as u64 {
                report.problems.push(format!("{shown}: {} more problems", problem_count - problems.len() as u64));
            }
            if unreachable > 0 {
                let message = format!("{shown}: {unreachable} of {nodes} nodes are unreachable from the entry point");
                if sealed {
                    report.problems.push(format!("{message}: searches can miss them"));
                } else {
                    report.notices.push(format!("{message} until the next reachability pass"));
                }
            }
            report.segments.push(SegmentReport { file, nodes, deleted, links, unreachable });
        }
        if let Some(notice) = index.recovery_notice() {
            report.notices.push(notice);
        }
        let known: Vec<&str> = report.files.iter().map(|(name, _)| name.as_str()).collect();
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
