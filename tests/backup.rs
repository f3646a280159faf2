//! Online backups: taken while inserts, deletes and checkpoints run, each opens as the database
//! at one moment; incremental backups link what an earlier one holds; bad destinations change
//! nothing; read-only openings beside a checkpointing writer see it at one moment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;

use common::Rng;
use omendb::{Error, Index, Metric, Options};

const DIM: usize = 8;
const BATCH: usize = 50;

fn options() -> Options {
    let mut options = Options::new(DIM, Metric::L2);
    options.m = 8;
    options.ef_construction = 40;
    // Small segments: seals, and so checkpoints that replace files, happen during the backups.
    options.segment_capacity = 400;
    options.threads = 2;
    options.create = true;
    options
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omendb-backup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The vector of id `id`: a pure function, so any reader can check what it got.
fn vector_of(id: u64) -> Vec<f32> {
    let mut rng = Rng::new(id + 1);
    (0..DIM).map(|_| rng.uniform()).collect()
}

fn batch(number: usize) -> (Vec<u64>, Vec<f32>) {
    let ids: Vec<u64> = (number * BATCH..(number + 1) * BATCH).map(|i| i as u64).collect();
    let vectors = ids.iter().flat_map(|&id| vector_of(id)).collect();
    (ids, vectors)
}

fn open_read_only(dir: &Path) -> Index {
    Index::open(dir, Options { create: false, read_only: true, ..options() }).unwrap()
}

/// Asserts the backup holds exactly batches `0..n` for some n in `at_least..=at_most`, each
/// vector intact and findable; returns n.
fn check_prefix(dir: &Path, at_least: usize, at_most: usize) -> usize {
    let index = open_read_only(dir);
    assert_eq!(index.len() % BATCH, 0, "{}: a partial batch ({} vectors)", dir.display(), index.len());
    let batches = index.len() / BATCH;
    assert!(
        (at_least..=at_most).contains(&batches),
        "{}: {batches} batches, expected {at_least}..={at_most}",
        dir.display()
    );
    let ids: Vec<u64> = (0..(batches * BATCH) as u64).collect();
    let mut vectors = vec![0.0; ids.len() * DIM];
    let mut found = vec![false; ids.len()];
    assert_eq!(index.get(&ids, &mut vectors, &mut found).unwrap(), ids.len(), "every id of the prefix present");
    for (id, row) in ids.iter().zip(vectors.chunks_exact(DIM)) {
        assert_eq!(row, vector_of(*id).as_slice(), "vector of {id}");
    }
    for id in (0..ids.len() as u64).step_by(97) {
        assert_eq!(index.search(&vector_of(id), 1, 64).unwrap()[0].id, id, "{id} finds itself");
    }
    batches
}

/// A thread inserting batches `0..total` into `index` (checkpointing after each with
/// `flush`), and how many it has acknowledged.
fn insert_batches(index: &Arc<Index>, total: usize, flush: bool) -> (JoinHandle<()>, Arc<AtomicUsize>) {
    let (index, acknowledged) = (index.clone(), Arc::new(AtomicUsize::new(0)));
    let counter = acknowledged.clone();
    let writer = std::thread::spawn(move || {
        for number in 0..total {
            let (ids, vectors) = batch(number);
            index.insert_batch(&ids, &vectors).unwrap();
            if flush {
                index.flush().unwrap();
            }
            counter.store(number + 1, SeqCst);
        }
    });
    (writer, acknowledged)
}

#[test]
fn backups_taken_during_inserts_hold_a_prefix_of_the_acknowledged_batches() {
    let dir = temp_dir("live");
    let index = Arc::new(Index::open(&dir, options()).unwrap());
    let total = 200;
    let (writer, acknowledged) = insert_batches(&index, total, false);
    let mut backups = Vec::new();
    while acknowledged.load(SeqCst) < total {
        let before = acknowledged.load(SeqCst);
        let dest = temp_dir(&format!("live-copy-{}", backups.len()));
        index.backup(&dest).unwrap();
        backups.push((dest, before, acknowledged.load(SeqCst) + 1));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    writer.join().unwrap();
    assert!(backups.len() >= 2, "only {} backups ran during the inserts", backups.len());
    for (dest, before, after) in &backups {
        check_prefix(dest, *before, (*after).min(total));
        std::fs::remove_dir_all(dest).unwrap();
    }
    // And one at rest holds everything.
    let dest = temp_dir("live-final");
    index.backup(&dest).unwrap();
    assert_eq!(check_prefix(&dest, total, total), total);
    drop(index);
    for d in [dest, dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn read_only_openings_beside_a_writer_checkpointing_after_every_batch_hold_a_prefix_of_its_batches() {
    let dir = temp_dir("pinned");
    let index = Arc::new(Index::open(&dir, options()).unwrap());
    let total = 300;
    // Each checkpoint replaces the snapshot and the log an opening may be reading.
    let (writer, acknowledged) = insert_batches(&index, total, true);
    let mut openings = 0;
    while acknowledged.load(SeqCst) < total {
        check_prefix(&dir, acknowledged.load(SeqCst), total);
        openings += 1;
    }
    writer.join().unwrap();
    assert!(openings >= 2, "only {openings} openings ran beside the writer");
    drop(index);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_backup_keeps_deletes_and_upserts_and_an_incremental_one_links_what_is_unchanged() {
    let dir = temp_dir("incremental");
    let index = Index::open(&dir, options()).unwrap();
    for number in 0..40 {
        let (ids, vectors) = batch(number);
        index.insert_batch(&ids, &vectors).unwrap();
    }
    index.flush().unwrap();
    let full = temp_dir("incremental-full");
    let first = index.backup(&full).unwrap();
    assert_eq!(first.bytes_linked, 0);
    assert!(first.bytes_copied > 0 && first.files >= 3, "{first:?}");

    // A few changes: one more batch, a delete, an upsert (logged, not yet checkpointed).
    let (ids, vectors) = batch(40);
    index.insert_batch(&ids, &vectors).unwrap();
    assert_eq!(index.delete(&[3, 4]).unwrap(), 2);
    index.upsert(&[5], &vector_of(1_000_005)).unwrap();
    let next = temp_dir("incremental-next");
    let second = index.backup_incremental(&next, &full).unwrap();
    assert!(second.bytes_linked > 0, "{second:?}");
    assert!(
        second.bytes_copied * 10 < first.bytes_copied,
        "the incremental backup copied {} bytes, the full one {}",
        second.bytes_copied,
        first.bytes_copied
    );
    let copy = open_read_only(&next);
    assert_eq!(copy.len(), index.len());
    assert!(!copy.contains(3) && !copy.contains(4) && copy.contains(2_049));
    let (mut row, mut found) = (vec![0.0; DIM], [false]);
    copy.get(&[5], &mut row, &mut found).unwrap();
    assert_eq!(row, vector_of(1_000_005), "the upserted vector, not the old one");
    // The earlier backup still holds its own moment.
    assert_eq!(open_read_only(&full).len(), 40 * BATCH);
    // A read-only opening backs up what it read, again and again (its kept files are read
    // from the start each time).
    let reader = open_read_only(&full);
    for round in 0..2 {
        let again = temp_dir(&format!("incremental-again-{round}"));
        reader.backup(&again).unwrap();
        assert_eq!(open_read_only(&again).len(), 40 * BATCH);
        std::fs::remove_dir_all(again).unwrap();
    }
    drop(reader);
    drop((copy, index));
    for d in [full, next, dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn an_in_memory_index_backs_up_as_a_new_database() {
    let index = Index::new(Options { create: false, ..options() }).unwrap();
    for number in 0..20 {
        let (ids, vectors) = batch(number);
        index.insert_batch(&ids, &vectors).unwrap();
    }
    index.delete(&[7]).unwrap();
    let dest = temp_dir("memory");
    let report = index.backup(&dest).unwrap();
    assert!(report.bytes_copied > 0);
    let copy = open_read_only(&dest);
    assert_eq!(copy.len(), index.len());
    assert!(!copy.contains(7));
    let query = vector_of(12_345);
    assert_eq!(copy.search(&query, 10, 200).unwrap(), index.search(&query, 10, 200).unwrap());
    drop(copy);
    std::fs::remove_dir_all(&dest).unwrap();
    assert!(!Path::new(&format!("{}.partial", dest.display())).exists());
}

#[test]
fn bad_destinations_are_refused_and_change_nothing() {
    let dir = temp_dir("bad");
    let index = Index::open(&dir, options()).unwrap();
    let (ids, vectors) = batch(0);
    index.insert_batch(&ids, &vectors).unwrap();

    let occupied = temp_dir("bad-occupied");
    std::fs::create_dir_all(&occupied).unwrap();
    std::fs::write(occupied.join("notes.txt"), b"keep me").unwrap();
    assert!(matches!(index.backup(&occupied), Err(Error::InvalidArgument(_))));
    assert_eq!(std::fs::read(occupied.join("notes.txt")).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&occupied).unwrap().count(), 1);

    // A destination under a regular file cannot be created.
    let under_file = occupied.join("notes.txt").join("backup");
    assert!(matches!(index.backup(&under_file), Err(Error::Io { .. })), "{:?}", index.backup(&under_file));

    // An earlier backup that is not a database.
    let dest = temp_dir("bad-dest");
    assert!(matches!(index.backup_incremental(&dest, &occupied), Err(Error::NotFound { .. })));
    assert!(!dest.exists());

    // Files without their manifest (what an interrupted backup leaves) never open as a database.
    index.backup(&dest).unwrap();
    std::fs::remove_file(dest.join("MANIFEST")).unwrap();
    assert!(Index::open(&dest, Options { create: false, ..options() }).is_err());
    assert!(matches!(Index::open(&dest, options()), Err(Error::Corrupt { .. })));
    assert_eq!(index.len(), BATCH);
    drop(index);
    for d in [occupied, dest, dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
