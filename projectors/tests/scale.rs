//! Two projectors processes on one namespace split the work (local horizontal scale): every
//! consumer of each joins the same consumer group, so the partitions of its topics (2 per topic
//! in a [`TestEnv`]) are divided between them. Both apply events, the read models end equal to
//! the ledger, and no event is applied twice: per consumer, the events the two instances count as
//! handled add up to the events published. When one instance is killed (SIGKILL), the other takes
//! over its partitions and applies what comes next.
//!
//! The workload is appended straight to the ledger (wallets opened and topped up: the payments
//! projector; jobs posted and edited: the jobs projector) and published by a relay run in the
//! test; the read models are read through an in-process query-api; the projectors run as the
//! real binary, child processes, so one can be killed.

use anyhow::{Context as _, bail, ensure};
use domain::{
    Actor, Aggregate, BoundedContext, Currency, JobId, Money, Role, Timestamp, UserId, WalletId,
    jobs::{Job, JobDraft, JobEvent},
    payments::{Wallet, WalletEvent},
};
use infra::{
    config::{Config, KafkaConfig},
    http::auth::TokenKeys,
    kafka::{client_config, consumer::group_id},
    ledger::{AppendRequest, EventMetadata, ExpectedVersion, Ledger, StreamWrite},
    relay::Relay,
    testing::TestEnv,
};
use projectors::catalog::sources;
use rdkafka::{
    ClientContext,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

/// Wallets (each with its owner), and jobs (owned by the same users, round robin).
const WALLETS: usize = 40;
const JOBS: usize = 24;
/// The consumers the workload feeds (`BoundedContext::name`): payments (wallet events) and jobs
/// (job events; it also follows the users topic, which stays empty here).
const CONSUMERS: [&str; 2] = ["payments", "jobs"];
/// How long a process may take to answer `/ready`.
const STARTUP: Duration = Duration::from_secs(60);
/// How long a wave of events may take to show in the read models.
const APPLIED: Duration = Duration::from_secs(30);
/// How long the survivor may take to take over the killed instance's partitions on its own: the
/// group drops a member that died silently after `session.timeout.ms` (10 s,
/// `infra::kafka::consumer`), noticed at a survivor's heartbeat (every 3 s), then rebalances.
const TAKEOVER: Duration = Duration::from_secs(16);
/// How long the survivor may take to apply the last wave once its groups were formed anew.
const REFORMED: Duration = Duration::from_secs(30);
/// Warm-up waves at most, until both instances have applied events of every consumer.
const WARM_UP_WAVES: usize = 10;
/// Longest a read waits for its consistency token while polling.
const POLL_WAIT_MS: u64 = 300;

/// Events counted by `workup_consumer_events_total`: (consumer, outcome) → count.
type Counts = BTreeMap<(String, String), u64>;

/// The projectors binary on `config`; killed (SIGKILL) when dropped.
struct ProjectorsProcess {
    name: &'static str,
    child: Child,
    /// Its health and metrics endpoint.
    port: u16,
}

impl ProjectorsProcess {
    fn start(config: &Config, name: &'static str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(env!("CARGO_BIN_EXE_projectors"))
            .envs(infra::testing::process_env(config))
            .env("WORKUP_PROJECTORS_PORT", port.to_string())
            .env(
                "RUST_LOG",
                std::env::var("PROJECTORS_LOG").unwrap_or_else(|_| "warn,scylla=off".into()),
            )
            .spawn()
            .with_context(|| format!("could not start projectors {name}"))?;
        Ok(Self { name, child, port })
    }

    /// Fails if the process has exited on its own.
    fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("projectors {} exited: {status}", self.name),
            None => Ok(()),
        }
    }

    /// Wait until it answers `/ready`.
    async fn wait_ready(&mut self, http: &Client) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/ready", self.port);
        let deadline = Instant::now() + STARTUP;
        loop {
            self.check_running()?;
            if let Ok(answer) = http.get(&url).send().await
                && answer.status().is_success()
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "projectors {} not ready on port {} within {} s",
                self.name,
                self.port,
                STARTUP.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Its consumers' event counts, from its `/metrics`.
    async fn counts(&mut self, http: &Client) -> anyhow::Result<Counts> {
        self.check_running()?;
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let text = http
            .get(url)
            .send()
            .await
            .with_context(|| format!("projectors {}: /metrics", self.name))?
            .text()
            .await?;
        Ok(parse_counts(&text))
    }

    /// SIGKILL: no chance to finish the event in flight, commit offsets or leave the group.
    fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ProjectorsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `workup_consumer_events_total{consumer=..,outcome=..}` lines of a Prometheus page.
fn parse_counts(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("workup_consumer_events_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
            })
        };
        if let (Some(consumer), Some(outcome), Ok(value)) =
            (label("consumer"), label("outcome"), value.trim().parse::<f64>())
        {
            *counts.entry((consumer, outcome)).or_default() += value as u64;
        }
    }
    counts
}

/// Count `outcome` of `consumer` in `counts`.
fn count(counts: &Counts, consumer: &str, outcome: &str) -> u64 {
    counts
        .get(&(consumer.to_owned(), outcome.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// query-api running in-process until stopped.
struct QueryApi {
    url: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl QueryApi {
    async fn start(mut config: Config) -> anyhow::Result<Self> {
        config.http.consistency_wait_ms = POLL_WAIT_MS;
        let app = query_api::startup::Application::build(config).await?;
        let url = format!("http://127.0.0.1:{}/api/v1", app.port());
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.changed().await;
        }));
        Ok(Self { url, stop, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

/// What the workload wrote to the ledger.
struct Workload {
    ledger: Ledger,
    keys: TokenKeys,
    /// Owner of wallet `i` (and of job `j`: owner `j % WALLETS`).
    owners: Vec<Uuid>,
    /// Wallet `i`: its balance in minor units (USD) and stream version.
    wallets: Vec<(i64, i64)>,
    /// Job id, its current title and stream version.
    jobs: Vec<(Uuid, String, i64)>,
    /// Events appended per consumer fed, so far.
    events: HashMap<&'static str, u64>,
}

impl Workload {
    fn new(ledger: Ledger, keys: TokenKeys) -> Self {
        Self {
            ledger,
            keys,
            owners: (0..WALLETS).map(|_| Uuid::now_v7()).collect(),
            wallets: vec![(0, 0); WALLETS],
            jobs: Vec::new(),
            events: HashMap::new(),
        }
    }

    fn token(&self, owner: Uuid) -> anyhow::Result<String> {
        Ok(self
            .keys
            .issue(Actor::new(UserId::from_uuid(owner), Role::Client))
            .map_err(|e| anyhow::anyhow!("token: {e:?}"))?
            .access_token)
    }

    /// Append `events` of aggregate `A` to `stream_id`, at version `at`; how many.
    async fn append<A: Aggregate>(
        &self,
        stream_id: Uuid,
        at: i64,
        events: &[A::Event],
    ) -> anyhow::Result<u64> {
        let write = StreamWrite::of::<A>(stream_id, ExpectedVersion::from_loaded(at), events)?;
        let metadata = EventMetadata::new(Uuid::now_v7(), None, chrono::Utc::now());
        self.ledger
            .append(AppendRequest::new(metadata, vec![write]))
            .await?;
        Ok(events.len() as u64)
    }

    /// Top up every wallet once (opening it first if it is new); how many events.
    async fn deposit_everywhere(&mut self, wave: usize) -> anyhow::Result<u64> {
        let now = Timestamp::from_datetime(chrono::Utc::now());
        let mut appended = 0;
        for i in 0..WALLETS {
            let owner = UserId::from_uuid(self.owners[i]);
            let wallet_id = WalletId::for_user(owner);
            let (balance, version) = self.wallets[i];
            let amount = Money::new(100 * (i as i64 + 1) + wave as i64, Currency::Usd);
            let mut events = Vec::new();
            if version == 0 {
                events.push(WalletEvent::WalletOpened {
                    wallet_id,
                    owner_id: owner,
                    currency: Currency::Usd,
                    opened_at: now,
                });
            }
            events.push(WalletEvent::FundsDeposited {
                wallet_id,
                amount,
                balance: Money::new(balance + amount.minor, Currency::Usd),
                deposited_at: now,
            });
            let n = self
                .append::<Wallet>(wallet_id.as_uuid(), version, &events)
                .await?;
            self.wallets[i] = (balance + amount.minor, version + n as i64);
            appended += n;
        }
        *self.events.entry("payments").or_default() += appended;
        Ok(appended)
    }

    /// Post `new` jobs and edit every existing one; how many events.
    async fn post_and_edit_jobs(&mut self, new: usize, wave: usize) -> anyhow::Result<u64> {
        let now = Timestamp::from_datetime(chrono::Utc::now());
        let draft = |j: usize| JobDraft {
            title: format!("Job {j} wave {wave}"),
            description: format!("Work for job {j}."),
            budget: Money::new(10_000 + j as i64, Currency::Usd),
            skills: vec!["rust".into()],
        };
        let mut appended = 0;
        for j in 0..self.jobs.len() {
            let (id, _, version) = self.jobs[j].clone();
            let event = JobEvent::JobUpdated {
                job_id: JobId::from_uuid(id),
                draft: draft(j),
                updated_at: now,
            };
            appended += self.append::<Job>(id, version, &[event]).await?;
            self.jobs[j] = (id, draft(j).title, version + 1);
        }
        for _ in 0..new {
            let (j, id) = (self.jobs.len(), Uuid::now_v7());
            let event = JobEvent::JobPosted {
                job_id: JobId::from_uuid(id),
                client_id: UserId::from_uuid(self.owners[j % WALLETS]),
                draft: draft(j),
                posted_at: now,
            };
            appended += self.append::<Job>(id, 0, &[event]).await?;
            self.jobs.push((id, draft(j).title, 1));
        }
        *self.events.entry("jobs").or_default() += appended;
        Ok(appended)
    }
}

/// A query-api client that checks the read models against the workload.
struct Reader {
    http: Client,
    url: String,
}

impl Reader {
    async fn get(
        &self,
        path: &str,
        token: &str,
        consistency: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(Method::GET, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(position) = consistency {
            request = request.header("x-consistency-position", position);
        }
        let answer = request.send().await?;
        let status = answer.status();
        let bytes = answer.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).with_context(|| format!("GET {path}: not JSON"))?
        };
        Ok((status, body))
    }

    /// Whether the read models have applied every stream's last version: reads carrying them as
    /// consistency tokens answer without a 504.
    async fn caught_up(&self, work: &Workload) -> anyhow::Result<bool> {
        let token = work.token(work.owners[0])?;
        let wallets = work.owners.iter().zip(&work.wallets).map(|(owner, (_, v))| {
            let id = WalletId::for_user(UserId::from_uuid(*owner)).as_uuid();
            format!("{}:{id}:{v}", Wallet::STREAM_TYPE)
        });
        let jobs = work
            .jobs
            .iter()
            .map(|(id, _, v)| format!("{}:{id}:{v}", Job::STREAM_TYPE));
        for (path, tokens) in [
            ("/payments/wallet", wallets.collect::<Vec<_>>()),
            ("/jobs/me", jobs.collect()),
        ] {
            for chunk in tokens.chunks(64) {
                let (status, body) = self.get(path, &token, Some(&chunk.join(","))).await?;
                match status {
                    StatusCode::GATEWAY_TIMEOUT => return Ok(false),
                    s if s.is_success() || s == StatusCode::NOT_FOUND => {}
                    s => bail!("GET {path} with a consistency token: {s}: {body}"),
                }
            }
        }
        Ok(true)
    }

    /// Every wallet and job as the read models have them equals the ledger's last version of it,
    /// and each wallet lists each of its deposits once.
    async fn check(&self, work: &Workload) -> anyhow::Result<()> {
        let versions: HashMap<Uuid, i64> =
            sqlx::query_as::<_, (Uuid, i64)>("SELECT stream_id, max(version) FROM events GROUP BY stream_id")
                .fetch_all(&work.ledger.pool())
                .await?
                .into_iter()
                .collect();
        for (i, owner) in work.owners.iter().enumerate() {
            let token = work.token(*owner)?;
            let id = WalletId::for_user(UserId::from_uuid(*owner)).as_uuid();
            let (balance, version) = work.wallets[i];
            ensure!(
                versions.get(&id) == Some(&version),
                "wallet {i}: ledger {:?}, wrote {version}",
                versions.get(&id)
            );
            let (status, wallet) = self.get("/payments/wallet", &token, None).await?;
            ensure!(status == StatusCode::OK, "wallet {i}: {status}: {wallet}");
            ensure!(
                wallet["balance"]["minor"].as_i64() == Some(balance)
                    && wallet["version"].as_i64() == Some(version),
                "wallet {i}: read model {wallet}, ledger balance {balance} at version {version}"
            );
            let (status, page) = self
                .get("/payments/wallet/transactions?limit=100", &token, None)
                .await?;
            ensure!(
                status == StatusCode::OK,
                "wallet {i} transactions: {status}: {page}"
            );
            let listed = page["items"].as_array().map_or(0, Vec::len) as i64;
            // Every event of a wallet but its opening is a deposit.
            ensure!(
                listed == version - 1,
                "wallet {i}: {listed} transactions listed, {} deposits in the ledger: {page}",
                version - 1
            );
        }
        for (j, (id, title, version)) in work.jobs.iter().enumerate() {
            ensure!(
                versions.get(id) == Some(version),
                "job {j}: ledger {:?}, wrote {version}",
                versions.get(id)
            );
            let token = work.token(work.owners[j % WALLETS])?;
            let (status, job) = self.get(&format!("/jobs/{id}"), &token, None).await?;
            ensure!(status == StatusCode::OK, "job {j}: {status}: {job}");
            ensure!(
                job["title"] == title.as_str() && job["version"].as_i64() == Some(*version),
                "job {j}: read model {job}, ledger title {title:?} at version {version}"
            );
        }
        Ok(())
    }
}

/// Poll `probe` until it holds, for at most `within`; `what` names it in the error.
async fn eventually<F, Fut>(what: &str, within: Duration, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + within;
    while !probe().await? {
        ensure!(
            Instant::now() < deadline,
            "{what}: not within {} s",
            within.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Poll `probe` until it holds, for at most `within`: whether it did.
async fn within<F, Fut>(limit: Duration, mut probe: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !probe().await? {
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(true)
}

/// Raised once the probe member has been given its partitions (possibly none): it is in the group.
#[derive(Default, Clone)]
struct Joined(Arc<AtomicBool>);

impl ClientContext for Joined {}

impl ConsumerContext for Joined {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Make the broker form the group of projector `consumer` anew (see the kill in the test): a probe
/// member joins it, then leaves. It stores and commits no offset, so what it fetched meanwhile is
/// consumed by the group's members afterwards.
fn reform_group(kafka: &KafkaConfig, consumer: &str) -> anyhow::Result<()> {
    let context = BoundedContext::parse(consumer).with_context(|| format!("no projector {consumer}"))?;
    let topics: Vec<String> = sources(context).iter().map(|c| kafka.context_topic(*c)).collect();
    let joined = Joined::default();
    let probe: BaseConsumer<Joined> = client_config(kafka)
        .set("group.id", group_id(kafka, consumer))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("session.timeout.ms", "10000")
        .create_with_context(joined.clone())?;
    probe.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
    let deadline = Instant::now() + APPLIED;
    while !joined.0.load(Ordering::Relaxed) {
        ensure!(
            Instant::now() < deadline,
            "the probe member did not join group {} within {} s",
            group_id(kafka, consumer),
            APPLIED.as_secs()
        );
        // Messages fetched are dropped, their offsets never stored.
        let _ = probe.poll(Duration::from_millis(100));
    }
    // Leaves the group (LeaveGroup), which the broker answers by forming it anew.
    probe.unsubscribe();
    drop(probe);
    Ok(())
}

/// Publish what the workload appended: exactly `appended` events.
async fn publish(relay: &Relay, appended: u64) -> anyhow::Result<()> {
    let published = relay.run_until_idle().await? as u64;
    ensure!(
        published == appended,
        "the relay published {published} of {appended} events"
    );
    Ok(())
}

/// Both instances' counts, `a` and `b`.
async fn counts_of(
    http: &Client,
    a: &mut ProjectorsProcess,
    b: Option<&mut ProjectorsProcess>,
) -> anyhow::Result<(Counts, Counts)> {
    let first = a.counts(http).await?;
    let second = match b {
        Some(b) => b.counts(http).await?,
        None => Counts::new(),
    };
    Ok((first, second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_projector_instances_split_the_partitions_apply_each_event_once_and_take_over_from_a_killed_one()
-> anyhow::Result<()> {
    let started = Instant::now();
    let elapsed = || started.elapsed().as_secs_f64();
    let env = TestEnv::new().await?;
    let config = env.config.clone();
    ensure!(
        config.kafka.partitions >= 2,
        "the topics need at least 2 partitions to be split"
    );
    let http = Client::builder().timeout(Duration::from_secs(10)).build()?;

    let mut a = ProjectorsProcess::start(&config, "a")?;
    let mut b = ProjectorsProcess::start(&config, "b")?;
    a.wait_ready(&http).await?;
    b.wait_ready(&http).await?;
    eprintln!(
        "projectors a (port {}) and b (port {}) ready, {:.1} s",
        a.port,
        b.port,
        elapsed()
    );
    let query_api = QueryApi::start(config.clone()).await?;
    let reader = Reader {
        http: http.clone(),
        url: query_api.url.clone(),
    };
    let ledger = env.ledger().await?;
    let relay = Relay::new(ledger.clone(), &config.kafka, 100)?;
    let mut work = Workload::new(ledger, TokenKeys::new(&config.auth)?);

    // Warm-up: waves until both instances have applied events of every consumer, i.e. both hold
    // partitions of its topics (the group settles while they start).
    let mut wave = 0;
    loop {
        wave += 1;
        let appended = work.deposit_everywhere(wave).await? + work.post_and_edit_jobs(JOBS / 2, wave).await?;
        publish(&relay, appended).await?;
        eventually("warm-up wave applied", APPLIED, || reader.caught_up(&work)).await?;
        let (ca, cb) = counts_of(&http, &mut a, Some(&mut b)).await?;
        let idle: Vec<String> = CONSUMERS
            .iter()
            .flat_map(|c| {
                [("a", &ca), ("b", &cb)]
                    .into_iter()
                    .filter(move |(_, counts)| count(counts, c, "Handled") == 0)
                    .map(move |(name, _)| format!("{c} on {name}"))
            })
            .collect();
        if idle.is_empty() {
            break;
        }
        ensure!(
            wave < WARM_UP_WAVES,
            "after {wave} waves some consumers never applied an event (no partitions?): {idle:?}; \
             counts a: {ca:?}, b: {cb:?}"
        );
        // The local broker sometimes forms a group with every partition on one member and never
        // rebalances it (the defect at the kill below): a probe member joining and leaving makes
        // it form the group anew.
        if wave >= 2 {
            for consumer in CONSUMERS
                .iter()
                .filter(|c| idle.iter().any(|i| i.starts_with(**c)))
            {
                eprintln!(
                    "{consumer}: one instance holds no partition after {wave} waves; reforming the group"
                );
                reform_group(&config.kafka, consumer)?;
            }
        }
    }
    eprintln!(
        "both instances hold partitions of every consumer after {wave} warm-up wave(s), {:.1} s",
        elapsed()
    );

    // (a) (b) (c): a settled group splits a wave; each event is handled by exactly one instance.
    let (a0, b0) = counts_of(&http, &mut a, Some(&mut b)).await?;
    let before = work.events.clone();
    let appended = work.deposit_everywhere(wave + 1).await?
        + work.deposit_everywhere(wave + 2).await?
        + work.post_and_edit_jobs(JOBS / 2, wave + 1).await?;
    publish(&relay, appended).await?;
    eventually("the split wave applied", APPLIED, || reader.caught_up(&work)).await?;
    reader.check(&work).await.context("after the split wave")?;
    let expected = |consumer: &str| {
        work.events.get(consumer).copied().unwrap_or(0) - before.get(consumer).copied().unwrap_or(0)
    };
    // The counter is bumped just after the read model is written: wait for the last ones.
    let deadline = Instant::now() + APPLIED;
    let (a1, b1) = loop {
        let (a1, b1) = counts_of(&http, &mut a, Some(&mut b)).await?;
        let handled = |c: &str| {
            count(&a1, c, "Handled") - count(&a0, c, "Handled") + count(&b1, c, "Handled")
                - count(&b0, c, "Handled")
        };
        if CONSUMERS.iter().all(|&c| handled(c) >= expected(c)) {
            break (a1, b1);
        }
        ensure!(
            Instant::now() < deadline,
            "the split wave is in the read models but not all counted within {} s: a {a1:?}, b {b1:?}",
            APPLIED.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for consumer in CONSUMERS {
        let on_a = count(&a1, consumer, "Handled") - count(&a0, consumer, "Handled");
        let on_b = count(&b1, consumer, "Handled") - count(&b0, consumer, "Handled");
        let parked = count(&a1, consumer, "Parked") + count(&b1, consumer, "Parked");
        let duplicates = count(&a1, consumer, "Duplicate") - count(&a0, consumer, "Duplicate")
            + count(&b1, consumer, "Duplicate")
            - count(&b0, consumer, "Duplicate");
        eprintln!(
            "{consumer}: {} events, applied {on_a} on a + {on_b} on b, {duplicates} redelivered duplicates dropped",
            expected(consumer)
        );
        ensure!(
            on_a > 0 && on_b > 0,
            "{consumer}: one instance applied nothing ({on_a} / {on_b})"
        );
        ensure!(
            on_a + on_b == expected(consumer),
            "{consumer}: {on_a} + {on_b} applied for {} events: some applied twice",
            expected(consumer)
        );
        ensure!(parked == 0, "{consumer}: {parked} events parked");
    }
    let totals: Vec<String> = CONSUMERS
        .iter()
        .map(|c| {
            format!(
                "{c} {} + {} of {}",
                count(&a1, c, "Handled"),
                count(&b1, c, "Handled"),
                work.events.get(c).copied().unwrap_or(0)
            )
        })
        .collect();
    eprintln!(
        "split wave checked, {:.1} s; handled since start: {}",
        elapsed(),
        totals.join(", ")
    );

    // Kill b: a takes over its partitions (once the group has noticed) and applies the rest.
    b.kill()?;
    let killed_at = Instant::now();
    let before = work.events.clone();
    let appended = work.deposit_everywhere(wave + 3).await? + work.post_and_edit_jobs(0, wave + 2).await?;
    publish(&relay, appended).await?;
    // Real Kafka rebalances the groups once they drop b. The local broker (tansu 0.6.0) drops b
    // at a's next heartbeat after the session timeout and tells a to rejoin, but keeps the group
    // "formed": a rejoins into the same generation and gets its old partitions back, and b's are
    // assigned to no one until a member joins or leaves. A probe member joining and leaving
    // (consuming and committing nothing) makes it form each group anew, with a alone in it.
    if !within(TAKEOVER, || reader.caught_up(&work)).await? {
        eprintln!(
            "a has not taken over b's partitions {:.1} s after the kill (the local broker dropped b \
             without rebalancing); a probe member joins and leaves each group",
            killed_at.elapsed().as_secs_f64()
        );
        for consumer in CONSUMERS {
            let kafka = config.kafka.clone();
            tokio::task::spawn_blocking(move || reform_group(&kafka, consumer)).await??;
        }
        let reformed = eventually(
            "a applies the wave after its groups were formed anew",
            REFORMED,
            || reader.caught_up(&work),
        )
        .await;
        if let Err(error) = reformed {
            let counts = a.counts(&http).await?;
            bail!("{error}; a's counts: {counts:?}");
        }
    }
    eprintln!(
        "a took over b's partitions and applied the last wave {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    reader.check(&work).await.context("after the kill")?;
    let last = |c: &str| work.events.get(c).copied().unwrap_or(0) - before.get(c).copied().unwrap_or(0);
    let deadline = Instant::now() + APPLIED;
    let a2 = loop {
        let a2 = a.counts(&http).await?;
        if CONSUMERS
            .iter()
            .all(|&c| count(&a2, c, "Handled") - count(&a1, c, "Handled") >= last(c))
        {
            break a2;
        }
        ensure!(
            Instant::now() < deadline,
            "the last wave is in the read models but not all counted on a within {} s: {a2:?}",
            APPLIED.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for consumer in CONSUMERS {
        let last = last(consumer);
        let on_a = count(&a2, consumer, "Handled") - count(&a1, consumer, "Handled");
        // b's last offsets may not have been committed (auto-commit every second) when it was
        // killed: a applies those events again, idempotently (version-guarded writes).
        eprintln!(
            "{consumer}: {last} events after the kill, all applied by a ({on_a} handled, {} re-applied from b's uncommitted offsets)",
            on_a - last
        );
        ensure!(count(&a2, consumer, "Parked") == 0, "{consumer}: events parked");
    }
    eprintln!("done, {:.1} s", elapsed());
    a.kill()?;
    query_api.stop().await
}
