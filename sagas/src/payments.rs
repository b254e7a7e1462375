//! Payment requests (DESIGN §7): an accepted milestone gets a payment request for its amount,
//! due after the configured period (its expiry is a deadline); an accepted termination cancels
//! the contract's payment requests still pending.

use chrono::Duration;
use domain::{
    Aggregate, ContractId, PaymentRequestId, Timestamp,
    contracts::{Contract, ContractEvent, MilestoneStatus, TerminationEvent, TerminationRequest},
    payments::{PaymentRequest, PaymentRequestCommand, payment_request},
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
    sagas::Deadline,
};

use crate::{
    deadlines::PAYMENT_REQUEST_EXPIRY,
    saga::{Cause, Saga, system},
};

/// The payment-request process manager (consumes the contracts topic).
#[derive(Debug, Clone)]
pub struct PaymentRequests {
    /// Its command path and history.
    pub saga: Saga,
    /// How long a request may stay unpaid.
    pub period: Duration,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
}

impl EventHandler for PaymentRequests {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.stream_type == Contract::STREAM_TYPE {
            if let ContractEvent::MilestoneAccepted {
                contract_id,
                milestone_id,
                client_id,
                freelancer_id,
                amount,
                accepted_at,
            } = event.decode::<ContractEvent>(&self.upcasters)?
            {
                metrics::counter!("workup_saga_events_total", "saga" => self.saga.name).increment(1);
                // Due from the acceptance, not from now: a redelivery computes the same date.
                let due_at = accepted_at.as_datetime() + self.period;
                let request_id = PaymentRequestId::for_milestone(milestone_id);
                let create = PaymentRequestCommand::Create {
                    payment_request_id: request_id,
                    contract_id,
                    milestone_id,
                    client_id,
                    freelancer_id,
                    amount,
                    due_at: Timestamp::from_datetime(due_at),
                };
                let stream = request_id.as_uuid();
                self.saga
                    .send(
                        contract_id.as_uuid(),
                        &Cause::from(event),
                        "create",
                        "CreatePaymentRequest",
                        async |unit| {
                            let request = unit.load::<PaymentRequest>(stream).await?;
                            let events = payment_request::decide(&request, &create, &system())?;
                            unit.write::<PaymentRequest>(stream, &events)?;
                            Ok(())
                        },
                    )
                    .await?;
                self.saga
                    .store
                    .schedule(&Deadline {
                        deadline_id: stream,
                        saga_id: contract_id.as_uuid(),
                        kind: PAYMENT_REQUEST_EXPIRY.into(),
                        stream_id: stream,
                        due_at,
                    })
                    .await?;
            }
        } else if event.stream_type == TerminationRequest::STREAM_TYPE
            && let TerminationEvent::TerminationAccepted { contract_id, .. } =
                event.decode::<TerminationEvent>(&self.upcasters)?
        {
            metrics::counter!("workup_saga_events_total", "saga" => self.saga.name).increment(1);
            self.cancel_pending(contract_id, &Cause::from(event)).await?;
        }
        Ok(())
    }
}

impl PaymentRequests {
    /// Cancel the payment requests of the contract's accepted, unpaid milestones.
    async fn cancel_pending(&self, contract_id: ContractId, cause: &Cause) -> Result<(), HandlerError> {
        let contract = self
            .saga
            .ledger
            .load::<Contract>(contract_id.as_uuid())
            .await?
            .state;
        let Some(contract) = contract.initiated else {
            return Ok(());
        };
        let unpaid = contract
            .milestones
            .iter()
            .filter(|m| m.status == MilestoneStatus::Accepted);
        for milestone in unpaid {
            let stream = PaymentRequestId::for_milestone(milestone.id).as_uuid();
            let cancel = PaymentRequestCommand::Cancel {
                reason: "the contract was terminated".into(),
            };
            // A request paid or expired meanwhile is refused, and that is the end of it.
            self.saga
                .send(
                    contract_id.as_uuid(),
                    cause,
                    &milestone.id.to_string(),
                    "CancelPaymentRequest",
                    async |unit| {
                        let request = unit.load::<PaymentRequest>(stream).await?;
                        let events = payment_request::decide(&request, &cancel, &system())?;
                        unit.write::<PaymentRequest>(stream, &events)?;
                        Ok(())
                    },
                )
                .await?;
        }
        Ok(())
    }
}
