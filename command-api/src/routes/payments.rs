//! Payments: deposits into the caller's wallet and paying a payment request (DESIGN §3).
//! Withdrawals are tracked background work with their own module (DESIGN §9).

use axum::{Router, extract::State, response::Response, routing::post};
use domain::{
    DomainError, WalletId,
    payments::{PayRequest, PaymentRequest, Wallet, WalletCommand, pay_request, wallet},
};
use infra::http::{
    ApiError,
    extract::{Json, Path},
};
use serde::Deserialize;
use uuid::Uuid;

use super::{IdempotencyKeyHeader, MoneyBody, WriteProblems, Written, written};
use crate::state::{AppState, Command};

/// Routes of the payments context.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/payments/wallet/deposits", post(deposit))
        .route("/payments/requests/{id}/pay", post(pay_request))
}

/// A deposit into the caller's wallet.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DepositRequest {
    /// How much: positive, at most 100,000,000 minor units per deposit. The wallet opens in this
    /// currency on the first deposit.
    amount: MoneyBody,
}

/// Add funds to the caller's wallet (opened on the first deposit).
#[utoipa::path(post, path = "/api/v1/payments/wallet/deposits", tag = "payments", request_body = DepositRequest,
    security(("bearer" = [])), params(IdempotencyKeyHeader),
    responses((status = 200, description = "the wallet id and the consistency token", body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn deposit(
    State(app): State<AppState>,
    command: Command,
    Json(body): Json<DepositRequest>,
) -> Result<Response, ApiError> {
    let wallet_id = WalletId::for_user(command.actor().id);
    let decision = WalletCommand::Deposit {
        wallet_id,
        amount: body.amount.into(),
    };
    let appended = app
        .ledger
        .execute::<Wallet>(wallet_id.as_uuid(), command.metadata, |w| {
            wallet::decide(w, &decision, &command.ctx)
        })
        .await?;
    Ok(written(wallet_id, &appended))
}

/// Pay a payment request (its client only): the request is paid, the client's wallet debited
/// and the freelancer's credited in one append over the three streams. Insufficient funds is a
/// 409 and nothing is written; a request is paid once.
#[utoipa::path(post, path = "/api/v1/payments/requests/{id}/pay", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "payment request id"), IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn pay_request(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let appended = app
        .ledger
        .execute_with(command.metadata.clone(), async |unit| {
            let request = unit.load::<PaymentRequest>(id).await?;
            let r = request.existing()?;
            let client = WalletId::for_user(r.client_id).as_uuid();
            let freelancer = WalletId::for_user(r.freelancer_id).as_uuid();
            if client == freelancer {
                return Err(DomainError::Conflict("wallet-mismatch").into());
            }
            let client_wallet = unit.load::<Wallet>(client).await?;
            let freelancer_wallet = unit.load::<Wallet>(freelancer).await?;
            let events = pay_request::decide(
                (&request, &client_wallet, &freelancer_wallet),
                &PayRequest,
                &command.ctx,
            )?;
            unit.write::<PaymentRequest>(id, &events.request)?;
            unit.write::<Wallet>(client, &events.client_wallet)?;
            unit.write::<Wallet>(freelancer, &events.freelancer_wallet)?;
            Ok(())
        })
        .await?;
    tracing::info!(payment_request_id = %id, "payment request paid");
    Ok(written(id, &appended))
}
