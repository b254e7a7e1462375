//! Correlation ids: every request carries `x-request-id` (the caller's, or a new UUID), echoed
//! in the answer and stored as the correlation id of the events it appends (DESIGN §4).

use axum::{extract::FromRequestParts, http::request::Parts};
use std::convert::Infallible;
use uuid::Uuid;

/// The request header that carries the correlation id.
pub const REQUEST_ID: &str = "x-request-id";

/// The request's correlation id: its `x-request-id` when that is a UUID, else a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::parse_str(v).ok())
            .unwrap_or_else(Uuid::now_v7);
        Ok(Self(id))
    }
}
