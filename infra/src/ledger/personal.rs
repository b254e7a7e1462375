//! Personal fields on the ledger's side (DESIGN §4, [`crate::privacy`]): sealed with their
//! subject's key when appended (`append.rs`), stored and published sealed, opened here for the
//! readers that need them (login, profiles, proposals' pitches). Readers that do not open them
//! decode the placeholders ([`RecordedEvent::decode`]).

use domain::{
    DomainEvent, UserId,
    jobs::ProposalEvent,
    users::{User, UserEvent},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{Postgres, Row, Transaction};
use std::collections::BTreeSet;
use uuid::Uuid;

use super::{Ledger, LedgerError, NewEvent, RecordedEvent};
use crate::privacy::{envelope, keys};

/// The one-off data migration sealing events recorded in clear before sealing existed.
const LEGACY_SEALING: &str = "20261130_seal_personal_data";

/// Events re-sealed per read of the legacy migration.
const LEGACY_PAGE: i64 = 1_000;

impl Ledger {
    /// Open the sealed personal fields of `events` with their subjects' keys (one query for all).
    /// The fields of an erased person, or of a seal that does not open (a wrong key, altered
    /// data: logged), become their placeholders; only a database failure is an error. Returns
    /// how many events had their fields opened.
    pub async fn open_personal_data(&self, events: &mut [RecordedEvent]) -> Result<usize, LedgerError> {
        let subjects: Vec<Option<Uuid>> = events.iter().map(|e| envelope::subject(&e.payload)).collect();
        let wanted: BTreeSet<Uuid> = subjects.iter().flatten().copied().collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let wanted: Vec<Uuid> = wanted.into_iter().collect();
        let keys = keys::for_reading(&self.pool(), &self.keyring, &wanted).await?;
        let mut opened_events = 0;
        for (event, subject) in events.iter_mut().zip(subjects) {
            let Some(subject) = subject else {
                continue;
            };
            let opened = keys
                .get(&subject)
                .map(|key| envelope::open(&mut event.payload, key));
            match opened {
                Some(Ok(())) => opened_events += 1,
                Some(Err(error)) => {
                    metrics::counter!("workup_personal_data_unopened_total").increment(1);
                    tracing::error!(%subject, position = event.global_position, %error, "sealed personal data does not open: read as redacted");
                    envelope::redact(&mut event.payload);
                }
                // Erased (or never had a key): the placeholders.
                None => envelope::redact(&mut event.payload),
            }
        }
        Ok(opened_events)
    }

    /// Whether `subject` was erased (their personal data key destroyed).
    pub async fn is_erased(&self, subject: Uuid) -> Result<bool, LedgerError> {
        Ok(keys::is_erased(&self.pool(), subject).await?)
    }

    /// Seal the personal data of the events recorded before it was sealed, once per ledger
    /// (command-api does it at start, with its master keys checked, under an advisory lock:
    /// other instances wait for it and find it done). Each event is decoded with today's upcasters and stored again at
    /// today's schema with its personal fields sealed (schema-1 `ProposalUpdated` gets its
    /// author from the proposal's first event). People whose account was already deleted are
    /// then erased: their keys destroyed. Returns how many events were sealed.
    ///
    /// Copies outside this database are not changed: messages already on Kafka keep their clear
    /// fields until the topics' retention removes them, and read models built from them (a
    /// deleted freelancer's pitches) are cleaned by `control replay rebuild`.
    pub async fn seal_legacy_personal_data(&self) -> Result<u64, LedgerError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(LEGACY_SEALING)
            .execute(&mut *tx)
            .await?;
        let done: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ledger_data_migrations WHERE name = $1)")
                .bind(LEGACY_SEALING)
                .fetch_one(&mut *tx)
                .await?;
        if done {
            tx.commit().await?;
            return Ok(0);
        }
        let mut sealed = 0;
        let mut after = 0_i64;
        let mut sealer = keys::Sealer::default();
        loop {
            let rows = sqlx::query(
                "SELECT global_position, stream_id, stream_type, event_type, schema_version, payload
                 FROM events
                 WHERE global_position > $1 AND stream_type IN ('user', 'proposal') AND NOT payload ? '$personal'
                 ORDER BY global_position LIMIT $2",
            )
            .bind(after)
            .bind(LEGACY_PAGE)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("global_position")?;
            for row in &rows {
                let stream_id: Uuid = row.try_get("stream_id")?;
                let event_type: String = row.try_get("event_type")?;
                let schema_version: i32 = row.try_get("schema_version")?;
                let payload = self
                    .upcasters
                    .lift(&event_type, schema_version, row.try_get("payload")?);
                let new = match row.try_get::<&str, _>("stream_type")? {
                    "user" => reencode::<UserEvent>(&event_type, payload)?,
                    _ => {
                        let mut event = decode::<ProposalEvent>(&event_type, payload)?;
                        if let ProposalEvent::ProposalUpdated { freelancer_id, .. } = &mut event
                            && freelancer_id.as_uuid().is_nil()
                        {
                            *freelancer_id = proposal_author(&mut tx, stream_id).await?;
                        }
                        NewEvent::encode(&event)?
                    }
                };
                let Some(personal) = new.personal else {
                    continue;
                };
                let mut payload = new.payload;
                sealer
                    .seal(&mut tx, &self.keyring, &mut payload, &personal)
                    .await?;
                sqlx::query("UPDATE events SET payload = $2, schema_version = $3 WHERE global_position = $1")
                    .bind(row.try_get::<i64, _>("global_position")?)
                    .bind(payload)
                    .bind(new.schema_version)
                    .execute(&mut *tx)
                    .await?;
                sealed += 1;
            }
        }
        let deleted: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT stream_id FROM events WHERE stream_type = $1 AND event_type = 'UserDeleted'",
        )
        .bind(<User as domain::Aggregate>::STREAM_TYPE)
        .fetch_all(&mut *tx)
        .await?;
        for subject in deleted {
            keys::erase(&mut tx, subject).await?;
        }
        sqlx::query("INSERT INTO ledger_data_migrations (name) VALUES ($1)")
            .bind(LEGACY_SEALING)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if sealed > 0 {
            tracing::info!(sealed, "personal data of earlier events sealed");
        }
        Ok(sealed)
    }
}

fn decode<E: DeserializeOwned>(event_type: &str, payload: Value) -> Result<E, LedgerError> {
    serde_json::from_value(payload).map_err(|source| LedgerError::Codec {
        event_type: event_type.to_owned(),
        schema_version: 0,
        source,
    })
}

fn reencode<E: DomainEvent>(event_type: &str, payload: Value) -> Result<NewEvent, LedgerError> {
    NewEvent::encode(&decode::<E>(event_type, payload)?)
}

/// The freelancer who submitted proposal `stream_id` (its first event names them in clear).
async fn proposal_author(tx: &mut Transaction<'_, Postgres>, stream_id: Uuid) -> Result<UserId, LedgerError> {
    let author: Option<String> = sqlx::query_scalar(
        "SELECT payload->>'freelancer_id' FROM events WHERE stream_id = $1 AND version = 1",
    )
    .bind(stream_id)
    .fetch_optional(&mut **tx)
    .await?;
    let author = author
        .and_then(|a| Uuid::parse_str(&a).ok())
        .ok_or_else(|| LedgerError::Codec {
            event_type: "ProposalSubmitted".into(),
            schema_version: 1,
            source: serde::de::Error::custom(format!("proposal {stream_id} has no author")),
        })?;
    Ok(UserId::from_uuid(author))
}
