//! replay_bench: how fast the ledger is read and decoded, and how fast each read model is
//! rebuilt from it (DESIGN §8), on the real local stack, in a namespace of its own (a fresh
//! PostgreSQL database, Cassandra keyspaces, MongoDB databases and Redis prefixes: never the
//! dev database).
//!
//! 1. Generate: valid domain events, decided by the domain's own `decide` functions and stored
//!    through `Ledger::append` (several streams per atomic append, `--writers` appends at once,
//!    email reservations included): user streams (registration, then profile edits), job streams
//!    (posting, then edits) and wallet streams (opening, then deposits), round-robin.
//! 2. At `--checkpoint` events, then again once the same ledger has grown to `--events`:
//!    - read and decode: every event of the ledger scanned in commit-safe order
//!      (`Ledger::scan`, batches of `--batch`) and decoded into its domain event enum;
//!    - rebuild, per read model: `projectors::replay::replay` of the context's events into a
//!      fresh storage generation: users → MongoDB, jobs → Cassandra (plus the Redis cache
//!      tombstones the jobs projector writes first), payments → Redis (wallets only: the mix has
//!      no payment requests, so nothing of it goes to Cassandra);
//!    - memory: the process's peak resident set (`VmHWM`), reset before each phase through
//!      `/proc/self/clear_refs` so that each phase reports its own peak, and `VmRSS` after it.
//! 3. A Markdown table of the figures, the machine and the build profile.
//! 4. Cleanup, not timed: the targets and the database are removed (also after a failure or
//!    Ctrl-C); `--keep` leaves them, `--clean-up <namespace>` removes what a kept or killed run
//!    left.
//!
//! Run with `bash scripts/infra.sh up` first, then
//! `cargo run --release -p scenarios --bin replay_bench -- --help`.

use anyhow::{Context as _, anyhow, bail, ensure};
use chrono::Utc;
use clap::Parser;
use domain::{
    Actor, Aggregate, BoundedContext, Context, Currency, DomainError, EmailAddress, FieldError, JobId, Money,
    PasswordHash, ProfileItemId, Role, Timestamp, UserId, WalletId,
    contracts::{Contract, TerminationRequest},
    jobs::{Job, JobCommand, JobDraft, Proposal},
    payments::{PaymentRequest, Wallet, WalletCommand, Withdrawal},
    users::{PersonName, ProfileItem, ProfileSection, ProfileUpdate, Registration, User, UserCommand},
};
use indicatif::{ProgressBar, ProgressStyle};
use infra::{
    config::Config,
    ledger::{
        AppendRequest, EventMetadata, ExpectedVersion, Ledger, LedgerError, RecordedEvent, Reservation,
        ScanCursor, ScanFilter, StreamWrite, Upcasters,
    },
    read_models::{generation::Target, storage::Storage},
    testing::TestEnv,
};
use projectors::{
    catalog::Catalog,
    replay::{self, ReplayOptions},
};
use sqlx::{Connection as _, Executor as _, PgConnection};
use std::{
    cell::Cell,
    fmt::Write as _,
    io::IsTerminal as _,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};
use uuid::Uuid;

/// What to measure, and how much.
#[derive(Debug, Parser)]
#[command(
    about = "Measures ledger read-and-decode and read model rebuild rates, and memory, as the ledger grows"
)]
struct Args {
    /// Events in the ledger at the final measurement.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events in the ledger at the first measurement (0: measure only at `--events`).
    #[arg(long, default_value_t = 100_000)]
    checkpoint: u64,
    /// Events per stream: its creation, then edits (the last stream of a step may be shorter).
    #[arg(long, default_value_t = 4)]
    stream_events: u64,
    /// Streams per atomic append while generating.
    #[arg(long, default_value_t = 32)]
    append_streams: usize,
    /// Appends in flight at once while generating.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Ledger connection pool size.
    #[arg(long, default_value_t = 24)]
    pool: u32,
    /// Events per ledger read (scan and replay batches).
    #[arg(long, default_value_t = 2_000)]
    batch: i64,
    /// Streams applied at once within a replay batch.
    #[arg(long, default_value_t = 32)]
    lanes: usize,
    /// Time budget per read model rebuild, in seconds (0: none, every event is applied). A
    /// bounded rebuild reports the events applied in the batches completed within the budget.
    #[arg(long, default_value_t = 0)]
    store_seconds: u64,
    /// The read models to rebuild (users, jobs, payments); none: measure the ledger only.
    #[arg(long, value_delimiter = ',', default_value = "users,jobs,payments")]
    stores: Vec<String>,
    /// Measure the ledger only: no rebuilds (same as an empty `--stores`).
    #[arg(long)]
    skip_stores: bool,
    /// Leave the database, keyspaces, MongoDB databases and Redis keys in place at the end.
    #[arg(long)]
    keep: bool,
    /// Measure nothing: remove what a kept or interrupted run left in namespace `t_...`.
    #[arg(long, value_name = "NAMESPACE")]
    clean_up: Option<String>,
}

/// One row of the result table.
struct Row {
    ledger_size: i64,
    phase: String,
    events: u64,
    seconds: f64,
    memory: Memory,
    /// The 1-minute load average after the phase (the machine may be shared).
    load: Option<f64>,
    note: String,
}

/// The process's memory after a phase, in KiB (`None`: not readable on this system).
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    /// Resident set when the phase started (the peak is reset to it).
    before_kib: Option<u64>,
    hwm_kib: Option<u64>,
    rss_kib: Option<u64>,
}

/// The read models measured, their stores and what each rebuild writes.
const STORES: [(BoundedContext, &str); 3] = [
    (BoundedContext::Users, "MongoDB"),
    (BoundedContext::Jobs, "Cassandra (+ Redis cache tombstones)"),
    (BoundedContext::Payments, "Redis"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.events > 0, "--events must be positive");
    ensure!(args.stream_events > 0, "--stream-events must be positive");
    ensure!(
        args.checkpoint < args.events,
        "--checkpoint must be below --events"
    );
    ensure!(
        args.batch > 0 && args.writers > 0 && args.append_streams > 0,
        "sizes must be positive"
    );

    for name in &args.stores {
        ensure!(
            name.is_empty() || STORES.iter().any(|(c, _)| c.name() == name),
            "unknown read model {name} (users, jobs, payments)"
        );
    }

    if let Some(namespace) = &args.clean_up {
        let config = namespace_config(namespace)?;
        let ledger = Ledger::connect(&config.postgres)
            .await
            .with_context(|| format!("no benchmark database {namespace}"))?;
        let (storage, _) = connect_stores(&config).await?;
        let targets: Vec<Target> = STORES
            .iter()
            .flat_map(|(context, _)| (1..=2).map(|n| Target::generation(*context, n)))
            .collect();
        return clean_up(namespace, &config, &ledger, &storage, &targets).await;
    }

    let mut env = TestEnv::new().await?;
    env.config.postgres.max_connections = args.pool;
    let ledger = env.ledger().await?;
    let peak_resettable = reset_peak();
    println!(
        "replay_bench on database {}, keyspaces/databases/prefix {}_*: {} events, checkpoint {}",
        env.namespace, env.namespace, args.events, args.checkpoint
    );
    let stores: Vec<(BoundedContext, &str)> = STORES
        .into_iter()
        .filter(|(context, _)| !args.skip_stores && args.stores.iter().any(|s| s == context.name()))
        .collect();
    let (storage, catalog) = connect_stores(&env.config).await?;

    let mut terminate = signal(SignalKind::terminate())?;
    let mut measured = Measured::default();
    // Interrupted (Ctrl-C) or terminated: stop measuring, clean up all the same.
    let outcome = tokio::select! {
        outcome = measure(&ledger, &env.config, (&storage, &catalog), &stores, &args, &mut measured) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow!("terminated")),
    };
    if !measured.rows.is_empty() {
        report(
            &measured.rows,
            outcome.as_ref().err(),
            &args,
            &env,
            peak_resettable,
        );
    }
    let cleaned = if args.keep {
        eprintln!(
            "kept {}; remove it with `replay_bench --clean-up {}`",
            env.namespace, env.namespace
        );
        Ok(())
    } else {
        clean_up(&env.namespace, &env.config, &ledger, &storage, &measured.targets).await
    };
    // The benchmark's own failure first; a failed cleanup after a failure is only reported.
    if outcome.is_err()
        && let Err(error) = &cleaned
    {
        eprintln!("the cleanup failed too: {error:#}");
    }
    outcome.and(cleaned)
}

/// Handles on the three stores: for dropping targets, and for opening projectors into them.
async fn connect_stores(config: &Config) -> anyhow::Result<(Storage, Catalog)> {
    let storage = Storage::connect(config).await?;
    let catalog = Catalog::connect(config.clone()).await?;
    Ok((storage, catalog))
}

/// The configuration of a benchmark namespace, as [`TestEnv`] made it.
fn namespace_config(namespace: &str) -> anyhow::Result<Config> {
    ensure!(
        namespace.starts_with("t_") && namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "not a benchmark namespace: {namespace}"
    );
    let mut config = Config::local();
    let Some((prefix, _)) = config.postgres.url.rsplit_once('/') else {
        bail!("WORKUP_PG_URL has no database part");
    };
    config.postgres.url = format!("{prefix}/{namespace}");
    config.cassandra.keyspace = namespace.to_owned();
    config.mongo.database = namespace.to_owned();
    config.redis.prefix = format!("{namespace}:");
    Ok(config)
}

/// What a run measured and wrote so far (also when it stops early).
#[derive(Default)]
struct Measured {
    /// The figures.
    rows: Vec<Row>,
    /// The read model targets written, for the cleanup.
    targets: Vec<Target>,
}

/// Grow the ledger to each size in turn and measure it there, into `measured`.
async fn measure(
    ledger: &Ledger,
    config: &Config,
    (storage, catalog): (&Storage, &Catalog),
    stores: &[(BoundedContext, &str)],
    args: &Args,
    measured: &mut Measured,
) -> anyhow::Result<()> {
    let steps: Vec<u64> = [args.checkpoint, args.events]
        .into_iter()
        .filter(|n| *n > 0)
        .collect();
    let plan = Arc::new(Mutex::new(Plan {
        next_stream: 0,
        generated: 0,
        target: 0,
        stream_events: args.stream_events,
    }));
    let rows = &mut measured.rows;
    for (step, &size) in steps.iter().enumerate() {
        rows.push(generate(ledger, &plan, size, args).await?);
        let ledger_size = ledger.count(&ScanFilter::everything()).await?;
        wait_readable(ledger).await?;
        let mut mix = Vec::new();
        for (context, _) in STORES {
            let count = ledger.count(&replay::filter(context, 0)).await?;
            mix.push(format!("{} {count}", context.name()));
        }
        println!("\nledger at {ledger_size} events ({})", mix.join(", "));
        rows.push(read_and_decode(ledger, ledger_size, args).await?);
        for &(context, store) in stores {
            // A generation of its own per measurement: a fresh target (dropped first, in case).
            let target = Target::generation(context, step as u32 + 1);
            storage.drop(target, config).await?;
            measured.targets.push(target);
            rows.push(rebuild(ledger, catalog, target, store, ledger_size, args).await?);
        }
    }

    Ok(())
}

// ----- Generating -----

/// Which streams come next: stream `n` is a user, a job or a wallet (round-robin), with
/// `stream_events` events, fewer for the last stream before `target`.
struct Plan {
    next_stream: u64,
    generated: u64,
    target: u64,
    stream_events: u64,
}

impl Plan {
    /// Up to `streams` streams to write next: (stream number, events).
    fn take(&mut self, streams: usize) -> Vec<(u64, usize)> {
        let mut out = Vec::with_capacity(streams);
        while out.len() < streams && self.generated < self.target {
            let len = (self.target - self.generated).min(self.stream_events);
            out.push((self.next_stream, len as usize));
            self.next_stream += 1;
            self.generated += len;
        }
        out
    }
}

/// Grow the ledger to `target` events.
async fn generate(ledger: &Ledger, plan: &Arc<Mutex<Plan>>, target: u64, args: &Args) -> anyhow::Result<Row> {
    let from = {
        let mut plan = plan.lock().unwrap_or_else(PoisonError::into_inner);
        plan.target = target;
        plan.generated
    };
    let bar = progress(target - from, "append");
    let before = start_phase();
    let started = Instant::now();
    let mut writers = JoinSet::new();
    for _ in 0..args.writers {
        let (ledger, plan, bar) = (ledger.clone(), plan.clone(), bar.clone());
        let streams = args.append_streams;
        writers.spawn(async move {
            loop {
                let chunk = plan.lock().unwrap_or_else(PoisonError::into_inner).take(streams);
                if chunk.is_empty() {
                    return anyhow::Ok(());
                }
                let now = Timestamp::from_datetime(Utc::now());
                let mut writes = Vec::with_capacity(chunk.len());
                let mut reserve = Vec::new();
                let mut events = 0;
                for (stream, len) in chunk {
                    let (write, reservation) = stream_write(stream, len, now)?;
                    events += write.events.len() as u64;
                    writes.push(write);
                    reserve.extend(reservation);
                }
                let metadata = EventMetadata::new(Uuid::now_v7(), None, now.as_datetime());
                let mut request = AppendRequest::new(metadata, writes);
                request.reserve = reserve;
                ledger.append(request).await?;
                tick(&bar, events);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.context("append task")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(Row {
        ledger_size: ledger.count(&ScanFilter::everything()).await?,
        phase: "append (generate)".into(),
        events: target - from,
        seconds,
        memory: memory(before),
        load: load_average(),
        note: format!(
            "Ledger::append, {} streams per append, {} in flight",
            args.append_streams, args.writers
        ),
    })
}

/// The events of stream number `stream` (`len` of them), decided by the domain, and the
/// reservation its first command makes, if any.
fn stream_write(
    stream: u64,
    len: usize,
    now: Timestamp,
) -> anyhow::Result<(StreamWrite, Option<Reservation>)> {
    match stream % 3 {
        0 => user_stream(stream, len, now),
        1 => job_stream(stream, len, now).map(|w| (w, None)),
        _ => wallet_stream(stream, len, now).map(|w| (w, None)),
    }
}

/// A PHC string of the shape the password hasher produces (never verified here).
const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$cmVwbGF5YmVuY2hzYWx0$Vx8kO9yqT1m3oWc2bXl5ZkR0S2pQcnN0dVZ3eHl6QUJD";

const WORDS: [&str; 16] = [
    "rust",
    "backend",
    "payments",
    "search",
    "mobile",
    "dashboard",
    "billing",
    "api",
    "kafka",
    "cassandra",
    "redis",
    "migration",
    "frontend",
    "analytics",
    "security",
    "integration",
];

fn word(n: u64) -> &'static str {
    WORDS[(n % WORDS.len() as u64) as usize]
}

/// A refused input field as an error.
fn field(e: FieldError) -> anyhow::Error {
    anyhow!("invalid {}: {}", e.field, e.message)
}

/// A context's decision function: the events command `C` on aggregate `A` emits.
type Decide<A, C> = fn(&A, &C, &Context) -> Result<Vec<<A as Aggregate>::Event>, DomainError>;

/// Apply `commands` to a new aggregate in turn, as the command path does (decide, then evolve).
fn decide_all<A: Aggregate, C>(
    commands: impl IntoIterator<Item = C>,
    ctx: &Context,
    decide: Decide<A, C>,
) -> anyhow::Result<Vec<A::Event>> {
    let mut state = A::default();
    let mut events = Vec::new();
    for command in commands {
        let new = decide(&state, &command, ctx).map_err(|e| anyhow!("the domain refused a command: {e}"))?;
        for event in &new {
            state.evolve(event);
        }
        events.extend(new);
    }
    Ok(events)
}

/// A client or a freelancer: registration, then profile edits (freelancers: skills too).
fn user_stream(
    stream: u64,
    len: usize,
    now: Timestamp,
) -> anyhow::Result<(StreamWrite, Option<Reservation>)> {
    let user_id = UserId::from_uuid(Uuid::now_v7());
    let freelancer = (stream / 3) % 2 == 1;
    let role = if freelancer {
        Role::Freelancer
    } else {
        Role::Client
    };
    let email = EmailAddress::parse(&format!("replay-bench-{stream}@bench.example")).map_err(field)?;
    let name = format!("Bench User {stream}");
    let registration = Registration {
        user_id,
        email: email.clone(),
        password_hash: PasswordHash::from_phc(PASSWORD_HASH.to_owned()),
        name: PersonName::parse(&name, "name").map_err(field)?,
    };
    let mut commands = vec![if freelancer {
        UserCommand::RegisterFreelancer(registration)
    } else {
        UserCommand::RegisterClient(registration)
    }];
    for n in 1..len as u64 {
        commands.push(if freelancer && n % 2 == 1 {
            UserCommand::AddProfileItem {
                section: ProfileSection::Skill,
                item_id: ProfileItemId::from_uuid(Uuid::now_v7()),
                item: ProfileItem::parse(word(stream + n), "five years, production systems")?,
            }
        } else {
            UserCommand::UpdateProfile(ProfileUpdate::parse(
                &name,
                &format!("{} and {} engineer (edit {n})", word(stream), word(stream + n)),
                "I build reliable services, write tests first and document what I ship.",
            )?)
        });
    }
    let ctx = Context {
        actor: Actor::new(user_id, role),
        now,
    };
    let events = decide_all::<User, _>(commands, &ctx, domain::users::decide)?;
    let write = StreamWrite::of::<User>(user_id.as_uuid(), ExpectedVersion::NoStream, &events)?;
    let reservation = Reservation {
        scope: "email",
        value: email.as_str().to_owned(),
        stream_id: user_id.as_uuid(),
    };
    Ok((write, Some(reservation)))
}

/// A client's job: posting, then edits.
fn job_stream(stream: u64, len: usize, now: Timestamp) -> anyhow::Result<StreamWrite> {
    let job_id = JobId::from_uuid(Uuid::now_v7());
    let client = UserId::from_uuid(Uuid::now_v7());
    let draft = |edit: u64| -> Result<JobDraft, DomainError> {
        JobDraft::parse(
            &format!(
                "{} {} service, part {}",
                word(stream),
                word(stream / 16),
                edit + 1
            ),
            &format!(
                "We need an experienced engineer to extend our {} platform with {} features; remote, {} weeks.",
                word(stream + 3),
                word(stream + edit + 5),
                2 + edit
            ),
            Money::new(
                50_000 + (stream % 100) as i64 * 1_000 + edit as i64 * 500,
                Currency::Usd,
            ),
            &[
                word(stream).to_owned(),
                word(stream + 7).to_owned(),
                "testing".to_owned(),
            ],
        )
    };
    let mut commands = vec![JobCommand::Post {
        job_id,
        draft: draft(0)?,
    }];
    for n in 1..len as u64 {
        commands.push(JobCommand::Update { draft: draft(n)? });
    }
    let ctx = Context {
        actor: Actor::new(client, Role::Client),
        now,
    };
    let events = decide_all::<Job, _>(commands, &ctx, domain::jobs::decide)?;
    Ok(StreamWrite::of::<Job>(
        job_id.as_uuid(),
        ExpectedVersion::NoStream,
        &events,
    )?)
}

/// A user's wallet: opening, then deposits.
fn wallet_stream(stream: u64, len: usize, now: Timestamp) -> anyhow::Result<StreamWrite> {
    let owner = UserId::from_uuid(Uuid::now_v7());
    let wallet_id = WalletId::for_user(owner);
    let mut commands = vec![WalletCommand::Open {
        wallet_id,
        currency: Currency::Usd,
    }];
    for n in 1..len as i64 {
        commands.push(WalletCommand::Deposit {
            wallet_id,
            amount: Money::new(10_000 * n + (stream % 97) as i64, Currency::Usd),
        });
    }
    let ctx = Context {
        actor: Actor::new(owner, Role::Client),
        now,
    };
    let events = decide_all::<Wallet, _>(commands, &ctx, domain::payments::wallet::decide)?;
    Ok(StreamWrite::of::<Wallet>(
        wallet_id.as_uuid(),
        ExpectedVersion::NoStream,
        &events,
    )?)
}

/// Wait until every transaction that wrote the ledger so far has finished, so that a scan reads
/// all of it (other sessions of the server may hold the horizon back for a while).
async fn wait_readable(ledger: &Ledger) -> anyhow::Result<()> {
    let next = ledger.transaction_horizon().await?.next;
    let deadline = Instant::now() + Duration::from_secs(120);
    while ledger.transaction_horizon().await?.oldest_running < next {
        ensure!(
            Instant::now() < deadline,
            "a transaction of another session has kept the ledger's tail unreadable for 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

// ----- Measuring -----

/// Scan the whole ledger and decode every event into its domain enum; the next batch is read
/// while the current one is decoded.
async fn read_and_decode(ledger: &Ledger, ledger_size: i64, args: &Args) -> anyhow::Result<Row> {
    let bar = progress(ledger_size as u64, "read + decode");
    let filter = Arc::new(ScanFilter::everything());
    let upcasters = Upcasters::current();
    let scan = |cursor: ScanCursor| {
        let (ledger, filter, batch) = (ledger.clone(), filter.clone(), args.batch);
        tokio::spawn(async move { ledger.scan(&filter, cursor, batch).await })
    };
    let before = start_phase();
    let started = Instant::now();
    let mut next = scan(ScanCursor::default());
    let mut decoded = 0u64;
    loop {
        let batch = next.await.context("scan task")??;
        let Some((cursor, _)) = batch.last() else {
            break;
        };
        next = scan(*cursor);
        for (_, event) in &batch {
            decode(event, &upcasters)?;
        }
        decoded += batch.len() as u64;
        tick(&bar, batch.len() as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    ensure!(
        decoded == ledger_size as u64,
        "read {decoded} events of a ledger of {ledger_size}"
    );
    Ok(Row {
        ledger_size,
        phase: "read + decode (whole ledger)".into(),
        events: decoded,
        seconds,
        memory: memory(before),
        load: load_average(),
        note: format!("Ledger::scan, batches of {}, into domain enums", args.batch),
    })
}

/// Decode one event into its aggregate's event enum.
fn decode(event: &RecordedEvent, upcasters: &Upcasters) -> anyhow::Result<()> {
    fn into<A: Aggregate>(event: &RecordedEvent, upcasters: &Upcasters) -> Result<(), LedgerError> {
        std::hint::black_box(event.decode::<A::Event>(upcasters)?);
        Ok(())
    }
    let decoded = match event.stream_type.as_str() {
        User::STREAM_TYPE => into::<User>(event, upcasters),
        Job::STREAM_TYPE => into::<Job>(event, upcasters),
        Proposal::STREAM_TYPE => into::<Proposal>(event, upcasters),
        Contract::STREAM_TYPE => into::<Contract>(event, upcasters),
        TerminationRequest::STREAM_TYPE => into::<TerminationRequest>(event, upcasters),
        Wallet::STREAM_TYPE => into::<Wallet>(event, upcasters),
        PaymentRequest::STREAM_TYPE => into::<PaymentRequest>(event, upcasters),
        Withdrawal::STREAM_TYPE => into::<Withdrawal>(event, upcasters),
        other => bail!(
            "event {} has an unknown stream type {other}",
            event.global_position
        ),
    };
    decoded.with_context(|| format!("event {} does not decode", event.global_position))
}

/// Replay `target`'s context into `target` (fresh), timing it.
async fn rebuild(
    ledger: &Ledger,
    catalog: &Catalog,
    target: Target,
    store: &str,
    ledger_size: i64,
    args: &Args,
) -> anyhow::Result<Row> {
    let filter = replay::filter(target.context, 0);
    let total = ledger.count(&filter).await?;
    let projector = catalog.open(target).await?;
    let options = ReplayOptions {
        batch: args.batch,
        lanes: args.lanes,
        ..ReplayOptions::default()
    };
    let bar = progress(total as u64, &format!("rebuild {}", target.context.name()));
    // (events applied, time) after the last completed batch.
    let done = Cell::new((0u64, Duration::ZERO));
    let before = start_phase();
    let started = Instant::now();
    let run = replay::replay(
        ledger,
        &projector,
        &filter,
        ScanCursor::default(),
        &options,
        |p| {
            let shown = done.get().0;
            tick(&bar, p.applied - shown);
            done.set((p.applied, started.elapsed()));
        },
    );
    let bounded = if args.store_seconds > 0 {
        match tokio::time::timeout(Duration::from_secs(args.store_seconds), run).await {
            Ok(finished) => {
                finished?;
                false
            }
            Err(_) => true,
        }
    } else {
        run.await?;
        false
    };
    let (applied, elapsed) = done.get();
    bar.finish_and_clear();
    let memory = memory(before);
    ensure!(
        bounded || applied == total as u64,
        "the rebuild applied {applied} of {total} events"
    );
    let mut note = format!("replay, {} lanes", args.lanes);
    if bounded {
        let _ = write!(
            note,
            "; stopped at the {} s budget: {applied} of {total} events applied in the batches completed within it",
            args.store_seconds
        );
    }
    Ok(Row {
        ledger_size,
        phase: format!("rebuild {} → {store}", target.context.name()),
        events: applied,
        seconds: elapsed.as_secs_f64(),
        memory,
        load: load_average(),
        note,
    })
}

// ----- Memory -----

/// Reset the peak resident set (`VmHWM`) to the current one; whether it worked.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Start a phase: reset the peak; the resident set now.
fn start_phase() -> Option<u64> {
    reset_peak();
    memory(None).rss_kib
}

/// The memory figures now, of a phase that started at `before`.
fn memory(before: Option<u64>) -> Memory {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Memory::default();
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Memory {
        before_kib: before,
        hwm_kib: field("VmHWM:"),
        rss_kib: field("VmRSS:"),
    }
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
}

fn meminfo_total_mib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Print the table and what it was measured on.
fn report(rows: &[Row], failure: Option<&anyhow::Error>, args: &Args, env: &TestEnv, peak_resettable: bool) {
    println!("\n{}", table(rows));
    if let Some(failure) = failure {
        println!("INCOMPLETE: the run stopped after these rows: {failure:#}");
    }
    println!(
        "mix, round-robin by stream: users (client or freelancer registration, then profile edits and skills) → users read model; \
         jobs (JobPosted, then JobUpdated; about 20 distinct indexed words each) → jobs; wallets (WalletOpened, then FundsDeposited) → payments"
    );
    println!(
        "load: the 1-minute load average after the phase (other work on the machine slows every figure)"
    );
    println!(
        "machine: {} CPUs ({}), {} MiB RAM; build profile: {}; ledger batch {}, replay lanes {}, {} events per stream, {} streams per append, {} writers",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        meminfo_total_mib().unwrap_or(0),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        args.batch,
        args.lanes,
        args.stream_events,
        args.append_streams,
        args.writers,
    );
    println!(
        "stores: PostgreSQL {}, Cassandra {}, MongoDB {}, Redis {}",
        redact(&env.config.postgres.url),
        env.config.cassandra.nodes.join(","),
        redact(&env.config.mongo.url),
        redact(&env.config.redis.url),
    );
    println!(
        "VmHWM: {}",
        if peak_resettable {
            "peak resident set of the process during that phase only (reset to VmRSS before, through /proc/self/clear_refs, as the phase starts; between phases, untimed drops of the stores' copies may leave the allocator holding memory)"
        } else {
            "peak resident set of the process since it started (could not reset it per phase)"
        }
    );
    if args.store_seconds > 0 {
        println!(
            "rebuilds bounded to {} s each: a bounded rebuild's events are those applied within the budget (see notes); the ledger read always covers the whole ledger",
            args.store_seconds
        );
    }
}

// ----- Output -----

fn table(rows: &[Row]) -> String {
    let mib = |kib: Option<u64>| kib.map_or("n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    let mut out = String::from(
        "| ledger size | phase | events | seconds | events/s | VmRSS before MiB | VmHWM MiB | VmRSS after MiB | load | notes |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} |",
            row.ledger_size,
            row.phase,
            row.events,
            row.seconds,
            row.events as f64 / row.seconds.max(1e-9),
            mib(row.memory.before_kib),
            mib(row.memory.hwm_kib),
            mib(row.memory.rss_kib),
            row.load.map_or("n/a".to_owned(), |l| format!("{l:.1}")),
            row.note,
        );
    }
    out
}

/// A URL without its password, if it has one.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, rest)), Some((_, host))) if rest.contains('@') => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(len).with_message(what.to_owned());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        // Plain lines instead (see `tick`): the length and message are kept on a hidden bar.
        let bar = ProgressBar::hidden();
        bar.set_length(len);
        bar.set_message(what.to_owned());
        bar
    }
}

/// Advance `bar` by `n`; without a terminal, print a line at every tenth of the way.
fn tick(bar: &ProgressBar, n: u64) {
    let before = bar.position();
    bar.inc(n);
    if bar.is_hidden()
        && let Some(len) = bar.length().filter(|l| *l >= 10)
    {
        let step = len / 10;
        if before / step != bar.position() / step {
            eprintln!(
                "{}: {}/{len} ({:.0} s)",
                bar.message(),
                bar.position(),
                bar.elapsed().as_secs_f64()
            );
        }
    }
}

/// Remove what the benchmark wrote (not timed; after the table): the read model targets, then
/// the database.
async fn clean_up(
    namespace: &str,
    config: &Config,
    ledger: &Ledger,
    storage: &Storage,
    targets: &[Target],
) -> anyhow::Result<()> {
    eprintln!("cleaning up {namespace} ...");
    let started = Instant::now();
    // Every target is tried; the first failure is returned (the others are printed).
    let mut failures = Vec::new();
    for &target in targets {
        if let Err(error) = storage.drop(target, config).await {
            failures.push(anyhow::Error::from(error).context(format!("could not drop {target}")));
        }
    }
    // The database goes last, and only when the stores are clean: `--clean-up` needs it.
    if failures.is_empty() {
        ledger.pool().close().await;
        if let Err(error) = drop_database(namespace).await {
            failures.push(error.context(format!("could not drop the database {namespace}")));
        }
    }
    let mut failures = failures.into_iter();
    match failures.next() {
        None => {
            eprintln!("cleaned up in {:.0} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Some(first) => {
            for other in failures {
                eprintln!("{other:#}");
            }
            Err(first.context(format!(
                "the cleanup was incomplete: run `replay_bench --clean-up {namespace}` once the stores answer"
            )))
        }
    }
}

/// Drop the benchmark's database (its pool closed first).
async fn drop_database(namespace: &str) -> anyhow::Result<()> {
    let base = Config::local().postgres.url;
    let mut admin = PgConnection::connect(&base).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {namespace} WITH (FORCE)").as_str())
        .await?;
    admin.close().await?;
    Ok(())
}
