//! Fixtures shared by the infra integration test binaries: a tiny test aggregate, append
//! helpers, an in-process consumer that collects what it receives, and polling with deadlines.

#![allow(dead_code)] // each test binary uses its own subset

use chrono::Utc;
use domain::{Aggregate, BoundedContext, DomainEvent};
use infra::{
    kafka::{
        KafkaError,
        consumer::{self, ConsumerOptions, EventHandler, HandlerError},
    },
    ledger::{
        AppendRequest, EventMetadata, ExpectedVersion, Ledger, LedgerError, RecordedEvent, StreamWrite,
    },
    testing::TestEnv,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

/// A fresh [`TestEnv`] (own database, migrated; own topic prefix, topics created).
pub async fn test_env() -> TestEnv {
    TestEnv::new().await.expect("the local stack is up")
}

/// A counter: the smallest aggregate that shows versions and folding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counter {
    /// Sum of every increment.
    pub total: i64,
    /// Number of increments.
    pub increments: i64,
}

/// The counter's one event. Schema 2 (`by`); schema 1 called the field `n`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CounterEvent {
    /// The counter went up.
    Incremented {
        /// By how much.
        by: i64,
    },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> &'static str {
        "Incremented"
    }

    fn schema_version(&self) -> u16 {
        2
    }
}

impl Aggregate for Counter {
    const STREAM_TYPE: &'static str = "counter";
    const CONTEXT: BoundedContext = BoundedContext::Jobs;
    type Event = CounterEvent;

    fn evolve(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Incremented { by } => {
                self.total += by;
                self.increments += 1;
            }
        }
    }
}

/// Fresh metadata (new command id).
pub fn meta() -> EventMetadata {
    EventMetadata::new(Uuid::now_v7(), None, Utc::now())
}

/// The write of `count` increments (by 1, 2, ..) to `stream`.
pub fn increments(stream: Uuid, expected: ExpectedVersion, count: usize) -> StreamWrite {
    let events: Vec<CounterEvent> = (1..=count as i64)
        .map(|by| CounterEvent::Incremented { by })
        .collect();
    StreamWrite::of::<Counter>(stream, expected, &events).expect("counter events encode")
}

/// Append `count` increments to `stream` in one command.
pub async fn append(
    ledger: &Ledger,
    stream: Uuid,
    expected: ExpectedVersion,
    count: usize,
) -> Result<infra::ledger::Appended, LedgerError> {
    ledger
        .append(AppendRequest::new(
            meta(),
            vec![increments(stream, expected, count)],
        ))
        .await
}

/// Poll `check` until it is true, failing after `timeout` with `what`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An event handler that records every event it is given (after the toolkit's de-duplication).
#[derive(Debug, Default)]
pub struct Collector {
    events: Mutex<Vec<RecordedEvent>>,
}

impl Collector {
    /// What was received so far, in arrival order.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.events.lock().expect("collector lock").clone()
    }

    /// How many events were received.
    pub fn len(&self) -> usize {
        self.events.lock().expect("collector lock").len()
    }
}

impl EventHandler for Collector {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        self.events.lock().expect("collector lock").push(event.clone());
        Ok(())
    }
}

/// A consumer running in the background on the toolkit.
pub struct RunningConsumer {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), KafkaError>>,
}

impl RunningConsumer {
    /// Start consumer `name` on every context topic of `env`.
    pub fn start<H: EventHandler>(env: &TestEnv, name: &str, handler: Arc<H>) -> Self {
        let options = ConsumerOptions::new(name, infra::kafka::context_topics(&env.config.kafka));
        Self::start_with(env, options, handler)
    }

    /// Start a consumer with explicit options.
    pub fn start_with<H: EventHandler>(env: &TestEnv, options: ConsumerOptions, handler: Arc<H>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let kafka = env.config.kafka.clone();
        let task = tokio::spawn(async move { consumer::run(&kafka, options, handler, stopped).await });
        Self { stop, task }
    }

    /// Stop it and surface its error, if any.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task
            .await
            .expect("consumer task")
            .expect("consumer ran without error");
    }
}

/// Every stream's events, as received, must be exactly versions 1..=n in order, and every
/// stream of `expected` (stream → last version) must be complete, with nothing else.
pub fn assert_exactly_once_in_order(received: &[RecordedEvent], expected: &BTreeMap<Uuid, i64>) {
    let mut per_stream: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    for event in received {
        per_stream.entry(event.stream_id).or_default().push(event.version);
    }
    for (stream, last) in expected {
        let versions = per_stream.remove(stream).unwrap_or_default();
        let wanted: Vec<i64> = (1..=*last).collect();
        assert_eq!(versions, wanted, "stream {stream}: every version once, in order");
    }
    assert!(
        per_stream.is_empty(),
        "events of unexpected streams: {:?}",
        per_stream.keys()
    );
}

/// The last version of every stream in the ledger (stream → version).
pub async fn ledger_streams(ledger: &Ledger) -> BTreeMap<Uuid, i64> {
    let mut streams = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = ledger.read_all(after, 10_000).await.expect("read_all");
        let Some(last) = page.last() else { break };
        after = last.global_position;
        for event in &page {
            let version = streams.entry(event.stream_id).or_insert(0);
            *version = event.version.max(*version);
        }
    }
    streams
}

/// Rows left in the outbox.
pub async fn outbox_len(ledger: &Ledger) -> i64 {
    ledger.outbox_lag().await.expect("outbox lag").events
}
