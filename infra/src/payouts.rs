//! The client of the external payout provider (DESIGN §9). Every call carries the withdrawal id
//! as its idempotency key: the provider pays a withdrawal out at most once however often it is
//! asked, and answers a repeated request with the first outcome.

use domain::Money;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// What the provider says about a payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutOutcome {
    /// The money left; the provider's reference.
    Paid(String),
    /// The provider refused it; why.
    Declined(String),
    /// It was cancelled before it was paid.
    Cancelled,
}

/// Why the provider could not be asked (try again later: calls are idempotent).
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    /// Unreachable, timed out, or answered something unexpected.
    #[error("payout provider unavailable: {0}")]
    Unavailable(String),
}

impl From<reqwest::Error> for PayoutError {
    fn from(e: reqwest::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

#[derive(Serialize)]
struct PayoutRequest {
    withdrawal_id: Uuid,
    amount: AmountBody,
}

#[derive(Serialize)]
struct AmountBody {
    minor: i64,
    currency: String,
}

#[derive(Deserialize)]
struct PayoutBody {
    status: Option<String>,
    reference: Option<String>,
    reason: Option<String>,
    /// A refusal of the request itself (e.g. the key reused with another amount).
    error: Option<String>,
}

/// The provider's HTTP API.
#[derive(Debug, Clone)]
pub struct PayoutClient {
    http: reqwest::Client,
    base: String,
}

impl PayoutClient {
    /// A client of the provider at `base` (e.g. `http://127.0.0.1:8086`).
    pub fn new(base: &str) -> Result<Self, PayoutError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// Pay `amount` out for `withdrawal_id`, waiting for the outcome.
    pub async fn pay(&self, withdrawal_id: Uuid, amount: Money) -> Result<PayoutOutcome, PayoutError> {
        let response = self
            .http
            .post(format!("{}/payouts", self.base))
            .header("idempotency-key", withdrawal_id.to_string())
            .json(&PayoutRequest {
                withdrawal_id,
                amount: AmountBody {
                    minor: amount.minor,
                    currency: amount.currency.to_string(),
                },
            })
            .send()
            .await?;
        Self::outcome(response).await
    }

    /// Ask the provider to cancel the payout of `withdrawal_id` (a no-op if it never heard of it:
    /// a later request for it is refused). The answer is the payout's outcome: `Paid` when it was
    /// too late.
    pub async fn cancel(&self, withdrawal_id: Uuid) -> Result<PayoutOutcome, PayoutError> {
        let response = self
            .http
            .delete(format!("{}/payouts/{withdrawal_id}", self.base))
            .send()
            .await?;
        Self::outcome(response).await
    }

    async fn outcome(response: reqwest::Response) -> Result<PayoutOutcome, PayoutError> {
        let status = response.status();
        if !matches!(
            status,
            StatusCode::OK | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
        ) {
            return Err(PayoutError::Unavailable(format!("answered {status}")));
        }
        let body: PayoutBody = response.json().await.map_err(|e| {
            PayoutError::Unavailable(format!("answered {status} with an unexpected body: {e}"))
        })?;
        if let Some(error) = body.error {
            // A request the provider will never accept: the withdrawal cannot be paid out.
            return Ok(PayoutOutcome::Declined(format!(
                "refused by the payout provider: {error}"
            )));
        }
        match (body.status.as_deref().unwrap_or_default(), body.reference) {
            ("paid", Some(reference)) => Ok(PayoutOutcome::Paid(reference)),
            ("declined", _) => Ok(PayoutOutcome::Declined(
                body.reason
                    .unwrap_or_else(|| "declined by the payout provider".into()),
            )),
            ("cancelled", _) => Ok(PayoutOutcome::Cancelled),
            (other, _) => Err(PayoutError::Unavailable(format!(
                "answered {status} with status {other:?}"
            ))),
        }
    }
}
