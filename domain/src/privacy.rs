//! Personal data in events (GDPR art. 17, the right to erasure).
//!
//! An event that carries data about a person names that person (its *subject*) and which of its
//! top-level fields are personal ([`DomainEvent::personal_data`](crate::DomainEvent)). The ledger
//! stores those fields encrypted with the subject's own key and everything else in clear, so ids,
//! amounts, states and times stay readable by every aggregate, saga and projection; erasing the
//! person destroys the key, and from then on each personal field reads as its [`Redacted`]
//! placeholder, which decodes into the same type as the clear value.

use serde_json::Value;

use crate::UserId;

/// What an erased text field reads as.
pub const ERASED_TEXT: &str = "[erased]";

/// What an erased email reads as: a syntactically valid address of the reserved `.invalid` domain
/// that can never be delivered to (or reserved by a registration: see the users decisions).
pub const ERASED_EMAIL: &str = "erased@erased.invalid";

/// Which fields of one event are personal data, and whose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalData {
    /// The person the fields are about: their key seals them.
    pub subject: UserId,
    /// The personal fields (top-level fields of the event's JSON; absent or `null` ones are
    /// skipped).
    pub fields: &'static [PersonalField],
}

/// A personal field of an event and what it reads as once its subject is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalField {
    /// The field's JSON name.
    pub name: &'static str,
    /// Its placeholder.
    pub redacted: Redacted,
}

impl PersonalField {
    /// A personal text field, read as [`ERASED_TEXT`] once erased.
    pub const fn text(name: &'static str) -> Self {
        Self {
            name,
            redacted: Redacted::Text(ERASED_TEXT),
        }
    }

    /// A personal email field, read as [`ERASED_EMAIL`] once erased.
    pub const fn email(name: &'static str) -> Self {
        Self {
            name,
            redacted: Redacted::Text(ERASED_EMAIL),
        }
    }

    /// An optional personal field (e.g. a file link), read as `null` (none) once erased.
    pub const fn optional(name: &'static str) -> Self {
        Self {
            name,
            redacted: Redacted::Null,
        }
    }

    /// A personal list (e.g. attachments), read as empty once erased.
    pub const fn list(name: &'static str) -> Self {
        Self {
            name,
            redacted: Redacted::EmptyList,
        }
    }
}

/// The placeholder of an erased field: a value of the field's own type, so an event whose
/// subject is erased still decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redacted {
    /// A fixed text.
    Text(&'static str),
    /// `null`: an optional value, none.
    Null,
    /// `[]`: a list, empty.
    EmptyList,
}

impl Redacted {
    /// The placeholder as JSON.
    pub fn to_json(self) -> Value {
        match self {
            Self::Text(text) => Value::String(text.to_owned()),
            Self::Null => Value::Null,
            Self::EmptyList => Value::Array(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmailAddress, users::PersonName};

    #[test]
    fn placeholders_are_values_of_the_fields_types() {
        let email: EmailAddress =
            serde_json::from_value(PersonalField::email("email").redacted.to_json()).expect("an email");
        assert_eq!(email.as_str(), ERASED_EMAIL);
        assert!(
            EmailAddress::parse(ERASED_EMAIL).is_err(),
            "nobody registers with the placeholder"
        );
        let name: PersonName =
            serde_json::from_value(PersonalField::text("name").redacted.to_json()).expect("a name");
        assert_eq!(name.as_str(), ERASED_TEXT);
        assert_eq!(PersonalField::optional("photo").redacted.to_json(), Value::Null);
        assert_eq!(
            PersonalField::list("attachments").redacted.to_json(),
            Value::Array(vec![])
        );
    }
}
