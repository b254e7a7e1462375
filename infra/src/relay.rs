//! The outbox relay (DESIGN §1, §5): publishes committed events to their context's topic,
//! in ledger order, and deletes them from the outbox once the broker acknowledged them.
//!
//! Several instances may run: one batch is in flight at a time (see [`crate::ledger::outbox`]).
//! A crash between publish and delete republishes the batch; consumers de-duplicate by
//! (stream id, version), so each event is seen exactly once.

use futures::future::try_join_all;
use rdkafka::producer::FutureProducer;
use sqlx::postgres::PgListener;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::{
    config::KafkaConfig,
    control::{self, Settings},
    kafka::{self, KafkaError},
    ledger::{Ledger, LedgerError, append::OUTBOX_CHANNEL},
};

/// Why a relay step failed (the step is retried; nothing is lost).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The broker failed or timed out.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Published this many events.
    Published(usize),
    /// Nothing to publish (or another relay holds the batch).
    Idle,
}

/// The outbox relay.
pub struct Relay {
    ledger: Ledger,
    producer: FutureProducer,
    kafka: KafkaConfig,
    batch_size: i64,
    control: Option<watch::Receiver<Settings>>,
}

impl Relay {
    /// A relay publishing `ledger`'s outbox with batches of `batch_size`.
    pub fn new(ledger: Ledger, kafka: &KafkaConfig, batch_size: i64) -> Result<Self, KafkaError> {
        Ok(Self {
            ledger,
            producer: kafka::producer(kafka)?,
            kafka: kafka.clone(),
            batch_size,
            control: None,
        })
    }

    /// Steered by these control settings (DESIGN §10): while frozen it publishes nothing (the
    /// batch in flight is finished first).
    pub fn with_control(mut self, settings: watch::Receiver<Settings>) -> Self {
        self.control = Some(settings);
        self
    }

    /// Publish one batch: claim, send all, wait for every acknowledgement, delete.
    #[tracing::instrument(skip_all)]
    pub async fn step(&self) -> Result<Step, RelayError> {
        let Some(batch) = self.ledger.claim_outbox(self.batch_size).await? else {
            return Ok(Step::Idle);
        };
        let encoded = batch
            .events
            .iter()
            .map(|(context, event)| {
                let (key, value, headers) = kafka::encode_event(event)?;
                Ok((
                    format!("{}.{context}", self.kafka.topic_prefix),
                    key,
                    value,
                    headers,
                ))
            })
            .collect::<Result<Vec<_>, KafkaError>>()?;
        // Sends are enqueued in order; the idempotent producer keeps that order per partition.
        try_join_all(encoded.iter().map(|(topic, key, value, headers)| {
            self.producer.send(
                kafka::record(topic, key, value, headers.clone()),
                Duration::from_secs(30),
            )
        }))
        .await
        .map_err(|(e, _)| KafkaError::Client(e))?;
        let published = batch.events.len();
        batch.acknowledge().await?;
        metrics::counter!("workup_relay_published_total").increment(published as u64);
        Ok(Step::Published(published))
    }

    /// Step until the outbox is empty (tests and tools).
    pub async fn run_until_idle(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        while let Step::Published(n) = self.step().await? {
            total += n;
        }
        Ok(total)
    }

    /// Relay until `shutdown` turns true: woken by the ledger's notifications, polling as a
    /// fallback, backing off on errors. The batch in flight is finished before returning.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        const POLL: Duration = Duration::from_millis(500);
        const RELISTEN: Duration = Duration::from_secs(5);
        let mut listener = self.listen().await;
        let mut listened = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut last_lag = Instant::now() - POLL;
        tracing::info!("outbox relay started");
        let mut settings = self.control.take();
        while !*shutdown.borrow() {
            if let Some(settings) = settings.as_mut()
                && !control::wait_while_frozen(settings, &mut shutdown, "relay").await
            {
                break;
            }
            if last_lag.elapsed() >= POLL {
                self.report_lag().await;
                last_lag = Instant::now();
            }
            match self.step().await {
                Ok(Step::Published(_)) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(Step::Idle) => {
                    // A listener lost (a database restart, a resized pool) is made again.
                    if listener.is_none() && listened.elapsed() >= RELISTEN {
                        listener = self.listen().await;
                        listened = Instant::now();
                    }
                    let notified = async {
                        match listener.as_mut() {
                            Some(l) => l.recv().await.is_ok(),
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        ok = notified => if !ok { listener = None },
                        _ = tokio::time::sleep(POLL) => {}
                        _ = shutdown.changed() => {}
                        () = control::changed(&mut settings) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, cause = ?error, ?backoff, "relay step failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// A listener of the ledger's append notifications, if one can be had.
    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.ledger.pool()).await.ok()?;
        listener.listen(OUTBOX_CHANNEL).await.ok()?;
        Some(listener)
    }

    async fn report_lag(&self) {
        if let Ok(lag) = self.ledger.outbox_lag().await {
            metrics::gauge!("workup_outbox_lag_events").set(lag.events as f64);
            metrics::gauge!("workup_outbox_lag_seconds").set(lag.seconds);
        }
    }
}
