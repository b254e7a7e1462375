//! MongoDB read models: the `users` collection of public profiles (DESIGN §2).
//!
//! Writes are idempotent: a document carries the stream version it reflects, and an event
//! is applied only to a document at an older version (a conditional upsert; a newer document
//! makes the upsert hit the unique `_id`, which counts as "already applied").

use chrono::{DateTime, Utc};
use domain::{
    ProfileItemId, Role,
    users::{FileRef, ProfileSection},
};
use mongodb::{Client, Collection, Database, bson::doc, options::ClientOptions};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

use crate::{config::MongoConfig, store::StoreError};

/// Connect to the read-model database.
pub async fn connect(config: &MongoConfig) -> Result<Database, StoreError> {
    let mut options = ClientOptions::parse(&config.url).await?;
    options.app_name = Some("workup".into());
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.connect_timeout = Some(Duration::from_secs(5));
    Ok(Client::with_options(options)?.database(&config.database))
}

/// A user's public profile, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserProfile {
    /// The user's id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Client or freelancer.
    #[schema(value_type = String, example = "freelancer")]
    pub role: Role,
    /// Display name.
    pub name: String,
    /// One-line pitch.
    #[serde(default)]
    pub headline: String,
    /// About.
    #[serde(default)]
    pub bio: String,
    /// Profile photo reference.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub photo: Option<FileRef>,
    /// Resume reference.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub resume: Option<FileRef>,
    /// Freelancer profile items (skills, languages, education, experience, achievements).
    #[serde(default)]
    pub items: Vec<ProfileItemView>,
    /// When the account was created (RFC 3339).
    pub registered_at: DateTime<Utc>,
    /// The account was deleted: kept as a tombstone so a redelivered older event cannot
    /// bring the profile back; never served.
    #[serde(default)]
    pub deleted: bool,
    /// Stream version this document reflects.
    pub version: i64,
}

/// One item of a freelancer's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileItemView {
    /// Which list it belongs to.
    #[schema(value_type = String, example = "skill")]
    pub section: ProfileSection,
    /// The item's id.
    #[schema(value_type = uuid::Uuid)]
    pub id: ProfileItemId,
    /// What it is.
    pub title: String,
    /// Details.
    pub details: String,
}

/// The `users` collection.
#[derive(Debug, Clone)]
pub struct UserProfiles {
    collection: Collection<UserProfile>,
}

impl UserProfiles {
    /// The collection in `db`.
    pub fn new(db: &Database) -> Self {
        Self {
            collection: db.collection("users"),
        }
    }

    /// Write `profile` unless the stored one is at the same or a newer version.
    /// Returns whether it was written.
    pub async fn upsert(&self, profile: &UserProfile) -> Result<bool, StoreError> {
        let result = self
            .collection
            .replace_one(
                doc! {"_id": &profile.id, "version": {"$lt": profile.version}},
                profile,
            )
            .upsert(true)
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored document of `id` (tombstones included), if projected.
    pub async fn get(&self, id: Uuid) -> Result<Option<UserProfile>, StoreError> {
        Ok(self.collection.find_one(doc! {"_id": id.to_string()}).await?)
    }

    /// Check the server answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.collection
            .client()
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(())
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        _ => error.to_string().contains("E11000") || error.to_string().contains("duplicate key"),
    }
}
