//! Property tests: random command sequences against a contract and its termination requests,
//! checking after every step that milestones only move along legal edges by the right actor (a
//! saga's command by the system actor only, a user's command never by it), that the contract is
//! completed exactly when every milestone is paid, that a closed contract never changes, that a
//! termination request is handled once, and that replaying reproduces every state.

use proptest::prelude::*;
use std::fmt::Debug;
use uuid::Uuid;

use super::{
    contract::{self, Contract, ContractCommand, ContractStatus, MilestoneStatus, Verdict, tests as fx},
    termination::{self, TerminationCommand, TerminationEvent, TerminationRequest},
};
use crate::testing::*;
use crate::{Actor, DomainError, PaymentRequestId, Role, TerminationRequestId};

/// Index 5 is the system actor (the contract and payment sagas).
const ACTORS: [Actor; 6] = [CLIENT, OTHER_CLIENT, FREELANCER, OTHER_FREELANCER, ADMIN, SYSTEM];
const THE_SYSTEM: usize = 5;
const REQUESTS: usize = 3;

/// `Initiate` replays the contract saga's initiation (the contract exists from the start).
#[derive(Debug, Clone)]
enum Op {
    Initiate { actor: usize },
    Progress { m: usize, actor: usize },
    Evaluate { m: usize, accept: bool, actor: usize },
    MarkPaid { m: usize, actor: usize },
    RequestTermination { r: usize, actor: usize },
    AnswerTermination { r: usize, accept: bool, actor: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..5usize;
    let a = 0..ACTORS.len();
    // A saga's command: mostly the system, sometimes anyone.
    let saga = prop_oneof![2 => Just(THE_SYSTEM), 1 => a.clone()];
    prop_oneof![
        1 => a.clone().prop_map(|actor| Op::Initiate { actor }),
        6 => (m.clone(), a.clone()).prop_map(|(m, actor)| Op::Progress { m, actor }),
        4 => (m.clone(), any::<bool>(), a.clone()).prop_map(|(m, accept, actor)| Op::Evaluate { m, accept, actor }),
        3 => (m, saga).prop_map(|(m, actor)| Op::MarkPaid { m, actor }),
        1 => (0..REQUESTS, a.clone()).prop_map(|(r, actor)| Op::RequestTermination { r, actor }),
        1 => (0..REQUESTS, any::<bool>(), a).prop_map(|(r, accept, actor)| Op::AnswerTermination { r, accept, actor }),
    ]
}

/// A saga's command: refused with `system-only` exactly when a user sends it.
#[track_caller]
fn saga_only<T: Debug>(actor: Actor, outcome: Result<T, DomainError>) -> Result<T, DomainError> {
    let refused_as_a_user = matches!(outcome, Err(DomainError::Forbidden("system-only")));
    assert_eq!(
        refused_as_a_user,
        !actor.is_system(),
        "only the system sends a saga's command: {actor:?} got {outcome:?}"
    );
    outcome
}

/// A user's command: never done by the system actor, which is nobody (the nil user id).
#[track_caller]
fn user_only<T: Debug>(actor: Actor, outcome: Result<T, DomainError>) -> Result<T, DomainError> {
    if actor.is_system() {
        assert!(
            matches!(outcome, Err(DomainError::Forbidden(_) | DomainError::NotFound(_))),
            "the system does no user's command: got {outcome:?}"
        );
    }
    outcome
}

fn rid(i: usize) -> TerminationRequestId {
    TerminationRequestId::from_uuid(Uuid::from_u128(0x7000 + i as u128))
}

struct World {
    contract: Stream<Contract>,
    requests: Vec<Stream<TerminationRequest>>,
}

impl World {
    fn new(milestones: usize) -> Self {
        let mut contract = Stream::<Contract>::default();
        let events = contract::decide(&contract.state, &fx::initiate(milestones), &ctx(SYSTEM)).unwrap();
        contract.apply(&events);
        Self {
            contract,
            requests: (0..REQUESTS).map(|_| Stream::default()).collect(),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), DomainError> {
        let c = &self.contract.state;
        match *op {
            Op::Initiate { actor } => {
                let outcome = contract::decide(c, &fx::initiate(1), &ctx(ACTORS[actor]));
                let events = saga_only(ACTORS[actor], outcome)?;
                assert!(events.is_empty(), "a replayed initiation changes nothing");
            }
            Op::Progress { m, actor } => {
                let command = ContractCommand::ProgressMilestone {
                    milestone_id: fx::m(m),
                };
                let events = user_only(ACTORS[actor], contract::decide(c, &command, &ctx(ACTORS[actor])))?;
                assert_eq!(ACTORS[actor], FREELANCER, "only the freelancer progresses");
                self.contract.apply(&events);
            }
            Op::Evaluate { m, accept, actor } => {
                let verdict = if accept {
                    Verdict::Accepted
                } else {
                    Verdict::ChangesRequested
                };
                let command = ContractCommand::EvaluateMilestone {
                    milestone_id: fx::m(m),
                    verdict,
                };
                let events = user_only(ACTORS[actor], contract::decide(c, &command, &ctx(ACTORS[actor])))?;
                assert_eq!(ACTORS[actor], CLIENT, "only the client evaluates");
                self.contract.apply(&events);
            }
            Op::MarkPaid { m, actor } => {
                let command = ContractCommand::MarkMilestonePaid {
                    milestone_id: fx::m(m),
                    payment_request_id: PaymentRequestId::for_milestone(fx::m(m)),
                };
                let events = saga_only(ACTORS[actor], contract::decide(c, &command, &ctx(ACTORS[actor])))?;
                assert_eq!(ACTORS[actor], SYSTEM, "only the payment saga marks paid");
                self.contract.apply(&events);
            }
            Op::RequestTermination { r, actor } => {
                let command = TerminationCommand::Request {
                    termination_request_id: rid(r),
                    contract_id: fx::contract_id(),
                    reason: "enough".into(),
                };
                let outcome =
                    termination::decide((c, &self.requests[r].state), &command, &ctx(ACTORS[actor]));
                let out = user_only(ACTORS[actor], outcome)?;
                assert!(
                    [CLIENT, FREELANCER].contains(&ACTORS[actor]),
                    "only a party requests"
                );
                assert!(out.contract.is_empty());
                self.requests[r].apply(&out.termination);
            }
            Op::AnswerTermination { r, accept, actor } => {
                let command = if accept {
                    TerminationCommand::Accept
                } else {
                    TerminationCommand::Reject
                };
                let outcome =
                    termination::decide((c, &self.requests[r].state), &command, &ctx(ACTORS[actor]));
                let out = user_only(ACTORS[actor], outcome)?;
                let requester = self.requests[r].state.requested.as_ref().map(|q| q.requested_by);
                assert_ne!(Some(ACTORS[actor].id), requester, "the requester never answers");
                assert!(
                    [CLIENT, FREELANCER].contains(&ACTORS[actor]) || ACTORS[actor].role == Role::Admin,
                    "only the other party or an admin answers"
                );
                self.contract.apply(&out.contract);
                self.requests[r].apply(&out.termination);
            }
        }
        Ok(())
    }

    fn check(&self, before: &Contract) {
        let (Some(b), Some(a)) = (&before.initiated, &self.contract.state.initiated) else {
            panic!("the contract exists")
        };
        if b.status != ContractStatus::Active {
            assert_eq!(before, &self.contract.state, "a closed contract never changes");
        }
        for (mb, ma) in b.milestones.iter().zip(&a.milestones) {
            assert!(
                mb.status == ma.status || mb.status.can_become(ma.status),
                "illegal edge {:?} -> {:?}",
                mb.status,
                ma.status
            );
        }
        let all_paid = a.milestones.iter().all(|m| m.status == MilestoneStatus::Paid);
        assert_eq!(
            a.status == ContractStatus::Completed,
            all_paid,
            "completed exactly when all paid"
        );
        for r in &self.requests {
            let answers = r
                .history
                .iter()
                .filter(|e| !matches!(e, TerminationEvent::TerminationRequested { .. }))
                .count();
            assert!(answers <= 1, "a termination request is handled once");
            r.assert_replays();
        }
        let accepted_terminations = self
            .requests
            .iter()
            .flat_map(|r| &r.history)
            .filter(|e| matches!(e, TerminationEvent::TerminationAccepted { .. }))
            .count();
        assert_eq!(accepted_terminations > 0, a.status == ContractStatus::Terminated);
        self.contract.assert_replays();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_contract_commands_keep_the_contract_invariants(
        milestones in 1..=4usize,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut world = World::new(milestones);
        for op in &ops {
            let before = world.contract.state.clone();
            let before_requests: Vec<TerminationRequest> = world.requests.iter().map(|r| r.state.clone()).collect();
            if world.step(op).is_err() {
                prop_assert_eq!(&world.contract.state, &before, "a refused command changes nothing");
                for (r, b) in world.requests.iter().zip(&before_requests) {
                    prop_assert_eq!(&r.state, b);
                }
            }
            world.check(&before);
        }
    }

    #[test]
    fn a_faithful_run_completes_the_contract(milestones in 1..=20usize, changes in prop::collection::vec(any::<bool>(), 20)) {
        let mut world = World::new(milestones);
        for (m, change) in changes.iter().copied().enumerate().take(milestones) {
            for op in [Op::Progress { m, actor: 2 }, Op::Progress { m, actor: 2 }] {
                world.step(&op).unwrap();
            }
            if change {
                world.step(&Op::Evaluate { m, accept: false, actor: 0 }).unwrap();
                world.step(&Op::Progress { m, actor: 2 }).unwrap();
            }
            world.step(&Op::Evaluate { m, accept: true, actor: 0 }).unwrap();
            let before = world.contract.state.clone();
            world.step(&Op::MarkPaid { m, actor: THE_SYSTEM }).unwrap();
            world.check(&before);
        }
        prop_assert_eq!(world.contract.state.status(), Some(ContractStatus::Completed));
    }
}
