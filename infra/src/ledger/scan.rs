//! Reading the whole ledger in commit-safe order, for replay (DESIGN §8).
//!
//! Events are read by `(transaction id, position)` and only from transactions below the oldest
//! one still running, so a cursor never passes an event that commits later: every transaction
//! below that horizon has finished, and every transaction that starts later gets a higher id.
//! A position order would skip an event whose transaction took a lower position but committed
//! after a higher one was read.

use sqlx::Row;

use super::{Ledger, LedgerError, RecordedEvent, load::recorded_event};

/// Where a scan stands: after this (transaction id, position); `default()` = the beginning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScanCursor {
    /// The transaction id (`xid8`) of the last event read.
    pub transaction: u64,
    /// Its global position.
    pub position: i64,
}

/// Which events a scan reads.
#[derive(Debug, Clone)]
pub struct ScanFilter {
    /// Only these stream types (empty: all).
    pub stream_types: Vec<String>,
    /// Only events at or after this global position.
    pub from_position: i64,
}

impl ScanFilter {
    /// Every event of the ledger.
    pub fn everything() -> Self {
        Self {
            stream_types: Vec::new(),
            from_position: 0,
        }
    }
}

/// The transactions the database knows of now: every id below `oldest_running` has finished
/// (committed or rolled back); every id at or above `next` is yet to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionHorizon {
    /// `pg_snapshot_xmin`: the oldest transaction still running.
    pub oldest_running: u64,
    /// `pg_snapshot_xmax`: one past the newest transaction started so far.
    pub next: u64,
}

impl Ledger {
    /// The transaction horizon now.
    pub async fn transaction_horizon(&self) -> Result<TransactionHorizon, LedgerError> {
        let row = sqlx::query(
            "SELECT pg_snapshot_xmin(s)::text::bigint AS xmin, pg_snapshot_xmax(s)::text::bigint AS xmax
             FROM pg_current_snapshot() AS s",
        )
        .fetch_one(&self.pool())
        .await?;
        Ok(TransactionHorizon {
            oldest_running: as_xid(row.try_get("xmin")?),
            next: as_xid(row.try_get("xmax")?),
        })
    }

    /// Up to `limit` events of `filter` after `cursor` from finished transactions, in
    /// (transaction, position) order; an empty batch when none is readable yet.
    pub async fn scan(
        &self,
        filter: &ScanFilter,
        cursor: ScanCursor,
        limit: i64,
    ) -> Result<Vec<(ScanCursor, RecordedEvent)>, LedgerError> {
        let rows = sqlx::query(
            "SELECT global_position, stream_id, stream_type, version, event_type, schema_version,
                    payload, metadata, recorded_at, transaction_id::text::bigint AS tx
             FROM events
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
               AND (cardinality($3::text[]) = 0 OR stream_type = ANY($3))
               AND global_position >= $4
             ORDER BY transaction_id, global_position
             LIMIT $5",
        )
        .bind(cursor.transaction.to_string())
        .bind(cursor.position)
        .bind(&filter.stream_types)
        .bind(filter.from_position)
        .bind(limit)
        .fetch_all(&self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let event = recorded_event(row)?;
                let cursor = ScanCursor {
                    transaction: as_xid(row.try_get("tx")?),
                    position: event.global_position,
                };
                Ok((cursor, event))
            })
            .collect()
    }

    /// How many events `filter` selects now (for progress and ETA).
    pub async fn count(&self, filter: &ScanFilter) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM events
             WHERE (cardinality($1::text[]) = 0 OR stream_type = ANY($1)) AND global_position >= $2",
        )
        .bind(&filter.stream_types)
        .bind(filter.from_position)
        .fetch_one(&self.pool())
        .await?)
    }
}

/// Transaction ids are 64-bit and never negative as `bigint`.
fn as_xid(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}
