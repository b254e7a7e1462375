//! The saga history for operators: `GET /api/v1/sagas/{id}` (admins only), the steps a saga
//! took with the events that caused them and the commands sent.

use axum::{
    Router,
    extract::{FromRef, State},
    routing::get,
};
use domain::{DomainError, Role};
use infra::{
    http::{
        ApiError,
        auth::{Authenticated, TokenKeys},
        extract::{Json, Path},
        openapi::BearerAuth,
        problem::Problem,
    },
    sagas::{SagaStep, SagaStore},
};
use serde::Serialize;
use uuid::Uuid;

/// What the routes share.
#[derive(Debug, Clone)]
pub struct SagasState {
    /// Token checking.
    pub keys: TokenKeys,
    /// The history.
    pub store: SagaStore,
}

impl FromRef<SagasState> for TokenKeys {
    fn from_ref(state: &SagasState) -> Self {
        state.keys.clone()
    }
}

/// A saga (a contract's lifecycle: its id is the contract id) and its steps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SagaHistory {
    /// The saga.
    pub saga_id: Uuid,
    /// Its steps, oldest first.
    pub steps: Vec<SagaStep>,
}

/// The routes under `/api/v1`.
pub fn router() -> Router<SagasState> {
    Router::new().route("/sagas/{id}", get(get_saga))
}

/// The steps of a saga (admins only).
#[utoipa::path(get, path = "/api/v1/sagas/{id}", tag = "sagas", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "saga id (the contract id)")),
    responses((status = 200, body = SagaHistory),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get_saga(
    State(state): State<SagasState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
) -> Result<Json<SagaHistory>, ApiError> {
    if actor.role != Role::Admin {
        return Err(DomainError::Forbidden("admins-only").into());
    }
    let steps = state.store.history(id).await?;
    if steps.is_empty() {
        return Err(ApiError::NotFound("saga-not-found"));
    }
    Ok(Json(SagaHistory { saga_id: id, steps }))
}

/// The OpenAPI document of the sagas service.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "WorkUp sagas", description = "Process managers: their history, for operators."),
    paths(get_saga),
    components(schemas(SagaHistory, SagaStep, Problem)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
