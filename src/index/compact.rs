//! Compaction: rewriting segments without their deleted vectors, so memory and disk come back;
//! on request, and in the background once a segment's deleted fraction passes the threshold.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;

use super::{Index, Shared};
use crate::error::Result;

/// Held while a compaction runs.
pub(super) type CompactionLock = Mutex<()>;

impl Index {
    /// Rewrites every segment that holds deleted vectors without them, merges sealed segments
    /// less than half full, and rebuilds as one batch each segment of 262,144 vectors or more
    /// that was filled in batches none of which held half of it; then checkpoints a database (new
    /// segment files, one manifest replacement; the old files are removed, and their memory
    /// returns once no search holds them). Returns when done. A growing segment with deletions,
    /// or filled in batches so, is sealed first.
    ///
    /// A segment filled in batches keeps them in the order they came in, where one batch is
    /// linked and numbered to keep nearby vectors together: on 1M clustered 128-d vectors
    /// inserted 1,000 at a time, the rebuilt segment answered 10-15% more queries (see
    /// `REBUILD_FROM` in `segment::growing`). Only batches inserted since the index was opened
    /// count: what a segment held when it was read from its file counts as one batch.
    ///
    /// The rebuild runs without the writer lock: searches, inserts, upserts and deletes go on
    /// meanwhile (deletes of rewritten vectors are carried over), and only the final swap and
    /// checkpoint hold it. A crash at any moment reopens to exactly the acknowledged contents.
    /// One compaction runs at a time; the background one (see `Options::compact_threshold`) is
    /// the same.
    pub fn compact(&self) -> Result<()> {
        self.shared.compact()
    }

    /// Wakes the background compactor when a segment's deleted fraction passed the threshold.
    pub(super) fn compact_if_due(&self) {
        if let Some(compactor) = &self.compactor {
            if self.shared.compaction_due() {
                let _ = compactor.wake.send(());
            }
        }
    }
}

impl Shared {
    /// Whether some segment holds more than `Options::compact_threshold` deleted vectors.
    fn compaction_due(&self) -> bool {
        let threshold = self.engine.options.compact_threshold;
        let set = self.snapshot();
        let due = |deleted: usize, len: usize| threshold > 0.0 && deleted as f64 > threshold * len.max(1) as f64;
        due(set.growing.tombstones().count(), set.growing.len())
            || set.sealed.iter().any(|s| due(s.tombstones().count(), s.len()))
    }

    fn compact(&self) -> Result<()> {
        let _one_at_a_time = self.compaction.lock().unwrap_or_else(PoisonError::into_inner);
        let engine = &self.engine;
        let (snapshot, plan, first_ordinal) = {
            let mut writer = self.writer();
            if let Some(store) = &self.store {
                store.check_writable()?;
            }
            let current = self.snapshot();
            if current.growing.tombstones().count() > 0 || current.growing.filled_in_batches() {
                // Node numbers and deletions stay, so the id map needs no change.
                let sealed = engine.pool.install(|| current.with_growing_sealed(&engine.layout, writer.next_ordinal));
                writer.next_ordinal += 1;
                *self.segments.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(sealed);
            }
            let snapshot = self.snapshot();
            let Some(plan) = snapshot.compaction_plan(&engine.layout) else { return Ok(()) };
            let first_ordinal = writer.next_ordinal;
            writer.next_ordinal += plan.segments(&engine.layout) as u32;
            (snapshot, plan, first_ordinal)
        };
        // Half the index's threads: searches keep the rest (on two cores a compaction on both
        // halved the queries/s beside it).
        let threads = (engine.pool.current_num_threads() / 2).max(1);
        let pool = engine.pool_of(threads)?;
        let rebuilt = pool.install(|| snapshot.rebuild(&plan, &engine.layout, first_ordinal));
        let writer = self.writer();
        {
            // Moved ids and the segments change together (see `Index::get`); an id whose vector
            // was replaced meanwhile already points elsewhere and keeps that.
            let mut map = self.ids().write().unwrap_or_else(PoisonError::into_inner);
            let current = self.snapshot();
            let compacted = current.with_rebuilt(&plan, &rebuilt);
            *self.segments.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(compacted);
            map.record_moves(&rebuilt.ids, &rebuilt.sources, &rebuilt.placements);
        }
        match &self.store {
            Some(store) => self.checkpoint(store, &writer),
            None => Ok(()),
        }
    }
}

/// The background compaction thread: woken after a delete or upsert leaves a segment past the
/// threshold; holds the index only weakly, and stops when the index is dropped.
pub(super) struct Compactor {
    wake: Sender<()>,
    thread: JoinHandle<()>,
}

impl Compactor {
    /// Starts the thread; `None` when the system refuses one (compaction then runs only when
    /// called).
    pub(super) fn start(shared: &Arc<Shared>) -> Option<Compactor> {
        let (wake, woken) = mpsc::channel::<()>();
        let shared: Weak<Shared> = Arc::downgrade(shared);
        let thread = std::thread::Builder::new()
            .name("omendb-compact".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    while woken.try_recv().is_ok() {}
                    let Some(shared) = shared.upgrade() else { return };
                    // A failure leaves the database as it was; the next call of compact() reports it.
                    let _ = shared.compaction_due().then(|| shared.compact());
                }
            })
            .ok()?;
        Some(Compactor { wake, thread })
    }

    /// Stops the thread after the compaction it runs, if any.
    pub(super) fn stop(self) {
        // Closing the channel ends the thread's loop.
        drop(self.wake);
        let _ = self.thread.join();
    }
}
