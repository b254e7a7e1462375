//! The query routes, one module per context, merged under `/api/v1`.

pub mod jobs;
pub mod users;

use axum::Router;
use futures::FutureExt;
use infra::{
    config::HttpConfig,
    http::{
        health,
        openapi::{self, BearerAuth},
        problem::Problem,
        with_common_layers,
    },
};
use std::sync::Arc;
use utoipa::OpenApi;

use crate::state::AppState;

/// The OpenAPI document of query-api.
#[derive(OpenApi)]
#[openapi(
    info(title = "WorkUp query-api", description = "Reads over the projected read models."),
    paths(users::get_user, jobs::get_job),
    components(schemas(Problem, openapi::FieldErrorSchema, openapi::MoneySchema)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The whole application router.
pub fn router(state: AppState, http: &HttpConfig) -> Router {
    let (profiles, jobs, cache) = (state.profiles.clone(), state.jobs.clone(), state.cache.clone());
    let checks: Vec<(&'static str, health::ReadyCheck)> = vec![
        (
            "mongodb",
            Arc::new(move || {
                let p = profiles.clone();
                async move { p.ping().await.map_err(|e| e.to_string()) }.boxed()
            }),
        ),
        (
            "cassandra",
            Arc::new(move || {
                let j = jobs.clone();
                async move { j.ping().await.map_err(|e| e.to_string()) }.boxed()
            }),
        ),
        (
            "redis",
            Arc::new(move || {
                let c = cache.clone();
                async move { c.ping().await.map_err(|e| e.to_string()) }.boxed()
            }),
        ),
    ];
    let api = Router::new()
        .merge(users::router())
        .merge(jobs::router())
        .with_state(state);
    with_common_layers(
        Router::new()
            .nest("/api/v1", api)
            .merge(health::router("query-api", checks))
            .merge(openapi::router(ApiDoc::openapi())),
        http,
    )
}
