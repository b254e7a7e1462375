//! What the process managers did and what they are waiting for (DESIGN §7), in the ledger
//! database: the steps each saga took (queryable history) and its deadlines (fired after
//! restarts, by whichever instance claims them first).

use chrono::{DateTime, Utc};
use serde::Serialize;

use std::time::Duration;
use uuid::Uuid;

pub use sqlx::types::Json;

use crate::ledger::{Ledger, LedgerError, StreamVersion};

/// One step a saga took.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SagaStep {
    /// The saga instance (a contract's lifecycle: the contract id).
    pub saga_id: Uuid,
    /// Which process manager, e.g. `contract-initiation`.
    pub saga: String,
    /// The command sent (derived from the trigger: a redelivery sends the same id).
    pub command_id: Uuid,
    /// What it asked, e.g. `InitiateContract`.
    pub command: String,
    /// The event type that triggered it.
    pub trigger_type: String,
    /// The stream of that event.
    pub trigger_stream: Uuid,
    /// Its version.
    pub trigger_version: i64,
    /// `appended`, `replayed` (already done), `refused` (a rule said no), `compensated`.
    pub outcome: String,
    /// Why, when refused or compensated.
    pub detail: Option<String>,
    /// The streams the command appended to and their versions.
    #[schema(value_type = Object)]
    pub streams: Json<Vec<StreamVersion>>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// A deadline due: what to do, on which stream.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Deadline {
    /// Its id (derived from what set it, so setting it twice is one deadline).
    pub deadline_id: Uuid,
    /// The saga it belongs to.
    pub saga_id: Uuid,
    /// What fires, e.g. `payment-request-expiry`.
    pub kind: String,
    /// The stream it acts on.
    pub stream_id: Uuid,
    /// When it is due.
    pub due_at: DateTime<Utc>,
}

/// The saga tables.
#[derive(Debug, Clone)]
pub struct SagaStore {
    ledger: Ledger,
}

impl SagaStore {
    /// The store on the (migrated) ledger database.
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }

    /// Record a step (once: recording it again on a redelivery keeps the first record).
    pub async fn record(&self, step: &SagaStep) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO saga_steps (saga_id, saga, command_id, command, trigger_type, trigger_stream,
                 trigger_version, outcome, detail, streams)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(step.saga_id)
        .bind(&step.saga)
        .bind(step.command_id)
        .bind(&step.command)
        .bind(&step.trigger_type)
        .bind(step.trigger_stream)
        .bind(step.trigger_version)
        .bind(&step.outcome)
        .bind(&step.detail)
        .bind(&step.streams)
        .execute(&self.ledger.pool())
        .await?;
        Ok(())
    }

    /// Every step of saga `saga_id`, in order.
    pub async fn history(&self, saga_id: Uuid) -> Result<Vec<SagaStep>, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT saga_id, saga, command_id, command, trigger_type, trigger_stream, trigger_version, outcome,
                    detail, streams, recorded_at
             FROM saga_steps WHERE saga_id = $1 ORDER BY recorded_at, command_id",
        )
        .bind(saga_id)
        .fetch_all(&self.ledger.pool())
        .await?)
    }

    /// Set a deadline (setting the same id again changes nothing).
    pub async fn schedule(&self, deadline: &Deadline) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO saga_deadlines (deadline_id, saga_id, kind, stream_id, due_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(deadline.deadline_id)
        .bind(deadline.saga_id)
        .bind(&deadline.kind)
        .bind(deadline.stream_id)
        .bind(deadline.due_at)
        .execute(&self.ledger.pool())
        .await?;
        Ok(())
    }

    /// Claim up to `limit` deadlines that are due and not fired, for `lease` (an instance that
    /// dies with a claim leaves it to another once the lease ends).
    pub async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<Deadline>, LedgerError> {
        Ok(sqlx::query_as(
            "UPDATE saga_deadlines SET claimed_until = clock_timestamp() + make_interval(secs => $2)
             WHERE deadline_id IN (
                 SELECT deadline_id FROM saga_deadlines
                 WHERE fired_at IS NULL AND due_at <= clock_timestamp()
                   AND (claimed_until IS NULL OR claimed_until < clock_timestamp())
                 ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING deadline_id, saga_id, kind, stream_id, due_at",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.ledger.pool())
        .await?)
    }

    /// Mark a deadline fired with its outcome.
    pub async fn fired(&self, deadline_id: Uuid, outcome: &str) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE saga_deadlines SET fired_at = clock_timestamp(), outcome = $2 WHERE deadline_id = $1",
        )
        .bind(deadline_id)
        .bind(outcome)
        .execute(&self.ledger.pool())
        .await?;
        Ok(())
    }

    /// Deadlines not fired yet (for `/metrics`).
    pub async fn pending(&self) -> Result<i64, LedgerError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM saga_deadlines WHERE fired_at IS NULL")
                .fetch_one(&self.ledger.pool())
                .await?,
        )
    }
}
