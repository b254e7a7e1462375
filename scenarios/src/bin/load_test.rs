//! load_test: the marketplace under load, with goose (issue "Production shape"), from this process
//! against a running platform (e.g. `WORKUP_PROFILE=release WORKUP_WITHDRAWAL_COOLDOWN_SECS=0
//! WORKUP_AUTH_RATE_PER_ADDRESS=100000 bash scripts/platform.sh up`: every virtual user signs in
//! from 127.0.0.1, so the per-address sign-in limit must let the whole load through).
//!
//! Two goose scenarios share the users:
//! - `marketplace` (weight `--marketplace-weight`): one iteration is the whole flow of
//!   `tests/api/marketplace_flow.rs` over HTTP: a client and a freelancer register (fresh emails
//!   per user and iteration) and log in, the client posts a job, the freelancer proposes with two
//!   milestones, the client accepts; the contract saga makes the contract (polled on query-api,
//!   bounded by `--max-wait-secs`); the freelancer works milestone 1 to review, the client accepts
//!   it; the payment saga makes the payment request (polled likewise); the client deposits and
//!   pays it; the freelancer withdraws the money and reads the wallet (with the withdrawal's
//!   consistency token).
//! - `reader` (weight `--reader-weight`, read-heavy): signs in once (and posts one job, so there
//!   is always something to read), then searches jobs and reads jobs and public profiles by id,
//!   picked from what every user created (each read carries the creating write's consistency
//!   token, so a fresh id is never a 404).
//!
//! Every step is a named goose request, so the report is per endpoint; the eventual-consistency
//! waits are requests of their own (`... (poll: ...)`) that answer 200 while they wait, never errors.
//! Ends with goose's terminal tables, the HTML report (goose's `--report-file`, default
//! target/load-test/report.html), a Markdown report (`--report-md`: requests/s, p50/p95/p99 per
//! endpoint, errors, latency over time) and a summary; exits non-zero if any request failed. The
//! reports go under `target/` unless asked elsewhere: the README's run is kept in
//! `scenarios/REPORT.md` and `scenarios/report.html`, which a run must not overwrite by chance.

use clap::Parser;
use domain::{ContractId, MilestoneId, PaymentRequestId, ProposalId};
use goose::{config::GooseConfiguration, metrics::GooseRequestMetric, prelude::*};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};
use uuid::Uuid;

/// Defaults of goose's own options (`--users`, `--increase-rate`, `--run-time`, `--report-file`):
/// a modest load that the 2-core development machine sustains with no error.
const USERS: usize = 8;
const INCREASE_RATE: &str = "1";
const RUN_TIME: usize = 60;
const REPORT_HTML: &str = "target/load-test/report.html";

/// What to run, against what: this test's options and all of goose's (`--help` lists both).
#[derive(Clone, Parser)]
#[command(about = "Load test of the whole marketplace (goose) against a running platform")]
struct Args {
    /// command-api's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    command_url: String,
    /// query-api's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    query_url: String,
    /// Weight of the marketplace scenario.
    #[arg(long, default_value_t = 1)]
    marketplace_weight: usize,
    /// Weight of the reader scenario (read-heavy users).
    #[arg(long, default_value_t = 2)]
    reader_weight: usize,
    /// Pause of a reader between two reads, in ms (a random pause up to twice this).
    #[arg(long, default_value_t = 250)]
    reader_pause_ms: u64,
    /// Pause of a marketplace user between two flows, in ms (a random pause up to twice this).
    #[arg(long, default_value_t = 500)]
    marketplace_pause_ms: u64,
    /// Longest wait for a saga's result (contract, payment request) before it counts as an error.
    #[arg(long, default_value_t = 20)]
    max_wait_secs: u64,
    /// Pause between two polls of an eventual-consistency wait, in ms.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// The Markdown report (goose's own reports: `--report-file`, default
    /// target/load-test/report.html).
    #[arg(long, default_value = "target/load-test/REPORT.md")]
    report_md: String,
    /// Width of one interval of the latency-over-time chart, in seconds.
    #[arg(long, default_value_t = 5)]
    interval_secs: u64,
    /// How the platform under test was started (written at the top of the Markdown report).
    #[arg(
        long,
        default_value = "WORKUP_PROFILE=release WORKUP_WITHDRAWAL_COOLDOWN_SECS=0 WORKUP_AUTH_RATE_PER_ADDRESS=100000 bash scripts/platform.sh up"
    )]
    platform: String,
    /// goose's options: users, ramp-up, run time, reports, logs, ...
    #[command(flatten)]
    goose: GooseConfiguration,
}

impl Args {
    fn users(&self) -> usize {
        self.goose.users.unwrap_or(USERS)
    }
    fn increase_rate(&self) -> &str {
        self.goose.increase_rate.as_deref().unwrap_or(INCREASE_RATE)
    }
    fn run_time(&self) -> String {
        self.goose
            .run_time
            .clone()
            .unwrap_or_else(|| RUN_TIME.to_string())
    }
    fn reports(&self) -> Vec<String> {
        if self.goose.report_file.is_empty() {
            vec![REPORT_HTML.to_owned()]
        } else {
            self.goose.report_file.clone()
        }
    }
}

/// One request as measured here (goose keeps rounded histograms; the report wants exact ranks).
struct Sample {
    /// Since the load test started.
    at: Duration,
    name: &'static str,
    took: Duration,
    ok: bool,
}

/// An eventual-consistency wait, from the write to the poll that saw its effect.
struct Wait {
    name: &'static str,
    took: Duration,
}

/// What the users share: where the platform is, ids to read, and the measurements.
struct Shared {
    args: Args,
    started: Instant,
    /// Jobs created, with the consistency token of their creation.
    jobs: Mutex<Vec<(String, String)>>,
    /// Users registered, with the token of their registration.
    users: Mutex<Vec<(String, String)>>,
    samples: Mutex<Vec<Sample>>,
    waits: Mutex<Vec<Wait>>,
    /// Failures found in an answer that goose counted as a success (request name, why).
    failures: Mutex<Vec<(&'static str, String)>>,
    /// Marketplace iterations that reached the end.
    flows: Mutex<usize>,
}

/// Made on first use in `main` (before goose starts any user), from the command line.
static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    args: Args::parse(),
    started: Instant::now(),
    jobs: Mutex::default(),
    users: Mutex::default(),
    samples: Mutex::default(),
    waits: Mutex::default(),
    failures: Mutex::default(),
    flows: Mutex::default(),
});

/// Ids kept for the readers, newest last (older ones are dropped).
const POOL: usize = 2_000;

fn shared() -> &'static Shared {
    &SHARED
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn remember(pool: &Mutex<Vec<(String, String)>>, id: String, token: String) {
    let mut pool = lock(pool);
    if pool.len() >= POOL {
        pool.remove(0);
    }
    pool.push((id, token));
}

fn pick(pool: &Mutex<Vec<(String, String)>>) -> Option<(String, String)> {
    let pool = lock(pool);
    if pool.is_empty() {
        return None;
    }
    let i = (Uuid::new_v4().as_u128() % pool.len() as u128) as usize;
    pool.get(i).cloned()
}

/// A request to make: method, URL, its name in the report, and what it must answer.
struct Call<'a> {
    method: GooseMethod,
    url: String,
    name: &'static str,
    token: Option<&'a str>,
    body: Option<Value>,
    position: Option<&'a str>,
    expect: u16,
}

impl<'a> Call<'a> {
    fn new(method: GooseMethod, url: String, name: &'static str, expect: u16) -> Self {
        Self {
            method,
            url,
            name,
            token: None,
            body: None,
            position: None,
            expect,
        }
    }
    fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    /// Read after this write (`X-Consistency-Position`).
    fn after(mut self, position: &'a str) -> Self {
        self.position = Some(position);
        self
    }
}

/// What a request answered.
struct Answer {
    body: Value,
    /// The consistency token of a write.
    position: String,
    metric: GooseRequestMetric,
}

impl Answer {
    fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_default().to_owned()
    }
}

/// Send `call` through goose (which records it under its name); the answer, or the failure
/// (also recorded) when the status is not the one expected.
async fn send(user: &mut GooseUser, call: Call<'_>) -> Result<Answer, Box<TransactionError>> {
    let shared = shared();
    let mut builder = user.get_request_builder(&call.method, &call.url)?;
    if let Some(token) = call.token {
        builder = builder.bearer_auth(token);
    }
    if let Some(body) = &call.body {
        builder = builder.json(body);
    }
    if let Some(position) = call.position {
        builder = builder.header("x-consistency-position", position);
    }
    let request = GooseRequest::builder()
        .method(call.method)
        .path(call.url.as_str())
        // goose puts the method before the name itself.
        .name(call.name.split_once(' ').map_or(call.name, |(_, path)| path))
        .expect_status_code(call.expect)
        .set_request_builder(builder)
        .build();
    let sent = Instant::now();
    let mut goose = user.request(request).await?;
    let took = sent.elapsed();
    let mut answer = Answer {
        body: Value::Null,
        position: String::new(),
        metric: goose.request.clone(),
    };
    let mut why = None;
    match goose.response {
        Ok(response) => {
            let status = response.status().as_u16();
            answer.position = response
                .headers()
                .get("x-consistency-position")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let text = response.text().await.unwrap_or_default();
            answer.body = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status != call.expect {
                why = Some(format!("answered {status}, not {}: {text}", call.expect));
            }
        }
        Err(e) => why = Some(format!("no answer: {e}")),
    }
    let ok = why.is_none() && goose.request.success;
    lock(&shared.samples).push(Sample {
        at: sent.duration_since(shared.started),
        name: call.name,
        took,
        ok,
    });
    match why {
        None if ok => Ok(answer),
        None => Err(fail(
            user,
            &mut goose.request,
            call.name,
            "goose counted it failed".into(),
        )),
        Some(why) => Err(fail(user, &mut goose.request, call.name, why)),
    }
}

/// Mark `metric` failed in goose (once) and record why; the error that ends the transaction.
fn fail(
    user: &mut GooseUser,
    metric: &mut GooseRequestMetric,
    name: &'static str,
    why: String,
) -> Box<TransactionError> {
    eprintln!("{name}: {why}");
    if metric.success {
        lock(&shared().failures).push((name, why.clone()));
    }
    match user.set_failure(&why, metric, None, None) {
        Err(e) => e,
        Ok(()) => Box::new(TransactionError::RequestFailed {
            raw_request: Box::new(metric.clone()),
        }),
    }
}

/// Poll `url` (named `name`, answering 200 while it waits) until `ready` holds for its answer,
/// at most `--max-wait-secs`; the time waited is recorded as `wait`.
async fn poll(
    user: &mut GooseUser,
    url: String,
    name: &'static str,
    token: &str,
    wait: &'static str,
    since: Instant,
    ready: impl Fn(&Value) -> bool,
) -> Result<(), Box<TransactionError>> {
    let shared = shared();
    let deadline = Duration::from_secs(shared.args.max_wait_secs);
    loop {
        let mut answer = send(
            user,
            Call::new(GooseMethod::Get, url.clone(), name, 200).token(token),
        )
        .await?;
        if ready(&answer.body) {
            lock(&shared.waits).push(Wait {
                name: wait,
                took: since.elapsed(),
            });
            return Ok(());
        }
        if since.elapsed() > deadline {
            let why = format!("{wait}: not seen within {} s", deadline.as_secs());
            return Err(fail(user, &mut answer.metric, name, why));
        }
        tokio::time::sleep(Duration::from_millis(shared.args.poll_ms)).await;
    }
}

const PASSWORD: &str = "correct horse battery";

/// Register (`role`: clients or freelancers) and log in; the user's id, the registration's
/// token and the access token.
async fn sign_up(
    user: &mut GooseUser,
    role: &'static str,
    email: &str,
) -> Result<(String, String, String), Box<TransactionError>> {
    let command = &shared().args.command_url;
    let name = if role == "clients" {
        "POST /users/clients/register"
    } else {
        "POST /users/freelancers/register"
    };
    let credentials = json!({"email": email, "password": PASSWORD, "name": "Load"});
    let registered = send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{command}/api/v1/users/{role}/register"),
            name,
            201,
        )
        .body(credentials.clone()),
    )
    .await?;
    let mut login = send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{command}/api/v1/users/login"),
            "POST /users/login",
            200,
        )
        .body(credentials),
    )
    .await?;
    let Some(token) = login.body["access_token"].as_str().map(str::to_owned) else {
        return Err(fail(
            user,
            &mut login.metric,
            "POST /users/login",
            "no access_token".into(),
        ));
    };
    Ok((registered.id(), registered.position, token))
}

fn due(days: u64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Days::new(days)).to_string()
}

fn job_body() -> Value {
    json!({"title": "Build a loom", "description": "Jacquard style, load tested", "budget": {"minor": 50_000, "currency": "USD"}, "skills": ["weaving"]})
}

/// One whole marketplace flow (see the module's doc).
async fn marketplace(user: &mut GooseUser) -> TransactionResult {
    let shared = shared();
    let (command, query) = (shared.args.command_url.as_str(), shared.args.query_url.as_str());
    let tag = Uuid::new_v4().simple().to_string();
    let (_, _, client) = sign_up(user, "clients", &format!("load-client-{tag}@example.com")).await?;
    let (freelancer_id, registered, freelancer) =
        sign_up(user, "freelancers", &format!("load-freelancer-{tag}@example.com")).await?;
    remember(&shared.users, freelancer_id, registered);

    let job = send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{command}/api/v1/jobs"),
            "POST /jobs",
            201,
        )
        .token(&client)
        .body(job_body()),
    )
    .await?;
    let job_id = job.id();
    remember(&shared.jobs, job_id.clone(), job.position.clone());

    let milestones: Vec<Value> = (0..2u64)
        .map(|i| json!({"title": format!("part {i}"), "amount": {"minor": 10_000, "currency": "USD"}, "due_on": due(10 + i)}))
        .collect();
    let mut proposal = send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{command}/api/v1/jobs/{job_id}/proposals"),
            "POST /jobs/{id}/proposals",
            201,
        )
        .token(&freelancer)
        .body(json!({"cover_letter": "I have done this before.", "milestones": milestones})),
    )
    .await?;
    let Ok(proposal_id) = proposal.id().parse::<Uuid>().map(ProposalId::from_uuid) else {
        return Err(fail(
            user,
            &mut proposal.metric,
            "POST /jobs/{id}/proposals",
            "no proposal id".into(),
        ));
    };
    // The saga's ids are derived from the proposal (DESIGN §7), as the API tests compute them.
    let contract_id = ContractId::for_proposal(proposal_id).to_string();
    let milestone = MilestoneId::for_proposal(proposal_id, 0);
    let request_id = PaymentRequestId::for_milestone(milestone).to_string();
    let milestone = milestone.to_string();

    send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{command}/api/v1/jobs/{job_id}/proposals/{proposal_id}/accept"),
            "POST /jobs/{id}/proposals/{pid}/accept",
            200,
        )
        .token(&client),
    )
    .await?;
    let accepted = Instant::now();
    poll(
        user,
        format!("{query}/api/v1/contracts/me"),
        "GET /contracts/me (poll: contract saga)",
        &client,
        "accept → contract visible",
        accepted,
        |page| has(page, "contract_id", &contract_id),
    )
    .await?;

    let base = format!("{command}/api/v1/contracts/{contract_id}/milestones/{milestone}");
    for _ in 0..2 {
        // Open → in progress → in review.
        send(
            user,
            Call::new(
                GooseMethod::Post,
                format!("{base}/progress"),
                "POST /contracts/{id}/milestones/{mid}/progress",
                200,
            )
            .token(&freelancer),
        )
        .await?;
    }
    send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{base}/evaluate"),
            "POST /contracts/{id}/milestones/{mid}/evaluate",
            200,
        )
        .token(&client)
        .body(json!({"verdict": "accepted"})),
    )
    .await?;
    let evaluated = Instant::now();
    poll(
        user,
        format!("{query}/api/v1/payments/requests/me?role=client"),
        "GET /payments/requests/me (poll: payment saga)",
        &client,
        "milestone accepted → payment request visible",
        evaluated,
        |page| has(page, "payment_request_id", &request_id),
    )
    .await?;

    send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{command}/api/v1/payments/wallet/deposits"),
            "POST /payments/wallet/deposits",
            200,
        )
        .token(&client)
        .body(json!({"amount": {"minor": 10_000, "currency": "USD"}})),
    )
    .await?;
    send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{command}/api/v1/payments/requests/{request_id}/pay"),
            "POST /payments/requests/{id}/pay",
            200,
        )
        .token(&client),
    )
    .await?;
    let withdrawal = send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{command}/api/v1/payments/wallet/withdrawals"),
            "POST /payments/wallet/withdrawals",
            202,
        )
        .token(&freelancer)
        .body(json!({"amount": {"minor": 10_000, "currency": "USD"}})),
    )
    .await?;
    send(
        user,
        Call::new(
            GooseMethod::Get,
            format!("{query}/api/v1/payments/wallet"),
            "GET /payments/wallet",
            200,
        )
        .token(&freelancer)
        .after(&withdrawal.position),
    )
    .await?;
    *lock(&shared.flows) += 1;
    Ok(())
}

/// Whether a page's `items` hold one whose `field` is `id` (in any status: the flow goes on).
fn has(page: &Value, field: &str, id: &str) -> bool {
    page["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item[field] == id))
}

/// A reader's session: its access token.
#[derive(Clone)]
struct Reader {
    token: String,
}

/// A reader signs up once and posts one job, so there is always a job and a profile to read.
async fn reader_start(user: &mut GooseUser) -> TransactionResult {
    let shared = shared();
    let tag = Uuid::new_v4().simple().to_string();
    let (id, registered, token) = sign_up(user, "clients", &format!("load-reader-{tag}@example.com")).await?;
    remember(&shared.users, id, registered);
    let job = send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("{}/api/v1/jobs", shared.args.command_url),
            "POST /jobs",
            201,
        )
        .token(&token)
        .body(job_body()),
    )
    .await?;
    remember(&shared.jobs, job.id(), job.position);
    user.set_session_data(Reader { token });
    Ok(())
}

fn reader_token(user: &GooseUser) -> String {
    user.get_session_data::<Reader>()
        .map(|r| r.token.clone())
        .unwrap_or_default()
}

async fn search_jobs(user: &mut GooseUser) -> TransactionResult {
    let shared = shared();
    let token = reader_token(user);
    send(
        user,
        Call::new(
            GooseMethod::Get,
            format!(
                "{}/api/v1/jobs/search?q=weaving+loom&limit=20",
                shared.args.query_url
            ),
            "GET /jobs/search",
            200,
        )
        .token(&token),
    )
    .await?;
    Ok(())
}

async fn read_job(user: &mut GooseUser) -> TransactionResult {
    let shared = shared();
    let token = reader_token(user);
    if let Some((id, position)) = pick(&shared.jobs) {
        send(
            user,
            Call::new(
                GooseMethod::Get,
                format!("{}/api/v1/jobs/{id}", shared.args.query_url),
                "GET /jobs/{id}",
                200,
            )
            .token(&token)
            .after(&position),
        )
        .await?;
    }
    Ok(())
}

async fn read_profile(user: &mut GooseUser) -> TransactionResult {
    let shared = shared();
    let token = reader_token(user);
    if let Some((id, position)) = pick(&shared.users) {
        send(
            user,
            Call::new(
                GooseMethod::Get,
                format!("{}/api/v1/users/{id}", shared.args.query_url),
                "GET /users/{id}",
                200,
            )
            .token(&token)
            .after(&position),
        )
        .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shared = shared();
    let args = shared.args.clone();
    let pause = |ms: u64| (Duration::from_millis(ms), Duration::from_millis(ms * 2));
    let (m_min, m_max) = pause(args.marketplace_pause_ms);
    let (r_min, r_max) = pause(args.reader_pause_ms);
    let started_at = chrono::Utc::now();
    for report in args.reports().iter().chain([&args.report_md]) {
        if let Some(dir) = std::path::Path::new(report)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
    }

    let metrics = GooseAttack::initialize_with_config(args.goose.clone())?
        .register_scenario(
            scenario!("marketplace")
                .set_weight(args.marketplace_weight)?
                .set_wait_time(m_min, m_max)?
                .register_transaction(transaction!(marketplace).set_name("marketplace flow")),
        )
        .register_scenario(
            scenario!("reader")
                .set_weight(args.reader_weight)?
                .set_wait_time(r_min, r_max)?
                .register_transaction(
                    transaction!(reader_start)
                        .set_name("reader sign-in")
                        .set_on_start(),
                )
                .register_transaction(transaction!(search_jobs).set_name("search jobs").set_weight(2)?)
                .register_transaction(transaction!(read_job).set_name("job by id").set_weight(2)?)
                .register_transaction(transaction!(read_profile).set_name("profile by id")),
        )
        .set_default(GooseDefault::Host, args.command_url.as_str())?
        .set_default(GooseDefault::Users, USERS)?
        .set_default(GooseDefault::IncreaseRate, INCREASE_RATE)?
        .set_default(GooseDefault::RunTime, RUN_TIME)?
        .set_default(GooseDefault::ReportFile, REPORT_HTML)?
        // The ramp-up is part of the report (as in the Markdown's own figures).
        .set_default(GooseDefault::NoResetMetrics, true)?
        .set_default(GooseDefault::NoTelnet, true)?
        .execute()
        .await?;

    let duration = shared.started.elapsed();
    let goose_errors: usize = metrics.requests.values().map(|r| r.fail_count).sum();
    let report = Report::new(shared, duration, goose_errors);
    let markdown = report.markdown(started_at, &std::env::args().collect::<Vec<_>>());
    std::fs::write(&args.report_md, markdown)?;
    println!("{}", report.summary());
    println!("wrote {} and {}", args.report_md, args.reports().join(", "));
    if report.errors() > 0 || goose_errors > 0 {
        anyhow::bail!("{} requests failed", report.errors().max(goose_errors));
    }
    Ok(())
}

/// Latencies of a set of requests, in ms.
#[derive(Default)]
struct Stats {
    took: Vec<f64>,
    errors: usize,
}

impl Stats {
    fn add(&mut self, took: Duration, ok: bool) {
        self.took.push(took.as_secs_f64() * 1_000.0);
        if !ok {
            self.errors += 1;
        }
    }
    fn sorted(mut self) -> Self {
        self.took.sort_by(f64::total_cmp);
        self
    }
    /// Nearest-rank percentile of the sorted latencies.
    fn pct(&self, p: f64) -> f64 {
        if self.took.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.took.len() as f64).ceil() as usize;
        self.took[rank.clamp(1, self.took.len()) - 1]
    }
    fn max(&self) -> f64 {
        self.took.last().copied().unwrap_or(0.0)
    }
}

/// What the run measured, ready to print.
struct Report<'a> {
    shared: &'a Shared,
    duration: Duration,
    goose_errors: usize,
    per_name: BTreeMap<&'static str, Stats>,
    all: Stats,
    intervals: Vec<(u64, Stats)>,
    waits: BTreeMap<&'static str, Stats>,
    failures: Vec<(&'static str, String)>,
}

impl<'a> Report<'a> {
    fn new(shared: &'a Shared, duration: Duration, goose_errors: usize) -> Self {
        let samples = std::mem::take(&mut *lock(&shared.samples));
        let failures = lock(&shared.failures).clone();
        let width = shared.args.interval_secs.max(1);
        let mut per_name: BTreeMap<&'static str, Stats> = BTreeMap::new();
        let mut all = Stats::default();
        let mut intervals: BTreeMap<u64, Stats> = BTreeMap::new();
        for s in &samples {
            per_name.entry(s.name).or_default().add(s.took, s.ok);
            all.add(s.took, s.ok);
            intervals
                .entry(s.at.as_secs() / width * width + width)
                .or_default()
                .add(s.took, s.ok);
        }
        // Failures found in answers goose had counted as successes.
        for (name, _) in &failures {
            if let Some(stats) = per_name.get_mut(name) {
                stats.errors += 1;
            }
            all.errors += 1;
        }
        let mut waits: BTreeMap<&'static str, Stats> = BTreeMap::new();
        for w in lock(&shared.waits).iter() {
            waits.entry(w.name).or_default().add(w.took, true);
        }
        Self {
            shared,
            duration,
            goose_errors,
            per_name: per_name.into_iter().map(|(k, v)| (k, v.sorted())).collect(),
            all: all.sorted(),
            intervals: intervals.into_iter().map(|(k, v)| (k, v.sorted())).collect(),
            waits: waits.into_iter().map(|(k, v)| (k, v.sorted())).collect(),
            failures,
        }
    }

    fn errors(&self) -> usize {
        self.all.errors
    }

    fn rate(&self, n: usize) -> f64 {
        n as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// The per-endpoint table, as Markdown rows.
    fn table(&self) -> String {
        let mut out = String::from(
            "| request | count | errors | req/s | p50 ms | p95 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let row = |out: &mut String, name: &str, s: &Stats| {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.took.len(),
                s.errors,
                self.rate(s.took.len()),
                s.pct(50.0),
                s.pct(95.0),
                s.pct(99.0),
                s.max()
            );
        };
        for (name, s) in &self.per_name {
            row(&mut out, &format!("`{name}`"), s);
        }
        row(&mut out, "**all**", &self.all);
        out
    }

    fn markdown(&self, started_at: chrono::DateTime<chrono::Utc>, argv: &[String]) -> String {
        let args = &self.shared.args;
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let flows = *lock(&self.shared.flows);
        let mut md = String::new();
        let _ = writeln!(md, "# Load test: the marketplace under goose\n");
        let _ = writeln!(md, "- **Command:** `{}`, then", args.platform);
        let _ = writeln!(md, "  `{}` (from the repository's root)", argv.join(" "));
        let _ = writeln!(
            md,
            "- **Date:** {} (UTC, start of the run)",
            started_at.format("%Y-%m-%d %H:%M:%S")
        );
        let _ = writeln!(
            md,
            "- **Machine:** {cores} cores; the infrastructure, every service and the load generator share them"
        );
        let _ = writeln!(
            md,
            "- **Platform profile:** {}",
            if args.platform.contains("WORKUP_PROFILE=release") {
                "release"
            } else {
                "see the command"
            }
        );
        let _ = writeln!(
            md,
            "- **Load:** {} users (weights marketplace {} : reader {}), ramp-up {} users/s, {} s at full load after the ramp-up; readers pause {}-{} ms between reads, marketplace users {}-{} ms between flows\n",
            args.users(),
            args.marketplace_weight,
            args.reader_weight,
            args.increase_rate(),
            args.run_time(),
            args.reader_pause_ms,
            args.reader_pause_ms * 2,
            args.marketplace_pause_ms,
            args.marketplace_pause_ms * 2,
        );
        let _ = writeln!(md, "## Summary\n");
        let _ = writeln!(
            md,
            "{} requests in {:.1} s ({:.1} requests/s), **{} errors** (goose counted {}); {} complete marketplace flows (register → contract → payment → withdrawal), {:.2}/s. Latency of all requests: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms.\n",
            self.all.took.len(),
            self.duration.as_secs_f64(),
            self.rate(self.all.took.len()),
            self.errors(),
            self.goose_errors,
            flows,
            self.rate(flows),
            self.all.pct(50.0),
            self.all.pct(95.0),
            self.all.pct(99.0),
        );
        let _ = writeln!(
            md,
            "Requests marked `(poll: ...)` are the eventual-consistency waits for the sagas (they answer 200 while they wait; a wait longer than {} s would be an error). Reads after a write carry its consistency token (`X-Consistency-Position`). Latencies are measured by the load generator around each request (client side, on the same cores as the platform).\n",
            args.max_wait_secs
        );
        let _ = writeln!(md, "## Per endpoint\n\n{}", self.table());
        let _ = writeln!(
            md,
            "## Eventual-consistency waits (write → visible on query-api)\n"
        );
        let _ = writeln!(
            md,
            "| wait | count | p50 ms | p95 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|"
        );
        for (name, s) in &self.waits {
            let _ = writeln!(
                md,
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.took.len(),
                s.pct(50.0),
                s.pct(95.0),
                s.pct(99.0),
                s.max()
            );
        }
        let _ = writeln!(
            md,
            "\n## Latency over time (all requests, per {} s)\n",
            args.interval_secs
        );
        let labels: Vec<String> = self.intervals.iter().map(|(end, _)| end.to_string()).collect();
        let p50: Vec<String> = self
            .intervals
            .iter()
            .map(|(_, s)| format!("{:.0}", s.pct(50.0)))
            .collect();
        let p95: Vec<String> = self
            .intervals
            .iter()
            .map(|(_, s)| format!("{:.0}", s.pct(95.0)))
            .collect();
        let top = self
            .intervals
            .iter()
            .map(|(_, s)| s.pct(95.0))
            .fold(1.0, f64::max);
        let _ = writeln!(md, "```mermaid\nxychart-beta");
        let _ = writeln!(md, "    title \"p50 (lower line) and p95 (upper line), ms\"");
        let _ = writeln!(md, "    x-axis \"seconds since start\" [{}]", labels.join(", "));
        let _ = writeln!(md, "    y-axis \"ms\" 0 --> {:.0}", (top * 1.1).ceil());
        let _ = writeln!(md, "    line [{}]", p50.join(", "));
        let _ = writeln!(md, "    line [{}]", p95.join(", "));
        let _ = writeln!(md, "```\n");
        let _ = writeln!(
            md,
            "The same as text (`#` = p50, `+` up to p95; {} ms per character):\n",
            (top / 50.0).ceil().max(1.0)
        );
        let _ = writeln!(md, "```text\n   until |  req/s |  p50 ms |  p95 ms | errors |");
        let scale = (top / 50.0).ceil().max(1.0);
        let width = self.shared.args.interval_secs.max(1) as f64;
        for (end, s) in &self.intervals {
            let a = (s.pct(50.0) / scale).round() as usize;
            let b = (s.pct(95.0) / scale).round() as usize;
            let _ = writeln!(
                md,
                "{:>7}s | {:>6.1} | {:>7.1} | {:>7.1} | {:>6} | {}{}",
                end,
                s.took.len() as f64 / width,
                s.pct(50.0),
                s.pct(95.0),
                s.errors,
                "#".repeat(a),
                "+".repeat(b.saturating_sub(a))
            );
        }
        let _ = writeln!(md, "```\n");
        let _ = writeln!(md, "## Errors\n");
        if self.failures.is_empty() && self.errors() == 0 {
            let _ = writeln!(md, "None.\n");
        } else {
            for (name, why) in &self.failures {
                let _ = writeln!(md, "- `{name}`: {why}");
            }
            let _ = writeln!(md);
        }
        for report in args.reports() {
            let file = std::path::Path::new(&report)
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
            let _ = writeln!(
                md,
                "Goose's own report (per request, per transaction and per scenario tables, status codes, charts over time): [`{report}`]({file})."
            );
        }
        md
    }

    /// The terminal summary.
    fn summary(&self) -> String {
        let mut out = format!(
            "\n{:<52} {:>7} {:>6} {:>7} {:>8} {:>8} {:>8}\n",
            "request", "count", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"
        );
        let mut row = |name: &str, s: &Stats| {
            let _ = writeln!(
                out,
                "{name:<52} {:>7} {:>6} {:>7.2} {:>8.1} {:>8.1} {:>8.1}",
                s.took.len(),
                s.errors,
                self.rate(s.took.len()),
                s.pct(50.0),
                s.pct(95.0),
                s.pct(99.0)
            );
        };
        for (name, s) in &self.per_name {
            row(name, s);
        }
        row("all", &self.all);
        for (name, s) in &self.waits {
            let _ = writeln!(
                out,
                "wait {name:<47} {:>7} {:>6} {:>7} {:>8.1} {:>8.1} {:>8.1}",
                s.took.len(),
                "",
                "",
                s.pct(50.0),
                s.pct(95.0),
                s.pct(99.0)
            );
        }
        let _ = write!(
            out,
            "{} requests in {:.1} s, {:.1}/s, {} errors; {} marketplace flows completed",
            self.all.took.len(),
            self.duration.as_secs_f64(),
            self.rate(self.all.took.len()),
            self.errors(),
            *lock(&self.shared.flows)
        );
        out
    }
}
