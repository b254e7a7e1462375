//! `/health` (the process is up), `/ready` (its dependencies answer) and `/metrics`
//! (Prometheus text format), mounted by every service.

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::sync::{Arc, OnceLock};

use super::problem_response;

/// One dependency check: its name and a future that fails with a reason.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A named readiness check that calls `ping` on a clone of `client`.
pub fn ready_check<T, F, Fut, E>(name: &'static str, client: T, ping: F) -> (&'static str, ReadyCheck)
where
    T: Clone + Send + Sync + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let check: ReadyCheck = Arc::new(move || {
        let ping = ping(client.clone());
        Box::pin(async move { ping.await.map_err(|e| e.to_string()) })
    });
    (name, check)
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
pub fn router(service: &'static str, checks: Vec<(&'static str, ReadyCheck)>) -> Router {
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
                    let mut failures = Vec::new();
                    for (name, check) in checks.iter() {
                        if let Err(reason) = check().await {
                            failures.push(format!("{name}: {reason}"));
                        }
                    }
                    if failures.is_empty() {
                        Json(json!({"status": "ready", "service": service})).into_response()
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
