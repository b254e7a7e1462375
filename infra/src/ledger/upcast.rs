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
    /// The upcasters of the current code base (none yet: every event is at schema version 1).
    pub fn current() -> Self {
        Self::default()
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
}
