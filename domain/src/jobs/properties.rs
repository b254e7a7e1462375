//! Property tests: random command sequences against a job and its proposals, checking after every
//! step that at most one proposal is accepted, that accepting settled the others and closed the job,
//! that only the owners acted (the contract saga's compensation, reverting an acceptance and
//! reopening the job, only by the system actor, in either order), and that replaying the events
//! reproduces every state.

use proptest::prelude::*;
use uuid::Uuid;

use super::{
    accept_proposal::{self, AcceptProposal},
    job::{self, Job, JobCommand, JobEvent},
    proposal::{self, Proposal, ProposalCommand, ProposalEvent, ProposalStatus},
    submit_proposal::{self, SubmitProposal},
};
use crate::testing::*;
use crate::{Actor, DomainError, JobId, ProposalId, Role};

/// The system actor (index 5) sends only the contract saga's compensation on jobs and proposals.
const ACTORS: [Actor; 6] = [CLIENT, OTHER_CLIENT, FREELANCER, OTHER_FREELANCER, ADMIN, SYSTEM];
const THE_SYSTEM: usize = 5;
const PROPOSALS: usize = 4;

fn pid(i: usize) -> ProposalId {
    ProposalId::from_uuid(Uuid::from_u128(0x5000 + i as u128))
}

#[derive(Debug, Clone)]
enum Op {
    Submit {
        p: usize,
        actor: usize,
        milestones: usize,
    },
    Update {
        p: usize,
        actor: usize,
        milestones: usize,
    },
    Withdraw {
        p: usize,
        actor: usize,
    },
    Reject {
        p: usize,
        actor: usize,
    },
    Accept {
        p: usize,
        actor: usize,
    },
    Close {
        actor: usize,
    },
    /// The contract saga reverts an acceptance.
    Revert {
        p: usize,
        actor: usize,
    },
    /// The contract saga reopens the job.
    Reopen {
        actor: usize,
    },
    /// The contract saga's compensation in its order: revert the accepted proposal, then reopen.
    Compensate {
        actor: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PROPOSALS;
    let a = 0..ACTORS.len();
    // A saga's command: mostly the system, sometimes anyone; an acceptance mostly by the owner.
    let saga = prop_oneof![2 => Just(THE_SYSTEM), 1 => a.clone()];
    let owner = prop_oneof![2 => Just(0usize), 1 => a.clone()];
    let freelancer = prop_oneof![1 => 2..4usize, 1 => a.clone()];
    prop_oneof![
        4 => (p.clone(), freelancer, 0..=3usize).prop_map(|(p, actor, milestones)| Op::Submit { p, actor, milestones }),
        1 => (p.clone(), a.clone(), 0..=3usize).prop_map(|(p, actor, milestones)| Op::Update { p, actor, milestones }),
        1 => (p.clone(), a.clone()).prop_map(|(p, actor)| Op::Withdraw { p, actor }),
        1 => (p.clone(), a.clone()).prop_map(|(p, actor)| Op::Reject { p, actor }),
        3 => (p.clone(), owner).prop_map(|(p, actor)| Op::Accept { p, actor }),
        1 => a.prop_map(|actor| Op::Close { actor }),
        2 => (p, saga.clone()).prop_map(|(p, actor)| Op::Revert { p, actor }),
        1 => saga.clone().prop_map(|actor| Op::Reopen { actor }),
        2 => saga.prop_map(|actor| Op::Compensate { actor }),
    ]
}

struct World {
    job: Stream<Job>,
    proposals: Vec<Stream<Proposal>>,
}

impl World {
    fn new() -> Self {
        let mut job = Stream::<Job>::default();
        let posted = job::decide(
            &job.state,
            &JobCommand::Post {
                job_id: JobId::from_uuid(Uuid::from_u128(0x10B)),
                draft: job::tests::draft(),
            },
            &ctx(CLIENT),
        )
        .unwrap();
        job.apply(&posted);
        Self {
            job,
            proposals: (0..PROPOSALS).map(|_| Stream::default()).collect(),
        }
    }

    /// Run one op; `Ok(true)` when it was accepted.
    fn step(&mut self, op: &Op) -> Result<bool, DomainError> {
        match *op {
            Op::Submit { p, actor, milestones } => {
                let command = SubmitProposal {
                    proposal_id: pid(p),
                    terms: proposal::tests::terms(milestones),
                };
                let ctx = ctx(ACTORS[actor]);
                let out =
                    submit_proposal::decide((&self.job.state, &self.proposals[p].state), &command, &ctx)?;
                assert_eq!(ACTORS[actor].role, Role::Freelancer, "only freelancers submit");
                self.job.apply(&out.job);
                self.proposals[p].apply(&out.proposal);
            }
            Op::Update { p, actor, milestones } => {
                let command = ProposalCommand::Update {
                    terms: proposal::tests::terms(milestones),
                };
                let author = self.proposals[p]
                    .state
                    .submitted
                    .as_ref()
                    .map(|q| q.freelancer_id);
                let events = proposal::decide(&self.proposals[p].state, &command, &ctx(ACTORS[actor]))?;
                assert_eq!(Some(ACTORS[actor].id), author, "only the author updates");
                self.proposals[p].apply(&events);
            }
            Op::Withdraw { p, actor } | Op::Reject { p, actor } => {
                let command = if matches!(op, Op::Withdraw { .. }) {
                    ProposalCommand::Withdraw
                } else {
                    ProposalCommand::Reject
                };
                let before = self.proposals[p].state.submitted.clone();
                let events = proposal::decide(&self.proposals[p].state, &command, &ctx(ACTORS[actor]))?;
                let p = before.expect("a decided proposal exists");
                let expected_actor = if command == ProposalCommand::Withdraw {
                    p.freelancer_id
                } else {
                    p.client_id
                };
                assert_eq!(ACTORS[actor].id, expected_actor, "only the owner acts");
                self.proposals[pid_index(p.id)].apply(&events);
            }
            Op::Accept { p, actor } => {
                let others: Vec<Proposal> = (0..PROPOSALS)
                    .filter(|i| *i != p)
                    .map(|i| self.proposals[i].state.clone())
                    .collect();
                let out = accept_proposal::decide(
                    (&self.job.state, &self.proposals[p].state, &others),
                    &AcceptProposal { proposal_id: pid(p) },
                    &ctx(ACTORS[actor]),
                )?;
                assert_eq!(ACTORS[actor], CLIENT, "only the job owner accepts");
                self.job.apply(&out.job);
                self.proposals[p].apply(&out.accepted);
                for (id, events) in &out.rejected {
                    self.proposals[pid_index(*id)].apply(events);
                }
            }
            Op::Close { actor } => {
                let events = job::decide(&self.job.state, &JobCommand::Close, &ctx(ACTORS[actor]))?;
                assert_eq!(ACTORS[actor], CLIENT, "only the job owner closes");
                self.job.apply(&events);
            }
            Op::Revert { p, actor } => {
                let before = self.proposals[p].state.status();
                let command = ProposalCommand::RevertAcceptance {
                    reason: "contract-not-initiated".into(),
                };
                let outcome = proposal::decide(&self.proposals[p].state, &command, &ctx(ACTORS[actor]));
                let events = saga_only(ACTORS[actor], outcome)?;
                assert_eq!(
                    before,
                    Some(ProposalStatus::Accepted),
                    "only an acceptance is reverted"
                );
                self.proposals[p].apply(&events);
                assert_eq!(self.proposals[p].state.status(), Some(ProposalStatus::Submitted));
            }
            Op::Reopen { actor } => {
                let before = self.job.state.clone();
                let command = JobCommand::Reopen {
                    reason: "contract-not-initiated".into(),
                };
                let events = saga_only(ACTORS[actor], job::decide(&before, &command, &ctx(ACTORS[actor])))?;
                assert!(before.closed, "only a closed job is reopened");
                assert!(
                    before.accepted_proposal.is_some(),
                    "only a job closed by an acceptance is reopened"
                );
                self.job.apply(&events);
            }
            Op::Compensate { actor } => {
                let p = (0..PROPOSALS)
                    .find(|i| self.proposals[*i].state.status() == Some(ProposalStatus::Accepted))
                    .unwrap_or(0);
                self.step(&Op::Revert { p, actor })?;
                // The job may have been reopened already (out of order), even closed again since.
                match self.step(&Op::Reopen { actor }) {
                    Ok(_)
                    | Err(DomainError::Conflict("job-not-closed"))
                    | Err(DomainError::Conflict("job-closed-by-owner")) => {}
                    Err(e) => panic!("the saga could not reopen the job: {e:?}"),
                }
            }
        }
        Ok(true)
    }

    fn check_invariants(&self) {
        let statuses: Vec<Option<ProposalStatus>> = self.proposals.iter().map(|p| p.state.status()).collect();
        let accepted: Vec<usize> = (0..PROPOSALS)
            .filter(|i| statuses[*i] == Some(ProposalStatus::Accepted))
            .collect();
        assert!(
            accepted.len() <= 1,
            "more than one accepted proposal: {statuses:?}"
        );
        let job = &self.job.state;
        if let Some(&a) = accepted.first() {
            // The acceptance closed the job; it stands until the saga reopens the job (which it does
            // after reverting the acceptance, but the domain holds in either order).
            let reopened_since = self
                .job
                .history
                .iter()
                .rposition(|e| {
                    matches!(e, JobEvent::JobClosed { accepted_proposal_id, .. }
                        if *accepted_proposal_id == Some(pid(a)))
                })
                .map(|at| {
                    self.job.history[at..]
                        .iter()
                        .any(|e| matches!(e, JobEvent::JobReopened { .. }))
                })
                .expect("an accepted proposal closed the job");
            if !reopened_since {
                assert!(job.closed, "a job with an accepted proposal is closed");
                assert_eq!(job.accepted_proposal, Some(pid(a)));
            }
        }
        if let Some(filled_by) = job.accepted_proposal {
            // While the job stays closed by an acceptance, that proposal is the only one accepted or
            // pending (pending again if reverted): accepting settled the others, and a closed job
            // takes no new proposals.
            assert!(job.closed, "a job with an accepted proposal is closed");
            for (i, status) in statuses.iter().enumerate() {
                if pid(i) != filled_by {
                    assert!(
                        matches!(
                            status,
                            None | Some(ProposalStatus::Rejected | ProposalStatus::Withdrawn)
                        ),
                        "a proposal survived an acceptance: {statuses:?}"
                    );
                }
            }
        }
        let received: Vec<ProposalId> = (0..PROPOSALS)
            .filter(|i| statuses[*i].is_some())
            .map(pid)
            .collect();
        let mut known = job.proposals.clone();
        known.sort();
        assert_eq!(known, received, "the job knows exactly the submitted proposals");
        // Each proposal's acceptances and reverts alternate, starting with an acceptance.
        for p in &self.proposals {
            let mut accepted = false;
            for e in &p.history {
                match e {
                    ProposalEvent::ProposalAccepted { .. } => {
                        assert!(!accepted, "accepted twice without a revert");
                        accepted = true;
                    }
                    ProposalEvent::ProposalAcceptanceReverted { .. } => {
                        assert!(accepted, "reverted without an acceptance");
                        accepted = false;
                    }
                    _ => {}
                }
            }
        }
        // The job's closes and reopenings alternate, starting with a close; only a close by an
        // acceptance is reopened.
        let mut filled: Option<Option<ProposalId>> = None;
        for e in &self.job.history {
            match e {
                JobEvent::JobClosed {
                    accepted_proposal_id, ..
                } => {
                    assert!(filled.is_none(), "a closed job closes again");
                    filled = Some(*accepted_proposal_id);
                }
                JobEvent::JobReopened { .. } => {
                    assert!(
                        matches!(filled, Some(Some(_))),
                        "only a job closed by an acceptance reopens"
                    );
                    filled = None;
                }
                _ => {}
            }
        }
        assert_eq!(filled.is_some(), job.closed);
        self.job.assert_replays();
        for p in &self.proposals {
            p.assert_replays();
        }
    }
}

/// A saga's command: refused with `system-only` exactly when a user sends it (after `NotFound` for a
/// missing stream, which is checked first).
#[track_caller]
fn saga_only<T: std::fmt::Debug>(actor: Actor, outcome: Result<T, DomainError>) -> Result<T, DomainError> {
    match &outcome {
        Err(DomainError::NotFound(_)) => {}
        Err(DomainError::Forbidden("system-only")) => {
            assert!(!actor.is_system(), "the system is refused its own command")
        }
        other => assert!(
            actor.is_system(),
            "only the system sends a saga's command: got {other:?}"
        ),
    }
    outcome
}

fn pid_index(id: ProposalId) -> usize {
    (0..PROPOSALS).find(|i| pid(*i) == id).expect("a known proposal")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_job_commands_keep_the_job_invariants(ops in prop::collection::vec(op(), 1..40)) {
        let mut world = World::new();
        for op in &ops {
            let before_job = world.job.state.clone();
            let before: Vec<Proposal> = world.proposals.iter().map(|p| p.state.clone()).collect();
            if world.step(op).is_err() {
                // A refused command changes nothing.
                prop_assert_eq!(&world.job.state, &before_job);
                for (p, b) in world.proposals.iter().zip(&before) {
                    prop_assert_eq!(&p.state, b);
                }
            }
            world.check_invariants();
        }
    }
}
