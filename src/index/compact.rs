//! Compaction: rewriting segments without their deleted vectors, so memory and disk come back.

use std::sync::{Arc, PoisonError};

use super::Index;
use crate::error::Result;

impl Index {
    /// Rewrites every segment that holds deleted vectors without them, and merges sealed segments
    /// less than half full, then checkpoints a database (new segment files, one manifest
    /// replacement; the old files are removed, and their memory returns once no search holds
    /// them). Returns when done. Searches run on meanwhile, on the segments as they were; inserts
    /// and deletes wait. A crash at any moment reopens to exactly the acknowledged contents.
    pub fn compact(&self) -> Result<()> {
        let mut writer = self.writer();
        if let Some(store) = &self.store {
            store.check_writable()?;
        }
        let current = self.snapshot();
        let engine = &self.engine;
        let Some((applied, ids)) = engine.pool.install(|| current.compacted(&engine.layout, writer.next_ordinal))
        else {
            return Ok(());
        };
        {
            // Moved ids and the segments change together (see `Index::get`).
            let mut map = self.ids().write().unwrap_or_else(PoisonError::into_inner);
            *self.segments.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(applied.set);
            map.record(&ids, &applied.placements);
        }
        writer.next_ordinal = applied.next_ordinal;
        match &self.store {
            Some(store) => self.checkpoint(store, &writer),
            None => Ok(()),
        }
    }
}
