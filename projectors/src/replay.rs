//! Replaying the ledger into a read model (DESIGN §8): the projector's own handlers, applied to
//! the ledger's events read in commit-safe order ([`infra::ledger::scan`]), batch after batch
//! (constant memory), the next batch read while the current one is applied. Within a batch the
//! events of different streams are applied concurrently, those of one stream in order.
//! Nothing is published: sagas and other consumers never see a replay.

use domain::BoundedContext;
use futures::future::try_join_all;
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{Ledger, LedgerError, RecordedEvent, ScanCursor, ScanFilter, TransactionHorizon},
};
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};
use uuid::Uuid;

use crate::catalog::Projector;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The ledger could not be read.
    #[error("could not read the ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The projector failed on an event (after its own retries).
    #[error("the projector failed on event {position} ({event_type} of {stream_id} v{version}): {source}")]
    Apply {
        /// Its global position.
        position: i64,
        /// Its type.
        event_type: String,
        /// Its stream.
        stream_id: Uuid,
        /// Its version.
        version: i64,
        /// The handler's error.
        source: HandlerError,
    },
}

/// How a replay reads and applies.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Events read per batch.
    pub batch: i64,
    /// Streams applied at once within a batch.
    pub lanes: usize,
    /// Attempts per event before the replay fails.
    pub attempts: u32,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            batch: 2_000,
            lanes: 32,
            attempts: 5,
        }
    }
}

/// Where a replay stands, for its progress display.
#[derive(Debug, Clone, Copy)]
pub struct ReplayProgress {
    /// Events applied so far.
    pub applied: u64,
    /// The cursor after the last batch.
    pub cursor: ScanCursor,
}

/// The events of `context`'s read model (of every context it is built from:
/// [`crate::catalog::sources`]) from `from_position` on.
pub fn filter(context: BoundedContext, from_position: i64) -> ScanFilter {
    ScanFilter {
        stream_types: crate::catalog::sources(context)
            .iter()
            .flat_map(|source| source.stream_types())
            .map(|s| (*s).to_owned())
            .collect(),
        from_position,
    }
}

/// Apply every event `filter` selects after `cursor` to `projector`, until every transaction
/// that had started when this was called is read (later ones are left to the next call: with a
/// steady stream of commands there is always more). Calls `progress` after each batch. Returns
/// where it stopped, to go on from there later.
pub async fn replay(
    ledger: &Ledger,
    projector: &Projector,
    filter: &ScanFilter,
    mut cursor: ScanCursor,
    options: &ReplayOptions,
    mut progress: impl FnMut(ReplayProgress),
) -> Result<ScanCursor, ReplayError> {
    let started = ledger.transaction_horizon().await?.next;
    let mut applied = 0u64;
    let mut fetched = fetch(ledger, filter, cursor, options.batch).await?;
    loop {
        let (horizon, batch) = fetched;
        // Every transaction that had started was over before this batch was read, and the
        // batch holds the rest of theirs (it is not full, or it reaches a later transaction).
        let done = horizon.oldest_running >= started
            && ((batch.len() as i64) < options.batch
                || batch.last().is_some_and(|(c, _)| c.transaction >= started));
        let next_cursor = batch.last().map_or(cursor, |(c, _)| *c);
        if batch.is_empty() && !done {
            // Transactions still running: wait for them.
            tokio::time::sleep(Duration::from_millis(20)).await;
            fetched = fetch(ledger, filter, cursor, options.batch).await?;
            continue;
        }
        let next = if done {
            apply(projector, &batch, options).await?;
            None
        } else {
            // The next batch is read while this one is applied.
            let (next, applied) = tokio::join!(
                fetch(ledger, filter, next_cursor, options.batch),
                apply(projector, &batch, options)
            );
            applied?;
            Some(next?)
        };
        applied += batch.len() as u64;
        cursor = next_cursor;
        progress(ReplayProgress { applied, cursor });
        match next {
            Some(next) => fetched = next,
            None => return Ok(cursor),
        }
    }
}

/// The transaction horizon, then a batch read after it.
async fn fetch(
    ledger: &Ledger,
    filter: &ScanFilter,
    cursor: ScanCursor,
    limit: i64,
) -> Result<(TransactionHorizon, Vec<(ScanCursor, RecordedEvent)>), ReplayError> {
    let horizon = ledger.transaction_horizon().await?;
    Ok((horizon, ledger.scan(filter, cursor, limit).await?))
}

/// Apply one batch: streams in parallel lanes, each stream's events in order.
async fn apply(
    projector: &Projector,
    batch: &[(ScanCursor, RecordedEvent)],
    options: &ReplayOptions,
) -> Result<(), ReplayError> {
    let mut lanes: HashMap<usize, Vec<&RecordedEvent>> = HashMap::new();
    for (_, event) in batch {
        let lane = (event.stream_id.as_u128() % options.lanes.max(1) as u128) as usize;
        lanes.entry(lane).or_default().push(event);
    }
    try_join_all(lanes.into_values().map(|events| async move {
        for event in events {
            apply_one(projector, event, options.attempts).await?;
        }
        Ok::<_, ReplayError>(())
    }))
    .await?;
    Ok(())
}

/// Apply one event, retrying a failure with a short backoff.
async fn apply_one(projector: &Projector, event: &RecordedEvent, attempts: u32) -> Result<(), ReplayError> {
    let mut attempt = 1;
    let started = Instant::now();
    loop {
        match projector.handle(event).await {
            Ok(()) => return Ok(()),
            Err(source) if attempt >= attempts => {
                return Err(ReplayError::Apply {
                    position: event.global_position,
                    event_type: event.event_type.clone(),
                    stream_id: event.stream_id,
                    version: event.version,
                    source,
                });
            }
            Err(error) => {
                tracing::warn!(position = event.global_position, %error, attempt, elapsed = ?started.elapsed(), "replay: event failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
        }
    }
}
