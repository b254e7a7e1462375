//! Authentication: argon2id password hashes and HS256 bearer tokens. Ownership is a domain
//! rule; this module only establishes who the caller is.

use argon2::{Argon2, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};
use domain::{Actor, PasswordHash, Role, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

use super::problem::ApiError;
use crate::config::AuthConfig;

const ISSUER: &str = "workup";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    iat: i64,
    exp: i64,
    iss: String,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    inner: Arc<(EncodingKey, DecodingKey)>,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// An issued access token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessToken {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

impl TokenKeys {
    /// Keys from the configured secret.
    pub fn new(config: &AuthConfig) -> Self {
        let secret = config.jwt_secret.expose_secret().as_bytes();
        Self {
            inner: Arc::new((EncodingKey::from_secret(secret), DecodingKey::from_secret(secret))),
            ttl: Duration::from_secs(config.jwt_ttl_secs),
        }
    }

    /// A token for `actor`.
    pub fn issue(&self, actor: Actor) -> Result<AccessToken, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: actor.id.as_uuid(),
            role: actor.role,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            iss: ISSUER.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.inner.0)
            .map_err(|e| ApiError::Unexpected(e.into()))?;
        Ok(AccessToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: self.ttl.as_secs(),
        })
    }

    /// The actor a token stands for, if it is valid and unexpired.
    pub fn verify(&self, token: &str) -> Result<Actor, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.inner.1, &validation)
            .map_err(|_| ApiError::Unauthorized("invalid-token"))?;
        Ok(Actor::new(UserId::from_uuid(data.claims.sub), data.claims.role))
    }
}

/// The authenticated caller (bearer token), else 401.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub Actor);

impl<S> FromRequestParts<S> for Authenticated
where
    TokenKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("missing-token"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or(ApiError::Unauthorized("invalid-token"))?;
        TokenKeys::from_ref(state).verify(token.trim()).map(Self)
    }
}

/// Hash a password with argon2id (CPU-heavy: runs on the blocking pool).
pub async fn hash_password(password: String) -> Result<PasswordHash, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| PasswordHash::from_phc(h.to_string()))
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    })
    .await
    .map_err(|e| ApiError::Unexpected(e.into()))?
    .map_err(ApiError::Unexpected)
}

/// Check a password against its hash (on the blocking pool).
pub async fn verify_password(password: String, hash: PasswordHash) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        argon2::PasswordHash::new(hash.as_phc())
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .map_err(|e| anyhow::anyhow!("stored password hash is unreadable: {e}"))
    })
    .await
    .map_err(|e| ApiError::Unexpected(e.into()))?
    .map_err(ApiError::Unexpected)
}
