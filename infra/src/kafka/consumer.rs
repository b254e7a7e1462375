//! The consumer toolkit (DESIGN §5, §6): group membership, offsets stored only after the
//! handler's effect is durable, de-duplication by (stream id, version) with a version gap
//! treated as an error, retries with exponential backoff, then parking in
//! `<prefix>.dlq.<consumer>` and going on — unless the handler's stores do not answer
//! ([`EventHandler::ready`]): then the event waits for them —, a graceful stop that finishes
//! the event in flight and commits, the group's lag published by a [`super::lag`] probe, and a
//! member that leaves and joins its group again when the group lags without progress.

use rdkafka::{
    ClientContext, Message,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::{BorrowedMessage, Header, Headers, OwnedHeaders},
    producer::FutureProducer,
};
use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{KafkaError, client_config, ensure_topics, lag, producer, record};
use crate::{
    config::KafkaConfig,
    control::{self, Settings, limit::Limit},
    ledger::RecordedEvent,
};

/// A handler's failure: retried, then the event is parked.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What a projector or saga does with each event. Must be idempotent: the same event can
/// arrive again after a crash (it is then applied twice to the same effect).
pub trait EventHandler: Send + Sync + 'static {
    /// Apply one event; return only once its effect is durable.
    fn handle(&self, event: &RecordedEvent) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Whether the stores the handler writes answer and hold what it needs (e.g. its tables);
    /// asked when an event has failed every attempt. An event is parked only when it fails
    /// once more after this answered `Ok`: while a store is down the event waits (the lag
    /// grows) instead of being parked for a failure that is not its own.
    fn ready(&self) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }
}

/// How a consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Consumer name: the group id and the DLQ suffix.
    pub name: String,
    /// Topics to follow.
    pub topics: Vec<String>,
    /// Attempts before an event is parked.
    pub max_attempts: u32,
    /// First retry delay, doubled each time.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How often to measure and publish the group's lag as `workup_projector_lag_*` (see
    /// [`super::lag`]); `None`: not measured. Projectors set it.
    pub projector_lag: Option<Duration>,
    /// The instance's control settings (DESIGN §10): while frozen it consumes nothing, its
    /// offsets committed; `None`: not steered.
    pub control: Option<watch::Receiver<Settings>>,
    /// Events in flight at once across the instance's consumers (`max_concurrency`); `None`: no
    /// limit beyond one at a time per consumer.
    pub limit: Option<Limit>,
}

impl ConsumerOptions {
    /// Defaults: 5 attempts, 100 ms doubling to 5 s, lag not measured.
    pub fn new(name: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            name: name.into(),
            topics,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            projector_lag: None,
            control: None,
            limit: None,
        }
    }

    /// The options of projector `name`: the defaults, with its lag measured every 2 s.
    pub fn projector(name: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            projector_lag: Some(Duration::from_secs(2)),
            ..Self::new(name, topics)
        }
    }
}

/// The consumer group id of consumer `name`.
pub fn group_id(kafka: &KafkaConfig, name: &str) -> String {
    format!("{}.{name}", kafka.topic_prefix)
}

/// How one message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Handled,
    Duplicate,
    Parked,
}

/// The header naming the one consumer a replayed record is for (`control dlq replay` puts a
/// parked record back on its topic with it): that consumer applies it even if its version was
/// seen (the handlers are idempotent); every other consumer skips it.
pub const REPLAY_FOR_HEADER: &str = "replay-for";

/// The header of a parked record naming the topic it came from.
pub const PARKED_FROM_HEADER: &str = "topic";

/// Consume until `shutdown` turns true.
pub async fn run<H: EventHandler>(
    kafka: &KafkaConfig,
    mut options: ConsumerOptions,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), KafkaError> {
    let dlq_topic = kafka.dlq_topic(&options.name);
    ensure_topics(kafka, &options.topics, false).await?;
    ensure_topics(kafka, std::slice::from_ref(&dlq_topic), false).await?;
    let group = group_id(kafka, &options.name);
    let rebalanced = Rebalanced::default();
    let mut consumer = join_group(kafka, &group, &options.topics, &rebalanced)?;
    let dlq = producer(kafka)?;
    let mut seen = Dedup::default();
    let (lag_sender, mut lag) = watch::channel(None);
    // Stopped with the consumer, however it stops.
    let _monitor = options.projector_lag.and_then(|every| {
        match lag::LagProbe::new(kafka, &group, options.topics.clone(), dlq_topic.clone()) {
            Ok(probe) => Some(AbortOnDrop(tokio::spawn(lag::monitor(
                probe,
                options.name.clone(),
                group.clone(),
                every,
                lag_sender,
                shutdown.clone(),
            )))),
            Err(error) => {
                tracing::warn!(consumer = %options.name, %error, "no lag probe: lag not published");
                None
            }
        }
    });
    tracing::info!(consumer = %options.name, topics = ?options.topics, "consumer started");
    let mut settings = options.control.take();
    let mut stall = StallWatch::new();
    loop {
        if let Some(settings) = settings.as_mut()
            && settings.borrow().frozen
        {
            commit(&consumer)?;
            if !control::wait_while_frozen(settings, &mut shutdown, &options.name).await {
                break;
            }
            stall = StallWatch::new();
        }
        let message = tokio::select! {
            message = consumer.recv() => message,
            _ = shutdown.changed() => break,
            () = control::changed(&mut settings) => continue,
            Ok(()) = lag.changed() => {
                let measured = *lag.borrow_and_update();
                if let Some(measured) = measured
                    && stall.stalled(measured)
                {
                    tracing::error!(consumer = %options.name, lag = measured.events,
                        stalled_secs = STALLED_AFTER.as_secs(), assignment = ?assigned(&consumer),
                        "the group lags and nobody in it has made progress, nor has this member \
                         received a record: leaving the group and joining it again");
                    let _ = commit(&consumer);
                    drop(consumer);
                    consumer = join_group(kafka, &group, &options.topics, &rebalanced)?;
                    seen.forget();
                    stall = StallWatch::new();
                }
                continue;
            }
        };
        stall.received();
        let message = match message {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(consumer = %options.name, %error, "consume error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if rebalanced.0.swap(false, Ordering::Relaxed) {
            seen.forget();
        }
        let _slot = match &options.limit {
            Some(limit) => Some(limit.acquire().await),
            None => None,
        };
        let outcome = process(
            &message,
            &options,
            handler.as_ref(),
            &mut seen,
            (&dlq, &dlq_topic),
            &shutdown,
        )
        .await;
        match outcome {
            Ok(outcome) => {
                metrics::counter!("workup_consumer_events_total", "consumer" => options.name.clone(), "outcome" => format!("{outcome:?}")).increment(1);
                consumer.store_offset_from_message(&message)?;
            }
            // Stopping mid-retry: the offset is not stored, the event comes again after restart.
            Err(Stopped) => break,
        }
    }
    commit(&consumer)?;
    tracing::info!(consumer = %options.name, "consumer stopped");
    Ok(())
}

/// A member of group `group` on `topics` (not yet assigned anything).
fn join_group(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    rebalanced: &Rebalanced,
) -> Result<StreamConsumer<Rebalanced>, KafkaError> {
    let consumer: StreamConsumer<Rebalanced> = client_config(kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        // Offsets are stored by hand once the effect is durable; auto-commit sends only those.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("auto.commit.interval.ms", "1000")
        .set("fetch.wait.max.ms", kafka.fetch_wait_ms.to_string())
        .set("session.timeout.ms", "10000")
        // Also the rebalance timeout: how long a group waits for a member that left silently.
        .set("max.poll.interval.ms", "60000")
        .create_with_context(rebalanced.clone())?;
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// The partitions assigned to this member now (for the log).
fn assigned(consumer: &StreamConsumer<Rebalanced>) -> Vec<(String, i32)> {
    consumer
        .assignment()
        .map(|list| {
            list.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect()
        })
        .unwrap_or_default()
}

/// How long a lagging group may go without progress, and this member without a record, before
/// the member leaves and joins again.
const STALLED_AFTER: Duration = Duration::from_secs(30);

/// Watches for a stalled group: records published, nobody committing, nothing received here.
/// Seen after the local broker restarted (a group whose members were never given their
/// partitions again); a member joining anew makes the broker form the group again.
struct StallWatch {
    /// When this member last received a record (or started).
    last_record: std::time::Instant,
    /// The group's committed total and since when it has been that.
    committed: Option<(i64, std::time::Instant)>,
}

impl StallWatch {
    fn new() -> Self {
        Self {
            last_record: std::time::Instant::now(),
            committed: None,
        }
    }

    fn received(&mut self) {
        self.last_record = std::time::Instant::now();
    }

    /// Whether the group is stalled, given a new measurement of its lag.
    fn stalled(&mut self, lag: lag::Lag) -> bool {
        let now = std::time::Instant::now();
        let since = match self.committed {
            Some((total, since)) if total == lag.committed => since,
            _ => {
                self.committed = Some((lag.committed, now));
                now
            }
        };
        lag.events > 0
            && now.duration_since(since) >= STALLED_AFTER
            && now.duration_since(self.last_record) >= STALLED_AFTER
    }
}

/// Commit the offsets stored so far (none stored yet is fine).
fn commit(consumer: &StreamConsumer<Rebalanced>) -> Result<(), KafkaError> {
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .or_else(|e| match e {
            rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset) => Ok(()),
            e => Err(e),
        })?;
    Ok(())
}

struct Stopped;

/// The value of header `name` of `message`, as text.
fn header<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// A background task that ends when this handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn process<H: EventHandler>(
    message: &BorrowedMessage<'_>,
    options: &ConsumerOptions,
    handler: &H,
    seen: &mut Dedup,
    (dlq, dlq_topic): (&FutureProducer, &str),
    shutdown: &watch::Receiver<bool>,
) -> Result<Outcome, Stopped> {
    let payload = message.payload().unwrap_or_default();
    let event: RecordedEvent = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(error) => {
            let reason = format!("undecodable: {error}");
            park(dlq, dlq_topic, message, &reason, 0, options, shutdown).await?;
            return Ok(Outcome::Parked);
        }
    };
    // A replayed event is applied again by the consumer that parked it (it was parked, not
    // applied), and by no other.
    let replayed = match header(message, REPLAY_FOR_HEADER) {
        Some(consumer) if consumer == options.name => true,
        Some(_) => return Ok(Outcome::Duplicate),
        None => false,
    };
    if !replayed && seen.already_applied(event.stream_id, event.version) {
        return Ok(Outcome::Duplicate);
    }
    let mut backoff = options.initial_backoff;
    let mut attempt = 1;
    // Whether the handler's stores answered since the attempts ran out ([`EventHandler::ready`]).
    let mut stores_checked = false;
    loop {
        // A version past the next one means an event of the stream is missing here (not yet
        // arrived, or lost): an error to retry, never progress. Parked in the end, it is not
        // counted as applied, so the missing event is still applied when it comes.
        let gap = if replayed {
            None
        } else {
            seen.gap(event.stream_id, event.version)
        };
        let outcome = match gap {
            Some(last) => Err(format!(
                "version gap: stream {} is at version {last} here, event has version {}",
                event.stream_id, event.version
            )
            .into()),
            None => handler.handle(&event).await,
        };
        match outcome {
            Ok(()) => break,
            Err(error) if attempt >= options.max_attempts && !stores_checked => match handler.ready().await {
                Ok(()) => {
                    stores_checked = true;
                    attempt += 1;
                }
                Err(down) => {
                    tracing::warn!(consumer = %options.name, stream_id = %event.stream_id, version = event.version,
                            %error, store = %down, "a store is not ready; the event waits for it (not parked)");
                    if *shutdown.borrow() {
                        return Err(Stopped);
                    }
                    tokio::time::sleep(options.max_backoff).await;
                }
            },
            Err(error) if attempt >= options.max_attempts => {
                tracing::error!(consumer = %options.name, stream_id = %event.stream_id, version = event.version,
                    event_type = %event.event_type, %error, attempts = attempt, "parking event in the dead-letter topic");
                park(
                    dlq,
                    dlq_topic,
                    message,
                    &error.to_string(),
                    attempt,
                    options,
                    shutdown,
                )
                .await?;
                if gap.is_none() {
                    seen.applied(event.stream_id, event.version);
                }
                return Ok(Outcome::Parked);
            }
            Err(error) => {
                tracing::warn!(consumer = %options.name, stream_id = %event.stream_id, version = event.version,
                    %error, attempt, "handler failed; retrying");
                if *shutdown.borrow() {
                    return Err(Stopped);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.max_backoff);
                attempt += 1;
            }
        }
    }
    seen.applied(event.stream_id, event.version);
    Ok(Outcome::Handled)
}

/// Send a poison event to the dead-letter topic with the reason in headers, retrying with
/// backoff until the broker takes it: its offset is stored only once it is parked.
async fn park(
    dlq: &FutureProducer,
    topic: &str,
    message: &BorrowedMessage<'_>,
    error: &str,
    attempts: u32,
    options: &ConsumerOptions,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), Stopped> {
    let key = String::from_utf8_lossy(message.key().unwrap_or_default());
    let payload = message.payload().unwrap_or_default();
    let attempts = attempts.to_string();
    let mut backoff = options.initial_backoff;
    loop {
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "error",
                value: Some(error),
            })
            .insert(Header {
                key: PARKED_FROM_HEADER,
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "attempts",
                value: Some(attempts.as_str()),
            });
        match dlq
            .send(record(topic, &key, payload, headers), Duration::from_secs(30))
            .await
        {
            Ok(_) => return Ok(()),
            Err((e, _)) => {
                tracing::error!(%topic, error = %e, ?backoff, "could not park an event in the dead-letter topic; retrying");
                if *shutdown.borrow() {
                    return Err(Stopped);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
    }
}

/// Raised when this member's partitions change: what it remembers of streams may be stale.
#[derive(Default, Clone)]
struct Rebalanced(Arc<AtomicBool>);

impl ClientContext for Rebalanced {}

impl ConsumerContext for Rebalanced {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The last version applied per stream, so a redelivered event is skipped. In memory: the
/// durable guard is each handler's own idempotence (versions stored with read-model rows).
#[derive(Default)]
struct Dedup {
    last: HashMap<Uuid, i64>,
}

impl Dedup {
    const MAX_STREAMS: usize = 200_000;

    fn already_applied(&self, stream_id: Uuid, version: i64) -> bool {
        self.last.get(&stream_id).is_some_and(|v| *v >= version)
    }

    /// The last version applied, if `version` is not the one after it (a stream not seen
    /// since this consumer started, or since its partitions last changed, has no gap).
    fn gap(&self, stream_id: Uuid, version: i64) -> Option<i64> {
        self.last
            .get(&stream_id)
            .copied()
            .filter(|last| version > last + 1)
    }

    /// Forget every stream: after a rebalance another member may have applied events of them.
    fn forget(&mut self) {
        self.last.clear();
    }

    fn applied(&mut self, stream_id: Uuid, version: i64) {
        if self.last.len() >= Self::MAX_STREAMS {
            self.last.clear();
        }
        self.last.insert(stream_id, version);
    }
}
