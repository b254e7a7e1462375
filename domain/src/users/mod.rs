//! Users context: client and freelancer profiles, credentials.
//!
//! - [`user`]: the User aggregate (registration, profile, freelancer profile items, files, deletion).

pub mod user;

pub use user::{
    FileRef, PersonName, ProfileItem, ProfileSection, ProfileUpdate, Registration, User, UserCommand,
    UserEvent, decide,
};
