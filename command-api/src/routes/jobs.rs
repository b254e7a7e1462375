//! Jobs and proposals: post, edit and close a job; submit, edit, withdraw, accept and reject a
//! proposal (DESIGN §3).

use axum::{
    Router,
    extract::State,
    response::Response,
    routing::{post, put},
};
use chrono::NaiveDate;
use domain::{
    Currency, DomainError, FieldError, JobId, Money, ProposalId,
    jobs::{
        self, AcceptProposal, Job, JobCommand, JobDraft, MilestoneTerms, Proposal, ProposalCommand,
        ProposalTerms, SubmitProposal, accept_proposal, proposal, submit_proposal,
    },
};
use infra::http::{
    ApiError,
    extract::{Json, Path},
    openapi::bounded_string,
};
use serde::Deserialize;
use uuid::Uuid;

use super::{IdempotencyKeyHeader, WriteProblems, Written, created, written};
use crate::state::{AppState, Command};

/// Routes of the jobs context.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", post(post_job))
        .route("/jobs/{id}", put(update_job))
        .route("/jobs/{id}/close", post(close_job))
        .route("/jobs/{id}/proposals", post(submit_proposal))
        .route("/jobs/{id}/proposals/{proposal_id}/accept", post(accept_proposal))
        .route("/jobs/{id}/proposals/{proposal_id}/reject", post(reject_proposal))
        .route("/proposals/{id}", put(update_proposal))
        .route("/proposals/{id}/withdraw", post(withdraw_proposal))
}

/// A job's budget: an amount in minor units (cents) and its currency.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BudgetBody {
    /// Amount in minor units.
    #[schema(minimum = 1)]
    minor: i64,
    /// Currency.
    #[schema(value_type = infra::http::openapi::CurrencySchema)]
    currency: String,
}

/// Body of a job posting.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct JobRequest {
    /// Title.
    #[schema(min_length = 3, max_length = 200, required = true)]
    title: Option<String>,
    /// Description.
    #[schema(min_length = 1, max_length = 10000, required = true)]
    description: Option<String>,
    /// Budget: positive.
    #[schema(required = true)]
    budget: Option<BudgetBody>,
    /// Required skills.
    #[serde(default)]
    #[schema(max_items = 30, inline)]
    skills: Vec<Skill>,
}

/// A required skill, 1 to 50 characters.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Skill(String);

impl utoipa::PartialSchema for Skill {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        bounded_string(1, 50, None)
    }
}

impl utoipa::ToSchema for Skill {}

impl TryFrom<JobRequest> for JobDraft {
    type Error = DomainError;

    fn try_from(body: JobRequest) -> Result<Self, DomainError> {
        let mut missing = Vec::new();
        for (field, present) in [
            ("title", body.title.is_some()),
            ("description", body.description.is_some()),
            ("budget", body.budget.is_some()),
        ] {
            if !present {
                missing.push(FieldError::new(field, "required"));
            }
        }
        let budget = match &body.budget {
            Some(b) => match b.currency.parse::<Currency>() {
                Ok(currency) => Some(Money::new(b.minor, currency)),
                Err(mut e) => {
                    e.field = "budget.currency".into();
                    missing.push(e);
                    None
                }
            },
            None => None,
        };
        let draft = JobDraft::parse(
            body.title.as_deref().unwrap_or_default(),
            body.description.as_deref().unwrap_or_default(),
            budget.unwrap_or(Money::new(1, Currency::Usd)),
            &body.skills.into_iter().map(|Skill(s)| s).collect::<Vec<_>>(),
        );
        match draft {
            Ok(draft) if missing.is_empty() => Ok(draft),
            Ok(_) => Err(DomainError::Invalid(missing)),
            Err(DomainError::Invalid(mut errors)) => {
                // A missing field is reported once, as missing.
                errors.retain(|e| !missing.iter().any(|m| e.field.starts_with(m.field.as_str())));
                missing.extend(errors);
                Err(DomainError::Invalid(missing))
            }
            Err(other) => Err(other),
        }
    }
}

/// Post a job (clients only); the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = JobRequest, security(("bearer" = [])),
    params(IdempotencyKeyHeader), responses((status = 201, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn post_job(
    State(app): State<AppState>,
    command: Command,
    Json(body): Json<JobRequest>,
) -> Result<Response, ApiError> {
    let draft = JobDraft::try_from(body)?;
    let job_id = JobId::from_uuid(command.new_id("job"));
    let decision = JobCommand::Post { job_id, draft };
    let appended = app
        .ledger
        .create::<Job>(job_id.as_uuid(), command.metadata, |job| {
            jobs::decide(job, &decision, &command.ctx)
        })
        .await?;
    tracing::info!(%job_id, "job posted");
    Ok(created(job_id, &appended))
}

/// Edit an open job (its owner only).
#[utoipa::path(put, path = "/api/v1/jobs/{id}", tag = "jobs", request_body = JobRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "job id"), IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn update_job(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
    Json(body): Json<JobRequest>,
) -> Result<Response, ApiError> {
    let draft = JobDraft::try_from(body)?;
    on_job(&app, command, id, JobCommand::Update { draft }).await
}

/// Close an open job without accepting a proposal (its owner only).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/close", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "job id"), IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn close_job(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    on_job(&app, command, id, JobCommand::Close).await
}

async fn on_job(
    app: &AppState,
    command: Command,
    id: Uuid,
    decision: JobCommand,
) -> Result<Response, ApiError> {
    let appended = app
        .ledger
        .execute::<Job>(id, command.metadata, |job| {
            jobs::decide(job, &decision, &command.ctx)
        })
        .await?;
    Ok(written(id, &appended))
}

/// One milestone of a proposal.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MilestoneRequest {
    /// What is delivered.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    /// Its price, in the job's currency.
    amount: super::MoneyBody,
    /// Due date (not in the past, not before the previous milestone's).
    #[schema(value_type = String, format = Date)]
    due_on: NaiveDate,
}

/// A proposal's terms: a cover letter, 1 to 20 ordered milestones, and links to attachments.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProposalRequest {
    /// Why you.
    #[schema(min_length = 1, max_length = 5000)]
    cover_letter: String,
    /// The milestones, in order.
    #[schema(min_items = 1, max_items = 20)]
    milestones: Vec<MilestoneRequest>,
    /// Links to attached files (e.g. from `POST /api/v1/media/resumes`), distinct.
    #[serde(default)]
    #[schema(max_items = 10, inline)]
    attachments: Vec<AttachmentLink>,
}

/// A link to an attached file.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct AttachmentLink(String);

impl utoipa::PartialSchema for AttachmentLink {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        bounded_string(1, 500, Some(r"^\S+$"))
    }
}

impl utoipa::ToSchema for AttachmentLink {}

impl TryFrom<ProposalRequest> for ProposalTerms {
    type Error = DomainError;

    fn try_from(body: ProposalRequest) -> Result<Self, DomainError> {
        let links: Vec<String> = body.attachments.into_iter().map(|AttachmentLink(l)| l).collect();
        Ok(Self {
            attachments: proposal::parse_attachments(&links)?,
            cover_letter: body.cover_letter,
            milestones: body
                .milestones
                .into_iter()
                .map(|m| MilestoneTerms {
                    title: m.title,
                    amount: m.amount.into(),
                    due_on: m.due_on,
                })
                .collect(),
        })
    }
}

/// Propose to do an open job (freelancers only): appended to the job and the new proposal at once.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/proposals", tag = "proposals", request_body = ProposalRequest,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "job id"), IdempotencyKeyHeader),
    responses((status = 201, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn submit_proposal(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
    Json(body): Json<ProposalRequest>,
) -> Result<Response, ApiError> {
    let proposal_id = ProposalId::from_uuid(command.new_id("proposal"));
    let decision = SubmitProposal {
        proposal_id,
        terms: body.try_into()?,
    };
    let stream = proposal_id.as_uuid();
    let appended = app
        .ledger
        .execute_with(command.metadata.clone(), async |unit| {
            let job = unit.load::<Job>(id).await?;
            let proposal = unit.create::<Proposal>(stream);
            let events = submit_proposal::decide((&job, &proposal), &decision, &command.ctx)?;
            unit.write::<Job>(id, &events.job)?;
            unit.write::<Proposal>(stream, &events.proposal)?;
            Ok(())
        })
        .await?;
    tracing::info!(%proposal_id, job_id = %id, "proposal submitted");
    Ok(created(proposal_id, &appended))
}

/// Change a pending proposal's terms (its author only).
#[utoipa::path(put, path = "/api/v1/proposals/{id}", tag = "proposals", request_body = ProposalRequest,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "proposal id"), IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn update_proposal(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
    Json(body): Json<ProposalRequest>,
) -> Result<Response, ApiError> {
    on_proposal(
        &app,
        command,
        id,
        ProposalCommand::Update {
            terms: body.try_into()?,
        },
    )
    .await
}

/// Take a pending proposal back (its author only).
#[utoipa::path(post, path = "/api/v1/proposals/{id}/withdraw", tag = "proposals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "proposal id"), IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn withdraw_proposal(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    on_proposal(&app, command, id, ProposalCommand::Withdraw).await
}

/// Turn a pending proposal down (the job's owner only).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/proposals/{proposal_id}/reject", tag = "proposals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "job id"), ("proposal_id" = Uuid, Path, description = "proposal id"),
        IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id, %proposal_id))]
pub async fn reject_proposal(
    State(app): State<AppState>,
    command: Command,
    Path((id, proposal_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let appended = app
        .ledger
        .execute::<Proposal>(proposal_id, command.metadata, |proposal| {
            match proposal.submitted.as_ref() {
                Some(p) if p.job_id.as_uuid() == id => {}
                _ => return Err(DomainError::NotFound("proposal")),
            }
            proposal::decide(proposal, &ProposalCommand::Reject, &command.ctx)
        })
        .await?;
    Ok(written(proposal_id, &appended))
}

async fn on_proposal(
    app: &AppState,
    command: Command,
    id: Uuid,
    decision: ProposalCommand,
) -> Result<Response, ApiError> {
    let appended = app
        .ledger
        .execute::<Proposal>(id, command.metadata, |proposal| {
            proposal::decide(proposal, &decision, &command.ctx)
        })
        .await?;
    Ok(written(id, &appended))
}

/// Accept a proposal (the job's owner only): the proposal is accepted, every other pending one
/// rejected and the job closed, in one append over all their streams. Of two concurrent
/// accepts one wins; the other is a 409. The contract follows (saga).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/proposals/{proposal_id}/accept", tag = "proposals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "job id"), ("proposal_id" = Uuid, Path, description = "proposal id"),
        IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id, %proposal_id))]
pub async fn accept_proposal(
    State(app): State<AppState>,
    command: Command,
    Path((id, proposal_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let accepted = ProposalId::from_uuid(proposal_id);
    let appended = app
        .ledger
        .execute_with(command.metadata.clone(), async |unit| {
            let job = unit.load::<Job>(id).await?;
            let proposal = unit.load::<Proposal>(proposal_id).await?;
            let mut others = Vec::new();
            for other in accept_proposal::other_proposals(&job, accepted) {
                others.push(unit.load::<Proposal>(other.as_uuid()).await?);
            }
            let decision = AcceptProposal {
                proposal_id: accepted,
            };
            let events = accept_proposal::decide((&job, &proposal, &others), &decision, &command.ctx)?;
            unit.write::<Job>(id, &events.job)?;
            unit.write::<Proposal>(proposal_id, &events.accepted)?;
            for (other, rejected) in &events.rejected {
                unit.write::<Proposal>(other.as_uuid(), rejected)?;
            }
            Ok(())
        })
        .await?;
    tracing::info!(job_id = %id, %proposal_id, "proposal accepted");
    Ok(written(proposal_id, &appended))
}
