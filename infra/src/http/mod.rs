//! HTTP plumbing shared by the services: errors, extractors, auth, health and metrics, and
//! the common middleware stack.

pub mod auth;
pub mod correlation;
pub mod docs;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod openapi;
pub mod problem;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::Response,
};
use std::{any::Any, time::Duration};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::config::HttpConfig;
pub use problem::{ApiError, problem_response};

/// Wrap a service's router with the common layers: a request id (kept or made, echoed),
/// request tracing, per-route metrics, a
/// body limit and a timeout, panics turned into a 500 problem, and problem+json answers for
/// unknown routes and methods.
pub fn with_common_layers(router: Router, http: &HttpConfig) -> Router {
    // Install the recorder now: metrics recorded before it exists are lost.
    health::prometheus();
    router
        .fallback(|| async {
            problem_response(
                StatusCode::NOT_FOUND,
                "no-such-route",
                "Not found",
                "no such route".into(),
                vec![],
                None,
            )
        })
        .method_not_allowed_fallback(|| async {
            problem_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not accept that method".into(),
                vec![],
                None,
            )
        })
        .layer(DefaultBodyLimit::max(http.body_limit))
        .layer(middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(panic_to_problem))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(http.timeout_secs),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let request_id = request
                .headers()
                .get(correlation::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id)
        }))
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
            correlation::REQUEST_ID,
        )))
        .layer(SetRequestIdLayer::new(
            HeaderName::from_static(correlation::REQUEST_ID),
            MakeRequestUuid,
        ))
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("workup_http_requests_total", "method" => method.clone(), "path" => path.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("workup_http_request_duration_seconds", "method" => method, "path" => path)
        .record(started.elapsed().as_secs_f64());
    response
}

fn panic_to_problem(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        "an unexpected error occurred; it has been logged".into(),
        vec![],
        None,
    )
}
