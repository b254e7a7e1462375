//! ledger_bench: the ledger and event bus measured on the real local stack (issue 5), all in one
//! run on one fresh database and topic prefix:
//!
//! 1. single-event commands appended by 1, 8 and 64 concurrent writers (each on its own
//!    streams, with expected-version checks, command ids and the outbox row), once in clear and
//!    once with two personal fields sealed with the writer's personal data key (issue 14: the
//!    cost of encryption), beside a raw INSERT of the same rows into a plain table;
//! 2. relay throughput: the outbox those appends filled, published to Kafka;
//! 3. commit-to-consumer latency at a steady rate (default 1,000 events/s): from the moment
//!    an append returns to the moment the consumer toolkit hands the event to its handler.
//!
//! Run with `bash scripts/infra.sh up` first, then
//! `cargo run --release -p scenarios --bin ledger_bench -- --help`.

use anyhow::Context as _;
use clap::Parser;
use domain::{
    BoundedContext, UserId,
    privacy::{PersonalData, PersonalField},
};
use indicatif::{ProgressBar, ProgressStyle};
use infra::{
    kafka::{
        self,
        consumer::{self, ConsumerOptions, EventHandler, HandlerError},
    },
    ledger::{AppendRequest, EventMetadata, ExpectedVersion, Ledger, NewEvent, RecordedEvent, StreamWrite},
    relay::Relay,
    testing::TestEnv,
};
use serde_json::json;
use sqlx::PgPool;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::watch;
use uuid::Uuid;

/// What to measure, and how much.
#[derive(Debug, Parser)]
#[command(about = "Benchmarks the ledger, the outbox relay and the consumer toolkit")]
struct Args {
    /// Commands per writer-count step (split across the writers).
    #[arg(long, default_value_t = 4_000)]
    commands: usize,
    /// Writer counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Ledger connection pool size.
    #[arg(long, default_value_t = 32)]
    pool: u32,
    /// Events per relay batch.
    #[arg(long, default_value_t = 500)]
    relay_batch: i64,
    /// Steady rate of the latency run, events per second.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut env = TestEnv::new().await?;
    env.config.postgres.max_connections = args.pool;
    let ledger = env.ledger().await?;
    println!(
        "ledger_bench on database {} (pool {}), topics {}.*",
        env.namespace, args.pool, env.config.kafka.topic_prefix
    );
    sqlx::query(
        "CREATE TABLE raw_events (stream_id uuid NOT NULL, version bigint NOT NULL, event_type text NOT NULL,
             schema_version int NOT NULL, payload jsonb NOT NULL, metadata jsonb NOT NULL,
             recorded_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&ledger.pool())
    .await?;

    println!("\n1. single-event commands ({} per step)", args.commands);
    println!(
        "{:>8} {:>14} {:>10} {:>10} {:>10}",
        "writers", "target", "ops/s", "p50 ms", "p99 ms"
    );
    let mut appended = 0;
    for &writers in &args.writers {
        let ledger_run = run_writers(writers, args.commands, "ledger append", |writer, n| {
            let ledger = ledger.clone();
            async move { append_command(&ledger, writer, n).await }
        })
        .await?;
        appended += ledger_run.count;
        ledger_run.print(writers, "ledger append");
        let sealed_run = run_writers(writers, args.commands, "sealed append", |writer, n| {
            let ledger = ledger.clone();
            async move { append_command_sealed(&ledger, writer, n).await }
        })
        .await?;
        appended += sealed_run.count;
        sealed_run.print(writers, "sealed append");
        let raw_run = run_writers(writers, args.commands, "raw INSERT", |writer, n| {
            let pool = ledger.pool().clone();
            async move { raw_insert(&pool, writer, n).await }
        })
        .await?;
        raw_run.print(writers, "raw INSERT");
    }

    println!(
        "\n2. relay: {appended} outbox events to Kafka (batches of {})",
        args.relay_batch
    );
    let relay = Relay::new(ledger.clone(), &env.config.kafka, args.relay_batch)?;
    let started = Instant::now();
    let published = relay.run_until_idle().await?;
    let elapsed = started.elapsed();
    println!(
        "   published {published} events in {:.2} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        published as f64 / elapsed.as_secs_f64()
    );

    println!(
        "\n3. commit-to-consumer latency at {} events/s for {} s",
        args.rate, args.seconds
    );
    steady_latency(&env, &ledger, relay, &args).await?;
    Ok(())
}

/// Latencies of one measured step.
struct Run {
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn print(mut self, writers: usize, target: &str) {
        self.latencies.sort_unstable();
        println!(
            "{writers:>8} {target:>14} {:>10.0} {:>10.2} {:>10.2}",
            self.count as f64 / self.elapsed.as_secs_f64(),
            ms(percentile(&self.latencies, 50.0)),
            ms(percentile(&self.latencies, 99.0)),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// The `p`th percentile of sorted `values` (nearest rank).
fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(what.to_owned());
    if let Ok(style) = ProgressStyle::with_template("   {msg:<28} [{bar:30}] {pos}/{len} {per_sec}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `commands` operations spread over `writers` concurrent tasks; `op(writer, n)` is the
/// writer's `n`th operation (from 1).
async fn run_writers<F, Fut>(writers: usize, commands: usize, what: &str, op: F) -> anyhow::Result<Run>
where
    F: Fn(Uuid, i64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let per_writer = commands.div_ceil(writers);
    let bar = progress((per_writer * writers) as u64, &format!("{what} x{writers}"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let writer = Uuid::now_v7();
            let ops: Vec<Fut> = (1..=per_writer as i64).map(|n| op(writer, n)).collect();
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(ops.len());
                for op in ops {
                    let at = Instant::now();
                    op.await?;
                    latencies.push(at.elapsed());
                    bar.inc(1);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(per_writer * writers);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(Run {
        count: latencies.len(),
        elapsed,
        latencies,
    })
}

fn payload(stream: Uuid, version: i64) -> serde_json::Value {
    json!({ "type": "Measured", "stream": stream, "n": version, "note": "a benchmark event of typical size",
            "name": "Ada Lovelace", "email": "ada@example.com" })
}

/// The personal fields of the sealed target: the name and email, the writer's own.
const PERSONAL: &[PersonalField] = &[PersonalField::text("name"), PersonalField::email("email")];

/// One single-event command: event `version` of `stream`, expecting `version - 1`.
async fn append_command(ledger: &Ledger, stream: Uuid, version: i64) -> anyhow::Result<()> {
    append_event(ledger, stream, version, None).await
}

/// [`append_command`] with the name and email sealed with the key of the stream's person.
async fn append_command_sealed(ledger: &Ledger, stream: Uuid, version: i64) -> anyhow::Result<()> {
    let personal = PersonalData {
        subject: UserId::from_uuid(stream),
        fields: PERSONAL,
    };
    append_event(ledger, stream, version, Some(personal)).await
}

async fn append_event(
    ledger: &Ledger,
    stream: Uuid,
    version: i64,
    personal: Option<PersonalData>,
) -> anyhow::Result<()> {
    let write = StreamWrite {
        stream_id: stream,
        stream_type: "bench",
        context: BoundedContext::Jobs,
        expected: ExpectedVersion::from_loaded(version - 1),
        events: vec![NewEvent {
            event_type: "Measured".into(),
            schema_version: 1,
            payload: payload(stream, version),
            personal,
        }],
    };
    let metadata = EventMetadata::new(Uuid::now_v7(), None, chrono::Utc::now());
    ledger.append(AppendRequest::new(metadata, vec![write])).await?;
    Ok(())
}

/// The same row as [`append_command`], as a bare INSERT into a plain table.
async fn raw_insert(pool: &PgPool, stream: Uuid, version: i64) -> anyhow::Result<()> {
    let metadata = EventMetadata::new(Uuid::now_v7(), None, chrono::Utc::now());
    sqlx::query(
        "INSERT INTO raw_events (stream_id, version, event_type, schema_version, payload, metadata)
         VALUES ($1, $2, 'Measured', 1, $3, $4)",
    )
    .bind(stream)
    .bind(version)
    .bind(payload(stream, version))
    .bind(serde_json::to_value(&metadata)?)
    .execute(pool)
    .await?;
    Ok(())
}

/// When each event was seen: committed (append returned) and consumed (handler called).
#[derive(Default)]
struct Timings {
    committed: Mutex<HashMap<Uuid, Instant>>,
    consumed: Mutex<HashMap<Uuid, Instant>>,
}

impl Timings {
    fn consumed_count(&self) -> usize {
        self.consumed.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Wait until `count` streams have been consumed, failing after `timeout`.
    async fn wait_consumed(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.consumed_count() < count {
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {count} streams consumed within {timeout:?}",
                self.consumed_count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl EventHandler for Timings {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        let at = Instant::now();
        self.consumed
            .lock()
            .map_err(|_| "timings lock poisoned")?
            .entry(event.stream_id)
            .or_insert(at);
        Ok(())
    }
}

/// Append new single-event streams at a steady rate with the relay and a consumer running,
/// and report commit-to-consumer latency.
async fn steady_latency(env: &TestEnv, ledger: &Ledger, relay: Relay, args: &Args) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let relay = tokio::spawn(relay.run(stopped.clone()));
    let timings = Arc::new(Timings::default());
    let options = ConsumerOptions::new("bench-latency", kafka::context_topics(&env.config.kafka));
    let consumer = {
        let (kafka, timings) = (env.config.kafka.clone(), timings.clone());
        tokio::spawn(async move { consumer::run(&kafka, options, timings, stopped).await })
    };

    // The consumer has joined its group once it has read the backlog of phase 1: one stream
    // per writer.
    let backlog: usize = args.writers.iter().sum();
    timings.wait_consumed(backlog, Duration::from_secs(120)).await?;

    let total = args.rate * args.seconds;
    let bar = progress(total, "steady appends");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut appends = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for _ in 0..total {
        ticker.tick().await;
        let (ledger, timings, bar) = (ledger.clone(), timings.clone(), bar.clone());
        appends.push(tokio::spawn(async move {
            let stream = Uuid::now_v7();
            append_command(&ledger, stream, 1).await?;
            timings
                .committed
                .lock()
                .map_err(|_| anyhow::anyhow!("timings lock poisoned"))?
                .insert(stream, Instant::now());
            bar.inc(1);
            anyhow::Ok(())
        }));
    }
    for append in appends {
        append.await??;
    }
    bar.finish_and_clear();
    let appending = started.elapsed();
    let lag = ledger.outbox_lag().await?;
    println!(
        "   appended {total} in {:.1} s ({:.0} events/s achieved); outbox after the last append: {} events",
        appending.as_secs_f64(),
        total as f64 / appending.as_secs_f64(),
        lag.events
    );

    timings
        .wait_consumed(backlog + total as usize, Duration::from_secs(60))
        .await?;
    let _ = stop.send(true);
    relay.await.context("relay task")?;
    consumer.await.context("consumer task")??;

    let committed = timings
        .committed
        .lock()
        .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
    let consumed = timings
        .consumed
        .lock()
        .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
    let mut latencies: Vec<Duration> = committed
        .iter()
        .filter_map(|(stream, at)| {
            consumed
                .get(stream)
                .map(|seen| seen.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort_unstable();
    println!(
        "   {} events: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    Ok(())
}
