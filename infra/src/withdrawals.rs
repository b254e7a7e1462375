//! The withdrawal workers' durable queue (DESIGN §9), in the ledger database: one task per
//! requested withdrawal, due at once or at its scheduled time, claimed by any worker for a lease
//! it renews while it works. A task whose worker died is claimed again once its lease lapses;
//! a deferred task is a row, so it survives restarts.
//!
//! The queue holds no decision: the withdrawal's state is its ledger stream, and a worker reads it
//! before acting, so a task run twice (a redelivery) does what is left and nothing more.

use chrono::{DateTime, Utc};

use std::time::Duration;
use uuid::Uuid;

use crate::ledger::{Ledger, LedgerError};

/// The task of a withdrawal just requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The withdrawal.
    pub withdrawal_id: Uuid,
    /// Its wallet.
    pub wallet_id: Uuid,
    /// The request's correlation id.
    pub correlation_id: Uuid,
    /// When it may start: at once, or its scheduled time.
    pub due_at: DateTime<Utc>,
}

/// A task a worker holds.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedTask {
    /// The withdrawal.
    pub withdrawal_id: Uuid,
    /// Its wallet.
    pub wallet_id: Uuid,
    /// The request's correlation id.
    pub correlation_id: Uuid,
    /// When it became due.
    pub due_at: DateTime<Utc>,
    /// When it was first claimed: its timeout counts from here.
    pub started_at: DateTime<Utc>,
    /// How many times it was claimed (more than one: redelivered).
    pub attempts: i32,
}

/// Open and finished tasks by state, for `/metrics` and the operations page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct TaskCounts {
    /// Waiting for their scheduled time.
    pub scheduled: i64,
    /// Due, not held by any worker: the queue depth.
    pub queued: i64,
    /// Held by a worker.
    pub running: i64,
    /// Finished: paid out.
    pub succeeded: i64,
    /// Finished: refused by the provider.
    pub failed: i64,
    /// Finished: cancelled (timeout, or by the owner).
    pub cancelled: i64,
}

/// The task table.
#[derive(Debug, Clone)]
pub struct WithdrawalTasks {
    ledger: Ledger,
}

impl WithdrawalTasks {
    /// The queue on the (migrated) ledger database.
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }

    /// Whether its database answers.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        self.ledger.ping().await
    }

    /// Add the task of a requested withdrawal (adding it again changes nothing).
    pub async fn enqueue(&self, task: &NewTask) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO withdrawal_tasks (withdrawal_id, wallet_id, correlation_id, due_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (withdrawal_id) DO NOTHING",
        )
        .bind(task.withdrawal_id)
        .bind(task.wallet_id)
        .bind(task.correlation_id)
        .bind(task.due_at)
        .execute(&self.ledger.pool())
        .await?;
        Ok(())
    }

    /// Claim up to `limit` due tasks that no live worker holds, for `lease`, as `worker`.
    pub async fn claim_due(
        &self,
        worker: &str,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedTask>, LedgerError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "UPDATE withdrawal_tasks
             SET leased_by = $1, leased_until = clock_timestamp() + make_interval(secs => $3),
                 attempts = attempts + 1, started_at = COALESCE(started_at, clock_timestamp())
             WHERE withdrawal_id IN (
                 SELECT withdrawal_id FROM withdrawal_tasks
                 WHERE finished_at IS NULL AND due_at <= clock_timestamp()
                   AND (leased_until IS NULL OR leased_until < clock_timestamp())
                 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING withdrawal_id, wallet_id, correlation_id, due_at, started_at, attempts",
        )
        .bind(worker)
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.ledger.pool())
        .await?)
    }

    /// Hold a task of `worker`'s for `duration` from now: renew its lease while working on it,
    /// or put it aside until then (not due yet; a step to retry). False if `worker` no longer
    /// holds it.
    pub async fn hold(
        &self,
        withdrawal_id: Uuid,
        worker: &str,
        duration: Duration,
    ) -> Result<bool, LedgerError> {
        let done = sqlx::query(
            "UPDATE withdrawal_tasks SET leased_until = clock_timestamp() + make_interval(secs => $3)
             WHERE withdrawal_id = $1 AND leased_by = $2 AND finished_at IS NULL",
        )
        .bind(withdrawal_id)
        .bind(worker)
        .bind(duration.as_secs_f64())
        .execute(&self.ledger.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Mark a task finished with its withdrawal's final status.
    pub async fn finish(&self, withdrawal_id: Uuid, outcome: &str) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE withdrawal_tasks SET finished_at = clock_timestamp(), outcome = $2, leased_until = NULL
             WHERE withdrawal_id = $1 AND finished_at IS NULL",
        )
        .bind(withdrawal_id)
        .bind(outcome)
        .execute(&self.ledger.pool())
        .await?;
        Ok(())
    }

    /// Tasks by state.
    pub async fn counts(&self) -> Result<TaskCounts, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT
                 count(*) FILTER (WHERE finished_at IS NULL AND due_at > clock_timestamp()) AS scheduled,
                 count(*) FILTER (WHERE finished_at IS NULL AND due_at <= clock_timestamp()
                     AND (leased_until IS NULL OR leased_until < clock_timestamp())) AS queued,
                 count(*) FILTER (WHERE finished_at IS NULL AND leased_until >= clock_timestamp()) AS running,
                 count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
                 count(*) FILTER (WHERE outcome = 'failed') AS failed,
                 count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled
             FROM withdrawal_tasks",
        )
        .fetch_one(&self.ledger.pool())
        .await?)
    }
}
