//! The HTTP API: JSON in, JSON out, every error as `{"error": "..."}`.

use std::time::Duration;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State, rejection::PathRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::provider::{
    Amount, Cancellation, MAX_DELAY, Payout, PayoutStatus, Provider, RequestError, Settings,
};

/// Every way a request can fail before a payout answer.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not-found")]
    NotFound,
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Request(RequestError::KeyReused) => StatusCode::CONFLICT,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// `POST /payouts` body.
#[derive(Debug, Deserialize)]
struct PayoutRequest {
    withdrawal_id: Uuid,
    amount: Amount,
}

/// `PUT /settings` body and answer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SettingsBody {
    latency_ms: u64,
    jitter_ms: u64,
    failure_rate: f64,
}

impl SettingsBody {
    fn parse(self) -> Result<Settings, ApiError> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(ApiError::BadRequest(
                "failure_rate must be within [0, 1]".to_owned(),
            ));
        }
        let latency = Duration::from_millis(self.latency_ms);
        let jitter = Duration::from_millis(self.jitter_ms);
        if latency.saturating_add(jitter) > MAX_DELAY {
            return Err(ApiError::BadRequest(
                "latency_ms + jitter_ms must not exceed one day".to_owned(),
            ));
        }
        Ok(Settings {
            latency,
            jitter,
            failure_rate: self.failure_rate,
        })
    }
}

impl From<Settings> for SettingsBody {
    fn from(s: Settings) -> Self {
        Self {
            latency_ms: u64::try_from(s.latency.as_millis()).unwrap_or(u64::MAX),
            jitter_ms: u64::try_from(s.jitter.as_millis()).unwrap_or(u64::MAX),
            failure_rate: s.failure_rate,
        }
    }
}

pub(crate) fn router(provider: Provider) -> Router {
    Router::new()
        .route("/payouts", post(create_payout))
        .route("/payouts/{id}", get(get_payout).delete(cancel_payout))
        .route("/stats", get(stats))
        .route("/settings", get(get_settings).put(put_settings))
        .route("/health", get(health))
        .with_state(provider)
}

/// Create (or retry) a payout and answer once it is settled: 200 paid, 422 declined, 409 cancelled.
async fn create_payout(
    State(provider): State<Provider>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: PayoutRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
    check_idempotency_header(&headers, request.withdrawal_id)?;
    check_amount(&request.amount)?;

    let ticket = provider.request(request.withdrawal_id, request.amount)?;
    // If the client goes away, this future is dropped; the payout settles regardless.
    let payout = provider.wait(ticket).await.ok_or(ApiError::NotFound)?;
    let status = match payout.status {
        PayoutStatus::Paid => StatusCode::OK,
        PayoutStatus::Declined => StatusCode::UNPROCESSABLE_ENTITY,
        PayoutStatus::Cancelled => StatusCode::CONFLICT,
        // `wait` only returns settled payouts.
        PayoutStatus::Pending => StatusCode::ACCEPTED,
    };
    Ok((status, Json(payout)).into_response())
}

/// The body's `withdrawal_id` is the key; an `Idempotency-Key` header, when sent, must agree.
fn check_idempotency_header(headers: &HeaderMap, withdrawal_id: Uuid) -> Result<(), ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(());
    };
    let key = value.to_str().ok().and_then(|v| Uuid::parse_str(v.trim()).ok());
    if key == Some(withdrawal_id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "Idempotency-Key must equal the body's withdrawal_id".to_owned(),
        ))
    }
}

fn check_amount(amount: &Amount) -> Result<(), ApiError> {
    if amount.minor <= 0 {
        return Err(ApiError::BadRequest("amount.minor must be positive".to_owned()));
    }
    let currency = amount.currency.as_bytes();
    if currency.len() != 3 || !currency.iter().all(u8::is_ascii_uppercase) {
        return Err(ApiError::BadRequest(
            "amount.currency must be three upper-case letters (ISO 4217)".to_owned(),
        ));
    }
    Ok(())
}

async fn get_payout(
    State(provider): State<Provider>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Payout>, ApiError> {
    let id = path_id(id)?;
    provider.payout(id).map(Json).ok_or(ApiError::NotFound)
}

/// Cancel: 200 when no money leaves (now or already), 409 when it was already paid.
async fn cancel_payout(
    State(provider): State<Provider>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    Ok(match provider.cancel(id) {
        Cancellation::Stopped(payout) => (StatusCode::OK, Json(payout)).into_response(),
        Cancellation::TooLate(payout) => (StatusCode::CONFLICT, Json(payout)).into_response(),
    })
}

fn path_id(id: Result<Path<Uuid>, PathRejection>) -> Result<Uuid, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|e| ApiError::BadRequest(format!("invalid payout id: {e}")))
}

async fn stats(State(provider): State<Provider>) -> impl IntoResponse {
    Json(provider.stats())
}

async fn get_settings(State(provider): State<Provider>) -> impl IntoResponse {
    Json(SettingsBody::from(provider.settings()))
}

async fn put_settings(State(provider): State<Provider>, body: Bytes) -> Result<Json<SettingsBody>, ApiError> {
    let body: SettingsBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
    let settings = body.parse()?;
    provider.set_settings(settings);
    Ok(Json(SettingsBody::from(settings)))
}

async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}
