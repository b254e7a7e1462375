//! Contracts → the Cassandra contracts read model ([`infra::read_models::contracts`]): contracts
//! by id, by client and by freelancer, milestones and termination requests by contract. Each event
//! becomes one version-guarded logged batch written at the event's version, so a redelivered or
//! older event changes nothing (DESIGN §6).

use domain::{
    Aggregate,
    contracts::{
        Contract, ContractEvent, MilestoneStatus, TerminationEvent, TerminationRequest, TerminationStatus,
    },
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
    read_models::contracts::{Applying, ContractsReadModel, NewContract, NewMilestone, NewTermination},
};

/// Projects contract and termination request streams into the contracts read model.
pub struct ContractsProjector {
    /// The read model written.
    pub contracts: ContractsReadModel,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
}

impl EventHandler for ContractsProjector {
    #[tracing::instrument(skip_all, fields(stream_id = %event.stream_id, version = event.version, event_type = %event.event_type))]
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        let at = Applying {
            stream_id: event.stream_id,
            version: event.version,
        };
        let written = if event.stream_type == Contract::STREAM_TYPE {
            self.contract(at, event.decode(&self.upcasters)?).await?
        } else if event.stream_type == TerminationRequest::STREAM_TYPE {
            self.termination(at, event.decode(&self.upcasters)?).await?
        } else {
            return Ok(());
        };
        if !written {
            tracing::debug!("already applied");
        }
        Ok(())
    }
}

impl ContractsProjector {
    /// Apply one event of a contract stream; whether it was written.
    async fn contract(&self, at: Applying, event: ContractEvent) -> Result<bool, HandlerError> {
        let model = &self.contracts;
        let milestone = |contract_id: domain::ContractId,
                         milestone_id: domain::MilestoneId,
                         status: MilestoneStatus,
                         when: domain::Timestamp| {
            model.move_milestone(
                at,
                contract_id.as_uuid(),
                milestone_id.as_uuid(),
                status,
                when.as_datetime(),
                None,
            )
        };
        let written = match event {
            ContractEvent::ContractInitiated {
                contract_id,
                proposal_id,
                job_id,
                client_id,
                freelancer_id,
                milestones,
                initiated_at,
            } => {
                let contract = NewContract {
                    contract_id: contract_id.as_uuid(),
                    proposal_id: proposal_id.as_uuid(),
                    job_id: job_id.as_uuid(),
                    client_id: client_id.as_uuid(),
                    freelancer_id: freelancer_id.as_uuid(),
                    initiated_at: initiated_at.as_datetime(),
                    milestones: milestones
                        .into_iter()
                        .map(|m| NewMilestone {
                            milestone_id: m.milestone_id.as_uuid(),
                            title: m.title,
                            amount: m.amount,
                            due_on: m.due_on,
                        })
                        .collect(),
                };
                model.initiate(at, &contract).await?
            }
            ContractEvent::MilestoneStarted {
                contract_id,
                milestone_id,
                started_at,
            } => milestone(contract_id, milestone_id, MilestoneStatus::InProgress, started_at).await?,
            ContractEvent::MilestoneSubmitted {
                contract_id,
                milestone_id,
                submitted_at,
            } => milestone(contract_id, milestone_id, MilestoneStatus::InReview, submitted_at).await?,
            ContractEvent::MilestoneChangesRequested {
                contract_id,
                milestone_id,
                requested_at,
            } => {
                milestone(
                    contract_id,
                    milestone_id,
                    MilestoneStatus::InProgress,
                    requested_at,
                )
                .await?
            }
            ContractEvent::MilestoneAccepted {
                contract_id,
                milestone_id,
                accepted_at,
                ..
            } => milestone(contract_id, milestone_id, MilestoneStatus::Accepted, accepted_at).await?,
            ContractEvent::MilestonePaid {
                contract_id,
                milestone_id,
                payment_request_id,
                paid_at,
            } => {
                model
                    .move_milestone(
                        at,
                        contract_id.as_uuid(),
                        milestone_id.as_uuid(),
                        MilestoneStatus::Paid,
                        paid_at.as_datetime(),
                        Some(payment_request_id.as_uuid()),
                    )
                    .await?
            }
            ContractEvent::ContractCompleted {
                contract_id,
                completed_at,
            } => {
                model
                    .complete(at, contract_id.as_uuid(), completed_at.as_datetime())
                    .await?
            }
            ContractEvent::ContractTerminated {
                contract_id,
                termination_request_id,
                terminated_at,
            } => {
                model
                    .terminate(
                        at,
                        contract_id.as_uuid(),
                        termination_request_id.as_uuid(),
                        terminated_at.as_datetime(),
                    )
                    .await?
            }
        };
        Ok(written)
    }

    /// Apply one event of a termination request stream; whether it was written.
    async fn termination(&self, at: Applying, event: TerminationEvent) -> Result<bool, HandlerError> {
        let model = &self.contracts;
        let written = match event {
            TerminationEvent::TerminationRequested {
                termination_request_id,
                contract_id,
                requested_by,
                reason,
                requested_at,
            } => {
                let request = NewTermination {
                    termination_request_id: termination_request_id.as_uuid(),
                    contract_id: contract_id.as_uuid(),
                    requested_by: requested_by.as_uuid(),
                    reason,
                    requested_at: requested_at.as_datetime(),
                };
                model.request_termination(at, &request).await?
            }
            TerminationEvent::TerminationAccepted {
                termination_request_id,
                contract_id,
                accepted_by,
                accepted_at,
            } => {
                model
                    .answer_termination(
                        at,
                        contract_id.as_uuid(),
                        termination_request_id.as_uuid(),
                        TerminationStatus::Accepted,
                        accepted_by.as_uuid(),
                        accepted_at.as_datetime(),
                    )
                    .await?
            }
            TerminationEvent::TerminationRejected {
                termination_request_id,
                contract_id,
                rejected_by,
                rejected_at,
            } => {
                model
                    .answer_termination(
                        at,
                        contract_id.as_uuid(),
                        termination_request_id.as_uuid(),
                        TerminationStatus::Rejected,
                        rejected_by.as_uuid(),
                        rejected_at.as_datetime(),
                    )
                    .await?
            }
        };
        Ok(written)
    }
}
