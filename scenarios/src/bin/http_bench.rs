//! http_bench: a full command over HTTP (issue 15): `POST /api/v1/jobs` to a release command-api
//! running as its own process, loaded from this process over `--connections` connections for
//! `--seconds`, beside the raw INSERT rate of the same database measured in the same run.
//!
//! Run with `bash scripts/infra.sh up` first, then
//! `cargo build --release -p command-api -p scenarios && target/release/http_bench`.

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use infra::testing::TestEnv;
use scenarios::measure::{ms, percentile};
use serde_json::{Value, json};
use std::{
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// How much load, for how long.
#[derive(Debug, Parser)]
#[command(about = "Measures POST /jobs over HTTP against a release command-api, beside a raw INSERT")]
struct Args {
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Length of the measured load, seconds (after a warm-up of 3 s).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Raw INSERTs for the comparison (by as many writers as connections).
    #[arg(long, default_value_t = 20_000)]
    inserts: usize,
    /// The command-api binary (default: next to this one).
    #[arg(long)]
    command_api: Option<std::path::PathBuf>,
    /// The relay's `linger.ms` in command-api (`WORKUP_RELAY_LINGER_MS`; default: the services').
    #[arg(long)]
    relay_linger_ms: Option<u32>,
}

/// The command-api child process, killed when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The services' default pool (16 connections) for command-api and the raw INSERTs alike.
    let mut env = TestEnv::new().await?;
    if let Some(linger) = args.relay_linger_ms {
        env.config.kafka.relay_linger_ms = linger;
    }
    let binary = match &args.command_api {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("command-api"),
    };
    ensure!(
        binary.exists(),
        "{} not found: cargo build --release -p command-api",
        binary.display()
    );
    let port = free_port()?;
    let _service = Service(
        Command::new(&binary)
            .envs(env.process_env())
            .env("WORKUP_ENV", "dev")
            .env("WORKUP_COMMAND_API_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    wait_ready(&http, &base).await?;
    println!(
        "http_bench: {} (release, own process, database {}, relay linger {} ms), {} connections",
        binary.display(),
        env.namespace,
        env.config.kafka.relay_linger_ms,
        args.connections
    );

    let token = client_token(&http, &base).await?;
    // Encoded once, as a load tool sends a fixed body: the load's CPU is the machine's too.
    let body = serde_json::to_vec(&json!({"title": "Build a loom", "description": "Jacquard style",
                      "budget": {"minor": 50_000, "currency": "USD"}, "skills": ["weaving"]}))?;

    let warm_up = Instant::now() + Duration::from_secs(3);
    let stop_at = warm_up + Duration::from_secs(args.seconds);
    let bar = ProgressBar::new(args.seconds);
    if let Ok(style) = ProgressStyle::with_template("   POST /jobs [{bar:30}] {pos}/{len} s {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (http, url, token, body) = (
                http.clone(),
                format!("{base}/api/v1/jobs"),
                token.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                while Instant::now() < stop_at {
                    let sent = Instant::now();
                    let answer = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let took = sent.elapsed();
                    match answer {
                        Ok(response) if response.status().as_u16() == 201 => {
                            if sent >= warm_up {
                                latencies.push(took);
                            }
                        }
                        Ok(response) => {
                            let status = response.status();
                            errors.push(format!("{status}: {}", response.text().await.unwrap_or_default()));
                        }
                        Err(error) => errors.push(error.to_string()),
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let ticker = tokio::spawn({
        let bar = bar.clone();
        async move {
            tokio::time::sleep_until(warm_up.into()).await;
            while Instant::now() < stop_at {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        }
    });
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for worker in workers {
        let (of_worker, failed) = worker.await?;
        latencies.extend(of_worker);
        errors.extend(failed);
    }
    let errors_seen = errors.len();
    ticker.abort();
    bar.finish_and_clear();
    latencies.sort_unstable();
    let rate = latencies.len() as f64 / args.seconds as f64;

    let raw = raw_inserts(&env, args.connections, args.inserts).await?;
    println!(
        "{:>26} {:>10} {:>8} {:>10} {:>10} {:>8}",
        "target", "ops/s", "x raw", "p50 ms", "p99 ms", "errors"
    );
    println!(
        "{:>26} {rate:>10.0} {:>8.2} {:>10.2} {:>10.2} {errors_seen:>8}",
        "POST /api/v1/jobs (HTTP)",
        rate / raw.0,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
    );
    println!(
        "{:>26} {:>10.0} {:>8.2} {:>10.2} {:>10.2} {:>8}",
        "raw INSERT",
        raw.0,
        1.0,
        ms(percentile(&raw.1, 50.0)),
        ms(percentile(&raw.1, 99.0)),
        0
    );
    ensure!(
        errors.is_empty(),
        "{errors_seen} requests failed, the first: {}",
        errors.first().map(String::as_str).unwrap_or_default()
    );
    Ok(())
}

/// Register a client and log in; its access token.
async fn client_token(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let email = format!("bench-{}@example.com", Uuid::now_v7().simple());
    let user = json!({"email": email, "password": "correct horse battery", "name": "Bench Client"});
    let registered = http
        .post(format!("{base}/api/v1/users/clients/register"))
        .json(&user)
        .send()
        .await?;
    ensure!(
        registered.status().as_u16() == 201,
        "register: {}",
        registered.status()
    );
    let login: Value = http
        .post(format!("{base}/api/v1/users/login"))
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(login["access_token"]
        .as_str()
        .context("no access token")?
        .to_owned())
}

/// `count` raw INSERTs of a job-sized row into a plain table by `writers` concurrent writers:
/// the rate and the latencies.
async fn raw_inserts(env: &TestEnv, writers: usize, count: usize) -> anyhow::Result<(f64, Vec<Duration>)> {
    let ledger = env.ledger().await?;
    let pool = ledger.pool();
    sqlx::query(
        "CREATE TABLE raw_events (stream_id uuid NOT NULL, version bigint NOT NULL, event_type text NOT NULL,
             schema_version int NOT NULL, payload jsonb NOT NULL, metadata jsonb NOT NULL,
             recorded_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    let per_writer = count.div_ceil(writers);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_writer);
                for _ in 0..per_writer {
                    let at = Instant::now();
                    sqlx::query(
                        "INSERT INTO raw_events (stream_id, version, event_type, schema_version, payload, metadata)
                         VALUES ($1, 1, 'JobPosted', 1, $2, $3)",
                    )
                    .bind(Uuid::now_v7())
                    .bind(json!({"type": "JobPosted", "title": "Build a loom", "description": "Jacquard style",
                                 "budget": {"minor": 50_000, "currency": "USD"}, "skills": ["weaving"]}))
                    .bind(json!({"command_id": Uuid::now_v7(), "correlation_id": Uuid::now_v7()}))
                    .execute(&pool)
                    .await?;
                    latencies.push(at.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(per_writer * writers);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok((rate, latencies))
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(answer) = http.get(format!("{base}/ready")).send().await
            && answer.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("command-api not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
