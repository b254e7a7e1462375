//! Extractors that reject with [`ApiError`], so malformed input is a 400 problem, never a
//! plain-text body or a 500.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

use super::problem::ApiError;

/// JSON body; a malformed or incomplete body is a 400 problem.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; an unparsable id is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a malformed query is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
