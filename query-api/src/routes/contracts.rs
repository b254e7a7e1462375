//! Contracts: a contract, the caller's contracts, a contract's milestones and its termination
//! requests (DESIGN §3), from the contracts read model ([`infra::read_models::contracts`]).
//! Private data (DESIGN §2): only the contract's client and freelancer, and admins, see a
//! contract; anyone else gets the same 404 as for a contract that does not exist.

use axum::{Router, extract::State, routing::get};
use domain::{Actor, DomainError, Role};
use infra::{
    http::{
        ApiError,
        auth::Authenticated,
        extract::{Json, Path, Query},
        problem::Problem,
    },
    read_models::{
        consistency::ConsistencyToken,
        contracts::{self, ContractPage, ContractView, ListError, MilestonePage, Party, TerminationPage},
    },
};
use uuid::Uuid;

use super::paging::PageParams;
use crate::state::{AppState, LiveState};

/// Routes of the contracts context.
pub fn router() -> Router<LiveState> {
    Router::new()
        .route("/contracts/me", get(my_contracts))
        .route("/contracts/{id}", get(get_contract))
        .route("/contracts/{id}/milestones", get(contract_milestones))
        .route("/contracts/{id}/terminations", get(contract_terminations))
}

/// A contract: its parties, status and dates.
#[utoipa::path(get, path = "/api/v1/contracts/{id}", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "contract id"),
        ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = ContractView),
        (status = 400, description = "bad id or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such contract, or the caller is neither a party nor an admin", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id, %id))]
pub async fn get_contract(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
    token: Option<ConsistencyToken>,
) -> Result<Json<ContractView>, ApiError> {
    wait(&app, token.as_ref(), &[contracts::CONTRACT_STREAM]).await?;
    visible_contract(&app, &actor, id).await.map(Json)
}

/// The caller's contracts, as client or as freelancer, oldest first (an admin has none).
#[utoipa::path(get, path = "/api/v1/contracts/me", tag = "contracts", security(("bearer" = [])),
    params(PageParams,
        ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = ContractPage),
        (status = 400, description = "bad limit, page token or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn my_contracts(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Query(page): Query<PageParams>,
    token: Option<ConsistencyToken>,
) -> Result<Json<ContractPage>, ApiError> {
    let limit = page.limit()?;
    wait(&app, token.as_ref(), &[contracts::CONTRACT_STREAM]).await?;
    let me = actor.id.as_uuid();
    let party = match actor.role {
        Role::Client => Party::Client(me),
        Role::Freelancer => Party::Freelancer(me),
        _ => {
            return Ok(Json(ContractPage {
                items: Vec::new(),
                next_page_token: None,
            }));
        }
    };
    app.contracts
        .contracts_of(party, limit, page.page_token.as_deref())
        .await
        .map(Json)
        .map_err(list_error)
}

/// The milestones of a contract, in order (at most 20: one page).
#[utoipa::path(get, path = "/api/v1/contracts/{id}/milestones", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "contract id"),
        ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = MilestonePage),
        (status = 400, description = "bad id or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such contract, or the caller is neither a party nor an admin", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id, %id))]
pub async fn contract_milestones(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
    token: Option<ConsistencyToken>,
) -> Result<Json<MilestonePage>, ApiError> {
    wait(&app, token.as_ref(), &[contracts::CONTRACT_STREAM]).await?;
    visible_contract(&app, &actor, id).await?;
    let items = app.contracts.milestones(id).await.map_err(ApiError::from)?;
    Ok(Json(MilestonePage {
        items,
        next_page_token: None,
    }))
}

/// The termination requests of a contract, oldest first.
#[utoipa::path(get, path = "/api/v1/contracts/{id}/terminations", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "contract id"), PageParams,
        ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = TerminationPage),
        (status = 400, description = "bad id, limit, page token or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such contract, or the caller is neither a party nor an admin", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id, %id))]
pub async fn contract_terminations(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
    Query(page): Query<PageParams>,
    token: Option<ConsistencyToken>,
) -> Result<Json<TerminationPage>, ApiError> {
    let limit = page.limit()?;
    let streams = [contracts::CONTRACT_STREAM, contracts::TERMINATION_STREAM];
    wait(&app, token.as_ref(), &streams).await?;
    visible_contract(&app, &actor, id).await?;
    app.contracts
        .terminations(id, limit, page.page_token.as_deref())
        .await
        .map(Json)
        .map_err(list_error)
}

/// The contract `id` if `actor` may see it: a party or an admin. Anyone else gets the 404 of a
/// missing contract, so ids reveal nothing (DESIGN §2).
async fn visible_contract(app: &AppState, actor: &Actor, id: Uuid) -> Result<ContractView, ApiError> {
    match app.contracts.contract(id).await.map_err(ApiError::from)? {
        Some(contract) if contract.is_party(actor.id.as_uuid()) || actor.role == Role::Admin => Ok(contract),
        _ => Err(ApiError::NotFound("contract-not-found")),
    }
}

/// Read-your-writes (DESIGN §6): wait until the streams of `token` of `stream_types` are applied.
async fn wait(
    app: &AppState,
    token: Option<&ConsistencyToken>,
    stream_types: &[&str],
) -> Result<(), ApiError> {
    let model = &app.contracts;
    app.wait
        .until_applied(token, contracts::NAME, stream_types, |id| model.applied(id))
        .await
}

fn list_error(e: ListError) -> ApiError {
    match e {
        ListError::BadPageToken => DomainError::invalid("page_token", "not a page token of this list").into(),
        ListError::Store(e) => ApiError::from(e),
    }
}
