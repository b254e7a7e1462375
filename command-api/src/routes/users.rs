//! Users: registration, login, the profile and its freelancer sections, photo and resume links,
//! account deletion (DESIGN §3).

use axum::{
    Router,
    extract::State,
    response::Response,
    routing::{post, put},
};
use domain::{
    Actor, DomainError, EmailAddress, FieldError, ProfileItemId, Role,
    users::{
        self, FileRef, PersonName, ProfileItem, ProfileSection, ProfileUpdate, Registration, User,
        UserCommand,
    },
};
use infra::{
    http::{
        ApiError,
        auth::AccessToken,
        correlation::CorrelationId,
        extract::{Json, Path},
        idempotency::IdempotentCommand,
        limits::ClientAddress,
        problem::Problem,
    },
    ledger::Reservation,
    privacy::erase_account,
};
use serde::Deserialize;
use uuid::Uuid;

use super::{Written, created, written};
use crate::state::{AppState, Command};

/// Routes of the users context that take an `Idempotency-Key`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/clients/register", post(register_client))
        .route("/users/freelancers/register", post(register_freelancer))
        .route("/users/me/profile", put(update_profile))
        .route("/users/me/photo", put(set_photo))
        .route("/users/me/resume", put(set_resume))
        .route("/users/me", axum::routing::delete(delete_account))
        .route("/users/me/{section}", post(add_item))
        .route(
            "/users/me/{section}/{item_id}",
            put(update_item).delete(remove_item),
        )
}

/// Login: not a write, so never replayed from an idempotency record (it answers a secret).
pub fn login_router() -> Router<AppState> {
    Router::new().route("/users/login", post(login))
}

/// Body of a registration. Fields are optional here so that every missing one is reported.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    /// Login email, unique across users.
    #[schema(format = Email, max_length = 254, required = true)]
    email: Option<String>,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128, required = true)]
    password: Option<String>,
    /// Display name.
    #[schema(min_length = 1, max_length = 100, required = true)]
    name: Option<String>,
}

/// Passwords: 8 to 128 characters.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

struct ValidRegistration {
    email: EmailAddress,
    password: String,
    name: PersonName,
}

impl TryFrom<RegisterRequest> for ValidRegistration {
    type Error = DomainError;

    fn try_from(body: RegisterRequest) -> Result<Self, DomainError> {
        let mut errors = Vec::new();
        let email = required(&mut errors, "email", body.email.as_deref(), EmailAddress::parse);
        let name = required(&mut errors, "name", body.name.as_deref(), |raw| {
            PersonName::parse(raw, "name")
        });
        let password = required(&mut errors, "password", body.password.as_deref(), |raw| {
            if PASSWORD_CHARS.contains(&raw.chars().count()) {
                Ok(raw.to_owned())
            } else {
                Err(FieldError::new("password", "8 to 128 characters"))
            }
        });
        match (email, name, password) {
            (Some(email), Some(name), Some(password)) if errors.is_empty() => Ok(Self {
                email,
                password,
                name,
            }),
            _ => Err(DomainError::Invalid(errors)),
        }
    }
}

/// Parse a required field, recording a field error when it is missing or invalid.
fn required<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, FieldError>,
) -> Option<T> {
    let Some(raw) = raw else {
        errors.push(FieldError::new(field, "required"));
        return None;
    };
    parse(raw).map_err(|e| errors.push(e)).ok()
}

/// Register a client account.
#[utoipa::path(post, path = "/api/v1/users/clients/register", tag = "users", request_body = RegisterRequest,
    params(super::IdempotencyKeyHeader),
    responses((status = 201, body = Written), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "email taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "database or password hashing busy (Retry-After)", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all)]
pub async fn register_client(
    State(app): State<AppState>,
    address: ClientAddress,
    correlation: CorrelationId,
    idempotent: Option<IdempotentCommand>,
    Json(body): Json<RegisterRequest>,
) -> Result<Response, ApiError> {
    register(app, body, Role::Client, address, correlation, idempotent).await
}

/// Register a freelancer account.
#[utoipa::path(post, path = "/api/v1/users/freelancers/register", tag = "users", request_body = RegisterRequest,
    params(super::IdempotencyKeyHeader),
    responses((status = 201, body = Written), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "email taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "database or password hashing busy (Retry-After)", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all)]
pub async fn register_freelancer(
    State(app): State<AppState>,
    address: ClientAddress,
    correlation: CorrelationId,
    idempotent: Option<IdempotentCommand>,
    Json(body): Json<RegisterRequest>,
) -> Result<Response, ApiError> {
    register(app, body, Role::Freelancer, address, correlation, idempotent).await
}

/// Register: rate-limit, validate, hash, then append the registration with the email reserved
/// in the same transaction (a taken email is a 409 and nothing is written).
async fn register(
    app: AppState,
    body: RegisterRequest,
    role: Role,
    address: ClientAddress,
    correlation: CorrelationId,
    idempotent: Option<IdempotentCommand>,
) -> Result<Response, ApiError> {
    app.limits.check(address, body.email.as_deref())?;
    let valid = ValidRegistration::try_from(body)?;
    let command = Command::registration(role, correlation, idempotent);
    let user_id = command.actor().id;
    let registration = Registration {
        user_id,
        email: valid.email.clone(),
        password_hash: app.passwords.hash(valid.password).await?,
        name: valid.name,
    };
    let decision = match role {
        Role::Freelancer => UserCommand::RegisterFreelancer(registration),
        _ => UserCommand::RegisterClient(registration),
    };
    let reservation = Reservation {
        scope: "email",
        value: valid.email.as_str().to_owned(),
        stream_id: user_id.as_uuid(),
    };
    let appended = app
        .ledger
        .execute_reserving::<User>(user_id.as_uuid(), command.metadata, vec![reservation], |user| {
            users::decide(user, &decision, &command.ctx)
        })
        .await?;
    tracing::info!(%user_id, role = role.as_str(), "user registered");
    Ok(created(user_id, &appended))
}

/// Body of a login.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// The account's email.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// Its password.
    #[schema(min_length = 1, max_length = 128)]
    password: String,
}

/// Exchange email and password for an access token; any mismatch (a deleted account included)
/// is the same 401.
#[utoipa::path(post, path = "/api/v1/users/login", tag = "users", request_body = LoginRequest,
    responses((status = 200, body = AccessToken),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "database or password hashing busy (Retry-After)", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(app): State<AppState>,
    address: ClientAddress,
    Json(body): Json<LoginRequest>,
) -> Result<Json<AccessToken>, ApiError> {
    app.limits.check(address, Some(&body.email))?;
    let invalid = || ApiError::Unauthorized("invalid-credentials");
    if body.password.chars().count() > *PASSWORD_CHARS.end() {
        return Err(invalid());
    }
    let email = EmailAddress::parse(&body.email).map_err(|_| invalid())?;
    let user_id = app
        .ledger
        .reservation_owner("email", email.as_str())
        .await?
        .ok_or_else(invalid)?;
    let user = app.ledger.load::<User>(user_id).await?.state;
    let registered = user.registered.filter(|_| !user.deleted).ok_or_else(invalid)?;
    if !app
        .passwords
        .verify(body.password, registered.password_hash)
        .await?
    {
        return Err(invalid());
    }
    Ok(Json(app.keys.issue(Actor::new(registered.id, registered.role))?))
}

/// The editable public part of a profile.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProfileRequest {
    /// Display name.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// One-line pitch (empty clears it).
    #[serde(default)]
    #[schema(max_length = 200)]
    headline: String,
    /// About.
    #[serde(default)]
    #[schema(max_length = 5000)]
    bio: String,
}

/// Update the caller's profile.
#[utoipa::path(put, path = "/api/v1/users/me/profile", tag = "users", request_body = ProfileRequest,
    params(super::IdempotencyKeyHeader), security(("bearer" = [])),
    responses((status = 200, body = Written), super::WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn update_profile(
    State(app): State<AppState>,
    command: Command,
    Json(body): Json<ProfileRequest>,
) -> Result<Response, ApiError> {
    let update = ProfileUpdate::parse(&body.name, &body.headline, &body.bio)?;
    on_self(&app, command, UserCommand::UpdateProfile(update)).await
}

/// A section of a freelancer's profile, as named in paths.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SectionPath {
    /// Skills.
    Skills,
    /// Spoken languages.
    Languages,
    /// Degrees and courses.
    Education,
    /// Past positions.
    Experience,
    /// Awards and certificates.
    Achievements,
}

impl From<SectionPath> for ProfileSection {
    fn from(path: SectionPath) -> Self {
        match path {
            SectionPath::Skills => Self::Skill,
            SectionPath::Languages => Self::Language,
            SectionPath::Education => Self::Education,
            SectionPath::Experience => Self::Experience,
            SectionPath::Achievements => Self::Achievement,
        }
    }
}

/// One item of a freelancer's profile section.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ItemRequest {
    /// What it is.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    /// Details (level, school, dates, ...).
    #[serde(default)]
    #[schema(max_length = 2000)]
    details: String,
}

/// Add an item to a section of the caller's freelancer profile.
#[utoipa::path(post, path = "/api/v1/users/me/{section}", tag = "users", request_body = ItemRequest,
    params(("section" = SectionPath, Path, description = "profile section"), super::IdempotencyKeyHeader),
    security(("bearer" = [])),
    responses((status = 201, body = Written), super::WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn add_item(
    State(app): State<AppState>,
    command: Command,
    Path(section): Path<SectionPath>,
    Json(body): Json<ItemRequest>,
) -> Result<Response, ApiError> {
    let item = ProfileItem::parse(&body.title, &body.details)?;
    let item_id = ProfileItemId::from_uuid(command.new_id("profile-item"));
    let decision = UserCommand::AddProfileItem {
        section: section.into(),
        item_id,
        item,
    };
    let user_id = command.actor().id;
    let appended = execute_on_self(&app, command, decision).await?;
    tracing::info!(%user_id, %item_id, "profile item added");
    Ok(created(item_id, &appended))
}

/// Replace an item of the caller's freelancer profile.
#[utoipa::path(put, path = "/api/v1/users/me/{section}/{item_id}", tag = "users", request_body = ItemRequest,
    params(("section" = SectionPath, Path, description = "profile section"), ("item_id" = Uuid, Path, description = "item id"),
        super::IdempotencyKeyHeader),
    security(("bearer" = [])),
    responses((status = 200, body = Written), super::WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn update_item(
    State(app): State<AppState>,
    command: Command,
    Path((section, item_id)): Path<(SectionPath, Uuid)>,
    Json(body): Json<ItemRequest>,
) -> Result<Response, ApiError> {
    let item = ProfileItem::parse(&body.title, &body.details)?;
    let decision = UserCommand::UpdateProfileItem {
        section: section.into(),
        item_id: ProfileItemId::from_uuid(item_id),
        item,
    };
    let appended = execute_on_self(&app, command, decision).await?;
    Ok(written(item_id, &appended))
}

/// Remove an item of the caller's freelancer profile.
#[utoipa::path(delete, path = "/api/v1/users/me/{section}/{item_id}", tag = "users",
    params(("section" = SectionPath, Path, description = "profile section"), ("item_id" = Uuid, Path, description = "item id"),
        super::IdempotencyKeyHeader),
    security(("bearer" = [])),
    responses((status = 200, body = Written), super::WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn remove_item(
    State(app): State<AppState>,
    command: Command,
    Path((section, item_id)): Path<(SectionPath, Uuid)>,
) -> Result<Response, ApiError> {
    let decision = UserCommand::RemoveProfileItem {
        section: section.into(),
        item_id: ProfileItemId::from_uuid(item_id),
    };
    let appended = execute_on_self(&app, command, decision).await?;
    Ok(written(item_id, &appended))
}

/// A link to a stored file (e.g. from `POST /api/v1/media/photos`); `null` clears it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FileLinkRequest {
    /// The link, or null.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^\S+$",
        nullable = true,
        required = true
    )]
    link: Option<String>,
}

fn file_link(body: &FileLinkRequest) -> Result<Option<FileRef>, DomainError> {
    body.link
        .as_deref()
        .map(|raw| FileRef::parse(raw, "link"))
        .transpose()
        .map_err(|e| DomainError::Invalid(vec![e]))
}

/// Set or clear the caller's photo link.
#[utoipa::path(put, path = "/api/v1/users/me/photo", tag = "users", request_body = FileLinkRequest,
    params(super::IdempotencyKeyHeader), security(("bearer" = [])),
    responses((status = 200, body = Written), super::WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn set_photo(
    State(app): State<AppState>,
    command: Command,
    Json(body): Json<FileLinkRequest>,
) -> Result<Response, ApiError> {
    let link = file_link(&body)?;
    on_self(&app, command, UserCommand::SetPhoto(link)).await
}

/// Set or clear the caller's resume link (freelancers only).
#[utoipa::path(put, path = "/api/v1/users/me/resume", tag = "users", request_body = FileLinkRequest,
    params(super::IdempotencyKeyHeader), security(("bearer" = [])),
    responses((status = 200, body = Written), super::WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn set_resume(
    State(app): State<AppState>,
    command: Command,
    Json(body): Json<FileLinkRequest>,
) -> Result<Response, ApiError> {
    let link = file_link(&body)?;
    on_self(&app, command, UserCommand::SetResume(link)).await
}

/// Delete the caller's account and erase them: the email is released, their personal data key
/// destroyed in the same transaction (every personal field of their events reads as a
/// placeholder from then on), the account can no longer log in and its profile is no longer
/// served. Money history (ids, amounts) stays.
#[utoipa::path(delete, path = "/api/v1/users/me", tag = "users",
    params(super::IdempotencyKeyHeader), security(("bearer" = [])),
    responses((status = 200, body = Written), super::WriteProblems))]
#[tracing::instrument(skip_all, fields(actor = %command.actor().id))]
pub async fn delete_account(State(app): State<AppState>, command: Command) -> Result<Response, ApiError> {
    let user_id = command.actor().id;
    let appended = erase_account(&app.ledger, user_id, command.metadata.clone(), &command.ctx).await?;
    tracing::info!(%user_id, "account deleted and personal data erased");
    Ok(written(user_id, &appended))
}

/// Run a command on the caller's own user stream.
async fn execute_on_self(
    app: &AppState,
    command: Command,
    decision: UserCommand,
) -> Result<infra::ledger::Appended, ApiError> {
    let user_id = command.actor().id;
    Ok(app
        .ledger
        .execute::<User>(user_id.as_uuid(), command.metadata, |user| {
            users::decide(user, &decision, &command.ctx)
        })
        .await?)
}

/// Run a command on the caller's own user stream and answer 200 with the user id.
async fn on_self(app: &AppState, command: Command, decision: UserCommand) -> Result<Response, ApiError> {
    let user_id = command.actor().id;
    let appended = execute_on_self(app, command, decision).await?;
    Ok(written(user_id, &appended))
}
