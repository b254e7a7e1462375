//! Contracts: milestone progress and evaluation, termination requests and their answers
//! (DESIGN §3). Contracts themselves are initiated by a saga, never over HTTP.

use axum::{Router, extract::State, response::Response, routing::post};
use domain::{
    ContractId, DomainError, MilestoneId, TerminationRequestId,
    contracts::{
        self, Contract, ContractCommand, TerminationCommand, TerminationRequest, Verdict, termination,
    },
};
use infra::http::{
    ApiError,
    extract::{Json, Path},
};
use serde::Deserialize;
use uuid::Uuid;

use super::{IdempotencyKeyHeader, WriteProblems, Written, created, written};
use crate::state::{AppState, Command};

/// Routes of the contracts context.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/contracts/{id}/milestones/{milestone_id}/progress",
            post(progress_milestone),
        )
        .route(
            "/contracts/{id}/milestones/{milestone_id}/evaluate",
            post(evaluate_milestone),
        )
        .route("/contracts/{id}/terminations", post(request_termination))
        .route("/terminations/{id}/accept", post(accept_termination))
        .route("/terminations/{id}/reject", post(reject_termination))
}

/// Move a milestone on (the freelancer only): OPEN → IN_PROGRESS, or IN_PROGRESS → IN_REVIEW.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/milestones/{milestone_id}/progress", tag = "contracts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "contract id"), ("milestone_id" = Uuid, Path, description = "milestone id"),
        IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id, %milestone_id))]
pub async fn progress_milestone(
    State(app): State<AppState>,
    command: Command,
    Path((id, milestone_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let decision = ContractCommand::ProgressMilestone {
        milestone_id: MilestoneId::from_uuid(milestone_id),
    };
    on_contract(&app, command, id, milestone_id, decision).await
}

/// The client's evaluation of a milestone in review.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EvaluationRequest {
    /// `accepted` (the milestone will be paid) or `changes_requested` (back to the freelancer).
    #[schema(value_type = VerdictSchema)]
    verdict: Verdict,
}

/// A verdict on a milestone in review.
#[derive(utoipa::ToSchema)]
#[schema(as = Verdict)]
#[allow(dead_code)] // Only describes `domain::contracts::Verdict` in the API document.
pub enum VerdictSchema {
    /// The work is accepted.
    #[schema(rename = "accepted")]
    Accepted,
    /// The freelancer must rework it.
    #[schema(rename = "changes_requested")]
    ChangesRequested,
}

/// Evaluate a milestone in review (the client only). Accepting it leads to a payment request.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/milestones/{milestone_id}/evaluate", tag = "contracts",
    request_body = EvaluationRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "contract id"), ("milestone_id" = Uuid, Path, description = "milestone id"),
        IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id, %milestone_id))]
pub async fn evaluate_milestone(
    State(app): State<AppState>,
    command: Command,
    Path((id, milestone_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<EvaluationRequest>,
) -> Result<Response, ApiError> {
    let decision = ContractCommand::EvaluateMilestone {
        milestone_id: MilestoneId::from_uuid(milestone_id),
        verdict: body.verdict,
    };
    on_contract(&app, command, id, milestone_id, decision).await
}

async fn on_contract(
    app: &AppState,
    command: Command,
    id: Uuid,
    milestone_id: Uuid,
    decision: ContractCommand,
) -> Result<Response, ApiError> {
    let appended = app
        .ledger
        .execute::<Contract>(id, command.metadata, |contract| {
            contracts::contract::decide(contract, &decision, &command.ctx)
        })
        .await?;
    Ok(written(milestone_id, &appended))
}

/// Why a party wants to end a contract.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TerminationRequestBody {
    /// The reason.
    #[schema(min_length = 1, max_length = 2000)]
    reason: String,
}

/// Ask to terminate an active contract (either party); the other party (or an admin) answers.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/terminations", tag = "contracts",
    request_body = TerminationRequestBody, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "contract id"), IdempotencyKeyHeader),
    responses((status = 201, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn request_termination(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
    Json(body): Json<TerminationRequestBody>,
) -> Result<Response, ApiError> {
    let request_id = TerminationRequestId::from_uuid(command.new_id("termination"));
    let decision = TerminationCommand::Request {
        termination_request_id: request_id,
        contract_id: ContractId::from_uuid(id),
        reason: body.reason,
    };
    let appended = on_termination(&app, command, request_id.as_uuid(), Some(id), decision).await?;
    tracing::info!(%request_id, contract_id = %id, "termination requested");
    Ok(created(request_id, &appended))
}

/// Agree to a termination request (the other party or an admin): the contract is terminated.
#[utoipa::path(post, path = "/api/v1/terminations/{id}/accept", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "termination request id"), IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn accept_termination(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let appended = on_termination(&app, command, id, None, TerminationCommand::Accept).await?;
    Ok(written(id, &appended))
}

/// Refuse a termination request (the other party or an admin): the contract goes on.
#[utoipa::path(post, path = "/api/v1/terminations/{id}/reject", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "termination request id"), IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn reject_termination(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let appended = on_termination(&app, command, id, None, TerminationCommand::Reject).await?;
    Ok(written(id, &appended))
}

/// A termination decision over the request and its contract, in one append. The contract is the
/// one named (a new request) or the one the request is about.
async fn on_termination(
    app: &AppState,
    command: Command,
    request_id: Uuid,
    contract_id: Option<Uuid>,
    decision: TerminationCommand,
) -> Result<infra::ledger::Appended, ApiError> {
    Ok(app
        .ledger
        .execute_with(command.metadata.clone(), async |unit| {
            let request = unit.load::<TerminationRequest>(request_id).await?;
            let contract_id = match (contract_id, &request.requested) {
                (Some(id), _) => id,
                (None, Some(r)) => r.contract_id.as_uuid(),
                (None, None) => return Err(DomainError::NotFound("termination-request").into()),
            };
            let contract = unit.load::<Contract>(contract_id).await?;
            let events = termination::decide((&contract, &request), &decision, &command.ctx)?;
            unit.write::<Contract>(contract_id, &events.contract)?;
            unit.write::<TerminationRequest>(request_id, &events.termination)?;
            Ok(())
        })
        .await?)
}
