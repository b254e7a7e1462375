//! The contracts read side (DESIGN §3, §6): every write of the contracts context (the saga's
//! initiation, milestone progress and evaluation, the payment that marks a milestone paid,
//! termination requests and their answers) is readable with its consistency token; redelivered
//! and older events change nothing; only the parties (and admins) see a contract; the caller's
//! contracts page without repeats or gaps.

use anyhow::Context as _;
use domain::{
    Actor, Role, UserId,
    contracts::{Contract, MilestoneStatus},
};
use futures::future::try_join_all;
use infra::{
    cassandra,
    http::auth::TokenKeys,
    kafka::consumer::EventHandler as _,
    ledger::{RecordedEvent, Upcasters},
    read_models::contracts::{ContractView, ContractsReadModel, MilestoneView, TerminationPage},
};
use projectors::contracts::ContractsProjector;
use reqwest::{Method, Response, StatusCode};
use scenarios::harness::{eventually, expect};
use serde_json::{Value, json};
use std::{collections::HashSet, time::Duration};
use uuid::Uuid;

use crate::world::{User, World};

/// A world whose reads wait long enough for a loaded test machine.
async fn world() -> anyhow::Result<World> {
    World::new_with(|c| c.http.consistency_wait_ms = 15_000).await
}

/// GET `path` from query-api as `user`, with a consistency token if given.
async fn read(world: &World, path: &str, user: &User, position: Option<&str>) -> anyhow::Result<Response> {
    let mut request = world
        .platform
        .http
        .get(format!("{}{path}", world.platform.query_url))
        .bearer_auth(&user.token);
    if let Some(position) = position {
        request = request.header("X-Consistency-Position", position);
    }
    Ok(request.send().await?)
}

/// GET `path` as `user` after `position`; the 200 body.
async fn read_ok(world: &World, path: &str, user: &User, position: Option<&str>) -> anyhow::Result<Value> {
    expect(read(world, path, user, position).await?, StatusCode::OK)
        .await
        .with_context(|| format!("GET {path}"))
}

/// A write of `user` that must answer `status`: its `(id, position)`.
async fn write(
    world: &World,
    path: &str,
    user: &User,
    body: Option<&Value>,
    status: StatusCode,
) -> anyhow::Result<(String, String)> {
    let answer: Value = expect(world.send(Method::POST, path, Some(user), body).await?, status)
        .await
        .with_context(|| format!("POST {path}"))?;
    Ok((
        answer["id"].as_str().context("no id")?.to_owned(),
        answer["position"].as_str().context("no position")?.to_owned(),
    ))
}

/// A contract of `world.client` with `world.freelancer`, with `milestones` milestones: its id,
/// its milestones' ids and the consistency token of its initiation.
async fn contract(world: &World, milestones: usize) -> anyhow::Result<(String, Vec<String>, String)> {
    let job = world.job(&world.client).await?;
    let proposal = world.proposal(&job, &world.freelancer, milestones).await?;
    world.contract_with_token(&job, &proposal).await
}

/// The client and freelancer ids of `contract`, from the ledger.
async fn parties(world: &World, contract: &str) -> anyhow::Result<(String, String)> {
    let loaded = world.ledger.load::<Contract>(contract.parse()?).await?;
    let c = loaded.state.initiated.context("no contract")?;
    Ok((c.client_id.to_string(), c.freelancer_id.to_string()))
}

/// The status of milestone `milestone` in a milestones answer.
fn status_of<'a>(milestones: &'a Value, milestone: &str) -> &'a str {
    milestones["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["milestone_id"] == milestone))
        .and_then(|m| m["status"].as_str())
        .unwrap_or("missing")
}

#[tokio::test]
async fn a_contract_its_milestones_and_their_payment_read_back_with_their_tokens() -> anyhow::Result<()> {
    let w = world().await?;
    let (contract, milestones, initiated) = contract(&w, 2).await?;
    let (client_id, freelancer_id) = parties(&w, &contract).await?;

    // The saga's initiation: both parties read the contract and its open milestones.
    let view = read_ok(
        &w,
        &format!("/api/v1/contracts/{contract}"),
        &w.client,
        Some(&initiated),
    )
    .await?;
    assert_eq!(view["contract_id"], contract.as_str());
    assert_eq!(view["client_id"], client_id.as_str());
    assert_eq!(view["freelancer_id"], freelancer_id.as_str());
    assert_eq!(view["status"], "active");
    assert!(
        view["completed_at"].is_null() && view["terminated_at"].is_null(),
        "{view}"
    );
    let view = read_ok(&w, &format!("/api/v1/contracts/{contract}"), &w.freelancer, None).await?;
    assert_eq!(view["contract_id"], contract.as_str());
    let listed = read_ok(
        &w,
        &format!("/api/v1/contracts/{contract}/milestones"),
        &w.freelancer,
        None,
    )
    .await?;
    let items = listed["items"].as_array().context("items")?;
    assert_eq!(items.len(), 2, "{listed}");
    assert!(listed["next_page_token"].is_null(), "{listed}");
    for (i, (item, id)) in items.iter().zip(&milestones).enumerate() {
        assert_eq!(
            item["milestone_id"],
            id.as_str(),
            "milestones in the contract's order"
        );
        assert_eq!(item["position"], i);
        assert_eq!(item["title"], format!("part {i}"));
        assert_eq!(item["amount"], json!({"minor": 10_000, "currency": "USD"}));
        assert_eq!(item["status"], "open");
        assert!(item["due_on"].as_str().is_some_and(|d| d.len() == 10), "{item}");
        assert!(item["payment_request_id"].is_null());
    }

    // Each progress and evaluation of the first milestone, read with its token.
    let m = &milestones[0];
    let base = format!("/api/v1/contracts/{contract}/milestones/{m}");
    let steps: [(&str, &User, Option<Value>, &str); 5] = [
        ("progress", &w.freelancer, None, "in_progress"),
        ("progress", &w.freelancer, None, "in_review"),
        (
            "evaluate",
            &w.client,
            Some(json!({"verdict": "changes_requested"})),
            "in_progress",
        ),
        ("progress", &w.freelancer, None, "in_review"),
        (
            "evaluate",
            &w.client,
            Some(json!({"verdict": "accepted"})),
            "accepted",
        ),
    ];
    let mut position = String::new();
    for (action, user, body, expected) in steps {
        (_, position) = write(
            &w,
            &format!("{base}/{action}"),
            user,
            body.as_ref(),
            StatusCode::OK,
        )
        .await?;
        let listed = read_ok(
            &w,
            &format!("/api/v1/contracts/{contract}/milestones"),
            &w.client,
            Some(&position),
        )
        .await?;
        assert_eq!(status_of(&listed, m), expected, "after {action}: {listed}");
        assert_eq!(
            status_of(&listed, &milestones[1]),
            "open",
            "the other milestone is untouched"
        );
    }
    let view = read_ok(
        &w,
        &format!("/api/v1/contracts/{contract}"),
        &w.client,
        Some(&position),
    )
    .await?;
    assert_eq!(view["version"], 6, "initiation and five milestone events: {view}");

    // The payment saga asks for the money; the client pays; the saga marks the milestone paid.
    w.deposit(&w.client, 10_000).await?;
    let request = w.create_payment_request(&contract, m).await?;
    write(
        &w,
        &format!("/api/v1/payments/requests/{request}/pay"),
        &w.client,
        None,
        StatusCode::OK,
    )
    .await?;
    let milestone_id = m.parse()?;
    eventually(Duration::from_secs(20), || async {
        let loaded = w.ledger.load::<Contract>(contract.parse()?).await?;
        let paid = loaded.state.initiated.and_then(|c| {
            c.milestone(milestone_id)
                .ok()
                .map(|m| m.status == MilestoneStatus::Paid)
        });
        Ok(paid.filter(|p| *p))
    })
    .await
    .context("the payment saga did not mark the milestone paid")?;
    let paid = w.stream_token::<Contract>(&contract).await?;
    let listed = read_ok(
        &w,
        &format!("/api/v1/contracts/{contract}/milestones"),
        &w.freelancer,
        Some(&paid),
    )
    .await?;
    let item = &listed["items"][0];
    assert_eq!(item["status"], "paid", "{listed}");
    assert_eq!(item["payment_request_id"], request.as_str());
    let view = read_ok(&w, &format!("/api/v1/contracts/{contract}"), &w.client, None).await?;
    assert_eq!(view["status"], "active", "one milestone is still open: {view}");
    Ok(())
}

#[tokio::test]
async fn paying_the_last_milestone_completes_the_contract() -> anyhow::Result<()> {
    let w = world().await?;
    let (contract, milestones, _) = contract(&w, 1).await?;
    w.deposit(&w.client, 10_000).await?;
    let request = w.payment_request(&contract, &milestones[0]).await?;
    write(
        &w,
        &format!("/api/v1/payments/requests/{request}/pay"),
        &w.client,
        None,
        StatusCode::OK,
    )
    .await?;
    eventually(Duration::from_secs(20), || async {
        let loaded = w.ledger.load::<Contract>(contract.parse()?).await?;
        Ok(loaded
            .state
            .status()
            .filter(|s| *s == domain::contracts::ContractStatus::Completed))
    })
    .await
    .context("the contract was not completed")?;
    let completed = w.stream_token::<Contract>(&contract).await?;
    let view = read_ok(
        &w,
        &format!("/api/v1/contracts/{contract}"),
        &w.freelancer,
        Some(&completed),
    )
    .await?;
    assert_eq!(view["status"], "completed", "{view}");
    assert!(view["completed_at"].is_string(), "{view}");
    let listed = read_ok(
        &w,
        &format!("/api/v1/contracts/{contract}/milestones"),
        &w.client,
        None,
    )
    .await?;
    assert_eq!(status_of(&listed, &milestones[0]), "paid", "{listed}");
    Ok(())
}

#[tokio::test]
async fn termination_requests_and_their_answers_read_back_with_their_tokens() -> anyhow::Result<()> {
    let w = world().await?;
    let (contract, _, initiated) = contract(&w, 2).await?;
    let (client_id, freelancer_id) = parties(&w, &contract).await?;
    let terminations = format!("/api/v1/contracts/{contract}/terminations");
    let empty = read_ok(&w, &terminations, &w.client, Some(&initiated)).await?;
    assert_eq!(empty, json!({"items": [], "next_page_token": null}));

    // The freelancer asks; the client sees it pending, then rejects it.
    let reason = json!({"reason": "I cannot make the deadline"});
    let (first, position) = write(
        &w,
        &terminations,
        &w.freelancer,
        Some(&reason),
        StatusCode::CREATED,
    )
    .await?;
    let listed = read_ok(&w, &terminations, &w.client, Some(&position)).await?;
    let item = &listed["items"][0];
    assert_eq!(item["termination_request_id"], first.as_str(), "{listed}");
    assert_eq!(item["contract_id"], contract.as_str());
    assert_eq!(item["requested_by"], freelancer_id.as_str());
    assert_eq!(item["reason"], "I cannot make the deadline");
    assert_eq!(item["status"], "pending");
    assert!(
        item["answered_by"].is_null() && item["answered_at"].is_null(),
        "{item}"
    );
    let (_, position) = write(
        &w,
        &format!("/api/v1/terminations/{first}/reject"),
        &w.client,
        None,
        StatusCode::OK,
    )
    .await?;
    let listed = read_ok(&w, &terminations, &w.freelancer, Some(&position)).await?;
    assert_eq!(listed["items"][0]["status"], "rejected", "{listed}");
    assert_eq!(listed["items"][0]["answered_by"], client_id.as_str());
    let view = read_ok(
        &w,
        &format!("/api/v1/contracts/{contract}"),
        &w.client,
        Some(&position),
    )
    .await?;
    assert_eq!(
        view["status"], "active",
        "a rejected request changes nothing: {view}"
    );

    // The client asks; the freelancer accepts: the contract is terminated.
    let reason = json!({"reason": "The project was cancelled"});
    let (second, _) = write(&w, &terminations, &w.client, Some(&reason), StatusCode::CREATED).await?;
    let (_, position) = write(
        &w,
        &format!("/api/v1/terminations/{second}/accept"),
        &w.freelancer,
        None,
        StatusCode::OK,
    )
    .await?;
    assert!(
        position.contains("contract:") && position.contains("termination:"),
        "{position}"
    );
    let view = read_ok(
        &w,
        &format!("/api/v1/contracts/{contract}"),
        &w.client,
        Some(&position),
    )
    .await?;
    assert_eq!(view["status"], "terminated", "{view}");
    assert_eq!(view["termination_request_id"], second.as_str());
    assert!(view["terminated_at"].is_string(), "{view}");
    let listed = read_ok(&w, &terminations, &w.freelancer, Some(&position)).await?;
    let statuses: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|t| {
            (
                t["termination_request_id"].as_str().unwrap_or(""),
                t["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [(first.as_str(), "rejected"), (second.as_str(), "accepted")],
        "oldest first"
    );
    assert_eq!(listed["items"][1]["answered_by"], freelancer_id.as_str());
    Ok(())
}

/// Everything the read model holds about `contract`.
async fn snapshot(
    model: &ContractsReadModel,
    contract: Uuid,
) -> anyhow::Result<(Option<ContractView>, Vec<MilestoneView>, TerminationPage)> {
    Ok((
        model.contract(contract).await?,
        model.milestones(contract).await?,
        model.terminations(contract, 100, None).await?,
    ))
}

#[tokio::test]
async fn redelivered_and_older_events_change_nothing() -> anyhow::Result<()> {
    let w = world().await?;
    let (contract, milestones, _) = contract(&w, 2).await?;
    let base = format!("/api/v1/contracts/{contract}/milestones/{}", milestones[0]);
    write(
        &w,
        &format!("{base}/progress"),
        &w.freelancer,
        None,
        StatusCode::OK,
    )
    .await?;
    write(
        &w,
        &format!("{base}/progress"),
        &w.freelancer,
        None,
        StatusCode::OK,
    )
    .await?;
    let changes = json!({"verdict": "changes_requested"});
    write(
        &w,
        &format!("{base}/evaluate"),
        &w.client,
        Some(&changes),
        StatusCode::OK,
    )
    .await?;
    let terminations = format!("/api/v1/contracts/{contract}/terminations");
    let reason = json!({"reason": "Let us stop here"});
    let (request, _) = write(
        &w,
        &terminations,
        &w.freelancer,
        Some(&reason),
        StatusCode::CREATED,
    )
    .await?;
    let (_, position) = write(
        &w,
        &format!("/api/v1/terminations/{request}/reject"),
        &w.client,
        None,
        StatusCode::OK,
    )
    .await?;
    let contract_position = w.stream_token::<Contract>(&contract).await?;
    read_ok(
        &w,
        &terminations,
        &w.client,
        Some(&format!("{position},{contract_position}")),
    )
    .await?;

    // The projector's handler, on the same tables as the running projector, which has applied
    // every event: each one again, newest first, then in order.
    let config = &w.platform.env.config.cassandra;
    let model = ContractsReadModel::new(cassandra::connect(config).await?, &config.keyspace).await?;
    let projector = ContractsProjector {
        contracts: model.clone(),
        upcasters: Upcasters::current(),
    };
    let (contract_id, request_id): (Uuid, Uuid) = (contract.parse()?, request.parse()?);
    let mut events: Vec<RecordedEvent> = w.ledger.read_stream(contract_id, 1).await?;
    assert_eq!(
        events.len(),
        4,
        "initiated, started, submitted, changes requested"
    );
    events.extend(w.ledger.read_stream(request_id, 1).await?);
    assert_eq!(
        events.len(),
        6,
        "and the termination request, requested and rejected"
    );
    let before = snapshot(&model, contract_id).await?;
    assert_eq!(model.applied(contract_id).await?, Some(4));
    assert_eq!(model.applied(request_id).await?, Some(2));
    let (contract_view, milestone_views, _) = &before;
    assert_eq!(contract_view.as_ref().map(|c| c.version), Some(4));
    assert_eq!(milestone_views[0].status.as_str(), "in_progress");

    for event in events.iter().rev().chain(events.iter()) {
        projector
            .handle(event)
            .await
            .map_err(|e| anyhow::anyhow!("{} v{}: {e}", event.event_type, event.version))?;
        assert_eq!(
            snapshot(&model, contract_id).await?,
            before,
            "{} v{} applied again",
            event.event_type,
            event.version
        );
    }
    assert_eq!(model.applied(contract_id).await?, Some(4));
    assert_eq!(model.applied(request_id).await?, Some(2));
    Ok(())
}

#[tokio::test]
async fn only_the_parties_see_a_contract() -> anyhow::Result<()> {
    let w = world().await?;
    let (contract, _, initiated) = contract(&w, 1).await?;
    let reason = json!({"reason": "Testing who may read this"});
    let terminations = format!("/api/v1/contracts/{contract}/terminations");
    let (_, requested) = write(&w, &terminations, &w.client, Some(&reason), StatusCode::CREATED).await?;
    let keys = TokenKeys::new(&w.platform.env.config.auth)?;
    let admin = User {
        token: keys
            .issue(Actor::new(UserId::from_uuid(Uuid::now_v7()), Role::Admin))?
            .access_token,
    };
    let private = [
        format!("/api/v1/contracts/{contract}"),
        format!("/api/v1/contracts/{contract}/milestones"),
        terminations.clone(),
    ];
    for path in &private {
        // The read model has the contract (the token is applied), yet outsiders get a 404.
        for (who, user) in [
            ("other client", &w.other_client),
            ("other freelancer", &w.other_freelancer),
        ] {
            let answer = read(&w, path, user, Some(&format!("{initiated},{requested}"))).await?;
            assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{who} on {path}");
            let body: Value = answer.json().await?;
            assert_eq!(
                body["type"], "/problems/contract-not-found",
                "{who} on {path}: {body}"
            );
            assert!(
                body.get("client_id").is_none() && body.get("items").is_none(),
                "{body}"
            );
        }
        for user in [&w.client, &w.freelancer, &admin] {
            read_ok(&w, path, user, None).await?;
        }
        let anonymous = w
            .platform
            .http
            .get(format!("{}{path}", w.platform.query_url))
            .send()
            .await?;
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without a token"
        );
    }
    let mine = read_ok(&w, "/api/v1/contracts/me", &w.other_client, Some(&initiated)).await?;
    assert_eq!(
        mine,
        json!({"items": [], "next_page_token": null}),
        "not the other client's"
    );
    let mine = read_ok(&w, "/api/v1/contracts/me", &admin, None).await?;
    assert_eq!(mine["items"], json!([]), "an admin is party to no contract");
    let missing = read(
        &w,
        &format!("/api/v1/contracts/{}", Uuid::now_v7()),
        &w.client,
        None,
    )
    .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let bad_id = read(&w, "/api/v1/contracts/not-a-uuid", &w.client, None).await?;
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);

    // Bad paging input is a 400 naming the parameter.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-3", "limit"),
        ("page_token=zz", "page_token"),
        ("page_token=010203c8ff", "page_token"),
    ] {
        for path in ["/api/v1/contracts/me".to_owned(), terminations.clone()] {
            let answer = read(&w, &format!("{path}?{query}"), &w.client, None).await?;
            assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{path}?{query}");
            let body: Value = answer.json().await?;
            assert_eq!(body["errors"][0]["field"], field, "{path}?{query}: {body}");
        }
    }
    Ok(())
}

/// Every item of the list at `path`, page by page with `limit`: the items' ids in order and
/// the number of pages.
async fn all_pages(
    world: &World,
    path: &str,
    user: &User,
    limit: usize,
    position: &str,
) -> anyhow::Result<(Vec<String>, usize)> {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            None => format!("{path}?limit={limit}"),
            Some(t) => format!("{path}?limit={limit}&page_token={t}"),
        };
        let page = read_ok(world, &url, user, Some(position)).await?;
        pages += 1;
        let items = page["items"].as_array().context("items")?;
        assert!(
            items.len() <= limit,
            "page {pages} of {path}: {} items",
            items.len()
        );
        ids.extend(
            items
                .iter()
                .filter_map(|c| c["contract_id"].as_str().map(str::to_owned)),
        );
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok((ids, pages)),
        }
        anyhow::ensure!(pages < 20, "paging does not end");
    }
}

#[tokio::test]
async fn my_contracts_page_without_repeats_or_gaps() -> anyhow::Result<()> {
    let w = world().await?;
    let mut made = Vec::new();
    for _ in 0..5 {
        let five = try_join_all((0..5).map(|_| contract(&w, 1))).await?;
        made.extend(five);
    }
    let expected: HashSet<String> = made.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(expected.len(), 25);
    // One token naming all 25 initiations: the first page waits for every one of them.
    let position = made
        .iter()
        .map(|(_, _, t)| t.as_str())
        .collect::<Vec<_>>()
        .join(",");

    for (user, limit) in [(&w.client, 10), (&w.freelancer, 7)] {
        let (ids, pages) = all_pages(&w, "/api/v1/contracts/me", user, limit, &position).await?;
        let unique: HashSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique.len(), ids.len(), "no repeats across pages: {ids:?}");
        assert_eq!(unique, expected, "no gaps");
        assert!(pages >= 25usize.div_ceil(limit), "{pages} pages of {limit}");
    }
    let first = read_ok(&w, "/api/v1/contracts/me?limit=10", &w.client, None).await?;
    let dates: Vec<chrono::DateTime<chrono::FixedOffset>> = first["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|c| c["initiated_at"].as_str())
        .map(chrono::DateTime::parse_from_rfc3339)
        .collect::<Result<_, _>>()?;
    assert_eq!(dates.len(), 10);
    let mut sorted = dates.clone();
    sorted.sort();
    assert_eq!(dates, sorted, "oldest first");
    let others = read_ok(&w, "/api/v1/contracts/me", &w.other_freelancer, None).await?;
    assert_eq!(others["items"], json!([]));
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_lists_the_contract_reads() -> anyhow::Result<()> {
    let w = world().await?;
    let doc: Value = expect(
        w.platform
            .http
            .get(format!("{}/openapi.json", w.platform.query_url))
            .send()
            .await?,
        StatusCode::OK,
    )
    .await?;
    for (path, statuses) in [
        ("/api/v1/contracts/{id}", &["200", "400", "401", "404", "504"][..]),
        ("/api/v1/contracts/me", &["200", "400", "401", "504"][..]),
        (
            "/api/v1/contracts/{id}/milestones",
            &["200", "400", "401", "404", "504"][..],
        ),
        (
            "/api/v1/contracts/{id}/terminations",
            &["200", "400", "401", "404", "504"][..],
        ),
    ] {
        let responses = &doc["paths"][path]["get"]["responses"];
        for status in statuses {
            assert!(responses.get(status).is_some(), "{path} {status}: {responses}");
        }
    }
    for schema in [
        "ContractView",
        "ContractPage",
        "MilestonePage",
        "MilestoneView",
        "TerminationPage",
        "TerminationView",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "schema {schema}"
        );
    }
    let status = &doc["components"]["schemas"]["MilestoneStatusView"]["enum"];
    assert_eq!(
        status,
        &json!(["open", "in_progress", "in_review", "accepted", "paid"])
    );
    Ok(())
}
