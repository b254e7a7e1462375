//! Users: the caller's own profile and public profiles (DESIGN §3), from the users read model
//! ([`infra::read_models::users`]).

use axum::{Router, extract::State, routing::get};
use infra::{
    http::{
        ApiError,
        auth::Authenticated,
        extract::{Json, Path},
        problem::Problem,
    },
    read_models::{
        consistency::ConsistencyToken,
        users::{self, OwnProfile, PublicProfile},
    },
};
use uuid::Uuid;

use crate::state::{AppState, LiveState};

/// Name of the read model in "read model behind" answers.
const READ_MODEL: &str = "users";

/// Routes of the users context.
pub fn router() -> Router<LiveState> {
    Router::new()
        .route("/users/me/profile", get(get_own_profile))
        .route("/users/{id}", get(get_user))
}

/// The caller's own profile, with its private fields (email). 404 once the account is deleted.
#[utoipa::path(get, path = "/api/v1/users/me/profile", tag = "users", security(("bearer" = [])),
    params(("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = OwnProfile),
        (status = 400, description = "bad consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "deleted, or not projected yet", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn get_own_profile(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    token: Option<ConsistencyToken>,
) -> Result<Json<OwnProfile>, ApiError> {
    wait(&app, token.as_ref()).await?;
    app.profiles
        .own(actor.id.as_uuid())
        .await
        .map_err(ApiError::from)?
        .map(Json)
        .ok_or(ApiError::NotFound("user-not-found"))
}

/// A user's public profile (any signed-in user may read it): no email, nothing private.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id"),
        ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = PublicProfile),
        (status = 400, description = "bad id or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such user, or deleted", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get_user(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
    Path(id): Path<Uuid>,
    token: Option<ConsistencyToken>,
) -> Result<Json<PublicProfile>, ApiError> {
    wait(&app, token.as_ref()).await?;
    app.profiles
        .public(id)
        .await
        .map_err(ApiError::from)?
        .map(Json)
        .ok_or(ApiError::NotFound("user-not-found"))
}

/// Read-your-writes (DESIGN §6): wait until the user streams of `token` are applied.
async fn wait(app: &AppState, token: Option<&ConsistencyToken>) -> Result<(), ApiError> {
    let profiles = &app.profiles;
    app.wait
        .until_applied(token, READ_MODEL, &[users::STREAM_TYPE], |id| {
            profiles.applied(id)
        })
        .await
}
