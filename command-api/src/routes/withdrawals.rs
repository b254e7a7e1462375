//! Withdrawals: tracked background work (DESIGN §9). A request reserves the funds in the wallet
//! and answers 202 with the withdrawal's id and where to poll its status (query-api); a payout
//! worker does the rest. One withdrawal per wallet per cooldown window: the rule is decided on the
//! wallet stream, so it holds however many requests race (the losers of a race decide again on
//! the winner's state).

use axum::{
    Json as JsonBody, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use chrono::{DateTime, Utc};
use domain::{
    WalletId, WithdrawalId,
    payments::{Wallet, Withdrawal, WithdrawalCommand, WithdrawalEvent, withdrawal},
};
use infra::{
    http::{
        ApiError,
        extract::{Json, Path},
    },
    ledger::{Appended, CommandError, LedgerError},
};
use serde::{Deserialize, Serialize};
use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};
use uuid::Uuid;

use super::{IdempotencyKeyHeader, MoneyBody, WriteProblems, Written, written};
use crate::state::{AppState, Command};

/// Decisions lost to a concurrent command on the same wallet before giving up with a 409.
const ATTEMPTS: u32 = 50;

/// Routes of withdrawals.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/payments/wallet/withdrawals", post(request_withdrawal))
        .route(
            "/payments/wallet/withdrawals/{id}/cancel",
            post(cancel_withdrawal),
        )
}

/// A withdrawal from the caller's wallet.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct WithdrawalRequest {
    /// How much: positive, in the wallet's currency, at most what is available (balance minus
    /// funds reserved by other withdrawals).
    amount: MoneyBody,
}

/// The answer to an accepted withdrawal.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WithdrawalAccepted {
    /// The withdrawal id (poll `GET /api/v1/payments/wallet/withdrawals/{id}` on query-api, also
    /// in `Location`).
    pub id: Uuid,
    /// Consistency token (also in `X-Consistency-Position`).
    pub position: String,
    /// `pending` (a worker picks it up now) or `scheduled` (inside the cooldown window, under the
    /// `defer` policy).
    pub status: &'static str,
    /// When a scheduled withdrawal starts.
    pub scheduled_for: Option<DateTime<Utc>>,
}

/// Withdraw from the caller's wallet: the amount is reserved at once and paid out in the
/// background. 202 with the id to poll. One withdrawal per wallet per cooldown window (default
/// 5 minutes): inside it, a 429 `withdrawal-cooldown` with `Retry-After` under the `reject`
/// policy, or an accepted withdrawal `scheduled` for the window's end under `defer`.
#[utoipa::path(post, path = "/api/v1/payments/wallet/withdrawals", tag = "payments", request_body = WithdrawalRequest,
    security(("bearer" = [])), params(IdempotencyKeyHeader),
    responses((status = 202, description = "accepted: the id to poll (also in `Location`)", body = WithdrawalAccepted,
        headers(("Location" = String, description = "the withdrawal's status, on query-api"))),
        WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn request_withdrawal(
    State(app): State<AppState>,
    command: Command,
    Json(body): Json<WithdrawalRequest>,
) -> Result<Response, ApiError> {
    let wallet_id = WalletId::for_user(command.actor().id);
    let withdrawal_id = WithdrawalId::from_uuid(command.new_id("withdrawal"));
    let decision = WithdrawalCommand::Request {
        withdrawal_id,
        amount: body.amount.into(),
        cooldown: app.cooldown,
    };
    // What the winning decision scheduled (each attempt decides again).
    let decided = Mutex::new(None);
    let appended = retry_lost_races(|| {
        app.ledger.execute_with(command.metadata.clone(), async |unit| {
            let wallet = unit.load::<Wallet>(wallet_id.as_uuid()).await?;
            let state = unit.create::<Withdrawal>(withdrawal_id.as_uuid());
            let events = withdrawal::decide((&wallet, &state), &decision, &command.ctx)?;
            let scheduled = events.withdrawal.iter().find_map(|e| match e {
                WithdrawalEvent::WithdrawalRequested { scheduled_for, .. } => *scheduled_for,
                _ => None,
            });
            *decided.lock().unwrap_or_else(PoisonError::into_inner) = scheduled;
            unit.write::<Wallet>(wallet_id.as_uuid(), &events.wallet)?;
            unit.write::<Withdrawal>(withdrawal_id.as_uuid(), &events.withdrawal)?;
            Ok(())
        })
    })
    .await?;
    let mut scheduled_for = decided.into_inner().unwrap_or_else(PoisonError::into_inner);
    if appended.replayed {
        // A retried request: its first answer's schedule is in the ledger.
        scheduled_for = app
            .ledger
            .load::<Withdrawal>(withdrawal_id.as_uuid())
            .await?
            .state
            .requested
            .and_then(|w| w.scheduled_for);
    }
    let scheduled_for = scheduled_for.map(|t| t.as_datetime());
    tracing::info!(%withdrawal_id, ?scheduled_for, "withdrawal requested");
    let location = format!("/api/v1/payments/wallet/withdrawals/{withdrawal_id}");
    let position = appended.token();
    Ok((
        StatusCode::ACCEPTED,
        [
            (header::LOCATION, location),
            (
                header::HeaderName::from_static("x-consistency-position"),
                position.clone(),
            ),
        ],
        JsonBody(WithdrawalAccepted {
            id: withdrawal_id.as_uuid(),
            position,
            status: if scheduled_for.is_some() {
                "scheduled"
            } else {
                "pending"
            },
            scheduled_for,
        }),
    )
        .into_response())
}

/// Cancel a withdrawal of the caller's that has not started (pending or scheduled): the
/// reservation is released. One being paid out can no longer be cancelled (409).
#[utoipa::path(post, path = "/api/v1/payments/wallet/withdrawals/{id}/cancel", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "withdrawal id"), IdempotencyKeyHeader),
    responses((status = 200, body = Written), WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id, %id))]
pub async fn cancel_withdrawal(
    State(app): State<AppState>,
    command: Command,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let cancel = WithdrawalCommand::Cancel {
        reason: "cancelled by the owner".into(),
    };
    let appended = retry_lost_races(|| {
        app.ledger.execute_with(command.metadata.clone(), async |unit| {
            let state = unit.load::<Withdrawal>(id).await?;
            let requested = state
                .requested
                .as_ref()
                .filter(|w| w.owner_id == command.actor().id)
                // Someone else's withdrawal is not found, as in query-api.
                .ok_or(domain::DomainError::NotFound("withdrawal-not-found"))?;
            let wallet_id = requested.wallet_id.as_uuid();
            let wallet = unit.load::<Wallet>(wallet_id).await?;
            let events = withdrawal::decide((&wallet, &state), &cancel, &command.ctx)?;
            unit.write::<Wallet>(wallet_id, &events.wallet)?;
            unit.write::<Withdrawal>(id, &events.withdrawal)?;
            Ok(())
        })
    })
    .await?;
    Ok(written(id, &appended))
}

/// Run `execute` again, after a short random pause, each time it loses a race with another
/// command on the same streams: the decision is taken again on the new state (a second request
/// in the window then gets the cooldown answer, not a version conflict).
async fn retry_lost_races<F, Fut>(mut execute: F) -> Result<Appended, CommandError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Appended, CommandError>>,
{
    let mut attempt = 1;
    loop {
        match execute().await {
            Err(CommandError::Ledger(LedgerError::VersionConflict { .. })) if attempt < ATTEMPTS => {
                attempt += 1;
                // A pause of 1-10 ms, different per request, so the losers do not collide again.
                let pause = 1 + Uuid::new_v4().as_u128() % 10;
                tokio::time::sleep(Duration::from_millis(u64::try_from(pause).unwrap_or(1))).await;
            }
            other => return other,
        }
    }
}
