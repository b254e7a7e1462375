//! Payments read models (DESIGN §2, §6, §9): what the payments projector writes and query-api
//! reads.
//!
//! - **Redis**, per wallet (stream id [`domain::WalletId::for_user`] of its owner): the wallet
//!   (balance, reserved, currency, stream version) in a hash and its last
//!   [`RECENT_TRANSACTIONS`] transactions in a sorted set scored by wallet version; both change
//!   in one Lua script that first compares the stored wallet version, so an event at or below it
//!   changes nothing, atomically (two consumers briefly writing one stream after a rebalance
//!   cannot put an older version over a newer one). Per withdrawal: its status, timestamps and
//!   reason in a hash, version-guarded by the same kind of script.
//! - **Cassandra**: payment requests by id, by client and by freelancer (oldest first). Every row
//!   keeps the stream version it reflects. The local CQL emulator accepts `USING TIMESTAMP` but
//!   ignores it (last write wins) and cannot bind it, so the write is version-guarded
//!   read-then-write, like the jobs table: the projector is the only writer of a stream and a
//!   stream's events arrive in order on one partition, so only a rebalance overlap could race.
//!
//! Applied versions for read-your-writes: `wallet` and `withdrawal` streams from their Redis
//! hashes, `payment_request` streams from `payment_requests_by_id`.

use chrono::{DateTime, Utc};
use domain::{Currency, Money};
use redis::aio::ConnectionManager;
use scylla::{
    DeserializeRow,
    client::session::Session,
    response::{PagingState, PagingStateResponse},
    statement::{
        batch::{Batch, BatchType},
        prepared::PreparedStatement,
    },
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{collections::HashMap, sync::Arc};
use uuid::Uuid;

use crate::{config::RedisConfig, store::StoreError};

/// How many transactions each wallet keeps (the newest).
pub const RECENT_TRANSACTIONS: usize = 100;

/// Create the payments tables in `keyspace` (which must exist: see
/// [`crate::cassandra::ensure_schema`]).
pub async fn ensure_schema(session: &Session, keyspace: &str) -> Result<(), StoreError> {
    // The same columns in every table, so one row type reads them all.
    const COLUMNS: &str = "payment_request_id uuid, contract_id uuid, milestone_id uuid, client_id uuid,
        freelancer_id uuid, amount_minor bigint, currency text, status text, due_at timestamp,
        created_at timestamp, paid_at timestamp, expired_at timestamp, cancelled_at timestamp,
        cancel_reason text, version bigint";
    let statements = [
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.payment_requests_by_id ({COLUMNS},
             PRIMARY KEY (payment_request_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.payment_requests_by_client ({COLUMNS},
             PRIMARY KEY (client_id, created_at, payment_request_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.payment_requests_by_freelancer ({COLUMNS},
             PRIMARY KEY (freelancer_id, created_at, payment_request_id))"
        ),
    ];
    for statement in statements {
        session.query_unpaged(statement, ()).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

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

/// Where a withdrawal stands (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatusView {
    /// Funds reserved, waiting for a worker.
    Pending,
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
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => Self::Pending,
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
    /// When it was requested (PENDING).
    pub requested_at: DateTime<Utc>,
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

/// Where a payment request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentRequestStatusView {
    /// Waiting for the client.
    Pending,
    /// Paid (once).
    Paid,
    /// Left unpaid past its due time.
    Expired,
    /// Cancelled by a saga while pending (e.g. its contract was terminated).
    Cancelled,
}

impl PaymentRequestStatusView {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => Self::Pending,
            "paid" => Self::Paid,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            other => return Err(StoreError::Codec(format!("payment request status {other}"))),
        })
    }
}

/// A payment request as stored and served (to its client and freelancer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentRequestView {
    /// The request.
    pub payment_request_id: Uuid,
    /// The contract.
    pub contract_id: Uuid,
    /// The accepted milestone it pays.
    pub milestone_id: Uuid,
    /// Who pays.
    pub client_id: Uuid,
    /// Who is paid.
    pub freelancer_id: Uuid,
    /// How much.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub amount: Money,
    /// Where it stands.
    pub status: PaymentRequestStatusView,
    /// When it expires if unpaid.
    pub due_at: DateTime<Utc>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// When it expired.
    pub expired_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// Stream version this row reflects.
    pub version: i64,
}

/// A page of payment requests, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentRequestPage {
    /// The requests.
    pub items: Vec<PaymentRequestView>,
    /// Pass as `page_token` for the next page; null on the last.
    pub next_page_token: Option<String>,
}

/// The side of payment requests a user reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartyRole {
    /// Requests the user pays.
    Client,
    /// Requests the user is paid.
    Freelancer,
}

// ---------------------------------------------------------------------------------------------
// Changes the projector writes
// ---------------------------------------------------------------------------------------------

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

/// A payment request left the pending state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Paid by its client.
    Paid,
    /// Left unpaid past its due time.
    Expired,
    /// Cancelled by a saga.
    Cancelled {
        /// Why.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Page tokens
// ---------------------------------------------------------------------------------------------

/// A `page_token` that this read model did not issue (or that belongs to another list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page_token is not a token this list issued")]
pub struct BadPageToken;

/// Longest token accepted, in characters.
const MAX_TOKEN_CHARS: usize = 4096;

/// Encode `body` as an opaque token of `kind`: hex of kind, body and a short check, so a
/// mangled or foreign token is refused as a 400 instead of reaching the store.
fn encode_token(kind: u8, body: &[u8]) -> String {
    let mut raw = Vec::with_capacity(body.len() + 5);
    raw.push(kind);
    raw.extend_from_slice(body);
    let check = token_check(&raw);
    raw.extend_from_slice(&check);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(kind: u8, token: &str) -> Result<Vec<u8>, BadPageToken> {
    if token.len() > MAX_TOKEN_CHARS || !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(BadPageToken);
    }
    let raw = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).map_err(|_| BadPageToken))
        .collect::<Result<Vec<u8>, _>>()?;
    if raw.len() < 5 || raw[0] != kind {
        return Err(BadPageToken);
    }
    let (signed, check) = raw.split_at(raw.len() - 4);
    if token_check(signed) != check {
        return Err(BadPageToken);
    }
    Ok(signed[1..].to_vec())
}

fn token_check(raw: &[u8]) -> [u8; 4] {
    let digest = Sha256::new_with_prefix(b"workup.payments.page")
        .chain_update(raw)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

const TRANSACTIONS_TOKEN: u8 = b't';
const REQUESTS_TOKEN: u8 = b'r';

/// Where a transaction page starts: below this wallet version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionCursor(i64);

impl TransactionCursor {
    /// Read a `page_token` of the transactions list.
    pub fn parse(token: &str) -> Result<Self, BadPageToken> {
        let body: [u8; 8] = decode_token(TRANSACTIONS_TOKEN, token)?
            .try_into()
            .map_err(|_| BadPageToken)?;
        Ok(Self(i64::from_be_bytes(body)))
    }

    fn token(below: i64) -> String {
        encode_token(TRANSACTIONS_TOKEN, &below.to_be_bytes())
    }
}

/// Where a payment request page starts: a side (client rows, then freelancer rows) and the
/// Cassandra paging state within it.
#[derive(Debug, Clone)]
pub struct RequestCursor {
    side: PartyRole,
    state: PagingState,
}

impl RequestCursor {
    /// Read a `page_token` of the requests list asked with `role` (a token of another role's
    /// list is refused).
    pub fn parse(token: &str, role: Option<PartyRole>) -> Result<Self, BadPageToken> {
        let body = decode_token(REQUESTS_TOKEN, token)?;
        let (&[scope, side], state) = body.split_first_chunk::<2>().ok_or(BadPageToken)?;
        if scope != role_byte(role) {
            return Err(BadPageToken);
        }
        let side = match side {
            b'c' => PartyRole::Client,
            b'f' => PartyRole::Freelancer,
            _ => return Err(BadPageToken),
        };
        if role.is_some_and(|r| r != side) {
            return Err(BadPageToken);
        }
        let state = if state.is_empty() {
            PagingState::start()
        } else {
            PagingState::new_from_raw_bytes(state)
        };
        Ok(Self { side, state })
    }

    fn token(role: Option<PartyRole>, side: PartyRole, state: &PagingState) -> String {
        let mut body = vec![
            role_byte(role),
            match side {
                PartyRole::Client => b'c',
                PartyRole::Freelancer => b'f',
            },
        ];
        if let Some(bytes) = state.as_bytes_slice() {
            body.extend_from_slice(bytes);
        }
        encode_token(REQUESTS_TOKEN, &body)
    }
}

fn role_byte(role: Option<PartyRole>) -> u8 {
    match role {
        None => b'*',
        Some(PartyRole::Client) => b'c',
        Some(PartyRole::Freelancer) => b'f',
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// Apply a wallet event unless the stored wallet is at the same or a newer version.
/// KEYS: wallet hash, transactions sorted set. ARGV: version, how many transactions to keep,
/// balance or '' (keep), reserved or '' (keep), transaction JSON without the balance or '' (none),
/// then field/value pairs to set. Balances stay strings (Lua numbers are doubles): the
/// transaction gets the balance after spliced in as text. Returns 1 if applied, 0 if not.
const WALLET_SCRIPT: &str = r#"
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

/// Set field/value pairs (ARGV[2..]) on hash KEYS[1] at version ARGV[1] unless it holds the same
/// or a newer version. Returns 1 if applied, 0 if not.
const VERSIONED_HASH_SCRIPT: &str = r#"
local version = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version <= stored then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"#;

const SELECT_COLUMNS: &str =
    "payment_request_id, contract_id, milestone_id, client_id, freelancer_id, amount_minor,
    currency, status, due_at, created_at, paid_at, expired_at, cancelled_at, cancel_reason, version";

#[derive(DeserializeRow)]
struct RequestRow {
    payment_request_id: Uuid,
    contract_id: Uuid,
    milestone_id: Uuid,
    client_id: Uuid,
    freelancer_id: Uuid,
    amount_minor: i64,
    currency: String,
    status: String,
    due_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    expired_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancel_reason: Option<String>,
    version: i64,
}

impl TryFrom<RequestRow> for PaymentRequestView {
    type Error = StoreError;

    fn try_from(r: RequestRow) -> Result<Self, StoreError> {
        Ok(Self {
            payment_request_id: r.payment_request_id,
            contract_id: r.contract_id,
            milestone_id: r.milestone_id,
            client_id: r.client_id,
            freelancer_id: r.freelancer_id,
            amount: Money::new(r.amount_minor, parse_currency(&r.currency)?),
            status: PaymentRequestStatusView::parse(&r.status)?,
            due_at: r.due_at,
            created_at: r.created_at,
            paid_at: r.paid_at,
            expired_at: r.expired_at,
            cancelled_at: r.cancelled_at,
            cancel_reason: r.cancel_reason,
            version: r.version,
        })
    }
}

fn parse_currency(s: &str) -> Result<Currency, StoreError> {
    s.parse().map_err(|_| StoreError::Codec(format!("currency {s}")))
}

fn cassandra(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Cassandra(Box::new(e))
}

/// The payments read model: Redis wallets, transactions and withdrawals; Cassandra payment
/// requests.
#[derive(Clone)]
pub struct Payments {
    redis: ConnectionManager,
    prefix: String,
    wallet_script: Arc<redis::Script>,
    hash_script: Arc<redis::Script>,
    session: Arc<Session>,
    cql: Arc<Statements>,
}

struct Statements {
    create: Batch,
    paid: Batch,
    expired: Batch,
    cancelled: Batch,
    by_id: PreparedStatement,
    version: PreparedStatement,
    by_client: PreparedStatement,
    by_freelancer: PreparedStatement,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Payments {
    /// Connect to Redis and prepare the Cassandra statements on `keyspace` (its tables must
    /// exist: [`ensure_schema`]).
    pub async fn new(session: Arc<Session>, keyspace: &str, redis: &RedisConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(redis.url.as_str())?;
        let connection = ConnectionManager::new(client).await?;
        // Each table and its primary key, in the order of the batches' values.
        let tables = [
            ("payment_requests_by_id", "payment_request_id = ?"),
            (
                "payment_requests_by_client",
                "client_id = ? AND created_at = ? AND payment_request_id = ?",
            ),
            (
                "payment_requests_by_freelancer",
                "freelancer_id = ? AND created_at = ? AND payment_request_id = ?",
            ),
        ];
        let mut create = Batch::new(BatchType::Logged);
        let mut paid = Batch::new(BatchType::Logged);
        let mut expired = Batch::new(BatchType::Logged);
        let mut cancelled = Batch::new(BatchType::Logged);
        for (table, key) in tables {
            create.append_statement(
                session
                    .prepare(format!(
                        "INSERT INTO {keyspace}.{table} ({SELECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ))
                    .await?,
            );
            paid.append_statement(
                session
                    .prepare(format!(
                        "UPDATE {keyspace}.{table} SET status = ?, paid_at = ?, version = ? WHERE {key}"
                    ))
                    .await?,
            );
            expired.append_statement(
                session
                    .prepare(format!(
                        "UPDATE {keyspace}.{table} SET status = ?, expired_at = ?, version = ? WHERE {key}"
                    ))
                    .await?,
            );
            cancelled.append_statement(
                session
                    .prepare(format!(
                        "UPDATE {keyspace}.{table} SET status = ?, cancelled_at = ?, cancel_reason = ?, version = ?
                         WHERE {key}"
                    ))
                    .await?,
            );
        }
        let select = |table: &str, key: &str| {
            format!("SELECT {SELECT_COLUMNS} FROM {keyspace}.{table} WHERE {key} = ?")
        };
        let cql = Statements {
            create,
            paid,
            expired,
            cancelled,
            by_id: session
                .prepare(select("payment_requests_by_id", "payment_request_id"))
                .await?,
            version: session
                .prepare(format!(
                    "SELECT version FROM {keyspace}.payment_requests_by_id WHERE payment_request_id = ?"
                ))
                .await?,
            by_client: session
                .prepare(select("payment_requests_by_client", "client_id"))
                .await?,
            by_freelancer: session
                .prepare(select("payment_requests_by_freelancer", "freelancer_id"))
                .await?,
        };
        Ok(Self {
            redis: connection,
            prefix: redis.prefix.clone(),
            wallet_script: Arc::new(redis::Script::new(WALLET_SCRIPT)),
            hash_script: Arc::new(redis::Script::new(VERSIONED_HASH_SCRIPT)),
            session,
            cql: Arc::new(cql),
        })
    }

    fn wallet_key(&self, wallet_id: Uuid) -> String {
        format!("{}payments:wallet:{wallet_id}", self.prefix)
    }

    fn transactions_key(&self, wallet_id: Uuid) -> String {
        format!("{}payments:wallet:{wallet_id}:transactions", self.prefix)
    }

    fn withdrawal_key(&self, withdrawal_id: Uuid) -> String {
        format!("{}payments:withdrawal:{withdrawal_id}", self.prefix)
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
            } => (
                WithdrawalStatusView::Pending,
                at,
                vec![
                    ("withdrawal_id", withdrawal_id.to_string()),
                    ("wallet_id", wallet_id.to_string()),
                    ("owner_id", owner_id.to_string()),
                    ("amount_minor", amount.minor.to_string()),
                    ("currency", amount.currency.to_string()),
                    ("requested_at", at.to_rfc3339()),
                ],
            ),
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

    /// Write a new payment request (by id, by client, by freelancer, in one logged batch)
    /// unless it is stored at the same or a newer version. Returns whether it was written.
    pub async fn create_payment_request(&self, r: &PaymentRequestView) -> Result<bool, StoreError> {
        if self
            .applied_payment_request(r.payment_request_id)
            .await?
            .is_some_and(|v| v >= r.version)
        {
            return Ok(false);
        }
        let row = (
            r.payment_request_id,
            r.contract_id,
            r.milestone_id,
            r.client_id,
            r.freelancer_id,
            r.amount.minor,
            r.amount.currency.to_string(),
            r.status.as_str(),
            r.due_at,
            r.created_at,
            r.paid_at,
            r.expired_at,
            r.cancelled_at,
            r.cancel_reason.as_deref(),
            r.version,
        );
        self.session
            .batch(&self.cql.create, (row.clone(), row.clone(), row))
            .await?;
        Ok(true)
    }

    /// Mark payment request `id` paid, expired or cancelled at `at`, at stream `version`, in every table,
    /// unless it is stored at the same or a newer version. Errs if the request was never
    /// projected (its creation comes first on the same partition; the consumer retries).
    pub async fn settle_payment_request(
        &self,
        id: Uuid,
        version: i64,
        settlement: Settlement,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let current = self.payment_request(id).await?.ok_or_else(|| {
            StoreError::Codec(format!(
                "payment request {id} not projected before version {version}"
            ))
        })?;
        if current.version >= version {
            return Ok(false);
        }
        let (client, freelancer, created) = (current.client_id, current.freelancer_id, current.created_at);
        let (batch, status, reason) = match settlement {
            Settlement::Paid => (&self.cql.paid, PaymentRequestStatusView::Paid, None),
            Settlement::Expired => (&self.cql.expired, PaymentRequestStatusView::Expired, None),
            Settlement::Cancelled { reason } => (
                &self.cql.cancelled,
                PaymentRequestStatusView::Cancelled,
                Some(reason),
            ),
        };
        let status = status.as_str();
        match reason {
            None => {
                let by_id = (status, at, version, id);
                let by_client = (status, at, version, client, created, id);
                let by_freelancer = (status, at, version, freelancer, created, id);
                self.session
                    .batch(batch, (by_id, by_client, by_freelancer))
                    .await?;
            }
            Some(reason) => {
                let by_id = (status, at, &reason, version, id);
                let by_client = (status, at, &reason, version, client, created, id);
                let by_freelancer = (status, at, &reason, version, freelancer, created, id);
                self.session
                    .batch(batch, (by_id, by_client, by_freelancer))
                    .await?;
            }
        }
        Ok(true)
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

    /// The payment request `id`, if projected.
    pub async fn payment_request(&self, id: Uuid) -> Result<Option<PaymentRequestView>, StoreError> {
        self.session
            .execute_unpaged(&self.cql.by_id, (id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<RequestRow>()?
            .map(PaymentRequestView::try_from)
            .transpose()
    }

    /// Up to `limit` payment requests of `user`, oldest first: those it pays (`role` client),
    /// those it is paid (`role` freelancer), or both (no `role`: its client side, then its
    /// freelancer side), from `cursor` on.
    pub async fn payment_requests(
        &self,
        user: Uuid,
        role: Option<PartyRole>,
        limit: usize,
        cursor: Option<RequestCursor>,
    ) -> Result<PaymentRequestPage, StoreError> {
        let sides: &[PartyRole] = match role {
            Some(PartyRole::Client) => &[PartyRole::Client],
            Some(PartyRole::Freelancer) => &[PartyRole::Freelancer],
            None => &[PartyRole::Client, PartyRole::Freelancer],
        };
        let (mut side, mut state) = match cursor {
            Some(c) => (
                sides.iter().position(|s| *s == c.side).unwrap_or(sides.len()),
                c.state,
            ),
            None => (0, PagingState::start()),
        };
        let mut items = Vec::new();
        while side < sides.len() {
            let mut statement = match sides[side] {
                PartyRole::Client => self.cql.by_client.clone(),
                PartyRole::Freelancer => self.cql.by_freelancer.clone(),
            };
            statement.set_page_size(i32::try_from(limit - items.len()).unwrap_or(i32::MAX));
            let (result, response) = self
                .session
                .execute_single_page(&statement, (user,), state)
                .await?;
            for row in result
                .into_rows_result()?
                .rows::<RequestRow>()
                .map_err(cassandra)?
            {
                items.push(PaymentRequestView::try_from(row.map_err(cassandra)?)?);
            }
            match response {
                PagingStateResponse::HasMorePages { state: next } => {
                    if items.len() >= limit {
                        return Ok(PaymentRequestPage {
                            items,
                            next_page_token: Some(RequestCursor::token(role, sides[side], &next)),
                        });
                    }
                    state = next;
                }
                PagingStateResponse::NoMorePages => {
                    side += 1;
                    state = PagingState::start();
                    if items.len() >= limit {
                        let next_page_token = sides.get(side).map(|s| RequestCursor::token(role, *s, &state));
                        return Ok(PaymentRequestPage {
                            items,
                            next_page_token,
                        });
                    }
                }
            }
        }
        Ok(PaymentRequestPage {
            items,
            next_page_token: None,
        })
    }

    // ----- applied versions (read-your-writes, DESIGN §6) -----

    /// The last version of wallet stream `wallet_id` applied, if any.
    pub async fn applied_wallet(&self, wallet_id: Uuid) -> Result<Option<i64>, StoreError> {
        self.hash_version(self.wallet_key(wallet_id)).await
    }

    /// The last version of withdrawal stream `withdrawal_id` applied, if any.
    pub async fn applied_withdrawal(&self, withdrawal_id: Uuid) -> Result<Option<i64>, StoreError> {
        self.hash_version(self.withdrawal_key(withdrawal_id)).await
    }

    /// The last version of payment request stream `id` applied, if any.
    pub async fn applied_payment_request(&self, id: Uuid) -> Result<Option<i64>, StoreError> {
        Ok(self
            .session
            .execute_unpaged(&self.cql.version, (id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?
            .and_then(|(v,)| v))
    }

    async fn hash_version(&self, key: String) -> Result<Option<i64>, StoreError> {
        let raw: Option<String> = redis::cmd("HGET")
            .arg(key)
            .arg("version")
            .query_async(&mut self.redis.clone())
            .await?;
        raw.map(|v| v.parse().map_err(|_| StoreError::Codec(format!("version {v}"))))
            .transpose()
    }

    /// Check Redis and Cassandra answer (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING").query_async(&mut self.redis.clone()).await?;
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await?;
        Ok(())
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

fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Codec(format!("time {s}")))
}

fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    s.parse().map_err(|_| StoreError::Codec(format!("id {s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_what_they_did_not_issue() {
        let token = TransactionCursor::token(42);
        assert_eq!(TransactionCursor::parse(&token), Ok(TransactionCursor(42)));
        let mut mangled = token.clone();
        mangled.replace_range(4..6, if &token[4..6] == "00" { "01" } else { "00" });
        for bad in [mangled.as_str(), "", "zz", "00", &token[..token.len() - 2]] {
            assert_eq!(TransactionCursor::parse(bad), Err(BadPageToken), "{bad:?}");
        }
        let requests = RequestCursor::token(None, PartyRole::Freelancer, &PagingState::start());
        assert_eq!(
            TransactionCursor::parse(&requests),
            Err(BadPageToken),
            "another list's token"
        );
        let cursor = RequestCursor::parse(&requests, None).expect("own token");
        assert_eq!(cursor.side, PartyRole::Freelancer);
        assert!(
            RequestCursor::parse(&requests, Some(PartyRole::Freelancer)).is_err(),
            "another role's token"
        );
        assert!(RequestCursor::parse(&requests, Some(PartyRole::Client)).is_err());
    }
}
