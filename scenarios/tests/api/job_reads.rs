//! The jobs read side over HTTP: every write of jobs and proposals read back with its consistency
//! token, keyword search, paging, private reads, redelivered and reordered events, and the job
//! cache through a Redis outage.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::{
    Actor, Context, Role, Timestamp, UserId,
    jobs::{self, Job, JobCommand, Proposal, ProposalCommand},
};
use futures::{StreamExt, TryStreamExt, stream};
use infra::{
    http::auth::TokenKeys,
    kafka::consumer::EventHandler,
    ledger::{EventMetadata, Upcasters},
    read_models::jobs::{JobPage, JobStore, PageRequest, ProposalPage, words},
    redis::Cache,
};
use projectors::jobs::JobsProjector;
use reqwest::{Method, Response, StatusCode};
use scenarios::harness::{Platform, eventually, expect};
use serde_json::{Value, json};
use std::{collections::HashSet, path::PathBuf, process::Stdio, time::Duration};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::world::{User, World, terms};

/// What a write answered: the resource's id and the consistency token.
struct Written {
    id: String,
    position: String,
}

/// Send a write that must answer `status`.
async fn write(
    world: &World,
    method: Method,
    path: &str,
    user: &User,
    body: Option<&Value>,
    status: StatusCode,
) -> anyhow::Result<Written> {
    let answer: Value = expect(world.send(method, path, Some(user), body).await?, status).await?;
    Ok(Written {
        id: answer["id"].as_str().context("no id")?.to_owned(),
        position: answer["position"].as_str().context("no position")?.to_owned(),
    })
}

/// GET `path` from query-api as the bearer of `token`, with a consistency token if any.
async fn read(
    platform: &Platform,
    path: &str,
    token: &str,
    position: Option<&str>,
) -> anyhow::Result<Response> {
    let mut request = platform
        .http
        .get(format!("{}{path}", platform.query_url))
        .bearer_auth(token);
    if let Some(position) = position {
        request = request.header("x-consistency-position", position);
    }
    Ok(request.send().await?)
}

/// GET `path` that must answer 200; its body.
async fn read_ok(
    platform: &Platform,
    path: &str,
    token: &str,
    position: Option<&str>,
) -> anyhow::Result<Value> {
    expect(read(platform, path, token, position).await?, StatusCode::OK).await
}

fn job_body(title: &str, description: &str, skills: &[&str]) -> Value {
    json!({"title": title, "description": description, "budget": {"minor": 50_000, "currency": "USD"}, "skills": skills})
}

/// The ids of a page's items under `field`.
fn ids(page: &Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The job ids that `/jobs/search?q=` finds (first page of 100).
async fn search(world: &World, q: &str, position: Option<&str>) -> anyhow::Result<Vec<String>> {
    let path = format!("/api/v1/jobs/search?q={}&limit=100", urlencode(q));
    let page = read_ok(&world.platform, &path, &world.freelancer.token, position).await?;
    Ok(ids(&page, "job_id"))
}

fn urlencode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn system() -> Context {
    Context {
        actor: Actor::system(),
        now: Timestamp::from_datetime(Utc::now()),
    }
}

fn system_metadata() -> EventMetadata {
    EventMetadata::new(Uuid::now_v7(), None, Utc::now())
}

#[tokio::test]
async fn every_write_of_jobs_and_proposals_reads_back_with_its_token() -> anyhow::Result<()> {
    let world = World::new().await?;
    let p = &world.platform;
    let (client, freelancer) = (&world.client.token, &world.freelancer.token);

    // Post, then read (this read fills the cache).
    let body = job_body("Weave a tapestry", "Jacquard style", &["weaving"]);
    let posted = write(
        &world,
        Method::POST,
        "/api/v1/jobs",
        &world.client,
        Some(&body),
        StatusCode::CREATED,
    )
    .await?;
    let job_path = format!("/api/v1/jobs/{}", posted.id);
    let job = read_ok(p, &job_path, freelancer, Some(&posted.position)).await?;
    assert_eq!(job["title"], "Weave a tapestry");
    assert_eq!(job["status"], "open");
    assert_eq!(job["budget"], json!({"minor": 50_000, "currency": "USD"}));
    assert_eq!(job["skills"], json!(["weaving"]));
    assert_eq!(job["version"], 1);
    assert!(job["updated_at"].is_null() && job["closed_at"].is_null());

    // Update: the cached version 1 is older than the token, so the read answers version 2.
    let body = job_body(
        "Weave a larger tapestry",
        "Jacquard style, two metres",
        &["weaving", "dyeing"],
    );
    let updated = write(
        &world,
        Method::PUT,
        &job_path,
        &world.client,
        Some(&body),
        StatusCode::OK,
    )
    .await?;
    let job = read_ok(p, &job_path, freelancer, Some(&updated.position)).await?;
    assert_eq!(job["title"], "Weave a larger tapestry");
    assert_eq!(job["skills"], json!(["weaving", "dyeing"]));
    assert_eq!(job["version"], 2);
    assert!(job["updated_at"].is_string());
    // Without a token, the cache answers the same (the read above filled it at version 2).
    assert_eq!(read_ok(p, &job_path, freelancer, None).await?, job);
    let mine = read_ok(p, "/api/v1/jobs/me", client, Some(&updated.position)).await?;
    assert_eq!(ids(&mine, "job_id"), vec![posted.id.clone()]);
    assert_eq!(mine["items"][0], job);

    // Submit a proposal: the proposal, the job's list and the freelancer's list show it.
    let proposals_path = format!("/api/v1/jobs/{}/proposals", posted.id);
    let first = write(
        &world,
        Method::POST,
        &proposals_path,
        &world.freelancer,
        Some(&terms(2)),
        StatusCode::CREATED,
    )
    .await?;
    let first_path = format!("/api/v1/proposals/{}", first.id);
    let proposal = read_ok(p, &first_path, freelancer, Some(&first.position)).await?;
    assert_eq!(proposal["status"], "submitted");
    assert_eq!(proposal["job_id"], posted.id.as_str());
    assert_eq!(proposal["cover_letter"], "I have done this before.");
    assert_eq!(proposal["milestones"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        proposal["milestones"][0]["amount"],
        json!({"minor": 10_000, "currency": "USD"})
    );
    assert_eq!(proposal["attachments"], json!([]));
    assert!(proposal["decided_at"].is_null() && proposal["contract_id"].is_null());
    let listed = read_ok(p, &proposals_path, client, Some(&first.position)).await?;
    assert_eq!(ids(&listed, "proposal_id"), vec![first.id.clone()]);
    let mine = read_ok(p, "/api/v1/proposals/me", freelancer, Some(&first.position)).await?;
    assert_eq!(ids(&mine, "proposal_id"), vec![first.id.clone()]);
    // The job stream moved too (ProposalReceived): its token is honoured by the job read.
    let job = read_ok(p, &job_path, freelancer, Some(&first.position)).await?;
    assert_eq!(job["version"], 3);

    // Update the proposal's terms, with an attachment.
    let mut changed_terms = terms(1);
    changed_terms["cover_letter"] = json!("Even better: I have done this twice.");
    changed_terms["attachments"] = json!(["https://files.example.com/portfolio.pdf"]);
    let changed = write(
        &world,
        Method::PUT,
        &first_path,
        &world.freelancer,
        Some(&changed_terms),
        StatusCode::OK,
    )
    .await?;
    let proposal = read_ok(p, &first_path, client, Some(&changed.position)).await?;
    assert_eq!(proposal["cover_letter"], "Even better: I have done this twice.");
    assert_eq!(proposal["milestones"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        proposal["attachments"],
        json!(["https://files.example.com/portfolio.pdf"])
    );
    assert!(proposal["updated_at"].is_string());

    // Withdraw it.
    let withdrawn = write(
        &world,
        Method::POST,
        &format!("{first_path}/withdraw"),
        &world.freelancer,
        None,
        StatusCode::OK,
    )
    .await?;
    let proposal = read_ok(p, &first_path, freelancer, Some(&withdrawn.position)).await?;
    assert_eq!(proposal["status"], "withdrawn");
    assert!(proposal["decided_at"].is_string());

    // Another freelancer's proposal, rejected.
    let second = write(
        &world,
        Method::POST,
        &proposals_path,
        &world.other_freelancer,
        Some(&terms(1)),
        StatusCode::CREATED,
    )
    .await?;
    let rejected = write(
        &world,
        Method::POST,
        &format!("{proposals_path}/{}/reject", second.id),
        &world.client,
        None,
        StatusCode::OK,
    )
    .await?;
    let proposal = read_ok(
        p,
        &format!("/api/v1/proposals/{}", second.id),
        client,
        Some(&rejected.position),
    )
    .await?;
    assert_eq!(proposal["status"], "rejected");

    // A third, accepted: the job closes.
    let third = write(
        &world,
        Method::POST,
        &proposals_path,
        &world.freelancer,
        Some(&terms(2)),
        StatusCode::CREATED,
    )
    .await?;
    let accepted = write(
        &world,
        Method::POST,
        &format!("{proposals_path}/{}/accept", third.id),
        &world.client,
        None,
        StatusCode::OK,
    )
    .await?;
    let third_path = format!("/api/v1/proposals/{}", third.id);
    let proposal = read_ok(p, &third_path, freelancer, Some(&accepted.position)).await?;
    assert_eq!(proposal["status"], "accepted");
    assert!(proposal["contract_id"].is_string() && proposal["decided_at"].is_string());
    let job = read_ok(p, &job_path, freelancer, Some(&accepted.position)).await?;
    assert_eq!(job["status"], "closed");
    assert_eq!(job["accepted_proposal_id"], third.id.as_str());
    assert!(job["closed_at"].is_string());
    let listed = read_ok(
        p,
        &format!("{proposals_path}?limit=2"),
        client,
        Some(&accepted.position),
    )
    .await?;
    assert_eq!(
        ids(&listed, "proposal_id"),
        vec![third.id.clone(), second.id.clone()],
        "newest first"
    );
    let token = listed["next_page_token"].as_str().context("a next page")?;
    let rest = read_ok(
        p,
        &format!("{proposals_path}?limit=2&page_token={token}"),
        client,
        None,
    )
    .await?;
    assert_eq!(ids(&rest, "proposal_id"), vec![first.id.clone()]);
    assert!(rest["next_page_token"].is_null());
    assert!(
        search(&world, "tapestry", Some(&accepted.position))
            .await?
            .is_empty(),
        "a closed job is not found"
    );

    // The contract saga's compensation: the acceptance reverted, the job reopened.
    let third_id: Uuid = third.id.parse()?;
    let job_id: Uuid = posted.id.parse()?;
    let reason = "contract-not-initiated".to_owned();
    let revert = ProposalCommand::RevertAcceptance {
        reason: reason.clone(),
    };
    let reverted = world
        .ledger
        .execute::<Proposal>(third_id, system_metadata(), |proposal| {
            jobs::proposal::decide(proposal, &revert, &system())
        })
        .await?;
    let reopen = JobCommand::Reopen { reason };
    let reopened = world
        .ledger
        .execute::<Job>(job_id, system_metadata(), |job| {
            jobs::job::decide(job, &reopen, &system())
        })
        .await?;
    let proposal = read_ok(p, &third_path, freelancer, Some(&reverted.token())).await?;
    assert_eq!(proposal["status"], "submitted");
    assert!(proposal["contract_id"].is_null() && proposal["decided_at"].is_null());
    let job = read_ok(p, &job_path, freelancer, Some(&reopened.token())).await?;
    assert_eq!(job["status"], "open");
    assert!(job["closed_at"].is_null() && job["accepted_proposal_id"].is_null());
    assert_eq!(
        search(&world, "tapestry", Some(&reopened.token())).await?,
        vec![posted.id.clone()]
    );

    // Closed by its owner.
    let closed = write(
        &world,
        Method::POST,
        &format!("{job_path}/close"),
        &world.client,
        None,
        StatusCode::OK,
    )
    .await?;
    let job = read_ok(p, &job_path, freelancer, Some(&closed.position)).await?;
    assert_eq!(job["status"], "closed");
    assert!(job["accepted_proposal_id"].is_null());
    assert!(
        search(&world, "tapestry", Some(&closed.position))
            .await?
            .is_empty()
    );

    world.platform.stop().await
}

#[tokio::test]
async fn search_finds_open_jobs_by_any_word_case_insensitively() -> anyhow::Result<()> {
    let world = World::new().await?;
    let post = |owner: &'static str, body: Value| {
        let world = &world;
        async move {
            let user = if owner == "client" {
                &world.client
            } else {
                &world.other_client
            };
            write(
                world,
                Method::POST,
                "/api/v1/jobs",
                user,
                Some(&body),
                StatusCode::CREATED,
            )
            .await
        }
    };
    let a = post(
        "client",
        job_body(
            "Weave a Tapestry",
            "Jacquard LOOM work",
            &["Embroidery", "Node.js"],
        ),
    )
    .await?;
    let b = post("other", job_body("Paint a fence", "White picket", &["painting"])).await?;
    let c = post("client", job_body("Tapestry repair", "Old threads", &["mending"])).await?;
    let all = [&a, &b, &c].map(|w| w.position.as_str()).join(",");

    for (q, expected) in [
        ("tapestry", vec![&c, &a]),
        ("TAPESTRY", vec![&c, &a]),
        ("jacquard", vec![&a]),
        ("loom", vec![&a]),
        ("eMbRoIdErY", vec![&a]),
        ("node", vec![&a]),
        ("js", vec![&a]),
        ("Node.js", vec![&a]),
        ("picket, tapestry!", vec![&c, &b, &a]),
        ("painting", vec![&b]),
        ("nothing-like-it", vec![]),
    ] {
        let expected: Vec<String> = expected.into_iter().map(|w| w.id.clone()).collect();
        assert_eq!(search(&world, q, Some(&all)).await?, expected, "q = {q}");
    }

    // A closed job drops out; an edit's removed words drop out, its new words come in.
    let closed = write(
        &world,
        Method::POST,
        &format!("/api/v1/jobs/{}/close", c.id),
        &world.client,
        None,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(
        search(&world, "tapestry", Some(&closed.position)).await?,
        vec![a.id.clone()]
    );
    assert!(
        search(&world, "threads", Some(&closed.position))
            .await?
            .is_empty()
    );
    let body = job_body("Paint a gate", "White picket", &["painting"]);
    let edited = write(
        &world,
        Method::PUT,
        &format!("/api/v1/jobs/{}", b.id),
        &world.other_client,
        Some(&body),
        StatusCode::OK,
    )
    .await?;
    assert!(search(&world, "fence", Some(&edited.position)).await?.is_empty());
    assert_eq!(
        search(&world, "gate", Some(&edited.position)).await?,
        vec![b.id.clone()]
    );
    assert_eq!(
        search(&world, "picket", Some(&edited.position)).await?,
        vec![b.id.clone()]
    );

    // Bad input is a 400 naming the parameter.
    let many = (0..11).map(|i| format!("w{i}")).collect::<Vec<_>>().join("+");
    for (query, field) in [
        ("".to_owned(), "q"),
        ("q=".to_owned(), "q"),
        ("q=%21%3B%20".to_owned(), "q"),
        (format!("q={many}"), "q"),
        (format!("q={}", "a".repeat(501)), "q"),
        ("q=x&limit=0".to_owned(), "limit"),
        ("q=x&limit=101".to_owned(), "limit"),
        ("q=x&page_token=garbage".to_owned(), "page_token"),
    ] {
        let response = read(
            &world.platform,
            &format!("/api/v1/jobs/search?{query}"),
            &world.client.token,
            None,
        )
        .await?;
        let problem: Value = expect(response, StatusCode::BAD_REQUEST).await?;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    let response = read(
        &world.platform,
        "/api/v1/jobs/search?q=x&limit=many",
        &world.client.token,
        None,
    )
    .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    world.platform.stop().await
}

#[tokio::test]
async fn paging_through_250_jobs_has_no_repeats_or_gaps() -> anyhow::Result<()> {
    let world = World::new().await?;
    let posted: Vec<Written> = stream::iter(0..250)
        .map(|i| {
            let world = &world;
            async move {
                let body = job_body(&format!("Bulk job {i}"), &format!("bulkword item{i}"), &[]);
                write(
                    world,
                    Method::POST,
                    "/api/v1/jobs",
                    &world.client,
                    Some(&body),
                    StatusCode::CREATED,
                )
                .await
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    // Wait for every job (a token names at most 64 streams).
    for chunk in posted.chunks(50) {
        let token = chunk
            .iter()
            .map(|w| w.position.as_str())
            .collect::<Vec<_>>()
            .join(",");
        eventually(Duration::from_secs(60), || async {
            let response = read(
                &world.platform,
                "/api/v1/jobs/me?limit=1",
                &world.client.token,
                Some(&token),
            )
            .await?;
            match response.status() {
                StatusCode::GATEWAY_TIMEOUT => Ok(None),
                _ => Ok(Some(expect::<Value>(response, StatusCode::OK).await?)),
            }
        })
        .await?;
    }
    let expected: HashSet<String> = posted.iter().map(|w| w.id.clone()).collect();

    for list in [
        "/api/v1/jobs/search?q=BULKWORD&limit=20",
        "/api/v1/jobs/me?limit=20",
    ] {
        let mut seen = Vec::new();
        let mut posted_at: Vec<DateTime<Utc>> = Vec::new();
        let mut page_token: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &page_token {
                Some(t) => format!("{list}&page_token={t}"),
                None => list.to_owned(),
            };
            let page = read_ok(&world.platform, &path, &world.client.token, None).await?;
            pages += 1;
            let items = page["items"].as_array().context("items")?;
            for item in items {
                seen.push(item["job_id"].as_str().context("job_id")?.to_owned());
                posted_at.push(item["posted_at"].as_str().context("posted_at")?.parse()?);
            }
            match page["next_page_token"].as_str() {
                Some(t) => {
                    assert_eq!(items.len(), 20, "{list}: a page before the last is full");
                    page_token = Some(t.to_owned());
                }
                None => break,
            }
            assert!(pages < 20, "{list}: too many pages");
        }
        assert_eq!(pages, 13, "{list}");
        assert_eq!(seen.len(), 250, "{list}: every job once");
        assert_eq!(
            seen.iter().cloned().collect::<HashSet<_>>(),
            expected,
            "{list}: no gaps, no repeats"
        );
        assert!(posted_at.windows(2).all(|w| w[0] >= w[1]), "{list}: newest first");
    }
    world.platform.stop().await
}

#[tokio::test]
async fn private_reads_by_non_parties_are_refused() -> anyhow::Result<()> {
    let world = World::new().await?;
    let p = &world.platform;
    let job = world.job(&world.client).await?;
    let proposals_path = format!("/api/v1/jobs/{job}/proposals");
    let submitted = write(
        &world,
        Method::POST,
        &proposals_path,
        &world.freelancer,
        Some(&terms(1)),
        StatusCode::CREATED,
    )
    .await?;
    let proposal_path = format!("/api/v1/proposals/{}", submitted.id);
    let position = Some(submitted.position.as_str());
    let keys = TokenKeys::new(&p.env.config.auth)?;
    let admin = keys
        .issue(Actor::new(UserId::from_uuid(Uuid::now_v7()), Role::Admin))?
        .access_token;

    // The parties and admins.
    for (who, token) in [("client", &world.client.token), ("admin", &admin)] {
        let listed = read_ok(p, &proposals_path, token, position).await?;
        assert_eq!(ids(&listed, "proposal_id"), vec![submitted.id.clone()], "{who}");
    }
    for (who, token) in [
        ("author", &world.freelancer.token),
        ("job owner", &world.client.token),
        ("admin", &admin),
    ] {
        let proposal = read_ok(p, &proposal_path, token, position).await?;
        assert_eq!(proposal["proposal_id"], submitted.id.as_str(), "{who}");
    }

    // Anyone else: 403 for a (public) job's proposals, 404 for a proposal; never the data.
    for (who, token) in [
        ("other client", &world.other_client.token),
        ("author", &world.freelancer.token),
        ("other freelancer", &world.other_freelancer.token),
    ] {
        let response = read(p, &proposals_path, token, position).await?;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{who}");
        assert!(!response.text().await?.contains(&submitted.id), "{who}");
    }
    for (who, token) in [
        ("other client", &world.other_client.token),
        ("other freelancer", &world.other_freelancer.token),
    ] {
        let response = read(p, &proposal_path, token, position).await?;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{who}");
        assert!(!response.text().await?.contains("cover_letter"), "{who}");
        let mine = read_ok(p, "/api/v1/proposals/me", token, position).await?;
        assert!(ids(&mine, "proposal_id").is_empty(), "{who}");
    }
    let missing = format!("/api/v1/jobs/{}/proposals", Uuid::now_v7());
    assert_eq!(
        read(p, &missing, &world.client.token, None).await?.status(),
        StatusCode::NOT_FOUND
    );
    let missing = format!("/api/v1/proposals/{}", Uuid::now_v7());
    assert_eq!(
        read(p, &missing, &admin, None).await?.status(),
        StatusCode::NOT_FOUND
    );
    for path in [
        proposals_path.as_str(),
        proposal_path.as_str(),
        "/api/v1/proposals/me",
        "/api/v1/jobs/me",
    ] {
        let response = p.http.get(format!("{}{path}", p.query_url)).send().await?;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without a token"
        );
    }
    world.platform.stop().await
}

/// The whole read model of one job and its proposals, as the store answers.
#[derive(Debug, PartialEq)]
struct Snapshot {
    job: Option<infra::read_models::jobs::JobView>,
    proposals: Vec<Option<infra::read_models::jobs::ProposalView>>,
    by_client: JobPage,
    by_job: ProposalPage,
    by_freelancer: ProposalPage,
    searches: Vec<JobPage>,
    applied: Vec<Option<i64>>,
}

async fn snapshot(
    store: &JobStore,
    job: Uuid,
    proposals: &[Uuid],
    client: Uuid,
    freelancer: Uuid,
) -> anyhow::Result<Snapshot> {
    let page = PageRequest {
        limit: 100,
        after: None,
    };
    let mut searches = Vec::new();
    for q in ["alpha", "beta", "gamma"] {
        searches.push(store.search(&words(q), &page).await?);
    }
    let mut views = Vec::new();
    let mut applied = vec![store.applied(job).await?];
    for id in proposals {
        views.push(store.proposal(*id).await?);
        applied.push(store.applied(*id).await?);
    }
    Ok(Snapshot {
        job: store.get(job).await?,
        proposals: views,
        by_client: store.jobs_of_client(client, &page).await?,
        by_job: store.proposals_of_job(job, &page).await?,
        by_freelancer: store.proposals_of_freelancer(freelancer, &page).await?,
        searches,
        applied,
    })
}

#[tokio::test]
async fn redelivered_and_out_of_order_events_change_nothing() -> anyhow::Result<()> {
    let world = World::new().await?;
    let p = &world.platform;
    let body = job_body("Alpha beta", "Words alpha and beta", &[]);
    let posted = write(
        &world,
        Method::POST,
        "/api/v1/jobs",
        &world.client,
        Some(&body),
        StatusCode::CREATED,
    )
    .await?;
    let proposals_path = format!("/api/v1/jobs/{}/proposals", posted.id);
    let submitted = write(
        &world,
        Method::POST,
        &proposals_path,
        &world.freelancer,
        Some(&terms(2)),
        StatusCode::CREATED,
    )
    .await?;
    let body = job_body("Alpha gamma", "Words alpha and gamma", &[]);
    let updated = write(
        &world,
        Method::PUT,
        &format!("/api/v1/jobs/{}", posted.id),
        &world.client,
        Some(&body),
        StatusCode::OK,
    )
    .await?;
    let proposal_path = format!("/api/v1/proposals/{}", submitted.id);
    let changed = write(
        &world,
        Method::PUT,
        &proposal_path,
        &world.freelancer,
        Some(&terms(1)),
        StatusCode::OK,
    )
    .await?;
    let withdrawn = write(
        &world,
        Method::POST,
        &format!("{proposal_path}/withdraw"),
        &world.freelancer,
        None,
        StatusCode::OK,
    )
    .await?;
    let token = [&posted, &submitted, &updated, &changed, &withdrawn]
        .map(|w| w.position.as_str())
        .join(",");
    let job_view = read_ok(
        p,
        &format!("/api/v1/jobs/{}", posted.id),
        &world.client.token,
        Some(&token),
    )
    .await?;
    let proposal_view = read_ok(p, &proposal_path, &world.client.token, Some(&token)).await?;

    let config = &p.env.config;
    let session = infra::cassandra::connect(&config.cassandra).await?;
    let store = JobStore::new(session, &config.cassandra.keyspace).await?;
    let projector = JobsProjector::new(
        store.clone(),
        Cache::connect(&config.redis).await?,
        Upcasters::current(),
        p.env.ledger().await?,
    );
    let (job, proposal): (Uuid, Uuid) = (posted.id.parse()?, submitted.id.parse()?);
    let client: Uuid = job_view["client_id"].as_str().context("client")?.parse()?;
    let freelancer: Uuid = proposal_view["freelancer_id"]
        .as_str()
        .context("freelancer")?
        .parse()?;
    let before = snapshot(&store, job, &[proposal], client, freelancer).await?;
    assert_eq!(before.applied, vec![Some(3), Some(3)]);
    assert_eq!(
        before.searches[1].items.len(),
        0,
        "beta left the job with its edit"
    );

    let mut events = world.ledger.read_stream(job, 1).await?;
    events.extend(world.ledger.read_stream(proposal, 1).await?);
    assert_eq!(events.len(), 6);
    // Every event again, in order; then newest first (each older after a newer one).
    for event in events.iter().chain(events.iter().rev()) {
        projector.handle(event).await.map_err(|e| anyhow::anyhow!(e))?;
        let after = snapshot(&store, job, &[proposal], client, freelancer).await?;
        assert_eq!(
            after, before,
            "after {} v{} again",
            event.event_type, event.version
        );
    }
    // The HTTP reads agree (the cache included).
    assert_eq!(
        read_ok(
            p,
            &format!("/api/v1/jobs/{}", posted.id),
            &world.client.token,
            None
        )
        .await?,
        job_view
    );
    assert_eq!(
        read_ok(p, &proposal_path, &world.client.token, None).await?,
        proposal_view
    );
    world.platform.stop().await
}

/// A private `redis-server` on `port`, keeping its snapshot in `dir`.
async fn redis_server(port: u16, dir: &PathBuf) -> anyhow::Result<Child> {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("redis-server (apt-get install redis-server)")?;
    eventually(Duration::from_secs(10), || async {
        Ok((redis_cli(port, &["PING"]).await.ok().as_deref() == Some("PONG")).then_some(()))
    })
    .await?;
    Ok(child)
}

async fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "redis-cli {args:?} failed");
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

#[tokio::test]
async fn a_job_updated_after_it_was_cached_reads_back_updated_through_a_redis_outage() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("workup-redis-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut redis = redis_server(port, &dir).await?;
    let platform =
        Platform::start_with(|config| config.redis.url = format!("redis://127.0.0.1:{port}/")).await?;
    let email = format!("ada-{}@example.com", Uuid::new_v4().simple());
    let (_, client) = platform.signed_up_client(&email, "Ada").await?;

    // Posted and read: cached at version 1.
    let posted: Value = expect(
        platform
            .post(
                "/api/v1/jobs",
                Some(&client),
                &job_body("Weave a tapestry", "Jacquard style", &["weaving"]),
            )
            .await?,
        StatusCode::CREATED,
    )
    .await?;
    let id = posted["id"].as_str().context("id")?;
    let path = format!("/api/v1/jobs/{id}");
    let first = read_ok(&platform, &path, &client, posted["position"].as_str()).await?;
    assert_eq!(first["version"], 1);
    let key = format!("{}cache:job:{id}", platform.env.config.redis.prefix);
    assert_eq!(redis_cli(port, &["HGET", &key, "v"]).await?, "1");
    // Keep that entry across the restart: the Redis that comes back holds the stale version.
    assert_eq!(redis_cli(port, &["SAVE"]).await?, "OK");

    // Redis goes away; the update is projected, its cache invalidation fails.
    redis.kill().await?;
    let body = job_body("Weave a larger tapestry", "Jacquard style", &["weaving"]);
    let updated: Value = expect(
        platform
            .call(Method::PUT, &path, Some(&client), Some(&body))
            .await?,
        StatusCode::OK,
    )
    .await?;
    let position = updated["position"].as_str().context("position")?;
    let job = read_ok(&platform, &path, &client, Some(position)).await?;
    assert_eq!(
        job["title"], "Weave a larger tapestry",
        "read while Redis is down"
    );

    // Redis comes back with the version-1 entry: the projector's retried invalidation removes
    // it, so even a read without a token soon answers version 2...
    let mut redis = redis_server(port, &dir).await?;
    let fresh = eventually(Duration::from_secs(30), || async {
        let job = read_ok(&platform, &path, &client, None).await?;
        Ok((job["version"] == 2).then_some(job))
    })
    .await?;
    assert_eq!(fresh["title"], "Weave a larger tapestry");
    // ...and a read with the token always does, even when the cache holds an older version
    // (planted here): that hit is refused, and the fill replaces it.
    let stale = serde_json::to_string(&first)?;
    redis_cli(port, &["HSET", &key, "v", "1", "d", &stale]).await?;
    let job = read_ok(&platform, &path, &client, Some(position)).await?;
    assert_eq!(job["title"], "Weave a larger tapestry");
    assert_eq!(job["version"], 2);
    assert_eq!(redis_cli(port, &["HGET", &key, "v"]).await?, "2");
    assert_eq!(read_ok(&platform, &path, &client, None).await?, job);

    platform.stop().await?;
    redis.kill().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
