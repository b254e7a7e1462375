//! Upcasters: pure functions that lift a stored payload from one schema version to the next,
//! applied on read so old events decode into today's types (DESIGN §4).

use serde_json::Value;
use std::collections::HashMap;

/// Lifts a payload of `(event type, version)` to `version + 1`.
pub type UpcastFn = fn(Value) -> Value;

/// The registry of upcasters, keyed by event type and the version they lift from.
#[derive(Debug, Default, Clone)]
pub struct Upcasters {
    steps: HashMap<(String, i32), UpcastFn>,
}

impl Upcasters {
    /// The upcasters of the current code base. Every event type is at schema version 1 except:
    /// - `WithdrawalRequested` (schema 2): [`withdrawal_requested_v1_to_v2`];
    /// - `ProposalUpdated` (schema 2): [`proposal_updated_v1_to_v2`].
    pub fn current() -> Self {
        Self::default()
            .with("WithdrawalRequested", 1, withdrawal_requested_v1_to_v2)
            .with("ProposalUpdated", 1, proposal_updated_v1_to_v2)
    }

    /// Register a step lifting `event_type` from `from_version` to `from_version + 1`.
    pub fn with(mut self, event_type: &str, from_version: i32, step: UpcastFn) -> Self {
        self.steps.insert((event_type.to_owned(), from_version), step);
        self
    }

    /// Apply every registered step from `version` on, in order.
    pub fn lift(&self, event_type: &str, mut version: i32, mut payload: Value) -> Value {
        while let Some(step) = self.steps.get(&(event_type.to_owned(), version)) {
            payload = step(payload);
            version += 1;
        }
        payload
    }
}

/// `WithdrawalRequested` 1 → 2: writes `scheduled_for` as `null` when a schema-1 payload left it
/// out.
///
/// Schema 1 wrote the slot only when the cooldown deferred the withdrawal (and events from before
/// the cooldown have none), reading a missing one as `None` through a serde default; schema 2
/// always writes it. A slot already there is kept, so the result reads as the old code read it.
fn withdrawal_requested_v1_to_v2(mut payload: Value) -> Value {
    if let Some(fields) = payload.as_object_mut() {
        fields.entry("scheduled_for").or_insert(Value::Null);
    }
    payload
}

/// `ProposalUpdated` 1 → 2: schema 2 names the proposal's author (`freelancer_id`), the subject
/// of its sealed pitch. A schema-1 payload cannot know it: it reads as the nil id. The ledger's
/// own schema-1 events are rewritten with the real author by the one-off sealing
/// ([`crate::ledger::Ledger::seal_legacy_personal_data`]); this step serves copies outside it
/// (messages still on Kafka), whose readers never use the author of an update.
fn proposal_updated_v1_to_v2(mut payload: Value) -> Value {
    if let Some(fields) = payload.as_object_mut() {
        fields
            .entry("freelancer_id")
            .or_insert(Value::String(uuid::Uuid::nil().to_string()));
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifts_through_every_registered_step_in_order() {
        let upcasters = Upcasters::default()
            .with("JobPosted", 1, |mut v| {
                v["skills"] = json!([]);
                v
            })
            .with("JobPosted", 2, |mut v| {
                v["budget"] = json!({"minor": v["budget_cents"], "currency": "USD"});
                v
            });
        let lifted = upcasters.lift("JobPosted", 1, json!({"budget_cents": 500}));
        assert_eq!(lifted["skills"], json!([]));
        assert_eq!(lifted["budget"], json!({"minor": 500, "currency": "USD"}));
        assert_eq!(
            upcasters.lift("JobPosted", 3, json!({"a": 1})),
            json!({"a": 1}),
            "current version untouched"
        );
    }

    mod withdrawal_requested {
        use super::*;
        use crate::ledger::{EventMetadata, LedgerError, NewEvent, RecordedEvent};
        use chrono::{DateTime, Utc};
        use domain::payments::WithdrawalEvent;
        use domain::{Currency, DomainEvent, Money, Timestamp, UserId, WalletId, WithdrawalId};
        use uuid::Uuid;

        /// Stored with schema 1 by the code before this version: a withdrawal not deferred (no
        /// slot), copied from the local ledger.
        const V1_NOT_DEFERRED: &str = r#"{"type": "WithdrawalRequested", "amount": {"minor": 100, "currency": "USD"}, "owner_id": "01a22898-ffeb-77c7-92c5-cd6602a10632", "wallet_id": "df037917-b317-5382-a8d2-f4444782792a", "requested_at": "2026-11-29T18:37:28.116608647Z", "withdrawal_id": "01a22899-0ab4-71e6-ae23-d14495fcb52e"}"#;
        /// Stored with schema 1: a withdrawal the cooldown deferred (its slot written), copied from
        /// a test ledger.
        const V1_DEFERRED: &str = r#"{"type": "WithdrawalRequested", "amount": {"minor": 100, "currency": "USD"}, "owner_id": "01a2289e-a4d3-7695-90ce-df5357a9e0cc", "wallet_id": "f7875982-a755-50f5-8d61-0816818fac4f", "requested_at": "2026-11-29T18:43:35.565974028Z", "scheduled_for": "2026-11-29T18:53:35.560467371Z", "withdrawal_id": "01a2289e-a60d-7398-af8f-b9459f793857"}"#;

        fn recorded(schema_version: i32, payload: &str) -> RecordedEvent {
            RecordedEvent {
                global_position: 1,
                stream_id: Uuid::nil(),
                stream_type: "withdrawal".into(),
                version: 1,
                event_type: "WithdrawalRequested".into(),
                schema_version,
                payload: serde_json::from_str(payload).expect("payload"),
                metadata: EventMetadata::new(Uuid::nil(), None, Utc::now()),
                recorded_at: Utc::now(),
            }
        }

        fn at(rfc3339: &str) -> Timestamp {
            Timestamp::from_datetime(rfc3339.parse::<DateTime<Utc>>().expect("time"))
        }

        fn id(raw: &str) -> Uuid {
            Uuid::parse_str(raw).expect("uuid")
        }

        fn not_deferred() -> WithdrawalEvent {
            WithdrawalEvent::WithdrawalRequested {
                withdrawal_id: WithdrawalId::from_uuid(id("01a22899-0ab4-71e6-ae23-d14495fcb52e")),
                wallet_id: WalletId::from_uuid(id("df037917-b317-5382-a8d2-f4444782792a")),
                owner_id: UserId::from_uuid(id("01a22898-ffeb-77c7-92c5-cd6602a10632")),
                amount: Money::new(100, Currency::Usd),
                requested_at: at("2026-11-29T18:37:28.116608647Z"),
                scheduled_for: None,
            }
        }

        fn deferred() -> WithdrawalEvent {
            WithdrawalEvent::WithdrawalRequested {
                withdrawal_id: WithdrawalId::from_uuid(id("01a2289e-a60d-7398-af8f-b9459f793857")),
                wallet_id: WalletId::from_uuid(id("f7875982-a755-50f5-8d61-0816818fac4f")),
                owner_id: UserId::from_uuid(id("01a2289e-a4d3-7695-90ce-df5357a9e0cc")),
                amount: Money::new(100, Currency::Usd),
                requested_at: at("2026-11-29T18:43:35.565974028Z"),
                scheduled_for: Some(at("2026-11-29T18:53:35.560467371Z")),
            }
        }

        #[test]
        fn stored_v1_payloads_decode_as_the_old_code_read_them() {
            let upcasters = Upcasters::current();
            let decoded: WithdrawalEvent = recorded(1, V1_NOT_DEFERRED).decode(&upcasters).expect("v1");
            assert_eq!(decoded, not_deferred(), "a missing slot reads as None");
            let decoded: WithdrawalEvent = recorded(1, V1_DEFERRED).decode(&upcasters).expect("v1");
            assert_eq!(decoded, deferred(), "a written slot is kept");
            // Without the upcaster, the schema-1 payload no longer decodes into today's type.
            let error = recorded(1, V1_NOT_DEFERRED)
                .decode::<WithdrawalEvent>(&Upcasters::default())
                .expect_err("v1 without upcaster");
            assert!(
                matches!(
                    error,
                    LedgerError::Codec {
                        schema_version: 1,
                        ..
                    }
                ),
                "{error:?}"
            );
        }

        #[test]
        fn the_step_only_adds_the_missing_slot() {
            let v1: Value = serde_json::from_str(V1_NOT_DEFERRED).expect("payload");
            let mut expected = v1.clone();
            expected["scheduled_for"] = Value::Null;
            assert_eq!(withdrawal_requested_v1_to_v2(v1), expected);
            let v1: Value = serde_json::from_str(V1_DEFERRED).expect("payload");
            assert_eq!(withdrawal_requested_v1_to_v2(v1.clone()), v1);
        }

        #[test]
        fn today_s_events_are_stored_at_schema_2_and_decode_unchanged() {
            let upcasters = Upcasters::current();
            for event in [not_deferred(), deferred()] {
                let new = NewEvent::encode(&event).expect("encode");
                assert_eq!(new.event_type, event.event_type());
                assert_eq!(new.schema_version, 2);
                assert!(new.payload.get("scheduled_for").is_some(), "{}", new.payload);
                assert_eq!(
                    upcasters.lift(&new.event_type, 2, new.payload.clone()),
                    new.payload,
                    "schema 2 is not lifted"
                );
                let stored = recorded(2, &new.payload.to_string());
                assert_eq!(stored.decode::<WithdrawalEvent>(&upcasters).expect("v2"), event);
            }
            // The withdrawal's other events stay at schema 1.
            let started = WithdrawalEvent::WithdrawalStarted {
                withdrawal_id: WithdrawalId::from_uuid(Uuid::nil()),
                started_at: at("2026-11-29T18:43:35Z"),
            };
            assert_eq!(NewEvent::encode(&started).expect("encode").schema_version, 1);
        }
    }
}
