//! The handles every handler shares.

use axum::extract::FromRef;
use chrono::Utc;
use domain::{Actor, Context, Timestamp};
use infra::{
    http::{auth::TokenKeys, correlation::CorrelationId},
    ledger::{EventMetadata, Ledger},
};

/// Shared state of command-api.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The ledger (command path).
    pub ledger: Ledger,
    /// Token signing and checking.
    pub keys: TokenKeys,
}

impl FromRef<AppState> for TokenKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

/// The decision context and event metadata of a command by `actor`, now, in the request
/// `correlation`.
pub fn command_context(actor: Actor, correlation: CorrelationId) -> (Context, EventMetadata) {
    let now = Utc::now();
    let metadata = EventMetadata::new(correlation.0, Some(actor.id.as_uuid()), now);
    (
        Context {
            actor,
            now: Timestamp::from_datetime(now),
        },
        metadata,
    )
}
