//! The whole marketplace over HTTP, sagas included (issue: register → job → proposal → contract →
//! milestones → payment → completed), printing how long each step took to become visible.

use reqwest::{Method, StatusCode};
use scenarios::harness::eventually;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::world::{User, World, terms};

/// How long a step may take to show.
const VISIBLE_WITHIN: Duration = Duration::from_secs(20);

/// Steps and how long each took to become visible.
#[derive(Default)]
struct Timeline(Vec<(String, Duration)>);

impl Timeline {
    fn print(&self) {
        println!("\n{:<62} {:>10}", "step", "visible in");
        for (step, took) in &self.0 {
            println!("{step:<62} {:>8.0}ms", took.as_secs_f64() * 1000.0);
        }
    }
}

impl World {
    /// GET `path` from query-api as `user` until `ready` holds for the JSON answer; the answer,
    /// with the time it took recorded in `timeline` as `step`.
    async fn visible(
        &self,
        timeline: &mut Timeline,
        step: &str,
        since: Instant,
        user: &User,
        path: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.platform.query_url);
        let body = eventually(VISIBLE_WITHIN, || async {
            let answer = self
                .platform
                .http
                .get(&url)
                .bearer_auth(&user.token)
                .send()
                .await?;
            if answer.status() != StatusCode::OK {
                return Ok(None);
            }
            let body: Value = answer.json().await?;
            Ok(ready(&body).then_some(body))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{step}: {e}"))?;
        timeline.0.push((step.to_owned(), since.elapsed()));
        Ok(body)
    }
}

fn minor(money: &Value) -> i64 {
    money["minor"].as_i64().unwrap_or(i64::MIN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_full_marketplace_flow_completes_a_contract_and_moves_the_money() -> anyhow::Result<()> {
    let w = World::new().await?;
    let mut t = Timeline::default();
    let (client, freelancer) = (&w.client, &w.freelancer);

    let started = Instant::now();
    w.deposit(client, 20_000).await?;
    w.visible(
        &mut t,
        "deposit → client wallet 200.00",
        started,
        client,
        "/api/v1/payments/wallet",
        |b| minor(&b["balance"]) == 20_000,
    )
    .await?;

    let job = w.job(client).await?;
    let proposal = w
        .ok(
            Method::POST,
            &format!("/api/v1/jobs/{job}/proposals"),
            freelancer,
            Some(&terms(2)),
            StatusCode::CREATED,
        )
        .await?;

    let started = Instant::now();
    let (contract, milestones) = w.contract(&job, &proposal).await?;
    let path = format!("/api/v1/contracts/{contract}");
    w.visible(
        &mut t,
        "accept → contract ACTIVE (contract saga)",
        started,
        client,
        &path,
        |b| b["status"] == "active",
    )
    .await?;

    for (i, milestone) in milestones.iter().enumerate() {
        let n = i + 1;
        let started = Instant::now();
        let request = w.payment_request(&contract, milestone).await?;
        w.visible(
            &mut t,
            &format!("milestone {n} accepted → payment request PENDING (saga)"),
            started,
            client,
            "/api/v1/payments/requests/me",
            |b| {
                b["items"].as_array().is_some_and(|items| {
                    items
                        .iter()
                        .any(|r| r["payment_request_id"] == request.as_str() && r["status"] == "pending")
                })
            },
        )
        .await?;

        let started = Instant::now();
        w.ok(
            Method::POST,
            &format!("/api/v1/payments/requests/{request}/pay"),
            client,
            None,
            StatusCode::OK,
        )
        .await?;
        let milestones_path = format!("/api/v1/contracts/{contract}/milestones");
        w.visible(
            &mut t,
            &format!("pay → milestone {n} PAID (completion saga)"),
            started,
            client,
            &milestones_path,
            |b| {
                b["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|m| m["milestone_id"] == milestone.as_str()))
                    .is_some_and(|m| m["status"] == "paid")
            },
        )
        .await?;
        let expected = if n < milestones.len() {
            "active"
        } else {
            "completed"
        };
        let answer = w
            .visible(
                &mut t,
                &format!("pay → contract {}", expected.to_uppercase()),
                started,
                client,
                &path,
                |b| b["status"] == expected,
            )
            .await?;
        assert_eq!(answer["status"], expected);
    }

    let started = Instant::now();
    w.visible(
        &mut t,
        "client wallet 0.00",
        started,
        client,
        "/api/v1/payments/wallet",
        |b| minor(&b["balance"]) == 0,
    )
    .await?;
    w.visible(
        &mut t,
        "freelancer wallet 200.00",
        started,
        freelancer,
        "/api/v1/payments/wallet",
        |b| minor(&b["balance"]) == 20_000,
    )
    .await?;
    t.print();

    // The saga's history, for admins only.
    let admin = infra::http::auth::TokenKeys::new(&w.platform.env.config.auth)?
        .issue(domain::Actor::new(
            domain::UserId::from_uuid(uuid::Uuid::now_v7()),
            domain::Role::Admin,
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .access_token;
    let url = format!("{}/api/v1/sagas/{contract}", w.platform.sagas_url);
    let history: Value = w
        .platform
        .http
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;
    let commands: Vec<&str> = history["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["command"].as_str()).collect())
        .unwrap_or_default();
    for command in ["InitiateContract", "CreatePaymentRequest", "MarkMilestonePaid"] {
        assert!(commands.contains(&command), "{command} in {history}");
    }
    assert_eq!(
        commands.iter().filter(|c| **c == "MarkMilestonePaid").count(),
        2,
        "{history}"
    );
    let not_admin = w
        .platform
        .http
        .get(&url)
        .bearer_auth(&client.token)
        .send()
        .await?;
    assert_eq!(not_admin.status(), StatusCode::FORBIDDEN);
    let anonymous = w.platform.http.get(&url).send().await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    w.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_accepted_termination_cancels_the_pending_payment_requests() -> anyhow::Result<()> {
    let w = World::new().await?;
    let job = w.job(&w.client).await?;
    let proposal = w.proposal(&job, &w.freelancer, 2).await?;
    let (contract, milestones) = w.contract(&job, &proposal).await?;
    let request = w.payment_request(&contract, &milestones[0]).await?;
    let termination = w
        .ok(
            Method::POST,
            &format!("/api/v1/contracts/{contract}/terminations"),
            &w.freelancer,
            Some(&json!({"reason": "moving abroad"})),
            StatusCode::CREATED,
        )
        .await?;
    w.ok(
        Method::POST,
        &format!("/api/v1/terminations/{termination}/accept"),
        &w.client,
        None,
        StatusCode::OK,
    )
    .await?;
    eventually(VISIBLE_WITHIN, || async {
        let state = w
            .ledger
            .load::<domain::payments::PaymentRequest>(request.parse()?)
            .await?
            .state;
        Ok(
            (state.existing().map(|r| r.status) == Ok(domain::payments::PaymentRequestStatus::Cancelled))
                .then_some(()),
        )
    })
    .await?;
    w.deposit(&w.client, 20_000).await?;
    let pay = w
        .send(
            Method::POST,
            &format!("/api/v1/payments/requests/{request}/pay"),
            Some(&w.client),
            None,
        )
        .await?;
    assert_eq!(
        pay.status(),
        StatusCode::CONFLICT,
        "a cancelled request cannot be paid"
    );
    w.platform.stop().await
}
