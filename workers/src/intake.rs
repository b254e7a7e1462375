//! WithdrawalRequested → a task in the queue, due at once or at its scheduled time.

use domain::{
    Aggregate,
    payments::{Withdrawal, WithdrawalEvent},
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
    withdrawals::{NewTask, WithdrawalTasks},
};
use std::sync::Arc;
use tokio::sync::Notify;

/// The intake (consumes the payments topic).
#[derive(Debug, Clone)]
pub struct Intake {
    /// The queue.
    pub tasks: WithdrawalTasks,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
    /// Tells this instance's executor to look for work at once.
    pub wake: Arc<Notify>,
}

impl EventHandler for Intake {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.stream_type != Withdrawal::STREAM_TYPE {
            return Ok(());
        }
        let WithdrawalEvent::WithdrawalRequested {
            withdrawal_id,
            wallet_id,
            requested_at,
            scheduled_for,
            ..
        } = event.decode::<WithdrawalEvent>(&self.upcasters)?
        else {
            return Ok(());
        };
        let task = NewTask {
            withdrawal_id: withdrawal_id.as_uuid(),
            wallet_id: wallet_id.as_uuid(),
            correlation_id: event.metadata.correlation_id,
            due_at: scheduled_for.unwrap_or(requested_at).as_datetime(),
        };
        self.tasks.enqueue(&task).await?;
        tracing::info!(%withdrawal_id, due_at = %task.due_at, "withdrawal task queued");
        self.wake.notify_one();
        Ok(())
    }

    /// The queue's database answers.
    async fn ready(&self) -> Result<(), HandlerError> {
        Ok(self.tasks.ping().await?)
    }
}
