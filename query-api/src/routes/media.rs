//! Media: the uploaded files and what is there (DESIGN §3). Public: a profile's photo or
//! resume link is shown to anyone who can see the profile, and names are unguessable content
//! addresses, so these reads need no bearer token.

use axum::{
    Router,
    extract::State,
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use infra::{
    http::{
        ApiError,
        extract::{Json, Path},
        problem::Problem,
    },
    media::{GroupSummary, MediaError, MediaFile, MediaGroup, PLACEHOLDER_PNG},
};
use serde::Serialize;

use crate::state::{AppState, LiveState};

/// Set (to `true`) on the answer when the placeholder image stands in for a missing file.
pub const PLACEHOLDER_HEADER: &str = "x-media-placeholder";

/// A stored file never changes (its name is its content's hash): cache it for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Routes of the media context.
pub fn router() -> Router<LiveState> {
    Router::new()
        .route("/media", get(describe))
        .route("/media/{group}", get(list_group))
        .route("/media/{group}/{file}", get(get_file))
}

/// Every group and its totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MediaDescription {
    /// One entry per group.
    pub groups: Vec<GroupSummary>,
}

/// The files of one group.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupListing {
    /// The group.
    pub group: MediaGroup,
    /// Its files, by name.
    pub files: Vec<MediaFile>,
}

/// Describe the media groups: file count and total size of each. Public.
#[utoipa::path(get, path = "/api/v1/media", tag = "media",
    responses((status = 200, body = MediaDescription)))]
#[tracing::instrument(skip_all)]
pub async fn describe(State(app): State<AppState>) -> Result<Json<MediaDescription>, ApiError> {
    Ok(Json(MediaDescription {
        groups: app.media.describe().await?,
    }))
}

/// List the files of a group (`photos` or `resumes`). Public.
#[utoipa::path(get, path = "/api/v1/media/{group}", tag = "media",
    params(("group" = MediaGroup, Path, description = "`photos` or `resumes`")),
    responses((status = 200, body = GroupListing),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(%group))]
pub async fn list_group(
    State(app): State<AppState>,
    Path(group): Path<String>,
) -> Result<Json<GroupListing>, ApiError> {
    let group: MediaGroup = group.parse()?;
    Ok(Json(GroupListing {
        files: app.media.list(group).await?,
        group,
    }))
}

/// A stored file, with its type and a long immutable cache lifetime. A well-formed name with
/// no file behind it gets the placeholder image (200, `x-media-placeholder: true`), so a
/// profile always has something to show. Public.
#[utoipa::path(get, path = "/api/v1/media/{group}/{file}", tag = "media",
    params(("group" = MediaGroup, Path, description = "`photos` or `resumes`"),
        ("file" = String, Path, description = "`<sha256 hex>.<png|jpg|pdf>`, as in a profile's link")),
    responses(
        (status = 200, description = "the file, or the placeholder PNG when it is missing",
            content(([u8] = "image/png"), ([u8] = "image/jpeg"), ([u8] = "application/pdf")),
            headers(("cache-control" = String, description = "immutable for a stored file"),
                ("x-media-placeholder" = String, description = "`true` when the placeholder stands in"))),
        (status = 400, description = "not a media file name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(%group, %file))]
pub async fn get_file(
    State(app): State<AppState>,
    Path((group, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let group: MediaGroup = group.parse()?;
    match app.media.open(group, &file).await {
        Ok(content) => {
            let etag = HeaderValue::from_str(&format!("\"{file}\"")).ok();
            let mut response = (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(content.content_type),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
                    // Uploaded bytes are served as the type they were checked to be, never sniffed.
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                ],
                content.bytes,
            )
                .into_response();
            if let Some(etag) = etag {
                response.headers_mut().insert(header::ETAG, etag);
            }
            Ok(response)
        }
        Err(MediaError::NotFound) => Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
                // The file may be uploaded later: do not keep the stand-in.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    HeaderName::from_static(PLACEHOLDER_HEADER),
                    HeaderValue::from_static("true"),
                ),
            ],
            PLACEHOLDER_PNG,
        )
            .into_response()),
        Err(other) => Err(other.into()),
    }
}
