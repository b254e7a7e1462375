//! The Job aggregate: a client's posting.
//!
//! A job is open until its owner closes it or a proposal is accepted (see
//! [`super::accept_proposal`]). When the contract of the accepted proposal cannot be initiated, the
//! contract saga compensates (DESIGN §7): it reverts the acceptance
//! ([`super::proposal::ProposalCommand::RevertAcceptance`]), then reopens the job
//! ([`JobCommand::Reopen`]). The proposals that acceptance rejected stay rejected: a reopened job
//! takes new proposals, and the reverted one is pending again.

use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoundedContext, Context, Currency, DomainError, DomainEvent, FieldError, JobId, Money,
    ProposalId, Role, Timestamp, UserId,
};

/// A job's editable content, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDraft {
    /// Title: 3 to 200 characters.
    pub title: String,
    /// Description: 1 to 10,000 characters.
    pub description: String,
    /// Budget: positive.
    pub budget: Money,
    /// Required skills: at most 30, each 1 to 50 characters.
    pub skills: Vec<String>,
}

impl JobDraft {
    /// Validate raw fields into a draft, collecting every field error.
    pub fn parse(
        title: &str,
        description: &str,
        budget: Money,
        skills: &[String],
    ) -> Result<Self, DomainError> {
        let mut errors = Vec::new();
        let title = title.trim();
        if !(3..=200).contains(&title.chars().count()) {
            errors.push(FieldError::new("title", "3 to 200 characters"));
        }
        let description = description.trim();
        if !(1..=10_000).contains(&description.chars().count()) {
            errors.push(FieldError::new("description", "1 to 10000 characters"));
        }
        if !budget.is_positive() {
            errors.push(FieldError::new("budget.minor", "must be positive"));
        }
        if skills.len() > 30 {
            errors.push(FieldError::new("skills", "at most 30 skills"));
        }
        let skills: Vec<String> = skills.iter().map(|s| s.trim().to_owned()).collect();
        for (i, skill) in skills.iter().enumerate() {
            if !(1..=50).contains(&skill.chars().count()) {
                errors.push(FieldError::new(format!("skills[{i}]"), "1 to 50 characters"));
            }
        }
        if errors.is_empty() {
            Ok(Self {
                title: title.to_owned(),
                description: description.to_owned(),
                budget,
                skills,
            })
        } else {
            Err(DomainError::Invalid(errors))
        }
    }
}

/// Commands on a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    /// Post a new job (the actor becomes its owner).
    Post {
        /// The new job's id (v7, chosen by the caller).
        job_id: JobId,
        /// The job's content.
        draft: JobDraft,
    },
    /// The owner edits an open job.
    Update {
        /// The new content.
        draft: JobDraft,
    },
    /// The owner closes an open job: no more proposals, none accepted.
    Close,
    /// Compensation when the contract of the accepted proposal cannot be initiated (DESIGN §7): the
    /// job is open again and takes proposals. Sent by the contract saga as the system actor, after
    /// it reverted the acceptance. Only a job closed by an acceptance is reopened (a job its owner
    /// closed stays closed: `job-closed-by-owner`); an open job answers `job-not-closed`, so a
    /// replayed reopen is a conflict (the saga dedupes by command id). The proposals the acceptance
    /// rejected stay rejected.
    Reopen {
        /// Why the contract could not be initiated (free text, recorded in the event).
        reason: String,
    },
}

/// Events of a job stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum JobEvent {
    /// A client posted a job.
    JobPosted {
        /// The job.
        job_id: JobId,
        /// Its owner.
        client_id: UserId,
        /// Its content.
        #[serde(flatten)]
        draft: JobDraft,
        /// When.
        posted_at: Timestamp,
    },
    /// The owner edited the job.
    JobUpdated {
        /// The job.
        job_id: JobId,
        /// Its new content.
        #[serde(flatten)]
        draft: JobDraft,
        /// When.
        updated_at: Timestamp,
    },
    /// A freelancer proposed to do the job (the proposal's own stream holds its terms).
    ProposalReceived {
        /// The job.
        job_id: JobId,
        /// The proposal.
        proposal_id: ProposalId,
        /// Its author.
        freelancer_id: UserId,
        /// When.
        received_at: Timestamp,
    },
    /// The job stopped taking proposals: closed by its owner, or filled by an accepted proposal.
    JobClosed {
        /// The job.
        job_id: JobId,
        /// The proposal accepted, if that is why it closed.
        accepted_proposal_id: Option<ProposalId>,
        /// When.
        closed_at: Timestamp,
    },
    /// The job, closed by an acceptance whose contract could not be initiated, is open again and
    /// takes proposals (DESIGN §7); it no longer has an accepted proposal. The proposals that
    /// acceptance rejected stay rejected.
    JobReopened {
        /// The job.
        job_id: JobId,
        /// Why the contract could not be initiated.
        reason: String,
        /// When.
        reopened_at: Timestamp,
    },
}

impl DomainEvent for JobEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::JobPosted { .. } => "JobPosted",
            Self::JobUpdated { .. } => "JobUpdated",
            Self::ProposalReceived { .. } => "ProposalReceived",
            Self::JobClosed { .. } => "JobClosed",
            Self::JobReopened { .. } => "JobReopened",
        }
    }
}

/// What decisions need to know about a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Job {
    /// Its owner, once posted.
    pub client_id: Option<UserId>,
    /// Its id, once posted.
    pub id: Option<JobId>,
    /// The budget's currency: proposals are priced in it.
    pub currency: Option<Currency>,
    /// Closed jobs take no proposals and accept none.
    pub closed: bool,
    /// Every proposal received, in order.
    pub proposals: Vec<ProposalId>,
    /// The accepted proposal while the acceptance stands (at most one, DESIGN §2); cleared when the
    /// job is reopened.
    pub accepted_proposal: Option<ProposalId>,
}

impl Aggregate for Job {
    const STREAM_TYPE: &'static str = "job";
    const CONTEXT: BoundedContext = BoundedContext::Jobs;
    type Event = JobEvent;

    fn evolve(&mut self, event: &JobEvent) {
        match event {
            JobEvent::JobPosted {
                job_id,
                client_id,
                draft,
                ..
            } => {
                self.client_id = Some(*client_id);
                self.id = Some(*job_id);
                self.currency = Some(draft.budget.currency);
            }
            JobEvent::JobUpdated { draft, .. } => self.currency = Some(draft.budget.currency),
            JobEvent::ProposalReceived { proposal_id, .. } => {
                if !self.proposals.contains(proposal_id) {
                    self.proposals.push(*proposal_id);
                }
            }
            JobEvent::JobClosed {
                accepted_proposal_id, ..
            } => {
                self.closed = true;
                if accepted_proposal_id.is_some() {
                    self.accepted_proposal = *accepted_proposal_id;
                }
            }
            JobEvent::JobReopened { .. } => {
                self.closed = false;
                self.accepted_proposal = None;
            }
        }
    }
}

/// The posted job's id, or 404.
pub(crate) fn posted_id(job: &Job) -> Result<JobId, DomainError> {
    job.id.ok_or(DomainError::NotFound("job"))
}

/// Refuse unless the actor is the job's owner.
pub(crate) fn ensure_owner(job: &Job, ctx: &Context) -> Result<(), DomainError> {
    if job.client_id == Some(ctx.actor.id) && ctx.actor.role == Role::Client {
        Ok(())
    } else {
        Err(DomainError::Forbidden("not-the-job-owner"))
    }
}

/// Refuse if the job is closed.
pub(crate) fn ensure_open(job: &Job) -> Result<(), DomainError> {
    if job.closed {
        Err(DomainError::Conflict("job-closed"))
    } else {
        Ok(())
    }
}

/// Decide what a command on `job` emits.
pub fn decide(job: &Job, command: &JobCommand, ctx: &Context) -> Result<Vec<JobEvent>, DomainError> {
    match command {
        JobCommand::Post { job_id, draft } => {
            if ctx.actor.role != Role::Client {
                return Err(DomainError::Forbidden("only-clients-post-jobs"));
            }
            if job.client_id.is_some() {
                return Err(DomainError::Conflict("job-already-posted"));
            }
            Ok(vec![JobEvent::JobPosted {
                job_id: *job_id,
                client_id: ctx.actor.id,
                draft: draft.clone(),
                posted_at: ctx.now,
            }])
        }
        JobCommand::Update { draft } => {
            let job_id = posted_id(job)?;
            ensure_owner(job, ctx)?;
            ensure_open(job)?;
            if !job.proposals.is_empty() && job.currency != Some(draft.budget.currency) {
                return Err(DomainError::Conflict("currency-fixed-by-proposals"));
            }
            Ok(vec![JobEvent::JobUpdated {
                job_id,
                draft: draft.clone(),
                updated_at: ctx.now,
            }])
        }
        JobCommand::Close => {
            let job_id = posted_id(job)?;
            ensure_owner(job, ctx)?;
            ensure_open(job)?;
            Ok(vec![JobEvent::JobClosed {
                job_id,
                accepted_proposal_id: None,
                closed_at: ctx.now,
            }])
        }
        JobCommand::Reopen { reason } => {
            let job_id = posted_id(job)?;
            ctx.ensure_system()?;
            if !job.closed {
                return Err(DomainError::Conflict("job-not-closed"));
            }
            if job.accepted_proposal.is_none() {
                return Err(DomainError::Conflict("job-closed-by-owner"));
            }
            Ok(vec![JobEvent::JobReopened {
                job_id,
                reason: reason.clone(),
                reopened_at: ctx.now,
            }])
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jobs::proposal::tests::{JOB, PROPOSAL};
    use crate::testing::*;
    use uuid::Uuid;

    /// Another proposal to `JOB`.
    const SECOND: ProposalId = ProposalId::from_uuid(Uuid::from_u128(0x9902));

    /// The client's job, budget 1,000.00 USD.
    pub fn draft() -> JobDraft {
        JobDraft::parse("Build a shop", "An online shop", usd(100_000), &["rust".into()]).unwrap()
    }

    /// The client posted `JOB`.
    pub fn posted() -> JobEvent {
        JobEvent::JobPosted {
            job_id: JOB,
            client_id: CLIENT_ID,
            draft: draft(),
            posted_at: now(),
        }
    }

    /// `JOB` received `proposal` from `freelancer`.
    pub fn received(proposal: ProposalId, freelancer: UserId) -> JobEvent {
        JobEvent::ProposalReceived {
            job_id: JOB,
            proposal_id: proposal,
            freelancer_id: freelancer,
            received_at: now(),
        }
    }

    /// `JOB` was closed by the acceptance of `PROPOSAL`.
    pub fn filled() -> JobEvent {
        JobEvent::JobClosed {
            job_id: JOB,
            accepted_proposal_id: Some(PROPOSAL),
            closed_at: now(),
        }
    }

    /// The contract saga reopened `JOB`.
    pub fn reopened() -> JobEvent {
        JobEvent::JobReopened {
            job_id: JOB,
            reason: "contract-not-initiated".into(),
            reopened_at: now(),
        }
    }

    fn reopen() -> JobCommand {
        JobCommand::Reopen {
            reason: "contract-not-initiated".into(),
        }
    }

    fn closed() -> JobEvent {
        JobEvent::JobClosed {
            job_id: JOB,
            accepted_proposal_id: None,
            closed_at: now(),
        }
    }

    #[test]
    fn a_client_posts_a_job() {
        given::<Job>([])
            .when(|j| {
                decide(
                    j,
                    &JobCommand::Post {
                        job_id: JOB,
                        draft: draft(),
                    },
                    &ctx(CLIENT),
                )
            })
            .then([posted()]);
    }

    #[test]
    fn only_clients_post_jobs() {
        for actor in [FREELANCER, ADMIN] {
            given::<Job>([])
                .when(|j| {
                    decide(
                        j,
                        &JobCommand::Post {
                            job_id: JOB,
                            draft: draft(),
                        },
                        &ctx(actor),
                    )
                })
                .then_err(DomainError::Forbidden("only-clients-post-jobs"));
        }
    }

    #[test]
    fn a_job_is_posted_once() {
        given::<Job>([posted()])
            .when(|j| {
                decide(
                    j,
                    &JobCommand::Post {
                        job_id: JOB,
                        draft: draft(),
                    },
                    &ctx(CLIENT),
                )
            })
            .then_err(DomainError::Conflict("job-already-posted"));
    }

    #[test]
    fn a_draft_lists_every_broken_field() {
        let Err(DomainError::Invalid(errors)) = JobDraft::parse("ab", " ", usd(0), &["".into()]) else {
            panic!("accepted")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["title", "description", "budget.minor", "skills[0]"]);
    }

    #[test]
    fn the_owner_updates_an_open_job() {
        let mut new = draft();
        new.title = "Build a bigger shop".into();
        given::<Job>([posted()])
            .when(|j| decide(j, &JobCommand::Update { draft: new.clone() }, &ctx(CLIENT)))
            .then([JobEvent::JobUpdated {
                job_id: JOB,
                draft: new.clone(),
                updated_at: now(),
            }]);
    }

    #[test]
    fn only_the_owner_updates_a_job() {
        given::<Job>([posted()])
            .when(|j| decide(j, &JobCommand::Update { draft: draft() }, &ctx(OTHER_CLIENT)))
            .then_err(DomainError::Forbidden("not-the-job-owner"));
    }

    #[test]
    fn a_missing_job_is_not_found() {
        given::<Job>([])
            .when(|j| decide(j, &JobCommand::Update { draft: draft() }, &ctx(CLIENT)))
            .then_err(DomainError::NotFound("job"));
        given::<Job>([])
            .when(|j| decide(j, &JobCommand::Close, &ctx(CLIENT)))
            .then_err(DomainError::NotFound("job"));
    }

    #[test]
    fn a_closed_job_cannot_be_updated() {
        given::<Job>([posted(), closed()])
            .when(|j| decide(j, &JobCommand::Update { draft: draft() }, &ctx(CLIENT)))
            .then_err(DomainError::Conflict("job-closed"));
    }

    #[test]
    fn proposals_fix_the_budget_currency() {
        let mut new = draft();
        new.budget = eur(100_000);
        given::<Job>([posted(), received(PROPOSAL, FREELANCER_ID)])
            .when(|j| decide(j, &JobCommand::Update { draft: new.clone() }, &ctx(CLIENT)))
            .then_err(DomainError::Conflict("currency-fixed-by-proposals"));
    }

    #[test]
    fn job_and_proposal_events_round_trip() {
        use crate::jobs::proposal::{ProposalEvent, tests as p};
        assert_round_trip(&[
            posted(),
            JobEvent::JobUpdated {
                job_id: JOB,
                draft: draft(),
                updated_at: now(),
            },
            received(p::PROPOSAL, FREELANCER_ID),
            closed(),
            filled(),
            reopened(),
        ]);
        assert_round_trip(&[
            p::submitted_by(p::PROPOSAL, FREELANCER_ID, 2),
            ProposalEvent::ProposalUpdated {
                proposal_id: p::PROPOSAL,
                freelancer_id: FREELANCER_ID,
                cover_letter: "c".into(),
                milestones: p::milestones(p::PROPOSAL, 1),
                attachments: p::attachments("c", 2),
                updated_at: now(),
            },
            ProposalEvent::ProposalWithdrawn {
                proposal_id: p::PROPOSAL,
                job_id: JOB,
                withdrawn_at: now(),
            },
            ProposalEvent::ProposalRejected {
                proposal_id: p::PROPOSAL,
                job_id: JOB,
                rejected_at: now(),
            },
            ProposalEvent::ProposalAccepted {
                proposal_id: p::PROPOSAL,
                job_id: JOB,
                client_id: CLIENT_ID,
                freelancer_id: FREELANCER_ID,
                contract_id: crate::ContractId::for_proposal(p::PROPOSAL),
                milestones: p::milestones(p::PROPOSAL, 3),
                accepted_at: now(),
            },
            p::reverted(),
        ]);
        // The job's draft is flattened into the payload, as the projectors read it.
        let json = serde_json::to_value(posted()).unwrap();
        assert_eq!(json["title"], "Build a shop");
        assert_eq!(json["budget"]["minor"], 100_000);
    }

    #[test]
    fn the_owner_closes_an_open_job() {
        given::<Job>([posted()])
            .when(|j| decide(j, &JobCommand::Close, &ctx(CLIENT)))
            .then([closed()]);
    }

    #[test]
    fn only_the_owner_closes_a_job() {
        given::<Job>([posted()])
            .when(|j| decide(j, &JobCommand::Close, &ctx(FREELANCER)))
            .then_err(DomainError::Forbidden("not-the-job-owner"));
    }

    #[test]
    fn a_job_is_closed_once() {
        given::<Job>([posted(), closed()])
            .when(|j| decide(j, &JobCommand::Close, &ctx(CLIENT)))
            .then_err(DomainError::Conflict("job-closed"));
    }

    #[test]
    fn the_saga_reopens_a_job_closed_by_an_acceptance() {
        given::<Job>([posted(), received(PROPOSAL, FREELANCER_ID), filled()])
            .when(|j| decide(j, &reopen(), &ctx(SYSTEM)))
            .then([reopened()]);
    }

    #[test]
    fn a_reopened_job_is_open_without_an_accepted_proposal() {
        let job = Job::fold(&[posted(), received(PROPOSAL, FREELANCER_ID), filled(), reopened()]);
        assert!(!job.closed);
        assert_eq!(job.accepted_proposal, None);
        // It still knows every proposal it received (the accept decision settles them all).
        assert_eq!(job.proposals, vec![PROPOSAL]);
        // The owner edits and closes it as any open job.
        given_state(job.clone())
            .when(|j| decide(j, &JobCommand::Update { draft: draft() }, &ctx(CLIENT)))
            .then_ok();
        given_state(job)
            .when(|j| decide(j, &JobCommand::Close, &ctx(CLIENT)))
            .then([closed()]);
    }

    #[test]
    fn a_reopened_job_takes_proposals() {
        use crate::jobs::submit_proposal::{self, SubmitProposal};
        let job = Job::fold(&[posted(), received(PROPOSAL, FREELANCER_ID), filled(), reopened()]);
        let command = SubmitProposal {
            proposal_id: SECOND,
            terms: crate::jobs::proposal::tests::terms(1),
        };
        let out =
            submit_proposal::decide((&job, &Default::default()), &command, &ctx(OTHER_FREELANCER)).unwrap();
        assert_eq!(out.job, [received(SECOND, OTHER_FREELANCER_ID)]);
    }

    #[test]
    fn only_the_system_reopens_a_job() {
        for actor in crate::contracts::contract::tests::USERS {
            given::<Job>([posted(), received(PROPOSAL, FREELANCER_ID), filled()])
                .when(|j| decide(j, &reopen(), &ctx(actor)))
                .then_err(DomainError::Forbidden("system-only"));
        }
    }

    #[test]
    fn only_a_closed_job_is_reopened() {
        for history in [
            vec![posted()],
            // A replayed reopen: the saga dedupes its steps by command id.
            vec![posted(), received(PROPOSAL, FREELANCER_ID), filled(), reopened()],
        ] {
            given::<Job>(history)
                .when(|j| decide(j, &reopen(), &ctx(SYSTEM)))
                .then_err(DomainError::Conflict("job-not-closed"));
        }
    }

    #[test]
    fn a_job_closed_by_its_owner_stays_closed() {
        given::<Job>([posted(), closed()])
            .when(|j| decide(j, &reopen(), &ctx(SYSTEM)))
            .then_err(DomainError::Conflict("job-closed-by-owner"));
        // Nor is a reopened job its owner closed again.
        given::<Job>([
            posted(),
            received(PROPOSAL, FREELANCER_ID),
            filled(),
            reopened(),
            closed(),
        ])
        .when(|j| decide(j, &reopen(), &ctx(SYSTEM)))
        .then_err(DomainError::Conflict("job-closed-by-owner"));
    }

    #[test]
    fn reopening_a_missing_job_is_not_found() {
        given::<Job>([])
            .when(|j| decide(j, &reopen(), &ctx(SYSTEM)))
            .then_err(DomainError::NotFound("job"));
    }
}
