//! The thin slice through every part: register → ledger → relay → Kafka → projector →
//! MongoDB → query-api; post a job → … → Cassandra → query-api through the Redis cache.

use reqwest::StatusCode;
use scenarios::harness::{Platform, eventually, expect};
use serde_json::{Value, json};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registered_client_posts_a_job_and_both_are_readable() -> anyhow::Result<()> {
    let platform = Platform::start().await?;
    let (client_id, token) = platform
        .signed_up_client("ada@example.com", "Ada Lovelace")
        .await?;

    let user: Value = eventually(DEADLINE, || async {
        let response = platform
            .get(&format!("/api/v1/users/{client_id}"), &token)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            _ => Ok(Some(expect(response, StatusCode::OK).await?)),
        }
    })
    .await?;
    assert_eq!(user["id"], client_id);
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["role"], "client");
    assert!(
        user.get("email").is_none() && user.get("password_hash").is_none(),
        "public profile leaks: {user}"
    );

    let job = json!({
        "title": "Build a difference engine",
        "description": "Brass, gears, and a crank.",
        "budget": {"minor": 150_000, "currency": "GBP"},
        "skills": ["mechanics", "mathematics"]
    });
    let request_id = uuid::Uuid::now_v7();
    let response = platform
        .http
        .post(format!("{}/api/v1/jobs", platform.command_url))
        .bearer_auth(&token)
        .header("x-request-id", request_id.to_string())
        .json(&job)
        .send()
        .await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (position, echoed) = (header("x-consistency-position"), header("x-request-id"));
    let created: Value = expect(response, StatusCode::CREATED).await?;
    let job_id = created["id"].as_str().expect("job id").to_owned();
    assert_eq!(position, Some(format!("job:{job_id}:1")));
    assert_eq!(created["position"], format!("job:{job_id}:1"));
    assert_eq!(echoed, Some(request_id.to_string()), "the request id is echoed");

    // The ledger holds the event, correlated with the request.
    let ledger = platform.env.ledger().await?;
    let stream = ledger.read_stream(job_id.parse()?, 1).await?;
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0].event_type, "JobPosted");
    assert_eq!(stream[0].metadata.correlation_id, request_id);
    assert_eq!(stream[0].metadata.actor_id, Some(client_id.parse()?));

    let read: Value = eventually(DEADLINE, || async {
        let response = platform.get(&format!("/api/v1/jobs/{job_id}"), &token).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            _ => Ok(Some(expect(response, StatusCode::OK).await?)),
        }
    })
    .await?;
    assert_eq!(read["job_id"], job_id.as_str());
    assert_eq!(read["client_id"], client_id.as_str());
    assert_eq!(read["title"], "Build a difference engine");
    assert_eq!(read["budget"], json!({"minor": 150_000, "currency": "GBP"}));
    assert_eq!(read["skills"], json!(["mechanics", "mathematics"]));
    assert_eq!(read["status"], "open");

    // A second read is served from the cache and says the same.
    let again: Value = expect(
        platform.get(&format!("/api/v1/jobs/{job_id}"), &token).await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(again, read);

    platform.stop().await
}
