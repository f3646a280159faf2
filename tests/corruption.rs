//! Damaged files: for every file type, truncation at many offsets, flipped bytes at many
//! positions, zero-length, foreign, wrong-version and wrong-dimension files. Every open either
//! succeeds with exactly the data that passes the checksums or fails with the right error; none
//! crashes, hangs or allocates without bound. Ends with a bounded random-mutation run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Rng;
use omendb::{Error, Index, LogRecovery, Metric, Options};

const DIM: usize = 12;

fn options() -> Options {
    let mut options = Options::new(DIM, Metric::L2);
    options.m = 6;
    options.ef_construction = 32;
    options.segment_capacity = 400;
    options.threads = 1;
    options
}

fn batch(b: u64) -> (Vec<u64>, Vec<f32>) {
    let mut rng = Rng::new(b + 1);
    let size = 20 + rng.next_u64() % 60;
    let ids: Vec<u64> = (b * 1000..b * 1000 + size).collect();
    let vectors = (0..size as usize * DIM).map(|_| rng.uniform()).collect();
    (ids, vectors)
}

fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("omendb-corrupt-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Removes the templates of test processes that have exited: a static is never dropped, so each
/// run leaves its own behind. Where `/proc` cannot tell which processes live, none is removed.
fn remove_stale_templates() {
    let (Ok(entries), true) = (std::fs::read_dir(std::env::temp_dir()), Path::new("/proc/self").exists()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("omendb-corrupt-template-").and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A database with two sealed segments, a growing snapshot and a log of four records, left as a
/// crash would leave it. Returns its directory and the number of batches in the snapshot/segments.
fn template() -> &'static (PathBuf, u64, u64) {
    static TEMPLATE: std::sync::OnceLock<((PathBuf, u64, u64), Index)> = std::sync::OnceLock::new();
    &TEMPLATE
        .get_or_init(|| {
            remove_stale_templates();
            let dir = fresh_dir("template");
            let index = Index::open(&dir, options()).unwrap();
            let mut b = 0;
            while index.segment_count() < 3 {
                let (ids, vectors) = batch(b);
                index.insert_batch(&ids, &vectors).unwrap();
                b += 1;
            }
            index.flush().unwrap();
            let checkpointed = b;
            for _ in 0..4 {
                let (ids, vectors) = batch(b);
                index.insert_batch(&ids, &vectors).unwrap();
                b += 1;
            }
            // Keep the log: the index stays open, never closed or checkpointed (copies of the
            // directory have their own LOCK).
            ((dir, checkpointed, b), index)
        })
        .0
}

fn file_of(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} file"))
}

/// A copy of the template with `damage` applied to its file starting with `prefix`.
fn damaged_copy(prefix: &str, damage: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let (template, _, _) = template();
    let dir = fresh_dir(prefix);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(template).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let file = file_of(&dir, prefix);
    let mut bytes = std::fs::read(&file).unwrap();
    damage(&mut bytes);
    std::fs::write(&file, bytes).unwrap();
    dir
}

/// Batches fully present; panics unless the index holds exactly batches `0..n` for some n.
fn batches_present(index: &Index) -> u64 {
    let (_, _, total) = *template();
    let mut n = 0;
    while n < total && index.contains(batch(n).0[0]) {
        n += 1;
    }
    let expected: usize = (0..n).map(|b| batch(b).0.len()).sum();
    assert_eq!(index.len(), expected, "the index holds something other than whole batches 0..{n}");
    for b in 0..n {
        assert!(batch(b).0.iter().all(|&id| index.contains(id)), "batch {b} is partial");
    }
    n
}

/// Opens a damaged copy: an error must be one of `allowed`; success must hold whole batches,
/// at least `min_batches` of them, and answer searches.
fn check_open(dir: &Path, verify: bool, allowed: &[&str], min_batches: u64, case: &str) -> Result<u64, String> {
    let outcome = Index::open(dir, Options { verify, ..options() });
    let result = match outcome {
        Ok(index) => {
            let n = batches_present(&index);
            assert!(n >= min_batches, "{case}: opened with {n} batches, expected at least {min_batches}");
            for b in 0..3 {
                let (ids, vectors) = batch(b);
                let hits = index.search(&vectors[..DIM], 5, 0).unwrap();
                // Ids are always checksummed: every hit is a stored vector, whatever else is damaged.
                assert!(hits.len() <= 5 && hits.iter().all(|h| index.contains(h.id)), "{case}: {hits:?}");
                // Verified, what opened is intact: full answers in order, and a stored vector
                // finds itself. (Unverified damaged vectors may give any distance.)
                if verify {
                    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "{case}: {hits:?}");
                    assert_eq!(hits.len(), 5.min(index.len()), "{case}");
                    if b < n {
                        assert!(hits[0].id == ids[0] || hits[0].distance <= 1e-6, "{case}: {hits:?}");
                    }
                }
            }
            // Inserting links new nodes into what was read (unverified links included).
            let (_, vectors) = batch(0);
            let fresh: Vec<u64> = (0..vectors.len() / DIM).map(|i| 900_000 + i as u64).collect();
            index.insert_batch(&fresh, &vectors).unwrap();
            assert_eq!(index.search(&vectors[..DIM], 1, 0).unwrap().len(), 1);
            Ok(n)
        }
        Err(e) => {
            let kind = match &e {
                Error::Corrupt { .. } => "corrupt",
                Error::Version { .. } => "version",
                Error::DimensionMismatch(_) => "dimension",
                Error::Io { .. } => "io",
                other => panic!("{case}: unexpected error {other}"),
            };
            assert!(allowed.contains(&kind), "{case}: {kind} error not allowed: {e}");
            let message = e.to_string();
            assert!(message.contains(dir.to_str().unwrap()), "{case}: message does not name the file: {message}");
            Err(kind.to_string())
        }
    };
    let _ = std::fs::remove_dir_all(dir);
    result
}

/// Offsets to damage in a file of `len` bytes: every byte of the first 256 (headers), then
/// `spread` positions across the rest.
fn positions(len: usize, spread: usize, rng: &mut Rng) -> Vec<usize> {
    let mut at: Vec<usize> = (0..len.min(256)).collect();
    if len > 256 {
        at.extend((0..spread).map(|_| 256 + (rng.next_u64() as usize) % (len - 256)));
    }
    at
}

fn file_len(prefix: &str) -> usize {
    std::fs::metadata(file_of(&template().0, prefix)).unwrap().len() as usize
}

#[test]
fn checksummed_files_refuse_every_truncation_and_detect_flips() {
    let (_, checkpointed, total) = *template();
    let mut rng = Rng::new(7);
    for prefix in ["MANIFEST", "segment-", "growing-"] {
        let len = file_len(prefix);
        let (mut refused, mut intact) = (0, 0);
        for at in positions(len, 60, &mut rng).into_iter().step_by(3) {
            let dir = damaged_copy(prefix, |bytes| bytes.truncate(at));
            let case = format!("{prefix} truncated to {at} of {len}");
            assert!(check_open(&dir, true, &["corrupt"], total, &case).is_err(), "{case} was accepted");
        }
        for at in positions(len, 200, &mut rng) {
            let bit = 1u8 << (rng.next_u64() % 8);
            let dir = damaged_copy(prefix, |bytes| bytes[at] ^= bit);
            let case = format!("{prefix} byte {at} of {len} flipped");
            // A flip in the padding between sections changes no data: it must then open whole.
            match check_open(&dir, true, &["corrupt", "version", "dimension"], total, &case) {
                // The first 256 bytes are all header: magic, version, counts, section table.
                Ok(_) => {
                    assert!(at >= 256, "{case} went unnoticed");
                    intact += 1
                }
                Err(_) => refused += 1,
            }
        }
        println!("{prefix}: {refused} flips refused, {intact} in padding opened whole");
    }
    assert!(checkpointed < total);
}

#[test]
fn a_damaged_log_keeps_exactly_the_intact_records_before_it() {
    let (_, checkpointed, total) = *template();
    let len = file_len("wal-");
    let mut rng = Rng::new(8);
    let mut kept = std::collections::BTreeSet::new();
    for at in positions(len, 150, &mut rng) {
        let dir = damaged_copy("wal-", |bytes| bytes.truncate(at));
        let case = format!("log truncated to {at} of {len}");
        // A cut inside the header is damage; anywhere after it, a torn tail.
        let allowed: &[&str] = if at < 32 { &["corrupt"] } else { &[] };
        if let Ok(n) = check_open(&dir, true, allowed, checkpointed, &case) {
            kept.insert(n);
        }
    }
    assert_eq!(kept, (checkpointed..total).collect(), "every record boundary seen as a cut point");
    for at in positions(len, 300, &mut rng) {
        let dir = damaged_copy("wal-", |bytes| bytes[at] ^= 0x40);
        let case = format!("log byte {at} of {len} flipped");
        // Damage in the last record looks like a torn write; before it, corruption.
        if let Ok(n) = check_open(&dir, true, &["corrupt", "version", "dimension"], checkpointed, &case) {
            assert_eq!(n, total - 1, "{case}: only the last record may be dropped");
        }
    }
}

#[test]
fn empty_foreign_newer_and_mismatched_files_are_named_and_refused() {
    let (_, _, total) = *template();
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    for prefix in ["MANIFEST", "segment-", "growing-", "wal-"] {
        let dir = damaged_copy(prefix, Vec::clear);
        assert_eq!(check_open(&dir, true, &["corrupt"], total, &format!("empty {prefix}")), Err("corrupt".into()));
        let dir = damaged_copy(prefix, |bytes| *bytes = PNG.to_vec());
        assert_eq!(check_open(&dir, false, &["corrupt"], total, &format!("PNG as {prefix}")), Err("corrupt".into()));
    }
    // A newer version, with checksums made to match, is a version error.
    let bump = |bytes: &mut Vec<u8>, version_at: usize, crc_range: std::ops::Range<usize>| {
        bytes[version_at..version_at + 4].copy_from_slice(&99u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[crc_range.clone()]);
        bytes[crc_range.end..crc_range.end + 4].copy_from_slice(&crc.to_le_bytes());
    };
    let dir = damaged_copy("MANIFEST", |b| {
        let end = b.len() - 4;
        bump(b, 8, 0..end)
    });
    assert_eq!(check_open(&dir, true, &["version"], total, "manifest v99"), Err("version".into()));
    let dir = damaged_copy("segment-", |b| {
        let header_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
        bump(b, 8, 0..header_len - 4)
    });
    assert_eq!(check_open(&dir, true, &["version"], total, "segment v99"), Err("version".into()));
    let dir = damaged_copy("wal-", |b| bump(b, 8, 0..28));
    assert_eq!(check_open(&dir, true, &["version"], total, "log v99"), Err("version".into()));

    // A segment file from a database of another dimension.
    let other = fresh_dir("other-dim");
    let index = Index::open(&other, Options { dim: 8, ..options() }).unwrap();
    let mut b = 0;
    while index.segment_count() < 2 {
        let (ids, vectors) = batch(b);
        let vectors: Vec<f32> = vectors.chunks_exact(DIM).flat_map(|v| v[..8].to_vec()).collect();
        index.insert_batch(&ids, &vectors).unwrap();
        b += 1;
    }
    drop(index);
    let foreign = std::fs::read(other.join("segment-0000000000.omen")).unwrap();
    let _ = std::fs::remove_dir_all(&other);
    let dir = damaged_copy("segment-0000000000", |bytes| *bytes = foreign);
    assert_eq!(check_open(&dir, true, &["dimension"], total, "8-d segment"), Err("dimension".into()));
}

#[test]
fn unverified_opens_survive_damage_inside_sections() {
    let (_, _, total) = *template();
    let mut rng = Rng::new(9);
    for prefix in ["segment-", "growing-"] {
        let len = file_len(prefix);
        for _ in 0..100 {
            let at = (rng.next_u64() as usize) % len;
            let value = rng.next_u64() as u8;
            let dir = damaged_copy(prefix, |bytes| bytes[at] = value);
            // Unchecked sections may yield wrong neighbours, never a crash or a refused open of
            // data that is structurally sound.
            let case = format!("unverified {prefix} {at}");
            let _ = check_open(&dir, false, &["corrupt", "version", "dimension"], total, &case);
        }
    }
}

/// Random multi-byte mutations of random files, as a fuzzer would make; `cargo fuzz` runs the
/// same readers without bound (see fuzz/).
#[test]
fn random_mutations_never_crash_an_open() {
    let (_, _, total) = *template();
    let mut rng = Rng::new(0xF022);
    let prefixes = ["MANIFEST", "segment-", "growing-", "wal-"];
    let (mut opened, mut refused) = (0, 0);
    for round in 0..300 {
        let prefix = prefixes[round % prefixes.len()];
        let dir = damaged_copy(prefix, |bytes| {
            for _ in 0..1 + rng.next_u64() % 8 {
                let at = (rng.next_u64() as usize) % bytes.len().max(1);
                match rng.next_u64() % 4 {
                    0 if !bytes.is_empty() => bytes[at] = rng.next_u64() as u8,
                    1 => bytes.truncate(at),
                    2 => bytes.splice(at..at, (0..rng.next_u64() % 16).map(|_| rng.next_u64() as u8)).for_each(drop),
                    _ if at + 4 <= bytes.len() => bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
                    _ => {}
                }
            }
        });
        let verify = round % 2 == 0;
        let allowed = ["corrupt", "version", "dimension"];
        match check_open(&dir, verify, &allowed, 0, &format!("mutation round {round}")) {
            Ok(_) => opened += 1,
            Err(_) => refused += 1,
        }
    }
    // Both outcomes occur: most damage is caught, and some falls where nothing reads it (the
    // zero padding between sections, a torn-looking log tail).
    println!("random mutations of {total} batches: {opened} opened, {refused} refused");
    assert!(refused > 150 && opened > 0, "{opened} opened, {refused} refused");
}

/// Files written by format version 1 (before quantized codes) still open: the template's
/// segments carry no code sections, so only their version number differs, and a version-1
/// manifest lacks the quantization field.
#[test]
fn format_1_files_still_open() {
    let (_, _, total) = *template();
    let fix_crc = |bytes: &mut Vec<u8>, end: usize| {
        let crc = crc32c::crc32c(&bytes[..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    };
    // Manifest v2: magic, version, four u32, three u64, next_ordinal, then quantization at 56.
    let dir = damaged_copy("MANIFEST", |b| {
        assert_eq!(u32::from_le_bytes(b[56..60].try_into().unwrap()), 0, "the template has no codes");
        b.drain(56..60);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let end = b.len() - 4;
        fix_crc(b, end);
    });
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("segment-") || name.starts_with("growing-") {
            let mut bytes = std::fs::read(entry.path()).unwrap();
            bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
            let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
            fix_crc(&mut bytes, header_len - 4);
            std::fs::write(entry.path(), bytes).unwrap();
        }
    }
    assert_eq!(check_open(&dir, true, &[], total, "format 1"), Ok(total));
}

/// Where each record of a log starts, and (last) where the log ends.
fn record_starts(log: &[u8]) -> Vec<usize> {
    let mut starts = vec![32];
    while *starts.last().unwrap() < log.len() {
        let at = *starts.last().unwrap();
        let len = u64::from_le_bytes(log[at..at + 8].try_into().unwrap()) as usize;
        starts.push(at + 16 + len);
    }
    assert_eq!(*starts.last().unwrap(), log.len());
    starts
}

/// Every file of a directory with its contents.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Random damage to the log, checked against docs/format.md ("What a damaged log looks like"):
/// the records intact at their places up to the first bad one are kept; the rest is a torn tail
/// (dropped, its bytes moved to a `.damaged` file and reported) unless an intact record follows
/// the bad one (corrupt, nothing changed). A strict opening refuses any tail and changes nothing;
/// a read-only one reports the tail and leaves the files alone.
#[test]
fn random_log_damage_is_moved_aside_and_reported_or_refused_unchanged() {
    let (template, checkpointed, total) = template().clone();
    let original = std::fs::read(file_of(&template, "wal-")).unwrap();
    let starts = record_starts(&original);
    let records = starts.len() - 1;
    assert_eq!(records as u64, total - checkpointed);
    let mut rng = Rng::new(0x106);
    let mut below = |n: usize| (rng.next_u64() % n as u64) as usize;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..240 {
        let mut bytes = original.clone();
        let at = 32 + below(original.len() - 32);
        let end = (at + 1 + below(600)).min(original.len());
        let kind = ["cut", "flip", "zero tail", "zero span", "overwrite", "append"][round % 6];
        match kind {
            "cut" => bytes.truncate(at),
            "flip" => bytes[at] ^= 1 << below(8),
            "zero tail" => bytes[at..].fill(0),
            "zero span" => bytes[at..end].fill(0),
            "overwrite" => bytes[at..end].iter_mut().for_each(|b| *b = below(256) as u8),
            _ => bytes.extend((0..1 + below(300)).map(|_| below(256) as u8)),
        }
        // What docs/format.md promises for these bytes.
        let intact = |r: usize| bytes.get(starts[r]..starts[r + 1]) == Some(&original[starts[r]..starts[r + 1]]);
        let first_bad = (0..records).find(|&r| !intact(r)).unwrap_or(records);
        let refused = (first_bad + 1..records).any(intact);
        let kept = starts[first_bad];
        let dropped = (bytes.len() - kept) as u64;
        let case = format!("round {round}: {kind} at {at}..{end} of {}", original.len());
        let copy = || damaged_copy("wal-", |b| b.clone_from(&bytes));
        let refused_unchanged = |dir: &Path, outcome: Result<Index, Error>, before| match outcome {
            Err(Error::Corrupt { path, .. }) => {
                assert!(path.contains("wal-"), "{case}: the error names {path}");
                assert_eq!(files(dir), before, "{case}: a refused opening changed files");
            }
            Err(e) => panic!("{case}: {e}"),
            Ok(_) => panic!("{case}: opened"),
        };

        let dir = copy();
        let before = files(&dir);
        let strict = Index::open(&dir, Options { log_recovery: LogRecovery::Strict, ..options() });
        if refused || dropped > 0 {
            refused_unchanged(&dir, strict.map(|_| unreachable!()), before.clone());
        } else {
            assert_eq!(batches_present(&strict.unwrap()), checkpointed + first_bad as u64, "{case}");
        }
        let _ = std::fs::remove_dir_all(&dir);

        let dir = copy();
        let read_only = Index::open(&dir, Options { read_only: true, ..options() });
        if refused {
            refused_unchanged(&dir, read_only.map(|_| unreachable!()), before.clone());
        } else {
            let index = read_only.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(index.stats().log_dropped_bytes, dropped, "{case}");
            assert_eq!(index.recovery_notice().is_some(), dropped > 0, "{case}");
            drop(index);
            assert_eq!(files(&dir), before, "{case}: a read-only opening changed files");
        }

        let outcome = Index::open(&dir, options());
        if refused {
            refused_unchanged(&dir, outcome.map(|_| unreachable!()), before);
            *outcomes.entry(format!("{kind}: refused")).or_default() += 1;
        } else {
            let index = outcome.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(batches_present(&index), checkpointed + first_bad as u64, "{case}");
            let stats = index.stats();
            assert_eq!(stats.log_dropped_bytes, dropped, "{case}");
            assert_eq!(stats.log_dropped_records > 0, dropped > 0, "{case}");
            assert!(stats.log_dropped_records <= (records - first_bad + 1) as u64, "{case}: {stats:?}");
            let aside: Vec<_> = files(&dir).into_iter().filter(|(name, _)| name.ends_with(".damaged")).collect();
            match index.recovery_notice() {
                None => assert!(dropped == 0 && aside.is_empty(), "{case}: {aside:?}"),
                Some(notice) => {
                    assert_eq!(aside.len(), 1, "{case}");
                    assert_eq!(aside[0].1, bytes[kept..], "{case}: the moved-aside bytes");
                    assert!(notice.contains(&aside[0].0) && notice.contains(&dropped.to_string()), "{notice}");
                }
            }
            // The moved-aside file survives checkpoints and reopening, which find nothing to drop.
            drop(index);
            let index = Index::open(&dir, options()).unwrap();
            assert_eq!(index.recovery_notice(), None, "{case}");
            assert_eq!(batches_present(&index), checkpointed + first_bad as u64, "{case}");
            drop(index);
            assert_eq!(files(&dir).keys().filter(|name| name.ends_with(".damaged")).count(), aside.len(), "{case}");
            *outcomes.entry(format!("{kind}: {}", if dropped > 0 { "dropped" } else { "whole" })).or_default() += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("{outcomes:?}");
    for outcome in ["cut: dropped", "flip: dropped", "flip: refused", "zero tail: dropped", "append: dropped"] {
        assert!(outcomes.contains_key(outcome), "{outcome} never happened: {outcomes:?}");
    }
}
