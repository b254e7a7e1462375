//! The contracts read model (DESIGN §2, §6) in Cassandra: contracts by id, by client and by
//! freelancer, milestones by contract and termination requests by contract, with the version
//! applied per `contract` and `termination` stream. Written by the `contracts` projector, read by
//! query-api.
//!
//! Writes are idempotent and order-safe. Each event becomes one logged batch that writes only
//! the columns the event sets, plus the stream's applied version in `contracts_applied`, all with
//! the event's stream version as the write timestamp (the protocol's default timestamp of the
//! batch, the same as `USING TIMESTAMP`): on ScyllaDB the newest version wins per column even if
//! two consumers briefly write one stream. The local emulator ignores write timestamps (it
//! accepts them), so each write is also guarded by the applied version read just before: an event
//! at or below it is skipped. That guard is what keeps duplicates and older versions out on the
//! emulator (one consumer per partition); on ScyllaDB it only saves the write.
//!
//! Listing rows (`contracts_by_client`, `contracts_by_freelancer`) are written once, at
//! initiation, and never change; a page of them is joined with `contracts_by_id`, so a contract's
//! status lives in one row. Lists page with the driver's paging state, handed out as an opaque
//! hex token.
//!
//! - [`views`]: what is served (views, pages, statuses) and what the projector writes.
//! - `rows`: the stored rows and their views; `page_token`: the opaque token of a page.

mod page_token;
mod rows;
pub mod views;

use chrono::{DateTime, Utc};
use domain::contracts::{MilestoneStatus, TerminationStatus};
use scylla::{
    client::session::Session,
    errors::{DbError, ExecutionError, RequestAttemptError},
    response::{PagingState, PagingStateResponse},
    serialize::row::SerializeRow,
    statement::{
        batch::{Batch, BatchType},
        prepared::PreparedStatement,
    },
};
use std::sync::Arc;
use uuid::Uuid;

pub use views::*;

use crate::store::StoreError;
use rows::{ContractRow, MilestoneRow, TerminationRow};

/// The name of this read model in consistency waits and logs.
pub const NAME: &str = "contracts";
/// Stream type of contracts (see `domain::contracts::Contract`).
pub const CONTRACT_STREAM: &str = "contract";
/// Stream type of termination requests (see `domain::contracts::TerminationRequest`).
pub const TERMINATION_STREAM: &str = "termination";
/// Most items per page.
pub const MAX_LIMIT: usize = 100;

/// Create this read model's tables (the keyspace exists: `cassandra::ensure_schema`).
pub async fn ensure_schema(session: &Session, keyspace: &str) -> Result<(), StoreError> {
    let ks = keyspace;
    let statements = [
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.contracts_by_id (
                contract_id uuid PRIMARY KEY, proposal_id uuid, job_id uuid, client_id uuid,
                freelancer_id uuid, status text, initiated_at timestamp, completed_at timestamp,
                terminated_at timestamp, termination_request_id uuid, version bigint)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.contracts_by_client (
                client_id uuid, initiated_at timestamp, contract_id uuid,
                PRIMARY KEY ((client_id), initiated_at, contract_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.contracts_by_freelancer (
                freelancer_id uuid, initiated_at timestamp, contract_id uuid,
                PRIMARY KEY ((freelancer_id), initiated_at, contract_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.contract_milestones (
                contract_id uuid, milestone_id uuid, position int, title text, amount_minor bigint,
                currency text, due_on date, status text, payment_request_id uuid,
                updated_at timestamp, version bigint,
                PRIMARY KEY ((contract_id), milestone_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.contract_terminations (
                contract_id uuid, termination_request_id uuid, requested_by uuid, reason text,
                status text, requested_at timestamp, answered_by uuid, answered_at timestamp,
                version bigint,
                PRIMARY KEY ((contract_id), termination_request_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.contracts_applied (
                stream_id uuid PRIMARY KEY, stream_type text, version bigint)"
        ),
    ];
    for statement in statements {
        session.query_unpaged(statement, ()).await?;
    }
    Ok(())
}

/// One statement of a write batch with its values.
type Write = (PreparedStatement, Box<dyn SerializeRow + Send + Sync>);

/// The contracts read model: its tables and prepared statements.
#[derive(Debug, Clone)]
pub struct ContractsReadModel {
    session: Arc<Session>,
    /// Shared: a clone is cheap, and the handle stays small.
    statements: Arc<Statements>,
}

/// The prepared statements of [`ContractsReadModel`].
#[derive(Debug)]
struct Statements {
    insert_contract: PreparedStatement,
    insert_by_client: PreparedStatement,
    insert_by_freelancer: PreparedStatement,
    insert_milestone: PreparedStatement,
    move_milestone: PreparedStatement,
    pay_milestone: PreparedStatement,
    set_contract_version: PreparedStatement,
    complete_contract: PreparedStatement,
    terminate_contract: PreparedStatement,
    insert_termination: PreparedStatement,
    answer_termination: PreparedStatement,
    set_applied: PreparedStatement,
    select_applied: PreparedStatement,
    select_contract: PreparedStatement,
    select_by_client: PreparedStatement,
    select_by_freelancer: PreparedStatement,
    select_milestones: PreparedStatement,
    select_terminations: PreparedStatement,
}

impl ContractsReadModel {
    /// Prepare the statements on `keyspace` (its tables exist: [`ensure_schema`]).
    pub async fn new(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let ks = keyspace;
        let prepare = |cql: String| {
            let session = session.clone();
            async move { session.prepare(cql).await }
        };
        const CONTRACT_COLUMNS: &str = "contract_id, proposal_id, job_id, client_id, freelancer_id, status, \
            initiated_at, completed_at, terminated_at, termination_request_id, version";
        const MILESTONE_COLUMNS: &str = "milestone_id, position, title, amount_minor, currency, due_on, status, \
            payment_request_id, updated_at, version";
        const TERMINATION_COLUMNS: &str = "contract_id, termination_request_id, requested_by, reason, status, \
            requested_at, answered_by, answered_at, version";
        let statements = Statements {
            insert_contract: prepare(format!(
                "INSERT INTO {ks}.contracts_by_id (contract_id, proposal_id, job_id, client_id, freelancer_id,
                 status, initiated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            insert_by_client: prepare(format!(
                "INSERT INTO {ks}.contracts_by_client (client_id, initiated_at, contract_id) VALUES (?, ?, ?)"
            ))
            .await?,
            insert_by_freelancer: prepare(format!(
                "INSERT INTO {ks}.contracts_by_freelancer (freelancer_id, initiated_at, contract_id) VALUES (?, ?, ?)"
            ))
            .await?,
            insert_milestone: prepare(format!(
                "INSERT INTO {ks}.contract_milestones (contract_id, milestone_id, position, title, amount_minor,
                 currency, due_on, status, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            move_milestone: prepare(format!(
                "UPDATE {ks}.contract_milestones SET status = ?, updated_at = ?, version = ?
                 WHERE contract_id = ? AND milestone_id = ?"
            ))
            .await?,
            pay_milestone: prepare(format!(
                "UPDATE {ks}.contract_milestones SET status = ?, payment_request_id = ?, updated_at = ?, version = ?
                 WHERE contract_id = ? AND milestone_id = ?"
            ))
            .await?,
            set_contract_version: prepare(format!(
                "UPDATE {ks}.contracts_by_id SET version = ? WHERE contract_id = ?"
            ))
            .await?,
            complete_contract: prepare(format!(
                "UPDATE {ks}.contracts_by_id SET status = ?, completed_at = ?, version = ? WHERE contract_id = ?"
            ))
            .await?,
            terminate_contract: prepare(format!(
                "UPDATE {ks}.contracts_by_id SET status = ?, terminated_at = ?, termination_request_id = ?,
                 version = ? WHERE contract_id = ?"
            ))
            .await?,
            insert_termination: prepare(format!(
                "INSERT INTO {ks}.contract_terminations (contract_id, termination_request_id, requested_by, reason,
                 status, requested_at, version) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            answer_termination: prepare(format!(
                "UPDATE {ks}.contract_terminations SET status = ?, answered_by = ?, answered_at = ?, version = ?
                 WHERE contract_id = ? AND termination_request_id = ?"
            ))
            .await?,
            set_applied: prepare(format!(
                "INSERT INTO {ks}.contracts_applied (stream_id, stream_type, version) VALUES (?, ?, ?)"
            ))
            .await?,
            select_applied: prepare(format!(
                "SELECT version FROM {ks}.contracts_applied WHERE stream_id = ?"
            ))
            .await?,
            select_contract: prepare(format!(
                "SELECT {CONTRACT_COLUMNS} FROM {ks}.contracts_by_id WHERE contract_id = ?"
            ))
            .await?,
            select_by_client: prepare(format!(
                "SELECT contract_id FROM {ks}.contracts_by_client WHERE client_id = ?"
            ))
            .await?,
            select_by_freelancer: prepare(format!(
                "SELECT contract_id FROM {ks}.contracts_by_freelancer WHERE freelancer_id = ?"
            ))
            .await?,
            select_milestones: prepare(format!(
                "SELECT {MILESTONE_COLUMNS} FROM {ks}.contract_milestones WHERE contract_id = ?"
            ))
            .await?,
            select_terminations: prepare(format!(
                "SELECT {TERMINATION_COLUMNS} FROM {ks}.contract_terminations WHERE contract_id = ?"
            ))
            .await?,
        };
        Ok(Self {
            session,
            statements: Arc::new(statements),
        })
    }

    /// The last version of `stream_id` (a contract or a termination request) this read model
    /// has applied, if any (read-your-writes, DESIGN §6).
    pub async fn applied(&self, stream_id: Uuid) -> Result<Option<i64>, StoreError> {
        Ok(self
            .session
            .execute_unpaged(&self.statements.select_applied, (stream_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?
            .and_then(|(v,)| v))
    }

    /// `ContractInitiated`: the contract, its two listing rows and its open milestones.
    pub async fn initiate(&self, at: Applying, contract: &NewContract) -> Result<bool, StoreError> {
        let c = contract;
        let mut writes: Vec<Write> = vec![
            (
                self.statements.insert_contract.clone(),
                Box::new((
                    c.contract_id,
                    c.proposal_id,
                    c.job_id,
                    c.client_id,
                    c.freelancer_id,
                    ContractStatusView::Active.as_str(),
                    c.initiated_at,
                    at.version,
                )),
            ),
            (
                self.statements.insert_by_client.clone(),
                Box::new((c.client_id, c.initiated_at, c.contract_id)),
            ),
            (
                self.statements.insert_by_freelancer.clone(),
                Box::new((c.freelancer_id, c.initiated_at, c.contract_id)),
            ),
        ];
        for (position, m) in c.milestones.iter().enumerate() {
            let position = i32::try_from(position)
                .map_err(|_| StoreError::Codec(format!("milestone position {position}")))?;
            writes.push((
                self.statements.insert_milestone.clone(),
                Box::new((
                    c.contract_id,
                    m.milestone_id,
                    position,
                    m.title.clone(),
                    m.amount.minor,
                    m.amount.currency.to_string(),
                    m.due_on,
                    MilestoneStatusView::Open.as_str(),
                    c.initiated_at,
                    at.version,
                )),
            ));
        }
        self.write(CONTRACT_STREAM, at, writes).await
    }

    /// A milestone changed status (`payment_request_id` when it was paid).
    pub async fn move_milestone(
        &self,
        at: Applying,
        contract_id: Uuid,
        milestone_id: Uuid,
        status: MilestoneStatus,
        changed_at: DateTime<Utc>,
        payment_request_id: Option<Uuid>,
    ) -> Result<bool, StoreError> {
        let status = MilestoneStatusView::from(status).as_str();
        let milestone: Write = match payment_request_id {
            Some(request) => (
                self.statements.pay_milestone.clone(),
                Box::new((status, request, changed_at, at.version, contract_id, milestone_id)),
            ),
            None => (
                self.statements.move_milestone.clone(),
                Box::new((status, changed_at, at.version, contract_id, milestone_id)),
            ),
        };
        let contract: Write = (
            self.statements.set_contract_version.clone(),
            Box::new((at.version, contract_id)),
        );
        self.write(CONTRACT_STREAM, at, vec![milestone, contract]).await
    }

    /// Every milestone was paid: the contract is completed.
    pub async fn complete(
        &self,
        at: Applying,
        contract_id: Uuid,
        completed_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let status = ContractStatusView::Completed.as_str();
        let write: Write = (
            self.statements.complete_contract.clone(),
            Box::new((status, completed_at, at.version, contract_id)),
        );
        self.write(CONTRACT_STREAM, at, vec![write]).await
    }

    /// A termination request was accepted: the contract is terminated.
    pub async fn terminate(
        &self,
        at: Applying,
        contract_id: Uuid,
        termination_request_id: Uuid,
        terminated_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let status = ContractStatusView::Terminated.as_str();
        let write: Write = (
            self.statements.terminate_contract.clone(),
            Box::new((
                status,
                terminated_at,
                termination_request_id,
                at.version,
                contract_id,
            )),
        );
        self.write(CONTRACT_STREAM, at, vec![write]).await
    }

    /// A party asked to terminate a contract.
    pub async fn request_termination(
        &self,
        at: Applying,
        request: &NewTermination,
    ) -> Result<bool, StoreError> {
        let r = request;
        let write: Write = (
            self.statements.insert_termination.clone(),
            Box::new((
                r.contract_id,
                r.termination_request_id,
                r.requested_by,
                r.reason.clone(),
                TerminationStatusView::Pending.as_str(),
                r.requested_at,
                at.version,
            )),
        );
        self.write(TERMINATION_STREAM, at, vec![write]).await
    }

    /// A termination request was accepted or rejected by `answered_by`.
    pub async fn answer_termination(
        &self,
        at: Applying,
        contract_id: Uuid,
        termination_request_id: Uuid,
        status: TerminationStatus,
        answered_by: Uuid,
        answered_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let status = TerminationStatusView::from(status).as_str();
        let write: Write = (
            self.statements.answer_termination.clone(),
            Box::new((
                status,
                answered_by,
                answered_at,
                at.version,
                contract_id,
                termination_request_id,
            )),
        );
        self.write(TERMINATION_STREAM, at, vec![write]).await
    }

    /// Apply `writes` and the stream's applied version in one logged batch whose write timestamp
    /// is the event's version, unless that version (or a newer one) was applied already.
    /// Returns whether it was written.
    async fn write(&self, stream_type: &str, at: Applying, writes: Vec<Write>) -> Result<bool, StoreError> {
        // The emulator ignores write timestamps: this guard keeps older versions out there;
        // on ScyllaDB the batch timestamp alone would (newest version wins per column).
        if self.applied(at.stream_id).await?.is_some_and(|v| v >= at.version) {
            return Ok(false);
        }
        let mut batch = Batch::new(BatchType::Logged);
        let mut values = Vec::with_capacity(writes.len() + 1);
        for (statement, value) in writes {
            batch.append_statement(statement);
            values.push(value);
        }
        batch.append_statement(self.statements.set_applied.clone());
        values.push(Box::new((at.stream_id, stream_type.to_owned(), at.version)));
        batch.set_timestamp(Some(at.version));
        self.session.batch(&batch, values).await?;
        Ok(true)
    }

    /// The contract `contract_id`, if projected.
    pub async fn contract(&self, contract_id: Uuid) -> Result<Option<ContractView>, StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.statements.select_contract, (contract_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<ContractRow>()?;
        row.map(ContractRow::into_view).transpose().map(Option::flatten)
    }

    /// A page of `party`'s contracts, oldest first: at most `limit` (1 to [`MAX_LIMIT`]) from
    /// `page_token` (from a previous page of the same list) on.
    pub async fn contracts_of(
        &self,
        party: Party,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<ContractPage, ListError> {
        let (statement, party_id) = match party {
            Party::Client(id) => (&self.statements.select_by_client, id),
            Party::Freelancer(id) => (&self.statements.select_by_freelancer, id),
        };
        let (rows, next_page_token) = self
            .page::<(Uuid,)>(statement, party_id, limit, page_token)
            .await?;
        let views = futures::future::try_join_all(rows.into_iter().map(|(id,)| self.contract(id))).await?;
        Ok(ContractPage {
            items: views.into_iter().flatten().collect(),
            next_page_token,
        })
    }

    /// Every milestone of `contract_id`, in the contract's order.
    pub async fn milestones(&self, contract_id: Uuid) -> Result<Vec<MilestoneView>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_milestones, (contract_id,))
            .await?
            .into_rows_result()?;
        let mut views = Vec::new();
        for row in result.rows::<MilestoneRow>().map_err(cql)? {
            if let Some(view) = row.map_err(cql)?.into_view()? {
                views.push(view);
            }
        }
        views.sort_by_key(|m| m.position);
        Ok(views)
    }

    /// A page of the termination requests of `contract_id`, oldest first (their ids are v7).
    pub async fn terminations(
        &self,
        contract_id: Uuid,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<TerminationPage, ListError> {
        let (rows, next_page_token) = self
            .page::<TerminationRow>(
                &self.statements.select_terminations,
                contract_id,
                limit,
                page_token,
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(view) = row.into_view()? {
                items.push(view);
            }
        }
        Ok(TerminationPage {
            items,
            next_page_token,
        })
    }

    /// One page of `statement` over the partition `key`, and the token of the next page.
    async fn page<R>(
        &self,
        statement: &PreparedStatement,
        key: Uuid,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<R>, Option<String>), ListError>
    where
        R: for<'frame, 'metadata> scylla::deserialize::row::DeserializeRow<'frame, 'metadata>,
    {
        let state = match page_token {
            None => PagingState::start(),
            Some(token) => {
                PagingState::new_from_raw_bytes(page_token::decode(token).ok_or(ListError::BadPageToken)?)
            }
        };
        let mut statement = statement.clone();
        let limit = limit.clamp(1, MAX_LIMIT);
        statement.set_page_size(i32::try_from(limit).unwrap_or(i32::MAX));
        let (result, next) = self
            .session
            .execute_single_page(&statement, (key,), state)
            .await
            .map_err(|e| match e {
                // A forged or damaged token: the server cannot read it.
                ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                    DbError::ProtocolError | DbError::Invalid,
                    _,
                )) if page_token.is_some() => ListError::BadPageToken,
                other => ListError::Store(other.into()),
            })?;
        let rows = result
            .into_rows_result()
            .map_err(StoreError::from)?
            .rows::<R>()
            .map_err(cql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(cql)?;
        let next_page_token = match next {
            PagingStateResponse::HasMorePages { state } => {
                state.as_bytes_slice().map(|b| page_token::encode(b))
            }
            PagingStateResponse::NoMorePages => None,
        };
        Ok((rows, next_page_token))
    }

    /// Check the cluster answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await?;
        Ok(())
    }
}

/// A driver error without a `From` in [`StoreError`].
fn cql(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Cassandra(Box::new(e))
}
