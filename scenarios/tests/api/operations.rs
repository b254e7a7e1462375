//! What operators and client developers rely on: `/health`, `/ready`, `/metrics` and
//! `/openapi.json` on every service.

use reqwest::StatusCode;
use scenarios::harness::{Platform, expect};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_reports_health_readiness_metrics_and_documents_its_api() -> anyhow::Result<()> {
    let platform = Platform::start().await?;
    for base in [&platform.command_url, &platform.query_url] {
        let health: Value = expect(
            platform.http.get(format!("{base}/health")).send().await?,
            StatusCode::OK,
        )
        .await?;
        assert_eq!(health["status"], "ok", "{base}");
        let ready: Value = expect(
            platform.http.get(format!("{base}/ready")).send().await?,
            StatusCode::OK,
        )
        .await?;
        assert_eq!(ready["status"], "ready", "{base}");
        let metrics = platform
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        assert!(
            metrics.contains("workup_http_requests_total"),
            "{base}: {metrics}"
        );
    }

    let command: Value = expect(
        platform
            .http
            .get(format!("{}/openapi.json", platform.command_url))
            .send()
            .await?,
        StatusCode::OK,
    )
    .await?;
    for path in [
        "/api/v1/users/clients/register",
        "/api/v1/users/freelancers/register",
        "/api/v1/users/login",
        "/api/v1/jobs",
    ] {
        assert!(
            command["paths"][path]["post"].is_object(),
            "command-api documents POST {path}"
        );
    }
    let query: Value = expect(
        platform
            .http
            .get(format!("{}/openapi.json", platform.query_url))
            .send()
            .await?,
        StatusCode::OK,
    )
    .await?;
    for path in ["/api/v1/users/{id}", "/api/v1/jobs/{id}"] {
        assert!(
            query["paths"][path]["get"].is_object(),
            "query-api documents GET {path}"
        );
    }
    assert!(query["components"]["securitySchemes"]["bearer"].is_object());
    platform.stop().await
}
