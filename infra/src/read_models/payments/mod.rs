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
//!
//! - `wallets`: the wallet and transactions views, the wallet change the projector writes, the
//!   wallet Lua script, and the wallet reads and writes.
//! - `withdrawals`: the withdrawal view and change, the versioned-hash Lua script, and the
//!   withdrawal read and write.
//! - `requests`: the payment request tables (schema, rows, prepared statements), views,
//!   settlements, and their reads and writes.
//! - `page_token`: the opaque `page_token`s of the transactions and requests lists.
//!
//! [`Payments`], the one handle on both stores, is defined here; each module adds its methods.

mod page_token;
mod requests;
mod wallets;
mod withdrawals;

pub use page_token::{BadPageToken, RequestCursor, TransactionCursor};
pub use requests::{
    PartyRole, PaymentRequestPage, PaymentRequestStatusView, PaymentRequestView, Settlement, ensure_schema,
};
pub use wallets::{
    NewTransaction, RECENT_TRANSACTIONS, TransactionKind, TransactionPage, TransactionView, WalletChange,
    WalletView,
};
pub use withdrawals::{WithdrawalChange, WithdrawalStatusView, WithdrawalView};

use chrono::{DateTime, Utc};
use domain::Currency;
use scylla::client::session::Session;
use std::sync::Arc;
use uuid::Uuid;

use crate::{config::RedisConfig, redis::RedisConnection, store::StoreError};
use requests::Statements;
use wallets::WALLET_SCRIPT;
use withdrawals::VERSIONED_HASH_SCRIPT;

/// The payments read model: Redis wallets, transactions and withdrawals; Cassandra payment
/// requests.
#[derive(Clone)]
pub struct Payments {
    redis: RedisConnection,
    prefix: String,
    wallet_script: Arc<redis::Script>,
    hash_script: Arc<redis::Script>,
    session: Arc<Session>,
    cql: Arc<Statements>,
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
        let connection = RedisConnection::open(&redis.url).await?;
        let cql = Statements::prepare(&session, keyspace).await?;
        Ok(Self {
            redis: connection,
            prefix: redis.prefix.clone(),
            wallet_script: Arc::new(redis::Script::new(WALLET_SCRIPT)),
            hash_script: Arc::new(redis::Script::new(VERSIONED_HASH_SCRIPT)),
            session,
            cql: Arc::new(cql),
        })
    }

    /// The `version` field of Redis hash `key` (a wallet or a withdrawal), if any.
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

/// A time stored as RFC 3339 text in a Redis hash or transaction.
fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Codec(format!("time {s}")))
}

/// An id stored as text in a Redis hash.
fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    s.parse().map_err(|_| StoreError::Codec(format!("id {s}")))
}

/// A currency code stored as text (Redis hashes, Cassandra rows).
fn parse_currency(s: &str) -> Result<Currency, StoreError> {
    s.parse().map_err(|_| StoreError::Codec(format!("currency {s}")))
}
