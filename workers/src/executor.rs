//! Running withdrawal tasks: claim due ones (up to the concurrency), and for each, while renewing
//! its lease: read the withdrawal, start it, pay it out through the provider within the timeout,
//! and record the outcome through the command path as the system actor.
//!
//! Exactly once in effect, whatever dies when: every command's id is derived from the
//! withdrawal and the step (a redelivered task's commands are answered "replayed"), the
//! provider de-duplicates by withdrawal id (a redelivered payout is the first one), and the
//! withdrawal's stream says what is left to do.

use chrono::{DateTime, Utc};
use domain::{
    Actor, Context, DomainError, Timestamp,
    payments::{
        Wallet, Withdrawal, WithdrawalCommand,
        withdrawal::{self, RequestedWithdrawal, WithdrawalStatus},
    },
};
use infra::{
    control::{self, Settings},
    ledger::{CommandError, EventMetadata, Ledger, LedgerError},
    payouts::{PayoutClient, PayoutError, PayoutOutcome},
    withdrawals::{ClaimedTask, WithdrawalTasks},
};
use std::{sync::Arc, time::Duration};
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};
use uuid::Uuid;

/// Namespace of the command ids the worker derives.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x3d1c_7a0e_9b42_4c55_a1f0_77e2_0c4b_d5e1);
/// Attempts at a command that keeps losing races with other commands on the wallet.
const COMMAND_ATTEMPTS: u32 = 20;
/// How long a task whose step failed (provider or ledger unreachable) waits before a retry.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Pause between payout calls the provider did not answer.
const PAYOUT_RETRY: Duration = Duration::from_millis(500);
/// How long a stopping worker lets its tasks in flight finish (the rest are redelivered).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How a run of a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// The withdrawal is final: the task is done.
    Finished(WithdrawalStatus),
    /// Not due yet: give it back until then.
    NotDue(DateTime<Utc>),
}

/// Why a run of a task stopped early (it is retried).
#[derive(Debug, thiserror::Error)]
enum TaskError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Provider(#[from] PayoutError),
    #[error("the rules refused {step}: {refusal}")]
    Refused {
        step: &'static str,
        refusal: DomainError,
    },
    #[error("the withdrawal is not in the ledger")]
    Missing,
}

/// The task runner of one worker process.
#[derive(Debug)]
pub struct Executor {
    /// The command path.
    pub ledger: Ledger,
    /// The queue.
    pub tasks: WithdrawalTasks,
    /// The payout provider.
    pub provider: PayoutClient,
    /// This process, as named in the leases it holds.
    pub worker_id: String,
    /// A task still running this long after it started is cancelled.
    pub timeout: Duration,
    /// How long a claim holds (renewed every third of it).
    pub lease: Duration,
    /// Tasks run at once (unless the control plane's `max_concurrency` says fewer).
    pub concurrency: usize,
    /// The control settings: no task is claimed while frozen; `max_concurrency` caps the tasks.
    pub control: watch::Receiver<Settings>,
    /// How often due tasks are looked for.
    pub poll: Duration,
    /// Woken by the intake when it queued a task.
    pub wake: Arc<Notify>,
}

impl Executor {
    /// Claim and run tasks until `stopped` turns true; then let the tasks in flight finish for a
    /// short grace (those still running are redelivered once their lease lapses).
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut running = JoinSet::new();
        let mut control = self.control.clone();
        loop {
            if control.borrow().frozen {
                // Tasks in flight finish; nothing new is claimed until started again.
                while running.join_next().await.is_some() {}
                if !control::wait_while_frozen(&mut control, &mut stopped, "withdrawal-executor").await {
                    break;
                }
            }
            let limit = control
                .borrow()
                .max_concurrency
                .and_then(|n| usize::try_from(n).ok())
                .map_or(self.concurrency, |n| n.max(1));
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("workup_withdrawal_tasks_in_flight").set(running.len() as f64);
            let free = limit.saturating_sub(running.len());
            if free > 0 {
                match self
                    .tasks
                    .claim_due(&self.worker_id, i64::try_from(free)?, self.lease)
                    .await
                {
                    Ok(claimed) => {
                        for task in claimed {
                            running.spawn(self.clone().run_task(task));
                        }
                    }
                    Err(error) => tracing::warn!(%error, "could not claim withdrawal tasks"),
                }
            }
            tokio::select! {
                _ = stopped.changed() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
                _ = control.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        let drained =
            tokio::time::timeout(STOP_GRACE, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                tasks = running.len(),
                "stopping with withdrawal tasks in flight; they will be redelivered"
            );
            running.shutdown().await;
        }
        Ok(())
    }

    /// Run one claimed task, renewing its lease meanwhile, and record how it ended.
    async fn run_task(self: Arc<Self>, task: ClaimedTask) {
        let id = task.withdrawal_id;
        if task.attempts > 1 {
            metrics::counter!("workup_withdrawal_redeliveries_total").increment(1);
            tracing::info!(withdrawal_id = %id, attempt = task.attempts, "withdrawal task redelivered");
        }
        let renew = async {
            loop {
                tokio::time::sleep(self.lease / 3).await;
                match self.tasks.hold(id, &self.worker_id, self.lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(withdrawal_id = %id, "lost the lease of a withdrawal task"),
                    Err(error) => tracing::warn!(withdrawal_id = %id, %error, "could not renew a lease"),
                }
            }
        };
        let ran = tokio::select! {
            ran = self.work(&task) => ran,
            () = renew => unreachable!("the renewal loop never ends"),
        };
        let recorded = match ran {
            Ok(Ran::Finished(status)) => {
                let outcome = status_name(status);
                let took = (Utc::now() - task.started_at).to_std().unwrap_or_default();
                metrics::histogram!("workup_withdrawal_task_duration_seconds", "outcome" => outcome)
                    .record(took.as_secs_f64());
                tracing::info!(withdrawal_id = %id, outcome, took_ms = took.as_millis(), "withdrawal task finished");
                self.tasks.finish(id, outcome).await
            }
            Ok(Ran::NotDue(at)) => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                self.tasks.hold(id, &self.worker_id, wait).await.map(drop)
            }
            Err(error) => {
                tracing::warn!(withdrawal_id = %id, %error, "withdrawal task stopped; retried later");
                self.tasks.hold(id, &self.worker_id, RETRY_AFTER).await.map(drop)
            }
        };
        if let Err(error) = recorded {
            // The lease lapses and the task is run again: it finds its withdrawal final.
            tracing::warn!(withdrawal_id = %id, %error, "could not record a withdrawal task's end");
        }
    }

    /// What is left of a task, from its withdrawal's state in the ledger.
    async fn work(&self, task: &ClaimedTask) -> Result<Ran, TaskError> {
        let id = task.withdrawal_id;
        let withdrawal = self.current(id).await?;
        match withdrawal.status {
            status if status.is_final() => return Ok(Ran::Finished(status)),
            WithdrawalStatus::Scheduled => {
                if let Some(at) = withdrawal.scheduled_for.map(|t| t.as_datetime())
                    && at > Utc::now()
                {
                    return Ok(Ran::NotDue(at));
                }
            }
            _ => {}
        }
        let deadline =
            task.started_at + chrono::TimeDelta::from_std(self.timeout).unwrap_or(chrono::TimeDelta::MAX);
        let Some(left) = (deadline - Utc::now()).to_std().ok().filter(|d| !d.is_zero()) else {
            return self.cancel_timed_out(task, &withdrawal).await;
        };
        if let Some(done) = self
            .step(task, &withdrawal, "start", WithdrawalCommand::Start)
            .await?
        {
            return Ok(done);
        }
        match tokio::time::timeout(left, self.pay(&withdrawal)).await {
            Ok(PayoutOutcome::Paid(provider_reference)) => {
                self.finish(
                    task,
                    &withdrawal,
                    "succeed",
                    WithdrawalCommand::Succeed { provider_reference },
                )
                .await
            }
            Ok(PayoutOutcome::Declined(reason)) => {
                self.finish(task, &withdrawal, "fail", WithdrawalCommand::Fail { reason })
                    .await
            }
            Ok(PayoutOutcome::Cancelled) => {
                let reason = "cancelled at the payout provider".to_owned();
                self.finish(task, &withdrawal, "cancel", WithdrawalCommand::Cancel { reason })
                    .await
            }
            Err(_elapsed) => self.cancel_timed_out(task, &withdrawal).await,
        }
    }

    /// Ask the provider to pay out, again after each failure to get an answer (the call is
    /// idempotent by withdrawal id), until it answers.
    async fn pay(&self, withdrawal: &RequestedWithdrawal) -> PayoutOutcome {
        loop {
            match self
                .provider
                .pay(withdrawal.id.as_uuid(), withdrawal.amount)
                .await
            {
                Ok(outcome) => {
                    metrics::counter!("workup_withdrawal_payout_calls_total", "result" => payout_result(&outcome))
                        .increment(1);
                    return outcome;
                }
                Err(error) => {
                    metrics::counter!("workup_withdrawal_payout_calls_total", "result" => "unavailable")
                        .increment(1);
                    tracing::warn!(withdrawal_id = %withdrawal.id, %error, "payout call failed; retrying");
                    tokio::time::sleep(PAYOUT_RETRY).await;
                }
            }
        }
    }

    /// Past the timeout: cancel at the provider first, so a late payout cannot happen after the
    /// withdrawal is cancelled; if the provider had already paid, the money left and the
    /// withdrawal succeeded. If the provider cannot be asked, the task is retried.
    async fn cancel_timed_out(
        &self,
        task: &ClaimedTask,
        withdrawal: &RequestedWithdrawal,
    ) -> Result<Ran, TaskError> {
        let outcome = self.provider.cancel(withdrawal.id.as_uuid()).await?;
        match outcome {
            PayoutOutcome::Paid(provider_reference) => {
                tracing::warn!(withdrawal_id = %withdrawal.id, "paid out at the provider just before its timeout");
                self.finish(
                    task,
                    withdrawal,
                    "succeed",
                    WithdrawalCommand::Succeed { provider_reference },
                )
                .await
            }
            PayoutOutcome::Declined(_) | PayoutOutcome::Cancelled => {
                metrics::counter!("workup_withdrawal_timeouts_total").increment(1);
                let reason = format!("timed out after {} s", self.timeout.as_secs());
                self.finish(task, withdrawal, "cancel", WithdrawalCommand::Cancel { reason })
                    .await
            }
        }
    }

    /// Send a final command, then read the final status.
    async fn finish(
        &self,
        task: &ClaimedTask,
        withdrawal: &RequestedWithdrawal,
        label: &'static str,
        command: WithdrawalCommand,
    ) -> Result<Ran, TaskError> {
        if let Some(done) = self.step(task, withdrawal, label, command).await? {
            return Ok(done);
        }
        match self.current(withdrawal.id.as_uuid()).await?.status {
            status if status.is_final() => Ok(Ran::Finished(status)),
            status => Err(TaskError::Refused {
                step: label,
                refusal: DomainError::Conflict(if status == WithdrawalStatus::Processing {
                    "withdrawal-processing"
                } else {
                    "withdrawal-not-final"
                }),
            }),
        }
    }

    /// Send `command` (the step `label`) as the system actor over the withdrawal and its wallet,
    /// again on a lost race. `Some` when the rules refused it because the withdrawal is already
    /// final (e.g. its owner cancelled it meanwhile): then that is how the task ends.
    async fn step(
        &self,
        task: &ClaimedTask,
        withdrawal: &RequestedWithdrawal,
        label: &'static str,
        command: WithdrawalCommand,
    ) -> Result<Option<Ran>, TaskError> {
        let id = withdrawal.id.as_uuid();
        let wallet_id = withdrawal.wallet_id.as_uuid();
        let command_id = Uuid::new_v5(&COMMAND_NAMESPACE, format!("withdrawal/{id}/{label}").as_bytes());
        let mut attempt = 1;
        loop {
            let metadata = EventMetadata {
                command_id,
                correlation_id: task.correlation_id,
                causation_id: Some(id),
                actor_id: None,
                occurred_at: Utc::now(),
            };
            let ctx = Context {
                actor: Actor::system(),
                now: Timestamp::from_datetime(metadata.occurred_at),
            };
            let result = self
                .ledger
                .execute_with(metadata, async |unit| {
                    let wallet = unit.load::<Wallet>(wallet_id).await?;
                    let state = unit.load::<Withdrawal>(id).await?;
                    let events = withdrawal::decide((&wallet, &state), &command, &ctx)?;
                    unit.write::<Wallet>(wallet_id, &events.wallet)?;
                    unit.write::<Withdrawal>(id, &events.withdrawal)?;
                    Ok(())
                })
                .await;
            match result {
                Ok(appended) => {
                    let outcome = if appended.replayed { "replayed" } else { "appended" };
                    metrics::counter!("workup_withdrawal_commands_total", "step" => label, "outcome" => outcome)
                        .increment(1);
                    return Ok(None);
                }
                Err(CommandError::Ledger(LedgerError::VersionConflict { .. }))
                    if attempt < COMMAND_ATTEMPTS =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                Err(CommandError::Ledger(error)) => return Err(error.into()),
                Err(CommandError::Domain(refusal)) => {
                    let status = self.current(id).await?.status;
                    if status.is_final() {
                        return Ok(Some(Ran::Finished(status)));
                    }
                    return Err(TaskError::Refused { step: label, refusal });
                }
            }
        }
    }

    /// The withdrawal as the ledger has it now.
    async fn current(&self, id: Uuid) -> Result<RequestedWithdrawal, TaskError> {
        self.ledger
            .load::<Withdrawal>(id)
            .await?
            .state
            .requested
            .ok_or(TaskError::Missing)
    }
}

/// The lower-case name of a final status (the task's outcome, a metric label).
fn status_name(status: WithdrawalStatus) -> &'static str {
    match status {
        WithdrawalStatus::Pending => "pending",
        WithdrawalStatus::Scheduled => "scheduled",
        WithdrawalStatus::Processing => "processing",
        WithdrawalStatus::Succeeded => "succeeded",
        WithdrawalStatus::Failed => "failed",
        WithdrawalStatus::Cancelled => "cancelled",
    }
}

fn payout_result(outcome: &PayoutOutcome) -> &'static str {
    match outcome {
        PayoutOutcome::Paid(_) => "paid",
        PayoutOutcome::Declined(_) => "declined",
        PayoutOutcome::Cancelled => "cancelled",
    }
}
