//! Every write of command-api over HTTP (DESIGN §3): for each endpoint the happy path, 401
//! without a token, 403 for a user it is not theirs (or the wrong role), and 400 naming the bad
//! field; then the saga-only commands are out of HTTP's reach.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::world::{User, World, terms};

/// Assert a problem answer with `status`; its body.
pub async fn problem(response: Response, status: StatusCode, case: &str) -> Value {
    let actual = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(actual, status, "{case}: {body}");
    assert_eq!(content_type, "application/problem+json", "{case}: content type");
    assert!(
        body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")),
        "{case}: {body}"
    );
    body
}

/// One endpoint's checks, then its happy path (answering `ok`); the answer's id.
struct Endpoint<'a> {
    method: Method,
    path: String,
    body: Option<Value>,
    owner: &'a User,
    /// Someone it is not for, and the 403 type expected.
    intruder: Option<(&'a User, &'static str)>,
    /// A body with one bad field, and the field's name.
    bad: Option<(Value, &'static str)>,
    ok: StatusCode,
}

impl Endpoint<'_> {
    async fn check(self, world: &World) -> anyhow::Result<String> {
        let case = format!("{} {}", self.method, self.path);
        let anonymous = world
            .send(self.method.clone(), &self.path, None, self.body.as_ref())
            .await?;
        let body = problem(
            anonymous,
            StatusCode::UNAUTHORIZED,
            &format!("{case} without a token"),
        )
        .await;
        assert_eq!(body["type"], "/problems/missing-token", "{case}");
        if let Some((intruder, kind)) = self.intruder {
            let answer = world
                .send(
                    self.method.clone(),
                    &self.path,
                    Some(intruder),
                    self.body.as_ref(),
                )
                .await?;
            let body = problem(
                answer,
                StatusCode::FORBIDDEN,
                &format!("{case} by the wrong user"),
            )
            .await;
            assert_eq!(body["type"], format!("/problems/{kind}"), "{case}");
        }
        if let Some((bad, field)) = self.bad {
            let answer = world
                .send(self.method.clone(), &self.path, Some(self.owner), Some(&bad))
                .await?;
            let body = problem(
                answer,
                StatusCode::BAD_REQUEST,
                &format!("{case} with a bad {field}"),
            )
            .await;
            let fields: Vec<&str> = body["errors"]
                .as_array()
                .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
                .unwrap_or_default();
            assert!(
                fields.iter().any(|f| f.starts_with(field)),
                "{case}: {field} not named in {body}"
            );
        }
        world
            .ok(self.method, &self.path, self.owner, self.body.as_ref(), self.ok)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_write_checks_token_ownership_and_fields() -> anyhow::Result<()> {
    let w = World::new().await?;
    let (client, other_client, freelancer, other_freelancer) =
        (&w.client, &w.other_client, &w.freelancer, &w.other_freelancer);
    let post = Method::POST;
    let put = Method::PUT;

    // users
    Endpoint {
        method: put.clone(),
        path: "/api/v1/users/me/profile".into(),
        body: Some(json!({"name": "Fay Weaver", "headline": "Looms", "bio": "Ten years of looms."})),
        owner: freelancer,
        intruder: None,
        bad: Some((json!({"name": ""}), "name")),
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let item = json!({"title": "Rust", "details": "since 2015"});
    let skill = Endpoint {
        method: post.clone(),
        path: "/api/v1/users/me/skills".into(),
        body: Some(item.clone()),
        owner: freelancer,
        intruder: Some((client, "only-freelancers")),
        bad: Some((json!({"title": ""}), "title")),
        ok: StatusCode::CREATED,
    }
    .check(&w)
    .await?;
    for section in ["languages", "education", "experience", "achievements"] {
        w.ok(
            post.clone(),
            &format!("/api/v1/users/me/{section}"),
            freelancer,
            Some(&item),
            StatusCode::CREATED,
        )
        .await?;
    }
    Endpoint {
        method: put.clone(),
        path: format!("/api/v1/users/me/skills/{skill}"),
        body: Some(json!({"title": "Rust", "details": "since 2014"})),
        owner: freelancer,
        intruder: Some((client, "only-freelancers")),
        bad: Some((json!({"title": "x".repeat(201)}), "title")),
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    Endpoint {
        method: Method::DELETE,
        path: format!("/api/v1/users/me/skills/{skill}"),
        body: None,
        owner: freelancer,
        intruder: Some((client, "only-freelancers")),
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    Endpoint {
        method: put.clone(),
        path: "/api/v1/users/me/photo".into(),
        body: Some(json!({"link": "/api/v1/media/photos/abc.png"})),
        owner: client,
        intruder: None,
        bad: Some((json!({"link": "two words"}), "link")),
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    Endpoint {
        method: put.clone(),
        path: "/api/v1/users/me/resume".into(),
        body: Some(json!({"link": null})),
        owner: freelancer,
        intruder: Some((client, "only-freelancers")),
        bad: Some((json!({"link": 7}), "link")),
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;

    // jobs and proposals
    let job_body = json!({"title": "Build a loom", "description": "Jacquard", "budget": {"minor": 50_000, "currency": "USD"}});
    let job = Endpoint {
        method: post.clone(),
        path: "/api/v1/jobs".into(),
        body: Some(job_body.clone()),
        owner: client,
        intruder: Some((freelancer, "only-clients-post-jobs")),
        bad: Some((
            json!({"title": "ab", "description": "d", "budget": {"minor": 1, "currency": "USD"}}),
            "title",
        )),
        ok: StatusCode::CREATED,
    }
    .check(&w)
    .await?;
    Endpoint {
        method: put.clone(),
        path: format!("/api/v1/jobs/{job}"),
        body: Some(json!({"title": "Build a bigger loom", "description": "Jacquard", "budget": {"minor": 60_000, "currency": "USD"}})),
        owner: client,
        intruder: Some((other_client, "not-the-job-owner")),
        bad: Some((json!({"title": "Loom", "description": "", "budget": {"minor": 1, "currency": "USD"}}), "description")),
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let mut bad_terms = terms(1);
    bad_terms["milestones"][0]["amount"]["minor"] = json!(-5);
    let proposal = Endpoint {
        method: post.clone(),
        path: format!("/api/v1/jobs/{job}/proposals"),
        body: Some(terms(2)),
        owner: freelancer,
        intruder: Some((client, "only-freelancers-propose")),
        bad: Some((bad_terms, "milestones[0].amount")),
        ok: StatusCode::CREATED,
    }
    .check(&w)
    .await?;
    Endpoint {
        method: put.clone(),
        path: format!("/api/v1/proposals/{proposal}"),
        body: Some(terms(2)),
        owner: freelancer,
        intruder: Some((other_freelancer, "not-the-proposal-author")),
        bad: Some((
            json!({"cover_letter": "", "milestones": terms(1)["milestones"]}),
            "cover_letter",
        )),
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let withdrawn = w.proposal(&job, freelancer, 1).await?;
    Endpoint {
        method: post.clone(),
        path: format!("/api/v1/proposals/{withdrawn}/withdraw"),
        body: None,
        owner: freelancer,
        intruder: Some((other_freelancer, "not-the-proposal-author")),
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let rejected = w.proposal(&job, other_freelancer, 1).await?;
    Endpoint {
        method: post.clone(),
        path: format!("/api/v1/jobs/{job}/proposals/{rejected}/reject"),
        body: None,
        owner: client,
        intruder: Some((other_client, "not-the-job-owner")),
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    Endpoint {
        method: post.clone(),
        path: format!("/api/v1/jobs/{job}/proposals/{proposal}/accept"),
        body: None,
        owner: client,
        intruder: Some((other_client, "not-the-job-owner")),
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let closed = w.job(client).await?;
    Endpoint {
        method: post.clone(),
        path: format!("/api/v1/jobs/{closed}/close"),
        body: None,
        owner: client,
        intruder: Some((other_client, "not-the-job-owner")),
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;

    // contracts: the contract of the accepted proposal (the saga's step done as the system)
    let (contract, milestones) = {
        let second = w.job(client).await?;
        let p = w.proposal(&second, freelancer, 2).await?;
        w.contract(&second, &p).await?
    };
    let milestone = &milestones[0];
    let progress = format!("/api/v1/contracts/{contract}/milestones/{milestone}/progress");
    for _ in 0..2 {
        Endpoint {
            method: post.clone(),
            path: progress.clone(),
            body: None,
            owner: freelancer,
            intruder: Some((other_freelancer, "not-the-freelancer")),
            bad: None,
            ok: StatusCode::OK,
        }
        .check(&w)
        .await?;
    }
    Endpoint {
        method: post.clone(),
        path: format!("/api/v1/contracts/{contract}/milestones/{milestone}/evaluate"),
        body: Some(json!({"verdict": "accepted"})),
        owner: client,
        intruder: Some((freelancer, "not-the-client")),
        bad: Some((json!({"verdict": "maybe"}), "verdict")),
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let termination = Endpoint {
        method: post.clone(),
        path: format!("/api/v1/contracts/{contract}/terminations"),
        body: Some(json!({"reason": "Budget cut"})),
        owner: client,
        intruder: Some((other_client, "not-a-party")),
        bad: Some((json!({"reason": ""}), "reason")),
        ok: StatusCode::CREATED,
    }
    .check(&w)
    .await?;
    Endpoint {
        method: post.clone(),
        path: format!("/api/v1/terminations/{termination}/reject"),
        body: None,
        owner: freelancer,
        intruder: Some((other_client, "not-a-party")),
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;

    // payments
    Endpoint {
        method: post.clone(),
        path: "/api/v1/payments/wallet/deposits".into(),
        body: Some(json!({"amount": {"minor": 25_000, "currency": "USD"}})),
        owner: client,
        intruder: None,
        bad: Some((json!({"amount": {"minor": -5, "currency": "USD"}}), "amount")),
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let request = w.create_payment_request(&contract, milestone).await?;
    Endpoint {
        method: post.clone(),
        path: format!("/api/v1/payments/requests/{request}/pay"),
        body: None,
        owner: client,
        intruder: Some((freelancer, "not-the-payer")),
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let paid_twice = w
        .send(
            post.clone(),
            &format!("/api/v1/payments/requests/{request}/pay"),
            Some(client),
            None,
        )
        .await?;
    problem(paid_twice, StatusCode::CONFLICT, "a request is paid once").await;
    // The completion saga now appends MilestonePaid to the contract: a contract command sent
    // meanwhile would lose the race with a 409 (a client retries); wait for it here.
    let contract_id: uuid::Uuid = contract.parse()?;
    scenarios::harness::eventually(std::time::Duration::from_secs(20), || async {
        let events = w.ledger.read_stream(contract_id, 1).await?;
        Ok(events
            .iter()
            .any(|e| e.event_type == "MilestonePaid")
            .then_some(()))
    })
    .await?;

    // the other party accepts a new termination request: the contract ends
    let second = w
        .ok(
            post.clone(),
            &format!("/api/v1/contracts/{contract}/terminations"),
            freelancer,
            Some(&json!({"reason": "Moving on"})),
            StatusCode::CREATED,
        )
        .await?;
    Endpoint {
        method: post.clone(),
        path: format!("/api/v1/terminations/{second}/accept"),
        body: None,
        owner: client,
        intruder: Some((other_client, "not-a-party")),
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let after_end = w.send(post.clone(), &progress, Some(freelancer), None).await?;
    problem(
        after_end,
        StatusCode::CONFLICT,
        "nothing changes on a terminated contract",
    )
    .await;

    // deleting an account: the email is free again and the account cannot log in
    Endpoint {
        method: Method::DELETE,
        path: "/api/v1/users/me".into(),
        body: None,
        owner: other_freelancer,
        intruder: None,
        bad: None,
        ok: StatusCode::OK,
    }
    .check(&w)
    .await?;
    let gone = w
        .send(
            post.clone(),
            "/api/v1/users/me/skills",
            Some(other_freelancer),
            Some(&item),
        )
        .await?;
    assert!(
        gone.status().is_client_error(),
        "a deleted user acts: {}",
        gone.status()
    );
    w.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_account_cannot_log_in_and_frees_its_email() -> anyhow::Result<()> {
    let w = World::new().await?;
    let email = format!("del-{}@example.com", uuid::Uuid::new_v4().simple());
    let (_, token) = w.platform.signed_up("freelancers", &email, "Del").await?;
    let deleted = w
        .platform
        .call(Method::DELETE, "/api/v1/users/me", Some(&token), None)
        .await?;
    assert_eq!(deleted.status(), StatusCode::OK);
    let login = json!({"email": email, "password": "correct horse battery"});
    let refused = w.platform.post("/api/v1/users/login", None, &login).await?;
    let body = problem(refused, StatusCode::UNAUTHORIZED, "login after deletion").await;
    assert_eq!(body["type"], "/problems/invalid-credentials");
    w.platform.signed_up("clients", &email, "Del again").await?;
    w.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saga_only_commands_are_out_of_http_reach() -> anyhow::Result<()> {
    let w = World::new().await?;
    // A token claiming the system role, signed with the real secret, is still refused.
    let secret = w.platform.env.config.auth.signing_secret()?;
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({"sub": uuid::Uuid::nil(), "role": "system", "iat": now, "exp": now + 600, "iss": "workup"});
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secrecy::ExposeSecret::expose_secret(&secret).as_bytes()),
    )?;
    let as_system = w
        .platform
        .call(Method::POST, "/api/v1/jobs", Some(&forged), Some(&json!({})))
        .await?;
    let body = problem(as_system, StatusCode::UNAUTHORIZED, "a system token").await;
    assert_eq!(body["type"], "/problems/invalid-token");
    // No route initiates a contract, creates a payment request or marks a milestone paid.
    let client = Some(w.client.token.as_str());
    for (method, path) in [
        (Method::POST, "/api/v1/contracts".to_owned()),
        (
            Method::POST,
            format!(
                "/api/v1/contracts/{}/milestones/{}/pay",
                uuid::Uuid::nil(),
                uuid::Uuid::nil()
            ),
        ),
        (Method::POST, "/api/v1/payments/requests".to_owned()),
        (
            Method::POST,
            format!("/api/v1/payments/requests/{}/expire", uuid::Uuid::nil()),
        ),
    ] {
        let answer = w.platform.call(method, &path, client, Some(&json!({}))).await?;
        assert!(
            matches!(
                answer.status(),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ),
            "{path}: {}",
            answer.status()
        );
    }
    w.platform.stop().await
}
