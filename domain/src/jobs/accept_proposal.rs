//! Accepting a proposal: a decision over the job, the proposal accepted and every other proposal to
//! the job (DESIGN §2: a job accepts at most one proposal; accepting rejects the others and closes
//! the job).
//!
//! The caller loads every proposal in [`Job::proposals`] and appends to all their streams and the
//! job's in one transaction, each with its expected version: of two concurrent accepts, one wins and
//! the other loses on the job's version (409).
//!
//! After a compensation (DESIGN §7: the contract could not be initiated, so the saga reverted the
//! acceptance and reopened the job) the client may accept again: the reverted proposal, which is
//! pending again, or one submitted since. The proposals the first acceptance rejected stay rejected.
//! While another proposal of the job is still accepted (the job was reopened before the acceptance
//! was reverted), nothing is accepted: `proposal-already-accepted`.

use crate::{
    Context, ContractId, DomainError, ProposalId,
    jobs::{
        job::{self, Job, JobEvent},
        proposal::{self, Proposal, ProposalEvent, ProposalStatus},
    },
};

/// The job's owner accepts one of its proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptProposal {
    /// The proposal accepted.
    pub proposal_id: ProposalId,
}

/// What accepting appends, per stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptProposalEvents {
    /// To the job stream: it closes, filled by the accepted proposal.
    pub job: Vec<JobEvent>,
    /// To the accepted proposal's stream.
    pub accepted: Vec<ProposalEvent>,
    /// To each other pending proposal's stream: it is rejected.
    pub rejected: Vec<(ProposalId, Vec<ProposalEvent>)>,
}

/// The proposals the caller must load besides the accepted one: every other one the job received.
pub fn other_proposals(job: &Job, accepted: ProposalId) -> Vec<ProposalId> {
    job.proposals
        .iter()
        .copied()
        .filter(|id| *id != accepted)
        .collect()
}

/// Decide an acceptance. `others` holds the state of every id in [`other_proposals`].
pub fn decide(
    (job, proposal, others): (&Job, &Proposal, &[Proposal]),
    command: &AcceptProposal,
    ctx: &Context,
) -> Result<AcceptProposalEvents, DomainError> {
    let job_id = job::posted_id(job)?;
    job::ensure_owner(job, ctx)?;
    let p = proposal::existing(proposal)?;
    if p.id != command.proposal_id || p.job_id != job_id || !job.proposals.contains(&p.id) {
        return Err(DomainError::NotFound("proposal"));
    }
    job::ensure_open(job)?;
    proposal::ensure_pending(p)?;
    let mut rejected = Vec::new();
    for id in other_proposals(job, p.id) {
        let other = others
            .iter()
            .filter_map(|o| o.submitted.as_ref())
            .find(|o| o.id == id)
            .ok_or(DomainError::Conflict("proposals-not-loaded"))?;
        if other.status == ProposalStatus::Accepted {
            return Err(DomainError::Conflict("proposal-already-accepted"));
        }
        if other.status == ProposalStatus::Submitted {
            rejected.push((
                id,
                vec![ProposalEvent::ProposalRejected {
                    proposal_id: id,
                    job_id,
                    rejected_at: ctx.now,
                }],
            ));
        }
    }
    Ok(AcceptProposalEvents {
        job: vec![JobEvent::JobClosed {
            job_id,
            accepted_proposal_id: Some(p.id),
            closed_at: ctx.now,
        }],
        accepted: vec![ProposalEvent::ProposalAccepted {
            proposal_id: p.id,
            job_id,
            client_id: p.client_id,
            freelancer_id: p.freelancer_id,
            contract_id: ContractId::for_proposal(p.id),
            milestones: p.milestones.clone(),
            accepted_at: ctx.now,
        }],
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::job::tests::{posted, received};
    use crate::jobs::proposal::tests::{JOB, PROPOSAL, milestones, submitted_by};
    use crate::testing::*;
    use crate::{Aggregate, UserId};
    use uuid::Uuid;

    const SECOND: ProposalId = ProposalId::from_uuid(Uuid::from_u128(0x9902));
    const THIRD: ProposalId = ProposalId::from_uuid(Uuid::from_u128(0x9903));

    fn proposal(id: ProposalId, freelancer: UserId) -> Proposal {
        Proposal::fold(&[submitted_by(id, freelancer, 2)])
    }

    fn job_with_three() -> Job {
        Job::fold(&[
            posted(),
            received(PROPOSAL, FREELANCER_ID),
            received(SECOND, OTHER_FREELANCER_ID),
            received(THIRD, OTHER_FREELANCER_ID),
        ])
    }

    fn withdrawn_third() -> Proposal {
        let mut third = proposal(THIRD, OTHER_FREELANCER_ID);
        third.evolve(&ProposalEvent::ProposalWithdrawn {
            proposal_id: THIRD,
            job_id: JOB,
            withdrawn_at: now(),
        });
        third
    }

    fn state() -> (Job, Proposal, Vec<Proposal>) {
        (
            job_with_three(),
            proposal(PROPOSAL, FREELANCER_ID),
            vec![proposal(SECOND, OTHER_FREELANCER_ID), withdrawn_third()],
        )
    }

    fn accept(id: ProposalId) -> AcceptProposal {
        AcceptProposal { proposal_id: id }
    }

    #[test]
    fn accepting_a_proposal_rejects_the_other_pending_ones_and_closes_the_job() {
        given_state(state())
            .when(|(j, p, o)| decide((j, p, o), &accept(PROPOSAL), &ctx(CLIENT)))
            .then(AcceptProposalEvents {
                job: vec![JobEvent::JobClosed {
                    job_id: JOB,
                    accepted_proposal_id: Some(PROPOSAL),
                    closed_at: now(),
                }],
                accepted: vec![ProposalEvent::ProposalAccepted {
                    proposal_id: PROPOSAL,
                    job_id: JOB,
                    client_id: CLIENT_ID,
                    freelancer_id: FREELANCER_ID,
                    contract_id: ContractId::for_proposal(PROPOSAL),
                    milestones: milestones(PROPOSAL, 2),
                    accepted_at: now(),
                }],
                rejected: vec![(
                    SECOND,
                    vec![ProposalEvent::ProposalRejected {
                        proposal_id: SECOND,
                        job_id: JOB,
                        rejected_at: now(),
                    }],
                )],
            });
    }

    #[test]
    fn only_the_job_owner_accepts_a_proposal() {
        for actor in [OTHER_CLIENT, FREELANCER, ADMIN] {
            given_state(state())
                .when(|(j, p, o)| decide((j, p, o), &accept(PROPOSAL), &ctx(actor)))
                .then_err(DomainError::Forbidden("not-the-job-owner"));
        }
    }

    #[test]
    fn a_job_accepts_at_most_one_proposal() {
        let (job, first, others) = state();
        let outcome = decide((&job, &first, &others), &accept(PROPOSAL), &ctx(CLIENT)).unwrap();
        let mut job = job;
        for e in &outcome.job {
            job.evolve(e);
        }
        let mut second = others[0].clone();
        for e in &outcome.rejected[0].1 {
            second.evolve(e);
        }
        let mut first = first;
        for e in &outcome.accepted {
            first.evolve(e);
        }
        // Accepting another one afterwards: the job is closed.
        given_state((job, second, vec![first, others[1].clone()]))
            .when(|(j, p, o)| decide((j, p, o), &accept(SECOND), &ctx(CLIENT)))
            .then_err(DomainError::Conflict("job-closed"));
    }

    #[test]
    fn a_withdrawn_proposal_cannot_be_accepted() {
        let (job, first, others) = state();
        given_state((job, withdrawn_third(), vec![first, others[0].clone()]))
            .when(|(j, p, o)| decide((j, p, o), &accept(THIRD), &ctx(CLIENT)))
            .then_err(DomainError::Conflict("proposal-withdrawn"));
    }

    #[test]
    fn a_proposal_to_another_job_is_not_found() {
        let job = Job::fold(&[posted()]);
        given_state((job, proposal(PROPOSAL, FREELANCER_ID), vec![]))
            .when(|(j, p, o)| decide((j, p, o), &accept(PROPOSAL), &ctx(CLIENT)))
            .then_err(DomainError::NotFound("proposal"));
    }

    #[test]
    fn a_missing_proposal_is_not_found() {
        given_state((job_with_three(), Proposal::default(), vec![]))
            .when(|(j, p, o)| decide((j, p, o), &accept(PROPOSAL), &ctx(CLIENT)))
            .then_err(DomainError::NotFound("proposal"));
    }

    #[test]
    fn a_missing_job_is_not_found() {
        given_state((Job::default(), proposal(PROPOSAL, FREELANCER_ID), vec![]))
            .when(|(j, p, o)| decide((j, p, o), &accept(PROPOSAL), &ctx(CLIENT)))
            .then_err(DomainError::NotFound("job"));
    }

    #[test]
    fn every_other_proposal_must_be_loaded() {
        let (job, first, others) = state();
        assert_eq!(other_proposals(&job, PROPOSAL), vec![SECOND, THIRD]);
        given_state((job, first, vec![others[0].clone()]))
            .when(|(j, p, o)| decide((j, p, o), &accept(PROPOSAL), &ctx(CLIENT)))
            .then_err(DomainError::Conflict("proposals-not-loaded"));
    }

    /// Apply an acceptance's events to the job and the proposals (`all` holds every proposal).
    fn apply(job: &mut Job, all: &mut [Proposal], outcome: &AcceptProposalEvents) {
        fn index(all: &[Proposal], id: ProposalId) -> usize {
            all.iter()
                .position(|p| p.submitted.as_ref().map(|s| s.id) == Some(id))
                .unwrap()
        }
        for e in &outcome.job {
            job.evolve(e);
        }
        for e in &outcome.accepted {
            let ProposalEvent::ProposalAccepted { proposal_id, .. } = e else {
                panic!("{e:?}")
            };
            let i = index(all, *proposal_id);
            all[i].evolve(e);
        }
        for (id, events) in &outcome.rejected {
            let i = index(all, *id);
            for e in events {
                all[i].evolve(e);
            }
        }
    }

    /// Accept `all[i]` against the other proposals in `all`.
    fn accept_at(job: &Job, all: &[Proposal], i: usize) -> Result<AcceptProposalEvents, DomainError> {
        let id = all[i].submitted.as_ref().unwrap().id;
        let others: Vec<Proposal> = (0..all.len())
            .filter(|j| *j != i)
            .map(|j| all[j].clone())
            .collect();
        decide((job, &all[i], &others), &accept(id), &ctx(CLIENT))
    }

    /// The saga's compensation, in its order: revert the acceptance, then reopen the job.
    fn compensate(job: &mut Job, accepted: &mut Proposal) {
        use crate::jobs::{job::JobCommand, proposal::ProposalCommand};
        let reason = "contract-not-initiated".to_owned();
        let reverted = proposal::decide(
            accepted,
            &ProposalCommand::RevertAcceptance {
                reason: reason.clone(),
            },
            &ctx(SYSTEM),
        )
        .unwrap();
        for e in &reverted {
            accepted.evolve(e);
        }
        for e in &job::decide(job, &JobCommand::Reopen { reason }, &ctx(SYSTEM)).unwrap() {
            job.evolve(e);
        }
    }

    #[test]
    fn a_proposal_is_accepted_again_after_its_acceptance_was_reverted() {
        let (mut job, first, others) = state();
        let mut all = vec![first, others[0].clone(), others[1].clone()];
        let outcome = accept_at(&job, &all, 0).unwrap();
        apply(&mut job, &mut all, &outcome);
        compensate(&mut job, &mut all[0]);
        assert_eq!(all[0].status(), Some(ProposalStatus::Submitted));
        assert!(!job.closed);

        // The client accepts it again: the same contract id, nothing left to reject.
        given_state((job.clone(), all[0].clone(), vec![all[1].clone(), all[2].clone()]))
            .when(|(j, p, o)| decide((j, p, o), &accept(PROPOSAL), &ctx(CLIENT)))
            .then(AcceptProposalEvents {
                job: vec![JobEvent::JobClosed {
                    job_id: JOB,
                    accepted_proposal_id: Some(PROPOSAL),
                    closed_at: now(),
                }],
                accepted: vec![ProposalEvent::ProposalAccepted {
                    proposal_id: PROPOSAL,
                    job_id: JOB,
                    client_id: CLIENT_ID,
                    freelancer_id: FREELANCER_ID,
                    contract_id: ContractId::for_proposal(PROPOSAL),
                    milestones: milestones(PROPOSAL, 2),
                    accepted_at: now(),
                }],
                rejected: vec![],
            });
    }

    #[test]
    fn the_proposals_an_acceptance_rejected_stay_rejected_after_a_compensation() {
        let (mut job, first, others) = state();
        let mut all = vec![first, others[0].clone(), others[1].clone()];
        let outcome = accept_at(&job, &all, 0).unwrap();
        apply(&mut job, &mut all, &outcome);
        compensate(&mut job, &mut all[0]);
        assert_eq!(all[1].status(), Some(ProposalStatus::Rejected));
        assert_eq!(
            accept_at(&job, &all, 1),
            Err(DomainError::Conflict("proposal-rejected"))
        );

        // A proposal submitted after the reopening may be accepted instead: it rejects the reverted
        // one, which is pending again.
        let fourth = ProposalId::from_uuid(Uuid::from_u128(0x9904));
        let submitted = crate::jobs::submit_proposal::decide(
            (&job, &Proposal::default()),
            &crate::jobs::SubmitProposal {
                proposal_id: fourth,
                terms: crate::jobs::proposal::tests::terms(1),
            },
            &ctx(OTHER_FREELANCER),
        )
        .unwrap();
        for e in &submitted.job {
            job.evolve(e);
        }
        all.push(Proposal::fold(&submitted.proposal));
        let outcome = accept_at(&job, &all, 3).unwrap();
        assert_eq!(
            outcome.rejected,
            vec![(
                PROPOSAL,
                vec![ProposalEvent::ProposalRejected {
                    proposal_id: PROPOSAL,
                    job_id: JOB,
                    rejected_at: now(),
                }],
            )]
        );
    }

    #[test]
    fn nothing_is_accepted_while_another_acceptance_stands() {
        // The job was reopened before the acceptance was reverted (the saga reverts first).
        let (mut job, first, others) = state();
        let mut all = vec![first, others[0].clone(), others[1].clone()];
        let outcome = accept_at(&job, &all, 0).unwrap();
        apply(&mut job, &mut all, &outcome);
        job.evolve(&crate::jobs::job::tests::reopened());
        let fourth = ProposalId::from_uuid(Uuid::from_u128(0x9904));
        job.evolve(&received(fourth, OTHER_FREELANCER_ID));
        all.push(proposal(fourth, OTHER_FREELANCER_ID));
        assert_eq!(
            accept_at(&job, &all, 3),
            Err(DomainError::Conflict("proposal-already-accepted"))
        );
    }
}
