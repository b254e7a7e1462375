//! The payments read side (DESIGN §3, §6, §9): deposits, payments and withdrawals are readable
//! with their consistency token (wallets with exact balances, transactions, payment requests,
//! withdrawal statuses); every read is the caller's own; transaction and request pages have no
//! repeats or gaps; redelivered and older events change nothing.

use anyhow::Context as _;
use chrono::Utc;
use domain::{
    Actor, Context, Currency, Money, Timestamp, WalletId, WithdrawalId,
    payments::{
        PaymentRequest, PaymentRequestCommand, Wallet, Withdrawal, WithdrawalCommand, payment_request,
        withdrawal,
    },
};
use infra::{
    cassandra,
    http::auth::TokenKeys,
    kafka::consumer::EventHandler as _,
    ledger::{Appended, EventMetadata, Upcasters},
    read_models::payments::{NewTransaction, Payments, RECENT_TRANSACTIONS, TransactionKind, WalletChange},
};
use projectors::payments::PaymentsProjector;
use reqwest::{Method, Response, StatusCode};
use scenarios::harness::expect;
use serde_json::{Value, json};
use std::collections::HashSet;
use uuid::Uuid;

use crate::world::{User, World};

/// A world whose reads wait long enough for a loaded test machine.
async fn world() -> anyhow::Result<World> {
    World::new_with(|c| c.http.consistency_wait_ms = 15_000).await
}

/// The actor behind `user`'s access token.
fn actor(world: &World, user: &User) -> anyhow::Result<Actor> {
    Ok(TokenKeys::new(&world.platform.env.config.auth)?.verify(&user.token)?)
}

/// GET `path` from query-api as `user` (if any), with a consistency token (if any).
async fn read(
    world: &World,
    path: &str,
    user: Option<&User>,
    position: Option<&str>,
) -> anyhow::Result<Response> {
    let mut request = world
        .platform
        .http
        .get(format!("{}{path}", world.platform.query_url));
    if let Some(user) = user {
        request = request.bearer_auth(&user.token);
    }
    if let Some(position) = position {
        request = request.header("x-consistency-position", position);
    }
    Ok(request.send().await?)
}

/// GET `path` as `user` after `position`; the JSON body, which must come with 200.
async fn read_ok(world: &World, path: &str, user: &User, position: Option<&str>) -> anyhow::Result<Value> {
    expect(read(world, path, Some(user), position).await?, StatusCode::OK)
        .await
        .with_context(|| path.to_owned())
}

/// Deposit `minor` USD cents into `user`'s wallet; the write's consistency token.
async fn deposit(world: &World, user: &User, minor: i64) -> anyhow::Result<String> {
    let body = json!({"amount": {"minor": minor, "currency": "USD"}});
    let answer: Value = expect(
        world
            .send(
                Method::POST,
                "/api/v1/payments/wallet/deposits",
                Some(user),
                Some(&body),
            )
            .await?,
        StatusCode::OK,
    )
    .await?;
    Ok(answer["position"].as_str().context("no position")?.to_owned())
}

/// `minor` USD cents as served.
fn usd(minor: i64) -> Value {
    json!({"minor": minor, "currency": "USD"})
}

/// Run a withdrawal command as `actor` through the ledger (no HTTP route yet: the owner
/// requests, the payout worker is the system actor); the consistency token of the append.
async fn withdraw(
    world: &World,
    actor: Actor,
    wallet: WalletId,
    id: WithdrawalId,
    command: WithdrawalCommand,
) -> anyhow::Result<String> {
    let ctx = Context {
        actor,
        now: Timestamp::from_datetime(Utc::now()),
    };
    let actor_id = (!actor.is_system()).then(|| actor.id.as_uuid());
    let appended: Appended = world
        .ledger
        .execute_with(
            EventMetadata::new(Uuid::now_v7(), actor_id, Utc::now()),
            async |unit| {
                let w = unit.load::<Wallet>(wallet.as_uuid()).await?;
                let wd = unit.load::<Withdrawal>(id.as_uuid()).await?;
                let events = withdrawal::decide((&w, &wd), &command, &ctx)?;
                unit.write::<Wallet>(wallet.as_uuid(), &events.wallet)?;
                unit.write::<Withdrawal>(id.as_uuid(), &events.withdrawal)?;
                Ok(())
            },
        )
        .await?;
    Ok(appended.token())
}

/// Run a payment request command as the system at `now` through the ledger (as the deadline
/// and payment sagas do); the consistency token of the append.
async fn system_on_request(
    world: &World,
    id: &str,
    command: PaymentRequestCommand,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<String> {
    let ctx = Context {
        actor: Actor::system(),
        now: Timestamp::from_datetime(now),
    };
    let appended = world
        .ledger
        .execute::<PaymentRequest>(
            id.parse()?,
            EventMetadata::new(Uuid::now_v7(), None, Utc::now()),
            |r| payment_request::decide(r, &command, &ctx),
        )
        .await?;
    Ok(appended.token())
}

/// Every transaction of `user`'s wallet, page by page (`limit` a page); fails on a repeat.
async fn all_transactions(world: &World, user: &User, limit: usize) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    for _ in 0..50 {
        let path = match &token {
            Some(t) => format!("/api/v1/payments/wallet/transactions?limit={limit}&page_token={t}"),
            None => format!("/api/v1/payments/wallet/transactions?limit={limit}"),
        };
        let page = read_ok(world, &path, user, None).await?;
        let batch = page["items"].as_array().context("items")?;
        anyhow::ensure!(batch.len() <= limit, "a page longer than its limit");
        for t in batch {
            anyhow::ensure!(
                seen.insert(t["version"].as_i64().context("version")?),
                "repeated {t}"
            );
            items.push(t.clone());
        }
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
    anyhow::bail!("more than 50 pages")
}

/// Every payment request of `user` (`query` e.g. `role=client&`), page by page, one a page.
async fn all_requests(world: &World, user: &User, query: &str) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..20 {
        let path = match &token {
            Some(t) => format!("/api/v1/payments/requests/me?{query}limit=1&page_token={t}"),
            None => format!("/api/v1/payments/requests/me?{query}limit=1"),
        };
        let page = read_ok(world, &path, user, None).await?;
        items.extend(page["items"].as_array().context("items")?.iter().cloned());
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
    anyhow::bail!("more than 20 pages")
}

#[tokio::test]
async fn a_deposit_is_read_back_in_the_wallet_and_its_transactions() -> anyhow::Result<()> {
    let world = world().await?;
    let me = actor(&world, &world.client)?;

    // No wallet before the first deposit: 404 for the wallet, an empty transaction list.
    let missing = read(&world, "/api/v1/payments/wallet", Some(&world.client), None).await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let problem: Value = missing.json().await?;
    assert!(
        problem["type"]
            .as_str()
            .unwrap_or_default()
            .ends_with("wallet-not-found"),
        "{problem}"
    );
    let empty = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions",
        &world.client,
        None,
    )
    .await?;
    assert_eq!(empty, json!({"items": [], "next_page_token": null}));

    let first = deposit(&world, &world.client, 5_000).await?;
    let wallet = read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(&first)).await?;
    assert_eq!(wallet["wallet_id"], json!(WalletId::for_user(me.id)));
    assert_eq!(wallet["owner_id"], json!(me.id));
    assert_eq!(
        (&wallet["balance"], &wallet["reserved"], &wallet["available"]),
        (&usd(5_000), &usd(0), &usd(5_000))
    );
    assert_eq!(wallet["version"], 2, "opened, then deposited");

    let second = deposit(&world, &world.client, 2_500).await?;
    let wallet = read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(&second)).await?;
    assert_eq!(
        (&wallet["balance"], &wallet["available"]),
        (&usd(7_500), &usd(7_500))
    );
    let page = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions",
        &world.client,
        Some(&second),
    )
    .await?;
    let kinds: Vec<_> = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|t| {
            (
                t["kind"].clone(),
                t["amount"].clone(),
                t["balance"].clone(),
                t["reference_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("deposit"), usd(2_500), usd(7_500), Value::Null),
            (json!("deposit"), usd(5_000), usd(5_000), Value::Null),
        ],
        "newest first"
    );
    assert_eq!(page["next_page_token"], Value::Null);
    world.platform.stop().await
}

#[tokio::test]
async fn paying_a_request_is_read_back_in_both_wallets_and_both_request_lists() -> anyhow::Result<()> {
    let world = world().await?;
    let (client, freelancer) = (actor(&world, &world.client)?, actor(&world, &world.freelancer)?);
    let job = world.job(&world.client).await?;
    let proposal = world.proposal(&job, &world.freelancer, 2).await?;
    let (contract, milestones) = world.contract(&job, &proposal).await?;
    let request = world.payment_request(&contract, &milestones[0]).await?;
    let other_request = world.payment_request(&contract, &milestones[1]).await?;
    // Made by the saga: no write answered a token, so one is made from the ledger.
    let created = format!(
        "{},{}",
        world.stream_token::<PaymentRequest>(&request).await?,
        world.stream_token::<PaymentRequest>(&other_request).await?
    );

    // Both parties see both pending requests; nobody else sees any.
    for user in [&world.client, &world.freelancer] {
        let page = read_ok(&world, "/api/v1/payments/requests/me", user, Some(&created)).await?;
        let items = page["items"].as_array().context("items")?;
        assert_eq!(items.len(), 2, "{page}");
        let ids: HashSet<_> = items
            .iter()
            .map(|r| r["payment_request_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(ids, HashSet::from([request.as_str(), other_request.as_str()]));
        for r in items {
            assert_eq!(
                (&r["status"], &r["amount"]),
                (&json!("pending"), &usd(10_000)),
                "{r}"
            );
            assert_eq!(
                (&r["client_id"], &r["freelancer_id"]),
                (&json!(client.id), &json!(freelancer.id))
            );
            assert_eq!(r["contract_id"], json!(contract));
            assert_eq!(r["paid_at"], Value::Null);
        }
    }
    for user in [&world.other_client, &world.other_freelancer] {
        let page = read_ok(&world, "/api/v1/payments/requests/me", user, Some(&created)).await?;
        assert_eq!(page, json!({"items": [], "next_page_token": null}), "not a party");
    }

    deposit(&world, &world.client, 25_000).await?;
    let paid: Value = expect(
        world
            .send(
                Method::POST,
                &format!("/api/v1/payments/requests/{request}/pay"),
                Some(&world.client),
                None,
            )
            .await?,
        StatusCode::OK,
    )
    .await?;
    let paid = paid["position"].as_str().context("no position")?;

    let wallet = read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(paid)).await?;
    assert_eq!(
        (&wallet["balance"], &wallet["available"]),
        (&usd(15_000), &usd(15_000))
    );
    let wallet = read_ok(&world, "/api/v1/payments/wallet", &world.freelancer, Some(paid)).await?;
    assert_eq!(
        (&wallet["balance"], &wallet["available"]),
        (&usd(10_000), &usd(10_000))
    );
    assert_eq!(
        wallet["owner_id"],
        json!(freelancer.id),
        "opened by its first credit"
    );

    let client_tx = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions",
        &world.client,
        Some(paid),
    )
    .await?;
    let newest = &client_tx["items"][0];
    assert_eq!(
        (
            &newest["kind"],
            &newest["amount"],
            &newest["balance"],
            &newest["reference_id"]
        ),
        (&json!("debit"), &usd(10_000), &usd(15_000), &json!(request))
    );
    assert_eq!(client_tx["items"][1]["kind"], "deposit");
    let freelancer_tx = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions",
        &world.freelancer,
        Some(paid),
    )
    .await?;
    let items = freelancer_tx["items"].as_array().context("items")?;
    assert_eq!(items.len(), 1, "{freelancer_tx}");
    assert_eq!(
        (
            &items[0]["kind"],
            &items[0]["amount"],
            &items[0]["balance"],
            &items[0]["reference_id"]
        ),
        (&json!("credit"), &usd(10_000), &usd(10_000), &json!(request))
    );

    // Each party reads the paid request on its own side only; pages of one hold no repeats.
    for (user, side, other_side) in [
        (&world.client, "role=client&", "role=freelancer&"),
        (&world.freelancer, "role=freelancer&", "role=client&"),
    ] {
        let page = read_ok(&world, "/api/v1/payments/requests/me", user, Some(paid)).await?;
        let r = page["items"]
            .as_array()
            .context("items")?
            .iter()
            .find(|r| r["payment_request_id"] == json!(request))
            .context("the paid request is listed")?;
        assert_eq!(r["status"], "paid");
        assert!(r["paid_at"].is_string(), "{r}");
        let full = read_ok(
            &world,
            &format!("/api/v1/payments/requests/me?{side}limit=100"),
            user,
            None,
        )
        .await?;
        let paged = all_requests(&world, user, side).await?;
        assert_eq!(paged.len(), 2, "{paged:?}");
        assert_ne!(paged[0], paged[1], "no repeats");
        assert_eq!(
            Value::from(paged),
            full["items"],
            "one a page: the same list, no gaps"
        );
        assert_eq!(
            all_requests(&world, user, "").await?.len(),
            2,
            "both sides, one a page"
        );
        assert!(all_requests(&world, user, other_side).await?.is_empty());
    }
    // Others still see nothing: no wallet, no transactions, no requests.
    let none = read(
        &world,
        "/api/v1/payments/wallet",
        Some(&world.other_freelancer),
        Some(paid),
    )
    .await?;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    for user in [&world.other_client, &world.other_freelancer] {
        let tx = read_ok(&world, "/api/v1/payments/wallet/transactions", user, Some(paid)).await?;
        assert_eq!(tx["items"], json!([]));
        let requests = read_ok(&world, "/api/v1/payments/requests/me", user, Some(paid)).await?;
        assert_eq!(requests["items"], json!([]));
    }
    world.platform.stop().await
}

#[tokio::test]
async fn a_withdrawal_is_tracked_for_its_owner_only() -> anyhow::Result<()> {
    let world = world().await?;
    let owner = actor(&world, &world.client)?;
    let wallet = WalletId::for_user(owner.id);
    deposit(&world, &world.client, 10_000).await?;
    let usd_cents = |minor| Money::new(minor, Currency::Usd);

    let id = WithdrawalId::from_uuid(Uuid::now_v7());
    let path = format!("/api/v1/payments/wallet/withdrawals/{id}");
    let request = WithdrawalCommand::Request {
        withdrawal_id: id,
        amount: usd_cents(3_000),
        cooldown: withdrawal::Cooldown::NONE,
    };
    let requested = withdraw(&world, owner, wallet, id, request).await?;
    let w = read_ok(&world, &path, &world.client, Some(&requested)).await?;
    assert_eq!((&w["status"], &w["amount"]), (&json!("pending"), &usd(3_000)));
    assert_eq!(
        (&w["owner_id"], &w["wallet_id"]),
        (&json!(owner.id), &json!(wallet))
    );
    assert!(w["requested_at"].is_string() && w["started_at"].is_null(), "{w}");
    let balance = read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(&requested)).await?;
    assert_eq!(
        (&balance["balance"], &balance["reserved"], &balance["available"]),
        (&usd(10_000), &usd(3_000), &usd(7_000))
    );
    let tx = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions",
        &world.client,
        Some(&requested),
    )
    .await?;
    let newest = &tx["items"][0];
    assert_eq!(
        (
            &newest["kind"],
            &newest["amount"],
            &newest["balance"],
            &newest["reference_id"]
        ),
        (&json!("reservation"), &usd(3_000), &usd(10_000), &json!(id))
    );

    // Private: another user, even the other party of nothing, gets the 404 of a missing one.
    for user in [&world.other_client, &world.freelancer] {
        let hidden = read(&world, &path, Some(user), Some(&requested)).await?;
        assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    }
    let unknown = format!("/api/v1/payments/wallet/withdrawals/{}", Uuid::now_v7());
    assert_eq!(
        read(&world, &unknown, Some(&world.client), None).await?.status(),
        StatusCode::NOT_FOUND
    );

    let started = withdraw(&world, Actor::system(), wallet, id, WithdrawalCommand::Start).await?;
    let w = read_ok(&world, &path, &world.client, Some(&started)).await?;
    assert_eq!(w["status"], "processing");
    assert!(w["started_at"].is_string(), "{w}");
    let succeed = WithdrawalCommand::Succeed {
        provider_reference: "payout-1".into(),
    };
    let succeeded = withdraw(&world, Actor::system(), wallet, id, succeed).await?;
    let w = read_ok(&world, &path, &world.client, Some(&succeeded)).await?;
    assert_eq!(
        (&w["status"], &w["provider_reference"]),
        (&json!("succeeded"), &json!("payout-1"))
    );
    assert!(w["succeeded_at"].is_string(), "{w}");
    let balance = read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(&succeeded)).await?;
    assert_eq!(
        (&balance["balance"], &balance["reserved"], &balance["available"]),
        (&usd(7_000), &usd(0), &usd(7_000))
    );
    let tx = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions",
        &world.client,
        Some(&succeeded),
    )
    .await?;
    assert_eq!(
        (&tx["items"][0]["kind"], &tx["items"][0]["balance"]),
        (&json!("withdrawal"), &usd(7_000))
    );

    // Cancelled by its owner while pending: the reason is shown and the reservation released.
    let cancelled_id = WithdrawalId::from_uuid(Uuid::now_v7());
    let request = WithdrawalCommand::Request {
        withdrawal_id: cancelled_id,
        amount: usd_cents(1_000),
        cooldown: withdrawal::Cooldown::NONE,
    };
    withdraw(&world, owner, wallet, cancelled_id, request).await?;
    let cancel = WithdrawalCommand::Cancel {
        reason: "changed my mind".into(),
    };
    let cancelled = withdraw(&world, owner, wallet, cancelled_id, cancel).await?;
    let path = format!("/api/v1/payments/wallet/withdrawals/{cancelled_id}");
    let w = read_ok(&world, &path, &world.client, Some(&cancelled)).await?;
    assert_eq!(
        (&w["status"], &w["reason"]),
        (&json!("cancelled"), &json!("changed my mind"))
    );
    assert!(w["cancelled_at"].is_string(), "{w}");
    let balance = read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(&cancelled)).await?;
    assert_eq!(
        (&balance["reserved"], &balance["available"]),
        (&usd(0), &usd(7_000))
    );
    let tx = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions",
        &world.client,
        Some(&cancelled),
    )
    .await?;
    assert_eq!(
        (&tx["items"][0]["kind"], &tx["items"][0]["reference_id"]),
        (&json!("release"), &json!(cancelled_id))
    );
    world.platform.stop().await
}

#[tokio::test]
async fn transaction_pages_have_no_repeats_or_gaps_and_bad_paging_is_a_400() -> anyhow::Result<()> {
    let world = world().await?;
    let mut last = String::new();
    for minor in 1..=7 {
        last = deposit(&world, &world.client, minor * 100).await?;
    }
    let wallet = read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(&last)).await?;
    assert_eq!(wallet["balance"], usd(2_800));
    let full = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions?limit=100",
        &world.client,
        None,
    )
    .await?;
    let everything: Vec<_> = full["items"].as_array().context("items")?.clone();
    assert_eq!(everything.len(), 7);
    for limit in [1, 2, 3, 7] {
        let paged = all_transactions(&world, &world.client, limit).await?;
        assert_eq!(
            paged, everything,
            "limit {limit}: every transaction once, in order"
        );
    }
    let versions: Vec<i64> = everything.iter().filter_map(|t| t["version"].as_i64()).collect();
    assert!(
        versions.windows(2).all(|w| w[0] > w[1]),
        "newest first: {versions:?}"
    );
    let amounts: Vec<i64> = everything
        .iter()
        .filter_map(|t| t["amount"]["minor"].as_i64())
        .collect();
    assert_eq!(amounts, [700, 600, 500, 400, 300, 200, 100]);

    // Bad limits and tokens are 400s naming the parameter.
    let requests_token = read_ok(
        &world,
        "/api/v1/payments/requests/me?limit=1",
        &world.client,
        None,
    )
    .await?;
    assert_eq!(requests_token["next_page_token"], Value::Null);
    for (path, field) in [
        ("/api/v1/payments/wallet/transactions?limit=0", "limit"),
        ("/api/v1/payments/wallet/transactions?limit=101", "limit"),
        ("/api/v1/payments/requests/me?limit=-1", "limit"),
        (
            "/api/v1/payments/wallet/transactions?page_token=nope",
            "page_token",
        ),
        // The right shape with a wrong check.
        (
            "/api/v1/payments/wallet/transactions?page_token=7400000000000000010000000000",
            "page_token",
        ),
        ("/api/v1/payments/requests/me?page_token=00", "page_token"),
    ] {
        let answer = read(&world, path, Some(&world.client), None).await?;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{path}");
        let problem: Value = answer.json().await?;
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
    // A transactions token is not a requests token.
    let page = read_ok(
        &world,
        "/api/v1/payments/wallet/transactions?limit=1",
        &world.client,
        None,
    )
    .await?;
    let token = page["next_page_token"].as_str().context("a next page")?;
    let answer = read(
        &world,
        &format!("/api/v1/payments/requests/me?page_token={token}"),
        Some(&world.client),
        None,
    )
    .await?;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let bad_role = read(
        &world,
        "/api/v1/payments/requests/me?role=admin",
        Some(&world.client),
        None,
    )
    .await?;
    assert_eq!(bad_role.status(), StatusCode::BAD_REQUEST);

    // Every read needs a token.
    for path in [
        "/api/v1/payments/wallet",
        "/api/v1/payments/wallet/transactions",
        "/api/v1/payments/requests/me",
        &format!("/api/v1/payments/wallet/withdrawals/{}", Uuid::now_v7()),
    ] {
        assert_eq!(
            read(&world, path, None, None).await?.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    world.platform.stop().await
}

#[tokio::test]
async fn redelivered_and_older_events_change_nothing() -> anyhow::Result<()> {
    let world = world().await?;
    let (client, freelancer) = (actor(&world, &world.client)?, actor(&world, &world.freelancer)?);
    let job = world.job(&world.client).await?;
    let proposal = world.proposal(&job, &world.freelancer, 1).await?;
    let (contract, milestones) = world.contract(&job, &proposal).await?;
    let request = world.payment_request(&contract, &milestones[0]).await?;
    deposit(&world, &world.client, 30_000).await?;
    let path = format!("/api/v1/payments/requests/{request}/pay");
    let paid: Value = expect(
        world.send(Method::POST, &path, Some(&world.client), None).await?,
        StatusCode::OK,
    )
    .await?;
    let paid = paid["position"].as_str().context("no position")?;
    let client_wallet = WalletId::for_user(client.id);
    let freelancer_wallet = WalletId::for_user(freelancer.id);
    let id = WithdrawalId::from_uuid(Uuid::now_v7());
    let request_withdrawal = WithdrawalCommand::Request {
        withdrawal_id: id,
        amount: Money::new(5_000, Currency::Usd),
        cooldown: withdrawal::Cooldown::NONE,
    };
    let requested = withdraw(&world, client, client_wallet, id, request_withdrawal).await?;
    let started = withdraw(
        &world,
        Actor::system(),
        client_wallet,
        id,
        WithdrawalCommand::Start,
    )
    .await?;
    // Everything is projected once these reads answer.
    read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(paid)).await?;
    read_ok(&world, "/api/v1/payments/requests/me", &world.client, Some(paid)).await?;
    read_ok(
        &world,
        &format!("/api/v1/payments/wallet/withdrawals/{id}"),
        &world.client,
        Some(&started),
    )
    .await?;
    read_ok(&world, "/api/v1/payments/wallet", &world.client, Some(&requested)).await?;

    // The projector's handler, on the same read model as the running one.
    let config = &world.platform.env.config;
    let session = cassandra::connect(&config.cassandra).await?;
    let store = Payments::new(session, &config.cassandra.keyspace, &config.redis).await?;
    let projector = PaymentsProjector {
        store: store.clone(),
        upcasters: Upcasters::current(),
    };
    let snapshot = async || -> anyhow::Result<Value> {
        Ok(json!({
            "client_wallet": store.wallet(client_wallet.as_uuid()).await?,
            "freelancer_wallet": store.wallet(freelancer_wallet.as_uuid()).await?,
            "client_tx": store.transactions(client_wallet.as_uuid(), 100, None).await?,
            "freelancer_tx": store.transactions(freelancer_wallet.as_uuid(), 100, None).await?,
            "request": store.payment_request(request.parse()?).await?,
            "client_requests": store.payment_requests(client.id.as_uuid(), None, 100, None).await?,
            "freelancer_requests": store.payment_requests(freelancer.id.as_uuid(), None, 100, None).await?,
            "withdrawal": store.withdrawal(id.as_uuid()).await?,
        }))
    };
    let before = snapshot().await?;
    assert_eq!(before["request"]["status"], "paid");
    assert_eq!(before["withdrawal"]["status"], "processing");
    assert_eq!(before["client_wallet"]["reserved"], usd(5_000));

    let streams = [
        client_wallet.as_uuid(),
        freelancer_wallet.as_uuid(),
        request.parse()?,
        id.as_uuid(),
    ];
    for stream in streams {
        let events = world.ledger.read_stream(stream, 1).await?;
        assert!(!events.is_empty(), "stream {stream}");
        // Newest first (each older one after a newer one), then all again in order: after
        // every delivery the read model is as it was.
        for event in events.iter().rev().chain(events.iter()) {
            projector
                .handle(event)
                .await
                .map_err(|e| anyhow::anyhow!("{} v{}: {e}", event.event_type, event.version))?;
            assert_eq!(
                snapshot().await?,
                before,
                "{} v{} delivered again changed the read model",
                event.event_type,
                event.version
            );
        }
    }

    // The store itself says so: a wallet event at an applied version is not applied.
    let stale = WalletChange {
        wallet_id: client_wallet.as_uuid(),
        version: 1,
        at: Utc::now(),
        currency: Currency::Usd,
        opened_by: None,
        balance: Some(1),
        reserved: Some(0),
        transaction: None,
    };
    assert!(!store.apply_wallet(&stale).await?, "version 1 again");
    assert_eq!(
        store.applied_wallet(client_wallet.as_uuid()).await?,
        before["client_wallet"]["version"].as_i64()
    );
    assert_eq!(store.applied_withdrawal(id.as_uuid()).await?, Some(2));
    assert_eq!(store.applied_payment_request(request.parse()?).await?, Some(2));
    world.platform.stop().await
}

#[tokio::test]
async fn expired_and_cancelled_requests_are_read_back_by_both_parties() -> anyhow::Result<()> {
    let world = world().await?;
    let job = world.job(&world.client).await?;
    let proposal = world.proposal(&job, &world.freelancer, 2).await?;
    let (contract, milestones) = world.contract(&job, &proposal).await?;
    let expiring = world.payment_request(&contract, &milestones[0]).await?;
    let cancelled = world.payment_request(&contract, &milestones[1]).await?;

    // Past its due time (the saga's period is 14 days), the deadline saga expires it.
    let expired = system_on_request(
        &world,
        &expiring,
        PaymentRequestCommand::Expire,
        Utc::now() + chrono::Duration::days(30),
    )
    .await?;
    let cancel = PaymentRequestCommand::Cancel {
        reason: "contract-terminated".into(),
    };
    let cancelled_token = system_on_request(&world, &cancelled, cancel, Utc::now()).await?;
    let both = format!("{expired},{cancelled_token}");

    for user in [&world.client, &world.freelancer] {
        let page = read_ok(&world, "/api/v1/payments/requests/me", user, Some(&both)).await?;
        let find = |id: &str| {
            page["items"]
                .as_array()
                .and_then(|items| items.iter().find(|r| r["payment_request_id"] == json!(id)))
                .cloned()
                .with_context(|| format!("{id} in {page}"))
        };
        let e = find(&expiring)?;
        assert_eq!((&e["status"], &e["paid_at"]), (&json!("expired"), &Value::Null));
        assert!(e["expired_at"].is_string(), "{e}");
        let c = find(&cancelled)?;
        assert_eq!(
            (&c["status"], &c["cancel_reason"]),
            (&json!("cancelled"), &json!("contract-terminated"))
        );
        assert!(c["cancelled_at"].is_string(), "{c}");
        assert_eq!(c["version"], 2);
    }
    // A cancelled request cannot be paid.
    world.deposit(&world.client, 50_000).await?;
    let refused = world
        .send(
            Method::POST,
            &format!("/api/v1/payments/requests/{cancelled}/pay"),
            Some(&world.client),
            None,
        )
        .await?;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    world.platform.stop().await
}

#[tokio::test]
async fn a_wallet_keeps_its_last_100_transactions() -> anyhow::Result<()> {
    let env = infra::testing::TestEnv::new().await?;
    let config = &env.config;
    let session = cassandra::connect(&config.cassandra).await?;
    cassandra::ensure_schema(&session, &config.cassandra).await?;
    infra::read_models::payments::ensure_schema(&session, &config.cassandra.keyspace).await?;
    let store = Payments::new(session, &config.cassandra.keyspace, &config.redis).await?;
    let wallet = Uuid::now_v7();
    let change = |version: i64| WalletChange {
        wallet_id: wallet,
        version,
        at: Utc::now(),
        currency: Currency::Usd,
        opened_by: (version == 1).then(Uuid::now_v7),
        balance: Some(version * 100),
        reserved: Some(0),
        transaction: (version > 1).then(|| NewTransaction {
            kind: TransactionKind::Deposit,
            amount: Money::new(100, Currency::Usd),
            reference_id: None,
        }),
    };
    let last = i64::try_from(RECENT_TRANSACTIONS)? + 10;
    for version in 1..=last {
        assert!(store.apply_wallet(&change(version)).await?, "version {version}");
    }
    let page = store.transactions(wallet, 100, None).await?;
    let versions: Vec<i64> = page.items.iter().map(|t| t.version).collect();
    let expected: Vec<i64> = (last - 99..=last).rev().collect();
    assert_eq!(versions, expected, "the newest 100, newest first");
    assert_eq!(page.next_page_token, None, "older ones are gone");
    assert_eq!(page.items[0].balance, Money::new(last * 100, Currency::Usd));
    let wallet_view = store.wallet(wallet).await?.context("the wallet")?;
    assert_eq!(
        (wallet_view.version, wallet_view.balance.minor),
        (last, last * 100)
    );
    Ok(())
}
