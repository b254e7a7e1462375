//! The Contract aggregate: the agreed milestones of an accepted proposal and their state machine.
//!
//! DESIGN §2: OPEN → IN_PROGRESS → IN_REVIEW → ACCEPTED → PAID, and IN_REVIEW → IN_PROGRESS when the
//! client asks for changes. Only the freelancer progresses, only the client evaluates, only a payment
//! marks PAID. The contract saga initiates a contract and the payment saga marks milestones paid,
//! both as the system actor. The contract completes when every milestone is paid; a termination
//! (see [`super::termination`]) ends it early. Nothing changes on a closed contract.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoundedContext, Context, ContractId, DomainError, DomainEvent, FieldError, JobId, MilestoneId,
    Money, PaymentRequestId, ProposalId, TerminationRequestId, Timestamp, UserId,
    jobs::proposal::{MAX_MILESTONES, ProposedMilestone},
};

/// Where a milestone stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MilestoneStatus {
    /// Not started.
    Open,
    /// The freelancer works on it.
    InProgress,
    /// Delivered, waiting for the client's evaluation.
    InReview,
    /// The client accepted the work; a payment request follows.
    Accepted,
    /// Paid.
    Paid,
}

impl MilestoneStatus {
    /// Is `self → next` one of the legal edges of DESIGN §2?
    pub fn can_become(self, next: MilestoneStatus) -> bool {
        use MilestoneStatus::*;
        matches!(
            (self, next),
            (Open, InProgress)
                | (InProgress, InReview)
                | (InReview, InProgress)
                | (InReview, Accepted)
                | (Accepted, Paid)
        )
    }
}

/// Where a contract stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContractStatus {
    /// Milestones are being worked on.
    Active,
    /// Every milestone is paid.
    Completed,
    /// Ended by an accepted termination request.
    Terminated,
}

/// The client's evaluation of a milestone in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The work is accepted: the milestone will be paid.
    Accepted,
    /// The freelancer must rework it.
    ChangesRequested,
}

/// Commands on a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractCommand {
    /// Make the contract of an accepted proposal (sent by the contract saga as the system actor).
    Initiate {
        /// Must be [`ContractId::for_proposal`] of `proposal_id`.
        contract_id: ContractId,
        /// The accepted proposal.
        proposal_id: ProposalId,
        /// Its job.
        job_id: JobId,
        /// The job's owner.
        client_id: UserId,
        /// The proposal's author.
        freelancer_id: UserId,
        /// The agreed milestones.
        milestones: Vec<ProposedMilestone>,
    },
    /// The freelancer moves a milestone on: OPEN → IN_PROGRESS, or IN_PROGRESS → IN_REVIEW.
    ProgressMilestone {
        /// The milestone.
        milestone_id: MilestoneId,
    },
    /// The client evaluates a milestone in review.
    EvaluateMilestone {
        /// The milestone.
        milestone_id: MilestoneId,
        /// Accepted, or changes requested.
        verdict: Verdict,
    },
    /// A paid payment request marks its milestone PAID (sent by the payment saga as the system actor).
    MarkMilestonePaid {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The request that paid it.
        payment_request_id: PaymentRequestId,
    },
}

/// Events of a contract stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ContractEvent {
    /// A contract was made from an accepted proposal; every milestone is OPEN.
    ContractInitiated {
        /// The contract.
        contract_id: ContractId,
        /// The accepted proposal.
        proposal_id: ProposalId,
        /// Its job.
        job_id: JobId,
        /// The client.
        client_id: UserId,
        /// The freelancer.
        freelancer_id: UserId,
        /// The agreed milestones.
        milestones: Vec<ProposedMilestone>,
        /// When.
        initiated_at: Timestamp,
    },
    /// OPEN → IN_PROGRESS.
    MilestoneStarted {
        /// The contract.
        contract_id: ContractId,
        /// The milestone.
        milestone_id: MilestoneId,
        /// When.
        started_at: Timestamp,
    },
    /// IN_PROGRESS → IN_REVIEW.
    MilestoneSubmitted {
        /// The contract.
        contract_id: ContractId,
        /// The milestone.
        milestone_id: MilestoneId,
        /// When.
        submitted_at: Timestamp,
    },
    /// IN_REVIEW → IN_PROGRESS.
    MilestoneChangesRequested {
        /// The contract.
        contract_id: ContractId,
        /// The milestone.
        milestone_id: MilestoneId,
        /// When.
        requested_at: Timestamp,
    },
    /// IN_REVIEW → ACCEPTED: the payment saga requests `amount` from the client (DESIGN §7).
    MilestoneAccepted {
        /// The contract.
        contract_id: ContractId,
        /// The milestone.
        milestone_id: MilestoneId,
        /// Who pays.
        client_id: UserId,
        /// Who is paid.
        freelancer_id: UserId,
        /// The milestone's amount.
        amount: Money,
        /// When.
        accepted_at: Timestamp,
    },
    /// ACCEPTED → PAID.
    MilestonePaid {
        /// The contract.
        contract_id: ContractId,
        /// The milestone.
        milestone_id: MilestoneId,
        /// The request that paid it.
        payment_request_id: PaymentRequestId,
        /// When.
        paid_at: Timestamp,
    },
    /// Every milestone is paid.
    ContractCompleted {
        /// The contract.
        contract_id: ContractId,
        /// When.
        completed_at: Timestamp,
    },
    /// A termination request was accepted.
    ContractTerminated {
        /// The contract.
        contract_id: ContractId,
        /// The accepted request.
        termination_request_id: TerminationRequestId,
        /// When.
        terminated_at: Timestamp,
    },
}

impl DomainEvent for ContractEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::ContractInitiated { .. } => "ContractInitiated",
            Self::MilestoneStarted { .. } => "MilestoneStarted",
            Self::MilestoneSubmitted { .. } => "MilestoneSubmitted",
            Self::MilestoneChangesRequested { .. } => "MilestoneChangesRequested",
            Self::MilestoneAccepted { .. } => "MilestoneAccepted",
            Self::MilestonePaid { .. } => "MilestonePaid",
            Self::ContractCompleted { .. } => "ContractCompleted",
            Self::ContractTerminated { .. } => "ContractTerminated",
        }
    }
}

/// A milestone's decision state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milestone {
    /// The milestone.
    pub id: MilestoneId,
    /// What it costs.
    pub amount: Money,
    /// When it is due.
    pub due_on: NaiveDate,
    /// Where it stands.
    pub status: MilestoneStatus,
}

/// What decisions need to know about a contract.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contract {
    /// Set once initiated.
    pub initiated: Option<InitiatedContract>,
}

/// An initiated contract's decision state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatedContract {
    /// The contract.
    pub id: ContractId,
    /// The accepted proposal.
    pub proposal_id: ProposalId,
    /// The client.
    pub client_id: UserId,
    /// The freelancer.
    pub freelancer_id: UserId,
    /// Where it stands.
    pub status: ContractStatus,
    /// The milestones, in order.
    pub milestones: Vec<Milestone>,
}

impl InitiatedContract {
    /// Is `user` the client or the freelancer?
    pub fn is_party(&self, user: UserId) -> bool {
        user == self.client_id || user == self.freelancer_id
    }

    /// Refuse any change unless the contract is active (DESIGN §2: nothing changes on a closed one).
    pub fn ensure_active(&self) -> Result<(), DomainError> {
        match self.status {
            ContractStatus::Active => Ok(()),
            ContractStatus::Completed | ContractStatus::Terminated => {
                Err(DomainError::Conflict("contract-closed"))
            }
        }
    }

    /// The milestone `id` of this contract, or 404.
    pub fn milestone(&self, id: MilestoneId) -> Result<&Milestone, DomainError> {
        self.milestones
            .iter()
            .find(|m| m.id == id)
            .ok_or(DomainError::NotFound("milestone"))
    }

    fn set_milestone(&mut self, id: MilestoneId, status: MilestoneStatus) {
        if let Some(m) = self.milestones.iter_mut().find(|m| m.id == id) {
            m.status = status;
        }
    }
}

impl Contract {
    /// Its status, if initiated.
    pub fn status(&self) -> Option<ContractStatus> {
        self.initiated.as_ref().map(|c| c.status)
    }

    /// The initiated contract, or 404.
    pub fn existing(&self) -> Result<&InitiatedContract, DomainError> {
        self.initiated.as_ref().ok_or(DomainError::NotFound("contract"))
    }
}

impl Aggregate for Contract {
    const STREAM_TYPE: &'static str = "contract";
    const CONTEXT: BoundedContext = BoundedContext::Contracts;
    type Event = ContractEvent;

    fn evolve(&mut self, event: &ContractEvent) {
        use ContractEvent::*;
        match event {
            ContractInitiated {
                contract_id,
                proposal_id,
                client_id,
                freelancer_id,
                milestones,
                ..
            } => {
                self.initiated = Some(InitiatedContract {
                    id: *contract_id,
                    proposal_id: *proposal_id,
                    client_id: *client_id,
                    freelancer_id: *freelancer_id,
                    status: ContractStatus::Active,
                    milestones: milestones
                        .iter()
                        .map(|m| Milestone {
                            id: m.milestone_id,
                            amount: m.amount,
                            due_on: m.due_on,
                            status: MilestoneStatus::Open,
                        })
                        .collect(),
                });
            }
            MilestoneStarted { milestone_id, .. } | MilestoneChangesRequested { milestone_id, .. } => {
                self.set_milestone(*milestone_id, MilestoneStatus::InProgress)
            }
            MilestoneSubmitted { milestone_id, .. } => {
                self.set_milestone(*milestone_id, MilestoneStatus::InReview)
            }
            MilestoneAccepted { milestone_id, .. } => {
                self.set_milestone(*milestone_id, MilestoneStatus::Accepted)
            }
            MilestonePaid { milestone_id, .. } => self.set_milestone(*milestone_id, MilestoneStatus::Paid),
            ContractCompleted { .. } => self.set_status(ContractStatus::Completed),
            ContractTerminated { .. } => self.set_status(ContractStatus::Terminated),
        }
    }
}

impl Contract {
    fn set_milestone(&mut self, id: MilestoneId, status: MilestoneStatus) {
        if let Some(c) = &mut self.initiated {
            c.set_milestone(id, status);
        }
    }

    fn set_status(&mut self, status: ContractStatus) {
        if let Some(c) = &mut self.initiated {
            c.status = status;
        }
    }
}

/// Decide what a command on `contract` emits.
pub fn decide(
    contract: &Contract,
    command: &ContractCommand,
    ctx: &Context,
) -> Result<Vec<ContractEvent>, DomainError> {
    match command {
        ContractCommand::Initiate {
            contract_id,
            proposal_id,
            job_id,
            client_id,
            freelancer_id,
            milestones,
        } => {
            ctx.ensure_system()?;
            if let Some(c) = &contract.initiated {
                // DESIGN §7: the saga may replay; the same proposal's contract is already there.
                return if c.proposal_id == *proposal_id {
                    Ok(vec![])
                } else {
                    Err(DomainError::Conflict("contract-already-initiated"))
                };
            }
            let mut errors = Vec::new();
            if *contract_id != ContractId::for_proposal(*proposal_id) {
                errors.push(FieldError::new(
                    "contract_id",
                    "must be derived from the proposal id",
                ));
            }
            if milestones.is_empty() || milestones.len() > MAX_MILESTONES {
                errors.push(FieldError::new("milestones", "1 to 20 milestones"));
            }
            if client_id == freelancer_id {
                errors.push(FieldError::new("freelancer_id", "must differ from the client"));
            }
            if !errors.is_empty() {
                return Err(DomainError::Invalid(errors));
            }
            Ok(vec![ContractEvent::ContractInitiated {
                contract_id: *contract_id,
                proposal_id: *proposal_id,
                job_id: *job_id,
                client_id: *client_id,
                freelancer_id: *freelancer_id,
                milestones: milestones.clone(),
                initiated_at: ctx.now,
            }])
        }
        ContractCommand::ProgressMilestone { milestone_id } => {
            let c = contract.existing()?;
            if ctx.actor.id != c.freelancer_id {
                return Err(DomainError::Forbidden("not-the-freelancer"));
            }
            c.ensure_active()?;
            let (contract_id, milestone_id) = (c.id, *milestone_id);
            match c.milestone(milestone_id)?.status {
                MilestoneStatus::Open => Ok(vec![ContractEvent::MilestoneStarted {
                    contract_id,
                    milestone_id,
                    started_at: ctx.now,
                }]),
                MilestoneStatus::InProgress => Ok(vec![ContractEvent::MilestoneSubmitted {
                    contract_id,
                    milestone_id,
                    submitted_at: ctx.now,
                }]),
                MilestoneStatus::InReview | MilestoneStatus::Accepted | MilestoneStatus::Paid => {
                    Err(DomainError::Conflict("milestone-not-progressable"))
                }
            }
        }
        ContractCommand::EvaluateMilestone {
            milestone_id,
            verdict,
        } => {
            let c = contract.existing()?;
            if ctx.actor.id != c.client_id {
                return Err(DomainError::Forbidden("not-the-client"));
            }
            c.ensure_active()?;
            let m = c.milestone(*milestone_id)?;
            if m.status != MilestoneStatus::InReview {
                return Err(DomainError::Conflict("milestone-not-in-review"));
            }
            Ok(vec![match verdict {
                Verdict::Accepted => ContractEvent::MilestoneAccepted {
                    contract_id: c.id,
                    milestone_id: m.id,
                    client_id: c.client_id,
                    freelancer_id: c.freelancer_id,
                    amount: m.amount,
                    accepted_at: ctx.now,
                },
                Verdict::ChangesRequested => ContractEvent::MilestoneChangesRequested {
                    contract_id: c.id,
                    milestone_id: m.id,
                    requested_at: ctx.now,
                },
            }])
        }
        ContractCommand::MarkMilestonePaid {
            milestone_id,
            payment_request_id,
        } => {
            let c = contract.existing()?;
            ctx.ensure_system()?;
            let m = c.milestone(*milestone_id)?;
            if m.status == MilestoneStatus::Paid {
                // DESIGN §7: a replayed PaymentRequestPaid changes nothing.
                return Ok(vec![]);
            }
            c.ensure_active()?;
            if m.status != MilestoneStatus::Accepted {
                return Err(DomainError::Conflict("milestone-not-accepted"));
            }
            let mut events = vec![ContractEvent::MilestonePaid {
                contract_id: c.id,
                milestone_id: m.id,
                payment_request_id: *payment_request_id,
                paid_at: ctx.now,
            }];
            let all_paid = c
                .milestones
                .iter()
                .all(|other| other.id == m.id || other.status == MilestoneStatus::Paid);
            if all_paid {
                events.push(ContractEvent::ContractCompleted {
                    contract_id: c.id,
                    completed_at: ctx.now,
                });
            }
            Ok(events)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
