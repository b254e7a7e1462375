//! The control plane against the real local stack (DESIGN §10): two command-api instances (and
//! a projectors instance) steered through the control topic — freeze and start under load,
//! disabled commands, a live concurrency limit, settings applied before a restarted instance
//! serves, forged messages ignored and counted, a frozen projector that catches up.
//!
//! The tests of this binary run one at a time (they read process-wide metrics).

use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use futures::future::join_all;
use infra::{
    control::{ControlKey, ControlMessage, Setting, operator},
    kafka,
    testing::TestEnv,
};
use rdkafka::message::OwnedHeaders;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

/// One test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `application_name` of an instance's ledger connections (its relay's lease connection has
/// its own).
const INSTANCE_APPLICATION: &str = "command-api-under-test";

/// The instance's connections to the test database now (not the sampler's, not the relay's
/// lease, not PostgreSQL's parallel workers): pid, state and the start of the query of each.
async fn instance_connections(
    executor: impl sqlx::PgExecutor<'_>,
) -> sqlx::Result<Vec<(i32, Option<String>, String)>> {
    sqlx::query_as(
        "SELECT pid, state, left(query, 80) FROM pg_stat_activity WHERE datname = current_database()
         AND application_name = $1 AND backend_type = 'client backend'",
    )
    .bind(INSTANCE_APPLICATION)
    .fetch_all(executor)
    .await
}

/// A command-api instance in-process.
struct Instance {
    url: String,
    id: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    async fn start(env: &TestEnv) -> anyhow::Result<Self> {
        // Named, so that the instance's connections can be told from the test's own.
        let mut config = env.config.clone();
        let separator = if config.postgres.url.contains('?') {
            '&'
        } else {
            '?'
        };
        config.postgres.url = format!(
            "{}{separator}application_name={INSTANCE_APPLICATION}",
            config.postgres.url
        );
        let app = command_api::startup::Application::build(config).await?;
        let url = format!("http://127.0.0.1:{}", app.port());
        let id = app.instance_id().to_owned();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.changed().await;
        }));
        Ok(Self { url, id, stop, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

fn http() -> anyhow::Result<Client> {
    Ok(Client::builder().timeout(Duration::from_secs(30)).build()?)
}

/// Sign and send a setting for `service`.
async fn send(env: &TestEnv, service: &str, setting: Setting) -> anyhow::Result<ControlMessage> {
    let key = env.config.control.signing_key(env.config.auth.environment)?;
    let message = ControlMessage::now(service, setting, "tests");
    operator::send(&env.config.kafka, &key, &message).await?;
    Ok(message)
}

/// A freelancer with a token, registered on `url`.
async fn user(http: &Client, url: &str) -> anyhow::Result<String> {
    let email = format!("ctl-{}@example.com", Uuid::new_v4().simple());
    let credentials = json!({"email": email, "password": "correct horse battery", "name": "Cleo"});
    let registered = http
        .post(format!("{url}/api/v1/users/freelancers/register"))
        .json(&credentials)
        .send()
        .await?;
    ensure!(
        registered.status() == StatusCode::CREATED,
        "register: {}",
        registered.status()
    );
    let login: Value = http
        .post(format!("{url}/api/v1/users/login"))
        .json(&credentials)
        .send()
        .await?
        .json()
        .await?;
    Ok(login["access_token"].as_str().context("token")?.to_owned())
}

async fn deposit(http: &Client, url: &str, token: &str) -> anyhow::Result<reqwest::Response> {
    Ok(http
        .post(format!("{url}/api/v1/payments/wallet/deposits"))
        .bearer_auth(token)
        .json(&json!({"amount": {"minor": 100, "currency": "USD"}}))
        .send()
        .await?)
}

async fn count_events(env: &TestEnv, event_type: &str) -> anyhow::Result<i64> {
    let ledger = env.ledger().await?;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&ledger.pool())
            .await?,
    )
}

/// The value of the first sample of `metric` whose labels contain every one of `labels`.
async fn metric(http: &Client, url: &str, metric: &str, labels: &[&str]) -> anyhow::Result<f64> {
    let text = http.get(format!("{url}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freezing_under_load_refuses_within_a_second_on_both_instances_and_loses_nothing()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await?;
    let (a, b) = (Instance::start(&env).await?, Instance::start(&env).await?);
    let http = http()?;
    let tokens = [user(&http, &a.url).await?, user(&http, &b.url).await?];

    // Steady commands on both instances, counting what each answered.
    let running = Arc::new(AtomicBool::new(true));
    let accepted = Arc::new(AtomicUsize::new(0));
    let refused_since: Arc<std::sync::Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let mut load = Vec::new();
    for (i, (url, token)) in [(&a.url, &tokens[0]), (&b.url, &tokens[1])]
        .into_iter()
        .enumerate()
    {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let (running, accepted, refused_since) = (running.clone(), accepted.clone(), refused_since.clone());
        load.push(tokio::spawn(async move {
            let mut first_refusal = None;
            while running.load(Ordering::Relaxed) {
                let answer = deposit(&http, &url, &token).await?;
                match answer.status() {
                    StatusCode::OK => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        ensure!(
                            answer.headers().contains_key("retry-after"),
                            "503 without Retry-After"
                        );
                        let problem: Value = answer.json().await?;
                        ensure!(problem["type"] == "/problems/service-frozen", "{problem}");
                        if first_refusal.is_none() {
                            first_refusal = Some(Instant::now());
                            refused_since
                                .lock()
                                .map_err(|_| anyhow::anyhow!("poisoned"))?
                                .push((i, Instant::now()));
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => bail!("instance {i} answered {other}"),
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_freeze = accepted.load(Ordering::Relaxed);
    ensure!(before_freeze > 0, "no command went through before the freeze");

    let sent = Instant::now();
    send(&env, "command-api", Setting::Frozen(true)).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let refusals = refused_since
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    ensure!(refusals.len() == 2, "both instances refuse: {refusals:?}");
    for (i, at) in &refusals {
        let after = at.duration_since(sent);
        println!("instance {i} answered 503 {after:?} after the freeze was sent");
        ensure!(after < Duration::from_secs(1), "instance {i} took {after:?}");
    }
    let frozen_count = accepted.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        accepted.load(Ordering::Relaxed) == frozen_count,
        "commands accepted while frozen"
    );

    send(&env, "command-api", Setting::Frozen(false)).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    running.store(false, Ordering::Relaxed);
    for task in load {
        task.await??;
    }
    let total = accepted.load(Ordering::Relaxed);
    ensure!(total > frozen_count, "traffic resumed after start");
    // Exactly the accepted deposits are in the ledger (a refused one wrote nothing).
    ensure!(
        count_events(&env, "FundsDeposited").await? == i64::try_from(total)?,
        "ledger holds {} deposits, {total} were accepted",
        count_events(&env, "FundsDeposited").await?
    );
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_command_answers_410_and_the_others_keep_working() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await?;
    let (a, b) = (Instance::start(&env).await?, Instance::start(&env).await?);
    let http = http()?;
    let token = user(&http, &a.url).await?;
    send(
        &env,
        "command-api",
        Setting::CommandDisabled {
            command: "deposit".into(),
            disabled: true,
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for url in [&a.url, &b.url] {
        let refused = deposit(&http, url, &token).await?;
        ensure!(refused.status() == StatusCode::GONE, "{}", refused.status());
        let problem: Value = refused.json().await?;
        ensure!(problem["type"] == "/problems/command-disabled", "{problem}");
        ensure!(
            problem["detail"].as_str().is_some_and(|d| d.contains("deposit")),
            "{problem}"
        );
        // Another command is unaffected.
        let profile = http
            .put(format!("{url}/api/v1/users/me/profile"))
            .bearer_auth(&token)
            .json(&json!({"name": "Cleo B"}))
            .send()
            .await?;
        ensure!(
            profile.status() == StatusCode::OK,
            "profile: {}",
            profile.status()
        );
    }
    send(
        &env,
        "command-api",
        Setting::CommandDisabled {
            command: "deposit".into(),
            disabled: false,
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for url in [&a.url, &b.url] {
        ensure!(deposit(&http, url, &token).await?.status() == StatusCode::OK);
    }
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrency_one_limits_work_in_flight_and_raising_it_restores_throughput() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await?;
    let a = Instance::start(&env).await?;
    let http = http()?;
    let mut tokens = Vec::new();
    for _ in 0..16 {
        tokens.push(user(&http, &a.url).await?);
    }
    let instance_label = format!("instance=\"{}\"", a.id);
    // A burst of 16 concurrent deposits while sampling the in-flight gauge: (max seen, time).
    let burst = |rounds: usize| {
        let (http, url, tokens, label) = (
            http.clone(),
            a.url.clone(),
            tokens.clone(),
            instance_label.clone(),
        );
        async move {
            let done = Arc::new(AtomicBool::new(false));
            let sampler = {
                let (http, url, done) = (http.clone(), url.clone(), done.clone());
                tokio::spawn(async move {
                    let mut max = 0.0_f64;
                    while !done.load(Ordering::Relaxed) {
                        max = max.max(metric(&http, &url, "workup_http_in_flight", &[&label]).await?);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    anyhow::Ok(max)
                })
            };
            let started = Instant::now();
            for _ in 0..rounds {
                let answers = join_all(tokens.iter().map(|t| deposit(&http, &url, t))).await;
                for answer in answers {
                    ensure!(answer?.status() == StatusCode::OK);
                }
            }
            let took = started.elapsed();
            done.store(true, Ordering::Relaxed);
            let max = sampler.await??;
            anyhow::Ok((max, took))
        }
    };
    send(&env, "command-api", Setting::MaxConcurrency(Some(1))).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (limited_max, limited_took) = burst(5).await?;
    send(&env, "command-api", Setting::MaxConcurrency(None)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (free_max, free_took) = burst(5).await?;
    println!(
        "max-concurrency 1: at most {limited_max} in flight, 80 deposits in {limited_took:?}; \
         no limit: at most {free_max} in flight, in {free_took:?}"
    );
    // The sampler's own /metrics request is not gated (it is outside /api/v1).
    ensure!(limited_max <= 1.0, "in flight under limit 1: {limited_max}");
    ensure!(free_max > 1.0, "in flight without limit: {free_max}");
    ensure!(free_took < limited_took, "throughput restored");
    a.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_instance_applies_the_current_settings_before_serving() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await?;
    let a = Instance::start(&env).await?;
    let http = http()?;
    let token = user(&http, &a.url).await?;
    send(&env, "all", Setting::Frozen(true)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.stop().await?;
    // Its very first answer is already frozen.
    let again = Instance::start(&env).await?;
    let first = deposit(&http, &again.url, &token).await?;
    ensure!(
        first.status() == StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        first.status()
    );
    // `control status` sees it, with the setting applied.
    let statuses = operator::statuses(&env.config.kafka).await?;
    let mine = statuses
        .iter()
        .find(|s| s.instance == again.id)
        .context("the new instance reports its status")?;
    ensure!(
        mine.settings.frozen && mine.versions.contains_key("all/frozen"),
        "{mine:?}"
    );
    ensure!(mine.heartbeat_at > Utc::now() - chrono::TimeDelta::seconds(5));
    send(&env, "all", Setting::Frozen(false)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(deposit(&http, &again.url, &token).await?.status() == StatusCode::OK);
    again.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_unsigned_or_stale_message_changes_nothing_and_is_counted() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await?;
    let a = Instance::start(&env).await?;
    let http = http()?;
    let token = user(&http, &a.url).await?;
    let count = |outcome: &'static str| {
        let (http, url) = (http.clone(), a.url.clone());
        async move {
            let label = format!("outcome=\"{outcome}\"");
            metric(&http, &url, "workup_control_messages_total", &[&label]).await
        }
    };
    let (unsigned_before, forged_before, stale_before) = (
        count("unsigned").await?,
        count("bad_signature").await?,
        count("stale").await?,
    );

    let topic = env.config.kafka.control_topic();
    let producer = kafka::producer(&env.config.kafka)?;
    let freeze = ControlMessage::now("command-api", Setting::Frozen(true), "mallory");
    let unsigned = serde_json::to_vec(&freeze)?;
    let forged = serde_json::to_vec(
        &ControlKey::new(format!("not-the-key-{}", Uuid::new_v4()).into()).sign(&freeze)?,
    )?;
    for value in [unsigned, forged] {
        producer
            .send(
                kafka::record(&topic, &freeze.key(), &value, OwnedHeaders::new()),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    // A properly signed start, then a replay of an older (stale) freeze.
    let start = send(&env, "command-api", Setting::Frozen(false)).await?;
    let key = env.config.control.signing_key(env.config.auth.environment)?;
    let stale = ControlMessage {
        version: start.version,
        ..freeze.clone()
    };
    operator::send(&env.config.kafka, &key, &stale).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    ensure!(
        deposit(&http, &a.url, &token).await?.status() == StatusCode::OK,
        "still serving"
    );
    ensure!(count("unsigned").await? > unsigned_before, "unsigned counted");
    ensure!(count("bad_signature").await? > forged_before, "forged counted");
    ensure!(count("stale").await? > stale_before, "stale counted");
    a.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_projector_applies_nothing_then_catches_up_applying_each_event_once() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await?;
    let a = Instance::start(&env).await?;
    let projectors = projectors::runner::Projectors::build(env.config.clone()).await?;
    let projectors_url = format!("http://127.0.0.1:{}", projectors.port());
    let (stop_projectors, mut stopped) = watch::channel(false);
    let projectors_task = tokio::spawn(projectors.run_until_stopped(async move {
        let _ = stopped.changed().await;
    }));
    let http = http()?;
    let token = user(&http, &a.url).await?;
    ensure!(deposit(&http, &a.url, &token).await?.status() == StatusCode::OK);
    let handled = |http: Client| {
        let url = projectors_url.clone();
        async move {
            metric(
                &http,
                &url,
                "workup_consumer_events_total",
                &["consumer=\"payments\"", "outcome=\"Handled\""],
            )
            .await
        }
    };
    // Wait for the first deposit's events to be applied.
    let deadline = Instant::now() + Duration::from_secs(20);
    while handled(http.clone()).await? < 2.0 {
        ensure!(
            Instant::now() < deadline,
            "the projector never applied the first deposit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = handled(http.clone()).await?;

    send(&env, "projectors", Setting::Frozen(true)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..20 {
        ensure!(deposit(&http, &a.url, &token).await?.status() == StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(handled(http.clone()).await? == before, "applied while frozen");

    send(&env, "projectors", Setting::Frozen(false)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled(http.clone()).await? < before + 20.0 {
        ensure!(Instant::now() < deadline, "the projector did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = handled(http.clone()).await?;
    ensure!(
        after == before + 20.0,
        "each of the 20 events applied once: {before} → {after}"
    );

    let _ = stop_projectors.send(true);
    projectors_task.await??;
    a.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_db_connections_two_holds_the_pool_at_two_and_commands_still_succeed() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await?;
    let a = Instance::start(&env).await?;
    let http = http()?;
    let mut tokens = Vec::new();
    for _ in 0..24 {
        tokens.push(user(&http, &a.url).await?);
    }
    let ledger = env.ledger().await?;
    // 24 concurrent deposits, again and again, while counting the instance's connections to the
    // test database (not the sampler's own, not the relay's lease connection): (max, commands/s).
    let load = |rounds: usize| {
        let (http, url, tokens, ledger) = (http.clone(), a.url.clone(), tokens.clone(), ledger.clone());
        async move {
            let done = Arc::new(AtomicBool::new(false));
            let sampler = {
                let (done, pool) = (done.clone(), ledger.pool());
                tokio::spawn(async move {
                    let mut conn = pool.acquire().await?;
                    let mut max = 0;
                    let mut seen = Vec::new();
                    while !done.load(Ordering::Relaxed) {
                        let rows = instance_connections(&mut *conn).await?;
                        let n = rows.len();
                        if n > max {
                            max = n;
                            seen = rows;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    println!("at most {max} instance connections under load: {seen:?}");
                    anyhow::Ok(max)
                })
            };
            let started = Instant::now();
            for _ in 0..rounds {
                for answer in join_all(tokens.iter().map(|t| deposit(&http, &url, t))).await {
                    let status = answer?.status();
                    ensure!(status == StatusCode::OK, "deposit answered {status}");
                }
            }
            let rate = (rounds * tokens.len()) as f64 / started.elapsed().as_secs_f64();
            done.store(true, Ordering::Relaxed);
            anyhow::Ok((sampler.await??, rate))
        }
    };
    let (before, free_rate) = load(4).await?;
    send(&env, "command-api", Setting::MaxDbConnections(Some(2))).await?;
    // The instance works on a new pool of 2 once the message arrives; the old pool's connections
    // close when the work on them is done, and PostgreSQL lists a backend until it has exited.
    // Wait for that (seen taking over a second in CI), then measure.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = instance_connections(&ledger.pool()).await?.len();
        if n <= 2 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "still {n} connections 15 s after max-db-connections 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (limited, limited_rate) = load(4).await?;
    println!(
        "connections under load: {before} with the configured pool ({free_rate:.0} deposits/s), \
         {limited} with max-db-connections 2 ({limited_rate:.0} deposits/s)"
    );
    ensure!(limited <= 2, "at most 2 connections: {limited}");
    ensure!(
        before > 2,
        "the load used more than 2 connections before the limit: {before}"
    );
    send(&env, "command-api", Setting::MaxDbConnections(None)).await?;
    a.stop().await
}
