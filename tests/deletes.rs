//! Deletes, upserts, get and compaction against a model: thousands of random steps on a durable
//! database, checked after every one against a plain map of live id → vector.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{exact_distance, Rng};
use omendb::{Error, Index, Metric, Options};

const DIM: usize = 6;

fn options(metric: Metric) -> Options {
    let mut options = Options::new(DIM, metric);
    options.m = 6;
    options.ef_construction = 40;
    options.segment_capacity = 150;
    options.threads = 2;
    options
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omendb-deletes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn random_vector(rng: &mut Rng) -> Vec<f32> {
    (0..DIM).map(|_| rng.uniform() * 2.0 - 1.0).collect()
}

/// What the index stores for `vector`: normalised under cosine.
fn stored(metric: Metric, vector: &[f32]) -> Vec<f32> {
    if metric != Metric::Cosine {
        return vector.to_vec();
    }
    let norm = vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    vector.iter().map(|&x| (f64::from(x) / norm) as f32).collect()
}

/// Checks everything a reader can see against `model`.
fn check(index: &Index, model: &BTreeMap<u64, Vec<f32>>, metric: Metric, rng: &mut Rng, step: &str) {
    assert_eq!(index.len(), model.len(), "{step}: len");
    let query = random_vector(rng);
    // Exhaustive (the beam is wider than the index): exactly the brute-force answer.
    let k = 10;
    let hits = index.search(&query, k, 4096).unwrap();
    let mut truth: Vec<(f64, u64)> = model.iter().map(|(&id, v)| (exact_distance(metric, &query, v), id)).collect();
    truth.sort_by(|a, b| a.0.total_cmp(&b.0));
    truth.truncate(k);
    assert_eq!(hits.len(), truth.len(), "{step}: result count");
    for (hit, (distance, id)) in hits.iter().zip(&truth) {
        // Ties aside (random vectors have none), the same ids in the same order.
        assert!((f64::from(hit.distance) - distance).abs() < 1e-4, "{step}: {hits:?} vs {truth:?}");
        assert!(hit.id == *id || (f64::from(hit.distance) - distance).abs() < 1e-6, "{step}: {hits:?} vs {truth:?}");
    }
    // A narrow beam: every hit live, at the distance of its current vector (never an old one).
    for hit in index.search(&query, k, 12).unwrap() {
        let vector = model.get(&hit.id).unwrap_or_else(|| panic!("{step}: returned deleted id {}", hit.id));
        assert!(
            (f64::from(hit.distance) - exact_distance(metric, &query, vector)).abs() < 1e-4,
            "{step}: stale vector"
        );
    }
    // get: present ids give their stored vector, absent ones a zero row.
    let ids: Vec<u64> = (0..8).map(|_| rng.next_u64() % 600).collect();
    let (mut out, mut found) = (vec![1.0f32; ids.len() * DIM], vec![false; ids.len()]);
    let count = index.get(&ids, &mut out, &mut found).unwrap();
    assert_eq!(count, found.iter().filter(|&&f| f).count());
    for ((id, row), found) in ids.iter().zip(out.chunks_exact(DIM)).zip(&found) {
        match model.get(id) {
            Some(vector) => {
                assert!(found, "{step}: get({id}) not found");
                // Exactly the vector given; under cosine normalised as the library does (to an ulp).
                let close =
                    row.iter().zip(vector).all(|(a, b)| a == b || (metric == Metric::Cosine && (a - b).abs() < 1e-6));
                assert!(close, "{step}: get({id}) = {row:?}, stored {vector:?}");
            }
            None => assert!(!found && row.iter().all(|&x| x == 0.0), "{step}: get({id}) of an absent id"),
        }
    }
}

fn model_run(metric: Metric, steps: usize, seed: u64) {
    let dir = temp_dir(&format!("model-{metric}"));
    let mut index = Index::open(&dir, options(metric)).unwrap();
    let mut model: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let mut rng = Rng::new(seed);
    let mut counts = BTreeMap::<&str, usize>::new();
    for step in 0..steps {
        let op = match rng.next_u64() % 100 {
            0..=29 => "insert",
            30..=49 => "upsert",
            50..=74 => "delete",
            75..=77 => "compact",
            78..=79 => "flush",
            80 => "reopen",
            _ => "check",
        };
        *counts.entry(op).or_default() += 1;
        let label = format!("step {step} ({op}, seed {seed})");
        match op {
            "insert" => {
                let n = 1 + rng.next_u64() as usize % 40;
                let ids: Vec<u64> =
                    (0..n * 3).map(|_| rng.next_u64() % 600).filter(|id| !model.contains_key(id)).collect();
                let mut ids: Vec<u64> =
                    ids.into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().take(n).collect();
                rng_shuffle(&mut ids, &mut rng);
                let vectors: Vec<Vec<f32>> = ids.iter().map(|_| random_vector(&mut rng)).collect();
                index.insert_batch(&ids, &vectors.concat()).unwrap();
                for (id, v) in ids.iter().zip(vectors) {
                    model.insert(*id, stored(metric, &v));
                }
            }
            "upsert" => {
                let n = 1 + rng.next_u64() as usize % 30;
                let ids: Vec<u64> = (0..n)
                    .map(|_| rng.next_u64() % 600)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let vectors: Vec<Vec<f32>> = ids.iter().map(|_| random_vector(&mut rng)).collect();
                index.upsert(&ids, &vectors.concat()).unwrap();
                for (id, v) in ids.iter().zip(vectors) {
                    model.insert(*id, stored(metric, &v));
                }
            }
            "delete" => {
                let n = 1 + rng.next_u64() as usize % 60;
                let ids: Vec<u64> = (0..n)
                    .map(|_| rng.next_u64() % 600)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let present = ids.iter().filter(|id| model.contains_key(id)).count();
                assert_eq!(index.delete(&ids).unwrap(), present, "{label}");
                ids.iter().for_each(|id| drop(model.remove(id)));
            }
            "compact" => {
                index.compact().unwrap();
                assert_eq!(index.stats().deleted, 0, "{label}: compaction left deleted vectors");
            }
            "flush" => index.flush().unwrap(),
            "reopen" => {
                drop(index);
                index = Index::open(&dir, options(metric)).unwrap();
            }
            _ => {}
        }
        check(&index, &model, metric, &mut rng, &label);
    }
    let stats = index.stats();
    println!(
        "{metric}: {counts:?}; final {} live, {} deleted in {} segments",
        stats.vectors, stats.deleted, stats.segments
    );
    assert!(counts.values().all(|&c| c > 0) && counts.len() == 7, "{counts:?}");
    drop(index);
    let _ = std::fs::remove_dir_all(dir);
}

fn rng_shuffle(ids: &mut [u64], rng: &mut Rng) {
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.next_u64() as usize % (i + 1));
    }
}

#[test]
fn random_changes_match_a_model_under_l2() {
    model_run(Metric::L2, 1500, 1);
}

#[test]
fn random_changes_match_a_model_under_cosine() {
    model_run(Metric::Cosine, 800, 2);
}

#[test]
fn bad_changes_are_refused_and_change_nothing() {
    let dir = temp_dir("bad");
    let index = Index::open(&dir, options(Metric::L2)).unwrap();
    index.insert_batch(&[1, 2, 3], &[0.5; 3 * DIM]).unwrap();
    assert!(matches!(index.delete(&[1, 1]), Err(Error::DuplicateId { id: 1, in_batch: true })));
    assert!(matches!(index.upsert(&[4, 4], &[0.5; 2 * DIM]), Err(Error::DuplicateId { id: 4, in_batch: true })));
    let mut nan = vec![0.5; 2 * DIM];
    nan[DIM + 1] = f32::NAN;
    assert!(matches!(index.upsert(&[1, 5], &nan), Err(Error::NonFinite { row: 1, .. })));
    assert!(matches!(index.upsert(&[1], &[0.5; DIM + 1]), Err(Error::DimensionMismatch(_))));
    let (mut out, mut found) = (vec![0.0; DIM], vec![false; 2]);
    assert!(index.get(&[1, 2], &mut out, &mut found).is_err());
    assert_eq!(index.len(), 3);
    assert_eq!(index.delete(&[7, 8]).unwrap(), 0, "absent ids are not an error");
    drop(index);
    let reader = Index::open(&dir, Options { read_only: true, ..options(Metric::L2) }).unwrap();
    assert!(matches!(reader.delete(&[1]), Err(Error::ReadOnly { .. })));
    assert!(matches!(reader.upsert(&[1], &[0.5; DIM]), Err(Error::ReadOnly { .. })));
    assert!(matches!(reader.compact(), Err(Error::ReadOnly { .. })));
    assert_eq!(reader.len(), 3);
    drop(reader);
    let _ = std::fs::remove_dir_all(dir);
}

/// Damaged, truncated and missing deletion files are refused by name; compaction leftovers (a
/// half-written segment, a segment no manifest names) are ignored and removed, and the database
/// opens with exactly what was acknowledged.
#[test]
fn damaged_deletion_files_and_compaction_leftovers() {
    let dir = temp_dir("damage");
    let mut rng = Rng::new(5);
    let ids: Vec<u64> = (0..400).collect();
    let vectors: Vec<f32> = (0..400 * DIM).map(|_| rng.uniform()).collect();
    // No background compaction: the deletion files are what is tested.
    let manual = Options { compact_threshold: 0.0, ..options(Metric::L2) };
    let index = Index::open(&dir, manual.clone()).unwrap();
    index.insert_batch(&ids, &vectors).unwrap();
    assert_eq!(index.delete(&(0..400).step_by(3).collect::<Vec<u64>>()).unwrap(), 134);
    drop(index);
    let files = |prefix: &str| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        found.sort();
        found
    };
    let deletion_files = files("deleted-");
    assert_eq!(deletion_files.len(), 3, "two sealed segments and the growing one have deletions");
    let expect_len = |what: &str| {
        let index = Index::open(&dir, manual.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(index.len(), 266, "{what}");
        assert!(!index.contains(0) && index.contains(1), "{what}");
    };
    expect_len("intact");
    let file = &deletion_files[0];
    let original = std::fs::read(file).unwrap();
    for at in (0..original.len()).step_by(3) {
        for damage in ["flip", "cut"] {
            let mut bytes = original.clone();
            if damage == "flip" {
                bytes[at] ^= 0x20;
            } else {
                bytes.truncate(at);
            }
            std::fs::write(file, &bytes).unwrap();
            match Index::open(&dir, manual.clone()) {
                Err(Error::Corrupt { path, .. }) => {
                    assert!(path.ends_with(&*file.file_name().unwrap().to_string_lossy()))
                }
                other => panic!("{damage} at {at}: {:?}", other.map(|i| i.len())),
            }
        }
    }
    std::fs::remove_file(file).unwrap();
    assert!(matches!(Index::open(&dir, manual.clone()), Err(Error::Io { path, .. }) if path.contains("deleted-")));
    std::fs::write(file, &original).unwrap();
    expect_len("restored");

    // A compaction cut short: a half-written segment and a finished one the manifest never named.
    let segment = &files("segment-")[0];
    std::fs::write(dir.join("segment-0000000077.omen.tmp"), &std::fs::read(segment).unwrap()[..5000]).unwrap();
    std::fs::copy(segment, dir.join("segment-0000000078.omen")).unwrap();
    expect_len("leftovers");
    assert!(files("segment-0000000077").is_empty() && files("segment-0000000078").is_empty(), "leftovers removed");

    // After a compaction: no deletion files, and what was acknowledged.
    let index = Index::open(&dir, manual.clone()).unwrap();
    index.compact().unwrap();
    drop(index);
    assert!(files("deleted-").is_empty());
    expect_len("compacted");
    let _ = std::fs::remove_dir_all(dir);
}

/// Past `compact_threshold`, a background thread compacts on its own; 0 leaves it to the caller.
#[test]
fn deletes_past_the_threshold_are_compacted_in_the_background() {
    let mut rng = Rng::new(11);
    let vectors: Vec<f32> = (0..2000 * DIM).map(|_| rng.uniform()).collect();
    let ids: Vec<u64> = (0..2000).collect();
    let doomed: Vec<u64> = (0..2000).step_by(2).collect();
    let manual = Index::new(Options { compact_threshold: 0.0, ..options(Metric::L2) }).unwrap();
    manual.insert_batch(&ids, &vectors).unwrap();
    manual.delete(&doomed).unwrap();
    let automatic = Index::new(options(Metric::L2)).unwrap();
    automatic.insert_batch(&ids, &vectors).unwrap();
    automatic.delete(&doomed).unwrap();
    // Bounded wait for the outcome (not a timing assertion): the thread compacts within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while automatic.stats().deleted > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(automatic.stats().deleted, 0, "no background compaction");
    assert_eq!(automatic.len(), 1000);
    assert_eq!(manual.stats().deleted, 1000, "compacted although the threshold is 0");
    assert!(matches!(
        Index::new(Options { compact_threshold: f64::NAN, ..options(Metric::L2) }),
        Err(Error::InvalidArgument(_))
    ));
    assert!(Index::new(Options { compact_threshold: 1.5, ..options(Metric::L2) }).is_err());
}

/// Checks that every id of `model` is stored with its vector (`get`), and that searching for a
/// sample of them finds each one at distance 0.
fn holds(index: &Index, model: &BTreeMap<u64, Vec<f32>>, step: &str) {
    assert_eq!(index.len(), model.len(), "{step}: len");
    let ids: Vec<u64> = model.keys().copied().collect();
    let (mut out, mut found) = (vec![0f32; ids.len() * DIM], vec![false; ids.len()]);
    assert_eq!(index.get(&ids, &mut out, &mut found).unwrap(), ids.len(), "{step}: get");
    for (id, row) in ids.iter().zip(out.chunks_exact(DIM)) {
        assert_eq!(row, &model[id][..], "{step}: get({id})");
    }
    for id in ids.iter().step_by(97) {
        let hits = index.search(&model[id], 1, 64).unwrap();
        assert_eq!((hits[0].id, hits[0].distance), (*id, 0.0), "{step}: search for {id}'s vector");
    }
}

/// Large batches are numbered breadth-first inside their segments (and so are the segments a
/// compaction rebuilds): ids must still lead to their vectors through get, delete, upsert,
/// compaction and reopening.
#[test]
fn large_batches_keep_each_id_with_its_vector() {
    let dir = temp_dir("large-batches");
    let options = Options { segment_capacity: 30_000, compact_threshold: 0.0, ..options(Metric::L2) };
    let mut index = Index::open(&dir, options.clone()).unwrap();
    let mut model = BTreeMap::new();
    let mut rng = Rng::new(5);
    // 10,000 into the growing segment; 20,000 more fill it (sealed), 5,000 start the next; then
    // 25,000 fill that one and 15,000 become a new segment built beside it.
    for (batch, range) in [0u64..10_000, 10_000..35_000, 35_000..75_000].into_iter().enumerate() {
        let mut ids: Vec<u64> = range.collect();
        rng_shuffle(&mut ids, &mut rng);
        let vectors: Vec<Vec<f32>> = ids.iter().map(|_| random_vector(&mut rng)).collect();
        index.insert_batch(&ids, &vectors.concat()).unwrap();
        model.extend(ids.into_iter().zip(vectors));
        holds(&index, &model, &format!("batch {batch}"));
    }
    // Most of the first segment deleted: the compaction rebuilds its 12,000 live vectors.
    let doomed: Vec<u64> = (0..30_000).filter(|id| id % 5 < 3).collect();
    assert_eq!(index.delete(&doomed).unwrap(), doomed.len());
    doomed.iter().for_each(|id| drop(model.remove(id)));
    holds(&index, &model, "deleted");
    let replaced: Vec<u64> = (40_000..50_000).collect();
    let vectors: Vec<Vec<f32>> = replaced.iter().map(|_| random_vector(&mut rng)).collect();
    index.upsert(&replaced, &vectors.concat()).unwrap();
    model.extend(replaced.into_iter().zip(vectors));
    holds(&index, &model, "upserted");
    index.compact().unwrap();
    assert_eq!(index.stats().deleted, 0);
    holds(&index, &model, "compacted");
    drop(index);
    index = Index::open(&dir, options).unwrap();
    holds(&index, &model, "reopened");
    drop(index);
    let _ = std::fs::remove_dir_all(dir);
}

/// The segments' files and vector counts, sealed ones first (the growing one last, when it
/// holds vectors).
fn segment_files(index: &Index) -> Vec<(String, usize, bool)> {
    index.segments().unwrap().into_iter().map(|s| (s.file, s.vectors, s.sealed)).collect()
}

/// A segment of 262,144 vectors or more filled in batches none of which held half of it keeps
/// the order they came in; a compaction rebuilds it as one batch (sealing a growing one first),
/// once: the rebuilt segment, one filled by a large batch, and one read from its file are left
/// alone. Every id keeps its vector throughout, and the rebuilt graph finds the true neighbours.
#[test]
fn compaction_rebuilds_segments_filled_in_batches() {
    let dir = temp_dir("rebuild");
    let options = Options { segment_capacity: 600_000, compact_threshold: 0.0, ..options(Metric::L2) };
    let mut index = Index::open(&dir, options.clone()).unwrap();
    let mut rng = Rng::new(23);
    let count = 270_000;
    let ids: Vec<u64> = (0..count).map(|i| i * 3 + 1).collect();
    let vectors: Vec<Vec<f32>> = ids.iter().map(|_| random_vector(&mut rng)).collect();
    let base = vectors.concat();
    for (ids, rows) in ids.chunks(1_000).zip(base.chunks(1_000 * DIM)) {
        index.insert_batch(ids, rows).unwrap();
    }
    let mut model: BTreeMap<u64, Vec<f32>> = ids.iter().copied().zip(vectors).collect();
    holds(&index, &model, "filled in batches");
    assert_eq!(segment_files(&index).iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(), [(count as usize, false)]);
    index.compact().unwrap();
    let rebuilt = segment_files(&index);
    assert_eq!(rebuilt.len(), 1, "{rebuilt:?}");
    assert_eq!((rebuilt[0].1, rebuilt[0].2), (count as usize, true), "sealed and rebuilt: {rebuilt:?}");
    // Only the rebuild writes a file: the growing segment, sealed, had none yet.
    assert!(!rebuilt[0].0.is_empty(), "sealed but not rebuilt: {rebuilt:?}");
    holds(&index, &model, "rebuilt");
    let queries: Vec<f32> = (0..50).flat_map(|_| random_vector(&mut rng)).collect();
    let truth = common::brute_force(Metric::L2, DIM, &base, &ids, &queries, 10);
    let recall = common::index_recall(&index, &queries, &truth, 10, 64);
    assert!(recall >= 0.95, "recall@10 at ef 64 after the rebuild: {recall}");

    // Rebuilt once: another compaction, and one after a small batch, leave it as it is.
    index.compact().unwrap();
    assert_eq!(segment_files(&index), rebuilt, "rebuilt again");
    let more: Vec<u64> = (0..1_000).map(|i| i * 3 + 2).collect();
    let rows: Vec<Vec<f32>> = more.iter().map(|_| random_vector(&mut rng)).collect();
    index.insert_batch(&more, &rows.concat()).unwrap();
    model.extend(more.into_iter().zip(rows));
    index.compact().unwrap();
    assert_eq!(segment_files(&index)[0], rebuilt[0], "rebuilt after a small batch");
    holds(&index, &model, "after a small batch");
    drop(index);

    // One batch into a new database: nothing to rebuild.
    let whole_dir = temp_dir("rebuild-whole");
    let whole = Index::open(&whole_dir, options.clone()).unwrap();
    whole.insert_batch(&ids, &base).unwrap();
    whole.compact().unwrap();
    assert_eq!(segment_files(&whole).iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(), [(count as usize, false)]);
    drop(whole);

    index = Index::open(&dir, options).unwrap();
    holds(&index, &model, "reopened");
    let reopened = segment_files(&index);
    index.compact().unwrap();
    assert_eq!(segment_files(&index), reopened, "a segment read from its file was rebuilt");
    drop(index);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(whole_dir);
}
