//! The control settings applied to an HTTP service's API routes (DESIGN §10): frozen → 503 with
//! `Retry-After` (work in flight finishes); a disabled command → 410 naming it; at most
//! `max_concurrency` requests in flight (the rest wait), measured as
//! `workup_http_in_flight{service, instance}`.

use axum::{
    extract::{MatchedPath, Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::Response,
};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::sync::watch;

use super::{ControlPlane, limit::Limit, settings::Settings};
use crate::http::problem_response;

/// How long a frozen service tells clients to wait.
const FROZEN_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the gate needs: the live settings, the limit they size, and the operation id of each
/// route (the name `control disable` takes).
#[derive(Debug, Clone)]
pub struct Gate {
    service: &'static str,
    instance: Arc<str>,
    settings: watch::Receiver<Settings>,
    limit: Limit,
    operations: Arc<HashMap<(Method, String), String>>,
}

impl Gate {
    /// The gate of `service`, naming its routes from its OpenAPI document.
    pub fn new(service: &'static str, control: &ControlPlane, api: &utoipa::openapi::OpenApi) -> Self {
        let settings = control.settings();
        let limit = Limit::following(&settings);
        Self {
            service,
            instance: control.instance_id().into(),
            settings,
            limit,
            operations: Arc::new(operations(api)),
        }
    }

    /// Every command's name (operation id), for listing.
    pub fn commands(&self) -> impl Iterator<Item = &String> {
        self.operations.values()
    }
}

/// Route → operation id, from an OpenAPI document.
fn operations(api: &utoipa::openapi::OpenApi) -> HashMap<(Method, String), String> {
    let mut map = HashMap::new();
    for (path, item) in &api.paths.paths {
        for (method, operation) in [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
        ] {
            if let Some(id) = operation.as_ref().and_then(|o| o.operation_id.clone()) {
                map.insert((method, path.clone()), id);
            }
        }
    }
    map
}

/// The middleware (`axum::middleware::from_fn_with_state`) over the API routes.
pub async fn gate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (frozen, disabled) = {
        let settings = gate.settings.borrow();
        let operation = request
            .extensions()
            .get::<MatchedPath>()
            .and_then(|path| {
                gate.operations
                    .get(&(request.method().clone(), path.as_str().to_owned()))
            })
            .filter(|op| settings.disabled_commands.contains(*op))
            .cloned();
        (settings.frozen, operation)
    };
    if frozen {
        metrics::counter!("workup_http_refused_total", "service" => gate.service, "reason" => "frozen")
            .increment(1);
        return problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "service-frozen",
            "Service frozen",
            format!("{} is frozen by an operator; retry later", gate.service),
            Vec::new(),
            Some(FROZEN_RETRY_AFTER),
        );
    }
    if let Some(command) = disabled {
        metrics::counter!("workup_http_refused_total", "service" => gate.service, "reason" => "disabled")
            .increment(1);
        return problem_response(
            StatusCode::GONE,
            "command-disabled",
            "Command disabled",
            format!("the command {command} is disabled by an operator"),
            Vec::new(),
            None,
        );
    }
    let _slot = gate.limit.acquire().await;
    let _in_flight = InFlight::enter(gate.service, &gate.instance);
    next.run(request).await
}

/// One request counted in `workup_http_in_flight{service, instance}` until dropped (also when
/// the client goes away).
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(service: &'static str, instance: &str) -> Self {
        let gauge =
            metrics::gauge!("workup_http_in_flight", "service" => service, "instance" => instance.to_owned());
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
