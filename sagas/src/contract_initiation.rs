//! ProposalAccepted → the contract (id derived from the proposal, DESIGN §7). If the contract
//! cannot be initiated, the saga compensates: the acceptance is reverted and the job reopened,
//! with the reason in both events, so the client can accept again.

use domain::{
    Aggregate,
    contracts::{self, Contract, ContractCommand},
    jobs::{self, Job, JobCommand, Proposal, ProposalCommand, ProposalEvent},
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
};

use crate::saga::{Cause, Outcome, Saga, system};

/// The contract-initiation process manager (consumes the jobs topic).
#[derive(Debug, Clone)]
pub struct ContractInitiation {
    /// Its command path and history.
    pub saga: Saga,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
}

impl EventHandler for ContractInitiation {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.stream_type != Proposal::STREAM_TYPE {
            return Ok(());
        }
        let ProposalEvent::ProposalAccepted {
            proposal_id,
            job_id,
            client_id,
            freelancer_id,
            contract_id,
            milestones,
            ..
        } = event.decode::<ProposalEvent>(&self.upcasters)?
        else {
            return Ok(());
        };
        metrics::counter!("workup_saga_events_total", "saga" => self.saga.name).increment(1);
        let cause = Cause::from(event);
        let saga_id = contract_id.as_uuid();
        let initiate = ContractCommand::Initiate {
            contract_id,
            proposal_id,
            job_id,
            client_id,
            freelancer_id,
            milestones,
        };
        let outcome = self
            .saga
            .send(saga_id, &cause, "initiate", "InitiateContract", async |unit| {
                let contract = unit.load::<Contract>(saga_id).await?;
                let events = contracts::contract::decide(&contract, &initiate, &system())?;
                unit.write::<Contract>(saga_id, &events)?;
                Ok(())
            })
            .await?;
        let Outcome::Refused(refusal) = outcome else {
            return Ok(());
        };
        let reason = format!("the contract could not be initiated: {refusal}");
        tracing::warn!(%contract_id, %proposal_id, %reason, "compensating the acceptance");
        metrics::counter!("workup_saga_compensations_total", "saga" => self.saga.name).increment(1);
        let (proposal, job) = (proposal_id.as_uuid(), job_id.as_uuid());
        let compensated = self
            .saga
            .send(
                saga_id,
                &cause,
                "compensate",
                "RevertAcceptanceAndReopenJob",
                async |unit| {
                    let ctx = system();
                    let state = unit.load::<Proposal>(proposal).await?;
                    let revert = ProposalCommand::RevertAcceptance {
                        reason: reason.clone(),
                    };
                    let events = jobs::proposal::decide(&state, &revert, &ctx)?;
                    unit.write::<Proposal>(proposal, &events)?;
                    let state = unit.load::<Job>(job).await?;
                    let events = jobs::decide(
                        &state,
                        &JobCommand::Reopen {
                            reason: reason.clone(),
                        },
                        &ctx,
                    )?;
                    unit.write::<Job>(job, &events)?;
                    Ok(())
                },
            )
            .await?;
        if let Outcome::Refused(refusal) = compensated {
            // Someone changed the proposal or the job since: nothing left to undo here.
            tracing::warn!(%contract_id, %refusal, "compensation refused");
        }
        Ok(())
    }
}
