//! Jobs: posting (DESIGN §3).

use axum::{Router, extract::State, routing::post};
use domain::{
    Currency, DomainError, FieldError, JobId, Money,
    jobs::{self, Job, JobCommand, JobDraft},
};
use infra::http::{
    ApiError, auth::Authenticated, correlation::CorrelationId, extract::Json, problem::Problem,
};
use serde::Deserialize;
use uuid::Uuid;

use super::{Written, created};
use crate::state::{AppState, command_context};

/// Routes of the jobs context.
pub fn router() -> Router<AppState> {
    Router::new().route("/jobs", post(post_job))
}

/// An amount in minor units (cents) and its currency.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MoneyBody {
    minor: i64,
    currency: String,
}

/// Body of a job posting.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct JobRequest {
    title: Option<String>,
    description: Option<String>,
    budget: Option<MoneyBody>,
    #[serde(default)]
    skills: Vec<String>,
}

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
            &body.skills,
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
    responses((status = 201, body = Written), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn post_job(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    correlation: CorrelationId,
    Json(body): Json<JobRequest>,
) -> Result<axum::response::Response, ApiError> {
    let draft = JobDraft::try_from(body)?;
    let job_id = JobId::from_uuid(Uuid::now_v7());
    let command = JobCommand::Post { job_id, draft };
    let (ctx, metadata) = command_context(actor, correlation);
    let appended = app
        .ledger
        .execute::<Job>(job_id.as_uuid(), metadata, |job| {
            jobs::decide(job, &command, &ctx)
        })
        .await?;
    tracing::info!(%job_id, "job posted");
    Ok(created(job_id, &appended))
}
