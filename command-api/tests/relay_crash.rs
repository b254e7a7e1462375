//! The relay process is killed (SIGKILL) in the middle of a large batch and started again:
//! consumers, after de-duplication, see every event exactly once and in per-stream order
//! (DESIGN §1: a crash between publish and delete republishes the batch).

#[path = "../../infra/tests/support/mod.rs"]
mod support;

use infra::{
    ledger::{AppendRequest, ExpectedVersion},
    testing::TestEnv,
};
use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use uuid::Uuid;

use support::{
    Collector, RunningConsumer, assert_exactly_once_in_order, increments, meta, outbox_len, test_env,
};

const STREAMS: usize = 40;
const EVENTS_PER_STREAM: usize = 500;
const BATCH: i64 = 2_000;

/// The relay binary as a child process on `env`; killed (SIGKILL) when dropped.
struct RelayProcess(Child);

impl RelayProcess {
    fn start(env: &TestEnv) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_relay"))
            .env("WORKUP_PG_URL", &env.config.postgres.url)
            .env("WORKUP_KAFKA_BROKERS", &env.config.kafka.brokers)
            .env("WORKUP_KAFKA_TOPIC_PREFIX", &env.config.kafka.topic_prefix)
            .env("WORKUP_KAFKA_PARTITIONS", env.config.kafka.partitions.to_string())
            .env("WORKUP_RELAY_BATCH_SIZE", BATCH.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
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
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
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
    let total = STREAMS * EVENTS_PER_STREAM;
    let collector = Arc::new(Collector::default());
    let consumer = RunningConsumer::start(&env, "crash-watcher", collector.clone());

    // Kill the relay while a batch is published but not yet acknowledged: some events are
    // consumed although their outbox rows are still there. Retry if the kill came too late.
    let mut kills = 0;
    loop {
        assert!(kills < 5, "could not kill the relay mid-batch in 5 attempts");
        let relay = RelayProcess::start(&env);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let consumed = collector.len();
            let remaining = outbox_len(&ledger).await as usize;
            if consumed > total - remaining {
                break;
            }
            assert!(
                remaining > 0,
                "the relay drained the outbox before it could be killed"
            );
            assert!(
                Instant::now() < deadline,
                "no batch seen in flight within 20 s ({consumed} consumed, {remaining} in the outbox)"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let consumed = collector.len();
        relay.kill();
        kills += 1;
        let remaining = outbox_len(&ledger).await as usize;
        eprintln!("kill {kills}: {consumed} consumed, {remaining} rows still in the outbox after SIGKILL");
        if consumed > total - remaining {
            break; // confirmed: published events whose rows the dead relay never deleted
        }
    }

    let relay = RelayProcess::start(&env);
    let deadline = Instant::now() + Duration::from_secs(120);
    while collector.len() < total || outbox_len(&ledger).await > 0 {
        assert!(
            Instant::now() < deadline,
            "after restart: {} of {total} consumed, {} left in the outbox",
            collector.len(),
            outbox_len(&ledger).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(relay);
    consumer.stop().await;
    let expected = streams.iter().map(|s| (*s, EVENTS_PER_STREAM as i64)).collect();
    assert_exactly_once_in_order(&collector.events(), &expected);
}
