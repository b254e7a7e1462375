//! Deadlines (DESIGN §7): kept in PostgreSQL by the step that sets them, looked for on a timer
//! by every sagas instance, claimed by one (with a lease, so a dead instance's claim passes on)
//! and fired as a command through the command path. They fire after restarts: nothing is an
//! in-memory timer.

use domain::payments::{PaymentRequest, PaymentRequestCommand, payment_request};
use infra::{
    control::{self, Settings},
    kafka::consumer::HandlerError,
    sagas::Deadline,
};
use std::time::Duration;
use tokio::sync::watch;

use crate::saga::{Cause, Outcome, Saga, system};

/// A payment request left unpaid past its due time expires.
pub const PAYMENT_REQUEST_EXPIRY: &str = "payment-request-expiry";
/// How long a claimed deadline is reserved for the instance firing it.
const LEASE: Duration = Duration::from_secs(30);
/// Deadlines claimed per look.
const BATCH: i64 = 50;

/// The deadline poller.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// Its command path and the deadline table.
    pub saga: Saga,
    /// How often to look.
    pub every: Duration,
    /// The control settings: nothing fires while frozen.
    pub control: watch::Receiver<Settings>,
}

impl Deadlines {
    /// Fire due deadlines every `every` until `stopped`.
    pub async fn run(mut self, mut stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = stopped.changed() => return Ok(()),
                _ = tick.tick() => {}
            }
            if !control::wait_while_frozen(&mut self.control, &mut stopped, "deadlines").await {
                return Ok(());
            }
            if let Err(error) = self.fire_due().await {
                tracing::warn!(%error, "deadlines could not be fired; retrying");
            }
            if let Ok(pending) = self.saga.store.pending().await {
                metrics::gauge!("workup_saga_deadlines_pending").set(pending as f64);
            }
        }
    }

    /// Fire what is due now; how many fired.
    pub async fn fire_due(&self) -> Result<usize, HandlerError> {
        let due = self.saga.store.claim_due(BATCH, LEASE).await?;
        let mut fired = 0;
        for deadline in due {
            if self.fire(&deadline).await? {
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// Fire one deadline; whether it is done with (a refusal that will not change is done too).
    async fn fire(&self, deadline: &Deadline) -> Result<bool, HandlerError> {
        let cause = Cause {
            kind: format!("Deadline:{}", deadline.kind),
            stream_id: deadline.deadline_id,
            version: 0,
            correlation_id: deadline.saga_id,
        };
        let outcome = match deadline.kind.as_str() {
            PAYMENT_REQUEST_EXPIRY => {
                let stream = deadline.stream_id;
                self.saga
                    .send(
                        deadline.saga_id,
                        &cause,
                        "expire",
                        "ExpirePaymentRequest",
                        async |unit| {
                            let request = unit.load::<PaymentRequest>(stream).await?;
                            let events =
                                payment_request::decide(&request, &PaymentRequestCommand::Expire, &system())?;
                            unit.write::<PaymentRequest>(stream, &events)?;
                            Ok(())
                        },
                    )
                    .await?
            }
            other => {
                tracing::error!(kind = other, deadline = %deadline.deadline_id, "unknown deadline kind");
                self.saga
                    .store
                    .fired(deadline.deadline_id, "unknown-kind")
                    .await?;
                return Ok(true);
            }
        };
        let result = match &outcome {
            Outcome::Done => "fired".to_owned(),
            // Not due yet by the service's clock: leave it for the next look.
            Outcome::Refused(refusal) if refusal.code() == "payment-request-not-due" => return Ok(false),
            // Paid or cancelled meanwhile: nothing to expire.
            Outcome::Refused(refusal) => format!("obsolete: {}", refusal.code()),
        };
        self.saga.store.fired(deadline.deadline_id, &result).await?;
        metrics::counter!("workup_saga_deadlines_fired_total", "kind" => deadline.kind.clone(), "outcome" => if matches!(outcome, Outcome::Done) { "fired" } else { "obsolete" })
            .increment(1);
        Ok(true)
    }
}
