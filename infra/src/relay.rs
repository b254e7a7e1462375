//! The outbox relay (DESIGN §1, §5): publishes committed events to their context's topic, in
//! ledger order (the tail of the events table, then events queued again: [`crate::ledger::outbox`]),
//! and records how far it got once the broker has acknowledged them.
//!
//! Several instances may run; one holds the lease ([`RelayLease`]) and the others stand by.
//! The holder keeps up to [`Relay::with_depth`] batches in flight: the next batch is read and
//! queued on the producer while earlier ones wait for their acknowledgements, which are taken
//! (and their rows deleted) in order. The producer keeps queued messages in order per partition
//! and retries them until delivered (no message timeout), so a later batch cannot overtake an
//! earlier one. If a send still fails, every batch in flight is waited for before the unacknowledged
//! rows are read again: republished, never skipped. A crash between publish and delete
//! republishes too; consumers de-duplicate by (stream id, version), so each event is applied once.

use futures::future::BoxFuture;
use rdkafka::{
    message::OwnedHeaders,
    producer::{FutureProducer, future_producer::DeliveryFuture},
};
use std::{collections::VecDeque, time::Duration};
use tokio::sync::{Mutex, watch};

use crate::{
    config::KafkaConfig,
    control::{self, Settings},
    kafka::{self, KafkaError},
    ledger::{Acknowledgement, Ledger, LedgerError, RelayBatch, RelayLease},
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
    /// Nothing to publish (or another relay holds the outbox).
    Idle,
}

/// A batch sent and not yet acknowledged.
struct InFlight {
    acknowledgement: Acknowledgement,
    /// Resolves once every message of the batch is acknowledged: how many, and the first failure
    /// if any (after all have resolved).
    delivered: BoxFuture<'static, Delivered>,
}

/// How many messages of a batch were acknowledged, and the first failure if any.
type Delivered = (usize, Result<(), KafkaError>);

async fn all_delivered(deliveries: Vec<DeliveryFuture>) -> Delivered {
    let count = deliveries.len();
    let mut outcome = Ok(());
    for delivery in deliveries {
        let failure = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((error, _))) => error,
            Err(_) => rdkafka::error::KafkaError::Canceled,
        };
        if outcome.is_ok() {
            outcome = Err(KafkaError::Client(failure));
        }
    }
    (count, outcome)
}

/// The outbox relay.
pub struct Relay {
    ledger: Ledger,
    producer: FutureProducer,
    kafka: KafkaConfig,
    batch_size: i64,
    depth: usize,
    control: Option<watch::Receiver<Settings>>,
    /// The lease of [`Relay::step`] (tests and tools), kept between steps.
    lease: Mutex<Option<RelayLease>>,
}

impl Relay {
    /// How long an idle relay waits before looking at the outbox again (appends do not notify).
    pub const POLL: Duration = Duration::from_millis(5);
    /// How long a relay that does not hold the outbox waits before trying again.
    const STANDBY: Duration = Duration::from_secs(1);

    /// A relay publishing `ledger`'s outbox with batches of `batch_size`, 8 in flight.
    pub fn new(ledger: Ledger, kafka: &KafkaConfig, batch_size: i64) -> Result<Self, KafkaError> {
        Ok(Self {
            ledger,
            producer: kafka::relay_producer(kafka)?,
            kafka: kafka.clone(),
            batch_size,
            depth: 8,
            control: None,
            lease: Mutex::new(None),
        })
    }

    /// At most `depth` batches in flight (1: each batch waits for the previous one's
    /// acknowledgements).
    pub fn with_depth(mut self, depth: usize) -> Self {
        self.depth = depth.max(1);
        self
    }

    /// Steered by these control settings (DESIGN §10): while frozen it publishes nothing (the
    /// batches in flight are finished first).
    pub fn with_control(mut self, settings: watch::Receiver<Settings>) -> Self {
        self.control = Some(settings);
        self
    }

    /// Publish one batch and wait for it: read, send all, wait for every acknowledgement, delete.
    #[tracing::instrument(skip_all)]
    pub async fn step(&self) -> Result<Step, RelayError> {
        let mut lease = self.lease.lock().await;
        if lease.is_none() {
            *lease = self.ledger.relay_lease().await?;
        }
        let Some(held) = lease.as_mut() else {
            return Ok(Step::Idle);
        };
        let outcome = self.publish_one(held).await;
        if outcome.is_err() {
            // The connection may be what failed: take a new lease next time.
            *lease = None;
        }
        outcome
    }

    async fn publish_one(&self, lease: &mut RelayLease) -> Result<Step, RelayError> {
        let Some(batch) = lease.next(self.batch_size, &[]).await? else {
            return Ok(Step::Idle);
        };
        let in_flight = self.send(batch)?;
        let (count, outcome) = in_flight.delivered.await;
        outcome?;
        lease.acknowledge(&in_flight.acknowledgement).await?;
        metrics::counter!("workup_relay_published_total").increment(count as u64);
        Ok(Step::Published(count))
    }

    /// Queue a batch's events on the producer, in order.
    fn send(&self, batch: RelayBatch) -> Result<InFlight, KafkaError> {
        let mut deliveries = Vec::with_capacity(batch.events.len());
        for (context, event) in &batch.events {
            let topic = format!("{}.{context}", self.kafka.topic_prefix);
            let (key, value) = kafka::encode_event(event)?;
            let delivery = self
                .producer
                .send_result(kafka::record(&topic, &key, &value, OwnedHeaders::new()))
                .map_err(|(error, _)| KafkaError::Client(error))?;
            deliveries.push(delivery);
        }
        Ok(InFlight {
            acknowledgement: batch.acknowledgement,
            delivered: Box::pin(all_delivered(deliveries)),
        })
    }

    /// Publish every event committed before the call, batches pipelined as in [`Relay::run`]
    /// (tests and tools); how many events. Waits (up to 30 s) for transactions still writing
    /// anywhere on the database cluster, which hold the tail back. Nothing when another relay
    /// holds the lease.
    pub async fn run_until_idle(&self) -> Result<usize, RelayError> {
        let end = self.ledger.tail_end().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut published = 0;
        loop {
            let mut lease = self.lease.lock().await;
            if lease.is_none() {
                *lease = self.ledger.relay_lease().await?;
            }
            let Some(held) = lease.as_mut() else {
                return Ok(published);
            };
            let (_running, shutdown) = watch::channel(false);
            match self.pipeline(held, &shutdown, &None).await {
                Ok(count) => published += count,
                Err(error) => {
                    *lease = None;
                    return Err(error);
                }
            }
            if end.is_none_or(|end| held.read() >= end) || tokio::time::Instant::now() > deadline {
                return Ok(published);
            }
            drop(lease);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Relay until `shutdown` turns true: holding the outbox when no other relay does, with
    /// batches pipelined, polling an idle outbox every [`Relay::POLL`], backing off on errors.
    /// The batches in flight are finished before returning.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let lag = tokio::spawn(report_lag(self.ledger.clone(), shutdown.clone()));
        let mut settings = self.control.take();
        let mut lease: Option<RelayLease> = self.lease.get_mut().take();
        tracing::info!(
            depth = self.depth,
            batch = self.batch_size,
            "outbox relay started"
        );
        while !*shutdown.borrow() {
            if let Some(settings) = settings.as_mut()
                && !control::wait_while_frozen(settings, &mut shutdown, "relay").await
            {
                break;
            }
            if lease.is_none() {
                match self.ledger.relay_lease().await {
                    Ok(Some(held)) => {
                        tracing::info!("relay holds the outbox");
                        lease = Some(held);
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "relay could not reach the ledger"),
                }
            }
            let Some(held) = lease.as_mut() else {
                tokio::select! {
                    _ = tokio::time::sleep(Self::STANDBY) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            match self.pipeline(held, &shutdown, &settings).await {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    // Idle: look again soon (appends do not notify; polling an empty outbox is
                    // one index probe).
                    tokio::select! {
                        _ = tokio::time::sleep(Self::POLL) => {}
                        _ = shutdown.changed() => {}
                        () = control::changed(&mut settings) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, cause = ?error, ?backoff, "relay failed; retrying");
                    // Whatever failed, the next round starts from a new lease: the rows not
                    // acknowledged are read again.
                    lease = None;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        lag.abort();
        tracing::info!("outbox relay stopped");
    }

    /// Publish while there is work, up to `depth` batches in flight, until the outbox is empty,
    /// a stop or freeze is asked for, or something fails. Returns only once no batch is in flight.
    async fn pipeline(
        &self,
        lease: &mut RelayLease,
        shutdown: &watch::Receiver<bool>,
        settings: &Option<watch::Receiver<Settings>>,
    ) -> Result<usize, RelayError> {
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut published = 0;
        let mut failure: Option<RelayError> = None;
        loop {
            let stopping = *shutdown.borrow() || settings.as_ref().is_some_and(|s| s.borrow().frozen);
            let mut read = false;
            if failure.is_none() && !stopping && in_flight.len() < self.depth {
                let queued: Vec<i64> = in_flight
                    .iter()
                    .flat_map(|b| match &b.acknowledgement {
                        Acknowledgement::Queued(positions) => positions.as_slice(),
                        Acknowledgement::Tail(_) => &[],
                    })
                    .copied()
                    .collect();
                match lease.next(self.batch_size, &queued).await {
                    Ok(Some(batch)) => {
                        read = true;
                        match self.send(batch) {
                            Ok(batch) => in_flight.push_back(batch),
                            Err(error) => failure = Some(error.into()),
                        }
                    }
                    Ok(None) => {}
                    Err(error) => failure = Some(error.into()),
                }
            }
            // Keep reading while batches are short of the depth; otherwise wait for the oldest.
            if read && failure.is_none() && in_flight.len() < self.depth {
                continue;
            }
            let can_read = failure.is_none() && !stopping && in_flight.len() < self.depth;
            let Some(oldest) = in_flight.front_mut() else {
                return failure.map_or(Ok(published), Err);
            };
            // Nothing new to read: wait for the oldest batch, but look again at the next poll,
            // so events committed meanwhile do not wait for the broker's answer.
            let delivered = if can_read {
                tokio::select! {
                    delivered = &mut oldest.delivered => Some(delivered),
                    () = tokio::time::sleep(Self::POLL) => None,
                }
            } else {
                Some((&mut oldest.delivered).await)
            };
            let Some((count, outcome)) = delivered else {
                continue;
            };
            let Some(InFlight { acknowledgement, .. }) = in_flight.pop_front() else {
                continue;
            };
            match outcome {
                // After a failure nothing more is recorded: later batches are only waited for,
                // and everything not acknowledged so far is read again.
                Ok(()) if failure.is_none() => {
                    if let Err(error) = lease.acknowledge(&acknowledgement).await {
                        failure = Some(error.into());
                        continue;
                    }
                    metrics::counter!("workup_relay_published_total").increment(count as u64);
                    published += count;
                }
                Ok(()) => {}
                Err(error) => {
                    failure.get_or_insert(error.into());
                }
            }
        }
    }
}

/// Publish the relay's lag (DESIGN §5) every half second until `shutdown`.
async fn report_lag(ledger: Ledger, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Ok(lag) = ledger.outbox_lag().await {
            metrics::gauge!("workup_outbox_lag_events").set(lag.events as f64);
            metrics::gauge!("workup_outbox_lag_seconds").set(lag.seconds);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
