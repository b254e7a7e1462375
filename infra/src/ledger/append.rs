//! Appending: one transaction over one or more streams, each with its expected version, plus
//! unique reservations and the command's idempotency record (DESIGN §1, §4), in one round trip:
//! one call of the ledger's `ledger_append` function (migrations `20261201000001`,
//! `20261202000001`), or, for a command of one event on one stream, one `INSERT` of that event,
//! which is its command's only record (it keeps the command id).

use domain::{Aggregate, BoundedContext, DomainEvent, privacy::PersonalData};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Postgres, Transaction, postgres::PgArguments, query::QueryScalar};
use uuid::Uuid;

use super::{EventMetadata, Ledger, LedgerError};
use crate::privacy::{Keyring, keys};

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
    /// The result of appending one event at `position` to `stream`.
    fn single(stream: &StreamWrite, position: i64) -> Self {
        Self {
            streams: vec![StreamVersion {
                stream_type: stream.stream_type.to_owned(),
                stream_id: stream.stream_id,
                version: stream.expected.current() + 1,
            }],
            positions: vec![position],
            replayed: false,
        }
    }

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
        let result: Option<Value> = sqlx::query_scalar("SELECT ledger_command_result($1)")
            .bind(command_id)
            .fetch_one(&self.pool())
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

    /// Append atomically: every stream at its expected version, or nothing at all, in one round
    /// trip (a single event: one `INSERT`; anything else: one call of the ledger's `ledger_append`
    /// function; a transaction around it only when personal data is sealed or a key destroyed,
    /// which need key rows first or after).
    #[tracing::instrument(skip_all, fields(command_id = %request.metadata.command_id, streams = request.streams.len()))]
    pub async fn append(&self, mut request: AppendRequest) -> Result<Appended, LedgerError> {
        // One lock order over streams, for the function's stream locks and the key rows.
        request.streams.sort_by_key(|s| s.stream_id);
        let personal = request
            .streams
            .iter()
            .flat_map(|s| &s.events)
            .any(|e| e.personal.is_some());
        let outcome = if personal || !request.erase.is_empty() {
            self.append_in_transaction(&mut request)
                .await
                .and_then(decode_result)
        } else if let Some(insert) = single_event_insert(&request) {
            match insert.fetch_optional(&self.pool()).await {
                Ok(Some(position)) => Ok(Appended::single(&request.streams[0], position)),
                // The command id was recorded: answer its first result.
                Ok(None) => {
                    return self
                        .command_result(request.metadata.command_id)
                        .await?
                        .ok_or(LedgerError::Database(sqlx::Error::RowNotFound));
                }
                Err(error) => Err(error.into()),
            }
        } else {
            append_call(&request)
                .fetch_one(&self.pool())
                .await
                .map_err(LedgerError::from)
                .and_then(decode_result)
        };
        match outcome {
            Ok(appended) => Ok(appended),
            Err(error) => match conflict(error, &request) {
                // A concurrent run of the same command id that committed first is answered with
                // its result, as a retried command would be.
                ConflictOr::Conflict(error) => {
                    match self.command_result(request.metadata.command_id).await? {
                        Some(first) => Ok(first),
                        None => Err(error),
                    }
                }
                ConflictOr::Other(error) => Err(error),
            },
        }
    }

    /// The append with the keys it needs: a command already executed is answered before any key
    /// is made (a retried erasure would otherwise meet its own destroyed key).
    async fn append_in_transaction(&self, request: &mut AppendRequest) -> Result<Value, LedgerError> {
        let mut tx = self.pool().begin().await?;
        let previous: Option<Value> = sqlx::query_scalar(
            "SELECT jsonb_build_object('replayed', true, 'result', r) FROM ledger_command_result($1) r
             WHERE r IS NOT NULL",
        )
        .bind(request.metadata.command_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(previous) = previous {
            return Ok(previous);
        }
        seal_personal_data(&mut tx, &self.keyring, &mut request.streams).await?;
        let result = append_call(request).fetch_one(&mut *tx).await?;
        for subject in &request.erase {
            keys::erase(&mut tx, *subject).await?;
        }
        tx.commit().await?;
        Ok(result)
    }
}

/// The most common append of all, one event on one stream reserving and releasing nothing, as
/// one plain statement: no PL/pgSQL call, no array arguments, no JSON answer to build and parse.
/// The event is its command's only record: a first run of the same command id is found by the
/// insert (`ON CONFLICT` on the command id, a run still in flight waited for) or, if recorded in
/// `processed_commands` (an append of another shape), by the `NOT EXISTS`; either way no row
/// comes back. The expected version is enforced by the unique (stream_id, version): a writer that
/// lost the race gets a unique violation once the winner commits. No stream lock is needed: only
/// appends that check a stream they do not write (several streams) need one, and this one reads
/// no stream but its own. (Sealed appends still take `ledger_append`'s path for the same shape.)
fn single_event_insert(request: &AppendRequest) -> Option<QueryScalar<'_, Postgres, i64, PgArguments>> {
    let [stream] = request.streams.as_slice() else {
        return None;
    };
    let [event] = stream.events.as_slice() else {
        return None;
    };
    if !request.reserve.is_empty() || !request.release.is_empty() {
        return None;
    }
    let query = sqlx::query_scalar(
        "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, metadata,
                             topic_context, command_id)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
         WHERE NOT EXISTS (SELECT FROM processed_commands c WHERE c.command_id = $9 AND c.result <> 'null'::jsonb)
         ON CONFLICT (command_id) WHERE command_id IS NOT NULL DO NOTHING
         RETURNING global_position",
    )
    .bind(stream.stream_id)
    .bind(stream.stream_type)
    .bind(stream.expected.current() + 1)
    .bind(event.event_type.as_str())
    .bind(event.schema_version)
    .bind(&event.payload)
    .bind(sqlx::types::Json(&request.metadata))
    .bind(stream.context.name())
    .bind(request.metadata.command_id);
    Some(query)
}

/// The call of `ledger_append` for `request` (its streams sorted by id).
fn append_call(request: &AppendRequest) -> QueryScalar<'_, Postgres, Value, PgArguments> {
    let streams = &request.streams;
    let events = || streams.iter().flat_map(|s| &s.events);
    sqlx::query_scalar(
        "SELECT ledger_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(request.metadata.command_id)
    .bind(sqlx::types::Json(&request.metadata))
    .bind(streams.iter().map(|s| s.stream_id).collect::<Vec<_>>())
    .bind(streams.iter().map(|s| s.stream_type).collect::<Vec<_>>())
    .bind(streams.iter().map(|s| s.context.name()).collect::<Vec<_>>())
    .bind(streams.iter().map(|s| s.expected.current()).collect::<Vec<_>>())
    .bind(streams.iter().map(|s| s.events.len() as i32).collect::<Vec<_>>())
    .bind(events().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind(events().map(|e| e.schema_version).collect::<Vec<_>>())
    .bind(events().map(|e| &e.payload).collect::<Vec<_>>())
    .bind(request.reserve.iter().map(|r| r.scope).collect::<Vec<_>>())
    .bind(
        request
            .reserve
            .iter()
            .map(|r| r.value.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(request.reserve.iter().map(|r| r.stream_id).collect::<Vec<_>>())
    .bind(
        request
            .release
            .iter()
            .map(|(scope, _)| *scope)
            .collect::<Vec<_>>(),
    )
    .bind(
        request
            .release
            .iter()
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>(),
    )
}

/// What `ledger_append` answered: the new result, or the first one of a repeated command id.
fn decode_result(outcome: Value) -> Result<Appended, LedgerError> {
    #[derive(Deserialize)]
    struct Outcome {
        replayed: bool,
        result: Appended,
    }
    let outcome: Outcome = serde_json::from_value(outcome).map_err(|source| LedgerError::Codec {
        event_type: "result".into(),
        schema_version: 1,
        source,
    })?;
    Ok(Appended {
        replayed: outcome.replayed,
        ..outcome.result
    })
}

/// A failed append, sorted: a lost race (worth checking for a first run of the same command
/// id) or anything else.
enum ConflictOr {
    Conflict(LedgerError),
    Other(LedgerError),
}

/// Name the error of a failed append: a version conflict (`WU409`, or the unique stream version
/// as a guard), a taken reservation, a concurrent first run of the same command id.
fn conflict(error: LedgerError, request: &AppendRequest) -> ConflictOr {
    let first_stream = || request.streams.first().map(|s| s.stream_id).unwrap_or_default();
    let LedgerError::Database(sqlx::Error::Database(db)) = &error else {
        return ConflictOr::Other(error);
    };
    if db.code().as_deref() == Some(VERSION_CONFLICT) {
        let stream_id = db.message().parse().unwrap_or_else(|_| first_stream());
        return ConflictOr::Conflict(LedgerError::VersionConflict { stream_id });
    }
    // Matched by constraint name, never by error code alone.
    match db.constraint() {
        Some("events_stream_version_key") => ConflictOr::Conflict(LedgerError::VersionConflict {
            stream_id: first_stream(),
        }),
        Some("processed_commands_pkey" | "events_command_id") => ConflictOr::Conflict(error),
        Some("reservations_pkey") => {
            let detail = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|e| e.detail())
                .unwrap_or_default();
            let scope = request
                .reserve
                .iter()
                .map(|r| r.scope)
                .find(|scope| detail.contains(&format!("=({scope}, ")))
                .or_else(|| request.reserve.first().map(|r| r.scope))
                .unwrap_or("value");
            ConflictOr::Other(LedgerError::ReservationTaken { scope })
        }
        _ => ConflictOr::Other(error),
    }
}

/// The SQLSTATE `ledger_append` raises when a stream is not at its expected version.
const VERSION_CONFLICT: &str = "WU409";

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
