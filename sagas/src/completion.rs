//! PaymentRequestPaid → the milestone is PAID; the domain completes the contract with its last
//! paid milestone (DESIGN §7).

use domain::{
    Aggregate,
    contracts::{self, Contract, ContractCommand},
    payments::{PaymentRequest, PaymentRequestEvent},
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
};

use crate::saga::{Cause, Outcome, Saga, system};

/// The completion process manager (consumes the payments topic).
#[derive(Debug, Clone)]
pub struct Completion {
    /// Its command path and history.
    pub saga: Saga,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
}

impl EventHandler for Completion {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.stream_type != PaymentRequest::STREAM_TYPE {
            return Ok(());
        }
        let PaymentRequestEvent::PaymentRequestPaid {
            payment_request_id,
            contract_id,
            milestone_id,
            ..
        } = event.decode::<PaymentRequestEvent>(&self.upcasters)?
        else {
            return Ok(());
        };
        metrics::counter!("workup_saga_events_total", "saga" => self.saga.name).increment(1);
        let stream = contract_id.as_uuid();
        let mark = ContractCommand::MarkMilestonePaid {
            milestone_id,
            payment_request_id,
        };
        let outcome = self
            .saga
            .send(
                stream,
                &Cause::from(event),
                "mark-paid",
                "MarkMilestonePaid",
                async |unit| {
                    let contract = unit.load::<Contract>(stream).await?;
                    let events = contracts::contract::decide(&contract, &mark, &system())?;
                    unit.write::<Contract>(stream, &events)?;
                    Ok(())
                },
            )
            .await?;
        if let Outcome::Refused(refusal) = outcome {
            // A paid request whose milestone cannot be marked: money moved, the contract did not.
            // Not silently dropped: it is in the saga history and the log for an operator.
            tracing::error!(%contract_id, %milestone_id, %payment_request_id, %refusal, "paid milestone not marked");
        }
        Ok(())
    }
}
