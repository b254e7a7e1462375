//! Paging of the list reads: an optional `limit` (1 to 100, default 20) and the opaque
//! `page_token` of the previous page; each list decodes its own token.

use domain::DomainError;
use infra::http::ApiError;
use serde::Deserialize;

/// Items per page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 20;
/// Most items per page.
pub const MAX_LIMIT: usize = 100;

/// Paging of a list: `limit` items (default 20, 1 to 100) from `page_token` on.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page: 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_page_token` of the previous page; absent for the first page.
    pub page_token: Option<String>,
}

impl PageParams {
    /// The limit, checked (400 naming `limit`).
    pub fn limit(&self) -> Result<usize, ApiError> {
        page_limit(self.limit)
    }
}

/// A `limit` query value, checked (400 naming `limit`); the default when absent.
pub fn page_limit(limit: Option<i64>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) => usize::try_from(limit)
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| DomainError::invalid("limit", "1 to 100").into()),
    }
}
