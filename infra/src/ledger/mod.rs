//! The PostgreSQL ledger (DESIGN §4): the source of truth.
//!
//! - [`append`]: atomic multi-stream appends with expected versions, reservations, idempotency.
//! - [`load`]: reading and folding streams.
//! - [`outbox`]: what the relay publishes to Kafka: the tail of the events, and events queued again.
//! - [`upcast`]: lifting old event schema versions on read.
//! - [`personal`]: personal fields sealed on append, opened (or redacted) on read
//!   ([`crate::privacy`]).
//! - [`execute`]: the one command path (handlers and sagas): command id check → load → decide
//!   → append, over one stream or several ([`UnitOfWork`]).

pub mod append;
pub mod cache;
pub mod execute;
pub mod load;
pub mod outbox;
pub mod personal;
pub mod scan;
pub mod upcast;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{
    Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use std::str::FromStr;
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

use crate::{
    config::PostgresConfig,
    privacy::{Keyring, PrivacyError, envelope},
};
pub use append::{
    AppendRequest, Appended, ExpectedVersion, NewEvent, Reservation, StreamVersion, StreamWrite,
};
pub use execute::{CommandError, UnitOfWork};
pub use load::Loaded;
pub use outbox::{Acknowledgement, OutboxLag, RelayBatch, RelayLease, TailPosition};
pub use scan::{ScanCursor, ScanFilter, TransactionHorizon};
pub use upcast::Upcasters;

/// Embedded migrations of the ledger database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A stream's version was not the expected one: someone appended first. Nothing was written.
    #[error("stream {stream_id} is not at the expected version")]
    VersionConflict {
        /// The stream that lost the race.
        stream_id: Uuid,
    },
    /// A unique value is already reserved (e.g. an email). Nothing was written.
    #[error("{scope} is already taken")]
    ReservationTaken {
        /// What kind of value, e.g. `email`.
        scope: &'static str,
    },
    /// An event could not be encoded or decoded.
    #[error("event {event_type} (schema {schema_version}) could not be (de)serialised")]
    Codec {
        /// The event's type name.
        event_type: String,
        /// The event's schema version.
        schema_version: i32,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A unit of work wrote to a stream it had not loaded (a bug in the caller).
    #[error("stream {stream_id} was written without being loaded first")]
    NotLoaded {
        /// The stream.
        stream_id: Uuid,
    },
    /// The database failed.
    #[error("ledger database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("ledger migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Personal data could not be sealed (e.g. the person was erased) or its keys read.
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
}

/// Who and what caused an append; stored with every event (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The command that produced the events (idempotency key of the append).
    pub command_id: Uuid,
    /// The request or saga run this belongs to.
    pub correlation_id: Uuid,
    /// The event or command that caused this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The acting user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<Uuid>,
    /// When the command was decided.
    pub occurred_at: DateTime<Utc>,
}

impl EventMetadata {
    /// Metadata for a new command: fresh command id, the given correlation id.
    pub fn new(correlation_id: Uuid, actor_id: Option<Uuid>, occurred_at: DateTime<Utc>) -> Self {
        Self {
            command_id: Uuid::now_v7(),
            correlation_id,
            causation_id: None,
            actor_id,
            occurred_at,
        }
    }
}

/// One event as stored in the ledger and carried on Kafka (the message value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Position in the ledger (unique, increasing, with gaps; never used for waiting).
    pub global_position: i64,
    /// The stream (aggregate id).
    pub stream_id: Uuid,
    /// The stream's type, e.g. `user`.
    pub stream_type: String,
    /// Version within the stream, from 1.
    pub version: i64,
    /// Type name of the event.
    pub event_type: String,
    /// Schema version of `payload`.
    pub schema_version: i32,
    /// The event (serde-tagged JSON of the domain event).
    pub payload: serde_json::Value,
    /// Who and what caused it.
    pub metadata: EventMetadata,
    /// When the ledger recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Decode the payload into the domain event, lifting old schema versions first. Personal
    /// fields still sealed read as their placeholders ([`Ledger::open_personal_data`] opens them).
    pub fn decode<E: domain::DomainEvent>(&self, upcasters: &Upcasters) -> Result<E, LedgerError> {
        let mut payload = self.payload.clone();
        envelope::redact(&mut payload);
        let payload = upcasters.lift(&self.event_type, self.schema_version, payload);
        serde_json::from_value(payload).map_err(|source| LedgerError::Codec {
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            source,
        })
    }
}

/// The ledger: a pool on the ledger database and the upcasters used when reading.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Swapped for a pool of another size by [`Ledger::resize_pool`] (`max_db_connections`).
    pool: Arc<ArcSwap<PgPool>>,
    upcasters: Arc<Upcasters>,
    /// Wraps and unwraps the personal data keys.
    keyring: Arc<Keyring>,
    /// Recently used aggregates ([`cache`]).
    cache: cache::AggregateCache,
}

/// How long a pooled connection may sit idle before it is checked with a round trip when it is
/// next taken: one idle longer may have been cut (a database restart, a dropped link).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The ledger's pool settings: at most `max` connections. sqlx checks every connection with a
/// round trip each time it is taken (`test_before_acquire`), besides the one it makes when it is
/// given back: `perf` of command-api under the HTTP benchmark put the two at a fifth of its CPU,
/// and the first held every command's connection for one round trip more. Here only a connection
/// idle longer than [`CHECK_AFTER_IDLE`] is checked when taken (POST /jobs: 3,900 → 6,100/s).
fn pool_options(max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_AFTER_IDLE {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

impl Ledger {
    /// Connect (lazily, with a bounded pool) and run the migrations; personal data is sealed and
    /// opened with `config`'s master keys.
    pub async fn connect(config: &PostgresConfig) -> Result<Self, LedgerError> {
        // Short statements only: PostgreSQL's JIT compiler, on by default, compiled some of them
        // again and again (a tenth of the database's CPU under the HTTP benchmark, for nothing),
        // and a misestimated count started two parallel workers every half second.
        let options = PgConnectOptions::from_str(&config.url)?
            .options([("jit", "off"), ("max_parallel_workers_per_gather", "0")]);
        let pool = pool_options(config.max_connections).connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self::new(pool, Upcasters::current()).with_keyring(config.keyring()?))
    }

    /// A ledger on an existing (migrated) pool, with the development master key.
    pub fn new(pool: PgPool, upcasters: Upcasters) -> Self {
        Self {
            pool: Arc::new(ArcSwap::from_pointee(pool)),
            upcasters: Arc::new(upcasters),
            keyring: Arc::new(Keyring::development()),
            cache: cache::AggregateCache::new(cache::AggregateCache::DEFAULT_CAPACITY),
        }
    }

    /// The same ledger keeping at most `capacity` aggregates in its cache (0: none).
    pub fn with_aggregate_cache(mut self, capacity: u64) -> Self {
        self.cache = cache::AggregateCache::new(capacity);
        self
    }

    /// The same ledger wrapping personal data keys with `keyring`.
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Arc::new(keyring);
        self
    }

    /// The master keys.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The connection pool now (a cheap handle; take it afresh for each unit of work, as
    /// [`Ledger::resize_pool`] may replace it).
    pub fn pool(&self) -> PgPool {
        PgPool::clone(&self.pool.load())
    }

    /// Hold at most `max` connections from now on (DESIGN §10 `max_db_connections`): work starts
    /// on a new pool of that size; the old one closes once the work in flight on it has given its
    /// connections back.
    pub fn resize_pool(&self, max: u32) {
        let current = self.pool();
        let options = current.connect_options().as_ref().clone();
        let resized = pool_options(max.max(1)).connect_lazy_with(options);
        let old = self.pool.swap(Arc::new(resized));
        tokio::spawn(async move { old.close().await });
        tracing::info!(max, "ledger pool resized");
    }

    /// The upcasters applied when reading.
    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    /// Check the database answers (readiness).
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool()).await?;
        Ok(())
    }

    /// Whose stream holds a reserved value (e.g. which user owns an email), if anyone's.
    pub async fn reservation_owner(&self, scope: &str, value: &str) -> Result<Option<Uuid>, LedgerError> {
        let owner = sqlx::query_scalar("SELECT stream_id FROM reservations WHERE scope = $1 AND value = $2")
            .bind(scope)
            .bind(value)
            .fetch_optional(&self.pool())
            .await?;
        Ok(owner)
    }
}
