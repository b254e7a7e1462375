//! The withdrawal worker killed (SIGKILL) mid-task and another started: the task is redelivered
//! and completes exactly once — one payout at the provider, one debit in the wallet — and a
//! deferred task queued before the kill runs at its time on the new worker (DESIGN §9).
//!
//! command-api (with its relay) and the simulated payout provider run in-process; the workers
//! run as the real binary, child processes, so they can be killed.

use anyhow::{Context as _, bail};
use infra::{config::CooldownPolicyConfig, ledger::Ledger, testing::TestEnv};
use payout_provider::{PayoutStatus, Provider, Settings};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    future::Future,
    process::{Child, Command},
    time::{Duration, Instant},
};
use tokio::sync::watch;
use uuid::Uuid;

/// The worker binary on `env`, paying out through `provider_url`; killed when dropped.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(env: &TestEnv, provider_url: &str) -> anyhow::Result<Self> {
        let child = Command::new(env!("CARGO_BIN_EXE_withdrawal-worker"))
            .envs(env.process_env())
            .env("WORKUP_WITHDRAWAL_WORKER_PORT", "0")
            .env("WORKUP_WITHDRAWAL_LEASE_SECS", "2")
            .env("WORKUP_WITHDRAWAL_POLL_MS", "100")
            .env("WORKUP_PAYOUT_PROVIDER_URL", provider_url)
            .env(
                "RUST_LOG",
                std::env::var("WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()?;
        Ok(Self(child))
    }

    fn kill(mut self) -> anyhow::Result<()> {
        self.0.kill()?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn eventually<F, Fut>(what: &str, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(40);
    while !probe().await? {
        if Instant::now() > deadline {
            bail!("{what}: not within 40 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// POST `body` to `url` as `token`; the JSON answer, which must have `status`.
async fn post(
    http: &Client,
    url: &str,
    token: Option<&str>,
    body: Value,
    status: StatusCode,
) -> anyhow::Result<Value> {
    let mut request = http.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await?;
    let actual = answer.status();
    let body: Value = answer.json().await?;
    if actual != status {
        bail!("POST {url}: expected {status}, got {actual}: {body}");
    }
    Ok(body)
}

/// How many events of `event_type` stream `stream_id` holds.
async fn count(ledger: &Ledger, stream_id: Uuid, event_type: &str) -> anyhow::Result<usize> {
    Ok(ledger
        .read_stream(stream_id, 1)
        .await?
        .iter()
        .filter(|e| e.event_type == event_type)
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_payout_is_replaced_and_the_withdrawal_completes_exactly_once()
-> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.config.withdrawals.cooldown_policy = CooldownPolicyConfig::Defer;
    env.config.withdrawals.cooldown_secs = 4;
    let ledger = env.ledger().await?;

    // The provider takes 3 s per payout: long enough to kill the worker while it waits.
    let provider = Provider::new(Settings {
        latency: Duration::from_secs(3),
        ..Settings::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let provider_url = format!("http://{}", listener.local_addr()?);
    let provider_server = tokio::spawn(provider.clone().serve(listener));

    let app = command_api::startup::Application::build(env.config.clone()).await?;
    let api = format!("http://127.0.0.1:{}/api/v1", app.port());
    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.changed().await;
    }));
    let http = Client::builder().timeout(Duration::from_secs(30)).build()?;

    let email = format!("wanda-{}@example.com", Uuid::new_v4().simple());
    let credentials = json!({"email": email, "password": "correct horse battery", "name": "Wanda"});
    let user = post(
        &http,
        &format!("{api}/users/freelancers/register"),
        None,
        credentials.clone(),
        StatusCode::CREATED,
    )
    .await?;
    let wallet_id = domain::WalletId::for_user(domain::UserId::from_uuid(
        user["id"].as_str().context("user id")?.parse()?,
    ))
    .as_uuid();
    let login = post(
        &http,
        &format!("{api}/users/login"),
        None,
        credentials,
        StatusCode::OK,
    )
    .await?;
    let token = login["access_token"].as_str().context("token")?.to_owned();
    let amount = |minor: i64| json!({"amount": {"minor": minor, "currency": "USD"}});
    post(
        &http,
        &format!("{api}/payments/wallet/deposits"),
        Some(&token),
        amount(5_000),
        StatusCode::OK,
    )
    .await?;

    let first_worker = WorkerProcess::start(&env, &provider_url)?;
    let withdrawals = format!("{api}/payments/wallet/withdrawals");
    let now = post(
        &http,
        &withdrawals,
        Some(&token),
        amount(1_200),
        StatusCode::ACCEPTED,
    )
    .await?;
    let later = post(
        &http,
        &withdrawals,
        Some(&token),
        amount(800),
        StatusCode::ACCEPTED,
    )
    .await?;
    assert_eq!(
        (now["status"].as_str(), later["status"].as_str()),
        (Some("pending"), Some("scheduled"))
    );
    let first: Uuid = now["id"].as_str().context("id")?.parse()?;
    let second: Uuid = later["id"].as_str().context("id")?.parse()?;

    // Both tasks are queued, and the first worker is waiting on the provider for the first.
    eventually("both tasks queued", || async {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM withdrawal_tasks")
            .fetch_one(&ledger.pool())
            .await?;
        Ok(queued == 2)
    })
    .await?;
    eventually("the first payout requested", || async {
        Ok(provider.payout(first).is_some())
    })
    .await?;
    first_worker.kill()?;
    assert_eq!(count(&ledger, first, "WithdrawalStarted").await?, 1);
    assert_eq!(count(&ledger, first, "WithdrawalSucceeded").await?, 0);

    let _second_worker = WorkerProcess::start(&env, &provider_url)?;
    for id in [first, second] {
        eventually("the withdrawal succeeded", || async {
            Ok(count(&ledger, id, "WithdrawalSucceeded").await? == 1)
        })
        .await?;
    }
    // Let a duplicate, if there were to be one, land before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stats = provider.stats();
    assert_eq!((stats.paid, stats.paid_minor), (2, 2_000), "{stats:?}");
    let payout = provider.payout(first).context("first payout")?;
    assert_eq!(payout.status, PayoutStatus::Paid);
    assert!(
        payout.requests >= 2,
        "the redelivered task asked the provider again: {payout:?}"
    );
    for id in [first, second] {
        assert_eq!(count(&ledger, id, "WithdrawalStarted").await?, 1, "{id}");
        assert_eq!(count(&ledger, id, "WithdrawalSucceeded").await?, 1, "{id}");
    }
    assert_eq!(count(&ledger, wallet_id, "FundsWithdrawn").await?, 2);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM withdrawal_tasks WHERE withdrawal_id = $1")
        .bind(first)
        .fetch_one(&ledger.pool())
        .await?;
    assert!(attempts >= 2, "attempts {attempts}");
    // The deferred one ran at its time, on the new worker.
    let started: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT started_at FROM withdrawal_tasks WHERE withdrawal_id = $1")
            .bind(second)
            .fetch_one(&ledger.pool())
            .await?;
    let slot: chrono::DateTime<chrono::Utc> = later["scheduled_for"].as_str().context("slot")?.parse()?;
    assert!(started >= slot, "started {started} before its slot {slot}");

    let _ = stop.send(true);
    server.await??;
    provider_server.abort();
    Ok(())
}
