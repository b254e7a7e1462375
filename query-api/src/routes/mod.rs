//! The query routes, one module per context, merged under `/api/v1`.

pub mod contracts;
pub mod jobs;
pub mod media;
pub mod paging;
pub mod payments;
pub mod users;

use axum::{Router, middleware};
use infra::{
    config::HttpConfig,
    control::{self, ControlPlane, gate::Gate},
    http::{
        health,
        openapi::{self, BearerAuth},
        problem::Problem,
        with_common_layers,
    },
};
use utoipa::OpenApi;

use crate::{ops::OpsState, state::LiveState};

/// The OpenAPI document of query-api.
#[derive(OpenApi)]
#[openapi(
    info(title = "WorkUp query-api", description = "Reads over the projected read models."),
    paths(users::get_own_profile, users::get_user, jobs::get_job, jobs::my_jobs, jobs::search_jobs, jobs::job_proposals, jobs::get_proposal, jobs::my_proposals, contracts::get_contract, contracts::my_contracts, contracts::contract_milestones, contracts::contract_terminations, payments::my_wallet, payments::my_transactions, payments::my_withdrawal, payments::my_payment_requests, media::describe, media::list_group, media::get_file, crate::ops::ops_data),
    components(schemas(Problem, openapi::FieldErrorSchema, openapi::MoneySchema)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The whole application router; the operations page (`ops`) is outside `/api/v1` and its gate.
pub fn router(live: LiveState, ops: OpsState, control: &ControlPlane, http: &HttpConfig) -> Router {
    // Pings of the connections, whichever generation is read.
    let state = live.current();
    let checks = vec![
        health::ready_check(
            "mongodb",
            state.profiles.clone(),
            |p| async move { p.ping().await },
        ),
        health::ready_check("cassandra", state.jobs.clone(), |j| async move { j.ping().await }),
        // The cache only speeds reads up: without it the service is degraded, not down.
        health::ready_check("redis", state.cache.clone(), |c| async move { c.ping().await }).optional(),
    ];
    let api = Router::new()
        .merge(users::router())
        .merge(jobs::router())
        .merge(contracts::router())
        .merge(payments::router())
        .merge(media::router())
        .layer(middleware::from_fn_with_state(
            Gate::new("query-api", control, &ApiDoc::openapi()),
            control::gate::gate,
        ))
        .with_state(live);
    with_common_layers(
        Router::new()
            .nest("/api/v1", api)
            .merge(health::router("query-api", checks))
            .merge(openapi::router(ApiDoc::openapi()))
            .merge(crate::ops::router(ops)),
        http,
    )
}
