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
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::problem::ApiError;
use crate::config::{AuthConfig, ConfigError};

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
    /// Keys from the configured secret; refuses a missing or weak one outside `WORKUP_ENV=dev`.
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let secret = config.signing_secret()?;
        let secret = secret.expose_secret().as_bytes();
        Ok(Self {
            inner: Arc::new((EncodingKey::from_secret(secret), DecodingKey::from_secret(secret))),
            ttl: Duration::from_secs(config.jwt_ttl_secs),
        })
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

/// Password hashing and checking with argon2id, at most a fixed number at once: each takes a
/// core and about 19 MiB for tens of milliseconds, so unbounded concurrent logins could exhaust
/// the machine. A caller that waits too long for a slot gets a 503 with `Retry-After`.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

/// Longest a request waits for a hashing slot before it is answered 503.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(10);

impl Passwords {
    /// At most `concurrency` hashes at once (0: one per core).
    pub fn new(concurrency: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let permits = if concurrency == 0 { cores } else { concurrency };
        Self {
            permits: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Hash a password with argon2id (on the blocking pool).
    pub async fn hash(&self, password: String) -> Result<PasswordHash, ApiError> {
        self.run(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| PasswordHash::from_phc(h.to_string()))
                .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
        })
        .await
    }

    /// Check a password against its hash (on the blocking pool).
    pub async fn verify(&self, password: String, hash: PasswordHash) -> Result<bool, ApiError> {
        self.run(move || {
            argon2::PasswordHash::new(hash.as_phc())
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .map_err(|e| anyhow::anyhow!("stored password hash is unreadable: {e}"))
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = tokio::time::timeout(HASH_QUEUE_WAIT, self.permits.acquire())
            .await
            .map_err(|_| ApiError::Unavailable("password-hashing-busy"))?
            .map_err(|e| ApiError::Unexpected(e.into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::Unexpected(e.into()))?
            .map_err(ApiError::Unexpected)
    }
}
