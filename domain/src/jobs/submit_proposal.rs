//! Submitting a proposal: a decision over the job (open, its currency) and the new proposal.
//!
//! It writes to both streams in one append: the proposal's terms to the proposal stream, and a
//! `ProposalReceived` to the job stream, so the job knows every proposal it must settle when one is
//! accepted, and a concurrent close or accept conflicts on the job's version.

use crate::{
    Context, DomainError, ProposalId, Role,
    jobs::{
        job::{self, Job, JobEvent},
        proposal::{Proposal, ProposalEvent, ProposalTerms, ValidTerms, validate_terms},
    },
};

/// A freelancer proposes to do a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitProposal {
    /// The new proposal's id (v7, chosen by the caller).
    pub proposal_id: ProposalId,
    /// Its terms.
    pub terms: ProposalTerms,
}

/// What submitting appends, per stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitProposalEvents {
    /// To the job stream.
    pub job: Vec<JobEvent>,
    /// To the new proposal's stream.
    pub proposal: Vec<ProposalEvent>,
}

/// Decide a submission against the job and the (empty) proposal stream.
pub fn decide(
    (job, proposal): (&Job, &Proposal),
    command: &SubmitProposal,
    ctx: &Context,
) -> Result<SubmitProposalEvents, DomainError> {
    let job_id = job::posted_id(job)?;
    let (Some(client_id), Some(currency)) = (job.client_id, job.currency) else {
        return Err(DomainError::NotFound("job"));
    };
    if ctx.actor.role != Role::Freelancer {
        return Err(DomainError::Forbidden("only-freelancers-propose"));
    }
    job::ensure_open(job)?;
    if proposal.submitted.is_some() || job.proposals.contains(&command.proposal_id) {
        return Err(DomainError::Conflict("proposal-already-submitted"));
    }
    let ValidTerms {
        cover_letter,
        milestones,
        attachments,
    } = validate_terms(command.proposal_id, &command.terms, currency, ctx.now.date())?;
    Ok(SubmitProposalEvents {
        job: vec![JobEvent::ProposalReceived {
            job_id,
            proposal_id: command.proposal_id,
            freelancer_id: ctx.actor.id,
            received_at: ctx.now,
        }],
        proposal: vec![ProposalEvent::ProposalSubmitted {
            proposal_id: command.proposal_id,
            job_id,
            client_id,
            freelancer_id: ctx.actor.id,
            cover_letter,
            milestones,
            attachments,
            submitted_at: ctx.now,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::job::tests::{posted, received};
    use crate::jobs::proposal::tests::{JOB, PROPOSAL, attachments, milestones, submitted_by, terms};
    use crate::jobs::proposal::{MAX_ATTACHMENTS, ProposalEvent};
    use crate::testing::*;
    use crate::{Aggregate, DomainEvent};

    fn submit(n: usize) -> SubmitProposal {
        SubmitProposal {
            proposal_id: PROPOSAL,
            terms: terms(n),
        }
    }

    fn job(events: &[JobEvent]) -> Job {
        Job::fold(events)
    }

    #[test]
    fn a_freelancer_submits_a_proposal_to_an_open_job() {
        let job = job(&[posted()]);
        given_state((job, Proposal::default()))
            .when(|(j, p)| decide((j, p), &submit(2), &ctx(FREELANCER)))
            .then(SubmitProposalEvents {
                job: vec![received(PROPOSAL, FREELANCER_ID)],
                proposal: vec![submitted_by(PROPOSAL, FREELANCER_ID, 2)],
            });
    }

    #[test]
    fn submitting_with_attachments_records_them() {
        let mut command = submit(2);
        command.terms.attachments = attachments("brief", 3);
        given_state((job(&[posted()]), Proposal::default()))
            .when(|(j, p)| decide((j, p), &command, &ctx(FREELANCER)))
            .then(SubmitProposalEvents {
                job: vec![received(PROPOSAL, FREELANCER_ID)],
                proposal: vec![ProposalEvent::ProposalSubmitted {
                    proposal_id: PROPOSAL,
                    job_id: JOB,
                    client_id: CLIENT_ID,
                    freelancer_id: FREELANCER_ID,
                    cover_letter: "I can do it".into(),
                    milestones: milestones(PROPOSAL, 2),
                    attachments: attachments("brief", 3),
                    submitted_at: now(),
                }],
            });
    }

    #[test]
    fn a_proposal_has_at_most_ten_attachments() {
        let mut command = submit(1);
        command.terms.attachments = attachments("brief", MAX_ATTACHMENTS + 1);
        given_state((job(&[posted()]), Proposal::default()))
            .when(|(j, p)| decide((j, p), &command, &ctx(FREELANCER)))
            .then_invalid(&["attachments"]);
    }

    #[test]
    fn a_proposal_attaches_a_file_once() {
        let mut command = submit(1);
        let files = attachments("brief", 2);
        command.terms.attachments = vec![files[0].clone(), files[1].clone(), files[0].clone()];
        given_state((job(&[posted()]), Proposal::default()))
            .when(|(j, p)| decide((j, p), &command, &ctx(FREELANCER)))
            .then_invalid(&["attachments[2]"]);
    }

    #[test]
    fn only_freelancers_propose() {
        let job = job(&[posted()]);
        for actor in [CLIENT, OTHER_CLIENT, ADMIN] {
            given_state((job.clone(), Proposal::default()))
                .when(|(j, p)| decide((j, p), &submit(1), &ctx(actor)))
                .then_err(DomainError::Forbidden("only-freelancers-propose"));
        }
    }

    #[test]
    fn proposing_to_a_missing_job_is_not_found() {
        given_state((Job::default(), Proposal::default()))
            .when(|(j, p)| decide((j, p), &submit(1), &ctx(FREELANCER)))
            .then_err(DomainError::NotFound("job"));
    }

    #[test]
    fn a_closed_job_takes_no_proposals() {
        let job = job(&[
            posted(),
            JobEvent::JobClosed {
                job_id: JOB,
                accepted_proposal_id: None,
                closed_at: now(),
            },
        ]);
        given_state((job, Proposal::default()))
            .when(|(j, p)| decide((j, p), &submit(1), &ctx(FREELANCER)))
            .then_err(DomainError::Conflict("job-closed"));
    }

    #[test]
    fn a_proposal_is_submitted_once() {
        let job = job(&[posted(), received(PROPOSAL, FREELANCER_ID)]);
        let proposal = Proposal::fold(&[submitted_by(PROPOSAL, FREELANCER_ID, 1)]);
        given_state((job, proposal))
            .when(|(j, p)| decide((j, p), &submit(1), &ctx(FREELANCER)))
            .then_err(DomainError::Conflict("proposal-already-submitted"));
    }

    #[test]
    fn proposal_milestones_must_be_one_to_twenty() {
        for n in [0, 21] {
            given_state((job(&[posted()]), Proposal::default()))
                .when(|(j, p)| decide((j, p), &submit(n), &ctx(FREELANCER)))
                .then_invalid(&["milestones"]);
        }
    }

    #[test]
    fn proposal_milestones_need_positive_amounts_in_the_job_currency() {
        let mut command = submit(3);
        command.terms.milestones[0].amount = usd(0);
        command.terms.milestones[1].amount = usd(-1);
        command.terms.milestones[2].amount = eur(100);
        given_state((job(&[posted()]), Proposal::default()))
            .when(|(j, p)| decide((j, p), &command, &ctx(FREELANCER)))
            .then_invalid(&[
                "milestones[0].amount",
                "milestones[1].amount",
                "milestones[2].amount",
            ]);
    }

    #[test]
    fn proposal_milestones_are_not_due_in_the_past_and_are_ordered() {
        let mut command = submit(3);
        command.terms.milestones[0].due_on = day(-1);
        command.terms.milestones[1].due_on = day(5);
        command.terms.milestones[2].due_on = day(4);
        given_state((job(&[posted()]), Proposal::default()))
            .when(|(j, p)| decide((j, p), &command, &ctx(FREELANCER)))
            .then_invalid(&["milestones[0].due_on", "milestones[2].due_on"]);
    }

    #[test]
    fn submission_events_round_trip() {
        let outcome = decide(
            (&job(&[posted()]), &Proposal::default()),
            &submit(2),
            &ctx(FREELANCER),
        )
        .unwrap();
        assert_round_trip(&outcome.job);
        assert_round_trip(&outcome.proposal);
        assert_eq!(outcome.proposal[0].event_type(), "ProposalSubmitted");
    }
}
