//! Users read model (DESIGN §2, §6): the MongoDB collection `users`, one document per user
//! stream, shared by the users projector (writes) and query-api (reads).
//!
//! A document holds what an operator would query, in the types they would query it with: the
//! id as `_id` (text), `version` (Int64: the stream version the document reflects), `role`,
//! `status` (`active` | `deleted`), `email`, `name`, `headline`, `bio`, `photo` and `resume`
//! (links or null), one array per profile section (`skills`, `languages`, `education`,
//! `experience`, `achievements`; items `{id, title, details}`), and `registered_at` (a BSON
//! date). A deleted account keeps only `_id`, `version`, `role`, `status` and `registered_at`:
//! a tombstone, so that a redelivered older event cannot bring the profile back; it is never
//! served.
//!
//! Every write is guarded by the stored version, so applying an event twice, or an older event
//! after a newer one, changes nothing, even when two consumers briefly project the same stream:
//! - the registration is the only upsert (a replacement filtered on `version < v`: a document
//!   already there makes it hit the unique `_id`, which means "already applied");
//! - field changes and deletion are single `update_one`s filtered on `version < v`;
//! - removing an item is an atomic `$pull` filtered on `version < v`;
//! - adding or replacing an item rewrites that section's array, compare-and-swap on the exact
//!   stored version (read, then `update_one` filtered on `version == read version`, again on a
//!   miss): the MongoDB-wire stand-in has no positional (`$`, `$[id]`) updates and stores a
//!   `$push`ed document as text (INFRA-NOTES), so this is the one read before a write.
//!
//! The stand-in also turns a boolean or a date given to `$set` on an existing document into a
//! number or text, hence `status` as text and dates written only by the registration's
//! replacement.

use chrono::{DateTime, Utc};
use domain::{Role, users::ProfileSection};
use mongodb::{
    Collection, Database,
    bson::{self, Bson, Document, doc},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::StoreError;

/// The collection's name.
pub const COLLECTION: &str = "users";
/// The stream type this read model projects (for consistency tokens).
pub const STREAM_TYPE: &str = "user";
/// Compare-and-swap attempts of one item write before the projector retries it later.
const CAS_ATTEMPTS: usize = 16;

/// One item of a profile section, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileItemView {
    /// The item's id.
    #[schema(value_type = uuid::Uuid)]
    pub id: String,
    /// What it is.
    pub title: String,
    /// Details (level, school, dates, ...).
    pub details: String,
}

/// A user's public profile: what any signed-in user may read (no email, nothing private).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicProfile {
    /// The user's id.
    pub id: Uuid,
    /// `client`, `freelancer` or `admin`.
    #[schema(value_type = String, example = "freelancer")]
    pub role: Role,
    /// Display name.
    pub name: String,
    /// One-line pitch.
    pub headline: String,
    /// About.
    pub bio: String,
    /// Link to the profile photo.
    pub photo: Option<String>,
    /// Link to the resume (freelancers).
    pub resume: Option<String>,
    /// Skills (freelancers).
    pub skills: Vec<ProfileItemView>,
    /// Spoken languages (freelancers).
    pub languages: Vec<ProfileItemView>,
    /// Degrees and courses (freelancers).
    pub education: Vec<ProfileItemView>,
    /// Past positions (freelancers).
    pub experience: Vec<ProfileItemView>,
    /// Awards and certificates (freelancers).
    pub achievements: Vec<ProfileItemView>,
    /// When the account was created (RFC 3339).
    pub registered_at: DateTime<Utc>,
}

/// The caller's own profile: the public one plus the private fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OwnProfile {
    /// Login email (private).
    pub email: String,
    /// Everything public.
    #[serde(flatten)]
    pub profile: PublicProfile,
}

/// A new account, as its registration event tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The user's id (the stream id).
    pub id: Uuid,
    /// Client or freelancer.
    pub role: Role,
    /// Login email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// When the account was created.
    pub registered_at: DateTime<Utc>,
}

/// What a version-guarded write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The change is stored; the document is at the event's version.
    Applied,
    /// The document already reflects this version or a newer one (or is a tombstone):
    /// nothing changed.
    Stale,
    /// There is no document: the registration has not been projected yet.
    Missing,
    /// Other writers kept moving the document while this one tried: try again later.
    Contended,
}

/// Account state, as text (see the module notes on booleans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Active,
    Deleted,
}

/// The stored document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserDocument {
    #[serde(rename = "_id")]
    id: String,
    version: i64,
    role: Role,
    status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    headline: String,
    #[serde(default)]
    bio: String,
    #[serde(default)]
    photo: Option<String>,
    #[serde(default)]
    resume: Option<String>,
    #[serde(default)]
    skills: Vec<ProfileItemView>,
    #[serde(default)]
    languages: Vec<ProfileItemView>,
    #[serde(default)]
    education: Vec<ProfileItemView>,
    #[serde(default)]
    experience: Vec<ProfileItemView>,
    #[serde(default)]
    achievements: Vec<ProfileItemView>,
    registered_at: bson::DateTime,
}

impl UserDocument {
    /// The public view, unless the account was deleted.
    fn public(self) -> Result<Option<(PublicProfile, Option<String>)>, StoreError> {
        if self.status == Status::Deleted {
            return Ok(None);
        }
        let id = self
            .id
            .parse()
            .map_err(|_| StoreError::Codec(format!("user document `{}` has no uuid id", self.id)))?;
        let registered_at = DateTime::from_timestamp_millis(self.registered_at.timestamp_millis())
            .ok_or_else(|| StoreError::Codec(format!("user {id}: registered_at out of range")))?;
        let profile = PublicProfile {
            id,
            role: self.role,
            name: self.name.unwrap_or_default(),
            headline: self.headline,
            bio: self.bio,
            photo: self.photo,
            resume: self.resume,
            skills: self.skills,
            languages: self.languages,
            education: self.education,
            experience: self.experience,
            achievements: self.achievements,
            registered_at,
        };
        Ok(Some((profile, self.email)))
    }
}

/// The stored version alone.
#[derive(Debug, Deserialize)]
struct StoredVersion {
    version: i64,
}

/// The field of a profile section.
pub fn section_field(section: ProfileSection) -> &'static str {
    match section {
        ProfileSection::Skill => "skills",
        ProfileSection::Language => "languages",
        ProfileSection::Education => "education",
        ProfileSection::Experience => "experience",
        ProfileSection::Achievement => "achievements",
    }
}

/// Every field holding personal data, removed from a tombstone.
const PERSONAL_FIELDS: [&str; 11] = [
    "email",
    "name",
    "headline",
    "bio",
    "photo",
    "resume",
    "skills",
    "languages",
    "education",
    "experience",
    "achievements",
];

/// The `users` collection.
#[derive(Debug, Clone)]
pub struct UserProfiles {
    documents: Collection<UserDocument>,
    raw: Collection<Document>,
}

impl UserProfiles {
    /// The collection in `db`.
    pub fn new(db: &Database) -> Self {
        Self {
            documents: db.collection(COLLECTION),
            raw: db.collection(COLLECTION),
        }
    }

    /// Store a new account at `version` (its registration event): the only upsert.
    pub async fn register(&self, user: &NewUser, version: i64) -> Result<Write, StoreError> {
        let document = UserDocument {
            id: user.id.to_string(),
            version,
            role: user.role,
            status: Status::Active,
            email: Some(user.email.clone()),
            name: Some(user.name.clone()),
            headline: String::new(),
            bio: String::new(),
            photo: None,
            resume: None,
            skills: Vec::new(),
            languages: Vec::new(),
            education: Vec::new(),
            experience: Vec::new(),
            achievements: Vec::new(),
            registered_at: bson::DateTime::from_millis(user.registered_at.timestamp_millis()),
        };
        let result = self
            .documents
            .replace_one(older_than(user.id, version), &document)
            .upsert(true)
            .await;
        match result {
            Ok(_) => Ok(Write::Applied),
            // A document at this version or a newer one exists: the upsert's insert hit `_id`.
            Err(e) if is_duplicate_key(&e) => Ok(Write::Stale),
            Err(e) => Err(e.into()),
        }
    }

    /// Replace the name, headline and bio.
    pub async fn update_profile(
        &self,
        id: Uuid,
        version: i64,
        name: &str,
        headline: &str,
        bio: &str,
    ) -> Result<Write, StoreError> {
        self.guarded(
            id,
            version,
            doc! {"$set": {"version": version, "name": name, "headline": headline, "bio": bio}},
        )
        .await
    }

    /// Set or clear the photo link.
    pub async fn set_photo(&self, id: Uuid, version: i64, link: Option<&str>) -> Result<Write, StoreError> {
        self.guarded(id, version, doc! {"$set": {"version": version, "photo": link}})
            .await
    }

    /// Set or clear the resume link.
    pub async fn set_resume(&self, id: Uuid, version: i64, link: Option<&str>) -> Result<Write, StoreError> {
        self.guarded(id, version, doc! {"$set": {"version": version, "resume": link}})
            .await
    }

    /// Add `item` to `section`, or replace the item with its id (both events land here, so a
    /// redelivered addition never duplicates an item). Compare-and-swap on the stored version.
    pub async fn put_item(
        &self,
        id: Uuid,
        version: i64,
        section: ProfileSection,
        item: ProfileItemView,
    ) -> Result<Write, StoreError> {
        let field = section_field(section);
        for _ in 0..CAS_ATTEMPTS {
            let Some(current) = self.documents.find_one(doc! {"_id": id.to_string()}).await? else {
                return Ok(Write::Missing);
            };
            if current.version >= version || current.status == Status::Deleted {
                return Ok(Write::Stale);
            }
            let mut items = match section {
                ProfileSection::Skill => current.skills,
                ProfileSection::Language => current.languages,
                ProfileSection::Education => current.education,
                ProfileSection::Experience => current.experience,
                ProfileSection::Achievement => current.achievements,
            };
            match items.iter_mut().find(|i| i.id == item.id) {
                Some(existing) => *existing = item.clone(),
                None => items.push(item.clone()),
            }
            let items = bson::to_bson(&items).map_err(|e| StoreError::Codec(e.to_string()))?;
            let swapped = self
                .raw
                .update_one(
                    doc! {"_id": id.to_string(), "version": current.version, "status": "active"},
                    doc! {"$set": {"version": version, field: items}},
                )
                .await?;
            if swapped.matched_count == 1 {
                return Ok(Write::Applied);
            }
        }
        Ok(Write::Contended)
    }

    /// Remove the item `item_id` from `section` (an atomic `$pull`).
    pub async fn remove_item(
        &self,
        id: Uuid,
        version: i64,
        section: ProfileSection,
        item_id: Uuid,
    ) -> Result<Write, StoreError> {
        let field = section_field(section);
        self.guarded(
            id,
            version,
            doc! {"$set": {"version": version}, "$pull": {field: {"id": item_id.to_string()}}},
        )
        .await
    }

    /// Delete the account: drop every personal field, keep a tombstone at `version`.
    pub async fn delete(&self, id: Uuid, version: i64) -> Result<Write, StoreError> {
        let unset: Document = PERSONAL_FIELDS
            .iter()
            .map(|f| ((*f).to_owned(), Bson::from("")))
            .collect();
        let result = self
            .raw
            .update_one(
                older_than(id, version),
                doc! {"$set": {"version": version, "status": "deleted"}, "$unset": unset},
            )
            .await?;
        self.outcome(id, result.matched_count).await
    }

    /// The owner's view of `id` (with the email); `None` if not projected or deleted.
    pub async fn own(&self, id: Uuid) -> Result<Option<OwnProfile>, StoreError> {
        let Some(document) = self.documents.find_one(doc! {"_id": id.to_string()}).await? else {
            return Ok(None);
        };
        Ok(document.public()?.map(|(profile, email)| OwnProfile {
            email: email.unwrap_or_default(),
            profile,
        }))
    }

    /// The public view of `id`; `None` if not projected or deleted.
    pub async fn public(&self, id: Uuid) -> Result<Option<PublicProfile>, StoreError> {
        let Some(document) = self.documents.find_one(doc! {"_id": id.to_string()}).await? else {
            return Ok(None);
        };
        Ok(document.public()?.map(|(profile, _)| profile))
    }

    /// The last version of user stream `id` this read model applied (tombstones included).
    pub async fn applied(&self, id: Uuid) -> Result<Option<i64>, StoreError> {
        let stored = self
            .raw
            .clone_with_type::<StoredVersion>()
            .find_one(doc! {"_id": id.to_string()})
            .projection(doc! {"version": 1})
            .await?;
        Ok(stored.map(|s| s.version))
    }

    /// Check the server answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.raw
            .client()
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(())
    }

    /// One `update_one` on an active document older than `version`.
    async fn guarded(&self, id: Uuid, version: i64, update: Document) -> Result<Write, StoreError> {
        let mut filter = older_than(id, version);
        filter.insert("status", "active");
        let result = self.raw.update_one(filter, update).await?;
        self.outcome(id, result.matched_count).await
    }

    /// What a guarded update that matched `matched` documents did: when none, tell a missing
    /// document (not registered yet: worth retrying) from a newer one (already applied).
    async fn outcome(&self, id: Uuid, matched: u64) -> Result<Write, StoreError> {
        if matched > 0 {
            return Ok(Write::Applied);
        }
        Ok(match self.applied(id).await? {
            None => Write::Missing,
            Some(_) => Write::Stale,
        })
    }
}

/// The filter of a version-guarded write of event `version` to user `id`.
fn older_than(id: Uuid, version: i64) -> Document {
    doc! {"_id": id.to_string(), "version": {"$lt": version}}
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        _ => error.to_string().contains("E11000") || error.to_string().contains("duplicate key"),
    }
}
