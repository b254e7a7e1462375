//! The `personal_data_keys` table: one data key per person, wrapped by a master key; erasing a
//! person empties their row for good (a tombstone: no new key is ever made for them).

use chacha20poly1305::{
    Key, XChaCha20Poly1305,
    aead::{KeyInit, OsRng},
};
use domain::privacy::PersonalData;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashMap;
use uuid::Uuid;

use super::{Keyring, PrivacyError, envelope};

/// The data keys one transaction seals with, each read (or made) once.
#[derive(Default)]
pub struct Sealer {
    keys: HashMap<Uuid, Key>,
}

impl Sealer {
    /// Seal `personal`'s fields of `payload` with its subject's key ([`for_writing`]).
    pub async fn seal(
        &mut self,
        conn: &mut PgConnection,
        keyring: &Keyring,
        payload: &mut Value,
        personal: &PersonalData,
    ) -> Result<(), PrivacyError> {
        let subject = personal.subject.as_uuid();
        let key = match self.keys.get(&subject) {
            Some(key) => *key,
            None => {
                let key = for_writing(conn, keyring, subject).await?;
                self.keys.insert(subject, key);
                key
            }
        };
        envelope::seal(payload, personal, &key)
    }
}

/// The data key of `subject` for writing, made (and wrapped) on first use. Runs in the append's
/// transaction, so a key made for an append that rolls back is rolled back with it.
pub async fn for_writing(
    conn: &mut PgConnection,
    keyring: &Keyring,
    subject: Uuid,
) -> Result<Key, PrivacyError> {
    let fresh = XChaCha20Poly1305::generate_key(&mut OsRng);
    let (master_key_id, wrapped) = keyring.wrap(subject, &fresh)?;
    // Inserted, or else the stored row: a concurrent first use is waited for and its row returned
    // (tested); read once more should the statement return nothing.
    let inserted = sqlx::query(
        "WITH inserted AS (
             INSERT INTO personal_data_keys (subject_id, master_key_id, wrapped_key) VALUES ($1, $2, $3)
             ON CONFLICT (subject_id) DO NOTHING RETURNING master_key_id, wrapped_key)
         SELECT master_key_id, wrapped_key FROM inserted
         UNION ALL SELECT master_key_id, wrapped_key FROM personal_data_keys WHERE subject_id = $1",
    )
    .bind(subject)
    .bind(&master_key_id)
    .bind(&wrapped)
    .fetch_optional(&mut *conn)
    .await?;
    let row = match inserted {
        Some(row) => row,
        None => {
            sqlx::query("SELECT master_key_id, wrapped_key FROM personal_data_keys WHERE subject_id = $1")
                .bind(subject)
                .fetch_one(&mut *conn)
                .await?
        }
    };
    let id: Option<String> = row.try_get("master_key_id")?;
    let stored: Option<Vec<u8>> = row.try_get("wrapped_key")?;
    match (id, stored) {
        (Some(id), Some(stored)) => keyring.unwrap_key(subject, &id, &stored),
        _ => Err(PrivacyError::Erased(subject)),
    }
}

/// The data keys of those of `subjects` who have one (the erased and the unknown are left out).
/// A key that does not unwrap is left out too, and logged: its fields read as redacted.
pub async fn for_reading(
    pool: &PgPool,
    keyring: &Keyring,
    subjects: &[Uuid],
) -> Result<HashMap<Uuid, Key>, PrivacyError> {
    if subjects.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT subject_id, master_key_id, wrapped_key FROM personal_data_keys
         WHERE subject_id = ANY($1) AND wrapped_key IS NOT NULL",
    )
    .bind(subjects)
    .fetch_all(pool)
    .await?;
    let mut keys = HashMap::with_capacity(rows.len());
    for row in rows {
        let subject: Uuid = row.try_get("subject_id")?;
        let id: String = row.try_get("master_key_id")?;
        let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
        match keyring.unwrap_key(subject, &id, &wrapped) {
            Ok(key) => {
                keys.insert(subject, key);
            }
            Err(error) => {
                metrics::counter!("workup_personal_keys_unusable_total").increment(1);
                tracing::error!(%subject, master_key_id = %id, %error, "a personal data key does not unwrap: its fields read as redacted");
            }
        }
    }
    Ok(keys)
}

/// Whether `subject`'s data key was destroyed.
pub async fn is_erased(pool: &PgPool, subject: Uuid) -> Result<bool, PrivacyError> {
    let erased: Option<bool> =
        sqlx::query_scalar("SELECT erased_at IS NOT NULL FROM personal_data_keys WHERE subject_id = $1")
            .bind(subject)
            .fetch_optional(pool)
            .await?;
    Ok(erased.unwrap_or(false))
}

/// Destroy `subject`'s data key (in the erasing append's transaction), leaving a tombstone.
pub async fn erase(conn: &mut PgConnection, subject: Uuid) -> Result<(), PrivacyError> {
    sqlx::query(
        "INSERT INTO personal_data_keys (subject_id, master_key_id, wrapped_key, erased_at)
         VALUES ($1, NULL, NULL, clock_timestamp())
         ON CONFLICT (subject_id) DO UPDATE
         SET master_key_id = NULL, wrapped_key = NULL,
             erased_at = COALESCE(personal_data_keys.erased_at, clock_timestamp())",
    )
    .bind(subject)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rewrap up to `limit` data keys not wrapped by the current master key with it; how many were.
/// The data keys themselves (and so the ledger) do not change.
pub async fn rotate(pool: &PgPool, keyring: &Keyring, limit: i64) -> Result<u64, PrivacyError> {
    let current = keyring.current_id();
    let rows = sqlx::query(
        "SELECT subject_id, master_key_id, wrapped_key FROM personal_data_keys
         WHERE wrapped_key IS NOT NULL AND master_key_id <> $1 LIMIT $2",
    )
    .bind(current)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut rewrapped = 0;
    for row in rows {
        let subject: Uuid = row.try_get("subject_id")?;
        let old: String = row.try_get("master_key_id")?;
        let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
        let key = keyring.unwrap_key(subject, &old, &wrapped)?;
        let (id, wrapped_again) = keyring.wrap(subject, &key)?;
        // Guarded: a key erased meanwhile stays erased.
        rewrapped += sqlx::query(
            "UPDATE personal_data_keys SET master_key_id = $2, wrapped_key = $3
             WHERE subject_id = $1 AND master_key_id = $4",
        )
        .bind(subject)
        .bind(id)
        .bind(wrapped_again)
        .bind(old)
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok(rewrapped)
}

/// How many data keys each master key wraps, and how many people are erased.
pub async fn census(pool: &PgPool) -> Result<Vec<(Option<String>, i64)>, PrivacyError> {
    let rows = sqlx::query(
        "SELECT master_key_id, count(*) AS keys FROM personal_data_keys GROUP BY master_key_id ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("master_key_id")?, r.try_get("keys")?)))
        .collect()
}
