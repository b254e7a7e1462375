//! The operations page (README "Operations page"): `GET /ops`, a static page for admins, and
//! `GET /ops/data`, the JSON it polls with the admin's bearer token.
//!
//! - [`data`]: what the JSON holds and how it is gathered.
//! - [`page`]: the page and its script and stylesheet, embedded in the binary (no CDN: it works
//!   offline) and served with a strict content security policy.
//!
//! Both live outside `/api/v1` and its control gate: an operator needs the page most while the
//! service is frozen or at its in-flight limit.

pub mod data;
pub mod page;

use axum::{
    Router,
    extract::{FromRef, State},
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use domain::{DomainError, Role};
use infra::http::{
    ApiError,
    auth::{Authenticated, TokenKeys},
    extract::Json,
    problem::Problem,
};

use data::{OpsData, Sources};

/// What the operations routes share.
#[derive(Debug, Clone)]
pub struct OpsState {
    /// Token checking.
    pub keys: TokenKeys,
    /// Where the data comes from.
    pub sources: Sources,
}

impl FromRef<OpsState> for TokenKeys {
    fn from_ref(state: &OpsState) -> Self {
        state.keys.clone()
    }
}

/// The routes `GET /ops` (and its assets under `/ops/`) and `GET /ops/data`.
pub fn router(state: OpsState) -> Router {
    page::router().merge(Router::new().route("/ops/data", get(ops_data)).with_state(state))
}

/// Live instances and their control settings, consumer lag and dead letters, withdrawal tasks
/// by state and commands per second (admins only). A section that cannot be read is `null` or
/// empty and named in `errors`.
#[utoipa::path(get, path = "/ops/data", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = OpsData),
        (status = 401, description = "no token, or an invalid one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the caller is not an admin (`/problems/admins-only`)", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %actor.id))]
pub async fn ops_data(
    State(state): State<OpsState>,
    Authenticated(actor): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    // As every admin-only read (the sagas' history): a signed-in non-admin is told so.
    if actor.role != Role::Admin {
        return Err(DomainError::Forbidden("admins-only").into());
    }
    let data = data::gather(&state.sources).await;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(data),
    ))
}
