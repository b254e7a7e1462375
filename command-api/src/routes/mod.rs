//! The command routes, one module per context, merged under `/api/v1`.

pub mod contracts;
pub mod jobs;
pub mod media;
pub mod payments;
pub mod users;
pub mod withdrawals;

use axum::{
    Json, Router,
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
};
use domain::{Currency, Money};
use infra::{
    config::HttpConfig,
    control::{self, ControlPlane, gate::Gate},
    http::{
        auth::AccessToken,
        health,
        idempotency::{self, IdempotencyStore},
        openapi::{self, BearerAuth},
        problem::Problem,
        with_common_layers,
    },
    ledger::Appended,
};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

pub(crate) use infra::http::openapi::{IdempotencyKeyHeader, WriteProblems};

use crate::state::AppState;

/// The whole application router; `control` gates the API routes (DESIGN §10).
pub fn router(state: AppState, control: &ControlPlane, http: &HttpConfig) -> Router {
    let ledger_check = health::ready_check("ledger", state.ledger.clone(), |l| async move { l.ping().await });
    let store = IdempotencyStore::new(state.ledger.clone(), state.keys.clone());
    let writes = Router::new()
        .merge(users::router())
        .merge(jobs::router())
        .merge(contracts::router())
        .merge(payments::router())
        .merge(withdrawals::router())
        .merge(media::router(&state))
        .route_layer(middleware::from_fn_with_state(store, idempotency::idempotency));
    let gate = Gate::new("command-api", control, &ApiDoc::openapi());
    let api = Router::new()
        .merge(writes)
        .merge(users::login_router())
        .layer(middleware::from_fn_with_state(gate, control::gate::gate))
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

/// The answer to a successful write: `status` with the resource's id and the consistency token,
/// also in `X-Consistency-Position` (DESIGN §6).
fn answer(status: StatusCode, id: impl ToString, appended: &Appended) -> Response {
    let position = appended.token();
    (
        status,
        [("x-consistency-position", position.clone())],
        Json(Written {
            id: id.to_string(),
            position,
        }),
    )
        .into_response()
}

/// 201: a resource was created.
pub fn created(id: impl ToString, appended: &Appended) -> Response {
    answer(StatusCode::CREATED, id, appended)
}

/// 200: a resource was changed.
pub fn written(id: impl ToString, appended: &Appended) -> Response {
    answer(StatusCode::OK, id, appended)
}

/// An amount in a request: integer minor units (cents) and an ISO 4217 code.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[schema(as = Money)]
pub struct MoneyBody {
    /// Amount in minor units, e.g. 150000 for 1,500.00.
    #[schema(minimum = 1)]
    pub minor: i64,
    /// Currency.
    #[schema(value_type = openapi::CurrencySchema)]
    pub currency: Currency,
}

impl From<MoneyBody> for Money {
    fn from(body: MoneyBody) -> Self {
        Money::new(body.minor, body.currency)
    }
}

/// The OpenAPI document of command-api.
#[derive(OpenApi)]
#[openapi(
    info(title = "WorkUp command-api", description = "Writes: commands checked against history and appended to the ledger. \
        Every write takes an optional `Idempotency-Key`; every success answers the resource id and a consistency token."),
    paths(
        users::register_client, users::register_freelancer, users::login, users::update_profile, users::add_item,
        users::update_item, users::remove_item, users::set_photo, users::set_resume, users::delete_account,
        jobs::post_job, jobs::update_job, jobs::close_job, jobs::submit_proposal, jobs::update_proposal,
        jobs::withdraw_proposal, jobs::accept_proposal, jobs::reject_proposal,
        contracts::progress_milestone, contracts::evaluate_milestone, contracts::request_termination,
        contracts::accept_termination, contracts::reject_termination,
        payments::deposit, payments::pay_request,
        withdrawals::request_withdrawal, withdrawals::cancel_withdrawal,
        media::upload_photo, media::upload_resume
    ),
    components(schemas(Written, Problem, AccessToken, MoneyBody, openapi::CurrencySchema, openapi::FieldErrorSchema)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
