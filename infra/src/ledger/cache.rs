//! Recently used aggregates, so that a command on a stream this process has just read or written
//! does not load it from the database again (issue 15).
//!
//! Bounded (least recently used go first) and never trusted: an entry is a state and the version
//! it was folded at, and the append that follows a cached load still expects that version. If
//! another process appended meanwhile, the append loses with a version conflict, and
//! [`super::Ledger::execute`] decides again on the stream loaded from the ledger. Aggregates whose
//! decisions read personal data ([`domain::Aggregate::READS_PERSONAL_DATA`]) are never cached, so
//! an erasure leaves no opened copy behind.

use domain::Aggregate;
use std::{any::Any, sync::Arc};
use uuid::Uuid;

use super::Loaded;

/// A cached state: its version and the state (of the aggregate type the stream holds).
#[derive(Clone)]
struct Entry {
    version: i64,
    state: Arc<dyn Any + Send + Sync>,
}

/// The cache, shared by the clones of a [`super::Ledger`].
#[derive(Clone)]
pub struct AggregateCache {
    entries: Option<moka::sync::Cache<Uuid, Entry>>,
}

impl std::fmt::Debug for AggregateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateCache")
            .field("entries", &self.entries.as_ref().map(|c| c.entry_count()))
            .finish()
    }
}

impl AggregateCache {
    /// Streams kept by default.
    pub const DEFAULT_CAPACITY: u64 = 10_000;

    /// A cache of at most `capacity` streams (0: none kept).
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: (capacity > 0).then(|| moka::sync::Cache::new(capacity)),
        }
    }

    /// The cached state of `stream_id`, if it is there and of aggregate `A`.
    pub fn get<A: Aggregate>(&self, stream_id: Uuid) -> Option<Loaded<A>> {
        if A::READS_PERSONAL_DATA {
            return None;
        }
        let entry = self.entries.as_ref()?.get(&stream_id)?;
        let state = entry.state.downcast_ref::<A>()?.clone();
        metrics::counter!("workup_aggregate_cache_hits_total").increment(1);
        Some(Loaded {
            state,
            version: entry.version,
        })
    }

    /// Remember `loaded` as the state of `stream_id`.
    pub fn put<A: Aggregate>(&self, stream_id: Uuid, loaded: Loaded<A>) {
        if A::READS_PERSONAL_DATA || loaded.version == 0 {
            return;
        }
        if let Some(entries) = &self.entries {
            entries.insert(
                stream_id,
                Entry {
                    version: loaded.version,
                    state: Arc::new(loaded.state),
                },
            );
        }
    }

    /// Forget `stream_id` (its cached state lost a race, or its append's outcome is unknown).
    pub fn forget(&self, stream_id: Uuid) {
        if let Some(entries) = &self.entries {
            entries.invalidate(&stream_id);
        }
    }
}
