//! The User aggregate: registration and profile.

use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoundedContext, Context, DomainError, DomainEvent, EmailAddress, FieldError, PasswordHash,
    ProfileItemId, Role, Timestamp, UserId,
    privacy::{PersonalData, PersonalField},
};

/// Most items in one section of a freelancer's profile.
pub const MAX_ITEMS_PER_SECTION: usize = 50;

/// The editable public part of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileUpdate {
    /// Display name.
    pub name: PersonName,
    /// One-line pitch: at most 200 characters (empty clears it).
    pub headline: String,
    /// About: at most 5,000 characters.
    pub bio: String,
}

impl ProfileUpdate {
    /// Validate raw fields, collecting every field error.
    pub fn parse(name: &str, headline: &str, bio: &str) -> Result<Self, DomainError> {
        let mut errors = Vec::new();
        let name = PersonName::parse(name, "name").map_err(|e| errors.push(e)).ok();
        let headline = headline.trim();
        if headline.chars().count() > 200 {
            errors.push(FieldError::new("headline", "at most 200 characters"));
        }
        let bio = bio.trim();
        if bio.chars().count() > 5_000 {
            errors.push(FieldError::new("bio", "at most 5000 characters"));
        }
        match name {
            Some(name) if errors.is_empty() => Ok(Self {
                name,
                headline: headline.to_owned(),
                bio: bio.to_owned(),
            }),
            _ => Err(DomainError::Invalid(errors)),
        }
    }
}

/// The lists of a freelancer's profile (DESIGN §3: skills, languages, education, experience,
/// achievements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileSection {
    /// A skill, e.g. "Rust".
    Skill,
    /// A spoken language and level.
    Language,
    /// A degree or course.
    Education,
    /// A past position.
    Experience,
    /// An award or certificate.
    Achievement,
}

/// One item of a freelancer's profile: a title and free details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileItem {
    /// What it is: 1 to 200 characters.
    pub title: String,
    /// Details (level, school, dates, ..): at most 2,000 characters.
    pub details: String,
}

impl ProfileItem {
    /// Validate raw fields, collecting every field error.
    pub fn parse(title: &str, details: &str) -> Result<Self, DomainError> {
        let mut errors = Vec::new();
        let title = title.trim();
        if !(1..=200).contains(&title.chars().count()) {
            errors.push(FieldError::new("title", "1 to 200 characters"));
        }
        let details = details.trim();
        if details.chars().count() > 2_000 {
            errors.push(FieldError::new("details", "at most 2000 characters"));
        }
        if errors.is_empty() {
            Ok(Self {
                title: title.to_owned(),
                details: details.to_owned(),
            })
        } else {
            Err(DomainError::Invalid(errors))
        }
    }
}

/// A reference to a stored file (object key or URL), 1 to 500 characters; the bytes live elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileRef(String);

impl FileRef {
    /// Parse a reference; `field` names the input field in the error.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        if (1..=500).contains(&s.chars().count()) && !s.contains(char::is_whitespace) {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new(field, "1 to 500 characters, no spaces"))
        }
    }

    /// The reference.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's or company's display name: trimmed, 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    /// Parse a name; `field` names the input field in the error.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        match s.chars().count() {
            0 => Err(FieldError::new(field, "must not be empty")),
            1..=100 => Ok(Self(s.to_owned())),
            _ => Err(FieldError::new(field, "at most 100 characters")),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a new account is registered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The new user's id (v7, chosen by the caller).
    pub user_id: UserId,
    /// Login email (unique: reserved by the ledger in the same transaction).
    pub email: EmailAddress,
    /// argon2id hash of the password.
    pub password_hash: PasswordHash,
    /// Display name.
    pub name: PersonName,
}

/// Commands on a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Register a client account.
    RegisterClient(Registration),
    /// Register a freelancer account.
    RegisterFreelancer(Registration),
    /// Register an administrator (operator tooling only: the system actor, never a token).
    RegisterAdmin(Registration),
    /// The user edits their public profile.
    UpdateProfile(ProfileUpdate),
    /// A freelancer adds an item to a section of their profile.
    AddProfileItem {
        /// The section.
        section: ProfileSection,
        /// The new item's id (v7, chosen by the caller).
        item_id: ProfileItemId,
        /// The item.
        item: ProfileItem,
    },
    /// A freelancer replaces an item of their profile.
    UpdateProfileItem {
        /// The section.
        section: ProfileSection,
        /// The item.
        item_id: ProfileItemId,
        /// Its new content.
        item: ProfileItem,
    },
    /// A freelancer removes an item of their profile.
    RemoveProfileItem {
        /// The section.
        section: ProfileSection,
        /// The item.
        item_id: ProfileItemId,
    },
    /// The user sets (or clears) their photo.
    SetPhoto(Option<FileRef>),
    /// A freelancer sets (or clears) their resume.
    SetResume(Option<FileRef>),
    /// The user (or an admin, or an operator) deletes the account: its email becomes free again
    /// and the person is erased (their personal data key destroyed: see [`crate::privacy`]).
    DeleteAccount,
}

/// Events of a user stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    /// A client account was created.
    ClientRegistered {
        /// The user.
        user_id: UserId,
        /// Login email.
        email: EmailAddress,
        /// Password hash (never projected to read models).
        password_hash: PasswordHash,
        /// Display name.
        name: PersonName,
        /// When.
        registered_at: Timestamp,
    },
    /// A freelancer account was created.
    FreelancerRegistered {
        /// The user.
        user_id: UserId,
        /// Login email.
        email: EmailAddress,
        /// Password hash (never projected to read models).
        password_hash: PasswordHash,
        /// Display name.
        name: PersonName,
        /// When.
        registered_at: Timestamp,
    },
    /// An administrator account was created by an operator.
    AdminRegistered {
        /// The user.
        user_id: UserId,
        /// Login email.
        email: EmailAddress,
        /// Password hash (never projected to read models).
        password_hash: PasswordHash,
        /// Display name.
        name: PersonName,
        /// When.
        registered_at: Timestamp,
    },
    /// The user edited their public profile.
    ProfileUpdated {
        /// The user.
        user_id: UserId,
        /// The new profile.
        #[serde(flatten)]
        profile: ProfileUpdate,
        /// When.
        updated_at: Timestamp,
    },
    /// A freelancer added a profile item.
    ProfileItemAdded {
        /// The user.
        user_id: UserId,
        /// The section.
        section: ProfileSection,
        /// The item.
        item_id: ProfileItemId,
        /// Its content.
        #[serde(flatten)]
        item: ProfileItem,
        /// When.
        added_at: Timestamp,
    },
    /// A freelancer replaced a profile item.
    ProfileItemUpdated {
        /// The user.
        user_id: UserId,
        /// The section.
        section: ProfileSection,
        /// The item.
        item_id: ProfileItemId,
        /// Its new content.
        #[serde(flatten)]
        item: ProfileItem,
        /// When.
        updated_at: Timestamp,
    },
    /// A freelancer removed a profile item.
    ProfileItemRemoved {
        /// The user.
        user_id: UserId,
        /// The section.
        section: ProfileSection,
        /// The item.
        item_id: ProfileItemId,
        /// When.
        removed_at: Timestamp,
    },
    /// The user's photo changed (`None`: removed).
    PhotoChanged {
        /// The user.
        user_id: UserId,
        /// The new photo.
        photo: Option<FileRef>,
        /// When.
        changed_at: Timestamp,
    },
    /// A freelancer's resume changed (`None`: removed).
    ResumeChanged {
        /// The user.
        user_id: UserId,
        /// The new resume.
        resume: Option<FileRef>,
        /// When.
        changed_at: Timestamp,
    },
    /// The account was deleted; `email` may be reserved again.
    UserDeleted {
        /// The user.
        user_id: UserId,
        /// The email released.
        email: EmailAddress,
        /// When.
        deleted_at: Timestamp,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::ClientRegistered { .. } => "ClientRegistered",
            Self::FreelancerRegistered { .. } => "FreelancerRegistered",
            Self::AdminRegistered { .. } => "AdminRegistered",
            Self::ProfileUpdated { .. } => "ProfileUpdated",
            Self::ProfileItemAdded { .. } => "ProfileItemAdded",
            Self::ProfileItemUpdated { .. } => "ProfileItemUpdated",
            Self::ProfileItemRemoved { .. } => "ProfileItemRemoved",
            Self::PhotoChanged { .. } => "PhotoChanged",
            Self::ResumeChanged { .. } => "ResumeChanged",
            Self::UserDeleted { .. } => "UserDeleted",
        }
    }

    /// Everything about the person is personal except ids, the role, profile sections and times.
    fn personal_data(&self) -> Option<PersonalData> {
        const REGISTRATION: &[PersonalField] = &[
            PersonalField::email("email"),
            PersonalField::text("password_hash"),
            PersonalField::text("name"),
        ];
        const PROFILE: &[PersonalField] = &[
            PersonalField::text("name"),
            PersonalField::text("headline"),
            PersonalField::text("bio"),
        ];
        const ITEM: &[PersonalField] = &[PersonalField::text("title"), PersonalField::text("details")];
        const PHOTO: &[PersonalField] = &[PersonalField::optional("photo")];
        const RESUME: &[PersonalField] = &[PersonalField::optional("resume")];
        const DELETION: &[PersonalField] = &[PersonalField::email("email")];
        let (subject, fields) = match self {
            Self::ClientRegistered { user_id, .. }
            | Self::FreelancerRegistered { user_id, .. }
            | Self::AdminRegistered { user_id, .. } => (user_id, REGISTRATION),
            Self::ProfileUpdated { user_id, .. } => (user_id, PROFILE),
            Self::ProfileItemAdded { user_id, .. } | Self::ProfileItemUpdated { user_id, .. } => {
                (user_id, ITEM)
            }
            Self::PhotoChanged { user_id, .. } => (user_id, PHOTO),
            Self::ResumeChanged { user_id, .. } => (user_id, RESUME),
            Self::UserDeleted { user_id, .. } => (user_id, DELETION),
            Self::ProfileItemRemoved { .. } => return None,
        };
        Some(PersonalData {
            subject: *subject,
            fields,
        })
    }
}

impl UserEvent {
    /// The role an account registration event creates (`None` for the other events).
    pub fn registered_role(&self) -> Option<Role> {
        match self {
            Self::ClientRegistered { .. } => Some(Role::Client),
            Self::FreelancerRegistered { .. } => Some(Role::Freelancer),
            Self::AdminRegistered { .. } => Some(Role::Admin),
            _ => None,
        }
    }
}

/// What decisions need to know about a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// Set once registered.
    pub registered: Option<RegisteredUser>,
    /// The account was deleted: nothing more happens to it.
    pub deleted: bool,
    /// The freelancer's profile items, by section.
    pub items: Vec<(ProfileSection, ProfileItemId)>,
}

/// A registered user's decision state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredUser {
    /// The user's id.
    pub id: UserId,
    /// The user's role.
    pub role: Role,
    /// Login email.
    pub email: EmailAddress,
    /// Password hash, for login.
    pub password_hash: PasswordHash,
}

impl Aggregate for User {
    const STREAM_TYPE: &'static str = "user";
    const CONTEXT: BoundedContext = BoundedContext::Users;
    type Event = UserEvent;
    /// Login and deletion read the email and password hash.
    const READS_PERSONAL_DATA: bool = true;

    fn evolve(&mut self, event: &UserEvent) {
        match event {
            UserEvent::ClientRegistered {
                user_id,
                email,
                password_hash,
                ..
            }
            | UserEvent::FreelancerRegistered {
                user_id,
                email,
                password_hash,
                ..
            }
            | UserEvent::AdminRegistered {
                user_id,
                email,
                password_hash,
                ..
            } => {
                self.registered = event.registered_role().map(|role| RegisteredUser {
                    id: *user_id,
                    role,
                    email: email.clone(),
                    password_hash: password_hash.clone(),
                });
            }
            UserEvent::ProfileItemAdded { section, item_id, .. } => {
                if !self.items.contains(&(*section, *item_id)) {
                    self.items.push((*section, *item_id));
                }
            }
            UserEvent::ProfileItemRemoved { section, item_id, .. } => {
                self.items.retain(|i| *i != (*section, *item_id));
            }
            UserEvent::UserDeleted { .. } => self.deleted = true,
            UserEvent::ProfileUpdated { .. }
            | UserEvent::ProfileItemUpdated { .. }
            | UserEvent::PhotoChanged { .. }
            | UserEvent::ResumeChanged { .. } => {}
        }
    }
}

/// Decide what a command on `user` emits.
pub fn decide(user: &User, command: &UserCommand, ctx: &Context) -> Result<Vec<UserEvent>, DomainError> {
    match command {
        UserCommand::RegisterClient(r)
        | UserCommand::RegisterFreelancer(r)
        | UserCommand::RegisterAdmin(r) => {
            if matches!(command, UserCommand::RegisterAdmin(_)) {
                ctx.ensure_system()?;
            } else if ctx.actor.id != r.user_id {
                return Err(DomainError::Forbidden("not-the-registrant"));
            }
            if user.registered.is_some() {
                return Err(DomainError::Conflict("user-already-registered"));
            }
            let (user_id, email, password_hash, name, registered_at) = (
                r.user_id,
                r.email.clone(),
                r.password_hash.clone(),
                r.name.clone(),
                ctx.now,
            );
            Ok(vec![match command {
                UserCommand::RegisterClient(_) => UserEvent::ClientRegistered {
                    user_id,
                    email,
                    password_hash,
                    name,
                    registered_at,
                },
                UserCommand::RegisterAdmin(_) => UserEvent::AdminRegistered {
                    user_id,
                    email,
                    password_hash,
                    name,
                    registered_at,
                },
                _ => UserEvent::FreelancerRegistered {
                    user_id,
                    email,
                    password_hash,
                    name,
                    registered_at,
                },
            }])
        }
        _ => decide_profile(user, command, ctx),
    }
}

/// The registered, not deleted user the actor is, or why not.
fn acting_self<'a>(user: &'a User, ctx: &Context) -> Result<&'a RegisteredUser, DomainError> {
    let u = user.registered.as_ref().ok_or(DomainError::NotFound("user"))?;
    if user.deleted {
        return Err(DomainError::NotFound("user"));
    }
    if u.id != ctx.actor.id {
        return Err(DomainError::Forbidden("not-the-user"));
    }
    Ok(u)
}

fn only_freelancers(u: &RegisteredUser) -> Result<(), DomainError> {
    if u.role == Role::Freelancer {
        Ok(())
    } else {
        Err(DomainError::Forbidden("only-freelancers"))
    }
}

fn decide_profile(user: &User, command: &UserCommand, ctx: &Context) -> Result<Vec<UserEvent>, DomainError> {
    // An admin, or an operator through the control CLI (the system actor), erases any account.
    if matches!(command, UserCommand::DeleteAccount)
        && (ctx.actor.role == Role::Admin || ctx.actor.is_system())
    {
        let u = user.registered.as_ref().filter(|_| !user.deleted);
        let u = u.ok_or(DomainError::NotFound("user"))?;
        return Ok(vec![UserEvent::UserDeleted {
            user_id: u.id,
            email: u.email.clone(),
            deleted_at: ctx.now,
        }]);
    }
    let u = acting_self(user, ctx)?;
    let user_id = u.id;
    let has = |section: ProfileSection, item_id: ProfileItemId| user.items.contains(&(section, item_id));
    let event = match command {
        UserCommand::RegisterClient(_)
        | UserCommand::RegisterFreelancer(_)
        | UserCommand::RegisterAdmin(_) => {
            return Err(DomainError::Conflict("user-already-registered"));
        }
        UserCommand::UpdateProfile(profile) => UserEvent::ProfileUpdated {
            user_id,
            profile: profile.clone(),
            updated_at: ctx.now,
        },
        UserCommand::AddProfileItem {
            section,
            item_id,
            item,
        } => {
            only_freelancers(u)?;
            if has(*section, *item_id) {
                return Err(DomainError::Conflict("profile-item-exists"));
            }
            if user.items.iter().filter(|(s, _)| s == section).count() >= MAX_ITEMS_PER_SECTION {
                return Err(DomainError::Conflict("profile-section-full"));
            }
            UserEvent::ProfileItemAdded {
                user_id,
                section: *section,
                item_id: *item_id,
                item: item.clone(),
                added_at: ctx.now,
            }
        }
        UserCommand::UpdateProfileItem {
            section,
            item_id,
            item,
        } => {
            only_freelancers(u)?;
            if !has(*section, *item_id) {
                return Err(DomainError::NotFound("profile-item"));
            }
            UserEvent::ProfileItemUpdated {
                user_id,
                section: *section,
                item_id: *item_id,
                item: item.clone(),
                updated_at: ctx.now,
            }
        }
        UserCommand::RemoveProfileItem { section, item_id } => {
            only_freelancers(u)?;
            if !has(*section, *item_id) {
                return Err(DomainError::NotFound("profile-item"));
            }
            UserEvent::ProfileItemRemoved {
                user_id,
                section: *section,
                item_id: *item_id,
                removed_at: ctx.now,
            }
        }
        UserCommand::SetPhoto(photo) => UserEvent::PhotoChanged {
            user_id,
            photo: photo.clone(),
            changed_at: ctx.now,
        },
        UserCommand::SetResume(resume) => {
            only_freelancers(u)?;
            UserEvent::ResumeChanged {
                user_id,
                resume: resume.clone(),
                changed_at: ctx.now,
            }
        }
        UserCommand::DeleteAccount => UserEvent::UserDeleted {
            user_id,
            email: u.email.clone(),
            deleted_at: ctx.now,
        },
    };
    Ok(vec![event])
}

#[cfg(test)]
mod tests;
