//! Property tests: random command sequences against a job and its proposals, checking after every
//! step that at most one proposal is accepted, that accepting settled the others and closed the job,
//! that only the owners acted, and that replaying the events reproduces every state.

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

/// The system actor (index 5) sends no command on jobs and proposals.
const ACTORS: [Actor; 6] = [CLIENT, OTHER_CLIENT, FREELANCER, OTHER_FREELANCER, ADMIN, SYSTEM];
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
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PROPOSALS;
    let a = 0..ACTORS.len();
    prop_oneof![
        4 => (p.clone(), a.clone(), 0..=3usize).prop_map(|(p, actor, milestones)| Op::Submit { p, actor, milestones }),
        1 => (p.clone(), a.clone(), 0..=3usize).prop_map(|(p, actor, milestones)| Op::Update { p, actor, milestones }),
        1 => (p.clone(), a.clone()).prop_map(|(p, actor)| Op::Withdraw { p, actor }),
        1 => (p.clone(), a.clone()).prop_map(|(p, actor)| Op::Reject { p, actor }),
        2 => (p, a.clone()).prop_map(|(p, actor)| Op::Accept { p, actor }),
        1 => a.prop_map(|actor| Op::Close { actor }),
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
            assert!(job.closed, "a job with an accepted proposal is closed");
            assert_eq!(job.accepted_proposal, Some(pid(a)));
            // Accepting settled every proposal the job had then; none is still pending unless it
            // arrived later (it cannot: the job is closed).
            assert!(
                !statuses.contains(&Some(ProposalStatus::Submitted)),
                "a pending proposal survived an acceptance: {statuses:?}"
            );
        }
        let received: Vec<ProposalId> = (0..PROPOSALS)
            .filter(|i| statuses[*i].is_some())
            .map(pid)
            .collect();
        let mut known = job.proposals.clone();
        known.sort();
        assert_eq!(known, received, "the job knows exactly the submitted proposals");
        // Every accepted-proposal event was emitted once, on one stream.
        let accepted_events = self
            .proposals
            .iter()
            .flat_map(|p| &p.history)
            .filter(|e| matches!(e, ProposalEvent::ProposalAccepted { .. }))
            .count();
        assert!(accepted_events <= 1);
        let closes = self
            .job
            .history
            .iter()
            .filter(|e| matches!(e, JobEvent::JobClosed { .. }))
            .count();
        assert!(closes <= 1, "a job closes once");
        self.job.assert_replays();
        for p in &self.proposals {
            p.assert_replays();
        }
    }
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
