//! A projectors process killed (SIGKILL) mid-stream and started again converges to the same
//! answers as one that never stopped (DESIGN §6: idempotent, version-guarded writes; offsets
//! stored only once an event's effect is durable, so a restart re-applies what it lost).
//!
//! command-api runs in-process (with its relay) and writes several hundred events over HTTP:
//! users, profiles, jobs and their edits, proposals, withdrawals, acceptances, rejections,
//! closings, deposits and an account deletion. The projectors run as the real binary, a child
//! process, so they can be killed. The reference is a second projectors process on a namespace of
//! its own (topics, consumer groups, keyspace, MongoDB database, Redis prefix: consumer group ids
//! follow the topic prefix, so a second process on the same topics would split the partitions
//! with the first), fed the same ledger in the same order by a relay republishing it, and never
//! stopped. Each read model is read through its own in-process query-api, and every answer must be
//! the same; the answers are also checked against what the workload wrote and the ledger's
//! stream versions.

use anyhow::{Context as _, bail, ensure};
use domain::{
    Actor, Aggregate, Role, UserId,
    contracts::{Contract, TerminationRequest},
    jobs::{Job, Proposal},
    payments::{PaymentRequest, Wallet, Withdrawal},
    users::User,
};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use infra::{config::Config, http::auth::TokenKeys, relay::Relay, testing::TestEnv};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    process::{Child, Command},
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

const CLIENTS: usize = 6;
const FREELANCERS: usize = 18;
const JOBS_PER_CLIENT: usize = 20;
const JOBS: usize = CLIENTS * JOBS_PER_CLIENT;
/// Jobs `0..PROPOSED` get two proposals each, from freelancers other than the last one.
const PROPOSED: usize = 80;
/// Jobs `0..ACCEPTED` get their first proposal accepted (the second is rejected by it).
const ACCEPTED: usize = 30;
/// Jobs `ACCEPTED..REJECTED` get their second proposal rejected.
const REJECTED: usize = 40;
/// Jobs in `CLOSED` are closed by their owner.
const CLOSED: std::ops::Range<usize> = 100..110;
const DEPOSITS_PER_CLIENT: i64 = 3;
/// Writes in flight at once.
const CONCURRENCY: usize = 8;
/// How long a restarted projector (rejoining its groups) and the reference may take to catch up.
const CONVERGENCE: Duration = Duration::from_secs(180);
/// `session.timeout.ms` of the consumers (`infra::kafka::consumer`).
const GROUP_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a read waits for its consistency token while polling for catch-up.
const POLL_WAIT_MS: u64 = 300;

/// The projectors binary on `config`; killed (SIGKILL) when dropped.
struct ProjectorsProcess {
    child: Child,
    /// Its health and metrics endpoint.
    port: u16,
}

impl ProjectorsProcess {
    fn start(config: &Config) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(env!("CARGO_BIN_EXE_projectors"))
            .envs(infra::testing::process_env(config))
            .env("WORKUP_PROJECTORS_PORT", port.to_string())
            .env(
                "RUST_LOG",
                std::env::var("PROJECTORS_LOG").unwrap_or_else(|_| "warn,scylla=off".into()),
            )
            .spawn()?;
        Ok(Self { child, port })
    }

    /// Its consumers' lag and event counts, from its `/metrics`.
    async fn consumer_metrics(&self, http: &Client) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        match http.get(url).send().await {
            Ok(answer) => answer
                .text()
                .await
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    l.starts_with("workup_projector_lag_events")
                        || l.starts_with("workup_consumer_events_total")
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(error) => format!("no metrics: {error}"),
        }
    }

    /// Fails if the process has exited on its own.
    fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("the projectors exited: {status}"),
            None => Ok(()),
        }
    }

    /// SIGKILL: no chance to finish the event in flight or commit offsets.
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

/// A service running in-process until stopped.
struct Service {
    url: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    fn spawn<F>(port: u16, run: impl FnOnce(watch::Receiver<bool>) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Self {
            url: format!("http://127.0.0.1:{port}/api/v1"),
            stop,
            task: tokio::spawn(run(stopped)),
        }
    }

    async fn command_api(config: Config) -> anyhow::Result<Self> {
        let app = command_api::startup::Application::build(config).await?;
        Ok(Self::spawn(app.port(), |mut stopped| {
            app.run_until_stopped(async move {
                let _ = stopped.changed().await;
            })
        }))
    }

    async fn query_api(mut config: Config) -> anyhow::Result<Self> {
        config.http.consistency_wait_ms = POLL_WAIT_MS;
        let app = query_api::startup::Application::build(config).await?;
        Ok(Self::spawn(app.port(), |mut stopped| {
            app.run_until_stopped(async move {
                let _ = stopped.changed().await;
            })
        }))
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

/// `method` on `url` as `token`: the status and the JSON body (null when there is none).
async fn call(
    http: &Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
    consistency: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(position) = consistency {
        request = request.header("x-consistency-position", position);
    }
    let answer = request.send().await?;
    let status = answer.status();
    let bytes = answer.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).with_context(|| format!("{url}: not JSON"))?
    };
    Ok((status, body))
}

/// A user of the workload, and a token of theirs.
#[derive(Debug, Clone)]
struct Party {
    id: Uuid,
    token: String,
}

/// A job and what the workload made of it.
#[derive(Debug, Clone)]
struct JobRecord {
    id: Uuid,
    owner: usize,
    title: String,
    status: &'static str,
}

/// A proposal and what the workload made of it.
#[derive(Debug, Clone)]
struct ProposalRecord {
    id: Uuid,
    author: usize,
    status: &'static str,
}

/// Everything the workload wrote, and what the answers should say about it.
struct Workload {
    clients: Vec<Party>,
    freelancers: Vec<Party>,
    /// The freelancer who deleted their account.
    deleted: usize,
    jobs: Vec<JobRecord>,
    /// Proposal `2j + s` is the `s`-th proposal of job `j`.
    proposals: Vec<ProposalRecord>,
    /// Per client, the sum of its deposits in minor units (USD).
    balances: Vec<i64>,
}

/// command-api and the means to write through it.
struct Writer {
    http: Client,
    url: String,
    keys: TokenKeys,
}

impl Writer {
    /// `method` on `path` as `token`; must succeed; the answer's `id`.
    async fn write(&self, method: Method, path: &str, token: &str, body: Value) -> anyhow::Result<Uuid> {
        let url = format!("{}{path}", self.url);
        let (status, answer) = call(&self.http, method.clone(), &url, token, Some(body), None).await?;
        ensure!(status.is_success(), "{method} {path}: {status}: {answer}");
        answer["id"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("{method} {path}: no id in {answer}"))
    }

    async fn register(&self, role: Role, i: usize) -> anyhow::Result<Party> {
        let (path, name) = match role {
            Role::Client => ("/users/clients/register", format!("Client {i}")),
            _ => ("/users/freelancers/register", format!("Freelancer {i}")),
        };
        let email = format!("user{i}-{}@example.com", Uuid::new_v4().simple());
        let body = json!({"email": email, "password": "correct horse battery", "name": name});
        let answer = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await?;
        let status = answer.status();
        let answer: Value = answer.json().await?;
        ensure!(status == StatusCode::CREATED, "register: {status}: {answer}");
        let id: Uuid = answer["id"].as_str().unwrap_or_default().parse()?;
        let token = self
            .keys
            .issue(Actor::new(UserId::from_uuid(id), role))
            .map_err(|e| anyhow::anyhow!("token: {e:?}"))?
            .access_token;
        Ok(Party { id, token })
    }

    /// Run every write of `writes`, `CONCURRENCY` at a time.
    async fn all<T, F>(&self, writes: impl IntoIterator<Item = F>) -> anyhow::Result<Vec<T>>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        stream::iter(writes).buffered(CONCURRENCY).try_collect().await
    }

    /// The whole workload: several hundred events over every projected context.
    async fn run(&self) -> anyhow::Result<Workload> {
        let clients = self
            .all((0..CLIENTS).map(|i| self.register(Role::Client, i)))
            .await?;
        let freelancers = self
            .all((0..FREELANCERS).map(|i| self.register(Role::Freelancer, i)))
            .await?;
        let everyone: Vec<&Party> = clients.iter().chain(&freelancers).collect();
        self.all(everyone.iter().enumerate().map(|(i, user)| {
            let body = json!({"name": format!("User {i}"), "headline": format!("Headline {i}"), "bio": format!("All about user {i}.")});
            self.write(Method::PUT, "/users/me/profile", &user.token, body)
        }))
        .await?;
        // Writes to one stream go one after the other (concurrent ones would conflict).
        self.all(freelancers.iter().enumerate().map(|(i, f)| async move {
            for k in 0..2 {
                let body = json!({"title": format!("skill {i}.{k}"), "details": "years of it"});
                self.write(Method::POST, "/users/me/skills", &f.token, body)
                    .await?;
            }
            anyhow::Ok(())
        }))
        .await?;

        // Jobs: posted, half edited once, a quarter edited twice.
        let job_body = |i: usize, edit: usize| {
            let subject = if i.is_multiple_of(3) { "mill" } else { "bridge" };
            json!({
                "title": format!("Job {i} edit {edit}: repair the {subject}"),
                "description": format!("The {subject} needs work, job {i}."),
                "budget": {"minor": 10_000 + i as i64, "currency": "USD"},
                "skills": if i.is_multiple_of(2) { vec!["carpentry"] } else { vec!["masonry", "rust"] },
            })
        };
        let ids = self
            .all((0..JOBS).map(|i| {
                let owner = &clients[i / JOBS_PER_CLIENT];
                self.write(Method::POST, "/jobs", &owner.token, job_body(i, 0))
            }))
            .await?;
        let mut jobs: Vec<JobRecord> = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| JobRecord {
                id,
                owner: i / JOBS_PER_CLIENT,
                title: job_body(i, 0)["title"].as_str().unwrap_or_default().to_owned(),
                status: "open",
            })
            .collect();
        for (edit, every) in [(1, 2), (2, 4)] {
            let edited: Vec<usize> = (0..JOBS).filter(|i| i.is_multiple_of(every)).collect();
            self.all(edited.iter().map(|&i| {
                let path = format!("/jobs/{}", jobs[i].id);
                let token = &clients[jobs[i].owner].token;
                async move { self.write(Method::PUT, &path, token, job_body(i, edit)).await }
            }))
            .await?;
            for i in edited {
                jobs[i].title = job_body(i, edit)["title"].as_str().unwrap_or_default().to_owned();
            }
        }

        // Proposals: two per job on the first jobs, by every freelancer but the last.
        let due = (chrono::Utc::now().date_naive() + chrono::Days::new(30)).to_string();
        let terms = |letter: &str| {
            json!({"cover_letter": letter, "milestones": [
                {"title": "first half", "amount": {"minor": 4_000, "currency": "USD"}, "due_on": due},
                {"title": "second half", "amount": {"minor": 5_000, "currency": "USD"}, "due_on": due},
            ]})
        };
        let author = |p: usize| p % (FREELANCERS - 1);
        let ids = self
            .all((0..PROPOSED).map(|j| {
                let path = format!("/jobs/{}/proposals", jobs[j].id);
                let (freelancers, terms) = (&freelancers, &terms);
                async move {
                    let mut ids = Vec::new();
                    for p in [2 * j, 2 * j + 1] {
                        let body = terms(&format!("I can do job {j}."));
                        let token = &freelancers[author(p)].token;
                        ids.push(self.write(Method::POST, &path, token, body).await?);
                    }
                    anyhow::Ok(ids)
                }
            }))
            .await?;
        let mut proposals: Vec<ProposalRecord> = ids
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(p, id)| ProposalRecord {
                id,
                author: author(p),
                status: "submitted",
            })
            .collect();
        let edited: Vec<usize> = (REJECTED..PROPOSED)
            .filter(|j| j.is_multiple_of(2))
            .map(|j| 2 * j)
            .collect();
        self.all(edited.iter().map(|&p| {
            let path = format!("/proposals/{}", proposals[p].id);
            let token = &freelancers[proposals[p].author].token;
            let body = terms("Edited: I can do it faster.");
            async move { self.write(Method::PUT, &path, token, body).await }
        }))
        .await?;
        let withdrawn: Vec<usize> = (REJECTED..PROPOSED)
            .filter(|j| j.is_multiple_of(3))
            .map(|j| 2 * j + 1)
            .collect();
        self.all(withdrawn.iter().map(|&p| {
            let path = format!("/proposals/{}/withdraw", proposals[p].id);
            let token = &freelancers[proposals[p].author].token;
            async move { self.write(Method::POST, &path, token, json!({})).await }
        }))
        .await?;
        for p in withdrawn {
            proposals[p].status = "withdrawn";
        }
        self.all((0..ACCEPTED).map(|j| {
            let path = format!("/jobs/{}/proposals/{}/accept", jobs[j].id, proposals[2 * j].id);
            let token = &clients[jobs[j].owner].token;
            async move { self.write(Method::POST, &path, token, json!({})).await }
        }))
        .await?;
        for j in 0..ACCEPTED {
            jobs[j].status = "closed";
            proposals[2 * j].status = "accepted";
            proposals[2 * j + 1].status = "rejected";
        }
        self.all((ACCEPTED..REJECTED).map(|j| {
            let path = format!(
                "/jobs/{}/proposals/{}/reject",
                jobs[j].id,
                proposals[2 * j + 1].id
            );
            let token = &clients[jobs[j].owner].token;
            async move { self.write(Method::POST, &path, token, json!({})).await }
        }))
        .await?;
        for j in ACCEPTED..REJECTED {
            proposals[2 * j + 1].status = "rejected";
        }
        self.all(CLOSED.map(|j| {
            let path = format!("/jobs/{}/close", jobs[j].id);
            let token = &clients[jobs[j].owner].token;
            async move { self.write(Method::POST, &path, token, json!({})).await }
        }))
        .await?;
        for j in CLOSED {
            jobs[j].status = "closed";
        }

        // Money: a few deposits per client; one freelancer (without proposals) leaves.
        let deposit = |c: usize, k: i64| 1_000 * (c as i64 + 1) + k;
        self.all((0..CLIENTS).map(|c| {
            let token = &clients[c].token;
            async move {
                for k in 0..DEPOSITS_PER_CLIENT {
                    let body = json!({"amount": {"minor": deposit(c, k), "currency": "USD"}});
                    self.write(Method::POST, "/payments/wallet/deposits", token, body)
                        .await?;
                }
                anyhow::Ok(())
            }
        }))
        .await?;
        let balances = (0..CLIENTS)
            .map(|c| (0..DEPOSITS_PER_CLIENT).map(|k| deposit(c, k)).sum())
            .collect();
        let deleted = FREELANCERS - 1;
        let url = format!("{}/users/me", self.url);
        let (status, answer) = call(
            &self.http,
            Method::DELETE,
            &url,
            &freelancers[deleted].token,
            None,
            None,
        )
        .await?;
        ensure!(status.is_success(), "delete the account: {status}: {answer}");
        Ok(Workload {
            clients,
            freelancers,
            deleted,
            jobs,
            proposals,
            balances,
        })
    }
}

/// The last version of every stream of the ledger, by stream type.
async fn stream_versions(env: &TestEnv) -> anyhow::Result<Vec<(String, Uuid, i64)>> {
    let ledger = env.ledger().await?;
    Ok(sqlx::query_as(
        "SELECT stream_type, stream_id, max(version) FROM events GROUP BY stream_type, stream_id
         ORDER BY stream_type, stream_id",
    )
    .fetch_all(&ledger.pool())
    .await?)
}

/// Publish the whole ledger of `env` again, in ledger order, to the topics of `kafka`.
async fn republish(env: &TestEnv, kafka: &infra::config::KafkaConfig) -> anyhow::Result<usize> {
    let contexts = [
        (User::STREAM_TYPE, User::CONTEXT),
        (Job::STREAM_TYPE, Job::CONTEXT),
        (Proposal::STREAM_TYPE, Proposal::CONTEXT),
        (Contract::STREAM_TYPE, Contract::CONTEXT),
        (TerminationRequest::STREAM_TYPE, TerminationRequest::CONTEXT),
        (Wallet::STREAM_TYPE, Wallet::CONTEXT),
        (PaymentRequest::STREAM_TYPE, PaymentRequest::CONTEXT),
        (Withdrawal::STREAM_TYPE, Withdrawal::CONTEXT),
    ];
    let ledger = env.ledger().await?;
    let pending = ledger.outbox_lag().await?.events;
    ensure!(pending == 0, "{pending} events not relayed yet");
    for (stream_type, context) in contexts {
        sqlx::query(
            "INSERT INTO outbox (global_position, topic_context)
             SELECT global_position, $2 FROM events WHERE stream_type = $1",
        )
        .bind(stream_type)
        .bind(context.name())
        .execute(&ledger.pool())
        .await?;
    }
    let unmapped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE global_position NOT IN (SELECT global_position FROM outbox)",
    )
    .fetch_one(&ledger.pool())
    .await?;
    ensure!(unmapped == 0, "{unmapped} events of unknown stream types");
    Ok(Relay::new(ledger, kafka, 100)?.run_until_idle().await?)
}

/// A query-api and the means to read through it.
struct Reader {
    http: Client,
    url: String,
}

impl Reader {
    async fn get(&self, path: &str, token: &str) -> anyhow::Result<(StatusCode, Value)> {
        call(
            &self.http,
            Method::GET,
            &format!("{}{path}", self.url),
            token,
            None,
            None,
        )
        .await
    }

    /// The answer to GET `path` as `token`: its status and body.
    async fn answer(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        let (status, body) = self.get(path, token).await?;
        Ok(json!({"status": status.as_u16(), "body": body}))
    }

    /// Every page of the list at `path` (with the query `query`), `limit` items a page.
    async fn pages(
        &self,
        path: &str,
        query: &[(&str, &str)],
        token: &str,
        limit: usize,
    ) -> anyhow::Result<Value> {
        let mut pages = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let limit = limit.to_string();
            let mut params = query.to_vec();
            params.push(("limit", &limit));
            if let Some(page_token) = &next {
                params.push(("page_token", page_token));
            }
            let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), &params)?;
            let (status, page) = call(&self.http, Method::GET, url.as_str(), token, None, None).await?;
            next = page["next_page_token"].as_str().map(str::to_owned);
            pages.push(json!({"status": status.as_u16(), "page": page}));
            if next.is_none() || pages.len() > 100 {
                break;
            }
        }
        Ok(Value::Array(pages))
    }

    /// Whether the read model has applied the last version of every stream of `streams`: reads
    /// carrying them as consistency tokens (each waits on its read model's applied versions)
    /// answer without a 504.
    async fn caught_up(&self, streams: &[(String, Uuid, i64)], token: &str) -> anyhow::Result<bool> {
        let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (stream_type, id, version) in streams {
            by_type
                .entry(stream_type)
                .or_default()
                .push(format!("{stream_type}:{id}:{version}"));
        }
        for (stream_type, positions) in by_type {
            let path = match stream_type {
                "user" => "/users/me/profile",
                "job" => "/jobs/me",
                "proposal" => "/proposals/me",
                "wallet" => "/payments/wallet",
                other => bail!("no read waits on {other} streams"),
            };
            for chunk in positions.chunks(64) {
                let url = format!("{}{path}", self.url);
                let consistency = chunk.join(",");
                let (status, body) =
                    call(&self.http, Method::GET, &url, token, None, Some(&consistency)).await?;
                match status {
                    StatusCode::GATEWAY_TIMEOUT => return Ok(false),
                    s if s.is_success() || s == StatusCode::NOT_FOUND => {}
                    // Seen once on a loaded machine (cause not found): a 500 from a read; polled
                    // again, and a lasting one fails the test by its deadline.
                    s if s.is_server_error() => {
                        eprintln!("GET {path} with a token: {s}: {body}; polling again");
                        return Ok(false);
                    }
                    s => bail!("GET {path} with a token: {s}: {body}"),
                }
            }
        }
        Ok(true)
    }

    /// How far the jobs projector got: the sum of the versions of every visible job.
    async fn jobs_progress(&self, work: &Workload) -> anyhow::Result<i64> {
        let mut sum = 0;
        for client in &work.clients {
            let (status, page) = self.get("/jobs/me?limit=100", &client.token).await?;
            ensure!(status == StatusCode::OK, "GET /jobs/me: {status}: {page}");
            sum += page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|job| job["version"].as_i64())
                .sum::<i64>();
        }
        Ok(sum)
    }

    /// One request of a snapshot: every page of it when `page_limit` is set.
    async fn read(&self, request: &SnapshotRead) -> anyhow::Result<Value> {
        let query: Vec<(&str, &str)> = request.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match request.page_limit {
            Some(limit) => self.pages(&request.path, &query, &request.token, limit).await,
            None => self.answer(&request.path, &request.token).await,
        }
    }

    /// Every answer of the read model about the workload, by request.
    async fn snapshot(&self, work: &Workload) -> anyhow::Result<BTreeMap<String, Value>> {
        let mut reads = Vec::new();
        let mut read = |as_whom: &str, path: String, token: &str, page_limit: Option<usize>| {
            let pages = page_limit.map(|l| format!(" pages of {l}")).unwrap_or_default();
            reads.push(SnapshotRead {
                key: format!("{as_whom}GET {path}{pages}"),
                path,
                query: Vec::new(),
                token: token.to_owned(),
                page_limit,
            });
        };
        let parties = work
            .clients
            .iter()
            .map(|p| ("client", p))
            .chain(work.freelancers.iter().map(|p| ("freelancer", p)));
        for (role, party) in parties {
            let me = format!("{role} {} ", party.id);
            read("", format!("/users/{}", party.id), &work.clients[0].token, None);
            for path in [
                "/users/me/profile",
                "/payments/wallet",
                "/payments/requests/me",
                "/contracts/me",
            ] {
                read(&me, path.into(), &party.token, None);
            }
            let lists = [
                ("/jobs/me", 7),
                ("/proposals/me", 3),
                ("/payments/wallet/transactions", 2),
            ];
            for (path, limit) in lists {
                read(&me, path.into(), &party.token, Some(limit));
            }
        }
        for job in &work.jobs {
            let owner = &work.clients[job.owner].token;
            read("", format!("/jobs/{}", job.id), owner, None);
            read("", format!("/jobs/{}/proposals", job.id), owner, Some(1));
        }
        for proposal in &work.proposals {
            let author = &work.freelancers[proposal.author].token;
            read("", format!("/proposals/{}", proposal.id), author, None);
        }
        for q in ["mill", "bridge", "rust", "mill masonry", "nothing"] {
            reads.push(SnapshotRead {
                key: format!("GET /jobs/search?q={q} pages of 9"),
                path: "/jobs/search".into(),
                query: vec![("q", q.to_owned())],
                token: work.clients[1].token.clone(),
                page_limit: Some(9),
            });
        }
        stream::iter(&reads)
            .map(|request| async move { Ok((request.key.clone(), self.read(request).await?)) })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
    }
}

/// A request of a [`Reader::snapshot`].
struct SnapshotRead {
    /// What the answer is filed under.
    key: String,
    path: String,
    query: Vec<(&'static str, String)>,
    token: String,
    page_limit: Option<usize>,
}

/// Poll `probe` until it holds, for at most `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + within;
    while !probe().await? {
        if Instant::now() > deadline {
            bail!("{what}: not within {} s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// What the workload wrote, as the answers must show it (the killed read model's answers are
/// also compared with the reference's, wholesale).
fn check_against_workload(
    answers: &BTreeMap<String, Value>,
    work: &Workload,
    versions: &HashMap<Uuid, i64>,
) -> anyhow::Result<()> {
    let answer = |key: &str| -> anyhow::Result<&Value> {
        answers.get(key).with_context(|| format!("no answer to {key}"))
    };
    for job in &work.jobs {
        let got = answer(&format!("GET /jobs/{}", job.id))?;
        let body = &got["body"];
        ensure!(got["status"] == 200, "job {}: {got}", job.id);
        ensure!(
            body["title"] == job.title.as_str(),
            "job {} title: {body}",
            job.id
        );
        ensure!(body["status"] == job.status, "job {} status: {body}", job.id);
        ensure!(
            body["version"].as_i64() == versions.get(&job.id).copied(),
            "job {} version: {body}",
            job.id
        );
    }
    for proposal in &work.proposals {
        let got = answer(&format!("GET /proposals/{}", proposal.id))?;
        let body = &got["body"];
        ensure!(got["status"] == 200, "proposal {}: {got}", proposal.id);
        ensure!(
            body["status"] == proposal.status,
            "proposal {} status: {body}",
            proposal.id
        );
        ensure!(
            body["version"].as_i64() == versions.get(&proposal.id).copied(),
            "proposal {} version: {body}",
            proposal.id
        );
    }
    for (c, client) in work.clients.iter().enumerate() {
        let me = format!("client {}", client.id);
        let wallet = answer(&format!("{me} GET /payments/wallet"))?;
        ensure!(
            wallet["body"]["balance"]["minor"].as_i64() == Some(work.balances[c]),
            "client {c} wallet: {wallet}"
        );
        let pages = answer(&format!("{me} GET /jobs/me pages of 7"))?;
        let listed = pages
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["page"]["items"].as_array().cloned().unwrap_or_default())
            .count();
        ensure!(listed == JOBS_PER_CLIENT, "client {c} lists {listed} jobs");
        let profile = answer(&format!("GET /users/{}", client.id))?;
        ensure!(
            profile["body"]["name"] == format!("User {c}").as_str(),
            "client {c} profile: {profile}"
        );
    }
    let deleted = answer(&format!("GET /users/{}", work.freelancers[work.deleted].id))?;
    ensure!(deleted["status"] == 404, "the deleted account: {deleted}");
    let freelancer = answer(&format!("GET /users/{}", work.freelancers[0].id))?;
    ensure!(
        freelancer["body"]["skills"].as_array().map(Vec::len) == Some(2),
        "freelancer 0 skills: {freelancer}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_killed_mid_stream_converges_to_the_answers_of_one_that_never_stopped()
-> anyhow::Result<()> {
    let started = Instant::now();
    let killed_env = TestEnv::new().await?;
    let reference_env = TestEnv::new().await?;
    let killed = killed_env.config.clone();
    let mut reference = reference_env.config.clone();
    // One token secret: the workload's tokens are good on both query-apis.
    reference.auth = killed.auth.clone();
    // One ledger: the personal data keys that open the republished events live in it.
    reference.postgres = killed.postgres.clone();
    let http = Client::builder().timeout(Duration::from_secs(30)).build()?;

    // The workload, relayed to the killed projector's topics.
    let command_api = Service::command_api(killed.clone()).await?;
    let writer = Writer {
        http: http.clone(),
        url: command_api.url.clone(),
        keys: TokenKeys::new(&killed.auth)?,
    };
    let work = writer.run().await?;
    let ledger = killed_env.ledger().await?;
    eventually(
        "the relay publishes everything",
        Duration::from_secs(30),
        || async { Ok(ledger.outbox_lag().await?.events == 0) },
    )
    .await?;
    command_api.stop().await?;
    let streams = stream_versions(&killed_env).await?;
    let events: i64 = streams.iter().map(|(_, _, v)| v).sum();
    let job_total: i64 = streams
        .iter()
        .filter(|(t, _, _)| t == Job::STREAM_TYPE)
        .map(|(_, _, v)| v)
        .sum();
    let versions: HashMap<Uuid, i64> = streams.iter().map(|(_, id, v)| (*id, *v)).collect();
    // The same ledger, in the same order, to the reference's topics.
    let republished = republish(&killed_env, &reference.kafka).await?;
    ensure!(
        republished as i64 == events,
        "republished {republished} of {events} events"
    );
    eprintln!(
        "{events} events in {} streams written and relayed twice in {:.1} s",
        streams.len(),
        started.elapsed().as_secs_f64()
    );

    let killed_reads = Service::query_api(killed.clone()).await?;
    let reference_reads = Service::query_api(reference.clone()).await?;
    let killed_reader = Reader {
        http: http.clone(),
        url: killed_reads.url.clone(),
    };
    let reference_reader = Reader {
        http: http.clone(),
        url: reference_reads.url.clone(),
    };

    // Both start on the backlog; one is killed twice part-way (reading jobs meanwhile, which
    // fills the job cache with versions the restarted projector must replace).
    let _reference_projectors = ProjectorsProcess::start(&reference)?;
    let mut projectors = ProjectorsProcess::start(&killed)?;
    let mut seen = 0;
    for kill in 1..=2 {
        let since = seen;
        let target = since + (job_total - since) / 3;
        let mut reads = 0usize;
        let mut progress = since;
        let deadline = Instant::now() + CONVERGENCE;
        while progress <= since || progress < target {
            if Instant::now() > deadline {
                let metrics = projectors.consumer_metrics(&http).await;
                bail!("no progress past {progress} of {job_total}; the consumers:\n{metrics}");
            }
            projectors.check_running()?;
            let job = &work.jobs[reads % JOBS];
            killed_reader
                .get(&format!("/jobs/{}", job.id), &work.clients[job.owner].token)
                .await?;
            reads += 1;
            progress = killed_reader.jobs_progress(&work).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(
            progress < job_total,
            "kill {kill}: the projectors had applied every job event ({progress}) before they \
             could be killed: write more events"
        );
        projectors.kill()?;
        eprintln!(
            "kill {kill} at {progress} of {job_total} job versions, {:.1} s",
            started.elapsed().as_secs_f64()
        );
        seen = progress;
        // The dead process's group members are evicted only after the session timeout; the
        // local broker (tansu 0.6.0) sometimes completes the rebalance of a member that joins
        // before that with an empty assignment and never rebalances again, so the restarted
        // projectors would sit idle forever. Real Kafka has no such defect; this test is about
        // the read models, so it restarts once the dead members are gone.
        tokio::time::sleep(GROUP_SESSION_TIMEOUT + Duration::from_secs(1)).await;
        projectors = ProjectorsProcess::start(&killed)?;
    }

    eventually("the reference catches up", CONVERGENCE, || {
        reference_reader.caught_up(&streams, &work.clients[0].token)
    })
    .await?;
    eprintln!(
        "the reference caught up, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let restarted = eventually("the restarted projectors catch up", CONVERGENCE, || {
        killed_reader.caught_up(&streams, &work.clients[0].token)
    })
    .await;
    if let Err(error) = restarted {
        let metrics = projectors.consumer_metrics(&http).await;
        bail!("{error}; the consumers:\n{metrics}");
    }
    eprintln!(
        "the restarted projectors caught up, {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (expected, actual) =
        tokio::try_join!(reference_reader.snapshot(&work), killed_reader.snapshot(&work))?;
    check_against_workload(&expected, &work, &versions).context("the reference")?;
    let differing: Vec<&String> = expected
        .keys()
        .filter(|key| actual.get(*key) != expected.get(*key))
        .collect();
    for key in differing.iter().take(5) {
        eprintln!(
            "{key}:\n  killed:    {}\n  reference: {}",
            actual.get(*key).unwrap_or(&Value::Null),
            expected[*key]
        );
    }
    ensure!(
        differing.is_empty() && actual.len() == expected.len(),
        "{} of {} answers differ",
        differing.len(),
        expected.len()
    );
    check_against_workload(&actual, &work, &versions).context("the restarted projectors")?;
    eprintln!(
        "{} answers equal; {:.1} s",
        expected.len(),
        started.elapsed().as_secs_f64()
    );

    projectors.kill()?;
    killed_reads.stop().await?;
    reference_reads.stop().await
}
