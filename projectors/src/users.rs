//! Users → the MongoDB `users` collection ([`infra::read_models::users`]): one profile document
//! per user stream, with the email (served only to its owner) and never the password hash.
//! Each event becomes one version-guarded write, so a redelivered or older event changes
//! nothing (DESIGN §6). Personal fields are opened with their owner's key; an erased person's
//! read as placeholders, and their `UserDeleted` drops every personal field of the document.

use domain::{
    Aggregate,
    users::{User, UserEvent},
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{Ledger, RecordedEvent, Upcasters},
    read_models::users::{NewUser, ProfileItemView, UserProfiles, Write},
};

/// Projects user streams into profile documents.
pub struct UsersProjector {
    /// The collection written.
    pub profiles: UserProfiles,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
    /// Opens the personal fields.
    pub ledger: Ledger,
}

impl EventHandler for UsersProjector {
    #[tracing::instrument(skip_all, fields(stream_id = %event.stream_id, version = event.version, event_type = %event.event_type))]
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.stream_type != User::STREAM_TYPE {
            return Ok(());
        }
        let (id, version) = (event.stream_id, event.version);
        let profiles = &self.profiles;
        let mut opened = [event.clone()];
        self.ledger.open_personal_data(&mut opened).await?;
        let decoded = opened[0].decode::<UserEvent>(&self.upcasters)?;
        let write = match decoded {
            UserEvent::ClientRegistered {
                ref email,
                ref name,
                registered_at,
                ..
            }
            | UserEvent::FreelancerRegistered {
                ref email,
                ref name,
                registered_at,
                ..
            }
            | UserEvent::AdminRegistered {
                ref email,
                ref name,
                registered_at,
                ..
            } => {
                let user = NewUser {
                    id,
                    role: decoded.registered_role().ok_or("a registration without a role")?,
                    email: email.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    registered_at: registered_at.as_datetime(),
                };
                profiles.register(&user, version).await?
            }
            UserEvent::ProfileUpdated { profile, .. } => {
                profiles
                    .update_profile(
                        id,
                        version,
                        profile.name.as_str(),
                        &profile.headline,
                        &profile.bio,
                    )
                    .await?
            }
            UserEvent::ProfileItemAdded {
                section,
                item_id,
                item,
                ..
            }
            | UserEvent::ProfileItemUpdated {
                section,
                item_id,
                item,
                ..
            } => {
                let view = ProfileItemView {
                    id: item_id.to_string(),
                    title: item.title,
                    details: item.details,
                };
                profiles.put_item(id, version, section, view).await?
            }
            UserEvent::ProfileItemRemoved { section, item_id, .. } => {
                profiles
                    .remove_item(id, version, section, item_id.as_uuid())
                    .await?
            }
            UserEvent::PhotoChanged { photo, .. } => {
                profiles
                    .set_photo(id, version, photo.as_ref().map(|f| f.as_str()))
                    .await?
            }
            UserEvent::ResumeChanged { resume, .. } => {
                profiles
                    .set_resume(id, version, resume.as_ref().map(|f| f.as_str()))
                    .await?
            }
            UserEvent::UserDeleted { .. } => profiles.delete(id, version).await?,
        };
        match write {
            Write::Applied | Write::Stale => Ok(()),
            // Retried with backoff by the consumer, then parked (DESIGN §6).
            Write::Missing => Err(format!("user {id} not projected before version {version}").into()),
            Write::Contended => {
                Err(format!("user {id} version {version}: the document kept changing").into())
            }
        }
    }
}
