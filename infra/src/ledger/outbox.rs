//! The outbox: events committed but not yet acknowledged by Kafka (DESIGN §1).
//!
//! One relay at a time holds the outbox: its [`RelayLease`] is a connection of its own holding
//! a session advisory lock, released by PostgreSQL when that connection ends however the relay
//! dies; other relays stand by. The holder reads rows oldest first, publishes them (several
//! batches in flight) and deletes them once the broker acknowledged them. Rows of a transaction
//! that commits late are simply read by a later batch: nothing tails a position, so nothing is
//! skipped, and a stream's next event can only commit after its previous one, so it is never
//! read before it.

use domain::BoundedContext;
use sqlx::{Connection, PgConnection};

use super::{Ledger, LedgerError, RecordedEvent, load::recorded_event};

/// Session advisory lock key held by the relay that publishes the outbox ("WORKUPOB").
const RELAY_LOCK: i64 = 0x574F_524B_5550_4F42;

/// The right to publish the outbox: held until dropped or until its connection breaks.
pub struct RelayLease {
    connection: PgConnection,
}

impl RelayLease {
    /// Up to `limit` unpublished events, oldest first, with their context's name, leaving out
    /// those at `in_flight` positions (sent, not yet acknowledged).
    pub async fn next(
        &mut self,
        limit: i64,
        in_flight: &[i64],
    ) -> Result<Vec<(String, RecordedEvent)>, LedgerError> {
        let rows = sqlx::query(
            "SELECT o.topic_context, e.global_position, e.stream_id, e.stream_type, e.version, e.event_type,
                    e.schema_version, e.payload, e.metadata, e.recorded_at
             FROM outbox o JOIN events e USING (global_position)
             WHERE o.global_position NOT IN (SELECT unnest($2::bigint[]))
             ORDER BY o.global_position
             LIMIT $1",
        )
        .bind(limit)
        .bind(in_flight)
        .fetch_all(&mut self.connection)
        .await?;
        rows.iter()
            .map(|row| Ok((sqlx::Row::try_get(row, "topic_context")?, recorded_event(row)?)))
            .collect()
    }

    /// Delete published rows (the broker acknowledged them).
    pub async fn acknowledge(&mut self, positions: &[i64]) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM outbox WHERE global_position = ANY($1)")
            .bind(positions)
            .execute(&mut self.connection)
            .await?;
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
    /// The outbox lease, or `None` while another relay holds it.
    pub async fn relay_lease(&self) -> Result<Option<RelayLease>, LedgerError> {
        let options = self.pool().connect_options();
        let mut connection = PgConnection::connect_with(&options).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut connection)
            .await?;
        Ok(locked.then_some(RelayLease { connection }))
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
