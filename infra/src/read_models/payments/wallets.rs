//! Wallets in Redis, per wallet (stream id [`domain::WalletId::for_user`] of its owner): the
//! wallet (balance, reserved, currency, stream version) in a hash and its last
//! [`RECENT_TRANSACTIONS`] transactions in a sorted set scored by wallet version. Both change in
//! one Lua script (`WALLET_SCRIPT`) that first compares the stored wallet version, so an event
//! at or below it changes nothing, atomically.
//!
//! The views served (wallet, transactions and their page), the change the projector writes, and
//! the [`Payments`] reads and writes of both keys.

use chrono::{DateTime, Utc};
use domain::{Currency, Money};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

use super::{Payments, TransactionCursor, parse_currency, parse_time, parse_uuid};
use crate::store::StoreError;

/// How many transactions each wallet keeps (the newest).
pub const RECENT_TRANSACTIONS: usize = 100;

/// A user's wallet as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalletView {
    /// The wallet ([`domain::WalletId::for_user`] of the owner).
    pub wallet_id: Uuid,
    /// Its owner.
    pub owner_id: Uuid,
    /// Everything in it, reserved funds included.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub balance: Money,
    /// Set aside for pending withdrawals.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub reserved: Money,
    /// What may be paid or withdrawn: balance − reserved.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub available: Money,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Wallet stream version this view reflects.
    pub version: i64,
}

/// What a wallet transaction was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// The owner deposited funds.
    Deposit,
    /// A payment request was paid from the wallet.
    Debit,
    /// A payment request was paid into the wallet.
    Credit,
    /// Funds were reserved for a withdrawal.
    Reservation,
    /// A failed or cancelled withdrawal's reservation was released.
    Release,
    /// A withdrawal took its reserved funds out.
    Withdrawal,
}

/// One wallet transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransactionView {
    /// The wallet stream version of the event (unique per wallet, increasing).
    pub version: i64,
    /// What happened.
    pub kind: TransactionKind,
    /// How much.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub amount: Money,
    /// The wallet's balance after it (reservations and releases leave it unchanged).
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub balance: Money,
    /// The payment request (debit, credit) or withdrawal (reservation, release, withdrawal);
    /// none for a deposit.
    pub reference_id: Option<Uuid>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A page of wallet transactions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransactionPage {
    /// The transactions.
    pub items: Vec<TransactionView>,
    /// Pass as `page_token` for the next page; null on the last.
    pub next_page_token: Option<String>,
}

/// A new wallet transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransaction {
    /// What happened.
    pub kind: TransactionKind,
    /// How much.
    pub amount: Money,
    /// The payment request or withdrawal, if any.
    pub reference_id: Option<Uuid>,
}

/// What one wallet event changes; absent values keep what is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WalletChange {
    /// The wallet (the stream).
    pub wallet_id: Uuid,
    /// The event's stream version.
    pub version: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The wallet's currency.
    pub currency: Currency,
    /// Set by the opening event: the owner.
    pub opened_by: Option<Uuid>,
    /// The balance after, in minor units.
    pub balance: Option<i64>,
    /// The reserved total after, in minor units.
    pub reserved: Option<i64>,
    /// The transaction to list, if the event is one.
    pub transaction: Option<NewTransaction>,
}

/// Apply a wallet event unless the stored wallet is at the same or a newer version.
/// KEYS: wallet hash, transactions sorted set. ARGV: version, how many transactions to keep,
/// balance or '' (keep), reserved or '' (keep), transaction JSON without the balance or '' (none),
/// then field/value pairs to set. Balances stay strings (Lua numbers are doubles): the
/// transaction gets the balance after spliced in as text. Returns 1 if applied, 0 if not.
pub(super) const WALLET_SCRIPT: &str = r#"
local version = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version <= stored then return 0 end
local balance = ARGV[3]
if balance == '' then balance = redis.call('HGET', KEYS[1], 'balance') or '0' end
local reserved = ARGV[4]
if reserved == '' then reserved = redis.call('HGET', KEYS[1], 'reserved') or '0' end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'balance', balance, 'reserved', reserved)
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[2], version, '{"balance_minor":' .. balance .. ',' .. string.sub(ARGV[5], 2))
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
end
return 1
"#;

impl Payments {
    fn wallet_key(&self, wallet_id: Uuid) -> String {
        format!("{}payments:wallet:{wallet_id}", self.prefix)
    }

    fn transactions_key(&self, wallet_id: Uuid) -> String {
        format!("{}payments:wallet:{wallet_id}:transactions", self.prefix)
    }

    // ----- writes (the projector) -----

    /// Apply a wallet event, atomically: nothing changes if the stored wallet is at the same or
    /// a newer version. Returns whether it was applied.
    pub async fn apply_wallet(&self, change: &WalletChange) -> Result<bool, StoreError> {
        let at = change.at.to_rfc3339();
        let transaction = match &change.transaction {
            Some(t) => serde_json::to_string(&StoredTransactionTail {
                version: change.version,
                kind: t.kind,
                amount: t.amount,
                reference_id: t.reference_id,
                at: change.at,
            })?,
            None => String::new(),
        };
        let mut invocation = self.wallet_script.key(self.wallet_key(change.wallet_id));
        invocation
            .key(self.transactions_key(change.wallet_id))
            .arg(change.version)
            .arg(RECENT_TRANSACTIONS)
            .arg(change.balance.map(|b| b.to_string()).unwrap_or_default())
            .arg(change.reserved.map(|r| r.to_string()).unwrap_or_default())
            .arg(transaction)
            .arg("wallet_id")
            .arg(change.wallet_id.to_string())
            .arg("currency")
            .arg(change.currency.to_string())
            .arg("updated_at")
            .arg(&at);
        if let Some(owner) = change.opened_by {
            invocation
                .arg("owner_id")
                .arg(owner.to_string())
                .arg("opened_at")
                .arg(&at);
        }
        let applied: i64 = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(applied == 1)
    }

    // ----- reads -----

    /// The wallet `wallet_id`, if projected.
    pub async fn wallet(&self, wallet_id: Uuid) -> Result<Option<WalletView>, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.wallet_key(wallet_id))
            .query_async(&mut self.redis.clone())
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| {
            fields
                .get(name)
                .ok_or_else(|| StoreError::Codec(format!("wallet {wallet_id} has no {name}")))
        };
        let int = |name: &str| {
            field(name)?
                .parse::<i64>()
                .map_err(|_| StoreError::Codec(format!("wallet {wallet_id} {name}")))
        };
        let currency = parse_currency(field("currency")?)?;
        let (balance, reserved) = (int("balance")?, int("reserved")?);
        let updated_at = parse_time(field("updated_at")?)?;
        Ok(Some(WalletView {
            wallet_id,
            owner_id: parse_uuid(field("owner_id")?)?,
            balance: Money::new(balance, currency),
            reserved: Money::new(reserved, currency),
            available: Money::new(balance.saturating_sub(reserved), currency),
            opened_at: fields
                .get("opened_at")
                .map(|s| parse_time(s))
                .transpose()?
                .unwrap_or(updated_at),
            updated_at,
            version: int("version")?,
        }))
    }

    /// Up to `limit` transactions of wallet `wallet_id`, newest first, below `cursor`.
    pub async fn transactions(
        &self,
        wallet_id: Uuid,
        limit: usize,
        cursor: Option<TransactionCursor>,
    ) -> Result<TransactionPage, StoreError> {
        let max = cursor.map_or_else(|| "+inf".to_owned(), |c| format!("({}", c.0));
        let raw: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(self.transactions_key(wallet_id))
            .arg(max)
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut self.redis.clone())
            .await?;
        let mut items = raw
            .iter()
            .map(|s| serde_json::from_str::<StoredTransaction>(s).map(TransactionView::from))
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|t| TransactionCursor::token(t.version))
        } else {
            None
        };
        Ok(TransactionPage {
            items,
            next_page_token,
        })
    }

    // ----- applied version (read-your-writes, DESIGN §6) -----

    /// The last version of wallet stream `wallet_id` applied, if any.
    pub async fn applied_wallet(&self, wallet_id: Uuid) -> Result<Option<i64>, StoreError> {
        self.hash_version(self.wallet_key(wallet_id)).await
    }
}

/// A transaction as written by the projector (the script adds `balance_minor`).
#[derive(Serialize)]
struct StoredTransactionTail {
    version: i64,
    kind: TransactionKind,
    amount: Money,
    reference_id: Option<Uuid>,
    at: DateTime<Utc>,
}

/// A transaction as stored.
#[derive(Deserialize)]
struct StoredTransaction {
    balance_minor: i64,
    version: i64,
    kind: TransactionKind,
    amount: Money,
    reference_id: Option<Uuid>,
    at: DateTime<Utc>,
}

impl From<StoredTransaction> for TransactionView {
    fn from(t: StoredTransaction) -> Self {
        Self {
            version: t.version,
            kind: t.kind,
            amount: t.amount,
            balance: Money::new(t.balance_minor, t.amount.currency),
            reference_id: t.reference_id,
            at: t.at,
        }
    }
}
