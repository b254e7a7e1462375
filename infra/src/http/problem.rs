//! `ApiError` and its `application/problem+json` answers (DESIGN §3). A client mistake is
//! never a 500; a 500's detail reveals nothing and its cause is logged once, here.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use domain::{DomainError, FieldError};
use serde::Serialize;
use std::time::Duration;

use crate::ledger::{CommandError, LedgerError};

/// `Retry-After` of a 503: long enough for a pool or a restarted database to recover.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Every error an HTTP handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A domain rule refused the command (400/403/404/409, 429 with `Retry-After` when it is too soon).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The request could not be read (malformed JSON, wrong types, bad path or query).
    #[error("{detail}")]
    BadRequest {
        /// Stable code, e.g. `malformed-json`.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Missing, malformed or expired bearer token, or wrong credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The resource does not exist (or is not visible to the caller).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The stream changed since it was read: another command won the race.
    #[error("the resource was changed concurrently; retry")]
    VersionConflict,
    /// A unique value is taken (e.g. an email).
    #[error("conflict: {0}")]
    Taken(&'static str),
    /// A dependency is down or the service is not ready.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// The body is larger than the route accepts (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The content is of a type the route does not accept, judged by the content (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests from this caller (429, with `Retry-After`).
    #[error("too many requests: {code}; retry in {}s", retry_after.as_secs().max(1))]
    RateLimited {
        /// Stable code, e.g. `too-many-logins`.
        code: &'static str,
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// A read waited for its consistency token past the bound (504).
    #[error("{0}")]
    ReadModelBehind(String),
    /// The same `Idempotency-Key` was sent before with another request (422).
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// Anything else: a bug or an infrastructure failure (500).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(e) => Self::Domain(e),
            CommandError::Ledger(e) => e.into(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::VersionConflict { .. } => Self::VersionConflict,
            LedgerError::ReservationTaken { scope: "email" } => Self::Taken("email-taken"),
            LedgerError::ReservationTaken { .. } => Self::Taken("value-taken"),
            // A write about a person erased meanwhile (e.g. a token still valid after the
            // account was deleted): that person is gone.
            LedgerError::Privacy(crate::privacy::PrivacyError::Erased(_)) => Self::NotFound("user"),
            LedgerError::Database(e) if is_unavailable(&e) => {
                tracing::warn!(error = %e, "ledger database unavailable");
                Self::Unavailable("database-unavailable")
            }
            other => Self::Unexpected(other.into()),
        }
    }
}

/// Whether a database error means "down or overloaded, retry later" rather than a bug.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
    ) || matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "53300"))
}

impl From<crate::store::StoreError> for ApiError {
    /// A read-model store that fails to answer is "unavailable, retry" (503); a stored value
    /// that cannot be decoded is a bug (500).
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Codec(_) => Self::Unexpected(e.into()),
            other => {
                tracing::error!(error = %other, cause = ?other, "read-model store failed");
                Self::Unavailable("read-model-unavailable")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::PayloadTooLarge(rejection.body_text());
        }
        if let JsonRejection::JsonDataError(e) = &rejection {
            return Self::Domain(DomainError::Invalid(vec![field_error(&e.body_text())]));
        }
        let code = match &rejection {
            JsonRejection::JsonSyntaxError(_) => "malformed-json",
            JsonRejection::JsonDataError(_) => "invalid-body",
            JsonRejection::MissingJsonContentType(_) => "unsupported-media-type",
            _ => "unreadable-body",
        };
        Self::BadRequest {
            code,
            detail: rejection.body_text(),
        }
    }
}

/// The field a JSON data error is about, from the path serde reports (`budget.minor: invalid
/// type ...`, or `missing field `title`` at the root).
fn field_error(text: &str) -> FieldError {
    let text = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    let message = text.split(" at line ").next().unwrap_or(text);
    let (path, message) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path, rest),
        _ => (".", message),
    };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'));
    match (path, missing) {
        (".", Some(field)) => FieldError::new(field, "required"),
        (path, Some(field)) => FieldError::new(format!("{path}.{field}"), "required"),
        (".", None) => FieldError::new("body", message),
        (path, None) => FieldError::new(path, message),
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest {
            code: "invalid-path",
            detail: rejection.body_text(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest {
            code: "invalid-query",
            detail: rejection.body_text(),
        }
    }
}

/// The problem document (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable URI reference naming the kind of problem, e.g. `/problems/job-closed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// Field errors of a validation problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<super::openapi::FieldErrorSchema>)]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// Status, stable code and title of this error.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Domain(DomainError::Invalid(_)) => (StatusCode::BAD_REQUEST, "validation", "Invalid input"),
            Self::Domain(DomainError::Forbidden(code)) => (StatusCode::FORBIDDEN, code, "Forbidden"),
            Self::Domain(DomainError::NotFound(code)) => (StatusCode::NOT_FOUND, code, "Not found"),
            Self::Domain(DomainError::Conflict(code)) => (StatusCode::CONFLICT, code, "Conflict"),
            Self::Domain(DomainError::TooSoon { code, .. }) => {
                (StatusCode::TOO_MANY_REQUESTS, code, "Too many requests")
            }
            Self::BadRequest { code, .. } if *code == "unsupported-media-type" => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, code, "Unsupported media type")
            }
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, "Bad request"),
            Self::Unauthorized(code) => (StatusCode::UNAUTHORIZED, code, "Unauthorized"),
            Self::NotFound(code) => (StatusCode::NOT_FOUND, code, "Not found"),
            Self::VersionConflict => (
                StatusCode::CONFLICT,
                "version-conflict",
                "Concurrent modification",
            ),
            Self::Taken(code) => (StatusCode::CONFLICT, code, "Conflict"),
            Self::Unavailable(code) => (StatusCode::SERVICE_UNAVAILABLE, code, "Service unavailable"),
            Self::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::RateLimited { code, .. } => (StatusCode::TOO_MANY_REQUESTS, code, "Too many requests"),
            Self::ReadModelBehind(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "read-model-behind",
                "Read model behind",
            ),
            Self::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            ),
            Self::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// When a retry may succeed, for the answers that say so (429, 503).
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::Domain(DomainError::TooSoon { retry_at, .. }) => Some(
                (retry_at.as_datetime() - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default(),
            ),
            Self::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.classify();
        let retry_after = self.retry_after();
        let detail = match &self {
            Self::Unexpected(error) => {
                tracing::error!(error.message = %error, error.cause_chain = ?error, "request failed");
                "an unexpected error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let errors = match self {
            Self::Domain(DomainError::Invalid(fields)) => fields,
            _ => Vec::new(),
        };
        problem_response(status, code, title, detail, errors, retry_after)
    }
}

/// Build a problem+json response (also used by fallbacks and middleware).
pub fn problem_response(
    status: StatusCode,
    code: &str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    retry_after: Option<Duration>,
) -> Response {
    let problem = Problem {
        kind: format!("/problems/{code}"),
        title,
        status: status.as_u16(),
        detail,
        errors,
    };
    let mut response = (status, axum::Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(after) = retry_after
        && let Ok(value) = HeaderValue::from_str(
            &after
                .as_secs()
                .saturating_add(u64::from(after.subsec_nanos() > 0))
                .max(1)
                .to_string(),
        )
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_database_is_a_503_with_retry_after() {
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let response = ApiError::from(LedgerError::Database(error)).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "2");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
        let response = ApiError::from(LedgerError::Database(sqlx::Error::RowNotFound)).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_write_about_an_erased_person_is_a_404_not_a_500() {
        let erased = crate::privacy::PrivacyError::Erased(uuid::Uuid::nil());
        let response = ApiError::from(LedgerError::Privacy(erased)).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_json_data_error_names_its_field() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        for (text, field, message) in [
            ("missing field `title` at line 1 column 2", "title", "required"),
            (
                "budget: missing field `currency` at line 1 column 20",
                "budget.currency",
                "required",
            ),
            (
                "milestones[0].amount.minor: invalid type: string \"x\", expected i64 at line 1 column 9",
                "milestones[0].amount.minor",
                "invalid type: string \"x\", expected i64",
            ),
            (
                "invalid type: integer `1`, expected a map at line 1 column 1",
                "body",
                "invalid type: integer `1`, expected a map",
            ),
        ] {
            let e = field_error(&format!("{prefix}{text}"));
            assert_eq!((e.field.as_str(), e.message.as_str()), (field, message), "{text}");
        }
    }
}
