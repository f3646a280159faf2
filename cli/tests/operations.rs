//! `verify`, `backup` and `bench` end to end: verify passes a sound database and names the file
//! on each kind of damage; a backup taken while another writer inserts holds a prefix of its
//! acknowledged batches; bench's recall is the one the library computes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ok, omendb, scratch};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use omendb::{Index, Metric, Options, Plan, SearchParams};

const DIM: usize = 8;
const BATCH: usize = 100;

fn vector_of(id: u64) -> Vec<f32> {
    (0..DIM).map(|j| ((id as f32 + 1.0) * (j as f32 + 0.5) * 0.731).sin()).collect()
}

fn insert_batch(index: &Index, number: usize) {
    let ids: Vec<u64> = (number * BATCH..(number + 1) * BATCH).map(|i| i as u64).collect();
    let vectors: Vec<f32> = ids.iter().flat_map(|&id| vector_of(id)).collect();
    index.insert_batch(&ids, &vectors).unwrap();
}

fn options() -> Options {
    Options { segment_capacity: 500, m: 8, ef_construction: 40, create: true, ..Options::new(DIM, Metric::L2) }
}

/// A database with two sealed segments, a growing snapshot, deletions and a log record.
fn sample(dir: &Path) -> PathBuf {
    let db = dir.join("db");
    let index = Index::open(&db, options()).unwrap();
    for number in 0..12 {
        insert_batch(&index, number);
    }
    index.delete(&[1, 2, 3, 700]).unwrap();
    index.flush().unwrap();
    insert_batch(&index, 12);
    drop(index);
    db
}

fn file_named(db: &Path, prefix: &str) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(db)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    names.sort();
    names.into_iter().next().unwrap_or_else(|| panic!("no {prefix}* in {}", db.display()))
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn verify_passes_a_sound_database_and_names_the_file_on_each_kind_of_damage() {
    let dir = scratch("verify");
    let db = sample(&dir);
    let report: serde_json::Value = serde_json::from_str(&ok(&["verify", db.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(report["sound"], true, "{report}");
    let files: Vec<&str> = report["files"].as_array().unwrap().iter().map(|f| f["file"].as_str().unwrap()).collect();
    for prefix in ["MANIFEST", "segment-", "deleted-", "wal-"] {
        assert!(files.iter().any(|f| f.starts_with(prefix)), "{prefix} not checked: {files:?}");
    }
    assert!(report["segments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["unreachable"] == 0 && s["links"].as_u64() > Some(0)));

    // Each kind of damage, on a fresh copy: (file, how, what the message must name).
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 6] = [
        ("segment-", |p| flip(p, 3 * 4096 + 100)), // inside a section
        ("segment-", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len / 2).unwrap()
        }),
        ("MANIFEST", |p| flip(p, 20)),
        ("deleted-", |p| flip(p, 40)),
        ("growing-", |p| flip(p, 30)), // the header
        ("segment-", |p| std::fs::remove_file(p).unwrap()),
    ];
    for (n, (prefix, damage)) in damages.iter().enumerate() {
        let copy = dir.join(format!("copy-{n}"));
        ok(&["backup", db.to_str().unwrap(), copy.to_str().unwrap()]);
        let victim = file_named(&copy, prefix);
        damage(&victim);
        let out = omendb(&["verify", copy.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "damage {n} to {}: {stderr}", victim.display());
        let name = victim.file_name().unwrap().to_string_lossy().into_owned();
        assert!(stderr.contains(&name), "damage {n}: {stderr:?} does not name {name}");
    }
    // A damaged log record with an intact one after it is refused; a torn tail is only reported.
    let copy = dir.join("copy-log");
    ok(&["backup", db.to_str().unwrap(), copy.to_str().unwrap()]);
    {
        let index = Index::open(&copy, Options { create: false, ..options() }).unwrap();
        // Two records (too few vectors to seal a segment), kept in the log: forgotten, the index
        // never runs the checkpoint that closing would.
        for id in [90_000, 90_001] {
            index.insert(id, &vector_of(id)).unwrap();
        }
        std::mem::forget(index);
    }
    let log = file_named(&copy, "wal-");
    flip(&log, 32 + 20);
    let out = omendb(&["verify", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wal-"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_backup_taken_while_another_writer_inserts_holds_a_prefix_of_its_batches() {
    let dir = scratch("backup");
    let db = dir.join("db");
    let index = Arc::new(Index::open(&db, options()).unwrap());
    insert_batch(&index, 0);
    let acknowledged = Arc::new(AtomicUsize::new(1));
    let total = 150;
    let writer = {
        let (index, acknowledged) = (index.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            for number in 1..total {
                insert_batch(&index, number);
                acknowledged.store(number + 1, SeqCst);
            }
        })
    };
    let mut copies = Vec::new();
    while acknowledged.load(SeqCst) < total && copies.len() < 4 {
        let copy = dir.join(format!("copy-{}", copies.len()));
        let before = acknowledged.load(SeqCst);
        ok(&["backup", db.to_str().unwrap(), copy.to_str().unwrap()]);
        copies.push((copy, before));
    }
    writer.join().unwrap();
    assert!(!copies.is_empty());
    for (copy, _before) in &copies {
        // The backup opens the database read-only beside the writer: it holds what that opening
        // read, a prefix of whole batches.
        let backup = Index::open(copy, Options { create: false, read_only: true, ..options() }).unwrap();
        let batches = backup.len() / BATCH;
        assert_eq!(backup.len() % BATCH, 0, "{}: a partial batch", copy.display());
        assert!(batches >= 1 && batches <= total);
        let ids: Vec<u64> = (0..backup.len() as u64).collect();
        let (mut vectors, mut found) = (vec![0.0; ids.len() * DIM], vec![false; ids.len()]);
        assert_eq!(backup.get(&ids, &mut vectors, &mut found).unwrap(), ids.len(), "{}", copy.display());
        assert!(ids.iter().zip(vectors.chunks_exact(DIM)).all(|(&id, row)| row == vector_of(id).as_slice()));
        ok(&["verify", copy.to_str().unwrap()]);
    }
    // An incremental backup links the segments the last one holds; bad destinations fail.
    let last = &copies.last().unwrap().0;
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "backup",
        db.to_str().unwrap(),
        dir.join("incremental").to_str().unwrap(),
        "--incremental",
        last.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert!(report["bytes_linked"].as_u64().unwrap() > 0, "{report}");
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = omendb(&["backup", db.to_str().unwrap(), blocker.join("dest").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dest"));
    let out = omendb(&["backup", db.to_str().unwrap(), last.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a backup never writes into a non-empty directory");
    drop(index);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_reports_the_recall_the_library_computes() {
    let dir = scratch("bench");
    let n = 2_000;
    let write = |path: &Path, ids: std::ops::Range<u64>| {
        let bytes: Vec<u8> = ids
            .flat_map(|id| {
                (DIM as u32).to_le_bytes().into_iter().chain(vector_of(id).into_iter().flat_map(f32::to_le_bytes))
            })
            .collect();
        std::fs::write(path, bytes).unwrap();
    };
    let (base, queries) = (dir.join("base.fvecs"), dir.join("queries.fvecs"));
    write(&base, 0..n);
    write(&queries, 1_000_000..1_000_100);
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "bench",
        "--base",
        base.to_str().unwrap(),
        "--queries",
        queries.to_str().unwrap(),
        "--m",
        "6",
        "--ef-construction",
        "20",
        "--ef",
        "4,8",
        "--threads",
        "1",
        "--json",
    ]))
    .unwrap();

    // The same build on one thread is deterministic: the library's recall must match exactly.
    let index = Index::new(Options { m: 6, ef_construction: 20, threads: 1, ..Options::new(DIM, Metric::L2) }).unwrap();
    let vectors: Vec<f32> = (0..n).flat_map(vector_of).collect();
    index.insert_batch(&(0..n).collect::<Vec<_>>(), &vectors).unwrap();
    let query_vectors: Vec<f32> = (1_000_000..1_000_100).flat_map(vector_of).collect();
    let exact = SearchParams { plan: Plan::Exact, ..SearchParams::default() };
    let truth = index.search_batch(&query_vectors, 10, exact, 1).unwrap();
    for (row, ef) in report["results"].as_array().unwrap().iter().zip([4usize, 8]) {
        let found = index.search_batch(&query_vectors, 10, ef, 1).unwrap();
        let hits: usize =
            found.iter().zip(&truth).map(|(f, t)| f.iter().filter(|h| t.iter().any(|x| x.id == h.id)).count()).sum();
        let recall = hits as f64 / (truth.len() * 10) as f64;
        assert_eq!(row["recall"].as_f64().unwrap(), recall, "ef {ef}: {row}");
        assert!(recall < 1.0, "ef {ef} is too wide to tell anything apart");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
