//! Cassandra / ScyllaDB: the connection and the keyspace. Each context's tables live in its
//! read model (`read_models::<context>::ensure_schema`, DESIGN §12).
//!
//! CQL stays inside what both ScyllaDB and the local emulator accept: no lightweight
//! transactions, TTLs, counters or `COUNT(*)`. Writes are idempotent without LWT: a row
//! carries the stream version it reflects (DESIGN §6).

pub use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use std::{sync::Arc, time::Duration};

use crate::{config::CassandraConfig, store::StoreError};

/// Connect to the cluster (schema-agreement waiting as configured). The driver fetches only the
/// schema metadata its routing needs (keyspaces, tables, partitioners), not the columns, keys and
/// user types of every table: nothing here reads them, and the full fetch queried
/// `system_schema.types` every minute, which the local emulator answers wrongly (an error and
/// two warnings in every service's log each time).
pub async fn connect(config: &CassandraConfig) -> Result<Arc<Session>, StoreError> {
    let session = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_secs(5))
        .auto_await_schema_agreement(config.schema_agreement)
        .fetch_full_schema_metadata(false)
        .build()
        .await?;
    Ok(Arc::new(session))
}

/// Create the keyspace if it does not exist (each read model then creates its tables).
pub async fn ensure_schema(session: &Session, config: &CassandraConfig) -> Result<(), StoreError> {
    let statement = format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
        config.keyspace, config.replication
    );
    session.query_unpaged(statement, ()).await?;
    Ok(())
}

/// Whether the cluster answers.
pub async fn ping(session: &Session) -> Result<(), StoreError> {
    session
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await?;
    Ok(())
}
