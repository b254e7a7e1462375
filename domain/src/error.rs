//! The one error type of every decision; each variant maps to one HTTP answer.

use serde::Serialize;

use crate::Timestamp;

/// One invalid input field: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `email` or `milestones[2].amount`.
    pub field: String,
    /// Human-readable reason.
    pub message: String,
}

impl FieldError {
    /// A field error for `field` with `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a command was refused. A client mistake is never an internal error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// 400: the input is malformed; every failing field is listed.
    #[error("invalid input: {}", fields_summary(.0))]
    Invalid(Vec<FieldError>),
    /// 403: the actor may not do this (not theirs, wrong role).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 404: the target does not exist.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// 409: the target's state does not allow this (a stable kebab-case code).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// 429: too soon; the same request may succeed at `retry_at` (a stable kebab-case code).
    #[error("too soon: {code}; retry at {}", retry_at.as_datetime().to_rfc3339())]
    TooSoon {
        /// Which limit, e.g. `withdrawal-cooldown`.
        code: &'static str,
        /// The earliest time the same request may succeed.
        retry_at: Timestamp,
    },
}

impl DomainError {
    /// A single-field validation error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    /// The stable kebab-case code of this error, used as the problem `type`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation",
            Self::Forbidden(code)
            | Self::NotFound(code)
            | Self::Conflict(code)
            | Self::TooSoon { code, .. } => code,
        }
    }
}

fn fields_summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}
