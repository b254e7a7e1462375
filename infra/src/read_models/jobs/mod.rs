//! Jobs read model (DESIGN §2, §6): Cassandra tables of jobs and proposals, the keyword index,
//! and the key of a job in the Redis cache. Written by `projectors/src/jobs.rs`, read by
//! `query-api/src/routes/jobs.rs`.
//!
//! Tables (in the deployment's keyspace):
//! - `jobs_by_id`, `jobs_by_client` (newest first): the job view, one row per job;
//! - `job_search`: `word → (rank, job id)`, newest first: the lower-cased words of the title,
//!   description and skills of every **open** job ([`search`]);
//! - `proposals_by_id`, `proposals_by_job`, `proposals_by_freelancer` (newest first);
//! - `jobs_applied`: the last version applied per `job` and `proposal` stream (read-your-writes).
//!
//! Lists are ordered by `rank = i64::MAX - creation ms` ascending, then the id's text: newest
//! first in every store (the local emulator ignores `CLUSTERING ORDER ... DESC`), and paged by a
//! [`Cursor`] on that key.
//!
//! Writes are idempotent and order-safe (DESIGN §6). Each event writes only the columns it sets,
//! with the event's stream version as the write timestamp (the protocol's default timestamp,
//! the same as `USING TIMESTAMP <version>`, which the emulator cannot bind), so on ScyllaDB the
//! newest version wins per column even when two consumers briefly write one stream after a
//! rebalance; the rows of one event go in one logged batch with its applied version. The local
//! emulator ignores write timestamps (last write wins), so the projector also skips an event at
//! or below the version the row holds: a version-guarded read-then-write, enough for one writer
//! per stream. Keyword rows are written before the batch that records the version (a retry redoes
//! them) and removed at the same timestamp when a word leaves the job or the job closes; a search
//! checks each hit against the job's row, so an entry a race left behind is never answered.
//! Columns are never set to null (the emulator ignores null writes): a field that only means
//! something in one status (`closed_at`, `contract_id`, ...) is served only in that status.

mod search;
mod views;

pub use search::{BadQuery, MAX_QUERY_WORDS, MAX_WORD_CHARS, job_words, query_words, words};
pub use views::{
    Applied, BadPageToken, Cursor, JobChange, JobContent, JobPage, JobStatus, JobView, MilestoneView,
    PageRequest, ProposalChange, ProposalPage, ProposalStatus, ProposalTerms, ProposalView,
};

use chrono::{DateTime, Utc};
use domain::{Currency, Money};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use scylla::{
    DeserializeRow,
    client::session::Session,
    deserialize::row::DeserializeRow as DeserializeRowTrait,
    statement::{
        batch::{Batch, BatchType},
        prepared::PreparedStatement,
        unprepared::Statement,
    },
    value::{CqlTimestamp, CqlValue},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};
use uuid::Uuid;

use crate::store::StoreError;
use views::rank;

/// Keyword rows written at once for one event.
const INDEX_CONCURRENCY: usize = 32;

/// The write timestamp of an erased person's redacted fields: above every stream version (the
/// timestamp of every other write), so nothing written later puts clear values back.
pub const ERASURE_TIMESTAMP: i64 = 1 << 40;

/// The key of job `job_id` in the Redis cache (see [`crate::redis::Cache::get_versioned`]).
pub fn cache_key(job_id: Uuid) -> String {
    format!("job:{job_id}")
}

const JOB_COLUMNS: &str = "job_id, client_id, title, description, budget_minor, currency, skills, status, \
     posted_at, updated_at, closed_at, accepted_proposal_id, version";
const PROPOSAL_COLUMNS: &str = "proposal_id, job_id, client_id, freelancer_id, cover_letter, milestones, \
     attachments, status, submitted_at, updated_at, decided_at, contract_id, version";

/// Create the jobs tables in `keyspace` (which must exist: see
/// [`crate::cassandra::ensure_schema`]).
pub async fn ensure_schema(session: &Session, keyspace: &str) -> Result<(), StoreError> {
    const JOB: &str = "job_id uuid, client_id uuid, title text, description text, budget_minor bigint,
        currency text, skills text, status text, posted_at timestamp, updated_at timestamp,
        closed_at timestamp, accepted_proposal_id uuid, version bigint";
    const PROPOSAL: &str = "proposal_id uuid, job_id uuid, client_id uuid, freelancer_id uuid,
        cover_letter text, milestones text, attachments text, status text, submitted_at timestamp,
        updated_at timestamp, decided_at timestamp, contract_id uuid, version bigint";
    let statements = [
        format!("CREATE TABLE IF NOT EXISTS {keyspace}.jobs_by_id ({JOB}, PRIMARY KEY (job_id))"),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.jobs_by_client ({JOB}, rank bigint, sort_id text,
             PRIMARY KEY (client_id, rank, sort_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.job_search (word text, rank bigint, job_id text,
             PRIMARY KEY (word, rank, job_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.proposals_by_id ({PROPOSAL}, PRIMARY KEY (proposal_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.proposals_by_job ({PROPOSAL}, rank bigint, sort_id text,
             PRIMARY KEY (job_id, rank, sort_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.proposals_by_freelancer ({PROPOSAL}, rank bigint,
             sort_id text, PRIMARY KEY (freelancer_id, rank, sort_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.jobs_applied (stream_id uuid PRIMARY KEY, version bigint)"
        ),
    ];
    for statement in statements {
        session.query_unpaged(statement, ()).await?;
    }
    Ok(())
}

/// Map any driver error to a [`StoreError`].
fn cql_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Cassandra(Box::new(e))
}

type Value = Option<CqlValue>;

fn uuid(id: Uuid) -> Value {
    Some(CqlValue::Uuid(id))
}

fn text(s: impl Into<String>) -> Value {
    Some(CqlValue::Text(s.into()))
}

fn bigint(n: i64) -> Value {
    Some(CqlValue::BigInt(n))
}

fn timestamp(at: DateTime<Utc>) -> Value {
    Some(CqlValue::Timestamp(CqlTimestamp(at.timestamp_millis())))
}

fn json<T: serde::Serialize>(value: &T) -> Result<Value, StoreError> {
    Ok(text(serde_json::to_string(value)?))
}

/// One statement of an event's write.
struct Write {
    cql: String,
    values: Vec<Value>,
}

impl Write {
    /// Set `columns` of a row (an upsert: the other columns keep their values).
    fn insert(keyspace: &str, table: &str, columns: Vec<(&str, Value)>) -> Self {
        let (names, values): (Vec<&str>, Vec<Value>) = columns.into_iter().unzip();
        let markers = vec!["?"; names.len()].join(", ");
        Self {
            cql: format!(
                "INSERT INTO {keyspace}.{table} ({}) VALUES ({markers})",
                names.join(", ")
            ),
            values,
        }
    }

    /// Delete the row with primary key `key`.
    fn delete(keyspace: &str, table: &str, key: Vec<(&str, Value)>) -> Self {
        let (names, values): (Vec<&str>, Vec<Value>) = key.into_iter().unzip();
        let condition = names
            .iter()
            .map(|n| format!("{n} = ?"))
            .collect::<Vec<_>>()
            .join(" AND ");
        Self {
            cql: format!("DELETE FROM {keyspace}.{table} WHERE {condition}"),
            values,
        }
    }
}

#[derive(DeserializeRow)]
struct JobRow {
    job_id: Uuid,
    client_id: Option<Uuid>,
    title: Option<String>,
    description: Option<String>,
    budget_minor: Option<i64>,
    currency: Option<String>,
    skills: Option<String>,
    status: Option<String>,
    posted_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    accepted_proposal_id: Option<Uuid>,
    version: Option<i64>,
}

impl JobRow {
    fn view(self) -> Result<JobView, StoreError> {
        let id = self.job_id;
        let incomplete = || StoreError::Codec(format!("job {id} is incomplete"));
        let currency = self.currency.as_deref().ok_or_else(incomplete)?;
        let currency: Currency = currency
            .parse()
            .map_err(|_| StoreError::Codec(format!("currency {currency}")))?;
        let status = self
            .status
            .as_deref()
            .and_then(JobStatus::parse)
            .ok_or_else(incomplete)?;
        let closed = status == JobStatus::Closed;
        Ok(JobView {
            job_id: self.job_id,
            client_id: self.client_id.ok_or_else(incomplete)?,
            title: self.title.ok_or_else(incomplete)?,
            description: self.description.ok_or_else(incomplete)?,
            budget: Money::new(self.budget_minor.ok_or_else(incomplete)?, currency),
            skills: serde_json::from_str(self.skills.as_deref().ok_or_else(incomplete)?)?,
            status,
            posted_at: self.posted_at.ok_or_else(incomplete)?,
            updated_at: self.updated_at,
            closed_at: self.closed_at.filter(|_| closed),
            accepted_proposal_id: self.accepted_proposal_id.filter(|id| closed && !id.is_nil()),
            version: self.version.ok_or_else(incomplete)?,
        })
    }
}

#[derive(DeserializeRow)]
struct ProposalRow {
    proposal_id: Uuid,
    job_id: Option<Uuid>,
    client_id: Option<Uuid>,
    freelancer_id: Option<Uuid>,
    cover_letter: Option<String>,
    milestones: Option<String>,
    attachments: Option<String>,
    status: Option<String>,
    submitted_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    decided_at: Option<DateTime<Utc>>,
    contract_id: Option<Uuid>,
    version: Option<i64>,
}

impl ProposalRow {
    fn view(self) -> Result<ProposalView, StoreError> {
        let id = self.proposal_id;
        let incomplete = || StoreError::Codec(format!("proposal {id} is incomplete"));
        let status = self
            .status
            .as_deref()
            .and_then(ProposalStatus::parse)
            .ok_or_else(incomplete)?;
        Ok(ProposalView {
            proposal_id: self.proposal_id,
            job_id: self.job_id.ok_or_else(incomplete)?,
            client_id: self.client_id.ok_or_else(incomplete)?,
            freelancer_id: self.freelancer_id.ok_or_else(incomplete)?,
            cover_letter: self.cover_letter.ok_or_else(incomplete)?,
            milestones: serde_json::from_str(self.milestones.as_deref().ok_or_else(incomplete)?)?,
            attachments: serde_json::from_str(self.attachments.as_deref().ok_or_else(incomplete)?)?,
            status,
            submitted_at: self.submitted_at.ok_or_else(incomplete)?,
            updated_at: self.updated_at,
            decided_at: self.decided_at.filter(|_| status != ProposalStatus::Submitted),
            contract_id: self.contract_id.filter(|_| status == ProposalStatus::Accepted),
            version: self.version.ok_or_else(incomplete)?,
        })
    }
}

/// The jobs read model: its tables and prepared statements.
#[derive(Debug, Clone)]
pub struct JobStore {
    session: Arc<Session>,
    keyspace: String,
    /// Prepared statements by CQL text (a fixed set: one per table and event kind).
    prepared: Arc<Mutex<HashMap<String, PreparedStatement>>>,
}

impl JobStore {
    /// The read model in `keyspace` (its tables must exist: [`ensure_schema`]).
    pub async fn new(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        Ok(Self {
            session,
            keyspace: keyspace.to_owned(),
            prepared: Arc::default(),
        })
    }

    /// Check the cluster answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await?;
        Ok(())
    }

    async fn statement(&self, cql: &str) -> Result<PreparedStatement, StoreError> {
        let cached = self
            .prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cql)
            .cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = self.session.prepare(cql).await?;
        self.prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Every row of `cql` (its values are literals: one round trip, nothing to prepare), fetched
    /// page by page as the stream is read.
    async fn rows<R>(
        &self,
        cql: String,
    ) -> Result<impl Stream<Item = Result<R, StoreError>> + Send + 'static, StoreError>
    where
        R: for<'f, 'm> DeserializeRowTrait<'f, 'm> + Send + 'static,
    {
        let mut statement = Statement::new(cql);
        statement.set_page_size(100);
        let pager = self.session.query_iter(statement, ()).await.map_err(cql_error)?;
        Ok(pager.rows_stream::<R>().map_err(cql_error)?.map_err(cql_error))
    }

    /// One event's rows, atomically (a logged batch), at write timestamp `version`.
    async fn write_batch(&self, version: i64, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut batch = Batch::new(BatchType::Logged);
        let mut values = Vec::with_capacity(writes.len());
        for write in writes {
            batch.append_statement(self.statement(&write.cql).await?);
            values.push(write.values);
        }
        batch.set_timestamp(Some(version));
        self.session.batch(&batch, values).await?;
        Ok(())
    }

    /// Independent rows (keyword entries), each at write timestamp `version`.
    async fn write_each(&self, version: i64, writes: Vec<Write>) -> Result<(), StoreError> {
        stream::iter(writes)
            .map(|write| async move {
                let mut statement = self.statement(&write.cql).await?;
                statement.set_timestamp(Some(version));
                self.session.execute_unpaged(&statement, write.values).await?;
                Ok::<_, StoreError>(())
            })
            .buffer_unordered(INDEX_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The last version of stream `stream_id` (a `job` or a `proposal`) this read model applied.
    pub async fn applied(&self, stream_id: Uuid) -> Result<Option<i64>, StoreError> {
        let cql = format!(
            "SELECT version FROM {}.jobs_applied WHERE stream_id = ?",
            self.keyspace
        );
        let statement = self.statement(&cql).await?;
        let row = self
            .session
            .execute_unpaged(&statement, (stream_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?;
        Ok(row.and_then(|(v,)| v))
    }

    // -----------------------------------------------------------------------------------------
    // Jobs
    // -----------------------------------------------------------------------------------------

    async fn job_row(&self, job_id: Uuid) -> Result<Option<JobRow>, StoreError> {
        let cql = format!(
            "SELECT {JOB_COLUMNS} FROM {}.jobs_by_id WHERE job_id = ?",
            self.keyspace
        );
        let statement = self.statement(&cql).await?;
        Ok(self
            .session
            .execute_unpaged(&statement, (job_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<JobRow>()?)
    }

    /// The job `job_id`, if projected.
    pub async fn get(&self, job_id: Uuid) -> Result<Option<JobView>, StoreError> {
        self.job_row(job_id).await?.map(JobRow::view).transpose()
    }

    /// Apply version `version` of job stream `job_id`. Nothing is written when the job's row
    /// already reflects that version or a newer one.
    pub async fn apply_job(
        &self,
        job_id: Uuid,
        version: i64,
        change: JobChange,
    ) -> Result<Applied, StoreError> {
        let current = self.job_row(job_id).await?;
        if current
            .as_ref()
            .and_then(|r| r.version)
            .is_some_and(|v| v >= version)
        {
            return Ok(Applied::AlreadyApplied);
        }
        let ks = self.keyspace.as_str();
        // Immutable facts of the job, from its posting (projected before: same stream, in order).
        let (client_id, posted_at) = match (&change, &current) {
            (
                JobChange::Posted {
                    client_id, posted_at, ..
                },
                _,
            ) => (*client_id, *posted_at),
            (
                _,
                Some(JobRow {
                    client_id: Some(c),
                    posted_at: Some(p),
                    ..
                }),
            ) => (*c, *p),
            _ => {
                return Err(StoreError::Codec(format!(
                    "job {job_id} not projected before version {version}"
                )));
            }
        };
        let rank = rank(posted_at);
        let old_words = current
            .as_ref()
            .filter(|r| r.status.as_deref() != Some(JobStatus::Closed.as_str()))
            .map(stored_words)
            .transpose()?
            .unwrap_or_default();
        let index = |word: &str| {
            vec![
                ("word", text(word)),
                ("rank", bigint(rank)),
                ("job_id", text(job_id.to_string())),
            ]
        };
        let mut index_writes = Vec::new();
        // The job's ids ride along with every event (they never change).
        let mut columns: Vec<(&str, Value)> = vec![
            ("job_id", uuid(job_id)),
            ("client_id", uuid(client_id)),
            ("version", bigint(version)),
        ];
        match change {
            JobChange::Posted { content, .. } => {
                for word in job_words(&content.title, &content.description, &content.skills) {
                    index_writes.push(Write::insert(ks, "job_search", index(&word)));
                }
                columns.extend(content_columns(&content)?);
                columns.extend([
                    ("status", text(JobStatus::Open.as_str())),
                    ("posted_at", timestamp(posted_at)),
                ]);
            }
            JobChange::Updated { content, updated_at } => {
                let new_words = job_words(&content.title, &content.description, &content.skills);
                if current.as_ref().and_then(|r| r.status.as_deref()) == Some(JobStatus::Open.as_str()) {
                    for word in old_words.difference(&new_words) {
                        index_writes.push(Write::delete(ks, "job_search", index(word)));
                    }
                    for word in &new_words {
                        index_writes.push(Write::insert(ks, "job_search", index(word)));
                    }
                }
                columns.extend(content_columns(&content)?);
                columns.push(("updated_at", timestamp(updated_at)));
            }
            JobChange::ProposalReceived => {}
            JobChange::Closed {
                accepted_proposal_id,
                closed_at,
            } => {
                for word in &old_words {
                    index_writes.push(Write::delete(ks, "job_search", index(word)));
                }
                columns.extend([
                    ("status", text(JobStatus::Closed.as_str())),
                    ("closed_at", timestamp(closed_at)),
                    // Never null (the emulator ignores null writes): nil means "none".
                    (
                        "accepted_proposal_id",
                        uuid(accepted_proposal_id.unwrap_or(Uuid::nil())),
                    ),
                ]);
            }
            JobChange::Reopened => {
                if let Some(row) = &current {
                    for word in stored_words(row)? {
                        index_writes.push(Write::insert(ks, "job_search", index(&word)));
                    }
                }
                columns.push(("status", text(JobStatus::Open.as_str())));
            }
        }
        // Keyword rows first: the batch below records the version, after which a redelivery of
        // this event is skipped.
        self.write_each(version, index_writes).await?;
        let mut by_client = columns.clone();
        by_client.extend([("rank", bigint(rank)), ("sort_id", text(job_id.to_string()))]);
        self.write_batch(
            version,
            vec![
                Write::insert(ks, "jobs_by_id", columns),
                Write::insert(ks, "jobs_by_client", by_client),
                applied_write(ks, job_id, version),
            ],
        )
        .await?;
        Ok(Applied::Written)
    }

    /// The jobs of `client_id`, newest first.
    pub async fn jobs_of_client(&self, client_id: Uuid, page: &PageRequest) -> Result<JobPage, StoreError> {
        let (items, next) = self
            .page::<JobRow, _>(
                "jobs_by_client",
                JOB_COLUMNS,
                ("client_id", client_id),
                page,
                |row| {
                    let view = row.view()?;
                    Ok((views::Cursor::new(rank(view.posted_at), view.job_id), view))
                },
            )
            .await?;
        Ok(JobPage {
            items,
            next_page_token: next,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Proposals
    // -----------------------------------------------------------------------------------------

    async fn proposal_row(&self, proposal_id: Uuid) -> Result<Option<ProposalRow>, StoreError> {
        let cql = format!(
            "SELECT {PROPOSAL_COLUMNS} FROM {}.proposals_by_id WHERE proposal_id = ?",
            self.keyspace
        );
        let statement = self.statement(&cql).await?;
        Ok(self
            .session
            .execute_unpaged(&statement, (proposal_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<ProposalRow>()?)
    }

    /// The proposal `proposal_id`, if projected.
    pub async fn proposal(&self, proposal_id: Uuid) -> Result<Option<ProposalView>, StoreError> {
        self.proposal_row(proposal_id)
            .await?
            .map(ProposalRow::view)
            .transpose()
    }

    /// Apply version `version` of proposal stream `proposal_id` (nothing is written when its row
    /// already reflects that version or a newer one).
    pub async fn apply_proposal(
        &self,
        proposal_id: Uuid,
        version: i64,
        change: ProposalChange,
    ) -> Result<Applied, StoreError> {
        let current = self.proposal_row(proposal_id).await?;
        if current
            .as_ref()
            .and_then(|r| r.version)
            .is_some_and(|v| v >= version)
        {
            return Ok(Applied::AlreadyApplied);
        }
        let ks = self.keyspace.as_str();
        let (job_id, freelancer_id, submitted_at) = match (&change, &current) {
            (
                ProposalChange::Submitted {
                    job_id,
                    freelancer_id,
                    submitted_at,
                    ..
                },
                _,
            ) => (*job_id, *freelancer_id, *submitted_at),
            (
                _,
                Some(ProposalRow {
                    job_id: Some(j),
                    freelancer_id: Some(f),
                    submitted_at: Some(s),
                    ..
                }),
            ) => (*j, *f, *s),
            _ => {
                return Err(StoreError::Codec(format!(
                    "proposal {proposal_id} not projected before version {version}"
                )));
            }
        };
        // The proposal's ids ride along with every event (they never change).
        let mut columns: Vec<(&str, Value)> = vec![
            ("proposal_id", uuid(proposal_id)),
            ("job_id", uuid(job_id)),
            ("freelancer_id", uuid(freelancer_id)),
            ("version", bigint(version)),
        ];
        match change {
            ProposalChange::Submitted {
                client_id,
                terms,
                submitted_at,
                ..
            } => {
                columns.extend(terms_columns(&terms)?);
                columns.extend([
                    ("client_id", uuid(client_id)),
                    ("status", text(ProposalStatus::Submitted.as_str())),
                    ("submitted_at", timestamp(submitted_at)),
                ]);
            }
            ProposalChange::Updated { terms, updated_at } => {
                columns.extend(terms_columns(&terms)?);
                columns.push(("updated_at", timestamp(updated_at)));
            }
            ProposalChange::Decided { status, at } => {
                columns.extend([("status", text(status.as_str())), ("decided_at", timestamp(at))]);
            }
            ProposalChange::Accepted {
                contract_id,
                milestones,
                at,
            } => {
                columns.extend([
                    ("status", text(ProposalStatus::Accepted.as_str())),
                    ("decided_at", timestamp(at)),
                    ("contract_id", uuid(contract_id)),
                    ("milestones", json(&milestones)?),
                ]);
            }
            ProposalChange::AcceptanceReverted => {
                columns.push(("status", text(ProposalStatus::Submitted.as_str())));
            }
        }
        let rank = rank(submitted_at);
        let mut listed = columns.clone();
        listed.extend([("rank", bigint(rank)), ("sort_id", text(proposal_id.to_string()))]);
        self.write_batch(
            version,
            vec![
                Write::insert(ks, "proposals_by_id", columns),
                Write::insert(ks, "proposals_by_job", listed.clone()),
                Write::insert(ks, "proposals_by_freelancer", listed),
                applied_write(ks, proposal_id, version),
            ],
        )
        .await?;
        Ok(Applied::Written)
    }

    /// Redact the pitch and attachments of every proposal of `freelancer_id`, an erased person
    /// ([`crate::privacy`]); how many proposals. Written at [`ERASURE_TIMESTAMP`], above every
    /// version, so no event applied later (whose fields read as placeholders anyway once the key
    /// is gone) or applied late can bring the clear values back.
    pub async fn redact_freelancer(&self, freelancer_id: Uuid) -> Result<usize, StoreError> {
        #[derive(DeserializeRow)]
        struct Listed {
            job_id: Uuid,
            rank: i64,
            sort_id: String,
            proposal_id: Uuid,
        }
        let ks = self.keyspace.as_str();
        let cql = format!(
            "SELECT job_id, rank, sort_id, proposal_id FROM {ks}.proposals_by_freelancer WHERE freelancer_id = {freelancer_id}"
        );
        let listed: Vec<Listed> = self.rows::<Listed>(cql).await?.try_collect().await?;
        let erased = || {
            vec![
                ("cover_letter", text(domain::privacy::ERASED_TEXT)),
                ("attachments", text("[]")),
            ]
        };
        for row in &listed {
            let sort = [("rank", bigint(row.rank)), ("sort_id", text(row.sort_id.clone()))];
            let mut by_id = vec![("proposal_id", uuid(row.proposal_id))];
            by_id.extend(erased());
            let mut by_job = vec![("job_id", uuid(row.job_id))];
            by_job.extend(sort.clone());
            by_job.extend(erased());
            let mut by_freelancer = vec![("freelancer_id", uuid(freelancer_id))];
            by_freelancer.extend(sort);
            by_freelancer.extend(erased());
            self.write_batch(
                ERASURE_TIMESTAMP,
                vec![
                    Write::insert(ks, "proposals_by_id", by_id),
                    Write::insert(ks, "proposals_by_job", by_job),
                    Write::insert(ks, "proposals_by_freelancer", by_freelancer),
                ],
            )
            .await?;
        }
        Ok(listed.len())
    }

    /// The proposals to `job_id`, newest first.
    pub async fn proposals_of_job(
        &self,
        job_id: Uuid,
        page: &PageRequest,
    ) -> Result<ProposalPage, StoreError> {
        self.proposal_page("proposals_by_job", ("job_id", job_id), page)
            .await
    }

    /// The proposals of `freelancer_id`, newest first.
    pub async fn proposals_of_freelancer(
        &self,
        freelancer_id: Uuid,
        page: &PageRequest,
    ) -> Result<ProposalPage, StoreError> {
        self.proposal_page("proposals_by_freelancer", ("freelancer_id", freelancer_id), page)
            .await
    }

    async fn proposal_page(
        &self,
        table: &str,
        partition: (&str, Uuid),
        page: &PageRequest,
    ) -> Result<ProposalPage, StoreError> {
        let (items, next) = self
            .page::<ProposalRow, _>(table, PROPOSAL_COLUMNS, partition, page, |row| {
                let view = row.view()?;
                Ok((
                    views::Cursor::new(rank(view.submitted_at), view.proposal_id),
                    view,
                ))
            })
            .await?;
        Ok(ProposalPage {
            items,
            next_page_token: next,
        })
    }

    /// One page of the partition `partition` of list table `table`, in key order, after the
    /// request's cursor; the next page's token when more follow.
    async fn page<R, V>(
        &self,
        table: &str,
        columns: &str,
        partition: (&str, Uuid),
        page: &PageRequest,
        view: fn(R) -> Result<(Cursor, V), StoreError>,
    ) -> Result<(Vec<V>, Option<String>), StoreError>
    where
        R: for<'f, 'm> DeserializeRowTrait<'f, 'm> + Send + 'static,
    {
        // The cursor is a literal, not a bind marker: the emulator cannot bind clustering-key
        // ranges (it answers the whole partition, filtered here); ScyllaDB starts at the rank.
        // Every literal is formatted from a typed value (an id, an integer).
        let from = page
            .after
            .as_ref()
            .map(|c| format!(" AND rank >= {}", c.rank))
            .unwrap_or_default();
        let cql = format!(
            "SELECT {columns} FROM {}.{table} WHERE {} = {}{from}",
            self.keyspace, partition.0, partition.1
        );
        let mut rows = Box::pin(self.rows::<R>(cql).await?);
        let mut items: Vec<(Cursor, V)> = Vec::with_capacity(page.limit + 1);
        while items.len() <= page.limit {
            let Some(row) = rows.next().await else { break };
            let (key, item) = view(row?)?;
            if page.after.as_ref().is_none_or(|after| &key > after) {
                items.push((key, item));
            }
        }
        let next = if items.len() > page.limit {
            items.truncate(page.limit);
            items.last().map(|(key, _)| key.encode())
        } else {
            None
        };
        Ok((items.into_iter().map(|(_, v)| v).collect(), next))
    }
}

fn applied_write(keyspace: &str, stream_id: Uuid, version: i64) -> Write {
    Write::insert(
        keyspace,
        "jobs_applied",
        vec![("stream_id", uuid(stream_id)), ("version", bigint(version))],
    )
}

fn content_columns(content: &JobContent) -> Result<Vec<(&'static str, Value)>, StoreError> {
    Ok(vec![
        ("title", text(content.title.clone())),
        ("description", text(content.description.clone())),
        ("budget_minor", bigint(content.budget.minor)),
        ("currency", text(content.budget.currency.to_string())),
        ("skills", json(&content.skills)?),
    ])
}

fn terms_columns(terms: &ProposalTerms) -> Result<Vec<(&'static str, Value)>, StoreError> {
    Ok(vec![
        ("cover_letter", text(terms.cover_letter.clone())),
        ("milestones", json(&terms.milestones)?),
        ("attachments", json(&terms.attachments)?),
    ])
}

/// The words the stored row of a job is indexed under.
fn stored_words(row: &JobRow) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let skills: Vec<String> = match row.skills.as_deref() {
        Some(raw) => serde_json::from_str(raw)?,
        None => Vec::new(),
    };
    Ok(job_words(
        row.title.as_deref().unwrap_or_default(),
        row.description.as_deref().unwrap_or_default(),
        &skills,
    ))
}
