//! The TerminationRequest aggregate: one party asks to end a contract early; the other party (or an
//! admin) accepts, which terminates the contract, or rejects. A request is handled once.
//!
//! Every decision reads the contract too (its parties and whether it is still active), and
//! accepting appends `ContractTerminated` to the contract stream in the same transaction.

use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoundedContext, Context, ContractId, DomainError, DomainEvent, Role, TerminationRequestId,
    Timestamp, UserId,
    contracts::contract::{Contract, ContractEvent},
};

/// Commands on a termination request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationCommand {
    /// A party asks to terminate an active contract.
    Request {
        /// The new request's id (v7, chosen by the caller).
        termination_request_id: TerminationRequestId,
        /// The contract.
        contract_id: ContractId,
        /// Why: 1 to 2,000 characters.
        reason: String,
    },
    /// The other party or an admin agrees: the contract is terminated.
    Accept,
    /// The other party or an admin refuses: the contract goes on.
    Reject,
}

/// Events of a termination request stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TerminationEvent {
    /// A party asked to terminate the contract.
    TerminationRequested {
        /// The request.
        termination_request_id: TerminationRequestId,
        /// The contract.
        contract_id: ContractId,
        /// The party asking.
        requested_by: UserId,
        /// Why.
        reason: String,
        /// When.
        requested_at: Timestamp,
    },
    /// The request was accepted (the contract stream gets `ContractTerminated`).
    TerminationAccepted {
        /// The request.
        termination_request_id: TerminationRequestId,
        /// The contract.
        contract_id: ContractId,
        /// The other party or an admin.
        accepted_by: UserId,
        /// When.
        accepted_at: Timestamp,
    },
    /// The request was rejected.
    TerminationRejected {
        /// The request.
        termination_request_id: TerminationRequestId,
        /// The contract.
        contract_id: ContractId,
        /// The other party or an admin.
        rejected_by: UserId,
        /// When.
        rejected_at: Timestamp,
    },
}

impl DomainEvent for TerminationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::TerminationRequested { .. } => "TerminationRequested",
            Self::TerminationAccepted { .. } => "TerminationAccepted",
            Self::TerminationRejected { .. } => "TerminationRejected",
        }
    }
}

/// Where a termination request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TerminationStatus {
    /// Waiting for the other party.
    Pending,
    /// Accepted: the contract is terminated.
    Accepted,
    /// Rejected.
    Rejected,
}

/// What decisions need to know about a termination request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminationRequest {
    /// Set once requested.
    pub requested: Option<RequestedTermination>,
}

/// A requested termination's decision state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedTermination {
    /// The request.
    pub id: TerminationRequestId,
    /// The contract.
    pub contract_id: ContractId,
    /// The party asking.
    pub requested_by: UserId,
    /// Where it stands.
    pub status: TerminationStatus,
}

impl Aggregate for TerminationRequest {
    const STREAM_TYPE: &'static str = "termination";
    const CONTEXT: BoundedContext = BoundedContext::Contracts;
    type Event = TerminationEvent;

    fn evolve(&mut self, event: &TerminationEvent) {
        match event {
            TerminationEvent::TerminationRequested {
                termination_request_id,
                contract_id,
                requested_by,
                ..
            } => {
                self.requested = Some(RequestedTermination {
                    id: *termination_request_id,
                    contract_id: *contract_id,
                    requested_by: *requested_by,
                    status: TerminationStatus::Pending,
                });
            }
            TerminationEvent::TerminationAccepted { .. } => self.set_status(TerminationStatus::Accepted),
            TerminationEvent::TerminationRejected { .. } => self.set_status(TerminationStatus::Rejected),
        }
    }
}

impl TerminationRequest {
    fn set_status(&mut self, status: TerminationStatus) {
        if let Some(r) = &mut self.requested {
            r.status = status;
        }
    }
}

/// What a termination decision appends, per stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminationEvents {
    /// To the contract stream (only when a request is accepted).
    pub contract: Vec<ContractEvent>,
    /// To the termination request stream.
    pub termination: Vec<TerminationEvent>,
}

/// Decide a command on `request`, reading (and, on acceptance, terminating) its `contract`.
pub fn decide(
    (contract, request): (&Contract, &TerminationRequest),
    command: &TerminationCommand,
    ctx: &Context,
) -> Result<TerminationEvents, DomainError> {
    match command {
        TerminationCommand::Request {
            termination_request_id,
            contract_id,
            reason,
        } => {
            let c = contract.existing()?;
            if c.id != *contract_id {
                return Err(DomainError::NotFound("contract"));
            }
            if !c.is_party(ctx.actor.id) {
                return Err(DomainError::Forbidden("not-a-party"));
            }
            if request.requested.is_some() {
                return Err(DomainError::Conflict("termination-already-requested"));
            }
            let reason = reason.trim();
            if !(1..=2_000).contains(&reason.chars().count()) {
                return Err(DomainError::invalid("reason", "1 to 2000 characters"));
            }
            c.ensure_active()?;
            Ok(TerminationEvents {
                contract: vec![],
                termination: vec![TerminationEvent::TerminationRequested {
                    termination_request_id: *termination_request_id,
                    contract_id: c.id,
                    requested_by: ctx.actor.id,
                    reason: reason.to_owned(),
                    requested_at: ctx.now,
                }],
            })
        }
        TerminationCommand::Accept | TerminationCommand::Reject => {
            let r = request
                .requested
                .as_ref()
                .ok_or(DomainError::NotFound("termination-request"))?;
            let c = contract.existing()?;
            if c.id != r.contract_id {
                return Err(DomainError::NotFound("contract"));
            }
            if ctx.actor.id == r.requested_by {
                return Err(DomainError::Forbidden("requester-cannot-answer"));
            }
            if !c.is_party(ctx.actor.id) && ctx.actor.role != Role::Admin {
                return Err(DomainError::Forbidden("not-a-party"));
            }
            if r.status != TerminationStatus::Pending {
                return Err(DomainError::Conflict("termination-already-handled"));
            }
            if matches!(command, TerminationCommand::Reject) {
                return Ok(TerminationEvents {
                    contract: vec![],
                    termination: vec![TerminationEvent::TerminationRejected {
                        termination_request_id: r.id,
                        contract_id: c.id,
                        rejected_by: ctx.actor.id,
                        rejected_at: ctx.now,
                    }],
                });
            }
            c.ensure_active()?;
            Ok(TerminationEvents {
                contract: vec![ContractEvent::ContractTerminated {
                    contract_id: c.id,
                    termination_request_id: r.id,
                    terminated_at: ctx.now,
                }],
                termination: vec![TerminationEvent::TerminationAccepted {
                    termination_request_id: r.id,
                    contract_id: c.id,
                    accepted_by: ctx.actor.id,
                    accepted_at: ctx.now,
                }],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::contract::tests::{
        accepted, completed, contract_id, initiated, paid, started, submitted,
    };
    use crate::testing::*;
    use crate::{Actor, Aggregate};
    use uuid::Uuid;

    const REQUEST: TerminationRequestId = TerminationRequestId::from_uuid(Uuid::from_u128(0x7E));

    fn active() -> Contract {
        Contract::fold(&[initiated(2)])
    }

    fn request_cmd(reason: &str) -> TerminationCommand {
        TerminationCommand::Request {
            termination_request_id: REQUEST,
            contract_id: contract_id(),
            reason: reason.into(),
        }
    }

    fn requested_by(user: UserId) -> TerminationEvent {
        TerminationEvent::TerminationRequested {
            termination_request_id: REQUEST,
            contract_id: contract_id(),
            requested_by: user,
            reason: "no time".into(),
            requested_at: now(),
        }
    }

    fn pending(by: UserId) -> TerminationRequest {
        TerminationRequest::fold(&[requested_by(by)])
    }

    fn run(
        contract: Contract,
        request: TerminationRequest,
        actor: Actor,
        command: TerminationCommand,
    ) -> Then<TerminationEvents> {
        given_state((contract, request)).when(move |(c, r)| decide((c, r), &command, &ctx(actor)))
    }

    #[test]
    fn a_party_requests_termination() {
        for actor in [CLIENT, FREELANCER] {
            run(
                active(),
                TerminationRequest::default(),
                actor,
                request_cmd(" no time "),
            )
            .then(TerminationEvents {
                contract: vec![],
                termination: vec![requested_by(actor.id)],
            });
        }
    }

    #[test]
    fn only_a_party_requests_termination() {
        for actor in [OTHER_CLIENT, OTHER_FREELANCER, ADMIN, SYSTEM] {
            run(active(), TerminationRequest::default(), actor, request_cmd("x"))
                .then_err(DomainError::Forbidden("not-a-party"));
        }
    }

    #[test]
    fn a_termination_needs_a_reason() {
        run(active(), TerminationRequest::default(), CLIENT, request_cmd("  ")).then_invalid(&["reason"]);
    }

    #[test]
    fn a_closed_contract_cannot_be_asked_to_terminate() {
        let done = Contract::fold(&[
            initiated(1),
            started(0),
            submitted(0),
            accepted(0),
            paid(0),
            completed(),
        ]);
        run(done, TerminationRequest::default(), CLIENT, request_cmd("x"))
            .then_err(DomainError::Conflict("contract-closed"));
    }

    #[test]
    fn terminating_a_missing_contract_is_not_found() {
        run(
            Contract::default(),
            TerminationRequest::default(),
            CLIENT,
            request_cmd("x"),
        )
        .then_err(DomainError::NotFound("contract"));
    }

    #[test]
    fn a_termination_request_is_made_once() {
        run(active(), pending(CLIENT_ID), CLIENT, request_cmd("x"))
            .then_err(DomainError::Conflict("termination-already-requested"));
    }

    #[test]
    fn the_other_party_accepting_terminates_the_contract() {
        run(
            active(),
            pending(CLIENT_ID),
            FREELANCER,
            TerminationCommand::Accept,
        )
        .then(TerminationEvents {
            contract: vec![ContractEvent::ContractTerminated {
                contract_id: contract_id(),
                termination_request_id: REQUEST,
                terminated_at: now(),
            }],
            termination: vec![TerminationEvent::TerminationAccepted {
                termination_request_id: REQUEST,
                contract_id: contract_id(),
                accepted_by: FREELANCER_ID,
                accepted_at: now(),
            }],
        });
    }

    #[test]
    fn an_admin_may_accept_a_termination() {
        let outcome = run(active(), pending(CLIENT_ID), ADMIN, TerminationCommand::Accept).then_ok();
        assert_eq!(outcome.contract.len(), 1);
    }

    #[test]
    fn the_requester_cannot_answer_their_own_request() {
        for command in [TerminationCommand::Accept, TerminationCommand::Reject] {
            run(active(), pending(CLIENT_ID), CLIENT, command)
                .then_err(DomainError::Forbidden("requester-cannot-answer"));
        }
    }

    #[test]
    fn outsiders_cannot_answer_a_request() {
        for actor in [OTHER_FREELANCER, SYSTEM] {
            for command in [TerminationCommand::Accept, TerminationCommand::Reject] {
                run(active(), pending(CLIENT_ID), actor, command)
                    .then_err(DomainError::Forbidden("not-a-party"));
            }
        }
    }

    #[test]
    fn the_other_party_rejects_a_termination() {
        run(
            active(),
            pending(FREELANCER_ID),
            CLIENT,
            TerminationCommand::Reject,
        )
        .then(TerminationEvents {
            contract: vec![],
            termination: vec![TerminationEvent::TerminationRejected {
                termination_request_id: REQUEST,
                contract_id: contract_id(),
                rejected_by: CLIENT_ID,
                rejected_at: now(),
            }],
        });
    }

    #[test]
    fn a_termination_request_is_handled_once() {
        let mut handled = pending(CLIENT_ID);
        handled.evolve(&TerminationEvent::TerminationRejected {
            termination_request_id: REQUEST,
            contract_id: contract_id(),
            rejected_by: FREELANCER_ID,
            rejected_at: now(),
        });
        for command in [TerminationCommand::Accept, TerminationCommand::Reject] {
            run(active(), handled.clone(), FREELANCER, command)
                .then_err(DomainError::Conflict("termination-already-handled"));
        }
    }

    #[test]
    fn accepting_on_a_closed_contract_is_refused() {
        let mut done = active();
        done.evolve(&crate::contracts::contract::tests::terminated());
        run(done, pending(CLIENT_ID), FREELANCER, TerminationCommand::Accept)
            .then_err(DomainError::Conflict("contract-closed"));
    }

    #[test]
    fn answering_a_missing_request_is_not_found() {
        run(
            active(),
            TerminationRequest::default(),
            FREELANCER,
            TerminationCommand::Accept,
        )
        .then_err(DomainError::NotFound("termination-request"));
    }

    #[test]
    fn termination_events_round_trip() {
        assert_round_trip(&[
            requested_by(CLIENT_ID),
            TerminationEvent::TerminationAccepted {
                termination_request_id: REQUEST,
                contract_id: contract_id(),
                accepted_by: FREELANCER_ID,
                accepted_at: now(),
            },
            TerminationEvent::TerminationRejected {
                termination_request_id: REQUEST,
                contract_id: contract_id(),
                rejected_by: FREELANCER_ID,
                rejected_at: now(),
            },
        ]);
    }
}
