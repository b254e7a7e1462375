//! Races and retries over HTTP: one acceptance per job, one payment per request, one effect per
//! idempotency key (DESIGN §2, §3).

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::world::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_accepts_of_one_job_give_one_acceptance() -> anyhow::Result<()> {
    let w = World::new().await?;
    let job = w.job(&w.client).await?;
    let mut proposals = Vec::new();
    for i in 0..20 {
        let author = if i % 2 == 0 {
            &w.freelancer
        } else {
            &w.other_freelancer
        };
        proposals.push(w.proposal(&job, author, 1).await?);
    }
    let answers = join_all(proposals.iter().map(|p| {
        let path = format!("/api/v1/jobs/{job}/proposals/{p}/accept");
        let w = &w;
        async move { w.send(Method::POST, &path, Some(&w.client), None).await }
    }))
    .await;
    let statuses: Vec<StatusCode> = answers
        .into_iter()
        .map(|a| a.map(|r| r.status()))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(),
        19,
        "{statuses:?}"
    );

    let (accepted, rejected): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'ProposalAccepted'),
                count(*) FILTER (WHERE event_type = 'ProposalRejected')
         FROM events WHERE stream_type = 'proposal' AND payload->>'job_id' = $1",
    )
    .bind(&job)
    .fetch_one(&w.ledger.pool())
    .await?;
    assert_eq!(
        (accepted, rejected),
        (1, 19),
        "one acceptance, every other proposal rejected"
    );
    w.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_payments_of_one_request_pay_it_once() -> anyhow::Result<()> {
    let w = World::new().await?;
    let job = w.job(&w.client).await?;
    let proposal = w.proposal(&job, &w.freelancer, 1).await?;
    let (contract, milestones) = w.contract(&job, &proposal).await?;
    let request = w.payment_request(&contract, &milestones[0]).await?;
    w.deposit(&w.client, 1_000_000).await?;
    let path = format!("/api/v1/payments/requests/{request}/pay");
    let answers = join_all((0..20).map(|_| w.send(Method::POST, &path, Some(&w.client), None))).await;
    let statuses: Vec<StatusCode> = answers
        .into_iter()
        .map(|a| a.map(|r| r.status()))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );

    let (debits, credits): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'WalletDebited'),
                count(*) FILTER (WHERE event_type = 'WalletCredited')
         FROM events WHERE stream_type = 'wallet'",
    )
    .fetch_one(&w.ledger.pool())
    .await?;
    assert_eq!((debits, credits), (1, 1), "one debit, one credit");
    w.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insufficient_funds_is_a_conflict_and_writes_nothing() -> anyhow::Result<()> {
    let w = World::new().await?;
    let job = w.job(&w.client).await?;
    let proposal = w.proposal(&job, &w.freelancer, 1).await?;
    let (contract, milestones) = w.contract(&job, &proposal).await?;
    let request = w.payment_request(&contract, &milestones[0]).await?;
    w.deposit(&w.client, 5).await?;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&w.ledger.pool())
        .await?;
    let answer = w
        .send(
            Method::POST,
            &format!("/api/v1/payments/requests/{request}/pay"),
            Some(&w.client),
            None,
        )
        .await?;
    let body = crate::commands::problem(answer, StatusCode::CONFLICT, "insufficient funds").await;
    assert_eq!(body["type"], "/problems/insufficient-funds");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&w.ledger.pool())
        .await?;
    assert_eq!(before, after, "nothing written");
    w.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_retried_with_its_idempotency_key_has_one_effect_and_one_answer() -> anyhow::Result<()> {
    let w = World::new().await?;
    let key = Uuid::new_v4().to_string();
    let body =
        json!({"title": "Retry me", "description": "Ten times", "budget": {"minor": 100, "currency": "USD"}});
    let url = format!("{}/api/v1/jobs", w.platform.command_url);
    let send = |body: Value| {
        w.platform
            .http
            .post(&url)
            .bearer_auth(&w.client.token)
            .header("idempotency-key", &key)
            .json(&body)
            .send()
    };
    let answers = join_all((0..10).map(|_| send(body.clone()))).await;
    let mut seen = Vec::new();
    for answer in answers {
        let answer = answer?;
        let status = answer.status();
        let position = answer.headers().get("x-consistency-position").cloned();
        let body: Value = answer.json().await?;
        seen.push((status, body["id"].clone(), body["position"].clone(), position));
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "ten equal answers: {seen:?}");
    assert_eq!(seen[0].0, StatusCode::CREATED);
    let job = seen[0].1.as_str().expect("id").to_owned();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'JobPosted'")
        .fetch_one(&w.ledger.pool())
        .await?;
    assert_eq!(jobs, 1, "one effect");

    // The same key with another body is refused.
    let other = send(
        json!({"title": "Something else", "description": "x", "budget": {"minor": 1, "currency": "USD"}}),
    )
    .await?;
    let problem = crate::commands::problem(other, StatusCode::UNPROCESSABLE_ENTITY, "key reused").await;
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");

    // The first answer comes back even after the state changed: a second close would be a 409.
    let close_key = Uuid::new_v4().to_string();
    let close = || {
        w.platform
            .http
            .post(format!("{}/api/v1/jobs/{job}/close", w.platform.command_url))
            .bearer_auth(&w.client.token)
            .header("idempotency-key", &close_key)
            .send()
    };
    let first = close().await?;
    assert_eq!(first.status(), StatusCode::OK);
    let first_body: Value = first.json().await?;
    let again = close().await?;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        again.headers().get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(again.json::<Value>().await?, first_body);
    let unkeyed = w
        .send(
            Method::POST,
            &format!("/api/v1/jobs/{job}/close"),
            Some(&w.client),
            None,
        )
        .await?;
    assert_eq!(unkeyed.status(), StatusCode::CONFLICT);
    w.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_is_rate_limited_per_address_and_email() -> anyhow::Result<()> {
    let platform = scenarios::harness::Platform::start_with(|config| {
        config.auth.rate_per_address = 1_000;
        config.auth.rate_per_email = 3;
    })
    .await?;
    let email = format!("limit-{}@example.com", Uuid::new_v4().simple());
    platform.signed_up_client(&email, "Lim").await?;
    let wrong = json!({"email": email, "password": "wrong password"});
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let answer = platform.post("/api/v1/users/login", None, &wrong).await?;
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = answer.headers().get("retry-after").cloned();
            let body = crate::commands::problem(answer, StatusCode::TOO_MANY_REQUESTS, "rate limited").await;
            assert_eq!(body["type"], "/problems/too-many-attempts-for-email");
            statuses.push(StatusCode::TOO_MANY_REQUESTS);
        } else {
            statuses.push(answer.status());
        }
    }
    // Registration and the first login took two of the three attempts of this email.
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let seconds: u64 = retry_after.expect("Retry-After").to_str()?.parse()?;
    assert!((1..=60).contains(&seconds), "{seconds}");
    platform.stop().await
}
