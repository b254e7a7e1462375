//! ledger_bench: the ledger and event bus measured on the real local stack (issues 5 and 15),
//! all in one run on one fresh database and topic prefix:
//!
//! 1. single-event commands by 1, 8 and 64 concurrent writers (median of 3 interleaved rounds),
//!    each command on a stream of up to 10 events: a full `Ledger::execute` (load, decide,
//!    append with expected version, command id) with the aggregate cache and without it, an
//!    append whose two personal fields are sealed (issue 14), beside a raw INSERT of the same
//!    row into a plain table; p50/p99 each, and each target's rate as a multiple of the raw
//!    INSERT's;
//! 2. relay throughput: the events those commands appended, published to Kafka with 8 batches
//!    in flight, then the same events again with 1 (no pipelining), beside the broker's own
//!    ceiling for the same messages sent straight from a producer, with and without headers;
//! 3. commit-to-consumer latency at steady rates (default 1,000 to 8,000 events/s, after a
//!    second of warm-up): from the moment an append returns to the moment the consumer toolkit
//!    hands the event over, and the knee (the highest rate whose p99 stays under 100 ms);
//! 4. rehydration: loading an aggregate of 1,000 events, from a snapshot, and folding alone.
//!
//! Run with `bash scripts/infra.sh up` first, then
//! `cargo run --release -p scenarios --bin ledger_bench -- --help`.

use anyhow::Context as _;
use clap::Parser;
use domain::{
    Aggregate, BoundedContext, DomainEvent, UserId,
    privacy::{PersonalData, PersonalField},
};
use indicatif::{ProgressBar, ProgressStyle};
use infra::{
    kafka::{
        self,
        consumer::{self, ConsumerOptions, EventHandler, HandlerError},
    },
    ledger::{
        AppendRequest, EventMetadata, ExpectedVersion, Ledger, Loaded, NewEvent, RecordedEvent, StreamWrite,
    },
    relay::Relay,
    testing::TestEnv,
};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::DeliveryFuture,
};
use scenarios::measure::{ms, percentile};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::watch;
use uuid::Uuid;

/// The allocator of command-api, where `Ledger::execute` runs in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What to measure, and how much.
#[derive(Debug, Parser)]
#[command(about = "Benchmarks the ledger, the outbox relay and the consumer toolkit")]
struct Args {
    /// Commands per writer-count step (split across the writers).
    #[arg(long, default_value_t = 4_000)]
    commands: usize,
    /// Rounds of each writer count, the targets taking turns; each target's round of median
    /// rate is reported (runs on a shared 2-core machine vary by about ±10 %).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Writer counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Ledger connection pool size (the services' default).
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// Idempotent producer for the relay steps (the local broker breaks on it: README).
    #[arg(long)]
    idempotence: bool,
    /// The latency step's consumer `fetch.wait.max.ms` (the local broker waits about half of it
    /// even when data is there).
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u32,
    /// Events per relay batch.
    #[arg(long, default_value_t = 500)]
    relay_batch: i64,
    /// Relay batches in flight.
    #[arg(long, default_value_t = 8)]
    relay_depth: usize,
    /// Steady rates of the latency runs, events per second.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000,8000")]
    rates: Vec<u64>,
    /// Length of each latency run, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events of the stream loaded in the rehydration step.
    #[arg(long, default_value_t = 1_000)]
    rehydrate: usize,
    /// SQL run on the fresh database before measuring (to try a variant of the schema).
    #[arg(long)]
    setup_sql: Option<std::path::PathBuf>,
    /// Stop after step 1.
    #[arg(long)]
    commands_only: bool,
    /// Context topics the latency step's consumer subscribes to: the events go to `jobs`, as the
    /// jobs projector reads `jobs,users` (on the local broker every further topic adds latency:
    /// README, "Benchmarks").
    #[arg(long, value_delimiter = ',', default_value = "jobs", value_parser = context)]
    consumer_topics: Vec<BoundedContext>,
}

/// A bounded context by its name, e.g. `jobs`.
fn context(name: &str) -> Result<BoundedContext, String> {
    BoundedContext::ALL
        .into_iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| format!("no context {name}: users, jobs, contracts or payments"))
}

/// The aggregate the commands are decided on: a meter of readings.
#[derive(Debug, Clone, Default)]
struct Meter {
    readings: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum MeterEvent {
    Measured { stream: Uuid, n: i64, note: String },
}

impl DomainEvent for MeterEvent {
    fn event_type(&self) -> &'static str {
        "Measured"
    }
}

impl Aggregate for Meter {
    const STREAM_TYPE: &'static str = "bench";
    const CONTEXT: BoundedContext = BoundedContext::Jobs;
    type Event = MeterEvent;

    fn evolve(&mut self, _: &MeterEvent) {
        self.readings += 1;
    }
}

/// Commands per stream in step 1: aggregates stay as small as real ones.
const EVENTS_PER_STREAM: i64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut env = TestEnv::new().await?;
    env.config.postgres.max_connections = args.pool;
    env.config.kafka.idempotence = args.idempotence;
    env.config.kafka.fetch_wait_ms = args.fetch_wait_ms;
    let ledger = env.ledger().await?;
    let uncached = env.ledger().await?.with_aggregate_cache(0);
    println!(
        "ledger_bench on database {} (pool {}), topics {}.* (consumer fetch wait {} ms)",
        env.namespace, args.pool, env.config.kafka.topic_prefix, args.fetch_wait_ms
    );
    if let Some(path) = &args.setup_sql {
        let sql = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        sqlx::raw_sql(&sql).execute(&ledger.pool()).await?;
        println!("ran {} first", path.display());
    }
    sqlx::query(
        "CREATE TABLE raw_events (stream_id uuid NOT NULL, version bigint NOT NULL, event_type text NOT NULL,
             schema_version int NOT NULL, payload jsonb NOT NULL, metadata jsonb NOT NULL,
             recorded_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&ledger.pool())
    .await?;

    println!(
        "\n1. single-event commands ({} per step, streams of {EVENTS_PER_STREAM} events, median of {} rounds)",
        args.commands,
        args.rounds.max(1)
    );
    println!(
        "{:>8} {:>22} {:>10} {:>8} {:>10} {:>10}",
        "writers", "target", "ops/s", "x raw", "p50 ms", "p99 ms"
    );
    let mut appended = 0;
    for &writers in &args.writers {
        // Cached, uncached, sealed, raw: the rounds of each.
        let mut rounds: [Vec<Run>; 4] = Default::default();
        for _ in 0..args.rounds.max(1) {
            rounds[3].push(
                run_writers(writers, args.commands, "raw INSERT", |writer, n| {
                    let pool = ledger.pool().clone();
                    async move { raw_insert(&pool, writer, n).await }
                })
                .await?,
            );
            rounds[0].push(
                run_writers(writers, args.commands, "execute", |writer, n| {
                    let ledger = ledger.clone();
                    async move { execute_command(&ledger, writer, n).await }
                })
                .await?,
            );
            rounds[1].push(
                run_writers(writers, args.commands, "execute, no cache", |writer, n| {
                    let ledger = uncached.clone();
                    async move { execute_command(&ledger, writer, n).await }
                })
                .await?,
            );
            rounds[2].push(
                run_writers(writers, args.commands, "sealed append", |writer, n| {
                    let ledger = ledger.clone();
                    async move { append_command_sealed(&ledger, writer, n).await }
                })
                .await?,
            );
        }
        appended += rounds[..3].iter().flatten().map(|run| run.count).sum::<usize>();
        let [cached, cold, sealed, raw] = rounds.map(Run::median);
        let raw_rate = raw.rate();
        for (target, run) in [
            ("execute (cached)", cached),
            ("execute (no cache)", cold),
            ("sealed append", sealed),
            ("raw INSERT", raw),
        ] {
            run.print(writers, target, raw_rate);
        }
    }

    if args.commands_only {
        return Ok(());
    }
    relay_throughput(&env, &ledger, appended, &args).await?;

    println!(
        "\n3. commit-to-consumer latency at steady rates, {} s each (consumer on {})",
        args.seconds,
        args.consumer_topics
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let relay = Relay::new(ledger.clone(), &env.config.kafka, args.relay_batch)?.with_depth(args.relay_depth);
    steady_latency(&env, &ledger, relay, &args).await?;

    rehydration(&ledger, args.rehydrate).await?;
    Ok(())
}

/// Step 2: publish the appended events pipelined, then the same events again one batch at a time, and
/// the broker's ceiling for those messages.
async fn relay_throughput(
    env: &TestEnv,
    ledger: &Ledger,
    appended: usize,
    args: &Args,
) -> anyhow::Result<()> {
    println!(
        "\n2. relay: {appended} appended events to Kafka (batches of {})",
        args.relay_batch
    );
    for depth in [args.relay_depth, 1] {
        let relay = Relay::new(ledger.clone(), &env.config.kafka, args.relay_batch)?.with_depth(depth);
        let started = Instant::now();
        let published = relay.run_until_idle().await?;
        let elapsed = started.elapsed();
        println!(
            "   relay, {depth} batch(es) in flight: {published} events in {:.2} s: {:.0} events/s",
            elapsed.as_secs_f64(),
            published as f64 / elapsed.as_secs_f64()
        );
        // The same events again for the next measurement: the relay back to the start.
        sqlx::query("UPDATE relay_position SET transaction_id = '0', global_position = 0")
            .execute(&ledger.pool())
            .await?;
    }
    // Published twice: the latency step's consumer reads both copies first.
    sqlx::query(
        "UPDATE relay_position SET (transaction_id, global_position) =
             (SELECT transaction_id, global_position FROM events ORDER BY 1 DESC, 2 DESC LIMIT 1)",
    )
    .execute(&ledger.pool())
    .await?;

    let events = ledger.read_all(0, appended as i64).await?;
    let topic = format!("{}.ceiling", env.config.kafka.topic_prefix);
    kafka::ensure_topics(&env.config.kafka, std::slice::from_ref(&topic), false).await?;
    let producer = kafka::relay_producer(&env.config.kafka)?;
    for with_headers in [true, false] {
        let started = Instant::now();
        // At most half the producer's queue (100,000 messages) waiting at a time.
        let mut deliveries = VecDeque::<DeliveryFuture>::new();
        for event in &events {
            let (key, value) = kafka::encode_event(event)?;
            let headers = if with_headers {
                headers_of(event)
            } else {
                OwnedHeaders::new()
            };
            let record = kafka::record(&topic, &key, &value, headers);
            if deliveries.len() == 50_000
                && let Some(oldest) = deliveries.pop_front()
            {
                oldest.await?.map_err(|(e, _)| e)?;
            }
            deliveries.push_back(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        for delivery in deliveries {
            delivery.await?.map_err(|(e, _)| e)?;
        }
        let elapsed = started.elapsed();
        println!(
            "   broker ceiling, same messages {} headers, straight from a producer: {:.0} events/s",
            if with_headers { "with" } else { "without" },
            events.len() as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// The six headers the relay sent before issue 15 (everything in them is also in the value).
fn headers_of(event: &RecordedEvent) -> OwnedHeaders {
    let values = [
        ("event_type", event.event_type.clone()),
        ("schema_version", event.schema_version.to_string()),
        ("stream_id", event.stream_id.to_string()),
        ("version", event.version.to_string()),
        ("global_position", event.global_position.to_string()),
        ("correlation_id", event.metadata.correlation_id.to_string()),
    ];
    values
        .iter()
        .fold(OwnedHeaders::new_with_capacity(6), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        })
}

/// Step 4: load a stream of `events` events, from a snapshot, and fold them in memory.
async fn rehydration(ledger: &Ledger, events: usize) -> anyhow::Result<()> {
    println!("\n4. rehydration of an aggregate of {events} events (mean of 50 runs)");
    let stream = Uuid::now_v7();
    for chunk in 0..events.div_ceil(100) {
        let from = (chunk * 100) as i64;
        let count = (events - chunk * 100).min(100);
        let write = StreamWrite::of::<Meter>(
            stream,
            ExpectedVersion::from_loaded(from),
            &(1..=count as i64)
                .map(|n| MeterEvent::Measured {
                    stream,
                    n: from + n,
                    note: "a benchmark event of typical size".into(),
                })
                .collect::<Vec<_>>(),
        )?;
        ledger.append(AppendRequest::new(meta(), vec![write])).await?;
    }
    const RUNS: u32 = 50;
    let report = |what: &str, started: Instant| {
        println!(
            "   {what:<44} {:>10.0} us",
            started.elapsed().as_secs_f64() * 1e6 / f64::from(RUNS)
        );
    };
    let started = Instant::now();
    for _ in 0..RUNS {
        let loaded = ledger.load::<Meter>(stream).await?;
        anyhow::ensure!(
            loaded.version == events as i64,
            "loaded to version {}",
            loaded.version
        );
    }
    report("load (read + decode + fold)", started);
    let snapshot = ledger.load::<Meter>(stream).await?;
    let started = Instant::now();
    for _ in 0..RUNS {
        let from = Loaded {
            state: snapshot.state.clone(),
            version: snapshot.version,
        };
        let loaded = ledger.load_from::<Meter>(stream, from).await?;
        anyhow::ensure!(
            loaded.version == events as i64,
            "loaded to version {}",
            loaded.version
        );
    }
    report("load from a snapshot at the last version", started);
    let recorded = ledger.read_stream(stream, 1).await?;
    let started = Instant::now();
    for _ in 0..RUNS {
        let mut meter = Meter::default();
        for event in &recorded {
            meter.evolve(&event.decode::<MeterEvent>(ledger.upcasters())?);
        }
        anyhow::ensure!(
            meter.readings == events as i64,
            "folded {} events",
            meter.readings
        );
    }
    report("fold alone (decode + evolve, no database)", started);
    Ok(())
}

fn meta() -> EventMetadata {
    EventMetadata::new(Uuid::now_v7(), None, chrono::Utc::now())
}

/// Latencies of one measured step.
struct Run {
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// The run of median rate (of at least one).
    fn median(mut runs: Vec<Run>) -> Run {
        runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        runs.swap_remove(runs.len() / 2)
    }

    fn print(mut self, writers: usize, target: &str, raw_rate: f64) {
        self.latencies.sort_unstable();
        println!(
            "{writers:>8} {target:>22} {:>10.0} {:>8.2} {:>10.2} {:>10.2}",
            self.rate(),
            self.rate() / raw_rate,
            ms(percentile(&self.latencies, 50.0)),
            ms(percentile(&self.latencies, 99.0)),
        );
    }
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

/// The writer's `n`th command through [`Ledger::execute`]: load the writer's current stream
/// (a new one every [`EVENTS_PER_STREAM`] commands), decide one reading, append it.
async fn execute_command(ledger: &Ledger, writer: Uuid, n: i64) -> anyhow::Result<()> {
    let stream = Uuid::from_u128(writer.as_u128() ^ ((n - 1) / EVENTS_PER_STREAM) as u128);
    let appended = ledger
        .execute::<Meter>(stream, meta(), |meter| {
            Ok(vec![MeterEvent::Measured {
                stream,
                n: meter.readings + 1,
                note: "a benchmark event of typical size".into(),
            }])
        })
        .await?;
    anyhow::ensure!(
        appended.streams[0].version == (n - 1) % EVENTS_PER_STREAM + 1,
        "stream {stream} at version {} after command {n}",
        appended.streams[0].version
    );
    Ok(())
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
    /// Commit-to-consumer latency of each of `streams`.
    fn latencies(&self, streams: &[Uuid]) -> anyhow::Result<Vec<Duration>> {
        let committed = self
            .committed
            .lock()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        let consumed = self
            .consumed
            .lock()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        Ok(streams
            .iter()
            .filter_map(|stream| {
                let seen = consumed.get(stream)?;
                Some(seen.saturating_duration_since(*committed.get(stream)?))
            })
            .collect())
    }

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
    let topics = args
        .consumer_topics
        .iter()
        .map(|c| env.config.kafka.context_topic(*c))
        .collect();
    let options = ConsumerOptions::new("bench-latency", topics);
    let consumer = {
        let (kafka, timings) = (env.config.kafka.clone(), timings.clone());
        tokio::spawn(async move { consumer::run(&kafka, options, timings, stopped).await })
    };

    // The consumer has joined its group once it has read the backlog of the steps before: every
    // stream written so far.
    let backlog: i64 = sqlx::query_scalar("SELECT count(DISTINCT stream_id) FROM events")
        .fetch_one(&ledger.pool())
        .await?;
    let mut expected = backlog as usize;
    timings.wait_consumed(expected, Duration::from_secs(180)).await?;

    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>10}",
        "rate/s", "achieved", "p50 ms", "p99 ms", "max ms"
    );
    let mut knee = None;
    // One second at the first rate first, not measured: a relay's first message to a topic
    // waits for the producer to learn the topic's partitions (about half a second here), which a
    // running relay has long done.
    let warm_up = args.rates.first().map(|&rate| (rate, 1, false));
    let measured = args.rates.iter().map(|&rate| (rate, args.seconds, true));
    for (rate, seconds, measure) in warm_up.into_iter().chain(measured) {
        let total = rate * seconds;
        let bar = progress(total, &format!("steady appends at {rate}/s"));
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
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
                anyhow::Ok(stream)
            }));
        }
        let mut streams = Vec::with_capacity(total as usize);
        for append in appends {
            streams.push(append.await??);
        }
        bar.finish_and_clear();
        let achieved = total as f64 / started.elapsed().as_secs_f64();
        expected += total as usize;
        timings.wait_consumed(expected, Duration::from_secs(120)).await?;
        if !measure {
            continue;
        }
        let mut latencies = timings.latencies(&streams)?;
        latencies.sort_unstable();
        let p99 = percentile(&latencies, 99.0);
        println!(
            "{rate:>10} {achieved:>10.0} {:>10.1} {:>10.1} {:>10.1}",
            ms(percentile(&latencies, 50.0)),
            ms(p99),
            ms(latencies.last().copied().unwrap_or_default()),
        );
        if p99 < Duration::from_millis(100) {
            knee = Some(achieved);
        } else {
            break;
        }
    }
    match knee {
        Some(achieved) => println!(
            "   knee: p99 under 100 ms up to {achieved:.0} events/s (the highest rate achieved below it)"
        ),
        None => println!("   knee: p99 over 100 ms already at the lowest rate"),
    }
    let _ = stop.send(true);
    relay.await.context("relay task")?;
    consumer.await.context("consumer task")??;
    Ok(())
}
