//! Jobs and proposals (DESIGN §3), from the jobs read model ([`infra::read_models::jobs`]): a
//! job (cache first), the caller's jobs, keyword search over open jobs, a job's proposals, a
//! proposal and the caller's proposals.
//!
//! Jobs are public to every signed-in user. Proposals are private (DESIGN §2): a job's proposals
//! are listed to its owner and admins only (403 for anyone else: the job itself is public); a
//! proposal is shown to its author, the job's owner and admins (404 for anyone else, as for a
//! proposal that does not exist).

use axum::{Router, extract::State, routing::get};
use domain::{
    Actor, Aggregate, DomainError, Role,
    jobs::{Job, Proposal},
};
use infra::{
    http::{
        ApiError,
        auth::Authenticated,
        extract::{Json, Path, Query},
        problem::Problem,
    },
    read_models::{
        consistency::ConsistencyToken,
        jobs::{self, BadQuery, Cursor, JobPage, JobView, PageRequest, ProposalPage, ProposalView},
    },
};
use serde::Deserialize;
use uuid::Uuid;

use super::paging::PageParams;
use crate::state::{AppState, LiveState};

/// The read model's name in 504 problems.
const NAME: &str = "jobs";
/// Longest search query.
const MAX_QUERY_CHARS: usize = 500;

/// Routes of the jobs context.
pub fn router() -> Router<LiveState> {
    Router::new()
        .route("/jobs/me", get(my_jobs))
        .route("/jobs/search", get(search_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/proposals", get(job_proposals))
        .route("/proposals/me", get(my_proposals))
        .route("/proposals/{id}", get(get_proposal))
}

impl PageParams {
    /// The page asked for, checked (400 naming `limit` or `page_token`).
    fn request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit()?;
        let after = self
            .page_token
            .as_deref()
            .map(Cursor::decode)
            .transpose()
            .map_err(|_| DomainError::invalid("page_token", "not a page token of this list"))?;
        Ok(PageRequest { limit, after })
    }
}

/// A keyword search: the words of `q`, and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words to look for (1 to 10 distinct words, at most 500 characters): a job matches when
    /// its title, description or skills have **any** of them, whole and case-insensitive.
    #[param(required = true, min_length = 1, max_length = 500)]
    q: Option<String>,
    /// Items per page: 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_page_token` of the previous page; absent for the first page.
    page_token: Option<String>,
}

/// A job posting (any signed-in user may read it). Cache first: a cached job is served when it
/// is at least the version of the consistency token (if any); otherwise, after waiting for the
/// token, from Cassandra, and the cache is filled unless it holds a newer version. A cache failure
/// degrades to a Cassandra read.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "job id"), ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = JobView),
        (status = 400, description = "bad id or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get_job(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
    Path(id): Path<Uuid>,
    token: Option<ConsistencyToken>,
) -> Result<Json<JobView>, ApiError> {
    let key = jobs::cache_key(id);
    // The cache may answer when the token names no job stream but this one, at most the cached
    // version of it.
    let jobs_in_token = token
        .iter()
        .flat_map(|t| t.0.iter())
        .filter(|p| p.stream_type == Job::STREAM_TYPE);
    let (mut wanted, mut others) = (0, false);
    for position in jobs_in_token {
        if position.stream_id == id {
            wanted = wanted.max(position.version);
        } else {
            others = true;
        }
    }
    if !others {
        match app.cache.get_versioned::<JobView>(&key).await {
            Ok(Some(hit)) if hit.version >= wanted => {
                metrics::counter!("workup_cache_total", "result" => "hit").increment(1);
                return Ok(Json(hit.value));
            }
            Ok(Some(_)) => metrics::counter!("workup_cache_total", "result" => "behind").increment(1),
            Ok(None) => metrics::counter!("workup_cache_total", "result" => "miss").increment(1),
            Err(error) => tracing::warn!(%error, "cache read failed; reading Cassandra"),
        }
    }
    wait(&app, token.as_ref(), &[Job::STREAM_TYPE]).await?;
    let job = app
        .jobs
        .get(id)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::NotFound("job-not-found"))?;
    if let Err(error) = app.cache.put_versioned(&key, job.version, &job).await {
        tracing::warn!(%error, "cache fill failed");
    }
    Ok(Json(job))
}

/// The caller's jobs (as a client), newest first, open and closed (others have none).
#[utoipa::path(get, path = "/api/v1/jobs/me", tag = "jobs", security(("bearer" = [])),
    params(PageParams, ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = JobPage),
        (status = 400, description = "bad limit, page token or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn my_jobs(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Query(page): Query<PageParams>,
    token: Option<ConsistencyToken>,
) -> Result<Json<JobPage>, ApiError> {
    let page = page.request()?;
    wait(&app, token.as_ref(), &[Job::STREAM_TYPE]).await?;
    if actor.role != Role::Client {
        return Ok(Json(JobPage {
            items: Vec::new(),
            next_page_token: None,
        }));
    }
    app.jobs
        .jobs_of_client(actor.id.as_uuid(), &page)
        .await
        .map(Json)
        .map_err(ApiError::from)
}

/// Open jobs having **any** word of `q` in their title, description or skills (whole words,
/// case-insensitive), newest first. Closed jobs are not found.
#[utoipa::path(get, path = "/api/v1/jobs/search", tag = "jobs", security(("bearer" = [])),
    params(SearchParams, ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = JobPage),
        (status = 400, description = "no or too many words in q, bad limit, page token or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all)]
pub async fn search_jobs(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
    Query(params): Query<SearchParams>,
    token: Option<ConsistencyToken>,
) -> Result<Json<JobPage>, ApiError> {
    let q = params.q.as_deref().unwrap_or_default();
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(DomainError::invalid("q", "at most 500 characters").into());
    }
    let words = jobs::query_words(q).map_err(|e| match e {
        BadQuery::NoWord => DomainError::invalid("q", "at least one word (letters or digits)"),
        BadQuery::TooManyWords => DomainError::invalid("q", "at most 10 distinct words"),
    })?;
    let page = PageParams {
        limit: params.limit,
        page_token: params.page_token,
    }
    .request()?;
    wait(&app, token.as_ref(), &[Job::STREAM_TYPE]).await?;
    app.jobs
        .search(&words, &page)
        .await
        .map(Json)
        .map_err(ApiError::from)
}

/// The proposals to a job, newest first (its owner and admins only).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/proposals", tag = "proposals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "job id"), PageParams, ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = ProposalPage),
        (status = 400, description = "bad id, limit, page token or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the caller neither owns the job nor is an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id, %id))]
pub async fn job_proposals(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
    Query(page): Query<PageParams>,
    token: Option<ConsistencyToken>,
) -> Result<Json<ProposalPage>, ApiError> {
    let page = page.request()?;
    wait(&app, token.as_ref(), &[Job::STREAM_TYPE, Proposal::STREAM_TYPE]).await?;
    let job = app
        .jobs
        .get(id)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::NotFound("job-not-found"))?;
    if job.client_id != actor.id.as_uuid() && actor.role != Role::Admin {
        return Err(DomainError::Forbidden("not-the-job-owner").into());
    }
    app.jobs
        .proposals_of_job(id, &page)
        .await
        .map(Json)
        .map_err(ApiError::from)
}

/// A proposal (its author, the job's owner and admins only).
#[utoipa::path(get, path = "/api/v1/proposals/{id}", tag = "proposals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "proposal id"), ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = ProposalView),
        (status = 400, description = "bad id or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such proposal, or the caller is none of its author, the job's owner and an admin", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id, %id))]
pub async fn get_proposal(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
    token: Option<ConsistencyToken>,
) -> Result<Json<ProposalView>, ApiError> {
    wait(&app, token.as_ref(), &[Proposal::STREAM_TYPE]).await?;
    match app.jobs.proposal(id).await.map_err(ApiError::from)? {
        Some(proposal) if may_see(&actor, &proposal) => Ok(Json(proposal)),
        _ => Err(ApiError::NotFound("proposal-not-found")),
    }
}

/// The caller's proposals (as a freelancer), newest first, in every status (others have none).
#[utoipa::path(get, path = "/api/v1/proposals/me", tag = "proposals", security(("bearer" = [])),
    params(PageParams, ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = ProposalPage),
        (status = 400, description = "bad limit, page token or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn my_proposals(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Query(page): Query<PageParams>,
    token: Option<ConsistencyToken>,
) -> Result<Json<ProposalPage>, ApiError> {
    let page = page.request()?;
    wait(&app, token.as_ref(), &[Proposal::STREAM_TYPE]).await?;
    if actor.role != Role::Freelancer {
        return Ok(Json(ProposalPage {
            items: Vec::new(),
            next_page_token: None,
        }));
    }
    app.jobs
        .proposals_of_freelancer(actor.id.as_uuid(), &page)
        .await
        .map(Json)
        .map_err(ApiError::from)
}

/// Whether `actor` may see `proposal`: its author, the job's owner or an admin (DESIGN §2).
fn may_see(actor: &Actor, proposal: &ProposalView) -> bool {
    let me = actor.id.as_uuid();
    me == proposal.freelancer_id || me == proposal.client_id || actor.role == Role::Admin
}

/// Read-your-writes (DESIGN §6): wait until the streams of `token` of `stream_types` are applied.
async fn wait(
    app: &AppState,
    token: Option<&ConsistencyToken>,
    stream_types: &[&str],
) -> Result<(), ApiError> {
    let jobs = &app.jobs;
    app.wait
        .until_applied(token, NAME, stream_types, |id| jobs.applied(id))
        .await
}
