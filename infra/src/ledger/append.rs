//! Appending: one transaction over one or more streams, each with its expected version, plus
//! outbox rows, unique reservations and the command's idempotency record (DESIGN §1, §4).

use domain::{Aggregate, BoundedContext, DomainEvent, privacy::PersonalData};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{EventMetadata, Ledger, LedgerError};
use crate::privacy::{Keyring, keys};

/// Channel the relay listens on; notified (on commit) by every append.
pub const OUTBOX_CHANNEL: &str = "workup_outbox";

/// What an append expects a stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (number of events, from 1).
    Exact(i64),
}

impl ExpectedVersion {
    /// The expectation matching a loaded version (0 = no stream).
    pub fn from_loaded(version: i64) -> Self {
        if version == 0 {
            Self::NoStream
        } else {
            Self::Exact(version)
        }
    }

    fn current(self) -> i64 {
        match self {
            Self::NoStream => 0,
            Self::Exact(v) => v,
        }
    }
}

/// An event ready to be stored: its type, schema version and JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Type name.
    pub event_type: String,
    /// Schema version of the payload.
    pub schema_version: i32,
    /// The serde-tagged event, in clear: the append seals its personal fields.
    pub payload: Value,
    /// Which fields of `payload` are personal, and whose ([`DomainEvent::personal_data`]).
    pub personal: Option<PersonalData>,
}

impl NewEvent {
    /// Encode a domain event.
    pub fn encode<E: DomainEvent>(event: &E) -> Result<Self, LedgerError> {
        let schema_version = i32::from(event.schema_version());
        let payload = serde_json::to_value(event).map_err(|source| LedgerError::Codec {
            event_type: event.event_type().to_owned(),
            schema_version,
            source,
        })?;
        Ok(Self {
            event_type: event.event_type().to_owned(),
            schema_version,
            payload,
            personal: event.personal_data(),
        })
    }
}

/// The events one stream gets in an append. No events: the stream's version is only checked.
#[derive(Debug, Clone)]
pub struct StreamWrite {
    /// The stream.
    pub stream_id: Uuid,
    /// Its type, e.g. `job`.
    pub stream_type: &'static str,
    /// The context whose topic its events go to.
    pub context: BoundedContext,
    /// What its version must be.
    pub expected: ExpectedVersion,
    /// The events to add, in order.
    pub events: Vec<NewEvent>,
}

impl StreamWrite {
    /// The write of `events` to the stream `stream_id` of aggregate `A`.
    pub fn of<A: Aggregate>(
        stream_id: Uuid,
        expected: ExpectedVersion,
        events: &[A::Event],
    ) -> Result<Self, LedgerError> {
        Ok(Self {
            stream_id,
            stream_type: A::STREAM_TYPE,
            context: A::CONTEXT,
            expected,
            events: events.iter().map(NewEvent::encode).collect::<Result<_, _>>()?,
        })
    }
}

/// A value that must be unique within its scope (e.g. an email), claimed by a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// What kind of value, e.g. `email`.
    pub scope: &'static str,
    /// The value.
    pub value: String,
    /// The stream that claims it.
    pub stream_id: Uuid,
}

/// One atomic append.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// Stored with every event; its `command_id` makes the append idempotent.
    pub metadata: EventMetadata,
    /// The streams written (or only checked).
    pub streams: Vec<StreamWrite>,
    /// Values to reserve.
    pub reserve: Vec<Reservation>,
    /// Values to release (scope, value), e.g. on account deletion.
    pub release: Vec<(&'static str, String)>,
    /// People whose personal data keys are destroyed (account erasure), after this append's own
    /// events are sealed.
    pub erase: Vec<Uuid>,
}

impl AppendRequest {
    /// An append of `streams` with no reservations.
    pub fn new(metadata: EventMetadata, streams: Vec<StreamWrite>) -> Self {
        Self {
            metadata,
            streams,
            reserve: Vec::new(),
            release: Vec::new(),
            erase: Vec::new(),
        }
    }
}

/// A stream's version after an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamVersion {
    /// The stream's type, e.g. `job` (empty in results stored before it was recorded).
    #[serde(default)]
    pub stream_type: String,
    /// The stream.
    pub stream_id: Uuid,
    /// Its version (last event's version).
    pub version: i64,
}

/// The result of an append (also stored, and returned again for a repeated command id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// Every written stream and its new version.
    pub streams: Vec<StreamVersion>,
    /// Global positions of the appended events, in order.
    pub positions: Vec<i64>,
    /// True when the command id had been seen: nothing new was appended.
    #[serde(skip)]
    pub replayed: bool,
}

impl Appended {
    /// The consistency token (DESIGN §6): the streams written and their versions,
    /// `type:id:version,...` (see [`crate::read_models::consistency`]).
    pub fn token(&self) -> String {
        self.streams
            .iter()
            .map(|s| format!("{}:{}:{}", s.stream_type, s.stream_id, s.version))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Ledger {
    /// The result of command `command_id` if it was already executed (checked before loading and
    /// deciding; a concurrent first execution is caught again inside the append).
    pub async fn command_result(&self, command_id: Uuid) -> Result<Option<Appended>, LedgerError> {
        let result: Option<Value> = sqlx::query_scalar(
            "SELECT result FROM processed_commands WHERE command_id = $1 AND result <> 'null'::jsonb",
        )
        .bind(command_id)
        .fetch_optional(&self.pool())
        .await?;
        result
            .map(|r| {
                serde_json::from_value(r).map(|first: Appended| Appended {
                    replayed: true,
                    ..first
                })
            })
            .transpose()
            .map_err(|source| LedgerError::Codec {
                event_type: "result".into(),
                schema_version: 1,
                source,
            })
    }

    /// Append atomically: every stream at its expected version, or nothing at all.
    #[tracing::instrument(skip_all, fields(command_id = %request.metadata.command_id, streams = request.streams.len()))]
    pub async fn append(&self, mut request: AppendRequest) -> Result<Appended, LedgerError> {
        let mut tx = self.pool().begin().await?;
        if let Some(first) = previous_result(&mut tx, request.metadata.command_id).await? {
            return Ok(Appended {
                replayed: true,
                ..first
            });
        }
        // A fixed lock order over streams: two multi-stream appends cannot deadlock.
        request.streams.sort_by_key(|s| s.stream_id);
        seal_personal_data(&mut tx, &self.keyring, &mut request.streams).await?;
        let metadata = serde_json::to_value(&request.metadata).map_err(|source| LedgerError::Codec {
            event_type: "metadata".into(),
            schema_version: 1,
            source,
        })?;
        let mut appended = Appended {
            streams: Vec::with_capacity(request.streams.len()),
            positions: Vec::new(),
            replayed: false,
        };
        for stream in &request.streams {
            let version = claim_version(&mut tx, stream).await?;
            appended
                .positions
                .extend(insert_events(&mut tx, stream, &metadata).await?);
            appended.streams.push(StreamVersion {
                stream_type: stream.stream_type.to_owned(),
                stream_id: stream.stream_id,
                version,
            });
        }
        for reservation in &request.reserve {
            reserve(&mut tx, reservation).await?;
        }
        for (scope, value) in &request.release {
            sqlx::query("DELETE FROM reservations WHERE scope = $1 AND value = $2")
                .bind(scope)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        for subject in &request.erase {
            keys::erase(&mut tx, *subject).await?;
        }
        let result = serde_json::to_value(&appended).map_err(|source| LedgerError::Codec {
            event_type: "result".into(),
            schema_version: 1,
            source,
        })?;
        sqlx::query("UPDATE processed_commands SET result = $2 WHERE command_id = $1")
            .bind(request.metadata.command_id)
            .bind(result)
            .execute(&mut *tx)
            .await?;
        if !appended.positions.is_empty() {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(OUTBOX_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(appended)
    }
}

/// Seal the personal fields of every event with its subject's data key (made on first use).
async fn seal_personal_data(
    tx: &mut Transaction<'_, Postgres>,
    keyring: &Keyring,
    streams: &mut [StreamWrite],
) -> Result<(), LedgerError> {
    let mut sealer = keys::Sealer::default();
    for event in streams.iter_mut().flat_map(|s| s.events.iter_mut()) {
        if let Some(personal) = event.personal {
            sealer.seal(tx, keyring, &mut event.payload, &personal).await?;
        }
    }
    Ok(())
}

/// Record the command id; if it was already recorded, the first append's result.
/// A concurrent append of the same command id waits here for the first one's outcome.
async fn previous_result(
    tx: &mut Transaction<'_, Postgres>,
    command_id: Uuid,
) -> Result<Option<Appended>, LedgerError> {
    let fresh = sqlx::query(
        "INSERT INTO processed_commands (command_id, result) VALUES ($1, 'null') ON CONFLICT DO NOTHING",
    )
    .bind(command_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if fresh {
        return Ok(None);
    }
    let result: Value = sqlx::query_scalar("SELECT result FROM processed_commands WHERE command_id = $1")
        .bind(command_id)
        .fetch_one(&mut **tx)
        .await?;
    serde_json::from_value(result)
        .map(Some)
        .map_err(|source| LedgerError::Codec {
            event_type: "result".into(),
            schema_version: 1,
            source,
        })
}

/// Move the stream from its expected version to the new one, or fail with a conflict.
/// The row lock makes a concurrent append with the same expectation wait, then miss.
async fn claim_version(tx: &mut Transaction<'_, Postgres>, stream: &StreamWrite) -> Result<i64, LedgerError> {
    let conflict = || LedgerError::VersionConflict {
        stream_id: stream.stream_id,
    };
    let current = stream.expected.current();
    if stream.events.is_empty() {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1 FOR SHARE")
                .bind(stream.stream_id)
                .fetch_optional(&mut **tx)
                .await?;
        return if version.unwrap_or(0) == current {
            Ok(current)
        } else {
            Err(conflict())
        };
    }
    let new_version = current + stream.events.len() as i64;
    let query = match stream.expected {
        ExpectedVersion::NoStream => sqlx::query(
            "INSERT INTO streams (stream_id, stream_type, version) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(stream.stream_id)
        .bind(stream.stream_type)
        .bind(new_version),
        ExpectedVersion::Exact(expected) => {
            sqlx::query("UPDATE streams SET version = $3 WHERE stream_id = $1 AND version = $2")
                .bind(stream.stream_id)
                .bind(expected)
                .bind(new_version)
        }
    };
    if query.execute(&mut **tx).await?.rows_affected() == 1 {
        Ok(new_version)
    } else {
        Err(conflict())
    }
}

/// Insert a stream's events and their outbox rows; the events' global positions, in order.
async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    stream: &StreamWrite,
    metadata: &Value,
) -> Result<Vec<i64>, LedgerError> {
    if stream.events.is_empty() {
        return Ok(Vec::new());
    }
    let first = stream.expected.current() + 1;
    let versions: Vec<i64> = (first..first + stream.events.len() as i64).collect();
    let types: Vec<&str> = stream.events.iter().map(|e| e.event_type.as_str()).collect();
    let schemas: Vec<i32> = stream.events.iter().map(|e| e.schema_version).collect();
    let payloads: Vec<&Value> = stream.events.iter().map(|e| &e.payload).collect();
    let positions: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, metadata)
         SELECT $1, $2, v, t, s, p, $7
         FROM UNNEST($3::bigint[], $4::text[], $5::int[], $6::jsonb[]) AS x(v, t, s, p)
         ORDER BY v
         RETURNING global_position",
    )
    .bind(stream.stream_id)
    .bind(stream.stream_type)
    .bind(&versions)
    .bind(&types)
    .bind(&schemas)
    .bind(&payloads)
    .bind(metadata)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO outbox (global_position, topic_context) SELECT UNNEST($1::bigint[]), $2")
        .bind(&positions)
        .bind(stream.context.name())
        .execute(&mut **tx)
        .await?;
    Ok(positions)
}

async fn reserve(tx: &mut Transaction<'_, Postgres>, reservation: &Reservation) -> Result<(), LedgerError> {
    let result = sqlx::query("INSERT INTO reservations (scope, value, stream_id) VALUES ($1, $2, $3)")
        .bind(reservation.scope)
        .bind(&reservation.value)
        .bind(reservation.stream_id)
        .execute(&mut **tx)
        .await;
    match result {
        Ok(_) => Ok(()),
        // Matched by constraint name, never by error code alone.
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("reservations_pkey") => {
            Err(LedgerError::ReservationTaken {
                scope: reservation.scope,
            })
        }
        Err(e) => Err(e.into()),
    }
}
