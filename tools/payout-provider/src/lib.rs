//! A simulated external payout provider (DESIGN §9), the stand-in the withdrawal workers call.
//!
//! It behaves like a real provider: a payout is keyed by its withdrawal id (the idempotency key),
//! settles once after a configurable latency (plus jitter), is declined for a configurable share
//! of ids (the same verdict on every retry), and completes even when the caller disconnects.
//! Its counters are honest, so tests can check "exactly one payout" across worker crashes.
//!
//! - [`provider`]: the state, [`Provider`] and the data types.
//! - `http`: the JSON API served by [`Provider::router`] (see the crate README).
//!
//! Everything is in memory: a restart forgets every payout.

mod http;
pub mod provider;

pub use provider::{Amount, DECLINE_REASON, MAX_DELAY, Payout, PayoutStatus, Provider, Settings, Stats};

impl Provider {
    /// The HTTP API over this provider.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Serve the HTTP API on `listener` until the process stops.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}
