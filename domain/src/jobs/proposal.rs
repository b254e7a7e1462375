//! The Proposal aggregate: a freelancer's offer to do a job in milestones.
//!
//! Submitting reads the job too (see [`super::submit_proposal`]); accepting spans the job and all
//! its proposals (see [`super::accept_proposal`]). This file holds the single-stream commands,
//! among them the contract saga's compensation [`ProposalCommand::RevertAcceptance`] (DESIGN §7).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoundedContext, Context, ContractId, Currency, DomainError, DomainEvent, FieldError, JobId,
    MilestoneId, Money, ProposalId, Role, Timestamp, UserId,
    privacy::{PersonalData, PersonalField},
    users::FileRef,
};

/// Most milestones a proposal may have (DESIGN §2).
pub const MAX_MILESTONES: usize = 20;

/// Most attachments a proposal may have.
pub const MAX_ATTACHMENTS: usize = 10;

/// One milestone as the freelancer sends it (raw input, validated by the decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilestoneTerms {
    /// What is delivered: 1 to 200 characters.
    pub title: String,
    /// What it costs: positive, in the job's budget currency.
    pub amount: Money,
    /// When it is due: today or later, not before the previous milestone's.
    pub due_on: NaiveDate,
}

/// A proposal's terms as the freelancer sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalTerms {
    /// The pitch: 1 to 5,000 characters.
    pub cover_letter: String,
    /// 1..=20 milestones, ordered by due date.
    pub milestones: Vec<MilestoneTerms>,
    /// Links to uploaded files (see [`parse_attachments`]): at most 10, no duplicates.
    pub attachments: Vec<FileRef>,
}

/// Parse raw attachment links, naming `attachments[i]` in each field error (all are collected).
pub fn parse_attachments(raw: &[String]) -> Result<Vec<FileRef>, DomainError> {
    let mut errors = Vec::new();
    let mut attachments = Vec::with_capacity(raw.len());
    for (i, link) in raw.iter().enumerate() {
        match FileRef::parse(link, &format!("attachments[{i}]")) {
            Ok(file) => attachments.push(file),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(attachments)
    } else {
        Err(DomainError::Invalid(errors))
    }
}

/// A validated milestone of a proposal; the contract made from it keeps the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedMilestone {
    /// Derived from the proposal id and the position ([`MilestoneId::for_proposal`]).
    pub milestone_id: MilestoneId,
    /// What is delivered.
    pub title: String,
    /// What it costs.
    pub amount: Money,
    /// When it is due.
    pub due_on: NaiveDate,
}

/// Terms that passed [`validate_terms`], as the proposal events record them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidTerms {
    /// The trimmed pitch.
    pub cover_letter: String,
    /// The milestones, with ids derived from the proposal.
    pub milestones: Vec<ProposedMilestone>,
    /// The attachments, in the order sent.
    pub attachments: Vec<FileRef>,
}

/// Check terms against DESIGN §2 (1..=20 milestones, positive amounts in `currency`, due dates not in
/// the past and ordered; at most 10 distinct attachments), collecting every field error.
pub fn validate_terms(
    proposal_id: ProposalId,
    terms: &ProposalTerms,
    currency: Currency,
    today: NaiveDate,
) -> Result<ValidTerms, DomainError> {
    let mut errors = Vec::new();
    let cover_letter = terms.cover_letter.trim();
    if !(1..=5_000).contains(&cover_letter.chars().count()) {
        errors.push(FieldError::new("cover_letter", "1 to 5000 characters"));
    }
    if terms.milestones.is_empty() || terms.milestones.len() > MAX_MILESTONES {
        errors.push(FieldError::new("milestones", "1 to 20 milestones"));
    }
    let mut total = Money::zero(currency);
    let mut previous_due: Option<NaiveDate> = None;
    let mut milestones = Vec::with_capacity(terms.milestones.len());
    for (i, m) in terms.milestones.iter().enumerate() {
        let title = m.title.trim();
        if !(1..=200).contains(&title.chars().count()) {
            errors.push(FieldError::new(
                format!("milestones[{i}].title"),
                "1 to 200 characters",
            ));
        }
        if !m.amount.is_positive() {
            errors.push(FieldError::new(
                format!("milestones[{i}].amount"),
                "must be positive",
            ));
        } else if m.amount.currency != currency {
            errors.push(FieldError::new(
                format!("milestones[{i}].amount"),
                format!("must be in the job's currency {currency}"),
            ));
        } else {
            match total.checked_add(m.amount) {
                Some(sum) => total = sum,
                None => errors.push(FieldError::new(
                    format!("milestones[{i}].amount"),
                    "total too large",
                )),
            }
        }
        if m.due_on < today {
            errors.push(FieldError::new(
                format!("milestones[{i}].due_on"),
                "must not be in the past",
            ));
        } else if previous_due.is_some_and(|p| m.due_on < p) {
            errors.push(FieldError::new(
                format!("milestones[{i}].due_on"),
                "must not be before the previous milestone's",
            ));
        }
        previous_due = Some(m.due_on);
        milestones.push(ProposedMilestone {
            milestone_id: MilestoneId::for_proposal(proposal_id, i),
            title: title.to_owned(),
            amount: m.amount,
            due_on: m.due_on,
        });
    }
    if terms.attachments.len() > MAX_ATTACHMENTS {
        errors.push(FieldError::new(
            "attachments",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    for (i, file) in terms.attachments.iter().enumerate() {
        if terms.attachments[..i].contains(file) {
            errors.push(FieldError::new(format!("attachments[{i}]"), "duplicate"));
        }
    }
    if errors.is_empty() {
        Ok(ValidTerms {
            cover_letter: cover_letter.to_owned(),
            milestones,
            attachments: terms.attachments.clone(),
        })
    } else {
        Err(DomainError::Invalid(errors))
    }
}

/// Commands on one proposal (submitting and accepting span the job: see the sibling modules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalCommand {
    /// The freelancer changes a pending proposal's terms.
    Update {
        /// The new terms.
        terms: ProposalTerms,
    },
    /// The freelancer takes a pending proposal back.
    Withdraw,
    /// The job's client turns a pending proposal down.
    Reject,
    /// Compensation when the contract of an accepted proposal cannot be initiated (DESIGN §7): the
    /// acceptance is undone and the proposal is pending again, so the client may accept it again
    /// once the job is reopened ([`super::job::JobCommand::Reopen`]). Sent by the contract saga as
    /// the system actor, before it reopens the job; only an accepted proposal is reverted
    /// (`proposal-not-accepted` otherwise, so a replayed revert is a conflict: the saga dedupes by
    /// command id). The proposals that acceptance rejected stay rejected.
    RevertAcceptance {
        /// Why the contract could not be initiated (free text, recorded in the event).
        reason: String,
    },
}

/// Events of a proposal stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ProposalEvent {
    /// A freelancer proposed to do a job.
    ProposalSubmitted {
        /// The proposal.
        proposal_id: ProposalId,
        /// The job it is for.
        job_id: JobId,
        /// The job's owner (so the client's rights are checked without loading the job).
        client_id: UserId,
        /// Its author.
        freelancer_id: UserId,
        /// The pitch.
        cover_letter: String,
        /// The milestones, ordered by due date.
        milestones: Vec<ProposedMilestone>,
        /// Links to uploaded files (absent from events recorded before attachments existed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<FileRef>,
        /// When.
        submitted_at: Timestamp,
    },
    /// The freelancer changed the terms.
    ProposalUpdated {
        /// The proposal.
        proposal_id: ProposalId,
        /// Its author, whose key seals the pitch (schema 2; schema-1 events read as the nil id:
        /// see the ledger's upcasters).
        freelancer_id: UserId,
        /// The new pitch.
        cover_letter: String,
        /// The new milestones.
        milestones: Vec<ProposedMilestone>,
        /// The new attachments, replacing the old (absent from events recorded before attachments
        /// existed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<FileRef>,
        /// When.
        updated_at: Timestamp,
    },
    /// The freelancer withdrew it.
    ProposalWithdrawn {
        /// The proposal.
        proposal_id: ProposalId,
        /// The job it was for.
        job_id: JobId,
        /// When.
        withdrawn_at: Timestamp,
    },
    /// The client rejected it, or accepted another proposal to the same job.
    ProposalRejected {
        /// The proposal.
        proposal_id: ProposalId,
        /// The job it was for.
        job_id: JobId,
        /// When.
        rejected_at: Timestamp,
    },
    /// The client accepted it: the contract saga initiates `contract_id` from it (DESIGN §7).
    ProposalAccepted {
        /// The proposal.
        proposal_id: ProposalId,
        /// The job.
        job_id: JobId,
        /// The job's owner.
        client_id: UserId,
        /// The proposal's author.
        freelancer_id: UserId,
        /// The contract to initiate: v5 of the proposal id.
        contract_id: ContractId,
        /// The agreed milestones.
        milestones: Vec<ProposedMilestone>,
        /// When.
        accepted_at: Timestamp,
    },
    /// The acceptance was undone because its contract could not be initiated (DESIGN §7): the
    /// proposal is pending (`SUBMITTED`) again. The job is reopened by its own `JobReopened`.
    ProposalAcceptanceReverted {
        /// The proposal.
        proposal_id: ProposalId,
        /// The job it is for.
        job_id: JobId,
        /// Why the contract could not be initiated.
        reason: String,
        /// When.
        reverted_at: Timestamp,
    },
}

impl DomainEvent for ProposalEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::ProposalSubmitted { .. } => "ProposalSubmitted",
            Self::ProposalUpdated { .. } => "ProposalUpdated",
            Self::ProposalWithdrawn { .. } => "ProposalWithdrawn",
            Self::ProposalRejected { .. } => "ProposalRejected",
            Self::ProposalAccepted { .. } => "ProposalAccepted",
            Self::ProposalAcceptanceReverted { .. } => "ProposalAcceptanceReverted",
        }
    }

    fn schema_version(&self) -> u16 {
        match self {
            // 2: names its author (`freelancer_id`), the subject of its personal data.
            Self::ProposalUpdated { .. } => 2,
            _ => 1,
        }
    }

    /// The pitch and the attached files are the freelancer's own words and documents (often a
    /// résumé); the milestones and amounts are not personal.
    fn personal_data(&self) -> Option<PersonalData> {
        const TERMS: &[PersonalField] = &[
            PersonalField::text("cover_letter"),
            PersonalField::list("attachments"),
        ];
        match self {
            Self::ProposalSubmitted { freelancer_id, .. } | Self::ProposalUpdated { freelancer_id, .. } => {
                Some(PersonalData {
                    subject: *freelancer_id,
                    fields: TERMS,
                })
            }
            _ => None,
        }
    }
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProposalStatus {
    /// Waiting for the client (also after an acceptance was reverted).
    Submitted,
    /// Taken back by the freelancer.
    Withdrawn,
    /// Turned down.
    Rejected,
    /// Accepted: a contract follows.
    Accepted,
}

/// What decisions need to know about a proposal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proposal {
    /// Set once submitted.
    pub submitted: Option<SubmittedProposal>,
}

/// A submitted proposal's decision state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedProposal {
    /// The proposal.
    pub id: ProposalId,
    /// The job it is for.
    pub job_id: JobId,
    /// The job's owner.
    pub client_id: UserId,
    /// Its author.
    pub freelancer_id: UserId,
    /// The current milestones (copied into the contract on acceptance).
    pub milestones: Vec<ProposedMilestone>,
    /// Where it stands.
    pub status: ProposalStatus,
}

impl Proposal {
    /// Its status, if submitted.
    pub fn status(&self) -> Option<ProposalStatus> {
        self.submitted.as_ref().map(|p| p.status)
    }
}

impl Aggregate for Proposal {
    const STREAM_TYPE: &'static str = "proposal";
    const CONTEXT: BoundedContext = BoundedContext::Jobs;
    type Event = ProposalEvent;

    fn evolve(&mut self, event: &ProposalEvent) {
        match event {
            ProposalEvent::ProposalSubmitted {
                proposal_id,
                job_id,
                client_id,
                freelancer_id,
                milestones,
                ..
            } => {
                self.submitted = Some(SubmittedProposal {
                    id: *proposal_id,
                    job_id: *job_id,
                    client_id: *client_id,
                    freelancer_id: *freelancer_id,
                    milestones: milestones.clone(),
                    status: ProposalStatus::Submitted,
                });
            }
            ProposalEvent::ProposalUpdated { milestones, .. } => {
                if let Some(p) = &mut self.submitted {
                    p.milestones = milestones.clone();
                }
            }
            ProposalEvent::ProposalWithdrawn { .. } => self.set_status(ProposalStatus::Withdrawn),
            ProposalEvent::ProposalRejected { .. } => self.set_status(ProposalStatus::Rejected),
            ProposalEvent::ProposalAccepted { .. } => self.set_status(ProposalStatus::Accepted),
            ProposalEvent::ProposalAcceptanceReverted { .. } => self.set_status(ProposalStatus::Submitted),
        }
    }
}

impl Proposal {
    fn set_status(&mut self, status: ProposalStatus) {
        if let Some(p) = &mut self.submitted {
            p.status = status;
        }
    }
}

/// The submitted proposal, or 404.
pub(crate) fn existing(proposal: &Proposal) -> Result<&SubmittedProposal, DomainError> {
    proposal
        .submitted
        .as_ref()
        .ok_or(DomainError::NotFound("proposal"))
}

/// Refuse unless the proposal still waits for the client.
pub(crate) fn ensure_pending(p: &SubmittedProposal) -> Result<(), DomainError> {
    match p.status {
        ProposalStatus::Submitted => Ok(()),
        ProposalStatus::Withdrawn => Err(DomainError::Conflict("proposal-withdrawn")),
        ProposalStatus::Rejected => Err(DomainError::Conflict("proposal-rejected")),
        ProposalStatus::Accepted => Err(DomainError::Conflict("proposal-accepted")),
    }
}

/// Decide what a single-stream command on `proposal` emits.
///
/// Updating re-validates the terms in the currency of the proposal's milestones (the job's currency
/// when it was submitted).
pub fn decide(
    proposal: &Proposal,
    command: &ProposalCommand,
    ctx: &Context,
) -> Result<Vec<ProposalEvent>, DomainError> {
    let p = existing(proposal)?;
    match command {
        ProposalCommand::Update { terms } => {
            if ctx.actor.id != p.freelancer_id {
                return Err(DomainError::Forbidden("not-the-proposal-author"));
            }
            ensure_pending(p)?;
            let currency = p
                .milestones
                .first()
                .map(|m| m.amount.currency)
                .unwrap_or(Currency::Usd);
            let ValidTerms {
                cover_letter,
                milestones,
                attachments,
            } = validate_terms(p.id, terms, currency, ctx.now.date())?;
            Ok(vec![ProposalEvent::ProposalUpdated {
                proposal_id: p.id,
                freelancer_id: p.freelancer_id,
                cover_letter,
                milestones,
                attachments,
                updated_at: ctx.now,
            }])
        }
        ProposalCommand::Withdraw => {
            if ctx.actor.id != p.freelancer_id {
                return Err(DomainError::Forbidden("not-the-proposal-author"));
            }
            ensure_pending(p)?;
            Ok(vec![ProposalEvent::ProposalWithdrawn {
                proposal_id: p.id,
                job_id: p.job_id,
                withdrawn_at: ctx.now,
            }])
        }
        ProposalCommand::Reject => {
            if ctx.actor.id != p.client_id || ctx.actor.role != Role::Client {
                return Err(DomainError::Forbidden("not-the-job-owner"));
            }
            ensure_pending(p)?;
            Ok(vec![ProposalEvent::ProposalRejected {
                proposal_id: p.id,
                job_id: p.job_id,
                rejected_at: ctx.now,
            }])
        }
        ProposalCommand::RevertAcceptance { reason } => {
            ctx.ensure_system()?;
            if p.status != ProposalStatus::Accepted {
                return Err(DomainError::Conflict("proposal-not-accepted"));
            }
            Ok(vec![ProposalEvent::ProposalAcceptanceReverted {
                proposal_id: p.id,
                job_id: p.job_id,
                reason: reason.clone(),
                reverted_at: ctx.now,
            }])
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::*;
    use uuid::Uuid;

    pub const JOB: JobId = JobId::from_uuid(Uuid::from_u128(0x10B));
    pub const PROPOSAL: ProposalId = ProposalId::from_uuid(Uuid::from_u128(0x9901));

    /// Valid terms: `n` milestones of 100.00 USD due on consecutive days.
    pub fn terms(n: usize) -> ProposalTerms {
        ProposalTerms {
            cover_letter: "I can do it".into(),
            milestones: (0..n)
                .map(|i| MilestoneTerms {
                    title: format!("part {i}"),
                    amount: usd(10_000),
                    due_on: day(i as i64 + 1),
                })
                .collect(),
            attachments: vec![],
        }
    }

    /// `n` distinct attachment links, `files/<tag>-<i>.pdf`.
    pub fn attachments(tag: &str, n: usize) -> Vec<FileRef> {
        let raw: Vec<String> = (0..n).map(|i| format!("files/{tag}-{i}.pdf")).collect();
        parse_attachments(&raw).unwrap()
    }

    /// The validated form of `terms(n)` for `proposal`.
    pub fn milestones(proposal: ProposalId, n: usize) -> Vec<ProposedMilestone> {
        validate_terms(proposal, &terms(n), Currency::Usd, now().date())
            .unwrap()
            .milestones
    }

    /// `proposal` was submitted by `freelancer` to the client's job with `n` milestones.
    pub fn submitted_by(proposal: ProposalId, freelancer: UserId, n: usize) -> ProposalEvent {
        ProposalEvent::ProposalSubmitted {
            proposal_id: proposal,
            job_id: JOB,
            client_id: CLIENT_ID,
            freelancer_id: freelancer,
            cover_letter: "I can do it".into(),
            milestones: milestones(proposal, n),
            attachments: vec![],
            submitted_at: now(),
        }
    }

    fn submitted() -> ProposalEvent {
        submitted_by(PROPOSAL, FREELANCER_ID, 2)
    }

    fn withdrawn() -> ProposalEvent {
        ProposalEvent::ProposalWithdrawn {
            proposal_id: PROPOSAL,
            job_id: JOB,
            withdrawn_at: now(),
        }
    }

    #[test]
    fn the_author_updates_a_pending_proposal() {
        let mut new_terms = terms(3);
        new_terms.cover_letter = "  better  ".into();
        given::<Proposal>([submitted()])
            .when(|p| decide(p, &ProposalCommand::Update { terms: new_terms }, &ctx(FREELANCER)))
            .then([ProposalEvent::ProposalUpdated {
                proposal_id: PROPOSAL,
                freelancer_id: FREELANCER_ID,
                cover_letter: "better".into(),
                milestones: milestones(PROPOSAL, 3),
                attachments: vec![],
                updated_at: now(),
            }]);
    }

    #[test]
    fn an_update_replaces_the_attachments() {
        let with_old_files = ProposalEvent::ProposalSubmitted {
            proposal_id: PROPOSAL,
            job_id: JOB,
            client_id: CLIENT_ID,
            freelancer_id: FREELANCER_ID,
            cover_letter: "I can do it".into(),
            milestones: milestones(PROPOSAL, 2),
            attachments: attachments("old", 3),
            submitted_at: now(),
        };
        let mut new_terms = terms(2);
        new_terms.attachments = attachments("new", 1);
        given::<Proposal>([with_old_files])
            .when(|p| decide(p, &ProposalCommand::Update { terms: new_terms }, &ctx(FREELANCER)))
            .then([ProposalEvent::ProposalUpdated {
                proposal_id: PROPOSAL,
                freelancer_id: FREELANCER_ID,
                cover_letter: "I can do it".into(),
                milestones: milestones(PROPOSAL, 2),
                attachments: attachments("new", 1),
                updated_at: now(),
            }]);
    }

    #[test]
    fn an_update_checks_the_attachments() {
        let mut bad = terms(1);
        bad.attachments = attachments("a", MAX_ATTACHMENTS + 1);
        given::<Proposal>([submitted()])
            .when(|p| decide(p, &ProposalCommand::Update { terms: bad }, &ctx(FREELANCER)))
            .then_invalid(&["attachments"]);
    }

    #[test]
    fn only_the_author_updates_a_proposal() {
        given::<Proposal>([submitted()])
            .when(|p| {
                decide(
                    p,
                    &ProposalCommand::Update { terms: terms(1) },
                    &ctx(OTHER_FREELANCER),
                )
            })
            .then_err(DomainError::Forbidden("not-the-proposal-author"));
    }

    #[test]
    fn an_update_is_validated_like_a_submission() {
        let mut bad = terms(2);
        bad.milestones[1].amount = usd(0);
        bad.milestones[0].due_on = day(-1);
        given::<Proposal>([submitted()])
            .when(|p| decide(p, &ProposalCommand::Update { terms: bad }, &ctx(FREELANCER)))
            .then_invalid(&["milestones[0].due_on", "milestones[1].amount"]);
    }

    #[test]
    fn a_withdrawn_proposal_cannot_be_updated() {
        given::<Proposal>([submitted(), withdrawn()])
            .when(|p| decide(p, &ProposalCommand::Update { terms: terms(1) }, &ctx(FREELANCER)))
            .then_err(DomainError::Conflict("proposal-withdrawn"));
    }

    #[test]
    fn commands_on_a_missing_proposal_are_not_found() {
        given::<Proposal>([])
            .when(|p| decide(p, &ProposalCommand::Withdraw, &ctx(FREELANCER)))
            .then_err(DomainError::NotFound("proposal"));
    }

    #[test]
    fn the_author_withdraws_a_pending_proposal() {
        given::<Proposal>([submitted()])
            .when(|p| decide(p, &ProposalCommand::Withdraw, &ctx(FREELANCER)))
            .then([withdrawn()]);
    }

    #[test]
    fn only_the_author_withdraws_a_proposal() {
        given::<Proposal>([submitted()])
            .when(|p| decide(p, &ProposalCommand::Withdraw, &ctx(CLIENT)))
            .then_err(DomainError::Forbidden("not-the-proposal-author"));
    }

    #[test]
    fn a_proposal_is_withdrawn_once() {
        given::<Proposal>([submitted(), withdrawn()])
            .when(|p| decide(p, &ProposalCommand::Withdraw, &ctx(FREELANCER)))
            .then_err(DomainError::Conflict("proposal-withdrawn"));
    }

    #[test]
    fn the_job_owner_rejects_a_pending_proposal() {
        given::<Proposal>([submitted()])
            .when(|p| decide(p, &ProposalCommand::Reject, &ctx(CLIENT)))
            .then([ProposalEvent::ProposalRejected {
                proposal_id: PROPOSAL,
                job_id: JOB,
                rejected_at: now(),
            }]);
    }

    #[test]
    fn only_the_job_owner_rejects_a_proposal() {
        for actor in [OTHER_CLIENT, FREELANCER, ADMIN] {
            given::<Proposal>([submitted()])
                .when(|p| decide(p, &ProposalCommand::Reject, &ctx(actor)))
                .then_err(DomainError::Forbidden("not-the-job-owner"));
        }
    }

    #[test]
    fn a_withdrawn_proposal_cannot_be_rejected() {
        given::<Proposal>([submitted(), withdrawn()])
            .when(|p| decide(p, &ProposalCommand::Reject, &ctx(CLIENT)))
            .then_err(DomainError::Conflict("proposal-withdrawn"));
    }

    /// The client accepted `PROPOSAL` (as [`super::super::accept_proposal`] records it).
    pub fn accepted() -> ProposalEvent {
        ProposalEvent::ProposalAccepted {
            proposal_id: PROPOSAL,
            job_id: JOB,
            client_id: CLIENT_ID,
            freelancer_id: FREELANCER_ID,
            contract_id: ContractId::for_proposal(PROPOSAL),
            milestones: milestones(PROPOSAL, 2),
            accepted_at: now(),
        }
    }

    /// The contract saga reverted the acceptance of `PROPOSAL`.
    pub fn reverted() -> ProposalEvent {
        ProposalEvent::ProposalAcceptanceReverted {
            proposal_id: PROPOSAL,
            job_id: JOB,
            reason: "contract-not-initiated".into(),
            reverted_at: now(),
        }
    }

    fn revert() -> ProposalCommand {
        ProposalCommand::RevertAcceptance {
            reason: "contract-not-initiated".into(),
        }
    }

    #[test]
    fn the_saga_reverts_an_accepted_proposal_as_the_system() {
        given::<Proposal>([submitted(), accepted()])
            .when(|p| decide(p, &revert(), &ctx(SYSTEM)))
            .then([reverted()]);
    }

    #[test]
    fn a_reverted_proposal_is_pending_again() {
        let proposal = Proposal::fold(&[submitted(), accepted(), reverted()]);
        assert_eq!(proposal.status(), Some(ProposalStatus::Submitted));
        // Its terms are unchanged, and the parties act on it as on any pending proposal.
        assert_eq!(proposal, Proposal::fold(&[submitted()]));
        given_state(proposal.clone())
            .when(|p| decide(p, &ProposalCommand::Withdraw, &ctx(FREELANCER)))
            .then([withdrawn()]);
        given_state(proposal)
            .when(|p| decide(p, &ProposalCommand::Reject, &ctx(CLIENT)))
            .then_ok();
    }

    #[test]
    fn only_the_system_reverts_an_acceptance() {
        for actor in crate::contracts::contract::tests::USERS {
            given::<Proposal>([submitted(), accepted()])
                .when(|p| decide(p, &revert(), &ctx(actor)))
                .then_err(DomainError::Forbidden("system-only"));
        }
    }

    #[test]
    fn only_an_accepted_proposal_is_reverted() {
        let rejected = ProposalEvent::ProposalRejected {
            proposal_id: PROPOSAL,
            job_id: JOB,
            rejected_at: now(),
        };
        for history in [
            vec![submitted()],
            vec![submitted(), withdrawn()],
            vec![submitted(), rejected],
            // A replayed revert: the saga dedupes its steps by command id.
            vec![submitted(), accepted(), reverted()],
        ] {
            given::<Proposal>(history)
                .when(|p| decide(p, &revert(), &ctx(SYSTEM)))
                .then_err(DomainError::Conflict("proposal-not-accepted"));
        }
    }

    #[test]
    fn reverting_a_missing_proposal_is_not_found() {
        given::<Proposal>([])
            .when(|p| decide(p, &revert(), &ctx(SYSTEM)))
            .then_err(DomainError::NotFound("proposal"));
    }

    #[test]
    fn terms_need_one_to_twenty_milestones() {
        for n in [0, 21] {
            let result = validate_terms(PROPOSAL, &terms(n), Currency::Usd, now().date());
            let Err(DomainError::Invalid(errors)) = result else {
                panic!("{n} milestones accepted")
            };
            assert_eq!(errors[0].field, "milestones", "{n} milestones");
        }
        for n in [1, 20] {
            assert!(
                validate_terms(PROPOSAL, &terms(n), Currency::Usd, now().date()).is_ok(),
                "{n}"
            );
        }
    }

    #[test]
    fn terms_list_every_broken_field() {
        let bad = ProposalTerms {
            cover_letter: " ".into(),
            milestones: vec![
                MilestoneTerms {
                    title: "".into(),
                    amount: usd(-5),
                    due_on: day(3),
                },
                MilestoneTerms {
                    title: "b".into(),
                    amount: eur(100),
                    due_on: day(2),
                },
            ],
            attachments: vec![],
        };
        let Err(DomainError::Invalid(errors)) = validate_terms(PROPOSAL, &bad, Currency::Usd, now().date())
        else {
            panic!("accepted")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "cover_letter",
                "milestones[0].title",
                "milestones[0].amount",
                "milestones[1].amount",
                "milestones[1].due_on"
            ]
        );
    }

    #[test]
    fn a_milestone_due_today_is_accepted() {
        let mut t = terms(1);
        t.milestones[0].due_on = day(0);
        assert!(validate_terms(PROPOSAL, &t, Currency::Usd, now().date()).is_ok());
    }

    #[test]
    fn milestone_ids_are_derived_from_the_proposal() {
        let a = milestones(PROPOSAL, 2);
        assert_eq!(a[0].milestone_id, MilestoneId::for_proposal(PROPOSAL, 0));
        assert_ne!(a[0].milestone_id, a[1].milestone_id);
    }

    #[test]
    fn terms_take_up_to_ten_attachments() {
        let mut t = terms(1);
        t.attachments = attachments("a", MAX_ATTACHMENTS);
        let valid = validate_terms(PROPOSAL, &t, Currency::Usd, now().date()).unwrap();
        assert_eq!(valid.attachments, t.attachments);

        t.attachments = attachments("a", MAX_ATTACHMENTS + 1);
        let Err(DomainError::Invalid(errors)) = validate_terms(PROPOSAL, &t, Currency::Usd, now().date())
        else {
            panic!("11 attachments accepted")
        };
        assert_eq!(errors, [FieldError::new("attachments", "at most 10 attachments")]);
    }

    #[test]
    fn terms_reject_duplicate_attachments() {
        let mut t = terms(1);
        let raw = ["a.pdf", "b.pdf", " a.pdf", "b.pdf"].map(String::from);
        t.attachments = parse_attachments(&raw).unwrap();
        let Err(DomainError::Invalid(errors)) = validate_terms(PROPOSAL, &t, Currency::Usd, now().date())
        else {
            panic!("duplicates accepted")
        };
        assert_eq!(
            errors,
            [
                FieldError::new("attachments[2]", "duplicate"),
                FieldError::new("attachments[3]", "duplicate"),
            ]
        );
    }

    #[test]
    fn attachment_errors_name_each_bad_link() {
        let raw = ["ok.pdf", "", "has space.pdf", &"x".repeat(501)].map(String::from);
        let Err(DomainError::Invalid(errors)) = parse_attachments(&raw) else {
            panic!("bad links accepted")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["attachments[1]", "attachments[2]", "attachments[3]"]);
        assert_eq!(
            parse_attachments(&[" files/a.pdf ".into()]).unwrap()[0].as_str(),
            "files/a.pdf"
        );
        assert_eq!(parse_attachments(&[]), Ok(vec![]));
    }

    #[test]
    fn events_recorded_before_attachments_still_decode() {
        let submitted: ProposalEvent = serde_json::from_value(serde_json::json!({
            "type": "ProposalSubmitted",
            "proposal_id": PROPOSAL,
            "job_id": JOB,
            "client_id": CLIENT_ID,
            "freelancer_id": FREELANCER_ID,
            "cover_letter": "I can do it",
            "milestones": milestones(PROPOSAL, 2),
            "submitted_at": now(),
        }))
        .unwrap();
        assert_eq!(submitted, submitted_by(PROPOSAL, FREELANCER_ID, 2));

        let updated: ProposalEvent = serde_json::from_value(serde_json::json!({
            "type": "ProposalUpdated",
            "proposal_id": PROPOSAL,
            "freelancer_id": FREELANCER_ID,
            "cover_letter": "c",
            "milestones": milestones(PROPOSAL, 1),
            "updated_at": now(),
        }))
        .unwrap();
        let ProposalEvent::ProposalUpdated { attachments, .. } = updated else {
            panic!("decoded as {updated:?}")
        };
        assert!(attachments.is_empty());
    }

    #[test]
    fn attachments_are_recorded_as_links_and_omitted_when_none() {
        let json = serde_json::to_value(submitted()).unwrap();
        assert!(json.get("attachments").is_none(), "{json}");

        let mut with_files = submitted();
        if let ProposalEvent::ProposalSubmitted { attachments: a, .. } = &mut with_files {
            *a = attachments("doc", 2);
        }
        let json = serde_json::to_value(&with_files).unwrap();
        assert_eq!(
            json["attachments"],
            serde_json::json!(["files/doc-0.pdf", "files/doc-1.pdf"])
        );
        assert_round_trip(&[with_files]);
    }
}
