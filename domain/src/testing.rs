//! Given / when / then for decisions (tests only), modelled on disintegrate's `TestHarness`,
//! plus the shared fixtures (actors, clock, money) every aggregate's tests use.

use chrono::{Days, NaiveDate, TimeZone, Utc};
use std::fmt::Debug;
use uuid::Uuid;

use crate::{Actor, Aggregate, Context, Currency, DomainError, Money, Role, Timestamp, UserId};

/// The state a decision runs against.
pub struct Given<S> {
    state: S,
}

/// The state of aggregate `A` after folding `events`.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let events: Vec<A::Event> = events.into_iter().collect();
    Given {
        state: A::fold(&events),
    }
}

/// An explicit state, e.g. a tuple of aggregates for a decision that spans several.
pub fn given_state<S>(state: S) -> Given<S> {
    Given { state }
}

impl<S> Given<S> {
    /// Run the decision against the state.
    pub fn when<T>(self, decision: impl FnOnce(&S) -> Result<T, DomainError>) -> Then<T> {
        Then {
            result: decision(&self.state),
        }
    }
}

/// What a decision answered.
pub struct Then<T> {
    result: Result<T, DomainError>,
}

impl<T: Debug + PartialEq> Then<T> {
    /// The decision succeeded with exactly `expected`.
    #[track_caller]
    pub fn then(self, expected: impl Into<T>) {
        match self.result {
            Ok(actual) => assert_eq!(actual, expected.into(), "unexpected events"),
            Err(e) => panic!("expected events, got error {e:?}"),
        }
    }

    /// The decision was refused with exactly `expected`.
    #[track_caller]
    pub fn then_err(self, expected: DomainError) {
        match self.result {
            Ok(events) => panic!("expected {expected:?}, got {events:?}"),
            Err(actual) => assert_eq!(actual, expected, "unexpected error"),
        }
    }

    /// The decision succeeded; hand its outcome over for further checks.
    #[track_caller]
    pub fn then_ok(self) -> T {
        match self.result {
            Ok(outcome) => outcome,
            Err(e) => panic!("expected success, got {e:?}"),
        }
    }

    /// The decision was refused with an `Invalid` naming exactly these fields.
    #[track_caller]
    pub fn then_invalid(self, fields: &[&str]) {
        match self.result {
            Err(DomainError::Invalid(errors)) => {
                let actual: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(actual, fields, "unexpected invalid fields: {errors:?}");
            }
            other => panic!("expected invalid {fields:?}, got {other:?}"),
        }
    }
}

/// A client.
pub const CLIENT_ID: UserId = UserId::from_uuid(Uuid::from_u128(0xC1));
/// Another client.
pub const OTHER_CLIENT_ID: UserId = UserId::from_uuid(Uuid::from_u128(0xC2));
/// A freelancer.
pub const FREELANCER_ID: UserId = UserId::from_uuid(Uuid::from_u128(0xF1));
/// Another freelancer.
pub const OTHER_FREELANCER_ID: UserId = UserId::from_uuid(Uuid::from_u128(0xF2));
/// An admin.
pub const ADMIN_ID: UserId = UserId::from_uuid(Uuid::from_u128(0xAD));

/// The client acting.
pub const CLIENT: Actor = Actor::new(CLIENT_ID, Role::Client);
/// Another client acting.
pub const OTHER_CLIENT: Actor = Actor::new(OTHER_CLIENT_ID, Role::Client);
/// The freelancer acting.
pub const FREELANCER: Actor = Actor::new(FREELANCER_ID, Role::Freelancer);
/// Another freelancer acting.
pub const OTHER_FREELANCER: Actor = Actor::new(OTHER_FREELANCER_ID, Role::Freelancer);
/// The admin acting.
pub const ADMIN: Actor = Actor::new(ADMIN_ID, Role::Admin);
/// The platform acting (sagas, workers).
pub const SYSTEM: Actor = Actor::system();

/// The fixed clock of every test: 2025-06-01T12:00:00Z.
pub fn now() -> Timestamp {
    Timestamp::from_datetime(Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap())
}

/// `now()` shifted by `seconds`.
pub fn later(seconds: i64) -> Timestamp {
    Timestamp::from_datetime(now().as_datetime() + chrono::Duration::seconds(seconds))
}

/// The date `n` days after today (`n` may be negative).
pub fn day(n: i64) -> NaiveDate {
    let today = now().date();
    if n >= 0 {
        today + Days::new(n.unsigned_abs())
    } else {
        today - Days::new(n.unsigned_abs())
    }
}

/// `actor` acting at `now()`.
pub fn ctx(actor: Actor) -> Context {
    Context { actor, now: now() }
}

/// `actor` acting at `at`.
pub fn ctx_at(actor: Actor, at: Timestamp) -> Context {
    Context { actor, now: at }
}

/// An amount in US cents.
pub fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::Usd)
}

/// An amount in euro cents.
pub fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::Eur)
}

/// Serialise every event to JSON and back, checking the tag equals `event_type()`.
#[track_caller]
pub fn assert_round_trip<E: crate::DomainEvent>(events: &[E]) {
    for event in events {
        let json = serde_json::to_value(event).unwrap();
        assert_eq!(
            json.get("type").and_then(|t| t.as_str()),
            Some(event.event_type()),
            "serde tag differs from event_type() in {json}"
        );
        assert!(event.schema_version() >= 1);
        let back: E = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(&back, event, "round trip changed {json}");
    }
}

/// Rebuild an aggregate from its history the way the ledger does: every event through its JSON
/// payload and back, then folded.
#[track_caller]
pub fn replay<A: Aggregate>(history: &[A::Event]) -> A {
    let events: Vec<A::Event> = history
        .iter()
        .map(|e| serde_json::from_value(serde_json::to_value(e).unwrap()).unwrap())
        .collect();
    A::fold(&events)
}

/// An aggregate's state with the history that produced it, for property tests.
#[derive(Debug, Clone)]
pub struct Stream<A: Aggregate> {
    /// The state, evolved one event at a time.
    pub state: A,
    /// Every event applied.
    pub history: Vec<A::Event>,
}

impl<A: Aggregate> Default for Stream<A> {
    fn default() -> Self {
        Self {
            state: A::default(),
            history: Vec::new(),
        }
    }
}

impl<A: Aggregate> Stream<A> {
    /// Apply `events` to the state and the history.
    pub fn apply(&mut self, events: &[A::Event]) {
        for e in events {
            self.state.evolve(e);
            self.history.push(e.clone());
        }
    }

    /// `evolve` of the history, through JSON, reproduces the state.
    #[track_caller]
    pub fn assert_replays(&self)
    where
        A: PartialEq,
    {
        assert_eq!(replay::<A>(&self.history), self.state, "replay differs");
    }
}
