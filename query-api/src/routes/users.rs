//! Users: public profiles (DESIGN §3).

use axum::{Router, extract::State, routing::get};
use infra::{
    http::{
        ApiError,
        auth::Authenticated,
        extract::{Json, Path},
        problem::Problem,
    },
    mongo::UserProfile,
};
use uuid::Uuid;

use crate::state::AppState;

/// Routes of the users context.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me/profile", get(get_own_profile))
        .route("/users/{id}", get(get_user))
}

/// The caller's own profile.
#[utoipa::path(get, path = "/api/v1/users/me/profile", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserProfile), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "deleted, or not projected yet", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn get_own_profile(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
) -> Result<Json<UserProfile>, ApiError> {
    profile(&app, actor.id.as_uuid()).await
}

/// A user's public profile (any signed-in user may read it).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserProfile), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get_user(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
    Path(id): Path<Uuid>,
) -> Result<Json<UserProfile>, ApiError> {
    profile(&app, id).await
}

async fn profile(app: &AppState, id: Uuid) -> Result<Json<UserProfile>, ApiError> {
    let profile = app
        .profiles
        .get(id)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    profile
        .filter(|p| !p.deleted)
        .map(Json)
        .ok_or(ApiError::NotFound("user-not-found"))
}
