//! Control messages (DESIGN §10): one desired setting of one service (or `all`), with a version,
//! signed with HMAC-SHA256. On the compacted control topic a message's key is its service and
//! setting, so the topic keeps the latest value of each.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The service name that addresses every service.
pub const ALL: &str = "all";

/// The services that obey the control topic.
pub const SERVICES: [&str; 6] = [
    "command-api",
    "query-api",
    "projectors",
    "sagas",
    "relay",
    "withdrawal-worker",
];

/// One desired setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "setting", content = "value", rename_all = "snake_case")]
pub enum Setting {
    /// Stop taking commands / consuming (finish what is in flight), or start again.
    Frozen(bool),
    /// Commands or events in flight per instance at most (`None`: no limit).
    MaxConcurrency(Option<u32>),
    /// Database connections per instance at most (`None`: the configured pool size).
    MaxDbConnections(Option<u32>),
    /// Whether a command (command-api's operation id, e.g. `post_job`) is switched off (410).
    CommandDisabled {
        /// The command.
        command: String,
        /// Off or on.
        disabled: bool,
    },
    /// The `tracing` filter, e.g. `debug` or `info,infra::kafka=debug`.
    LogLevel(String),
    /// Which storage generation of a read model is read and written, and whether its projector
    /// is paused for a rebuild's handover (DESIGN §8, blue/green); addressed to `all`.
    ReadModel {
        /// The read model (its context's name, e.g. `jobs`).
        projection: String,
        /// The generations.
        #[serde(flatten)]
        generations: ReadModelGenerations,
    },
}

/// Where one read model is read and written (see [`crate::read_models::generation`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadModelGenerations {
    /// The generation query-api reads and the projector writes.
    pub active: u32,
    /// Until then the projector writes nothing of this read model (it holds its next event):
    /// the moment a rebuild hands over to it. A deadline, not a flag, so that a rebuild that
    /// dies there cannot stop the projector for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<DateTime<Utc>>,
}

impl Setting {
    /// The setting's part of the message key: one value per key survives compaction.
    pub fn key(&self) -> String {
        match self {
            Self::Frozen(_) => "frozen".into(),
            Self::MaxConcurrency(_) => "max_concurrency".into(),
            Self::MaxDbConnections(_) => "max_db_connections".into(),
            Self::CommandDisabled { command, .. } => format!("disabled:{command}"),
            Self::LogLevel(_) => "log_level".into(),
            Self::ReadModel { projection, .. } => format!("read_model:{projection}"),
        }
    }
}

/// A desired setting of `service`, as the operator sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlMessage {
    /// A service name (see [`SERVICES`]) or [`ALL`].
    pub service: String,
    /// The setting and its value.
    #[serde(flatten)]
    pub setting: Setting,
    /// Increases with every message sent for the same key (the sender uses the time in
    /// microseconds); an instance ignores a version at or below the one it applied.
    pub version: i64,
    /// When it was sent.
    pub issued_at: DateTime<Utc>,
    /// Who sent it (user@host of the CLI).
    pub issued_by: String,
}

impl ControlMessage {
    /// A message for `service` sent now, versioned by the clock.
    pub fn now(service: &str, setting: Setting, issued_by: &str) -> Self {
        let issued_at = Utc::now();
        Self {
            service: service.to_owned(),
            setting,
            version: issued_at.timestamp_micros(),
            issued_at,
            issued_by: issued_by.to_owned(),
        }
    }

    /// The topic key: `<service>/<setting key>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.service, self.setting.key())
    }

    /// Whether an instance of `service` obeys this message.
    pub fn addresses(&self, service: &str) -> bool {
        self.service == service || self.service == ALL
    }
}

/// The message as it travels: the exact bytes signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The [`ControlMessage`] as JSON text.
    pub payload: String,
    /// HMAC-SHA256 of `payload` with the control key, hex.
    pub signature: String,
}

/// Why a control record is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not a signed message at all.
    #[error("malformed: {0}")]
    Malformed(String),
    /// No signature.
    #[error("unsigned")]
    Unsigned,
    /// The signature does not match (another key, or a changed payload).
    #[error("bad signature")]
    BadSignature,
}

impl Rejected {
    /// A metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// The shared key control messages are signed with (`WORKUP_CONTROL_KEY`).
#[derive(Clone)]
pub struct ControlKey(SecretString);

impl std::fmt::Debug for ControlKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlKey(..)")
    }
}

impl ControlKey {
    /// A key from its secret.
    pub fn new(secret: SecretString) -> Self {
        Self(secret)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }

    /// Sign `message`.
    pub fn sign(&self, message: &ControlMessage) -> Result<SignedMessage, serde_json::Error> {
        let payload = serde_json::to_string(message)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        Ok(SignedMessage {
            signature: hex::encode(mac.finalize().into_bytes()),
            payload,
        })
    }

    /// The message in a control record's value, if it is signed with this key.
    pub fn open(&self, value: &[u8]) -> Result<ControlMessage, Rejected> {
        let signed: SignedMessage = match serde_json::from_slice(value) {
            Ok(signed) => signed,
            Err(_) if serde_json::from_slice::<ControlMessage>(value).is_ok() => {
                return Err(Rejected::Unsigned);
            }
            Err(e) => return Err(Rejected::Malformed(e.to_string())),
        };
        if signed.signature.is_empty() {
            return Err(Rejected::Unsigned);
        }
        let signature = hex::decode(&signed.signature).map_err(|_| Rejected::BadSignature)?;
        let mut mac = self.mac();
        mac.update(signed.payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| Rejected::BadSignature)?;
        serde_json::from_str(&signed.payload).map_err(|e| Rejected::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> ControlKey {
        ControlKey::new(SecretString::from(secret.to_owned()))
    }

    fn message() -> ControlMessage {
        ControlMessage::now("command-api", Setting::Frozen(true), "ops@host")
    }

    #[test]
    fn a_signed_message_opens_with_the_same_key_only() {
        let signed = key("k1").sign(&message()).unwrap();
        let value = serde_json::to_vec(&signed).unwrap();
        assert_eq!(key("k1").open(&value).unwrap(), message_with(&signed));
        assert_eq!(key("k2").open(&value), Err(Rejected::BadSignature));
    }

    fn message_with(signed: &SignedMessage) -> ControlMessage {
        serde_json::from_str(&signed.payload).unwrap()
    }

    #[test]
    fn a_changed_payload_unsigned_or_garbage_is_rejected() {
        let mut signed = key("k").sign(&message()).unwrap();
        signed.payload = signed.payload.replace("true", "false");
        let value = serde_json::to_vec(&signed).unwrap();
        assert_eq!(key("k").open(&value), Err(Rejected::BadSignature));
        let bare = serde_json::to_vec(&message()).unwrap();
        assert_eq!(key("k").open(&bare), Err(Rejected::Unsigned));
        assert!(matches!(
            key("k").open(b"\x00garbage"),
            Err(Rejected::Malformed(_))
        ));
        let no_signature = br#"{"payload":"{}","signature":""}"#;
        assert_eq!(key("k").open(no_signature), Err(Rejected::Unsigned));
    }

    #[test]
    fn keys_name_the_service_and_the_setting() {
        let disable = ControlMessage::now(
            "command-api",
            Setting::CommandDisabled {
                command: "post_job".into(),
                disabled: true,
            },
            "ops",
        );
        assert_eq!(disable.key(), "command-api/disabled:post_job");
        assert_eq!(message().key(), "command-api/frozen");
        assert!(ControlMessage::now(ALL, Setting::Frozen(true), "ops").addresses("sagas"));
        assert!(!message().addresses("sagas"));
    }
}
