//! What the operations page reads (query-api's `/ops`, README "Operations page"): every read an
//! operator needs at a glance, each on its own source, so one that fails leaves the others.
//!
//! - [`instances`]: the latest status report of every instance, from the control status topic
//!   (DESIGN §10), followed in the background.
//! - [`consumers`]: the platform's consumer groups and their lag and dead-letter sizes, measured
//!   from the broker ([`crate::kafka::lag`]).
//! - [`activity`]: from the ledger database: commands and events recorded per second, and
//!   withdrawal tasks by state (DESIGN §9).

pub mod activity;
pub mod consumers;
pub mod instances;

/// Why an operations read failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The broker failed.
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
    /// The broker failed.
    #[error("kafka client error: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The ledger database failed.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The ledger database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The blocking task measuring the lag failed.
    #[error("the lag measurement did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// `error` and its causes on one line (`a: b: c`), for an operator to read.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let next = inner.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = inner.source();
    }
    text
}

/// A background task that ends when the last handle to it is dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
