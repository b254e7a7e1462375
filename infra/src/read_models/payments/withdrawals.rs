//! Withdrawals in Redis (DESIGN §9), per withdrawal: its status, timestamps, reason and provider
//! reference in a hash, version-guarded by a Lua script (`VERSIONED_HASH_SCRIPT`) like the
//! wallet's: an event at or below the stored version changes nothing.
//!
//! The view served, the change the projector writes, and the [`Payments`] read and write of the
//! hash.

use chrono::{DateTime, Utc};
use domain::Money;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

use super::{Payments, parse_currency, parse_time, parse_uuid};
use crate::store::StoreError;

/// Where a withdrawal stands (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatusView {
    /// Funds reserved, waiting for a worker.
    Pending,
    /// Requested inside the wallet's cooldown window: funds reserved, waits for `scheduled_for`.
    Scheduled,
    /// A worker is paying out.
    Processing,
    /// Paid out.
    Succeeded,
    /// The provider refused; funds released.
    Failed,
    /// Stopped; funds released.
    Cancelled,
}

impl WithdrawalStatusView {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => Self::Pending,
            "scheduled" => Self::Scheduled,
            "processing" => Self::Processing,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(StoreError::Codec(format!("withdrawal status {other}"))),
        })
    }
}

/// A withdrawal as served to its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WithdrawalView {
    /// The withdrawal.
    pub withdrawal_id: Uuid,
    /// The wallet it takes from.
    pub wallet_id: Uuid,
    /// The wallet's owner.
    pub owner_id: Uuid,
    /// How much.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub amount: Money,
    /// Where it stands.
    pub status: WithdrawalStatusView,
    /// When it was requested (PENDING, or SCHEDULED).
    pub requested_at: DateTime<Utc>,
    /// When a deferred withdrawal may start (SCHEDULED; the end of the wallet's cooldown window).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When a worker picked it up (PROCESSING).
    pub started_at: Option<DateTime<Utc>>,
    /// When it was paid out (SUCCEEDED).
    pub succeeded_at: Option<DateTime<Utc>>,
    /// When the provider refused it (FAILED).
    pub failed_at: Option<DateTime<Utc>>,
    /// When it was stopped (CANCELLED).
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// The payout provider's reference, once paid out.
    pub provider_reference: Option<String>,
    /// Withdrawal stream version this view reflects.
    pub version: i64,
}

/// What one withdrawal event changes.
#[derive(Debug, Clone, PartialEq)]
pub enum WithdrawalChange {
    /// Requested: PENDING.
    Requested {
        /// The wallet.
        wallet_id: Uuid,
        /// Its owner.
        owner_id: Uuid,
        /// How much.
        amount: Money,
        /// When.
        at: DateTime<Utc>,
        /// When it may start, if deferred (SCHEDULED).
        scheduled_for: Option<DateTime<Utc>>,
    },
    /// PROCESSING.
    Started {
        /// When.
        at: DateTime<Utc>,
    },
    /// SUCCEEDED.
    Succeeded {
        /// The provider's reference.
        provider_reference: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// FAILED.
    Failed {
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// CANCELLED.
    Cancelled {
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Set field/value pairs (ARGV[2..]) on hash KEYS[1] at version ARGV[1] unless it holds the same
/// or a newer version. Returns 1 if applied, 0 if not.
pub(super) const VERSIONED_HASH_SCRIPT: &str = r#"
local version = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version <= stored then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"#;

impl Payments {
    fn withdrawal_key(&self, withdrawal_id: Uuid) -> String {
        format!("{}payments:withdrawal:{withdrawal_id}", self.prefix)
    }

    // ----- write (the projector) -----

    /// Apply a withdrawal event at `version` unless the stored withdrawal is at the same or a
    /// newer version. Returns whether it was applied.
    pub async fn apply_withdrawal(
        &self,
        withdrawal_id: Uuid,
        version: i64,
        change: &WithdrawalChange,
    ) -> Result<bool, StoreError> {
        let (status, at, mut fields) = match change {
            WithdrawalChange::Requested {
                wallet_id,
                owner_id,
                amount,
                at,
                scheduled_for,
            } => {
                let mut fields = vec![
                    ("withdrawal_id", withdrawal_id.to_string()),
                    ("wallet_id", wallet_id.to_string()),
                    ("owner_id", owner_id.to_string()),
                    ("amount_minor", amount.minor.to_string()),
                    ("currency", amount.currency.to_string()),
                    ("requested_at", at.to_rfc3339()),
                ];
                let status = match scheduled_for {
                    Some(time) => {
                        fields.push(("scheduled_for", time.to_rfc3339()));
                        WithdrawalStatusView::Scheduled
                    }
                    None => WithdrawalStatusView::Pending,
                };
                (status, at, fields)
            }
            WithdrawalChange::Started { at } => (
                WithdrawalStatusView::Processing,
                at,
                vec![("started_at", at.to_rfc3339())],
            ),
            WithdrawalChange::Succeeded {
                provider_reference,
                at,
            } => (
                WithdrawalStatusView::Succeeded,
                at,
                vec![
                    ("succeeded_at", at.to_rfc3339()),
                    ("provider_reference", provider_reference.clone()),
                ],
            ),
            WithdrawalChange::Failed { reason, at } => (
                WithdrawalStatusView::Failed,
                at,
                vec![("failed_at", at.to_rfc3339()), ("reason", reason.clone())],
            ),
            WithdrawalChange::Cancelled { reason, at } => (
                WithdrawalStatusView::Cancelled,
                at,
                vec![("cancelled_at", at.to_rfc3339()), ("reason", reason.clone())],
            ),
        };
        fields.push(("status", status.as_str().to_owned()));
        fields.push(("updated_at", at.to_rfc3339()));
        let mut invocation = self.hash_script.key(self.withdrawal_key(withdrawal_id));
        invocation.arg(version);
        for (field, value) in fields {
            invocation.arg(field).arg(value);
        }
        let applied: i64 = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(applied == 1)
    }
    // ----- read -----

    /// The withdrawal `withdrawal_id`, if projected.
    pub async fn withdrawal(&self, withdrawal_id: Uuid) -> Result<Option<WithdrawalView>, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.withdrawal_key(withdrawal_id))
            .query_async(&mut self.redis.clone())
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| {
            fields
                .get(name)
                .ok_or_else(|| StoreError::Codec(format!("withdrawal {withdrawal_id} has no {name}")))
        };
        let time = |name: &str| fields.get(name).map(|s| parse_time(s)).transpose();
        let amount_minor = field("amount_minor")?
            .parse::<i64>()
            .map_err(|_| StoreError::Codec(format!("withdrawal {withdrawal_id} amount")))?;
        Ok(Some(WithdrawalView {
            withdrawal_id,
            wallet_id: parse_uuid(field("wallet_id")?)?,
            owner_id: parse_uuid(field("owner_id")?)?,
            amount: Money::new(amount_minor, parse_currency(field("currency")?)?),
            status: WithdrawalStatusView::parse(field("status")?)?,
            requested_at: parse_time(field("requested_at")?)?,
            scheduled_for: time("scheduled_for")?,
            started_at: time("started_at")?,
            succeeded_at: time("succeeded_at")?,
            failed_at: time("failed_at")?,
            cancelled_at: time("cancelled_at")?,
            reason: fields.get("reason").cloned(),
            provider_reference: fields.get("provider_reference").cloned(),
            version: field("version")?
                .parse()
                .map_err(|_| StoreError::Codec(format!("withdrawal {withdrawal_id} version")))?,
        }))
    }

    // ----- applied version (read-your-writes, DESIGN §6) -----

    /// The last version of withdrawal stream `withdrawal_id` applied, if any.
    pub async fn applied_withdrawal(&self, withdrawal_id: Uuid) -> Result<Option<i64>, StoreError> {
        self.hash_version(self.withdrawal_key(withdrawal_id)).await
    }
}
