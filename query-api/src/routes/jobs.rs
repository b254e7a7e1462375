//! Jobs: a job by id, through the Redis read-through cache (DESIGN §3).

use axum::{Router, extract::State, routing::get};
use infra::{
    cassandra::JobView,
    http::{
        ApiError,
        auth::Authenticated,
        extract::{Json, Path},
        problem::Problem,
    },
};
use uuid::Uuid;

use crate::state::AppState;

/// Routes of the jobs context.
pub fn router() -> Router<AppState> {
    Router::new().route("/jobs/{id}", get(get_job))
}

/// A job posting (any signed-in user may read it). Cache first; on a miss, Cassandra, then
/// the cache is filled only if still empty, so it never overwrites a newer projected value.
/// A cache failure degrades to a Cassandra read.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get_job(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
    Path(id): Path<Uuid>,
) -> Result<Json<JobView>, ApiError> {
    let key = format!("job:{id}");
    match app.cache.get::<JobView>(&key).await {
        Ok(Some(job)) => {
            metrics::counter!("workup_cache_total", "result" => "hit").increment(1);
            return Ok(Json(job));
        }
        Ok(None) => metrics::counter!("workup_cache_total", "result" => "miss").increment(1),
        Err(error) => tracing::warn!(%error, "cache read failed; reading Cassandra"),
    }
    let job = app
        .jobs
        .get(id)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let job = job.ok_or(ApiError::NotFound("job-not-found"))?;
    if let Err(error) = app.cache.put_if_absent(&key, &job).await {
        tracing::warn!(%error, "cache fill failed");
    }
    Ok(Json(job))
}
