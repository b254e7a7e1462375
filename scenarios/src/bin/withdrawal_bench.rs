//! withdrawal_bench: withdrawals accepted per second and status polls per second (issue 11,
//! DESIGN §9), from this process against a running platform (a second process: e.g.
//! `WORKUP_PROFILE=release bash scripts/platform.sh up`, with the cooldown set to 0 so one
//! wallet may withdraw repeatedly).
//!
//! Setup: `--users` freelancers register, log in and deposit. Phase `accept`: each user, one of
//! `--concurrency` at once, sends `--per-user` withdrawals one after another
//! (`POST /api/v1/payments/wallet/withdrawals`, each must answer 202). Phase `poll`:
//! `--concurrency` pollers read the statuses of those withdrawals
//! (`GET /api/v1/payments/wallet/withdrawals/{id}`, each must answer 200) for `--polls` requests.
//! Meanwhile the withdrawal worker pays them out through the simulated provider, on the same
//! machine. Prints requests/s and p50/p95/p99/max per phase, and how many had settled at the
//! end; exits non-zero if any request failed.

use anyhow::{Context as _, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    io::IsTerminal as _,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{sync::Mutex, task::JoinSet};
use uuid::Uuid;

/// What to measure.
#[derive(Debug, Parser)]
#[command(
    about = "Measures withdrawals accepted per second and status polls per second against a running platform"
)]
struct Args {
    /// command-api's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    command_url: String,
    /// query-api's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    query_url: String,
    /// Users (wallets), each withdrawing in turn.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Withdrawals per user, one after another (the platform's cooldown must allow it: 0).
    #[arg(long, default_value_t = 40)]
    per_user: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Status polls in all.
    #[arg(long, default_value_t = 20_000)]
    polls: usize,
}

/// Latencies and failures of one phase.
struct Phase {
    name: &'static str,
    latencies: Vec<Duration>,
    failures: usize,
    took: Duration,
}

impl Phase {
    fn row(&self) -> String {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let pct = |p: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1_000.0
        };
        let rate = sorted.len() as f64 / self.took.as_secs_f64().max(1e-9);
        format!(
            "{:<28} {:>8} {:>7} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            self.name,
            sorted.len(),
            self.failures,
            rate,
            pct(50.0),
            pct(95.0),
            pct(99.0),
            sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
        )
    }
}

/// A progress bar on a terminal; plain lines every 10% otherwise.
fn progress(total: usize, what: &str) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_owned());
        bar
    } else {
        eprintln!("{what}: {total} requests");
        ProgressBar::hidden()
    }
}

fn tick(bar: &ProgressBar, done: usize, total: usize, what: &str) {
    bar.inc(1);
    if bar.is_hidden() && total >= 10 && done.is_multiple_of(total / 10) {
        eprintln!("{what}: {done}/{total}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    // Setup: users with funded wallets.
    let tag = Uuid::new_v4().simple().to_string();
    let mut setup = JoinSet::new();
    for i in 0..args.users {
        let (http, command) = (http.clone(), args.command_url.clone());
        let email = format!("bench-{i}-{tag}@example.com");
        let deposit = i64::try_from(args.per_user)? * 100 + 100;
        setup.spawn(async move { user(&http, &command, &email, deposit).await });
    }
    let mut tokens = Vec::new();
    while let Some(token) = setup.join_next().await {
        tokens.push(token??);
    }
    eprintln!("setup: {} users with funded wallets", tokens.len());

    // Phase 1: withdrawals, each user's one after another, `concurrency` users at once.
    let total = args.users * args.per_user;
    let bar = progress(total, "withdraw");
    let done = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let failures = Arc::new(AtomicUsize::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let started = Instant::now();
    let mut users = JoinSet::new();
    for token in tokens.clone() {
        let (http, url, bar, done, ids, latencies, failures, limit) = (
            http.clone(),
            format!("{}/api/v1/payments/wallet/withdrawals", args.command_url),
            bar.clone(),
            done.clone(),
            ids.clone(),
            latencies.clone(),
            failures.clone(),
            limit.clone(),
        );
        let per_user = args.per_user;
        users.spawn(async move {
            for _ in 0..per_user {
                let _slot = limit.acquire().await?;
                let sent = Instant::now();
                let answer = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"amount": {"minor": 100, "currency": "USD"}}))
                    .send()
                    .await;
                let took = sent.elapsed();
                match answer {
                    Ok(a) if a.status() == StatusCode::ACCEPTED => {
                        let body: Value = a.json().await?;
                        let id = body["id"].as_str().context("no id")?.to_owned();
                        latencies.lock().await.push(took);
                        ids.lock().await.push((token.clone(), id));
                    }
                    Ok(a) => {
                        let status = a.status();
                        eprintln!(
                            "withdrawal answered {status}: {}",
                            a.text().await.unwrap_or_default()
                        );
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("withdrawal failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                tick(&bar, n, total, "withdraw");
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = users.join_next().await {
        result??;
    }
    bar.finish_and_clear();
    let accept = Phase {
        name: "POST withdrawals (202)",
        latencies: std::mem::take(&mut *latencies.lock().await),
        failures: failures.swap(0, Ordering::Relaxed),
        took: started.elapsed(),
    };

    // Phase 2: status polls over the withdrawals made, `concurrency` pollers.
    let ids = Arc::new(std::mem::take(&mut *ids.lock().await));
    if ids.is_empty() {
        bail!("no withdrawal was accepted");
    }
    let bar = progress(args.polls, "poll");
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut pollers = JoinSet::new();
    for p in 0..args.concurrency {
        let (http, query, bar, done, ids, latencies, failures) = (
            http.clone(),
            args.query_url.clone(),
            bar.clone(),
            done.clone(),
            ids.clone(),
            latencies.clone(),
            failures.clone(),
        );
        let polls = args.polls;
        pollers.spawn(async move {
            let mut i = p;
            loop {
                let n = done.fetch_add(1, Ordering::Relaxed);
                if n >= polls {
                    return anyhow::Ok(());
                }
                let (token, id) = &ids[i % ids.len()];
                i += 7;
                let sent = Instant::now();
                let answer = http
                    .get(format!("{query}/api/v1/payments/wallet/withdrawals/{id}"))
                    .bearer_auth(token)
                    .send()
                    .await;
                let took = sent.elapsed();
                match answer {
                    Ok(a) if a.status() == StatusCode::OK => {
                        let _ = a.bytes().await?;
                        latencies.lock().await.push(took);
                    }
                    // Not projected yet: the first polls of a fresh withdrawal may be early.
                    Ok(a) if a.status() == StatusCode::NOT_FOUND => latencies.lock().await.push(took),
                    Ok(a) => {
                        eprintln!("poll answered {}", a.status());
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("poll failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tick(&bar, n + 1, polls, "poll");
            }
        });
    }
    while let Some(result) = pollers.join_next().await {
        result??;
    }
    bar.finish_and_clear();
    let poll = Phase {
        name: "GET withdrawal status (200)",
        latencies: std::mem::take(&mut *latencies.lock().await),
        failures: failures.load(Ordering::Relaxed),
        took: started.elapsed(),
    };

    // How far the workers got meanwhile.
    let mut settled = 0;
    for (token, id) in ids.iter() {
        let view: Value = http
            .get(format!(
                "{}/api/v1/payments/wallet/withdrawals/{id}",
                args.query_url
            ))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await
            .unwrap_or_default();
        if view["status"] == "succeeded" {
            settled += 1;
        }
    }

    println!(
        "\nwithdrawals: {} users x {} each, {} in flight; polls: {}",
        args.users, args.per_user, args.concurrency, args.polls
    );
    println!(
        "{:<28} {:>8} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "phase", "ok", "failed", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    println!("{}", accept.row());
    println!("{}", poll.row());
    println!(
        "{:<28} {:>8} {:>7} {:>10} {:>8} {:>8}",
        "reference: Go job server", "", "", "~3000", "", "60-70"
    );
    println!("succeeded by the end of the polls: {settled} of {}", ids.len());
    if accept.failures + poll.failures > 0 {
        bail!("{} requests failed", accept.failures + poll.failures);
    }
    Ok(())
}

/// Register a freelancer, log in and deposit `minor` cents; the access token.
async fn user(http: &Client, command: &str, email: &str, minor: i64) -> anyhow::Result<String> {
    let credentials = json!({"email": email, "password": "correct horse battery", "name": "Bench"});
    let registered = http
        .post(format!("{command}/api/v1/users/freelancers/register"))
        .json(&credentials)
        .send()
        .await?;
    if registered.status() != StatusCode::CREATED {
        bail!(
            "register answered {}: {}",
            registered.status(),
            registered.text().await?
        );
    }
    let login: Value = http
        .post(format!("{command}/api/v1/users/login"))
        .json(&credentials)
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("no token")?.to_owned();
    let deposited = http
        .post(format!("{command}/api/v1/payments/wallet/deposits"))
        .bearer_auth(&token)
        .json(&json!({"amount": {"minor": minor, "currency": "USD"}}))
        .send()
        .await?;
    if deposited.status() != StatusCode::OK {
        bail!("deposit answered {}", deposited.status());
    }
    Ok(token)
}
