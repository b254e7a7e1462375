//! The outbox: events committed but not yet acknowledged by Kafka (DESIGN §1).
//!
//! The relay claims rows in position order inside a transaction that first takes a
//! transaction-level advisory lock, so one batch at a time is in flight across every relay
//! instance (per-stream order holds), publishes them, and deletes them in the same transaction.
//! Rows of a transaction that commits late are simply claimed by a later batch: nothing
//! tails a position, so nothing is skipped.

use domain::BoundedContext;
use sqlx::{Postgres, Transaction};

use super::{Ledger, LedgerError, RecordedEvent, load::recorded_event};

/// Advisory lock key held while a relay batch is in flight ("WORKUPOB").
const RELAY_LOCK: i64 = 0x574F_524B_5550_4F42;

/// A claimed batch: publish it, then [`OutboxBatch::acknowledge`]; dropping it releases the rows.
pub struct OutboxBatch {
    tx: Transaction<'static, Postgres>,
    /// The claimed events, in position order, with their context's name.
    pub events: Vec<(String, RecordedEvent)>,
}

impl OutboxBatch {
    /// Delete the published rows and release the claim.
    pub async fn acknowledge(mut self) -> Result<(), LedgerError> {
        let positions: Vec<i64> = self.events.iter().map(|(_, e)| e.global_position).collect();
        sqlx::query("DELETE FROM outbox WHERE global_position = ANY($1)")
            .bind(&positions)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// How far the relay is behind the ledger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxLag {
    /// Events committed and not yet published.
    pub events: i64,
    /// Age of the oldest of them, in seconds (0 when none).
    pub seconds: f64,
}

impl Ledger {
    /// Claim up to `limit` unpublished events, oldest first. `None` when another relay holds
    /// the claim or nothing is waiting.
    pub async fn claim_outbox(&self, limit: i64) -> Result<Option<OutboxBatch>, LedgerError> {
        let mut tx = self.pool().begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT o.topic_context, e.global_position, e.stream_id, e.stream_type, e.version, e.event_type,
                    e.schema_version, e.payload, e.metadata, e.recorded_at
             FROM outbox o JOIN events e USING (global_position)
             ORDER BY o.global_position
             LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let events = rows
            .iter()
            .map(|row| Ok((sqlx::Row::try_get(row, "topic_context")?, recorded_event(row)?)))
            .collect::<Result<_, LedgerError>>()?;
        Ok(Some(OutboxBatch { tx, events }))
    }

    /// Queue the events at positions `from..=to` of `contexts`' streams for publishing again
    /// (`control replay republish`): the relay sends them in position order like any other,
    /// and consumers skip what they have applied. Returns how many were queued (those still
    /// waiting to be published are left as they are).
    pub async fn requeue(&self, from: i64, to: i64, contexts: &[BoundedContext]) -> Result<u64, LedgerError> {
        let (stream_types, names): (Vec<&str>, Vec<&str>) = contexts
            .iter()
            .flat_map(|c| c.stream_types().iter().map(|t| (*t, c.name())))
            .unzip();
        let queued = sqlx::query(
            "INSERT INTO outbox (global_position, topic_context)
             SELECT e.global_position, m.context
             FROM events e JOIN unnest($3::text[], $4::text[]) AS m (stream_type, context) USING (stream_type)
             WHERE e.global_position BETWEEN $1 AND $2
             ON CONFLICT (global_position) DO NOTHING",
        )
        .bind(from)
        .bind(to)
        .bind(&stream_types)
        .bind(&names)
        .execute(&self.pool())
        .await?;
        Ok(queued.rows_affected())
    }

    /// How many events at positions `from..=to` wait in the outbox.
    pub async fn queued_between(&self, from: i64, to: i64) -> Result<i64, LedgerError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE global_position BETWEEN $1 AND $2")
                .bind(from)
                .bind(to)
                .fetch_one(&self.pool())
                .await?,
        )
    }

    /// The relay's lag (DESIGN §5: exposed in metrics).
    pub async fn outbox_lag(&self) -> Result<OutboxLag, LedgerError> {
        let (events, seconds): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM clock_timestamp() - min(recorded_at))::float8 FROM outbox",
        )
        .fetch_one(&self.pool())
        .await?;
        Ok(OutboxLag {
            events,
            seconds: seconds.unwrap_or(0.0),
        })
    }
}
