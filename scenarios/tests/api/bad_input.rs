//! Bad input answers 4xx with application/problem+json and a stable type, never a 500.

use reqwest::{Response, StatusCode};
use scenarios::harness::Platform;
use serde_json::{Value, json};

async fn problem(response: Response, status: StatusCode, kind: &str, case: &str) -> Value {
    assert_eq!(response.status(), status, "{case}: status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "{case}: content type");
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["type"], format!("/problems/{kind}"), "{case}: {body}");
    assert_eq!(body["status"], status.as_u16(), "{case}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_a_problem_never_a_500() -> anyhow::Result<()> {
    let platform = Platform::start().await?;
    let register = format!("{}/api/v1/users/clients/register", platform.command_url);

    let malformed = platform
        .http
        .post(&register)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await?;
    problem(
        malformed,
        StatusCode::BAD_REQUEST,
        "malformed-json",
        "malformed JSON",
    )
    .await;

    let no_content_type = platform.http.post(&register).body("{}").send().await?;
    problem(
        no_content_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "no content type",
    )
    .await;

    let missing = platform
        .post(
            "/api/v1/users/clients/register",
            None,
            &json!({"email": "not-an-email"}),
        )
        .await?;
    let body = problem(missing, StatusCode::BAD_REQUEST, "validation", "missing fields").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["email", "name", "password"],
        "every bad field is listed: {body}"
    );

    let wrong_type = platform
        .post("/api/v1/users/clients/register", None, &json!({"email": 42}))
        .await?;
    let body = problem(wrong_type, StatusCode::BAD_REQUEST, "validation", "wrong type").await;
    assert_eq!(
        body["errors"][0]["field"], "email",
        "the wrong type names its field: {body}"
    );

    let (_, token) = platform
        .signed_up_client("grace@example.com", "Grace Hopper")
        .await?;
    let taken = platform
        .post(
            "/api/v1/users/freelancers/register",
            None,
            &json!({"email": "GRACE@example.com", "password": "another password", "name": "G"}),
        )
        .await?;
    problem(taken, StatusCode::CONFLICT, "email-taken", "email taken").await;

    let wrong_password = platform
        .post(
            "/api/v1/users/login",
            None,
            &json!({"email": "grace@example.com", "password": "nope nope"}),
        )
        .await?;
    problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "wrong password",
    )
    .await;

    let job = json!({"title": "Compile COBOL", "description": "Flow-matic first.", "budget": {"minor": 100, "currency": "USD"}});
    let no_token = platform.post("/api/v1/jobs", None, &job).await?;
    problem(no_token, StatusCode::UNAUTHORIZED, "missing-token", "no token").await;
    let bad_token = platform.post("/api/v1/jobs", Some("not.a.jwt"), &job).await?;
    problem(bad_token, StatusCode::UNAUTHORIZED, "invalid-token", "bad token").await;

    let bad_job = platform
        .post(
            "/api/v1/jobs",
            Some(&token),
            &json!({"title": "", "budget": {"minor": -5, "currency": "XXX"}}),
        )
        .await?;
    let body = problem(bad_job, StatusCode::BAD_REQUEST, "validation", "bad job").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"description") && fields.contains(&"budget.currency") && fields.contains(&"title"),
        "{body}"
    );

    let freelancer_token = {
        platform
            .post(
                "/api/v1/users/freelancers/register",
                None,
                &json!({"email": "linus@example.com", "password": "penguins rule", "name": "Linus"}),
            )
            .await?;
        let login: Value = platform
            .post(
                "/api/v1/users/login",
                None,
                &json!({"email": "linus@example.com", "password": "penguins rule"}),
            )
            .await?
            .json()
            .await?;
        login["access_token"].as_str().expect("token").to_owned()
    };
    let forbidden = platform
        .post("/api/v1/jobs", Some(&freelancer_token), &job)
        .await?;
    problem(
        forbidden,
        StatusCode::FORBIDDEN,
        "only-clients-post-jobs",
        "freelancer posts a job",
    )
    .await;

    let bad_id = platform.get("/api/v1/jobs/not-a-uuid", &token).await?;
    problem(bad_id, StatusCode::BAD_REQUEST, "invalid-path", "bad id").await;
    let unknown = platform
        .get(&format!("/api/v1/jobs/{}", uuid::Uuid::now_v7()), &token)
        .await?;
    problem(unknown, StatusCode::NOT_FOUND, "job-not-found", "unknown job").await;
    let no_route = platform.get("/api/v1/nothing-here", &token).await?;
    problem(no_route, StatusCode::NOT_FOUND, "no-such-route", "unknown route").await;

    platform.stop().await
}
