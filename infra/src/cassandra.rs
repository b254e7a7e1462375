//! Cassandra / ScyllaDB read models (DESIGN §2): jobs by id.
//!
//! CQL here stays inside what both ScyllaDB and the local emulator accept: no lightweight
//! transactions, TTLs, counters or `COUNT(*)`. Writes are idempotent without LWT: a row
//! carries the stream version it reflects, and a projector (the only writer of a stream,
//! since a stream's events arrive in order on one partition) skips events at or below it.

use chrono::{DateTime, Utc};
use domain::{Currency, Money};
use scylla::{
    DeserializeRow,
    client::{session::Session, session_builder::SessionBuilder},
    statement::prepared::PreparedStatement,
};
use serde::{Deserialize, Serialize};
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

use crate::{config::CassandraConfig, store::StoreError};

/// Connect to the cluster (schema-agreement waiting as configured).
pub async fn connect(config: &CassandraConfig) -> Result<Arc<Session>, StoreError> {
    let session = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_secs(5))
        .auto_await_schema_agreement(config.schema_agreement)
        .build()
        .await?;
    Ok(Arc::new(session))
}

/// Create the keyspace and the tables if they do not exist.
pub async fn ensure_schema(session: &Session, config: &CassandraConfig) -> Result<(), StoreError> {
    let ks = &config.keyspace;
    let statements = [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            config.replication
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.jobs_by_id (
                job_id uuid PRIMARY KEY, client_id uuid, title text, description text,
                budget_minor bigint, currency text, skills list<text>, status text,
                posted_at timestamp, version bigint)"
        ),
    ];
    for statement in statements {
        session.query_unpaged(statement, ()).await?;
    }
    Ok(())
}

/// A job as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job.
    pub job_id: Uuid,
    /// Its owner.
    pub client_id: Uuid,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Budget.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub budget: Money,
    /// Required skills.
    pub skills: Vec<String>,
    /// `open` or `closed`.
    pub status: String,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// Stream version this row reflects.
    pub version: i64,
}

#[derive(DeserializeRow)]
struct JobRow {
    job_id: Uuid,
    client_id: Uuid,
    title: String,
    description: String,
    budget_minor: i64,
    currency: String,
    skills: Option<Vec<String>>,
    status: String,
    posted_at: DateTime<Utc>,
    version: i64,
}

/// The `jobs_by_id` table with its prepared statements.
#[derive(Debug, Clone)]
pub struct JobStore {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
    select_version: PreparedStatement,
}

impl JobStore {
    /// Prepare the statements on `keyspace`.
    pub async fn new(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let insert = session
            .prepare(format!(
                "INSERT INTO {keyspace}.jobs_by_id (job_id, client_id, title, description, budget_minor, currency,
                 skills, status, posted_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?;
        let select = session
            .prepare(format!(
                "SELECT job_id, client_id, title, description, budget_minor, currency, skills, status, posted_at,
                 version FROM {keyspace}.jobs_by_id WHERE job_id = ?"
            ))
            .await?;
        let select_version = session
            .prepare(format!(
                "SELECT version FROM {keyspace}.jobs_by_id WHERE job_id = ?"
            ))
            .await?;
        Ok(Self {
            session,
            insert,
            select,
            select_version,
        })
    }

    /// Write `job` unless the stored row is at the same or a newer version.
    /// Returns whether it was written.
    pub async fn upsert(&self, job: &JobView) -> Result<bool, StoreError> {
        let current = self
            .session
            .execute_unpaged(&self.select_version, (job.job_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?
            .and_then(|(v,)| v);
        if current.is_some_and(|v| v >= job.version) {
            return Ok(false);
        }
        let values = (
            job.job_id,
            job.client_id,
            &job.title,
            &job.description,
            job.budget.minor,
            job.budget.currency.to_string(),
            &job.skills,
            &job.status,
            job.posted_at,
            job.version,
        );
        self.session.execute_unpaged(&self.insert, values).await?;
        Ok(true)
    }

    /// The job `job_id`, if projected.
    pub async fn get(&self, job_id: Uuid) -> Result<Option<JobView>, StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.select, (job_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<JobRow>()?;
        row.map(|r| {
            let currency: Currency = r
                .currency
                .parse()
                .map_err(|_| StoreError::Codec(format!("currency {}", r.currency)))?;
            Ok(JobView {
                job_id: r.job_id,
                client_id: r.client_id,
                title: r.title,
                description: r.description,
                budget: Money::new(r.budget_minor, currency),
                skills: r.skills.unwrap_or_default(),
                status: r.status,
                posted_at: r.posted_at,
                version: r.version,
            })
        })
        .transpose()
    }

    /// Check the cluster answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await?;
        Ok(())
    }
}
