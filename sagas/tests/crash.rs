//! The sagas process killed (SIGKILL) at the worst moments and started again: every step happens
//! exactly once in effect, and deadlines fire after a restart (DESIGN §7).
//!
//! command-api runs in-process (with its relay); the sagas run as the real binary, a child
//! process, so they can be killed.

use anyhow::bail;
use infra::testing::TestEnv;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use std::{
    future::Future,
    process::{Child, Command},
    time::{Duration, Instant},
};
use tokio::sync::watch;
use uuid::Uuid;

/// The sagas binary on `env`; killed (SIGKILL) when dropped.
struct SagasProcess(Child);

impl SagasProcess {
    fn start(env: &TestEnv, payment_period_secs: u64) -> anyhow::Result<Self> {
        Self::start_on(env, payment_period_secs, 0)
    }

    /// Started with its HTTP endpoint on `port`.
    fn start_on(env: &TestEnv, payment_period_secs: u64, port: u16) -> anyhow::Result<Self> {
        let child = Command::new(env!("CARGO_BIN_EXE_sagas"))
            .envs(env.process_env())
            .env("WORKUP_SAGAS_PORT", port.to_string())
            .env("WORKUP_DEADLINE_POLL_MS", "200")
            .env(
                "WORKUP_PAYMENT_REQUEST_PERIOD_SECS",
                payment_period_secs.to_string(),
            )
            .env(
                "RUST_LOG",
                std::env::var("SAGAS_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()?;
        Ok(Self(child))
    }

    fn kill(mut self) -> anyhow::Result<()> {
        self.0.kill()?;
        self.0.wait()?;
        Ok(())
    }

    /// Kill it and wait until the broker has dropped its group members (session timeout 10 s):
    /// the local broker (tansu 0.6.0) can leave a member that joins before that with no
    /// partitions, for good.
    async fn kill_for_restart(self) -> anyhow::Result<()> {
        self.kill()?;
        tokio::time::sleep(Duration::from_secs(11)).await;
        Ok(())
    }
}

impl Drop for SagasProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// command-api in-process on a fresh env, and a client of it.
struct Stack {
    env: TestEnv,
    url: String,
    http: Client,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Stack {
    async fn start() -> anyhow::Result<Self> {
        let env = TestEnv::new().await?;
        let app = command_api::startup::Application::build(env.config.clone()).await?;
        let url = format!("http://127.0.0.1:{}", app.port());
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.changed().await;
        }));
        Ok(Self {
            env,
            url,
            http: Client::builder().timeout(Duration::from_secs(30)).build()?,
            stop,
            server,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.server.await?
    }

    /// POST `body` to `path` as `token`; the answer's id, which must come with `status`.
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
        status: StatusCode,
    ) -> anyhow::Result<String> {
        let mut request = self.http.post(format!("{}/api/v1{path}", self.url)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await?;
        let actual = answer.status();
        let body: Value = answer.json().await?;
        if actual != status {
            bail!("POST {path}: expected {status}, got {actual}: {body}");
        }
        Ok(body["id"]
            .as_str()
            .or(body["access_token"].as_str())
            .unwrap_or_default()
            .to_owned())
    }

    async fn user(&self, role: &str, name: &str) -> anyhow::Result<String> {
        let email = format!("{name}-{}@example.com", Uuid::new_v4().simple());
        let credentials = json!({"email": email, "password": "correct horse battery", "name": name});
        self.post(
            &format!("/users/{role}/register"),
            None,
            credentials.clone(),
            StatusCode::CREATED,
        )
        .await?;
        self.post("/users/login", None, credentials, StatusCode::OK).await
    }

    /// Client and freelancer, a job, a one-milestone proposal: (client, freelancer, job, proposal).
    async fn proposal(&self) -> anyhow::Result<(String, String, String, String)> {
        let client = self.user("clients", "carla").await?;
        let freelancer = self.user("freelancers", "fred").await?;
        let job = json!({"title": "Fix the mill", "description": "Water wheel", "budget": {"minor": 9_000, "currency": "USD"}});
        let job = self
            .post("/jobs", Some(&client), job, StatusCode::CREATED)
            .await?;
        let due = (chrono::Utc::now().date_naive() + chrono::Days::new(10)).to_string();
        let terms = json!({"cover_letter": "I know mills.", "milestones": [{"title": "wheel", "amount": {"minor": 9_000, "currency": "USD"}, "due_on": due}]});
        let proposal = self
            .post(
                &format!("/jobs/{job}/proposals"),
                Some(&freelancer),
                terms,
                StatusCode::CREATED,
            )
            .await?;
        Ok((client, freelancer, job, proposal))
    }

    /// How many events of `event_type` the ledger holds.
    async fn count(&self, event_type: &str) -> anyhow::Result<i64> {
        let ledger = self.env.ledger().await?;
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
                .bind(event_type)
                .fetch_one(&ledger.pool())
                .await?,
        )
    }
}

async fn eventually<F, Fut>(what: &str, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe().await? {
        if Instant::now() > deadline {
            bail!("{what}: not within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saga_killed_between_its_effect_and_its_offset_commit_acts_once() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (client, freelancer, job, proposal) = stack.proposal().await?;
    let contract = domain::ContractId::for_proposal(proposal.parse()?).to_string();

    // Hold the saga history table: the saga can initiate the contract (its ledger append commits)
    // but then blocks recording the step, before it stores its offset.
    let mut blocker = PgConnection::connect(&stack.env.config.postgres.url).await?;
    blocker.execute("BEGIN").await?;
    blocker.execute("LOCK TABLE saga_steps IN EXCLUSIVE MODE").await?;
    let sagas = SagasProcess::start(&stack.env, 3600)?;
    stack
        .post(
            &format!("/jobs/{job}/proposals/{proposal}/accept"),
            Some(&client),
            json!({}),
            StatusCode::OK,
        )
        .await?;
    eventually("the contract is initiated", || async {
        Ok(stack.count("ContractInitiated").await? == 1)
    })
    .await?;
    sagas.kill_for_restart().await?;
    blocker.execute("ROLLBACK").await?;

    // Restarted, it gets the ProposalAccepted again: the ledger answers the same command id.
    let sagas = SagasProcess::start(&stack.env, 3600)?;
    let ledger = stack.env.ledger().await?;
    let store = infra::sagas::SagaStore::new(ledger.clone());
    let contract_id: Uuid = contract.parse()?;
    eventually("the redelivered step is recorded", || async {
        Ok(!store.history(contract_id).await?.is_empty())
    })
    .await?;
    let steps = store.history(contract_id).await?;
    assert_eq!(steps[0].command, "InitiateContract");
    assert_eq!(
        steps[0].outcome, "replayed",
        "the event was redelivered and answered by the ledger"
    );
    assert_eq!(stack.count("ContractInitiated").await?, 1, "one contract");

    // The rest of the flow on the restarted process: one payment request, one completion.
    let milestone = domain::MilestoneId::for_proposal(proposal.parse()?, 0);
    let base = format!("/contracts/{contract}/milestones/{milestone}");
    for _ in 0..2 {
        stack
            .post(
                &format!("{base}/progress"),
                Some(&freelancer),
                json!({}),
                StatusCode::OK,
            )
            .await?;
    }
    stack
        .post(
            &format!("{base}/evaluate"),
            Some(&client),
            json!({"verdict": "accepted"}),
            StatusCode::OK,
        )
        .await?;
    eventually("the payment request is created", || async {
        Ok(stack.count("PaymentRequestCreated").await? == 1)
    })
    .await?;
    let request = domain::PaymentRequestId::for_milestone(milestone).to_string();
    stack
        .post(
            "/payments/wallet/deposits",
            Some(&client),
            json!({"amount": {"minor": 9_000, "currency": "USD"}}),
            StatusCode::OK,
        )
        .await?;
    stack
        .post(
            &format!("/payments/requests/{request}/pay"),
            Some(&client),
            json!({}),
            StatusCode::OK,
        )
        .await?;
    eventually("the contract completes", || async {
        Ok(stack.count("ContractCompleted").await? == 1)
    })
    .await?;
    assert_eq!(stack.count("PaymentRequestCreated").await?, 1);
    assert_eq!(stack.count("MilestonePaid").await?, 1);
    sagas.kill()?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_request_deadline_fires_after_a_sagas_restart() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (client, freelancer, job, proposal) = stack.proposal().await?;
    let contract = domain::ContractId::for_proposal(proposal.parse()?).to_string();
    let period_secs = 3;
    let sagas = SagasProcess::start(&stack.env, period_secs)?;
    stack
        .post(
            &format!("/jobs/{job}/proposals/{proposal}/accept"),
            Some(&client),
            json!({}),
            StatusCode::OK,
        )
        .await?;
    let milestone = domain::MilestoneId::for_proposal(proposal.parse()?, 0);
    let base = format!("/contracts/{contract}/milestones/{milestone}");
    eventually("the contract is initiated", || async {
        Ok(stack.count("ContractInitiated").await? == 1)
    })
    .await?;
    for _ in 0..2 {
        stack
            .post(
                &format!("{base}/progress"),
                Some(&freelancer),
                json!({}),
                StatusCode::OK,
            )
            .await?;
    }
    stack
        .post(
            &format!("{base}/evaluate"),
            Some(&client),
            json!({"verdict": "accepted"}),
            StatusCode::OK,
        )
        .await?;
    eventually("the payment request is created", || async {
        Ok(stack.count("PaymentRequestCreated").await? == 1)
    })
    .await?;
    // Killed before the deadline; it is due while no sagas process runs.
    sagas.kill_for_restart().await?;
    assert_eq!(stack.count("PaymentRequestExpired").await?, 0);
    let sagas = SagasProcess::start(&stack.env, period_secs)?;
    eventually("the request expires", || async {
        Ok(stack.count("PaymentRequestExpired").await? == 1)
    })
    .await?;
    let request = domain::PaymentRequestId::for_milestone(milestone).to_string();
    stack
        .post(
            "/payments/wallet/deposits",
            Some(&client),
            json!({"amount": {"minor": 9_000, "currency": "USD"}}),
            StatusCode::OK,
        )
        .await?;
    stack
        .post(
            &format!("/payments/requests/{request}/pay"),
            Some(&client),
            json!({}),
            StatusCode::CONFLICT,
        )
        .await?;
    sagas.kill_for_restart().await?;
    stack.stop().await
}

/// A port free now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_republished_proposal_accepted_creates_no_second_contract() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (client, _, job, proposal) = stack.proposal().await?;
    let sagas = SagasProcess::start(&stack.env, 3600)?;
    stack
        .post(
            &format!("/jobs/{job}/proposals/{proposal}/accept"),
            Some(&client),
            json!({}),
            StatusCode::OK,
        )
        .await?;
    eventually("the contract is initiated", || async {
        Ok(stack.count("ContractInitiated").await? == 1)
    })
    .await?;
    // A new process (no in-memory de-duplication) and the relay publishing the event again.
    sagas.kill_for_restart().await?;
    let port = free_port()?;
    let _sagas = SagasProcess::start_on(&stack.env, 3600, port)?;
    let ledger = stack.env.ledger().await?;
    sqlx::query(
        "INSERT INTO outbox (global_position, topic_context)
         SELECT global_position, 'jobs' FROM events WHERE event_type = 'ProposalAccepted'",
    )
    .execute(&ledger.pool())
    .await?;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    eventually("the republished event is answered by the ledger", || async {
        let Ok(answer) = stack.http.get(&metrics).send().await else {
            return Ok(false);
        };
        let text = answer.text().await?;
        Ok(text.lines().any(|l| {
            l.starts_with("workup_saga_commands_total")
                && l.contains("InitiateContract")
                && l.contains("replayed")
        }))
    })
    .await?;
    assert_eq!(stack.count("ContractInitiated").await?, 1, "no second contract");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_contract_that_cannot_be_initiated_is_compensated() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (client, _, job, proposal) = stack.proposal().await?;
    // Force the failure: the contract's stream is already taken by another proposal's contract.
    let contract_id = domain::ContractId::for_proposal(proposal.parse()?);
    let squatter = json!({
        "type": "ContractInitiated", "contract_id": contract_id, "proposal_id": Uuid::now_v7(),
        "job_id": Uuid::now_v7(), "client_id": Uuid::now_v7(), "freelancer_id": Uuid::now_v7(),
        "milestones": [], "initiated_at": chrono::Utc::now(),
    });
    let ledger = stack.env.ledger().await?;
    let write = infra::ledger::StreamWrite {
        stream_id: contract_id.as_uuid(),
        stream_type: "contract",
        context: domain::BoundedContext::Contracts,
        expected: infra::ledger::ExpectedVersion::NoStream,
        events: vec![infra::ledger::NewEvent {
            event_type: "ContractInitiated".into(),
            schema_version: 1,
            payload: squatter,
            personal: None,
        }],
    };
    let metadata = infra::ledger::EventMetadata::new(Uuid::now_v7(), None, chrono::Utc::now());
    ledger
        .append(infra::ledger::AppendRequest::new(metadata, vec![write]))
        .await?;

    let _sagas = SagasProcess::start(&stack.env, 3600)?;
    stack
        .post(
            &format!("/jobs/{job}/proposals/{proposal}/accept"),
            Some(&client),
            json!({}),
            StatusCode::OK,
        )
        .await?;
    eventually("the acceptance is reverted", || async {
        Ok(stack.count("ProposalAcceptanceReverted").await? == 1)
    })
    .await?;
    assert_eq!(stack.count("JobReopened").await?, 1, "the job is open again");
    let reason: String =
        sqlx::query_scalar("SELECT payload->>'reason' FROM events WHERE event_type = 'JobReopened'")
            .fetch_one(&ledger.pool())
            .await?;
    assert!(reason.contains("contract-already-initiated"), "{reason}");
    let proposal_state = ledger
        .load::<domain::jobs::Proposal>(proposal.parse()?)
        .await?
        .state;
    assert_eq!(
        proposal_state.status(),
        Some(domain::jobs::ProposalStatus::Submitted),
        "pending again"
    );
    let job_state = ledger.load::<domain::jobs::Job>(job.parse()?).await?.state;
    assert!(
        !job_state.closed && job_state.accepted_proposal.is_none(),
        "the job takes proposals again"
    );
    stack.stop().await
}
