//! The marketplace load of the soak: actors running the whole flow (register → job → proposals
//! → contract → milestones → payments → withdrawals) over HTTP, with conflicting commands on
//! purpose: two proposals of one job accepted at once (and one of them twice), every payment
//! request paid twice at once, and a withdrawal racing each payment.
//!
//! Every command carries an `Idempotency-Key` and is retried with it (like a careful client)
//! while there is no answer, a 5xx or a 429, across the command-api instances; the final answer
//! of each is kept in a [`Sent`] for the invariants (2xx in the ledger, 4xx not).

use domain::{ContractId, MilestoneId, PaymentRequestId, ProposalId};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use uuid::Uuid;

/// How long one command is retried (same key) before the client gives up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How long a flow waits for a saga's effect to show on the read side.
const SAGA_WAIT: Duration = Duration::from_secs(120);
const PASSWORD: &str = "correct horse battery";
const INSUFFICIENT_FUNDS: &str = "/problems/insufficient-funds";
const VERSION_CONFLICT: &str = "/problems/version-conflict";

/// One command as the client saw it in the end.
#[derive(Debug, Clone)]
pub struct Sent {
    /// e.g. `POST /jobs/{id}/proposals/{pid}/accept`.
    pub route: &'static str,
    /// The caller's user id (nil without a token).
    pub caller: Uuid,
    pub key: String,
    /// The last answer's status; `None`: never answered.
    pub status: Option<u16>,
    /// Attempts made (1 = answered the first time).
    pub attempts: u32,
    /// The problem `type` of a 4xx or 5xx answer.
    pub problem: Option<String>,
}

/// A signed-up user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub token: String,
}

/// What the actors share: the service URLs, the client, and the record of every command.
pub struct Gateway {
    http: Client,
    command_urls: Vec<String>,
    query_url: String,
    next: AtomicUsize,
    sent: Mutex<Vec<Sent>>,
    /// Every signed-up user (the invariants read their wallets).
    users: Mutex<Vec<User>>,
    /// How each flow ended, by step.
    flows: Mutex<BTreeMap<&'static str, usize>>,
}

/// An answer: status and JSON body.
struct Answer {
    status: Option<u16>,
    body: Value,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
    /// The problem type of a refusal.
    fn problem(&self) -> Option<String> {
        self.body["type"].as_str().map(str::to_owned)
    }
    fn id(&self) -> Option<Uuid> {
        self.body["id"].as_str()?.parse().ok()
    }
}

impl Gateway {
    pub fn new(http: Client, command_urls: Vec<String>, query_url: String) -> Self {
        Self {
            http,
            command_urls,
            query_url,
            next: AtomicUsize::new(0),
            sent: Mutex::default(),
            users: Mutex::default(),
            flows: Mutex::default(),
        }
    }

    /// Every command sent so far, with its final answer.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.sent).clone()
    }

    /// Every user signed up so far.
    pub fn users(&self) -> Vec<User> {
        lock(&self.users).clone()
    }

    /// Flows by how they ended.
    pub fn flows(&self) -> BTreeMap<&'static str, usize> {
        lock(&self.flows).clone()
    }

    /// Send a command (with a fresh idempotency key), retrying as described in the module doc;
    /// refused for a version conflict (another command changed the aggregate meanwhile), it is
    /// sent again as a new command, at most three times.
    async fn command(
        &self,
        route: &'static str,
        path: String,
        user: Option<&User>,
        body: Option<Value>,
    ) -> Answer {
        let mut conflicts = 0;
        loop {
            let answer = self.command_once(route, &path, user, body.as_ref()).await;
            if answer.problem().as_deref() != Some(VERSION_CONFLICT) || conflicts == 3 {
                return answer;
            }
            conflicts += 1;
        }
    }

    /// One command under one idempotency key.
    async fn command_once(
        &self,
        route: &'static str,
        path: &str,
        user: Option<&User>,
        body: Option<&Value>,
    ) -> Answer {
        let key = Uuid::new_v4().to_string();
        let started = Instant::now();
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(100);
        let answer = loop {
            attempts += 1;
            let base =
                &self.command_urls[self.next.fetch_add(1, Ordering::Relaxed) % self.command_urls.len()];
            let mut request = self
                .http
                .request(Method::POST, format!("{base}/api/v1{path}"))
                .header("idempotency-key", &key);
            if let Some(user) = user {
                request = request.bearer_auth(&user.token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let answer = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.json().await.unwrap_or(Value::Null);
                    Answer {
                        status: Some(status.as_u16()),
                        body,
                    }
                }
                Err(_) => Answer {
                    status: None,
                    body: Value::Null,
                },
            };
            let retry = match answer.status {
                None => true,
                Some(s) => s >= 500 || s == StatusCode::TOO_MANY_REQUESTS.as_u16(),
            };
            if !retry || started.elapsed() > GIVE_UP_AFTER {
                break answer;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        };
        lock(&self.sent).push(Sent {
            route,
            caller: user.map_or(Uuid::nil(), |u| u.id),
            key,
            status: answer.status,
            attempts,
            problem: answer.body["type"].as_str().map(str::to_owned),
        });
        answer
    }

    /// GET from query-api; the body of a 200.
    async fn query(&self, path: &str, user: &User) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/api/v1{path}", self.query_url))
            .bearer_auth(&user.token)
            .send()
            .await
            .ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        response.json().await.ok()
    }

    /// Poll the page at `path` until one of its items has `field` = `id` (a saga's effect on
    /// the read side); `None` after [`SAGA_WAIT`] or on `stop`.
    async fn listed(&self, path: &str, user: &User, stop: &AtomicBool, field: &str, id: &str) -> Option<()> {
        let started = Instant::now();
        while started.elapsed() < SAGA_WAIT && !stop.load(Ordering::Relaxed) {
            if self
                .query(path, user)
                .await
                .is_some_and(|page| has(&page, field, id))
            {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    /// Register a user of `role` and log in (both retried like any command).
    async fn sign_up(&self, role: &str, tag: &str) -> Option<User> {
        let email = format!("chaos-{role}-{tag}@example.com");
        let route = if role == "clients" {
            "POST /users/clients/register"
        } else {
            "POST /users/freelancers/register"
        };
        let created = self
            .command(
                route,
                format!("/users/{role}/register"),
                None,
                Some(json!({"email": email, "password": PASSWORD, "name": format!("Chaos {tag}")})),
            )
            .await;
        let id = created.id()?;
        let login = self
            .command(
                "POST /users/login",
                "/users/login".into(),
                None,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        let token = login.body["access_token"].as_str()?.to_owned();
        let user = User { id, token };
        lock(&self.users).push(user.clone());
        Some(user)
    }

    fn ended(&self, how: &'static str) {
        *lock(&self.flows).entry(how).or_default() += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn money(minor: i64) -> Value {
    json!({"minor": minor, "currency": "USD"})
}

fn has(page: &Value, field: &str, id: &str) -> bool {
    page["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i[field].as_str() == Some(id)))
}

/// Run `actors` actors until `stop`; actor `n` draws from a generator seeded by `seed` and `n`.
pub async fn run(gateway: Arc<Gateway>, actors: usize, seed: u64, stop: Arc<AtomicBool>) {
    let tasks: Vec<_> = (0..actors)
        .map(|n| {
            let (gateway, stop) = (gateway.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ ((n as u64 + 1) << 32));
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ended = flow(&gateway, &mut rng, &stop, &format!("{seed}-{n}-{round}")).await;
                    gateway.ended(ended);
                    round += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// One whole flow; how it ended.
async fn flow(g: &Gateway, rng: &mut StdRng, stop: &AtomicBool, tag: &str) -> &'static str {
    macro_rules! step {
        ($e:expr, $why:literal) => {{
            if stop.load(Ordering::Relaxed) {
                return "stopped by the end of the load";
            }
            match $e {
                Some(v) => v,
                None if stop.load(Ordering::Relaxed) => return "stopped by the end of the load",
                None => return $why,
            }
        }};
    }
    let client = step!(
        g.sign_up("clients", &format!("{tag}c")).await,
        "gave up: client sign-up"
    );
    let first = step!(
        g.sign_up("freelancers", &format!("{tag}a")).await,
        "gave up: freelancer sign-up"
    );
    let second = step!(
        g.sign_up("freelancers", &format!("{tag}b")).await,
        "gave up: freelancer sign-up"
    );

    let job = g
        .command(
            "POST /jobs",
            "/jobs".into(),
            Some(&client),
            Some(json!({"title": "Chaos loom", "description": "Built under faults", "budget": money(90_000), "skills": ["weaving"]})),
        )
        .await;
    let job_id = step!(job.id(), "gave up: job");

    let mut proposals = Vec::new();
    let mut plans = Vec::new();
    for freelancer in [&first, &second] {
        let amounts: Vec<i64> = (0..rng.random_range(1..=3))
            .map(|_| rng.random_range(10..=200) * 100)
            .collect();
        let milestones: Vec<Value> = amounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let due = chrono::Utc::now().date_naive() + chrono::Days::new(10 + i as u64);
                json!({"title": format!("part {i}"), "amount": money(*a), "due_on": due.to_string()})
            })
            .collect();
        let proposal = g
            .command(
                "POST /jobs/{id}/proposals",
                format!("/jobs/{job_id}/proposals"),
                Some(freelancer),
                Some(json!({"cover_letter": "I have done this before.", "milestones": milestones})),
            )
            .await;
        proposals.push(step!(proposal.id(), "gave up: proposal"));
        plans.push(amounts);
    }

    // Conflict: both proposals accepted at once, the first one twice (different keys).
    let accept = |p: Uuid| {
        g.command(
            "POST /jobs/{id}/proposals/{pid}/accept",
            format!("/jobs/{job_id}/proposals/{p}/accept"),
            Some(&client),
            None,
        )
    };
    let (a1, b, a2) = tokio::join!(accept(proposals[0]), accept(proposals[1]), accept(proposals[0]));
    let winner = if a1.ok() || a2.ok() {
        0
    } else if b.ok() {
        1
    } else {
        return "no acceptance succeeded";
    };
    let freelancer = if winner == 0 { &first } else { &second };
    let proposal_id = ProposalId::from_uuid(proposals[winner]);
    let amounts = &plans[winner];
    let contract_id = ContractId::for_proposal(proposal_id).to_string();
    step!(
        g.listed("/contracts/me", &client, stop, "contract_id", &contract_id)
            .await,
        "contract not seen in time"
    );

    // Funds: sometimes only half of what the contract needs (a payment is then refused, and
    // paid after a second deposit).
    let total: i64 = amounts.iter().sum();
    let deposit = if rng.random_bool(0.7) { total } else { total / 2 };
    let deposited = g
        .command(
            "POST /payments/wallet/deposits",
            "/payments/wallet/deposits".into(),
            Some(&client),
            Some(json!({"amount": money(deposit)})),
        )
        .await;
    step!(deposited.ok().then_some(()), "gave up: deposit");
    let mut topped_up = deposit == total;

    for (i, amount) in amounts.iter().enumerate() {
        let milestone = MilestoneId::for_proposal(proposal_id, i);
        let request_id = PaymentRequestId::for_milestone(milestone).to_string();
        let base = format!("/contracts/{contract_id}/milestones/{milestone}");
        for _ in 0..2 {
            let progressed = g
                .command(
                    "POST /contracts/{id}/milestones/{mid}/progress",
                    format!("{base}/progress"),
                    Some(freelancer),
                    None,
                )
                .await;
            step!(progressed.ok().then_some(()), "gave up: milestone progress");
        }
        let evaluated = g
            .command(
                "POST /contracts/{id}/milestones/{mid}/evaluate",
                format!("{base}/evaluate"),
                Some(&client),
                Some(json!({"verdict": "accepted"})),
            )
            .await;
        step!(evaluated.ok().then_some(()), "gave up: milestone evaluation");
        step!(
            g.listed(
                "/payments/requests/me?role=client",
                &client,
                stop,
                "payment_request_id",
                &request_id
            )
            .await,
            "payment request not seen in time"
        );
        // Conflict: the request paid twice at once, while the freelancer withdraws.
        let pay = || {
            g.command(
                "POST /payments/requests/{id}/pay",
                format!("/payments/requests/{request_id}/pay"),
                Some(&client),
                None,
            )
        };
        let withdrawal = rng.random_range(1..=*amount);
        let withdraw = g.command(
            "POST /payments/wallet/withdrawals",
            "/payments/wallet/withdrawals".into(),
            Some(freelancer),
            Some(json!({"amount": money(withdrawal)})),
        );
        let (p1, p2, _) = tokio::join!(pay(), pay(), withdraw);
        let mut paid = p1.ok() || p2.ok();
        let mut refusal = [p1.problem(), p2.problem()].into_iter().flatten().last();
        // Like a careful client: after too little money, deposit the rest; after a version
        // conflict (the withdrawal raced it), pay again.
        for _ in 0..3 {
            if paid {
                break;
            }
            match refusal.as_deref() {
                Some(INSUFFICIENT_FUNDS) if !topped_up => {
                    let more = g
                        .command(
                            "POST /payments/wallet/deposits",
                            "/payments/wallet/deposits".into(),
                            Some(&client),
                            Some(json!({"amount": money(total - deposit)})),
                        )
                        .await;
                    step!(more.ok().then_some(()), "gave up: second deposit");
                    topped_up = true;
                }
                Some(VERSION_CONFLICT) => {}
                _ => break,
            }
            let again = pay().await;
            paid = again.ok();
            refusal = again.problem();
        }
        if !paid {
            return "payment refused";
        }
    }
    "completed"
}
