//! Payment requests in Cassandra: by id, by client and by freelancer (oldest first), the same
//! columns in every table. Every row keeps the stream version it reflects. The local CQL
//! emulator accepts `USING TIMESTAMP` but ignores it (last write wins) and cannot bind it, so the
//! write is version-guarded read-then-write, like the jobs table, and every batch also carries
//! the stream version as its write timestamp (set through the driver, as `USING TIMESTAMP`
//! would): on ScyllaDB a rebalance overlap cannot put an older version over a newer one.
//!
//! The schema, the views served, the settlement the projector writes, the stored row, the
//! prepared statements and the [`Payments`] reads and writes of the tables.

use chrono::{DateTime, Utc};
use domain::Money;
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
use uuid::Uuid;

use super::{Payments, RequestCursor, parse_currency};
use crate::store::StoreError;

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

fn cassandra(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Cassandra(Box::new(e))
}

/// The prepared statements and batches of the payment request tables.
pub(super) struct Statements {
    create: Batch,
    paid: Batch,
    expired: Batch,
    cancelled: Batch,
    by_id: PreparedStatement,
    version: PreparedStatement,
    by_client: PreparedStatement,
    by_freelancer: PreparedStatement,
}

impl Statements {
    /// Prepare the statements on `keyspace` (its tables must exist: [`ensure_schema`]).
    pub(super) async fn prepare(session: &Session, keyspace: &str) -> Result<Self, StoreError> {
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
        Ok(Self {
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
        })
    }
}

impl Payments {
    // ----- writes (the projector) -----

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
        // The version as the write timestamp: on ScyllaDB the newest version wins per column even
        // if two consumers overlap after a rebalance (the emulator ignores it; the guard above
        // protects there).
        let mut create = self.cql.create.clone();
        create.set_timestamp(Some(r.version));
        self.session
            .batch(&create, (row.clone(), row.clone(), row))
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
        let mut batch = batch.clone();
        batch.set_timestamp(Some(version));
        let batch = &batch;
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

    // ----- applied version (read-your-writes, DESIGN §6) -----

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
}
