//! `/health` (the process is up), `/ready` (its dependencies answer) and `/metrics`
//! (Prometheus text format), mounted by every service.

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::sync::{Arc, OnceLock};

use super::problem_response;

/// A future that fails with a reason.
pub type Ping = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// One dependency check of `/ready`.
#[derive(Clone)]
pub struct ReadyCheck {
    name: &'static str,
    ping: Ping,
    /// A failing optional dependency (e.g. a cache) makes the service degraded, not unready.
    required: bool,
}

impl ReadyCheck {
    /// The service can do without this dependency: when it fails, `/ready` still answers 200,
    /// with status `degraded` and the reason.
    pub fn optional(self) -> Self {
        Self {
            required: false,
            ..self
        }
    }
}

/// A named, required readiness check that calls `ping` on a clone of `client`.
pub fn ready_check<T, F, Fut, E>(name: &'static str, client: T, ping: F) -> ReadyCheck
where
    T: Clone + Send + Sync + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let ping: Ping = Arc::new(move || {
        let ping = ping(client.clone());
        Box::pin(async move { ping.await.map_err(|e| e.to_string()) })
    });
    ReadyCheck {
        name,
        ping,
        required: true,
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests start several services in one
        // process); the handle still renders what this one records.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Routes `/health`, `/ready` and `/metrics` for a service with these dependency checks.
pub fn router(service: &'static str, checks: Vec<ReadyCheck>) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route(
            "/health",
            get(move || async move { Json(json!({"status": "ok", "service": service})) }),
        )
        .route(
            "/ready",
            get(move || {
                let checks = checks.clone();
                async move {
                    let (mut failures, mut degraded) = (Vec::new(), Vec::new());
                    for check in checks.iter() {
                        if let Err(reason) = (check.ping)().await {
                            let failed = format!("{}: {reason}", check.name);
                            if check.required {
                                failures.push(failed);
                            } else {
                                degraded.push(failed);
                            }
                        }
                    }
                    if failures.is_empty() && degraded.is_empty() {
                        Json(json!({"status": "ready", "service": service})).into_response()
                    } else if failures.is_empty() {
                        Json(json!({"status": "degraded", "service": service, "degraded": degraded}))
                            .into_response()
                    } else {
                        problem_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not-ready",
                            "Not ready",
                            failures.join("; "),
                            vec![],
                            None,
                        )
                    }
                }
            }),
        )
        .route("/metrics", get(|| async { prometheus().render() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn check(name: &'static str, up: bool) -> ReadyCheck {
        ready_check(
            name,
            up,
            |up| async move { if up { Ok(()) } else { Err("down") } },
        )
    }

    async fn ready(checks: Vec<ReadyCheck>) -> (StatusCode, String) {
        let request = axum::http::Request::get("/ready")
            .body(Body::empty())
            .expect("request");
        let response = router("test", checks).oneshot(request).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn an_optional_dependency_down_is_degraded_and_a_required_one_is_not_ready() {
        let (status, body) = ready(vec![check("db", true), check("cache", false).optional()]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("degraded") && body.contains("cache: down"),
            "{body}"
        );
        let (status, body) = ready(vec![check("db", false), check("cache", true).optional()]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("db: down"), "{body}");
        assert_eq!(ready(vec![check("db", true)]).await.0, StatusCode::OK);
    }
}
