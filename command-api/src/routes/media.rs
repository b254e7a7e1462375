//! Media: photo and resume uploads by their owner (DESIGN §3). The file's type is checked by
//! its content, its size against the group's limit; it is stored content-addressed and the
//! owner's profile records its link through the one command path.

use axum::{
    Router,
    extract::{
        DefaultBodyLimit, Multipart, State,
        multipart::{MultipartError, MultipartRejection},
    },
    http::StatusCode,
    response::Response,
    routing::post,
};
use domain::{
    DomainError, FieldError,
    users::{self, FileRef, User, UserCommand},
};
use infra::{
    http::{ApiError, problem::Problem},
    media::{MediaGroup, MediaStore},
};

use super::{IdempotencyKeyHeader, Written, created};
use crate::state::{AppState, Command};

/// Room for the multipart framing (boundary lines, part headers) around the file itself.
const MULTIPART_SLACK: usize = 16 * 1024;

/// The multipart field that carries the file.
const FILE_FIELD: &str = "file";

/// Routes of the media context. Each route lifts the global body limit to its group's limit
/// (plus the multipart framing), so `state` is needed to build it.
pub fn router(state: &AppState) -> Router<AppState> {
    let limit = |max: usize| DefaultBodyLimit::max(max.saturating_add(MULTIPART_SLACK));
    Router::new()
        .route(
            "/media/photos",
            post(upload_photo).layer(limit(state.max_photo_bytes)),
        )
        .route(
            "/media/resumes",
            post(upload_resume).layer(limit(state.max_resume_bytes)),
        )
}

/// The multipart form of an upload.
#[derive(Debug, utoipa::ToSchema)]
pub struct UploadForm {
    /// The file: PNG or JPEG for a photo, PDF for a resume (judged by its content).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Upload the caller's profile photo (PNG or JPEG, any registered user); the profile's photo
/// becomes the link in the answer's `id`.
#[utoipa::path(post, path = "/api/v1/media/photos", tag = "media", security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "stored; `id` is the file's link", body = Written),
        (status = 400, description = "no `file` field, or a malformed form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing, malformed or expired bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "the account is gone", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the profile changed concurrently", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "over the photo size limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not a PNG or JPEG (by content), or not a multipart form", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "an earlier request with this Idempotency-Key is still running", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "database unavailable (Retry-After)", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn upload_photo(
    State(app): State<AppState>,
    command: Command,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    upload(app, command, form, MediaGroup::Photos).await
}

/// Upload the caller's resume (PDF, freelancers only); the profile's resume becomes the link
/// in the answer's `id`.
#[utoipa::path(post, path = "/api/v1/media/resumes", tag = "media", security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "stored; `id` is the file's link", body = Written),
        (status = 400, description = "no `file` field, or a malformed form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing, malformed or expired bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a freelancer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "the account is gone", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the profile changed concurrently", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "over the resume size limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not a PDF (by content), or not a multipart form", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "an earlier request with this Idempotency-Key is still running", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "database unavailable (Retry-After)", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn upload_resume(
    State(app): State<AppState>,
    command: Command,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    upload(app, command, form, MediaGroup::Resumes).await
}

/// Read → check → decide (dry run) → store → record the link through the command path.
async fn upload(
    app: AppState,
    command: Command,
    form: Result<Multipart, MultipartRejection>,
    group: MediaGroup,
) -> Result<Response, ApiError> {
    let max = match group {
        MediaGroup::Photos => app.max_photo_bytes,
        MediaGroup::Resumes => app.max_resume_bytes,
    };
    let form = form.map_err(|_| {
        ApiError::UnsupportedMediaType(format!(
            "expected a multipart/form-data body with a `{FILE_FIELD}` field"
        ))
    })?;
    let bytes = read_file_field(form, group, max).await?;
    // Type and address first: a refused type writes nothing (415).
    let file = MediaStore::address(group, &bytes)?;
    let link = file.link();
    let reference = FileRef::parse(&link, FILE_FIELD).map_err(|e| DomainError::Invalid(vec![e]))?;
    let decision = match group {
        MediaGroup::Photos => UserCommand::SetPhoto(Some(reference)),
        MediaGroup::Resumes => UserCommand::SetResume(Some(reference)),
    };
    let user_id = command.actor().id.as_uuid();
    // The domain decides who may upload (a resume only by a freelancer). Asking it before
    // storing means a refused upload leaves no file behind; the append below decides again,
    // against the stream version it appends to.
    let current = app.ledger.load::<User>(user_id).await?;
    users::decide(&current.state, &decision, &command.ctx)?;

    let stored = app.media.store(group, &bytes).await?;
    let appended = app
        .ledger
        .execute::<User>(user_id, command.metadata, |user| {
            users::decide(user, &decision, &command.ctx)
        })
        .await?;
    tracing::info!(%group, name = %stored.name, size = stored.size, "media uploaded");
    Ok(created(link, &appended))
}

/// The bytes of the form's `file` field, at most `max` of them (else 413); other fields are
/// skipped. No `file` field is a 400 naming it.
async fn read_file_field(mut form: Multipart, group: MediaGroup, max: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("{group} are limited to {max} bytes"));
    let unreadable = |e: MultipartError| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => ApiError::BadRequest {
            code: "malformed-multipart",
            detail: e.body_text(),
        },
    };
    while let Some(mut field) = form.next_field().await.map_err(unreadable)? {
        if field.name() != Some(FILE_FIELD) {
            continue;
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
            if bytes.len() + chunk.len() > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(bytes);
    }
    Err(DomainError::Invalid(vec![FieldError::new(FILE_FIELD, "required")]).into())
}
