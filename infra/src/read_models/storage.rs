//! The storage of one read model in one [`Target`] (DESIGN §8, blue/green rebuilds): drop it,
//! and dump every row of it in a canonical, comparable form ([`Dump`], [`diff`]), so a
//! rebuilt generation or the `replay verify` scratch copy can be checked against another one.
//!
//! What each read model owns (the catalogue below; [`tables`] lists the tables):
//! - users: the MongoDB collection `users` (no index besides `_id`);
//! - jobs: the Cassandra tables of [`crate::read_models::jobs`] (`jobs_applied` included) and the
//!   Redis cache entries `<prefix>cache:job:*` ([`crate::read_models::jobs::cache_key`]);
//! - contracts: the Cassandra tables of [`crate::read_models::contracts`] (`contracts_applied`
//!   included);
//! - payments: the Cassandra payment-request tables and the Redis keys `<prefix>payments:*`
//!   (wallet hashes, their transaction sorted sets, withdrawal hashes; the applied versions live
//!   in them).
//!
//! Generation 0 is shared by every read model: dropping it removes only this read model's
//! tables, collection and key families (Redis: `SCAN MATCH` + `DEL`, never `KEYS`). Any other
//! target is dedicated to one read model: its keyspace and database are dropped and every key
//! under its prefix is deleted.
//!
//! Dumps:
//! - Cassandra: `SELECT *` of every table, paged; key `<table>/<primary key values>`, value the
//!   JSON object of all columns sorted by name (timestamps RFC 3339 in ms, dates `YYYY-MM-DD`,
//!   nulls `null`). A table that does not exist in the target dumps as empty.
//! - MongoDB: every document; key `users/<_id>`, value its relaxed extended JSON with keys
//!   sorted at every level. Relaxed JSON writes Int32 and Int64 alike, which matters because the
//!   MongoDB-wire stand-in may return a small Int64 as an Int32 (INFRA-NOTES).
//! - Redis: key `redis/<key without the prefix>`, value `<type> <JSON>`: a string as text, a
//!   hash as an object (fields sorted), a sorted set as `[member, score]` pairs in order, a list
//!   in order, a set sorted.
//!
//! Excluded from dumps: the jobs Redis cache (a cache filled by readers, with a time to live:
//! not the model). No column, field or key family is excluded otherwise: every stored value
//! comes from the events (their times, ids and stream versions), none from the clock or the
//! process that projected it, so two correct projections of the same events dump alike. Write
//! timestamps and time-to-live are not read. `job_search` rows are kept although a rebalance
//! race may leave a stale entry behind (searches filter it out): such a row is reported, as it
//! is garbage the other copy does not have.
//!
//! What the local stand-ins accept: the CQL emulator answers `DROP KEYSPACE` and `DROP TABLE`
//! with a syntax error (it has no `DROP`, `TRUNCATE` or `ALTER`), so [`Storage::drop`] tries the
//! `DROP` (what ScyllaDB does) and, on a syntax error only, deletes every partition of the read
//! model's tables instead (`DELETE ... WHERE <partition key> = ?`, which both accept; a
//! [`Storage`] asks only once): on the emulator the keyspace and the empty tables stay. It does
//! scan a table with `SELECT *` and no `WHERE`, paged, and lists tables in
//! `system_schema.tables` as ScyllaDB does (its `system_schema.columns` is empty). The
//! MongoDB-wire stand-in drops databases (`dropDatabase`) and collections (`drop`) like MongoDB.
//! Dumps are built in memory: meant for read models of test and staging size, and for
//! `replay verify`.

use domain::BoundedContext;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use scylla::{
    client::session::Session,
    errors::{DbError, ExecutionError, RequestAttemptError},
    response::{PagingState, PagingStateResponse},
    statement::unprepared::Statement,
    value::{CqlValue, Row},
};
use serde_json::Value as Json;
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use super::generation::Target;
use crate::{cassandra, config::Config, mongo, read_models, redis::RedisConnection, store::StoreError};

/// Rows per page of a table scan.
const PAGE_SIZE: i32 = 500;
/// Keys per `SCAN` step and per `DEL`.
const REDIS_BATCH: usize = 500;
/// Partition deletes in flight at once where the CQL server has no `DROP`.
const DELETES_AT_ONCE: usize = 32;
/// Longest value a [`Difference`] shows, in characters.
const SHOWN_CHARS: usize = 200;

/// A Cassandra table of a read model and its primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The table's name.
    pub name: &'static str,
    /// Its primary key columns: the partition key first (one column in every table here),
    /// then the clustering columns.
    pub key: &'static [&'static str],
}

impl Table {
    const fn new(name: &'static str, key: &'static [&'static str]) -> Self {
        Self { name, key }
    }
}

const JOBS_TABLES: &[Table] = &[
    Table::new("jobs_by_id", &["job_id"]),
    Table::new("jobs_by_client", &["client_id", "rank", "sort_id"]),
    Table::new("job_search", &["word", "rank", "job_id"]),
    Table::new("proposals_by_id", &["proposal_id"]),
    Table::new("proposals_by_job", &["job_id", "rank", "sort_id"]),
    Table::new("proposals_by_freelancer", &["freelancer_id", "rank", "sort_id"]),
    Table::new("jobs_applied", &["stream_id"]),
];

const CONTRACTS_TABLES: &[Table] = &[
    Table::new("contracts_by_id", &["contract_id"]),
    Table::new(
        "contracts_by_client",
        &["client_id", "initiated_at", "contract_id"],
    ),
    Table::new(
        "contracts_by_freelancer",
        &["freelancer_id", "initiated_at", "contract_id"],
    ),
    Table::new("contract_milestones", &["contract_id", "milestone_id"]),
    Table::new(
        "contract_terminations",
        &["contract_id", "termination_request_id"],
    ),
    Table::new("contracts_applied", &["stream_id"]),
];

const PAYMENTS_TABLES: &[Table] = &[
    Table::new("payment_requests_by_id", &["payment_request_id"]),
    Table::new(
        "payment_requests_by_client",
        &["client_id", "created_at", "payment_request_id"],
    ),
    Table::new(
        "payment_requests_by_freelancer",
        &["freelancer_id", "created_at", "payment_request_id"],
    ),
];

/// The Cassandra tables of `context`'s read model (none for users).
pub fn tables(context: BoundedContext) -> &'static [Table] {
    match context {
        BoundedContext::Users => &[],
        BoundedContext::Jobs => JOBS_TABLES,
        BoundedContext::Contracts => CONTRACTS_TABLES,
        BoundedContext::Payments => PAYMENTS_TABLES,
    }
}

/// The MongoDB collections of `context`'s read model.
fn collections(context: BoundedContext) -> &'static [&'static str] {
    match context {
        BoundedContext::Users => &[read_models::users::COLLECTION],
        _ => &[],
    }
}

/// The Redis key families (after the prefix) of `context`'s read model that are the model,
/// dumped and dropped.
fn model_keys(context: BoundedContext) -> &'static [&'static str] {
    match context {
        BoundedContext::Payments => &["payments:"],
        _ => &[],
    }
}

/// The Redis key families (after the prefix) of `context` that are caches: dropped, not dumped.
fn cache_keys(context: BoundedContext) -> &'static [&'static str] {
    match context {
        BoundedContext::Jobs => &["cache:job:"],
        _ => &[],
    }
}

/// Handles on the three stores, for operations on any target.
#[derive(Clone)]
pub struct Storage {
    session: Arc<Session>,
    mongo: mongodb::Client,
    redis: RedisConnection,
    /// Set once the CQL server answered a `DROP` with a syntax error (the emulator): later drops
    /// delete rows at once instead of asking again.
    no_drop: Arc<AtomicBool>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

impl Storage {
    /// Connect to the Cassandra cluster, the MongoDB server and Redis of `config`.
    pub async fn connect(config: &Config) -> Result<Self, StoreError> {
        let session = cassandra::connect(&config.cassandra).await?;
        let mongo = mongo::connect(&config.mongo).await?.client().clone();
        let redis = RedisConnection::open(&config.redis.url).await?;
        Ok(Self {
            session,
            mongo,
            redis,
            no_drop: Arc::default(),
        })
    }

    /// Remove everything of `target`'s read model in `target`: a dedicated target loses its
    /// keyspace, its database and every key under its prefix; the shared generation 0 loses
    /// only this read model's tables, collection and key families (caches included).
    pub async fn drop(&self, target: Target, config: &Config) -> Result<(), StoreError> {
        let at = target.config(config);
        let keyspace = at.cassandra.keyspace.as_str();
        let prefix = glob_escape(&at.redis.prefix);
        if target.is_shared() {
            for table in tables(target.context) {
                let drop = format!("DROP TABLE IF EXISTS {keyspace}.{}", table.name);
                if !self.cql_drop(drop).await? {
                    self.delete_partitions(keyspace, table).await?;
                }
            }
            let database = self.mongo.database(&at.mongo.database);
            for collection in collections(target.context) {
                database.collection::<Document>(collection).drop().await?;
            }
            let families = model_keys(target.context)
                .iter()
                .chain(cache_keys(target.context));
            for family in families {
                self.delete_keys(&format!("{prefix}{}*", glob_escape(family)))
                    .await?;
            }
        } else {
            if !self
                .cql_drop(format!("DROP KEYSPACE IF EXISTS {keyspace}"))
                .await?
            {
                for table in tables(target.context) {
                    self.delete_partitions(keyspace, table).await?;
                }
            }
            self.mongo.database(&at.mongo.database).drop().await?;
            self.delete_keys(&format!("{prefix}*")).await?;
        }
        Ok(())
    }

    /// Every row of `target`'s read model in `target`, canonical (see the module notes).
    pub async fn dump(&self, target: Target, config: &Config) -> Result<Dump, StoreError> {
        let at = target.config(config);
        let mut dump = BTreeMap::new();
        let keyspace = at.cassandra.keyspace.as_str();
        let existing = self.existing_tables(keyspace).await?;
        for table in tables(target.context) {
            if existing.contains(table.name) {
                self.dump_table(keyspace, table, &mut dump).await?;
            }
        }
        let database = self.mongo.database(&at.mongo.database);
        for collection in collections(target.context) {
            let mut documents = database.collection::<Document>(collection).find(doc! {}).await?;
            while let Some(document) = documents.try_next().await? {
                let id = match document.get("_id") {
                    Some(Bson::String(id)) => id.clone(),
                    Some(other) => canonical(&other.clone().into_relaxed_extjson()),
                    None => String::new(),
                };
                let value = canonical(&Bson::Document(document).into_relaxed_extjson());
                dump.insert(format!("{collection}/{id}"), value);
            }
        }
        let prefix = at.redis.prefix.as_str();
        for family in model_keys(target.context) {
            let pattern = format!("{}{}*", glob_escape(prefix), glob_escape(family));
            for key in self.scan(&pattern).await? {
                if let Some(value) = self.redis_value(&key).await? {
                    let short = key.strip_prefix(prefix).unwrap_or(&key);
                    dump.insert(format!("redis/{short}"), value);
                }
            }
        }
        Ok(Dump(dump))
    }

    // ----- Cassandra -----

    /// Run a `DROP`; `false` if the server has no `DROP` (the emulator answers a syntax error).
    async fn cql_drop(&self, statement: String) -> Result<bool, StoreError> {
        if self.no_drop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.session.query_unpaged(statement, ()).await {
            Ok(_) => Ok(true),
            Err(ExecutionError::LastAttemptError(RequestAttemptError::DbError(DbError::SyntaxError, _))) => {
                self.no_drop.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The tables of `keyspace` (none if it does not exist).
    async fn existing_tables(&self, keyspace: &str) -> Result<BTreeSet<String>, StoreError> {
        let rows = self
            .session
            .query_unpaged(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
                (keyspace,),
            )
            .await?
            .into_rows_result()?;
        rows.rows::<(String,)>()
            .map_err(cql)?
            .map(|row| row.map(|(name,)| name).map_err(cql))
            .collect()
    }

    /// Every row of `query` (a statement without bind markers) and its column names, page by page.
    async fn select_all(&self, query: String) -> Result<(Vec<String>, Vec<Row>), StoreError> {
        let mut statement = Statement::new(query);
        statement.set_page_size(PAGE_SIZE);
        let mut state = PagingState::start();
        let mut names = Vec::new();
        let mut rows = Vec::new();
        loop {
            let (result, response) = self
                .session
                .query_single_page(statement.clone(), (), state)
                .await?;
            let result = result.into_rows_result()?;
            if names.is_empty() {
                names = result
                    .column_specs()
                    .as_slice()
                    .iter()
                    .map(|spec| spec.name().to_owned())
                    .collect();
            }
            for row in result.rows::<Row>().map_err(cql)? {
                rows.push(row.map_err(cql)?);
            }
            match response {
                PagingStateResponse::HasMorePages { state: next } => state = next,
                PagingStateResponse::NoMorePages => break,
            }
        }
        Ok((names, rows))
    }

    /// Add every row of `table` to `dump`.
    async fn dump_table(
        &self,
        keyspace: &str,
        table: &Table,
        dump: &mut BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let (names, rows) = self
            .select_all(format!("SELECT * FROM {keyspace}.{}", table.name))
            .await?;
        for row in rows {
            let columns: BTreeMap<&str, &Option<CqlValue>> =
                names.iter().map(String::as_str).zip(&row.columns).collect();
            let mut key = table.name.to_owned();
            for column in table.key {
                let value = columns.get(column).ok_or_else(|| {
                    StoreError::Codec(format!("{keyspace}.{} has no column {column}", table.name))
                })?;
                key.push('/');
                key.push_str(&plain(value));
            }
            let object = Json::Object(
                columns
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), json_of_cell(value)))
                    .collect(),
            );
            dump.insert(key, canonical(&object));
        }
        Ok(())
    }

    /// Delete every partition of `table` (where it has no `DROP`); nothing if it does not exist.
    async fn delete_partitions(&self, keyspace: &str, table: &Table) -> Result<(), StoreError> {
        if !self.existing_tables(keyspace).await?.contains(table.name) {
            return Ok(());
        }
        let partition_key = table.key[0];
        let (_, rows) = self
            .select_all(format!("SELECT {partition_key} FROM {keyspace}.{}", table.name))
            .await?;
        let mut seen = BTreeSet::new();
        let partitions: Vec<CqlValue> = rows
            .into_iter()
            .filter_map(|row| row.columns.into_iter().next().flatten())
            .filter(|value| seen.insert(plain(&Some(value.clone()))))
            .collect();
        let delete = self
            .session
            .prepare(format!(
                "DELETE FROM {keyspace}.{} WHERE {partition_key} = ?",
                table.name
            ))
            .await?;
        // Many at once: one at a time, a million-row table takes most of an hour.
        futures::stream::iter(partitions)
            .map(|value| self.session.execute_unpaged(&delete, (value,)))
            .buffer_unordered(DELETES_AT_ONCE)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(())
    }

    // ----- Redis -----

    /// The keys matching `pattern` (`SCAN`, never `KEYS`).
    async fn scan(&self, pattern: &str) -> Result<BTreeSet<String>, StoreError> {
        let mut connection = self.redis.clone();
        let mut keys = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(REDIS_BATCH)
                .query_async(&mut connection)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Delete the keys matching `pattern`.
    async fn delete_keys(&self, pattern: &str) -> Result<(), StoreError> {
        let keys: Vec<String> = self.scan(pattern).await?.into_iter().collect();
        let mut connection = self.redis.clone();
        for chunk in keys.chunks(REDIS_BATCH) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut connection).await?;
        }
        Ok(())
    }

    /// The canonical text of Redis key `key` (`None` if it vanished meanwhile).
    async fn redis_value(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut connection = self.redis.clone();
        let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut connection).await?;
        let value = match kind.as_str() {
            "none" => return Ok(None),
            "string" => {
                let value: Option<String> = redis::cmd("GET").arg(key).query_async(&mut connection).await?;
                Json::from(value)
            }
            "hash" => {
                let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(key)
                    .query_async(&mut connection)
                    .await?;
                Json::Object(fields.into_iter().map(|(k, v)| (k, Json::from(v))).collect())
            }
            "zset" => {
                let members: Vec<(String, String)> = redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut connection)
                    .await?;
                Json::Array(
                    members
                        .into_iter()
                        .map(|(member, score)| Json::Array(vec![member.into(), score.into()]))
                        .collect(),
                )
            }
            "list" => {
                let items: Vec<String> = redis::cmd("LRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut connection)
                    .await?;
                Json::from(items)
            }
            "set" => {
                let members: BTreeSet<String> = redis::cmd("SMEMBERS")
                    .arg(key)
                    .query_async(&mut connection)
                    .await?;
                Json::from(members.into_iter().collect::<Vec<_>>())
            }
            other => {
                return Err(StoreError::Codec(format!(
                    "redis key {key} is a {other}, which a read model never stores"
                )));
            }
        };
        Ok(Some(format!("{kind} {}", canonical(&value))))
    }
}

/// Every row of a read model in one target: canonical key → canonical text of the row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump(BTreeMap<String, String>);

impl Dump {
    /// How many rows, documents and keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical text of the row under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every key and its row, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl FromIterator<(String, String)> for Dump {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(rows: I) -> Self {
        Self(rows.into_iter().collect())
    }
}

/// How a found dump differs from the expected one at one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Expected, not found.
    Missing {
        /// The row's key.
        key: String,
        /// Its expected text.
        expected: String,
    },
    /// Found, not expected.
    Unexpected {
        /// The row's key.
        key: String,
        /// Its text.
        found: String,
    },
    /// Found with other values.
    Changed {
        /// The row's key.
        key: String,
        /// Its expected text.
        expected: String,
        /// Its text.
        found: String,
    },
}

impl Difference {
    /// The key of the row that differs.
    pub fn key(&self) -> &str {
        match self {
            Self::Missing { key, .. } | Self::Unexpected { key, .. } | Self::Changed { key, .. } => key,
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { key, expected } => {
                write!(f, "missing {key}: expected {}", shown(expected))
            }
            Self::Unexpected { key, found } => write!(f, "unexpected {key}: found {}", shown(found)),
            Self::Changed { key, expected, found } => write!(
                f,
                "changed {key}: expected {}, found {}",
                shown(expected),
                shown(found)
            ),
        }
    }
}

/// Every difference of `found` from `expected`, in key order (none when they are equal).
pub fn diff(expected: &Dump, found: &Dump) -> Vec<Difference> {
    let mut differences = Vec::new();
    for (key, expected_value) in &expected.0 {
        match found.0.get(key) {
            None => differences.push(Difference::Missing {
                key: key.clone(),
                expected: expected_value.clone(),
            }),
            Some(found_value) if found_value != expected_value => differences.push(Difference::Changed {
                key: key.clone(),
                expected: expected_value.clone(),
                found: found_value.clone(),
            }),
            Some(_) => {}
        }
    }
    for (key, found_value) in &found.0 {
        if !expected.0.contains_key(key) {
            differences.push(Difference::Unexpected {
                key: key.clone(),
                found: found_value.clone(),
            });
        }
    }
    differences.sort_by(|a, b| a.key().cmp(b.key()));
    differences
}

/// `value` cut to [`SHOWN_CHARS`] characters.
fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// JSON text with the keys of every object sorted (serde_json may keep insertion order).
fn canonical(value: &Json) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Json, out: &mut String) {
    match value {
        Json::Object(map) => {
            let sorted: BTreeMap<&String, &Json> = map.iter().collect();
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A primary key value as it appears in a dump key (text as is, everything else as in JSON).
fn plain(cell: &Option<CqlValue>) -> String {
    match json_of_cell(cell) {
        Json::String(s) => s,
        other => canonical(&other),
    }
}

fn json_of_cell(cell: &Option<CqlValue>) -> Json {
    cell.as_ref().map_or(Json::Null, json_of_value)
}

/// The JSON of a CQL value: numbers as numbers, ids and text as strings, timestamps in RFC 3339
/// (ms), dates as `YYYY-MM-DD`; types no read model uses in their debug form.
fn json_of_value(value: &CqlValue) -> Json {
    use chrono::{DateTime, NaiveDate, SecondsFormat};
    match value {
        CqlValue::Ascii(s) | CqlValue::Text(s) => Json::from(s.as_str()),
        CqlValue::Boolean(b) => Json::from(*b),
        CqlValue::BigInt(n) => Json::from(*n),
        CqlValue::Int(n) => Json::from(*n),
        CqlValue::SmallInt(n) => Json::from(*n),
        CqlValue::TinyInt(n) => Json::from(*n),
        CqlValue::Counter(c) => Json::from(c.0),
        CqlValue::Double(x) => {
            serde_json::Number::from_f64(*x).map_or_else(|| Json::from(x.to_string()), Json::Number)
        }
        CqlValue::Float(x) => serde_json::Number::from_f64(f64::from(*x))
            .map_or_else(|| Json::from(x.to_string()), Json::Number),
        CqlValue::Uuid(id) => Json::from(id.to_string()),
        CqlValue::Timestamp(t) => DateTime::from_timestamp_millis(t.0).map_or_else(
            || Json::from(t.0),
            |at| Json::from(at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        ),
        CqlValue::Date(d) => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| {
                let days = i64::from(d.0) - (1_i64 << 31);
                epoch.checked_add_signed(chrono::TimeDelta::try_days(days)?)
            })
            .map_or_else(|| Json::from(d.0), |date| Json::from(date.to_string())),
        CqlValue::Blob(bytes) => Json::from(format!("0x{}", hex::encode(bytes))),
        CqlValue::List(items) | CqlValue::Set(items) | CqlValue::Vector(items) => {
            Json::Array(items.iter().map(json_of_value).collect())
        }
        CqlValue::Map(entries) => Json::Array(
            entries
                .iter()
                .map(|(k, v)| Json::Array(vec![json_of_value(k), json_of_value(v)]))
                .collect(),
        ),
        CqlValue::Tuple(items) => Json::Array(items.iter().map(json_of_cell).collect()),
        CqlValue::UserDefinedType { fields, .. } => Json::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), json_of_cell(value)))
                .collect(),
        ),
        other => Json::from(format!("{other:?}")),
    }
}

/// Map any driver error to a [`StoreError`].
fn cql(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Cassandra(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(rows: &[(&str, &str)]) -> Dump {
        rows.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn diff_names_missing_changed_and_unexpected_rows_in_key_order() {
        let expected = dump(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let found = dump(&[("b", "2"), ("c", "4"), ("d", "5")]);
        assert_eq!(
            diff(&expected, &found),
            vec![
                Difference::Missing {
                    key: "a".into(),
                    expected: "1".into()
                },
                Difference::Changed {
                    key: "c".into(),
                    expected: "3".into(),
                    found: "4".into()
                },
                Difference::Unexpected {
                    key: "d".into(),
                    found: "5".into()
                },
            ]
        );
        assert!(diff(&expected, &expected.clone()).is_empty());
    }

    #[test]
    fn a_difference_is_one_line_with_values_cut_short() {
        let long = "é".repeat(SHOWN_CHARS + 50);
        let line = Difference::Changed {
            key: "jobs_by_id/1".into(),
            expected: long.clone(),
            found: "x".into(),
        }
        .to_string();
        assert!(line.starts_with("changed jobs_by_id/1: expected éé"), "{line}");
        assert!(line.ends_with("…, found x"), "{line}");
        assert_eq!(line.chars().filter(|c| *c == 'é').count(), SHOWN_CHARS);
        assert_eq!(
            Difference::Missing {
                key: "k".into(),
                expected: "v".into()
            }
            .to_string(),
            "missing k: expected v"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = serde_json::json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": null}});
        assert_eq!(canonical(&value), r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn cql_values_render_as_plain_json() {
        use scylla::value::{CqlDate, CqlTimestamp};
        assert_eq!(
            json_of_value(&CqlValue::Timestamp(CqlTimestamp(1_700_000_000_123))),
            Json::from("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(
            json_of_value(&CqlValue::Date(CqlDate((1 << 31) + 1))),
            Json::from("1970-01-02")
        );
        assert_eq!(plain(&Some(CqlValue::BigInt(-3))), "-3");
        assert_eq!(plain(&Some(CqlValue::Text("word".into()))), "word");
        assert_eq!(json_of_cell(&None), Json::Null);
    }

    #[test]
    fn glob_characters_of_a_prefix_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("t_1:payments:"), "t_1:payments:");
    }
}
