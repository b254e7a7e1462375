//! The relay process is killed (SIGKILL) in the middle of a large batch and started again:
//! consumers, after de-duplication, see every event exactly once and in per-stream order
//! (DESIGN §1: a crash between publish and delete republishes the batch).

#[path = "../../infra/tests/support/mod.rs"]
mod support;

use infra::{
    ledger::{AppendRequest, ExpectedVersion},
    relay::Relay,
    testing::TestEnv,
};
use sqlx::Connection;
use std::{
    collections::BTreeMap,
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};
use uuid::Uuid;

use support::{
    Collector, RunningConsumer, append, assert_exactly_once_in_order, eventually, increments, meta,
    outbox_len, test_env,
};

const STREAMS: usize = 40;
const EVENTS_PER_STREAM: usize = 500;
const BATCH: i64 = 2_000;

/// The relay binary as a child process on `env`; killed (SIGKILL) when dropped.
struct RelayProcess(Child);

impl RelayProcess {
    fn start(env: &TestEnv) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_relay"))
            .envs(env.process_env())
            .env("WORKUP_RELAY_BATCH_SIZE", BATCH.to_string())
            .env("WORKUP_RELAY_LISTEN", "127.0.0.1:0")
            .env(
                "RUST_LOG",
                std::env::var("RELAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()
            .expect("start the relay binary");
        Self(child)
    }

    /// SIGKILL: no chance to finish the batch or acknowledge anything.
    fn kill(mut self) {
        self.0.kill().expect("SIGKILL the relay");
        self.0.wait().expect("reap the relay");
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_mid_batch_republishes_and_consumers_see_each_event_once_in_order() {
    infra::telemetry::init("relay-crash-test");
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let collector = Arc::new(Collector::default());
    let consumer = RunningConsumer::start(&env, "crash-watcher", collector.clone());
    // One event through first: the consumer has joined its group before the batch is relayed.
    let warm_up = Uuid::now_v7();
    append(&ledger, warm_up, ExpectedVersion::NoStream, 1)
        .await
        .expect("append the warm-up event");
    Relay::new(ledger.clone(), &env.config.kafka, 10)
        .expect("in-process relay")
        .run_until_idle()
        .await
        .expect("relay the warm-up event");
    eventually(Duration::from_secs(60), "the warm-up event consumed", || async {
        collector.len() == 1
    })
    .await;

    let streams: Vec<Uuid> = (0..STREAMS).map(|_| Uuid::now_v7()).collect();
    for chunk in 0..EVENTS_PER_STREAM / 100 {
        for stream in &streams {
            let expected = ExpectedVersion::from_loaded((chunk * 100) as i64);
            ledger
                .append(AppendRequest::new(
                    meta(),
                    vec![increments(*stream, expected, 100)],
                ))
                .await
                .expect("append");
        }
    }
    let total = 1 + STREAMS * EVENTS_PER_STREAM;

    // Hold a SHARE lock on the relay's position: the relay can read and publish its first
    // batches but blocks on recording them, so the kill lands exactly between publish and
    // acknowledgement.
    let mut blocker = sqlx::PgConnection::connect(&env.config.postgres.url)
        .await
        .expect("connect the blocker");
    sqlx::Executor::execute(&mut blocker, "BEGIN; LOCK TABLE relay_position IN SHARE MODE")
        .await
        .expect("lock the relay's position");
    let relay = RelayProcess::start(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while collector.len() < 1 + BATCH as usize {
        assert!(
            Instant::now() < deadline,
            "the relay's first batch was not consumed within 60 s ({} seen)",
            collector.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.kill();
    sqlx::Executor::execute(&mut blocker, "ROLLBACK")
        .await
        .expect("release the relay's position");
    let consumed = collector.len();
    let remaining = outbox_len(&ledger).await as usize;
    eprintln!("after SIGKILL: {consumed} consumed, {remaining} events still unacknowledged");
    assert_eq!(
        remaining,
        total - 1,
        "the killed relay acknowledged nothing: its published batches are still to publish"
    );

    let relay = RelayProcess::start(&env);
    let deadline = Instant::now() + Duration::from_secs(120);
    while collector.len() < total || outbox_len(&ledger).await > 0 {
        assert!(
            Instant::now() < deadline,
            "after restart: {} of {total} consumed, {} left to publish",
            collector.len(),
            outbox_len(&ledger).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(relay);
    consumer.stop().await;
    let mut expected: BTreeMap<Uuid, i64> = streams.iter().map(|s| (*s, EVENTS_PER_STREAM as i64)).collect();
    expected.insert(warm_up, 1);
    assert_exactly_once_in_order(&collector.events(), &expected);
}
