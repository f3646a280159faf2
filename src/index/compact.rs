//! Compaction: rewriting segments without their deleted vectors, so memory and disk come back.

use std::sync::{Arc, Mutex, PoisonError};

use super::Index;
use crate::error::Result;

impl Index {
    /// Rewrites every segment that holds deleted vectors without them, and merges sealed segments
    /// less than half full, then checkpoints a database (new segment files, one manifest
    /// replacement; the old files are removed, and their memory returns once no search holds
    /// them). Returns when done. A growing segment with deletions is sealed first.
    ///
    /// The rebuild runs without the writer lock: searches, inserts, upserts and deletes go on
    /// meanwhile (deletes of rewritten vectors are carried over), and only the final swap and
    /// checkpoint hold it. A crash at any moment reopens to exactly the acknowledged contents.
    /// One compaction runs at a time.
    pub fn compact(&self) -> Result<()> {
        let _one_at_a_time = self.compaction.lock().unwrap_or_else(PoisonError::into_inner);
        let engine = &self.engine;
        let (snapshot, plan, first_ordinal) = {
            let mut writer = self.writer();
            if let Some(store) = &self.store {
                store.check_writable()?;
            }
            let current = self.snapshot();
            if current.growing.tombstones().count() > 0 {
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

/// Held while a compaction runs.
pub(super) type CompactionLock = Mutex<()>;
