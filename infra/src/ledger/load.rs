//! Reading streams and folding them into aggregate state.

use domain::Aggregate;
use sqlx::Row;
use uuid::Uuid;

use super::{Ledger, LedgerError, RecordedEvent};

/// An aggregate folded from its stream, with the version it was folded at (0 = no stream).
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream's version (the expected version of the next append).
    pub version: i64,
}

const EVENT_COLUMNS: &str = "global_position, stream_id, stream_type, version, event_type, schema_version, payload, metadata, recorded_at";

impl Ledger {
    /// The events of a stream from `from_version` (inclusive, 1 = all), in order.
    pub async fn read_stream(
        &self,
        stream_id: Uuid,
        from_version: i64,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2 ORDER BY version"
        ))
        .bind(stream_id)
        .bind(from_version)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(recorded_event).collect()
    }

    /// Events with a global position in `(after, ..]`, at most `limit`, in position order
    /// (for replay and republishing; committed events only).
    pub async fn read_all(&self, after: i64, limit: i64) -> Result<Vec<RecordedEvent>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(recorded_event).collect()
    }

    /// Fold the stream `stream_id` into the aggregate `A`.
    pub async fn load<A: Aggregate>(&self, stream_id: Uuid) -> Result<Loaded<A>, LedgerError> {
        let empty = Loaded {
            state: A::default(),
            version: 0,
        };
        self.load_from(stream_id, empty).await
    }

    /// Fold only the events after `snapshot.version` into `snapshot` (a state saved earlier).
    /// Personal fields are opened only for an aggregate whose decisions read them
    /// ([`Aggregate::READS_PERSONAL_DATA`]); the others fold their placeholders.
    #[tracing::instrument(skip_all, fields(%stream_id, stream_type = A::STREAM_TYPE, from = snapshot.version))]
    pub async fn load_from<A: Aggregate>(
        &self,
        stream_id: Uuid,
        snapshot: Loaded<A>,
    ) -> Result<Loaded<A>, LedgerError> {
        let mut loaded = snapshot;
        let mut events = self.read_stream(stream_id, loaded.version + 1).await?;
        if A::READS_PERSONAL_DATA {
            self.open_personal_data(&mut events).await?;
        }
        for recorded in events {
            let event: A::Event = recorded.decode(self.upcasters())?;
            loaded.state.evolve(&event);
            loaded.version = recorded.version;
        }
        Ok(loaded)
    }
}

/// Map one `events` row.
pub(crate) fn recorded_event(row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, LedgerError> {
    let metadata: serde_json::Value = row.try_get("metadata")?;
    let event_type: String = row.try_get("event_type")?;
    let schema_version: i32 = row.try_get("schema_version")?;
    Ok(RecordedEvent {
        global_position: row.try_get("global_position")?,
        stream_id: row.try_get("stream_id")?,
        stream_type: row.try_get("stream_type")?,
        version: row.try_get("version")?,
        payload: row.try_get("payload")?,
        metadata: serde_json::from_value(metadata).map_err(|source| LedgerError::Codec {
            event_type: event_type.clone(),
            schema_version,
            source,
        })?,
        recorded_at: row.try_get("recorded_at")?,
        event_type,
        schema_version,
    })
}
