//! The chaos soak (`chaos` binary): the whole platform as separate processes under the
//! marketplace load while faults are injected on a seeded schedule; then the load stops, the
//! pipeline drains, and the invariants are checked against the ledger and every read model.
//!
//! - [`fleet`]: the service processes (two command-api, projectors, sagas and withdrawal
//!   workers; one query-api; one stand-alone relay — every command-api runs a relay too, and
//!   one relay at a time holds the publishing lease).
//! - [`load`]: actors running the whole flow with conflicting commands.
//! - [`faults`]: the seeded schedule and the injection.
//! - [`checks`]: the invariants.
//! - [`report`]: what is printed at the end.

pub mod checks;
pub mod faults;
pub mod fleet;
pub mod load;
pub mod report;

use anyhow::Context as _;
use domain::BoundedContext;
use infra::{
    kafka::{consumer::group_id, lag::LagProbe},
    testing::TestEnv,
};
use rand::{SeedableRng as _, rngs::StdRng};
use sqlx::PgPool;
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use checks::Check;
use faults::{Injected, Injector, Schedule};
use fleet::{Fleet, Service};
use load::Gateway;

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long the load runs (faults meanwhile).
    pub duration: Duration,
    /// Seeds the fault schedule and the actors' choices.
    pub seed: u64,
    /// Actors running flows at once.
    pub actors: usize,
    /// Mean pause between two faults (after the previous one recovered).
    pub fault_every: Duration,
    /// Inject no fault (a baseline run).
    pub no_faults: bool,
    /// Where the service binaries (and `control`) are.
    pub bin_dir: PathBuf,
    /// `scripts/infra.sh`.
    pub infra_script: PathBuf,
    /// Where the services' logs, the tools' output and the report go.
    pub out_dir: PathBuf,
    /// `RUST_LOG` of the services.
    pub log_filter: String,
    /// Longest wait for the pipeline to drain after the load.
    pub drain_timeout: Duration,
}

/// Service instances started.
const FLEET: [(Service, usize); 6] = [
    (Service::CommandApi, 2),
    (Service::QueryApi, 1),
    (Service::Projectors, 2),
    (Service::Sagas, 2),
    (Service::WithdrawalWorker, 2),
    (Service::Relay, 1),
];

/// Consumer groups (projectors, sagas, the withdrawal worker's intake) and their topics'
/// contexts: lag and dead letters are read from the broker for each.
fn consumer_groups() -> Vec<(&'static str, Vec<BoundedContext>)> {
    let mut groups: Vec<_> = BoundedContext::ALL
        .iter()
        .map(|c| (c.name(), projectors::catalog::sources(*c).to_vec()))
        .collect();
    // sagas::runner's process managers, and workers::runner's intake.
    groups.extend([
        ("contract-initiation", vec![BoundedContext::Jobs]),
        ("payment-requests", vec![BoundedContext::Contracts]),
        ("completion", vec![BoundedContext::Payments]),
        (workers::runner::GROUP, vec![BoundedContext::Payments]),
    ]);
    groups
}

/// Run a soak; its report (which says whether every invariant held).
pub async fn run(settings: Settings) -> anyhow::Result<report::Report> {
    let env = TestEnv::new().await.context(
        "creating the soak's namespace: is the local infrastructure up? (`bash scripts/chaos.sh` starts it)",
    )?;
    let config = env.config.clone();
    std::fs::create_dir_all(&settings.out_dir)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    // The simulated payout provider: the one external system, in this process.
    let provider = payout_provider::Provider::new(payout_provider::Settings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let provider_url = format!("http://{}", listener.local_addr()?);
    let provider_server = tokio::spawn(provider.clone().serve(listener));

    let env_vars = service_env(&config, provider_url, &settings.log_filter);
    let mut fleet = Fleet::new(
        &settings.bin_dir,
        &settings.out_dir.join("logs"),
        env_vars.clone(),
        &FLEET,
    )?;
    let injector = Injector {
        infra_script: settings.infra_script.clone(),
        control: settings.bin_dir.join("control"),
        control_env: env_vars,
        log: settings.out_dir.join("tools.log"),
        http: http.clone(),
    };
    println!(
        "chaos: seed {} · namespace {} · logs in {}",
        settings.seed,
        env.namespace,
        settings.out_dir.display()
    );
    let started = Instant::now();
    fleet.start_all(&http).await?;
    println!(
        "chaos: {} service instances ready in {:.1} s",
        fleet.instances.len(),
        started.elapsed().as_secs_f64()
    );

    let gateway = Arc::new(Gateway::new(
        http.clone(),
        fleet.urls(Service::CommandApi),
        fleet.urls(Service::QueryApi).remove(0),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load::run(
        gateway.clone(),
        settings.actors,
        settings.seed,
        stop.clone(),
    ));

    let load_started = Instant::now();
    let (injected, mut crashes) =
        inject_faults(&settings, load_started, &mut fleet, &injector, &gateway, &http).await;
    println!(
        "chaos: load stopping after {:.0} s; waiting for the flows in flight",
        load_started.elapsed().as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    load.await?;
    let load_time = load_started.elapsed();

    let pool = env.ledger().await?.pool();
    let groups = consumer_groups();
    let probes = Arc::new(
        groups
            .iter()
            .map(|(name, contexts)| {
                let topics = contexts.iter().map(|c| config.kafka.context_topic(*c)).collect();
                LagProbe::new(
                    &config.kafka,
                    &group_id(&config.kafka, name),
                    topics,
                    config.kafka.dlq_topic(name),
                )
            })
            .collect::<Result<Vec<_>, _>>()?,
    );
    println!(
        "chaos: draining (relay caught up, every consumer group's lag zero, every withdrawal ended, ledger still)"
    );
    let drained = drain(&pool, &probes, &groups, settings.drain_timeout).await;
    for crash in fleet.exited() {
        crashes.push(crash);
    }
    let mut checks = Vec::new();
    checks.push(Check::new(
        "no service instance exited on its own",
        format!("{} instances", fleet.instances.len()),
        crashes,
    ));
    checks.push(Check::new(
        "the pipeline drained",
        format!("within {} s", settings.drain_timeout.as_secs()),
        drained
            .as_ref()
            .err()
            .map(|e| vec![format!("{e:#}")])
            .unwrap_or_default(),
    ));
    checks.extend(checks::money(&pool, &http, &fleet.urls(Service::QueryApi)[0], &gateway.users()).await?);
    checks.extend(checks::sagas(&pool).await?);
    checks.extend(checks::withdrawals(&pool, &provider).await?);
    checks.push(checks::streams(&pool).await?);
    let (ok, refused) = checks::commands(&pool, &gateway.sent()).await?;
    checks.extend([ok, refused]);
    checks.push(dead_letters(&probes, &groups).await?);
    println!("chaos: control replay verify all (every read model against a fresh rebuild from the ledger)");
    let verified = injector.control_output(&["replay", "verify", "all"]).await?;
    checks.push(Check::new(
        "every read model = a fresh rebuild from the ledger (replay verify; applied versions included)",
        "users, jobs, contracts, payments".into(),
        verified,
    ));
    fleet.stop_all().await;
    provider_server.abort();
    Ok(report::Report {
        settings,
        namespace: env.namespace.clone(),
        load_time,
        faults: injected,
        sent: gateway.sent(),
        flows: gateway.flows(),
        drained: drained.ok(),
        checks,
    })
}

/// The environment of every service process: the namespace's resources and keys, a development
/// stack's defaults, sign-in limits out of the load's way, a 1 s withdrawal cooldown (so the
/// actors' withdrawals race their payments), the payout provider.
fn service_env(
    config: &infra::config::Config,
    provider_url: String,
    log_filter: &str,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = infra::testing::process_env(config)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    vars.extend(
        [
            ("WORKUP_ENV", "dev".to_owned()),
            ("WORKUP_PG_MAX_CONNECTIONS", "8".to_owned()),
            ("WORKUP_AUTH_RATE_PER_ADDRESS", "1000000".to_owned()),
            ("WORKUP_AUTH_RATE_PER_EMAIL", "1000000".to_owned()),
            ("WORKUP_WITHDRAWAL_COOLDOWN_SECS", "1".to_owned()),
            ("WORKUP_PAYOUT_PROVIDER_URL", provider_url),
            ("RUST_LOG", log_filter.to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    vars
}

/// While the load runs: faults on the seeded schedule, one at a time, a progress line every
/// 10 s, and any instance that exited on its own started again. The faults, and those exits.
async fn inject_faults(
    settings: &Settings,
    load_started: Instant,
    fleet: &mut Fleet,
    injector: &Injector,
    gateway: &Gateway,
    http: &reqwest::Client,
) -> (Vec<Injected>, Vec<String>) {
    let mut schedule = Schedule::new(StdRng::seed_from_u64(settings.seed));
    let mut injected: Vec<Injected> = Vec::new();
    let mut crashes = Vec::new();
    let mut next_fault = schedule.gap(settings.fault_every);
    let mut last_progress = Instant::now();
    while load_started.elapsed() < settings.duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for crash in fleet.exited() {
            println!("chaos: {crash} (not a fault of ours): restarting it");
            crashes.push(crash);
        }
        restart_exited(fleet, http).await;
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            println!(
                "{}",
                report::progress(load_started.elapsed(), settings.duration, gateway, injected.len())
            );
        }
        if settings.no_faults || load_started.elapsed() < next_fault {
            continue;
        }
        let (fault, down) = schedule.next(fleet);
        let at = load_started.elapsed();
        println!(
            "chaos: t={:>5.1}s fault: {fault} ({:.1} s down)",
            at.as_secs_f64(),
            down.as_secs_f64()
        );
        let done = injector.inject(fleet, fault, down, at).await;
        match &done.outcome {
            Ok(()) => println!(
                "chaos: t={:>5.1}s recovered in {:.1} s",
                load_started.elapsed().as_secs_f64(),
                done.recovery.as_secs_f64()
            ),
            Err(e) => println!(
                "chaos: t={:>5.1}s FAULT DID NOT RECOVER: {e}",
                load_started.elapsed().as_secs_f64()
            ),
        }
        injected.push(done);
        next_fault = load_started.elapsed() + schedule.gap(settings.fault_every);
    }
    (injected, crashes)
}

/// Start again any instance that is not running (it exited on its own).
async fn restart_exited(fleet: &mut Fleet, http: &reqwest::Client) {
    for i in 0..fleet.instances.len() {
        if !fleet.is_running(i) {
            if let Err(e) = fleet.spawn(i) {
                println!("chaos: could not restart {}: {e:#}", fleet.instances[i].label());
                continue;
            }
            if let Err(e) = fleet.wait_ready(i, http).await {
                println!("chaos: {e:#}");
            }
        }
    }
}

/// Wait until the relay has published every event, every consumer group has applied every
/// record, every withdrawal ended and the ledger stayed still for three looks 2 s apart.
async fn drain(
    pool: &PgPool,
    probes: &Arc<Vec<LagProbe>>,
    groups: &[(&'static str, Vec<BoundedContext>)],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (mut last, mut still) = (None, 0);
    loop {
        let (relayed, open, position): (bool, i64, Option<i64>) = sqlx::query_as(
            "SELECT COALESCE((SELECT (r.transaction_id, r.global_position) >= (e.transaction_id, e.global_position)
                              FROM relay_position r,
                                   (SELECT transaction_id, global_position FROM events
                                    ORDER BY transaction_id DESC, global_position DESC LIMIT 1) e), true),
                    (SELECT count(*) FROM events r WHERE r.event_type = 'WithdrawalRequested' AND NOT EXISTS (
                        SELECT 1 FROM events e WHERE e.stream_id = r.stream_id
                          AND e.event_type IN ('WithdrawalSucceeded', 'WithdrawalFailed', 'WithdrawalCancelled'))),
                    (SELECT max(global_position) FROM events)",
        )
        .fetch_one(pool)
        .await?;
        let probes_now = probes.clone();
        let lags: Vec<i64> = tokio::task::spawn_blocking(move || {
            probes_now
                .iter()
                .map(|p| p.measure().map_or(i64::MAX, |l| l.events))
                .collect()
        })
        .await?;
        let lag: i64 = lags.iter().fold(0, |a, b| a.saturating_add(*b));
        let lagging: Vec<String> = groups
            .iter()
            .zip(&lags)
            .filter(|(_, n)| **n > 0)
            .map(|((name, _), n)| format!("{name} {n}"))
            .collect();
        if relayed && lag == 0 && open == 0 && last == Some(position) {
            still += 1;
            if still >= 3 {
                println!("chaos: drained in {:.1} s", started.elapsed().as_secs_f64());
                return Ok(started.elapsed());
            }
        } else {
            still = 0;
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "not drained after {} s: relay caught up {relayed}, lag by group [{}], {open} withdrawals open",
                timeout.as_secs(),
                lagging.join(", ")
            );
        }
        last = Some(position);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The dead-letter topics hold nothing.
async fn dead_letters(
    probes: &Arc<Vec<LagProbe>>,
    groups: &[(&'static str, Vec<BoundedContext>)],
) -> anyhow::Result<Check> {
    let probes_now = probes.clone();
    let counts = tokio::task::spawn_blocking(move || {
        probes_now
            .iter()
            .map(|p| p.measure().map(|l| l.dlq_events))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let violations = groups
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|((name, _), n)| format!("{name}: {n} parked (control dlq list {name})"))
        .collect();
    Ok(Check::new(
        "the dead-letter topics are empty",
        format!("{} consumer groups", groups.len()),
        violations,
    ))
}
