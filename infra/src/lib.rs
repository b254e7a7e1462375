//! Infrastructure adapters: everything that talks to a database or a broker lives here.
//!
//! - [`config`]: the typed [`config::Config`] from environment variables.
//! - [`telemetry`]: structured logging.
//! - [`ledger`]: the PostgreSQL event store, outbox and command path (DESIGN §4).
//! - [`privacy`]: personal data sealed per person, erasure by key destruction (crypto-shredding).
//! - [`relay`]: the outbox relay to Kafka (DESIGN §1, §5).
//! - [`sagas`]: the process managers' steps and deadlines (DESIGN §7).
//! - [`withdrawals`]: the withdrawal workers' task queue; [`payouts`]: the payout provider's
//!   client (DESIGN §9).
//! - [`control`]: the control plane: messages, signing, the listener every service runs, the
//!   operator's side, the HTTP gate (DESIGN §10).
//! - [`service`]: running background workers beside their HTTP endpoint.
//! - [`kafka`]: Kafka clients, topics and the consumer toolkit.
//! - [`read_models`]: one module per context (views, schema, queries), shared by projectors and
//!   query-api; read-your-writes.
//! - [`cassandra`], [`mongo`], [`redis`]: store connections and the cache; [`store`]: their error.
//! - [`media`]: content-addressed photo and resume files (DESIGN §3).
//! - [`ops`]: what the operations page reads: instances, consumer lag, ledger activity.
//! - [`http`]: problem+json errors, extractors, auth, health and metrics for the services.
//! - `testing` (feature `test-support`): isolated resources per test on the local stack.

pub mod cassandra;
pub mod config;
pub mod control;
pub mod http;
pub mod kafka;
pub mod ledger;
pub mod media;
pub mod mongo;
pub mod ops;
pub mod payouts;
pub mod privacy;
pub mod read_models;
pub mod redis;
pub mod relay;
pub mod sagas;
pub mod service;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod withdrawals;

/// Resolve when the process receives Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
