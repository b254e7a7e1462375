//! read_your_writes: how long a read carrying a write's consistency token takes (issue 9,
//! DESIGN §6), on the whole platform started in-process on one fresh database, topic prefix,
//! keyspace, Mongo database and Redis prefix.
//!
//! Each measured write goes to command-api and is followed at once by the read of what it wrote
//! on query-api, with `X-Consistency-Position: <the write's token>`. Per write it records
//! (a) the write's latency, (b) the read's latency (from sending it to its 200: the wait for the
//! projector included) and (c) write-to-visible, the two together; it checks that the read shows
//! the written version, and counts reads that gave up (504: the projector had not applied the
//! write within the bound) — a healthy run has none. Scenarios:
//!
//! - `job-updates` (default): `PUT /api/v1/jobs/{id}` over a few jobs of each writer in turn,
//!   read with `GET /api/v1/jobs/{id}` (a cached read: the cache answers only a version at least
//!   the token's);
//! - `job-posts`: `POST /api/v1/jobs`, read with `GET /api/v1/jobs/{id}`;
//! - `deposits`: `POST /api/v1/payments/wallet/deposits`, read with `GET /api/v1/payments/wallet`.
//!
//! Writers run one write-then-read after another; `--concurrency C` runs C such writers at once,
//! each a client of its own (its own jobs, its own wallet). Before measuring, each writer's setup
//! writes (its jobs, its wallet's first deposit) are read back, so the projectors' consumers have
//! joined their groups. The run exits non-zero after the table if any read gave up, showed an
//! older version or failed.
//!
//! Run with `bash scripts/infra.sh up` first, then
//! `cargo run --release -p scenarios --bin read_your_writes -- --help`.

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Client, Method, StatusCode};
use scenarios::harness::Platform;
use scenarios::measure::{ms, percentile};
use serde_json::{Value, json};
use std::{
    fmt,
    io::IsTerminal as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use uuid::Uuid;

/// What to measure, and how much.
#[derive(Debug, Parser)]
#[command(
    about = "Measures read-your-writes: a read with a write's consistency token, right after the write"
)]
struct Args {
    /// Measured writes per scenario, each followed at once by its read.
    #[arg(long, default_value_t = 1_000)]
    writes: usize,
    /// Writers at once, each a client of its own; 1 is strictly sequential.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Scenarios to run, in this order.
    #[arg(long, value_delimiter = ',', default_value = "job-updates")]
    scenarios: Vec<Scenario>,
    /// Jobs each writer updates in turn (`job-updates`).
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Bound of a read's wait for its token, ms (the services' WORKUP_CONSISTENCY_WAIT_MS);
    /// past it the read answers 504.
    #[arg(long, default_value_t = 2_000)]
    consistency_wait_ms: u64,
    /// Kafka fetch wait of the consumers, ms (the services' WORKUP_KAFKA_FETCH_WAIT_MS; the
    /// test environment's own is 10).
    #[arg(long, default_value_t = 50)]
    fetch_wait_ms: u32,
}

/// A kind of write and the read that shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `PUT /api/v1/jobs/{id}`, then `GET /api/v1/jobs/{id}`.
    JobUpdates,
    /// `POST /api/v1/jobs`, then `GET /api/v1/jobs/{id}`.
    JobPosts,
    /// `POST /api/v1/payments/wallet/deposits`, then `GET /api/v1/payments/wallet`.
    Deposits,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::JobUpdates => "job-updates",
            Self::JobPosts => "job-posts",
            Self::Deposits => "deposits",
        })
    }
}

/// The two APIs, shareable across writer tasks.
#[derive(Clone)]
struct Api {
    http: Client,
    command_url: String,
    query_url: String,
}

/// What a write answered.
struct Written {
    /// The created or changed resource.
    id: String,
    /// Its consistency token.
    position: String,
}

impl Api {
    fn from(platform: &Platform) -> Self {
        Self {
            http: platform.http.clone(),
            command_url: platform.command_url.clone(),
            query_url: platform.query_url.clone(),
        }
    }

    /// Register a client and log in; its access token.
    async fn client(&self, n: usize) -> anyhow::Result<String> {
        let email = format!("ryw-{n}-{}@example.com", Uuid::new_v4().simple());
        let password = "correct horse battery";
        let body = json!({"email": email, "password": password, "name": format!("writer {n}")});
        let answer = self
            .http
            .post(format!("{}/api/v1/users/clients/register", self.command_url))
            .json(&body)
            .send()
            .await?;
        json_of(answer, StatusCode::CREATED).await?;
        let answer = self
            .http
            .post(format!("{}/api/v1/users/login", self.command_url))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        let login = json_of(answer, StatusCode::OK).await?;
        Ok(login["access_token"]
            .as_str()
            .context("login answered no access_token")?
            .to_owned())
    }

    /// Send a write as the bearer of `token`; it must answer `status`.
    async fn write(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: &Value,
        status: StatusCode,
    ) -> anyhow::Result<Written> {
        let answer = self
            .http
            .request(method, format!("{}{path}", self.command_url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await?;
        let header = answer
            .headers()
            .get("x-consistency-position")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = json_of(answer, status).await.with_context(|| path.to_owned())?;
        let position = match header {
            Some(position) => position,
            None => body["position"]
                .as_str()
                .context("the write answered no consistency token")?
                .to_owned(),
        };
        Ok(Written {
            id: body["id"]
                .as_str()
                .context("the write answered no id")?
                .to_owned(),
            position,
        })
    }

    /// GET `path` from query-api as the bearer of `token`, after `position`; the status and the
    /// body (read in full).
    async fn read(&self, path: &str, token: &str, position: &str) -> anyhow::Result<(StatusCode, String)> {
        let answer = self
            .http
            .get(format!("{}{path}", self.query_url))
            .bearer_auth(token)
            .header("x-consistency-position", position)
            .send()
            .await?;
        let status = answer.status();
        Ok((status, answer.text().await?))
    }

    /// Read `path` after `position` until it answers 200, through 504s (the projectors'
    /// consumers are still joining their groups): setup writes, not measured.
    async fn settle(&self, path: &str, token: &str, position: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.read(path, token, position).await?;
            match status {
                StatusCode::OK => return Ok(()),
                StatusCode::GATEWAY_TIMEOUT if Instant::now() < deadline => {}
                _ => bail!("settling {path}: {status}: {body}"),
            }
        }
    }
}

/// The JSON body of `answer`, which must have `status`.
async fn json_of(answer: reqwest::Response, status: StatusCode) -> anyhow::Result<Value> {
    let actual = answer.status();
    let text = answer.text().await?;
    if actual != status {
        bail!("expected {status}, got {actual}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))
}

/// The version `token` (`type:id:version,...`) names for stream `id`.
fn version_in(token: &str, id: &str) -> anyhow::Result<i64> {
    token
        .split(',')
        .filter_map(|p| {
            let mut parts = p.trim().splitn(3, ':');
            let (_, stream, version) = (parts.next()?, parts.next()?, parts.next()?);
            (stream == id).then(|| version.parse().ok()).flatten()
        })
        .max()
        .with_context(|| format!("token `{token}` names no version of {id}"))
}

fn job_body(title: &str) -> Value {
    json!({"title": title, "description": "Measured by read_your_writes", "budget": {"minor": 50_000, "currency": "USD"}, "skills": ["weaving"]})
}

fn deposit_body() -> Value {
    json!({"amount": {"minor": 100, "currency": "USD"}})
}

/// One writer: a client and, for `job-updates`, its jobs.
struct Writer {
    token: String,
    jobs: Vec<String>,
}

/// Sign up a writer and make (and read back) what `scenario` writes on.
async fn writer(api: &Api, n: usize, scenario: Scenario, jobs: usize) -> anyhow::Result<Writer> {
    let token = api.client(n).await?;
    let mut own = Vec::new();
    match scenario {
        Scenario::JobUpdates | Scenario::JobPosts => {
            let count = if scenario == Scenario::JobUpdates {
                jobs.max(1)
            } else {
                1
            };
            for j in 0..count {
                let body = job_body(&format!("Loom {n}.{j}"));
                let posted = api
                    .write(Method::POST, "/api/v1/jobs", &token, &body, StatusCode::CREATED)
                    .await?;
                api.settle(&format!("/api/v1/jobs/{}", posted.id), &token, &posted.position)
                    .await?;
                own.push(posted.id);
            }
        }
        Scenario::Deposits => {
            let deposit = api
                .write(
                    Method::POST,
                    "/api/v1/payments/wallet/deposits",
                    &token,
                    &deposit_body(),
                    StatusCode::OK,
                )
                .await?;
            api.settle("/api/v1/payments/wallet", &token, &deposit.position)
                .await?;
        }
    }
    Ok(Writer { token, jobs: own })
}

/// How a measured read ended.
enum Outcome {
    /// 200 showing the written version (or a later one).
    Visible,
    /// 200 showing an older version: read-your-writes broken.
    Stale,
    /// 504: the projector had not applied the write within the bound.
    GaveUp,
    /// Anything else.
    Failed(String),
}

/// One measured write and its read.
struct Sample {
    write: Duration,
    read: Duration,
    outcome: Outcome,
}

/// The `n`th write of `writer` (from 0) and its read.
async fn write_then_read(api: &Api, scenario: Scenario, writer: &Writer, n: usize) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let (written, read_path) = match scenario {
        Scenario::JobUpdates => {
            let job = &writer.jobs[n % writer.jobs.len()];
            let path = format!("/api/v1/jobs/{job}");
            let body = job_body(&format!("Loom, revision {n}"));
            let written = api
                .write(Method::PUT, &path, &writer.token, &body, StatusCode::OK)
                .await?;
            (written, path)
        }
        Scenario::JobPosts => {
            let body = job_body(&format!("Loom number {n}"));
            let written = api
                .write(
                    Method::POST,
                    "/api/v1/jobs",
                    &writer.token,
                    &body,
                    StatusCode::CREATED,
                )
                .await?;
            let path = format!("/api/v1/jobs/{}", written.id);
            (written, path)
        }
        Scenario::Deposits => {
            let written = api
                .write(
                    Method::POST,
                    "/api/v1/payments/wallet/deposits",
                    &writer.token,
                    &deposit_body(),
                    StatusCode::OK,
                )
                .await?;
            (written, "/api/v1/payments/wallet".to_owned())
        }
    };
    let write = started.elapsed();
    let reading = Instant::now();
    let (status, body) = api.read(&read_path, &writer.token, &written.position).await?;
    let read = reading.elapsed();
    let outcome = match status {
        StatusCode::OK => {
            let wanted = version_in(&written.position, &written.id)?;
            let seen: Value = serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
            match seen["version"].as_i64() {
                Some(version) if version >= wanted => Outcome::Visible,
                _ => Outcome::Stale,
            }
        }
        StatusCode::GATEWAY_TIMEOUT => Outcome::GaveUp,
        other => Outcome::Failed(format!("{read_path}: {other}: {body}")),
    };
    Ok(Sample { write, read, outcome })
}

/// Progress of a scenario: a bar on a terminal, a plain line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(total: u64, what: String) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total).with_message(what.clone());
            if let Ok(style) =
                ProgressStyle::with_template("   {msg:<28} [{bar:30}] {pos}/{len} {per_sec} {elapsed}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            what,
            total,
            done: AtomicU64::new(0),
            started: now,
            last_line: Mutex::new(now),
        }
    }

    fn inc(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            return;
        }
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        if last.elapsed() >= Self::EVERY {
            *last = Instant::now();
            let elapsed = self.started.elapsed().as_secs_f64();
            println!(
                "   {}: {done}/{} writes read back, {:.1} s, {:.1}/s",
                self.what,
                self.total,
                elapsed,
                done as f64 / elapsed
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The measurements of one scenario.
struct Report {
    scenario: Scenario,
    concurrency: usize,
    elapsed: Duration,
    writes: Vec<Duration>,
    reads: Vec<Duration>,
    visible: Vec<Duration>,
    gave_up: usize,
    stale: usize,
    failed: Vec<String>,
}

impl Report {
    fn healthy(&self) -> bool {
        self.gave_up == 0 && self.stale == 0 && self.failed.is_empty()
    }
}

/// Run `scenario`: set up the writers, then `args.writes` measured writes spread over them.
async fn run(api: &Api, scenario: Scenario, args: &Args) -> anyhow::Result<Report> {
    let concurrency = args.concurrency.max(1);
    println!("\n{scenario}: setting up {concurrency} writer(s)");
    let mut writers = Vec::with_capacity(concurrency);
    for n in 0..concurrency {
        writers.push(writer(api, n, scenario, args.jobs).await?);
    }
    println!(
        "{scenario}: {} writes, each read back at once with its token, {concurrency} at a time",
        args.writes
    );
    let progress = Arc::new(Progress::new(args.writes as u64, scenario.to_string()));
    let started = Instant::now();
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, writer)| {
            // Writer w makes writes w, w + C, w + 2C, … of the run.
            let count = (w..args.writes).step_by(concurrency).count();
            let (api, progress) = (api.clone(), progress.clone());
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(count);
                for n in 0..count {
                    samples.push(write_then_read(&api, scenario, &writer, n).await?);
                    progress.inc();
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(args.writes);
    for task in tasks {
        samples.extend(task.await??);
    }
    let elapsed = started.elapsed();
    progress.finish();

    let mut report = Report {
        scenario,
        concurrency,
        elapsed,
        writes: Vec::with_capacity(samples.len()),
        reads: Vec::with_capacity(samples.len()),
        visible: Vec::with_capacity(samples.len()),
        gave_up: 0,
        stale: 0,
        failed: Vec::new(),
    };
    for sample in samples {
        report.writes.push(sample.write);
        match sample.outcome {
            Outcome::Visible => {
                report.reads.push(sample.read);
                report.visible.push(sample.write + sample.read);
            }
            Outcome::Stale => report.stale += 1,
            Outcome::GaveUp => report.gave_up += 1,
            Outcome::Failed(why) => report.failed.push(why),
        }
    }
    for latencies in [&mut report.writes, &mut report.reads, &mut report.visible] {
        latencies.sort_unstable();
    }
    Ok(report)
}

fn print_table(reports: &[Report], wait_ms: u64) {
    println!("\nlatency, ms (reads and write-to-visible: reads that answered 200 with the write)");
    println!(
        "{:<12} {:>5}  {:<18} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "scenario", "conc", "measure", "n", "p50", "p90", "p99", "max"
    );
    for report in reports {
        for (measure, values) in [
            ("write", &report.writes),
            ("read with token", &report.reads),
            ("write-to-visible", &report.visible),
        ] {
            println!(
                "{:<12} {:>5}  {:<18} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                report.scenario.to_string(),
                report.concurrency,
                measure,
                values.len(),
                ms(percentile(values, 50.0)),
                ms(percentile(values, 90.0)),
                ms(percentile(values, 99.0)),
                ms(values.last().copied().unwrap_or_default()),
            );
        }
    }
    println!("\noutcomes (504: not applied within the {wait_ms} ms bound; stale: 200 with an older version)");
    println!(
        "{:<12} {:>5}  {:>7} {:>9} {:>10} {:>6} {:>6} {:>7}",
        "scenario", "conc", "writes", "seconds", "writes/s", "504s", "stale", "errors"
    );
    for report in reports {
        println!(
            "{:<12} {:>5}  {:>7} {:>9.1} {:>10.1} {:>6} {:>6} {:>7}",
            report.scenario.to_string(),
            report.concurrency,
            report.writes.len(),
            report.elapsed.as_secs_f64(),
            report.writes.len() as f64 / report.elapsed.as_secs_f64(),
            report.gave_up,
            report.stale,
            report.failed.len(),
        );
        for why in report.failed.iter().take(5) {
            println!("   {}: {why}", report.scenario);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.writes > 0, "--writes must be at least 1");
    let (wait_ms, fetch_wait_ms) = (args.consistency_wait_ms, args.fetch_wait_ms);
    let platform = Platform::start_with(|config| {
        config.http.consistency_wait_ms = wait_ms;
        config.kafka.fetch_wait_ms = fetch_wait_ms;
    })
    .await?;
    println!(
        "read_your_writes on database {}, topics {}.* (consistency wait {wait_ms} ms, fetch wait {fetch_wait_ms} ms)",
        platform.env.namespace, platform.env.config.kafka.topic_prefix
    );
    let api = Api::from(&platform);
    let mut reports = Vec::with_capacity(args.scenarios.len());
    for &scenario in &args.scenarios {
        reports.push(run(&api, scenario, &args).await?);
    }
    print_table(&reports, wait_ms);
    platform.stop().await?;
    let unhealthy: Vec<String> = reports
        .iter()
        .filter(|r| !r.healthy())
        .map(|r| r.scenario.to_string())
        .collect();
    if !unhealthy.is_empty() {
        bail!("not a healthy run: {}", unhealthy.join(", "));
    }
    Ok(())
}
