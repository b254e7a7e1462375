//! Withdrawals as tracked background work (DESIGN §9), over HTTP with a real withdrawal worker
//! and the simulated payout provider: 202 and a status to poll; one withdrawal per wallet per
//! cooldown window under `reject` (429) and `defer` (scheduled, in order); never below zero
//! however many requests race; a task past its timeout is cancelled and its funds released, and
//! the provider's late answer changes nothing.

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use infra::config::CooldownPolicyConfig;
use payout_provider::{PayoutStatus, Settings};
use reqwest::{Method, Response, StatusCode, header};
use scenarios::harness::{Platform, eventually, expect};
use serde_json::{Value, json};
use std::{collections::BTreeSet, time::Duration};
use uuid::Uuid;

use crate::world::{User, World};

/// How long a withdrawal may take to settle here (provider latency included).
const SETTLE: Duration = Duration::from_secs(30);

/// A world with a withdrawal worker: cooldown `window_secs` under `policy`, task timeout
/// `timeout_secs`, provider latency `latency_ms`.
async fn world(
    policy: CooldownPolicyConfig,
    window_secs: u64,
    timeout_secs: u64,
    latency_ms: u64,
) -> anyhow::Result<World> {
    let platform = Platform::start_with_withdrawals(
        |c| {
            c.http.consistency_wait_ms = 15_000;
            c.withdrawals.cooldown_policy = policy;
            c.withdrawals.cooldown_secs = window_secs;
            c.withdrawals.timeout_secs = timeout_secs;
            c.withdrawals.lease_secs = 3;
            c.withdrawals.poll_ms = 100;
        },
        Settings {
            latency: Duration::from_millis(latency_ms),
            ..Settings::default()
        },
    )
    .await?;
    World::on(platform).await
}

fn usd(minor: i64) -> Value {
    json!({"amount": {"minor": minor, "currency": "USD"}})
}

async fn request(world: &World, user: &User, minor: i64) -> anyhow::Result<Response> {
    world
        .send(
            Method::POST,
            "/api/v1/payments/wallet/withdrawals",
            Some(user),
            Some(&usd(minor)),
        )
        .await
}

/// GET a withdrawal from query-api (after `position`, if any).
async fn status(world: &World, user: &User, id: &str, position: Option<&str>) -> anyhow::Result<Response> {
    let mut get = world
        .platform
        .http
        .get(format!(
            "{}/api/v1/payments/wallet/withdrawals/{id}",
            world.platform.query_url
        ))
        .bearer_auth(&user.token);
    if let Some(position) = position {
        get = get.header("x-consistency-position", position);
    }
    Ok(get.send().await?)
}

/// Poll a withdrawal until its status is final; every status seen on the way, and the last view.
async fn settle(
    world: &World,
    user: &User,
    id: &str,
    position: &str,
) -> anyhow::Result<(Vec<String>, Value)> {
    let mut seen: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let view: Value = expect(status(world, user, id, Some(position)).await?, StatusCode::OK).await?;
        let now = view["status"].as_str().context("no status")?.to_owned();
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if matches!(now.as_str(), "succeeded" | "failed" | "cancelled") {
            return Ok((seen, view));
        }
        if started.elapsed() > SETTLE {
            bail!("withdrawal {id} did not settle: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The caller's wallet as query-api has it now; `null` while it is not projected yet (a 404), so
/// a poll waits for it.
async fn wallet(world: &World, user: &User) -> anyhow::Result<Value> {
    let answer = world
        .platform
        .http
        .get(format!("{}/api/v1/payments/wallet", world.platform.query_url))
        .bearer_auth(&user.token)
        .send()
        .await?;
    if answer.status() == StatusCode::NOT_FOUND {
        return Ok(Value::Null);
    }
    expect(answer, StatusCode::OK).await
}

/// Fund `user`'s wallet with `minor` cents.
async fn funded(world: &World, user: &User, minor: i64) -> anyhow::Result<()> {
    world.deposit(user, minor).await
}

/// The accepted answer's body, checking the 202 and its `Location`.
async fn accepted(response: Response) -> anyhow::Result<Value> {
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = expect(response, StatusCode::ACCEPTED).await?;
    let id = body["id"].as_str().context("no id")?;
    ensure!(
        location.as_deref() == Some(&format!("/api/v1/payments/wallet/withdrawals/{id}")),
        "Location {location:?}"
    );
    Ok(body)
}

fn time(view: &Value, field: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(view[field]
        .as_str()
        .with_context(|| format!("no {field} in {view}"))?
        .parse()?)
}

#[tokio::test]
async fn the_seed_flow_under_reject_accepts_refuses_within_the_window_and_settles() -> anyhow::Result<()> {
    let world = world(CooldownPolicyConfig::Reject, 300, 46, 300).await?;
    let user = &world.freelancer;
    funded(&world, user, 10_000).await?;

    let first = accepted(request(&world, user, 2_500).await?).await?;
    assert_eq!(first["status"], "pending");
    let id = first["id"].as_str().context("id")?.to_owned();
    let position = first["position"].as_str().context("position")?.to_owned();

    let again = request(&world, user, 1_000).await?;
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = again
        .headers()
        .get(header::RETRY_AFTER)
        .context("no Retry-After")?
        .to_str()?
        .parse()?;
    assert!((290..=300).contains(&retry_after), "Retry-After {retry_after}");
    let problem: Value = again.json().await?;
    assert_eq!(problem["type"], "/problems/withdrawal-cooldown");

    let unknown = status(&world, user, &Uuid::now_v7().to_string(), None).await?;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // Someone else's withdrawal is not theirs to see.
    let theirs = status(&world, &world.other_freelancer, &id, Some(&position)).await?;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);

    let (seen, view) = settle(&world, user, &id, &position).await?;
    println!("statuses seen while polling: {seen:?}");
    assert_eq!(view["status"], "succeeded", "{view}");
    // The answer said pending; polling sees the rest in order, never going back (the worker
    // may have started before the first poll: it failed once in cold CI on "processing" first).
    let order = ["pending", "processing", "succeeded"];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|s| {
            order
                .iter()
                .position(|o| o == s)
                .with_context(|| format!("unexpected status {s}"))
        })
        .collect::<anyhow::Result<_>>()?;
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(
        view["provider_reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("po_"))
    );
    assert!(time(&view, "started_at")? <= time(&view, "succeeded_at")?);

    let provider = world.platform.provider.as_ref().context("provider")?;
    let stats = provider.stats();
    assert_eq!((stats.paid, stats.paid_minor), (1, 2_500));
    let wallet = eventually(SETTLE, || async {
        let w = wallet(&world, user).await?;
        Ok((w["balance"]["minor"] == 7_500).then_some(w))
    })
    .await?;
    assert_eq!(wallet["reserved"]["minor"], 0, "{wallet}");

    // The worker's metrics count the task.
    let worker = world.platform.worker_url.as_ref().context("worker")?;
    let metrics = eventually(SETTLE, || async {
        let text = reqwest::get(format!("{worker}/metrics")).await?.text().await?;
        Ok(text
            .contains("workup_withdrawal_tasks{state=\"succeeded\"} 1")
            .then_some(text))
    })
    .await?;
    assert!(
        metrics.contains("workup_withdrawal_task_duration_seconds"),
        "{metrics}"
    );
    assert!(metrics.contains("workup_withdrawal_queue_depth"), "{metrics}");
    world.platform.stop().await
}

#[tokio::test]
async fn under_defer_requests_in_the_window_are_scheduled_in_order_and_run_at_their_time()
-> anyhow::Result<()> {
    let window = 3;
    let world = world(CooldownPolicyConfig::Defer, window, 46, 50).await?;
    let user = &world.freelancer;
    funded(&world, user, 10_000).await?;

    let mut answers = Vec::new();
    for minor in [1_000, 2_000, 3_000] {
        answers.push(accepted(request(&world, user, minor).await?).await?);
    }
    assert_eq!(answers[0]["status"], "pending");
    let slots: Vec<DateTime<Utc>> = answers[1..]
        .iter()
        .map(|a| {
            assert_eq!(a["status"], "scheduled", "{a}");
            time(a, "scheduled_for")
        })
        .collect::<Result<_, _>>()?;
    assert_eq!((slots[1] - slots[0]).num_seconds(), 3, "{slots:?}");

    // While waiting, the read side says SCHEDULED with its time.
    let second = answers[1]["id"].as_str().context("id")?;
    let view: Value = expect(
        status(&world, user, second, answers[1]["position"].as_str()).await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(view["status"], "scheduled", "{view}");
    assert_eq!(time(&view, "scheduled_for")?, slots[0]);

    for (answer, slot) in answers.iter().zip([None, Some(slots[0]), Some(slots[1])]) {
        let id = answer["id"].as_str().context("id")?;
        let (_, view) = settle(&world, user, id, answer["position"].as_str().context("position")?).await?;
        assert_eq!(view["status"], "succeeded", "{view}");
        if let Some(slot) = slot {
            assert!(
                time(&view, "started_at")? >= slot,
                "started before its slot: {view}"
            );
        }
    }
    let provider = world.platform.provider.as_ref().context("provider")?;
    assert_eq!(provider.stats().paid, 3);
    world.platform.stop().await
}

#[tokio::test]
async fn twenty_concurrent_requests_for_one_wallet_never_give_two_in_a_window_or_go_below_zero()
-> anyhow::Result<()> {
    // reject: exactly one of 20 is accepted; the rest are told when to retry.
    let world = world(CooldownPolicyConfig::Reject, 300, 46, 50).await?;
    let user = &world.freelancer;
    funded(&world, user, 10_000).await?;
    let answers = join_all((0..20).map(|_| request(&world, user, 100))).await;
    let statuses: Vec<StatusCode> = answers
        .into_iter()
        .map(|r| r.map(|r| r.status()))
        .collect::<Result<_, _>>()?;
    let accepted_count = statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count();
    let cooled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((accepted_count, cooled), (1, 19), "{statuses:?}");
    world.platform.stop().await?;

    // defer: 20 requests of 100 on 1,500: 15 reserve, one slot each, in order; 5 cannot.
    let world = world_with_defer(300).await?;
    let user = &world.freelancer;
    funded(&world, user, 1_500).await?;
    let answers = join_all((0..20).map(|_| request(&world, user, 100))).await;
    let mut slots = BTreeSet::new();
    let (mut pending, mut short) = (0, 0);
    for answer in answers {
        let answer = answer?;
        match answer.status() {
            StatusCode::ACCEPTED => {
                let body: Value = answer.json().await?;
                match body["status"].as_str() {
                    Some("pending") => pending += 1,
                    Some("scheduled") => {
                        slots.insert(time(&body, "scheduled_for")?);
                    }
                    other => bail!("status {other:?}"),
                }
            }
            StatusCode::CONFLICT => {
                let problem: Value = answer.json().await?;
                assert_eq!(problem["type"], "/problems/insufficient-funds", "{problem}");
                short += 1;
            }
            other => bail!("unexpected {other}: {}", answer.text().await?),
        }
    }
    assert_eq!((pending, slots.len(), short), (1, 14, 5), "slots {slots:?}");
    let slots: Vec<_> = slots.into_iter().collect();
    assert!(
        slots.windows(2).all(|w| (w[1] - w[0]).num_seconds() == 300),
        "{slots:?}"
    );
    let w = eventually(SETTLE, || async {
        let w = wallet(&world, user).await?;
        Ok((w["reserved"]["minor"].as_i64() == Some(1_400) && w["balance"]["minor"] == 1_400).then_some(w))
    })
    .await
    .context("the first withdrawal was not paid out with the other 14 still reserved")?;
    assert_eq!(w["available"]["minor"], 0, "{w}");
    world.platform.stop().await
}

async fn world_with_defer(window_secs: u64) -> anyhow::Result<World> {
    world(CooldownPolicyConfig::Defer, window_secs, 46, 50).await
}

#[tokio::test]
async fn withdrawals_beyond_the_balance_are_refused_and_the_balance_ends_at_zero() -> anyhow::Result<()> {
    // No cooldown: only the funds limit the 20 racing requests.
    let world = world(CooldownPolicyConfig::Reject, 0, 46, 20).await?;
    let user = &world.freelancer;
    funded(&world, user, 1_000).await?;
    let too_much = request(&world, user, 1_001).await?;
    assert_eq!(too_much.status(), StatusCode::CONFLICT);

    let answers = join_all((0..20).map(|_| request(&world, user, 100))).await;
    let mut ids = Vec::new();
    let mut refused = 0;
    for answer in answers {
        let answer = answer?;
        match answer.status() {
            StatusCode::ACCEPTED => {
                let body: Value = answer.json().await?;
                ids.push((
                    body["id"].as_str().context("id")?.to_owned(),
                    body["position"].as_str().context("position")?.to_owned(),
                ));
            }
            StatusCode::CONFLICT => refused += 1,
            other => bail!("unexpected {other}: {}", answer.text().await?),
        }
    }
    assert_eq!((ids.len(), refused), (10, 10));
    for (id, position) in &ids {
        let (_, view) = settle(&world, user, id, position).await?;
        assert_eq!(view["status"], "succeeded", "{view}");
    }
    let w = eventually(SETTLE, || async {
        let w = wallet(&world, user).await?;
        Ok((w["balance"]["minor"] == 0).then_some(w))
    })
    .await?;
    assert_eq!(w["reserved"]["minor"], 0, "{w}");
    let provider = world.platform.provider.as_ref().context("provider")?;
    assert_eq!((provider.stats().paid, provider.stats().paid_minor), (10, 1_000));
    world.platform.stop().await
}

#[tokio::test]
async fn a_task_past_its_timeout_is_cancelled_its_funds_released_and_the_late_answer_changes_nothing()
-> anyhow::Result<()> {
    let world = world(CooldownPolicyConfig::Reject, 0, 2, 5_000).await?;
    let user = &world.freelancer;
    funded(&world, user, 1_000).await?;
    let answer = accepted(request(&world, user, 600).await?).await?;
    let id = answer["id"].as_str().context("id")?;
    let (seen, view) = settle(&world, user, id, answer["position"].as_str().context("position")?).await?;
    assert_eq!(view["status"], "cancelled", "{seen:?} {view}");
    assert_eq!(view["reason"], "timed out after 2 s");
    let w = eventually(SETTLE, || async {
        let w = wallet(&world, user).await?;
        Ok((w["reserved"]["minor"] == 0).then_some(w))
    })
    .await?;
    assert_eq!(w["balance"]["minor"], 1_000, "{w}");

    // Past the time the provider would have paid: it did not, and nothing moved.
    let provider = world.platform.provider.as_ref().context("provider")?;
    let withdrawal_id: Uuid = id.parse()?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let payout = provider
        .payout(withdrawal_id)
        .context("the provider never heard of it")?;
    assert_eq!(payout.status, PayoutStatus::Cancelled);
    assert_eq!(provider.stats().paid, 0);
    let later = wallet(&world, user).await?;
    assert_eq!(
        (
            later["balance"]["minor"].clone(),
            later["reserved"]["minor"].clone()
        ),
        (json!(1_000), json!(0))
    );
    let again: Value = expect(status(&world, user, id, None).await?, StatusCode::OK).await?;
    assert_eq!(again["status"], "cancelled");
    world.platform.stop().await
}

#[tokio::test]
async fn the_owner_cancels_a_scheduled_withdrawal_and_its_funds_are_released() -> anyhow::Result<()> {
    let world = world_with_defer(300).await?;
    let user = &world.freelancer;
    funded(&world, user, 1_000).await?;
    accepted(request(&world, user, 100).await?).await?;
    let scheduled = accepted(request(&world, user, 300).await?).await?;
    assert_eq!(scheduled["status"], "scheduled");
    let id = scheduled["id"].as_str().context("id")?;
    let path = format!("/api/v1/payments/wallet/withdrawals/{id}/cancel");
    let forbidden = world
        .send(Method::POST, &path, Some(&world.other_freelancer), None)
        .await?;
    assert_eq!(forbidden.status(), StatusCode::NOT_FOUND);
    let done: Value = expect(
        world.send(Method::POST, &path, Some(user), None).await?,
        StatusCode::OK,
    )
    .await?;
    let (_, view) = settle(&world, user, id, done["position"].as_str().context("position")?).await?;
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["reason"], "cancelled by the owner");
    let twice = world.send(Method::POST, &path, Some(user), None).await?;
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    let w = eventually(SETTLE, || async {
        let w = wallet(&world, user).await?;
        Ok((w["balance"]["minor"] == 900 && w["reserved"]["minor"] == 0).then_some(w))
    })
    .await?;
    assert_eq!(w["available"]["minor"], 900);
    world.platform.stop().await
}
