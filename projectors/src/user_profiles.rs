//! Users → the MongoDB `users` collection of public profiles (never the email or the
//! password hash). Each event rewrites the whole document at the event's version: the
//! MongoDB-wire stand-in has no positional updates, and a whole document is idempotent.

use domain::{
    Aggregate, Role, Timestamp, UserId,
    users::{PersonName, User, UserEvent},
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
    mongo::{ProfileItemView, UserProfile, UserProfiles},
};

/// Projects user streams into public profiles.
pub struct UserProfilesProjector {
    /// The collection written.
    pub profiles: UserProfiles,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
}

impl EventHandler for UserProfilesProjector {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.stream_type != User::STREAM_TYPE {
            return Ok(());
        }
        let profile = match event.decode::<UserEvent>(&self.upcasters)? {
            UserEvent::ClientRegistered {
                user_id,
                name,
                registered_at,
                ..
            } => registered(user_id, Role::Client, &name, registered_at, event.version),
            UserEvent::FreelancerRegistered {
                user_id,
                name,
                registered_at,
                ..
            } => registered(user_id, Role::Freelancer, &name, registered_at, event.version),
            change => {
                let current = self.profiles.get(event.stream_id).await?.ok_or_else(|| {
                    format!(
                        "user {} not projected before version {}",
                        event.stream_id, event.version
                    )
                })?;
                if current.version >= event.version {
                    return Ok(());
                }
                UserProfile {
                    version: event.version,
                    ..changed(current, change)
                }
            }
        };
        self.profiles.upsert(&profile).await?;
        Ok(())
    }
}

fn registered(id: UserId, role: Role, name: &PersonName, at: Timestamp, version: i64) -> UserProfile {
    UserProfile {
        id: id.to_string(),
        role,
        name: name.as_str().to_owned(),
        headline: String::new(),
        bio: String::new(),
        photo: None,
        resume: None,
        items: Vec::new(),
        registered_at: at.as_datetime(),
        deleted: false,
        version,
    }
}

/// The profile after a change event (registrations are handled by [`registered`]).
fn changed(mut p: UserProfile, event: UserEvent) -> UserProfile {
    match event {
        UserEvent::ClientRegistered { .. } | UserEvent::FreelancerRegistered { .. } => {}
        UserEvent::ProfileUpdated { profile, .. } => {
            p.name = profile.name.as_str().to_owned();
            p.headline = profile.headline;
            p.bio = profile.bio;
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
                section,
                id: item_id,
                title: item.title,
                details: item.details,
            };
            match p.items.iter_mut().find(|i| i.id == item_id) {
                Some(existing) => *existing = view,
                None => p.items.push(view),
            }
        }
        UserEvent::ProfileItemRemoved { item_id, .. } => p.items.retain(|i| i.id != item_id),
        UserEvent::PhotoChanged { photo, .. } => p.photo = photo,
        UserEvent::ResumeChanged { resume, .. } => p.resume = resume,
        UserEvent::UserDeleted { .. } => {
            p = UserProfile {
                deleted: true,
                ..registered_blank(p)
            };
        }
    }
    p
}

/// A profile stripped of everything the user wrote (kept as a tombstone).
fn registered_blank(p: UserProfile) -> UserProfile {
    UserProfile {
        name: String::new(),
        headline: String::new(),
        bio: String::new(),
        photo: None,
        resume: None,
        items: Vec::new(),
        ..p
    }
}
