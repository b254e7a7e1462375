//! The sealed form of an event's personal fields inside its stored payload.
//!
//! The fields are taken out of the payload and replaced by one member:
//!
//! ```json
//! "$personal": {
//!   "subject": "<user id>",
//!   "redacted": {"email": "erased@erased.invalid", "name": "[erased]"},
//!   "sealed": "<base64 of nonce ‖ XChaCha20-Poly1305({\"email\": …, \"name\": …})>"
//! }
//! ```
//!
//! `redacted` holds each field's placeholder (not personal), so an event is readable without the
//! key by anyone: [`redact`] puts the placeholders in; [`open`] puts the clear values back with the
//! subject's data key. The subject and the field names are the associated data of the seal: a
//! sealed blob moved to another person's event or field does not open. No domain type has a
//! member named `$personal`, and a user's input is a string inside a field, never a member.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use chacha20poly1305::{
    Key, XChaCha20Poly1305,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
};
use domain::privacy::PersonalData;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{PrivacyError, keyring::split_nonce};

/// The payload member holding the sealed fields.
pub const MEMBER: &str = "$personal";

/// The subject of a payload's sealed fields, if it has any.
pub fn subject(payload: &Value) -> Option<Uuid> {
    payload
        .get(MEMBER)?
        .get("subject")?
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// Seal `personal`'s fields of `payload` with `key` (fields absent or `null` are left as they
/// are: nothing to hide). A payload already sealed, or with no such field, is unchanged.
pub fn seal(payload: &mut Value, personal: &PersonalData, key: &Key) -> Result<(), PrivacyError> {
    let Some(fields) = payload.as_object_mut() else {
        return Ok(());
    };
    if fields.contains_key(MEMBER) {
        return Ok(());
    }
    let mut clear = Map::new();
    let mut redacted = Map::new();
    for field in personal.fields {
        if let Some(value) = fields.remove(field.name) {
            if value.is_null() {
                fields.insert(field.name.to_owned(), value);
            } else {
                clear.insert(field.name.to_owned(), value);
                redacted.insert(field.name.to_owned(), field.redacted.to_json());
            }
        }
    }
    if clear.is_empty() {
        return Ok(());
    }
    let subject = personal.subject.as_uuid();
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let message = serde_json::to_vec(&clear).map_err(|_| PrivacyError::Crypto)?;
    let sealed = XChaCha20Poly1305::new(key)
        .encrypt(
            &nonce,
            Payload {
                msg: &message,
                aad: &associated_data(subject, &redacted),
            },
        )
        .map_err(|_| PrivacyError::Crypto)?;
    let mut blob = nonce.to_vec();
    blob.extend(sealed);
    let envelope = serde_json::json!({
        "subject": subject,
        "redacted": redacted,
        "sealed": BASE64.encode(blob),
    });
    fields.insert(MEMBER.to_owned(), envelope);
    Ok(())
}

/// Put the clear fields back with the subject's `key`. Fails (leaving `payload` unchanged) when
/// the key is not the one that sealed it or the envelope was altered.
pub fn open(payload: &mut Value, key: &Key) -> Result<(), PrivacyError> {
    let Some(fields) = payload.as_object_mut() else {
        return Ok(());
    };
    let Some(envelope) = fields.get(MEMBER) else {
        return Ok(());
    };
    let (subject, redacted, blob) = parts(envelope).ok_or(PrivacyError::Crypto)?;
    let (nonce, sealed) = split_nonce(&blob)?;
    let message = XChaCha20Poly1305::new(key)
        .decrypt(
            &nonce,
            Payload {
                msg: sealed,
                aad: &associated_data(subject, redacted),
            },
        )
        .map_err(|_| PrivacyError::Crypto)?;
    let clear: Map<String, Value> = serde_json::from_slice(&message).map_err(|_| PrivacyError::Crypto)?;
    fields.remove(MEMBER);
    fields.extend(clear);
    Ok(())
}

/// Put each sealed field's placeholder in (what an erased person's fields read as).
pub fn redact(payload: &mut Value) {
    let Some(fields) = payload.as_object_mut() else {
        return;
    };
    let Some(envelope) = fields.remove(MEMBER) else {
        return;
    };
    if let Some(Value::Object(redacted)) = envelope.get("redacted").cloned() {
        fields.extend(redacted);
    }
}

fn parts(envelope: &Value) -> Option<(Uuid, &Map<String, Value>, Vec<u8>)> {
    let subject = Uuid::parse_str(envelope.get("subject")?.as_str()?).ok()?;
    let redacted = envelope.get("redacted")?.as_object()?;
    let blob = BASE64.decode(envelope.get("sealed")?.as_str()?).ok()?;
    Some((subject, redacted, blob))
}

/// What the seal is bound to: the subject and the sealed fields' names, sorted (a stored
/// `jsonb` object does not keep its members' order).
fn associated_data(subject: Uuid, redacted: &Map<String, Value>) -> Vec<u8> {
    let mut data = subject.as_bytes().to_vec();
    let mut names: Vec<&String> = redacted.keys().collect();
    names.sort();
    for name in names {
        data.push(0);
        data.extend(name.as_bytes());
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{
        UserId,
        privacy::{ERASED_EMAIL, ERASED_TEXT, PersonalField},
    };
    use serde_json::json;

    const FIELDS: &[PersonalField] = &[
        PersonalField::email("email"),
        PersonalField::text("name"),
        PersonalField::optional("photo"),
    ];

    fn personal(subject: Uuid) -> PersonalData {
        PersonalData {
            subject: UserId::from_uuid(subject),
            fields: FIELDS,
        }
    }

    fn event() -> Value {
        json!({"type": "ClientRegistered", "user_id": "u", "email": "ada@example.com", "name": "Ada", "photo": null, "registered_at": "t"})
    }

    #[test]
    fn sealed_fields_leave_the_payload_and_come_back_with_the_key() {
        let (person, key) = (Uuid::now_v7(), XChaCha20Poly1305::generate_key(&mut OsRng));
        let mut payload = event();
        seal(&mut payload, &personal(person), &key).expect("seal");
        let stored = payload.to_string();
        assert!(
            !stored.contains("ada@example.com") && !stored.contains("Ada"),
            "{stored}"
        );
        assert_eq!(payload["photo"], Value::Null, "null is not sealed");
        assert_eq!(payload["registered_at"], "t", "other fields stay in clear");
        assert_eq!(subject(&payload), Some(person));
        let mut opened = payload.clone();
        open(&mut opened, &key).expect("open");
        assert_eq!(opened, event());

        let mut erased = payload.clone();
        redact(&mut erased);
        assert_eq!(erased["email"], ERASED_EMAIL);
        assert_eq!(erased["name"], ERASED_TEXT);
        assert!(erased.get(MEMBER).is_none());
    }

    #[test]
    fn a_wrong_key_or_an_altered_envelope_does_not_open() {
        let (person, key) = (Uuid::now_v7(), XChaCha20Poly1305::generate_key(&mut OsRng));
        let mut payload = event();
        seal(&mut payload, &personal(person), &key).expect("seal");
        let other = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut copy = payload.clone();
        assert!(open(&mut copy, &other).is_err());
        assert_eq!(copy, payload, "unchanged on failure");
        // The blob moved to another subject, or a field renamed in the placeholders.
        let mut moved = payload.clone();
        moved[MEMBER]["subject"] = json!(Uuid::now_v7());
        assert!(open(&mut moved, &key).is_err());
        let mut renamed = payload.clone();
        renamed[MEMBER]["redacted"] = json!({"email": ERASED_EMAIL, "bio": ERASED_TEXT});
        assert!(open(&mut renamed, &key).is_err());
    }
}
