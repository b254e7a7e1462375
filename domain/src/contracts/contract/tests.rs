//! Given / when / then for every contract command and rule.

use super::*;
use crate::jobs::proposal::tests::{JOB, PROPOSAL, milestones};
use crate::testing::*;
use crate::{Actor, DomainError};

pub fn contract_id() -> ContractId {
    ContractId::for_proposal(PROPOSAL)
}

pub fn m(i: usize) -> MilestoneId {
    MilestoneId::for_proposal(PROPOSAL, i)
}

pub fn initiate(n: usize) -> ContractCommand {
    ContractCommand::Initiate {
        contract_id: contract_id(),
        proposal_id: PROPOSAL,
        job_id: JOB,
        client_id: CLIENT_ID,
        freelancer_id: FREELANCER_ID,
        milestones: milestones(PROPOSAL, n),
    }
}

/// The contract of `PROPOSAL` with `n` milestones of 100.00 USD.
pub fn initiated(n: usize) -> ContractEvent {
    ContractEvent::ContractInitiated {
        contract_id: contract_id(),
        proposal_id: PROPOSAL,
        job_id: JOB,
        client_id: CLIENT_ID,
        freelancer_id: FREELANCER_ID,
        milestones: milestones(PROPOSAL, n),
        initiated_at: now(),
    }
}

pub fn started(i: usize) -> ContractEvent {
    ContractEvent::MilestoneStarted {
        contract_id: contract_id(),
        milestone_id: m(i),
        started_at: now(),
    }
}

pub fn submitted(i: usize) -> ContractEvent {
    ContractEvent::MilestoneSubmitted {
        contract_id: contract_id(),
        milestone_id: m(i),
        submitted_at: now(),
    }
}

pub fn accepted(i: usize) -> ContractEvent {
    ContractEvent::MilestoneAccepted {
        contract_id: contract_id(),
        milestone_id: m(i),
        client_id: CLIENT_ID,
        freelancer_id: FREELANCER_ID,
        amount: usd(10_000),
        accepted_at: now(),
    }
}

pub fn request(i: usize) -> PaymentRequestId {
    PaymentRequestId::for_milestone(m(i))
}

pub fn paid(i: usize) -> ContractEvent {
    ContractEvent::MilestonePaid {
        contract_id: contract_id(),
        milestone_id: m(i),
        payment_request_id: request(i),
        paid_at: now(),
    }
}

pub fn completed() -> ContractEvent {
    ContractEvent::ContractCompleted {
        contract_id: contract_id(),
        completed_at: now(),
    }
}

pub fn terminated() -> ContractEvent {
    ContractEvent::ContractTerminated {
        contract_id: contract_id(),
        termination_request_id: TerminationRequestId::from_uuid(uuid::Uuid::from_u128(0x7E)),
        terminated_at: now(),
    }
}

fn progress(i: usize) -> ContractCommand {
    ContractCommand::ProgressMilestone { milestone_id: m(i) }
}

fn evaluate(i: usize, verdict: Verdict) -> ContractCommand {
    ContractCommand::EvaluateMilestone {
        milestone_id: m(i),
        verdict,
    }
}

fn mark_paid(i: usize) -> ContractCommand {
    ContractCommand::MarkMilestonePaid {
        milestone_id: m(i),
        payment_request_id: request(i),
    }
}

fn run(
    events: Vec<ContractEvent>,
    actor: Actor,
    command: ContractCommand,
) -> crate::testing::Then<Vec<ContractEvent>> {
    given::<Contract>(events).when(move |c| decide(c, &command, &ctx(actor)))
}

/// Every user a token can carry: none of them may send a saga's command.
pub const USERS: [Actor; 5] = [CLIENT, FREELANCER, OTHER_CLIENT, OTHER_FREELANCER, ADMIN];

#[test]
fn the_saga_initiates_a_contract_as_the_system() {
    run(vec![], SYSTEM, initiate(2)).then([initiated(2)]);
}

#[test]
fn only_the_system_initiates_a_contract() {
    for actor in USERS {
        run(vec![], actor, initiate(2)).then_err(DomainError::Forbidden("system-only"));
        // Not even as a replay of the saga's own command.
        run(vec![initiated(2)], actor, initiate(2)).then_err(DomainError::Forbidden("system-only"));
    }
}

#[test]
fn a_replayed_initiation_changes_nothing() {
    run(vec![initiated(2)], SYSTEM, initiate(2)).then([]);
}

#[test]
fn a_contract_is_initiated_from_one_proposal_only() {
    let other = crate::ProposalId::from_uuid(uuid::Uuid::from_u128(0x42));
    let command = ContractCommand::Initiate {
        contract_id: contract_id(),
        proposal_id: other,
        job_id: JOB,
        client_id: CLIENT_ID,
        freelancer_id: FREELANCER_ID,
        milestones: milestones(other, 1),
    };
    run(vec![initiated(2)], SYSTEM, command).then_err(DomainError::Conflict("contract-already-initiated"));
}

#[test]
fn an_initiation_needs_a_derived_id_milestones_and_two_parties() {
    let command = ContractCommand::Initiate {
        contract_id: ContractId::from_uuid(uuid::Uuid::from_u128(1)),
        proposal_id: PROPOSAL,
        job_id: JOB,
        client_id: CLIENT_ID,
        freelancer_id: CLIENT_ID,
        milestones: vec![],
    };
    given::<Contract>([])
        .when(|c| decide(c, &command, &ctx(SYSTEM)))
        .then_invalid(&["contract_id", "milestones", "freelancer_id"]);
}

#[test]
fn the_freelancer_starts_an_open_milestone() {
    run(vec![initiated(2)], FREELANCER, progress(0)).then([started(0)]);
}

#[test]
fn the_freelancer_submits_a_milestone_in_progress() {
    run(vec![initiated(2), started(0)], FREELANCER, progress(0)).then([submitted(0)]);
}

#[test]
fn only_the_freelancer_progresses_a_milestone() {
    for actor in [CLIENT, OTHER_FREELANCER, ADMIN, SYSTEM] {
        run(vec![initiated(2)], actor, progress(0)).then_err(DomainError::Forbidden("not-the-freelancer"));
    }
}

#[test]
fn a_milestone_in_review_or_later_cannot_be_progressed() {
    let base = vec![initiated(1), started(0), submitted(0)];
    run(base.clone(), FREELANCER, progress(0)).then_err(DomainError::Conflict("milestone-not-progressable"));
    let accepted = [base.clone(), vec![accepted(0)]].concat();
    run(accepted, FREELANCER, progress(0)).then_err(DomainError::Conflict("milestone-not-progressable"));
}

#[test]
fn an_unknown_milestone_is_not_found() {
    let unknown = ContractCommand::ProgressMilestone {
        milestone_id: MilestoneId::from_uuid(uuid::Uuid::from_u128(9)),
    };
    run(vec![initiated(1)], FREELANCER, unknown).then_err(DomainError::NotFound("milestone"));
}

#[test]
fn commands_on_a_missing_contract_are_not_found() {
    run(vec![], FREELANCER, progress(0)).then_err(DomainError::NotFound("contract"));
    run(vec![], CLIENT, evaluate(0, Verdict::Accepted)).then_err(DomainError::NotFound("contract"));
    run(vec![], SYSTEM, mark_paid(0)).then_err(DomainError::NotFound("contract"));
}

#[test]
fn the_client_accepts_a_milestone_in_review() {
    run(
        vec![initiated(2), started(0), submitted(0)],
        CLIENT,
        evaluate(0, Verdict::Accepted),
    )
    .then([accepted(0)]);
}

#[test]
fn the_client_asks_for_changes_to_a_milestone_in_review() {
    run(
        vec![initiated(2), started(0), submitted(0)],
        CLIENT,
        evaluate(0, Verdict::ChangesRequested),
    )
    .then([ContractEvent::MilestoneChangesRequested {
        contract_id: contract_id(),
        milestone_id: m(0),
        requested_at: now(),
    }]);
}

#[test]
fn only_the_client_evaluates_a_milestone() {
    for actor in [FREELANCER, OTHER_CLIENT, ADMIN, SYSTEM] {
        run(
            vec![initiated(1), started(0), submitted(0)],
            actor,
            evaluate(0, Verdict::Accepted),
        )
        .then_err(DomainError::Forbidden("not-the-client"));
    }
}

#[test]
fn only_a_milestone_in_review_is_evaluated() {
    for history in [vec![initiated(1)], vec![initiated(1), started(0)]] {
        run(history, CLIENT, evaluate(0, Verdict::Accepted))
            .then_err(DomainError::Conflict("milestone-not-in-review"));
    }
}

#[test]
fn a_payment_marks_an_accepted_milestone_paid() {
    run(
        vec![initiated(2), started(0), submitted(0), accepted(0)],
        SYSTEM,
        mark_paid(0),
    )
    .then([paid(0)]);
}

#[test]
fn the_contract_completes_when_the_last_milestone_is_paid() {
    let history = vec![
        initiated(2),
        started(0),
        submitted(0),
        accepted(0),
        paid(0),
        started(1),
        submitted(1),
        accepted(1),
    ];
    run(history, SYSTEM, mark_paid(1)).then([paid(1), completed()]);
}

#[test]
fn only_a_payment_marks_a_milestone_paid() {
    run(vec![initiated(1), started(0), submitted(0)], SYSTEM, mark_paid(0))
        .then_err(DomainError::Conflict("milestone-not-accepted"));
}

#[test]
fn only_the_system_marks_a_milestone_paid() {
    for actor in USERS {
        run(
            vec![initiated(1), started(0), submitted(0), accepted(0)],
            actor,
            mark_paid(0),
        )
        .then_err(DomainError::Forbidden("system-only"));
    }
}

#[test]
fn a_replayed_payment_changes_nothing() {
    let history = vec![
        initiated(1),
        started(0),
        submitted(0),
        accepted(0),
        paid(0),
        completed(),
    ];
    run(history.clone(), SYSTEM, mark_paid(0)).then([]);
    run(history, CLIENT, mark_paid(0)).then_err(DomainError::Forbidden("system-only"));
}

#[test]
fn a_replayed_payment_on_an_active_contract_changes_nothing() {
    // Milestone 0 is paid by its request, milestone 1 is not: the replay neither pays again nor
    // completes the contract.
    let history = vec![
        initiated(2),
        started(0),
        submitted(0),
        accepted(0),
        paid(0),
        started(1),
        submitted(1),
        accepted(1),
    ];
    run(history.clone(), SYSTEM, mark_paid(0)).then([]);
    // The last milestone's payment still completes it.
    run(history, SYSTEM, mark_paid(1)).then([paid(1), completed()]);
}

#[test]
fn nothing_changes_on_a_completed_contract() {
    let history = vec![
        initiated(1),
        started(0),
        submitted(0),
        accepted(0),
        paid(0),
        completed(),
    ];
    run(history.clone(), FREELANCER, progress(0)).then_err(DomainError::Conflict("contract-closed"));
    run(history, CLIENT, evaluate(0, Verdict::Accepted)).then_err(DomainError::Conflict("contract-closed"));
}

#[test]
fn nothing_changes_on_a_terminated_contract() {
    let history = vec![initiated(2), started(0), submitted(0), accepted(0), terminated()];
    run(history.clone(), FREELANCER, progress(1)).then_err(DomainError::Conflict("contract-closed"));
    run(history.clone(), CLIENT, evaluate(0, Verdict::Accepted))
        .then_err(DomainError::Conflict("contract-closed"));
    run(history, SYSTEM, mark_paid(0)).then_err(DomainError::Conflict("contract-closed"));
}

#[test]
fn milestone_edges_are_exactly_the_design_ones() {
    use MilestoneStatus::*;
    let all = [Open, InProgress, InReview, Accepted, Paid];
    let legal = [
        (Open, InProgress),
        (InProgress, InReview),
        (InReview, InProgress),
        (InReview, Accepted),
        (Accepted, Paid),
    ];
    for from in all {
        for to in all {
            assert_eq!(
                from.can_become(to),
                legal.contains(&(from, to)),
                "{from:?} -> {to:?}"
            );
        }
    }
}

#[test]
fn contract_events_round_trip() {
    assert_round_trip(&[
        initiated(2),
        started(0),
        submitted(0),
        ContractEvent::MilestoneChangesRequested {
            contract_id: contract_id(),
            milestone_id: m(0),
            requested_at: now(),
        },
        accepted(0),
        paid(0),
        completed(),
        terminated(),
    ]);
}
