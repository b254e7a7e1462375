//! Payments: the caller's wallet, its transactions and withdrawals, and the caller's payment
//! requests (DESIGN §3, §9), from the payments read model ([`infra::read_models::payments`]).
//!
//! Private data (DESIGN §2): every route reads the caller's own data only. There is no wallet id
//! in any path: the wallet is always [`WalletId::for_user`] of the caller. A withdrawal of
//! someone else gets the same 404 as one that does not exist (admins may read any). A user who
//! has no wallet yet (no deposit, no credit) gets 404 `wallet-not-found` for the wallet (its
//! currency is only known once it opens) and an empty transaction list.

use axum::{Router, extract::State, routing::get};
use domain::{
    Aggregate, DomainError, Role, WalletId,
    payments::{PaymentRequest, Wallet, Withdrawal},
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
        payments::{
            BadPageToken, PartyRole, PaymentRequestPage, RequestCursor, TransactionCursor, TransactionPage,
            WalletView, WithdrawalView,
        },
    },
};
use serde::Deserialize;
use uuid::Uuid;

use super::paging::{PageParams, page_limit};
use crate::state::{AppState, LiveState};

/// The read model's name in 504 answers.
const NAME: &str = "payments";

/// Routes of the payments context.
pub fn router() -> Router<LiveState> {
    Router::new()
        .route("/payments/wallet", get(my_wallet))
        .route("/payments/wallet/transactions", get(my_transactions))
        .route("/payments/wallet/withdrawals/{id}", get(my_withdrawal))
        .route("/payments/requests/me", get(my_payment_requests))
}

/// Which payment requests of the caller to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestParams {
    /// `client` (requests the caller pays) or `freelancer` (requests the caller is paid);
    /// absent: both (the client side first).
    #[param(inline)]
    role: Option<PartyRole>,
    /// Items per page: 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_page_token` of the previous page (asked with the same `role`).
    page_token: Option<String>,
}

/// The caller's wallet: balance, reserved and available funds.
#[utoipa::path(get, path = "/api/v1/payments/wallet", tag = "payments", security(("bearer" = [])),
    params(("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = WalletView),
        (status = 400, description = "bad consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "the caller has no wallet yet (it opens with the first deposit or credit)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn my_wallet(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    token: Option<ConsistencyToken>,
) -> Result<Json<WalletView>, ApiError> {
    let model = &app.payments;
    app.wait
        .until_applied(token.as_ref(), NAME, &[Wallet::STREAM_TYPE], |id| {
            model.applied_wallet(id)
        })
        .await?;
    let wallet_id = WalletId::for_user(actor.id).as_uuid();
    model
        .wallet(wallet_id)
        .await
        .map_err(ApiError::from)?
        .map(Json)
        .ok_or(ApiError::NotFound("wallet-not-found"))
}

/// The caller's recent wallet transactions (the last 100), newest first.
#[utoipa::path(get, path = "/api/v1/payments/wallet/transactions", tag = "payments", security(("bearer" = [])),
    params(PageParams,
        ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, description = "empty while the caller has no wallet", body = TransactionPage),
        (status = 400, description = "bad limit, page token or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn my_transactions(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Query(page): Query<PageParams>,
    token: Option<ConsistencyToken>,
) -> Result<Json<TransactionPage>, ApiError> {
    let limit = page.limit()?;
    let cursor = page
        .page_token
        .as_deref()
        .map(TransactionCursor::parse)
        .transpose()
        .map_err(bad_page_token)?;
    let model = &app.payments;
    app.wait
        .until_applied(token.as_ref(), NAME, &[Wallet::STREAM_TYPE], |id| {
            model.applied_wallet(id)
        })
        .await?;
    let wallet_id = WalletId::for_user(actor.id).as_uuid();
    model
        .transactions(wallet_id, limit, cursor)
        .await
        .map(Json)
        .map_err(ApiError::from)
}

/// A withdrawal of the caller: PENDING → PROCESSING → SUCCEEDED | FAILED | CANCELLED, with
/// its timestamps and the reason of a failure or cancellation.
#[utoipa::path(get, path = "/api/v1/payments/wallet/withdrawals/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "withdrawal id"),
        ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = WithdrawalView),
        (status = 400, description = "bad id or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such withdrawal, or not the caller's (admins see any)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id, %id))]
pub async fn my_withdrawal(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
    token: Option<ConsistencyToken>,
) -> Result<Json<WithdrawalView>, ApiError> {
    let model = &app.payments;
    app.wait
        .until_applied(token.as_ref(), NAME, &[Withdrawal::STREAM_TYPE], |id| {
            model.applied_withdrawal(id)
        })
        .await?;
    match model.withdrawal(id).await.map_err(ApiError::from)? {
        Some(w) if w.owner_id == actor.id.as_uuid() || actor.role == Role::Admin => Ok(Json(w)),
        _ => Err(ApiError::NotFound("withdrawal-not-found")),
    }
}

/// The caller's payment requests, oldest first: as client (to pay), as freelancer (to be paid),
/// or both.
#[utoipa::path(get, path = "/api/v1/payments/requests/me", tag = "payments", security(("bearer" = [])),
    params(RequestParams,
        ("X-Consistency-Position" = Option<String>, Header, description = "consistency token of a write: wait until it is applied")),
    responses((status = 200, body = PaymentRequestPage),
        (status = 400, description = "bad role, limit, page token or consistency token", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "the read model has not applied the token in time", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn my_payment_requests(
    State(app): State<AppState>,
    Authenticated(actor): Authenticated,
    Query(params): Query<RequestParams>,
    token: Option<ConsistencyToken>,
) -> Result<Json<PaymentRequestPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let cursor = params
        .page_token
        .as_deref()
        .map(|t| RequestCursor::parse(t, params.role))
        .transpose()
        .map_err(bad_page_token)?;
    let model = &app.payments;
    app.wait
        .until_applied(token.as_ref(), NAME, &[PaymentRequest::STREAM_TYPE], |id| {
            model.applied_payment_request(id)
        })
        .await?;
    model
        .payment_requests(actor.id.as_uuid(), params.role, limit, cursor)
        .await
        .map(Json)
        .map_err(ApiError::from)
}

fn bad_page_token(_: BadPageToken) -> ApiError {
    DomainError::invalid("page_token", "not a page token of this list").into()
}
