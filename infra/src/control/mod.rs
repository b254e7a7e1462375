//! The control plane (DESIGN §10): operators steer running instances through the compacted
//! control topic, without restarts.
//!
//! - [`message`]: a desired setting of a service (or `all`), versioned and signed (HMAC-SHA256).
//! - [`settings`]: what one instance applies of them: the newest message per setting.
//! - [`listener`]: the [`ControlPlane`] every instance joins at boot (read to the end, apply, then
//!   follow) and its heartbeat on the status topic.
//! - [`operator`]: the operator's side, for the `control` CLI: send a message, read the status.
//! - [`gate`]: applying the settings to an HTTP service (503 when frozen, 410 for a disabled
//!   command, the in-flight limit).

pub mod gate;
pub mod limit;
pub mod listener;
pub mod message;
pub mod operator;
pub mod settings;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use listener::ControlPlane;
pub use message::{ALL, ControlKey, ControlMessage, ReadModelGenerations, SERVICES, Setting};
pub use settings::Settings;

/// What an instance reports on the status topic every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Its service.
    pub service: String,
    /// Its id (service and a random part).
    pub instance: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it sent this report.
    pub heartbeat_at: DateTime<Utc>,
    /// The settings it runs with.
    pub settings: Settings,
    /// Message key → the version it applied.
    pub versions: BTreeMap<String, i64>,
}

/// Why the control plane could not be joined or used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The key is missing or weak.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The broker failed.
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
    /// The broker failed.
    #[error("kafka client error: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// A control topic could not be read to its end in time.
    #[error("the control topics could not be read to their end within {0:?}")]
    BootTimeout(std::time::Duration),
    /// A message could not be encoded.
    #[error("could not encode a control message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Wait while `settings` say frozen (a worker between two units of work); `false` if `shutdown`
/// turned true meanwhile. `what` names the worker in logs and in `workup_frozen{worker}`.
pub async fn wait_while_frozen(
    settings: &mut tokio::sync::watch::Receiver<Settings>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    what: &str,
) -> bool {
    if !settings.borrow_and_update().frozen {
        return true;
    }
    let gauge = metrics::gauge!("workup_frozen", "worker" => what.to_owned());
    gauge.set(1.0);
    tracing::info!(worker = what, "frozen by the control plane");
    let running = loop {
        tokio::select! {
            changed = settings.changed() => {
                // No sender any more: nothing can freeze it; run.
                if changed.is_err() || !settings.borrow_and_update().frozen {
                    break true;
                }
            }
            _ = shutdown.changed() => break false,
        }
    };
    gauge.set(0.0);
    if running {
        tracing::info!(worker = what, "started again by the control plane");
    }
    running
}

/// Resolves when `settings` change; never if there are none to watch.
pub async fn changed(settings: &mut Option<tokio::sync::watch::Receiver<Settings>>) {
    let alive = match settings {
        Some(settings) => settings.changed().await.is_ok(),
        None => false,
    };
    if !alive {
        std::future::pending::<()>().await;
    }
}

/// Keep `ledger`'s pool at the `max_db_connections` of `settings` (`configured` when unset), now
/// and whenever it changes; while frozen, a fresh pool of one that opens nothing until used, so
/// a frozen instance holds no connection. The task ends with the settings' sender.
pub fn follow_pool_limit(
    ledger: crate::ledger::Ledger,
    mut settings: tokio::sync::watch::Receiver<Settings>,
    configured: u32,
) {
    tokio::spawn(async move {
        let mut applied = configured;
        loop {
            let wanted = {
                let now = settings.borrow_and_update();
                if now.frozen {
                    1
                } else {
                    now.max_db_connections.unwrap_or(configured)
                }
            };
            if wanted != applied {
                ledger.resize_pool(wanted);
                applied = wanted;
            }
            if settings.changed().await.is_err() {
                return;
            }
        }
    });
}
