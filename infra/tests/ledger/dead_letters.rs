//! The consumer toolkit with a poison event: retried, parked in the DLQ, and the consumer goes on.

use infra::{
    kafka::{
        client_config,
        consumer::{
            ConsumerOptions, EventHandler, HandlerError, PARKED_FROM_HEADER, REPLAY_FOR_HEADER, group_id,
        },
        context_topics, encode_event,
        lag::LagProbe,
        producer, record,
    },
    ledger::{ExpectedVersion, RecordedEvent},
    relay::Relay,
    testing::TestEnv,
};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};
use uuid::Uuid;

use crate::support::{RunningConsumer, append, eventually, test_env};

/// Fails every time on one (stream, version) until it is fixed; records attempts and successes.
struct Picky {
    poison: Mutex<Option<(Uuid, i64)>>,
    attempts: Mutex<HashMap<(Uuid, i64), u32>>,
    handled: Mutex<Vec<(Uuid, i64)>>,
}

impl EventHandler for Picky {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        let key = (event.stream_id, event.version);
        *self.attempts.lock().expect("lock").entry(key).or_default() += 1;
        if *self.poison.lock().expect("lock") == Some(key) {
            return Err("cannot project this one".into());
        }
        self.handled.lock().expect("lock").push(key);
        Ok(())
    }
}

/// Consumer `name` on every context topic, with 3 attempts 10 to 40 ms apart.
fn quick_retries(env: &TestEnv, name: &str) -> ConsumerOptions {
    let mut options = ConsumerOptions::new(name, context_topics(&env.config.kafka));
    options.max_attempts = 3;
    options.initial_backoff = Duration::from_millis(10);
    options.max_backoff = Duration::from_millis(40);
    options
}

/// Its store is down until `up` turns true: every event fails meanwhile, and `ready` says so.
struct StoreDown {
    up: AtomicBool,
    attempts: AtomicU32,
    handled: Mutex<Vec<(Uuid, i64)>>,
}

impl EventHandler for StoreDown {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if !self.up.load(Ordering::Relaxed) {
            return Err("connection refused".into());
        }
        self.handled
            .lock()
            .expect("lock")
            .push((event.stream_id, event.version));
        Ok(())
    }

    async fn ready(&self) -> Result<(), HandlerError> {
        if self.up.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("the store does not answer".into())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_waits_while_its_store_is_down_and_is_never_parked_for_it() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let stream = Uuid::now_v7();
    for version in 0..3 {
        append(&ledger, stream, ExpectedVersion::from_loaded(version), 1)
            .await
            .expect("append");
    }
    Relay::new(ledger.clone(), &env.config.kafka, 100)
        .expect("relay")
        .run_until_idle()
        .await
        .expect("relay");
    let handler = Arc::new(StoreDown {
        up: AtomicBool::new(false),
        attempts: AtomicU32::new(0),
        handled: Mutex::default(),
    });
    let options = quick_retries(&env, "patient");
    let consumer = RunningConsumer::start_with(&env, options, handler.clone());
    eventually(
        Duration::from_secs(30),
        "the first event tried well past max_attempts",
        || async { handler.attempts.load(Ordering::Relaxed) > 10 },
    )
    .await;
    assert!(handler.handled.lock().expect("lock").is_empty());
    handler.up.store(true, Ordering::Relaxed);
    eventually(Duration::from_secs(30), "all three handled", || async {
        handler.handled.lock().expect("lock").len() == 3
    })
    .await;
    assert_eq!(
        *handler.handled.lock().expect("lock"),
        vec![(stream, 1), (stream, 2), (stream, 3)],
        "in order: the first one waited for its store instead of being parked"
    );
    let probe = LagProbe::new(
        &env.config.kafka,
        &group_id(&env.config.kafka, "patient"),
        context_topics(&env.config.kafka),
        env.config.kafka.dlq_topic("patient"),
    )
    .expect("probe");
    let parked = tokio::task::spawn_blocking(move || probe.measure().expect("lag").dlq_events)
        .await
        .expect("probe");
    assert_eq!(parked, 0, "nothing parked");
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_is_retried_then_parked_and_later_events_still_flow() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let (stream, other) = (Uuid::now_v7(), Uuid::now_v7());
    for version in 0..5 {
        append(&ledger, stream, ExpectedVersion::from_loaded(version), 1)
            .await
            .expect("append");
    }
    append(&ledger, other, ExpectedVersion::NoStream, 2)
        .await
        .expect("append other");
    Relay::new(ledger.clone(), &env.config.kafka, 100)
        .expect("relay")
        .run_until_idle()
        .await
        .expect("relay");

    let handler = Arc::new(Picky {
        poison: Mutex::new(Some((stream, 3))),
        attempts: Mutex::default(),
        handled: Mutex::default(),
    });
    let options = quick_retries(&env, "picky");
    let consumer = RunningConsumer::start_with(&env, options, handler.clone());
    eventually(
        Duration::from_secs(30),
        "the other six events handled",
        || async { handler.handled.lock().expect("lock").len() >= 6 },
    )
    .await;

    let handled = handler.handled.lock().expect("lock").clone();
    let of_stream: Vec<i64> = handled
        .iter()
        .filter(|(s, _)| *s == stream)
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(
        of_stream,
        vec![1, 2, 4, 5],
        "the events after the poison one were processed, in order"
    );
    assert_eq!(handled.iter().filter(|(s, _)| *s == other).count(), 2);
    assert_eq!(
        handler.attempts.lock().expect("lock").get(&(stream, 3)),
        Some(&4),
        "tried max_attempts times, and once more after the handler's stores answered"
    );

    // The parked message: the original value, with the reason and the attempts in headers.
    let message = first_parked(&env, "picky").await;
    let parked: RecordedEvent = serde_json::from_slice(message.payload().expect("payload")).expect("event");
    assert_eq!((parked.stream_id, parked.version), (stream, 3));
    let header = |name: &str| header_of(&message, name);
    assert_eq!(header("attempts").as_deref(), Some("4"));
    assert_eq!(header("error").as_deref(), Some("cannot project this one"));

    // The handler is fixed and the parked event replayed as `control dlq replay` does: back on
    // the topic it was parked from, for this consumer: it is applied now, although its version
    // was seen.
    *handler.poison.lock().expect("lock") = None;
    let origin = header(PARKED_FROM_HEADER).expect("the topic it was parked from");
    producer(&env.config.kafka)
        .expect("producer")
        .send(
            record(
                &origin,
                &stream.to_string(),
                message.payload().expect("payload"),
                OwnedHeaders::new().insert(Header {
                    key: REPLAY_FOR_HEADER,
                    value: Some("picky"),
                }),
            ),
            Duration::from_secs(10),
        )
        .await
        .expect("replayed");
    eventually(Duration::from_secs(30), "the replayed event handled", || async {
        handler.handled.lock().expect("lock").contains(&(stream, 3))
    })
    .await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_gap_is_retried_and_parked_not_applied_and_the_missing_event_still_applies() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let stream = Uuid::now_v7();
    let appended = append(&ledger, stream, ExpectedVersion::NoStream, 3)
        .await
        .expect("append");
    // On the topic, version 2 comes after version 3 (sent straight, as a relay that lost a send
    // and sent again could leave them).
    let events = ledger.read_stream(stream, 1).await.expect("read");
    assert_eq!(appended.positions.len(), 3);
    let producer = producer(&env.config.kafka).expect("producer");
    let topic = env.config.kafka.context_topic(domain::BoundedContext::Jobs);
    for event in [&events[0], &events[2], &events[1]] {
        let (key, value) = encode_event(event).expect("encode");
        producer
            .send(
                record(&topic, &key, &value, OwnedHeaders::new()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("sent");
    }

    let handler = Arc::new(Picky {
        poison: Mutex::new(None),
        attempts: Mutex::default(),
        handled: Mutex::default(),
    });
    let options = quick_retries(&env, "gaps");
    let consumer = RunningConsumer::start_with(&env, options, handler.clone());
    eventually(Duration::from_secs(30), "versions 1 and 2 handled", || async {
        handler.handled.lock().expect("lock").len() >= 2
    })
    .await;
    consumer.stop().await;
    assert_eq!(
        *handler.handled.lock().expect("lock"),
        vec![(stream, 1), (stream, 2)],
        "version 3 is not applied before version 2; version 2 is applied when it comes"
    );
    assert_eq!(
        handler.attempts.lock().expect("lock").get(&(stream, 3)),
        None,
        "the handler never saw version 3"
    );

    let message = first_parked(&env, "gaps").await;
    let parked: RecordedEvent = serde_json::from_slice(message.payload().expect("payload")).expect("event");
    assert_eq!((parked.stream_id, parked.version), (stream, 3));
    let error = header_of(&message, "error");
    assert!(
        error.as_deref().is_some_and(|e| e.starts_with("version gap")),
        "parked for its gap: {error:?}"
    );
}

/// The first message parked in consumer `name`'s dead-letter topic.
async fn first_parked(env: &TestEnv, name: &str) -> OwnedMessage {
    let dlq: StreamConsumer = client_config(&env.config.kafka)
        .set("group.id", format!("{}.{name}-dlq-reader", env.namespace))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("dlq consumer");
    dlq.subscribe(&[env.config.kafka.dlq_topic(name).as_str()])
        .expect("subscribe");
    tokio::time::timeout(Duration::from_secs(30), dlq.recv())
        .await
        .expect("a parked message within 30 s")
        .expect("dlq message")
        .detach()
}

/// Header `name` of `message`, as text.
fn header_of(message: &OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
