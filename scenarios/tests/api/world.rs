//! A marketplace to test writes in: two clients, two freelancers, and helpers that build jobs,
//! proposals, contracts and payment requests. Contracts and payment requests are made by the
//! sagas (no HTTP route makes them): the helpers wait for them in the ledger.

use anyhow::Context as _;
use chrono::{Days, Utc};
use domain::{
    ContractId, MilestoneId, PaymentRequestId, ProposalId, contracts::Contract, payments::PaymentRequest,
};
use infra::ledger::Ledger;
use reqwest::{Method, Response, StatusCode};
use scenarios::harness::{Platform, eventually, expect};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// How long a saga may take to act on an event here.
const SAGA_DEADLINE: Duration = Duration::from_secs(20);

/// A signed-up user.
pub struct User {
    /// Its access token.
    pub token: String,
}

/// The platform with four users and the ledger, for the system steps.
pub struct World {
    pub platform: Platform,
    pub ledger: Ledger,
    pub client: User,
    pub other_client: User,
    pub freelancer: User,
    pub other_freelancer: User,
}

/// Milestone due dates in the future.
pub fn due(days: u64) -> String {
    (Utc::now().date_naive() + Days::new(days)).to_string()
}

/// Terms of a proposal with `n` milestones of 10,000 USD cents each.
pub fn terms(n: usize) -> Value {
    let milestones: Vec<Value> = (0..n)
        .map(|i| json!({"title": format!("part {i}"), "amount": {"minor": 10_000, "currency": "USD"}, "due_on": due(10 + i as u64)}))
        .collect();
    json!({"cover_letter": "I have done this before.", "milestones": milestones})
}

impl World {
    pub async fn new() -> anyhow::Result<Self> {
        Self::new_with(|_| {}).await
    }

    /// Send a write; the raw answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        user: Option<&User>,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        self.platform
            .call(method, path, user.map(|u| u.token.as_str()), body)
            .await
    }

    /// Send a write that must answer `status`; its `id`.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        user: &User,
        body: Option<&Value>,
        status: StatusCode,
    ) -> anyhow::Result<String> {
        let answer: Value = expect(self.send(method, path, Some(user), body).await?, status).await?;
        Ok(answer["id"].as_str().context("no id")?.to_owned())
    }

    /// A job posted by `owner`.
    pub async fn job(&self, owner: &User) -> anyhow::Result<String> {
        let body = json!({"title": "Build a loom", "description": "Jacquard style", "budget": {"minor": 50_000, "currency": "USD"}, "skills": ["weaving"]});
        self.ok(
            Method::POST,
            "/api/v1/jobs",
            owner,
            Some(&body),
            StatusCode::CREATED,
        )
        .await
    }

    /// A proposal with `milestones` milestones by `author` to `job`.
    pub async fn proposal(&self, job: &str, author: &User, milestones: usize) -> anyhow::Result<String> {
        self.ok(
            Method::POST,
            &format!("/api/v1/jobs/{job}/proposals"),
            author,
            Some(&terms(milestones)),
            StatusCode::CREATED,
        )
        .await
    }

    /// Accept `proposal` over HTTP and wait until the contract saga has initiated its
    /// contract. The contract's id and its milestones' ids.
    pub async fn contract(&self, job: &str, proposal: &str) -> anyhow::Result<(String, Vec<String>)> {
        self.ok(
            Method::POST,
            &format!("/api/v1/jobs/{job}/proposals/{proposal}/accept"),
            &self.client,
            None,
            StatusCode::OK,
        )
        .await?;
        let contract_id = ContractId::for_proposal(proposal.parse::<ProposalId>()?);
        let contract = eventually(SAGA_DEADLINE, || async {
            let loaded = self.ledger.load::<Contract>(contract_id.as_uuid()).await?;
            Ok(loaded.state.initiated)
        })
        .await
        .context("the contract saga did not initiate the contract")?;
        let milestones = contract.milestones.iter().map(|m| m.id.to_string()).collect();
        Ok((contract_id.to_string(), milestones))
    }

    /// Work `milestone` to acceptance over HTTP, then wait until the payment
    /// saga has created it. The request's id.
    pub async fn payment_request(&self, contract: &str, milestone: &str) -> anyhow::Result<String> {
        let base = format!("/api/v1/contracts/{contract}/milestones/{milestone}");
        for _ in 0..2 {
            self.ok(
                Method::POST,
                &format!("{base}/progress"),
                &self.freelancer,
                None,
                StatusCode::OK,
            )
            .await?;
        }
        let accepted = json!({"verdict": "accepted"});
        self.ok(
            Method::POST,
            &format!("{base}/evaluate"),
            &self.client,
            Some(&accepted),
            StatusCode::OK,
        )
        .await?;
        self.create_payment_request(contract, milestone).await
    }

    /// Wait until the payment saga has created the payment request of an accepted milestone;
    /// its id.
    pub async fn create_payment_request(&self, contract: &str, milestone: &str) -> anyhow::Result<String> {
        let _: ContractId = contract.parse()?;
        let request_id = PaymentRequestId::for_milestone(milestone.parse::<MilestoneId>()?);
        eventually(SAGA_DEADLINE, || async {
            let loaded = self.ledger.load::<PaymentRequest>(request_id.as_uuid()).await?;
            Ok(loaded.state.created.map(|_| ()))
        })
        .await
        .context("the payment saga did not create the payment request")?;
        Ok(request_id.to_string())
    }

    /// Deposit `minor` USD cents into `user`'s wallet.
    pub async fn deposit(&self, user: &User, minor: i64) -> anyhow::Result<()> {
        let body = json!({"amount": {"minor": minor, "currency": "USD"}});
        self.ok(
            Method::POST,
            "/api/v1/payments/wallet/deposits",
            user,
            Some(&body),
            StatusCode::OK,
        )
        .await?;
        Ok(())
    }
}

/// Helpers of the read-side tests.
impl World {
    /// [`World::new`] on a platform whose configuration `adjust` changes first (e.g. a longer
    /// consistency wait for a loaded test machine).
    pub async fn new_with(adjust: impl FnOnce(&mut infra::config::Config)) -> anyhow::Result<Self> {
        Self::on(Platform::start_with(adjust).await?).await
    }

    /// The four users on `platform`.
    pub async fn on(platform: Platform) -> anyhow::Result<Self> {
        let ledger = platform.env.ledger().await?;
        let tag = Uuid::new_v4().simple().to_string();
        let user = |role: &'static str, name: &'static str| {
            let email = format!("{name}-{tag}@example.com");
            let platform = &platform;
            async move {
                let (_, token) = platform.signed_up(role, &email, name).await?;
                anyhow::Ok(User { token })
            }
        };
        let client = user("clients", "ada").await?;
        let other_client = user("clients", "bob").await?;
        let freelancer = user("freelancers", "fay").await?;
        let other_freelancer = user("freelancers", "gus").await?;
        Ok(Self {
            platform,
            ledger,
            client,
            other_client,
            freelancer,
            other_freelancer,
        })
    }

    /// [`World::contract`], plus the consistency token of the contract's initiation (what the
    /// saga's append answered: `contract:<id>:<version of ContractInitiated>`), read from the
    /// ledger.
    pub async fn contract_with_token(
        &self,
        job: &str,
        proposal: &str,
    ) -> anyhow::Result<(String, Vec<String>, String)> {
        let (contract, milestones) = self.contract(job, proposal).await?;
        let events = self.ledger.read_stream(contract.parse()?, 1).await?;
        let initiated = events
            .iter()
            .find(|e| e.event_type == "ContractInitiated")
            .context("no ContractInitiated in the ledger")?;
        let token = format!(
            "{}:{}:{}",
            initiated.stream_type, initiated.stream_id, initiated.version
        );
        Ok((contract, milestones, token))
    }

    /// The consistency token of stream `id` at its current version in the ledger: for changes a
    /// saga makes, whose append answers no HTTP caller.
    pub async fn stream_token<A: domain::Aggregate>(&self, id: &str) -> anyhow::Result<String> {
        let loaded = self.ledger.load::<A>(id.parse()?).await?;
        Ok(format!("{}:{id}:{}", A::STREAM_TYPE, loaded.version))
    }
}
