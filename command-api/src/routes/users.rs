//! Users: registration and login (DESIGN §3).

use axum::{Router, extract::State, routing::post};
use domain::{
    Actor, DomainError, EmailAddress, FieldError, Role, UserId,
    users::{self, PersonName, Registration, User, UserCommand},
};
use infra::{
    http::{
        ApiError,
        auth::{self, AccessToken},
        correlation::CorrelationId,
        extract::Json,
        problem::Problem,
    },
    ledger::Reservation,
};
use serde::Deserialize;
use uuid::Uuid;

use super::{Written, created};
use crate::state::{AppState, command_context};

/// Routes of the users context.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/clients/register", post(register_client))
        .route("/users/freelancers/register", post(register_freelancer))
        .route("/users/login", post(login))
}

/// Body of a registration. Fields are optional here so that every missing one is reported.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    email: Option<String>,
    password: Option<String>,
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
    responses((status = 201, body = Written), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "email taken", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all)]
pub async fn register_client(
    State(app): State<AppState>,
    correlation: CorrelationId,
    Json(body): Json<RegisterRequest>,
) -> Result<axum::response::Response, ApiError> {
    register(app, body, Role::Client, correlation).await
}

/// Register a freelancer account.
#[utoipa::path(post, path = "/api/v1/users/freelancers/register", tag = "users", request_body = RegisterRequest,
    responses((status = 201, body = Written), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "email taken", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all)]
pub async fn register_freelancer(
    State(app): State<AppState>,
    correlation: CorrelationId,
    Json(body): Json<RegisterRequest>,
) -> Result<axum::response::Response, ApiError> {
    register(app, body, Role::Freelancer, correlation).await
}

/// Register: validate, hash, then append the registration with the email reserved in the
/// same transaction (a taken email is a 409 and nothing is written).
async fn register(
    app: AppState,
    body: RegisterRequest,
    role: Role,
    correlation: CorrelationId,
) -> Result<axum::response::Response, ApiError> {
    let valid = ValidRegistration::try_from(body)?;
    let user_id = UserId::from_uuid(Uuid::now_v7());
    let registration = Registration {
        user_id,
        email: valid.email.clone(),
        password_hash: auth::hash_password(valid.password).await?,
        name: valid.name,
    };
    let command = match role {
        Role::Freelancer => UserCommand::RegisterFreelancer(registration),
        _ => UserCommand::RegisterClient(registration),
    };
    let (ctx, metadata) = command_context(Actor::new(user_id, role), correlation);
    let reservation = Reservation {
        scope: "email",
        value: valid.email.as_str().to_owned(),
        stream_id: user_id.as_uuid(),
    };
    let appended = app
        .ledger
        .execute_reserving::<User>(user_id.as_uuid(), metadata, vec![reservation], |user| {
            users::decide(user, &command, &ctx)
        })
        .await?;
    tracing::info!(%user_id, role = role.as_str(), "user registered");
    Ok(created(user_id, &appended))
}

/// Body of a login.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// Exchange email and password for an access token; any mismatch is the same 401.
#[utoipa::path(post, path = "/api/v1/users/login", tag = "users", request_body = LoginRequest,
    responses((status = 200, body = AccessToken), (status = 401, body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(app): State<AppState>,
    Json(body): Json<LoginRequest>,
) -> Result<Json<AccessToken>, ApiError> {
    let invalid = || ApiError::Unauthorized("invalid-credentials");
    let email = EmailAddress::parse(&body.email).map_err(|_| invalid())?;
    let user_id = app
        .ledger
        .reservation_owner("email", email.as_str())
        .await?
        .ok_or_else(invalid)?;
    let user = app.ledger.load::<User>(user_id).await?.state;
    let registered = user.registered.ok_or_else(invalid)?;
    if !auth::verify_password(body.password, registered.password_hash).await? {
        return Err(invalid());
    }
    Ok(Json(app.keys.issue(Actor::new(registered.id, registered.role))?))
}
