//! The command routes, one module per context, merged under `/api/v1`.

pub mod jobs;
pub mod users;

use axum::{
    Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use infra::{
    config::HttpConfig,
    http::{
        auth::AccessToken,
        health,
        openapi::{self, BearerAuth},
        problem::Problem,
        with_common_layers,
    },
    ledger::Appended,
};
use serde::Serialize;
use utoipa::OpenApi;

use crate::state::AppState;

/// The whole application router.
pub fn router(state: AppState, http: &HttpConfig) -> Router {
    let ledger_check = health::ready_check("ledger", state.ledger.clone(), |l| async move { l.ping().await });
    let api = Router::new()
        .merge(users::router())
        .merge(jobs::router())
        .with_state(state);
    with_common_layers(
        Router::new()
            .nest("/api/v1", api)
            .merge(health::router("command-api", vec![ledger_check]))
            .merge(openapi::router(ApiDoc::openapi())),
        http,
    )
}

/// The body of a successful write.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Written {
    /// The id of the created or changed resource.
    pub id: String,
    /// Consistency token (also in `X-Consistency-Position`): pass it to a read to wait until
    /// the read model has applied this write (DESIGN §6).
    pub position: String,
}

/// The answer to a successful write: 201 with the new resource's id and the consistency
/// token, also in `X-Consistency-Position` (DESIGN §6).
pub fn created(id: impl ToString, appended: &Appended) -> Response {
    let position = appended.token();
    (
        StatusCode::CREATED,
        [("x-consistency-position", position.clone())],
        Json(Written {
            id: id.to_string(),
            position,
        }),
    )
        .into_response()
}

/// The OpenAPI document of command-api.
#[derive(OpenApi)]
#[openapi(
    info(title = "WorkUp command-api", description = "Writes: commands checked against history and appended to the ledger."),
    paths(users::register_client, users::register_freelancer, users::login, jobs::post_job),
    components(schemas(Written, Problem, AccessToken, openapi::FieldErrorSchema, openapi::MoneySchema)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
