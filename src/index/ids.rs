//! The external id → (segment, node) map. Node → external id is each segment's own `ids` array,
//! so both directions are O(1).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};
use crate::segment::{Placement, SegmentSet};

/// Where a vector lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u32,
    pub node: u32,
}

/// Hashes one u64 with a strong 64-bit mixer (the murmur3 finaliser): ids chosen by callers are
/// often sequential, and SipHash would cost more than the rest of the lookup.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        z ^ (z >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

/// The id that marks an empty result slot (`OMEN_NO_ID`), never a vector's.
pub(crate) const NO_ID: u64 = u64::MAX;

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
pub(crate) struct IdMap {
    locations: FastMap<u64, Location>,
}

impl IdMap {
    pub(crate) fn get(&self, id: u64) -> Option<Location> {
        self.locations.get(&id).copied()
    }

    /// Fails on the first id already present or repeated within `ids`.
    pub(crate) fn check_new(&self, ids: &[u64]) -> Result<()> {
        self.check(ids, false)
    }

    /// Fails on the first id repeated within `ids` (or the reserved one); present ids are fine.
    pub(crate) fn check_distinct(&self, ids: &[u64]) -> Result<()> {
        self.check(ids, true)
    }

    fn check(&self, ids: &[u64], present_allowed: bool) -> Result<()> {
        let mut seen = FastSet::with_hasher(Default::default());
        seen.try_reserve(ids.len())
            .map_err(|_| Error::OutOfMemory(format!("no room to check a batch of {} ids", ids.len())))?;
        for &id in ids {
            if id == NO_ID {
                return Err(Error::InvalidArgument(format!(
                    "id {NO_ID} is reserved: it marks result slots that hold no hit (OMEN_NO_ID)"
                )));
            }
            if !present_allowed && self.locations.contains_key(&id) {
                return Err(Error::DuplicateId { id, in_batch: false });
            }
            if !seen.insert(id) {
                return Err(Error::DuplicateId { id, in_batch: true });
            }
        }
        Ok(())
    }

    /// The map of every vector in `set`.
    pub(crate) fn of(set: &SegmentSet) -> Self {
        let mut locations = FastMap::with_capacity_and_hasher(set.len(), Default::default());
        for segment in &set.sealed {
            for (node, &id) in segment.ids().iter().enumerate() {
                if !segment.tombstones().is_deleted(node as u32) {
                    locations.insert(id, Location { segment: segment.ordinal(), node: node as u32 });
                }
            }
        }
        set.growing.for_each_id(|node, id| {
            locations.insert(id, Location { segment: set.growing.ordinal(), node });
        });
        IdMap { locations }
    }

    /// Forgets `id`; where it was, if present.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Location> {
        self.locations.remove(&id)
    }

    /// Records where a batch's `ids` went.
    pub(crate) fn record(&mut self, ids: &[u64], placements: &[Placement]) {
        for placement in placements {
            for (row, node) in placement.nodes() {
                self.locations.insert(ids[row], Location { segment: placement.ordinal, node });
            }
        }
    }

    /// Records where a compaction moved `ids`: row `r` was node `sources[r]` (segment, node) and
    /// became a node of the placement holding `r`. Ids found elsewhere (replaced or deleted
    /// since the rows were read) are left alone.
    pub(crate) fn record_moves(&mut self, ids: &[u64], sources: &[(u32, u32)], placements: &[Placement]) {
        for placement in placements {
            for (row, new_node) in placement.nodes() {
                let (segment, node) = sources[row];
                if let Some(location) = self.locations.get_mut(&ids[row]) {
                    if *location == (Location { segment, node }) {
                        *location = Location { segment: placement.ordinal, node: new_node };
                    }
                }
            }
        }
    }

    /// Heap bytes of the map (its table; the hash map's control bytes add about 1/16).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.locations.capacity() * (size_of::<u64>() + size_of::<Location>() + 1)
    }
}
