//! The two traits every aggregate and its events implement, and the decision context.

use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

use crate::{
    DomainError,
    privacy::PersonalData,
    values::{Actor, Timestamp},
};

/// The bounded context an aggregate belongs to; it names the Kafka topic its events go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BoundedContext {
    /// User profiles and credentials.
    Users,
    /// Jobs and proposals.
    Jobs,
    /// Contracts, milestones and termination requests.
    Contracts,
    /// Wallets, payment requests and withdrawals.
    Payments,
}

impl BoundedContext {
    /// Every context, in a fixed order.
    pub const ALL: [BoundedContext; 4] = [Self::Users, Self::Jobs, Self::Contracts, Self::Payments];

    /// Lower-case name, e.g. `users` (the topic is `workup.users`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Jobs => "jobs",
            Self::Contracts => "contracts",
            Self::Payments => "payments",
        }
    }

    /// The context named `name` (see [`BoundedContext::name`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The stream types of the aggregates the context owns (their events go to its topic).
    pub fn stream_types(self) -> &'static [&'static str] {
        use crate::{contracts, jobs, payments, users};
        match self {
            Self::Users => &[<users::User as Aggregate>::STREAM_TYPE],
            Self::Jobs => &[
                <jobs::Job as Aggregate>::STREAM_TYPE,
                <jobs::Proposal as Aggregate>::STREAM_TYPE,
            ],
            Self::Contracts => &[
                <contracts::Contract as Aggregate>::STREAM_TYPE,
                <contracts::TerminationRequest as Aggregate>::STREAM_TYPE,
            ],
            Self::Payments => &[
                <payments::Wallet as Aggregate>::STREAM_TYPE,
                <payments::PaymentRequest as Aggregate>::STREAM_TYPE,
                <payments::Withdrawal as Aggregate>::STREAM_TYPE,
            ],
        }
    }
}

/// An event: serialisable with serde's internal tag `type` equal to [`DomainEvent::event_type`].
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static
{
    /// Stable type name, e.g. `ClientRegistered`; equals the serde tag.
    fn event_type(&self) -> &'static str;
    /// Schema version of this event type's payload (starts at 1; bumped with an upcaster).
    fn schema_version(&self) -> u16 {
        1
    }
    /// The personal data this event carries, if any: whose, and which fields ([`crate::privacy`]).
    /// The ledger seals those fields with the subject's key.
    fn personal_data(&self) -> Option<PersonalData> {
        None
    }
}

/// An event-sourced aggregate: the state its decisions read, rebuilt by folding its events.
pub trait Aggregate: Default + Clone + Debug + Send + Sync + 'static {
    /// Stream type stored in the ledger, e.g. `user`.
    const STREAM_TYPE: &'static str;
    /// Context whose topic carries this aggregate's events.
    const CONTEXT: BoundedContext;
    /// The aggregate's event enum.
    type Event: DomainEvent;
    /// Whether decisions read personal fields of its events (e.g. a user's email and password
    /// hash, for login). When false, loading the aggregate never unseals them: its state is
    /// folded from their placeholders.
    const READS_PERSONAL_DATA: bool = false;
    /// Apply one event. Total: never panics, never does I/O.
    fn evolve(&mut self, event: &Self::Event);

    /// Fold a sequence of events from the default state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.evolve(event);
        }
        state
    }
}

/// Who acts, and when: everything a decision needs besides state and command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The authenticated user (for a registration: the user being registered).
    pub actor: Actor,
    /// The clock, passed in so decisions stay deterministic.
    pub now: Timestamp,
}

impl Context {
    /// Refuse unless the platform itself acts: the commands only a process may send (DESIGN §2).
    pub fn ensure_system(&self) -> Result<(), DomainError> {
        if self.actor.is_system() {
            Ok(())
        } else {
            Err(DomainError::Forbidden("system-only"))
        }
    }
}
