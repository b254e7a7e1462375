//! The broker stops and starts again while appends continue: nothing is lost once it is back.
//!
//! This restarts the shared local broker through `scripts/infra.sh`, so it is its own test
//! binary with a single test (cargo runs test binaries one after another), and a guard starts
//! the broker again even when the test fails.

#[path = "support/mod.rs"]
mod support;

use infra::{ledger::ExpectedVersion, relay::Relay};
use std::{
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use uuid::Uuid;

use support::{
    Collector, RunningConsumer, append, assert_exactly_once_in_order, eventually, ledger_streams, outbox_len,
    test_env,
};

/// How long the broker stays down.
const OUTAGE: Duration = Duration::from_secs(3);

fn infra_script(action: &str) -> Result<(), String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/infra.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args([action, "kafka"])
        .output()
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`infra.sh {action} kafka` failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Stops the broker, and starts it again when dropped (also when the test panics).
struct BrokerOutage;

impl BrokerOutage {
    fn begin() -> Self {
        let outage = Self;
        infra_script("down").expect("stop the broker");
        outage
    }

    fn end(self) {
        // Drop starts it.
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        if let Err(e) = infra_script("up") {
            // Panicking in drop during a panic aborts: report instead, and fail loudly if not unwinding.
            eprintln!("could not restart the broker: {e}");
            if !std::thread::panicking() {
                panic!("could not restart the broker: {e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_during_a_broker_restart_all_reach_consumers() {
    // Logs of the relay and the consumer (RUST_LOG, default info) help when this fails.
    infra::telemetry::init("broker-restart-test");
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let (stop_relay, relay_stopped) = tokio::sync::watch::channel(false);
    let relay = Relay::new(ledger.clone(), &env.config.kafka, 100).expect("relay");
    let relay = tokio::spawn(relay.run(relay_stopped));
    let collector = Arc::new(Collector::default());
    let consumer = RunningConsumer::start(&env, "through-restart", collector.clone());

    // Appends keep coming, round-robin over ten streams, through the whole outage.
    let streams: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (ledger, writing, streams) = (ledger.clone(), writing.clone(), streams.clone());
        tokio::spawn(async move {
            let mut versions = vec![0_i64; streams.len()];
            let mut i = 0;
            while writing.load(Ordering::Relaxed) {
                let at = i % streams.len();
                append(
                    &ledger,
                    streams[at],
                    ExpectedVersion::from_loaded(versions[at]),
                    1,
                )
                .await
                .expect("append while the broker is away");
                versions[at] += 1;
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            i
        })
    };
    eventually(
        Duration::from_secs(30),
        "events flowing before the outage",
        || async { collector.len() >= 50 },
    )
    .await;

    let outage = tokio::task::spawn_blocking(BrokerOutage::begin)
        .await
        .expect("stop broker");
    let down_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let before_restart = collector.len();
    tokio::task::spawn_blocking(move || outage.end())
        .await
        .expect("start broker");
    eprintln!(
        "broker was down for {:?}; {before_restart} events consumed by then",
        down_at.elapsed()
    );

    // Keep appending a little while after the broker is back, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    writing.store(false, Ordering::Relaxed);
    let appended = writer.await.expect("writer");
    let expected = ledger_streams(&ledger).await;
    assert_eq!(expected.values().sum::<i64>(), appended as i64);

    eventually(
        Duration::from_secs(90),
        "every appended event consumed",
        || async { collector.len() >= appended },
    )
    .await;
    let _ = stop_relay.send(true);
    relay.await.expect("relay task");
    consumer.stop().await;
    assert_eq!(outbox_len(&ledger).await, 0, "the outbox drained");
    assert_exactly_once_in_order(&collector.events(), &expected);
    eprintln!("{appended} events appended, all consumed exactly once in order");
}
